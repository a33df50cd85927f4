//! Finding the columns a logic needs, by name, with errors that name the column and the batch.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, PrimitiveArray, RecordBatch, StringArray};
use kappa_core::SourceBatch;

use crate::error::LogicError;

/// Names a batch in errors: `orders-0 [10, 20)`.
pub(crate) fn describe(batch: &SourceBatch) -> String {
    format!("{} {}", batch.partition, batch.range)
}

pub(crate) fn column<'a>(
    logic: &'static str,
    batch: &'a SourceBatch,
    name: &str,
) -> Result<(usize, &'a dyn Array), LogicError> {
    let schema = batch.records.schema_ref();
    let index = schema.index_of(name).map_err(|_| LogicError::Column {
        logic,
        batch: describe(batch),
        column: name.to_string(),
        message: format!(
            "missing from the batch (columns: {})",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    Ok((index, batch.records.column(index).as_ref()))
}

/// The `Utf8` column `name` and its index.
pub(crate) fn utf8<'a>(
    logic: &'static str,
    batch: &'a SourceBatch,
    name: &str,
) -> Result<(usize, &'a StringArray), LogicError> {
    let (index, array) = column(logic, batch, name)?;
    let strings = array
        .as_string_opt::<i32>()
        .ok_or_else(|| LogicError::Column {
            logic,
            batch: describe(batch),
            column: name.to_string(),
            message: format!("expected Utf8, found {}", array.data_type()),
        })?;
    Ok((index, strings))
}

/// The `Int64` column `name`.
pub(crate) fn int64<'a>(
    logic: &'static str,
    batch: &'a SourceBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<Int64Type>, LogicError> {
    let (_, array) = column(logic, batch, name)?;
    array
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| LogicError::Column {
            logic,
            batch: describe(batch),
            column: name.to_string(),
            message: format!("expected Int64, found {}", array.data_type()),
        })
}

/// Checks that the batch has one offset per row (a source bug otherwise).
pub(crate) fn check_offsets(logic: &'static str, batch: &SourceBatch) -> Result<(), LogicError> {
    if batch.offsets.len() == batch.records.num_rows() {
        return Ok(());
    }
    Err(LogicError::Invariant {
        logic,
        batch: describe(batch),
        message: format!(
            "{} offsets for {} rows",
            batch.offsets.len(),
            batch.records.num_rows()
        ),
    })
}

/// The batch with only the rows where `keep` is true (records and offsets alike, `records`
/// replacing the batch's own), and `rejected` added to its dead letters in offset order.
pub(crate) fn retain(
    logic: &'static str,
    mut batch: SourceBatch,
    records: RecordBatch,
    keep: &[bool],
    rejected: Vec<kappa_core::DeadLetter>,
) -> Result<SourceBatch, LogicError> {
    let dropped = keep.iter().any(|k| !k);
    let mask = dropped.then(|| arrow_array::BooleanArray::from(keep.to_vec()));
    batch.records = filter(logic, &batch, &records, mask.as_ref())?;
    if dropped {
        batch.offsets = batch
            .offsets
            .iter()
            .zip(keep)
            .filter_map(|(offset, keep)| keep.then_some(*offset))
            .collect();
    }
    if !rejected.is_empty() {
        let sorted = batch.dead_letters.is_empty();
        batch.dead_letters.extend(rejected);
        if !sorted {
            batch.dead_letters.sort_by_key(|d| d.offset);
        }
    }
    Ok(batch)
}

/// Keeps the rows where `keep` is true (`None`: all rows are kept, nothing to copy).
pub(crate) fn filter(
    logic: &'static str,
    batch: &SourceBatch,
    records: &RecordBatch,
    keep: Option<&arrow_array::BooleanArray>,
) -> Result<RecordBatch, LogicError> {
    match keep {
        None => Ok(records.clone()),
        Some(mask) => arrow_select::filter::filter_record_batch(records, mask).map_err(|e| {
            LogicError::Arrow {
                logic,
                batch: describe(batch),
                operation: "filtering rows",
                message: e.to_string(),
            }
        }),
    }
}
