//! Event time per topic-partition: the newest event time each partition has delivered, and which
//! rows arrive too far behind it.
//!
//! Lateness is judged **per partition, row by row in offset order**: a row is late when its event
//! time is earlier than the newest event time of the rows before it in its partition minus the
//! allowed lateness. That depends on the partition's records alone, not on how partitions
//! interleave, where batches or files begin, or when a process restarted (the newest time per
//! partition is stored with every commit, `kappa.event-times`). So the archive replay and the live
//! consumer classify exactly the same rows as late, and routing them to a late table keeps
//! replay equal to live.
//!
//! ```text
//!  partition 0: t=10:00  10:05  08:30  10:07  09:59        allowed lateness 1h
//!  newest before:  —     10:00  10:05  10:05  10:07
//!  late?           no     no    yes    no     no   (08:30 < 10:05 − 1h; 09:59 ≥ 10:07 − 1h)
//! ```

use std::collections::BTreeMap;

use crate::position::{PositionError, TopicPartition, map_from_json, map_to_json};

/// The newest event time (µs since the epoch) seen per topic-partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTimes {
    newest: BTreeMap<TopicPartition, i64>,
}

impl EventTimes {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest event time seen in `tp`.
    pub fn newest(&self, tp: &TopicPartition) -> Option<i64> {
        self.newest.get(tp).copied()
    }

    /// Records an event time of `tp`; the newest only moves forward.
    pub fn observe(&mut self, tp: &TopicPartition, micros: i64) {
        match self.newest.get_mut(tp) {
            Some(newest) => *newest = (*newest).max(micros),
            None => {
                self.newest.insert(tp.clone(), micros);
            }
        }
    }

    /// Folds `other` in, keeping the newer time per partition.
    pub fn merge(&mut self, other: &EventTimes) {
        for (tp, micros) in &other.newest {
            self.observe(tp, *micros);
        }
    }

    /// Classifies the rows of one partition, in offset order, and advances the partition's newest
    /// time past them. `times` are the rows' event times (`None`: the row has none; it is never
    /// late and moves nothing). Returns one flag per row: `true` when the row is late.
    pub fn classify(
        &mut self,
        tp: &TopicPartition,
        times: impl IntoIterator<Item = Option<i64>>,
        allowed_lateness_micros: i64,
    ) -> Vec<bool> {
        let mut newest = self.newest(tp);
        let flags = times
            .into_iter()
            .map(|time| {
                let Some(time) = time else { return false };
                let late = newest.is_some_and(|n| time < n.saturating_sub(allowed_lateness_micros));
                newest = Some(newest.map_or(time, |n| n.max(time)));
                late
            })
            .collect();
        if let Some(newest) = newest {
            self.observe(tp, newest);
        }
        flags
    }

    /// Iterates over `(topic-partition, newest event time)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.newest.iter().map(|(tp, t)| (tp, *t))
    }

    /// Whether no partition has an event time.
    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// Serializes as `{"topic":{"0":1700000000000000}}`, the `kappa.event-times` format.
    pub fn to_json(&self) -> String {
        map_to_json(&self.newest)
    }

    /// Parses what [`EventTimes::to_json`] writes.
    pub fn from_json(text: &str) -> Result<Self, PositionError> {
        let mut times = EventTimes::new();
        for (tp, micros) in map_from_json(text)? {
            times.observe(&tp, micros);
        }
        Ok(times)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: i64 = 3_600_000_000;
    const MINUTE: i64 = 60_000_000;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    #[test]
    fn a_row_is_late_only_behind_its_own_partitions_newest_time_minus_the_lateness() {
        let mut times = EventTimes::new();
        let t = |h: i64, m: i64| Some(h * HOUR + m * MINUTE);
        let flags = times.classify(
            &tp(0),
            [t(10, 0), t(10, 5), t(8, 30), t(10, 7), t(9, 59), None],
            HOUR,
        );
        assert_eq!(flags, [false, false, true, false, false, false]);
        assert_eq!(times.newest(&tp(0)), t(10, 7));
        // Another partition has its own clock: 08:30 there is not late.
        assert_eq!(times.classify(&tp(1), [t(8, 30)], HOUR), [false]);
        // The state carries over to the next batch of the partition.
        assert_eq!(
            times.classify(&tp(0), [t(9, 6), t(9, 8)], HOUR),
            [true, false]
        );
    }

    #[test]
    fn json_round_trip_and_merge_keep_the_newest() {
        let mut a = EventTimes::new();
        a.observe(&tp(0), 10);
        a.observe(&tp(1), 30);
        let mut b = EventTimes::new();
        b.observe(&tp(0), 20);
        b.observe(&tp(1), 5);
        a.merge(&b);
        assert_eq!(a.to_json(), r#"{"orders":{"0":20,"1":30}}"#);
        assert_eq!(EventTimes::from_json(&a.to_json()).unwrap(), a);
        assert!(EventTimes::from_json(r#"{"orders":{"x":1}}"#).is_err());
    }

    proptest! {
        /// Where the batches of a partition begin (files, polls, restarts from the stored state)
        /// never changes which rows are late.
        #[test]
        fn batch_boundaries_do_not_change_the_verdicts(
            rows in proptest::collection::vec(proptest::option::of(0i64..10 * HOUR), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            lateness in 0i64..3 * HOUR,
        ) {
            let mut whole = EventTimes::new();
            let expected = whole.classify(&tp(0), rows.iter().copied(), lateness);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
            cuts.push(0);
            cuts.push(rows.len());
            cuts.sort_unstable();
            let mut pieces = EventTimes::new();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                // Each piece restarts from the state a commit would have stored.
                pieces = EventTimes::from_json(&pieces.to_json()).unwrap();
                got.extend(pieces.classify(&tp(0), rows[w[0]..w[1]].iter().copied(), lateness));
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(pieces, whole);
        }
    }
}
