//! `kappa quality report`: the quality verdicts recorded with the pipeline's commits, read from
//! the tables alone (each snapshot's `kappa.quality`).

use chrono::{DateTime, NaiveDate};
use kappa_core::Classify;
use kappa_iceberg::history::main_history;
use kappa_iceberg::summary;
use kappa_quality::{QualityReport, SUMMARY_KEY};
use serde_json::json;

use crate::cli::{QualityOverrideArgs, QualityReportArgs};
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

/// One commit's verdicts.
struct Judged {
    table: String,
    snapshot_id: i64,
    committed_at_ms: i64,
    report: Result<QualityReport, String>,
}

/// The commits of `pipeline` in `table`'s `main` history that carry verdicts, newest first
/// (the summaries of expired snapshots included: `kappa maintain expire` archives them).
async fn judged(
    name: &str,
    table: &iceberg::table::Table,
    pipeline: &str,
) -> Result<Vec<Judged>, Failure> {
    Ok(main_history(table)
        .await
        .map_err(fail)?
        .into_iter()
        .filter_map(|s| {
            if s.summary.get(summary::PIPELINE).map(String::as_str) != Some(pipeline) {
                return None;
            }
            let text = s.summary.get(SUMMARY_KEY)?;
            Some(Judged {
                table: name.to_string(),
                snapshot_id: s.snapshot_id,
                committed_at_ms: s.timestamp_ms,
                report: QualityReport::from_json(text).map_err(|e| e.to_string()),
            })
        })
        .collect())
}

/// `kappa quality report`.
pub async fn report(args: QualityReportArgs) -> Result<(), Failure> {
    let date = match &args.date {
        Some(text) => Some(
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| Failure {
                message: format!("--date {text:?}: expected YYYY-MM-DD ({e})"),
                code: exit::USAGE,
            })?,
        ),
        None => None,
    };
    let (config, pipeline) =
        crate::replay::open_configured(&args.config, kappa_pipeline::Access::Read).await?;
    let mut commits = judged(pipeline.main.name(), pipeline.main.table(), &config.name).await?;
    if let Some(quarantine) = &pipeline.quarantine {
        commits.extend(judged(quarantine.name(), quarantine.table(), &config.name).await?);
        commits.sort_by_key(|c| std::cmp::Reverse(c.committed_at_ms));
    }
    let on_date = |c: &Judged| {
        date.is_none_or(|d| {
            DateTime::from_timestamp_millis(c.committed_at_ms).is_some_and(|t| t.date_naive() == d)
        })
    };
    let shown: Vec<&Judged> = commits
        .iter()
        .filter(|c| on_date(c))
        .take(args.last)
        .collect();
    // Day partitions: each closed day's verdicts, from whichever commit closed it (newest day
    // first); `--date` selects that day.
    let mut days: Vec<(&Judged, &kappa_quality::Verdict)> = commits
        .iter()
        .filter_map(|c| c.report.as_ref().ok().map(|r| (c, r)))
        .flat_map(|(c, r)| r.verdicts().iter().map(move |v| (c, v)))
        .filter(|(_, v)| v.day.is_some())
        .filter(|(_, v)| {
            date.is_none_or(|d| v.day.map(|day| day.to_string()) == Some(d.to_string()))
        })
        .collect();
    days.sort_by_key(|(c, v)| {
        (
            std::cmp::Reverse(v.day),
            std::cmp::Reverse(c.committed_at_ms),
        )
    });
    days.truncate(args.last);
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339());
    if args.config.json() {
        let list: Vec<serde_json::Value> = shown
            .iter()
            .map(|c| match &c.report {
                Ok(report) => json!({
                    "table": c.table,
                    "snapshot_id": c.snapshot_id,
                    "committed_at": at(c.committed_at_ms),
                    "outcome": report.outcome().as_str(),
                    "report": serde_json::from_str::<serde_json::Value>(&report.to_json()).unwrap_or_default(),
                }),
                Err(e) => json!({
                    "table": c.table,
                    "snapshot_id": c.snapshot_id,
                    "committed_at": at(c.committed_at_ms),
                    "error": e,
                }),
            })
            .collect();
        let day_list: Vec<serde_json::Value> = days
            .iter()
            .map(|(c, v)| {
                json!({
                    "day": v.day.map(|d| d.to_string()),
                    "table": c.table,
                    "snapshot_id": c.snapshot_id,
                    "committed_at": at(c.committed_at_ms),
                    "verdict": serde_json::to_value(v).unwrap_or_default(),
                })
            })
            .collect();
        output::line(
            &json!({
                "pipeline": config.name,
                "table": pipeline.main.name(),
                "date": args.date,
                "days": day_list,
                "commits": list,
            })
            .to_string(),
        );
        return Ok(());
    }
    output::line(&format!(
        "Day partitions of {}{} (newest first; each judged once, when it closed)",
        pipeline.main.name(),
        args.date
            .as_ref()
            .map_or(String::new(), |d| format!(", day {d}")),
    ));
    if days.is_empty() {
        output::line(
            "  no closed day judged yet (the partition gate needs day(event time) partitions)",
        );
    }
    for (c, verdict) in &days {
        output::line(&format!(
            "  {}  {} {verdict}  (snapshot {})",
            verdict.day.map(|d| d.to_string()).unwrap_or_default(),
            if verdict.passed { "ok  " } else { "FAIL" },
            c.snapshot_id
        ));
    }
    output::line(&format!(
        "Quality verdicts of pipeline {} on {}{} (newest first, {} of {} judged commits)",
        config.name,
        pipeline.main.name(),
        args.date
            .as_ref()
            .map_or(String::new(), |d| format!(", committed on {d}")),
        shown.len(),
        commits.iter().filter(|c| on_date(c)).count(),
    ));
    if shown.is_empty() {
        output::line("  no commit carries verdicts (quality disabled, or nothing committed yet)");
    }
    for c in shown {
        let when = at(c.committed_at_ms).unwrap_or_default();
        match &c.report {
            Ok(report) => {
                let failed: Vec<_> = report.failed().collect();
                output::line(&format!(
                    "  {when}  {}  snapshot {}  {}  ({} checks, {} failed)",
                    c.table,
                    c.snapshot_id,
                    report.outcome().as_str(),
                    report.verdicts().len(),
                    failed.len()
                ));
                let listed: Vec<_> = if args.all {
                    report.verdicts().iter().collect()
                } else {
                    failed
                };
                for verdict in listed {
                    output::line(&format!(
                        "      {} {verdict}",
                        if verdict.passed { "ok  " } else { "FAIL" }
                    ));
                }
            }
            Err(e) => output::line(&format!(
                "  {when}  {}  snapshot {}  unreadable verdicts: {e}",
                c.table, c.snapshot_id
            )),
        }
    }
    Ok(())
}

/// `kappa quality override`: writes the override for the main table's current position (where a
/// paused pipeline waits) into its properties, and says what it did.
pub async fn override_block(args: QualityOverrideArgs) -> Result<(), Failure> {
    if args.reason.trim().is_empty() {
        return Err(Failure {
            message: "--reason: say why the checks may be let through".into(),
            code: exit::USAGE,
        });
    }
    // An override is an audit record: who let the data through is part of it.
    let Some(who) = args
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|who| !who.trim().is_empty())
    else {
        return Err(Failure {
            message: "--by: say who decides (there is no $USER to take it from)".into(),
            code: exit::USAGE,
        });
    };
    let (_, pipeline) =
        crate::replay::open_configured(&args.config, kappa_pipeline::Access::SetProperty).await?;
    let by = format!(
        "{} at {}",
        who.trim(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let decision = kappa_runtime::QualityOverride::record(
        &pipeline,
        args.checks.clone(),
        args.reason.clone(),
        by,
        chrono::Utc::now().timestamp_millis(),
    )
    .await
    .map_err(fail)?;
    let at = decision.at.clone();
    let checks = if args.checks.is_empty() {
        "every failed check".to_string()
    } else {
        args.checks.join(", ")
    };
    if args.config.json() {
        output::line(
            &json!({"table": pipeline.main.name(), "at": at, "override": decision}).to_string(),
        );
    } else {
        output::line(&format!(
            "{}: override recorded for the flush starting at {at} ({checks}); a pipeline paused there now reads it again and commits it (a block there later is not let through)",
            pipeline.main.name()
        ));
    }
    Ok(())
}
