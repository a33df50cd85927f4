//! Quality errors. Bad records never fail a check (they become dead letters or count against a
//! gate); these are configuration values that make no sense, checks configured for columns the
//! data does not have, and broken invariants.

use kappa_core::{Classify, ErrorKind};

/// A quality check cannot be configured or cannot run on the data it gets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityError {
    /// A configuration value is invalid (`key` is the key inside its section: `pattern`, `band`).
    #[error("{key}: {message}")]
    Invalid {
        /// The key, as written in `[quality]` configuration.
        key: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A check names a column the batch does not have, or one of a type it cannot read.
    #[error("quality check {check}: batch {batch}: column {column:?}: {message}")]
    Column {
        /// The check (rule or gate name).
        check: String,
        /// The batch: topic-partition and offset range, or `commit` for commit rows.
        batch: String,
        /// Column name.
        column: String,
        /// What is wrong, naming the columns found or the type expected.
        message: String,
    },
    /// The batch breaks the [`kappa_core::SourceBatch`] invariants (a bug upstream).
    #[error("quality: batch {batch}: invalid input batch: {message}")]
    Invariant {
        /// The batch: topic-partition and offset range.
        batch: String,
        /// The broken invariant.
        message: String,
    },
    /// Arrow refused an operation (a bug).
    #[error("quality: batch {batch}: {operation}: {message}")]
    Arrow {
        /// The batch: topic-partition and offset range.
        batch: String,
        /// What was being done.
        operation: &'static str,
        /// The Arrow error.
        message: String,
    },
    /// A `kappa.quality` snapshot-summary value is not a quality report this version reads.
    #[error("quality: cannot read the kappa.quality summary: {message}")]
    Summary {
        /// The JSON error, with line and column.
        message: String,
    },
}

impl QualityError {
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        QualityError::Invalid {
            key,
            message: message.into(),
        }
    }
}

impl Classify for QualityError {
    fn kind(&self) -> ErrorKind {
        match self {
            // The configured checks do not fit the configured schema: fix the config.
            QualityError::Invalid { .. } | QualityError::Column { .. } => ErrorKind::User,
            // A summary written by another tool or a newer version: the table's data is fine.
            QualityError::Summary { .. } => ErrorKind::BadData,
            QualityError::Invariant { .. } | QualityError::Arrow { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_by_variant_and_messages_name_where() {
        let column = QualityError::Column {
            check: "null_rate.user_id".into(),
            batch: "commit".into(),
            column: "user_id".into(),
            message: "missing".into(),
        };
        assert_eq!(column.kind(), ErrorKind::User);
        assert_eq!(
            column.to_string(),
            "quality check null_rate.user_id: batch commit: column \"user_id\": missing"
        );
        let arrow = QualityError::Arrow {
            batch: "orders-0 [0, 1)".into(),
            operation: "filtering rows",
            message: "boom".into(),
        };
        assert_eq!(arrow.kind(), ErrorKind::Internal);
        assert_eq!(QualityError::invalid("band", "x").kind(), ErrorKind::User);
        let summary = QualityError::Summary {
            message: "eof".into(),
        };
        assert_eq!(summary.kind(), ErrorKind::BadData);
    }
}
