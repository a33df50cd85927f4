//! What `WriterOptions` change in the data files written: a distinct column (the dedup key) is
//! written without a dictionary, every other column keeps Parquet's dictionary encoding.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::{WriterOptions, write_data_files};
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
