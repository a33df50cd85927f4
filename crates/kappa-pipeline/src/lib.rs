//! `kappa-pipeline`: a validated configuration → a running pipeline, the one way every entry
//! point builds one (the `kappa` CLI, the benchmarks, the tests, a program that embeds Kappa).
//!
//! ```text
//! PipelineConfig ─► schema registry + table mapping ─┐
//!                ─► source (archive replay | Kafka) ─┤
//!                ─► logic (the config's registry entry) ─► kappa-runtime ─► committers
//!                ─► quality gates, catalog and tables ─┘
//! ```
//!
//! The logic comes from the config itself: `kappa_config::load_with(.., &registry)` resolves
//! `[pipeline] logic` in a [`kappa_logic::Registry`], so a logic registered by the embedding
//! program runs here exactly like a builtin one. [`replay()`] replays the archive, [`live`] runs the
//! Kafka consumer (with the schema-evolution restart loop), [`backfill`] opens a backfill's
//! tables and archive, plans it and reprocesses a shard, [`open`] opens existing tables for the
//! commands that inspect or annotate them.

mod assemble;
pub mod backfill;
mod error;
pub mod live;
mod open;
pub mod replay;

pub use assemble::{
    build_logic, catalog_config, distinct_columns, pipeline_spec, replay_options, s3_options,
    schema_registry, table_mapping,
};
pub use error::PipelineError;
pub use open::{Access, open};
pub use replay::{ReplayReport, ReplayRequest, replay};
