//! The live source: a consumer (a shard, or a group member) whose partitions start at the
//! table's offsets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use kappa_config::KafkaAssignment;
use kappa_core::{Source, SourceBatch, SourceEvent, SourcePosition, TopicPartition};
use kappa_schema::{SchemaRegistry, TableMapping, WireDecoder};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::consumer::{Command, KappaContext, Polled, Poller, Starts, measure_lag};
use crate::error::KafkaSourceError;
use crate::metadata::wait_for_topic;
use crate::options::KafkaOptions;

/// Batches queued between the consumer thread and the pipeline.
const QUEUE: usize = 4;

/// Reads a topic's shard, or its share as a consumer group member (see the crate docs).
pub struct KafkaSource {
    topic: String,
    rx: mpsc::Receiver<Polled>,
    commands: std::sync::mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Epoch of the newest assignment seen; batches of other epochs are stale.
    epoch: u64,
    /// Partitions of the newest assignment.
    assigned: Vec<i32>,
    /// The consumer thread waits for the start offsets of the newest assignment.
    awaiting_starts: Option<oneshot::Sender<Starts>>,
    /// Next offset per partition of the batches handed out since the assignment.
    next: std::collections::BTreeMap<i32, i64>,
    ready: VecDeque<SourceBatch>,
    /// Last group offsets sent, to skip repeats.
    committed: Option<Vec<(i32, i64)>>,
    /// A newer schema met by the consumer thread: reported once the batches before it are out.
    schema_change: Option<String>,
    /// The table's position, for the lag thread.
    table_offsets: Arc<Mutex<Vec<(i32, i64)>>>,
    lag_thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("epoch", &self.epoch)
            .field("assigned", &self.assigned)
            .finish()
    }
}

impl KafkaSource {
    /// Waits (up to `startup_timeout`, saying so) until the brokers answer and the topic exists,
    /// then starts the consumer thread: a shard assigns its partitions at once, a group member
    /// joins the group and is assigned partitions on a poll. Each starts where the pipeline says
    /// when it answers the [`SourceEvent::Reassigned`] with a `seek`.
    pub async fn connect(
        options: KafkaOptions,
        mapping: Arc<TableMapping>,
        registry: Arc<dyn SchemaRegistry>,
    ) -> Result<Self, KafkaSourceError> {
        let partitions = {
            let waiting = options.clone();
            tokio::task::spawn_blocking(move || wait_for_topic(&waiting))
                .await
                .map_err(|e| KafkaSourceError::Stopped {
                    topic: options.topic.clone(),
                    message: e.to_string(),
                })??
        };
        match options.assignment {
            KafkaAssignment::Group => {
                info!(topic = %options.topic, partitions, brokers = %options.bootstrap_servers, group = %options.group_id, "joining the consumer group")
            }
            KafkaAssignment::Shard { index, count } => {
                info!(topic = %options.topic, partitions, brokers = %options.bootstrap_servers, shard = %format!("{index}/{count}"), "reading the shard's partitions, without a consumer group")
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let table_offsets: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
        let context = KappaContext {
            topic: options.topic.clone(),
            start: options.start,
            brokers: options.bootstrap_servers.clone(),
            epoch: AtomicU64::new(0),
            events: tx,
            stop: stop.clone(),
            assignment: Mutex::new(Vec::new()),
            stopped: Mutex::default(),
            starts: Mutex::default(),
            health: options.health.clone(),
            table: table_offsets.clone(),
        };
        let consumer: BaseConsumer<KappaContext> = options
            .client_config(true)
            .create_with_context(context)
            .map_err(|e| KafkaSourceError::Config(e.to_string()))?;
        // A shard assigns its partitions on the consumer thread; a group member subscribes and
        // is assigned partitions in the rebalance callback.
        if options.assignment == KafkaAssignment::Group {
            consumer
                .subscribe(&[&options.topic])
                .map_err(|source| KafkaSourceError::Client {
                    topic: options.topic.clone(),
                    operation: "subscribing".into(),
                    source: Box::new(source),
                })?;
        }
        let (commands, command_rx) = std::sync::mpsc::channel();
        let decoder = match &options.evolve_subject {
            Some(subject) => WireDecoder::new(mapping, registry).evolving(subject.clone()),
            None => WireDecoder::new(mapping, registry),
        };
        let consumer = Arc::new(consumer);
        let lag_thread = {
            let (consumer, offsets, stop) = (consumer.clone(), table_offsets.clone(), stop.clone());
            let progress = options.progress.clone();
            std::thread::Builder::new()
                .name("kappa-kafka-lag".into())
                .spawn(move || measure_lag(consumer, offsets, stop, progress))
                .map_err(|e| KafkaSourceError::Stopped {
                    topic: options.topic.clone(),
                    message: format!("cannot start the lag thread: {e}"),
                })?
        };
        let poller = Poller {
            consumer,
            decoder,
            commands: command_rx,
            max_batch: options.max_batch.max(1),
            linger: options.linger,
            progress: options.progress.clone(),
            assignment: options.assignment,
        };
        let runtime = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("kappa-kafka".into())
            .spawn(move || poller.run(runtime))
            .map_err(|e| KafkaSourceError::Stopped {
                topic: options.topic.clone(),
                message: format!("cannot start the consumer thread: {e}"),
            })?;
        Ok(Self {
            topic: options.topic,
            rx,
            commands,
            stop,
            thread: Some(thread),
            epoch: 0,
            assigned: Vec::new(),
            awaiting_starts: None,
            next: Default::default(),
            ready: VecDeque::new(),
            committed: None,
            schema_change: None,
            table_offsets,
            lag_thread: Some(lag_thread),
        })
    }

    /// Seeks the partitions being read back to `starts` (of `position`). While the consumer
    /// thread gets to it, what it hands on is drained (it may be blocked handing on batches of
    /// the old epoch); a new assignment meanwhile is answered from `position`, and the seek,
    /// then stale, is dropped by the consumer thread.
    async fn seek_assigned(
        &mut self,
        position: &SourcePosition,
        starts: Starts,
    ) -> Result<(), KafkaSourceError> {
        let stopped = |topic: &str| KafkaSourceError::Stopped {
            topic: topic.to_string(),
            message: "the consumer thread ended".into(),
        };
        let (tx, mut reply) = oneshot::channel();
        let seek = Command::Seek {
            epoch: self.epoch,
            starts: starts.clone(),
            reply: tx,
        };
        if self.commands.send(seek).is_err() {
            return Err(stopped(&self.topic));
        }
        loop {
            tokio::select! {
                answer = &mut reply => {
                    let Ok(answer) = answer else { return Err(stopped(&self.topic)) };
                    if let Some(epoch) = answer {
                        self.epoch = epoch;
                        self.next.clear();
                        self.expect(&starts);
                        info!(?starts, "partitions sought back to the table's offsets");
                    }
                    return Ok(());
                }
                polled = self.rx.recv() => match polled {
                    None => return Err(stopped(&self.topic)),
                    Some(Polled::Failed(e)) => return Err(e),
                    Some(Polled::Reassigned { epoch, partitions, reply }) => {
                        self.epoch = epoch;
                        self.assigned = partitions;
                        self.next.clear();
                        if let Some(reply) = reply {
                            let starts = self.starts(position);
                            info!(?starts, "reassigned while seeking: partitions start at the table's offsets");
                            self.expect(&starts);
                            let _ = reply.send(starts);
                        }
                    }
                    // Read before the seek: read again after it.
                    Some(Polled::Batches { .. } | Polled::Idle | Polled::SchemaChanged { .. }) => {}
                },
            }
        }
    }

    /// Batches handed out from now on start at `starts` (a partition without a start takes
    /// whatever comes first).
    fn expect(&mut self, starts: &Starts) {
        for (p, start) in starts {
            if let Some(start) = start {
                self.next.insert(*p, *start);
            }
        }
    }

    /// Where each assigned partition starts by `position`.
    fn starts(&self, position: &SourcePosition) -> Starts {
        self.assigned
            .iter()
            .map(|p| {
                let tp = TopicPartition::new(self.topic.clone(), *p);
                (*p, position.next_offset(&tp))
            })
            .collect()
    }

    /// Accepts a batch of the current assignment: drops what was already handed out (a batch
    /// never goes backwards) and closes the range to the previous batch's end (offsets absent in
    /// the topic, e.g. transaction markers or compacted records, belong to no record).
    fn accept(&mut self, batch: SourceBatch) -> Option<SourceBatch> {
        let partition = batch.partition.partition;
        let batch = match self.next.get(&partition).copied() {
            Some(next) if batch.range.end <= next => return None,
            Some(next) if batch.range.start < next => batch.skip_before(next),
            Some(next) if batch.range.start > next => {
                // The broker skips only offsets without a record for the consumer (transaction
                // markers, aborted or compacted records): an offset it no longer holds is
                // refused (`auto.offset.reset = error`), never skipped.
                kappa_metrics::events::source::OffsetsAbsent {
                    topic: &self.topic,
                    partition,
                    from: next,
                    to: batch.range.start,
                }
                .emit();
                let mut batch = batch;
                batch.range.start = next;
                batch
            }
            _ => batch,
        };
        self.next.insert(partition, batch.range.end);
        Some(batch)
    }
}

#[async_trait]
impl Source for KafkaSource {
    type Error = KafkaSourceError;

    fn partitions(&self) -> Vec<TopicPartition> {
        self.assigned
            .iter()
            .map(|p| TopicPartition::new(self.topic.clone(), *p))
            .collect()
    }

    /// Answers the consumer thread's pending assignment: each assigned partition starts at
    /// `position`'s next offset, or by `[source.kafka] start` when the table holds nothing of it.
    /// Without a pending assignment the partitions being read are sought back to `position`
    /// (after a paused, blocked flush the pipeline reads it again); batches polled before are
    /// dropped.
    async fn seek(&mut self, position: &SourcePosition) -> Result<(), KafkaSourceError> {
        self.ready.clear();
        self.next.clear();
        self.schema_change = None;
        let starts = self.starts(position);
        let Some(reply) = self.awaiting_starts.take() else {
            if starts.is_empty() {
                return Ok(());
            }
            return self.seek_assigned(position, starts).await;
        };
        info!(?starts, "partitions start at the table's offsets");
        self.expect(&starts);
        if reply.send(starts).is_err() {
            warn!("the consumer thread stopped before the assignment");
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Result<SourceEvent, KafkaSourceError> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                return Ok(SourceEvent::Batch(batch));
            }
            if let Some(reason) = self.schema_change.take() {
                return Ok(SourceEvent::SchemaChanged(reason));
            }
            // The only await point: cancelling here loses nothing.
            let Some(polled) = self.rx.recv().await else {
                return Err(KafkaSourceError::Stopped {
                    topic: self.topic.clone(),
                    message: "the consumer thread ended".into(),
                });
            };
            match polled {
                Polled::Batches { epoch, batches } => {
                    if epoch != self.epoch || self.awaiting_starts.is_some() {
                        debug!(
                            epoch,
                            current = self.epoch,
                            "dropping batches of an old assignment"
                        );
                        continue;
                    }
                    for batch in batches {
                        if let Some(batch) = self.accept(batch) {
                            self.ready.push_back(batch);
                        }
                    }
                }
                Polled::Idle => return Ok(SourceEvent::Idle),
                Polled::SchemaChanged { epoch, reason } => {
                    if epoch == self.epoch && self.awaiting_starts.is_none() {
                        self.schema_change = Some(reason);
                    }
                }
                Polled::Reassigned {
                    epoch,
                    partitions,
                    reply,
                } => {
                    self.epoch = epoch;
                    self.assigned = partitions;
                    self.awaiting_starts = reply;
                    self.ready.clear();
                    self.next.clear();
                    return Ok(SourceEvent::Reassigned(self.partitions()));
                }
                Polled::Failed(e) => return Err(e),
            }
        }
    }

    fn committed(&mut self, position: &SourcePosition) {
        let offsets: Vec<(i32, i64)> = position
            .iter()
            .filter(|(tp, _)| tp.topic == self.topic)
            .map(|(tp, next)| (tp.partition, next))
            .collect();
        if self.committed.as_ref() == Some(&offsets) {
            return;
        }
        self.committed = Some(offsets.clone());
        if let Ok(mut table) = self.table_offsets.lock() {
            table.clone_from(&offsets);
        }
        let _ = self.commands.send(Command::CommitGroupOffsets(offsets));
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblocks the consumer thread if it waits to hand something on or for start offsets.
        self.rx.close();
        self.awaiting_starts = None;
        // The lag thread first: the consumer then closes on the consumer thread, as before.
        if let Some(lag) = self.lag_thread.take()
            && lag.join().is_err()
        {
            warn!("the lag thread panicked");
        }
        if let Some(thread) = self.thread.take() {
            let started = Instant::now();
            if thread.join().is_err() {
                warn!("the consumer thread panicked");
            }
            debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "consumer closed"
            );
        }
    }
}
