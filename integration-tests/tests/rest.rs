//! The REST catalog's unknown outcomes, against the real catalog `dev/services.sh` runs
//! (SeaweedFS): a proxy (`dev/rest-fault-proxy.py`) forwards commits to it and loses the
//! responses of some the catalog applied, by closing the connection or answering 502/504. Kappa
//! cannot know those commits landed; it must find them in the table's history, never commit
//! them twice and never give up on them. And its creations: clients creating one table at once
//! all go on with the one the catalog kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kappa_integration_tests::{
    Catalog, Scene, assert_table_matches, free_port, kappa, last_line, python, replay, service,
};
use kappa_synth::{ArchiveOptions, Expected, HistorySpec};
use serde_json::Value;

/// The proxy, killed when dropped.
struct Proxy {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Loses the responses of the table commits numbered in `lose` (in the order they reach
    /// the proxy), each as `how` says (`close`, `502`, `504`).
    fn start(scene: &Scene, lose: &[u32], how: &[&str]) -> Proxy {
        Self::start_with(scene, lose, how, &[])
    }

    /// [`Proxy::start`] with more of the proxy's flags.
    fn start_with(scene: &Scene, lose: &[u32], how: &[&str], flags: &[&str]) -> Proxy {
        let port = free_port();
        let log = scene.path(&format!("proxy-{port}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/rest-fault-proxy.py");
        let lose: Vec<String> = lose.iter().map(u32::to_string).collect();
        let mut child = Command::new(python())
            .arg(script)
            .args(["--listen", &port.to_string()])
            .args(["--upstream", &service("KAPPA_REST_URI")])
            .args(["--lose", &lose.join(",")])
            .args(["--how", &how.join(",")])
            .args(flags)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening", "the proxy did not start");
        Proxy {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// What the proxy lost: one entry per commit the catalog applied (answered 200) whose
    /// response never reached Kappa.
    fn lost(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|e| e["commit"].is_u64())
            .collect()
    }

    /// Every entry of the proxy's log.
    fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A REST scene named `name` with an archive of 20,000 events (files of 2,000 records), what
/// the table must hold, and the pipeline file (batches of 1,000 rows).
fn replay_scene(name: &str) -> (Scene, Expected, String) {
    let scene = Scene::on(Catalog::Rest, name);
    let expected = scene.write_local_archive(
        HistorySpec::new(20_000),
        ArchiveOptions {
            flush_size: 2_000,
            ..ArchiveOptions::default()
        },
    );
    let path = scene
        .config("[replay]\nbatch_rows = 1000\n")
        .display()
        .to_string();
    (scene, expected, path)
}

/// A replay whose commits' responses are lost three times (the connection closed, a 502, a
/// 504), each after the catalog applied the commit: the replay settles each from the table's
/// history and goes on; the table holds every event once, and a rerun has nothing to do.
#[test]
fn commits_the_catalog_applied_but_never_answered_are_found_in_the_history_not_made_twice() {
    let (scene, expected, path) = replay_scene("lost");
    let proxy = Proxy::start(&scene, &[2, 4, 7], &["close", "502", "504"]);
    let out = kappa(
        &["replay", "-c", &path, "--json", "--set", "commit.rows=3000"],
        &[
            ("KAPPA__CATALOG__URI", proxy.uri.as_str()),
            ("KAPPA_LOG", "warn"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lost = proxy.lost();
    assert_eq!(
        lost.len(),
        3,
        "three applied commits lost their responses: {lost:?}"
    );
    assert!(lost.iter().all(|l| l["status"] == 200), "{lost:?}");
    assert!(
        stderr.contains("unknown"),
        "Kappa saw the outcomes as unknown: {stderr}"
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered())
    );
    let again = replay(Path::new(&path), &[]);
    assert_eq!(again["records_in"].as_u64(), Some(0), "{again}");
}

/// A backfill's publish (Kappa's own snapshot, committed by its REST commit) whose response is
/// lost after the catalog applied it: the backfill settles it from the table, reports it
/// published, and the table holds one publish, the archive's content.
#[test]
fn a_publish_the_catalog_applied_but_never_answered_is_reported_published_once() {
    let scene = Scene::on(Catalog::Rest, "lost_publish");
    let spec = HistorySpec {
        days: 4,
        partitions: 3,
        ..HistorySpec::new(6_000)
    };
    let expected = scene.write_local_archive(spec, ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &[]);
    let original = scene.read("pyiceberg", "orders");
    assert_table_matches(&original, &expected);
    let days: Vec<String> = scene.foreign_with("files", "orders", &[])["files"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let (from, to) = (days[1].clone(), days[2].clone());
    scene.foreign_with("break-days", "orders", &[&from, &to]);
    assert_ne!(
        scene.read("pyiceberg", "orders")["checksum"],
        original["checksum"]
    );

    let proxy = Proxy::start(&scene, &[1], &["close"]);
    let path = config.display().to_string();
    let out = kappa(
        &[
            "backfill", "-c", &path, "--from", &from, "--to", &to, "--json",
        ],
        &[("KAPPA__CATALOG__URI", proxy.uri.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
    assert_eq!(report["state"], "published", "{report}");
    let lost = proxy.lost();
    assert_eq!(lost.len(), 1, "the publish lost its response: {lost:?}");
    assert!(
        lost[0]["path"].as_str().unwrap().ends_with("/orders"),
        "{lost:?}"
    );

    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_table_matches(&read, &expected);
        assert_eq!(read["checksum"], original["checksum"], "{engine}");
    }
    let history = scene.python_tool("poll_table.py", "history", "orders", &[]);
    let publishes = history["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["backfill_id"].is_string())
        .count();
    assert_eq!(publishes, 1, "one publish in main's history: {history}");
}

/// A replay that outlives its catalog token several times: the proxy expires every token after
/// every 12 requests that carried one and answers 401 to it, as a catalog does past a token's
/// lifetime. The replay asks for a new token each time, commits everything once, and a rerun
/// has nothing to do.
#[test]
fn a_replay_outlives_its_catalog_tokens() {
    let (scene, expected, path) = replay_scene("tokens");
    let proxy = Proxy::start_with(&scene, &[], &["close"], &["--expire-tokens-every", "12"]);
    let out = kappa(
        &["replay", "-c", &path, "--json", "--set", "commit.rows=2000"],
        &[("KAPPA__CATALOG__URI", proxy.uri.as_str())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let refused = proxy
        .log()
        .iter()
        .filter(|e| e["expired"].is_string())
        .count();
    assert!(
        refused >= 1,
        "tokens expired during the replay ({refused} refusals): {:?}",
        proxy.log()
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    let again = replay(Path::new(&path), &[]);
    assert_eq!(again["records_in"].as_u64(), Some(0), "{again}");
}

/// Replicas of a new pipeline start at once (the chart's StatefulSet), each creating the namespace
/// and the table if missing. SeaweedFS shows a namespace another client is creating before it can
/// hold a table: for a moment its check answers 500 and a table created in it is refused as
/// "namespace not found". Four clients released together on each of eight new namespaces: every
/// one opens the table, and it is one table (one uuid).
#[test]
fn clients_creating_one_table_at_once_on_a_new_namespace_all_open_it() {
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    use kappa_iceberg::table::ensure_table;
    use kappa_iceberg::{CatalogConfig, CatalogType, TableSpec, connect};
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Arc;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for _ in 0..8 {
            let scene = Scene::on(Catalog::Rest, "create_race");
            let config = CatalogConfig {
                name: "kappa".into(),
                kind: CatalogType::Rest,
                uri: scene.catalog_uri.clone(),
                warehouse: scene.warehouse.clone(),
                properties: HashMap::from([("credential".into(), "test:testtest".into())]),
            };
            let spec = TableSpec {
                namespace: scene.namespace.clone(),
                name: "orders".into(),
                schema: Schema::builder()
                    .with_fields(vec![
                        NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                    ])
                    .build()
                    .unwrap(),
                partition_by: Vec::new(),
                properties: HashMap::new(),
            };
            let start = Arc::new(tokio::sync::Barrier::new(4));
            let mut clients = Vec::new();
            for _ in 0..4 {
                let (config, spec, start) = (config.clone(), spec.clone(), start.clone());
                clients.push(tokio::spawn(async move {
                    let catalog = connect(&config).await.unwrap();
                    start.wait().await;
                    ensure_table(catalog.as_ref(), &spec)
                        .await
                        .map(|table| table.metadata().uuid())
                }));
            }
            let mut tables = BTreeSet::new();
            for client in clients {
                match client.await.unwrap() {
                    Ok(uuid) => tables.insert(uuid),
                    Err(e) => panic!("{}: {e}", scene.namespace),
                };
            }
            assert_eq!(tables.len(), 1, "{}: tables {tables:?}", scene.namespace);
        }
    });
}

/// A first start opens its four tables at once (main, dead-letter, late rows, quarantine): on a
/// new namespace their creations race to create it, and SeaweedFS shows it half made for a
/// moment. On each of three new namespaces: the replay completes with every table created, the
/// table holds the archive, and a second start opens the same four tables (the same uuids) with
/// nothing left to do.
#[test]
fn a_first_start_creates_its_four_tables_at_once_on_a_new_namespace() {
    const TABLES: [&str; 4] = ["orders", "orders_dlq", "orders_late", "orders_quarantine"];
    for _ in 0..3 {
        let scene = Scene::on(Catalog::Rest, "four_tables");
        let expected =
            scene.write_local_archive(HistorySpec::new(5_000), ArchiveOptions::default());
        let config = scene.config(
            "[event_time]\nlate_policy = \"late_table\"\n\n[quality.gates.null_rate]\npolicy = \"quarantine\"\n",
        );
        let uuids = || -> Vec<Value> {
            TABLES
                .iter()
                .map(|table| scene.read_kappa_metadata(table)["uuid"].clone())
                .collect()
        };
        let first = replay(&config, &[]);
        assert_eq!(
            first["rows_written"].as_u64(),
            Some(expected.rows),
            "{}: {first}",
            scene.namespace
        );
        let created = uuids();
        assert!(
            created.iter().all(Value::is_string),
            "{}: {created:?}",
            scene.namespace
        );
        assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
        let again = replay(&config, &[]);
        assert_eq!(again["rows_written"].as_u64(), Some(0), "{again}");
        assert_eq!(
            uuids(),
            created,
            "{}: the second start opened other tables",
            scene.namespace
        );
    }
}
