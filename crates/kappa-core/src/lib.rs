//! `kappa-core`: the vocabulary every other Kappa crate speaks.
//!
//! Data flows `Source -> decode -> Logic -> gates -> committer`. This crate owns the
//! values that travel along that path and the contracts between the stages, and nothing that does
//! I/O:
//!
//! - [`SourceBatch`]: decoded Arrow rows of one topic-partition plus their Kafka coordinates, the
//!   offset range they account for and the records that could not be decoded ([`DeadLetter`]);
//! - [`SourcePosition`] / [`OffsetRange`]: per topic-partition progress, as stored in every commit;
//! - [`EventTimes`]: the newest event time per topic-partition, and which rows are late;
//! - the [`Source`] and [`Logic`] traits;
//! - [`ErrorKind`]: the classification retries and the DLQ decide by;
//! - [`redact`]: credentials out of any text that prints a URI or a config value.

mod batch;
mod crash;
mod error;
mod event_time;
pub mod metadata;
mod position;
pub mod redact;
mod traits;

pub use batch::{DeadLetter, DeadLetterKind, SourceBatch};
pub use crash::crash_point;
pub use error::{Classify, ErrorKind};
pub use event_time::EventTimes;
pub use metadata::KafkaMetadata;
pub use position::{Coverage, OffsetRange, PositionError, SourcePosition, TopicPartition};
pub use traits::{Logic, LogicStats, Source, SourceEvent};

/// Name of the Arrow/Iceberg column that carries a row's Kafka partition.
pub const PARTITION_COLUMN: &str = "_kafka_partition";
/// Name of the Arrow/Iceberg column that carries a row's Kafka offset.
pub const OFFSET_COLUMN: &str = "_kafka_offset";
