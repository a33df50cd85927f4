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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityReport {
    version: u32,
    outcome: String,
    verdicts: Vec<Verdict>,
}

impl QualityReport {
    /// A report of `verdicts`, in the order the checks ran.
    pub fn new(verdicts: Vec<Verdict>) -> QualityReport {
        let mut report = QualityReport {
            version: REPORT_VERSION,
            outcome: String::new(),
            verdicts,
        };
        report.outcome = report.outcome().as_str().to_string();
        report
    }

    /// Adds the verdicts of `other` (say, the partition gate of a day this commit closed).
    pub fn extend(&mut self, other: QualityReport) {
        self.verdicts.extend(other.verdicts);
        self.outcome = self.outcome().as_str().to_string();
    }

    /// Every verdict.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(name: &str, policy: Policy) -> Head {
        Head {
            name: name.into(),
            check: Check::NullRate,
            scope: Scope::Batch,
            policy,
            label: format!("{name} null rate"),
            column: Some(name.into()),
            day: None,
        }
    }

    fn rate(name: &str, policy: Policy, value: f64, max: f64) -> Verdict {
        Verdict::judge(
            head(name, policy),
            value,
            Threshold::AtMost(max),
            Unit::Rate,
            BTreeMap::new(),
        )
    }

    #[test]
    fn policies_parse_and_unknown_ones_list_the_known() {
        assert_eq!("block".parse::<Policy>().unwrap(), Policy::Block);
        assert_eq!(" warn ".parse::<Policy>().unwrap(), Policy::Warn);
        let err = "stop".parse::<Policy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy: unknown policy \"stop\"; expected block|quarantine|warn"
        );
    }

    #[test]
    fn thresholds_hold_at_their_bounds() {
        assert!(Threshold::AtMost(0.1).holds(0.1));
        assert!(!Threshold::AtMost(0.1).holds(0.1000001));
        assert!(Threshold::AtLeast(0.0).holds(0.0));
        assert!(!Threshold::AtLeast(0.0).holds(-1.0));
        assert!(Threshold::Equals(0.0).holds(0.0));
        assert!(!Threshold::Equals(0.0).holds(1.0));
        assert!(Threshold::Between(0.7, 1.3).holds(0.7));
        assert!(!Threshold::Between(0.7, 1.3).holds(0.5));
    }

    #[test]
    fn block_wins_over_quarantine_and_warn_only_alerts() {
        let warn = rate("a", Policy::Warn, 0.5, 0.1);
        let quarantine = rate("b", Policy::Quarantine, 0.5, 0.1);
        let block = rate("c", Policy::Block, 0.5, 0.1);
        let ok_block = rate("d", Policy::Block, 0.0, 0.1);
        let report = QualityReport::new(vec![warn.clone(), ok_block.clone()]);
        assert_eq!(report.outcome(), Outcome::Commit);
        assert_eq!(report.outcome().message(), None);
        assert_eq!(report.failed().count(), 1);
        let report = QualityReport::new(vec![warn.clone(), quarantine.clone()]);
        assert_eq!(
            report.outcome(),
            Outcome::Quarantine(vec![quarantine.clone()])
        );
        let report = QualityReport::new(vec![warn, quarantine, block.clone(), ok_block]);
        assert_eq!(report.outcome(), Outcome::Block(vec![block]));
        assert_eq!(report.outcome().as_str(), "block");
    }

    #[test]
    fn the_block_message_names_check_value_threshold_and_policy() {
        let report = QualityReport::new(vec![
            rate("user_id", Policy::Block, 0.15, 0.001),
            rate("order_id", Policy::Block, 0.02, 0.01),
        ]);
        assert_eq!(
            report.outcome().message().unwrap(),
            "quality gate blocked: user_id null rate 15.00% > 0.10% (block); \
             order_id null rate 2.00% > 1.00% (block)"
        );
        let passed = rate("user_id", Policy::Block, 0.0005, 0.001);
        assert_eq!(
            passed.to_string(),
            "user_id null rate 0.05% <= 0.10% (block)"
        );
    }

    #[test]
    fn a_non_finite_value_fails_and_stays_serialisable() {
        let v = rate("x", Policy::Warn, f64::NAN, 0.1);
        assert!(!v.passed);
        let report = QualityReport::new(vec![v]);
        assert_eq!(QualityReport::from_json(&report.to_json()).unwrap(), report);
    }

    #[test]
    fn a_skipped_verdict_passes_and_says_why() {
        let mut h = head("row_count", Policy::Block);
        h.label = "row count 2026-11-30".into();
        let v = Verdict::skip(
            h,
            Threshold::Between(0.7, 1.3),
            Unit::Ratio,
            "insufficient history: 3 of 7 previous days".into(),
            BTreeMap::new(),
        );
        assert!(v.passed);
        assert_eq!(
            QualityReport::new(vec![v.clone()]).outcome(),
            Outcome::Commit
        );
        assert_eq!(
            v.to_string(),
            "row count 2026-11-30: skipped: insufficient history: 3 of 7 previous days (block)"
        );
    }

    #[test]
    fn the_summary_json_is_stable() {
        let mut v = rate("user_id", Policy::Block, 0.15, 0.001);
        v.observed.insert("rows".into(), 100.0);
        let json = QualityReport::new(vec![v]).to_json();
        assert_eq!(
            json,
            r#"{"version":1,"outcome":"block","verdicts":[{"name":"user_id","check":"null_rate","scope":"batch","policy":"block","passed":false,"value":0.15,"threshold":{"at_most":0.001},"unit":"rate","label":"user_id null rate","column":"user_id","observed":{"rows":100.0}}]}"#
        );
        let err =
            QualityReport::from_json(&json.replace("\"version\":1", "\"version\":2")).unwrap_err();
        assert!(err.to_string().contains("version 2 is newer"), "{err}");
        assert!(QualityReport::from_json("{").is_err());
    }

    fn arb_verdict() -> impl Strategy<Value = Verdict> {
        let policy = prop_oneof![
            Just(Policy::Warn),
            Just(Policy::Quarantine),
            Just(Policy::Block)
        ];
        let threshold = prop_oneof![
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Threshold::AtMost),
            (0.0f64..1.0).prop_map(Threshold::AtLeast),
            (0u32..1000).prop_map(|n| Threshold::Equals(f64::from(n))),
            (0.0f64..1.0, 1.0f64..2.0).prop_map(|(lo, hi)| Threshold::Between(lo, hi)),
        ];
        let day = proptest::option::of((0i32..40_000).prop_map(Day));
        let observed = proptest::collection::btree_map(
            "[a-z_]{1,12}",
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
            0..4,
        );
        let skipped = proptest::option::of("[ -~]{0,40}");
        (
            "[a-z_.]{1,20}",
            policy,
            any::<f64>(),
            threshold,
            day,
            observed,
            skipped,
            proptest::option::of("\\PC{0,10}"),
        )
            .prop_map(
                |(name, policy, value, threshold, day, observed, skipped, column)| {
                    let head = Head {
                        label: format!("{name} label"),
                        name,
                        check: Check::RowCount,
                        scope: Scope::Partition,
                        policy,
                        column,
                        day,
                    };
                    match skipped {
                        Some(reason) => {
                            Verdict::skip(head, threshold, Unit::Ratio, reason, observed)
                        }
                        None => Verdict::judge(head, value, threshold, Unit::Ratio, observed),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn reports_round_trip_through_the_summary_json(verdicts in proptest::collection::vec(arb_verdict(), 0..6)) {
            let report = QualityReport::new(verdicts);
            let back = QualityReport::from_json(&report.to_json()).unwrap();
            prop_assert_eq!(back.outcome(), report.outcome());
            prop_assert_eq!(back, report);
        }
    }
}
