//! Liveness and readiness, as a cheap cloneable handle the pipeline updates and the endpoint
//! reads (`/healthz`, `/readyz`).
//!
//! ```text
//! Health::starting() ─► not ready { table_state: "loading", source: "connecting" }
//!   set_ready(TableState), set_ready(Source) ─► ready
//!   set_not_ready(Source, "no records for 5m") ─► not ready { source: ... }   (503 + reasons)
//!   set_ready(Source) ─► ready again
//! set_failed("...") ─► /healthz 503: the process should be restarted
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Something readiness waits on. Ready means every condition is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// The table state (offsets, watermark) is loaded from the table.
    TableState,
    /// The source is connected and delivering (not stalled).
    Source,
    /// No partition is stopped for an offset the topic no longer holds.
    Partitions,
    /// No quality gate is blocking commits.
    Gate,
    /// Commits succeed.
    Commit,
}

impl Condition {
    /// The name `/readyz` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::TableState => "table_state",
            Condition::Source => "source",
            Condition::Partitions => "source_partitions",
            Condition::Gate => "quality_gate",
            Condition::Commit => "commit",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Readiness: ready, or the reasons why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every condition is ready.
    Ready,
    /// The conditions that are not, each with its reason.
    NotReady(Vec<(Condition, String)>),
}

#[derive(Debug, Default)]
struct State {
    not_ready: BTreeMap<Condition, String>,
    failed: Option<String>,
}

/// The process's health: clone it into every task that changes it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    state: Arc<Mutex<State>>,
}

impl Health {
    /// Not ready until the table state is loaded and the source connected.
    pub fn starting() -> Health {
        Health::new([
            (Condition::TableState, "loading the table state"),
            (Condition::Source, "connecting to the source"),
        ])
    }

    /// Not ready until each of `pending` is set ready.
    pub fn new<R: Into<String>>(pending: impl IntoIterator<Item = (Condition, R)>) -> Health {
        let health = Health::default();
        {
            let mut state = health.lock();
            for (condition, reason) in pending {
                state.not_ready.insert(condition, reason.into());
            }
        }
        health
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `condition` is ready (logs at info when it was not).
    pub fn set_ready(&self, condition: Condition) {
        let was = self.lock().not_ready.remove(&condition);
        if let Some(reason) = was {
            tracing::info!(condition = %condition, was = %reason, "ready");
        }
    }

    /// `condition` is not ready because of `reason` (logs at warn when the reason changes; the
    /// endpoint serves only the condition's name).
    pub fn set_not_ready(&self, condition: Condition, reason: impl Into<String>) {
        let reason = reason.into();
        let previous = self.lock().not_ready.insert(condition, reason.clone());
        if previous.as_deref() != Some(reason.as_str()) {
            tracing::warn!(condition = %condition, %reason, "not ready");
        }
    }

    /// Readiness now.
    pub fn readiness(&self) -> Readiness {
        let state = self.lock();
        if state.not_ready.is_empty() {
            Readiness::Ready
        } else {
            Readiness::NotReady(
                state
                    .not_ready
                    .iter()
                    .map(|(c, r)| (*c, r.clone()))
                    .collect(),
            )
        }
    }

    /// Whether every condition is ready.
    pub fn is_ready(&self) -> bool {
        self.lock().not_ready.is_empty()
    }

    /// The process cannot go on and should be restarted: `/healthz` answers 503 from now on
    /// (without the reason, which is logged at error).
    pub fn set_failed(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(%reason, "unhealthy");
        self.lock().failed = Some(reason);
    }

    /// `Err(reason)` once [`Health::set_failed`] was called.
    pub fn liveness(&self) -> Result<(), String> {
        match &self.lock().failed {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

/// Turns "the source made no progress for a while" into readiness: not ready on
/// [`Condition::Source`], with how long, until progress resumes.
///
/// Progress is records read, or the source confirming it is caught up (lag 0: an idle topic
/// is not a stalled one). Call [`StallWatch::progressed`] for either, and
/// [`StallWatch::check`] on a timer.
#[derive(Debug, Clone)]
pub struct StallWatch {
    health: Health,
    what: String,
    stall_after: Duration,
    last_progress: Arc<Mutex<Instant>>,
}

impl StallWatch {
    /// Watches `what` (e.g. `kafka topic orders`); the clock starts now.
    pub fn new(health: Health, what: impl Into<String>, stall_after: Duration) -> StallWatch {
        StallWatch {
            health,
            what: what.into(),
            stall_after,
            last_progress: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Records arrived, or the source is caught up.
    pub fn progressed(&self) {
        self.progressed_at(Instant::now());
    }

    /// [`StallWatch::progressed`] at `now`.
    pub fn progressed_at(&self, now: Instant) {
        *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Sets the source not ready once no progress was seen for the stall time, and ready again
    /// after progress. Returns whether it is stalled.
    pub fn check(&self) -> bool {
        self.check_at(Instant::now())
    }

    /// [`StallWatch::check`] at `now`.
    pub fn check_at(&self, now: Instant) -> bool {
        let last = *self
            .last_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let idle = now.saturating_duration_since(last);
        if idle >= self.stall_after {
            self.health.set_not_ready(
                Condition::Source,
                format!(
                    "stalled: no records from {} for {}s and not caught up",
                    self.what,
                    idle.as_secs()
                ),
            );
            true
        } else {
            let stalled = matches!(
                self.health.lock().not_ready.get(&Condition::Source),
                Some(reason) if reason.starts_with("stalled: ")
            );
            if stalled {
                self.health.set_ready(Condition::Source);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_source_is_not_ready_with_how_long_until_it_moves_again() {
        let health = Health::new([(Condition::Source, "connecting to the source")]);
        let watch = StallWatch::new(
            health.clone(),
            "kafka topic orders",
            Duration::from_secs(300),
        );
        let t0 = Instant::now();
        watch.progressed_at(t0);
        health.set_ready(Condition::Source);
        assert!(!watch.check_at(t0 + Duration::from_secs(299)));
        assert!(health.is_ready());
        assert!(watch.check_at(t0 + Duration::from_secs(301)));
        assert_eq!(
            health.readiness(),
            Readiness::NotReady(vec![(
                Condition::Source,
                "stalled: no records from kafka topic orders for 301s and not caught up".into()
            )])
        );
        watch.progressed_at(t0 + Duration::from_secs(302));
        assert!(!watch.check_at(t0 + Duration::from_secs(303)));
        assert!(health.is_ready());
        // A reason someone else set (not a stall) is left alone.
        health.set_not_ready(Condition::Source, "rebalancing");
        assert!(!watch.check_at(t0 + Duration::from_secs(304)));
        assert!(!health.is_ready());
    }

    #[test]
    fn ready_once_every_condition_is_and_back_with_a_reason() {
        let health = Health::starting();
        let seen_by_endpoint = health.clone();
        assert!(!seen_by_endpoint.is_ready());
        health.set_ready(Condition::TableState);
        assert_eq!(
            seen_by_endpoint.readiness(),
            Readiness::NotReady(vec![(Condition::Source, "connecting to the source".into())])
        );
        health.set_ready(Condition::Source);
        assert_eq!(seen_by_endpoint.readiness(), Readiness::Ready);
        health.set_not_ready(Condition::Gate, "null_rate.user_id blocks orders");
        health.set_not_ready(Condition::Source, "no records for 5m");
        assert_eq!(
            seen_by_endpoint.readiness(),
            Readiness::NotReady(vec![
                (Condition::Source, "no records for 5m".into()),
                (Condition::Gate, "null_rate.user_id blocks orders".into()),
            ])
        );
        assert_eq!(seen_by_endpoint.liveness(), Ok(()));
        health.set_failed("commit task died");
        assert_eq!(seen_by_endpoint.liveness(), Err("commit task died".into()));
    }
}
