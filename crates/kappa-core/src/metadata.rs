//! The Kafka record attributes a table may carry as columns besides the value
//! (`[table] kafka_metadata`).

use std::fmt;
use std::str::FromStr;

/// Name of the column that carries a record's Kafka key (raw bytes).
pub const KEY_COLUMN: &str = "_kafka_key";
/// Name of the column that carries a record's Kafka timestamp.
pub const TIMESTAMP_COLUMN: &str = "_kafka_timestamp";
/// Name of the column that carries a record's Kafka headers (key and raw value, in order).
pub const HEADERS_COLUMN: &str = "_kafka_headers";

/// One Kafka record attribute kept as a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KafkaMetadata {
    /// The key, as the bytes the producer sent (`binary`, NULL for a record without one).
    Key,
    /// The record timestamp (create or log-append time, whichever the topic keeps), µs
    /// precision (`timestamptz`).
    Timestamp,
    /// The headers, in order, repeated keys kept (`list<struct<key: string, value: binary>>`).
    Headers,
}

impl KafkaMetadata {
    /// Every attribute, in column order.
    pub const ALL: [KafkaMetadata; 3] = [
        KafkaMetadata::Key,
        KafkaMetadata::Timestamp,
        KafkaMetadata::Headers,
    ];

    /// The config name: `key`, `timestamp`, `headers`.
    pub fn name(self) -> &'static str {
        match self {
            KafkaMetadata::Key => "key",
            KafkaMetadata::Timestamp => "timestamp",
            KafkaMetadata::Headers => "headers",
        }
    }

    /// The table column.
    pub fn column(self) -> &'static str {
        match self {
            KafkaMetadata::Key => KEY_COLUMN,
            KafkaMetadata::Timestamp => TIMESTAMP_COLUMN,
            KafkaMetadata::Headers => HEADERS_COLUMN,
        }
    }
}

impl fmt::Display for KafkaMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KafkaMetadata {
    type Err = String;

    /// `key`, `timestamp` or `headers`; anything else is an error listing them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KafkaMetadata::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| format!("{s:?}: expected key, timestamp or headers"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_name_their_columns() {
        for m in KafkaMetadata::ALL {
            assert_eq!(m.name().parse::<KafkaMetadata>().unwrap(), m);
        }
        assert_eq!(KafkaMetadata::Headers.column(), "_kafka_headers");
        assert_eq!(
            "keys".parse::<KafkaMetadata>().unwrap_err(),
            "\"keys\": expected key, timestamp or headers"
        );
    }
}
