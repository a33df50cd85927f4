//! The publish: one `overwrite` snapshot on main, then the dead letters main's dead-letter table
//! does not hold yet.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
use futures::TryStreamExt;
use iceberg::table::Table;
use kappa_iceberg::days::DayField;
use kappa_iceberg::producer::{self, CatalogCommitter, Change, NewSnapshot};
use kappa_iceberg::{IcebergError, summary};
use tracing::info;

use super::{Request, Staged, table_error};
use crate::error::RuntimeError;
use crate::spec::Pipeline;

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    /// Main's snapshot that holds the backfill.
    pub snapshot_id: i64,
    /// Whether this run committed it (`false`: an earlier run of the same plan had).
    pub committed: bool,
    /// Stagings it took.
    pub attempts: u32,
    /// Files of the days this pipeline appended after the base, kept.
    pub kept: usize,
    /// Dead letters appended to the dead-letter table (the ones it did not hold yet).
    pub dead_letters: u64,
}

/// The snapshot of main's history that published backfill `id`, if one did (an expired one
/// too: `kappa maintain expire` archives the summaries it removes).
pub async fn already_published(table: &Table, id: &str) -> Result<Option<i64>, IcebergError> {
    Ok(kappa_iceberg::history::main_history(table)
        .await?
        .into_iter()
        .find(|s| s.summary.get(summary::BACKFILL_ID).is_some_and(|v| v == id))
        .map(|s| s.snapshot_id))
}

/// Publishes: one `overwrite` snapshot on main replacing the request's days (see the module
/// docs), carrying `summary_properties` (the backfill's identity and audit), unless main's
/// history shows this backfill published already; then the dead letters the dead-letter table
/// does not hold yet.
pub async fn publish(
    pipeline: &Pipeline,
    staged: &Staged,
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
    let mut earlier = None;
    let committed = producer::commit(
        pipeline.catalog.as_ref(),
        &committer,
        main.identifier(),
        spec.commit.max_attempts,
        async |table: &Table| {
            if let Some(snapshot) = already_published(table, &request.id).await? {
                earlier = Some(snapshot);
                return Ok(None);
            }
            let keep = kappa_iceberg::backfill::kept_files(
                table,
                &spec.pipeline,
                request.base_snapshot,
                field,
                &days,
            )
            .await?;
            kept = keep.len();
            Ok(Some(NewSnapshot {
                branch: iceberg::spec::MAIN_BRANCH.to_string(),
                change: Change::ReplaceDays {
                    field,
                    days: days.clone(),
                    keep,
                },
                files: staged.files.clone(),
                summary: summary_properties.clone(),
                properties: HashMap::new(),
            }))
        },
    )
    .await?;
    let (snapshot_id, attempts) = match (committed, earlier) {
        (Some(committed), _) => {
            info!(
                snapshot = committed.snapshot_id,
                "published the backfill on main"
            );
            (committed.snapshot_id, committed.attempts)
        }
        (None, Some(snapshot)) => {
            info!(snapshot, "the backfill was published before");
            (snapshot, 0)
        }
        (None, None) => {
            return Err(RuntimeError::Invariant(
                "a publish committed nothing and found no earlier one".into(),
            ));
        }
    };
    kappa_core::crash_point("backfill::published");
    let dead_letters = append_dead_letters(pipeline, &committer, staged, &request.id).await?;
    Ok(Published {
        snapshot_id,
        committed: earlier.is_none(),
        attempts,
        kept,
        dead_letters,
    })
}

/// Appends the staged dead letters the dead-letter table does not hold yet (by topic,
/// partition and offset): one row per rejected record, however often it is reprocessed.
/// Idempotent: a rerun finds them held.
async fn append_dead_letters(
    pipeline: &Pipeline,
    committer: &CatalogCommitter,
    staged: &Staged,
    id: &str,
) -> Result<u64, RuntimeError> {
    if staged.dead_letter_files.is_empty() {
        return Ok(0);
    }
    let name = pipeline.dlq.name();
    let dlq = pipeline
        .catalog
        .load_table(pipeline.dlq.table().identifier())
        .await
        .map_err(|e| table_error(name, "loading the table", e))?;
    let held = held_dead_letters(&dlq, name).await?;
    let mut new = Vec::new();
    for file in &staged.dead_letter_files {
        kappa_iceberg::writer::read_data_file(&dlq, file.file_path(), |batch| {
            let fresh = not_held(batch, &held);
            if fresh.true_count() > 0 {
                let rows =
                    arrow_select::filter::filter_record_batch(batch, &fresh).map_err(|e| {
                        iceberg::Error::new(
                            iceberg::ErrorKind::Unexpected,
                            "selecting dead letters",
                        )
                        .with_source(e)
                    })?;
                new.push(rows);
            }
            Ok(())
        })
        .await
        .map_err(|e| table_error(name, "reading staged dead letters", e))?;
    }
    let count: u64 = new.iter().map(|b| b.num_rows() as u64).sum();
    if count == 0 {
        return Ok(0);
    }
    let files = kappa_iceberg::writer::write_data_files(
        &dlq,
        &new,
        &format!("backfill-{id}-{}", uuid::Uuid::new_v4().simple()),
        &pipeline.spec.writer,
    )
    .await
    .map_err(|e| table_error(name, "writing dead letters", e))?;
    let summary = HashMap::from([(summary::BACKFILL_ID.to_string(), id.to_string())]);
    producer::commit(
        pipeline.catalog.as_ref(),
        committer,
        dlq.identifier(),
        pipeline.spec.commit.max_attempts,
        async |_: &Table| {
            Ok(Some(NewSnapshot {
                branch: iceberg::spec::MAIN_BRANCH.to_string(),
                change: Change::Append,
                files: files.clone(),
                summary: summary.clone(),
                properties: HashMap::new(),
            }))
        },
    )
    .await?;
    Ok(count)
}

type Coordinates = HashSet<(String, i32, i64)>;

/// Which rows of a dead-letter batch the table does not hold.
fn not_held(batch: &RecordBatch, held: &Coordinates) -> BooleanArray {
    let columns = (
        batch.column_by_name("kafka_topic"),
        batch.column_by_name("kafka_partition"),
        batch.column_by_name("kafka_offset"),
    );
    let (Some(topic), Some(partition), Some(offset)) = columns else {
        return BooleanArray::from(vec![true; batch.num_rows()]);
    };
    let (Some(topic), Some(partition), Some(offset)) = (
        topic.as_string_opt::<i32>(),
        partition.as_primitive_opt::<Int32Type>(),
        offset.as_primitive_opt::<Int64Type>(),
    ) else {
        return BooleanArray::from(vec![true; batch.num_rows()]);
    };
    (0..batch.num_rows())
        .map(|i| {
            Some(!held.contains(&(
                topic.value(i).to_string(),
                partition.value(i),
                offset.value(i),
            )))
        })
        .collect()
}

/// (topic, partition, offset) of every row of the dead-letter table.
async fn held_dead_letters(dlq: &Table, name: &str) -> Result<Coordinates, RuntimeError> {
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
            batch
                .column_by_name("kafka_topic")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("kafka_partition")
                .and_then(|c| c.as_primitive_opt::<Int32Type>()),
            batch
                .column_by_name("kafka_offset")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            continue;
        };
        for i in (0..batch.num_rows()).filter(|i| topic.is_valid(*i)) {
            held.insert((
                topic.value(i).to_string(),
                partition.value(i),
                offset.value(i),
            ));
        }
    }
    Ok(held)
}
