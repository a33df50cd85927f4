//! The pipeline loop.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow_array::RecordBatch;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use kappa_core::{Classify, OffsetRange, Source, SourcePosition, Transform};
use kappa_iceberg::writer::{StreamingWriter, WriterOptions};
use kappa_iceberg::{CommitOutcome, Committer, IcebergError, PendingCommit, summary};
use tokio::sync::mpsc;
use tracing::{debug, info, instrument};

use crate::buffer::Buffer;
use crate::dlq::dlq_batch;
use crate::error::RuntimeError;
use crate::spec::Pipeline;
use crate::stats::RunSummary;

/// Runs `source` through `logic` into the pipeline's tables until the source ends.
///
/// Resumes from the main table's committed position: the source is sought `dedup_window` offsets
/// earlier so that the logic's dedup state is rebuilt from the archive (those records are fed to
/// `warm_up` and never written again); everything from the committed position on is processed.
#[instrument(skip_all, fields(pipeline = %pipeline.spec.pipeline))]
pub async fn run_pipeline<S, T>(
    pipeline: Pipeline,
    mut source: S,
    mut logic: T,
) -> Result<RunSummary, RuntimeError>
where
    S: Source,
    T: Transform,
{
    let started = Instant::now();
    let Pipeline {
        spec, main, dlq, ..
    } = pipeline;
    let resume = main.state().position.clone();
    let warm_from: SourcePosition = resume
        .iter()
        .map(|(tp, next)| (tp.clone(), (next - spec.dedup_window).max(0)))
        .collect();
    source
        .seek(&warm_from)
        .await
        .map_err(RuntimeError::source)?;
    info!(resume = %resume.to_json(), "resuming from the table's committed offsets");

    // Three stages on their own tasks, so that reading, encoding and committing overlap:
    // this loop (read + logic) -> write_loop (Parquet encoding) -> commit_loop (catalog).
    let (to_commit, commit_rx) = mpsc::channel::<Flushed>(1);
    let (to_writer, writer_rx) = mpsc::channel::<ToWriter>(WRITER_QUEUE);
    let writer_task = tokio::spawn(write_loop(
        writer_rx,
        to_commit,
        main.table().clone(),
        main.name().to_string(),
        spec.writer.clone(),
    ));
    let commit_task = tokio::spawn(commit_loop(
        commit_rx,
        main,
        dlq,
        spec.pipeline.clone(),
        spec.allowed_lateness.as_micros() as i64,
    ));

    let table_mapping = spec.mapping.clone();
    let mut buffer = Buffer::default();
    let mut warm_up_records = 0u64;
    let logic_err = |e: T::Error| RuntimeError::Logic {
        logic: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("logic")
            .to_string(),
        kind: e.kind(),
        source: Box::new(e),
    };
    let result: Result<(), RuntimeError> = async {
        while let Some(batch) = source.next_batch().await.map_err(RuntimeError::source)? {
            kappa_core::crash_point("runtime::read");
            batch.check().map_err(RuntimeError::Invariant)?;
            let batch = match resume.next_offset(&batch.partition) {
                Some(next) if batch.range.start < next => {
                    let (before, after) = batch.split_at(next);
                    warm_up_records += before.records_in;
                    logic.warm_up(&before).map_err(logic_err)?;
                    if after.range.is_empty() {
                        continue;
                    }
                    after
                }
                _ => batch,
            };
            let (batch, stats) = logic.apply(batch).map_err(logic_err)?;
            batch.check().map_err(RuntimeError::Invariant)?;
            let rows = buffer.add(batch, stats, &table_mapping, &spec.event_time_column)?;
            // A failed send means a later stage stopped: its error is reported below.
            if let Some(rows) = rows
                && to_writer.send(ToWriter::Rows(rows)).await.is_err()
            {
                break;
            }
            if buffer.should_flush(&spec.commit)
                && to_writer
                    .send(ToWriter::Flush(std::mem::take(&mut buffer)))
                    .await
                    .is_err()
            {
                break;
            }
        }
        if !buffer.is_empty() {
            let _ = to_writer.send(ToWriter::Flush(buffer)).await;
        }
        Ok(())
    }
    .await;
    drop(to_writer);
    let written = writer_task
        .await
        .map_err(|e| RuntimeError::Invariant(format!("writer task: {e}")))?;
    let committed = commit_task
        .await
        .map_err(|e| RuntimeError::Invariant(format!("commit task: {e}")))?;
    // The earliest stage's error is the cause; later ones only saw their input end.
    result?;
    written?;
    let mut summary = committed?;
    summary.warm_up_records = warm_up_records;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Batches queued between the read loop and the writer (backpressure on reading).
const WRITER_QUEUE: usize = 4;

/// What the read loop hands the writer.
enum ToWriter {
    /// Rows for the main table, in its Arrow schema.
    Rows(RecordBatch),
    /// Everything since the last flush is in: close the files and commit them with this buffer.
    Flush(Buffer),
}

/// A flush ready to commit: its bookkeeping and the data files holding its rows.
type Flushed = (Buffer, Vec<DataFile>);

/// Encodes rows into data files as they arrive; at each flush closes the files and passes them
/// on with the flush's bookkeeping. Files are named `<run uuid>-<flush>-<n>.parquet`.
async fn write_loop(
    mut rx: mpsc::Receiver<ToWriter>,
    to_commit: mpsc::Sender<Flushed>,
    table: Table,
    table_name: String,
    options: WriterOptions,
) -> Result<(), RuntimeError> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let fail = |source: iceberg::Error| {
        RuntimeError::Sink(IcebergError::Write {
            table: table_name.clone(),
            source: Box::new(source),
        })
    };
    let mut flushes = 0u64;
    let mut writer: Option<StreamingWriter> = None;
    while let Some(message) = rx.recv().await {
        match message {
            ToWriter::Rows(rows) => {
                let open = match writer.as_mut() {
                    Some(open) => open,
                    None => writer.insert(
                        StreamingWriter::new(&table, &format!("{run}-{flushes:05}"), &options)
                            .await
                            .map_err(fail)?,
                    ),
                };
                open.write(&rows).await.map_err(fail)?;
                kappa_core::crash_point("runtime::write");
            }
            ToWriter::Flush(buffer) => {
                flushes += 1;
                let files = match writer.take() {
                    Some(open) => open.finish().await.map_err(fail)?,
                    None => Vec::new(),
                };
                if to_commit.send((buffer, files)).await.is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Commits flushes in order: the dead-letter table first, then the main table.
async fn commit_loop(
    mut rx: mpsc::Receiver<Flushed>,
    mut main: Committer,
    mut dlq: Committer,
    pipeline: String,
    lateness_micros: i64,
) -> Result<RunSummary, RuntimeError> {
    let mut summary = RunSummary::default();
    while let Some((buffer, files)) = rx.recv().await {
        summary.records_in += buffer.records_in;
        summary.duplicates += buffer.duplicates;
        summary.undecodable += buffer.undecodable;
        summary.unmappable += buffer.unmappable;
        summary.rejected += buffer.rejected;
        kappa_core::crash_point("runtime::before-commit");
        commit_dead_letters(&mut dlq, &buffer, &pipeline, &mut summary).await?;
        kappa_core::crash_point("runtime::between-commits");
        let counters = vec![
            (summary::RECORDS_IN, buffer.records_in),
            (summary::DUPLICATES, buffer.duplicates),
            (summary::DEAD_LETTERED, buffer.dead_lettered()),
        ];
        let pending = PendingCommit {
            input: buffer.input,
            watermark: buffer.max_event_time.map(|m| m - lateness_micros),
            max_event_time: buffer.max_event_time,
            batches: Vec::new(),
            files,
            counters,
        };
        match main.commit(pending).await? {
            CommitOutcome::Committed {
                rows,
                data_files,
                bytes,
                attempts,
                ..
            } => {
                summary.commits += 1;
                summary.rows_written += rows;
                summary.data_files += data_files as u64;
                summary.bytes_written += bytes;
                summary.conflict_retries += u64::from(attempts.saturating_sub(1));
            }
            CommitOutcome::AlreadyCommitted => summary.already_committed += 1,
        }
    }
    summary.positions = main
        .state()
        .position
        .iter()
        .map(|(tp, next)| (tp.clone(), next))
        .collect();
    summary.snapshot_id = main.state().snapshot_id;
    Ok(summary)
}

/// Commits the buffer's dead letters that the DLQ table does not hold yet.
///
/// The DLQ table keeps its own offsets. It may be ahead of the main table (a crash between the
/// two commits: letters below its position are already there) or behind it (flushes without
/// dead letters do not commit to it): its input range starts at its own position either way.
async fn commit_dead_letters(
    dlq: &mut Committer,
    buffer: &Buffer,
    pipeline: &str,
    summary: &mut RunSummary,
) -> Result<(), RuntimeError> {
    let mut input = BTreeMap::new();
    let mut batches = Vec::new();
    for (tp, range) in &buffer.input {
        let start = dlq.state().position.next_offset(tp).unwrap_or(range.start);
        if start >= range.end && dlq.state().position.next_offset(tp).is_some() {
            continue;
        }
        input.insert(tp.clone(), OffsetRange::new(start, range.end));
        let letters: Vec<_> = buffer
            .dead
            .get(tp)
            .map(|all| all.iter().filter(|l| l.offset >= start).cloned().collect())
            .unwrap_or_default();
        if !letters.is_empty() {
            batches.push(dlq_batch(pipeline, tp, &letters)?);
        }
    }
    if batches.is_empty() {
        return Ok(());
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let pending = PendingCommit {
        input,
        batches,
        counters: vec![(summary::ROWS, rows)],
        ..PendingCommit::default()
    };
    match dlq.commit(pending).await? {
        CommitOutcome::Committed { rows, .. } => {
            summary.dlq_commits += 1;
            summary.dlq_rows_written += rows;
        }
        CommitOutcome::AlreadyCommitted => debug!("dead letters already committed"),
    }
    Ok(())
}
