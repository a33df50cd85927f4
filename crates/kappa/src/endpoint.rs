//! The metrics endpoint of a pipeline command, shared by `kappa run` and `kappa replay`:
//! `/metrics`, `/healthz` and `/readyz` on `[metrics] listen` for the whole command, the main
//! table's configured series, a one-second tick that keeps the freshness clocks (and a live
//! source's stall watch) current, and readiness as the command learns it. Commands that run as
//! Jobs without a table state to wait for (`kappa maintain`, `kappa backfill`) are served by
//! [`around`].
//!
//! ```text
//! start ───────────► listening (a taken address exits 2); table::Configured; tick every 1 s
//! state_loaded ────► table::StateLoaded; table_state ready
//! failed(failure) ─► a blocked gate: quality_gate not ready
//! linger (replay) ─► still serving for [metrics] linger, or until SIGTERM / SIGINT
//! stop ────────────► tick and listener stopped
//! ```

use std::time::{Duration, SystemTime};

use kappa_config::PipelineConfig;
use kappa_core::Classify;
use kappa_metrics::events::table;
use kappa_metrics::{Condition, Endpoint, Health, Limits, StallWatch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::shutdown::Shutdown;
use crate::{Failure, exit};

/// A pipeline command's endpoint, serving until [`PipelineEndpoint::stop`].
#[derive(Debug)]
pub struct PipelineEndpoint {
    endpoint: Endpoint,
    health: Health,
    table: String,
    ticking: JoinHandle<()>,
}

impl PipelineEndpoint {
    /// Serves `health` on `[metrics] listen`, sets the main table's configured series (commit
    /// interval, freshness objective, commits by outcome at 0) and ticks every second, checking
    /// `stall` on each tick when given.
    pub async fn start(
        config: &PipelineConfig,
        health: Health,
        stall: Option<StallWatch>,
    ) -> Result<PipelineEndpoint, Failure> {
        let endpoint = listen(config, health.clone()).await?;
        let table = format!("{}.{}", config.raw.table.namespace, config.table);
        table::Configured {
            table: &table,
            commit_interval: config.commit_interval,
            freshness_slo: config
                .quality
                .timeliness
                .as_ref()
                .filter(|_| config.quality.enabled)
                .map(|t| t.freshness_sla()),
        }
        .emit();
        let ticking = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                table::Tick {
                    now: SystemTime::now(),
                }
                .emit();
                if let Some(stall) = &stall {
                    stall.check();
                }
            }
        });
        Ok(PipelineEndpoint {
            endpoint,
            health,
            table,
            ticking,
        })
    }

    /// The readiness the endpoint serves.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The main table's state is loaded (at start, or again after a schema change): its clocks
    /// start from it and `table_state` is ready.
    pub fn state_loaded(&self, max_event_time_micros: Option<i64>) {
        (self.state_hook())(max_event_time_micros);
    }

    /// [`PipelineEndpoint::state_loaded`] as a function of its own, for a pipeline that loads
    /// its state more than once (`kappa_pipeline::live::LiveHooks`).
    pub fn state_hook(&self) -> Box<dyn Fn(Option<i64>) + Send + Sync> {
        let (table, health) = (self.table.clone(), self.health.clone());
        Box::new(move |max_event_time_micros| {
            table::StateLoaded {
                table: &table,
                max_event_time_micros,
            }
            .emit();
            health.set_ready(Condition::TableState);
        })
    }

    /// The run failed: when a blocking gate stopped it, `/readyz` names the gate's failure (the
    /// process exits 3 next, or after lingering).
    pub fn failed(&self, failure: &Failure) {
        if failure.code == exit::BLOCKED {
            self.health
                .set_not_ready(Condition::Gate, failure.message.clone());
        }
    }

    /// Keeps serving for `linger` after the run, or until `shutdown` receives a signal.
    pub async fn linger(&self, linger: Duration, shutdown: Shutdown) {
        linger_on(&self.endpoint, "run", linger, shutdown).await;
    }

    /// Stops the tick and the listener.
    pub async fn stop(self) {
        self.ticking.abort();
        self.endpoint.stop().await;
    }
}

/// Runs `command` with the metrics endpoint around it when `[metrics] listen` is set (else just
/// runs it): served while it runs (ready from the start: such a command has no state to wait for)
/// and for `[metrics] linger` after it, or until SIGTERM or SIGINT, so that a Job's pod is
/// scraped before it goes. `what` names the command in the log. The command's result is kept.
pub async fn around<T>(
    config: &PipelineConfig,
    what: &str,
    command: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    if !config.raw.is_set("metrics.listen") {
        return command.await;
    }
    let endpoint = listen(config, Health::new(Vec::<(Condition, String)>::new())).await?;
    let linger = config.raw.metrics.linger;
    // Listening before the command's output is printed: whoever reads it may signal at once.
    let shutdown = (!linger.is_zero()).then(Shutdown::listen);
    let result = command.await;
    if let Some(shutdown) = shutdown {
        linger_on(&endpoint, what, linger, shutdown).await;
    }
    endpoint.stop().await;
    result
}

/// Serves `health` on `[metrics] listen` (a taken address is a configuration error).
async fn listen(config: &PipelineConfig, health: Health) -> Result<Endpoint, Failure> {
    let limits = Limits {
        max_connections: config.raw.metrics.max_connections,
        request_timeout: config.raw.metrics.request_timeout,
    };
    Endpoint::start_with(config.metrics_listen, health, limits)
        .await
        .map_err(|e| Failure::from_kind(e.kind(), format!("[metrics] listen: {e}")))
}

/// Keeps `endpoint` serving for `linger` after `what` ended, or until `shutdown` receives a
/// signal.
async fn linger_on(endpoint: &Endpoint, what: &str, linger: Duration, shutdown: Shutdown) {
    info!(
        addr = %endpoint.local_addr(),
        linger_s = linger.as_secs_f64(),
        "{what} ended; serving metrics until [metrics] linger has passed or a signal"
    );
    tokio::select! {
        _ = tokio::time::sleep(linger) => {}
        _ = shutdown.received() => {}
    }
}
