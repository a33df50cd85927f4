//! Errors of the Iceberg sink, each naming the operation and the table.

use kappa_core::{Classify, ErrorKind};

/// A sink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IcebergError {
    /// The catalog could not be reached or configured. The cause's text is redacted too: a
    /// driver error may quote the URI.
    #[error("catalog {uri}: {operation}: {}", kappa_core::redact::redact(&source.to_string()))]
    Catalog {
        /// Catalog URI (credentials removed).
        uri: String,
        /// What was attempted.
        operation: String,
        /// The iceberg-rust error.
        source: Box<iceberg::Error>,
    },
    /// A table operation failed.
    #[error("table {table}: {operation}: {source}")]
    Table {
        /// `namespace.name`.
        table: String,
        /// What was attempted.
        operation: String,
        /// The iceberg-rust error.
        source: Box<iceberg::Error>,
    },
    /// The configured table does not fit the existing one, or the config is wrong.
    #[error("table {table}: {message}")]
    Invalid {
        /// `namespace.name`.
        table: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The table's stored Kappa state cannot be read.
    #[error("table {table}: snapshot {snapshot_id}: {message}")]
    State {
        /// `namespace.name`.
        table: String,
        /// The snapshot whose summary is bad.
        snapshot_id: i64,
        /// What is wrong.
        message: String,
    },
    /// The input to commit does not continue the committed state (a gap or an overlap).
    #[error("table {table}: refusing to commit {partition} {range}: {message}")]
    Continuity {
        /// `namespace.name`.
        table: String,
        /// Topic-partition.
        partition: String,
        /// The offending input range.
        range: String,
        /// Why.
        message: String,
    },
    /// Another writer kept winning; gave up after the configured attempts.
    #[error("table {table}: commit {commit_id} still conflicting after {attempts} attempts")]
    ConflictRetriesExhausted {
        /// `namespace.name`.
        table: String,
        /// The commit id.
        commit_id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Writing data files failed.
    #[error("table {table}: writing data files: {source}")]
    Write {
        /// `namespace.name`.
        table: String,
        /// The iceberg-rust error.
        source: Box<iceberg::Error>,
    },
}

impl Classify for IcebergError {
    fn kind(&self) -> ErrorKind {
        match self {
            IcebergError::Catalog { source, .. }
            | IcebergError::Table { source, .. }
            | IcebergError::Write { source, .. } => kind_of(source),
            IcebergError::Invalid { .. } => ErrorKind::User,
            IcebergError::State { .. } | IcebergError::Continuity { .. } => ErrorKind::Internal,
            IcebergError::ConflictRetriesExhausted { .. } => ErrorKind::Conflict,
        }
    }
}

/// Maps an iceberg-rust error to a Kappa error kind.
pub(crate) fn kind_of(error: &iceberg::Error) -> ErrorKind {
    use iceberg::ErrorKind as K;
    match error.kind() {
        K::CatalogCommitConflicts => ErrorKind::Conflict,
        K::TableNotFound | K::NamespaceNotFound | K::DataInvalid | K::FeatureUnsupported => {
            ErrorKind::User
        }
        _ if error.retryable() => ErrorKind::Transient,
        K::Unexpected => ErrorKind::Transient,
        _ => ErrorKind::Internal,
    }
}
