//! Errors of the metrics crate, each with the kind the caller matches on.

use std::net::SocketAddr;

use kappa_core::{Classify, ErrorKind};

/// What went wrong starting the metrics endpoint or the recorder.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `[metrics] listen` could not be bound (in use, not an address of this host, no
    /// permission).
    #[error(
        "metrics: cannot listen on {addr} ([metrics] listen): {source}; choose a free address of this host"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Prometheus recorder could not be installed.
    #[error("metrics: cannot install the Prometheus recorder: {reason}")]
    Recorder {
        /// Why.
        reason: String,
    },
}

impl Classify for MetricsError {
    fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Bind { .. } => ErrorKind::User,
            MetricsError::Recorder { .. } => ErrorKind::Internal,
        }
    }
}
