//! What a run did, with the completeness equation.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_core::TopicPartition;

/// Counters of one pipeline run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Records read past the committed position (the input of this run).
    pub records_in: u64,
    /// Records re-read below the committed position to warm up the dedup window.
    pub warm_up_records: u64,
    /// Rows committed to the main table.
    pub rows_written: u64,
    /// Records dropped as duplicates of an earlier event id.
    pub duplicates: u64,
    /// Records that could not be decoded (in the DLQ).
    pub undecodable: u64,
    /// Records whose writer schema cannot be read as the table's (in the DLQ).
    pub unmappable: u64,
    /// Records the logic rejected (in the DLQ).
    pub rejected: u64,
    /// Rows committed to the dead-letter table.
    pub dlq_rows_written: u64,
    /// Commits to the main table.
    pub commits: u64,
    /// Commits to the dead-letter table.
    pub dlq_commits: u64,
    /// Flushes that found their input already committed (nothing written).
    pub already_committed: u64,
    /// Commit attempts beyond the first (conflicts with other writers).
    pub conflict_retries: u64,
    /// Data files written to the main table.
    pub data_files: u64,
    /// Bytes of data files written to the main table.
    pub bytes_written: u64,
    /// Next offset per partition after the run.
    pub positions: BTreeMap<TopicPartition, i64>,
    /// Current snapshot of the main table after the run.
    pub snapshot_id: Option<i64>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RunSummary {
    /// Records dead-lettered.
    pub fn dead_lettered(&self) -> u64 {
        self.undecodable + self.unmappable + self.rejected
    }

    /// Whether every record read is accounted for: in = written + duplicates + dead-lettered.
    pub fn is_complete(&self) -> bool {
        self.records_in == self.rows_written + self.duplicates + self.dead_lettered()
    }

    /// Records read per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.records_in as f64 / secs
        } else {
            0.0
        }
    }
}
