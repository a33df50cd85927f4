//! Archive replay end to end, on the local filesystem with a SQLite catalog: what query engines
//! read equals what the generated input says; re-runs, crashes and shards never duplicate; the
//! metrics endpoint of a replay says what it did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kappa_integration_tests::endpoint::{
    assert_promtool_accepts, http_get, sample, sample_sum, serve_metrics, terminate,
};
use kappa_integration_tests::{Scene, assert_table_matches, kappa, kappa_bin, replay, spawn_kappa};
use kappa_synth::{ArchiveOptions, Codec, Expected, HistorySpec, Layout, RecordShape};

#[test]
fn query_engines_read_exactly_the_generated_events() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(HistorySpec::new(20_000), ArchiveOptions::default());
    assert!(expected.undecodable > 0 && expected.duplicates > 0 && expected.rejected > 0);
    let summary = replay(&scene.config(""), &[]);
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["rows_written"].as_u64(), Some(expected.rows));
    assert_eq!(summary["duplicates"].as_u64(), Some(expected.duplicates));
    assert_eq!(summary["undecodable"].as_u64(), Some(expected.undecodable));
    assert_eq!(summary["rejected"].as_u64(), Some(expected.rejected));
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    let dlq = scene.read("pyiceberg", "orders_dlq");
    assert_eq!(dlq["rows"].as_u64(), Some(expected.dead_lettered()));
}

#[test]
fn a_second_replay_commits_nothing_and_leaves_the_snapshot() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(5_000), ArchiveOptions::default());
    let config = scene.config("");
    let first = replay(&config, &[]);
    assert!(first["commits"].as_u64().unwrap() >= 1);
    let second = replay(&config, &[]);
    assert_eq!(second["commits"].as_u64(), Some(0), "{second}");
    assert_eq!(second["dlq_commits"].as_u64(), Some(0), "{second}");
    assert_eq!(second["records_in"].as_u64(), Some(0), "{second}");
    assert_eq!(second["snapshot_id"], first["snapshot_id"]);
}

#[test]
fn value_and_envelope_archives_in_both_layouts_give_the_same_rows() {
    let cases = [
        (RecordShape::Value, Layout::Default, Codec::Deflate),
        (RecordShape::Envelope, Layout::Hourly, Codec::Zstd),
        (RecordShape::RawBytes, Layout::Default, Codec::Null),
    ];
    let mut checksums = Vec::new();
    for (shape, layout, codec) in cases {
        let scene = Scene::local();
        let spec = HistorySpec {
            offset_gaps: shape == RecordShape::Envelope,
            ..HistorySpec::new(6_000)
        };
        let options = ArchiveOptions {
            shape,
            layout,
            codec,
            flush_size: 900,
        };
        let expected = scene.write_local_archive(spec, options);
        let summary = replay(&scene.config(""), &[]);
        assert_eq!(summary["complete"], true, "{shape:?}: {summary}");
        let read = scene.read("pyiceberg", "orders");
        assert_table_matches(&read, &expected);
        checksums.push(read["checksum"].as_str().unwrap().to_string());
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
}

#[test]
fn an_archive_switching_from_v1_to_v2_mid_stream_gives_one_table() {
    // Producers move to orders v2 halfway; v1 rows read NULL for the new columns. Both the
    // value-record shape (writer schema in each file) and the wire-format shape (schema ids).
    let mut checksums = Vec::new();
    for shape in [RecordShape::Value, RecordShape::RawBytes] {
        let scene = Scene::local();
        let spec = HistorySpec {
            v2_from: Some(0.5),
            ..HistorySpec::new(8_000)
        };
        let options = ArchiveOptions {
            shape,
            ..ArchiveOptions::default()
        };
        let expected = scene.write_local_archive(spec, options);
        let summary = replay(&scene.config(""), &[]);
        assert_eq!(summary["complete"], true, "{shape:?}: {summary}");
        assert_eq!(summary["undecodable"].as_u64(), Some(expected.undecodable));
        for engine in ["pyiceberg", "duckdb"] {
            let read = scene.read(engine, "orders");
            // The checksum covers coupon_code and tip_cents: NULL for v1 rows, values for v2.
            assert_table_matches(&read, &expected);
            checksums.push(read["checksum"].as_str().unwrap().to_string());
        }
    }
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
}

/// After a clean rerun: the run accounted for its input, both engines read exactly the expected
/// rows, and the DLQ holds every dead letter.
fn assert_exactly_once(scene: &Scene, summary: &serde_json::Value, expected: &Expected) {
    assert_eq!(summary["complete"], true, "{summary}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered())
    );
}

#[test]
fn sigkill_at_any_point_then_rerun_gives_every_event_exactly_once() {
    let scene = Scene::local();
    let options = ArchiveOptions {
        flush_size: 2_000,
        ..ArchiveOptions::default()
    };
    let expected = scene.write_local_archive(HistorySpec::new(60_000), options);
    let config = scene.config("[replay]\nbatch_rows = 1000\n");
    let config = config.display().to_string();
    let args = ["replay", "-c", config.as_str(), "--set", "commit.rows=1500"];
    // Kills land while reading, while writing Parquet, between writing and committing, and
    // during commits: progress differs at each, the end result must not.
    for delay_ms in [40, 120, 250, 400, 600, 900, 1300] {
        let mut child = spawn_kappa(&args);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let summary = replay(
        scene.path("pipeline.toml").as_path(),
        &["--set", "commit.rows=1500"],
    );
    assert_exactly_once(&scene, &summary, &expected);
}

#[test]
fn a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once() {
    // Deterministic crashes (the binary's `failpoints` feature, which make test enables): each
    // run makes some progress and aborts at a named point — mid-read, mid-write, between the
    // write and the commit, between the DLQ and the main commit, right after the catalog took
    // a commit — and the next run must neither lose nor repeat anything.
    let scene = Scene::local();
    let options = ArchiveOptions {
        flush_size: 2_000,
        ..ArchiveOptions::default()
    };
    let expected = scene.write_local_archive(HistorySpec::new(30_000), options);
    let config = scene.config("[replay]\nbatch_rows = 1000\n");
    let config = config.display().to_string();
    let args = ["replay", "-c", config.as_str(), "--set", "commit.rows=3000"];
    let points = [
        ("runtime::read", 3),
        ("runtime::write", 5),
        ("runtime::before-commit", 0),
        ("runtime::between-commits", 0),
        ("iceberg::after-commit", 0),
        ("runtime::write", 2),
        ("iceberg::after-commit", 1),
    ];
    for (point, skip) in points {
        let actions = if skip == 0 {
            "return".to_string()
        } else {
            format!("{skip}*off->return")
        };
        let out = kappa(&args, &[("FAILPOINTS", &format!("{point}={actions}"))]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("crash point {point} reached")),
            "{point}: the run must abort there (is kappa built with --features kappa/failpoints? \
             make test does): {:?} {stderr}",
            out.status
        );
    }
    let summary = replay(
        scene.path("pipeline.toml").as_path(),
        &["--set", "commit.rows=3000"],
    );
    assert_exactly_once(&scene, &summary, &expected);
}

#[test]
fn concurrent_shards_write_one_table_exactly_once() {
    let scene = Scene::local();
    let spec = HistorySpec {
        partitions: 6,
        ..HistorySpec::new(24_000)
    };
    let expected = scene.write_local_archive(
        spec,
        ArchiveOptions {
            flush_size: 1_000,
            ..ArchiveOptions::default()
        },
    );
    let config = scene.config("").display().to_string();
    // Three processes, one archive, one table: their commits conflict and resolve by the
    // pinned-base retry.
    let children: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            std::process::Command::new(kappa_bin())
                .args([
                    "replay",
                    "-c",
                    &config,
                    "--shard",
                    &shard,
                    "--json",
                    "--set",
                    "commit.rows=1000",
                ])
                .output_async()
        })
        .collect();
    let mut retries = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        retries += summary["conflict_retries"].as_u64().unwrap();
    }
    eprintln!("conflict retries across shards: {retries}");
    assert_table_matches(&scene.read("pyiceberg", "orders"), &expected);
    let status = kappa(&["status", "-c", &config, "--json"], &[]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let offsets = status["offsets"].as_object().unwrap();
    assert_eq!(
        offsets.len(),
        6,
        "the newest commit carries every partition: {status}"
    );
    for (p, next) in expected.next_offsets.iter().enumerate() {
        assert_eq!(offsets[&format!("orders-{p}")].as_i64(), Some(*next));
    }
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn bad_input_names_what_and_where_and_loses_nothing() {
    // A missing archive prefix: usage error naming the path.
    let scene = Scene::local();
    let config = scene.config("").display().to_string();
    let out = kappa(&["replay", "-c", &config], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no objects under") && err.contains("orders"),
        "{err}"
    );

    // A corrupt OCF file: failure naming the object key; nothing of it committed.
    scene.write_local_archive(
        HistorySpec::new(3_000),
        ArchiveOptions {
            layout: Layout::Default,
            ..ArchiveOptions::default()
        },
    );
    let bad = scene.path("archive/orders/partition=1/orders+1+0000009000.avro");
    std::fs::write(&bad, b"Obj\x01 definitely not avro").unwrap();
    let out = kappa(&["replay", "-c", &config], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("orders/partition=1/orders+1+0000009000.avro"),
        "{err}"
    );

    // A bad config: exit 2 with the key named.
    let bad_config = scene.path("bad.toml");
    std::fs::write(
        &bad_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[commit]\nrows = 5000", "[commit]\nrowz = 5000"),
    )
    .unwrap();
    let out = kappa(&["replay", "-c", bad_config.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rowz") && err.contains("commit"), "{err}");
    let out = kappa(
        &["replay", "-c", &config],
        &[("KAPPA__TABLE__PARTITION_BY", "dya(event_time)")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[table] partition_by") && err.contains("dya"),
        "{err}"
    );
}

/// The current schema of a local scene's `orders` table: column name -> field id.
fn table_field_ids(scene: &Scene) -> std::collections::BTreeMap<String, i64> {
    let dir = scene
        .path("warehouse")
        .join(&scene.namespace)
        .join("orders/metadata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .collect();
    files.sort();
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files.last().unwrap()).unwrap()).unwrap();
    let current = metadata["current-schema-id"].clone();
    let schema = metadata["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schema-id"] == current)
        .unwrap();
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_table_created_under_v1_gains_the_v2_columns_when_v2_is_registered() {
    // Day 1: the registry has only orders v1; the table is created with v1's columns.
    let scene = Scene::local();
    let v1_only = scene.path("contracts-v1");
    std::fs::create_dir_all(v1_only.join("orders-value")).unwrap();
    std::fs::copy(
        kappa_integration_tests::contracts_dir().join("orders-value/1.avsc"),
        v1_only.join("orders-value/1.avsc"),
    )
    .unwrap();
    let old = scene.write_local_archive(HistorySpec::new(3_000), ArchiveOptions::default());
    let config = scene.config("");
    let v1_dir = format!("schema.dir={}", v1_only.display());
    replay(&config, &["--set", &v1_dir]);
    let ids = table_field_ids(&scene);
    assert!(!ids.contains_key("tip_cents"), "{ids:?}");
    assert_eq!(ids["_kafka_offset"], 10);

    // Day 2: v2 is registered and a second topic's producers write v2 into the same table.
    let new = scene.write_local_archive(
        HistorySpec {
            topic: "orders2".into(),
            seed: 7,
            v2_from: Some(0.0),
            ..HistorySpec::new(3_000)
        },
        ArchiveOptions::default(),
    );
    let summary = replay(
        &config,
        &[
            "--set",
            "source.archive.topic=orders2",
            "--set",
            "schema.subject=orders-value",
        ],
    );
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["rows_written"].as_u64(), Some(new.rows));
    // The new columns took the ids the subject's history gives them, after v1's.
    let ids = table_field_ids(&scene);
    assert_eq!(
        (
            ids["event_id"],
            ids["_kafka_offset"],
            ids["coupon_code"],
            ids["tip_cents"]
        ),
        (1, 10, 11, 12),
        "{ids:?}"
    );
    // Both days in one table: v1 rows read NULL in the new columns (the checksum covers them).
    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_eq!(read["rows"].as_u64(), Some(old.rows + new.rows), "{engine}");
        assert_eq!(
            read["distinct_event_ids"].as_u64(),
            Some(old.rows + new.rows),
            "{engine}"
        );
        assert_eq!(
            read["checksum"].as_str(),
            Some(old.checksum.wrapping_add(new.checksum).to_string().as_str()),
            "{engine}: content checksum"
        );
    }
}

#[test]
fn a_blocking_quality_gate_exits_3_naming_the_check_and_commits_nothing() {
    let scene = Scene::local();
    scene.write_local_archive(
        HistorySpec {
            null_user_rate: 0.15,
            ..HistorySpec::new(5_000)
        },
        ArchiveOptions::default(),
    );
    let config = scene.config("").display().to_string();
    let out = kappa(&["replay", "-c", &config], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("user_id null rate") && err.contains("> 0.10% (block)"),
        "{err}"
    );
    // Nothing reached either table: PyIceberg sees no rows.
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(0)
    );
    // An operator who accepts the data lets the gate warn instead, and the replay goes through.
    let out = kappa(
        &[
            "replay",
            "-c",
            &config,
            "--set",
            "quality.gates.null_rate.policy=warn",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_quarantined_replay_is_in_the_quality_report_and_the_quarantine_table() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec {
            null_user_rate: 0.15,
            ..HistorySpec::new(4_000)
        },
        ArchiveOptions::default(),
    );
    let config = scene.config("\n[quality.gates.null_rate]\npolicy = \"quarantine\"\n");
    let summary = replay(&config, &[]);
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["quarantined_rows"].as_u64(), Some(expected.rows));
    assert_eq!(summary["rows_written"].as_u64(), Some(0));
    // PyIceberg reads the quarantined rows where they went, and none in the main table.
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    assert_table_matches(&scene.read("pyiceberg", "orders_quarantine"), &expected);

    let config = config.display().to_string();
    let out = kappa(&["quality", "report", "-c", &config, "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap();
    let outcomes: Vec<&str> = report["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| *o == "quarantine"),
        "{report}"
    );
    let out = kappa(&["quality", "report", "-c", &config], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("quarantine") && text.contains("FAIL user_id null rate"),
        "{text}"
    );
    let out = kappa(&["quality", "report", "-c", &config, "--date", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_quality_report_lists_each_closed_day_partition_once() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(6_000), ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &["--set", "commit.rows=1000"]);
    let config = config.display().to_string();
    let report = |extra: &[&str]| {
        let mut args = vec!["quality", "report", "-c", config.as_str(), "--json"];
        args.extend_from_slice(extra);
        let out = kappa(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(kappa_integration_tests::last_line(&out.stdout))
            .unwrap()
    };
    // Events over seven days (produced from 2026-11-01, event times from the day before): the
    // closed days, newest first, each once; the newest day is still open.
    let all = report(&["--last", "100"]);
    let days: Vec<&str> = all["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    assert!(days.len() >= 6, "{days:?}");
    assert!(
        days.windows(2).all(|w| w[0] > w[1]),
        "newest first, once each: {days:?}"
    );
    assert!(
        days.contains(&"2026-11-03") && !days.contains(&"2026-11-08"),
        "{days:?}"
    );
    let one = report(&["--date", "2026-11-03"]);
    let day = &one["days"].as_array().unwrap()[0];
    assert_eq!(one["days"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(day["verdict"]["name"], "row_count", "{one}");
    let out = kappa(
        &["quality", "report", "-c", &config, "--date", "2026-11-03"],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Day partitions") && text.contains("2026-11-03"),
        "{text}"
    );
}

#[test]
fn a_crash_between_the_quarantine_and_the_main_commit_is_completed_without_a_second_copy() {
    // Every flush is quarantined (15% NULL user ids); the runs abort right after the quarantine
    // table took a flush and before the main table recorded it as done. The next run completes
    // that flush from the quarantine table's position instead of quarantining it again.
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec {
            null_user_rate: 0.15,
            ..HistorySpec::new(12_000)
        },
        ArchiveOptions {
            flush_size: 2_000,
            ..ArchiveOptions::default()
        },
    );
    let config = scene.config(
        "[replay]\nbatch_rows = 1000\n\n[quality.gates.null_rate]\npolicy = \"quarantine\"\n",
    );
    let config_arg = config.display().to_string();
    let args = [
        "replay",
        "-c",
        config_arg.as_str(),
        "--set",
        "commit.rows=3000",
    ];
    for skip in [0, 1] {
        let actions = if skip == 0 {
            "return".to_string()
        } else {
            format!("{skip}*off->return")
        };
        let point = "runtime::after-quarantine";
        let out = kappa(&args, &[("FAILPOINTS", &format!("{point}={actions}"))]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(&format!("crash point {point} reached")),
            "the run must abort there (is kappa built with --features kappa/failpoints? make test \
             does): {:?} {stderr}",
            out.status
        );
    }
    let summary = replay(&config, &["--set", "commit.rows=3000"]);
    assert_eq!(summary["complete"], true, "{summary}");
    // Every row once in the quarantine table, none in the main table.
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders_quarantine"), &expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered())
    );
}

/// Starts `kappa replay -c config --json` with its log in `replay.log` next to the config.
fn spawn_replay(config: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(config.with_file_name("replay.log")).unwrap();
    std::process::Command::new(kappa_bin())
        .args(["replay", "-c", &config.display().to_string(), "--json"])
        .env("KAPPA_LOG", "warn,kappa=info")
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn a_replay_serves_metrics_that_match_what_it_did_and_lingers_for_a_last_scrape() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(HistorySpec::new(20_000), ArchiveOptions::default());
    assert!(expected.undecodable > 0 && expected.duplicates > 0 && expected.rejected > 0);
    let config = scene.config("");
    // The linger keeps the endpoint up after the run, until the SIGTERM below: the scrape sees
    // the final values, with no race against a replay that may take well under a second.
    let addr = serve_metrics(&config, "linger = \"10m\"");
    let mut child = spawn_replay(&config);
    // The summary is printed when the run is over, before the linger starts.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let log = || std::fs::read_to_string(scene.path("replay.log")).unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("no summary ({e}): {line:?}\n{}", log()));
    assert_eq!(summary["complete"], true, "{summary}");
    let (status, ready) = http_get(&addr, "/readyz");
    assert_eq!((status, ready.as_str()), (200, "ready\n"));
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let (code, _) = terminate(child);
    assert_eq!(
        code,
        Some(0),
        "SIGTERM ends the linger, not the replay\n{}",
        log()
    );

    // What the archive held, through the source, the pipeline and the commits.
    let value = |name: &str| sample_sum(&metrics, name);
    assert_eq!(
        value("kappa_source_records_read_total"),
        expected.messages as f64,
        "{metrics}"
    );
    assert_eq!(
        value("kappa_source_bytes_read_total"),
        summary["archive_bytes"].as_f64().unwrap(),
        "bytes read are the archive files fetched"
    );
    assert_eq!(
        value("kappa_pipeline_records_read_total"),
        summary["records_in"].as_f64().unwrap()
    );
    assert_eq!(
        value("kappa_pipeline_records_written_total"),
        expected.rows as f64
    );
    assert_eq!(
        value("kappa_pipeline_records_deduplicated_total"),
        expected.duplicates as f64
    );
    assert_eq!(
        value("kappa_pipeline_records_dead_lettered_total"),
        expected.dead_lettered() as f64
    );
    for (kind, n) in [
        ("undecodable", expected.undecodable),
        ("rejected", expected.rejected),
    ] {
        assert_eq!(
            sample(
                &metrics,
                "kappa_pipeline_records_dead_lettered_total",
                &[("kind", kind)]
            ),
            Some(n.to_string()),
            "{kind}"
        );
    }
    let table = format!("{}.orders", scene.namespace);
    let commits = |outcome: &str| {
        sample(
            &metrics,
            "kappa_commits_total",
            &[("table", &table), ("outcome", outcome)],
        )
        .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(
        commits("committed"),
        summary["commits"].as_u64(),
        "{summary}"
    );
    assert_eq!(commits("failed"), Some(0));
    assert_eq!(
        sample(
            &metrics,
            "kappa_quality_check_passed",
            &[("check", "null_rate.user_id")]
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&metrics, "kappa_quality_gate_blocked", &[("table", &table)]).as_deref(),
        Some("0")
    );
    // The history is in the past: the table is behind the wall clock by at least its newest event.
    assert!(
        value("kappa_table_freshness_lag_seconds") > 0.0,
        "{metrics}"
    );
    assert_promtool_accepts(&metrics);
}

#[test]
fn a_blocked_replay_says_so_on_readyz_and_in_its_metrics_while_it_lingers() {
    let scene = Scene::local();
    scene.write_local_archive(
        HistorySpec {
            null_user_rate: 0.15,
            ..HistorySpec::new(5_000)
        },
        ArchiveOptions::default(),
    );
    let config = scene.config("");
    let addr = serve_metrics(&config, "linger = \"10m\"");
    let child = spawn_replay(&config);
    // The gate blocks at the first flush and the run ends; until then /readyz is ready, or not
    // ready loading the table state, or not listening yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let reason = loop {
        if let Ok(stream) = std::net::TcpStream::connect(&addr) {
            drop(stream);
            let (status, body) = http_get(&addr, "/readyz");
            if body.lines().any(|l| l == "quality_gate") {
                assert_eq!(status, 503, "{body}");
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gate never showed on /readyz: {}",
            std::fs::read_to_string(scene.path("replay.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The probe names the condition only; the log says which check failed.
    assert!(!reason.contains("null rate"), "{reason}");
    let log = std::fs::read_to_string(scene.path("replay.log")).unwrap();
    assert!(log.contains("user_id null rate"), "{log}");
    let (_, metrics) = http_get(&addr, "/metrics");
    let table = format!("{}.orders", scene.namespace);
    assert_eq!(
        sample(&metrics, "kappa_quality_gate_blocked", &[("table", &table)]).as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "kappa_quality_check_passed",
            &[("check", "null_rate.user_id"), ("policy", "block")]
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample_sum(&metrics, "kappa_pipeline_records_written_total"),
        0.0
    );
    let (code, _) = terminate(child);
    assert_eq!(
        code,
        Some(3),
        "a blocked replay still exits 3 after lingering"
    );
}
