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
    /// The CPU time (user + system) it used, from the kernel's account of reaped children.
    pub cpu_seconds: f64,
    /// The CPU time everything else on the machine used while it ran (an object store serving
    /// it on the same cores, the benchmark's latency proxy): all cores' busy time from
    /// `/proc/stat` less `cpu_seconds`.
    pub others_cpu_seconds: f64,
}

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux platform
/// Kappa builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks (user + system) of this process's reaped children (`/proc/self/stat`'s cutime and
/// cstime).
fn children_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3, state.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum()
}

/// Busy CPU ticks of all cores (`/proc/stat`: user, nice, system, irq, softirq, steal).
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum()
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
    let (children_before, busy_before) = (children_ticks(), machine_busy_ticks());
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
    let cpu = children_ticks().saturating_sub(children_before);
    let busy = machine_busy_ticks().saturating_sub(busy_before);
    assert!(status.success(), "{command:?} failed: {status}");
    Measured {
        seconds,
        peak_rss_bytes: peak,
        stdout: std::fs::read(out.path()).expect("reading the output"),
        cpu_seconds: cpu as f64 / TICKS_PER_SECOND,
        others_cpu_seconds: busy.saturating_sub(cpu) as f64 / TICKS_PER_SECOND,
    }
}

/// `runs` runs of each command, in turn (`commands[0](0)`, `commands[1](0)`, ...,
/// `commands[0](1)`, ...), so that the host's drift from minute to minute weighs on all of them
/// alike when their times are compared: for each command in order, its median run by time (with
/// that run's memory and output) and the largest peak memory of its runs.
pub async fn medians_in_turn(
    runs: usize,
    commands: &[&dyn Fn(usize) -> Command],
) -> Vec<(Measured, u64)> {
    let mut all: Vec<Vec<Measured>> = commands.iter().map(|_| Vec::new()).collect();
    for run in 0..runs.max(1) {
        for (command, measured) in commands.iter().zip(all.iter_mut()) {
            measured.push(measure(command(run)).await);
        }
    }
    all.into_iter().map(median).collect()
}

/// The median run by time and the largest peak memory of `all` (not empty).
fn median(mut all: Vec<Measured>) -> (Measured, u64) {
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
