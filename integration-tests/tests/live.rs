//! `kappa run` against a real Kafka-protocol broker (tansu, from `dev/services.sh`): every
//! produced event exactly once in the table, through SIGTERM, SIGKILL, replicas joining and
//! leaving, and a switch from replay to live.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::process::Child;
use std::time::{Duration, Instant};

use kappa_integration_tests::endpoint::{
    assert_promtool_accepts, http_get, sample, sample_sum, serve_metrics, terminate,
};
use kappa_integration_tests::kafka::{
    OwnBroker, brokers, create_topic, expected_from_topic, holds_everything, live_scene_on,
    produce, producer, producer_with, run_live, run_logs, status, unique_topic,
    wait_until_committed,
};
use kappa_integration_tests::{Catalog, Scene, assert_table_matches, kappa, kappa_bin};
use kappa_synth::{ArchiveOptions, Expected, History, HistorySpec, Message, write_messages};

/// A scene whose pipeline reads `topic` live, committing every second.
fn live_scene(topic: &str) -> (Scene, std::path::PathBuf) {
    live_scene_at(&brokers(), topic)
}

/// [`live_scene`] on a broker of the test's own.
fn live_scene_at(brokers: &str, topic: &str) -> (Scene, std::path::PathBuf) {
    live_scene_on(Catalog::Sql, brokers, topic)
}

fn history(topic: &str, events: u64, partitions: i32) -> History {
    History::new(HistorySpec {
        topic: topic.to_string(),
        partitions,
        ..HistorySpec::new(events)
    })
    .unwrap()
}

/// Produces a history of `events` events to `topic` at `per_second` on a thread of its own; the
/// thread returns what the table must hold.
fn produce_in_background(
    topic: &str,
    events: u64,
    partitions: i32,
    per_second: u64,
) -> std::thread::JoinHandle<Expected> {
    produce_in_background_at(brokers(), topic, events, partitions, per_second)
}

/// [`produce_in_background`] to `brokers`.
fn produce_in_background_at(
    brokers: String,
    topic: &str,
    events: u64,
    partitions: i32,
    per_second: u64,
) -> std::thread::JoinHandle<Expected> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let producer = producer(&brokers);
        produce(
            &producer,
            &topic,
            history(&topic, events, partitions),
            per_second,
        )
    })
}

/// Starts `kappa run`; its log goes to `run-<n>.log` next to the config (read on failures).
fn run(config: &std::path::Path) -> Child {
    run_with(config, &[])
}

/// [`run`] with environment variables (`KAPPA__...` overrides).
fn run_with(config: &std::path::Path, env: &[(&str, &str)]) -> Child {
    run_live(config, env)
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

/// A pseudo-random sequence for kill times (printed seed: a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn from_time() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("kill schedule seed: {seed}");
        Lcg(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Group membership settings that let a killed member's partitions move on quickly.
const FAST_GROUP: &str = "[source.kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";

fn live_scene_with(topic: &str, extra: &str) -> (Scene, std::path::PathBuf) {
    append(live_scene(topic), extra)
}

fn append(
    (scene, config): (Scene, std::path::PathBuf),
    extra: &str,
) -> (Scene, std::path::PathBuf) {
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    (scene, config)
}

#[test]
fn sigkill_twenty_times_while_producing_then_every_event_exactly_once() {
    sigkill_twenty_times_while_producing_then_every_event_exactly_once_on(Catalog::Sql);
}

#[test]
fn sigkill_twenty_times_while_producing_then_every_event_exactly_once_on_rest() {
    sigkill_twenty_times_while_producing_then_every_event_exactly_once_on(Catalog::Rest);
}

fn sigkill_twenty_times_while_producing_then_every_event_exactly_once_on(catalog: Catalog) {
    let topic = unique_topic("kill");
    create_topic(&brokers(), &topic, 3);
    let (scene, config) = append(live_scene_on(catalog, &brokers(), &topic), FAST_GROUP);
    let producing = produce_in_background(&topic, 40_000, 3, 2_000);
    let mut rng = Lcg::from_time();
    for _ in 0..20 {
        let mut child = run(&config);
        std::thread::sleep(Duration::from_millis(300 + rng.below(1_700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let expected = producing.join().unwrap();
    let child = run(&config);
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(120));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_exactly_once(&scene, &expected);
}

/// The broker is SIGKILLed under a running pipeline and restarted. The expectation comes from
/// what was produced (each send acknowledged before the kill or after the restart), never from
/// what the topic holds afterwards: a record the broker lost or the pipeline skipped shows as a
/// missing row. (Sends in flight across the kill are avoided: tansu forgets idempotent producer
/// state on a restart and may store a retried send twice.)
#[test]
fn a_broker_restart_during_the_run_is_ridden_out_exactly_once() {
    let topic = unique_topic("restart");
    let mut broker = OwnBroker::start("restart");
    create_topic(&broker.address(), &topic, 3);
    let (scene, config) = append(live_scene_at(&broker.address(), &topic), FAST_GROUP);
    let messages: Vec<Message> = history(&topic, 30_000, 3).collect();
    let (before, after) = messages.split_at(messages.len() / 2);
    // Batched sends: this broker stores on S3, one request per record would crawl. (A batch
    // hides tansu's true partition end from ListOffsets, which only a new assignment asks.)
    let batched = producer_with(&broker.address(), &[("batch.num.messages", "10000")]);
    let first = produce(&batched, &topic, before.to_vec(), 0);
    let child = run(&config);
    // Killed while the pipeline reads and commits the first half.
    let deadline = Instant::now() + Duration::from_secs(60);
    let path = config.display().to_string();
    loop {
        // `kappa status` fails until the pipeline created its table.
        let out = kappa(&["status", "-c", &path, "--json"], &[]);
        let committed = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(kappa_integration_tests::last_line(
                &out.stdout,
            ))
            .ok()
            .and_then(|s| s["offsets"].as_object().map(|o| !o.is_empty()))
            .unwrap_or(false);
        if committed {
            break;
        }
        assert!(Instant::now() < deadline, "nothing committed");
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.kill(); // SIGKILL: no clean shutdown, clients see connections drop
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    wait_until_committed(&config, &topic, &first, Duration::from_secs(120));
    let second = produce(&batched, &topic, after.to_vec(), 0);
    let mut tally = kappa_synth::Tally::default();
    for message in &messages {
        tally.add(message);
    }
    let expected = tally.finish();
    eprintln!("produced {} + {} messages", first.messages, second.messages);
    wait_until_committed(&config, &topic, &second, Duration::from_secs(120));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_exactly_once(&scene, &expected);
}

#[test]
fn replicas_joining_and_leaving_a_six_partition_topic_write_every_event_once() {
    let topic = unique_topic("replicas");
    create_topic(&brokers(), &topic, 6);
    let (scene, config) = live_scene_with(&topic, FAST_GROUP);
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[source.kafka]\n",
        "[source.kafka]\nassignment = \"group\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let producing = produce_in_background(&topic, 60_000, 6, 3_000);
    // Two replicas, then three; one is killed, another stopped cleanly, one added back.
    let mut a = run(&config);
    let b = run(&config);
    std::thread::sleep(Duration::from_secs(4));
    let c = run(&config);
    std::thread::sleep(Duration::from_secs(5));
    a.kill().unwrap(); // SIGKILL: its partitions move once the session times out
    a.wait().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let (code, summary) = terminate(b);
    assert_eq!(code, Some(0), "{summary}");
    let mut written = vec![summary["rows_written"].as_u64().unwrap()];
    let d = run(&config);
    let expected = producing.join().unwrap();
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(120));
    for child in [c, d] {
        let (code, summary) = terminate(child);
        assert_eq!(code, Some(0), "{summary}");
        assert_eq!(summary["complete"], true, "{summary}");
        written.push(summary["rows_written"].as_u64().unwrap());
    }
    // Every replica that ran to the end wrote a share of the table.
    assert!(
        written.iter().all(|w| *w > 0),
        "rows written per replica: {written:?}"
    );
    assert_exactly_once(&scene, &expected);
}

/// Three replicas, each its own shard of a six-partition topic (as the chart's StatefulSet runs
/// them); one is SIGKILLed mid-stream and restarted with the same shard, another stopped and
/// restarted. Every event lands once, and every shard wrote its partitions' rows.
#[test]
fn sharded_replicas_killed_and_restarted_write_every_event_once() {
    sharded_replicas_killed_and_restarted_write_every_event_once_on(Catalog::Sql);
}

#[test]
fn sharded_replicas_killed_and_restarted_write_every_event_once_on_rest() {
    sharded_replicas_killed_and_restarted_write_every_event_once_on(Catalog::Rest);
}

fn sharded_replicas_killed_and_restarted_write_every_event_once_on(catalog: Catalog) {
    let topic = unique_topic("shards");
    create_topic(&brokers(), &topic, 6);
    let (scene, config) = live_scene_on(catalog, &brokers(), &topic);
    let producing = produce_in_background(&topic, 60_000, 6, 3_000);
    let shard = |i: usize| {
        run_with(
            &config,
            &[("KAPPA__SOURCE__KAFKA__SHARD", ["0/3", "1/3", "2/3"][i])],
        )
    };
    let mut replicas: Vec<Child> = (0..3).map(shard).collect();
    std::thread::sleep(Duration::from_secs(5));
    replicas[1].kill().unwrap(); // SIGKILL
    replicas[1].wait().unwrap();
    replicas[1] = shard(1);
    std::thread::sleep(Duration::from_secs(3));
    let old = std::mem::replace(&mut replicas[2], shard(2));
    let (code, summary) = terminate(old);
    assert_eq!(code, Some(0), "{summary}\n{}", run_logs(&config));
    let expected = producing.join().unwrap();
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(120));
    for child in replicas {
        let (code, summary) = terminate(child);
        assert_eq!(code, Some(0), "{summary}\n{}", run_logs(&config));
        assert_eq!(summary["complete"], true, "{summary}");
        // Production went on after the restarts: each shard read its partitions' share.
        assert!(summary["rows_written"].as_u64() > Some(0), "{summary}");
    }
    assert_exactly_once(&scene, &expected);
}

/// Writes `messages` of `topic` as the scene's local archive, under the topic's own name.
fn archive(
    scene: &Scene,
    config: &std::path::Path,
    topic: &str,
    partitions: i32,
    messages: Vec<Message>,
) {
    let text = std::fs::read_to_string(config).unwrap().replacen(
        "topic = \"orders\"",
        &format!("topic = \"{topic}\""),
        1,
    );
    std::fs::write(config, text).unwrap();
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(scene.path("archive")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(write_messages(
            &store,
            &object_store::path::Path::default(),
            topic,
            partitions,
            messages,
            &ArchiveOptions::default(),
        ))
        .unwrap();
}

fn spec_v1_to_v2(topic: &str, events: u64) -> HistorySpec {
    HistorySpec {
        topic: topic.to_string(),
        // Producers move to orders v2 halfway through.
        v2_from: Some(0.5),
        ..HistorySpec::new(events)
    }
}

/// A new 3-partition topic and the 12,000-event history (v1, then v2) to produce to it.
fn v1_to_v2_topic(name: &str) -> (String, Vec<Message>) {
    let topic = unique_topic(name);
    create_topic(&brokers(), &topic, 3);
    let messages = History::new(spec_v1_to_v2(&topic, 12_000))
        .unwrap()
        .collect();
    (topic, messages)
}

#[test]
fn the_same_events_through_kafka_and_through_the_archive_give_identical_tables() {
    let (topic, messages) = v1_to_v2_topic("equal");
    let expected = produce(&producer(&brokers()), &topic, messages.clone(), 0);

    let (live, live_config) = live_scene(&topic);
    let child = run(&live_config);
    wait_until_committed(&live_config, &topic, &expected, Duration::from_secs(60));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");

    let (replayed, replay_config) = live_scene(&topic);
    archive(&replayed, &replay_config, &topic, 3, messages);
    let summary = kappa_integration_tests::replay(&replay_config, &[]);
    assert_eq!(summary["complete"], true, "{summary}");

    for engine in ["pyiceberg", "duckdb"] {
        let a = live.read(engine, "orders");
        let b = replayed.read(engine, "orders");
        assert_table_matches(&a, &expected);
        assert_eq!(a, b, "{engine}: live and replay tables differ");
    }
    assert_eq!(
        live.read("pyiceberg", "orders_dlq")["rows"],
        replayed.read("pyiceberg", "orders_dlq")["rows"]
    );
}

#[test]
fn a_table_started_by_replay_continues_live_without_gap_or_duplicate() {
    let (topic, messages) = v1_to_v2_topic("switch");
    let expected = produce(&producer(&brokers()), &topic, messages.clone(), 0);
    let (scene, config) = live_scene(&topic);
    // The archive holds the first 40% of what the topic holds (in production order).
    let archived: Vec<Message> = messages[..messages.len() * 2 / 5].to_vec();
    archive(&scene, &config, &topic, 3, archived);
    let summary = kappa_integration_tests::replay(&config, &[]);
    assert!(summary["rows_written"].as_u64().unwrap() > 0, "{summary}");
    let child = run(&config);
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(60));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    // The live run started where the replay stopped: it re-read only the dedup window.
    assert!(
        summary["records_in"].as_u64().unwrap() < expected.messages,
        "{summary}"
    );
    assert_exactly_once(&scene, &expected);
}

#[test]
fn a_schema_version_registered_while_running_evolves_the_table_without_losing_its_fields() {
    let (topic, messages) = v1_to_v2_topic("evolve");
    let first_v2 = messages
        .iter()
        .position(|m| m.event.as_ref().is_some_and(|e| e.v2))
        .unwrap();
    // The pipeline starts with a registry that holds orders v1 only.
    let (scene, config) = live_scene(&topic);
    let schemas = scene.path("schemas");
    let subject = schemas.join("orders-value");
    std::fs::create_dir_all(&subject).unwrap();
    let contracts = kappa_integration_tests::contracts_dir().join("orders-value");
    std::fs::copy(contracts.join("1.avsc"), subject.join("1.avsc")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!(
            "dir = \"{}\"",
            kappa_integration_tests::contracts_dir().display()
        ),
        &format!("dir = \"{}\"", schemas.display()),
    );
    std::fs::write(&config, text).unwrap();

    let producer = producer(&brokers());
    let v1_part = produce(&producer, &topic, messages[..first_v2].to_vec(), 0);
    let child = run(&config);
    wait_until_committed(&config, &topic, &v1_part, Duration::from_secs(60));
    // Version 2 is registered, then producers use it.
    std::fs::copy(contracts.join("2.avsc"), subject.join("2.avsc")).unwrap();
    let _ = produce(&producer, &topic, messages[first_v2..].to_vec(), 0);
    let all: Expected = {
        let mut tally = kappa_synth::Tally::default();
        for m in &messages {
            tally.add(m);
        }
        tally.finish()
    };
    wait_until_committed(&config, &topic, &all, Duration::from_secs(90));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["schema_changes"], 1, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_exactly_once(&scene, &all);

    // The same events replayed from an archive with both versions known from the start give
    // the same table: the v2 fields of the live run were kept.
    let (replayed, replay_config) = live_scene(&topic);
    archive(&replayed, &replay_config, &topic, 3, messages);
    let replay = kappa_integration_tests::replay(&replay_config, &[]);
    assert_eq!(replay["complete"], true, "{replay}");
    for engine in ["pyiceberg", "duckdb"] {
        assert_eq!(
            scene.read(engine, "orders"),
            replayed.read(engine, "orders"),
            "{engine}: the live table that evolved mid-run differs from the replay"
        );
    }
}

#[test]
fn a_running_pipeline_serves_metrics_that_match_what_it_did_and_pass_promtool() {
    let topic = unique_topic("metrics");
    create_topic(&brokers(), &topic, 3);
    let expected = produce(&producer(&brokers()), &topic, history(&topic, 6_000, 3), 0);
    let (scene, config) = live_scene(&topic);
    let addr = serve_metrics(&config, "");
    let child = run(&config);
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(60));
    // Lag is measured every 5 s: wait for a measurement after the last commit.
    std::thread::sleep(Duration::from_secs(6));
    let (status, ready) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "{ready}");
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");

    let value = |name: &str| sample_sum(&metrics, name);
    assert_eq!(
        value("kappa_pipeline_records_written_total"),
        expected.rows as f64,
        "{metrics}"
    );
    assert_eq!(
        value("kappa_pipeline_records_dead_lettered_total"),
        expected.dead_lettered() as f64
    );
    assert_eq!(
        value("kappa_pipeline_records_deduplicated_total"),
        expected.duplicates as f64
    );
    assert_eq!(
        value("kappa_source_records_read_total"),
        expected.messages as f64
    );
    assert_eq!(value("kappa_source_consumer_lag_records"), 0.0, "{metrics}");
    assert!(
        metrics.contains("kappa_source_consumer_lag_records{"),
        "lag is reported per partition"
    );
    assert!(value("kappa_table_freshness_lag_seconds") > 0.0);
    // The gate that blocks passed; timeliness (warn) fails, as it should: the generated events
    // are weeks old by the wall clock.
    let passed = |check: &str| sample(&metrics, "kappa_quality_check_passed", &[("check", check)]);
    assert_eq!(
        passed("null_rate.user_id").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(passed("completeness").as_deref(), Some("1"), "{metrics}");
    assert_eq!(passed("timeliness").as_deref(), Some("0"), "{metrics}");
    assert_exactly_once(&scene, &expected);

    // The exposition passes Prometheus' own linter.
    assert_promtool_accepts(&metrics);
}

#[test]
fn a_stalled_source_shows_in_readyz_and_in_a_growing_freshness_lag_then_recovers() {
    let topic = unique_topic("stall");
    let mut broker = OwnBroker::start("stall");
    create_topic(&broker.address(), &topic, 3);
    let (scene, config) = append(live_scene_at(&broker.address(), &topic), FAST_GROUP);
    let addr = serve_metrics(&config, "stall_after = \"8s\"");
    let first = produce(
        &producer(&broker.address()),
        &topic,
        history(&topic, 3_000, 3),
        0,
    );
    let child = run(&config);
    wait_until_committed(&config, &topic, &first, Duration::from_secs(90));
    // Caught up: the source is ready even though nothing arrives.
    std::thread::sleep(Duration::from_secs(7));
    let (status, ready) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "caught up is not stalled: {ready}");
    let freshness = |addr: &str| {
        sample_sum(
            &http_get(addr, "/metrics").1,
            "kappa_table_freshness_lag_seconds",
        )
    };
    let before = freshness(&addr);

    // Lag is measured every 5 s, so a stall shows between 8 and 13 s after the broker went.
    broker.kill();
    std::thread::sleep(Duration::from_secs(14));
    // /readyz names the condition; why (the stalled topic) is in the log, not in the body.
    let (status, reason) = http_get(&addr, "/readyz");
    assert_eq!((status, reason.as_str()), (503, "not ready\nsource\n"));
    let logs = run_logs(&config);
    assert!(
        logs.contains("stalled") && logs.contains(&topic),
        "the log says why: {logs}"
    );
    let after = freshness(&addr);
    assert!(
        after >= before + 9.0,
        "freshness lag grows: {before} then {after}"
    );

    // The broker comes back: records flow again and the pipeline is ready.
    broker.restart();
    let more = produce(
        &producer(&broker.address()),
        &topic,
        history(&topic, 3_000, 3),
        0,
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, reason) = http_get(&addr, "/readyz");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still not ready: {reason}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert!(
        summary["records_in"].as_u64().unwrap() >= first.messages + more.messages / 2,
        "{summary}"
    );
    drop(scene);
}

/// A history of `events` events starting `day` weeks after the default start, with `null_user_rate`
/// NULL user ids and its own seed (so that its event ids are its own).
fn history_from(topic: &str, events: u64, week: i64, null_user_rate: f64) -> History {
    let base = HistorySpec::new(events);
    History::new(HistorySpec {
        topic: topic.to_string(),
        partitions: 3,
        start_ms: base.start_ms + week * 7 * 86_400_000,
        seed: 42 + week as u64,
        null_user_rate,
        ..base
    })
    .unwrap()
}

#[test]
fn a_blocked_live_pipeline_pauses_in_place_and_resumes_exactly_where_it_stopped() {
    let topic = unique_topic("pause");
    create_topic(&brokers(), &topic, 3);
    let (scene, config) = live_scene(&topic);
    let addr = serve_metrics(&config, "");
    let producer = producer(&brokers());
    let good: Vec<Message> = history_from(&topic, 3_000, 0, 0.0005).collect();
    let first = produce(&producer, &topic, good.clone(), 0);
    let mut child = run(&config);
    wait_until_committed(&config, &topic, &first, Duration::from_secs(60));

    // 15% NULL user ids: the gate blocks, and the pipeline pauses instead of exiting.
    let bad: Vec<Message> = history_from(&topic, 2_000, 1, 0.15).collect();
    produce(&producer, &topic, bad.clone(), 0);
    let paused = |addr: &str| {
        let (status, reason) = http_get(addr, "/readyz");
        (status == 503 && reason.lines().any(|l| l == "quality_gate")).then_some(reason)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        if let Some(reason) = paused(&addr) {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "never paused: {:?}\n{}",
            http_get(&addr, "/readyz"),
            run_logs(&config)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // /readyz names the condition only; the log names the check, its value and threshold.
    assert!(!reason.contains("null rate"), "{reason}");
    let logs = run_logs(&config);
    assert!(
        logs.contains("user_id null rate") && logs.contains("(block)"),
        "the log names the check, its value and threshold: {logs}"
    );
    // More good events arrive while it is paused; it still holds its place, and it runs.
    let later: Vec<Message> = history_from(&topic, 3_000, 2, 0.0005).collect();
    produce(&producer, &topic, later.clone(), 0);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a paused pipeline keeps running"
    );
    let offsets = status(&config)["offsets"].clone();
    for (p, next) in first.next_offsets.iter().enumerate() {
        assert_eq!(
            offsets[format!("{topic}-{p}")].as_i64(),
            Some(*next),
            "nothing past the blocked flush is committed: {offsets}"
        );
    }
    assert!(paused(&addr).is_some(), "still paused");

    // An operator lets the blocked data through; the pipeline reads it again, commits it with
    // the verdict marked overridden, and goes on with what arrived meanwhile. Each blocked
    // flush needs its own override (the bad events may span two flushes).
    let config_arg = config.display().to_string();
    let everything: Vec<Message> = good.into_iter().chain(bad).chain(later).collect();
    let expected = expected_from_topic(&brokers(), &topic, &everything);
    let mut overrides = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = status(&config);
        if holds_everything(&status, &topic, &expected) {
            break;
        }
        if paused(&addr).is_some() {
            if overrides == 0 {
                // Nobody named (no --by, no $USER, as in a container): refused.
                let refused = kappa(
                    &["quality", "override", "-c", &config_arg, "--reason", "x"],
                    &[("USER", "")],
                );
                let stderr = String::from_utf8_lossy(&refused.stderr);
                assert_eq!(refused.status.code(), Some(2), "{stderr}");
                assert!(stderr.contains("--by"), "{stderr}");
            }
            let out = kappa(
                &[
                    "quality",
                    "override",
                    "-c",
                    &config_arg,
                    "--reason",
                    "known upstream outage",
                    "--by",
                    "on-call",
                ],
                &[],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            overrides += 1;
            assert!(
                overrides <= 3,
                "an override per blocked flush, not more\n{}",
                run_logs(&config)
            );
            // The pipeline looks every 2 s; give it time to pick the override up.
            std::thread::sleep(Duration::from_secs(4));
        }
        assert!(
            Instant::now() < deadline,
            "did not catch up: {}",
            status["offsets"]
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(overrides >= 1);
    let (status, ready) = http_get(&addr, "/readyz");
    assert_eq!(status, 200, "ready again: {ready}");
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert!(summary["pauses"].as_u64() >= Some(1), "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    // Every event exactly once: the paused pipeline lost nothing and wrote nothing twice.
    assert_exactly_once(&scene, &expected);
    // The report shows the override on the commit that let the NULLs through.
    let out = kappa(
        &["quality", "report", "-c", &config_arg, "--json", "--all"],
        &[],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("overridden by on-call at") && report.contains("known upstream outage"),
        "{report}"
    );
}

/// Against a secured broker at `address` (`client`: the admin's and producer's settings), a topic
/// of 3,000 events read by `kappa run` with `properties` in `[source.kafka.properties]` lands
/// exactly once, and `secret` appears in neither the run log nor `kappa status` at debug level.
/// Returns the scene (which holds the files) and the pipeline's config.
fn a_secured_run_reads_every_event_once(
    name: &str,
    address: &str,
    client: &[(&str, &str)],
    properties: &str,
    secret: &str,
) -> (Scene, std::path::PathBuf) {
    let topic = unique_topic(name);
    kappa_integration_tests::kafka::create_topic_with(address, &topic, 3, client);
    let expected = produce(
        &producer_with(address, client),
        &topic,
        history(&topic, 3_000, 3),
        0,
    );
    let (scene, config) = append(
        live_scene_at(address, &topic),
        &format!("{FAST_GROUP}{properties}"),
    );
    let child = run(&config);
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(90));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_exactly_once(&scene, &expected);
    let logs = run_logs(&config);
    assert!(!logs.contains(secret), "a secret in the log:\n{logs}");
    let status = kappa(
        &["status", "-c", &config.display().to_string(), "--json"],
        &[("KAPPA_LOG", "debug")],
    );
    assert!(status.status.success());
    for stream in [&status.stdout, &status.stderr] {
        assert!(!String::from_utf8_lossy(stream).contains(secret));
    }
    (scene, config)
}

/// `kappa run` on `config` changed by `edit` (saved as `name`.toml beside it) fails within its
/// 5 s startup timeout instead of hanging; returns what it printed on stderr.
fn a_refused_start(
    config: &std::path::Path,
    name: &str,
    edit: impl FnOnce(String) -> String,
) -> String {
    let changed = config.with_file_name(format!("{name}.toml"));
    std::fs::write(&changed, edit(std::fs::read_to_string(config).unwrap())).unwrap();
    let out = kappa(
        &[
            "run",
            "-c",
            &changed.display().to_string(),
            "--set",
            "source.kafka.startup_timeout=5s",
        ],
        &[("KAPPA_LOG", "debug")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    stderr
}

#[test]
fn kafka_over_tls_reads_every_event_once_and_its_secrets_stay_out_of_the_logs() {
    let tls = kappa_integration_tests::tls::TlsBroker::start("tls");
    let ca = tls.ca().display().to_string();
    let client = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
    ];
    // The TLS settings pass through [source.kafka.properties]; a secret-looking value among them
    // must never be logged (the config's Debug redacts it, librdkafka never prints it).
    let secret = "kappa-test-secret-6f1d";
    let trusted = format!("\"ssl.ca.location\" = \"{ca}\"\n");
    let properties =
        format!("\"security.protocol\" = \"ssl\"\n{trusted}\"ssl.key.password\" = \"{secret}\"\n");
    let (_scene, config) =
        a_secured_run_reads_every_event_once("tls", &tls.address(), &client, &properties, secret);

    // Without the CA the broker's certificate is not trusted: a clear failure, not a hang.
    let stderr = a_refused_start(&config, "untrusted", |c| c.replace(&trusted, ""));
    // librdkafka words it "SSL handshake failed: ... certificate verify failed" or "...
    // certificate verify failed (after 2ms in state SSL_HANDSHAKE)", whichever thread reports
    // first.
    assert!(
        (stderr.contains("SSL handshake failed") || stderr.contains("SSL_HANDSHAKE"))
            && stderr.contains("certificate verify failed"),
        "the failure names the TLS cause: {stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
    drop(tls);
}

/// SASL passes through `[source.kafka.properties]` to librdkafka: against a broker that serves
/// only clients authenticated with SASL/PLAIN, every event lands exactly once; the password never
/// appears in the logs or in `kappa status`; a wrong one fails with the broker's reason.
#[test]
fn kafka_over_sasl_reads_every_event_once_and_the_password_stays_out_of_the_logs() {
    let secret = "kappa-sasl-secret-94c2";
    let sasl = kappa_integration_tests::tls::ProxiedBroker::sasl("sasl", "kappa", secret);
    let client = [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "kappa"),
        ("sasl.password", secret),
    ];
    let properties: String = client
        .iter()
        .map(|(key, value)| format!("\"{key}\" = \"{value}\"\n"))
        .collect();
    let (_scene, config) =
        a_secured_run_reads_every_event_once("sasl", &sasl.address(), &client, &properties, secret);

    // A wrong password: the broker refuses it, and the run says so instead of hanging.
    let wrong = "kappa-wrong-password-1b7e";
    let stderr = a_refused_start(&config, "refused", |c| c.replace(secret, wrong));
    assert!(
        stderr.contains("SASL authentication") && stderr.contains("invalid username or password"),
        "the failure names the SASL cause: {stderr}"
    );
    assert!(!stderr.contains(wrong), "{stderr}");
    drop(sasl);
}

/// Audit case 5, the part `kappa status` shows: a table filled from the archive of a topic that
/// was then recreated empty. Its offsets are past the topic's end; status names each partition
/// as out of range instead of showing a lag of 0.
#[test]
fn kappa_status_names_a_table_offset_past_the_end_of_a_recreated_topic() {
    let (topic, messages) = v1_to_v2_topic("recreated");
    let (scene, config) = live_scene(&topic);
    archive(&scene, &config, &topic, 3, messages);
    let summary = kappa_integration_tests::replay(&config, &[]);
    assert!(summary["rows_written"].as_u64().unwrap() > 0, "{summary}");
    // The topic exists and is empty: as after a delete and recreate.
    let status = status(&config);
    let partitions = status["kafka"]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(partitions.len(), 3, "{status}");
    for p in partitions {
        let committed = p["committed"].as_i64().unwrap_or(0);
        assert!(committed > 0, "{p}");
        assert_eq!(p["high_watermark"].as_i64(), Some(0), "{p}");
        let problem = p["out_of_range"].as_str().unwrap_or("");
        assert!(problem.contains("past the topic's end 0"), "{p}");
    }
}

/// Audit case 5: a table filled from the archive of a topic that was then recreated with fewer
/// records. Each partition's table offset is past the topic's end, so `kappa run` stops every
/// partition instead of taking the new records for already committed: an error in the log, the
/// stopped gauge, `/readyz` and `kappa status` say so, and nothing is written. The operator
/// rewinds the partitions with `kappa state skip --rewind` (refused without it), and a new run
/// ingests the recreated topic's records exactly once next to the archived ones.
#[test]
fn a_partition_whose_table_offset_the_topic_does_not_hold_stops_until_an_operator_moves_it() {
    let (topic, archived) = v1_to_v2_topic("gone");
    let (scene, config) = live_scene(&topic);
    archive(&scene, &config, &topic, 3, archived.clone());
    let replayed = kappa_integration_tests::replay(&config, &[]);
    assert!(replayed["rows_written"].as_u64().unwrap() > 0, "{replayed}");
    let before = status(&config);

    // The recreated topic: 900 new events (other ids), fewer per partition than the table holds.
    let recreated: Vec<Message> = History::new(HistorySpec {
        topic: topic.clone(),
        partitions: 3,
        seed: 77,
        ..HistorySpec::new(900)
    })
    .unwrap()
    .collect();
    let produced = produce(&producer(&brokers()), &topic, recreated.clone(), 0);
    let addr = serve_metrics(&config, "");
    let child = run(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let stopped = loop {
        // The endpoint comes up once the process started.
        let stopped = std::net::TcpStream::connect(&addr).map_or(0.0, |_| {
            sample_sum(
                &http_get(&addr, "/metrics").1,
                "kappa_source_partition_stopped",
            )
        });
        if stopped >= 3.0 {
            break stopped;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions did not stop: {}",
            run_logs(&config)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(stopped, 3.0);
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(
        (code, body.as_str()),
        (503, "not ready\nsource_partitions\n")
    );
    let logs = run_logs(&config);
    assert!(
        logs.contains("partition stopped") && logs.contains("past the topic's end"),
        "{logs}"
    );
    // Nothing was taken for committed, nothing written.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&config)["offsets"], before["offsets"]);
    let shown = status(&config);
    for p in shown["kafka"]["partitions"].as_array().unwrap() {
        assert!(p["out_of_range"].is_string(), "{p}");
    }
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["rows_written"].as_u64(), Some(0), "{summary}");

    // Moving back needs --rewind; an offset the topic does not hold is refused.
    let path = config.display().to_string();
    let refused = kappa(
        &[
            "state",
            "skip",
            "-c",
            &path,
            "--partition",
            "0",
            "--to",
            "0",
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rewind"));
    let beyond = kappa(
        &[
            "state",
            "skip",
            "-c",
            &path,
            "--partition",
            "0",
            "--to",
            "100000",
        ],
        &[],
    );
    assert_eq!(beyond.status.code(), Some(2));
    for p in 0..3 {
        let out = kappa(
            &[
                "state",
                "skip",
                "-c",
                &path,
                "--partition",
                &p.to_string(),
                "--to",
                "earliest",
                "--rewind",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let moved = status(&config);
    assert_eq!(moved["moves"].as_array().map(Vec::len), Some(3), "{moved}");

    let child = run(&config);
    wait_until_committed(&config, &topic, &produced, Duration::from_secs(60));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    let mut tally = kappa_synth::Tally::default();
    for message in archived.iter().chain(&recreated) {
        tally.add(message);
    }
    let expected = tally.finish();
    // Every event once. The recreated topic's offsets repeat the old topic's (the rewind), so a
    // (partition, offset) is held twice: once per topic generation.
    for engine in ["pyiceberg", "duckdb"] {
        let read = scene.read(engine, "orders");
        assert_eq!(read["rows"].as_u64(), Some(expected.rows), "{engine}");
        assert_eq!(
            read["distinct_event_ids"].as_u64(),
            Some(expected.rows),
            "{engine}"
        );
        assert_eq!(
            read["checksum"].as_str(),
            Some(expected.checksum.to_string().as_str()),
            "{engine}"
        );
    }
    assert_eq!(
        scene.read("pyiceberg", "orders_dlq")["rows"].as_u64(),
        Some(expected.dead_lettered()),
        "dead-letter rows"
    );
}

/// A backfill of the days a running `kappa run` is appending to: the live pipeline commits the
/// rest of the topic while the backfill's files are staged, the publish folds those commits in,
/// and the live run goes on after it. Every event is in the table once.
#[test]
fn a_backfill_while_the_live_pipeline_appends_to_its_days_loses_and_duplicates_nothing() {
    use std::io::{BufRead, BufReader};

    let topic = unique_topic("backfill");
    create_topic(&brokers(), &topic, 3);
    let messages: Vec<Message> = History::new(HistorySpec {
        topic: topic.clone(),
        partitions: 3,
        days: 4,
        ..HistorySpec::new(9_300)
    })
    .unwrap()
    .collect();
    // Three parts of one history (its offsets and event ids are the topic's): what the archive
    // and the table hold before the backfill, what the live run commits while it is staged, and
    // what the live run commits after its publish.
    let (first, rest) = messages.split_at(5_400);
    let (second, more) = rest.split_at(3_600);
    let producer = producer(&brokers());
    let so_far = produce(&producer, &topic, first.to_vec(), 0);
    let (scene, config) = live_scene(&topic);
    // The archive holds what the topic held so far.
    archive(&scene, &config, &topic, 3, first.to_vec());
    let child = run(&config);
    wait_until_committed(&config, &topic, &so_far, Duration::from_secs(60));

    // The newest day the table holds, and the next: where the rest of the topic lands.
    let files = scene.foreign_with("files", "orders", &[]);
    let from = files["files"]
        .as_object()
        .unwrap()
        .keys()
        .max()
        .unwrap()
        .clone();
    let to = (chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").unwrap()
        + chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    let mut backfill = std::process::Command::new(kappa_bin())
        .args(["backfill", "-c"])
        .arg(&config)
        .args(["--from", &from, "--to", &to, "--json"])
        .env("FAILPOINTS", "backfill::staged=sleep(15000)")
        .env("KAPPA_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = backfill.stderr.take().unwrap();
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
    if staged.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = backfill.kill();
        panic!(
            "the backfill never staged its files: {}",
            log.join().unwrap()
        );
    }
    // The rest of the topic, committed by the live run while the backfill waits to publish.
    produce(&producer, &topic, second.to_vec(), 0);
    let mut tally = kappa_synth::Tally::default();
    for message in first.iter().chain(second) {
        tally.add(message);
    }
    let expected = tally.finish();
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(60));
    let out = backfill.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(out.status.success(), "{log}");
    let report: serde_json::Value =
        serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap();
    assert_eq!(report["state"], "published", "{report}");
    assert!(
        report["kept_files"].as_u64().unwrap() >= 1,
        "the live run's files of those days were folded in: {report}"
    );
    // The live run carries on after the publish (its next commit re-decides on the new head).
    produce(&producer, &topic, more.to_vec(), 0);
    for message in more {
        tally.add(message);
    }
    let expected = tally.finish();
    wait_until_committed(&config, &topic, &expected, Duration::from_secs(60));
    let (code, summary) = terminate(child);
    assert_eq!(code, Some(0), "{summary}");
    assert_exactly_once(&scene, &expected);
}
