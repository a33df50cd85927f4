//! `kappa backfill -c P --from DAY --to DAY [--dry-run] [--json]`: reprocess the archive's
//! history of those days with the pipeline's logic, audit it against main, and publish it as one
//! atomic replacement of those day partitions ([`kappa_runtime::backfill`]; docs/backfill.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use kappa_core::{Classify, OffsetRange, Source, SourceEvent, TopicPartition};
use kappa_iceberg::days::DayField;
use kappa_iceberg::summary;
use kappa_logic::{LogicKind, OrdersLogic};
use kappa_quality::{Day, Outcome};
use kappa_runtime::backfill::{self, Audit, Reprocessed, Request};
use kappa_schema::{SchemaRegistry, TableMapping};
use kappa_source_replay::{
    ArchiveLimits, ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow,
    open_store,
};
use object_store::ObjectStore;
use serde_json::json;
use tracing::info;

use crate::cli::BackfillArgs;
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

/// `--from`/`--to`: a UTC day, as days since 1970-01-01.
fn parse_day(flag: &str, text: &str) -> Result<i32, Failure> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| usage(format!("--{flag} {text:?}: expected a day, YYYY-MM-DD")))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((date - epoch).num_days())
        .map_err(|_| usage(format!("--{flag} {text:?}: out of range")))
}

/// The archive replay options of the config.
fn replay_options(config: &kappa_config::PipelineConfig, topic: String) -> ReplayOptions {
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

/// How far the archive reaches per partition: the next offset after its last object's last
/// record (only the last object of each partition is read).
async fn archive_ends(
    store: Arc<dyn ObjectStore>,
    plan: &ArchivePlan,
    options: ReplayOptions,
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
) -> Result<BTreeMap<i32, i64>, Failure> {
    let last = ArchivePlan {
        partitions: plan
            .partitions
            .iter()
            .filter_map(|(p, files)| Some((*p, vec![files.last()?.clone()])))
            .collect(),
        ignored: 0,
    };
    let mut ends: BTreeMap<i32, i64> = last
        .partitions
        .iter()
        .map(|(p, files)| (*p, files[0].start_offset))
        .collect();
    let mut source = ArchiveSource::new(store, last, options, mapping, registry);
    loop {
        match source.next_event().await.map_err(fail)? {
            SourceEvent::Batch(batch) => {
                let end = ends.entry(batch.partition.partition).or_default();
                *end = (*end).max(batch.range.end);
            }
            SourceEvent::End => break,
            _ => {}
        }
    }
    Ok(ends)
}

/// Offsets the pipeline never ingested, per partition: skipped at a first commit, or moved past
/// by an operator.
fn excluded(state: &kappa_iceberg::TableState) -> BTreeMap<TopicPartition, Vec<OffsetRange>> {
    let mut excluded: BTreeMap<TopicPartition, Vec<OffsetRange>> = BTreeMap::new();
    for (tp, range) in &state.skipped {
        excluded.entry(tp.clone()).or_default().push(*range);
    }
    for moved in state.moves.iter().filter(|m| m.to > m.from) {
        excluded
            .entry(moved.partition.clone())
            .or_default()
            .push(OffsetRange::new(moved.from, moved.to));
    }
    for ranges in excluded.values_mut() {
        ranges.sort_by_key(|r| r.start);
    }
    excluded
}

pub async fn run(args: BackfillArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let from = parse_day("from", &args.from)?;
    let to = parse_day("to", &args.to)?;
    if to < from {
        return Err(usage(format!(
            "--to {} is before --from {}",
            args.to, args.from
        )));
    }
    let logic = config
        .raw
        .pipeline
        .logic
        .parse::<LogicKind>()
        .map_err(|e| usage(e.to_string()))?;
    let key_column = crate::diff::logic_key(&config.raw.pipeline.logic)
        .ok_or_else(|| {
            usage(format!(
                "logic {:?} has no dedup key Kappa knows to compare days on",
                config.raw.pipeline.logic
            ))
        })?
        .to_string();
    let registry = crate::replay::registry(&config, Some(&args.config.config))?;
    let mapping = crate::replay::mapping(&config, registry.as_ref()).await?;
    let spec = crate::replay::pipeline_spec(&config, mapping.clone())?;
    let pipeline = kappa_runtime::open_existing_pipeline(spec)
        .await
        .map_err(fail)?;
    let time = &config.raw.event_time.column;
    if DayField::of(pipeline.main.table(), time).is_none() {
        return Err(usage(format!(
            "[table] partition_by: table {} is not partitioned by day({time}); a backfill \
             replaces whole day partitions",
            pipeline.main.name()
        )));
    }
    let (url, topic, s3) = config.archive().map_err(Failure::config)?;
    let (store, prefix) = open_store(&url, &crate::replay::s3_options(s3)).map_err(fail)?;
    let plan = ArchivePlan::list(
        store.as_ref(),
        &url,
        &prefix,
        &topic,
        &PartitionFilter::All,
        &TimeWindow::default(),
    )
    .await
    .map_err(fail)?;
    let options = replay_options(&config, topic.clone());
    let ends = archive_ends(
        store.clone(),
        &plan,
        options.clone(),
        mapping.clone(),
        registry.clone(),
    )
    .await?;
    let state = pipeline.main.state().clone();
    let excluded = excluded(&state);
    // A partition's position is covered when the archive reaches it, or when every offset the
    // archive lacks below it was never ingested.
    let covered = |tp: &TopicPartition, next: i64| {
        let end = if tp.topic == topic {
            ends.get(&tp.partition).copied().unwrap_or(0)
        } else {
            0
        };
        next <= end
            || excluded
                .get(tp)
                .is_some_and(|ranges| ranges.iter().any(|r| r.start <= end && r.end >= next))
    };
    let base =
        kappa_iceberg::backfill::choose_base(pipeline.main.table(), &config.name, &state, covered)
            .map_err(fail)?
            .ok_or_else(|| {
                let behind: Vec<String> = state
                    .position
                    .iter()
                    .filter(|(tp, next)| !covered(tp, *next))
                    .map(|(tp, next)| {
                        format!(
                            "{tp}: the table holds offsets up to {next}, the archive up to {}",
                            ends.get(&tp.partition).copied().unwrap_or(0)
                        )
                    })
                    .collect();
                Failure {
                    message: format!(
                        "the archive does not reach any state of {} its history still holds ({}): \
                 wait for the archive to catch up, then run the backfill again",
                        pipeline.main.name(),
                        behind.join("; ")
                    ),
                    code: exit::FAILURE,
                }
            })?;
    let upper = base.position.clone();
    let plan = ArchivePlan {
        partitions: plan
            .partitions
            .into_iter()
            .filter_map(|(p, files)| {
                let end = upper.next_offset(&TopicPartition::new(topic.clone(), p))?;
                let files: Vec<_> = files.into_iter().filter(|f| f.start_offset < end).collect();
                (!files.is_empty()).then_some((p, files))
            })
            .collect(),
        ignored: plan.ignored,
    };
    let id = uuid::Uuid::now_v7().simple().to_string();
    let request = Request {
        id: id.clone(),
        days: (from, to),
        base_snapshot: base.snapshot_id,
        upper,
        excluded,
        key_column,
    };
    info!(
        backfill = %id,
        from = %args.from,
        to = %args.to,
        base = ?base.snapshot_id,
        files = plan.files(),
        "reprocessing the archive"
    );
    let started = std::time::Instant::now();
    let source = ArchiveSource::new(store, plan, options, mapping, registry);
    let reprocessed = match logic {
        LogicKind::Orders => {
            backfill::reprocess(
                &pipeline,
                source,
                OrdersLogic::new(config.raw.dedup.window),
                &request,
            )
            .await
        }
    }
    .map_err(fail)?;
    let audit = match backfill::audit(&pipeline, &reprocessed, &request).await {
        Ok(audit) => audit,
        Err(e) => {
            backfill::discard(&pipeline, reprocessed).await;
            return Err(fail(e));
        }
    };
    let outcome = audit.report.outcome();
    let report = Report {
        id: &id,
        args: &args,
        base: base.snapshot_id,
        reprocessed: &reprocessed,
        audit: &audit,
        seconds: started.elapsed().as_secs_f64(),
    };
    if !matches!(outcome, Outcome::Commit) {
        report.print(None, Some(outcome.as_str()));
        backfill::discard(&pipeline, reprocessed).await;
        return Err(Failure {
            message: format!(
                "backfill {id}: {}; main is untouched",
                outcome
                    .message()
                    .unwrap_or_else(|| format!("the gates said {}", outcome.as_str()))
            ),
            code: exit::BLOCKED,
        });
    }
    if args.dry_run {
        report.print(None, None);
        backfill::discard(&pipeline, reprocessed).await;
        return Ok(());
    }
    let properties = HashMap::from([
        (summary::BACKFILL_ID.to_string(), id.clone()),
        (
            summary::BACKFILL_DAYS.to_string(),
            format!("{}..{}", Day(from), Day(to)),
        ),
        (
            summary::BACKFILL_BASE.to_string(),
            base.snapshot_id
                .map_or("none".to_string(), |s| s.to_string()),
        ),
        (
            summary::BACKFILL_AUDIT.to_string(),
            json!(report.days_json()).to_string(),
        ),
        (
            kappa_quality::SUMMARY_KEY.to_string(),
            audit.report.to_json(),
        ),
    ]);
    let published = match backfill::publish(&pipeline, &reprocessed, &request, properties).await {
        Ok(published) => published,
        Err(e) => {
            // Unresolvable or failed before the catalog took it: nothing references the staged
            // files. (An unknown outcome is settled inside the publish.)
            backfill::discard(&pipeline, reprocessed).await;
            return Err(Failure {
                message: format!("backfill {id}: {}; main is untouched", fail(e).message),
                code: exit::FAILURE,
            });
        }
    };
    let report = Report {
        seconds: started.elapsed().as_secs_f64(),
        ..report
    };
    report.print(Some(&published), None);
    Ok(())
}

struct Report<'a> {
    id: &'a str,
    args: &'a BackfillArgs,
    base: Option<i64>,
    reprocessed: &'a Reprocessed,
    audit: &'a Audit,
    seconds: f64,
}

impl Report<'_> {
    fn days_json(&self) -> Vec<serde_json::Value> {
        self.audit
            .days
            .iter()
            .map(|d| {
                json!({
                    "day": Day(d.day).to_string(),
                    "rows_before": d.rows.0,
                    "rows_after": d.rows.1,
                    "keys_missing": d.missing,
                    "keys_new": d.extra,
                    "sums": d.sums.iter().map(|(c, x, y)| (c.clone(), json!([x.to_string(), y.to_string()]))).collect::<BTreeMap<_, _>>(),
                    "unchanged": d.matches(),
                })
            })
            .collect()
    }

    fn print(&self, published: Option<&backfill::Published>, blocked: Option<&str>) {
        let r = self.reprocessed;
        let state = match (published, blocked) {
            (Some(_), _) => "published",
            (None, Some(_)) => "blocked",
            (None, None) => "dry-run",
        };
        if self.args.config.json {
            output::line(
                &json!({
                    "backfill": self.id,
                    "from": self.args.from,
                    "to": self.args.to,
                    "state": state,
                    "base_snapshot": self.base,
                    "snapshot_id": published.map(|p| p.snapshot_id),
                    "records_in": r.counts.records_in,
                    "rows": r.rows,
                    "files": r.files.len(),
                    "deduplicated": r.counts.deduplicated,
                    "dead_lettered": r.counts.dead_lettered,
                    "dead_letters_added": published.map(|p| p.dead_letters),
                    "kept_files": published.map(|p| p.kept),
                    "late_routed": r.late_routed,
                    "seconds": self.seconds,
                    "days": self.days_json(),
                    "gates": serde_json::from_str::<serde_json::Value>(&self.audit.report.to_json()).unwrap_or_default(),
                })
                .to_string(),
            );
            return;
        }
        output::line(&format!(
            "backfill {} of {}..{}: {} records reprocessed, {} rows of those days in {} files ({:.1}s)",
            self.id,
            self.args.from,
            self.args.to,
            r.counts.records_in,
            r.rows,
            r.files.len(),
            self.seconds
        ));
        for d in &self.audit.days {
            let mut parts = vec![format!("{} rows before, {} after", d.rows.0, d.rows.1)];
            if d.missing > 0 {
                parts.push(format!("{} keys missing", d.missing));
            }
            if d.extra > 0 {
                parts.push(format!("{} keys new", d.extra));
            }
            for (column, x, y) in &d.sums {
                parts.push(format!("sum({column}) {x} -> {y}"));
            }
            if d.matches() {
                parts.push("unchanged".into());
            }
            output::line(&format!("  {}: {}", Day(d.day), parts.join("; ")));
        }
        for verdict in self.audit.report.failed() {
            output::line(&format!("  gate failed: {verdict}"));
        }
        match (published, blocked) {
            (Some(p), _) => output::line(&format!(
                "published as snapshot {} of main ({} files live ingestion appended kept, {} dead letters added)",
                p.snapshot_id, p.kept, p.dead_letters
            )),
            (None, Some(outcome)) => output::line(&format!(
                "not published: the gates said {outcome}; main is untouched"
            )),
            (None, None) => output::line("dry run: main is untouched"),
        }
    }
}
