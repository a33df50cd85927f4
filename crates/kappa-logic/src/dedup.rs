//! A deterministic dedup window per topic-partition.
//!
//! **Rule.** An event id at offset `o` is a duplicate when the same id occurred (as an original or
//! as a duplicate) at an earlier offset of the same partition in `[o - window, o)`. Every
//! occurrence refreshes the id, so the window's state at any offset is a function of the records
//! in the `window` offsets before it, and of nothing else: re-reading those offsets before a resume
//! position ([`crate::OrdersLogic`]'s `warm_up`) rebuilds exactly the state an uninterrupted run
//! had there, and the way the stream is cut into batches does not matter.
//!
//! Memory is bounded by the window: one entry per distinct id, 24 bytes whatever the id's length.
//! An entry older than the window counts as absent, and is removed by a sweep of the table once
//! every `window` offsets, so the table holds at most the ids of the last `2 × window` offsets.
//! (An eviction queue, one entry per occurrence in order, found and removed each expired id on
//! its own: a second cache miss in a table of megabytes for every record, 3.5% of a replay's CPU;
//! the sweep reads the table in memory order once per window.)
//!
//! **Ids are remembered by a 128-bit hash** (XXH3-128, seeded at random per window), not by
//! their text: no allocation per id, and no cold heap memory touched to compare or evict (with
//! the ids kept as `Arc<str>`, cache misses made the window ~8% of a live run's CPU). Two distinct
//! ids within one window share a hash with probability about `window² / 2¹²⁹` (10⁻²⁹ for the
//! default 100,000), so the decisions are those of comparing the ids themselves.
//!
//! **A batch is marked in two passes**: its keys are hashed first, in column order, then the
//! table is probed with the hashes alone. Done row by row, each probe's cache misses (the table
//! is megabytes per partition) waited behind the next key's read; apart, the CPU overlaps them:
//! 1M UUID ids over 3 partitions went from 192 to 66 ms (`cargo bench -p kappa-logic --bench
//! dedup`).

use std::collections::HashMap;
use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, BinaryArray, FixedSizeBinaryArray, PrimitiveArray, StringArray};
use arrow_schema::{DataType, TimeUnit};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use kappa_core::{SourceBatch, TopicPartition};
use twox_hash::XxHash3_128;

use crate::columns::{self, describe};
use crate::error::LogicError;

/// A remembered id: its hash, and the newest offset it occurred at.
#[derive(Debug, Clone, Copy)]
struct Seen {
    id: [u64; 2],
    offset: i64,
}

/// Ids seen in the last `window` offsets of one partition.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window: i64,
    /// The hash's seed, random per window so that ids cannot be chosen to collide.
    seed: u64,
    /// Each remembered id once, with the newest offset it occurred at; entries older than the
    /// window are absent for [`DedupWindow::check_and_insert`] until the next sweep removes them.
    seen: HashTable<Seen>,
    /// The offset from which the next record sweeps the table.
    sweep_at: i64,
    /// No sweep has removed an id yet: the table is filling, and [`DedupWindow::reserve`] may
    /// grow it ahead (after removals, hashbrown's own growth first reuses the freed slots).
    filling: bool,
}

/// Where in the table an id's entry is: the hash's low half (the hash is uniform already).
fn slot(id: [u64; 2]) -> u64 {
    id[0]
}

impl DedupWindow {
    /// An empty window of `window` offsets (negative is treated as 0: nothing is a duplicate).
    pub fn new(window: i64) -> Self {
        Self {
            window: window.max(0),
            // std's per-process random keys, drawn afresh for each instance.
            seed: std::collections::hash_map::RandomState::new().hash_one(window),
            seen: HashTable::new(),
            sweep_at: i64::MIN,
            filling: true,
        }
    }

    /// The window size in offsets.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Whether `id` at `offset` repeats an id within the window; remembers this occurrence
    /// either way. Offsets must be fed in ascending order per window.
    pub fn check_and_insert(&mut self, id: &(impl AsRef<[u8]> + ?Sized), offset: i64) -> bool {
        let id = self.hash(id.as_ref());
        self.check_and_insert_hash(id, offset)
    }

    /// An id's hash under this window's seed, for [`DedupWindow::check_and_insert_hash`].
    fn hash(&self, id: &[u8]) -> u128 {
        XxHash3_128::oneshot_with_seed(self.seed, id)
    }

    /// Room for `n` more ids before the next insert, while the table first fills. It grows
    /// eight-fold rather than doubling, up to the most a window holds (`2 × window` ids):
    /// filling a 100,000-offset window from batches of 16,384 rehashed ~230,000 held ids over
    /// six growths (faulting in each new table), now those of the first batch or two. A
    /// partition with few records still gets a table of its records' size.
    fn reserve(&mut self, n: usize) {
        if !self.filling {
            return;
        }
        let held = self.seen.len();
        let need = held.saturating_add(n);
        if need <= self.seen.capacity() {
            return;
        }
        let most = usize::try_from(self.window.saturating_mul(2)).unwrap_or(usize::MAX);
        let target = held.saturating_mul(8).min(most).max(need);
        self.seen.reserve(target - held, |seen| slot(seen.id));
    }

    /// [`DedupWindow::check_and_insert`] of an id already hashed by [`DedupWindow::hash`].
    fn check_and_insert_hash(&mut self, id: u128, offset: i64) -> bool {
        let id = [id as u64, (id >> 64) as u64];
        if self.window == 0 {
            return false;
        }
        let floor = offset.saturating_sub(self.window);
        if offset >= self.sweep_at {
            let held = self.seen.len();
            self.seen.retain(|seen| seen.offset >= floor);
            self.filling &= self.seen.len() == held;
            self.sweep_at = offset.saturating_add(self.window);
        }
        match self
            .seen
            .entry(slot(id), |seen| seen.id == id, |seen| slot(seen.id))
        {
            Entry::Occupied(mut entry) => {
                let seen = entry.get_mut();
                // An occurrence below the floor is outside the window: as if forgotten.
                let duplicate = seen.offset >= floor && seen.offset < offset;
                seen.offset = offset;
                duplicate
            }
            Entry::Vacant(entry) => {
                entry.insert(Seen { id, offset });
                false
            }
        }
    }

    /// Distinct ids in the table: those of the window, and older ones until the next sweep.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Deduplication on a key column: one [`DedupWindow`] per topic-partition. The building block of
/// every logic that drops repeated records (`orders` on `event_id`, `identity` on `[dedup] key`).
#[derive(Debug, Clone)]
pub struct Dedup {
    key: Option<String>,
    window: i64,
    windows: HashMap<TopicPartition, DedupWindow>,
    /// The batch's rows to check and their keys' hashes (kept from batch to batch).
    hashes: Vec<(usize, i64, u128)>,
}

/// The types a dedup key column may have: its values are compared by their bytes.
pub const KEY_TYPES: &str = "string, bytes, fixed, uuid, int, long, date, timestamp or decimal";

impl Dedup {
    /// Drops rows whose `key` repeats within `window` offsets of a partition; `None` keeps
    /// every row (and remembers nothing).
    pub fn new(key: Option<String>, window: i64) -> Self {
        Self {
            key,
            window: window.max(0),
            windows: HashMap::new(),
            hashes: Vec::new(),
        }
    }

    /// The key column, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The window in offsets.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Marks the rows of `batch` that repeat a key (sets their `keep` to false) and returns how
    /// many it marked. Rows already marked (rejected by the logic) are neither checked nor
    /// remembered: a later record with the same key is the event, not a duplicate of a record
    /// that never reached the table. A NULL key is never a duplicate.
    pub fn mark(
        &mut self,
        logic: &'static str,
        batch: &SourceBatch,
        keep: &mut [bool],
    ) -> Result<u64, LogicError> {
        let (Some(key), true) = (self.key.as_deref(), self.window > 0) else {
            return Ok(0);
        };
        let keys = KeyColumn::of(logic, batch, key)?;
        let window = window(&mut self.windows, self.window, &batch.partition);
        // Two passes: every key hashed first (reading the column in order), then the table
        // probed with the hashes alone, so that the probes' cache misses overlap instead of
        // each waiting behind the next key's read.
        let hashes = &mut self.hashes;
        hashes.clear();
        let mut buffer = [0u8; 16];
        for (row, (&offset, &eligible)) in batch.offsets.iter().zip(keep.iter()).enumerate() {
            if eligible && let Some(id) = keys.get(row, &mut buffer) {
                hashes.push((row, offset, window.hash(id)));
            }
        }
        window.reserve(hashes.len());
        let mut duplicates = 0;
        for &(row, offset, id) in hashes.iter() {
            if window.check_and_insert_hash(id, offset) {
                keep[row] = false;
                duplicates += 1;
            }
        }
        Ok(duplicates)
    }

    /// Remembers the keys of an already committed batch (restart), except those of the rows
    /// `eligible` says the logic rejected.
    pub fn warm_up(
        &mut self,
        logic: &'static str,
        batch: &SourceBatch,
        eligible: impl Fn(usize) -> bool,
    ) -> Result<(), LogicError> {
        let (Some(key), true) = (self.key.as_deref(), self.window > 0) else {
            return Ok(());
        };
        let keys = KeyColumn::of(logic, batch, key)?;
        let window = window(&mut self.windows, self.window, &batch.partition);
        window.reserve(batch.offsets.len());
        let mut buffer = [0u8; 16];
        for (row, &offset) in batch.offsets.iter().enumerate() {
            if eligible(row)
                && let Some(id) = keys.get(row, &mut buffer)
            {
                window.check_and_insert(id, offset);
            }
        }
        Ok(())
    }

    /// Forgets every key.
    pub fn reset(&mut self) {
        self.windows.clear();
    }
}

fn window<'w>(
    windows: &'w mut HashMap<TopicPartition, DedupWindow>,
    size: i64,
    partition: &TopicPartition,
) -> &'w mut DedupWindow {
    windows
        .entry(partition.clone())
        .or_insert_with(|| DedupWindow::new(size))
}

/// A key column, read as bytes.
enum KeyColumn<'a> {
    Utf8(&'a StringArray),
    Binary(&'a BinaryArray),
    Fixed(&'a FixedSizeBinaryArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    Date32(&'a PrimitiveArray<Date32Type>),
    Micros(&'a PrimitiveArray<TimestampMicrosecondType>),
    Decimal(&'a PrimitiveArray<Decimal128Type>),
}

impl<'a> KeyColumn<'a> {
    fn of(logic: &'static str, batch: &'a SourceBatch, name: &str) -> Result<Self, LogicError> {
        let (_, array) = columns::column(logic, batch, name)?;
        Ok(match array.data_type() {
            DataType::Utf8 => KeyColumn::Utf8(array.as_string()),
            DataType::Binary => KeyColumn::Binary(array.as_binary()),
            DataType::FixedSizeBinary(_) => KeyColumn::Fixed(array.as_fixed_size_binary()),
            DataType::Int8 => KeyColumn::Int8(array.as_primitive()),
            DataType::Int16 => KeyColumn::Int16(array.as_primitive()),
            DataType::Int32 => KeyColumn::Int32(array.as_primitive()),
            DataType::Int64 => KeyColumn::Int64(array.as_primitive()),
            DataType::Date32 => KeyColumn::Date32(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                KeyColumn::Micros(array.as_primitive())
            }
            DataType::Decimal128(_, _) => KeyColumn::Decimal(array.as_primitive()),
            other => {
                return Err(LogicError::Column {
                    logic,
                    batch: describe(batch),
                    column: name.to_string(),
                    message: format!(
                        "a dedup key must be a {KEY_TYPES} column; this one is {other}"
                    ),
                });
            }
        })
    }

    /// The key of `row` as bytes (numbers little-endian in `buffer`), `None` when NULL.
    fn get<'b>(&'b self, row: usize, buffer: &'b mut [u8; 16]) -> Option<&'b [u8]> {
        fn number<'b>(buffer: &'b mut [u8; 16], bytes: &[u8]) -> &'b [u8] {
            buffer[..bytes.len()].copy_from_slice(bytes);
            &buffer[..bytes.len()]
        }
        macro_rules! primitive {
            ($array:expr) => {
                $array
                    .is_valid(row)
                    .then(|| number(buffer, &$array.value(row).to_le_bytes()))
            };
        }
        match self {
            KeyColumn::Utf8(a) => a.is_valid(row).then(|| a.value(row).as_bytes()),
            KeyColumn::Binary(a) => a.is_valid(row).then(|| a.value(row)),
            KeyColumn::Fixed(a) => a.is_valid(row).then(|| a.value(row)),
            KeyColumn::Int8(a) => primitive!(a),
            KeyColumn::Int16(a) => primitive!(a),
            KeyColumn::Int32(a) => primitive!(a),
            KeyColumn::Int64(a) => primitive!(a),
            KeyColumn::Date32(a) => primitive!(a),
            KeyColumn::Micros(a) => primitive!(a),
            KeyColumn::Decimal(a) => primitive!(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_duplicates() {
        let mut w = DedupWindow::new(10);
        assert!(!w.check_and_insert("a", 0));
        assert!(w.check_and_insert("a", 5));
        assert!(!w.check_and_insert("b", 6));
        assert!(
            w.check_and_insert("a", 15),
            "offset 15 is within 10 of the occurrence at 5"
        );
        assert!(!w.check_and_insert("b", 17), "b last occurred at 6");
        assert!(!w.check_and_insert("a", 26), "a last occurred at 15");
    }

    #[test]
    fn the_window_boundary_is_inclusive_of_exactly_window_offsets() {
        let mut w = DedupWindow::new(3);
        assert!(!w.check_and_insert("a", 10));
        assert!(w.check_and_insert("a", 13), "10 is in [13 - 3, 13)");
        let mut w = DedupWindow::new(3);
        assert!(!w.check_and_insert("a", 10));
        assert!(!w.check_and_insert("a", 14), "10 is not in [14 - 3, 14)");
    }

    #[test]
    fn a_zero_window_never_finds_duplicates_and_remembers_nothing() {
        let mut w = DedupWindow::new(0);
        assert!(!w.check_and_insert("a", 1));
        assert!(!w.check_and_insert("a", 2));
        assert!(w.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut w = DedupWindow::new(100);
        for offset in 0..10_000 {
            w.check_and_insert(&format!("id-{offset}"), offset);
        }
        assert!(w.len() <= 200, "{}", w.len());
    }

    #[test]
    fn the_table_fills_in_few_steps_and_no_larger_than_a_window_needs() {
        // 1,000-offset window: at most 2,000 ids held, all of offsets 0 to 1,999 (the sweep at
        // 2,000 is the first to remove any); hashbrown's table for 2,000 has room for 3,584.
        let mut dedup = Dedup::new(Some("id".into()), 1_000);
        let mut rooms = Vec::new();
        for start in (0..2_000).step_by(100) {
            let ids: Vec<_> = (start..start + 100).map(|i| Some(format!("{i}"))).collect();
            let batch = key_batch(0, start, &ids);
            let mut keep = vec![true; ids.len()];
            assert_eq!(dedup.mark("test", &batch, &mut keep).unwrap(), 0);
            let room = dedup.windows.values().next().unwrap().seen.capacity();
            if rooms.last() != Some(&room) {
                rooms.push(room);
            }
        }
        // Doubling from the first batch's 112 took five growths (224, 448, 896, 1,792, 3,584).
        assert!(rooms.len() <= 3, "{rooms:?}");
        assert!(*rooms.last().unwrap() <= 3_584, "{rooms:?}");
    }

    /// A batch of `ids` (NULL where `None`) at consecutive offsets from `start`.
    fn key_batch(partition: i32, start: i64, ids: &[Option<String>]) -> SourceBatch {
        let schema =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "id",
                DataType::Utf8,
                true,
            )]));
        let end = start + ids.len() as i64;
        SourceBatch {
            partition: TopicPartition {
                topic: "t".into(),
                partition,
            },
            range: kappa_core::OffsetRange { start, end },
            records: arrow_array::RecordBatch::try_new(
                schema,
                vec![std::sync::Arc::new(StringArray::from(ids.to_vec()))],
            )
            .unwrap(),
            offsets: (start..end).collect(),
            dead_letters: Vec::new(),
            records_in: ids.len() as u64,
        }
    }

    proptest::proptest! {
        /// `Dedup::mark` on batches cut anywhere, over two partitions, with rows the logic
        /// already rejected and NULL keys, against the rule stated naively per partition.
        #[test]
        fn marking_batches_follows_the_rule(
            window in 1i64..20,
            rows in proptest::collection::vec(
                (0i32..2, proptest::option::weighted(0.9, 0u8..8), proptest::bool::weighted(0.9)),
                1..300,
            ),
            cuts in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let mut dedup = Dedup::new(Some("id".into()), window);
            // Each partition's history of eligible occurrences, and its next offset.
            let mut history: [Vec<(String, i64)>; 2] = [Vec::new(), Vec::new()];
            let mut next = [0i64; 2];
            let mut rest = &rows[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at((*cut).min(rest.len()));
                rest = later;
                // One batch per partition of this cut's rows, in row order.
                for partition in 0..2 {
                    let part: Vec<_> = now.iter().filter(|(p, _, _)| *p == partition).collect();
                    if part.is_empty() {
                        continue;
                    }
                    let ids: Vec<Option<String>> =
                        part.iter().map(|(_, id, _)| id.map(|i| format!("id-{i}"))).collect();
                    let start = next[partition as usize];
                    let batch = key_batch(partition, start, &ids);
                    let mut keep: Vec<bool> = part.iter().map(|(_, _, eligible)| *eligible).collect();
                    let before = keep.clone();
                    let marked = dedup.mark("test", &batch, &mut keep).unwrap();
                    let seen = &mut history[partition as usize];
                    let mut expected_marks = 0;
                    for (i, id) in ids.iter().enumerate() {
                        let offset = start + i as i64;
                        let expected = match (before[i], id) {
                            (true, Some(id)) => {
                                let duplicate = seen.iter().any(|(s, at)| {
                                    s == id && *at >= offset - window && *at < offset
                                });
                                seen.push((id.clone(), offset));
                                duplicate
                            }
                            _ => false,
                        };
                        expected_marks += u64::from(expected);
                        proptest::prop_assert_eq!(
                            keep[i],
                            before[i] && !expected,
                            "partition {} offset {}", partition, offset
                        );
                    }
                    proptest::prop_assert_eq!(marked, expected_marks);
                    next[partition as usize] = start + ids.len() as i64;
                }
            }
        }

        /// The window against the rule itself, stated naively: a duplicate is an id that occurred
        /// at one of the `window` offsets before (offsets ascending, with gaps).
        #[test]
        fn it_follows_the_rule(
            window in 0i64..12,
            events in proptest::collection::vec((0u8..6, 1i64..4), 1..300),
        ) {
            let mut w = DedupWindow::new(window);
            let mut history: Vec<(String, i64)> = Vec::new();
            let mut offset = 0;
            for (id, gap) in events {
                offset += gap;
                let id = format!("id-{id}");
                let expected = history
                    .iter()
                    .any(|(seen, at)| *seen == id && *at >= offset - window && *at < offset);
                proptest::prop_assert_eq!(w.check_and_insert(&id, offset), expected, "{} at {}", id, offset);
                history.push((id, offset));
                proptest::prop_assert!(w.len() <= 2 * window as usize);
            }
        }
    }
}
