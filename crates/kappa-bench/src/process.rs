//! Benchmarks that run whole processes, as a user does: the `kappa` release binary and the
//! Python peer (`integration-tests/python/peer_replay.py`), timed from spawn to exit, with their
//! peak resident memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One process run.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Spawn to exit.
    pub seconds: f64,
    /// The largest `VmHWM` (peak resident set) read from `/proc/<pid>/status` while it ran,
    /// sampled every 5 ms (the peak of a run that lasts seconds is not missed by more than what
    /// it allocates in its last 5 ms).
    pub peak_rss_bytes: u64,
    /// Its standard output.
    pub stdout: Vec<u8>,
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `command` to its end; panics naming it when it fails.
pub async fn measure(mut command: Command) -> Measured {
    let out = tempfile::NamedTempFile::new().expect("a temporary file");
    command
        .stdout(Stdio::from(out.reopen().expect("reopening")))
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "{command:?} failed: {status}");
    Measured {
        seconds,
        peak_rss_bytes: peak,
        stdout: std::fs::read(out.path()).expect("reading the output"),
    }
}

/// The median of `runs` runs of `command()` by time (with that run's memory and output), and the
/// largest peak memory of all of them.
pub async fn median_of(runs: usize, command: impl Fn(usize) -> Command) -> (Measured, u64) {
    let mut all = Vec::new();
    for run in 0..runs.max(1) {
        all.push(measure(command(run)).await);
    }
    let peak = all.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0);
    all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    (all.swap_remove(all.len() / 2), peak)
}

/// The last line of `stdout` as JSON.
pub fn last_json(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(kappa_integration_tests::last_line(stdout)).unwrap_or_else(|e| {
        panic!(
            "the last line is not JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// `kappa replay -c config --json`, the binary next to the benchmark's executable
/// (`target/release/kappa`: `make bench` builds it first).
pub fn kappa_replay(config: &Path) -> Command {
    let mut command = Command::new(kappa_integration_tests::kappa_bin());
    command.arg("replay").arg("-c").arg(config).arg("--json");
    command
}

/// The peer on the archive under `archive` into a table under `warehouse`, with the registry's
/// schemas (`(id, schema text)`) for raw wire-format values.
pub fn peer_replay(archive: &Path, warehouse: &Path, schemas: &[(u32, PathBuf)]) -> Command {
    let mut command = Command::new(kappa_integration_tests::python());
    command
        .arg(kappa_integration_tests::python_dir().join("peer_replay.py"))
        .arg("--archive")
        .arg(archive)
        .arg("--topic")
        .arg("orders")
        .arg("--warehouse")
        .arg(warehouse);
    for (id, path) in schemas {
        command
            .arg("--schema")
            .arg(format!("{id}={}", path.display()));
    }
    command
}
