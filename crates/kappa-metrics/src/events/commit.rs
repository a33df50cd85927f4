//! How each flush's commit ended, per table (`outcome` label of `kappa_commits_total`).
//!
//! ```text
//! flush ─► attempt ─► conflict? ──yes─► ConflictRetried ─► attempt again
//!             │ no                          (after max attempts) ─► Failed
//!             ▼
//!   input already in the table? ──yes─► AlreadyCommitted
//!             │ no
//!             ▼
//!         Committed
//! ```

use std::fmt;
use std::time::Duration;

use kappa_core::ErrorKind;

use crate::catalog;
use crate::events::table;
use crate::recorder::{counter_add, histogram_record};

/// Every `outcome` label value of `kappa_commits_total`.
pub const OUTCOMES: [&str; 4] = [
    "committed",
    "already_committed",
    "conflict_retried",
    "failed",
];

/// A flush became a new snapshot of the table.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The table.
    pub table: &'a str,
    /// The new snapshot.
    pub snapshot_id: i64,
    /// Rows added.
    pub records: u64,
    /// Data files added.
    pub files: u64,
    /// Bytes of data files added.
    pub bytes: u64,
    /// Attempts it took (1 without conflicts).
    pub attempts: u32,
    /// Wall time of write and commit.
    pub duration: Duration,
    /// The table's newest committed event time after this commit (µs since the epoch; the
    /// table state's `max_event_time`, which covers other writers' commits too).
    pub max_event_time_micros: Option<i64>,
}

impl Committed<'_> {
    /// Counts the commit, its rows, files and bytes, observes its duration, restarts the
    /// table's last-commit clock, moves its freshness, and logs it (info).
    pub fn emit(&self) {
        let table = [self.table];
        counter_add(&catalog::COMMITS, &[self.table, "committed"], 1);
        counter_add(&catalog::PIPELINE_RECORDS_WRITTEN, &table, self.records);
        counter_add(&catalog::COMMIT_FILES_WRITTEN, &table, self.files);
        counter_add(&catalog::COMMIT_BYTES_WRITTEN, &table, self.bytes);
        histogram_record(
            &catalog::COMMIT_DURATION,
            &table,
            self.duration.as_secs_f64(),
        );
        table::committed(self.table, self.max_event_time_micros);
        tracing::info!(
            table = self.table,
            snapshot_id = self.snapshot_id,
            records = self.records,
            files = self.files,
            bytes = self.bytes,
            attempts = self.attempts,
            duration_ms = self.duration.as_millis() as u64,
            max_event_time_micros = self.max_event_time_micros,
            "committed"
        );
    }
}

/// A flush found its input already in the table (another replica, or a rerun, committed it):
/// nothing was written. The table is as current as this input, so the last-commit clock
/// restarts too.
#[derive(Debug, Clone, Copy)]
pub struct AlreadyCommitted<'a> {
    /// The table.
    pub table: &'a str,
    /// Wall time until the flush knew.
    pub duration: Duration,
}

impl AlreadyCommitted<'_> {
    /// Counts it, observes the duration, restarts the last-commit clock, logs (info).
    pub fn emit(&self) {
        counter_add(&catalog::COMMITS, &[self.table, "already_committed"], 1);
        histogram_record(
            &catalog::COMMIT_DURATION,
            &[self.table],
            self.duration.as_secs_f64(),
        );
        table::committed(self.table, None);
        tracing::info!(
            table = self.table,
            duration_ms = self.duration.as_millis() as u64,
            "input already committed; nothing written"
        );
    }
}

/// A commit attempt lost to another writer's commit; the committer reloads and tries again.
#[derive(Clone, Copy)]
pub struct ConflictRetried<'a> {
    /// The table.
    pub table: &'a str,
    /// The attempt that conflicted (1 = the first).
    pub attempt: u32,
    /// What the catalog said.
    pub reason: &'a dyn fmt::Display,
}

impl ConflictRetried<'_> {
    /// Counts the retry and logs it (warn).
    pub fn emit(&self) {
        counter_add(&catalog::COMMITS, &[self.table, "conflict_retried"], 1);
        tracing::warn!(
            table = self.table,
            attempt = self.attempt,
            reason = %self.reason,
            "commit conflicted; reloading to retry"
        );
    }
}

/// A flush could not be committed and the committer gave up (the runtime stops or restarts
/// the session).
#[derive(Clone, Copy)]
pub struct Failed<'a> {
    /// The table.
    pub table: &'a str,
    /// Wall time until it gave up.
    pub duration: Duration,
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error.
    pub error: &'a dyn fmt::Display,
}

impl Failed<'_> {
    /// Counts the failure, observes the duration and logs it (error).
    pub fn emit(&self) {
        counter_add(&catalog::COMMITS, &[self.table, "failed"], 1);
        histogram_record(
            &catalog::COMMIT_DURATION,
            &[self.table],
            self.duration.as_secs_f64(),
        );
        tracing::error!(
            table = self.table,
            kind = %self.kind,
            duration_ms = self.duration.as_millis() as u64,
            error = %self.error,
            "commit failed"
        );
    }
}
