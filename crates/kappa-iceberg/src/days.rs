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
    fn day(&self, file: &DataFile) -> Option<i32> {
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

    /// Rows per day of every live data file of the table's current snapshot.
    pub async fn rows_in(&self, table: &Table) -> Result<BTreeMap<i32, u64>, IcebergError> {
        let name = crate::commit::table_name(table.identifier());
        let fail = |operation: &str, source: iceberg::Error| IcebergError::Table {
            table: name.clone(),
            operation: operation.to_string(),
            source: Box::new(source),
        };
        let mut days = BTreeMap::new();
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return Ok(days);
        };
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| fail("reading the manifest list for rows per day", e))?;
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data
                || manifest.partition_spec_id != self.spec_id
            {
                continue;
            }
            let entries = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(|e| fail("reading a manifest for rows per day", e))?;
            for entry in entries.entries().iter().filter(|e| e.is_alive()) {
                if let Some(day) = self.day(entry.data_file()) {
                    *days.entry(day).or_insert(0) += entry.data_file().record_count();
                }
            }
        }
        Ok(days)
    }
}
