//! The YAML of `deploy/alerts`, read with `serde-saphyr` into the parts the tests check: a
//! Prometheus rules file's rules, and the input series of its promtool tests. Every other key
//! (`for`, `interval`, `values`, the expected alerts) is left unread.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A Prometheus rules file (`rule_files:`, a PrometheusRule's `spec`).
#[derive(Debug, Deserialize)]
struct RulesFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

/// An alerting rule (`alert:`) or a recording rule (`record:`).
#[derive(Debug, Deserialize)]
pub(crate) struct Rule {
    alert: Option<String>,
    record: Option<String>,
    pub(crate) expr: String,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Rule {
    /// The alert's name, or the series a recording rule records.
    pub(crate) fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("?")
    }

    pub(crate) fn is_record(&self) -> bool {
        self.record.is_some()
    }
}

/// The rules of every group of a rules file, in order; each is an alert or a record, not both.
pub(crate) fn rules(file: &str, text: &str) -> Vec<Rule> {
    let parsed: RulesFile =
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{file}: not a rules file: {e}"));
    let rules: Vec<Rule> = parsed.groups.into_iter().flat_map(|g| g.rules).collect();
    for rule in &rules {
        assert!(
            rule.alert.is_some() != rule.record.is_some(),
            "{file} {}: a rule is an alert or a record",
            rule.name()
        );
    }
    rules
}

/// A promtool rule test file (`promtool test rules`).
#[derive(Debug, Deserialize)]
struct RuleTestFile {
    tests: Vec<RuleTest>,
}

#[derive(Debug, Deserialize)]
struct RuleTest {
    #[serde(default)]
    input_series: Vec<InputSeries>,
}

#[derive(Debug, Deserialize)]
struct InputSeries {
    series: String,
}

/// The selectors of the series every test of a promtool test file feeds in.
pub(crate) fn input_series(file: &str, text: &str) -> Vec<String> {
    let parsed: RuleTestFile = serde_saphyr::from_str(text)
        .unwrap_or_else(|e| panic!("{file}: not a promtool test file: {e}"));
    parsed
        .tests
        .into_iter()
        .flat_map(|t| t.input_series)
        .map(|s| s.series)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_input_series_are_read_from_the_yaml() {
        let rules = rules(
            "f",
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum by (table) (x)\n            > 1\n        for: 5m\n        labels:\n          severity: critical\n        annotations:\n          summary: \"on {{ $labels.table }} \\\"q\\\"\"\n      - record: r:x\n        expr: kappa_build_info # a comment\n",
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name(), "A");
        assert!(!rules[0].is_record());
        assert_eq!(rules[0].expr, "sum by (table) (x)\n  > 1\n");
        assert_eq!(rules[0].labels.keys().collect::<Vec<_>>(), ["severity"]);
        assert_eq!(
            rules[0].annotations.values().collect::<Vec<_>>(),
            ["on {{ $labels.table }} \"q\""]
        );
        assert!(rules[1].is_record());
        assert_eq!(rules[1].name(), "r:x");
        assert_eq!(rules[1].expr, "kappa_build_info");
        assert_eq!(
            input_series(
                "t",
                "rule_files: [r.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'x{a=\"b\"}'\n        values: '1x5'\n      - series: \"y\"\n        values: '0+1x5'\n    alert_rule_test: []\n  - interval: 1m\n",
            ),
            ["x{a=\"b\"}", "y"]
        );
    }
}
