//! The checks that turn counts and profiles into verdicts: the commit gates (completeness, null
//! rate, uniqueness, timeliness, record-rule failure rates) and the partition gate (a closed
//! day's row count against the median of the days before it).
//!
//! Conventions: a rate over zero rows is 0 (nothing to judge is not a failure); a check that
//! cannot judge — no ingest time, too little history — passes with `skipped` saying why.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{PartitionGate, QualityConfig};
use crate::day::Day;
use crate::profile::CommitProfile;
use crate::verdict::{Check, Head, Scope, Threshold, Unit, Verdict};

/// What a commit's bookkeeping knows, for the completeness gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Records read by the sources for this commit (the sum of `SourceBatch::records_in`).
    pub records_in: u64,
    /// Rows about to be written to the main table.
    pub written: u64,
    /// Rows the logic dropped as duplicates (its dedup window, across commits).
    pub deduplicated: u64,
    /// Dead letters about to be written (undecodable, rejected, rule violations).
    pub dead_lettered: u64,
    /// The source's own count of the records in the commit's input when it has one (the
    /// records of the offset ranges read, from the broker or the archive files), else `None`.
    pub source_count: Option<u64>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// z of a one-sided 99.9% confidence bound.
const Z: f64 = 3.090_232;

/// The lower bound of the Wilson score interval of `part / whole`: the smallest rate that the
/// sample is consistent with at 99.9% confidence (0 for an empty sample).
pub(crate) fn wilson_lower(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    let n = whole as f64;
    let p = part as f64 / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let spread = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The `lower_bound` a rate verdict observed.
fn verdict_lower(verdict: &Verdict) -> f64 {
    verdict
        .observed
        .get("lower_bound")
        .copied()
        .unwrap_or(verdict.value)
}

fn observed<const N: usize>(pairs: [(&str, f64); N]) -> BTreeMap<String, f64> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `15m`, `1h`, `90s`, `500ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The commit gates' verdicts, in a fixed order: rules, completeness, source count, null rates,
/// uniqueness, timeliness.
pub(crate) fn commit_verdicts(
    config: &QualityConfig,
    counts: &CommitCounts,
    profile: &CommitProfile,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if !config.enabled {
        return verdicts;
    }
    for rule in &config.rules {
        let failed = profile.rules.failed.get(rule.name()).copied().unwrap_or(0);
        let rows = profile.rules.rows;
        verdicts.push(Verdict::judge(
            Head {
                name: format!("rule.{}", rule.name()),
                check: Check::Rule,
                scope: Scope::Record,
                policy: rule.policy(),
                label: format!("rule {} ({}) failure rate", rule.name(), rule.column()),
                column: Some(rule.column().to_string()),
                day: None,
            },
            share(failed, rows),
            Threshold::AtMost(rule.max_rate()),
            Unit::Rate,
            observed([("failed", failed as f64), ("rows", rows as f64)]),
        ));
    }
    if let Some(gate) = &config.completeness {
        let accounted = i128::from(counts.written)
            + i128::from(counts.deduplicated)
            + i128::from(counts.dead_lettered);
        let unaccounted = i128::from(counts.records_in) - accounted;
        verdicts.push(Verdict::judge(
            Head {
                name: "completeness".into(),
                check: Check::Completeness,
                scope: Scope::Batch,
                policy: gate.policy,
                label: "unaccounted records (in − written − deduplicated − dead-lettered)".into(),
                column: None,
                day: None,
            },
            unaccounted as f64,
            Threshold::Equals(0.0),
            Unit::Count,
            observed([
                ("records_in", counts.records_in as f64),
                ("written", counts.written as f64),
                ("deduplicated", counts.deduplicated as f64),
                ("dead_lettered", counts.dead_lettered as f64),
            ]),
        ));
        if let Some(source) = counts.source_count {
            let missing = i128::from(source) - i128::from(counts.records_in);
            verdicts.push(Verdict::judge(
                Head {
                    name: "completeness.source".into(),
                    check: Check::SourceCount,
                    scope: Scope::Batch,
                    policy: gate.policy,
                    label: "records the source counted but not read (source − in)".into(),
                    column: None,
                    day: None,
                },
                missing as f64,
                Threshold::Equals(0.0),
                Unit::Count,
                observed([
                    ("source_count", source as f64),
                    ("records_in", counts.records_in as f64),
                ]),
            ));
        }
    }
    if let Some(gate) = &config.null_rate {
        for (column, nulls) in gate.columns().iter().zip(&profile.nulls) {
            let mut verdict = Verdict::judge(
                Head {
                    name: format!("null_rate.{column}"),
                    check: Check::NullRate,
                    scope: Scope::Batch,
                    policy: gate.policy(),
                    label: format!("{column} null rate"),
                    column: Some(column.clone()),
                    day: None,
                },
                share(*nulls, profile.rows),
                Threshold::AtMost(gate.max_rate()),
                Unit::Rate,
                observed([
                    ("nulls", *nulls as f64),
                    ("rows", profile.rows as f64),
                    ("lower_bound", wilson_lower(*nulls, profile.rows)),
                ]),
            );
            // A commit fails only when its rows show the rate above the threshold with 99.9%
            // confidence: three NULLs among 2,000 rows (0.15%) are noise around a 0.1% limit,
            // 150 among 1,000 are not. Without this, small commits (live ingestion commits every
            // interval) would block at random.
            verdict.passed =
                verdict.passed || Threshold::AtMost(gate.max_rate()).holds(verdict_lower(&verdict));
            verdicts.push(verdict);
        }
    }
    if let Some(gate) = &config.uniqueness {
        let column = gate.column();
        verdicts.push(Verdict::judge(
            Head {
                name: format!("uniqueness.{column}"),
                check: Check::Uniqueness,
                scope: Scope::Batch,
                policy: gate.policy(),
                label: format!("{column} duplicate rate"),
                column: Some(column.to_string()),
                day: None,
            },
            share(profile.duplicates, profile.rows),
            Threshold::AtMost(gate.max_rate()),
            Unit::Rate,
            observed([
                ("duplicates", profile.duplicates as f64),
                ("rows", profile.rows as f64),
                ("deduplicated_by_logic", counts.deduplicated as f64),
            ]),
        ));
    }
    if let Some(gate) = &config.timeliness {
        let sla = show_duration(gate.freshness_sla());
        let head = Head {
            name: "timeliness".into(),
            check: Check::Timeliness,
            scope: Scope::Batch,
            policy: gate.policy(),
            label: format!("share of records later than the {sla} freshness SLA"),
            column: Some(gate.event_time_column().to_string()),
            day: None,
        };
        let threshold = Threshold::AtMost(gate.max_late_rate());
        let seconds = |ms: u64| ms as f64 / 1000.0;
        let stats = observed([
            ("late", profile.late as f64),
            ("rows", profile.timed as f64),
            ("no_event_time", profile.no_event_time as f64),
            ("freshness_sla_seconds", gate.freshness_sla().as_secs_f64()),
            ("p50_delay_seconds", seconds(profile.delays.quantile(0.5))),
            ("p99_delay_seconds", seconds(profile.delays.quantile(0.99))),
            ("max_delay_seconds", seconds(profile.delays.max_ms())),
        ]);
        verdicts.push(if profile.timed == 0 && profile.untimed > 0 {
            Verdict::skip(
                head,
                threshold,
                Unit::Rate,
                "no ingest time (a replay of history): timeliness is judged on live ingestion"
                    .into(),
                observed([("rows", profile.untimed as f64)]),
            )
        } else {
            Verdict::judge(
                head,
                share(profile.late, profile.timed),
                threshold,
                Unit::Rate,
                stats,
            )
        });
    }
    verdicts
}

/// The median of `values` (sorted in place); the mean of the middle two for an even count.
fn median(values: &mut [u64]) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] as f64 + values[n / 2] as f64) / 2.0),
    }
}

/// The partition gate's verdict on the closed `day`, from the row count of every day of the
/// table (`rows_per_day`, computed from its metadata).
///
/// History is the `lookback_days` days before `day` from the table's first day on: a day the
/// map lacks counts 0 rows once the table had started (an outage day), and does not count at
/// all before it. With fewer than `min_history_days` days of history — a young table — the
/// verdict passes, `skipped: insufficient history: N of M previous days`. A median of 0 rows
/// cannot be compared with and passes the same way.
pub(crate) fn row_count_verdict(
    gate: &PartitionGate,
    day: Day,
    rows_per_day: &BTreeMap<Day, u64>,
) -> Verdict {
    let band = gate.band();
    let lookback = gate.lookback_days();
    let head = Head {
        name: "row_count".into(),
        check: Check::RowCount,
        scope: Scope::Partition,
        policy: gate.policy(),
        label: format!("row count {day} vs the {lookback}-day median"),
        column: None,
        day: Some(day),
    };
    let threshold = Threshold::Between(band.lo(), band.hi());
    let rows = rows_per_day.get(&day).copied().unwrap_or(0);
    let first = rows_per_day.keys().next().copied();
    let mut history: Vec<u64> = (1..=lookback)
        .map(|back| day.minus(back))
        .filter(|d| first.is_some_and(|first| *d >= first))
        .map(|d| rows_per_day.get(&d).copied().unwrap_or(0))
        .collect();
    let days = history.len() as u32;
    let median = median(&mut history);
    let stats = observed([
        ("rows", rows as f64),
        ("median", median.unwrap_or(0.0)),
        ("history_days", f64::from(days)),
    ]);
    if days < gate.min_history_days() {
        return Verdict::skip(
            head,
            threshold,
            Unit::Ratio,
            format!(
                "insufficient history: {days} of {lookback} previous days (needs {})",
                gate.min_history_days()
            ),
            stats,
        );
    }
    match median {
        Some(median) if median > 0.0 => {
            Verdict::judge(head, rows as f64 / median, threshold, Unit::Ratio, stats)
        }
        _ => Verdict::skip(
            head,
            threshold,
            Unit::Ratio,
            "the median of the previous days is 0 rows".into(),
            stats,
        ),
    }
}

#[cfg(test)]
mod wilson_tests {
    use super::wilson_lower;

    #[test]
    fn the_lower_bound_separates_noise_from_a_real_rate() {
        assert_eq!(wilson_lower(0, 0), 0.0);
        assert_eq!(wilson_lower(0, 1_000), 0.0);
        // 3 of 2,000 (0.15%): consistent with 0.1%.
        assert!(wilson_lower(3, 2_000) < 0.001);
        // 150 of 1,000 (15%): certainly above 0.1%.
        assert!(wilson_lower(150, 1_000) > 0.1);
        // 0.2% of a million rows: above 0.1% with confidence.
        assert!(wilson_lower(2_000, 1_000_000) > 0.001);
        for (k, n) in [(1, 10), (50, 100), (999, 1_000)] {
            assert!(wilson_lower(k, n) <= k as f64 / n as f64);
        }
    }
}
