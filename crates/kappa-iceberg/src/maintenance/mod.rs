//! Table maintenance while ingestion runs: compaction, snapshot expiry, orphan cleanup
//! (`kappa maintain`).
//!
//! ```text
//!   compact  closed days' small files ──► files of the target size, sorted by event time
//!            one `replace` snapshot per partition (the rows unchanged), through the
//!            snapshot producer's commit protocol: a live append in between is a conflict,
//!            the rewrite is staged again on the newer table (its files kept); if one of the
//!            rewritten files is gone (another compaction), that partition is left alone
//!   expire   snapshots older than a cutoff, past the newest N of each branch ──► removed in
//!            one commit, with their summaries archived ([`crate::history`]); then the
//!            manifests, manifest lists and data files no remaining snapshot references
//!   orphans  files under the table's location that no metadata references and that are
//!            older than a grace period (crashed flushes' files, stale metadata) ──► deleted
//! ```
//!
//! Kappa's position state lives in table properties ([`crate::state`]), which no snapshot
//! expiry touches; verdicts and backfill audits survive expiry in the history archive.

pub mod compact;
pub mod expire;
pub mod orphans;

use std::collections::{HashMap, HashSet};

use iceberg::spec::{DataFile, ManifestContentType, ManifestFile, SnapshotRef};
use iceberg::table::Table;

use crate::commit::table_name;
use crate::error::IcebergError;

/// Emits [`kappa_metrics::events::table::Shape`] for `table` as loaded: its snapshots, and its
/// current snapshot's summary totals of live data files and bytes, against `target` (`None`: the
/// table's `write.target-file-size-bytes`, which Kappa sets from `[table] target_file_size` when
/// it creates the table; 128 MiB when absent). Reads no file.
pub fn emit_shape(table: &Table, target: Option<u64>) {
    let metadata = table.metadata();
    let total = |key: &str| {
        metadata
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get(key))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let name = table_name(table.identifier());
    kappa_metrics::events::table::Shape {
        table: &name,
        snapshots: metadata.snapshots().len() as u64,
        data_files: total("total-data-files"),
        data_bytes: total("total-files-size"),
        target_file_size: target.unwrap_or_else(|| {
            metadata
                .properties()
                .get("write.target-file-size-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::writer::WriterOptions::default().target_file_size as u64)
        }),
    }
    .emit();
}

fn failed(table: &Table, operation: &str, source: iceberg::Error) -> IcebergError {
    IcebergError::Table {
        table: table_name(table.identifier()),
        operation: operation.to_string(),
        source: Box::new(source),
    }
}

/// The live data files of the table's current snapshot of its default partition spec, of the
/// manifests `read` accepts.
pub(crate) async fn live_data_files(
    table: &Table,
    read: impl Fn(&ManifestFile) -> bool,
) -> Result<Vec<DataFile>, IcebergError> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(Vec::new());
    };
    let spec_id = metadata.default_partition_spec_id();
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(|e| failed(table, "reading the manifest list", e))?;
    let mut files = Vec::new();
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data
            || manifest.partition_spec_id != spec_id
            || !read(manifest)
        {
            continue;
        }
        let entries = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(|e| failed(table, "reading a manifest", e))?;
        files.extend(
            entries
                .entries()
                .iter()
                .filter(|e| e.is_alive())
                .map(|e| e.data_file().clone()),
        );
    }
    Ok(files)
}

/// The files snapshots reference, read once per manifest.
#[derive(Debug, Default)]
pub(crate) struct Referenced {
    /// Manifest lists, manifests and live data files, with their sizes when known.
    pub files: HashMap<String, u64>,
    /// Manifests read so far: their own size and their live data files.
    manifests: HashMap<String, (u64, Vec<(String, u64)>)>,
}

impl Referenced {
    /// Adds every file `snapshot` references: its manifest list, its manifests (data and
    /// delete) and their live entries' files.
    pub async fn add_snapshot(
        &mut self,
        table: &Table,
        snapshot: &SnapshotRef,
    ) -> Result<(), IcebergError> {
        self.files
            .entry(snapshot.manifest_list().to_string())
            .or_insert(0);
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| failed(table, "reading a manifest list", e))?;
        for manifest in list.entries() {
            if !self.manifests.contains_key(&manifest.manifest_path) {
                let entries = manifest
                    .load_manifest(table.file_io())
                    .await
                    .map_err(|e| failed(table, "reading a manifest", e))?;
                let live = entries
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive())
                    .map(|e| (e.file_path().to_string(), e.file_size_in_bytes()))
                    .collect();
                self.manifests.insert(
                    manifest.manifest_path.clone(),
                    (manifest.manifest_length.max(0) as u64, live),
                );
            }
            let (length, live) = &self.manifests[&manifest.manifest_path];
            self.files.insert(manifest.manifest_path.clone(), *length);
            for (path, size) in live {
                self.files.insert(path.clone(), *size);
            }
        }
        Ok(())
    }

    /// Adds the files the table's metadata itself names: the current metadata file, the previous
    /// ones it lists, statistics files and the history archive.
    pub fn add_metadata(&mut self, table: &Table) {
        let metadata = table.metadata();
        let mut add = |path: &str| {
            self.files.entry(path.to_string()).or_insert(0);
        };
        if let Some(location) = table.metadata_location() {
            add(location);
        }
        for entry in metadata.metadata_log() {
            add(&entry.metadata_file);
        }
        for stats in metadata.statistics_iter() {
            add(&stats.statistics_path);
        }
        for stats in metadata.partition_statistics_iter() {
            add(&stats.statistics_path);
        }
        if let Some(path) = metadata.properties().get(crate::history::HISTORY_PROPERTY) {
            add(path);
        }
    }

    /// The referenced paths without a `file://` scheme ([`normalize`]).
    pub fn normalized(&self) -> HashSet<String> {
        self.files.keys().map(|p| normalize(p)).collect()
    }
}

/// A path without its `file://` or `file:` scheme, so that `file:///a/b` and `/a/b` compare
/// equal.
pub fn normalize(path: &str) -> String {
    path.strip_prefix("file://")
        .or_else(|| path.strip_prefix("file:"))
        .unwrap_or(path)
        .to_string()
}
