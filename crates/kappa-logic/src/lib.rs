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
//! into batches, with no wall clock and no I/O.
//!
//! `[pipeline] logic` names a logic of the [`Registry`] (see [`registry`]): [`identity`] ingests
//! any subject as it is, [`orders`] is the `orders` contract, a thin specialization over the same
//! parts ([`Dedup`] and the registry's defaults). `docs/logic.md` shows how to write one.

mod columns;
mod dedup;
mod error;
pub mod identity;
pub mod orders;
pub mod registry;

pub use dedup::{Dedup, DedupWindow, KEY_TYPES};
pub use error::LogicError;
pub use identity::IdentityLogic;
pub use orders::OrdersLogic;
pub use registry::{
    BoxedLogic, LogicDefaults, LogicEntry, LogicOptions, LogicSettings, OptionDoc, OptionValue,
    Registry,
};

/// Default dedup window: offsets per partition within which a repeated key is dropped.
pub const DEFAULT_DEDUP_WINDOW: i64 = 100_000;

/// The logics Kappa ships, in the order `kappa` lists them. A logic of this crate is its module
/// and its line here; one from elsewhere is added with [`Registry::register`].
const BUILTIN: &[LogicEntry] = &[identity::ENTRY, orders::ENTRY];

#[cfg(test)]
mod tests {
    use kappa_core::{Classify, Logic};

    use super::*;

    #[test]
    fn logic_names_resolve_and_unknown_ones_list_the_known() {
        let registry = Registry::builtin();
        assert_eq!(registry.names(), ["identity", "orders"]);
        assert_eq!(registry.get(" orders ").unwrap().name, "orders");
        let err = registry.get("ordres").unwrap_err();
        assert_eq!(
            err.to_string(),
            "[pipeline] logic: unknown logic \"ordres\"; expected one of identity|orders"
        );
        assert_eq!(err.kind(), kappa_core::ErrorKind::User);
    }

    #[test]
    fn a_name_registers_once() {
        let err = Registry::builtin().with(orders::ENTRY).unwrap_err();
        assert_eq!(err.to_string(), "logic \"orders\" is registered twice");
    }

    #[test]
    fn factories_build_the_named_logic_with_the_settings() {
        let registry = Registry::builtin();
        for name in registry.names() {
            let entry = registry.get(name).unwrap();
            let settings = LogicSettings {
                dedup_key: entry.defaults.dedup_key.map(str::to_string),
                dedup_window: 7,
                event_time_column: "event_time".into(),
                options: LogicOptions::empty(entry),
            };
            assert_eq!(entry.build(&settings).unwrap().name(), name);
        }
    }

    #[test]
    fn options_a_logic_does_not_declare_are_refused_naming_the_key() {
        let values = [("color".to_string(), OptionValue::Text("red".into()))].into();
        let err = LogicOptions::new(&orders::ENTRY, values).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[logic.orders] color: unknown key; expected none: logic \"orders\" takes no options"
        );
        assert_eq!(err.kind(), kappa_core::ErrorKind::User);
    }

    #[test]
    fn typed_option_getters_name_the_key_and_the_expected_type() {
        const ENTRY: LogicEntry = LogicEntry {
            name: "fx",
            about: "test",
            defaults: LogicDefaults::NONE,
            options: &[OptionDoc {
                key: "rate",
                about: "a number",
            }],
            build: |_| unreachable!("not built"),
        };
        let options =
            LogicOptions::new(&ENTRY, [("rate".to_string(), OptionValue::Int(2))].into()).unwrap();
        assert_eq!(options.float("rate", 1.0).unwrap(), 2.0);
        assert_eq!(options.float("other", 1.5).unwrap(), 1.5);
        let err = options.text("rate", "x").unwrap_err();
        assert_eq!(err.to_string(), "[logic.fx] rate: 2: expected a string");
    }
}
