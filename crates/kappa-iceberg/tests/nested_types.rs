//! Every Avro type Kappa maps — decimals on bytes and on fixed, times, timestamps, dates, uuids,
//! enums, fixed, arrays, maps and nested records, nullable or not — from Avro records in the
//! Confluent wire format, through the wire decoder (arrow-avro) and the table mapping, written by
//! the committer's Parquet writer into a table of a real SQL catalog, and read back: the rows
//! hold exactly the values the records were built from, the data files carry the table's field
//! ids at every depth, and the table — created from the newest version or created from the first
//! and evolved — has the ids the subject's history gives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use futures::TryStreamExt;
use iceberg::Catalog;
use iceberg::spec::{NestedField, PrimitiveType, StructType, Type};
use iceberg::table::Table;
use kappa_core::{OFFSET_COLUMN, OffsetRange, PARTITION_COLUMN, TopicPartition};
use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::WriterOptions;
use kappa_iceberg::{Committer, PartitionField, PendingCommit, TableSpec};
use kappa_schema::{FileRegistry, TableMapping, WireDecoder};

include!("../../kappa-schema/tests/data/payments.rs");

const SUBJECT: &str = "payments-value";

/// The table spec for the mapping of `history`, partitioned by Kafka partition.
fn spec(name: &str, mapping: &TableMapping) -> TableSpec {
    TableSpec {
        namespace: "test".into(),
        name: name.into(),
        schema: mapping.iceberg_schema().unwrap(),
        partition_by: vec![PartitionField {
            column: PARTITION_COLUMN.into(),
            transform: iceberg::spec::Transform::Identity,
        }],
        properties: HashMap::new(),
    }
}

/// Field ids by full name (`lines.element.sku`) of an Iceberg schema.
fn iceberg_ids(schema: &iceberg::spec::Schema) -> BTreeMap<String, i32> {
    schema
        .field_id_to_name_map()
        .iter()
        .map(|(id, name)| (name.clone(), *id))
        .collect()
}

/// Wire-format messages of `payments` (with version 2's writer schema where `v2`), decoded and
/// mapped for `mapping`, as the table rows of partition 0 at offsets `first..`. On a blocking
/// thread, as the pipeline decodes (the decoder waits for its registry).
async fn rows(
    mapping: &Arc<TableMapping>,
    payments: &[(Payment, bool)],
    first: i64,
) -> RecordBatch {
    let (mapping, payments) = (mapping.clone(), payments.to_vec());
    tokio::task::spawn_blocking(move || decode(&mapping, &payments, first))
        .await
        .unwrap()
}

fn decode(mapping: &Arc<TableMapping>, payments: &[(Payment, bool)], first: i64) -> RecordBatch {
    let registry = FileRegistry::from_schemas(SUBJECT, [PAYMENTS_V1, PAYMENTS_V2]).unwrap();
    let versions = registry.subject_versions(SUBJECT).unwrap();
    let messages: Vec<Vec<u8>> = payments
        .iter()
        .map(|(p, v2)| {
            let writer = &versions[usize::from(*v2)];
            let mut message = vec![0];
            message.extend_from_slice(&writer.id.to_be_bytes());
            message.extend(
                apache_avro::to_avro_datum(&writer.schema, payment_record(p, *v2)).unwrap(),
            );
            message
        })
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let out = WireDecoder::new(mapping.clone(), Arc::new(registry))
        .decode(&refs)
        .unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    let offsets: Vec<i64> = (first..first + payments.len() as i64).collect();
    mapping.table_batch(&out.records, 0, &offsets).unwrap()
}

async fn commit(catalog: &Arc<dyn Catalog>, table: Table, batch: RecordBatch, start: i64) {
    let end = start + batch.num_rows() as i64;
    let mut committer =
        Committer::new(catalog.clone(), table, "p", WriterOptions::default(), 5).unwrap();
    committer
        .commit(PendingCommit {
            input: BTreeMap::from([(
                TopicPartition::new("payments", 0),
                OffsetRange::new(start, end),
            )]),
            batches: vec![batch],
            ..PendingCommit::default()
        })
        .await
        .unwrap();
}

/// Every row of the table through iceberg-rust's scan, by offset.
async fn scan(table: &Table) -> Vec<(i64, RecordBatch, usize)> {
    let batches: Vec<RecordBatch> = table
        .scan()
        .select_all()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    by_offset(&batches)
}

/// The table's data files, read whole: each one's Arrow schema as its Parquet footer describes
/// it (with the field ids it was written with) and its rows.
async fn data_files(table: &Table) -> Vec<(arrow_schema::SchemaRef, Vec<RecordBatch>)> {
    let tasks: Vec<_> = table
        .scan()
        .select_all()
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut files = Vec::new();
    for task in tasks {
        let bytes = table
            .file_io()
            .new_input(&task.data_file_path)
            .unwrap()
            .read()
            .await
            .unwrap();
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let schema = builder.schema().clone();
        let batches = builder
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        files.push((schema, batches));
    }
    files
}

/// Every row of `batches`, by offset.
fn by_offset(batches: &[RecordBatch]) -> Vec<(i64, RecordBatch, usize)> {
    let mut rows = Vec::new();
    for batch in batches {
        let offsets = batch
            .column_by_name(OFFSET_COLUMN)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            rows.push((offsets.value(row), batch.clone(), row));
        }
    }
    rows.sort_by_key(|(offset, _, _)| *offset);
    rows
}

/// Checks that `rows` (by offset, from 0) hold exactly `expected`.
fn assert_rows(rows: &[(i64, RecordBatch, usize)], expected: &[(Payment, bool)]) {
    let offsets: Vec<i64> = rows.iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, (0..expected.len() as i64).collect::<Vec<_>>());
    for ((offset, batch, row), (payment, _)) in rows.iter().zip(expected) {
        assert_eq!(
            read_payment(batch, *row, true),
            canonical(payment),
            "offset {offset}"
        );
    }
}

#[tokio::test]
async fn every_type_round_trips_through_a_table_evolved_with_nested_fields() {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let v1 = Arc::new(TableMapping::from_history(&[PAYMENTS_V1]).unwrap());
    let v2 = Arc::new(TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap());

    // Version 1: the table is created, and version 1's records written.
    let table = ensure_table(catalog.as_ref(), &spec("payments", &v1))
        .await
        .unwrap();
    assert_eq!(
        iceberg_ids(table.metadata().current_schema()),
        iceberg_ids(&v1.iceberg_schema().unwrap())
    );
    let first: Vec<(Payment, bool)> = (0..6).map(|i| (payment(i, false), false)).collect();
    commit(&catalog, table, rows(&v1, &first, 0).await, 0).await;

    // Version 2 adds nested fields and a nested column: the table evolves, and records of both
    // versions are written with the new mapping.
    let table = ensure_table(catalog.as_ref(), &spec("payments", &v2))
        .await
        .unwrap();
    let schema = table.metadata().current_schema();
    assert_eq!(
        iceberg_ids(schema),
        iceberg_ids(&v2.iceberg_schema().unwrap())
    );
    assert_eq!(schema.as_struct(), v2.iceberg_schema().unwrap().as_struct());
    let second: Vec<(Payment, bool)> = (6..14)
        .map(|i| (payment(i, i % 3 != 0), i % 3 != 0))
        .collect();
    commit(&catalog, table, rows(&v2, &second, 6).await, 6).await;

    let table = catalog
        .load_table(&spec("payments", &v2).ident().unwrap())
        .await
        .unwrap();
    let expected: Vec<(Payment, bool)> = first.iter().chain(&second).cloned().collect();
    // Read file by file: iceberg-rust 0.10's scan cannot read a file written before a struct
    // gained a field (apache/iceberg-rust#2617; Iceberg Java, PyIceberg and DuckDB read NULL).
    let files = data_files(&table).await;
    assert_eq!(files.len(), 2);
    let all: Vec<RecordBatch> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    let rows = by_offset(&all);
    assert_rows(&rows, &expected);
    // The values of version 2's fields are there, and none in the rows written before.
    assert!(
        rows[6..]
            .iter()
            .any(|(_, b, r)| read_payment(b, *r, true).refund.is_some())
    );
    assert!(
        rows[..6]
            .iter()
            .all(|(_, b, r)| read_payment(b, *r, true).refund.is_none())
    );

    // Every data file carries the table's field ids at every depth: version 1's file those of
    // version 1 (all 50), version 2's all 56.
    let ids = iceberg_ids(table.metadata().current_schema());
    let mut sizes = Vec::new();
    for (schema, _) in &files {
        let in_file = common::arrow_ids(schema.fields());
        for (path, id) in &in_file {
            assert_eq!(ids.get(path), Some(id), "{path}");
        }
        sizes.push(in_file.len());
    }
    sizes.sort();
    assert_eq!(sizes, [50, 56]);
}

#[tokio::test]
async fn every_type_round_trips_through_a_table_scan() {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let mapping = Arc::new(TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap());
    let table = ensure_table(catalog.as_ref(), &spec("payments", &mapping))
        .await
        .unwrap();
    let payments: Vec<(Payment, bool)> = (0..12)
        .map(|i| (payment(i, i % 2 == 0), i % 2 == 0))
        .collect();
    commit(&catalog, table, rows(&mapping, &payments, 0).await, 0).await;
    let table = catalog
        .load_table(&spec("payments", &mapping).ident().unwrap())
        .await
        .unwrap();
    let rows = scan(&table).await;
    assert_rows(&rows, &payments);
    // Spot checks of what the fixture holds, from the inputs (not through `read_payment`).
    let (_, batch, row) = &rows[3];
    let amount = batch
        .column_by_name("amount")
        .unwrap()
        .as_primitive::<arrow_array::types::Decimal128Type>();
    assert_eq!(amount.value(*row), i128::from(payments[3].0.amount));
    assert_eq!(amount.data_type(), &DataType::Decimal128(12, 2));
    let tags = batch
        .column_by_name("tags")
        .unwrap()
        .as_list::<i32>()
        .value(*row);
    assert_eq!(
        tags.as_string::<i32>().iter().flatten().collect::<Vec<_>>(),
        ["tag-3-0", "tag-3-1", "tag-3-2"][..payments[3].0.tags.len()]
    );
}

#[tokio::test]
async fn a_table_created_from_the_newest_version_has_the_ids_of_one_evolved_version_by_version() {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let v1 = TableMapping::from_history(&[PAYMENTS_V1]).unwrap();
    let v2 = TableMapping::from_history(&[PAYMENTS_V1, PAYMENTS_V2]).unwrap();
    let expected = v2.iceberg_schema().unwrap();
    // Kappa's ids for version 2 are not a catalog's fresh numbering of it (version 1's nested
    // fields come before version 2's new column): the table is created from version 1's part
    // and evolved.
    let fresh = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(v2.table_schema()).unwrap();
    assert_ne!(iceberg_ids(&fresh), iceberg_ids(&expected));

    let created = ensure_table(catalog.as_ref(), &spec("created", &v2))
        .await
        .unwrap();
    ensure_table(catalog.as_ref(), &spec("evolved", &v1))
        .await
        .unwrap();
    let evolved = ensure_table(catalog.as_ref(), &spec("evolved", &v2))
        .await
        .unwrap();
    for table in [&created, &evolved] {
        let schema = table.metadata().current_schema();
        assert_eq!(
            schema.as_struct(),
            expected.as_struct(),
            "{}",
            table.identifier()
        );
        assert_eq!(table.metadata().last_column_id(), 56);
    }
    // Starting again changes nothing.
    let again = ensure_table(catalog.as_ref(), &spec("created", &v2))
        .await
        .unwrap();
    assert_eq!(
        again.metadata().current_schema_id(),
        created.metadata().current_schema_id()
    );
    // A table without nested fields is created in one step, as before.
    let flat =
        TableMapping::from_history(&[include_str!("../../../contracts/orders-value/1.avsc")])
            .unwrap();
    let orders = ensure_table(catalog.as_ref(), &spec("orders", &flat))
        .await
        .unwrap();
    assert_eq!(orders.metadata().schemas_iter().count(), 1);
    assert_eq!(
        iceberg_ids(orders.metadata().current_schema()),
        iceberg_ids(&flat.iceberg_schema().unwrap())
    );
}

/// A spec whose only value column is `s`, a struct of `fields`.
fn struct_spec(name: &str, fields: Vec<NestedField>) -> TableSpec {
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            NestedField::required(
                1,
                "s",
                Type::Struct(StructType::new(fields.into_iter().map(Arc::new).collect())),
            )
            .into(),
            NestedField::required(2, PARTITION_COLUMN, Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(3, OFFSET_COLUMN, Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    TableSpec {
        namespace: "test".into(),
        name: name.into(),
        schema,
        partition_by: Vec::new(),
        properties: HashMap::new(),
    }
}

#[tokio::test]
async fn a_nested_field_that_cannot_be_added_is_an_error_naming_it() {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let int = |id, name: &str| NestedField::required(id, name, Type::Primitive(PrimitiveType::Int));
    ensure_table(catalog.as_ref(), &struct_spec("t", vec![int(4, "x")]))
        .await
        .unwrap();
    // Another type.
    let string = NestedField::required(4, "x", Type::Primitive(PrimitiveType::String));
    let err = ensure_table(catalog.as_ref(), &struct_spec("t", vec![string]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"field "s.x" is int in the table but string"#),
        "{err}"
    );
    // A required field the table lacks.
    let err = ensure_table(
        catalog.as_ref(),
        &struct_spec("t", vec![int(4, "x"), int(5, "y")]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(r#"required field "s.y""#) && err.contains("only optional fields"),
        "{err}"
    );
    // An optional one is added, with the next id.
    let y = NestedField::optional(5, "y", Type::Primitive(PrimitiveType::Long));
    let table = ensure_table(catalog.as_ref(), &struct_spec("t", vec![int(4, "x"), y]))
        .await
        .unwrap();
    let added = table
        .metadata()
        .current_schema()
        .field_by_name("s.y")
        .unwrap();
    assert_eq!((added.id, added.required), (5, false));
}
