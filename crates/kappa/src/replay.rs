//! `kappa replay`: config → archive source + orders logic + committers → run summary.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kappa_config::{CatalogKind, PartitionTransform, PipelineConfig, S3Section, SchemaSource};
use kappa_core::Classify;
use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{CatalogConfig, PartitionField};
use kappa_logic::BoxedLogic;
use kappa_metrics::{Condition, Health};
use kappa_runtime::{CommitPolicy, PipelineSpec, RunSummary, open_pipeline, run_pipeline};
use kappa_schema::{
    ConfluentRegistry, DirectoryRegistry, RegistryOptions, SchemaError, SchemaRegistry,
    TableMapping,
};
use kappa_source_replay::{
    ArchiveLimits, ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, S3Options,
    TimeWindow, open_store,
};

use crate::cli::ReplayArgs;
use crate::endpoint::PipelineEndpoint;
use crate::shutdown::Shutdown;
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

fn usage(message: String) -> Failure {
    Failure {
        message,
        code: exit::USAGE,
    }
}

/// Loads the schema registry the config names; a relative `dir` is tried against the working
/// directory, then against the config file's directory.
pub fn registry(
    config: &PipelineConfig,
    config_path: Option<&Path>,
) -> Result<Arc<dyn SchemaRegistry>, Failure> {
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
                .map_err(|e| usage(format!("[schema] dir: {e}")))
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
                    SchemaError::Read { .. } => usage(format!("[schema] ca_file: {e}")),
                    _ => usage(format!("[schema] url: {e}")),
                })
        }
    }
}

/// The table mapping from the subject's history: the newest version reads, and every version
/// in order fixes the columns' field ids (see `TableMapping::from_history`).
pub async fn mapping(
    config: &PipelineConfig,
    registry: &dyn SchemaRegistry,
) -> Result<Arc<TableMapping>, Failure> {
    let versions = registry
        .versions(&config.subject)
        .await
        .map_err(|e| Failure::from_kind(e.kind(), format!("[schema] subject: {e}")))?;
    let texts: Vec<&str> = versions.iter().map(|v| v.json.as_str()).collect();
    TableMapping::from_history(&texts)
        .map(Arc::new)
        .map_err(|e| usage(format!("[schema] subject {}: {e}", config.subject)))
}

pub fn s3_options(s3: &S3Section) -> S3Options {
    S3Options {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.as_ref().map(|s| s.0.clone()),
        allow_http: s3.allow_http,
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
    if props.contains_key("s3.endpoint") {
        props.insert("s3.path-style-access".into(), "true".into());
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
        limits: ArchiveLimits {
            max_object_bytes: limits.max_object_bytes,
            max_block_bytes: usize::try_from(limits.max_block_bytes).unwrap_or(usize::MAX),
            max_inflated_bytes: usize::try_from(limits.max_inflated_bytes).unwrap_or(usize::MAX),
        },
    }
}

/// What a command that opens existing tables may do to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (`kappa status`, `kappa quality report`): a read-only catalog connection.
    Read,
    /// Set a property of the existing main table (`kappa quality override`).
    SetProperty,
}

/// Loads the configuration of a command that works on existing tables (`kappa status`, `kappa
/// quality ...`) and opens its pipeline: the schema history, the mapping and the tables as they
/// are. Never creates a catalog, namespace or table and never evolves a schema: a misspelt
/// `[table]` name is an error (exit 2) naming the table.
pub async fn open_configured(
    args: &crate::cli::ConfigArgs,
    access: Access,
) -> Result<(PipelineConfig, kappa_runtime::Pipeline), Failure> {
    let config = args.load()?;
    let registry = registry(&config, Some(&args.config))?;
    let mapping = mapping(&config, registry.as_ref()).await?;
    let spec = pipeline_spec(&config, mapping)?;
    let pipeline = match access {
        Access::Read => kappa_runtime::open_pipeline_read_only(spec).await,
        Access::SetProperty => kappa_runtime::open_existing_pipeline(spec).await,
    }
    .map_err(fail)?;
    Ok((config, pipeline))
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

/// The runtime's view of a validated config; a usage error for what this build cannot run.
pub fn pipeline_spec(
    config: &PipelineConfig,
    mapping: Arc<TableMapping>,
) -> Result<PipelineSpec, Failure> {
    let catalog = catalog_config(config);
    if !catalog.kind.built_in() {
        return Err(usage(format!(
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
            ..WriterOptions::default()
        },
        commit: CommitPolicy {
            interval: raw.commit.interval,
            rows: raw.commit.rows as usize,
            bytes: raw.commit.bytes as usize,
            max_attempts: raw.commit.max_attempts,
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
pub fn build_logic(config: &PipelineConfig) -> Result<BoxedLogic, Failure> {
    config
        .logic_entry
        .build(&config.logic_settings)
        .map_err(|e| Failure::from_kind(e.kind(), e.to_string()))
}

/// What a replay did, plus the plan it ran.
#[derive(Debug)]
pub struct ReplayReport {
    /// Run counters.
    pub summary: RunSummary,
    /// Files planned.
    pub files: usize,
    /// Bytes planned.
    pub bytes: u64,
    /// Partitions replayed.
    pub partitions: usize,
    /// The main table after the run.
    pub table: kappa_iceberg::TableStats,
}

/// Runs a replay of the configured archive; `endpoint`, when given, learns when the table state
/// is loaded.
pub async fn execute(
    config: &PipelineConfig,
    registry: Arc<dyn SchemaRegistry>,
    filter: PartitionFilter,
    window: TimeWindow,
    first_commit: kappa_iceberg::FirstCommit,
    endpoint: Option<&PipelineEndpoint>,
) -> Result<ReplayReport, Failure> {
    let logic = build_logic(config)?;
    let mapping = mapping(config, registry.as_ref()).await?;
    let (url, topic, s3) = config.archive().map_err(Failure::config)?;
    let (store, prefix) = open_store(&url, &s3_options(s3)).map_err(fail)?;
    let plan = ArchivePlan::list(store.as_ref(), &url, &prefix, &topic, &filter, &window)
        .await
        .map_err(fail)?;
    let (files, bytes, partitions) = (plan.files(), plan.bytes(), plan.partitions.len());
    let options = replay_options(config, topic);
    let source = ArchiveSource::new(store, plan, options, mapping.clone(), registry);
    let spec = PipelineSpec {
        first_commit,
        ..pipeline_spec(config, mapping)?
    };
    let pipeline = open_pipeline(spec).await.map_err(fail)?;
    if let Some(endpoint) = endpoint {
        endpoint.state_loaded(pipeline.main.state().max_event_time);
    }
    let catalog = pipeline.catalog.clone();
    let ident = pipeline.main.table().identifier().clone();
    let summary = run_pipeline(pipeline, source, logic).await.map_err(fail)?;
    let table = catalog.load_table(&ident).await.map_err(|e| Failure {
        message: format!("reloading {ident} after the run: {e}"),
        code: exit::FAILURE,
    })?;
    let table = kappa_iceberg::table_stats(&table)
        .await
        .map_err(|e| Failure {
            message: format!("reading {ident}'s files: {e}"),
            code: exit::FAILURE,
        })?;
    Ok(ReplayReport {
        summary,
        files,
        bytes,
        partitions,
        table,
    })
}

fn parse_time(flag: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, Failure> {
    value
        .as_ref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .map_err(|_| usage(format!("--{flag} {v:?}: expected RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")))
        })
        .transpose()
}

/// Parses `--shard i/n`: (i, n) with 0 <= i < n.
pub fn shard_of(text: &str) -> Result<(u32, u32), Failure> {
    let bad = || {
        usage(format!(
            "--shard {text:?}: expected i/n with 0 <= i < n, e.g. 1/4"
        ))
    };
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (index, count): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok((index, count))
}

/// Parses `--shard i/n` as the partitions it replays.
fn parse_shard(text: &str) -> Result<PartitionFilter, Failure> {
    let (index, count) = shard_of(text)?;
    Ok(PartitionFilter::Shard { index, count })
}

/// `kappa replay`.
///
/// When `[metrics] listen` is set (in the file, `KAPPA__METRICS__LISTEN` or `--set`; the Helm
/// chart's Job sets it), serves `/metrics`, `/healthz` and `/readyz` there while it runs (ready
/// once the table state is loaded), and for `[metrics] linger` after the run (the summary is
/// printed first), so that a backfill's final rows, progress and quality verdicts can be
/// scraped. Left at its default, a replay serves nothing: it must not take the port of a
/// `kappa run` on the same host.
pub async fn run(args: ReplayArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let registry = registry(&config, Some(&args.config.config))?;
    let filter = match (&args.shard, args.partitions.is_empty()) {
        (Some(shard), _) => parse_shard(shard)?,
        (None, false) => {
            PartitionFilter::Only(args.partitions.iter().copied().collect::<BTreeSet<_>>())
        }
        (None, true) => PartitionFilter::All,
    };
    let window = TimeWindow {
        start: parse_time("start", &args.start)?,
        end: parse_time("end", &args.end)?,
    };
    let endpoint = if config.raw.is_set("metrics.listen") {
        let health = Health::new([(Condition::TableState, "loading the table state")]);
        Some(PipelineEndpoint::start(&config, health, None).await?)
    } else {
        None
    };
    let first_commit = if args.accept_missing_history {
        kappa_iceberg::FirstCommit::SkipMissingHistory
    } else {
        kappa_iceberg::FirstCommit::AtZero
    };
    let result = execute(
        &config,
        registry,
        filter,
        window,
        first_commit,
        endpoint.as_ref(),
    )
    .await;
    let linger = config.raw.metrics.linger;
    // Listening before the summary is printed: whoever reads it may signal at once.
    let shutdown = (endpoint.is_some() && !linger.is_zero()).then(Shutdown::listen);
    match &result {
        Ok(report) if args.config.json => {
            output::line(&crate::demo::summary_json(report, None).to_string());
        }
        Ok(report) => crate::demo::print_summary(&config, report),
        Err(failure) => {
            if let Some(endpoint) = &endpoint {
                endpoint.failed(failure);
                if shutdown.is_some() && failure.code != exit::BLOCKED {
                    endpoint.health().set_failed(failure.message.clone());
                }
            }
        }
    }
    if let Some(endpoint) = endpoint {
        if let Some(shutdown) = shutdown {
            endpoint.linger(linger, shutdown).await;
        }
        endpoint.stop().await;
    }
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_validate() {
        assert_eq!(
            parse_shard("1/4").unwrap(),
            PartitionFilter::Shard { index: 1, count: 4 }
        );
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("x").is_err());
        assert_eq!(parse_shard("0/0").unwrap_err().code, exit::USAGE);
    }

    #[test]
    fn the_archive_limit_defaults_of_the_config_and_the_source_agree() {
        let config = kappa_config::ArchiveLimitsConfig::default();
        let source = ArchiveLimits::default();
        assert_eq!(
            (
                config.max_object_bytes,
                config.max_block_bytes,
                config.max_inflated_bytes
            ),
            (
                source.max_object_bytes,
                source.max_block_bytes as u64,
                source.max_inflated_bytes as u64
            )
        );
    }
}
