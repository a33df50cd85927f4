//! `kappa replay`: flags → a replay request for `kappa_pipeline::replay` → run summary.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use kappa_config::PipelineConfig;
use kappa_metrics::{Condition, Health};
use kappa_pipeline::{Access, ReplayReport, ReplayRequest};
use kappa_source_replay::{PartitionFilter, TimeWindow};

use crate::cli::ReplayArgs;
use crate::endpoint::PipelineEndpoint;
use crate::shutdown::Shutdown;
use crate::{Failure, exit, output};

fn usage(message: String) -> Failure {
    Failure {
        message,
        code: exit::USAGE,
    }
}

/// Loads the configuration of a command that works on existing tables (`kappa status`, `kappa
/// quality ...`) and opens its pipeline ([`kappa_pipeline::open`]): a misspelt `[table]` name
/// is an error (exit 2) naming the table.
pub async fn open_configured(
    args: &crate::cli::ConfigArgs,
    access: Access,
) -> Result<(PipelineConfig, kappa_runtime::Pipeline), Failure> {
    let config = args.load()?;
    let pipeline = kappa_pipeline::open(&config, Some(&args.config), access).await?;
    Ok((config, pipeline))
}

/// Runs a replay of the configured archive; `endpoint`, when given, learns when the table state
/// is loaded.
pub async fn execute(
    config: &PipelineConfig,
    registry: std::sync::Arc<dyn kappa_schema::SchemaRegistry>,
    request: &ReplayRequest,
    endpoint: Option<&PipelineEndpoint>,
) -> Result<ReplayReport, Failure> {
    let loaded = |max_event_time| {
        if let Some(endpoint) = endpoint {
            endpoint.state_loaded(max_event_time);
        }
    };
    Ok(kappa_pipeline::replay(config, registry, request, loaded).await?)
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
    let registry = kappa_pipeline::schema_registry(&config, Some(&args.config.config))?;
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
    let request = ReplayRequest {
        filter,
        window,
        first_commit,
    };
    let result = execute(&config, registry, &request, endpoint.as_ref()).await;
    let linger = config.raw.metrics.linger;
    // Listening before the summary is printed: whoever reads it may signal at once.
    let shutdown = (endpoint.is_some() && !linger.is_zero()).then(Shutdown::listen);
    match &result {
        Ok(report) if args.config.json() => {
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
        use kappa_source_replay::ArchiveLimits;
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
