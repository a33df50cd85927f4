//! Decoding one archive file into [`SourceBatch`]es.
//!
//! The OCF header's writer schema says what the records are:
//! - a record schema that is the message value (Kafka Connect `AvroConverter`): decoded straight to
//!   Arrow by arrow-avro with the file's own writer schema, then mapped onto the table's columns
//!   (optional fields an older writer lacks become NULL; arrow-avro 58's schema resolution
//!   rejects named types whose namespace is inherited in one schema and explicit in the other).
//!   The embedded writer schema first passes the check wire-format writer schemas pass
//!   ([`TableMapping::unreadable_writer`]); when the table cannot read it, every record of the
//!   file is an `unmappable-schema` dead letter naming the object key and the breaking changes,
//!   and the replay goes on with the next file;
//! - `"bytes"` (`ByteArrayConverter`): each record is the raw message value in the Confluent wire
//!   format, decoded by [`WireDecoder`]; what does not decode becomes a dead letter;
//! - an envelope record with `partition`, `offset` and `value` (full-record backups): coordinates
//!   from the record, values as for `"bytes"`; a null value (tombstone) is a dead letter.
//!
//! **The offset rule.** Without an envelope, a record's offset is the file's start offset (from
//! its key) plus its index in the file. Where the topic has offset gaps (transaction markers,
//! compaction) this differs from the live offset; envelopes carry the real one. Either way the
//! batches of a file are contiguous and the last one ends at the next file's start offset when
//! there is a next file (at the last offset + 1 otherwise): after a whole file is consumed the
//! position is never below the next file's start, so switching from replay to live Kafka can
//! neither re-read nor skip records. Records below the requested start position (`from`) are
//! skipped, which also handles files that overlap their predecessor.
//!
//! **Damaged files** (see `tests/fuzz_ocf.rs` and `tests/crafted_ocf.rs`) are errors naming the
//! object key, never panics, hangs or allocations by a declared size. Before any Avro crate sees
//! a byte, for every shape: the framing is read (`header`: magic, metadata, every
//! block's size and sync marker) and the header's schema names are checked; each block is
//! inflated by `codec` through a bounded reader ([`ArchiveLimits`]); and the writer
//! schema is walked over the inflated bytes (`records`) to find every record's end.
//! A damaged object fails the replay naming it: nothing of it is skipped silently.
//!
//! **Per-record isolation.** A record whose framing is sound but whose value cannot be
//! converted (a `uuid` string that is not a UUID, a string that is not UTF-8, an enum index past
//! the symbols, or anything arrow-avro or the mapping refuses) is an `undecodable` dead letter
//! naming the field, with the record's Avro bytes (under the file's writer schema, which the
//! object key locates) and its offset: in a value-record file as in the wire format, one bad
//! record never costs its neighbours. Value records are decoded in groups of `batch_rows`, framed
//! by the walk without their values checked (arrow-avro refuses a string that is not UTF-8, a
//! UUID that is not one and an enum index past the symbols by itself); only when arrow-avro
//! refuses a group does the walk check each of its records' values, which names the field of
//! each bad one, and the rest of the group is split in halves down to any other bad record, as
//! [`WireDecoder`] does.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use apache_avro::Schema;
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind, OffsetRange, SourceBatch, TopicPartition};
use kappa_schema::mapping::Normalized;
use kappa_schema::{TableMapping, WireDecoder};

use super::codec::{Codec, InflateError, Inflater};
use super::header;
use super::records::{Record, Values, Walker};
use crate::error::ReplayError;

/// Records one block may say it holds (a damaged count must not size a decode buffer); Kafka
/// Connect writes blocks of far fewer.
const MAX_BLOCK_RECORDS: u64 = 1 << 20;

/// How large an archive object, and what it inflates to, may be: what one object can cost in
/// memory, whatever its bytes say (`[source.archive]` `max_object_bytes`, `max_block_bytes`,
/// `max_inflated_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Bytes of one object as stored (compressed); a larger one is refused before it is fetched.
    pub max_object_bytes: u64,
    /// Bytes one block may inflate to.
    pub max_block_bytes: usize,
    /// Bytes all blocks of one object may inflate to together.
    pub max_inflated_bytes: usize,
}

impl Default for ArchiveLimits {
    /// 128 MiB objects, 16 MiB blocks, 512 MiB inflated per object.
    fn default() -> Self {
        Self {
            max_object_bytes: 128 << 20,
            max_block_bytes: 16 << 20,
            max_inflated_bytes: 512 << 20,
        }
    }
}

/// How a file's records are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Value records.
    Value,
    /// Raw wire-format bytes.
    RawBytes,
    /// Envelopes with coordinates.
    Envelope,
}

/// Everything needed to decode one file.
#[derive(Debug)]
pub struct FileToDecode<'a> {
    /// Object key (for errors and dead letters).
    pub key: &'a str,
    /// Topic-partition.
    pub partition: &'a TopicPartition,
    /// Start offset from the key.
    pub start_offset: i64,
    /// Next file's start offset in this partition, if any.
    pub next_start: Option<i64>,
    /// Skip records below this offset.
    pub from: i64,
    /// Rows per batch.
    pub batch_rows: usize,
    /// What the object may cost.
    pub limits: ArchiveLimits,
}

fn corrupt(key: &str, message: impl std::fmt::Display) -> ReplayError {
    ReplayError::Corrupt {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// What a writer schema gives, worked out once per partition reader and reused for every file
/// written with the same schema (a replay of Kafka Connect's small files opens thousands with
/// one schema): the parsed schema, its encoding layout, the record shape, whether the table can
/// read it, and the arrow-avro decoder.
struct Writer {
    schema: Schema,
    /// The writer schema as its encoding lays values out, for the walk over the records
    /// ([`kappa_schema::names::parse_encoding`]: a `fixed` UUID stays a `fixed`).
    layout: Schema,
    shape: Shape,
    /// Why the table cannot read it (value records; the breaking changes), once asked.
    unreadable: Option<Option<String>>,
    values: ValueDecoder,
}

impl Writer {
    fn parse(key: &str, json: &str) -> Result<Self, ReplayError> {
        kappa_schema::names::check_names(json)
            .map_err(|m| corrupt(key, format!("the header's writer schema: {m}")))?;
        let schema = Schema::parse_str(json).map_err(|e| {
            corrupt(
                key,
                format!("the header's writer schema is not a valid Avro schema ({e})"),
            )
        })?;
        let layout = kappa_schema::names::parse_encoding(json).map_err(|e| {
            corrupt(
                key,
                format!("the header's writer schema is not a valid Avro schema ({e})"),
            )
        })?;
        let shape = match &schema {
            Schema::Bytes => Shape::RawBytes,
            Schema::Record(record) => {
                let has = |name: &str| record.fields.iter().any(|f| f.name == name);
                if has("partition") && has("offset") && has("value") {
                    Shape::Envelope
                } else {
                    Shape::Value
                }
            }
            other => {
                return Err(corrupt(
                    key,
                    format!(
                        "unsupported writer schema {:?}; expected a record or \"bytes\"",
                        other.canonical_form()
                    ),
                ));
            }
        };
        Ok(Self {
            schema,
            layout,
            shape,
            unreadable: None,
            values: ValueDecoder {
                json: json.to_string(),
                decoder: None,
                grouped: None,
                text_uuids: kappa_schema::names::text_uuid_fields(json),
            },
        })
    }
}

/// Writer schemas one reader keeps (a topic has a handful; the cache is emptied past this).
const MAX_WRITERS: usize = 32;

/// What a partition's reader keeps from file to file: the wire-format decoder (raw bytes and
/// envelopes), the inflate buffer and decompressors, and what each writer schema seen gives
/// (`Writer`).
pub struct DecodeState {
    wire: WireDecoder,
    inflater: Inflater,
    writers: HashMap<String, Writer>,
}

impl DecodeState {
    /// Fresh state around `wire`.
    pub fn new(wire: WireDecoder) -> Self {
        Self {
            wire,
            inflater: Inflater::default(),
            writers: HashMap::new(),
        }
    }
}

impl std::fmt::Debug for DecodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeState")
            .field("inflater", &self.inflater)
            .field("writers", &self.writers.len())
            .finish_non_exhaustive()
    }
}

/// A container file whose framing has been checked: header, codec and blocks.
struct Container<'b> {
    bytes: &'b [u8],
    codec: Codec,
    blocks: Vec<header::Block>,
}

impl<'b> Container<'b> {
    /// The container, and its writer schema from `writers` (parsed and added when new).
    fn open<'w>(
        key: &str,
        bytes: &'b [u8],
        limits: &ArchiveLimits,
        writers: &'w mut HashMap<String, Writer>,
    ) -> Result<(Self, &'w mut Writer), ReplayError> {
        if bytes.len() as u64 > limits.max_object_bytes {
            return Err(ReplayError::OverLimit {
                key: key.to_string(),
                message: format!(
                    "the object is {} bytes, more than the limit of {} ([source.archive] max_object_bytes)",
                    bytes.len(),
                    limits.max_object_bytes
                ),
            });
        }
        let header = header::header(bytes).map_err(|m| corrupt(key, m))?;
        let json = header
            .schema
            .ok_or_else(|| corrupt(key, "the header has no avro.schema"))?;
        let json = std::str::from_utf8(json)
            .map_err(|_| corrupt(key, "the header's writer schema is not UTF-8"))?;
        let codec = Codec::from_header(header.codec).map_err(|m| corrupt(key, m))?;
        let blocks =
            header::blocks(bytes, &header, MAX_BLOCK_RECORDS).map_err(|m| corrupt(key, m))?;
        if !writers.contains_key(json) {
            let writer = Writer::parse(key, json)?;
            if writers.len() >= MAX_WRITERS {
                writers.clear();
            }
            writers.insert(json.to_string(), writer);
        }
        let writer = writers
            .get_mut(json)
            .ok_or_else(|| corrupt(key, "the writer schema vanished from the cache"))?;
        Ok((
            Self {
                bytes,
                codec,
                blocks,
            },
            writer,
        ))
    }

    /// Block `index` inflated into `inflater`'s buffer, within the block limit and what is left
    /// of the object's (`budget`, reduced by the block's inflated size).
    fn inflate<'i>(
        &'i self,
        inflater: &'i mut Inflater,
        key: &str,
        index: usize,
        limits: &ArchiveLimits,
        budget: &mut usize,
    ) -> Result<&'i [u8], ReplayError> {
        let block = &self.blocks[index];
        let (limit, setting) = if limits.max_block_bytes <= *budget {
            (limits.max_block_bytes, "[source.archive] max_block_bytes")
        } else {
            (
                *budget,
                "what is left of [source.archive] max_inflated_bytes for the whole object",
            )
        };
        let at = |m: InflateError| {
            let message = format!("block {index} at byte {}: {m}", block.range.start);
            match m {
                InflateError::Damaged(_) => corrupt(key, message),
                InflateError::TooLarge(_) => ReplayError::OverLimit {
                    key: key.to_string(),
                    message,
                },
            }
        };
        let data = inflater
            .inflate(self.codec, &self.bytes[block.data.clone()], limit, setting)
            .map_err(at)?;
        *budget -= data.len();
        Ok(data)
    }

    /// The records of an inflated block, each value checked ([`Walker::records`]) or framed
    /// only ([`Walker::frame`]).
    fn records(
        &self,
        key: &str,
        walker: &Walker<'_>,
        values: Values,
        index: usize,
        data: &[u8],
    ) -> Result<Vec<Record>, ReplayError> {
        let block = &self.blocks[index];
        let records = match values {
            Values::Checked => walker.records(data, block.count),
            Values::Framed => walker.frame(data, block.count),
        };
        records.map_err(|m| {
            corrupt(
                key,
                format!("block {index} at byte {}: {m}", block.range.start),
            )
        })
    }
}

/// Decodes a whole file into batches (records below `file.from` skipped).
pub fn decode_file(
    file: &FileToDecode<'_>,
    bytes: &Bytes,
    mapping: &Arc<TableMapping>,
    state: &mut DecodeState,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let DecodeState {
        wire,
        inflater,
        writers,
    } = state;
    let (container, writer) = Container::open(file.key, bytes, &file.limits, writers)?;
    let batches = match writer.shape {
        Shape::Value => decode_values(file, &container, writer, inflater, mapping)?,
        Shape::RawBytes | Shape::Envelope => {
            decode_framed(file, &container, writer, inflater, wire)?
        }
    };
    Ok(batches
        .into_iter()
        .filter(|b| b.range.end > file.from)
        .map(|b| b.skip_before(file.from))
        .collect())
}

/// One fetched object of a run of consecutive objects of a partition.
#[derive(Debug)]
pub struct Fetched<'a> {
    /// Object key.
    pub key: &'a str,
    /// Start offset from the key.
    pub start_offset: i64,
    /// Next file's start offset in this partition, if any.
    pub next_start: Option<i64>,
    /// The object's bytes.
    pub bytes: &'a Bytes,
}

/// What a run of objects decoded to.
#[derive(Debug)]
pub struct DecodedRun {
    /// The batches, in offset order, contiguous, from the run's start position.
    pub batches: Vec<SourceBatch>,
    /// The next offset not yet emitted after them.
    pub next: i64,
    /// What stopped the run before its last object (the batches before it stand).
    pub error: Option<ReplayError>,
}

/// Decodes consecutive objects of one partition from offset `from`, as [`decode_file`] on each
/// in turn would, with each file's start position where the previous one ended.
///
/// Value records of consecutive files with one writer schema go into one arrow-avro batch of
/// up to `batch_rows` rows, across file boundaries: Kafka Connect's `flush.size` 1,000 makes
/// files of 1,000 records, and decoding each into its own batch and concatenating them later
/// costs a copy of every value. A group holds no record that is not a row: when arrow-avro or
/// the mapping refuses anything in it, or a file cannot join one (raw bytes and envelopes, a
/// writer schema the table cannot read, records to skip, damage), the files of the group are
/// decoded again one by one by [`decode_file`], which isolates each bad record as a dead letter
/// or names the damaged object. A failure after some batches stops the run with them kept.
pub fn decode_run(
    partition: &TopicPartition,
    objects: &[Fetched<'_>],
    from: i64,
    batch_rows: usize,
    limits: ArchiveLimits,
    mapping: &Arc<TableMapping>,
    state: &mut DecodeState,
) -> DecodedRun {
    let mut run = Run {
        partition,
        objects,
        batch_rows: batch_rows.max(1),
        limits,
        mapping,
        batches: Vec::new(),
        next: from,
        group: None,
    };
    let error = run.decode_all(state).err();
    DecodedRun {
        batches: run.batches,
        next: run.next,
        error,
    }
}

/// Value records of consecutive files being decoded into one batch.
struct Group {
    /// The writer schema's text (its key in [`DecodeState::writers`]).
    writer: String,
    /// Where the group's range starts.
    start: i64,
    /// Where it ends so far.
    end: i64,
    /// Each row's offset.
    offsets: Vec<i64>,
    /// The files it holds records of, each with the position it was decoded from: what is
    /// decoded again by [`decode_file`] when the group fails.
    files: Vec<(usize, i64)>,
}

impl Group {
    fn new(writer: &str, start: i64, file: (usize, i64)) -> Self {
        Self {
            writer: writer.to_string(),
            start,
            end: start,
            offsets: Vec::new(),
            files: vec![file],
        }
    }

    /// The group's batch (none for an empty range) from `values`' grouped decoder, or the group
    /// back when arrow-avro or the mapping refused something of it, or when a `uuid` string
    /// kept as text ([`ValueDecoder::build_grouped`]) is not in canonical form: the writer's
    /// groups are then decoded exactly from the next one on (text that is not canonical once
    /// is likely to be so again, and each such group is decoded twice).
    fn flush(
        self,
        values: Option<&mut ValueDecoder>,
        mapping: &TableMapping,
        partition: &TopicPartition,
    ) -> Result<Option<SourceBatch>, Group> {
        let decoded = values.and_then(|values| {
            let batch = values.grouped.as_mut()?.flush();
            if let Ok(Some(batch)) = &batch
                && !canonical_uuid_text(batch, values.text_uuid_columns())
            {
                values.text_uuids = None;
                return Some(Err(()));
            }
            Some(batch.map_err(|_| ()))
        });
        let records = match decoded {
            Some(Ok(Some(batch))) if batch.num_rows() == self.offsets.len() => {
                match mapping.normalize(batch) {
                    Ok(normalized) if normalized.rejected.is_empty() => normalized.records,
                    _ => return Err(self),
                }
            }
            Some(Ok(None)) | None if self.offsets.is_empty() => {
                RecordBatch::new_empty(mapping.value_schema().clone())
            }
            _ => return Err(self),
        };
        Ok((self.end > self.start).then(|| SourceBatch {
            partition: partition.clone(),
            range: OffsetRange::new(self.start, self.end),
            records_in: self.offsets.len() as u64,
            records,
            offsets: self.offsets,
            dead_letters: Vec::new(),
        }))
    }
}

/// How a file went into the group.
enum Join {
    /// Whole.
    Joined,
    /// Not at all: the group is closed and [`decode_file`] decodes it.
    Alone,
    /// Something of the group was refused or the file is damaged: the group's files (this one
    /// among them) are decoded again one by one.
    Failed,
}

struct Run<'r, 'o> {
    partition: &'r TopicPartition,
    objects: &'r [Fetched<'o>],
    batch_rows: usize,
    limits: ArchiveLimits,
    mapping: &'r Arc<TableMapping>,
    batches: Vec<SourceBatch>,
    next: i64,
    group: Option<Group>,
}

impl Run<'_, '_> {
    fn decode_all(&mut self, state: &mut DecodeState) -> Result<(), ReplayError> {
        for index in 0..self.objects.len() {
            match self.join(index, state)? {
                Join::Joined => {}
                Join::Alone => {
                    self.close(state)?;
                    self.alone(index, self.next, state)?;
                }
                Join::Failed => self.redo(state)?,
            }
        }
        self.close(state)
    }

    /// [`decode_file`] on file `index` from `from`; its batches are kept.
    fn alone(
        &mut self,
        index: usize,
        from: i64,
        state: &mut DecodeState,
    ) -> Result<(), ReplayError> {
        let object = &self.objects[index];
        let file = FileToDecode {
            key: object.key,
            partition: self.partition,
            start_offset: object.start_offset,
            next_start: object.next_start,
            from,
            batch_rows: self.batch_rows,
            limits: self.limits,
        };
        let batches = decode_file(&file, object.bytes, self.mapping, state)?;
        if let Some(last) = batches.last() {
            self.next = self.next.max(last.range.end);
        }
        self.batches.extend(batches);
        Ok(())
    }

    /// The group's files decoded again one by one (what its decoder holds is dropped).
    fn redo(&mut self, state: &mut DecodeState) -> Result<(), ReplayError> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        if let Some(writer) = state.writers.get_mut(&group.writer) {
            writer.values.grouped = None;
        }
        for (index, from) in group.files {
            self.alone(index, from, state)?;
        }
        Ok(())
    }

    /// Closes the group: its batch is kept, or its files are decoded again when it fails.
    fn close(&mut self, state: &mut DecodeState) -> Result<(), ReplayError> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let values = state.writers.get_mut(&group.writer).map(|w| &mut w.values);
        match group.flush(values, self.mapping, self.partition) {
            Ok(batch) => self.batches.extend(batch),
            Err(group) => {
                self.group = Some(group);
                self.redo(state)?;
            }
        }
        Ok(())
    }

    /// Feeds file `index`'s records into the group (closing a group of another writer schema
    /// first), closing it at every `batch_rows` rows. On [`Join::Alone`] the group is left as
    /// it was, for the caller to close before the file is decoded alone.
    fn join(&mut self, index: usize, state: &mut DecodeState) -> Result<Join, ReplayError> {
        let object = &self.objects[index];
        let json = header::header(object.bytes)
            .ok()
            .and_then(|h| h.schema)
            .and_then(|json| std::str::from_utf8(json).ok());
        let (Some(json), true) = (json, self.next <= object.start_offset) else {
            return Ok(Join::Alone);
        };
        if self.group.as_ref().is_some_and(|g| g.writer != json) {
            self.close(state)?;
        }
        let from = self.next;
        let DecodeState {
            inflater, writers, ..
        } = state;
        let Ok((container, writer)) =
            Container::open(object.key, object.bytes, &self.limits, writers)
        else {
            return Ok(Join::Alone);
        };
        if writer.shape != Shape::Value
            || writer
                .unreadable
                .get_or_insert_with(|| self.mapping.unreadable_writer(&writer.schema))
                .is_some()
        {
            return Ok(Join::Alone);
        }
        match self.group.as_mut() {
            Some(group) => group.files.push((index, from)),
            None => {
                let fresh = writer
                    .values
                    .grouped
                    .as_ref()
                    .is_some_and(|d| d.batch_size() >= self.batch_rows && d.batch_is_empty());
                if !fresh {
                    match writer.values.build_grouped(self.batch_rows) {
                        Ok(decoder) => writer.values.grouped = Some(decoder),
                        Err(_) => return Ok(Join::Alone),
                    }
                }
                self.group = Some(Group::new(json, object.start_offset, (index, from)));
            }
        }
        let Ok(walker) = Walker::new(&writer.layout) else {
            return Ok(Join::Failed);
        };
        let mut budget = self.limits.max_inflated_bytes;
        let mut offset = object.start_offset;
        for block in 0..container.blocks.len() {
            if container.blocks[block].count == 0 {
                continue;
            }
            let Ok(data) =
                container.inflate(inflater, object.key, block, &self.limits, &mut budget)
            else {
                return Ok(Join::Failed);
            };
            let Ok(records) = container.records(object.key, &walker, Values::Framed, block, data)
            else {
                return Ok(Join::Failed);
            };
            for record in &records {
                let Some(group) = self.group.as_mut() else {
                    return Ok(Join::Failed);
                };
                if group.offsets.len() >= self.batch_rows {
                    // Full: closed here, and a new group goes on from this record.
                    let mut full = Group::new(json, offset, (index, offset));
                    std::mem::swap(group, &mut full);
                    full.end = offset;
                    match full.flush(Some(&mut writer.values), self.mapping, self.partition) {
                        Ok(batch) => self.batches.extend(batch),
                        Err(full) => {
                            self.group = Some(full);
                            return Ok(Join::Failed);
                        }
                    }
                }
                let Some(decoder) = writer.values.grouped.as_mut() else {
                    return Ok(Join::Failed);
                };
                let body = &data[record.range.clone()];
                let fed = decoder.decode(&PREFIX).and_then(|_| decoder.decode(body));
                if !matches!(fed, Ok(n) if n == body.len() && !body.is_empty()) {
                    return Ok(Join::Failed);
                }
                if let Some(group) = self.group.as_mut() {
                    group.offsets.push(offset);
                }
                offset += 1;
            }
        }
        let last = (offset > object.start_offset).then_some(offset - 1);
        let end = match (last, object.next_start) {
            (Some(last), Some(next)) => next.max(last + 1),
            (Some(last), None) => last + 1,
            (None, Some(next)) => next.max(object.start_offset),
            (None, None) => object.start_offset,
        };
        if let Some(group) = self.group.as_mut() {
            group.end = end;
        }
        self.next = self.next.max(end);
        Ok(Join::Joined)
    }
}

/// Closes the ranges: contiguous from the file start, the last one to the next file's start.
fn close_ranges(
    file: &FileToDecode<'_>,
    mut batches: Vec<SourceBatch>,
    last_offset: Option<i64>,
    empty: &arrow_schema::SchemaRef,
) -> Vec<SourceBatch> {
    let file_end = match (last_offset, file.next_start) {
        (Some(last), Some(next)) => next.max(last + 1),
        (Some(last), None) => last + 1,
        (None, Some(next)) => next.max(file.start_offset),
        (None, None) => file.start_offset,
    };
    let mut start = file
        .start_offset
        .min(batches.first().map_or(file.start_offset, |b| b.range.start));
    let count = batches.len();
    for (i, batch) in batches.iter_mut().enumerate() {
        let end = if i + 1 == count {
            file_end
        } else {
            batch.range.end
        };
        batch.range = OffsetRange::new(start, end);
        start = end;
    }
    if batches.is_empty() && file_end > file.start_offset {
        // An empty file still moves the position to the next file's start.
        batches.push(SourceBatch {
            partition: file.partition.clone(),
            range: OffsetRange::new(file.start_offset, file_end),
            records: RecordBatch::new_empty(empty.clone()),
            offsets: Vec::new(),
            dead_letters: Vec::new(),
            records_in: 0,
        });
    }
    batches
}

fn decode_values(
    file: &FileToDecode<'_>,
    container: &Container<'_>,
    writer: &mut Writer,
    inflater: &mut Inflater,
    mapping: &Arc<TableMapping>,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let Writer {
        schema,
        layout,
        unreadable,
        values: decoder,
        ..
    } = writer;
    let walker = Walker::new(layout).map_err(|m| corrupt(file.key, m))?;
    // A writer schema the table cannot read: every record is an `unmappable-schema` dead letter
    // with this reason, and the replay goes on with the next file.
    let unreadable = unreadable
        .get_or_insert_with(|| mapping.unreadable_writer(schema))
        .as_ref()
        .map(|problems| {
            format!(
                "{}: the file's writer schema cannot be read as the table's schema: {problems}",
                file.key
            )
        });
    let key: Arc<str> = Arc::from(file.key);
    let mut budget = file.limits.max_inflated_bytes;
    let mut batches = Vec::new();
    let mut next = file.start_offset;
    for index in 0..container.blocks.len() {
        if container.blocks[index].count == 0 {
            // An empty block (the framing check rejects one with data).
            continue;
        }
        let data = container.inflate(inflater, file.key, index, &file.limits, &mut budget)?;
        // Framed only: arrow-avro refuses what the value checks flag, and the checks run, to
        // name the field, only on a group it refuses (`ValueDecoder::decode`).
        let records = container.records(file.key, &walker, Values::Framed, index, data)?;
        for chunk in records.chunks(file.batch_rows.max(1)) {
            let n = chunk.len() as i64;
            let letter = |i: usize, kind, message: String| DeadLetter {
                offset: next + i as i64,
                raw: Bytes::copy_from_slice(&data[chunk[i].range.clone()]),
                object_key: Some(key.clone()),
                kind,
                message,
            };
            let (records, offsets, dead_letters) = match &unreadable {
                Some(reason) => (
                    RecordBatch::new_empty(mapping.value_schema().clone()),
                    Vec::new(),
                    (0..chunk.len())
                        .map(|i| letter(i, DeadLetterKind::UnmappableSchema, reason.clone()))
                        .collect(),
                ),
                None => {
                    let decoded = decoder
                        .decode(data, chunk, &walker, mapping)
                        .map_err(|m| corrupt(file.key, m))?;
                    (
                        decoded.records,
                        decoded.rows.iter().map(|i| next + *i as i64).collect(),
                        decoded
                            .failed
                            .into_iter()
                            .map(|(i, kind, reason)| letter(i, kind, reason))
                            .collect(),
                    )
                }
            };
            batches.push(SourceBatch {
                partition: file.partition.clone(),
                range: OffsetRange::new(next, next + n),
                records,
                offsets,
                dead_letters,
                records_in: n as u64,
            });
            next += n;
        }
    }
    let last = (next > file.start_offset).then_some(next - 1);
    Ok(close_ranges(file, batches, last, mapping.value_schema()))
}

/// The batch of a decoded group `which`; the index of each of its rows goes to `rows`, and the
/// records whose values the table cannot hold, by name, to `failed`.
fn accept(
    normalized: Normalized,
    which: &[usize],
    rows: &mut Vec<usize>,
    failed: &mut Vec<(usize, DeadLetterKind, String)>,
) -> RecordBatch {
    let mut rejected = normalized.rejected.into_iter().peekable();
    for (j, &i) in which.iter().enumerate() {
        match rejected.next_if(|(row, _)| *row == j) {
            Some((_, reason)) => failed.push((i, DeadLetterKind::Unconvertible, reason)),
            None => rows.push(i),
        }
    }
    normalized.records
}

/// The Confluent prefix each value record is fed to arrow-avro's [`Decoder`] with: magic 0 and
/// schema id 0, the file's writer schema.
const PREFIX: [u8; 5] = [0; 5];

/// Decodes value records with arrow-avro against the file's writer schema, isolating bad ones.
struct ValueDecoder {
    /// The header's writer schema, or its text re-serialized when arrow-avro refuses the
    /// original (see [`ValueDecoder::build`]).
    json: String,
    /// The decoder of [`ValueDecoder::decode`] (the exact one, `uuid` strings read as 16 bytes).
    decoder: Option<Decoder>,
    /// The decoder of a group of whole files ([`ValueDecoder::build_grouped`]).
    grouped: Option<Decoder>,
    /// The schema with its top-level `uuid` strings read as text, and their names
    /// ([`kappa_schema::names::text_uuid_fields`]).
    text_uuids: Option<(String, Vec<String>)>,
}

/// Rows of a group of records, and the records that are dead letters.
struct DecodedValues {
    /// The rows, normalized to the table's value schema.
    records: RecordBatch,
    /// Index (into the group) of each row.
    rows: Vec<usize>,
    /// Index, kind and reason of each record that is not a row: `undecodable` (its bytes do not
    /// decode) or `unconvertible` (a value the table cannot hold).
    failed: Vec<(usize, DeadLetterKind, String)>,
}

impl ValueDecoder {
    /// Decodes `records` (ranges of `data`, framed by `walker` without their values checked);
    /// the error is the decoder's, not a record's. The group is decoded whole first; when the
    /// decoder refuses it, `walker` checks each record's values, flagged ones become dead
    /// letters naming the field, and the rest are decoded in halves until each bad one is alone.
    fn decode(
        &mut self,
        data: &[u8],
        records: &[Record],
        walker: &Walker<'_>,
        mapping: &TableMapping,
    ) -> Result<DecodedValues, String> {
        if records.iter().all(|r| r.bad.is_none()) {
            let all: Vec<usize> = (0..records.len()).collect();
            if let Ok(normalized) = self.group(data, records, &all, mapping)? {
                let (mut rows, mut failed) = (Vec::with_capacity(all.len()), Vec::new());
                let records = accept(normalized, &all, &mut rows, &mut failed);
                return Ok(DecodedValues {
                    records,
                    rows,
                    failed,
                });
            }
            // The decoder's partial state cannot be trusted after a failure.
            self.decoder = None;
        }
        let mut records = records.to_vec();
        walker.check(data, &mut records)?;
        self.decode_checked(data, &records, mapping)
    }

    /// Decodes `records`, whose values `walker` has checked.
    fn decode_checked(
        &mut self,
        data: &[u8],
        records: &[Record],
        mapping: &TableMapping,
    ) -> Result<DecodedValues, String> {
        let mut failed = Vec::new();
        let mut candidates = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match &record.bad {
                Some(reason) => failed.push((i, DeadLetterKind::Undecodable, reason.clone())),
                None => candidates.push(i),
            }
        }
        let mut batches = Vec::new();
        let mut rows = Vec::with_capacity(candidates.len());
        self.isolate(
            data,
            records,
            &candidates,
            mapping,
            &mut batches,
            &mut rows,
            &mut failed,
        )?;
        failed.sort_by_key(|(i, _, _)| *i);
        // Rows in record order: the halves of a split group come back in order.
        let records = arrow_select::concat::concat_batches(mapping.value_schema(), &batches)
            .map_err(|e| format!("concatenating decoded records: {e}"))?;
        Ok(DecodedValues {
            records,
            rows,
            failed,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn isolate(
        &mut self,
        data: &[u8],
        records: &[Record],
        which: &[usize],
        mapping: &TableMapping,
        batches: &mut Vec<RecordBatch>,
        rows: &mut Vec<usize>,
        failed: &mut Vec<(usize, DeadLetterKind, String)>,
    ) -> Result<(), String> {
        if which.is_empty() {
            return Ok(());
        }
        match self.group(data, records, which, mapping)? {
            Ok(normalized) => batches.push(accept(normalized, which, rows, failed)),
            Err(reason) => {
                // The decoder's partial state cannot be trusted after a failure.
                self.decoder = None;
                if let [single] = which {
                    failed.push((*single, DeadLetterKind::Undecodable, reason));
                } else {
                    let (left, right) = which.split_at(which.len() / 2);
                    self.isolate(data, records, left, mapping, batches, rows, failed)?;
                    self.isolate(data, records, right, mapping, batches, rows, failed)?;
                }
            }
        }
        Ok(())
    }

    /// One group decoded and normalized, or why a record of it does not convert (inner error).
    fn group(
        &mut self,
        data: &[u8],
        records: &[Record],
        which: &[usize],
        mapping: &TableMapping,
    ) -> Result<Result<Normalized, String>, String> {
        let rebuild = self
            .decoder
            .as_ref()
            .is_none_or(|d| d.batch_size() < which.len() || !d.batch_is_empty());
        if rebuild {
            self.decoder = Some(self.build(which.len())?);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err("value decoder missing after build".into());
        };
        for &i in which {
            let body = &data[records[i].range.clone()];
            let fed = decoder.decode(&PREFIX).and_then(|_| decoder.decode(body));
            match fed {
                Ok(n) if n == body.len() && !body.is_empty() => {}
                Ok(n) => {
                    return Ok(Err(format!(
                        "the record's {} bytes do not decode as one record ({n} taken)",
                        body.len()
                    )));
                }
                Err(e) => return Ok(Err(format!("the record does not decode: {e}"))),
            }
        }
        let batch = match decoder.flush() {
            Ok(Some(batch)) if batch.num_rows() == which.len() => batch,
            Ok(batch) => {
                return Ok(Err(format!(
                    "{} records decoded, {} fed",
                    batch.map_or(0, |b| b.num_rows()),
                    which.len()
                )));
            }
            Err(e) => return Ok(Err(format!("the record does not decode: {e}"))),
        };
        Ok(mapping.normalize(batch).map_err(|e| e.to_string()))
    }

    /// A decoder for the header's writer schema. A schema text arrow-avro refuses is tried once
    /// more re-serialized ([`kappa_schema::names::reserialized`]): `apache-avro` 0.21 writes the
    /// attributes of a decimal on `fixed` twice in a file's header, and arrow-avro refuses
    /// duplicate keys.
    fn build(&mut self, capacity: usize) -> Result<Decoder, String> {
        match Self::build_for(&self.json, capacity) {
            Ok(decoder) => Ok(decoder),
            Err(refused) => {
                let Some(json) = kappa_schema::names::reserialized(&self.json)
                    .filter(|json| json.as_str() != self.json)
                else {
                    return Err(refused);
                };
                let decoder = Self::build_for(&json, capacity).map_err(|_| refused)?;
                self.json = json;
                Ok(decoder)
            }
        }
    }

    /// The decoder of a group of whole files: top-level `uuid` strings are read as the text they
    /// are instead of being parsed into 16 bytes that the table's `string` column formats back
    /// (~4% of a replay's CPU on `orders`). A group whose text is not all canonical, lower-case
    /// and hyphenated ([`canonical_uuid_text`]) is refused and decoded again file by file with
    /// the exact decoder, so the rows are the same either way: canonical text round-trips to
    /// itself, anything else is formatted (`ABC…` → `abc…`) or is a dead letter as before.
    fn build_grouped(&mut self, capacity: usize) -> Result<Decoder, String> {
        if let Some((json, _)) = &self.text_uuids
            && let Ok(decoder) = Self::build_for(json, capacity)
        {
            return Ok(decoder);
        }
        self.build(capacity)
    }

    /// The columns [`ValueDecoder::build_grouped`]'s decoder may leave as text.
    fn text_uuid_columns(&self) -> &[String] {
        self.text_uuids.as_ref().map_or(&[], |(_, names)| names)
    }

    fn build_for(json: &str, capacity: usize) -> Result<Decoder, String> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(0), AvroSchema::new(json.to_string()))
            .map_err(|e| format!("arrow-avro cannot use the header's writer schema: {e}"))?;
        ReaderBuilder::new()
            .with_batch_size(capacity.max(1))
            .with_utf8_view(false)
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(|e| format!("arrow-avro cannot decode the header's writer schema: {e}"))
    }
}

/// Whether every value of the `columns` of `batch` that arrow-avro left as text is a UUID in
/// canonical form (36 bytes: lower-case hex, hyphens after the 8th, 12th, 16th and 20th digit),
/// or NULL. A column decoded as 16 bytes (the exact decoder) has nothing to check; one missing or
/// of any other type is refused, so that nothing unchecked gets through.
fn canonical_uuid_text(batch: &RecordBatch, columns: &[String]) -> bool {
    columns.iter().all(|name| {
        let Some(column) = batch.column_by_name(name) else {
            return false;
        };
        if matches!(
            column.data_type(),
            arrow_schema::DataType::FixedSizeBinary(16)
        ) {
            return true;
        }
        let Some(text) = column.as_string_opt::<i32>() else {
            return false;
        };
        let (offsets, data) = (text.value_offsets(), text.value_data());
        let first = offsets.first().map_or(0, |o| *o as usize);
        // The common case, every value present and 36 bytes long: the values are checked
        // back to back, 36 bytes at a time.
        let packed = arrow_array::Array::null_count(text) == 0
            && offsets
                .iter()
                .enumerate()
                .all(|(row, offset)| *offset as usize == first + row * 36);
        if packed {
            return data
                .get(first..first + (offsets.len() - 1) * 36)
                .is_some_and(all_canonical_uuids);
        }
        offsets.windows(2).enumerate().all(|(row, bounds)| {
            arrow_array::Array::is_null(text, row)
                || data
                    .get(bounds[0] as usize..bounds[1] as usize)
                    .is_some_and(|value| value.len() == 36 && all_canonical_uuids(value))
        })
    })
}

/// Whether `text` is UUIDs back to back, each as [`uuid::Uuid`]'s lower-case hyphenated form
/// writes it. Each byte position of the 36 gathers its own verdict over all the UUIDs, so that
/// the loop is branch-free and vectorizes (a replay checks one per event).
fn all_canonical_uuids(text: &[u8]) -> bool {
    const HYPHEN: [bool; 36] = {
        let mut hyphen = [false; 36];
        hyphen[8] = true;
        hyphen[13] = true;
        hyphen[18] = true;
        hyphen[23] = true;
        hyphen
    };
    let chunks = text.chunks_exact(36);
    if !chunks.remainder().is_empty() {
        return false;
    }
    let mut wrong = [0u8; 36];
    for chunk in chunks {
        for (i, (&c, wrong)) in chunk.iter().zip(wrong.iter_mut()).enumerate() {
            let hex = (c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6);
            let fits = if HYPHEN[i] { c == b'-' } else { hex };
            *wrong |= u8::from(!fits);
        }
    }
    wrong.iter().all(|w| *w == 0)
}

fn decode_framed(
    file: &FileToDecode<'_>,
    container: &Container<'_>,
    writer: &Writer,
    inflater: &mut Inflater,
    wire: &mut WireDecoder,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let walker = Walker::new(&writer.layout).map_err(|m| corrupt(file.key, m))?;
    let mut budget = file.limits.max_inflated_bytes;
    // The file's inflated blocks, one after the other (the inflater's buffer is reused from
    // block to block): records hold ranges of it, not a copy each. The budget bounds it.
    let mut held: Vec<u8> = Vec::new();
    // (offset, value) pairs; None for tombstones.
    let mut records: Vec<(i64, Option<Range<usize>>)> = Vec::new();
    // An envelope's key and timestamp, per record, when the table keeps them.
    let keeps_metadata = !wire.mapping().kafka_metadata().is_empty();
    let mut metadata: Vec<(Option<Range<usize>>, Option<i64>)> = Vec::new();
    let mut index = 0i64;
    for block in 0..container.blocks.len() {
        if container.blocks[block].count == 0 {
            continue;
        }
        let data = container.inflate(inflater, file.key, block, &file.limits, &mut budget)?;
        let base = held.len();
        held.extend_from_slice(data);
        let in_held = |range: Range<usize>| base + range.start..base + range.end;
        for found in container.records(file.key, &walker, Values::Checked, block, data)? {
            let value = found.value.map(in_held);
            let record = match writer.shape {
                Shape::RawBytes => (file.start_offset + index, value),
                _ => {
                    // The envelope's other fields are not used: what is wrong there is ignored.
                    let offset = found.offset.ok_or_else(|| {
                        corrupt(file.key, format!("envelope record {index} has no offset"))
                    })?;
                    (offset, value)
                }
            };
            if let Some((previous, _)) = records.last()
                && record.0 <= *previous
            {
                return Err(corrupt(
                    file.key,
                    format!(
                        "record {index}: offset {} is not after {previous}",
                        record.0
                    ),
                ));
            }
            records.push(record);
            if keeps_metadata && writer.shape == Shape::Envelope {
                metadata.push((found.key.map(in_held), found.timestamp_ms));
            }
            index += 1;
        }
    }
    let key: Arc<str> = Arc::from(file.key);
    let mut batches = Vec::new();
    let mut previous_end = file.start_offset;
    let mut first = 0;
    for chunk in records.chunks(file.batch_rows.max(1)) {
        let framed: Vec<(i64, Option<&[u8]>)> = chunk
            .iter()
            .map(|(o, v)| (*o, v.clone().map(|r| &held[r])))
            .collect();
        let mut decoded =
            wire.decode_records(&framed, Some(&key))
                .map_err(|source| ReplayError::Schema {
                    key: file.key.to_string(),
                    source,
                })?;
        if !metadata.is_empty() {
            // The decoded rows are the records at `decoded.offsets`, in order.
            let known = &metadata[first..first + chunk.len()];
            let rows = decoded.offsets.iter().map(|offset| {
                match chunk.binary_search_by_key(offset, |(o, _)| *o) {
                    Ok(at) => kappa_schema::KafkaRecordMetadata {
                        key: known[at].0.clone().map(|r| &held[r]),
                        timestamp_ms: known[at].1,
                        headers: None,
                    },
                    Err(_) => kappa_schema::KafkaRecordMetadata::default(),
                }
            });
            let rows: Vec<_> = rows.collect();
            decoded.records = wire
                .mapping()
                .fill_kafka_metadata(decoded.records, rows.into_iter())
                .map_err(|source| ReplayError::Schema {
                    key: file.key.to_string(),
                    source,
                })?;
        }
        first += chunk.len();
        let last = chunk.last().map_or(previous_end, |(o, _)| *o);
        batches.push(SourceBatch {
            partition: file.partition.clone(),
            range: OffsetRange::new(previous_end, last + 1),
            offsets: decoded.offsets,
            records: decoded.records,
            dead_letters: decoded.dead_letters,
            records_in: chunk.len() as u64,
        });
        previous_end = last + 1;
    }
    let last = records.last().map(|(o, _)| *o);
    Ok(close_ranges(file, batches, last, wire.value_schema()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow_array::{ArrayRef, FixedSizeBinaryArray, StringArray};

    use super::*;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn canonical(text: &str) -> bool {
        text.len() == 36 && all_canonical_uuids(text.as_bytes())
    }

    #[test]
    fn only_the_text_the_round_trip_gives_back_is_canonical() {
        assert!(canonical(ID));
        assert!(canonical("00000000-0000-0000-0000-000000000000"));
        assert!(canonical("ffffffff-ffff-ffff-ffff-ffffffffffff"));
        // Every other form `uuid::Uuid` parses, and text that is no UUID.
        for other in [
            "550E8400-E29B-41D4-A716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000A",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
            "550e8400e29b41d4a716446655440000",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b-41d4-a716_446655440000",
            "550e840-0e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000/",
            "550e8400-e29b-41d4-a716-44665544000`",
            "",
        ] {
            assert!(!canonical(other), "{other}");
        }
        // Each position alone: a hyphen where a digit belongs, a digit where a hyphen does.
        for at in 0..36 {
            let mut text = ID.as_bytes().to_vec();
            text[at] = if text[at] == b'-' { b'0' } else { b'-' };
            assert!(!canonical(std::str::from_utf8(&text).unwrap()), "at {at}");
        }
        // What is canonical is exactly what formatting a parsed UUID gives.
        for text in [ID, "550E8400-E29B-41D4-A716-446655440000"] {
            let formatted = uuid::Uuid::parse_str(text).unwrap().to_string();
            assert_eq!(canonical(text), formatted == text, "{text}");
        }
    }

    #[test]
    fn a_batch_is_canonical_when_every_listed_text_column_is() {
        let batch = |ids: Vec<Option<&str>>, other: Vec<&str>| {
            RecordBatch::try_from_iter([
                ("event_id", Arc::new(StringArray::from(ids)) as ArrayRef),
                ("order_id", Arc::new(StringArray::from(other)) as ArrayRef),
            ])
            .unwrap()
        };
        let columns = ["event_id".to_string()];
        let good = batch(vec![Some(ID), None, Some(ID)], vec!["o-1", "o-2", "o-3"]);
        assert!(canonical_uuid_text(&good, &columns));
        assert!(canonical_uuid_text(&good, &[]), "nothing listed");
        let upper = batch(vec![Some(ID), Some(&ID.to_uppercase())], vec!["a", "b"]);
        assert!(!canonical_uuid_text(&upper, &columns));
        assert!(canonical_uuid_text(
            &batch(vec![Some(ID); 3], vec!["a", "b", "c"]),
            &columns
        ));
        // 72 bytes back to back, but not two UUIDs: one short, one long.
        let (short, long) = (&ID[..35], format!("{ID}0"));
        assert_eq!(short.len() + long.len(), 72);
        assert!(!canonical_uuid_text(
            &batch(vec![Some(short), Some(&long)], vec!["a", "b"]),
            &columns
        ));
        // A bad one among many, at either end and in the middle.
        for at in [0, 500, 999] {
            let mut ids = vec![ID.to_string(); 1000];
            ids[at] = ids[at].replace('e', "E");
            let ids: Vec<Option<&str>> = ids.iter().map(|id| Some(id.as_str())).collect();
            assert!(
                !canonical_uuid_text(&batch(ids, vec!["o"; 1000]), &columns),
                "{at}"
            );
        }
        // A column decoded as 16 bytes (the exact decoder) has nothing to check.
        let bytes = RecordBatch::try_from_iter([(
            "event_id",
            Arc::new(FixedSizeBinaryArray::try_from_iter([[7u8; 16]].into_iter()).unwrap())
                as ArrayRef,
        )])
        .unwrap();
        assert!(canonical_uuid_text(&bytes, &columns));
        // Missing, or of another type: refused (decoded again exactly).
        assert!(!canonical_uuid_text(&good, &["user_id".to_string()]));
        let numbers = RecordBatch::try_from_iter([(
            "event_id",
            Arc::new(arrow_array::Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert!(!canonical_uuid_text(&numbers, &columns));
    }

    /// Decodes `records` (bodies) with a decoder built from `json`.
    fn decode_with(json: &str, records: &[Vec<u8>]) -> RecordBatch {
        let mut decoder = ValueDecoder::build_for(json, records.len()).unwrap();
        for body in records {
            decoder.decode(&PREFIX).unwrap();
            assert_eq!(decoder.decode(body).unwrap(), body.len());
        }
        decoder.flush().unwrap().unwrap()
    }

    #[test]
    fn a_nullable_uuid_kept_as_text_is_the_exact_decoders_uuid_or_its_null() {
        // The grouped decoder's schema must give a nullable text column for `["null", uuid]`
        // (a union array would have nothing checked), with the values the exact decoder parses.
        let json = r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":["null",{"type":"string","logicalType":"uuid"}]},
            {"name":"n","type":"long"}]}"#;
        let schema = Schema::parse_str(json).unwrap();
        let ids = [
            Some(ID),
            None,
            Some("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            None,
        ];
        let records: Vec<Vec<u8>> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                use apache_avro::types::Value;
                let id = match id {
                    Some(id) => Value::Union(1, Box::new(Value::String(id.to_string()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                };
                let record =
                    Value::Record(vec![("id".into(), id), ("n".into(), Value::Long(n as i64))]);
                apache_avro::to_avro_datum(&schema, record).unwrap()
            })
            .collect();
        let (text_json, names) = kappa_schema::names::text_uuid_fields(json).unwrap();
        assert_eq!(names, ["id"]);
        let text = decode_with(&text_json, &records);
        let exact = decode_with(json, &records);
        let text_ids = text.column_by_name("id").unwrap().as_string::<i32>();
        let exact_ids = exact.column_by_name("id").unwrap().as_fixed_size_binary();
        for (row, id) in ids.iter().enumerate() {
            match id {
                Some(id) => {
                    let parsed = uuid::Uuid::from_slice(exact_ids.value(row)).unwrap();
                    assert_eq!(parsed.to_string(), *id);
                    assert_eq!(text_ids.value(row), *id);
                }
                None => {
                    assert!(arrow_array::Array::is_null(exact_ids, row));
                    assert!(arrow_array::Array::is_null(text_ids, row));
                }
            }
        }
        assert!(canonical_uuid_text(&text, &names));
    }
}
