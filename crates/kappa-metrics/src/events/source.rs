//! What a source read, and how far behind the broker it is (topic-partition labels).

use crate::catalog;
use crate::recorder::{counter_add, gauge_set, histogram_record};

/// A batch of records read from one topic-partition: a poll's records from Kafka, or one archive
/// file on replay.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// Records in the batch (dead letters included).
    pub records: u64,
    /// Bytes read: the records' values from Kafka; the archive file as fetched on replay.
    pub bytes: u64,
}

impl Read<'_> {
    /// Counts the batch and logs it (debug).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        let labels = [self.topic, partition.as_str()];
        counter_add(&catalog::SOURCE_RECORDS_READ, &labels, self.records);
        counter_add(&catalog::SOURCE_BYTES_READ, &labels, self.bytes);
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            records = self.records,
            bytes = self.bytes,
            "source batch read"
        );
    }
}

/// The consumer's lag on one partition: broker high watermark minus the next offset to read.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLag<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// Records behind (negative values, from a stale watermark, count as 0).
    pub lag: i64,
}

impl ConsumerLag<'_> {
    /// Sets the lag gauge and logs it (debug).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        gauge_set(
            &catalog::SOURCE_CONSUMER_LAG,
            &[self.topic, partition.as_str()],
            self.lag.max(0) as f64,
        );
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            lag = self.lag,
            "consumer lag"
        );
    }
}

/// A partition left this replica (rebalance, shutdown): its lag is another replica's to report.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRevoked<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

impl PartitionRevoked<'_> {
    /// Sets the partition's lag gauge to 0 (a series cannot be removed) and logs it (info).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        gauge_set(
            &catalog::SOURCE_CONSUMER_LAG,
            &[self.topic, partition.as_str()],
            0.0,
        );
        tracing::info!(
            topic = self.topic,
            partition = self.partition,
            "partition revoked from this replica"
        );
    }
}

/// A partition this replica stopped reading: the table's next offset is outside what the topic
/// holds. Nothing more is read from it until an operator decides.
#[derive(Debug, Clone, Copy)]
pub struct PartitionStopped<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// Why, naming the offsets.
    pub reason: &'a str,
}

impl PartitionStopped<'_> {
    /// Sets the stopped gauge to 1 and logs it (error).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        gauge_set(
            &catalog::SOURCE_PARTITION_STOPPED,
            &[self.topic, partition.as_str()],
            1.0,
        );
        tracing::error!(
            topic = self.topic,
            partition = self.partition,
            reason = self.reason,
            "partition stopped: nothing is read from it until an operator decides (docs/runbooks.md, \"A partition is stopped\")"
        );
    }
}

/// A stopped partition is read again (a new assignment found its offset inside the topic).
#[derive(Debug, Clone, Copy)]
pub struct PartitionResumed<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

impl PartitionResumed<'_> {
    /// Sets the stopped gauge to 0 and logs it (info).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        gauge_set(
            &catalog::SOURCE_PARTITION_STOPPED,
            &[self.topic, partition.as_str()],
            0.0,
        );
        tracing::info!(
            topic = self.topic,
            partition = self.partition,
            "partition no longer stopped"
        );
    }
}

/// Offsets of a partition the broker delivered no record for, between two records read.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsAbsent<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// First absent offset.
    pub from: i64,
    /// The offset of the next record delivered.
    pub to: i64,
}

impl OffsetsAbsent<'_> {
    /// Counts the absent offsets and logs them (debug: every transaction leaves one marker).
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        counter_add(
            &catalog::SOURCE_OFFSETS_ABSENT,
            &[self.topic, partition.as_str()],
            (self.to - self.from).max(0) as u64,
        );
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            from = self.from,
            to = self.to,
            "offsets without a record (transaction markers, aborted or compacted records)"
        );
    }
}

/// A replay's reader waited for the archive object it needed next (once per run of files
/// decoded together; zero when the object had arrived).
#[derive(Debug, Clone, Copy)]
pub struct ArchiveWait<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// Time spent waiting.
    pub waited: std::time::Duration,
}

impl ArchiveWait<'_> {
    /// Records the wait.
    pub fn emit(&self) {
        let partition = self.partition.to_string();
        histogram_record(
            &catalog::SOURCE_ARCHIVE_WAIT,
            &[self.topic, partition.as_str()],
            self.waited.as_secs_f64(),
        );
    }
}
