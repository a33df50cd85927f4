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
//! **Damaged files** (see `tests/fuzz_ocf.rs`) are errors naming the object key, never panics or
//! hangs: the framing is read first ([`super::header`]: magic, metadata, every block's sync
//! marker) and the header's schema names are checked before apache-avro parses them; value-record
//! blocks are decoded one at a time by arrow-avro (see `decode_block` for the hang this avoids).

use std::io::Cursor;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::Value;
use arrow_array::RecordBatch;
use arrow_avro::reader::ReaderBuilder;
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind, OffsetRange, SourceBatch, TopicPartition};
use kappa_schema::{TableMapping, WireDecoder};

use super::header;
use crate::error::ReplayError;

/// Records one block of a value-record file may say it holds (a damaged count must not size a
/// decode buffer); Kafka Connect writes blocks of far fewer.
const MAX_BLOCK_RECORDS: u64 = 1 << 20;

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
}

fn corrupt(key: &str, message: impl std::fmt::Display) -> ReplayError {
    ReplayError::Corrupt {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// An apache-avro reader over `bytes`, once the header's writer schema has passed
/// [`kappa_schema::names::check_names`] (apache-avro panics on an invalid name).
fn open_reader<'s, 'b>(
    key: &str,
    bytes: &'b [u8],
) -> Result<apache_avro::Reader<'s, &'b [u8]>, ReplayError> {
    let header = header::header(bytes).map_err(|m| corrupt(key, m))?;
    if let Some(json) = header.schema {
        let json = std::str::from_utf8(json)
            .map_err(|_| corrupt(key, "the header's writer schema is not UTF-8"))?;
        kappa_schema::names::check_names(json)
            .map_err(|m| corrupt(key, format!("the header's writer schema: {m}")))?;
    }
    apache_avro::Reader::new(bytes)
        .map_err(|e| corrupt(key, format!("not an Avro object container file ({e})")))
}

/// The shape of a file from its header.
pub fn shape_of(key: &str, bytes: &[u8]) -> Result<Shape, ReplayError> {
    let reader = open_reader(key, bytes)?;
    Ok(match reader.writer_schema() {
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
    })
}

/// Decodes a whole file into batches (records below `file.from` skipped).
pub fn decode_file(
    file: &FileToDecode<'_>,
    bytes: &Bytes,
    mapping: &Arc<TableMapping>,
    wire: &mut WireDecoder,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let batches = match shape_of(file.key, bytes)? {
        Shape::Value => decode_values(file, bytes, mapping)?,
        Shape::RawBytes | Shape::Envelope => decode_framed(file, bytes, wire)?,
    };
    Ok(batches
        .into_iter()
        .filter(|b| b.range.end > file.from)
        .map(|b| b.skip_before(file.from))
        .collect())
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
    bytes: &Bytes,
    mapping: &Arc<TableMapping>,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let header = open_reader(file.key, bytes)?;
    if let Some(problems) = mapping.unreadable_writer(header.writer_schema()) {
        let reason = format!(
            "{}: the file's writer schema cannot be read as the table's schema: {problems}",
            file.key
        );
        return dead_letter_values(file, header, &reason, mapping);
    }
    let header = header::header(bytes).map_err(|m| corrupt(file.key, m))?;
    let blocks =
        header::blocks(bytes, &header, MAX_BLOCK_RECORDS).map_err(|m| corrupt(file.key, m))?;
    let mut batches = Vec::new();
    let mut next = file.start_offset;
    for (index, block) in blocks.iter().enumerate() {
        if block.count == 0 {
            // An empty block (the framing check rejects one with data).
            continue;
        }
        let records = decode_block(file.key, bytes, &header, index, block, next)?;
        let count = records.num_rows();
        let normalized = mapping
            .normalize(records)
            .map_err(|source| ReplayError::Schema {
                key: file.key.to_string(),
                source,
            })?;
        // Records with a value the table cannot hold are dead letters; the others rows.
        let letters = unconvertible(file, bytes, &header, block, next, normalized.rejected)?;
        let records = normalized.records;
        let kept: Vec<i64> = (next..next + count as i64)
            .filter(|o| letters.binary_search_by_key(o, |d| d.offset).is_err())
            .collect();
        let step = file.batch_rows.max(1);
        let mut row = 0;
        for start in (0..count).step_by(step) {
            let range = OffsetRange::new(
                next + start as i64,
                next + (start + step.min(count - start)) as i64,
            );
            let offsets: Vec<i64> = kept[row..]
                .iter()
                .take_while(|o| **o < range.end)
                .copied()
                .collect();
            let n = offsets.len();
            batches.push(SourceBatch {
                partition: file.partition.clone(),
                records: records.slice(row, n),
                offsets,
                dead_letters: letters
                    .iter()
                    .filter(|d| range.contains(d.offset))
                    .cloned()
                    .collect(),
                records_in: (range.end - range.start) as u64,
                range,
            });
            row += n;
        }
        next += count as i64;
    }
    let last = (next > file.start_offset).then_some(next - 1);
    Ok(close_ranges(file, batches, last, mapping.value_schema()))
}

/// Decodes one non-empty block of a value-record file with arrow-avro, alone and in one batch of
/// exactly its record count. arrow-avro 58's OCF reader loops forever on a block whose data outlasts its
/// record count (a damaged count: the decoder is asked for 0 more records and makes no
/// progress); a batch that fills at the count returns before that can happen.
fn decode_block(
    key: &str,
    bytes: &[u8],
    header: &header::Header<'_>,
    index: usize,
    block: &header::Block,
    first_offset: i64,
) -> Result<RecordBatch, ReplayError> {
    let count = usize::try_from(block.count)
        .map_err(|_| corrupt(key, format!("block {index}: record count {}", block.count)))?;
    let (Some(head), Some(body)) = (bytes.get(..header.len), bytes.get(block.range.clone())) else {
        return Err(corrupt(key, format!("block {index} is outside the file")));
    };
    let at = |message: String| {
        corrupt(
            key,
            format!("block {index} (records from offset {first_offset}): {message}"),
        )
    };
    let mut single = Vec::with_capacity(head.len() + body.len());
    single.extend_from_slice(head);
    single.extend_from_slice(body);
    let mut reader = ReaderBuilder::new()
        .with_batch_size(count)
        .with_utf8_view(false)
        .build(Cursor::new(single.as_slice()))
        .map_err(|e| at(format!("cannot read the Avro container: {e}")))?;
    match reader.next() {
        Some(Ok(batch)) if batch.num_rows() == count => Ok(batch),
        Some(Ok(batch)) => Err(at(format!(
            "{} records decoded, the block says {count}",
            batch.num_rows()
        ))),
        Some(Err(e)) => Err(at(e.to_string())),
        None => Err(at(format!("no records decoded, the block says {count}"))),
    }
}

/// The `rejected` records of a block (index in the block, reason) as `unconvertible` dead letters;
/// `raw` is the record's Avro binary encoding under the file's writer schema, as for
/// `unmappable-schema` letters.
fn unconvertible(
    file: &FileToDecode<'_>,
    bytes: &[u8],
    header: &header::Header<'_>,
    block: &header::Block,
    first_offset: i64,
    rejected: Vec<(usize, String)>,
) -> Result<Vec<DeadLetter>, ReplayError> {
    if rejected.is_empty() {
        return Ok(Vec::new());
    }
    let (Some(head), Some(body)) = (bytes.get(..header.len), bytes.get(block.range.clone())) else {
        return Err(corrupt(file.key, "a block is outside the file"));
    };
    let single = [head, body].concat();
    let reader = apache_avro::Reader::new(single.as_slice())
        .map_err(|e| corrupt(file.key, format!("not an Avro object container file ({e})")))?;
    let writer = reader.writer_schema().clone();
    let key: Arc<str> = Arc::from(file.key);
    let mut reasons = rejected.into_iter().peekable();
    let mut letters = Vec::new();
    for (index, value) in reader.enumerate() {
        let Some((_, reason)) = reasons.next_if(|(i, _)| *i == index) else {
            continue;
        };
        let offset = first_offset + index as i64;
        let raw = value
            .and_then(|value| apache_avro::to_avro_datum(&writer, value))
            .map_err(|e| corrupt(file.key, format!("record at offset {offset}: {e}")))?;
        letters.push(DeadLetter {
            offset,
            raw: Bytes::from(raw),
            object_key: Some(key.clone()),
            kind: DeadLetterKind::Unconvertible,
            message: reason,
        });
        if reasons.peek().is_none() {
            break;
        }
    }
    Ok(letters)
}

/// Every record of a value-record file as an `unmappable-schema` dead letter with `reason`; `raw`
/// is the record's Avro binary encoding under the file's writer schema (which the reason's object
/// key locates), so the records can be replayed once the table can read them.
fn dead_letter_values(
    file: &FileToDecode<'_>,
    reader: apache_avro::Reader<'_, &[u8]>,
    reason: &str,
    mapping: &Arc<TableMapping>,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let writer = reader.writer_schema().clone();
    let key: Arc<str> = Arc::from(file.key);
    let mut letters = Vec::new();
    for (index, value) in (0i64..).zip(reader) {
        let value = value.map_err(|e| corrupt(file.key, format!("record {index}: {e}")))?;
        let raw = apache_avro::to_avro_datum(&writer, value)
            .map_err(|e| corrupt(file.key, format!("record {index}: {e}")))?;
        letters.push(DeadLetter {
            offset: file.start_offset + index,
            raw: Bytes::from(raw),
            object_key: Some(key.clone()),
            kind: DeadLetterKind::UnmappableSchema,
            message: reason.to_string(),
        });
    }
    let last = letters.last().map(|d| d.offset);
    let empty = mapping.value_schema();
    let batches = letters
        .chunks(file.batch_rows.max(1))
        .filter_map(|chunk| {
            let (first, last) = (chunk.first()?.offset, chunk.last()?.offset);
            Some(SourceBatch {
                partition: file.partition.clone(),
                range: OffsetRange::new(first, last + 1),
                records: RecordBatch::new_empty(empty.clone()),
                offsets: Vec::new(),
                dead_letters: chunk.to_vec(),
                records_in: chunk.len() as u64,
            })
        })
        .collect();
    Ok(close_ranges(file, batches, last, empty))
}

fn decode_framed(
    file: &FileToDecode<'_>,
    bytes: &Bytes,
    wire: &mut WireDecoder,
) -> Result<Vec<SourceBatch>, ReplayError> {
    let reader = open_reader(file.key, bytes)?;
    // (offset, value) pairs; None for tombstones.
    let mut records: Vec<(i64, Option<Vec<u8>>)> = Vec::new();
    for (index, value) in (0i64..).zip(reader) {
        let value = value.map_err(|e| corrupt(file.key, format!("record {index}: {e}")))?;
        let record = match value {
            Value::Bytes(raw) => (file.start_offset + index, Some(raw)),
            Value::Record(fields) => envelope(file.key, index, fields)?,
            other => {
                return Err(corrupt(
                    file.key,
                    format!("record {index}: unexpected value {other:?}"),
                ));
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
    }
    let key: Arc<str> = Arc::from(file.key);
    let mut batches = Vec::new();
    let mut previous_end = file.start_offset;
    for chunk in records.chunks(file.batch_rows.max(1)) {
        let framed: Vec<(i64, Option<&[u8]>)> =
            chunk.iter().map(|(o, v)| (*o, v.as_deref())).collect();
        let decoded =
            wire.decode_records(&framed, Some(&key))
                .map_err(|source| ReplayError::Schema {
                    key: file.key.to_string(),
                    source,
                })?;
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

fn envelope(
    key: &str,
    index: i64,
    fields: Vec<(String, Value)>,
) -> Result<(i64, Option<Vec<u8>>), ReplayError> {
    let mut offset = None;
    let mut value = None;
    for (name, field) in fields {
        let field = match field {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match (name.as_str(), field) {
            ("offset", Value::Long(o)) => offset = Some(o),
            ("offset", Value::Int(o)) => offset = Some(i64::from(o)),
            ("value", Value::Bytes(b)) => value = Some(b),
            _ => {}
        }
    }
    let offset =
        offset.ok_or_else(|| corrupt(key, format!("envelope record {index} has no offset")))?;
    Ok((offset, value))
}
