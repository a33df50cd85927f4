//! `kappa backfill` end to end on the local filesystem with a SQLite catalog: days another
//! engine broke are restored to exactly the archive's content, other days' files are never
//! rewritten, reruns change nothing, gates and dry runs leave main untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use kappa_integration_tests::{Catalog, Scene, assert_table_matches, kappa, last_line, replay};
use kappa_synth::{ArchiveOptions, HistorySpec};
use serde_json::Value;

fn backfill(
    config: &std::path::Path,
    from: &str,
    to: &str,
    extra: &[&str],
) -> (Option<i32>, Value, String) {
    let path = config.display().to_string();
    let mut args = vec![
        "backfill", "-c", &path, "--from", from, "--to", to, "--json",
    ];
    args.extend_from_slice(extra);
    let out = kappa(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report = serde_json::from_slice(last_line(&out.stdout)).unwrap_or(Value::Null);
    (out.status.code(), report, stderr)
}

/// Archive files of 500 records: several per partition and day.
fn small_files() -> ArchiveOptions {
    ArchiveOptions {
        flush_size: 500,
        ..ArchiveOptions::default()
    }
}

/// `spec`'s history archived in small files and replayed into the scene's table: what the
/// table holds, and the pipeline file.
fn replayed(scene: &Scene, spec: HistorySpec) -> (kappa_synth::Expected, std::path::PathBuf) {
    let expected = scene.write_local_archive(spec, small_files());
    let config = scene.config("");
    replay(&config, &[]);
    (expected, config)
}

fn files(scene: &Scene) -> BTreeMap<String, Vec<String>> {
    serde_json::from_value(scene.foreign_with("files", "orders", &[])["files"].clone()).unwrap()
}

fn day<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == name)
        .unwrap_or_else(|| panic!("no day {name} in {report}"))
}

#[test]
fn a_backfill_restores_the_days_another_engine_broke_and_rewrites_no_other_day() {
    a_backfill_restores_the_days_another_engine_broke_and_rewrites_no_other_day_on(Catalog::Sql);
}

#[test]
fn a_backfill_restores_the_days_another_engine_broke_and_rewrites_no_other_day_on_rest() {
    a_backfill_restores_the_days_another_engine_broke_and_rewrites_no_other_day_on(Catalog::Rest);
}

fn a_backfill_restores_the_days_another_engine_broke_and_rewrites_no_other_day_on(
    catalog: Catalog,
) {
    let scene = Scene::on(catalog, "restore");
    let spec = HistorySpec {
        days: 4,
        partitions: 3,
        ..HistorySpec::new(8_000)
    };
    let (expected, config) = replayed(&scene, spec);
    let original = scene.read("pyiceberg", "orders");
    assert_table_matches(&original, &expected);
    let dlq_rows = scene.read("pyiceberg", "orders_dlq")["rows"]
        .as_u64()
        .unwrap();
    assert!(dlq_rows > 0, "the archive has dead letters");
    let before = files(&scene);
    let days: Vec<&String> = before.keys().collect();
    assert!(days.len() >= 4, "{before:?}");
    let (deleted, junk) = (days[1].clone(), days[2].clone());

    scene.foreign_with("break-days", "orders", &[&deleted, &junk]);
    let broken = scene.read("pyiceberg", "orders");
    assert_ne!(broken["checksum"], original["checksum"]);
    let deleted_rows = original["rows"].as_u64().unwrap() + 10 - broken["rows"].as_u64().unwrap();

    // A dry run audits and leaves main as it is.
    let (code, report, stderr) = backfill(&config, &deleted, &junk, &["--dry-run"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["state"], "dry-run");
    let gone = day(&report, &deleted);
    assert_eq!(gone["rows_before"], 0, "{report}");
    assert_eq!(gone["rows_after"].as_u64(), Some(deleted_rows), "{report}");
    assert_eq!(gone["keys_new"].as_u64(), Some(deleted_rows), "{report}");
    let spoilt = day(&report, &junk);
    assert_eq!(
        spoilt["keys_missing"], 10,
        "the junk rows are gone after: {report}"
    );
    assert_eq!(spoilt["keys_new"], 0, "{report}");
    assert_eq!(
        spoilt["rows_before"].as_u64().unwrap() - spoilt["rows_after"].as_u64().unwrap(),
        10
    );
    assert_eq!(
        scene.read("pyiceberg", "orders")["checksum"],
        broken["checksum"]
    );

    // The backfill restores exactly the archive's content.
    let (code, report, stderr) = backfill(&config, &deleted, &junk, &[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["state"], "published", "{report}");
    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_table_matches(&read, &expected);
        assert_eq!(read["checksum"], original["checksum"], "{engine}");
    }
    let after = files(&scene);
    for (name, paths) in &before {
        if *name != deleted && *name != junk {
            assert_eq!(
                after.get(name),
                Some(paths),
                "day {name}'s files were rewritten"
            );
        }
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(dlq_rows),
        "the dead letters of reprocessed records are not added again"
    );

    // Again: the same content, both days unchanged in the audit.
    let (code, again, stderr) = backfill(&config, &deleted, &junk, &[]);
    assert_eq!(code, Some(0), "{again} {stderr}");
    for name in [&deleted, &junk] {
        assert_eq!(day(&again, name)["unchanged"], true, "{again}");
    }
    assert_eq!(
        scene.read("pyiceberg", "orders")["checksum"],
        original["checksum"]
    );

    // The position state is as true as before: a replay has nothing to do.
    let replayed = replay(&config, &[]);
    assert_eq!(replayed["records_in"].as_u64(), Some(0), "{replayed}");
    assert_eq!(replayed["commits"].as_u64(), Some(0), "{replayed}");
}

#[test]
fn a_blocking_gate_stops_a_backfill_with_exit_3_and_main_untouched() {
    let scene = Scene::local();
    let spec = HistorySpec {
        days: 3,
        partitions: 2,
        ..HistorySpec::new(3_000)
    };
    scene.write_local_archive(spec, ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &[]);
    let before = scene.read("pyiceberg", "orders");
    let days: Vec<String> = files(&scene).into_keys().collect();
    // A full day (the first can hold a single early event).
    let full = &days[days.len() / 2];
    let (code, report, stderr) = backfill(
        &config,
        full,
        full,
        &[
            "--set",
            "quality.gates.uniqueness.column=user_id",
            "--set",
            "quality.gates.uniqueness.policy=block",
        ],
    );
    assert_eq!(code, Some(3), "{report} {stderr}");
    assert_eq!(report["state"], "blocked", "{report}");
    assert!(stderr.contains("main is untouched"), "{stderr}");
    assert_eq!(
        scene.read("pyiceberg", "orders")["checksum"],
        before["checksum"]
    );

    let (code, _, stderr) = backfill(&config, full, &days[0], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--to"), "{stderr}");
}

/// A scene whose main table lost two days to another engine and whose dead-letter table lost
/// partition 0's rows: (scene, config, original checksum, broken checksum, dead letters, days).
fn broken_scene(
    catalog: Catalog,
    events: u64,
) -> (Scene, std::path::PathBuf, Value, Value, u64, [String; 2]) {
    let scene = Scene::on(catalog, "broken");
    let spec = HistorySpec {
        days: 4,
        partitions: 3,
        ..HistorySpec::new(events)
    };
    scene.write_local_archive(spec, ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &[]);
    let original = scene.read("pyiceberg", "orders")["checksum"].clone();
    let dead = scene.read("pyiceberg", "orders_dlq")["rows"]
        .as_u64()
        .unwrap();
    let days: Vec<String> = files(&scene).into_keys().collect();
    let pair = [days[1].clone(), days[2].clone()];
    scene.foreign_with("break-days", "orders", &[&pair[0], &pair[1]]);
    scene.foreign_with("delete-partition", "orders_dlq", &["0"]);
    let left = scene.read("pyiceberg", "orders_dlq")["rows"]
        .as_u64()
        .unwrap();
    assert!(left < dead, "partition 0 had dead letters");
    let broken = scene.read("pyiceberg", "orders")["checksum"].clone();
    (scene, config, original, broken, dead, pair)
}

#[test]
fn a_backfill_killed_at_every_step_leaves_main_whole_and_a_rerun_completes_it_once() {
    a_backfill_killed_at_every_step_leaves_main_whole_and_a_rerun_completes_it_once_on(
        Catalog::Sql,
    );
}

#[test]
fn a_backfill_killed_at_every_step_leaves_main_whole_and_a_rerun_completes_it_once_on_rest() {
    a_backfill_killed_at_every_step_leaves_main_whole_and_a_rerun_completes_it_once_on(
        Catalog::Rest,
    );
}

fn a_backfill_killed_at_every_step_leaves_main_whole_and_a_rerun_completes_it_once_on(
    catalog: Catalog,
) {
    let (scene, config, original, broken, dead, [from, to]) = broken_scene(catalog, 6_000);
    let path = config.display().to_string();
    let points = [
        ("backfill::read", false),
        ("backfill::staged", false),
        ("producer::staged", false),
        ("producer::committed", true),
        ("backfill::published", true),
    ];
    for (point, published) in points {
        let out = kappa(
            &["backfill", "-c", &path, "--from", &from, "--to", &to],
            &[("FAILPOINTS", &format!("{point}=return"))],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("crash point {point} reached")),
            "{point} was never reached: {stderr}"
        );
        assert!(
            !out.status.success(),
            "{point}: the kill interrupted nothing"
        );
        let now = scene.read("pyiceberg", "orders")["checksum"].clone();
        if published {
            assert_eq!(now, original, "{point}: the catalog took the publish");
        } else {
            assert_eq!(now, broken, "{point}: main changed before the publish");
        }
        let dlq = scene.read("pyiceberg", "orders_dlq")["rows"]
            .as_u64()
            .unwrap();
        assert!(
            dlq <= dead,
            "{point}: dead letters added twice ({dlq} > {dead})"
        );
    }
    let (code, report, stderr) = backfill(&config, &from, &to, &[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_eq!(
            scene.read(engine, "orders")["checksum"],
            original,
            "{engine}"
        );
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(dead),
        "every dead letter exactly once"
    );
    let replayed = replay(&config, &[]);
    assert_eq!(replayed["records_in"].as_u64(), Some(0), "{replayed}");
}

#[test]
fn rows_a_replay_commits_to_the_days_while_a_backfill_runs_are_kept_by_its_publish() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let scene = Scene::local();
    let spec = HistorySpec {
        days: 4,
        partitions: 2,
        ..HistorySpec::new(8_000)
    };
    let expected = scene.write_local_archive(spec, small_files());
    // The newest object of each partition is not archived yet.
    let held = scene.path("held");
    std::fs::create_dir_all(&held).unwrap();
    let mut moved = Vec::new();
    for dir in std::fs::read_dir(scene.path("archive/orders")).unwrap() {
        let dir = dir.unwrap().path();
        let offset = |p: &std::path::PathBuf| -> i64 {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            name.rsplit('+').next().unwrap().parse().unwrap()
        };
        let newest = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .max_by_key(offset)
            .unwrap();
        let aside = held.join(newest.file_name().unwrap());
        std::fs::rename(&newest, &aside).unwrap();
        moved.push((aside, newest));
    }
    let config = scene.config("");
    replay(&config, &[]);
    let days: Vec<String> = files(&scene).into_keys().collect();
    // The newest day the table holds, and the next (the objects not archived yet may reach it).
    let from = days.last().unwrap().clone();
    let to = (chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").unwrap()
        + chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();

    // The backfill stops for a while once its files are staged (long enough for the replay
    // below on a loaded machine; it must commit before the publish) ...
    let mut child = Command::new(kappa_integration_tests::kappa_bin())
        .args(["backfill", "-c"])
        .arg(&config)
        .args(["--from", &from, "--to", &to, "--json"])
        .env("FAILPOINTS", "backfill::staged=sleep(15000)")
        .env("KAPPA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (staged_tx, staged) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("reprocessed the archive into staged files") {
                let _ = staged_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    if staged
        .recv_timeout(std::time::Duration::from_secs(120))
        .is_err()
    {
        let _ = child.kill();
        panic!(
            "the backfill never staged its files: {}",
            log.join().unwrap()
        );
    }
    // ... while the rest of the archive arrives and a replay commits it, to those days too.
    for (aside, back) in &moved {
        std::fs::rename(aside, back).unwrap();
    }
    let caught_up = replay(&config, &[]);
    assert!(
        caught_up["rows_written"].as_u64().unwrap() > 0,
        "{caught_up}"
    );
    let out = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(out.status.success(), "{log}");
    let report: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
    assert_eq!(report["state"], "published", "{report}");
    assert!(
        report["kept_files"].as_u64().unwrap() >= 1,
        "the replay's files of those days were folded in: {report}"
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    let again = replay(&config, &[]);
    assert_eq!(again["records_in"].as_u64(), Some(0), "{again}");
}

/// A PyIceberg reader polls main while a backfill replaces two days: it sees the broken days
/// until the publish and the restored ones after, never a mix; main's history holds exactly one
/// snapshot between the two contents.
fn readers_see_the_old_days_or_the_new_ones_never_a_mix(scene: Scene, on_s3: bool) {
    let spec = HistorySpec {
        days: 4,
        partitions: 3,
        ..HistorySpec::new(6_000)
    };
    if on_s3 {
        scene.write_s3_archive(spec, ArchiveOptions::default());
    } else {
        scene.write_local_archive(spec, ArchiveOptions::default());
    }
    let config = scene.config("");
    replay(&config, &[]);
    let original = scene.read("pyiceberg", "orders")["checksum"].clone();
    let days: Vec<String> = files(&scene).into_keys().collect();
    let (from, to) = (days[1].clone(), days[2].clone());
    scene.foreign_with("break-days", "orders", &[&from, &to]);
    let broken = scene.read("pyiceberg", "orders")["checksum"].clone();

    let stop = scene.path("stop");
    let mut poller = scene
        .python_command(
            "poll_table.py",
            "poll",
            "orders",
            &["--until", &stop.display().to_string()],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader has read main once before the backfill starts.
    let mut stdout = std::io::BufReader::new(poller.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("\"first\""), "{first}");
    let path = config.display().to_string();
    // The publish comes a few seconds after the files are staged: the reader polls meanwhile.
    let out = kappa(
        &[
            "backfill", "-c", &path, "--from", &from, "--to", &to, "--json",
        ],
        &[("FAILPOINTS", "backfill::staged=sleep(2000)")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::write(&stop, "").unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let polled = poller.wait_with_output().unwrap();
    assert!(
        polled.status.success(),
        "{}",
        String::from_utf8_lossy(&polled.stderr)
    );
    let polled: Value = serde_json::from_slice(last_line(&rest)).unwrap();
    let seen: Vec<&Value> = polled["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["checksum"])
        .collect();
    assert_eq!(seen, vec![&broken, &original], "{polled}");
    assert!(polled["reads"].as_u64().unwrap() > 2, "{polled}");

    let history = scene.python_tool("poll_table.py", "history", "orders", &[]);
    let snapshots = history["snapshots"].as_array().unwrap();
    let last = snapshots.last().unwrap();
    assert_eq!(last["checksum"], original, "{history}");
    assert_eq!(last["operation"], "overwrite", "{history}");
    assert_eq!(
        snapshots[snapshots.len() - 2]["checksum"],
        broken,
        "one snapshot between the broken days and the restored ones: {history}"
    );
}

#[test]
fn readers_of_a_sqlite_catalog_see_the_old_days_or_the_new_ones() {
    readers_see_the_old_days_or_the_new_ones_never_a_mix(Scene::local(), false);
}

#[test]
fn readers_of_a_postgres_catalog_on_s3_see_the_old_days_or_the_new_ones() {
    readers_see_the_old_days_or_the_new_ones_never_a_mix(Scene::s3_postgres("backfill_iso"), true);
}

#[test]
fn readers_of_a_rest_catalog_see_the_old_days_or_the_new_ones() {
    readers_see_the_old_days_or_the_new_ones_never_a_mix(Scene::rest("backfill_iso"), false);
}

#[test]
fn four_shard_processes_and_one_publish_give_the_table_one_process_gives() {
    four_shard_processes_and_one_publish_give_the_table_one_process_gives_on(Catalog::Sql);
}

/// On a REST catalog whose warehouse accepts only Iceberg-named files under a table (SeaweedFS's
/// table bucket refuses a `.json` there): the plan and the shard manifests are Avro.
#[test]
fn four_shard_processes_and_one_publish_give_the_table_one_process_gives_on_rest() {
    four_shard_processes_and_one_publish_give_the_table_one_process_gives_on(Catalog::Rest);
}

fn four_shard_processes_and_one_publish_give_the_table_one_process_gives_on(catalog: Catalog) {
    let scenes = [
        Scene::on(catalog, "shards_one"),
        Scene::on(catalog, "shards_four"),
    ];
    let mut setups = Vec::new();
    for scene in &scenes {
        let spec = HistorySpec {
            days: 4,
            partitions: 6,
            ..HistorySpec::new(9_000)
        };
        scene.write_local_archive(spec, ArchiveOptions::default());
        let config = scene.config("");
        replay(&config, &[]);
        let original = scene.read("pyiceberg", "orders")["checksum"].clone();
        let days: Vec<String> = files(scene).into_keys().collect();
        let (from, to) = (days[1].clone(), days[2].clone());
        scene.foreign_with("break-days", "orders", &[&from, &to]);
        setups.push((config, original, from, to));
    }
    let (single, sharded) = (&setups[0], &setups[1]);
    assert_eq!(single.1, sharded.1, "the same history");

    let (code, one, stderr) = backfill(&single.0, &single.2, &single.3, &[]);
    assert_eq!(code, Some(0), "{one} {stderr}");

    let (config, original, from, to) = sharded;
    let path = config.display().to_string();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut all = vec!["backfill"];
        all.extend_from_slice(args);
        let out = kappa(&all, envs);
        let report: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap_or(Value::Null);
        (
            out.status.code(),
            report,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let days = ["--from", from.as_str(), "--to", to.as_str()];
    let mut plan_args = vec!["plan", "-c", &path, "--shards", "4", "--json"];
    plan_args.extend_from_slice(&days);
    let (code, plan, stderr) = run(&plan_args, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut partitions: Vec<i64> = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_i64().unwrap())
        })
        .collect();
    partitions.sort_unstable();
    assert_eq!(partitions, (0..6).collect::<Vec<_>>(), "{plan}");

    // A publish before every shard staged its files refuses, main untouched.
    let mut publish_args = vec!["publish", "-c", &path, "--json"];
    publish_args.extend_from_slice(&days);
    let (code, _, stderr) = run(&publish_args, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("have not staged"), "{stderr}");

    // Shard 1 is killed mid-reprocess first; the four run at once.
    let shard_args = |i: usize| {
        let mut args = vec![
            "-c".to_string(),
            path.clone(),
            "--shard".to_string(),
            format!("{i}/4"),
            "--json".to_string(),
        ];
        args.extend(days.iter().map(|d| d.to_string()));
        args
    };
    let killed = {
        let args = shard_args(1);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[("FAILPOINTS", "backfill::read=return")])
    };
    assert!(
        killed.2.contains("crash point backfill::read reached"),
        "{}",
        killed.2
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let args = shard_args(i);
            std::thread::spawn(move || {
                let mut all = vec!["backfill".to_string()];
                all.extend(args);
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                kappa(&all, &[])
            })
        })
        .collect();
    for handle in handles {
        let out = handle.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
        assert_eq!(report["state"], "staged", "{report}");
    }
    // A shard run again leaves its staged files as they are.
    let again = shard_args(2);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let (code, report, stderr) = run(&again, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["state"], "already staged", "{report}");

    let mut dry = publish_args.clone();
    dry.push("--dry-run");
    let (code, audit, stderr) = run(&dry, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(audit["state"], "dry-run");
    assert_eq!(audit["days"], one["days"], "the same audit as one process");
    assert_ne!(scenes[1].read("pyiceberg", "orders")["checksum"], *original);

    let (code, published, stderr) = run(&publish_args, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(published["committed"], true, "{published}");
    assert_eq!(published["rows"], one["rows"], "{published} vs {one}");
    let sums: Vec<Value> = scenes
        .iter()
        .map(|s| s.read("pyiceberg", "orders")["checksum"].clone())
        .collect();
    assert_eq!(sums[0], *original);
    assert_eq!(
        sums[1], *original,
        "four shards and a publish give what one process gives"
    );
    assert_eq!(
        scenes[0].read("pyiceberg", "orders_dlq")["rows"],
        scenes[1].read("pyiceberg", "orders_dlq")["rows"]
    );

    // A publish run again finds it published and commits nothing.
    let (code, repeat, stderr) = run(&publish_args, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(repeat["committed"], false, "{repeat}");
    assert_eq!(repeat["snapshot_id"], published["snapshot_id"]);
    assert_eq!(scenes[1].read("pyiceberg", "orders")["checksum"], *original);
}

#[test]
fn records_a_quarantined_flush_holds_stay_quarantined_and_never_reach_main_twice() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec {
            null_user_rate: 0.15,
            ..HistorySpec::new(4_000)
        },
        ArchiveOptions::default(),
    );
    let config = scene.config("\n[quality.gates.null_rate]\npolicy = \"quarantine\"\n");
    replay(&config, &[]);
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    let quarantined = scene.foreign_with("files", "orders_quarantine", &[]);
    let days: Vec<&String> = quarantined["files"].as_object().unwrap().keys().collect();
    // The backfill itself lets the NULL rate through (it is only warned about) ...
    let (code, report, stderr) = backfill(
        &config,
        days[1],
        days[2],
        &["--set", "quality.gates.null_rate.policy=warn"],
    );
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["state"], "published", "{report}");
    // ... but the records the quarantine table holds stay there, and only there.
    assert!(report["quarantined"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["rows"], 0, "{report}");
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    assert_table_matches(&scene.read("pyiceberg", "orders_quarantine"), &expected);
}

/// `kappa backfill` with `[metrics] listen` (as the chart's Jobs run it) serves `/metrics` while
/// it runs and for `[metrics] linger` after: its archive source read the whole archive, plus each
/// partition's last file once more (where the plan finds how far the archive reaches), records
/// and bytes, and the exposition passes promtool.
#[test]
fn a_backfill_serves_metrics_of_the_archive_it_read_and_lingers_for_a_last_scrape() {
    use kappa_integration_tests::endpoint::{
        assert_promtool_accepts, http_get, sample_sum, serve_metrics, terminate,
    };
    let scene = Scene::local();
    let spec = HistorySpec {
        days: 3,
        ..HistorySpec::new(6_000)
    };
    let (expected, config) = replayed(&scene, spec);
    let days: Vec<String> = files(&scene).into_keys().collect();
    let addr = serve_metrics(&config, "linger = \"10m\"");
    let path = config.display().to_string();
    let mut child = std::process::Command::new(kappa_integration_tests::kappa_bin())
        .args(["backfill", "-c", &path, "--json"])
        .args(["--from", &days[0], "--to", &days[days.len() - 1]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The report is printed when the backfill is over, before the linger starts.
    let line = kappa_integration_tests::first_stdout_line(&mut child);
    let report: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("no report ({e}): {line:?}"));
    assert_eq!(report["committed"], true, "{report}");
    let (status, ready) = http_get(&addr, "/readyz");
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let (code, _) = terminate(child);
    assert_eq!(code, Some(0), "SIGTERM ends the linger, not the backfill");

    // The archive's files by partition, from their names: (start offset, bytes), in order.
    let mut by_partition: BTreeMap<usize, Vec<(i64, u64)>> = BTreeMap::new();
    for file in kappa_integration_tests::files_under(&scene.path("archive")) {
        let name = file.file_stem().unwrap().to_str().unwrap().to_string();
        let mut parts = name.split('+').skip(1);
        let partition: usize = parts.next().unwrap().parse().unwrap();
        let start: i64 = parts.next().unwrap().parse().unwrap();
        let bytes = file.metadata().unwrap().len();
        by_partition
            .entry(partition)
            .or_default()
            .push((start, bytes));
    }
    assert_eq!(by_partition.len(), expected.next_offsets.len());
    let (mut records, mut bytes) = (expected.messages, 0);
    for (partition, files) in &mut by_partition {
        files.sort_unstable();
        assert!(files.len() > 1, "partition {partition}: one file");
        let (last_start, last_bytes) = files[files.len() - 1];
        records += (expected.next_offsets[*partition] - last_start) as u64;
        bytes += files.iter().map(|(_, b)| b).sum::<u64>() + last_bytes;
    }
    assert_eq!(
        sample_sum(&metrics, "kappa_source_records_read_total"),
        records as f64,
        "{metrics}"
    );
    assert_eq!(
        sample_sum(&metrics, "kappa_source_bytes_read_total"),
        bytes as f64,
        "bytes read are the archive's files, the last ones twice"
    );
    assert_promtool_accepts(&metrics);
}
