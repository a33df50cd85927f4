//! Replay errors, each naming the archive object or URL.

use kappa_core::{Classify, ErrorKind};

/// The archive could not be listed, read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The archive URL or its options are wrong.
    #[error("archive {url}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing to replay where the layout says files must be.
    #[error("archive {url}: no objects under {path}; expected {expected}")]
    NoFiles {
        /// The archive URL.
        url: String,
        /// The listed path.
        path: String,
        /// The layout expected there.
        expected: String,
    },
    /// Listing or reading an object failed.
    #[error("archive: {operation} {key}: {source}")]
    Store {
        /// list / get.
        operation: &'static str,
        /// Object key or prefix.
        key: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// An object is not a valid Avro object container file.
    #[error("archive: {key}: {message}")]
    Corrupt {
        /// Object key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An object is larger, or inflates to more, than `[source.archive]` allows.
    #[error("archive: {key}: {message}")]
    OverLimit {
        /// Object key.
        key: String,
        /// What is over which limit, and the setting that raises it.
        message: String,
    },
    /// The file's records could not be mapped to the table schema.
    #[error("archive: {key}: {source}")]
    Schema {
        /// Object key.
        key: String,
        /// The schema error.
        source: kappa_schema::SchemaError,
    },
    /// A reader task failed.
    #[error("archive: partition {partition} reader: {message}")]
    Task {
        /// Partition.
        partition: i32,
        /// What happened.
        message: String,
    },
}

impl Classify for ReplayError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReplayError::Url { .. } | ReplayError::NoFiles { .. } => ErrorKind::User,
            ReplayError::Store { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::User,
                _ => ErrorKind::Transient,
            },
            ReplayError::Corrupt { .. } | ReplayError::OverLimit { .. } => ErrorKind::BadData,
            ReplayError::Schema { source, .. } => source.kind(),
            ReplayError::Task { .. } => ErrorKind::Internal,
        }
    }
}
