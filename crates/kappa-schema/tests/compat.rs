//! Compatibility verdicts: the orders contracts, then a table of tricky cases with the expected
//! verdict at every level.
#![allow(missing_docs, clippy::panic)]

use apache_avro::Schema;
use kappa_schema::compat::{BreakKind, Direction, Level, can_read, check};

const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");
const V3_BREAKING: &str = include_str!("data/orders-v3-breaking.avsc");

fn parse(json: &str) -> Schema {
    Schema::parse_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn orders_v2_is_backward_compatible_with_v1() {
    let (v1, v2) = (parse(V1), parse(V2));
    assert_eq!(check(Level::Backward, &v2, &[(1, &v1)]), vec![]);
    assert_eq!(check(Level::FullTransitive, &v2, &[(1, &v1)]), vec![]);
}

#[test]
fn orders_v3_breaking_names_amount_cents_and_region() {
    let (v1, v2, v3) = (parse(V1), parse(V2), parse(V3_BREAKING));
    let found = check(Level::Backward, &v3, &[(1, &v1), (2, &v2)]);
    let summary: Vec<(String, BreakKind, u32)> = found
        .iter()
        .map(|b| {
            (
                b.incompatibility.path.clone(),
                b.incompatibility.kind,
                b.version,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("amount_cents".to_string(), BreakKind::TypeMismatch, 2),
            ("region".to_string(), BreakKind::MissingDefault, 2),
        ],
        "{found:#?}"
    );
    let text = found
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("type changed from long to string"), "{text}");
    assert!(
        text.contains("\"region\" (string) has no default"),
        "{text}"
    );
    assert!(found.iter().all(|b| b.direction == Direction::NewReadsOld));
}

/// A record `r` with the given fields (JSON array body).
fn record(name: &str, fields: &str) -> String {
    format!(r#"{{"type":"record","name":"{name}","namespace":"t","fields":[{fields}]}}"#)
}

fn one(field_type: &str) -> String {
    record("R", &format!(r#"{{"name":"f","type":{field_type}}}"#))
}

struct Case {
    name: &'static str,
    old: String,
    new: String,
    /// Whether the new schema reads data of the old one.
    backward: bool,
    /// Whether the old schema reads data of the new one.
    forward: bool,
    /// A path and kind that must be reported when a direction fails.
    expect: Option<(&'static str, BreakKind)>,
}

fn cases() -> Vec<Case> {
    let enum_of = |symbols: &str, default: &str| {
        format!(r#"{{"type":"enum","name":"E","symbols":[{symbols}]{default}}}"#)
    };
    let c = |name, old: String, new: String, backward, forward, expect| Case {
        name,
        old,
        new,
        backward,
        forward,
        expect,
    };
    vec![
        c(
            "identical",
            one(r#""string""#),
            one(r#""string""#),
            true,
            true,
            None,
        ),
        c(
            "enum symbol added",
            one(&enum_of(r#""A","B""#, "")),
            one(&enum_of(r#""A","B","C""#, "")),
            true,
            false,
            Some(("f", BreakKind::MissingEnumSymbols)),
        ),
        c(
            "enum symbol removed",
            one(&enum_of(r#""A","B","C""#, "")),
            one(&enum_of(r#""A","B""#, "")),
            false,
            true,
            Some(("f", BreakKind::MissingEnumSymbols)),
        ),
        c(
            "enum symbol removed, reader has an enum default",
            one(&enum_of(r#""A","B","C""#, r#","default":"A""#)),
            one(&enum_of(r#""A","B""#, r#","default":"A""#)),
            true,
            true,
            None,
        ),
        c(
            "int to long promotion",
            one(r#""int""#),
            one(r#""long""#),
            true,
            false,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "long to int narrowing",
            one(r#""long""#),
            one(r#""int""#),
            false,
            true,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "float to double",
            one(r#""float""#),
            one(r#""double""#),
            true,
            false,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "string and bytes are interchangeable",
            one(r#""string""#),
            one(r#""bytes""#),
            true,
            true,
            None,
        ),
        c(
            "int to string",
            one(r#""int""#),
            one(r#""string""#),
            false,
            false,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "union widened",
            one(r#"["null","string"]"#),
            one(r#"["null","string","long"]"#),
            true,
            false,
            Some(("f", BreakKind::MissingUnionBranch)),
        ),
        c(
            "union narrowed to its non-null branch",
            one(r#"["null","string"]"#),
            one(r#""string""#),
            false,
            true,
            Some(("f", BreakKind::MissingUnionBranch)),
        ),
        c(
            "plain type widened to an optional union",
            one(r#""string""#),
            one(r#"["null","string"]"#),
            true,
            false,
            Some(("f", BreakKind::MissingUnionBranch)),
        ),
        c(
            "union branch promoted (int branch read as long)",
            one(r#"["null","int"]"#),
            one(r#"["null","long"]"#),
            true,
            false,
            Some(("f", BreakKind::MissingUnionBranch)),
        ),
        c(
            "field removed that had no default",
            record(
                "R",
                r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#,
            ),
            record("R", r#"{"name":"a","type":"int"}"#),
            true,
            false,
            Some(("b", BreakKind::MissingDefault)),
        ),
        c(
            "field removed that had a default",
            record(
                "R",
                r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":0}"#,
            ),
            record("R", r#"{"name":"a","type":"int"}"#),
            true,
            true,
            None,
        ),
        c(
            "field added without a default",
            record("R", r#"{"name":"a","type":"int"}"#),
            record(
                "R",
                r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#,
            ),
            false,
            true,
            Some(("b", BreakKind::MissingDefault)),
        ),
        c(
            "optional field added with a null default",
            record("R", r#"{"name":"a","type":"int"}"#),
            record(
                "R",
                r#"{"name":"a","type":"int"},{"name":"b","type":["null","int"],"default":null}"#,
            ),
            true,
            true,
            None,
        ),
        c(
            "field added whose default does not fit the first union branch",
            record("R", r#"{"name":"a","type":"int"}"#),
            record(
                "R",
                r#"{"name":"a","type":"int"},{"name":"b","type":["string","null"],"default":null}"#,
            ),
            false,
            true,
            Some(("b", BreakKind::InvalidDefault)),
        ),
        c(
            "field renamed with an alias",
            record("R", r#"{"name":"a","type":"int"}"#),
            record("R", r#"{"name":"b","type":"int","aliases":["a"]}"#),
            true,
            false,
            Some(("a", BreakKind::MissingDefault)),
        ),
        c(
            "timestamp-millis to timestamp-micros",
            one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            one(r#"{"type":"long","logicalType":"timestamp-micros"}"#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "long gains a logical type",
            one(r#""long""#),
            one(r#"{"type":"long","logicalType":"timestamp-millis"}"#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "string loses its uuid logical type",
            one(r#"{"type":"string","logicalType":"uuid"}"#),
            one(r#""string""#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "decimal precision changed",
            one(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#),
            one(r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}"#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "nested record field type changed",
            one(&record("Inner", r#"{"name":"b","type":"int"}"#)),
            one(&record("Inner", r#"{"name":"b","type":"boolean"}"#)),
            false,
            false,
            Some(("f.b", BreakKind::TypeMismatch)),
        ),
        c(
            "nested record gains an optional field",
            one(&record("Inner", r#"{"name":"b","type":"int"}"#)),
            one(&record(
                "Inner",
                r#"{"name":"b","type":"int"},{"name":"c","type":["null","string"],"default":null}"#,
            )),
            true,
            true,
            None,
        ),
        c(
            "nested record renamed without an alias",
            one(&record("Inner", r#"{"name":"b","type":"int"}"#)),
            one(&record("Other", r#"{"name":"b","type":"int"}"#)),
            false,
            false,
            Some(("f", BreakKind::NameMismatch)),
        ),
        c(
            "array items promoted",
            one(r#"{"type":"array","items":"int"}"#),
            one(r#"{"type":"array","items":"long"}"#),
            true,
            false,
            Some(("f[]", BreakKind::TypeMismatch)),
        ),
        c(
            "array of records gains a field without default",
            one(&format!(
                r#"{{"type":"array","items":{}}}"#,
                record("Item", r#"{"name":"sku","type":"string"}"#)
            )),
            one(&format!(
                r#"{{"type":"array","items":{}}}"#,
                record(
                    "Item",
                    r#"{"name":"sku","type":"string"},{"name":"qty","type":"int"}"#
                )
            )),
            false,
            true,
            Some(("f[].qty", BreakKind::MissingDefault)),
        ),
        c(
            "map values changed incompatibly",
            one(r#"{"type":"map","values":"long"}"#),
            one(r#"{"type":"map","values":"boolean"}"#),
            false,
            false,
            Some(("f{}", BreakKind::TypeMismatch)),
        ),
        c(
            "map became an array",
            one(r#"{"type":"map","values":"long"}"#),
            one(r#"{"type":"array","items":"long"}"#),
            false,
            false,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "decimal on fixed: the fixed grows",
            one(
                r#"{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":10,"scale":2}"#,
            ),
            one(
                r#"{"type":"fixed","name":"D","size":16,"logicalType":"decimal","precision":10,"scale":2}"#,
            ),
            false,
            false,
            Some(("f", BreakKind::FixedSizeMismatch)),
        ),
        c(
            "decimal moved from bytes to fixed",
            one(r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#),
            one(
                r#"{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":10,"scale":2}"#,
            ),
            false,
            false,
            Some(("f", BreakKind::TypeMismatch)),
        ),
        c(
            "decimal scale changed",
            one(r#"["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}]"#),
            one(r#"["null",{"type":"bytes","logicalType":"decimal","precision":10,"scale":3}]"#),
            false,
            false,
            Some(("f", BreakKind::MissingUnionBranch)),
        ),
        c(
            "time-millis became time-micros",
            one(r#"{"type":"int","logicalType":"time-millis"}"#),
            one(r#"{"type":"long","logicalType":"time-micros"}"#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "date became a plain int",
            one(r#"{"type":"int","logicalType":"date"}"#),
            one(r#""int""#),
            false,
            false,
            Some(("f", BreakKind::LogicalTypeMismatch)),
        ),
        c(
            "enum in a nested record gains a symbol",
            one(&record(
                "Inner",
                &format!(r#"{{"name":"e","type":{}}}"#, enum_of(r#""A""#, "")),
            )),
            one(&record(
                "Inner",
                &format!(r#"{{"name":"e","type":{}}}"#, enum_of(r#""A","B""#, "")),
            )),
            true,
            false,
            Some(("f.e", BreakKind::MissingEnumSymbols)),
        ),
        c(
            "nullable nested record gains an optional field",
            one(&format!(
                r#"["null",{}]"#,
                record("Inner", r#"{"name":"b","type":"int"}"#)
            )),
            one(&format!(
                r#"["null",{}]"#,
                record(
                    "Inner",
                    r#"{"name":"b","type":"int"},{"name":"c","type":["null","long"],"default":null}"#
                )
            )),
            true,
            true,
            None,
        ),
        c(
            "array items become nullable",
            one(r#"{"type":"array","items":"int"}"#),
            one(r#"{"type":"array","items":["null","int"]}"#),
            true,
            false,
            Some(("f[]", BreakKind::MissingUnionBranch)),
        ),
        c(
            "map values promoted",
            one(r#"{"type":"map","values":"int"}"#),
            one(r#"{"type":"map","values":"long"}"#),
            true,
            false,
            Some(("f{}", BreakKind::TypeMismatch)),
        ),
        c(
            "map of records gains a field without default",
            one(&format!(
                r#"{{"type":"map","values":{}}}"#,
                record("V", r#"{"name":"a","type":"string"}"#)
            )),
            one(&format!(
                r#"{{"type":"map","values":{}}}"#,
                record(
                    "V",
                    r#"{"name":"a","type":"string"},{"name":"b","type":"double"}"#
                )
            )),
            false,
            true,
            Some(("f{}.b", BreakKind::MissingDefault)),
        ),
        c(
            "fixed renamed with an alias",
            one(r#"{"type":"fixed","name":"F","size":4}"#),
            one(r#"{"type":"fixed","name":"G","aliases":["F"],"size":4}"#),
            true,
            false,
            Some(("f", BreakKind::NameMismatch)),
        ),
        c(
            "fixed size changed",
            one(r#"{"type":"fixed","name":"F","size":8}"#),
            one(r#"{"type":"fixed","name":"F","size":16}"#),
            false,
            false,
            Some(("f", BreakKind::FixedSizeMismatch)),
        ),
    ]
}

#[test]
fn tricky_cases_get_the_expected_verdict_at_every_level() {
    let mut failures = Vec::new();
    for case in cases() {
        let (old, new) = (parse(&case.old), parse(&case.new));
        for level in Level::ALL {
            let expected = match level {
                Level::None => true,
                Level::Backward | Level::BackwardTransitive => case.backward,
                Level::Forward | Level::ForwardTransitive => case.forward,
                Level::Full | Level::FullTransitive => case.backward && case.forward,
            };
            let found = check(level, &new, &[(1, &old)]);
            if found.is_empty() != expected {
                failures.push(format!(
                    "{}: {level} expected {}, got {found:#?}",
                    case.name,
                    if expected {
                        "compatible"
                    } else {
                        "incompatible"
                    }
                ));
            }
            if let Some((path, kind)) = case.expect
                && !found.is_empty()
                && !found
                    .iter()
                    .any(|b| b.incompatibility.path == path && b.incompatibility.kind == kind)
            {
                failures.push(format!(
                    "{}: {level} expected {path} {kind:?}, got {found:#?}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn transitive_levels_check_every_version_and_plain_levels_only_the_latest() {
    // v1 has `b` required; v2 gives it a default; v3 drops it. v3 can be read by v2 (default) but
    // not by v1 (no default): FORWARD passes, FORWARD_TRANSITIVE fails against version 1 only.
    let v1 = parse(&record(
        "R",
        r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#,
    ));
    let v2 = parse(&record(
        "R",
        r#"{"name":"a","type":"int"},{"name":"b","type":"int","default":7}"#,
    ));
    let v3 = parse(&record("R", r#"{"name":"a","type":"int"}"#));
    let history = [(1, &v1), (2, &v2)];
    assert_eq!(check(Level::Forward, &v3, &history), vec![]);
    let found = check(Level::ForwardTransitive, &v3, &history);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].version, 1);
    assert_eq!(found[0].direction, Direction::OldReadsNew);
    assert_eq!(found[0].incompatibility.path, "b");
    assert_eq!(check(Level::None, &v3, &history), vec![]);
    assert_eq!(check(Level::Backward, &v3, &[]), vec![]);
}

#[test]
fn recursive_types_terminate() {
    let list = r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#;
    let wider = r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"],"default":null}]}"#;
    assert_eq!(can_read(&parse(wider), &parse(list)), vec![]);
    assert_eq!(can_read(&parse(list), &parse(wider)).len(), 1);
}

#[test]
fn levels_parse_as_the_registry_spells_them() {
    assert_eq!(
        "backward_transitive".parse::<Level>().unwrap(),
        Level::BackwardTransitive
    );
    assert_eq!("FULL".parse::<Level>().unwrap(), Level::Full);
    let err = "sideways".parse::<Level>().unwrap_err();
    assert!(
        err.contains("sideways") && err.contains("FULL_TRANSITIVE"),
        "{err}"
    );
}
