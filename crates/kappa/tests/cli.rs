//! The CLI contract: exit codes and messages that name what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn kappa(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(kappa(&["--help"]).0, Some(0));
    assert_eq!(kappa(&["frobnicate"]).0, Some(2));
    let (code, err) = kappa(&["replay", "-c", "/nonexistent/pipeline.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/pipeline.toml"), "{err}");
    let (code, err) = kappa(&["replay", "-c", "/nonexistent.toml", "--shard", "3/2"]);
    assert_eq!(code, Some(2), "{err}");
}

/// The pipeline configuration contract by example.
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/examples/orders-replay.toml"
);

#[test]
fn the_contract_example_is_accepted_and_fails_only_on_its_placeholder_paths() {
    let example = EXAMPLE;
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["replay", "-c", example])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env(
            "KAPPA__CATALOG__URI",
            format!("sqlite:///{}/c.db", dir.path().display()),
        )
        .env(
            "KAPPA__CATALOG__WAREHOUSE",
            format!("file://{}/w", dir.path().display()),
        )
        .output()
        .map(|o| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    // Config and schema are accepted; the archive path of the example does not exist here.
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/var/lib/kappa/archive"), "{err}");
}

/// Runs `kappa` from the repository root; returns (exit code, stdout, stderr).
fn kappa_out(args: &[&str]) -> (Option<i32>, String, String) {
    kappa_env(args, &[])
}

/// [`kappa_out`] with environment variables set.
fn kappa_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const V3_BREAKING: &str = "crates/kappa-schema/tests/data/orders-v3-breaking.avsc";

#[test]
fn schema_check_exits_4_and_lists_each_breaking_change() {
    let (code, out, err) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        "contracts",
        "--subject",
        "orders-value",
        "--schema",
        V3_BREAKING,
    ]);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(out.contains("not BACKWARD compatible"), "{out}");
    assert!(
        out.contains("amount_cents: type changed from long to string"),
        "{out}"
    );
    assert!(
        out.contains("region: field \"region\" (string) has no default"),
        "{out}"
    );
    assert!(err.contains("breaking changes"), "{err}");

    // The same as JSON, at an explicit level.
    let (code, out, _) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        "contracts",
        "--subject",
        "orders-value",
        "--schema",
        V3_BREAKING,
        "--level",
        "full_transitive",
        "--json",
    ]);
    assert_eq!(code, Some(4));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["compatible"], false);
    assert_eq!(json["checks"][0]["level"], "FULL_TRANSITIVE");
    assert_eq!(
        json["checks"][0]["compared_with_versions"],
        serde_json::json!([1, 2])
    );

    // v2 against a history of v1 only: compatible.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("orders-value")).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contracts/orders-value/1.avsc"
        ),
        dir.path().join("orders-value/1.avsc"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        d,
        "--subject",
        "orders-value",
        "--schema",
        "contracts/orders-value/2.avsc",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok"), "{out}");

    // Bad level and missing file: usage errors naming the flag.
    let (code, _, err) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        d,
        "--subject",
        "orders-value",
        "--schema",
        "contracts/orders-value/2.avsc",
        "--level",
        "sideways",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--level") && err.contains("sideways"), "{err}");
    let (code, _, err) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        d,
        "--subject",
        "orders-value",
        "--schema",
        "/nope.avsc",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nope.avsc"), "{err}");
}

#[test]
fn schema_check_all_takes_versions_that_share_an_id_and_names_a_collision() {
    let record = |fields: &str| format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#);
    let check = |versions: &[String]| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        for (i, v) in versions.iter().enumerate() {
            std::fs::write(dir.path().join(format!("s/{}.avsc", i + 1)), v).unwrap();
        }
        kappa_out(&[
            "schema",
            "check",
            "--dir",
            dir.path().to_str().unwrap(),
            "--all",
        ])
    };
    // Version 2 only adds a default: the same id (the Parsing Canonical Form drops defaults).
    let (code, out, err) = check(&[
        record(r#"{"name":"b","type":"int"}"#),
        record(r#"{"name":"b","type":"int","default":0}"#),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("ok    s: s/2.avsc is BACKWARD compatible"),
        "{out}"
    );
    // Two different schemas whose 31-bit ids collide: a usage error naming both, no panic.
    let (code, out, err) = check(&[
        record(r#"{"name":"f908413","type":"int"}"#),
        record(r#"{"name":"f19402000","type":"int"}"#),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("s/1") && err.contains("s/2") && err.contains("same id"),
        "{err}"
    );
}

#[test]
fn schema_check_all_checks_every_version_against_its_history() {
    let (code, out, err) = kappa_out(&["schema", "check", "--dir", "contracts", "--all"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("orders-value/2.avsc is BACKWARD compatible"),
        "{out}"
    );

    // A pull request adds a breaking version 3, and the subject asks for FULL.
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("orders-value");
    std::fs::create_dir_all(&subject).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for (from, to) in [
        ("contracts/orders-value/1.avsc", "1.avsc"),
        ("contracts/orders-value/2.avsc", "2.avsc"),
        (V3_BREAKING, "3.avsc"),
    ] {
        std::fs::copy(format!("{root}/{from}"), subject.join(to)).unwrap();
    }
    std::fs::write(subject.join("compatibility"), "FULL\n").unwrap();
    let (code, out, _) = kappa_out(&[
        "schema",
        "check",
        "--dir",
        dir.path().to_str().unwrap(),
        "--all",
    ]);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        out.contains("ok    orders-value: orders-value/2.avsc is FULL compatible"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  orders-value: orders-value/3.avsc is not FULL compatible"),
        "{out}"
    );
    // FULL: both directions against version 2.
    assert!(out.contains("cannot be read by version 2"), "{out}");
    assert!(
        out.contains("cannot read data written with version 2"),
        "{out}"
    );
}

#[test]
fn the_registry_client_keys_reach_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[pipeline]
name = "p"
[schema]
url = "https://127.0.0.1:1"
ca_file = "{}/missing-ca.pem"
timeout = "1s"
max_attempts = 1
username = "kappa"
[catalog]
uri = "sqlite:///{}/c.db"
warehouse = "file://{}/w"
[table]
name = "t"
"#,
            dir.path().display(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["status", "-c", config.to_str().unwrap()])
        .env("KAPPA__SCHEMA__PASSWORD", "hunter2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The CA bundle is read when the client is built: a missing one is a usage error naming it.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[schema] ca_file") && err.contains("missing-ca.pem"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// `kappa validate -c FILE [args]` from the repository root with `env`; (exit code, stdout,
/// stderr).
fn validate(
    file: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let file = file.to_str().unwrap();
    kappa_env(&[&["validate", "-c", file], args].concat(), env)
}

#[test]
fn validate_accepts_every_example_offline() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let (code, out, err) = validate(&path, &["--offline", "--format", "json"], &[]);
        assert_eq!(code, Some(0), "{}: {out}{err}", path.display());
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["valid"], true, "{out}");
        let status = |name: &str| {
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["check"] == name)
                .map(|c| c["status"].as_str().unwrap().to_string())
        };
        for offline in ["config", "logic", "schema", "partitions", "quality"] {
            assert_eq!(status(offline).as_deref(), Some("ok"), "{offline}: {out}");
        }
        assert_eq!(status("catalog").as_deref(), Some("skipped"), "{out}");
    }
    assert!(seen >= 3, "the examples: {seen}");
}

#[test]
fn validate_names_a_misspelt_key_and_a_partitioning_the_schema_cannot_take_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let misspelt = dir.path().join("misspelt.toml");
    std::fs::write(
        &misspelt,
        example.replace("[table]\n", "[table]\nnmae = \"x\"\n"),
    )
    .unwrap();
    let (code, out, err) = validate(&misspelt, &["--offline"], &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("nmae"), "{err}");
    // A day() of a string column: the schema loads, the partition spec does not bind to it.
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, &example).unwrap();
    let (code, out, err) = validate(
        &file,
        &["--offline", "--set", "table.partition_by=day(currency)"],
        &[],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("partitions"))
        .unwrap_or_default();
    assert!(
        line.starts_with("invalid") && line.contains("partition_by"),
        "{out}"
    );
}

#[test]
fn validate_names_a_quality_check_on_a_column_the_table_lacks_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let quality_line = |out: &str| {
        out.lines()
            .find(|l| l.contains("quality"))
            .unwrap_or_default()
            .to_string()
    };
    // A record rule on a column the orders schema does not have (a typo of amount_cents), a
    // pattern on a number column, and a gate on a missing critical column: each named.
    for (section, named) in [
        (
            "[[quality.rules]]\ncolumn = \"amount\"\nrequired = true\n",
            "amount",
        ),
        (
            "[[quality.rules]]\ncolumn = \"amount_cents\"\npattern = \"^[0-9]+$\"\n",
            "amount_cents",
        ),
        ("[quality.gates.null_rate]\ncolumns = [\"user\"]\n", "user"),
    ] {
        let file = dir.path().join("quality.toml");
        std::fs::write(&file, format!("{example}\n{section}")).unwrap();
        let (code, out, err) = validate(&file, &["--offline"], &[]);
        assert_eq!(code, Some(2), "{section}: {out}{err}");
        let line = quality_line(&out);
        assert!(
            line.starts_with("invalid") && line.contains(&format!("{named:?}")),
            "{section}: {out}"
        );
    }
    // The same rule on the column the table has passes.
    let file = dir.path().join("quality.toml");
    std::fs::write(
        &file,
        format!("{example}\n[[quality.rules]]\ncolumn = \"amount_cents\"\nrequired = true\n"),
    )
    .unwrap();
    let (code, out, err) = validate(&file, &["--offline"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(quality_line(&out).starts_with("ok"), "{out}");
}

/// A pipeline file in `dir` reading the archive at `archive` into a REST catalog at
/// `127.0.0.1:<port>`.
fn rest_config(dir: &std::path::Path, archive: &std::path::Path, port: u16) -> std::path::PathBuf {
    let contracts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");
    let file = dir.join("rest.toml");
    std::fs::write(
        &file,
        format!(
            "[pipeline]\nname = \"orders\"\nlogic = \"orders\"\n\n\
             [source.archive]\nurl = \"file://{}\"\ntopic = \"orders\"\n\n\
             [schema]\ndir = \"{contracts}\"\n\n\
             [catalog]\ntype = \"rest\"\nname = \"lake\"\nuri = \"http://127.0.0.1:{port}/api/catalog\"\nwarehouse = \"lake\"\n\n\
             [table]\nname = \"orders\"\n",
            archive.display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn validate_names_an_unreachable_catalog_with_exit_1_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    // A port nothing listens on: connection refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let file = rest_config(dir.path(), &archive, port);
    let secret = "n0t-for-your-eyes";
    let (code, out, err) = validate(
        &file,
        &[],
        &[("KAPPA__CATALOG__CREDENTIAL", &format!("client:{secret}"))],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("catalog").starts_with("unreachable"), "{out}");
    assert!(line("catalog").contains(&port.to_string()), "{out}");
    assert!(line("archive").starts_with("ok"), "{out}");
    assert!(line("schema").starts_with("ok"), "{out}");
    assert!(err.contains("catalog"), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
}

/// `kappa config print -c FILE [args]` with `env`: (exit code, stdout, stderr).
fn config_print(file: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    kappa_env(&[&["config", "print", "-c", file], args].concat(), env)
}

#[test]
fn config_print_shows_each_values_origin_redacts_secrets_and_prints_a_config_that_loads() {
    let secret = "pa55-w0rd-from-env";
    let (code, out, err) = config_print(
        "deploy/examples/orders-replay.toml",
        &["--set", "commit.interval=7s"],
        &[
            (
                "KAPPA__CATALOG__URI",
                &format!("postgres://kappa:{secret}@db:5432/lake"),
            ),
            ("KAPPA__SOURCE__ARCHIVE__SECRET_ACCESS_KEY", secret),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("interval").contains("\"7s\"") && line("interval").ends_with("# --set"),
        "{out}"
    );
    assert!(line("uri").ends_with("# env KAPPA__CATALOG__URI"), "{out}");
    assert!(line("secret_access_key").contains("\"***\""), "{out}");
    assert!(line("window").ends_with("# default"), "{out}");
    assert!(
        line("warehouse").ends_with("# file deploy/examples/orders-replay.toml"),
        "{out}"
    );
    // What it prints is a configuration: it loads and validates as the file did.
    let dir = tempfile::tempdir().unwrap();
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &out).unwrap();
    let (code, check, err) = validate(&printed, &["--offline"], &[]);
    assert_eq!(code, Some(0), "{check}{err}\n{out}");
    // JSON: one entry per key with its origin.
    let (code, json, _) = config_print(
        "deploy/examples/orders-replay.toml",
        &["--format", "json"],
        &[],
    );
    assert_eq!(code, Some(0));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let window = json["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["setting"] == "dedup.window")
        .unwrap();
    assert_eq!(
        (window["value"].as_i64(), window["origin"].as_str()),
        (Some(100_000), Some("default"))
    );
    // A misspelt key: exit 2 naming it, as every command.
    let (code, _, err) = config_print(
        "deploy/examples/orders-replay.toml",
        &["--set", "comit.interval=1s"],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("comit"), "{err}");
}

#[test]
fn validate_names_an_unreachable_s3_warehouse_with_exit_1_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    // The example without its [source.kafka] (brokers are another check, with its own wait).
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let kafka = text.find("[source.kafka]").unwrap();
    let after = kafka + text[kafka..].find("\n\n").unwrap();
    let example = dir.path().join("no-kafka.toml");
    std::fs::write(&example, format!("{}{}", &text[..kafka], &text[after..])).unwrap();
    let secret = "wh-s3cret-key-value";
    let sqlite = format!("catalog.uri=sqlite:///{}/c.db", dir.path().display());
    let archive = format!("source.archive.url=file://{}", dir.path().display());
    let endpoint = format!("catalog.endpoint=http://127.0.0.1:{port}");
    let (code, out, err) = validate(
        &example,
        &[
            "--set",
            &sqlite,
            "--set",
            &archive,
            "--set",
            "catalog.warehouse=s3://lake/warehouse",
            "--set",
            &endpoint,
            "--set",
            "catalog.region=us-east-1",
            "--set",
            "catalog.access_key_id=kappa",
        ],
        &[("KAPPA__CATALOG__SECRET_ACCESS_KEY", secret)],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let warehouse = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("warehouse"))
        .unwrap_or_default();
    assert!(
        warehouse.starts_with("unreachable") && warehouse.contains("s3://lake/warehouse"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("catalog")),
        "{out}"
    );
    assert!(err.contains("warehouse"), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
}

/// The archive is listed while the tables are opened: a listing that fails ends the replay at
/// once, even while the catalog has not answered (a REST catalog that accepts the connection
/// and never replies, which its client waits 60 s for).
#[test]
fn replay_reports_a_failed_listing_without_waiting_for_a_silent_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // An archive directory without objects: the listing fails, naming what it looked for.
    let archive = dir.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let file = rest_config(dir.path(), &archive, port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(["replay", "-c", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("kappa replay still waits for the silent catalog after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("no objects under orders/"), "{err}");
    drop(silent);
}
