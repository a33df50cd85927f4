//! `[table] kafka_metadata`: the columns, their ids and types, and filling them from what the
//! source knows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use kappa_core::KafkaMetadata;
use kappa_schema::{KafkaRecordMetadata, TableMapping};

const V1: &str = r#"{"type":"record","name":"P","fields":[
  {"name":"id","type":"string"},
  {"name":"tags","type":{"type":"array","items":"string"}}]}"#;
const V2: &str = r#"{"type":"record","name":"P","fields":[
  {"name":"id","type":"string"},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"note","type":["null","string"],"default":null}]}"#;

fn id(field: &arrow_schema::Field) -> String {
    field.metadata()["PARQUET:field_id"].clone()
}

#[test]
fn the_columns_follow_the_coordinates_and_later_versions_follow_them() {
    let all = KafkaMetadata::ALL;
    let mapping = TableMapping::from_history_with(&[V1, V2], &all).unwrap();
    let table = mapping.table_schema();
    let names: Vec<&str> = table.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "tags",
            "_kafka_partition",
            "_kafka_offset",
            "_kafka_key",
            "_kafka_timestamp",
            "_kafka_headers",
            "note"
        ]
    );
    let ids: Vec<String> = table.fields().iter().map(|f| id(f)).collect();
    // The first version's level: columns 1..2, coordinates 3..4, metadata 5..7; then its nested
    // fields as a catalog numbers a new table (tags' element 8, the headers' element 9, the
    // element's key and value 10, 11); then version 2's column.
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "12"]);
    let DataType::List(element) = table.field_with_name("_kafka_headers").unwrap().data_type()
    else {
        panic!()
    };
    assert_eq!(id(element), "9");
    assert!(!element.is_nullable());
    let DataType::Struct(header) = element.data_type() else {
        panic!()
    };
    let fields: Vec<(String, String, bool)> = header
        .iter()
        .map(|f| (f.name().clone(), id(f), f.is_nullable()))
        .collect();
    assert_eq!(
        fields,
        [
            ("key".to_string(), "10".to_string(), false),
            ("value".to_string(), "11".to_string(), true)
        ]
    );
    let DataType::List(tag) = table.field_with_name("tags").unwrap().data_type() else {
        panic!()
    };
    assert_eq!(id(tag), "8");
    // Every column is optional; the value schema ends with them.
    for m in all {
        assert!(table.field_with_name(m.column()).unwrap().is_nullable());
    }
    let values: Vec<&str> = mapping
        .value_schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        values,
        [
            "id",
            "tags",
            "note",
            "_kafka_key",
            "_kafka_timestamp",
            "_kafka_headers"
        ]
    );
    // Without metadata the ids are those of the plain history.
    let plain = TableMapping::from_history(&[V1, V2]).unwrap();
    assert_eq!(
        id(plain.table_schema().field_with_name("note").unwrap()),
        "6"
    );
}

#[test]
fn the_source_fills_them_row_by_row() {
    let only_id = r#"{"type":"record","name":"P","fields":[{"name":"id","type":"string"}]}"#;
    let mapping = TableMapping::from_history_with(&[only_id], &KafkaMetadata::ALL).unwrap();
    let values = mapping.value_schema().clone();
    let rows = 3;
    let mut columns = Vec::new();
    for field in values.fields() {
        columns.push(match field.name().as_str() {
            "id" => Arc::new(StringArray::from(vec!["a", "b", "c"])) as _,
            _ => arrow_array::new_null_array(field.data_type(), rows),
        });
    }
    let records = RecordBatch::try_new(values, columns).unwrap();
    let headers = vec![
        ("trace".to_string(), Some(b"t-1".to_vec())),
        ("trace".to_string(), None),
    ];
    let metadata = [
        KafkaRecordMetadata {
            key: Some(b"k1"),
            timestamp_ms: Some(1_700_000_000_123),
            headers: Some(&headers),
        },
        KafkaRecordMetadata::default(),
        KafkaRecordMetadata {
            key: None,
            timestamp_ms: Some(0),
            headers: Some(&[]),
        },
    ];
    let filled = mapping
        .fill_kafka_metadata(records, metadata.iter().copied())
        .unwrap();
    let keys = filled
        .column_by_name("_kafka_key")
        .unwrap()
        .as_binary::<i32>();
    assert_eq!(keys.value(0), b"k1");
    assert!(keys.is_null(1) && keys.is_null(2));
    let ts = filled
        .column_by_name("_kafka_timestamp")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_700_000_000_123_000);
    assert!(ts.is_null(1));
    assert_eq!(ts.value(2), 0);
    let lists = filled
        .column_by_name("_kafka_headers")
        .unwrap()
        .as_list::<i32>();
    assert!(lists.is_null(1), "unknown headers are NULL");
    assert_eq!(lists.value(2).len(), 0, "no headers is an empty list");
    let first = lists.value(0);
    let first = first.as_struct();
    let keys = first.column(0).as_string::<i32>();
    let values = first.column(1).as_binary::<i32>();
    assert_eq!((keys.value(0), values.value(0)), ("trace", &b"t-1"[..]));
    assert_eq!(keys.value(1), "trace");
    assert!(
        values.is_null(1),
        "repeated keys and value-less headers are kept"
    );
    // A count that does not match is an error, not a misaligned column.
    let err = mapping
        .fill_kafka_metadata(filled.clone(), metadata[..2].iter().copied())
        .unwrap_err();
    assert!(
        err.to_string().contains("2 metadata rows for 3 records"),
        "{err}"
    );
}

#[test]
fn a_value_field_named_like_a_metadata_column_is_refused() {
    let clash = r#"{"type":"record","name":"P","fields":[{"name":"_kafka_key","type":"bytes"}]}"#;
    let err = TableMapping::from_history_with(&[clash], &[KafkaMetadata::Key]).unwrap_err();
    assert!(err.to_string().contains("_kafka_key"), "{err}");
    assert!(TableMapping::from_history_with(&[clash], &[KafkaMetadata::Timestamp]).is_ok());
}
