//! The commit protocol as a pure function of observed facts.
//!
//! ```text
//!            ┌──────────────┐ decide(base, input)
//!  pending ─►│ load base    │──────────────┬───────────────┬──────────────────┐
//!            └──────────────┘              │               │                  │
//!                 ▲                  AlreadyCommitted   Commit{offsets}   Overlap / Gap
//!                 │                   (no-op, done)        │              (error: never
//!                 │                                        ▼               commit twice,
//!                 │  conflict: another writer won   ┌──────────────┐       never skip)
//!                 ├─────────────────────────────────│ append, pin  │
//!                 │                                 │ base snapshot│──► committed
//!                 │  outcome unknown: commit id     └──────────────┘
//!                 └── not in ancestry ◄─────────────────┘  (found in ancestry ⇒ committed)
//! ```
//!
//! `decide` sees only the base's committed position and the input ranges of the pending commit.
//! Input ranges are half-open per topic-partition; the base position is the next offset per
//! partition, merged over every commit (see `kappa_core::SourcePosition`).

use std::collections::BTreeMap;

use kappa_core::{Coverage, OffsetRange, SourcePosition, TopicPartition};
use sha2::{Digest, Sha256};

/// What to do with a pending commit given the base it would be committed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Commit, recording this complete position (the base's, advanced by the input).
    Commit {
        /// The merged position to store in the snapshot summary.
        offsets: SourcePosition,
    },
    /// The base already covers every input range: committing again would duplicate rows.
    AlreadyCommitted,
    /// The base covers part of the input: the pending data must be rebuilt from the base position.
    Overlap {
        /// The partition.
        partition: TopicPartition,
        /// The pending input range.
        range: OffsetRange,
        /// The base's next offset in that partition.
        committed: i64,
    },
    /// The input starts after the base's next offset: offsets in between would be skipped.
    Gap {
        /// The partition.
        partition: TopicPartition,
        /// The pending input range.
        range: OffsetRange,
        /// The base's next offset in that partition.
        committed: i64,
    },
}

/// Decides what committing `input` on a base whose committed position is `base` means.
pub fn decide(base: &SourcePosition, input: &BTreeMap<TopicPartition, OffsetRange>) -> Decision {
    let mut all_covered = true;
    let mut none_covered = true;
    for (tp, range) in input {
        match base.coverage(tp, range) {
            Coverage::All => none_covered = false,
            Coverage::Partial(committed) => {
                return Decision::Overlap {
                    partition: tp.clone(),
                    range: *range,
                    committed,
                };
            }
            Coverage::None => {
                all_covered = false;
                if let Some(committed) = base.next_offset(tp)
                    && committed < range.start
                {
                    return Decision::Gap {
                        partition: tp.clone(),
                        range: *range,
                        committed,
                    };
                }
            }
        }
    }
    if all_covered {
        return Decision::AlreadyCommitted;
    }
    if !none_covered {
        // Some partitions are fully covered and others not at all: the covered part would be
        // written twice. Report the first covered one.
        if let Some((tp, range)) = input
            .iter()
            .find(|(tp, range)| base.coverage(tp, range) == Coverage::All && !range.is_empty())
        {
            return Decision::Overlap {
                partition: tp.clone(),
                range: *range,
                committed: base.next_offset(tp).unwrap_or(range.end),
            };
        }
    }
    let mut offsets = base.clone();
    for (tp, range) in input {
        offsets.advance(tp, range.end);
    }
    Decision::Commit { offsets }
}

/// The deterministic id of a commit: the same pipeline, table and input always give the same id,
/// so a commit whose outcome is unknown can be recognised in the table's history.
pub fn commit_id(
    pipeline: &str,
    table: &str,
    input: &BTreeMap<TopicPartition, OffsetRange>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(pipeline.as_bytes());
    hasher.update([0]);
    hasher.update(table.as_bytes());
    for (tp, range) in input {
        hasher.update(format!(
            "\0{}\0{}\0{}\0{}",
            tp.topic, tp.partition, range.start, range.end
        ));
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The input ranges as summary JSON: `{"topic":{"0":[start,end]}}`.
pub fn input_json(input: &BTreeMap<TopicPartition, OffsetRange>) -> String {
    let mut by_topic: BTreeMap<&str, BTreeMap<String, [i64; 2]>> = BTreeMap::new();
    for (tp, range) in input {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .insert(tp.partition.to_string(), [range.start, range.end]);
    }
    serde_json::to_string(&by_topic).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    fn input(ranges: &[(i32, i64, i64)]) -> BTreeMap<TopicPartition, OffsetRange> {
        ranges
            .iter()
            .map(|(p, s, e)| (tp(*p), OffsetRange::new(*s, *e)))
            .collect()
    }

    #[test]
    fn first_commit_records_the_input_ends() {
        let d = decide(&SourcePosition::new(), &input(&[(0, 0, 10), (1, 5, 7)]));
        let Decision::Commit { offsets } = d else {
            panic!("{d:?}")
        };
        assert_eq!(offsets.next_offset(&tp(0)), Some(10));
        assert_eq!(offsets.next_offset(&tp(1)), Some(7));
    }

    #[test]
    fn merges_with_partitions_committed_by_others() {
        let base: SourcePosition = [(tp(0), 10), (tp(2), 40)].into_iter().collect();
        let Decision::Commit { offsets } = decide(&base, &input(&[(0, 10, 20)])) else {
            panic!()
        };
        assert_eq!(offsets.next_offset(&tp(0)), Some(20));
        assert_eq!(
            offsets.next_offset(&tp(2)),
            Some(40),
            "state must stay complete"
        );
    }

    #[test]
    fn covered_input_is_already_committed() {
        let base: SourcePosition = [(tp(0), 20), (tp(1), 7)].into_iter().collect();
        assert_eq!(
            decide(&base, &input(&[(0, 10, 20), (1, 0, 7)])),
            Decision::AlreadyCommitted
        );
    }

    #[test]
    fn partial_coverage_is_an_overlap() {
        let base: SourcePosition = [(tp(0), 15)].into_iter().collect();
        assert!(matches!(
            decide(&base, &input(&[(0, 10, 20)])),
            Decision::Overlap { committed: 15, .. }
        ));
        let base: SourcePosition = [(tp(0), 20)].into_iter().collect();
        assert!(matches!(
            decide(&base, &input(&[(0, 10, 20), (1, 0, 5)])),
            Decision::Overlap { .. }
        ));
    }

    #[test]
    fn skipping_offsets_is_a_gap() {
        let base: SourcePosition = [(tp(0), 10)].into_iter().collect();
        assert!(matches!(
            decide(&base, &input(&[(0, 12, 20)])),
            Decision::Gap { committed: 10, .. }
        ));
    }

    #[test]
    fn commit_ids_are_deterministic_and_input_sensitive() {
        let a = commit_id("p", "ns.t", &input(&[(0, 0, 10)]));
        assert_eq!(a, commit_id("p", "ns.t", &input(&[(0, 0, 10)])));
        assert_ne!(a, commit_id("p", "ns.t", &input(&[(0, 0, 11)])));
        assert_ne!(a, commit_id("q", "ns.t", &input(&[(0, 0, 10)])));
        assert_eq!(a.len(), 32);
        assert_eq!(
            input_json(&input(&[(0, 1, 2)])),
            r#"{"orders":{"0":[1,2]}}"#
        );
    }

    proptest! {
        /// Any interleaving of writers over disjoint partitions, each committing contiguous
        /// chunks with crashes (retrying already-committed chunks), ends with every offset
        /// committed exactly once.
        #[test]
        fn replays_and_crashes_never_double_commit(
            chunks in proptest::collection::vec((0i32..3, 1i64..20), 1..40),
            crash_every in 2usize..6,
        ) {
            let mut table = SourcePosition::new();
            let mut committed_rows: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            let mut reader_next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            for (i, (p, len)) in chunks.iter().enumerate() {
                let tp = tp(*p);
                let start = *reader_next.get(&tp).unwrap_or(&0);
                let pending = input(&[(*p, start, start + len)]);
                let mut attempts = if i % crash_every == 0 { 2 } else { 1 };
                while attempts > 0 {
                    attempts -= 1;
                    match decide(&table, &pending) {
                        Decision::Commit { offsets } => {
                            *committed_rows.entry(tp.clone()).or_default() += len;
                            table = offsets;
                        }
                        Decision::AlreadyCommitted => {}
                        other => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                reader_next.insert(tp, start + len);
            }
            for (tp, rows) in committed_rows {
                prop_assert_eq!(Some(rows), table.next_offset(&tp));
            }
        }
    }
}
