//! A sharded backfill's plan and its shards' staged manifests, kept with the main table's
//! metadata: `<table location>/metadata/kappa-backfill-<id>-plan.avro` and
//! `kappa-backfill-<id>-shard-<i>-of-<n>.avro` (flat, Avro-named: catalogs that check the files
//! under a table's location, as SeaweedFS's table buckets do, accept nothing else there). No
//! snapshot references them (nor the files they list) until the publish.

use std::collections::BTreeMap;

use bytes::Bytes;
use iceberg::table::Table;
use kappa_core::{OffsetRange, SourcePosition, TopicPartition};
use kappa_quality::{CommitCounts, RuleCounts};
use serde::{Deserialize, Serialize};

use super::{Request, Staged, table_error};
use crate::error::RuntimeError;
use crate::spec::Pipeline;

/// One shard of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Its topic partitions.
    pub partitions: Vec<i32>,
    /// Archive bytes it reads.
    pub bytes: u64,
}

/// What a backfill reprocesses, and how it is split: written once, read by every shard and by
/// the publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The backfill's id.
    pub id: String,
    /// First and last day (days since 1970-01-01).
    pub from: i32,
    /// Last day.
    pub to: i32,
    /// Main's snapshot the base position is from (`None`: main had none).
    pub base_snapshot: Option<i64>,
    /// The base position, `{"topic":{"0":123}}`.
    pub position: String,
    /// Offsets never ingested: `[topic, partition, start, end]`.
    pub excluded: Vec<(String, i32, i64, i64)>,
    /// The shards.
    pub shards: Vec<ShardPlan>,
    /// When it was made (ms since the epoch): a shard manifest of another plan of the same id
    /// is not this plan's.
    pub created_ms: i64,
}

/// Splits partitions (with their archive bytes) into `shards` shards of about equal bytes:
/// the largest partition first, each to the shard with the fewest bytes so far (the lowest
/// index on a tie). Deterministic: the same input gives the same plan.
pub fn balance(bytes: &BTreeMap<i32, u64>, shards: usize) -> Vec<ShardPlan> {
    let mut plan = vec![
        ShardPlan {
            partitions: Vec::new(),
            bytes: 0,
        };
        shards.max(1)
    ];
    let mut order: Vec<(i32, u64)> = bytes.iter().map(|(p, b)| (*p, *b)).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (partition, size) in order {
        let lightest = plan
            .iter()
            .enumerate()
            .min_by_key(|(i, s)| (s.bytes, *i))
            .map_or(0, |(i, _)| i);
        plan[lightest].partitions.push(partition);
        plan[lightest].bytes += size;
    }
    for shard in &mut plan {
        shard.partitions.sort_unstable();
    }
    plan
}

impl Plan {
    /// The request of this plan (all partitions; a shard's source reads only its own).
    pub fn request(
        &self,
        key_column: &str,
        quarantine_table: Option<String>,
    ) -> Result<Request, RuntimeError> {
        let upper = SourcePosition::from_json(&self.position).map_err(|e| {
            RuntimeError::Invariant(format!("backfill plan {}: position: {e}", self.id))
        })?;
        let mut excluded: BTreeMap<TopicPartition, Vec<OffsetRange>> = BTreeMap::new();
        for (topic, partition, start, end) in &self.excluded {
            excluded
                .entry(TopicPartition::new(topic.clone(), *partition))
                .or_default()
                .push(OffsetRange::new(*start, *end));
        }
        Ok(Request {
            id: self.id.clone(),
            days: (self.from, self.to),
            base_snapshot: self.base_snapshot,
            upper,
            excluded,
            key_column: key_column.to_string(),
            quarantine_table,
        })
    }

    /// The name every file of backfill `id` starts with.
    fn prefix(table: &Table, id: &str) -> String {
        format!(
            "{}/metadata/{}{id}",
            table.metadata().location().trim_end_matches('/'),
            kappa_iceberg::maintenance::orphans::BACKFILL_FILE_PREFIX
        )
    }

    /// Writes the plan (replacing an earlier plan of the same id).
    pub async fn write(&self, pipeline: &Pipeline) -> Result<(), RuntimeError> {
        let table = pipeline.main.table();
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| RuntimeError::Invariant(format!("backfill plan as JSON: {e}")))?;
        write(
            table,
            &format!("{}-plan.avro", Self::prefix(table, &self.id)),
            json,
        )
        .await
        .map_err(|e| table_error(pipeline.main.name(), "writing the backfill plan", e))
    }

    /// The plan of backfill `id`, if one was written.
    pub async fn read(pipeline: &Pipeline, id: &str) -> Result<Option<Plan>, RuntimeError> {
        let table = pipeline.main.table();
        let path = format!("{}-plan.avro", Self::prefix(table, id));
        let Some(bytes) = read(table, &path)
            .await
            .map_err(|e| table_error(pipeline.main.name(), "reading the backfill plan", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Invariant(format!("{path}: {e}")))
    }

    fn shard_path(&self, table: &Table, shard: usize) -> String {
        format!(
            "{}-shard-{shard}-of-{}.avro",
            Self::prefix(table, &self.id),
            self.shards.len()
        )
    }

    /// Records shard `shard`'s staged files (written after them: a manifest lists only files
    /// that exist).
    pub async fn write_shard(
        &self,
        pipeline: &Pipeline,
        shard: usize,
        staged: Staged,
    ) -> Result<(), RuntimeError> {
        let main = pipeline.main.table();
        let dlq = pipeline.dlq.table();
        let json = |table: &Table, files: Vec<iceberg::spec::DataFile>| {
            files
                .into_iter()
                .map(|f| kappa_iceberg::writer::data_file_to_json(table, f))
                .collect::<iceberg::Result<Vec<_>>>()
        };
        let manifest = ShardManifest {
            id: self.id.clone(),
            plan_created_ms: self.created_ms,
            shard,
            data_files: json(main, staged.files)
                .map_err(|e| table_error(pipeline.main.name(), "listing staged files", e))?,
            dead_letter_files: json(dlq, staged.dead_letter_files)
                .map_err(|e| table_error(pipeline.dlq.name(), "listing staged files", e))?,
            records_in: staged.counts.records_in,
            written: staged.counts.written,
            deduplicated: staged.counts.deduplicated,
            dead_lettered: staged.counts.dead_lettered,
            rules_rows: staged.rules.rows,
            rules_failed: staged.rules.failed,
            rules_dead_lettered: staged.rules.dead_lettered,
            rows: staged.rows,
            late_routed: staged.late_routed,
            quarantined: staged.quarantined,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| RuntimeError::Invariant(format!("shard manifest as JSON: {e}")))?;
        write(main, &self.shard_path(main, shard), bytes)
            .await
            .map_err(|e| table_error(pipeline.main.name(), "writing a shard manifest", e))
    }

    /// Shard `shard`'s staged files, if it recorded them for this plan.
    pub async fn read_shard(
        &self,
        pipeline: &Pipeline,
        shard: usize,
    ) -> Result<Option<Staged>, RuntimeError> {
        let main = pipeline.main.table();
        let path = self.shard_path(main, shard);
        let Some(bytes) = read(main, &path)
            .await
            .map_err(|e| table_error(pipeline.main.name(), "reading a shard manifest", e))?
        else {
            return Ok(None);
        };
        let manifest: ShardManifest = serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Invariant(format!("{path}: {e}")))?;
        if manifest.id != self.id || manifest.plan_created_ms != self.created_ms {
            // Staged for an earlier plan of this id: not this plan's.
            return Ok(None);
        }
        let files = |table: &Table, name: &str, json: &[String]| {
            json.iter()
                .map(|j| kappa_iceberg::writer::data_file_from_json(table, j))
                .collect::<iceberg::Result<Vec<_>>>()
                .map_err(|e| table_error(name, "reading a shard manifest", e))
        };
        Ok(Some(Staged {
            files: files(main, pipeline.main.name(), &manifest.data_files)?,
            dead_letter_files: files(
                pipeline.dlq.table(),
                pipeline.dlq.name(),
                &manifest.dead_letter_files,
            )?,
            counts: CommitCounts {
                records_in: manifest.records_in,
                written: manifest.written,
                deduplicated: manifest.deduplicated,
                dead_lettered: manifest.dead_lettered,
                source_count: None,
            },
            rules: RuleCounts {
                rows: manifest.rules_rows,
                failed: manifest.rules_failed,
                dead_lettered: manifest.rules_dead_lettered,
            },
            rows: manifest.rows,
            late_routed: manifest.late_routed,
            quarantined: manifest.quarantined,
        }))
    }
}

/// The data files every staged shard of every backfill of `main` lists (of the main and the
/// dead-letter table), compared without a `file://` scheme: no snapshot references them until
/// their publish, and orphan cleanup must keep them.
pub async fn staged_paths(main: &Table) -> Result<std::collections::HashSet<String>, RuntimeError> {
    let name = main.identifier().to_string();
    let mut paths = std::collections::HashSet::new();
    let listed = kappa_iceberg::maintenance::orphans::list_files(main, "metadata").await?;
    for path in listed.iter().filter(|p| {
        p.rsplit('/').next().is_some_and(|f| {
            f.starts_with(kappa_iceberg::maintenance::orphans::BACKFILL_FILE_PREFIX)
                && f.contains("-shard-")
                && f.ends_with(".avro")
        })
    }) {
        let Some(bytes) = read(main, path)
            .await
            .map_err(|e| table_error(&name, "reading a shard manifest", e))?
        else {
            continue;
        };
        let manifest: ShardManifest = serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Invariant(format!("{path}: {e}")))?;
        for json in manifest
            .data_files
            .iter()
            .chain(&manifest.dead_letter_files)
        {
            let file: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| RuntimeError::Invariant(format!("{path}: {e}")))?;
            if let Some(file_path) = file.get("file_path").and_then(serde_json::Value::as_str) {
                paths.insert(kappa_iceberg::maintenance::normalize(file_path));
            }
        }
    }
    Ok(paths)
}

/// A shard's staged files and bookkeeping.
#[derive(Debug, Serialize, Deserialize)]
struct ShardManifest {
    id: String,
    plan_created_ms: i64,
    shard: usize,
    /// Data files of the main table, as Iceberg's data-file JSON.
    data_files: Vec<String>,
    /// Data files of the dead-letter table.
    dead_letter_files: Vec<String>,
    records_in: u64,
    written: u64,
    deduplicated: u64,
    dead_lettered: u64,
    rules_rows: u64,
    rules_failed: BTreeMap<String, u64>,
    rules_dead_lettered: u64,
    rows: u64,
    late_routed: u64,
    #[serde(default)]
    quarantined: u64,
}

/// The Avro schema of a plan or shard manifest file: one record holding the document's JSON.
/// Avro, not a bare `.json` file: catalogs that check the names of the files under a table's
/// location (SeaweedFS's table buckets) accept Iceberg's own formats only.
const DOCUMENT_SCHEMA: &str = r#"{"type": "record", "name": "kappa_document", "fields": [{"name": "json", "type": "string"}]}"#;

fn document_error(path: &str, e: impl std::fmt::Display) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::DataInvalid,
        format!("{path}: not a Kappa backfill document: {e}"),
    )
}

async fn write(table: &Table, path: &str, json: Vec<u8>) -> iceberg::Result<()> {
    let json = String::from_utf8(json).map_err(|e| document_error(path, e))?;
    let schema =
        apache_avro::Schema::parse_str(DOCUMENT_SCHEMA).map_err(|e| document_error(path, e))?;
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    let mut record =
        apache_avro::types::Record::new(&schema).ok_or_else(|| document_error(path, "schema"))?;
    record.put("json", json);
    writer.append(record).map_err(|e| document_error(path, e))?;
    let bytes = writer.into_inner().map_err(|e| document_error(path, e))?;
    table
        .file_io()
        .new_output(path)?
        .write(Bytes::from(bytes))
        .await
}

/// The JSON of the document at `path`, if the file exists.
async fn read(table: &Table, path: &str) -> iceberg::Result<Option<Bytes>> {
    let io = table.file_io();
    if !io.exists(path).await? {
        return Ok(None);
    }
    let bytes = io.new_input(path)?.read().await?;
    let reader = apache_avro::Reader::new(&bytes[..]).map_err(|e| document_error(path, e))?;
    for value in reader {
        if let apache_avro::types::Value::Record(fields) =
            value.map_err(|e| document_error(path, e))?
            && let Some((_, apache_avro::types::Value::String(json))) =
                fields.into_iter().find(|(name, _)| name == "json")
        {
            return Ok(Some(Bytes::from(json)));
        }
    }
    Err(document_error(path, "no record"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_balanced_by_bytes_and_the_plan_is_deterministic() {
        let bytes: BTreeMap<i32, u64> = [(0, 100), (1, 90), (2, 50), (3, 40), (4, 10)]
            .into_iter()
            .collect();
        let plan = balance(&bytes, 2);
        assert_eq!(plan[0].partitions, vec![0, 3, 4]);
        assert_eq!(plan[1].partitions, vec![1, 2]);
        assert_eq!((plan[0].bytes, plan[1].bytes), (150, 140));
        assert_eq!(balance(&bytes, 2), plan);
        let wide = balance(&bytes, 8);
        assert_eq!(wide.len(), 8);
        assert_eq!(
            wide.iter().filter(|s| s.partitions.is_empty()).count(),
            3,
            "more shards than partitions: some read nothing"
        );
        let mut all: Vec<i32> = wide.iter().flat_map(|s| s.partitions.clone()).collect();
        all.sort_unstable();
        assert_eq!(
            all,
            vec![0, 1, 2, 3, 4],
            "every partition in exactly one shard"
        );
    }
}
