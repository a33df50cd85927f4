//! A business logic written outside Kappa, registered here and nowhere else, run through the
//! pipeline library (`kappa-pipeline`) on replay and live, exactly as a builtin logic runs.
//!
//! `refund_guard` rejects refunds (negative amounts) to the dead-letter table, drops redelivered
//! payments (its default dedup key, `payment_id`, through `kappa_logic::Dedup`), and with
//! `[logic.refund_guard] redact_notes = true` blanks the free-text `note`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Decimal128Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use kappa_core::{DeadLetter, DeadLetterKind, ErrorKind, Logic, LogicStats, SourceBatch};
use kappa_integration_tests::kafka::{self, brokers, create_topic, unique_topic};
use kappa_integration_tests::payments::{self, PaymentMessage};
use kappa_integration_tests::{Scene, last_line};
use kappa_logic::{
    BoxedLogic, Dedup, LogicDefaults, LogicEntry, LogicError, LogicSettings, OptionDoc, Registry,
};
use kappa_pipeline::{ReplayRequest, live::LiveHooks};
use serde_json::{Value, json};

const NAME: &str = "refund_guard";

const ENTRY: LogicEntry = LogicEntry {
    name: NAME,
    about: "rejects refunds, drops redelivered payments, optionally redacts notes",
    defaults: LogicDefaults {
        dedup_key: Some("payment_id"),
        null_rate_columns: &[],
        uniqueness_column: Some("payment_id"),
        rules: || Ok(Vec::new()),
    },
    options: &[OptionDoc {
        key: "redact_notes",
        about: "blank the note column (bool, default false)",
    }],
    build,
};

fn build(settings: &LogicSettings) -> Result<BoxedLogic, LogicError> {
    Ok(Box::new(RefundGuard {
        dedup: Dedup::new(settings.dedup_key.clone(), settings.dedup_window),
        redact_notes: settings.options.bool("redact_notes", false)?,
    }))
}

struct RefundGuard {
    dedup: Dedup,
    redact_notes: bool,
}

fn failed(message: String) -> LogicError {
    LogicError::Failed {
        logic: NAME,
        message,
        kind: ErrorKind::User,
    }
}

/// Whether each row is a refund.
fn refunds(batch: &SourceBatch) -> Result<Vec<bool>, LogicError> {
    let amounts = batch
        .records
        .column_by_name("amount")
        .ok_or_else(|| failed("no column amount".into()))?;
    let amounts = amounts
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| failed(format!("amount is {}, not a decimal", amounts.data_type())))?;
    Ok((0..amounts.len())
        .map(|row| amounts.is_valid(row) && amounts.value(row) < 0)
        .collect())
}

impl Logic for RefundGuard {
    type Error = LogicError;

    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), LogicError> {
        let refund = refunds(&batch)?;
        let mut keep: Vec<bool> = refund.iter().map(|r| !r).collect();
        let duplicates = self.dedup.mark(NAME, &batch, &mut keep)?;
        let mut batch = batch;
        let rejected: Vec<DeadLetter> = batch
            .offsets
            .iter()
            .zip(&refund)
            .filter(|(_, refund)| **refund)
            .map(|(offset, _)| DeadLetter {
                offset: *offset,
                raw: bytes::Bytes::new(),
                object_key: None,
                kind: DeadLetterKind::Rejected,
                message: "refund: amount is negative".into(),
            })
            .collect();
        let mut columns: Vec<ArrayRef> = batch.records.columns().to_vec();
        if self.redact_notes {
            let index = batch
                .records
                .schema()
                .index_of("note")
                .map_err(|e| failed(e.to_string()))?;
            columns[index] =
                arrow_array::new_null_array(columns[index].data_type(), batch.num_rows());
        }
        let records = RecordBatch::try_new(batch.records.schema(), columns)
            .map_err(|e| failed(e.to_string()))?;
        let mask = arrow_array::BooleanArray::from(keep.clone());
        batch.records = arrow_select::filter::filter_record_batch(&records, &mask)
            .map_err(|e| failed(e.to_string()))?;
        batch.offsets = batch
            .offsets
            .iter()
            .zip(&keep)
            .filter_map(|(offset, keep)| keep.then_some(*offset))
            .collect();
        let stats = LogicStats {
            duplicates_dropped: duplicates,
            rejected: rejected.len() as u64,
        };
        batch.dead_letters.extend(rejected);
        batch.dead_letters.sort_by_key(|d| d.offset);
        Ok((batch, stats))
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), LogicError> {
        let refund = refunds(batch)?;
        self.dedup.warm_up(NAME, batch, |row| !refund[row])
    }

    fn reset(&mut self) {
        self.dedup.reset();
    }
}

fn registry() -> Registry {
    Registry::builtin().with(ENTRY).unwrap()
}

/// The payments config with `logic = "refund_guard"`: no `[dedup] key` (the logic's default
/// applies) and notes redacted.
fn config(scene: &Scene, extra: &str) -> std::path::PathBuf {
    let path = payments::config(scene, &scene.path("schemas"), extra);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("logic = \"identity\"", &format!("logic = \"{NAME}\""))
        .replace("[dedup]\nkey = \"payment_id\"\n", "")
        + &format!("\n[logic.{NAME}]\nredact_notes = true\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// The rows the table must hold: no redelivery, no refund, no note.
fn expected_rows(messages: &[PaymentMessage]) -> Vec<Value> {
    payments::expected_rows(messages)
        .into_iter()
        .filter(|row| !row["amount"].as_str().unwrap().starts_with('-'))
        .map(|mut row| {
            row["note"] = json!(null);
            row
        })
        .collect()
}

fn refund_count(messages: &[PaymentMessage]) -> u64 {
    messages
        .iter()
        .filter(|m| m.payment.amount_cents < 0)
        .count() as u64
}

fn assert_table(scene: &Scene, messages: &[PaymentMessage]) {
    let expected = expected_rows(messages);
    for engine in ["pyiceberg", "duckdb"] {
        let dump = payments::dump(scene, engine, "payments");
        assert_eq!(dump["rows"].as_array().unwrap(), &expected, "{engine}");
    }
    let dlq = scene.read("pyiceberg", "payments_dlq");
    assert_eq!(
        dlq["rows"],
        refund_count(messages),
        "every refund, redeliveries too"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_logic_registered_by_the_embedding_program_replays_like_a_builtin_one() {
    let scene = Scene::local();
    let messages = payments::history(3_000, 3);
    assert!(refund_count(&messages) > 100);
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    payments::write_archive(&scene.path("archive"), "payments", &messages, 250);
    let path = config(&scene, &payments::archive_section(&scene, "payments"));
    // The builtin registry does not know it: the binary refuses the config, naming the key.
    let out = kappa_integration_tests::kappa(&["replay", "-c", &path.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[pipeline] logic"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = kappa_config::load_with(&path, &[], &registry()).unwrap();
    assert_eq!(
        config.logic_settings.dedup_key.as_deref(),
        Some("payment_id")
    );
    let schemas = kappa_pipeline::schema_registry(&config, Some(&path)).unwrap();
    let report = runtime()
        .block_on(kappa_pipeline::replay(
            &config,
            schemas,
            &ReplayRequest::default(),
            |_| {},
        ))
        .unwrap();
    assert_eq!(report.summary.rejected, refund_count(&messages));
    assert!(report.summary.is_complete());
    assert_table(&scene, &messages);
}

/// Waits until `dump_rows.py` sees `rows` rows in `payments` (it fails until the table exists).
fn wait_for_rows(scene: &Scene, rows: usize, timeout: Duration) {
    let started = Instant::now();
    loop {
        let out = scene
            .python_command("dump_rows.py", "pyiceberg", "payments", &[])
            .output()
            .unwrap();
        if out.status.success() {
            let dump: Value = serde_json::from_slice(last_line(&out.stdout)).unwrap();
            if dump["rows"].as_array().unwrap().len() >= rows {
                return;
            }
        }
        assert!(
            started.elapsed() < timeout,
            "fewer than {rows} rows after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_logic_registered_by_the_embedding_program_runs_live_like_a_builtin_one() {
    let brokers = brokers();
    let topic = unique_topic("payments-guard");
    create_topic(&brokers, &topic, 3);
    let messages = payments::history(3_000, 3);
    payments::produce(&kafka::producer(&brokers), &topic, &messages);
    let scene = Scene::local();
    payments::write_schema_dir(&scene.path("schemas"), "payments-value");
    let path = config(
        &scene,
        &kafka::kafka_section_at(&brokers, &topic, &format!("{topic}-group")),
    );
    let config = kappa_config::load_with(&path, &[], &registry()).unwrap();
    let schemas = kappa_pipeline::schema_registry(&config, Some(&path)).unwrap();
    let runtime = runtime();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = runtime.spawn(async move {
        kappa_pipeline::live::run(&config, schemas, &LiveHooks::default(), stopped).await
    });
    wait_for_rows(
        &scene,
        expected_rows(&messages).len(),
        Duration::from_secs(120),
    );
    stop.send(true).unwrap();
    let summary = runtime.block_on(run).unwrap().unwrap();
    assert_eq!(summary.records_in, messages.len() as u64);
    assert_eq!(summary.rejected, refund_count(&messages));
    assert_table(&scene, &messages);
}
