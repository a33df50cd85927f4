//! A deterministic dedup window per topic-partition.
//!
//! **Rule.** An event id at offset `o` is a duplicate when the same id occurred (as an original or
//! as a duplicate) at an earlier offset of the same partition in `[o - window, o)`. Every
//! occurrence refreshes the id, so the window's state at any offset is a function of the records
//! in the `window` offsets before it, and of nothing else: re-reading those offsets before a resume
//! position ([`crate::OrdersLogic`]'s `warm_up`) rebuilds exactly the state an uninterrupted run
//! had there, and the way the stream is cut into batches does not matter.
//!
//! Memory is bounded by the window: one queue entry per occurrence in the last `window` offsets
//! and at most one map entry per distinct id among them.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// foldhash, randomly seeded per window: several times faster than SipHash on short ids (dedup
/// was ~15% of a replay's CPU with SipHash) and still not predictable from outside.
type Hasher = foldhash::fast::RandomState;

/// A remembered id: its hash (computed once), the id, and the newest offset it occurred at.
#[derive(Debug, Clone)]
struct Seen {
    hash: u64,
    id: Arc<str>,
    offset: i64,
}

/// Ids seen in the last `window` offsets of one partition.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window: i64,
    hasher: Hasher,
    /// Each remembered id once, with the newest offset it occurred at.
    seen: HashTable<Seen>,
    /// Every remembered occurrence, oldest first, for eviction by offset: its offset and the
    /// entry's hash and id (the entry's own allocation, so found again by pointer).
    order: VecDeque<(i64, u64, Arc<str>)>,
}

impl DedupWindow {
    /// An empty window of `window` offsets (negative is treated as 0: nothing is a duplicate).
    pub fn new(window: i64) -> Self {
        Self {
            window: window.max(0),
            hasher: Hasher::default(),
            seen: HashTable::new(),
            order: VecDeque::new(),
        }
    }

    /// The window size in offsets.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Whether `id` at `offset` repeats an id within the window; remembers this occurrence
    /// either way. Offsets must be fed in ascending order per window.
    pub fn check_and_insert(&mut self, id: &str, offset: i64) -> bool {
        self.evict_before(offset.saturating_sub(self.window));
        if self.window == 0 {
            return false;
        }
        // One hash and one probe per id; the stored hashes serve any resize.
        let hash = self.hasher.hash_one(id);
        let (duplicate, key) = match self
            .seen
            .entry(hash, |seen| &*seen.id == id, |seen| seen.hash)
        {
            Entry::Occupied(mut entry) => {
                let seen = entry.get_mut();
                let duplicate = seen.offset < offset;
                seen.offset = offset;
                (duplicate, seen.id.clone())
            }
            Entry::Vacant(entry) => {
                let id: Arc<str> = Arc::from(id);
                entry.insert(Seen {
                    hash,
                    id: id.clone(),
                    offset,
                });
                (false, id)
            }
        };
        self.order.push_back((offset, hash, key));
        duplicate
    }

    /// Forgets every occurrence below `floor`.
    fn evict_before(&mut self, floor: i64) {
        while let Some((offset, _, _)) = self.order.front() {
            if *offset >= floor {
                break;
            }
            let Some((offset, hash, id)) = self.order.pop_front() else {
                break;
            };
            // The entry holds this very allocation; it is forgotten unless it occurred since.
            if let Ok(entry) = self
                .seen
                .find_entry(hash, |seen| Arc::ptr_eq(&seen.id, &id))
                && entry.get().offset == offset
            {
                entry.remove();
            }
        }
    }

    /// Distinct ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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
            w.check_and_insert(&format!("id-{}", offset % 150), offset);
        }
        assert!(w.len() <= 101, "{}", w.len());
        assert!(w.order.len() <= 101, "{}", w.order.len());
    }

    proptest::proptest! {
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
                proptest::prop_assert!(w.len() <= window as usize + 1);
            }
        }
    }
}
