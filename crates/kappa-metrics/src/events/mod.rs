//! Typed events: each records its metrics and writes one structured `tracing` event with the
//! same facts as key-value fields. Emit per batch, per commit or per tick, never per record.
//!
//! ```text
//! kappa-source-kafka / replay ─► source::Read, source::ConsumerLag, source::PartitionRevoked
//! kappa-runtime (per batch)   ─► pipeline::BatchProcessed
//! kappa-runtime (per flush)   ─► quality::CheckEvaluated, quality::NullRate, quality::GateDecided
//!                             ─► commit::Committed | AlreadyCommitted | Failed
//! kappa-iceberg (per attempt) ─► commit::ConflictRetried
//! kappa-runtime (start/tick)  ─► table::Configured, table::StateLoaded, table::Tick
//! kappa-runtime (per commit)  ─► table::Shape
//! kappa maintain              ─► maintenance::Compacted, Expired, OrphansDeleted, Finished
//! ```
//!
//! Construct the struct where the facts are and call `emit()`:
//!
//! ```
//! use std::time::Duration;
//! use kappa_metrics::events::commit;
//!
//! commit::Committed {
//!     table: "orders",
//!     snapshot_id: 42,
//!     records: 10_000,
//!     files: 2,
//!     bytes: 1 << 20,
//!     attempts: 1,
//!     duration: Duration::from_millis(350),
//!     max_event_time_micros: Some(1_764_590_400_000_000),
//! }
//! .emit();
//! ```

pub mod commit;
pub mod maintenance;
pub mod pipeline;
pub mod quality;
pub mod source;
pub mod table;
