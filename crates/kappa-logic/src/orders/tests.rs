use std::sync::Arc;

use arrow_array::{BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use kappa_core::{Classify, ErrorKind, OffsetRange, TopicPartition};
use proptest::prelude::*;

use super::*;

/// One input row: (event_id, amount_cents, currency).
type Row<'a> = (&'a str, i64, Option<&'a str>);

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("order_id", DataType::Utf8, false),
        Field::new("amount_cents", DataType::Int64, false),
        Field::new("currency", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("tip_cents", DataType::Int64, true),
    ]))
}

/// A batch of `rows` at consecutive offsets from `start` in partition `p`.
fn batch_in(p: i32, start: i64, rows: &[Row<'_>]) -> SourceBatch {
    let n = rows.len() as i64;
    let offsets: Vec<i64> = (start..start + n).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(
            offsets.iter().map(|o| format!("o-{o}")),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(offsets.iter().map(|o| o * 1_000_000))
                .with_timezone("+00:00"),
        ),
        Arc::new(Int64Array::from_iter(
            offsets.iter().map(|o| (o % 3 == 0).then_some(*o)),
        )),
    ];
    SourceBatch {
        partition: TopicPartition::new("orders", p),
        range: OffsetRange::new(start, start + n),
        records: RecordBatch::try_new(schema(), columns).unwrap(),
        offsets,
        dead_letters: Vec::new(),
        records_in: n as u64,
    }
}

fn batch(start: i64, rows: &[Row<'_>]) -> SourceBatch {
    batch_in(0, start, rows)
}

fn strings(batch: &SourceBatch, name: &str) -> Vec<Option<String>> {
    batch
        .records
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

fn ids(batch: &SourceBatch) -> Vec<String> {
    strings(batch, "event_id").into_iter().flatten().collect()
}

#[test]
fn currency_is_upper_cased_ascii_only_and_null_stays_null() {
    let mut logic = OrdersLogic::default();
    let input = batch(
        0,
        &[
            ("a", 1, Some("eur")),
            ("b", 1, Some("Gbp")),
            ("c", 1, None),
            ("d", 1, Some("eür")),
        ],
    );
    let (out, stats) = logic.apply(input).unwrap();
    assert_eq!(
        strings(&out, "currency"),
        [
            Some("EUR".into()),
            Some("GBP".into()),
            None,
            Some("EüR".into())
        ]
    );
    assert_eq!(stats, LogicStats::default());
    out.check().unwrap();
}

#[test]
fn upper_casing_a_slice_changes_only_its_values_and_keeps_its_nulls() {
    let all = StringArray::from(vec![
        Some("usd"),
        Some("eur"),
        None,
        Some("chf"),
        Some("gbp"),
    ]);
    let upper = upper_case(&all.slice(1, 3)).unwrap().unwrap();
    assert_eq!(
        upper.iter().collect::<Vec<_>>(),
        [Some("EUR"), None, Some("CHF")]
    );
    // Lower case only outside the slice: nothing to copy.
    let all = StringArray::from(vec![Some("usd"), Some("EUR"), Some("gbp")]);
    assert!(upper_case(&all.slice(1, 1)).unwrap().is_none());
}

#[test]
fn negative_amounts_become_rejected_dead_letters() {
    let mut logic = OrdersLogic::default();
    let (out, stats) = logic
        .apply(batch(
            10,
            &[("a", 5, Some("EUR")), ("b", -123, Some("EUR"))],
        ))
        .unwrap();
    assert_eq!(ids(&out), ["a"]);
    assert_eq!(out.offsets, [10]);
    assert_eq!(stats.rejected, 1);
    assert_eq!(
        out.dead_letters,
        [DeadLetter {
            offset: 11,
            raw: Bytes::new(),
            object_key: None,
            kind: DeadLetterKind::Rejected,
            message: "amount_cents is negative (-123)".into(),
        }]
    );
    out.check().unwrap();
}

#[test]
fn zero_is_a_valid_amount() {
    let (out, stats) = OrdersLogic::default()
        .apply(batch(0, &[("a", 0, Some("EUR"))]))
        .unwrap();
    assert_eq!(out.num_rows(), 1);
    assert_eq!(stats.rejected, 0);
}

#[test]
fn all_rules_together_keep_offsets_range_and_records_in() {
    let mut logic = OrdersLogic::new(100);
    let input = batch(
        10,
        &[
            ("a", 5, Some("eur")),
            ("b", -3, Some("USD")),
            ("a", 5, Some("eur")),
            ("c", 0, Some("Gbp")),
        ],
    );
    let (out, stats) = logic.apply(input).unwrap();
    out.check().unwrap();
    assert_eq!(ids(&out), ["a", "c"]);
    assert_eq!(out.offsets, [10, 13]);
    assert_eq!(
        strings(&out, "currency"),
        [Some("EUR".into()), Some("GBP".into())]
    );
    assert_eq!(
        stats,
        LogicStats {
            duplicates_dropped: 1,
            rejected: 1
        }
    );
    assert_eq!(out.range, OffsetRange::new(10, 14));
    assert_eq!(out.records_in, 4, "records_in is the source's count");
    let accounted =
        out.num_rows() as u64 + out.dead_letters.len() as u64 + stats.duplicates_dropped;
    assert_eq!(accounted, out.records_in, "nothing disappears uncounted");
}

#[test]
fn duplicates_are_found_across_batches_but_not_across_partitions() {
    let mut logic = OrdersLogic::new(100);
    let (first, _) = logic
        .apply(batch_in(0, 0, &[("a", 1, Some("EUR"))]))
        .unwrap();
    assert_eq!(first.num_rows(), 1);
    let (same_partition, stats) = logic
        .apply(batch_in(0, 1, &[("a", 1, Some("EUR"))]))
        .unwrap();
    assert_eq!(same_partition.num_rows(), 0);
    assert_eq!(stats.duplicates_dropped, 1);
    let (other_partition, stats) = logic
        .apply(batch_in(1, 1, &[("a", 1, Some("EUR"))]))
        .unwrap();
    assert_eq!(other_partition.num_rows(), 1, "windows are per partition");
    assert_eq!(stats.duplicates_dropped, 0);
}

#[test]
fn an_id_older_than_the_window_is_not_a_duplicate() {
    let mut logic = OrdersLogic::new(2);
    let rows = [
        ("a", 1, Some("EUR")),
        ("b", 1, Some("EUR")),
        ("c", 1, Some("EUR")),
        ("a", 1, Some("EUR")),
    ];
    let (out, stats) = logic.apply(batch(0, &rows)).unwrap();
    assert_eq!(ids(&out), ["a", "b", "c", "a"], "offset 0 is not in [1, 3)");
    assert_eq!(stats.duplicates_dropped, 0);
}

#[test]
fn a_rejected_record_does_not_shadow_a_later_valid_one() {
    let mut logic = OrdersLogic::new(100);
    let (out, stats) = logic
        .apply(batch(0, &[("a", -1, Some("EUR")), ("a", 1, Some("EUR"))]))
        .unwrap();
    assert_eq!(ids(&out), ["a"]);
    assert_eq!(out.offsets, [1]);
    assert_eq!(
        stats,
        LogicStats {
            duplicates_dropped: 0,
            rejected: 1
        }
    );
}

#[test]
fn other_columns_pass_through_untouched() {
    let input = batch(
        6,
        &[
            ("a", 1, Some("eur")),
            ("b", -1, Some("EUR")),
            ("c", 2, Some("EUR")),
        ],
    );
    let keep = BooleanArray::from(vec![true, false, true]);
    let expected = arrow_select::filter::filter_record_batch(&input.records, &keep).unwrap();
    let (out, _) = OrdersLogic::default().apply(input).unwrap();
    assert_eq!(out.records.schema(), expected.schema());
    for name in [
        "event_id",
        "order_id",
        "amount_cents",
        "event_time",
        "tip_cents",
    ] {
        assert_eq!(
            out.records.column_by_name(name).unwrap().as_ref(),
            expected.column_by_name(name).unwrap().as_ref(),
            "{name}"
        );
    }
}

#[test]
fn dead_letters_from_the_source_are_kept_in_offset_order() {
    let mut input = batch(0, &[("a", 1, Some("EUR")), ("b", -1, Some("EUR"))]);
    input.range = OffsetRange::new(0, 4);
    input.records_in = 4;
    for offset in [2, 3] {
        input.dead_letters.push(DeadLetter {
            offset,
            raw: Bytes::from_static(b"\x07"),
            object_key: None,
            kind: DeadLetterKind::Undecodable,
            message: "bad magic byte".into(),
        });
    }
    input.offsets = vec![0, 1];
    let (out, _) = OrdersLogic::default().apply(input).unwrap();
    let dead: Vec<(i64, DeadLetterKind)> = out
        .dead_letters
        .iter()
        .map(|d| (d.offset, d.kind))
        .collect();
    assert_eq!(
        dead,
        [
            (1, DeadLetterKind::Rejected),
            (2, DeadLetterKind::Undecodable),
            (3, DeadLetterKind::Undecodable)
        ]
    );
    out.check().unwrap();
}

#[test]
fn warm_up_restores_the_window_after_a_restart() {
    let rows = [
        ("a", 1, Some("EUR")),
        ("b", 1, Some("EUR")),
        ("a", 1, Some("EUR")),
        ("c", 1, Some("EUR")),
        ("b", 1, Some("EUR")),
    ];
    let mut straight = OrdersLogic::new(3);
    let (all, _) = straight.apply(batch(0, &rows)).unwrap();
    assert_eq!(all.offsets, [0, 1, 3], "2 repeats a at 0, 4 repeats b at 1");
    let mut restarted = OrdersLogic::new(3);
    let (before, after) = batch(0, &rows).split_at(3);
    restarted.warm_up(&before).unwrap();
    let (rest, _) = restarted.apply(after).unwrap();
    let tail: Vec<i64> = all.offsets.iter().copied().filter(|o| *o >= 3).collect();
    assert_eq!(rest.offsets, tail);
}

#[test]
fn a_missing_column_is_an_error_naming_it_and_changes_nothing() {
    let mut logic = OrdersLogic::new(10);
    let full = batch(0, &[("a", 1, Some("EUR"))]);
    let without_currency = full.records.project(&[0, 1, 2, 4, 5]).unwrap();
    let input = SourceBatch {
        records: without_currency,
        ..full.clone()
    };
    let err = logic.apply(input).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::User);
    let text = err.to_string();
    assert!(
        text.contains("\"currency\"") && text.contains("orders-0 [0, 1)"),
        "{text}"
    );
    assert!(text.contains("columns: event_id, order_id"), "{text}");
    let (out, _) = logic.apply(full).unwrap();
    assert_eq!(out.num_rows(), 1, "the failed batch registered no id");
}

#[test]
fn a_column_of_the_wrong_type_is_an_error_naming_it() {
    let full = batch(0, &[("a", 1, Some("EUR"))]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("amount_cents", DataType::Utf8, false),
        Field::new("currency", DataType::Utf8, false),
    ]));
    let records = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            Arc::new(StringArray::from(vec!["1"])),
            Arc::new(StringArray::from(vec!["EUR"])),
        ],
    )
    .unwrap();
    let err = OrdersLogic::default()
        .apply(SourceBatch { records, ..full })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"amount_cents\": expected Int64, found Utf8"),
        "{err}"
    );
}

/// Everything one run produced: rows (all columns), row offsets, dead-letter offsets, counters.
#[derive(Debug, PartialEq)]
struct Output {
    rows: Option<RecordBatch>,
    offsets: Vec<i64>,
    dead: Vec<i64>,
    duplicates: u64,
    rejected: u64,
}

fn run(logic: &mut OrdersLogic, batches: Vec<SourceBatch>) -> Output {
    let mut parts = Vec::new();
    let mut out = Output {
        rows: None,
        offsets: Vec::new(),
        dead: Vec::new(),
        duplicates: 0,
        rejected: 0,
    };
    for input in batches {
        let (b, stats) = logic.apply(input).unwrap();
        b.check().unwrap();
        out.offsets.extend(&b.offsets);
        out.dead.extend(b.dead_letters.iter().map(|d| d.offset));
        out.duplicates += stats.duplicates_dropped;
        out.rejected += stats.rejected;
        parts.push(b.records);
    }
    out.rows = Some(arrow_select::concat::concat_batches(&schema(), &parts).unwrap());
    out
}

proptest! {
    /// Output (every column of every row, the dead letters and the counters) does not depend on
    /// how the stream is split into batches, nor on a restart at any point with the window before
    /// it re-read by `warm_up`.
    #[test]
    fn batching_and_restarts_do_not_change_the_output(
        rows in proptest::collection::vec((0u8..12, -2i64..5, 0u8..3), 1..120),
        cuts in proptest::collection::vec(0usize..120, 0..6),
        restart in 0usize..120,
        window in 1i64..20,
    ) {
        let owned: Vec<(String, i64, &str)> = rows
            .iter()
            .map(|(id, a, c)| (format!("id{id}"), *a, ["eur", "USD", "Chf"][*c as usize]))
            .collect();
        let rows: Vec<Row<'_>> = owned.iter().map(|(id, a, c)| (id.as_str(), *a, Some(*c))).collect();
        let n = rows.len();
        let reference = run(&mut OrdersLogic::new(window), vec![batch(0, &rows)]);

        let mut points: Vec<usize> = cuts.into_iter().filter(|c| *c < n).collect();
        points.extend([0, n]);
        points.sort_unstable();
        points.dedup();
        let batches = points.windows(2).map(|w| batch(w[0] as i64, &rows[w[0]..w[1]])).collect();
        prop_assert_eq!(&run(&mut OrdersLogic::new(window), batches), &reference);

        let restart = restart.min(n);
        let from = restart.saturating_sub(window as usize);
        let mut logic = OrdersLogic::new(window);
        logic.warm_up(&batch(from as i64, &rows[from..restart])).unwrap();
        let tail = run(&mut logic, vec![batch(restart as i64, &rows[restart..])]);
        let at = restart as i64;
        let keep: Vec<bool> = reference.offsets.iter().map(|o| *o >= at).collect();
        let expected_rows = arrow_select::filter::filter_record_batch(
            reference.rows.as_ref().unwrap(),
            &BooleanArray::from(keep),
        ).unwrap();
        prop_assert_eq!(tail.rows.as_ref().unwrap(), &expected_rows);
        let expected_dead: Vec<i64> = reference.dead.iter().copied().filter(|o| *o >= at).collect();
        prop_assert_eq!(tail.dead, expected_dead);
    }
}

#[test]
fn the_defaults_follow_the_contract() {
    let contract: serde_json::Value =
        serde_json::from_str(include_str!("../../../../contracts/orders-value/2.avsc")).unwrap();
    let fields = contract["fields"].as_array().unwrap();
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the contract"))
    };
    let symbols: Vec<&str> = field("event_type")["type"]["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(symbols, EVENT_TYPES);
    let config = default_quality("event_time").unwrap();
    for rule in &config.rules {
        field(rule.column());
    }
    for column in ENTRY.defaults.null_rate_columns {
        assert_eq!(
            field(column)["type"][0],
            "null",
            "{column} is optional in the contract"
        );
    }
    assert_eq!(
        field(EVENT_ID)["type"]["type"],
        "string",
        "a required string (uuid)"
    );
    assert_eq!(ENTRY.defaults.dedup_key, Some(EVENT_ID));
    assert_eq!(ENTRY.defaults.uniqueness_column, Some(EVENT_ID));
    let names: Vec<&str> = config.rules.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "event_type_allowed",
            "amount_cents_range",
            "currency_pattern"
        ]
    );
}
