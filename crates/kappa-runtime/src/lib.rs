//! `kappa-runtime`: wires a source, the business logic and the committers into a pipeline.
//!
//! ```text
//! Source ──batches──► resume filter ──► Logic ──► Buffer ──flush──► commit task
//!  (seek to table         (warm-up below the                    (rows / bytes /      DLQ table, then
//!   state − window)        committed offset)                     interval)          main table
//! ```
//!
//! The same loop serves a bounded replay ([`run_pipeline`]) and a live Kafka source
//! ([`run_live`]): it resumes from the tables' own state, flushes by the commit policy, and
//! commits the dead-letter table before the main table so that each keeps its own exact offsets.

pub mod backfill;
mod buffer;
mod commit;
mod dlq;
mod error;
mod pause;
mod quarantine;
mod run;
mod spec;
mod stats;
mod write;

pub use buffer::CommitPolicy;
pub use dlq::dlq_schema;
pub use error::RuntimeError;
pub use pause::{OVERRIDE_PROPERTY, QualityOverride};
pub use run::{run_live, run_pipeline};
pub use spec::{
    Pipeline, PipelineSpec, open_existing_pipeline, open_pipeline, open_pipeline_read_only,
    table_specs,
};
pub use stats::{RunSummary, SummaryReport};
