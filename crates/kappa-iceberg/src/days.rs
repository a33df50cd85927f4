//! Rows per day partition, read from the table's own metadata (manifest entries: partition value
//! and record count of every live data file), for the partition gate. No data file is opened.

use std::collections::BTreeMap;

use iceberg::spec::{DataFile, Literal, ManifestContentType, PrimitiveLiteral, Transform};
use iceberg::table::Table;

use crate::error::IcebergError;

/// Where the day of a row sits in the table's partition values: the index of the
/// `day(<column>)` field of the default partition spec, and that spec's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayField {
    spec_id: i32,
    index: usize,
}

impl DayField {
    /// The `day(column)` field of `table`'s default partition spec, if it has one.
    pub fn of(table: &Table, column: &str) -> Option<DayField> {
        let metadata = table.metadata();
        let source = metadata.current_schema().field_by_name(column)?.id;
        let spec = metadata.default_partition_spec();
        let index = spec
            .fields()
            .iter()
            .position(|f| f.source_id == source && f.transform == Transform::Day)?;
        Some(DayField {
            spec_id: spec.spec_id(),
            index,
        })
    }

    /// The day (days since the epoch) of a data file of this spec.
    pub fn day(&self, file: &DataFile) -> Option<i32> {
        match file.partition().fields().get(self.index)? {
            Some(Literal::Primitive(PrimitiveLiteral::Int(day))) => Some(*day),
            _ => None,
        }
    }

    /// Rows per day of `files` (data files written for this table's default spec).
    pub fn rows_of(&self, files: &[DataFile]) -> BTreeMap<i32, u64> {
        let mut days = BTreeMap::new();
        for file in files {
            if let Some(day) = self.day(file) {
                *days.entry(day).or_insert(0) += file.record_count();
            }
        }
        days
    }

    /// Whether `manifest` may hold files of one of `days`, by the manifest list's summary of its
    /// partition values (a manifest of another spec, or without bounds, may). Lets a change to
    /// some days read only the manifests that hold them.
    pub fn may_hold(
        &self,
        manifest: &iceberg::spec::ManifestFile,
        days: &std::collections::BTreeSet<i32>,
    ) -> bool {
        match self.bounds(manifest) {
            Some((lower, upper)) => days.range(lower..=upper).next().is_some(),
            None => true,
        }
    }

    /// Whether `manifest` may hold files of a day in `from..=to` (see [`DayField::may_hold`]).
    pub fn may_hold_range(
        &self,
        manifest: &iceberg::spec::ManifestFile,
        from: i32,
        to: i32,
    ) -> bool {
        match self.bounds(manifest) {
            Some((lower, upper)) => lower <= to && upper >= from,
            None => true,
        }
    }

    /// The smallest and largest day of `manifest`'s files of this spec, from the manifest list
    /// (`None`: another spec, or no bounds).
    fn bounds(&self, manifest: &iceberg::spec::ManifestFile) -> Option<(i32, i32)> {
        if manifest.partition_spec_id != self.spec_id {
            return None;
        }
        let summary = manifest.partitions.as_ref()?.get(self.index)?;
        // A date partition value's single-value serialization: 4 bytes, little-endian.
        let day = |bytes: Option<&[u8]>| {
            let bytes: [u8; 4] = bytes?.try_into().ok()?;
            Some(i32::from_le_bytes(bytes))
        };
        Some((
            day(summary.lower_bound.as_deref().map(Vec::as_slice))?,
            day(summary.upper_bound.as_deref().map(Vec::as_slice))?,
        ))
    }

    /// Paths of the live data files of `days` in the table's current snapshot (only the
    /// manifests that may hold those days are read).
    pub async fn live_files(
        &self,
        table: &Table,
        days: &std::collections::BTreeSet<i32>,
    ) -> Result<std::collections::HashSet<String>, IcebergError> {
        let mut live = std::collections::HashSet::new();
        self.each_live(
            table,
            |m| self.may_hold(m, days),
            |file| {
                if self.day(file).is_some_and(|d| days.contains(&d)) {
                    live.insert(file.file_path().to_string());
                }
            },
        )
        .await?;
        Ok(live)
    }

    /// Rows per day of every live data file of the table's current snapshot.
    pub async fn rows_in(&self, table: &Table) -> Result<BTreeMap<i32, u64>, IcebergError> {
        let mut days = BTreeMap::new();
        self.each_live(
            table,
            |_| true,
            |file| {
                if let Some(day) = self.day(file) {
                    *days.entry(day).or_insert(0) += file.record_count();
                }
            },
        )
        .await?;
        Ok(days)
    }

    /// Calls `each` with every live data file of this spec in the table's current snapshot, of
    /// the manifests `read` accepts.
    async fn each_live(
        &self,
        table: &Table,
        read: impl Fn(&iceberg::spec::ManifestFile) -> bool,
        mut each: impl FnMut(&DataFile),
    ) -> Result<(), IcebergError> {
        let name = crate::commit::table_name(table.identifier());
        let fail = |operation: &str, source: iceberg::Error| IcebergError::Table {
            table: name.clone(),
            operation: operation.to_string(),
            source: Box::new(source),
        };
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(());
        };
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| fail("reading the manifest list of the day partitions", e))?;
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data
                || manifest.partition_spec_id != self.spec_id
                || !read(manifest)
            {
                continue;
            }
            let entries = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(|e| fail("reading a manifest of the day partitions", e))?;
            for entry in entries.entries().iter().filter(|e| e.is_alive()) {
                each(entry.data_file());
            }
        }
        Ok(())
    }
}
