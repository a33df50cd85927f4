//! `kappa-source-kafka`: the live source.
//!
//! A member of a Kafka consumer group whose partitions start at the offsets the **table** holds:
//! on every assignment the consumer asks the pipeline (which reloads the table) and assigns the
//! partitions at exactly those offsets. Group offsets are committed after each table commit, for
//! lag monitoring by standard Kafka tooling only; they are never read back. A rebalance makes the
//! pipeline drop what it had not committed and re-read from the table (see
//! `docs/exactly-once.md`). Messages are in the Confluent wire format, decoded through the schema
//! registry; a message that cannot be decoded becomes a dead letter, never an error.
//!
//! ```text
//!  consumer thread (librdkafka poll, rebalance callback, decode) ──batches──► KafkaSource ──► runtime
//!        ▲  assign at the table's offsets ◄── seek(position) ◄── Reassigned ──┘
//! ```

mod consumer;
mod error;
mod metadata;
mod options;
mod source;

pub use error::KafkaSourceError;
pub use metadata::{PartitionOffsets, out_of_range, topic_offsets};
pub use options::KafkaOptions;
pub use source::KafkaSource;
