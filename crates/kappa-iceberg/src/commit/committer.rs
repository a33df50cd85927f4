//! The committer: the I/O half of the commit protocol.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use kappa_core::{EventTimes, OffsetRange, TopicPartition};
use kappa_metrics::events;
use tracing::{debug, info, instrument, warn};

use super::pinned::{PinnedCatalog, UpdateFailure};
use super::protocol::{self, Decision};
use crate::error::IcebergError;
use crate::state::{StateOrigin, TableState, claims, find_commit, state_property};
use crate::summary;
use crate::writer::{WriterOptions, write_data_files};

/// One commit's worth of input: the rows for the table and the offset ranges they account for.
#[derive(Debug, Clone, Default)]
pub struct PendingCommit {
    /// Input ranges per topic-partition; together with the base they give the new state.
    pub input: BTreeMap<TopicPartition, OffsetRange>,
    /// Rows in the table's Arrow schema, written at commit time.
    pub batches: Vec<RecordBatch>,
    /// Data files written ahead (by a [`crate::writer::StreamingWriter`] on this table's current
    /// schema and spec); committed with the rows of `batches`, deleted if the commit does not
    /// happen.
    pub files: Vec<DataFile>,
    /// Event-time watermark after this input (µs).
    pub watermark: Option<i64>,
    /// Newest event time in this input or before (µs).
    pub max_event_time: Option<i64>,
    /// Newest event time per partition of this input; merged with the base's and stored whole.
    pub event_times: EventTimes,
    /// The newest day the partition gate judged with this commit; the newer of it and the
    /// base's is stored.
    pub closed_through: Option<i32>,
    /// Counters written to the snapshot summary (`kappa.records-in`, ...).
    pub counters: Vec<(&'static str, u64)>,
    /// Other snapshot-summary properties (`kappa.quality`, ...).
    pub properties: Vec<(String, String)>,
}

impl PendingCommit {
    /// Rows to commit.
    pub fn num_rows(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self
                .files
                .iter()
                .map(|f| f.record_count() as usize)
                .sum::<usize>()
    }
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// A new snapshot holds the input.
    Committed {
        /// The new snapshot.
        snapshot_id: i64,
        /// Attempts it took (1 without conflicts).
        attempts: u32,
        /// Data files added.
        data_files: usize,
        /// Bytes of data files added.
        bytes: u64,
        /// Rows added.
        rows: u64,
        /// Wall time of write + commit.
        duration: Duration,
    },
    /// The table already held this input; nothing was committed.
    AlreadyCommitted,
}

/// Where the first commit of a partition may start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstCommit {
    /// Anywhere: a side table (dead letters, late rows) starts where its first row is.
    #[default]
    Anywhere,
    /// At offset 0, the start of every Kafka partition: a table whose first commit of a partition
    /// started later would tell every later run that the offsets before were ingested.
    AtZero,
    /// Anywhere, explicitly: the offsets before the first input (not in the archive any more,
    /// skipped by `--start`, or before a live `start = "latest"`) are recorded as skipped
    /// (`kappa.skipped`), not as ingested.
    SkipMissingHistory,
}

/// How long a commit keeps retrying after conflicts unless told otherwise
/// ([`Committer::set_conflict_timeout`]).
pub const DEFAULT_CONFLICT_TIMEOUT: Duration = Duration::from_secs(600);

/// Commits pending input to one table for one pipeline.
///
/// A commit that fails (an unknown outcome, an error before reaching the catalog) is tried
/// `max_attempts` times. A conflict is not a failure: another writer committed first, so the
/// writers as a whole made progress. Replicas committing to one table every second on a slow
/// catalog make one of them lose many times in a row (ten in 21 s, measured on SeaweedFS with
/// three replicas on two busy cores), so conflicts are retried for a time, the conflict timeout,
/// not a number of times.
#[derive(Debug)]
pub struct Committer {
    catalog: Arc<dyn Catalog>,
    table: Table,
    name: String,
    pipeline: String,
    state: TableState,
    writer: WriterOptions,
    max_attempts: u32,
    conflict_timeout: Duration,
    first_commit: FirstCommit,
}

impl Committer {
    /// A committer for `table`, reading `pipeline`'s state from it.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        table: Table,
        pipeline: &str,
        writer: WriterOptions,
        max_attempts: u32,
    ) -> Result<Self, IcebergError> {
        let name = table_name(table.identifier());
        let state = TableState::read(&name, table.metadata(), pipeline)?;
        Ok(Self {
            catalog,
            table,
            name,
            pipeline: pipeline.to_string(),
            state,
            writer,
            max_attempts: max_attempts.max(1),
            conflict_timeout: DEFAULT_CONFLICT_TIMEOUT,
            first_commit: FirstCommit::default(),
        })
    }

    /// Where the first commit of a partition may start (the main table: at offset 0, or with the
    /// skipped offsets recorded).
    pub fn set_first_commit(&mut self, rule: FirstCommit) {
        self.first_commit = rule;
    }

    /// How long a commit keeps retrying after conflicts before it fails (zero: a conflict fails
    /// it at once).
    pub fn set_conflict_timeout(&mut self, timeout: Duration) {
        self.conflict_timeout = timeout;
    }

    /// The pipeline's state as of the last load or commit.
    pub fn state(&self) -> &TableState {
        &self.state
    }

    /// The table as of the last load or commit.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// `namespace.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reloads the table and the pipeline's state.
    pub async fn reload(&mut self) -> Result<(), IcebergError> {
        let table = self
            .catalog
            .load_table(self.table.identifier())
            .await
            .map_err(|source| IcebergError::Table {
                table: self.name.clone(),
                operation: "reloading".into(),
                source: Box::new(source),
            })?;
        self.state = TableState::read(&self.name, table.metadata(), &self.pipeline)?;
        self.table = table;
        Ok(())
    }

    /// Commits `pending` exactly once (see the module docs of [`super::protocol`]). Each attempt
    /// that loses to another writer and is retried emits [`events::commit::ConflictRetried`].
    #[instrument(skip_all, fields(table = %self.name, rows = pending.num_rows(), commit_id))]
    pub async fn commit(
        &mut self,
        mut pending: PendingCommit,
    ) -> Result<CommitOutcome, IcebergError> {
        let started = Instant::now();
        let commit_id = protocol::commit_id(&self.pipeline, &self.name, &pending.input);
        tracing::Span::current().record("commit_id", commit_id.as_str());
        let mut files: Option<Vec<DataFile>> = None;
        let mut ahead = std::mem::take(&mut pending.files);
        let mut attempt = 0;
        // Attempts that failed (not conflicts): bounded by `max_attempts`.
        let mut failures = 0;
        // Set once an attempt reached the catalog with an unknown outcome: that commit may still
        // land later (a "ghost" whose response was lost), referencing these files. From then on
        // they are never deleted, and every decision first looks for the commit id.
        let mut maybe_referenced = false;
        loop {
            attempt += 1;
            if maybe_referenced && let Some(snapshot_id) = self.landed(&commit_id) {
                info!(
                    commit_id,
                    snapshot_id, "an earlier attempt landed after all"
                );
                return Ok(committed(snapshot_id, attempt, files.as_deref(), started));
            }
            let decided = self
                .check_owner(pending.input.keys().map(|tp| tp.topic.as_str()))
                .and_then(|()| self.decide_on_base(&pending.input));
            let (offsets, skipped) = match decided {
                Ok(Some(offsets)) => match self.first_ranges(&pending.input) {
                    Ok(skipped) => (offsets, skipped),
                    Err(e) => {
                        if !maybe_referenced {
                            self.discard(files.take()).await;
                        }
                        self.discard(Some(std::mem::take(&mut ahead))).await;
                        return Err(e);
                    }
                },
                Ok(None) => {
                    debug!(commit_id, "input already committed; nothing to do");
                    if !maybe_referenced {
                        self.discard(files.take()).await;
                    }
                    self.discard(Some(std::mem::take(&mut ahead))).await;
                    return Ok(CommitOutcome::AlreadyCommitted);
                }
                Err(e) => {
                    if !maybe_referenced {
                        self.discard(files.take()).await;
                    }
                    self.discard(Some(std::mem::take(&mut ahead))).await;
                    return Err(e);
                }
            };
            if files.is_none() {
                let prefix = format!("{commit_id}-{}", uuid::Uuid::new_v4().simple());
                let mut written =
                    write_data_files(&self.table, &pending.batches, &prefix, &self.writer)
                        .await
                        .map_err(|source| IcebergError::Write {
                            table: self.name.clone(),
                            source: Box::new(source),
                        })?;
                written.append(&mut ahead);
                files = Some(written);
            }
            let data_files = files.clone().unwrap_or_default();
            let mut next = self.next_state(&commit_id, offsets, &pending);
            for (tp, range) in &skipped {
                next.skipped.insert(tp.clone(), *range);
            }
            let mut props = HashMap::from([
                (summary::PIPELINE.to_string(), self.pipeline.clone()),
                (summary::COMMIT_ID.to_string(), commit_id.clone()),
                (summary::OFFSETS.to_string(), next.position.to_json()),
                (
                    summary::INPUT.to_string(),
                    protocol::input_json(&pending.input),
                ),
            ]);
            if let Some(w) = next.watermark {
                props.insert(summary::WATERMARK.to_string(), w.to_string());
            }
            if let Some(m) = next.max_event_time {
                props.insert(summary::MAX_EVENT_TIME.to_string(), m.to_string());
            }
            if !next.event_times.is_empty() {
                props.insert(summary::EVENT_TIMES.to_string(), next.event_times.to_json());
            }
            if let Some(day) = next.closed_through {
                props.insert(summary::CLOSED_THROUGH.to_string(), day.to_string());
            }
            if !skipped.is_empty() {
                props.insert(summary::SKIPPED.to_string(), protocol::input_json(&skipped));
            }
            for (key, value) in &pending.counters {
                props.insert((*key).to_string(), value.to_string());
            }
            for (key, value) in &pending.properties {
                props.insert(key.clone(), value.clone());
            }

            let pinned = PinnedCatalog::new(self.catalog.clone(), self.table.clone());
            let tx = Transaction::new(&self.table);
            let action = tx
                .fast_append()
                .with_check_duplicate(false)
                .set_commit_uuid(uuid::Uuid::new_v4())
                .set_snapshot_properties(props)
                .add_data_files(data_files.clone());
            // The state property goes in the same catalog commit as the snapshot: both or
            // neither.
            let state = tx
                .update_table_properties()
                .set(state_property(&self.pipeline), next.to_property());
            let result = match action.apply(tx).and_then(|tx| state.apply(tx)) {
                Ok(tx) => tx.commit(&pinned).await,
                Err(e) => Err(e),
            };
            match (result, pinned.failure()) {
                (Ok(table), _) => {
                    kappa_core::crash_point("iceberg::after-commit");
                    let snapshot_id = table.metadata().current_snapshot_id().unwrap_or_default();
                    self.state = TableState::read(&self.name, table.metadata(), &self.pipeline)?;
                    self.table = table;
                    let outcome = CommitOutcome::Committed {
                        snapshot_id,
                        attempts: attempt,
                        data_files: data_files.len(),
                        bytes: data_files.iter().map(DataFile::file_size_in_bytes).sum(),
                        rows: data_files.iter().map(DataFile::record_count).sum(),
                        duration: started.elapsed(),
                    };
                    info!(
                        commit_id,
                        snapshot_id,
                        attempt,
                        files = data_files.len(),
                        "committed"
                    );
                    return Ok(outcome);
                }
                (Err(_), Some(UpdateFailure::Conflict(reason))) => {
                    // Another writer moved the table: reload and re-decide (below), until the
                    // conflict timeout.
                    if started.elapsed() >= self.conflict_timeout {
                        warn!(commit_id, attempt, %reason, timeout = ?self.conflict_timeout, "commit conflicted; out of time");
                        if !maybe_referenced {
                            self.discard(files.take()).await;
                        }
                        return Err(IcebergError::ConflictRetriesExhausted {
                            table: self.name.clone(),
                            commit_id,
                            attempts: attempt,
                        });
                    }
                    events::commit::ConflictRetried {
                        table: &self.name,
                        attempt,
                        reason: &reason,
                    }
                    .emit();
                }
                (Err(_), Some(UpdateFailure::Unknown(reason))) => {
                    failures += 1;
                    warn!(commit_id, attempt, %reason, "commit outcome unknown; searching the table history");
                    maybe_referenced = true;
                    self.reload_with_retry().await?;
                    if let Some(snapshot_id) = self.landed(&commit_id) {
                        info!(
                            commit_id,
                            snapshot_id, "commit found in history: it was applied"
                        );
                        return Ok(committed(snapshot_id, attempt, Some(&data_files), started));
                    }
                    if failures >= self.max_attempts {
                        return Err(IcebergError::ConflictRetriesExhausted {
                            table: self.name.clone(),
                            commit_id,
                            attempts: attempt,
                        });
                    }
                    continue;
                }
                (Err(source), None) => {
                    // Failed before reaching the catalog (writing manifests, building metadata):
                    // nothing was committed.
                    failures += 1;
                    if crate::error::kind_of(&source) != kappa_core::ErrorKind::Transient
                        || failures >= self.max_attempts
                    {
                        return Err(IcebergError::Table {
                            table: self.name.clone(),
                            operation: format!("committing {commit_id}"),
                            source: Box::new(source),
                        });
                    }
                    warn!(commit_id, attempt, error = %source, "commit failed before reaching the catalog; retrying");
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
            self.reload_with_retry().await?;
        }
    }

    async fn reload_with_retry(&mut self) -> Result<(), IcebergError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.reload().await {
                Ok(()) => return Ok(()),
                Err(e)
                    if tries < self.max_attempts
                        && kappa_core::Classify::kind(&e) == kappa_core::ErrorKind::Transient =>
                {
                    warn!(table = %self.name, error = %e, "reload failed; retrying");
                    tokio::time::sleep(backoff(tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes data files written for a commit that will not happen (best effort: an orphan file
    /// is harmless, readers only see files referenced by snapshots).
    pub async fn discard(&self, files: impl IntoIterator<Item = Vec<DataFile>>) {
        for file in files.into_iter().flatten() {
            if let Err(e) = self.table.file_io().delete(file.file_path()).await {
                debug!(path = file.file_path(), error = %e, "could not delete an unused data file");
            }
        }
    }

    /// The snapshot that holds `commit_id`, as of the last load: in `main`'s ancestry, or recorded
    /// as the pipeline's last commit in its state property (whose snapshot is then the current
    /// one; the ancestry may have been expired).
    fn landed(&self, commit_id: &str) -> Option<i64> {
        find_commit(self.table.metadata(), commit_id).or_else(|| {
            (self.state.last_commit_id.as_deref() == Some(commit_id))
                .then_some(self.state.snapshot_id)
                .flatten()
        })
    }

    /// `decide` on the current base: the offsets to record, `None` when the table already holds
    /// the input, or the continuity error naming the partition.
    fn decide_on_base(
        &self,
        input: &BTreeMap<TopicPartition, OffsetRange>,
    ) -> Result<Option<kappa_core::SourcePosition>, IcebergError> {
        match protocol::decide(&self.state.position, input) {
            Decision::Commit { offsets } => Ok(Some(offsets)),
            Decision::AlreadyCommitted => Ok(None),
            Decision::Overlap {
                partition,
                range,
                committed,
            } => Err(self.continuity(&partition, range, format!(
                "the table already holds this partition up to offset {committed}; the input must restart from there"
            ))),
            Decision::Gap {
                partition,
                range,
                committed,
            } => Err(self.continuity(&partition, range, format!(
                "the table holds this partition only up to offset {committed}; offsets {committed}..{} would be skipped",
                range.start
            ))),
        }
    }

    /// Refuses `input` when its first range of a partition would start past offset 0 without
    /// being asked to (see [`FirstCommit`]): checked before the side tables take anything of the
    /// flush, and again at the commit.
    pub fn check_first_commit(
        &self,
        input: &BTreeMap<TopicPartition, OffsetRange>,
    ) -> Result<(), IcebergError> {
        self.first_ranges(input).map(|_| ())
    }

    /// Applies the first-commit rule to the partitions the base holds nothing of: the offsets a
    /// first range skips (`[0, start)`), to record, or the refusal.
    fn first_ranges(
        &self,
        input: &BTreeMap<TopicPartition, OffsetRange>,
    ) -> Result<BTreeMap<TopicPartition, OffsetRange>, IcebergError> {
        let mut skipped = BTreeMap::new();
        if self.first_commit == FirstCommit::Anywhere {
            return Ok(skipped);
        }
        for (tp, range) in input {
            if self.state.position.next_offset(tp).is_some() || range.start <= 0 {
                continue;
            }
            if self.first_commit == FirstCommit::AtZero {
                return Err(IcebergError::MissingHistory {
                    table: self.name.clone(),
                    partition: tp.to_string(),
                    start: range.start,
                });
            }
            warn!(table = %self.name, partition = %tp, start = range.start, "first commit of the partition skips the offsets before its input, as asked; recorded in kappa.skipped");
            skipped.insert(tp.clone(), OffsetRange::new(0, range.start));
        }
        Ok(skipped)
    }

    /// The state after committing `pending` with `offsets` on the current base.
    fn next_state(
        &self,
        commit_id: &str,
        offsets: kappa_core::SourcePosition,
        pending: &PendingCommit,
    ) -> TableState {
        let newer = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let mut event_times = self.state.event_times.clone();
        event_times.merge(&pending.event_times);
        TableState {
            snapshot_id: None,
            origin: StateOrigin::Property,
            position: offsets,
            watermark: newer(self.state.watermark, pending.watermark),
            max_event_time: newer(self.state.max_event_time, pending.max_event_time),
            event_times,
            closed_through: self.state.closed_through.max(pending.closed_through),
            last_commit_id: Some(commit_id.to_string()),
            skipped: self.state.skipped.clone(),
            moves: self.state.moves.clone(),
        }
    }

    /// Refuses when another pipeline holds offsets in this table for one of `topics`: running
    /// this pipeline would ingest the topic a second time (a renamed pipeline, or two pipelines
    /// configured on one table by mistake).
    pub fn check_owner<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IcebergError> {
        let claims = claims(self.table.metadata());
        for topic in topics {
            if let Some((owner, _)) = claims
                .iter()
                .find(|(owner, held)| **owner != self.pipeline && held.contains(topic))
            {
                return Err(IcebergError::Owned {
                    table: self.name.clone(),
                    topic: topic.to_string(),
                    owner: owner.clone(),
                    pipeline: self.pipeline.clone(),
                });
            }
        }
        Ok(())
    }

    /// The pipeline this committer writes for.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    fn continuity(
        &self,
        partition: &TopicPartition,
        range: OffsetRange,
        message: String,
    ) -> IcebergError {
        IcebergError::Continuity {
            table: self.name.clone(),
            partition: partition.to_string(),
            range: range.to_string(),
            message,
        }
    }
}

/// The outcome of a commit found in the table (`files` as sent in the attempt that landed).
fn committed(
    snapshot_id: i64,
    attempts: u32,
    files: Option<&[DataFile]>,
    started: Instant,
) -> CommitOutcome {
    let files = files.unwrap_or_default();
    CommitOutcome::Committed {
        snapshot_id,
        attempts,
        data_files: files.len(),
        bytes: files.iter().map(DataFile::file_size_in_bytes).sum(),
        rows: files.iter().map(DataFile::record_count).sum(),
        duration: started.elapsed(),
    }
}

/// The wait before attempt `attempt + 1`: between half and all of 100 ms doubling per attempt up
/// to 3.2 s, drawn at random. Replicas whose commits conflicted with each other retried in step
/// without the random half, and conflicted again.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 50u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(ceiling / 2 + rand::random_range(0..=ceiling / 2))
}

/// `namespace.name` of a table identifier.
pub(crate) fn table_name(ident: &TableIdent) -> String {
    format!("{}.{}", ident.namespace().join("."), ident.name())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::backoff;

    #[test]
    fn retries_wait_between_half_and_all_of_the_doubling_backoff_never_in_step() {
        for attempt in 1..10u32 {
            let ceiling = Duration::from_millis(50 << attempt.min(6));
            let waits: BTreeSet<Duration> = (0..64).map(|_| backoff(attempt)).collect();
            assert!(
                waits.iter().all(|w| *w >= ceiling / 2 && *w <= ceiling),
                "attempt {attempt}: {waits:?} outside {:?}..={ceiling:?}",
                ceiling / 2
            );
            // Two replicas that conflicted draw different waits: 64 draws are spread out.
            assert!(waits.len() > 16, "attempt {attempt}: only {waits:?}");
        }
    }
}
