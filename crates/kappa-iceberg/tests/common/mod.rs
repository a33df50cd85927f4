//! What the committer and producer tests share: a SQLite catalog over a local warehouse, and a
//! small table of Kafka coordinates partitioned by Kafka partition.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use iceberg::Catalog;
use iceberg::spec::{NestedField, PrimitiveType, Transform, Type};
use kappa_core::{OffsetRange, TopicPartition};
use kappa_iceberg::{CatalogConfig, PartitionField, PendingCommit, TableSpec, connect};

/// A SQLite catalog in a new temporary directory (dropped with it).
pub async fn sqlite_catalog() -> (tempfile::TempDir, CatalogConfig, Arc<dyn Catalog>) {
    let dir = tempfile::tempdir().unwrap();
    let config = CatalogConfig {
        name: "kappa".into(),
        kind: kappa_iceberg::CatalogType::Sql,
        uri: format!("sqlite://{}/catalog.db", dir.path().display()),
        warehouse: format!("file://{}/warehouse", dir.path().display()),
        properties: HashMap::new(),
    };
    let catalog = connect(&config).await.unwrap();
    (dir, config, catalog)
}

/// `test.events`: a value `v`, `_kafka_partition` (the partition key) and `_kafka_offset`.
pub fn events_spec() -> TableSpec {
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "v", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(2, "_kafka_partition", Type::Primitive(PrimitiveType::Int))
                .into(),
            NestedField::required(3, "_kafka_offset", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    TableSpec {
        namespace: "test".into(),
        name: "events".into(),
        schema,
        partition_by: vec![PartitionField {
            column: "_kafka_partition".into(),
            transform: Transform::Identity,
        }],
        properties: HashMap::new(),
    }
}

/// Rows of `partition` at offsets `start..end`, valued `<tag>-<offset>`.
pub fn batch(partition: i32, start: i64, end: i64, tag: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Utf8, false),
        Field::new("_kafka_partition", DataType::Int32, false),
        Field::new("_kafka_offset", DataType::Int64, false),
    ]));
    let offsets: Vec<i64> = (start..end).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            offsets.iter().map(|o| format!("{tag}-{o}")),
        )),
        Arc::new(Int32Array::from(vec![partition; offsets.len()])),
        Arc::new(Int64Array::from(offsets)),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

/// A commit of topic `t`'s `partition`, offsets `start..end` (rows `row-<offset>`).
pub fn pending(partition: i32, start: i64, end: i64) -> PendingCommit {
    PendingCommit {
        input: BTreeMap::from([(
            TopicPartition::new("t", partition),
            OffsetRange::new(start, end),
        )]),
        batches: vec![batch(partition, start, end, "row")],
        ..PendingCommit::default()
    }
}

/// Field ids by full name (`lines.element.sku`; a map's entries field, which is no Iceberg
/// field, left out of the name) of Arrow fields, from their `PARQUET:field_id` metadata.
pub fn arrow_ids(fields: &[Arc<Field>]) -> BTreeMap<String, i32> {
    fn walk(prefix: &str, field: &Field, out: &mut BTreeMap<String, i32>) {
        let path = if prefix.is_empty() {
            field.name().clone()
        } else {
            format!("{prefix}.{}", field.name())
        };
        let id = field
            .metadata()
            .get("PARQUET:field_id")
            .unwrap_or_else(|| panic!("{path} has no field id"))
            .parse()
            .unwrap();
        out.insert(path.clone(), id);
        match field.data_type() {
            DataType::Struct(fields) => fields.iter().for_each(|f| walk(&path, f, out)),
            DataType::List(element) | DataType::LargeList(element) => walk(&path, element, out),
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(pair) => pair.iter().for_each(|f| walk(&path, f, out)),
                other => panic!("map entries {other}"),
            },
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    fields.iter().for_each(|f| walk("", f, &mut out));
    out
}
