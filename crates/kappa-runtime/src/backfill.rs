//! Backfills: history reprocessed with the pipeline's logic, audited, and published as one
//! atomic replacement of whole day partitions (`kappa backfill`; docs/backfill.md).
//!
//! ```text
//!  reprocess  archive [0, base position) ─► logic, dedup, record rules, lateness (as a replay
//!             from the start would) ─► rows of the days ─► staged data files (no snapshot
//!             references them: no reader sees them)
//!  audit      commit gates on the days' rows, the partition gate on each day, and each day
//!             compared with main (rows, keys missing and new, column sums)
//!  publish    one `overwrite` snapshot on main: the days' files as of the base are replaced by
//!             the staged files; files this pipeline appended to those days since the base
//!             (live ingestion carrying on) are kept; dead letters main's dead-letter table
//!             does not hold yet are appended to it after
//! ```
//!
//! The base is the table's state when the backfill starts (or an older commit of the pipeline
//! when the archive does not reach that far yet): every row main holds for offsets below the
//! base position is reprocessed, every row at or past it is the live pipeline's and stays. The
//! pipeline's position state is never touched.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use futures::TryStreamExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use kappa_core::{
    DeadLetter, EventTimes, OffsetRange, Source, SourceBatch, SourceEvent, SourcePosition,
    TopicPartition, Transform,
};
use kappa_iceberg::days::DayField;
use kappa_iceberg::diff::{DayDiff, DayStats};
use kappa_iceberg::producer::{self, CatalogCommitter, Change, NewSnapshot};
use kappa_iceberg::{IcebergError, summary};
use kappa_quality::{CommitCounts, CommitProfile, Day, QualityReport};
use tokio::sync::mpsc;
use tracing::info;

use crate::buffer::{Buffer, Lateness};
use crate::dlq::dlq_batch;
use crate::error::RuntimeError;
use crate::spec::Pipeline;
use crate::write::{Flushed, ToWriter, WRITER_QUEUE, write_loop};

const DAY_MICROS: i64 = 86_400_000_000;

/// What to reprocess.
#[derive(Debug, Clone)]
pub struct Request {
    /// The backfill's id (names its staged files and its snapshots).
    pub id: String,
    /// First and last day, days since 1970-01-01 (UTC), both inclusive.
    pub days: (i32, i32),
    /// Main's snapshot the backfill replaces the days of (`None`: main had none).
    pub base_snapshot: Option<i64>,
    /// Offsets below these (per partition) are reprocessed: the base's position.
    pub upper: SourcePosition,
    /// Offsets the pipeline never ingested (skipped at a first commit, moved past by an
    /// operator): not reprocessed either.
    pub excluded: BTreeMap<TopicPartition, Vec<OffsetRange>>,
    /// The column dedup keys are compared on in the audit.
    pub key_column: String,
}

impl Request {
    fn covers(&self, day: i32) -> bool {
        (self.days.0..=self.days.1).contains(&day)
    }

    /// Day numbers of the request.
    pub fn day_set(&self) -> BTreeSet<i32> {
        (self.days.0..=self.days.1).collect()
    }
}

/// The reprocessed days, staged: files written, nothing committed.
#[derive(Debug)]
pub struct Reprocessed {
    /// Data files of the days' rows (in no snapshot yet).
    pub files: Vec<DataFile>,
    /// The days' rows, measured for the comparison with main.
    pub stats: DayStats,
    /// The commit gates' profile of the days' rows.
    pub profile: CommitProfile,
    /// Bookkeeping of everything reprocessed (all days), for the completeness gate.
    pub counts: CommitCounts,
    /// Dead letters of the reprocessed records, per partition.
    pub dead: BTreeMap<TopicPartition, Vec<DeadLetter>>,
    /// Rows of the days written.
    pub rows: u64,
    /// Late rows left out (they belong to the late table, which keeps its own).
    pub late_routed: u64,
    /// Next offset read per partition.
    pub read_to: SourcePosition,
}

/// Reads `source` (an archive replay over the request's partitions) through `logic`, the
/// record rules and the lateness rule exactly as a replay from the start would, and writes the
/// rows of the request's days to staged data files of the main table.
pub async fn reprocess<S, T>(
    pipeline: &Pipeline,
    mut source: S,
    mut logic: T,
    request: &Request,
) -> Result<Reprocessed, RuntimeError>
where
    S: Source,
    T: Transform,
{
    let spec = &pipeline.spec;
    let main = pipeline.main.table().clone();
    let name = pipeline.main.name().to_string();
    let (to_commit, mut flushed) = mpsc::channel::<Flushed>(1);
    let (to_writer, writer_rx) = mpsc::channel::<ToWriter>(WRITER_QUEUE);
    let writer = tokio::spawn(write_loop(
        writer_rx,
        to_commit,
        main.clone(),
        name.clone(),
        spec.writer.clone(),
    ));
    let lateness = Lateness {
        column: spec.event_time_column.clone(),
        allowed_micros: spec.allowed_lateness.as_micros() as i64,
        route: pipeline.late.is_some(),
    };
    let mut times = EventTimes::default();
    let mut buffer = Buffer::default();
    let mut profile = spec.quality.profile();
    let mut stats = DayStats::new(&name, &spec.event_time_column, &request.key_column);
    let (mut rows, mut all_rows, mut late_routed) = (0u64, 0u64, 0u64);
    let mut read_to = SourcePosition::default();
    let logic_err = |e: T::Error| RuntimeError::Logic {
        logic: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("logic")
            .to_string(),
        kind: kappa_core::Classify::kind(&e),
        source: Box::new(e),
    };
    let read: Result<(), RuntimeError> = async {
        loop {
            let batch = match source.next_event().await.map_err(RuntimeError::source)? {
                SourceEvent::Batch(batch) => batch,
                SourceEvent::Idle => continue,
                SourceEvent::End => break,
                SourceEvent::Reassigned(_) | SourceEvent::SchemaChanged(_) => {
                    return Err(RuntimeError::Invariant(
                        "a backfill's archive source changed its partitions or schema".into(),
                    ));
                }
            };
            kappa_core::crash_point("backfill::read");
            batch.check().map_err(RuntimeError::Invariant)?;
            for batch in within(batch, request) {
                let tp = batch.partition.clone();
                read_to.advance(&tp, batch.range.end);
                let (batch, transformed) = logic.apply(batch).map_err(logic_err)?;
                let (batch, rules) = spec
                    .quality
                    .apply_rules(batch)
                    .map_err(RuntimeError::Quality)?;
                batch.check().map_err(RuntimeError::Invariant)?;
                all_rows += batch.num_rows() as u64;
                profile.observe_rules(&rules);
                let days = in_days(&batch.records, &spec.event_time_column, request);
                profile
                    .observe(&filter(&batch.records, &days)?, None)
                    .map_err(RuntimeError::Quality)?;
                // The buffer judges lateness on every row, as the pipeline did; only the
                // bookkeeping of one batch is kept in it at a time.
                buffer.input.clear();
                let before = buffer.late;
                let table_rows =
                    buffer.add(batch, transformed, &spec.mapping, &mut times, &lateness)?;
                if lateness.route {
                    late_routed += buffer.late - before;
                    buffer.late_rows.clear();
                }
                let Some(table_rows) = table_rows else {
                    continue;
                };
                let days = in_days(&table_rows, &spec.event_time_column, request);
                let kept = filter(&table_rows, &days)?;
                if kept.num_rows() == 0 {
                    continue;
                }
                rows += kept.num_rows() as u64;
                stats.add(&kept).map_err(RuntimeError::Sink)?;
                if to_writer.send(ToWriter::Rows(kept)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    let mut files = Vec::new();
    if read.is_ok()
        && to_writer
            .send(ToWriter::Flush(Box::default()))
            .await
            .is_ok()
        && let Some((_, written)) = flushed.recv().await
    {
        files = written;
    }
    drop(to_writer);
    let written = writer
        .await
        .map_err(|e| RuntimeError::Invariant(format!("writer task: {e}")))?;
    if let Err(e) = read.and(written) {
        pipeline.main.discard(Some(files)).await;
        return Err(e);
    }
    let counts = CommitCounts {
        records_in: buffer.records_in,
        written: all_rows,
        deduplicated: buffer.duplicates,
        dead_lettered: buffer.dead_lettered(),
        source_count: None,
    };
    info!(
        records = counts.records_in,
        rows,
        files = files.len(),
        "reprocessed the archive into staged files"
    );
    kappa_core::crash_point("backfill::staged");
    Ok(Reprocessed {
        files,
        stats,
        profile,
        counts,
        dead: std::mem::take(&mut buffer.dead),
        rows,
        late_routed,
        read_to,
    })
}

/// The parts of `batch` the request reprocesses: below the base position, outside the offsets
/// the pipeline never ingested.
fn within(batch: SourceBatch, request: &Request) -> Vec<SourceBatch> {
    let Some(end) = request.upper.next_offset(&batch.partition) else {
        return Vec::new();
    };
    if batch.range.start >= end {
        return Vec::new();
    }
    let mut rest = if batch.range.end > end {
        batch.split_at(end).0
    } else {
        batch
    };
    let mut parts = Vec::new();
    let excluded = request
        .excluded
        .get(&rest.partition)
        .cloned()
        .unwrap_or_default();
    for range in excluded {
        if range.end <= rest.range.start || range.start >= rest.range.end {
            continue;
        }
        let (before, after) = rest.split_at(range.start);
        if !before.range.is_empty() {
            parts.push(before);
        }
        rest = after.split_at(range.end).1;
    }
    if !rest.range.is_empty() {
        parts.push(rest);
    }
    parts
}

/// Which rows of `batch` have an event time on one of the request's days.
fn in_days(batch: &RecordBatch, column: &str, request: &Request) -> BooleanArray {
    match batch.column_by_name(column) {
        Some(array)
            if matches!(
                array.data_type(),
                DataType::Timestamp(TimeUnit::Microsecond, _)
            ) =>
        {
            array
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|t| {
                    Some(t.is_some_and(|t| {
                        i32::try_from(t.div_euclid(DAY_MICROS)).is_ok_and(|d| request.covers(d))
                    }))
                })
                .collect()
        }
        _ => BooleanArray::from(vec![false; batch.num_rows()]),
    }
}

fn filter(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch, RuntimeError> {
    if mask.true_count() == batch.num_rows() {
        return Ok(batch.clone());
    }
    arrow_select::filter::filter_record_batch(batch, mask)
        .map_err(|e| RuntimeError::Invariant(format!("selecting the backfilled days' rows: {e}")))
}

/// The audit: what the gates say of the days' new rows, and each day against main.
#[derive(Debug)]
pub struct Audit {
    /// Commit gates over the reprocessed rows, the partition gate on each day.
    pub report: QualityReport,
    /// Each day of the request: main (first) against the backfill (other).
    pub days: Vec<DayDiff>,
}

/// Audits `reprocessed`: main's rows of the days (read from its current snapshot) against the
/// new ones, and the gates.
pub async fn audit(
    pipeline: &Pipeline,
    reprocessed: &Reprocessed,
    request: &Request,
) -> Result<Audit, RuntimeError> {
    let spec = &pipeline.spec;
    let main = pipeline.main.table();
    let before = DayStats::read(
        main,
        &spec.event_time_column,
        &request.key_column,
        Some(request.days),
    )
    .await?;
    let compared = before.compare(&reprocessed.stats);
    let days = request
        .day_set()
        .into_iter()
        .map(|day| {
            compared
                .iter()
                .find(|d| d.day == day)
                .cloned()
                .unwrap_or(DayDiff {
                    day,
                    rows: (0, 0),
                    missing: 0,
                    extra: 0,
                    sums: Vec::new(),
                })
        })
        .collect();
    let mut report = spec
        .quality
        .evaluate_commit(&reprocessed.counts, &reprocessed.profile);
    if let Some(field) = DayField::of(main, &spec.event_time_column) {
        let mut per_day = field.rows_in(main).await?;
        let mut staged = BTreeMap::new();
        for day in request.day_set() {
            per_day.insert(day, reprocessed.stats.rows(day));
        }
        for (day, rows) in per_day {
            staged.insert(Day(day), rows);
        }
        for day in request.day_set() {
            report.extend(spec.quality.evaluate_day(Day(day), &staged));
        }
    }
    Ok(Audit { report, days })
}

/// Deletes a reprocessing's staged files (a dry run, a blocked gate).
pub async fn discard(pipeline: &Pipeline, reprocessed: Reprocessed) {
    pipeline.main.discard(Some(reprocessed.files)).await;
}

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    /// Main's new snapshot.
    pub snapshot_id: i64,
    /// Stagings it took.
    pub attempts: u32,
    /// Files of the days this pipeline appended after the base, kept.
    pub kept: usize,
    /// Dead letters appended to the dead-letter table (the ones it did not hold yet).
    pub dead_letters: u64,
}

/// Publishes: one `overwrite` snapshot on main replacing the request's days (see the module
/// docs), carrying `summary_properties` (the backfill's identity and audit); then the dead
/// letters the dead-letter table does not hold yet.
pub async fn publish(
    pipeline: &Pipeline,
    reprocessed: &Reprocessed,
    request: &Request,
    summary_properties: HashMap<String, String>,
) -> Result<Published, RuntimeError> {
    let spec = &pipeline.spec;
    let committer = CatalogCommitter::connect(&spec.catalog).await?;
    let main = pipeline.main.table();
    let field = DayField::of(main, &spec.event_time_column).ok_or_else(|| {
        RuntimeError::Sink(IcebergError::Invalid {
            table: pipeline.main.name().to_string(),
            message: format!(
                "its partition spec has no day({}) field: a backfill replaces day partitions",
                spec.event_time_column
            ),
        })
    })?;
    let days = request.day_set();
    let mut kept = 0;
    let committed = producer::commit(
        pipeline.catalog.as_ref(),
        &committer,
        main.identifier(),
        spec.commit.max_attempts,
        async |table: &Table| {
            let keep = kappa_iceberg::backfill::kept_files(
                table,
                &spec.pipeline,
                request.base_snapshot,
                field,
                &days,
            )
            .await?;
            kept = keep.len();
            Ok(NewSnapshot {
                branch: iceberg::spec::MAIN_BRANCH.to_string(),
                change: Change::ReplaceDays {
                    field,
                    days: days.clone(),
                    keep,
                },
                files: reprocessed.files.clone(),
                summary: summary_properties.clone(),
                properties: HashMap::new(),
            })
        },
    )
    .await?;
    info!(
        snapshot = committed.snapshot_id,
        "published the backfill on main"
    );
    kappa_core::crash_point("backfill::published");
    let dead_letters =
        append_dead_letters(pipeline, &committer, reprocessed, &summary_properties).await?;
    Ok(Published {
        snapshot_id: committed.snapshot_id,
        attempts: committed.attempts,
        kept,
        dead_letters,
    })
}

/// Appends the reprocessing's dead letters the dead-letter table does not hold yet (by topic,
/// partition and offset): one row per rejected record, however often it is reprocessed.
async fn append_dead_letters(
    pipeline: &Pipeline,
    committer: &CatalogCommitter,
    reprocessed: &Reprocessed,
    summary_properties: &HashMap<String, String>,
) -> Result<u64, RuntimeError> {
    if reprocessed.dead.values().all(Vec::is_empty) {
        return Ok(0);
    }
    let dlq = pipeline
        .catalog
        .load_table(pipeline.dlq.table().identifier())
        .await
        .map_err(|e| table_error(pipeline.dlq.name(), "loading the table", e))?;
    let held = held_dead_letters(&dlq, pipeline.dlq.name()).await?;
    let mut batches = Vec::new();
    let mut count = 0u64;
    for (tp, letters) in &reprocessed.dead {
        let new: Vec<DeadLetter> = letters
            .iter()
            .filter(|l| !held.contains(&(tp.topic.clone(), tp.partition, l.offset)))
            .cloned()
            .collect();
        if !new.is_empty() {
            count += new.len() as u64;
            batches.push(dlq_batch(&pipeline.spec.pipeline, tp, &new)?);
        }
    }
    if batches.is_empty() {
        return Ok(0);
    }
    let prefix = format!(
        "backfill-{}",
        summary_properties
            .get(summary::BACKFILL_ID)
            .map_or("unnamed", String::as_str)
    );
    let files =
        kappa_iceberg::writer::write_data_files(&dlq, &batches, &prefix, &pipeline.spec.writer)
            .await
            .map_err(|e| table_error(pipeline.dlq.name(), "writing dead letters", e))?;
    producer::commit(
        pipeline.catalog.as_ref(),
        committer,
        dlq.identifier(),
        pipeline.spec.commit.max_attempts,
        async |_: &Table| {
            Ok(NewSnapshot {
                branch: iceberg::spec::MAIN_BRANCH.to_string(),
                change: Change::Append,
                files: files.clone(),
                summary: summary_properties.clone(),
                properties: HashMap::new(),
            })
        },
    )
    .await?;
    Ok(count)
}

/// (topic, partition, offset) of every row of the dead-letter table.
async fn held_dead_letters(
    dlq: &Table,
    name: &str,
) -> Result<HashSet<(String, i32, i64)>, RuntimeError> {
    let mut held = HashSet::new();
    if dlq.metadata().current_snapshot().is_none() {
        return Ok(held);
    }
    let failed = |e| table_error(name, "reading the dead letters it holds", e);
    let mut stream = dlq
        .scan()
        .select(["kafka_topic", "kafka_partition", "kafka_offset"])
        .build()
        .map_err(failed)?
        .to_arrow()
        .await
        .map_err(failed)?;
    while let Some(batch) = stream.try_next().await.map_err(failed)? {
        let (Some(topic), Some(partition), Some(offset)) = (
            batch.column_by_name("kafka_topic"),
            batch.column_by_name("kafka_partition"),
            batch.column_by_name("kafka_offset"),
        ) else {
            continue;
        };
        let (Some(topic), Some(partition), Some(offset)) = (
            topic.as_string_opt::<i32>(),
            partition.as_primitive_opt::<arrow_array::types::Int32Type>(),
            offset.as_primitive_opt::<arrow_array::types::Int64Type>(),
        ) else {
            continue;
        };
        for i in 0..batch.num_rows() {
            if topic.is_valid(i) {
                held.insert((
                    topic.value(i).to_string(),
                    partition.value(i),
                    offset.value(i),
                ));
            }
        }
    }
    Ok(held)
}

fn table_error(table: &str, operation: &str, source: iceberg::Error) -> RuntimeError {
    RuntimeError::Sink(IcebergError::Table {
        table: table.to_string(),
        operation: operation.to_string(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("orders", 0)
    }

    fn batch(start: i64, end: i64) -> SourceBatch {
        let offsets: Vec<i64> = (start..end).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: ArrayRef = Arc::new(Int64Array::from(offsets.clone()));
        SourceBatch {
            partition: tp(),
            range: OffsetRange::new(start, end),
            records: RecordBatch::try_new(schema, vec![values]).unwrap(),
            records_in: offsets.len() as u64,
            offsets,
            dead_letters: Vec::new(),
        }
    }

    fn request(upper: i64, excluded: &[(i64, i64)]) -> Request {
        Request {
            id: "t".into(),
            days: (0, 0),
            base_snapshot: None,
            upper: [(tp(), upper)].into_iter().collect(),
            excluded: [(
                tp(),
                excluded
                    .iter()
                    .map(|(s, e)| OffsetRange::new(*s, *e))
                    .collect(),
            )]
            .into_iter()
            .collect(),
            key_column: "v".into(),
        }
    }

    fn offsets(parts: &[SourceBatch]) -> Vec<i64> {
        parts.iter().flat_map(|b| b.offsets.clone()).collect()
    }

    #[test]
    fn only_offsets_below_the_base_position_and_never_skipped_are_reprocessed() {
        let parts = within(batch(0, 10), &request(8, &[(2, 4)]));
        assert_eq!(offsets(&parts), vec![0, 1, 4, 5, 6, 7]);
        assert!(parts.iter().all(|p| p.check().is_ok()));
        assert!(within(batch(8, 12), &request(8, &[])).is_empty());
        let other = SourceBatch {
            partition: TopicPartition::new("orders", 1),
            ..batch(0, 3)
        };
        assert!(
            within(other, &request(8, &[])).is_empty(),
            "a partition the base holds nothing of"
        );
        assert_eq!(
            offsets(&within(batch(0, 5), &request(8, &[(0, 5)]))),
            Vec::<i64>::new()
        );
    }
}
