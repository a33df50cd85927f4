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
use object_store::{ObjectMeta, ObjectStore};
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

/// Prefixes listed at once.
const LISTINGS: usize = 16;

/// Every object under `root`. An object store lists a prefix one page (1,000 keys on S3) per
/// request, each waiting for the one before, so a flat listing of a large archive costs one round
/// trip per thousand files before anything is read: 30 days of history in a million files is
/// a thousand round trips. Two listings race, and the first to finish is taken: the flat one,
/// which wins on small archives (one or two pages), and one by directory ([`by_directory`]),
/// which wins on large ones, whatever their layout: `partition=<p>/` directories or Kafka
/// Connect's time-based `year=/month=/day=/hour=` or `dt=` ones. Either way every object is
/// listed exactly once; the loser's requests in flight are abandoned.
async fn list_objects(
    store: &dyn ObjectStore,
    root: &Path,
) -> object_store::Result<Vec<ObjectMeta>> {
    let flat = store.list(Some(root)).try_collect::<Vec<_>>();
    let split = Box::pin(by_directory(store, root));
    match futures::future::select(flat, split).await {
        Either::Left((flat, _)) => flat,
        Either::Right((Ok(objects), _)) => Ok(objects),
        Either::Right((Err(e), flat)) => {
            debug!(error = %e, "listing the archive by directory failed; taking the flat listing");
            flat.await
        }
    }
}

/// Every object under `root`, walking down its directories: while a level has fewer than
/// [`LISTINGS`] directories, they are listed at once with a delimiter (their objects taken, their
/// subdirectories the next level); the first level with more is listed flat, directory by
/// directory, [`LISTINGS`] at once. For the default layout that is the topic's directory, then
/// each partition's; for an hourly one the year, month and day directories, then each day flat.
async fn by_directory(
    store: &dyn ObjectStore,
    root: &Path,
) -> object_store::Result<Vec<ObjectMeta>> {
    let mut objects = Vec::new();
    let mut level = vec![root.clone()];
    while !level.is_empty() && level.len() < LISTINGS {
        let mut listings = futures::stream::iter(level)
            .map(|dir| async move { store.list_with_delimiter(Some(&dir)).await })
            .buffer_unordered(LISTINGS);
        let mut next = Vec::new();
        while let Some(listed) = listings.next().await {
            let listed = listed?;
            objects.extend(listed.objects);
            next.extend(listed.common_prefixes);
        }
        level = next;
    }
    let mut listings = futures::stream::iter(level)
        .map(|dir| async move { store.list(Some(&dir)).try_collect::<Vec<_>>().await })
        .buffer_unordered(LISTINGS);
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

    /// Writes `files` (paths under `a/orders`) and checks that the listing by directory and the
    /// raced listing find exactly the keys the flat listing finds, and all of them.
    async fn lists_every_file_once(files: &[String]) {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join("a/orders").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let root = Path::from("a/orders");
        let flat: Vec<ObjectMeta> = store.list(Some(&root)).try_collect().await.unwrap();
        let mut expected: Vec<String> = files.iter().map(|f| format!("a/orders/{f}")).collect();
        expected.sort();
        assert_eq!(keys(&flat), expected);
        let split = by_directory(&store, &root).await.unwrap();
        assert_eq!(keys(&split), expected, "by directory");
        let listed = list_objects(&store, &root).await.unwrap();
        assert_eq!(keys(&listed), expected, "raced");
    }

    #[tokio::test]
    async fn listing_by_directory_finds_exactly_what_the_flat_listing_finds() {
        // The default layout: partition directories, .tmp files, an object beside them.
        let mut files = vec!["_SUCCESS".to_string()];
        for p in 0..5 {
            for offset in 0..(3 + p) {
                files.push(format!(
                    "partition={p}/orders+{p}+{:010}.avro",
                    offset * 100
                ));
            }
            files.push(format!("partition={p}/orders+0+5.avro.tmp"));
        }
        lists_every_file_once(&files).await;
        // Hourly: single year and month directories, two days, then 48 hour directories (more
        // than are listed at once: listed flat), and a file beside the day directories.
        let mut files = vec!["year=2026/month=11/orders+0+1.avro".to_string()];
        for day in 1..=2 {
            for hour in 0..24 {
                for p in 0..2 {
                    files.push(format!(
                        "year=2026/month=11/day={day:02}/hour={hour:02}/orders+{p}+{:010}.avro",
                        day * 100 + hour
                    ));
                }
            }
        }
        lists_every_file_once(&files).await;
        // Daily `dt=` directories, more than are listed at once from the start.
        let files: Vec<String> = (1..=20)
            .map(|d| format!("dt=2026-11-{d:02}/orders+0+{d:010}.avro"))
            .collect();
        lists_every_file_once(&files).await;
        // A deep chain of single directories; one partition; files directly under the topic.
        lists_every_file_once(&["x/y/z/w/orders+0+1.avro".to_string()]).await;
        lists_every_file_once(&["partition=0/orders+0+1.avro".to_string()]).await;
        lists_every_file_once(&["orders+0+1.avro".to_string(), "orders+1+1.avro".to_string()])
            .await;
    }

    #[tokio::test]
    async fn an_empty_or_missing_topic_directory_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/orders")).unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        for root in ["a/orders", "a/payments"] {
            let root = Path::from(root);
            assert!(by_directory(&store, &root).await.unwrap().is_empty());
            assert!(list_objects(&store, &root).await.unwrap().is_empty());
        }
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
