//! `kappa maintain` on tables a killed replay left behind: compaction, snapshot expiry and orphan
//! cleanup keep the content, leave the files and snapshots they promise, and a rerun of the
//! replay stays a no-op. Expectations come from the generated input and from what PyIceberg and
//! a listing of the table's location say, never from Kappa's own report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kappa_integration_tests::endpoint::{http_get, sample, serve_metrics, terminate};
use kappa_integration_tests::kafka::{
    brokers, create_topic, live_scene_on, produce, producer, run_live, unique_topic,
    wait_until_committed,
};
use kappa_integration_tests::{
    Catalog, PACED, Scene, assert_table_matches, kappa, kappa_bin, last_line, replay, spawn_kappa,
};
use kappa_synth::{ArchiveOptions, Expected, HistorySpec};
use serde_json::Value;

/// Small enough that a day of the test's tables needs a few files.
const TARGET: u64 = 96 * 1024;

fn maintain(config: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["maintain"];
    all.extend_from_slice(&args[..1]);
    all.extend_from_slice(&["-c", config, "--json"]);
    all.extend_from_slice(&args[1..]);
    kappa(&all, envs)
}

fn maintain_ok(config: &str, args: &[&str]) -> Value {
    let out = maintain(config, args, &[]);
    assert!(
        out.status.success(),
        "kappa maintain {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(last_line(&out.stdout)).unwrap()
}

/// `compact` of every day, whether closed or not, with `--set <target>`.
fn compact_every_day(target: &str) -> [&str; 7] {
    [
        "compact",
        "--from",
        "1970-01-01",
        "--to",
        "2100-01-01",
        "--set",
        target,
    ]
}

fn without_scheme(path: &str) -> String {
    path.strip_prefix("file://").unwrap_or(path).to_string()
}

/// An archive of `events` for `scene`, and its pipeline file (batches of 500 rows).
fn archive(scene: &Scene, events: u64) -> (String, Expected) {
    let expected = scene.write_local_archive(
        HistorySpec::new(events),
        ArchiveOptions {
            flush_size: 1_000,
            ..ArchiveOptions::default()
        },
    );
    let config = scene
        .config("[replay]\nbatch_rows = 500\n")
        .display()
        .to_string();
    (config, expected)
}

/// A replay of `events` into `scene`'s table with a commit every 1,000 rows, killed twice while
/// it writes data files (their files stay behind, unreferenced), then completed.
fn killed_then_completed_replay(scene: &Scene, events: u64) -> (String, Expected) {
    let (config, expected) = archive(scene, events);
    let args = ["replay", "-c", config.as_str(), "--set", "commit.rows=1000"];
    let data = || scene.count_table_files("orders", "data", ".parquet");
    for kill in 0..2 {
        let before = data();
        let mut child = spawn_kappa(&args, &[PACED]);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while data() <= before + 3 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "kill {kill}: the replay ended before the progress the kill waits for"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "kill {kill}: no progress"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "kill {kill}: nothing to interrupt"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let partial = scene.read("pyiceberg", "orders")["rows"].as_u64().unwrap();
    assert!(partial < expected.rows, "the kills interrupted nothing");
    let summary = replay(
        std::path::Path::new(&config),
        &["--set", "commit.rows=1000"],
    );
    assert_eq!(summary["complete"], true, "{summary}");
    (config, expected)
}

/// What PyIceberg says the table references, and what is under its location.
struct Files {
    pyiceberg: Value,
    listed: Vec<(String, u64)>,
}

fn files(scene: &Scene, table: &str) -> Files {
    Files {
        pyiceberg: scene.python_tool("table_files.py", "pyiceberg", table, &[]),
        listed: scene.list_table_files(table),
    }
}

impl Files {
    fn referenced(&self) -> BTreeSet<String> {
        let mut referenced: BTreeSet<String> = self.pyiceberg["referenced"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| without_scheme(p.as_str().unwrap()))
            .collect();
        if let Some(archive) = self.pyiceberg["history_archive"].as_str() {
            referenced.insert(without_scheme(archive));
        }
        referenced
    }

    fn unreferenced(&self) -> Vec<String> {
        let referenced = self.referenced();
        self.listed
            .iter()
            .map(|(path, _)| without_scheme(path))
            .filter(|path| {
                !referenced.contains(path) && !path.contains("/metadata/kappa-backfill-")
            })
            .collect()
    }

    /// Data files and bytes per day directory (`event_time_day=...`) of what is listed.
    fn per_day(&self) -> BTreeMap<String, (usize, u64)> {
        let mut days = BTreeMap::new();
        for (path, size) in self.listed.iter().filter(|(p, _)| p.ends_with(".parquet")) {
            let day = path
                .split('/')
                .find(|part| part.starts_with("event_time_day="))
                .unwrap_or("unpartitioned")
                .to_string();
            let entry = days.entry(day).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += size;
        }
        days
    }
}

#[test]
fn compact_expire_and_orphans_after_a_killed_replay_keep_every_row_once() {
    compact_expire_and_orphans_after_a_killed_replay_keep_every_row_once_on(Catalog::Sql);
}

#[test]
fn compact_expire_and_orphans_after_a_killed_replay_keep_every_row_once_on_rest() {
    compact_expire_and_orphans_after_a_killed_replay_keep_every_row_once_on(Catalog::Rest);
}

fn compact_expire_and_orphans_after_a_killed_replay_keep_every_row_once_on(catalog: Catalog) {
    let scene = Scene::on(catalog, "maintain");
    let (config, expected) = killed_then_completed_replay(&scene, 40_000);
    let before = files(&scene, "orders");
    assert!(
        !before.unreferenced().is_empty(),
        "the kills left no orphan: the cleanup would have nothing to prove"
    );
    let days_before = before.per_day();
    assert!(
        days_before
            .values()
            .any(|(n, bytes)| *n > bytes.div_ceil(TARGET) as usize),
        "no day has more files than it needs: {days_before:?}"
    );
    let quality_before = quality_report(&config);

    let target = format!("table.target_file_size={TARGET}");
    let compacted = maintain_ok(&config, &compact_every_day(&target));
    let main = &compacted["tables"][0];
    assert_eq!(main["table"], format!("{}.orders", scene.namespace));
    assert!(
        main["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["outcome"] == "rewritten"),
        "{compacted}"
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }

    maintain_ok(
        &config,
        &["expire", "--older-than", "0s", "--retain-last", "1"],
    );
    maintain_ok(&config, &["orphans", "--older-than", "0s"]);

    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    let after = files(&scene, "orders");
    assert_eq!(after.pyiceberg["snapshots"], 1, "one snapshot remains");
    assert_eq!(
        after.unreferenced(),
        Vec::<String>::new(),
        "no unreferenced file remains"
    );
    let referenced = after.referenced();
    let listed: BTreeSet<String> = after
        .listed
        .iter()
        .map(|(p, _)| without_scheme(p))
        .collect();
    assert!(
        referenced.is_subset(&listed),
        "a referenced file was deleted: {:?}",
        referenced.difference(&listed).collect::<Vec<_>>()
    );
    let days_after = after.per_day();
    assert_eq!(
        days_after.keys().collect::<Vec<_>>(),
        days_before.keys().collect::<Vec<_>>()
    );
    for (day, (n, bytes)) in &days_after {
        assert!(
            *n <= bytes.div_ceil(TARGET) as usize,
            "{day}: {n} files of {bytes} bytes at a target of {TARGET}"
        );
    }
    // The side tables were maintained too: the dead-letter table holds one snapshot.
    assert_eq!(files(&scene, "orders_dlq").pyiceberg["snapshots"], 1);
    // The verdicts of the expired commits are still reported.
    assert_eq!(quality_report(&config), quality_before);

    // A rerun of the replay commits nothing.
    let snapshot = after.pyiceberg["referenced"].clone();
    let summary = replay(
        std::path::Path::new(&config),
        &["--set", "commit.rows=1000"],
    );
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(
        files(&scene, "orders").pyiceberg["referenced"],
        snapshot,
        "the rerun changed the table"
    );
    assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
}

/// `kappa quality report --json`'s days and commits (what an operator reads after expiry).
fn quality_report(config: &str) -> Value {
    let out = kappa(
        &[
            "quality", "report", "-c", config, "--json", "--last", "1000",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
    assert!(
        report.to_string().contains("partition"),
        "the report holds no verdict to compare: {report}"
    );
    report
}

/// Runs `kappa maintain ARGS` with the crash point `point` active (`FAILPOINTS` actions) and
/// asserts the process aborted there.
fn crash_in(config: &str, args: &[&str], point: &str, actions: &str) {
    let out = maintain(
        config,
        args,
        &[("FAILPOINTS", &format!("{point}={actions}"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("crash point {point} reached")),
        "kappa maintain {args:?} must abort at {point} (is kappa built with --features \
         kappa/failpoints? make test does): {:?} {stderr}",
        out.status
    );
}

/// A replay of `events` with a commit every 1,000 rows, run to completion.
fn small_commits(scene: &Scene, events: u64) -> (String, Expected) {
    let (config, expected) = archive(scene, events);
    let summary = replay(
        std::path::Path::new(&config),
        &["--set", "commit.rows=1000"],
    );
    assert_eq!(summary["complete"], true, "{summary}");
    (config, expected)
}

#[test]
fn a_crash_inside_each_maintenance_command_is_completed_by_a_rerun_and_never_seen_by_readers() {
    let scene = Scene::local();
    let (config, expected) = small_commits(&scene, 20_000);
    let target = format!("table.target_file_size={TARGET}");
    let compact = compact_every_day(&target);
    let snapshots = || {
        files(&scene, "orders").pyiceberg["snapshots"]
            .as_u64()
            .unwrap()
    };
    let reads_expected = |after: &str| {
        let read = scene.read("pyiceberg", "orders");
        assert_eq!(read["rows"].as_u64(), Some(expected.rows), "after {after}");
        assert_table_matches(&read, &expected);
    };

    // Compaction: killed with a partition's files written and nothing committed, with a
    // snapshot staged, and right after the catalog took one; each commit is one whole partition.
    let before = snapshots();
    for (point, actions) in [
        ("maintain::compact::written", "return"),
        ("producer::staged", "1*off->return"),
        ("producer::committed", "2*off->return"),
    ] {
        crash_in(&config, &compact, point, actions);
        reads_expected(point);
    }
    assert!(
        snapshots() > before,
        "no crash let a partition's rewrite through"
    );
    let compacted = maintain_ok(&config, &compact);
    assert!(
        compacted["tables"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["outcome"] == "rewritten"),
        "the rerun had nothing left to compact: the crashes interrupted nothing: {compacted}"
    );
    reads_expected("the compaction's rerun");
    let again = maintain_ok(&config, &compact);
    assert_eq!(
        again["tables"][0]["partitions"],
        serde_json::json!([]),
        "{again}"
    );

    // Expiry: killed before its commit (nothing changes), then after it (the snapshots are gone,
    // their files not yet: the rerun finds nothing to expire, the orphan cleanup removes them).
    let expire = ["expire", "--older-than", "0s", "--retain-last", "1"];
    let before = snapshots();
    crash_in(&config, &expire, "maintain::expire::staged", "return");
    assert_eq!(
        snapshots(),
        before,
        "an expiry killed before its commit changed the table"
    );
    reads_expected("maintain::expire::staged");
    crash_in(&config, &expire, "maintain::expire::committed", "return");
    assert_eq!(snapshots(), 1);
    reads_expected("maintain::expire::committed");
    let left = files(&scene, "orders").unreferenced();
    assert!(
        !left.is_empty(),
        "the killed expiry deleted its files: it was killed too late"
    );
    maintain_ok(&config, &expire);

    // Orphan cleanup: killed after its first deletion, then rerun.
    crash_in(
        &config,
        &["orphans", "--older-than", "0s"],
        "maintain::orphans::deleted",
        "return",
    );
    reads_expected("maintain::orphans::deleted");
    maintain_ok(&config, &["orphans", "--older-than", "0s"]);
    assert_eq!(files(&scene, "orders").unreferenced(), Vec::<String>::new());
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
}

#[test]
fn an_orphan_younger_than_the_grace_period_is_kept() {
    let scene = Scene::local();
    let (config, expected) = small_commits(&scene, 5_000);
    let data_file = scene
        .list_table_files("orders")
        .into_iter()
        .map(|(path, _)| path)
        .find(|path| path.ends_with(".parquet"))
        .unwrap();
    // Two copies no metadata references: one two days old, one just written (a flush in flight).
    let old = data_file.replace(".parquet", "-old-orphan.parquet");
    let young = data_file.replace(".parquet", "-young-orphan.parquet");
    std::fs::copy(&data_file, &old).unwrap();
    std::fs::copy(&data_file, &young).unwrap();
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();

    let dry = maintain_ok(&config, &["orphans", "--older-than", "1d", "--dry-run"]);
    assert!(
        std::path::Path::new(&old).exists(),
        "--dry-run deleted a file"
    );
    assert_eq!(
        dry["tables"][0]["orphans"].as_array().unwrap().len(),
        1,
        "{dry}"
    );
    let done = maintain_ok(&config, &["orphans", "--older-than", "1d"]);
    assert!(
        !std::path::Path::new(&old).exists(),
        "the old orphan is still there: {done}"
    );
    assert!(
        std::path::Path::new(&young).exists(),
        "the young orphan was deleted: {done}"
    );
    assert_eq!(done["tables"][0]["young"], 1, "{done}");
    assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
}

#[test]
fn compaction_while_kappa_run_appends_to_the_same_table_loses_and_repeats_nothing() {
    let topic = unique_topic("compact-live");
    create_topic(&brokers(), &topic, 3);
    let (scene, config) = live_scene_on(Catalog::Sql, &brokers(), &topic);
    let config_arg = config.display().to_string();
    let history = kappa_synth::History::new(HistorySpec {
        topic: topic.clone(),
        partitions: 3,
        days: 3,
        ..HistorySpec::new(24_000)
    })
    .unwrap();
    let producing = std::thread::spawn({
        let topic = topic.clone();
        move || produce(&producer(&brokers()), &topic, history, 2_000)
    });
    let mut child = run_live(&config, &[]);
    // Compactions of every day, the ones the live run appends to included, while the producer
    // runs; each must succeed, and between them the live run must commit.
    let target = format!("table.target_file_size={TARGET}");
    let compact = compact_every_day(&target);
    let metadata = || scene.count_table_files("orders", "metadata", ".metadata.json");
    let mut rewritten = 0;
    let mut rounds = 0;
    let mut count = |out: Value| {
        rewritten += out["tables"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["outcome"] == "rewritten")
            .count();
    };
    while !producing.is_finished() {
        let commits = metadata();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while metadata() < commits + 2 && !producing.is_finished() {
            assert!(child.try_wait().unwrap().is_none(), "the live run ended");
            assert!(
                std::time::Instant::now() < deadline,
                "the live run stopped committing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        count(maintain_ok(&config_arg, &compact));
        rounds += 1;
    }
    let expected = producing.join().unwrap();
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(120));
    count(maintain_ok(&config_arg, &compact));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "the live run failed: {summary}");
    assert!(
        rewritten >= 2,
        "{rounds} compactions rewrote {rewritten} partitions: nothing ran concurrently"
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
}

#[test]
fn kappa_maintain_all_serves_metrics_that_match_the_table_it_left() {
    let scene = Scene::local();
    let (config, expected) = small_commits(&scene, 20_000);
    let addr = serve_metrics(std::path::Path::new(&config), "linger = \"10m\"");
    let target = format!("table.target_file_size={TARGET}");
    let mut child = std::process::Command::new(kappa_bin())
        .args(["maintain", "all", "-c", &config, "--json", "--set", &target])
        .args(["--set", "maintenance.expire_older_than=0s"])
        .args(["--set", "maintenance.retain_last=1"])
        .args(["--set", "maintenance.orphan_older_than=0s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // One JSON line per command, printed before the linger starts.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let printed: Vec<Value> = (0..3)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap())
        .collect();
    assert_eq!(printed[2]["command"], "orphans");
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let (code, _) = terminate(child);
    assert_eq!(code, Some(0), "SIGTERM ends the linger");

    // What the table's location holds now, and what PyIceberg says of it.
    let table = format!("{}.orders", scene.namespace);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    let after = files(&scene, "orders");
    let data: Vec<&(String, u64)> = after
        .listed
        .iter()
        .filter(|(p, _)| p.ends_with(".parquet"))
        .collect();
    let rewritten: u64 = data
        .iter()
        .filter(|(p, _)| p.rsplit('/').next().unwrap().starts_with("compact-"))
        .map(|(_, size)| size)
        .sum();
    assert!(rewritten > 0, "the compaction wrote nothing");
    let per_day = after.per_day();
    assert_eq!(value("kappa_table_snapshots", &[("table", &table)]), 1.0);
    assert_eq!(after.pyiceberg["snapshots"], 1);
    assert_eq!(
        value("kappa_table_data_files", &[("table", &table)]),
        data.len() as f64
    );
    assert_eq!(
        value("kappa_table_data_bytes", &[("table", &table)]),
        data.iter().map(|(_, size)| *size).sum::<u64>() as f64
    );
    assert_eq!(
        value("kappa_table_partitions", &[("table", &table)]),
        per_day.len() as f64
    );
    assert_eq!(
        value("kappa_table_partition_files_max", &[("table", &table)]),
        per_day.values().map(|(n, _)| *n).max().unwrap() as f64
    );
    assert_eq!(
        value(
            "kappa_maintenance_bytes_rewritten_total",
            &[("table", &table)]
        ),
        rewritten as f64
    );
    assert_eq!(
        value("kappa_table_target_file_size_bytes", &[("table", &table)]),
        TARGET as f64
    );
    for command in ["compact", "expire", "orphans"] {
        assert!(
            value(
                "kappa_maintenance_last_success_timestamp_seconds",
                &[("table", &table), ("command", command)]
            ) > 1.7e9
        );
    }
    assert!(
        value(
            "kappa_maintenance_snapshots_expired_total",
            &[("table", &table)]
        ) >= 19.0
    );
    assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
}

#[test]
fn orphan_cleanup_keeps_what_a_staged_backfill_waits_to_publish() {
    let scene = Scene::local();
    let (config, expected) = small_commits(&scene, 6_000);
    let days: Vec<String> = files(&scene, "orders")
        .per_day()
        .into_keys()
        .filter_map(|d| d.strip_prefix("event_time_day=").map(str::to_string))
        .collect();
    let (from, to) = (days[1].as_str(), days[2].as_str());
    let backfill = |args: &[&str]| {
        let mut all = vec!["backfill"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-c", &config, "--from", from, "--to", to, "--json"]);
        let out = kappa(&all, &[]);
        assert!(
            out.status.success(),
            "kappa {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Planned and staged by its one shard: files no snapshot references yet.
    backfill(&["plan", "--shards", "1"]);
    let before: BTreeSet<String> = scene
        .list_table_files("orders")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    backfill(&["--shard", "0/1"]);
    let staged: Vec<String> = scene
        .list_table_files("orders")
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        staged.iter().any(|p| p.ends_with(".parquet")),
        "the shard staged no data file: {staged:?}"
    );
    let cleaned = maintain_ok(&config, &["orphans", "--older-than", "0s"]);
    for path in &staged {
        assert!(
            std::path::Path::new(path).exists(),
            "orphan cleanup deleted {path}, which the backfill waits to publish: {cleaned}"
        );
    }
    backfill(&["publish"]);
    assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
}
