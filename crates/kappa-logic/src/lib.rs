//! `kappa-logic`: business logic as pure functions over Arrow batches.
//!
//! In the data flow it runs after decoding and before the quality gates and the committer, the
//! same code for live Kafka and for archive replay. Logic is deterministic: the same sequence of
//! records gives the same output however it is split into batches, with no wall clock and no I/O.
//!
//! Registration is one explicit `match` on [`LogicKind`]; the `orders` domain is the worked example.

mod dedup;
mod error;
pub mod orders;

use std::str::FromStr;

pub use dedup::DedupWindow;
pub use error::LogicError;
pub use orders::OrdersLogic;

/// The business logics Kappa ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicKind {
    /// The `orders` domain: upper-case currency, reject negative amounts, drop duplicate ids.
    Orders,
}

impl LogicKind {
    /// Every known logic name.
    pub const NAMES: &'static [&'static str] = &["orders"];
}

impl FromStr for LogicKind {
    type Err = LogicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "orders" => Ok(LogicKind::Orders),
            other => Err(LogicError::UnknownLogic {
                name: other.to_string(),
                known: LogicKind::NAMES.join(", "),
            }),
        }
    }
}
