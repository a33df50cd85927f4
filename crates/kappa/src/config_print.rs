//! `kappa config print`: the effective configuration after the embedded defaults, the file, the
//! environment and `--set`, each key with the layer that set it, secrets redacted.

use kappa_config::{Origin, Setting, SettingValue, bare_or_quoted};
use serde_json::json;

use crate::cli::ConfigArgs;
use crate::{Failure, output};

/// `kappa config print -c FILE [--set k=v] [--format text|json]`.
pub fn run(args: ConfigArgs) -> Result<(), Failure> {
    let overrides = args.overrides()?;
    let settings = kappa_config::effective(&args.config, &overrides).map_err(Failure::config)?;
    let file = args.config.display().to_string();
    if args.json() {
        let settings: Vec<_> = settings
            .iter()
            .map(|s| {
                let (origin, from) = match &s.origin {
                    Origin::Default => ("default", None),
                    Origin::File(path) => ("file", Some(path.clone())),
                    Origin::Env(name) => ("env", Some(name.clone())),
                    Origin::Set => ("set", None),
                };
                // Not "key": the CLI's redaction takes a field named like a secret for one.
                json!({"setting": s.key(), "value": to_json(&s.value), "origin": origin, "from": from})
            })
            .collect();
        output::line(&json!({"config": file, "settings": settings}).to_string());
        return Ok(());
    }
    output::line(&format!(
        "# The effective configuration of {file}: embedded defaults, the file, the environment \
         (KAPPA__SECTION__KEY), --set; the later wins. Secrets redacted."
    ));
    let mut section: Option<Vec<String>> = None;
    for setting in &settings {
        let (key, table) = match setting.path.split_last() {
            Some((key, table)) => (key, table.to_vec()),
            None => continue,
        };
        if section.as_ref() != Some(&table) {
            output::line("");
            output::line(&format!(
                "[{}]",
                table
                    .iter()
                    .map(|s| bare_or_quoted(s))
                    .collect::<Vec<_>>()
                    .join(".")
            ));
            section = Some(table);
        }
        output::line(&line(key, setting));
    }
    Ok(())
}

fn line(key: &str, setting: &Setting) -> String {
    let assignment = format!("{} = {}", bare_or_quoted(key), setting.value.to_toml());
    format!("{assignment:<44} # {}", setting.origin)
}

fn to_json(value: &SettingValue) -> serde_json::Value {
    match value {
        SettingValue::Bool(b) => json!(b),
        SettingValue::Int(i) => {
            i64::try_from(*i).map_or_else(|_| json!(i.to_string()), |i| json!(i))
        }
        SettingValue::Float(x) => json!(x),
        SettingValue::Str(s) => json!(s),
        SettingValue::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
    }
}
