//! Tracing setup for the binary: human text or one JSON object per line, on stderr.
//!
//! Log message style (one, written down once): a short lower-case phrase saying what happened
//! (`committed`, `commit conflicted; reloading to retry`), with every fact as a key-value field
//! (`table`, `topic`, `partition`, `records`, `duration_ms`, `error`), never interpolated into
//! the message.
//!
//! Every line passes through [`kappa_core::redact`] before it is written: a credential in a
//! field, a message or an error of any crate (a driver error quoting the catalog URI) is
//! written as `***`.

use std::fmt;
use std::io;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
    use io::IsTerminal as _;
    let ansi = io::stderr().is_terminal();
    let (subscriber, invalid) = subscriber(format, filter, ansi, io::stderr);
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(e) = invalid
    {
        tracing::warn!(filter, error = %e, "invalid log filter; logging at warn");
    }
}

type Subscriber = Box<dyn tracing::Subscriber + Send + Sync>;

/// Makes writers that redact each event's text before writing it.
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.0.make_writer(),
            line: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter {
            inner: self.0.make_writer_for(meta),
            line: Vec::new(),
        }
    }
}

/// Collects one event's text (the formatter writes an event to a writer of its own, then drops
/// it) and writes it redacted on flush or drop.
struct RedactingWriter<W: io::Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: io::Write> RedactingWriter<W> {
    fn write_redacted(&mut self) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        let text = kappa_core::redact::redact(&String::from_utf8_lossy(&self.line));
        self.line.clear();
        self.inner.write_all(text.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_redacted()
    }
}

impl<W: io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write to.
        let _ = self.write_redacted();
    }
}

/// The subscriber [`init_tracing`] installs, writing to `writer` (text colored when `ansi`), and
/// the filter's parse error if it fell back to `warn`.
fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    ansi: bool,
    writer: W,
) -> (Subscriber, Option<tracing_subscriber::filter::ParseError>)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (env_filter, invalid) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("warn"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(Redacting(writer));
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

    /// A credential anywhere in an event (an error field quoting a URI, the message) is written
    /// as `***`, in both formats, at every level.
    #[test]
    fn logs_never_carry_a_credential() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let buffer = Buffer::default();
            let out = buffer.clone();
            let (subscriber, _) = subscriber(format, "debug", false, move || out.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(
                    error = "catalog postgres://kappa@db/lake?password=s3cr3t: connecting: refused",
                    "unhealthy"
                );
                tracing::warn!(uri = %"https://u:s3cr3t@r:8081", "registry unreachable");
                tracing::info!("fetched s3://b/k?X-Amz-Signature=s3cr3t&x=1");
                // As sqlx logs a connection parameter it does not know.
                tracing::warn!(
                    key = "Token",
                    value = "s3cr3t",
                    "ignoring unrecognized connect parameter"
                );
                tracing::debug!(password = "s3cr3t", "a field named as a secret");
            });
            let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            assert_eq!(logged.lines().count(), 5, "{logged}");
            assert!(!logged.contains("s3cr3t"), "{format}: {logged}");
            assert!(logged.contains("password=***"), "{logged}");
            if format == LogFormat::Json {
                for line in logged.lines() {
                    serde_json::from_str::<serde_json::Value>(line).unwrap();
                }
            }
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
