//! The Kafka metadata columns (`[table] kafka_metadata`) of decoded rows: built by the source
//! from what it knows of each record, in the table's exact Arrow types.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, ListArray, StructArray, TimestampMicrosecondArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field};
use kappa_core::KafkaMetadata;

/// A record's Kafka headers in order: each key with its value (`None`: a header without value).
pub type KafkaHeaders = [(String, Option<Vec<u8>>)];

/// What a source knows of one record besides its value. A source that does not know an
/// attribute (an archive shape without keys) leaves it `None`: the column is NULL.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaRecordMetadata<'a> {
    /// The key bytes (`None`: no key, or unknown).
    pub key: Option<&'a [u8]>,
    /// The record timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The headers in order, each key with its value (`None`: a header without value); the
    /// whole list `None` when unknown.
    pub headers: Option<&'a KafkaHeaders>,
}

/// Accumulates the metadata columns of a batch.
pub(crate) struct MetadataBuilder {
    keys: BinaryBuilder,
    timestamps: Vec<Option<i64>>,
    header_offsets: Vec<i32>,
    header_valid: Vec<bool>,
    header_keys: StringBuilder,
    header_values: BinaryBuilder,
}

impl MetadataBuilder {
    pub(crate) fn new(rows: usize) -> Self {
        let mut header_offsets = Vec::with_capacity(rows + 1);
        header_offsets.push(0);
        Self {
            keys: BinaryBuilder::with_capacity(rows, 0),
            timestamps: Vec::with_capacity(rows),
            header_offsets,
            header_valid: Vec::with_capacity(rows),
            header_keys: StringBuilder::new(),
            header_values: BinaryBuilder::new(),
        }
    }

    pub(crate) fn push(&mut self, row: &KafkaRecordMetadata<'_>) {
        self.keys.append_option(row.key);
        // Milliseconds never overflow microseconds in an i64 for dates Kafka can hold; a
        // timestamp that would is unknown rather than wrong.
        self.timestamps
            .push(row.timestamp_ms.and_then(|ms| ms.checked_mul(1_000)));
        let headers = row.headers.unwrap_or_default();
        for (key, value) in headers {
            self.header_keys.append_value(key);
            self.header_values.append_option(value.as_deref());
        }
        let last = self.header_offsets.last().copied().unwrap_or(0);
        self.header_offsets.push(last + headers.len() as i32);
        self.header_valid.push(row.headers.is_some());
    }

    /// The column of `attribute`, typed as `field` (the value schema's, with its field ids).
    pub(crate) fn finish(
        &mut self,
        attribute: KafkaMetadata,
        field: &Field,
    ) -> Result<ArrayRef, arrow_schema::ArrowError> {
        Ok(match attribute {
            KafkaMetadata::Key => Arc::new(self.keys.finish()),
            KafkaMetadata::Timestamp => {
                let timezone = match field.data_type() {
                    DataType::Timestamp(_, timezone) => timezone.clone(),
                    _ => None,
                };
                Arc::new(
                    TimestampMicrosecondArray::from(std::mem::take(&mut self.timestamps))
                        .with_timezone_opt(timezone),
                )
            }
            KafkaMetadata::Headers => {
                let DataType::List(element) = field.data_type() else {
                    return Err(arrow_schema::ArrowError::SchemaError(format!(
                        "the headers column is {}, not a list",
                        field.data_type()
                    )));
                };
                let DataType::Struct(fields) = element.data_type() else {
                    return Err(arrow_schema::ArrowError::SchemaError(format!(
                        "the headers' element is {}, not a struct",
                        element.data_type()
                    )));
                };
                let keys: ArrayRef = Arc::new(self.header_keys.finish());
                let values: ArrayRef = Arc::new(self.header_values.finish());
                let entries = StructArray::try_new(fields.clone(), vec![keys, values], None)?;
                let offsets = OffsetBuffer::new(std::mem::take(&mut self.header_offsets).into());
                let valid = NullBuffer::from(std::mem::take(&mut self.header_valid));
                Arc::new(ListArray::try_new(
                    element.clone(),
                    offsets,
                    Arc::new(entries),
                    Some(valid),
                )?)
            }
        })
    }
}
