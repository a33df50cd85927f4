//! `kappa-config`: the pipeline configuration contract.
//!
//! One TOML file per pipeline, layered with the `config` crate: embedded defaults → the file →
//! environment `KAPPA__SECTION__KEY` (double underscore; `KAPPA__SOURCE__ARCHIVE__URL`) → explicit
//! overrides (CLI flags). Unknown keys are errors that name the key. Raw values are validated by a
//! pure function into [`PipelineConfig`]; nothing here does I/O beyond reading the file.

mod error;
mod raw;
mod validate;

pub use error::ConfigError;
pub use raw::{
    ArchiveSection, CatalogSection, CommitSection, DedupSection, EventTimeSection, KafkaSection,
    MetricsSection, PipelineSection, RawConfig, ReplaySection, S3Section, SchemaSection, Secret,
    SourceSection, TableSection,
};
pub use validate::{PartitionSpec, PartitionTransform, PipelineConfig, SchemaSource};

use std::path::Path;

/// Defaults every file is layered on.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Loads `path` with the process environment and `overrides` (`("commit.interval", "5s")`).
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<PipelineConfig, ConfigError> {
    load_with_env(path, std::env::vars(), overrides)
}

/// Loads `path` with an explicit environment (for tests) and `overrides`.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<PipelineConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    load_str(&text, &path.display().to_string(), env, overrides)
}

/// Loads a configuration given as TOML text; `origin` names it in errors.
pub fn load_str(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<PipelineConfig, ConfigError> {
    let raw = raw::layer(text, origin, env, overrides)?;
    validate::validate(raw)
}
