//! A deterministic dedup window per topic-partition.
//!
//! An event id is a duplicate if it occurred (as an original or as a duplicate) at an earlier
//! offset of the same partition within the previous `window` offsets. Every occurrence refreshes
//! the id, so the state at any offset is a function of the records in the window before it only:
//! re-reading the `window` offsets before the resume position rebuilds exactly the state an
//! uninterrupted run had there.
//! Memory is bounded by the number of ids within the window.

use std::collections::{HashMap, VecDeque};

/// Ids seen in the last `window` offsets of one partition.
#[derive(Debug, Clone)]
pub struct DedupWindow {
    window: i64,
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl DedupWindow {
    /// An empty window of `window` offsets.
    pub fn new(window: i64) -> Self {
        Self {
            window: window.max(0),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` at `offset` repeats an id within the window; remembers this occurrence
    /// either way.
    pub fn check_and_insert(&mut self, id: &str, offset: i64) -> bool {
        self.evict_before(offset - self.window);
        let duplicate = self.seen.get(id).is_some_and(|previous| *previous < offset);
        self.seen.insert(id.to_string(), offset);
        self.order.push_back((offset, id.to_string()));
        duplicate
    }

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

    /// Ids currently remembered.
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
    fn memory_is_bounded_by_the_window() {
        let mut w = DedupWindow::new(100);
        for offset in 0..10_000 {
            w.check_and_insert(&format!("id-{offset}"), offset);
        }
        assert!(w.len() <= 101, "{}", w.len());
    }
}
