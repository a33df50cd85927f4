//! How to connect: the validated `[source.kafka]` turned into librdkafka settings.

use std::time::Duration;

use kappa_config::{KafkaAssignment, KafkaConfig, KafkaProperties, KafkaStart};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

/// Settings of the live source (`Debug` redacts secret property values).
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Start of partitions without table state.
    pub start: KafkaStart,
    /// How partitions are assigned: this replica's shard, or by the consumer group.
    pub assignment: KafkaAssignment,
    /// How long to wait at start for the brokers and the topic.
    pub startup_timeout: Duration,
    /// Extra librdkafka settings, passed through unchanged.
    pub properties: KafkaProperties,
    /// Messages decoded into one batch at most.
    pub max_batch: usize,
    /// How long the first message of a batch waits for more before the batch is handed on.
    pub linger: Duration,
    /// The schema subject (`[schema] subject`) whose newer versions, met while running, end the
    /// run so that the table evolves first ([`kappa_schema::WireDecoder::evolving`]); `None`
    /// decodes such records against the table's schema (their new fields are dropped).
    pub evolve_subject: Option<String>,
    /// Told of progress (records arrived, or every assigned partition caught up) so that a
    /// stalled source shows in `/readyz`.
    pub progress: Option<kappa_metrics::StallWatch>,
    /// Readiness, not ready while a partition is stopped (its table offset is outside the
    /// topic).
    pub health: Option<kappa_metrics::Health>,
}

/// librdkafka defaults Kappa changes; `[source.kafka.properties]` overrides each.
///
/// `fetch.queue.backoff.ms`: once a partition's prefetch queue is over `queued.min.messages`
/// (100,000), librdkafka waits this long before fetching it again. Its default of 1 s starved
/// the pipeline on a backlog: `kappa run` read a burst, then waited about a second for the next
/// one (measured with the Kafka benchmark, `docs/performance.md`).
const TUNING: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "20")];

impl KafkaOptions {
    /// Options from a validated `[source.kafka]`, with the defaults for batching.
    pub fn from_config(kafka: &KafkaConfig) -> Self {
        Self {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            topic: kafka.topic.clone(),
            group_id: kafka.group_id.clone(),
            start: kafka.start,
            assignment: kafka.assignment,
            startup_timeout: kafka.startup_timeout,
            properties: kafka.properties.clone(),
            max_batch: 50_000,
            linger: Duration::from_millis(100),
            evolve_subject: None,
            progress: None,
            health: None,
        }
    }

    /// librdkafka settings of a client: Kappa's tuning defaults, the user's properties (which
    /// may override them), then what Kappa owns. With `group`, a group consumer that never
    /// commits or stores offsets by itself.
    pub(crate) fn client_config(&self, group: bool) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in TUNING {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties.0 {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        if group {
            config
                .set("group.id", &self.group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // Every partition is assigned at an explicit offset (the table's, or the start
                // policy's beginning or end). An offset the topic no longer holds is an error
                // that stops the partition, never a silent jump elsewhere.
                .set("auto.offset.reset", "error");
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(properties: &[(&str, &str)]) -> KafkaOptions {
        let mut kafka = KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "orders".into(),
            group_id: "kappa-orders".into(),
            start: KafkaStart::Earliest,
            assignment: KafkaAssignment::default(),
            startup_timeout: Duration::from_secs(1),
            properties: KafkaProperties::default(),
        };
        for (key, value) in properties {
            kafka
                .properties
                .0
                .insert((*key).to_string(), (*value).to_string());
        }
        KafkaOptions::from_config(&kafka)
    }

    #[test]
    fn kappa_tunes_the_fetch_backoff_and_the_user_may_override_it() {
        let tuned = options(&[]).client_config(true);
        assert_eq!(tuned.get("fetch.queue.backoff.ms"), Some("20"));
        let overridden = options(&[("fetch.queue.backoff.ms", "500")]).client_config(true);
        assert_eq!(overridden.get("fetch.queue.backoff.ms"), Some("500"));
    }

    #[test]
    fn what_kappa_owns_is_never_overridden() {
        let config = options(&[("enable.auto.commit", "true")]).client_config(true);
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("group.id"), Some("kappa-orders"));
        assert_eq!(config.get("auto.offset.reset"), Some("error"));
    }
}
