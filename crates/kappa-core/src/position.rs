//! Per topic-partition progress.
//!
//! A [`SourcePosition`] maps every topic-partition a pipeline has read to the **next offset to
//! read**. It is the complete state stored in each commit (`kappa.offsets`), so resuming never
//! needs anything but the newest commit. Merging two positions keeps the larger next offset per
//! partition: progress only moves forward.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A Kafka topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A half-open offset range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OffsetRange {
    /// First offset in the range.
    pub start: i64,
    /// One past the last offset in the range: the next offset to read.
    pub end: i64,
}

impl OffsetRange {
    /// Builds `[start, end)`; `end < start` is clamped to an empty range at `start`.
    pub fn new(start: i64, end: i64) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }

    /// Whether `offset` lies in the range.
    pub fn contains(&self, offset: i64) -> bool {
        self.start <= offset && offset < self.end
    }

    /// Whether the range holds no offset.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// The smallest range covering both, if they touch or overlap.
    pub fn union(&self, other: &OffsetRange) -> Option<OffsetRange> {
        if self.is_empty() {
            return Some(*other);
        }
        if other.is_empty() {
            return Some(*self);
        }
        (self.start <= other.end && other.start <= self.end)
            .then(|| OffsetRange::new(self.start.min(other.start), self.end.max(other.end)))
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// How much of an input range a position already covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Nothing of the range has been committed.
    None,
    /// The start of the range has been committed, up to (excluding) this offset.
    Partial(i64),
    /// The whole range has been committed.
    All,
}

/// A malformed serialized position.
#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    /// The JSON does not have the `{"topic": {"partition": next_offset}}` shape.
    #[error(
        "per-partition state {text:?} is not valid JSON of the form {{\"topic\":{{\"0\":123}}}}: {source}"
    )]
    Json {
        /// The text that failed to parse.
        text: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A partition key is not an integer.
    #[error("per-partition state: partition key {key:?} of topic {topic:?} is not an integer")]
    PartitionKey {
        /// Topic whose key is bad.
        topic: String,
        /// The key.
        key: String,
    },
}

/// Next offset to read for every topic-partition seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePosition {
    next: BTreeMap<TopicPartition, i64>,
}

impl SourcePosition {
    /// An empty position: nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Next offset to read in `tp`, if anything of it was ever committed.
    pub fn next_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.next.get(tp).copied()
    }

    /// Records that everything below `next` in `tp` is processed; never moves backwards.
    pub fn advance(&mut self, tp: &TopicPartition, next: i64) {
        match self.next.get_mut(tp) {
            Some(current) => *current = (*current).max(next),
            None => {
                self.next.insert(tp.clone(), next);
            }
        }
    }

    /// Moves `tp` to `next`, backwards too: only for an operator's explicit decision (a topic
    /// recreated under the table); everything else uses [`SourcePosition::advance`].
    pub fn set(&mut self, tp: &TopicPartition, next: i64) {
        self.next.insert(tp.clone(), next);
    }

    /// Folds `other` in, keeping the larger next offset per partition.
    pub fn merge(&mut self, other: &SourcePosition) {
        for (tp, next) in &other.next {
            self.advance(tp, *next);
        }
    }

    /// How much of `range` in `tp` this position already covers.
    ///
    /// An empty range is covered once the position reaches its start.
    pub fn coverage(&self, tp: &TopicPartition, range: &OffsetRange) -> Coverage {
        match self.next_offset(tp) {
            Some(next) if next >= range.end => Coverage::All,
            Some(next) if next > range.start => Coverage::Partial(next),
            _ => Coverage::None,
        }
    }

    /// Whether `offset` in `tp` has been processed.
    pub fn contains(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.next_offset(tp).is_some_and(|next| offset < next)
    }

    /// Iterates over `(topic-partition, next offset)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.next.iter().map(|(tp, next)| (tp, *next))
    }

    /// Whether no partition has been recorded.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// Serializes as `{"topic":{"0":123,"1":456}}` (stable key order), the `kappa.offsets` format.
    pub fn to_json(&self) -> String {
        map_to_json(&self.next)
    }

    /// Parses the `kappa.offsets` format written by [`SourcePosition::to_json`].
    pub fn from_json(text: &str) -> Result<Self, PositionError> {
        let mut position = SourcePosition::new();
        for (tp, next) in map_from_json(text)? {
            position.advance(&tp, next);
        }
        Ok(position)
    }
}

/// Serializes a per-partition value as `{"topic":{"0":123,"1":456}}` (stable key order).
pub(crate) fn map_to_json(map: &BTreeMap<TopicPartition, i64>) -> String {
    let mut by_topic: BTreeMap<&str, BTreeMap<i32, i64>> = BTreeMap::new();
    for (tp, value) in map {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .insert(tp.partition, *value);
    }
    let value: BTreeMap<&str, BTreeMap<String, i64>> = by_topic
        .into_iter()
        .map(|(topic, parts)| {
            (
                topic,
                parts.into_iter().map(|(p, n)| (p.to_string(), n)).collect(),
            )
        })
        .collect();
    serde_json::to_string(&value).unwrap_or_default()
}

/// Parses what [`map_to_json`] writes.
pub(crate) fn map_from_json(text: &str) -> Result<Vec<(TopicPartition, i64)>, PositionError> {
    let value: BTreeMap<String, BTreeMap<String, i64>> =
        serde_json::from_str(text).map_err(|source| PositionError::Json {
            text: text.chars().take(200).collect(),
            source,
        })?;
    let mut out = Vec::new();
    for (topic, parts) in value {
        for (key, value) in parts {
            let partition = key.parse().map_err(|_| PositionError::PartitionKey {
                topic: topic.clone(),
                key: key.clone(),
            })?;
            out.push((TopicPartition::new(topic.clone(), partition), value));
        }
    }
    Ok(out)
}

impl FromIterator<(TopicPartition, i64)> for SourcePosition {
    fn from_iter<I: IntoIterator<Item = (TopicPartition, i64)>>(iter: I) -> Self {
        let mut position = SourcePosition::new();
        for (tp, next) in iter {
            position.advance(&tp, next);
        }
        position
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    #[test]
    fn json_round_trip_is_stable() {
        let pos: SourcePosition = [(tp(1), 20), (tp(0), 10), (TopicPartition::new("a", 2), 5)]
            .into_iter()
            .collect();
        let json = pos.to_json();
        assert_eq!(json, r#"{"a":{"2":5},"orders":{"0":10,"1":20}}"#);
        assert_eq!(SourcePosition::from_json(&json).unwrap(), pos);
    }

    #[test]
    fn bad_json_names_the_problem() {
        let err = SourcePosition::from_json(r#"{"orders":{"x":1}}"#).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(SourcePosition::from_json("nope").is_err());
    }

    #[test]
    fn coverage_distinguishes_none_partial_all() {
        let pos: SourcePosition = [(tp(0), 15)].into_iter().collect();
        assert_eq!(
            pos.coverage(&tp(0), &OffsetRange::new(10, 15)),
            Coverage::All
        );
        assert_eq!(
            pos.coverage(&tp(0), &OffsetRange::new(10, 20)),
            Coverage::Partial(15)
        );
        assert_eq!(
            pos.coverage(&tp(0), &OffsetRange::new(15, 20)),
            Coverage::None
        );
        assert_eq!(
            pos.coverage(&tp(1), &OffsetRange::new(0, 1)),
            Coverage::None
        );
        assert!(pos.contains(&tp(0), 14));
        assert!(!pos.contains(&tp(0), 15));
    }

    #[test]
    fn range_union_requires_touching_ranges() {
        let a = OffsetRange::new(0, 10);
        assert_eq!(
            a.union(&OffsetRange::new(10, 12)),
            Some(OffsetRange::new(0, 12))
        );
        assert_eq!(a.union(&OffsetRange::new(11, 12)), None);
        assert_eq!(a.union(&OffsetRange::new(5, 5)), Some(a));
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_monotonic(
            a in proptest::collection::vec((0i32..4, 0i64..1000), 0..8),
            b in proptest::collection::vec((0i32..4, 0i64..1000), 0..8),
            c in proptest::collection::vec((0i32..4, 0i64..1000), 0..8),
        ) {
            let build = |v: &Vec<(i32, i64)>| v.iter().map(|(p, o)| (tp(*p), *o)).collect::<SourcePosition>();
            let (pa, pb, pc) = (build(&a), build(&b), build(&c));
            let mut ab = pa.clone(); ab.merge(&pb);
            let mut ba = pb.clone(); ba.merge(&pa);
            prop_assert_eq!(&ab, &ba);
            let mut ab_c = ab.clone(); ab_c.merge(&pc);
            let mut bc = pb.clone(); bc.merge(&pc);
            let mut a_bc = pa.clone(); a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            for (t, next) in pa.iter() {
                prop_assert!(ab.next_offset(t).unwrap() >= next);
            }
            prop_assert_eq!(SourcePosition::from_json(&ab.to_json()).unwrap(), ab);
        }
    }
}
