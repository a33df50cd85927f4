//! Kappa's own snapshot producer: the snapshots iceberg-rust 0.10 cannot make yet.
//!
//! iceberg-rust 0.10 commits only fast appends through its `Transaction`, and the types that
//! would let a caller add other changes (`TableCommit`'s builder, `TransactionAction`) are
//! crate-private. Backfills must replace day partitions atomically, on a branch first and on
//! `main` at publish ([ADR 0008](../../../../docs/adr/0008-own-snapshot-producer.md)). This
//! module builds those snapshots from iceberg-rust's public spec types and commits them through
//! the catalog's own atomic primitive:
//!
//! ```text
//!  stage(table, NewSnapshot)                 stage_fast_forward(table, branch)
//!    manifests: untouched ones by reference,    main := the branch's head, which must
//!    rewritten ones with replaced entries          descend from main's head
//!    DELETED, one of ADDED files
//!    manifest list, snapshot + summary totals
//!    the metadata updates and the requirements that guard the base (nothing visible yet)
//!                                                     │
//!                                                     ▼
//!  CatalogCommitter::swap(staged), the catalog's atomic primitive:
//!    SQL: write the new metadata file, compare-and-swap the table's iceberg_tables row
//!    REST: POST the updates with assert-table-uuid + assert-ref-snapshot-id
//!      ──► Committed | Conflict | Unknown | Refused
//! ```
//!
//! A conflict means another commit moved the table since the base was loaded: reload, stage
//! again. An unknown outcome (the connection failed around the swap, a 5xx) is settled by
//! reloading the table and asking [`landed`]. Files of a staging that is not committed are
//! deleted with [`discard`], never those of one whose outcome is unknown and not settled.
//!
//! Only what Kappa writes is supported: format v2 tables, data files only (no delete files), one
//! partition spec. It is small on purpose, to be deleted when iceberg-rust grows these actions.

mod manifests;
mod rest;
mod sql;
mod summary;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use iceberg::io::FileIO;
use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Struct, Summary, TableMetadata,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableRequirement, TableUpdate};

use crate::catalog::{CatalogConfig, CatalogType};
use crate::commit::table_name;
use crate::days::DayField;
use crate::error::IcebergError;

/// How a swap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The table now points at the staged metadata.
    Committed,
    /// The table no longer is at the staged base: another commit came first. Nothing changed.
    Conflict,
    /// The request failed in a way that does not say whether it was applied: reload the table
    /// and ask [`landed`].
    Unknown(String),
    /// Not applied, for another reason than a conflict (the catalog refused the request, the
    /// metadata file could not be written): staging again would not help.
    Refused(String),
}

/// Commits staged snapshots through the catalog's atomic primitive.
#[derive(Debug)]
pub struct CatalogCommitter(Primitive);

#[derive(Debug)]
enum Primitive {
    /// Compare-and-swap of the `iceberg_tables` row.
    Sql(sql::SqlCommitter),
    /// The REST table commit with its requirements.
    Rest(Box<rest::RestCommitter>),
}

impl CatalogCommitter {
    /// Connects to the catalog of `config` (the table must exist: it was created through
    /// [`crate::connect`]).
    pub async fn connect(config: &CatalogConfig) -> Result<Self, IcebergError> {
        Ok(Self(match config.kind {
            CatalogType::Sql => Primitive::Sql(sql::SqlCommitter::connect(config).await?),
            CatalogType::Rest => {
                Primitive::Rest(Box::new(rest::RestCommitter::connect(config).await?))
            }
            CatalogType::Glue | CatalogType::S3Tables => {
                return Err(IcebergError::Catalog {
                    uri: config.kind.as_str().to_string(),
                    operation: "committing Kappa's own snapshots (a backfill's publish, a \
                                compaction, a snapshot expiry)"
                        .into(),
                    source: Box::new(iceberg::Error::new(
                        iceberg::ErrorKind::FeatureUnsupported,
                        format!(
                            "not supported on [catalog] type = \"{}\" yet: they need a SQL or \
                             REST catalog (appends, replays, live runs and orphan cleanup work \
                             on it)",
                            config.kind.as_str()
                        ),
                    )),
                });
            }
        }))
    }

    /// Commits `staged` if the table is still at the base it was staged on.
    pub async fn swap(&self, ident: &iceberg::TableIdent, staged: &Staged) -> Swap {
        match &self.0 {
            Primitive::Sql(sql) => sql.swap(ident, staged).await,
            Primitive::Rest(rest) => rest.swap(ident, staged).await,
        }
    }
}

/// What a snapshot does to its branch.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adds the files (operation `append`).
    Append,
    /// Deletes every live data file whose partition value is one of these (of the table's
    /// default partition spec) and adds the files (operation `overwrite`, summary
    /// `replace-partitions = true`, as Spark's and Java's `ReplacePartitions` write it).
    ReplacePartitions(Vec<Struct>),
    /// Deletes every live data file whose day (the table's `day(...)` partition field) is one
    /// of `days`, except the files in `keep`, and adds the files (operation `overwrite`). A
    /// backfill's publish: the days' files at its base are replaced, the ones its pipeline
    /// appended since are kept.
    ReplaceDays {
        /// The day partition field.
        field: DayField,
        /// Days since 1970-01-01.
        days: BTreeSet<i32>,
        /// Paths of live files of those days that stay.
        keep: HashSet<String>,
    },
    /// Deletes the live data files whose paths are in `paths` and adds the files, which hold the
    /// same rows (operation `replace`: a compaction; readers of changes skip it).
    Rewrite {
        /// Paths of the live files rewritten.
        paths: HashSet<String>,
        /// The days they are of, when the table has a day partition field: only the manifests
        /// that may hold those days are read.
        days: Option<(DayField, BTreeSet<i32>)>,
    },
}

/// One snapshot to stage.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// The branch it goes on; a branch that does not exist yet starts at `main`'s head.
    pub branch: String,
    /// What it does.
    pub change: Change,
    /// Data files it adds (already written, of the table's default partition spec).
    pub files: Vec<DataFile>,
    /// Extra summary properties (`kappa.*`).
    pub summary: HashMap<String, String>,
    /// Table properties set in the same commit.
    pub properties: HashMap<String, String>,
}

/// A commit staged: its manifests are written, nothing is visible until
/// [`CatalogCommitter::swap`] commits it.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The metadata file the commit must replace (the compare of the SQL compare-and-swap).
    pub base_location: String,
    /// The new metadata file a SQL catalog's swap writes (a REST catalog names its own).
    pub location: String,
    /// The new metadata (the base with `updates` applied).
    pub metadata: TableMetadata,
    /// The snapshot it adds (none for a fast-forward).
    pub snapshot_id: Option<i64>,
    /// The snapshot a fast-forward moves `main` to.
    pub fast_forward_to: Option<i64>,
    /// The snapshots an expiry removes.
    pub removed: Vec<i64>,
    /// What must still hold of the table for the commit to apply.
    pub requirements: Vec<TableRequirement>,
    /// The changes to the base's metadata.
    pub updates: Vec<TableUpdate>,
    /// Files the staging wrote (manifests, manifest list), deleted by [`discard`].
    pub written: Vec<String>,
    /// The table's file IO (the SQL swap writes the metadata file with it).
    pub file_io: FileIO,
}

fn invalid(table: &Table, message: impl Into<String>) -> IcebergError {
    IcebergError::Invalid {
        table: table_name(table.identifier()),
        message: message.into(),
    }
}

fn failed(table: &Table, operation: &str, source: iceberg::Error) -> IcebergError {
    IcebergError::Table {
        table: table_name(table.identifier()),
        operation: operation.to_string(),
        source: Box::new(source),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A snapshot id not used in `metadata` (random and positive, as iceberg-rust draws them).
fn new_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Which live files a change deletes.
type Deletes<'a> = Box<dyn Fn(&DataFile) -> bool + Sync + 'a>;

/// Stages `new` on `table` (as loaded: its metadata is the base).
pub async fn stage(table: &Table, new: NewSnapshot) -> Result<Staged, IcebergError> {
    let metadata = table.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(invalid(
            table,
            format!(
                "the snapshot producer writes format v2 tables only; this one is {}",
                metadata.format_version()
            ),
        ));
    }
    let base_location = table
        .metadata_location_result()
        .map_err(|e| failed(table, "staging a snapshot", e))?
        .to_string();
    let parent = metadata
        .snapshot_for_ref(&new.branch)
        .or_else(|| metadata.snapshot_for_ref(MAIN_BRANCH))
        .cloned();
    let snapshot_id = new_snapshot_id(metadata);
    let sequence_number = metadata.next_sequence_number();
    let commit = uuid::Uuid::now_v7();
    let replaced: HashSet<Struct> = match &new.change {
        Change::ReplacePartitions(values) => values.iter().cloned().collect(),
        _ => HashSet::new(),
    };
    let deletes: Option<Deletes<'_>> = match &new.change {
        Change::Append => None,
        Change::ReplacePartitions(_) => Some(Box::new(|file: &DataFile| {
            replaced.contains(file.partition())
        })),
        Change::ReplaceDays { field, days, keep } => Some(Box::new(move |file: &DataFile| {
            field.day(file).is_some_and(|day| days.contains(&day))
                && !keep.contains(file.file_path())
        })),
        Change::Rewrite { paths, .. } => {
            Some(Box::new(|file: &DataFile| paths.contains(file.file_path())))
        }
    };
    let may_delete = |manifest: &iceberg::spec::ManifestFile| match &new.change {
        Change::ReplaceDays { field, days, .. }
        | Change::Rewrite {
            days: Some((field, days)),
            ..
        } => field.may_hold(manifest, days),
        _ => true,
    };
    let written = manifests::write(
        table,
        parent.as_ref(),
        manifests::Plan {
            snapshot_id,
            sequence_number,
            commit,
            deletes: deletes.as_deref(),
            may_delete: &may_delete,
            files: &new.files,
        },
    )
    .await?;
    let mut properties = new.summary;
    properties.extend(written.summary);
    if matches!(new.change, Change::ReplacePartitions(_)) {
        properties.insert("replace-partitions".into(), "true".into());
    }
    summary::update_totals(&mut properties, parent.as_ref().map(|s| s.summary()));
    let operation = match new.change {
        Change::Append => Operation::Append,
        Change::ReplacePartitions(_) | Change::ReplaceDays { .. } => Operation::Overwrite,
        Change::Rewrite { .. } => Operation::Replace,
    };
    let branch_head = metadata
        .snapshot_for_ref(&new.branch)
        .map(|s| s.snapshot_id());
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.as_ref().map(|s| s.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(now_ms().max(metadata.last_updated_ms()))
        .with_manifest_list(written.manifest_list.clone())
        .with_summary(Summary {
            operation,
            additional_properties: properties,
        })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: new.branch.clone(),
            snapshot_id: branch_head,
        },
    ];
    let mut updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: new.branch.clone(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        },
    ];
    if !new.properties.is_empty() {
        updates.push(TableUpdate::SetProperties {
            updates: new.properties,
        });
    }
    let staged = apply(table, base_location, requirements, updates, written.files)?;
    Ok(Staged {
        snapshot_id: Some(snapshot_id),
        ..staged
    })
}

/// Stages moving `main` to `branch`'s head: a fast-forward, refused unless that head descends
/// from `main`'s head (the branch was made from `main` and nothing else was committed to `main`
/// since). `properties` are set in the same commit.
pub async fn stage_fast_forward(
    table: &Table,
    branch: &str,
    properties: HashMap<String, String>,
) -> Result<Staged, IcebergError> {
    let metadata = table.metadata();
    let base_location = table
        .metadata_location_result()
        .map_err(|e| failed(table, "staging a fast-forward", e))?
        .to_string();
    let Some(head) = metadata.snapshot_for_ref(branch).map(|s| s.snapshot_id()) else {
        return Err(invalid(table, format!("branch {branch:?} does not exist")));
    };
    if let Some(main) = metadata.current_snapshot_id() {
        let descends = crate::state::ancestry_of(metadata, head).any(|s| s.snapshot_id() == main);
        if !descends {
            return Err(invalid(
                table,
                format!(
                    "main (snapshot {main}) is not an ancestor of branch {branch:?} (snapshot \
                     {head}): main moved since the branch was made, so it cannot be \
                     fast-forwarded"
                ),
            ));
        }
    }
    let requirements = vec![
        TableRequirement::UuidMatch {
            uuid: metadata.uuid(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: metadata.current_snapshot_id(),
        },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: branch.to_string(),
            snapshot_id: Some(head),
        },
    ];
    let mut updates = vec![TableUpdate::SetSnapshotRef {
        ref_name: MAIN_BRANCH.to_string(),
        reference: SnapshotReference::new(head, SnapshotRetention::branch(None, None, None)),
    }];
    if !properties.is_empty() {
        updates.push(TableUpdate::SetProperties {
            updates: properties,
        });
    }
    let staged = apply(table, base_location, requirements, updates, Vec::new())?;
    Ok(Staged {
        fast_forward_to: Some(head),
        ..staged
    })
}

/// A branch or tag of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Its name.
    pub name: String,
    /// The snapshot it points at.
    pub snapshot_id: i64,
    /// A tag (a branch otherwise).
    pub tag: bool,
}

/// The table's branches and tags, by name. iceberg-rust 0.10 keeps the map crate-private; it is
/// read from the metadata's own serialization (the `refs` field of the table spec).
pub fn refs(table: &Table) -> Result<Vec<Ref>, IcebergError> {
    let json = serde_json::to_value(table.metadata()).map_err(|e| {
        invalid(
            table,
            format!("serializing the table metadata to read its refs: {e}"),
        )
    })?;
    let mut refs: Vec<Ref> = json
        .get("refs")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            Some(Ref {
                name: name.clone(),
                snapshot_id: value.get("snapshot-id")?.as_i64()?,
                tag: value.get("type").and_then(serde_json::Value::as_str) == Some("tag"),
            })
        })
        .collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(refs)
}

/// Stages removing the snapshots `expired` from the table's metadata (their files stay: the
/// caller deletes the ones nothing else references once the commit landed), with `properties`
/// set in the same commit. Guarded by every ref's current head, so that a commit to any branch
/// in between is a conflict (the expiry is then decided again on the newer table).
pub fn stage_expiry(
    table: &Table,
    expired: Vec<i64>,
    properties: HashMap<String, String>,
) -> Result<Staged, IcebergError> {
    let metadata = table.metadata();
    let base_location = table
        .metadata_location_result()
        .map_err(|e| failed(table, "staging a snapshot expiry", e))?
        .to_string();
    let mut requirements = vec![TableRequirement::UuidMatch {
        uuid: metadata.uuid(),
    }];
    let refs = refs(table)?;
    requirements.extend(refs.iter().map(|r| TableRequirement::RefSnapshotIdMatch {
        r#ref: r.name.clone(),
        snapshot_id: Some(r.snapshot_id),
    }));
    if !refs.iter().any(|r| r.name == MAIN_BRANCH) {
        requirements.push(TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_string(),
            snapshot_id: None,
        });
    }
    let mut updates = vec![TableUpdate::RemoveSnapshots {
        snapshot_ids: expired.clone(),
    }];
    if !properties.is_empty() {
        updates.push(TableUpdate::SetProperties {
            updates: properties,
        });
    }
    let staged = apply(table, base_location, requirements, updates, Vec::new())?;
    Ok(Staged {
        removed: expired,
        ..staged
    })
}

/// The base's metadata with `updates` applied, and the name of the file a SQL swap writes it
/// to (the next version, next to the base's).
fn apply(
    table: &Table,
    base_location: String,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
    written: Vec<String>,
) -> Result<Staged, IcebergError> {
    let mut builder = table
        .metadata()
        .clone()
        .into_builder(Some(base_location.clone()));
    for update in updates.iter().cloned() {
        builder = update
            .apply(builder)
            .map_err(|e| failed(table, "building the new metadata", e))?;
    }
    let metadata = builder
        .build()
        .map_err(|e| failed(table, "building the new metadata", e))?
        .metadata;
    let location = next_metadata_location(&base_location, &metadata);
    Ok(Staged {
        base_location,
        location,
        metadata,
        snapshot_id: None,
        fast_forward_to: None,
        removed: Vec::new(),
        requirements,
        updates,
        written,
        file_io: table.file_io().clone(),
    })
}

/// The next metadata file's name, next to the base's: `<version + 1>-<uuid>.metadata.json` as
/// iceberg-rust and PyIceberg name them, or, after a base another catalog named its own way
/// (`v2.metadata.json`), the same pattern numbered by the metadata log.
fn next_metadata_location(base_location: &str, metadata: &TableMetadata) -> String {
    if let Ok(location) = MetadataLocation::from_str(base_location) {
        return location
            .with_next_version()
            .with_new_metadata(metadata)
            .to_string();
    }
    let dir = base_location
        .rsplit_once('/')
        .map_or(base_location, |(dir, _)| dir);
    format!(
        "{dir}/{:05}-{}.metadata.json",
        metadata.metadata_log().len() + 1,
        uuid::Uuid::now_v7()
    )
}

/// Whether `staged` was committed, for a swap whose outcome is unknown ([`Swap::Unknown`]): the
/// table (reloaded by the caller) points at its metadata, or lists it among its previous
/// metadata files, or holds its snapshot (other commits may have landed on top since), or, for
/// a fast-forward, `main` has reached the branch head (which `main` was an ancestor of), or, for
/// an expiry, none of the snapshots it removes is left.
pub fn landed(current: &Table, staged: &Staged) -> bool {
    let metadata = current.metadata();
    current.metadata_location() == Some(staged.location.as_str())
        || metadata
            .metadata_log()
            .iter()
            .any(|entry| entry.metadata_file == staged.location)
        || staged
            .snapshot_id
            .is_some_and(|id| metadata.snapshot_by_id(id).is_some())
        || staged.fast_forward_to.is_some_and(|head| {
            metadata.current_snapshot_id().is_some_and(|main| {
                crate::state::ancestry_of(metadata, main).any(|s| s.snapshot_id() == head)
            })
        })
        || (!staged.removed.is_empty()
            && staged
                .removed
                .iter()
                .all(|id| metadata.snapshot_by_id(*id).is_none()))
}

/// Loads `ident` from `catalog`; an error names the table and `operation`.
pub(crate) async fn load_table(
    catalog: &dyn iceberg::Catalog,
    ident: &iceberg::TableIdent,
    operation: &str,
) -> Result<Table, IcebergError> {
    catalog
        .load_table(ident)
        .await
        .map_err(|e| IcebergError::Table {
            table: table_name(ident),
            operation: operation.to_string(),
            source: Box::new(e),
        })
}

/// A snapshot [`commit`] landed.
#[derive(Debug)]
pub struct Committed {
    /// Its id.
    pub snapshot_id: i64,
    /// Stagings it took (one more per conflict with another writer).
    pub attempts: u32,
}

/// Commits one snapshot on `ident` through the catalog's atomic swap, with the commit protocol
/// of every Kappa commit: the table is loaded, `build` decides the snapshot on it (its base;
/// `None`: nothing to commit after all), the snapshot is staged and swapped in if the table
/// still points at that base. A conflict (another commit came first) discards the staging and
/// starts again from a fresh load, so `build` re-decides on the newer table; an unknown outcome
/// is settled by reloading the table and asking [`landed`]. Gives up after `max_attempts`
/// stagings.
pub async fn commit<F>(
    catalog: &dyn iceberg::Catalog,
    committer: &CatalogCommitter,
    ident: &iceberg::TableIdent,
    max_attempts: u32,
    mut build: F,
) -> Result<Option<Committed>, IcebergError>
where
    F: AsyncFnMut(&Table) -> Result<Option<NewSnapshot>, IcebergError>,
{
    let load = async || load_table(catalog, ident, "loading the table to commit a snapshot").await;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let table = load().await?;
        let Some(new) = build(&table).await? else {
            return Ok(None);
        };
        let staged = stage(&table, new).await?;
        let snapshot_id = staged.snapshot_id.unwrap_or_default();
        kappa_core::crash_point("producer::staged");
        match committer.swap(ident, &staged).await {
            Swap::Committed => {
                kappa_core::crash_point("producer::committed");
                return Ok(Some(Committed {
                    snapshot_id,
                    attempts,
                }));
            }
            Swap::Conflict => {
                tracing::debug!(table = %table_name(ident), attempts, "another commit came first: staging again");
                discard(&table, &staged).await;
            }
            Swap::Refused(reason) => {
                discard(&table, &staged).await;
                return Err(IcebergError::Table {
                    table: table_name(ident),
                    operation: "committing a snapshot".into(),
                    source: Box::new(iceberg::Error::new(iceberg::ErrorKind::Unexpected, reason)),
                });
            }
            Swap::Unknown(reason) => {
                tracing::warn!(table = %table_name(ident), %reason, "the outcome of a snapshot commit is unknown: reloading the table to settle it");
                if landed(&load().await?, &staged) {
                    return Ok(Some(Committed {
                        snapshot_id,
                        attempts,
                    }));
                }
                // Not applied: its files stay (an orphan is harmless; one that might still
                // land must never be deleted).
            }
        }
        if attempts >= max_attempts {
            return Err(IcebergError::ConflictRetriesExhausted {
                table: table_name(ident),
                commit_id: format!("snapshot {snapshot_id}"),
                attempts,
            });
        }
    }
}

/// Deletes the files of a staging that was not committed (best effort: an orphan is harmless,
/// no snapshot references it).
pub async fn discard(table: &Table, staged: &Staged) {
    discard_files(table, &staged.written).await;
}

async fn discard_files(table: &Table, files: &[String]) {
    for path in files {
        if let Err(e) = table.file_io().delete(path).await {
            tracing::debug!(path, error = %e, "could not delete a staged file");
        }
    }
}
