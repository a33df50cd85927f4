//! What the commit gates measure, gathered batch by batch as rows go to the writer, so that a
//! commit's gates need neither its rows in memory nor a second pass.
//!
//! ```text
//! rows ─► CommitProfile::observe(batch, ingest time) ─┐   (per batch, as written)
//! rule counts ─► CommitProfile::observe_rules ────────┤
//!                                                     ▼
//!                 evaluate_commit(counts, profile) ─► QualityReport
//! ```
//!
//! Key uniqueness keeps a 64-bit hash of each key seen in the commit (8 bytes a row, not the
//! key): two different keys collide with odds of about n²/2⁶⁵, 3·10⁻⁸ for a million rows. Delays
//! go to a log-scale histogram (four buckets per doubling), so the reported quantiles are
//! upper bounds within 25% of the true value; the late share, which the gate judges, is exact.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::config::QualityConfig;
use crate::error::QualityError;
use crate::rules::{RuleCounts, column};

/// Buckets of the delay histogram: 8 exact ones, then 4 per doubling of milliseconds up to 2^64.
const BUCKETS: usize = 256;

/// Where `observe` errors say the rows came from.
const COMMIT: &str = "commit";

/// Event-time delays (ingest time − event time) as a log-scale histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delays {
    counts: Vec<u64>,
    total: u64,
    max_ms: u64,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ms: 0,
        }
    }
}

impl Delays {
    /// Exact buckets below 8 ms, then four per doubling: `[4+f, 5+f) · 2^(b-2)` ms.
    fn bucket(ms: u64) -> usize {
        if ms < 8 {
            return ms as usize;
        }
        let bits = 63 - ms.leading_zeros() as usize;
        let frac = ((ms >> (bits - 2)) & 0b11) as usize;
        (8 + (bits - 3) * 4 + frac).min(BUCKETS - 1)
    }

    /// The largest delay (ms) that falls into `bucket`.
    fn upper(bucket: usize) -> u64 {
        if bucket < 8 {
            return bucket as u64;
        }
        let bits = (bucket - 8) / 4 + 3;
        let frac = ((bucket - 8) % 4) as u128;
        let next = (5 + frac) << (bits - 2);
        u64::try_from(next - 1).unwrap_or(u64::MAX)
    }

    fn add(&mut self, ms: u64) {
        if let Some(c) = self.counts.get_mut(Self::bucket(ms)) {
            *c += 1;
        }
        self.total += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    /// The `q` quantile (0 < q ≤ 1) in ms: an upper bound, never above the maximum seen.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper(bucket).min(self.max_ms);
            }
        }
        self.max_ms
    }

    pub(crate) fn max_ms(&self) -> u64 {
        self.max_ms
    }
}

/// The measurements of one commit's rows, as its batches are written.
#[derive(Debug, Clone)]
pub struct CommitProfile {
    null_columns: Vec<String>,
    key_column: Option<String>,
    time: Option<(String, Duration)>,
    pub(crate) rows: u64,
    pub(crate) nulls: Vec<u64>,
    keys: HashSet<u64, KeySet>,
    /// One batch's key hashes, between hashing them and probing the set (kept for the next).
    batch_keys: Vec<u64>,
    pub(crate) duplicates: u64,
    pub(crate) timed: u64,
    pub(crate) untimed: u64,
    pub(crate) late: u64,
    pub(crate) no_event_time: u64,
    pub(crate) delays: Delays,
    pub(crate) rules: RuleCounts,
}

impl CommitProfile {
    /// An empty profile measuring what `config`'s gates need.
    pub fn new(config: &QualityConfig) -> CommitProfile {
        Self::with_key_capacity(config, 0)
    }

    /// [`CommitProfile::new`] with room for `keys` distinct keys of the uniqueness gate before
    /// its set grows (each growth rehashes every key held so far).
    pub fn with_key_capacity(config: &QualityConfig, keys: usize) -> CommitProfile {
        let null_columns = match (&config.null_rate, config.enabled) {
            (Some(gate), true) => gate.columns().to_vec(),
            _ => Vec::new(),
        };
        CommitProfile {
            nulls: vec![0; null_columns.len()],
            null_columns,
            key_column: config
                .uniqueness
                .as_ref()
                .filter(|_| config.enabled)
                .map(|g| g.column().to_string()),
            time: config
                .timeliness
                .as_ref()
                .filter(|_| config.enabled)
                .map(|g| (g.event_time_column().to_string(), g.freshness_sla())),
            rows: 0,
            keys: match config.uniqueness.as_ref().filter(|_| config.enabled) {
                Some(_) => HashSet::with_capacity_and_hasher(keys, KeySet::default()),
                None => HashSet::default(),
            },
            batch_keys: Vec::new(),
            duplicates: 0,
            timed: 0,
            untimed: 0,
            late: 0,
            no_event_time: 0,
            delays: Delays::default(),
            rules: RuleCounts::default(),
        }
    }

    /// Rows observed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Distinct keys of the uniqueness gate observed so far.
    pub fn distinct_keys(&self) -> usize {
        self.keys.len()
    }

    /// Adds the record rules' counts of one batch ([`crate::apply_rules`]).
    pub fn observe_rules(&mut self, counts: &RuleCounts) {
        self.rules.add(counts);
    }

    /// Measures `rows`, which the commit writes to the main table. `ingest_time` is when they
    /// were read (the wall clock on live ingestion); `None` (replaying history) leaves them out
    /// of the timeliness gate. A gate's column missing or of the wrong type is an error, and
    /// then nothing of `rows` is counted.
    pub fn observe(
        &mut self,
        rows: &RecordBatch,
        ingest_time: Option<SystemTime>,
    ) -> Result<(), QualityError> {
        // Read every column first: an error leaves the profile as it was.
        let nulls = self
            .null_columns
            .iter()
            .map(|name| {
                column(&format!("null_rate.{name}"), COMMIT, rows, name)
                    .map(|a| a.null_count() as u64)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = match &self.key_column {
            Some(name) => Some(Keys::of(name, rows)?),
            None => None,
        };
        // Replayed history (no ingest time) is only counted: its column is checked, not read.
        let times = match (&self.time, ingest_time) {
            (Some((name, _)), Some(_)) => Some(event_times(name, rows)?),
            (Some((name, _)), None) => {
                event_time_column(name, rows)?;
                None
            }
            (None, _) => None,
        };
        self.rows += rows.num_rows() as u64;
        for (total, n) in self.nulls.iter_mut().zip(nulls) {
            *total += n;
        }
        if let Some(keys) = keys {
            // Two passes, as the dedup window's: every key hashed first (reading the column in
            // order), then the set probed with the hashes alone, so that the probes' cache
            // misses (the set is megabytes by the end of a commit) overlap instead of each
            // waiting behind the next key's hashing.
            let batch = &mut self.batch_keys;
            batch.clear();
            keys.hashes(|hash| batch.push(hash));
            self.keys.reserve(batch.len());
            for &hash in batch.iter() {
                if !self.keys.insert(hash) {
                    self.duplicates += 1;
                }
            }
        }
        if self.time.is_some() && ingest_time.is_none() {
            self.untimed += rows.num_rows() as u64;
        }
        if let (Some(times), Some((_, sla))) = (times, &self.time) {
            match ingest_time {
                None => {}
                Some(now) => {
                    let now = micros(now);
                    let sla = i64::try_from(sla.as_micros()).unwrap_or(i64::MAX);
                    for time in times {
                        let Some(event) = time else {
                            self.no_event_time += 1;
                            continue;
                        };
                        // An event from the future (clock skew) is on time: delay 0.
                        let delay = now.saturating_sub(event).max(0);
                        self.timed += 1;
                        if delay > sla {
                            self.late += 1;
                        }
                        self.delays.add((delay / 1000) as u64);
                    }
                }
            }
        }
        Ok(())
    }
}

/// µs since the epoch (negative before it).
fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// How keys are hashed for the uniqueness gate: foldhash's quality variant with a fixed seed, so
/// that a commit's duplicate count does not depend on the process (SipHash was ~3% of a live
/// run's CPU).
const KEY_HASH: foldhash::quality::FixedState =
    foldhash::quality::FixedState::with_seed(0x6b61_7070_615f_6964);
/// The set of key hashes: already hashes, so the fast variant suffices.
type KeySet = foldhash::fast::RandomState;

/// The uniqueness gate's key column of a batch, as text or 64-bit integers.
enum Keys {
    /// A `Utf8` column.
    Text(ArrayRef),
    /// An `Int64` column.
    Int(ArrayRef),
}

impl Keys {
    /// Column `name` of `rows` as keys: text and integer columns (other text and integer types
    /// cast); anything else is an error naming the column.
    fn of(name: &str, rows: &RecordBatch) -> Result<Keys, QualityError> {
        let check = format!("uniqueness.{name}");
        let array = column(&check, COMMIT, rows, name)?;
        let data_type = array.data_type();
        match data_type {
            DataType::Utf8 => return Ok(Keys::Text(array.clone())),
            DataType::Int64 => return Ok(Keys::Int(array.clone())),
            _ => {}
        }
        let cast_to = if data_type.is_integer() {
            DataType::Int64
        } else if matches!(
            data_type,
            DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
        ) {
            DataType::Utf8
        } else {
            return Err(QualityError::Column {
                check,
                batch: COMMIT.into(),
                column: name.into(),
                message: format!("expected a text or integer key, found {data_type}"),
            });
        };
        let cast = arrow_cast::cast(array, &cast_to).map_err(|e| QualityError::Column {
            check: check.clone(),
            batch: COMMIT.into(),
            column: name.into(),
            message: format!("cannot read {data_type} as {cast_to}: {e}"),
        })?;
        Ok(match cast_to {
            DataType::Int64 => Keys::Int(cast),
            _ => Keys::Text(cast),
        })
    }

    /// Calls `f` with the hash of each non-NULL key (NULL keys are never duplicates).
    fn hashes(&self, mut f: impl FnMut(u64)) {
        match self {
            Keys::Text(array) => array
                .as_string::<i32>()
                .iter()
                .flatten()
                .for_each(|s| f(KEY_HASH.hash_one(s))),
            Keys::Int(array) => array
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .for_each(|i| f(KEY_HASH.hash_one(i))),
        }
    }
}

/// The event time column `name` of `rows`, and its time zone; an error unless it is a
/// timestamp.
fn event_time_column<'a>(
    name: &str,
    rows: &'a RecordBatch,
) -> Result<(&'a ArrayRef, Option<Arc<str>>), QualityError> {
    let check = "timeliness";
    let array = column(check, COMMIT, rows, name)?;
    let DataType::Timestamp(_, tz) = array.data_type() else {
        return Err(QualityError::Column {
            check: check.into(),
            batch: COMMIT.into(),
            column: name.into(),
            message: format!("expected a timestamp, found {}", array.data_type()),
        });
    };
    Ok((array, tz.clone()))
}

/// The event time of each row in µs since the epoch.
fn event_times(name: &str, rows: &RecordBatch) -> Result<Vec<Option<i64>>, QualityError> {
    let (array, tz) = event_time_column(name, rows)?;
    let micros =
        arrow_cast::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz)).map_err(|e| {
            QualityError::Arrow {
                batch: COMMIT.into(),
                operation: "reading the event time as microseconds",
                message: e.to_string(),
            }
        })?;
    Ok(micros
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn histogram_buckets_bound_their_values() {
        for ms in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            7,
            8,
            100,
            999,
            1000,
            60_000,
            3_600_000,
            u64::MAX / 2,
        ] {
            let b = Delays::bucket(ms);
            assert!(
                Delays::upper(b) >= ms,
                "{ms} in bucket {b} (upper {})",
                Delays::upper(b)
            );
            if b > 0 {
                assert!(Delays::upper(b - 1) < ms, "{ms}: previous bucket too wide");
            }
        }
    }

    proptest! {
        #[test]
        fn quantiles_are_upper_bounds_within_a_quarter(mut delays in proptest::collection::vec(0u64..10_000_000, 1..200), q in 0.01f64..1.0) {
            let mut h = Delays::default();
            for d in &delays {
                h.add(*d);
            }
            delays.sort_unstable();
            let rank = ((q * delays.len() as f64).ceil() as usize).clamp(1, delays.len());
            let exact = delays[rank - 1];
            let estimate = h.quantile(q);
            prop_assert!(estimate >= exact, "estimate {} below exact {}", estimate, exact);
            prop_assert!(estimate as f64 <= exact as f64 * 1.25 + 1.0, "estimate {} too far above {}", estimate, exact);
            prop_assert_eq!(h.max_ms(), *delays.last().unwrap());
        }
    }
}
