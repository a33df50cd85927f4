//! `kappa-source-replay`: a topic's history, as a Kafka Connect S3 sink archived it, replayed as
//! the same [`SourceBatch`](kappa_core::SourceBatch)es live Kafka would give.
//!
//! ```text
//! object_store (file:// | s3:// | memory) ──list──► plan: files per partition, by start offset
//!     ──► one task per partition (≤ parallelism): up to fetch_concurrency objects fetched ahead
//!         (shared by the tasks, within fetch_buffer_bytes), decoded in order
//!     ──► OCF decode (value records | raw wire-format bytes | envelopes), small files' batches
//!         merged up to batch_rows ──► bounded channel
//! ```
//!
//! Each decoded file is reported as a `kappa_metrics::events::source::Read` (its records past
//! the start position, and its bytes as fetched), the replay's progress per partition.
//!
//! Memory is bounded by `fetch_buffer_bytes + parallelism × (file size + one inflated block +
//! decoded file + 2 × batch_rows rows)`: fetched objects wait within the shared buffer (an object
//! larger than it is fetched alone), each partition task holds the file it decodes, the block it
//! inflates, the decoded batches of one file and the batch it is merging, and the channel holds
//! one batch per task. [`ArchiveLimits`] caps each term whatever an object's bytes say: the file
//! size (`max_object_bytes`), the block (`max_block_bytes`) and everything a file inflates to
//! (`max_inflated_bytes`); an object over a limit fails the replay naming it.
//!
//! The offset rule lives in [`archive::decode`]: a record's offset is its file's start offset plus
//! its index (or the envelope's own offset), and the last batch of a file ends at the next file's
//! start offset, so the position after a whole file is never below the next file's start.

pub mod archive;
mod error;
mod source;
pub mod store;

pub use archive::decode::ArchiveLimits;
pub use archive::listing::{ArchiveFile, ArchivePlan, PartitionFilter, TimeWindow};
pub use error::ReplayError;
pub use source::{ArchiveSource, ReplayOptions};
pub use store::{S3Options, open_store};
