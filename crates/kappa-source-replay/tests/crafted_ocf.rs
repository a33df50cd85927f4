//! Crafted archive objects, not mutations of good ones: every codec (null, deflate, snappy,
//! zstandard) × every archive shape (value records, raw wire-format bytes, envelopes) × a corpus
//! of hand-made blocks — empty, tiny, truncated, a declared size or record count far past the
//! file, too few or too many records for the count, a wrong sync marker, damaged compressed
//! data, decompression bombs, objects over the size cap. Each must end in rows and dead letters
//! or in an error naming the object (the right kind: `OverLimit` for what is too large,
//! `Corrupt` for damage), never in a panic, and the process's peak memory must stay far below
//! what the bombs inflate to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use apache_avro::Schema;
use apache_avro::types::Value;
use bytes::Bytes;
use kappa_core::{DeadLetterKind, SourceBatch, TopicPartition};
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping, WireDecoder};
use kappa_source_replay::archive::decode::{DecodeState, FileToDecode, decode_file};
use kappa_source_replay::{ArchiveLimits, ReplayError};
use kappa_synth::{ENVELOPE_SCHEMA, ORDERS_V1};

const KEY: &str = "archive/orders/partition=0/orders+0+0000000100.avro";
const START: i64 = 100;
const SYNC: [u8; 16] = *b"kappa-crafted-ok";
/// What a bomb block inflates to: far more than the test's block limit, and than the memory
/// the test allows the whole process.
const BOMB_BYTES: usize = 768 << 20;
/// Peak RSS the whole test process may reach.
const MAX_PEAK_RSS: u64 = 384 << 20;

/// Limits small enough for the test to exercise every one of them.
const LIMITS: ArchiveLimits = ArchiveLimits {
    max_object_bytes: 4 << 20,
    max_block_bytes: 1 << 20,
    max_inflated_bytes: 3 << 20,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Value,
    RawBytes,
    Envelope,
}
const SHAPES: [Shape; 3] = [Shape::Value, Shape::RawBytes, Shape::Envelope];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Null,
    Deflate,
    Snappy,
    Zstandard,
}
const CODECS: [Codec; 4] = [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstandard];

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
            Codec::Snappy => "snappy",
            Codec::Zstandard => "zstandard",
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Null => data.to_vec(),
            Codec::Deflate => {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Snappy => {
                let mut out = snap::raw::Encoder::new().compress_vec(data).unwrap();
                out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
                out
            }
            Codec::Zstandard => zstd::encode_all(data, 1).unwrap(),
        }
    }

    /// A block's data that inflates to [`BOMB_BYTES`] of zeros, made without holding them.
    fn bomb(self) -> Vec<u8> {
        static BOMBS: OnceLock<Vec<(Codec, Vec<u8>)>> = OnceLock::new();
        let bombs = BOMBS.get_or_init(|| {
            let zeros = vec![0u8; 1 << 20];
            let chunks = BOMB_BYTES / zeros.len();
            let mut deflate =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            for _ in 0..chunks {
                deflate.write_all(&zeros).unwrap();
                zstd.write_all(&zeros).unwrap();
            }
            // Snappy's block format says its inflated length first: claim the bomb's size and
            // follow with too little data (a decoder that trusts the length allocates it).
            let mut snappy = Vec::new();
            let mut len = BOMB_BYTES as u64;
            while len >= 0x80 {
                snappy.push((len as u8) | 0x80);
                len >>= 7;
            }
            snappy.push(len as u8);
            snappy.extend_from_slice(&[0; 64]);
            vec![
                (Codec::Deflate, deflate.finish().unwrap()),
                (Codec::Zstandard, zstd.finish().unwrap()),
                (Codec::Snappy, snappy),
            ]
        });
        match self {
            // Uncompressed, a "bomb" is just a block over the limit.
            Codec::Null => vec![0; LIMITS.max_block_bytes + 1],
            other => bombs.iter().find(|(c, _)| *c == other).unwrap().1.clone(),
        }
    }
}

fn zigzag(value: i64, out: &mut Vec<u8>) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn avro_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    zigzag(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

/// An object container file: the header (schema, codec, [`SYNC`]), then `blocks` as given.
fn ocf(shape: Shape, codec: &str, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    zigzag(2, &mut out);
    avro_bytes(b"avro.schema", &mut out);
    avro_bytes(schema_json(shape).as_bytes(), &mut out);
    avro_bytes(b"avro.codec", &mut out);
    avro_bytes(codec.as_bytes(), &mut out);
    zigzag(0, &mut out);
    out.extend_from_slice(&SYNC);
    for block in blocks {
        out.extend_from_slice(block);
    }
    out
}

/// A block: record count, byte size, data, sync marker.
fn block(count: i64, data: &[u8]) -> Vec<u8> {
    block_with(count, data.len() as i64, data, &SYNC)
}

fn block_with(count: i64, size: i64, data: &[u8], sync: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zigzag(count, &mut out);
    zigzag(size, &mut out);
    out.extend_from_slice(data);
    out.extend_from_slice(sync);
    out
}

fn schema_json(shape: Shape) -> &'static str {
    match shape {
        Shape::Value => ORDERS_V1,
        Shape::RawBytes => r#""bytes""#,
        Shape::Envelope => ENVELOPE_SCHEMA,
    }
}

fn setup() -> &'static (Arc<TableMapping>, Arc<dyn SchemaRegistry>, u32) {
    static SETUP: OnceLock<(Arc<TableMapping>, Arc<dyn SchemaRegistry>, u32)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let registry = FileRegistry::from_schemas("orders-value", [ORDERS_V1]).unwrap();
        let id = registry.ids().next().unwrap();
        (
            Arc::new(TableMapping::from_history(&[ORDERS_V1]).unwrap()),
            Arc::new(registry),
            id,
        )
    })
}

/// The Avro encoding of one order under version 1, with `event_id` as given (written with the
/// `uuid` logical type taken out, so that a string that is not a UUID can be written).
fn order(index: i64, event_id: &str) -> Vec<u8> {
    static LOOSE: OnceLock<Schema> = OnceLock::new();
    let loose = LOOSE.get_or_init(|| {
        Schema::parse_str(&ORDERS_V1.replace(r#", "logicalType": "uuid""#, "")).unwrap()
    });
    assert!(!format!("{loose:?}").contains("Uuid"));
    let value = Value::Record(vec![
        ("event_id".into(), Value::String(event_id.into())),
        ("event_type".into(), Value::Enum(1, "PAID".into())),
        ("order_id".into(), Value::String(format!("o-{index}"))),
        (
            "user_id".into(),
            Value::Union(1, Box::new(Value::String("u-1".into()))),
        ),
        ("restaurant_id".into(), Value::String("r-1".into())),
        ("amount_cents".into(), Value::Long(1250 + index)),
        ("currency".into(), Value::String("EUR".into())),
        (
            "event_time".into(),
            Value::TimestampMillis(1_764_000_000_000 + index),
        ),
    ]);
    apache_avro::to_avro_datum(loose, value).unwrap()
}

fn uuid(index: i64) -> String {
    format!("00000000-0000-4000-8000-{index:012}")
}

/// Record `index` of a file of `shape` (offset `START + index`), as block data.
fn record(shape: Shape, index: i64, event_id: &str) -> Vec<u8> {
    let body = order(index, event_id);
    let mut wire = vec![0];
    wire.extend_from_slice(&setup().2.to_be_bytes());
    wire.extend_from_slice(&body);
    match shape {
        Shape::Value => body,
        Shape::RawBytes => {
            let mut out = Vec::new();
            avro_bytes(&wire, &mut out);
            out
        }
        Shape::Envelope => {
            let schema = Schema::parse_str(ENVELOPE_SCHEMA).unwrap();
            let value = Value::Record(vec![
                ("topic".into(), Value::String("orders".into())),
                ("partition".into(), Value::Int(0)),
                ("offset".into(), Value::Long(START + index)),
                (
                    "timestamp".into(),
                    Value::TimestampMillis(1_764_000_000_000),
                ),
                ("key".into(), Value::Union(0, Box::new(Value::Null))),
                (
                    "value".into(),
                    Value::Union(1, Box::new(Value::Bytes(wire))),
                ),
            ]);
            apache_avro::to_avro_datum(&schema, value).unwrap()
        }
    }
}

/// `n` good records from `first`, as block data.
fn records(shape: Shape, first: i64, n: i64) -> Vec<u8> {
    (first..first + n)
        .flat_map(|i| record(shape, i, &uuid(i)))
        .collect()
}

fn decode(bytes: Vec<u8>) -> Result<Vec<SourceBatch>, ReplayError> {
    let (mapping, registry, _) = setup();
    let partition = TopicPartition::new("orders", 0);
    let file = FileToDecode {
        key: KEY,
        partition: &partition,
        start_offset: START,
        next_start: None,
        from: i64::MIN,
        batch_rows: 3,
        limits: LIMITS,
    };
    let mut state = DecodeState::new(WireDecoder::new(mapping.clone(), registry.clone()));
    decode_file(&file, &Bytes::from(bytes), mapping, &mut state)
}

/// What a crafted object must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Rows and dead letters accounting for every record.
    Decoded,
    /// A `Corrupt` error naming the object.
    Corrupt,
    /// An `OverLimit` error naming the object and this setting.
    OverLimit(&'static str),
    /// Either of the first two (damage the framing may or may not notice).
    DecodedOrCorrupt,
}

/// The corpus for one codec and shape: (case name, object, expected outcome).
fn corpus(codec: Codec, shape: Shape) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let name = codec.name();
    let good = records(shape, 0, 4);
    let packed = codec.compress(&good);
    let mut cases = vec![
        (
            "good",
            ocf(shape, name, &[block(4, &packed)]),
            Expect::Decoded,
        ),
        ("header only", ocf(shape, name, &[]), Expect::Decoded),
        (
            "empty block data",
            ocf(shape, name, &[block(1, &[])]),
            Expect::Corrupt,
        ),
        (
            "one byte of block data",
            ocf(shape, name, &[block(1, &[0x02])]),
            Expect::Corrupt,
        ),
        (
            "three bytes of block data",
            ocf(shape, name, &[block(1, &[1, 2, 3])]),
            Expect::Corrupt,
        ),
        (
            "a declared block size of 512 MiB in a tiny file",
            ocf(
                shape,
                name,
                &[block_with(
                    1,
                    1 << 29,
                    &packed[..packed.len().min(8)],
                    &SYNC,
                )],
            ),
            Expect::Corrupt,
        ),
        (
            "a negative block size",
            ocf(shape, name, &[block_with(1, -5, &packed, &SYNC)]),
            Expect::Corrupt,
        ),
        (
            "a record count of 2^40",
            ocf(shape, name, &[block(1 << 40, &packed)]),
            Expect::Corrupt,
        ),
        (
            "more records counted than the data holds",
            ocf(shape, name, &[block(9, &packed)]),
            Expect::Corrupt,
        ),
        (
            "bytes after the counted records",
            ocf(shape, name, &[block(3, &packed)]),
            Expect::Corrupt,
        ),
        (
            "a wrong sync marker",
            ocf(
                shape,
                name,
                &[block_with(
                    4,
                    packed.len() as i64,
                    &packed,
                    b"kappa-crafted-no",
                )],
            ),
            Expect::Corrupt,
        ),
        (
            "a truncated block",
            ocf(
                shape,
                name,
                &[block(4, &packed)[..packed.len() / 2 + 2].to_vec()],
            ),
            Expect::Corrupt,
        ),
        (
            "a cut record",
            ocf(
                shape,
                name,
                &[block(4, &codec.compress(&good[..good.len() - 3]))],
            ),
            Expect::Corrupt,
        ),
        (
            "a bomb",
            ocf(shape, name, &[block(1, &codec.bomb())]),
            Expect::OverLimit("max_block_bytes"),
        ),
        (
            "blocks that inflate to more than the object may",
            ocf(
                shape,
                name,
                &(0..5)
                    .map(|i| {
                        block(
                            1,
                            &codec.compress(&pad(shape, i, (LIMITS.max_block_bytes * 3) / 4)),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            Expect::OverLimit("max_inflated_bytes"),
        ),
        (
            "an object over max_object_bytes",
            ocf(
                shape,
                name,
                &[block(1, &vec![0; LIMITS.max_object_bytes as usize])],
            ),
            Expect::OverLimit("max_object_bytes"),
        ),
        (
            "a codec Kafka Connect does not write here",
            ocf(shape, "bzip2", &[block(4, &packed)]),
            Expect::Corrupt,
        ),
    ];
    if codec != Codec::Null {
        // Damaged compressed data: a span in its middle overwritten.
        let mut damaged = packed.clone();
        let middle = damaged.len() / 2;
        for byte in damaged.iter_mut().skip(middle.saturating_sub(2)).take(4) {
            *byte ^= 0x5a;
        }
        cases.push((
            "damaged compressed data",
            ocf(shape, name, &[block(4, &damaged)]),
            Expect::DecodedOrCorrupt,
        ));
        // Compressed data cut short.
        cases.push((
            "truncated compressed data",
            ocf(shape, name, &[block(4, &packed[..packed.len() / 2])]),
            Expect::Corrupt,
        ));
    }
    cases
}

/// Record `index`, of about `size` bytes (an order with a long order id), as block data.
fn pad(shape: Shape, index: i64, size: usize) -> Vec<u8> {
    let body = order(0, &uuid(0));
    let mut data = Vec::new();
    // Replace the order id "o-0" (a 3-byte string after the 37-byte uuid and the enum index)
    // by a long one: same framing, `size` bytes.
    let long = "x".repeat(size);
    let mut padded = body[..38].to_vec();
    avro_bytes(long.as_bytes(), &mut padded);
    padded.extend_from_slice(&body[38 + 4..]);
    if shape == Shape::Value {
        return padded;
    }
    // Wrapped shapes: the wire message holds the padded body.
    let mut wire = vec![0];
    wire.extend_from_slice(&setup().2.to_be_bytes());
    wire.extend_from_slice(&padded);
    match shape {
        Shape::RawBytes => avro_bytes(&wire, &mut data),
        _ => {
            let schema = Schema::parse_str(ENVELOPE_SCHEMA).unwrap();
            let value = Value::Record(vec![
                ("topic".into(), Value::String("orders".into())),
                ("partition".into(), Value::Int(0)),
                ("offset".into(), Value::Long(START + index)),
                ("timestamp".into(), Value::TimestampMillis(0)),
                ("key".into(), Value::Union(0, Box::new(Value::Null))),
                (
                    "value".into(),
                    Value::Union(1, Box::new(Value::Bytes(wire))),
                ),
            ]);
            data = apache_avro::to_avro_datum(&schema, value).unwrap();
        }
    }
    data
}

/// Peak resident memory of this process so far (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn crafted_blocks_of_every_codec_and_shape_end_in_data_or_an_error_naming_the_object() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for codec in CODECS {
        for shape in SHAPES {
            for (case, bytes, expect) in corpus(codec, shape) {
                cases += 1;
                let at = format!("{codec:?} × {shape:?} × {case}");
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| decode(bytes)));
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        failures.push(format!("{at}: panicked"));
                        continue;
                    }
                };
                match (&outcome, expect) {
                    (Ok(batches), Expect::Decoded | Expect::DecodedOrCorrupt) => {
                        let mut next = START;
                        for batch in batches {
                            if batch.check().is_err() || batch.range.start != next {
                                failures.push(format!("{at}: bad batch {:?}", batch.range));
                            }
                            next = batch.range.end;
                            if batch.records_in
                                != (batch.num_rows() + batch.dead_letters.len()) as u64
                            {
                                failures.push(format!(
                                    "{at}: a record is neither a row nor a dead letter"
                                ));
                            }
                        }
                        if case == "good" {
                            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                            if rows != 4 {
                                failures.push(format!("{at}: {rows} rows, expected 4"));
                            }
                        }
                    }
                    (
                        Err(e @ ReplayError::Corrupt { .. }),
                        Expect::Corrupt | Expect::DecodedOrCorrupt,
                    ) if e.to_string().contains(KEY) => {}
                    (Err(e @ ReplayError::OverLimit { .. }), Expect::OverLimit(setting))
                        if e.to_string().contains(KEY) && e.to_string().contains(setting) => {}
                    (outcome, expect) => failures.push(format!(
                        "{at}: expected {expect:?}, got {}",
                        match outcome {
                            Ok(b) => format!("{} batches", b.len()),
                            Err(e) => format!("{e:?}"),
                        }
                    )),
                }
            }
        }
    }
    assert!(cases >= 4 * 3 * 17, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if let Some(peak) = peak_rss() {
        assert!(
            peak < MAX_PEAK_RSS,
            "peak RSS {} MiB: a bomb was inflated (limit {} MiB)",
            peak >> 20,
            MAX_PEAK_RSS >> 20
        );
    }
}

/// The worst case for decoding a group whole first: every record of a value block is bad (a
/// UUID that is not one, or an order id that is not UTF-8). Each is a dead letter naming its
/// field, in offset order, and nothing is a row.
#[test]
fn a_block_of_only_bad_value_records_is_all_dead_letters_naming_the_field() {
    let mut data = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300i64 {
        if i % 2 == 0 {
            data.extend(record(Shape::Value, i, &format!("bad-{i}")));
            expected.push("field event_id");
        } else {
            // The order id "o-<i>" follows the 37-byte uuid and the enum index: its first byte
            // becomes 0xff, which no UTF-8 string starts with.
            let mut body = order(i, &uuid(i));
            assert_eq!(body[39], b'o');
            body[39] = 0xff;
            data.extend(body);
            expected.push("field order_id");
        }
    }
    for codec in CODECS {
        let bytes = ocf(
            Shape::Value,
            codec.name(),
            &[block(300, &codec.compress(&data))],
        );
        let batches = decode(bytes).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 0, "{codec:?}");
        let letters: Vec<_> = batches
            .iter()
            .flat_map(|b| b.dead_letters.clone())
            .collect();
        assert_eq!(
            letters.iter().map(|l| l.offset).collect::<Vec<_>>(),
            (START..START + 300).collect::<Vec<_>>(),
            "{codec:?}"
        );
        for (letter, field) in letters.iter().zip(&expected) {
            assert_eq!(letter.kind, DeadLetterKind::Undecodable, "{codec:?}");
            assert!(
                letter.message.contains(field),
                "{codec:?}: {}",
                letter.message
            );
        }
    }
}

#[test]
fn a_bad_uuid_is_one_dead_letter_naming_the_field_in_every_shape_and_codec() {
    for codec in CODECS {
        for shape in SHAPES {
            let mut data = records(shape, 0, 2);
            data.extend(record(shape, 2, "not-a-uuid"));
            data.extend(records(shape, 3, 2));
            let bytes = ocf(shape, codec.name(), &[block(5, &codec.compress(&data))]);
            let at = format!("{codec:?} × {shape:?}");
            let batches = decode(bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let offsets: Vec<i64> = batches.iter().flat_map(|b| b.offsets.clone()).collect();
            let letters: Vec<_> = batches
                .iter()
                .flat_map(|b| b.dead_letters.clone())
                .collect();
            assert_eq!(rows, 4, "{at}");
            assert_eq!(offsets, [100, 101, 103, 104], "{at}");
            assert_eq!(letters.len(), 1, "{at}");
            let letter = &letters[0];
            assert_eq!(letter.offset, 102, "{at}");
            assert_eq!(letter.kind, DeadLetterKind::Undecodable, "{at}");
            assert_eq!(letter.object_key.as_deref(), Some(KEY), "{at}");
            // A value record names the field and the value; a wire-format message says what
            // arrow-avro says (kappa-schema's wire decoder).
            let named = if shape == Shape::Value {
                letter.message.contains("field event_id") && letter.message.contains("not-a-uuid")
            } else {
                letter.message.contains("uuid")
            };
            assert!(named, "{at}: {}", letter.message);
            // The raw bytes are the record as archived: the Avro body, or the wire message.
            let body = order(2, "not-a-uuid");
            assert!(letter.raw.ends_with(&body), "{at}");
        }
    }
}
