//! `make bench`: the dedup window alone, on what a replay feeds it: 1M UUID event ids as text
//! over 3 partitions, in batches of 16,384 rows taking turns by partition, one id in 1,000
//! repeating an id 500 offsets earlier, the default window of 100,000 offsets. Events/s.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kappa_core::{OffsetRange, SourceBatch, TopicPartition};
use kappa_logic::{DEFAULT_DEDUP_WINDOW, Dedup};

const EVENTS: usize = 1_000_000;
const PARTITIONS: usize = 3;
const BATCH: usize = 16_384;

/// A UUID's text from 128 random bits (SplitMix64).
fn uuid(state: &mut u64) -> String {
    let mut next = || {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// The batches in the order the pipeline reads them, and how many ids repeat.
fn batches() -> (Vec<SourceBatch>, u64) {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "event_id",
        DataType::Utf8,
        false,
    )]));
    let per_partition = EVENTS / PARTITIONS;
    let mut state = 7;
    let mut ids: Vec<Vec<String>> = (0..PARTITIONS)
        .map(|_| Vec::with_capacity(per_partition))
        .collect();
    let mut repeats = 0;
    for partition in &mut ids {
        for offset in 0..per_partition {
            if offset >= 500 && offset % 1_000 == 0 {
                partition.push(partition[offset - 500].clone());
                repeats += 1;
            } else {
                partition.push(uuid(&mut state));
            }
        }
    }
    let mut out = Vec::new();
    for start in (0..per_partition).step_by(BATCH) {
        let end = (start + BATCH).min(per_partition);
        for (partition, ids) in ids.iter().enumerate() {
            let column = StringArray::from_iter_values(&ids[start..end]);
            out.push(SourceBatch {
                partition: TopicPartition {
                    topic: "orders".into(),
                    partition: partition as i32,
                },
                range: OffsetRange {
                    start: start as i64,
                    end: end as i64,
                },
                records: RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap(),
                offsets: (start as i64..end as i64).collect(),
                dead_letters: Vec::new(),
                records_in: (end - start) as u64,
            });
        }
    }
    (out, repeats)
}

fn dedup(c: &mut Criterion) {
    let (batches, repeats) = batches();
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    group.bench_function("mark_1m_uuids_3_partitions", |b| {
        b.iter(|| {
            let mut dedup = Dedup::new(Some("event_id".into()), DEFAULT_DEDUP_WINDOW);
            let mut found = 0;
            for batch in &batches {
                let mut keep = vec![true; batch.num_rows()];
                found += dedup.mark("bench", batch, &mut keep).unwrap();
            }
            assert_eq!(found, repeats, "every repeated id, and nothing else");
        })
    });
    group.finish();
}

criterion_group!(benches, dedup);
criterion_main!(benches);
