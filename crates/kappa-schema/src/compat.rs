//! Schema compatibility with the Confluent Schema Registry's semantics.
//!
//! [`can_read`] applies the Avro schema resolution rules (reader vs writer) and lists every
//! breaking difference with its field path; [`check`] applies a compatibility [`Level`] to a new
//! schema and a subject's history:
//!
//! | level | the new schema must | against |
//! |---|---|---|
//! | `BACKWARD` | read data written with | the latest version |
//! | `BACKWARD_TRANSITIVE` | read data written with | every version |
//! | `FORWARD` | be readable by | the latest version |
//! | `FORWARD_TRANSITIVE` | be readable by | every version |
//! | `FULL` | both | the latest version |
//! | `FULL_TRANSITIVE` | both | every version |
//! | `NONE` | nothing | — |
//!
//! The rules: same types, or a promotion (`int`→`long`/`float`/`double`, `long`→`float`/`double`,
//! `float`→`double`, `string`↔`bytes`); named types match by unqualified name or a reader alias;
//! a reader field missing from the writer needs a default (which must fit its type: the first
//! branch of a union); every writer enum symbol must be a reader symbol unless the reader enum has
//! a default; every writer union branch must be readable by some reader branch; a non-union writer
//! needs a matching branch in a reader union; fixed sizes match; arrays and maps recurse.
//!
//! Stricter than Avro's own `SchemaCompatibility` (and `apache-avro`'s, which answers `Partial`
//! where Confluent rejects): logical types must match. Changing, adding or removing a logical type
//! (`timestamp-millis` → `timestamp-micros`, `long` → `timestamp-millis`, a decimal's precision or
//! scale) is breaking, because the bits would still decode and silently mean something else.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema::{Aliases, Name, RecordSchema, ResolvedSchema};
use serde_json::Value;

/// A compatibility level, as the Confluent Schema Registry names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// No check.
    None,
    /// The new schema reads data of the latest version.
    Backward,
    /// The new schema reads data of every version.
    BackwardTransitive,
    /// The latest version reads data of the new schema.
    Forward,
    /// Every version reads data of the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every version.
    FullTransitive,
}

impl Level {
    /// Every level, in the order the registry documents them.
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    /// The registry's name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown compatibility level {s:?}; expected one of {}",
                    Level::ALL.map(Level::as_str).join(", ")
                )
            })
    }
}

/// What kind of break an [`Incompatibility`] is (Confluent's incompatibility types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakKind {
    /// Different types with no promotion between them.
    TypeMismatch,
    /// Different logical types over the same bits.
    LogicalTypeMismatch,
    /// Named types (record, enum, fixed) with different names and no alias.
    NameMismatch,
    /// A reader field that the writer lacks has no default.
    MissingDefault,
    /// A default that does not fit the field's type.
    InvalidDefault,
    /// Writer enum symbols the reader lacks (and no enum default).
    MissingEnumSymbols,
    /// A writer union branch (or a non-union writer type) no reader branch can read.
    MissingUnionBranch,
    /// Fixed types of different sizes.
    FixedSizeMismatch,
}

impl BreakKind {
    /// Confluent's name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::TypeMismatch => "TYPE_MISMATCH",
            BreakKind::LogicalTypeMismatch => "LOGICAL_TYPE_MISMATCH",
            BreakKind::NameMismatch => "NAME_MISMATCH",
            BreakKind::MissingDefault => "READER_FIELD_MISSING_DEFAULT_VALUE",
            BreakKind::InvalidDefault => "INVALID_DEFAULT_VALUE",
            BreakKind::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            BreakKind::MissingUnionBranch => "MISSING_UNION_BRANCH",
            BreakKind::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
        }
    }
}

/// One reason a reader cannot read a writer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Field path from the root record: `amount_cents`, `address.city`, `tags[]`, `attrs{}`;
    /// empty for the root itself.
    pub path: String,
    /// What kind of break.
    pub kind: BreakKind,
    /// Why, in words, with both sides' types.
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<root>"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.reason, self.kind.as_str())
    }
}

/// Which way a check read data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema reading data of an existing version (backward).
    NewReadsOld,
    /// An existing version reading data of the new schema (forward).
    OldReadsNew,
}

/// A breaking change found by [`check`]: against which version, in which direction, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaking {
    /// The existing version compared with.
    pub version: u32,
    /// Which side read which.
    pub direction: Direction,
    /// The incompatibility.
    pub incompatibility: Incompatibility,
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.direction {
            Direction::NewReadsOld => "the new schema cannot read data written with",
            Direction::OldReadsNew => "data written with the new schema cannot be read by",
        };
        write!(
            f,
            "{} — {how} version {}",
            self.incompatibility, self.version
        )
    }
}

/// Checks `new` against `history` (`(version, schema)`, oldest first) at `level`. Empty means
/// compatible. An empty history is compatible with anything.
pub fn check(level: Level, new: &Schema, history: &[(u32, &Schema)]) -> Vec<Breaking> {
    let against: &[(u32, &Schema)] = if level.transitive() {
        history
    } else {
        history.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut out = Vec::new();
    for (version, old) in against {
        if level.backward() {
            out.extend(can_read(new, old).into_iter().map(|i| Breaking {
                version: *version,
                direction: Direction::NewReadsOld,
                incompatibility: i,
            }));
        }
        if level.forward() {
            out.extend(can_read(old, new).into_iter().map(|i| Breaking {
                version: *version,
                direction: Direction::OldReadsNew,
                incompatibility: i,
            }));
        }
    }
    out
}

/// Every reason `reader` cannot read data written with `writer` (empty: it can).
pub fn can_read(reader: &Schema, writer: &Schema) -> Vec<Incompatibility> {
    let (Ok(reader_names), Ok(writer_names)) = (
        ResolvedSchema::try_from(reader),
        ResolvedSchema::try_from(writer),
    ) else {
        return vec![Incompatibility {
            path: String::new(),
            kind: BreakKind::TypeMismatch,
            reason: "a named type is referenced but never defined".into(),
        }];
    };
    let mut checker = Checker {
        reader_names: reader_names.get_names(),
        writer_names: writer_names.get_names(),
        in_progress: BTreeSet::new(),
        found: Vec::new(),
    };
    checker.check(reader, writer, "");
    checker.found
}

type Names<'s> = HashMap<Name, &'s Schema>;

struct Checker<'a, 's> {
    reader_names: &'a Names<'s>,
    writer_names: &'a Names<'s>,
    /// Record pairs being checked (recursive types end here: assumed compatible, as Avro does).
    in_progress: BTreeSet<(String, String)>,
    found: Vec<Incompatibility>,
}

impl<'s> Checker<'_, 's> {
    fn report(&mut self, path: &str, kind: BreakKind, reason: String) {
        self.found.push(Incompatibility {
            path: path.to_string(),
            kind,
            reason,
        });
    }

    fn resolve<'x>(names: &Names<'x>, schema: &'x Schema) -> &'x Schema {
        match schema {
            Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
            other => other,
        }
    }

    fn check(&mut self, reader: &'s Schema, writer: &'s Schema, path: &str) {
        let reader = Self::resolve(self.reader_names, reader);
        let writer = Self::resolve(self.writer_names, writer);
        match (reader, writer) {
            (_, Schema::Union(w)) => {
                // Every branch the writer may have written must be readable.
                for branch in w.variants() {
                    let branch = Self::resolve(self.writer_names, branch);
                    if let Schema::Union(r) = reader {
                        if !self.union_reads(r.variants(), branch) {
                            self.report(
                                path,
                                BreakKind::MissingUnionBranch,
                                format!(
                                    "the writer's union branch {} has no readable branch in the reader's union {}",
                                    describe(branch),
                                    describe(reader)
                                ),
                            );
                        }
                    } else {
                        let before = self.found.len();
                        self.check(reader, branch, path);
                        if self.found.len() > before {
                            self.found.truncate(before);
                            self.report(
                                path,
                                BreakKind::MissingUnionBranch,
                                format!(
                                    "the writer's union branch {} cannot be read as {}",
                                    describe(branch),
                                    describe(reader)
                                ),
                            );
                        }
                    }
                }
            }
            (Schema::Union(r), _) => {
                if !self.union_reads(r.variants(), writer) {
                    self.report(
                        path,
                        BreakKind::MissingUnionBranch,
                        format!(
                            "the reader's union {} has no branch that reads {}",
                            describe(reader),
                            describe(writer)
                        ),
                    );
                }
            }
            _ => self.check_non_union(reader, writer, path),
        }
    }

    /// Whether some branch of a reader union reads `writer` (a trial check, reports discarded).
    fn union_reads(&mut self, branches: &'s [Schema], writer: &'s Schema) -> bool {
        branches.iter().any(|branch| {
            let before = self.found.len();
            self.check(branch, writer, "");
            let ok = self.found.len() == before;
            self.found.truncate(before);
            ok
        })
    }

    fn check_non_union(&mut self, reader: &'s Schema, writer: &'s Schema, path: &str) {
        let (r_logical, w_logical) = (logical(reader), logical(writer));
        if r_logical != w_logical {
            self.report(
                path,
                BreakKind::LogicalTypeMismatch,
                format!(
                    "logical type changed: the writer has {}, the reader {}",
                    describe(writer),
                    describe(reader)
                ),
            );
            return;
        }
        match (reader, writer) {
            (Schema::Record(r), Schema::Record(w)) => self.check_record(r, w, path),
            (Schema::Enum(r), Schema::Enum(w)) => {
                if !names_match(&r.name, &r.aliases, &w.name) {
                    self.name_mismatch(path, &r.name, &w.name);
                    return;
                }
                let reader_symbols: BTreeSet<&str> = r.symbols.iter().map(String::as_str).collect();
                let missing: Vec<&str> = w
                    .symbols
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !reader_symbols.contains(s))
                    .collect();
                let default_ok = r
                    .default
                    .as_deref()
                    .is_some_and(|d| reader_symbols.contains(d));
                if !missing.is_empty() && !default_ok {
                    self.report(
                        path,
                        BreakKind::MissingEnumSymbols,
                        format!(
                            "enum {} lacks the writer's symbols {missing:?} and has no default symbol",
                            r.name.name
                        ),
                    );
                }
            }
            (Schema::Fixed(r), Schema::Fixed(w)) => {
                if !names_match(&r.name, &r.aliases, &w.name) {
                    self.name_mismatch(path, &r.name, &w.name);
                } else if r.size != w.size {
                    self.report(
                        path,
                        BreakKind::FixedSizeMismatch,
                        format!(
                            "fixed {} is {} bytes in the writer, {} in the reader",
                            r.name.name, w.size, r.size
                        ),
                    );
                }
            }
            (Schema::Array(r), Schema::Array(w)) => {
                self.check(&r.items, &w.items, &format!("{path}[]"));
            }
            (Schema::Map(r), Schema::Map(w)) => {
                self.check(&r.types, &w.types, &format!("{path}{{}}"));
            }
            (Schema::Decimal(r), Schema::Decimal(w)) => {
                // Precision and scale are part of the logical type (compared above); the bytes
                // underneath must still resolve (fixed sizes, names).
                self.check(&r.inner, &w.inner, path);
            }
            _ => {
                if !promotes(underlying(writer), underlying(reader)) {
                    self.report(
                        path,
                        BreakKind::TypeMismatch,
                        format!(
                            "type changed from {} to {}, which Avro cannot promote",
                            describe(writer),
                            describe(reader)
                        ),
                    );
                }
            }
        }
    }

    fn check_record(&mut self, r: &'s RecordSchema, w: &'s RecordSchema, path: &str) {
        if !names_match(&r.name, &r.aliases, &w.name) {
            self.name_mismatch(path, &r.name, &w.name);
            return;
        }
        let key = (r.name.fullname(None), w.name.fullname(None));
        if !self.in_progress.insert(key.clone()) {
            return;
        }
        for field in &r.fields {
            let child = if path.is_empty() {
                field.name.clone()
            } else {
                format!("{path}.{}", field.name)
            };
            // By name, then by the reader's aliases; never by the writer's aliases (apache-avro's
            // `lookup` holds both, Avro resolution uses only the reader's).
            let by_name = |name: &str| w.fields.iter().find(|f| f.name == name);
            let writer_field = by_name(&field.name).or_else(|| {
                field
                    .aliases
                    .iter()
                    .flatten()
                    .find_map(|alias| by_name(alias))
            });
            match writer_field {
                Some(writer_field) => self.check(&field.schema, &writer_field.schema, &child),
                None => match &field.default {
                    None => self.report(
                        &child,
                        BreakKind::MissingDefault,
                        format!(
                            "field {:?} ({}) has no default and the writer's record {} does not have it",
                            field.name,
                            describe(&field.schema),
                            w.name.name
                        ),
                    ),
                    Some(default) => {
                        if !self.default_fits(&field.schema, default) {
                            self.report(
                                &child,
                                BreakKind::InvalidDefault,
                                format!(
                                    "default {default} of field {:?} does not fit its type {}",
                                    field.name,
                                    describe(&field.schema)
                                ),
                            );
                        }
                    }
                },
            }
        }
        self.in_progress.remove(&key);
    }

    fn name_mismatch(&mut self, path: &str, reader: &Name, writer: &Name) {
        self.report(
            path,
            BreakKind::NameMismatch,
            format!(
                "named type {:?} in the writer is {:?} in the reader, with no alias",
                writer.name, reader.name
            ),
        );
    }

    /// Whether a JSON default fits `schema` (for a union: its first branch, per the Avro spec).
    fn default_fits(&self, schema: &Schema, value: &Value) -> bool {
        let schema = Self::resolve(self.reader_names, schema);
        match schema {
            Schema::Union(u) => u
                .variants()
                .first()
                .is_some_and(|first| self.default_fits(first, value)),
            Schema::Enum(e) => value
                .as_str()
                .is_some_and(|s| e.symbols.iter().any(|sym| sym == s)),
            Schema::Array(a) => value
                .as_array()
                .is_some_and(|items| items.iter().all(|v| self.default_fits(&a.items, v))),
            Schema::Map(m) => value
                .as_object()
                .is_some_and(|map| map.values().all(|v| self.default_fits(&m.types, v))),
            Schema::Record(r) => value.as_object().is_some_and(|map| {
                r.fields.iter().all(|f| match map.get(&f.name) {
                    Some(v) => self.default_fits(&f.schema, v),
                    None => f.default.is_some(),
                })
            }),
            Schema::Ref { .. } => true,
            // Primitives and logical types: by the primitive underneath.
            other => match underlying(other) {
                "null" => value.is_null(),
                "boolean" => value.is_boolean(),
                "int" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "long" => value.is_i64() || value.is_u64(),
                "float" | "double" => value.is_number(),
                // bytes, string, fixed, decimal: JSON strings.
                _ => value.is_string(),
            },
        }
    }
}

fn names_match(reader: &Name, reader_aliases: &Aliases, writer: &Name) -> bool {
    reader.name == writer.name
        || reader_aliases.iter().flatten().any(|alias| {
            alias.name() == writer.name || alias.fullname(None) == writer.fullname(None)
        })
}

/// The logical type of a schema, if any (decimal with its precision and scale).
fn logical(schema: &Schema) -> Option<String> {
    Some(match schema {
        Schema::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid => "uuid".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration => "duration".into(),
        _ => return None,
    })
}

/// The primitive under a logical type.
fn underlying(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes | Schema::BigDecimal => "bytes",
        Schema::String | Schema::Uuid => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Fixed(_) | Schema::Duration => "fixed",
        Schema::Decimal(_) => "decimal",
        Schema::Ref { .. } => "reference",
    }
}

/// Avro's promotions: what a reader of type `to` accepts from a writer of type `from`.
fn promotes(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("int", "long" | "float" | "double")
                | ("long", "float" | "double")
                | ("float", "double")
                | ("string", "bytes")
                | ("bytes", "string")
        )
}

/// A short description of a schema for messages: `long`, `timestamp-millis (long)`,
/// `record orders.Order`, `["null", "string"]`.
pub fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}[{}]", f.name.fullname(None), f.size),
        Schema::Array(a) => format!("array<{}>", describe(&a.items)),
        Schema::Map(m) => format!("map<{}>", describe(&m.types)),
        Schema::Union(u) => format!(
            "[{}]",
            u.variants()
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Schema::Ref { name } => name.fullname(None),
        other => match logical(other) {
            Some(l) => format!("{l} ({})", underlying(other)),
            None => underlying(other).to_string(),
        },
    }
}
