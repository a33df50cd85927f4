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

/// Installs the process's tracing subscriber, writing to stderr (text in color only on a terminal). `filter` is `EnvFilter` syntax
/// (`info`, `warn,kappa_runtime=debug`); an invalid one falls back to `warn` and says so. A
/// second call (a subscriber is already set) changes nothing.
pub fn init_tracing(format: LogFormat, filter: &str) {
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    let (subscriber, invalid) = subscriber(format, filter, ansi, std::io::stderr);
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(e) = invalid
    {
        tracing::warn!(filter, error = %e, "invalid log filter; logging at warn");
    }
}

type Subscriber = Box<dyn tracing::Subscriber + Send + Sync>;

/// The subscriber [`init_tracing`] installs, writing to `writer` (text colored when `ansi`), and
/// the filter's parse error if it fell back to `warn`.
fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    ansi: bool,
    writer: W,
) -> (Subscriber, Option<tracing_subscriber::filter::ParseError>)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let (env_filter, invalid) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("warn"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let subscriber: Subscriber = match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    };
    (subscriber, invalid)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::events::commit;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, filter: &str) -> String {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let (subscriber, _) = subscriber(format, filter, false, move || out.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("commit", table = "orders");
            let _entered = span.enter();
            commit::Committed {
                table: "orders",
                snapshot_id: 9,
                records: 1200,
                files: 1,
                bytes: 4096,
                attempts: 1,
                duration: Duration::from_millis(250),
                max_event_time_micros: None,
            }
            .emit();
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_logs_are_one_object_per_event_with_the_fields_at_the_top() {
        let out = logged(LogFormat::Json, "info");
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["message"], "committed", "{out}");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["table"], "orders");
        assert_eq!(line["records"], 1200);
        assert_eq!(line["duration_ms"], 250);
        assert_eq!(line["span"]["name"], "commit");
        assert!(line["timestamp"].is_string());
    }

    #[test]
    fn text_logs_carry_the_fields_and_the_filter_applies() {
        let out = logged(LogFormat::Text, "info");
        assert!(
            out.contains("committed") && out.contains("records=1200"),
            "{out}"
        );
        assert_eq!(logged(LogFormat::Text, "warn"), "");
        // An invalid filter falls back to warn.
        assert!(EnvFilter::try_new("info,=bad=[[").is_err());
        assert_eq!(logged(LogFormat::Text, "info,=bad=[["), "");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
