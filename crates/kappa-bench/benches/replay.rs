//! `make bench`: on one generated orders history (1M events by default), archive decode only,
//! encode only (the sink's writer: day partitions, ZSTD Parquet, statistics, files on disk; and
//! plain unpartitioned Parquet in memory as a floor), and the end-to-end replay into an Iceberg
//! table, in events/s, with the orders contract's quality rules and gates and without them (the
//! gates' cost; target: at most 10% of the end-to-end throughput). Then `kappa backfill`'s work
//! on the same archive: the middle 3 days of a replayed table reprocessed, audited and published
//! (throughput in archive events reprocessed per second; target: at least 80% of
//! `replay_to_iceberg`). Then `kappa maintain compact` of a table written with a commit every
//! 10,000 events (what a live pipeline at 10 k events/s committing every second leaves): bytes
//! rewritten per second, and what the rewrite does to DuckDB reading the table (a full scan and
//! a one-day filter, before and after; printed, and in docs/performance.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kappa_bench::{Bench, encode_for_table, encode_parquet, events};

/// Events per commit of the compaction benchmark's table.
const SMALL_COMMIT: usize = 10_000;

/// DuckDB's median times for a full scan and a one-day filter of `table` (integration-tests'
/// `scan_timing.py`).
fn duckdb_scan(table: &iceberg::table::Table, day: &str) -> serde_json::Value {
    let out = std::process::Command::new(kappa_integration_tests::python())
        .arg(kappa_integration_tests::python_dir().join("scan_timing.py"))
        .arg(table.metadata_location().unwrap())
        .arg(day)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scan_timing.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(kappa_integration_tests::last_line(&out.stdout)).unwrap()
}

fn compaction(c: &mut Criterion, runtime: &tokio::runtime::Runtime, bench: &Bench) {
    let table = runtime.block_on(bench.small_commit_table("compact-base", SMALL_COMMIT));
    let summary = &table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    let total = |key: &str| summary[key].parse::<u64>().unwrap();
    let (files, bytes, rows) = (
        total("total-data-files"),
        total("total-files-size"),
        total("total-records"),
    );
    // A middle day of the history, for the one-day filter.
    let field = kappa_iceberg::days::DayField::of(&table, "event_time").unwrap();
    let days: Vec<i32> = runtime
        .block_on(field.rows_in(&table))
        .unwrap()
        .into_keys()
        .collect();
    let day = kappa_iceberg::maintenance::compact::date(days[days.len() / 2]);
    let before = duckdb_scan(&table, &day);
    let mut group = c.benchmark_group("orders_compaction");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    let run = std::cell::Cell::new(0);
    let last = std::cell::RefCell::new(None);
    group.bench_function("compact_small_commits", |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let (run, last) = (&run, &last);
            async move {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    run.set(run.get() + 1);
                    let name = format!("compact-{}", run.get());
                    bench.small_commit_table(&name, SMALL_COMMIT).await;
                    let started = Instant::now();
                    let done = bench.compact(&name).await;
                    spent += started.elapsed();
                    assert!(done.bytes_rewritten() > 0);
                    *last.borrow_mut() = Some(name);
                }
                spent
            }
        })
    });
    group.finish();
    // Filtered out (`cargo bench -- <other benchmarks>`): nothing to compare.
    let Some(last) = last.into_inner() else {
        return;
    };
    let compacted = runtime.block_on(bench.main_table(&last));
    let after = duckdb_scan(&compacted, &day);
    let summary = &compacted
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(
        before["rows"], after["rows"],
        "the compaction changed the rows"
    );
    assert_eq!(before["day_rows"], after["day_rows"]);
    println!(
        "compaction: {files} files ({:.1} MiB, {rows} rows) -> {} files ({:.1} MiB)",
        bytes as f64 / 1048576.0,
        summary["total-data-files"],
        summary["total-files-size"].parse::<f64>().unwrap() / 1048576.0,
    );
    for (query, key) in [
        ("full scan", "full_scan_s"),
        ("one-day filter", "day_scan_s"),
    ] {
        let (b, a) = (before[key].as_f64().unwrap(), after[key].as_f64().unwrap());
        println!(
            "duckdb {query}: {:.1} ms before, {:.1} ms after compaction: {:.2}x",
            b * 1e3,
            a * 1e3,
            b / a
        );
    }
}

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

    compaction(c, &runtime, &bench);
}

criterion_group!(replay, benches);
criterion_main!(replay);
