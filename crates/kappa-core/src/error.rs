//! Error kinds shared by every crate: the runtime decides retries and routing by kind, never by
//! message text.

use std::fmt;

/// What kind of failure an error is, which decides what the runtime does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user's input (config, flags, a missing archive prefix) is wrong: exit 2, do not retry.
    User,
    /// A dependency hiccuped (network, 5xx, throttling): retry with backoff.
    Transient,
    /// Another writer committed first: reload, re-merge and retry the commit.
    Conflict,
    /// A commit was sent but its outcome is unknown: resolve by searching the table history.
    CommitStateUnknown,
    /// A record or file is malformed: dead-letter the record, or name the object and stop.
    BadData,
    /// A bug or an invariant broken inside Kappa.
    Internal,
    /// A quality gate with policy `block` refused the data: nothing was committed (exit 3).
    Blocked,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Conflict)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::User => "user",
            ErrorKind::Transient => "transient",
            ErrorKind::Conflict => "conflict",
            ErrorKind::CommitStateUnknown => "commit-state-unknown",
            ErrorKind::BadData => "bad-data",
            ErrorKind::Internal => "internal",
            ErrorKind::Blocked => "blocked",
        })
    }
}

/// Implemented by every library error so callers can match on the [`ErrorKind`].
pub trait Classify {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}
