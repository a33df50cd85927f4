//! The manifests and the manifest list of a new snapshot.
//!
//! The parent's manifests are carried by reference (those left with no live file dropped) unless
//! one holds a live file the change deletes; such a manifest is rewritten in place (the same entries, the deleted ones marked
//! DELETED, the others EXISTING with their snapshot and sequence numbers), so
//! that the files of every other partition stay where they are and are never rewritten. The new
//! files go into one more manifest, ADDED.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    DataFile, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, SnapshotRef, SnapshotSummaryCollector, TableProperties,
    UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;

use super::{failed, invalid};
use crate::error::IcebergError;

/// What to write.
pub(super) struct Plan<'a> {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    /// Names this commit's files.
    pub commit: uuid::Uuid,
    /// Which live files (of the table's default partition spec) are deleted (`None`: an
    /// append).
    pub deletes: Option<&'a (dyn Fn(&DataFile) -> bool + Sync)>,
    /// Whether a manifest may hold a file `deletes` deletes (one that cannot is carried by
    /// reference without being read).
    pub may_delete: &'a (dyn Fn(&ManifestFile) -> bool + Sync),
    /// Files added.
    pub files: &'a [DataFile],
}

/// What was written.
pub(super) struct Written {
    /// The manifest list.
    pub manifest_list: String,
    /// Every file written (manifests and the list).
    pub files: Vec<String>,
    /// `added-*` / `deleted-*` summary entries of the change.
    pub summary: HashMap<String, String>,
}

pub(super) async fn write(
    table: &Table,
    parent: Option<&SnapshotRef>,
    plan: Plan<'_>,
) -> Result<Written, IcebergError> {
    let mut files = Vec::new();
    let result = write_all(table, parent, &plan, &mut files).await;
    if result.is_err() {
        super::discard_files(table, &files).await;
    }
    result.map(|(manifest_list, summary)| Written {
        manifest_list,
        files,
        summary,
    })
}

/// A v2 data manifest writer for `path` (recorded in `written`), its entries of `snapshot_id`.
fn manifest_writer(
    table: &Table,
    path: String,
    snapshot_id: i64,
    schema: iceberg::spec::SchemaRef,
    spec: iceberg::spec::PartitionSpec,
    written: &mut Vec<String>,
) -> Result<ManifestWriter, IcebergError> {
    let output = table
        .file_io()
        .new_output(&path)
        .map_err(|e| failed(table, "writing a manifest", e))?;
    written.push(path);
    Ok(ManifestWriterBuilder::new(output, Some(snapshot_id), schema, spec).build_v2_data())
}

async fn write_all(
    table: &Table,
    parent: Option<&SnapshotRef>,
    plan: &Plan<'_>,
    written: &mut Vec<String>,
) -> Result<(String, HashMap<String, String>), IcebergError> {
    let metadata = table.metadata();
    let io = table.file_io();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let mut collector = SnapshotSummaryCollector::default();
    collector.set_partition_summary_limit(
        metadata
            .properties()
            .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let mut next_manifest = 0;
    let mut manifest_path = || {
        let path = format!(
            "{}/metadata/{}-m{next_manifest}.avro",
            metadata.location(),
            plan.commit
        );
        next_manifest += 1;
        path
    };
    let mut manifests: Vec<ManifestFile> = Vec::new();
    if let Some(parent) = parent {
        let list = table
            .manifest_list_reader(parent)
            .load()
            .await
            .map_err(|e| failed(table, "reading the parent's manifest list", e))?;
        for manifest in list.consume_entries() {
            if manifest.content != ManifestContentType::Data {
                return Err(invalid(
                    table,
                    format!(
                        "manifest {} holds delete files, which the snapshot producer does not \
                         handle",
                        manifest.manifest_path
                    ),
                ));
            }
            // A manifest left with no live file (its entries all DELETED by an earlier
            // snapshot) says nothing of this one: dropped, as Iceberg's own producers do, so
            // that rewrites do not pile up empty manifests.
            if manifest.added_files_count == Some(0) && manifest.existing_files_count == Some(0) {
                continue;
            }
            let Some(deletes) = plan.deletes.filter(|_| (plan.may_delete)(&manifest)) else {
                manifests.push(manifest);
                continue;
            };
            let loaded = manifest
                .load_manifest(io)
                .await
                .map_err(|e| failed(table, "reading a manifest", e))?;
            let touched = manifest.partition_spec_id == spec.spec_id()
                && loaded
                    .entries()
                    .iter()
                    .any(|e| e.is_alive() && deletes(e.data_file()));
            if !touched {
                manifests.push(manifest);
                continue;
            }
            let (entries, meta) = loaded.into_parts();
            let manifest_spec = Arc::new(meta.partition_spec.clone());
            let mut writer = manifest_writer(
                table,
                manifest_path(),
                plan.snapshot_id,
                meta.schema.clone(),
                meta.partition_spec.clone(),
                written,
            )?;
            for entry in entries.into_iter().map(Arc::unwrap_or_clone) {
                if !entry.is_alive() {
                    continue;
                }
                let data_sequence = entry.sequence_number.ok_or_else(|| {
                    invalid(
                        table,
                        format!(
                            "{}: a live entry without a sequence number",
                            entry.file_path()
                        ),
                    )
                })?;
                let file_sequence = entry.file_sequence_number.or(Some(data_sequence));
                let add = if deletes(&entry.data_file) {
                    collector.remove_file(
                        &entry.data_file,
                        meta.schema.clone(),
                        manifest_spec.clone(),
                    );
                    writer.add_delete_file(entry.data_file, data_sequence, file_sequence)
                } else {
                    let snapshot_id = entry.snapshot_id.ok_or_else(|| {
                        invalid(
                            table,
                            format!("{}: a live entry without a snapshot id", entry.file_path()),
                        )
                    })?;
                    writer.add_existing_file(
                        entry.data_file,
                        snapshot_id,
                        data_sequence,
                        file_sequence,
                    )
                };
                add.map_err(|e| failed(table, "writing a manifest", e))?;
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .map_err(|e| failed(table, "writing a manifest", e))?,
            );
        }
    }
    if !plan.files.is_empty() {
        let mut writer = manifest_writer(
            table,
            manifest_path(),
            plan.snapshot_id,
            schema.clone(),
            spec.as_ref().clone(),
            written,
        )?;
        for file in plan.files {
            collector.add_file(file, schema.clone(), spec.clone());
            writer
                .add_file(file.clone(), UNASSIGNED_SEQUENCE_NUMBER)
                .map_err(|e| failed(table, "writing a manifest", e))?;
        }
        manifests.push(
            writer
                .write_manifest_file()
                .await
                .map_err(|e| failed(table, "writing a manifest", e))?,
        );
    }
    let list = format!(
        "{}/metadata/snap-{}-0-{}.avro",
        metadata.location(),
        plan.snapshot_id,
        plan.commit
    );
    let output = io
        .new_output(&list)
        .map_err(|e| failed(table, "writing the manifest list", e))?
        .writer()
        .await
        .map_err(|e| failed(table, "writing the manifest list", e))?;
    written.push(list.clone());
    let mut writer = ManifestListWriter::v2(
        output,
        plan.snapshot_id,
        parent.map(|p| p.snapshot_id()),
        plan.sequence_number,
    );
    writer
        .add_manifests(manifests.into_iter())
        .map_err(|e| failed(table, "writing the manifest list", e))?;
    writer
        .close()
        .await
        .map_err(|e| failed(table, "writing the manifest list", e))?;
    Ok((list, collector.build()))
}
