//! Writes a history as a Kafka Connect S3 sink would archive it.
//!
//! Layouts: `<prefix>/<topic>/partition=<p>/<topic>+<p>+<startOffset>.avro` (the default
//! partitioner) or `<prefix>/<topic>/year=YYYY/month=MM/day=dd/hour=HH/<topic>+<p>+<startOffset>.avro`
//! (TimeBasedPartitioner, record timestamps: a new file starts when the hour changes). Start offsets
//! are zero-padded to 10 digits as Kafka Connect writes them. Files hold `flush_size` records.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use apache_avro::{Schema, Writer};
use chrono::{DateTime, Datelike, Timelike};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::history::{Expected, History, Message, MessageKind, SynthError, Tally};

/// Object layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `partition=<p>/` directories.
    Default,
    /// `year=/month=/day=/hour=/` directories from the record timestamp.
    Hourly,
}

/// What each OCF record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordShape {
    /// The value record itself (AvroConverter). Undecodable messages cannot be archived.
    Value,
    /// Schema `"bytes"`: the raw message value (ByteArrayConverter).
    RawBytes,
    /// A full-record envelope with its own coordinates.
    Envelope,
}

/// OCF block codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Uncompressed.
    Null,
    /// Deflate.
    Deflate,
    /// Snappy.
    Snappy,
    /// Zstandard.
    Zstd,
}

impl Codec {
    fn avro(self) -> apache_avro::Codec {
        match self {
            Codec::Null => apache_avro::Codec::Null,
            Codec::Deflate => apache_avro::Codec::Deflate(Default::default()),
            Codec::Snappy => apache_avro::Codec::Snappy,
            Codec::Zstd => apache_avro::Codec::Zstandard(Default::default()),
        }
    }
}

/// How to archive.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Object layout.
    pub layout: Layout,
    /// Record shape.
    pub shape: RecordShape,
    /// Block codec.
    pub codec: Codec,
    /// Records per file.
    pub flush_size: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            layout: Layout::Default,
            shape: RecordShape::RawBytes,
            codec: Codec::Snappy,
            flush_size: 50_000,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSummary {
    /// Objects written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// What the table must hold after replaying this archive.
    pub expected: Expected,
}

/// The writer schema of full-record envelope archives (topic, partition, offset, timestamp, key,
/// value), as the archives this crate writes use it.
pub const ENVELOPE_SCHEMA: &str = r#"{"type":"record","name":"KafkaRecord","namespace":"kappa.archive","fields":[
  {"name":"topic","type":"string"},
  {"name":"partition","type":"int"},
  {"name":"offset","type":"long"},
  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"key","type":["null","bytes"],"default":null},
  {"name":"value","type":["null","bytes"],"default":null}]}"#;

/// The object key of a file.
pub fn object_key(
    prefix: &Path,
    topic: &str,
    layout: Layout,
    partition: i32,
    start: i64,
    timestamp_ms: i64,
) -> Path {
    let file = format!("{topic}+{partition}+{start:010}.avro");
    let dir = match layout {
        Layout::Default => format!("{topic}/partition={partition}"),
        Layout::Hourly => {
            let t = DateTime::from_timestamp_millis(timestamp_ms).unwrap_or_default();
            format!(
                "{topic}/year={:04}/month={:02}/day={:02}/hour={:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour()
            )
        }
    };
    let mut path = prefix.clone();
    for part in dir.split('/').chain(std::iter::once(file.as_str())) {
        path = path.clone().join(part);
    }
    path
}

struct OpenFile {
    start: i64,
    hour: i64,
    v2: bool,
    first_ts: i64,
    records: Vec<Value>,
}

/// Writes `history` under `prefix` and returns what a replay must produce.
pub async fn write_archive(
    store: &dyn ObjectStore,
    prefix: &Path,
    history: History,
    options: &ArchiveOptions,
) -> Result<ArchiveSummary, SynthError> {
    let topic = history.spec().topic.clone();
    let partitions = history.spec().partitions;
    write_messages(store, prefix, &topic, partitions, history, options).await
}

/// Writes `messages` of `topic` (with `partitions` partitions) under `prefix`, as a Kafka Connect
/// S3 sink would have archived them, and returns what a replay must produce. For archives of a
/// part of a history (the rest produced to Kafka).
pub async fn write_messages(
    store: &dyn ObjectStore,
    prefix: &Path,
    topic: &str,
    partitions: i32,
    messages: impl IntoIterator<Item = Message>,
    options: &ArchiveOptions,
) -> Result<ArchiveSummary, SynthError> {
    let topic = topic.to_string();
    let v1 = Schema::parse_str(crate::ORDERS_V1).map_err(|e| SynthError::Schema(e.to_string()))?;
    let v2 = Schema::parse_str(crate::ORDERS_V2).map_err(|e| SynthError::Schema(e.to_string()))?;
    let bytes_schema = Schema::Bytes;
    let envelope =
        Schema::parse_str(ENVELOPE_SCHEMA).map_err(|e| SynthError::Schema(e.to_string()))?;
    let mut open: BTreeMap<i32, OpenFile> = BTreeMap::new();
    let mut summary = ArchiveSummary::default();
    let mut tally = Tally::default();
    let mut next_offsets = vec![0i64; partitions.max(1) as usize];

    let schema_for = |file: &OpenFile| -> &Schema {
        match options.shape {
            RecordShape::Value if file.v2 => &v2,
            RecordShape::Value => &v1,
            RecordShape::RawBytes => &bytes_schema,
            RecordShape::Envelope => &envelope,
        }
    };

    for message in messages {
        if options.shape == RecordShape::Value && message.kind == MessageKind::Garbage {
            continue;
        }
        let v2_message = message.event.as_ref().is_some_and(|e| e.v2);
        let hour = message.timestamp_ms.div_euclid(3_600_000);
        let roll = open.get(&message.partition).is_some_and(|f| {
            f.records.len() >= options.flush_size
                || (options.layout == Layout::Hourly && f.hour != hour)
                || (options.shape == RecordShape::Value && f.v2 != v2_message)
        });
        if roll && let Some(file) = open.remove(&message.partition) {
            flush(
                store,
                prefix,
                &topic,
                options,
                message.partition,
                file,
                schema_for,
                &mut summary,
            )
            .await?;
        }
        tally.add(&message);
        next_offsets[message.partition as usize] = message.offset + 1;
        let file = open.entry(message.partition).or_insert_with(|| OpenFile {
            start: message.offset,
            hour,
            v2: v2_message,
            first_ts: message.timestamp_ms,
            records: Vec::new(),
        });
        file.records.push(record(&topic, &message, options.shape));
    }
    for (partition, file) in std::mem::take(&mut open) {
        flush(
            store,
            prefix,
            &topic,
            options,
            partition,
            file,
            schema_for,
            &mut summary,
        )
        .await?;
    }
    summary.expected = tally.finish();
    summary.expected.next_offsets = next_offsets;
    Ok(summary)
}

fn record(topic: &str, message: &Message, shape: RecordShape) -> Value {
    match shape {
        RecordShape::Value => message
            .event
            .as_ref()
            .map(|e| e.to_avro())
            .unwrap_or(Value::Null),
        RecordShape::RawBytes => Value::Bytes(message.value.clone()),
        RecordShape::Envelope => Value::Record(vec![
            ("topic".into(), Value::String(topic.to_string())),
            ("partition".into(), Value::Int(message.partition)),
            ("offset".into(), Value::Long(message.offset)),
            (
                "timestamp".into(),
                Value::TimestampMillis(message.timestamp_ms),
            ),
            (
                "key".into(),
                Value::Union(1, Box::new(Value::Bytes(message.key.clone()))),
            ),
            (
                "value".into(),
                Value::Union(1, Box::new(Value::Bytes(message.value.clone()))),
            ),
        ]),
    }
}

#[allow(clippy::too_many_arguments)]
async fn flush<'s>(
    store: &dyn ObjectStore,
    prefix: &Path,
    topic: &str,
    options: &ArchiveOptions,
    partition: i32,
    file: OpenFile,
    schema_for: impl Fn(&OpenFile) -> &'s Schema,
    summary: &mut ArchiveSummary,
) -> Result<(), SynthError> {
    let key = object_key(
        prefix,
        topic,
        options.layout,
        partition,
        file.start,
        file.first_ts,
    );
    let schema = schema_for(&file);
    let mut writer = Writer::with_codec(schema, Vec::new(), options.codec.avro());
    let encode = |e: apache_avro::Error| SynthError::Encode {
        what: key.to_string(),
        message: e.to_string(),
    };
    for record in &file.records {
        writer.append_value_ref(record).map_err(encode)?;
    }
    let bytes = writer.into_inner().map_err(encode)?;
    summary.files += 1;
    summary.bytes += bytes.len() as u64;
    store
        .put(&key, bytes.into())
        .await
        .map_err(|e| SynthError::Store {
            key: key.to_string(),
            message: e.to_string(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::history::HistorySpec;

    async fn write(spec: HistorySpec, options: ArchiveOptions) -> (InMemory, ArchiveSummary) {
        let store = InMemory::new();
        let summary = write_archive(
            &store,
            &Path::from("archive"),
            History::new(spec).unwrap(),
            &options,
        )
        .await
        .unwrap();
        (store, summary)
    }

    #[tokio::test]
    async fn counts_add_up_and_generation_is_deterministic() {
        let spec = HistorySpec::new(20_000);
        let (_, a) = write(spec.clone(), ArchiveOptions::default()).await;
        let (_, b) = write(spec, ArchiveOptions::default()).await;
        let e = &a.expected;
        assert_eq!(e, &b.expected);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(
            e.messages,
            e.rows + e.duplicates + e.undecodable + e.rejected
        );
        assert_eq!(
            e.rows + e.rejected,
            20_000,
            "every event is either a row or rejected"
        );
        assert!(
            e.duplicates > 5 && e.undecodable > 5 && e.rejected >= 1,
            "{e:?}"
        );
        assert_eq!(e.next_offsets.iter().sum::<i64>() as u64, e.messages);
    }

    #[tokio::test]
    async fn value_archives_cannot_hold_undecodable_messages() {
        let options = ArchiveOptions {
            shape: RecordShape::Value,
            ..Default::default()
        };
        let (_, s) = write(HistorySpec::new(20_000), options).await;
        assert_eq!(s.expected.undecodable, 0);
    }

    #[tokio::test]
    async fn files_follow_the_kafka_connect_layouts_and_read_back() {
        let options = ArchiveOptions {
            layout: Layout::Hourly,
            codec: Codec::Zstd,
            flush_size: 1000,
            ..Default::default()
        };
        let (store, summary) = write(HistorySpec::new(3_000), options).await;
        use futures::TryStreamExt;
        let objects: Vec<_> = store
            .list(Some(&Path::from("archive")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(objects.len() as u64, summary.files);
        let key = objects[0].location.to_string();
        assert!(
            key.starts_with("archive/orders/year=2026/month=11/day=01/hour="),
            "{key}"
        );
        assert!(key.ends_with(".avro") && key.contains("orders+"), "{key}");
        let bytes = store
            .get(&objects[0].location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
        assert!(reader.count() > 0);
    }

    #[test]
    fn keys_are_zero_padded() {
        let key = object_key(&Path::from("p"), "orders", Layout::Default, 2, 1234, 0);
        assert_eq!(
            key.to_string(),
            "p/orders/partition=2/orders+2+0000001234.avro"
        );
    }
}
