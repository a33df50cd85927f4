//! Every section and key Kappa knows, checked before deserializing so that an unknown key is an
//! error naming the key, its section, where it came from and what is expected.
//!
//! `serde(deny_unknown_fields)` on the raw structs stays as a safety net; a test checks that this
//! table and the structs agree, and another that `docs/configuration.md` documents every key.

use config::{Value, ValueKind};

use crate::error::ConfigError;

/// A section and its keys. `None`: free-form (any key).
pub(crate) type Section = (&'static str, Option<&'static [&'static str]>);

const S3_KEYS: [&str; 6] = [
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "allow_http",
    "path_style",
];

/// Every section (`""` is the top level) with its keys.
pub(crate) const SECTIONS: &[Section] = &[
    (
        "",
        Some(&[
            "pipeline",
            "source",
            "schema",
            "catalog",
            "table",
            "commit",
            "dedup",
            "event_time",
            "quality",
            "dlq",
            "metrics",
            "replay",
            "maintenance",
            "logic",
        ]),
    ),
    ("pipeline", Some(&["name", "logic"])),
    ("source", Some(&["archive", "kafka"])),
    (
        "source.archive",
        Some(&[
            "url",
            "topic",
            "format",
            "max_object_bytes",
            "max_block_bytes",
            "max_inflated_bytes",
            S3_KEYS[0],
            S3_KEYS[1],
            S3_KEYS[2],
            S3_KEYS[3],
            S3_KEYS[4],
            S3_KEYS[5],
        ]),
    ),
    (
        "source.kafka",
        Some(&[
            "bootstrap_servers",
            "topic",
            "group_id",
            "start",
            "assignment",
            "shard",
            "startup_timeout",
            "properties",
        ]),
    ),
    ("source.kafka.properties", None),
    (
        "schema",
        Some(&[
            "dir",
            "url",
            "subject",
            "ca_file",
            "timeout",
            "max_attempts",
            "max_response_bytes",
            "username",
            "password",
        ]),
    ),
    (
        "catalog",
        Some(&[
            "type",
            "name",
            "uri",
            "warehouse",
            S3_KEYS[0],
            S3_KEYS[1],
            S3_KEYS[2],
            S3_KEYS[3],
            S3_KEYS[4],
            S3_KEYS[5],
            "credential",
            "token",
            "scope",
            "oauth2_server_uri",
            "prefix",
            "properties",
        ]),
    ),
    ("catalog.properties", None),
    (
        "table",
        Some(&[
            "namespace",
            "name",
            "partition_by",
            "target_file_size",
            "writers",
            "dlq_name",
            "late_name",
            "quarantine_name",
            "kafka_metadata",
        ]),
    ),
    (
        "commit",
        Some(&[
            "interval",
            "rows",
            "bytes",
            "max_attempts",
            "conflict_timeout",
        ]),
    ),
    ("dedup", Some(&["key", "window"])),
    (
        "event_time",
        Some(&["column", "allowed_lateness", "late_policy"]),
    ),
    (
        "quality",
        Some(&["enabled", "default_rules", "rules", "gates", "partition"]),
    ),
    // An array of tables: every entry is checked against these keys.
    (
        "quality.rules",
        Some(&[
            "name", "column", "required", "allowed", "min", "max", "pattern", "policy", "max_rate",
        ]),
    ),
    (
        "quality.gates",
        Some(&["completeness", "null_rate", "uniqueness", "timeliness"]),
    ),
    ("quality.gates.completeness", Some(&["enabled", "policy"])),
    (
        "quality.gates.null_rate",
        Some(&["enabled", "policy", "columns", "max_rate"]),
    ),
    (
        "quality.gates.uniqueness",
        Some(&["enabled", "policy", "column", "max_rate"]),
    ),
    (
        "quality.gates.timeliness",
        Some(&["enabled", "policy", "freshness_sla", "max_late_rate"]),
    ),
    (
        "quality.partition",
        Some(&[
            "enabled",
            "policy",
            "lookback_days",
            "min_history_days",
            "band",
        ]),
    ),
    ("dlq", Some(&[])),
    (
        "metrics",
        Some(&[
            "listen",
            "stall_after",
            "linger",
            "max_connections",
            "request_timeout",
        ]),
    ),
    (
        "replay",
        Some(&[
            "parallelism",
            "batch_rows",
            "fetch_concurrency",
            "fetch_buffer_bytes",
        ]),
    ),
    (
        "maintenance",
        Some(&["expire_older_than", "retain_last", "orphan_older_than"]),
    ),
    // `[logic.<name>]`: each logic's own keys, checked against its registry entry.
    ("logic", None),
];

fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|(s, _)| *s == name)
}

fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// The env var that sets `path` (`source.archive.url` → `KAPPA__SOURCE__ARCHIVE__URL`).
pub(crate) fn env_var(path: &str) -> String {
    format!("KAPPA__{}", path.replace('.', "__").to_ascii_uppercase())
}

/// The origin of `value`, or of the first leaf inside it (sections made by a path have none).
fn first_origin(value: &Value) -> Option<&str> {
    value.origin().or_else(|| match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        ValueKind::Array(items) => items.iter().find_map(first_origin),
        _ => None,
    })
}

/// Where a value came from, for messages: the file's name, `env KAPPA__X__Y` or `--set`.
fn origin(value: &Value, path: &str, file: &str) -> String {
    match first_origin(value) {
        Some("the environment") => format!("env {}", env_var(path)),
        Some(other) => other.to_string(),
        None => file.to_string(),
    }
}

/// Checks every key of the merged configuration against [`SECTIONS`].
pub(crate) fn check(root: &Value, file: &str) -> Result<(), ConfigError> {
    check_table("", root, file)
}

fn check_table(name: &str, value: &Value, file: &str) -> Result<(), ConfigError> {
    let ValueKind::Table(table) = &value.kind else {
        // A scalar where a section belongs: serde reports the type error with the key.
        return Ok(());
    };
    let Some((_, Some(keys))) = section(name) else {
        return Ok(());
    };
    for (key, child) in table {
        if !keys.contains(&key.as_str()) {
            let path = join(name, key);
            return Err(ConfigError::UnknownKey {
                section: name.to_string(),
                key: key.clone(),
                expected: if keys.is_empty() {
                    "none: this section takes no keys yet".into()
                } else {
                    format!("one of {}", keys.join(", "))
                },
                origin: origin(child, &path, file),
            });
        }
        let path = join(name, key);
        if section(&path).is_some() {
            match &child.kind {
                // An array of tables (`[[quality.rules]]`): each entry has the section's keys.
                ValueKind::Array(items) => {
                    for item in items {
                        check_table(&path, item, file)?;
                    }
                }
                _ => check_table(&path, child, file)?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_key_is_set_in_the_full_example() {
        let full: toml_like::Table = toml_like::parse(include_str!("../tests/full.toml"));
        for (section, keys) in SECTIONS {
            for key in keys.iter().flat_map(|k| k.iter()) {
                let path = join(section, key);
                assert!(full.contains(&path), "tests/full.toml does not set {path}");
            }
        }
        assert_eq!(env_var("source.archive.url"), "KAPPA__SOURCE__ARCHIVE__URL");
    }

    /// Just enough TOML reading for the test: the dotted paths of sections and keys.
    mod toml_like {
        pub type Table = std::collections::BTreeSet<String>;

        pub fn parse(text: &str) -> Table {
            let mut paths = Table::new();
            let mut section = String::new();
            // `# key = value` lines count: they set keys exclusive with one already set.
            for line in text.lines().map(str::trim) {
                let line = line.strip_prefix("# ").unwrap_or(line);
                // `[[array.of.tables]]` names its section like `[table]`.
                let header = line
                    .strip_prefix("[[")
                    .and_then(|l| l.strip_suffix("]]"))
                    .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')));
                if let Some(name) = header {
                    section = name.to_string();
                    let mut prefix = String::new();
                    for part in name.split('.') {
                        prefix = super::join(&prefix, part);
                        paths.insert(prefix.clone());
                    }
                } else if let Some((key, _)) = line.split_once('=') {
                    paths.insert(super::join(&section, key.trim().trim_matches('"')));
                }
            }
            paths
        }
    }
}
