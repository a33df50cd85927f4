//! The entry point end to end: rules, commit gates and the partition gate on orders-shaped data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use kappa_core::{OffsetRange, SourceBatch, TopicPartition};

use super::*;

/// 2026-11-30 12:00 UTC in µs.
const NOON: i64 = 1_796_040_000_000_000;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("amount_cents", DataType::Int64, false),
        Field::new("currency", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
    ]))
}

/// `n` valid orders rows with ids `e-<first + i>`; `null_user` says which rows lack a user id;
/// every row happened at `event_time` (µs).
fn rows(first: usize, n: usize, null_user: impl Fn(usize) -> bool, event_time: i64) -> RecordBatch {
    let ids = first..first + n;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|i| format!("e-{i}")),
        )),
        Arc::new(StringArray::from_iter_values(ids.clone().map(|_| "PAID"))),
        Arc::new(StringArray::from_iter(
            ids.clone()
                .map(|i| (!null_user(i)).then(|| format!("u-{}", i % 97))),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.clone().map(|i| i as i64 * 10),
        )),
        Arc::new(StringArray::from_iter_values(ids.clone().map(|_| "EUR"))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(ids.map(|_| event_time))
                .with_timezone("+00:00"),
        ),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// The `orders` pipeline's quality with the embedded defaults (`kappa-logic`'s `orders` entry
/// with `defaults.toml`; `kappa-config`'s tests check that they agree).
pub(crate) fn orders_config() -> QualityConfig {
    let rule = |column: &str, check| RecordRule::new("", column, check, Policy::Warn, 0.0).unwrap();
    QualityConfig {
        enabled: true,
        rules: vec![
            rule(
                "event_type",
                RuleCheck::Allowed(
                    ["CREATED", "PAID", "CANCELLED", "DELIVERED"]
                        .map(String::from)
                        .to_vec(),
                ),
            ),
            rule(
                "amount_cents",
                RuleCheck::Range {
                    min: Some(0.0),
                    max: None,
                },
            ),
            rule(
                "currency",
                RuleCheck::Pattern(Pattern::new("^[A-Z]{3}$").unwrap()),
            ),
        ],
        completeness: Some(CompletenessGate {
            policy: Policy::Block,
        }),
        null_rate: Some(NullRateGate::new(Policy::Block, vec!["user_id".into()], 0.001).unwrap()),
        uniqueness: Some(UniquenessGate::new(Policy::Warn, "event_id", 0.0).unwrap()),
        timeliness: Some(
            TimelinessGate::new(
                Policy::Warn,
                "event_time",
                Duration::from_secs(15 * 60),
                0.01,
            )
            .unwrap(),
        ),
        partition: Some(
            PartitionGate::new(Policy::Warn, 7, 7, Band::new(0.7, 1.3).unwrap()).unwrap(),
        ),
    }
}

fn orders() -> Quality {
    Quality::new(orders_config())
}

fn written(rows: &[RecordBatch]) -> CommitCounts {
    let n: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
    CommitCounts {
        records_in: n,
        written: n,
        ..CommitCounts::default()
    }
}

fn at(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros as u64)
}

fn verdict<'a>(report: &'a QualityReport, name: &str) -> &'a Verdict {
    report
        .verdicts()
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no verdict {name} in {report:?}"))
}

fn evaluate(quality: &Quality, batches: &[RecordBatch]) -> QualityReport {
    let rules = RuleCounts {
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        ..RuleCounts::default()
    };
    quality
        .evaluate_rows(
            &written(batches),
            batches,
            Some(at(NOON + 1_000_000)),
            &rules,
        )
        .unwrap()
}

#[test]
fn fifteen_percent_null_user_ids_block_and_the_message_names_check_value_threshold() {
    let batch = rows(0, 1000, |i| i % 20 < 3, NOON);
    let report = evaluate(&orders(), &[batch]);
    let v = verdict(&report, "null_rate.user_id");
    assert!(!v.passed);
    assert_eq!((v.value, v.threshold), (0.15, Threshold::AtMost(0.001)));
    assert_eq!(
        (v.policy, v.scope, v.check),
        (Policy::Block, Scope::Batch, Check::NullRate)
    );
    assert_eq!(v.observed["nulls"], 150.0);
    let outcome = report.outcome();
    assert!(
        matches!(&outcome, Outcome::Block(checks) if checks.len() == 1 && checks[0].name == "null_rate.user_id")
    );
    assert_eq!(
        outcome.message().unwrap(),
        "quality gate blocked: user_id null rate 15.00% > 0.10% (block)"
    );
}

#[test]
fn five_hundredths_of_a_percent_null_user_ids_pass() {
    // 1 NULL in 2000 rows, over two batches of one commit.
    let batches = [
        rows(0, 1000, |i| i == 7, NOON),
        rows(1000, 1000, |_| false, NOON),
    ];
    let report = evaluate(&orders(), &batches);
    let v = verdict(&report, "null_rate.user_id");
    assert!(v.passed, "{v}");
    assert_eq!(v.value, 0.0005);
    assert_eq!(v.to_string(), "user_id null rate 0.05% <= 0.10% (block)");
    assert_eq!(report.outcome(), Outcome::Commit);
    assert!(report.failed().next().is_none(), "{report:?}");
}

#[test]
fn completeness_holds_with_dedup_and_dead_letters_and_fails_on_a_lost_record() {
    let quality = orders();
    let profile = quality.profile();
    let counts = CommitCounts {
        records_in: 1000,
        written: 990,
        deduplicated: 6,
        dead_lettered: 4,
        source_count: Some(1000),
    };
    let report = quality.evaluate_commit(&counts, &profile);
    assert!(verdict(&report, "completeness").passed);
    assert!(verdict(&report, "completeness.source").passed);
    let lost = CommitCounts {
        written: 989,
        ..counts
    };
    let report = quality.evaluate_commit(&lost, &profile);
    let v = verdict(&report, "completeness");
    assert!(!v.passed);
    assert_eq!(v.value, 1.0);
    assert_eq!(
        report.outcome().message().unwrap(),
        "quality gate blocked: unaccounted records (in − written − deduplicated − dead-lettered) 1 != 0 (block)"
    );
    // Read fewer than the source has: the source check fails; the equation itself holds.
    let short = CommitCounts {
        source_count: Some(1003),
        ..counts
    };
    let report = quality.evaluate_commit(&short, &profile);
    assert!(verdict(&report, "completeness").passed);
    let v = verdict(&report, "completeness.source");
    assert!(!v.passed);
    assert_eq!(v.value, 3.0);
    // More written than read is as wrong as fewer.
    let extra = CommitCounts {
        written: 991,
        ..counts
    };
    assert_eq!(
        verdict(&quality.evaluate_commit(&extra, &profile), "completeness").value,
        -1.0
    );
    // No source count: no source verdict.
    let none = CommitCounts {
        source_count: None,
        ..counts
    };
    let report = quality.evaluate_commit(&none, &profile);
    assert!(
        report
            .verdicts()
            .iter()
            .all(|v| v.name != "completeness.source")
    );
}

#[test]
fn rules_then_gates_keep_the_completeness_equation_exact() {
    let quality = orders();
    let mut profile = quality.profile();
    let records = rows(0, 10, |_| false, NOON);
    // Make two rows break rules: a lower-case currency and an unknown event type.
    let mut currency: Vec<&str> = vec!["EUR"; 10];
    currency[3] = "eur";
    let mut types: Vec<&str> = vec!["PAID"; 10];
    types[8] = "REFUNDED";
    let mut columns = records.columns().to_vec();
    columns[1] = Arc::new(StringArray::from(types));
    columns[4] = Arc::new(StringArray::from(currency));
    let records = RecordBatch::try_new(schema(), columns).unwrap();
    let batch = SourceBatch {
        partition: TopicPartition::new("orders", 0),
        range: OffsetRange::new(0, 12),
        records,
        offsets: (0..10).collect(),
        dead_letters: Vec::new(),
        // Offsets 10 and 11 were duplicates the logic dropped.
        records_in: 12,
    };
    let (batch, rule_counts) = quality.apply_rules(batch).unwrap();
    batch.check().unwrap();
    profile.observe(&batch.records, None).unwrap();
    profile.observe_rules(&rule_counts);
    let counts = CommitCounts {
        records_in: batch.records_in,
        written: batch.num_rows() as u64,
        deduplicated: 2,
        dead_lettered: batch.dead_letters.len() as u64,
        source_count: Some(batch.range.end as u64 - batch.range.start as u64),
    };
    assert_eq!((counts.written, counts.dead_lettered), (8, 2));
    let report = quality.evaluate_commit(&counts, &profile);
    assert!(verdict(&report, "completeness").passed, "{report:?}");
    assert!(verdict(&report, "completeness.source").passed);
    let rule = verdict(&report, "rule.currency_pattern");
    assert!(!rule.passed, "a rule failure alerts (warn at 0%)");
    assert_eq!(
        (rule.scope, rule.policy, rule.value),
        (Scope::Record, Policy::Warn, 0.1)
    );
    assert!(verdict(&report, "rule.amount_cents_range").passed);
    assert_eq!(report.outcome(), Outcome::Commit, "warn only alerts");
    // Replayed history: timeliness is skipped, and says so.
    let t = verdict(&report, "timeliness");
    assert!(t.passed && t.skipped.as_deref().unwrap().starts_with("no ingest time"));
}

#[test]
fn a_rule_can_escalate_to_quarantine_past_its_failure_rate() {
    let mut config = orders_config();
    config.rules = vec![
        RecordRule::new(
            "",
            "currency",
            RuleCheck::Pattern(Pattern::new("^[A-Z]{3}$").unwrap()),
            Policy::Quarantine,
            0.1,
        )
        .unwrap(),
    ];
    let quality = Quality::new(config);
    let judge = |failed: u64| {
        let mut profile = quality.profile();
        profile.observe_rules(&RuleCounts {
            rows: 100,
            failed: [("currency_pattern".to_string(), failed)].into(),
            dead_lettered: failed,
        });
        quality
            .evaluate_commit(&CommitCounts::default(), &profile)
            .outcome()
    };
    assert_eq!(judge(10), Outcome::Commit, "10% is at the limit");
    let outcome = judge(20);
    assert_eq!(outcome.as_str(), "quarantine");
    assert_eq!(
        outcome.message().unwrap(),
        "quality gate quarantined: rule currency_pattern (currency) failure rate 20.00% > 10.00% (quarantine)"
    );
}

#[test]
fn duplicate_event_ids_within_a_commit_count_across_its_batches() {
    let mut config = orders_config();
    config.uniqueness = Some(UniquenessGate::new(Policy::Block, "event_id", 0.01).unwrap());
    let quality = Quality::new(config);
    // e-0..e-99, then e-95..e-104: five duplicates in 110 rows.
    let batches = [rows(0, 100, |_| false, NOON), rows(95, 10, |_| false, NOON)];
    let report = evaluate(&quality, &batches);
    let v = verdict(&report, "uniqueness.event_id");
    assert_eq!(v.observed["duplicates"], 5.0);
    assert!(!v.passed);
    assert_eq!(
        report.outcome().message().unwrap(),
        "quality gate blocked: event_id duplicate rate 4.55% > 1.00% (block)"
    );
    let report = evaluate(&quality, &batches[..1]);
    assert!(verdict(&report, "uniqueness.event_id").passed);
}

#[test]
fn timeliness_judges_the_share_of_records_later_than_the_sla() {
    let quality = orders(); // SLA 15m, at most 1% late, warn.
    let now = NOON;
    let minute = 60_000_000;
    // 97 rows 1 minute old, 3 rows 20 minutes old.
    let batches = [
        rows(0, 97, |_| false, now - minute),
        rows(97, 3, |_| false, now - 20 * minute),
    ];
    let mut profile = quality.profile();
    for b in &batches {
        profile.observe(b, Some(at(now))).unwrap();
    }
    let report = quality.evaluate_commit(&written(&batches), &profile);
    let v = verdict(&report, "timeliness");
    assert!(!v.passed);
    assert_eq!(v.value, 0.03);
    assert_eq!(v.policy, Policy::Warn);
    assert_eq!(
        v.to_string(),
        "share of records later than the 15m freshness SLA 3.00% > 1.00% (warn)"
    );
    assert_eq!(v.observed["max_delay_seconds"], 1200.0);
    let p50 = v.observed["p50_delay_seconds"];
    assert!((60.0..=75.0).contains(&p50), "p50 {p50}");
    assert_eq!(report.outcome(), Outcome::Commit);
    // All on time (and one event from the future, clock skew): passes.
    let mut profile = quality.profile();
    profile
        .observe(&rows(0, 10, |_| false, now + minute), Some(at(now)))
        .unwrap();
    assert!(
        verdict(
            &quality.evaluate_commit(&CommitCounts::default(), &profile),
            "timeliness"
        )
        .passed
    );
}

#[test]
fn a_gate_on_a_missing_column_is_an_error_and_counts_nothing() {
    let mut config = orders_config();
    config.null_rate = Some(
        NullRateGate::new(
            Policy::Block,
            vec!["user_id".into(), "courier_id".into()],
            0.1,
        )
        .unwrap(),
    );
    let quality = Quality::new(config);
    let mut profile = quality.profile();
    let err = profile
        .observe(&rows(0, 5, |_| false, NOON), None)
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "quality check null_rate.courier_id: batch commit: column \"courier_id\": missing"
        ),
        "{err}"
    );
    assert_eq!(profile.rows(), 0);
}

#[test]
fn disabled_quality_checks_nothing() {
    let quality = Quality::new(QualityConfig::disabled());
    let batch = rows(0, 10, |_| true, NOON);
    let report = quality
        .evaluate_rows(
            &CommitCounts {
                records_in: 99,
                ..CommitCounts::default()
            },
            &[batch],
            None,
            &RuleCounts::default(),
        )
        .unwrap();
    assert!(report.verdicts().is_empty());
    assert_eq!(report.outcome(), Outcome::Commit);
    assert!(
        quality
            .evaluate_day(Day(20_000), &BTreeMap::new())
            .verdicts()
            .is_empty()
    );
    let mut off = orders_config();
    off.enabled = false;
    let quality = Quality::new(off);
    let sb = SourceBatch {
        partition: TopicPartition::new("orders", 0),
        range: OffsetRange::new(0, 1),
        records: rows(0, 1, |_| false, NOON),
        offsets: vec![0],
        dead_letters: Vec::new(),
        records_in: 1,
    };
    let mut bad = sb.clone();
    let mut cols = bad.records.columns().to_vec();
    cols[4] = Arc::new(StringArray::from(vec!["eur"]));
    bad.records = RecordBatch::try_new(schema(), cols).unwrap();
    let (out, counts) = quality.apply_rules(bad).unwrap();
    assert_eq!(out.num_rows(), 1, "disabled: no rule runs");
    assert_eq!(counts.dead_lettered, 0);
}

fn week(day: Day, counts: [u64; 7]) -> BTreeMap<Day, u64> {
    // counts[0] is the day before `day`, counts[6] seven days before.
    counts
        .iter()
        .enumerate()
        .map(|(i, n)| (day.minus(i as u32 + 1), *n))
        .collect()
}

#[test]
fn a_day_at_half_the_seven_day_median_is_flagged_and_a_normal_day_is_not() {
    let quality = orders();
    let day = Day::from_ymd(2026, 11, 30).unwrap();
    let mut history = week(day, [1000, 1100, 900, 1000, 1050, 950, 1000]);
    history.insert(day, 500);
    let report = quality.evaluate_day(day, &history);
    let v = verdict(&report, "row_count");
    assert!(!v.passed);
    assert_eq!(
        (v.value, v.scope, v.day),
        (0.5, Scope::Partition, Some(day))
    );
    assert_eq!(v.observed["median"], 1000.0);
    assert_eq!(
        v.to_string(),
        "row count 2026-11-30 vs the 7-day median ×0.50 outside [×0.70, ×1.30] (warn)"
    );
    history.insert(day, 1040);
    let v = verdict(&quality.evaluate_day(day, &history), "row_count").clone();
    assert!(v.passed, "{v}");
    history.insert(day, 1400);
    assert!(
        !verdict(&quality.evaluate_day(day, &history), "row_count").passed,
        "too many is flagged too"
    );
}

#[test]
fn fewer_previous_days_than_required_pass_as_insufficient_history() {
    let quality = orders();
    let day = Day::from_ymd(2026, 11, 30).unwrap();
    let mut history: BTreeMap<Day, u64> = (1..=3).map(|back| (day.minus(back), 1000)).collect();
    history.insert(day, 10);
    let v = verdict(&quality.evaluate_day(day, &history), "row_count").clone();
    assert!(v.passed);
    assert_eq!(
        v.skipped.as_deref(),
        Some("insufficient history: 3 of 7 previous days (needs 7)")
    );
    // The table's first day has no history at all.
    let first: BTreeMap<Day, u64> = [(day, 10)].into();
    let v = verdict(&quality.evaluate_day(day, &first), "row_count").clone();
    assert_eq!(
        v.skipped.as_deref(),
        Some("insufficient history: 0 of 7 previous days (needs 7)")
    );
}

#[test]
fn a_day_without_rows_inside_the_history_counts_as_zero() {
    let quality = orders();
    let day = Day::from_ymd(2026, 11, 30).unwrap();
    // Seven days ago the table started; three days of outage (absent) since.
    let mut history = week(day, [1000, 0, 0, 0, 1000, 1000, 1000]);
    history.retain(|_, n| *n > 0);
    history.insert(day, 1000);
    let v = verdict(&quality.evaluate_day(day, &history), "row_count").clone();
    assert_eq!(v.observed["history_days"], 7.0);
    assert_eq!(
        v.observed["median"], 1000.0,
        "median of 0,0,0,1000,1000,1000,1000"
    );
    assert!(v.passed);
    // A missing judged day is a day of 0 rows.
    history.remove(&day);
    let v = verdict(&quality.evaluate_day(day, &history), "row_count").clone();
    assert_eq!(v.value, 0.0);
    assert!(!v.passed);
}

#[test]
fn a_commit_report_round_trips_through_the_snapshot_summary() {
    let quality = orders();
    let batch = rows(0, 1000, |i| i % 20 < 3, NOON);
    let mut report = evaluate(&quality, &[batch]);
    let day = Day::from_ymd(2026, 11, 30).unwrap();
    let mut history = week(day, [1000; 7]);
    history.insert(day, 500);
    report.extend(quality.evaluate_day(day, &history));
    let json = report.to_json();
    assert!(
        json.starts_with(r#"{"version":1,"outcome":"block","verdicts":["#),
        "{json}"
    );
    let back = QualityReport::from_json(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.outcome(), report.outcome());
    assert_eq!(SUMMARY_KEY, "kappa.quality");
}

#[test]
fn uniqueness_keys_of_every_text_and_integer_type_count_the_same_duplicates() {
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, Float64Array, Int32Array, LargeStringArray};
    let mut config = orders_config();
    config.null_rate = None;
    config.timeliness = None;
    config.uniqueness = Some(UniquenessGate::new(Policy::Warn, "key", 0.0).unwrap());
    let quality = Quality::new(config);
    // 2 and 3 repeat; NULL keys are never duplicates of each other.
    let keys = [Some(1), Some(2), Some(2), Some(3), None, None, Some(3)];
    let text = || keys.iter().map(|k| k.map(|k: i32| format!("k{k}")));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(text())),
        Arc::new(LargeStringArray::from_iter(text())),
        Arc::new(Int64Array::from_iter(keys.iter().map(|k| k.map(i64::from)))),
        Arc::new(Int32Array::from_iter(keys)),
        Arc::new(
            text()
                .collect::<Vec<_>>()
                .iter()
                .map(Option::as_deref)
                .collect::<DictionaryArray<Int32Type>>(),
        ),
    ];
    for column in columns {
        let data_type = column.data_type().clone();
        let batch = RecordBatch::try_from_iter([("key", column)]).unwrap();
        let mut profile = quality.profile();
        // Split across two batches: duplicates count across the commit's batches.
        profile.observe(&batch.slice(0, 3), None).unwrap();
        profile.observe(&batch.slice(3, 4), None).unwrap();
        let report = quality.evaluate_commit(&written(&[batch]), &profile);
        let v = verdict(&report, "uniqueness.key");
        assert_eq!(v.observed["duplicates"], 2.0, "{data_type}");
    }
    let floats = RecordBatch::try_from_iter([(
        "key",
        Arc::new(Float64Array::from(vec![1.0, 1.0])) as ArrayRef,
    )])
    .unwrap();
    let err = quality.profile().observe(&floats, None).unwrap_err();
    assert!(
        err.to_string().contains("key") && err.to_string().contains("Float64"),
        "{err}"
    );
}
