//! The history of `main`: its snapshots' summaries, including the ones `kappa maintain expire`
//! removed.
//!
//! Snapshot summaries carry what Kappa reports after the fact: each commit's gate verdicts
//! (`kappa.quality`), dead-letter counts, backfill audits (`kappa.backfill.*`). Expiring
//! snapshots would lose them, so the expiry that removes snapshots of `main`'s ancestry first
//! writes their summaries to an archive file under the table's metadata directory and points the
//! table property [`HISTORY_PROPERTY`] at it, in the same atomic commit as the removal:
//!
//! ```text
//!   main ancestry (live snapshots, newest first) ++ archive (expired ones, newest first)
//!        ▲                                              ▲
//!   table metadata                          property kappa.history → metadata/kappa-history-<uuid>.avro
//! ```
//!
//! The archive is an Avro file (Iceberg's own format for metadata, which catalogs that check the
//! names of a table's files accept, and which any Avro reader opens): one record per snapshot,
//! [`ARCHIVE_SCHEMA`].
//!
//! Each expiry writes a new archive (the previous one's entries and the newly expired ones) and
//! deletes the previous file once its commit landed. Readers ([`main_history`]) see one list,
//! newest first, whether a summary is still in a snapshot or only in the archive.

use std::collections::{HashMap, HashSet};

use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use crate::commit::table_name;
use crate::error::IcebergError;
use crate::state::ancestry;

/// The table property naming the archive of expired snapshots' summaries.
pub const HISTORY_PROPERTY: &str = "kappa.history";

/// One snapshot of `main`'s history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its id.
    pub snapshot_id: i64,
    /// Its parent's id.
    pub parent_snapshot_id: Option<i64>,
    /// When it was committed (ms since the epoch).
    pub timestamp_ms: i64,
    /// `append`, `overwrite`, `replace`, `delete`.
    pub operation: String,
    /// Its summary properties.
    pub summary: HashMap<String, String>,
}

impl HistoryEntry {
    fn of(snapshot: &iceberg::spec::Snapshot) -> Self {
        let summary = snapshot.summary();
        Self {
            snapshot_id: snapshot.snapshot_id(),
            parent_snapshot_id: snapshot.parent_snapshot_id(),
            timestamp_ms: snapshot.timestamp_ms(),
            operation: summary.operation.as_str().to_string(),
            summary: summary.additional_properties.clone(),
        }
    }
}

/// The Avro schema of the archive's records.
pub const ARCHIVE_SCHEMA: &str = r#"{
  "type": "record",
  "name": "kappa_history_entry",
  "namespace": "io.kappa",
  "fields": [
    {"name": "snapshot_id", "type": "long"},
    {"name": "parent_snapshot_id", "type": ["null", "long"], "default": null},
    {"name": "timestamp_ms", "type": "long"},
    {"name": "operation", "type": "string"},
    {"name": "summary", "type": {"type": "map", "values": "string"}}
  ]
}"#;

/// The summaries of the snapshots expiries removed from `main`'s history, newest first.
pub async fn archived(table: &Table) -> Result<Vec<HistoryEntry>, IcebergError> {
    let Some(path) = table.metadata().properties().get(HISTORY_PROPERTY) else {
        return Ok(Vec::new());
    };
    let fail = |message: String| IcebergError::State {
        table: table_name(table.identifier()),
        place: format!("table property {HISTORY_PROPERTY} ({path})"),
        message,
    };
    let exists = table
        .file_io()
        .exists(path)
        .await
        .map_err(|e| fail(format!("checking the archive of expired snapshots: {e}")))?;
    if !exists {
        // Deleted by another engine's orphan cleanup, which does not know the property: the
        // expired snapshots' summaries are gone, the table and its live history are fine.
        tracing::warn!(
            table = %table_name(table.identifier()),
            path,
            "the archive of expired snapshots' summaries is missing: their verdicts and audits are no longer reported"
        );
        return Ok(Vec::new());
    }
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(|e| fail(e.to_string()))?
        .read()
        .await
        .map_err(|e| fail(format!("reading the archive of expired snapshots: {e}")))?;
    let reader =
        apache_avro::Reader::new(&bytes[..]).map_err(|e| fail(format!("not an archive: {e}")))?;
    let mut entries = Vec::new();
    for value in reader {
        let value = value.map_err(|e| fail(format!("reading the archive: {e}")))?;
        entries.push(
            apache_avro::from_value(&value).map_err(|e| fail(format!("an archive record: {e}")))?,
        );
    }
    Ok(entries)
}

/// `main`'s history, newest first: its live ancestry, then the summaries expiries archived.
pub async fn main_history(table: &Table) -> Result<Vec<HistoryEntry>, IcebergError> {
    let mut history: Vec<HistoryEntry> = ancestry(table.metadata())
        .map(|s| HistoryEntry::of(s))
        .collect();
    let live: HashSet<i64> = history.iter().map(|e| e.snapshot_id).collect();
    history.extend(
        archived(table)
            .await?
            .into_iter()
            .filter(|e| !live.contains(&e.snapshot_id)),
    );
    Ok(history)
}

/// Writes the archive an expiry of `expired` leaves: the table's archived entries and those of
/// the expired snapshots that are in `main`'s ancestry, newest first. Returns its path (under
/// the table's metadata directory, a new name each time).
pub(crate) async fn write_archive(
    table: &Table,
    expired: &HashSet<i64>,
) -> Result<Option<String>, IcebergError> {
    let metadata = table.metadata();
    let mut entries: Vec<HistoryEntry> = ancestry(metadata)
        .filter(|s| expired.contains(&s.snapshot_id()))
        .map(|s| HistoryEntry::of(s))
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    entries.extend(archived(table).await?);
    let path = format!(
        "{}/metadata/kappa-history-{}.avro",
        metadata.location().trim_end_matches('/'),
        uuid::Uuid::now_v7()
    );
    let fail = |e: String| IcebergError::Table {
        table: table_name(table.identifier()),
        operation: format!("writing the archive of expired snapshots {path}"),
        source: Box::new(iceberg::Error::new(iceberg::ErrorKind::Unexpected, e)),
    };
    let schema = apache_avro::Schema::parse_str(ARCHIVE_SCHEMA).map_err(|e| fail(e.to_string()))?;
    let mut writer =
        apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Snappy);
    for entry in &entries {
        writer.append_ser(entry).map_err(|e| fail(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    table
        .file_io()
        .new_output(&path)
        .map_err(|e| fail(e.to_string()))?
        .write(bytes.into())
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(path))
}
