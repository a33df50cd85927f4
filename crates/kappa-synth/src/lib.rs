//! `kappa-synth`: a deterministic synthetic `orders` history and a Kafka Connect S3 sink archive
//! writer, for `kappa demo`, the tests and the benchmarks.
//!
//! The history is what producers would have sent to the `orders` topic: Confluent wire-format
//! messages (`0x00`, schema id, Avro body) keyed by `order_id`, with a few producer-retry
//! duplicates, negative amounts (rejected by the logic), lower-case currencies, NULL user ids and
//! undecodable messages. [`Expected`] is computed from the generated input alone, so a test can
//! compare what a query engine reads from the table with what must be there.

mod archive;
mod checksum;
mod history;

pub use archive::{
    ArchiveOptions, ArchiveSummary, Codec, ENVELOPE_SCHEMA, Layout, RecordShape, object_key,
    write_archive, write_messages,
};
pub use checksum::{RowChecksum, canonical_row};
pub use history::{
    Event, Expected, History, HistorySpec, Message, MessageKind, ORDERS_V1, ORDERS_V2, SynthError,
    Tally,
};
