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

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_buffer::{ArrowNativeType, Buffer, OffsetBuffer};
use arrow_schema::ArrowError;
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind, Logic, LogicStats, SourceBatch};
use kappa_quality::{
    Band, CompletenessGate, NullRateGate, PartitionGate, Pattern, Policy, QualityConfig,
    QualityError, RecordRule, RuleCheck, TimelinessGate, UniquenessGate,
};

use crate::columns::{self, describe};
use crate::dedup::Dedup;
use crate::error::LogicError;
use crate::registry::{BoxedLogic, LogicDefaults, LogicEntry, LogicSettings};

const LOGIC: &str = "orders";

/// The dedup key and uniqueness-gate column of the `orders` contract.
pub const EVENT_ID: &str = "event_id";

/// The symbols of the `orders` contract's `EventType` enum (`contracts/orders-value`).
pub const EVENT_TYPES: [&str; 4] = ["CREATED", "PAID", "CANCELLED", "DELIVERED"];

/// The registry entry of `orders`: its defaults are the contract's.
///
/// | check | setting | policy |
/// |---|---|---|
/// | dedup | `event_id` within `[dedup] window` offsets | drop |
/// | rule `event_type_allowed` | `event_type` in CREATED, PAID, CANCELLED, DELIVERED | warn |
/// | rule `amount_cents_range` | `amount_cents >= 0` | warn |
/// | rule `currency_pattern` | `currency` matches `^[A-Z]{3}$` | warn |
/// | null rate | `user_id` (at `[quality.gates.null_rate]`'s rate, 0.1%) | block |
/// | uniqueness | `event_id` within a commit | warn |
pub const ENTRY: LogicEntry = LogicEntry {
    name: LOGIC,
    about: "the orders contract: reject negative amounts, upper-case currency, dedup on event_id",
    defaults: LogicDefaults {
        dedup_key: Some(EVENT_ID),
        null_rate_columns: &["user_id"],
        uniqueness_column: Some(EVENT_ID),
        rules,
    },
    options: &[],
    build,
};

fn build(settings: &LogicSettings) -> Result<BoxedLogic, LogicError> {
    Ok(Box::new(OrdersLogic::with_key(
        settings.dedup_key.clone(),
        settings.dedup_window,
    )))
}

/// The record rules of the `orders` contract.
fn rules() -> Result<Vec<RecordRule>, QualityError> {
    Ok(vec![
        RecordRule::new(
            "",
            "event_type",
            RuleCheck::Allowed(EVENT_TYPES.iter().map(|s| s.to_string()).collect()),
            Policy::Warn,
            0.0,
        )?,
        RecordRule::new(
            "",
            "amount_cents",
            RuleCheck::Range {
                min: Some(0.0),
                max: None,
            },
            Policy::Warn,
            0.0,
        )?,
        RecordRule::new(
            "",
            "currency",
            RuleCheck::Pattern(Pattern::new("^[A-Z]{3}$")?),
            Policy::Warn,
            0.0,
        )?,
    ])
}

/// The quality checks of an `orders` pipeline whose config sets none: the entry's defaults with
/// the gates' embedded policies and thresholds (`kappa-config`'s `defaults.toml`, which its tests
/// check this against). For tests and benchmarks that build a pipeline without a config file.
pub fn default_quality(event_time_column: &str) -> Result<QualityConfig, QualityError> {
    Ok(QualityConfig {
        enabled: true,
        rules: rules()?,
        completeness: Some(CompletenessGate {
            policy: Policy::Block,
        }),
        null_rate: Some(NullRateGate::new(
            Policy::Block,
            ENTRY
                .defaults
                .null_rate_columns
                .iter()
                .map(|c| c.to_string())
                .collect(),
            0.001,
        )?),
        uniqueness: Some(UniquenessGate::new(Policy::Warn, EVENT_ID, 0.0)?),
        timeliness: Some(TimelinessGate::new(
            Policy::Warn,
            event_time_column,
            Duration::from_secs(15 * 60),
            0.01,
        )?),
        partition: Some(PartitionGate::new(
            Policy::Warn,
            7,
            7,
            Band::new(0.7, 1.3)?,
        )?),
    })
}

/// The `orders` business logic; its only state is the dedup on `event_id`.
#[derive(Debug, Clone)]
pub struct OrdersLogic {
    dedup: Dedup,
}

impl Default for OrdersLogic {
    fn default() -> Self {
        Self::new(crate::DEFAULT_DEDUP_WINDOW)
    }
}

impl OrdersLogic {
    /// Orders logic deduplicating `event_id` within `window` offsets per partition.
    pub fn new(window: i64) -> Self {
        Self::with_key(Some(EVENT_ID.to_string()), window)
    }

    /// Orders logic deduplicating on `key` (`[dedup] key`; `None`: no dedup).
    pub fn with_key(key: Option<String>, window: i64) -> Self {
        Self {
            dedup: Dedup::new(key, window),
        }
    }

    /// The dedup window in offsets.
    pub fn dedup_window(&self) -> i64 {
        self.dedup.window()
    }
}

/// The columns the rules read, checked before anything changes.
struct Columns<'a> {
    amount_cents: &'a Int64Array,
    currency_index: usize,
    currency: &'a StringArray,
}

fn columns(batch: &SourceBatch) -> Result<Columns<'_>, LogicError> {
    columns::check_offsets(LOGIC, batch)?;
    let amount_cents = columns::int64(LOGIC, batch, "amount_cents")?;
    let (currency_index, currency) = columns::utf8(LOGIC, batch, "currency")?;
    Ok(Columns {
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
/// ASCII upper-casing keeps every value's length and UTF-8, so the values' bytes are upper-cased
/// in one pass and the offsets and nulls are kept: no string per row.
fn upper_case(currency: &StringArray) -> Result<Option<StringArray>, ArrowError> {
    let offsets = currency.offsets();
    let (start, end) = (offsets[0].as_usize(), offsets[offsets.len() - 1].as_usize());
    let values = &currency.values()[start..end];
    if !values.iter().any(u8::is_ascii_lowercase) {
        return Ok(None);
    }
    let upper = Buffer::from_vec(values.to_ascii_uppercase());
    let offsets = if start == 0 {
        offsets.clone()
    } else {
        let first = offsets[0];
        OffsetBuffer::new(offsets.iter().map(|o| o - first).collect())
    };
    StringArray::try_new(offsets, upper, currency.nulls().cloned()).map(Some)
}

impl Logic for OrdersLogic {
    type Error = LogicError;

    fn name(&self) -> &'static str {
        LOGIC
    }

    fn apply(&mut self, batch: SourceBatch) -> Result<(SourceBatch, LogicStats), LogicError> {
        let cols = columns(&batch)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut rejected = Vec::new();
        for (row, &offset) in batch.offsets.iter().enumerate() {
            match negative(cols.amount_cents, row) {
                Some(amount) => {
                    rejected.push(DeadLetter {
                        offset,
                        raw: Bytes::new(),
                        object_key: None,
                        kind: DeadLetterKind::Rejected,
                        message: format!("amount_cents is negative ({amount})"),
                    });
                    keep.push(false);
                }
                None => keep.push(true),
            }
        }
        let stats = LogicStats {
            duplicates_dropped: self.dedup.mark(LOGIC, &batch, &mut keep)?,
            rejected: rejected.len() as u64,
        };
        let mut records = batch.records.clone();
        let upper = upper_case(cols.currency).map_err(|e| LogicError::Arrow {
            logic: LOGIC,
            batch: describe(&batch),
            operation: "upper-casing the currency column",
            message: e.to_string(),
        })?;
        if let Some(upper) = upper {
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
        Ok((
            columns::retain(LOGIC, batch, records, &keep, rejected)?,
            stats,
        ))
    }

    fn warm_up(&mut self, batch: &SourceBatch) -> Result<(), LogicError> {
        let cols = columns(batch)?;
        self.dedup.warm_up(LOGIC, batch, |row| {
            negative(cols.amount_cents, row).is_none()
        })
    }

    fn reset(&mut self) {
        self.dedup.reset();
    }
}

#[cfg(test)]
mod tests;
