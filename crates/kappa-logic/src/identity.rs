//! The `identity` logic: the subject's records as they are, for any topic, with no code.
//!
//! Each row passes through untouched, except that with `[dedup] key = "<column>"` a row whose key
//! already occurred in the same topic-partition within the previous `[dedup] window` offsets is
//! dropped and counted (the rule of [`crate::DedupWindow`]; a NULL key is never a duplicate).
//! Without a key nothing is dropped. Event time comes from `[event_time] column`, as for every
//! logic; there are no default record rules and no default gate columns: the gates check only the
//! columns the config names. Record rules (`[[quality.rules]]`) then say what a valid record is.

use kappa_core::{Logic, LogicStats, SourceBatch};

use crate::columns;
use crate::dedup::Dedup;
use crate::error::LogicError;
use crate::registry::{BoxedLogic, LogicDefaults, LogicEntry, LogicSettings};

const LOGIC: &str = "identity";

/// The registry entry of `identity`.
pub const ENTRY: LogicEntry = LogicEntry {
    name: LOGIC,
    about: "the subject's records as they are; dedup on [dedup] key when set",
    defaults: LogicDefaults::NONE,
    options: &[],
    build,
};

fn build(settings: &LogicSettings) -> Result<BoxedLogic, LogicError> {
    Ok(Box::new(IdentityLogic::new(
        settings.dedup_key.clone(),
        settings.dedup_window,
    )))
}

/// Records as they are, deduplicated on an optional key column.
#[derive(Debug, Clone)]
pub struct IdentityLogic {
    dedup: Dedup,
}

impl IdentityLogic {
    /// Identity with dedup on `key` within `window` offsets (`None`: no dedup).
    pub fn new(key: Option<String>, window: i64) -> Self {
        Self {
            dedup: Dedup::new(key, window),
        }
    }
}

impl Logic for IdentityLogic {
    type Error = LogicError;

    fn name(&self) -> &'static str {
        LOGIC
    }

    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), LogicError> {
        columns::check_offsets(LOGIC, &batch)?;
        let mut keep = vec![true; batch.num_rows()];
        let duplicates = self.dedup.mark(LOGIC, &batch, &mut keep)?;
        let stats = LogicStats {
            duplicates_dropped: duplicates,
            rejected: 0,
        };
        if duplicates == 0 {
            return Ok((batch, stats));
        }
        let records = batch.records.clone();
        Ok((
            columns::retain(LOGIC, batch, records, &keep, Vec::new())?,
            stats,
        ))
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), LogicError> {
        columns::check_offsets(LOGIC, batch)?;
        self.dedup.warm_up(LOGIC, batch, |_| true)
    }

    fn reset(&mut self) {
        self.dedup.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use kappa_core::{Classify, ErrorKind, OffsetRange, TopicPartition};

    use super::*;

    /// Rows (payment_id, amount) at offsets `start..`.
    fn batch(partition: i32, start: i64, rows: &[(Option<i64>, f64)]) -> SourceBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("payment_id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, false),
        ]));
        let ids: Int64Array = rows.iter().map(|r| r.0).collect();
        let amounts: Float64Array = rows.iter().map(|r| Some(r.1)).collect();
        let records = RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(amounts)]).unwrap();
        let end = start + rows.len() as i64;
        SourceBatch {
            partition: TopicPartition::new("payments", partition),
            range: OffsetRange { start, end },
            records,
            offsets: (start..end).collect(),
            dead_letters: Vec::new(),
            records_in: rows.len() as u64,
        }
    }

    fn ids(batch: &SourceBatch) -> Vec<Option<i64>> {
        let column = batch.records.column(0);
        let ids = column.as_any().downcast_ref::<Int64Array>().unwrap();
        ids.iter().collect()
    }

    #[test]
    fn without_a_key_every_row_passes_untouched() {
        let mut logic = IdentityLogic::new(None, 100);
        let input = batch(0, 0, &[(Some(1), 1.0), (Some(1), 1.0), (None, 2.5)]);
        let records = input.records.clone();
        let (out, stats) = logic.apply(input).unwrap();
        assert_eq!(out.records, records);
        assert_eq!(out.offsets, [0, 1, 2]);
        assert_eq!(stats, LogicStats::default());
    }

    #[test]
    fn a_numeric_key_drops_repeats_within_the_window_per_partition_and_never_nulls() {
        let mut logic = IdentityLogic::new(Some("payment_id".into()), 3);
        let rows = [
            (Some(7), 1.0),
            (None, 2.0),
            (Some(7), 3.0),
            (None, 4.0),
            (Some(8), 5.0),
        ];
        let (out, stats) = logic.apply(batch(0, 0, &rows)).unwrap();
        assert_eq!(ids(&out), [Some(7), None, None, Some(8)]);
        assert_eq!(out.offsets, [0, 1, 3, 4]);
        assert_eq!(stats.duplicates_dropped, 1);
        // Another partition has its own window; offset 10 is past the window of offset 2.
        let (out, _) = logic.apply(batch(1, 0, &[(Some(7), 1.0)])).unwrap();
        assert_eq!(ids(&out), [Some(7)]);
        let (out, _) = logic.apply(batch(0, 10, &[(Some(7), 1.0)])).unwrap();
        assert_eq!(ids(&out), [Some(7)]);
    }

    #[test]
    fn warm_up_restores_the_window() {
        let mut logic = IdentityLogic::new(Some("payment_id".into()), 100);
        logic.warm_up(&batch(0, 0, &[(Some(1), 1.0)])).unwrap();
        let (out, stats) = logic
            .apply(batch(0, 1, &[(Some(1), 1.0), (Some(2), 1.0)]))
            .unwrap();
        assert_eq!(ids(&out), [Some(2)]);
        assert_eq!(stats.duplicates_dropped, 1);
        logic.reset();
        let (out, _) = logic.apply(batch(0, 2, &[(Some(1), 1.0)])).unwrap();
        assert_eq!(ids(&out), [Some(1)]);
    }

    #[test]
    fn a_key_that_is_missing_or_cannot_be_compared_is_an_error_naming_it() {
        let mut logic = IdentityLogic::new(Some("paymentid".into()), 100);
        let err = logic.apply(batch(0, 0, &[(Some(1), 1.0)])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User);
        assert!(
            err.to_string().contains(
                "column \"paymentid\": missing from the batch (columns: payment_id, amount)"
            ),
            "{err}"
        );
        let mut logic = IdentityLogic::new(Some("amount".into()), 100);
        let err = logic.apply(batch(0, 0, &[(Some(1), 1.0)])).unwrap_err();
        assert!(
            err.to_string()
                .contains("column \"amount\": a dedup key must be a string, bytes"),
            "{err}"
        );
        assert!(err.to_string().ends_with("this one is Float64"), "{err}");
    }
}
