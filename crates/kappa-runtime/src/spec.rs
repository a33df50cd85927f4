//! What a pipeline writes where, and opening its tables.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::Catalog;
use kappa_iceberg::table::{ensure_table, load_existing, missing_table};
use kappa_iceberg::writer::{COMPRESSION_LEVEL, DICTIONARY_SIZE, WriterOptions};
use kappa_iceberg::{
    CatalogConfig, Committer, FirstCommit, IcebergError, PartitionField, TableSpec, connect,
    connect_read_only, summary,
};
use kappa_quality::Quality;
use kappa_schema::TableMapping;

use crate::buffer::CommitPolicy;
use crate::dlq::dlq_schema;

/// Everything the runtime needs to know about a pipeline (built from the validated config).
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Pipeline name (`kappa.pipeline`).
    pub pipeline: String,
    /// The topics the pipeline's sources read: a table that holds another pipeline's offsets
    /// for one of them is refused.
    pub topics: Vec<String>,
    /// Where the main table's first commit of a partition may start: at offset 0, or past it
    /// with the skipped offsets recorded (asked for with `--accept-missing-history`, or a live
    /// `start = "latest"`).
    pub first_commit: FirstCommit,
    /// Catalog and warehouse.
    pub catalog: CatalogConfig,
    /// Table namespace.
    pub namespace: String,
    /// Main table name.
    pub table: String,
    /// Dead-letter table name.
    pub dlq_table: String,
    /// Partitioning of the main table.
    pub partition_by: Vec<PartitionField>,
    /// Data file writing.
    pub writer: WriterOptions,
    /// When to commit.
    pub commit: CommitPolicy,
    /// Offsets per partition within which a repeated dedup key is a duplicate: a restart
    /// re-reads this many before the resume position to warm the logic up (0 without a key).
    pub dedup_window: i64,
    /// Event-time column of the main table.
    pub event_time_column: String,
    /// Allowed lateness: watermark = newest event time − this; a row earlier than its
    /// partition's newest event time − this is late.
    pub allowed_lateness: Duration,
    /// Where late rows go: `None` appends them to the main table (counted); `Some(name)` writes
    /// them to that table (same namespace, columns and partitioning as the main table).
    pub late_table: Option<String>,
    /// Value schema → table mapping.
    pub mapping: Arc<TableMapping>,
    /// Record rules and commit gates (`[quality]`).
    pub quality: Quality,
    /// Where a flush that fails a `quarantine` gate goes (same namespace, columns and
    /// partitioning as the main table); `None` treats such a failure as blocking.
    pub quarantine_table: Option<String>,
}

/// A pipeline with its tables open.
#[derive(Debug)]
pub struct Pipeline {
    /// The spec it was opened with.
    pub spec: PipelineSpec,
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// Committer of the main table.
    pub main: Committer,
    /// Committer of the dead-letter table.
    pub dlq: Committer,
    /// Committer of the late-row table, when late rows are routed there.
    pub late: Option<Committer>,
    /// Committer of the quarantine table, when a gate quarantines.
    pub quarantine: Option<Committer>,
    /// Readiness to report a live pipeline paused by a blocking gate on (`/readyz`).
    pub health: Option<kappa_metrics::Health>,
}

fn table_properties(writer: &WriterOptions) -> HashMap<String, String> {
    HashMap::from([
        ("write.format.default".into(), "parquet".into()),
        ("write.parquet.compression-codec".into(), "zstd".into()),
        // Other engines writing the table (a Spark compaction) use Kappa's level too.
        (COMPRESSION_LEVEL.into(), writer.zstd_level.to_string()),
        (DICTIONARY_SIZE.into(), writer.dictionary_size.to_string()),
        (
            "write.target-file-size-bytes".into(),
            writer.target_file_size.to_string(),
        ),
    ])
}

/// A committer of `table` for the pipeline of `spec`, with its commit retries.
fn committer(
    spec: &PipelineSpec,
    catalog: Arc<dyn Catalog>,
    table: iceberg::table::Table,
) -> Result<Committer, IcebergError> {
    let mut committer = Committer::new(
        catalog,
        table,
        &spec.pipeline,
        spec.writer.clone(),
        spec.commit.max_attempts,
    )?;
    committer.set_conflict_timeout(spec.commit.conflict_timeout);
    Ok(committer)
}

/// Connects to the catalog, creates the main and dead-letter tables if missing and reads the
/// pipeline's state from both.
///
/// The tables (main, dead-letter, late and quarantine) are opened at once: on a REST catalog
/// each is a few round trips, and each creation waits for the catalog to settle (half a second
/// on SeaweedFS's), so one after another a first start waited for each in turn. Creations of
/// tables of one new namespace race to create it; [`ensure_table`] takes the namespace another
/// creation made (as it does when another process makes it), and retries one that shows half
/// made. The first failure ends the others; what they made stays and is taken again at the next
/// start.
pub async fn open_pipeline(spec: PipelineSpec) -> Result<Pipeline, IcebergError> {
    let catalog = connect(&spec.catalog).await?;
    let (main_spec, dlq_spec) = table_specs(&spec)?;
    let like_main = |name: &Option<String>| {
        name.as_ref().map(|name| TableSpec {
            name: name.clone(),
            ..main_spec.clone()
        })
    };
    let (late_spec, quarantine_spec) = (
        like_main(&spec.late_table),
        like_main(&spec.quarantine_table),
    );
    let ensure = async |table: Option<&TableSpec>| match table {
        Some(table) => ensure_table(catalog.as_ref(), table).await.map(Some),
        None => Ok(None),
    };
    let (main, dlq, late, quarantine) = tokio::try_join!(
        ensure_table(catalog.as_ref(), &main_spec),
        ensure_table(catalog.as_ref(), &dlq_spec),
        ensure(late_spec.as_ref()),
        ensure(quarantine_spec.as_ref()),
    )?;
    let open = |table| committer(&spec, catalog.clone(), table);
    let late = late.map(open).transpose()?;
    let quarantine = quarantine.map(open).transpose()?;
    let mut main = open(main)?;
    main.set_first_commit(spec.first_commit);
    let dlq = open(dlq)?;
    let topics = spec.topics.iter().map(String::as_str);
    for table in [Some(&main), Some(&dlq), late.as_ref(), quarantine.as_ref()]
        .into_iter()
        .flatten()
    {
        table.check_owner(topics.clone())?;
    }
    check_position_kept(&main, [Some(&dlq), late.as_ref(), quarantine.as_ref()])?;
    Ok(Pipeline {
        spec,
        catalog,
        main,
        dlq,
        late,
        quarantine,
        health: None,
    })
}

/// Refuses to start a pipeline whose main table holds no position of it although the tables show
/// that it wrote them before: starting from the beginning would ingest everything a second time.
///
/// The evidence: a snapshot of the pipeline that is no longer in `main`'s history (a rollback),
/// a side table that holds the pipeline's position while the main table holds rows, or rows in
/// the main table that no pipeline's position accounts for (a table last committed by a Kappa
/// release that kept its position only in snapshot summaries, compacted by another engine and
/// its snapshots expired).
fn check_position_kept<'a>(
    main: &Committer,
    side: impl IntoIterator<Item = Option<&'a Committer>>,
) -> Result<(), IcebergError> {
    if !main.state().is_empty() {
        return Ok(());
    }
    let metadata = main.table().metadata();
    let lost = |evidence: String| IcebergError::PositionLost {
        table: main.name().to_string(),
        pipeline: main.pipeline().to_string(),
        evidence,
        remedy: "rebuild the position from the rows the tables hold with `kappa state recover -c \
                 <config>` (stop every process of the pipeline first); see docs/runbooks.md"
            .into(),
    };
    if let Some(snapshot) = metadata.snapshots().find(|s| {
        s.summary()
            .additional_properties
            .get(summary::PIPELINE)
            .map(String::as_str)
            == Some(main.pipeline())
    }) {
        return Err(lost(format!(
            "its snapshot {} is in the table's metadata and no longer in main's history",
            snapshot.snapshot_id()
        )));
    }
    let Some(current) = metadata.current_snapshot() else {
        return Ok(());
    };
    let rows = current
        .summary()
        .additional_properties
        .get("total-records")
        .and_then(|v| v.parse::<u64>().ok());
    if rows == Some(0) {
        return Ok(());
    }
    let held = match rows {
        Some(rows) => format!("it holds {rows} rows"),
        None => "it holds data".to_string(),
    };
    if let Some(side) = side.into_iter().flatten().find(|t| !t.state().is_empty()) {
        return Err(lost(format!(
            "{held} (snapshot {}) and {} holds the pipeline's position",
            current.snapshot_id(),
            side.name()
        )));
    }
    if kappa_iceberg::state::claims(metadata).is_empty() {
        return Err(lost(format!(
            "{held} (snapshot {}, operation {:?}) that no pipeline's position accounts for: the \
             position was lost, e.g. another engine rewrote the table and older snapshots were \
             expired before this Kappa release kept it in the table property {}",
            current.snapshot_id(),
            current.summary().operation,
            kappa_iceberg::state::state_property(main.pipeline())
        )));
    }
    Ok(())
}

/// Opens an existing pipeline's tables for a command that only reads (`kappa status`, `kappa
/// quality report`): connects read-only ([`connect_read_only`]) and loads the tables as they
/// are. Nothing is created (catalog, namespace, table) and no schema is evolved: a main or
/// dead-letter table that does not exist is an error naming it (a user error: check `[table]
/// namespace` and `name`); a late or quarantine table that does not exist yet is `None`.
pub async fn open_pipeline_read_only(spec: PipelineSpec) -> Result<Pipeline, IcebergError> {
    let catalog = connect_read_only(&spec.catalog).await?;
    open_existing(spec, catalog).await
}

/// [`open_pipeline_read_only`] on a writable connection, for a command that changes an existing
/// table's properties only (`kappa quality override`): it creates nothing and evolves nothing
/// either.
pub async fn open_existing_pipeline(spec: PipelineSpec) -> Result<Pipeline, IcebergError> {
    let catalog = connect(&spec.catalog).await?;
    open_existing(spec, catalog).await
}

async fn open_existing(
    spec: PipelineSpec,
    catalog: Arc<dyn Catalog>,
) -> Result<Pipeline, IcebergError> {
    let (main_spec, dlq_spec) = table_specs(&spec)?;
    let open = |table| committer(&spec, catalog.clone(), table);
    let required = async |table_spec: &TableSpec| -> Result<Committer, IcebergError> {
        match load_existing(catalog.as_ref(), table_spec).await? {
            Some(table) => open(table),
            None => Err(missing_table(table_spec)),
        }
    };
    let main = required(&main_spec).await?;
    let dlq = required(&dlq_spec).await?;
    let like_main = async |name: &Option<String>| -> Result<Option<Committer>, IcebergError> {
        let Some(name) = name else { return Ok(None) };
        let spec = TableSpec {
            name: name.clone(),
            ..main_spec.clone()
        };
        load_existing(catalog.as_ref(), &spec)
            .await?
            .map(open)
            .transpose()
    };
    let late = like_main(&spec.late_table).await?;
    let quarantine = like_main(&spec.quarantine_table).await?;
    Ok(Pipeline {
        spec,
        catalog,
        main,
        dlq,
        late,
        quarantine,
        health: None,
    })
}

/// The main and dead-letter tables' specs (`kappa validate` checks the main one's partitioning).
pub fn table_specs(spec: &PipelineSpec) -> Result<(TableSpec, TableSpec), IcebergError> {
    let main_spec = TableSpec {
        namespace: spec.namespace.clone(),
        name: spec.table.clone(),
        schema: spec
            .mapping
            .iceberg_schema()
            .map_err(|e| IcebergError::Invalid {
                table: format!("{}.{}", spec.namespace, spec.table),
                message: e.to_string(),
            })?,
        partition_by: spec.partition_by.clone(),
        properties: table_properties(&spec.writer),
    };
    let dlq_spec = TableSpec {
        namespace: spec.namespace.clone(),
        name: spec.dlq_table.clone(),
        schema: iceberg::arrow::arrow_schema_to_schema(&dlq_schema()).map_err(|e| {
            IcebergError::Invalid {
                table: format!("{}.{}", spec.namespace, spec.dlq_table),
                message: format!("dead-letter schema: {e}"),
            }
        })?,
        partition_by: Vec::new(),
        properties: table_properties(&spec.writer),
    };
    Ok((main_spec, dlq_spec))
}
