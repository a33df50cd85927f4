//! The one error of pipeline assembly: what failed, in words, and whose fault it is.

use std::fmt::Display;

use kappa_core::{Classify, ErrorKind};

/// A pipeline could not be assembled or run. The message names what and where (the config key,
/// the table, the archive object); [`Classify::kind`] says whose fault it is, which the CLI maps
/// to its exit code (user: 2, blocked: 3, otherwise 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PipelineError {
    /// Whose fault it is.
    pub kind: ErrorKind,
    /// What failed, naming what and where.
    pub message: String,
}

impl PipelineError {
    /// A configuration or usage error (exit 2).
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::User,
            message: message.into(),
        }
    }

    /// A failure that is nobody's input error (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    /// A stage's error, keeping its classification.
    pub fn from_error<E: Display + Classify>(error: E) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

impl Classify for PipelineError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<kappa_config::ConfigError> for PipelineError {
    fn from(error: kappa_config::ConfigError) -> Self {
        Self::user(error.to_string())
    }
}
