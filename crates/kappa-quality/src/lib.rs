//! `kappa-quality`: data-quality checks as pure functions over Arrow, independent of sources and
//! sinks.
//!
//! In the data flow it runs after the logic and decides what the committer does:
//!
//! ```text
//! source ─► decode ─► logic ─► [ record rules ] ─► writer ─► [ commit gates ] ─► committer
//!                                  │ failing rows          (profile per batch)     │ Commit │
//!                                  ▼                                               │ Quarantine
//!                              dead letters                                        │ Block
//!                                                     a day closes ─► [ partition gate ]
//! ```
//!
//! - **Record rules** ([`Quality::apply_rules`]): `required`, `allowed`, `min`/`max`, `pattern`
//!   per column. A failing row becomes a [`kappa_core::DeadLetterKind::RuleViolation`] dead
//!   letter; nothing is lost, nothing blocks.
//! - **Commit gates** ([`Quality::evaluate_commit`]) over what one commit is about to write:
//!   completeness, null rate of critical columns, key uniqueness, timeliness against the
//!   freshness SLA, and each rule's failure rate. Inputs are plain: [`CommitCounts`] and a
//!   [`CommitProfile`] filled batch by batch, with the ingest time passed in (no clock here).
//! - **Partition gate** ([`Quality::evaluate_day`]) when a day closes ([`day_closed`]): its row
//!   count against the median of the previous days, from a map day → rows.
//!
//! Every check returns a [`Verdict`] — `(passed, value, threshold)`, name, [`Scope`], [`Policy`]
//! — and a [`QualityReport`] of verdicts answers the [`Outcome`] (commit, quarantine, block) and
//! serialises for the snapshot summary under [`SUMMARY_KEY`]. The configuration
//! ([`QualityConfig`]) is validated by construction; the defaults of a logic's data contract
//! (record rules, gate columns) belong to the logic (`kappa-logic`'s registry).

mod config;
mod day;
mod error;
mod gates;
mod profile;
mod rules;
mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use arrow_array::RecordBatch;
use kappa_core::SourceBatch;

pub use config::{
    Band, CompletenessGate, NullRateGate, PartitionGate, QualityConfig, TimelinessGate,
    UniquenessGate,
};
pub use day::{Day, day_closed, days_closed_between};
pub use error::QualityError;
pub use gates::CommitCounts;
pub use profile::CommitProfile;
pub use rules::{Pattern, RecordRule, RuleCheck, RuleCounts, apply_rules};
pub use verdict::{
    Check, Outcome, Policy, QualityReport, REPORT_VERSION, SUMMARY_KEY, Scope, Threshold, Unit,
    Verdict,
};

/// The quality checks of one pipeline, built from its validated [`QualityConfig`].
#[derive(Debug, Clone)]
pub struct Quality {
    config: QualityConfig,
    /// Distinct keys of the last commit judged, the room a new profile's uniqueness set starts
    /// with: commits of one pipeline are alike in size, and a set grown from empty rehashed
    /// every key at each doubling (1.4% of a replay's CPU). Shared by clones; only a hint.
    keys_hint: Arc<AtomicUsize>,
}

impl Quality {
    /// The checks `config` describes.
    pub fn new(config: QualityConfig) -> Quality {
        Quality {
            config,
            keys_hint: Arc::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &QualityConfig {
        &self.config
    }

    /// Runs the record rules on `batch` (after the logic): failing rows move to its dead
    /// letters. With quality disabled the batch passes untouched.
    pub fn apply_rules(
        &self,
        batch: SourceBatch,
    ) -> Result<(SourceBatch, RuleCounts), QualityError> {
        if !self.config.enabled {
            let rows = batch.num_rows() as u64;
            return Ok((
                batch,
                RuleCounts {
                    rows,
                    ..RuleCounts::default()
                },
            ));
        }
        apply_rules(&self.config.rules, batch)
    }

    /// Checks each record rule's and commit gate's column against `schema`, the columns the
    /// logic hands the checks: present, and of a type the check reads. These are the checks a
    /// batch meets at run time, run on no rows, so that a configuration naming a column the
    /// table does not have fails before it is deployed (`kappa validate`). With quality
    /// disabled nothing is checked.
    pub fn check_columns(&self, schema: &arrow_schema::SchemaRef) -> Result<(), QualityError> {
        if !self.config.enabled {
            return Ok(());
        }
        let rows = RecordBatch::new_empty(schema.clone());
        for rule in &self.config.rules {
            rules::failures(rule, &rows, "of the table's columns")?;
        }
        self.profile().observe(&rows, None)
    }

    /// An empty profile for the next commit: feed it each batch written and each batch's rule
    /// counts.
    pub fn profile(&self) -> CommitProfile {
        CommitProfile::with_key_capacity(&self.config, self.keys_hint.load(Ordering::Relaxed))
    }

    /// The commit gates' verdicts on what a commit is about to write. With quality disabled the
    /// report is empty (outcome: commit).
    pub fn evaluate_commit(&self, counts: &CommitCounts, profile: &CommitProfile) -> QualityReport {
        self.keys_hint
            .store(profile.distinct_keys(), Ordering::Relaxed);
        QualityReport::new(gates::commit_verdicts(&self.config, counts, profile))
    }

    /// [`Quality::evaluate_commit`] over rows in memory: profiles `rows` (read at
    /// `ingest_time`, `None` for replayed history) with the commit's rule counts, then judges.
    pub fn evaluate_rows(
        &self,
        counts: &CommitCounts,
        rows: &[RecordBatch],
        ingest_time: Option<SystemTime>,
        rules: &RuleCounts,
    ) -> Result<QualityReport, QualityError> {
        let mut profile = self.profile();
        for batch in rows {
            profile.observe(batch, ingest_time)?;
        }
        profile.observe_rules(rules);
        Ok(self.evaluate_commit(counts, &profile))
    }

    /// The partition gate's verdict on the closed `day`, given every day's row count
    /// (`rows_per_day`, from the table's metadata). Empty when the gate is off.
    pub fn evaluate_day(&self, day: Day, rows_per_day: &BTreeMap<Day, u64>) -> QualityReport {
        let verdicts = match (&self.config.partition, self.config.enabled) {
            (Some(gate), true) => vec![gates::row_count_verdict(gate, day, rows_per_day)],
            _ => Vec::new(),
        };
        QualityReport::new(verdicts)
    }
}

#[cfg(test)]
mod tests;
