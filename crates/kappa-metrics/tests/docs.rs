//! The catalog, its documentation and what the alert rules and the dashboard query cannot drift
//! apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kappa_metrics::catalog;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `kappa_...` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("kappa_") {
        let start = i + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn metrics_doc_is_generated_from_the_catalog() {
    let path = root().join("docs/metrics.md");
    let doc = read("docs/metrics.md");
    let begin = doc
        .find(catalog::DOC_BEGIN)
        .expect("docs/metrics.md has the BEGIN GENERATED marker");
    let end = doc
        .find(catalog::DOC_END)
        .map(|e| e + catalog::DOC_END.len() + 1)
        .expect("docs/metrics.md has the END GENERATED marker");
    let want = catalog::markdown();
    if doc[begin..end.min(doc.len())] == want {
        return;
    }
    if std::env::var_os("KAPPA_BLESS").is_some() {
        let updated = format!("{}{}{}", &doc[..begin], want, &doc[end.min(doc.len())..]);
        std::fs::write(&path, updated).expect("rewrite docs/metrics.md");
        return;
    }
    panic!(
        "docs/metrics.md differs from kappa_metrics::catalog; run \
         `KAPPA_BLESS=1 cargo test -p kappa-metrics --test docs` and commit the result"
    );
}

#[test]
fn rules_and_dashboard_use_only_documented_metrics() {
    let doc = read("docs/metrics.md");
    let documented = metric_names(&doc);
    for file in [
        "deploy/alerts/kappa-rules.yml",
        "deploy/alerts/tests/kappa-rules-test.yml",
        "deploy/grafana/kappa.json",
    ] {
        let used = metric_names(&read(file));
        assert!(used.len() >= 5, "{file}: only {used:?}");
        for name in used {
            let def = catalog::lookup(&name)
                .unwrap_or_else(|| panic!("{file} uses {name}, which is not in the catalog"));
            assert!(
                documented.contains(def.name),
                "{file} uses {name}, which docs/metrics.md does not document"
            );
        }
    }
}

#[test]
fn the_dashboard_shows_freshness_lag_throughput_commits_dlq_and_quality() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/kappa.json")).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for needed in [
        "kappa_table_freshness_lag_seconds",
        "kappa_source_consumer_lag_records",
        "kappa_source_records_read_total",
        "kappa_pipeline_records_written_total",
        "kappa_commits_total",
        "kappa_commit_duration_seconds_bucket",
        "kappa_pipeline_records_dead_lettered_total",
        "kappa_quality_check_passed",
        "kappa_quality_gate_blocked",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needed)),
            "no dashboard panel queries {needed}"
        );
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
}

#[test]
fn the_chart_serves_the_same_rules() {
    assert_eq!(
        read("helm/kappa/files/kappa-rules.yml"),
        read("deploy/alerts/kappa-rules.yml"),
        "helm/kappa/files/kappa-rules.yml must be a copy of deploy/alerts/kappa-rules.yml"
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names("rate(kappa_commits_total{x=\"y\"}[5m]) / kappa_a_b - notkappa_c"),
        ["kappa_a_b", "kappa_commits_total"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
