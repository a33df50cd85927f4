//! `make bench`: whole processes on each archive shape Kafka Connect writes (1M events each), as
//! a user runs them: `kappa replay` (the release binary) against the Python peer
//! (`integration-tests/python/peer_replay.py`: fastavro, pyarrow, one PyIceberg append; same
//! partitioning, ZSTD, dedup on `event_id`) on the same archive, wall time spawn to exit and peak
//! memory, median of 3; then `kappa replay` of the value-records-with-deflate archive from S3
//! (SeaweedFS, `dev/services.sh`) through the latency proxy, with 0 and with 30 ms added to every
//! request, against the same archive on local disk. Runs that are compared alternate (kappa, peer, kappa,
//! ...; local, S3, S3 + 30 ms, local, ...): this host's speed drifts by 10–20% from minute to
//! minute, and runs taken one block after another compared two different machines. Both write
//! the same rows (checked against the generated history).
//! The S3 lines show the CPU `kappa replay` used and the CPU the rest of the machine used while it
//! ran: SeaweedFS and the proxy serve the archive from the same cores, so the "of S3, 0 ms" column
//! is what the added latency alone costs, with the object store's share of the cores the same.
//! Last, the listing of an
//! hourly archive of 10,800 objects from S3 + 30 ms: the flat listing against Kappa's. Needs the
//! services' environment (`make bench` sets it).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kappa_bench::latency::LatencyProxy;
use kappa_bench::process::{Measured, kappa_replay, last_json, medians_in_turn, peer_replay};
use kappa_bench::{Bench, Shape, config_text, events};
use kappa_synth::{History, HistorySpec, ORDERS_V1, ORDERS_V2, write_archive};

const RUNS: usize = 3;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// A pipeline file replaying `archive_section` into a fresh local table under `dir/name`.
fn pipeline_file(dir: &Path, name: &str, archive_section: &str) -> std::path::PathBuf {
    let text = config_text(dir, name, Duration::from_secs(60));
    let url = format!("file://{}/archive", dir.join(name).display());
    let text = text.replace(
        &format!("url = \"{url}\"\ntopic = \"orders\"\n"),
        archive_section,
    );
    assert!(text.contains(archive_section), "{text}");
    // The orders contract's schemas, for raw wire-format values.
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let text = format!("{text}\n[schema]\ndir = \"{}\"\n", contracts.display());
    std::fs::create_dir_all(dir.join(name)).unwrap();
    let path = dir.join(name).join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn local_section(bench: &Bench) -> String {
    format!(
        "url = \"file://{}/archive\"\ntopic = \"orders\"\n",
        bench.dir.path().display()
    )
}

/// `kappa replay` of `section`'s archive into a fresh table, run `i` of `label`.
fn kappa(bench: &Bench, label: &str, section: &str, i: usize) -> std::process::Command {
    kappa_replay(&pipeline_file(
        bench.dir.path(),
        &format!("{label}-{i}"),
        section,
    ))
}

/// The rows a `kappa replay` run wrote, from its summary.
fn rows_written(run: &Measured) -> u64 {
    last_json(&run.stdout)["rows_written"].as_u64().unwrap()
}

/// `kappa replay`'s CPU and the rest of the machine's during `run`.
fn cpu(run: &Measured) -> String {
    format!("{:.2} s | {:.2} s", run.cpu_seconds, run.others_cpu_seconds)
}

/// The shape's line of the table: `kappa replay` and the peer, in turn.
async fn shape(bench: &Bench, shape: Shape) {
    let messages = bench.expected.messages as f64;
    // The registry's ids of the two schema versions, for raw wire-format values.
    let schemas: Vec<(u32, std::path::PathBuf)> = [ORDERS_V1, ORDERS_V2]
        .iter()
        .enumerate()
        .map(|(i, json)| {
            let schema = kappa_schema::names::parse_schema(json).unwrap();
            let path = bench.dir.path().join(format!("orders-v{}.avsc", i + 1));
            std::fs::write(&path, json).unwrap();
            (kappa_schema::registry::schema_id_for(&schema), path)
        })
        .collect();
    let archive = bench.dir.path().join("archive");
    let section = local_section(bench);
    let kappa_run = |i| kappa(bench, shape.name, &section, i);
    let peer_run = |i| {
        let warehouse = bench.dir.path().join(format!("peer-{}-{i}", shape.name));
        std::fs::create_dir_all(&warehouse).unwrap();
        peer_replay(&archive, &warehouse, &schemas)
    };
    let mut medians = medians_in_turn(RUNS, &[&kappa_run, &peer_run]).await;
    let (peer, peer_rss) = medians.pop().unwrap();
    let (local, kappa_rss) = medians.pop().unwrap();
    let kappa_s = local.seconds;
    assert_eq!(
        rows_written(&local),
        bench.expected.rows,
        "kappa replay's rows"
    );
    let peer_rows = last_json(&peer.stdout)["rows"].as_u64().unwrap();
    assert_eq!(peer_rows, bench.expected.rows, "the peer's rows");
    println!(
        "| {} | {:.2} s = {:.0} k/s | {:.0} MiB | {:.2} s = {:.0} k/s | {:.0} MiB | **{:.1}x** |",
        shape.name,
        kappa_s,
        messages / kappa_s / 1e3,
        mib(kappa_rss),
        peer.seconds,
        messages / peer.seconds / 1e3,
        mib(peer_rss),
        peer.seconds / kappa_s,
    );
}

/// The shape's archive replayed from local disk, from S3 and from S3 with 30 ms added to every
/// request, in turn.
async fn from_s3(bench: &Bench, shape: Shape) {
    let endpoint = std::env::var("KAPPA_S3_ENDPOINT")
        .expect("KAPPA_S3_ENDPOINT: run with the services' environment (make bench)");
    let prefix = format!("bench-{}-{}", shape.name, std::process::id());
    let store = Arc::new(kappa_integration_tests::s3_store("events"));
    write_archive(
        store.as_ref(),
        &object_store::path::Path::from(prefix.as_str()),
        History::new(HistorySpec::new(events())).unwrap(),
        &shape.options(),
    )
    .await
    .unwrap();
    let upstream = upstream(&endpoint);
    let delays = [Duration::ZERO, Duration::from_millis(30)];
    let mut proxies = Vec::new();
    for delay in delays {
        proxies.push(LatencyProxy::start(upstream, delay).await.unwrap());
    }
    let s3_section = |proxy: &LatencyProxy| {
        format!(
            "url = \"s3://events/{prefix}\"\ntopic = \"orders\"\nendpoint = \"http://{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"testtest\"\nallow_http = true\n",
            proxy.addr
        )
    };
    let local_section = local_section(bench);
    let (zero, thirty) = (s3_section(&proxies[0]), s3_section(&proxies[1]));
    let local_run = |i| kappa(bench, "local", &local_section, i);
    let zero_run = |i| kappa(bench, "s3-0ms", &zero, i);
    let thirty_run = |i| kappa(bench, "s3-30ms", &thirty, i);
    let medians = medians_in_turn(RUNS, &[&local_run, &zero_run, &thirty_run]).await;
    let (local_seconds, zero_seconds) = (medians[0].0.seconds, medians[1].0.seconds);
    let messages = bench.expected.messages as f64;
    println!();
    println!(
        "| archive of {}, in turn | kappa replay | events/s | of local disk | of S3, 0 ms | peak RSS | kappa's CPU | the rest of the machine's CPU |",
        shape.name
    );
    println!("|---|---|---|---|---|---|---|---|");
    let names = ["local disk".to_string()].into_iter().chain(
        delays
            .iter()
            .map(|d| format!("S3, {} ms added per request", d.as_millis())),
    );
    for (name, (run, rss)) in names.zip(&medians) {
        assert_eq!(
            rows_written(run),
            bench.expected.rows,
            "{name}: kappa replay's rows"
        );
        println!(
            "| {name} | {:.2} s | {:.0} k | **{:.0}%** | {:.0}% | {:.0} MiB | {} |",
            run.seconds,
            messages / run.seconds / 1e3,
            100.0 * local_seconds / run.seconds,
            100.0 * zero_seconds / run.seconds,
            mib(*rss),
            cpu(run)
        );
    }
    // The archive leaves the bucket with the run.
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStore;
    let prefix = object_store::path::Path::from(prefix.as_str());
    let keys = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(keys)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

/// The address of the S3 endpoint `http://host:port`, for the latency proxy.
fn upstream(endpoint: &str) -> std::net::SocketAddr {
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// Days, hours, partitions and files per hour of the listing benchmark's archive.
const LISTED: (u32, u32, u32, u32) = (30, 24, 3, 5);

/// Listing an archive of many objects from S3 with 30 ms added per request: the flat listing
/// (one page of 1,000 keys per round trip, one after the other) against Kappa's
/// (`ArchivePlan::list`: the flat listing raced by one walking the directories), in turn, on
/// Kafka Connect's hourly layout (30 days x 24 hours x 3 partitions x 5 files). The objects are
/// one byte: only the listing is timed.
async fn listing_from_s3() {
    use futures::{StreamExt, TryStreamExt};
    use kappa_source_replay::{ArchivePlan, PartitionFilter, S3Options, TimeWindow, open_store};
    use object_store::path::Path as Key;
    use object_store::{ObjectStore, ObjectStoreExt};

    let endpoint = std::env::var("KAPPA_S3_ENDPOINT")
        .expect("KAPPA_S3_ENDPOINT: run with the services' environment (make bench)");
    let prefix = format!("bench-listing-{}", std::process::id());
    let store = kappa_integration_tests::s3_store("events");
    let (days, hours, partitions, files) = LISTED;
    let mut keys = Vec::new();
    for day in 1..=days {
        for hour in 0..hours {
            for p in 0..partitions {
                for f in 0..files {
                    let offset = ((day * hours + hour) * files + f) * 1000;
                    keys.push(Key::from(format!(
                        "{prefix}/orders/year=2026/month=11/day={day:02}/hour={hour:02}/orders+{p}+{offset:010}.avro"
                    )));
                }
            }
        }
    }
    let objects = keys.len();
    futures::stream::iter(keys.clone())
        .map(|key| {
            let store = &store;
            async move {
                store
                    .put(&key, object_store::PutPayload::from_static(b"x"))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let upstream = upstream(&endpoint);
    let proxy = LatencyProxy::start(upstream, Duration::from_millis(30))
        .await
        .unwrap();
    let url = format!("s3://events/{prefix}");
    let options = S3Options {
        endpoint: Some(format!("http://{}", proxy.addr)),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("testtest".into()),
        allow_http: true,
        path_style: None,
    };
    let (flat, kappa) = (&mut Vec::new(), &mut Vec::new());
    for _ in 0..RUNS {
        // A new client each time, as a new process has: no connection is warm.
        let (remote, root) = open_store(&url, &options).unwrap();
        let started = std::time::Instant::now();
        let listed: Vec<_> = remote
            .list(Some(&root.clone().join("orders")))
            .try_collect()
            .await
            .unwrap();
        flat.push(started.elapsed().as_secs_f64());
        assert_eq!(listed.len(), objects, "the flat listing");
        let (remote, root) = open_store(&url, &options).unwrap();
        let started = std::time::Instant::now();
        let plan = ArchivePlan::list(
            remote.as_ref(),
            &url,
            &root,
            "orders",
            &PartitionFilter::All,
            &TimeWindow::default(),
        )
        .await
        .unwrap();
        kappa.push(started.elapsed().as_secs_f64());
        assert_eq!(plan.files(), objects, "Kappa's listing");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (flat, kappa) = (median(flat), median(kappa));
    println!();
    println!(
        "| listing {objects} objects in hourly directories ({days} days x {hours} h x {partitions} partitions x {files}), S3 + 30 ms per request, in turn | flat listing | Kappa's listing | flat / Kappa |"
    );
    println!("|---|---|---|---|");
    println!(
        "| median of {RUNS} | {flat:.3} s | {kappa:.3} s | **{:.1}x** |",
        flat / kappa
    );
    let listed = futures::stream::iter(keys).map(Ok).boxed();
    store
        .delete_stream(listed)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

/// `KAPPA_BENCH_KEEP=1`: each shape's archive and pipeline files stay, for profiling.
fn keep(bench: Bench) {
    if std::env::var_os("KAPPA_BENCH_KEEP").is_some() {
        println!("kept {}", bench.dir.keep().display());
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("kappa replay against the peer, {} events, median of {RUNS}:", events());
        println!();
        println!("| shape | kappa replay | peak RSS | peer (PyIceberg + fastavro) | peak RSS | peer / kappa |");
        println!("|---|---|---|---|---|---|");
        let mut deflate = None;
        // `KAPPA_BENCH_SHAPES=value_deflate_1k,...`: only those shapes.
        let only = std::env::var("KAPPA_BENCH_SHAPES").ok();
        for s in Shape::ALL {
            if only.as_ref().is_some_and(|o| !o.split(',').any(|n| n == s.name)) {
                continue;
            }
            let bench = Bench::archived(events(), &s.options()).await;
            shape(&bench, s).await;
            if s.name == Shape::VALUE_DEFLATE.name {
                deflate = Some(bench);
            } else {
                keep(bench);
            }
        }
        if let Some(bench) = deflate {
            from_s3(&bench, Shape::VALUE_DEFLATE).await;
            keep(bench);
        }
        if only.as_ref().is_none_or(|o| o.split(',').any(|n| n == "listing")) {
            listing_from_s3().await;
        }
    });
}
