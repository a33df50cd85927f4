//! The process-wide Prometheus recorder and the three functions through which every event
//! writes a metric. The raw `metrics` macros appear only here (clippy.toml bans them elsewhere).

use std::sync::OnceLock;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::catalog::{self, MetricDef, MetricKind};
use crate::error::MetricsError;

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// The installed recorder: renders what every event recorded as Prometheus text.
///
/// Events emitted before [`Metrics::install`] (or in a process that never installs, such as
/// unit tests of other crates) still write their tracing event; their metrics go nowhere.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the Prometheus recorder as the process's `metrics` recorder, describes every
    /// metric of the [catalog](crate::catalog) and sets `kappa_build_info`. Idempotent: a second
    /// call returns the same recorder.
    pub fn install() -> Result<Metrics, MetricsError> {
        HANDLE
            .get_or_init(|| {
                let mut builder = PrometheusBuilder::new();
                for m in catalog::METRICS.iter().filter(|m| !m.buckets.is_empty()) {
                    builder = builder
                        .set_buckets_for_metric(Matcher::Full(m.name.to_string()), m.buckets)
                        .map_err(|e| format!("{}: {e}", m.name))?;
                }
                let recorder = builder.build_recorder();
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder)
                    .map_err(|_| "another metrics recorder is installed in this process")?;
                describe_all();
                gauge_set(&catalog::BUILD_INFO, &[env!("CARGO_PKG_VERSION")], 1.0);
                Ok(handle)
            })
            .clone()
            .map(|handle| Metrics { handle })
            .map_err(|reason| MetricsError::Recorder { reason })
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric recorded so far, with the
    /// freshness and last-commit gauges brought up to now.
    pub fn render(&self) -> String {
        crate::events::table::refresh(std::time::SystemTime::now(), false);
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; the endpoint calls it periodically.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[allow(clippy::disallowed_macros)]
fn describe_all() {
    for m in catalog::METRICS {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

fn labels(def: &MetricDef, values: &[&str]) -> Vec<Label> {
    debug_assert_eq!(
        def.labels.len(),
        values.len(),
        "{}: label values do not match the catalog's keys {:?}",
        def.name,
        def.labels
    );
    def.labels
        .iter()
        .zip(values)
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect()
}

/// Adds `n` to a counter.
#[allow(clippy::disallowed_macros)]
pub(crate) fn counter_add(def: &MetricDef, values: &[&str], n: u64) {
    debug_assert_eq!(def.kind, MetricKind::Counter, "{}", def.name);
    metrics::counter!(def.name, labels(def, values)).increment(n);
}

/// Sets a gauge.
#[allow(clippy::disallowed_macros)]
pub(crate) fn gauge_set(def: &MetricDef, values: &[&str], value: f64) {
    debug_assert_eq!(def.kind, MetricKind::Gauge, "{}", def.name);
    metrics::gauge!(def.name, labels(def, values)).set(value);
}

/// Records one histogram observation.
#[allow(clippy::disallowed_macros)]
pub(crate) fn histogram_record(def: &MetricDef, values: &[&str], value: f64) {
    debug_assert_eq!(def.kind, MetricKind::Histogram, "{}", def.name);
    metrics::histogram!(def.name, labels(def, values)).record(value);
}
