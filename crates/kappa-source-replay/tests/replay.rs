//! The replay source over archives written by kappa-synth, in memory.

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
        mapping: Arc::new(TableMapping::from_avro_json(ORDERS_V2).unwrap()),
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
