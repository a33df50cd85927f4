//! Avro → Arrow → Iceberg mapping.
//!
//! The table's Arrow schema uses only types every Iceberg reader understands:
//!
//! | Avro | Arrow (table) | Iceberg |
//! |---|---|---|
//! | `["null", T]` | nullable T | optional T |
//! | `boolean`, `int`, `long`, `float`, `double` | same | same |
//! | `string`, `enum`, `string`+`uuid` | `Utf8` | `string` |
//! | `bytes` | `Binary` | `binary` |
//! | `int`+`date` | `Date32` | `date` |
//! | `long`+`timestamp-millis` / `timestamp-micros` | `Timestamp(µs, UTC)` | `timestamptz` |
//! | `long`+`local-timestamp-millis` / `-micros` | `Timestamp(µs)` | `timestamp` |
//!
//! Field ids are deterministic: the value fields in schema order get 1..n, then the Kafka
//! coordinate columns. The same schema always yields the same table, whichever path (live or
//! replay) creates it.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kappa_core::{OFFSET_COLUMN, PARTITION_COLUMN};

use crate::error::SchemaError;

/// Arrow field metadata key carrying the Iceberg field id (understood by iceberg-rust and Parquet).
pub const FIELD_ID_KEY: &str = "PARQUET:field_id";

/// The UTC timezone string used for `timestamptz` columns.
pub const UTC: &str = "+00:00";

/// How one Avro value schema maps onto the table.
#[derive(Debug, Clone)]
pub struct TableMapping {
    reader_json: String,
    /// Arrow schema of the value columns, as [`TableMapping::normalize`] produces them.
    values: SchemaRef,
    /// Arrow schema of the table: value columns + Kafka coordinates, with field ids.
    table: SchemaRef,
}

impl TableMapping {
    /// Maps a record schema (the reader schema: the table's current contract version).
    pub fn from_avro_json(json: &str) -> Result<Self, SchemaError> {
        let schema = AvroSchema::parse_str(json).map_err(|e| SchemaError::Unsupported {
            path: "<root>".into(),
            message: format!("not a valid Avro schema: {e}"),
        })?;
        let AvroSchema::Record(record) = &schema else {
            return Err(SchemaError::Unsupported {
                path: "<root>".into(),
                message: "the value schema must be an Avro record".into(),
            });
        };
        let mut value_fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let (data_type, nullable) = map_type(&field.name, &field.schema)?;
            value_fields.push(Field::new(&field.name, data_type, nullable));
        }
        let mut table_fields: Vec<Field> = value_fields.clone();
        table_fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
        table_fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
        let with_ids = |fields: Vec<Field>| -> Vec<Field> {
            fields
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    f.with_metadata(HashMap::from([(
                        FIELD_ID_KEY.to_string(),
                        (i + 1).to_string(),
                    )]))
                })
                .collect()
        };
        Ok(Self {
            reader_json: json.to_string(),
            values: Arc::new(Schema::new(with_ids(value_fields))),
            table: Arc::new(Schema::new(with_ids(table_fields))),
        })
    }

    /// The reader schema text, for arrow-avro.
    pub fn reader_json(&self) -> &str {
        &self.reader_json
    }

    /// Arrow schema of the decoded value columns.
    pub fn value_schema(&self) -> &SchemaRef {
        &self.values
    }

    /// Arrow schema of the table (value columns + Kafka coordinates), with field ids.
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table
    }

    /// The Iceberg schema of the table.
    pub fn iceberg_schema(&self) -> Result<iceberg::spec::Schema, SchemaError> {
        iceberg::arrow::arrow_schema_to_schema(&self.table).map_err(|e| SchemaError::Unsupported {
            path: "<root>".into(),
            message: format!("no Iceberg schema for the table: {e}"),
        })
    }

    /// Converts a batch decoded by arrow-avro into the value schema: uuid bytes to strings, enum
    /// dictionaries to strings, millisecond timestamps to microseconds; optional columns the
    /// batch lacks (an older writer schema) become NULL.
    pub fn normalize(&self, batch: RecordBatch) -> Result<RecordBatch, SchemaError> {
        let mut columns = Vec::with_capacity(self.values.fields().len());
        for target in self.values.fields() {
            let Some(column) = batch.column_by_name(target.name()) else {
                // A field the writer's schema does not have: optional fields read as NULL (their
                // default), required ones are an error.
                if target.is_nullable() {
                    columns.push(arrow_array::new_null_array(
                        target.data_type(),
                        batch.num_rows(),
                    ));
                    continue;
                }
                return Err(SchemaError::Normalize {
                    column: target.name().clone(),
                    from: "<missing>".into(),
                    to: target.data_type().to_string(),
                    message: "the record has no such field and the column is required".into(),
                });
            };
            columns.push(convert(target, column)?);
        }
        let rows = batch.num_rows();
        RecordBatch::try_new_with_options(
            self.values.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| SchemaError::Normalize {
            column: "<batch>".into(),
            from: batch.schema().to_string(),
            to: self.values.to_string(),
            message: e.to_string(),
        })
    }
}

fn convert(target: &Field, column: &ArrayRef) -> Result<ArrayRef, SchemaError> {
    if column.data_type() == target.data_type() {
        return Ok(column.clone());
    }
    let err = |message: String| SchemaError::Normalize {
        column: target.name().clone(),
        from: column.data_type().to_string(),
        to: target.data_type().to_string(),
        message,
    };
    match (column.data_type(), target.data_type()) {
        (DataType::FixedSizeBinary(16), DataType::Utf8) => {
            let bytes = column.as_fixed_size_binary();
            let strings: StringArray = (0..bytes.len())
                .map(|i| {
                    (!bytes.is_null(i)).then(|| {
                        let mut raw = [0u8; 16];
                        raw.copy_from_slice(bytes.value(i));
                        format_uuid(&raw)
                    })
                })
                .collect();
            Ok(Arc::new(strings))
        }
        _ => arrow_cast::cast(column, target.data_type()).map_err(|e| err(e.to_string())),
    }
}

/// Formats 16 bytes as a lower-case hyphenated UUID.
fn format_uuid(raw: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in raw.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0xf) as usize] as char);
    }
    out
}

fn map_type(path: &str, schema: &AvroSchema) -> Result<(DataType, bool), SchemaError> {
    let unsupported = |what: &str| SchemaError::Unsupported {
        path: path.to_string(),
        message: format!("Avro type {what} has no table mapping yet"),
    };
    let ts = |tz: bool| DataType::Timestamp(TimeUnit::Microsecond, tz.then(|| UTC.into()));
    let data_type = match schema {
        AvroSchema::Union(union) => {
            let variants = union.variants();
            let non_null: Vec<&AvroSchema> = variants
                .iter()
                .filter(|s| !matches!(s, AvroSchema::Null))
                .collect();
            return match (non_null.as_slice(), variants.len()) {
                ([inner], 2) => Ok((map_type(path, inner)?.0, true)),
                _ => Err(unsupported(
                    "union other than [\"null\", T] (general unions come with schema evolution)",
                )),
            };
        }
        AvroSchema::Boolean => DataType::Boolean,
        AvroSchema::Int => DataType::Int32,
        AvroSchema::Long => DataType::Int64,
        AvroSchema::Float => DataType::Float32,
        AvroSchema::Double => DataType::Float64,
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid => DataType::Utf8,
        AvroSchema::Bytes => DataType::Binary,
        AvroSchema::Date => DataType::Date32,
        AvroSchema::TimestampMillis | AvroSchema::TimestampMicros => ts(true),
        AvroSchema::LocalTimestampMillis | AvroSchema::LocalTimestampMicros => ts(false),
        AvroSchema::Null => return Err(unsupported("null")),
        AvroSchema::Array(_) => return Err(unsupported("array")),
        AvroSchema::Map(_) => return Err(unsupported("map")),
        AvroSchema::Record(_) => return Err(unsupported("record (nested)")),
        AvroSchema::Fixed(_) => return Err(unsupported("fixed")),
        AvroSchema::Decimal(_) | AvroSchema::BigDecimal => return Err(unsupported("decimal")),
        AvroSchema::TimeMillis | AvroSchema::TimeMicros => return Err(unsupported("time")),
        AvroSchema::TimestampNanos | AvroSchema::LocalTimestampNanos => {
            return Err(unsupported("timestamp-nanos"));
        }
        AvroSchema::Duration => return Err(unsupported("duration")),
        AvroSchema::Ref { name } => return Err(unsupported(&format!("reference {}", name.name))),
    };
    Ok((data_type, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");

    #[test]
    fn orders_v1_maps_to_iceberg_friendly_types() {
        let m = TableMapping::from_avro_json(V1).unwrap();
        let t = m.table_schema();
        let ty = |n: &str| t.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(ty("event_id"), DataType::Utf8);
        assert_eq!(ty("event_type"), DataType::Utf8);
        assert_eq!(
            ty("event_time"),
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        assert!(t.field_with_name("user_id").unwrap().is_nullable());
        assert!(!t.field_with_name("amount_cents").unwrap().is_nullable());
        assert_eq!(t.fields().len(), 10);
        let iceberg = m.iceberg_schema().unwrap();
        assert_eq!(iceberg.field_by_name("event_id").unwrap().id, 1);
        assert_eq!(iceberg.field_by_name(OFFSET_COLUMN).unwrap().id, 10);
    }

    #[test]
    fn uuid_bytes_format_canonically() {
        let raw = [
            0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ];
        assert_eq!(format_uuid(&raw), "550e8400-e29b-41d4-a716-446655440000");
    }

    #[test]
    fn unsupported_types_name_the_field() {
        let json = r#"{"type":"record","name":"r","fields":[{"name":"tags","type":{"type":"array","items":"string"}}]}"#;
        let err = TableMapping::from_avro_json(json).unwrap_err().to_string();
        assert!(err.contains("tags") && err.contains("array"), "{err}");
    }
}
