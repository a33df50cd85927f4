//! `kappa-logic`: business logic as pure functions over Arrow batches.
//!
//! In the data flow it runs after decoding and before the quality gates and the committer, the
//! same code for live Kafka and for archive replay:
//!
//! ```text
//! source ─► decode ─► [ logic: Logic::apply ] ─► gates ─► committer
//!                        ▲
//!     restart: Logic::warm_up(the `window` offsets before the resume position)
//! ```
//!
//! Logic is deterministic: the same sequence of records gives the same output however it is split
//! into batches, with no wall clock and no I/O. Registration is one explicit `match` on
//! [`LogicKind`] in [`build`]; the `orders` domain ([`OrdersLogic`]) is the worked example.

mod columns;
mod dedup;
mod error;
pub mod orders;

use std::fmt;
use std::str::FromStr;

pub use dedup::DedupWindow;
pub use error::LogicError;
pub use orders::OrdersLogic;

/// Default dedup window: offsets per partition within which a repeated `event_id` is dropped.
pub const DEFAULT_DEDUP_WINDOW: i64 = 100_000;

/// The business logics Kappa ships, as named by `[pipeline] logic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogicKind {
    /// The `orders` domain: upper-case currency, reject negative amounts, drop duplicate ids.
    Orders,
}

impl LogicKind {
    /// Every known logic name.
    pub const NAMES: &'static [&'static str] = &["orders"];

    /// The config name of this logic.
    pub fn name(self) -> &'static str {
        match self {
            LogicKind::Orders => "orders",
        }
    }
}

impl fmt::Display for LogicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LogicKind {
    type Err = LogicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "orders" => Ok(LogicKind::Orders),
            other => Err(LogicError::UnknownLogic {
                name: other.to_string(),
                known: LogicKind::NAMES.join("|"),
            }),
        }
    }
}

/// Settings every logic may use (from the pipeline config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicOptions {
    /// `[dedup] window`: offsets per partition within which a repeated key is a duplicate.
    pub dedup_window: i64,
}

impl Default for LogicOptions {
    fn default() -> Self {
        Self {
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }
}

/// Builds the logic `kind` names. Add a domain here (and to [`LogicKind`]) to register it; when a
/// second domain arrives this returns an enum over the domains' transforms.
pub fn build(kind: LogicKind, options: &LogicOptions) -> OrdersLogic {
    match kind {
        LogicKind::Orders => OrdersLogic::new(options.dedup_window),
    }
}

#[cfg(test)]
mod tests {
    use kappa_core::Classify;

    use super::*;

    #[test]
    fn logic_names_parse_and_unknown_ones_list_the_known() {
        assert_eq!("orders".parse::<LogicKind>().unwrap(), LogicKind::Orders);
        assert_eq!(LogicKind::Orders.to_string(), "orders");
        let err = "ordres".parse::<LogicKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "[pipeline] logic: unknown logic \"ordres\"; expected one of orders"
        );
        assert_eq!(err.kind(), kappa_core::ErrorKind::User);
    }

    #[test]
    fn build_uses_the_options() {
        let logic = build(LogicKind::Orders, &LogicOptions { dedup_window: 7 });
        assert_eq!(logic.dedup_window(), 7);
        assert_eq!(
            build(LogicKind::Orders, &LogicOptions::default()).dedup_window(),
            DEFAULT_DEDUP_WINDOW
        );
    }
}
