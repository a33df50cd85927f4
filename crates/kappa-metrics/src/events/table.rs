//! Per-table clocks: freshness lag and time since the last successful commit.
//!
//! Both are gauges of "now minus a moment", so they must move while nothing happens — that is
//! how a stalled source shows. The moments are kept here (set by [`StateLoaded`] and the
//! commit events); [`Tick`] and every `/metrics` scrape recompute the gauges from them.
//!
//! ```text
//! StateLoaded ──► clock { max event time from the table, last success = load time }
//! Committed ───► clock { max event time = table's, last success = now }
//! AlreadyCommitted ─► clock { last success = now }
//! Tick / scrape ─► freshness lag = now − max event time; last success age = now − last success
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::catalog;
use crate::recorder::{counter_add, gauge_set};

#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    max_event_time_micros: Option<i64>,
    last_success: Option<SystemTime>,
}

static CLOCKS: Mutex<BTreeMap<String, Clock>> = Mutex::new(BTreeMap::new());

fn with_clock(table: &str, f: impl FnOnce(&mut Clock)) {
    let mut clocks = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    match clocks.get_mut(table) {
        Some(clock) => f(clock),
        None => f(clocks.entry(table.to_owned()).or_default()),
    }
}

/// A commit (or an input found already committed) at `SystemTime::now()`.
pub(crate) fn committed(table: &str, max_event_time_micros: Option<i64>) {
    let now = SystemTime::now();
    with_clock(table, |c| {
        c.last_success = Some(now);
        if let Some(t) = max_event_time_micros {
            c.max_event_time_micros = Some(c.max_event_time_micros.map_or(t, |m| m.max(t)));
        }
    });
    refresh_one(table, now);
}

fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// (freshness lag, last success age) in seconds at `now`, never negative.
fn ages(clock: &Clock, now: SystemTime) -> (Option<f64>, Option<f64>) {
    let lag = clock
        .max_event_time_micros
        .map(|m| ((micros(now) - m).max(0)) as f64 / 1e6);
    let age = clock.last_success.map(|t| {
        now.duration_since(t)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    });
    (lag, age)
}

fn set_gauges(table: &str, lag: Option<f64>, age: Option<f64>) {
    if let Some(lag) = lag {
        gauge_set(&catalog::TABLE_FRESHNESS_LAG, &[table], lag);
    }
    if let Some(age) = age {
        gauge_set(&catalog::COMMIT_LAST_SUCCESS_AGE, &[table], age);
    }
}

fn refresh_one(table: &str, now: SystemTime) {
    let clock = CLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(table)
        .copied();
    if let Some(clock) = clock {
        let (lag, age) = ages(&clock, now);
        set_gauges(table, lag, age);
    }
}

/// Recomputes every table's clock gauges at `now`; logs each (debug) when `log`.
pub(crate) fn refresh(now: SystemTime, log: bool) {
    let clocks: Vec<(String, Clock)> = CLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(t, c)| (t.clone(), *c))
        .collect();
    for (table, clock) in clocks {
        let (lag, age) = ages(&clock, now);
        set_gauges(&table, lag, age);
        if log {
            tracing::debug!(
                table = %table,
                freshness_lag_seconds = lag,
                last_commit_age_seconds = age,
                "table clocks"
            );
        }
    }
}

/// The pipeline's settings that alerts compare against: once at start, for the main table
/// (the one committed every interval; not the dead-letter or late tables, which commit only
/// when they have rows).
#[derive(Debug, Clone, Copy)]
pub struct Configured<'a> {
    /// The table.
    pub table: &'a str,
    /// `[commit] interval`.
    pub commit_interval: Duration,
    /// `[quality.gates.timeliness] freshness_sla`, if the timeliness gate is on.
    pub freshness_slo: Option<Duration>,
}

impl Configured<'_> {
    /// Sets `kappa_commit_interval_seconds` and `kappa_table_freshness_slo_seconds`, creates
    /// the table's `kappa_commits_total` series at 0 for every outcome (so `increase()` sees the
    /// first failure), and logs (info).
    pub fn emit(&self) {
        for outcome in crate::events::commit::OUTCOMES {
            counter_add(&catalog::COMMITS, &[self.table, outcome], 0);
        }
        gauge_set(
            &catalog::COMMIT_INTERVAL,
            &[self.table],
            self.commit_interval.as_secs_f64(),
        );
        if let Some(slo) = self.freshness_slo {
            gauge_set(
                &catalog::TABLE_FRESHNESS_SLO,
                &[self.table],
                slo.as_secs_f64(),
            );
        }
        tracing::info!(
            table = self.table,
            commit_interval_seconds = self.commit_interval.as_secs_f64(),
            freshness_slo_seconds = self.freshness_slo.map(|d| d.as_secs_f64()),
            "pipeline configured"
        );
    }
}

/// The table's state was loaded (start, or reload after a rebalance): its newest committed event
/// time seeds the freshness clock, and the last-commit clock starts now if nothing has been
/// committed in this process yet.
#[derive(Debug, Clone, Copy)]
pub struct StateLoaded<'a> {
    /// The table.
    pub table: &'a str,
    /// The table state's `max_event_time` (µs since the epoch), if the table has rows.
    pub max_event_time_micros: Option<i64>,
}

impl StateLoaded<'_> {
    /// Seeds the clocks, sets the gauges and logs (info).
    pub fn emit(&self) {
        let now = SystemTime::now();
        with_clock(self.table, |c| {
            c.last_success.get_or_insert(now);
            if let Some(t) = self.max_event_time_micros {
                c.max_event_time_micros = Some(c.max_event_time_micros.map_or(t, |m| m.max(t)));
            }
        });
        refresh_one(self.table, now);
        tracing::info!(
            table = self.table,
            max_event_time_micros = self.max_event_time_micros,
            "table state loaded"
        );
    }
}

/// What the table holds after a commit or a maintenance run, from its metadata (no data file is
/// read): snapshots, live data files and their bytes (the current snapshot's summary totals),
/// and the configured target file size they are compared with.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// The table.
    pub table: &'a str,
    /// Snapshots in its metadata.
    pub snapshots: u64,
    /// Live data files (`None`: the summary has no total).
    pub data_files: Option<u64>,
    /// Their bytes.
    pub data_bytes: Option<u64>,
    /// `[table] target_file_size`.
    pub target_file_size: u64,
}

impl Shape<'_> {
    /// Sets the gauges and logs (debug).
    pub fn emit(&self) {
        let table = [self.table];
        gauge_set(&catalog::TABLE_SNAPSHOTS, &table, self.snapshots as f64);
        if let Some(files) = self.data_files {
            gauge_set(&catalog::TABLE_DATA_FILES, &table, files as f64);
        }
        if let Some(bytes) = self.data_bytes {
            gauge_set(&catalog::TABLE_DATA_BYTES, &table, bytes as f64);
        }
        gauge_set(
            &catalog::TABLE_TARGET_FILE_SIZE,
            &table,
            self.target_file_size as f64,
        );
        tracing::debug!(
            table = self.table,
            snapshots = self.snapshots,
            data_files = self.data_files,
            data_bytes = self.data_bytes,
            "table shape"
        );
    }
}

/// A periodic tick: recompute every table's freshness lag and last-commit age at `now`.
/// Scrapes do the same; the tick keeps logs and in-process readers current between scrapes.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Usually `SystemTime::now()`.
    pub now: SystemTime,
}

impl Tick {
    /// Sets the gauges and logs each table's clocks (debug).
    pub fn emit(&self) {
        refresh(self.now, true);
    }
}

/// Freshness lag and last-commit age of `table` at `now`, in seconds, as the gauges show them.
pub fn clocks(table: &str, now: SystemTime) -> (Option<f64>, Option<f64>) {
    CLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(table)
        .map_or((None, None), |c| ages(c, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_grows_while_nothing_commits() {
        let table = "clock_test_stall";
        let event_time = SystemTime::now() - Duration::from_secs(30);
        StateLoaded {
            table,
            max_event_time_micros: Some(micros(event_time)),
        }
        .emit();
        let now = SystemTime::now();
        let (lag0, age0) = clocks(table, now);
        let (lag1, age1) = clocks(table, now + Duration::from_secs(600));
        let (lag0, lag1) = (lag0.unwrap_or(-1.0), lag1.unwrap_or(-1.0));
        assert!((29.0..40.0).contains(&lag0), "{lag0}");
        assert!((lag1 - lag0 - 600.0).abs() < 1e-3, "{lag0} {lag1}");
        assert!(age1.unwrap_or(0.0) - age0.unwrap_or(0.0) > 599.9);
    }

    #[test]
    fn commits_move_the_clocks_and_never_back() {
        let table = "clock_test_commit";
        let newer = micros(SystemTime::now());
        committed(table, Some(newer));
        committed(table, Some(newer - 60_000_000));
        let (lag, age) = clocks(table, SystemTime::now());
        assert!(lag.unwrap_or(f64::MAX) < 5.0, "{lag:?}");
        assert!(age.unwrap_or(f64::MAX) < 5.0, "{age:?}");
        // Event times in the future (clock skew) read as no lag, not a negative one.
        committed(table, Some(newer + 3_600_000_000));
        assert_eq!(clocks(table, SystemTime::now()).0, Some(0.0));
    }
}
