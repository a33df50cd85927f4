//! A table whose nested types gained fields (a struct column, a list of structs, a map to
//! structs; the table evolved as a later schema version adds them) written, read and compacted:
//!
//! - the writer conforms rows of the older shape (fewer nested fields) and of another shape (the
//!   nested fields in another order, other names for a map's entries, no field ids) to the
//!   table's: values land in the fields they belong to, the added fields read NULL, and every
//!   data file carries the table's field ids at every depth;
//! - `DayStats` (`kappa diff`, a backfill's audit) reads a table holding a file written before
//!   the fields were added (iceberg-rust 0.10's scan of every column cannot,
//!   apache/iceberg-rust#2617);
//! - compaction rewrites that file with the newer ones, the added fields NULL in its rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Int32Array, Int64Array, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use iceberg::Catalog;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, StructType, Type};
use iceberg::table::Table;
use kappa_core::{OFFSET_COLUMN, OffsetRange, PARTITION_COLUMN, TopicPartition};
use kappa_iceberg::diff::{DayStats, diff};
use kappa_iceberg::maintenance::compact::{CompactOptions, Outcome, compact};
use kappa_iceberg::producer::CatalogCommitter;
use kappa_iceberg::table::ensure_table;
use kappa_iceberg::writer::{WriterOptions, read_data_file};
use kappa_iceberg::{Committer, PartitionField, PendingCommit, TableSpec};

const DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, PartialEq)]
struct Payment {
    id: String,
    event_time: i64,
    amount: i64,
    payer: Option<Payer>,
    lines: Option<Vec<Line>>,
    attrs: Option<Attrs>,
    offset: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct Payer {
    name: String,
    /// Added by version 2.
    country: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Line {
    sku: String,
    qty: i32,
    /// Added by version 2.
    note: Option<String>,
}

/// A map's entries: a key and a value (`None`: NULL).
type Attrs = Vec<(String, Option<Attr>)>;

#[derive(Debug, Clone, PartialEq)]
struct Attr {
    v: i64,
    /// Added by version 2.
    unit: Option<String>,
}

fn string(id: i32, name: &str, required: bool) -> Arc<NestedField> {
    let t = Type::Primitive(PrimitiveType::String);
    Arc::new(if required {
        NestedField::required(id, name, t)
    } else {
        NestedField::optional(id, name, t)
    })
}

/// The table's schema of version 1, or of version 2 (which adds `payer.country`,
/// `lines.element.note` and `attrs.value.unit`), numbered as a catalog numbers version 1.
fn spec(v2: bool) -> TableSpec {
    let mut payer = vec![string(9, "name", true)];
    let mut line = vec![
        string(11, "sku", true),
        Arc::new(NestedField::required(
            12,
            "qty",
            Type::Primitive(PrimitiveType::Int),
        )),
    ];
    let mut attr = vec![Arc::new(NestedField::required(
        15,
        "v",
        Type::Primitive(PrimitiveType::Long),
    ))];
    if v2 {
        payer.push(string(16, "country", false));
        line.push(string(17, "note", false));
        attr.push(string(18, "unit", false));
    }
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            string(1, "id", true),
            NestedField::required(2, "event_time", Type::Primitive(PrimitiveType::Timestamptz))
                .into(),
            NestedField::required(3, "amount", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(4, "payer", Type::Struct(StructType::new(payer))).into(),
            NestedField::optional(
                5,
                "lines",
                Type::List(ListType::new(
                    NestedField::list_element(10, Type::Struct(StructType::new(line)), true).into(),
                )),
            )
            .into(),
            NestedField::optional(
                6,
                "attrs",
                Type::Map(MapType::new(
                    NestedField::map_key_element(13, Type::Primitive(PrimitiveType::String)).into(),
                    NestedField::map_value_element(14, Type::Struct(StructType::new(attr)), false)
                        .into(),
                )),
            )
            .into(),
            NestedField::required(7, PARTITION_COLUMN, Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(8, OFFSET_COLUMN, Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    TableSpec {
        namespace: "test".into(),
        name: "payments".into(),
        schema,
        partition_by: vec![PartitionField {
            column: PARTITION_COLUMN.into(),
            transform: iceberg::spec::Transform::Identity,
        }],
        properties: HashMap::new(),
    }
}

/// Payments at `offsets`, two days apart by offset parity; with values for version 2's fields
/// where `v2` (some of them NULL all the same).
fn payments(offsets: std::ops::Range<i64>, v2: bool) -> Vec<Payment> {
    offsets
        .map(|i| {
            let new = |s: String| (v2 && i % 3 != 0).then_some(s);
            Payment {
                id: format!("p-{i}"),
                event_time: (i % 2) * DAY + i * 1_000,
                amount: 100 * i + 1,
                payer: (i % 4 != 1).then(|| Payer {
                    name: format!("payer-{i}"),
                    country: new(format!("C{i}")),
                }),
                lines: (i % 5 != 2).then(|| {
                    (0..i % 3)
                        .map(|j| Line {
                            sku: format!("sku-{i}-{j}"),
                            qty: (i * 10 + j) as i32,
                            note: new(format!("note-{i}-{j}")),
                        })
                        .collect()
                }),
                attrs: (i % 5 != 3).then(|| {
                    (0..(i % 3) + 1)
                        .map(|j| {
                            let value = (j != 1).then(|| Attr {
                                v: i * 100 + j,
                                unit: new(format!("unit-{i}-{j}")),
                            });
                            (format!("k{j}"), value)
                        })
                        .collect()
                }),
                offset: i,
            }
        })
        .collect()
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// A list of `lengths` (`None`: a NULL list), whose offsets and NULLs the nested arrays built
/// here take (a struct's NULLs: lengths of 0).
fn shape(lengths: impl IntoIterator<Item = Option<usize>>) -> ListArray {
    ListArray::from_iter_primitive::<Int32Type, _, _>(
        lengths.into_iter().map(|n| n.map(|n| vec![Some(0); n])),
    )
}

fn struct_fields(data_type: &DataType) -> &Fields {
    match data_type {
        DataType::Struct(fields) => fields,
        other => panic!("{other} is not a struct"),
    }
}

/// A struct array of `fields`, each child built by `child` from its name.
fn struct_array(
    fields: &Fields,
    child: impl Fn(&str) -> ArrayRef,
    valid: impl IntoIterator<Item = bool>,
) -> StructArray {
    let children = fields.iter().map(|f| child(f.name())).collect();
    let nulls = shape(valid.into_iter().map(|v| v.then_some(0)));
    StructArray::try_new(fields.clone(), children, nulls.nulls().cloned()).unwrap()
}

/// `rows` as a batch of `schema`, built field by field by name (at every depth), so that the
/// shape of `schema` (nested field order, names of a map's entries, metadata) is the batch's.
fn batch(schema: &SchemaRef, rows: &[Payment]) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|field| column(field, rows))
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

fn column(field: &FieldRef, rows: &[Payment]) -> ArrayRef {
    match field.name().as_str() {
        "id" => strings(rows.iter().map(|r| Some(r.id.as_str()))),
        "event_time" => Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.event_time))
                .with_data_type(field.data_type().clone()),
        ),
        "amount" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.amount))),
        PARTITION_COLUMN => Arc::new(Int32Array::from(vec![0; rows.len()])),
        OFFSET_COLUMN => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        "payer" => {
            let payers: Vec<Option<&Payer>> = rows.iter().map(|r| r.payer.as_ref()).collect();
            Arc::new(struct_array(
                struct_fields(field.data_type()),
                |name| match name {
                    "name" => strings(payers.iter().map(|p| Some(p.map_or("", |p| &p.name)))),
                    "country" => strings(payers.iter().map(|p| (*p)?.country.as_deref())),
                    other => panic!("payer.{other}"),
                },
                payers.iter().map(Option::is_some),
            ))
        }
        "lines" => {
            let DataType::List(element) = field.data_type() else {
                panic!("lines is {}", field.data_type());
            };
            let lists: Vec<Option<&Vec<Line>>> = rows.iter().map(|r| r.lines.as_ref()).collect();
            let lines: Vec<&Line> = lists.iter().flatten().flat_map(|l| l.iter()).collect();
            let values = struct_array(
                struct_fields(element.data_type()),
                |name| match name {
                    "sku" => strings(lines.iter().map(|l| Some(l.sku.as_str()))),
                    "qty" => Arc::new(Int32Array::from_iter_values(lines.iter().map(|l| l.qty))),
                    "note" => strings(lines.iter().map(|l| l.note.as_deref())),
                    other => panic!("lines.element.{other}"),
                },
                lines.iter().map(|_| true),
            );
            let lists = shape(lists.iter().map(|l| l.map(Vec::len)));
            Arc::new(
                ListArray::try_new(
                    element.clone(),
                    lists.offsets().clone(),
                    Arc::new(values),
                    lists.nulls().cloned(),
                )
                .unwrap(),
            )
        }
        "attrs" => {
            let DataType::Map(entries, sorted) = field.data_type() else {
                panic!("attrs is {}", field.data_type());
            };
            let maps: Vec<Option<&Attrs>> = rows.iter().map(|r| r.attrs.as_ref()).collect();
            let pairs: Vec<&(String, Option<Attr>)> =
                maps.iter().flatten().flat_map(|m| m.iter()).collect();
            let pair = struct_fields(entries.data_type());
            let values: Vec<Option<&Attr>> = pairs.iter().map(|(_, v)| v.as_ref()).collect();
            let value = struct_array(
                struct_fields(pair[1].data_type()),
                |name| match name {
                    "v" => Arc::new(Int64Array::from_iter_values(
                        values.iter().map(|v| v.map_or(0, |v| v.v)),
                    )),
                    "unit" => strings(values.iter().map(|v| (*v)?.unit.as_deref())),
                    other => panic!("attrs.value.{other}"),
                },
                values.iter().map(Option::is_some),
            );
            let keys = strings(pairs.iter().map(|(k, _)| Some(k.as_str())));
            let entries_array =
                StructArray::try_new(pair.clone(), vec![keys, Arc::new(value)], None).unwrap();
            let maps = shape(maps.iter().map(|m| m.map(Vec::len)));
            Arc::new(
                MapArray::try_new(
                    entries.clone(),
                    maps.offsets().clone(),
                    entries_array,
                    maps.nulls().cloned(),
                    *sorted,
                )
                .unwrap(),
            )
        }
        other => panic!("column {other}"),
    }
}

/// The payments of a batch read back, reading every field by name (a map's key and value by
/// position); version 2's fields NULL where the batch lacks them.
fn read(batch: &RecordBatch) -> Vec<Payment> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .clone()
    };
    let child = |s: &StructArray, name: &str| {
        s.column_by_name(name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .clone()
    };
    let opt_str = |a: &ArrayRef, i: usize| {
        let a = a.as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    };
    // Version 2's fields, absent from a file written before them.
    let added = |s: &StructArray, name: &str| s.column_by_name(name).cloned();
    let added_str = |a: &Option<ArrayRef>, i: usize| opt_str(a.as_ref()?, i);
    let ids = col("id");
    let times = col("event_time");
    let amounts = col("amount");
    let offsets = col(OFFSET_COLUMN);
    let payer = col("payer");
    let payer = payer.as_struct();
    let (names, countries) = (child(payer, "name"), added(payer, "country"));
    let lines = col("lines");
    let lines = lines.as_list::<i32>();
    let line = lines.values().as_struct();
    let (skus, qtys, notes) = (child(line, "sku"), child(line, "qty"), added(line, "note"));
    let attrs = col("attrs");
    let attrs = attrs.as_map();
    let (keys, values) = (attrs.keys().clone(), attrs.values().clone());
    let value = values.as_struct();
    let (vs, units) = (child(value, "v"), added(value, "unit"));
    (0..batch.num_rows())
        .map(|i| Payment {
            id: opt_str(&ids, i).unwrap(),
            event_time: times.as_primitive::<TimestampMicrosecondType>().value(i),
            amount: amounts.as_primitive::<Int64Type>().value(i),
            payer: payer.is_valid(i).then(|| Payer {
                name: opt_str(&names, i).unwrap(),
                country: added_str(&countries, i),
            }),
            lines: lines.is_valid(i).then(|| {
                let range =
                    lines.value_offsets()[i] as usize..lines.value_offsets()[i + 1] as usize;
                range
                    .map(|j| Line {
                        sku: opt_str(&skus, j).unwrap(),
                        qty: qtys.as_primitive::<Int32Type>().value(j),
                        note: added_str(&notes, j),
                    })
                    .collect()
            }),
            attrs: attrs.is_valid(i).then(|| {
                let range =
                    attrs.value_offsets()[i] as usize..attrs.value_offsets()[i + 1] as usize;
                range
                    .map(|j| {
                        let attr = value.is_valid(j).then(|| Attr {
                            v: vs.as_primitive::<Int64Type>().value(j),
                            unit: added_str(&units, j),
                        });
                        (opt_str(&keys, j).unwrap(), attr)
                    })
                    .collect()
            }),
            offset: offsets.as_primitive::<Int64Type>().value(i),
        })
        .collect()
}

/// `data_type` as another writer may shape it: struct fields in reverse order, a map's entries
/// named as arrow-rs's `MapBuilder` names them, no metadata, at every depth.
fn reshaped(data_type: &DataType) -> DataType {
    let field = |f: &FieldRef, name: &str| {
        Arc::new(Field::new(name, reshaped(f.data_type()), f.is_nullable()))
    };
    match data_type {
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().rev().map(|f| field(f, f.name())).collect())
        }
        DataType::List(element) => DataType::List(field(element, element.name())),
        DataType::Map(entries, sorted) => {
            let pair = struct_fields(entries.data_type());
            let pair =
                DataType::Struct(vec![field(&pair[0], "keys"), field(&pair[1], "values")].into());
            DataType::Map(Arc::new(Field::new("entries", pair, false)), *sorted)
        }
        other => other.clone(),
    }
}

async fn commit(catalog: &Arc<dyn Catalog>, table: Table, batch: RecordBatch) {
    let (start, end) = {
        let offsets = batch
            .column_by_name(OFFSET_COLUMN)
            .unwrap()
            .as_primitive::<Int64Type>();
        (offsets.value(0), offsets.value(offsets.len() - 1) + 1)
    };
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

/// Every live data file of the table, read whole through the Parquet reader: its Arrow schema
/// (with the field ids it was written with) and its payments.
async fn data_files(table: &Table) -> Vec<(SchemaRef, Vec<Payment>)> {
    use futures::TryStreamExt;
    let tasks: Vec<_> = table
        .scan()
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
        let mut schema = None;
        let mut rows = Vec::new();
        read_data_file(table, &task.data_file_path, |batch| {
            schema = Some(batch.schema());
            rows.extend(read(batch));
            Ok(())
        })
        .await
        .unwrap();
        files.push((schema.unwrap(), rows));
    }
    files.sort_by_key(|(_, rows)| rows.first().map(|r| r.offset));
    files
}

/// A table created with version 1's schema, holding version 1's rows at offsets `0..6` in a
/// file written then, and evolved to version 2: the catalog's directory (to keep), its config,
/// the catalog, the table, and those rows.
async fn evolved_table() -> (
    tempfile::TempDir,
    kappa_iceberg::CatalogConfig,
    Arc<dyn Catalog>,
    Table,
    Vec<Payment>,
) {
    let (dir, config, catalog) = common::sqlite_catalog().await;
    let table = ensure_table(catalog.as_ref(), &spec(false)).await.unwrap();
    let first = payments(0..6, false);
    commit(&catalog, table, batch(&v1_arrow(), &first)).await;
    // Version 2 adds a field to each nested struct: the table evolves.
    let table = ensure_table(catalog.as_ref(), &spec(true)).await.unwrap();
    let ids = common::arrow_ids(table_arrow(&table).fields());
    assert_eq!(
        (
            ids["payer.country"],
            ids["lines.element.note"],
            ids["attrs.value.unit"]
        ),
        (16, 17, 18)
    );
    (dir, config, catalog, table, first)
}

/// Version 1's Arrow schema, with its field ids.
fn v1_arrow() -> SchemaRef {
    Arc::new(schema_to_arrow_schema(&spec(false).schema).unwrap())
}

/// The table's current Arrow schema, with its field ids.
fn table_arrow(table: &Table) -> SchemaRef {
    Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap())
}

async fn reload(catalog: &Arc<dyn Catalog>) -> Table {
    catalog
        .load_table(&spec(true).ident().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_of_an_older_or_another_nested_shape_are_written_by_name() {
    let (_dir, _config, catalog, table, first) = evolved_table().await;
    let ids = common::arrow_ids(table_arrow(&table).fields());

    // Rows of version 1's shape (a stale mapping): the table's structs have more fields than
    // theirs.
    let second = payments(6..12, false);
    commit(&catalog, table.clone(), batch(&v1_arrow(), &second)).await;

    // Rows of version 2 shaped otherwise: nested fields in another order, the map's entries
    // named otherwise, no field ids.
    let other = Arc::new(Schema::new(
        table_arrow(&table)
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), reshaped(f.data_type()), f.is_nullable()))
            .collect::<Vec<_>>(),
    ));
    let third = payments(12..20, true);
    commit(&catalog, reload(&catalog).await, batch(&other, &third)).await;

    // The inputs do hold values and NULLs of version 2's fields.
    assert!(
        third
            .iter()
            .any(|p| p.payer.as_ref().is_some_and(|p| p.country.is_some()))
    );
    assert!(
        third
            .iter()
            .any(|p| p.payer.as_ref().is_some_and(|p| p.country.is_none()))
    );
    assert!(
        third
            .iter()
            .flat_map(|p| p.lines.iter().flatten())
            .any(|l| l.note.is_some())
    );
    assert!(
        third
            .iter()
            .flat_map(|p| p.attrs.iter().flatten())
            .any(|(_, a)| a.as_ref().is_some_and(|a| a.unit.is_some()))
    );

    // Read back file by file: every value where it belongs, version 2's fields NULL in the
    // rows of version 1's shape.
    let files = data_files(&reload(&catalog).await).await;
    assert_eq!(files.len(), 3);
    let rows: Vec<Payment> = files.iter().flat_map(|(_, rows)| rows.clone()).collect();
    let expected: Vec<Payment> = first.iter().chain(&second).chain(&third).cloned().collect();
    assert_eq!(rows, expected);
    // The files written on the evolved table carry its field ids at every depth (version 1's
    // file those of version 1).
    assert_eq!(common::arrow_ids(files[1].0.fields()), ids);
    assert_eq!(common::arrow_ids(files[2].0.fields()), ids);
    let old = common::arrow_ids(files[0].0.fields());
    assert_eq!(old.len(), ids.len() - 3);
    assert!(old.iter().all(|(path, id)| ids.get(path) == Some(id)));
}

#[tokio::test]
async fn a_file_written_before_nested_fields_were_added_compacts() {
    let (_dir, config, catalog, table, first) = evolved_table().await;
    let ids = common::arrow_ids(table_arrow(&table).fields());
    let second = payments(6..12, true);
    commit(
        &catalog,
        table.clone(),
        batch(&table_arrow(&table), &second),
    )
    .await;
    let table = reload(&catalog).await;
    assert_eq!(data_files(&table).await.len(), 2);

    // Compaction rewrites version 1's file with the newer one: one file, every row, version 2's
    // fields NULL in the rows written before them, sorted by event time.
    let committer = CatalogCommitter::connect(&config).await.unwrap();
    let options = CompactOptions {
        target_file_size: 128 * 1024 * 1024,
        zstd_level: 3,
        dictionary_size: 64 * 1024,
        event_time_column: "event_time".into(),
        days: None,
        dry_run: false,
        max_attempts: 5,
        distinct_columns: Vec::new(),
    };
    let compaction = compact(catalog.as_ref(), &committer, table.identifier(), &options)
        .await
        .unwrap();
    assert_eq!(compaction.partitions.len(), 1);
    assert!(
        matches!(compaction.partitions[0].outcome, Outcome::Rewritten { .. }),
        "{compaction:?}"
    );
    let files = data_files(&reload(&catalog).await).await;
    assert_eq!(files.len(), 1);
    assert_eq!(common::arrow_ids(files[0].0.fields()), ids);
    let mut rows = files[0].1.clone();
    assert!(rows.is_sorted_by_key(|p| p.event_time));
    rows.sort_by_key(|p| p.offset);
    let expected: Vec<Payment> = first.iter().chain(&second).cloned().collect();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn day_stats_read_a_table_holding_a_file_written_before_nested_fields_were_added() {
    let (_dir, _config, catalog, table, first) = evolved_table().await;
    let second = payments(6..12, true);
    let newer = batch(&table_arrow(&table), &second);
    commit(&catalog, table, newer.clone()).await;
    let table = reload(&catalog).await;

    // The stats of the scan are those of every row with every column (as a backfill's audit
    // counts its staged files): rows, keys and the sums of the integer columns, per day.
    let mut all = DayStats::new("rows", "event_time", "id");
    all.add(&batch(&v1_arrow(), &first)).unwrap();
    all.add(&newer).unwrap();
    let read = DayStats::read(&table, "event_time", "id", None)
        .await
        .unwrap();
    let compared = read.compare(&all);
    assert_eq!(compared.len(), 2);
    assert!(compared.iter().all(|d| d.matches()), "{compared:?}");
    assert_eq!(read.rows(0) + read.rows(1), 12);
    assert!(read.rows(0) > 0 && read.rows(1) > 0);
    // Some days only.
    let one_day = DayStats::read(&table, "event_time", "id", Some((1, 1)))
        .await
        .unwrap();
    assert_eq!((one_day.rows(0), one_day.rows(1)), (0, read.rows(1)));
    // The comparison of two tables.
    let compared = diff(&table, &table, "event_time", "id").await.unwrap();
    assert_eq!(compared.len(), 2);
    assert!(compared.iter().all(|d| d.matches()), "{compared:?}");
    // A column the table lacks is named.
    let err = DayStats::read(&table, "event_time", "missing", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"missing\""), "{err}");
}

/// A struct of `fields` as the table's column `payer` (ids from 1), for the writer alone.
fn payer_spec(fields: Vec<Arc<NestedField>>) -> TableSpec {
    let schema = iceberg::spec::Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, "payer", Type::Struct(StructType::new(fields))).into(),
            NestedField::required(2, PARTITION_COLUMN, Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(3, OFFSET_COLUMN, Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    TableSpec {
        namespace: "test".into(),
        name: "payers".into(),
        schema,
        partition_by: Vec::new(),
        properties: HashMap::new(),
    }
}

#[tokio::test]
async fn a_required_nested_field_the_rows_lack_is_an_error_naming_its_path() {
    let (_dir, _config, catalog) = common::sqlite_catalog().await;
    let spec = payer_spec(vec![string(4, "name", true), string(5, "country", true)]);
    let table = ensure_table(catalog.as_ref(), &spec).await.unwrap();
    let fields: Fields = vec![Field::new("name", DataType::Utf8, false)].into();
    let payer =
        StructArray::try_new(fields.clone(), vec![strings([Some("a")].into_iter())], None).unwrap();
    let rows = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("payer", DataType::Struct(fields), true),
            Field::new(PARTITION_COLUMN, DataType::Int32, false),
            Field::new(OFFSET_COLUMN, DataType::Int64, false),
        ])),
        vec![
            Arc::new(payer),
            Arc::new(Int32Array::from(vec![0])),
            Arc::new(Int64Array::from(vec![0])),
        ],
    )
    .unwrap();
    let writer =
        kappa_iceberg::writer::StreamingWriter::new(&table, "t", &WriterOptions::default())
            .await
            .unwrap();
    let err = writer.conform(&rows).unwrap_err().to_string();
    assert!(err.contains("\"payer.country\""), "{err}");
}
