//! The configuration as written: serde structs with `deny_unknown_fields`, one per section.
//!
//! Every key either has an embedded default (`defaults.toml`) or is an `Option` that
//! [`crate::validate`] turns into an error naming it. Values are checked there, not here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A secret (password, key, credentials in a URI): its `Debug` prints `***`, and it has no
/// `Display`, so it cannot end up in a log line by accident. Read it with [`Secret::expose`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value, for the one place that needs it (a client constructor).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// The whole file, after layering.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[pipeline]`
    pub pipeline: PipelineSection,
    /// `[source.kafka]`, `[source.archive]`
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
    /// `[quality]`
    pub quality: QualitySection,
    /// `[dlq]`
    #[serde(default)]
    pub dlq: DlqSection,
    /// `[metrics]`
    pub metrics: MetricsSection,
    /// `[replay]`
    pub replay: ReplaySection,
    /// `[maintenance]`
    pub maintenance: MaintenanceSection,
    /// `[logic.<name>]`: each logic's own options, checked by the logic's registry entry.
    #[serde(default)]
    pub logic: BTreeMap<String, BTreeMap<String, LogicValue>>,
    /// The dotted keys the file, the environment or `--set` gave (not the embedded defaults).
    #[serde(skip)]
    pub explicit: BTreeSet<String>,
}

impl RawConfig {
    /// Whether the user set `key` (dotted, e.g. `metrics.listen`) rather than leaving the
    /// embedded default.
    pub fn is_set(&self, key: &str) -> bool {
        self.explicit.contains(key)
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Identifies this pipeline's commits (`kappa.pipeline`). Required.
    pub name: Option<String>,
    /// Business logic name (`orders`).
    pub logic: String,
}

/// `[source]`: the two sources of one topic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `[source.archive]`
    pub archive: Option<ArchiveSection>,
    /// `[source.kafka]`
    pub kafka: Option<KafkaSection>,
}

/// S3 settings shared by `[source.archive]` and `[catalog]` (the warehouse). Unset keys fall back
/// to the `AWS_*` environment, which the runtime reads (not this crate).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// Endpoint URL (`http://127.0.0.1:8333` for a local S3).
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
    /// Path-style requests (`http://host/bucket/key`); unset: path style when `endpoint` is set.
    pub path_style: Option<bool>,
}

/// `[source.archive]`
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "ArchiveKeys")]
pub struct ArchiveSection {
    /// `file:///dir`, `s3://bucket/prefix` or `memory://` (tests).
    pub url: Option<String>,
    /// Topic (directory and file prefix in the archive).
    pub topic: Option<String>,
    /// Record shape of the archive files: `auto` (default), `value`, `bytes` or `envelope`.
    pub format: Option<String>,
    /// Largest archive object, in bytes as stored (default 128 MiB).
    pub max_object_bytes: Option<u64>,
    /// Most bytes one OCF block may inflate to (default 16 MiB).
    pub max_block_bytes: Option<u64>,
    /// Most bytes one object's blocks may inflate to together (default 512 MiB).
    pub max_inflated_bytes: Option<u64>,
    /// S3 settings.
    pub s3: S3Section,
}

/// The keys of `[source.archive]` as written. (Not `serde(flatten)`: it would lose the key path
/// in errors and the string → bool conversion of env values.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveKeys {
    url: Option<String>,
    topic: Option<String>,
    format: Option<String>,
    max_object_bytes: Option<u64>,
    max_block_bytes: Option<u64>,
    max_inflated_bytes: Option<u64>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    #[serde(default)]
    allow_http: bool,
    path_style: Option<bool>,
}

impl From<ArchiveKeys> for ArchiveSection {
    fn from(k: ArchiveKeys) -> Self {
        ArchiveSection {
            url: k.url,
            topic: k.topic,
            format: k.format,
            max_object_bytes: k.max_object_bytes,
            max_block_bytes: k.max_block_bytes,
            max_inflated_bytes: k.max_inflated_bytes,
            s3: S3Section {
                endpoint: k.endpoint,
                region: k.region,
                access_key_id: k.access_key_id,
                secret_access_key: k.secret_access_key,
                allow_http: k.allow_http,
                path_style: k.path_style,
            },
        }
    }
}

/// `[source.kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Brokers, comma-separated.
    pub bootstrap_servers: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Consumer group (default `kappa-<pipeline name>`).
    pub group_id: Option<String>,
    /// Where a partition the table holds nothing of starts: `earliest` (default) or `latest`.
    pub start: Option<String>,
    /// How partitions are assigned: `shard` (default, no consumer group) or `group`.
    pub assignment: Option<String>,
    /// With `assignment = "shard"`: this replica's shard, `i/n` (default `0/1`: every partition).
    pub shard: Option<String>,
    /// How long `kappa run` waits at start for the brokers and the topic before it fails
    /// (default 30s), saying what it waits for.
    #[serde(default, with = "humantime_serde")]
    pub startup_timeout: Option<Duration>,
    /// Extra librdkafka settings.
    #[serde(default)]
    pub properties: KafkaProperties,
}

/// Extra librdkafka settings, `name -> value`. Nested tables flatten with dots, so
/// `sasl.password = "x"` (a TOML dotted key), `"sasl.password" = "x"` and the env var
/// `KAPPA__SOURCE__KAFKA__PROPERTIES__SASL__PASSWORD` all set `sasl.password`. Values of keys
/// that look secret (`password`, `secret`, `jaas`, `token`, `key`) are redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// Whether the value of `name` must never be shown.
    pub fn is_secret(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        ["password", "secret", "jaas", "token", "key"]
            .iter()
            .any(|s| name.contains(s))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Self::is_secret(k) { "***" } else { v };
                (k, shown)
            }))
            .finish()
    }
}

/// A property value as TOML or env gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Table(BTreeMap<String, PropertyValue>),
}

fn flatten(prefix: &str, value: PropertyValue, out: &mut BTreeMap<String, String>) {
    let text = match value {
        PropertyValue::Bool(b) => b.to_string(),
        PropertyValue::Int(i) => i.to_string(),
        PropertyValue::Float(x) => x.to_string(),
        PropertyValue::Text(s) => s,
        PropertyValue::Table(table) => {
            for (key, value) in table {
                let name = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
            return;
        }
    };
    out.insert(prefix.to_string(), text);
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, PropertyValue>::deserialize(deserializer)?;
        let mut out = BTreeMap::new();
        flatten("", PropertyValue::Table(table), &mut out);
        Ok(KafkaProperties(out))
    }
}

/// `[schema]`: exactly one of `dir` and `url`; the registry client's keys (`ca_file` ...
/// `password`) only with `url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// Embedded file registry directory (default `contracts`).
    pub dir: Option<String>,
    /// Confluent-compatible registry URL (a secret: user info in it is basic auth).
    pub url: Option<Secret>,
    /// Subject (default `<topic>-value`).
    pub subject: Option<String>,
    /// PEM file of extra CA certificates to trust for an `https://` registry.
    pub ca_file: Option<String>,
    /// Per-request timeout (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Attempts per request before the registry counts as unreachable (default 5).
    pub max_attempts: Option<u32>,
    /// Largest registry answer read, in bytes (default 8 MiB).
    pub max_response_bytes: Option<u64>,
    /// Basic-auth user (with `password`; instead of the URL's user info).
    pub username: Option<String>,
    /// Basic-auth password (redacted in `Debug`).
    pub password: Option<Secret>,
}

/// `[catalog]`
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "CatalogKeys")]
pub struct CatalogSection {
    /// `sql` or `rest`.
    pub kind: String,
    /// Catalog name.
    pub name: String,
    /// Catalog URI (a secret: it may carry a password).
    pub uri: Option<Secret>,
    /// Warehouse location.
    pub warehouse: Option<String>,
    /// S3 settings for an `s3://` warehouse.
    pub s3: S3Section,
    /// REST: OAuth2 client credentials, `client_id:client_secret` (or the secret alone).
    pub credential: Option<Secret>,
    /// REST: a bearer token (instead of `credential`).
    pub token: Option<Secret>,
    /// REST: the OAuth2 scope asked for with `credential` (the client's default: `catalog`).
    pub scope: Option<String>,
    /// REST: where tokens come from (default `<uri>/v1/oauth/tokens`).
    pub oauth2_server_uri: Option<String>,
    /// REST: the path prefix of the catalog's endpoints (default: what the catalog's
    /// `/v1/config` says).
    pub prefix: Option<String>,
    /// REST: passed through to the catalog client as they are (`header.X-...` headers, ...).
    pub properties: CatalogProperties,
}

/// `[catalog.properties]`: client properties passed through as they are; nested tables
/// flatten with dots as [`KafkaProperties`] do (`header.X-Iceberg-Access-Delegation = "..."`).
/// `Debug` hides the value of every key that names a secret (`header.Authorization`,
/// `...token...`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CatalogProperties(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for CatalogProperties {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, PropertyValue>::deserialize(deserializer)?;
        let mut out = BTreeMap::new();
        flatten("", PropertyValue::Table(table), &mut out);
        Ok(CatalogProperties(out))
    }
}

impl fmt::Debug for CatalogProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let secret = kappa_core::redact::is_secret_name(k);
                (k, if secret { "***" } else { v.as_str() })
            }))
            .finish()
    }
}

/// The keys of `[catalog]` as written (see [`ArchiveKeys`] for why not `flatten`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogKeys {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    uri: Option<Secret>,
    warehouse: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    #[serde(default)]
    allow_http: bool,
    path_style: Option<bool>,
    credential: Option<Secret>,
    token: Option<Secret>,
    scope: Option<String>,
    oauth2_server_uri: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    properties: CatalogProperties,
}

impl From<CatalogKeys> for CatalogSection {
    fn from(k: CatalogKeys) -> Self {
        CatalogSection {
            kind: k.kind,
            name: k.name,
            uri: k.uri,
            warehouse: k.warehouse,
            s3: S3Section {
                endpoint: k.endpoint,
                region: k.region,
                access_key_id: k.access_key_id,
                secret_access_key: k.secret_access_key,
                allow_http: k.allow_http,
                path_style: k.path_style,
            },
            credential: k.credential,
            token: k.token,
            scope: k.scope,
            oauth2_server_uri: k.oauth2_server_uri,
            prefix: k.prefix,
            properties: k.properties,
        }
    }
}

/// `[table]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Namespace.
    pub namespace: String,
    /// Table name. Required.
    pub name: Option<String>,
    /// Partition transforms, e.g. `day(event_time)`; a list, or one comma-separated string (env).
    #[serde(deserialize_with = "list_or_csv")]
    pub partition_by: Vec<String>,
    /// Target data file size in bytes.
    pub target_file_size: u64,
    /// Parquet writers a flush may use in parallel while rows arrive faster than one encodes.
    pub writers: u64,
    /// Dead-letter table name (default `<name>_dlq`).
    pub dlq_name: Option<String>,
    /// Late-row table (with `[event_time] late_policy = "late_table"`), default `<name>_late`.
    pub late_name: Option<String>,
    /// Where flushes failing a `quarantine` quality check go, default `<name>_quarantine`.
    pub quarantine_name: Option<String>,
    /// Kafka record attributes kept as columns: `key`, `timestamp`, `headers`; a list, or one
    /// comma-separated string (env).
    #[serde(deserialize_with = "list_or_csv")]
    pub kafka_metadata: Vec<String>,
}

/// A list, or a comma-separated string (how env vars and `--set` flags give lists).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(deserializer)? {
        ListOrCsv::List(items) => items,
        ListOrCsv::Csv(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
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
    /// Attempts per commit that failed (unknown outcomes, errors before the catalog) before the
    /// run fails.
    pub max_attempts: u32,
    /// How long a commit keeps retrying after conflicts (another writer committed first) before
    /// the run fails.
    #[serde(with = "humantime_serde")]
    pub conflict_timeout: Duration,
}

/// `[dedup]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSection {
    /// The column whose repeats are dropped; unset: the logic's default (`orders`: `event_id`,
    /// `identity`: none, no dedup).
    pub key: Option<String>,
    /// Offsets per partition within which a repeated key is a duplicate.
    pub window: i64,
}

/// A value of a `[logic.<name>]` key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LogicValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
    /// An array.
    List(Vec<LogicValue>),
}

/// `[event_time]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSection {
    /// Event-time column.
    pub column: String,
    /// Allowed lateness: watermark = newest event time − this.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// What happens to a row later than its partition's newest event time minus the allowed
    /// lateness: `append` (to the main table, counted) or `late_table` (to `[table] late_name`).
    pub late_policy: String,
}

/// `[quality]`: record rules and gates (validated into [`kappa_quality::QualityConfig`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySection {
    /// `false`: no rule runs and no gate judges.
    pub enabled: bool,
    /// Start from the built-in record rules of `[pipeline] logic`'s contract.
    pub default_rules: bool,
    /// `[[quality.rules]]`: record rules, in order (file only: env and `--set` cannot index).
    #[serde(default)]
    pub rules: Vec<RuleSection>,
    /// `[quality.gates.*]`
    pub gates: GatesSection,
    /// `[quality.partition]`
    pub partition: PartitionSection,
}

/// One `[[quality.rules]]` entry: a column and exactly one check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Rule name (default `<column>_<check>`); a default rule of the same name is replaced.
    pub name: Option<String>,
    /// Column checked. Required.
    pub column: Option<String>,
    /// `true`: the value must not be NULL.
    pub required: Option<bool>,
    /// The value (as text) must be one of these.
    #[serde(default, deserialize_with = "optional_list_or_csv")]
    pub allowed: Option<Vec<String>>,
    /// Smallest allowed numeric value.
    pub min: Option<f64>,
    /// Largest allowed numeric value.
    pub max: Option<f64>,
    /// Regular expression the text value must match (searched: anchor with `^…$`).
    pub pattern: Option<String>,
    /// What a failure rate above `max_rate` does: `warn` (default), `quarantine`, `block`.
    pub policy: Option<String>,
    /// Share of a commit's rows that may fail the rule before its policy applies (default 0).
    pub max_rate: Option<f64>,
}

/// `[quality.gates]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesSection {
    /// `[quality.gates.completeness]`
    pub completeness: CompletenessSection,
    /// `[quality.gates.null_rate]`
    pub null_rate: NullRateSection,
    /// `[quality.gates.uniqueness]`
    pub uniqueness: UniquenessSection,
    /// `[quality.gates.timeliness]`
    pub timeliness: TimelinessSection,
}

/// `[quality.gates.completeness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletenessSection {
    /// Gate on or off.
    pub enabled: bool,
    /// `block`, `quarantine` or `warn`.
    pub policy: String,
}

/// `[quality.gates.null_rate]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullRateSection {
    /// Gate on or off.
    pub enabled: bool,
    /// `block`, `quarantine` or `warn`.
    pub policy: String,
    /// Critical columns; a list, or one comma-separated string (env). Unset: the logic's
    /// (`orders`: `user_id`; `identity`: none, the gate checks nothing).
    #[serde(default, deserialize_with = "optional_list_or_csv")]
    pub columns: Option<Vec<String>>,
    /// Largest NULL share that passes (0.001 is 0.1%).
    pub max_rate: f64,
}

/// `[quality.gates.uniqueness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniquenessSection {
    /// Gate on or off.
    pub enabled: bool,
    /// `block`, `quarantine` or `warn`.
    pub policy: String,
    /// Key column. Unset: the logic's (`orders`: `event_id`; `identity`: none, no gate).
    pub column: Option<String>,
    /// Largest duplicate share within a commit that passes.
    pub max_rate: f64,
}

/// `[quality.gates.timeliness]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelinessSection {
    /// Gate on or off.
    pub enabled: bool,
    /// `block`, `quarantine` or `warn`.
    pub policy: String,
    /// Ingest time − event time beyond which a record is late.
    #[serde(with = "humantime_serde")]
    pub freshness_sla: Duration,
    /// Largest share of late records that passes.
    pub max_late_rate: f64,
}

/// `[quality.partition]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSection {
    /// Gate on or off.
    pub enabled: bool,
    /// `block`, `quarantine` or `warn`.
    pub policy: String,
    /// Days before a closed day whose median it is compared with.
    pub lookback_days: u32,
    /// Days of history needed before the gate judges.
    pub min_history_days: u32,
    /// `[lo, hi]`: allowed factor of the median; a list, or `"lo,hi"` (env).
    #[serde(deserialize_with = "floats_or_csv")]
    pub band: Vec<f64>,
}

/// A list of numbers, or a comma-separated string of them (env, `--set`).
fn floats_or_csv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FloatsOrCsv {
        List(Vec<f64>),
        Csv(String),
    }
    match FloatsOrCsv::deserialize(deserializer)? {
        FloatsOrCsv::List(items) => Ok(items),
        FloatsOrCsv::Csv(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>()
                    .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number")))
            })
            .collect(),
    }
}

/// [`list_or_csv`] for an optional key.
fn optional_list_or_csv<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    list_or_csv(deserializer).map(Some)
}

/// `[dlq]`: reserved for dead-letter settings; no keys yet (any key is an error). Dead letters
/// always go to the `[table] dlq_name` table: there is no switch that would lose them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqSection {}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
    /// `kappa run`: the source counts as stalled (`/readyz` not ready, saying why) after this
    /// long without records while it is not caught up.
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// `kappa replay`: how long the endpoint keeps serving after the run (so that a scrape sees
    /// its final values before the process, and its pod, goes); SIGTERM or SIGINT ends it early.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Connections the endpoint serves at once; further ones are closed when accepted.
    pub max_connections: usize,
    /// A connection must send its request headers within this and is closed this long after it
    /// was accepted.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// `[replay]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    /// Partitions read at once (at most the number of partitions).
    pub parallelism: usize,
    /// Rows per decoded batch.
    pub batch_rows: usize,
    /// Archive objects requested at once, across the partitions being read.
    pub fetch_concurrency: usize,
    /// Bytes of fetched archive objects waiting to be decoded, at most.
    pub fetch_buffer_bytes: u64,
}

/// `[maintenance]`: `kappa maintain`'s thresholds (the command line overrides them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSection {
    /// `expire`: snapshots older than this may be removed.
    #[serde(with = "humantime_serde")]
    pub expire_older_than: Duration,
    /// `expire`: each branch keeps at least its newest this many snapshots.
    pub retain_last: usize,
    /// `orphans`: unreferenced files younger than this are kept (it must outlast the longest
    /// flush and the longest wait of a staged backfill for its publish).
    #[serde(with = "humantime_serde")]
    pub orphan_older_than: Duration,
}
