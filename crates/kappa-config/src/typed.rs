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
    /// S3 settings (unset ones come from `AWS_*` env at run time).
    pub s3: S3Section,
}

impl fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("url", &kappa_core::redact::redact(self.url.as_str()))
            .field("topic", &self.topic)
            .field("format", &self.format)
            .field("s3", &Redacted(&self.s3))
            .finish()
    }
}

/// `[source.kafka] start`: where a partition the table holds nothing of starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaStart {
    /// The oldest offset the broker still has (nothing retained is skipped).
    #[default]
    Earliest,
    /// The end of the partition at the time it is first read.
    Latest,
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
    /// How long to wait at start for the brokers and the topic.
    pub startup_timeout: Duration,
    /// Extra librdkafka settings (secret values redacted in `Debug`).
    pub properties: KafkaProperties,
}
