//! Configuration errors: each names the key (`[section] key`), what is wrong and what is expected.
//! The binary prints them as they are and exits 2.

use kappa_core::{Classify, ErrorKind};

/// The configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {path}: {message}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The text is not valid TOML (the message has the line and column).
    #[error("config: {origin}: {message}")]
    Syntax {
        /// File (or `--set`) that failed.
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// A key or section Kappa does not know (a typo, or a key of a newer version).
    #[error(
        "config: unknown {}; expected {expected} (from {origin})",
        describe_unknown(section, key)
    )]
    UnknownKey {
        /// Section, e.g. `commit` (empty for the top level).
        section: String,
        /// The unknown key.
        key: String,
        /// The keys the section accepts, comma-separated.
        expected: String,
        /// Where it was set: the file, `env KAPPA__...` or `--set`.
        origin: String,
    },
    /// A key is missing or its value is invalid.
    #[error("config: {}: {message}", location(section, key))]
    Invalid {
        /// Section, e.g. `source.archive` (empty for the top level).
        section: String,
        /// Key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn describe_unknown(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("section [{key}]")
    } else {
        format!("key {key:?} in [{section}]")
    }
}

fn location(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("[{section}] {key}")
    }
}

impl ConfigError {
    pub(crate) fn invalid(section: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            section: section.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An error about the dotted `path` (`source.archive.url`).
    pub(crate) fn at_path(path: &str, message: impl Into<String>) -> Self {
        let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
        Self::invalid(section, key, message)
    }

    /// The dotted key the error is about (`catalog.uri`, `commit.intervl`), when it is about one.
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { section, key, .. }
            | ConfigError::UnknownKey { section, key, .. } => Some(if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            }),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// Turns a `config`-crate error (type mismatch, bad value, missing key, TOML syntax) into one
    /// naming the key.
    pub(crate) fn from_layers(error: config::ConfigError, origin: &str) -> Self {
        match error {
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => Self::at_path(&key, format!("expected {expected}, found {unexpected}")),
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => match *error {
                config::ConfigError::Message(message) => from_message(&key, &message),
                config::ConfigError::Type {
                    unexpected,
                    expected,
                    ..
                } => Self::at_path(&key, format!("expected {expected}, found {unexpected}")),
                other => Self::from_layers(other, origin),
            },
            config::ConfigError::At { error, .. } => Self::from_layers(*error, origin),
            config::ConfigError::NotFound(key) => Self::at_path(&key, "missing"),
            config::ConfigError::FileParse { cause, .. } => ConfigError::Syntax {
                origin: origin.to_string(),
                message: cause.to_string(),
            },
            config::ConfigError::Message(message) => ConfigError::Syntax {
                origin: origin.to_string(),
                message,
            },
            other => ConfigError::Syntax {
                origin: origin.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// A serde message about the value at `key`: `missing field `x`` names the missing key.
fn from_message(key: &str, message: &str) -> ConfigError {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        return ConfigError::at_path(&format!("{key}.{field}"), "missing");
    }
    ConfigError::at_path(key, message)
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_section_and_key() {
        let e = ConfigError::UnknownKey {
            section: "commit".into(),
            key: "intervl".into(),
            expected: "one of interval, rows".into(),
            origin: "p.toml".into(),
        };
        assert_eq!(
            e.to_string(),
            "config: unknown key \"intervl\" in [commit]; expected one of interval, rows (from p.toml)"
        );
        assert_eq!(e.key().as_deref(), Some("commit.intervl"));
        let e = ConfigError::at_path("source.archive.url", "missing");
        assert_eq!(e.to_string(), "config: [source.archive] url: missing");
        assert_eq!(e.key().as_deref(), Some("source.archive.url"));
        assert_eq!(e.kind(), ErrorKind::User);
    }
}
