//! The endpoint over real HTTP: known events in, `/metrics` values out, checked by `promtool
//! check metrics`; `/readyz` with its reasons; freshness growing while nothing commits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kappa_core::ErrorKind;
use kappa_metrics::catalog::{self, MetricKind};
use kappa_metrics::events::{commit, maintenance, pipeline, quality, source, table};
use kappa_metrics::{Condition, Endpoint, Health, Limits, StallWatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `(status, content type, body)` of `METHOD path`, over a fresh HTTP/1.1 connection.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = request(addr, "GET", path).await;
    (status, body)
}

/// One sample: name and sorted labels.
type Series = (String, BTreeMap<String, String>);

/// The samples of a Prometheus text exposition, and each family's `# TYPE`.
fn parse(text: &str) -> (BTreeMap<Series, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                let labels = labels
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.insert((name, labels), value);
    }
    (samples, types)
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

/// promtool from `KAPPA_PROMTOOL` or `PATH` (`dev/services.sh install` installs it).
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KAPPA_PROMTOOL").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
}

fn emit_a_pipeline_run(now: SystemTime) {
    table::Configured {
        table: "orders",
        commit_interval: Duration::from_secs(60),
        freshness_slo: Some(Duration::from_secs(900)),
    }
    .emit();
    table::Configured {
        table: "payments",
        commit_interval: Duration::from_secs(30),
        freshness_slo: None,
    }
    .emit();
    table::StateLoaded {
        table: "orders",
        max_event_time_micros: Some(micros(now - Duration::from_secs(3600))),
    }
    .emit();
    source::Read {
        topic: "orders",
        partition: 0,
        records: 1000,
        bytes: 64_000,
    }
    .emit();
    source::Read {
        topic: "orders",
        partition: 1,
        records: 500,
        bytes: 32_000,
    }
    .emit();
    source::ConsumerLag {
        topic: "orders",
        partition: 0,
        lag: 250,
    }
    .emit();
    source::ConsumerLag {
        topic: "orders",
        partition: 1,
        lag: 40,
    }
    .emit();
    pipeline::BatchProcessed {
        table: "orders",
        records: 1500,
        deduplicated: 10,
        late: 5,
        dead_lettered: pipeline::DeadLettered {
            undecodable: 3,
            unmappable: 0,
            rejected: 7,
        },
    }
    .emit();
    quality::CheckEvaluated {
        table: "orders",
        check: "null_rate.user_id",
        policy: "block",
        passed: true,
        value: 0.0005,
        min: None,
        max: Some(0.001),
    }
    .emit();
    quality::CheckEvaluated {
        table: "orders",
        check: "completeness",
        policy: "block",
        passed: false,
        value: 3.0,
        min: Some(0.0),
        max: Some(0.0),
    }
    .emit();
    quality::NullRate {
        table: "orders",
        column: "user_id",
        rate: 0.0005,
    }
    .emit();
    quality::GateDecided {
        table: "orders",
        outcome: quality::GateOutcome::Block,
        failed_checks: &["completeness"],
    }
    .emit();
    commit::ConflictRetried {
        table: "orders",
        attempt: 1,
        reason: &"requirement failed: main changed",
    }
    .emit();
    commit::Committed {
        table: "orders",
        snapshot_id: 7,
        records: 1480,
        files: 2,
        bytes: 123_456,
        attempts: 2,
        duration: Duration::from_millis(1200),
        max_event_time_micros: Some(micros(now - Duration::from_secs(60))),
    }
    .emit();
    commit::AlreadyCommitted {
        table: "orders_dlq",
        duration: Duration::from_millis(30),
    }
    .emit();
    commit::Failed {
        table: "orders_late",
        duration: Duration::from_secs(3),
        kind: ErrorKind::Transient,
        error: &"catalog unreachable",
    }
    .emit();
    source::PartitionRevoked {
        topic: "orders",
        partition: 1,
    }
    .emit();
    source::PartitionStopped {
        topic: "orders",
        partition: 0,
        reason: "the table is at offset 9, past the topic's end 3",
    }
    .emit();
    source::PartitionStopped {
        topic: "orders",
        partition: 1,
        reason: "the table is at offset 9, past the topic's end 3",
    }
    .emit();
    source::PartitionResumed {
        topic: "orders",
        partition: 1,
    }
    .emit();
    source::OffsetsAbsent {
        topic: "orders",
        partition: 0,
        from: 10,
        to: 12,
    }
    .emit();
    for waited in [0, 30, 70] {
        source::ArchiveWait {
            topic: "orders",
            partition: 1,
            waited: Duration::from_millis(waited),
        }
        .emit();
    }
    table::Shape {
        table: "orders",
        snapshots: 40,
        data_files: Some(120),
        data_bytes: Some(3_000_000),
        target_file_size: 134_217_728,
    }
    .emit();
    maintenance::Compacted {
        table: "orders",
        partitions: 2,
        files_rewritten: 100,
        bytes_rewritten: 2_500_000,
    }
    .emit();
    maintenance::Expired {
        table: "orders",
        snapshots: 39,
        files_deleted: 150,
        bytes_deleted: 2_600_000,
    }
    .emit();
    maintenance::OrphansDeleted {
        table: "orders",
        files_deleted: 3,
        bytes_deleted: 4_096,
        young: 1,
    }
    .emit();
    maintenance::Finished {
        table: "orders",
        partitions: 7,
        partition_files_max: 2,
    }
    .emit();
    table::Tick { now }.emit();
}

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let health = Health::starting();
    let endpoint = Endpoint::start("127.0.0.1:0".parse().expect("addr"), health.clone())
        .await
        .expect("endpoint");
    let addr = endpoint.local_addr();

    // Not ready until the table state is loaded and the source connected, and it says which.
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "not ready\ntable_state\nsource\n".to_owned())
    );
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    health.set_ready(Condition::TableState);
    health.set_ready(Condition::Source);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    health.set_not_ready(Condition::Source, "no records from orders for 5m");
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "not ready\nsource\n"));
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(request(addr, "POST", "/metrics").await.0, 405);

    let now = SystemTime::now();
    emit_a_pipeline_run(now);
    let (status, content_type, text) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, kappa_metrics::PROMETHEUS_TEXT);
    let (samples, types) = parse(&text);
    let tp0 = [("partition", "0"), ("topic", "orders")];
    let tp1 = [("partition", "1"), ("topic", "orders")];
    let orders = [("table", "orders")];
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);

    // What the events fed in, value for value.
    assert_eq!(v("kappa_source_records_read_total", &tp0), 1000.0);
    assert_eq!(v("kappa_source_records_read_total", &tp1), 500.0);
    assert_eq!(v("kappa_source_bytes_read_total", &tp0), 64_000.0);
    assert_eq!(v("kappa_source_consumer_lag_records", &tp0), 250.0);
    assert_eq!(v("kappa_source_partition_stopped", &tp0), 1.0);
    assert_eq!(v("kappa_source_partition_stopped", &tp1), 0.0);
    assert_eq!(v("kappa_source_offsets_absent_total", &tp0), 2.0);
    assert_eq!(v("kappa_source_archive_wait_seconds_count", &tp1), 3.0);
    assert!((v("kappa_source_archive_wait_seconds_sum", &tp1) - 0.1).abs() < 1e-9);
    let wait_bucket = |le: &str| {
        v(
            "kappa_source_archive_wait_seconds_bucket",
            &[("le", le), ("partition", "1"), ("topic", "orders")],
        )
    };
    assert_eq!(
        (
            wait_bucket("0.001"),
            wait_bucket("0.05"),
            wait_bucket("0.1")
        ),
        (1.0, 2.0, 3.0)
    );
    assert_eq!(
        v("kappa_source_consumer_lag_records", &tp1),
        0.0,
        "revoked partitions report no lag"
    );
    assert_eq!(v("kappa_pipeline_records_read_total", &orders), 1500.0);
    assert_eq!(v("kappa_pipeline_records_written_total", &orders), 1480.0);
    assert_eq!(
        v("kappa_pipeline_records_deduplicated_total", &orders),
        10.0
    );
    assert_eq!(v("kappa_pipeline_records_late_total", &orders), 5.0);
    for (kind, n) in [("undecodable", 3.0), ("unmappable", 0.0), ("rejected", 7.0)] {
        assert_eq!(
            v(
                "kappa_pipeline_records_dead_lettered_total",
                &[("kind", kind), ("table", "orders")]
            ),
            n,
            "{kind}"
        );
    }
    let commits = |table: &str, outcome: &str| {
        v(
            "kappa_commits_total",
            &[("outcome", outcome), ("table", table)],
        )
    };
    assert_eq!(commits("orders", "committed"), 1.0);
    assert_eq!(commits("orders", "conflict_retried"), 1.0);
    assert_eq!(commits("orders_dlq", "already_committed"), 1.0);
    assert_eq!(commits("orders_late", "failed"), 1.0);
    // Configured creates every outcome at 0, so increase() sees a table's first failure.
    assert_eq!(commits("payments", "failed"), 0.0);
    assert_eq!(commits("orders", "already_committed"), 0.0);
    assert_eq!(v("kappa_commit_bytes_written_total", &orders), 123_456.0);
    assert_eq!(v("kappa_commit_files_written_total", &orders), 2.0);
    assert_eq!(v("kappa_commit_duration_seconds_count", &orders), 1.0);
    assert!((v("kappa_commit_duration_seconds_sum", &orders) - 1.2).abs() < 1e-9);
    let bucket = |le: &str| {
        v(
            "kappa_commit_duration_seconds_bucket",
            &[("le", le), ("table", "orders")],
        )
    };
    assert_eq!(
        (bucket("1"), bucket("2.5"), bucket("+Inf")),
        (0.0, 1.0, 1.0)
    );
    assert_eq!(v("kappa_commit_interval_seconds", &orders), 60.0);
    assert_eq!(v("kappa_table_freshness_slo_seconds", &orders), 900.0);
    // The commit's event time (60 s ago) replaced the loaded state's (1 h ago).
    let lag = v("kappa_table_freshness_lag_seconds", &orders);
    assert!((60.0..90.0).contains(&lag), "freshness lag {lag}");
    let age = v("kappa_commit_last_success_age_seconds", &orders);
    assert!((0.0..30.0).contains(&age), "last commit age {age}");
    assert_eq!(v("kappa_table_data_files", &orders), 120.0);
    assert_eq!(
        v("kappa_table_target_file_size_bytes", &orders),
        134_217_728.0
    );
    assert_eq!(
        v("kappa_maintenance_bytes_rewritten_total", &orders),
        2_500_000.0
    );
    assert_eq!(v("kappa_table_partition_files_max", &orders), 2.0);
    let by_command =
        |name: &str, command: &str| v(name, &[("command", command), ("table", "orders")]);
    assert_eq!(
        by_command("kappa_maintenance_files_deleted_total", "expire"),
        150.0
    );
    assert_eq!(
        by_command("kappa_maintenance_bytes_deleted_total", "orphans"),
        4_096.0
    );
    assert!(
        by_command(
            "kappa_maintenance_last_success_timestamp_seconds",
            "orphans"
        ) > 1.7e9
    );
    let check = |name: &str, check: &str, extra: (&str, &str)| {
        let mut labels = vec![("check", check), ("table", "orders"), extra];
        labels.sort();
        v(name, &labels)
    };
    assert_eq!(
        check(
            "kappa_quality_check_passed",
            "completeness",
            ("policy", "block")
        ),
        0.0
    );
    assert_eq!(
        check(
            "kappa_quality_check_passed",
            "null_rate.user_id",
            ("policy", "block")
        ),
        1.0
    );
    assert_eq!(
        check(
            "kappa_quality_check_failures_total",
            "completeness",
            ("policy", "block")
        ),
        1.0
    );
    assert_eq!(
        check(
            "kappa_quality_check_threshold",
            "null_rate.user_id",
            ("bound", "max")
        ),
        0.001
    );
    assert_eq!(
        v(
            "kappa_quality_check_value",
            &[("check", "completeness"), ("table", "orders")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "kappa_quality_null_rate_ratio",
            &[("column", "user_id"), ("table", "orders")]
        ),
        0.0005
    );
    assert_eq!(v("kappa_quality_gate_blocked", &orders), 1.0);
    assert_eq!(
        v(
            "kappa_quality_gate_outcomes_total",
            &[("outcome", "block"), ("table", "orders")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "kappa_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Every family is in the catalog with its type and exactly its labels, and every catalog
    // entry was emitted by one of the events above.
    for (name, labels) in samples.keys() {
        let def = catalog::lookup(name).unwrap_or_else(|| panic!("{name} is not in the catalog"));
        let mut want: Vec<&str> = def.labels.to_vec();
        if name.ends_with("_bucket") {
            want.push("le");
        }
        want.sort_unstable();
        let got: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(got, want, "{name}: labels");
    }
    for def in catalog::METRICS {
        assert_eq!(
            types.get(def.name).map(String::as_str),
            Some(def.kind.as_str()),
            "{} missing or of another type",
            def.name
        );
        if def.kind != MetricKind::Histogram {
            assert!(
                samples.keys().any(|(n, _)| n == def.name),
                "{} not emitted",
                def.name
            );
        }
    }

    // promtool's own parser and linter accept the exposition.
    match promtool() {
        Some(promtool) => {
            let mut child = Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("feed promtool");
            let out = child.wait_with_output().expect("promtool");
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && report.trim().is_empty(),
                "promtool check metrics:\n{report}\n--- exposition ---\n{text}"
            );
        }
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "promtool not found (CI): dev/services.sh install installs it, or set KAPPA_PROMTOOL"
            )
        }
        None => eprintln!(
            "promtool not found: `promtool check metrics` skipped (dev/services.sh install, or KAPPA_PROMTOOL)"
        ),
    }

    // The source stalls: nothing is emitted any more. Freshness and last-commit age grow from
    // one scrape to the next, and once the stall watch's time has passed /readyz says why.
    health.set_ready(Condition::Source);
    let watch = StallWatch::new(
        health.clone(),
        "kafka topic orders",
        Duration::from_secs(300),
    );
    let stalled_since = Instant::now();
    watch.progressed_at(stalled_since);
    assert!(!watch.check());
    assert_eq!(get(addr, "/readyz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (later, _) = parse(&get(addr, "/metrics").await.1);
    let lag_later = value(&later, "kappa_table_freshness_lag_seconds", &orders);
    let age_later = value(&later, "kappa_commit_last_success_age_seconds", &orders);
    assert!(lag_later >= lag + 1.0, "{lag} -> {lag_later}");
    assert!(age_later >= age + 1.0, "{age} -> {age_later}");
    assert!(watch.check_at(stalled_since + Duration::from_secs(360)));
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "not ready\nsource\n".to_owned())
    );

    endpoint.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "stopped endpoint still accepts"
    );
}

#[tokio::test]
async fn a_taken_address_is_a_user_error_naming_it() {
    let first = Endpoint::start("127.0.0.1:0".parse().expect("addr"), Health::default())
        .await
        .expect("endpoint");
    let taken = first.local_addr();
    let err = Endpoint::start(taken, Health::default())
        .await
        .expect_err("the address is taken");
    use kappa_core::Classify as _;
    assert_eq!(err.kind(), ErrorKind::User);
    assert!(
        err.to_string().contains(&taken.to_string())
            && err.to_string().contains("[metrics] listen"),
        "{err}"
    );
}

/// How long after `start` the server closed `stream` (end of stream or reset), if within `wait`.
async fn closed_after(mut stream: TcpStream, start: Instant, wait: Duration) -> Option<Duration> {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::from_std(start + wait);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Clients that connect and send nothing, or only part of a request head, cannot hold the
/// endpoint: past `max_connections` they are closed at once, the others after
/// `request_timeout`, and a scrape afterwards is answered.
#[tokio::test]
async fn half_open_connections_are_capped_and_timed_out_and_the_endpoint_still_answers() {
    let limits = Limits {
        max_connections: 8,
        request_timeout: Duration::from_millis(600),
    };
    let endpoint = Endpoint::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        Health::default(),
        limits,
    )
    .await
    .expect("endpoint");
    let addr = endpoint.local_addr();
    let start = Instant::now();
    let mut watchers = Vec::new();
    for i in 0..60 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 1 {
            // A slow client: the request line, then nothing more of the head.
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
        }
        watchers.push(tokio::spawn(closed_after(
            stream,
            start,
            Duration::from_secs(5),
        )));
    }
    let mut closed = Vec::new();
    for watcher in watchers {
        closed.push(watcher.await.expect("watcher"));
    }
    let open: Vec<usize> = (0..closed.len()).filter(|i| closed[*i].is_none()).collect();
    assert!(
        open.is_empty(),
        "connections still open after 5 s: {open:?}"
    );
    let closed: Vec<Duration> = closed.into_iter().flatten().collect();
    let early = closed
        .iter()
        .filter(|d| **d < limits.request_timeout)
        .count();
    assert!(
        early >= 60 - limits.max_connections,
        "past the cap, connections are closed at once: {early} of 60 before the timeout ({closed:?})"
    );
    let late = closed.len() - early;
    assert!(
        late <= limits.max_connections,
        "at most max_connections were served until the timeout: {late}"
    );
    // The slots are free again: a scrape is answered.
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(request(addr, "GET", "/metrics").await.0, 200);
    endpoint.stop().await;
}

/// The probes are unauthenticated and may face an open network: whatever a reason says (here a
/// driver error quoting the catalog URI with its password), `/healthz` and `/readyz` answer a
/// status word and the conditions' names only.
#[tokio::test]
async fn probes_carry_no_failure_text() {
    let health = Health::new([(Condition::TableState, "loading")]);
    let endpoint = Endpoint::start("127.0.0.1:0".parse().expect("addr"), health.clone())
        .await
        .expect("endpoint");
    let addr = endpoint.local_addr();
    let failure = "catalog postgres://kappa@db/lake?password=s3cr3t: connecting: refused";
    health.set_not_ready(Condition::Commit, failure);
    health.set_failed(failure);
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "not ready\ntable_state\ncommit\n".to_owned())
    );
    assert_eq!(get(addr, "/healthz").await, (503, "failed\n".to_owned()));
    endpoint.stop().await;
}
