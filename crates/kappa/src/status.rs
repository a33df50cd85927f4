//! `kappa status`: the pipeline's state, read from the table alone.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use kappa_core::Classify;
use kappa_iceberg::state::ancestry;
use kappa_iceberg::{TableState, summary};
use serde_json::json;

use crate::cli::ConfigArgs;
use crate::{Failure, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

fn time(micros: Option<i64>) -> String {
    micros
        .and_then(DateTime::from_timestamp_micros)
        .map_or("-".into(), |t| t.to_rfc3339())
}

/// `kappa status`.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    let config = args.load()?;
    let registry = crate::replay::registry(&config, Some(&args.config))?;
    let mapping = crate::replay::mapping(&config, registry.as_ref()).await?;
    let pipeline = kappa_runtime::open_pipeline(crate::replay::pipeline_spec(&config, mapping)?)
        .await
        .map_err(fail)?;
    let table = pipeline.main.table();
    let state: &TableState = pipeline.main.state();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let freshness = state.max_event_time.map(|m| (now_us - m) / 1_000_000);
    let commits: Vec<serde_json::Value> = ancestry(table.metadata())
        .take(5)
        .map(|s| {
            let p = &s.summary().additional_properties;
            json!({
                "snapshot_id": s.snapshot_id(),
                "committed_at": DateTime::from_timestamp_millis(s.timestamp_ms()).map(|t| t.to_rfc3339()),
                "pipeline": p.get(summary::PIPELINE),
                "commit_id": p.get(summary::COMMIT_ID),
                "added_records": p.get("added-records"),
                "input": p.get(summary::INPUT),
            })
        })
        .collect();
    let kafka = match &config.source_kafka {
        Some(kafka) => Some(consumer_lag(kafka, &state.position).await),
        None => None,
    };
    if args.json {
        output::line(
            &json!({
                "table": format!("{}.{}", config.raw.table.namespace, config.table),
                "snapshot_id": state.snapshot_id,
                "offsets": state.position.iter().map(|(tp, n)| (tp.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
                "watermark": time(state.watermark),
                "max_event_time": time(state.max_event_time),
                "freshness_lag_seconds": freshness,
                "dlq_offsets": pipeline.dlq.state().position.iter().map(|(tp, n)| (tp.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
                "last_commits": commits,
                "kafka": kafka.as_ref().map(|k| match k {
                    Ok(partitions) => json!({ "partitions": partitions.iter().map(|p| json!({
                        "partition": p.partition,
                        "committed": p.committed,
                        "high_watermark": p.high,
                        "lag": p.lag,
                    })).collect::<Vec<_>>(), "total_lag": partitions.iter().map(|p| p.lag).sum::<i64>() }),
                    Err(e) => json!({ "error": e }),
                }),
            })
            .to_string(),
        );
        return Ok(());
    }
    output::line(&format!(
        "table {}.{} (pipeline {})",
        config.raw.table.namespace, config.table, config.name
    ));
    for (tp, next) in state.position.iter() {
        output::line(&format!("  {tp:<24} next offset {next}"));
    }
    output::line(&format!("  watermark        {}", time(state.watermark)));
    output::line(&format!(
        "  max event time   {}",
        time(state.max_event_time)
    ));
    output::line(&format!(
        "  freshness lag    {}",
        freshness.map_or("-".into(), |s| humantime::format_duration(
            std::time::Duration::from_secs(s.max(0) as u64)
        )
        .to_string())
    ));
    match &kafka {
        Some(Ok(partitions)) => {
            let total: i64 = partitions.iter().map(|p| p.lag).sum();
            output::line(&format!(
                "  consumer lag     {total} messages (broker high watermark − table offset)"
            ));
            for p in partitions {
                output::line(&format!(
                    "    partition {:<4} table {:>12}  broker {:>12}  lag {:>10}",
                    p.partition,
                    p.committed.map_or("-".into(), |c| c.to_string()),
                    p.high,
                    p.lag
                ));
            }
        }
        Some(Err(e)) => output::line(&format!("  consumer lag     unknown: {e}")),
        None => {}
    }
    output::line("  last commits");
    for c in commits {
        output::line(&format!("    {c}"));
    }
    Ok(())
}

/// One partition's lag: what the broker has against what the table holds.
struct PartitionLag {
    partition: i32,
    committed: Option<i64>,
    high: i64,
    lag: i64,
}

/// Lag per partition of `[source.kafka] topic`, from the brokers' high watermarks and the
/// table's offsets (never the group's). An unreachable broker is reported, not fatal: status
/// works from the table alone.
async fn consumer_lag(
    kafka: &kappa_config::KafkaConfig,
    position: &kappa_core::SourcePosition,
) -> Result<Vec<PartitionLag>, String> {
    let mut options = kappa_source_kafka::KafkaOptions::from_config(kafka);
    options.startup_timeout = std::time::Duration::from_secs(5);
    let topic = options.topic.clone();
    let offsets = tokio::task::spawn_blocking(move || {
        kappa_source_kafka::topic_offsets(&options, std::time::Duration::from_secs(5))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(offsets
        .into_iter()
        .map(|p| {
            let committed =
                position.next_offset(&kappa_core::TopicPartition::new(topic.clone(), p.partition));
            PartitionLag {
                partition: p.partition,
                committed,
                high: p.high,
                lag: (p.high - committed.unwrap_or(p.low)).max(0),
            }
        })
        .collect())
}
