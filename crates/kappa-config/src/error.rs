//! Configuration errors: each names the key (`[section] key`) and what is expected.

/// The configuration is unusable. The binary prints it and exits 2.
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
    /// The file is not valid TOML, or a key has the wrong type or is unknown.
    #[error("config: {origin}: {message}")]
    Parse {
        /// File (or env) that failed.
        origin: String,
        /// What the parser said, naming the key.
        message: String,
    },
    /// A key is missing or its value is invalid.
    #[error("config: [{section}] {key}: {message}")]
    Invalid {
        /// Section, e.g. `source.archive`.
        section: String,
        /// Key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(section: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            section: section.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// `section.key` when the error is about one key.
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { section, key, .. } => Some(format!("{section}.{key}")),
            _ => None,
        }
    }
}
