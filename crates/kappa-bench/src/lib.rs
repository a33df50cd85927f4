//! Shared setup of Kappa's benchmarks: one generated history, written once as an archive, that
//! the decode-only, encode-only and end-to-end benchmarks all read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod kafka;
pub mod latency;
pub mod process;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use kappa_config::PipelineConfig;
use kappa_core::Source;
use kappa_iceberg::writer::WriterOptions;
use kappa_runtime::{PipelineSpec, RunSummary, open_pipeline, run_pipeline};
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping};
use kappa_source_replay::{ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow};
use kappa_synth::{
    ArchiveOptions, Codec, Expected, History, HistorySpec, Layout, ORDERS_V1, ORDERS_V2,
    RecordShape, write_archive,
};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// Events in the benchmark history (`KAPPA_BENCH_EVENTS`, default the demo's 1M).
pub fn events() -> u64 {
    std::env::var("KAPPA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// An archive shape Kafka Connect's S3 sink writes: what each record is, the block codec, records
/// per file (`flush.size`) and the object layout.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The benchmark's name for it.
    pub name: &'static str,
    /// Value records (`AvroFormat` with `AvroConverter`) or raw wire-format bytes
    /// (`ByteArrayConverter`).
    pub records: RecordShape,
    /// Block codec.
    pub codec: Codec,
    /// Records per file.
    pub flush_size: usize,
    /// Object layout.
    pub layout: Layout,
}

impl Shape {
    /// The demo's archive: raw wire-format bytes, snappy, hourly files of at most 50,000.
    pub const RAW_SNAPPY: Shape = Shape {
        name: "raw_snappy",
        records: RecordShape::RawBytes,
        codec: Codec::Snappy,
        flush_size: 50_000,
        layout: Layout::Hourly,
    };

    /// What Kafka Connect writes: value records, deflate, `flush.size` 1,000.
    pub const VALUE_DEFLATE: Shape = Shape {
        name: "value_deflate_1k",
        records: RecordShape::Value,
        codec: Codec::Deflate,
        flush_size: 1_000,
        layout: Layout::Default,
    };

    /// Value records, snappy, 10,000 per file.
    pub const VALUE_SNAPPY: Shape = Shape {
        name: "value_snappy_10k",
        records: RecordShape::Value,
        codec: Codec::Snappy,
        flush_size: 10_000,
        layout: Layout::Default,
    };

    /// Value records, zstandard, 1,000 per file.
    pub const VALUE_ZSTD: Shape = Shape {
        name: "value_zstd_1k",
        records: RecordShape::Value,
        codec: Codec::Zstd,
        flush_size: 1_000,
        layout: Layout::Default,
    };

    /// Every shape the benchmarks measure.
    pub const ALL: [Shape; 4] = [
        Shape::VALUE_DEFLATE,
        Shape::VALUE_SNAPPY,
        Shape::RAW_SNAPPY,
        Shape::VALUE_ZSTD,
    ];

    /// The synthetic archive's options for this shape.
    pub fn options(&self) -> ArchiveOptions {
        ArchiveOptions {
            layout: self.layout,
            shape: self.records,
            codec: self.codec,
            flush_size: self.flush_size,
        }
    }
}

/// A generated archive on local disk.
pub struct Bench {
    /// Holds the archive and the benchmark tables.
    pub dir: tempfile::TempDir,
    /// The archive store.
    pub store: Arc<dyn ObjectStore>,
    /// What the archive holds.
    pub expected: Expected,
    /// Orders v2 mapping.
    pub mapping: Arc<TableMapping>,
    /// Registry with orders v1 and v2.
    pub registry: Arc<dyn SchemaRegistry>,
}

impl Bench {
    /// Generates the history (the demo's shape: raw wire-format values, snappy, hourly files).
    pub async fn new(events: u64) -> Self {
        Self::archived(events, &Shape::RAW_SNAPPY.options()).await
    }

    /// Generates the history, archived with `options`.
    pub async fn archived(events: u64, options: &ArchiveOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("archive")).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("archive")).unwrap());
        let summary = write_archive(
            store.as_ref(),
            &Path::default(),
            History::new(HistorySpec::new(events)).unwrap(),
            options,
        )
        .await
        .unwrap();
        Bench {
            dir,
            store,
            expected: summary.expected,
            mapping: Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap()),
            registry: Arc::new(
                FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap(),
            ),
        }
    }

    /// A fresh source over the whole archive.
    pub async fn source(&self) -> ArchiveSource {
        let plan = ArchivePlan::list(
            self.store.as_ref(),
            "file://bench",
            &Path::default(),
            "orders",
            &PartitionFilter::All,
            &TimeWindow::default(),
        )
        .await
        .unwrap();
        ArchiveSource::new(
            self.store.clone(),
            plan,
            ReplayOptions::default(),
            self.mapping.clone(),
            self.registry.clone(),
        )
    }

    /// Decode only: every batch of the archive, with the Kafka coordinate columns appended.
    pub async fn decode_all(&self) -> Vec<RecordBatch> {
        let mut source = self.source().await;
        let mut out = Vec::new();
        while let Some(batch) = source.next_batch().await.unwrap() {
            out.push(
                self.mapping
                    .table_batch(&batch.records, batch.partition.partition, &batch.offsets)
                    .unwrap(),
            );
        }
        out
    }

    /// End to end: replay the archive into a fresh table, with the orders contract's quality
    /// rules and gates (`quality`) or with quality off, to measure what the checks cost.
    pub async fn replay(&self, run: usize, quality: bool) -> RunSummary {
        let mut spec = self.spec(&format!("run-{run}-{quality}"));
        if !quality {
            spec.quality = kappa_quality::Quality::new(kappa_quality::QualityConfig::disabled());
        }
        self.replay_with(spec).await
    }

    /// The archive replayed through the orders logic into the table of `spec` (created).
    async fn replay_with(&self, spec: PipelineSpec) -> RunSummary {
        let pipeline = open_pipeline(spec).await.unwrap();
        run_pipeline(pipeline, self.source().await, logic())
            .await
            .unwrap()
    }

    /// A table replayed once, and the middle `days` days of its history, for the backfill
    /// benchmark.
    pub async fn backfill_table(&self, days: usize) -> (String, (i32, i32)) {
        let name = "backfill".to_string();
        self.replay_with(self.spec(&name)).await;
        let table = self.main_table(&name).await;
        let field = kappa_iceberg::days::DayField::of(&table, "event_time").unwrap();
        let all: Vec<i32> = field.rows_in(&table).await.unwrap().into_keys().collect();
        let first = all.len().saturating_sub(days) / 2;
        (
            name,
            (all[first], all[(first + days - 1).min(all.len() - 1)]),
        )
    }

    /// A backfill of `days` of table `name` (see [`Bench::backfill_table`]), as `kappa
    /// backfill` runs it in one process: reprocess the archive up to the table's position,
    /// audit, publish. Returns the rows of those days it published.
    pub async fn backfill(&self, name: &str, days: (i32, i32), run: usize) -> u64 {
        use kappa_runtime::backfill;
        let pipeline = kappa_runtime::open_existing_pipeline(self.spec(name))
            .await
            .unwrap();
        let state = pipeline.main.state();
        let request = backfill::Request {
            id: format!("bench-{run}"),
            days,
            base_snapshot: state.snapshot_id,
            upper: state.position.clone(),
            excluded: Default::default(),
            key_column: "event_id".into(),
            quarantine_table: None,
        };
        let staged = backfill::reprocess(&pipeline, self.source().await, logic(), &request)
            .await
            .unwrap();
        let audit = backfill::audit(&pipeline, &staged, &request).await.unwrap();
        assert!(audit.days.iter().all(|d| d.matches()), "{:?}", audit.days);
        backfill::publish(&pipeline, &staged, &request, HashMap::new())
            .await
            .unwrap();
        staged.rows
    }

    /// A table replayed with a commit every `rows` events (a live pipeline at `rows` events/s
    /// committing every second leaves the same files), for the compaction benchmark. Returns
    /// its main table.
    pub async fn small_commit_table(&self, name: &str, rows: usize) -> iceberg::table::Table {
        let mut spec = self.spec(name);
        spec.commit.rows = rows;
        spec.quality = kappa_quality::Quality::new(kappa_quality::QualityConfig::disabled());
        self.replay_with(spec).await;
        self.main_table(name).await
    }

    /// The main table of benchmark pipeline `name`, as it is now.
    pub async fn main_table(&self, name: &str) -> iceberg::table::Table {
        let pipeline = kappa_runtime::open_existing_pipeline(self.spec(name))
            .await
            .unwrap();
        pipeline.main.table().clone()
    }

    /// `kappa maintain compact` of every day of table `name`, at the default target file size.
    pub async fn compact(&self, name: &str) -> kappa_iceberg::maintenance::compact::Compaction {
        use kappa_iceberg::maintenance::compact::{CompactOptions, compact};
        let spec = self.spec(name);
        let pipeline = kappa_runtime::open_existing_pipeline(spec.clone())
            .await
            .unwrap();
        let committer = kappa_iceberg::producer::CatalogCommitter::connect(&spec.catalog)
            .await
            .unwrap();
        let options = CompactOptions {
            target_file_size: spec.writer.target_file_size as u64,
            zstd_level: spec.writer.zstd_level,
            dictionary_size: spec.writer.dictionary_size,
            event_time_column: spec.event_time_column.clone(),
            days: None,
            dry_run: false,
            max_attempts: 10,
            distinct_columns: spec.writer.distinct_columns.clone(),
        };
        compact(
            pipeline.catalog.as_ref(),
            &committer,
            pipeline.main.table().identifier(),
            &options,
        )
        .await
        .unwrap()
    }

    /// A table like the end-to-end one, for the encode-only benchmark.
    pub async fn encode_table(&self) -> iceberg::table::Table {
        let pipeline = open_pipeline(self.spec("encode")).await.unwrap();
        pipeline.main.table().clone()
    }

    fn spec(&self, name: &str) -> PipelineSpec {
        spec(
            self.dir.path(),
            name,
            self.mapping.clone(),
            Duration::from_secs(60),
        )
    }
}

/// The benchmark pipeline's configuration: the `orders` logic with its defaults, a SQLite
/// catalog and a local warehouse under `dir/name`, day partitions, the default writer and commit
/// policy apart from `interval`. Loaded like a pipeline file, so that benchmarks build their
/// pipelines as `kappa` does ([`kappa_pipeline`]).
pub fn config(dir: &std::path::Path, name: &str, interval: Duration) -> PipelineConfig {
    let text = config_text(dir, name, interval);
    kappa_config::load_str(&text, "benchmark config", std::iter::empty(), &[]).unwrap()
}

/// The text of the benchmark pipeline's configuration file ([`config`]).
pub fn config_text(dir: &std::path::Path, name: &str, interval: Duration) -> String {
    let root = dir.join(name);
    format!(
        r#"
[pipeline]
name = "bench"
logic = "orders"

[source.archive]
url = "file://{root}/archive"
topic = "orders"

[catalog]
uri = "sqlite:///{root}/catalog.db"
warehouse = "file://{root}/warehouse"

[table]
name = "orders"

[commit]
interval = "{interval}ms"
"#,
        root = root.display(),
        interval = interval.as_millis(),
    )
}

/// The runtime's spec of the benchmark pipeline ([`config`]).
pub fn spec(
    dir: &std::path::Path,
    name: &str,
    mapping: Arc<TableMapping>,
    interval: Duration,
) -> PipelineSpec {
    kappa_pipeline::pipeline_spec(&config(dir, name, interval), mapping).unwrap()
}

/// The benchmark pipeline's logic (`orders`), built from its config as `kappa` builds it.
pub fn logic() -> kappa_logic::BoxedLogic {
    let dir = std::env::temp_dir();
    kappa_pipeline::build_logic(&config(&dir, "logic", Duration::from_secs(60))).unwrap()
}

/// Encode only, as the sink does it: the decoded rows through the table's writer (day
/// partitions, ZSTD Parquet, column statistics, data files on local disk), without reading,
/// logic or a commit. Returns the rows written.
pub async fn encode_for_table(
    table: &iceberg::table::Table,
    batches: &[RecordBatch],
    run: usize,
) -> u64 {
    let mut writer = kappa_iceberg::writer::StreamingWriter::new(
        table,
        &format!("encode-{run}"),
        &WriterOptions::default(),
    )
    .await
    .unwrap();
    for batch in batches {
        writer.write(batch).await.unwrap();
    }
    let rows = writer.rows();
    writer.finish().await.unwrap();
    rows
}

/// Parquet encoding alone: the batches as one ZSTD Parquet file in memory (no partitioning, no
/// statistics for Iceberg, no file I/O): the floor under [`encode_for_table`].
pub fn encode_parquet(batches: &[RecordBatch]) -> usize {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.into_inner().unwrap().len()
}
