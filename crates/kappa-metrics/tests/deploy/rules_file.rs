//! The Prometheus rules files of `deploy/alerts`, read without a YAML library: the block style
//! they are written in, and no more.

#[derive(Debug, Default)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) record: bool,
    pub(crate) expr: String,
    /// Label keys of the rule's `labels:`.
    pub(crate) labels: Vec<String>,
    /// Annotation texts.
    pub(crate) annotations: Vec<String>,
}

/// A YAML scalar as written after `key:` (plain, or single- or double-quoted).
pub(crate) fn scalar(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match (c, chars.clone().next()) {
                ('\\', Some(n)) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        raw.split(" #").next().unwrap_or(raw).trim().to_string()
    }
}

/// The rules of a Prometheus rules file in the block style `deploy/alerts` writes: `- alert:`
/// or `- record:` items with `expr` (inline, or a `|` / `>` block), `labels:` and
/// `annotations:` maps of one-line scalars.
pub(crate) fn rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut rules: Vec<Rule> = Vec::new();
    // The map being read (`labels` or `annotations`) and the indentation of its key.
    let mut map: Option<(&str, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        i += 1;
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        if let Some((name, at)) = map {
            if indent(line) > at {
                if let Some(rule) = rules.last_mut() {
                    if name == "labels" {
                        rule.labels.push(key.trim().to_string());
                    } else {
                        rule.annotations.push(scalar(value));
                    }
                }
                continue;
            }
            map = None;
        }
        let item = key.strip_prefix("- ").is_some();
        match key.trim_start_matches("- ").trim() {
            "alert" | "record" if item => rules.push(Rule {
                name: scalar(value),
                record: key.ends_with("record"),
                ..Rule::default()
            }),
            "expr" => {
                let Some(rule) = rules.last_mut() else {
                    continue;
                };
                let value = value.trim();
                if value.starts_with('|') || value.starts_with('>') {
                    let mut block = Vec::new();
                    while i < lines.len()
                        && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
                    {
                        block.push(lines[i].trim());
                        i += 1;
                    }
                    rule.expr = block.join("\n").trim().to_string();
                } else {
                    rule.expr = scalar(value);
                }
            }
            name @ ("labels" | "annotations") if value.trim().is_empty() => {
                map = Some((
                    if name == "labels" {
                        "labels"
                    } else {
                        "annotations"
                    },
                    indent(line),
                ));
            }
            _ => {}
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_from_the_block_style_yaml() {
        let rules = rules(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum by (table) (x)\n            > 1\n        for: 5m\n        labels:\n          severity: critical\n        annotations:\n          summary: \"on {{ $labels.table }} \\\"q\\\"\"\n      - record: r:x\n        expr: kappa_build_info # a comment\n",
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "A");
        assert_eq!(rules[0].expr, "sum by (table) (x)\n> 1");
        assert_eq!(rules[0].labels, ["severity"]);
        assert_eq!(rules[0].annotations, ["on {{ $labels.table }} \"q\""]);
        assert!(rules[1].record);
        assert_eq!(rules[1].expr, "kappa_build_info");
    }
}
