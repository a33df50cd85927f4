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

use kappa_core::{OffsetRange, SourceBatch, TopicPartition};
use kappa_schema::{NewerSchema, WireDecoder};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::error::{KafkaSourceError, is_fatal};
use kappa_config::KafkaStart;

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
    pub assignment: Mutex<Vec<i32>>,
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
                let mut assignment = TopicPartitionList::new();
                for p in &partitions {
                    let offset = match starts.get(p).copied().flatten() {
                        Some(next) => Offset::Offset(next),
                        None => match self.start {
                            KafkaStart::Earliest | KafkaStart::EarliestAvailable => {
                                Offset::Beginning
                            }
                            KafkaStart::Latest => Offset::End,
                        },
                    };
                    if let Err(e) = assignment.add_partition_offset(&self.topic, *p, offset) {
                        error!(partition = p, error = %e, "cannot build the assignment");
                    }
                }
                match consumer.assign(&assignment) {
                    Ok(()) => {
                        debug!(?starts, "assigned at the table's offsets");
                        if let Ok(mut a) = self.assignment.lock() {
                            *a = partitions;
                        }
                    }
                    Err(e) => error!(error = %e, "assigning partitions failed"),
                }
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

impl KappaContext {
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
}

/// The consumer thread's state.
pub(crate) struct Poller {
    pub consumer: Arc<BaseConsumer<KappaContext>>,
    pub decoder: WireDecoder,
    pub commands: std::sync::mpsc::Receiver<Command>,
    pub max_batch: usize,
    pub linger: Duration,
    pub progress: Option<kappa_metrics::StallWatch>,
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
/// How often the consumer lag (broker high watermark − the table's position) is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);

impl Poller {
    fn context(&self) -> &KappaContext {
        self.consumer.context()
    }

    /// Runs until the source stops it (or drops the receiving end).
    pub fn run(mut self, runtime: tokio::runtime::Handle) {
        let _runtime = runtime.enter();
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
        while !self.context().stop.load(Ordering::Acquire) {
            if pending.is_empty() {
                payloads.clear();
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
                Some(Ok(m)) => Some(Raw {
                    partition: m.partition(),
                    offset: m.offset(),
                    value: m.payload().map(|value| {
                        let start = payloads.len();
                        payloads.extend_from_slice(value);
                        start..payloads.len()
                    }),
                }),
                Some(Err(e)) => {
                    if let Some(code) = e.rdkafka_error_code()
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

    /// Moves the assigned partitions of `starts` back (or on) to its offsets, in a new epoch.
    fn seek(&self, starts: &Starts) -> u64 {
        let context = self.context();
        let epoch = context.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let assigned = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        for (partition, start) in starts {
            if !assigned.contains(partition) {
                continue;
            }
            let offset = match start {
                Some(next) => Offset::Offset(*next),
                None => match context.start {
                    KafkaStart::Earliest | KafkaStart::EarliestAvailable => Offset::Beginning,
                    KafkaStart::Latest => Offset::End,
                },
            };
            if let Err(e) =
                self.consumer
                    .seek(&context.topic, *partition, offset, Duration::from_secs(10))
            {
                warn!(partition, error = %e, "seeking failed");
            }
        }
        debug!(
            ?starts,
            epoch, "partitions sought back to the table's offsets"
        );
        epoch
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
        let batch = SourceBatch {
            partition: TopicPartition::new(topic, partition),
            range: OffsetRange::new(first, end),
            offsets: decoded.offsets,
            records: decoded.records,
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
        let assigned = context
            .assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
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
