//! Which labels the series of each part of a query have, from the catalog, and every place a
//! query names a label the series there do not have. Queries are parsed by `promql-parser`
//! (Prometheus's grammar); the labels are worked out over its syntax tree.

use std::collections::{BTreeMap, BTreeSet};

use kappa_metrics::catalog::{self, MetricKind};
use kappa_metrics::events::{commit, pipeline, quality};
use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality,
    VectorSelector,
};

/// Labels Prometheus adds to every scraped series: a query may select or group by them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// What an expression evaluates to, as far as labels go.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A number or a string.
    Scalar,
    /// A vector (or a range of one) whose series may carry these labels.
    Vector(BTreeSet<String>),
}

fn set<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    labels.into_iter().map(|l| l.as_ref().to_string()).collect()
}

/// The label values Kappa emits for a closed set, when `metric`'s `label` has one.
fn closed_values(metric: &str, label: &str) -> Option<Vec<&'static str>> {
    match (metric, label) {
        ("kappa_commits_total", "outcome") => Some(commit::OUTCOMES.to_vec()),
        ("kappa_quality_gate_outcomes_total", "outcome") => Some(
            [
                quality::GateOutcome::Commit,
                quality::GateOutcome::Quarantine,
                quality::GateOutcome::Block,
            ]
            .map(quality::GateOutcome::as_str)
            .to_vec(),
        ),
        ("kappa_pipeline_records_dead_lettered_total", "kind") => Some(pipeline::KINDS.to_vec()),
        _ => None,
    }
}

/// The string of a string literal argument (`label_replace`'s label names, `count_values`'
/// label).
fn string_literal(expr: Option<&Expr>) -> Option<String> {
    match expr? {
        Expr::StringLiteral(s) => Some(s.val.clone()),
        Expr::Paren(p) => string_literal(Some(&p.expr)),
        _ => None,
    }
}

/// Works out the labels of each part of a query, noting every problem on the way.
struct Check<'a> {
    /// Where the query is, for the messages.
    place: String,
    /// Output labels of recording rules defined so far.
    recorded: &'a BTreeMap<String, BTreeSet<String>>,
    problems: &'a mut Vec<String>,
}

impl Check<'_> {
    fn problem(&mut self, message: String) {
        self.problems.push(format!("{}: {message}", self.place));
    }

    /// Every label of `labels` is one of `has`.
    fn require(&mut self, what: &str, labels: &[String], has: &BTreeSet<String>) {
        for label in labels {
            if !has.contains(label) {
                self.problem(format!(
                    "{what} {label}, which the series there do not have (they have {has:?})"
                ));
            }
        }
    }

    fn labels(&mut self, expr: &Expr) -> Value {
        match expr {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Value::Scalar,
            Expr::Paren(p) => self.labels(&p.expr),
            Expr::Unary(u) => self.labels(&u.expr),
            // A subquery's range, step, offset and `@` change no label; nor do a range's.
            Expr::Subquery(s) => self.labels(&s.expr),
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Call(call) => self.call(call),
            Expr::Aggregate(agg) => self.aggregate(agg),
            Expr::Binary(bin) => self.binary(bin),
            Expr::Extension(_) => {
                self.problem("a PromQL extension, which Prometheus does not have".into());
                Value::Vector(BTreeSet::new())
            }
        }
    }

    fn selector(&mut self, vs: &VectorSelector) -> Value {
        // `name{...}`, or `{__name__="name", ...}` (also what `{"name", ...}` parses to).
        let named = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        });
        let Some(name) = named else {
            self.problem(format!("{vs}: a selector without a metric name"));
            return Value::Vector(set(TARGET_LABELS));
        };
        let mut has = match (self.recorded.get(&name), catalog::lookup(&name)) {
            (Some(labels), _) => labels.clone(),
            (None, Some(def)) => {
                let mut has = set(def.labels);
                if name.ends_with("_bucket") && def.kind == MetricKind::Histogram {
                    has.insert("le".into());
                }
                has
            }
            (None, None) => {
                self.problem(format!("{name} is not in the catalog"));
                return Value::Vector(set(TARGET_LABELS));
            }
        };
        has.extend(set(TARGET_LABELS));
        let Matchers {
            matchers,
            or_matchers,
        } = &vs.matchers;
        for m in matchers.iter().chain(or_matchers.iter().flatten()) {
            self.matcher(&name, m, &has);
        }
        Value::Vector(has)
    }

    /// One `label op "value"` of a selector of `name`, whose series have `has`.
    fn matcher(&mut self, name: &str, m: &Matcher, has: &BTreeSet<String>) {
        if m.name == "__name__" {
            return;
        }
        if !has.contains(&m.name) {
            self.problem(format!(
                "{name}{{{}{}{:?}}}: {name} has no label {} (it has {has:?})",
                m.name, m.op, m.value, m.name
            ));
            return;
        }
        let base = catalog::lookup(name).map_or(name, |d| d.name);
        if let (Some(values), MatchOp::Equal | MatchOp::NotEqual) =
            (closed_values(base, &m.name), &m.op)
            && !values.contains(&m.value.as_str())
        {
            self.problem(format!(
                "{name}{{{}{}{:?}}}: Kappa emits {} only as {values:?}",
                m.name, m.op, m.value, m.name
            ));
        }
    }

    fn call(&mut self, call: &Call) -> Value {
        let args: Vec<&Expr> = call.args.args.iter().map(Box::as_ref).collect();
        let values: Vec<Value> = args.iter().map(|a| self.labels(a)).collect();
        let string = |i: usize| string_literal(args.get(i).copied());
        let func = call.func.name;
        match func {
            "time" | "pi" | "scalar" => Value::Scalar,
            "vector" => Value::Vector(BTreeSet::new()),
            "histogram_quantile" => match values.get(1) {
                Some(Value::Vector(has)) => {
                    if !has.contains("le") {
                        self.problem(format!(
                            "histogram_quantile over series without an le label ({has:?}): sum by (le, ...) the _bucket series"
                        ));
                    }
                    let mut out = has.clone();
                    out.remove("le");
                    Value::Vector(out)
                }
                _ => Value::Vector(BTreeSet::new()),
            },
            "label_replace" | "label_join" => {
                let Some(Value::Vector(has)) = values.first() else {
                    return Value::Vector(BTreeSet::new());
                };
                let sources: Vec<String> = if func == "label_replace" {
                    string(3).into_iter().filter(|s| !s.is_empty()).collect()
                } else {
                    (3..args.len()).filter_map(string).collect()
                };
                self.require(&format!("{func} reads"), &sources, has);
                let mut out = has.clone();
                out.extend(string(1));
                Value::Vector(out)
            }
            _ => values
                .into_iter()
                .find(|v| matches!(v, Value::Vector(_)))
                .unwrap_or(Value::Scalar),
        }
    }

    fn aggregate(&mut self, agg: &AggregateExpr) -> Value {
        let op = agg.op.to_string();
        // The parameter (`topk`'s k, `quantile`'s φ, `count_values`' label) has its own parts.
        if let Some(param) = &agg.param {
            self.labels(param);
        }
        let has = match self.labels(&agg.expr) {
            Value::Vector(has) => has,
            Value::Scalar => {
                self.problem(format!("{op}(...) of no vector"));
                return Value::Vector(BTreeSet::new());
            }
        };
        let mut out = match &agg.modifier {
            Some(LabelModifier::Include(by)) => {
                self.require(&format!("{op} by"), &by.labels, &has);
                set(&by.labels)
            }
            Some(LabelModifier::Exclude(without)) => {
                self.require(&format!("{op} without"), &without.labels, &has);
                has.iter()
                    .filter(|l| !without.labels.contains(l))
                    .cloned()
                    .collect()
            }
            None => BTreeSet::new(),
        };
        if ["topk", "bottomk", "limitk", "limit_ratio"].contains(&op.as_str()) {
            out = has.clone();
        }
        if op == "count_values"
            && let Some(label) = string_literal(agg.param.as_deref())
        {
            out.insert(label);
        }
        Value::Vector(out)
    }

    fn binary(&mut self, bin: &BinaryExpr) -> Value {
        let op = bin.op.to_string();
        let (l, r) = match (self.labels(&bin.lhs), self.labels(&bin.rhs)) {
            (Value::Scalar, Value::Scalar) => return Value::Scalar,
            (Value::Scalar, v) | (v, Value::Scalar) => return v,
            (Value::Vector(l), Value::Vector(r)) => (l, r),
        };
        let modifier = bin.modifier.as_ref();
        let matching = modifier.and_then(|m| m.matching.as_ref());
        let both: BTreeSet<String> = l.union(&r).cloned().collect();
        match matching {
            Some(LabelModifier::Include(on)) => {
                self.require(&format!("{op} on"), &on.labels, &l);
                self.require(&format!("{op} on"), &on.labels, &r);
            }
            Some(LabelModifier::Exclude(ignoring)) => {
                self.require(&format!("{op} ignoring"), &ignoring.labels, &both)
            }
            None => {}
        }
        if bin.op.is_set_operator() {
            return Value::Vector(if op == "or" { both } else { l });
        }
        let group = match modifier.map(|m| &m.card) {
            Some(VectorMatchCardinality::ManyToOne(extra)) => Some((true, &extra.labels)),
            Some(VectorMatchCardinality::OneToMany(extra)) => Some((false, &extra.labels)),
            _ => None,
        };
        if let Some((left, extra)) = group {
            let (many, one) = if left { (l, r) } else { (r, l) };
            self.require("group_left/group_right copies", extra, &one);
            let mut out = many;
            out.extend(extra.iter().cloned());
            return Value::Vector(out);
        }
        // One-to-one: the series must agree on every label that is matched.
        let (matched_l, matched_r) = match matching {
            Some(LabelModifier::Include(on)) => (
                l.intersection(&set(&on.labels)).cloned().collect(),
                r.intersection(&set(&on.labels)).cloned().collect(),
            ),
            Some(LabelModifier::Exclude(ignoring)) => (
                l.difference(&set(&ignoring.labels))
                    .cloned()
                    .collect::<BTreeSet<_>>(),
                r.difference(&set(&ignoring.labels)).cloned().collect(),
            ),
            None => (l.clone(), r.clone()),
        };
        if matched_l != matched_r {
            self.problem(format!(
                "{op} matches series one-to-one on different labels ({matched_l:?} against {matched_r:?}): nothing would match; use on(...), ignoring(...) or aggregate first"
            ));
        }
        let filter = bin.op.is_comparison_operator() && !modifier.is_some_and(|m| m.return_bool);
        Value::Vector(match matching {
            _ if filter => l,
            Some(LabelModifier::Include(on)) => set(&on.labels),
            _ => matched_l,
        })
    }
}

/// Checks one query at `place`; returns its labels (None when it does not parse, a problem).
pub(crate) fn check_query(
    place: &str,
    query: &str,
    recorded: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) -> Option<BTreeSet<String>> {
    let expr = match parser::parse(query) {
        Ok(expr) => expr,
        Err(e) => {
            problems.push(format!("{place}: cannot parse {query:?}: {e}"));
            return None;
        }
    };
    let mut check = Check {
        place: place.to_string(),
        recorded,
        problems,
    };
    match check.labels(&expr) {
        Value::Vector(labels) => Some(labels),
        Value::Scalar => Some(BTreeSet::new()),
    }
}

/// A dashboard query as PromQL: Grafana's interval variables (`$__rate_interval`,
/// `$__interval`, `$__range`, also as `${...}`) become durations. Variables inside strings
/// (`{table=~"$table"}`) stay as written, as label values; any other variable outside a string
/// stays too, and the query then does not parse.
pub(crate) fn dashboard_query(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' && q != '`' {
                    out.extend(chars.next());
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' => {
                let braced = chars.next_if_eq(&'{').is_some();
                let mut name = String::new();
                while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    name.push(c);
                }
                let closed = braced && chars.next_if_eq(&'}').is_some();
                let duration = match name.as_str() {
                    "__rate_interval" => Some("5m"),
                    "__interval" => Some("1m"),
                    "__range" => Some("1h"),
                    _ => None,
                };
                match duration {
                    Some(d) if braced == closed => out.push_str(d),
                    _ => {
                        out.push('$');
                        if braced {
                            out.push('{');
                        }
                        out.push_str(&name);
                        if closed {
                            out.push('}');
                        }
                    }
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// Names inside `{{ ... }}` templates: `$labels.x` (alert annotations) or a bare `x` (legends).
pub(crate) fn template_labels(text: &str, alert: bool) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        rest = &rest[start + end + 2..];
        let name = if alert {
            let mut words =
                inner.split(|c: char| !(c.is_ascii_alphanumeric() || "_.$".contains(c)));
            match words.find_map(|w| w.strip_prefix("$labels.")) {
                Some(name) => name,
                None => continue,
            }
        } else {
            inner
        };
        labels.push(name.to_string());
    }
    labels
}

/// `kappa_...{...}` selectors written inside a text, with `{{ ... }}` templates blanked.
pub(crate) fn quoted_selectors(text: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        plain.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map_or(rest.len(), |e| start + e + 2);
        plain.push('x');
        rest = &rest[end..];
    }
    plain.push_str(rest);
    let mut selectors = Vec::new();
    let mut from = 0;
    while let Some(at) = plain[from..].find("kappa_") {
        let start = from + at;
        let name_end = plain[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(plain.len(), |n| start + n);
        from = name_end;
        if plain[name_end..].starts_with('{')
            && let Some(close) = plain[name_end..].find('}')
        {
            selectors.push(plain[start..=name_end + close].to_string());
            from = name_end + close + 1;
        }
    }
    selectors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of `query`, read as a dashboard query (no Grafana variable in a rule's
    /// query, so no change there).
    fn problems_of(query: &str) -> Vec<String> {
        let mut problems = Vec::new();
        check_query(
            "q",
            &dashboard_query(query),
            &BTreeMap::new(),
            &mut problems,
        );
        problems
    }

    #[test]
    fn grafana_interval_variables_become_durations_and_label_variables_stay() {
        for (dashboard, promql) in [
            (
                "rate(kappa_commits_total{table=~\"$table\"}[$__rate_interval])",
                "rate(kappa_commits_total{table=~\"$table\"}[5m])",
            ),
            (
                "increase(x[${__range}]) / increase(x[$__interval] offset $__interval)",
                "increase(x[1h]) / increase(x[1m] offset 1m)",
            ),
            (
                "x{a=\"\\\"$__range\", b='$job'}",
                "x{a=\"\\\"$__range\", b='$job'}",
            ),
            ("x > $threshold", "x > $threshold"),
        ] {
            assert_eq!(dashboard_query(dashboard), promql, "{dashboard}");
        }
        assert!(
            problems_of("kappa_commits_total > $threshold")[0].contains("cannot parse"),
            "a variable outside a string that is not an interval"
        );
    }

    #[test]
    fn the_checker_accepts_the_queries_kappa_means() {
        for query in [
            "sum by (topic, partition) (kappa_source_consumer_lag_records) / sum by (topic, partition) (rate(kappa_source_records_read_total[5m])) > 300",
            "histogram_quantile(0.99, sum by (table, le) (rate(kappa_commit_duration_seconds_bucket{table=~\"$table\"}[$__rate_interval])))",
            "kappa_commit_last_success_age_seconds > 3 * kappa_commit_interval_seconds",
            "increase(kappa_commits_total{outcome=\"failed\"}[15m]) > 0",
            "max by (table) (kappa_table_freshness_lag_seconds) > on (table) group_left max by (table) (kappa_table_freshness_slo_seconds)",
            "kappa_quality_check_value > ignoring (policy) kappa_quality_check_passed",
            "sum without (instance, job) (kappa_pipeline_records_read_total offset 1h)",
            "-kappa_quality_gate_blocked{job=\"kappa\"} ^ 2 ^ 3",
            "count_values(\"v\", kappa_build_info) or vector(0)",
            "label_replace(kappa_build_info, \"release\", \"$1\", \"version\", \"(.*)\")",
        ] {
            assert_eq!(problems_of(query), Vec::<String>::new(), "{query}");
        }
    }

    #[test]
    fn the_checker_finds_unknown_metrics_and_labels_bad_groupings_and_mismatched_matches() {
        for (query, expected) in [
            ("kappa_nope", "kappa_nope is not in the catalog"),
            (
                "kappa_commits_total_bucket",
                "kappa_commits_total_bucket is not in the catalog",
            ),
            (
                "kappa_commits_total{topic=\"orders\"}",
                "has no label topic",
            ),
            (
                "kappa_commits_total{outcome=\"conflict\"}",
                "emits outcome only as",
            ),
            (
                "kappa_pipeline_records_dead_lettered_total{kind=\"late\"}",
                "emits kind only as",
            ),
            ("sum by (topic) (kappa_commits_total)", "sum by topic"),
            (
                "sum by (table) (kappa_commits_total) / kappa_commits_total",
                "one-to-one on different labels",
            ),
            (
                "kappa_quality_check_value < kappa_quality_check_threshold",
                "one-to-one on different labels",
            ),
            (
                "kappa_commits_total / on (topic) kappa_commits_total",
                "on topic",
            ),
            (
                "histogram_quantile(0.9, sum by (table) (rate(kappa_commit_duration_seconds_bucket[5m])))",
                "without an le label",
            ),
            ("sum(kappa_commits_total) by (check)", "sum by check"),
        ] {
            let problems = problems_of(query);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{query}: expected a problem with {expected:?}, got {problems:?}"
            );
        }
        assert_eq!(
            template_labels("{{table}} {{ outcome }}", false),
            ["table", "outcome"]
        );
        assert_eq!(
            template_labels(
                "on {{ $labels.topic }}/{{ $labels.partition }} is {{ $value | humanizeDuration }}",
                true
            ),
            ["topic", "partition"]
        );
        assert_eq!(
            quoted_selectors(
                "kappa_quality_check_passed{table=\"{{ $labels.table }}\",policy=\"block\"} == 0 names it"
            ),
            ["kappa_quality_check_passed{table=\"x\",policy=\"block\"}"]
        );
    }
}
