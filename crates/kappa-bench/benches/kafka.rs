//! `make bench`, the live half, against the broker `dev/services.sh` starts (`KAPPA_KAFKA`):
//!
//! 1. Throughput: one topic of 1M orders events (`KAPPA_BENCH_EVENTS`) on 6 partitions, read once
//!    by a plain rdkafka consume-only loop, then twice by `kappa run`'s pipeline (Kafka source,
//!    orders logic, quality checks, both committers, committing every second), in events/s from
//!    the pipeline's first batch (the start before it, assignment and warm-up, is printed apart;
//!    both assign their partitions without a consumer group):
//!    - read to the end and stopped, like consume-only: stopped (SIGTERM's path, which commits
//!      what is buffered) once the source has handed over the last message, until it returns
//!      with the table holding the whole topic. Target: ≥ 50% of consume-only.
//!    - running on until the table holds the whole topic: the first plus the wait for the
//!      commit interval after the topic is read.
//! 2. Latency: a producer at a steady rate (`KAPPA_BENCH_LATENCY_RATE` events/s for
//!    `KAPPA_BENCH_LATENCY_SECONDS`) while the pipeline runs with the default commit policy
//!    (60 s interval), started once the pipeline holds its partitions; each message's produce →
//!    visible-in-the-table time, from polling the table's committed position every 100 ms.
//!
//! 3. Restart: `kappa run` (the release binary) SIGKILLed and started again, `KAPPA_BENCH_RESTARTS`
//!    times (default 5), on a 3-partition topic with 30 new events produced while it is down:
//!    from the start of the process until its partitions are assigned at the table's offsets,
//!    and until the table holds the new events (commit interval 1 s). With `[source.kafka]
//!    assignment = "shard"` (the default); `KAPPA_BENCH_RESTART_GROUP=1` also times
//!    `assignment = "group"`, whose restarts wait for the dead member's session to time out;
//!    `KAPPA_BENCH_RESTART_ONLY=1` runs this part alone.
//!
//! One run each (a million-event topic is not repeated criterion-style); figures are printed and
//! belong in `docs/performance.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_bench::kafka::{
    Live, Visibility, brokers, consume_only, create_topic, latencies, produce, quantile,
    until_committed,
};
use kappa_bench::{events, spec};
use kappa_runtime::CommitPolicy;
use kappa_schema::{FileRegistry, SchemaRegistry, TableMapping};
use kappa_synth::{ORDERS_V1, ORDERS_V2};

const PARTITIONS: i32 = 6;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another benchmark skips this one.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "kafka".contains(f.as_str())) {
        return;
    }
    // `KAPPA_LOG=info` shows the pipeline's own log (commits, rebalances) while it runs.
    if let Ok(filter) = std::env::var("KAPPA_LOG") {
        kappa_metrics::init_tracing(kappa_metrics::LogFormat::Text, &filter);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let brokers = brokers();
    // `KAPPA_BENCH_RESTART_ONLY=1`: part 3 alone.
    if std::env::var("KAPPA_BENCH_RESTART_ONLY").is_ok_and(|v| v == "1") {
        restart_bench(&brokers).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mapping = Arc::new(TableMapping::from_history(&[ORDERS_V1, ORDERS_V2]).unwrap());
    let registry: Arc<dyn SchemaRegistry> =
        Arc::new(FileRegistry::from_schemas("orders-value", [ORDERS_V1, ORDERS_V2]).unwrap());

    // 1. Throughput.
    let topic = kappa_integration_tests::kafka::unique_topic("bench-throughput");
    create_topic(&brokers, &topic, PARTITIONS).await;
    let started = Instant::now();
    let expected = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            produce(&brokers, &topic, events(), PARTITIONS, 0, |_, _| {})
        })
        .await
        .unwrap()
    };
    let produce_time = started.elapsed();
    let ends = expected.next_offsets.clone();
    assert_eq!(ends.len(), PARTITIONS as usize);
    println!(
        "topic {topic}: {} messages on {PARTITIONS} partitions produced in {:.1} s",
        expected.messages,
        produce_time.as_secs_f64()
    );

    let (read, bytes, consume_time) = {
        let (brokers, topic, ends) = (brokers.clone(), topic.clone(), ends.clone());
        tokio::task::spawn_blocking(move || consume_only(&brokers, &topic, &ends))
            .await
            .unwrap()
    };
    assert_eq!(read, expected.messages);
    let consume_rate = read as f64 / consume_time.as_secs_f64();
    println!(
        "consume-only (rdkafka BaseConsumer):  {read} messages, {:.1} MiB in {:.2} s = {consume_rate:.0} events/s",
        bytes as f64 / (1 << 20) as f64,
        consume_time.as_secs_f64()
    );

    // 1a. Read the topic to its end, commit, stop: the work consume-only does, plus decoding, the
    // logic, the checks, Parquet and the commits. The stop is the SIGTERM path (commit what is
    // buffered), asked for as soon as the source has handed over the topic's last message.
    let drain = Live::new(
        spec(dir.path(), "drain", mapping.clone(), Duration::from_secs(1)),
        &topic,
        PARTITIONS,
    )
    .reading_to(&ends);
    let (summary, (catalog, milestones)) = drain
        .run(
            &brokers,
            registry.clone(),
            |catalog, milestones| async move {
                milestones.until_drained().await;
                (catalog, milestones)
            },
        )
        .await;
    let stopped = Instant::now();
    let held = drain.committed(catalog.as_ref()).await;
    assert_eq!(
        held, ends,
        "the stopped pipeline's table holds the whole topic"
    );
    check(&summary, &expected);
    let first = *milestones.first_batch.get().unwrap();
    let drained = *milestones.drained.get().unwrap();
    let drain_time = stopped.duration_since(first);
    let drain_rate = expected.messages as f64 / drain_time.as_secs_f64();
    println!(
        "kappa run, read to the end and stopped: {} rows + {} dead letters in {:.2} s = {drain_rate:.0} events/s ({} commits; the last message was read {:.2} s after the first)",
        summary.rows_written,
        summary.dead_lettered(),
        drain_time.as_secs_f64(),
        summary.commits,
        drained.duration_since(first).as_secs_f64(),
    );
    println!(
        "kappa run (read to the end) / consume-only = {:.0}% (target ≥ 50%)",
        100.0 * drain_rate / consume_rate
    );

    // 1b. The same topic, running on with 1 s commits until the table holds all of it: what
    // drain adds to it is the wait for the commit interval after the topic is read.
    let live = Live::new(
        spec(
            dir.path(),
            "throughput",
            mapping.clone(),
            Duration::from_secs(1),
        ),
        &topic,
        PARTITIONS,
    );
    let started = Instant::now();
    let (summary, (done, milestones)) = live
        .run(&brokers, registry.clone(), |catalog, milestones| {
            let (live, ends) = (&live, &ends);
            async move {
                let done =
                    until_committed(live, catalog.as_ref(), ends, Duration::from_millis(100)).await;
                (done, milestones)
            }
        })
        .await;
    // The pipeline's time runs from its first batch; the start before it is printed apart.
    let first = *milestones.first_batch.get().unwrap();
    let kappa_time = done.duration_since(first);
    println!(
        "kappa run started (assignment, first batch) in {:.1} s (not counted)",
        first.duration_since(started).as_secs_f64()
    );
    check(&summary, &expected);
    let kappa_rate = expected.messages as f64 / kappa_time.as_secs_f64();
    println!(
        "kappa run, running on (1 s commits) until the table holds the topic: {} rows + {} dead letters in {:.2} s = {kappa_rate:.0} events/s, {} commits = {:.0}% of consume-only",
        summary.rows_written,
        summary.dead_lettered(),
        kappa_time.as_secs_f64(),
        summary.commits,
        100.0 * kappa_rate / consume_rate
    );

    // 2. Latency at the default commit policy.
    let rate = env_u64("KAPPA_BENCH_LATENCY_RATE", 2_000);
    let seconds = env_u64("KAPPA_BENCH_LATENCY_SECONDS", 150);
    let interval = CommitPolicy::default().interval;
    let topic = kappa_integration_tests::kafka::unique_topic("bench-latency");
    create_topic(&brokers, &topic, PARTITIONS).await;
    let live = Live::new(
        spec(dir.path(), "latency", mapping.clone(), interval),
        &topic,
        PARTITIONS,
    );
    let sent: Arc<Mutex<BTreeMap<(i32, i64), Instant>>> = Arc::default();
    let (summary, (seen, expected)) = live
        .run(&brokers, registry.clone(), |catalog, milestones| {
            let (live, sent, brokers, topic) =
                (&live, sent.clone(), brokers.clone(), topic.clone());
            async move {
                // Let the consumer join the group and sit idle first.
                while milestones.assigned.get().is_none() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let producing = tokio::task::spawn_blocking(move || {
                    produce(
                        &brokers,
                        &topic,
                        rate * seconds,
                        PARTITIONS,
                        rate,
                        |p, o| {
                            sent.lock().unwrap().insert((p, o), Instant::now());
                        },
                    )
                });
                let mut seen: Visibility = Vec::new();
                let mut ends: Option<(kappa_synth::Expected, Instant)> = None;
                let mut producing = Some(producing);
                loop {
                    let committed = live.committed(catalog.as_ref()).await;
                    if seen.last().map(|(_, c)| c) != Some(&committed) {
                        seen.push((Instant::now(), committed.clone()));
                    }
                    if let Some(handle) = producing.take_if(|h| h.is_finished()) {
                        ends = Some((handle.await.unwrap(), Instant::now()));
                    }
                    if let Some((expected, finished)) = &ends {
                        if committed
                            .iter()
                            .zip(&expected.next_offsets)
                            .all(|(c, e)| c >= e)
                        {
                            return (seen, expected.clone());
                        }
                        assert!(
                            finished.elapsed() < interval * 2 + Duration::from_secs(60),
                            "the table did not catch up with the produced ends {:?}: {committed:?}",
                            expected.next_offsets
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
    assert!(summary.is_complete(), "completeness: {summary:?}");
    let latency = latencies(&sent.lock().unwrap(), &seen);
    assert_eq!(latency.len() as u64, expected.messages);
    let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!(
        "latency (produce → visible), {rate} events/s for {seconds} s, {} s commit interval, {} commits: p50 {}, p95 {}, p99 {}, max {}",
        interval.as_secs(),
        summary.commits,
        s(quantile(&latency, 0.5)),
        s(quantile(&latency, 0.95)),
        s(quantile(&latency, 0.99)),
        s(quantile(&latency, 1.0)),
    );

    // 3. Restarts.
    restart_bench(&brokers).await;
}

/// Part 3: restarts after SIGKILL, per assignment.
async fn restart_bench(brokers: &str) {
    let count = env_u64("KAPPA_BENCH_RESTARTS", 5) as usize;
    let mut assignments = vec!["shard"];
    if std::env::var("KAPPA_BENCH_RESTART_GROUP").is_ok_and(|v| v == "1") {
        assignments.push("group");
    }
    for assignment in assignments {
        let brokers = brokers.to_string();
        let times = tokio::task::spawn_blocking(move || {
            kappa_bench::kafka::restarts(&brokers, assignment, count)
        })
        .await
        .unwrap();
        let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let assigned: Vec<String> = times.iter().map(|t| s(t.assigned)).collect();
        let visible: Vec<String> = times.iter().map(|t| s(t.visible)).collect();
        println!(
            "restart after SIGKILL, assignment = \"{assignment}\", {count} times: partitions assigned after {}; new events in the table after {}",
            assigned.join(", "),
            visible.join(", ")
        );
    }
}

/// The run accounted for every message of the topic, exactly once.
fn check(summary: &kappa_runtime::RunSummary, expected: &kappa_synth::Expected) {
    assert!(summary.is_complete(), "completeness: {summary:?}");
    assert_eq!(summary.records_in, expected.messages, "{summary:?}");
    assert_eq!(summary.rows_written, expected.rows, "{summary:?}");
    assert_eq!(
        summary.dead_lettered(),
        expected.dead_lettered(),
        "{summary:?}"
    );
}
