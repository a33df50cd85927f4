//! The replay source over archives written by kappa-synth, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kappa_core::{DeadLetterKind, Source, SourcePosition, TopicPartition};
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping};
use kappa_source_replay::{ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow};
use kappa_synth::{
    ArchiveOptions, Codec, History, HistorySpec, Layout, ORDERS_V1, ORDERS_V2, RecordShape,
    write_archive,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

struct Fixture {
    store: Arc<dyn ObjectStore>,
    expected: kappa_synth::Expected,
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
}

async fn fixture(spec: HistorySpec, options: ArchiveOptions) -> Fixture {
    let store = Arc::new(InMemory::new());
    let summary = write_archive(
        store.as_ref(),
        &Path::from("archive"),
        History::new(spec).unwrap(),
        &options,
    )
    .await
    .unwrap();
    Fixture {
        store,
        expected: summary.expected,
        mapping: Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap()),
        registry: Arc::new(
            FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap(),
        ),
    }
}

impl Fixture {
    /// The object keys of `partition`'s files, in offset order.
    async fn partition_keys(&self, partition: i32) -> Vec<Path> {
        use futures::TryStreamExt;
        let prefix = Path::from(format!("archive/orders/partition={partition}"));
        let mut keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    async fn source(&self, filter: PartitionFilter) -> ArchiveSource {
        self.source_with(filter, 1000).await
    }

    async fn source_with(&self, filter: PartitionFilter, batch_rows: usize) -> ArchiveSource {
        let plan = ArchivePlan::list(
            self.store.as_ref(),
            "memory://",
            &Path::from("archive"),
            "orders",
            &filter,
            &TimeWindow::default(),
        )
        .await
        .unwrap();
        let options = ReplayOptions {
            batch_rows,
            ..ReplayOptions::default()
        };
        ArchiveSource::new(
            self.store.clone(),
            plan,
            options,
            self.mapping.clone(),
            self.registry.clone(),
        )
    }
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    records_in: u64,
    rows: u64,
    dead: u64,
    next: std::collections::BTreeMap<i32, i64>,
    letters: Vec<kappa_core::DeadLetter>,
}

async fn drain(mut source: ArchiveSource) -> Totals {
    let mut totals = Totals::default();
    while let Some(batch) = source.next_batch().await.unwrap() {
        batch.check().unwrap();
        let next = totals
            .next
            .entry(batch.partition.partition)
            .or_insert(batch.range.start);
        assert_eq!(
            *next, batch.range.start,
            "batches of a partition are contiguous"
        );
        *next = batch.range.end;
        totals.records_in += batch.records_in;
        totals.rows += batch.num_rows() as u64;
        totals.dead += batch.dead_letters.len() as u64;
        totals.letters.extend(batch.dead_letters);
    }
    totals
}

#[tokio::test]
async fn raw_bytes_archives_account_for_every_record() {
    for codec in [Codec::Null, Codec::Deflate, Codec::Snappy, Codec::Zstd] {
        let options = ArchiveOptions {
            codec,
            flush_size: 700,
            layout: Layout::Hourly,
            ..ArchiveOptions::default()
        };
        let f = fixture(HistorySpec::new(6_000), options).await;
        let t = drain(f.source(PartitionFilter::All).await).await;
        assert_eq!(t.records_in, f.expected.messages, "{codec:?}");
        assert_eq!(t.dead, f.expected.undecodable, "{codec:?}");
        assert_eq!(t.rows, f.expected.messages - f.expected.undecodable);
        let next: Vec<i64> = t.next.values().copied().collect();
        assert_eq!(next, f.expected.next_offsets);
    }
}

#[tokio::test]
async fn seek_starts_mid_file_and_a_partition_filter_selects() {
    let options = ArchiveOptions {
        flush_size: 500,
        shape: RecordShape::Value,
        ..ArchiveOptions::default()
    };
    let f = fixture(HistorySpec::new(4_000), options).await;
    let mut source = f.source(PartitionFilter::Only([1].into())).await;
    assert_eq!(source.partitions(), vec![TopicPartition::new("orders", 1)]);
    let position: SourcePosition = [(TopicPartition::new("orders", 1), 777)]
        .into_iter()
        .collect();
    source.seek(&position).await.unwrap();
    let first = source.next_batch().await.unwrap().unwrap();
    assert_eq!(first.range.start, 777);
    assert_eq!(first.offsets.first(), Some(&777));
    let t = drain(source).await;
    // The first batch may be the whole rest of the partition (small files are merged).
    let end = t.next.get(&1).copied().unwrap_or(first.range.end);
    assert_eq!(end, f.expected.next_offsets[1]);
}

#[tokio::test]
async fn a_corrupt_file_is_an_error_naming_its_key() {
    let f = fixture(
        HistorySpec::new(2_000),
        ArchiveOptions {
            layout: Layout::Default,
            ..ArchiveOptions::default()
        },
    )
    .await;
    let key = Path::from("archive/orders/partition=0/orders+0+0000100000.avro");
    object_store::ObjectStoreExt::put(f.store.as_ref(), &key, b"Obj\x01garbage".to_vec().into())
        .await
        .unwrap();
    let mut source = f.source(PartitionFilter::All).await;
    let err = loop {
        match source.next_batch().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the corrupt file was not noticed"),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("orders+0+0000100000.avro"),
        "{err}"
    );
}

const ORDERS_V3_BREAKING: &str =
    include_str!("../../kappa-schema/tests/data/orders-v3-breaking.avsc");

/// An OCF file of `n` orders-v3-breaking value records (`amount_cents` a string of digits, which
/// a cast to the table's long would silently accept, and a `region` the table does not have).
fn v3_file(n: usize) -> (apache_avro::Schema, Vec<u8>) {
    use apache_avro::types::Value;
    let schema = apache_avro::Schema::parse_str(ORDERS_V3_BREAKING).unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    for i in 0..n {
        let record = Value::Record(vec![
            (
                "event_id".into(),
                Value::Uuid(uuid::Uuid::from_u128(i as u128)),
            ),
            ("event_type".into(), Value::Enum(1, "PAID".into())),
            ("order_id".into(), Value::String(format!("o-{i}"))),
            ("user_id".into(), Value::Union(0, Box::new(Value::Null))),
            ("restaurant_id".into(), Value::String("r-1".into())),
            (
                "amount_cents".into(),
                Value::String(format!("{}", 1000 + i)),
            ),
            ("currency".into(), Value::String("EUR".into())),
            (
                "event_time".into(),
                Value::TimestampMillis(1_793_491_200_000),
            ),
            ("region".into(), Value::String("eu".into())),
        ]);
        writer.append_value_ref(&record).unwrap();
    }
    let bytes = writer.into_inner().unwrap();
    (schema, bytes)
}

#[tokio::test]
async fn a_value_file_with_an_unreadable_writer_schema_is_dead_lettered_and_replay_goes_on() {
    let options = ArchiveOptions {
        flush_size: 300,
        shape: RecordShape::Value,
        ..ArchiveOptions::default()
    };
    let f = fixture(HistorySpec::new(3_000), options).await;
    // Replace the second file of partition 0 by an orders-v3-breaking file with as many records,
    // so every offset stays where it was and files follow it.
    let keys = f.partition_keys(0).await;
    assert!(keys.len() >= 3, "{keys:?}");
    let replaced = keys[1].clone();
    let original = object_bytes(f.store.as_ref(), &replaced).await;
    let n = apache_avro::Reader::new(&original[..]).unwrap().count();
    let (v3, bytes) = v3_file(n);
    object_store::ObjectStoreExt::put(f.store.as_ref(), &replaced, bytes.into())
        .await
        .unwrap();

    let t = drain(f.source(PartitionFilter::All).await).await;
    assert_eq!(t.records_in, f.expected.messages);
    assert_eq!(
        t.dead, n as u64,
        "every record of the v3 file, nothing else"
    );
    assert_eq!(t.rows, f.expected.messages - n as u64);
    let next: Vec<i64> = t.next.values().copied().collect();
    assert_eq!(next, f.expected.next_offsets, "later files were read");
    let start = start_offset(&replaced);
    let offsets: Vec<i64> = t.letters.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, (start..start + n as i64).collect::<Vec<_>>());
    for (i, letter) in t.letters.iter().enumerate() {
        assert_eq!(letter.kind, DeadLetterKind::UnmappableSchema);
        assert_eq!(letter.object_key.as_deref(), Some(replaced.as_ref()));
        // `region` is a writer-only field (ignored, as Avro resolution does); `amount_cents` is
        // the breaking change for this reader.
        for needle in [replaced.as_ref(), "amount_cents", "TYPE_MISMATCH"] {
            assert!(letter.message.contains(needle), "{}", letter.message);
        }
        // The raw bytes are the record as written, readable with the file's schema.
        let value = apache_avro::from_avro_datum(&v3, &mut &letter.raw[..], None).unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record: {value:?}");
        };
        assert_eq!(
            fields[2].1,
            apache_avro::types::Value::String(format!("o-{i}"))
        );
    }
}

/// Kafka Connect rewrites a range after a task restart: `+0` holds offsets 0–99 and `+75` holds
/// 75–149 (the same records again from 75 on). Each offset must be emitted once.
#[tokio::test]
async fn overlapping_files_emit_each_offset_once() {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    for shape in [RecordShape::RawBytes, RecordShape::Value] {
        let spec = || HistorySpec::new(3_000);
        let options = |flush_size| ArchiveOptions {
            flush_size,
            shape,
            ..ArchiveOptions::default()
        };
        let whole = fixture(spec(), options(100)).await;
        let rewritten = fixture(spec(), options(75)).await;
        // The first file of each partition from the 100-record layout, every later one from the
        // 75-record layout: 0–99, then 75–149, 150–224, ...
        let store = Arc::new(InMemory::new());
        let mut overlapping = 0;
        for (source, first) in [(&whole, true), (&rewritten, false)] {
            let objects: Vec<_> = source.store.list(None).try_collect().await.unwrap();
            for object in objects {
                if (start_offset(&object.location) == 0) != first {
                    continue;
                }
                overlapping += usize::from(start_offset(&object.location) == 75);
                let bytes = source.store.get(&object.location).await.unwrap();
                let bytes = bytes.bytes().await.unwrap();
                store.put(&object.location, bytes.into()).await.unwrap();
            }
        }
        assert!(overlapping > 0, "the archive has overlapping files");
        let f = Fixture { store, ..whole };
        let t = drain(f.source(PartitionFilter::All).await).await;
        assert_eq!(t.records_in, f.expected.messages, "{shape:?}");
        assert_eq!(
            t.rows,
            f.expected.messages - f.expected.undecodable,
            "{shape:?}"
        );
        let next: Vec<i64> = t.next.values().copied().collect();
        assert_eq!(next, f.expected.next_offsets, "{shape:?}");
    }
}

#[tokio::test]
async fn a_value_the_table_cannot_hold_dead_letters_its_record_and_replay_goes_on() {
    let options = ArchiveOptions {
        flush_size: 300,
        shape: RecordShape::Value,
        ..ArchiveOptions::default()
    };
    let f = fixture(HistorySpec::new(3_000), options).await;
    // Rewrite the second file of partition 0 with one record's event time in nanoseconds: it
    // overflows the table's microseconds.
    let keys = f.partition_keys(0).await;
    let rewritten = keys[1].clone();
    let original = object_bytes(f.store.as_ref(), &rewritten).await;
    let reader = apache_avro::Reader::new(&original[..]).unwrap();
    let schema = reader.writer_schema().clone();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    let mut nanos = None;
    let mut order_id = None;
    for (i, value) in reader.enumerate() {
        let apache_avro::types::Value::Record(mut fields) = value.unwrap() else {
            panic!("not a record");
        };
        if i == 5 {
            for (name, field) in fields.iter_mut() {
                match (name.as_str(), &*field) {
                    ("event_time", apache_avro::types::Value::TimestampMillis(ms)) => {
                        nanos = Some(ms * 1_000_000);
                        *field = apache_avro::types::Value::TimestampMillis(ms * 1_000_000);
                    }
                    ("order_id", apache_avro::types::Value::String(id)) => {
                        order_id = Some(id.clone())
                    }
                    _ => {}
                }
            }
        }
        writer
            .append_value_ref(&apache_avro::types::Value::Record(fields))
            .unwrap();
    }
    let (nanos, order_id) = (nanos.unwrap(), order_id.unwrap());
    object_store::ObjectStoreExt::put(
        f.store.as_ref(),
        &rewritten,
        writer.into_inner().unwrap().into(),
    )
    .await
    .unwrap();

    let t = drain(f.source(PartitionFilter::All).await).await;
    assert_eq!(t.records_in, f.expected.messages);
    assert_eq!(t.rows + t.dead, t.records_in);
    let next: Vec<i64> = t.next.values().copied().collect();
    assert_eq!(next, f.expected.next_offsets, "later files were read");
    let start = start_offset(&rewritten);
    let letters: Vec<&kappa_core::DeadLetter> = t
        .letters
        .iter()
        .filter(|d| d.kind == DeadLetterKind::Unconvertible)
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = letters[0];
    assert_eq!(letter.offset, start + 5);
    assert_eq!(letter.object_key.as_deref(), Some(rewritten.as_ref()));
    assert!(
        letter.message.contains("event_time") && letter.message.contains(&nanos.to_string()),
        "{}",
        letter.message
    );
    // The raw bytes are the record as written, readable with the file's schema.
    let value = apache_avro::from_avro_datum(&schema, &mut &letter.raw[..], None).unwrap();
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("not a record: {value:?}");
    };
    assert!(fields.contains(&(
        "order_id".to_string(),
        apache_avro::types::Value::String(order_id)
    )));
}

/// The start offset in an archive object's key (`<topic>+<partition>+<offset>.avro`).
fn start_offset(key: &Path) -> i64 {
    let name = key.filename().unwrap().trim_end_matches(".avro");
    name.rsplit('+').next().unwrap().parse().unwrap()
}

/// The bytes of the object at `key`.
async fn object_bytes(store: &dyn ObjectStore, key: &Path) -> bytes::Bytes {
    object_store::ObjectStoreExt::get(store, key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// The `event_id` of every record of `key`'s file, in order.
async fn event_ids(store: &dyn ObjectStore, key: &Path) -> Vec<String> {
    let bytes = object_bytes(store, key).await;
    apache_avro::Reader::new(&bytes[..])
        .unwrap()
        .map(|value| {
            let apache_avro::types::Value::Record(fields) = value.unwrap() else {
                panic!("not a record");
            };
            let (_, id) = fields.into_iter().find(|(n, _)| n == "event_id").unwrap();
            match id {
                apache_avro::types::Value::String(id) => id,
                apache_avro::types::Value::Uuid(id) => id.to_string(),
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// The `event_id` of each row of `batch`, by offset.
fn ids_by_offset(batch: &kappa_core::SourceBatch) -> Vec<(i64, String)> {
    let column = batch
        .records
        .column_by_name("event_id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    batch
        .offsets
        .iter()
        .enumerate()
        .map(|(row, offset)| (*offset, column.value(row).to_string()))
        .collect()
}

#[tokio::test]
async fn value_files_decoded_in_runs_give_each_record_once_around_bad_ones() {
    // Value records of consecutive files go into one batch across file boundaries (and a file
    // can be split between two batches); a bad record makes its group be decoded again file by
    // file. Crafted cases: files of 1 to 1,000 records, batches of 1 to 4,096 rows, bad records
    // (an event_id that is not a UUID, or not UTF-8) anywhere, including in the part of a file
    // a full batch already took. Each record must come out once, as a row with its own values
    // or as a dead letter, in contiguous ranges.
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for case in 0..10usize {
        let flush_size = [1, 7, 300, 1000, 999][case % 5];
        let batch_rows = [1, 10, 1000, 4096, 1500][(case + case / 5) % 5];
        let events = if flush_size == 1 {
            400
        } else {
            3_000 + random(2_000)
        };
        let options = ArchiveOptions {
            flush_size,
            shape: RecordShape::Value,
            codec: Codec::Null,
            ..ArchiveOptions::default()
        };
        let f = fixture(HistorySpec::new(events), options).await;
        // What each record of partition 0 is, from the files themselves.
        let keys = f.partition_keys(0).await;
        let mut ids: std::collections::BTreeMap<i64, String> = Default::default();
        let mut files = Vec::new();
        for key in &keys {
            let start = start_offset(key);
            let file_ids = event_ids(f.store.as_ref(), key).await;
            for (i, id) in file_ids.iter().enumerate() {
                ids.insert(start + i as i64, id.clone());
            }
            files.push((key.clone(), start, file_ids.len()));
        }
        // Damage 0 to 3 records' event_id in place (the codec is null): framing intact.
        let mut bad = std::collections::BTreeSet::new();
        for damage in 0..random(4) {
            let (key, start, count) = files[random(files.len() as u64) as usize].clone();
            let at = random(count as u64) as i64;
            let id = ids[&(start + at)].clone();
            let mut bytes = object_bytes(f.store.as_ref(), &key).await.to_vec();
            let found = bytes
                .windows(id.len())
                .position(|w| w == id.as_bytes())
                .unwrap();
            bytes[found + 3] = if damage % 2 == 0 { b'z' } else { 0xFF };
            object_store::ObjectStoreExt::put(f.store.as_ref(), &key, bytes.into())
                .await
                .unwrap();
            bad.insert(start + at);
        }
        let context =
            format!("case {case}: files of {flush_size}, batches of {batch_rows}, bad {bad:?}");

        let mut source = f.source_with(PartitionFilter::All, batch_rows).await;
        let mut next = std::collections::BTreeMap::new();
        let mut seen = std::collections::BTreeMap::new();
        let mut letters = std::collections::BTreeSet::new();
        while let Some(batch) = source.next_batch().await.unwrap() {
            batch.check().unwrap();
            let p = batch.partition.partition;
            let expected_start = *next.entry(p).or_insert(batch.range.start);
            assert_eq!(expected_start, batch.range.start, "{context}: contiguous");
            next.insert(p, batch.range.end);
            if p != 0 {
                continue;
            }
            for letter in &batch.dead_letters {
                assert_eq!(letter.kind, DeadLetterKind::Undecodable, "{context}");
                assert!(
                    letter.message.contains("event_id"),
                    "{context}: {}",
                    letter.message
                );
                assert!(
                    letters.insert(letter.offset),
                    "{context}: {} twice",
                    letter.offset
                );
            }
            for (offset, id) in ids_by_offset(&batch) {
                assert!(
                    seen.insert(offset, id).is_none(),
                    "{context}: {offset} twice"
                );
            }
        }
        assert_eq!(
            letters, bad,
            "{context}: the dead letters are the damaged records"
        );
        let good: std::collections::BTreeMap<i64, String> = ids
            .into_iter()
            .filter(|(offset, _)| !bad.contains(offset))
            .collect();
        assert_eq!(
            seen, good,
            "{context}: every other record is a row with its values"
        );
        // Value records' offsets are their file's start plus their index (the history's gaps
        // are not in such files): the last file's last record + 1 ends the partition.
        let (_, start, count) = files.last().unwrap();
        assert_eq!(next.get(&0), Some(&(start + *count as i64)), "{context}");
    }
}

#[tokio::test]
async fn uuid_text_that_is_not_canonical_comes_out_canonical_in_runs_and_alone() {
    // Runs of value files read top-level `uuid` strings as text and keep a batch only when the
    // text is canonical (lower-case, hyphenated): anything else must come out as the exact
    // decoder writes it, parsed and formatted. Here one file's ids are all upper case and one
    // record of a later file is in mixed case (same length, so the files stay well framed);
    // every row must carry its id in lower case, and nothing is a dead letter.
    for batch_rows in [1, 250, 1000, 4096] {
        let options = ArchiveOptions {
            flush_size: 300,
            shape: RecordShape::Value,
            codec: Codec::Null,
            ..ArchiveOptions::default()
        };
        let f = fixture(HistorySpec::new(5_000), options).await;
        let keys = f.partition_keys(0).await;
        assert!(keys.len() >= 5, "{keys:?}");
        let mut expected: std::collections::BTreeMap<i64, String> = Default::default();
        for (n, key) in keys.iter().enumerate() {
            let start = start_offset(key);
            let ids = event_ids(f.store.as_ref(), key).await;
            let mut bytes = object_bytes(f.store.as_ref(), key).await.to_vec();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(id, &id.to_lowercase(), "the generator writes canonical ids");
                expected.insert(start + i as i64, id.clone());
                let changed = match n {
                    1 => id.to_uppercase(),
                    3 if i == 17 => id
                        .chars()
                        .enumerate()
                        .map(|(j, c)| {
                            if j % 2 == 0 {
                                c.to_ascii_uppercase()
                            } else {
                                c
                            }
                        })
                        .collect(),
                    _ => continue,
                };
                assert_ne!(&changed, id, "file {n}, record {i}: changed");
                let at = bytes
                    .windows(id.len())
                    .position(|w| w == id.as_bytes())
                    .unwrap();
                bytes[at..at + id.len()].copy_from_slice(changed.as_bytes());
            }
            object_store::ObjectStoreExt::put(f.store.as_ref(), key, bytes.into())
                .await
                .unwrap();
        }

        let mut source = f
            .source_with(PartitionFilter::Only([0].into()), batch_rows)
            .await;
        let mut seen = std::collections::BTreeMap::new();
        while let Some(batch) = source.next_batch().await.unwrap() {
            batch.check().unwrap();
            assert!(batch.dead_letters.is_empty(), "{:?}", batch.dead_letters);
            seen.extend(ids_by_offset(&batch));
        }
        assert_eq!(seen, expected, "batches of {batch_rows}");
    }
}
