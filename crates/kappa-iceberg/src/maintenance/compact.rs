//! Compaction: the small files of each partition rewritten into files of the target size, one
//! `replace` snapshot per partition, the rows unchanged.
//!
//! A partition is rewritten when it holds more files than its bytes need
//! (`ceil(bytes / target_file_size)`, at least one). Its files are read in order of their
//! smallest event time (the manifests' column bounds), in chunks of about one target file; each
//! chunk's rows are sorted by the event time column and written through one rolling writer, so
//! each new file holds a run of event time, sorted within the run (a file that spans two chunks
//! holds two sorted runs). Memory: one chunk's rows, decoded, twice (read and sorted).
//!
//! The commit deletes exactly the files read and adds the new ones: a live append to the same
//! partition in between is a conflict, after which the rewrite is staged again on the newer table
//! (the appended files stay); if one of the files read is no longer live (another compaction, a
//! backfill's publish), the partition is left alone and the new files become orphans for
//! [`super::orphans`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use arrow_array::RecordBatch;
use iceberg::TableIdent;
use iceberg::spec::{DataFile, Literal, PrimitiveLiteral, Struct};
use iceberg::table::Table;
use serde::Serialize;

use super::{failed, live_data_files};
use crate::commit::table_name;
use crate::days::DayField;
use crate::error::IcebergError;
use crate::producer::{self, CatalogCommitter, Change, NewSnapshot};
use crate::writer::{StreamingWriter, WriterOptions};

/// Summary property of a compaction's snapshot.
pub const MAINTENANCE: &str = "kappa.maintenance";

/// What [`compact`] does.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Size of the files written (bytes).
    pub target_file_size: u64,
    /// ZSTD level of the files written, unless the table sets `write.parquet.compression-level`.
    pub zstd_level: i32,
    /// Cap of a column chunk's dictionary in bytes, unless the table sets
    /// `write.parquet.dict-size-bytes`.
    pub dictionary_size: usize,
    /// The event time column: rows are sorted by it, files read in order of it, and `days`
    /// select its `day(...)` partitions. A table without it is compacted unsorted, whole.
    pub event_time_column: String,
    /// Only the day partitions in this range (days since 1970-01-01, inclusive); `None`: every
    /// partition.
    pub days: Option<(i32, i32)>,
    /// Plan only: report what would be rewritten, write and commit nothing.
    pub dry_run: bool,
    /// Stagings a partition's commit may take (one more per conflict with another writer).
    pub max_attempts: u32,
    /// Columns written without a Parquet dictionary ([`WriterOptions::distinct_columns`]).
    pub distinct_columns: Vec<String>,
}

/// What happened to one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Rewritten and committed.
    Rewritten {
        /// The `replace` snapshot.
        snapshot_id: i64,
        /// Stagings it took.
        attempts: u32,
    },
    /// `--dry-run`: would be rewritten.
    Planned,
    /// Left alone: one of its files was rewritten or deleted by another commit meanwhile.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One partition's compaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionCompaction {
    /// The partition (`event_time_day=2026-11-03`, `unpartitioned`).
    pub partition: String,
    /// Its files before.
    pub files_before: usize,
    /// Its files after (the files written).
    pub files_after: usize,
    /// Bytes of the files read.
    pub bytes_read: u64,
    /// Bytes of the files written.
    pub bytes_written: u64,
    /// Rows rewritten.
    pub rows: u64,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A table's compaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Compaction {
    /// The table.
    pub table: String,
    /// The partitions rewritten (or planned, or skipped).
    pub partitions: Vec<PartitionCompaction>,
    /// Partitions in range that are compact already.
    pub compact_already: usize,
}

impl Compaction {
    /// Bytes written by the partitions rewritten.
    pub fn bytes_rewritten(&self) -> u64 {
        self.partitions
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Rewritten { .. }))
            .map(|p| p.bytes_written)
            .sum()
    }
}

/// One partition's live files.
struct Group {
    partition: Struct,
    day: Option<i32>,
    files: Vec<DataFile>,
}

impl Group {
    fn bytes(&self) -> u64 {
        self.files.iter().map(DataFile::file_size_in_bytes).sum()
    }
}

/// Files a partition of `bytes` needs at `target` bytes per file.
pub fn files_needed(bytes: u64, target: u64) -> usize {
    bytes.div_ceil(target.max(1)).max(1) as usize
}

/// Compacts `ident`'s partitions (see the module docs).
pub async fn compact(
    catalog: &dyn iceberg::Catalog,
    committer: &CatalogCommitter,
    ident: &TableIdent,
    options: &CompactOptions,
) -> Result<Compaction, IcebergError> {
    let table = producer::load_table(catalog, ident, "loading the table to compact it").await?;
    let field = DayField::of(&table, &options.event_time_column);
    let files = live_data_files(&table, |manifest| match (&field, options.days) {
        (Some(field), Some((from, to))) => field.may_hold_range(manifest, from, to),
        _ => true,
    })
    .await?;
    let mut groups: HashMap<Struct, Group> = HashMap::new();
    for file in files {
        let day = field.and_then(|f| f.day(&file));
        if let (Some((from, to)), Some(_)) = (options.days, field)
            && !day.is_some_and(|d| (from..=to).contains(&d))
        {
            continue;
        }
        groups
            .entry(file.partition().clone())
            .or_insert_with(|| Group {
                partition: file.partition().clone(),
                day,
                files: Vec::new(),
            })
            .files
            .push(file);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by_cached_key(|g| (g.day, partition_name(&table, &g.partition)));
    let mut compaction = Compaction {
        table: table_name(ident),
        ..Compaction::default()
    };
    for mut group in groups {
        if group.files.len() <= files_needed(group.bytes(), options.target_file_size) {
            compaction.compact_already += 1;
            continue;
        }
        let partition = partition_name(&table, &group.partition);
        let bytes_read = group.bytes();
        let files_before = group.files.len();
        if options.dry_run {
            compaction.partitions.push(PartitionCompaction {
                partition,
                files_before,
                files_after: files_needed(bytes_read, options.target_file_size),
                bytes_read,
                bytes_written: 0,
                rows: group.files.iter().map(DataFile::record_count).sum(),
                outcome: Outcome::Planned,
            });
            continue;
        }
        order_by_event_time(&table, &options.event_time_column, &mut group.files);
        let written = rewrite(&table, &group, options).await?;
        kappa_core::crash_point("maintain::compact::written");
        let rows = written.iter().map(DataFile::record_count).sum();
        let bytes_written = written.iter().map(DataFile::file_size_in_bytes).sum();
        let files_after = written.len();
        let outcome =
            commit_rewrite(catalog, committer, ident, &group, field, written, options).await?;
        tracing::info!(
            table = %table_name(ident), %partition, files_before, files_after, bytes_read,
            bytes_written, ?outcome, "compacted a partition"
        );
        compaction.partitions.push(PartitionCompaction {
            partition,
            files_before,
            files_after,
            bytes_read,
            bytes_written,
            rows,
            outcome,
        });
    }
    Ok(compaction)
}

/// `name=value/...` of a partition value of the table's default spec (a day as `YYYY-MM-DD`).
fn partition_name(table: &Table, partition: &Struct) -> String {
    let spec = table.metadata().default_partition_spec();
    if spec.is_unpartitioned() {
        return "unpartitioned".into();
    }
    spec.fields()
        .iter()
        .zip(partition.fields())
        .map(|(field, value)| {
            let value = match value {
                Some(Literal::Primitive(PrimitiveLiteral::Int(day)))
                    if field.transform == iceberg::spec::Transform::Day =>
                {
                    date(*day)
                }
                Some(Literal::Primitive(p)) => format!("{p:?}"),
                Some(other) => format!("{other:?}"),
                None => "null".into(),
            };
            format!("{}={value}", field.name)
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `YYYY-MM-DD` of a day since 1970-01-01.
pub fn date(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map_or_else(|| day.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// Orders files by the smallest value of `column` they hold (from the manifests' bounds; a file
/// without one last), then by path.
fn order_by_event_time(table: &Table, column: &str, files: &mut [DataFile]) {
    let id = table
        .metadata()
        .current_schema()
        .field_by_name(column)
        .map(|f| f.id);
    fn lower(id: Option<i32>, file: &DataFile) -> Option<&iceberg::spec::Datum> {
        file.lower_bounds().get(&id?)
    }
    files.sort_by(|a, b| {
        match (lower(id, a), lower(id, b)) {
            (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.file_path().cmp(b.file_path()))
    });
}

/// Writes the group's rows into new files (nothing is committed).
async fn rewrite(
    table: &Table,
    group: &Group,
    options: &CompactOptions,
) -> Result<Vec<DataFile>, IcebergError> {
    let name = table_name(table.identifier());
    let write_error = |e: iceberg::Error| IcebergError::Write {
        table: name.clone(),
        source: Box::new(e),
    };
    let writer_options = WriterOptions {
        target_file_size: options.target_file_size as usize,
        zstd_level: options.zstd_level,
        dictionary_size: options.dictionary_size,
        writers: 1,
        distinct_columns: options.distinct_columns.clone(),
    };
    let prefix = format!("compact-{}", uuid::Uuid::now_v7().simple());
    let mut writer = StreamingWriter::new(table, &prefix, &writer_options)
        .await
        .map_err(write_error)?;
    let sort_column = table
        .metadata()
        .current_schema()
        .field_by_name(&options.event_time_column)
        .map(|_| options.event_time_column.clone());
    let mut chunk: Vec<RecordBatch> = Vec::new();
    let mut chunk_bytes = 0;
    for (index, file) in group.files.iter().enumerate() {
        crate::writer::read_data_file(table, file.file_path(), |batch| {
            chunk.push(writer.conform(batch)?);
            Ok(())
        })
        .await
        .map_err(|e| failed(table, &format!("reading {}", file.file_path()), e))?;
        chunk_bytes += file.file_size_in_bytes();
        if chunk_bytes >= options.target_file_size || index + 1 == group.files.len() {
            let batch =
                sorted(std::mem::take(&mut chunk), sort_column.as_deref()).map_err(write_error)?;
            writer.write(&batch).await.map_err(write_error)?;
            chunk_bytes = 0;
        }
    }
    writer.finish().await.map_err(write_error)
}

/// The batches as one, its rows sorted by `column` (stable: rows of equal time keep their
/// order).
fn sorted(batches: Vec<RecordBatch>, column: Option<&str>) -> iceberg::Result<RecordBatch> {
    let fail = |e: arrow_schema::ArrowError| {
        iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            "sorting rows for compaction",
        )
        .with_source(e)
    };
    let Some(first) = batches.first() else {
        return Err(iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            "no rows to compact",
        ));
    };
    let batch = arrow_select::concat::concat_batches(&first.schema(), &batches).map_err(fail)?;
    drop(batches);
    let Some(values) = column.and_then(|c| batch.column_by_name(c)) else {
        return Ok(batch);
    };
    let order = arrow_ord::sort::sort_to_indices(values, None, None).map_err(fail)?;
    arrow_select::take::take_record_batch(&batch, &order).map_err(fail)
}

/// Commits the rewrite of `group` as one `replace` snapshot, staged again after a conflict as
/// long as every file read is still live.
async fn commit_rewrite(
    catalog: &dyn iceberg::Catalog,
    committer: &CatalogCommitter,
    ident: &TableIdent,
    group: &Group,
    field: Option<DayField>,
    written: Vec<DataFile>,
    options: &CompactOptions,
) -> Result<Outcome, IcebergError> {
    let paths: HashSet<String> = group
        .files
        .iter()
        .map(|f| f.file_path().to_string())
        .collect();
    let days = match (field, group.day) {
        (Some(field), Some(day)) => Some((field, BTreeSet::from([day]))),
        _ => None,
    };
    let mut skipped = None;
    let committed = producer::commit(
        catalog,
        committer,
        ident,
        options.max_attempts,
        async |table: &Table| {
            let live: HashSet<String> = live_data_files(table, |m| match &days {
                Some((field, days)) => field.may_hold(m, days),
                None => true,
            })
            .await?
            .into_iter()
            .map(|f| f.file_path().to_string())
            .collect();
            if let Some(gone) = paths.iter().find(|p| !live.contains(*p)) {
                skipped = Some(format!(
                    "{gone} was rewritten or deleted by another commit meanwhile"
                ));
                return Ok(None);
            }
            Ok(Some(NewSnapshot {
                branch: iceberg::spec::MAIN_BRANCH.to_string(),
                change: Change::Rewrite {
                    paths: paths.clone(),
                    days: days.clone(),
                },
                files: written.clone(),
                summary: HashMap::from([(MAINTENANCE.to_string(), "compact".to_string())]),
                properties: HashMap::new(),
            }))
        },
    )
    .await?;
    Ok(match committed {
        Some(c) => Outcome::Rewritten {
            snapshot_id: c.snapshot_id,
            attempts: c.attempts,
        },
        None => Outcome::Skipped {
            reason: skipped.unwrap_or_else(|| "nothing to commit".into()),
        },
    })
}

/// Files per partition of the table's current snapshot, by partition name: what
/// `kappa_table_partition_files` reports.
pub async fn files_per_partition(table: &Table) -> Result<BTreeMap<String, usize>, IcebergError> {
    let mut counts = BTreeMap::new();
    for file in live_data_files(table, |_| true).await? {
        *counts
            .entry(partition_name(table, file.partition()))
            .or_insert(0) += 1;
    }
    Ok(counts)
}
