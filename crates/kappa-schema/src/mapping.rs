//! Avro → Arrow → Iceberg mapping.
//!
//! The table's Arrow schema uses only types every Iceberg reader understands:
//!
//! | Avro | Arrow (table) | Iceberg |
//! |---|---|---|
//! | `["null", T]` (or `[T, "null"]`) | nullable T | optional T |
//! | `boolean`, `int`, `long`, `float`, `double` | same | same |
//! | `string`, `enum`, `string`+`uuid`, `fixed(16)`+`uuid` | `Utf8` | `string` |
//! | `bytes` | `Binary` | `binary` |
//! | `fixed(n)` | `FixedSizeBinary(n)` | `fixed[n]` |
//! | `bytes`/`fixed`+`decimal(p, s)`, p ≤ 38 | `Decimal128(p, s)` | `decimal(p, s)` |
//! | `int`+`date` | `Date32` | `date` |
//! | `int`+`time-millis`, `long`+`time-micros` | `Time64(µs)` | `time` |
//! | `long`+`timestamp-millis` / `timestamp-micros` | `Timestamp(µs, UTC)` | `timestamptz` |
//! | `long`+`local-timestamp-millis` / `-micros` | `Timestamp(µs)` | `timestamp` |
//! | `array<T>` | `List` (element `element`) | `list<T>` |
//! | `map<T>` | `Map` (`key_value`: `key` `Utf8`, `value`) | `map<string, T>` |
//! | `record` (nested, to any depth) | `Struct` | `struct` |
//!
//! A list element or map value is optional when its Avro type is `["null", T]`. Everything else
//! is refused when the mapping is built, naming the field's path (`payment.method.detail`,
//! `lines[].sku` for array items, `attrs{}` for map values): a union of more than one non-null
//! type, a decimal of more than 38 digits, `timestamp-nanos`, `duration`, `big-decimal`, a
//! recursive record.
//!
//! Field ids are a pure function of the subject's history ([`TableMapping::from_history`]): the
//! first version's fields get 1..n in schema order, the Kafka coordinate columns n+1 and n+2, then
//! the first version's nested fields (struct fields, list elements, map keys and values) the next
//! ids in the order Iceberg numbers a new table (the fields of a struct first, then each one's
//! nested fields); then each later version's new fields — new columns and new fields of nested
//! records, in schema order, each followed by its own nested fields depth first, as Iceberg's
//! schema update numbers added columns. So a table created from the newest version (Kappa creates
//! it from the first version's part and adds the rest: `kappa-iceberg`'s `ensure_table`) and a
//! table created from version 1 and evolved version by version have the same columns with the
//! same ids, whichever path (live or replay) created them; a history without nested fields
//! numbers its columns as before. Columns and nested fields keep that order; a field added after
//! version 1 is optional (older rows lack it), and so is a field a later version dropped (newer
//! rows lack it). The reader schema is the newest version.
//!
//! `[table] kafka_metadata` adds optional columns for Kafka record attributes
//! ([`TableMapping::from_history_with`]): `_kafka_key` (`binary`), `_kafka_timestamp`
//! (`timestamptz`) and `_kafka_headers` (`list<struct<key: string, value: binary>>`), numbered
//! right after the coordinate columns as if the first version had them; decoders leave them NULL
//! and the source fills them ([`TableMapping::fill_kafka_metadata`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{Name, Namespace, RecordSchema, ResolvedSchema};
use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, DecimalType};
use arrow_array::{Array, ArrayRef, ListArray, MapArray, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use kappa_core::{KafkaMetadata, OFFSET_COLUMN, PARTITION_COLUMN};

pub use crate::metadata::KafkaRecordMetadata;

use crate::error::SchemaError;

/// Arrow field metadata key carrying the Iceberg field id (understood by iceberg-rust and Parquet).
pub const FIELD_ID_KEY: &str = "PARQUET:field_id";

/// The UTC timezone string used for `timestamptz` columns.
pub const UTC: &str = "+00:00";

/// Name of a list's element field (Iceberg's, so that the table's Arrow types are iceberg-rust's).
pub const LIST_ELEMENT: &str = "element";
/// Name of a map's entries field.
pub const MAP_ENTRIES: &str = "key_value";
/// Name of a map's key field.
pub const MAP_KEY: &str = "key";
/// Name of a map's value field.
pub const MAP_VALUE: &str = "value";

/// Largest decimal precision a table column holds (Iceberg's `decimal`, Arrow's `Decimal128`).
pub const MAX_DECIMAL_PRECISION: usize = 38;

/// Microseconds in a day: a `time` value is at least 0 and less than this.
const MICROS_PER_DAY: i64 = 86_400_000_000;

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
    /// The Kafka record attributes kept as columns (`[table] kafka_metadata`).
    kafka_metadata: Vec<KafkaMetadata>,
}

impl TableMapping {
    /// Maps a single record schema (a subject with one version).
    pub fn from_avro_json(json: &str) -> Result<Self, SchemaError> {
        Self::from_history(&[json])
    }

    /// Maps a subject's versions, oldest first (see the module docs for the ids); the newest is
    /// the reader schema. A field whose type changes between versions, at any depth, must widen
    /// as Iceberg allows (`int` → `long`, `float` → `double`); anything else is an error naming
    /// the field's path.
    pub fn from_history(versions: &[&str]) -> Result<Self, SchemaError> {
        Self::from_history_with(versions, &[])
    }

    /// [`TableMapping::from_history`] with Kafka record attributes kept as optional columns
    /// (`[table] kafka_metadata`): `_kafka_key`, `_kafka_timestamp`, `_kafka_headers`, numbered
    /// right after the coordinate columns (their nested fields with the first version's), and
    /// in the value schema after the value columns: decoders leave them NULL and the source
    /// fills them ([`TableMapping::fill_kafka_metadata`]).
    pub fn from_history_with(
        versions: &[&str],
        kafka_metadata: &[KafkaMetadata],
    ) -> Result<Self, SchemaError> {
        let kafka_metadata: Vec<KafkaMetadata> = KafkaMetadata::ALL
            .into_iter()
            .filter(|m| kafka_metadata.contains(m))
            .collect();
        let Some(newest) = versions.last() else {
            return Err(SchemaError::Unsupported {
                path: "<root>".into(),
                message: "the subject has no schema version".into(),
            });
        };
        let mut columns: Vec<Node> = Vec::new();
        let mut newest_names: Vec<String> = Vec::new();
        let mut next_id = 1usize;
        let mut reader = None;
        for (index, json) in versions.iter().enumerate() {
            let schema = parse_record(json)?;
            let AvroSchema::Record(record) = &schema else {
                return Err(SchemaError::Unsupported {
                    path: "<root>".into(),
                    message: "the value schema must be an Avro record".into(),
                });
            };
            let mut mapper = Mapper::new(&schema)?;
            newest_names.clear();
            for field in &record.fields {
                let node = mapper.node(
                    &field.name,
                    &field.name,
                    &field.schema,
                    &record.name.namespace,
                )?;
                newest_names.push(field.name.clone());
                match columns.iter_mut().find(|c| c.name == field.name) {
                    Some(column) => column.merge(node, &field.name, index + 1)?,
                    None => {
                        let mut node = node;
                        node.nullable |= index > 0;
                        if index == 0 {
                            node.id = Some(take(&mut next_id));
                        }
                        columns.push(node);
                    }
                }
            }
            for column in columns.iter_mut() {
                let is_coordinate =
                    [PARTITION_COLUMN, OFFSET_COLUMN].contains(&column.name.as_str());
                if !is_coordinate && !newest_names.contains(&column.name) {
                    column.nullable = true;
                }
            }
            if index == 0 {
                for (name, data_type) in [
                    (PARTITION_COLUMN, DataType::Int32),
                    (OFFSET_COLUMN, DataType::Int64),
                ] {
                    columns.push(Node {
                        name: name.to_string(),
                        id: Some(take(&mut next_id)),
                        nullable: false,
                        kind: Kind::Primitive(data_type),
                    });
                }
                for attribute in &kafka_metadata {
                    if let Some(clash) = columns.iter().find(|c| c.name == attribute.column()) {
                        return Err(SchemaError::Unsupported {
                            path: clash.name.clone(),
                            message: format!(
                                "the value schema has a field named like the column of [table] kafka_metadata {:?}",
                                attribute.name()
                            ),
                        });
                    }
                    let mut node = metadata_node(*attribute);
                    node.id = Some(take(&mut next_id));
                    columns.push(node);
                }
                assign_level(&mut columns, &mut next_id);
            } else {
                for column in columns.iter_mut() {
                    column.assign_added(&mut next_id);
                }
            }
            reader = Some(schema);
        }
        let values: Vec<Field> = newest_names
            .iter()
            .map(String::as_str)
            .chain(kafka_metadata.iter().map(|m| m.column()))
            .filter_map(|name| columns.iter().find(|c| c.name == name))
            .map(Node::field)
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
            table: Arc::new(Schema::new(
                columns.iter().map(Node::field).collect::<Vec<_>>(),
            )),
            versions: versions.len(),
            kafka_metadata,
        })
    }

    /// The Kafka record attributes kept as columns, in column order.
    pub fn kafka_metadata(&self) -> &[KafkaMetadata] {
        &self.kafka_metadata
    }

    /// `records` (in the value schema) with its Kafka metadata columns holding `rows`, one per
    /// row in order: the source's part, since decoders see only the value. Without metadata
    /// columns, `records` as it is.
    pub fn fill_kafka_metadata<'r>(
        &self,
        records: RecordBatch,
        rows: impl ExactSizeIterator<Item = KafkaRecordMetadata<'r>>,
    ) -> Result<RecordBatch, SchemaError> {
        if self.kafka_metadata.is_empty() {
            return Ok(records);
        }
        let err = |message: String| SchemaError::Normalize {
            column: "<kafka metadata>".into(),
            from: records.schema().to_string(),
            to: self.values.to_string(),
            message,
        };
        if rows.len() != records.num_rows() {
            return Err(err(format!(
                "{} metadata rows for {} records",
                rows.len(),
                records.num_rows()
            )));
        }
        let mut builder = crate::metadata::MetadataBuilder::new(rows.len());
        for row in rows {
            builder.push(&row);
        }
        let mut columns = records.columns().to_vec();
        for attribute in &self.kafka_metadata {
            let index = self
                .values
                .index_of(attribute.column())
                .map_err(|e| err(e.to_string()))?;
            let field = self.values.field(index);
            columns[index] = builder
                .finish(*attribute, field)
                .map_err(|e| err(format!("{}: {e}", attribute.column())))?;
        }
        RecordBatch::try_new(self.values.clone(), columns).map_err(|e| err(e.to_string()))
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

    /// The fields of the record schema `writer` that the table's value columns lack, at any
    /// depth, by path (`tip_cents`, `payment.tip`, `lines[].discount`, `attrs{}.source`): what a
    /// record written with it would lose if it were decoded against the table's reader schema.
    /// Empty for a schema that is not a record.
    pub fn fields_the_table_lacks(&self, writer: &AvroSchema) -> Vec<String> {
        let AvroSchema::Record(record) = writer else {
            return Vec::new();
        };
        let names: HashMap<Name, &AvroSchema> = match ResolvedSchema::try_from(writer) {
            Ok(resolved) => resolved
                .get_names()
                .iter()
                .map(|(name, schema)| (name.clone(), *schema))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let mut lacking = Vec::new();
        let mut seen = BTreeSet::new();
        lacking_fields(
            record,
            self.values.fields(),
            "",
            &names,
            &record.name.namespace,
            &mut seen,
            &mut lacking,
        );
        lacking
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

    /// Converts a batch decoded by arrow-avro into the value schema, at every depth: uuid bytes
    /// to strings, enum dictionaries to strings, millisecond timestamps to microseconds,
    /// `time-millis` to microseconds; nested fields by name, with the table's field names and
    /// ids; optional columns and nested fields the batch lacks (an older writer schema) become
    /// NULL.
    ///
    /// A value the table cannot hold (a `timestamp-millis` that overflows microseconds: a
    /// producer sending nanoseconds; a decimal with more digits than its precision; a time of day
    /// outside the day) fails its row, not the batch: every conversion is checked row by row,
    /// and a row where it fails, turns a value into NULL or leaves NULL in a required column or
    /// field is left out of [`Normalized::records`] and listed in [`Normalized::rejected`] with a
    /// reason naming each column (or field path) and value. The error is for what no row can fix
    /// (a required column the writer schema lacks, a conversion the mapping does not support).
    pub fn normalize(&self, batch: RecordBatch) -> Result<Normalized, SchemaError> {
        let rows = batch.num_rows();
        let mut columns = Vec::with_capacity(self.values.fields().len());
        // Nested columns with a value that does not convert: their input, converted again once
        // the refused rows are left out (a nested array cannot hold the NULL a failed value
        // leaves where its field is required).
        let mut again: Vec<usize> = Vec::new();
        let mut problems: BTreeMap<usize, Vec<String>> = Default::default();
        for (index, target) in self.values.fields().iter().enumerate() {
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
            let converted = convert(target, column, target.name())?;
            if converted.array.is_none() && converted.failed.is_empty() {
                return Err(SchemaError::Normalize {
                    column: target.name().clone(),
                    from: column.data_type().to_string(),
                    to: target.data_type().to_string(),
                    message: "a nested value does not convert and belongs to no row".into(),
                });
            }
            let refused: BTreeSet<usize> = converted.failed.iter().map(|(row, _)| *row).collect();
            for (row, message) in converted.failed {
                problems.entry(row).or_default().push(message);
            }
            let array = match converted.array {
                Some(array) => array,
                None => {
                    again.push(index);
                    column.clone()
                }
            };
            // A NULL the column cannot hold (looked for row by row only when there is one).
            if !target.is_nullable() && array.null_count() > 0 {
                for row in (0..rows).filter(|row| array.is_null(*row) && !refused.contains(row)) {
                    problems
                        .entry(row)
                        .or_default()
                        .push(format!("{}: NULL in a required column", target.name()));
                }
            }
            columns.push(array);
        }
        let rejected: Vec<(usize, String)> = problems
            .into_iter()
            .map(|(row, messages)| (row, messages.join("; ")))
            .collect();
        let leaving_out = |e: String| SchemaError::Normalize {
            column: "<batch>".into(),
            from: batch.schema().to_string(),
            to: self.values.to_string(),
            message: format!("leaving out the rows that cannot be converted: {e}"),
        };
        if !rejected.is_empty() {
            let keep: arrow_array::BooleanArray = (0..rows)
                .map(|row| Some(rejected.binary_search_by_key(&row, |(r, _)| *r).is_err()))
                .collect();
            columns = columns
                .iter()
                .map(|column| arrow_select::filter::filter(column, &keep))
                .collect::<Result<_, _>>()
                .map_err(|e| leaving_out(e.to_string()))?;
            for index in again {
                let target = self.values.field(index);
                let converted = convert(target, &columns[index], target.name())?;
                match (converted.array, converted.failed.first()) {
                    (Some(array), None) => columns[index] = array,
                    (_, failed) => {
                        return Err(leaving_out(format!(
                            "column {} still does not convert: {}",
                            target.name(),
                            failed.map_or("no array", |(_, message)| message.as_str())
                        )));
                    }
                }
            }
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

fn parse_record(json: &str) -> Result<AvroSchema, SchemaError> {
    let schema = crate::names::parse_schema(json).map_err(|e| SchemaError::Unsupported {
        path: "<root>".into(),
        message: format!("not a valid Avro schema: {e}"),
    })?;
    match schema {
        AvroSchema::Record(_) => Ok(schema),
        _ => Err(SchemaError::Unsupported {
            path: "<root>".into(),
            message: "the value schema must be an Avro record".into(),
        }),
    }
}

fn field_id(id: usize) -> HashMap<String, String> {
    HashMap::from([(FIELD_ID_KEY.to_string(), id.to_string())])
}

/// The next id, counting on.
fn take(next: &mut usize) -> usize {
    let id = *next;
    *next += 1;
    id
}

/// A table column or one of its nested fields while the mapping is built.
#[derive(Debug, Clone)]
struct Node {
    /// The field's name (`element`, `key`, `value` inside lists and maps).
    name: String,
    /// Its Iceberg field id, once assigned.
    id: Option<usize>,
    nullable: bool,
    kind: Kind,
}

/// What a [`Node`] holds.
#[derive(Debug, Clone)]
enum Kind {
    Primitive(DataType),
    Struct(Vec<Node>),
    List(Box<Node>),
    /// Key and value.
    Map(Box<Node>, Box<Node>),
}

impl Node {
    /// The Arrow field, with field ids at every depth.
    fn field(&self) -> Field {
        let data_type = match &self.kind {
            Kind::Primitive(data_type) => data_type.clone(),
            Kind::Struct(children) => DataType::Struct(children.iter().map(Node::field).collect()),
            Kind::List(element) => DataType::List(Arc::new(element.field())),
            Kind::Map(key, value) => DataType::Map(
                Arc::new(Field::new(
                    MAP_ENTRIES,
                    DataType::Struct(Fields::from(vec![key.field(), value.field()])),
                    false,
                )),
                false,
            ),
        };
        let field = Field::new(&self.name, data_type, self.nullable);
        match self.id {
            Some(id) => field.with_metadata(field_id(id)),
            None => field,
        }
    }

    /// Merges the same field of a later version (`version`, 1-based) into the table's: types
    /// widen, new fields of nested records are appended (optional), fields the version dropped
    /// become optional.
    fn merge(&mut self, newer: Node, path: &str, version: usize) -> Result<(), SchemaError> {
        self.nullable |= newer.nullable;
        let change = |old: &Kind, new: &Kind| SchemaError::Unsupported {
            path: path.to_string(),
            message: format!(
                "version {version} changes the {} from {} to {}; a table column can only widen (int to long, float to double)",
                if path.contains(['.', '[', '{']) {
                    "nested field"
                } else {
                    "column"
                },
                old.describe(),
                new.describe()
            ),
        };
        match (&mut self.kind, newer.kind) {
            (Kind::Primitive(old), Kind::Primitive(new)) => match widen(old, &new) {
                Some(widened) => *old = widened,
                None => {
                    return Err(change(&Kind::Primitive(old.clone()), &Kind::Primitive(new)));
                }
            },
            (Kind::Struct(old), Kind::Struct(new)) => {
                let names: Vec<String> = new.iter().map(|c| c.name.clone()).collect();
                for child in new {
                    let child_path = format!("{path}.{}", child.name);
                    match old.iter_mut().find(|c| c.name == child.name) {
                        Some(existing) => existing.merge(child, &child_path, version)?,
                        None => old.push(Node {
                            nullable: true,
                            ..child
                        }),
                    }
                }
                for existing in old.iter_mut() {
                    if !names.contains(&existing.name) {
                        existing.nullable = true;
                    }
                }
            }
            (Kind::List(old), Kind::List(new)) => old.merge(*new, &format!("{path}[]"), version)?,
            (Kind::Map(_, old), Kind::Map(_, new)) => {
                old.merge(*new, &format!("{path}{{}}"), version)?
            }
            (old, new) => return Err(change(old, &new)),
        }
        Ok(())
    }

    /// Numbers the fields a later version added, in Iceberg's order for added columns
    /// (iceberg-rust's `UpdateSchemaAction`): each new field as it is met, depth first in the
    /// table's order, then its own nested fields depth first.
    fn assign_added(&mut self, next: &mut usize) {
        if self.id.is_none() {
            self.id = Some(take(next));
            self.kind.assign_depth_first(next);
            return;
        }
        match &mut self.kind {
            Kind::Primitive(_) => {}
            Kind::Struct(children) => children.iter_mut().for_each(|c| c.assign_added(next)),
            Kind::List(element) => element.assign_added(next),
            Kind::Map(key, value) => {
                key.assign_added(next);
                value.assign_added(next);
            }
        }
    }
}

impl Kind {
    /// For messages: a primitive's Arrow type, else what the nested type is.
    fn describe(&self) -> String {
        match self {
            Kind::Primitive(data_type) => data_type.to_string(),
            Kind::Struct(_) => "a record".into(),
            Kind::List(_) => "an array".into(),
            Kind::Map(..) => "a map".into(),
        }
    }

    /// Numbers every nested field depth first (the fields of a column a later version added).
    fn assign_depth_first(&mut self, next: &mut usize) {
        let mut number = |node: &mut Node| {
            node.id = Some(take(next));
            node.kind.assign_depth_first(next);
        };
        match self {
            Kind::Primitive(_) => {}
            Kind::Struct(children) => children.iter_mut().for_each(number),
            Kind::List(element) => number(element),
            Kind::Map(key, value) => {
                number(key);
                number(value);
            }
        }
    }

    /// Numbers the nested fields of a level in Iceberg's order for a new table (iceberg-rust's
    /// `ReassignFieldIds`, Java's `AssignFreshIds`): a list's element, a map's key and value, and
    /// the fields of a struct before any of their own nested fields.
    fn assign_within(&mut self, next: &mut usize) {
        match self {
            Kind::Primitive(_) => {}
            Kind::Struct(children) => assign_level(children, next),
            Kind::List(element) => {
                element.id.get_or_insert_with(|| take(next));
                element.kind.assign_within(next);
            }
            Kind::Map(key, value) => {
                key.id.get_or_insert_with(|| take(next));
                key.kind.assign_within(next);
                value.id.get_or_insert_with(|| take(next));
                value.kind.assign_within(next);
            }
        }
    }
}

/// Numbers `fields` (those without an id), then the nested fields of each: see
/// [`Kind::assign_within`].
/// The column of a Kafka record attribute (its id assigned by the caller).
fn metadata_node(attribute: KafkaMetadata) -> Node {
    let node = |name: &str, nullable, kind| Node {
        name: name.to_string(),
        id: None,
        nullable,
        kind,
    };
    let kind = match attribute {
        KafkaMetadata::Key => Kind::Primitive(DataType::Binary),
        KafkaMetadata::Timestamp => {
            Kind::Primitive(DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())))
        }
        KafkaMetadata::Headers => Kind::List(Box::new(node(
            LIST_ELEMENT,
            false,
            Kind::Struct(vec![
                node("key", false, Kind::Primitive(DataType::Utf8)),
                node("value", true, Kind::Primitive(DataType::Binary)),
            ]),
        ))),
    };
    node(attribute.column(), true, kind)
}

fn assign_level(fields: &mut [Node], next: &mut usize) {
    for field in fields.iter_mut() {
        field.id.get_or_insert_with(|| take(next));
    }
    for field in fields.iter_mut() {
        field.kind.assign_within(next);
    }
}

/// Maps the fields of one Avro schema, resolving its named types.
struct Mapper<'s> {
    names: HashMap<Name, &'s AvroSchema>,
    /// Records being mapped, outermost first: one met again is recursive.
    open: Vec<Name>,
}

impl<'s> Mapper<'s> {
    fn new(schema: &'s AvroSchema) -> Result<Self, SchemaError> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| SchemaError::Unsupported {
            path: "<root>".into(),
            message: format!("the schema's named types do not resolve: {e}"),
        })?;
        Ok(Self {
            names: resolved
                .get_names()
                .iter()
                .map(|(name, schema)| (name.clone(), *schema))
                .collect(),
            open: Vec::new(),
        })
    }

    /// The table field for Avro field `name` (at `path`) of type `schema`, in namespace `ns`; no
    /// ids yet.
    fn node(
        &mut self,
        name: &str,
        path: &str,
        schema: &'s AvroSchema,
        ns: &Namespace,
    ) -> Result<Node, SchemaError> {
        let unsupported = |message: String| SchemaError::Unsupported {
            path: path.to_string(),
            message,
        };
        let no_mapping = |what: &str| unsupported(format!("Avro type {what} has no table mapping"));
        let primitive = |data_type: DataType| Node {
            name: name.to_string(),
            id: None,
            nullable: false,
            kind: Kind::Primitive(data_type),
        };
        let ts = |tz: bool| DataType::Timestamp(TimeUnit::Microsecond, tz.then(|| UTC.into()));
        Ok(match schema {
            AvroSchema::Union(union) => {
                let variants = union.variants();
                let non_null: Vec<&'s AvroSchema> = variants
                    .iter()
                    .filter(|s| !matches!(s, AvroSchema::Null))
                    .collect();
                return match (non_null.as_slice(), variants.len()) {
                    ([inner], 2) => Ok(Node {
                        nullable: true,
                        ..self.node(name, path, inner, ns)?
                    }),
                    _ => Err(unsupported(format!(
                        "the union {} has no table mapping: only a union of \"null\" and one type ([\"null\", T]) maps to a column; give the field one type, or one field per type",
                        crate::compat::describe(schema)
                    ))),
                };
            }
            AvroSchema::Boolean => primitive(DataType::Boolean),
            AvroSchema::Int => primitive(DataType::Int32),
            AvroSchema::Long => primitive(DataType::Int64),
            AvroSchema::Float => primitive(DataType::Float32),
            AvroSchema::Double => primitive(DataType::Float64),
            AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid => {
                primitive(DataType::Utf8)
            }
            AvroSchema::Bytes => primitive(DataType::Binary),
            AvroSchema::Date => primitive(DataType::Date32),
            AvroSchema::TimeMillis | AvroSchema::TimeMicros => {
                primitive(DataType::Time64(TimeUnit::Microsecond))
            }
            AvroSchema::TimestampMillis | AvroSchema::TimestampMicros => primitive(ts(true)),
            AvroSchema::LocalTimestampMillis | AvroSchema::LocalTimestampMicros => {
                primitive(ts(false))
            }
            AvroSchema::Fixed(fixed) => match i32::try_from(fixed.size) {
                Ok(size) if size > 0 => primitive(DataType::FixedSizeBinary(size)),
                _ => {
                    return Err(unsupported(format!(
                        "fixed {} of {} bytes has no table mapping (1 to {} bytes)",
                        fixed.name.fullname(None),
                        fixed.size,
                        i32::MAX
                    )));
                }
            },
            AvroSchema::Decimal(decimal) => {
                if decimal.precision > MAX_DECIMAL_PRECISION {
                    return Err(unsupported(format!(
                        "decimal({}, {}) has {} digits of precision; a table's decimal holds at most {MAX_DECIMAL_PRECISION} (Iceberg decimal)",
                        decimal.precision, decimal.scale, decimal.precision
                    )));
                }
                // Both at most 38 here (the scale is at most the precision).
                primitive(DataType::Decimal128(
                    decimal.precision as u8,
                    decimal.scale as i8,
                ))
            }
            AvroSchema::Array(array) => Node {
                name: name.to_string(),
                id: None,
                nullable: false,
                kind: Kind::List(Box::new(self.node(
                    LIST_ELEMENT,
                    &format!("{path}[]"),
                    &array.items,
                    ns,
                )?)),
            },
            AvroSchema::Map(map) => Node {
                name: name.to_string(),
                id: None,
                nullable: false,
                kind: Kind::Map(
                    Box::new(Node {
                        name: MAP_KEY.to_string(),
                        id: None,
                        nullable: false,
                        kind: Kind::Primitive(DataType::Utf8),
                    }),
                    Box::new(self.node(MAP_VALUE, &format!("{path}{{}}"), &map.types, ns)?),
                ),
            },
            AvroSchema::Record(record) => {
                if self.open.contains(&record.name) {
                    return Err(unsupported(format!(
                        "record {} contains itself; a recursive type has no table mapping",
                        record.name.fullname(None)
                    )));
                }
                if record.fields.is_empty() {
                    return Err(unsupported(format!(
                        "record {} has no fields; an empty record has no table mapping",
                        record.name.fullname(None)
                    )));
                }
                self.open.push(record.name.clone());
                let inner = record.name.namespace.clone().or_else(|| ns.clone());
                let children = record
                    .fields
                    .iter()
                    .map(|f| self.node(&f.name, &format!("{path}.{}", f.name), &f.schema, &inner))
                    .collect::<Result<Vec<_>, _>>();
                self.open.pop();
                Node {
                    name: name.to_string(),
                    id: None,
                    nullable: false,
                    kind: Kind::Struct(children?),
                }
            }
            AvroSchema::Ref { name: reference } => {
                let full = reference.fully_qualified_name(ns);
                let target = self
                    .names
                    .get(&full)
                    .or_else(|| self.names.get(reference))
                    .copied()
                    .ok_or_else(|| {
                        unsupported(format!(
                            "named type {} is referenced but not defined",
                            full.fullname(None)
                        ))
                    })?;
                return self.node(name, path, target, &full.namespace);
            }
            AvroSchema::Null => return Err(no_mapping("null")),
            AvroSchema::BigDecimal => return Err(no_mapping("big-decimal")),
            AvroSchema::TimestampNanos | AvroSchema::LocalTimestampNanos => {
                return Err(no_mapping("timestamp-nanos"));
            }
            AvroSchema::Duration => return Err(no_mapping("duration")),
        })
    }
}

/// Adds to `lacking` the fields of `record` (at `path`) that `fields` lack, at any depth.
#[allow(clippy::too_many_arguments)]
fn lacking_fields(
    record: &RecordSchema,
    fields: &Fields,
    path: &str,
    names: &HashMap<Name, &AvroSchema>,
    ns: &Namespace,
    seen: &mut BTreeSet<String>,
    lacking: &mut Vec<String>,
) {
    // A recursive writer type: each record once.
    if !seen.insert(format!("{path}/{}", record.name.fullname(None))) {
        return;
    }
    let inner = record.name.namespace.clone().or_else(|| ns.clone());
    for field in &record.fields {
        let child = if path.is_empty() {
            field.name.clone()
        } else {
            format!("{path}.{}", field.name)
        };
        match fields.iter().find(|f| f.name() == &field.name) {
            None => lacking.push(child),
            Some(column) => lacking_in_type(
                &field.schema,
                column.data_type(),
                &child,
                names,
                &inner,
                seen,
                lacking,
            ),
        }
    }
}

/// [`lacking_fields`] of the records inside `schema`, against the table type `data_type`.
#[allow(clippy::too_many_arguments)]
fn lacking_in_type(
    schema: &AvroSchema,
    data_type: &DataType,
    path: &str,
    names: &HashMap<Name, &AvroSchema>,
    ns: &Namespace,
    seen: &mut BTreeSet<String>,
    lacking: &mut Vec<String>,
) {
    match (schema, data_type) {
        (AvroSchema::Ref { name }, _) => {
            let full = name.fully_qualified_name(ns);
            if let Some(target) = names.get(&full).or_else(|| names.get(name)) {
                lacking_in_type(
                    target,
                    data_type,
                    path,
                    names,
                    &full.namespace,
                    seen,
                    lacking,
                );
            }
        }
        (AvroSchema::Union(union), _) => {
            for branch in union.variants() {
                lacking_in_type(branch, data_type, path, names, ns, seen, lacking);
            }
        }
        (AvroSchema::Record(record), DataType::Struct(fields)) => {
            lacking_fields(record, fields, path, names, ns, seen, lacking);
        }
        (AvroSchema::Array(array), DataType::List(element)) => lacking_in_type(
            &array.items,
            element.data_type(),
            &format!("{path}[]"),
            names,
            ns,
            seen,
            lacking,
        ),
        (AvroSchema::Map(map), DataType::Map(entries, _)) => {
            if let DataType::Struct(kv) = entries.data_type()
                && let Some(value) = kv.iter().find(|f| f.name() == MAP_VALUE)
            {
                lacking_in_type(
                    &map.types,
                    value.data_type(),
                    &format!("{path}{{}}"),
                    names,
                    ns,
                    seen,
                    lacking,
                );
            }
        }
        _ => {}
    }
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

/// A column (or nested field) converted to the table's type.
struct Converted {
    /// The converted array; `None` when a nested value does not convert (see `failed`).
    array: Option<ArrayRef>,
    /// Index (into the input) and reason of each value that does not convert.
    failed: Vec<(usize, String)>,
}

/// Converts `column` to `target`'s type, at any depth, matching nested fields by name. A leaf
/// value whose conversion fails, is lost (turned into NULL) or is out of the type's range is
/// listed in `failed` (with its NULL in `array`); a failure inside a nested value lists its
/// row and leaves no array (the caller converts again without that row). The error is for a
/// conversion the mapping does not support at all.
fn convert(target: &Field, column: &ArrayRef, path: &str) -> Result<Converted, SchemaError> {
    match target.data_type() {
        DataType::Struct(fields) => convert_struct(fields, column, path),
        DataType::List(element) => convert_list(element, column, path),
        DataType::Map(entries, _) => convert_map(entries, column, path),
        to => {
            let (array, failed) = convert_leaf(to, column, path)?;
            Ok(Converted {
                array: Some(array),
                failed,
            })
        }
    }
}

/// The error for a column whose decoded type has no conversion to the table's.
fn no_conversion(path: &str, column: &ArrayRef, to: &DataType, message: &str) -> SchemaError {
    SchemaError::Normalize {
        column: path.to_string(),
        from: column.data_type().to_string(),
        to: to.to_string(),
        message: message.to_string(),
    }
}

fn convert_struct(
    fields: &Fields,
    column: &ArrayRef,
    path: &str,
) -> Result<Converted, SchemaError> {
    let to = DataType::Struct(fields.clone());
    let Some(input) = column.as_struct_opt() else {
        return Err(no_conversion(
            path,
            column,
            &to,
            "the mapping has no such conversion",
        ));
    };
    let mut children = Vec::with_capacity(fields.len());
    let mut failed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for field in fields {
        let child_path = format!("{path}.{}", field.name());
        let Some(child) = input.column_by_name(field.name()) else {
            if field.is_nullable() {
                children.push(arrow_array::new_null_array(field.data_type(), input.len()));
                continue;
            }
            return Err(SchemaError::Normalize {
                column: child_path,
                from: "<missing>".into(),
                to: field.data_type().to_string(),
                message: "the record has no such field and the field is required".into(),
            });
        };
        let converted = convert(field, child, &child_path)?;
        // A value under a NULL record is no value; but a nested one that does not convert
        // leaves no array to build the record from, so its row is refused all the same.
        let mut refused = BTreeSet::new();
        for (row, message) in converted.failed {
            if input.is_valid(row) || converted.array.is_none() {
                refused.insert(row);
                failed.entry(row).or_default().push(message);
            }
        }
        match converted.array {
            Some(array) => {
                if !field.is_nullable() && array.null_count() > 0 {
                    for row in (0..array.len())
                        .filter(|r| array.is_null(*r) && input.is_valid(*r) && !refused.contains(r))
                    {
                        failed
                            .entry(row)
                            .or_default()
                            .push(format!("{child_path}: NULL in a required field"));
                    }
                }
                children.push(array);
            }
            None => children.push(child.clone()),
        }
    }
    if !failed.is_empty() {
        return Ok(Converted {
            array: None,
            failed: joined(failed),
        });
    }
    let array = StructArray::try_new(fields.clone(), children, input.nulls().cloned())
        .map_err(|e| no_conversion(path, column, &to, &e.to_string()))?;
    Ok(Converted {
        array: Some(Arc::new(array)),
        failed: Vec::new(),
    })
}

fn convert_list(
    element: &FieldRef,
    column: &ArrayRef,
    path: &str,
) -> Result<Converted, SchemaError> {
    let to = DataType::List(element.clone());
    let Some(input) = column.as_list_opt::<i32>() else {
        return Err(no_conversion(
            path,
            column,
            &to,
            "the mapping has no such conversion",
        ));
    };
    let (offsets, values) = referenced(input.value_offsets(), input.values());
    let converted = convert(element, &values, &format!("{path}[]"))?;
    let failed = by_row(
        &offsets,
        converted.failed,
        element,
        converted.array.as_ref(),
        path,
    );
    let Some(values) = converted.array.filter(|_| failed.is_empty()) else {
        return Ok(Converted {
            array: None,
            failed,
        });
    };
    let array = ListArray::try_new(
        element.clone(),
        offsets_builder(&offsets).finish(),
        values,
        input.nulls().cloned(),
    )
    .map_err(|e| no_conversion(path, column, &to, &e.to_string()))?;
    Ok(Converted {
        array: Some(Arc::new(array)),
        failed: Vec::new(),
    })
}

fn convert_map(
    entries: &FieldRef,
    column: &ArrayRef,
    path: &str,
) -> Result<Converted, SchemaError> {
    let to = DataType::Map(entries.clone(), false);
    let (Some(input), DataType::Struct(pair)) = (column.as_map_opt(), entries.data_type()) else {
        return Err(no_conversion(
            path,
            column,
            &to,
            "the mapping has no such conversion",
        ));
    };
    let (Some(key_field), Some(value_field)) = (pair.first(), pair.get(1)) else {
        return Err(no_conversion(
            path,
            column,
            &to,
            "a map needs a key and a value field",
        ));
    };
    let (offsets, keys) = referenced(input.value_offsets(), input.keys());
    let (_, values) = referenced(input.value_offsets(), input.values());
    let keys = convert(key_field, &keys, &format!("{path}{{key}}"))?;
    let values = convert(value_field, &values, &format!("{path}{{}}"))?;
    let mut failed = by_row(&offsets, keys.failed, key_field, keys.array.as_ref(), path);
    failed.extend(by_row(
        &offsets,
        values.failed,
        value_field,
        values.array.as_ref(),
        path,
    ));
    let (Some(keys), Some(values)) = (keys.array, values.array) else {
        return Ok(Converted {
            array: None,
            failed: merged(failed),
        });
    };
    if !failed.is_empty() {
        return Ok(Converted {
            array: None,
            failed: merged(failed),
        });
    }
    let pairs = StructArray::try_new(pair.clone(), vec![keys, values], None)
        .map_err(|e| no_conversion(path, column, &to, &e.to_string()))?;
    let array = MapArray::try_new(
        entries.clone(),
        offsets_builder(&offsets).finish(),
        pairs,
        input.nulls().cloned(),
        false,
    )
    .map_err(|e| no_conversion(path, column, &to, &e.to_string()))?;
    Ok(Converted {
        array: Some(Arc::new(array)),
        failed: Vec::new(),
    })
}

/// The values of a list or map that its rows reference, with offsets from 0.
fn referenced(offsets: &[i32], values: &ArrayRef) -> (Vec<i32>, ArrayRef) {
    let first = offsets.first().copied().unwrap_or(0);
    let last = offsets.last().copied().unwrap_or(0);
    let rebased = offsets.iter().map(|o| o - first).collect();
    let start = usize::try_from(first).unwrap_or(0);
    let len = usize::try_from(last - first).unwrap_or(0);
    (rebased, values.slice(start, len))
}

/// A builder holding `offsets` (ascending, from 0).
fn offsets_builder(offsets: &[i32]) -> OffsetBufferBuilder<i32> {
    let mut builder = OffsetBufferBuilder::<i32>::new(offsets.len().saturating_sub(1));
    for pair in offsets.windows(2) {
        builder.push_length(usize::try_from(pair[1] - pair[0]).unwrap_or(0));
    }
    builder
}

/// The failures of a list's elements (or a map's keys or values) by the row they belong to,
/// with the elements that are NULL where the element field is required.
fn by_row(
    offsets: &[i32],
    failed: Vec<(usize, String)>,
    element: &Field,
    converted: Option<&ArrayRef>,
    path: &str,
) -> Vec<(usize, String)> {
    let mut messages: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let refused: BTreeSet<usize> = failed.iter().map(|(i, _)| *i).collect();
    let mut all = failed;
    if let Some(array) = converted
        && !element.is_nullable()
        && array.null_count() > 0
    {
        let what = if element.name() == LIST_ELEMENT {
            format!("{path}[]")
        } else {
            format!("{path}{{}}")
        };
        all.extend(
            (0..array.len())
                .filter(|i| array.is_null(*i) && !refused.contains(i))
                .map(|i| (i, format!("{what}: NULL in a required field"))),
        );
    }
    for (index, message) in all {
        // The row whose range holds the element: the last offset at or before it.
        let Ok(index) = i32::try_from(index) else {
            continue;
        };
        let row = offsets.partition_point(|o| *o <= index).saturating_sub(1);
        if row + 1 < offsets.len() {
            messages.entry(row).or_default().push(message);
        }
    }
    joined(messages)
}

fn joined(messages: BTreeMap<usize, Vec<String>>) -> Vec<(usize, String)> {
    messages
        .into_iter()
        .map(|(row, messages)| (row, messages.join("; ")))
        .collect()
}

/// Failures of several fields, one entry per row.
fn merged(failed: Vec<(usize, String)>) -> Vec<(usize, String)> {
    let mut by_row: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (row, message) in failed {
        by_row.entry(row).or_default().push(message);
    }
    joined(by_row)
}

/// Converts a column of a primitive table type (`to`); values whose conversion fails, that the
/// conversion turns into NULL or that are outside the type's range are listed with the reason
/// (a failed one is NULL in the result, one out of range keeps its value). The error is for a
/// conversion the mapping does not support at all.
fn convert_leaf(
    to: &DataType,
    column: &ArrayRef,
    path: &str,
) -> Result<(ArrayRef, Vec<(usize, String)>), SchemaError> {
    let (converted, mut failed) = cast_leaf(to, column, path)?;
    // A value lost in the conversion (looked for row by row only when the NULL counts say
    // there is one).
    if converted.null_count() > column.null_count() {
        let refused: BTreeSet<usize> = failed.iter().map(|(row, _)| *row).collect();
        for row in 0..column.len() {
            if converted.is_null(row) && column.is_valid(row) && !refused.contains(&row) {
                failed.push((
                    row,
                    format!(
                        "{path}: value {} does not fit {to} (out of range)",
                        show(column, row)
                    ),
                ));
            }
        }
    }
    let out_of_range = |row: usize| {
        (
            row,
            format!(
                "{path}: value {} does not fit {to} (out of range)",
                show(&converted, row)
            ),
        )
    };
    match to {
        DataType::Time64(TimeUnit::Microsecond) => {
            if let Some(times) =
                converted.as_primitive_opt::<arrow_array::types::Time64MicrosecondType>()
            {
                let outside: Vec<usize> = (0..times.len())
                    .filter(|r| {
                        times.is_valid(*r) && !(0..MICROS_PER_DAY).contains(&times.value(*r))
                    })
                    .collect();
                failed.extend(outside.into_iter().map(out_of_range));
            }
        }
        DataType::Decimal128(precision, _) => {
            if let Some(decimals) = converted.as_primitive_opt::<Decimal128Type>() {
                let outside: Vec<usize> = (0..decimals.len())
                    .filter(|r| {
                        decimals.is_valid(*r)
                            && !Decimal128Type::is_valid_decimal_precision(
                                decimals.value(*r),
                                *precision,
                            )
                    })
                    .collect();
                failed.extend(outside.into_iter().map(out_of_range));
            }
        }
        _ => {}
    }
    failed.sort_by_key(|(row, _)| *row);
    Ok((converted, failed))
}

/// `column` cast to `to`; rows whose cast fails are NULL in the result and listed with the
/// reason.
fn cast_leaf(
    to: &DataType,
    column: &ArrayRef,
    path: &str,
) -> Result<(ArrayRef, Vec<(usize, String)>), SchemaError> {
    if column.data_type() == to {
        return Ok((column.clone(), Vec::new()));
    }
    let err = |message: String| SchemaError::Normalize {
        column: path.to_string(),
        from: column.data_type().to_string(),
        to: to.to_string(),
        message,
    };
    match (column.data_type(), to) {
        (DataType::FixedSizeBinary(16), DataType::Utf8) => {
            // Every event id of a replay passes here: formatted straight into the array's
            // values, whose UTF-8 is checked once for the whole column, not row by row.
            let bytes = column.as_fixed_size_binary();
            if bytes.len().saturating_mul(36) > i32::MAX as usize {
                return Err(err(format!(
                    "{} UUIDs are more text than one string array holds",
                    bytes.len()
                )));
            }
            let mut values = Vec::with_capacity(bytes.len() * 36);
            let mut offsets = OffsetBufferBuilder::<i32>::new(bytes.len());
            for i in 0..bytes.len() {
                let before = values.len();
                if !bytes.is_null(i) {
                    format_uuid(bytes.value(i), &mut values);
                }
                offsets.push_length(values.len() - before);
            }
            let strings = arrow_array::StringArray::try_new(
                offsets.finish(),
                values.into(),
                bytes.nulls().cloned(),
            )
            .map_err(|e| err(e.to_string()))?;
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
                                    "{path}: value {} cannot be converted to {to}: {e}",
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

/// A 16-byte UUID in its canonical text (lower-case, hyphenated: ASCII), appended to `out`.
fn format_uuid(raw: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in raw.iter().take(16).enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(byte >> 4) as usize]);
        out.push(HEX[(byte & 0xf) as usize]);
    }
}

/// One value of `column` for a message: temporal values as their raw count since the epoch or
/// midnight (an out-of-range one has no date or time to show), others as Arrow displays them, at
/// most 64 characters.
fn show(column: &ArrayRef, row: usize) -> String {
    let symbol = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "µs",
        TimeUnit::Nanosecond => "ns",
    };
    let (unit, since) = match column.data_type() {
        DataType::Timestamp(unit, _) => (Some(symbol(unit)), "the epoch"),
        DataType::Time32(unit) | DataType::Time64(unit) => (Some(symbol(unit)), "midnight"),
        _ => (None, ""),
    };
    let raw = unit.and_then(|unit| {
        arrow_cast::cast(&column.slice(row, 1), &DataType::Int64)
            .ok()
            .and_then(|v| {
                v.as_primitive_opt::<arrow_array::types::Int64Type>()
                    .filter(|v| v.is_valid(0))
                    .map(|v| format!("{} ({unit} since {since})", v.value(0)))
            })
    });
    // A decimal in full, whatever digits its type allows.
    let raw = raw.or_else(|| match column.data_type() {
        DataType::Decimal128(_, scale) => column
            .as_primitive_opt::<Decimal128Type>()
            .filter(|d| d.is_valid(row))
            .map(|d| Decimal128Type::format_decimal(d.value(row), 38, *scale)),
        _ => None,
    });
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
        // Every id, as the tables in the wild have them: nothing nested, nothing else.
        let expected: BTreeMap<String, usize> = [
            "event_id",
            "event_type",
            "order_id",
            "user_id",
            "restaurant_id",
            "amount_cents",
            "currency",
            "event_time",
            PARTITION_COLUMN,
            OFFSET_COLUMN,
            "coupon_code",
            "tip_cents",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), i + 1))
        .collect();
        assert_eq!(ids(t), expected);
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
            0x55, 0x0e, 0x84, 0x00, 0xE2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ];
        let mut ids = arrow_array::builder::FixedSizeBinaryBuilder::new(16);
        ids.append_value(raw).unwrap();
        ids.append_null();
        ids.append_value([0xff; 16]).unwrap();
        let column: ArrayRef = Arc::new(ids.finish());
        let (out, failed) = cast_leaf(&DataType::Utf8, &column, "id").unwrap();
        assert!(failed.is_empty());
        let out = out.as_string::<i32>();
        assert_eq!(out.value(0), "550e8400-e29b-41d4-a716-446655440000");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), "ffffffff-ffff-ffff-ffff-ffffffffffff");
        assert_eq!(out.value_offsets(), &[0, 36, 36, 72]);
        // A slice (a batch split by partition) keeps its own rows and nulls.
        let (sliced, _) = cast_leaf(&DataType::Utf8, &column.slice(1, 2), "id").unwrap();
        let sliced = sliced.as_string::<i32>();
        assert_eq!(sliced.len(), 2);
        assert!(sliced.is_null(0));
        assert_eq!(sliced.value(1), "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    /// Field ids of `schema` by path (`a`, `s.x`, `l.element`, `m.key`), from the Arrow metadata.
    fn ids(schema: &Schema) -> BTreeMap<String, usize> {
        fn walk(prefix: &str, field: &Field, out: &mut BTreeMap<String, usize>) {
            let path = if prefix.is_empty() {
                field.name().clone()
            } else {
                format!("{prefix}.{}", field.name())
            };
            let id = field.metadata()[FIELD_ID_KEY].parse().unwrap();
            assert!(out.insert(path.clone(), id).is_none(), "{path} twice");
            match field.data_type() {
                DataType::Struct(fields) => fields.iter().for_each(|f| walk(&path, f, out)),
                DataType::List(element) => walk(&path, element, out),
                DataType::Map(entries, _) => match entries.data_type() {
                    // The entries field is not an Iceberg field: no id.
                    DataType::Struct(pair) => pair.iter().for_each(|f| walk(&path, f, out)),
                    other => panic!("map entries {other}"),
                },
                _ => {}
            }
        }
        let mut out = BTreeMap::new();
        schema.fields().iter().for_each(|f| walk("", f, &mut out));
        out
    }

    fn record(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"r","namespace":"t","fields":[{fields}]}}"#)
    }

    fn field<'a>(schema: &'a Schema, path: &str) -> &'a Field {
        let mut parts = path.split('.');
        let mut field = schema.field_with_name(parts.next().unwrap()).unwrap();
        for part in parts {
            let children: Vec<&Field> = match field.data_type() {
                DataType::Struct(fields) => fields.iter().map(AsRef::as_ref).collect(),
                DataType::List(element) => vec![element.as_ref()],
                DataType::Map(entries, _) => match entries.data_type() {
                    DataType::Struct(pair) => pair.iter().map(AsRef::as_ref).collect(),
                    _ => vec![],
                },
                _ => vec![],
            };
            field = children
                .into_iter()
                .find(|f| f.name() == part)
                .unwrap_or_else(|| panic!("no {part} in {path}"));
        }
        field
    }

    #[test]
    fn every_avro_type_maps_to_its_arrow_and_iceberg_type() {
        let json = record(
            r#"{"name":"dec_bytes","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
            {"name":"dec_fixed","type":["null",{"type":"fixed","name":"F8","size":8,"logicalType":"decimal","precision":18,"scale":4}]},
            {"name":"ts_micros","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"ts_millis","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
            {"name":"local","type":{"type":"long","logicalType":"local-timestamp-micros"}},
            {"name":"day","type":{"type":"int","logicalType":"date"}},
            {"name":"t_millis","type":{"type":"int","logicalType":"time-millis"}},
            {"name":"t_micros","type":["null",{"type":"long","logicalType":"time-micros"}]},
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"id_fixed","type":{"type":"fixed","name":"U16","size":16,"logicalType":"uuid"}},
            {"name":"kind","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"hash","type":["null",{"type":"fixed","name":"F3","size":3}]},
            {"name":"tags","type":{"type":"array","items":["null","string"]}},
            {"name":"attrs","type":["null",{"type":"map","values":"long"}]},
            {"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"x","type":"int"},{"name":"y","type":["null","F3"]}]}}"#,
        );
        let mapping = TableMapping::from_avro_json(&json).unwrap();
        let table = mapping.table_schema();
        let arrow = |name: &str| {
            (
                field(table, name).data_type().clone(),
                field(table, name).is_nullable(),
            )
        };
        let utc = Some(UTC.into());
        assert_eq!(arrow("dec_bytes"), (DataType::Decimal128(12, 2), false));
        assert_eq!(arrow("dec_fixed"), (DataType::Decimal128(18, 4), true));
        assert_eq!(
            arrow("ts_micros"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
                false
            )
        );
        assert_eq!(
            arrow("ts_millis"),
            (DataType::Timestamp(TimeUnit::Microsecond, utc), true)
        );
        assert_eq!(
            arrow("local"),
            (DataType::Timestamp(TimeUnit::Microsecond, None), false)
        );
        assert_eq!(arrow("day"), (DataType::Date32, false));
        assert_eq!(
            arrow("t_millis"),
            (DataType::Time64(TimeUnit::Microsecond), false)
        );
        assert_eq!(
            arrow("t_micros"),
            (DataType::Time64(TimeUnit::Microsecond), true)
        );
        assert_eq!(arrow("id"), (DataType::Utf8, false));
        assert_eq!(arrow("id_fixed"), (DataType::Utf8, false));
        assert_eq!(arrow("kind"), (DataType::Utf8, false));
        assert_eq!(arrow("hash"), (DataType::FixedSizeBinary(3), true));
        assert_eq!(arrow("tags.element"), (DataType::Utf8, true));
        assert!(matches!(arrow("tags"), (DataType::List(_), false)));
        assert!(matches!(arrow("attrs"), (DataType::Map(_, false), true)));
        assert_eq!(arrow("attrs.key"), (DataType::Utf8, false));
        assert_eq!(arrow("attrs.value"), (DataType::Int64, false));
        assert_eq!(arrow("inner.x"), (DataType::Int32, false));
        assert_eq!(arrow("inner.y"), (DataType::FixedSizeBinary(3), true));

        let iceberg = mapping.iceberg_schema().unwrap();
        use iceberg::spec::PrimitiveType as P;
        let ty = |name: &str| *iceberg.field_by_name(name).unwrap().field_type.clone();
        let expected = [
            (
                "dec_bytes",
                P::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                "dec_fixed",
                P::Decimal {
                    precision: 18,
                    scale: 4,
                },
            ),
            ("ts_micros", P::Timestamptz),
            ("ts_millis", P::Timestamptz),
            ("local", P::Timestamp),
            ("day", P::Date),
            ("t_millis", P::Time),
            ("t_micros", P::Time),
            ("id", P::String),
            ("id_fixed", P::String),
            ("kind", P::String),
            ("hash", P::Fixed(3)),
            ("tags.element", P::String),
            ("attrs.key", P::String),
            ("attrs.value", P::Long),
            ("inner.x", P::Int),
            ("inner.y", P::Fixed(3)),
        ];
        for (name, primitive) in expected {
            assert_eq!(
                ty(name),
                iceberg::spec::Type::Primitive(primitive),
                "{name}"
            );
        }
        assert!(matches!(ty("tags"), iceberg::spec::Type::List(_)));
        assert!(matches!(ty("attrs"), iceberg::spec::Type::Map(_)));
        assert!(matches!(ty("inner"), iceberg::spec::Type::Struct(_)));
        let optional = |name: &str| !iceberg.field_by_name(name).unwrap().required;
        assert!(optional("tags.element") && !optional("tags") && optional("attrs"));
        assert!(!optional("attrs.value") && optional("inner.y") && !optional("inner"));
    }

    const PAYMENTS_V1: &str = include_str!("../tests/data/payments-v1.avsc");
    const PAYMENTS_V2: &str = include_str!("../tests/data/payments-v2.avsc");

    /// The ids of `payments-v1.avsc`, worked out by hand from the rule in the module docs.
    fn payments_v1_ids() -> BTreeMap<String, usize> {
        let top = [
            "payment_id",
            "amount",
            "fee",
            "paid_at",
            "created_at",
            "booked_at",
            "day",
            "opens",
            "closes",
            "status",
            "digest",
            "captured",
            "note",
            "tags",
            "scores",
            "attrs",
            "limits",
            "method",
            "lines",
            "extras",
            "ratio",
            "raw",
            "count",
        ];
        let mut ids: BTreeMap<String, usize> = top
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), i + 1))
            .collect();
        ids.insert(PARTITION_COLUMN.into(), 24);
        ids.insert(OFFSET_COLUMN.into(), 25);
        // Then the nested fields: each top-level column's in column order; a struct's own
        // fields before the fields nested in them.
        let nested = [
            "tags.element",
            "scores.element",
            "attrs.key",
            "attrs.value",
            "limits.key",
            "limits.value",
            "method.kind",
            "method.card",
            "method.history",
            "method.card.last4",
            "method.card.token",
            "method.card.expires",
            "method.history.element",
            "lines.element",
            "lines.element.sku",
            "lines.element.qty",
            "lines.element.price",
            "lines.element.at",
            "lines.element.labels",
            "lines.element.labels.key",
            "lines.element.labels.value",
            "extras.key",
            "extras.value",
            "extras.value.level",
            "extras.value.weight",
        ];
        for (i, path) in nested.iter().enumerate() {
            ids.insert(path.to_string(), 26 + i);
        }
        ids
    }

    #[test]
    fn nested_fields_get_ids_after_the_columns_in_icebergs_order_for_a_new_table() {
        let mapping = TableMapping::from_history(&[PAYMENTS_V1]).unwrap();
        assert_eq!(ids(mapping.table_schema()), payments_v1_ids());
        // The Iceberg schema carries the same ids.
        let iceberg = mapping.iceberg_schema().unwrap();
        for (path, id) in payments_v1_ids() {
            assert_eq!(
                iceberg.field_by_name(&path).map(|f| f.id),
                Some(id as i32),
                "{path}"
            );
        }
        assert_eq!(iceberg.highest_field_id(), 50);
    }

    #[test]
    fn fields_a_later_version_adds_get_the_next_ids_depth_first_and_are_optional() {
        let v1 = TableMapping::from_history(&[PAYMENTS_V1]).unwrap();
        let v2 = TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap();
        let mut expected = payments_v1_ids();
        // In column order, depth first: a new field, then its own nested fields.
        for (path, id) in [
            ("method.card.network", 51),
            ("lines.element.discount", 52),
            ("refund", 53),
            ("refund.reason", 54),
            ("refund.parts", 55),
            ("refund.parts.element", 56),
        ] {
            expected.insert(path.into(), id);
        }
        assert_eq!(ids(v2.table_schema()), expected);
        let table = v2.table_schema();
        for added in ["method.card.network", "lines.element.discount", "refund"] {
            assert!(field(table, added).is_nullable(), "{added}");
        }
        // Inside the new column, its fields keep their own nullability.
        assert!(!field(table, "refund.reason").is_nullable());
        // Existing fields keep theirs, and every field of version 1 its id.
        assert!(!field(table, "method.card.last4").is_nullable());
        assert!(!field(table, "lines.element.sku").is_nullable());
        for (path, id) in ids(v1.table_schema()) {
            assert_eq!(expected[&path], id, "{path}");
        }
        // The value schema has the table's nested types.
        assert_eq!(
            v2.value_schema().field_with_name("method").unwrap(),
            table.field_with_name("method").unwrap()
        );
        // A later version adds nothing, in any order: the ids stay.
        let again = TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2, PAYMENTS_V2]).unwrap();
        assert_eq!(ids(again.table_schema()), expected);
    }

    #[test]
    fn a_nested_field_dropped_by_a_later_version_stays_and_becomes_optional() {
        let v1 = record(
            r#"{"name":"s","type":{"type":"record","name":"S","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}}"#,
        );
        let v2 = record(
            r#"{"name":"s","type":{"type":"record","name":"S","fields":[{"name":"b","type":"string"},{"name":"c","type":["null","long"],"default":null}]}}"#,
        );
        let mapping = TableMapping::from_history(&[&v1, &v2]).unwrap();
        let table = mapping.table_schema();
        let names: Vec<String> = match field(table, "s").data_type() {
            DataType::Struct(fields) => fields.iter().map(|f| f.name().clone()).collect(),
            other => panic!("{other}"),
        };
        // The table's order: version 1's fields, then the new one.
        assert_eq!(names, ["a", "b", "c"]);
        assert!(field(table, "s.a").is_nullable());
        assert!(!field(table, "s.b").is_nullable());
        assert_eq!(
            ids(table),
            BTreeMap::from([
                ("s".into(), 1),
                (PARTITION_COLUMN.into(), 2),
                (OFFSET_COLUMN.into(), 3),
                ("s.a".into(), 4),
                ("s.b".into(), 5),
                ("s.c".into(), 6),
            ])
        );
    }

    #[test]
    fn a_nested_type_change_that_cannot_widen_names_the_path() {
        let v1 = record(
            r#"{"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"qty","type":"int"}]}}}"#,
        );
        let widened = v1.replace(r#""qty","type":"int""#, r#""qty","type":"long""#);
        let mapping = TableMapping::from_history(&[&v1, &widened]).unwrap();
        assert_eq!(
            field(mapping.table_schema(), "lines.element.qty").data_type(),
            &DataType::Int64
        );
        let changed = v1.replace(r#""qty","type":"int""#, r#""qty","type":"string""#);
        let err = TableMapping::from_history(&[&v1, &changed])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "schema mapping: field lines[].qty: version 2 changes the nested field from Int32 to Utf8; a table column can only widen (int to long, float to double)"
        );
        let to_map = record(r#"{"name":"lines","type":{"type":"map","values":"int"}}"#);
        let err = TableMapping::from_history(&[&v1, &to_map])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field lines:") && err.contains("from an array to a map"),
            "{err}"
        );
    }

    #[test]
    fn a_union_of_several_types_is_an_error_naming_the_field_path() {
        let json = record(
            r#"{"name":"payment","type":{"type":"record","name":"P","fields":[
                {"name":"method","type":{"type":"record","name":"M","fields":[
                    {"name":"detail","type":["null","string","long"]}]}}]}}"#,
        );
        let err = TableMapping::from_avro_json(&json).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"schema mapping: field payment.method.detail: the union [null, string, long] has no table mapping: only a union of "null" and one type (["null", T]) maps to a column; give the field one type, or one field per type"#
        );
        let in_array = record(r#"{"name":"xs","type":{"type":"array","items":["int","string"]}}"#);
        let err = TableMapping::from_avro_json(&in_array)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("schema mapping: field xs[]: the union [int, string]"),
            "{err}"
        );
        let in_map =
            record(r#"{"name":"m","type":{"type":"map","values":["null","int","string"]}}"#);
        let err = TableMapping::from_avro_json(&in_map)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("schema mapping: field m{}: the union"),
            "{err}"
        );
    }

    #[test]
    fn a_decimal_of_more_than_38_digits_is_an_error_naming_the_field() {
        let json = record(
            r#"{"name":"ledger","type":{"type":"record","name":"L","fields":[
                {"name":"total","type":["null",{"type":"bytes","logicalType":"decimal","precision":39,"scale":2}]}]}}"#,
        );
        let err = TableMapping::from_avro_json(&json).unwrap_err().to_string();
        assert_eq!(
            err,
            "schema mapping: field ledger.total: decimal(39, 2) has 39 digits of precision; a table's decimal holds at most 38 (Iceberg decimal)"
        );
        let at_38 = json.replace(r#""precision":39"#, r#""precision":38"#);
        let mapping = TableMapping::from_avro_json(&at_38).unwrap();
        assert_eq!(
            field(mapping.table_schema(), "ledger.total").data_type(),
            &DataType::Decimal128(38, 2)
        );
    }

    #[test]
    fn unsupported_types_name_the_field() {
        for (avro, what) in [
            (
                r#"{"type":"long","logicalType":"timestamp-nanos"}"#,
                "timestamp-nanos",
            ),
            (
                r#"{"type":"fixed","name":"D","size":12,"logicalType":"duration"}"#,
                "duration",
            ),
            (
                r#"{"type":"bytes","logicalType":"big-decimal"}"#,
                "big-decimal",
            ),
        ] {
            let json = record(&format!(
                r#"{{"name":"outer","type":{{"type":"record","name":"O","fields":[{{"name":"inner","type":{avro}}}]}}}}"#
            ));
            let err = TableMapping::from_avro_json(&json).unwrap_err().to_string();
            assert!(
                err.contains("field outer.inner") && err.contains(what),
                "{err}"
            );
        }
        let recursive = record(
            r#"{"name":"head","type":{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}}"#,
        );
        let err = TableMapping::from_avro_json(&recursive)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field head.next") && err.contains("recursive"),
            "{err}"
        );
    }

    #[test]
    fn a_named_type_used_twice_maps_both_times() {
        let json = record(
            r#"{"name":"billing","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},
            {"name":"shipping","type":["null","Address"]}"#,
        );
        let mapping = TableMapping::from_avro_json(&json).unwrap();
        let table = mapping.table_schema();
        assert_eq!(field(table, "shipping.city").data_type(), &DataType::Utf8);
        assert!(field(table, "shipping").is_nullable());
        assert_eq!(ids(table)["billing.city"], 5);
        assert_eq!(ids(table)["shipping.city"], 6);
    }

    #[test]
    fn the_fields_a_writer_adds_are_found_at_any_depth() {
        let mapping = TableMapping::from_history(&[PAYMENTS_V1]).unwrap();
        let v2 = crate::names::parse_schema(PAYMENTS_V2).unwrap();
        assert_eq!(
            mapping.fields_the_table_lacks(&v2),
            ["method.card.network", "lines[].discount", "refund"]
        );
        let both = TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap();
        assert!(both.fields_the_table_lacks(&v2).is_empty());
        let v1 = crate::names::parse_schema(PAYMENTS_V1).unwrap();
        assert!(both.fields_the_table_lacks(&v1).is_empty());
    }

    /// Nested values built by hand as arrow-avro decodes them (its field names and metadata).
    #[test]
    fn nested_values_that_do_not_fit_fail_their_row_only() {
        use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
        let json = record(
            r#"{"name":"n","type":"int"},
            {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}},
                {"name":"opens","type":{"type":"int","logicalType":"time-millis"}},
                {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B"]}}]}}},
            {"name":"tags","type":{"type":"array","items":"string"}}"#,
        );
        let mapping = TableMapping::from_avro_json(&json).unwrap();
        let nanos = 1_700_000_000_123_456_789i64;
        // Five rows: 1 and 3 elements, then none, 2, 1; element 2 (row 1) overflows its
        // timestamp, element 4 (row 3) has a price of 5 digits, element 5 (row 4) a time past
        // midnight.
        let at: ArrayRef = Arc::new(
            arrow_array::TimestampMillisecondArray::from(vec![1, 2, nanos, 4, 5, 6, 7])
                .with_timezone(UTC.to_string()),
        );
        let price: ArrayRef = Arc::new(
            arrow_array::Decimal128Array::from(vec![100, 200, 300, 9_999, 10_000, 600, 700])
                .with_precision_and_scale(4, 2)
                .unwrap(),
        );
        let opens: ArrayRef = Arc::new(arrow_array::Time32MillisecondArray::from(vec![
            86_399_999, 1, 2, 3, 4, 5, 86_400_000,
        ]));
        let kind: ArrayRef = Arc::new(
            arrow_array::DictionaryArray::<arrow_array::types::Int32Type>::try_new(
                arrow_array::Int32Array::from(vec![0, 1, 0, 1, 0, 1, 0]),
                Arc::new(arrow_array::StringArray::from(vec!["A", "B"])),
            )
            .unwrap(),
        );
        let items = StructArray::try_from(vec![
            ("at", at),
            ("price", price),
            ("opens", opens),
            ("kind", kind),
        ])
        .unwrap();
        let item_field = Arc::new(Field::new("item", items.data_type().clone(), false));
        let mut offsets = OffsetBufferBuilder::<i32>::new(5);
        for len in [1, 3, 0, 2, 1] {
            offsets.push_length(len);
        }
        let lines: ArrayRef = Arc::new(
            ListArray::try_new(item_field, offsets.finish(), Arc::new(items), None).unwrap(),
        );
        let mut tags = ListBuilder::new(StringBuilder::new());
        for row in 0..5 {
            tags.append_value([Some(format!("t{row}"))]);
        }
        let n: ArrayRef = Arc::new({
            let mut n = Int32Builder::new();
            (0..5).for_each(|v| n.append_value(v));
            n.finish()
        });
        let input = RecordBatch::try_from_iter([
            ("n", n),
            ("lines", lines),
            ("tags", Arc::new(tags.finish()) as ArrayRef),
        ])
        .unwrap();
        let out = mapping.normalize(input).unwrap();
        let rows: Vec<usize> = out.rejected.iter().map(|(row, _)| *row).collect();
        assert_eq!(rows, [1, 3, 4], "{:?}", out.rejected);
        assert!(
            out.rejected[0].1.starts_with(&format!(
                "lines[].at: value {nanos} (ms since the epoch) does not fit"
            )),
            "{}",
            out.rejected[0].1
        );
        assert!(
            out.rejected[1]
                .1
                .starts_with("lines[].price: value 100.00 does not fit Decimal128(4, 2)"),
            "{}",
            out.rejected[1].1
        );
        assert!(
            out.rejected[2]
                .1
                .starts_with("lines[].opens: value 86400000000 (µs since midnight) does not fit"),
            "{}",
            out.rejected[2].1
        );
        // The rows kept, with the table's types, names and ids at every depth.
        assert_eq!(out.records.schema(), *mapping.value_schema());
        let n = out
            .records
            .column(0)
            .as_primitive::<arrow_array::types::Int32Type>();
        assert_eq!(n.values().to_vec(), vec![0, 2]);
        let lines = out.records.column(1).as_list::<i32>();
        assert_eq!(lines.value_offsets(), &[0, 1, 1]);
        let items = lines.values().as_struct();
        let at = items
            .column_by_name("at")
            .unwrap()
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(at.values().to_vec(), vec![1_000]);
        let kind = items.column_by_name("kind").unwrap().as_string::<i32>();
        assert_eq!(kind.value(0), "A");
        let opens = items
            .column_by_name("opens")
            .unwrap()
            .as_primitive::<arrow_array::types::Time64MicrosecondType>();
        assert_eq!(opens.values().to_vec(), vec![86_399_999_000]);
        let tags = out.records.column(2).as_list::<i32>();
        assert_eq!(tags.value(1).as_string::<i32>().value(0), "t2");
    }
}
