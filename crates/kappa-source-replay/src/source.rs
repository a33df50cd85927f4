//! The replay source: per-partition reader tasks feeding one bounded channel.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kappa_core::{Source, SourceBatch, SourceEvent, SourcePosition, TopicPartition};
use kappa_schema::{SchemaRegistry, TableMapping, WireDecoder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::archive::decode::{ArchiveLimits, DecodeState, FileToDecode, decode_file};
use crate::archive::listing::{ArchiveFile, ArchivePlan};
use crate::error::ReplayError;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Topic name (the archive's directory and file prefix).
    pub topic: String,
    /// Partitions read at the same time.
    pub parallelism: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// What one archive object may cost in memory.
    pub limits: ArchiveLimits,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            topic: "orders".into(),
            parallelism: 4,
            batch_rows: 65_536,
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
        let (tx, rx) = mpsc::channel(2 * parallelism);
        let permits = Arc::new(Semaphore::new(parallelism));
        for (partition, files) in &self.plan.partitions {
            let reader = PartitionReader {
                store: self.store.clone(),
                partition: TopicPartition::new(self.options.topic.clone(), *partition),
                files: files.clone(),
                from: self.from.get(partition).copied().unwrap_or(i64::MIN),
                batch_rows: self.options.batch_rows,
                limits: self.options.limits,
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

/// Reads one partition's files in order.
struct PartitionReader {
    store: Arc<dyn ObjectStore>,
    partition: TopicPartition,
    files: Vec<ArchiveFile>,
    from: i64,
    batch_rows: usize,
    limits: ArchiveLimits,
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
        let object = store.get(&key).await.map_err(err)?;
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
        let max_bytes = self.limits.max_object_bytes;
        let mut prefetch: Option<JoinHandle<Result<Bytes, ReplayError>>> = files
            .first()
            .map(|f| tokio::spawn(Self::fetch(self.store.clone(), f.key.clone(), max_bytes)));
        for (i, file) in files.iter().enumerate() {
            let bytes = match prefetch.take() {
                Some(handle) => handle.await.map_err(|e| ReplayError::Task {
                    partition: self.partition.partition,
                    message: e.to_string(),
                })??,
                None => Self::fetch(self.store.clone(), file.key.clone(), max_bytes).await?,
            };
            let next_start = files.get(i + 1).map(|f| f.start_offset);
            prefetch = files
                .get(i + 1)
                .map(|f| tokio::spawn(Self::fetch(self.store.clone(), f.key.clone(), max_bytes)));
            let key = file.key.to_string();
            let fetched = bytes.len() as u64;
            let job = FileJob {
                key,
                partition: self.partition.clone(),
                start_offset: file.start_offset,
                next_start,
                from: next,
                batch_rows: self.batch_rows,
                limits: self.limits,
            };
            let mapping = self.mapping.clone();
            let mut state = self.state;
            let (state_back, result) = tokio::task::spawn_blocking(move || {
                let file = FileToDecode {
                    key: &job.key,
                    partition: &job.partition,
                    start_offset: job.start_offset,
                    next_start: job.next_start,
                    from: job.from,
                    batch_rows: job.batch_rows,
                    limits: job.limits,
                };
                let result = decode_file(&file, &bytes, &mapping, &mut state);
                (state, result)
            })
            .await
            .map_err(|e| ReplayError::Task {
                partition: self.partition.partition,
                message: e.to_string(),
            })?;
            self.state = state_back;
            let batches = result?;
            if let Some(last) = batches.last() {
                next = next.max(last.range.end);
            }
            debug!(key = %file.key, batches = batches.len(), "decoded archive file");
            // Per file: the records it gave past the start position, and the bytes fetched.
            kappa_metrics::events::source::Read {
                topic: &self.partition.topic,
                partition: self.partition.partition,
                records: batches.iter().map(|b| b.records_in).sum(),
                bytes: fetched,
            }
            .emit();
            for batch in batches {
                if tx.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

struct FileJob {
    key: String,
    partition: TopicPartition,
    start_offset: i64,
    next_start: Option<i64>,
    from: i64,
    batch_rows: usize,
    limits: ArchiveLimits,
}
