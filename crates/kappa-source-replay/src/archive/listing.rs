//! Listing the archive and planning the replay.
//!
//! Kafka Connect S3 sink layouts:
//! - default partitioner: `<prefix>/<topic>/partition=<p>/<topic>+<p>+<startOffset>.<ext>`;
//! - time-based: `<prefix>/<topic>/year=YYYY/month=MM/day=dd/hour=HH/<topic>+<p>+<startOffset>.<ext>`
//!   (coarser `year=/month=/day=` and `dt=YYYY-MM-DD` directories are understood too).
//!
//! The start offset comes from the file name; the time directory, when present, allows pruning
//! by a time window. Files of one partition are ordered by start offset. Pruning keeps a
//! contiguous run of each partition's files (from the first to the last file overlapping the
//! window), so a replay never skips a file in the middle of the range it covers.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::future::Either;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore};
use tracing::debug;

use crate::error::ReplayError;

/// The start and end of a time directory.
pub type Period = (DateTime<Utc>, DateTime<Utc>);

/// One archive object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Object key.
    pub key: Path,
    /// Partition.
    pub partition: i32,
    /// Start offset from the file name.
    pub start_offset: i64,
    /// Size in bytes.
    pub size: u64,
    /// Start and end of the time directory, if the layout has one.
    pub period: Option<Period>,
}

/// Which partitions to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PartitionFilter {
    /// All of them.
    #[default]
    All,
    /// These.
    Only(BTreeSet<i32>),
    /// Shard `index` of `count`: partitions `p` with `p % count == index`.
    Shard {
        /// This shard (0-based).
        index: u32,
        /// Number of shards.
        count: u32,
    },
}

impl PartitionFilter {
    /// Whether `partition` is selected.
    pub fn accepts(&self, partition: i32) -> bool {
        match self {
            PartitionFilter::All => true,
            PartitionFilter::Only(set) => set.contains(&partition),
            PartitionFilter::Shard { index, count } => {
                *count > 0 && partition.rem_euclid(*count as i32) == *index as i32
            }
        }
    }
}

/// An event-time window `[start, end)` for pruning by time directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// Inclusive start.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub end: Option<DateTime<Utc>>,
}

impl TimeWindow {
    fn overlaps(&self, (from, to): Period) -> bool {
        self.start.is_none_or(|s| to > s) && self.end.is_none_or(|e| from < e)
    }
}

/// The files to replay, per partition, ordered by start offset.
#[derive(Debug, Clone, Default)]
pub struct ArchivePlan {
    /// Files per partition.
    pub partitions: BTreeMap<i32, Vec<ArchiveFile>>,
    /// Objects under the topic that are not archive data files.
    pub ignored: u64,
}

impl ArchivePlan {
    /// Lists `<prefix>/<topic>/` and plans the replay.
    pub async fn list(
        store: &dyn ObjectStore,
        url: &str,
        prefix: &Path,
        topic: &str,
        filter: &PartitionFilter,
        window: &TimeWindow,
    ) -> Result<ArchivePlan, ReplayError> {
        let root = prefix.clone().join(topic);
        let objects = list_objects(store, &root)
            .await
            .map_err(|source| ReplayError::Store {
                operation: "listing",
                key: root.to_string(),
                source,
            })?;
        let mut plan = ArchivePlan::default();
        let mut all: BTreeMap<i32, Vec<ArchiveFile>> = BTreeMap::new();
        for object in objects {
            match parse_key(&object.location, topic) {
                Some((partition, start_offset, period)) => {
                    all.entry(partition).or_default().push(ArchiveFile {
                        key: object.location,
                        partition,
                        start_offset,
                        size: object.size,
                        period,
                    });
                }
                None => {
                    debug!(key = %object.location, "not an archive data file; ignored");
                    plan.ignored += 1;
                }
            }
        }
        if all.is_empty() {
            return Err(ReplayError::NoFiles {
                url: url.to_string(),
                path: format!("{root}/"),
                expected: format!(
                    "{root}/partition=<p>/{topic}+<p>+<offset>.avro or {root}/year=YYYY/month=MM/day=dd/hour=HH/{topic}+<p>+<offset>.avro"
                ),
            });
        }
        for (partition, mut files) in all {
            if !filter.accepts(partition) {
                continue;
            }
            files.sort_by(|a, b| a.start_offset.cmp(&b.start_offset).then(a.key.cmp(&b.key)));
            let overlapping: Vec<usize> = files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.period.is_none_or(|p| window.overlaps(p)))
                .map(|(i, _)| i)
                .collect();
            let (Some(first), Some(last)) = (overlapping.first(), overlapping.last()) else {
                continue;
            };
            plan.partitions
                .insert(partition, files[*first..=*last].to_vec());
        }
        Ok(plan)
    }

    /// Number of files planned.
    pub fn files(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }

    /// Bytes planned.
    pub fn bytes(&self) -> u64 {
        self.partitions.values().flatten().map(|f| f.size).sum()
    }
}

/// Partition directories listed at once when the archive has Kafka Connect's default layout.
const PARTITION_LISTINGS: usize = 16;

/// Every object under `root`. An object store lists a prefix one page (1,000 keys on S3) per
/// request, each waiting for the one before, so a flat listing of a large archive costs one round
/// trip per thousand files before anything is read. The flat listing starts at once and, beside
/// it, one listing of `root`'s directories: if those are all `partition=<p>/` (the default
/// partitioner) and there are several, each is listed on its own, [`PARTITION_LISTINGS`] at once,
/// and the flat listing is dropped; otherwise (time-based layouts, a single partition, a store
/// that answers the flat listing first) the flat listing's answer is taken. Either way every
/// object is listed exactly once.
async fn list_objects(
    store: &dyn ObjectStore,
    root: &Path,
) -> object_store::Result<Vec<ObjectMeta>> {
    let flat = store.list(Some(root)).try_collect::<Vec<_>>();
    let directories = store.list_with_delimiter(Some(root));
    match futures::future::select(flat, Box::pin(directories)).await {
        Either::Left((flat, _)) => flat,
        Either::Right((Ok(top), flat)) => match partition_directories(&top) {
            Some(partitions) => {
                // Its request in flight is abandoned, not left holding a connection.
                drop(flat);
                by_partition(store, top.objects, partitions).await
            }
            None => flat.await,
        },
        Either::Right((Err(_), flat)) => flat.await,
    }
}

/// The directories of a listing if there are several and all are `partition=<p>`.
fn partition_directories(top: &ListResult) -> Option<Vec<Path>> {
    let all_partitions = top.common_prefixes.iter().all(|dir| {
        dir.filename()
            .and_then(|name| name.strip_prefix("partition="))
            .is_some_and(|p| p.parse::<i32>().is_ok())
    });
    (all_partitions && top.common_prefixes.len() > 1).then(|| top.common_prefixes.clone())
}

/// `objects` (those directly under the root) and every object under each of `directories`,
/// listed [`PARTITION_LISTINGS`] at once.
async fn by_partition(
    store: &dyn ObjectStore,
    mut objects: Vec<ObjectMeta>,
    directories: Vec<Path>,
) -> object_store::Result<Vec<ObjectMeta>> {
    let mut listings = futures::stream::iter(directories)
        .map(|dir| async move { store.list(Some(&dir)).try_collect::<Vec<_>>().await })
        .buffer_unordered(PARTITION_LISTINGS);
    while let Some(listed) = listings.next().await {
        objects.extend(listed?);
    }
    Ok(objects)
}

/// Parses `.../<dirs>/<topic>+<partition>+<offset>.<ext>`.
fn parse_key(key: &Path, topic: &str) -> Option<(i32, i64, Option<Period>)> {
    let parts: Vec<&str> = key.as_ref().split('/').collect();
    let file = parts.last()?;
    let (stem, ext) = file.rsplit_once('.')?;
    if matches!(ext, "tmp" | "temp") {
        return None;
    }
    let rest = stem.strip_prefix(topic)?.strip_prefix('+')?;
    let (partition, offset) = rest.split_once('+')?;
    let partition: i32 = partition.parse().ok()?;
    let offset: i64 = offset.parse().ok()?;
    Some((partition, offset, period_of(&parts[..parts.len() - 1])))
}

/// The time period of `year=/month=/day=/hour=` or `dt=` directories.
fn period_of(dirs: &[&str]) -> Option<Period> {
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for dir in dirs {
        if let Some((k, v)) = dir.split_once('=') {
            fields.insert(k, v);
        }
    }
    if let Some(dt) = fields.get("dt") {
        let day = NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
        let start = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?);
        return Some((start, start + chrono::Duration::days(1)));
    }
    let year: i32 = fields.get("year")?.parse().ok()?;
    let month: Option<u32> = fields.get("month").and_then(|m| m.parse().ok());
    let day: Option<u32> = fields.get("day").and_then(|d| d.parse().ok());
    let hour: Option<u32> = fields.get("hour").and_then(|h| h.parse().ok());
    let start = Utc
        .with_ymd_and_hms(
            year,
            month.unwrap_or(1),
            day.unwrap_or(1),
            hour.unwrap_or(0),
            0,
            0,
        )
        .single()?;
    let end = match (month, day, hour) {
        (Some(_), Some(_), Some(_)) => start + chrono::Duration::hours(1),
        (Some(_), Some(_), None) => start + chrono::Duration::days(1),
        (Some(m), None, _) => {
            let (y, m) = if m == 12 {
                (year + 1, 1)
            } else {
                (year, m + 1)
            };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?
        }
        _ => Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).single()?,
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_layouts() {
        let key = Path::from("a/orders/partition=2/orders+2+0000000100.avro");
        assert_eq!(parse_key(&key, "orders"), Some((2, 100, None)));
        let key = Path::from("a/orders/year=2026/month=11/day=03/hour=07/orders+0+0000000005.avro");
        let (p, o, period) = parse_key(&key, "orders").unwrap();
        assert_eq!((p, o), (0, 5));
        let (start, end) = period.unwrap();
        assert_eq!(start.to_rfc3339(), "2026-11-03T07:00:00+00:00");
        assert_eq!(end - start, chrono::Duration::hours(1));
        assert!(parse_key(&Path::from("a/orders/x/_SUCCESS"), "orders").is_none());
        assert!(
            parse_key(
                &Path::from("a/orders/partition=0/orders+0+5.avro.tmp"),
                "orders"
            )
            .is_none()
        );
        assert!(
            parse_key(
                &Path::from("a/payments/partition=0/payments+0+5.avro"),
                "orders"
            )
            .is_none()
        );
        let (_, _, day) =
            parse_key(&Path::from("o/dt=2026-11-02/orders+1+7.avro"), "orders").unwrap();
        assert_eq!(day.unwrap().0.to_rfc3339(), "2026-11-02T00:00:00+00:00");
    }

    fn keys(objects: &[ObjectMeta]) -> Vec<String> {
        let mut keys: Vec<String> = objects.iter().map(|o| o.location.to_string()).collect();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn listing_by_partition_finds_exactly_what_the_flat_listing_finds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/orders");
        for p in 0..5 {
            let partition = root.join(format!("partition={p}"));
            std::fs::create_dir_all(&partition).unwrap();
            for offset in 0..(3 + p) {
                let file = partition.join(format!("orders+{p}+{:010}.avro", offset * 100));
                std::fs::write(file, b"x").unwrap();
            }
            std::fs::write(partition.join("orders+0+5.avro.tmp"), b"x").unwrap();
        }
        // Objects directly under the topic are listed too (and ignored by the plan).
        std::fs::write(root.join("_SUCCESS"), b"").unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let root = Path::from("a/orders");
        let flat: Vec<ObjectMeta> = store.list(Some(&root)).try_collect().await.unwrap();
        assert_eq!(flat.len(), 5 * 3 + 10 + 5 + 1);
        let top = store.list_with_delimiter(Some(&root)).await.unwrap();
        let directories = partition_directories(&top).unwrap();
        assert_eq!(directories.len(), 5);
        let split = by_partition(&store, top.objects, directories)
            .await
            .unwrap();
        assert_eq!(keys(&split), keys(&flat));
        let listed = list_objects(&store, &root).await.unwrap();
        assert_eq!(keys(&listed), keys(&flat));
    }

    #[test]
    fn only_several_partition_directories_are_listed_one_by_one() {
        let top = |dirs: &[&str]| ListResult {
            common_prefixes: dirs
                .iter()
                .map(|d| Path::from(format!("a/orders/{d}")))
                .collect(),
            objects: Vec::new(),
        };
        assert!(partition_directories(&top(&["partition=0", "partition=12"])).is_some());
        // One partition: nothing to list beside it.
        assert!(partition_directories(&top(&["partition=0"])).is_none());
        assert!(partition_directories(&top(&[])).is_none());
        // Time-based layouts and anything else keep the flat listing.
        assert!(partition_directories(&top(&["year=2026"])).is_none());
        assert!(partition_directories(&top(&["partition=0", "year=2026"])).is_none());
        assert!(partition_directories(&top(&["partition=x", "partition=1"])).is_none());
    }

    #[test]
    fn filters_select_partitions() {
        assert!(PartitionFilter::All.accepts(7));
        assert!(PartitionFilter::Only([0, 2].into()).accepts(2));
        assert!(!PartitionFilter::Only([0, 2].into()).accepts(1));
        let shard = PartitionFilter::Shard { index: 1, count: 3 };
        assert_eq!(
            (0..7).filter(|p| shard.accepts(*p)).collect::<Vec<_>>(),
            [1, 4]
        );
    }
}
