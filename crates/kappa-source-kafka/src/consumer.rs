//! The consumer thread: polls librdkafka, serves rebalances, decodes messages into batches.
//!
//! librdkafka's consumer is polled from one dedicated OS thread, so that a rebalance callback may
//! block: on every assignment the callback asks the pipeline where each partition starts (the
//! table's committed offsets, [`Polled::Reassigned`]) and assigns the partitions at exactly those
//! offsets. Kafka group offsets are never read. Messages are decoded here (Confluent wire format,
//! through the schema registry) and handed on as [`SourceBatch`]es tagged with the assignment's
//! epoch; the source drops batches of an older epoch.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_core::{KafkaMetadata, OffsetRange, SourceBatch, TopicPartition};
use kappa_schema::{KafkaRecordMetadata, NewerSchema, WireDecoder};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::error::{KafkaSourceError, is_fatal};
use kappa_config::{KafkaAssignment, KafkaStart};

/// Where each newly assigned partition starts: `Some(offset)` or `None` for the start policy.
pub(crate) type Starts = BTreeMap<i32, Option<i64>>;

/// What the consumer thread hands the source.
pub(crate) enum Polled {
    /// Decoded messages of the assignment `epoch`.
    Batches {
        /// Assignment epoch the messages were read in.
        epoch: u64,
        /// One batch per partition, in offset order.
        batches: Vec<SourceBatch>,
    },
    /// Nothing arrived for a while.
    Idle,
    /// A record of the assignment `epoch` was written with a newer version of the subject than
    /// the table knows; the batches sent before end just before it, and nothing more is sent.
    SchemaChanged {
        /// Assignment epoch.
        epoch: u64,
        /// Which schema, which fields are new.
        reason: String,
    },
    /// The assignment changed. For a new assignment `reply` waits for the start offsets of
    /// `partitions`; the partitions are assigned once it is answered.
    Reassigned {
        /// The epoch batches of the new assignment carry.
        epoch: u64,
        /// The assigned partitions (empty after a revocation).
        partitions: Vec<i32>,
        /// Where to start each partition.
        reply: Option<oneshot::Sender<Starts>>,
    },
    /// The consumer cannot go on.
    Failed(KafkaSourceError),
}

/// What the source asks of the consumer thread.
pub(crate) enum Command {
    /// Commit these next offsets to the consumer group (lag monitoring only).
    CommitGroupOffsets(Vec<(i32, i64)>),
    /// Read the assigned partitions again from these offsets (`None`: by the start policy), in
    /// a new epoch (batches polled before carry the old one and are dropped); the reply is the
    /// new epoch. Ignored, with the reply `None`, when the assignment changed since `epoch`
    /// (the new assignment starts every partition at the table's offsets anyway).
    Seek {
        epoch: u64,
        starts: Starts,
        reply: oneshot::Sender<Option<u64>>,
    },
}

/// Logs librdkafka through `tracing` and serves rebalances.
pub(crate) struct KappaContext {
    pub topic: String,
    pub start: KafkaStart,
    pub brokers: String,
    pub epoch: AtomicU64,
    pub events: mpsc::Sender<Polled>,
    pub stop: Arc<AtomicBool>,
    /// The partitions being read (stopped ones excluded).
    pub assignment: Mutex<Vec<i32>>,
    /// Partitions held but not read, with why: the table's next offset is outside the topic.
    pub stopped: Mutex<BTreeMap<i32, String>>,
    /// Where the partitions of the newest assignment or seek start (`None`: the start policy).
    pub starts: Mutex<Starts>,
    /// Readiness: not ready while a partition is stopped.
    pub health: Option<kappa_metrics::Health>,
    /// The table's next offset per partition (what it holds everything before), as the
    /// pipeline last said ([`kappa_core::Source::committed`]).
    pub table: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl ClientContext for KappaContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                warn!(brokers = %self.brokers, facility = fac, "librdkafka: {message}")
            }
            L::Notice | L::Info => info!(facility = fac, "librdkafka: {message}"),
            L::Debug => debug!(facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(brokers = %self.brokers, "Kafka: {error}: {reason}");
    }
}

impl ConsumerContext for KappaContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        ) {
            // Refused by config validation; never assign partitions without table offsets.
            error!("cooperative rebalancing is not supported; leaving the partitions unassigned");
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign_at_table_offsets(consumer, partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                info!(?partitions, "partitions revoked");
                for partition in &partitions {
                    kappa_metrics::events::source::PartitionRevoked {
                        topic: &self.topic,
                        partition: *partition,
                    }
                    .emit();
                }
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "unassigning failed");
                }
                if let Ok(mut a) = self.assignment.lock() {
                    a.clear();
                }
                // Another replica may get them: theirs to report now.
                self.set_stopped(BTreeMap::new());
                let _ = self.events.blocking_send(Polled::Reassigned {
                    epoch,
                    partitions: Vec::new(),
                    reply: None,
                });
            }
            other => {
                warn!(error = ?other, "rebalance failed; unassigning");
                let _ = consumer.unassign();
                let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                let _ = self.events.blocking_send(Polled::Reassigned {
                    epoch,
                    partitions: Vec::new(),
                    reply: None,
                });
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            debug!(error = %e, "committing group offsets failed (lag monitoring only)");
        }
    }
}

/// Where a partition starts: the table's next offset, or by the start policy.
fn start_offset(next: Option<i64>, start: KafkaStart) -> Offset {
    match next {
        Some(next) => Offset::Offset(next),
        None => match start {
            KafkaStart::Earliest | KafkaStart::EarliestAvailable => Offset::Beginning,
            KafkaStart::Latest => Offset::End,
        },
    }
}

/// How long a check of a partition's offsets waits for the broker.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

impl KappaContext {
    /// Asks the pipeline where `partitions` start (the table's offsets), stops those whose
    /// offset is outside the topic, and assigns the others at exactly those offsets, in a new
    /// epoch. Serves a group's assignment and a shard's.
    pub(crate) fn assign_at_table_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: Vec<i32>,
    ) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        info!(
            ?partitions,
            "partitions assigned; asking the table where they start"
        );
        let Some(starts) = self.ask_starts(epoch, &partitions) else {
            // The pipeline is going away: assign nothing rather than guess offsets.
            let _ = consumer.unassign();
            return;
        };
        let stopped = self.out_of_range(consumer, &starts);
        let mut assignment = TopicPartitionList::new();
        let reading: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !stopped.contains_key(p))
            .collect();
        for p in &reading {
            let offset = start_offset(starts.get(p).copied().flatten(), self.start);
            if let Err(e) = assignment.add_partition_offset(&self.topic, *p, offset) {
                error!(partition = p, error = %e, "cannot build the assignment");
            }
        }
        match consumer.assign(&assignment) {
            Ok(()) => {
                debug!(?starts, "assigned at the table's offsets");
                if let Ok(mut a) = self.assignment.lock() {
                    *a = reading;
                }
                if let Ok(mut s) = self.starts.lock() {
                    *s = starts;
                }
            }
            Err(e) => error!(error = %e, "assigning partitions failed"),
        }
        self.set_stopped(stopped);
    }

    /// The table's next offset of `partition`, if the pipeline said.
    fn table_next(&self, partition: i32) -> Option<i64> {
        self.table
            .lock()
            .ok()?
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, next)| *next)
    }

    /// Why `next` is outside `partition`'s offsets, asked again twice a second apart before it
    /// is believed: a new partition leader may answer with a high watermark behind the old one
    /// for a moment.
    fn confirmed_out_of_range(
        &self,
        consumer: &BaseConsumer<Self>,
        partition: i32,
        next: i64,
    ) -> KafkaResult<Option<String>> {
        let mut reason = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let (low, high) =
                consumer.fetch_watermarks(&self.topic, partition, WATERMARKS_TIMEOUT)?;
            reason = crate::metadata::out_of_range(next, low, high);
            if reason.is_none() {
                break;
            }
        }
        Ok(reason)
    }

    /// The partitions of `starts` whose table offset (or, for a partition the table holds
    /// nothing of, whose start) is outside what the topic holds, with why. A start before the
    /// table's offset only warms the dedup window up; the table's offset is what must be in the
    /// topic. A partition whose offsets cannot be read is not stopped here: its fetch refuses an
    /// offset outside the topic (`auto.offset.reset = error`), which stops it then.
    pub(crate) fn out_of_range(
        &self,
        consumer: &BaseConsumer<Self>,
        starts: &Starts,
    ) -> BTreeMap<i32, String> {
        let mut stopped = BTreeMap::new();
        for (partition, start) in starts {
            let Some(next) = self.table_next(*partition).or(*start) else {
                continue;
            };
            match self.confirmed_out_of_range(consumer, *partition, next) {
                Ok(Some(reason)) => {
                    stopped.insert(*partition, reason);
                }
                Ok(None) => {}
                Err(e) => warn!(
                    partition,
                    error = %e,
                    "cannot read the partition's offsets to check the table's position against them; reading on (a fetch outside the topic is refused)"
                ),
            }
        }
        stopped
    }

    /// Stops reading `more` partitions (paused, out of the assignment), on top of those stopped.
    pub(crate) fn stop(&self, consumer: &BaseConsumer<Self>, more: BTreeMap<i32, String>) {
        if more.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in more.keys() {
            let _ = tpl.add_partition(&self.topic, *p);
        }
        if let Err(e) = consumer.pause(&tpl) {
            warn!(error = %e, "pausing stopped partitions failed");
        }
        if let Ok(mut a) = self.assignment.lock() {
            a.retain(|p| !more.contains_key(p));
        }
        let mut all = self.stopped.lock().map(|s| s.clone()).unwrap_or_default();
        all.extend(more);
        self.set_stopped(all);
    }

    /// Replaces the stopped partitions with `stopped`: says so for each change, in the metric,
    /// the log and readiness.
    fn set_stopped(&self, stopped: BTreeMap<i32, String>) {
        let Ok(mut current) = self.stopped.lock() else {
            return;
        };
        for partition in current.keys().filter(|p| !stopped.contains_key(p)) {
            kappa_metrics::events::source::PartitionResumed {
                topic: &self.topic,
                partition: *partition,
            }
            .emit();
        }
        for (partition, reason) in &stopped {
            if current.get(partition) != Some(reason) {
                kappa_metrics::events::source::PartitionStopped {
                    topic: &self.topic,
                    partition: *partition,
                    reason,
                }
                .emit();
            }
        }
        *current = stopped;
        if let Some(health) = &self.health {
            if current.is_empty() {
                health.set_ready(kappa_metrics::Condition::Partitions);
            } else {
                let names: Vec<String> = current
                    .keys()
                    .map(|p| format!("{}-{p}", self.topic))
                    .collect();
                health.set_not_ready(
                    kappa_metrics::Condition::Partitions,
                    format!(
                        "stopped: {} (the table's offset is outside the topic)",
                        names.join(", ")
                    ),
                );
            }
        }
    }

    /// Hands the new assignment to the pipeline and waits for its start offsets (the pipeline
    /// first drops what it buffered and reloads the table). `None` if the pipeline is gone.
    fn ask_starts(&self, epoch: u64, partitions: &[i32]) -> Option<Starts> {
        let (reply, mut answer) = oneshot::channel();
        let event = Polled::Reassigned {
            epoch,
            partitions: partitions.to_vec(),
            reply: Some(reply),
        };
        self.events.blocking_send(event).ok()?;
        loop {
            match answer.try_recv() {
                Ok(starts) => return Some(starts),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {
                    if self.stop.load(Ordering::Acquire) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// A raw message as polled; its value is a range of the pending batch's payload buffer.
struct Raw {
    partition: i32,
    offset: i64,
    value: Option<Range<usize>>,
    /// Kept only when the table has Kafka metadata columns (`[table] kafka_metadata`).
    metadata: Option<RawMetadata>,
}

/// What a record carries besides its value, for the table's Kafka metadata columns.
struct RawMetadata {
    /// In the poller's payload buffer, like the value.
    key: Option<Range<usize>>,
    timestamp_ms: Option<i64>,
    /// Only when the table keeps headers.
    headers: Option<Vec<(String, Option<Vec<u8>>)>>,
}

/// The consumer thread's state.
pub(crate) struct Poller {
    pub consumer: Arc<BaseConsumer<KappaContext>>,
    pub decoder: WireDecoder,
    pub commands: std::sync::mpsc::Receiver<Command>,
    pub max_batch: usize,
    pub linger: Duration,
    pub progress: Option<kappa_metrics::StallWatch>,
    /// How partitions are assigned: by the group (its rebalance callback), or this replica's
    /// shard, assigned here.
    pub assignment: KafkaAssignment,
}

/// How long one poll waits for a message.
const POLL: Duration = Duration::from_millis(50);
/// Commands are read between polls at least every this many messages (and whenever idle).
const COMMAND_EVERY: usize = 256;
/// Messages read without waiting between two looks at the clock for `linger`.
const LINGER_EVERY: usize = 64;
/// How often an idle consumer says so.
const IDLE_EVERY: Duration = Duration::from_millis(250);
/// Minimum time between two warnings about the same consumer error.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// Refused fetch offsets are handled at most this often.
const REFUSED_EVERY: Duration = Duration::from_secs(1);
/// How often a shard looks for partitions added to the topic.
const PARTITIONS_EVERY: Duration = Duration::from_secs(30);
/// How often the consumer lag (broker high watermark − the table's position) is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);

impl Poller {
    fn context(&self) -> &KappaContext {
        self.consumer.context()
    }

    /// The topic's partitions this shard reads, from the brokers' metadata; `None` when the
    /// metadata cannot be read (librdkafka says why in its log).
    fn shard_partitions(&self) -> Option<Vec<i32>> {
        let topic = &self.context().topic;
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), WATERMARKS_TIMEOUT)
            .map_err(|e| warn!(topic, error = %e, "cannot read the topic's partitions"))
            .ok()?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())?;
        let mut partitions: Vec<i32> = found
            .partitions()
            .iter()
            .map(|p| p.id())
            .filter(|p| self.assignment.reads(*p))
            .collect();
        partitions.sort_unstable();
        Some(partitions)
    }

    /// A shard: assigns its partitions when they differ from those held (at start, and when
    /// partitions were added to the topic).
    fn assign_shard(&self) {
        let Some(partitions) = self.shard_partitions() else {
            return;
        };
        let context = self.context();
        let mut held = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        held.extend(
            context
                .stopped
                .lock()
                .map(|s| s.keys().copied().collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        held.sort_unstable();
        if held == partitions && context.epoch.load(Ordering::Acquire) > 0 {
            return;
        }
        if partitions.is_empty() {
            warn!(topic = %context.topic, assignment = ?self.assignment, "this shard reads none of the topic's partitions");
        }
        context.assign_at_table_offsets(&self.consumer, partitions);
    }

    /// Runs until the source stops it (or drops the receiving end).
    pub fn run(mut self, runtime: tokio::runtime::Handle) {
        let _runtime = runtime.enter();
        let shard = matches!(self.assignment, KafkaAssignment::Shard { .. });
        let mut partitions_checked = Instant::now();
        if shard {
            self.assign_shard();
        }
        let mut pending: Vec<Raw> = Vec::new();
        // The pending messages' values, back to back: one copy per message and no allocation
        // (a Vec per message was a tenth of this thread's time in malloc and free).
        let mut payloads: Vec<u8> = Vec::new();
        let mut pending_since = Instant::now();
        let mut epoch = 0;
        let mut last_idle = Instant::now();
        let mut last_warning: BTreeMap<String, Instant> = BTreeMap::new();
        let mut last_commit: Option<Vec<(i32, i64)>> = None;
        // Set once a newer schema was met: messages are no longer decoded (the pipeline commits
        // what came before and starts again with a new mapping); polling goes on for rebalances.
        let mut halted = false;
        let mut idle = true;
        // Next offset per partition after the messages polled in this epoch (for a refused
        // offset: where each partition is).
        let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
        let mut last_refused: Option<Instant> = None;
        let kept = self.decoder.mapping().kafka_metadata();
        let wants_metadata = !kept.is_empty();
        let wants_headers = kept.contains(&KafkaMetadata::Headers);
        while !self.context().stop.load(Ordering::Acquire) {
            if pending.is_empty() {
                payloads.clear();
            }
            if shard && idle && partitions_checked.elapsed() >= PARTITIONS_EVERY {
                partitions_checked = Instant::now();
                self.assign_shard();
            }
            let commands = if idle || pending.len().is_multiple_of(COMMAND_EVERY) {
                self.commands.try_iter().collect::<Vec<_>>()
            } else {
                Vec::new()
            };
            for command in commands {
                match command {
                    Command::CommitGroupOffsets(offsets) => {
                        self.commit(&offsets, CommitMode::Async);
                        last_commit = Some(offsets);
                    }
                    Command::Seek {
                        epoch,
                        starts,
                        reply,
                    } => {
                        let current = self.context().epoch.load(Ordering::Acquire) == epoch;
                        let _ = reply.send(current.then(|| self.seek(&starts)));
                    }
                }
            }
            // Without waiting first: under load a message is ready, and a zero timeout spares
            // librdkafka's clock reads (with the linger check below, clock reads were ~6% of a
            // live run's CPU). Only when none is ready does the poll wait.
            let mut polled = self.consumer.poll(Duration::ZERO);
            let waited = polled.is_none();
            if waited {
                polled = self.consumer.poll(POLL);
            }
            let message = match polled {
                Some(Ok(m)) => {
                    expected.insert(m.partition(), m.offset() + 1);
                    let mut keep = |bytes: &[u8]| {
                        let start = payloads.len();
                        payloads.extend_from_slice(bytes);
                        start..payloads.len()
                    };
                    let value = m.payload().map(&mut keep);
                    let metadata = wants_metadata.then(|| RawMetadata {
                        key: m.key().map(&mut keep),
                        timestamp_ms: m.timestamp().to_millis(),
                        headers: wants_headers.then(|| {
                            m.headers()
                                .map(|headers| {
                                    headers
                                        .iter()
                                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                        .collect()
                                })
                                .unwrap_or_default()
                        }),
                    });
                    Some(Raw {
                        partition: m.partition(),
                        offset: m.offset(),
                        value,
                        metadata,
                    })
                }
                Some(Err(e)) => {
                    let code = e.rdkafka_error_code();
                    if matches!(
                        code,
                        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::LogTruncation)
                    ) {
                        // Every refusal is handled (one left alone would leave its partition
                        // unread, silently), at most one a second.
                        if let Some(wait) =
                            last_refused.and_then(|t| REFUSED_EVERY.checked_sub(t.elapsed()))
                        {
                            std::thread::sleep(wait);
                        }
                        last_refused = Some(Instant::now());
                        self.offset_refused(&expected, &e);
                    }
                    if let Some(code) = code
                        && is_fatal(code)
                    {
                        let failure = KafkaSourceError::Client {
                            topic: self.context().topic.clone(),
                            operation: "consuming".into(),
                            source: Box::new(e),
                        };
                        let _ = self.context().events.blocking_send(Polled::Failed(failure));
                        break;
                    }
                    let key = e.to_string();
                    if last_warning
                        .get(&key)
                        .is_none_or(|t| t.elapsed() >= WARN_EVERY)
                    {
                        warn!(topic = %self.context().topic, error = %e, "Kafka consumer error; librdkafka retries");
                        last_warning.insert(key, Instant::now());
                    }
                    None
                }
                None => None,
            };
            let now = self.context().epoch.load(Ordering::Acquire);
            if now != epoch {
                // Messages of the previous assignment: the pipeline drops them anyway.
                pending.clear();
                expected.clear();
                epoch = now;
                halted = false;
            }
            idle = message.is_none();
            if let Some(raw) = message.filter(|_| !halted) {
                if pending.is_empty() {
                    pending_since = Instant::now();
                }
                pending.push(raw);
            }
            // The clock is read after a poll that waited, else every LINGER_EVERY messages: a
            // batch lingers at most that many messages' time past `linger` while they stream in.
            let due = !pending.is_empty()
                && (pending.len() >= self.max_batch
                    || idle
                    || ((waited || pending.len().is_multiple_of(LINGER_EVERY))
                        && pending_since.elapsed() >= self.linger));
            if due {
                if let Some(progress) = &self.progress {
                    progress.progressed();
                }
                let (batches, newer) = match self.decode(std::mem::take(&mut pending), &payloads) {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        let _ = self.context().events.blocking_send(Polled::Failed(e));
                        break;
                    }
                };
                if self
                    .context()
                    .events
                    .blocking_send(Polled::Batches { epoch, batches })
                    .is_err()
                {
                    break;
                }
                if let Some(reason) = newer {
                    halted = true;
                    let changed = Polled::SchemaChanged { epoch, reason };
                    if self.context().events.blocking_send(changed).is_err() {
                        break;
                    }
                }
            } else if idle && last_idle.elapsed() >= IDLE_EVERY {
                last_idle = Instant::now();
                if self.context().events.blocking_send(Polled::Idle).is_err() {
                    break;
                }
            }
        }
        for command in self.commands.try_iter() {
            if let Command::CommitGroupOffsets(offsets) = command {
                last_commit = Some(offsets);
            }
        }
        if let Some(offsets) = last_commit {
            self.commit(&offsets, CommitMode::Sync);
        }
    }

    /// Moves the assigned partitions of `starts` back (or on) to its offsets, in a new epoch; a
    /// partition whose offset the topic no longer holds (retention passed it while the pipeline
    /// was paused) is stopped instead.
    fn seek(&self, starts: &Starts) -> u64 {
        let context = self.context();
        let epoch = context.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let assigned = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let starts: Starts = starts
            .iter()
            .filter(|(p, _)| assigned.contains(p))
            .map(|(p, s)| (*p, *s))
            .collect();
        let stopped = context.out_of_range(&self.consumer, &starts);
        context.stop(&self.consumer, stopped.clone());
        for (partition, start) in starts.iter().filter(|(p, _)| !stopped.contains_key(p)) {
            let offset = start_offset(*start, context.start);
            if let Err(e) =
                self.consumer
                    .seek(&context.topic, *partition, offset, Duration::from_secs(10))
            {
                warn!(partition, error = %e, "seeking failed");
            }
        }
        if let Ok(mut s) = context.starts.lock() {
            s.clone_from(&starts);
        }
        debug!(
            ?starts,
            epoch, "partitions sought back to the table's offsets"
        );
        epoch
    }

    /// librdkafka refused to read a partition on because its fetch offset is outside the topic
    /// (`auto.offset.reset = error`: Kafka never picks another offset). The error does not say
    /// which partition, so each one read is checked: those outside the topic are stopped. When
    /// none is (the broker's offsets moved back in between), every partition read is sought to
    /// where it is, which restarts the one librdkafka stopped.
    fn offset_refused(&self, expected: &BTreeMap<i32, i64>, error: &KafkaError) {
        let context = self.context();
        let assigned = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let starts = context.starts.lock().map(|s| s.clone()).unwrap_or_default();
        let positions: Starts = assigned
            .iter()
            .map(|p| {
                let next = expected
                    .get(p)
                    .copied()
                    .or_else(|| starts.get(p).copied().flatten());
                (*p, next)
            })
            .collect();
        let stopped = context.out_of_range(&self.consumer, &positions);
        context.stop(&self.consumer, stopped.clone());
        // The others: read on from where they are. A fetch position before the topic's start
        // is in the dedup warm-up (the table's offset is inside the topic): warm up from the
        // oldest record the topic still has.
        for (partition, next) in positions {
            let Some(next) = next.filter(|_| !stopped.contains_key(&partition)) else {
                continue;
            };
            let low = self
                .consumer
                .fetch_watermarks(&context.topic, partition, WATERMARKS_TIMEOUT)
                .map_or(next, |(low, _)| low);
            if next < low {
                warn!(topic = %context.topic, partition, from = next, to = low, "retention deleted part of the dedup warm-up before the table's position; warming up from the topic's oldest record");
            } else if stopped.is_empty() {
                debug!(topic = %context.topic, partition, error = %error, "reading on after a refused offset");
            }
            if let Err(e) = self.consumer.seek(
                &context.topic,
                partition,
                Offset::Offset(next.max(low)),
                Duration::from_secs(10),
            ) {
                warn!(partition, error = %e, "seeking failed");
            }
        }
    }

    /// Commits group offsets of the partitions this consumer holds.
    fn commit(&self, offsets: &[(i32, i64)], mode: CommitMode) {
        let assigned = self
            .context()
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            if assigned.contains(partition) {
                let _ = tpl.add_partition_offset(
                    &self.context().topic,
                    *partition,
                    Offset::Offset(*next),
                );
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, mode)
        {
            debug!(error = %e, "committing group offsets failed (lag monitoring only)");
        }
    }

    /// Decodes polled messages into one batch per partition; each ends before the partition's
    /// first record of a newer schema version, if any (and then says which).
    fn decode(
        &mut self,
        raw: Vec<Raw>,
        payloads: &[u8],
    ) -> Result<(Vec<SourceBatch>, Option<String>), KafkaSourceError> {
        let topic = self.context().topic.clone();
        let mut by_partition: BTreeMap<i32, Vec<Raw>> = BTreeMap::new();
        for message in raw {
            by_partition
                .entry(message.partition)
                .or_default()
                .push(message);
        }
        let mut batches = Vec::with_capacity(by_partition.len());
        let mut newer = None;
        for (partition, messages) in by_partition {
            let (batch, changed) = self.decode_partition(&topic, partition, &messages, payloads)?;
            batches.push(batch);
            if let Some((offset, schema)) = changed {
                newer.get_or_insert(format!("{topic}-{partition}@{offset}: {schema}"));
            }
        }
        Ok((batches, newer))
    }

    fn decode_partition(
        &mut self,
        topic: &str,
        partition: i32,
        messages: &[Raw],
        payloads: &[u8],
    ) -> Result<(SourceBatch, Option<(i64, NewerSchema)>), KafkaSourceError> {
        let records: Vec<(i64, Option<&[u8]>)> = messages
            .iter()
            .map(|m| (m.offset, m.value.clone().map(|range| &payloads[range])))
            .collect();
        let decoded = self
            .decoder
            .decode_records(&records, None)
            .map_err(|source| KafkaSourceError::Schema {
                topic: topic.to_string(),
                partition,
                source: Box::new(source),
            })?;
        kappa_metrics::events::source::Read {
            topic,
            partition,
            records: messages.len() as u64,
            bytes: messages
                .iter()
                .map(|m| m.value.as_ref().map_or(0, ExactSizeIterator::len) as u64)
                .sum(),
        }
        .emit();
        let first = messages.first().map_or(0, |m| m.offset);
        let (end, records_in) = match &decoded.newer {
            Some((stop, _)) => (*stop, messages.iter().filter(|m| m.offset < *stop).count()),
            None => (
                messages.last().map_or(first, |m| m.offset + 1),
                messages.len(),
            ),
        };
        let records = if self.decoder.mapping().kafka_metadata().is_empty() {
            decoded.records
        } else {
            // The decoded rows are the messages at `decoded.offsets`, in order.
            let mut by_offset = messages.iter().peekable();
            let rows = decoded.offsets.iter().map(|offset| {
                while by_offset.next_if(|m| m.offset < *offset).is_some() {}
                let Some(m) = by_offset.peek().filter(|m| m.offset == *offset) else {
                    return KafkaRecordMetadata::default();
                };
                let Some(meta) = &m.metadata else {
                    return KafkaRecordMetadata::default();
                };
                KafkaRecordMetadata {
                    key: meta.key.clone().map(|range| &payloads[range]),
                    timestamp_ms: meta.timestamp_ms,
                    headers: meta.headers.as_deref(),
                }
            });
            let rows: Vec<KafkaRecordMetadata<'_>> = rows.collect();
            self.decoder
                .mapping()
                .fill_kafka_metadata(decoded.records, rows.into_iter())
                .map_err(|source| KafkaSourceError::Schema {
                    topic: topic.to_string(),
                    partition,
                    source: Box::new(source),
                })?
        };
        let batch = SourceBatch {
            partition: TopicPartition::new(topic, partition),
            range: OffsetRange::new(first, end),
            offsets: decoded.offsets,
            records,
            dead_letters: decoded.dead_letters,
            records_in: records_in as u64,
        };
        Ok((batch, decoded.newer))
    }
}

/// Measures the consumer lag of every assigned partition every [`LAG_EVERY`] until `stop`: the
/// broker's high watermark minus the table's position (`committed`, the offsets last committed
/// to the table; a partition the table holds nothing of counts from the low watermark). On a
/// thread of its own, so that a slow broker never holds up polling.
pub(crate) fn measure_lag(
    consumer: Arc<BaseConsumer<KappaContext>>,
    committed: Arc<Mutex<Vec<(i32, i64)>>>,
    stop: Arc<AtomicBool>,
    progress: Option<kappa_metrics::StallWatch>,
) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < LAG_EVERY {
            continue;
        }
        last = Instant::now();
        let context = consumer.context();
        let mut assigned = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        // A stopped partition's lag grows while it waits for an operator: it shows.
        if let Ok(stopped) = context.stopped.lock() {
            assigned.extend(stopped.keys());
        }
        let committed = committed.lock().map(|c| c.clone()).unwrap_or_default();
        let topic = &context.topic;
        // Caught up: every assigned partition measured at lag 0 (an idle topic is not stalled).
        let mut caught_up = !assigned.is_empty();
        for partition in assigned {
            if stop.load(Ordering::Acquire) {
                return;
            }
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(2)) {
                Ok((low, high)) => {
                    let position = committed
                        .iter()
                        .find(|(p, _)| *p == partition)
                        .map_or(low, |(_, next)| *next);
                    let lag = (high - position).max(0);
                    caught_up &= lag == 0;
                    kappa_metrics::events::source::ConsumerLag {
                        topic,
                        partition,
                        lag,
                    }
                    .emit();
                }
                Err(e) => {
                    caught_up = false;
                    debug!(partition, error = %e, "high watermark unavailable; lag not measured")
                }
            }
        }
        if caught_up && let Some(progress) = &progress {
            progress.progressed();
        }
    }
}
