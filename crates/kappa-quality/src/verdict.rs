//! Verdicts, the outcome they add up to, and their serialised form.
//!
//! Every check returns a [`Verdict`]: `(passed, value, threshold)`, the check's name, scope and
//! [`Policy`]. A [`QualityReport`] holds the verdicts of one commit (or one closed day) and
//! answers the [`Outcome`]:
//!
//! ```text
//! verdicts ─► any failed `block`?  ──yes─► Block(checks)       nothing is committed
//!                 │ no
//!                 ▼
//!             any failed `quarantine`? ──yes─► Quarantine(checks)  batch → quarantine table
//!                 │ no
//!                 ▼
//!               Commit                  (failed `warn` checks only alert)
//! ```
//!
//! The report serialises to JSON ([`QualityReport::to_json`]) for the snapshot summary under
//! [`SUMMARY_KEY`] and reads back ([`QualityReport::from_json`]); the format is versioned
//! ([`REPORT_VERSION`]) and its field names are part of the table contract.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::day::Day;
use crate::error::QualityError;

/// The snapshot-summary property that holds a commit's [`QualityReport`] as JSON.
pub const SUMMARY_KEY: &str = "kappa.quality";

/// Version of the serialised [`QualityReport`]; readers reject newer major versions.
pub const REPORT_VERSION: u32 = 1;

/// What a failing check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Only alert (metrics, logs, the report); the data is committed.
    Warn,
    /// Divert the batch to the quarantine table instead of the main table.
    Quarantine,
    /// Commit nothing; live ingestion pauses where it is until the condition clears.
    Block,
}

impl Policy {
    /// Every policy name, as written in configuration.
    pub const NAMES: &'static [&'static str] = &["block", "quarantine", "warn"];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Warn => "warn",
            Policy::Quarantine => "quarantine",
            Policy::Block => "block",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = QualityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "block" => Ok(Policy::Block),
            "quarantine" => Ok(Policy::Quarantine),
            "warn" => Ok(Policy::Warn),
            other => Err(QualityError::invalid(
                "policy",
                format!(
                    "unknown policy {other:?}; expected {}",
                    Policy::NAMES.join("|")
                ),
            )),
        }
    }
}

/// What a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A record rule: each row; the verdict is about the share of rows that failed.
    Record,
    /// What one commit is about to write.
    Batch,
    /// A day partition that has closed.
    Partition,
}

/// Which check produced a verdict (a bounded set: a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// A `[[quality.rules]]` record rule.
    Rule,
    /// Records in = written + deduplicated + dead-lettered.
    Completeness,
    /// Records in against the source's own count.
    SourceCount,
    /// NULL share of a critical column.
    NullRate,
    /// Duplicate share of the key column within the commit.
    Uniqueness,
    /// Share of records later than the freshness SLA.
    Timeliness,
    /// A closed day's rows against the median of the previous days.
    RowCount,
}

/// The bound a value is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// Passes when `value <= bound`.
    AtMost(f64),
    /// Passes when `value >= bound`.
    AtLeast(f64),
    /// Passes when `value == bound` (counts).
    Equals(f64),
    /// Passes when `lo <= value <= hi`.
    Between(f64, f64),
}

impl Threshold {
    /// Whether `value` meets the bound.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Threshold::AtMost(max) => value <= max,
            Threshold::AtLeast(min) => value >= min,
            Threshold::Equals(expected) => value == expected,
            Threshold::Between(lo, hi) => lo <= value && value <= hi,
        }
    }
}

/// How a verdict's value and threshold read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A share in `[0, 1]`, shown as a percentage.
    Rate,
    /// A number of records.
    Count,
    /// A factor (`×0.50`).
    Ratio,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Rate => {
                let percent = value * 100.0;
                if percent > 0.0 && percent < 0.005 {
                    "<0.01%".to_string()
                } else {
                    format!("{percent:.2}%")
                }
            }
            Unit::Count => format!("{value:.0}"),
            Unit::Ratio => format!("×{value:.2}"),
        }
    }
}

/// The result of one check: `(passed, value, threshold)` with what, where and the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The check's name, unique within a report: `null_rate.user_id`, `completeness`,
    /// `rule.currency_pattern`, `row_count`.
    pub name: String,
    /// Which check this is.
    pub check: Check,
    /// What it looks at.
    pub scope: Scope,
    /// What a failure does.
    pub policy: Policy,
    /// Whether the value meets the threshold (always true when `skipped`).
    pub passed: bool,
    /// The measured value, in `unit`.
    pub value: f64,
    /// The bound.
    pub threshold: Threshold,
    /// How value and threshold read.
    pub unit: Unit,
    /// What is measured, for people: `user_id null rate`.
    pub label: String,
    /// The column the check reads, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The day partition judged (partition scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<Day>,
    /// Why the check could not judge (then it passes): `insufficient history: 3 of 7 days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The numbers behind the value (`rows`, `nulls`, `p99_delay_seconds`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed: BTreeMap<String, f64>,
    /// An operator let this failed check through (`kappa quality override`): who, when, why.
    /// Its policy then reads `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
}

impl Verdict {
    /// A verdict judged by `threshold`; `passed` follows from the value (a non-finite value,
    /// which JSON cannot hold, is a failure recorded as the largest finite number).
    pub(crate) fn judge(
        head: Head,
        value: f64,
        threshold: Threshold,
        unit: Unit,
        observed: BTreeMap<String, f64>,
    ) -> Verdict {
        let (value, finite) = if value.is_finite() {
            (value, true)
        } else {
            (f64::MAX, false)
        };
        Verdict {
            passed: finite && threshold.holds(value),
            name: head.name,
            check: head.check,
            scope: head.scope,
            policy: head.policy,
            value,
            threshold,
            unit,
            label: head.label,
            column: head.column,
            day: head.day,
            skipped: None,
            observed,
            overridden: None,
        }
    }

    /// A verdict that could not judge: it passes and says why.
    pub(crate) fn skip(
        head: Head,
        threshold: Threshold,
        unit: Unit,
        reason: String,
        observed: BTreeMap<String, f64>,
    ) -> Verdict {
        Verdict {
            passed: true,
            skipped: Some(reason),
            value: 0.0,
            ..Verdict::judge(head, 0.0, threshold, unit, observed)
        }
    }

    /// Whether this verdict failed a check with `policy`.
    pub fn fails(&self, policy: Policy) -> bool {
        !self.passed && self.policy == policy
    }
}

/// The identifying part of a verdict, filled in by each check.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub name: String,
    pub check: Check,
    pub scope: Scope,
    pub policy: Policy,
    pub label: String,
    pub column: Option<String>,
    pub day: Option<Day>,
}

/// `user_id null rate 15.00% > 0.10% (block)`; `row_count 2026-11-30: skipped: ... (warn)`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.skipped {
            return write!(f, "{}: skipped: {reason} ({})", self.label, self.policy);
        }
        let unit = self.unit;
        let value = unit.show(self.value);
        let bound = match (self.threshold, self.passed) {
            (Threshold::AtMost(b), true) => format!("<= {}", unit.show(b)),
            (Threshold::AtMost(b), false) => format!("> {}", unit.show(b)),
            (Threshold::AtLeast(b), true) => format!(">= {}", unit.show(b)),
            (Threshold::AtLeast(b), false) => format!("< {}", unit.show(b)),
            (Threshold::Equals(b), true) => format!("= {}", unit.show(b)),
            (Threshold::Equals(b), false) => format!("!= {}", unit.show(b)),
            (Threshold::Between(lo, hi), ok) => format!(
                "{} [{}, {}]",
                if ok { "within" } else { "outside" },
                unit.show(lo),
                unit.show(hi)
            ),
        };
        write!(f, "{} {value} {bound} ({})", self.label, self.policy)
    }
}

/// What to do with the data the verdicts are about.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Commit to the main table (failed `warn` checks, if any, only alert).
    Commit,
    /// Write the batch to the quarantine table, nothing to the main table; the failed
    /// `quarantine` checks.
    Quarantine(Vec<Verdict>),
    /// Commit nothing; the failed `block` checks.
    Block(Vec<Verdict>),
}

impl Outcome {
    /// The outcome's name: `commit`, `quarantine`, `block`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Commit => "commit",
            Outcome::Quarantine(_) => "quarantine",
            Outcome::Block(_) => "block",
        }
    }

    /// The checks behind a quarantine or block (empty for commit).
    pub fn checks(&self) -> &[Verdict] {
        match self {
            Outcome::Commit => &[],
            Outcome::Quarantine(v) | Outcome::Block(v) => v,
        }
    }

    /// For a block or quarantine, the message naming every check, its value and threshold:
    /// `quality gate blocked: user_id null rate 15.00% > 0.10% (block)`.
    pub fn message(&self) -> Option<String> {
        let verb = match self {
            Outcome::Commit => return None,
            Outcome::Quarantine(_) => "quarantined",
            Outcome::Block(_) => "blocked",
        };
        let checks = self
            .checks()
            .iter()
            .map(Verdict::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Some(format!("quality gate {verb}: {checks}"))
    }
}

/// The verdicts of one commit or one closed day: what goes into the snapshot summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    version: u32,
    outcome: OutcomeName,
    verdicts: Vec<Verdict>,
}

/// The outcome as stored in the summary (readers need not recompute it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutcomeName {
    Commit,
    Quarantine,
    Block,
}

impl From<&Outcome> for OutcomeName {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Commit => OutcomeName::Commit,
            Outcome::Quarantine(_) => OutcomeName::Quarantine,
            Outcome::Block(_) => OutcomeName::Block,
        }
    }
}

impl Default for QualityReport {
    fn default() -> Self {
        QualityReport::new(Vec::new())
    }
}

impl QualityReport {
    /// A report of `verdicts`, in the order the checks ran.
    pub fn new(verdicts: Vec<Verdict>) -> QualityReport {
        let mut report = QualityReport {
            version: REPORT_VERSION,
            outcome: OutcomeName::Commit,
            verdicts,
        };
        report.outcome = OutcomeName::from(&report.outcome());
        report
    }

    /// Adds the verdicts of `other` (say, the partition gate of a day this commit closed).
    pub fn extend(&mut self, other: QualityReport) {
        self.verdicts.extend(other.verdicts);
        self.outcome = OutcomeName::from(&self.outcome());
    }

    /// Every verdict.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Lets failed `block` and `quarantine` checks through: those named in `checks` (verdict
    /// names, such as `null_rate.user_id`), or all of them when `checks` is empty. Each keeps its
    /// value and threshold, reads policy `warn` and records `note` as [`Verdict::overridden`].
    /// Returns the names of the checks let through.
    pub fn waive(&mut self, checks: &[String], note: &str) -> Vec<String> {
        let mut waived = Vec::new();
        for verdict in &mut self.verdicts {
            let named = checks.is_empty() || checks.contains(&verdict.name);
            if named && (verdict.fails(Policy::Block) || verdict.fails(Policy::Quarantine)) {
                verdict.policy = Policy::Warn;
                verdict.overridden = Some(note.to_string());
                waived.push(verdict.name.clone());
            }
        }
        self.outcome = OutcomeName::from(&self.outcome());
        waived
    }

    /// The verdicts that failed, whatever their policy.
    pub fn failed(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.passed)
    }

    /// What to do: block if any `block` check failed, else quarantine if any `quarantine`
    /// check failed, else commit.
    pub fn outcome(&self) -> Outcome {
        let failing = |policy| -> Vec<Verdict> {
            self.verdicts
                .iter()
                .filter(|v| v.fails(policy))
                .cloned()
                .collect()
        };
        let block = failing(Policy::Block);
        if !block.is_empty() {
            return Outcome::Block(block);
        }
        let quarantine = failing(Policy::Quarantine);
        if !quarantine.is_empty() {
            return Outcome::Quarantine(quarantine);
        }
        Outcome::Commit
    }

    /// The JSON written under [`SUMMARY_KEY`]: one line, fields in a fixed order.
    pub fn to_json(&self) -> String {
        // Serialising plain structs with string keys and finite numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a report written by [`QualityReport::to_json`].
    pub fn from_json(text: &str) -> Result<QualityReport, QualityError> {
        let report: QualityReport =
            serde_json::from_str(text).map_err(|e| QualityError::Summary {
                message: e.to_string(),
            })?;
        if report.version > REPORT_VERSION {
            return Err(QualityError::Summary {
                message: format!(
                    "report version {} is newer than this Kappa reads ({REPORT_VERSION})",
                    report.version
                ),
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
