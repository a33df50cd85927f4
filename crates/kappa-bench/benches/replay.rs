//! `make bench`: on one generated orders history (1M events by default), archive decode only,
//! encode only (the sink's writer: day partitions, ZSTD Parquet, statistics, files on disk; and
//! plain unpartitioned Parquet in memory as a floor), and the end-to-end replay into an Iceberg
//! table, in events/s, with the orders contract's quality rules and gates and without them (the
//! gates' cost; target: at most 10% of the end-to-end throughput). Then `kappa backfill`'s work
//! on the same archive: the middle 3 days of a replayed table reprocessed, audited and published
//! (throughput in archive events reprocessed per second; target: at least 80% of
//! `replay_to_iceberg`).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kappa_bench::{Bench, encode_for_table, encode_parquet, events};

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let bench = runtime.block_on(Bench::new(events()));
    let messages = bench.expected.messages;
    let decoded = runtime.block_on(bench.decode_all());
    let mut group = c.benchmark_group("orders");
    group.sample_size(10);
    group.throughput(Throughput::Elements(messages));
    group.bench_function("decode_only", |b| {
        b.to_async(&runtime).iter(|| bench.decode_all())
    });
    let table = runtime.block_on(bench.encode_table());
    let mut encodes = 0;
    group.bench_function("encode_only", |b| {
        b.to_async(&runtime).iter(|| {
            encodes += 1;
            encode_for_table(&table, &decoded, encodes)
        })
    });
    group.bench_function("parquet_only_unpartitioned", |b| {
        b.iter(|| encode_parquet(&decoded))
    });
    let mut run = 0;
    group.bench_function("replay_to_iceberg", |b| {
        b.to_async(&runtime).iter(|| {
            run += 1;
            bench.replay(run, true)
        })
    });
    group.bench_function("replay_to_iceberg_quality_off", |b| {
        b.to_async(&runtime).iter(|| {
            run += 1;
            bench.replay(run, false)
        })
    });
    group.finish();

    let (table, days) = runtime.block_on(bench.backfill_table(3));
    let mut group = c.benchmark_group("orders");
    group.sample_size(10);
    group.throughput(Throughput::Elements(messages));
    let mut run = 0;
    group.bench_function("backfill_middle_3_days", |b| {
        b.to_async(&runtime).iter(|| {
            run += 1;
            bench.backfill(&table, days, run)
        })
    });
    group.finish();
}

criterion_group!(replay, benches);
criterion_main!(replay);
