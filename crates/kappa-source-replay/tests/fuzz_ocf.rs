//! Fuzzed archive files: valid OCF files from kappa-synth (every record shape and codec), then
//! mutated — random bytes, a random tail after the header, truncation, bit flips, overwritten
//! spans, a wrong sync marker, a wrong codec name. Decoding must never panic, and whatever is
//! bad must be reported where it was: as dead letters carrying the object key, or as an error
//! naming the object key. Every batch that comes out keeps the source invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use kappa_core::TopicPartition;
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping, WireDecoder};
use kappa_source_replay::ArchiveLimits;
use kappa_source_replay::archive::decode::{DecodeState, FileToDecode, decode_file};
use kappa_synth::{
    ArchiveOptions, Codec, History, HistorySpec, Layout, ORDERS_V1, ORDERS_V2, RecordShape,
    write_archive,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;
use proptest::sample::Index;

/// One valid archive file.
#[derive(Debug)]
struct Sample {
    key: String,
    start_offset: i64,
    bytes: Vec<u8>,
}

/// Two files of each (record shape, codec), v1 and v2 records mixed, with undecodable messages
/// in the raw-bytes and envelope shapes.
fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut samples = Vec::new();
            for shape in [
                RecordShape::Value,
                RecordShape::RawBytes,
                RecordShape::Envelope,
            ] {
                for codec in [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstd] {
                    let store = InMemory::new();
                    let prefix = Path::from(format!("{shape:?}-{codec:?}"));
                    let spec = HistorySpec {
                        partitions: 1,
                        undecodable: 4,
                        v2_from: Some(0.5),
                        ..HistorySpec::new(120)
                    };
                    let options = ArchiveOptions {
                        layout: Layout::Default,
                        shape,
                        codec,
                        flush_size: 40,
                    };
                    write_archive(&store, &prefix, History::new(spec).unwrap(), &options)
                        .await
                        .unwrap();
                    let mut keys: Vec<Path> = store
                        .list(Some(&prefix))
                        .map_ok(|m| m.location)
                        .try_collect()
                        .await
                        .unwrap();
                    keys.sort();
                    for key in keys.into_iter().take(2) {
                        let bytes = store.get(&key).await.unwrap().bytes().await.unwrap();
                        let start_offset = key
                            .filename()
                            .and_then(|f| f.trim_end_matches(".avro").rsplit('+').next())
                            .and_then(|o| o.parse().ok())
                            .unwrap();
                        samples.push(Sample {
                            key: key.to_string(),
                            start_offset,
                            bytes: bytes.to_vec(),
                        });
                    }
                }
            }
            samples
        })
    })
}

fn mapping_and_registry() -> &'static (Arc<TableMapping>, Arc<dyn SchemaRegistry>) {
    static SETUP: OnceLock<(Arc<TableMapping>, Arc<dyn SchemaRegistry>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        (
            Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap()),
            Arc::new(FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap()),
        )
    })
}

/// How a valid file is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    /// The whole file replaced by random bytes.
    Random(Vec<u8>),
    /// The file cut at a point and continued with random bytes.
    RandomTail(Index, Vec<u8>),
    /// The file cut at a point.
    Truncate(Index),
    /// Bits flipped at random places.
    FlipBits(Vec<(Index, u8)>),
    /// A span overwritten with random bytes.
    Overwrite(Index, Vec<u8>),
    /// One occurrence of the sync marker (in the header or after a block) changed.
    WrongSync(Index, u8),
    /// The header's `avro.codec` replaced by another name.
    WrongCodec(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Mutation::Random),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(at, tail)| Mutation::RandomTail(at, tail)),
        any::<Index>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<Index>(), 0u8..8), 1..8).prop_map(Mutation::FlipBits),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::Overwrite(at, bytes)),
        (any::<Index>(), 1u8..=255).prop_map(|(at, xor)| Mutation::WrongSync(at, xor)),
        prop::sample::select(vec![
            "null",
            "deflate",
            "snappy",
            "zstandard",
            "bzip2",
            "xz",
            "lz4",
            "",
            "bogus-codec",
        ])
        .prop_map(Mutation::WrongCodec),
    ]
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len())
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

fn apply(file: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut out = file.to_vec();
    match mutation {
        Mutation::Random(bytes) => out = bytes.clone(),
        Mutation::RandomTail(at, tail) => {
            out.truncate(at.index(file.len()));
            out.extend_from_slice(tail);
        }
        Mutation::Truncate(at) => out.truncate(at.index(file.len())),
        Mutation::FlipBits(flips) => {
            for (at, bit) in flips {
                out[at.index(file.len())] ^= 1 << bit;
            }
        }
        Mutation::Overwrite(at, bytes) => {
            let start = at.index(file.len());
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = out.get_mut(start + i) {
                    *slot = *b;
                }
            }
        }
        Mutation::WrongSync(at, xor) => {
            // The file ends with a sync marker; it also closes the header and every block.
            let sync = file[file.len() - 16..].to_vec();
            let places = find_all(file, &sync);
            let place = places[at.index(places.len())];
            out[place + at.index(16)] ^= xor;
        }
        Mutation::WrongCodec(name) => {
            // Header metadata: key "avro.codec" (length byte 20), then the value's zigzag length
            // and bytes.
            if let Some(&at) = find_all(file, b"\x14avro.codec").first() {
                let value = at + 11;
                let old_len = usize::from(file[value] >> 1);
                let mut replacement = vec![(name.len() as u8) << 1];
                replacement.extend_from_slice(name.as_bytes());
                out.splice(value..value + 1 + old_len, replacement);
            }
        }
    }
    out
}

proptest! {
    // 512 cases by default; `PROPTEST_CASES=100000` digs deeper.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_archive_files_never_panic_and_name_their_key(
        which in any::<Index>(),
        mutation in mutation(),
        batch_rows in 1usize..64,
    ) {
        let sample = &samples()[which.index(samples().len())];
        let (mapping, registry) = mapping_and_registry();
        let bytes = Bytes::from(apply(&sample.bytes, &mutation));
        let partition = TopicPartition::new("orders", 0);
        let file = FileToDecode {
            key: &sample.key,
            partition: &partition,
            start_offset: sample.start_offset,
            next_start: None,
            from: i64::MIN,
            batch_rows,
            limits: ArchiveLimits::default(),
        };
        // The reader's state lives from file to file: it first decodes the pristine file, then
        // the damaged one, then the pristine one again, which must give what a fresh state gives.
        let mut state = DecodeState::new(WireDecoder::new(mapping.clone(), registry.clone()));
        let pristine = Bytes::from(sample.bytes.clone());
        let summary = |batches: &[kappa_core::SourceBatch]| {
            batches
                .iter()
                .map(|b| {
                    let letters: Vec<_> = b.dead_letters.iter().map(|d| (d.offset, d.kind)).collect();
                    (b.range, b.records.clone(), b.offsets.clone(), letters)
                })
                .collect::<Vec<_>>()
        };
        let fresh = summary(&decode_file(&file, &pristine, mapping, &mut state).unwrap());
        let damaged = decode_file(&file, &bytes, mapping, &mut state);
        let after = summary(&decode_file(&file, &pristine, mapping, &mut state).unwrap());
        prop_assert_eq!(&fresh, &after, "a damaged file changed how the next one decodes");
        match damaged {
            Ok(batches) => {
                let mut next = sample.start_offset;
                for batch in &batches {
                    prop_assert_eq!(batch.check(), Ok(()));
                    prop_assert_eq!(batch.range.start, next, "batches are contiguous");
                    next = batch.range.end;
                    prop_assert_eq!(
                        batch.records_in,
                        (batch.num_rows() + batch.dead_letters.len()) as u64,
                        "every record read is a row or a dead letter"
                    );
                    for letter in &batch.dead_letters {
                        prop_assert_eq!(letter.object_key.as_deref(), Some(sample.key.as_str()));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains(&sample.key), "{} does not name {}", message, sample.key);
            }
        }
    }
}

#[test]
fn the_samples_cover_every_shape_and_decode_cleanly() {
    let (mapping, registry) = mapping_and_registry();
    assert_eq!(samples().len(), 24);
    let mut dead = 0;
    for sample in samples() {
        let partition = TopicPartition::new("orders", 0);
        let file = FileToDecode {
            key: &sample.key,
            partition: &partition,
            start_offset: sample.start_offset,
            next_start: None,
            from: i64::MIN,
            batch_rows: 16,
            limits: ArchiveLimits::default(),
        };
        let mut state = DecodeState::new(WireDecoder::new(mapping.clone(), registry.clone()));
        let batches = decode_file(
            &file,
            &Bytes::from(sample.bytes.clone()),
            mapping,
            &mut state,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", sample.key));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{}", sample.key);
        dead += batches.iter().map(|b| b.dead_letters.len()).sum::<usize>();
        // The codec mutation finds the header's codec entry in every file.
        assert!(
            find_all(&sample.bytes, b"\x14avro.codec").len() == 1,
            "{}",
            sample.key
        );
    }
    assert!(dead > 0, "the undecodable messages reach the wire path");
}
