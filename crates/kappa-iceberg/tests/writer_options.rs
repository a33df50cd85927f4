//! What `WriterOptions` and the table's properties change in the data files written: a distinct
//! column (the dedup key) is written without a dictionary, every other column keeps Parquet's
//! dictionary encoding up to a size, past which it writes plain values (the table's
//! `write.parquet.dict-size-bytes`, else Kappa's 64 KiB); the table's
//! `write.parquet.compression-level` sets the ZSTD level.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::{COMPRESSION_LEVEL, DICTIONARY_SIZE, WriterOptions, write_data_files};
use parquet::basic::{Encoding, PageType};
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

/// The data files written for 20,000 rows valued `<tag>-<offset>` (one partition value) into a
/// fresh table with `property` set to `value` (none: Kappa's default), or the writer's error;
/// the directory holding them goes with them.
async fn write_with(
    property: &str,
    value: Option<&str>,
    tag: &str,
) -> (
    tempfile::TempDir,
    Result<Vec<iceberg::spec::DataFile>, String>,
) {
    let (dir, _config, catalog) = common::sqlite_catalog().await;
    let mut spec = common::events_spec();
    if let Some(value) = value {
        spec.properties
            .insert(property.to_string(), value.to_string());
    }
    let table = ensure_table(catalog.as_ref(), &spec).await.unwrap();
    let batch = common::batch(0, 0, 20_000, tag);
    let files = write_data_files(&table, &[batch], "options", &WriterOptions::default())
        .await
        .map_err(|e| e.to_string());
    (dir, files)
}

/// Bytes of the files written for 20,000 rows into a table with `level` as its
/// `write.parquet.compression-level` (none: Kappa's default), or the error.
async fn written_bytes(level: Option<&str>) -> Result<u64, String> {
    let (_dir, files) = write_with(
        COMPRESSION_LEVEL,
        level,
        "a-value-that-repeats-a-value-that-repeats",
    )
    .await;
    Ok(files?.iter().map(|f| f.file_size_in_bytes()).sum())
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

/// The encoding of each data page of each column, by column name, of the files written for
/// 20,000 distinct values (about 220 KB of dictionary) into a table with `size` as its
/// `write.parquet.dict-size-bytes` (none: Kappa's default), or the error.
async fn data_pages(size: Option<&str>) -> Result<Vec<(String, Vec<Encoding>)>, String> {
    let (_dir, files) = write_with(DICTIONARY_SIZE, size, "a-distinct-value").await;
    let files = files?;
    assert_eq!(files.len(), 1, "one partition value");
    let path = files[0]
        .file_path()
        .trim_start_matches("file://")
        .to_string();
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let group = reader.get_row_group(0).unwrap();
    Ok((0..group.num_columns())
        .map(|i| {
            let name = reader
                .metadata()
                .row_group(0)
                .column(i)
                .column_path()
                .string();
            let pages = group
                .get_column_page_reader(i)
                .unwrap()
                .map(|page| page.unwrap())
                .filter(|page| page.page_type() != PageType::DICTIONARY_PAGE)
                .map(|page| page.encoding())
                .collect();
            (name, pages)
        })
        .collect())
}

#[tokio::test]
async fn a_dictionary_past_the_tables_dictionary_size_falls_back_to_plain_values() {
    let plain = |pages: &[Encoding]| pages.iter().filter(|e| **e == Encoding::PLAIN).count();
    // Kappa's 64 KiB: the distinct column's dictionary is dropped early, the partition column
    // (one value) keeps its dictionary in every page.
    for (column, pages) in data_pages(None).await.unwrap() {
        match column.as_str() {
            "v" => assert!(
                plain(&pages) > 0 && plain(&pages) >= pages.len() - 1,
                "v: {pages:?}"
            ),
            "_kafka_partition" => assert_eq!(plain(&pages), 0, "{column}: {pages:?}"),
            _ => {}
        }
    }
    // A table that allows 1 MiB keeps the distinct column's dictionary throughout.
    for (column, pages) in data_pages(Some("1048576")).await.unwrap() {
        if column == "v" || column == "_kafka_partition" {
            assert_eq!(plain(&pages), 0, "{column}: {pages:?}");
        }
    }
    for invalid in ["0", "-1", "big"] {
        let err = data_pages(Some(invalid)).await.unwrap_err();
        assert!(
            err.contains(DICTIONARY_SIZE) && err.contains(invalid),
            "{invalid}: {err}"
        );
    }
}
