//! The live benchmark's parts: a topic of generated orders events on a real broker
//! (`KAPPA_KAFKA`, tansu from `dev/services.sh`), an rdkafka consume-only loop over it, the
//! `kappa run` pipeline (Kafka source, orders logic, both committers) until the table holds the
//! whole topic, and produce → visible latency at a given commit interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use kappa_config::{KafkaAssignment, KafkaProperties, KafkaStart};
use kappa_core::{SourcePosition, TopicPartition};
use kappa_iceberg::TableState;
pub use kappa_integration_tests::kafka::brokers;
use kappa_integration_tests::kafka::{produce_with, producer, producer_with};
use kappa_runtime::{PipelineSpec, RunSummary, open_pipeline, run_live};
use kappa_schema::{SchemaRegistry, TableMapping};
use kappa_source_kafka::{KafkaOptions, KafkaSource};
use kappa_synth::{Expected, History, HistorySpec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

/// Creates `topic` with `partitions` partitions (the integration tests' admin call, off the
/// async runtime).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        kappa_integration_tests::kafka::create_topic(&brokers, &topic, partitions)
    })
    .await
    .unwrap();
}

fn history(topic: &str, events: u64, partitions: i32) -> History {
    History::new(HistorySpec {
        topic: topic.to_string(),
        partitions,
        ..HistorySpec::new(events)
    })
    .unwrap()
}

/// Produces a generated history of `events` events to `topic`, `per_second` at most (0: as fast
/// as the producer goes). `on_send(partition, offset)` is called as each message is handed to the
/// producer (the topic must be new, so that offsets count from 0). Returns what the table must
/// hold.
pub fn produce(
    brokers: &str,
    topic: &str,
    events: u64,
    partitions: i32,
    per_second: u64,
    on_send: impl FnMut(i32, i64),
) -> Expected {
    // Batched: one request per record would take minutes for a million records. (tansu's
    // ListOffsets then answers a shorter end than the topic's, which only the restart below,
    // whose topic is produced record by record, would trip over.)
    produce_with(
        &producer_with(brokers, &[("batch.num.messages", "10000")]),
        topic,
        history(topic, events, partitions),
        per_second,
        on_send,
    )
}

/// Messages and payload bytes read by a plain rdkafka loop from the start of `topic` to `ends`,
/// and how long it took (from creating the consumer).
pub fn consume_only(brokers: &str, topic: &str, ends: &[i64]) -> (u64, u64, Duration) {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-consume-only"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..ends.len() as i32 {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut next = vec![0_i64; ends.len()];
    let (mut messages, mut bytes) = (0_u64, 0_u64);
    while next.iter().zip(ends).any(|(n, end)| n < end) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            messages += 1;
            bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            next[message.partition() as usize] = message.offset() + 1;
        }
    }
    (messages, bytes, started.elapsed())
}

/// The `kappa run` pipeline on one topic: the table's position read back from the catalog.
pub struct Live {
    spec: PipelineSpec,
    topic: String,
    partitions: i32,
    ends: Vec<i64>,
}

impl Live {
    /// A pipeline `spec` reading `topic`.
    pub fn new(spec: PipelineSpec, topic: &str, partitions: i32) -> Self {
        Self {
            spec,
            topic: topic.to_string(),
            partitions,
            ends: Vec::new(),
        }
    }

    /// Notes in [`Milestones::drained`] when the source has read every partition up to `ends`
    /// (next offset per partition).
    pub fn reading_to(mut self, ends: &[i64]) -> Self {
        self.ends = ends.to_vec();
        self
    }

    /// Next offset per partition committed to the table (0 where none).
    pub async fn committed(&self, catalog: &dyn iceberg::Catalog) -> Vec<i64> {
        let ident = TableIdent::from_strs([&self.spec.namespace, &self.spec.table]).unwrap();
        let position = match catalog.load_table(&ident).await {
            Ok(table) => {
                TableState::read(&self.spec.table, table.metadata(), &self.spec.pipeline)
                    .unwrap()
                    .position
            }
            Err(_) => SourcePosition::new(),
        };
        (0..self.partitions)
            .map(|p| {
                position
                    .next_offset(&TopicPartition::new(&self.topic, p))
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Runs the pipeline while `watch` runs; `watch` gets the catalog to poll and the source's
    /// [`Milestones`]. Returns the run summary and what `watch` returned. The clock of `watch`
    /// starts before the source connects.
    pub async fn run<W, Fut, R>(
        &self,
        brokers: &str,
        registry: Arc<dyn SchemaRegistry>,
        watch: W,
    ) -> (RunSummary, R)
    where
        W: FnOnce(Arc<dyn iceberg::Catalog>, Milestones) -> Fut,
        Fut: Future<Output = R> + Send,
        R: Send,
    {
        let mapping: Arc<TableMapping> = self.spec.mapping.clone();
        let pipeline = open_pipeline(self.spec.clone()).await.unwrap();
        let catalog = pipeline.catalog.clone();
        let options = KafkaOptions {
            bootstrap_servers: brokers.to_string(),
            topic: self.topic.clone(),
            group_id: format!("{}-kappa", self.topic),
            start: KafkaStart::Earliest,
            assignment: KafkaAssignment::default(),
            startup_timeout: Duration::from_secs(30),
            properties: KafkaProperties::default(),
            max_batch: 50_000,
            linger: Duration::from_millis(100),
            evolve_subject: None,
            progress: None,
            health: None,
        };
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        let milestones = Milestones::default();
        let reading = Reading {
            ends: self.ends.clone(),
            next: vec![0; self.ends.len()],
        };
        let watched = watch(catalog, milestones.clone());
        let shutdown = async move {
            let _ = result_tx.send(watched.await);
        };
        let source = Timed {
            inner: KafkaSource::connect(options, mapping, registry)
                .await
                .unwrap(),
            milestones,
            reading,
        };
        let summary = run_live(pipeline, source, crate::logic(), shutdown)
            .await
            .unwrap();
        (summary, result_rx.await.unwrap())
    }
}

/// When the source got its partitions and delivered its first batch: the start (a consumer group
/// join took seconds on tansu) is not part of the pipeline's throughput.
#[derive(Debug, Clone, Default)]
pub struct Milestones {
    /// The first assignment.
    pub assigned: Arc<std::sync::OnceLock<Instant>>,
    /// The first batch of records.
    pub first_batch: Arc<std::sync::OnceLock<Instant>>,
    /// When the source handed over the batch that completed [`Live::reading_to`]'s ends.
    pub drained: Arc<std::sync::OnceLock<Instant>>,
    drained_now: Arc<tokio::sync::Notify>,
}

impl Milestones {
    /// Waits until the source has read up to [`Live::reading_to`]'s ends; returns when it had.
    pub async fn until_drained(&self) -> Instant {
        loop {
            if let Some(at) = self.drained.get() {
                return *at;
            }
            self.drained_now.notified().await;
        }
    }
}

/// How far the source has read (next offset per partition) and how far it is to read.
struct Reading {
    ends: Vec<i64>,
    next: Vec<i64>,
}

/// A source that notes its [`Milestones`] and otherwise is `inner`.
struct Timed<S> {
    inner: S,
    milestones: Milestones,
    reading: Reading,
}

#[async_trait::async_trait]
impl<S: kappa_core::Source> kappa_core::Source for Timed<S> {
    type Error = S::Error;

    fn partitions(&self) -> Vec<TopicPartition> {
        self.inner.partitions()
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), Self::Error> {
        self.inner.seek(position).await
    }

    async fn next_event(&mut self) -> Result<kappa_core::SourceEvent, Self::Error> {
        let event = self.inner.next_event().await?;
        match &event {
            kappa_core::SourceEvent::Reassigned(p) if !p.is_empty() => {
                self.milestones.assigned.get_or_init(Instant::now);
            }
            kappa_core::SourceEvent::Batch(batch) => {
                self.milestones.first_batch.get_or_init(Instant::now);
                let Reading { ends, next } = &mut self.reading;
                if let Some(next) = next.get_mut(batch.partition.partition as usize) {
                    *next = (*next).max(batch.range.end);
                }
                if !ends.is_empty() && next.iter().zip(ends.iter()).all(|(n, e)| n >= e) {
                    self.milestones.drained.get_or_init(Instant::now);
                    self.milestones.drained_now.notify_one();
                }
            }
            _ => {}
        }
        Ok(event)
    }

    fn committed(&mut self, position: &SourcePosition) {
        self.inner.committed(position);
    }
}

/// Polls the table every `every` until its position reaches `ends`; returns when it did.
pub async fn until_committed(
    live: &Live,
    catalog: &dyn iceberg::Catalog,
    ends: &[i64],
    every: Duration,
) -> Instant {
    loop {
        let committed = live.committed(catalog).await;
        if committed.iter().zip(ends).all(|(c, e)| c >= e) {
            return Instant::now();
        }
        tokio::time::sleep(every).await;
    }
}

/// When each committed position was first seen: (instant, next offset per partition), in poll
/// order (positions only grow).
pub type Visibility = Vec<(Instant, Vec<i64>)>;

/// Produce → visible latency of every message: the first poll that saw its partition's position
/// past its offset, minus when it was handed to the producer. Messages never seen are left out
/// (the caller checks the final position).
pub fn latencies(sent: &BTreeMap<(i32, i64), Instant>, seen: &Visibility) -> Vec<Duration> {
    let mut out = Vec::with_capacity(sent.len());
    for (&(partition, offset), &at) in sent {
        let first = seen.partition_point(|(_, position)| position[partition as usize] <= offset);
        if let Some((visible, _)) = seen.get(first) {
            out.push(visible.saturating_duration_since(at));
        }
    }
    out.sort();
    out
}

/// The `q` quantile of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// How long one restart of `kappa run` took, from spawning the process.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// Until its partitions were assigned at the table's offsets (its log says so).
    pub assigned: Duration,
    /// Until the table held the events produced while it was down (reading, processing and the
    /// next commit, every second).
    pub visible: Duration,
}

/// Restarts `kappa run` (the binary next to the benchmark, or `KAPPA_BIN`) after a SIGKILL,
/// `restarts` times, on a 3-partition topic of its own, with `[source.kafka] assignment =
/// assignment` and a commit every second. Before each restart 30 events are produced; each
/// restart is timed until its partitions are assigned and until the table holds those events.
/// Blocking.
pub fn restarts(brokers: &str, assignment: &str, restarts: usize) -> Vec<Restart> {
    use kappa_integration_tests::kafka::{kafka_section_at, unique_topic};
    use std::io::Read as _;
    let topic = unique_topic("bench-restart");
    kappa_integration_tests::kafka::create_topic(brokers, &topic, 3);
    let scene = kappa_integration_tests::Scene::local();
    let config = scene.config(&format!(
        "{}assignment = \"{assignment}\"\n",
        kafka_section_at(brokers, &topic, &format!("{topic}-group"))
    ));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[commit]\nrows = 5000",
        "[commit]\nrows = 5000\ninterval = \"1s\"",
    );
    std::fs::write(&config, text).unwrap();
    let messages: Vec<kappa_synth::Message> =
        history(&topic, 30 * (restarts as u64 + 1), 3).collect();
    let mut chunks = messages.chunks(30);
    // Record by record: the table's offsets are then inside what tansu's ListOffsets answers.
    let producer = producer(brokers);
    let spawn = |n: usize| {
        let log = config.with_file_name(format!("run-{n}.log"));
        let child = std::process::Command::new(kappa_integration_tests::kappa_bin())
            .args(["run", "-c", &config.display().to_string()])
            .env("KAPPA_LOG", "warn,kappa_source_kafka=info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, log)
    };
    let catalog_state = |ends: &[i64]| {
        let out = kappa_integration_tests::kappa(
            &["status", "-c", &config.display().to_string(), "--json"],
            &[],
        );
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(kappa_integration_tests::last_line(
                &out.stdout,
            ))
            .map(|s| {
                ends.iter().enumerate().all(|(p, end)| {
                    *end == 0 || s["offsets"][format!("{topic}-{p}")].as_i64() >= Some(*end)
                })
            })
            .unwrap_or(false)
    };
    let first = produce_with(
        &producer,
        &topic,
        chunks.next().unwrap().to_vec(),
        0,
        |_, _| {},
    );
    let mut ends = first.next_offsets.clone();
    let (mut child, _) = spawn(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !catalog_state(&ends) {
        assert!(Instant::now() < deadline, "the first run did not commit");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut out = Vec::new();
    for n in 1..=restarts {
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let more = produce_with(
            &producer,
            &topic,
            chunks.next().unwrap().to_vec(),
            0,
            |_, _| {},
        );
        ends.resize(ends.len().max(more.next_offsets.len()), 0);
        for (end, next) in ends.iter_mut().zip(&more.next_offsets) {
            *end = (*end).max(*next);
        }
        let started = Instant::now();
        let (next, log) = spawn(n);
        child = next;
        let mut assigned = None;
        let deadline = started + Duration::from_secs(300);
        loop {
            if assigned.is_none() {
                let mut text = String::new();
                let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
                if text.contains("partitions start at the table's offsets") {
                    assigned = Some(started.elapsed());
                }
            }
            if assigned.is_some() && catalog_state(&ends) {
                out.push(Restart {
                    assigned: assigned.unwrap_or_default(),
                    visible: started.elapsed(),
                });
                break;
            }
            assert!(Instant::now() < deadline, "restart {n} did not catch up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(scene);
    out
}
