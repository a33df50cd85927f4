//! What the pipeline did with a batch, per table.

use crate::catalog;
use crate::recorder::counter_add;

/// Every `kind` label value of `kappa_pipeline_records_dead_lettered_total`.
pub const KINDS: [&str; 3] = ["undecodable", "unmappable", "rejected"];

/// Records of a batch sent to the dead-letter table, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLettered {
    /// Could not be decoded (bad wire format, unknown schema id, corrupt Avro).
    pub undecodable: u64,
    /// Written with a schema that cannot be read as the table's.
    pub unmappable: u64,
    /// Rejected by the logic or a record rule.
    pub rejected: u64,
}

impl DeadLettered {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.undecodable + self.unmappable + self.rejected
    }
}

/// One batch through decode, logic and record rules, on its way to a table.
#[derive(Debug, Clone, Copy)]
pub struct BatchProcessed<'a> {
    /// The table the batch is for.
    pub table: &'a str,
    /// Records that entered the pipeline (past the committed position; warm-up excluded).
    pub records: u64,
    /// Records dropped as duplicates.
    pub deduplicated: u64,
    /// Records later than the watermark.
    pub late: u64,
    /// Records dead-lettered, by kind.
    pub dead_lettered: DeadLettered,
}

impl BatchProcessed<'_> {
    /// Counts the batch and logs it (debug). Zero counts still create their series, so
    /// `rate()` and the dashboard show 0 rather than nothing.
    pub fn emit(&self) {
        let table = [self.table];
        counter_add(&catalog::PIPELINE_RECORDS_READ, &table, self.records);
        counter_add(
            &catalog::PIPELINE_RECORDS_DEDUPLICATED,
            &table,
            self.deduplicated,
        );
        counter_add(&catalog::PIPELINE_RECORDS_LATE, &table, self.late);
        let d = self.dead_lettered;
        for (kind, n) in KINDS
            .into_iter()
            .zip([d.undecodable, d.unmappable, d.rejected])
        {
            counter_add(
                &catalog::PIPELINE_RECORDS_DEAD_LETTERED,
                &[self.table, kind],
                n,
            );
        }
        tracing::debug!(
            table = self.table,
            records = self.records,
            deduplicated = self.deduplicated,
            late = self.late,
            undecodable = d.undecodable,
            unmappable = d.unmappable,
            rejected = d.rejected,
            "batch processed"
        );
    }
}
