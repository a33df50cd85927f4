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
    #[error("table {table}: {place}: {message}")]
    State {
        /// `namespace.name`.
        table: String,
        /// Where the bad state is: `table property kappa.state.<pipeline>` or `snapshot <id>`.
        place: String,
        /// What is wrong.
        message: String,
    },
    /// `kappa state takeover` moved this pipeline's state to another pipeline name.
    #[error(
        "table {table}: pipeline {pipeline:?} handed its position over to pipeline {successor:?} \
         (kappa state takeover); run the pipeline as {successor:?}"
    )]
    Released {
        /// `namespace.name`.
        table: String,
        /// The pipeline that was asked to run.
        pipeline: String,
        /// The pipeline that holds the state now.
        successor: String,
    },
    /// Another pipeline holds offsets for the same topic in this table: running this one would
    /// ingest the topic a second time.
    #[error(
        "table {table}: pipeline {owner:?} already holds offsets for topic {topic:?} here; \
         pipeline {pipeline:?} would ingest it a second time. If {pipeline:?} is the same pipeline \
         renamed, move the position over with `kappa state takeover -c <config> --from {owner}`; \
         otherwise give this pipeline its own table"
    )]
    Owned {
        /// `namespace.name`.
        table: String,
        /// The topic both pipelines read.
        topic: String,
        /// The pipeline that holds the offsets.
        owner: String,
        /// The pipeline that was asked to run.
        pipeline: String,
    },
    /// The first commit of a partition would start past offset 0 without being asked to.
    #[error(
        "table {table}: holds nothing of {partition} yet and the input starts at offset {start}: \
         offsets 0..{start} would be recorded as ingested. They are not in the source (the \
         archive's oldest objects are gone, or --start left them out). Replay them first, or \
         start the table there on purpose: `kappa replay --accept-missing-history` records \
         them as skipped (kappa.skipped)"
    )]
    MissingHistory {
        /// `namespace.name`.
        table: String,
        /// Topic-partition.
        partition: String,
        /// Where the input starts.
        start: i64,
    },
    /// The table shows that this pipeline wrote it before, but its position is gone.
    #[error("table {table}: no position of pipeline {pipeline:?}, but {evidence}; {remedy}")]
    PositionLost {
        /// `namespace.name`.
        table: String,
        /// The pipeline.
        pipeline: String,
        /// What shows that the pipeline wrote before.
        evidence: String,
        /// What to do.
        remedy: String,
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
    /// Another commit changed the table in a way this one cannot be re-decided on (exit 1:
    /// nothing was committed; the message says what to do).
    #[error("table {table}: {message}")]
    Unresolvable {
        /// `namespace.name`.
        table: String,
        /// What changed and what to do.
        message: String,
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
            IcebergError::Invalid { .. }
            | IcebergError::Released { .. }
            | IcebergError::Owned { .. }
            | IcebergError::PositionLost { .. }
            | IcebergError::MissingHistory { .. } => ErrorKind::User,
            IcebergError::State { .. } | IcebergError::Continuity { .. } => ErrorKind::Internal,
            IcebergError::ConflictRetriesExhausted { .. } | IcebergError::Unresolvable { .. } => {
                ErrorKind::Conflict
            }
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
