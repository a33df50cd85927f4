//! Consuming the configured Kafka topic until stopped, evolving the table when the subject does.

use std::sync::Arc;
use std::time::Instant;

use kappa_config::{KafkaStart, PipelineConfig};
use kappa_iceberg::FirstCommit;
use kappa_metrics::{Condition, Health, StallWatch};
use kappa_runtime::{PipelineSpec, RunSummary, open_pipeline, run_live};
use kappa_schema::SchemaRegistry;
use kappa_source_kafka::{KafkaOptions, KafkaSource};
use tokio::sync::watch;
use tracing::info;

use crate::assemble::{build_logic, pipeline_spec, table_mapping};
use crate::error::PipelineError;

/// What a live pipeline reports to the process around it.
pub struct LiveHooks {
    /// Readiness (`/readyz`): the source's and the table state's conditions, and a pause by a
    /// blocking gate.
    pub health: Health,
    /// Notices a source that stops making progress.
    pub stall: Option<StallWatch>,
    /// Called with the main table's newest event time (µs) each time its state is loaded.
    pub state_loaded: Box<dyn Fn(Option<i64>) + Send + Sync>,
}

impl std::fmt::Debug for LiveHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHooks").finish_non_exhaustive()
    }
}

impl Default for LiveHooks {
    fn default() -> Self {
        Self {
            health: Health::starting(),
            stall: None,
            state_loaded: Box::new(|_| {}),
        }
    }
}

/// Runs the configured live pipeline until `stop` turns true.
///
/// When the source meets records of a version of the subject newer than the table's mapping
/// (registered while running), the run commits what came before and returns; the table is then
/// evolved from the subject's new history and the pipeline starts again from the table's
/// position, in the same call. The summary adds up every such run.
pub async fn run(
    config: &PipelineConfig,
    registry: Arc<dyn SchemaRegistry>,
    hooks: &LiveHooks,
    stop: watch::Receiver<bool>,
) -> Result<RunSummary, PipelineError> {
    let kafka = config.kafka()?;
    // Built before anything connects: a bad [logic.<name>] option fails at once.
    let mut logic = Some(build_logic(config)?);
    // `start = "latest"` or `"earliest-available"` asks for the partitions the table holds
    // nothing of to start past offset 0: what came before is recorded as skipped, not as
    // ingested. `"earliest"` wants the whole history.
    let first_commit = match kafka.start {
        KafkaStart::Latest | KafkaStart::EarliestAvailable => FirstCommit::SkipMissingHistory,
        KafkaStart::Earliest => FirstCommit::AtZero,
    };
    let started = Instant::now();
    let mut total = RunSummary::default();
    loop {
        let mapping = table_mapping(config, registry.as_ref()).await?;
        let spec = PipelineSpec {
            first_commit,
            ..pipeline_spec(config, mapping.clone())?
        };
        let mut pipeline = open_pipeline(spec)
            .await
            .map_err(PipelineError::from_error)?;
        // A blocking gate pauses the pipeline; /readyz says so until it goes on.
        pipeline.health = Some(hooks.health.clone());
        (hooks.state_loaded)(pipeline.main.state().max_event_time);
        let mut options = KafkaOptions::from_config(kafka);
        options.evolve_subject = Some(config.subject.clone());
        options.progress = hooks.stall.clone();
        options.health = Some(hooks.health.clone());
        let source = KafkaSource::connect(options, mapping, registry.clone())
            .await
            .map_err(PipelineError::from_error)?;
        hooks.health.set_ready(Condition::Source);
        let mut stopped = stop.clone();
        let stopped = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        // Each run starts with fresh state: it warms up from the table's position.
        let logic = match logic.take() {
            Some(logic) => logic,
            None => build_logic(config)?,
        };
        let summary = run_live(pipeline, source, logic, stopped)
            .await
            .map_err(PipelineError::from_error)?;
        total.absorb(&summary);
        total.positions = summary.positions;
        total.snapshot_id = summary.snapshot_id;
        match summary.schema_change {
            Some(reason) if !*stop.borrow() => {
                total.schema_changes += 1;
                info!(%reason, subject = %config.subject, "evolving the table to the subject's newest version, then continuing from the table's position");
            }
            _ => break,
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
