//! `kappa-config`: the pipeline configuration contract.
//!
//! One TOML file per pipeline, layered with the `config` crate, later wins:
//!
//! ```text
//! defaults.toml (embedded) ─► pipeline.toml ─► env KAPPA__SECTION__KEY ─► overrides (--set k=v)
//!        └──────────────── merged ─► key check ─► RawConfig ─► validate() ─► PipelineConfig
//! ```
//!
//! Env keys use double underscores (`KAPPA__SOURCE__ARCHIVE__URL`). Unknown keys are errors that
//! name the key, its section, where it was set and what is expected; values are validated by a
//! pure function ([`validate`]) into a typed [`PipelineConfig`], whose errors name `[section] key`
//! ([`ConfigError::key`]). Secrets ([`Secret`], Kafka properties) are redacted in `Debug`. Nothing
//! here does I/O beyond reading the file; there is no global config: pass it down.
//! The reference of every key is `docs/configuration.md`.

mod effective;
mod error;
mod keys;
mod layer;
mod partition;
mod quality;
mod raw;
mod typed;
mod validate;

pub use effective::{Origin, Setting, SettingValue, bare_or_quoted, effective, effective_str};
pub use error::ConfigError;
pub use kappa_logic::Registry;
pub use layer::DEFAULTS;
pub use partition::{PartitionSpec, PartitionTransform, parse_partition};
pub use raw::{
    ArchiveSection, CatalogSection, CommitSection, CompletenessSection, DedupSection, DlqSection,
    EventTimeSection, GatesSection, KafkaProperties, KafkaSection, LogicValue, MetricsSection,
    NullRateSection, PartitionSection, PipelineSection, QualitySection, RawConfig, ReplaySection,
    RuleSection, S3Section, SchemaSection, Secret, SourceSection, TableSection, TimelinessSection,
    UniquenessSection,
};
pub use typed::{
    ArchiveConfig, ArchiveFormat, ArchiveLimitsConfig, CatalogKind, KafkaAssignment, KafkaConfig,
    KafkaStart, LatePolicy, RegistryConfig, SchemaSource,
};
pub use validate::{PipelineConfig, validate, validate_with};

use std::path::Path;

/// Loads `path` with the process environment and `overrides` (`("commit.interval", "5s")`).
/// Environment variables that are not valid Unicode are ignored.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<PipelineConfig, ConfigError> {
    load_with(path, overrides, &Registry::builtin())
}

/// [`load`] with the logics of `registry`: `[pipeline] logic` may name any of them.
pub fn load_with(
    path: &Path,
    overrides: &[(String, String)],
    registry: &Registry,
) -> Result<PipelineConfig, ConfigError> {
    let text = read(path)?;
    load_str_with(
        &text,
        &path.display().to_string(),
        process_env(),
        overrides,
        registry,
    )
}

/// The process environment, without the variables that are not valid Unicode.
pub(crate) fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Loads `path` with an explicit environment (tests pass their own) and `overrides`.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<PipelineConfig, ConfigError> {
    let text = read(path)?;
    load_str(&text, &path.display().to_string(), env, overrides)
}

/// Loads a configuration given as TOML text; `origin` names it in errors.
pub fn load_str(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<PipelineConfig, ConfigError> {
    load_str_with(text, origin, env, overrides, &Registry::builtin())
}

/// [`load_str`] with the logics of `registry`.
pub fn load_str_with(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
    registry: &Registry,
) -> Result<PipelineConfig, ConfigError> {
    let raw = layer::layer(text, origin, env, overrides)?;
    validate_with(raw, registry)
}
