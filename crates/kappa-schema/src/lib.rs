//! `kappa-schema`: how Avro values become Arrow batches and Iceberg columns.
//!
//! In the data flow it sits between the sources and the logic:
//!
//! ```text
//! archive OCF / Kafka message ──► registry (writer schema by id) ──► arrow-avro decode
//!        ──► TableMapping::normalize (Iceberg-friendly Arrow types) ──► logic
//! ```
//!
//! - [`registry`]: the embedded file registry (`<dir>/<subject>/<version>.avsc`) and schema ids;
//! - [`mapping`]: Avro → Arrow → Iceberg type mapping with deterministic field ids;
//! - [`names`]: schemas from outside parsed without letting `apache-avro` panic on bad names;
//! - [`wire`]: the Confluent wire format (`0x00`, 4-byte big-endian id, Avro body), decoded in
//!   batches with per-record error isolation so one bad message never poisons its neighbours.

pub mod compat;
pub mod confluent;
mod directory;
mod error;
pub mod mapping;
mod metadata;
pub mod names;
pub mod registry;
pub mod wire;

pub use confluent::{ConfluentRegistry, RegistryOptions};
pub use directory::DirectoryRegistry;
pub use error::SchemaError;
pub use mapping::{KafkaRecordMetadata, TableMapping};
pub use metadata::KafkaHeaders;
pub use registry::{FileRegistry, RegisteredSchema, SchemaRegistry};
pub use wire::{DecodedRecords, NewerSchema, WireDecoder, WireOutcome};
