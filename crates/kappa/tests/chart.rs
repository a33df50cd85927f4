//! The Helm chart's pipeline ConfigMap, rendered with the default values and with each values file
//! of `helm/kappa/ci/`, passes `kappa validate --offline`: what the chart deploys is a
//! configuration this binary runs. Needs helm, which `make helm-check` (part of `make test`, run
//! before the Rust tests) installs into `~/.cache/kappa-infra/bin`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn helm() -> PathBuf {
    let infra = std::env::var_os("KAPPA_INFRA").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/kappa-infra"),
        PathBuf::from,
    );
    let helm = infra.join("bin/helm");
    assert!(
        helm.is_file(),
        "{} is missing: run `make helm-check` (it installs helm), or `make test`",
        helm.display()
    );
    helm
}

/// The `pipeline.toml` of the rendered ConfigMap `<release>-kappa-pipeline`.
fn rendered_pipeline(values: Option<&Path>) -> String {
    let mut command = Command::new(helm());
    command.args(["template", "kappa", &format!("{ROOT}/helm/kappa")]);
    if let Some(values) = values {
        command.arg("-f").arg(values);
    }
    let out = command.output().unwrap();
    let manifests = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "helm template {values:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document = manifests
        .split("\n---")
        .find(|doc| doc.contains("kind: ConfigMap") && doc.contains("pipeline.toml: |"))
        .unwrap_or_else(|| panic!("no pipeline ConfigMap rendered with {values:?}"));
    let mut lines = document
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("pipeline.toml: |"));
    let header = lines.next().unwrap();
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_charts_pipeline_configmap_passes_kappa_validate_offline() {
    let mut values: Vec<Option<PathBuf>> = vec![None];
    for entry in std::fs::read_dir(format!("{ROOT}/helm/kappa/ci")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            values.push(Some(path));
        }
    }
    assert!(
        values.len() >= 4,
        "the default values and at least three ci/ files: {values:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, values) in values.iter().enumerate() {
        let toml = rendered_pipeline(values.as_deref());
        assert!(toml.contains("[pipeline]"), "{values:?}: {toml}");
        let file = dir.path().join(format!("pipeline-{i}.toml"));
        std::fs::write(&file, &toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kappa"));
        command
            .arg("validate")
            .arg("-c")
            .arg(&file)
            .arg("--offline");
        // The pod mounts the contracts at the configured dir; here they are the repository's.
        if schema_keys(&toml).iter().any(|k| k == "dir") {
            command.args(["--set", &format!("schema.dir={ROOT}/contracts")]);
        }
        let out = command.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{values:?}:\n{toml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The keys set in the TOML's `[schema]` table.
fn schema_keys(toml: &str) -> Vec<String> {
    toml.lines()
        .skip_while(|l| l.trim() != "[schema]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect()
}
