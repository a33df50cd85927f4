//! The committer against a real SQL catalog (SQLite file) and a local warehouse; conflicts
//! between two committers on one table, and what they record in `kappa_commits_total`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use iceberg::Catalog;
use iceberg::spec::{NestedField, PrimitiveType, Transform, Type};
use kappa_core::{OffsetRange, TopicPartition};
use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{
    CatalogConfig, CommitOutcome, Committer, IcebergError, PartitionField, PendingCommit,
    TableSpec, connect,
};
use kappa_metrics::Metrics;

struct Env {
    _dir: tempfile::TempDir,
    catalog: Arc<dyn Catalog>,
    spec: TableSpec,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig {
        name: "kappa".into(),
        uri: format!("sqlite://{}/catalog.db", dir.path().display()),
        warehouse: format!("file://{}/warehouse", dir.path().display()),
        properties: HashMap::new(),
    };
    let catalog = connect(&config).await.unwrap();
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "v", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(2, "_kafka_partition", Type::Primitive(PrimitiveType::Int))
                .into(),
            NestedField::required(3, "_kafka_offset", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    let spec = TableSpec {
        namespace: "test".into(),
        name: "events".into(),
        schema,
        partition_by: vec![PartitionField {
            column: "_kafka_partition".into(),
            transform: Transform::Identity,
        }],
        properties: HashMap::new(),
    };
    Env {
        _dir: dir,
        catalog,
        spec,
    }
}

impl Env {
    async fn committer(&self) -> Committer {
        self.committer_with_attempts(5).await
    }

    async fn committer_with_attempts(&self, max_attempts: u32) -> Committer {
        let table = ensure_table(self.catalog.as_ref(), &self.spec)
            .await
            .unwrap();
        Committer::new(
            self.catalog.clone(),
            table,
            "p",
            WriterOptions::default(),
            max_attempts,
        )
        .unwrap()
    }

    async fn row_count(&self) -> u64 {
        let table = self
            .catalog
            .load_table(&self.spec.ident().unwrap())
            .await
            .unwrap();
        let Some(snapshot) = table.metadata().current_snapshot() else {
            return 0;
        };
        snapshot.summary().additional_properties["total-records"]
            .parse()
            .unwrap()
    }
}

fn pending(partition: i32, start: i64, end: i64) -> PendingCommit {
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Utf8, false),
        Field::new("_kafka_partition", DataType::Int32, false),
        Field::new("_kafka_offset", DataType::Int64, false),
    ]));
    let offsets: Vec<i64> = (start..end).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            offsets.iter().map(|o| format!("row-{o}")),
        )),
        Arc::new(Int32Array::from(vec![partition; offsets.len()])),
        Arc::new(Int64Array::from(offsets)),
    ];
    PendingCommit {
        input: BTreeMap::from([(
            TopicPartition::new("t", partition),
            OffsetRange::new(start, end),
        )]),
        batches: vec![RecordBatch::try_new(schema, columns).unwrap()],
        ..PendingCommit::default()
    }
}

#[tokio::test]
async fn commits_once_and_recognises_a_repeat() {
    let env = env().await;
    let mut committer = env.committer().await;
    let outcome = committer.commit(pending(0, 0, 100)).await.unwrap();
    assert!(
        matches!(
            outcome,
            CommitOutcome::Committed {
                rows: 100,
                attempts: 1,
                ..
            }
        ),
        "{outcome:?}"
    );
    let snapshot = committer.state().snapshot_id;
    assert_eq!(
        committer.commit(pending(0, 0, 100)).await.unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert_eq!(
        committer.state().snapshot_id,
        snapshot,
        "a repeat must not add a snapshot"
    );
    // A fresh process reads the same state back from the table.
    let reopened = env.committer().await;
    assert_eq!(
        reopened
            .state()
            .position
            .next_offset(&TopicPartition::new("t", 0)),
        Some(100)
    );
    assert_eq!(env.row_count().await, 100);
}

#[tokio::test]
async fn stale_writers_rebase_on_the_pinned_protocol_and_keep_state_complete() {
    let env = env().await;
    let mut a = env.committer().await;
    let mut b = env.committer().await;
    a.commit(pending(0, 0, 10)).await.unwrap();
    // b's base is stale: its commit conflicts, reloads, re-decides and merges a's partition.
    let outcome = b.commit(pending(1, 0, 20)).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Committed { attempts: 2, .. }),
        "{outcome:?}"
    );
    let position = &b.state().position;
    assert_eq!(position.next_offset(&TopicPartition::new("t", 0)), Some(10));
    assert_eq!(position.next_offset(&TopicPartition::new("t", 1)), Some(20));
    assert_eq!(env.row_count().await, 30);
}

#[tokio::test]
async fn a_stale_writer_whose_input_was_committed_meanwhile_commits_nothing() {
    let env = env().await;
    let mut a = env.committer().await;
    let mut b = env.committer().await;
    a.commit(pending(0, 0, 10)).await.unwrap();
    assert_eq!(
        b.commit(pending(0, 0, 10)).await.unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert_eq!(env.row_count().await, 10);
}

#[tokio::test]
async fn overlaps_and_gaps_are_refused_with_the_partition_named() {
    let env = env().await;
    let mut c = env.committer().await;
    c.commit(pending(0, 0, 10)).await.unwrap();
    let err = c.commit(pending(0, 5, 15)).await.unwrap_err();
    assert!(matches!(err, IcebergError::Continuity { .. }), "{err}");
    assert!(
        err.to_string().contains("t-0") && err.to_string().contains("up to offset 10"),
        "{err}"
    );
    let err = c.commit(pending(0, 12, 15)).await.unwrap_err();
    assert!(err.to_string().contains("would be skipped"), "{err}");
    assert_eq!(env.row_count().await, 10);
}

#[tokio::test]
async fn an_offsets_only_commit_advances_state_without_rows() {
    let env = env().await;
    let mut c = env.committer().await;
    let mut empty = pending(0, 0, 0);
    empty.input = BTreeMap::from([(TopicPartition::new("t", 0), OffsetRange::new(0, 50))]);
    assert!(matches!(
        c.commit(empty).await.unwrap(),
        CommitOutcome::Committed { rows: 0, .. }
    ));
    assert_eq!(
        c.state().position.next_offset(&TopicPartition::new("t", 0)),
        Some(50)
    );
}

/// `kappa_commits_total{table, outcome="conflict_retried"}` as this process's recorder renders
/// it (0 before the series exists). Tests that read it use a table of their own: the recorder is
/// global and the other tests conflict too.
fn conflicts_retried(metrics: &Metrics, table: &str) -> f64 {
    let table = format!("table=\"{table}\"");
    metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("kappa_commits_total{")
                && l.contains(&table)
                && l.contains("outcome=\"conflict_retried\"")
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .fold(0.0, |sum, v| sum + v)
}

#[tokio::test]
async fn every_conflict_that_is_retried_counts_in_commits_by_outcome() {
    let metrics = Metrics::install().unwrap();
    let mut env = env().await;
    env.spec.namespace = "conflict_retried".into();
    let table = "conflict_retried.events";
    let mut a = env.committer().await;
    let mut b = env.committer().await;
    assert_eq!(conflicts_retried(&metrics, table), 0.0);
    a.commit(pending(0, 0, 10)).await.unwrap();
    assert_eq!(conflicts_retried(&metrics, table), 0.0, "a had no rival");
    // b's base predates a's commit: its first attempt conflicts, the second commits.
    let outcome = b.commit(pending(1, 0, 20)).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Committed { attempts: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(conflicts_retried(&metrics, table), 1.0);
    // Now a is the stale one.
    let outcome = a.commit(pending(0, 10, 30)).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Committed { attempts: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(conflicts_retried(&metrics, table), 2.0);
    // Up to date after its retry: a's next commit has no conflict and counts none.
    a.commit(pending(0, 30, 40)).await.unwrap();
    assert_eq!(conflicts_retried(&metrics, table), 2.0);
    assert_eq!(env.row_count().await, 60);
}

#[tokio::test]
async fn a_conflict_on_the_last_attempt_is_not_counted_as_retried() {
    let metrics = Metrics::install().unwrap();
    let mut env = env().await;
    env.spec.namespace = "conflict_exhausted".into();
    let mut a = env.committer().await;
    let mut b = env.committer_with_attempts(1).await;
    a.commit(pending(0, 0, 10)).await.unwrap();
    let err = b.commit(pending(1, 0, 20)).await.unwrap_err();
    assert!(
        matches!(
            err,
            IcebergError::ConflictRetriesExhausted { attempts: 1, .. }
        ),
        "{err}"
    );
    assert_eq!(
        conflicts_retried(&metrics, "conflict_exhausted.events"),
        0.0
    );
    assert_eq!(env.row_count().await, 10);
}
