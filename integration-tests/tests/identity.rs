//! `[pipeline] logic = "identity"`: a topic no Kappa code knows (decimal, timestamp-micros, an
//! array of strings, a boolean, a nullable string, a nested record) replayed from its Kafka Connect
//! archive and consumed live, each giving exactly the rows the generated history holds, as
//! PyIceberg and DuckDB read them; and `orders` and `payments` side by side in one catalog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use kappa_integration_tests::kafka::{self, brokers, create_topic, unique_topic};
use kappa_integration_tests::payments::{self, PaymentMessage};
use kappa_integration_tests::{Scene, kappa, last_line};
use kappa_synth::{ArchiveOptions, HistorySpec};
use serde_json::Value;

const PARTITIONS: i32 = 3;

/// Asserts that `table` holds exactly `expected` for both engines, and that its columns have the
/// types the schema asks for.
fn assert_rows(scene: &Scene, table: &str, expected: &[Value]) {
    for engine in ["pyiceberg", "duckdb"] {
        let dump = payments::dump(scene, engine, table);
        let rows = dump["rows"].as_array().unwrap();
        assert_eq!(rows.len(), expected.len(), "{engine}: row count");
        for (got, want) in rows.iter().zip(expected) {
            let mut want = want.clone();
            // PyIceberg 0.12 rebuilds list columns from their offsets without the validity
            // (pyiceberg/io/pyarrow.py, `pa.ListArray.from_arrays(offsets, values)`): it reads a
            // NULL list as []. The Parquet files hold NULL, as DuckDB reads them.
            if engine == "pyiceberg" && want.get("_kafka_headers") == Some(&Value::Null) {
                want["_kafka_headers"] = serde_json::json!([]);
            }
            assert_eq!(got, &want, "{engine}: row");
        }
        let types = &dump["types"];
        let text = |c: &str| types[c].as_str().unwrap().to_ascii_lowercase();
        let amount = text("amount").replace(' ', "");
        assert!(
            amount.contains("decimal") && amount.contains("(12,2)"),
            "{engine}: {types}"
        );
        assert!(
            text("tags").contains("list") || text("tags").contains("[]"),
            "{engine}: {types}"
        );
        assert!(text("payer").contains("struct"), "{engine}: {types}");
        assert!(text("paid_at").contains("timestamp"), "{engine}: {types}");
    }
}

fn replay(config: &Path) -> Value {
    let out = kappa(
        &["replay", "-c", &config.display().to_string(), "--json"],
        &[],
    );
    assert!(
        out.status.success(),
        "kappa replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(last_line(&out.stdout)).unwrap()
}

/// Produces `messages` to a new topic, runs `kappa run` on a payments pipeline reading it
/// (`configure` edits its config first) until the table holds every offset, stops it, and
/// returns the scene and the run summary.
fn consume_live(
    messages: &[PaymentMessage],
    name: &str,
    configure: impl Fn(&Path),
) -> (Scene, Value) {
    let brokers = brokers();
    let topic = unique_topic(name);
    create_topic(&brokers, &topic, PARTITIONS);
    payments::produce(&kafka::producer(&brokers), &topic, messages);
    let scene = Scene::local();
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    let config = payments::config(
        &scene,
        &scene.path("schemas"),
        &kafka::kafka_section_at(&brokers, &topic, &format!("{topic}-group")),
    );
    configure(&config);
    let run = kafka::run_live(&config, &[]);
    let offsets = kappa_synth::Expected {
        next_offsets: payments::next_offsets(messages, PARTITIONS),
        ..Default::default()
    };
    kafka::wait_until_committed(&config, &topic, &offsets, Duration::from_secs(120));
    let (code, summary) = kappa_integration_tests::endpoint::terminate(run);
    assert_eq!(code, Some(0), "{summary}");
    (scene, summary)
}

fn history() -> Vec<PaymentMessage> {
    payments::history(3_000, PARTITIONS)
}

#[test]
fn a_topic_no_code_knows_is_replayed_with_identity_and_reads_back_exactly() {
    let scene = Scene::local();
    let messages = history();
    let duplicates = messages.iter().filter(|m| m.duplicate).count();
    assert!(duplicates > 50, "the history redelivers: {duplicates}");
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    payments::write_archive(&scene.path("archive"), "payments", &messages, 250);
    let config = payments::config(
        &scene,
        &scene.path("schemas"),
        &payments::archive_section(&scene, "payments"),
    );
    let summary = replay(&config);
    let expected = payments::expected_rows(&messages);
    assert_eq!(summary["records_in"], messages.len() as u64);
    assert_eq!(summary["dead_lettered"], 0);
    assert_rows(&scene, "payments", &expected);
    // A second replay adds nothing.
    let again = replay(&config);
    assert_eq!(again["rows_written"], 0, "{again}");
    assert_rows(&scene, "payments", &expected);
}

#[test]
fn the_same_topic_consumed_live_gives_the_rows_its_replay_gives() {
    let messages = history();
    let (scene, summary) = consume_live(&messages, "payments", |_| {});
    assert_eq!(summary["records_in"], messages.len() as u64, "{summary}");
    assert_rows(&scene, "payments", &payments::expected_rows(&messages));
}

#[test]
fn orders_and_payments_run_side_by_side_in_one_catalog_with_their_own_tables_and_states() {
    let scene = Scene::local();
    // orders: the synthetic history through the orders logic.
    let spec = HistorySpec::new(5_000);
    let orders_expected = scene.write_local_archive(spec, ArchiveOptions::default());
    let orders_config = scene.config("");
    // payments: its own topic in the same archive root, its own table, the same catalog.
    let messages = history();
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    payments::write_archive(&scene.path("archive"), "payments", &messages, 250);
    let payments_config = payments::config(
        &scene,
        &scene.path("schemas"),
        &payments::archive_section(&scene, "payments"),
    );
    // Both at once.
    let spawn = |config: &Path| {
        std::process::Command::new(kappa_integration_tests::kappa_bin())
            .args(["replay", "-c", &config.display().to_string(), "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (orders_run, payments_run) = (spawn(&orders_config), spawn(&payments_config));
    for run in [orders_run, payments_run] {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let orders = scene.read("pyiceberg", "orders");
    assert_eq!(orders["rows"], orders_expected.rows);
    assert_eq!(orders["checksum"], orders_expected.checksum.to_string());
    assert_rows(&scene, "payments", &payments::expected_rows(&messages));
    // Each table holds its own pipeline's position, and only it.
    let orders_meta = scene.read_kappa_metadata("orders");
    let payments_meta = scene.read_kappa_metadata("payments");
    let states = |meta: &Value| -> Vec<String> {
        meta["state"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(states(&orders_meta), ["kappa.state.orders"]);
    assert_eq!(states(&payments_meta), ["kappa.state.payments"]);
    let status = kafka::status(&payments_config);
    for (p, next) in payments::next_offsets(&messages, PARTITIONS)
        .iter()
        .enumerate()
    {
        assert_eq!(
            status["offsets"][format!("payments-{p}")],
            *next,
            "{status}"
        );
        assert!(
            status["offsets"][format!("orders-{p}")].is_null(),
            "{status}"
        );
    }
    let status = kafka::status(&orders_config);
    assert!(status["offsets"]["payments-0"].is_null(), "{status}");
}

/// The payments config with every Kafka metadata column.
fn with_metadata(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "partition_by = [\"day(paid_at)\"]",
        "partition_by = [\"day(paid_at)\"]\nkafka_metadata = [\"key\", \"timestamp\", \"headers\"]",
    );
    std::fs::write(config, text).unwrap();
}

#[test]
fn kafka_metadata_columns_hold_each_records_key_timestamp_and_headers() {
    let messages = history();
    // Live: the key, timestamp and headers every record was produced with.
    let (scene, _) = consume_live(&messages, "payments-meta", with_metadata);
    assert_rows(
        &scene,
        "payments",
        &payments::expected_rows_with_metadata(&messages, true),
    );
    // Replay of a full-record backup: key and timestamp from its envelopes; it has no headers.
    let scene = Scene::local();
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    payments::write_envelope_archive(&scene.path("archive"), "payments", &messages, 400);
    let config = payments::config(
        &scene,
        &scene.path("schemas"),
        &payments::archive_section(&scene, "payments"),
    );
    with_metadata(&config);
    replay(&config);
    assert_rows(
        &scene,
        "payments",
        &payments::expected_rows_with_metadata(&messages, false),
    );
}
