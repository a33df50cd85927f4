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

#[test]
fn the_contract_example_is_accepted_and_fails_only_on_its_placeholder_paths() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/orders-replay.toml"
    );
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
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .args(args)
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
