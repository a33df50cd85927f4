//! Resuming after crashes at the two commit points of a flush, against a real SQLite catalog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{CatalogConfig, PartitionField};
use kappa_logic::OrdersLogic;
use kappa_runtime::{CommitPolicy, PipelineSpec, RunSummary, open_pipeline, run_pipeline};
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping};
use kappa_source_replay::{ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow};
use kappa_synth::{
    ArchiveOptions, Expected, History, HistorySpec, ORDERS_V1, ORDERS_V2, write_archive,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    expected: Expected,
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
}

async fn env(events: u64) -> Env {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let options = ArchiveOptions {
        flush_size: 500,
        ..ArchiveOptions::default()
    };
    let summary = write_archive(
        store.as_ref(),
        &Path::from("a"),
        History::new(HistorySpec::new(events)).unwrap(),
        &options,
    )
    .await
    .unwrap();
    Env {
        dir: tempfile::tempdir().unwrap(),
        store,
        expected: summary.expected,
        mapping: Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap()),
        registry: Arc::new(
            FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap(),
        ),
    }
}

impl Env {
    fn spec(&self, rows: usize) -> PipelineSpec {
        PipelineSpec {
            pipeline: "orders".into(),
            catalog: CatalogConfig {
                name: "kappa".into(),
                uri: format!("sqlite:///{}/catalog.db", self.dir.path().display()),
                warehouse: format!("file://{}/warehouse", self.dir.path().display()),
                properties: HashMap::new(),
            },
            namespace: "kappa".into(),
            table: "orders".into(),
            dlq_table: "orders_dlq".into(),
            partition_by: vec![PartitionField {
                column: "event_time".into(),
                transform: kappa_iceberg::table::Transform::Day,
            }],
            writer: WriterOptions::default(),
            commit: CommitPolicy {
                rows,
                interval: Duration::from_secs(3600),
                ..CommitPolicy::default()
            },
            dedup_window: 100_000,
            event_time_column: "event_time".into(),
            allowed_lateness: Duration::from_secs(3600),
            mapping: self.mapping.clone(),
        }
    }

    async fn run(&self, rows: usize, filter: PartitionFilter) -> RunSummary {
        let plan = ArchivePlan::list(
            self.store.as_ref(),
            "memory://",
            &Path::from("a"),
            "orders",
            &filter,
            &TimeWindow::default(),
        )
        .await
        .unwrap();
        let options = ReplayOptions {
            batch_rows: 400,
            ..ReplayOptions::default()
        };
        let source = ArchiveSource::new(
            self.store.clone(),
            plan,
            options,
            self.mapping.clone(),
            self.registry.clone(),
        );
        let pipeline = open_pipeline(self.spec(rows)).await.unwrap();
        run_pipeline(pipeline, source, OrdersLogic::new(100_000))
            .await
            .unwrap()
    }

    async fn counts(&self) -> (u64, u64) {
        let pipeline = open_pipeline(self.spec(1)).await.unwrap();
        let rows = |t: &iceberg::table::Table| {
            t.metadata().current_snapshot().map_or(0, |s| {
                s.summary().additional_properties["total-records"]
                    .parse::<u64>()
                    .unwrap()
            })
        };
        (rows(pipeline.main.table()), rows(pipeline.dlq.table()))
    }
}

#[tokio::test]
async fn a_dead_letter_table_ahead_of_the_main_table_is_not_written_twice() {
    // Simulate a crash after the DLQ commit and before the main commit: a first run over
    // partition 0 only commits both tables; then the main table alone is rolled back by
    // running a second pipeline whose main table is fresh (new name) but shares the DLQ table.
    let env = env(6_000).await;
    let first = env.run(1_000, PartitionFilter::All).await;
    assert!(first.is_complete(), "{first:?}");
    let (rows, dead) = env.counts().await;
    assert_eq!(rows, env.expected.rows);
    assert_eq!(dead, env.expected.dead_lettered());

    let mut spec = env.spec(1_000);
    spec.table = "orders_again".into();
    let plan = ArchivePlan::list(
        env.store.as_ref(),
        "memory://",
        &Path::from("a"),
        "orders",
        &PartitionFilter::All,
        &TimeWindow::default(),
    )
    .await
    .unwrap();
    let source = ArchiveSource::new(
        env.store.clone(),
        plan,
        ReplayOptions::default(),
        env.mapping.clone(),
        env.registry.clone(),
    );
    let again = run_pipeline(
        open_pipeline(spec).await.unwrap(),
        source,
        OrdersLogic::new(100_000),
    )
    .await
    .unwrap();
    assert_eq!(
        again.rows_written, env.expected.rows,
        "the fresh main table gets every row"
    );
    assert_eq!(
        again.dlq_rows_written, 0,
        "the DLQ already holds these dead letters"
    );
    assert_eq!(env.counts().await.1, env.expected.dead_lettered());
}

#[tokio::test]
async fn many_small_commits_and_a_rerun_account_for_every_record() {
    let env = env(5_000).await;
    let summary = env.run(300, PartitionFilter::All).await;
    assert!(summary.commits >= 10, "{summary:?}");
    assert!(summary.is_complete());
    assert_eq!(summary.rows_written, env.expected.rows);
    assert_eq!(summary.duplicates, env.expected.duplicates);
    let positions: Vec<i64> = summary.positions.values().copied().collect();
    assert_eq!(positions, env.expected.next_offsets);
    let rerun = env.run(300, PartitionFilter::All).await;
    assert_eq!((rerun.commits, rerun.records_in), (0, 0), "{rerun:?}");
    assert_eq!(
        env.counts().await,
        (env.expected.rows, env.expected.dead_lettered())
    );
    // Every commit's summary counts its input's dead letters by kind (what `kappa status` sums).
    let pipeline = open_pipeline(env.spec(1)).await.unwrap();
    let sum = |key: &str| -> u64 {
        kappa_iceberg::state::ancestry(pipeline.main.table().metadata())
            .filter_map(|s| {
                s.summary()
                    .additional_properties
                    .get(key)?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    use kappa_iceberg::summary;
    assert_eq!(sum(summary::DEAD_LETTERED), env.expected.dead_lettered());
    assert_eq!(
        sum(summary::DEAD_LETTERED_UNDECODABLE),
        env.expected.undecodable
    );
    assert_eq!(sum(summary::DEAD_LETTERED_UNMAPPABLE), 0);
    assert_eq!(sum(summary::DEAD_LETTERED_REJECTED), env.expected.rejected);
}
