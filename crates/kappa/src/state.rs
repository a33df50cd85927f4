//! `kappa state takeover`, `recover` and `skip`: the operator's way out when a pipeline refuses
//! to start, or stops a partition, because of its position (a renamed pipeline, a position lost
//! to table maintenance, a topic that no longer holds the position). Each changes only the
//! tables' `kappa.state.<pipeline>` properties. Stop every process of the pipeline before a
//! takeover or a recovery; a skip may run while it reads its other partitions.

use iceberg::TableIdent;
use kappa_config::PipelineConfig;
use kappa_core::Classify;
use kappa_iceberg::recovery::{self, Coordinates, Moved, Takeover};
use serde_json::json;

use crate::cli::{StateRecoverArgs, StateSkipArgs, StateTakeoverArgs};
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

/// The pipeline's tables: the main table first, then the dead-letter, late and quarantine tables
/// it is configured with.
fn tables(config: &PipelineConfig) -> Vec<(TableIdent, bool)> {
    let namespace = &config.raw.table.namespace;
    let ident = |name: &str| TableIdent::from_strs([namespace.as_str(), name]);
    let mut tables = vec![
        (config.table.clone(), false),
        (config.dlq_table.clone(), true),
    ];
    if config.late_policy == kappa_config::LatePolicy::LateTable {
        tables.push((config.late_table.clone(), false));
    }
    if config.quality.uses(kappa_quality::Policy::Quarantine) {
        tables.push((config.quarantine_table.clone(), false));
    }
    tables
        .into_iter()
        .filter_map(|(name, dlq)| ident(&name).ok().map(|i| (i, dlq)))
        .collect()
}

async fn exists(catalog: &dyn iceberg::Catalog, ident: &TableIdent) -> Result<bool, Failure> {
    catalog.table_exists(ident).await.map_err(|e| Failure {
        message: format!("table {ident}: checking that it exists: {e}"),
        code: exit::FAILURE,
    })
}

/// `kappa state takeover -c P --from OLD`.
pub async fn takeover(args: StateTakeoverArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    if args.from == config.name {
        return Err(Failure {
            message: format!(
                "--from {:?} is this pipeline's own name ([pipeline] name); name the old pipeline",
                args.from
            ),
            code: exit::USAGE,
        });
    }
    let catalog = kappa_iceberg::connect(&kappa_pipeline::catalog_config(&config))
        .await
        .map_err(fail)?;
    let mut rows = Vec::new();
    for (ident, _) in tables(&config) {
        let outcome = if exists(catalog.as_ref(), &ident).await? {
            Some(
                recovery::take_over(catalog.as_ref(), &ident, &args.from, &config.name)
                    .await
                    .map_err(fail)?,
            )
        } else {
            None
        };
        let text = match outcome {
            Some(Takeover::Moved { partitions }) => {
                format!("moved the position of {partitions} partitions")
            }
            Some(Takeover::AlreadyDone) => "already taken over".into(),
            Some(Takeover::NothingToMove) => format!("holds no position of {:?}", args.from),
            None => "does not exist".into(),
        };
        rows.push((ident.to_string(), text));
    }
    for (table, text) in rows {
        if args.config.json() {
            output::line(&json!({"table": table, "result": text}).to_string());
        } else {
            output::line(&format!("{table}: {text}"));
        }
    }
    Ok(())
}

/// `kappa state recover -c P [--dry-run]`.
pub async fn recover(args: StateRecoverArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let topics: std::collections::BTreeSet<&str> = [
        config.source_archive.as_ref().map(|a| a.topic.as_str()),
        config.source_kafka.as_ref().map(|k| k.topic.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let topic = match topics.into_iter().collect::<Vec<_>>()[..] {
        [topic] => topic.to_string(),
        [] => {
            return Err(Failure {
                message: "no topic configured: set [source.kafka] topic or [source.archive] topic"
                    .into(),
                code: exit::USAGE,
            });
        }
        _ => {
            return Err(Failure {
                message: "[source.kafka] topic and [source.archive] topic differ: the rows do \
                          not say which topic they came from, so no position can be rebuilt"
                    .into(),
                code: exit::USAGE,
            });
        }
    };
    let catalog = kappa_iceberg::connect(&kappa_pipeline::catalog_config(&config))
        .await
        .map_err(fail)?;
    let mut rows = Vec::new();
    for (ident, dlq) in tables(&config) {
        if !exists(catalog.as_ref(), &ident).await? {
            continue;
        }
        let columns = if dlq {
            Coordinates {
                topic: topic.clone(),
                partition: "kafka_partition".into(),
                offset: "kafka_offset".into(),
                event_time: None,
            }
        } else {
            Coordinates {
                topic: topic.clone(),
                partition: kappa_core::PARTITION_COLUMN.into(),
                offset: kappa_core::OFFSET_COLUMN.into(),
                event_time: Some(config.raw.event_time.column.clone()),
            }
        };
        let found = recovery::recover(
            catalog.as_ref(),
            &ident,
            &config.name,
            &columns,
            args.dry_run,
        )
        .await
        .map_err(fail)?;
        rows.push((ident.to_string(), found));
    }
    let verb = if args.dry_run {
        "would record"
    } else {
        "recorded"
    };
    if args.config.json() {
        for (table, found) in &rows {
            output::line(
                &json!({
                    "table": table,
                    "rows": found.rows,
                    "already_held": found.already_held,
                    "dry_run": args.dry_run,
                    "offsets": found.position.iter().map(|(tp, n)| (tp.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
                })
                .to_string(),
            );
        }
        return Ok(());
    }
    for (table, found) in &rows {
        let offsets = found
            .position
            .iter()
            .map(|(tp, n)| format!("{tp}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let what = if found.already_held {
            "already holds the pipeline's position; left as it is".to_string()
        } else if found.rows == 0 {
            "holds no rows; nothing to record".to_string()
        } else {
            format!("{verb} next offsets {offsets} (from {} rows)", found.rows)
        };
        output::line(&format!("{table}: {what}"));
    }
    Ok(())
}

/// `kappa state skip -c P --partition N --to OFFSET|earliest|latest [--rewind] [--dry-run]`.
///
/// Checks the target against the topic's offsets (it must be one the topic holds), then moves
/// the partition's position in every table of the pipeline that holds it: forward where the
/// table is behind the target, backward (only with `--rewind`) where it is past it.
pub async fn skip(args: StateSkipArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let usage = |message: String| Failure {
        message,
        code: exit::USAGE,
    };
    let kafka = config.source_kafka.as_ref().ok_or_else(|| {
        usage(
            "kappa state skip moves a live partition's position: [source.kafka] is not configured"
                .into(),
        )
    })?;
    let mut options = kappa_source_kafka::KafkaOptions::from_config(kafka);
    options.startup_timeout = std::time::Duration::from_secs(10);
    let offsets = tokio::task::spawn_blocking(move || {
        kappa_source_kafka::topic_offsets(&options, std::time::Duration::from_secs(10))
    })
    .await
    .map_err(|e| Failure {
        message: e.to_string(),
        code: exit::FAILURE,
    })?
    .map_err(fail)?;
    let Some(held) = offsets.iter().find(|p| p.partition == args.partition) else {
        return Err(usage(format!(
            "--partition {}: topic {} has partitions 0..{}",
            args.partition,
            kafka.topic,
            offsets.len()
        )));
    };
    let to = match args.to.trim() {
        "earliest" => held.low,
        "latest" => held.high,
        text => text.parse::<i64>().map_err(|_| {
            usage(format!(
                "--to {text:?}: expected an offset, \"earliest\" or \"latest\""
            ))
        })?,
    };
    if to < held.low || to > held.high {
        return Err(usage(format!(
            "--to {to}: topic {} partition {} holds offsets {}..{}; choose one of those",
            kafka.topic, args.partition, held.low, held.high
        )));
    }
    let partition = kappa_core::TopicPartition::new(kafka.topic.clone(), args.partition);
    let catalog = kappa_iceberg::connect(&kappa_pipeline::catalog_config(&config))
        .await
        .map_err(fail)?;
    let mut rows = Vec::new();
    for (ident, _) in tables(&config) {
        if !exists(catalog.as_ref(), &ident).await? {
            continue;
        }
        let moved = recovery::move_position(
            &catalog,
            &ident,
            &config.name,
            &partition,
            to,
            args.rewind,
            args.dry_run,
        )
        .await
        .map_err(fail)?;
        // The main table comes first: refuse before any side table moves.
        if rows.is_empty()
            && let Moved::Unchanged { at } = moved
            && at > to
            && !args.rewind
        {
            return Err(usage(format!(
                "{ident}: the table is at offset {at} of {partition}, past --to {to}; moving \
                 back reads offsets {to}..{at} again (a topic recreated under the table): pass \
                 --rewind to do so"
            )));
        }
        rows.push((ident.to_string(), moved));
    }
    let verb = if args.dry_run { "would move" } else { "moved" };
    for (table, moved) in rows {
        let text = match moved {
            Moved::Moved { from } if from < to => format!(
                "{verb} {partition} from {from} to {to}: offsets {from}..{to} skipped, never ingested"
            ),
            Moved::Moved { from } => format!(
                "{verb} {partition} back from {from} to {to}: offsets {to}..{from} are read again"
            ),
            Moved::Unchanged { at } => format!("{partition} at {at}: left as it is"),
            Moved::NotHeld => format!("holds no position of {partition}"),
        };
        if args.config.json() {
            let (from, moved_to) = match moved {
                Moved::Moved { from } => (Some(from), Some(to)),
                Moved::Unchanged { at } => (Some(at), None),
                Moved::NotHeld => (None, None),
            };
            output::line(
                &json!({
                    "table": table,
                    "partition": partition.to_string(),
                    "from": from,
                    "to": moved_to,
                    "dry_run": args.dry_run,
                    "result": text,
                })
                .to_string(),
            );
        } else {
            output::line(&format!("{table}: {text}"));
        }
    }
    Ok(())
}
