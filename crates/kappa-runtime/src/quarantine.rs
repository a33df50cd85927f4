//! The quarantine table's side of a quarantined flush: its rows go to `<table>_quarantine`, the
//! main table records only that the input is done. The quarantine commit carries the main
//! commit's facts (`kappa.main-commit`), so that a crash between the two commits is completed
//! with the same event times, judged days, counters and verdicts as the uninterrupted flush.

use std::collections::BTreeMap;

use iceberg::spec::DataFile;
use kappa_core::{EventTimes, OffsetRange, TopicPartition};
use kappa_iceberg::{CommitOutcome, Committer, PendingCommit, summary};
use kappa_quality::QualityReport;
use serde_json::{Map, Value, json};
use tracing::warn;

use crate::commit::Tables;
use crate::error::RuntimeError;

/// Copies a quarantined flush's data files (written under `main`'s location) under the
/// quarantine table's location, as files of that table.
pub(crate) async fn move_files(
    main: &iceberg::table::Table,
    quarantine: &Committer,
    files: &[DataFile],
) -> Result<Vec<DataFile>, RuntimeError> {
    kappa_iceberg::writer::copy_data_files(main, quarantine.table(), files)
        .await
        .map_err(|e| {
            RuntimeError::Sink(kappa_iceberg::IcebergError::Table {
                table: quarantine.name().to_string(),
                operation: "copying a quarantined flush's files under the table's location".into(),
                source: Box::new(e),
            })
        })
}

/// Commits a quarantined flush's data files to the quarantine table (same columns, partitioning
/// and file layout as the main table). Returns the rows committed.
///
/// Its input starts at its own position, which is never past the main table's once
/// [`complete_quarantine`] has run at the start of the session.
pub(crate) async fn commit(
    table: &mut Committer,
    input: &BTreeMap<TopicPartition, OffsetRange>,
    files: Vec<DataFile>,
    report: &QualityReport,
    main_commit: String,
) -> Result<u64, RuntimeError> {
    let mut own = BTreeMap::new();
    for (tp, range) in input {
        let start = table
            .state()
            .position
            .next_offset(tp)
            .unwrap_or(range.start);
        if start > range.start {
            return Err(RuntimeError::Invariant(format!(
                "{}: holds {tp} up to {start}, past the input {range}",
                table.name()
            )));
        }
        own.insert(tp.clone(), OffsetRange::new(start, range.end));
    }
    let rows: u64 = files.iter().map(DataFile::record_count).sum();
    let pending = PendingCommit {
        input: own,
        files,
        counters: vec![(summary::ROWS, rows)],
        properties: vec![
            (kappa_quality::SUMMARY_KEY.to_string(), report.to_json()),
            (summary::MAIN_COMMIT.to_string(), main_commit),
        ],
        ..PendingCommit::default()
    };
    match table.commit(pending).await? {
        CommitOutcome::Committed { rows, .. } => Ok(rows),
        CommitOutcome::AlreadyCommitted => Ok(0),
    }
}

/// Completes a quarantine that a crash interrupted: where the quarantine table holds a partition
/// further than the main table, its last commit took rows the main table never recorded as done.
/// The main table records that input as done (offsets only, no rows), as the interrupted flush
/// would have. Called at the start of every session, before reading.
pub(crate) async fn complete_quarantine(tables: &mut Tables) -> Result<(), RuntimeError> {
    let Some(quarantine) = tables.quarantine.as_ref() else {
        return Ok(());
    };
    // The quarantine table's last commit: its input, and the interrupted main commit's event
    // times, judged days, counters and verdicts that it carries.
    let last = quarantine
        .state()
        .last_commit_id
        .as_deref()
        .and_then(|id| kappa_iceberg::state::find_commit(quarantine.table().metadata(), id))
        .and_then(|id| quarantine.table().metadata().snapshot_by_id(id))
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let last_input = last
        .get(summary::INPUT)
        .and_then(|text| kappa_iceberg::state::parse_ranges(text).ok())
        .unwrap_or_default();
    let main = &tables.main.state().position;
    let input: BTreeMap<TopicPartition, OffsetRange> = quarantine
        .state()
        .position
        .iter()
        .filter_map(|(tp, held)| match main.next_offset(tp) {
            Some(done) if held > done => Some((tp.clone(), OffsetRange::new(done, held))),
            Some(_) => None,
            // A partition the main table has never recorded: the interrupted flush was its
            // first, and its range is the quarantine commit's.
            None => {
                let start = last_input.get(tp).map_or(held, |r| r.start);
                Some((tp.clone(), OffsetRange::new(start, held)))
            }
        })
        .collect();
    if input.is_empty() {
        return Ok(());
    }
    warn!(
        table = tables.main.name(),
        input = %kappa_iceberg::commit::protocol::input_json(&input),
        "completing a quarantined flush interrupted before the main table recorded it"
    );
    let mut pending = PendingCommit {
        input,
        counters: vec![(summary::QUARANTINED, 0)],
        ..PendingCommit::default()
    };
    match last.get(summary::MAIN_COMMIT) {
        Some(text) => restore(text, &mut pending).map_err(|e| {
            RuntimeError::Invariant(format!(
                "{}: {} of its last commit: {e}",
                quarantine.name(),
                summary::MAIN_COMMIT
            ))
        })?,
        None => warn!(
            table = quarantine.name(),
            "the quarantine commit carries no main-table facts (written by an older release, or \
             its snapshot expired): the main table records the input without its event times \
             and counters"
        ),
    }
    tables.main.commit(pending).await?;
    Ok(())
}

/// What a quarantined flush's main-table commit records besides its input, as JSON for the
/// quarantine commit's summary (`kappa.main-commit`).
pub(crate) fn carry(pending: &PendingCommit) -> String {
    let counters: Map<String, Value> = pending
        .counters
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
        .collect();
    let properties: Map<String, Value> = pending
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    json!({
        "watermark": pending.watermark,
        "max-event-time": pending.max_event_time,
        "event-times": pending.event_times.to_json(),
        "closed-through": pending.closed_through,
        "counters": counters,
        "properties": properties,
    })
    .to_string()
}

/// Fills `pending` with what [`carry`] recorded.
fn restore(text: &str, pending: &mut PendingCommit) -> Result<(), String> {
    let value: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    pending.watermark = value.get("watermark").and_then(Value::as_i64);
    pending.max_event_time = value.get("max-event-time").and_then(Value::as_i64);
    if let Some(times) = value.get("event-times").and_then(Value::as_str) {
        pending.event_times = EventTimes::from_json(times).map_err(|e| e.to_string())?;
    }
    pending.closed_through = value
        .get("closed-through")
        .and_then(Value::as_i64)
        .and_then(|d| i32::try_from(d).ok());
    // Counters come back as properties: the same summary keys, with the same values.
    pending.counters.clear();
    for section in ["counters", "properties"] {
        if let Some(Value::Object(map)) = value.get(section) {
            for (key, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                pending.properties.push((key.clone(), text));
            }
        }
    }
    Ok(())
}
