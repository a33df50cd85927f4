//! The snapshot producer against a real SQL catalog (SQLite file) and a local warehouse:
//! partition replacement on `main` and on a branch, fast-forward, and the compare-and-swap that
//! refuses a moved base. Expectations come from the rows written, read back by a table scan.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{batch, pending};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Literal, Operation, Struct};
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};
use kappa_core::TopicPartition;
use kappa_iceberg::producer::{
    CatalogCommitter, Change, NewSnapshot, Swap, discard, landed, stage, stage_fast_forward,
};
use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::{WriterOptions, write_data_files};
use kappa_iceberg::{Committer, IcebergError, TableState};

struct Env {
    _dir: tempfile::TempDir,
    catalog: Arc<dyn Catalog>,
    ident: TableIdent,
    committer: Committer,
    swap: CatalogCommitter,
}

async fn env() -> Env {
    let (dir, config, catalog) = common::sqlite_catalog().await;
    let spec = common::events_spec();
    let table = ensure_table(catalog.as_ref(), &spec).await.unwrap();
    let committer =
        Committer::new(catalog.clone(), table, "p", WriterOptions::default(), 5).unwrap();
    let swap = CatalogCommitter::connect(&config).await.unwrap();
    Env {
        _dir: dir,
        ident: spec.ident().unwrap(),
        catalog,
        committer,
        swap,
    }
}

fn partition(p: i32) -> Struct {
    Struct::from_iter([Some(Literal::int(p))])
}

impl Env {
    async fn table(&self) -> Table {
        self.catalog.load_table(&self.ident).await.unwrap()
    }

    async fn write(&self, batches: &[RecordBatch]) -> Vec<DataFile> {
        let table = self.table().await;
        write_data_files(&table, batches, "backfill", &WriterOptions::default())
            .await
            .unwrap()
    }

    /// Values per Kafka partition of the snapshot (`main`'s head when `None`).
    async fn rows(&self, snapshot: Option<i64>) -> BTreeMap<i32, BTreeSet<String>> {
        let table = self.table().await;
        let mut scan = table.scan().select_all();
        if let Some(id) = snapshot {
            scan = scan.snapshot_id(id);
        }
        let batches: Vec<RecordBatch> = scan
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut rows: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for b in batches {
            let values = b.column_by_name("v").unwrap().as_string::<i32>();
            let partitions = b
                .column_by_name("_kafka_partition")
                .unwrap()
                .as_primitive::<Int32Type>();
            for i in 0..b.num_rows() {
                rows.entry(partitions.value(i))
                    .or_default()
                    .insert(values.value(i).to_string());
            }
        }
        rows
    }

    /// Live data file paths per Kafka partition of `main`'s head.
    async fn files(&self) -> BTreeMap<i32, BTreeSet<String>> {
        let table = self.table().await;
        let tasks: Vec<_> = table
            .scan()
            .select_all()
            .build()
            .unwrap()
            .plan_files()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut files: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
        for task in tasks {
            let p = match task
                .partition
                .as_ref()
                .and_then(|s| s.fields().first().cloned())
            {
                Some(Some(Literal::Primitive(iceberg::spec::PrimitiveLiteral::Int(p)))) => p,
                other => panic!("partition value {other:?}"),
            };
            files
                .entry(p)
                .or_default()
                .insert(task.data_file_path.clone());
        }
        files
    }

    /// `batches` appended on `main` through the snapshot producer.
    async fn append(&self, batches: &[RecordBatch]) {
        let files = self.write(batches).await;
        let staged = stage(
            &self.table().await,
            NewSnapshot {
                branch: "main".into(),
                change: Change::Append,
                files,
                summary: HashMap::new(),
                properties: HashMap::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(self.swap.swap(&self.ident, &staged).await, Swap::Committed);
    }

    /// Three partitions of 10 rows each, one commit each, through the pipeline's committer.
    async fn three_partitions(&mut self) {
        for p in 0..3 {
            self.committer.commit(pending(p, 0, 10)).await.unwrap();
        }
    }
}

/// A snapshot on `branch` that replaces `partitions` with `files`.
fn replacing(branch: &str, partitions: &[i32], files: Vec<DataFile>) -> NewSnapshot {
    NewSnapshot {
        branch: branch.into(),
        change: Change::ReplacePartitions(partitions.iter().map(|p| partition(*p)).collect()),
        files,
        summary: HashMap::new(),
        properties: HashMap::new(),
    }
}

fn values(tag: &str, start: i64, end: i64) -> BTreeSet<String> {
    (start..end).map(|o| format!("{tag}-{o}")).collect()
}

#[tokio::test]
async fn replacing_a_partition_rewrites_only_it_with_summary_totals_that_add_up() {
    let mut env = env().await;
    env.three_partitions().await;
    let files_before = env.files().await;
    let new = env.write(&[batch(1, 0, 4, "new")]).await;
    let table = env.table().await;
    let staged = stage(
        &table,
        NewSnapshot {
            summary: HashMap::from([("kappa.backfill".into(), "b1".into())]),
            ..replacing("main", &[1], new)
        },
    )
    .await
    .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Committed);

    let rows = env.rows(None).await;
    assert_eq!(rows[&0], values("row", 0, 10));
    assert_eq!(rows[&1], values("new", 0, 4));
    assert_eq!(rows[&2], values("row", 0, 10));
    let files_after = env.files().await;
    assert_eq!(
        files_after[&0], files_before[&0],
        "partition 0's file is untouched"
    );
    assert_eq!(
        files_after[&2], files_before[&2],
        "partition 2's file is untouched"
    );
    assert!(files_after[&1].is_disjoint(&files_before[&1]));

    let table = env.table().await;
    let snapshot = table.metadata().current_snapshot().unwrap();
    assert_eq!(Some(snapshot.snapshot_id()), staged.snapshot_id);
    let summary = snapshot.summary();
    assert_eq!(summary.operation, Operation::Overwrite);
    let p = &summary.additional_properties;
    assert_eq!(p["replace-partitions"], "true");
    assert_eq!(p["kappa.backfill"], "b1");
    assert_eq!(p["added-records"], "4");
    assert_eq!(p["deleted-records"], "10");
    assert_eq!(p["total-records"], "24");
    assert_eq!(p["total-data-files"], "3");
    assert_eq!(p["deleted-data-files"], "1");
    // The pipeline's state is carried over: the commit keeps every table property.
    let state = TableState::read("test.events", table.metadata(), "p").unwrap();
    assert_eq!(
        state.position.next_offset(&TopicPartition::new("t", 1)),
        Some(10)
    );

    // Appending through the producer adds to the totals.
    env.append(&[batch(0, 10, 13, "row")]).await;
    let table = env.table().await;
    let summary = table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .clone();
    assert_eq!(summary.operation, Operation::Append);
    assert_eq!(summary.additional_properties["total-records"], "27");
    assert_eq!(env.rows(None).await[&0], values("row", 0, 13));
}

#[tokio::test]
async fn table_stats_count_the_live_files_rows_and_partitions_a_scan_reads() {
    let mut env = env().await;
    assert_eq!(
        kappa_iceberg::table_stats(&env.table().await)
            .await
            .unwrap(),
        kappa_iceberg::TableStats {
            snapshots: 0,
            metadata_location: env.table().await.metadata_location().map(str::to_string),
            ..Default::default()
        }
    );
    env.three_partitions().await;
    // Partition 1 replaced (its file deleted in the new manifest), then partition 0 appended to.
    let new = env.write(&[batch(1, 0, 4, "new")]).await;
    let staged = stage(&env.table().await, replacing("main", &[1], new))
        .await
        .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Committed);
    env.append(&[batch(0, 10, 13, "row")]).await;

    let table = env.table().await;
    let stats = kappa_iceberg::table_stats(&table).await.unwrap();
    let files = env.files().await;
    let rows = env.rows(None).await;
    assert_eq!(
        stats.snapshots, 5,
        "three commits, a replacement, an append"
    );
    assert_eq!(
        stats.data_files,
        files.values().map(BTreeSet::len).sum::<usize>()
    );
    assert_eq!(stats.data_files, 4, "{files:?}");
    assert_eq!(
        stats.rows,
        rows.values().map(|v| v.len() as u64).sum::<u64>()
    );
    assert_eq!(stats.rows, 27);
    assert_eq!(stats.partitions, files.len());
    assert_eq!(stats.partitions, 3);
    assert_eq!(
        stats.metadata_location.as_deref(),
        table.metadata_location()
    );
}

#[tokio::test]
async fn a_swap_on_a_moved_base_conflicts_changes_nothing_and_leaves_no_file() {
    let mut env = env().await;
    env.three_partitions().await;
    let new = env.write(&[batch(1, 0, 4, "new")]).await;
    let staged = stage(&env.table().await, replacing("main", &[1], new))
        .await
        .unwrap();
    // The pipeline commits in between: the staged base is stale.
    env.committer.commit(pending(1, 10, 12)).await.unwrap();
    let before = env.rows(None).await;
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Conflict);
    assert_eq!(env.rows(None).await, before);
    assert!(before[&1].contains("row-11"), "the pipeline's rows stay");
    let table = env.table().await;
    discard(&table, &staged).await;
    for path in &staged.written {
        assert!(
            !table.file_io().exists(path).await.unwrap(),
            "{path} was left behind"
        );
    }
    // The same swap again still conflicts: the compare is on the staged base.
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Conflict);
}

#[tokio::test]
async fn a_branch_stays_invisible_on_main_until_main_is_fast_forwarded_to_it() {
    let mut env = env().await;
    env.three_partitions().await;
    let old = env.rows(None).await;
    let new = env.write(&[batch(2, 0, 5, "new")]).await;
    let staged = stage(&env.table().await, replacing("backfill-1", &[2], new))
        .await
        .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Committed);
    assert_eq!(env.rows(None).await, old, "main does not see the branch");
    let branch = env.rows(staged.snapshot_id).await;
    assert_eq!(branch[&2], values("new", 0, 5));
    assert_eq!(branch[&0], old[&0]);

    let table = env.table().await;
    let forward = stage_fast_forward(
        &table,
        "backfill-1",
        HashMap::from([("kappa.published".into(), "backfill-1".into())]),
    )
    .await
    .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &forward).await, Swap::Committed);
    assert_eq!(env.rows(None).await, branch, "main is the branch now");
    let table = env.table().await;
    assert_eq!(table.metadata().current_snapshot_id(), staged.snapshot_id);
    assert_eq!(
        table.metadata().properties()["kappa.published"],
        "backfill-1"
    );

    // A branch made before main moved cannot be fast-forwarded onto it.
    let new = env.write(&[batch(0, 0, 2, "new")]).await;
    let staged = stage(&env.table().await, replacing("backfill-2", &[0], new))
        .await
        .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Committed);
    env.committer.reload().await.unwrap();
    env.committer.commit(pending(1, 10, 12)).await.unwrap();
    let refused = stage_fast_forward(&env.table().await, "backfill-2", HashMap::new()).await;
    assert!(
        matches!(&refused, Err(IcebergError::Invalid { message, .. }) if message.contains("not an ancestor")),
        "{refused:?}"
    );
}

/// After a swap whose outcome is unknown, `landed` tells from the reloaded table whether the
/// staged commit is in it, also once other commits landed on top.
#[tokio::test]
async fn landed_finds_a_commit_under_later_ones_and_not_one_that_lost() {
    let mut env = env().await;
    env.three_partitions().await;
    let new = env.write(&[batch(1, 0, 4, "new")]).await;
    let won = stage(&env.table().await, replacing("main", &[1], new))
        .await
        .unwrap();
    let new = env.write(&[batch(2, 0, 4, "new")]).await;
    let lost = stage(&env.table().await, replacing("main", &[2], new))
        .await
        .unwrap();
    assert_eq!(env.swap.swap(&env.ident, &won).await, Swap::Committed);
    assert_eq!(env.swap.swap(&env.ident, &lost).await, Swap::Conflict);
    assert!(landed(&env.table().await, &won));
    assert!(!landed(&env.table().await, &lost));
    // The pipeline commits on top: the won commit is still found.
    env.committer.reload().await.unwrap();
    env.committer.commit(pending(0, 10, 12)).await.unwrap();
    let table = env.table().await;
    assert_ne!(table.metadata_location(), Some(won.location.as_str()));
    assert!(landed(&table, &won));
    assert!(!landed(&table, &lost));
}

/// `test.days`: `v`, `ts` (timestamptz, partitioned by day), the Kafka coordinates.
fn days_spec() -> kappa_iceberg::TableSpec {
    use iceberg::spec::{NestedField, PrimitiveType, Type};
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "v", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(2, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
            NestedField::required(3, "_kafka_partition", Type::Primitive(PrimitiveType::Int))
                .into(),
            NestedField::required(4, "_kafka_offset", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    kappa_iceberg::TableSpec {
        namespace: "test".into(),
        name: "days".into(),
        schema,
        partition_by: vec![kappa_iceberg::PartitionField {
            column: "ts".into(),
            transform: iceberg::spec::Transform::Day,
        }],
        properties: HashMap::new(),
    }
}

/// Rows of day `day` at offsets `start..end` of partition 0, valued `<tag>-<offset>`.
fn day_batch(day: i64, start: i64, end: i64, tag: &str) -> RecordBatch {
    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("_kafka_partition", DataType::Int32, false),
        Field::new("_kafka_offset", DataType::Int64, false),
    ]));
    let offsets: Vec<i64> = (start..end).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            offsets.iter().map(|o| format!("{tag}-{o}")),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                offsets.iter().map(|o| day * 86_400_000_000 + o),
            )
            .with_timezone("+00:00"),
        ),
        Arc::new(Int32Array::from(vec![0; offsets.len()])),
        Arc::new(Int64Array::from(offsets)),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

#[tokio::test]
async fn replacing_days_reads_only_the_manifests_of_those_days_and_keeps_what_it_is_told() {
    let (_dir, config, catalog) = common::sqlite_catalog().await;
    let spec = days_spec();
    let table = ensure_table(catalog.as_ref(), &spec).await.unwrap();
    let ident = spec.ident().unwrap();
    let mut committer =
        Committer::new(catalog.clone(), table, "p", WriterOptions::default(), 5).unwrap();
    // Day 0, day 1, then day 1 again (a later append to it), then day 2: one manifest each.
    for (day, start) in [(0, 0), (1, 10), (1, 20), (2, 30)] {
        let mut commit = pending(0, start, start + 10);
        commit.batches = vec![day_batch(day, start, start + 10, "row")];
        committer.commit(commit).await.unwrap();
    }
    let table = catalog.load_table(&ident).await.unwrap();
    let field = kappa_iceberg::days::DayField::of(&table, "ts").unwrap();
    let day1 = BTreeSet::from([1]);
    let list = table
        .manifest_list_reader(table.metadata().current_snapshot().unwrap())
        .load()
        .await
        .unwrap();
    let holding: Vec<_> = list
        .entries()
        .iter()
        .filter(|m| field.may_hold(m, &day1))
        .collect();
    assert_eq!(holding.len(), 2, "the two manifests of day 1 only");
    // The later append to day 1 is kept (as a publish keeps what live ingestion appended).
    let live = field.live_files(&table, &day1).await.unwrap();
    assert_eq!(live.len(), 2);
    let later: String = {
        let m = holding
            .iter()
            .max_by_key(|m| m.sequence_number)
            .unwrap()
            .load_manifest(table.file_io())
            .await
            .unwrap();
        m.entries()[0].file_path().to_string()
    };
    let new = write_data_files(
        &table,
        &[day_batch(1, 10, 14, "new")],
        "backfill",
        &WriterOptions::default(),
    )
    .await
    .unwrap();
    // Every manifest of another day is made unreadable: staging must not need it.
    let others: Vec<String> = list
        .entries()
        .iter()
        .filter(|m| !field.may_hold(m, &day1))
        .map(|m| m.manifest_path.clone())
        .collect();
    assert_eq!(others.len(), 2);
    let aside = |p: &str| p.strip_prefix("file://").unwrap().to_string();
    for path in &others {
        std::fs::rename(aside(path), format!("{}.aside", aside(path))).unwrap();
    }
    let staged = stage(
        &table,
        NewSnapshot {
            branch: "main".into(),
            change: Change::ReplaceDays {
                field,
                days: day1.clone(),
                keep: HashSet::from([later.clone()]),
            },
            files: new,
            summary: HashMap::new(),
            properties: HashMap::new(),
        },
    )
    .await
    .unwrap();
    for path in &others {
        std::fs::rename(format!("{}.aside", aside(path)), aside(path)).unwrap();
    }
    let swap = CatalogCommitter::connect(&config).await.unwrap();
    assert_eq!(swap.swap(&ident, &staged).await, Swap::Committed);

    let table = catalog.load_table(&ident).await.unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .select(["v"])
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let got: BTreeSet<String> = batches
        .iter()
        .flat_map(|b| {
            let v = b.column(0).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| v.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut want = values("row", 0, 10);
    want.extend(values("new", 10, 14));
    want.extend(values("row", 20, 30));
    want.extend(values("row", 30, 40));
    assert_eq!(
        got, want,
        "day 1's first file replaced, its later one kept, days 0 and 2 as they were"
    );
    let summary = table.metadata().current_snapshot().unwrap().summary();
    assert_eq!(summary.operation, Operation::Overwrite);
    assert_eq!(summary.additional_properties["deleted-records"], "10");
    assert_eq!(summary.additional_properties["total-records"], "34");
    assert!(
        !summary
            .additional_properties
            .contains_key("replace-partitions")
    );
}

#[tokio::test]
async fn a_rewrite_keeps_the_rows_and_drops_the_manifests_it_emptied_from_later_snapshots() {
    let mut env = env().await;
    env.three_partitions().await;
    let rows_before = env.rows(None).await;
    let files_before = env.files().await;
    // Partition 1, then partition 2, rewritten into one new file each with the same rows.
    for p in [1, 2] {
        let table = env.table().await;
        let paths: HashSet<String> = files_before[&p].iter().cloned().collect();
        let new = env.write(&[batch(p, 0, 10, "row")]).await;
        let staged = stage(
            &table,
            NewSnapshot {
                branch: "main".into(),
                change: Change::Rewrite { paths, days: None },
                files: new,
                summary: HashMap::new(),
                properties: HashMap::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(env.swap.swap(&env.ident, &staged).await, Swap::Committed);
    }
    assert_eq!(
        env.rows(None).await,
        rows_before,
        "a rewrite changed the rows"
    );
    let files = env.files().await;
    assert_eq!(
        files[&0], files_before[&0],
        "an untouched partition was rewritten"
    );
    assert_ne!(files[&1], files_before[&1]);
    let table = env.table().await;
    let head = table.metadata().current_snapshot().unwrap();
    assert_eq!(head.summary().operation, Operation::Replace);
    let list = table.manifest_list_reader(head).load().await.unwrap();
    for manifest in list.entries() {
        let empty =
            manifest.added_files_count == Some(0) && manifest.existing_files_count == Some(0);
        assert!(
            !empty || manifest.added_snapshot_id == head.snapshot_id(),
            "{} holds no live file and is not this snapshot's: carried along",
            manifest.manifest_path
        );
    }
}
