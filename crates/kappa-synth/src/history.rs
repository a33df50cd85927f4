//! The synthetic `orders` history: what producers sent to the topic, in production order.

use apache_avro::Schema;
use apache_avro::types::Value;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Orders value schema, version 1 (the project's contract copy).
pub const ORDERS_V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
/// Orders value schema, version 2 (BACKWARD-compatible: adds `coupon_code`, `tip_cents`).
pub const ORDERS_V2: &str = include_str!("../../../contracts/orders-value/2.avsc");

const EVENT_TYPES: [&str; 4] = ["CREATED", "PAID", "CANCELLED", "DELIVERED"];
const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "CHF"];

/// Generation or archive writing failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A built-in schema did not parse (a bug).
    #[error("synth: schema: {0}")]
    Schema(String),
    /// Avro encoding failed.
    #[error("synth: encoding {what}: {message}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The Avro error.
        message: String,
    },
    /// Writing an archive object failed.
    #[error("synth: writing {key}: {message}")]
    Store {
        /// Object key.
        key: String,
        /// The store's error.
        message: String,
    },
}

/// What to generate. Everything is derived from `seed`: the same spec gives the same bytes.
#[derive(Debug, Clone)]
pub struct HistorySpec {
    /// Topic name.
    pub topic: String,
    /// Distinct events.
    pub events: u64,
    /// Kafka partitions.
    pub partitions: i32,
    /// Days the events span.
    pub days: u32,
    /// First produce time, ms since the epoch.
    pub start_ms: i64,
    /// RNG seed.
    pub seed: u64,
    /// Producer-retry duplicates (extra copies of earlier events).
    pub duplicates: u64,
    /// Undecodable messages (extra, not events).
    pub undecodable: u64,
    /// Events with a negative amount (rejected by the logic).
    pub negative_amounts: u64,
    /// Share of events with a lower-case currency.
    pub lowercase_currency_rate: f64,
    /// Share of events with a NULL user id.
    pub null_user_rate: f64,
    /// From this share of the history on, producers use orders v2.
    pub v2_from: Option<f64>,
    /// Skip an offset now and then, as transaction markers and compaction do.
    pub offset_gaps: bool,
}

impl HistorySpec {
    /// A history of `events` events with the default mix of bad data.
    pub fn new(events: u64) -> Self {
        Self {
            topic: "orders".into(),
            events,
            partitions: 3,
            days: 7,
            start_ms: 1_793_491_200_000, // 2026-11-01T00:00:00Z
            seed: 42,
            duplicates: events / 1000,
            undecodable: if events >= 10_000 { 20 } else { events / 500 },
            negative_amounts: events / 20_000 + 1,
            lowercase_currency_rate: 0.01,
            null_user_rate: 0.0005,
            v2_from: None,
            offset_gaps: false,
        }
    }
}

/// One order event's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// UUID string.
    pub event_id: String,
    /// Enum symbol.
    pub event_type: &'static str,
    /// Order id (the message key).
    pub order_id: String,
    /// User id, rarely NULL.
    pub user_id: Option<String>,
    /// Restaurant id.
    pub restaurant_id: String,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// Currency as produced (sometimes lower case).
    pub currency: String,
    /// Event time, ms since the epoch.
    pub event_time_ms: i64,
    /// v2 only.
    pub coupon_code: Option<String>,
    /// v2 only.
    pub tip_cents: Option<i64>,
    /// Produced with schema v2.
    pub v2: bool,
}

impl Event {
    /// The event as an Avro record of v1 or v2.
    pub fn to_avro(&self) -> Value {
        let mut fields = vec![
            ("event_id".to_string(), Value::String(self.event_id.clone())),
            (
                "event_type".to_string(),
                Value::Enum(
                    EVENT_TYPES
                        .iter()
                        .position(|t| *t == self.event_type)
                        .unwrap_or(0) as u32,
                    self.event_type.to_string(),
                ),
            ),
            ("order_id".to_string(), Value::String(self.order_id.clone())),
            ("user_id".to_string(), optional_string(&self.user_id)),
            (
                "restaurant_id".to_string(),
                Value::String(self.restaurant_id.clone()),
            ),
            ("amount_cents".to_string(), Value::Long(self.amount_cents)),
            ("currency".to_string(), Value::String(self.currency.clone())),
            (
                "event_time".to_string(),
                Value::TimestampMillis(self.event_time_ms),
            ),
        ];
        if self.v2 {
            fields.push((
                "coupon_code".to_string(),
                optional_string(&self.coupon_code),
            ));
            fields.push((
                "tip_cents".to_string(),
                match self.tip_cents {
                    Some(t) => Value::Union(1, Box::new(Value::Long(t))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ));
        }
        Value::Record(fields)
    }
}

fn optional_string(value: &Option<String>) -> Value {
    match value {
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// What a message is, for computing the expected table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// First occurrence of an event.
    Original,
    /// A producer retry: same event id and content as an earlier message.
    Duplicate,
    /// Bytes that are not a valid wire-format message.
    Garbage,
}

/// One Kafka message of the history.
#[derive(Debug, Clone)]
pub struct Message {
    /// Partition (stable hash of the key).
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record timestamp (produce time), ms.
    pub timestamp_ms: i64,
    /// Key bytes (the order id).
    pub key: Vec<u8>,
    /// Value bytes in the Confluent wire format (or garbage).
    pub value: Vec<u8>,
    /// The event, unless garbage.
    pub event: Option<Event>,
    /// Original, duplicate or garbage.
    pub kind: MessageKind,
}

/// Iterator over the messages of a history, in production order.
pub struct History {
    spec: HistorySpec,
    rng: ChaCha8Rng,
    v1: Schema,
    v2: Schema,
    v1_id: u32,
    v2_id: u32,
    index: u64,
    next_offset: Vec<i64>,
    pending: Vec<(u64, Message)>,
    queued: std::collections::VecDeque<Message>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("spec", &self.spec)
            .field("index", &self.index)
            .finish()
    }
}

impl History {
    /// Starts generating `spec`.
    pub fn new(spec: HistorySpec) -> Result<Self, SynthError> {
        let v1 = Schema::parse_str(ORDERS_V1).map_err(|e| SynthError::Schema(e.to_string()))?;
        let v2 = Schema::parse_str(ORDERS_V2).map_err(|e| SynthError::Schema(e.to_string()))?;
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            v1_id: kappa_schema::registry::schema_id_for(&v1),
            v2_id: kappa_schema::registry::schema_id_for(&v2),
            v1,
            v2,
            index: 0,
            next_offset: vec![0; spec.partitions.max(1) as usize],
            pending: Vec::new(),
            queued: Default::default(),
            spec,
        })
    }

    /// The spec being generated.
    pub fn spec(&self) -> &HistorySpec {
        &self.spec
    }

    /// The Avro schema of v1 or v2.
    pub fn schema(&self, v2: bool) -> &Schema {
        if v2 { &self.v2 } else { &self.v1 }
    }

    fn partition_of(&self, key: &str) -> i32 {
        let digest = Sha256::digest(key.as_bytes());
        let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        (n % self.spec.partitions.max(1) as u32) as i32
    }

    fn take_offset(&mut self, partition: i32) -> i64 {
        let slot = &mut self.next_offset[partition as usize];
        // Gaps are a function of the offset alone (not of the RNG), so a history with gaps has
        // the same events as one without.
        if self.spec.offset_gaps
            && (*slot as u64)
                .wrapping_mul(2_654_435_761)
                .is_multiple_of(499)
        {
            *slot += 1 + (*slot % 2);
        }
        let offset = *slot;
        *slot += 1;
        offset
    }

    fn chance(&mut self, count: u64) -> bool {
        self.spec.events > 0
            && self
                .rng
                .random_bool((count as f64 / self.spec.events as f64).min(1.0))
    }

    fn event(&mut self, i: u64, produce_ms: i64) -> Event {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let event_id = uuid::Builder::from_random_bytes(id).into_uuid().to_string();
        let order = i / 3;
        let stage = i % 3;
        let event_type = match stage {
            0 => "CREATED",
            1 => "PAID",
            _ if self.rng.random_bool(0.1) => "CANCELLED",
            _ => "DELIVERED",
        };
        let delay = if self.rng.random_bool(0.01) {
            self.rng.random_range(0..3_600_000)
        } else {
            self.rng.random_range(0..2_000)
        };
        let mut amount_cents = self.rng.random_range(500..20_000);
        if self.chance(self.spec.negative_amounts) {
            amount_cents = -amount_cents;
        }
        let mut currency = CURRENCIES[self.rng.random_range(0..CURRENCIES.len())].to_string();
        if self.rng.random_bool(self.spec.lowercase_currency_rate) {
            currency = currency.to_ascii_lowercase();
        }
        let user_id = (!self.rng.random_bool(self.spec.null_user_rate))
            .then(|| format!("u-{}", self.rng.random_range(0..50_000)));
        let v2 = self
            .spec
            .v2_from
            .is_some_and(|from| i as f64 >= from * self.spec.events as f64);
        let (coupon_code, tip_cents) = if v2 {
            (
                self.rng.random_bool(0.1).then(|| "SAVE10".to_string()),
                self.rng
                    .random_bool(0.5)
                    .then(|| self.rng.random_range(0..500)),
            )
        } else {
            (None, None)
        };
        Event {
            event_id,
            event_type,
            order_id: format!("o-{order:08}"),
            user_id,
            restaurant_id: format!("r-{}", (order * 7919) % 2_000),
            amount_cents,
            currency,
            event_time_ms: produce_ms - delay,
            coupon_code,
            tip_cents,
            v2,
        }
    }

    fn wire(&self, event: &Event) -> Vec<u8> {
        let (schema, id) = if event.v2 {
            (&self.v2, self.v2_id)
        } else {
            (&self.v1, self.v1_id)
        };
        let mut out = vec![0u8];
        out.extend_from_slice(&id.to_be_bytes());
        // The built-in schemas always encode the built-in events.
        out.extend(apache_avro::to_avro_datum(schema, event.to_avro()).unwrap_or_default());
        out
    }

    fn garbage(&mut self, like: &[u8]) -> Vec<u8> {
        match self.rng.random_range(0..4) {
            0 => {
                let mut m = like.to_vec();
                m[0] = 0x7b; // `{`: someone produced JSON
                m
            }
            1 => like[..like.len().min(5 + self.rng.random_range(0..8))].to_vec(),
            2 => {
                let mut m = like.to_vec();
                m[1..5].copy_from_slice(&999_999u32.to_be_bytes());
                m
            }
            _ => (0..self.rng.random_range(1..40))
                .map(|_| self.rng.random())
                .collect(),
        }
    }
}

impl Iterator for History {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(message) = self.queued.pop_front() {
                return Some(message);
            }
            if let Some(pos) = self.pending.iter().position(|(due, _)| *due <= self.index) {
                let (_, mut copy) = self.pending.swap_remove(pos);
                copy.offset = self.take_offset(copy.partition);
                return Some(copy);
            }
            if self.index >= self.spec.events {
                if self.pending.is_empty() {
                    return None;
                }
                // Flush retries scheduled past the end.
                self.index += 1;
                continue;
            }
            let i = self.index;
            self.index += 1;
            let span_ms = i64::from(self.spec.days) * 86_400_000;
            let produce_ms = self.spec.start_ms
                + (i as i128 * span_ms as i128 / self.spec.events.max(1) as i128) as i64;
            let event = self.event(i, produce_ms);
            let partition = self.partition_of(&event.order_id);
            let value = self.wire(&event);
            if self.chance(self.spec.undecodable) {
                let garbage = self.garbage(&value);
                let p = self.rng.random_range(0..self.spec.partitions.max(1));
                let offset = self.take_offset(p);
                self.queued.push_back(Message {
                    partition: p,
                    offset,
                    timestamp_ms: produce_ms,
                    key: Vec::new(),
                    value: garbage,
                    event: None,
                    kind: MessageKind::Garbage,
                });
            }
            let offset = self.take_offset(partition);
            let message = Message {
                partition,
                offset,
                timestamp_ms: produce_ms,
                key: event.order_id.clone().into_bytes(),
                value,
                event: Some(event),
                kind: MessageKind::Original,
            };
            let negative = message.event.as_ref().is_some_and(|e| e.amount_cents < 0);
            if !negative && self.chance(self.spec.duplicates) {
                let due = self.index + self.rng.random_range(0..5);
                let mut copy = message.clone();
                copy.kind = MessageKind::Duplicate;
                self.pending.push((due, copy));
            }
            self.queued.push_back(message);
        }
    }
}

/// What the table must hold after replaying an archive, computed from the archived messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Messages archived.
    pub messages: u64,
    /// Rows the main table must hold.
    pub rows: u64,
    /// Duplicates the logic must drop.
    pub duplicates: u64,
    /// Messages that cannot be decoded (dead-lettered).
    pub undecodable: u64,
    /// Events the logic must reject (dead-lettered).
    pub rejected: u64,
    /// Content checksum of the rows (see [`crate::RowChecksum`]).
    pub checksum: u64,
    /// Next offset per partition after the archive.
    pub next_offsets: Vec<i64>,
}

impl Expected {
    /// Records dead-lettered.
    pub fn dead_lettered(&self) -> u64 {
        self.undecodable + self.rejected
    }
}

/// Accumulates what a table must hold from the messages it is fed (archived or produced).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    expected: Expected,
    checksum: crate::RowChecksum,
}

impl Tally {
    /// Accounts for one message.
    pub fn add(&mut self, message: &Message) {
        let expected = &mut self.expected;
        expected.messages += 1;
        let partition = message.partition.max(0) as usize;
        if expected.next_offsets.len() <= partition {
            expected.next_offsets.resize(partition + 1, 0);
        }
        expected.next_offsets[partition] = expected.next_offsets[partition].max(message.offset + 1);
        match (message.kind, &message.event) {
            (MessageKind::Garbage, _) | (_, None) => expected.undecodable += 1,
            (MessageKind::Duplicate, Some(_)) => expected.duplicates += 1,
            (MessageKind::Original, Some(e)) if e.amount_cents < 0 => expected.rejected += 1,
            (MessageKind::Original, Some(e)) => {
                expected.rows += 1;
                self.checksum.add(&crate::canonical_row(
                    &e.event_id,
                    e.event_type,
                    &e.order_id,
                    e.user_id.as_deref(),
                    &e.restaurant_id,
                    e.amount_cents,
                    &e.currency.to_ascii_uppercase(),
                    e.event_time_ms * 1000,
                    e.coupon_code.as_deref(),
                    e.tip_cents,
                ));
            }
        }
    }

    /// What the table must hold after every message added so far.
    pub fn finish(&self) -> Expected {
        Expected {
            checksum: self.checksum.0,
            ..self.expected.clone()
        }
    }
}
