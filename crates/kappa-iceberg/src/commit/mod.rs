//! The idempotent commit protocol for the append path (`docs/design.md`, "The commit protocol";
//! `docs/exactly-once.md` has it in full).
//!
//! [`protocol`] is pure: `decide(base, input)` and the deterministic commit id. [`Committer`]
//! does the I/O around it: write the data files once, append them on a pinned base, and on a
//! conflict or an unknown outcome reload the table, look for the commit id in `main`'s ancestry,
//! re-decide and retry.

mod committer;
pub(crate) use committer::table_name;
pub(crate) mod pinned;
pub mod protocol;

pub use committer::{
    CommitOutcome, Committer, DEFAULT_CONFLICT_TIMEOUT, FirstCommit, PendingCommit,
};
