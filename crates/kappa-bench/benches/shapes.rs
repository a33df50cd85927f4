//! `make bench`: replay on each archive shape Kafka Connect's S3 sink writes (value records with
//! deflate and 1,000 records per file, with snappy and 10,000, with zstandard and 1,000; raw
//! wire-format bytes with snappy), each with the same generated 1M-event history: decode only,
//! encode only and end to end into an Iceberg table (and, on value records with deflate, end to
//! end with the quality checks off, their cost).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kappa_bench::{Bench, Shape, encode_for_table, events};

fn shape(c: &mut Criterion, runtime: &tokio::runtime::Runtime, shape: Shape) {
    let mut group = c.benchmark_group(format!("shapes/{}", shape.name));
    group.sample_size(10);
    // Generating an archive takes longer than a benchmark: only for the shapes asked for.
    let bench = std::cell::OnceCell::new();
    let bench =
        || bench.get_or_init(|| runtime.block_on(Bench::archived(events(), &shape.options())));
    let decoded = std::cell::OnceCell::new();
    let table = std::cell::OnceCell::new();
    group.throughput(Throughput::Elements(events()));
    group.bench_function("decode_only", |b| {
        let bench = bench();
        b.to_async(runtime).iter(|| bench.decode_all())
    });
    let mut encodes = 0;
    group.bench_function("encode_only", |b| {
        let decoded = decoded.get_or_init(|| runtime.block_on(bench().decode_all()));
        let table = table.get_or_init(|| runtime.block_on(bench().encode_table()));
        b.to_async(runtime).iter(|| {
            encodes += 1;
            encode_for_table(table, decoded, encodes)
        })
    });
    let mut run = 0;
    group.bench_function("replay_to_iceberg", |b| {
        let bench = bench();
        b.to_async(runtime).iter(|| {
            run += 1;
            bench.replay(run, true)
        })
    });
    if shape.name == Shape::VALUE_DEFLATE.name {
        group.bench_function("replay_to_iceberg_quality_off", |b| {
            let bench = bench();
            b.to_async(runtime).iter(|| {
                run += 1;
                bench.replay(run, false)
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for s in Shape::ALL {
        shape(c, &runtime, s);
    }
}

criterion_group!(shapes, benches);
criterion_main!(shapes);
