//! `kappa backfill -c P --from DAY --to DAY [--dry-run] [--json]`: reprocess the archive's
//! history of those days with the pipeline's logic, audit it against main, and publish it as one
//! atomic replacement of those day partitions ([`kappa_runtime::backfill`]; docs/backfill.md).
//! Sharded: `kappa backfill plan` (once), `kappa backfill --shard i/N` (per shard, stages and
//! commits nothing), `kappa backfill publish` (audits every shard's files, commits once). The
//! single process is a one-shard plan kept in memory, through the same steps.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use kappa_core::Classify;
use kappa_iceberg::summary;
use kappa_pipeline::backfill::{Setup, archive, make_plan, setup as backfill_setup, stage};
use kappa_quality::{Day, Outcome};
use kappa_runtime::backfill::{self, Audit, Plan, Request, Staged};
use serde_json::json;

use crate::cli::{BackfillAction, BackfillArgs, BackfillPlanArgs, BackfillPublishArgs, ConfigArgs};
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

/// Loads the config and opens the pipeline for a backfill of `--from`..=`--to`.
async fn setup(config_args: &ConfigArgs, from: &str, to: &str) -> Result<Setup, Failure> {
    let config = config_args.load()?;
    let (from_day, to_day) = (parse_day("from", from)?, parse_day("to", to)?);
    if to_day < from_day {
        return Err(usage(format!("--to {to} is before --from {from}")));
    }
    Ok(backfill_setup(config, Some(&config_args.config), from_day, to_day).await?)
}

/// The id a sharded backfill gets when none is given: its days.
fn default_id(from: &str, to: &str) -> String {
    format!("{from}_{to}")
}

/// `kappa backfill ...`: the command, with the metrics endpoint around it when `[metrics]
/// listen` is set (a shard's progress is its archive source's `kappa_source_*` series).
pub async fn run(args: BackfillArgs) -> Result<(), Failure> {
    let config = match (&args.action, &args.config) {
        (Some(BackfillAction::Plan(plan)), _) => &plan.config,
        (Some(BackfillAction::Publish(publish)), _) => &publish.config,
        (None, Some(config)) => config,
        (None, None) => return Err(usage("-c, --from and --to are required".into())),
    };
    let config = config.load()?;
    crate::endpoint::around(&config, "backfill", execute(args)).await
}

async fn execute(args: BackfillArgs) -> Result<(), Failure> {
    match args.action {
        Some(BackfillAction::Plan(plan)) => return run_plan(plan).await,
        Some(BackfillAction::Publish(publish)) => return run_publish(publish).await,
        None => {}
    }
    let (Some(config), Some(from), Some(to)) = (&args.config, args.from.clone(), args.to.clone())
    else {
        return Err(usage("-c, --from and --to are required".into()));
    };
    if let Some(shard) = &args.shard {
        return run_shard(&args, config, &from, &to, shard).await;
    }
    let setup = setup(config, &from, &to).await?;
    let started = std::time::Instant::now();
    let archive = archive(&setup).await?;
    let plan = make_plan(
        &setup,
        &archive,
        uuid::Uuid::now_v7().simple().to_string(),
        1,
    )
    .await?;
    let (request, staged) = stage(&setup, archive, &plan, 0).await?;
    finish(
        &setup,
        Finish {
            json: config.json(),
            dry_run: args.dry_run,
            sharded: false,
            from: &from,
            to: &to,
            started,
        },
        &request,
        staged,
    )
    .await
}

/// `kappa backfill plan`.
async fn run_plan(args: BackfillPlanArgs) -> Result<(), Failure> {
    if args.shards == 0 {
        return Err(usage("--shards 0: at least one".into()));
    }
    let setup = setup(&args.config, &args.from, &args.to).await?;
    let archive = archive(&setup).await?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| default_id(&args.from, &args.to));
    let plan = make_plan(&setup, &archive, id, args.shards as usize).await?;
    plan.write(&setup.pipeline).await.map_err(fail)?;
    if args.config.json() {
        output::line(&serde_json::to_string(&plan).unwrap_or_default());
    } else {
        output::line(&format!(
            "backfill {} of {}..{}: base snapshot {}, {} shards",
            plan.id,
            args.from,
            args.to,
            plan.base_snapshot
                .map_or("none".to_string(), |s| s.to_string()),
            plan.shards.len()
        ));
        for (i, shard) in plan.shards.iter().enumerate() {
            output::line(&format!(
                "  shard {i}: partitions {:?}, {} archive bytes",
                shard.partitions, shard.bytes
            ));
        }
    }
    Ok(())
}

/// Waits up to `wait` for `ready` to give something, polling every 2 s.
async fn wait_for<T, F>(wait: std::time::Duration, mut ready: F) -> Result<Option<T>, Failure>
where
    F: AsyncFnMut() -> Result<Option<T>, Failure>,
{
    let until = std::time::Instant::now() + wait;
    loop {
        if let Some(found) = ready().await? {
            return Ok(Some(found));
        }
        if std::time::Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The plan of `id`, waiting for it up to `wait`.
async fn read_plan(
    setup: &Setup,
    id: &str,
    wait: std::time::Duration,
    from: &str,
    to: &str,
) -> Result<Plan, Failure> {
    let plan = wait_for(wait, async || {
        Plan::read(&setup.pipeline, id).await.map_err(fail)
    })
    .await?
    .ok_or_else(|| {
        usage(format!(
            "no plan of backfill {id}: run `kappa backfill plan --from {from} --to {to} --shards N \
             --id {id}` first"
        ))
    })?;
    if (plan.from, plan.to) != (setup.from, setup.to) {
        return Err(usage(format!(
            "backfill {id} was planned for {}..{}, not {from}..{to}",
            Day(plan.from),
            Day(plan.to)
        )));
    }
    Ok(plan)
}

/// `kappa backfill --shard i/N`.
async fn run_shard(
    args: &BackfillArgs,
    config: &ConfigArgs,
    from: &str,
    to: &str,
    shard: &str,
) -> Result<(), Failure> {
    let (index, count) = crate::replay::shard_of(shard)?;
    let (index, count) = (index as usize, count as usize);
    if args.dry_run {
        return Err(usage(
            "--dry-run goes with the single-process backfill or with `kappa backfill publish`"
                .into(),
        ));
    }
    let setup = setup(config, from, to).await?;
    let id = args.id.clone().unwrap_or_else(|| default_id(from, to));
    let plan = read_plan(&setup, &id, args.wait, from, to).await?;
    if plan.shards.len() != count {
        return Err(usage(format!(
            "--shard {shard}: backfill {id} is planned in {} shards",
            plan.shards.len()
        )));
    }
    let report = |state: &str, done: Option<(u64, u64, usize)>| {
        let line = json!({
            "backfill": id,
            "shard": index,
            "shards": count,
            "state": state,
            "records_in": done.map(|d| d.0),
            "rows": done.map(|d| d.1),
            "files": done.map(|d| d.2),
        });
        if config.json() {
            output::line(&line.to_string());
        } else {
            output::line(&format!(
                "backfill {id} shard {index}/{count}: {state}{}",
                done.map_or(String::new(), |(records, rows, files)| format!(
                    " ({records} records reprocessed, {rows} rows in {files} files)"
                ))
            ));
        }
    };
    if plan
        .read_shard(&setup.pipeline, index)
        .await
        .map_err(fail)?
        .is_some()
    {
        report("already staged", None);
        return Ok(());
    }
    let archive = archive(&setup).await?;
    let (_, staged) = stage(&setup, archive, &plan, index).await?;
    let done = (staged.counts.records_in, staged.rows, staged.files.len());
    plan.write_shard(&setup.pipeline, index, staged)
        .await
        .map_err(fail)?;
    kappa_core::crash_point("backfill::shard-recorded");
    report("staged", Some(done));
    Ok(())
}

/// `kappa backfill publish`.
async fn run_publish(args: BackfillPublishArgs) -> Result<(), Failure> {
    let setup = setup(&args.config, &args.from, &args.to).await?;
    let started = std::time::Instant::now();
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| default_id(&args.from, &args.to));
    let plan = read_plan(&setup, &id, args.wait, &args.from, &args.to).await?;
    let shards = wait_for(args.wait, async || {
        let mut all = Staged::default();
        for shard in 0..plan.shards.len() {
            match plan
                .read_shard(&setup.pipeline, shard)
                .await
                .map_err(fail)?
            {
                Some(staged) => all.add(staged),
                None => return Ok(None),
            }
        }
        Ok(Some(all))
    })
    .await?;
    let Some(staged) = shards else {
        let mut missing = Vec::new();
        for shard in 0..plan.shards.len() {
            if plan
                .read_shard(&setup.pipeline, shard)
                .await
                .map_err(fail)?
                .is_none()
            {
                missing.push(shard.to_string());
            }
        }
        return Err(Failure {
            message: format!(
                "backfill {id}: shards {} of {} have not staged their files yet; main is untouched",
                missing.join(", "),
                plan.shards.len()
            ),
            code: exit::FAILURE,
        });
    };
    let request = plan
        .request(
            &setup.key_column,
            Some(setup.config.quarantine_table.clone()),
        )
        .map_err(fail)?;
    finish(
        &setup,
        Finish {
            json: args.config.json(),
            dry_run: args.dry_run,
            sharded: true,
            from: &args.from,
            to: &args.to,
            started,
        },
        &request,
        staged,
    )
    .await
}

/// How to end a backfill whose files are staged.
struct Finish<'a> {
    json: bool,
    dry_run: bool,
    /// The staged files belong to a plan's shards: they stay after a dry run or a blocked gate
    /// (a publish can follow without staging again).
    sharded: bool,
    from: &'a str,
    to: &'a str,
    started: std::time::Instant,
}

/// Audit, gates, then publish (unless a dry run).
async fn finish(
    setup: &Setup,
    how: Finish<'_>,
    request: &Request,
    staged: Staged,
) -> Result<(), Failure> {
    let pipeline = &setup.pipeline;
    let id = &request.id;
    let audit = match backfill::audit(pipeline, &staged, request).await {
        Ok(audit) => audit,
        Err(e) => {
            if !how.sharded {
                backfill::discard(pipeline, staged).await;
            }
            return Err(fail(e));
        }
    };
    let outcome = audit.report.outcome();
    let report = Report {
        id,
        json: how.json,
        from: how.from,
        to: how.to,
        base: request.base_snapshot,
        staged: &staged,
        audit: &audit,
        seconds: how.started.elapsed().as_secs_f64(),
    };
    if !matches!(outcome, Outcome::Commit) {
        report.print(None, Some(outcome.as_str()));
        if !how.sharded {
            backfill::discard(pipeline, staged).await;
        }
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
    if how.dry_run {
        report.print(None, None);
        if !how.sharded {
            backfill::discard(pipeline, staged).await;
        }
        return Ok(());
    }
    let properties = HashMap::from([
        (summary::BACKFILL_ID.to_string(), id.clone()),
        (
            summary::BACKFILL_DAYS.to_string(),
            format!("{}..{}", Day(request.days.0), Day(request.days.1)),
        ),
        (
            summary::BACKFILL_BASE.to_string(),
            request
                .base_snapshot
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
    let published = match backfill::publish(pipeline, &staged, request, properties).await {
        Ok(published) => published,
        Err(e) => {
            // Refused before anything was staged on main: nothing references the files. (Any
            // other failure may have left the outcome unsettled: the files stay.)
            let refused = matches!(
                &e,
                kappa_runtime::RuntimeError::Sink(kappa_iceberg::IcebergError::Unresolvable { .. })
            );
            if refused && !how.sharded {
                backfill::discard(pipeline, staged).await;
            }
            return Err(Failure {
                message: format!("backfill {id}: {}; main is untouched", fail(e).message),
                code: exit::FAILURE,
            });
        }
    };
    let report = Report {
        seconds: how.started.elapsed().as_secs_f64(),
        ..report
    };
    report.print(Some(&published), None);
    Ok(())
}

struct Report<'a> {
    id: &'a str,
    json: bool,
    from: &'a str,
    to: &'a str,
    base: Option<i64>,
    staged: &'a Staged,
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
        let r = self.staged;
        let state = match (published, blocked) {
            (Some(_), _) => "published",
            (None, Some(_)) => "blocked",
            (None, None) => "dry-run",
        };
        if self.json {
            output::line(
                &json!({
                    "backfill": self.id,
                    "from": self.from,
                    "to": self.to,
                    "state": state,
                    "base_snapshot": self.base,
                    "snapshot_id": published.map(|p| p.snapshot_id),
                    "committed": published.map(|p| p.committed),
                    "records_in": r.counts.records_in,
                    "rows": r.rows,
                    "files": r.files.len(),
                    "deduplicated": r.counts.deduplicated,
                    "dead_lettered": r.counts.dead_lettered,
                    "dead_letters_added": published.map(|p| p.dead_letters),
                    "kept_files": published.map(|p| p.kept),
                    "late_routed": r.late_routed,
                    "quarantined": r.quarantined,
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
            self.from,
            self.to,
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
            (Some(p), _) if !p.committed => output::line(&format!(
                "published before, as snapshot {} of main ({} dead letters added now)",
                p.snapshot_id, p.dead_letters
            )),
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
