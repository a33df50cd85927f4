//! The committer against a real SQL catalog (SQLite file) and a local warehouse; conflicts
//! between two committers on one table, and what they record in `kappa_commits_total`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pending;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use iceberg::Catalog;
use kappa_core::{OffsetRange, TopicPartition};
use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{CommitOutcome, Committer, IcebergError, TableSpec};
use kappa_metrics::Metrics;

struct Env {
    _dir: tempfile::TempDir,
    catalog: Arc<dyn Catalog>,
    spec: TableSpec,
}

async fn env() -> Env {
    let (dir, _, catalog) = common::sqlite_catalog().await;
    Env {
        _dir: dir,
        catalog,
        spec: common::events_spec(),
    }
}

impl Env {
    async fn committer(&self) -> Committer {
        self.committer_with_attempts(5).await
    }

    async fn committer_of(&self, pipeline: &str) -> Committer {
        self.open_committer(pipeline, 5).await
    }

    /// Another engine's maintenance: a commit without any `kappa.*` key (written with
    /// iceberg-rust directly, as Spark or PyIceberg would write one), then every snapshot but
    /// the current one expired.
    async fn foreign_commit_and_expire(&self) {
        use iceberg::transaction::{ApplyTransactionAction, Transaction};
        let ident = self.spec.ident().unwrap();
        let table = self.catalog.load_table(&ident).await.unwrap();
        let mut foreign = pending(7, 0, 3);
        let files = kappa_iceberg::writer::write_data_files(
            &table,
            &foreign.batches.split_off(0),
            "foreign",
            &WriterOptions::default(),
        )
        .await
        .unwrap();
        let tx = Transaction::new(&table);
        let tx = tx.fast_append().add_data_files(files).apply(tx).unwrap();
        let table = tx.commit(self.catalog.as_ref()).await.unwrap();
        let current = table.metadata().current_snapshot_id().unwrap();
        let older: Vec<i64> = table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .filter(|id| *id != current)
            .collect();
        let tx = Transaction::new(&table);
        let tx = tx
            .expire_snapshots()
            .expire_snapshot_ids(older)
            .retain_last(1)
            .apply(tx)
            .unwrap();
        let table = tx.commit(self.catalog.as_ref()).await.unwrap();
        assert_eq!(
            table.metadata().snapshots().count(),
            1,
            "older snapshots expired"
        );
        assert!(
            table.metadata().snapshots().all(|s| !s
                .summary()
                .additional_properties
                .contains_key("kappa.offsets")),
            "no snapshot left carries Kappa's summary keys"
        );
    }

    async fn committer_with_attempts(&self, max_attempts: u32) -> Committer {
        self.open_committer("p", max_attempts).await
    }

    async fn open_committer(&self, pipeline: &str, max_attempts: u32) -> Committer {
        let table = ensure_table(self.catalog.as_ref(), &self.spec)
            .await
            .unwrap();
        Committer::new(
            self.catalog.clone(),
            table,
            pipeline,
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

/// Conflicts are retried for the conflict timeout, not `max_attempts` times: a conflict means
/// another writer committed, not that committing fails.
#[tokio::test]
async fn conflicts_are_retried_until_the_conflict_timeout_whatever_max_attempts_says() {
    let metrics = Metrics::install().unwrap();
    let mut env = env().await;
    env.spec.namespace = "conflict_exhausted".into();
    let table = "conflict_exhausted.events";
    let mut a = env.committer().await;
    let mut b = env.committer_with_attempts(1).await;
    let mut c = env.committer_with_attempts(1).await;
    a.commit(pending(0, 0, 10)).await.unwrap();
    // One attempt allowed, but a conflict is not a failed attempt: b retries and commits.
    let outcome = b.commit(pending(1, 0, 20)).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Committed { attempts: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(conflicts_retried(&metrics, table), 1.0);
    // Out of time at once: c's conflict fails the commit, and is not counted as retried.
    c.set_conflict_timeout(Duration::ZERO);
    let err = c.commit(pending(2, 0, 5)).await.unwrap_err();
    assert!(
        matches!(
            err,
            IcebergError::ConflictRetriesExhausted { attempts: 1, .. }
        ),
        "{err}"
    );
    assert_eq!(conflicts_retried(&metrics, table), 1.0);
    assert_eq!(env.row_count().await, 30);
}

/// Audit case 1: another engine commits (a compaction) and expires older snapshots. The position
/// must survive: committing the same input again is a no-op, and the next input continues.
#[tokio::test]
async fn the_position_survives_a_foreign_commit_and_snapshot_expiry() {
    let env = env().await;
    let mut committer = env.committer().await;
    committer.commit(pending(0, 0, 100)).await.unwrap();
    committer.commit(pending(1, 0, 50)).await.unwrap();
    env.foreign_commit_and_expire().await;
    let rows_before = env.row_count().await;
    let mut reopened = env.committer().await;
    assert_eq!(
        reopened
            .state()
            .position
            .next_offset(&TopicPartition::new("t", 0)),
        Some(100)
    );
    assert_eq!(
        reopened.commit(pending(0, 0, 100)).await.unwrap(),
        CommitOutcome::AlreadyCommitted,
        "the input the table holds must not be written again"
    );
    assert_eq!(env.row_count().await, rows_before);
    let outcome = reopened.commit(pending(1, 50, 60)).await.unwrap();
    assert!(
        matches!(outcome, CommitOutcome::Committed { rows: 10, .. }),
        "{outcome:?}"
    );
    assert_eq!(env.row_count().await, rows_before + 10);
}

/// Audit case 2: the same table run under another `[pipeline] name` is refused (naming both
/// pipelines), and after `take_over` the new name continues the old position.
#[tokio::test]
async fn a_renamed_pipeline_is_refused_until_it_takes_the_position_over() {
    let env = env().await;
    let mut old = env.committer_of("orders-v1").await;
    old.commit(pending(0, 0, 100)).await.unwrap();
    let mut renamed = env.committer_of("orders-v2").await;
    let err = renamed.commit(pending(0, 0, 100)).await.unwrap_err();
    assert!(matches!(err, IcebergError::Owned { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("orders-v1") && text.contains("orders-v2"),
        "{text}"
    );
    assert_eq!(env.row_count().await, 100, "nothing was written twice");
    assert!(renamed.check_owner(["t"]).is_err());
    assert!(renamed.check_owner(["other-topic"]).is_ok());

    let ident = env.spec.ident().unwrap();
    let moved =
        kappa_iceberg::recovery::take_over(env.catalog.as_ref(), &ident, "orders-v1", "orders-v2")
            .await
            .unwrap();
    assert_eq!(
        moved,
        kappa_iceberg::recovery::Takeover::Moved { partitions: 1 }
    );
    let again =
        kappa_iceberg::recovery::take_over(env.catalog.as_ref(), &ident, "orders-v1", "orders-v2")
            .await
            .unwrap();
    assert_eq!(again, kappa_iceberg::recovery::Takeover::AlreadyDone);
    let mut renamed = env.committer_of("orders-v2").await;
    assert_eq!(
        renamed.commit(pending(0, 0, 100)).await.unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    renamed.commit(pending(0, 100, 120)).await.unwrap();
    assert_eq!(env.row_count().await, 120);
    // The old name can no longer run on the table.
    let table = ensure_table(env.catalog.as_ref(), &env.spec).await.unwrap();
    let err = Committer::new(
        env.catalog.clone(),
        table,
        "orders-v1",
        WriterOptions::default(),
        5,
    )
    .unwrap_err();
    assert!(matches!(err, IcebergError::Released { .. }), "{err}");
}

/// `recover` rebuilds a lost position from the rows' Kafka coordinates.
#[tokio::test]
async fn a_lost_position_is_rebuilt_from_the_rows() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    let env = env().await;
    let mut committer = env.committer().await;
    committer.commit(pending(0, 0, 100)).await.unwrap();
    committer.commit(pending(1, 0, 40)).await.unwrap();
    env.foreign_commit_and_expire().await;
    // Lose the property too, as a table written before it existed would have.
    let ident = env.spec.ident().unwrap();
    let table = env.catalog.load_table(&ident).await.unwrap();
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .remove("kappa.state.p".into())
        .apply(tx)
        .unwrap();
    tx.commit(env.catalog.as_ref()).await.unwrap();
    assert!(env.committer().await.state().is_empty());

    let columns = kappa_iceberg::recovery::Coordinates {
        topic: "t".into(),
        partition: "_kafka_partition".into(),
        offset: "_kafka_offset".into(),
        event_time: None,
    };
    let found =
        kappa_iceberg::recovery::recover(env.catalog.as_ref(), &ident, "p", &columns, false)
            .await
            .unwrap();
    // The foreign rows (partition 7, offsets 0..3) are rows of the table like any other.
    assert_eq!(found.rows, 143);
    let state = env.committer().await.state().clone();
    assert_eq!(
        state.position.next_offset(&TopicPartition::new("t", 0)),
        Some(100)
    );
    assert_eq!(
        state.position.next_offset(&TopicPartition::new("t", 1)),
        Some(40)
    );
    let mut reopened = env.committer().await;
    assert_eq!(
        reopened.commit(pending(1, 0, 40)).await.unwrap(),
        CommitOutcome::AlreadyCommitted
    );
}

/// A catalog with two faults of real ones, each armed on its own:
/// - `armed`: its first commit request is lost in transit: the caller gets an error that does
///   not say whether it was applied, and the request reaches the catalog only later, just before
///   the caller's next request (a "ghost" commit, seen only after the caller reloaded);
/// - `half_made_namespace`: the namespace another process is creating (SeaweedFS's REST catalog):
///   creating it answers NamespaceAlreadyExists while checking it still says no, until a table
///   is created in it.
#[derive(Debug)]
struct FaultyCatalog {
    inner: Arc<dyn Catalog>,
    held: tokio::sync::Mutex<Option<iceberg::TableCommit>>,
    armed: std::sync::atomic::AtomicBool,
    half_made_namespace: std::sync::atomic::AtomicBool,
}

impl FaultyCatalog {
    fn new(inner: Arc<dyn Catalog>) -> Self {
        FaultyCatalog {
            inner,
            held: tokio::sync::Mutex::new(None),
            armed: std::sync::atomic::AtomicBool::new(false),
            half_made_namespace: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn half_made(&self) -> bool {
        self.half_made_namespace
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Catalog for FaultyCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&iceberg::NamespaceIdent>,
    ) -> iceberg::Result<Vec<iceberg::NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<iceberg::Namespace> {
        let created = self.inner.create_namespace(namespace, properties).await?;
        if self.half_made() {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::NamespaceAlreadyExists,
                "Tried to create a namespace that already exists",
            ));
        }
        Ok(created)
    }
    async fn get_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
    ) -> iceberg::Result<iceberg::Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &iceberg::NamespaceIdent) -> iceberg::Result<bool> {
        if self.half_made() {
            return Ok(false);
        }
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &iceberg::NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(
        &self,
        namespace: &iceberg::NamespaceIdent,
    ) -> iceberg::Result<Vec<iceberg::TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(
        &self,
        namespace: &iceberg::NamespaceIdent,
        creation: iceberg::TableCreation,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.half_made_namespace
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(
        &self,
        table: &iceberg::TableIdent,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.inner.load_table(table).await
    }
    async fn drop_table(&self, table: &iceberg::TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &iceberg::TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &iceberg::TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(
        &self,
        src: &iceberg::TableIdent,
        dest: &iceberg::TableIdent,
    ) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(
        &self,
        table: &iceberg::TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(
        &self,
        commit: iceberg::TableCommit,
    ) -> iceberg::Result<iceberg::table::Table> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            *self.held.lock().await = Some(commit);
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                "connection reset while reading the response",
            ));
        }
        if let Some(ghost) = self.held.lock().await.take() {
            self.inner.update_table(ghost).await?;
        }
        self.inner.update_table(commit).await
    }
}

/// Audit case 15: a commit whose response was lost lands after the committer reloaded and found
/// it absent. The retry then finds the input committed; it must report the commit as made and
/// must not delete the data files the landed commit references.
#[tokio::test]
async fn a_ghost_commit_that_lands_late_keeps_its_files() {
    use futures::TryStreamExt;
    let env = env().await;
    let ghost = Arc::new(FaultyCatalog::new(env.catalog.clone()));
    ghost.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let table = ensure_table(env.catalog.as_ref(), &env.spec).await.unwrap();
    let mut committer =
        Committer::new(ghost.clone(), table, "p", WriterOptions::default(), 5).unwrap();
    let outcome = committer.commit(pending(0, 0, 100)).await.unwrap();
    assert!(
        ghost.held.lock().await.is_none() && !ghost.armed.load(std::sync::atomic::Ordering::SeqCst),
        "the lost request landed later (the test exercised the ghost path)"
    );
    assert_eq!(env.row_count().await, 100);
    // Every file the table references is still there: a full scan reads every row.
    let table = env
        .catalog
        .load_table(&env.spec.ident().unwrap())
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        100
    );
    assert!(
        matches!(outcome, CommitOutcome::Committed { rows: 100, .. }),
        "the landed attempt is this commit: {outcome:?}"
    );
}

/// Several processes creating one table on a new namespace of SeaweedFS's REST catalog: the
/// namespace's creation answers "already exists" while its check still says no. That is the
/// race lost, not a failure: the table is created in the namespace the other process made.
#[tokio::test]
async fn a_namespace_the_catalog_says_exists_while_its_check_says_no_is_used() {
    let env = env().await;
    let catalog = FaultyCatalog::new(env.catalog.clone());
    catalog
        .half_made_namespace
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let table = ensure_table(&catalog, &env.spec).await.unwrap();
    assert!(
        !catalog.half_made(),
        "the fault was met: a table was created"
    );
    let ident = env.spec.ident().unwrap();
    assert_eq!(table.identifier(), &ident);
    assert!(env.catalog.table_exists(&ident).await.unwrap());
}

/// Audit case 3: a first commit of a partition that starts past offset 0 would tell every later
/// run that the offsets before were ingested. Refused unless asked for; then recorded as skipped.
#[tokio::test]
async fn a_first_commit_past_offset_zero_is_refused_unless_the_skip_is_asked_for() {
    let env = env().await;
    let mut committer = env.committer().await;
    committer.set_first_commit(kappa_iceberg::FirstCommit::AtZero);
    let err = committer.commit(pending(0, 50, 100)).await.unwrap_err();
    assert!(
        matches!(err, IcebergError::MissingHistory { start: 50, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("--accept-missing-history"),
        "{err}"
    );
    assert_eq!(env.row_count().await, 0);
    // From offset 0, and then continuing, is fine.
    committer.commit(pending(1, 0, 10)).await.unwrap();
    committer.commit(pending(1, 10, 20)).await.unwrap();

    committer.set_first_commit(kappa_iceberg::FirstCommit::SkipMissingHistory);
    committer.commit(pending(0, 50, 100)).await.unwrap();
    let reopened = env.committer().await;
    let state = reopened.state();
    assert_eq!(
        state.skipped.get(&TopicPartition::new("t", 0)),
        Some(&OffsetRange::new(0, 50)),
        "the skip is recorded, for every later run to see"
    );
    assert!(!state.skipped.contains_key(&TopicPartition::new("t", 1)));
    let snapshot = reopened.table().metadata().current_snapshot().unwrap();
    assert_eq!(
        snapshot
            .summary()
            .additional_properties
            .get("kappa.skipped")
            .map(String::as_str),
        Some(r#"{"t":{"0":[0,50]}}"#)
    );
    assert_eq!(env.row_count().await, 20 + 50);
}

/// `kappa state skip` while the pipeline runs: the running committer's state predates the move,
/// yet its next commit keeps the move (the move's empty snapshot makes that commit conflict and
/// reload), and a move decided on a base that a pipeline commit moved meanwhile never writes the
/// older position back.
#[tokio::test]
async fn a_position_move_survives_the_running_pipeline_and_never_rolls_it_back() {
    use kappa_iceberg::recovery::{Moved, move_position};
    let env = env().await;
    let ident = env.spec.ident().unwrap();
    let mut running = env.committer().await;
    running.commit(pending(0, 0, 10)).await.unwrap();
    running.commit(pending(1, 0, 10)).await.unwrap();
    let p1 = TopicPartition::new("t", 1);

    // Forward: partition 1 skips 10..50 while `running` holds the state from before.
    let moved = move_position(&env.catalog, &ident, "p", &p1, 50, false, false)
        .await
        .unwrap();
    assert_eq!(moved, Moved::Moved { from: 10 });
    running.commit(pending(0, 10, 20)).await.unwrap();
    let state = &running.state();
    assert_eq!(
        state.position.next_offset(&p1),
        Some(50),
        "the move is kept"
    );
    assert_eq!(
        state.position.next_offset(&TopicPartition::new("t", 0)),
        Some(20)
    );
    assert_eq!(state.moves.len(), 1);
    assert_eq!((state.moves[0].from, state.moves[0].to), (10, 50));

    // Backward needs rewind; without it the table is left as it is.
    let kept = move_position(&env.catalog, &ident, "p", &p1, 0, false, false)
        .await
        .unwrap();
    assert_eq!(kept, Moved::Unchanged { at: 50 });
    let rewound = move_position(&env.catalog, &ident, "p", &p1, 0, true, false)
        .await
        .unwrap();
    assert_eq!(rewound, Moved::Moved { from: 50 });

    // A dry run changes nothing; a partition the table holds nothing of is not held.
    let dry = move_position(&env.catalog, &ident, "p", &p1, 5, false, true)
        .await
        .unwrap();
    assert_eq!(dry, Moved::Moved { from: 0 });
    let other = TopicPartition::new("t", 9);
    assert_eq!(
        move_position(&env.catalog, &ident, "p", &other, 5, false, false)
            .await
            .unwrap(),
        Moved::NotHeld
    );
    let mut fresh = env.committer().await;
    fresh.reload().await.unwrap();
    assert_eq!(fresh.state().position.next_offset(&p1), Some(0));
    assert_eq!(fresh.state().moves.len(), 2);
    // Partition 0 was never rolled back by any of the moves.
    assert_eq!(
        fresh
            .state()
            .position
            .next_offset(&TopicPartition::new("t", 0)),
        Some(20)
    );
    assert_eq!(env.row_count().await, 30);
}
