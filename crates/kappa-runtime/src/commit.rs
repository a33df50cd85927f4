//! The commit stage: each flush goes to the dead-letter table, then the late table (when late
//! rows are routed there), then the main table, in that order.
//!
//! ```text
//!  flush ─► DLQ table ─► late table ─► main table (offsets, event times, counters)
//!           (own offsets: may run ahead of the main table after a crash; rows below its own
//!            position are not written again)
//! ```
//!
//! Only the main table's position says what is done: after a crash between two of these commits
//! the input is read again from the main table's position, and the side tables skip what they
//! already hold.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use iceberg::spec::DataFile;
use kappa_core::{OFFSET_COLUMN, OffsetRange, SourcePosition, TopicPartition};
use kappa_iceberg::days::DayField;
use kappa_iceberg::{CommitOutcome, Committer, PendingCommit, summary};
use kappa_metrics::events;
use kappa_metrics::events::quality::GateOutcome;
use kappa_quality::{Check, CommitCounts, Day, Outcome, Quality, QualityReport, Threshold};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::buffer::Buffer;
use crate::dlq::dlq_batch;
use crate::error::RuntimeError;
use crate::quarantine;
use crate::stats::RunSummary;
use crate::write::Flushed;

/// The committers of the main, the dead-letter and (when late rows are routed) the late table.
pub(crate) struct Tables {
    pub main: Committer,
    pub dlq: Committer,
    pub late: Option<Committer>,
    pub quarantine: Option<Committer>,
}

/// Commits flushes in order: the dead-letter table first, then the main table. Hands the
/// committers back with the session's counters, whatever happened.
pub(crate) async fn commit_loop(
    mut rx: mpsc::Receiver<Flushed>,
    mut tables: Tables,
    pipeline: String,
    (quality, day_field): (Quality, Option<DayField>),
    lateness_micros: i64,
    committed: watch::Sender<SourcePosition>,
) -> (Tables, RunSummary, Result<(), RuntimeError>) {
    let mut summary = RunSummary::default();
    let mut result = Ok(());
    while let Some((buffer, files)) = rx.recv().await {
        result = commit_flush(
            &mut tables,
            buffer,
            files,
            &pipeline,
            (&quality, day_field),
            lateness_micros,
            &mut summary,
        )
        .await;
        if result.is_err() {
            break;
        }
        committed.send_replace(tables.main.state().position.clone());
    }
    (tables, summary, result)
}

async fn commit_flush(
    tables: &mut Tables,
    mut buffer: Box<Buffer>,
    files: Vec<DataFile>,
    pipeline: &str,
    (quality, day_field): (&Quality, Option<DayField>),
    lateness_micros: i64,
    summary: &mut RunSummary,
) -> Result<(), RuntimeError> {
    // The gates judge the flush before anything of it is committed, the DLQ included.
    let profile = buffer.profile.take().unwrap_or_else(|| quality.profile());
    let mut report = quality.evaluate_commit(
        &CommitCounts {
            records_in: buffer.records_in,
            written: profile.rows(),
            deduplicated: buffer.duplicates,
            dead_lettered: buffer.dead_lettered(),
            source_count: None,
        },
        &profile,
    );
    let mut closed_through = None;
    if let Some(field) = day_field {
        let (closed, newest) =
            closed_days(tables, quality, field, &buffer, &files, lateness_micros).await?;
        report.extend(closed);
        closed_through = newest;
    }
    if let Some(waiver) = &buffer.waiver {
        let waived = report.waive(&waiver.checks, &waiver.note);
        warn!(table = tables.main.name(), ?waived, note = %waiver.note, "failed checks let through by an override");
    }
    let outcome = report.outcome();
    emit_verdicts(tables.main.name(), &report, &outcome);
    let quarantine = matches!(outcome, Outcome::Quarantine(_)) && tables.quarantine.is_some();
    if !matches!(outcome, Outcome::Commit) && !quarantine {
        tables.main.discard(Some(files)).await;
        return Err(RuntimeError::Blocked {
            table: tables.main.name().to_string(),
            message: outcome
                .message()
                .unwrap_or_else(|| outcome.as_str().to_string()),
            input: kappa_iceberg::commit::protocol::input_json(&buffer.input),
            report: report.to_json(),
            until: buffer
                .input
                .iter()
                .map(|(tp, range)| (tp.clone(), range.end))
                .collect(),
        });
    }
    kappa_core::crash_point("runtime::before-commit");
    // Nothing of a flush the main table would refuse goes to the side tables either.
    tables.main.check_first_commit(&buffer.input)?;
    commit_dead_letters(&mut tables.dlq, &buffer, pipeline, summary).await?;
    kappa_core::crash_point("runtime::between-commits");
    if let Some(late) = tables.late.as_mut() {
        commit_late_rows(late, &buffer, summary).await?;
    }
    // A quarantined flush: its rows go to the quarantine table, the main table only records
    // that its input is done (offsets, counters, verdicts) and gets no rows.
    let quarantining = tables.quarantine.is_some() && quarantine;
    let quarantined: u64 = if quarantining {
        files.iter().map(DataFile::record_count).sum()
    } else {
        0
    };
    let counters = vec![
        (summary::RECORDS_IN, buffer.records_in),
        (summary::DUPLICATES, buffer.duplicates),
        (summary::DEAD_LETTERED, buffer.dead_lettered()),
        (summary::DEAD_LETTERED_UNDECODABLE, buffer.undecodable),
        (summary::DEAD_LETTERED_UNMAPPABLE, buffer.unmappable),
        (summary::DEAD_LETTERED_REJECTED, buffer.rejected),
        (summary::LATE, buffer.late),
        (summary::QUARANTINED, quarantined),
    ];
    let counted = RunSummary {
        records_in: buffer.records_in,
        duplicates: buffer.duplicates,
        undecodable: buffer.undecodable,
        unmappable: buffer.unmappable,
        rejected: buffer.rejected,
        late: buffer.late,
        ..RunSummary::default()
    };
    let mut pending = PendingCommit {
        input: std::mem::take(&mut buffer.input),
        watermark: buffer.max_event_time.map(|m| m - lateness_micros),
        max_event_time: buffer.max_event_time,
        event_times: std::mem::take(&mut buffer.event_times),
        closed_through,
        batches: Vec::new(),
        files: Vec::new(),
        counters,
        properties: if report.verdicts().is_empty() {
            Vec::new()
        } else {
            vec![(kappa_quality::SUMMARY_KEY.to_string(), report.to_json())]
        },
    };
    let quarantined = match tables.quarantine.as_mut().filter(|_| quarantining) {
        Some(table) => {
            if let Some(message) = outcome.message() {
                warn!(table = tables.main.name(), %message, "flush quarantined");
            }
            let carried = quarantine::carry(&pending);
            // The flush was written under the main table's location: its files move to the
            // quarantine table's own before it references them.
            let moved = quarantine::move_files(tables.main.table(), table, &files).await?;
            let rows = quarantine::commit(table, &pending.input, moved, &report, carried).await?;
            kappa_core::crash_point("runtime::after-quarantine");
            tables.main.discard(Some(files)).await;
            rows
        }
        None => {
            pending.files = files;
            0
        }
    };
    let started = std::time::Instant::now();
    let committed = match tables.main.commit(pending).await {
        Ok(committed) => committed,
        Err(e) => {
            events::commit::Failed {
                table: tables.main.name(),
                duration: started.elapsed(),
                kind: kappa_core::Classify::kind(&e),
                error: &e,
            }
            .emit();
            return Err(e.into());
        }
    };
    match committed {
        CommitOutcome::Committed {
            snapshot_id,
            rows,
            data_files,
            bytes,
            attempts,
            duration,
        } => {
            events::commit::Committed {
                table: tables.main.name(),
                snapshot_id,
                records: rows,
                files: data_files as u64,
                bytes,
                attempts,
                duration,
                max_event_time_micros: tables.main.state().max_event_time,
            }
            .emit();
            kappa_iceberg::maintenance::emit_shape(tables.main.table(), None);
            // Input counts only once its commit holds it: the completeness equation stays exact
            // when a stale session's flushes are dropped.
            summary.absorb(&counted);
            summary.quarantined_rows += quarantined;
            summary.quarantine_commits += u64::from(quarantined > 0);
            summary.commits += 1;
            summary.rows_written += rows;
            summary.data_files += data_files as u64;
            summary.bytes_written += bytes;
            summary.conflict_retries += u64::from(attempts.saturating_sub(1));
        }
        CommitOutcome::AlreadyCommitted => {
            events::commit::AlreadyCommitted {
                table: tables.main.name(),
                duration: started.elapsed(),
            }
            .emit();
            summary.already_committed += 1;
        }
    }
    Ok(())
}

/// The partition gate's verdicts on the days this flush closes (the watermark passes their end):
/// each day's rows against the median of the days before it, counted from the table's manifests
/// plus this flush's files.
async fn closed_days(
    tables: &Tables,
    quality: &Quality,
    field: DayField,
    buffer: &Buffer,
    files: &[DataFile],
    lateness_micros: i64,
) -> Result<(QualityReport, Option<i32>), RuntimeError> {
    let mut report = QualityReport::new(Vec::new());
    let (Some(_), true) = (&quality.config().partition, quality.config().enabled) else {
        return Ok((report, None));
    };
    // A day closes once every partition is past it: the slowest partition's newest event time
    // counts (a replay reads partitions at different speeds; a day judged while one of them
    // still has rows for it would look short). A partition without rows holds nothing back.
    // Each day is judged once: the table records the newest day judged.
    let state = tables.main.state();
    let mut merged = state.event_times.clone();
    merged.merge(&buffer.event_times);
    let Some(slowest) = merged.iter().map(|(_, t)| t).min() else {
        return Ok((report, None));
    };
    let lateness = std::time::Duration::from_micros(lateness_micros.max(0) as u64);
    let judged = state.closed_through.map(|d| Day(d).next().start_micros());
    let open_from = |first: i64| {
        kappa_quality::days_closed_between(None, slowest, judged.unwrap_or(first), lateness)
    };
    // Most flushes close no day: only then are the manifests read.
    if judged.is_some() && open_from(0).is_empty() {
        return Ok((report, None));
    }
    let mut rows = field.rows_in(tables.main.table()).await?;
    for (day, n) in field.rows_of(files) {
        *rows.entry(day).or_insert(0) += n;
    }
    let Some(first) = rows.keys().next().map(|d| Day(*d).start_micros()) else {
        return Ok((report, None));
    };
    let rows: BTreeMap<Day, u64> = rows.into_iter().map(|(d, n)| (Day(d), n)).collect();
    let mut newest = None;
    for day in open_from(first) {
        report.extend(quality.evaluate_day(day, &rows));
        newest = Some(day.0);
    }
    Ok((report, newest))
}

/// Every verdict of a flush, and the gate's decision, as metrics and log events.
fn emit_verdicts(table: &str, report: &QualityReport, outcome: &Outcome) {
    for verdict in report.verdicts() {
        let (min, max) = match verdict.threshold {
            Threshold::AtMost(x) => (None, Some(x)),
            Threshold::AtLeast(x) => (Some(x), None),
            Threshold::Equals(x) => (Some(x), Some(x)),
            Threshold::Between(lo, hi) => (Some(lo), Some(hi)),
        };
        events::quality::CheckEvaluated {
            table,
            check: &verdict.name,
            policy: verdict.policy.as_str(),
            passed: verdict.passed,
            value: verdict.value,
            min,
            max,
        }
        .emit();
        if verdict.check == Check::NullRate
            && let Some(column) = &verdict.column
        {
            events::quality::NullRate {
                table,
                column,
                rate: verdict.value,
            }
            .emit();
        }
    }
    if report.verdicts().is_empty() {
        return;
    }
    let failed: Vec<&str> = report.failed().map(|v| v.name.as_str()).collect();
    events::quality::GateDecided {
        table,
        outcome: match outcome {
            Outcome::Commit => GateOutcome::Commit,
            Outcome::Quarantine(_) => GateOutcome::Quarantine,
            Outcome::Block(_) => GateOutcome::Block,
        },
        failed_checks: &failed,
    }
    .emit();
}

/// Commits to a side table (dead letters, late rows) the rows of a flush it does not hold yet;
/// `rows(tp, from)` gives the flush's rows of `tp` at offsets `from` and later. Returns the rows
/// committed, or `None` when there was nothing to commit.
///
/// A side table keeps its own offsets. It may be ahead of the main table (a crash between the
/// two commits: rows below its position are already there) or behind it (flushes without rows
/// for it do not commit to it): its input range starts at its own position either way.
async fn commit_side_rows(
    side: &mut Committer,
    input: &BTreeMap<TopicPartition, OffsetRange>,
    mut rows: impl FnMut(&TopicPartition, i64) -> Result<Vec<RecordBatch>, RuntimeError>,
) -> Result<Option<u64>, RuntimeError> {
    let mut side_input = BTreeMap::new();
    let mut batches = Vec::new();
    for (tp, range) in input {
        let held = side.state().position.next_offset(tp);
        let start = held.unwrap_or(range.start);
        if start >= range.end && held.is_some() {
            continue;
        }
        side_input.insert(tp.clone(), OffsetRange::new(start, range.end));
        batches.extend(rows(tp, start)?.into_iter().filter(|b| b.num_rows() > 0));
    }
    if batches.is_empty() {
        return Ok(None);
    }
    let count: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let pending = PendingCommit {
        input: side_input,
        batches,
        counters: vec![(summary::ROWS, count)],
        ..PendingCommit::default()
    };
    match side.commit(pending).await? {
        CommitOutcome::Committed { rows, .. } => Ok(Some(rows)),
        CommitOutcome::AlreadyCommitted => {
            debug!(table = side.name(), "side-table rows already committed");
            Ok(None)
        }
    }
}

/// Commits the buffer's dead letters that the DLQ table does not hold yet.
async fn commit_dead_letters(
    dlq: &mut Committer,
    buffer: &Buffer,
    pipeline: &str,
    summary: &mut RunSummary,
) -> Result<(), RuntimeError> {
    let committed = commit_side_rows(dlq, &buffer.input, |tp, from| {
        let letters: Vec<_> = buffer
            .dead
            .get(tp)
            .map(|all| all.iter().filter(|l| l.offset >= from).cloned().collect())
            .unwrap_or_default();
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![dlq_batch(pipeline, tp, &letters)?])
    })
    .await?;
    if let Some(rows) = committed {
        summary.dlq_commits += 1;
        summary.dlq_rows_written += rows;
    }
    Ok(())
}

/// Commits the buffer's late rows that the late table does not hold yet.
async fn commit_late_rows(
    late: &mut Committer,
    buffer: &Buffer,
    summary: &mut RunSummary,
) -> Result<(), RuntimeError> {
    let committed = commit_side_rows(late, &buffer.input, |tp, from| {
        buffer
            .late_rows
            .get(tp)
            .into_iter()
            .flatten()
            .map(|rows| rows_from(rows, from))
            .collect()
    })
    .await?;
    if let Some(rows) = committed {
        summary.late_commits += 1;
        summary.late_rows_written += rows;
    }
    Ok(())
}

/// The table rows of `rows` at Kafka offsets `from` and later.
fn rows_from(rows: &RecordBatch, from: i64) -> Result<RecordBatch, RuntimeError> {
    let offsets = rows
        .column_by_name(OFFSET_COLUMN)
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
        .ok_or_else(|| {
            RuntimeError::Invariant(format!(
                "late rows without an Int64 {} column",
                OFFSET_COLUMN
            ))
        })?;
    if offsets.iter().all(|o| o.is_some_and(|o| o >= from)) {
        return Ok(rows.clone());
    }
    let mask: arrow_array::BooleanArray = offsets
        .iter()
        .map(|o| Some(o.is_some_and(|o| o >= from)))
        .collect();
    arrow_select::filter::filter_record_batch(rows, &mask).map_err(|e| {
        RuntimeError::Invariant(format!("selecting late rows from offset {from}: {e}"))
    })
}
