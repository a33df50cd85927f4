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
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            target_file_size: 128 * 1024 * 1024,
            zstd_level: 3,
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
    // Same columns, the table's exact Arrow types (e.g. iceberg-rust reads `binary` as
    // LargeBinary) and field ids.
    let conform = |batch: &RecordBatch| -> iceberg::Result<RecordBatch> {
        let invalid = |e: arrow_schema::ArrowError| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("batch does not match the table schema: {e}"),
            )
        };
        let columns = batch
            .columns()
            .iter()
            .zip(arrow_schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    arrow_cast::cast(column, field.data_type()).map_err(invalid)
                }
            })
            .collect::<iceberg::Result<Vec<_>>>()?;
        RecordBatch::try_new(arrow_schema.clone(), columns).map_err(invalid)
    };
    let spec = metadata.default_partition_spec().clone();
    if spec.is_unpartitioned() {
        let mut writer = builder.build(None).await?;
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            writer.write(conform(batch)?).await?;
        }
        return writer.close().await;
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
    let mut writer = FanoutWriter::new(builder);
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        for (key, part) in splitter.split(&conform(batch)?)? {
            writer.write(key, part).await?;
        }
    }
    writer.close().await
}
