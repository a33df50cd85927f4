//! Opening the tables of a configured pipeline that already exists.

use std::path::Path;

use kappa_config::PipelineConfig;
use kappa_runtime::Pipeline;

use crate::assemble::{pipeline_spec, schema_registry, table_mapping};
use crate::error::PipelineError;

/// What a command that opens existing tables may do to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (`kappa status`, `kappa quality report`): a read-only catalog connection.
    Read,
    /// Set a property of the existing main table (`kappa quality override`).
    SetProperty,
}

/// Opens the pipeline of a command that works on existing tables: the schema history, the
/// mapping and the tables as they are. Never creates a catalog, namespace or table and never
/// evolves a schema: a misspelt `[table]` name is a user error naming the table.
/// `config_path` locates a relative `[schema] dir`.
pub async fn open(
    config: &PipelineConfig,
    config_path: Option<&Path>,
    access: Access,
) -> Result<Pipeline, PipelineError> {
    let registry = schema_registry(config, config_path)?;
    let mapping = table_mapping(config, registry.as_ref()).await?;
    let spec = pipeline_spec(config, mapping)?;
    match access {
        Access::Read => kappa_runtime::open_pipeline_read_only(spec).await,
        Access::SetProperty => kappa_runtime::open_existing_pipeline(spec).await,
    }
    .map_err(PipelineError::from_error)
}
