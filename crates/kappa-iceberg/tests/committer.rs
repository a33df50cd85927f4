//! The committer against a real SQL catalog (SQLite file) and a local warehouse.
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
        let table = ensure_table(self.catalog.as_ref(), &self.spec)
            .await
            .unwrap();
        Committer::new(
            self.catalog.clone(),
            table,
            "p",
            WriterOptions::default(),
            5,
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
