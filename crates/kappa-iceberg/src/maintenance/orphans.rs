//! Orphan cleanup: files under a table's location that no metadata references.
//!
//! The usual orphans are the data files of flushes that crashed before their commit, the files of
//! a commit whose outcome stayed unknown and did not land, metadata files older than the
//! metadata log keeps, and the manifests of stagings that lost a conflict. A file is deleted when
//! all of these hold:
//!
//! - it is under the table's location and looks like an Iceberg file (`.parquet`, `.avro`,
//!   `.orc`, `.puffin`, `*.metadata.json`, Kappa's history archive); anything else is left;
//! - it is not a sharded backfill's plan or shard manifest (`metadata/kappa-backfill-*`) nor one
//!   of the caller's `keep` (the data files a staged backfill has not published yet);
//! - no snapshot, metadata file, statistics file or history archive of the table references it;
//! - it is older than the grace period: a flush in flight writes its files before its commit
//!   references them, so the grace period must outlast the longest flush and the longest time a
//!   staged backfill waits for its publish.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use iceberg::table::Table;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::{Referenced, normalize};
use crate::commit::table_name;
use crate::error::IcebergError;

/// The name of a sharded backfill's plan and shard manifests under the table's `metadata/`
/// starts with this; orphan cleanup never deletes them (a publish removes nothing either: a later
/// plan of the same id replaces them).
pub const BACKFILL_FILE_PREFIX: &str = "kappa-backfill-";

/// What [`orphans`] deletes.
#[derive(Debug, Clone)]
pub struct OrphanOptions {
    /// Files younger than this are kept whatever references them.
    pub older_than: Duration,
    /// Report only, delete nothing.
    pub dry_run: bool,
}

/// A table's orphan cleanup.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Orphans {
    /// The table.
    pub table: String,
    /// Files listed under its location.
    pub listed: u64,
    /// Orphans deleted (or, with `dry_run`, that would be), by path.
    pub orphans: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// Unreferenced files kept because they are younger than the grace period.
    pub young: u64,
}

/// Lists, and unless `dry_run` deletes, the orphans under `table`'s location (see the module
/// docs). `keep`: paths never deleted (compared without a `file://` scheme).
pub async fn orphans(
    table: &Table,
    keep: &HashSet<String>,
    options: &OrphanOptions,
) -> Result<Orphans, IcebergError> {
    let name = table_name(table.identifier());
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    // What the table references, read after the listing's cutoff is taken: a file written
    // after that is young, whatever the table says of it.
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(options.older_than).unwrap_or(chrono::TimeDelta::MAX);
    let mut referenced = Referenced::default();
    for snapshot in table.metadata().snapshots() {
        referenced.add_snapshot(table, snapshot).await?;
    }
    referenced.add_metadata(table);
    let referenced = referenced.normalized();
    let Listing {
        store,
        root,
        objects: listed,
    } = list(table, "").await?;
    let fail = listing_error(table, &location);
    let mut report = Orphans {
        table: name.clone(),
        listed: listed.len() as u64,
        ..Orphans::default()
    };
    let backfill = format!("{}/metadata/{BACKFILL_FILE_PREFIX}", normalize(&location));
    for object in listed {
        let path = format!("{root}{}", object.location);
        let normalized = normalize(&path);
        if referenced.contains(&normalized)
            || keep.contains(&normalized)
            || normalized.starts_with(&backfill)
            || !iceberg_file(&normalized)
        {
            continue;
        }
        if object.last_modified > cutoff {
            report.young += 1;
            continue;
        }
        if !options.dry_run {
            store
                .delete(&object.location)
                .await
                .map_err(|e| fail(format!("deleting {path}: {e}")))?;
            tracing::debug!(table = %name, path, "deleted an orphan");
            kappa_core::crash_point("maintain::orphans::deleted");
        }
        report.bytes += object.size;
        report.orphans.push(path);
    }
    report.orphans.sort();
    Ok(report)
}

/// The paths of the files under `<table location>/<under>`, as the table's metadata names files.
pub async fn list_files(table: &Table, under: &str) -> Result<Vec<String>, IcebergError> {
    let Listing { root, objects, .. } = list(table, under).await?;
    Ok(objects
        .into_iter()
        .map(|object| format!("{root}{}", object.location))
        .collect())
}

/// The files under a directory of a table's location.
struct Listing {
    /// The store holding them.
    store: Arc<dyn ObjectStore>,
    /// What a listed path is prefixed with to give the path the table's metadata uses.
    root: String,
    /// The files.
    objects: Vec<object_store::ObjectMeta>,
}

/// Lists the files under `<table location>/<under>` (`""`: all of them).
async fn list(table: &Table, under: &str) -> Result<Listing, IcebergError> {
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let fail = listing_error(table, &format!("{location}/{under}"));
    let (store, prefix, root) = open(table, &location).map_err(&fail)?;
    let prefix = under
        .split('/')
        .filter(|part| !part.is_empty())
        .fold(prefix, |path, part| path.clone().join(part));
    let objects = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(Listing {
        store,
        root,
        objects,
    })
}

/// An error of listing (or deleting) the files under `place`, naming the table.
fn listing_error(table: &Table, place: &str) -> impl Fn(String) -> IcebergError + use<> {
    let table = table_name(table.identifier());
    let operation = format!("listing the files under {place}");
    move |message| IcebergError::Table {
        table: table.clone(),
        operation: operation.clone(),
        source: Box::new(iceberg::Error::new(iceberg::ErrorKind::Unexpected, message)),
    }
}

/// Whether `path` is a file Iceberg or Kappa writes into a table's location.
fn iceberg_file(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    [
        ".parquet",
        ".avro",
        ".orc",
        ".puffin",
        ".metadata.json",
        ".metadata.json.gz",
    ]
    .iter()
    .any(|ext| file.ends_with(ext))
}

/// The store holding `location`, the prefix of the table's files in it, and what a listed path
/// is prefixed with to give the path the table's metadata uses.
fn open(table: &Table, location: &str) -> Result<(Arc<dyn ObjectStore>, Path, String), String> {
    let url = url_of(location)?;
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| format!("{location}: not an absolute file path"))?;
            let store = LocalFileSystem::new();
            let prefix = Path::from_filesystem_path(&dir).map_err(|e| e.to_string())?;
            // Listed paths are relative to `/`; the table's files are named as its location is.
            let root = if location.starts_with("file:") {
                "file:///"
            } else {
                "/"
            };
            Ok((Arc::new(store), prefix, root.into()))
        }
        "s3" | "s3a" => {
            let bucket = url
                .host_str()
                .ok_or_else(|| format!("{location}: no bucket"))?;
            let props = table.file_io().config().props();
            let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
            if let Some(endpoint) = props.get("s3.endpoint") {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(
                        props.get("s3.path-style-access").map(String::as_str) == Some("false"),
                    );
            }
            let region = props
                .get("s3.region")
                .or_else(|| props.get("client.region"))
                .map_or("us-east-1", String::as_str);
            builder = builder.with_region(region);
            if let Some(key) = props.get("s3.access-key-id") {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = props.get("s3.secret-access-key") {
                builder = builder.with_secret_access_key(secret);
            }
            if let Some(token) = props.get("s3.session-token") {
                builder = builder.with_token(token);
            }
            let store = builder.build().map_err(|e| e.to_string())?;
            let prefix = Path::from(url.path().trim_matches('/'));
            Ok((
                Arc::new(store),
                prefix,
                format!("{}://{bucket}/", url.scheme()),
            ))
        }
        other => Err(format!(
            "{location}: orphan cleanup lists file:// and s3:// locations, not {other}://"
        )),
    }
}

fn url_of(location: &str) -> Result<url::Url, String> {
    if location.starts_with('/') {
        return url::Url::from_file_path(location)
            .map_err(|()| format!("{location}: not an absolute file path"));
    }
    url::Url::parse(location).map_err(|e| format!("{location}: not a URL ({e})"))
}
