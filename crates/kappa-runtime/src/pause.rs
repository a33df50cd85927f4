//! A live pipeline whose flush a `block` gate refused pauses in place instead of exiting.
//!
//! ```text
//!  flush blocked ─► paused at P (the main table's position; nothing of [P, E) committed)
//!                    │  /readyz: not ready, names the checks; the consumer stays in its group
//!                    │  every PAUSE_POLL: reload the main table
//!                    ├─ an override for P (`kappa quality override`) ─► read [P, E) again,
//!                    │     its checks let through (verdicts say so), commit, go on
//!                    ├─ the table changed otherwise (a backfill, a property) ─► read [P, E)
//!                    │     again and judge it again (the partition gate reads the table)
//!                    ├─ the table moved past P (another writer) ─► go on from its position
//!                    └─ shutdown ─► return; the next process starts at P and judges again
//! ```
//!
//! Reading `[P, E)` again ends exactly at `E`, the blocked flush's end: the same rows are judged
//! again, never diluted by what arrived during the pause. Overrides live in the main table's
//! properties ([`OVERRIDE_PROPERTY`]), so every replica, a restart and the audit trail see them.

use std::pin::Pin;
use std::time::Duration;

use futures::future::Fuse;
use kappa_core::{Source, SourceEvent, SourcePosition};
use kappa_metrics::{Condition, Health};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::commit::Tables;
use crate::error::RuntimeError;

/// How often a paused pipeline looks at its main table.
pub(crate) const PAUSE_POLL: Duration = Duration::from_secs(2);

/// The main table property holding the operator's override of a blocked flush.
pub const OVERRIDE_PROPERTY: &str = "kappa.quality.override";

/// An operator's decision to let a blocked flush through (`kappa quality override`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityOverride {
    /// The pipeline (`kappa.pipeline`) it is meant for.
    pub pipeline: String,
    /// The main table's position the pipeline is paused at, as `kappa.offsets` JSON: the
    /// override lets through the flush that starts there, and nothing after it.
    pub at: String,
    /// Verdict names to let through (`null_rate.user_id`); empty: every failed one.
    #[serde(default)]
    pub checks: Vec<String>,
    /// Why, for the audit trail.
    pub reason: String,
    /// Who (`$USER` of the command) and when (RFC 3339).
    pub by: String,
    /// When it was made, ms since the epoch: only a pause that began before (give or take
    /// `CLOCK_SKEW`, a minute) takes it, so an override made while nothing was blocked cannot let
    /// through a later block at the same position unseen.
    #[serde(default)]
    pub made_at_ms: i64,
}

/// How far the operator's clock and the pipeline's may differ.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

impl QualityOverride {
    /// The note recorded with each verdict let through.
    pub fn note(&self) -> String {
        format!("overridden by {}: {}", self.by, self.reason)
    }

    /// The override stored on `table`, if any (unreadable JSON counts as none, with a warning).
    pub fn read(table: &iceberg::table::Table) -> Option<QualityOverride> {
        let text = table.metadata().properties().get(OVERRIDE_PROPERTY)?;
        match serde_json::from_str(text) {
            Ok(found) => Some(found),
            Err(e) => {
                warn!(property = OVERRIDE_PROPERTY, error = %e, "ignoring an unreadable override");
                None
            }
        }
    }

    /// Records an override for the flush `pipeline`'s main table is paused at (its current
    /// position): writes it to the table's [`OVERRIDE_PROPERTY`], where every replica of the paused
    /// pipeline reads it. `checks` empty lets every failed check through; `by` names who and when.
    pub async fn record(
        pipeline: &crate::Pipeline,
        checks: Vec<String>,
        reason: String,
        by: String,
        made_at_ms: i64,
    ) -> Result<QualityOverride, RuntimeError> {
        let decision = QualityOverride {
            pipeline: pipeline.spec.pipeline.clone(),
            at: pipeline.main.state().position.to_json(),
            checks,
            reason,
            by,
            made_at_ms,
        };
        let value = serde_json::to_string(&decision)
            .map_err(|e| RuntimeError::Invariant(format!("cannot write the override: {e}")))?;
        kappa_iceberg::table::set_property(
            pipeline.catalog.as_ref(),
            pipeline.main.table(),
            OVERRIDE_PROPERTY,
            &value,
        )
        .await?;
        Ok(decision)
    }

    /// Whether it is for `pipeline` paused at `position` since `paused_at_ms`.
    pub fn applies(&self, pipeline: &str, position: &SourcePosition, paused_at_ms: i64) -> bool {
        self.pipeline == pipeline
            && self.made_at_ms >= paused_at_ms - CLOCK_SKEW.as_millis() as i64
            && SourcePosition::from_json(&self.at).is_ok_and(|at| at == *position)
    }
}

/// The blocked flush: where it ended and why it was refused.
#[derive(Debug, Clone)]
pub(crate) struct Blocked {
    /// The next offset per partition after the refused input (`E`).
    pub until: SourcePosition,
    /// The failed checks, with value and threshold.
    pub message: String,
}

/// Reading the blocked range again: up to `until`, with `waiver` applied to its verdicts.
#[derive(Debug, Clone)]
pub(crate) struct Limit {
    pub until: SourcePosition,
    pub waiver: Option<Waiver>,
}

/// Failed checks an operator let through, for one flush.
#[derive(Debug, Clone)]
pub(crate) struct Waiver {
    pub checks: Vec<String>,
    pub note: String,
}

/// How a pause ended.
pub(crate) enum Resume {
    /// Shutdown was requested.
    Shutdown,
    /// Read the blocked range again (with a waiver when an operator overrode).
    Again(Limit),
    /// The table moved past the blocked position: go on from there.
    Moved,
}

/// Waits, paused at the main table's position, until an override, a change of the table, or
/// shutdown (see the module docs).
///
/// The source is read on meanwhile and what it delivers dropped (it is read again from the
/// table's position after the pause): a Kafka consumer keeps polling, so it stays in its group.
/// A reassignment ends the pause: the blocked flush is judged again with the new partitions.
pub(crate) async fn pause<S, F>(
    tables: &mut Tables,
    source: &mut S,
    pipeline: &str,
    blocked: Blocked,
    mut shutdown: Pin<&mut Fuse<F>>,
    health: Option<&Health>,
) -> Result<Resume, RuntimeError>
where
    S: Source,
    F: Future<Output = ()> + Send,
{
    let at = tables.main.state().position.clone();
    let paused_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let table = tables.main.name().to_string();
    let seen = tables.main.table().metadata_location().map(str::to_string);
    let reason = format!(
        "paused: {}; waiting for `kappa quality override` or a change of {table}",
        blocked.message
    );
    warn!(%table, at = %at.to_json(), "{reason}");
    if let Some(health) = health {
        health.set_not_ready(Condition::Gate, reason);
    }
    let mut poll = tokio::time::interval(PAUSE_POLL);
    poll.tick().await;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                info!(%table, "shutdown requested while paused: the next run starts where this one paused");
                return Ok(Resume::Shutdown);
            }
            event = source.next_event() => match event.map_err(RuntimeError::source)? {
                SourceEvent::Reassigned(_) => {
                    info!(%table, "partitions reassigned while paused: judging the blocked flush again");
                    return Ok(Resume::Again(Limit { until: blocked.until, waiver: None }));
                }
                SourceEvent::End => return Ok(Resume::Shutdown),
                SourceEvent::Batch(_) | SourceEvent::Idle | SourceEvent::SchemaChanged(_) => continue,
            },
            _ = poll.tick() => {}
        }
        if let Err(e) = tables.main.reload().await {
            warn!(%table, error = %e, "cannot reload the paused table; trying again");
            continue;
        }
        let state = tables.main.state();
        if state.position != at {
            info!(%table, "another writer moved the table on: going on from its position");
            return Ok(Resume::Moved);
        }
        if let Some(found) = QualityOverride::read(tables.main.table())
            && found.applies(pipeline, &at, paused_at_ms)
        {
            info!(%table, by = %found.by, reason = %found.reason, checks = ?found.checks, "override: reading the blocked flush again and letting it through");
            return Ok(Resume::Again(Limit {
                until: blocked.until,
                waiver: Some(Waiver {
                    note: found.note(),
                    checks: found.checks,
                }),
            }));
        }
        let now = tables.main.table().metadata_location().map(str::to_string);
        if now != seen {
            info!(%table, "the table changed while paused: judging the blocked flush again");
            return Ok(Resume::Again(Limit {
                until: blocked.until,
                waiver: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use kappa_core::TopicPartition;

    use super::*;

    fn decision(at: &SourcePosition, made_at_ms: i64) -> QualityOverride {
        QualityOverride {
            pipeline: "orders".into(),
            at: at.to_json(),
            checks: Vec::new(),
            reason: "known outage".into(),
            by: "ops at 2026-12-01T12:00:00Z".into(),
            made_at_ms,
        }
    }

    #[test]
    fn an_override_applies_only_to_its_pipeline_its_position_and_a_pause_before_it() {
        let at: SourcePosition = [(TopicPartition::new("orders", 0), 100)]
            .into_iter()
            .collect();
        let elsewhere: SourcePosition = [(TopicPartition::new("orders", 0), 101)]
            .into_iter()
            .collect();
        let paused = 1_000_000;
        assert!(decision(&at, paused + 5_000).applies("orders", &at, paused));
        assert!(!decision(&at, paused + 5_000).applies("other", &at, paused));
        assert!(!decision(&at, paused + 5_000).applies("orders", &elsewhere, paused));
        // Made within the clock skew before the pause: taken. Long before: not.
        assert!(decision(&at, paused - 30_000).applies("orders", &at, paused));
        assert!(!decision(&at, paused - 3_600_000).applies("orders", &at, paused));
        // An override of an older version (no time) is never taken by a new pause.
        let old: QualityOverride = serde_json::from_str(&format!(
            "{{\"pipeline\":\"orders\",\"at\":{:?},\"reason\":\"r\",\"by\":\"b\"}}",
            at.to_json()
        ))
        .unwrap();
        assert!(!old.applies("orders", &at, paused));
    }
}
