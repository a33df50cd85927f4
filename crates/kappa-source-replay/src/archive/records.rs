//! The records of one inflated block, found by walking the writer schema over the bytes: where
//! each record starts and ends, before any Avro crate decodes it.
//!
//! Two kinds of damage are told apart, because they end differently:
//! - **framing** — a length past the block's end, a varint of more than 10 bytes, a union branch
//!   the schema does not have, a block of array items larger than what is left, bytes left after
//!   the block's last record: the next record's start is unknown, so the object is refused
//!   (an error naming it);
//! - **a value** — a string that is not UTF-8, a `uuid` string that is not a UUID, an enum index
//!   past the symbols: the record's end is still known, so that record alone becomes a dead
//!   letter whose message names the field, and its neighbours decode.
//!
//! Every length is checked against what is left of the block before it is used, so nothing here
//! or after it allocates by a declared size; nesting deeper than [`MAX_DEPTH`] (a recursive
//! schema) is framing damage rather than a stack overflow.

use std::collections::HashMap;
use std::ops::Range;

use apache_avro::Schema;
use apache_avro::schema::{Name, Namespace, ResolvedSchema};

/// What a field of the root record gives the record besides its bytes: the coordinates of an
/// envelope (Kafka Connect's or Kappa's own archive of whole messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// Nothing.
    None,
    /// [`Record::offset`].
    Offset,
    /// [`Record::value`].
    Value,
    /// [`Record::key`].
    Key,
    /// [`Record::timestamp_ms`].
    Timestamp,
}

/// Nesting of records, arrays, maps and unions a record may have.
const MAX_DEPTH: usize = 64;

/// Whether a walk checks the values it frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Values {
    /// Strings, UUIDs and map keys checked; a bad one makes its record `bad`.
    Checked,
    /// Lengths and branches only.
    Framed,
}

/// One record of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its bytes in the inflated block (the Avro binary encoding under the writer schema).
    pub range: Range<usize>,
    /// Why its value cannot be converted (naming the field), if it cannot.
    pub bad: Option<String>,
    // The root record's fields below are captured by `Walker::records` only: framing serves
    // value records, where a field of one of these names is a value like any other.
    /// A root record's `offset` field (`long` or `int`, or a union of one with `null`).
    pub offset: Option<i64>,
    /// The message value: a `"bytes"` root's content, or a root record's `value` field (`bytes`,
    /// or a union of it with `null`; `None` for a null).
    pub value: Option<Range<usize>>,
    /// A root record's `key` field (`bytes`, or a union of it with `null`).
    pub key: Option<Range<usize>>,
    /// A root record's `timestamp` field in ms (`timestamp-millis`, `timestamp-micros` or a
    /// plain `long` of ms, or a union of one with `null`).
    pub timestamp_ms: Option<i64>,
}

/// Walks records of one writer schema.
pub(crate) struct Walker<'s> {
    root: &'s Schema,
    names: HashMap<Name, &'s Schema>,
    /// For each field of a root record, what it gives ([`Capture`]), found once by name.
    captures: Vec<Capture>,
    /// The root compiled for [`Walker::frame`], when it is a record whose values are all
    /// lengths, fixed sizes, enums and unions of them (a Kafka Connect value schema): see
    /// [`Step`].
    steps: Option<Vec<Step>>,
}

/// One value to step over when framing, compiled from the writer schema once: framing a
/// record is then a loop over its steps rather than a walk of the schema tree. Framing only
/// checks what the walk checks without its value checks (lengths, union branches, enum
/// indexes); any step that fails sends the block to the walk, which names the damage, so the
/// steps never decide an error or a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A zigzag varint: int, long, dates, times, timestamps.
    Varint,
    /// A length and that many bytes: string, bytes, uuid, a decimal on bytes.
    Sized,
    /// This many bytes: boolean, float, double, fixed, duration.
    Fixed(usize),
    /// An index below this many symbols.
    Enum(u64),
    /// A branch index, then the branch's steps.
    Union(Vec<Vec<Step>>),
}

impl<'s> Walker<'s> {
    /// A walker for `root` (its named types resolved), parsed as its encoding lays values out
    /// (`kappa_schema::names::parse_encoding`).
    pub(crate) fn new(root: &'s Schema) -> Result<Self, String> {
        let resolved = ResolvedSchema::try_from(root)
            .map_err(|e| format!("the header's writer schema: {e}"))?;
        let names = resolved
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), *schema))
            .collect();
        let captures = match root {
            Schema::Record(record) => record
                .fields
                .iter()
                .map(|field| match field.name.as_str() {
                    "offset" => Capture::Offset,
                    "value" => Capture::Value,
                    "key" => Capture::Key,
                    "timestamp" => Capture::Timestamp,
                    _ => Capture::None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut walker = Self {
            root,
            names,
            captures,
            steps: None,
        };
        if let Schema::Record(record) = root {
            let mut steps = Vec::new();
            let namespace = record.name.namespace.clone();
            let compiled = record
                .fields
                .iter()
                .all(|field| walker.compile(&field.schema, &namespace, 1, &mut steps));
            // A record that may take no bytes is left to the walk, which checks the block's
            // count against its data.
            if compiled && !steps.is_empty() {
                walker.steps = Some(steps);
            }
        }
        Ok(walker)
    }

    /// Appends the steps of one value of `schema`; false if it has an array, a map, or nesting
    /// deeper than [`MAX_DEPTH`] (a recursive schema), which only the walk frames.
    fn compile(&self, schema: &Schema, ns: &Namespace, depth: usize, out: &mut Vec<Step>) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match schema {
            Schema::Null => true,
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                out.push(Step::Varint);
                true
            }
            Schema::Bytes | Schema::BigDecimal | Schema::String | Schema::Uuid => {
                out.push(Step::Sized);
                true
            }
            Schema::Boolean => {
                out.push(Step::Fixed(1));
                true
            }
            Schema::Float => {
                out.push(Step::Fixed(4));
                true
            }
            Schema::Double => {
                out.push(Step::Fixed(8));
                true
            }
            Schema::Fixed(fixed) => {
                out.push(Step::Fixed(fixed.size));
                true
            }
            Schema::Duration => {
                out.push(Step::Fixed(12));
                true
            }
            Schema::Decimal(decimal) => self.compile(&decimal.inner, ns, depth + 1, out),
            Schema::Enum(e) => {
                out.push(Step::Enum(e.symbols.len() as u64));
                true
            }
            Schema::Union(union) => {
                let mut branches = Vec::with_capacity(union.variants().len());
                for variant in union.variants() {
                    let mut steps = Vec::new();
                    if !self.compile(variant, ns, depth + 1, &mut steps) {
                        return false;
                    }
                    branches.push(steps);
                }
                out.push(Step::Union(branches));
                true
            }
            Schema::Record(record) => {
                let inner = record.name.namespace.clone().or_else(|| ns.clone());
                record
                    .fields
                    .iter()
                    .all(|field| self.compile(&field.schema, &inner, depth + 1, out))
            }
            Schema::Array(_) | Schema::Map(_) => false,
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                match self
                    .names
                    .get_key_value(&full)
                    .or_else(|| self.names.get_key_value(name))
                {
                    Some((found, target)) => self.compile(target, &found.namespace, depth + 1, out),
                    None => false,
                }
            }
        }
    }

    /// The `count` records of `data`, which they must fill exactly, each value checked.
    pub(crate) fn records(&self, data: &[u8], count: u64) -> Result<Vec<Record>, String> {
        self.walk(data, count, Values::Checked)
    }

    /// The `count` records of `data` framed only: their strings, UUIDs and map keys are not
    /// checked, so no record is `bad` for them. For bytes that are decoded next by a decoder
    /// that refuses what the checks flag (arrow-avro: UTF-8 when it builds a string array, a
    /// UUID when it parses one); [`Walker::check`] names the field when it does. An envelope's
    /// fields (`offset`, `value`, `key`, `timestamp`) are not captured: a field of a value schema
    /// may have one of those names.
    pub(crate) fn frame(&self, data: &[u8], count: u64) -> Result<Vec<Record>, String> {
        if let Some(records) = self
            .steps
            .as_deref()
            .and_then(|s| step_records(s, data, count))
        {
            return Ok(records);
        }
        self.walk(data, count, Values::Framed)
    }

    /// Checks the values of `records` (framed by [`Walker::frame`] in `data`), flagging each bad
    /// one as [`Walker::records`] would have.
    pub(crate) fn check(&self, data: &[u8], records: &mut [Record]) -> Result<(), String> {
        let mut path = Vec::new();
        for record in records.iter_mut().filter(|r| r.bad.is_none()) {
            let bytes = &data[..record.range.end];
            let mut walk = Walk {
                walker: self,
                data: bytes,
                at: record.range.start,
                bad: None,
                path,
                values: Values::Checked,
            };
            let mut again = Record::default();
            walk.root(self.root, &mut again)?;
            record.bad = walk.bad;
            path = walk.path;
            path.clear();
        }
        Ok(())
    }

    fn walk(&self, data: &[u8], count: u64, values: Values) -> Result<Vec<Record>, String> {
        // Every record takes at least one byte unless its schema takes none: do not trust a
        // count the data cannot hold to size the vector.
        let mut records =
            Vec::with_capacity(usize::try_from(count.min(data.len() as u64 + 1)).unwrap_or(0));
        let mut at = 0usize;
        // One path for the block's records: a walk leaves it empty.
        let mut path = Vec::new();
        for index in 0..count {
            let start = at;
            let mut walk = Walk {
                walker: self,
                data,
                at,
                bad: None,
                path,
                values,
            };
            let mut record = Record::default();
            walk.root(self.root, &mut record)
                .map_err(|e| format!("record {index} of the block (byte {start}): {e}"))?;
            at = walk.at;
            record.range = start..at;
            record.bad = walk.bad;
            path = walk.path;
            records.push(record);
            if at == data.len() && index + 1 < count && self.takes_bytes() {
                return Err(format!(
                    "the block says {count} records but its data ends after {}",
                    index + 1
                ));
            }
        }
        if at != data.len() {
            return Err(format!(
                "{} bytes left after the block's {count} records",
                data.len() - at
            ));
        }
        Ok(records)
    }

    /// Whether every record of the root schema takes at least one byte.
    fn takes_bytes(&self) -> bool {
        !matches!(self.root, Schema::Null)
            && !matches!(self.root, Schema::Record(r) if r.fields.is_empty())
    }
}

struct Walk<'w, 's, 'd> {
    walker: &'w Walker<'s>,
    data: &'d [u8],
    at: usize,
    /// The first value problem of the record.
    bad: Option<String>,
    /// Field names from the root to where the walk is (empty between records).
    path: Vec<&'s str>,
    values: Values,
}

impl<'w, 's: 'w> Walk<'w, 's, '_> {
    fn root(&mut self, schema: &'s Schema, record: &mut Record) -> Result<(), String> {
        match schema {
            Schema::Bytes => {
                let len = self.length("bytes")?;
                record.value = Some(self.take(len, "bytes")?);
            }
            Schema::Record(root) => {
                let namespace = root.name.namespace.as_deref();
                // Only a checked walk captures an envelope's coordinates ([`Walker::frame`]).
                let capturing = self.values == Values::Checked;
                let captures = self.walker.captures.iter().copied();
                for (field, capture) in root.fields.iter().zip(captures) {
                    let start = self.at;
                    self.path.push(&field.name);
                    self.value(&field.schema, namespace, 1)?;
                    self.path.pop();
                    let bytes = &self.data[start..self.at];
                    match capture {
                        _ if !capturing => {}
                        Capture::None => {}
                        Capture::Offset => record.offset = captured_long(&field.schema, bytes),
                        Capture::Value => {
                            record.value = captured_bytes(&field.schema, bytes)
                                .map(|r| start + r.start..start + r.end);
                        }
                        Capture::Key => {
                            record.key = captured_bytes(&field.schema, bytes)
                                .map(|r| start + r.start..start + r.end);
                        }
                        Capture::Timestamp => {
                            record.timestamp_ms = captured_millis(&field.schema, bytes);
                        }
                    }
                }
            }
            other => self.value(other, None, 0)?,
        }
        Ok(())
    }

    /// Walks one value of `schema`; `ns` is the enclosing namespace (borrowed: a walk allocates
    /// nothing per record).
    fn value(
        &mut self,
        schema: &'s Schema,
        ns: Option<&'w str>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} levels at {}",
                self.field()
            ));
        }
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                self.take(1, "boolean")?;
            }
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.long("long")?;
            }
            Schema::Float => {
                self.take(4, "float")?;
            }
            Schema::Double => {
                self.take(8, "double")?;
            }
            Schema::Bytes | Schema::BigDecimal => {
                let len = self.length("bytes")?;
                self.take(len, "bytes")?;
            }
            Schema::String => {
                let len = self.length("string")?;
                let range = self.take(len, "string")?;
                if self.values == Values::Checked && std::str::from_utf8(&self.data[range]).is_err()
                {
                    self.flag("is not valid UTF-8".into());
                }
            }
            // A `uuid` string (the walk's schema keeps a `fixed` UUID a `fixed`:
            // `kappa_schema::names::parse_encoding`). Like apache-avro, 16 bytes are a binary
            // UUID, anything else its text.
            Schema::Uuid => {
                let len = self.length("uuid")?;
                let range = self.take(len, "uuid")?;
                let raw = &self.data[range];
                if self.values == Values::Checked && raw.len() != 16 {
                    match std::str::from_utf8(raw) {
                        Ok(s) if uuid::Uuid::try_parse(s).is_ok() => {}
                        Ok(s) => self.flag(format!("{:?} is not a UUID", preview(s))),
                        Err(_) => self.flag("is a uuid that is not valid UTF-8".into()),
                    }
                }
            }
            Schema::Fixed(fixed) => {
                self.take(fixed.size, "fixed")?;
            }
            Schema::Duration => {
                self.take(12, "duration")?;
            }
            Schema::Decimal(decimal) => self.value(&decimal.inner, ns, depth + 1)?,
            Schema::Enum(e) => {
                let index = self.long("enum index")?;
                if usize::try_from(index).map_or(true, |i| i >= e.symbols.len()) {
                    self.flag(format!(
                        "enum index {index} is not one of the {} symbols of {}",
                        e.symbols.len(),
                        e.name.fullname(None)
                    ));
                }
            }
            Schema::Union(union) => {
                let index = self.long("union branch")?;
                let variants = union.variants();
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| {
                        format!(
                            "union branch {index} at {}, the union has {}",
                            self.field(),
                            variants.len()
                        )
                    })?;
                self.value(branch, ns, depth + 1)?;
            }
            Schema::Record(record) => {
                let inner = record.name.namespace.as_deref().or(ns);
                for field in &record.fields {
                    self.path.push(&field.name);
                    self.value(&field.schema, inner, depth + 1)?;
                    self.path.pop();
                }
            }
            Schema::Array(array) => {
                while let Some(items) = self.items("array")? {
                    for _ in 0..items {
                        self.value(&array.items, ns, depth + 1)?;
                    }
                }
            }
            Schema::Map(map) => {
                while let Some(items) = self.items("map")? {
                    for _ in 0..items {
                        let len = self.length("map key")?;
                        let key = self.take(len, "map key")?;
                        if self.values == Values::Checked
                            && std::str::from_utf8(&self.data[key]).is_err()
                        {
                            self.flag("has a map key that is not valid UTF-8".into());
                        }
                        self.value(&map.types, ns, depth + 1)?;
                    }
                }
            }
            Schema::Ref { name } => {
                let enclosing: Namespace = ns.map(str::to_string);
                let full = name.fully_qualified_name(&enclosing);
                let walker: &'w Walker<'s> = self.walker;
                let (found, target) = walker
                    .names
                    .get_key_value(&full)
                    .or_else(|| walker.names.get_key_value(name))
                    .ok_or_else(|| format!("unknown named type {}", full.fullname(None)))?;
                self.value(target, found.namespace.as_deref(), depth + 1)?;
            }
        }
        Ok(())
    }

    /// The item count of the next block of an array or map, `None` at its end. A count larger
    /// than the bytes left is damage (each item takes at least one byte, except items of a
    /// schema that takes none, which no archive writes).
    fn items(&mut self, what: &str) -> Result<Option<u64>, String> {
        let count = self.long(what)?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long(what)?;
        }
        let count = count.unsigned_abs();
        let left = (self.data.len() - self.at) as u64;
        if count > left {
            return Err(format!(
                "{what} at {} says {count} items, more than the {left} bytes left",
                self.field()
            ));
        }
        Ok(Some(count))
    }

    fn flag(&mut self, problem: String) {
        if self.bad.is_none() {
            self.bad = Some(format!("field {}: {problem}", self.field()));
        }
    }

    fn field(&self) -> String {
        if self.path.is_empty() {
            "<root>".into()
        } else {
            self.path.join(".")
        }
    }

    fn length(&mut self, what: &str) -> Result<usize, String> {
        let len = self.long(what)?;
        usize::try_from(len).map_err(|_| format!("{what} at {} has length {len}", self.field()))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<Range<usize>, String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "{what} at {} needs {len} bytes, {} are left",
                    self.field(),
                    self.data.len() - self.at
                )
            })?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn long(&mut self, what: &str) -> Result<i64, String> {
        let (value, used) = read_long(&self.data[self.at..])
            .ok_or_else(|| format!("{what} at {} is truncated or not a varint", self.field()))?;
        self.at += used;
        Ok(value)
    }
}

/// The `count` records of `data` framed by `steps`, or `None` for anything the walk must look at:
/// a step that fails, a record of no bytes, bytes left after the last record.
fn step_records(steps: &[Step], data: &[u8], count: u64) -> Option<Vec<Record>> {
    let mut records = Vec::with_capacity(usize::try_from(count.min(data.len() as u64)).ok()?);
    let mut at = 0usize;
    for _ in 0..count {
        let start = at;
        at = step_over(steps, data, at)?;
        if at == start {
            return None;
        }
        records.push(Record {
            range: start..at,
            ..Record::default()
        });
    }
    (at == data.len()).then_some(records)
}

/// Where one value of `steps` starting at `at` ends, if it fits in `data`.
fn step_over(steps: &[Step], data: &[u8], mut at: usize) -> Option<usize> {
    for step in steps {
        match step {
            Step::Varint => at += read_long(data.get(at..)?)?.1,
            Step::Sized => {
                let (len, used) = read_long(data.get(at..)?)?;
                let len = usize::try_from(len).ok()?;
                at = (at + used)
                    .checked_add(len)
                    .filter(|end| *end <= data.len())?;
            }
            Step::Fixed(size) => at = at.checked_add(*size).filter(|end| *end <= data.len())?,
            Step::Enum(symbols) => {
                let (index, used) = read_long(data.get(at..)?)?;
                if u64::try_from(index).ok()? >= *symbols {
                    return None;
                }
                at += used;
            }
            Step::Union(branches) => {
                let (index, used) = read_long(data.get(at..)?)?;
                let branch = branches.get(usize::try_from(index).ok()?)?;
                at = step_over(branch, data, at + used)?;
            }
        }
    }
    Some(at)
}

/// A zigzag varint and the bytes it took; `None` if truncated or longer than 10 bytes.
fn read_long(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64 ^ -((value & 1) as i64), i + 1));
        }
    }
    None
}

/// The `long`/`int` in `bytes`, the encoding of one value of `schema` (or of a union branch).
fn captured_long(schema: &Schema, bytes: &[u8]) -> Option<i64> {
    match schema {
        Schema::Long | Schema::Int => read_long(bytes).map(|(v, _)| v),
        Schema::Union(union) => {
            let (branch, used) = read_long(bytes)?;
            let branch = union.variants().get(usize::try_from(branch).ok()?)?;
            captured_long(branch, &bytes[used..])
        }
        _ => None,
    }
}

/// The timestamp encoded in `bytes`, in ms: `timestamp-millis` or a plain `long` as it is,
/// `timestamp-micros` divided (a union with `null` followed).
fn captured_millis(schema: &Schema, bytes: &[u8]) -> Option<i64> {
    match schema {
        Schema::Long | Schema::TimestampMillis => read_long(bytes).map(|(v, _)| v),
        Schema::TimestampMicros => read_long(bytes).map(|(v, _)| v.div_euclid(1_000)),
        Schema::Union(union) => {
            let (branch, used) = read_long(bytes)?;
            let branch = union.variants().get(usize::try_from(branch).ok()?)?;
            captured_millis(branch, &bytes[used..])
        }
        _ => None,
    }
}

/// Where the content of the `bytes` value encoded in `bytes` is (relative to its start).
fn captured_bytes(schema: &Schema, bytes: &[u8]) -> Option<Range<usize>> {
    match schema {
        Schema::Bytes => {
            let (_, used) = read_long(bytes)?;
            Some(used..bytes.len())
        }
        Schema::Union(union) => {
            let (branch, used) = read_long(bytes)?;
            let branch = union.variants().get(usize::try_from(branch).ok()?)?;
            captured_bytes(branch, &bytes[used..]).map(|r| r.start + used..r.end + used)
        }
        _ => None,
    }
}

/// At most 40 characters of `s`, for messages.
fn preview(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"r","namespace":"n","fields":[
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"kind","type":{"type":"enum","name":"k","symbols":["A","B"]}},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"next","type":["null","k"]}]}"#;

    fn encode(id: &str, tags: &[&str]) -> Vec<u8> {
        let value = Value::Record(vec![
            ("id".into(), Value::String(id.into())),
            ("kind".into(), Value::Enum(0, "A".into())),
            (
                "tags".into(),
                Value::Array(tags.iter().map(|t| Value::String((*t).into())).collect()),
            ),
            (
                "next".into(),
                Value::Union(1, Box::new(Value::Enum(1, "B".into()))),
            ),
        ]);
        // Written against a schema without the uuid and enum checks, so bad values can be made.
        let loose = Schema::parse_str(&SCHEMA.replace(r#","logicalType":"uuid""#, "")).unwrap();
        apache_avro::to_avro_datum(&loose, value).unwrap()
    }

    /// A Kafka Connect value schema: every kind of value the steps frame, nested and in unions.
    const FLAT: &str = r#"{"type":"record","name":"v","namespace":"n","fields":[
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"kind","type":{"type":"enum","name":"k","symbols":["A","B","C"]}},
        {"name":"user","type":["null","string"]},
        {"name":"amount","type":"long"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"paid","type":"boolean"},
        {"name":"rate","type":["null","double"]},
        {"name":"code","type":{"type":"fixed","name":"f3","size":3}},
        {"name":"inner","type":{"type":"record","name":"i","fields":[
            {"name":"x","type":"float"},{"name":"again","type":["null","k","f3"]}]}},
        {"name":"blob","type":"bytes"}]}"#;

    fn flat_record(seed: u64) -> Vec<u8> {
        let pick = |n: u64| (seed / n) % 3;
        let value = Value::Record(vec![
            ("id".into(), Value::String(format!("id-{seed}"))),
            (
                "kind".into(),
                Value::Enum(pick(1) as u32, ["A", "B", "C"][pick(1) as usize].into()),
            ),
            (
                "user".into(),
                match pick(3) {
                    0 => Value::Union(0, Box::new(Value::Null)),
                    _ => Value::Union(1, Box::new(Value::String("u".repeat(pick(7) as usize)))),
                },
            ),
            ("amount".into(), Value::Long(seed as i64 * 7919 - 500_000)),
            ("at".into(), Value::Long(seed as i64 * 1_000_003)),
            ("paid".into(), Value::Boolean(seed.is_multiple_of(2))),
            (
                "rate".into(),
                Value::Union(1, Box::new(Value::Double(seed as f64 / 3.0))),
            ),
            ("code".into(), Value::Fixed(3, vec![1, 2, 3])),
            (
                "inner".into(),
                Value::Record(vec![
                    ("x".into(), Value::Float(1.5)),
                    (
                        "again".into(),
                        match pick(9) {
                            0 => Value::Union(0, Box::new(Value::Null)),
                            1 => Value::Union(1, Box::new(Value::Enum(2, "C".into()))),
                            _ => Value::Union(2, Box::new(Value::Fixed(3, vec![9, 9, 9]))),
                        },
                    ),
                ]),
            ),
            ("blob".into(), Value::Bytes(vec![0; pick(27) as usize])),
        ]);
        let loose = Schema::parse_str(&FLAT.replace(r#","logicalType":"uuid""#, "")).unwrap();
        apache_avro::to_avro_datum(&loose, value).unwrap()
    }

    #[test]
    fn only_a_schema_of_flat_values_is_framed_by_steps() {
        let flat = Schema::parse_str(FLAT).unwrap();
        assert!(Walker::new(&flat).unwrap().steps.is_some());
        // Arrays need the walk.
        let nested = Schema::parse_str(SCHEMA).unwrap();
        assert!(Walker::new(&nested).unwrap().steps.is_none());
        // Fields named like an envelope's are values to framing (a value schema may have a
        // `timestamp`); a checked walk captures them.
        let envelope = Schema::parse_str(
            r#"{"type":"record","name":"e","fields":[{"name":"offset","type":"long"},{"name":"value","type":"bytes"}]}"#,
        )
        .unwrap();
        let walker = Walker::new(&envelope).unwrap();
        assert!(walker.steps.is_some());
        let data = [14, 4, 1, 2, 16, 2, 3];
        let framed = walker.frame(&data, 2).unwrap();
        assert_eq!(framed, walker.walk(&data, 2, Values::Framed).unwrap());
        assert_eq!(framed[1].range, 4..7);
        assert_eq!((framed[0].offset, framed[0].value.clone()), (None, None));
        let checked = walker.records(&data, 2).unwrap();
        assert_eq!(checked[1].offset, Some(8));
        assert_eq!(checked[1].value, Some(6..7));
    }

    #[test]
    fn an_enum_index_past_the_symbols_is_flagged_as_the_walk_flags_it() {
        let schema = Schema::parse_str(FLAT).unwrap();
        let walker = Walker::new(&schema).unwrap();
        for index in [3i64, 63, -1] {
            let (good, mut bad) = (flat_record(0), flat_record(0));
            // "id-0" takes a length byte and 4 bytes; the enum index follows.
            assert_eq!(bad[5], 0);
            bad[5] = ((index << 1) ^ (index >> 63)) as u8;
            let data = [good.clone(), bad, good].concat();
            let framed = walker.frame(&data, 3).unwrap();
            assert_eq!(framed, walker.walk(&data, 3, Values::Framed).unwrap());
            assert!(
                framed[1].bad.as_deref().unwrap().contains("enum index"),
                "{framed:?}"
            );
            assert_eq!(framed[0].bad, None);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Steps frame exactly what the walk frames, and anything damaged (bytes changed, cut or
        /// added, a count off by some) ends as the walk ends it: the same records and flags, or
        /// the same error.
        #[test]
        fn steps_frame_as_the_walk_does_on_good_and_damaged_blocks(
            seeds in proptest::collection::vec(0u64..100_000, 1..40),
            flips in proptest::collection::vec((0usize..10_000, 0u8..=255), 0..3),
            cut in 0usize..4,
            extra in 0usize..3,
            count_delta in -2i64..=2,
        ) {
            let schema = Schema::parse_str(FLAT).unwrap();
            let walker = Walker::new(&schema).unwrap();
            let mut data: Vec<u8> = seeds.iter().flat_map(|s| flat_record(*s)).collect();
            for (at, byte) in &flips {
                let len = data.len();
                data[at % len] = *byte;
            }
            data.truncate(data.len().saturating_sub(cut));
            data.extend(std::iter::repeat_n(0x02, extra));
            let count = (seeds.len() as i64 + count_delta).max(0) as u64;
            let framed = walker.frame(&data, count);
            let walked = walker.walk(&data, count, Values::Framed);
            proptest::prop_assert_eq!(framed, walked);
            // Undamaged, the steps decide alone (no fallback needed to get there).
            if flips.is_empty() && cut == 0 && extra == 0 && count_delta == 0 {
                let steps = walker.steps.as_deref().unwrap();
                proptest::prop_assert!(step_records(steps, &data, count).is_some());
            }
        }
    }

    #[test]
    fn finds_each_record_and_names_a_bad_field() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let walker = Walker::new(&schema).unwrap();
        let good = encode("550e8400-e29b-41d4-a716-446655440000", &["x", "y"]);
        let bad = encode("not-a-uuid", &[]);
        let mut data = good.clone();
        data.extend_from_slice(&bad);
        data.extend_from_slice(&good);
        let records = walker.records(&data, 3).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].range, 0..good.len());
        assert_eq!(records[1].range, good.len()..good.len() + bad.len());
        assert_eq!(records[0].bad, None);
        assert_eq!(records[2].bad, None);
        let reason = records[1].bad.as_deref().unwrap();
        assert!(
            reason.contains("field id") && reason.contains("not-a-uuid"),
            "{reason}"
        );
    }

    #[test]
    fn framing_finds_the_same_records_and_checking_flags_the_same_ones() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let walker = Walker::new(&schema).unwrap();
        let good = encode("550e8400-e29b-41d4-a716-446655440000", &["x", "y"]);
        let bad = encode("not-a-uuid", &["z"]);
        let data = [good.clone(), bad, good.clone(), encode("also-bad", &[])].concat();
        let checked = walker.records(&data, 4).unwrap();
        let mut framed = walker.frame(&data, 4).unwrap();
        assert!(framed.iter().all(|r| r.bad.is_none()), "{framed:?}");
        assert_eq!(
            framed.iter().map(|r| r.range.clone()).collect::<Vec<_>>(),
            checked.iter().map(|r| r.range.clone()).collect::<Vec<_>>()
        );
        walker.check(&data, &mut framed).unwrap();
        assert_eq!(framed, checked);
        assert!(checked[1].bad.is_some() && checked[3].bad.is_some());
    }

    #[test]
    fn framing_damage_is_an_error() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let walker = Walker::new(&schema).unwrap();
        let good = encode("550e8400-e29b-41d4-a716-446655440000", &["x"]);
        // Fewer records than the count, bytes after the last one, a cut record.
        assert!(
            walker
                .records(&good, 2)
                .unwrap_err()
                .contains("says 2 records")
        );
        assert!(
            walker
                .records(&[good.clone(), vec![0]].concat(), 1)
                .unwrap_err()
                .contains("1 bytes left")
        );
        assert!(walker.records(&good[..good.len() - 1], 1).is_err());
        // An array block claiming more items than bytes are left.
        let mut huge = good[..38].to_vec();
        huge.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert!(walker.records(&huge, 1).unwrap_err().contains("items"));
        // A string length far past the end.
        assert!(
            walker
                .records(&[0xfe, 0xff, 0xff, 0xff, 0x0f], 1)
                .unwrap_err()
                .contains("needs")
        );
        // A union branch the union does not have: the last byte of the record is the enum
        // index, the one before it the union branch.
        let mut branch = good.clone();
        let at = branch.len() - 2;
        branch[at] = 6;
        assert!(
            walker
                .records(&branch, 1)
                .unwrap_err()
                .contains("union branch 3")
        );
    }

    #[test]
    fn a_recursive_schema_cannot_overflow_the_stack() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"node","fields":[{"name":"next","type":["null","node"]}]}"#,
        )
        .unwrap();
        let walker = Walker::new(&schema).unwrap();
        let deep = vec![2u8; 100_000];
        assert!(
            walker
                .records(&deep, 1)
                .unwrap_err()
                .contains("deeper than")
        );
    }

    #[test]
    fn captures_envelope_coordinates_and_raw_values() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"e","fields":[{"name":"partition","type":"int"},
            {"name":"offset","type":"long"},{"name":"value","type":["null","bytes"]}]}"#,
        )
        .unwrap();
        let walker = Walker::new(&schema).unwrap();
        let value = Value::Record(vec![
            ("partition".into(), Value::Int(3)),
            ("offset".into(), Value::Long(1234)),
            (
                "value".into(),
                Value::Union(1, Box::new(Value::Bytes(vec![7, 8, 9]))),
            ),
        ]);
        let tombstone = Value::Record(vec![
            ("partition".into(), Value::Int(3)),
            ("offset".into(), Value::Long(1235)),
            ("value".into(), Value::Union(0, Box::new(Value::Null))),
        ]);
        let mut data = apache_avro::to_avro_datum(&schema, value).unwrap();
        data.extend(apache_avro::to_avro_datum(&schema, tombstone).unwrap());
        let records = walker.records(&data, 2).unwrap();
        assert_eq!(records[0].offset, Some(1234));
        assert_eq!(&data[records[0].value.clone().unwrap()], &[7, 8, 9]);
        assert_eq!(
            (records[1].offset, records[1].value.clone()),
            (Some(1235), None)
        );
        let raw = Schema::parse_str(r#""bytes""#).unwrap();
        let records = Walker::new(&raw).unwrap().records(&[4, 1, 2], 1).unwrap();
        assert_eq!(records[0].value, Some(1..3));
    }

    /// Every nested type, with values of different sizes: arrays and maps of records, records
    /// in records, fixed (a UUID on `fixed(16)` too), decimals on bytes and on fixed.
    const NESTED: &str = r#"{"type":"record","name":"r","namespace":"n","fields":[
        {"name":"id","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}},
        {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
        {"name":"fee","type":["null",{"type":"fixed","name":"F","size":8,"logicalType":"decimal","precision":18,"scale":4}]},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[
            {"name":"sku","type":"string"},{"name":"tags","type":{"type":"array","items":"string"}}]}}},
        {"name":"extras","type":{"type":"map","values":{"type":"record","name":"E","fields":[
            {"name":"w","type":"double"},{"name":"h","type":"U"}]}}},
        {"name":"inner","type":{"type":"record","name":"I","fields":[
            {"name":"deep","type":{"type":"record","name":"D","fields":[
                {"name":"x","type":"long"},{"name":"f","type":{"type":"fixed","name":"F3","size":3}}]}}]}},
        {"name":"last","type":"string"}]}"#;

    /// Record `i` of [`NESTED`], its strings as bytes (so that a bad one can be written), encoded
    /// against a schema of the same layout without the logical types apache-avro would check.
    fn nested(i: usize, tag: &[u8]) -> Vec<u8> {
        let loose = NESTED.replace(r#","logicalType":"uuid""#, "").replace(
            r#"{"type":"array","items":"string"}"#,
            r#"{"type":"array","items":"bytes"}"#,
        );
        let loose = Schema::parse_str(&loose).unwrap();
        let decimal = |v: i64| Value::Decimal(apache_avro::Decimal::from(v.to_be_bytes()));
        let lines = (0..i)
            .map(|l| {
                Value::Record(vec![
                    ("sku".into(), Value::String(format!("sku-{i}-{l}"))),
                    (
                        "tags".into(),
                        Value::Array((0..l + 1).map(|_| Value::Bytes(tag.to_vec())).collect()),
                    ),
                ])
            })
            .collect();
        let extras = (0..i % 3)
            .map(|e| {
                let record = Value::Record(vec![
                    ("w".into(), Value::Double(e as f64)),
                    ("h".into(), Value::Fixed(16, vec![e as u8; 16])),
                ]);
                (format!("x{e}"), record)
            })
            .collect();
        let value = Value::Record(vec![
            ("id".into(), Value::Fixed(16, vec![i as u8; 16])),
            ("amount".into(), decimal(-12_345 * i as i64)),
            (
                "fee".into(),
                if i.is_multiple_of(2) {
                    Value::Union(1, Box::new(decimal(99 * i as i64)))
                } else {
                    Value::Union(0, Box::new(Value::Null))
                },
            ),
            ("lines".into(), Value::Array(lines)),
            ("extras".into(), Value::Map(extras)),
            (
                "inner".into(),
                Value::Record(vec![(
                    "deep".into(),
                    Value::Record(vec![
                        ("x".into(), Value::Long(1 << (10 * i))),
                        ("f".into(), Value::Fixed(3, vec![1, 2, i as u8])),
                    ]),
                )]),
            ),
            ("last".into(), Value::String(format!("end-{i}"))),
        ]);
        apache_avro::to_avro_datum(&loose, value).unwrap()
    }

    #[test]
    fn walks_arrays_maps_nested_records_fixed_and_decimals_to_each_records_end() {
        let schema = kappa_schema::names::parse_encoding(NESTED).unwrap();
        let walker = Walker::new(&schema).unwrap();
        let encoded: Vec<Vec<u8>> = (0..5).map(|i| nested(i, b"tag")).collect();
        let data = encoded.concat();
        let records = walker.records(&data, 5).unwrap();
        let mut start = 0;
        for (record, bytes) in records.iter().zip(&encoded) {
            assert_eq!(record.range, start..start + bytes.len());
            assert_eq!(record.bad, None);
            start += bytes.len();
        }
        // A bad value deep inside names its field, and the records around it still frame.
        let bad = nested(3, &[0xff, 0xfe]);
        let data = [encoded[1].clone(), bad.clone(), encoded[2].clone()].concat();
        let records = walker.records(&data, 3).unwrap();
        assert_eq!(
            records[1].range,
            encoded[1].len()..encoded[1].len() + bad.len()
        );
        assert_eq!(
            records[1].bad.as_deref(),
            Some("field lines.tags: is not valid UTF-8")
        );
        assert_eq!(
            (records[0].bad.clone(), records[2].bad.clone()),
            (None, None)
        );
        // apache-avro's own parse makes the fixed UUID a string (and forgets its name, which
        // `extras` refers to): no walk.
        let as_string = kappa_schema::names::parse_schema(NESTED).unwrap();
        let data = encoded.concat();
        assert!(
            Walker::new(&as_string)
                .and_then(|w| w.records(&data, 5))
                .is_err()
        );
    }
}
