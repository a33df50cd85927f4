//! The configuration contract: example files parse, layers override in order, errors name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use kappa_config::{
    ArchiveFormat, CatalogKind, ConfigError, KafkaAssignment, PartitionTransform, SchemaSource,
    load_str, load_with_env,
};
use kappa_quality::{Policy, RuleCheck};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples")
}

fn contract_example() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/orders-replay.toml"
    ))
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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

fn load(text: &str) -> Result<kappa_config::PipelineConfig, ConfigError> {
    load_str(text, "p.toml", no_env(), &[])
}

#[test]
fn every_example_config_parses() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            load_with_env(&path, no_env(), &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen.push(path);
        }
    }
    assert!(seen.len() >= 2, "{seen:?}");
}

#[test]
fn the_shared_contract_example_keeps_its_meaning() {
    let config = load_with_env(&contract_example(), no_env(), &[]).unwrap();
    assert_eq!(config.name, "orders");
    assert_eq!(config.logic, "orders");
    let archive = config.source_archive.as_ref().unwrap();
    assert_eq!(archive.url.as_str(), "file:///var/lib/kappa/archive");
    assert_eq!(archive.topic, "orders");
    assert_eq!(archive.format, ArchiveFormat::Auto);
    let (url, topic, _) = config.archive().unwrap();
    assert_eq!(
        (url.as_str(), topic.as_str()),
        ("file:///var/lib/kappa/archive", "orders")
    );
    let kafka = config.kafka().unwrap();
    assert_eq!(kafka.bootstrap_servers, "127.0.0.1:19092");
    assert_eq!(kafka.topic, "orders");
    assert_eq!(kafka.group_id, "kappa-orders");
    assert_eq!(config.schema, SchemaSource::Dir("contracts".into()));
    assert_eq!(config.subject, "orders-value");
    assert_eq!(config.catalog_kind, CatalogKind::Sql);
    assert_eq!(config.raw.catalog.name, "kappa");
    assert_eq!(config.catalog_uri, "sqlite:////var/lib/kappa/catalog.db");
    assert_eq!(config.warehouse, "file:///var/lib/kappa/warehouse");
    assert_eq!(config.raw.table.namespace, "kappa");
    assert_eq!(config.table, "orders");
    assert_eq!(config.dlq_table, "orders_dlq");
    assert_eq!(config.partition_by.len(), 1);
    assert_eq!(config.partition_by[0].transform, PartitionTransform::Day);
    assert_eq!(config.partition_by[0].column, "event_time");
    assert_eq!(config.commit_interval, Duration::from_secs(60));
    assert_eq!(config.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(
        config.quality,
        kappa_logic::orders::default_quality("event_time").unwrap(),
        "no [quality]: the orders contract's defaults"
    );
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = load(MINIMAL).unwrap();
    let raw = &config.raw;
    assert_eq!(raw.pipeline.logic, "orders");
    assert_eq!(config.schema, SchemaSource::Dir("contracts".into()));
    assert_eq!(config.subject, "p-value", "no topic: the pipeline name");
    assert_eq!(raw.table.target_file_size, 128 << 20);
    assert_eq!(raw.table.writers, 2);
    assert_eq!(config.dlq_table, "t_dlq");
    assert_eq!(config.commit_interval, Duration::from_secs(60));
    assert_eq!(raw.commit.rows, 1_000_000);
    assert_eq!(raw.commit.bytes, 32 << 20);
    assert_eq!(raw.commit.max_attempts, 10);
    assert_eq!(raw.commit.conflict_timeout, Duration::from_secs(600));
    assert_eq!(raw.dedup.window, 100_000);
    assert_eq!(raw.event_time.column, "event_time");
    assert_eq!(raw.event_time.allowed_lateness, Duration::from_secs(3600));
    assert_eq!(config.late_policy, kappa_config::LatePolicy::Append);
    assert_eq!(config.late_table, "t_late");
    assert_eq!(raw.replay.parallelism, 8);
    assert_eq!(config.replay_parallelism(3), 3);
    assert_eq!(config.replay_parallelism(12), 8);
    assert_eq!(raw.replay.batch_rows, 16_384);
    assert_eq!(raw.replay.fetch_concurrency, 64);
    assert_eq!(raw.replay.fetch_buffer_bytes, 16 << 20);
    assert!(config.source_archive.is_none() && config.source_kafka.is_none());
    assert!(
        config
            .archive()
            .unwrap_err()
            .to_string()
            .contains("[source.archive] url")
    );
}

#[test]
fn env_reaches_nested_sections_and_keys_with_underscores() {
    let env = env(&[
        ("KAPPA__SOURCE__ARCHIVE__URL", "s3://events/archive"),
        ("KAPPA__SOURCE__ARCHIVE__SECRET_ACCESS_KEY", "s3cr3t"),
        ("KAPPA__SOURCE__ARCHIVE__ALLOW_HTTP", "true"),
        ("KAPPA__CATALOG__URI", "postgres://k:pw@db:5432/lake"),
        ("KAPPA__COMMIT__ROWS", "5000"),
        ("KAPPA__PIPELINE__NAME", "007"),
        (
            "KAPPA__TABLE__PARTITION_BY",
            "hour(event_time), bucket[8](user_id)",
        ),
        ("KAPPA__SCHEMA__SUBJECT", ""),
        ("KAPPA_LOG", "debug"),
        ("OTHER", "ignored"),
    ]);
    let config = load_with_env(&contract_example(), env, &[]).unwrap();
    let archive = config.source_archive.as_ref().unwrap();
    assert_eq!(archive.url.as_str(), "s3://events/archive");
    assert_eq!(
        archive.s3.secret_access_key.as_ref().unwrap().expose(),
        "s3cr3t"
    );
    assert!(archive.s3.allow_http);
    assert_eq!(config.catalog_uri, "postgres://k:pw@db:5432/lake");
    assert_eq!(config.raw.commit.rows, 5000);
    assert_eq!(config.name, "007", "env values are not reinterpreted");
    assert_eq!(config.subject, "orders-value", "an empty env var is unset");
    let transforms: Vec<String> = config.partition_by.iter().map(|p| p.to_string()).collect();
    assert_eq!(transforms, ["hour(event_time)", "bucket[8](user_id)"]);
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "secrets are redacted: {debug}");
    assert!(!format!("{:?}", config.raw.catalog).contains("k:pw@"));
}

#[test]
fn flags_override_env_which_overrides_the_file() {
    let env = env(&[
        ("KAPPA__COMMIT__INTERVAL", "10s"),
        ("KAPPA__COMMIT__ROWS", "7"),
    ]);
    let overrides = vec![("commit.interval".to_string(), "2s".to_string())];
    let config = load_with_env(&contract_example(), env, &overrides).unwrap();
    assert_eq!(config.commit_interval, Duration::from_secs(2));
    assert_eq!(config.raw.commit.rows, 7);
}

#[test]
fn unknown_keys_name_the_key_the_section_and_the_expected_ones() {
    let err = load(&format!("{MINIMAL}\n[commit]\nintervl = \"5s\"\n")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: unknown key \"intervl\" in [commit]; expected one of interval, rows, bytes, max_attempts, conflict_timeout (from p.toml)"
    );
    assert_eq!(err.key().as_deref(), Some("commit.intervl"));
    let err = load(&format!("{MINIMAL}\n[bogus]\nx = 1\n")).unwrap_err();
    assert!(err.to_string().contains("unknown section [bogus]"), "{err}");
    let err = load(&format!(
        "{MINIMAL}\n[source.archive]\nurl = \"file:///a\"\nregoin = \"x\"\n"
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("\"regoin\" in [source.archive]"),
        "{err}"
    );
    let err = load(&format!("{MINIMAL}\n[quality]\nnull_rate = 0.1\n")).unwrap_err();
    assert!(
        err.to_string().contains("\"null_rate\" in [quality]"),
        "{err}"
    );
    let err = load_str(
        MINIMAL,
        "p.toml",
        env(&[("KAPPA__COMMIT__INTERVL", "5s")]),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("(from env KAPPA__COMMIT__INTERVL)"),
        "{err}"
    );
    let overrides = vec![("table.nmae".to_string(), "x".to_string())];
    let err = load_str(MINIMAL, "p.toml", no_env(), &overrides).unwrap_err();
    assert!(
        err.to_string().contains("\"nmae\" in [table]") && err.to_string().contains("(from --set)"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            format!("{MINIMAL}\n[commit]\ninterval = \"soon\"\n"),
            "config: [commit] interval:",
        ),
        (
            format!("{MINIMAL}\n[commit]\nrows = \"many\"\n"),
            "config: [commit] rows:",
        ),
        (
            format!("{MINIMAL}\n[event_time]\nallowed_lateness = 5\n"),
            "config: [event_time] allowed_lateness:",
        ),
        (
            format!("{MINIMAL}\n[event_time]\nlate_policy = \"drop\"\n"),
            "config: [event_time] late_policy: \"drop\": expected \"append\" or \"late_table\"",
        ),
        (
            format!("{MINIMAL}dlq_name = \"x\"\nlate_name = \"x\"\n"),
            "config: [table] late_name: must differ",
        ),
        (
            MINIMAL.replace("file:///tmp/w", "ftp://x/w"),
            "config: [catalog] warehouse: unsupported scheme \"ftp\"",
        ),
        (
            MINIMAL.replace("sqlite:///tmp/c.db", "mysql://x"),
            "config: [catalog] uri:",
        ),
        (
            MINIMAL.replace("name = \"p\"", "name = \"\""),
            "config: [pipeline] name: missing",
        ),
        (
            format!("{MINIMAL}partition_by = [\"dya(event_time)\"]\n"),
            "config: [table] partition_by: unknown transform \"dya(event_time)\"",
        ),
        (
            format!("{MINIMAL}dlq_name = \"t\"\n"),
            "config: [table] dlq_name:",
        ),
        (
            MINIMAL.replace("[catalog]\n", "[catalog]\ntype = \"hive\"\n"),
            "config: [catalog] type: unknown catalog type \"hive\"",
        ),
        (
            format!("{MINIMAL}\n[schema]\ndir = \"c\"\nurl = \"http://r:8081\"\n"),
            "config: [schema] url: set either dir or url",
        ),
        (
            format!("{MINIMAL}\n[source.archive]\nurl = \"file:///a\"\n"),
            "config: [source.archive] topic: missing",
        ),
        (
            format!("{MINIMAL}\n[source.archive]\nurl = \"ftp://a\"\ntopic = \"o\"\n"),
            "config: [source.archive] url:",
        ),
        (
            format!(
                "{MINIMAL}\n[source.archive]\nurl = \"file:///a\"\ntopic = \"o\"\nformat = \"json\"\n"
            ),
            "config: [source.archive] format: unknown format \"json\"",
        ),
        (
            format!(
                "{MINIMAL}\n[source.archive]\nurl = \"s3://b/a\"\ntopic = \"o\"\nendpoint = \"localhost\"\n"
            ),
            "config: [source.archive] endpoint:",
        ),
        (
            format!("{MINIMAL}\n[source.kafka]\nbootstrap_servers = \"broker\"\ntopic = \"o\"\n"),
            "config: [source.kafka] bootstrap_servers: \"broker\" is not host:port",
        ),
        (
            format!("{MINIMAL}\n[dedup]\nwindow = -1\n"),
            "config: [dedup] window:",
        ),
        (
            format!("{MINIMAL}\n[replay]\nbatch_rows = 0\n"),
            "config: [replay] batch_rows:",
        ),
        (
            format!("{MINIMAL}\n[replay]\nfetch_concurrency = 0\n"),
            "config: [replay] fetch_concurrency:",
        ),
        (
            format!("{MINIMAL}\n[replay]\nfetch_buffer_bytes = 0\n"),
            "config: [replay] fetch_buffer_bytes:",
        ),
        (
            format!("{MINIMAL}writers = 0\n"),
            "config: [table] writers: must be greater than 0",
        ),
        (
            format!("{MINIMAL}\n[metrics]\nlisten = \"everywhere\"\n"),
            "config: [metrics] listen:",
        ),
        (
            format!("{MINIMAL}\n[metrics]\nmax_connections = 0\n"),
            "config: [metrics] max_connections: must be greater than 0",
        ),
        (
            format!("{MINIMAL}\n[metrics]\nrequest_timeout = \"0s\"\n"),
            "config: [metrics] request_timeout: must be greater than 0",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\ntimeout = \"soon\"\n"),
            "config: [schema] timeout:",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\ntimeout = \"0s\"\n"),
            "config: [schema] timeout: must be greater than 0",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\nmax_attempts = 0\n"),
            "config: [schema] max_attempts: must be greater than 0",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\nmax_attempts = -1\n"),
            "config: [schema] max_attempts:",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"http://r:8081\"\nca_file = \"/ca.pem\"\n"),
            "config: [schema] ca_file: the url is http://",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\nca_file = \" \"\n"),
            "config: [schema] ca_file: empty",
        ),
        (
            format!("{MINIMAL}\n[schema]\ndir = \"c\"\ntimeout = \"5s\"\n"),
            "config: [schema] timeout: only applies to a schema registry",
        ),
        (
            format!("{MINIMAL}\n[schema]\nca_file = \"/ca.pem\"\n"),
            "config: [schema] ca_file: only applies to a schema registry",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\nusername = \"u\"\n"),
            "config: [schema] password: missing",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\npassword = \"p\"\n"),
            "config: [schema] username: missing",
        ),
        (
            format!(
                "{MINIMAL}\n[schema]\nurl = \"https://r:8081\"\nusername = \" \"\npassword = \"p\"\n"
            ),
            "config: [schema] username: empty",
        ),
        (
            format!(
                "{MINIMAL}\n[schema]\nurl = \"https://a:b@r:8081\"\nusername = \"u\"\npassword = \"p\"\n"
            ),
            "config: [schema] username: the url already carries user info",
        ),
        (
            format!("{MINIMAL}\n[schema]\nurl = \"ftp://r\"\n"),
            "config: [schema] url: unsupported scheme \"ftp\"",
        ),
        (
            format!("{MINIMAL}\n[dlq]\nenabled = false\n"),
            "config: unknown key \"enabled\" in [dlq]; expected none: this section takes no keys yet",
        ),
    ];
    for (text, expected) in cases {
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
}

#[test]
fn the_registry_client_keys_parse_with_defaults_and_hide_the_password() {
    let with_url = format!("{MINIMAL}\n[schema]\nurl = \"https://registry:8081\"\n");
    let SchemaSource::Url(client) = load(&with_url).unwrap().schema else {
        panic!("a url gives a registry");
    };
    assert_eq!(client.url, "https://registry:8081/");
    assert_eq!(client.timeout, Duration::from_secs(10));
    assert_eq!(client.max_attempts, 5);
    assert_eq!(
        (client.username, client.password, client.ca_file),
        (None, None, None)
    );

    // Every key, the password and the attempts from the environment (strings parse).
    let text = format!(
        "{MINIMAL}\n[schema]\nurl = \"https://registry:8081\"\nca_file = \"/etc/ca.pem\"\ntimeout = \"2500ms\"\nusername = \"kappa\"\n"
    );
    let config = load_str(
        &text,
        "p.toml",
        env(&[
            ("KAPPA__SCHEMA__PASSWORD", "hunter2"),
            ("KAPPA__SCHEMA__MAX_ATTEMPTS", "2"),
        ]),
        &[],
    )
    .unwrap();
    let debug = format!("{config:?}");
    let SchemaSource::Url(client) = config.schema else {
        panic!("a url gives a registry");
    };
    assert_eq!(client.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(client.timeout, Duration::from_millis(2500));
    assert_eq!(client.max_attempts, 2);
    assert_eq!(client.username.as_deref(), Some("kappa"));
    assert_eq!(
        client.password.as_ref().map(|p| p.expose()),
        Some("hunter2")
    );
    assert!(
        !debug.contains("hunter2") && debug.contains("kappa"),
        "{debug}"
    );

    // User info in the URL is the other way to authenticate; its password is hidden too.
    let text = format!("{MINIMAL}\n[schema]\nurl = \"https://kappa:hunter2@registry:8081\"\n");
    let config = load(&text).unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("kappa:***@registry"),
        "{debug}"
    );
    // An unparsable URL is not echoed: it may carry a password.
    let text = format!("{MINIMAL}\n[schema]\nurl = \"https://kappa:hunter2@[registry\"\n");
    let err = load(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("config: [schema] url: not a URL") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn a_bad_catalog_uri_is_not_echoed() {
    let err = load(&MINIMAL.replace("sqlite:///tmp/c.db", "mysql://root:hunter2@db/x"))
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn missing_required_keys_are_named() {
    let err = load(&MINIMAL.replace("[table]\nname = \"t\"", "[table]")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("table.name"), "{err}");
    assert!(matches!(err, ConfigError::Invalid { .. }));
    let err = load(&MINIMAL.replace("uri = \"sqlite:///tmp/c.db\"\n", "")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("catalog.uri"), "{err}");
    let err = load(&MINIMAL.replace("[pipeline]\nname = \"p\"", "[pipeline]")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: [pipeline] name: missing; it identifies this pipeline's commits in the table"
    );
}

#[test]
fn toml_syntax_errors_name_the_file_and_line() {
    let err = load(&format!("{MINIMAL}\n[commit\n")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().starts_with("config: p.toml:"), "{err}");
}

#[test]
fn a_rest_catalog_takes_an_http_uri_and_an_optional_warehouse() {
    let text = MINIMAL
        .replace("[catalog]\n", "[catalog]\ntype = \"rest\"\n")
        .replace("sqlite:///tmp/c.db", "http://127.0.0.1:8181")
        .replace("warehouse = \"file:///tmp/w\"\n", "");
    let config = load(&text).unwrap();
    assert_eq!(config.catalog_kind, CatalogKind::Rest);
    assert_eq!(config.catalog_uri, "http://127.0.0.1:8181");
    assert_eq!(config.warehouse, "");
    let err = load(&text.replace("http://127.0.0.1:8181", "sqlite:///x.db")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("catalog.uri"));
}

/// The REST catalog's keys: loaded with their secrets hidden from `Debug`, passed-through
/// properties flattened (a header name keeps its case), refused on a SQL catalog naming the key.
#[test]
fn rest_catalog_keys_load_hidden_and_are_refused_on_a_sql_catalog() {
    let text = MINIMAL
        .replace("[catalog]\n", "[catalog]\ntype = \"rest\"\n")
        .replace(
            "sqlite:///tmp/c.db",
            "https://polaris.example.com/api/catalog",
        )
        .replace(
            "warehouse = \"file:///tmp/w\"\n",
            "warehouse = \"prod\"\ncredential = \"kappa-client:s3cr3t-1\"\n\
             scope = \"PRINCIPAL_ROLE:ALL\"\nprefix = \"prod\"\n\
             oauth2_server_uri = \"https://idp.example.com/token\"\n\
             [catalog.properties]\nheader.X-Iceberg-Access-Delegation = \"vended-credentials\"\n\
             \"header.Authorization\" = \"Bearer s3cr3t-2\"\n",
        );
    let env = env(&[("KAPPA__CATALOG__TOKEN", "s3cr3t-3")]);
    let config = load_str(&text, "p.toml", env, &[]).unwrap();
    let catalog = &config.raw.catalog;
    assert_eq!(
        catalog.credential.as_ref().unwrap().expose(),
        "kappa-client:s3cr3t-1"
    );
    assert_eq!(catalog.token.as_ref().unwrap().expose(), "s3cr3t-3");
    assert_eq!(catalog.scope.as_deref(), Some("PRINCIPAL_ROLE:ALL"));
    assert_eq!(catalog.prefix.as_deref(), Some("prod"));
    let props = &catalog.properties.0;
    assert_eq!(
        props["header.X-Iceberg-Access-Delegation"],
        "vended-credentials"
    );
    assert_eq!(props["header.Authorization"], "Bearer s3cr3t-2");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("vended-credentials"), "{debug}");

    for (key, line) in [
        ("catalog.credential", "credential = \"a:b\"\n"),
        ("catalog.token", "token = \"t\"\n"),
        ("catalog.prefix", "prefix = \"p\"\n"),
        (
            "catalog.properties",
            "[catalog.properties]\n\"header.X-A\" = \"b\"\n",
        ),
    ] {
        let sql = MINIMAL.replace(
            "warehouse = \"file:///tmp/w\"\n",
            &format!("warehouse = \"file:///tmp/w\"\n{line}"),
        );
        let err = load(&sql).unwrap_err();
        assert_eq!(err.key().as_deref(), Some(key), "{err}");
        assert!(err.to_string().contains("type = \"rest\""), "{err}");
    }
    for (key, bad) in [
        ("catalog.credential", "credential = \"client:\"\n"),
        (
            "catalog.oauth2_server_uri",
            "oauth2_server_uri = \"idp.example.com\"\n",
        ),
        ("catalog.prefix", "prefix = \"/p/\"\n"),
    ] {
        let text = MINIMAL
            .replace("[catalog]\n", "[catalog]\ntype = \"rest\"\n")
            .replace("sqlite:///tmp/c.db", "http://127.0.0.1:8181")
            .replace("warehouse = \"file:///tmp/w\"\n", bad);
        let err = load(&text).unwrap_err();
        assert_eq!(err.key().as_deref(), Some(key), "{err}");
    }
}

/// AWS Glue and S3 Tables: no `uri` needed (one given must be an http(s) endpoint), a warehouse
/// of their kind, `[catalog.properties]` passed through, REST's auth keys refused.
#[test]
fn glue_and_s3tables_catalogs_check_their_warehouse_and_take_no_rest_keys() {
    let aws = |kind: &str, warehouse: &str, extra: &str| {
        MINIMAL
            .replace("[catalog]\n", &format!("[catalog]\ntype = \"{kind}\"\n"))
            .replace("uri = \"sqlite:///tmp/c.db\"\n", "")
            .replace(
                "warehouse = \"file:///tmp/w\"\n",
                &format!("warehouse = \"{warehouse}\"\n{extra}"),
            )
    };
    let glue = load(&aws(
        "glue",
        "s3://lake/warehouse",
        "region = \"eu-west-1\"\n[catalog.properties]\ncatalog_id = \"123456789012\"\n",
    ))
    .unwrap();
    assert_eq!(glue.catalog_kind, CatalogKind::Glue);
    assert_eq!(glue.catalog_uri, "");
    assert_eq!(glue.raw.catalog.properties.0["catalog_id"], "123456789012");
    let arn = "arn:aws:s3tables:us-east-1:123456789012:bucket/lake";
    let tables = load(&aws("s3tables", arn, "")).unwrap();
    assert_eq!(tables.catalog_kind, CatalogKind::S3Tables);
    assert_eq!(tables.warehouse, arn);

    for (text, key) in [
        (aws("glue", "file:///tmp/w", ""), "catalog.warehouse"),
        (
            aws("glue", "s3://lake/w", "credential = \"a:b\"\n"),
            "catalog.credential",
        ),
        (aws("s3tables", "s3://lake/w", ""), "catalog.warehouse"),
        (
            aws(
                "s3tables",
                "arn:aws:s3:us-east-1:123456789012:bucket/lake",
                "",
            ),
            "catalog.warehouse",
        ),
        (
            aws("s3tables", arn, "uri = \"glue.amazonaws.com\"\n"),
            "catalog.uri",
        ),
        (aws("dynamo", arn, ""), "catalog.type"),
    ] {
        let err = load(&text).unwrap_err();
        assert_eq!(err.key().as_deref(), Some(key), "{err}");
    }
}

#[test]
fn kafka_properties_flatten_and_redact_secrets() {
    let text = format!(
        "{MINIMAL}\n[source.kafka]\nbootstrap_servers = \"b1:9092,b2:9092\"\ntopic = \"orders\"\n\
         [source.kafka.properties]\nsecurity.protocol = \"SASL_SSL\"\n\"sasl.username\" = \"kappa\"\n\
         sasl.password = \"hunter2\"\n\"fetch.max.bytes\" = 1048576\n"
    );
    let env = env(&[(
        "KAPPA__SOURCE__KAFKA__PROPERTIES__ENABLE__IDEMPOTENCE",
        "true",
    )]);
    let config = load_str(&text, "p.toml", env, &[]).unwrap();
    let kafka = config.kafka().unwrap();
    assert_eq!(kafka.group_id, "kappa-p", "default group id");
    let props = &kafka.properties.0;
    assert_eq!(props["security.protocol"], "SASL_SSL");
    assert_eq!(props["sasl.username"], "kappa");
    assert_eq!(props["sasl.password"], "hunter2");
    assert_eq!(props["fetch.max.bytes"], "1048576");
    assert_eq!(props["enable.idempotence"], "true");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("SASL_SSL"),
        "{debug}"
    );
    assert_eq!(
        config.subject, "orders-value",
        "the Kafka topic names the subject"
    );
}

#[test]
fn the_configuration_reference_documents_every_key() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let full =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/full.toml")).unwrap();
    let config = load_str(&full, "full.toml", no_env(), &[]).unwrap();
    assert_eq!(
        config.source_archive.as_ref().unwrap().format,
        ArchiveFormat::Envelope
    );
    // Every key set in full.toml (which sets every key) is in the reference with its env var;
    // keys of an array of tables (`[[quality.rules]]`) with none: env cannot index arrays.
    let mut section = String::new();
    let mut array = false;
    for line in full.lines().map(str::trim) {
        // `# key = value` and `# [section]` lines count: they set keys exclusive with one
        // already set.
        let line = line.strip_prefix("# ").unwrap_or(line);
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = name.to_string();
            array = true;
            assert!(
                doc.contains(&format!("`[[{section}]]`")),
                "array of tables [[{section}]] undocumented"
            );
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            array = false;
            if section == "source.kafka.properties" || section == "catalog.properties" {
                continue;
            }
            assert!(
                doc.contains(&format!("`[{section}]`")),
                "section [{section}] undocumented"
            );
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        if line.starts_with('#')
            || section == "source.kafka.properties"
            || section == "catalog.properties"
        {
            continue;
        }
        let var = format!("KAPPA__{}__{}", section.replace('.', "__"), key).to_ascii_uppercase();
        assert!(
            doc.contains(&format!("`{key}`")),
            "[{section}] {key} undocumented"
        );
        if array {
            continue;
        }
        assert!(
            doc.contains(&var),
            "[{section}] {key}: env {var} undocumented"
        );
    }
}

#[test]
fn quality_defaults_are_the_orders_contracts() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(
        config.quality,
        kappa_logic::orders::default_quality("event_time").unwrap()
    );
    // The timeliness gate reads [event_time] column.
    let config = load(&format!(
        "{MINIMAL}\n[event_time]\ncolumn = \"happened_at\"\n"
    ))
    .unwrap();
    let gate = config.quality.timeliness.as_ref().unwrap();
    assert_eq!(gate.event_time_column(), "happened_at");
}

#[test]
fn quality_rules_replace_defaults_by_name_and_extend_them() {
    let full =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/full.toml")).unwrap();
    let q = load_str(&full, "full.toml", no_env(), &[]).unwrap().quality;
    let names: Vec<&str> = q.rules.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "event_type_allowed",
            "amount_cents_range",
            "currency_pattern",
            "restaurant_id_required",
            "tip_cents_range"
        ],
        "a listed event_type_allowed replaces the default (same name); others append"
    );
    let currency = &q.rules[2];
    assert_eq!(
        (currency.policy(), currency.max_rate()),
        (Policy::Quarantine, 0.05)
    );
    assert_eq!(
        q.rules[4].check(),
        &RuleCheck::Range {
            min: Some(0.0),
            max: Some(100_000.0)
        }
    );
    assert_eq!(
        q.null_rate.as_ref().unwrap().columns(),
        ["user_id", "restaurant_id"]
    );
    assert_eq!(q.partition.as_ref().unwrap().min_history_days(), 5);
    // Without the defaults, only the listed rules run.
    let text = format!(
        "{MINIMAL}\n[quality]\ndefault_rules = false\n[[quality.rules]]\ncolumn = \"user_id\"\nrequired = true\n"
    );
    let q = load(&text).unwrap().quality;
    assert_eq!(q.rules.len(), 1);
    assert_eq!(q.rules[0].name(), "user_id_required");
    assert_eq!(q.rules[0].policy(), Policy::Warn);
}

#[test]
fn quality_gates_turn_off_and_take_env_overrides() {
    let text = format!(
        "{MINIMAL}\n[quality.gates.uniqueness]\nenabled = false\n[quality.partition]\nenabled = false\n"
    );
    let q = load(&text).unwrap().quality;
    assert!(q.uniqueness.is_none() && q.partition.is_none());
    assert!(q.null_rate.is_some() && q.completeness.is_some());
    let env = env(&[
        ("KAPPA__QUALITY__GATES__NULL_RATE__MAX_RATE", "0.01"),
        (
            "KAPPA__QUALITY__GATES__NULL_RATE__COLUMNS",
            "user_id, order_id",
        ),
        ("KAPPA__QUALITY__GATES__NULL_RATE__POLICY", "quarantine"),
        ("KAPPA__QUALITY__PARTITION__BAND", "0.5,1.5"),
        ("KAPPA__QUALITY__GATES__TIMELINESS__FRESHNESS_SLA", "1h"),
        ("KAPPA__QUALITY__DEFAULT_RULES", "false"),
    ]);
    let q = load_str(MINIMAL, "p.toml", env, &[]).unwrap().quality;
    let null_rate = q.null_rate.as_ref().unwrap();
    assert_eq!(null_rate.max_rate(), 0.01);
    assert_eq!(null_rate.columns(), ["user_id", "order_id"]);
    assert_eq!(null_rate.policy(), Policy::Quarantine);
    let band = q.partition.as_ref().unwrap().band();
    assert_eq!((band.lo(), band.hi()), (0.5, 1.5));
    assert_eq!(
        q.timeliness.as_ref().unwrap().freshness_sla(),
        Duration::from_secs(3600)
    );
    assert!(q.rules.is_empty());
    let overrides = vec![("quality.enabled".to_string(), "false".to_string())];
    let q = load_str(MINIMAL, "p.toml", no_env(), &overrides)
        .unwrap()
        .quality;
    assert!(!q.enabled);
}

#[test]
fn unknown_quality_keys_are_errors_naming_the_key() {
    let cases = [
        (
            "[[quality.rules]]\ncolum = \"currency\"\n",
            "config: unknown key \"colum\" in [quality.rules]; expected one of name, column, required, allowed, min, max, pattern, policy, max_rate (from p.toml)",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nrequired = true\n[[quality.rules]]\ncolumn = \"b\"\nrequird = true\n",
            "config: unknown key \"requird\" in [quality.rules]",
        ),
        (
            "[quality.gates.null_rate]\nmax = 0.1\n",
            "config: unknown key \"max\" in [quality.gates.null_rate]; expected one of enabled, policy, columns, max_rate",
        ),
        (
            "[quality.gates.freshness]\npolicy = \"warn\"\n",
            "config: unknown key \"freshness\" in [quality.gates]",
        ),
        (
            "[quality.partition]\nbands = [0.7, 1.3]\n",
            "config: unknown key \"bands\" in [quality.partition]",
        ),
    ];
    for (quality, expected) in cases {
        let err = load(&format!("{MINIMAL}\n{quality}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
    }
    let err = load_str(
        MINIMAL,
        "p.toml",
        env(&[("KAPPA__QUALITY__GATES__NULL_RATE__MAX_RAT", "0.1")]),
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("(from env KAPPA__QUALITY__GATES__NULL_RATE__MAX_RAT)"),
        "{err}"
    );
}

#[test]
fn bad_quality_values_name_the_key() {
    let cases = [
        (
            "[[quality.rules]]\ncolumn = \"currency\"\npattern = \"^[A-Z{3}$\"\n",
            "config: [quality.rules] pattern: rule #1 (column \"currency\"): \"^[A-Z{3}$\" is not a valid regular expression",
        ),
        (
            "[quality.partition]\nband = [1.3, 0.7]\n",
            "config: [quality.partition] band: [1.3, 0.7]: the low factor is above the high one",
        ),
        (
            "[quality.partition]\nband = [0.7]\n",
            "config: [quality.partition] band: 1 numbers; expected two",
        ),
        (
            "[quality.partition]\nmin_history_days = 9\n",
            "config: [quality.partition] min_history_days: 9: must be between 1 and lookback_days (7)",
        ),
        (
            "[quality.gates.null_rate]\npolicy = \"stop\"\n",
            "config: [quality.gates.null_rate] policy: unknown policy \"stop\"; expected block|quarantine|warn",
        ),
        (
            "[quality.gates.null_rate]\nmax_rate = 15\n",
            "config: [quality.gates.null_rate] max_rate: 15 is not a share between 0 and 1",
        ),
        (
            "[quality.gates.timeliness]\nfreshness_sla = \"0s\"\n",
            "config: [quality.gates.timeliness] freshness_sla: must be greater than 0",
        ),
        (
            "[quality.gates.timeliness]\nfreshness_sla = \"soon\"\n",
            "config: [quality.gates.timeliness] freshness_sla:",
        ),
        (
            "[[quality.rules]]\nname = \"r\"\ncolumn = \"a\"\npolicy = \"halt\"\nrequired = true\n",
            "config: [quality.rules] policy: rule #1 (\"r\"): unknown policy \"halt\"",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nmin = 5\nmax = 1\n",
            "config: [quality.rules] max: rule #1 (column \"a\"): 1 is below min 5",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nrequired = true\npattern = \"x\"\n",
            "config: [quality.rules] pattern: rule #1 (column \"a\"): sets required and pattern; one check per [[quality.rules]] entry",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\n",
            "config: [quality.rules] column: rule #1 (column \"a\"): no check",
        ),
        (
            "[[quality.rules]]\nrequired = true\n",
            "config: [quality.rules] column: rule #1: missing",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nrequired = true\n[[quality.rules]]\ncolumn = \"a\"\nrequired = true\n",
            "config: [quality.rules] name: rule #2: \"a_required\" is the name of an earlier rule",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nallowed = []\n",
            "config: [quality.rules] allowed: rule #1 (column \"a\"): must list at least one value",
        ),
        (
            "[[quality.rules]]\ncolumn = \"a\"\nrequired = true\nmax_rate = 2.0\n",
            "config: [quality.rules] max_rate: rule #1 (column \"a\"): 2 is not a share",
        ),
    ];
    for (quality, expected) in cases {
        let err = load(&format!("{MINIMAL}\n{quality}")).unwrap_err();
        assert!(
            err.to_string().starts_with(expected),
            "expected {expected:?}, got {:?}",
            err.to_string()
        );
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    }
}

#[test]
fn rules_cannot_come_from_env_and_the_error_says_where() {
    let err = load_str(
        MINIMAL,
        "p.toml",
        env(&[("KAPPA__QUALITY__RULES", "currency")]),
        &[],
    )
    .unwrap_err();
    assert_eq!(err.key().as_deref(), Some("quality.rules"), "{err}");
    assert_eq!(
        err.to_string(),
        "config: [quality] rules: invalid type: string \"currency\", expected a sequence"
    );
}

#[test]
fn a_key_counts_as_set_only_when_a_layer_above_the_defaults_sets_it() {
    let defaults = load(MINIMAL).unwrap();
    assert!(!defaults.raw.is_set("metrics.listen"));
    assert!(defaults.raw.is_set("pipeline.name"));
    assert!(
        defaults.raw.is_set("table"),
        "a section with a set key counts"
    );

    let file = load(&format!(
        "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9999\"\n"
    ))
    .unwrap();
    assert!(file.raw.is_set("metrics.listen"));

    let by_env = load_str(
        MINIMAL,
        "t.toml",
        env(&[("KAPPA__METRICS__LISTEN", "127.0.0.1:0")]),
        &[],
    )
    .unwrap();
    assert!(by_env.raw.is_set("metrics.listen"));

    let by_flag = load_str(
        MINIMAL,
        "t.toml",
        no_env(),
        &[("metrics.listen".into(), "127.0.0.1:0".into())],
    )
    .unwrap();
    assert!(by_flag.raw.is_set("metrics.listen"));
    assert!(!by_flag.raw.is_set("metrics.stall_after"));
}

/// `[table] namespace`, `name` and the side-table names end up in warehouse paths: anything but a
/// plain identifier is refused at validation, naming the key (`kappa` exits 2).
#[test]
fn table_names_are_identifiers_not_paths() {
    let named = |table: &str| MINIMAL.replace("name = \"t\"", table);
    let cases = [
        (
            named("name = \"../../x\""),
            "config: [table] name: \"../../x\": name starts with '.'",
        ),
        (
            named("name = \"a/b\""),
            "config: [table] name: \"a/b\": name contains '/'",
        ),
        (
            named("name = \"a\\\\b\""),
            "config: [table] name: \"a\\\\b\": name contains '\\\\'",
        ),
        (
            named("name = \"a.b\""),
            "config: [table] name: \"a.b\": name contains '.'",
        ),
        (
            named("name = \"a b\""),
            "config: [table] name: \"a b\": name contains ' '",
        ),
        (
            named("name = \"a\\u0000b\""),
            "config: [table] name: \"a\\0b\": name contains '\\0'",
        ),
        (
            named("name = \"9lives\""),
            "config: [table] name: \"9lives\": name starts with '9'",
        ),
        (
            named(&format!("name = \"{}\"", "t".repeat(129))),
            "name is 129 bytes long; at most 128",
        ),
        (
            named(&format!("name = \"{}\"", "t".repeat(125))),
            "(the derived dlq_name): dlq_name is 129 bytes long",
        ),
        (
            named("name = \"t\"\ndlq_name = \"../d\""),
            "config: [table] dlq_name: \"../d\"",
        ),
        (
            named("name = \"t\"\nlate_name = \"/abs\""),
            "config: [table] late_name: \"/abs\"",
        ),
        (
            named("name = \"t\"\nquarantine_name = \"q/../..\""),
            "config: [table] quarantine_name: \"q/../..\"",
        ),
        (
            named("name = \"t\"\nnamespace = \"../..\""),
            "config: [table] namespace: \"../..\"",
        ),
        (
            named("name = \"t\"\nnamespace = \"a..b\""),
            "config: [table] namespace: \"a..b\": empty namespace",
        ),
        (
            named("name = \"t\"\nnamespace = \"a/b\""),
            "config: [table] namespace: \"a/b\"",
        ),
    ];
    for (text, expected) in cases {
        let err = load(&text).unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{text}\n{err}\nexpected: {expected}"
        );
        let key = err.key().unwrap();
        assert!(key.starts_with("table."), "{key}");
        assert_eq!(
            kappa_core::Classify::kind(&err),
            kappa_core::ErrorKind::User
        );
    }
    // Plain identifiers, nested namespaces and the defaults pass.
    let ok = load(&named(
        "name = \"orders_v2-eu\"\nnamespace = \"lake.raw_events\"\ndlq_name = \"_dead\"",
    ))
    .unwrap();
    assert_eq!(ok.table, "orders_v2-eu");
    assert_eq!(ok.late_table, "orders_v2-eu_late");
    load(&named(&format!("name = \"{}\"", "t".repeat(117)))).unwrap();
}

/// Every URL-ish value, with a credential in each form (user info, secret-named query
/// parameters of any case): the config's `Debug` and a validation error show none of them.
#[test]
fn no_credential_form_shows_in_debug_or_errors() {
    let text = r#"
[pipeline]
name = "p"
[source.archive]
url = "s3://bucket/prefix?X-Amz-Signature=s3cr3t-1&X-Amz-Credential=s3cr3t-2"
topic = "orders"
endpoint = "https://minio:s3cr3t-3@s3.local:9000"
secret_access_key = "s3cr3t-4"
[schema]
url = "https://reg:s3cr3t-5@registry:8081/?API_KEY=s3cr3t-6"
[catalog]
uri = "postgres://kappa@db:5432/lake?sslmode=disable&Password=s3cr3t-7"
warehouse = "s3://lake/w?sig=s3cr3t-8&token=s3cr3t-9"
secret_access_key = "s3cr3t-10"
[table]
name = "t"
[source.kafka]
bootstrap_servers = "broker:9092"
topic = "orders"
[source.kafka.properties]
"sasl.password" = "s3cr3t-11"
"#;
    let config = load(text).unwrap();
    assert!(
        config.catalog_uri.contains("s3cr3t-7"),
        "the value itself is kept"
    );
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("Password=***"), "{shown}");
    }
    let bad = text.replace(
        "url = \"s3://bucket/prefix?X-Amz-Signature=s3cr3t-1&X-Amz-Credential=s3cr3t-2\"",
        "url = \"s3://k:s3cr3t-1@[bad?token=s3cr3t-2\"",
    );
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.starts_with("config: [source.archive] url:"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn kafka_assignment_defaults_to_every_partition_without_a_group_and_takes_a_shard() {
    let kafka = "[source.kafka]\nbootstrap_servers = \"b:9092\"\ntopic = \"orders\"\n";
    let config = load(&format!("{MINIMAL}\n{kafka}")).unwrap();
    let assignment = config.kafka().unwrap().assignment;
    assert_eq!(assignment, KafkaAssignment::Shard { index: 0, count: 1 });
    assert!((0..8).all(|p| assignment.reads(p)));

    let env = env(&[("KAPPA__SOURCE__KAFKA__SHARD", "1/3")]);
    let config = load_str(&format!("{MINIMAL}\n{kafka}"), "p.toml", env, &[]).unwrap();
    let assignment = config.kafka().unwrap().assignment;
    assert_eq!(assignment, KafkaAssignment::Shard { index: 1, count: 3 });
    assert_eq!(
        (0..7).filter(|p| assignment.reads(*p)).collect::<Vec<_>>(),
        vec![1, 4]
    );

    let group = load(&format!("{MINIMAL}\n{kafka}assignment = \"group\"\n")).unwrap();
    assert_eq!(group.kafka().unwrap().assignment, KafkaAssignment::Group);

    for (extra, key) in [
        ("shard = \"3/3\"\n", "source.kafka.shard"),
        ("shard = \"1\"\n", "source.kafka.shard"),
        ("shard = \"0/0\"\n", "source.kafka.shard"),
        (
            "assignment = \"group\"\nshard = \"0/2\"\n",
            "source.kafka.shard",
        ),
        ("assignment = \"static\"\n", "source.kafka.assignment"),
    ] {
        let err = load(&format!("{MINIMAL}\n{kafka}{extra}")).unwrap_err();
        assert_eq!(err.key().as_deref(), Some(key), "{extra}: {err}");
    }
}

#[test]
fn identity_gates_only_the_columns_the_config_names_and_has_no_rules() {
    let identity = format!("{MINIMAL}\n[pipeline]\nlogic = \"identity\"\n")
        .replace("[pipeline]\nname = \"p\"\n", "")
        .replace("[pipeline]\n", "[pipeline]\nname = \"p\"\n");
    let config = load(&identity).unwrap();
    assert_eq!(config.logic, "identity");
    assert_eq!(config.logic_settings.dedup_key, None, "no dedup by default");
    let q = &config.quality;
    assert!(q.rules.is_empty(), "identity has no contract rules");
    assert!(q.null_rate.is_none() && q.uniqueness.is_none());
    assert!(q.completeness.is_some() && q.timeliness.is_some());
    // Named columns get gates; [dedup] key sets the dedup.
    let text = format!(
        "{identity}\n[dedup]\nkey = \"payment_id\"\n[quality.gates.null_rate]\ncolumns = [\"payer\"]\n[quality.gates.uniqueness]\ncolumn = \"payment_id\"\n"
    );
    let config = load(&text).unwrap();
    assert_eq!(
        config.logic_settings.dedup_key.as_deref(),
        Some("payment_id")
    );
    assert_eq!(
        config.quality.null_rate.as_ref().unwrap().columns(),
        ["payer"]
    );
    assert_eq!(
        config.quality.uniqueness.as_ref().unwrap().column(),
        "payment_id"
    );
}

#[test]
fn orders_takes_its_defaults_from_its_registry_entry_and_the_config_overrides_them() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.logic_settings.dedup_key.as_deref(), Some("event_id"));
    assert_eq!(config.logic_settings.dedup_window, 100_000);
    let text = format!(
        "{MINIMAL}\n[dedup]\nkey = \"order_id\"\n[quality.gates.null_rate]\ncolumns = []\n"
    );
    let config = load(&text).unwrap();
    assert_eq!(config.logic_settings.dedup_key.as_deref(), Some("order_id"));
    assert!(
        config.quality.null_rate.is_none(),
        "an empty list turns the gate off"
    );
    assert_eq!(
        config.quality.uniqueness.as_ref().unwrap().column(),
        "event_id",
        "the uniqueness gate keeps the logic's column"
    );
}

#[test]
fn logic_names_and_options_are_checked_against_the_registry() {
    let err = load(
        &format!("{MINIMAL}\n[pipeline]\nlogic = \"ordres\"\n")
            .replacen("[pipeline]\nname = \"p\"\n", "", 1)
            .replace("[pipeline]\n", "[pipeline]\nname = \"p\"\n"),
    )
    .unwrap_err();
    assert_eq!(err.key().as_deref(), Some("pipeline.logic"), "{err}");
    assert!(
        err.to_string().contains("expected one of identity|orders"),
        "{err}"
    );
    let err = load(&format!("{MINIMAL}\n[logic.orders]\nstrict = true\n")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("logic.orders.strict"), "{err}");
    assert!(err.to_string().contains("takes no options"), "{err}");
    let err = load(&format!("{MINIMAL}\n[logic.identity]\nx = 1\n")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("logic.identity"), "{err}");
    assert!(
        err.to_string().contains("[pipeline] logic is \"orders\""),
        "{err}"
    );
    let err = load(&format!("{MINIMAL}\n[dedup]\nkey = \" \"\n")).unwrap_err();
    assert_eq!(err.key().as_deref(), Some("dedup.key"), "{err}");
}

#[test]
fn a_registered_logic_is_configured_like_a_builtin_one() {
    use kappa_logic::{LogicDefaults, LogicEntry, OptionDoc, Registry};
    const FX: LogicEntry = LogicEntry {
        name: "fx",
        about: "converts amounts",
        defaults: LogicDefaults {
            dedup_key: Some("payment_id"),
            null_rate_columns: &["payer"],
            uniqueness_column: None,
            rules: || Ok(Vec::new()),
        },
        options: &[OptionDoc {
            key: "rate",
            about: "the exchange rate, a number (default 1.0)",
        }],
        build: |_| unreachable!("not built here"),
    };
    let registry = Registry::builtin().with(FX).unwrap();
    let text = format!("{MINIMAL}\n[logic.fx]\nrate = 1.25\n")
        .replace("name = \"p\"\n", "name = \"p\"\nlogic = \"fx\"\n");
    assert_eq!(
        load(&text).unwrap_err().key().as_deref(),
        Some("pipeline.logic"),
        "the builtin registry does not know it"
    );
    let config = kappa_config::load_str_with(&text, "p.toml", no_env(), &[], &registry).unwrap();
    assert_eq!(config.logic, "fx");
    assert_eq!(
        config.logic_settings.dedup_key.as_deref(),
        Some("payment_id")
    );
    assert_eq!(
        config.logic_settings.options.float("rate", 1.0).unwrap(),
        1.25
    );
    assert_eq!(
        config.quality.null_rate.as_ref().unwrap().columns(),
        ["payer"]
    );
    // The value's type is the factory's to check (typed getters name the key); the key is the
    // registry's.
    let config = kappa_config::load_str_with(
        &text.replace("rate = 1.25", "rate = \"high\""),
        "p.toml",
        no_env(),
        &[],
        &registry,
    )
    .unwrap();
    let err = config
        .logic_settings
        .options
        .float("rate", 1.0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "[logic.fx] rate: \"high\": expected a finite number"
    );
    let err = kappa_config::load_str_with(
        &text.replace("rate = 1.25", "rat = 1.25"),
        "p.toml",
        no_env(),
        &[],
        &registry,
    )
    .unwrap_err();
    assert_eq!(err.key().as_deref(), Some("logic.fx.rat"), "{err}");
    assert!(err.to_string().contains("expected one of rate"), "{err}");
}

#[test]
fn kafka_metadata_lists_the_attributes_kept_as_columns() {
    use kappa_core::KafkaMetadata;
    assert!(load(MINIMAL).unwrap().kafka_metadata.is_empty());
    let config = load(&format!(
        "{MINIMAL}kafka_metadata = [\"headers\", \"key\"]\n"
    ))
    .unwrap();
    assert_eq!(
        config.kafka_metadata,
        [KafkaMetadata::Key, KafkaMetadata::Headers],
        "in column order"
    );
    let env = env(&[("KAPPA__TABLE__KAFKA_METADATA", "timestamp,key")]);
    let config = load_str(MINIMAL, "p.toml", env, &[]).unwrap();
    assert_eq!(
        config.kafka_metadata,
        [KafkaMetadata::Key, KafkaMetadata::Timestamp]
    );
    for (value, why) in [
        ("[\"offset\"]", "expected key, timestamp or headers"),
        ("[\"key\", \"key\"]", "listed twice"),
    ] {
        let err = load(&format!("{MINIMAL}kafka_metadata = {value}\n")).unwrap_err();
        assert_eq!(err.key().as_deref(), Some("table.kafka_metadata"), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
}
