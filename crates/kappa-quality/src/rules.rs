//! Record rules: per-row checks whose failing rows leave the batch for the dead-letter table.
//!
//! [`apply_rules`] runs every rule on every row of a [`SourceBatch`]. A row that fails one or more
//! rules leaves `records` and `offsets` and becomes one [`DeadLetter`] of kind
//! [`DeadLetterKind::RuleViolation`] whose message names each rule, the column and the value:
//! `rule currency_pattern: currency "usd" does not match ^[A-Z]{3}$`. Nothing else changes: the
//! range, `records_in` and the other dead letters are the source's, so
//! [`SourceBatch::check`] still holds. [`RuleCounts`] says how many rows each rule failed; the
//! commit evaluation turns them into verdicts (a rule's failure rate against its `max_rate`).
//!
//! NULL is the business of `required` alone: `allowed`, `min`/`max` and `pattern` pass a NULL.
//! Patterns search (like `grep`): anchor them (`^…$`) to match the whole value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use kappa_core::{DeadLetter, DeadLetterKind, SourceBatch};
use regex::Regex;

use crate::error::QualityError;
use crate::verdict::Policy;

/// Longest value (in characters) quoted in a dead letter's message.
const MAX_SHOWN: usize = 64;

/// A compiled `pattern`; equal when the source text is.
#[derive(Clone)]
pub struct Pattern(Regex);

impl Pattern {
    /// Compiles `pattern`, or says why it is not a valid regular expression.
    pub fn new(pattern: &str) -> Result<Pattern, QualityError> {
        Regex::new(pattern).map(Pattern).map_err(|e| {
            QualityError::invalid(
                "pattern",
                format!("{pattern:?} is not a valid regular expression: {e}"),
            )
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn is_match(&self, value: &str) -> bool {
        self.0.is_match(value)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleCheck {
    /// The value is not NULL.
    Required,
    /// The value (as text) is one of these.
    Allowed(Vec<String>),
    /// The numeric value is within `[min, max]` (either bound may be absent, not both).
    Range {
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// The text value matches the pattern.
    Pattern(Pattern),
}

impl RuleCheck {
    /// The check's name: `required`, `allowed`, `range`, `pattern` (part of default rule names).
    pub fn kind(&self) -> &'static str {
        match self {
            RuleCheck::Required => "required",
            RuleCheck::Allowed(_) => "allowed",
            RuleCheck::Range { .. } => "range",
            RuleCheck::Pattern(_) => "pattern",
        }
    }
}

/// A validated record rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRule {
    name: String,
    column: String,
    check: RuleCheck,
    policy: Policy,
    max_rate: f64,
}

impl RecordRule {
    /// A rule named `name` (empty: `<column>_<check>`) on `column`. Failing rows always go to the
    /// dead-letter table; when the share of failing rows in a commit exceeds `max_rate`, the
    /// rule's verdict fails with `policy` (by default `warn` at `0.0`: any failure alerts).
    pub fn new(
        name: &str,
        column: &str,
        check: RuleCheck,
        policy: Policy,
        max_rate: f64,
    ) -> Result<RecordRule, QualityError> {
        let column = column.trim();
        if column.is_empty() {
            return Err(QualityError::invalid(
                "column",
                "missing; the column the rule checks",
            ));
        }
        match &check {
            RuleCheck::Allowed(values) if values.is_empty() => {
                return Err(QualityError::invalid(
                    "allowed",
                    "must list at least one value",
                ));
            }
            RuleCheck::Range {
                min: None,
                max: None,
            } => {
                return Err(QualityError::invalid("min", "set min, max or both"));
            }
            RuleCheck::Range { min, max } => {
                if min.is_some_and(|m| !m.is_finite()) {
                    return Err(QualityError::invalid("min", "must be a finite number"));
                }
                if max.is_some_and(|m| !m.is_finite()) {
                    return Err(QualityError::invalid("max", "must be a finite number"));
                }
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    return Err(QualityError::invalid(
                        "max",
                        format!("{hi} is below min {lo}"),
                    ));
                }
            }
            _ => {}
        }
        let max_rate = crate::config::rate("max_rate", max_rate)?;
        let name = match name.trim() {
            "" => format!("{column}_{}", check.kind()),
            name => name.to_string(),
        };
        Ok(RecordRule {
            name,
            column: column.to_string(),
            check,
            policy,
            max_rate,
        })
    }

    /// The rule's name (in dead-letter messages, verdicts and metrics).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column it checks.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// What it checks.
    pub fn check(&self) -> &RuleCheck {
        &self.check
    }

    /// What a failure rate above `max_rate` does.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The share of a commit's rows that may fail this rule before its verdict fails.
    pub fn max_rate(&self) -> f64 {
        self.max_rate
    }
}

/// How many rows each rule saw and failed, per rule name. Adds up over the batches of a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Rows the rules were applied to.
    pub rows: u64,
    /// Rows that failed each rule (a row failing two rules counts for both).
    pub failed: BTreeMap<String, u64>,
    /// Rows moved to the dead letters (each once, however many rules it failed).
    pub dead_lettered: u64,
}

impl RuleCounts {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &RuleCounts) {
        self.rows += other.rows;
        self.dead_lettered += other.dead_lettered;
        for (rule, n) in &other.failed {
            *self.failed.entry(rule.clone()).or_default() += n;
        }
    }
}

/// Names a batch in errors: `orders-0 [10, 20)`.
pub(crate) fn describe(batch: &SourceBatch) -> String {
    format!("{} {}", batch.partition, batch.range)
}

/// The column `name` of `records`, or an error naming the columns there are.
pub(crate) fn column<'a>(
    check: &str,
    batch: &str,
    records: &'a RecordBatch,
    name: &str,
) -> Result<&'a ArrayRef, QualityError> {
    records
        .column_by_name(name)
        .ok_or_else(|| QualityError::Column {
            check: check.to_string(),
            batch: batch.to_string(),
            column: name.to_string(),
            message: format!(
                "missing from the batch (columns: {})",
                records
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

fn wrong_type(
    check: &str,
    batch: &str,
    column: &str,
    expected: &str,
    found: &DataType,
) -> QualityError {
    QualityError::Column {
        check: check.to_string(),
        batch: batch.to_string(),
        column: column.to_string(),
        message: format!("expected {expected}, found {found}"),
    }
}

fn cast(array: &ArrayRef, to: &DataType, batch: &str) -> Result<ArrayRef, QualityError> {
    arrow_cast::cast(array, to).map_err(|e| QualityError::Arrow {
        batch: batch.to_string(),
        operation: "casting a rule's column",
        message: e.to_string(),
    })
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// `"usd"`, shortened past [`MAX_SHOWN`] characters.
fn quote(value: &str) -> String {
    if value.chars().count() <= MAX_SHOWN {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_SHOWN).collect();
        format!("{head:?}…")
    }
}

/// Distinct values a pattern rule remembers its answer for, per batch.
const PATTERN_MEMO: usize = 1024;

/// The rows `rule` fails, each with its reason.
pub(crate) fn failures(
    rule: &RecordRule,
    records: &RecordBatch,
    batch: &str,
) -> Result<Vec<(usize, String)>, QualityError> {
    let name = rule.name.as_str();
    let col = rule.column.as_str();
    let array = column(name, batch, records, col)?;
    let mut out = Vec::new();
    match &rule.check {
        RuleCheck::Required if array.null_count() == 0 => {}
        RuleCheck::Required => {
            for row in 0..array.len() {
                if array.is_null(row) {
                    out.push((row, format!("{col} is null")));
                }
            }
        }
        RuleCheck::Allowed(values) => {
            let binary = matches!(
                array.data_type(),
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            );
            if binary || !arrow_cast::can_cast_types(array.data_type(), &DataType::Utf8) {
                return Err(wrong_type(
                    name,
                    batch,
                    col,
                    "a column readable as text",
                    array.data_type(),
                ));
            }
            let text = cast(array, &DataType::Utf8, batch)?;
            let text = text.as_string::<i32>();
            // foldhash: SipHash's resistance to chosen keys buys nothing for a set the rule's
            // own configuration fills, and the set is probed once per row.
            let set: HashSet<&str, foldhash::fast::RandomState> =
                values.iter().map(String::as_str).collect();
            let listed = values.join("|");
            for (row, value) in text.iter().enumerate() {
                if let Some(value) = value
                    && !set.contains(value)
                {
                    out.push((
                        row,
                        format!("{col} {} is not one of {listed}", quote(value)),
                    ));
                }
            }
        }
        RuleCheck::Range { min, max } => {
            let data_type = array.data_type();
            let below = |v: f64| min.is_some_and(|m| v < m);
            let above = |v: f64| max.is_some_and(|m| v > m);
            // The value is shown only for a row that fails (formatting every row's cost more
            // than the check).
            let reason = |v: f64, shown: &dyn Fn() -> String| -> Option<String> {
                if below(v) {
                    min.map(|m| format!("{col} {} is below the minimum {m}", shown()))
                } else if above(v) {
                    max.map(|m| format!("{col} {} is above the maximum {m}", shown()))
                } else {
                    None
                }
            };
            if data_type.is_integer() {
                let ints = cast(array, &DataType::Int64, batch)?;
                for (row, value) in ints.as_primitive::<Int64Type>().iter().enumerate() {
                    // Bounds compare exactly with i64 values up to 2^53, beyond as f64.
                    if let Some(v) = value
                        && let Some(why) = reason(v as f64, &|| v.to_string())
                    {
                        out.push((row, why));
                    }
                }
            } else if data_type.is_floating()
                || matches!(
                    data_type,
                    DataType::Decimal128(..) | DataType::Decimal256(..)
                )
            {
                let floats = cast(array, &DataType::Float64, batch)?;
                for (row, value) in floats.as_primitive::<Float64Type>().iter().enumerate() {
                    if let Some(v) = value {
                        let why = if v.is_nan() {
                            Some(format!("{col} NaN is not a number in range"))
                        } else {
                            reason(v, &|| v.to_string())
                        };
                        if let Some(why) = why {
                            out.push((row, why));
                        }
                    }
                }
            } else {
                return Err(wrong_type(name, batch, col, "a numeric column", data_type));
            }
        }
        RuleCheck::Pattern(pattern) => {
            if !is_text(array.data_type()) {
                return Err(wrong_type(
                    name,
                    batch,
                    col,
                    "a text column (Utf8)",
                    array.data_type(),
                ));
            }
            let text = cast(array, &DataType::Utf8, batch)?;
            // A text column a pattern checks often holds few distinct values (currencies,
            // country codes): each is matched once per batch and looked up after, up to
            // PATTERN_MEMO of them (past that, every value is matched).
            let mut seen: HashMap<&str, bool, foldhash::fast::RandomState> = HashMap::default();
            for (row, value) in text.as_string::<i32>().iter().enumerate() {
                let Some(value) = value else { continue };
                let matches = match seen.get(value) {
                    Some(matches) => *matches,
                    None => {
                        let matches = pattern.is_match(value);
                        if seen.len() < PATTERN_MEMO {
                            seen.insert(value, matches);
                        }
                        matches
                    }
                };
                if !matches {
                    out.push((
                        row,
                        format!("{col} {} does not match {}", quote(value), pattern.as_str()),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Applies `rules` to `batch`: failing rows become [`DeadLetterKind::RuleViolation`] dead letters
/// (one per row, naming every rule it failed), the others stay. A rule on a column the batch
/// lacks, or of a type it cannot read, is an error raised before anything changes.
pub fn apply_rules(
    rules: &[RecordRule],
    batch: SourceBatch,
) -> Result<(SourceBatch, RuleCounts), QualityError> {
    let rows = batch.records.num_rows();
    let mut counts = RuleCounts {
        rows: rows as u64,
        ..RuleCounts::default()
    };
    if rules.is_empty() {
        return Ok((batch, counts));
    }
    let name = describe(&batch);
    if batch.offsets.len() != rows {
        return Err(QualityError::Invariant {
            batch: name,
            message: format!("{} offsets for {rows} rows", batch.offsets.len()),
        });
    }
    // Every rule first: an error leaves nothing half-done. Failures are sparse: keyed by row.
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for rule in rules {
        let failed = failures(rule, &batch.records, &name)?;
        *counts.failed.entry(rule.name.clone()).or_default() += failed.len() as u64;
        for (row, why) in failed {
            reasons
                .entry(row)
                .or_default()
                .push(format!("rule {}: {why}", rule.name));
        }
    }
    if reasons.is_empty() {
        return Ok((batch, counts));
    }
    let keep: BooleanArray = (0..rows)
        .map(|row| Some(!reasons.contains_key(&row)))
        .collect();
    let records =
        arrow_select::filter::filter_record_batch(&batch.records, &keep).map_err(|e| {
            QualityError::Arrow {
                batch: name.clone(),
                operation: "filtering rows that failed a rule",
                message: e.to_string(),
            }
        })?;
    let mut batch = batch;
    let violations: Vec<DeadLetter> = reasons
        .into_iter()
        .filter_map(|(row, why)| {
            batch.offsets.get(row).map(|offset| DeadLetter {
                offset: *offset,
                raw: Bytes::new(),
                object_key: None,
                kind: DeadLetterKind::RuleViolation,
                message: why.join("; "),
            })
        })
        .collect();
    let offsets: Vec<i64> = batch
        .offsets
        .iter()
        .zip(keep.values().iter())
        .filter_map(|(offset, keep)| keep.then_some(*offset))
        .collect();
    counts.dead_lettered = violations.len() as u64;
    batch.records = records;
    batch.offsets = offsets;
    let sorted = batch.dead_letters.is_empty();
    batch.dead_letters.extend(violations);
    if !sorted {
        batch.dead_letters.sort_by_key(|d| d.offset);
    }
    Ok((batch, counts))
}

#[cfg(test)]
mod tests;
