//! `[quality]` → [`kappa_quality::QualityConfig`]: the raw sections through the validating
//! constructors of `kappa-quality`, each error naming `[section] key` (and the rule's number and
//! name for `[[quality.rules]]`). Pure.

use kappa_quality::{
    Band, CompletenessGate, NullRateGate, PartitionGate, Pattern, Policy, QualityConfig,
    QualityError, RecordRule, RuleCheck, TimelinessGate, UniquenessGate,
};

use kappa_logic::LogicEntry;

use crate::error::ConfigError;
use crate::raw::{QualitySection, RuleSection};

/// A [`QualityError::Invalid`] from a constructor as an error naming `[section] key`.
fn quality_error(section: &str, prefix: &str, error: QualityError) -> ConfigError {
    match error {
        QualityError::Invalid { key, message } => {
            ConfigError::invalid(section, key, format!("{prefix}{message}"))
        }
        other => ConfigError::invalid(section, "", format!("{prefix}{other}")),
    }
}

fn policy(section: &str, value: &str) -> Result<Policy, ConfigError> {
    value
        .parse::<Policy>()
        .map_err(|e| quality_error(section, "", e))
}

/// One `[[quality.rules]]` entry (`index` counts from 1 in messages).
fn rule(index: usize, raw: &RuleSection) -> Result<RecordRule, ConfigError> {
    const SECTION: &str = "quality.rules";
    let who = match (&raw.name, &raw.column) {
        (Some(name), _) => format!("rule #{index} ({name:?}): "),
        (None, Some(column)) => format!("rule #{index} (column {column:?}): "),
        (None, None) => format!("rule #{index}: "),
    };
    let err = |e: QualityError| quality_error(SECTION, &who, e);
    let column = raw.column.as_deref().unwrap_or("");
    if column.trim().is_empty() {
        return Err(ConfigError::invalid(
            SECTION,
            "column",
            format!("{who}missing; the column the rule checks"),
        ));
    }
    let mut checks = Vec::new();
    if raw.required == Some(true) {
        checks.push(("required", RuleCheck::Required));
    }
    if let Some(values) = &raw.allowed {
        checks.push(("allowed", RuleCheck::Allowed(values.clone())));
    }
    if raw.min.is_some() || raw.max.is_some() {
        let key = if raw.min.is_some() { "min" } else { "max" };
        checks.push((
            key,
            RuleCheck::Range {
                min: raw.min,
                max: raw.max,
            },
        ));
    }
    if let Some(pattern) = &raw.pattern {
        checks.push((
            "pattern",
            RuleCheck::Pattern(Pattern::new(pattern).map_err(err)?),
        ));
    }
    let check = match checks.len() {
        1 => checks.remove(0).1,
        0 => {
            return Err(ConfigError::invalid(
                SECTION,
                "column",
                format!("{who}no check; set one of required = true, allowed, min/max, pattern"),
            ));
        }
        _ => {
            let keys: Vec<&str> = checks.iter().map(|(k, _)| *k).collect();
            return Err(ConfigError::invalid(
                SECTION,
                keys[1],
                format!(
                    "{who}sets {}; one check per [[quality.rules]] entry (add another entry)",
                    keys.join(" and ")
                ),
            ));
        }
    };
    let policy = raw
        .policy
        .as_deref()
        .unwrap_or("warn")
        .parse::<Policy>()
        .map_err(err)?;
    RecordRule::new(
        raw.name.as_deref().unwrap_or(""),
        column,
        check,
        policy,
        raw.max_rate.unwrap_or(0.0),
    )
    .map_err(err)
}

/// `[quality]` → [`QualityConfig`]: the logic's default rules (unless `default_rules =
/// false`), replaced by name or extended by `[[quality.rules]]`, and the gates that are enabled.
/// A gate's columns default to the logic's; a gate with no column to check (the null-rate and
/// uniqueness gates of `identity` unless the config names columns) is off.
pub(crate) fn quality(
    raw: &QualitySection,
    logic: &LogicEntry,
    event_time: &str,
) -> Result<QualityConfig, ConfigError> {
    let mut rules = if raw.default_rules {
        logic
            .default_rules()
            .map_err(|e| quality_error("quality", "", e))?
    } else {
        Vec::new()
    };
    let mut listed: Vec<String> = Vec::new();
    for (i, entry) in raw.rules.iter().enumerate() {
        let rule = rule(i + 1, entry)?;
        if listed.iter().any(|n| n == rule.name()) {
            return Err(ConfigError::invalid(
                "quality.rules",
                "name",
                format!(
                    "rule #{}: {:?} is the name of an earlier rule; names must be unique",
                    i + 1,
                    rule.name()
                ),
            ));
        }
        listed.push(rule.name().to_string());
        match rules.iter_mut().find(|r| r.name() == rule.name()) {
            Some(default) => *default = rule,
            None => rules.push(rule),
        }
    }
    let gates = &raw.gates;
    let completeness = gates
        .completeness
        .enabled
        .then(|| {
            Ok::<_, ConfigError>(CompletenessGate {
                policy: policy("quality.gates.completeness", &gates.completeness.policy)?,
            })
        })
        .transpose()?;
    let section = "quality.gates.null_rate";
    let g = &gates.null_rate;
    let columns = g.columns.clone().unwrap_or_else(|| {
        let defaults = logic.defaults.null_rate_columns.iter();
        defaults.map(|c| c.to_string()).collect()
    });
    let null_rate = (g.enabled && !columns.is_empty())
        .then(|| {
            NullRateGate::new(policy(section, &g.policy)?, columns, g.max_rate)
                .map_err(|e| quality_error(section, "", e))
        })
        .transpose()?;
    let section = "quality.gates.uniqueness";
    let g = &gates.uniqueness;
    let column = g
        .column
        .clone()
        .or_else(|| logic.defaults.uniqueness_column.map(str::to_string));
    let uniqueness = column
        .filter(|_| g.enabled)
        .map(|column| {
            UniquenessGate::new(policy(section, &g.policy)?, &column, g.max_rate)
                .map_err(|e| quality_error(section, "", e))
        })
        .transpose()?;
    let section = "quality.gates.timeliness";
    let g = &gates.timeliness;
    let timeliness = g
        .enabled
        .then(|| {
            TimelinessGate::new(
                policy(section, &g.policy)?,
                event_time,
                g.freshness_sla,
                g.max_late_rate,
            )
            .map_err(|e| quality_error(section, "", e))
        })
        .transpose()?;
    let section = "quality.partition";
    let p = &raw.partition;
    let partition = p
        .enabled
        .then(|| {
            let band = match p.band.as_slice() {
                [lo, hi] => Band::new(*lo, *hi).map_err(|e| quality_error(section, "", e))?,
                other => {
                    return Err(ConfigError::invalid(
                        section,
                        "band",
                        format!(
                            "{} numbers; expected two, [lo, hi], e.g. [0.7, 1.3]",
                            other.len()
                        ),
                    ));
                }
            };
            PartitionGate::new(
                policy(section, &p.policy)?,
                p.lookback_days,
                p.min_history_days,
                band,
            )
            .map_err(|e| quality_error(section, "", e))
        })
        .transpose()?;
    Ok(QualityConfig {
        enabled: raw.enabled,
        rules,
        completeness,
        null_rate,
        uniqueness,
        timeliness,
        partition,
    })
}
