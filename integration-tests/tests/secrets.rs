//! Secrets and side effects, end to end with the binary: a catalog password is printed nowhere
//! (stderr, logs, `/healthz`); read-only commands write nothing to the catalog or the warehouse;
//! a table name that is a path is refused before anything is opened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kappa_integration_tests::endpoint::{http_get, serve_metrics, terminate};
use kappa_integration_tests::{Scene, contracts_dir, kappa, kappa_bin, replay};
use kappa_synth::{ArchiveOptions, HistorySpec};

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The catalog file and the warehouse, byte for byte.
fn lake(scene: &Scene) -> BTreeMap<String, Vec<u8>> {
    let mut out = files(&scene.path("warehouse"));
    out.insert(
        "catalog.db".into(),
        std::fs::read(scene.path("catalog.db")).unwrap(),
    );
    out
}

/// A scene whose table `kappa.orders` was created by a replay of orders v1 only (the registry
/// dir given to the read-only commands has v1 and v2: opening it for a run would add v2's
/// columns).
fn replayed_under_v1() -> (Scene, std::path::PathBuf) {
    let scene = Scene::local();
    let v1_only = scene.path("contracts-v1");
    std::fs::create_dir_all(v1_only.join("orders-value")).unwrap();
    std::fs::copy(
        contracts_dir().join("orders-value/1.avsc"),
        v1_only.join("orders-value/1.avsc"),
    )
    .unwrap();
    scene.write_local_archive(HistorySpec::new(2_000), ArchiveOptions::default());
    let config = scene.config("");
    let v1_dir = format!("schema.dir={}", v1_only.display());
    let summary = replay(&config, &["--set", &v1_dir]);
    assert_eq!(summary["complete"], true, "{summary}");
    (scene, config)
}

/// `kappa status` and `kappa quality report` on a misspelt table or namespace exit 2 naming
/// the table and create nothing; on the right table they neither evolve its schema (the
/// registry has a newer version) nor write anything else: the catalog file and every file of
/// the warehouse stay byte-identical. A misspelt SQLite path is not created either.
#[test]
fn read_only_commands_never_write_to_the_catalog_or_the_warehouse() {
    let (scene, config) = replayed_under_v1();
    let config = config.display().to_string();
    let before = lake(&scene);
    let commands: [&[&str]; 2] = [&["status"], &["quality", "report"]];
    for command in commands {
        for (set, table) in [
            ("table.name=ordres", "kappa.ordres"),
            ("table.namespace=kapa", "kapa.orders"),
        ] {
            let mut args = command.to_vec();
            args.extend(["-c", &config, "--set", set]);
            let out = kappa(&args, &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!(
                    "table {table} does not exist; check [table] namespace and name"
                )),
                "{args:?}: {stderr}"
            );
            assert!(lake(&scene) == before, "{args:?} wrote to the lake");
        }
        // The right table, under a registry with a newer schema version: read, not evolved.
        let mut args = command.to_vec();
        args.extend(["-c", &config]);
        let out = kappa(&args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(lake(&scene) == before, "{args:?} wrote to the lake");
    }
    // A misspelt catalog path: an error, and no new catalog file.
    let missing = scene.path("catalgo.db");
    let uri = format!("catalog.uri=sqlite:///{}", missing.display());
    let out = kappa(&["status", "-c", &config, "--set", &uri], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist; check [catalog] uri"),
        "{stderr}"
    );
    assert!(!missing.exists(), "status created {}", missing.display());
}

/// The audit's case: the catalog password as `?password=` in the URI (and in the user info).
/// A replay that cannot reach the catalog and lingers: its error on stderr, its log at debug
/// and `/healthz` (503, no failure text) never show the password.
#[test]
fn a_catalog_password_is_printed_nowhere() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(100), ArchiveOptions::default());
    let config = scene.config("");
    let addr = serve_metrics(&config, "linger = \"60s\"");
    for uri in [
        "postgres://kappa@127.0.0.1:1/lake?sslmode=disable&password=s3cr3t",
        "postgres://kappa:s3cr3t@127.0.0.1:1/lake?Token=s3cr3t",
    ] {
        let log = scene.path("replay.log");
        let child = std::process::Command::new(kappa_bin())
            .args(["replay", "-c", &config.display().to_string()])
            .args(["--set", &format!("catalog.uri={uri}")])
            .env("KAPPA_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // sqlx gives up on the unreachable catalog after its 30 s acquire timeout.
        let deadline = Instant::now() + Duration::from_secs(90);
        let health = loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                let (status, body) = http_get(&addr, "/healthz");
                if status == 503 {
                    break body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "never unhealthy: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(health, "failed\n");
        let (_, ready) = http_get(&addr, "/readyz");
        assert!(!ready.contains("s3cr3t"), "{ready}");
        // SIGTERM ends the linger; the error is printed as the process exits.
        let (code, _) = terminate(child);
        assert_eq!(code, Some(1));
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(
            stderr.contains("kappa: error: catalog postgres://"),
            "{stderr}"
        );
        assert!(
            stderr.contains("unhealthy"),
            "the reason is logged: {stderr}"
        );
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
}

/// A REST catalog's OAuth2 client secret is printed nowhere, with debug logs on: not when the
/// catalog refuses it (exit 1, the error names the catalog), not when a replay runs with the
/// right one (the S3 secret, the same `testtest`, neither).
#[test]
fn a_rest_catalog_credential_is_printed_nowhere() {
    let scene = Scene::rest("secrets");
    scene.write_local_archive(HistorySpec::new(500), ArchiveOptions::default());
    let config = scene.config("").display().to_string();
    let refused = kappa(
        &["replay", "-c", &config],
        &[
            ("KAPPA__CATALOG__CREDENTIAL", "test:s3cr3t-wrong"),
            ("KAPPA_LOG", "debug"),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("kappa: error:"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    let out = kappa(
        &["replay", "-c", &config, "--json"],
        &[("KAPPA_LOG", "debug")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("testtest"), "{stderr}");
    let status = kappa(
        &["status", "-c", &config, "--json"],
        &[("KAPPA_LOG", "debug")],
    );
    let text = String::from_utf8_lossy(&status.stdout).to_string()
        + &String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{text}");
    assert!(!text.contains("testtest"), "{text}");
}

/// `[table] name = "../../x"` (and the namespace, and a side table) is refused at validation,
/// exit 2 naming the key, before any catalog, warehouse or directory is touched.
#[test]
fn a_table_name_that_is_a_path_is_refused_before_anything_is_written() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(100), ArchiveOptions::default());
    let config = scene.config("").display().to_string();
    for (set, key) in [
        ("table.name=../../x", "[table] name"),
        ("table.namespace=../..", "[table] namespace"),
        ("table.dlq_name=../d", "[table] dlq_name"),
    ] {
        let out = kappa(&["replay", "-c", &config, "--set", set], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{set}: {stderr}");
        assert!(
            stderr.contains(&format!("config: {key}:")),
            "{set}: {stderr}"
        );
        assert!(!scene.path("catalog.db").exists(), "{set}");
        assert!(!scene.path("warehouse").exists(), "{set}");
        assert!(
            !scene.path("x").exists(),
            "{set}: wrote outside the warehouse"
        );
    }
}
