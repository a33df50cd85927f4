//! `kappa run`: config → Kafka source + orders logic + committers, until SIGTERM.

use kappa_config::PipelineConfig;
use kappa_core::Classify;
use kappa_logic::{LogicKind, OrdersLogic};
use kappa_runtime::{RunSummary, open_pipeline, run_live};
use kappa_source_kafka::{KafkaOptions, KafkaSource};
use tracing::info;

use crate::cli::ConfigArgs;
use crate::replay::{mapping, pipeline_spec, registry};
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM"),
                    _ = tokio::signal::ctrl_c() => info!("SIGINT"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `kappa run`.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    let config = args.load()?;
    let kafka = config.kafka().map_err(Failure::config)?;
    let logic = config
        .raw
        .pipeline
        .logic
        .parse::<LogicKind>()
        .map_err(|e| Failure {
            message: e.to_string(),
            code: exit::USAGE,
        })?;
    let registry = registry(&config, Some(&args.config))?;
    let mapping = mapping(&config, registry.as_ref()).await?;
    let pipeline = open_pipeline(pipeline_spec(&config, mapping.clone())?)
        .await
        .map_err(fail)?;
    let source = KafkaSource::connect(KafkaOptions::from_config(kafka), mapping, registry)
        .await
        .map_err(fail)?;
    let summary = match logic {
        LogicKind::Orders => {
            run_live(
                pipeline,
                source,
                OrdersLogic::new(config.raw.dedup.window),
                shutdown_signal(),
            )
            .await
        }
    }
    .map_err(fail)?;
    if args.json {
        output::line(&summary_json(&summary).to_string());
    } else {
        print_summary(&config, &summary);
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
        "dlq_rows_written": s.dlq_rows_written,
        "warm_up_records": s.warm_up_records,
        "commits": s.commits,
        "dlq_commits": s.dlq_commits,
        "already_committed": s.already_committed,
        "conflict_retries": s.conflict_retries,
        "rewinds": s.rewinds,
        "data_files": s.data_files,
        "bytes_written": s.bytes_written,
        "snapshot_id": s.snapshot_id,
        "complete": s.is_complete(),
        "positions": s.positions.iter().map(|(tp, next)| (tp.to_string(), *next)).collect::<std::collections::BTreeMap<_, _>>(),
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "events_per_second": s.events_per_second(),
    })
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
        "  written {} rows, {} duplicates dropped, {} dead-lettered ({} undecodable, {} unmappable schema, {} rejected), {} late (appended)",
        c(s.rows_written),
        c(s.duplicates),
        c(s.dead_lettered()),
        c(s.undecodable),
        c(s.unmappable),
        c(s.rejected),
        c(s.late)
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
}
