//! A real Kafka-protocol broker for the live tests (tansu, started by `dev/services.sh`): topics,
//! a producer of synthetic histories, and waiting for a pipeline to catch up.

use std::path::Path;
use std::time::{Duration, Instant};

use kappa_synth::{Expected, Message, Tally};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
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
    create_topic_with(brokers, topic, partitions, &[]);
}

/// [`create_topic`] with extra client settings (`security.protocol`, ...).
pub fn create_topic_with(brokers: &str, topic: &str, partitions: i32, settings: &[(&str, &str)]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
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
    producer_with(brokers, &[])
}

/// [`producer`] with extra client settings (`security.protocol`, ...).
pub fn producer_with(brokers: &str, settings: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // One record per batch: tansu answers ListOffsets(latest) with the base offset of the
        // partition's last batch + 1, not its end, so after a batch of many records the
        // topic looks shorter than it is, and `kappa run` rightly stops a partition whose
        // table offset is past that end. Kafka answers with the end.
        .set("batch.num.messages", "1");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config.create().unwrap()
}

/// Produces `messages` to their partitions of `topic`, `per_second` at most (0: as fast as
/// possible); returns what a table fed by the topic must hold.
pub fn produce(
    producer: &BaseProducer,
    topic: &str,
    messages: impl IntoIterator<Item = Message>,
    per_second: u64,
) -> Expected {
    produce_with(producer, topic, messages, per_second, |_, _| {})
}

/// [`produce`], calling `on_send(partition, offset)` as each message is handed to the producer
/// (the benchmark's produce → visible latency starts there).
pub fn produce_with(
    producer: &BaseProducer,
    topic: &str,
    messages: impl IntoIterator<Item = Message>,
    per_second: u64,
    mut on_send: impl FnMut(i32, i64),
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
        on_send(message.partition, message.offset);
        producer.poll(Duration::ZERO);
        tally.add(&message);
    }
    // The test's own producer: a broker slowed by a loaded CI machine (its log on S3) may take
    // minutes to acknowledge the last messages; only no acknowledgement at all is a failure.
    producer
        .flush(Duration::from_secs(300))
        .unwrap_or_else(|e| {
            panic!("producing to {topic}: the broker acknowledged nothing for 5 min: {e}")
        });
    tally.finish()
}

/// Every message `topic` on `brokers` holds: (partition, offset, value), in offset order per
/// partition.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    // The high watermarks are re-read until they hold still: right after a broker restart they
    // can lag behind what it has stored.
    let high_watermarks = || -> std::collections::BTreeMap<i32, i64> {
        partitions
            .iter()
            .map(|&p| (p, consumer.fetch_watermarks(topic, p, timeout).unwrap().1))
            .collect()
    };
    let mut ends = high_watermarks();
    let mut messages = Vec::new();
    let mut next: std::collections::BTreeMap<i32, i64> =
        partitions.iter().map(|&p| (p, 0)).collect();
    let started = Instant::now();
    let mut last_news = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} back did not finish: at {next:?}, ends {ends:?}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            next.insert(message.partition(), message.offset() + 1);
            messages.push((
                message.partition(),
                message.offset(),
                message.payload().unwrap_or_default().to_vec(),
            ));
            last_news = Instant::now();
        } else if next.iter().all(|(p, n)| *n >= ends[p]) {
            let now = high_watermarks();
            if now != ends {
                ends = now;
                last_news = Instant::now();
            } else if last_news.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
    }
    messages.sort_by_key(|(p, o, _)| (*p, *o));
    messages
}

/// What a table fed by `topic` must hold when the topic may differ from what was produced: a
/// broker that lost its producer state (a restart) can store a retried message twice, at two
/// offsets. Each message in the topic is matched to the produced one by its bytes; a second copy
/// of an event counts as a duplicate, as the pipeline's deduplication treats it.
pub fn expected_from_topic(brokers: &str, topic: &str, produced: &[Message]) -> Expected {
    let by_value: std::collections::HashMap<&[u8], &Message> = produced
        .iter()
        .rev()
        .map(|m| (m.value.as_slice(), m))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut tally = Tally::default();
    for (partition, offset, value) in read_topic(brokers, topic) {
        let Some(original) = by_value.get(value.as_slice()) else {
            panic!("{topic}-{partition} offset {offset} holds a message nobody produced");
        };
        let mut message = (*original).clone();
        message.partition = partition;
        message.offset = offset;
        if let Some(event) = &message.event {
            message.kind = if seen.insert(event.event_id.clone()) {
                message.kind
            } else {
                kappa_synth::MessageKind::Duplicate
            };
        }
        tally.add(&message);
    }
    tally.finish()
}

/// `[source.kafka]` for `topic` on the test broker.
pub fn kafka_section(topic: &str, group: &str) -> String {
    kafka_section_at(&brokers(), topic, group)
}

/// `[source.kafka]` for `topic` on `brokers`.
pub fn kafka_section_at(brokers: &str, topic: &str, group: &str) -> String {
    format!(
        "[source.kafka]\nbootstrap_servers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\nstartup_timeout = \"20s\"\n"
    )
}

/// A broker of one test's own, on durable storage (S3, in the `tansu` bucket, under a cluster id
/// unique to the test), so that it can be stopped and started again with its topics intact. The
/// shared broker of `dev/services.sh` keeps its topics in memory.
pub struct OwnBroker {
    port: u16,
    /// `host:port` it advertises, when not its own (a proxy in front of it).
    advertised: Option<String>,
    cluster: String,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    /// Starts a broker on a free port; its log goes to `<temp dir>/kappa-tansu-<cluster>.log`
    /// (named in every failure, and removed when the broker is dropped by a passing test).
    pub fn start(name: &str) -> OwnBroker {
        Self::start_advertising(name, None)
    }

    /// [`OwnBroker::start`], advertising `advertised` (`host:port`) to clients instead of its
    /// own address, so that every connection after the bootstrap goes there.
    pub fn start_advertising(name: &str, advertised: Option<String>) -> OwnBroker {
        let port = crate::free_port();
        let cluster = unique_topic(name);
        let mut broker = OwnBroker {
            port,
            advertised,
            log: std::env::temp_dir().join(format!("kappa-tansu-{cluster}.log")),
            cluster,
            child: None,
        };
        broker.restart();
        broker
    }

    /// `host:port` of this broker.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the broker process (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the broker (again) on the same port and storage; returns once it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let listener = format!("tcp://{}", self.address());
        let advertised = match &self.advertised {
            Some(address) => format!("tcp://{address}"),
            None => listener.clone(),
        };
        let child = std::process::Command::new(service("KAPPA_TANSU"))
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--cluster-id", &self.cluster])
            .args(["--storage-engine", "s3://tansu/"])
            .env("AWS_ENDPOINT", service("KAPPA_S3_ENDPOINT"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "testtest")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {} within 30 s; see {}",
                self.address(),
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OwnBroker {
    /// Kills the broker; its log is kept only when the test is failing (the failure names it).
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
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

/// Whether a `kappa status --json` output shows the table holding every partition of `topic` up
/// to `expected.next_offsets`.
pub fn holds_everything(status: &Value, topic: &str, expected: &Expected) -> bool {
    expected.next_offsets.iter().enumerate().all(|(p, next)| {
        *next == 0 || status["offsets"][format!("{topic}-{p}")].as_i64() == Some(*next)
    })
}

/// Waits until the table holds every partition of `topic` up to `expected.next_offsets`. Until
/// the pipeline has created its table, `kappa status` (which only reads) says it does not exist.
pub fn wait_until_committed(config: &Path, topic: &str, expected: &Expected, timeout: Duration) {
    let started = Instant::now();
    loop {
        let arg = config.display().to_string();
        let out = kappa(&["status", "-c", &arg, "--json"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(
                stderr.contains("does not exist") && started.elapsed() < timeout,
                "kappa status failed, or the table was not created within {timeout:?}: {stderr}"
            );
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let status: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
        if holds_everything(&status, topic, expected) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "the table did not catch up with {topic} within {timeout:?}: it holds {}, expected {:?}\n{}",
            status["offsets"],
            expected.next_offsets,
            run_logs(config)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A scene whose pipeline reads `topic` on `brokers` live, committing every second, on the given
/// catalog.
pub fn live_scene_on(
    catalog: crate::Catalog,
    brokers: &str,
    topic: &str,
) -> (crate::Scene, std::path::PathBuf) {
    let scene = crate::Scene::on(catalog, "live");
    let config = scene.config(&format!(
        "{}\n[dedup]\nwindow = 100000\n",
        kafka_section_at(brokers, topic, &format!("{topic}-group"))
    ));
    // Commit every second (the default minute would make the tests slow).
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[commit]\nrows = 5000",
        "[commit]\nrows = 5000\ninterval = \"1s\"",
    );
    std::fs::write(&config, text).unwrap();
    (scene, config)
}

/// The logs of the `kappa run`s of `config` (for failure messages).
pub fn run_logs(config: &Path) -> String {
    let dir = config.parent().unwrap();
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("run-") && name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            logs.push_str(&format!("--- {name}\n{text}"));
        }
    }
    logs
}

/// Starts `kappa run -c config --json` with environment variables (`KAPPA__...` overrides); its
/// log goes to `run-<n>.log` next to the config (read on failures).
pub fn run_live(config: &Path, env: &[(&str, &str)]) -> std::process::Child {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(config.with_file_name(format!("run-{n}.log"))).unwrap();
    std::process::Command::new(crate::kappa_bin())
        .args(["run", "-c", &config.display().to_string(), "--json"])
        .envs(env.iter().copied())
        .env(
            "KAPPA_LOG",
            "warn,kappa_runtime=info,kappa_source_kafka=info",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}
