//! The catalog: every metric Kappa exports, with its type, labels and meaning.
//!
//! The events in [`crate::events`] name their metrics only through these definitions, the
//! recorder describes them from here (the `# HELP` lines), and `docs/metrics.md` is generated
//! from [`markdown`] (a test fails when the file and the catalog differ). Labels are bounded:
//! topic, partition, table, check, column and small closed sets (kind, outcome, policy, bound).

use std::fmt::Write as _;

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`_total`).
    Counter,
    /// Set to the current value.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl MetricKind {
    /// The name Prometheus uses (`# TYPE`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One metric: what `/metrics` shows and `docs/metrics.md` documents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// `kappa_<component>_<what>_<unit>`.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Label keys, in the order the events pass their values.
    pub labels: &'static [&'static str],
    /// What it means (the `# HELP` text).
    pub help: &'static str,
    /// The event(s) that emit it.
    pub emitted_by: &'static str,
    /// Histogram bucket upper bounds (empty for other kinds).
    pub buckets: &'static [f64],
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
    emitted_by: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        labels,
        help,
        emitted_by,
        buckets: &[],
    }
}

const TP: &[&str] = &["topic", "partition"];
const TABLE: &[&str] = &["table"];

/// Records read from the source.
pub const SOURCE_RECORDS_READ: MetricDef = def(
    "kappa_source_records_read_total",
    MetricKind::Counter,
    TP,
    "Records read from the source (Kafka, or the archive on replay), counted per batch (per run of archive files).",
    "source::Read",
);
/// Bytes read from the source.
pub const SOURCE_BYTES_READ: MetricDef = def(
    "kappa_source_bytes_read_total",
    MetricKind::Counter,
    TP,
    "Bytes read from the source: record values from Kafka, archive files as fetched on replay.",
    "source::Read",
);
/// Consumer lag per partition.
pub const SOURCE_CONSUMER_LAG: MetricDef = def(
    "kappa_source_consumer_lag_records",
    MetricKind::Gauge,
    TP,
    "Records between the broker's high watermark and the next offset this consumer reads; 0 once the partition is revoked from this replica.",
    "source::ConsumerLag, source::PartitionRevoked",
);
/// Partitions stopped because the topic no longer holds the table's position.
pub const SOURCE_PARTITION_STOPPED: MetricDef = def(
    "kappa_source_partition_stopped",
    MetricKind::Gauge,
    TP,
    "1 while this replica holds the partition stopped because the table's next offset is outside the topic (retention passed it, the topic was recreated or its log truncated); nothing is read from it until an operator decides (kappa state skip, or a replay of the archive). 0 otherwise.",
    "source::PartitionStopped, source::PartitionResumed",
);
/// Offsets the broker delivered no record for (transaction markers, aborted or compacted records).
pub const SOURCE_OFFSETS_ABSENT: MetricDef = def(
    "kappa_source_offsets_absent_total",
    MetricKind::Counter,
    TP,
    "Offsets within the topic's range that carried no record for the consumer (transaction markers, aborted transactions, compacted records); the table's range covers them.",
    "source::OffsetsAbsent",
);
/// How long a replay's readers waited for the archive objects they needed next.
pub const SOURCE_ARCHIVE_WAIT: MetricDef = MetricDef {
    buckets: &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ],
    ..def(
        "kappa_source_archive_wait_seconds",
        MetricKind::Histogram,
        TP,
        "Replay only: how long the partition's reader waited for the archive object it needed next, once per run of archive files decoded together (0 when it had arrived). The sum's rate is the share of a reader's time spent waiting on the object store: near 1 while it only waits, the request latency is not hidden (raise [replay] fetch_concurrency).",
        "source::ArchiveWait",
    )
};
/// Records into the pipeline, per table.
pub const PIPELINE_RECORDS_READ: MetricDef = def(
    "kappa_pipeline_records_read_total",
    MetricKind::Counter,
    TABLE,
    "Records that entered the pipeline past the table's committed position (warm-up re-reads excluded).",
    "pipeline::BatchProcessed",
);
/// Records committed to the table.
pub const PIPELINE_RECORDS_WRITTEN: MetricDef = def(
    "kappa_pipeline_records_written_total",
    MetricKind::Counter,
    TABLE,
    "Rows committed to the table (counted when the commit succeeds).",
    "commit::Committed",
);
/// Duplicates dropped.
pub const PIPELINE_RECORDS_DEDUPLICATED: MetricDef = def(
    "kappa_pipeline_records_deduplicated_total",
    MetricKind::Counter,
    TABLE,
    "Records dropped as duplicates of an earlier event id.",
    "pipeline::BatchProcessed",
);
/// Dead-lettered records by kind.
pub const PIPELINE_RECORDS_DEAD_LETTERED: MetricDef = def(
    "kappa_pipeline_records_dead_lettered_total",
    MetricKind::Counter,
    &["table", "kind"],
    "Records sent to the dead-letter table, by kind (undecodable, unmappable, rejected).",
    "pipeline::BatchProcessed",
);
/// Late records.
pub const PIPELINE_RECORDS_LATE: MetricDef = def(
    "kappa_pipeline_records_late_total",
    MetricKind::Counter,
    TABLE,
    "Records later than their partition's watermark (appended or sent to the late table, per [event_time] late_policy).",
    "pipeline::BatchProcessed",
);
/// Commits by outcome.
pub const COMMITS: MetricDef = def(
    "kappa_commits_total",
    MetricKind::Counter,
    &["table", "outcome"],
    "Commit attempts by outcome: committed (a new snapshot), already_committed (the table held the input), conflict_retried (lost to another writer, retried), failed (gave up).",
    "commit::Committed, commit::AlreadyCommitted, commit::ConflictRetried, commit::Failed, table::Configured (0)",
);
/// Commit duration.
pub const COMMIT_DURATION: MetricDef = MetricDef {
    buckets: &[
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ],
    ..def(
        "kappa_commit_duration_seconds",
        MetricKind::Histogram,
        TABLE,
        "Wall time of a flush's write and commit, retries included (committed, already committed and failed flushes).",
        "commit::Committed, commit::AlreadyCommitted, commit::Failed",
    )
};
/// Bytes written.
pub const COMMIT_BYTES_WRITTEN: MetricDef = def(
    "kappa_commit_bytes_written_total",
    MetricKind::Counter,
    TABLE,
    "Bytes of data files added by successful commits.",
    "commit::Committed",
);
/// Files written.
pub const COMMIT_FILES_WRITTEN: MetricDef = def(
    "kappa_commit_files_written_total",
    MetricKind::Counter,
    TABLE,
    "Data files added by successful commits.",
    "commit::Committed",
);
/// Time since the last successful commit.
pub const COMMIT_LAST_SUCCESS_AGE: MetricDef = def(
    "kappa_commit_last_success_age_seconds",
    MetricKind::Gauge,
    TABLE,
    "Seconds since the last successful commit (or since the table state was loaded, before the first); refreshed at every scrape and tick.",
    "commit::Committed, commit::AlreadyCommitted, table::StateLoaded, table::tick",
);
/// Configured commit interval.
pub const COMMIT_INTERVAL: MetricDef = def(
    "kappa_commit_interval_seconds",
    MetricKind::Gauge,
    TABLE,
    "The configured [commit] interval, for alerts that compare against it.",
    "table::Configured",
);
/// Freshness lag.
pub const TABLE_FRESHNESS_LAG: MetricDef = def(
    "kappa_table_freshness_lag_seconds",
    MetricKind::Gauge,
    TABLE,
    "Now minus the newest event time committed to the table; refreshed at every scrape and tick, so it grows while the source stalls.",
    "commit::Committed, table::StateLoaded, table::tick",
);
/// Freshness SLO.
pub const TABLE_FRESHNESS_SLO: MetricDef = def(
    "kappa_table_freshness_slo_seconds",
    MetricKind::Gauge,
    TABLE,
    "The configured freshness objective ([quality.gates.timeliness] freshness_sla), for alerts that compare against it.",
    "table::Configured",
);
/// Quality check value.
pub const QUALITY_CHECK_VALUE: MetricDef = def(
    "kappa_quality_check_value",
    MetricKind::Gauge,
    &["table", "check"],
    "The value a quality check measured in its latest run, in the check's unit (a rate, a count or a ratio).",
    "quality::CheckEvaluated",
);
/// Quality check threshold.
pub const QUALITY_CHECK_THRESHOLD: MetricDef = def(
    "kappa_quality_check_threshold",
    MetricKind::Gauge,
    &["table", "check", "bound"],
    "The bound a quality check holds its value to: bound=\"min\" (value must be at least) and/or bound=\"max\" (at most).",
    "quality::CheckEvaluated",
);
/// Quality check pass state.
pub const QUALITY_CHECK_PASSED: MetricDef = def(
    "kappa_quality_check_passed",
    MetricKind::Gauge,
    &["table", "check", "policy"],
    "1 if the quality check passed in its latest run, 0 if it failed; policy is what a failure does (block, quarantine, warn).",
    "quality::CheckEvaluated",
);
/// Quality check failures.
pub const QUALITY_CHECK_FAILURES: MetricDef = def(
    "kappa_quality_check_failures_total",
    MetricKind::Counter,
    &["table", "check", "policy"],
    "Runs of a quality check that failed.",
    "quality::CheckEvaluated",
);
/// Null rate per column.
pub const QUALITY_NULL_RATE: MetricDef = def(
    "kappa_quality_null_rate_ratio",
    MetricKind::Gauge,
    &["table", "column"],
    "Share of NULLs in a critical column in the latest commit's rows (0 to 1).",
    "quality::NullRate",
);
/// Gate blocked.
pub const QUALITY_GATE_BLOCKED: MetricDef = def(
    "kappa_quality_gate_blocked",
    MetricKind::Gauge,
    TABLE,
    "1 while a failed `block` check holds the table's commits back, 0 otherwise.",
    "quality::GateDecided",
);
/// Gate outcomes.
pub const QUALITY_GATE_OUTCOMES: MetricDef = def(
    "kappa_quality_gate_outcomes_total",
    MetricKind::Counter,
    &["table", "outcome"],
    "Gate decisions by outcome: commit, quarantine, block.",
    "quality::GateDecided",
);
/// Snapshots in the table's metadata.
pub const TABLE_SNAPSHOTS: MetricDef = def(
    "kappa_table_snapshots",
    MetricKind::Gauge,
    TABLE,
    "Snapshots in the table's metadata after the newest commit or maintenance run; `kappa maintain expire` brings it down.",
    "table::Shape",
);
/// Live data files of the current snapshot.
pub const TABLE_DATA_FILES: MetricDef = def(
    "kappa_table_data_files",
    MetricKind::Gauge,
    TABLE,
    "Live data files of the table's current snapshot (its summary's total-data-files) after the newest commit or maintenance run.",
    "table::Shape",
);
/// Bytes of the live data files.
pub const TABLE_DATA_BYTES: MetricDef = def(
    "kappa_table_data_bytes",
    MetricKind::Gauge,
    TABLE,
    "Bytes of the live data files of the table's current snapshot (total-files-size).",
    "table::Shape",
);
/// The configured target file size.
pub const TABLE_TARGET_FILE_SIZE: MetricDef = def(
    "kappa_table_target_file_size_bytes",
    MetricKind::Gauge,
    TABLE,
    "[table] target_file_size: with kappa_table_data_bytes it says how many files the table needs; the small-file alert compares kappa_table_data_files with that.",
    "table::Shape",
);
/// Most files in one partition.
pub const TABLE_PARTITION_FILES_MAX: MetricDef = def(
    "kappa_table_partition_files_max",
    MetricKind::Gauge,
    TABLE,
    "Most live data files in one partition of the table, as the last `kappa maintain` run left it.",
    "maintenance::Finished",
);
/// Partitions with live data.
pub const TABLE_PARTITIONS: MetricDef = def(
    "kappa_table_partitions",
    MetricKind::Gauge,
    TABLE,
    "Partitions with live data files, as the last `kappa maintain` run left the table (files per partition = kappa_table_data_files / this).",
    "maintenance::Finished",
);
/// Bytes compaction wrote.
pub const MAINTENANCE_BYTES_REWRITTEN: MetricDef = def(
    "kappa_maintenance_bytes_rewritten_total",
    MetricKind::Counter,
    TABLE,
    "Bytes of data files `kappa maintain compact` wrote (and committed) in place of smaller ones.",
    "maintenance::Compacted",
);
/// Files compaction replaced.
pub const MAINTENANCE_FILES_REWRITTEN: MetricDef = def(
    "kappa_maintenance_files_rewritten_total",
    MetricKind::Counter,
    TABLE,
    "Data files `kappa maintain compact` replaced.",
    "maintenance::Compacted",
);
/// Snapshots expired.
pub const MAINTENANCE_SNAPSHOTS_EXPIRED: MetricDef = def(
    "kappa_maintenance_snapshots_expired_total",
    MetricKind::Counter,
    TABLE,
    "Snapshots `kappa maintain expire` removed.",
    "maintenance::Expired",
);
/// Files deleted by maintenance.
pub const MAINTENANCE_FILES_DELETED: MetricDef = def(
    "kappa_maintenance_files_deleted_total",
    MetricKind::Counter,
    &["table", "command"],
    "Files `kappa maintain` deleted: `expire` (files only expired snapshots referenced), `orphans` (files nothing referenced).",
    "maintenance::Expired, maintenance::OrphansDeleted",
);
/// Bytes deleted by maintenance.
pub const MAINTENANCE_BYTES_DELETED: MetricDef = def(
    "kappa_maintenance_bytes_deleted_total",
    MetricKind::Counter,
    &["table", "command"],
    "Bytes of the files `kappa maintain` deleted, by command (`expire`, `orphans`).",
    "maintenance::Expired, maintenance::OrphansDeleted",
);
/// When a maintenance command last succeeded.
pub const MAINTENANCE_LAST_SUCCESS: MetricDef = def(
    "kappa_maintenance_last_success_timestamp_seconds",
    MetricKind::Gauge,
    &["table", "command"],
    "When `kappa maintain` last finished the command on the table (seconds since the epoch).",
    "maintenance::Compacted, maintenance::Expired, maintenance::OrphansDeleted",
);
/// Build info.
pub const BUILD_INFO: MetricDef = def(
    "kappa_build_info",
    MetricKind::Gauge,
    &["version"],
    "Always 1; the version label is the running Kappa's.",
    "Metrics::install",
);

/// Every metric, in the order `docs/metrics.md` lists them.
pub const METRICS: &[MetricDef] = &[
    SOURCE_RECORDS_READ,
    SOURCE_BYTES_READ,
    SOURCE_CONSUMER_LAG,
    SOURCE_PARTITION_STOPPED,
    SOURCE_OFFSETS_ABSENT,
    SOURCE_ARCHIVE_WAIT,
    PIPELINE_RECORDS_READ,
    PIPELINE_RECORDS_WRITTEN,
    PIPELINE_RECORDS_DEDUPLICATED,
    PIPELINE_RECORDS_DEAD_LETTERED,
    PIPELINE_RECORDS_LATE,
    COMMITS,
    COMMIT_DURATION,
    COMMIT_BYTES_WRITTEN,
    COMMIT_FILES_WRITTEN,
    COMMIT_LAST_SUCCESS_AGE,
    COMMIT_INTERVAL,
    TABLE_FRESHNESS_LAG,
    TABLE_FRESHNESS_SLO,
    QUALITY_CHECK_VALUE,
    QUALITY_CHECK_THRESHOLD,
    QUALITY_CHECK_PASSED,
    QUALITY_CHECK_FAILURES,
    QUALITY_NULL_RATE,
    QUALITY_GATE_BLOCKED,
    QUALITY_GATE_OUTCOMES,
    TABLE_SNAPSHOTS,
    TABLE_DATA_FILES,
    TABLE_DATA_BYTES,
    TABLE_TARGET_FILE_SIZE,
    TABLE_PARTITION_FILES_MAX,
    TABLE_PARTITIONS,
    MAINTENANCE_BYTES_REWRITTEN,
    MAINTENANCE_FILES_REWRITTEN,
    MAINTENANCE_SNAPSHOTS_EXPIRED,
    MAINTENANCE_FILES_DELETED,
    MAINTENANCE_BYTES_DELETED,
    MAINTENANCE_LAST_SUCCESS,
    BUILD_INFO,
];

/// The definition of `name`, also for the series a histogram exports (`_bucket`, `_sum`,
/// `_count`).
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            METRICS
                .iter()
                .find(|m| m.name == base && m.kind == MetricKind::Histogram)
        })
    })
}

/// Closed label value sets, documented with the metrics.
pub const LABEL_VALUES: &[(&str, &str)] = &[
    (
        "topic",
        "the Kafka topic (also for records replayed from its archive)",
    ),
    ("partition", "the topic's partition number"),
    (
        "table",
        "the Iceberg table (`<name>`, `<name>_dlq`, `<name>_late`, `<name>_quarantine`)",
    ),
    ("kind", "`undecodable`, `unmappable`, `rejected`"),
    (
        "outcome",
        "`kappa_commits_total`: `committed`, `already_committed`, `conflict_retried`, `failed`; `kappa_quality_gate_outcomes_total`: `commit`, `quarantine`, `block`",
    ),
    (
        "check",
        "the verdict name: `completeness`, `null_rate.<column>`, `uniqueness`, `timeliness`, `rule.<name>`, `row_count` (bounded by the configuration)",
    ),
    ("policy", "`block`, `quarantine`, `warn`"),
    (
        "command",
        "`kappa maintain`'s: `compact`, `expire`, `orphans`",
    ),
    ("bound", "`min`, `max`"),
    (
        "column",
        "a critical column of `[quality.gates.null_rate] columns`",
    ),
    ("version", "the Kappa version"),
];

/// Start and end markers of the generated part of `docs/metrics.md`.
pub const DOC_BEGIN: &str = "<!-- BEGIN GENERATED: kappa-metrics catalog (cargo test -p kappa-metrics; KAPPA_BLESS=1 rewrites) -->";
/// See [`DOC_BEGIN`].
pub const DOC_END: &str = "<!-- END GENERATED -->";

/// The generated reference: one row per metric, then the label values.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(DOC_BEGIN);
    out.push_str("\n\n| metric | type | labels | meaning | emitted by |\n|---|---|---|---|---|\n");
    for m in METRICS {
        let labels = m
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut meaning = m.help.replace('|', "\\|");
        if !m.buckets.is_empty() {
            let buckets = m
                .buckets
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(meaning, " Buckets: {buckets}.");
        }
        let events = m
            .emitted_by
            .split(", ")
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            m.name,
            m.kind.as_str(),
            labels,
            meaning,
            events
        );
    }
    out.push_str("\n| label | values |\n|---|---|\n");
    for (label, values) in LABEL_VALUES {
        let _ = writeln!(out, "| `{label}` | {values} |");
    }
    out.push('\n');
    out.push_str(DOC_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} defined twice", m.name);
            assert!(m.name.starts_with("kappa_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == MetricKind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            assert_eq!(
                m.kind == MetricKind::Histogram,
                !m.buckets.is_empty(),
                "{}: histograms and only histograms have buckets",
                m.name
            );
            for label in m.labels {
                assert!(
                    LABEL_VALUES.iter().any(|(l, _)| l == label),
                    "{}: label {label} has no documented values",
                    m.name
                );
                assert!(
                    !["offset", "key", "file", "path", "snapshot_id", "error"].contains(label),
                    "{}: unbounded label {label}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn lookup_knows_histogram_series() {
        assert_eq!(
            lookup("kappa_commit_duration_seconds_bucket").map(|m| m.name),
            Some("kappa_commit_duration_seconds")
        );
        assert!(lookup("kappa_commits_total_count").is_none());
        assert!(lookup("kappa_nope").is_none());
    }
}
