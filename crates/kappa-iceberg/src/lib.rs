//! `kappa-iceberg`: the sink. Everything Kappa writes reaches an Iceberg table through here.
//!
//! - [`catalog`]: connect to a SQL (SQLite / PostgreSQL) catalog over a `file://` or `s3://`
//!   warehouse;
//! - [`table`]: create the table (and its dead-letter table) if missing, with the configured
//!   partitioning and ZSTD Parquet;
//! - [`writer`]: Arrow batches → partitioned Parquet data files (ZSTD level 1 unless the table
//!   sets `write.parquet.compression-level`);
//! - [`state`]: the pipeline's state (offsets, watermark), kept in the table property
//!   `kappa.state.<pipeline>` and written by the same commit as the data it covers;
//! - [`commit`]: the idempotent commit protocol (a pure `decide` + a committer doing the I/O);
//! - [`backfill`]: a backfill's base and the files its publish keeps;
//! - [`diff`]: two tables compared day by day (`kappa diff`);
//! - [`maintenance`]: compaction, snapshot expiry, orphan cleanup (`kappa maintain`), and
//!   [`history`], the summaries of expired snapshots;
//! - [`producer`]: Kappa's own snapshot producer (partition replacement, branches,
//!   fast-forward), for what iceberg-rust's `Transaction` cannot commit yet.
//!
//! The table is the only source of truth for progress: the offsets live in the table's
//! metadata (the state property, and each snapshot's summary), so a data commit and the offsets
//! it covers are one atomic step.

pub mod backfill;
pub mod catalog;
pub mod commit;
pub mod days;
pub mod diff;
mod error;
pub mod history;
pub mod maintenance;
pub mod producer;
pub mod recovery;
mod rest_catalog;
mod split;
pub mod state;
pub mod summary;
pub mod table;
pub mod writer;

pub use catalog::{CatalogConfig, CatalogType, connect, connect_read_only};
pub use commit::{CommitOutcome, Committer, DEFAULT_CONFLICT_TIMEOUT, FirstCommit, PendingCommit};
pub use error::IcebergError;
pub use state::{PositionMove, TableState, TableStats, table_stats};
pub use table::{PartitionField, TableSpec};
