//! A backfill's assembly (`kappa backfill`; docs/backfill.md): the pipeline's existing tables
//! and its archive opened for some days, the plan (base, what is reprocessed, the shards), and a
//! shard's reprocessing into staged files. The audit and publish are `kappa_runtime::backfill`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kappa_config::PipelineConfig;
use kappa_core::{OffsetRange, Source, SourceEvent, TopicPartition};
use kappa_iceberg::days::DayField;
use kappa_runtime::backfill::{self, Plan, Request, Staged};
use kappa_schema::{SchemaRegistry, TableMapping};
use kappa_source_replay::{
    ArchivePlan, ArchiveSource, PartitionFilter, ReplayOptions, TimeWindow, open_store,
};
use object_store::ObjectStore;
use tracing::info;

use crate::assemble::{
    build_logic, pipeline_spec, replay_options, s3_options, schema_registry, table_mapping,
};
use crate::error::PipelineError;

/// How far the archive reaches per partition: the next offset after its last object's last
/// record (only the last object of each partition is read).
async fn archive_ends(
    store: Arc<dyn ObjectStore>,
    plan: &ArchivePlan,
    options: ReplayOptions,
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
) -> Result<BTreeMap<i32, i64>, PipelineError> {
    let last = ArchivePlan {
        partitions: plan
            .partitions
            .iter()
            .filter_map(|(p, files)| Some((*p, vec![files.last()?.clone()])))
            .collect(),
        ignored: 0,
    };
    let mut ends: BTreeMap<i32, i64> = last
        .partitions
        .iter()
        .map(|(p, files)| (*p, files[0].start_offset))
        .collect();
    let mut source = ArchiveSource::new(store, last, options, mapping, registry);
    loop {
        match source
            .next_event()
            .await
            .map_err(PipelineError::from_error)?
        {
            SourceEvent::Batch(batch) => {
                let end = ends.entry(batch.partition.partition).or_default();
                *end = (*end).max(batch.range.end);
            }
            SourceEvent::End => break,
            _ => {}
        }
    }
    Ok(ends)
}

/// Offsets the pipeline never ingested, per partition: skipped at a first commit, or moved past
/// by an operator.
fn excluded(state: &kappa_iceberg::TableState) -> BTreeMap<TopicPartition, Vec<OffsetRange>> {
    let mut excluded: BTreeMap<TopicPartition, Vec<OffsetRange>> = BTreeMap::new();
    for (tp, range) in &state.skipped {
        excluded.entry(tp.clone()).or_default().push(*range);
    }
    for moved in state.moves.iter().filter(|m| m.to > m.from) {
        excluded
            .entry(moved.partition.clone())
            .or_default()
            .push(OffsetRange::new(moved.from, moved.to));
    }
    for ranges in excluded.values_mut() {
        ranges.sort_by_key(|r| r.start);
    }
    excluded
}

/// The pipeline's tables opened for a backfill of days `from..=to`.
pub struct Setup {
    /// The pipeline's configuration.
    pub config: PipelineConfig,
    /// The column the audit compares days on (`[dedup] key` or the logic's).
    pub key_column: String,
    /// The schema registry.
    pub registry: Arc<dyn SchemaRegistry>,
    /// The table mapping.
    pub mapping: Arc<TableMapping>,
    /// The pipeline, its existing tables open.
    pub pipeline: kappa_runtime::Pipeline,
    /// First day, days since 1970-01-01.
    pub from: i32,
    /// Last day, inclusive.
    pub to: i32,
}

/// The archive of a [`Setup`], listed.
pub struct Archive {
    /// Where it is.
    pub store: Arc<dyn ObjectStore>,
    /// The topic.
    pub topic: String,
    /// Every file of every partition.
    pub plan: ArchivePlan,
    /// How the files are read.
    pub options: ReplayOptions,
}

/// Opens the existing tables of `config`'s pipeline for a backfill of days `from..=to` (days
/// since 1970-01-01); `config_path` locates a relative `[schema] dir`. The logic is built once
/// first (a bad `[logic.<name>]` option fails before anything opens); the pipeline needs a
/// dedup key to audit days by, and a table partitioned by day of the event time.
pub async fn setup(
    config: PipelineConfig,
    config_path: Option<&Path>,
    from: i32,
    to: i32,
) -> Result<Setup, PipelineError> {
    if to < from {
        return Err(PipelineError::user("--to is before --from"));
    }
    // Checked before anything is opened: a bad [logic.<name>] option fails at once.
    build_logic(&config)?;
    let key_column = config.logic_settings.dedup_key.clone().ok_or_else(|| {
        PipelineError::user(format!(
            "logic {:?} has no dedup key to compare days on: set [dedup] key",
            config.logic
        ))
    })?;
    let registry = schema_registry(&config, config_path)?;
    let mapping = table_mapping(&config, registry.as_ref()).await?;
    let spec = pipeline_spec(&config, mapping.clone())?;
    let pipeline = kappa_runtime::open_existing_pipeline(spec)
        .await
        .map_err(PipelineError::from_error)?;
    let time = &config.raw.event_time.column;
    if DayField::of(pipeline.main.table(), time).is_none() {
        return Err(PipelineError::user(format!(
            "[table] partition_by: table {} is not partitioned by day({time}); a backfill \
             replaces whole day partitions",
            pipeline.main.name()
        )));
    }
    Ok(Setup {
        config,
        key_column,
        registry,
        mapping,
        pipeline,
        from,
        to,
    })
}

/// Lists the archive of a [`Setup`].
pub async fn archive(setup: &Setup) -> Result<Archive, PipelineError> {
    let (url, topic, s3) = setup.config.archive()?;
    let (store, prefix) = open_store(&url, &s3_options(s3)).map_err(PipelineError::from_error)?;
    let plan = ArchivePlan::list(
        store.as_ref(),
        &url,
        &prefix,
        &topic,
        &PartitionFilter::All,
        &TimeWindow::default(),
    )
    .await
    .map_err(PipelineError::from_error)?;
    let options = replay_options(&setup.config, topic.clone());
    Ok(Archive {
        store,
        topic,
        plan,
        options,
    })
}

/// Plans backfill `id` in `shards` shards: the base (the newest state of the table the archive
/// reaches), what is reprocessed, and the partitions of each shard, balanced by archive bytes.
pub async fn make_plan(
    setup: &Setup,
    archive: &Archive,
    id: String,
    shards: usize,
) -> Result<Plan, PipelineError> {
    let pipeline = &setup.pipeline;
    let ends = archive_ends(
        archive.store.clone(),
        &archive.plan,
        archive.options.clone(),
        setup.mapping.clone(),
        setup.registry.clone(),
    )
    .await?;
    let state = pipeline.main.state().clone();
    if state.position.is_empty() {
        return Err(PipelineError::user(format!(
            "table {} holds nothing of pipeline {:?} to rebuild: fill it with `kappa replay` first",
            pipeline.main.name(),
            setup.config.name
        )));
    }
    let excluded = excluded(&state);
    let topic = &archive.topic;
    // A partition's position is covered when the archive reaches it, or when every offset the
    // archive lacks below it was never ingested.
    let end_of = |tp: &TopicPartition| {
        if tp.topic == *topic {
            ends.get(&tp.partition).copied().unwrap_or(0)
        } else {
            0
        }
    };
    let covered = |tp: &TopicPartition, next: i64| {
        let end = end_of(tp);
        next <= end
            || excluded
                .get(tp)
                .is_some_and(|ranges| ranges.iter().any(|r| r.start <= end && r.end >= next))
    };
    let base = kappa_iceberg::backfill::choose_base(
        pipeline.main.table(),
        &setup.config.name,
        &state,
        covered,
    )
    .map_err(PipelineError::from_error)?
    .ok_or_else(|| {
        let behind: Vec<String> = state
            .position
            .iter()
            .filter(|(tp, next)| !covered(tp, *next))
            .map(|(tp, next)| {
                format!(
                    "{tp}: the table holds offsets up to {next}, the archive up to {}",
                    end_of(tp)
                )
            })
            .collect();
        PipelineError::failure(format!(
            "the archive does not reach any state of {} its history still holds ({}): \
             wait for the archive to catch up, then run the backfill again",
            pipeline.main.name(),
            behind.join("; ")
        ))
    })?;
    let bytes: BTreeMap<i32, u64> = archive
        .plan
        .partitions
        .iter()
        .filter_map(|(p, files)| {
            let end = base
                .position
                .next_offset(&TopicPartition::new(topic.clone(), *p))?;
            Some((
                *p,
                files
                    .iter()
                    .filter(|f| f.start_offset < end)
                    .map(|f| f.size)
                    .sum(),
            ))
        })
        .collect();
    Ok(Plan {
        id,
        from: setup.from,
        to: setup.to,
        base_snapshot: base.snapshot_id,
        position: base.position.to_json(),
        excluded: excluded
            .iter()
            .flat_map(|(tp, ranges)| {
                ranges
                    .iter()
                    .map(|r| (tp.topic.clone(), tp.partition, r.start, r.end))
            })
            .collect(),
        shards: backfill::balance(&bytes, shards),
        created_ms: chrono::Utc::now().timestamp_millis(),
    })
}

/// Reprocesses shard `shard` of `plan` into staged files.
pub async fn stage(
    setup: &Setup,
    archive: Archive,
    plan: &Plan,
    shard: usize,
) -> Result<(Request, Staged), PipelineError> {
    let request = plan
        .request(
            &setup.key_column,
            Some(setup.config.quarantine_table.clone()),
        )
        .map_err(PipelineError::from_error)?;
    let mine = &plan.shards[shard].partitions;
    let topic = archive.topic.clone();
    let files = ArchivePlan {
        partitions: archive
            .plan
            .partitions
            .into_iter()
            .filter(|(p, _)| mine.contains(p))
            .filter_map(|(p, files)| {
                let end = request
                    .upper
                    .next_offset(&TopicPartition::new(topic.clone(), p))?;
                let files: Vec<_> = files.into_iter().filter(|f| f.start_offset < end).collect();
                (!files.is_empty()).then_some((p, files))
            })
            .collect(),
        ignored: archive.plan.ignored,
    };
    info!(
        backfill = %plan.id,
        shard,
        base = ?plan.base_snapshot,
        files = files.files(),
        "reprocessing the archive"
    );
    let source = ArchiveSource::new(
        archive.store,
        files,
        archive.options,
        setup.mapping.clone(),
        setup.registry.clone(),
    );
    let logic = build_logic(&setup.config)?;
    let staged = backfill::reprocess(&setup.pipeline, source, logic, &request)
        .await
        .map_err(PipelineError::from_error)?;
    Ok((request, staged))
}
