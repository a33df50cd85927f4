//! Records of every mapped Avro type — decimals, times, uuids, enums, fixed, arrays, maps and
//! nested records, nullable or not — through the wire decoder (arrow-avro) and
//! `TableMapping::normalize`: the rows hold exactly the values the records were built from, with
//! the table's Arrow types, field names and field ids at every depth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;

use apache_avro::Schema;
use kappa_core::DeadLetterKind;
use kappa_schema::{FileRegistry, TableMapping, WireDecoder};

include!("data/payments.rs");

const SUBJECT: &str = "payments-value";

fn frame(id: u32, schema: &Schema, value: apache_avro::types::Value) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    out
}

/// The registry with both versions, and their ids and parsed schemas.
fn registry() -> (Arc<FileRegistry>, [(u32, Schema); 2]) {
    let registry = FileRegistry::from_schemas(SUBJECT, [PAYMENTS_V1, PAYMENTS_V2]).unwrap();
    let versions = registry.subject_versions(SUBJECT).unwrap();
    let v1 = (versions[0].id, versions[0].schema.clone());
    let v2 = (versions[1].id, versions[1].schema.clone());
    (Arc::new(registry), [v1, v2])
}

#[test]
fn every_type_decodes_to_the_values_it_was_written_with() {
    let (registry, [(v1_id, v1), _]) = registry();
    let mapping = Arc::new(TableMapping::from_history(&[PAYMENTS_V1]).unwrap());
    let payments: Vec<Payment> = (0..7).map(|i| payment(i, false)).collect();
    let messages: Vec<Vec<u8>> = payments
        .iter()
        .map(|p| frame(v1_id, &v1, payment_record(p, false)))
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let mut decoder = WireDecoder::new(mapping.clone(), registry);
    let out = decoder.decode(&refs).unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.records.schema(), *mapping.value_schema());
    for (row, expected) in payments.iter().enumerate() {
        assert_eq!(
            read_payment(&out.records, row, false),
            canonical(expected),
            "row {row}"
        );
    }
}

#[test]
fn records_of_both_versions_decode_into_the_evolved_table() {
    let (registry, [(v1_id, v1), (v2_id, v2)]) = registry();
    let mapping = Arc::new(TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap());
    let payments: Vec<(Payment, bool)> = (0..8).map(|i| (payment(i, i >= 4), i >= 4)).collect();
    let messages: Vec<Vec<u8>> = payments
        .iter()
        .map(|(p, newer)| match newer {
            true => frame(v2_id, &v2, payment_record(p, true)),
            false => frame(v1_id, &v1, payment_record(p, false)),
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let out = WireDecoder::new(mapping.clone(), registry)
        .decode(&refs)
        .unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    assert_eq!(out.records.schema(), *mapping.value_schema());
    for (row, (expected, _)) in payments.iter().enumerate() {
        // Version 1's records read NULL for what version 2 added.
        assert_eq!(
            read_payment(&out.records, row, true),
            canonical(expected),
            "row {row}"
        );
    }
    // The fixture sets every kind of version 2 field somewhere.
    let v2_rows: Vec<Payment> = (4..8)
        .map(|row| read_payment(&out.records, row, true))
        .collect();
    assert!(v2_rows.iter().any(|p| p.refund.is_some()));
    assert!(
        v2_rows
            .iter()
            .any(|p| p.card.as_ref().is_some_and(|c| c.network.is_some()))
    );
    assert!(
        v2_rows
            .iter()
            .any(|p| p.lines.iter().any(|l| l.discount.is_some()))
    );
}

#[test]
fn a_version_that_only_adds_nested_fields_stops_an_evolving_decoder() {
    let (registry, [(v1_id, v1), (v2_id, v2)]) = registry();
    // The table knows version 1; version 2 adds fields inside nested records and a column.
    let mapping = Arc::new(TableMapping::from_history(&[PAYMENTS_V1]).unwrap());
    let messages = [
        frame(v1_id, &v1, payment_record(&payment(0, false), false)),
        frame(v2_id, &v2, payment_record(&payment(1, true), true)),
    ];
    let input: Vec<(i64, Option<&[u8]>)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (i as i64, Some(m.as_slice())))
        .collect();
    let mut decoder = WireDecoder::new(mapping, registry).evolving(SUBJECT);
    let out = decoder.decode_records(&input, None).unwrap();
    assert_eq!(out.offsets, [0]);
    let (at, newer) = out.newer.expect("stops at the version 2 record");
    assert_eq!(at, 1);
    assert_eq!(
        newer.new_fields,
        ["method.card.network", "lines[].discount", "refund"]
    );
}

#[test]
fn a_nested_value_the_table_cannot_hold_dead_letters_its_record_only() {
    let (registry, [(v1_id, v1), _]) = registry();
    let mapping = Arc::new(TableMapping::from_history(&[PAYMENTS_V1]).unwrap());
    let nanos = 1_764_000_000_123_456_789i64;
    let mut bad = payment(2, false);
    bad.lines[0].at = Some(nanos);
    let payments = [payment(0, false), bad, payment(4, false)];
    let messages: Vec<Vec<u8>> = payments
        .iter()
        .map(|p| frame(v1_id, &v1, payment_record(p, false)))
        .collect();
    let input: Vec<(i64, Option<&[u8]>)> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (10 + i as i64, Some(m.as_slice())))
        .collect();
    let out = WireDecoder::new(mapping, registry)
        .decode_records(&input, None)
        .unwrap();
    assert_eq!(out.offsets, [10, 12]);
    assert_eq!(
        read_payment(&out.records, 0, false),
        canonical(&payments[0])
    );
    assert_eq!(
        read_payment(&out.records, 1, false),
        canonical(&payments[2])
    );
    assert_eq!(out.dead_letters.len(), 1, "{:?}", out.dead_letters);
    let letter = &out.dead_letters[0];
    assert_eq!(
        (letter.offset, letter.kind),
        (11, DeadLetterKind::Unconvertible)
    );
    assert!(
        letter.message.contains(&format!(
            "lines[].at: value {nanos} (ms since the epoch) does not fit"
        )),
        "{}",
        letter.message
    );
}
