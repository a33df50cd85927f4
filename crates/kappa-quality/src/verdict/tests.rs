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
                    Some(reason) => Verdict::skip(head, threshold, Unit::Ratio, reason, observed),
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

#[test]
fn the_documented_summary_example_reads_back() {
    let doc = include_str!("../../../../docs/quality.md");
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let json = &doc[start..start + doc[start..].find("```").unwrap()];
    let report = QualityReport::from_json(json).unwrap();
    assert_eq!(report.outcome().as_str(), "block");
    assert_eq!(report.verdicts().len(), 2);
    let compact: String = json.split('\n').map(str::trim_start).collect();
    assert_eq!(
        report.to_json(),
        compact,
        "the example is what Kappa writes"
    );
}

#[test]
fn a_waiver_lets_the_named_failed_checks_through_and_says_so() {
    let report = QualityReport::new(vec![
        rate("user_id", Policy::Block, 0.15, 0.001),
        rate("currency", Policy::Block, 0.2, 0.01),
        rate("amount", Policy::Block, 0.0, 0.01),
    ]);
    assert!(matches!(report.outcome(), Outcome::Block(_)));

    let mut one = report.clone();
    let waived = one.waive(&["user_id".to_string()], "by ops at 12:00: known outage");
    assert_eq!(waived, ["user_id"]);
    assert!(
        matches!(one.outcome(), Outcome::Block(ref v) if v.len() == 1 && v[0].name == "currency")
    );

    let mut all = report.clone();
    assert_eq!(all.waive(&[], "by ops"), ["user_id", "currency"]);
    assert_eq!(all.outcome(), Outcome::Commit);
    let user_id = &all.verdicts()[0];
    assert_eq!((user_id.passed, user_id.policy), (false, Policy::Warn));
    assert_eq!(user_id.value, 0.15, "the value is kept");
    let json = all.to_json();
    assert!(json.contains("\"overridden\":\"by ops\""), "{json}");
    assert!(json.contains("\"outcome\":\"commit\""), "{json}");
    assert!(
        all.verdicts()[2].overridden.is_none(),
        "a passed check is not waived"
    );
}
