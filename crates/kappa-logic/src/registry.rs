//! The registry of business logics: what `[pipeline] logic` may name, and what each logic brings.
//!
//! A logic is one module that exports one [`LogicEntry`]: its name, the defaults it gives the
//! pipeline's config (dedup key, gate columns, record rules), the keys of its own config section
//! `[logic.<name>]`, and the factory that builds it from the resolved settings. Nothing outside
//! the module knows the logic: the config resolves its defaults through the entry, the pipeline
//! builds it through the factory, and `kappa diff` finds its key through the entry.
//!
//! [`Registry::builtin`] holds the logics Kappa ships (`identity`, `orders`); a program that
//! embeds Kappa adds its own with [`Registry::register`] and passes the registry to the config
//! loader and the pipeline assembly, as Vector's components and Arroyo's connectors are
//! registered.

use std::collections::BTreeMap;
use std::fmt;

use kappa_core::Logic;
use kappa_quality::{QualityError, RecordRule};

use crate::error::LogicError;

/// A logic built by a factory, run by the pipeline like the concrete type.
pub type BoxedLogic = Box<dyn Logic<Error = LogicError>>;

/// What a logic contributes to its pipeline's configuration when the config does not say.
#[derive(Clone, Copy)]
pub struct LogicDefaults {
    /// `[dedup] key`: the column whose repeats within `[dedup] window` are dropped.
    pub dedup_key: Option<&'static str>,
    /// `[quality.gates.null_rate] columns`.
    pub null_rate_columns: &'static [&'static str],
    /// `[quality.gates.uniqueness] column`.
    pub uniqueness_column: Option<&'static str>,
    /// The record rules of the logic's data contract (`[quality] default_rules`).
    pub rules: fn() -> Result<Vec<RecordRule>, QualityError>,
}

impl LogicDefaults {
    /// No dedup, no gate column, no record rule.
    pub const NONE: LogicDefaults = LogicDefaults {
        dedup_key: None,
        null_rate_columns: &[],
        uniqueness_column: None,
        rules: no_rules,
    };
}

fn no_rules() -> Result<Vec<RecordRule>, QualityError> {
    Ok(Vec::new())
}

/// One key of a logic's `[logic.<name>]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDoc {
    /// The key.
    pub key: &'static str,
    /// What it sets, its type and its default, for error messages and docs.
    pub about: &'static str,
}

/// A value of a `[logic.<name>]` key, as the config file gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
    /// An array.
    List(Vec<OptionValue>),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Text(s) => write!(f, "{s:?}"),
            OptionValue::List(items) => {
                let items: Vec<String> = items.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

/// The `[logic.<name>]` section of a pipeline: checked against the logic's [`OptionDoc`]s when the
/// config is loaded, read by the factory through typed getters whose errors name the key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogicOptions {
    section: String,
    values: BTreeMap<String, OptionValue>,
}

impl LogicOptions {
    /// The options of `logic`'s section; a key the logic does not declare is an error naming it.
    pub fn new(
        entry: &LogicEntry,
        values: BTreeMap<String, OptionValue>,
    ) -> Result<Self, LogicError> {
        let section = format!("logic.{}", entry.name);
        if let Some(key) = values
            .keys()
            .find(|k| !entry.options.iter().any(|o| o.key == k.as_str()))
        {
            let expected = if entry.options.is_empty() {
                format!("none: logic {:?} takes no options", entry.name)
            } else {
                let keys: Vec<&str> = entry.options.iter().map(|o| o.key).collect();
                format!("one of {}", keys.join(", "))
            };
            return Err(LogicError::Option {
                section,
                key: key.clone(),
                message: format!("unknown key; expected {expected}"),
            });
        }
        Ok(Self { section, values })
    }

    /// No options (a logic's defaults).
    pub fn empty(entry: &LogicEntry) -> Self {
        Self {
            section: format!("logic.{}", entry.name),
            values: BTreeMap::new(),
        }
    }

    fn invalid(&self, key: &str, expected: &str, value: &OptionValue) -> LogicError {
        LogicError::Option {
            section: self.section.clone(),
            key: key.to_string(),
            message: format!("{value}: expected {expected}"),
        }
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.values.get(key)
    }

    /// A string option, `default` when unset.
    pub fn text(&self, key: &str, default: &str) -> Result<String, LogicError> {
        match self.values.get(key) {
            None => Ok(default.to_string()),
            Some(OptionValue::Text(s)) => Ok(s.clone()),
            Some(other) => Err(self.invalid(key, "a string", other)),
        }
    }

    /// A number option (an integer is accepted), `default` when unset.
    pub fn float(&self, key: &str, default: f64) -> Result<f64, LogicError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(OptionValue::Float(x)) if x.is_finite() => Ok(*x),
            Some(OptionValue::Int(i)) => Ok(*i as f64),
            Some(other) => Err(self.invalid(key, "a finite number", other)),
        }
    }

    /// An integer option, `default` when unset.
    pub fn int(&self, key: &str, default: i64) -> Result<i64, LogicError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(OptionValue::Int(i)) => Ok(*i),
            Some(other) => Err(self.invalid(key, "an integer", other)),
        }
    }

    /// A boolean option, `default` when unset.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, LogicError> {
        match self.values.get(key) {
            None => Ok(default),
            Some(OptionValue::Bool(b)) => Ok(*b),
            Some(other) => Err(self.invalid(key, "true or false", other)),
        }
    }

    /// A list-of-strings option, `default` when unset.
    pub fn texts(&self, key: &str, default: &[&str]) -> Result<Vec<String>, LogicError> {
        match self.values.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(OptionValue::List(items)) => items
                .iter()
                .map(|item| match item {
                    OptionValue::Text(s) => Ok(s.clone()),
                    other => Err(self.invalid(key, "a list of strings", other)),
                })
                .collect(),
            Some(other) => Err(self.invalid(key, "a list of strings", other)),
        }
    }
}

/// Everything a logic's factory is given: the pipeline's settings after the logic's defaults are
/// applied.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicSettings {
    /// `[dedup] key`, or the logic's default; `None`: no dedup.
    pub dedup_key: Option<String>,
    /// `[dedup] window`: offsets per partition within which a repeated key is a duplicate.
    pub dedup_window: i64,
    /// `[event_time] column`.
    pub event_time_column: String,
    /// `[logic.<name>]`.
    pub options: LogicOptions,
}

/// A business logic as the registry knows it (see the module docs).
#[derive(Clone, Copy)]
pub struct LogicEntry {
    /// The name `[pipeline] logic` selects it by.
    pub name: &'static str,
    /// One line for `kappa` help and errors.
    pub about: &'static str,
    /// What it gives the config when the config does not say.
    pub defaults: LogicDefaults,
    /// The keys of its `[logic.<name>]` section.
    pub options: &'static [OptionDoc],
    /// Builds the logic; an error names the option or setting that does not fit.
    pub build: fn(&LogicSettings) -> Result<BoxedLogic, LogicError>,
}

impl fmt::Debug for LogicEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicEntry")
            .field("name", &self.name)
            .field("about", &self.about)
            .field("dedup_key", &self.defaults.dedup_key)
            .field("null_rate_columns", &self.defaults.null_rate_columns)
            .field("uniqueness_column", &self.defaults.uniqueness_column)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PartialEq for LogicEntry {
    /// Entries are equal when they have the same name: a registry holds one per name.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl LogicEntry {
    /// Builds the logic from `settings`.
    pub fn build(&self, settings: &LogicSettings) -> Result<BoxedLogic, LogicError> {
        (self.build)(settings)
    }

    /// The logic's record rules (`[quality] default_rules`).
    pub fn default_rules(&self) -> Result<Vec<RecordRule>, QualityError> {
        (self.defaults.rules)()
    }
}

/// The logics a pipeline may name (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    entries: Vec<LogicEntry>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The logics Kappa ships.
    pub fn builtin() -> Self {
        Self {
            entries: crate::BUILTIN.to_vec(),
        }
    }

    /// Adds a logic; a name already registered is an error.
    pub fn register(&mut self, entry: LogicEntry) -> Result<(), LogicError> {
        if self.entries.iter().any(|e| e.name == entry.name) {
            return Err(LogicError::Duplicate { name: entry.name });
        }
        self.entries.push(entry);
        Ok(())
    }

    /// The builtin logics and `entry` (for tests and embedders registering one logic).
    pub fn with(mut self, entry: LogicEntry) -> Result<Self, LogicError> {
        self.register(entry)?;
        Ok(self)
    }

    /// The logic named `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&LogicEntry, LogicError> {
        let name = name.trim();
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| LogicError::UnknownLogic {
                name: name.to_string(),
                known: self.names().join("|"),
            })
    }

    /// Every registered name, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// Every entry, in registration order.
    pub fn entries(&self) -> &[LogicEntry] {
        &self.entries
    }
}
