//! Archive replay end to end, on the local filesystem with a SQLite catalog: what query engines
//! read equals what the generated input says; re-runs, crashes and shards never duplicate; the
//! metrics endpoint of a replay says what it did.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kappa_integration_tests::endpoint::{
    assert_promtool_accepts, http_get, sample, sample_sum, serve_metrics, terminate,
};
use kappa_integration_tests::{
    Catalog, PACED, Scene, assert_table_matches, kappa, kappa_bin, replay, spawn_kappa,
};
use kappa_synth::{ArchiveOptions, Codec, Expected, HistorySpec, Layout, RecordShape};

#[test]
fn query_engines_read_exactly_the_generated_events() {
    query_engines_read_exactly_the_generated_events_on(Catalog::Sql);
}

#[test]
fn query_engines_read_exactly_the_generated_events_on_rest() {
    query_engines_read_exactly_the_generated_events_on(Catalog::Rest);
}

fn query_engines_read_exactly_the_generated_events_on(catalog: Catalog) {
    let scene = Scene::on(catalog, "read");
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
    a_second_replay_commits_nothing_and_leaves_the_snapshot_on(Catalog::Sql);
}

#[test]
fn a_second_replay_commits_nothing_and_leaves_the_snapshot_on_rest() {
    a_second_replay_commits_nothing_and_leaves_the_snapshot_on(Catalog::Rest);
}

fn a_second_replay_commits_nothing_and_leaves_the_snapshot_on(catalog: Catalog) {
    let scene = Scene::on(catalog, "rerun");
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

/// The dedup key and the Kafka offset are distinct row to row: their column chunks are written
/// without a dictionary (one would be interned value by value, then abandoned at 1 MiB, or kept
/// larger than the plain values in a small file), by the replay and by `kappa maintain compact`
/// alike. Columns that repeat keep theirs. Read from the data files with the `parquet` crate,
/// not from anything Kappa reports.
#[test]
fn distinct_columns_are_written_without_a_dictionary_and_repeating_ones_with_one() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(5_000), ArchiveOptions::default());
    let config = scene.config("");
    // Small commits: several files per day, for the compaction below to rewrite.
    let summary = replay(&config, &["--set", "commit.rows=500"]);
    assert_eq!(summary["complete"], true, "{summary}");
    let data_files = || -> Vec<String> {
        scene
            .list_table_files("orders")
            .into_iter()
            .map(|(path, _)| path)
            .filter(|path| path.ends_with(".parquet"))
            .collect()
    };
    let replayed = data_files();
    assert_dictionaries(&replayed);
    let out = kappa(
        &[
            "maintain",
            "compact",
            "-c",
            config.to_str().unwrap(),
            "--json",
            "--from",
            "1970-01-01",
            "--to",
            "2100-01-01",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compacted: Vec<String> = data_files()
        .into_iter()
        .filter(|path| !replayed.contains(path))
        .collect();
    assert!(!compacted.is_empty(), "the compaction wrote no file");
    assert_dictionaries(&compacted);
}

/// Every column chunk of `files`: `event_id` and `_kafka_offset` without a dictionary page,
/// `event_type` and `currency` with one.
fn assert_dictionaries(files: &[String]) {
    use parquet::file::reader::FileReader;
    assert!(!files.is_empty(), "no data files written");
    let mut chunks = 0;
    for path in files {
        let file = std::fs::File::open(path).unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
        for group in reader.metadata().row_groups() {
            for column in group.columns() {
                let name = column.column_path().string();
                let dictionary = column.dictionary_page_offset().is_some();
                match name.as_str() {
                    "event_id" | "_kafka_offset" => {
                        assert!(!dictionary, "{path}: {name} has a dictionary page");
                        chunks += 1;
                    }
                    "event_type" | "currency" => {
                        assert!(dictionary, "{path}: {name} has no dictionary page");
                        chunks += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    assert_eq!(chunks % 4, 0);
    assert!(
        chunks >= 4 * files.len(),
        "{chunks} column chunks checked in {} files",
        files.len()
    );
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
        // With offset gaps, a partition's log can start past 0 (its first offset compacted
        // away): that start is accepted explicitly, and recorded as skipped.
        let flags: &[&str] = if shape == RecordShape::Envelope {
            &["--accept-missing-history"]
        } else {
            &[]
        };
        let summary = replay(&scene.config(""), flags);
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

/// What a SIGKILL waits for before it lands.
#[derive(Debug, Clone, Copy)]
enum KillOn {
    /// This many new commits of the main table (new metadata files) in this run: the kill lands
    /// right after a commit, while the next flush is being read or written.
    Commits(usize),
    /// A new data file of the main table: the kill lands while files are written, before the
    /// commit that would reference them.
    DataFile,
}

#[test]
fn sigkill_at_any_point_then_rerun_gives_every_event_exactly_once() {
    sigkill_at_any_point_then_rerun_gives_every_event_exactly_once_on(Catalog::Sql);
}

#[test]
fn sigkill_at_any_point_then_rerun_gives_every_event_exactly_once_on_rest() {
    sigkill_at_any_point_then_rerun_gives_every_event_exactly_once_on(Catalog::Rest);
}

fn sigkill_at_any_point_then_rerun_gives_every_event_exactly_once_on(catalog: Catalog) {
    let scene = Scene::on(catalog, "sigkill");
    let options = ArchiveOptions {
        flush_size: 2_000,
        ..ArchiveOptions::default()
    };
    let expected = scene.write_local_archive(HistorySpec::new(60_000), options);
    let config = scene.config("[replay]\nbatch_rows = 1000\n");
    let config = config.display().to_string();
    let args = ["replay", "-c", config.as_str(), "--set", "commit.rows=1500"];
    let metadata = || scene.count_table_files("orders", "metadata", ".metadata.json");
    let data = || scene.count_table_files("orders", "data", ".parquet");
    // Each kill waits for observed progress, so it lands after a commit or in the middle of
    // writing data files, whatever the machine's speed; and it must find the replay still
    // running, or it interrupted nothing. The killed runs are paced (`PACED`) so that a poll,
    // a listing of the table's files, cannot miss a whole run.
    let plan = [
        KillOn::Commits(1),
        KillOn::DataFile,
        KillOn::Commits(2),
        KillOn::DataFile,
        KillOn::Commits(1),
        KillOn::DataFile,
        KillOn::Commits(3),
    ];
    for (i, kill_on) in plan.into_iter().enumerate() {
        let commits_before = metadata();
        let files_before = data();
        let mut child = spawn_kappa(&args, &[PACED]);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let reached = match kill_on {
                KillOn::Commits(n) => metadata() >= commits_before + n,
                KillOn::DataFile => data() > files_before,
            };
            if reached {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut log = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
                }
                panic!(
                    "kill {i} ({kill_on:?}): the replay ended ({status}) before the progress the \
                     kill waits for: {} metadata files (before the run {commits_before}), {} data \
                     files (before {files_before}); its log:\n{log}",
                    metadata(),
                    data()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kill {i} ({kill_on:?}): no progress in 120 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "kill {i} ({kill_on:?}): the replay had finished; the kill would interrupt nothing"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // The kills interrupted work: the table does not hold everything yet.
    let partial = scene.read("pyiceberg", "orders")["rows"].as_u64().unwrap();
    assert!(
        partial < expected.rows,
        "{partial} rows after the kills: nothing left to do"
    );
    let summary = replay(
        scene.path("pipeline.toml").as_path(),
        &["--set", "commit.rows=1500"],
    );
    assert_exactly_once(&scene, &summary, &expected);
}

#[test]
fn a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once() {
    a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once_on(Catalog::Sql);
}

#[test]
fn a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once_on_rest() {
    a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once_on(Catalog::Rest);
}

fn a_crash_at_each_crash_point_then_rerun_gives_every_event_exactly_once_on(catalog: Catalog) {
    // Deterministic crashes (the binary's `failpoints` feature, which make test enables): each
    // run makes some progress and aborts at a named point — mid-read, mid-write, between the
    // write and the commit, between the DLQ and the main commit, right after the catalog took
    // a commit — and the next run must neither lose nor repeat anything.
    let scene = Scene::on(catalog, "crash");
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
    concurrent_shards_write_one_table_exactly_once_on(Catalog::Sql);
}

#[test]
fn concurrent_shards_write_one_table_exactly_once_on_rest() {
    concurrent_shards_write_one_table_exactly_once_on(Catalog::Rest);
}

// Prints the conflict retries it saw (a figure for the test log, not an expectation: how often
// the shards' commits collide depends on timing).
#[allow(clippy::print_stderr)]
fn concurrent_shards_write_one_table_exactly_once_on(catalog: Catalog) {
    let scene = Scene::on(catalog, "shards");
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
    // Each table's files live under its own location (a catalog's orphan cleanup of the main
    // table must not find the quarantine table's files there): the quarantine table references
    // only files under its location, and the main table's directory holds no data file (every
    // flush was quarantined, and the copies written there first are deleted).
    let files = scene.foreign_with("files", "orders_quarantine", &[]);
    let paths: Vec<&str> = files["files"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|day| day.as_array().unwrap())
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(!paths.is_empty(), "{files}");
    for path in &paths {
        assert!(path.contains("/kappa/orders_quarantine/data/"), "{path}");
    }
    let main_data: Vec<_> =
        kappa_integration_tests::files_under(&scene.path("warehouse/kappa/orders"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
    assert!(main_data.is_empty(), "{main_data:?}");

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
    let main = scene.read_kappa_metadata("orders");
    assert_eq!(main["rows"].as_u64(), Some(0));
    // The completed main commits carry what the interrupted ones would have: the counters add
    // up to the archive, and the per-partition event times are in the state.
    let counted = |key: &str| main["summaries"][key].as_u64().unwrap_or(0);
    assert_eq!(counted("kappa.records-in"), expected.messages, "{main}");
    assert_eq!(counted("kappa.quarantined"), expected.rows, "{main}");
    assert_eq!(counted("kappa.duplicates"), expected.duplicates, "{main}");
    let state = &main["state"]["kappa.state.orders"];
    assert_eq!(
        state["event-times"]["orders"].as_object().map(|m| m.len()),
        Some(expected.next_offsets.len()),
        "{state}"
    );
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
    let line = kappa_integration_tests::first_stdout_line(&mut child);
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
    // A wait per run of archive files decoded together: at least one, at most one per file.
    let runs = value("kappa_source_archive_wait_seconds_count");
    let files = summary["archive_files"].as_f64().unwrap();
    assert!(runs >= 1.0 && runs <= files, "{runs} runs of {files} files");
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

/// Audit cases 1 and 2, end to end with a second engine. PyIceberg rewrites the table (a
/// snapshot without any `kappa.*` key) and expires every older snapshot: the next replay must
/// still know the position and write nothing again. A table whose position is truly gone (its
/// state property removed too) is refused until `kappa state recover` rebuilds it; a renamed
/// pipeline is refused until `kappa state takeover` moves the position over.
#[test]
fn table_maintenance_by_another_engine_and_a_rename_never_ingest_twice() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec::new(9_000),
        ArchiveOptions {
            flush_size: 1_000,
            ..ArchiveOptions::default()
        },
    );
    let config = scene.config("");
    let config_arg = config.display().to_string();
    assert_eq!(replay(&config, &[])["complete"], true);

    let after = scene.foreign("compact-and-expire", "orders");
    assert_eq!(
        after["kappa_snapshots"], 0,
        "no snapshot carries Kappa's summary: {after}"
    );
    assert_eq!(after["rows"].as_u64(), Some(expected.rows));
    let again = replay(&config, &[]);
    assert_eq!(again["complete"], true, "{again}");
    assert_eq!(
        again["rows_written"], 0,
        "nothing is written again: {again}"
    );
    // The report's table figures count live files only: PyIceberg's overwrite keeps the files
    // it replaced in its manifests, as deleted entries.
    let files = scene.foreign("files", "orders");
    let days = files["files"].as_object().unwrap();
    let live: usize = days.values().map(|f| f.as_array().unwrap().len()).sum();
    assert_eq!(
        again["table"]["rows"].as_u64(),
        Some(expected.rows),
        "{again}"
    );
    assert_eq!(again["table"]["data_files"], live, "{again} {files}");
    assert_eq!(again["table"]["partitions"], days.len(), "{again} {files}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered())
    );

    // The position truly gone: refused, naming the cause, and nothing written.
    let gone = scene.foreign("drop-state", "orders");
    assert_eq!(gone["state_properties"], serde_json::json!([]), "{gone}");
    let out = kappa(&["replay", "-c", &config_arg, "--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no position of pipeline \"orders\"")
            && stderr.contains("kappa state recover"),
        "{stderr}"
    );
    assert_eq!(
        scene.read("pyiceberg", "orders")["rows"].as_u64(),
        Some(expected.rows)
    );
    let out = kappa(&["state", "recover", "-c", &config_arg], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kappa.orders: recorded next offsets"),
        "{text}"
    );
    let recovered = replay(&config, &[]);
    assert_eq!(recovered["complete"], true, "{recovered}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered()),
        "dead letters are not written again either"
    );

    // A rename: refused with both names, then taken over.
    let renamed = ["--set", "pipeline.name=orders-v2"];
    let mut args = vec!["replay", "-c", config_arg.as_str(), "--json"];
    args.extend_from_slice(&renamed);
    let out = kappa(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"orders\"")
            && stderr.contains("\"orders-v2\"")
            && stderr.contains("kappa state takeover"),
        "{stderr}"
    );
    let mut args = vec![
        "state",
        "takeover",
        "-c",
        config_arg.as_str(),
        "--from",
        "orders",
    ];
    args.extend_from_slice(&renamed);
    let out = kappa(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = replay(&config, &renamed);
    assert_eq!(moved["complete"], true, "{moved}");
    assert_eq!(moved["rows_written"], 0, "{moved}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), &expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered())
    );
    // The old name is refused from now on.
    let out = kappa(&["replay", "-c", &config_arg, "--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("handed its position over"), "{stderr}");

    // PyIceberg deletes a day's rows: its snapshot's manifests list that day's files as deleted
    // entries. The report counts what a reader sees.
    let listed = scene.foreign("files", "orders");
    // The day with the most files (the first days of a history hold few events).
    let before = listed["files"].as_object().unwrap();
    let day = before
        .keys()
        .max_by_key(|d| before[*d].as_array().unwrap().len())
        .unwrap();
    let deleted = scene.foreign_with("delete-day", "orders", &[day]);
    let after_delete = replay(&config, &renamed);
    assert_eq!(after_delete["rows_written"], 0, "{after_delete}");
    let files = scene.foreign("files", "orders");
    let days = files["files"].as_object().unwrap();
    let live: usize = days.values().map(|f| f.as_array().unwrap().len()).sum();
    assert!(
        deleted["rows"].as_u64().unwrap() < expected.rows,
        "{deleted}"
    );
    assert_eq!(
        after_delete["table"]["rows"], deleted["rows"],
        "{after_delete}"
    );
    assert_eq!(
        after_delete["table"]["data_files"], live,
        "{after_delete} {files}"
    );
    assert_eq!(after_delete["table"]["partitions"], days.len(), "{files}");
}

/// Audit case 3, end to end: an archive whose oldest objects a lifecycle rule removed. The first
/// replay must not record a position in the middle of history as if everything before had been
/// ingested: refused (exit 2, nothing written in any table) unless `--accept-missing-history`,
/// which records the skipped offsets in the table.
#[test]
fn a_replay_of_an_archive_missing_its_oldest_objects_is_refused_unless_the_skip_is_asked_for() {
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec::new(6_000),
        ArchiveOptions {
            flush_size: 500,
            ..ArchiveOptions::default()
        },
    );
    // The lifecycle rule: partition 1's first object is gone.
    let mut removed = None;
    for entry in kappa_integration_tests::files_under(&scene.path("archive")) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("orders+1+") && name.trim_end_matches(".avro").ends_with("+0000000000")
        {
            std::fs::remove_file(&entry).unwrap();
            removed = Some(name);
        }
    }
    assert!(
        removed.is_some(),
        "partition 1's first object exists in the archive"
    );
    let config = scene.config("");
    let config_arg = config.display().to_string();
    let out = kappa(&["replay", "-c", &config_arg, "--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("orders-1")
            && stderr.contains("offset 500")
            && stderr.contains("--accept-missing-history"),
        "{stderr}"
    );
    assert_eq!(scene.read("pyiceberg", "orders")["rows"].as_u64(), Some(0));
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(0)
    );

    let summary = replay(&config, &["--accept-missing-history"]);
    assert_eq!(summary["complete"], true, "{summary}");
    let main = scene.read_kappa_metadata("orders");
    let rows = main["rows"].as_u64().unwrap();
    assert!(rows < expected.rows && rows > expected.rows / 2, "{main}");
    assert_eq!(
        main["state"]["kappa.state.orders"]["skipped"],
        serde_json::json!({"orders": {"1": [0, 500]}}),
        "{main}"
    );
    // `kappa status` shows the skip and where the position is kept.
    let out = kappa(&["status", "-c", &config_arg, "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap();
    assert_eq!(
        status["skipped"],
        serde_json::json!({"orders-1": [0, 500]}),
        "{status}"
    );
    assert!(
        status["position_stored_in"]
            .as_str()
            .unwrap_or("")
            .contains("kappa.state"),
        "{status}"
    );
}

#[test]
fn a_value_the_table_cannot_hold_goes_to_the_dlq_and_the_replay_goes_on() {
    use apache_avro::types::Value as Avro;
    let scene = Scene::local();
    let expected = scene.write_local_archive(
        HistorySpec::new(3_000),
        ArchiveOptions {
            shape: RecordShape::Value,
            flush_size: 300,
            layout: Layout::Default,
            ..ArchiveOptions::default()
        },
    );
    // Every file of the archive, with its records.
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut dirs = vec![scene.path("archive")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "avro") {
                files.push(path);
            }
        }
    }
    files.sort();
    let field = |fields: &[(String, Avro)], name: &str| {
        fields.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    let mut seen: std::collections::HashMap<String, u32> = Default::default();
    for file in &files {
        for value in apache_avro::Reader::new(&std::fs::read(file).unwrap()[..]).unwrap() {
            let Avro::Record(fields) = value.unwrap() else {
                panic!("not a record");
            };
            *seen
                .entry(format!("{:?}", field(&fields, "event_id")))
                .or_default() += 1;
        }
    }
    // In a file of partition 0 after the first, a record that must be a row (its event id
    // appears once, its amount is not negative): rewrite its event time in nanoseconds.
    let target = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("orders+0+"))
        .nth(1)
        .unwrap()
        .clone();
    let bytes = std::fs::read(&target).unwrap();
    let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
    let schema = reader.writer_schema().clone();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    let mut chosen = None;
    for (i, value) in reader.enumerate() {
        let Avro::Record(mut fields) = value.unwrap() else {
            panic!("not a record");
        };
        let unique = seen[&format!("{:?}", field(&fields, "event_id"))] == 1;
        let amount_ok = matches!(field(&fields, "amount_cents"), Avro::Long(a) if a >= 0);
        if chosen.is_none() && unique && amount_ok {
            for (name, value) in fields.iter_mut() {
                if let (true, Avro::TimestampMillis(ms)) = (name == "event_time", &*value) {
                    let nanos = *ms * 1_000_000;
                    *value = Avro::TimestampMillis(nanos);
                    chosen = Some((i as i64, nanos));
                }
            }
        }
        writer.append_value_ref(&Avro::Record(fields)).unwrap();
    }
    std::fs::write(&target, writer.into_inner().unwrap()).unwrap();
    let (index, nanos) = chosen.expect("a unique event in the file");
    let start: i64 = target
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .rsplit('+')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let summary = replay(&scene.config(""), &[]);
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["records_in"].as_u64(), Some(expected.messages));
    assert_eq!(summary["rows_written"].as_u64(), Some(expected.rows - 1));
    assert_eq!(summary["duplicates"].as_u64(), Some(expected.duplicates));
    assert_eq!(
        summary["undecodable"].as_u64(),
        Some(expected.undecodable + 1)
    );
    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_eq!(read["rows"].as_u64(), Some(expected.rows - 1), "{engine}");
        assert_eq!(
            read["distinct_coordinates"].as_u64(),
            Some(expected.rows - 1)
        );
    }
    // The dead letter, read back with PyIceberg: where it was, why, and its bytes.
    let script = r#"
import json, sys
from pyiceberg.catalog.sql import SqlCatalog
table = SqlCatalog("kappa", uri=sys.argv[1], warehouse=sys.argv[2]).load_table(sys.argv[3])
rows = [r for r in table.scan().to_arrow().to_pylist() if r["error_kind"] == "unconvertible"]
print(json.dumps([[r["kafka_partition"], r["kafka_offset"], r["object_key"], r["error_message"], len(r["raw"] or b"")] for r in rows]))
"#;
    let out = std::process::Command::new(kappa_integration_tests::python())
        .args(["-c", script, &scene.catalog_uri, &scene.warehouse])
        .arg(format!("{}.orders_dlq", scene.namespace))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let letters: serde_json::Value =
        serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = letters[0].as_array().unwrap();
    assert_eq!(letter[0].as_i64(), Some(0));
    assert_eq!(letter[1].as_i64(), Some(start + index));
    assert!(
        letter[2]
            .as_str()
            .unwrap()
            .ends_with(&format!("orders+0+{start:010}.avro"))
    );
    let message = letter[3].as_str().unwrap();
    assert!(
        message.contains("event_time") && message.contains(&nanos.to_string()),
        "{message}"
    );
    assert!(letter[4].as_u64().unwrap() > 0, "raw bytes kept");
}

/// `kappa diff`: a shadow table replayed from the same archive matches day by day (exit 0); a
/// shadow that lacks one Kafka partition differs on exactly the days that partition's events fall
/// on, by exactly their number of rows (exit 5, the days named). The expectation is counted from
/// the generated messages.
#[test]
fn kappa_diff_matches_a_faithful_shadow_and_names_the_days_a_partial_one_misses() {
    use std::collections::BTreeMap;
    let scene = Scene::local();
    let spec = HistorySpec {
        days: 3,
        partitions: 3,
        ..HistorySpec::new(3_000)
    };
    let messages: Vec<kappa_synth::Message> =
        kappa_synth::History::new(spec.clone()).unwrap().collect();
    scene.write_local_archive(spec, ArchiveOptions::default());
    let config = scene.config("");
    replay(&config, &[]);
    let shadow = config.with_file_name("shadow.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let renamed = text.replacen(
        &format!(
            "[table]\nnamespace = \"{}\"\nname = \"orders\"",
            scene.namespace
        ),
        &format!(
            "[table]\nnamespace = \"{}\"\nname = \"orders_shadow\"",
            scene.namespace
        ),
        1,
    );
    assert_ne!(renamed, text);
    std::fs::write(&shadow, renamed).unwrap();
    replay(&shadow, &["--partitions", "0,1"]);

    // The rows partition 2 gives each day.
    let mut per_day: BTreeMap<i64, kappa_synth::Tally> = BTreeMap::new();
    for m in messages.iter().filter(|m| m.partition == 2) {
        if let Some(event) = &m.event {
            per_day
                .entry(event.event_time_ms.div_euclid(86_400_000))
                .or_default()
                .add(m);
        }
    }
    let diff = |extra: &[&str]| {
        let path = config.display().to_string();
        let mut args = vec!["diff", "-c", &path, "--other", "orders_shadow", "--json"];
        args.extend_from_slice(extra);
        let out = kappa(&args, &[]);
        let report: serde_json::Value =
            serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap();
        (
            out.status.code(),
            report,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, report, stderr) = diff(&[]);
    assert_eq!(code, Some(5), "{report} {stderr}");
    assert_eq!(report["matches"], false);
    assert_eq!(report["compared_on"], "event_id");
    let days = report["days"].as_array().unwrap();
    let missing: u64 = per_day.values().map(|t| t.finish().rows).sum();
    assert!(missing > 0);
    let mut seen = 0;
    for day in days {
        let name = day["day"].as_str().unwrap();
        let number = chrono_day(name);
        let want = per_day.get(&number).map_or(0, |t| t.finish().rows);
        assert_eq!(day["missing_in_other"].as_u64(), Some(want), "{day}");
        assert_eq!(day["extra_in_other"].as_u64(), Some(0), "{day}");
        assert_eq!(
            day["rows"].as_u64().unwrap() - day["other_rows"].as_u64().unwrap(),
            want,
            "{day}"
        );
        assert_eq!(day["matches"], want == 0, "{day}");
        seen += want;
    }
    assert_eq!(seen, missing, "every missing row is on a day of the report");
    assert!(stderr.contains("differ on"), "{stderr}");

    // The text form names the differing days.
    let path = config.display().to_string();
    let text = kappa(&["diff", "-c", &path, "--other", "orders_shadow"], &[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("rows missing in"), "{stdout}");

    // Once the shadow holds partition 2 too, every day matches.
    replay(&shadow, &["--partitions", "2"]);
    let (code, report, stderr) = diff(&[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["matches"], true);
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn chrono_day(text: &str) -> i64 {
    let parts: Vec<i64> = text.split('-').map(|p| p.parse().unwrap()).collect();
    let (y, m, d) = (parts[0], parts[1], parts[2]);
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
