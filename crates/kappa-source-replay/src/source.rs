//! The replay source: per-partition reader tasks feeding one bounded channel.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kappa_core::{Source, SourceBatch, SourceEvent, SourcePosition, TopicPartition};
use kappa_schema::{SchemaRegistry, TableMapping, WireDecoder};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::archive::decode::{ArchiveLimits, DecodeState, DecodedRun, Fetched, decode_run};
use crate::archive::listing::{ArchiveFile, ArchivePlan};
use crate::error::ReplayError;
use crate::store::ReadLimit;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Topic name (the archive's directory and file prefix).
    pub topic: String,
    /// Partitions read at the same time.
    pub parallelism: usize,
    /// Rows per batch: the records of small files are merged into batches of up to this many.
    pub batch_rows: usize,
    /// Archive objects requested at once, across the partitions being read: what hides an object
    /// store's per-request latency.
    pub fetch_concurrency: usize,
    /// Bytes of fetched objects not yet decoded, across the partitions being read (an object
    /// larger than this is fetched alone).
    pub fetch_buffer_bytes: u64,
    /// What one archive object may cost in memory.
    pub limits: ArchiveLimits,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            topic: "orders".into(),
            parallelism: 4,
            batch_rows: 16_384,
            fetch_concurrency: 64,
            fetch_buffer_bytes: 16 << 20,
            limits: ArchiveLimits::default(),
        }
    }
}

/// Replays a planned archive as a [`Source`].
pub struct ArchiveSource {
    store: Arc<dyn ObjectStore>,
    plan: ArchivePlan,
    options: ReplayOptions,
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
    from: BTreeMap<i32, i64>,
    receiver: Option<mpsc::Receiver<Result<SourceBatch, ReplayError>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSource")
            .field("files", &self.plan.files())
            .field("options", &self.options)
            .finish()
    }
}

impl ArchiveSource {
    /// A source over `plan` (see [`ArchivePlan::list`]).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        plan: ArchivePlan,
        options: ReplayOptions,
        mapping: Arc<TableMapping>,
        registry: Arc<dyn SchemaRegistry>,
    ) -> Self {
        Self {
            store,
            plan,
            options,
            mapping,
            registry,
            from: BTreeMap::new(),
            receiver: None,
            tasks: Vec::new(),
        }
    }

    /// The plan being replayed.
    pub fn plan(&self) -> &ArchivePlan {
        &self.plan
    }

    fn start(&mut self) {
        let parallelism = self.options.parallelism.max(1);
        let readers = parallelism.min(self.plan.partitions.len()).max(1);
        // One merged batch waiting per reader keeps the loop fed; more would only hold memory.
        let (tx, rx) = mpsc::channel(readers);
        let permits = Arc::new(Semaphore::new(parallelism));
        // Objects in flight per reader: the concurrency shared by the readers that run at once.
        let depth = self.options.fetch_concurrency.max(1).div_ceil(readers);
        let buffer = FetchBuffer::new(self.options.fetch_buffer_bytes);
        for (partition, files) in &self.plan.partitions {
            let reader = PartitionReader {
                store: self.store.clone(),
                partition: TopicPartition::new(self.options.topic.clone(), *partition),
                files: files.clone(),
                from: self.from.get(partition).copied().unwrap_or(i64::MIN),
                batch_rows: self.options.batch_rows,
                limits: self.options.limits,
                depth,
                buffer: buffer.clone(),
                mapping: self.mapping.clone(),
                state: DecodeState::new(WireDecoder::new(
                    self.mapping.clone(),
                    self.registry.clone(),
                )),
            };
            let tx = tx.clone();
            let permits = permits.clone();
            self.tasks.push(tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if let Err(e) = reader.run(&tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            }));
        }
        self.receiver = Some(rx);
    }
}

impl Drop for ArchiveSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl Source for ArchiveSource {
    type Error = ReplayError;

    fn partitions(&self) -> Vec<TopicPartition> {
        self.plan
            .partitions
            .keys()
            .map(|p| TopicPartition::new(self.options.topic.clone(), *p))
            .collect()
    }

    async fn seek(&mut self, position: &SourcePosition) -> Result<(), ReplayError> {
        self.from = position
            .iter()
            .filter(|(tp, _)| tp.topic == self.options.topic)
            .map(|(tp, next)| (tp.partition, next))
            .collect();
        Ok(())
    }

    async fn next_event(&mut self) -> Result<SourceEvent, ReplayError> {
        if self.receiver.is_none() {
            self.start();
        }
        let next = match self.receiver.as_mut() {
            Some(rx) => rx.recv().await.transpose()?,
            None => None,
        };
        Ok(next.map_or(SourceEvent::End, SourceEvent::Batch))
    }
}

/// Objects one hand-off to a blocking thread decodes at most: those already fetched when the
/// next one is needed, up to this many and [`MAX_RUN_BYTES`].
const MAX_RUN_OBJECTS: usize = 64;

/// Stored bytes of the objects one run decodes at most (its first object whatever its size):
/// a run's rows are held until its last object is decoded, so this bounds them (2 MiB is 50 of
/// Kafka Connect's deflate files of 1,000 orders, four of 10,000 with snappy).
const MAX_RUN_BYTES: usize = 2 << 20;

/// Reads one partition's files in order.
struct PartitionReader {
    store: Arc<dyn ObjectStore>,
    partition: TopicPartition,
    files: Vec<ArchiveFile>,
    from: i64,
    batch_rows: usize,
    limits: ArchiveLimits,
    /// Objects fetched ahead of the one being decoded, at most.
    depth: usize,
    buffer: FetchBuffer,
    mapping: Arc<TableMapping>,
    /// Kept from file to file (buffers, decoders, parsed writer schemas).
    state: DecodeState,
}

impl PartitionReader {
    /// The object's bytes, refused before its body is read when the store says it is larger
    /// than `max_bytes` (the listing's size may be stale).
    async fn fetch(
        store: Arc<dyn ObjectStore>,
        key: Path,
        max_bytes: u64,
    ) -> Result<Bytes, ReplayError> {
        let err = |source| ReplayError::Store {
            operation: "reading",
            key: key.to_string(),
            source,
        };
        // A local archive reads an object within the limit in one blocking call.
        let mut options = GetOptions::default();
        options.extensions.insert(ReadLimit(max_bytes));
        let object = store.get_opts(&key, options).await.map_err(err)?;
        if object.meta.size > max_bytes {
            return Err(ReplayError::OverLimit {
                key: key.to_string(),
                message: format!(
                    "the object is {} bytes, more than the limit of {max_bytes} ([source.archive] max_object_bytes)",
                    object.meta.size
                ),
            });
        }
        object.bytes().await.map_err(err)
    }

    /// Starts the fetches of `files` not yet requested, in order, up to `depth` objects ahead of
    /// file `next`, each with its room in the buffer. Only the object needed next may wait for
    /// room, and only when `may_wait` (the reader holds no object: one waiting with objects in
    /// hand would hold room other readers need); behind it, a fetch starts only when there is
    /// room now.
    async fn start_fetches(
        &self,
        files: &[ArchiveFile],
        next: usize,
        requested: &mut usize,
        inflight: &mut Fetches,
        may_wait: bool,
    ) -> Result<(), ReplayError> {
        while *requested < files.len() && *requested < next + self.depth {
            let size = files[*requested].size;
            let permit = if may_wait && inflight.0.is_empty() {
                self.buffer
                    .wait(size)
                    .await
                    .ok_or_else(|| ReplayError::Task {
                        partition: self.partition.partition,
                        message: "the fetch buffer was closed".into(),
                    })?
            } else {
                match self.buffer.try_take(size) {
                    Some(permit) => permit,
                    None => break,
                }
            };
            let fetch = Self::fetch(
                self.store.clone(),
                files[*requested].key.clone(),
                self.limits.max_object_bytes,
            );
            inflight.0.push_back((tokio::spawn(fetch), permit));
            *requested += 1;
        }
        Ok(())
    }

    async fn run(
        mut self,
        tx: &mpsc::Sender<Result<SourceBatch, ReplayError>>,
    ) -> Result<(), ReplayError> {
        // Skip files that end at or before the start position (a file ends where the next starts).
        let first = self
            .files
            .iter()
            .enumerate()
            .position(|(i, _)| {
                self.files
                    .get(i + 1)
                    .is_none_or(|next| next.start_offset > self.from)
            })
            .unwrap_or(self.files.len());
        let files: Vec<ArchiveFile> = self.files.split_off(first);
        // The next offset not yet emitted: files may overlap (Kafka Connect rewrites a range
        // after a task restart, so `+0` can hold 0–99 and `+50` 50–149), and what an earlier
        // file gave is never emitted again.
        let mut next = self.from;
        // Fetches run as their own tasks, up to `depth` objects ahead and within the shared
        // buffer; objects are decoded in order as they arrive.
        let mut inflight = Fetches::default();
        let mut requested = 0;
        let mut merged = Coalesce::new(self.batch_rows);
        let mut i = 0;
        while i < files.len() {
            self.start_fetches(&files, i, &mut requested, &mut inflight, true)
                .await?;
            // The object needed next, and those fetched behind it already: decoded as one run
            // (one hand-off to a blocking thread, and value records across files in one batch).
            let mut run: Vec<(Bytes, OwnedSemaphorePermit)> = Vec::new();
            let mut run_bytes = 0;
            // How long the object needed next kept this reader waiting (the store's latency,
            // unless enough fetches ran ahead to hide it).
            let mut waited = Duration::ZERO;
            while run.len() < MAX_RUN_OBJECTS
                && run_bytes < MAX_RUN_BYTES
                && i + run.len() < files.len()
            {
                let ready = inflight.0.front().is_some_and(|(h, _)| h.is_finished());
                if !run.is_empty() && !ready {
                    break;
                }
                let Some((handle, permit)) = inflight.0.pop_front() else {
                    return Err(ReplayError::Task {
                        partition: self.partition.partition,
                        message: format!("no fetch of {} was started", files[i + run.len()].key),
                    });
                };
                let since = Instant::now();
                let bytes = handle.await.map_err(|e| ReplayError::Task {
                    partition: self.partition.partition,
                    message: e.to_string(),
                })??;
                if run.is_empty() {
                    waited = since.elapsed();
                }
                run_bytes += bytes.len();
                run.push((bytes, permit));
            }
            kappa_metrics::events::source::ArchiveWait {
                topic: &self.partition.topic,
                partition: self.partition.partition,
                waited,
            }
            .emit();
            let objects: Vec<(String, i64, Option<i64>)> = (i..i + run.len())
                .map(|j| {
                    let next_start = files.get(j + 1).map(|f| f.start_offset);
                    (files[j].key.to_string(), files[j].start_offset, next_start)
                })
                .collect();
            let count = run.len();
            i += count;
            // The objects behind the run start now, so they arrive while it is decoded (with
            // the run's room still held: none waits for room).
            self.start_fetches(&files, i, &mut requested, &mut inflight, false)
                .await?;
            let (bytes, permits): (Vec<Bytes>, Vec<OwnedSemaphorePermit>) = run.into_iter().unzip();
            let fetched: u64 = bytes.iter().map(|b| b.len() as u64).sum();
            let partition = self.partition.clone();
            let (batch_rows, limits) = (self.batch_rows, self.limits);
            let mapping = self.mapping.clone();
            let mut state = self.state;
            let (state_back, decoded) = tokio::task::spawn_blocking(move || {
                let run: Vec<Fetched<'_>> = objects
                    .iter()
                    .zip(&bytes)
                    .map(|((key, start_offset, next_start), bytes)| Fetched {
                        key,
                        start_offset: *start_offset,
                        next_start: *next_start,
                        bytes,
                    })
                    .collect();
                let decoded = decode_run(
                    &partition, &run, next, batch_rows, limits, &mapping, &mut state,
                );
                (state, decoded)
            })
            .await
            .map_err(|e| ReplayError::Task {
                partition: self.partition.partition,
                message: e.to_string(),
            })?;
            self.state = state_back;
            // The objects' bytes are gone: their room in the buffer is free.
            drop(permits);
            let DecodedRun {
                batches,
                next: after,
                error,
            } = decoded;
            next = after;
            debug!(
                partition = self.partition.partition,
                files = count,
                batches = batches.len(),
                "decoded archive files"
            );
            // The records the files gave past the start position, and the bytes fetched.
            kappa_metrics::events::source::Read {
                topic: &self.partition.topic,
                partition: self.partition.partition,
                records: batches.iter().map(|b| b.records_in).sum(),
                bytes: fetched,
            }
            .emit();
            for batch in batches {
                for full in merged.push(batch)? {
                    if tx.send(Ok(full)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if let Some(error) = error {
                return Err(error);
            }
        }
        if let Some(last) = merged.finish()?
            && tx.send(Ok(last)).await.is_err()
        {
            return Ok(());
        }
        Ok(())
    }
}

/// A reader's fetches in flight, in file order, each with its room in the buffer; those left
/// when the reader stops (an error, the replay dropped) are aborted.
#[derive(Default)]
struct Fetches(VecDeque<(JoinHandle<Result<Bytes, ReplayError>>, OwnedSemaphorePermit)>);

impl Drop for Fetches {
    fn drop(&mut self) {
        for (fetch, _) in &self.0 {
            fetch.abort();
        }
    }
}

/// Room for fetched objects not yet decoded, shared by a replay's readers, in bytes.
#[derive(Debug, Clone)]
struct FetchBuffer {
    room: Arc<Semaphore>,
    /// The whole buffer, in permits (an object larger than it takes all of it).
    size: u32,
}

impl FetchBuffer {
    fn new(bytes: u64) -> Self {
        let size = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS as u64)).unwrap_or(u32::MAX);
        Self {
            room: Arc::new(Semaphore::new(size as usize)),
            size,
        }
    }

    fn permits(&self, bytes: u64) -> u32 {
        u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.size)
    }

    /// Room for an object of `bytes` (its listed size), waiting for it (`None` only if the
    /// semaphore were closed, which it never is).
    async fn wait(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.room
            .clone()
            .acquire_many_owned(self.permits(bytes))
            .await
            .ok()
    }

    /// Room for an object of `bytes` if there is some now.
    fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.room
            .clone()
            .try_acquire_many_owned(self.permits(bytes))
            .ok()
    }
}

/// Consecutive batches of one partition merged into batches of about `rows` records: a file of
/// Kafka Connect's `flush.size` 1,000 gives batches of 1,000, and every stage after the source
/// pays per batch.
struct Coalesce {
    rows: usize,
    parts: Vec<SourceBatch>,
    records: usize,
}

impl Coalesce {
    fn new(rows: usize) -> Self {
        Self {
            rows: rows.max(1),
            parts: Vec::new(),
            records: 0,
        }
    }

    /// Adds `batch`; returns what is complete (none, or one or two merged batches).
    fn push(&mut self, batch: SourceBatch) -> Result<Vec<SourceBatch>, ReplayError> {
        let mut out = Vec::new();
        // Only contiguous batches of one schema merge, and never into a full one (a run of
        // value files comes decoded in batches of `rows` already: merging what is held into it
        // would copy it whole).
        let joins = self.parts.last().is_none_or(|last| {
            last.range.end == batch.range.start
                && last.records.schema() == batch.records.schema()
                && (batch.records_in as usize) < self.rows
        });
        if !joins && let Some(done) = self.finish()? {
            out.push(done);
        }
        self.records += batch.records_in as usize;
        self.parts.push(batch);
        if self.records >= self.rows
            && let Some(done) = self.finish()?
        {
            out.push(done);
        }
        Ok(out)
    }

    /// The batches held so far, merged.
    fn finish(&mut self) -> Result<Option<SourceBatch>, ReplayError> {
        self.records = 0;
        let mut parts = std::mem::take(&mut self.parts);
        if parts.len() <= 1 {
            return Ok(parts.pop());
        }
        let first = &parts[0];
        let partition = first.partition.clone();
        let schema = first.records.schema();
        let start = first.range.start;
        let end = parts.last().map_or(start, |b| b.range.end);
        let records =
            arrow_select::concat::concat_batches(&schema, parts.iter().map(|b| &b.records))
                .map_err(|e| ReplayError::Task {
                    partition: partition.partition,
                    message: format!("merging decoded batches: {e}"),
                })?;
        let mut offsets = Vec::with_capacity(records.num_rows());
        let mut dead_letters = Vec::new();
        let mut records_in = 0;
        for part in parts {
            offsets.extend(part.offsets);
            dead_letters.extend(part.dead_letters);
            records_in += part.records_in;
        }
        Ok(Some(SourceBatch {
            partition,
            range: kappa_core::OffsetRange::new(start, end),
            records,
            offsets,
            dead_letters,
            records_in,
        }))
    }
}
