//! A real Kafka-protocol broker for the live tests (tansu, started by `dev/services.sh`): topics,
//! a producer of synthetic histories, and waiting for a pipeline to catch up.

use std::path::Path;
use std::time::{Duration, Instant};

use kappa_synth::{Expected, Message, Tally};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

use crate::{kappa, last_line, service};

/// `host:port` of the test broker.
pub fn brokers() -> String {
    service("KAPPA_KAFKA")
}

/// A topic name unique to this test process.
pub fn unique_topic(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000
    )
}

/// Creates `topic` with `partitions` partitions on `brokers`.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// An idempotent producer (retries never duplicate or reorder).
pub fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produces `messages` to their partitions of `topic`, `per_second` at most (0: as fast as
/// possible); returns what a table fed by the topic must hold.
pub fn produce(
    producer: &BaseProducer,
    topic: &str,
    messages: impl IntoIterator<Item = Message>,
    per_second: u64,
) -> Expected {
    let started = Instant::now();
    let mut tally = Tally::default();
    for (i, message) in messages.into_iter().enumerate() {
        if per_second > 0 {
            let due = Duration::from_secs_f64(i as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        loop {
            let record = BaseRecord::to(topic)
                .partition(message.partition)
                .key(&message.key)
                .payload(&message.value);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        e.to_string().contains("Queue full"),
                        "producing to {topic}: {e}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
        tally.add(&message);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    tally.finish()
}

/// `[source.kafka]` for `topic` on the test broker.
pub fn kafka_section(topic: &str, group: &str) -> String {
    format!(
        "[source.kafka]\nbootstrap_servers = \"{}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\nstartup_timeout = \"20s\"\n",
        brokers()
    )
}

/// `kappa status -c config --json`.
pub fn status(config: &Path) -> Value {
    let config = config.display().to_string();
    let out = kappa(&["status", "-c", &config, "--json"], &[]);
    assert!(
        out.status.success(),
        "kappa status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(last_line(&out.stdout)).unwrap()
}

/// Waits until the table holds every partition of `topic` up to `expected.next_offsets`.
pub fn wait_until_committed(config: &Path, topic: &str, expected: &Expected, timeout: Duration) {
    let started = Instant::now();
    loop {
        let status = status(config);
        let done = expected.next_offsets.iter().enumerate().all(|(p, next)| {
            *next == 0 || status["offsets"][format!("{topic}-{p}")].as_i64() == Some(*next)
        });
        if done {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "the table did not catch up with {topic} within {timeout:?}: {}",
            status["offsets"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
