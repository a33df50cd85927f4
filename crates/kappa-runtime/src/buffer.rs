//! Buffering transformed batches until the commit policy says flush.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_schema::DataType;
use kappa_core::{
    DeadLetter, DeadLetterKind, OffsetRange, SourceBatch, TopicPartition, TransformStats,
};
use kappa_schema::TableMapping;

use crate::error::RuntimeError;

/// When to commit.
#[derive(Debug, Clone)]
pub struct CommitPolicy {
    /// Commit at least this often while data flows.
    pub interval: Duration,
    /// Commit once this many rows are buffered.
    pub rows: usize,
    /// Commit once this many bytes (Arrow memory) are buffered.
    pub bytes: usize,
    /// Attempts per commit (conflicts, unknown outcomes) before giving up.
    pub max_attempts: u32,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            rows: 1_000_000,
            bytes: 256 * 1024 * 1024,
            max_attempts: 10,
        }
    }
}

/// Everything read since the last flush.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    pub input: BTreeMap<TopicPartition, OffsetRange>,
    pub dead: BTreeMap<TopicPartition, Vec<DeadLetter>>,
    pub records_in: u64,
    pub duplicates: u64,
    pub undecodable: u64,
    pub unmappable: u64,
    pub rejected: u64,
    /// Rows whose event time is behind the watermark when they were read (appended, counted).
    pub late: u64,
    pub max_event_time: Option<i64>,
    num_rows: usize,
    bytes: usize,
    started: Option<Instant>,
}

impl Buffer {
    /// Accounts for a transformed batch and returns its rows as table rows (with the Kafka
    /// coordinate columns, by `table`'s mapping), if it has any. Rows with an event time before
    /// `watermark` are counted as late.
    pub fn add(
        &mut self,
        batch: SourceBatch,
        stats: TransformStats,
        table: &TableMapping,
        event_time: &str,
        watermark: Option<i64>,
    ) -> Result<Option<RecordBatch>, RuntimeError> {
        self.started.get_or_insert_with(Instant::now);
        let tp = batch.partition.clone();
        match self.input.get_mut(&tp) {
            Some(range) => {
                *range = range.union(&batch.range).ok_or_else(|| {
                    RuntimeError::Invariant(format!(
                        "{tp}: batch {} does not continue the buffered range {range}",
                        batch.range
                    ))
                })?;
            }
            None => {
                self.input.insert(tp.clone(), batch.range);
            }
        }
        self.records_in += batch.records_in;
        self.duplicates += stats.duplicates_dropped;
        for letter in &batch.dead_letters {
            match letter.kind {
                DeadLetterKind::Undecodable => self.undecodable += 1,
                DeadLetterKind::UnmappableSchema => self.unmappable += 1,
                DeadLetterKind::Rejected | DeadLetterKind::RuleViolation => self.rejected += 1,
            }
        }
        if let Some(watermark) = watermark {
            self.late += count_before(&batch.records, event_time, watermark);
        }
        if let Some(max) = max_micros(&batch.records, event_time) {
            self.max_event_time = Some(self.max_event_time.map_or(max, |m| m.max(max)));
        }
        let rows = if batch.records.num_rows() > 0 {
            let rows = table
                .table_batch(&batch.records, batch.partition.partition, &batch.offsets)
                .map_err(|e| {
                    RuntimeError::Invariant(format!(
                        "{}: rows do not match the table schema: {e}",
                        batch.partition
                    ))
                })?;
            self.num_rows += rows.num_rows();
            self.bytes += rows.get_array_memory_size();
            Some(rows)
        } else {
            None
        };
        if !batch.dead_letters.is_empty() {
            self.dead.entry(tp).or_default().extend(batch.dead_letters);
        }
        Ok(rows)
    }

    /// Whether the policy calls for a commit now.
    pub fn should_flush(&self, policy: &CommitPolicy) -> bool {
        self.num_rows >= policy.rows
            || self.bytes >= policy.bytes
            || self.started.is_some_and(|s| s.elapsed() >= policy.interval)
    }

    /// Whether anything (even only offsets) awaits a commit.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Dead letters buffered.
    pub fn dead_lettered(&self) -> u64 {
        self.undecodable + self.unmappable + self.rejected
    }
}

/// Newest value of a microsecond timestamp column, if the column exists and has values.
fn max_micros(batch: &RecordBatch, column: &str) -> Option<i64> {
    let array = batch.column_by_name(column)?;
    match array.data_type() {
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .max(),
        _ => None,
    }
}

/// Rows of a microsecond timestamp column with a value before `bound`.
fn count_before(batch: &RecordBatch, column: &str, bound: i64) -> u64 {
    let Some(array) = batch.column_by_name(column) else {
        return 0;
    };
    match array.data_type() {
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .filter(|t| *t < bound)
            .count() as u64,
        _ => 0,
    }
}
