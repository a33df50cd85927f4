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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// foldhash, randomly seeded per window: several times faster than SipHash on short ids (dedup
/// was ~15% of a replay's CPU with SipHash) and still not predictable from outside.
type Hasher = foldhash::fast::RandomState;

/// Ids seen in the last `window` offsets of one partition.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window: i64,
    /// Newest offset at which each remembered id occurred.
    seen: HashMap<Arc<str>, i64, Hasher>,
    /// Every remembered occurrence, oldest first, for eviction by offset.
    order: VecDeque<(i64, Arc<str>)>,
}

impl DedupWindow {
    /// An empty window of `window` offsets (negative is treated as 0: nothing is a duplicate).
    pub fn new(window: i64) -> Self {
        Self {
            window: window.max(0),
            seen: HashMap::default(),
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
        let duplicate = match self.seen.get_mut(id) {
            Some(previous) => {
                let duplicate = *previous < offset;
                *previous = offset;
                duplicate
            }
            None => false,
        };
        let key: Arc<str> = match self.seen.get_key_value(id) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<str> = Arc::from(id);
                self.seen.insert(key.clone(), offset);
                key
            }
        };
        self.order.push_back((offset, key));
        duplicate
    }

    /// Forgets every occurrence below `floor`.
    fn evict_before(&mut self, floor: i64) {
        while let Some((offset, _)) = self.order.front() {
            if *offset >= floor {
                break;
            }
            if let Some((offset, id)) = self.order.pop_front()
                && self.seen.get(&id) == Some(&offset)
            {
                self.seen.remove(&id);
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
}
