//! Replaying the configured archive into the pipeline's tables.

use std::sync::Arc;

use kappa_config::PipelineConfig;
use kappa_iceberg::FirstCommit;
use kappa_runtime::{PipelineSpec, RunSummary, open_pipeline, run_pipeline};
use kappa_schema::SchemaRegistry;
use kappa_source_replay::{ArchivePlan, ArchiveSource, PartitionFilter, TimeWindow, open_store};

use crate::assemble::{build_logic, pipeline_spec, replay_options, s3_options, table_mapping};
use crate::error::PipelineError;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The partitions.
    pub filter: PartitionFilter,
    /// The event-time window of the archive's files.
    pub window: TimeWindow,
    /// Where a partition's first commit may start (`SkipMissingHistory` with
    /// `--accept-missing-history`).
    pub first_commit: FirstCommit,
}

impl Default for ReplayRequest {
    /// Every partition, all of the archive, from offset 0.
    fn default() -> Self {
        Self {
            filter: PartitionFilter::All,
            window: TimeWindow::default(),
            first_commit: FirstCommit::AtZero,
        }
    }
}

/// What a replay did, plus the plan it ran.
#[derive(Debug)]
pub struct ReplayReport {
    /// Run counters.
    pub summary: RunSummary,
    /// Files planned.
    pub files: usize,
    /// Bytes planned.
    pub bytes: u64,
    /// Partitions replayed.
    pub partitions: usize,
    /// The main table after the run.
    pub table: kappa_iceberg::TableStats,
}

/// Replays the configured archive through the configured logic into the pipeline's tables.
/// `state_loaded` is called with the main table's newest event time (µs) once its state is read
/// (a metrics endpoint turns ready then).
pub async fn replay(
    config: &PipelineConfig,
    registry: Arc<dyn SchemaRegistry>,
    request: &ReplayRequest,
    state_loaded: impl FnOnce(Option<i64>),
) -> Result<ReplayReport, PipelineError> {
    let logic = build_logic(config)?;
    let mapping = table_mapping(config, registry.as_ref()).await?;
    let (url, topic, s3) = config.archive()?;
    let (store, prefix) = open_store(&url, &s3_options(s3)).map_err(PipelineError::from_error)?;
    let spec = PipelineSpec {
        first_commit: request.first_commit,
        ..pipeline_spec(config, mapping.clone())?
    };
    // The archive is listed while the tables are opened (or created): from S3 a listing is a
    // few round trips, the catalog's work as many again. The first of the two to fail ends
    // both (a catalog that is retried does not hold up a listing's error, nor the reverse).
    let listing = async {
        ArchivePlan::list(
            store.as_ref(),
            &url,
            &prefix,
            &topic,
            &request.filter,
            &request.window,
        )
        .await
        .map_err(PipelineError::from_error)
    };
    let opening = async { open_pipeline(spec).await.map_err(PipelineError::from_error) };
    let (plan, pipeline) = tokio::try_join!(listing, opening)?;
    let (files, bytes, partitions) = (plan.files(), plan.bytes(), plan.partitions.len());
    let options = replay_options(config, topic);
    let source = ArchiveSource::new(store, plan, options, mapping, registry);
    state_loaded(pipeline.main.state().max_event_time);
    let catalog = pipeline.catalog.clone();
    let ident = pipeline.main.table().identifier().clone();
    let summary = run_pipeline(pipeline, source, logic)
        .await
        .map_err(PipelineError::from_error)?;
    let table = catalog
        .load_table(&ident)
        .await
        .map_err(|e| PipelineError::failure(format!("reloading {ident} after the run: {e}")))?;
    let table = kappa_iceberg::table_stats(&table)
        .await
        .map_err(|e| PipelineError::failure(format!("reading {ident}'s files: {e}")))?;
    Ok(ReplayReport {
        summary,
        files,
        bytes,
        partitions,
        table,
    })
}
