//! Kappa's own snapshot producer (`kappa_iceberg::producer`) writes tables that the query engines
//! read: the largest day partition of a table `kappa replay` filled is replaced, and PyIceberg and
//! DuckDB read back exactly the new rows of that day and the old rows of every other day. On a
//! local SQLite catalog, on PostgreSQL with the warehouse on S3 (the swap's `$n` statement) and
//! on the REST catalog (its table commit with requirements: a stale base is a conflict, a branch
//! fast-forwards onto main).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{BooleanArray, RecordBatch};
use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::spec::{Literal, Struct};
use kappa_iceberg::producer::{
    CatalogCommitter, Change, NewSnapshot, Swap, landed, stage, stage_fast_forward,
};
use kappa_iceberg::writer::{WriterOptions, write_data_files};
use kappa_iceberg::{CatalogConfig, connect};
use kappa_integration_tests::{Catalog, Scene, service};
use kappa_synth::{ArchiveOptions, HistorySpec};

const DAY_MICROS: i64 = 86_400_000_000;

#[test]
fn a_day_partition_replaced_by_the_producer_reads_back_in_pyiceberg_and_duckdb() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(spec(), ArchiveOptions::default());
    replace_the_largest_day(&scene, expected.rows, HashMap::new());
}

#[test]
fn the_same_on_postgres_with_the_warehouse_on_s3() {
    let scene = Scene::s3_postgres("producer");
    let expected = scene.write_s3_archive(spec(), ArchiveOptions::default());
    let s3 = HashMap::from([
        ("s3.endpoint".to_string(), service("KAPPA_S3_ENDPOINT")),
        ("s3.region".to_string(), "us-east-1".to_string()),
        ("s3.access-key-id".to_string(), "test".to_string()),
        ("s3.secret-access-key".to_string(), "testtest".to_string()),
        ("s3.path-style-access".to_string(), "true".to_string()),
    ]);
    replace_the_largest_day(&scene, expected.rows, s3);
}

#[test]
fn the_same_on_the_rest_catalog() {
    let scene = Scene::on(Catalog::Rest, "producer");
    let expected = scene.write_local_archive(spec(), ArchiveOptions::default());
    replace_the_largest_day(&scene, expected.rows, rest_properties());
}

/// The REST catalog's client properties the scene's config gives Kappa.
fn rest_properties() -> HashMap<String, String> {
    HashMap::from([
        ("credential".to_string(), "test:testtest".to_string()),
        ("s3.endpoint".to_string(), service("KAPPA_S3_ENDPOINT")),
        ("s3.region".to_string(), "us-east-1".to_string()),
        ("s3.access-key-id".to_string(), "test".to_string()),
        ("s3.secret-access-key".to_string(), "testtest".to_string()),
        ("s3.path-style-access".to_string(), "true".to_string()),
    ])
}

fn catalog_config(scene: &Scene, properties: HashMap<String, String>) -> CatalogConfig {
    CatalogConfig {
        name: "kappa".into(),
        kind: if scene.catalog_type == "rest" {
            kappa_iceberg::CatalogType::Rest
        } else {
            kappa_iceberg::CatalogType::Sql
        },
        uri: scene.catalog_uri.clone(),
        warehouse: scene.warehouse.clone(),
        properties,
    }
}

/// On the REST catalog: two snapshots staged on one base, the second is refused as a conflict
/// (its `assert-ref-snapshot-id`) and changes nothing; a snapshot staged on a new branch leaves
/// main alone until the branch is fast-forwarded onto it; a fast-forward staged on a main that
/// moved since is a conflict too.
#[test]
fn the_rest_catalog_refuses_a_stale_base_and_fast_forwards_a_branch() {
    let scene = Scene::on(Catalog::Rest, "producer_ff");
    let expected = scene.write_local_archive(spec(), ArchiveOptions::default());
    kappa_integration_tests::replay(&scene.config(""), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = catalog_config(&scene, rest_properties());
        let catalog = connect(&config).await.unwrap();
        let committer = CatalogCommitter::connect(&config).await.unwrap();
        let ident = TableIdent::from_strs([scene.namespace.as_str(), "orders"]).unwrap();
        let base = catalog.load_table(&ident).await.unwrap();
        let head = base.metadata().current_snapshot_id().unwrap();
        let empty = |branch: &str, note: &str| NewSnapshot {
            branch: branch.into(),
            change: Change::Append,
            files: Vec::new(),
            summary: HashMap::from([("kappa.test".into(), note.into())]),
            properties: HashMap::new(),
        };
        let first = stage(&base, empty("main", "first")).await.unwrap();
        let second = stage(&base, empty("main", "second")).await.unwrap();
        assert_eq!(committer.swap(&ident, &first).await, Swap::Committed);
        assert_eq!(committer.swap(&ident, &second).await, Swap::Conflict);
        let now = catalog.load_table(&ident).await.unwrap();
        assert!(landed(&now, &first));
        assert!(!landed(&now, &second));
        assert_eq!(now.metadata().current_snapshot_id(), first.snapshot_id);
        assert_eq!(
            now.metadata()
                .snapshot_by_id(first.snapshot_id.unwrap())
                .unwrap()
                .parent_snapshot_id(),
            Some(head)
        );

        // A branch: main does not move until the fast-forward.
        let on_branch = stage(&now, empty("audit", "audited")).await.unwrap();
        assert_eq!(committer.swap(&ident, &on_branch).await, Swap::Committed);
        let now = catalog.load_table(&ident).await.unwrap();
        assert_eq!(now.metadata().current_snapshot_id(), first.snapshot_id);
        let forward = stage_fast_forward(
            &now,
            "audit",
            HashMap::from([("kappa.test.published".into(), "yes".into())]),
        )
        .await
        .unwrap();
        // Main moves first: the fast-forward's base is stale.
        let moved = stage(&now, empty("main", "moved")).await.unwrap();
        assert_eq!(committer.swap(&ident, &moved).await, Swap::Committed);
        assert_eq!(committer.swap(&ident, &forward).await, Swap::Conflict);
        let now = catalog.load_table(&ident).await.unwrap();
        assert!(!landed(&now, &forward));
        assert_eq!(now.metadata().current_snapshot_id(), moved.snapshot_id);
        // A branch made from the newer main fast-forwards.
        let on_branch = stage(&now, empty("audit2", "audited")).await.unwrap();
        assert_eq!(committer.swap(&ident, &on_branch).await, Swap::Committed);
        let now = catalog.load_table(&ident).await.unwrap();
        let forward = stage_fast_forward(
            &now,
            "audit2",
            HashMap::from([("kappa.test.published".into(), "yes".into())]),
        )
        .await
        .unwrap();
        assert_eq!(committer.swap(&ident, &forward).await, Swap::Committed);
        let now = catalog.load_table(&ident).await.unwrap();
        assert!(landed(&now, &forward));
        assert_eq!(now.metadata().current_snapshot_id(), on_branch.snapshot_id);
        assert_eq!(now.metadata().properties()["kappa.test.published"], "yes");
    });
    // Empty appends changed no row: the engines read what the replay wrote.
    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_eq!(
            read["rows"].as_u64(),
            Some(expected.rows),
            "{engine}: {read}"
        );
    }
}

fn spec() -> HistorySpec {
    HistorySpec {
        days: 3,
        ..HistorySpec::new(6_000)
    }
}

/// Replays the scene's archive (which gives `rows` rows), replaces the day with the most rows
/// by every other row of it through the producer, and checks what both engines read.
fn replace_the_largest_day(scene: &Scene, rows: u64, properties: HashMap<String, String>) {
    let config = scene.config("");
    kappa_integration_tests::replay(&config, &[]);
    let before = scene.read("pyiceberg", "orders");
    assert_eq!(before["rows"].as_u64(), Some(rows));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Replace the largest day with every other row of that day.
    let (day_rows, kept) = runtime.block_on(async {
        let catalog_config = catalog_config(scene, properties);
        let catalog = connect(&catalog_config).await.unwrap();
        let ident = TableIdent::from_strs([scene.namespace.as_str(), "orders"]).unwrap();
        let table = catalog.load_table(&ident).await.unwrap();
        let batches: Vec<RecordBatch> = table
            .scan()
            .select_all()
            .build()
            .unwrap()
            .to_arrow()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        // The day with the most rows (a late event can make a day of one row).
        let day_of = |batch: &RecordBatch, i: usize| {
            batch
                .column_by_name("event_time")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .value(i)
                .div_euclid(DAY_MICROS)
        };
        let mut per_day: HashMap<i64, u64> = HashMap::new();
        for batch in &batches {
            for i in 0..batch.num_rows() {
                *per_day.entry(day_of(batch, i)).or_default() += 1;
            }
        }
        let (day, day_rows) = per_day.into_iter().max_by_key(|(_, n)| *n).unwrap();
        let partition = Struct::from_iter([Some(Literal::int(i32::try_from(day).unwrap()))]);
        let mut kept = Vec::new();
        for batch in &batches {
            let offsets = batch
                .column_by_name("_kafka_offset")
                .unwrap()
                .as_primitive::<Int64Type>();
            let mask: BooleanArray = (0..batch.num_rows())
                .map(|i| Some(day_of(batch, i) == day && offsets.value(i) % 2 == 0))
                .collect();
            let filtered = arrow_select::filter::filter_record_batch(batch, &mask).unwrap();
            if filtered.num_rows() > 0 {
                kept.push(filtered);
            }
        }
        let kept_rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
        assert!(day_rows > 0 && kept_rows > 0 && kept_rows < day_rows);
        let files = write_data_files(&table, &kept, "producer-test", &WriterOptions::default())
            .await
            .unwrap();
        let staged = stage(
            &table,
            NewSnapshot {
                branch: "main".into(),
                change: Change::ReplacePartitions(vec![partition]),
                files,
                summary: HashMap::from([("kappa.test".into(), "replace".into())]),
                properties: HashMap::new(),
            },
        )
        .await
        .unwrap();
        let committer = CatalogCommitter::connect(&catalog_config).await.unwrap();
        assert_eq!(committer.swap(&ident, &staged).await, Swap::Committed);
        (day_rows, kept_rows)
    });

    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_eq!(
            read["rows"].as_u64(),
            Some(rows - day_rows + kept),
            "{engine}: {read}"
        );
        assert_eq!(
            read["distinct_event_ids"], read["rows"],
            "{engine}: no row twice"
        );
    }
}
