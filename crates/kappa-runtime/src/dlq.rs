//! The dead-letter table: `<table>_dlq`, one row per record that did not reach the main table.
//!
//! Columns: `kafka_topic`, `kafka_partition`, `kafka_offset`, `object_key` (archive object, null
//! for live Kafka), `error_kind` (`undecodable` | `unmappable-schema` | `unconvertible` | `rejected` |
//! `rule-violation`), `error_message`,
//! `raw` (the record's bytes as read), `pipeline`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use kappa_core::{DeadLetter, TopicPartition};

use crate::error::RuntimeError;

/// Arrow schema of the dead-letter table, with field ids.
pub fn dlq_schema() -> SchemaRef {
    let fields = [
        ("kafka_topic", DataType::Utf8, false),
        ("kafka_partition", DataType::Int32, false),
        ("kafka_offset", DataType::Int64, false),
        ("object_key", DataType::Utf8, true),
        ("error_kind", DataType::Utf8, false),
        ("error_message", DataType::Utf8, false),
        ("raw", DataType::Binary, true),
        ("pipeline", DataType::Utf8, false),
    ];
    Arc::new(Schema::new(
        fields
            .into_iter()
            .enumerate()
            .map(|(i, (name, ty, nullable))| {
                Field::new(name, ty, nullable).with_metadata(HashMap::from([(
                    kappa_schema::mapping::FIELD_ID_KEY.to_string(),
                    (i + 1).to_string(),
                )]))
            })
            .collect::<Vec<_>>(),
    ))
}

/// Dead letters of one partition as a batch of the DLQ table.
pub(crate) fn dlq_batch(
    pipeline: &str,
    partition: &TopicPartition,
    letters: &[DeadLetter],
) -> Result<RecordBatch, RuntimeError> {
    let n = letters.len();
    let mut topic = StringBuilder::with_capacity(n, n * partition.topic.len());
    let mut part = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut key = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut message = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut pipe = StringBuilder::new();
    for letter in letters {
        topic.append_value(&partition.topic);
        part.append_value(partition.partition);
        offset.append_value(letter.offset);
        key.append_option(letter.object_key.as_deref());
        kind.append_value(letter.kind.as_str());
        message.append_value(&letter.message);
        if letter.raw.is_empty() {
            raw.append_null();
        } else {
            raw.append_value(&letter.raw);
        }
        pipe.append_value(pipeline);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topic.finish()),
        Arc::new(part.finish()),
        Arc::new(offset.finish()),
        Arc::new(key.finish()),
        Arc::new(kind.finish()),
        Arc::new(message.finish()),
        Arc::new(raw.finish()),
        Arc::new(pipe.finish()),
    ];
    RecordBatch::try_new(dlq_schema(), columns)
        .map_err(|e| RuntimeError::Invariant(format!("building a dead-letter batch: {e}")))
}
