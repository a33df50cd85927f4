//! The pipeline loop: sessions of read → write → commit.
//!
//! A *session* reads from the tables' committed position until the source ends, the process is
//! told to stop, or the source's partitions are reassigned. Within a session three stages run
//! on their own tasks so that reading, encoding and committing overlap:
//! the read loop (source + logic) → `write_loop` (Parquet encoding) → `commit_loop` (catalog).
//!
//! A bounded source (replay) runs one session. A live source runs sessions until shutdown: after
//! a rebalance, or when another writer committed the same input first (a stale session), the
//! buffered input is dropped, the tables are reloaded, the logic is reset and the source is
//! sought to the tables' position again. Nothing uncommitted is ever kept across sessions, so the
//! table's position is the only truth.

use std::pin::Pin;
use std::time::Instant;

use futures::FutureExt;
use futures::future::Fuse;
use kappa_core::{Classify, Logic, Source, SourceEvent, SourcePosition};
use kappa_iceberg::IcebergError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, instrument, warn};

use crate::buffer::{Buffer, Lateness};
use crate::commit::{Tables, commit_loop};
use crate::error::RuntimeError;
use crate::pause::{Blocked, Limit, Resume, pause};
use crate::quarantine::complete_quarantine;
use crate::spec::{Pipeline, PipelineSpec};
use crate::stats::RunSummary;
use crate::write::{Flushed, ToWriter, WRITER_QUEUE, write_loop};

/// Runs a bounded `source` through `logic` into the pipeline's tables until the source ends.
///
/// Resumes from the main table's committed position: the source is sought `dedup_window` offsets
/// earlier so that the logic's dedup state is rebuilt from the archive (those records are fed to
/// `warm_up` and never written again); everything from the committed position on is processed.
#[instrument(skip_all, fields(pipeline = %pipeline.spec.pipeline))]
pub async fn run_pipeline<S, T>(
    pipeline: Pipeline,
    source: S,
    logic: T,
) -> Result<RunSummary, RuntimeError>
where
    S: Source,
    T: Logic,
{
    drive(
        pipeline,
        source,
        logic,
        Mode::Bounded,
        std::future::pending(),
    )
    .await
}

/// Runs a live `source` until `shutdown` completes (or the source fails): then commits what is
/// buffered and returns. Rebalances and stale input (another writer was first) restart the read
/// from the tables' position; see the module docs. It also returns, with everything before
/// committed and [`RunSummary::schema_change`] set, when the source meets records of a newer
/// schema version than the table has: the caller evolves the table and runs again.
#[instrument(skip_all, fields(pipeline = %pipeline.spec.pipeline))]
pub async fn run_live<S, T, F>(
    pipeline: Pipeline,
    source: S,
    logic: T,
    shutdown: F,
) -> Result<RunSummary, RuntimeError>
where
    S: Source,
    T: Logic,
    F: Future<Output = ()> + Send,
{
    drive(pipeline, source, logic, Mode::Live, shutdown).await
}

/// Bounded input ends the run; live input runs sessions until shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bounded,
    Live,
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The source is exhausted; everything read is committed.
    Exhausted,
    /// Shutdown was requested; everything read is committed.
    Shutdown,
    /// The source needs a newer table schema; everything read before is committed.
    SchemaChanged(String),
    /// The source's partitions changed; what was buffered is dropped.
    Reassigned,
    /// Another writer committed part of this session's input first (live only).
    Stale(IcebergError),
    /// A `block` gate refused a flush (live only): nothing of it was committed.
    Blocked(Blocked),
    /// The blocked range read again has been committed (the session's [`Limit`]).
    Limited,
}

async fn drive<S, T, F>(
    pipeline: Pipeline,
    mut source: S,
    mut logic: T,
    mode: Mode,
    shutdown: F,
) -> Result<RunSummary, RuntimeError>
where
    S: Source,
    T: Logic,
    F: Future<Output = ()> + Send,
{
    tracing::info!(logic = logic.name(), mode = ?mode, "pipeline starting");
    let started = Instant::now();
    let Pipeline {
        spec,
        main,
        dlq,
        late,
        quarantine,
        health,
        ..
    } = pipeline;
    let mut tables = Tables {
        main,
        dlq,
        late,
        quarantine,
    };
    let mut summary = RunSummary::default();
    let mut shutdown = Box::pin(shutdown.fuse());
    // Set while a paused pipeline reads its blocked flush again.
    let mut limit: Option<Limit> = None;
    loop {
        let (back, end) = session(
            &spec,
            tables,
            &mut source,
            &mut logic,
            shutdown.as_mut(),
            &mut summary,
            (mode, limit.as_ref()),
        )
        .await?;
        tables = back;
        match end {
            SessionEnd::Exhausted | SessionEnd::Shutdown => break,
            SessionEnd::Blocked(blocked) => {
                summary.pauses += 1;
                match pause(
                    &mut tables,
                    &mut source,
                    &spec.pipeline,
                    blocked,
                    shutdown.as_mut(),
                    health.as_ref(),
                )
                .await?
                {
                    Resume::Shutdown => break,
                    Resume::Again(again) => limit = Some(again),
                    Resume::Moved => {
                        limit = None;
                        if let Some(health) = &health {
                            health.set_ready(kappa_metrics::Condition::Gate);
                        }
                    }
                }
            }
            SessionEnd::Limited => {
                info!("the blocked flush is committed: going on");
                limit = None;
                if let Some(health) = &health {
                    health.set_ready(kappa_metrics::Condition::Gate);
                }
            }
            SessionEnd::SchemaChanged(reason) => {
                info!(%reason, "committed what came before a newer schema: the table must evolve");
                summary.schema_change = Some(reason);
                break;
            }
            SessionEnd::Reassigned => {
                info!("partitions reassigned: re-reading from the table's position");
            }
            SessionEnd::Stale(reason) => {
                summary.rewinds += 1;
                warn!(%reason, "another writer committed this input first: re-reading from the table's position");
            }
        }
        tables.main.reload().await?;
        tables.dlq.reload().await?;
        for side in [tables.late.as_mut(), tables.quarantine.as_mut()]
            .into_iter()
            .flatten()
        {
            side.reload().await?;
        }
        logic.reset();
    }
    source.committed(&tables.main.state().position);
    summary.positions = tables
        .main
        .state()
        .position
        .iter()
        .map(|(tp, next)| (tp.clone(), next))
        .collect();
    summary.snapshot_id = tables.main.state().snapshot_id;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One session: seek to the tables' position, then read, write and commit until the source ends,
/// shutdown, a reassignment or a stale commit.
async fn session<S, T, F>(
    spec: &PipelineSpec,
    tables: Tables,
    source: &mut S,
    logic: &mut T,
    mut shutdown: Pin<&mut Fuse<F>>,
    summary: &mut RunSummary,
    (mode, limit): (Mode, Option<&Limit>),
) -> Result<(Tables, SessionEnd), RuntimeError>
where
    S: Source,
    T: Logic,
    F: Future<Output = ()> + Send,
{
    let mut tables = tables;
    complete_quarantine(&mut tables).await?;
    let resume = tables.main.state().position.clone();
    let warm_from: SourcePosition = resume
        .iter()
        .map(|(tp, next)| (tp.clone(), (next - spec.dedup_window).max(0)))
        .collect();
    // The source learns what the table holds before it seeks: a live source checks that the
    // topic still holds the resume position (the warm-up start may be before the topic's start).
    source.committed(&resume);
    source
        .seek(&warm_from)
        .await
        .map_err(RuntimeError::source)?;
    info!(resume = %resume.to_json(), "resuming from the table's committed offsets");
    let lateness = spec.allowed_lateness.as_micros() as i64;
    let late_rule = Lateness {
        column: spec.event_time_column.clone(),
        allowed_micros: lateness,
        route: tables.late.is_some(),
    };
    // Lateness is judged per partition from the newest event time the table holds for it.
    let mut times = tables.main.state().event_times.clone();

    let (to_commit, commit_rx) = mpsc::channel::<Flushed>(1);
    let (to_writer, writer_rx) = mpsc::channel::<ToWriter>(WRITER_QUEUE);
    let (committed_tx, mut committed_rx) = watch::channel(resume.clone());
    let writer_task = tokio::spawn(write_loop(
        writer_rx,
        to_commit,
        tables.main.table().clone(),
        tables.main.name().to_string(),
        spec.writer.clone(),
    ));
    // The partition gate counts rows per day from the table's manifests: it needs a
    // day(event time) partition field.
    let day_field = kappa_iceberg::days::DayField::of(tables.main.table(), &spec.event_time_column);
    // The metrics label of the main table, as the committer names it.
    let table_label = tables.main.name().to_string();
    let commit_task = tokio::spawn(commit_loop(
        commit_rx,
        tables,
        spec.pipeline.clone(),
        (spec.quality.clone(), day_field),
        lateness,
        committed_tx,
    ));

    let mut buffer = Buffer::default();
    // Reading a blocked flush again: how far each of its partitions has been read.
    // None of its partitions left to read here (another replica holds them): read as usual.
    let mut limited = limit
        .map(|limit| Limited::new(limit, &resume, &source.partitions()))
        .filter(|limited| !limited.is_done());
    if let Some(limited) = &limited {
        buffer.waiver = limited.limit.waiver.clone();
    }
    let logic_err = |e: T::Error| RuntimeError::Logic {
        logic: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("logic")
            .to_string(),
        kind: e.kind(),
        source: Box::new(e),
    };
    let read: Result<Option<SessionEnd>, RuntimeError> = async {
        let end = loop {
            if committed_rx.has_changed().unwrap_or(false) {
                let position = committed_rx.borrow_and_update().clone();
                source.committed(&position);
            }
            let event = tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("shutdown requested: committing what is buffered");
                    break SessionEnd::Shutdown;
                }
                changed = committed_rx.changed() => {
                    // The commit stage ended: a gate blocked or a commit failed. Say so now
                    // rather than at the next batch, which may be long in coming.
                    if changed.is_err() {
                        return Ok(None);
                    }
                    let position = committed_rx.borrow_and_update().clone();
                    source.committed(&position);
                    continue;
                }
                event = source.next_event() => event.map_err(RuntimeError::source)?,
            };
            let batch = match event {
                SourceEvent::Batch(batch) => batch,
                SourceEvent::Idle => {
                    // A blocked flush read again is flushed whole, at its end, and only then.
                    if limited.is_none() && !buffer.is_empty() && buffer.should_flush(&spec.commit)
                    {
                        let flush = ToWriter::Flush(Box::new(std::mem::take(&mut buffer)));
                        if to_writer.send(flush).await.is_err() {
                            return Ok(None);
                        }
                    }
                    continue;
                }
                SourceEvent::Reassigned(partitions) => {
                    debug!(?partitions, "reassigned; dropping the uncommitted buffer");
                    return Ok(Some(SessionEnd::Reassigned));
                }
                SourceEvent::SchemaChanged(reason) => break SessionEnd::SchemaChanged(reason),
                SourceEvent::End => break SessionEnd::Exhausted,
            };
            kappa_core::crash_point("runtime::read");
            batch.check().map_err(RuntimeError::Invariant)?;
            let batch = match resume.next_offset(&batch.partition) {
                Some(next) if batch.range.start < next => {
                    let (before, after) = batch.split_at(next);
                    summary.warm_up_records += before.records_in;
                    logic.warm_up(&before).map_err(logic_err)?;
                    if after.range.is_empty() {
                        continue;
                    }
                    after
                }
                _ => batch,
            };
            let batch = match limited.as_mut() {
                Some(limited) => match limited.cut(batch) {
                    Some(batch) => batch,
                    None => continue,
                },
                None => batch,
            };
            let (batch, stats) = logic.apply(batch).map_err(logic_err)?;
            let (batch, rules) = spec
                .quality
                .apply_rules(batch)
                .map_err(RuntimeError::Quality)?;
            batch.check().map_err(RuntimeError::Invariant)?;
            // Live rows are judged for timeliness against the wall clock; replayed history not.
            let ingested = (mode == Mode::Live).then(std::time::SystemTime::now);
            let profile = buffer.profile.get_or_insert_with(|| spec.quality.profile());
            profile.observe_rules(&rules);
            profile
                .observe(&batch.records, ingested)
                .map_err(RuntimeError::Quality)?;
            // The batch's share of the buffer's counters (the buffer counts by kind).
            let records = batch.records_in;
            let before = (
                buffer.late,
                buffer.undecodable,
                buffer.unmappable,
                buffer.rejected,
            );
            let rows = buffer.add(batch, stats, &spec.mapping, &mut times, &late_rule)?;
            kappa_metrics::events::pipeline::BatchProcessed {
                table: &table_label,
                records,
                deduplicated: stats.duplicates_dropped,
                late: buffer.late - before.0,
                dead_lettered: kappa_metrics::events::pipeline::DeadLettered {
                    undecodable: buffer.undecodable - before.1,
                    unmappable: buffer.unmappable - before.2,
                    rejected: buffer.rejected - before.3,
                },
            }
            .emit();
            // A failed send means a later stage stopped: its error is reported below.
            if let Some(rows) = rows
                && to_writer.send(ToWriter::Rows(rows)).await.is_err()
            {
                return Ok(None);
            }
            if limited.as_ref().is_some_and(Limited::is_done) {
                // The blocked flush, exactly: committed on its own, then the session ends.
                break SessionEnd::Limited;
            }
            if limited.is_none()
                && buffer.should_flush(&spec.commit)
                && to_writer
                    .send(ToWriter::Flush(Box::new(std::mem::take(&mut buffer))))
                    .await
                    .is_err()
            {
                return Ok(None);
            }
        };
        if !buffer.is_empty() {
            let _ = to_writer.send(ToWriter::Flush(Box::new(buffer))).await;
        }
        Ok(Some(end))
    }
    .await;
    // Dropping the sender ends the writer: after a reassignment its open files are abandoned
    // (never referenced by a snapshot); flushes already handed on are still committed.
    drop(to_writer);
    let written = writer_task
        .await
        .map_err(|e| RuntimeError::Invariant(format!("writer task: {e}")))?;
    let (tables, committed, result) = commit_task
        .await
        .map_err(|e| RuntimeError::Invariant(format!("commit task: {e}")))?;
    summary.absorb(&committed);
    // The earliest stage's error is the cause; later ones only saw their input end.
    let end = read?;
    written?;
    match (result, end, mode) {
        (Ok(()), Some(end), _) => Ok((tables, end)),
        (Err(RuntimeError::Blocked { until, message, .. }), end, Mode::Live) => {
            if matches!(end, Some(SessionEnd::Shutdown)) {
                warn!(%message, "blocked while shutting down: the next run judges this input again");
                Ok((tables, SessionEnd::Shutdown))
            } else {
                Ok((tables, SessionEnd::Blocked(Blocked { until, message })))
            }
        }
        (Ok(()), None, _) => Err(RuntimeError::Invariant(
            "a pipeline stage stopped without an error".into(),
        )),
        // Input that was read before a rebalance is dropped anyway.
        (Err(RuntimeError::Sink(e @ IcebergError::Continuity { .. })), end, Mode::Live) => {
            match end {
                Some(SessionEnd::Reassigned) => Ok((tables, SessionEnd::Reassigned)),
                // Shutting down (a replica being replaced, whose successor already committed this
                // input): nothing is left to commit, and no new session would ever see the
                // shutdown again.
                Some(SessionEnd::Shutdown) => {
                    warn!(reason = %e, "another writer committed this input first while shutting down: stopping without it");
                    // The summary reports the position the table holds.
                    let mut tables = tables;
                    tables.main.reload().await?;
                    Ok((tables, SessionEnd::Shutdown))
                }
                _ => Ok((tables, SessionEnd::Stale(e))),
            }
        }
        (Err(e), _, _) => Err(e),
    }
}

/// A session's [`Limit`]: the blocked flush read again, batch by batch, up to its end.
struct Limited<'a> {
    limit: &'a Limit,
    /// Next offset read per partition of the limit this replica holds.
    read: std::collections::BTreeMap<kappa_core::TopicPartition, i64>,
}

impl<'a> Limited<'a> {
    fn new(
        limit: &'a Limit,
        resume: &SourcePosition,
        assigned: &[kappa_core::TopicPartition],
    ) -> Limited<'a> {
        let read = limit
            .until
            .iter()
            .filter(|(tp, _)| assigned.is_empty() || assigned.contains(tp))
            .map(|(tp, _)| (tp.clone(), resume.next_offset(tp).unwrap_or(0)))
            .collect();
        Limited { limit, read }
    }

    /// The part of `batch` inside the limit (`None`: nothing of it; it is read after).
    fn cut(&mut self, batch: kappa_core::SourceBatch) -> Option<kappa_core::SourceBatch> {
        let end = self.limit.until.next_offset(&batch.partition)?;
        let read = self.read.get_mut(&batch.partition)?;
        if batch.range.start >= end {
            return None;
        }
        let batch = if batch.range.end > end {
            batch.split_at(end).0
        } else {
            batch
        };
        *read = (*read).max(batch.range.end);
        Some(batch)
    }

    /// Every partition of the limit this replica holds is read to its end.
    fn is_done(&self) -> bool {
        self.read.iter().all(|(tp, read)| {
            self.limit
                .until
                .next_offset(tp)
                .is_none_or(|end| *read >= end)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use kappa_core::{OffsetRange, SourceBatch, TopicPartition};

    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition::new("orders", partition)
    }

    /// A batch of one row per offset in `[start, end)` of `partition`.
    fn batch(partition: i32, start: i64, end: i64) -> SourceBatch {
        let offsets: Vec<i64> = (start..end).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: ArrayRef = Arc::new(Int64Array::from(offsets.clone()));
        SourceBatch {
            partition: tp(partition),
            range: OffsetRange::new(start, end),
            records: RecordBatch::try_new(schema, vec![values]).unwrap(),
            records_in: offsets.len() as u64,
            offsets,
            dead_letters: Vec::new(),
        }
    }

    fn limit(until: &[(i32, i64)]) -> Limit {
        Limit {
            until: until.iter().map(|(p, next)| (tp(*p), *next)).collect(),
            waiver: None,
        }
    }

    #[test]
    fn a_blocked_flush_read_again_ends_exactly_where_it_ended() {
        // Blocked [100, 150) on partition 0 and [40, 60) on partition 1; read again from there.
        let limit = limit(&[(0, 150), (1, 60)]);
        let resume: SourcePosition = [(tp(0), 100), (tp(1), 40)].into_iter().collect();
        let mut limited = Limited::new(&limit, &resume, &[tp(0), tp(1), tp(2)]);
        assert!(!limited.is_done());

        let first = limited.cut(batch(0, 100, 130)).unwrap();
        assert_eq!(first.range, OffsetRange::new(100, 130));
        // A batch across the end is cut there; the rest is read after the commit.
        let across = limited.cut(batch(0, 130, 170)).unwrap();
        assert_eq!(across.range, OffsetRange::new(130, 150));
        assert_eq!(across.offsets.last(), Some(&149));
        assert!(!limited.is_done(), "partition 1 is not read to its end yet");
        assert!(limited.cut(batch(0, 170, 200)).is_none(), "past the end");
        assert!(
            limited.cut(batch(2, 0, 10)).is_none(),
            "a partition the blocked flush had nothing of waits"
        );
        limited.cut(batch(1, 40, 60)).unwrap();
        assert!(limited.is_done());
    }

    #[test]
    fn partitions_another_replica_took_are_not_waited_for() {
        let limit = limit(&[(0, 150), (1, 60)]);
        let resume: SourcePosition = [(tp(0), 100), (tp(1), 40)].into_iter().collect();
        let mut limited = Limited::new(&limit, &resume, &[tp(0)]);
        assert!(limited.cut(batch(1, 40, 60)).is_none());
        limited.cut(batch(0, 100, 150)).unwrap();
        assert!(limited.is_done());
        // Nothing of it left here at all: done before reading.
        assert!(Limited::new(&limit, &resume, &[tp(2)]).is_done());
        // The table already past the end (another writer committed it).
        let past: SourcePosition = [(tp(0), 150), (tp(1), 60)].into_iter().collect();
        assert!(Limited::new(&limit, &past, &[tp(0), tp(1)]).is_done());
    }
}
