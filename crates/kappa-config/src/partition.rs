//! `[table] partition_by` entries: `day(event_time)`, `bucket[16](user_id)`, a bare column.

use std::fmt;

use crate::error::ConfigError;

const EXPECTED: &str = "expected identity|year|month|day|hour|bucket[N]|truncate[N]";

/// An Iceberg partition transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionTransform {
    /// The value itself.
    Identity,
    /// Year of a date/timestamp.
    Year,
    /// Month of a date/timestamp.
    Month,
    /// Day of a date/timestamp.
    Day,
    /// Hour of a timestamp.
    Hour,
    /// Hash bucket, `N` buckets.
    Bucket(u32),
    /// Truncation to width `N`.
    Truncate(u32),
}

impl fmt::Display for PartitionTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionTransform::Identity => f.write_str("identity"),
            PartitionTransform::Year => f.write_str("year"),
            PartitionTransform::Month => f.write_str("month"),
            PartitionTransform::Day => f.write_str("day"),
            PartitionTransform::Hour => f.write_str("hour"),
            PartitionTransform::Bucket(n) => write!(f, "bucket[{n}]"),
            PartitionTransform::Truncate(n) => write!(f, "truncate[{n}]"),
        }
    }
}

/// One `[table] partition_by` entry: a transform of a source column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionSpec {
    /// Source column.
    pub column: String,
    /// Transform.
    pub transform: PartitionTransform,
}

impl fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.transform, self.column)
    }
}

fn is_column(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

/// Parses `day(event_time)`, `bucket[16](user_id)`, `identity(x)`, or a bare column (identity).
pub fn parse_partition(text: &str) -> Result<PartitionSpec, ConfigError> {
    let bad = |message: String| ConfigError::invalid("table", "partition_by", message);
    let text = text.trim();
    let Some((head, rest)) = text.split_once('(') else {
        if is_column(text) {
            return Ok(PartitionSpec {
                column: text.to_string(),
                transform: PartitionTransform::Identity,
            });
        }
        return Err(bad(format!(
            "{text:?} is not a transform of a column; expected e.g. day(event_time)"
        )));
    };
    let column = rest
        .strip_suffix(')')
        .map(str::trim)
        .filter(|c| is_column(c))
        .ok_or_else(|| {
            bad(format!(
                "{text:?}: expected transform(column), e.g. day(event_time)"
            ))
        })?;
    let head = head.trim();
    let width = |name: &str| -> Result<Option<u32>, ConfigError> {
        let Some(param) = head.strip_prefix(name) else {
            return Ok(None);
        };
        param
            .strip_prefix('[')
            .and_then(|p| p.strip_suffix(']'))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| bad(format!("{text:?}: {name}[N] needs a positive integer N")))
    };
    let transform = match head {
        "identity" => PartitionTransform::Identity,
        "year" => PartitionTransform::Year,
        "month" => PartitionTransform::Month,
        "day" => PartitionTransform::Day,
        "hour" => PartitionTransform::Hour,
        _ => {
            if let Some(n) = width("bucket")? {
                PartitionTransform::Bucket(n)
            } else if let Some(n) = width("truncate")? {
                PartitionTransform::Truncate(n)
            } else {
                return Err(bad(format!("unknown transform {text:?}; {EXPECTED}")));
            }
        }
    };
    Ok(PartitionSpec {
        column: column.to_string(),
        transform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transform_and_prints_it_back() {
        for (text, transform) in [
            ("identity(currency)", PartitionTransform::Identity),
            ("year(event_time)", PartitionTransform::Year),
            ("month(event_time)", PartitionTransform::Month),
            ("day(event_time)", PartitionTransform::Day),
            ("hour(event_time)", PartitionTransform::Hour),
            ("bucket[16](user_id)", PartitionTransform::Bucket(16)),
            ("truncate[4](order_id)", PartitionTransform::Truncate(4)),
        ] {
            let spec = parse_partition(text).unwrap();
            assert_eq!(spec.transform, transform, "{text}");
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            parse_partition(" currency ").unwrap(),
            PartitionSpec {
                column: "currency".into(),
                transform: PartitionTransform::Identity
            }
        );
    }

    #[test]
    fn a_bad_transform_names_it_and_lists_the_known_ones() {
        let err = parse_partition("dya(event_time)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config: [table] partition_by: unknown transform \"dya(event_time)\"; expected identity|year|month|day|hour|bucket[N]|truncate[N]"
        );
        assert_eq!(err.key().as_deref(), Some("table.partition_by"));
        for bad in [
            "bucket[0](x)",
            "bucket(x)",
            "truncate[-1](x)",
            "day()",
            "day(x",
            "a b",
        ] {
            assert!(parse_partition(bad).is_err(), "{bad}");
        }
    }
}
