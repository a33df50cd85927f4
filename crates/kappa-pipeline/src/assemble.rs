//! A validated config → the parts of a pipeline: schema registry and table mapping, catalog,
//! the runtime's [`PipelineSpec`], the archive source's options and the logic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kappa_config::{CatalogKind, PartitionTransform, PipelineConfig, S3Section, SchemaSource};
use kappa_core::Classify;
use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{CatalogConfig, PartitionField};
use kappa_logic::BoxedLogic;
use kappa_runtime::{CommitPolicy, PipelineSpec};
use kappa_schema::{
    ConfluentRegistry, DirectoryRegistry, RegistryOptions, SchemaError, SchemaRegistry,
    TableMapping,
};
use kappa_source_replay::{ArchiveLimits, ReplayOptions, S3Options};

use crate::error::PipelineError;

/// Loads the schema registry the config names; a relative `dir` is tried against the working
/// directory, then against the config file's directory.
pub fn schema_registry(
    config: &PipelineConfig,
    config_path: Option<&Path>,
) -> Result<Arc<dyn SchemaRegistry>, PipelineError> {
    match &config.schema {
        SchemaSource::Dir(dir) => {
            let mut path = PathBuf::from(dir);
            if path.is_relative()
                && !path.is_dir()
                && let Some(base) = config_path.and_then(Path::parent)
            {
                path = base.join(dir);
            }
            DirectoryRegistry::open(&path)
                .map(|r| Arc::new(r) as Arc<dyn SchemaRegistry>)
                .map_err(|e| PipelineError::user(format!("[schema] dir: {e}")))
        }
        SchemaSource::Url(client) => {
            let options = RegistryOptions {
                username: client.username.clone(),
                password: client.password.as_ref().map(|p| p.expose().to_string()),
                ca_file: client.ca_file.clone(),
                timeout: client.timeout,
                max_attempts: client.max_attempts,
                max_response_bytes: client.max_response_bytes,
                ..RegistryOptions::new(client.url.clone())
            };
            ConfluentRegistry::new(options)
                .map(|r| Arc::new(r) as Arc<dyn SchemaRegistry>)
                .map_err(|e| match e {
                    SchemaError::Read { .. } => {
                        PipelineError::user(format!("[schema] ca_file: {e}"))
                    }
                    _ => PipelineError::user(format!("[schema] url: {e}")),
                })
        }
    }
}

/// The table mapping from the subject's history: the newest version reads, and every version
/// in order fixes the columns' field ids (see `TableMapping::from_history`).
pub async fn table_mapping(
    config: &PipelineConfig,
    registry: &dyn SchemaRegistry,
) -> Result<Arc<TableMapping>, PipelineError> {
    let versions = registry
        .versions(&config.subject)
        .await
        .map_err(|e| PipelineError {
            kind: e.kind(),
            message: format!("[schema] subject: {e}"),
        })?;
    let texts: Vec<&str> = versions.iter().map(|v| v.json.as_str()).collect();
    TableMapping::from_history_with(&texts, &config.kafka_metadata)
        .map(Arc::new)
        .map_err(|e| PipelineError::user(format!("[schema] subject {}: {e}", config.subject)))
}

/// The archive store's S3 settings of a `[source.archive]` section.
pub fn s3_options(s3: &S3Section) -> S3Options {
    S3Options {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.as_ref().map(|s| s.0.clone()),
        allow_http: s3.allow_http,
        path_style: s3.path_style,
    }
}

/// Iceberg FileIO properties for an `s3://` warehouse: the config's keys, then (with
/// `env_fallback`) the `AWS_*` env. A REST catalog takes none from the env: its properties win
/// over the table config the catalog sends (vended credentials, its endpoint), and the env's
/// keys are usually the archive's.
fn warehouse_properties(s3: &S3Section, env_fallback: bool) -> HashMap<String, String> {
    let mut props = HashMap::new();
    let env = |k: &str| std::env::var(k).ok().filter(|_| env_fallback);
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            props.insert(key.to_string(), v);
        }
    };
    set(
        "s3.endpoint",
        s3.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")),
    );
    set(
        "s3.region",
        s3.region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION")),
    );
    set(
        "s3.access-key-id",
        s3.access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID")),
    );
    set(
        "s3.secret-access-key",
        s3.secret_access_key
            .as_ref()
            .map(|s| s.0.clone())
            .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
    );
    // Path style by default with an endpoint (MinIO, SeaweedFS); `path_style` decides either way.
    if let Some(path_style) = s3
        .path_style
        .or(props.contains_key("s3.endpoint").then_some(true))
    {
        props.insert("s3.path-style-access".into(), path_style.to_string());
    }
    props
}

fn transform(t: PartitionTransform) -> iceberg::spec::Transform {
    use iceberg::spec::Transform;
    match t {
        PartitionTransform::Identity => Transform::Identity,
        PartitionTransform::Year => Transform::Year,
        PartitionTransform::Month => Transform::Month,
        PartitionTransform::Day => Transform::Day,
        PartitionTransform::Hour => Transform::Hour,
        PartitionTransform::Bucket(n) => Transform::Bucket(n),
        PartitionTransform::Truncate(n) => Transform::Truncate(n),
    }
}

/// The archive source's options of a validated config, for `topic`.
pub fn replay_options(config: &PipelineConfig, topic: String) -> ReplayOptions {
    let limits = config
        .source_archive
        .as_ref()
        .map(|archive| archive.limits)
        .unwrap_or_default();
    ReplayOptions {
        topic,
        parallelism: config.raw.replay.parallelism,
        batch_rows: config.raw.replay.batch_rows,
        fetch_concurrency: config.raw.replay.fetch_concurrency,
        fetch_buffer_bytes: config.raw.replay.fetch_buffer_bytes,
        limits: ArchiveLimits {
            max_object_bytes: limits.max_object_bytes,
            max_block_bytes: usize::try_from(limits.max_block_bytes).unwrap_or(usize::MAX),
            max_inflated_bytes: usize::try_from(limits.max_inflated_bytes).unwrap_or(usize::MAX),
        },
    }
}

/// The catalog of a validated config.
pub fn catalog_config(config: &PipelineConfig) -> CatalogConfig {
    let catalog = &config.raw.catalog;
    let rest = config.catalog_kind == CatalogKind::Rest;
    let mut properties = warehouse_properties(&catalog.s3, !rest);
    let kind = match config.catalog_kind {
        CatalogKind::Sql => kappa_iceberg::CatalogType::Sql,
        CatalogKind::Glue | CatalogKind::S3Tables => {
            properties.extend(catalog.properties.0.clone());
            if config.catalog_kind == CatalogKind::Glue {
                kappa_iceberg::CatalogType::Glue
            } else {
                kappa_iceberg::CatalogType::S3Tables
            }
        }
        CatalogKind::Rest => {
            // The client's own property names (iceberg-catalog-rest, PyIceberg, Java).
            properties.extend(catalog.properties.0.clone());
            let keys = [
                (
                    "credential",
                    catalog.credential.as_ref().map(|s| s.expose()),
                ),
                ("token", catalog.token.as_ref().map(|s| s.expose())),
                ("scope", catalog.scope.as_deref()),
                ("oauth2-server-uri", catalog.oauth2_server_uri.as_deref()),
                ("prefix", catalog.prefix.as_deref()),
            ];
            for (key, value) in keys {
                if let Some(value) = value {
                    properties.insert(key.to_string(), value.to_string());
                }
            }
            kappa_iceberg::CatalogType::Rest
        }
    };
    CatalogConfig {
        name: catalog.name.clone(),
        kind,
        uri: config.catalog_uri.clone(),
        warehouse: config.warehouse.clone(),
        properties,
    }
}

/// The columns whose values are distinct row to row, written without a Parquet dictionary (by
/// the pipeline and by compaction alike): the dedup key, which repeats only where a duplicate
/// escaped the dedup window, and the Kafka offset, which repeats at most once per topic
/// partition in a file. A dictionary of either is interned value by value and then abandoned at
/// 1 MiB, or kept in a small file at more than the plain values.
pub fn distinct_columns(config: &PipelineConfig) -> Vec<String> {
    config
        .logic_settings
        .dedup_key
        .iter()
        .cloned()
        .chain([kappa_core::OFFSET_COLUMN.to_string()])
        .collect()
}

/// The runtime's view of a validated config; a usage error for what this build cannot run.
pub fn pipeline_spec(
    config: &PipelineConfig,
    mapping: Arc<TableMapping>,
) -> Result<PipelineSpec, PipelineError> {
    let catalog = catalog_config(config);
    if !catalog.kind.built_in() {
        return Err(PipelineError::user(format!(
            "[catalog] type = \"{}\": this kappa was built without the `aws` feature (the \
             release build and the container image have it: cargo build --release --features aws)",
            catalog.kind.as_str()
        )));
    }
    let raw = &config.raw;
    let topics = [
        config.source_archive.as_ref().map(|a| a.topic.clone()),
        config.source_kafka.as_ref().map(|k| k.topic.clone()),
    ];
    Ok(PipelineSpec {
        pipeline: config.name.clone(),
        topics: topics.into_iter().flatten().collect(),
        first_commit: kappa_iceberg::FirstCommit::AtZero,
        catalog,
        namespace: raw.table.namespace.clone(),
        table: config.table.clone(),
        dlq_table: config.dlq_table.clone(),
        partition_by: config
            .partition_by
            .iter()
            .map(|p| PartitionField {
                column: p.column.clone(),
                transform: transform(p.transform),
            })
            .collect(),
        writer: WriterOptions {
            target_file_size: raw.table.target_file_size as usize,
            writers: raw.table.writers as usize,
            distinct_columns: distinct_columns(config),
            ..WriterOptions::default()
        },
        commit: CommitPolicy {
            interval: raw.commit.interval,
            rows: raw.commit.rows as usize,
            bytes: raw.commit.bytes as usize,
            max_attempts: raw.commit.max_attempts,
            conflict_timeout: raw.commit.conflict_timeout,
        },
        // Only a dedup key needs the offsets before the resume position re-read at a restart.
        dedup_window: match config.logic_settings.dedup_key {
            Some(_) => raw.dedup.window,
            None => 0,
        },
        event_time_column: raw.event_time.column.clone(),
        allowed_lateness: raw.event_time.allowed_lateness,
        late_table: match config.late_policy {
            kappa_config::LatePolicy::Append => None,
            kappa_config::LatePolicy::LateTable => Some(config.late_table.clone()),
        },
        mapping,
        quality: kappa_quality::Quality::new(config.quality.clone()),
        quarantine_table: config
            .quality
            .uses(kappa_quality::Policy::Quarantine)
            .then(|| config.quarantine_table.clone()),
    })
}

/// The logic `[pipeline] logic` names, built from its settings; a setting that does not fit it
/// is a usage error naming the key.
pub fn build_logic(config: &PipelineConfig) -> Result<BoxedLogic, PipelineError> {
    config
        .logic_entry
        .build(&config.logic_settings)
        .map_err(PipelineError::from_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(endpoint: Option<&str>, path_style: Option<bool>) -> S3Section {
        S3Section {
            endpoint: endpoint.map(str::to_string),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            path_style,
        }
    }

    #[test]
    fn path_style_reaches_the_warehouse_file_io() {
        let style = |endpoint, path_style| {
            warehouse_properties(&section(endpoint, path_style), false)
                .get("s3.path-style-access")
                .cloned()
        };
        let endpoint = Some("http://127.0.0.1:8333");
        assert_eq!(style(endpoint, None).as_deref(), Some("true"));
        assert_eq!(style(endpoint, Some(false)).as_deref(), Some("false"));
        assert_eq!(style(None, Some(true)).as_deref(), Some("true"));
        assert_eq!(style(None, None), None);
        assert_eq!(
            s3_options(&section(None, Some(false))).path_style,
            Some(false)
        );
    }
}
