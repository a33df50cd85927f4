//! Tracing setup for the binary: human text or one JSON object per line, on stderr.
//!
//! Log message style (one, written down once): a short lower-case phrase saying what happened
//! (`committed`, `commit conflicted; reloading to retry`), with every fact as a key-value field
//! (`table`, `topic`, `partition`, `records`, `duration_ms`, `error`), never interpolated into
//! the message.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per event: `timestamp`, `level`, `target`, `message` and the fields at
    /// the top level, plus the current span's fields under `span`.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}; expected text|json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the process's tracing subscriber, writing to stderr. `filter` is `EnvFilter` syntax
/// (`info`, `warn,kappa_runtime=debug`); an invalid one falls back to `warn` and says so. A
/// second call (a subscriber is already set) changes nothing.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let (env_filter, invalid) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("warn"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
    };
    if let (true, Some(e)) = (installed, invalid) {
        tracing::warn!(filter, error = %e, "invalid log filter; logging at warn");
    }
}
