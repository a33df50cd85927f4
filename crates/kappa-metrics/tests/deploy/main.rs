//! What `deploy/` asks Prometheus, checked against the catalog: the alert rules
//! (`deploy/alerts/kappa-rules.yml`, the chart's copy, the synthetic series of their promtool
//! tests) and the Grafana dashboard (`deploy/grafana/kappa.json`).
//!
//! Every metric they name is in the catalog (a histogram also as `_bucket`, `_sum`, `_count`),
//! and every label they select by, group by (`by`, `without`), match on (`on`, `ignoring`,
//! `group_left`), print (`{{ $labels.x }}`, a legend's `{{x}}`) or list (`label_values`) is one
//! the series has there; values of the closed `outcome` and `kind` sets are ones Kappa emits; a
//! one-to-one match compares series with the same labels, and so do the queries a table panel
//! merges into rows. Each query is parsed as PromQL by `promql-parser` and its labels worked
//! out in [`labels`]; the YAML is read with `serde-saphyr` in [`rules_file`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use kappa_metrics::catalog;

mod labels;
mod rules_file;

use labels::{check_query, dashboard_query, quoted_selectors, template_labels};
use rules_file::{input_series, rules};

#[path = "../common/mod.rs"]
mod common;

use common::read;

fn check_rules_file(file: &str, problems: &mut Vec<String>) -> usize {
    let text = read(file);
    let rules = rules(file, &text);
    let declared = text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    assert_eq!(rules.len(), declared, "{file}: every rule read");
    let mut recorded = BTreeMap::new();
    for rule in &rules {
        assert!(
            !rule.expr.trim().is_empty(),
            "{file} {}: an expr",
            rule.name()
        );
        let place = format!("{file} {}", rule.name());
        let Some(mut labels) = check_query(&place, &rule.expr, &recorded, problems) else {
            continue;
        };
        if rule.is_record() {
            recorded.insert(rule.name().to_string(), labels);
            continue;
        }
        labels.extend(rule.labels.keys().cloned());
        for annotation in rule.annotations.values() {
            for label in template_labels(annotation, true) {
                if !labels.contains(&label) {
                    problems.push(format!(
                        "{place}: an annotation prints $labels.{label}, which the alert does not have ({labels:?})"
                    ));
                }
            }
            // A selector quoted in an annotation (telling the operator what to query).
            for selector in quoted_selectors(annotation) {
                check_query(
                    &format!("{place} (annotation)"),
                    &selector,
                    &recorded,
                    problems,
                );
            }
        }
    }
    rules.len()
}

/// Every panel, rows' panels included.
fn panels(list: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for panel in list {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(panels(nested));
        }
    }
    all
}

#[test]
fn the_alert_rules_query_only_catalog_metrics_by_labels_they_have() {
    let mut problems = Vec::new();
    let alerts = check_rules_file("deploy/alerts/kappa-rules.yml", &mut problems);
    // Every alert is in docs/metrics.md's table (`| \`KappaX\` | ...`), and only those.
    let documented = read("docs/metrics.md")
        .lines()
        .filter(|l| l.starts_with("| `Kappa"))
        .count();
    assert_eq!(alerts, documented, "the rules docs/metrics.md lists");
    check_rules_file("helm/kappa/files/kappa-rules.yml", &mut problems);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_rule_tests_feed_series_with_the_labels_kappa_emits() {
    let file = "deploy/alerts/tests/kappa-rules-test.yml";
    let mut problems = Vec::new();
    let mut series = 0;
    for selector in input_series(file, &read(file)) {
        series += 1;
        check_query(
            &format!("{file} {selector}"),
            &selector,
            &BTreeMap::new(),
            &mut problems,
        );
    }
    assert!(series >= 10, "{file}: only {series} input series read");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_dashboard_queries_only_catalog_metrics_by_labels_they_have() {
    let file = "deploy/grafana/kappa.json";
    let dashboard: serde_json::Value = serde_json::from_str(&read(file)).expect("valid JSON");
    let mut problems = Vec::new();
    let mut queries = 0;
    for panel in panels(dashboard["panels"].as_array().expect("panels")) {
        // A "merge" transformation joins the queries' rows on their labels: each row of the
        // table is one series of every query only if every query has the same labels.
        let merged = panel["transformations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == "merge");
        let mut merged_labels: Vec<(String, BTreeSet<String>)> = Vec::new();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            queries += 1;
            let place = format!(
                "{file} panel {:?} ({})",
                panel["title"].as_str().unwrap_or("?"),
                target["refId"].as_str().unwrap_or("?")
            );
            let query = dashboard_query(expr);
            let Some(labels) = check_query(&place, &query, &BTreeMap::new(), &mut problems) else {
                continue;
            };
            if merged {
                let ref_id = target["refId"].as_str().unwrap_or("?").to_string();
                merged_labels.push((ref_id, labels.clone()));
            }
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            for label in template_labels(legend, false) {
                if !labels.contains(&label) {
                    problems.push(format!(
                        "{place}: the legend prints {{{{{label}}}}}, which the query's series do not have ({labels:?})"
                    ));
                }
            }
        }
        if merged_labels.windows(2).any(|w| w[0].1 != w[1].1) {
            problems.push(format!(
                "{file} panel {:?}: merges queries with different labels, so their rows do not line up: {merged_labels:?}",
                panel["title"].as_str().unwrap_or("?")
            ));
        }
    }
    assert!(queries >= 20, "{file}: only {queries} queries read");
    // Variables: label_values(<metric>, <label>).
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(query) = variable["definition"].as_str() else {
            continue;
        };
        let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        else {
            continue;
        };
        let (selector, label) = args.rsplit_once(',').expect("label_values(metric, label)");
        let place = format!(
            "{file} variable {:?}",
            variable["name"].as_str().unwrap_or("?")
        );
        let query = dashboard_query(selector);
        if let Some(labels) = check_query(&place, &query, &BTreeMap::new(), &mut problems)
            && !labels.contains(label.trim())
        {
            problems.push(format!(
                "{place}: label_values of {}, which {selector} does not have ({labels:?})",
                label.trim()
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
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
fn every_metric_name_in_deploy_is_in_the_catalog_and_documented() {
    // Names anywhere in the files (descriptions and annotations too), not only in queries.
    let documented = metric_names(&read("docs/metrics.md"));
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
