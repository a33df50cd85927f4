//! The idempotent commit protocol (DESIGN.md steps 1–5 for the append path).
//!
//! [`protocol`] is pure: `decide(base, input)` and the deterministic commit id. [`Committer`]
//! does the I/O around it: write the data files once, append them on a pinned base, and on a
//! conflict or an unknown outcome reload the table, look for the commit id in `main`'s ancestry,
//! re-decide and retry.

mod committer;
pub(crate) use committer::table_name;
pub(crate) mod pinned;
pub mod protocol;

pub use committer::{CommitOutcome, Committer, FirstCommit, PendingCommit};
