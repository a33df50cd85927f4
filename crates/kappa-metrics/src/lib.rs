//! `kappa-metrics`: how Kappa tells operators what it is doing. Every stage of the data flow
//! (sources, the pipeline loop, quality gates, the committer) reports through the typed
//! [`events`] here, and nowhere else: each event records its Prometheus metrics and writes one
//! structured `tracing` event with the same facts.
//!
//! - [`catalog`]: every metric's name, type, labels and meaning (`docs/metrics.md` is
//!   generated from it).
//! - [`events`]: `source`, `pipeline`, `commit`, `quality`, `table` (freshness clocks).
//! - [`Metrics`]: the process-wide Prometheus recorder; [`Endpoint`]: `/metrics`, `/healthz`,
//!   `/readyz` on `[metrics] listen`; [`Health`]: the readiness handle the pipeline updates.
//! - [`init_tracing`]: text or JSON logs.
//!
//! The raw `metrics` macros are banned outside this crate (`clippy.toml`).

pub mod catalog;
mod error;
pub mod events;
mod health;
mod logging;
mod recorder;
mod server;

pub use error::MetricsError;
pub use health::{Condition, Health, Readiness, StallWatch};
pub use logging::{LogFormat, init_tracing};
pub use recorder::Metrics;
pub use server::{Endpoint, Limits, PROMETHEUS_TEXT};
