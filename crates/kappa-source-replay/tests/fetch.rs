//! How the replay fetches archive objects: many in flight to hide an object store's request
//! latency, never more than `[replay] fetch_concurrency`, never more bytes waiting than
//! `fetch_buffer_bytes` allows (down to one object at a time, without a deadlock between the
//! partitions' readers), and small files' records merged into batches of about `batch_rows`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use kappa_core::Source;
use kappa_schema::{FileRegistry, TableMapping};
use kappa_source_replay::{ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow};
use kappa_synth::{
    ArchiveOptions, Codec, History, HistorySpec, Layout, ORDERS_V1, ORDERS_V2, RecordShape,
    write_archive,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// An in-memory store whose reads take `delay` and that counts them in flight (from the request
/// until the body is returned).
#[derive(Debug)]
struct CountingStore {
    inner: InMemory,
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
    gets: AtomicUsize,
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.gets.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let result = self.inner.get_opts(location, options).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

struct Replayed {
    batches: Vec<kappa_core::SourceBatch>,
    gets: usize,
    most_in_flight: usize,
}

/// 9,000 events as Kafka Connect writes them (value records, deflate, 100 per file: about 90
/// objects over 3 partitions), replayed with `options` from a store whose reads take 5 ms.
async fn replay(options: ReplayOptions) -> (Replayed, kappa_synth::Expected) {
    replay_from(options, Duration::from_millis(5)).await
}

/// [`replay`] from a store whose reads take `delay`.
async fn replay_from(options: ReplayOptions, delay: Duration) -> (Replayed, kappa_synth::Expected) {
    let store = Arc::new(CountingStore {
        inner: InMemory::new(),
        delay,
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        gets: AtomicUsize::new(0),
    });
    let archive = ArchiveOptions {
        layout: Layout::Default,
        shape: RecordShape::Value,
        codec: Codec::Deflate,
        flush_size: 100,
    };
    let summary = write_archive(
        store.as_ref(),
        &Path::from("archive"),
        History::new(HistorySpec::new(9_000)).unwrap(),
        &archive,
    )
    .await
    .unwrap();
    let plan = ArchivePlan::list(
        store.as_ref(),
        "memory://",
        &Path::from("archive"),
        "orders",
        &PartitionFilter::All,
        &TimeWindow::default(),
    )
    .await
    .unwrap();
    let mut source = ArchiveSource::new(
        store.clone(),
        plan,
        options,
        Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap()),
        Arc::new(FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap()),
    );
    let mut batches = Vec::new();
    while let Some(batch) = source.next_batch().await.unwrap() {
        batches.push(batch);
    }
    let replayed = Replayed {
        batches,
        gets: store.gets.load(Ordering::SeqCst),
        most_in_flight: store.most.load(Ordering::SeqCst),
    };
    (replayed, summary.expected)
}

/// Every record is accounted for once, each partition's batches are contiguous and end at the
/// archive's next offset.
fn assert_complete(replayed: &Replayed, expected: &kappa_synth::Expected) {
    let mut next = std::collections::BTreeMap::new();
    let mut records = 0;
    for batch in &replayed.batches {
        batch.check().unwrap();
        let at = next
            .entry(batch.partition.partition)
            .or_insert(batch.range.start);
        assert_eq!(
            *at, batch.range.start,
            "batches of a partition are contiguous"
        );
        *at = batch.range.end;
        assert_eq!(
            batch.records_in,
            (batch.num_rows() + batch.dead_letters.len()) as u64
        );
        records += batch.records_in;
    }
    assert_eq!(records, expected.messages);
    assert_eq!(
        next.values().copied().collect::<Vec<_>>(),
        expected.next_offsets
    );
}

#[tokio::test]
async fn many_objects_are_in_flight_but_never_more_than_the_concurrency() {
    let (replayed, expected) = replay(ReplayOptions {
        fetch_concurrency: 12,
        ..ReplayOptions::default()
    })
    .await;
    assert_complete(&replayed, &expected);
    assert!(replayed.gets >= 80, "{} objects read", replayed.gets);
    assert!(
        replayed.most_in_flight <= 12,
        "{} reads in flight, more than fetch_concurrency = 12",
        replayed.most_in_flight
    );
    // 3 partitions × 4 objects ahead each: with 5 ms per read the readers wait on the store, so
    // the depth is reached.
    assert!(
        replayed.most_in_flight >= 6,
        "only {} reads in flight: the latency is not hidden",
        replayed.most_in_flight
    );
}

/// The sum over the partitions of `kappa_source_archive_wait_seconds_<series>` samples that
/// carry every label of `labels` (`key="value"`).
fn waits(exposition: &str, series: &str, labels: &[String]) -> f64 {
    let name = format!("kappa_source_archive_wait_seconds_{series}{{");
    exposition
        .lines()
        .filter(|line| line.starts_with(&name) && labels.iter().all(|l| line.contains(l)))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn each_run_records_how_long_its_reader_waited_for_the_store() {
    let metrics = kappa_metrics::Metrics::install().unwrap();
    // A topic label of its own: the other tests of this binary replay `orders` meanwhile.
    let topic = "orders-waits";
    // One fetch at a time per reader from a store whose reads take 40 ms: each run is one
    // object, and its reader waits for it for the 40 ms less the previous object's decoding.
    let (replayed, expected) = replay_from(
        ReplayOptions {
            topic: topic.into(),
            fetch_concurrency: 1,
            ..ReplayOptions::default()
        },
        Duration::from_millis(40),
    )
    .await;
    assert_complete(&replayed, &expected);
    let exposition = metrics.render();
    let of_topic = |more: &[String]| {
        let mut labels = vec![format!("topic=\"{topic}\"")];
        labels.extend_from_slice(more);
        labels
    };
    let runs = waits(&exposition, "count", &of_topic(&[]));
    let waited = waits(&exposition, "sum", &of_topic(&[]));
    assert_eq!(runs, replayed.gets as f64, "a run per object: {exposition}");
    assert!(
        waited >= replayed.gets as f64 * 0.010,
        "{waited} s waited over {} reads of 40 ms each",
        replayed.gets
    );
    let bucket = |le: &str| waits(&exposition, "bucket", &of_topic(&[format!("le=\"{le}\"")]));
    assert!(
        bucket("0.001") < runs / 2.0,
        "most runs waited less than 1 ms: {exposition}"
    );
    assert_eq!(bucket("+Inf"), runs);
}

#[tokio::test]
async fn a_buffer_smaller_than_one_object_fetches_one_at_a_time_per_reader_and_finishes() {
    let (replayed, expected) = replay(ReplayOptions {
        fetch_concurrency: 64,
        fetch_buffer_bytes: 1,
        ..ReplayOptions::default()
    })
    .await;
    assert_complete(&replayed, &expected);
    // Each object takes the whole buffer: one is fetched or waiting to be decoded at a time.
    assert_eq!(replayed.most_in_flight, 1);
}

#[tokio::test]
async fn small_files_are_merged_into_batches_of_about_batch_rows() {
    let (replayed, expected) = replay(ReplayOptions {
        batch_rows: 1_000,
        ..ReplayOptions::default()
    })
    .await;
    assert_complete(&replayed, &expected);
    // Files hold 100 records. The files a reader has in hand are decoded together into batches
    // of 1,000, and what is left at the end of them (how many there are depends on how fast
    // the objects arrive) is merged with what comes next; it goes alone only when a full batch
    // comes next, or as a partition's last.
    let mut by_partition: std::collections::BTreeMap<i32, Vec<u64>> = Default::default();
    for batch in &replayed.batches {
        by_partition
            .entry(batch.partition.partition)
            .or_default()
            .push(batch.records_in);
    }
    for (partition, sizes) in &by_partition {
        for pair in sizes.windows(2) {
            assert!(
                pair[0] >= 1_000 || pair[1] >= 1_000,
                "partition {partition}: two small batches in a row: {sizes:?}"
            );
        }
        assert!(
            sizes.iter().all(|n| *n < 2_000),
            "partition {partition}: {sizes:?}"
        );
    }
    // Per partition at most its full batches, one small one before each, and a last.
    let full = (expected.messages as usize).div_ceil(3 * 1_000);
    assert!(replayed.batches.len() <= 3 * (2 * full + 1));
}
