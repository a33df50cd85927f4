//! Credentials out of text: the one redaction every printed URI, config value, error message and
//! log line goes through.
//!
//! [`redact`] finds every credential form in free text, wherever a URI or a connection string
//! is embedded (an error of sqlx, iceberg or object_store that quotes the URI, a `Debug` of a
//! config, a log line), and replaces the secret with `***`:
//!
//! - the password of URI user info: `postgres://kappa:s3cr3t@db/lake` → `postgres://kappa:***@db/lake`;
//! - the value of a `name=value` pair (a URI query parameter, or a libpq-style
//!   `host=db password=s3cr3t` connection string) whose name, compared case-insensitively,
//!   contains `password`, `passwd`, `pwd`, `secret`, `token`, `key`, `credential`, `signature`,
//!   `auth` or `sas`, or is `sig` (Azure SAS) — so `?password=`, `&X-Amz-Signature=`,
//!   `X-Amz-Credential=`, `sig=`, `access_key=`, `api_token=`.
//!
//! A value ends at whitespace, `&`, `;`, `,`, `#`, a quote, a backslash, `<`, `>` or a closing
//! bracket, so quoted and JSON text stays well-formed.

use std::fmt;

/// What a redacted secret reads as.
pub const REDACTED: &str = "***";

/// Parameter names (lower case) whose value is a secret when the name contains one of them.
const SECRET_NAME_PARTS: [&str; 10] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "signature",
    "auth",
    "sas",
];

/// Parameter names (lower case) that are secrets only as a whole.
const SECRET_NAMES: [&str; 1] = ["sig"];

/// Whether a `name=value` parameter's value is a secret, by its name (case-insensitive).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.contains(&name.as_str()) || SECRET_NAME_PARTS.iter().any(|p| name.contains(p))
}

fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | ';' | ',' | '#' | '"' | '\'' | '`' | '\\' | '<' | '>' | ')' | ']' | '}'
        )
}

fn in_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `text` with every credential replaced by [`REDACTED`] (see the module docs).
pub fn redact(text: &str) -> String {
    redact_params(&redact_userinfo(text))
}

/// The password of every `scheme://user:password@host` in `text`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the path, query or fragment, or where the URI ends in the text.
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || ends_value(c) && c != ';')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where a quoted value that starts `text` ends (the closing quote's index), skipping escaped
/// quotes; the whole text when it is not closed.
fn quoted_end(text: &str) -> usize {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return i,
            _ => escaped = false,
        }
    }
    text.len()
}

/// The value of every secret-named parameter in `text`: `name=value`, `name="value"` (text
/// logs) and `"name":"value"` (JSON). A pair `key=<a secret name>` (a driver logging a
/// parameter it ignores as `key=password value=...`) makes the next `value=` secret too.
fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut armed = false;
    loop {
        let separator = match (rest.find('='), rest.find("\":\"")) {
            (None, None) => break,
            (Some(eq), Some(json)) if json < eq => (json, 3, true),
            (Some(eq), _) => (eq, 1, false),
            (None, Some(json)) => (json, 3, true),
        };
        let (at, len, json) = separator;
        let (before, after) = rest.split_at(at);
        let name_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| in_name(*c))
            .last()
            .map_or(before.len(), |(i, _)| i);
        let name = before[name_start..].to_ascii_lowercase();
        out.push_str(before);
        out.push_str(&after[..len]);
        let mut after = &after[len..];
        // A quoted value: `name="..."`, or any JSON value.
        let quoted = json || after.starts_with('"');
        if quoted && !json {
            out.push('"');
            after = &after[1..];
        }
        let end = if quoted {
            quoted_end(after)
        } else {
            after.find(ends_value).unwrap_or(after.len())
        };
        let value = &after[..end];
        let secret = if name == "key" && is_secret_name(value) {
            armed = true;
            false
        } else if name == "value" && armed {
            armed = false;
            true
        } else {
            !name.is_empty() && is_secret_name(&name)
        };
        if secret && end > 0 {
            out.push_str(REDACTED);
            rest = &after[end..];
        } else {
            // Not a secret: scan on inside it (a URI in an `error=` value has its own pairs).
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Formats a value's `Debug` through [`redact`]: `format!("{:?}", Redacted(&config))`.
pub struct Redacted<'a, T: fmt::Debug + ?Sized>(pub &'a T);

impl<T: fmt::Debug + ?Sized> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if f.alternate() {
            format!("{:#?}", self.0)
        } else {
            format!("{:?}", self.0)
        };
        f.write_str(&redact(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every credential form, in a URI alone and embedded in the kinds of text that print one.
    #[test]
    fn every_credential_form_is_redacted() {
        let cases = [
            (
                "postgres://kappa:s3cr3t@db:5432/lake",
                "postgres://kappa:***@db:5432/lake",
            ),
            (
                "postgres://kappa@db:5432/lake?password=s3cr3t",
                "postgres://kappa@db:5432/lake?password=***",
            ),
            (
                "postgres://kappa@db/lake?sslmode=require&PassWord=s3cr3t&application_name=k",
                "postgres://kappa@db/lake?sslmode=require&PassWord=***&application_name=k",
            ),
            (
                "https://r:8081/?api_key=s3cr3t&Token=s3cr3t",
                "https://r:8081/?api_key=***&Token=***",
            ),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=s3cr3t%2F2026&X-Amz-Signature=s3cr3t",
                "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&X-Amz-Signature=***",
            ),
            (
                "https://a.blob.core.windows.net/c?sv=2020&sig=s3cr3t&se=2026",
                "https://a.blob.core.windows.net/c?sv=2020&sig=***&se=2026",
            ),
            (
                "s3://b/p?sas=s3cr3t&client_secret=s3cr3t",
                "s3://b/p?sas=***&client_secret=***",
            ),
            ("https://user:s3cr3t@r:8081", "https://user:***@r:8081"),
            // libpq key-value connection strings, quoted in errors and Debug output.
            (
                "error: \"host=db user=kappa password=s3cr3t dbname=lake\"",
                "error: \"host=db user=kappa password=*** dbname=lake\"",
            ),
            (
                "catalog postgres://k:s3cr3t@db/lake: connecting: pool timed out",
                "catalog postgres://k:***@db/lake: connecting: pool timed out",
            ),
            (
                r#"{"error":"connect postgres://k@db/l?password=s3cr3t failed"}"#,
                r#"{"error":"connect postgres://k@db/l?password=*** failed"}"#,
            ),
            // Structured log fields, text and JSON, named as secrets or naming one.
            (
                r#"WARN ignoring parameter password="s3cr3t \" x" table=orders"#,
                r#"WARN ignoring parameter password="***" table=orders"#,
            ),
            (
                "WARN sqlx: ignoring unrecognized connect parameter key=Token value=s3cr3t",
                "WARN sqlx: ignoring unrecognized connect parameter key=Token value=***",
            ),
            (
                r#"{"level":"WARN","key":"password","value":"s3cr3t","api_token":"s3cr3t"}"#,
                r#"{"level":"WARN","key":"password","value":"***","api_token":"***"}"#,
            ),
            ("GET /?key=s3cr3t&v=1", "GET /?key=***&v=1"),
            (
                "CatalogConfig { uri: \"postgres://k:s3cr3t@db/l\" }",
                "CatalogConfig { uri: \"postgres://k:***@db/l\" }",
            ),
        ];
        for (text, expected) in cases {
            let redacted = redact(text);
            assert_eq!(redacted, expected, "{text}");
            assert!(!redacted.contains("s3cr3t"), "{redacted}");
        }
    }

    #[test]
    fn text_without_credentials_is_unchanged() {
        for text in [
            "sqlite:///var/lib/kappa/catalog.db?mode=rwc",
            "postgres://kappa@db:5432/lake?sslmode=require",
            "s3://bucket/prefix",
            "table kappa.orders: committed 1,000 rows (max_rate=0.05, threshold >= 0)",
            "a == b; x=1&y=2",
            r#"{"name":"table","value":"orders"}"#,
            "password=",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn debug_through_redacted() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            uri: String,
            endpoint: String,
        }
        let config = Config {
            uri: "postgres://k:s3cr3t@db/l".into(),
            endpoint: "https://s3?X-Amz-Signature=s3cr3t".into(),
        };
        let shown = format!("{:?} {:#?}", Redacted(&config), Redacted(&config));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("postgres://k:***@db/l"), "{shown}");
    }
}
