//! The effective configuration, key by key, with where each value came from (`kappa config
//! print`): the same layers as [`crate::load`] (embedded defaults, the file, the environment,
//! `--set`), the later winning, each value shown with the layer that set it. Secrets are
//! redacted: a key whose name marks it as one (`password`, `secret_access_key`, `credential`,
//! `token`, `sasl.password`, ...) shows `***`, and a credential inside a value (a URI's password)
//! is replaced as everywhere Kappa prints ([`kappa_core::redact`]).

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, File, FileFormat, Value, ValueKind};

use crate::error::ConfigError;
use crate::layer::DEFAULTS;

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded defaults.
    Default,
    /// The configuration file (its path as given).
    File(String),
    /// An environment variable (its name).
    Env(String),
    /// A `--set key=value`.
    Set,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "file {path}"),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Set => f.write_str("--set"),
        }
    }
}

/// A value as the layers hold it (environment values and `--set` stay strings, as they are
/// parsed only when the key is read).
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    /// true or false.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A number with a fraction.
    Float(f64),
    /// Text (`***` for a secret).
    Str(String),
    /// A list.
    List(Vec<SettingValue>),
}

impl SettingValue {
    /// The value as a TOML literal.
    pub fn to_toml(&self) -> String {
        match self {
            SettingValue::Bool(b) => b.to_string(),
            SettingValue::Int(i) => i.to_string(),
            SettingValue::Float(x) => format!("{x:?}"),
            SettingValue::Str(s) => quote(s),
            SettingValue::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(SettingValue::to_toml)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// One key of the effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The key's path: `["catalog", "uri"]`; a free-form table's keys may hold dots
    /// (`["catalog", "properties", "header.X-Iceberg-Access-Delegation"]`).
    pub path: Vec<String>,
    /// Its value, secrets redacted.
    pub value: SettingValue,
    /// The layer that set it.
    pub origin: Origin,
}

impl Setting {
    /// The dotted key, segments with dots or other characters quoted as TOML quotes them.
    pub fn key(&self) -> String {
        self.path
            .iter()
            .map(|s| bare_or_quoted(s))
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A TOML key segment: bare when it may be, else quoted.
pub fn bare_or_quoted(segment: &str) -> String {
    if !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        segment.to_string()
    } else {
        quote(segment)
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The effective configuration of `path` with the process environment and `overrides`, every
/// key sorted, after the configuration loaded (an invalid one is the error [`crate::load`]
/// gives).
pub fn effective(path: &Path, overrides: &[(String, String)]) -> Result<Vec<Setting>, ConfigError> {
    crate::load(path, overrides)?;
    let text = crate::read(path)?;
    effective_str(
        &text,
        &path.display().to_string(),
        crate::process_env().collect(),
        overrides,
    )
}

/// [`effective`] of a configuration given as text, with an explicit environment (tests).
pub fn effective_str(
    text: &str,
    origin: &str,
    env: Vec<(String, String)>,
    overrides: &[(String, String)],
) -> Result<Vec<Setting>, ConfigError> {
    let failed = |e: config::ConfigError| ConfigError::from_layers(e, origin);
    let environment = crate::layer::environment(env);
    let mut set = Config::builder();
    let mut merged = Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(environment.clone());
    for (key, value) in overrides {
        let value = Value::new(None, ValueKind::String(value.clone()));
        set = set
            .set_override(key.as_str(), value.clone())
            .map_err(failed)?;
        merged = merged.set_override(key.as_str(), value).map_err(failed)?;
    }
    let keys = |config: Config| {
        let mut out = Vec::new();
        leaves(&config.cache, &mut Vec::new(), &mut out);
        out.into_iter()
            .map(|(path, _)| path)
            .collect::<BTreeSet<_>>()
    };
    let only = |source: File<config::FileSourceString, FileFormat>| {
        Config::builder().add_source(source).build().map_err(failed)
    };
    let defaults = keys(only(File::from_str(DEFAULTS, FileFormat::Toml))?);
    let file = keys(only(File::from_str(text, FileFormat::Toml))?);
    let from_env = keys(
        Config::builder()
            .add_source(environment)
            .build()
            .map_err(failed)?,
    );
    let from_set = keys(set.build().map_err(failed)?);
    let merged = merged.build().map_err(failed)?;
    let mut out = Vec::new();
    leaves(&merged.cache, &mut Vec::new(), &mut out);
    let settings = out
        .into_iter()
        .map(|(path, value)| {
            let origin = if from_set.contains(&path) {
                Origin::Set
            } else if from_env.contains(&path) {
                Origin::Env(format!(
                    "KAPPA__{}",
                    path.iter()
                        .map(|s| s.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join("__")
                ))
            } else if file.contains(&path) {
                Origin::File(origin.to_string())
            } else if defaults.contains(&path) {
                Origin::Default
            } else {
                Origin::File(origin.to_string())
            };
            let secret = path.iter().any(|s| kappa_core::redact::is_secret_name(s));
            Setting {
                value: if secret {
                    SettingValue::Str("***".into())
                } else {
                    setting_value(value)
                },
                path,
                origin,
            }
        })
        .collect();
    Ok(settings)
}

/// The non-table values under `value` with their paths: a table's own values in key order, then
/// its sub-tables in key order (as TOML writes a table before the tables inside it).
fn leaves<'v>(value: &'v Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'v Value)>) {
    match &value.kind {
        ValueKind::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort_by_key(|key| {
                let nested = table
                    .get(*key)
                    .is_some_and(|v| matches!(v.kind, ValueKind::Table(_)));
                (nested, *key)
            });
            for key in keys {
                if let Some(child) = table.get(key) {
                    path.push(key.clone());
                    leaves(child, path, out);
                    path.pop();
                }
            }
        }
        _ => out.push((path.clone(), value)),
    }
}

fn setting_value(value: &Value) -> SettingValue {
    match &value.kind {
        ValueKind::Nil => SettingValue::Str(String::new()),
        ValueKind::Boolean(b) => SettingValue::Bool(*b),
        ValueKind::I64(i) => SettingValue::Int(i128::from(*i)),
        ValueKind::I128(i) => SettingValue::Int(*i),
        ValueKind::U64(u) => SettingValue::Int(i128::from(*u)),
        ValueKind::U128(u) => SettingValue::Str(u.to_string()),
        ValueKind::Float(x) => SettingValue::Float(*x),
        ValueKind::String(s) => SettingValue::Str(kappa_core::redact::redact(s)),
        ValueKind::Array(items) => SettingValue::List(items.iter().map(setting_value).collect()),
        ValueKind::Table(_) => SettingValue::Str(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[pipeline]
name = "orders"

[source.archive]
url = "file:///tmp/archive"
topic = "orders"
secret_access_key = "filesecret"

[schema]
dir = "contracts"

[catalog]
uri = "postgres://kappa:dbpassword@db:5432/lake"
warehouse = "file:///tmp/w"

[catalog.properties]
"header.X-Iceberg-Access-Delegation" = "vended-credentials"

[table]
name = "orders"
"#;

    fn by_key(settings: &[Setting]) -> std::collections::BTreeMap<String, (String, Origin)> {
        settings
            .iter()
            .map(|s| (s.key(), (s.value.to_toml(), s.origin.clone())))
            .collect()
    }

    #[test]
    fn each_value_shows_the_layer_that_set_it_and_secrets_are_redacted() {
        let env = vec![
            ("KAPPA__COMMIT__INTERVAL".to_string(), "5s".to_string()),
            ("KAPPA__TABLE__WRITERS".to_string(), "3".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let overrides = vec![("table.writers".to_string(), "4".to_string())];
        let settings = effective_str(FILE, "p.toml", env, &overrides).unwrap();
        let keys = by_key(&settings);
        let file = Origin::File("p.toml".into());
        assert_eq!(keys["pipeline.name"], ("\"orders\"".into(), file.clone()));
        assert_eq!(
            keys["pipeline.logic"],
            ("\"orders\"".into(), Origin::Default)
        );
        assert_eq!(keys["dedup.window"], ("100000".into(), Origin::Default));
        assert_eq!(
            keys["commit.interval"],
            (
                "\"5s\"".into(),
                Origin::Env("KAPPA__COMMIT__INTERVAL".into())
            )
        );
        assert_eq!(
            keys["table.writers"],
            ("\"4\"".into(), Origin::Set),
            "--set wins over env"
        );
        assert_eq!(
            keys["table.partition_by"],
            ("[\"day(event_time)\"]".into(), Origin::Default)
        );
        assert_eq!(
            keys["catalog.properties.\"header.X-Iceberg-Access-Delegation\""],
            ("\"vended-credentials\"".into(), file.clone())
        );
        assert_eq!(
            keys["source.archive.secret_access_key"],
            ("\"***\"".into(), file.clone())
        );
        let uri = &keys["catalog.uri"].0;
        assert!(
            !uri.contains("dbpassword") && uri.contains("db:5432"),
            "{uri}"
        );
        let all = format!("{settings:?}");
        assert!(
            !all.contains("filesecret") && !all.contains("dbpassword"),
            "{all}"
        );
    }
}
