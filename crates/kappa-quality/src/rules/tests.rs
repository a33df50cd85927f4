use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    types::Int8Type,
};
use arrow_schema::{DataType, Field, Schema};
use kappa_core::{Classify, ErrorKind, OffsetRange, TopicPartition};
use proptest::prelude::*;

use super::*;

/// One row: (event_type, amount_cents, currency, user_id).
type Row<'a> = (
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
);

fn batch_at(start: i64, rows: &[Row<'_>], dead: Vec<i64>, gap: i64) -> SourceBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_type", DataType::Utf8, true),
        Field::new("amount_cents", DataType::Int64, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
    ]));
    // Rows at every `gap`-th offset from `start`; dead letters anywhere in the range.
    let offsets: Vec<i64> = (0..rows.len() as i64).map(|i| start + i * gap).collect();
    let end = offsets
        .last()
        .map_or(start, |o| o + 1)
        .max(dead.iter().max().map_or(start, |d| d + 1));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3))),
    ];
    let dead_letters: Vec<DeadLetter> = dead
        .into_iter()
        .map(|offset| DeadLetter {
            offset,
            raw: Bytes::from_static(b"\x00bad"),
            object_key: None,
            kind: DeadLetterKind::Undecodable,
            message: "bad magic".into(),
        })
        .collect();
    SourceBatch {
        partition: TopicPartition::new("orders", 0),
        range: OffsetRange::new(start, end),
        records_in: (rows.len() + dead_letters.len()) as u64,
        records: RecordBatch::try_new(schema, columns).unwrap(),
        offsets,
        dead_letters,
    }
}

fn batch(rows: &[Row<'_>]) -> SourceBatch {
    batch_at(100, rows, Vec::new(), 1)
}

fn orders_rules() -> Vec<RecordRule> {
    crate::tests::orders_config().rules
}

fn rule(column: &str, check: RuleCheck) -> RecordRule {
    RecordRule::new("", column, check, Policy::Warn, 0.0).unwrap()
}

const GOOD: Row<'static> = (Some("PAID"), Some(1250), Some("EUR"), Some("u-1"));

#[test]
fn rows_that_pass_every_rule_stay_untouched() {
    let input = batch(&[GOOD, GOOD]);
    let (out, counts) = apply_rules(&orders_rules(), input.clone()).unwrap();
    assert_eq!(out.records, input.records);
    assert_eq!(out.offsets, input.offsets);
    assert!(out.dead_letters.is_empty());
    assert_eq!(counts.rows, 2);
    assert_eq!(counts.dead_lettered, 0);
    assert_eq!(counts.failed.values().sum::<u64>(), 0);
    assert_eq!(counts.failed.len(), 3, "every rule reports, failing or not");
}

#[test]
fn allowed_values_dead_letter_a_value_outside_the_enum() {
    let input = batch(&[GOOD, (Some("REFUNDED"), Some(1), Some("EUR"), None), GOOD]);
    let (out, counts) = apply_rules(&orders_rules(), input).unwrap();
    assert_eq!(out.offsets, vec![100, 102]);
    assert_eq!(out.num_rows(), 2);
    assert_eq!(out.dead_letters.len(), 1);
    let dead = &out.dead_letters[0];
    assert_eq!(dead.offset, 101);
    assert_eq!(dead.kind, DeadLetterKind::RuleViolation);
    assert_eq!(
        dead.message,
        "rule event_type_allowed: event_type \"REFUNDED\" is not one of CREATED|PAID|CANCELLED|DELIVERED"
    );
    assert_eq!(counts.failed["event_type_allowed"], 1);
    assert_eq!(counts.dead_lettered, 1);
    out.check().unwrap();
}

#[test]
fn range_dead_letters_below_the_minimum_and_above_the_maximum() {
    let rules = vec![rule(
        "amount_cents",
        RuleCheck::Range {
            min: Some(0.0),
            max: Some(100_000.0),
        },
    )];
    let input = batch(&[
        (Some("PAID"), Some(-5), Some("EUR"), None),
        (Some("PAID"), Some(0), Some("EUR"), None),
        (Some("PAID"), Some(100_000), Some("EUR"), None),
        (Some("PAID"), Some(100_001), Some("EUR"), None),
        (Some("PAID"), None, Some("EUR"), None),
    ]);
    let (out, counts) = apply_rules(&rules, input).unwrap();
    assert_eq!(
        out.offsets,
        vec![101, 102, 104],
        "bounds are inclusive; NULL passes"
    );
    let messages: Vec<&str> = out
        .dead_letters
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "rule amount_cents_range: amount_cents -5 is below the minimum 0",
            "rule amount_cents_range: amount_cents 100001 is above the maximum 100000",
        ]
    );
    assert_eq!(counts.failed["amount_cents_range"], 2);
}

#[test]
fn pattern_dead_letters_a_value_that_does_not_match() {
    let input = batch(&[
        (Some("PAID"), Some(1), Some("usd"), None),
        (Some("PAID"), Some(1), Some("EURO"), None),
        GOOD,
        (Some("PAID"), Some(1), None, None),
    ]);
    let (out, counts) = apply_rules(&orders_rules(), input).unwrap();
    assert_eq!(
        out.offsets,
        vec![102, 103],
        "NULL is not the pattern's business"
    );
    assert_eq!(
        out.dead_letters[0].message,
        "rule currency_pattern: currency \"usd\" does not match ^[A-Z]{3}$"
    );
    assert_eq!(counts.failed["currency_pattern"], 2);
}

/// A pattern's answer is remembered per distinct value within a batch: values repeated anywhere
/// in it get the answer every time, and past the memo's size values are matched one by one.
/// The expectation is the pattern written out by hand (three ASCII capitals).
#[test]
fn pattern_judges_repeated_values_and_more_distinct_values_than_it_remembers() {
    let letters = |i: usize| -> String {
        (0..3)
            .map(|k| char::from(b'A' + ((i / 26usize.pow(k)) % 26) as u8))
            .collect()
    };
    let values: Vec<String> = (0..4 * PATTERN_MEMO)
        .map(|i| match i % 4 {
            0 => "usd".to_string(),
            1 => "EUR".to_string(),
            2 => letters(i),
            _ => letters(i).to_lowercase(),
        })
        .collect();
    let rows: Vec<Row<'_>> = values
        .iter()
        .map(|v| (Some("PAID"), Some(1), Some(v.as_str()), Some("u-1")))
        .collect();
    let (out, counts) = apply_rules(&orders_rules(), batch(&rows)).unwrap();
    let fits = |v: &str| v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase());
    let failed: Vec<i64> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| !fits(v))
        .map(|(i, _)| 100 + i as i64)
        .collect();
    let dead: Vec<i64> = out.dead_letters.iter().map(|d| d.offset).collect();
    assert_eq!(dead, failed);
    assert_eq!(counts.failed["currency_pattern"], failed.len() as u64);
    assert_eq!(out.offsets.len() + failed.len(), values.len());
}

#[test]
fn required_dead_letters_nulls_and_a_row_failing_two_rules_is_one_dead_letter() {
    let mut rules = orders_rules();
    rules.push(rule("user_id", RuleCheck::Required));
    let input = batch(&[GOOD, (Some("LOST"), Some(-1), Some("eur"), None)]);
    let (out, counts) = apply_rules(&rules, input).unwrap();
    assert_eq!(out.offsets, vec![100]);
    assert_eq!(out.dead_letters.len(), 1, "one dead letter per row");
    let message = &out.dead_letters[0].message;
    for part in [
        "rule event_type_allowed: event_type \"LOST\"",
        "rule amount_cents_range: amount_cents -1 is below",
        "rule currency_pattern: currency \"eur\"",
        "rule user_id_required: user_id is null",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert_eq!(counts.failed.values().sum::<u64>(), 4);
    assert_eq!(counts.dead_lettered, 1);
}

#[test]
fn violations_merge_with_the_sources_dead_letters_in_offset_order() {
    // Rows at 10, 12, 14; an undecodable record at 11.
    let input = batch_at(
        10,
        &[GOOD, (Some("X"), Some(1), Some("EUR"), None), GOOD],
        vec![11],
        2,
    );
    input.check().unwrap();
    let (out, _) = apply_rules(&orders_rules(), input).unwrap();
    let dead: Vec<(i64, DeadLetterKind)> = out
        .dead_letters
        .iter()
        .map(|d| (d.offset, d.kind))
        .collect();
    assert_eq!(
        dead,
        [
            (11, DeadLetterKind::Undecodable),
            (12, DeadLetterKind::RuleViolation)
        ]
    );
    assert_eq!(out.offsets, vec![10, 14]);
    assert_eq!(out.records_in, 4, "records_in is the source's");
    assert_eq!(out.range, OffsetRange::new(10, 15));
    out.check().unwrap();
}

#[test]
fn a_long_value_is_shortened_in_the_message() {
    let long = "A".repeat(500);
    let input = batch(&[(Some("PAID"), Some(1), Some(long.as_str()), None)]);
    let (out, _) = apply_rules(&orders_rules(), input).unwrap();
    let message = &out.dead_letters[0].message;
    assert!(message.len() < 200, "{message}");
    assert!(message.contains("…"), "{message}");
}

#[test]
fn allowed_reads_dictionary_and_integer_columns_as_text_and_range_reads_floats() {
    let dict: DictionaryArray<Int8Type> = vec!["PAID", "NOPE", "PAID"].into_iter().collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_type", dict.data_type().clone(), false),
        Field::new("status", DataType::Int32, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let records = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(dict),
            Arc::new(Int32Array::from(vec![200, 200, 500])),
            Arc::new(Float64Array::from(vec![0.5, f64::NAN, 0.9])),
        ],
    )
    .unwrap();
    let input = SourceBatch {
        partition: TopicPartition::new("t", 1),
        range: OffsetRange::new(0, 3),
        records,
        offsets: vec![0, 1, 2],
        dead_letters: Vec::new(),
        records_in: 3,
    };
    let rules = vec![
        rule("event_type", RuleCheck::Allowed(vec!["PAID".into()])),
        rule("status", RuleCheck::Allowed(vec!["200".into()])),
        rule(
            "score",
            RuleCheck::Range {
                min: Some(0.0),
                max: Some(1.0),
            },
        ),
    ];
    let (out, counts) = apply_rules(&rules, input).unwrap();
    assert_eq!(out.offsets, vec![0]);
    assert_eq!(counts.failed["event_type_allowed"], 1);
    assert_eq!(counts.failed["status_allowed"], 1);
    assert_eq!(counts.failed["score_range"], 1, "NaN is out of every range");
}

#[test]
fn a_missing_or_mistyped_column_is_an_error_naming_rule_column_and_batch() {
    let missing = vec![rule("coupon", RuleCheck::Required)];
    let err = apply_rules(&missing, batch(&[GOOD])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User);
    assert_eq!(
        err.to_string(),
        "quality check coupon_required: batch orders-0 [100, 101): column \"coupon\": \
         missing from the batch (columns: event_type, amount_cents, currency, user_id)"
    );
    let mistyped = vec![rule(
        "currency",
        RuleCheck::Range {
            min: Some(0.0),
            max: None,
        },
    )];
    let err = apply_rules(&mistyped, batch(&[GOOD])).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a numeric column, found Utf8"),
        "{err}"
    );
    let mistyped = vec![rule(
        "amount_cents",
        RuleCheck::Pattern(Pattern::new("^1").unwrap()),
    )];
    let err = apply_rules(&mistyped, batch(&[GOOD])).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a text column (Utf8), found Int64"),
        "{err}"
    );
}

#[test]
fn no_rules_is_a_pass_through() {
    let input = batch(&[GOOD, (Some("X"), Some(-1), None, None)]);
    let (out, counts) = apply_rules(&[], input.clone()).unwrap();
    assert_eq!(out.records, input.records);
    assert_eq!(counts.rows, 2);
    assert!(counts.failed.is_empty());
}

fn arb_row() -> impl Strategy<Value = (Option<String>, Option<i64>, Option<String>, Option<String>)>
{
    (
        proptest::option::of(prop_oneof![
            Just("PAID".to_string()),
            Just("CREATED".to_string()),
            "[A-Z]{1,8}"
        ]),
        proptest::option::of(-1000i64..1000),
        proptest::option::of(prop_oneof![Just("EUR".to_string()), "[A-Za-z]{0,4}"]),
        proptest::option::of("u-[0-9]{1,3}"),
    )
}

proptest! {
    /// Whatever the rows, offsets and dead letters: the invariant holds after the rules, every
    /// offset is a row or a dead letter exactly once, and the counts add up.
    #[test]
    fn rules_keep_the_source_batch_invariant(
        rows in proptest::collection::vec(arb_row(), 0..40),
        start in 0i64..1_000_000,
        gap in 1i64..4,
        dead_every in proptest::option::of(2usize..5),
        with_required in any::<bool>(),
    ) {
        let rows_ref: Vec<Row<'_>> = rows
            .iter()
            .map(|r| (r.0.as_deref(), r.1, r.2.as_deref(), r.3.as_deref()))
            .collect();
        // Dead letters in the gaps between row offsets (gap > 1).
        let dead: Vec<i64> = match (dead_every, gap > 1) {
            (Some(every), true) => (0..rows.len())
                .filter(|i| i % every == 0)
                .map(|i| start + i as i64 * gap + 1)
                .collect(),
            _ => Vec::new(),
        };
        let input = batch_at(start, &rows_ref, dead, gap);
        prop_assert!(input.check().is_ok());
        let mut rules = orders_rules();
        if with_required {
            rules.push(rule("user_id", RuleCheck::Required));
        }
        let before: Vec<i64> = input
            .offsets
            .iter()
            .chain(input.dead_letters.iter().map(|d| &d.offset))
            .copied()
            .collect();
        let (out, counts) = apply_rules(&rules, input.clone()).unwrap();
        prop_assert!(out.check().is_ok(), "{:?}", out.check());
        prop_assert_eq!(out.range, input.range);
        prop_assert_eq!(out.records_in, input.records_in);
        prop_assert_eq!(out.records.schema(), input.records.schema());
        let mut after: Vec<i64> = out
            .offsets
            .iter()
            .chain(out.dead_letters.iter().map(|d| &d.offset))
            .copied()
            .collect();
        let mut before = before;
        before.sort_unstable();
        after.sort_unstable();
        prop_assert_eq!(after, before, "every offset exactly once");
        prop_assert!(out.dead_letters.windows(2).all(|w| w[0].offset < w[1].offset));
        prop_assert_eq!(counts.rows, rows.len() as u64);
        prop_assert_eq!(
            counts.dead_lettered as usize + out.num_rows(),
            rows.len()
        );
        let violations = out.dead_letters.iter().filter(|d| d.kind == DeadLetterKind::RuleViolation).count();
        prop_assert_eq!(violations as u64, counts.dead_lettered);
        // A kept row passes every rule: applying the rules again changes nothing.
        let (again, counts2) = apply_rules(&rules, out.clone()).unwrap();
        prop_assert_eq!(again.num_rows(), out.num_rows());
        prop_assert_eq!(counts2.dead_lettered, 0);
    }
}
