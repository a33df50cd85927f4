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
    let dead = dead_letter_counts(&config.name, history.iter().map(|s| &s.summary));
    let kafka = match &config.source_kafka {
        Some(kafka) => Some(consumer_lag(kafka, &state.position).await),
        None => None,
    };
    if args.json {
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

/// A pipeline's dead letters by kind, summed over the snapshot summaries of its commits to the
/// main table: each commit counts the dead letters of its own input, so the sum is exact over
/// the snapshots the table still has (expiring snapshots drops their counts from the sum).
#[derive(Debug, Default, PartialEq, Eq)]
struct DeadLetterCounts {
    /// `kappa.dead-lettered`, all kinds.
    total: u64,
    /// `kappa.dead-lettered.undecodable`.
    undecodable: u64,
    /// `kappa.dead-lettered.unmappable-schema`.
    unmappable_schema: u64,
    /// `kappa.dead-lettered.rejected`.
    rejected: u64,
    /// Dead letters of commits written before the per-kind keys existed (total only).
    unclassified: u64,
}

impl DeadLetterCounts {
    fn describe(&self) -> String {
        let mut text = format!(
            "{} ({} undecodable, {} unmappable schema, {} rejected",
            self.total, self.undecodable, self.unmappable_schema, self.rejected
        );
        if self.unclassified > 0 {
            text.push_str(&format!(
                ", {} by older commits that do not record the kind",
                self.unclassified
            ));
        }
        text.push(')');
        text
    }
}

/// Sums the dead-letter counters of `pipeline`'s snapshot summaries (other pipelines' commits and
/// snapshots without Kappa's keys are skipped).
fn dead_letter_counts<'a>(
    pipeline: &str,
    summaries: impl IntoIterator<Item = &'a std::collections::HashMap<String, String>>,
) -> DeadLetterCounts {
    let mut counts = DeadLetterCounts::default();
    for properties in summaries {
        if properties.get(summary::PIPELINE).map(String::as_str) != Some(pipeline) {
            continue;
        }
        let count = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let total = count(summary::DEAD_LETTERED).unwrap_or(0);
        counts.total += total;
        let kinds = [
            count(summary::DEAD_LETTERED_UNDECODABLE),
            count(summary::DEAD_LETTERED_UNMAPPABLE),
            count(summary::DEAD_LETTERED_REJECTED),
        ];
        if kinds.iter().all(Option::is_none) {
            counts.unclassified += total;
            continue;
        }
        let [undecodable, unmappable, rejected] = kinds.map(|k| k.unwrap_or(0));
        counts.undecodable += undecodable;
        counts.unmappable_schema += unmappable;
        counts.rejected += rejected;
    }
    counts
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn commit(pipeline: &str, counters: &[(&str, u64)]) -> HashMap<String, String> {
        let mut properties: HashMap<String, String> = counters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        properties.insert(summary::PIPELINE.into(), pipeline.into());
        properties
    }

    #[test]
    fn dead_letters_are_summed_by_kind_over_the_pipelines_commits() {
        let commits = [
            commit(
                "orders",
                &[
                    (summary::DEAD_LETTERED, 7),
                    (summary::DEAD_LETTERED_UNDECODABLE, 2),
                    (summary::DEAD_LETTERED_UNMAPPABLE, 4),
                    (summary::DEAD_LETTERED_REJECTED, 1),
                ],
            ),
            commit(
                "orders",
                &[
                    (summary::DEAD_LETTERED, 3),
                    (summary::DEAD_LETTERED_UNDECODABLE, 0),
                    (summary::DEAD_LETTERED_UNMAPPABLE, 3),
                    (summary::DEAD_LETTERED_REJECTED, 0),
                ],
            ),
            // Another pipeline writing to the same table does not count.
            commit(
                "backfill",
                &[
                    (summary::DEAD_LETTERED, 100),
                    (summary::DEAD_LETTERED_UNDECODABLE, 100),
                ],
            ),
            // A commit from before the per-kind keys: only its total is known.
            commit("orders", &[(summary::DEAD_LETTERED, 5)]),
            // A snapshot some other tool wrote.
            HashMap::from([("added-records".to_string(), "9".to_string())]),
        ];
        let counts = dead_letter_counts("orders", commits.iter());
        assert_eq!(
            counts,
            DeadLetterCounts {
                total: 15,
                undecodable: 2,
                unmappable_schema: 7,
                rejected: 1,
                unclassified: 5,
            }
        );
        assert_eq!(
            counts.describe(),
            "15 (2 undecodable, 7 unmappable schema, 1 rejected, 5 by older commits that do not record the kind)"
        );
        assert_eq!(
            dead_letter_counts("nobody", commits.iter()),
            DeadLetterCounts::default()
        );
    }
}
