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
//! Field ids are a pure function of the subject's history ([`TableMapping::from_history`]): the
//! first version's fields get 1..n in schema order, the Kafka coordinate columns n+1 and n+2,
//! then each later version's new fields the next ids in order. So a table created from the
//! newest version and a table created from version 1 and evolved version by version have the
//! same columns with the same ids, whichever path (live or replay) created them. Columns keep
//! that order; a field added after version 1 is optional (older rows lack it), and so is a field a
//! later version dropped (newer rows lack it). The reader schema is the newest version.

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
    /// The reader schema, parsed (for the compatibility check of writer schemas).
    reader: AvroSchema,
    /// Arrow schema of the value columns, as [`TableMapping::normalize`] produces them.
    values: SchemaRef,
    /// Arrow schema of the table: value columns + Kafka coordinates, with field ids.
    table: SchemaRef,
    /// Versions of the subject's history this mapping was derived from.
    versions: usize,
}

impl TableMapping {
    /// Maps a single record schema (a subject with one version).
    pub fn from_avro_json(json: &str) -> Result<Self, SchemaError> {
        Self::from_history(&[json])
    }

    /// Maps a subject's versions, oldest first (see the module docs for the ids); the newest is
    /// the reader schema. A field whose type changes between versions must widen as Iceberg
    /// allows (`int` → `long`, `float` → `double`); anything else is an error naming the field.
    pub fn from_history(versions: &[&str]) -> Result<Self, SchemaError> {
        let Some(newest) = versions.last() else {
            return Err(SchemaError::Unsupported {
                path: "<root>".into(),
                message: "the subject has no schema version".into(),
            });
        };
        let mut columns: Vec<Field> = Vec::new();
        let mut newest_names: Vec<String> = Vec::new();
        let mut reader = None;
        for (index, json) in versions.iter().enumerate() {
            let record = parse_record(json)?;
            newest_names.clear();
            for field in &record.fields {
                let (data_type, nullable) = map_type(&field.name, &field.schema)?;
                newest_names.push(field.name.clone());
                match columns.iter_mut().find(|c| c.name() == &field.name) {
                    Some(column) => {
                        let widened = widen(column.data_type(), &data_type).ok_or_else(|| {
                            SchemaError::Unsupported {
                                path: field.name.clone(),
                                message: format!(
                                    "version {} changes the column from {} to {}; a table column can only widen (int to long, float to double)",
                                    index + 1,
                                    column.data_type(),
                                    data_type
                                ),
                            }
                        })?;
                        let nullable = column.is_nullable() || nullable;
                        *column = Field::new(column.name(), widened, nullable)
                            .with_metadata(column.metadata().clone());
                    }
                    None => {
                        let id = columns.len() + 1;
                        columns.push(
                            Field::new(&field.name, data_type, nullable || index > 0)
                                .with_metadata(field_id(id)),
                        );
                    }
                }
            }
            for column in columns.iter_mut() {
                let is_coordinate =
                    [PARTITION_COLUMN, OFFSET_COLUMN].contains(&column.name().as_str());
                if !is_coordinate && !newest_names.contains(column.name()) && !column.is_nullable()
                {
                    *column = column.clone().with_nullable(true);
                }
            }
            reader = Some(AvroSchema::Record(record));
            if index == 0 {
                let id = columns.len() + 1;
                columns.push(
                    Field::new(PARTITION_COLUMN, DataType::Int32, false)
                        .with_metadata(field_id(id)),
                );
                columns.push(
                    Field::new(OFFSET_COLUMN, DataType::Int64, false)
                        .with_metadata(field_id(id + 1)),
                );
            }
        }
        let values: Vec<Field> = newest_names
            .iter()
            .filter_map(|name| columns.iter().find(|c| c.name() == name).cloned())
            .collect();
        let Some(reader) = reader else {
            return Err(SchemaError::Unsupported {
                path: "<root>".into(),
                message: "the subject has no schema version".into(),
            });
        };
        Ok(Self {
            reader_json: newest.to_string(),
            reader,
            values: Arc::new(Schema::new(values)),
            table: Arc::new(Schema::new(columns)),
            versions: versions.len(),
        })
    }

    /// How many versions of the subject's history the mapping knows (the reader schema is the
    /// newest of them).
    pub fn versions(&self) -> usize {
        self.versions
    }

    /// The table row batch for decoded value rows of one partition: every table column in
    /// order, by name — value columns, the Kafka coordinates, and NULL for columns the reader
    /// schema no longer has.
    pub fn table_batch(
        &self,
        values: &RecordBatch,
        partition: i32,
        offsets: &[i64],
    ) -> Result<RecordBatch, SchemaError> {
        let rows = values.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.table.fields().len());
        for field in self.table.fields() {
            let column: ArrayRef = if field.name() == PARTITION_COLUMN {
                Arc::new(arrow_array::Int32Array::from(vec![partition; rows]))
            } else if field.name() == OFFSET_COLUMN {
                Arc::new(arrow_array::Int64Array::from(offsets.to_vec()))
            } else {
                match values.column_by_name(field.name()) {
                    Some(column) => column.clone(),
                    None => arrow_array::new_null_array(field.data_type(), rows),
                }
            };
            columns.push(column);
        }
        RecordBatch::try_new(self.table.clone(), columns).map_err(|e| SchemaError::Normalize {
            column: "<batch>".into(),
            from: values.schema().to_string(),
            to: self.table.to_string(),
            message: e.to_string(),
        })
    }

    /// The reader schema text, for arrow-avro.
    pub fn reader_json(&self) -> &str {
        &self.reader_json
    }

    /// Why records written with `writer` cannot be read as the table's reader schema, or `None`
    /// when they can: Avro's resolution rules with logical types ([`crate::compat::can_read`]),
    /// the first three breaking changes named with their field paths. Every writer schema passes
    /// this before its records are decoded — a wire-format message's schema id and a value-record
    /// archive file's embedded schema alike — and the records of one that fails are dead letters
    /// of kind `unmappable-schema` carrying this reason.
    pub fn unreadable_writer(&self, writer: &AvroSchema) -> Option<String> {
        let problems = crate::compat::can_read(&self.reader, writer);
        if problems.is_empty() {
            return None;
        }
        let shown: Vec<String> = problems.iter().take(3).map(ToString::to_string).collect();
        Some(format!(
            "{}{}",
            shown.join("; "),
            if problems.len() > 3 { "; ..." } else { "" }
        ))
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
    ///
    /// A value the table cannot hold (a `timestamp-millis` that overflows microseconds: a
    /// producer sending nanoseconds) fails its row, not the batch: every conversion is checked
    /// row by row, and a row where it fails, turns a value into NULL or leaves NULL in a required
    /// column is left out of [`Normalized::records`] and listed in [`Normalized::rejected`] with a
    /// reason naming each column and value. The error is for what no row can fix (a required
    /// column the writer schema lacks, a conversion the mapping does not support).
    pub fn normalize(&self, batch: RecordBatch) -> Result<Normalized, SchemaError> {
        let rows = batch.num_rows();
        let mut columns = Vec::with_capacity(self.values.fields().len());
        let mut problems: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for target in self.values.fields() {
            let Some(column) = batch.column_by_name(target.name()) else {
                // A field the writer's schema does not have: optional fields read as NULL (their
                // default), required ones are an error.
                if target.is_nullable() {
                    columns.push(arrow_array::new_null_array(target.data_type(), rows));
                    continue;
                }
                return Err(SchemaError::Normalize {
                    column: target.name().clone(),
                    from: "<missing>".into(),
                    to: target.data_type().to_string(),
                    message: "the record has no such field and the column is required".into(),
                });
            };
            let (converted, failed) = convert(target, column)?;
            let refused: std::collections::BTreeSet<usize> =
                failed.iter().map(|(row, _)| *row).collect();
            for (row, message) in failed {
                problems.entry(row).or_default().push(message);
            }
            // A value lost in the conversion, or a NULL the column cannot hold (looked for row
            // by row only when the NULL counts say there is one).
            let suspect = converted.null_count() > column.null_count()
                || (!target.is_nullable() && converted.null_count() > 0);
            for row in (0..rows).filter(|_| suspect) {
                if converted.is_null(row)
                    && (column.is_valid(row) || !target.is_nullable())
                    && !refused.contains(&row)
                {
                    let message = if column.is_valid(row) {
                        format!(
                            "{}: value {} does not fit {} (out of range)",
                            target.name(),
                            show(column, row),
                            target.data_type()
                        )
                    } else {
                        format!("{}: NULL in a required column", target.name())
                    };
                    problems.entry(row).or_default().push(message);
                }
            }
            columns.push(converted);
        }
        let rejected: Vec<(usize, String)> = problems
            .into_iter()
            .map(|(row, messages)| (row, messages.join("; ")))
            .collect();
        if !rejected.is_empty() {
            let keep: arrow_array::BooleanArray = (0..rows)
                .map(|row| Some(rejected.binary_search_by_key(&row, |(r, _)| *r).is_err()))
                .collect();
            columns = columns
                .iter()
                .map(|column| arrow_select::filter::filter(column, &keep))
                .collect::<Result<_, _>>()
                .map_err(|e| SchemaError::Normalize {
                    column: "<batch>".into(),
                    from: batch.schema().to_string(),
                    to: self.values.to_string(),
                    message: format!("leaving out the rows that cannot be converted: {e}"),
                })?;
        }
        let kept = rows - rejected.len();
        let records = RecordBatch::try_new_with_options(
            self.values.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(kept)),
        )
        .map_err(|e| SchemaError::Normalize {
            column: "<batch>".into(),
            from: batch.schema().to_string(),
            to: self.values.to_string(),
            message: e.to_string(),
        })?;
        Ok(Normalized { records, rejected })
    }
}

/// A decoded batch in the table's value schema ([`TableMapping::normalize`]).
#[derive(Debug)]
pub struct Normalized {
    /// The rows that could be converted, in input order.
    pub records: RecordBatch,
    /// Index (into the input batch, ascending) and reason of each row left out: its values do not
    /// fit the table's columns; the reason names each column and value.
    pub rejected: Vec<(usize, String)>,
}

fn parse_record(json: &str) -> Result<apache_avro::schema::RecordSchema, SchemaError> {
    let schema = crate::names::parse_schema(json).map_err(|e| SchemaError::Unsupported {
        path: "<root>".into(),
        message: format!("not a valid Avro schema: {e}"),
    })?;
    match schema {
        AvroSchema::Record(record) => Ok(record),
        _ => Err(SchemaError::Unsupported {
            path: "<root>".into(),
            message: "the value schema must be an Avro record".into(),
        }),
    }
}

fn field_id(id: usize) -> HashMap<String, String> {
    HashMap::from([(FIELD_ID_KEY.to_string(), id.to_string())])
}

/// The column type after a version changes a field from `old` to `new`, if Iceberg allows it.
fn widen(old: &DataType, new: &DataType) -> Option<DataType> {
    match (old, new) {
        (a, b) if a == b => Some(a.clone()),
        (DataType::Int32, DataType::Int64) | (DataType::Int64, DataType::Int32) => {
            Some(DataType::Int64)
        }
        (DataType::Float32, DataType::Float64) | (DataType::Float64, DataType::Float32) => {
            Some(DataType::Float64)
        }
        _ => None,
    }
}

/// Converts `column` to `target`'s type; rows whose conversion fails are NULL in the result and
/// listed with the reason (a conversion may also turn a value into NULL without an error:
/// [`TableMapping::normalize`] checks for that). The error is for a conversion the mapping does
/// not support at all.
fn convert(
    target: &Field,
    column: &ArrayRef,
) -> Result<(ArrayRef, Vec<(usize, String)>), SchemaError> {
    if column.data_type() == target.data_type() {
        return Ok((column.clone(), Vec::new()));
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
            Ok((Arc::new(strings), Vec::new()))
        }
        (from, to) if !arrow_cast::can_cast_types(from, to) => {
            Err(err("the mapping has no such conversion".into()))
        }
        (_, to) => match arrow_cast::cast(column, to) {
            Ok(converted) => Ok((converted, Vec::new())),
            // Casts turn what they cannot convert into NULL; a kernel that errors instead is
            // asked row by row, so that only the rows it refuses are lost.
            Err(_) => {
                let mut failed = Vec::new();
                let mut parts = Vec::with_capacity(column.len());
                for row in 0..column.len() {
                    match arrow_cast::cast(&column.slice(row, 1), to) {
                        Ok(one) => parts.push(one),
                        Err(e) => {
                            failed.push((
                                row,
                                format!(
                                    "{}: value {} cannot be converted to {to}: {e}",
                                    target.name(),
                                    show(column, row)
                                ),
                            ));
                            parts.push(arrow_array::new_null_array(to, 1));
                        }
                    }
                }
                let refs: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
                let converted =
                    arrow_select::concat::concat(&refs).map_err(|e| err(e.to_string()))?;
                Ok((converted, failed))
            }
        },
    }
}

/// One value of `column` for a message: temporal values as their raw count since the epoch (an
/// out-of-range one has no date to show), others as Arrow displays them, at most 64 characters.
fn show(column: &ArrayRef, row: usize) -> String {
    let raw = match column.data_type() {
        DataType::Timestamp(unit, _) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "µs",
                TimeUnit::Nanosecond => "ns",
            };
            arrow_cast::cast(&column.slice(row, 1), &DataType::Int64)
                .ok()
                .and_then(|v| {
                    v.as_primitive_opt::<arrow_array::types::Int64Type>()
                        .filter(|v| v.is_valid(0))
                        .map(|v| format!("{} ({unit} since the epoch)", v.value(0)))
                })
        }
        _ => None,
    };
    let text = raw.unwrap_or_else(|| {
        let options = arrow_cast::display::FormatOptions::default();
        arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
            .ok()
            .and_then(|f| f.value(row).try_to_string().ok())
            .unwrap_or_else(|| "<not displayable>".into())
    });
    if text.chars().count() > 64 {
        format!("{}...", text.chars().take(64).collect::<String>())
    } else {
        text
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
    fn ids_follow_the_subject_history_and_new_fields_are_optional() {
        const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");
        let evolved = TableMapping::from_history(&[V1, V2]).unwrap();
        let t = evolved.table_schema();
        let id = |n: &str| {
            t.field_with_name(n).unwrap().metadata()[FIELD_ID_KEY]
                .parse::<i32>()
                .unwrap()
        };
        assert_eq!(
            (id("event_id"), id(PARTITION_COLUMN), id(OFFSET_COLUMN)),
            (1, 9, 10)
        );
        assert_eq!((id("coupon_code"), id("tip_cents")), (11, 12));
        assert!(t.field_with_name("tip_cents").unwrap().is_nullable());
        let names: Vec<&str> = evolved
            .value_schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names.last(), Some(&"tip_cents"));
        assert_eq!(names.len(), 10);
        // Replaying with only version 1 known gives a prefix of the same table.
        let v1 = TableMapping::from_history(&[V1]).unwrap();
        for field in v1.table_schema().fields() {
            assert_eq!(
                t.field_with_name(field.name()).unwrap().metadata(),
                field.metadata()
            );
        }
        // A table batch puts the coordinates at their ids' place and NULL for dropped columns.
        let values = RecordBatch::new_empty(evolved.value_schema().clone());
        let batch = evolved.table_batch(&values, 0, &[]).unwrap();
        assert_eq!(batch.schema(), *t);
    }

    #[test]
    fn a_type_change_that_cannot_widen_names_the_field() {
        let a = r#"{"type":"record","name":"r","fields":[{"name":"n","type":"long"}]}"#;
        let b = r#"{"type":"record","name":"r","fields":[{"name":"n","type":"string"}]}"#;
        let err = TableMapping::from_history(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("field n") && err.contains("version 2"),
            "{err}"
        );
        let c = r#"{"type":"record","name":"r","fields":[{"name":"n","type":"int"}]}"#;
        let widened = TableMapping::from_history(&[c, a]).unwrap();
        assert_eq!(
            widened
                .table_schema()
                .field_with_name("n")
                .unwrap()
                .data_type(),
            &DataType::Int64
        );
    }

    #[test]
    fn rows_whose_values_do_not_fit_are_left_out_and_named_the_rest_kept() {
        let json = r#"{"type":"record","name":"r","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"o","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
            {"name":"n","type":"long"}]}"#;
        let mapping = TableMapping::from_avro_json(json).unwrap();
        let millis = |values: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(
                arrow_array::TimestampMillisecondArray::from(values).with_timezone(UTC.to_string()),
            )
        };
        let nanos = 1_700_000_000_123_456_789i64;
        let input = RecordBatch::try_from_iter([
            (
                "t",
                millis(vec![Some(1), Some(nanos), Some(3), Some(4), None]),
            ),
            (
                "o",
                millis(vec![None, Some(2), Some(-nanos), Some(4), Some(5)]),
            ),
            (
                "n",
                Arc::new(arrow_array::Int64Array::from(vec![10, 11, 12, 13, 14])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = mapping.normalize(input).unwrap();
        // Row 1 overflows a required column, row 2 an optional one (not turned into NULL), row 4
        // has NULL in a required column.
        let rows: Vec<usize> = out.rejected.iter().map(|(row, _)| *row).collect();
        assert_eq!(rows, [1, 2, 4]);
        assert!(
            out.rejected[0]
                .1
                .starts_with("t: value 1700000000123456789 (ms since the epoch)")
                && out.rejected[0].1.contains("out of range"),
            "{}",
            out.rejected[0].1
        );
        assert!(
            out.rejected[1]
                .1
                .starts_with("o: value -1700000000123456789"),
            "{}",
            out.rejected[1].1
        );
        assert_eq!(out.rejected[2].1, "t: NULL in a required column");
        let n = out
            .records
            .column_by_name("n")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(n.values().to_vec(), vec![10, 13]);
        let t = out
            .records
            .column_by_name("t")
            .unwrap()
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(t.values().to_vec(), vec![1_000, 4_000]);
        assert_eq!(out.records.schema(), *mapping.value_schema());
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
