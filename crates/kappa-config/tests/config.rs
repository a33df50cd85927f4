//! The configuration contract: example files parse, env overrides, errors name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kappa_config::{ConfigError, PartitionTransform, SchemaSource, load_str, load_with_env};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn every_example_config_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            load_with_env(&path, no_env(), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn the_shared_contract_example_keeps_its_meaning() {
    let config = load_with_env(&examples().join("orders-replay.toml"), no_env(), &[]).unwrap();
    assert_eq!(config.name, "orders");
    assert_eq!(config.table, "orders");
    assert_eq!(config.dlq_table, "orders_dlq");
    assert_eq!(config.raw.table.namespace, "kappa");
    assert_eq!(config.partition_by[0].transform, PartitionTransform::Day);
    assert_eq!(config.schema, SchemaSource::Dir("contracts".into()));
    assert_eq!(config.subject, "orders-value");
    assert_eq!(config.commit_interval, std::time::Duration::from_secs(60));
    let (url, topic, _) = config.archive().unwrap();
    assert_eq!(
        (url.as_str(), topic.as_str()),
        ("file:///var/lib/kappa/archive", "orders")
    );
    assert_eq!(config.raw.metrics.listen, "127.0.0.1:9464");
    assert_eq!(
        config
            .raw
            .source
            .kafka
            .as_ref()
            .unwrap()
            .group_id
            .as_deref(),
        Some("kappa-orders")
    );
}

#[test]
fn env_overrides_nested_keys() {
    let env = vec![
        (
            "KAPPA__SOURCE__ARCHIVE__URL".to_string(),
            "s3://events/archive".to_string(),
        ),
        (
            "KAPPA__CATALOG__URI".to_string(),
            "postgres://k:secret@db:5432/lake".to_string(),
        ),
        ("KAPPA__COMMIT__ROWS".to_string(), "5000".to_string()),
        (
            "KAPPA__TABLE__PARTITION_BY".to_string(),
            "hour(event_time),bucket[8](user_id)".to_string(),
        ),
        ("OTHER".to_string(), "ignored".to_string()),
    ];
    let config = load_with_env(&examples().join("orders-replay.toml"), env, &[]).unwrap();
    assert_eq!(config.archive().unwrap().0, "s3://events/archive");
    assert_eq!(config.catalog_uri, "postgres://k:secret@db:5432/lake");
    assert_eq!(config.raw.commit.rows, 5000);
    assert_eq!(config.partition_by.len(), 2);
    assert_eq!(
        config.partition_by[1].transform,
        PartitionTransform::Bucket(8)
    );
    assert!(
        !format!("{:?}", config.raw.catalog).contains("k:secret@"),
        "secrets are redacted"
    );
}

#[test]
fn flags_override_env_and_file() {
    let env = vec![("KAPPA__COMMIT__INTERVAL".to_string(), "10s".to_string())];
    let overrides = vec![("commit.interval".to_string(), "2s".to_string())];
    let config = load_with_env(&examples().join("orders-replay.toml"), env, &overrides).unwrap();
    assert_eq!(config.commit_interval, std::time::Duration::from_secs(2));
}

const MINIMAL: &str = r#"
[pipeline]
name = "p"
[catalog]
uri = "sqlite:///tmp/c.db"
warehouse = "file:///tmp/w"
[table]
name = "t"
"#;

#[test]
fn unknown_keys_are_named() {
    let text = format!("{MINIMAL}\n[commit]\nintervl = \"5s\"\n");
    let err = load_str(&text, "p.toml", no_env(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("intervl") && err.contains("commit"), "{err}");
    let text = format!("{MINIMAL}\n[bogus]\nx = 1\n");
    let err = load_str(&text, "p.toml", no_env(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            format!("{MINIMAL}\n[commit]\ninterval = \"soon\"\n"),
            "interval",
        ),
        (
            MINIMAL.replace("file:///tmp/w", "ftp://x/w"),
            "[catalog] warehouse",
        ),
        (
            MINIMAL.replace("sqlite:///tmp/c.db", "mysql://x"),
            "[catalog] uri",
        ),
        (
            MINIMAL.replace("name = \"p\"", "name = \"\""),
            "[pipeline] name",
        ),
        (
            format!("{MINIMAL}partition_by = [\"dya(event_time)\"]\n"),
            "[table] partition_by",
        ),
    ];
    for (text, key) in cases {
        let err = load_str(&text, "p.toml", no_env(), &[]).unwrap_err();
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    let err = load_str(
        &MINIMAL.replace("[table]\nname = \"t\"", "[table]"),
        "p.toml",
        no_env(),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key().as_deref(), Some("table.name"), "{err}");
    assert!(matches!(err, ConfigError::Invalid { .. }));
}
