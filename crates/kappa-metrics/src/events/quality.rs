//! Quality verdicts and gate decisions, per table and check.
//!
//! The runtime maps a `kappa_quality::Verdict` field by field: `check` is its `name`, `policy`
//! its `policy.as_str()`, and its `Threshold` gives `min`/`max` (`AtMost(x)` → max x,
//! `AtLeast(x)` → min x, `Equals(x)` → both x, `Between(lo, hi)` → lo and hi).

use std::fmt;

use crate::catalog;
use crate::recorder::{counter_add, gauge_set};

/// One check's verdict: `(passed, value, threshold)`.
#[derive(Debug, Clone, Copy)]
pub struct CheckEvaluated<'a> {
    /// The table.
    pub table: &'a str,
    /// The verdict name (`completeness`, `null_rate.user_id`, `rule.currency_pattern`, ...).
    pub check: &'a str,
    /// What a failure does: `block`, `quarantine` or `warn`.
    pub policy: &'static str,
    /// Whether the value met the threshold.
    pub passed: bool,
    /// The measured value.
    pub value: f64,
    /// Lower bound, if the threshold has one.
    pub min: Option<f64>,
    /// Upper bound, if the threshold has one.
    pub max: Option<f64>,
}

impl CheckEvaluated<'_> {
    /// Sets the value, threshold and pass gauges, counts a failure, and logs (debug when
    /// passed, warn when failed).
    pub fn emit(&self) {
        gauge_set(
            &catalog::QUALITY_CHECK_VALUE,
            &[self.table, self.check],
            self.value,
        );
        for (bound, v) in [("min", self.min), ("max", self.max)] {
            if let Some(v) = v {
                gauge_set(
                    &catalog::QUALITY_CHECK_THRESHOLD,
                    &[self.table, self.check, bound],
                    v,
                );
            }
        }
        let labels = [self.table, self.check, self.policy];
        gauge_set(
            &catalog::QUALITY_CHECK_PASSED,
            &labels,
            if self.passed { 1.0 } else { 0.0 },
        );
        counter_add(
            &catalog::QUALITY_CHECK_FAILURES,
            &labels,
            u64::from(!self.passed),
        );
        if self.passed {
            tracing::debug!(
                table = self.table,
                check = self.check,
                policy = self.policy,
                value = self.value,
                min = self.min,
                max = self.max,
                "quality check passed"
            );
        } else {
            tracing::warn!(
                table = self.table,
                check = self.check,
                policy = self.policy,
                value = self.value,
                min = self.min,
                max = self.max,
                "quality check failed"
            );
        }
    }
}

/// The NULL share of a critical column in what a commit is about to write.
#[derive(Debug, Clone, Copy)]
pub struct NullRate<'a> {
    /// The table.
    pub table: &'a str,
    /// The column.
    pub column: &'a str,
    /// NULLs / rows, in `[0, 1]`.
    pub rate: f64,
}

impl NullRate<'_> {
    /// Sets the gauge and logs it (debug).
    pub fn emit(&self) {
        gauge_set(
            &catalog::QUALITY_NULL_RATE,
            &[self.table, self.column],
            self.rate,
        );
        tracing::debug!(
            table = self.table,
            column = self.column,
            rate = self.rate,
            "null rate"
        );
    }
}

/// What the verdicts of a flush add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOutcome {
    /// Committed to the table (failed `warn` checks only alert).
    Commit,
    /// Diverted to the quarantine table.
    Quarantine,
    /// Nothing committed; ingestion waits.
    Block,
}

impl GateOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GateOutcome::Commit => "commit",
            GateOutcome::Quarantine => "quarantine",
            GateOutcome::Block => "block",
        }
    }
}

impl fmt::Display for GateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gate's decision for one flush.
#[derive(Debug, Clone, Copy)]
pub struct GateDecided<'a> {
    /// The table.
    pub table: &'a str,
    /// The outcome.
    pub outcome: GateOutcome,
    /// Names of the checks that failed (for the log).
    pub failed_checks: &'a [&'a str],
}

impl GateDecided<'_> {
    /// Counts the outcome, sets `kappa_quality_gate_blocked` (1 on block, 0 otherwise) and logs
    /// (debug on commit without failures, warn otherwise).
    pub fn emit(&self) {
        counter_add(
            &catalog::QUALITY_GATE_OUTCOMES,
            &[self.table, self.outcome.as_str()],
            1,
        );
        gauge_set(
            &catalog::QUALITY_GATE_BLOCKED,
            &[self.table],
            if self.outcome == GateOutcome::Block {
                1.0
            } else {
                0.0
            },
        );
        let failed = self.failed_checks.join(",");
        if self.outcome == GateOutcome::Commit && self.failed_checks.is_empty() {
            tracing::debug!(table = self.table, outcome = %self.outcome, "quality gate passed");
        } else {
            tracing::warn!(
                table = self.table,
                outcome = %self.outcome,
                failed_checks = %failed,
                "quality gate decided"
            );
        }
    }
}
