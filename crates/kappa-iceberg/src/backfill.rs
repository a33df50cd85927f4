//! What a backfill needs of the table's history: the base it reprocesses up to, and the files
//! its publish keeps (the ones its pipeline appended since that base).
//!
//! A backfill replaces whole day partitions. Everything main holds for offsets below the base
//! position is rebuilt from the archive; every file the pipeline appended since the base holds
//! offsets at or past it (each commit continues the position) and is kept. Anything else in
//! those days (another engine's junk, a stale compaction) is replaced.

use std::collections::{BTreeSet, HashSet};

use iceberg::spec::{ManifestContentType, ManifestStatus};
use iceberg::table::Table;
use kappa_core::{SourcePosition, TopicPartition};

use crate::commit::table_name;
use crate::days::DayField;
use crate::error::IcebergError;
use crate::state::{TableState, ancestry};
use crate::summary;

/// The state a backfill reprocesses up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// Main's snapshot at that state (`None`: main has no snapshot).
    pub snapshot_id: Option<i64>,
    /// The pipeline's position there: offsets below it are reprocessed.
    pub position: SourcePosition,
}

/// Whether `snapshot` is one of `pipeline`'s data commits (it carries the complete position).
fn pipeline_commit(snapshot: &iceberg::spec::Snapshot, pipeline: &str) -> bool {
    let props = &snapshot.summary().additional_properties;
    props.get(summary::PIPELINE).map(String::as_str) == Some(pipeline)
        && props.contains_key(summary::OFFSETS)
}

/// The newest base whose every partition `covered` says the archive holds up to: the table's
/// current state first, then the pipeline's earlier commits (their summaries carry the complete
/// position), newest first. `None` when the archive reaches none of them.
pub fn choose_base(
    table: &Table,
    pipeline: &str,
    state: &TableState,
    covered: impl Fn(&TopicPartition, i64) -> bool,
) -> Result<Option<Base>, IcebergError> {
    let metadata = table.metadata();
    let fits = |position: &SourcePosition| position.iter().all(|(tp, next)| covered(tp, next));
    if fits(&state.position) {
        return Ok(Some(Base {
            snapshot_id: state.snapshot_id,
            position: state.position.clone(),
        }));
    }
    for snapshot in ancestry(metadata).filter(|s| pipeline_commit(s, pipeline)) {
        let text = &snapshot.summary().additional_properties[summary::OFFSETS];
        let position = SourcePosition::from_json(text).map_err(|e| IcebergError::State {
            table: table_name(table.identifier()),
            place: format!("snapshot {}", snapshot.snapshot_id()),
            message: format!("{}: {e}", summary::OFFSETS),
        })?;
        if fits(&position) {
            return Ok(Some(Base {
                snapshot_id: Some(snapshot.snapshot_id()),
                position,
            }));
        }
    }
    Ok(None)
}

/// The live files of `days` in `table`'s current snapshot that `pipeline` appended after
/// `base` (its data commits since): a publish keeps them. Refused when the base is no longer in
/// main's history, or when one of those files was deleted or rewritten since (another engine's
/// compaction mixed rows past the base with rows before it: they cannot be told apart without
/// reading them).
pub async fn kept_files(
    table: &Table,
    pipeline: &str,
    base: Option<i64>,
    field: DayField,
    days: &BTreeSet<i32>,
) -> Result<HashSet<String>, IcebergError> {
    let name = table_name(table.identifier());
    let metadata = table.metadata();
    let refuse = |message: String| IcebergError::Unresolvable {
        table: name.clone(),
        message,
    };
    let failed = |operation: &str, e: iceberg::Error| IcebergError::Table {
        table: name.clone(),
        operation: operation.to_string(),
        source: Box::new(e),
    };
    let mut since = Vec::new();
    let mut reached = base.is_none();
    for snapshot in ancestry(metadata) {
        if Some(snapshot.snapshot_id()) == base {
            reached = true;
            break;
        }
        if pipeline_commit(snapshot, pipeline) {
            since.push(snapshot.clone());
        }
    }
    if !reached {
        return Err(refuse(format!(
            "the backfill's base, snapshot {}, is no longer in main's history (expired, or main \
             was rolled back): run the backfill again",
            base.unwrap_or_default()
        )));
    }
    let mut appended = HashSet::new();
    for snapshot in &since {
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| failed("reading a manifest list for the backfill", e))?;
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data
                || manifest.added_snapshot_id != snapshot.snapshot_id()
            {
                continue;
            }
            let entries = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(|e| failed("reading a manifest for the backfill", e))?;
            for entry in entries.entries() {
                if entry.status() == ManifestStatus::Added
                    && entry.snapshot_id() == Some(snapshot.snapshot_id())
                    && field
                        .day(entry.data_file())
                        .is_some_and(|d| days.contains(&d))
                {
                    appended.insert(entry.file_path().to_string());
                }
            }
        }
    }
    if appended.is_empty() {
        return Ok(appended);
    }
    let live = field.live_files(table, days).await?;
    if let Some(gone) = appended.iter().find(|path| !live.contains(*path)) {
        return Err(refuse(format!(
            "{pipeline} appended {gone} to a backfilled day after the backfill's base, and a later \
             commit deleted or rewrote it (another engine's compaction?): the rows past the base \
             can no longer be kept apart; run the backfill again"
        )));
    }
    Ok(appended)
}
