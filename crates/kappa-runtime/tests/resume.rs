//! Resuming after crashes at the commit points of a flush (dead-letter, late and main table),
//! late rows routed to their table, and quality gates that block or quarantine a flush, against
//! a real SQLite catalog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
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
    /// Allowed lateness and the late table (`None`: late rows are appended).
    lateness: Duration,
    late_table: Option<String>,
    /// Record rules and gates (the orders defaults).
    quality: kappa_quality::Quality,
}

async fn env(events: u64) -> Env {
    env_of(HistorySpec::new(events)).await
}

async fn env_of(spec: HistorySpec) -> Env {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let options = ArchiveOptions {
        flush_size: 500,
        ..ArchiveOptions::default()
    };
    let summary = write_archive(
        store.as_ref(),
        &Path::from("a"),
        History::new(spec).unwrap(),
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
        lateness: Duration::from_secs(3600),
        late_table: None,
        quality: kappa_quality::Quality::new(
            kappa_logic::orders::default_quality("event_time").unwrap(),
        ),
    }
}

impl Env {
    fn spec(&self, rows: usize) -> PipelineSpec {
        PipelineSpec {
            pipeline: "orders".into(),
            topics: vec!["orders".into()],
            first_commit: kappa_iceberg::FirstCommit::AtZero,
            catalog: CatalogConfig {
                name: "kappa".into(),
                kind: kappa_iceberg::CatalogType::Sql,
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
            allowed_lateness: self.lateness,
            late_table: self.late_table.clone(),
            mapping: self.mapping.clone(),
            quality: self.quality.clone(),
            quarantine_table: None,
        }
    }

    async fn run(&self, rows: usize, filter: PartitionFilter) -> RunSummary {
        self.run_spec(self.spec(rows), filter).await
    }

    async fn run_spec(&self, spec: PipelineSpec, filter: PartitionFilter) -> RunSummary {
        let options = ReplayOptions {
            batch_rows: 400,
            ..ReplayOptions::default()
        };
        let source = self.source(&filter, options).await;
        let pipeline = open_pipeline(spec).await.unwrap();
        run_pipeline(pipeline, source, OrdersLogic::new(100_000))
            .await
            .unwrap()
    }

    /// The archive's partitions `filter` picks, as a replay source.
    async fn source(&self, filter: &PartitionFilter, options: ReplayOptions) -> ArchiveSource {
        let plan = ArchivePlan::list(
            self.store.as_ref(),
            "memory://",
            &Path::from("a"),
            "orders",
            filter,
            &TimeWindow::default(),
        )
        .await
        .unwrap();
        ArchiveSource::new(
            self.store.clone(),
            plan,
            options,
            self.mapping.clone(),
            self.registry.clone(),
        )
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
    let source = env
        .source(&PartitionFilter::All, ReplayOptions::default())
        .await;
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
    // The table records the writer's settings, for other engines writing it.
    let properties = pipeline.main.table().metadata().properties();
    let writer = WriterOptions::default();
    for (key, value) in [
        (
            kappa_iceberg::writer::COMPRESSION_LEVEL,
            writer.zstd_level.to_string(),
        ),
        (
            kappa_iceberg::writer::DICTIONARY_SIZE,
            writer.dictionary_size.to_string(),
        ),
    ] {
        assert_eq!(properties.get(key), Some(&value), "{key}");
    }
}

/// `(partition, offset)` of every row of `table`.
async fn coordinates(table: &iceberg::table::Table) -> BTreeSet<(i32, i64)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    use futures::TryStreamExt;
    if table.metadata().current_snapshot().is_none() {
        return BTreeSet::new();
    }
    let batches: Vec<_> = table
        .scan()
        .select(["_kafka_partition", "_kafka_offset"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for b in batches {
        let p = b.column(0).as_primitive::<Int32Type>();
        let o = b.column(1).as_primitive::<Int64Type>();
        out.extend(p.values().iter().copied().zip(o.values().iter().copied()));
    }
    out
}

/// An archive whose events are produced up to 2 s after their event time, and 1% up to an hour
/// (minutes apart in a partition: those are the late ones), judged with an allowed lateness of
/// 1 s, late rows routed to `orders_late`.
async fn late_env(events: u64) -> Env {
    let mut env = env(events).await;
    env.lateness = Duration::from_secs(1);
    env.late_table = Some("orders_late".into());
    env
}

#[tokio::test]
async fn late_rows_go_to_the_late_table_the_same_ones_however_the_input_is_cut() {
    let env = late_env(6_000).await;
    // One run, few commits, all partitions at once.
    let whole = env.run(100_000, PartitionFilter::All).await;
    assert!(whole.is_complete(), "{whole:?}");
    assert!(whole.late > 10, "the history has late rows: {whole:?}");
    assert_eq!(whole.late_rows_written, whole.late);
    assert_eq!(
        whole.rows_written + whole.late_rows_written,
        env.expected.rows
    );
    let pipeline = open_pipeline(env.spec(1)).await.unwrap();
    let late = coordinates(pipeline.late.as_ref().unwrap().table()).await;
    let main = coordinates(pipeline.main.table()).await;
    assert_eq!(late.len() as u64, whole.late);
    assert!(late.is_disjoint(&main), "a late row is in one table only");

    // Another catalog: partition 1 alone in small commits, then the rest (a restart from the
    // stored per-partition event times), with a different interleaving of partitions.
    let other = late_env(6_000).await;
    let (first, rest) = (
        other
            .run(250, PartitionFilter::Only([1].into_iter().collect()))
            .await,
        other.run(250, PartitionFilter::All).await,
    );
    assert!(first.is_complete() && rest.is_complete());
    assert!(rest.commits > 5, "{rest:?}");
    let pipeline = open_pipeline(other.spec(1)).await.unwrap();
    assert_eq!(
        coordinates(pipeline.late.as_ref().unwrap().table()).await,
        late,
        "the same rows are late, whatever the commits and the order of partitions"
    );
    assert_eq!(coordinates(pipeline.main.table()).await, main);

    // A re-run commits nothing.
    let rerun = other.run(250, PartitionFilter::All).await;
    assert_eq!((rerun.records_in, rerun.late_commits), (0, 0), "{rerun:?}");
}

#[tokio::test]
async fn a_late_table_ahead_of_the_main_table_is_not_written_twice() {
    // As with the DLQ: a crash after the late-table commit and before the main commit is
    // simulated by a fresh main table that shares the late table.
    let env = late_env(3_000).await;
    let first = env.run(100_000, PartitionFilter::All).await;
    assert!(first.late_rows_written > 0, "{first:?}");
    let mut spec = env.spec(100_000);
    spec.table = "orders_again".into();
    spec.dlq_table = "orders_again_dlq".into();
    let again = env.run_spec(spec, PartitionFilter::All).await;
    assert_eq!(again.late, first.late, "the same rows are judged late");
    assert_eq!(
        again.late_rows_written, 0,
        "the late table already holds them"
    );
    assert_eq!(again.rows_written, first.rows_written);
    let pipeline = open_pipeline(env.spec(1)).await.unwrap();
    assert_eq!(
        coordinates(pipeline.late.as_ref().unwrap().table())
            .await
            .len() as u64,
        first.late
    );
}

/// A history where `null_user_rate` of the events have no user id.
async fn nulls_env(events: u64, null_user_rate: f64) -> Env {
    env_of(HistorySpec {
        null_user_rate,
        ..HistorySpec::new(events)
    })
    .await
}

fn total_records(table: &iceberg::table::Table) -> u64 {
    table.metadata().current_snapshot().map_or(0, |s| {
        s.summary().additional_properties["total-records"]
            .parse::<u64>()
            .unwrap()
    })
}

#[tokio::test]
async fn fifteen_percent_null_user_ids_block_the_commit_and_leave_every_table_unchanged() {
    let env = nulls_env(4_000, 0.15).await;
    let source = env
        .source(&PartitionFilter::All, ReplayOptions::default())
        .await;
    let pipeline = open_pipeline(env.spec(100_000)).await.unwrap();
    let err = run_pipeline(pipeline, source, OrdersLogic::new(100_000))
        .await
        .unwrap_err();
    assert_eq!(
        kappa_core::Classify::kind(&err),
        kappa_core::ErrorKind::Blocked
    );
    let message = err.to_string();
    assert!(
        message.contains("quality gate blocked: user_id null rate 1")
            && message.contains("> 0.10% (block)")
            && message.contains("nothing was committed"),
        "{message}"
    );
    let pipeline = open_pipeline(env.spec(1)).await.unwrap();
    assert!(
        pipeline
            .main
            .table()
            .metadata()
            .current_snapshot()
            .is_none()
    );
    assert!(pipeline.dlq.table().metadata().current_snapshot().is_none());

    // 0.05% NULL (the demo's rate) passes the same gate.
    let fine = nulls_env(4_000, 0.0005).await;
    let summary = fine.run(100_000, PartitionFilter::All).await;
    assert!(
        summary.is_complete() && summary.rows_written > 0,
        "{summary:?}"
    );
}

#[tokio::test]
async fn a_quarantine_gate_sends_the_flush_to_the_quarantine_table_and_nothing_to_the_main_table() {
    let mut env = nulls_env(3_000, 0.15).await;
    let mut config = kappa_logic::orders::default_quality("event_time").unwrap();
    config.null_rate = Some(
        kappa_quality::NullRateGate::new(
            kappa_quality::Policy::Quarantine,
            vec!["user_id".into()],
            0.001,
        )
        .unwrap(),
    );
    env.quality = kappa_quality::Quality::new(config);
    let mut spec = env.spec(100_000);
    spec.quarantine_table = Some("orders_quarantine".into());
    let summary = env.run_spec(spec.clone(), PartitionFilter::All).await;
    assert!(summary.is_complete(), "{summary:?}");
    assert_eq!(summary.rows_written, 0, "{summary:?}");
    assert_eq!(summary.quarantined_rows, env.expected.rows, "{summary:?}");
    assert_eq!(summary.dlq_rows_written, env.expected.dead_lettered());
    let pipeline = open_pipeline(spec.clone()).await.unwrap();
    assert_eq!(total_records(pipeline.main.table()), 0);
    assert_eq!(
        total_records(pipeline.quarantine.as_ref().unwrap().table()),
        env.expected.rows
    );
    let verdicts = &pipeline
        .main
        .table()
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties[kappa_quality::SUMMARY_KEY];
    let report = kappa_quality::QualityReport::from_json(verdicts).unwrap();
    assert_eq!(report.outcome().as_str(), "quarantine");
    // The input is done: a re-run reads nothing.
    let rerun = env.run_spec(spec, PartitionFilter::All).await;
    assert_eq!(rerun.records_in, 0, "{rerun:?}");
}

#[tokio::test]
async fn days_are_judged_against_the_previous_days_once_every_partition_has_passed_them() {
    // Ten days replayed in small commits, partitions read in parallel: each closed day is judged
    // once, after all partitions passed it, and a uniform history flags none.
    let env = env_of(HistorySpec {
        days: 10,
        ..HistorySpec::new(12_000)
    })
    .await;
    let summary = env.run(400, PartitionFilter::All).await;
    assert!(summary.is_complete() && summary.commits > 10, "{summary:?}");
    let pipeline = open_pipeline(env.spec(1)).await.unwrap();
    let mut judged = Vec::new();
    for snapshot in pipeline.main.table().metadata().snapshots() {
        let Some(text) = snapshot
            .summary()
            .additional_properties
            .get(kappa_quality::SUMMARY_KEY)
        else {
            continue;
        };
        let report = kappa_quality::QualityReport::from_json(text).unwrap();
        for v in report.verdicts() {
            if v.check == kappa_quality::Check::RowCount {
                judged.push(v.clone());
            }
        }
    }
    let days: BTreeSet<_> = judged.iter().map(|v| v.day.unwrap()).collect();
    assert_eq!(
        days.len(),
        judged.len(),
        "each day is judged once: {judged:?}"
    );
    // 2026-11-01 .. 11-10: days 1..=8 close within the history (the last ones stay open).
    assert!(days.len() >= 8, "{days:?}");
    let compared: Vec<_> = judged.iter().filter(|v| v.skipped.is_none()).collect();
    assert!(
        !compared.is_empty(),
        "days with 7 days of history are compared: {judged:?}"
    );
    assert!(
        compared.iter().all(|v| v.passed),
        "a uniform history flags no day: {compared:?}"
    );
}

#[tokio::test]
async fn a_writer_that_cannot_write_ends_the_run_with_its_error_and_commits_nothing() {
    let env = env(3_000).await;
    let spec = PipelineSpec {
        writer: WriterOptions {
            writers: 2,
            ..WriterOptions::default()
        },
        ..env.spec(1_000)
    };
    let pipeline = open_pipeline(spec).await.unwrap();
    // The main table's data directory is a file: no data file can be created under it.
    let data = env.dir.path().join("warehouse/kappa/orders/data");
    std::fs::write(&data, b"not a directory").unwrap();
    let options = ReplayOptions {
        batch_rows: 400,
        ..ReplayOptions::default()
    };
    let source = env.source(&PartitionFilter::All, options).await;
    let err = run_pipeline(pipeline, source, OrdersLogic::new(100_000))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("table kappa.orders: writing data files")
            && message.contains("Not a directory"),
        "the error names the table, the write and its cause: {message}"
    );
    std::fs::remove_file(&data).unwrap();
    let (rows, _) = env.counts().await;
    assert_eq!(rows, 0, "nothing of the failed flush is in the main table");
}

/// A live source over an archive: once the archive is read it idles, as a topic with nothing
/// new does, and says so on `read`.
struct Endless {
    archive: ArchiveSource,
    read: Option<tokio::sync::oneshot::Sender<()>>,
}

#[async_trait::async_trait]
impl kappa_core::Source for Endless {
    type Error = kappa_source_replay::ReplayError;

    fn partitions(&self) -> Vec<kappa_core::TopicPartition> {
        self.archive.partitions()
    }

    async fn seek(&mut self, position: &kappa_core::SourcePosition) -> Result<(), Self::Error> {
        self.archive.seek(position).await
    }

    async fn next_event(&mut self) -> Result<kappa_core::SourceEvent, Self::Error> {
        match self.archive.next_event().await? {
            kappa_core::SourceEvent::End => {
                if let Some(read) = self.read.take() {
                    let _ = read.send(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(kappa_core::SourceEvent::Idle)
            }
            event => Ok(event),
        }
    }
}

/// A replica being replaced (a StatefulSet pod rolled) is told to stop while its successor
/// already committed part of the input it holds: its final flush overlaps what another writer
/// committed. It stops without writing, and the successor goes on to commit every record once
/// (the replica used to start a new session that never saw the shutdown again, and ran until it
/// was killed).
#[tokio::test]
async fn a_live_run_stops_when_another_writer_committed_its_final_flush_first() {
    let env = env(3_000).await;
    let (read_tx, read_rx) = tokio::sync::oneshot::channel();
    let source = Endless {
        archive: env
            .source(&PartitionFilter::All, ReplayOptions::default())
            .await,
        read: Some(read_tx),
    };
    // Nothing is flushed before the shutdown (a million rows or an hour).
    let pipeline = open_pipeline(env.spec(1_000_000)).await.unwrap();
    let successor = async {
        read_rx.await.unwrap();
        // The successor commits partition 0, then the replica is told to stop. (Boxed: two
        // pipelines' futures on one test thread's stack overflow it in a debug build.)
        let only = PartitionFilter::Only(BTreeSet::from([0]));
        assert!(Box::pin(env.run(1_000, only)).await.rows_written > 0);
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        Box::pin(kappa_runtime::run_live(
            pipeline,
            source,
            OrdersLogic::new(100_000),
            successor,
        )),
    )
    .await
    .expect("the replaced replica stops when told to")
    .unwrap();
    // It had read everything (the source said so before the successor ran), and wrote nothing.
    assert_eq!(summary.rows_written, 0);
    assert_eq!(summary.commits, 0);
    // Its summary reports the position the table holds: the successor's.
    let next: Vec<(i32, i64)> = summary
        .positions
        .iter()
        .map(|(tp, next)| (tp.partition, *next))
        .collect();
    assert_eq!(next, vec![(0, env.expected.next_offsets[0])]);
    // The successor goes on: every record once.
    env.run(1_000, PartitionFilter::All).await;
    assert_eq!(
        env.counts().await,
        (env.expected.rows, env.expected.dead_lettered())
    );
}
