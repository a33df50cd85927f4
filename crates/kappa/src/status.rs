//! `kappa status`: the pipeline's state, read from the table alone.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use kappa_core::Classify;
use kappa_iceberg::state::StateOrigin;
use kappa_iceberg::{TableState, summary};
use serde_json::json;

use crate::cli::ConfigArgs;
use crate::{Failure, output};

fn time(micros: Option<i64>) -> String {
    micros
        .and_then(DateTime::from_timestamp_micros)
        .map_or("-".into(), |t| t.to_rfc3339())
}

/// `kappa status`.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    let (config, pipeline) =
        crate::replay::open_configured(&args, kappa_pipeline::Access::Read).await?;
    let table = pipeline.main.table();
    let state: &TableState = pipeline.main.state();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let freshness = state.max_event_time.map(|m| (now_us - m) / 1_000_000);
    let history = kappa_iceberg::history::main_history(table)
        .await
        .map_err(|e| Failure::from_kind(e.kind(), e.to_string()))?;
    let commits: Vec<serde_json::Value> = history
        .iter()
        .take(5)
        .map(|s| {
            let p = &s.summary;
            json!({
                "snapshot_id": s.snapshot_id,
                "committed_at": DateTime::from_timestamp_millis(s.timestamp_ms).map(|t| t.to_rfc3339()),
                "pipeline": p.get(summary::PIPELINE),
                "commit_id": p.get(summary::COMMIT_ID),
                "added_records": p.get("added-records"),
                "input": p.get(summary::INPUT),
            })
        })
        .collect();
    // Every commit's counts, the expired ones' from the history archive.
    let dead = summary::dead_letter_counts(&config.name, history.iter().map(|s| &s.summary));
    let kafka = match &config.source_kafka {
        Some(kafka) => Some(consumer_lag(kafka, &state.position).await),
        None => None,
    };
    if args.json() {
        output::line(
            &json!({
                "table": format!("{}.{}", config.raw.table.namespace, config.table),
                "snapshot_id": state.snapshot_id,
                "position_stored_in": stored_in(state),
                "skipped": state.skipped.iter().map(|(tp, r)| (tp.to_string(), [r.start, r.end])).collect::<std::collections::BTreeMap<_, _>>(),
                "moves": state.moves.iter().map(|m| json!({"partition": m.partition.to_string(), "from": m.from, "to": m.to, "at": time(Some(m.at_ms * 1000))})).collect::<Vec<_>>(),
                "offsets": state.position.iter().map(|(tp, n)| (tp.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
                "watermark": time(state.watermark),
                "max_event_time": time(state.max_event_time),
                "freshness_lag_seconds": freshness,
                "dlq_offsets": pipeline.dlq.state().position.iter().map(|(tp, n)| (tp.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
                "dead_letters": {
                    "total": dead.total,
                    "undecodable": dead.undecodable,
                    "unmappable_schema": dead.unmappable_schema,
                    "rejected": dead.rejected,
                    "unclassified": dead.unclassified,
                    "table": format!("{}.{}", config.raw.table.namespace, config.dlq_table),
                },
                "last_commits": commits,
                "kafka": kafka.as_ref().map(|k| match k {
                    Ok(partitions) => json!({ "partitions": partitions.iter().map(|p| json!({
                        "partition": p.partition,
                        "committed": p.committed,
                        "low_watermark": p.low,
                        "high_watermark": p.high,
                        "lag": p.lag,
                        "out_of_range": p.out_of_range,
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
    output::line(&format!("  position in      {}", stored_in(state)));
    for (tp, next) in state.position.iter() {
        output::line(&format!("  {tp:<24} next offset {next}"));
    }
    for (tp, range) in &state.skipped {
        output::line(&format!(
            "  {tp:<24} offsets {range} skipped on purpose (never ingested)"
        ));
    }
    for m in &state.moves {
        let what = if m.to > m.from {
            format!(
                "offsets {}..{} skipped by an operator (never ingested)",
                m.from, m.to
            )
        } else {
            format!("rewound by an operator from {} to {}", m.from, m.to)
        };
        output::line(&format!(
            "  {:<24} {what}, {}",
            m.partition.to_string(),
            time(Some(m.at_ms * 1000))
        ));
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
    output::line(&format!(
        "  dead letters     {} -> {}.{}",
        dead.describe(),
        config.raw.table.namespace,
        config.dlq_table
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
                if let Some(problem) = &p.out_of_range {
                    output::line(&format!("      OUT OF RANGE: {problem}"));
                }
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

/// Where the table keeps the pipeline's position.
fn stored_in(state: &TableState) -> String {
    match state.origin {
        StateOrigin::Property => "table property kappa.state.<pipeline>".into(),
        StateOrigin::Snapshot(id) => format!(
            "snapshot {id}'s summary (written before the table property; the next commit moves it there)"
        ),
        StateOrigin::None => "none (nothing committed yet)".into(),
    }
}

/// One partition's lag: what the broker has against what the table holds.
struct PartitionLag {
    partition: i32,
    committed: Option<i64>,
    low: i64,
    high: i64,
    lag: i64,
    /// The table's offset is outside what the topic holds: nothing the pipeline reads next can be
    /// trusted to continue the table (the topic was recreated or truncated, or retention passed
    /// the table's position).
    out_of_range: Option<String>,
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
                low: p.low,
                high: p.high,
                lag: (p.high - committed.unwrap_or(p.low)).max(0),
                out_of_range: committed
                    .and_then(|next| kappa_source_kafka::out_of_range(next, p.low, p.high)),
            }
        })
        .collect())
}
