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

fn column<'a>(
    logic: &'static str,
    batch: &'a SourceBatch,
    name: &'static str,
) -> Result<(usize, &'a dyn Array), LogicError> {
    let schema = batch.records.schema_ref();
    let index = schema.index_of(name).map_err(|_| LogicError::Column {
        logic,
        batch: describe(batch),
        column: name,
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
    name: &'static str,
) -> Result<(usize, &'a StringArray), LogicError> {
    let (index, array) = column(logic, batch, name)?;
    let strings = array
        .as_string_opt::<i32>()
        .ok_or_else(|| LogicError::Column {
            logic,
            batch: describe(batch),
            column: name,
            message: format!("expected Utf8, found {}", array.data_type()),
        })?;
    Ok((index, strings))
}

/// The `Int64` column `name`.
pub(crate) fn int64<'a>(
    logic: &'static str,
    batch: &'a SourceBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<Int64Type>, LogicError> {
    let (_, array) = column(logic, batch, name)?;
    array
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| LogicError::Column {
            logic,
            batch: describe(batch),
            column: name,
            message: format!("expected Int64, found {}", array.data_type()),
        })
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
