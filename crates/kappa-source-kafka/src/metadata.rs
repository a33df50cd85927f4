//! Broker metadata: waiting for the topic at start, and the partitions' high watermarks (lag).

use std::time::{Duration, Instant};

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use tracing::{debug, warn};

use crate::error::KafkaSourceError;
use crate::options::KafkaOptions;

/// How often a waiting start says what it waits for.
const SAY_EVERY: Duration = Duration::from_secs(5);

/// Keeps librdkafka's last client error (`SSL handshake failed: ... certificate verify failed`,
/// `Connection refused`, a SASL failure): a failed metadata request only says "transport
/// failure", and the cause is what an operator needs.
#[derive(Default)]
struct LastError(Mutex<Option<String>>);

impl LastError {
    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut last| last.take())
    }
}

impl ClientContext for LastError {
    // librdkafka says why a connection failed in its log (facility FAIL), from its own threads.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        debug!(facility = fac, "librdkafka: {message}");
        if matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) && let Ok(mut last) = self.0.lock()
        {
            *last = Some(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(format!("{error}: {reason}"));
        }
    }
}

impl ConsumerContext for LastError {}

/// Serves the client's queued logs and errors (they reach the context only when polled) and
/// returns the last one.
fn last_error(client: &BaseConsumer<LastError>) -> Option<String> {
    for _ in 0..1_000 {
        if client.poll(Duration::ZERO).is_none() {
            break;
        }
    }
    client.context().take()
}

/// Waits until the brokers answer and the topic exists; returns its partition count. Fails after
/// `startup_timeout` naming what was missing (and librdkafka's last error, when it had one).
/// Blocking.
pub(crate) fn wait_for_topic(options: &KafkaOptions) -> Result<usize, KafkaSourceError> {
    let client: BaseConsumer<LastError> = options
        .client_config(false)
        .create_with_context(LastError::default())
        .map_err(|e| KafkaSourceError::Config(e.to_string()))?;
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let left = options.startup_timeout.saturating_sub(started.elapsed());
        let attempt = left.clamp(Duration::from_millis(500), Duration::from_secs(5));
        let waited_secs = started.elapsed().as_secs();
        let missing = match client.fetch_metadata(Some(&options.topic), attempt) {
            Ok(metadata) => {
                let topic = metadata.topics().iter().find(|t| t.name() == options.topic);
                match topic {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        return Ok(t.partitions().len());
                    }
                    _ => KafkaSourceError::MissingTopic {
                        brokers: options.bootstrap_servers.clone(),
                        topic: options.topic.clone(),
                        waited_secs,
                    },
                }
            }
            Err(e) => KafkaSourceError::Unreachable {
                brokers: options.bootstrap_servers.clone(),
                waited_secs,
                reason: match last_error(&client) {
                    Some(last) => format!("{e}; {last}"),
                    None => e.to_string(),
                },
            },
        };
        if started.elapsed() >= options.startup_timeout {
            return Err(missing);
        }
        if said.elapsed() >= SAY_EVERY {
            warn!(
                waited_s = started.elapsed().as_secs(),
                timeout_s = options.startup_timeout.as_secs(),
                "waiting: {missing}"
            );
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200).min(left));
    }
}

/// One partition's offsets on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Partition.
    pub partition: i32,
    /// Oldest retained offset.
    pub low: i64,
    /// Next offset to be written (the high watermark).
    pub high: i64,
}

/// The topic's partitions with their low and high watermarks, asked of the brokers within
/// `timeout`. Blocking.
pub fn topic_offsets(
    options: &KafkaOptions,
    timeout: Duration,
) -> Result<Vec<PartitionOffsets>, KafkaSourceError> {
    let client: BaseConsumer = options
        .client_config(false)
        .create()
        .map_err(|e| KafkaSourceError::Config(e.to_string()))?;
    let failed = |operation: &str, source: KafkaError| KafkaSourceError::Client {
        topic: options.topic.clone(),
        operation: operation.to_string(),
        source: Box::new(source),
    };
    let metadata = client
        .fetch_metadata(Some(&options.topic), timeout)
        .map_err(|e| failed("reading metadata", e))?;
    let Some(topic) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == options.topic && t.error().is_none())
    else {
        return Err(KafkaSourceError::MissingTopic {
            brokers: options.bootstrap_servers.clone(),
            topic: options.topic.clone(),
            waited_secs: 0,
        });
    };
    let mut out = Vec::with_capacity(topic.partitions().len());
    for p in topic.partitions() {
        let (low, high) = client
            .fetch_watermarks(&options.topic, p.id(), timeout)
            .map_err(|e| failed(&format!("reading partition {}'s offsets", p.id()), e))?;
        out.push(PartitionOffsets {
            partition: p.id(),
            low,
            high,
        });
    }
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// Why the table's next offset `next` of a partition is outside the topic's `[low, high]`, if it
/// is: the partition cannot be read on from there without losing or misattributing records.
pub fn out_of_range(next: i64, low: i64, high: i64) -> Option<String> {
    if next > high {
        Some(format!(
            "the table is at offset {next}, past the topic's end {high}: the topic was recreated \
             or its log truncated; records the topic holds now would be taken for already \
             committed"
        ))
    } else if next < low {
        Some(format!(
            "the table is at offset {next}, but the topic starts at {low}: retention deleted \
             offsets {next}..{low} before they were ingested; replay them from the archive, or \
             skip them with kappa state skip"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_offset_outside_the_topic_is_named() {
        assert_eq!(out_of_range(10, 0, 10), None, "at the end");
        assert_eq!(out_of_range(5, 5, 10), None, "at the start");
        let past = out_of_range(11, 0, 10).unwrap_or_default();
        assert!(past.contains("past the topic's end 10"), "{past}");
        let before = out_of_range(3, 5, 10).unwrap_or_default();
        assert!(before.contains("offsets 3..5"), "{before}");
    }
}
