//! The validated, typed pieces of a [`crate::PipelineConfig`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kappa_core::redact::Redacted;
use url::Url;

use crate::raw::{KafkaProperties, S3Section, Secret};

/// Where schemas come from: `[schema] dir` or `[schema] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSource {
    /// Embedded file registry: `<dir>/<subject>/<version>.avsc`.
    Dir(String),
    /// A Confluent-compatible registry and how to reach it.
    Url(RegistryConfig),
}

/// A validated Confluent registry client: `[schema] url` and its connection keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URL, `http(s)://` (user info in it is basic auth; redacted in `Debug`).
    pub url: String,
    /// Basic-auth user (set together with `password`, never with user info in `url`).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// PEM file of extra CA certificates (read when the client is built; `https://` only).
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per request (retries = attempts − 1).
    pub max_attempts: u32,
    /// Largest answer read, in bytes.
    pub max_response_bytes: u64,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &kappa_core::redact::redact(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// `[catalog] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// SQL catalog: SQLite or PostgreSQL (`uri`), with a `warehouse` URL.
    Sql,
    /// Iceberg REST catalog at `uri`.
    Rest,
    /// AWS Glue (the AWS SDK; `uri`, if set, overrides its endpoint).
    Glue,
    /// AWS S3 Tables: `warehouse` is the table bucket's ARN (`uri`, if set, overrides the
    /// endpoint).
    S3Tables,
}

/// `[source.archive] format`: the record shape of the archive's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// Detect per file from the OCF writer schema.
    #[default]
    Auto,
    /// Value records (Kafka Connect `AvroConverter`).
    Value,
    /// Raw message bytes in the Confluent wire format (`ByteArrayConverter`).
    Bytes,
    /// Full-record envelopes with topic, partition, offset, timestamp, key and value.
    Envelope,
}

/// A validated `[source.archive]` (credentials in the URL are redacted in `Debug`).
#[derive(Clone, PartialEq)]
pub struct ArchiveConfig {
    /// `file://`, `s3://` or `memory://` URL of the archive root.
    pub url: Url,
    /// Topic: the directory and file prefix in the archive.
    pub topic: String,
    /// Record shape.
    pub format: ArchiveFormat,
    /// What one archive object may cost in memory.
    pub limits: ArchiveLimitsConfig,
    /// S3 settings (unset ones come from `AWS_*` env at run time).
    pub s3: S3Section,
}

/// `[source.archive]` `max_object_bytes`, `max_block_bytes`, `max_inflated_bytes`: how large an
/// archive object, one of its OCF blocks inflated, and all its blocks inflated may be. An object
/// over a limit fails the replay naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimitsConfig {
    /// Bytes of one object as stored.
    pub max_object_bytes: u64,
    /// Bytes one block may inflate to.
    pub max_block_bytes: u64,
    /// Bytes all blocks of one object may inflate to together.
    pub max_inflated_bytes: u64,
}

impl Default for ArchiveLimitsConfig {
    /// 128 MiB, 16 MiB, 512 MiB (docs/configuration.md).
    fn default() -> Self {
        Self {
            max_object_bytes: 128 << 20,
            max_block_bytes: 16 << 20,
            max_inflated_bytes: 512 << 20,
        }
    }
}

impl fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("url", &kappa_core::redact::redact(self.url.as_str()))
            .field("topic", &self.topic)
            .field("format", &self.format)
            .field("limits", &self.limits)
            .field("s3", &Redacted(&self.s3))
            .finish()
    }
}

/// `[source.kafka] start`: where a partition the table holds nothing of starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaStart {
    /// Offset 0: the partition's whole history. A partition whose log no longer starts at 0
    /// (retention deleted its head, compaction removed it) is refused: replay the archive first.
    #[default]
    Earliest,
    /// The oldest offset the broker still has; the offsets before it are recorded in the table
    /// as skipped (`kappa.skipped`), not as ingested.
    EarliestAvailable,
    /// The end of the partition at the time it is first read; the offsets before it are
    /// recorded as skipped.
    Latest,
}

/// `[source.kafka] assignment`: how this replica gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAssignment {
    /// Shard `index` of `count`: the partitions `p` with `p % count == index`, assigned directly
    /// with no consumer group membership. A restart reads again at once: nothing waits for a
    /// dead member's session to time out. Replicas need distinct shards (the Helm chart gives
    /// each StatefulSet pod its ordinal).
    Shard {
        /// This shard (0-based).
        index: u32,
        /// Number of shards.
        count: u32,
    },
    /// The consumer group assigns partitions and rebalances them as members come and go. A
    /// crashed member's partitions wait for `session.timeout.ms` before another reads them.
    Group,
}

impl Default for KafkaAssignment {
    fn default() -> Self {
        KafkaAssignment::Shard { index: 0, count: 1 }
    }
}

impl KafkaAssignment {
    /// Whether this replica reads `partition`.
    pub fn reads(&self, partition: i32) -> bool {
        match self {
            KafkaAssignment::Shard { index, count } => {
                *count > 0 && partition.rem_euclid(*count as i32) == *index as i32
            }
            KafkaAssignment::Group => true,
        }
    }
}

/// `[event_time] late_policy`: what happens to a row that arrives behind its partition's newest
/// event time by more than the allowed lateness. Never dropped either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Append it to the main table like any row, and count it (`kappa.late-records`).
    #[default]
    Append,
    /// Write it to the late table (`[table] late_name`) instead, and count it.
    LateTable,
}

/// A validated `[source.kafka]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Brokers, comma-separated `host:port`.
    pub bootstrap_servers: String,
    /// Topic.
    pub topic: String,
    /// Consumer group (lag monitoring only; positions come from the table).
    pub group_id: String,
    /// Where partitions the table holds nothing of start.
    pub start: KafkaStart,
    /// How this replica gets its partitions.
    pub assignment: KafkaAssignment,
    /// How long to wait at start for the brokers and the topic.
    pub startup_timeout: Duration,
    /// Extra librdkafka settings (secret values redacted in `Debug`).
    pub properties: KafkaProperties,
}
