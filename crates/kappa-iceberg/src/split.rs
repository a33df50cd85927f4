//! Rows → one batch per partition value, for the fanout writer.
//!
//! iceberg-rust's `RecordBatchPartitionSplitter` turns every row's partition value into a
//! `Literal` struct, groups rows in a hash map keyed by them, and copies each group out with a
//! filter: on a replay that was ~8% of the CPU. An event stream is nearly in event-time order, so
//! a batch's rows fall in a few runs of one day each. [`Splitter`] computes the partition values
//! with iceberg-rust's own transforms, finds the runs of equal values with arrow's `partition`
//! kernel, converts one value per run, and hands each run on as a zero-copy slice (a partition
//! whose rows recur after another's gets one slice per run). A batch of many short runs (a
//! bucket or identity partitioning of unordered values) goes to iceberg-rust's splitter, which
//! is made for those.

use std::ops::Range;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use iceberg::arrow::{
    PartitionValueCalculator, RecordBatchPartitionSplitter, arrow_struct_to_literal,
};
use iceberg::spec::{Literal, PartitionKey, PartitionSpecRef, SchemaRef, Struct, StructType};
use iceberg::{Error, ErrorKind, Result};

/// Runs per batch above which a batch goes to iceberg-rust's splitter: past it, converting one
/// value per run costs about what converting every row does.
const MAX_RUNS: usize = 64;

/// Splits batches of a table's rows by the table's partition spec.
pub(crate) struct Splitter {
    schema: SchemaRef,
    spec: PartitionSpecRef,
    partition_type: StructType,
    calculator: PartitionValueCalculator,
    many_runs: RecordBatchPartitionSplitter,
}

impl Splitter {
    /// A splitter for `spec` (not unpartitioned) over `schema`.
    pub(crate) fn try_new(schema: SchemaRef, spec: PartitionSpecRef) -> Result<Self> {
        Ok(Self {
            partition_type: spec.partition_type(&schema)?,
            calculator: PartitionValueCalculator::try_new(&spec, &schema)?,
            many_runs: RecordBatchPartitionSplitter::try_new_with_computed_values(
                schema.clone(),
                spec.clone(),
            )?,
            schema,
            spec,
        })
    }

    /// `batch`'s rows by partition value: each run of rows of one value as a zero-copy slice of
    /// the batch with its key. A value whose rows are not contiguous comes as several slices, in
    /// the rows' order (writing them one after another to the value's file keeps that order;
    /// gathering them into one batch copied every row of it).
    pub(crate) fn split(&self, batch: &RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        let values = self.calculator.calculate(batch)?;
        let runs = arrow_ord::partition::partition(values.as_struct().columns())
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "grouping rows by partition").with_source(e)
            })?
            .ranges();
        if runs.len() > MAX_RUNS {
            return self.many_runs.split(batch);
        }
        let mut groups: Vec<(Struct, Vec<Range<usize>>)> = Vec::new();
        for run in runs {
            let value = self.value(&values.slice(run.start, 1))?;
            match groups.iter_mut().find(|(seen, _)| *seen == value) {
                Some((_, runs)) => runs.push(run),
                None => groups.push((value, vec![run])),
            }
        }
        let mut parts = Vec::with_capacity(groups.iter().map(|(_, runs)| runs.len()).sum());
        for (value, runs) in groups {
            let key = PartitionKey::new((*self.spec).clone(), self.schema.clone(), value);
            for run in runs {
                parts.push((key.clone(), batch.slice(run.start, run.len())));
            }
        }
        Ok(parts)
    }

    /// The partition value in a one-row array of them.
    fn value(&self, one: &arrow_array::ArrayRef) -> Result<Struct> {
        match arrow_struct_to_literal(one, &self.partition_type)?.pop() {
            Some(Some(Literal::Struct(value))) => Ok(value),
            _ => Err(Error::new(
                ErrorKind::DataInvalid,
                "a row's partition value is not a struct",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use iceberg::arrow::schema_to_arrow_schema;
    use iceberg::spec::{NestedField, PartitionSpec, PrimitiveType, Schema, Transform, Type};

    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn table() -> (SchemaRef, PartitionSpecRef) {
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
                NestedField::optional(3, "tag", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let spec = PartitionSpec::builder(schema.clone())
            .add_partition_field("ts", "ts_day", Transform::Day)
            .unwrap()
            .add_partition_field("tag", "tag", Transform::Identity)
            .unwrap()
            .build()
            .unwrap();
        (Arc::new(schema), Arc::new(spec))
    }

    fn batch(schema: &Schema, rows: &[(Option<i64>, Option<&str>)]) -> RecordBatch {
        let arrow = Arc::new(schema_to_arrow_schema(schema).unwrap());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(arrow, columns).unwrap()
    }

    /// Partition path → the ids of its rows, in the order the parts give them.
    fn groups(split: Vec<(PartitionKey, RecordBatch)>) -> HashMap<String, Vec<i64>> {
        let mut groups: HashMap<String, Vec<i64>> = HashMap::new();
        for (key, rows) in split {
            let ids = rows
                .column(0)
                .as_primitive::<arrow_array::types::Int64Type>();
            groups
                .entry(key.to_path())
                .or_default()
                .extend_from_slice(ids.values());
        }
        groups
    }

    /// The rows are grouped as iceberg-rust's splitter groups them, each group in row order:
    /// runs, a partition that recurs after another, NULL values, and more runs than the fast
    /// path takes.
    #[test]
    fn groups_as_iceberg_rusts_splitter_does() {
        let (schema, spec) = table();
        let reference = RecordBatchPartitionSplitter::try_new_with_computed_values(
            schema.clone(),
            spec.clone(),
        )
        .unwrap();
        let splitter = Splitter::try_new(schema.clone(), spec).unwrap();
        let many: Vec<(Option<i64>, Option<&str>)> = (0..500)
            .map(|i| (Some((i % 7) * DAY), Some(["a", "b"][(i % 3 == 0) as usize])))
            .collect();
        let cases: Vec<Vec<(Option<i64>, Option<&str>)>> = vec![
            vec![(Some(5), Some("a"))],
            vec![
                (Some(1), Some("a")),
                (Some(2), Some("a")),
                (Some(DAY), Some("a")),
            ],
            vec![
                (Some(1), Some("a")),
                (Some(DAY + 1), Some("a")),
                (Some(2), Some("a")),
                (None, Some("a")),
                (Some(3), None),
                (None, Some("a")),
                (Some(4), Some("b")),
            ],
            many,
        ];
        for rows in cases {
            let batch = batch(&schema, &rows);
            let ours = groups(splitter.split(&batch).unwrap());
            let theirs = groups(reference.split(&batch).unwrap());
            assert_eq!(ours, theirs, "{rows:?}");
            assert_eq!(
                ours.values().map(Vec::len).sum::<usize>(),
                rows.len(),
                "every row in one group"
            );
        }
    }

    /// A batch of one partition is passed on as it is, and a partition whose rows recur after
    /// another's as one slice per run, in row order: no row is copied.
    #[test]
    fn every_part_is_a_slice_of_the_batch() {
        let (schema, spec) = table();
        let splitter = Splitter::try_new(schema.clone(), spec).unwrap();
        let start = |b: &RecordBatch| b.column(0).to_data().buffers()[0].as_ptr() as usize;
        let one = batch(&schema, &[(Some(1), Some("a")), (Some(2), Some("a"))]);
        let split = splitter.split(&one).unwrap();
        assert_eq!(split.len(), 1);
        assert_eq!(start(&split[0].1), start(&one));
        let rows = [
            (Some(1), Some("a")),
            (Some(DAY), Some("a")),
            (Some(2), Some("a")),
            (Some(3), Some("a")),
        ];
        let batch = batch(&schema, &rows);
        let split = splitter.split(&batch).unwrap();
        let offsets: Vec<(String, usize, usize)> = split
            .iter()
            .map(|(key, part)| {
                let offset = (start(part) - start(&batch)) / 8 + part.column(0).offset();
                (key.to_path(), offset, part.num_rows())
            })
            .collect();
        let (first, second) = (split[0].0.to_path(), split[2].0.to_path());
        assert_ne!(first, second);
        assert_eq!(
            offsets,
            vec![(first.clone(), 0, 1), (first, 2, 2), (second, 1, 1)],
            "runs of the first day, then the second's"
        );
    }
}
