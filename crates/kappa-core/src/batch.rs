//! The unit of work that flows from a source through the logic to the committer.

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;

use crate::position::{OffsetRange, TopicPartition};

/// Why a record went to the dead-letter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterKind {
    /// The bytes are not a valid message of any known schema (bad magic, unknown id, truncated).
    Undecodable,
    /// A valid message whose writer schema cannot be read as the table's schema (an
    /// incompatible version): the pipeline keeps running, the records wait in the DLQ.
    UnmappableSchema,
    /// The record decoded but a value does not fit its table column (a `timestamp-millis` that
    /// overflows microseconds, ...): the message names the column and the value.
    Unconvertible,
    /// The record decoded but the business logic rejected it.
    Rejected,
    /// The record failed a quality rule.
    RuleViolation,
}

impl DeadLetterKind {
    /// Stable name written to the `error_kind` column of the DLQ table.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Undecodable => "undecodable",
            DeadLetterKind::UnmappableSchema => "unmappable-schema",
            DeadLetterKind::Unconvertible => "unconvertible",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::RuleViolation => "rule-violation",
        }
    }
}

/// A record that could not be written to the main table, with everything needed to find and
/// replay it: nothing read is ever dropped silently.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Kafka offset of the record.
    pub offset: i64,
    /// The record's original bytes as read (for decoded-then-rejected records, the raw value when
    /// the source kept it, else empty).
    pub raw: Bytes,
    /// Archive object key the record was read from (`None` for live Kafka).
    pub object_key: Option<Arc<str>>,
    /// Why it was dead-lettered.
    pub kind: DeadLetterKind,
    /// Human-readable reason, naming the field or rule.
    pub message: String,
}

/// Decoded records of one topic-partition together with the input range they account for.
///
/// Invariant (checked by [`SourceBatch::check`]): every offset in `range` that exists in the source
/// appears exactly once, either as a row of `records` or as a `dead_letters` entry (after the
/// logic also as a dropped duplicate, counted in the transform's stats).
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Where the records come from.
    pub partition: TopicPartition,
    /// The offsets this batch accounts for: `[start, end)`. `end` is the next offset to read.
    pub range: OffsetRange,
    /// Decoded values in the reader (table) schema, without Kafka coordinates.
    pub records: RecordBatch,
    /// Kafka offset of each row of `records`, ascending.
    pub offsets: Vec<i64>,
    /// Records that could not be decoded or were rejected.
    pub dead_letters: Vec<DeadLetter>,
    /// Records read by the source (rows + dead letters before any transform).
    pub records_in: u64,
}

impl SourceBatch {
    /// Number of rows headed for the main table.
    pub fn num_rows(&self) -> usize {
        self.records.num_rows()
    }

    /// Checks the structural invariants; a violation is a bug in a source or a transform.
    pub fn check(&self) -> Result<(), String> {
        if self.offsets.len() != self.records.num_rows() {
            return Err(format!(
                "{}: {} offsets for {} rows",
                self.partition,
                self.offsets.len(),
                self.records.num_rows()
            ));
        }
        let outside = self
            .offsets
            .iter()
            .chain(self.dead_letters.iter().map(|d| &d.offset))
            .find(|o| !self.range.contains(**o));
        if let Some(offset) = outside {
            return Err(format!(
                "{}: offset {offset} outside the batch range {}",
                self.partition, self.range
            ));
        }
        if self.offsets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "{}: row offsets are not strictly ascending",
                self.partition
            ));
        }
        Ok(())
    }

    /// Splits at `offset`: the part below it and the part from it on. Each part keeps its rows,
    /// dead letters and the matching piece of the range.
    pub fn split_at(self, offset: i64) -> (SourceBatch, SourceBatch) {
        let at = offset.clamp(self.range.start, self.range.end);
        let cut = self.offsets.partition_point(|o| *o < at);
        let rows = self.records.num_rows();
        let (dead_before, dead_after): (Vec<DeadLetter>, Vec<DeadLetter>) =
            self.dead_letters.into_iter().partition(|d| d.offset < at);
        let part = |range: OffsetRange,
                    start: usize,
                    len: usize,
                    offsets: Vec<i64>,
                    dead: Vec<DeadLetter>| {
            let records = self.records.slice(start, len);
            SourceBatch {
                partition: self.partition.clone(),
                range,
                records_in: (records.num_rows() + dead.len()) as u64,
                records,
                offsets,
                dead_letters: dead,
            }
        };
        let before = part(
            OffsetRange::new(self.range.start, at),
            0,
            cut,
            self.offsets[..cut].to_vec(),
            dead_before,
        );
        let after = part(
            OffsetRange::new(at, self.range.end),
            cut,
            rows - cut,
            self.offsets[cut..].to_vec(),
            dead_after,
        );
        (before, after)
    }

    /// Keeps only the rows and dead letters at or after `from`, narrowing the range accordingly.
    /// Used when a table already holds the start of this batch (resume after a crash).
    pub fn skip_before(self, from: i64) -> SourceBatch {
        if from <= self.range.start {
            return self;
        }
        self.split_at(from).1
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(offsets: Vec<i64>, dlq: Vec<i64>, range: (i64, i64)) -> SourceBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values: ArrayRef = Arc::new(Int64Array::from(offsets.clone()));
        let records = RecordBatch::try_new(schema, vec![values]).unwrap();
        let dead_letters = dlq
            .into_iter()
            .map(|offset| DeadLetter {
                offset,
                raw: Bytes::new(),
                object_key: None,
                kind: DeadLetterKind::Undecodable,
                message: "bad".into(),
            })
            .collect::<Vec<_>>();
        SourceBatch {
            partition: TopicPartition::new("t", 0),
            range: OffsetRange::new(range.0, range.1),
            records_in: (offsets.len() + dead_letters.len()) as u64,
            records,
            offsets,
            dead_letters,
        }
    }

    #[test]
    fn skip_before_narrows_rows_dead_letters_and_range() {
        let b = batch(vec![10, 11, 13, 14], vec![12], (10, 15)).skip_before(12);
        assert_eq!(b.offsets, vec![13, 14]);
        assert_eq!(b.dead_letters.len(), 1);
        assert_eq!(b.range, OffsetRange::new(12, 15));
        assert_eq!(b.records_in, 3);
        b.check().unwrap();
    }

    #[test]
    fn skip_past_the_end_leaves_an_empty_batch() {
        let b = batch(vec![10, 11], vec![], (10, 12)).skip_before(20);
        assert_eq!(b.num_rows(), 0);
        assert_eq!(b.range, OffsetRange::new(12, 12));
    }

    #[test]
    fn split_at_keeps_everything_exactly_once() {
        let (before, after) = batch(vec![10, 11, 13, 14], vec![12], (10, 15)).split_at(13);
        assert_eq!(before.offsets, vec![10, 11]);
        assert_eq!(before.dead_letters.len(), 1);
        assert_eq!(before.range, OffsetRange::new(10, 13));
        assert_eq!(after.offsets, vec![13, 14]);
        assert!(after.dead_letters.is_empty());
        assert_eq!(after.range, OffsetRange::new(13, 15));
        assert_eq!(before.records_in + after.records_in, 5);
        before.check().unwrap();
        after.check().unwrap();
    }

    #[test]
    fn check_rejects_rows_outside_the_range() {
        let err = batch(vec![10, 11], vec![], (10, 11)).check().unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }
}
