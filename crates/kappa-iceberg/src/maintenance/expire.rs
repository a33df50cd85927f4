//! Snapshot expiry: old snapshots removed from the table's metadata, then the files only they
//! referenced deleted.
//!
//! Which snapshots go follows Iceberg's `expire_snapshots` (Java's `RemoveSnapshots`, which
//! iceberg-rust's action mirrors): each branch keeps its newest `retain_last` snapshots and every
//! ancestor newer than the cutoff; a tag keeps its snapshot; a snapshot no ref reaches goes once
//! it is older than the cutoff; a ref's head never goes. Kappa makes the selection itself rather
//! than through iceberg-rust's `ExpireSnapshotsAction`: the summaries of the expired snapshots of
//! `main` are archived ([`crate::history`]) in the same commit, so the commit must be decided on
//! exactly the base the archive was written from, and iceberg-rust's transaction would re-apply
//! the action on a newer table after a conflict.
//!
//! The removal commits through the snapshot producer's swap, guarded by every ref's head: a
//! commit to any branch in between is a conflict and the expiry is decided again. Files are
//! deleted only after the commit landed, and only those no snapshot left references.

use std::collections::{HashMap, HashSet};

use iceberg::TableIdent;
use iceberg::table::Table;
use serde::Serialize;

use super::Referenced;
use crate::commit::table_name;
use crate::error::IcebergError;
use crate::history::{HISTORY_PROPERTY, write_archive};
use crate::producer::{self, CatalogCommitter, Swap};
use crate::state::ancestry_of;

/// What [`expire`] removes.
#[derive(Debug, Clone)]
pub struct ExpireOptions {
    /// Snapshots older than this (ms since the epoch) may go.
    pub older_than_ms: i64,
    /// Each branch keeps at least its newest this many snapshots (at least 1).
    pub retain_last: usize,
    /// Plan only: report what would be removed, change nothing.
    pub dry_run: bool,
    /// Commits tried (one more per conflict with another writer).
    pub max_attempts: u32,
}

/// A table's expiry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Expiry {
    /// The table.
    pub table: String,
    /// Snapshots removed (or, with `dry_run`, that would be).
    pub expired: Vec<i64>,
    /// Snapshots left.
    pub remaining: usize,
    /// Files deleted (manifest lists, manifests, data files).
    pub files_deleted: u64,
    /// Their bytes (data files and manifests; manifest lists count 0).
    pub bytes_deleted: u64,
    /// Whether the removal was committed (`false` with `dry_run` or nothing to expire).
    pub committed: bool,
}

/// The snapshots an expiry removes (see the module docs), oldest first.
pub fn select(table: &Table, options: &ExpireOptions) -> Result<Vec<i64>, IcebergError> {
    let metadata = table.metadata();
    let retain_last = options.retain_last.max(1);
    let mut retained: HashSet<i64> = HashSet::new();
    let mut reachable: HashSet<i64> = HashSet::new();
    let mut refs = producer::refs(table)?;
    if refs.iter().all(|r| r.name != iceberg::spec::MAIN_BRANCH)
        && let Some(current) = metadata.current_snapshot_id()
    {
        refs.push(producer::Ref {
            name: iceberg::spec::MAIN_BRANCH.into(),
            snapshot_id: current,
            tag: false,
        });
    }
    for reference in &refs {
        retained.insert(reference.snapshot_id);
        if reference.tag {
            reachable.insert(reference.snapshot_id);
            continue;
        }
        for (index, snapshot) in ancestry_of(metadata, reference.snapshot_id).enumerate() {
            reachable.insert(snapshot.snapshot_id());
            if index < retain_last || snapshot.timestamp_ms() >= options.older_than_ms {
                retained.insert(snapshot.snapshot_id());
            }
        }
    }
    let mut expired: Vec<(i64, i64)> = metadata
        .snapshots()
        .filter(|s| {
            let id = s.snapshot_id();
            !retained.contains(&id)
                && (reachable.contains(&id) || s.timestamp_ms() < options.older_than_ms)
        })
        .map(|s| (s.timestamp_ms(), s.snapshot_id()))
        .collect();
    expired.sort_unstable();
    Ok(expired.into_iter().map(|(_, id)| id).collect())
}

/// Expires `ident`'s snapshots (see the module docs).
pub async fn expire(
    catalog: &dyn iceberg::Catalog,
    committer: &CatalogCommitter,
    ident: &TableIdent,
    options: &ExpireOptions,
) -> Result<Expiry, IcebergError> {
    let load = async || {
        producer::load_table(catalog, ident, "loading the table to expire snapshots").await
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let base = load().await?;
        let expired = select(&base, options)?;
        let mut expiry = Expiry {
            table: table_name(ident),
            remaining: base.metadata().snapshots().len() - expired.len(),
            expired: expired.clone(),
            ..Expiry::default()
        };
        if expired.is_empty() || options.dry_run {
            return Ok(expiry);
        }
        let expired_set: HashSet<i64> = expired.iter().copied().collect();
        let previous_archive = base.metadata().properties().get(HISTORY_PROPERTY).cloned();
        let archive = write_archive(&base, &expired_set).await?;
        let properties = archive
            .iter()
            .map(|path| (HISTORY_PROPERTY.to_string(), path.clone()))
            .collect::<HashMap<_, _>>();
        let staged = producer::stage_expiry(&base, expired.clone(), properties)?;
        kappa_core::crash_point("maintain::expire::staged");
        let landed = match committer.swap(ident, &staged).await {
            Swap::Committed => true,
            Swap::Conflict => false,
            Swap::Refused(reason) => {
                delete_quietly(&base, archive.iter()).await;
                return Err(IcebergError::Table {
                    table: table_name(ident),
                    operation: "committing a snapshot expiry".into(),
                    source: Box::new(iceberg::Error::new(iceberg::ErrorKind::Unexpected, reason)),
                });
            }
            Swap::Unknown(reason) => {
                tracing::warn!(table = %table_name(ident), %reason, "the outcome of an expiry commit is unknown: reloading the table to settle it");
                let current = load().await?;
                producer::landed(&current, &staged)
                    && archive.as_ref().is_none_or(|path| {
                        current.metadata().properties().get(HISTORY_PROPERTY) == Some(path)
                    })
            }
        };
        if landed {
            kappa_core::crash_point("maintain::expire::committed");
            let current = load().await?;
            let (files, bytes) = delete_unreferenced(&base, &current, &expired_set).await?;
            if archive.is_some() {
                delete_quietly(&base, previous_archive.iter()).await;
            }
            expiry.committed = true;
            expiry.files_deleted = files;
            expiry.bytes_deleted = bytes;
            expiry.remaining = current.metadata().snapshots().len();
            return Ok(expiry);
        }
        // Not applied: the archive written for it is referenced by nothing.
        delete_quietly(&base, archive.iter()).await;
        if attempts >= options.max_attempts {
            return Err(IcebergError::ConflictRetriesExhausted {
                table: table_name(ident),
                commit_id: "snapshot expiry".into(),
                attempts,
            });
        }
    }
}

/// Deletes the files the `expired` snapshots of `base` referenced that no snapshot of `current`
/// (the table after the expiry) does. Returns the files and bytes deleted.
async fn delete_unreferenced(
    base: &Table,
    current: &Table,
    expired: &HashSet<i64>,
) -> Result<(u64, u64), IcebergError> {
    let mut gone = Referenced::default();
    for snapshot in base
        .metadata()
        .snapshots()
        .filter(|s| expired.contains(&s.snapshot_id()))
    {
        gone.add_snapshot(base, snapshot).await?;
    }
    let mut kept = Referenced::default();
    for snapshot in current.metadata().snapshots() {
        kept.add_snapshot(current, snapshot).await?;
    }
    kept.add_metadata(current);
    let (mut files, mut bytes) = (0, 0);
    let doomed = gone
        .files
        .iter()
        .filter(|(path, _)| !kept.files.contains_key(*path));
    for (path, size) in doomed {
        match current.file_io().delete(path).await {
            Ok(()) => {
                files += 1;
                bytes += size;
            }
            Err(e) => {
                tracing::warn!(path, error = %e, "could not delete an expired file (an orphan now: `kappa maintain orphans` removes it)")
            }
        }
    }
    Ok((files, bytes))
}

async fn delete_quietly(table: &Table, paths: impl Iterator<Item = &String>) {
    for path in paths {
        if let Err(e) = table.file_io().delete(path).await {
            tracing::debug!(path, error = %e, "could not delete a file");
        }
    }
}
