//! The contracts between pipeline stages.

use async_trait::async_trait;

use crate::batch::SourceBatch;
use crate::error::Classify;
use crate::position::{SourcePosition, TopicPartition};

/// Something that yields [`SourceBatch`]es: a live Kafka consumer or an archive replay.
///
/// A source starts where it is told ([`Source::seek`]); positions come from the table, never
/// from the source's own bookkeeping.
#[async_trait]
pub trait Source: Send {
    /// The error this source fails with.
    type Error: std::error::Error + Classify + Send + Sync + 'static;

    /// The topic-partitions this source reads.
    fn partitions(&self) -> Vec<TopicPartition>;

    /// Resume every partition at the position's next offset (partitions absent from the position
    /// start at their beginning).
    async fn seek(&mut self, position: &SourcePosition) -> Result<(), Self::Error>;

    /// The next batch, or `None` once a bounded source is exhausted.
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, Self::Error>;
}

/// Counters a transform reports for one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformStats {
    /// Rows dropped because their dedup key was already seen.
    pub duplicates_dropped: u64,
    /// Rows moved to the dead letters by the logic.
    pub rejected: u64,
}

/// Business logic: a deterministic function of the batches it has seen (no wall clock, no I/O).
pub trait Transform: Send {
    /// The error this transform fails with (schema mismatches, never bad data: bad records become
    /// dead letters).
    type Error: std::error::Error + Classify + Send + Sync + 'static;

    /// Transforms one batch. Rows may be dropped (duplicates, counted in the stats) or moved to
    /// `dead_letters`; nothing else disappears.
    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, TransformStats), Self::Error>;

    /// Feeds an already committed batch to rebuild state (for example the dedup window) without
    /// producing output. Called on restart for the records just before the resume position.
    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), Self::Error>;
}
