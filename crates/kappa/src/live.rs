//! `kappa run`: config → Kafka source + orders logic + committers, until SIGTERM.

use std::time::Instant;

use kappa_config::PipelineConfig;
use kappa_core::Classify;
use kappa_metrics::{Condition, Health, StallWatch};
use kappa_runtime::{RunSummary, open_pipeline, run_live};
use kappa_source_kafka::{KafkaOptions, KafkaSource};
use tracing::info;

use crate::cli::ConfigArgs;
use crate::endpoint::PipelineEndpoint;
use crate::replay::{build_logic, mapping, pipeline_spec, registry};
use crate::shutdown::Shutdown;
use crate::{Failure, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

/// `kappa run`.
///
/// Runs the pipeline until SIGTERM/SIGINT. When the source meets records of a version of the
/// subject newer than the table's mapping (registered while running), the run commits what came
/// before and returns; the table is then evolved from the subject's new history and the pipeline
/// starts again from the table's position, in the same process.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    let config = args.load()?;
    let kafka = config.kafka().map_err(Failure::config)?;
    // Built once, so that a bad [logic.<name>] option fails before anything connects.
    let mut logic = Some(build_logic(&config)?);
    let registry = registry(&config, Some(&args.config))?;
    // /metrics, /healthz, /readyz on [metrics] listen for the whole process.
    let health = Health::starting();
    let stall = StallWatch::new(
        health.clone(),
        format!("kafka topic {}", kafka.topic),
        config.raw.metrics.stall_after,
    );
    let endpoint = PipelineEndpoint::start(&config, health.clone(), Some(stall.clone())).await?;
    // One signal for every run of the loop below.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = Shutdown::listen();
    tokio::spawn(async move {
        shutdown.received().await;
        let _ = stop_tx.send(true);
    });
    let started = Instant::now();
    let mut total = RunSummary::default();
    loop {
        let mapping = mapping(&config, registry.as_ref()).await?;
        // `start = "latest"` or `"earliest-available"` asks for the partitions the table holds
        // nothing of to start past offset 0: what came before is recorded as skipped, not as
        // ingested. `"earliest"` wants the whole history.
        let first_commit = match kafka.start {
            kappa_config::KafkaStart::Latest | kappa_config::KafkaStart::EarliestAvailable => {
                kappa_iceberg::FirstCommit::SkipMissingHistory
            }
            kappa_config::KafkaStart::Earliest => kappa_iceberg::FirstCommit::AtZero,
        };
        let spec = kappa_runtime::PipelineSpec {
            first_commit,
            ..pipeline_spec(&config, mapping.clone())?
        };
        let mut pipeline = open_pipeline(spec).await.map_err(fail)?;
        // A blocking gate pauses the pipeline; /readyz says so until it goes on.
        pipeline.health = Some(health.clone());
        endpoint.state_loaded(pipeline.main.state().max_event_time);
        let mut options = KafkaOptions::from_config(kafka);
        options.evolve_subject = Some(config.subject.clone());
        options.progress = Some(stall.clone());
        options.health = Some(health.clone());
        let source = KafkaSource::connect(options, mapping, registry.clone())
            .await
            .map_err(fail)?;
        health.set_ready(Condition::Source);
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        // Each run starts with fresh state: it warms up from the table's position.
        let logic = match logic.take() {
            Some(logic) => logic,
            None => build_logic(&config)?,
        };
        let summary = run_live(pipeline, source, logic, stopped)
            .await
            .map_err(|e| {
                let failure = fail(e);
                endpoint.failed(&failure);
                failure
            })?;
        total.absorb(&summary);
        total.positions = summary.positions;
        total.snapshot_id = summary.snapshot_id;
        match summary.schema_change {
            Some(reason) if !*stop_rx.borrow() => {
                total.schema_changes += 1;
                info!(%reason, subject = %config.subject, "evolving the table to the subject's newest version, then continuing from the table's position");
            }
            _ => break,
        }
    }
    total.elapsed = started.elapsed();
    endpoint.stop().await;
    if args.json {
        output::line(&summary_json(&total).to_string());
    } else {
        print_summary(&config, &total);
    }
    Ok(())
}

/// The run summary as JSON (`--json` of `run`, and the base of `replay`'s and `demo`'s).
pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    serde_json::json!({
        "records_in": s.records_in,
        "rows_written": s.rows_written,
        "duplicates": s.duplicates,
        "undecodable": s.undecodable,
        "unmappable_schema": s.unmappable,
        "rejected": s.rejected,
        "dead_lettered": s.dead_lettered(),
        "late": s.late,
        "late_rows_written": s.late_rows_written,
        "late_commits": s.late_commits,
        "quarantined_rows": s.quarantined_rows,
        "quarantine_commits": s.quarantine_commits,
        "dlq_rows_written": s.dlq_rows_written,
        "warm_up_records": s.warm_up_records,
        "commits": s.commits,
        "dlq_commits": s.dlq_commits,
        "already_committed": s.already_committed,
        "conflict_retries": s.conflict_retries,
        "rewinds": s.rewinds,
        "pauses": s.pauses,
        "schema_changes": s.schema_changes,
        "data_files": s.data_files,
        "bytes_written": s.bytes_written,
        "snapshot_id": s.snapshot_id,
        "complete": s.is_complete(),
        "positions": s.positions.iter().map(|(tp, next)| (tp.to_string(), *next)).collect::<std::collections::BTreeMap<_, _>>(),
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "events_per_second": s.events_per_second(),
    })
}

/// `N late (appended)`, or `N late (M to the late table)` when late rows are routed there.
pub fn late_line(s: &RunSummary) -> String {
    if s.late_commits > 0 || s.late_rows_written > 0 {
        format!(
            "{} late ({} to the late table)",
            output::count(s.late),
            output::count(s.late_rows_written)
        )
    } else {
        format!("{} late (appended)", output::count(s.late))
    }
}

fn print_summary(config: &PipelineConfig, s: &RunSummary) {
    let c = output::count;
    output::line(&format!(
        "Stopped after {:.1} s: {} records read into {}.{}",
        s.elapsed.as_secs_f64(),
        c(s.records_in),
        config.raw.table.namespace,
        config.table
    ));
    output::line(&format!(
        "  written {} rows, {} duplicates dropped, {} dead-lettered ({} undecodable, {} unmappable schema, {} rejected), {}",
        c(s.rows_written),
        c(s.duplicates),
        c(s.dead_lettered()),
        c(s.undecodable),
        c(s.unmappable),
        c(s.rejected),
        late_line(s)
    ));
    output::line(&format!(
        "  completeness {}; {} commits ({} to the dead-letter table), {} re-reads after rebalances or concurrent writers",
        if s.is_complete() {
            "holds"
        } else {
            "DOES NOT HOLD"
        },
        s.commits,
        s.dlq_commits,
        s.rewinds
    ));
    let positions: Vec<String> = s
        .positions
        .iter()
        .map(|(tp, next)| format!("{tp}@{next}"))
        .collect();
    output::line(&format!("  committed up to {}", positions.join(" ")));
    if s.quarantined_rows > 0 {
        output::line(&format!(
            "  {} rows quarantined by quality checks ({} commits to the quarantine table)",
            c(s.quarantined_rows),
            s.quarantine_commits
        ));
    }
    if s.schema_changes > 0 {
        output::line(&format!(
            "  the table evolved {} time(s) to newer schema versions met while running",
            s.schema_changes
        ));
    }
}
