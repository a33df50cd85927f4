//! Buffering transformed batches until the commit policy says flush.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::DataType;
use kappa_core::{
    DeadLetter, DeadLetterKind, EventTimes, LogicStats, OffsetRange, SourceBatch, TopicPartition,
};
use kappa_quality::CommitProfile;
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
    /// Attempts per commit that failed (unknown outcomes, errors before the catalog) before
    /// giving up.
    pub max_attempts: u32,
    /// How long a commit keeps retrying after conflicts (another writer committed first).
    pub conflict_timeout: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            rows: 1_000_000,
            bytes: 256 * 1024 * 1024,
            max_attempts: 10,
            conflict_timeout: kappa_iceberg::DEFAULT_CONFLICT_TIMEOUT,
        }
    }
}

/// How rows are judged late (see `kappa_core::EventTimes`) and where late rows go.
#[derive(Debug, Clone)]
pub(crate) struct Lateness {
    /// Event-time column (µs timestamps; rows of other types have no event time).
    pub column: String,
    /// Allowed lateness, µs.
    pub allowed_micros: i64,
    /// Late rows go to the late table instead of the main table.
    pub route: bool,
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
    /// Rows later than their partition's newest event time minus the allowed lateness.
    pub late: u64,
    /// Late rows bound for the late table (table rows, by partition), when they are routed there.
    pub late_rows: BTreeMap<TopicPartition, Vec<RecordBatch>>,
    pub max_event_time: Option<i64>,
    /// Newest event time per partition of this buffer's rows.
    pub event_times: EventTimes,
    /// What the commit gates measure of this buffer's rows (created with the first batch).
    pub profile: Option<CommitProfile>,
    /// Failed checks an operator let through for this flush (a paused pipeline reading its
    /// blocked flush again).
    pub waiver: Option<crate::pause::Waiver>,
    num_rows: usize,
    bytes: usize,
    started: Option<Instant>,
}

impl Buffer {
    /// Accounts for a transformed batch and returns its rows for the main table as table rows
    /// (with the Kafka coordinate columns, by `table`'s mapping), if it has any. Late rows are
    /// judged against `times` (the partition's newest event time so far, advanced past this
    /// batch), counted, and kept aside for the late table when `lateness.route`.
    pub fn add(
        &mut self,
        batch: SourceBatch,
        stats: LogicStats,
        table: &TableMapping,
        times: &mut EventTimes,
        lateness: &Lateness,
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
                // Counted with the undecodable ones (the table's `error_kind` tells them apart).
                DeadLetterKind::Undecodable | DeadLetterKind::Unconvertible => {
                    self.undecodable += 1
                }
                DeadLetterKind::UnmappableSchema => self.unmappable += 1,
                DeadLetterKind::Rejected | DeadLetterKind::RuleViolation => self.rejected += 1,
            }
        }
        let late = times.classify(
            &tp,
            micros(&batch.records, &lateness.column),
            lateness.allowed_micros,
        );
        let late_rows = late.iter().filter(|l| **l).count();
        self.late += late_rows as u64;
        if let Some(newest) = times.newest(&tp) {
            self.event_times.observe(&tp, newest);
        }
        if let Some(max) = max_micros(&batch.records, &lateness.column) {
            self.max_event_time = Some(self.max_event_time.map_or(max, |m| m.max(max)));
        }
        let (records, offsets) = if lateness.route && late_rows > 0 {
            let pick = |want: bool| -> Result<(RecordBatch, Vec<i64>), RuntimeError> {
                let mask: BooleanArray = late.iter().map(|l| Some(*l == want)).collect();
                let records = arrow_select::filter::filter_record_batch(&batch.records, &mask)
                    .map_err(|e| {
                        RuntimeError::Invariant(format!("{tp}: splitting off late rows: {e}"))
                    })?;
                let offsets = batch
                    .offsets
                    .iter()
                    .zip(&late)
                    .filter_map(|(o, l)| (*l == want).then_some(*o))
                    .collect();
                Ok((records, offsets))
            };
            let (late_records, late_offsets) = pick(true)?;
            let rows = self.table_rows(table, &tp, &late_records, &late_offsets)?;
            self.late_rows.entry(tp.clone()).or_default().push(rows);
            pick(false)?
        } else {
            (batch.records, batch.offsets)
        };
        let rows = if records.num_rows() > 0 {
            Some(self.table_rows(table, &tp, &records, &offsets)?)
        } else {
            None
        };
        if !batch.dead_letters.is_empty() {
            self.dead.entry(tp).or_default().extend(batch.dead_letters);
        }
        Ok(rows)
    }

    /// `records` of `tp` as table rows, counted against the flush policy.
    fn table_rows(
        &mut self,
        table: &TableMapping,
        tp: &TopicPartition,
        records: &RecordBatch,
        offsets: &[i64],
    ) -> Result<RecordBatch, RuntimeError> {
        let rows = table
            .table_batch(records, tp.partition, offsets)
            .map_err(|e| {
                RuntimeError::Invariant(format!("{tp}: rows do not match the table schema: {e}"))
            })?;
        self.num_rows += rows.num_rows();
        self.bytes += rows.get_array_memory_size();
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

/// The values of a microsecond timestamp column, one per row (`None` for nulls, and for every
/// row when the column is missing or of another type).
fn micros(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    match batch.column_by_name(column) {
        Some(array)
            if matches!(
                array.data_type(),
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _)
            ) =>
        {
            array
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect()
        }
        _ => vec![None; batch.num_rows()],
    }
}
