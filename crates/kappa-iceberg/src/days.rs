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

    /// Paths of the live data files of `days` in the table's current snapshot.
    pub async fn live_files(
        &self,
        table: &Table,
        days: &std::collections::BTreeSet<i32>,
    ) -> Result<std::collections::HashSet<String>, IcebergError> {
        let mut live = std::collections::HashSet::new();
        self.each_live(table, |file| {
            if self.day(file).is_some_and(|d| days.contains(&d)) {
                live.insert(file.file_path().to_string());
            }
        })
        .await?;
        Ok(live)
    }

    /// Rows per day of every live data file of the table's current snapshot.
    pub async fn rows_in(&self, table: &Table) -> Result<BTreeMap<i32, u64>, IcebergError> {
        let mut days = BTreeMap::new();
        self.each_live(table, |file| {
            if let Some(day) = self.day(file) {
                *days.entry(day).or_insert(0) += file.record_count();
            }
        })
        .await?;
        Ok(days)
    }

    /// Calls `each` with every live data file of this spec in the table's current snapshot.
    async fn each_live(
        &self,
        table: &Table,
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
