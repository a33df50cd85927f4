//! Raw configuration → validated, typed [`PipelineConfig`]. Pure: no I/O, no env.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use kappa_core::KafkaMetadata;
use kappa_core::redact::{Redacted, redact};
use kappa_logic::{LogicEntry, LogicError, LogicOptions, LogicSettings, OptionValue, Registry};
use kappa_quality::QualityConfig;
use url::Url;

use crate::error::ConfigError;
use crate::partition::{PartitionSpec, parse_partition};
use crate::raw::{KafkaProperties, LogicValue, RawConfig, S3Section, SchemaSection};
use crate::typed::{
    ArchiveConfig, ArchiveFormat, ArchiveLimitsConfig, CatalogKind, KafkaAssignment, KafkaConfig,
    KafkaStart, LatePolicy, RegistryConfig, SchemaSource,
};

/// A validated pipeline configuration: every value checked, defaults resolved.
///
/// The typed fields are the contract; `raw` keeps the sections as written (after layering) for
/// values that need no interpretation. `Debug` prints every value through
/// [`kappa_core::redact`]: no credential of a URI or a secret-named parameter shows.
#[derive(Clone)]
pub struct PipelineConfig {
    /// The raw values after layering.
    pub raw: RawConfig,
    /// `[pipeline] name`.
    pub name: String,
    /// `[pipeline] logic`.
    pub logic: String,
    /// The registry entry `[pipeline] logic` names.
    pub logic_entry: LogicEntry,
    /// What the logic's factory is given: `[dedup]`, `[event_time] column` and
    /// `[logic.<name>]`, the logic's defaults filled in.
    pub logic_settings: LogicSettings,
    /// `[source.archive]`, when configured.
    pub source_archive: Option<ArchiveConfig>,
    /// `[source.kafka]`, when configured.
    pub source_kafka: Option<KafkaConfig>,
    /// `[schema] dir` or `url`.
    pub schema: SchemaSource,
    /// `[schema] subject`, default `<topic>-value`.
    pub subject: String,
    /// `[catalog] type`.
    pub catalog_kind: CatalogKind,
    /// `[catalog] uri` (may hold a password: never log it; see `kappa_iceberg`'s redaction).
    pub catalog_uri: String,
    /// `[catalog] warehouse` (empty for a REST catalog that picks its own).
    pub warehouse: String,
    /// `[table] name`.
    pub table: String,
    /// `[table] dlq_name`, default `<name>_dlq`.
    pub dlq_table: String,
    /// `[event_time] late_policy`.
    pub late_policy: LatePolicy,
    /// `[table] late_name`, default `<name>_late` (written only with `late_policy = "late_table"`).
    pub late_table: String,
    /// `[table] quarantine_name`, default `<name>_quarantine` (written only when a quality check
    /// has `policy = "quarantine"`).
    pub quarantine_table: String,
    /// Parsed `[table] partition_by`.
    pub partition_by: Vec<PartitionSpec>,
    /// `[table] kafka_metadata`: the Kafka record attributes kept as columns, in column order.
    pub kafka_metadata: Vec<KafkaMetadata>,
    /// `[commit] interval`.
    pub commit_interval: Duration,
    /// `[metrics] listen`.
    pub metrics_listen: SocketAddr,
    /// `[quality]`: record rules and gates, the contract's defaults filled in.
    pub quality: QualityConfig,
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("name", &self.name)
            .field("logic", &self.logic)
            .field("logic_settings", &self.logic_settings)
            .field("source_archive", &self.source_archive)
            .field("source_kafka", &Redacted(&self.source_kafka))
            .field("schema", &Redacted(&self.schema))
            .field("subject", &self.subject)
            .field("catalog_kind", &self.catalog_kind)
            .field("catalog_uri", &redact(&self.catalog_uri))
            .field("warehouse", &redact(&self.warehouse))
            .field("table", &self.table)
            .field("dlq_table", &self.dlq_table)
            .field("late_policy", &self.late_policy)
            .field("late_table", &self.late_table)
            .field("quarantine_table", &self.quarantine_table)
            .field("partition_by", &self.partition_by)
            .field("kafka_metadata", &self.kafka_metadata)
            .field("commit_interval", &self.commit_interval)
            .field("metrics_listen", &self.metrics_listen)
            .field("quality", &self.quality)
            .field("raw", &Redacted(&self.raw))
            .finish()
    }
}

impl PipelineConfig {
    /// The archive URL, topic and S3 settings, or an error naming the missing key (for commands
    /// that need the archive).
    pub fn archive(&self) -> Result<(String, String, &S3Section), ConfigError> {
        let archive = self.source_archive.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "source.archive",
                "url",
                "missing: replay needs [source.archive] url and topic",
            )
        })?;
        Ok((archive.url.to_string(), archive.topic.clone(), &archive.s3))
    }

    /// The live Kafka source, or an error naming the missing section.
    pub fn kafka(&self) -> Result<&KafkaConfig, ConfigError> {
        self.source_kafka.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "source.kafka",
                "bootstrap_servers",
                "missing: a live run needs [source.kafka] bootstrap_servers and topic",
            )
        })
    }

    /// Partitions read at once by a replay of `partitions` partitions: `[replay] parallelism`,
    /// at most `partitions`, at least 1.
    pub fn replay_parallelism(&self, partitions: usize) -> usize {
        self.raw.replay.parallelism.min(partitions).max(1)
    }
}

/// Longest table or namespace level name (bytes): a warehouse path segment, well under every
/// file system's limit of 255.
const MAX_IDENTIFIER: usize = 128;

/// A table or namespace name: `[A-Za-z_][A-Za-z0-9_-]*`, at most [`MAX_IDENTIFIER`] bytes. No
/// dots, slashes, `..`, spaces or other characters that a catalog, a warehouse path or a query
/// engine would read differently. `Err` says what is wrong.
fn identifier(what: &str, value: &str) -> Result<(), String> {
    let expected = "expected letters, digits, '_' or '-', starting with a letter or '_'";
    let mut chars = value.chars();
    match chars.next() {
        None => return Err(format!("empty {what}; {expected}")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(format!("{what} starts with {c:?}; {expected}"));
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("{what} contains {c:?}; {expected}"));
    }
    if value.len() > MAX_IDENTIFIER {
        return Err(format!(
            "{what} is {} bytes long; at most {MAX_IDENTIFIER}",
            value.len()
        ));
    }
    Ok(())
}

/// A non-empty string at `section.key`, or an error saying it is missing.
fn required(
    value: Option<&String>,
    section: &str,
    key: &str,
    hint: &str,
) -> Result<String, ConfigError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::invalid(section, key, format!("missing; {hint}")))
}

fn parse_url(section: &str, key: &str, value: &str, schemes: &[&str]) -> Result<Url, ConfigError> {
    let expected = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" | ");
    let url = Url::parse(value).map_err(|e| {
        ConfigError::invalid(
            section,
            key,
            format!(
                "{:?} is not a URL ({e}); expected {expected}",
                redact(value)
            ),
        )
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::invalid(
            section,
            key,
            format!("unsupported scheme {:?}; expected {expected}", url.scheme()),
        ));
    }
    Ok(url)
}

fn check_s3(section: &str, s3: &S3Section) -> Result<(), ConfigError> {
    if let Some(endpoint) = &s3.endpoint {
        parse_url(section, "endpoint", endpoint, &["http", "https"])?;
    }
    Ok(())
}

fn positive(section: &str, key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(section, key, "must be greater than 0"));
    }
    Ok(())
}

fn archive(raw: &RawConfig) -> Result<Option<ArchiveConfig>, ConfigError> {
    let Some(section) = &raw.source.archive else {
        return Ok(None);
    };
    let url = required(
        section.url.as_ref(),
        "source.archive",
        "url",
        "expected file:///path, s3://bucket/prefix or memory://",
    )?;
    let url = parse_url(
        "source.archive",
        "url",
        &url,
        &["file", "s3", "s3a", "memory"],
    )?;
    let topic = required(
        section.topic.as_ref(),
        "source.archive",
        "topic",
        "the topic's directory in the archive, e.g. \"orders\"",
    )?;
    let format = match section.format.as_deref().map(str::trim) {
        None | Some("auto") => ArchiveFormat::Auto,
        Some("value") => ArchiveFormat::Value,
        Some("bytes") => ArchiveFormat::Bytes,
        Some("envelope") => ArchiveFormat::Envelope,
        Some(other) => {
            return Err(ConfigError::invalid(
                "source.archive",
                "format",
                format!("unknown format {other:?}; expected auto|value|bytes|envelope"),
            ));
        }
    };
    check_s3("source.archive", &section.s3)?;
    let defaults = ArchiveLimitsConfig::default();
    let limits = ArchiveLimitsConfig {
        max_object_bytes: section
            .max_object_bytes
            .unwrap_or(defaults.max_object_bytes),
        max_block_bytes: section.max_block_bytes.unwrap_or(defaults.max_block_bytes),
        max_inflated_bytes: section
            .max_inflated_bytes
            .unwrap_or(defaults.max_inflated_bytes),
    };
    positive(
        "source.archive",
        "max_object_bytes",
        limits.max_object_bytes,
    )?;
    positive("source.archive", "max_block_bytes", limits.max_block_bytes)?;
    positive(
        "source.archive",
        "max_inflated_bytes",
        limits.max_inflated_bytes,
    )?;
    if limits.max_block_bytes > limits.max_inflated_bytes {
        return Err(ConfigError::invalid(
            "source.archive",
            "max_block_bytes",
            format!(
                "{} is more than max_inflated_bytes ({}), which bounds all of an object's blocks together",
                limits.max_block_bytes, limits.max_inflated_bytes
            ),
        ));
    }
    Ok(Some(ArchiveConfig {
        url,
        topic,
        format,
        limits,
        s3: section.s3.clone(),
    }))
}

/// librdkafka settings Kappa sets itself, with why.
const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use [source.kafka] bootstrap_servers"),
    ("group.id", "use [source.kafka] group_id"),
    (
        "enable.auto.commit",
        "group offsets are committed only after the table commit",
    ),
    (
        "enable.auto.offset.store",
        "group offsets are committed only after the table commit",
    ),
    (
        "auto.offset.reset",
        "use [source.kafka] start; positions come from the table",
    ),
    (
        "enable.partition.eof",
        "the source does not use end-of-partition events",
    ),
];

fn kafka(raw: &RawConfig, pipeline: &str) -> Result<Option<KafkaConfig>, ConfigError> {
    let Some(section) = &raw.source.kafka else {
        return Ok(None);
    };
    let hint = "brokers as host:port[,host:port], e.g. \"127.0.0.1:9092\"";
    let bootstrap_servers = required(
        section.bootstrap_servers.as_ref(),
        "source.kafka",
        "bootstrap_servers",
        hint,
    )?;
    if let Some(bad) = bootstrap_servers.split(',').map(str::trim).find(|b| {
        b.rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    }) {
        return Err(ConfigError::invalid(
            "source.kafka",
            "bootstrap_servers",
            format!("{bad:?} is not host:port; expected {hint}"),
        ));
    }
    let topic = required(
        section.topic.as_ref(),
        "source.kafka",
        "topic",
        "e.g. \"orders\"",
    )?;
    let group_id = section
        .group_id
        .clone()
        .filter(|g| !g.trim().is_empty())
        .unwrap_or_else(|| format!("kappa-{pipeline}"));
    let start = match section.start.as_deref().map(str::trim) {
        None | Some("earliest") => KafkaStart::Earliest,
        Some("earliest-available") => KafkaStart::EarliestAvailable,
        Some("latest") => KafkaStart::Latest,
        Some(other) => {
            return Err(ConfigError::invalid(
                "source.kafka",
                "start",
                format!("{other:?}: expected \"earliest\", \"earliest-available\" or \"latest\""),
            ));
        }
    };
    let assignment = kafka_assignment(section)?;
    // Kappa owns these librdkafka settings: the table, never the consumer group, holds the
    // position (see docs/exactly-once.md).
    for (name, reason) in RESERVED_KAFKA_PROPERTIES {
        if section.properties.0.contains_key(*name) {
            return Err(ConfigError::invalid(
                "source.kafka.properties",
                name,
                format!("is set by Kappa and cannot be overridden: {reason}"),
            ));
        }
    }
    if let Some(strategy) = section.properties.0.get("partition.assignment.strategy")
        && strategy.contains("cooperative")
    {
        return Err(ConfigError::invalid(
            "source.kafka.properties",
            "partition.assignment.strategy",
            format!(
                "{strategy:?}: cooperative rebalancing is not supported (every assignment restarts reading from the table's offsets); use \"range\" or \"roundrobin\""
            ),
        ));
    }
    Ok(Some(KafkaConfig {
        bootstrap_servers,
        topic,
        group_id,
        start,
        assignment,
        startup_timeout: section.startup_timeout.unwrap_or(Duration::from_secs(30)),
        properties: KafkaProperties(section.properties.0.clone()),
    }))
}

/// `[source.kafka] assignment` and `shard`.
fn kafka_assignment(section: &crate::raw::KafkaSection) -> Result<KafkaAssignment, ConfigError> {
    let shard = section.shard.as_deref().map(str::trim);
    match section.assignment.as_deref().map(str::trim) {
        None | Some("shard") => {
            let Some(text) = shard else {
                return Ok(KafkaAssignment::default());
            };
            let bad = || {
                ConfigError::invalid(
                    "source.kafka",
                    "shard",
                    format!("{text:?}: expected i/n with 0 <= i < n, e.g. \"1/4\""),
                )
            };
            let (i, n) = text.split_once('/').ok_or_else(bad)?;
            let (index, count): (u32, u32) = (
                i.trim().parse().map_err(|_| bad())?,
                n.trim().parse().map_err(|_| bad())?,
            );
            if count == 0 || index >= count {
                return Err(bad());
            }
            Ok(KafkaAssignment::Shard { index, count })
        }
        Some("group") => match shard {
            Some(_) => Err(ConfigError::invalid(
                "source.kafka",
                "shard",
                "only applies to assignment = \"shard\"; the consumer group assigns partitions with assignment = \"group\"",
            )),
            None => Ok(KafkaAssignment::Group),
        },
        Some(other) => Err(ConfigError::invalid(
            "source.kafka",
            "assignment",
            format!("{other:?}: expected \"shard\" or \"group\""),
        )),
    }
}

/// `[schema] timeout` when unset.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);
/// `[schema] max_attempts` when unset.
const REGISTRY_MAX_ATTEMPTS: u32 = 5;
/// Largest registry answer read (`[schema] max_response_bytes`): a schema is a few KiB.
const REGISTRY_MAX_RESPONSE_BYTES: u64 = 8 << 20;

fn schema(raw: &RawConfig) -> Result<SchemaSource, ConfigError> {
    let section = &raw.schema;
    match (&section.dir, &section.url) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "schema",
            "url",
            "set either dir or url, not both",
        )),
        (_, Some(url)) => Ok(SchemaSource::Url(registry(section, url.expose())?)),
        (dir, None) => {
            let client_keys = [
                ("ca_file", section.ca_file.is_some()),
                ("timeout", section.timeout.is_some()),
                ("max_attempts", section.max_attempts.is_some()),
                ("max_response_bytes", section.max_response_bytes.is_some()),
                ("username", section.username.is_some()),
                ("password", section.password.is_some()),
            ];
            if let Some((key, _)) = client_keys.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    "schema",
                    key,
                    "only applies to a schema registry: set [schema] url, or remove it",
                ));
            }
            match dir {
                Some(dir) if dir.trim().is_empty() => Err(ConfigError::invalid(
                    "schema",
                    "dir",
                    "empty; expected a directory of <subject>/<version>.avsc",
                )),
                Some(dir) => Ok(SchemaSource::Dir(dir.clone())),
                None => Ok(SchemaSource::Dir("contracts".into())),
            }
        }
    }
}

/// `[schema] url` and the registry client's keys.
fn registry(section: &SchemaSection, url: &str) -> Result<RegistryConfig, ConfigError> {
    // Never echo the URL when it does not parse: it may carry a password.
    Url::parse(url).map_err(|e| {
        ConfigError::invalid(
            "schema",
            "url",
            format!("not a URL ({e}); expected http:// | https://"),
        )
    })?;
    let parsed = parse_url("schema", "url", url, &["http", "https"])?;
    let url_has_user = !parsed.username().is_empty();
    let username = section.username.as_ref().map(|u| u.trim().to_string());
    match (&username, &section.password) {
        (Some(_), _) | (_, Some(_)) if url_has_user => {
            let key = if username.is_some() {
                "username"
            } else {
                "password"
            };
            return Err(ConfigError::invalid(
                "schema",
                key,
                "the url already carries user info; give the credentials once: in the url (https://user:pass@host) or as username and password",
            ));
        }
        (Some(user), _) if user.is_empty() => {
            return Err(ConfigError::invalid(
                "schema",
                "username",
                "empty; expected the registry's basic-auth user",
            ));
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "schema",
                "password",
                "missing: username is set and basic auth needs both (KAPPA__SCHEMA__PASSWORD keeps it out of the file)",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "schema",
                "username",
                "missing: password is set and basic auth needs both",
            ));
        }
        _ => {}
    }
    let ca_file = match section.ca_file.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(ConfigError::invalid(
                "schema",
                "ca_file",
                "empty; expected a PEM file of CA certificates",
            ));
        }
        Some(_) if parsed.scheme() != "https" => {
            return Err(ConfigError::invalid(
                "schema",
                "ca_file",
                format!(
                    "the url is {}://; a CA bundle only applies to an https:// registry",
                    parsed.scheme()
                ),
            ));
        }
        Some(path) => Some(std::path::PathBuf::from(path)),
    };
    let timeout = section.timeout.unwrap_or(REGISTRY_TIMEOUT);
    if timeout.is_zero() {
        return Err(ConfigError::invalid(
            "schema",
            "timeout",
            "must be greater than 0, e.g. \"10s\"",
        ));
    }
    let max_attempts = section.max_attempts.unwrap_or(REGISTRY_MAX_ATTEMPTS);
    positive("schema", "max_attempts", u64::from(max_attempts))?;
    let max_response_bytes = section
        .max_response_bytes
        .unwrap_or(REGISTRY_MAX_RESPONSE_BYTES);
    positive("schema", "max_response_bytes", max_response_bytes)?;
    Ok(RegistryConfig {
        url: parsed.to_string(),
        username,
        password: section.password.clone(),
        ca_file,
        timeout,
        max_attempts,
        max_response_bytes,
    })
}

fn catalog(raw: &RawConfig) -> Result<(CatalogKind, String, String), ConfigError> {
    let kind = match raw.catalog.kind.trim() {
        "sql" => CatalogKind::Sql,
        "rest" => CatalogKind::Rest,
        "glue" => CatalogKind::Glue,
        "s3tables" => CatalogKind::S3Tables,
        other => {
            return Err(ConfigError::invalid(
                "catalog",
                "type",
                format!("unknown catalog type {other:?}; expected sql|rest|glue|s3tables"),
            ));
        }
    };
    let uri_hint = match kind {
        CatalogKind::Sql => {
            "expected sqlite:///path/catalog.db or postgres://user:pass@host:5432/db"
        }
        CatalogKind::Rest => "expected the REST catalog's http(s):// URL",
        CatalogKind::Glue | CatalogKind::S3Tables => {
            "optional: an http(s):// endpoint overriding the AWS service's"
        }
    };
    let uri = raw
        .catalog
        .uri
        .as_ref()
        .map(|s| s.expose().trim().to_string())
        .filter(|s| !s.is_empty());
    let uri = match (kind, uri) {
        (CatalogKind::Glue | CatalogKind::S3Tables, None) => String::new(),
        (_, Some(uri)) => uri,
        (_, None) => {
            return Err(ConfigError::invalid(
                "catalog",
                "uri",
                format!("missing; {uri_hint}"),
            ));
        }
    };
    let uri_ok = match kind {
        CatalogKind::Sql => {
            uri.starts_with("sqlite:")
                || ((uri.starts_with("postgres://") || uri.starts_with("postgresql://"))
                    && Url::parse(&uri).is_ok())
        }
        CatalogKind::Rest => Url::parse(&uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
        CatalogKind::Glue | CatalogKind::S3Tables => {
            uri.is_empty() || Url::parse(&uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        }
    };
    if !uri_ok {
        // Never echo the URI: it may hold a password.
        return Err(ConfigError::invalid("catalog", "uri", uri_hint));
    }
    let warehouse = match (kind, &raw.catalog.warehouse) {
        (CatalogKind::Rest, None) => String::new(),
        (CatalogKind::Rest, Some(w)) => w.trim().to_string(),
        (CatalogKind::Sql, w) => {
            let hint = "expected file:///path or s3://bucket/prefix";
            let w = required(w.as_ref(), "catalog", "warehouse", hint)?;
            parse_url("catalog", "warehouse", &w, &["file", "s3", "s3a"])?;
            w
        }
        (CatalogKind::Glue, w) => {
            let hint = "expected s3://bucket/prefix, where new tables go";
            let w = required(w.as_ref(), "catalog", "warehouse", hint)?;
            parse_url("catalog", "warehouse", &w, &["s3", "s3a"])?;
            w
        }
        (CatalogKind::S3Tables, w) => {
            let hint = "expected the table bucket's ARN, arn:aws:s3tables:<region>:<account>:bucket/<name>";
            let w = required(w.as_ref(), "catalog", "warehouse", hint)?;
            let parts: Vec<&str> = w.split(':').collect();
            let ok = parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "s3tables"
                && parts[5].starts_with("bucket/")
                && parts[5].len() > "bucket/".len();
            if !ok {
                return Err(ConfigError::invalid("catalog", "warehouse", hint));
            }
            w
        }
    };
    check_s3("catalog", &raw.catalog.s3)?;
    check_rest_keys(kind, &raw.catalog)?;
    Ok((kind, uri, warehouse))
}

/// The REST catalog's keys: refused on a SQL catalog (they would be silently ignored), checked
/// on a REST one.
fn check_rest_keys(kind: CatalogKind, c: &crate::raw::CatalogSection) -> Result<(), ConfigError> {
    let set = [
        ("credential", c.credential.is_some()),
        ("token", c.token.is_some()),
        ("scope", c.scope.is_some()),
        ("oauth2_server_uri", c.oauth2_server_uri.is_some()),
        ("prefix", c.prefix.is_some()),
        ("properties", !c.properties.0.is_empty()),
    ];
    // `properties` pass through to the REST, Glue and S3 Tables clients; the others are REST's.
    let takes = |key: &str| match kind {
        CatalogKind::Rest => true,
        CatalogKind::Glue | CatalogKind::S3Tables => key == "properties",
        CatalogKind::Sql => false,
    };
    if let Some((key, _)) = set.iter().find(|(key, set)| *set && !takes(key)) {
        return Err(ConfigError::invalid(
            "catalog",
            key,
            "only a REST catalog takes it (type = \"rest\")",
        ));
    }
    if kind != CatalogKind::Rest {
        return Ok(());
    }
    if let Some(credential) = &c.credential {
        let text = credential.expose();
        let secret = text.split_once(':').map_or(text, |(_, secret)| secret);
        if secret.trim().is_empty() {
            // Never echo it.
            return Err(ConfigError::invalid(
                "catalog",
                "credential",
                "expected \"client_id:client_secret\" (or the secret alone); the secret is empty",
            ));
        }
    }
    if let Some(token) = &c.token
        && token.expose().trim().is_empty()
    {
        return Err(ConfigError::invalid("catalog", "token", "empty"));
    }
    if let Some(uri) = &c.oauth2_server_uri {
        let ok = Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(ConfigError::invalid(
                "catalog",
                "oauth2_server_uri",
                "expected the token endpoint's http(s):// URL",
            ));
        }
    }
    if let Some(prefix) = &c.prefix
        && (prefix.trim().is_empty() || prefix.starts_with('/') || prefix.ends_with('/'))
    {
        return Err(ConfigError::invalid(
            "catalog",
            "prefix",
            "expected a path without leading or trailing '/', e.g. \"warehouse1\"",
        ));
    }
    for key in c.properties.0.keys() {
        let owned = [
            "uri",
            "warehouse",
            "credential",
            "token",
            "scope",
            "oauth2-server-uri",
            "prefix",
        ];
        if owned.contains(&key.as_str()) {
            return Err(ConfigError::invalid(
                "catalog.properties",
                key,
                "set it with its own [catalog] key",
            ));
        }
        if let Some(header) = key.strip_prefix("header.")
            && (header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
        {
            return Err(ConfigError::invalid(
                "catalog.properties",
                key,
                "not a valid HTTP header name",
            ));
        }
    }
    Ok(())
}

/// Validates `raw` into a [`PipelineConfig`] with the logics Kappa ships; the error names the
/// first bad key.
pub fn validate(raw: RawConfig) -> Result<PipelineConfig, ConfigError> {
    validate_with(raw, &Registry::builtin())
}

/// `[logic.<name>]` values as the registry's option values.
fn logic_value(value: &LogicValue) -> OptionValue {
    match value {
        LogicValue::Bool(b) => OptionValue::Bool(*b),
        LogicValue::Int(i) => OptionValue::Int(*i),
        LogicValue::Float(x) => OptionValue::Float(*x),
        LogicValue::Text(s) => OptionValue::Text(s.clone()),
        LogicValue::List(items) => OptionValue::List(items.iter().map(logic_value).collect()),
    }
}

/// A registry error about the config as the [`ConfigError`] naming its key.
fn logic_error(error: LogicError) -> ConfigError {
    match error {
        LogicError::Option {
            section,
            key,
            message,
        } => ConfigError::invalid(&section, &key, message),
        LogicError::UnknownLogic { name, known } => ConfigError::invalid(
            "pipeline",
            "logic",
            format!("unknown logic {name:?}; expected one of {known}"),
        ),
        other => ConfigError::invalid("pipeline", "logic", other.to_string()),
    }
}

/// The logic `[pipeline] logic` names in `registry`, and its settings: `[dedup] key` or the
/// logic's default, `[logic.<name>]` checked against the keys the logic declares (the section
/// of another logic is an error: it would be ignored).
fn logic(
    raw: &RawConfig,
    name: &str,
    registry: &Registry,
) -> Result<(LogicEntry, LogicSettings), ConfigError> {
    let entry = *registry.get(name).map_err(logic_error)?;
    if let Some(other) = raw.logic.keys().find(|k| k.as_str() != entry.name) {
        return Err(ConfigError::invalid(
            "logic",
            other,
            format!(
                "options of logic {other:?}, but [pipeline] logic is {:?}; rename the section to [logic.{}] or remove it",
                entry.name, entry.name
            ),
        ));
    }
    let values = raw
        .logic
        .get(entry.name)
        .map(|section| {
            section
                .iter()
                .map(|(k, v)| (k.clone(), logic_value(v)))
                .collect()
        })
        .unwrap_or_default();
    let options = LogicOptions::new(&entry, values).map_err(logic_error)?;
    let dedup_key = match &raw.dedup.key {
        Some(key) if key.trim().is_empty() => {
            return Err(ConfigError::invalid(
                "dedup",
                "key",
                "must not be empty; leave it unset for the logic's default",
            ));
        }
        Some(key) => Some(key.trim().to_string()),
        None => entry.defaults.dedup_key.map(str::to_string),
    };
    let settings = LogicSettings {
        dedup_key,
        dedup_window: raw.dedup.window,
        event_time_column: raw.event_time.column.trim().to_string(),
        options,
    };
    Ok((entry, settings))
}

/// Validates `raw` into a [`PipelineConfig`] with the logics of `registry` (a program that
/// embeds Kappa registers its own); the error names the first bad key.
pub fn validate_with(raw: RawConfig, registry: &Registry) -> Result<PipelineConfig, ConfigError> {
    let name = required(
        raw.pipeline.name.as_ref(),
        "pipeline",
        "name",
        "it identifies this pipeline's commits in the table",
    )?;
    let logic = required(
        Some(&raw.pipeline.logic),
        "pipeline",
        "logic",
        "e.g. \"orders\"",
    )?;
    let source_archive = archive(&raw)?;
    let source_kafka = kafka(&raw, &name)?;
    let schema = schema(&raw)?;
    let topic = source_archive
        .as_ref()
        .map(|a| a.topic.clone())
        .or_else(|| source_kafka.as_ref().map(|k| k.topic.clone()))
        .unwrap_or_else(|| name.clone());
    let subject = raw
        .schema
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("{topic}-value"));
    let (catalog_kind, catalog_uri, warehouse) = catalog(&raw)?;
    if raw.table.namespace.trim().is_empty() {
        return Err(ConfigError::invalid(
            "table",
            "namespace",
            "must not be empty",
        ));
    }
    for level in raw.table.namespace.split('.') {
        identifier("namespace", level).map_err(|why| {
            ConfigError::invalid(
                "table",
                "namespace",
                format!(
                    "{:?}: {why} (levels are separated by dots)",
                    raw.table.namespace
                ),
            )
        })?;
    }
    let table = required(raw.table.name.as_ref(), "table", "name", "e.g. \"orders\"")?;
    let dlq_table = raw
        .table
        .dlq_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{table}_dlq"));
    if dlq_table == table {
        return Err(ConfigError::invalid(
            "table",
            "dlq_name",
            "must differ from [table] name",
        ));
    }
    let late_table = raw
        .table
        .late_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{table}_late"));
    if late_table == table || late_table == dlq_table {
        return Err(ConfigError::invalid(
            "table",
            "late_name",
            "must differ from [table] name and dlq_name",
        ));
    }
    let quarantine_table = raw
        .table
        .quarantine_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{table}_quarantine"));
    if [&table, &dlq_table, &late_table].contains(&&quarantine_table) {
        return Err(ConfigError::invalid(
            "table",
            "quarantine_name",
            "must differ from [table] name, dlq_name and late_name",
        ));
    }
    // Table names become catalog rows and warehouse paths (`<warehouse>/<namespace>/<name>`):
    // each, given or derived from `name`, must be a plain identifier.
    for (key, value, given) in [
        ("name", &table, true),
        ("dlq_name", &dlq_table, raw.table.dlq_name.is_some()),
        ("late_name", &late_table, raw.table.late_name.is_some()),
        (
            "quarantine_name",
            &quarantine_table,
            raw.table.quarantine_name.is_some(),
        ),
    ] {
        identifier(key, value).map_err(|why| {
            let key_named = if given { key } else { "name" };
            let derived = if given {
                String::new()
            } else {
                format!(" (the derived {key})")
            };
            ConfigError::invalid("table", key_named, format!("{value:?}{derived}: {why}"))
        })?;
    }
    let late_policy = match raw.event_time.late_policy.trim() {
        "append" => LatePolicy::Append,
        "late_table" => LatePolicy::LateTable,
        other => {
            return Err(ConfigError::invalid(
                "event_time",
                "late_policy",
                format!("{other:?}: expected \"append\" or \"late_table\""),
            ));
        }
    };
    let partition_by = raw
        .table
        .partition_by
        .iter()
        .map(|s| parse_partition(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut kafka_metadata = Vec::new();
    for text in &raw.table.kafka_metadata {
        let attribute = text
            .parse::<KafkaMetadata>()
            .map_err(|why| ConfigError::invalid("table", "kafka_metadata", why))?;
        if kafka_metadata.contains(&attribute) {
            return Err(ConfigError::invalid(
                "table",
                "kafka_metadata",
                format!("{text:?} is listed twice"),
            ));
        }
        kafka_metadata.push(attribute);
    }
    kafka_metadata.sort();
    positive("table", "target_file_size", raw.table.target_file_size)?;
    positive("table", "writers", raw.table.writers)?;
    if raw.metrics.stall_after.is_zero() {
        return Err(ConfigError::invalid(
            "metrics",
            "stall_after",
            "must be greater than 0, e.g. \"5m\"",
        ));
    }
    positive(
        "metrics",
        "max_connections",
        raw.metrics.max_connections as u64,
    )?;
    if raw.metrics.request_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "metrics",
            "request_timeout",
            "must be greater than 0, e.g. \"10s\"",
        ));
    }
    if raw.commit.interval.is_zero() {
        return Err(ConfigError::invalid(
            "commit",
            "interval",
            "must be greater than 0, e.g. \"60s\"",
        ));
    }
    positive("commit", "rows", raw.commit.rows)?;
    positive("commit", "bytes", raw.commit.bytes)?;
    positive("commit", "max_attempts", u64::from(raw.commit.max_attempts))?;
    if raw.dedup.window < 0 {
        return Err(ConfigError::invalid(
            "dedup",
            "window",
            "must not be negative (0 turns deduplication off)",
        ));
    }
    if raw.event_time.column.trim().is_empty() {
        return Err(ConfigError::invalid(
            "event_time",
            "column",
            "must not be empty",
        ));
    }
    positive("replay", "parallelism", raw.replay.parallelism as u64)?;
    positive("replay", "batch_rows", raw.replay.batch_rows as u64)?;
    positive(
        "replay",
        "fetch_concurrency",
        raw.replay.fetch_concurrency as u64,
    )?;
    positive(
        "replay",
        "fetch_buffer_bytes",
        raw.replay.fetch_buffer_bytes,
    )?;
    positive(
        "maintenance",
        "retain_last",
        raw.maintenance.retain_last as u64,
    )?;
    let metrics_listen = raw
        .metrics
        .listen
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| {
            ConfigError::invalid(
                "metrics",
                "listen",
                format!(
                    "{:?} is not an ip:port address; expected e.g. \"127.0.0.1:9464\"",
                    raw.metrics.listen
                ),
            )
        })?;
    let (logic_entry, logic_settings) = self::logic(&raw, &logic, registry)?;
    let quality =
        crate::quality::quality(&raw.quality, &logic_entry, raw.event_time.column.trim())?;
    Ok(PipelineConfig {
        quality,
        commit_interval: raw.commit.interval,
        name,
        logic: logic_entry.name.to_string(),
        logic_entry,
        logic_settings,
        source_archive,
        source_kafka,
        schema,
        subject,
        catalog_kind,
        catalog_uri,
        warehouse,
        table,
        dlq_table,
        late_policy,
        late_table,
        quarantine_table,
        partition_by,
        kafka_metadata,
        metrics_listen,
        raw,
    })
}
