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
