//! What a run did, with the completeness equation.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_core::TopicPartition;
use serde::{Serialize, Serializer};

/// Counters of one pipeline run. Serialized (`--json` of `run`, `replay` and `demo`) through
/// [`RunSummary::report`], which adds the figures derived from them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
    #[serde(rename = "unmappable_schema")]
    pub unmappable: u64,
    /// Records the logic rejected (in the DLQ).
    pub rejected: u64,
    /// Rows later than their partition's newest event time minus the allowed lateness
    /// (`kappa.late-records`): appended to the main table, or written to the late table.
    pub late: u64,
    /// Late rows committed to the late table (`[event_time] late_policy = "late_table"`).
    pub late_rows_written: u64,
    /// Commits to the late table.
    pub late_commits: u64,
    /// Rows a failed `quarantine` gate sent to the quarantine table instead of the main table.
    pub quarantined_rows: u64,
    /// Commits to the quarantine table.
    pub quarantine_commits: u64,
    /// Sessions restarted from the table's position because another writer committed the same
    /// input first (live, several replicas or a rebalance).
    pub rewinds: u64,
    /// Times a live pipeline paused because a `block` gate refused a flush.
    pub pauses: u64,
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
    /// Next offset per partition after the run (`{"orders-0": 123}`).
    #[serde(serialize_with = "by_partition_name")]
    pub positions: BTreeMap<TopicPartition, i64>,
    /// Current snapshot of the main table after the run.
    pub snapshot_id: Option<i64>,
    /// Wall time.
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// Set when the run ended because the source met records of a newer schema version than
    /// the table has (everything before them is committed): the caller evolves the table and
    /// runs again.
    #[serde(skip)]
    pub schema_change: Option<String>,
    /// Times a live pipeline evolved its table to a newer schema version and went on.
    pub schema_changes: u64,
}

fn by_partition_name<S: Serializer>(
    positions: &BTreeMap<TopicPartition, i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(positions.iter().map(|(tp, next)| (tp.to_string(), next)))
}

fn seconds<S: Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64())
}

/// A run summary with the figures derived from its counters, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct SummaryReport<'a> {
    /// The counters.
    #[serde(flatten)]
    pub summary: &'a RunSummary,
    /// [`RunSummary::dead_lettered`].
    pub dead_lettered: u64,
    /// [`RunSummary::is_complete`].
    pub complete: bool,
    /// [`RunSummary::events_per_second`].
    pub events_per_second: f64,
}

impl RunSummary {
    /// The summary with its derived figures, to serialize.
    pub fn report(&self) -> SummaryReport<'_> {
        SummaryReport {
            summary: self,
            dead_lettered: self.dead_lettered(),
            complete: self.is_complete(),
            events_per_second: self.events_per_second(),
        }
    }

    /// Adds the counters of `other` (a session's, or a commit's) to these. Positions, snapshot
    /// and wall time are the run's own and stay.
    pub fn absorb(&mut self, other: &RunSummary) {
        self.records_in += other.records_in;
        self.warm_up_records += other.warm_up_records;
        self.rows_written += other.rows_written;
        self.duplicates += other.duplicates;
        self.undecodable += other.undecodable;
        self.unmappable += other.unmappable;
        self.rejected += other.rejected;
        self.late += other.late;
        self.late_rows_written += other.late_rows_written;
        self.late_commits += other.late_commits;
        self.quarantined_rows += other.quarantined_rows;
        self.quarantine_commits += other.quarantine_commits;
        self.rewinds += other.rewinds;
        self.pauses += other.pauses;
        self.schema_changes += other.schema_changes;
        self.dlq_rows_written += other.dlq_rows_written;
        self.commits += other.commits;
        self.dlq_commits += other.dlq_commits;
        self.already_committed += other.already_committed;
        self.conflict_retries += other.conflict_retries;
        self.data_files += other.data_files;
        self.bytes_written += other.bytes_written;
    }

    /// Records dead-lettered.
    pub fn dead_lettered(&self) -> u64 {
        self.undecodable + self.unmappable + self.rejected
    }

    /// Whether every record read is accounted for: in = written (main, late and quarantine
    /// table) + duplicates + dead-lettered.
    pub fn is_complete(&self) -> bool {
        self.records_in
            == self.rows_written
                + self.late_rows_written
                + self.quarantined_rows
                + self.duplicates
                + self.dead_lettered()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_names_every_counter_and_the_derived_figures() {
        let summary = RunSummary {
            records_in: 10,
            rows_written: 6,
            duplicates: 1,
            undecodable: 1,
            unmappable: 1,
            rejected: 1,
            positions: BTreeMap::from([(TopicPartition::new("orders", 2), 11)]),
            elapsed: Duration::from_millis(2_500),
            schema_change: Some("new field".into()),
            ..RunSummary::default()
        };
        let json = serde_json::to_value(summary.report()).unwrap();
        assert_eq!(json["records_in"], 10);
        assert_eq!(json["unmappable_schema"], 1);
        assert_eq!(json["dead_lettered"], 3);
        assert_eq!(json["complete"], true);
        assert_eq!(json["events_per_second"], 4.0);
        assert_eq!(json["elapsed_seconds"], 2.5);
        assert_eq!(json["positions"], serde_json::json!({"orders-2": 11}));
        assert_eq!(json["snapshot_id"], serde_json::Value::Null);
        assert!(json.get("schema_change").is_none() && json.get("unmappable").is_none());
        // Every counter field is printed: 25 of the struct (schema_change skipped) + 3 derived.
        assert_eq!(json.as_object().unwrap().len(), 28, "{json}");
    }
}
