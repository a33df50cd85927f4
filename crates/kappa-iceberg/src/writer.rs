//! Arrow batches → partitioned, ZSTD-compressed Parquet data files.

use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
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

/// How data files are written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Roll to a new file past this many bytes.
    pub target_file_size: usize,
    /// ZSTD level (1–22).
    pub zstd_level: i32,
    /// Writers a flush may use in parallel when rows arrive faster than one encodes them, each
    /// with its own files (kappa-runtime's writer stage); 1: one file per partition value.
    pub writers: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_size: 128 * 1024 * 1024,
            zstd_level: 3,
            writers: 2,
        }
    }
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
        splitter: Box<RecordBatchPartitionSplitter>,
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
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(options.zstd_level)
                    .map_err(|e| Error::new(ErrorKind::DataInvalid, e.to_string()))?,
            ))
            .build();
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
                splitter: Box::new(RecordBatchPartitionSplitter::try_new_with_computed_values(
                    schema, spec,
                )?),
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

    /// `batch` with the table's columns, matched by name (never by position), with the table's exact Arrow
    /// types (e.g. iceberg-rust reads `binary` as LargeBinary) and field ids; a column the batch
    /// lacks is NULL if the table allows it.
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
                Some(column) => arrow_cast::cast(column, field.data_type())
                    .map_err(|e| invalid(format!("column {}: {e}", field.name()))),
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
