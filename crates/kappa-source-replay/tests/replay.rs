//! The replay source over archives written by kappa-synth, in memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use kappa_core::{Source, SourcePosition, TopicPartition};
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
    async fn source(&self, filter: PartitionFilter) -> ArchiveSource {
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
            batch_rows: 1000,
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
    assert_eq!(t.next.get(&1).copied(), Some(f.expected.next_offsets[1]));
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
