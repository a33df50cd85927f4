//! A value-record archive (an Avro object container file, as Kafka Connect's S3 sink writes one)
//! of records with every mapped type — decimals on bytes and on fixed, times, uuids, enums,
//! fixed, arrays, maps and nested records, nullable or not — replayed: the walk over the writer
//! schema finds every record's end, arrow-avro decodes them with the file's writer schema, and
//! the rows hold exactly the values the records were built from. The files are written by
//! apache-avro, whose header repeats the attributes of a decimal on `fixed` (arrow-avro refuses
//! that text; the replay reads it re-serialized).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;

use apache_avro::{Codec, Schema, Writer};
use bytes::Bytes;
use kappa_core::{DeadLetterKind, SourceBatch, TopicPartition};
use kappa_schema::{FileRegistry, TableMapping, WireDecoder};
use kappa_source_replay::archive::decode::{DecodeState, FileToDecode, decode_file};
use kappa_source_replay::{ArchiveLimits, ReplayError};

include!("../../kappa-schema/tests/data/payments.rs");

const KEY: &str = "archive/payments/partition=0/payments+0+0000000000.avro";

/// An object container file of `records`, written with `schema_json`, in blocks of 3 records.
fn ocf(schema_json: &str, records: Vec<apache_avro::types::Value>, codec: Codec) -> Vec<u8> {
    let schema = Schema::parse_str(schema_json).unwrap();
    let mut writer = Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(codec)
        .build();
    for (i, record) in records.into_iter().enumerate() {
        writer.append(record).unwrap();
        if i % 3 == 2 {
            writer.flush().unwrap();
        }
    }
    writer.into_inner().unwrap()
}

/// The file decoded for a table mapped from `history`, in batches of 4 rows.
fn decode(bytes: Vec<u8>, history: &[&str]) -> Result<Vec<SourceBatch>, ReplayError> {
    let mapping = Arc::new(TableMapping::from_history(history).unwrap());
    let registry =
        Arc::new(FileRegistry::from_schemas("payments-value", history.iter().copied()).unwrap());
    let partition = TopicPartition::new("payments", 0);
    let file = FileToDecode {
        key: KEY,
        partition: &partition,
        start_offset: 0,
        next_start: None,
        from: i64::MIN,
        batch_rows: 4,
        limits: ArchiveLimits::default(),
    };
    let mut state = DecodeState::new(WireDecoder::new(mapping.clone(), registry));
    decode_file(&file, &Bytes::from(bytes), &mapping, &mut state)
}

/// Every row of `batches`, read back, with its offset.
fn rows(batches: &[SourceBatch], v2: bool) -> Vec<(i64, Payment)> {
    batches
        .iter()
        .flat_map(|b| {
            b.offsets
                .iter()
                .enumerate()
                .map(|(row, offset)| (*offset, read_payment(&b.records, row, v2)))
        })
        .collect()
}

#[test]
fn every_type_replays_to_the_values_it_was_written_with() {
    let payments: Vec<Payment> = (0..10).map(|i| payment(i, false)).collect();
    let records: Vec<_> = payments.iter().map(|p| payment_record(p, false)).collect();
    for codec in [
        Codec::Null,
        Codec::Deflate(Default::default()),
        Codec::Snappy,
    ] {
        let batches = decode(ocf(PAYMENTS_V1, records.clone(), codec), &[PAYMENTS_V1]).unwrap();
        assert!(
            batches.iter().all(|b| b.dead_letters.is_empty()),
            "{codec:?}"
        );
        let expected: Vec<(i64, Payment)> = payments
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i64, canonical(p)))
            .collect();
        assert_eq!(rows(&batches, false), expected, "{codec:?}");
    }
}

#[test]
fn an_archive_of_a_later_version_replays_into_the_evolved_table() {
    let payments: Vec<Payment> = (0..6).map(|i| payment(i, true)).collect();
    let records = payments.iter().map(|p| payment_record(p, true)).collect();
    let file = ocf(PAYMENTS_V2, records, Codec::Null);
    // Into a table that knows version 2: every field.
    let batches = decode(file.clone(), &[PAYMENTS_V1, PAYMENTS_V2]).unwrap();
    let expected: Vec<(i64, Payment)> = payments
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i64, canonical(p)))
        .collect();
    assert_eq!(rows(&batches, true), expected);
    // Into a table of version 1 only: the fields version 2 added are not stored.
    let batches = decode(file, &[PAYMENTS_V1]).unwrap();
    let without_v2: Vec<(i64, Payment)> =
        (0..6).map(|i| (i, canonical(&payment(i, false)))).collect();
    assert_eq!(rows(&batches, false), without_v2);
}

#[test]
fn a_bad_value_deep_in_a_record_is_one_dead_letter_naming_its_field() {
    let nanos = 1_764_000_000_123_456_789i64;
    let mut payments: Vec<Payment> = (0..5).map(|i| payment(i, false)).collect();
    payments[3].lines[0].at = Some(nanos);
    let records = payments.iter().map(|p| payment_record(p, false)).collect();
    let batches = decode(ocf(PAYMENTS_V1, records, Codec::Null), &[PAYMENTS_V1]).unwrap();
    let letters: Vec<_> = batches
        .iter()
        .flat_map(|b| b.dead_letters.clone())
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].offset, letters[0].kind),
        (3, DeadLetterKind::Unconvertible)
    );
    assert!(
        letters[0].message.contains("lines[].at"),
        "{}",
        letters[0].message
    );
    let kept: Vec<i64> = rows(&batches, false).iter().map(|(o, _)| *o).collect();
    assert_eq!(kept, [0, 1, 2, 4]);
}
