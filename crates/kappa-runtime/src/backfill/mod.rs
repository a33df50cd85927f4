//! Backfills: history reprocessed with the pipeline's logic, audited, and published as one
//! atomic replacement of whole day partitions (`kappa backfill`; docs/backfill.md).
//!
//! ```text
//!  plan       the base (the table's state, or an earlier commit the archive reaches), its
//!             position per partition, and the partitions of each shard, balanced by archive
//!             bytes ([`Plan`], kept next to the table's data when sharded)
//!  reprocess  per shard: archive [0, base position) ─► logic, dedup, record rules, lateness
//!             (as a replay from the start would) ─► rows of the days ─► staged data files, and
//!             the dead letters ─► a staged dead-letter file; no snapshot references them: no
//!             reader sees them ([`Staged`], a shard manifest when sharded)
//!  audit      the staged files read back: commit gates on the days' rows, the partition gate on
//!             each day, and each day compared with main (rows, keys missing and new, sums)
//!  publish    one `overwrite` snapshot on main: the days' files as of the base are replaced by
//!             the staged files; files this pipeline appended to those days since the base
//!             (live ingestion carrying on) are kept; then the dead letters main's dead-letter
//!             table does not hold yet are appended to it
//! ```
//!
//! Every row main holds for offsets below the base position is rebuilt; every row at or past it
//! is the live pipeline's and stays. The pipeline's position state is never touched.

mod audit;
mod publish;
mod stage;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use iceberg::spec::DataFile;
use kappa_core::{
    DeadLetter, EventTimes, Logic, OFFSET_COLUMN, OffsetRange, PARTITION_COLUMN, Source,
    SourceBatch, SourceEvent, SourcePosition, TopicPartition,
};
use kappa_quality::{CommitCounts, RuleCounts};
use tokio::sync::mpsc;
use tracing::info;

use crate::buffer::{Buffer, Lateness};
use crate::dlq::dlq_batch;
use crate::error::RuntimeError;
use crate::spec::Pipeline;
use crate::write::{Flushed, ToWriter, WRITER_QUEUE, write_loop};

pub use audit::{Audit, audit};
pub use publish::{Published, already_published, publish};
pub use stage::{Plan, ShardPlan, balance, staged_paths};

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
    /// The pipeline's quarantine table (in the main table's namespace), whatever the gates'
    /// policies are now: records it holds are left out.
    pub quarantine_table: Option<String>,
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

/// Reprocessed history, staged: files written, nothing committed. One per shard; the shards'
/// add up ([`Staged::add`]).
#[derive(Debug, Default)]
pub struct Staged {
    /// Data files of the days' rows, of the main table (in no snapshot yet).
    pub files: Vec<DataFile>,
    /// Data files of the reprocessed records' dead letters, of the dead-letter table (in no
    /// snapshot yet; the publish appends the ones the table does not hold).
    pub dead_letter_files: Vec<DataFile>,
    /// Bookkeeping of everything reprocessed (all days), for the completeness gate.
    pub counts: CommitCounts,
    /// What the record rules saw and failed.
    pub rules: RuleCounts,
    /// Rows of the days written.
    pub rows: u64,
    /// Late rows left out (they belong to the late table, which keeps its own).
    pub late_routed: u64,
    /// Rows of the days left out because the quarantine table holds their records.
    pub quarantined: u64,
}

impl Staged {
    /// Adds another shard's.
    pub fn add(&mut self, other: Staged) {
        self.files.extend(other.files);
        self.dead_letter_files.extend(other.dead_letter_files);
        self.counts.records_in += other.counts.records_in;
        self.counts.written += other.counts.written;
        self.counts.deduplicated += other.counts.deduplicated;
        self.counts.dead_lettered += other.counts.dead_lettered;
        self.rules.add(&other.rules);
        self.rows += other.rows;
        self.late_routed += other.late_routed;
        self.quarantined += other.quarantined;
    }
}

/// Reads `source` (an archive replay over the request's partitions) through `logic`, the
/// record rules and the lateness rule exactly as a replay from the start would, and writes the
/// rows of the request's days to staged data files of the main table, the dead letters to a
/// staged file of the dead-letter table.
pub async fn reprocess<S, T>(
    pipeline: &Pipeline,
    mut source: S,
    mut logic: T,
    request: &Request,
) -> Result<Staged, RuntimeError>
where
    S: Source,
    T: Logic,
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
    let mut rules = RuleCounts::default();
    let (mut rows, mut all_rows, mut late_routed, mut quarantined) = (0u64, 0u64, 0u64, 0u64);
    // Records a quarantined flush holds stay there: each record has its row in one table.
    let held = match &request.quarantine_table {
        Some(name) => quarantined_records(pipeline, name).await?,
        None => HashSet::new(),
    };
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
                let (batch, transformed) = logic.apply(batch).map_err(logic_err)?;
                let (batch, counted) = spec
                    .quality
                    .apply_rules(batch)
                    .map_err(RuntimeError::Quality)?;
                batch.check().map_err(RuntimeError::Invariant)?;
                all_rows += batch.num_rows() as u64;
                rules.add(&counted);
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
                let mut days = in_days(&table_rows, &spec.event_time_column, request);
                if !held.is_empty() {
                    let (before, free) = (days.true_count(), not_held(&table_rows, &held, &days));
                    days = free;
                    quarantined += (before - days.true_count()) as u64;
                }
                let kept = filter(&table_rows, &days)?;
                if kept.num_rows() == 0 {
                    continue;
                }
                rows += kept.num_rows() as u64;
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
    let dead_letter_files =
        match stage_dead_letters(pipeline, &request.id, &std::mem::take(&mut buffer.dead)).await {
            Ok(files) => files,
            Err(e) => {
                pipeline.main.discard(Some(files)).await;
                return Err(e);
            }
        };
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
    Ok(Staged {
        files,
        dead_letter_files,
        counts,
        rules,
        rows,
        late_routed,
        quarantined,
    })
}

/// (Kafka partition, offset) of every row of quarantine table `name`, if it exists.
async fn quarantined_records(
    pipeline: &Pipeline,
    name: &str,
) -> Result<HashSet<(i32, i64)>, RuntimeError> {
    use futures::TryStreamExt;
    let mut held = HashSet::new();
    let ident = iceberg::TableIdent::new(
        pipeline.main.table().identifier().namespace().clone(),
        name.to_string(),
    );
    let exists = pipeline
        .catalog
        .table_exists(&ident)
        .await
        .map_err(|e| table_error(name, "looking the quarantine table up", e))?;
    if !exists {
        return Ok(held);
    }
    let table = pipeline
        .catalog
        .load_table(&ident)
        .await
        .map_err(|e| table_error(name, "loading the table", e))?;
    if table.metadata().current_snapshot().is_none() {
        return Ok(held);
    }
    let failed = |e| table_error(name, "reading the records it holds", e);
    let mut stream = table
        .scan()
        .select([PARTITION_COLUMN, OFFSET_COLUMN])
        .build()
        .map_err(failed)?
        .to_arrow()
        .await
        .map_err(failed)?;
    while let Some(batch) = stream.try_next().await.map_err(failed)? {
        let Some((partitions, offsets)) = coordinates(&batch) else {
            continue;
        };
        held.extend(
            partitions
                .values()
                .iter()
                .zip(offsets.values().iter())
                .map(|(p, o)| (*p, *o)),
        );
    }
    Ok(held)
}

/// The Kafka coordinate columns of a table batch.
fn coordinates(
    batch: &RecordBatch,
) -> Option<(&arrow_array::Int32Array, &arrow_array::Int64Array)> {
    use arrow_array::types::{Int32Type, Int64Type};
    Some((
        batch
            .column_by_name(PARTITION_COLUMN)?
            .as_primitive_opt::<Int32Type>()?,
        batch
            .column_by_name(OFFSET_COLUMN)?
            .as_primitive_opt::<Int64Type>()?,
    ))
}

/// `mask` without the rows whose (Kafka partition, offset) is in `held`.
fn not_held(batch: &RecordBatch, held: &HashSet<(i32, i64)>, mask: &BooleanArray) -> BooleanArray {
    let Some((partitions, offsets)) = coordinates(batch) else {
        return mask.clone();
    };
    (0..batch.num_rows())
        .map(|i| Some(mask.value(i) && !held.contains(&(partitions.value(i), offsets.value(i)))))
        .collect()
}

/// Writes dead letters as staged data files of the dead-letter table.
async fn stage_dead_letters(
    pipeline: &Pipeline,
    id: &str,
    dead: &BTreeMap<TopicPartition, Vec<DeadLetter>>,
) -> Result<Vec<DataFile>, RuntimeError> {
    let batches = dead
        .iter()
        .filter(|(_, letters)| !letters.is_empty())
        .map(|(tp, letters)| dlq_batch(&pipeline.spec.pipeline, tp, letters))
        .collect::<Result<Vec<_>, _>>()?;
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    kappa_iceberg::writer::write_data_files(
        pipeline.dlq.table(),
        &batches,
        &format!("backfill-{id}-{}", uuid::Uuid::new_v4().simple()),
        &pipeline.spec.writer,
    )
    .await
    .map_err(|e| table_error(pipeline.dlq.name(), "writing staged dead letters", e))
}

/// Deletes staged files (a dry run, a blocked gate, a publish refused).
pub async fn discard(pipeline: &Pipeline, staged: Staged) {
    pipeline.main.discard(Some(staged.files)).await;
    pipeline.dlq.discard(Some(staged.dead_letter_files)).await;
}

fn table_error(table: &str, operation: &str, source: iceberg::Error) -> RuntimeError {
    RuntimeError::Sink(kappa_iceberg::IcebergError::Table {
        table: table.to_string(),
        operation: operation.to_string(),
        source: Box::new(source),
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
            quarantine_table: None,
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
