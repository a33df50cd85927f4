//! The Confluent wire format: `0x00`, a 4-byte big-endian schema id, then the Avro binary body.
//!
//! [`WireDecoder::decode`] turns a slice of framed messages into one Arrow batch in the table's
//! value schema. Decoding is optimistic: all messages go through one arrow-avro [`Decoder`] (the
//! fast path). If any message fails, the decoder's partial state cannot be trusted, so it is
//! dropped and each half of the batch is decoded again, recursively, down to the bad messages
//! (only batches that contain a bad record pay for this). Each failure is reported with its index
//! and a reason, and all good messages are decoded: one bad message never costs its neighbours.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind};

use crate::error::SchemaError;
use crate::mapping::TableMapping;
use crate::registry::{RegisteredSchema, SchemaRegistry};

/// Magic byte of the Confluent wire format.
pub const MAGIC: u8 = 0;
/// Bytes before the Avro body: magic + 4-byte id.
pub const HEADER_LEN: usize = 5;

/// The result of decoding a slice of messages.
#[derive(Debug)]
pub struct WireOutcome {
    /// Decoded rows in the value schema, in message order (failed messages left out).
    pub records: RecordBatch,
    /// Index (into the input slice) of each row of `records`.
    pub decoded: Vec<usize>,
    /// Index and reason of each message that could not be decoded.
    pub failed: Vec<(usize, String)>,
    /// Indexes (a subset of `failed`) of messages whose writer schema cannot be read as the
    /// table's schema: valid messages of an incompatible version, not corrupt bytes.
    pub unmappable: Vec<usize>,
    /// Indexes (a subset of `failed`) of messages that decoded but hold a value the table cannot
    /// ([`TableMapping::normalize`]): a timestamp out of range, ...
    pub unconvertible: Vec<usize>,
    /// Where decoding stopped: the index of the first message written with a newer version of
    /// the subject than the table knows ([`WireDecoder::evolving`]). Messages from there on are
    /// in none of the other fields.
    pub newer: Option<(usize, NewerSchema)>,
}

/// A writer schema with fields the table lacks, from a version of the subject newer than the
/// table's mapping: the table must evolve before its records are decoded, or the new fields
/// would be lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewerSchema {
    /// Its registry id.
    pub schema_id: u32,
    /// The subject.
    pub subject: String,
    /// Versions the subject has now (the mapping knows fewer).
    pub versions: usize,
    /// Its fields the table's mapping does not have, by path (`tip_cents`, `payment.tip`).
    pub new_fields: Vec<String>,
}

impl std::fmt::Display for NewerSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writer schema id {} has fields the table lacks ({}); subject {} now has {} versions",
            self.schema_id,
            self.new_fields.join(", "),
            self.subject,
            self.versions
        )
    }
}

/// What the header of a message says.
enum Frame {
    /// A writer schema the decoder can read.
    Known,
    /// Not decodable: why, and whether because the writer schema is unmappable.
    Bad(String, bool),
    /// Written with a newer version of the subject: stop here.
    Newer(NewerSchema),
}

/// Kafka records decoded by [`WireDecoder::decode_records`]: the rows with their offsets, and a
/// dead letter for every other record.
#[derive(Debug)]
pub struct DecodedRecords {
    /// Decoded rows in the value schema, in offset order.
    pub records: RecordBatch,
    /// Kafka offset of each row.
    pub offsets: Vec<i64>,
    /// Tombstones, undecodable messages and unmappable writer schemas, by offset.
    pub dead_letters: Vec<DeadLetter>,
    /// The offset where decoding stopped, at a record of a newer version of the subject than the
    /// table knows; records from there on are neither rows nor dead letters.
    pub newer: Option<(i64, NewerSchema)>,
}

/// Decodes Confluent-framed messages against a registry, resolving every writer schema to the
/// table's reader schema.
pub struct WireDecoder {
    mapping: Arc<TableMapping>,
    registry: Arc<dyn SchemaRegistry>,
    /// Writer schemas seen so far, by id.
    writers: BTreeMap<u32, Arc<RegisteredSchema>>,
    /// Ids the registry does not know, as of this `decode` call (asked again on the next call: a
    /// producer may register a schema just before using it).
    unknown: BTreeSet<u32>,
    /// Writer schemas that cannot be read as the reader schema, with the reason.
    unmappable: BTreeMap<u32, String>,
    decoder: Option<Decoder>,
    /// The subject whose newer versions stop decoding ([`WireDecoder::evolving`]).
    evolving: Option<String>,
    /// Writer schemas of newer versions of the subject than the mapping knows, by id.
    newer: BTreeMap<u32, NewerSchema>,
}

impl std::fmt::Debug for WireDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireDecoder")
            .field("writer_ids", &self.writers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WireDecoder {
    /// The table mapping records are decoded for.
    pub fn mapping(&self) -> &Arc<TableMapping> {
        &self.mapping
    }

    /// A decoder producing `mapping`'s value schema, with writer schemas from `registry`.
    pub fn new(mapping: Arc<TableMapping>, registry: Arc<dyn SchemaRegistry>) -> Self {
        Self {
            mapping,
            registry,
            writers: BTreeMap::new(),
            unknown: BTreeSet::new(),
            unmappable: BTreeMap::new(),
            decoder: None,
            evolving: None,
            newer: BTreeMap::new(),
        }
    }

    /// Stops at the first record whose writer schema has fields the table lacks when `subject`
    /// has more versions in the registry than the mapping was derived from (a version registered
    /// while the pipeline runs), instead of decoding it against the older reader schema, which
    /// would drop the new fields. The caller commits what came before, evolves the table and
    /// decodes again with the new mapping. Writer schemas from outside the subject's history
    /// are decoded against the reader as before (fields it lacks are dropped, with a warning).
    pub fn evolving(mut self, subject: impl Into<String>) -> Self {
        self.evolving = Some(subject.into());
        self
    }

    /// The Arrow schema of decoded rows.
    pub fn value_schema(&self) -> &arrow_schema::SchemaRef {
        self.mapping.value_schema()
    }

    /// Checks the frame and returns the schema id, or why the message is not decodable (and
    /// whether because its writer schema is unmappable). The outer error is the registry's
    /// (unreachable, ...): not the message's fault, so never a dead letter.
    fn header(&mut self, message: &[u8]) -> Result<Frame, SchemaError> {
        if message.len() <= HEADER_LEN {
            // Also rejects a header without a body: arrow-avro would wait for the body and take
            // the next message's bytes for it.
            return Ok(Frame::Bad(
                format!(
                    "truncated message: {} bytes, the wire format needs a {HEADER_LEN}-byte header and an Avro body",
                    message.len()
                ),
                false,
            ));
        }
        if message[0] != MAGIC {
            return Ok(Frame::Bad(
                format!(
                    "bad magic byte 0x{:02x}: not the Confluent wire format (expected 0x00)",
                    message[0]
                ),
                false,
            ));
        }
        let id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
        if self.writers.contains_key(&id) {
            return Ok(Frame::Known);
        }
        if let Some(reason) = self.unmappable.get(&id) {
            return Ok(Frame::Bad(reason.clone(), true));
        }
        if let Some(newer) = self.newer.get(&id) {
            return Ok(Frame::Newer(newer.clone()));
        }
        let unknown = || {
            Ok(Frame::Bad(
                format!("unknown schema id {id}: not in the schema registry"),
                false,
            ))
        };
        if self.unknown.contains(&id) {
            return unknown();
        }
        match wait(self.registry.by_id(id))? {
            Some(writer) => {
                if let Some(newer) = self.newer_version(id, &writer)? {
                    self.newer.insert(id, newer.clone());
                    return Ok(Frame::Newer(newer));
                }
                if let Err(reason) = self.admit(id, writer) {
                    self.unmappable.insert(id, reason.clone());
                    return Ok(Frame::Bad(reason, true));
                }
                Ok(Frame::Known)
            }
            None => {
                self.unknown.insert(id);
                unknown()
            }
        }
    }

    /// Whether `writer` must wait for the table to evolve: it has fields the mapping lacks and
    /// the subject has versions the mapping was not derived from.
    fn newer_version(
        &self,
        id: u32,
        writer: &RegisteredSchema,
    ) -> Result<Option<NewerSchema>, SchemaError> {
        let Some(subject) = &self.evolving else {
            return Ok(None);
        };
        // A writer the table cannot read goes to the DLQ whatever the registry holds.
        if self.mapping.unreadable_writer(&writer.schema).is_some() {
            return Ok(None);
        }
        // New columns and new fields of nested records alike.
        let new_fields = self.mapping.fields_the_table_lacks(&writer.schema);
        if new_fields.is_empty() {
            return Ok(None);
        }
        let versions = wait(self.registry.versions(subject))?.len();
        if versions <= self.mapping.versions() {
            tracing::warn!(
                schema_id = id,
                subject = %subject,
                fields = %new_fields.join(", "),
                "writer schema has fields that no version of the subject defines: they are not stored"
            );
            return Ok(None);
        }
        Ok(Some(NewerSchema {
            schema_id: id,
            subject: subject.clone(),
            versions,
            new_fields,
        }))
    }

    /// Accepts a new writer schema if the table's reader schema can read it
    /// ([`TableMapping::unreadable_writer`]) and arrow-avro can build a decoder for it.
    fn admit(&mut self, id: u32, writer: Arc<RegisteredSchema>) -> Result<(), String> {
        if let Some(problems) = self.mapping.unreadable_writer(&writer.schema) {
            return Err(format!(
                "writer schema id {id} cannot be read as the table's schema: {problems}"
            ));
        }
        self.writers.insert(id, writer);
        // A new writer schema: the arrow-avro decoder must be rebuilt with it.
        self.decoder = None;
        if let Err(e) = self.build_decoder(1) {
            self.writers.remove(&id);
            return Err(format!(
                "writer schema id {id} cannot be read as the table's schema: {e}"
            ));
        }
        Ok(())
    }

    fn build_decoder(&self, batch_size: usize) -> Result<Decoder, SchemaError> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        for (id, writer) in &self.writers {
            store
                .set(Fingerprint::Id(*id), AvroSchema::new(writer.json.clone()))
                .map_err(|e| SchemaError::Decoder {
                    context: format!("registering writer schema id {id}"),
                    message: e.to_string(),
                })?;
        }
        ReaderBuilder::new()
            .with_batch_size(batch_size)
            .with_utf8_view(false)
            .with_reader_schema(AvroSchema::new(self.mapping.reader_json().to_string()))
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(|e| SchemaError::Decoder {
                context: "building the wire-format decoder".into(),
                message: e.to_string(),
            })
    }

    fn decoder(&mut self, capacity: usize) -> Result<&mut Decoder, SchemaError> {
        let rebuild = self
            .decoder
            .as_ref()
            .is_none_or(|d| d.batch_size() < capacity || !d.batch_is_empty());
        if rebuild {
            self.decoder = Some(self.build_decoder(capacity.max(1024))?);
        }
        self.decoder.as_mut().ok_or_else(|| SchemaError::Decoder {
            context: "wire decoder".into(),
            message: "decoder missing after build".into(),
        })
    }

    /// Decodes `(offset, value)` records of one partition (`None`: a tombstone) into rows and
    /// dead letters (carrying the raw bytes and `object_key`); never fails because of message
    /// content. Blocking like [`WireDecoder::decode`].
    pub fn decode_records(
        &mut self,
        records: &[(i64, Option<&[u8]>)],
        object_key: Option<&Arc<str>>,
    ) -> Result<DecodedRecords, SchemaError> {
        let mut dead_letters = Vec::new();
        let mut framed: Vec<(i64, &[u8])> = Vec::with_capacity(records.len());
        for (offset, value) in records {
            match value {
                Some(v) => framed.push((*offset, v)),
                None => dead_letters.push(DeadLetter {
                    offset: *offset,
                    raw: Bytes::new(),
                    object_key: object_key.cloned(),
                    kind: DeadLetterKind::Undecodable,
                    message: "tombstone (null value)".into(),
                }),
            }
        }
        let values: Vec<&[u8]> = framed.iter().map(|(_, v)| *v).collect();
        let outcome = self.decode(&values)?;
        let newer = outcome.newer.map(|(index, newer)| (framed[index].0, newer));
        if let Some((stop, _)) = &newer {
            dead_letters.retain(|d| d.offset < *stop);
        }
        for (i, reason) in outcome.failed {
            let kind = if outcome.unmappable.contains(&i) {
                DeadLetterKind::UnmappableSchema
            } else if outcome.unconvertible.contains(&i) {
                DeadLetterKind::Unconvertible
            } else {
                DeadLetterKind::Undecodable
            };
            dead_letters.push(DeadLetter {
                offset: framed[i].0,
                raw: Bytes::copy_from_slice(framed[i].1),
                object_key: object_key.cloned(),
                kind,
                message: reason,
            });
        }
        dead_letters.sort_by_key(|d| d.offset);
        Ok(DecodedRecords {
            records: outcome.records,
            offsets: outcome.decoded.iter().map(|i| framed[*i].0).collect(),
            dead_letters,
            newer,
        })
    }

    /// Decodes `messages`; never fails because of message content (only because the registry
    /// cannot be asked). Call it from a blocking thread (`spawn_blocking`) or outside a runtime:
    /// it waits for registry lookups of ids it has not seen yet.
    pub fn decode(&mut self, messages: &[&[u8]]) -> Result<WireOutcome, SchemaError> {
        self.unknown.clear();
        let mut failed = Vec::new();
        let mut unmappable = Vec::new();
        let mut candidates = Vec::with_capacity(messages.len());
        let mut newer = None;
        for (index, message) in messages.iter().enumerate() {
            match self.header(message)? {
                Frame::Known => candidates.push(index),
                Frame::Bad(reason, schema) => {
                    if schema {
                        unmappable.push(index);
                    }
                    failed.push((index, reason));
                }
                Frame::Newer(schema) => {
                    newer = Some((index, schema));
                    break;
                }
            }
        }
        let mut batches = Vec::new();
        let mut decoded = Vec::with_capacity(candidates.len());
        self.decode_isolating(
            messages,
            &candidates,
            &mut batches,
            &mut decoded,
            &mut failed,
        )?;
        // Row `k` of the batches is message `decoded[k]`; rows whose values the table cannot
        // hold leave `decoded` for `failed`.
        let schema = self.mapping.value_schema().clone();
        let mut normalized = Vec::with_capacity(batches.len());
        let mut unconvertible = Vec::new();
        let mut first_row = 0;
        for batch in batches {
            let rows = batch.num_rows();
            let out = self.mapping.normalize(batch)?;
            for (row, reason) in out.rejected {
                let Some(index) = decoded.get(first_row + row).copied() else {
                    return Err(SchemaError::Decoder {
                        context: "normalizing decoded batches".into(),
                        message: format!("row {} has no message", first_row + row),
                    });
                };
                unconvertible.push(index);
                failed.push((index, reason));
            }
            normalized.push(out.records);
            first_row += rows;
        }
        unconvertible.sort_unstable();
        decoded.retain(|i| unconvertible.binary_search(i).is_err());
        failed.sort_by_key(|(i, _)| *i);
        let records = arrow_select::concat::concat_batches(&schema, &normalized).map_err(|e| {
            SchemaError::Decoder {
                context: "concatenating decoded batches".into(),
                message: e.to_string(),
            }
        })?;
        Ok(WireOutcome {
            records,
            decoded,
            failed,
            unmappable,
            unconvertible,
            newer,
        })
    }

    /// Decodes `which` in one go; if any message fails, the decoder state is dropped and each half
    /// is decoded again, down to the single bad messages. Good batches cost one pass; a batch with
    /// `k` bad messages costs O(k log n) decoder rebuilds.
    fn decode_isolating(
        &mut self,
        messages: &[&[u8]],
        which: &[usize],
        batches: &mut Vec<RecordBatch>,
        decoded: &mut Vec<usize>,
        failed: &mut Vec<(usize, String)>,
    ) -> Result<(), SchemaError> {
        if which.is_empty() {
            return Ok(());
        }
        let decoder = self.decoder(which.len())?;
        // Some checks (UTF-8 validity) only run when the batch is flushed, so a flush failure
        // is treated like a decode failure.
        let result = feed_all(decoder, messages, which).and_then(|()| {
            decoder
                .flush()
                .map_err(|e| format!("Avro body does not decode: {e}"))
        });
        match result {
            Ok(batch) => {
                batches.extend(batch);
                decoded.extend_from_slice(which);
            }
            Err(reason) => {
                self.decoder = None;
                if let [single] = which {
                    failed.push((*single, reason));
                } else {
                    let (left, right) = which.split_at(which.len() / 2);
                    self.decode_isolating(messages, left, batches, decoded, failed)?;
                    self.decode_isolating(messages, right, batches, decoded, failed)?;
                }
            }
        }
        Ok(())
    }
}

/// Waits for a registry lookup from synchronous code: on the runtime's handle when there is one
/// (the decoder runs on blocking threads), else by polling in place (the file registry answers
/// at once).
fn wait<T>(future: impl Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => futures::executor::block_on(future),
    }
}

/// Feeds each message to the decoder; the reason of the first one not consumed exactly.
fn feed_all(decoder: &mut Decoder, messages: &[&[u8]], which: &[usize]) -> Result<(), String> {
    for index in which {
        let message = messages[*index];
        match decoder.decode(message) {
            Ok(consumed) if consumed == message.len() => {}
            Ok(consumed) if consumed <= HEADER_LEN => {
                return Err("Avro body is truncated or empty".to_string());
            }
            Ok(consumed) => {
                return Err(format!(
                    "Avro body has {} trailing bytes after the record",
                    message.len() - consumed
                ));
            }
            Err(e) => return Err(format!("Avro body does not match its writer schema: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};

    use super::*;
    use crate::registry::FileRegistry;

    const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
    const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");

    fn order(schema: &apache_avro::Schema, amount: i64, v2: bool) -> Vec<u8> {
        let mut fields = vec![
            (
                "event_id",
                Value::Uuid(uuid::Uuid::from_u128(amount as u128)),
            ),
            ("event_type", Value::Enum(1, "PAID".into())),
            ("order_id", Value::String("o-1".into())),
            (
                "user_id",
                Value::Union(1, Box::new(Value::String("u-1".into()))),
            ),
            ("restaurant_id", Value::String("r-1".into())),
            ("amount_cents", Value::Long(amount)),
            ("currency", Value::String("eur".into())),
            ("event_time", Value::TimestampMillis(1_700_000_000_123)),
        ];
        if v2 {
            fields.push(("coupon_code", Value::Union(0, Box::new(Value::Null))));
            fields.push(("tip_cents", Value::Union(1, Box::new(Value::Long(50)))));
        }
        let record = Value::Record(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        apache_avro::to_avro_datum(schema, record).unwrap()
    }

    fn frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![MAGIC];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn setup() -> (WireDecoder, Vec<Vec<u8>>) {
        let registry = Arc::new(FileRegistry::from_schemas("orders-value", [V1, V2]).unwrap());
        let v1 = registry.subject_versions("orders-value").unwrap()[0].clone();
        let v2 = registry.subject_versions("orders-value").unwrap()[1].clone();
        let mapping = Arc::new(TableMapping::from_avro_json(V2).unwrap());
        let good = vec![
            frame(v1.id, &order(&v1.schema, 100, false)),
            frame(v2.id, &order(&v2.schema, 200, true)),
            frame(v1.id, &order(&v1.schema, 300, false)),
        ];
        (WireDecoder::new(mapping, registry), good)
    }

    #[test]
    fn an_evolving_decoder_stops_at_the_first_record_of_a_version_the_table_does_not_know() {
        // The table was mapped from v1; v2 has been registered since.
        let registry = Arc::new(FileRegistry::from_schemas("orders-value", [V1, V2]).unwrap());
        let versions = registry.subject_versions("orders-value").unwrap();
        let (v1, v2) = (versions[0].clone(), versions[1].clone());
        let mapping = Arc::new(TableMapping::from_history(&[V1]).unwrap());
        let records = [
            frame(v1.id, &order(&v1.schema, 1, false)),
            vec![1, 2, 3],
            frame(v2.id, &order(&v2.schema, 2, true)),
            frame(v1.id, &order(&v1.schema, 3, false)),
        ];
        let input: Vec<(i64, Option<&[u8]>)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (10 + i as i64, Some(r.as_slice())))
            .chain([(14, None)])
            .collect();
        let mut decoder =
            WireDecoder::new(mapping.clone(), registry.clone()).evolving("orders-value");
        let out = decoder.decode_records(&input, None).unwrap();
        assert_eq!(
            out.offsets,
            [10],
            "only the record before the v2 one is decoded"
        );
        assert_eq!(out.dead_letters.len(), 1, "{:?}", out.dead_letters);
        assert_eq!(out.dead_letters[0].offset, 11);
        let (at, newer) = out.newer.expect("stops at the v2 record");
        assert_eq!(at, 12);
        assert_eq!(newer.schema_id, v2.id);
        assert_eq!(newer.versions, 2);
        assert_eq!(newer.new_fields, ["coupon_code", "tip_cents"]);
        assert!(
            newer.to_string().contains("coupon_code, tip_cents"),
            "{newer}"
        );

        // Without `evolving`, the v2 record is read as v1 (its new fields dropped): the old
        // behaviour, kept for sources that cannot restart.
        let mut plain = WireDecoder::new(mapping.clone(), registry);
        let out = plain.decode_records(&input, None).unwrap();
        assert_eq!(out.offsets, [10, 12, 13]);
        assert!(out.newer.is_none());

        // A writer from outside the subject's history never asks for evolution (it would ask
        // for ever): the subject has no newer version.
        let only_v1 = Arc::new(FileRegistry::from_schemas("orders-value", [V1]).unwrap());
        let mut others = FileRegistry::from_schemas("other-value", [V2]).unwrap();
        others
            .insert_subject(
                "orders-value".into(),
                only_v1.subject_versions("orders-value").unwrap(),
            )
            .unwrap();
        let mut decoder = WireDecoder::new(mapping, Arc::new(others)).evolving("orders-value");
        let out = decoder.decode_records(&input, None).unwrap();
        assert_eq!(out.offsets, [10, 12, 13]);
        assert!(out.newer.is_none());
    }

    #[test]
    fn an_incompatible_writer_schema_dead_letters_its_records_and_decoding_goes_on() {
        const V3: &str = include_str!("../tests/data/orders-v3-breaking.avsc");
        let registry = Arc::new(FileRegistry::from_schemas("orders-value", [V1, V2, V3]).unwrap());
        let versions = registry.subject_versions("orders-value").unwrap();
        let (v1, v3) = (versions[0].clone(), versions[2].clone());
        let mapping = Arc::new(TableMapping::from_history(&[V1, V2]).unwrap());
        let mut fields = vec![
            ("event_id", Value::Uuid(uuid::Uuid::from_u128(9))),
            ("event_type", Value::Enum(1, "PAID".into())),
            ("order_id", Value::String("o-9".into())),
            ("user_id", Value::Union(0, Box::new(Value::Null))),
            ("restaurant_id", Value::String("r-9".into())),
            ("amount_cents", Value::String("12.50".into())),
            ("currency", Value::String("EUR".into())),
            ("event_time", Value::TimestampMillis(1_700_000_000_000)),
        ];
        fields.push(("region", Value::String("eu".into())));
        let record = Value::Record(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let v3_body = apache_avro::to_avro_datum(&v3.schema, record).unwrap();
        let good = frame(v1.id, &order(&v1.schema, 100, false));
        let bad = frame(v3.id, &v3_body);
        let messages: Vec<&[u8]> = vec![&good, &bad, &good, &bad];
        let mut decoder = WireDecoder::new(mapping, registry);
        for _ in 0..2 {
            let outcome = decoder.decode(&messages).unwrap();
            assert_eq!(outcome.decoded, vec![0, 2]);
            assert_eq!(outcome.unmappable, vec![1, 3]);
            let reason = &outcome.failed[0].1;
            assert!(
                reason.contains(&format!("writer schema id {}", v3.id))
                    && reason.contains("amount_cents"),
                "{reason}"
            );
        }
    }

    #[test]
    fn decodes_mixed_writer_versions_into_the_reader_schema() {
        let (mut decoder, good) = setup();
        let messages: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        let out = decoder.decode(&messages).unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        assert_eq!(out.decoded, vec![0, 1, 2]);
        let amounts = out
            .records
            .column_by_name("amount_cents")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(amounts.values().to_vec(), vec![100, 200, 300]);
        let tips = out
            .records
            .column_by_name("tip_cents")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(tips.is_null(0) && tips.value(1) == 50 && tips.is_null(2));
        let ts = out
            .records
            .column_by_name("event_time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_700_000_000_123_000);
        let ids = out
            .records
            .column_by_name("event_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), uuid::Uuid::from_u128(100).to_string());
    }

    #[test]
    fn bad_messages_are_isolated_and_explained() {
        let (mut decoder, good) = setup();
        let mut truncated = good[1].clone();
        truncated.truncate(truncated.len() - 3);
        let mut trailing = good[2].clone();
        trailing.push(7);
        let bad_magic = {
            let mut m = good[0].clone();
            m[0] = 9;
            m
        };
        let unknown_id = frame(12345, &good[0][HEADER_LEN..]);
        let header_only = good[0][..HEADER_LEN].to_vec();
        let messages: Vec<&[u8]> = vec![
            &good[0],
            &truncated,
            &good[1],
            &[0, 1],
            &bad_magic,
            &trailing,
            &unknown_id,
            &good[2],
            &header_only,
            &good[0],
        ];
        let out = decoder.decode(&messages).unwrap();
        assert_eq!(out.decoded, vec![0, 2, 7, 9]);
        let failed: Vec<usize> = out.failed.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![1, 3, 4, 5, 6, 8]);
        let reason = |i: usize| &out.failed.iter().find(|(j, _)| *j == i).unwrap().1;
        assert!(reason(3).contains("truncated"), "{}", reason(3));
        assert!(reason(4).contains("magic"), "{}", reason(4));
        assert!(
            reason(6).contains("unknown schema id 12345"),
            "{}",
            reason(6)
        );
        assert_eq!(out.records.num_rows(), 4);
        // The decoder is healthy afterwards.
        let again: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        assert_eq!(decoder.decode(&again).unwrap().records.num_rows(), 3);
    }

    #[test]
    fn a_value_the_table_cannot_hold_dead_letters_its_record_only() {
        // A producer sending nanoseconds in a timestamp-millis field: the value overflows the
        // table's microseconds. Only that record is a dead letter, naming column and value.
        let (mut decoder, good) = setup();
        let registry = FileRegistry::from_schemas("orders-value", [V1, V2]).unwrap();
        let v1 = registry.subject_versions("orders-value").unwrap()[0].clone();
        let nanos = 1_700_000_000_123_456_789i64;
        let body = order(&v1.schema, 400, false);
        let mut value =
            apache_avro::from_avro_datum(&v1.schema, &mut body.as_slice(), None).unwrap();
        if let Value::Record(fields) = &mut value {
            for (name, field) in fields.iter_mut() {
                if name == "event_time" {
                    *field = Value::TimestampMillis(nanos);
                }
            }
        }
        let bad = frame(
            v1.id,
            &apache_avro::to_avro_datum(&v1.schema, value).unwrap(),
        );
        let input: Vec<(i64, Option<&[u8]>)> = vec![
            (20, Some(good[0].as_slice())),
            (21, Some(bad.as_slice())),
            (22, Some(good[1].as_slice())),
            (23, Some(good[2].as_slice())),
        ];
        let out = decoder.decode_records(&input, None).unwrap();
        assert_eq!(out.offsets, [20, 22, 23]);
        assert_eq!(out.records.num_rows(), 3);
        let amounts = out
            .records
            .column_by_name("amount_cents")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(amounts.values().to_vec(), vec![100, 200, 300]);
        assert_eq!(out.dead_letters.len(), 1, "{:?}", out.dead_letters);
        let letter = &out.dead_letters[0];
        assert_eq!(letter.offset, 21);
        assert_eq!(letter.kind, DeadLetterKind::Unconvertible);
        assert_eq!(letter.raw.as_ref(), bad.as_slice());
        assert!(
            letter.message.contains("event_time") && letter.message.contains(&nanos.to_string()),
            "{}",
            letter.message
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let (mut decoder, good) = setup();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..300 {
            let mut messages: Vec<Vec<u8>> = Vec::new();
            for k in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut m = good[(round + k) % 3].clone();
                let pos = (seed as usize) % m.len();
                m[pos] ^= (seed >> 8) as u8 | 1;
                if seed.is_multiple_of(3) {
                    m.truncate(pos);
                }
                messages.push(m);
            }
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let out = decoder.decode(&refs).unwrap();
            assert_eq!(out.decoded.len() + out.failed.len(), 4);
            assert_eq!(out.records.num_rows(), out.decoded.len());
        }
    }
}
