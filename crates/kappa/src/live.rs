//! `kappa run`: the configured live pipeline (`kappa_pipeline::live`) until SIGTERM, with its
//! metrics endpoint; then the run summary.

use kappa_config::PipelineConfig;
use kappa_metrics::{Health, StallWatch};
use kappa_pipeline::live::LiveHooks;
use kappa_runtime::RunSummary;

use crate::cli::ConfigArgs;
use crate::endpoint::PipelineEndpoint;
use crate::shutdown::Shutdown;
use crate::{Failure, output};

/// `kappa run`.
///
/// Runs the pipeline until SIGTERM/SIGINT. When the source meets records of a version of the
/// subject newer than the table's mapping (registered while running), the run commits what came
/// before and returns; the table is then evolved from the subject's new history and the pipeline
/// starts again from the table's position, in the same process.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    let config = args.load()?;
    let kafka = config.kafka().map_err(Failure::config)?;
    // Checked before the endpoint takes its port: a bad [logic.<name>] option fails at once.
    kappa_pipeline::build_logic(&config)?;
    let registry = kappa_pipeline::schema_registry(&config, Some(&args.config))?;
    // /metrics, /healthz, /readyz on [metrics] listen for the whole process.
    let health = Health::starting();
    let stall = StallWatch::new(
        health.clone(),
        format!("kafka topic {}", kafka.topic),
        config.raw.metrics.stall_after,
    );
    let endpoint = PipelineEndpoint::start(&config, health.clone(), Some(stall.clone())).await?;
    // One signal for every run of the pipeline's schema-evolution loop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = Shutdown::listen();
    tokio::spawn(async move {
        shutdown.received().await;
        let _ = stop_tx.send(true);
    });
    let hooks = LiveHooks {
        health,
        stall: Some(stall),
        state_loaded: endpoint.state_hook(),
    };
    let total = kappa_pipeline::live::run(&config, registry, &hooks, stop_rx)
        .await
        .map_err(|e| {
            let failure = Failure::from(e);
            endpoint.failed(&failure);
            failure
        })?;
    endpoint.stop().await;
    if args.json() {
        output::line(&summary_json(&total).to_string());
    } else {
        print_summary(&config, &total);
    }
    Ok(())
}

/// The run summary as JSON (`--json` of `run`, and the base of `replay`'s and `demo`'s).
pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    serde_json::to_value(s.report()).unwrap_or_default()
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
