//! Logic errors: unknown logic names, bad `[logic.<name>]` options and schema mismatches. Bad
//! records never fail the logic; they become dead letters.

use kappa_core::{Classify, ErrorKind};

/// The logic cannot run on the batches it gets, or is not known.
#[derive(Debug, thiserror::Error)]
pub enum LogicError {
    /// `[pipeline] logic` names no known logic.
    #[error("[pipeline] logic: unknown logic {name:?}; expected one of {known}")]
    UnknownLogic {
        /// The configured name.
        name: String,
        /// Known names, `|`-separated.
        known: String,
    },
    /// Two logics registered under one name.
    #[error("logic {name:?} is registered twice")]
    Duplicate {
        /// The name.
        name: &'static str,
    },
    /// A `[logic.<name>]` option is unknown or has a bad value, or a setting the logic needs
    /// (`[dedup] key`) does not fit it.
    #[error("[{section}] {key}: {message}")]
    Option {
        /// The config section: `logic.orders`, `dedup`.
        section: String,
        /// The key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A column the logic needs is missing or has another type.
    #[error("logic {logic}: batch {batch}: column {column:?}: {message}")]
    Column {
        /// Logic name.
        logic: &'static str,
        /// The batch: topic-partition and offset range.
        batch: String,
        /// Column name.
        column: String,
        /// What is wrong, naming the columns found or the type expected.
        message: String,
    },
    /// The batch breaks the [`kappa_core::SourceBatch`] invariants (a bug in the source).
    #[error("logic {logic}: batch {batch}: invalid input batch: {message}")]
    Invariant {
        /// Logic name.
        logic: &'static str,
        /// The batch: topic-partition and offset range.
        batch: String,
        /// The broken invariant.
        message: String,
    },
    /// A logic's own failure (for logics outside this crate), classified by the logic.
    #[error("logic {logic}: {message}")]
    Failed {
        /// Logic name.
        logic: &'static str,
        /// What failed.
        message: String,
        /// Whose fault it is.
        kind: ErrorKind,
    },
    /// Arrow refused to build the output batch (a bug).
    #[error("logic {logic}: batch {batch}: {operation}: {message}")]
    Arrow {
        /// Logic name.
        logic: &'static str,
        /// The batch: topic-partition and offset range.
        batch: String,
        /// What was being done.
        operation: &'static str,
        /// The Arrow error.
        message: String,
    },
}

impl Classify for LogicError {
    fn kind(&self) -> ErrorKind {
        match self {
            // The configured logic does not fit the configured schema: fix the config.
            LogicError::UnknownLogic { .. }
            | LogicError::Option { .. }
            | LogicError::Column { .. } => ErrorKind::User,
            LogicError::Failed { kind, .. } => *kind,
            LogicError::Duplicate { .. }
            | LogicError::Invariant { .. }
            | LogicError::Arrow { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_by_variant() {
        let unknown = LogicError::UnknownLogic {
            name: "x".into(),
            known: "orders".into(),
        };
        assert_eq!(unknown.kind(), ErrorKind::User);
        let arrow = LogicError::Arrow {
            logic: "orders",
            batch: "orders-0 [0, 1)".into(),
            operation: "filtering rows",
            message: "boom".into(),
        };
        assert_eq!(arrow.kind(), ErrorKind::Internal);
        assert_eq!(
            arrow.to_string(),
            "logic orders: batch orders-0 [0, 1): filtering rows: boom"
        );
    }
}
