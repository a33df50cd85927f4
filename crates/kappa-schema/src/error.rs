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
    #[error("schema registry: schemas {first} and {second} have the same id {id}: {why}")]
    IdCollision {
        /// The id.
        id: u32,
        /// First schema (subject/version).
        first: String,
        /// Second schema (subject/version).
        second: String,
        /// Why they cannot share it, and what to do.
        why: String,
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
    /// The schema registry answered with an error (4xx, a malformed answer, ...).
    #[error("schema registry {url}: {}{message}", describe_status(*status, *error_code))]
    Registry {
        /// Registry URL (and request path), without credentials.
        url: String,
        /// HTTP status, when the registry answered.
        status: Option<u16>,
        /// The registry's `error_code` (40401 subject not found, 40403 schema not found, ...).
        error_code: Option<i64>,
        /// The registry's message or what was wrong with the answer.
        message: String,
    },
    /// The schema registry could not be reached or kept failing (timeouts, 5xx) after retries.
    #[error(
        "schema registry {url} unreachable: {path} failed {attempts} time(s); last error: {message}"
    )]
    RegistryUnreachable {
        /// Registry URL, without credentials.
        url: String,
        /// Request path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
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

fn describe_status(status: Option<u16>, error_code: Option<i64>) -> String {
    match (status, error_code) {
        (Some(s), Some(c)) => format!("HTTP {s}, error_code {c}: "),
        (Some(s), None) => format!("HTTP {s}: "),
        (None, Some(c)) => format!("error_code {c}: "),
        (None, None) => String::new(),
    }
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
            SchemaError::Registry { .. } => ErrorKind::User,
            SchemaError::RegistryUnreachable { .. } => ErrorKind::Transient,
            SchemaError::Decoder { .. } => ErrorKind::Internal,
        }
    }
}
