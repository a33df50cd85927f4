//! Layering with the `config` crate, later wins: embedded defaults → the file → environment
//! `KAPPA__SECTION__KEY` → explicit overrides (`--set section.key=value`).
//!
//! Env keys use a double underscore between path segments, so keys with single underscores stay
//! reachable (config-rs#391): `KAPPA__SOURCE__ARCHIVE__SECRET_ACCESS_KEY` →
//! `source.archive.secret_access_key`. Env values stay strings (no guessing: `007` stays `007`);
//! numbers and booleans parse when the key wants one, and lists are comma-separated. Empty env
//! vars count as unset.

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

use crate::error::ConfigError;
use crate::raw::RawConfig;

/// Defaults every file is layered on.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Merges the layers, checks every key against the known ones, and deserializes.
pub(crate) fn layer(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<RawConfig, ConfigError> {
    // Each layer alone first, so a syntax error names the layer it is in.
    Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::from_layers(e, origin))?;
    let environment = environment(env);
    let flag = "--set".to_string();
    let build = |defaults: bool| -> Result<Config, ConfigError> {
        let mut builder = Config::builder();
        if defaults {
            builder = builder.add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        }
        builder = builder
            .add_source(File::from_str(text, FileFormat::Toml))
            .add_source(environment.clone());
        for (key, value) in overrides {
            let value = Value::new(Some(&flag), ValueKind::String(value.clone()));
            builder =
                builder
                    .set_override(key.as_str(), value)
                    .map_err(|e| ConfigError::Syntax {
                        origin: format!("--set {key}"),
                        message: e.to_string(),
                    })?;
        }
        builder
            .build()
            .map_err(|e| ConfigError::from_layers(e, origin))
    };
    let merged = build(true)?;
    crate::keys::check(&merged.cache, origin)?;
    let mut raw: RawConfig = merged
        .try_deserialize()
        .map_err(|e| ConfigError::from_layers(e, origin))?;
    leaves(&build(false)?.cache, String::new(), &mut raw.explicit);
    Ok(raw)
}

/// The `KAPPA__SECTION__KEY` variables of `env` as a configuration source.
pub(crate) fn environment(env: impl IntoIterator<Item = (String, String)>) -> Environment {
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.to_ascii_uppercase().starts_with("KAPPA__"))
        .collect();
    Environment::with_prefix("KAPPA")
        .prefix_separator("__")
        .separator("__")
        .ignore_empty(true)
        .source(Some(env))
}

/// The dotted paths of the leaves under `value` (a free-form table such as
/// `[source.kafka.properties]` counts as its own keys too).
fn leaves(value: &Value, path: String, out: &mut std::collections::BTreeSet<String>) {
    match &value.kind {
        ValueKind::Table(table) => {
            for (key, child) in table {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(child, child_path, out);
            }
            if !path.is_empty() {
                out.insert(path);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}
