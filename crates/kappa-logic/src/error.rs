//! Logic errors: only schema mismatches. Bad records never fail the logic; they become dead letters.

use kappa_core::{Classify, ErrorKind};

/// The logic cannot run on the batches it gets.
#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    /// `[pipeline] logic` names no known logic.
    #[error("[pipeline] logic: unknown logic {name:?}; expected one of {known}")]
    UnknownLogic {
        /// The configured name.
        name: String,
        /// Known names.
        known: String,
    },
    /// A column the logic needs is missing or has another type.
    #[error("logic {logic}: column {column:?}: {message}")]
    Column {
        /// Logic name.
        logic: &'static str,
        /// Column name.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Arrow refused to build the output batch.
    #[error("logic {logic}: {message}")]
    Arrow {
        /// Logic name.
        logic: &'static str,
        /// The Arrow error.
        message: String,
    },
}

impl Classify for LogicError {
    fn kind(&self) -> ErrorKind {
        match self {
            LogicError::UnknownLogic { .. } | LogicError::Column { .. } => ErrorKind::User,
            LogicError::Arrow { .. } => ErrorKind::Internal,
        }
    }
}
