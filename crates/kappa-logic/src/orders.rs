//! The `orders` domain, applied to every row in offset order:
//!
//! 1. `amount_cents < 0` → the row leaves `records` and becomes a [`DeadLetter`] of kind
//!    [`DeadLetterKind::Rejected`] with the message `amount_cents is negative (-123)`. A rejected
//!    row does **not** register its `event_id` in the dedup window: a later valid record with the
//!    same id is the event, not a duplicate of a record that never reached the table. (A retry
//!    of a rejected record is rejected again: one dead letter per copy.)
//! 2. `event_id` already seen in the same topic-partition within the previous `window` offsets
//!    (see [`crate::DedupWindow`]) → the row is dropped and only counted
//!    ([`LogicStats::duplicates_dropped`]). A NULL `event_id` (the contract forbids it) is
//!    never a duplicate.
//! 3. `currency` is upper-cased (ASCII only; NULL stays NULL).
//!
//! Other columns pass through untouched; `offsets` stay aligned with `records`; `range` and
//! `records_in` are the source's. Required columns, found by name: `event_id` (Utf8),
//! `amount_cents` (Int64), `currency` (Utf8). A missing one is an error naming it, raised before
//! any state changes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind, Logic, LogicStats, SourceBatch, TopicPartition};

use crate::columns::{self, describe};
use crate::dedup::DedupWindow;
use crate::error::LogicError;

const LOGIC: &str = "orders";

/// The `orders` business logic; its only state is one dedup window per topic-partition.
#[derive(Debug, Clone)]
pub struct OrdersLogic {
    window: i64,
    windows: HashMap<TopicPartition, DedupWindow>,
}

impl Default for OrdersLogic {
    fn default() -> Self {
        Self::new(crate::DEFAULT_DEDUP_WINDOW)
    }
}

impl OrdersLogic {
    /// Orders logic with a dedup window of `window` offsets per partition.
    pub fn new(window: i64) -> Self {
        Self {
            window: window.max(0),
            windows: HashMap::new(),
        }
    }

    /// The dedup window in offsets.
    pub fn dedup_window(&self) -> i64 {
        self.window
    }

    fn window(&mut self, tp: &TopicPartition) -> &mut DedupWindow {
        let size = self.window;
        self.windows
            .entry(tp.clone())
            .or_insert_with(|| DedupWindow::new(size))
    }
}

/// The columns the rules read, checked before anything changes.
struct Columns<'a> {
    event_id: &'a StringArray,
    amount_cents: &'a Int64Array,
    currency_index: usize,
    currency: &'a StringArray,
}

fn columns(batch: &SourceBatch) -> Result<Columns<'_>, LogicError> {
    if batch.offsets.len() != batch.records.num_rows() {
        return Err(LogicError::Invariant {
            logic: LOGIC,
            batch: describe(batch),
            message: format!(
                "{} offsets for {} rows",
                batch.offsets.len(),
                batch.records.num_rows()
            ),
        });
    }
    let (_, event_id) = columns::utf8(LOGIC, batch, "event_id")?;
    let amount_cents = columns::int64(LOGIC, batch, "amount_cents")?;
    let (currency_index, currency) = columns::utf8(LOGIC, batch, "currency")?;
    Ok(Columns {
        event_id,
        amount_cents,
        currency_index,
        currency,
    })
}

/// The negative amount of `row`, if it has one.
fn negative(amount_cents: &Int64Array, row: usize) -> Option<i64> {
    (!amount_cents.is_null(row) && amount_cents.value(row) < 0).then(|| amount_cents.value(row))
}

/// `currency` upper-cased, or `None` when it has no lower-case ASCII letter (no copy then).
fn upper_case(currency: &StringArray) -> Option<StringArray> {
    let lower = currency
        .iter()
        .flatten()
        .any(|c| c.bytes().any(|b| b.is_ascii_lowercase()));
    lower.then(|| {
        currency
            .iter()
            .map(|c| c.map(str::to_ascii_uppercase))
            .collect()
    })
}

impl Logic for OrdersLogic {
    type Error = LogicError;

    fn name(&self) -> &'static str {
        "orders"
    }

    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), LogicError> {
        let cols = columns(&batch)?;
        let rows = batch.records.num_rows();
        let mut stats = LogicStats::default();
        let mut keep = Vec::with_capacity(rows);
        let mut rejected = Vec::new();
        let window = self.window(&batch.partition);
        for (row, &offset) in batch.offsets.iter().enumerate() {
            if let Some(amount) = negative(cols.amount_cents, row) {
                rejected.push(DeadLetter {
                    offset,
                    raw: Bytes::new(),
                    object_key: None,
                    kind: DeadLetterKind::Rejected,
                    message: format!("amount_cents is negative ({amount})"),
                });
                keep.push(false);
            } else if !cols.event_id.is_null(row)
                && window.check_and_insert(cols.event_id.value(row), offset)
            {
                stats.duplicates_dropped += 1;
                keep.push(false);
            } else {
                keep.push(true);
            }
        }
        stats.rejected = rejected.len() as u64;
        let mut records = batch.records.clone();
        if let Some(upper) = upper_case(cols.currency) {
            let mut arrays: Vec<ArrayRef> = records.columns().to_vec();
            arrays[cols.currency_index] = Arc::new(upper);
            records =
                RecordBatch::try_new(records.schema(), arrays).map_err(|e| LogicError::Arrow {
                    logic: LOGIC,
                    batch: describe(&batch),
                    operation: "replacing the currency column",
                    message: e.to_string(),
                })?;
        }
        let dropped = keep.iter().any(|k| !k);
        let mask = dropped.then(|| BooleanArray::from(keep.clone()));
        let records = columns::filter(LOGIC, &batch, &records, mask.as_ref())?;
        let mut batch = batch;
        if dropped {
            batch.offsets = batch
                .offsets
                .iter()
                .zip(&keep)
                .filter_map(|(offset, keep)| keep.then_some(*offset))
                .collect();
        }
        batch.records = records;
        if !rejected.is_empty() {
            let sorted = batch.dead_letters.is_empty();
            batch.dead_letters.extend(rejected);
            if !sorted {
                batch.dead_letters.sort_by_key(|d| d.offset);
            }
        }
        Ok((batch, stats))
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), LogicError> {
        let cols = columns(batch)?;
        let window = self.window(&batch.partition);
        for (row, &offset) in batch.offsets.iter().enumerate() {
            if negative(cols.amount_cents, row).is_none() && !cols.event_id.is_null(row) {
                window.check_and_insert(cols.event_id.value(row), offset);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests;
