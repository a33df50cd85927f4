//! `kappa backfill` end to end on the local filesystem with a SQLite catalog: days another
//! engine broke are restored to exactly the archive's content, other days' files are never
//! rewritten, reruns change nothing, gates and dry runs leave main untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use kappa_integration_tests::{Scene, assert_table_matches, kappa, last_line, replay};
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
    let scene = Scene::local();
    let spec = HistorySpec {
        days: 4,
        partitions: 3,
        ..HistorySpec::new(8_000)
    };
    let expected = scene.write_local_archive(spec, ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &[]);
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
