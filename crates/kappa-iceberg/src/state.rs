//! The pipeline's state as the table records it.
//!
//! Walking the ancestry of `main` from the current snapshot, the newest snapshot whose summary
//! carries `kappa.pipeline = <pipeline>` and `kappa.offsets` holds the complete state (every
//! commit merges the state of its base). Kafka group offsets are never consulted.

use iceberg::spec::{SnapshotRef, TableMetadata};
use kappa_core::{EventTimes, SourcePosition};

use crate::error::IcebergError;
use crate::summary;

/// What the table says about one pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableState {
    /// Current snapshot of `main` (the base the next commit pins).
    pub snapshot_id: Option<i64>,
    /// Next offset per topic-partition committed by this pipeline.
    pub position: SourcePosition,
    /// Watermark stored with the newest commit of this pipeline (µs).
    pub watermark: Option<i64>,
    /// Newest committed event time (µs).
    pub max_event_time: Option<i64>,
    /// Newest committed event time per partition (empty for tables written before Kappa stored
    /// it: lateness is then judged from the first rows read on).
    pub event_times: EventTimes,
    /// The newest day (days since the epoch) the partition gate has judged.
    pub closed_through: Option<i32>,
    /// Commit id of the newest commit of this pipeline.
    pub last_commit_id: Option<String>,
}

/// Snapshots of `main` from the current one back to the first, newest first.
pub fn ancestry(metadata: &TableMetadata) -> impl Iterator<Item = &SnapshotRef> {
    let mut next = metadata.current_snapshot_id();
    std::iter::from_fn(move || {
        let snapshot = metadata.snapshot_by_id(next?)?;
        next = snapshot.parent_snapshot_id();
        Some(snapshot)
    })
}

impl TableState {
    /// Reads the state of `pipeline` from `metadata`.
    pub fn read(
        table: &str,
        metadata: &TableMetadata,
        pipeline: &str,
    ) -> Result<TableState, IcebergError> {
        let mut state = TableState {
            snapshot_id: metadata.current_snapshot_id(),
            ..TableState::default()
        };
        let Some(snapshot) = ancestry(metadata).find(|s| {
            let props = &s.summary().additional_properties;
            props.get(summary::PIPELINE).map(String::as_str) == Some(pipeline)
                && props.contains_key(summary::OFFSETS)
        }) else {
            return Ok(state);
        };
        let props = &snapshot.summary().additional_properties;
        let bad = |message: String| IcebergError::State {
            table: table.to_string(),
            snapshot_id: snapshot.snapshot_id(),
            message,
        };
        state.position = SourcePosition::from_json(&props[summary::OFFSETS])
            .map_err(|e| bad(format!("{}: {e}", summary::OFFSETS)))?;
        let micros = |key: &str| -> Result<Option<i64>, IcebergError> {
            props
                .get(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|e| bad(format!("{key} = {v:?}: {e}")))
                })
                .transpose()
        };
        state.watermark = micros(summary::WATERMARK)?;
        state.max_event_time = micros(summary::MAX_EVENT_TIME)?;
        state.closed_through = props
            .get(summary::CLOSED_THROUGH)
            .map(|v| {
                v.parse::<i32>()
                    .map_err(|e| bad(format!("{} = {v:?}: {e}", summary::CLOSED_THROUGH)))
            })
            .transpose()?;
        if let Some(text) = props.get(summary::EVENT_TIMES) {
            state.event_times = EventTimes::from_json(text)
                .map_err(|e| bad(format!("{}: {e}", summary::EVENT_TIMES)))?;
        }
        state.last_commit_id = props.get(summary::COMMIT_ID).cloned();
        Ok(state)
    }
}

/// The snapshot in `main`'s ancestry that carries `commit_id`, if any.
pub fn find_commit(metadata: &TableMetadata, commit_id: &str) -> Option<i64> {
    ancestry(metadata)
        .find(|s| {
            s.summary()
                .additional_properties
                .get(summary::COMMIT_ID)
                .map(String::as_str)
                == Some(commit_id)
        })
        .map(|s| s.snapshot_id())
}

/// What the current snapshot of a table holds, for summaries and `kappa status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Snapshots in the metadata.
    pub snapshots: usize,
    /// Live data files.
    pub data_files: usize,
    /// Distinct partitions with live data.
    pub partitions: usize,
    /// Live rows.
    pub rows: u64,
    /// The current metadata file (what `iceberg_scan` in DuckDB reads).
    pub metadata_location: Option<String>,
}

/// Plans a scan of the current snapshot to count files, partitions and rows.
pub async fn table_stats(table: &iceberg::table::Table) -> iceberg::Result<TableStats> {
    use futures::TryStreamExt;
    let mut stats = TableStats {
        snapshots: table.metadata().snapshots().len(),
        metadata_location: table.metadata_location().map(str::to_string),
        ..TableStats::default()
    };
    if table.metadata().current_snapshot().is_none() {
        return Ok(stats);
    }
    let tasks: Vec<_> = table
        .scan()
        .build()?
        .plan_files()
        .await?
        .try_collect()
        .await?;
    let mut partitions = std::collections::BTreeSet::new();
    for task in &tasks {
        stats.rows += task.record_count.unwrap_or_default();
        if let Some((dir, _)) = task.data_file_path.rsplit_once('/') {
            partitions.insert(dir.to_string());
        }
    }
    stats.data_files = tasks.len();
    stats.partitions = partitions.len();
    Ok(stats)
}
