//! Errors of schema loading, mapping and decoding.

use std::path::PathBuf;

use kappa_core::{Classify, ErrorKind};

/// A schema could not be loaded, mapped or used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The registry directory or a schema file could not be read.
    #[error("schema registry: cannot read {path}: {source}")]
    Read {
        /// File or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a valid Avro schema.
    #[error("schema registry: {path} is not a valid Avro schema: {message}")]
    Parse {
        /// The schema file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The registry layout is wrong (a version that is not an integer, ...).
    #[error("schema registry: {path}: {message}")]
    Layout {
        /// The offending path.
        path: PathBuf,
        /// What is wrong and what is expected.
        message: String,
    },
    /// No schema is registered for the subject.
    #[error("schema registry: subject {subject:?} not found (known subjects: {known})")]
    UnknownSubject {
        /// The subject asked for.
        subject: String,
        /// Comma-separated known subjects.
        known: String,
    },
    /// Two different schemas map to the same id.
    #[error("schema registry: schemas {first} and {second} have the same id {id}")]
    IdCollision {
        /// The id.
        id: u32,
        /// First schema (subject/version).
        first: String,
        /// Second schema (subject/version).
        second: String,
    },
    /// An Avro type has no table mapping yet.
    #[error("schema mapping: field {path}: {message}")]
    Unsupported {
        /// Dotted field path.
        path: String,
        /// What is not supported.
        message: String,
    },
    /// arrow-avro refused a schema or a decoder could not be built.
    #[error("schema decoder: {context}: {message}")]
    Decoder {
        /// What was being built or decoded.
        context: String,
        /// The underlying error.
        message: String,
    },
    /// A decoded batch could not be converted to the table's Arrow types.
    #[error("schema mapping: column {column}: cannot convert {from} to {to}: {message}")]
    Normalize {
        /// Column name.
        column: String,
        /// Decoded Arrow type.
        from: String,
        /// Table Arrow type.
        to: String,
        /// The conversion error.
        message: String,
    },
}

impl Classify for SchemaError {
    fn kind(&self) -> ErrorKind {
        match self {
            SchemaError::Read { .. }
            | SchemaError::Parse { .. }
            | SchemaError::Layout { .. }
            | SchemaError::UnknownSubject { .. }
            | SchemaError::IdCollision { .. }
            | SchemaError::Unsupported { .. } => ErrorKind::User,
            SchemaError::Normalize { .. } => ErrorKind::BadData,
            SchemaError::Decoder { .. } => ErrorKind::Internal,
        }
    }
}
