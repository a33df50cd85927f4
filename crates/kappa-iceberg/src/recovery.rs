//! Operator actions on a pipeline's position, for the cases where the pipeline refuses to start
//! (`kappa state takeover`, `kappa state recover`).
//!
//! - **Takeover**: a pipeline was renamed. The table holds the old name's position, so the new
//!   name is refused (it would ingest the topic a second time). [`take_over`] moves the state to
//!   the new name and marks the old one as released, in one catalog commit per table.
//! - **Recover**: the position is gone (snapshots expired after another engine rewrote a table
//!   that kept its position only in snapshot summaries). [`recover`] rebuilds it from the rows
//!   the table holds: each row carries its Kafka partition and offset, so the next offset of a
//!   partition is the largest offset in the table plus one. Records after that offset are read
//!   again; the ones that left no row (duplicates, dead letters, late rows) are dropped or
//!   skipped again exactly as the first time, since each side table keeps its own position.
//!
//! - **Move** (`kappa state skip`): a live partition is stopped because the topic no longer
//!   holds the table's position (retention passed it, the topic was recreated). [`move_position`]
//!   moves the partition's position where the operator says, and records the decision in the
//!   state (`moves`), so that the gap stays visible.
//!
//! Takeover and recover assume no process of the pipeline runs. A move may run while the pipeline
//! reads its other partitions: it is an empty snapshot on a pinned base (see [`crate::commit`])
//! with the state property in the same commit, so a pipeline commit in between makes it reload
//! and decide again instead of overwriting the newer state, and the running pipeline's next
//! commit conflicts, reloads and keeps the move.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use kappa_core::{EventTimes, SourcePosition, TopicPartition};

use crate::commit::pinned::{PinnedCatalog, UpdateFailure};
use crate::commit::table_name;
use crate::error::IcebergError;
use crate::state::{
    PositionMove, StateOrigin, TableState, claims, released_property, state_property,
};
use crate::summary;

/// What [`take_over`] did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// The state moved from the old name to the new one.
    Moved {
        /// Partitions in the moved position.
        partitions: usize,
    },
    /// An earlier takeover already moved it.
    AlreadyDone,
    /// The table holds no state of the old name.
    NothingToMove,
}

/// Moves `from`'s state in `ident` to `to` and marks `from` as released to `to`, in one catalog
/// commit. Refuses when both names hold a position (the table would then hold two pipelines'
/// rows for the topic: someone must decide which is right).
pub async fn take_over(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    from: &str,
    to: &str,
) -> Result<Takeover, IcebergError> {
    let table = load(catalog, ident).await?;
    let name = table_name(ident);
    let old = match TableState::read(&name, table.metadata(), from) {
        Ok(state) => state,
        Err(IcebergError::Released { successor, .. }) if successor == to => {
            return Ok(Takeover::AlreadyDone);
        }
        Err(e) => return Err(e),
    };
    if old.is_empty() {
        return Ok(Takeover::NothingToMove);
    }
    let new = TableState::read(&name, table.metadata(), to)?;
    if !new.is_empty() {
        return Err(IcebergError::Invalid {
            table: name,
            message: format!(
                "both pipeline {from:?} and pipeline {to:?} hold a position here; a takeover \
                 would lose one of them. Decide which rows are right before going on"
            ),
        });
    }
    let partitions = old.position.iter().count();
    let tx = Transaction::new(&table);
    let action = tx
        .update_table_properties()
        .set(state_property(to), old.to_property())
        .set(state_property(from), released_property(to));
    commit_properties(catalog, &name, action.apply(tx)).await?;
    Ok(Takeover::Moved { partitions })
}

/// The columns [`recover`] reads a table's coordinates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    /// The topic every row of the table came from.
    pub topic: String,
    /// The Kafka partition column (`_kafka_partition`, `kafka_partition` in the DLQ table).
    pub partition: String,
    /// The Kafka offset column.
    pub offset: String,
    /// The event-time column (µs timestamps), when the table has one: rebuilds the newest event
    /// time per partition that lateness is judged by.
    pub event_time: Option<String>,
}

/// What [`recover`] found (and, unless it was a dry run, recorded) for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The rebuilt position: the next offset per partition (the held one when `already_held`).
    pub position: SourcePosition,
    /// The newest event time per partition.
    pub event_times: EventTimes,
    /// Rows read (none when the table already held the position).
    pub rows: u64,
    /// Whether the table already held the pipeline's position (nothing was recorded).
    pub already_held: bool,
}

/// Rebuilds `pipeline`'s position in `ident` from the coordinates of the rows it holds, and
/// (unless `dry_run`) records it in the `kappa.state.<pipeline>` property. A table that already
/// holds the pipeline's position is left alone; one where another pipeline holds a position is
/// refused (its rows cannot be told apart).
pub async fn recover(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    pipeline: &str,
    columns: &Coordinates,
    dry_run: bool,
) -> Result<Recovered, IcebergError> {
    let table = load(catalog, ident).await?;
    let name = table_name(ident);
    let current = TableState::read(&name, table.metadata(), pipeline)?;
    if let Some(owner) = claims(table.metadata()).keys().find(|p| *p != pipeline) {
        return Err(IcebergError::Invalid {
            table: name,
            message: format!(
                "pipeline {owner:?} holds a position here too: its rows cannot be told apart \
                 from {pipeline:?}'s, so no position can be rebuilt from them"
            ),
        });
    }
    if !current.is_empty() {
        // Nothing to rebuild: the rows are not read.
        return Ok(Recovered {
            position: current.position,
            event_times: current.event_times,
            rows: 0,
            already_held: true,
        });
    }
    let found = scan(&table, &name, columns).await?;
    if dry_run || found.rows == 0 {
        return Ok(found);
    }
    let state = TableState {
        origin: StateOrigin::Property,
        position: found.position.clone(),
        max_event_time: found.event_times.iter().map(|(_, t)| t).max(),
        event_times: found.event_times.clone(),
        last_commit_id: Some("recovered".into()),
        ..TableState::default()
    };
    let tx = Transaction::new(&table);
    let action = tx
        .update_table_properties()
        .set(state_property(pipeline), state.to_property());
    commit_properties(catalog, &name, action.apply(tx)).await?;
    Ok(found)
}

async fn scan(table: &Table, name: &str, columns: &Coordinates) -> Result<Recovered, IcebergError> {
    let failed = |source: iceberg::Error| IcebergError::Table {
        table: name.to_string(),
        operation: "reading the Kafka coordinates of its rows".into(),
        source: Box::new(source),
    };
    let mut found = Recovered {
        position: SourcePosition::new(),
        event_times: EventTimes::new(),
        rows: 0,
        already_held: false,
    };
    if table.metadata().current_snapshot().is_none() {
        return Ok(found);
    }
    let mut selected = vec![columns.partition.clone(), columns.offset.clone()];
    selected.extend(columns.event_time.clone());
    let mut batches = table
        .scan()
        .select(selected)
        .build()
        .map_err(failed)?
        .to_arrow()
        .await
        .map_err(failed)?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    while let Some(batch) = batches.try_next().await.map_err(failed)? {
        let column = |i: usize, what: &str| {
            batch
                .columns()
                .get(i)
                .cloned()
                .ok_or_else(|| IcebergError::Invalid {
                    table: name.to_string(),
                    message: format!("the scan returned no {what} column"),
                })
        };
        let partitions = column(0, &columns.partition)?;
        let offsets = column(1, &columns.offset)?;
        let (Some(partitions), Some(offsets)) = (
            partitions.as_primitive_opt::<Int32Type>(),
            offsets.as_primitive_opt::<Int64Type>(),
        ) else {
            return Err(IcebergError::Invalid {
                table: name.to_string(),
                message: format!(
                    "{} must be an int and {} a long column",
                    columns.partition, columns.offset
                ),
            });
        };
        let times = match columns.event_time {
            Some(_) => Some(column(2, "event-time")?),
            None => None,
        };
        let times = times.as_ref().map(|t| {
            arrow_cast::cast(t, &arrow_schema::DataType::Int64)
                .map(|t| t.as_primitive::<Int64Type>().clone())
        });
        let times = times.transpose().map_err(|e| IcebergError::Invalid {
            table: name.to_string(),
            message: format!("event-time column: {e}"),
        })?;
        for row in 0..batch.num_rows() {
            if partitions.is_null(row) || offsets.is_null(row) {
                continue;
            }
            let partition = partitions.value(row);
            let entry = next.entry(partition).or_insert(i64::MIN);
            *entry = (*entry).max(offsets.value(row).saturating_add(1));
            if let Some(times) = &times
                && !times.is_null(row)
            {
                found.event_times.observe(
                    &TopicPartition::new(columns.topic.clone(), partition),
                    times.value(row),
                );
            }
        }
        found.rows += batch.num_rows() as u64;
    }
    for (partition, offset) in next {
        found.position.advance(
            &TopicPartition::new(columns.topic.clone(), partition),
            offset,
        );
    }
    Ok(found)
}

/// What [`move_position`] found, or did, in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The position moved from `from` (or would, in a dry run).
    Moved {
        /// The position before.
        from: i64,
    },
    /// The table holds the partition at `at` already, or past the target without `rewind`.
    Unchanged {
        /// The table's position.
        at: i64,
    },
    /// The table holds no position of the partition.
    NotHeld,
}

/// Moves `pipeline`'s position of `partition` in `ident` to `to` and records the move: forward
/// when the table is behind `to` (the offsets in between are skipped, never ingested), backward
/// only with `rewind` (a topic recreated under the table: its offsets are read again). Commits an
/// empty snapshot that records the move (`kappa.position-move`) with the state property, on a
/// pinned base (decided again on a concurrent commit).
pub async fn move_position(
    catalog: &Arc<dyn Catalog>,
    ident: &TableIdent,
    pipeline: &str,
    partition: &TopicPartition,
    to: i64,
    rewind: bool,
    dry_run: bool,
) -> Result<Moved, IcebergError> {
    const ATTEMPTS: u32 = 5;
    let name = table_name(ident);
    for attempt in 1..=ATTEMPTS {
        let table = load(catalog.as_ref(), ident).await?;
        let mut state = TableState::read(&name, table.metadata(), pipeline)?;
        let Some(from) = state.position.next_offset(partition) else {
            return Ok(Moved::NotHeld);
        };
        if from == to || (to < from && !rewind) {
            return Ok(Moved::Unchanged { at: from });
        }
        if dry_run {
            return Ok(Moved::Moved { from });
        }
        state.position.set(partition, to);
        state.moves.push(PositionMove {
            partition: partition.clone(),
            from,
            to,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        });
        // An empty snapshot carries the move: its `assert-ref-snapshot-id` makes a pipeline
        // commit in between a conflict (decided again here), and makes the running pipeline's
        // next commit conflict and reload, so that it keeps the move instead of writing its older
        // state over it. A property-only commit would do neither.
        let props = HashMap::from([
            (summary::PIPELINE.to_string(), pipeline.to_string()),
            (
                summary::COMMIT_ID.to_string(),
                format!("move-{}", uuid::Uuid::new_v4().simple()),
            ),
            (summary::OFFSETS.to_string(), state.position.to_json()),
            (
                summary::POSITION_MOVE.to_string(),
                serde_json::json!({
                    "topic": partition.topic,
                    "partition": partition.partition,
                    "from": from,
                    "to": to,
                })
                .to_string(),
            ),
        ]);
        let pinned = PinnedCatalog::new(catalog.clone(), table.clone());
        let tx = Transaction::new(&table);
        let snapshot = tx
            .fast_append()
            .set_commit_uuid(uuid::Uuid::new_v4())
            .set_snapshot_properties(props);
        let property = tx
            .update_table_properties()
            .set(state_property(pipeline), state.to_property());
        let result = match snapshot.apply(tx).and_then(|tx| property.apply(tx)) {
            Ok(tx) => tx.commit(&pinned).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match (result, pinned.failure()) {
            (Ok(()), _) => return Ok(Moved::Moved { from }),
            (Err(_), Some(UpdateFailure::Conflict(reason))) if attempt < ATTEMPTS => {
                tracing::info!(table = %name, %reason, "the table moved meanwhile; deciding again");
            }
            (Err(source), _) => {
                return Err(IcebergError::Table {
                    table: name,
                    operation: format!("moving the position of {partition} to {to}"),
                    source: Box::new(source),
                });
            }
        }
    }
    Err(IcebergError::ConflictRetriesExhausted {
        table: name,
        commit_id: format!("move of {partition} to {to}"),
        attempts: ATTEMPTS,
    })
}

async fn load(catalog: &dyn Catalog, ident: &TableIdent) -> Result<Table, IcebergError> {
    catalog
        .load_table(ident)
        .await
        .map_err(|source| IcebergError::Table {
            table: table_name(ident),
            operation: "loading".into(),
            source: Box::new(source),
        })
}

async fn commit_properties(
    catalog: &dyn Catalog,
    name: &str,
    tx: iceberg::Result<Transaction>,
) -> Result<(), IcebergError> {
    let committed = match tx {
        Ok(tx) => tx.commit(catalog).await.map(|_| ()),
        Err(e) => Err(e),
    };
    committed.map_err(|source| IcebergError::Table {
        table: name.to_string(),
        operation: "committing the state property".into(),
        source: Box::new(source),
    })
}
