//! What `WriterOptions` and the table's properties change in the data files written: a distinct
//! column (the dedup key) is written without a dictionary, every other column keeps Parquet's
//! dictionary encoding; the table's `write.parquet.compression-level` sets the ZSTD level.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::{COMPRESSION_LEVEL, WriterOptions, write_data_files};
use parquet::basic::Encoding;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// The encodings of each column chunk of each file written with `options`, by column name.
async fn encodings(options: WriterOptions) -> Vec<Vec<(String, Vec<Encoding>)>> {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let table = ensure_table(catalog.as_ref(), &common::events_spec())
        .await
        .unwrap();
    // 2,000 short values: their dictionary stays under Parquet's 1 MiB limit, so only the option
    // turns it off.
    let batch = common::batch(0, 0, 2_000, "v");
    let files = write_data_files(&table, &[batch], "options", &options)
        .await
        .unwrap();
    assert!(!files.is_empty());
    files
        .iter()
        .map(|file| {
            let path = file.file_path().trim_start_matches("file://");
            let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
            let group = reader.metadata().row_group(0);
            group
                .columns()
                .iter()
                .map(|c| (c.column_path().string(), c.encodings().collect()))
                .collect()
        })
        .collect()
}

fn dictionary(encodings: &[Encoding]) -> bool {
    encodings
        .iter()
        .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
}

#[tokio::test]
async fn a_distinct_column_is_written_without_a_dictionary_and_the_others_keep_theirs() {
    for file in encodings(WriterOptions::default()).await {
        for (column, encodings) in &file {
            assert!(dictionary(encodings), "{column}: {encodings:?} by default");
        }
    }
    let options = WriterOptions {
        distinct_columns: vec!["v".into()],
        ..WriterOptions::default()
    };
    for file in encodings(options).await {
        for (column, encodings) in &file {
            assert_eq!(
                dictionary(encodings),
                column != "v",
                "{column}: {encodings:?}"
            );
        }
    }
}

/// Bytes of the files written for 20,000 rows into a table with `level` as its
/// `write.parquet.compression-level` (none: Kappa's default), or the error.
async fn written_bytes(level: Option<&str>) -> Result<u64, String> {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let mut spec = common::events_spec();
    if let Some(level) = level {
        spec.properties
            .insert(COMPRESSION_LEVEL.to_string(), level.to_string());
    }
    let table = ensure_table(catalog.as_ref(), &spec).await.unwrap();
    let batch = common::batch(0, 0, 20_000, "a-value-that-repeats-a-value-that-repeats");
    let files = write_data_files(&table, &[batch], "level", &WriterOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(files.iter().map(|f| f.file_size_in_bytes()).sum())
}

#[tokio::test]
async fn the_tables_compression_level_property_sets_the_zstd_level() {
    let default = written_bytes(None).await.unwrap();
    assert_eq!(
        written_bytes(Some("1")).await.unwrap(),
        default,
        "level 1 by default"
    );
    let nineteen = written_bytes(Some("19")).await.unwrap();
    assert!(
        nineteen < default,
        "level 19: {nineteen} bytes, level 1: {default}"
    );
    for invalid in ["0", "23", "fast"] {
        let err = written_bytes(Some(invalid)).await.unwrap_err();
        assert!(
            err.contains(COMPRESSION_LEVEL) && err.contains(invalid),
            "{invalid}: {err}"
        );
    }
}
