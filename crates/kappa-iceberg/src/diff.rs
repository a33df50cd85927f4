//! Two tables compared day by day (`kappa diff`): the shadow-write check before a cut-over.
//!
//! Each table is scanned once, only the columns measured. Per UTC day of the event-time column:
//! the row count, the set of dedup keys (as 128-bit hashes, so that memory stays at 16 bytes a
//! row) and the sum of every integer column (top-level; Kafka coordinates left out: a shadow
//! table written by a replay holds the same events at the same offsets, but a table rebuilt
//! elsewhere need not). Two days match when all of those are equal.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use futures::TryStreamExt;
use iceberg::table::Table;

use crate::commit::table_name;
use crate::error::IcebergError;

const DAY_MICROS: i64 = 86_400_000_000;

/// One day of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayDiff {
    /// Days since 1970-01-01 (UTC).
    pub day: i32,
    /// Rows in the first table and in the other.
    pub rows: (u64, u64),
    /// Keys of the first table the other lacks.
    pub missing: u64,
    /// Keys of the other table the first lacks.
    pub extra: u64,
    /// Integer columns whose sums differ: (column, first, other).
    pub sums: Vec<(String, i128, i128)>,
}

impl DayDiff {
    /// Whether the day is the same in both tables.
    pub fn matches(&self) -> bool {
        self.rows.0 == self.rows.1 && self.missing == 0 && self.extra == 0 && self.sums.is_empty()
    }
}

#[derive(Debug, Default)]
struct Day {
    rows: u64,
    keys: HashSet<u128>,
    sums: BTreeMap<String, i128>,
}

/// What the comparison measures of one table, per day: filled from a scan ([`DayStats::read`])
/// or batch by batch ([`DayStats::add`], rows not in a table yet: a backfill's staged files).
#[derive(Debug)]
pub struct DayStats {
    table: String,
    time_column: String,
    key_column: String,
    days: BTreeMap<i32, Day>,
}

impl DayStats {
    /// Empty stats of `table` (a name for errors), by `time_column` (µs timestamps) and
    /// `key_column`.
    pub fn new(table: &str, time_column: &str, key_column: &str) -> DayStats {
        DayStats {
            table: table.to_string(),
            time_column: time_column.to_string(),
            key_column: key_column.to_string(),
            days: BTreeMap::new(),
        }
    }

    /// Counts `batch`'s rows.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), IcebergError> {
        add(
            &self.table,
            batch,
            &self.time_column,
            &self.key_column,
            &mut self.days,
        )
    }

    /// Rows counted on `day`.
    pub fn rows(&self, day: i32) -> u64 {
        self.days.get(&day).map_or(0, |d| d.rows)
    }

    /// The stats of `table`'s current snapshot; only its rows of days `from..=to` (days since
    /// the epoch) when given (the scan then reads only those days' files).
    pub async fn read(
        table: &Table,
        time_column: &str,
        key_column: &str,
        days: Option<(i32, i32)>,
    ) -> Result<DayStats, IcebergError> {
        let name = table_name(table.identifier());
        let mut stats = DayStats::new(&name, time_column, key_column);
        let failed = |e: iceberg::Error| IcebergError::Table {
            table: name.clone(),
            operation: "reading for the comparison".into(),
            source: Box::new(e),
        };
        if table.metadata().current_snapshot().is_none() {
            return Ok(stats);
        }
        let schema = table.metadata().current_schema();
        for (column, what) in [(time_column, "the event time"), (key_column, "the key")] {
            if schema.as_struct().field_by_name(column).is_none() {
                return Err(IcebergError::Invalid {
                    table: name.clone(),
                    message: format!("no column {column:?} ({what})"),
                });
            }
        }
        let mut scan = table
            .scan()
            .select(columns_read(schema, time_column, key_column));
        if let Some((from, to)) = days {
            use iceberg::expr::Reference;
            use iceberg::spec::{Datum, PrimitiveType, Type};
            let zoned = table
                .metadata()
                .current_schema()
                .field_by_name(time_column)
                .is_some_and(|f| *f.field_type == Type::Primitive(PrimitiveType::Timestamptz));
            let at = |day: i32| {
                let micros = i64::from(day) * DAY_MICROS;
                if zoned {
                    Datum::timestamptz_micros(micros)
                } else {
                    Datum::timestamp_micros(micros)
                }
            };
            let column = Reference::new(time_column);
            scan = scan.with_filter(
                column
                    .clone()
                    .greater_than_or_equal_to(at(from))
                    .and(column.less_than(at(to.saturating_add(1)))),
            );
        }
        let mut stream = scan
            .build()
            .map_err(failed)?
            .to_arrow()
            .await
            .map_err(failed)?;
        while let Some(batch) = stream.try_next().await.map_err(failed)? {
            stats.add(&batch)?;
        }
        if let Some((from, to)) = days {
            stats.days.retain(|day, _| (from..=to).contains(day));
        }
        Ok(stats)
    }

    /// Day by day against `other`: every day either has rows in, in order; only `days` when
    /// given.
    pub fn compare(&self, other: &DayStats) -> Vec<DayDiff> {
        let empty = Day::default();
        let days: BTreeSet<i32> = self.days.keys().chain(other.days.keys()).copied().collect();
        days.into_iter()
            .map(|day| {
                let (x, y) = (
                    self.days.get(&day).unwrap_or(&empty),
                    other.days.get(&day).unwrap_or(&empty),
                );
                let columns: BTreeSet<&String> = x.sums.keys().chain(y.sums.keys()).collect();
                let sums = columns
                    .into_iter()
                    .filter_map(|c| {
                        let (s, t) = (
                            x.sums.get(c).copied().unwrap_or(0),
                            y.sums.get(c).copied().unwrap_or(0),
                        );
                        (s != t).then(|| (c.clone(), s, t))
                    })
                    .collect();
                DayDiff {
                    day,
                    rows: (x.rows, y.rows),
                    missing: x.keys.difference(&y.keys).count() as u64,
                    extra: y.keys.difference(&x.keys).count() as u64,
                    sums,
                }
            })
            .collect()
    }
}

/// Compares `first` and `other` day by day on `time_column` (µs timestamps) and `key_column`.
/// Every day either table has rows in is in the result, in order.
pub async fn diff(
    first: &Table,
    other: &Table,
    time_column: &str,
    key_column: &str,
) -> Result<Vec<DayDiff>, IcebergError> {
    let a = DayStats::read(first, time_column, key_column, None).await?;
    let b = DayStats::read(other, time_column, key_column, None).await?;
    Ok(a.compare(&b))
}

/// The columns [`DayStats::read`] scans, in the table's order, each once: the event time, the
/// key and every integer column but Kafka's coordinates (the ones [`add`] sums; it sums no value
/// inside a nested column). Only those: iceberg-rust 0.10's scan cannot read a data file written
/// before a struct gained a field (apache/iceberg-rust#2617), so a nested column is never read
/// unless it is the key.
fn columns_read(
    schema: &iceberg::spec::Schema,
    time_column: &str,
    key_column: &str,
) -> Vec<String> {
    use iceberg::spec::{PrimitiveType, Type};
    schema
        .as_struct()
        .fields()
        .iter()
        .filter(|field| {
            field.name == time_column
                || field.name == key_column
                || (!field.name.starts_with("_kafka")
                    && matches!(
                        *field.field_type,
                        Type::Primitive(PrimitiveType::Int | PrimitiveType::Long)
                    ))
        })
        .map(|field| field.name.clone())
        .collect()
}

fn add(
    table: &str,
    batch: &RecordBatch,
    time_column: &str,
    key_column: &str,
    days: &mut BTreeMap<i32, Day>,
) -> Result<(), IcebergError> {
    let invalid = |message: String| IcebergError::Invalid {
        table: table.to_string(),
        message,
    };
    let times = batch
        .column_by_name(time_column)
        .ok_or_else(|| invalid(format!("no column {time_column:?} (the event time)")))?;
    if !matches!(
        times.data_type(),
        DataType::Timestamp(TimeUnit::Microsecond, _)
    ) {
        return Err(invalid(format!(
            "column {time_column:?} is {}, not a timestamp",
            times.data_type()
        )));
    }
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let keys = batch
        .column_by_name(key_column)
        .ok_or_else(|| invalid(format!("no column {key_column:?} (the key)")))?;
    let keys = arrow_cast::display::ArrayFormatter::try_new(keys.as_ref(), &Default::default())
        .map_err(|e| invalid(format!("column {key_column:?}: {e}")))?;
    let schema = batch.schema();
    let integers: Vec<(&str, Vec<Option<i128>>)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(field, _)| !field.name().starts_with("_kafka"))
        .filter_map(|(field, column)| integers(column.as_ref()).map(|v| (field.name().as_str(), v)))
        .collect();
    for i in 0..batch.num_rows() {
        let day = if times.is_null(i) {
            i32::MIN
        } else {
            i32::try_from(times.value(i).div_euclid(DAY_MICROS)).unwrap_or(i32::MIN)
        };
        let entry = days.entry(day).or_default();
        entry.rows += 1;
        entry.keys.insert(hash128(&keys.value(i).to_string()));
        for (name, values) in &integers {
            if let Some(v) = values[i] {
                *entry.sums.entry((*name).to_string()).or_default() += v;
            }
        }
    }
    Ok(())
}

/// The values of an integer column (`None`: not an integer column).
fn integers(column: &dyn Array) -> Option<Vec<Option<i128>>> {
    macro_rules! values {
        ($t:ty) => {
            column
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.map(i128::from))
                .collect()
        };
    }
    Some(match column.data_type() {
        DataType::Int8 => values!(Int8Type),
        DataType::Int16 => values!(Int16Type),
        DataType::Int32 => values!(Int32Type),
        DataType::Int64 => values!(Int64Type),
        DataType::UInt8 => values!(UInt8Type),
        DataType::UInt16 => values!(UInt16Type),
        DataType::UInt32 => values!(UInt32Type),
        DataType::UInt64 => values!(UInt64Type),
        _ => return None,
    })
}

/// A 128-bit hash of a key: two SipHash passes with different prefixes.
fn hash128(key: &str) -> u128 {
    let half = |salt: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        salt.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("amount", DataType::Int64, false),
            Field::new("_kafka_offset", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|_| 7))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn days_count_rows_keys_and_sums_and_leave_kafka_coordinates_out() {
        let mut days = BTreeMap::new();
        let day1 = DAY_MICROS + 5;
        add(
            "t",
            &batch(&[("a", 5, 10), ("b", 6, 20), ("c", day1, 1)]),
            "t",
            "id",
            &mut days,
        )
        .unwrap();
        assert_eq!(days[&0].rows, 2);
        assert_eq!(days[&0].keys.len(), 2);
        assert_eq!(days[&0].sums["amount"], 30);
        assert!(!days[&0].sums.contains_key("_kafka_offset"));
        assert_eq!(days[&1].rows, 1);
        let err = add("t", &batch(&[]), "missing", "id", &mut days).unwrap_err();
        assert!(err.to_string().contains("\"missing\""), "{err}");
    }
}
