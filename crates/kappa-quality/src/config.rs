//! The validated quality configuration: what `[quality]` in the pipeline TOML turns into.
//!
//! Every type here is valid by construction (`new` checks the values and names the key in its
//! error), so the checks never meet a band with `lo > hi` or a rate above 100%. `kappa-config`
//! parses the TOML and calls these constructors ("validate, then build"); each logic's defaults
//! (gate columns, record rules) come from its `kappa-logic` registry entry.

use std::time::Duration;

use crate::error::QualityError;
use crate::rules::RecordRule;
use crate::verdict::Policy;

/// A share in `[0, 1]` at `key`, or an error naming it.
pub(crate) fn rate(key: &'static str, value: f64) -> Result<f64, QualityError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(QualityError::invalid(
            key,
            format!("{value} is not a share between 0 and 1 (0.001 is 0.1%)"),
        ))
    }
}

/// The `[lo, hi]` factor a day's row count may be of the median of the previous days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    lo: f64,
    hi: f64,
}

impl Band {
    /// The band `[lo, hi]`: finite, `0 <= lo <= hi`.
    pub fn new(lo: f64, hi: f64) -> Result<Band, QualityError> {
        if !lo.is_finite() || !hi.is_finite() || lo < 0.0 {
            return Err(QualityError::invalid(
                "band",
                format!("[{lo}, {hi}]: expected two finite factors >= 0, e.g. [0.7, 1.3]"),
            ));
        }
        if lo > hi {
            return Err(QualityError::invalid(
                "band",
                format!(
                    "[{lo}, {hi}]: the low factor is above the high one; expected [lo, hi], e.g. [0.7, 1.3]"
                ),
            ));
        }
        Ok(Band { lo, hi })
    }

    /// The low factor.
    pub fn lo(self) -> f64 {
        self.lo
    }

    /// The high factor.
    pub fn hi(self) -> f64 {
        self.hi
    }
}

/// Records in = written + deduplicated + dead-lettered, and against the source's own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletenessGate {
    /// What a mismatch does.
    pub policy: Policy,
}

/// NULL share of each critical column in the rows a commit writes.
#[derive(Debug, Clone, PartialEq)]
pub struct NullRateGate {
    policy: Policy,
    columns: Vec<String>,
    max_rate: f64,
}

impl NullRateGate {
    /// Holds each of `columns` to at most `max_rate` NULLs.
    pub fn new(policy: Policy, columns: Vec<String>, max_rate: f64) -> Result<Self, QualityError> {
        let columns: Vec<String> = columns.iter().map(|c| c.trim().to_string()).collect();
        if columns.iter().any(String::is_empty) {
            return Err(QualityError::invalid("columns", "a column name is empty"));
        }
        if let Some(dup) = columns
            .iter()
            .enumerate()
            .find(|(i, c)| columns[..*i].contains(c))
        {
            return Err(QualityError::invalid(
                "columns",
                format!("{:?} is listed twice", dup.1),
            ));
        }
        Ok(NullRateGate {
            policy,
            columns,
            max_rate: rate("max_rate", max_rate)?,
        })
    }

    /// What a failure does.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The critical columns.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The largest NULL share that passes.
    pub fn max_rate(&self) -> f64 {
        self.max_rate
    }
}

/// Duplicate share of the key column among the rows one commit writes.
#[derive(Debug, Clone, PartialEq)]
pub struct UniquenessGate {
    policy: Policy,
    column: String,
    max_rate: f64,
}

impl UniquenessGate {
    /// Holds `column` to at most `max_rate` duplicates (rows whose value an earlier row of the
    /// same commit has).
    pub fn new(policy: Policy, column: &str, max_rate: f64) -> Result<Self, QualityError> {
        let column = column.trim();
        if column.is_empty() {
            return Err(QualityError::invalid(
                "column",
                "missing; the key column, e.g. \"event_id\"",
            ));
        }
        Ok(UniquenessGate {
            policy,
            column: column.to_string(),
            max_rate: rate("max_rate", max_rate)?,
        })
    }

    /// What a failure does.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The key column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The largest duplicate share that passes.
    pub fn max_rate(&self) -> f64 {
        self.max_rate
    }
}

/// Share of records whose delay (ingest time − event time) exceeds the freshness SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinessGate {
    policy: Policy,
    event_time_column: String,
    freshness_sla: Duration,
    max_late_rate: f64,
}

impl TimelinessGate {
    /// At most `max_late_rate` of the records may arrive later than `freshness_sla` after their
    /// event time (read from `event_time_column`, a timestamp).
    pub fn new(
        policy: Policy,
        event_time_column: &str,
        freshness_sla: Duration,
        max_late_rate: f64,
    ) -> Result<Self, QualityError> {
        if freshness_sla.is_zero() {
            return Err(QualityError::invalid(
                "freshness_sla",
                "must be greater than 0, e.g. \"15m\"",
            ));
        }
        let column = event_time_column.trim();
        if column.is_empty() {
            return Err(QualityError::invalid(
                "column",
                "the event-time column is empty",
            ));
        }
        Ok(TimelinessGate {
            policy,
            event_time_column: column.to_string(),
            freshness_sla,
            max_late_rate: rate("max_late_rate", max_late_rate)?,
        })
    }

    /// What a failure does.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The event-time column (`[event_time] column`).
    pub fn event_time_column(&self) -> &str {
        &self.event_time_column
    }

    /// The freshness SLA.
    pub fn freshness_sla(&self) -> Duration {
        self.freshness_sla
    }

    /// The largest share of late records that passes.
    pub fn max_late_rate(&self) -> f64 {
        self.max_late_rate
    }
}

/// A closed day's row count against the median of the previous days.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionGate {
    policy: Policy,
    lookback_days: u32,
    min_history_days: u32,
    band: Band,
}

impl PartitionGate {
    /// Compares a day with the median of the `lookback_days` before it, once at least
    /// `min_history_days` of them exist; the ratio must be within `band`.
    pub fn new(
        policy: Policy,
        lookback_days: u32,
        min_history_days: u32,
        band: Band,
    ) -> Result<Self, QualityError> {
        if lookback_days == 0 {
            return Err(QualityError::invalid(
                "lookback_days",
                "must be at least 1, e.g. 7",
            ));
        }
        if min_history_days == 0 || min_history_days > lookback_days {
            return Err(QualityError::invalid(
                "min_history_days",
                format!(
                    "{min_history_days}: must be between 1 and lookback_days ({lookback_days})"
                ),
            ));
        }
        Ok(PartitionGate {
            policy,
            lookback_days,
            min_history_days,
            band,
        })
    }

    /// What a failure does.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Days before the judged one that the median is taken over.
    pub fn lookback_days(&self) -> u32 {
        self.lookback_days
    }

    /// Days of history needed before the gate judges (fewer: an "insufficient history" pass).
    pub fn min_history_days(&self) -> u32 {
        self.min_history_days
    }

    /// The allowed ratio to the median.
    pub fn band(&self) -> Band {
        self.band
    }
}

/// Everything `[quality]` configures. A gate that is `None` is off.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// `false`: no rules run and no verdicts are made.
    pub enabled: bool,
    /// Record rules, in the order they run.
    pub rules: Vec<RecordRule>,
    /// The completeness gate.
    pub completeness: Option<CompletenessGate>,
    /// The null-rate gate.
    pub null_rate: Option<NullRateGate>,
    /// The uniqueness gate.
    pub uniqueness: Option<UniquenessGate>,
    /// The timeliness gate.
    pub timeliness: Option<TimelinessGate>,
    /// The partition (row count per closed day) gate.
    pub partition: Option<PartitionGate>,
}

impl QualityConfig {
    /// Whether some commit-time check fails with `policy` (a pipeline whose checks can
    /// quarantine needs a quarantine table).
    pub fn uses(&self, policy: Policy) -> bool {
        self.enabled
            && (self.rules.iter().any(|r| r.policy() == policy)
                || self
                    .completeness
                    .as_ref()
                    .is_some_and(|g| g.policy == policy)
                || self
                    .null_rate
                    .as_ref()
                    .is_some_and(|g| g.policy() == policy)
                || self
                    .uniqueness
                    .as_ref()
                    .is_some_and(|g| g.policy() == policy)
                || self
                    .timeliness
                    .as_ref()
                    .is_some_and(|g| g.policy() == policy))
    }

    /// Nothing checked.
    pub fn disabled() -> QualityConfig {
        QualityConfig {
            enabled: false,
            rules: Vec::new(),
            completeness: None,
            null_rate: None,
            uniqueness: None,
            timeliness: None,
            partition: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Pattern, RuleCheck};

    #[test]
    fn bad_values_name_the_key() {
        let err = Band::new(1.3, 0.7).unwrap_err();
        assert!(
            matches!(err, QualityError::Invalid { key: "band", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("low factor is above the high one"),
            "{err}"
        );
        assert!(Band::new(-0.1, 1.0).is_err());
        assert!(Band::new(0.7, f64::INFINITY).is_err());
        let err = NullRateGate::new(Policy::Block, vec!["user_id".into()], 1.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_rate: 1.5 is not a share between 0 and 1 (0.001 is 0.1%)"
        );
        assert!(NullRateGate::new(Policy::Block, vec!["a".into(), "a".into()], 0.1).is_err());
        let band = Band::new(0.7, 1.3).unwrap();
        let err = PartitionGate::new(Policy::Warn, 7, 8, band).unwrap_err();
        assert!(matches!(
            err,
            QualityError::Invalid {
                key: "min_history_days",
                ..
            }
        ));
        assert!(PartitionGate::new(Policy::Warn, 0, 0, band).is_err());
        let err =
            TimelinessGate::new(Policy::Warn, "event_time", Duration::ZERO, 0.01).unwrap_err();
        assert!(matches!(
            err,
            QualityError::Invalid {
                key: "freshness_sla",
                ..
            }
        ));
        let err = Pattern::new("^[A-Z{3}$").unwrap_err();
        assert!(matches!(err, QualityError::Invalid { key: "pattern", .. }));
        assert!(
            err.to_string().contains("not a valid regular expression"),
            "{err}"
        );
        let err = RecordRule::new(
            "r",
            "amount",
            RuleCheck::Range {
                min: Some(5.0),
                max: Some(1.0),
            },
            Policy::Warn,
            0.0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "max: 1 is below min 5");
        assert!(RecordRule::new("r", "a", RuleCheck::Allowed(vec![]), Policy::Warn, 0.0).is_err());
        assert!(RecordRule::new("r", " ", RuleCheck::Required, Policy::Warn, 0.0).is_err());
        assert!(
            RecordRule::new(
                "r",
                "a",
                RuleCheck::Range {
                    min: None,
                    max: None
                },
                Policy::Warn,
                0.0
            )
            .is_err()
        );
    }
}
