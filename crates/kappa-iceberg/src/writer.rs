//! Arrow batches → partitioned, ZSTD-compressed Parquet data files.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, GenericListArray, MapArray, OffsetSizeTrait, RecordBatch, StructArray,
};
use arrow_schema::{DataType, FieldRef, Fields};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Error, ErrorKind};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::split::Splitter;

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Roll to a new file past this many bytes.
    pub target_file_size: usize,
    /// ZSTD level (1–22) of a table that does not set [`COMPRESSION_LEVEL`].
    pub zstd_level: i32,
    /// Writers a flush may use in parallel when rows arrive faster than one encodes them, each
    /// with its own files (kappa-runtime's writer stage); 1: one file per partition value.
    pub writers: usize,
    /// Top-level columns whose values are distinct row to row (the dedup key), written without a
    /// dictionary: Parquet's dictionary encoder would intern the first [`DICTIONARY_SIZE`] bytes
    /// of them per open file and column, then fall back to plain encoding anyway.
    pub distinct_columns: Vec<String>,
    /// A column chunk's dictionary grows to this many bytes at most, past which the chunk's
    /// values are written plain, for a table that does not set [`DICTIONARY_SIZE`].
    pub dictionary_size: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_size: 128 * 1024 * 1024,
            // Level 1 compressed the orders table's columns 2× faster than level 3 (Parquet's
            // usual default) into about the same size: pyarrow's one file 0.6% smaller, Kappa's
            // files per flush and partition 2% larger (ADR 0013).
            zstd_level: 1,
            writers: 2,
            distinct_columns: Vec::new(),
            // 64 KiB (Parquet's default is 1 MiB, Iceberg's 2 MiB) keeps the dictionary of a
            // column of a few thousand values (restaurant ids, currencies, event types) and
            // drops those of nearly unique ones (timestamps, amounts, order and user ids), whose
            // interning cost 11% of a replay's CPU and whose dictionary indices ZSTD compresses
            // worse than the plain values: the orders table's files 38.0 -> 32.8 MB (ADR 0014).
            dictionary_size: 64 * 1024,
        }
    }
}

/// The Iceberg table property that sets the ZSTD level of the data files written (Iceberg's
/// `write.parquet.compression-level`); without it, [`WriterOptions::zstd_level`].
pub const COMPRESSION_LEVEL: &str = "write.parquet.compression-level";

/// The ZSTD level to write `table`'s files with: its [`COMPRESSION_LEVEL`] property, else
/// `default`. A property that is not a level ZSTD takes is an error naming it.
pub fn zstd_level(table: &Table, default: i32) -> iceberg::Result<ZstdLevel> {
    let invalid = |value: &str| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("table property {COMPRESSION_LEVEL} = {value:?} is not a ZSTD level (1 to 22)"),
        )
    };
    match table.metadata().properties().get(COMPRESSION_LEVEL) {
        Some(value) => value
            .trim()
            .parse()
            .ok()
            .and_then(|level| ZstdLevel::try_new(level).ok())
            .ok_or_else(|| invalid(value)),
        None => ZstdLevel::try_new(default).map_err(|_| invalid(&default.to_string())),
    }
}

/// The Iceberg table property that caps the dictionary of a column chunk in bytes (Iceberg's
/// `write.parquet.dict-size-bytes`); without it, [`WriterOptions::dictionary_size`].
pub const DICTIONARY_SIZE: &str = "write.parquet.dict-size-bytes";

/// The dictionary cap of `table`'s files: its [`DICTIONARY_SIZE`] property, else `default`. A
/// property that is not a positive number of bytes is an error naming it.
pub fn dictionary_size(table: &Table, default: usize) -> iceberg::Result<usize> {
    let Some(value) = table.metadata().properties().get(DICTIONARY_SIZE) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "table property {DICTIONARY_SIZE} = {value:?} is not a positive number of bytes"
                ),
            )
        })
}

/// Writes `batches` (in the table's column order) as data files of `table`, named
/// `<prefix>-<n>.parquet` under the table's data location, one set per partition.
pub async fn write_data_files(
    table: &Table,
    batches: &[RecordBatch],
    prefix: &str,
    options: &WriterOptions,
) -> iceberg::Result<Vec<DataFile>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let mut writer = StreamingWriter::new(table, prefix, options).await?;
    for batch in batches {
        writer.write(batch).await?;
    }
    writer.finish().await
}

type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

enum Inner {
    Unpartitioned(Box<dyn IcebergWriter>),
    Partitioned {
        splitter: Box<Splitter>,
        writer: Box<FanoutWriter<FileWriterBuilder>>,
    },
}

/// Encodes batches into data files as they arrive (one open file per partition value, rolled at
/// the target size), so that encoding overlaps reading; [`StreamingWriter::finish`] closes the
/// files and returns them for a commit. Memory: the open files' unflushed row groups.
pub struct StreamingWriter {
    inner: Inner,
    arrow_schema: arrow_schema::SchemaRef,
    rows: u64,
}

impl std::fmt::Debug for StreamingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingWriter")
            .field("rows", &self.rows)
            .finish()
    }
}

impl StreamingWriter {
    /// A writer for `table`'s current schema and default partition spec; files are named
    /// `<prefix>-<n>.parquet` under the table's data location.
    pub async fn new(
        table: &Table,
        prefix: &str,
        options: &WriterOptions,
    ) -> iceberg::Result<Self> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema)?);
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd_level(table, options.zstd_level)?))
            .set_dictionary_page_size_limit(dictionary_size(table, options.dictionary_size)?);
        for column in &options.distinct_columns {
            properties = properties.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(column.as_str()),
                false,
            );
        }
        let properties = properties.build();
        let builder = DataFileWriterBuilder::new(RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(properties, schema.clone()),
            options.target_file_size,
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata)?,
            DefaultFileNameGenerator::new(prefix.to_string(), None, DataFileFormat::Parquet),
        ));
        let spec = metadata.default_partition_spec().clone();
        let inner = if spec.is_unpartitioned() {
            Inner::Unpartitioned(Box::new(builder.build(None).await?))
        } else {
            Inner::Partitioned {
                splitter: Box::new(Splitter::try_new(schema, spec)?),
                writer: Box::new(FanoutWriter::new(builder)),
            }
        };
        Ok(Self {
            inner,
            arrow_schema,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encodes one batch (in the table's column order).
    pub async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch)?;
        self.rows += batch.num_rows() as u64;
        match &mut self.inner {
            Inner::Unpartitioned(writer) => writer.write(batch).await,
            Inner::Partitioned { splitter, writer } => {
                for (key, part) in splitter.split(&batch)? {
                    writer.write(key, part).await?;
                }
                Ok(())
            }
        }
    }

    /// Closes every open file and returns the data files written.
    pub async fn finish(self) -> iceberg::Result<Vec<DataFile>> {
        match self.inner {
            Inner::Unpartitioned(mut writer) => writer.close().await,
            Inner::Partitioned { writer, .. } => (*writer).close().await,
        }
    }

    /// `batch` with the table's columns, matched by name (never by position), with the table's
    /// exact Arrow types (e.g. iceberg-rust reads `binary` as LargeBinary), nullability and field
    /// ids, at every depth; a column the batch lacks is NULL if the table allows it.
    ///
    /// A column whose type already equals the table's is taken as it is (no per-row work).
    /// Otherwise nested values are conformed recursively: a struct's fields by name (one the
    /// rows lack NULL if the table allows it: rows written before a nested field was added, or
    /// by an older schema version; a required one an error naming its path, `payer.country`), a
    /// list's element, a map's key and value; only leaf values are cast.
    pub fn conform(&self, batch: &RecordBatch) -> iceberg::Result<RecordBatch> {
        let invalid = |message: String| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("batch does not match the table schema: {message}"),
            )
        };
        let columns = self
            .arrow_schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => {
                    conform_array(column, field.data_type(), field.name()).map_err(invalid)
                }
                None if field.is_nullable() => Ok(arrow_array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                )),
                None => Err(invalid(format!(
                    "the rows have no column {:?}, which the table requires",
                    field.name()
                ))),
            })
            .collect::<iceberg::Result<Vec<_>>>()?;
        RecordBatch::try_new(self.arrow_schema.clone(), columns).map_err(|e| invalid(e.to_string()))
    }
}

/// `array` (the rows' values at `path`, Iceberg's full name: `payer.country`,
/// `lines.element.sku`, `attrs.value`) as `target`, the table's Arrow type there: struct fields
/// matched by name, a field the rows lack NULL if the table allows it (an error naming its path
/// if not), one the table lacks left out (as a column is); list elements and map keys and values conformed in turn; leaf values cast. The
/// result carries the table's field names, nullability and metadata (`PARQUET:field_id`) at
/// every depth. An array of the target type already is returned as it is.
fn conform_array(array: &ArrayRef, target: &DataType, path: &str) -> Result<ArrayRef, String> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    let failed = |e: arrow_schema::ArrowError| format!("column {path}: {e}");
    match (array.data_type(), target) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            conform_struct(array.as_struct(), fields, path).map(|a| Arc::new(a) as ArrayRef)
        }
        (DataType::List(_), DataType::List(element)) => {
            conform_list(array.as_list::<i32>(), element, path)
        }
        (DataType::LargeList(_), DataType::LargeList(element)) => {
            conform_list(array.as_list::<i64>(), element, path)
        }
        // Another offset width: the elements conformed first, so that the cast only widens or
        // narrows the offsets.
        (DataType::List(_), DataType::LargeList(element)) => {
            let list = conform_list(array.as_list::<i32>(), element, path)?;
            arrow_cast::cast(&list, target).map_err(failed)
        }
        (DataType::LargeList(_), DataType::List(element)) => {
            let list = conform_list(array.as_list::<i64>(), element, path)?;
            arrow_cast::cast(&list, target).map_err(failed)
        }
        (DataType::Map(_, _), DataType::Map(entries, sorted)) => {
            conform_map(array.as_map(), entries, *sorted, path)
        }
        _ => arrow_cast::cast(array, target).map_err(failed),
    }
}

/// A struct's fields matched by name (see [`conform_array`]); its own NULLs kept.
fn conform_struct(array: &StructArray, fields: &Fields, path: &str) -> Result<StructArray, String> {
    let children = fields
        .iter()
        .map(|field| {
            let inner = format!("{path}.{}", field.name());
            match array.column_by_name(field.name()) {
                Some(child) => conform_array(child, field.data_type(), &inner),
                None if field.is_nullable() => {
                    Ok(arrow_array::new_null_array(field.data_type(), array.len()))
                }
                None => Err(format!(
                    "the rows have no field {inner:?}, which the table requires"
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    StructArray::try_new_with_length(
        fields.clone(),
        children,
        array.nulls().cloned(),
        array.len(),
    )
    .map_err(|e| format!("column {path}: {e}"))
}

/// A list with its elements conformed to `element` (at `<path>.element`), as a list of the
/// same offset width.
fn conform_list<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    element: &FieldRef,
    path: &str,
) -> Result<ArrayRef, String> {
    let values = conform_array(
        list.values(),
        element.data_type(),
        &format!("{path}.element"),
    )?;
    GenericListArray::<O>::try_new(
        element.clone(),
        list.offsets().clone(),
        values,
        list.nulls().cloned(),
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| format!("column {path}: {e}"))
}

/// A map with its keys and values (by position: an Arrow map's entries are a key and a value,
/// whatever they are named) conformed to `entries`'s (at `<path>.key`, `<path>.value`).
fn conform_map(
    map: &MapArray,
    entries: &FieldRef,
    sorted: bool,
    path: &str,
) -> Result<ArrayRef, String> {
    let DataType::Struct(pair) = entries.data_type() else {
        return Err(format!(
            "column {path}: the table's map entries are {}, not a struct",
            entries.data_type()
        ));
    };
    let rows = map.entries();
    let ([key_field, value_field], [keys, values]) = (&pair[..], rows.columns()) else {
        return Err(format!(
            "column {path}: a map's entries must be a key and a value"
        ));
    };
    let keys = conform_array(keys, key_field.data_type(), &format!("{path}.key"))?;
    let values = conform_array(values, value_field.data_type(), &format!("{path}.value"))?;
    let rows = StructArray::try_new_with_length(
        pair.clone(),
        vec![keys, values],
        rows.nulls().cloned(),
        rows.len(),
    )
    .map_err(|e| format!("column {path}: {e}"))?;
    MapArray::try_new(
        entries.clone(),
        map.offsets().clone(),
        rows,
        map.nulls().cloned(),
        sorted,
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| format!("column {path}: {e}"))
}

/// Reads a data file of `table` that no snapshot may reference yet (a backfill's staged file),
/// calling `each` with its batches. The file is read whole into memory (one file at a time:
/// data files are at most about `target_file_size`).
pub async fn read_data_file(
    table: &Table,
    path: &str,
    mut each: impl FnMut(&RecordBatch) -> iceberg::Result<()>,
) -> iceberg::Result<()> {
    let bytes = table.file_io().new_input(path)?.read().await?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.with_batch_size(65_536).build())
        .map_err(|e| {
            Error::new(ErrorKind::DataInvalid, format!("reading {path}")).with_source(e)
        })?;
    for batch in reader {
        let batch = batch.map_err(|e| {
            Error::new(ErrorKind::DataInvalid, format!("reading {path}")).with_source(e)
        })?;
        each(&batch)?;
    }
    Ok(())
}

/// `file` (a data file of `table`'s default partition spec) as JSON, for a manifest of files
/// not committed yet; [`data_file_from_json`] reads it back.
pub fn data_file_to_json(table: &Table, file: DataFile) -> iceberg::Result<String> {
    let metadata = table.metadata();
    let partition_type = metadata
        .default_partition_spec()
        .partition_type(metadata.current_schema())?;
    iceberg::spec::serialize_data_file_to_json(file, &partition_type, metadata.format_version())
}

/// A data file of `table`'s default partition spec from [`data_file_to_json`]'s JSON.
pub fn data_file_from_json(table: &Table, json: &str) -> iceberg::Result<DataFile> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let partition_type = spec.partition_type(metadata.current_schema())?;
    iceberg::spec::deserialize_data_file_from_json(
        json,
        spec.spec_id(),
        &partition_type,
        metadata.current_schema(),
    )
}

/// Copies data files `from` wrote (of its default partition spec) under `to`'s location, the
/// same relative path below it, and returns them as data files of `to`. A quarantined flush is
/// written before the gates judge it; its files then move to the quarantine table, so that
/// every table's files live under its own location (a catalog's orphan cleanup of the main
/// table would otherwise delete files the quarantine table references). The originals are the
/// caller's to delete once the copies are committed.
pub async fn copy_data_files(
    from: &Table,
    to: &Table,
    files: &[DataFile],
) -> iceberg::Result<Vec<DataFile>> {
    let from_root = from.metadata().location().trim_end_matches('/');
    let to_root = to.metadata().location().trim_end_matches('/');
    let mut copies = Vec::with_capacity(files.len());
    for file in files {
        let path = file.file_path();
        let relative = path
            .strip_prefix(from_root)
            .map(|rest| rest.trim_start_matches('/').to_string())
            .unwrap_or_else(|| format!("data/{}", path.rsplit('/').next().unwrap_or(path)));
        let target = format!("{to_root}/{relative}");
        let bytes = from.file_io().new_input(path)?.read().await?;
        to.file_io().new_output(&target)?.write(bytes).await?;
        let mut json: serde_json::Value =
            serde_json::from_str(&data_file_to_json(from, file.clone())?).map_err(|e| {
                Error::new(ErrorKind::Unexpected, "re-reading a data file's JSON").with_source(e)
            })?;
        match json.get_mut("file_path") {
            Some(value) => *value = serde_json::Value::String(target),
            None => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    "a data file's JSON has no file_path",
                ));
            }
        }
        copies.push(data_file_from_json(to, &json.to_string())?);
    }
    Ok(copies)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::builder::{Int32Builder, MapBuilder, StringBuilder};
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_array::{Int32Array, LargeListArray, StringArray};
    use arrow_schema::Field;

    use super::*;

    /// A field with a `PARQUET:field_id`.
    fn field(name: &str, data_type: DataType, nullable: bool, id: i32) -> FieldRef {
        Arc::new(
            Field::new(name, data_type, nullable).with_metadata(HashMap::from([(
                parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_string(),
                id.to_string(),
            )])),
        )
    }

    /// `{b: int, a: string}`, the second row NULL.
    fn older() -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("b", DataType::Int32, true),
            Field::new("a", DataType::Utf8, false),
        ]);
        Arc::new(
            StructArray::try_new(
                fields,
                vec![
                    Arc::new(Int32Array::from(vec![1, 2])),
                    Arc::new(StringArray::from(vec!["x", "y"])),
                ],
                Some(vec![true, false].into()),
            )
            .unwrap(),
        )
    }

    /// The table's `{a: string (required), b: long, c: string}`, with field ids.
    fn table_struct() -> DataType {
        DataType::Struct(Fields::from(vec![
            field("a", DataType::Utf8, false, 5),
            field("b", DataType::Int64, true, 6),
            field("c", DataType::Utf8, true, 7),
        ]))
    }

    #[test]
    fn an_array_of_the_table_type_is_taken_as_it_is() {
        let array = older();
        let same = conform_array(&array, array.data_type(), "s").unwrap();
        assert!(Arc::ptr_eq(&array, &same));
    }

    #[test]
    fn struct_fields_are_matched_by_name_and_missing_ones_are_null() {
        let conformed = conform_array(&older(), &table_struct(), "s").unwrap();
        assert_eq!(conformed.data_type(), &table_struct());
        let s = conformed.as_struct();
        assert_eq!(s.column(0).as_string::<i32>().value(0), "x");
        assert_eq!(s.column(1).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(s.column(2).null_count(), 2);
        assert!(s.is_valid(0) && s.is_null(1));
    }

    #[test]
    fn list_elements_are_conformed_and_the_offsets_kept() {
        // Offsets [0, 2, 2], the second list NULL.
        let shape = LargeListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(0), Some(0)]),
            None,
        ]);
        let element = Arc::new(Field::new("item", older().data_type().clone(), true));
        let list: ArrayRef = Arc::new(
            LargeListArray::try_new(
                element,
                shape.offsets().clone(),
                older(),
                shape.nulls().cloned(),
            )
            .unwrap(),
        );
        let target = DataType::List(field("element", table_struct(), true, 4));
        let conformed = conform_array(&list, &target, "lines").unwrap();
        assert_eq!(conformed.data_type(), &target);
        let list = conformed.as_list::<i32>();
        assert_eq!(list.value_offsets(), &[0, 2, 2]);
        assert!(list.is_null(1));
        assert_eq!(
            list.value(0)
                .as_struct()
                .column(0)
                .as_string::<i32>()
                .value(1),
            "y"
        );
        // A required field the elements lack is named by its path.
        let target = DataType::List(field(
            "element",
            DataType::Struct(Fields::from(vec![field("d", DataType::Utf8, false, 8)])),
            true,
            4,
        ));
        let list: ArrayRef = Arc::new(list.clone());
        let err = conform_array(&list, &target, "lines").unwrap_err();
        assert!(err.contains("\"lines.element.d\""), "{err}");
    }

    #[test]
    fn map_keys_and_values_are_conformed_by_position() {
        // arrow-rs's builder names the entries `entries`, `keys` and `values`.
        let mut builder = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
        builder.keys().append_value("k");
        builder.values().append_value(3);
        builder.append(true).unwrap();
        builder.append(false).unwrap();
        let map: ArrayRef = Arc::new(builder.finish());
        let entries = Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                field("key", DataType::Utf8, false, 2),
                field("value", DataType::Int64, true, 3),
            ])),
            false,
        ));
        let target = DataType::Map(entries, false);
        let conformed = conform_array(&map, &target, "attrs").unwrap();
        assert_eq!(conformed.data_type(), &target);
        let map = conformed.as_map();
        assert_eq!(map.keys().as_string::<i32>().value(0), "k");
        assert_eq!(map.values().as_primitive::<Int64Type>().value(0), 3);
        assert!(map.is_null(1));
    }
}
