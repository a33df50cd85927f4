//! `kappa-source-kafka`: the live source.
//!
//! A consumer whose partitions start at the offsets the **table** holds. Which partitions: its
//! shard's, assigned by itself without a consumer group (`[source.kafka] assignment = "shard"`,
//! the default: a restart reads again at once), or the group's, in a rebalance callback
//! (`"group"`). On every assignment the consumer asks the pipeline (which reloads the table),
//! stops the partitions whose table offset the topic no longer holds (error, metric, readiness),
//! and assigns the others at exactly those offsets; Kafka never chooses an offset
//! (`auto.offset.reset = error`). Group offsets are committed after each table commit, for lag
//! monitoring by standard Kafka tooling only; they are never read back. A reassignment makes the
//! pipeline drop what it had not committed and re-read from the table (see
//! `docs/exactly-once.md`). Messages are in the Confluent wire format, decoded through the schema
//! registry; a message that cannot be decoded becomes a dead letter, never an error.
//!
//! ```text
//!  consumer thread (librdkafka poll, assignment, range check, decode) ──batches──► KafkaSource ──► runtime
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
