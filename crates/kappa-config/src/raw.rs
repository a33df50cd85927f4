//! The configuration as written: serde structs with `deny_unknown_fields`, and the layering.

use std::collections::BTreeMap;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::error::ConfigError;

/// A secret: its `Debug` never shows the value.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[pipeline]`
    pub pipeline: PipelineSection,
    /// `[source.*]`
    #[serde(default)]
    pub source: SourceSection,
    /// `[schema]`
    #[serde(default)]
    pub schema: SchemaSection,
    /// `[catalog]`
    pub catalog: CatalogSection,
    /// `[table]`
    pub table: TableSection,
    /// `[commit]`
    pub commit: CommitSection,
    /// `[dedup]`
    pub dedup: DedupSection,
    /// `[event_time]`
    pub event_time: EventTimeSection,
    /// `[replay]`
    pub replay: ReplaySection,
    /// `[metrics]`
    pub metrics: MetricsSection,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Identifies this pipeline's commits (`kappa.pipeline`).
    pub name: Option<String>,
    /// Business logic name.
    pub logic: String,
}

/// `[source]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `[source.archive]`
    pub archive: Option<ArchiveSection>,
    /// `[source.kafka]`
    pub kafka: Option<KafkaSection>,
}

/// S3 settings shared by the archive and the warehouse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Endpoint URL.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Allow plain HTTP.
    #[serde(default)]
    pub allow_http: bool,
}

/// `[source.archive]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    /// `file:///dir` or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// Topic (directory and file prefix in the archive).
    pub topic: Option<String>,
    /// S3 settings (else `AWS_*` env).
    #[serde(flatten)]
    pub s3: S3Section,
}

/// `[source.kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Brokers.
    pub bootstrap_servers: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Consumer group.
    pub group_id: Option<String>,
    /// Extra librdkafka settings (secrets redacted in logs).
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
}

/// `[schema]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// Embedded file registry directory.
    pub dir: Option<String>,
    /// Confluent-compatible registry URL.
    pub url: Option<String>,
    /// Subject (default `<topic>-value`).
    pub subject: Option<String>,
}

/// `[catalog]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// `sql` or `rest`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Catalog name.
    pub name: String,
    /// Catalog URI.
    pub uri: Option<Secret>,
    /// Warehouse location.
    pub warehouse: Option<String>,
    /// S3 settings for an `s3://` warehouse.
    #[serde(flatten)]
    pub s3: S3Section,
}

/// `[table]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Namespace.
    pub namespace: String,
    /// Table name.
    pub name: Option<String>,
    /// Partition transforms, e.g. `day(event_time)`.
    pub partition_by: Vec<String>,
    /// Target data file size in bytes.
    pub target_file_size: u64,
    /// Dead-letter table name (default `<name>_dlq`).
    pub dlq_name: Option<String>,
}

/// `[commit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitSection {
    /// Commit at least this often while data flows.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Commit once this many rows are buffered.
    pub rows: u64,
    /// Commit once this many bytes are buffered.
    pub bytes: u64,
    /// Attempts per commit.
    pub max_attempts: u32,
}

/// `[dedup]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSection {
    /// Offsets per partition within which a repeated event id is a duplicate.
    pub window: i64,
}

/// `[event_time]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSection {
    /// Event-time column.
    pub column: String,
    /// Allowed lateness.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
}

/// `[replay]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    /// Partitions read at once.
    pub parallelism: usize,
    /// Rows per batch.
    pub batch_rows: usize,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
}

/// Keys whose env values are lists.
const LIST_KEYS: &[&str] = &["table.partition_by"];

pub(crate) fn layer(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<RawConfig, ConfigError> {
    let parse = |origin: &str, e: config::ConfigError| ConfigError::Parse {
        origin: origin.to_string(),
        message: describe(e),
    };
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("KAPPA__"))
        .collect();
    let mut environment = Environment::with_prefix("KAPPA")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(Some(env));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let mut builder = Config::builder()
        .add_source(File::from_str(crate::DEFAULTS, FileFormat::Toml))
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(environment);
    for (key, value) in overrides {
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(|e| parse("flags", e))?;
    }
    let merged = builder.build().map_err(|e| parse(origin, e))?;
    merged.try_deserialize().map_err(|e| parse(origin, e))
}

/// Rewrites config-rs/serde messages into `[section] key` form where possible.
fn describe(error: config::ConfigError) -> String {
    let text = error.to_string();
    // config-rs appends " for key `commit`" / " in ..." to field errors.
    if let Some((message, rest)) = text.split_once(" for key `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let section = key.trim_end_matches(".");
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split_once('`'))
        {
            return format!(
                "unknown key {:?} in [{section}];{}",
                field.0,
                field.1.trim_start_matches(',')
            );
        }
        return format!("[{section}] {message}");
    }
    text
}
