//! Raw configuration → validated, typed configuration. Pure: no I/O.

use std::time::Duration;

use crate::error::ConfigError;
use crate::raw::{RawConfig, S3Section};

/// A partition transform of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTransform {
    /// The value itself.
    Identity,
    /// Year of a date/timestamp.
    Year,
    /// Month.
    Month,
    /// Day.
    Day,
    /// Hour.
    Hour,
    /// Hash bucket of N.
    Bucket(u32),
    /// Truncation to width N.
    Truncate(u32),
}

/// One `[table] partition_by` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Source column.
    pub column: String,
    /// Transform.
    pub transform: PartitionTransform,
}

/// Where schemas come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// Embedded file registry directory.
    Dir(String),
    /// Confluent-compatible registry URL.
    Url(String),
}

/// A validated pipeline configuration.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The raw values (for sections other stages read as they are).
    pub raw: RawConfig,
    /// `[pipeline] name`.
    pub name: String,
    /// `[table] name`.
    pub table: String,
    /// `[table] dlq_name` or `<name>_dlq`.
    pub dlq_table: String,
    /// Parsed `[table] partition_by`.
    pub partition_by: Vec<PartitionSpec>,
    /// `[schema]`.
    pub schema: SchemaSource,
    /// Schema subject.
    pub subject: String,
    /// `[catalog] uri` (a secret: may hold a password).
    pub catalog_uri: String,
    /// `[catalog] warehouse`.
    pub warehouse: String,
    /// `[commit] interval`.
    pub commit_interval: Duration,
}

impl PipelineConfig {
    /// The archive URL and topic, or an error naming the missing key.
    pub fn archive(&self) -> Result<(String, String, &S3Section), ConfigError> {
        let section = self.raw.source.archive.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "source.archive",
                "url",
                "missing: replay needs [source.archive] url and topic",
            )
        })?;
        let url = section.url.clone().ok_or_else(|| {
            ConfigError::invalid(
                "source.archive",
                "url",
                "missing; expected file:///path or s3://bucket/prefix",
            )
        })?;
        let topic = section
            .topic
            .clone()
            .ok_or_else(|| ConfigError::invalid("source.archive", "topic", "missing"))?;
        Ok((url, topic, &section.s3))
    }
}

pub(crate) fn validate(raw: RawConfig) -> Result<PipelineConfig, ConfigError> {
    let name = raw
        .pipeline
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                "pipeline",
                "name",
                "missing; it identifies this pipeline's commits in the table",
            )
        })?;
    let table = raw
        .table
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ConfigError::invalid("table", "name", "missing"))?;
    let dlq_table = raw
        .table
        .dlq_name
        .clone()
        .unwrap_or_else(|| format!("{table}_dlq"));
    if dlq_table == table {
        return Err(ConfigError::invalid(
            "table",
            "dlq_name",
            "must differ from [table] name",
        ));
    }
    let partition_by = raw
        .table
        .partition_by
        .iter()
        .map(|s| parse_partition(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(archive) = &raw.source.archive {
        if let Some(url) = &archive.url {
            check_url("source.archive", "url", url, &["file", "s3", "s3a"])?;
        }
        check_endpoint("source.archive", &archive.s3)?;
    }
    let schema = match (&raw.schema.dir, &raw.schema.url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "schema",
                "url",
                "set either dir or url, not both",
            ));
        }
        (_, Some(url)) => {
            check_url("schema", "url", url, &["http", "https"])?;
            SchemaSource::Url(url.clone())
        }
        (Some(dir), None) => SchemaSource::Dir(dir.clone()),
        (None, None) => SchemaSource::Dir("contracts".into()),
    };
    let topic = raw
        .source
        .archive
        .as_ref()
        .and_then(|a| a.topic.clone())
        .or_else(|| raw.source.kafka.as_ref().and_then(|k| k.topic.clone()))
        .unwrap_or_else(|| name.clone());
    let subject = raw
        .schema
        .subject
        .clone()
        .unwrap_or_else(|| format!("{topic}-value"));
    match raw.catalog.kind.as_str() {
        "sql" => {}
        "rest" => {
            return Err(ConfigError::invalid(
                "catalog",
                "type",
                "\"rest\" is not supported yet; use \"sql\" (SQLite or PostgreSQL)",
            ));
        }
        other => {
            return Err(ConfigError::invalid(
                "catalog",
                "type",
                format!("unknown catalog type {other:?}; expected sql | rest"),
            ));
        }
    }
    let catalog_uri = raw
        .catalog
        .uri
        .as_ref()
        .map(|s| s.0.clone())
        .ok_or_else(|| {
            ConfigError::invalid(
                "catalog",
                "uri",
                "missing; expected sqlite:///path/catalog.db or postgres://user:pass@host:5432/db",
            )
        })?;
    if !(catalog_uri.starts_with("sqlite:")
        || catalog_uri.starts_with("postgres://")
        || catalog_uri.starts_with("postgresql://"))
    {
        return Err(ConfigError::invalid(
            "catalog",
            "uri",
            "expected sqlite:///path/catalog.db or postgres://user:pass@host:5432/db",
        ));
    }
    let warehouse = raw.catalog.warehouse.clone().ok_or_else(|| {
        ConfigError::invalid(
            "catalog",
            "warehouse",
            "missing; expected file:///path or s3://bucket/prefix",
        )
    })?;
    check_url("catalog", "warehouse", &warehouse, &["file", "s3", "s3a"])?;
    check_endpoint("catalog", &raw.catalog.s3)?;
    let positive = |section: &str, key: &str, value: u64| {
        if value == 0 {
            Err(ConfigError::invalid(section, key, "must be greater than 0"))
        } else {
            Ok(())
        }
    };
    positive("commit", "rows", raw.commit.rows)?;
    positive("commit", "bytes", raw.commit.bytes)?;
    positive("commit", "max_attempts", u64::from(raw.commit.max_attempts))?;
    positive("table", "target_file_size", raw.table.target_file_size)?;
    positive("replay", "parallelism", raw.replay.parallelism as u64)?;
    positive("replay", "batch_rows", raw.replay.batch_rows as u64)?;
    if raw.commit.interval.is_zero() {
        return Err(ConfigError::invalid(
            "commit",
            "interval",
            "must be greater than 0",
        ));
    }
    if raw.dedup.window < 0 {
        return Err(ConfigError::invalid(
            "dedup",
            "window",
            "must not be negative",
        ));
    }
    Ok(PipelineConfig {
        commit_interval: raw.commit.interval,
        name,
        table,
        dlq_table,
        partition_by,
        schema,
        subject,
        catalog_uri,
        warehouse,
        raw,
    })
}

fn check_url(section: &str, key: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| {
        ConfigError::invalid(
            section,
            key,
            format!(
                "{value:?} is not a URL ({e}); expected {}",
                expected(schemes)
            ),
        )
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::invalid(
            section,
            key,
            format!(
                "unsupported scheme {:?}; expected {}",
                url.scheme(),
                expected(schemes)
            ),
        ));
    }
    Ok(())
}

fn expected(schemes: &[&str]) -> String {
    schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn check_endpoint(section: &str, s3: &S3Section) -> Result<(), ConfigError> {
    if let Some(endpoint) = &s3.endpoint {
        check_url(section, "endpoint", endpoint, &["http", "https"])?;
    }
    Ok(())
}

/// Parses `day(event_time)`, `bucket[16](user_id)`, `identity(x)`, or a bare column (identity).
fn parse_partition(text: &str) -> Result<PartitionSpec, ConfigError> {
    let bad = |message: String| ConfigError::invalid("table", "partition_by", message);
    let text = text.trim();
    let Some((head, rest)) = text.split_once('(') else {
        if text.chars().all(|c| c.is_alphanumeric() || c == '_') && !text.is_empty() {
            return Ok(PartitionSpec {
                column: text.to_string(),
                transform: PartitionTransform::Identity,
            });
        }
        return Err(bad(format!(
            "{text:?} is not a transform; expected e.g. day(event_time)"
        )));
    };
    let column = rest
        .strip_suffix(')')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad(format!("{text:?}: expected transform(column)")))?;
    let param = |name: &str| -> Result<Option<u32>, ConfigError> {
        match head.strip_prefix(name) {
            Some(p) if p.starts_with('[') && p.ends_with(']') => p[1..p.len() - 1]
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| bad(format!("{text:?}: {name}[N] needs a positive integer N"))),
            _ => Ok(None),
        }
    };
    let transform = match head {
        "identity" => PartitionTransform::Identity,
        "year" => PartitionTransform::Year,
        "month" => PartitionTransform::Month,
        "day" => PartitionTransform::Day,
        "hour" => PartitionTransform::Hour,
        _ => {
            if let Some(n) = param("bucket")? {
                PartitionTransform::Bucket(n)
            } else if let Some(n) = param("truncate")? {
                PartitionTransform::Truncate(n)
            } else {
                return Err(bad(format!(
                    "unknown transform {head:?} in {text:?}; expected identity|year|month|day|hour|bucket[N]|truncate[N]"
                )));
            }
        }
    };
    Ok(PartitionSpec {
        column: column.to_string(),
        transform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_partition_transforms() {
        let p = parse_partition("day(event_time)").unwrap();
        assert_eq!(
            p,
            PartitionSpec {
                column: "event_time".into(),
                transform: PartitionTransform::Day
            }
        );
        assert_eq!(
            parse_partition("bucket[16](user_id)").unwrap().transform,
            PartitionTransform::Bucket(16)
        );
        assert_eq!(
            parse_partition("truncate[4](order_id)").unwrap().transform,
            PartitionTransform::Truncate(4)
        );
        assert_eq!(
            parse_partition("currency").unwrap().transform,
            PartitionTransform::Identity
        );
        let err = parse_partition("dya(event_time)").unwrap_err().to_string();
        assert_eq!(
            err,
            "config: [table] partition_by: unknown transform \"dya\" in \"dya(event_time)\"; expected identity|year|month|day|hour|bucket[N]|truncate[N]"
        );
        assert!(parse_partition("bucket[0](x)").is_err());
        assert!(parse_partition("day()").is_err());
    }
}
