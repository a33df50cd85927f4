//! Runtime errors: which stage failed, with the stage's own error inside.

use kappa_core::{Classify, ErrorKind};
use kappa_iceberg::IcebergError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A pipeline run failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The source failed.
    #[error("source: {source}")]
    Source {
        /// The source's error kind.
        kind: ErrorKind,
        /// The source's error.
        source: BoxError,
    },
    /// The logic failed (a schema mismatch; bad records never fail the logic).
    #[error("logic {logic}: {source}")]
    Logic {
        /// Logic name.
        logic: String,
        /// The error kind.
        kind: ErrorKind,
        /// The logic's error.
        source: BoxError,
    },
    /// A sink failed.
    #[error("{0}")]
    Sink(#[from] IcebergError),
    /// A batch broke an invariant between stages (a bug).
    #[error("internal: {0}")]
    Invariant(String),
    /// A quality check could not run (a rule on a column the rows lack: the config is wrong).
    #[error("quality: {0}")]
    Quality(kappa_quality::QualityError),
    /// A quality gate with policy `block` refused a commit: nothing of it was committed.
    #[error("{table}: {message}; nothing was committed (offsets {input})")]
    Blocked {
        /// The main table.
        table: String,
        /// Which checks failed, with value and threshold.
        message: String,
        /// The input ranges of the refused commit.
        input: String,
        /// The verdicts as `kappa.quality` JSON.
        report: String,
        /// The next offset per partition after the refused input.
        until: kappa_core::SourcePosition,
    },
}

impl RuntimeError {
    pub(crate) fn source<E: std::error::Error + Classify + Send + Sync + 'static>(e: E) -> Self {
        RuntimeError::Source {
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Source { kind, .. } | RuntimeError::Logic { kind, .. } => *kind,
            RuntimeError::Sink(e) => e.kind(),
            RuntimeError::Invariant(_) => ErrorKind::Internal,
            RuntimeError::Quality(e) => e.kind(),
            RuntimeError::Blocked { .. } => ErrorKind::Blocked,
        }
    }
}
