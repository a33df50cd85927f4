//! A `payments` topic no Kappa code knows: its schema, a deterministic history with redelivered
//! duplicates, the Kafka Connect archive and the Kafka messages of that history, and the rows a
//! table must hold, in the canonical form `python/dump_rows.py` prints.
//!
//! The value schema has a decimal amount, a timestamp-micros event time, an array of strings, a
//! boolean, a nullable string and a nested record. Expectations come from the generated values
//! alone, never from Kappa.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use apache_avro::{Codec, DeflateSettings, Schema, Writer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

/// The subject's only version.
pub const SCHEMA: &str = r#"{"type": "record", "name": "Payment", "namespace": "com.example.payments",
 "fields": [
  {"name": "payment_id", "type": "string"},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
  {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
  {"name": "tags", "type": {"type": "array", "items": "string"}},
  {"name": "captured", "type": "boolean"},
  {"name": "note", "type": ["null", "string"], "default": null},
  {"name": "payer", "type": {"type": "record", "name": "Payer", "fields": [
     {"name": "id", "type": "long"},
     {"name": "country", "type": "string"}]}}
 ]}"#;

/// 2026-11-28T00:00:00Z in µs.
const START_MICROS: i64 = 1_795_824_000_000_000;

/// One payment as produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub payment_id: String,
    /// Unscaled amount: cents.
    pub amount_cents: i64,
    pub paid_at_micros: i64,
    pub tags: Vec<String>,
    pub captured: bool,
    pub note: Option<String>,
    pub payer_id: i64,
    pub payer_country: String,
}

/// One message of the topic.
#[derive(Debug, Clone)]
pub struct PaymentMessage {
    pub partition: i32,
    pub offset: i64,
    pub payment: Payment,
    /// A redelivery of an earlier message of the same partition (same payment).
    pub duplicate: bool,
}

/// `count` messages over `partitions` partitions, every 25th a redelivery of the message three
/// offsets before it in the same partition.
pub fn history(count: usize, partitions: i32) -> Vec<PaymentMessage> {
    let mut next = vec![0i64; partitions as usize];
    let mut recent: Vec<Vec<Payment>> = vec![Vec::new(); partitions as usize];
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        let partition = (i as i32 * 7 + 3) % partitions;
        let slot = partition as usize;
        let redelivery = i % 25 == 24 && recent[slot].len() >= 3;
        let payment = if redelivery {
            recent[slot][recent[slot].len() - 3].clone()
        } else {
            payment(i)
        };
        let offset = next[slot];
        next[slot] += 1;
        recent[slot].push(payment.clone());
        messages.push(PaymentMessage {
            partition,
            offset,
            payment,
            duplicate: redelivery,
        });
    }
    messages
}

fn payment(i: usize) -> Payment {
    const TAGS: [&str; 5] = ["card", "sepa", "recurring", "vip", "étranger"];
    const COUNTRIES: [&str; 4] = ["DE", "FR", "US", "JP"];
    let n = i as i64;
    // Refunds (negative), zero, cents below a unit, and amounts near the precision's limit.
    let amount_cents = match i % 10 {
        0 => -(n * 37 % 5_000) - 1,
        1 => 0,
        2 => n % 100,
        3 => 999_999_999_999 - n,
        _ => n * 12_345 % 10_000_000,
    };
    Payment {
        payment_id: format!("pay-{i:06}"),
        amount_cents,
        paid_at_micros: START_MICROS + n * 97_000_123,
        tags: (0..i % 4)
            .map(|k| TAGS[(i + k) % TAGS.len()].to_string())
            .collect(),
        captured: !i.is_multiple_of(3),
        note: (!i.is_multiple_of(4)).then(|| format!("note {i}: ünïcödé")),
        payer_id: n * 7 % 1_000,
        payer_country: COUNTRIES[i % COUNTRIES.len()].to_string(),
    }
}

/// Big-endian two's complement, as Avro's decimal carries the unscaled value.
fn unscaled_bytes(value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

impl Payment {
    /// The Avro value.
    pub fn to_avro(&self) -> Avro {
        Avro::Record(vec![
            ("payment_id".into(), Avro::String(self.payment_id.clone())),
            (
                "amount".into(),
                Avro::Decimal(apache_avro::Decimal::from(unscaled_bytes(
                    self.amount_cents,
                ))),
            ),
            ("paid_at".into(), Avro::TimestampMicros(self.paid_at_micros)),
            (
                "tags".into(),
                Avro::Array(self.tags.iter().map(|t| Avro::String(t.clone())).collect()),
            ),
            ("captured".into(), Avro::Boolean(self.captured)),
            (
                "note".into(),
                match &self.note {
                    None => Avro::Union(0, Box::new(Avro::Null)),
                    Some(note) => Avro::Union(1, Box::new(Avro::String(note.clone()))),
                },
            ),
            (
                "payer".into(),
                Avro::Record(vec![
                    ("id".into(), Avro::Long(self.payer_id)),
                    ("country".into(), Avro::String(self.payer_country.clone())),
                ]),
            ),
        ])
    }

    /// The Kafka record timestamp it is produced with: its payment time, in ms.
    pub fn timestamp_ms(&self) -> i64 {
        self.paid_at_micros.div_euclid(1_000)
    }

    /// The Kafka headers it is produced with: none for every third payment, else a `source` and
    /// one or two `trace` headers (a repeated key), the last without a value for every fifth.
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let n: u64 = self.payment_id[4..].parse().unwrap_or(0);
        if n.is_multiple_of(3) {
            return Vec::new();
        }
        let mut headers = vec![
            (
                "source".to_string(),
                Some(format!("pos-{}", n % 7).into_bytes()),
            ),
            (
                "trace".to_string(),
                Some(self.payment_id.clone().into_bytes()),
            ),
        ];
        if n.is_multiple_of(2) {
            headers.push((
                "trace".to_string(),
                (!n.is_multiple_of(5)).then(|| b"second".to_vec()),
            ));
        }
        headers
    }

    /// The Kafka metadata columns as `dump_rows.py` prints them (bytes as hex); `headers`
    /// `None` when the source cannot know them (NULL).
    pub fn canonical_metadata(&self, headers: bool) -> BTreeMap<String, Value> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let listed: Vec<Value> = self
            .headers()
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v.as_deref().map(hex)}))
            .collect();
        BTreeMap::from([
            ("_kafka_key".into(), json!(hex(self.payment_id.as_bytes()))),
            (
                "_kafka_timestamp".into(),
                json!(self.timestamp_ms() * 1_000),
            ),
            (
                "_kafka_headers".into(),
                if headers { json!(listed) } else { Value::Null },
            ),
        ])
    }

    /// The amount as its decimal string with two digits of scale.
    pub fn amount(&self) -> String {
        let sign = if self.amount_cents < 0 { "-" } else { "" };
        let cents = self.amount_cents.unsigned_abs();
        format!("{sign}{}.{:02}", cents / 100, cents % 100)
    }

    /// The value columns as `dump_rows.py` prints them.
    pub fn canonical(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("payment_id".into(), json!(self.payment_id)),
            ("amount".into(), json!(self.amount())),
            ("paid_at".into(), json!(self.paid_at_micros)),
            ("tags".into(), json!(self.tags)),
            ("captured".into(), json!(self.captured)),
            ("note".into(), json!(self.note)),
            (
                "payer".into(),
                json!({"id": self.payer_id, "country": self.payer_country}),
            ),
        ])
    }
}

/// The schema, parsed.
pub fn schema() -> Schema {
    Schema::parse_str(SCHEMA).unwrap()
}

/// Writes the schema directory a `[schema] dir` reads: `<dir>/<subject>/1.avsc`.
pub fn write_schema_dir(dir: &Path, subject: &str) {
    std::fs::create_dir_all(dir.join(subject)).unwrap();
    std::fs::write(dir.join(subject).join("1.avsc"), SCHEMA).unwrap();
}

/// Writes `messages` as Kafka Connect's S3 sink with `AvroFormat` does (value records, deflate,
/// `flush_size` records per file) under `<archive>/<topic>/partition=<p>/`.
pub fn write_archive(archive: &Path, topic: &str, messages: &[PaymentMessage], flush_size: usize) {
    let schema = schema();
    let mut by_partition: BTreeMap<i32, Vec<&PaymentMessage>> = BTreeMap::new();
    for m in messages {
        by_partition.entry(m.partition).or_default().push(m);
    }
    for (partition, messages) in by_partition {
        let dir = archive.join(topic).join(format!("partition={partition}"));
        std::fs::create_dir_all(&dir).unwrap();
        for chunk in messages.chunks(flush_size) {
            let start = chunk[0].offset;
            let mut writer = Writer::with_codec(
                &schema,
                Vec::new(),
                Codec::Deflate(DeflateSettings::default()),
            );
            for m in chunk {
                writer.append(m.payment.to_avro()).unwrap();
            }
            let bytes = writer.into_inner().unwrap();
            std::fs::write(
                dir.join(format!("{topic}+{partition}+{start:010}.avro")),
                bytes,
            )
            .unwrap();
        }
    }
}

/// The Confluent wire format of `payment`: magic byte, the schema's content-derived id (as the
/// directory registry assigns it), the Avro datum.
pub fn wire(payment: &Payment) -> Vec<u8> {
    let schema = schema();
    let id = kappa_schema::registry::schema_id_for(&schema);
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(&schema, payment.to_avro()).unwrap());
    out
}

/// Produces `messages` to their partitions of `topic` (a new topic: offsets are those of the
/// history), keyed by payment id.
pub fn produce(producer: &BaseProducer, topic: &str, messages: &[PaymentMessage]) {
    for m in messages {
        let value = wire(&m.payment);
        loop {
            let mut headers = rdkafka::message::OwnedHeaders::new();
            for (key, value) in m.payment.headers() {
                headers = headers.insert(rdkafka::message::Header {
                    key: &key,
                    value: value.as_deref(),
                });
            }
            let record = BaseRecord::to(topic)
                .partition(m.partition)
                .key(m.payment.payment_id.as_bytes())
                .timestamp(m.payment.timestamp_ms())
                .headers(headers)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(e.to_string().contains("Queue full"), "producing: {e}");
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// The rows a table with `[dedup] key = "payment_id"` must hold, ordered by (partition,
/// offset): every message but the redeliveries, with its coordinates.
pub fn expected_rows(messages: &[PaymentMessage]) -> Vec<Value> {
    let mut rows: Vec<(i32, i64, Value)> = messages
        .iter()
        .filter(|m| !m.duplicate)
        .map(|m| {
            let mut row = m.payment.canonical();
            row.insert("_kafka_partition".into(), json!(m.partition));
            row.insert("_kafka_offset".into(), json!(m.offset));
            (m.partition, m.offset, json!(row))
        })
        .collect();
    rows.sort_by_key(|(p, o, _)| (*p, *o));
    rows.into_iter().map(|(_, _, row)| row).collect()
}

/// [`expected_rows`] with the three Kafka metadata columns; `headers`: whether the source knows
/// them (live), or leaves them NULL (an envelope archive).
pub fn expected_rows_with_metadata(messages: &[PaymentMessage], headers: bool) -> Vec<Value> {
    let mut by_coordinates: BTreeMap<(i64, i64), &Payment> = BTreeMap::new();
    for m in messages.iter().filter(|m| !m.duplicate) {
        by_coordinates.insert((m.partition as i64, m.offset), &m.payment);
    }
    expected_rows(messages)
        .into_iter()
        .map(|mut row| {
            let at = (
                row["_kafka_partition"].as_i64().unwrap(),
                row["_kafka_offset"].as_i64().unwrap(),
            );
            let payment = by_coordinates[&at];
            for (column, value) in payment.canonical_metadata(headers) {
                row[column] = value;
            }
            row
        })
        .collect()
}

/// Writes `messages` as a full-record backup: envelope records (`topic`, `partition`, `offset`,
/// `timestamp`, `key`, `value` in the wire format), snappy, `flush_size` per file.
pub fn write_envelope_archive(
    archive: &Path,
    topic: &str,
    messages: &[PaymentMessage],
    flush_size: usize,
) {
    let schema = Schema::parse_str(kappa_synth::ENVELOPE_SCHEMA).unwrap();
    let mut by_partition: BTreeMap<i32, Vec<&PaymentMessage>> = BTreeMap::new();
    for m in messages {
        by_partition.entry(m.partition).or_default().push(m);
    }
    for (partition, messages) in by_partition {
        let dir = archive.join(topic).join(format!("partition={partition}"));
        std::fs::create_dir_all(&dir).unwrap();
        for chunk in messages.chunks(flush_size) {
            let start = chunk[0].offset;
            let mut writer = Writer::with_codec(&schema, Vec::new(), Codec::Snappy);
            for m in chunk {
                let record = Avro::Record(vec![
                    ("topic".into(), Avro::String(topic.into())),
                    ("partition".into(), Avro::Int(m.partition)),
                    ("offset".into(), Avro::Long(m.offset)),
                    (
                        "timestamp".into(),
                        Avro::TimestampMillis(m.payment.timestamp_ms()),
                    ),
                    (
                        "key".into(),
                        Avro::Union(
                            1,
                            Box::new(Avro::Bytes(m.payment.payment_id.clone().into_bytes())),
                        ),
                    ),
                    (
                        "value".into(),
                        Avro::Union(1, Box::new(Avro::Bytes(wire(&m.payment)))),
                    ),
                ]);
                writer.append(record).unwrap();
            }
            let bytes = writer.into_inner().unwrap();
            std::fs::write(
                dir.join(format!("{topic}+{partition}+{start:010}.avro")),
                bytes,
            )
            .unwrap();
        }
    }
}

/// Next offset per partition after `messages`.
pub fn next_offsets(messages: &[PaymentMessage], partitions: i32) -> Vec<i64> {
    let mut next = vec![0i64; partitions as usize];
    for m in messages {
        next[m.partition as usize] = next[m.partition as usize].max(m.offset + 1);
    }
    next
}

/// The config of a `payments` pipeline on `scene`'s catalog: logic `identity`, dedup on
/// `payment_id`, event time `paid_at`, one table `payments`, schemas from `schemas`; `extra`
/// is appended (a `[source.*]` section, overrides).
pub fn config(scene: &crate::Scene, schemas: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[pipeline]
name = "payments"
logic = "identity"

[schema]
dir = "{schemas}"
subject = "payments-value"

[catalog]
type = "{catalog_type}"
name = "kappa"
uri = "{uri}"
warehouse = "{warehouse}"
{catalog_extra}
[table]
namespace = "{ns}"
name = "payments"
partition_by = ["day(paid_at)"]

[event_time]
column = "paid_at"

[dedup]
key = "payment_id"

[commit]
rows = 1000
interval = "1s"

[metrics]
listen = "127.0.0.1:0"
{extra}
"#,
        schemas = schemas.display(),
        catalog_type = scene.catalog_type,
        uri = scene.catalog_uri,
        warehouse = scene.warehouse,
        catalog_extra = scene.catalog_extra,
        ns = scene.namespace,
    );
    let path = scene.path("payments.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `[source.archive]` of the scene's local archive, topic `topic`.
pub fn archive_section(scene: &crate::Scene, topic: &str) -> String {
    format!(
        "[source.archive]\nurl = \"{}\"\ntopic = \"{topic}\"\n{}",
        scene.archive_url, scene.archive_extra
    )
}

/// Every row of `table` as `engine` (pyiceberg | duckdb) reads it (`python/dump_rows.py`).
pub fn dump(scene: &crate::Scene, engine: &str, table: &str) -> Value {
    scene.python_tool("dump_rows.py", engine, table, &[])
}
