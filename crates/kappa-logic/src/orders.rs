//! The `orders` domain: upper-case `currency`, reject negative `amount_cents` (to the dead-letter
//! table with the reason), drop duplicate `event_id`s within the dedup window.
//!
//! Rejected rows do not register their `event_id`: a later valid record with the same id is the
//! event, not a duplicate.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use kappa_core::{
    DeadLetter, DeadLetterKind, SourceBatch, TopicPartition, Transform, TransformStats,
};

use crate::dedup::DedupWindow;
use crate::error::LogicError;

const LOGIC: &str = "orders";

/// The `orders` business logic.
#[derive(Debug, Clone)]
pub struct OrdersLogic {
    window: i64,
    windows: HashMap<TopicPartition, DedupWindow>,
}

impl OrdersLogic {
    /// Orders logic with a dedup window of `window` offsets per partition.
    pub fn new(window: i64) -> Self {
        Self {
            window,
            windows: HashMap::new(),
        }
    }

    fn window(&mut self, tp: &TopicPartition) -> &mut DedupWindow {
        let size = self.window;
        self.windows
            .entry(tp.clone())
            .or_insert_with(|| DedupWindow::new(size))
    }
}

fn string_column<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a StringArray, LogicError> {
    let column = batch.column_by_name(name).ok_or(LogicError::Column {
        logic: LOGIC,
        column: name,
        message: "missing from the batch".into(),
    })?;
    column
        .as_string_opt::<i32>()
        .ok_or_else(|| LogicError::Column {
            logic: LOGIC,
            column: name,
            message: format!("expected a string column, found {}", column.data_type()),
        })
}

fn amounts(batch: &RecordBatch) -> Result<&arrow_array::PrimitiveArray<Int64Type>, LogicError> {
    let column = batch
        .column_by_name("amount_cents")
        .ok_or(LogicError::Column {
            logic: LOGIC,
            column: "amount_cents",
            message: "missing from the batch".into(),
        })?;
    column
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| LogicError::Column {
            logic: LOGIC,
            column: "amount_cents",
            message: format!("expected a long column, found {}", column.data_type()),
        })
}

impl Transform for OrdersLogic {
    type Error = LogicError;

    fn apply(
        &mut self,
        mut batch: SourceBatch,
    ) -> Result<(SourceBatch, TransformStats), LogicError> {
        let records = &batch.records;
        let n = records.num_rows();
        let ids = string_column(records, "event_id")?;
        let amount = amounts(records)?;
        let mut keep = Vec::with_capacity(n);
        let mut stats = TransformStats::default();
        let window = {
            let tp = batch.partition.clone();
            self.window(&tp)
        };
        for row in 0..n {
            let offset = batch.offsets[row];
            if !amount.is_null(row) && amount.value(row) < 0 {
                batch.dead_letters.push(DeadLetter {
                    offset,
                    raw: Bytes::new(),
                    object_key: None,
                    kind: DeadLetterKind::Rejected,
                    message: format!("amount_cents is negative ({})", amount.value(row)),
                });
                stats.rejected += 1;
                keep.push(false);
                continue;
            }
            if !ids.is_null(row) && window.check_and_insert(ids.value(row), offset) {
                stats.duplicates_dropped += 1;
                keep.push(false);
                continue;
            }
            keep.push(true);
        }
        batch.dead_letters.sort_by_key(|d| d.offset);
        let mask = BooleanArray::from(keep);
        let filtered = arrow_select::filter::filter_record_batch(records, &mask).map_err(|e| {
            LogicError::Arrow {
                logic: LOGIC,
                message: format!("filtering rows: {e}"),
            }
        })?;
        let offsets = batch
            .offsets
            .iter()
            .zip(mask.values().iter())
            .filter_map(|(o, k)| k.then_some(*o))
            .collect();
        batch.records = upper_case_currency(filtered)?;
        batch.offsets = offsets;
        Ok((batch, stats))
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), LogicError> {
        let ids = string_column(&batch.records, "event_id")?;
        let amount = amounts(&batch.records)?;
        let window = self.window(&batch.partition);
        for row in 0..batch.records.num_rows() {
            let rejected = !amount.is_null(row) && amount.value(row) < 0;
            if !rejected && !ids.is_null(row) {
                window.check_and_insert(ids.value(row), batch.offsets[row]);
            }
        }
        Ok(())
    }
}

fn upper_case_currency(batch: RecordBatch) -> Result<RecordBatch, LogicError> {
    let Some(index) = batch.schema().index_of("currency").ok() else {
        return Err(LogicError::Column {
            logic: LOGIC,
            column: "currency",
            message: "missing from the batch".into(),
        });
    };
    let currency = string_column(&batch, "currency")?;
    if !currency
        .iter()
        .flatten()
        .any(|c| c.bytes().any(|b| b.is_ascii_lowercase()))
    {
        return Ok(batch);
    }
    let upper: StringArray = currency
        .iter()
        .map(|c| c.map(str::to_ascii_uppercase))
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = Arc::new(upper);
    debug_assert_eq!(columns[index].data_type(), &DataType::Utf8);
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| LogicError::Arrow {
        logic: LOGIC,
        message: format!("rebuilding the batch: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::Int64Array;
    use arrow_schema::{Field, Schema};
    use kappa_core::OffsetRange;
    use proptest::prelude::*;

    use super::*;

    /// (event_id, amount, currency) rows at consecutive offsets from `start`.
    fn batch(start: i64, rows: &[(&str, i64, &str)]) -> SourceBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("amount_cents", DataType::Int64, false),
            Field::new("currency", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ];
        let n = rows.len() as i64;
        SourceBatch {
            partition: TopicPartition::new("orders", 0),
            range: OffsetRange::new(start, start + n),
            records: RecordBatch::try_new(schema, columns).unwrap(),
            offsets: (start..start + n).collect(),
            dead_letters: Vec::new(),
            records_in: n as u64,
        }
    }

    fn ids(batch: &SourceBatch) -> Vec<String> {
        string_column(&batch.records, "event_id")
            .unwrap()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect()
    }

    #[test]
    fn upper_cases_rejects_and_dedups() {
        let mut logic = OrdersLogic::new(100);
        let input = batch(
            10,
            &[
                ("a", 5, "eur"),
                ("b", -3, "USD"),
                ("a", 5, "eur"),
                ("c", 0, "Gbp"),
            ],
        );
        let (out, stats) = logic.apply(input).unwrap();
        out.check().unwrap();
        assert_eq!(ids(&out), ["a", "c"]);
        assert_eq!(out.offsets, [10, 13]);
        let currency = string_column(&out.records, "currency").unwrap();
        assert_eq!(currency.value(0), "EUR");
        assert_eq!(currency.value(1), "GBP");
        assert_eq!(
            stats,
            TransformStats {
                duplicates_dropped: 1,
                rejected: 1
            }
        );
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].offset, 11);
        assert!(out.dead_letters[0].message.contains("negative (-3)"));
        assert_eq!(out.records_in, 4, "records_in is the source's count");
    }

    #[test]
    fn a_rejected_record_does_not_shadow_a_later_valid_one() {
        let mut logic = OrdersLogic::new(100);
        let (out, _) = logic
            .apply(batch(0, &[("a", -1, "EUR"), ("a", 1, "EUR")]))
            .unwrap();
        assert_eq!(ids(&out), ["a"]);
        assert_eq!(out.offsets, [1]);
    }

    #[test]
    fn warm_up_restores_the_window_after_a_restart() {
        let rows = [
            ("a", 1, "EUR"),
            ("b", 1, "EUR"),
            ("a", 1, "EUR"),
            ("c", 1, "EUR"),
            ("b", 1, "EUR"),
        ];
        let mut straight = OrdersLogic::new(3);
        let (all, _) = straight.apply(batch(0, &rows)).unwrap();
        let mut restarted = OrdersLogic::new(3);
        let (before, after) = batch(0, &rows).split_at(3);
        restarted.warm_up(&before).unwrap();
        let (rest, _) = restarted.apply(after).unwrap();
        let tail: Vec<i64> = all.offsets.iter().copied().filter(|o| *o >= 3).collect();
        assert_eq!(rest.offsets, tail);
    }

    #[test]
    fn a_missing_column_is_an_error_naming_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let records = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef],
        )
        .unwrap();
        let input = SourceBatch {
            records,
            ..batch(0, &[("a", 1, "EUR")])
        };
        let err = OrdersLogic::new(10).apply(input).unwrap_err().to_string();
        assert!(err.contains("event_id"), "{err}");
    }

    proptest! {
        /// Output does not depend on how the stream is split into batches, nor on a restart at any
        /// point (with the window re-read for warm-up).
        #[test]
        fn batching_and_restarts_do_not_change_the_output(
            rows in proptest::collection::vec((0u8..12, -2i64..5), 1..80),
            cuts in proptest::collection::vec(0usize..80, 0..5),
            restart in 0usize..80,
        ) {
            let window = 10i64;
            let owned: Vec<(String, i64)> = rows.iter().map(|(id, a)| (format!("id{id}"), *a)).collect();
            let as_rows: Vec<(&str, i64, &str)> = owned.iter().map(|(id, a)| (id.as_str(), *a, "eur")).collect();
            let n = as_rows.len();
            let reference = {
                let mut logic = OrdersLogic::new(window);
                logic.apply(batch(0, &as_rows)).unwrap().0.offsets
            };
            // Split into batches at arbitrary cut points.
            let mut points: Vec<usize> = cuts.into_iter().filter(|c| *c < n).collect();
            points.push(0);
            points.push(n);
            points.sort_unstable();
            points.dedup();
            let mut logic = OrdersLogic::new(window);
            let mut split_out = Vec::new();
            for pair in points.windows(2) {
                let (lo, hi) = (pair[0], pair[1]);
                let (out, _) = logic.apply(batch(lo as i64, &as_rows[lo..hi])).unwrap();
                split_out.extend(out.offsets);
            }
            prop_assert_eq!(&split_out, &reference);
            // Restart at `restart`: warm up on the window before it, process the rest.
            let restart = restart.min(n);
            let from = restart.saturating_sub(window as usize);
            let mut logic = OrdersLogic::new(window);
            logic.warm_up(&batch(from as i64, &as_rows[from..restart])).unwrap();
            let (out, _) = logic.apply(batch(restart as i64, &as_rows[restart..])).unwrap();
            let tail: Vec<i64> = reference.iter().copied().filter(|o| *o >= restart as i64).collect();
            prop_assert_eq!(out.offsets, tail);
        }
    }
}
