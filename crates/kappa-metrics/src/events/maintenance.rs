//! `kappa maintain`: what each command did to each table.
//!
//! ```text
//! compact ─► Compacted { bytes and files rewritten }
//! expire ──► Expired { snapshots removed, files and bytes deleted }
//! orphans ─► OrphansDeleted { files and bytes deleted }
//! each ────► Finished { files per partition as left }, table::Shape
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog;
use crate::recorder::{counter_add, gauge_set};

/// Counts `command`'s deleted files and bytes on `table` and marks its success.
fn deleted(table: &str, command: &str, files: u64, bytes: u64) {
    let labels = [table, command];
    counter_add(&catalog::MAINTENANCE_FILES_DELETED, &labels, files);
    counter_add(&catalog::MAINTENANCE_BYTES_DELETED, &labels, bytes);
    succeeded(table, command);
}

fn succeeded(table: &str, command: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge_set(&catalog::MAINTENANCE_LAST_SUCCESS, &[table, command], now);
}

/// `kappa maintain compact` finished a table.
#[derive(Debug, Clone, Copy)]
pub struct Compacted<'a> {
    /// The table.
    pub table: &'a str,
    /// Partitions rewritten.
    pub partitions: u64,
    /// Data files replaced.
    pub files_rewritten: u64,
    /// Bytes of the files written in their place.
    pub bytes_rewritten: u64,
}

impl Compacted<'_> {
    /// Counts, marks the command's success and logs (info).
    pub fn emit(&self) {
        let table = [self.table];
        counter_add(
            &catalog::MAINTENANCE_BYTES_REWRITTEN,
            &table,
            self.bytes_rewritten,
        );
        counter_add(
            &catalog::MAINTENANCE_FILES_REWRITTEN,
            &table,
            self.files_rewritten,
        );
        succeeded(self.table, "compact");
        tracing::info!(
            table = self.table,
            partitions = self.partitions,
            files_rewritten = self.files_rewritten,
            bytes_rewritten = self.bytes_rewritten,
            "compaction finished"
        );
    }
}

/// `kappa maintain expire` finished a table.
#[derive(Debug, Clone, Copy)]
pub struct Expired<'a> {
    /// The table.
    pub table: &'a str,
    /// Snapshots removed.
    pub snapshots: u64,
    /// Files deleted.
    pub files_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
}

impl Expired<'_> {
    /// Counts, marks the command's success and logs (info).
    pub fn emit(&self) {
        counter_add(
            &catalog::MAINTENANCE_SNAPSHOTS_EXPIRED,
            &[self.table],
            self.snapshots,
        );
        deleted(self.table, "expire", self.files_deleted, self.bytes_deleted);
        tracing::info!(
            table = self.table,
            snapshots = self.snapshots,
            files_deleted = self.files_deleted,
            bytes_deleted = self.bytes_deleted,
            "snapshot expiry finished"
        );
    }
}

/// `kappa maintain orphans` finished a table.
#[derive(Debug, Clone, Copy)]
pub struct OrphansDeleted<'a> {
    /// The table.
    pub table: &'a str,
    /// Orphans deleted.
    pub files_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Unreferenced files kept, younger than the grace period.
    pub young: u64,
}

impl OrphansDeleted<'_> {
    /// Counts, marks the command's success and logs (info).
    pub fn emit(&self) {
        deleted(
            self.table,
            "orphans",
            self.files_deleted,
            self.bytes_deleted,
        );
        tracing::info!(
            table = self.table,
            files_deleted = self.files_deleted,
            bytes_deleted = self.bytes_deleted,
            young = self.young,
            "orphan cleanup finished"
        );
    }
}

/// The table's partitions as a maintenance run left them.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The table.
    pub table: &'a str,
    /// Partitions with live data files.
    pub partitions: u64,
    /// Most live data files in one partition.
    pub partition_files_max: u64,
}

impl Finished<'_> {
    /// Sets the gauges and logs (debug).
    pub fn emit(&self) {
        let table = [self.table];
        gauge_set(&catalog::TABLE_PARTITIONS, &table, self.partitions as f64);
        gauge_set(
            &catalog::TABLE_PARTITION_FILES_MAX,
            &table,
            self.partition_files_max as f64,
        );
        tracing::debug!(
            table = self.table,
            partitions = self.partitions,
            partition_files_max = self.partition_files_max,
            "table partitions"
        );
    }
}
