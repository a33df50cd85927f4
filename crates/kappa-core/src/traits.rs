//! The contracts between pipeline stages.

use async_trait::async_trait;

use crate::batch::SourceBatch;
use crate::error::Classify;
use crate::position::{SourcePosition, TopicPartition};

/// What a source has to say next.
#[derive(Debug)]
pub enum SourceEvent {
    /// Decoded records of one partition.
    Batch(SourceBatch),
    /// Nothing arrived within the source's poll interval (unbounded sources): a chance for the
    /// runtime to commit on time although no data flows.
    Idle,
    /// The partitions this source reads changed (a consumer group rebalance): everything read
    /// but not committed must be dropped, and the source sought again from the table's
    /// position ([`Source::seek`]) before it yields more batches. Carries the new assignment.
    Reassigned(Vec<TopicPartition>),
    /// The records from here on were written with a newer version of the subject than the table
    /// knows (the reason says which fields are new). Everything yielded so far is valid: the
    /// runtime commits it and ends the run, so that the caller evolves the table and starts
    /// again from the table's position with a source for the new schema.
    SchemaChanged(String),
    /// A bounded source is exhausted.
    End,
}

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

    /// The next event. Must be cancel-safe: dropping the future before it completes loses
    /// nothing (the runtime races it against shutdown).
    async fn next_event(&mut self) -> Result<SourceEvent, Self::Error>;

    /// The next batch, or `None` once a bounded source is exhausted or needs a newer schema
    /// (idle polls and reassignments are skipped: for readers that only drain a bounded source).
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>, Self::Error> {
        loop {
            match self.next_event().await? {
                SourceEvent::Batch(batch) => return Ok(Some(batch)),
                SourceEvent::End | SourceEvent::SchemaChanged(_) => return Ok(None),
                SourceEvent::Idle | SourceEvent::Reassigned(_) => {}
            }
        }
    }

    /// The table now holds everything before `position` (called after each commit). A live
    /// source reports it to the broker (consumer group offsets) so that standard tooling shows
    /// the lag; it is never read back as a position.
    fn committed(&mut self, position: &SourcePosition) {
        let _ = position;
    }
}

/// Counters a logic reports for one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogicStats {
    /// Rows dropped because their dedup key was already seen.
    pub duplicates_dropped: u64,
    /// Rows moved to the dead letters by the logic.
    pub rejected: u64,
}

/// Business logic: a deterministic function of the batches it has seen (no wall clock, no I/O).
/// The same logic runs live and on replay (`[pipeline] logic` names it).
pub trait Logic: Send {
    /// The error this logic fails with (schema mismatches, never bad data: bad records become
    /// dead letters).
    type Error: std::error::Error + Classify + Send + Sync + 'static;

    /// The name `[pipeline] logic` selects it by (`orders`, `identity`).
    fn name(&self) -> &'static str;

    /// Applies the logic to one batch. Rows may be dropped (duplicates, counted in the stats) or moved to
    /// `dead_letters`; nothing else disappears.
    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), Self::Error>;

    /// Feeds an already committed batch to rebuild state (for example the dedup window) without
    /// producing output. Called on restart for the records just before the resume position.
    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), Self::Error>;

    /// Forgets all state, as if new (before a re-read from the table's position after a
    /// consumer group rebalance).
    fn reset(&mut self);
}

/// A boxed logic is a logic: what a registry's factory returns runs like the concrete type.
impl<L: Logic + ?Sized> Logic for Box<L> {
    type Error = L::Error;

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), Self::Error> {
        (**self).apply(batch)
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), Self::Error> {
        (**self).warm_up(batch)
    }

    fn reset(&mut self) {
        (**self).reset()
    }
}
