//! `kappa schema check`: compatibility of a new schema with a subject's history, or of every
//! version in a directory with the versions before it (the CI step). Exit 4 on any break.

use std::path::Path;

use apache_avro::Schema;
use kappa_core::Classify;
use kappa_schema::compat::{Breaking, Level, check};
use kappa_schema::{
    ConfluentRegistry, FileRegistry, RegisteredSchema, RegistryOptions, SchemaError, SchemaRegistry,
};
use serde_json::json;

use crate::Failure;
use crate::cli::SchemaCheckArgs;
use crate::exit;
use crate::output;

fn usage(message: String) -> Failure {
    Failure {
        message,
        code: exit::USAGE,
    }
}

/// One checked schema: what was compared and what broke.
struct Verdict {
    subject: String,
    /// What was checked: a file path or `<subject>/<version>`.
    candidate: String,
    level: Level,
    /// Versions compared with.
    against: Vec<u32>,
    breaking: Vec<Breaking>,
}

impl Verdict {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "subject": self.subject,
            "schema": self.candidate,
            "level": self.level.as_str(),
            "compared_with_versions": self.against,
            "compatible": self.breaking.is_empty(),
            "breaking": self.breaking.iter().map(|b| json!({
                "version": b.version,
                "direction": match b.direction {
                    kappa_schema::compat::Direction::NewReadsOld => "backward",
                    kappa_schema::compat::Direction::OldReadsNew => "forward",
                },
                "path": b.incompatibility.path,
                "kind": b.incompatibility.kind.as_str(),
                "reason": b.incompatibility.reason,
            })).collect::<Vec<_>>(),
        })
    }

    fn print(&self) {
        let versions = self
            .against
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if self.breaking.is_empty() {
            output::line(&format!(
                "ok    {}: {} is {} compatible (checked against version(s) {})",
                self.subject,
                self.candidate,
                self.level,
                if versions.is_empty() {
                    "none: first version".into()
                } else {
                    versions
                }
            ));
            return;
        }
        output::line(&format!(
            "FAIL  {}: {} is not {} compatible ({} breaking change(s)):",
            self.subject,
            self.candidate,
            self.level,
            self.breaking.len()
        ));
        for b in &self.breaking {
            output::line(&format!("      - {b}"));
        }
    }
}

/// Versions a check at `level` compares with.
fn compared(level: Level, history: &[(u32, &Schema)]) -> Vec<u32> {
    match level {
        Level::None => Vec::new(),
        Level::Backward | Level::Forward | Level::Full => {
            history.last().map(|(v, _)| *v).into_iter().collect()
        }
        _ => history.iter().map(|(v, _)| *v).collect(),
    }
}

fn read_schema(path: &Path) -> Result<Schema, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--schema {}: {e}", path.display())))?;
    Schema::parse_str(&text).map_err(|e| {
        usage(format!(
            "--schema {}: not a valid Avro schema: {e}",
            path.display()
        ))
    })
}

fn registry_failure(e: SchemaError) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

fn parse_level(flag: &str) -> Result<Level, Failure> {
    flag.parse::<Level>()
        .map_err(|e| usage(format!("--level: {e}")))
}

async fn level_for(
    flag: Option<&str>,
    registry: &dyn SchemaRegistry,
    subject: &str,
) -> Result<Level, Failure> {
    match flag {
        Some(text) => parse_level(text),
        None => Ok(registry
            .compatibility(subject)
            .await
            .map_err(registry_failure)?
            .unwrap_or(Level::Backward)),
    }
}

/// `kappa schema check`.
pub async fn run(args: SchemaCheckArgs) -> Result<(), Failure> {
    let registry: Box<dyn SchemaRegistry> = match (&args.dir, &args.url) {
        (Some(dir), None) => {
            Box::new(FileRegistry::load(dir).map_err(|e| usage(format!("--dir: {e}")))?)
        }
        (None, Some(url)) => Box::new(
            ConfluentRegistry::new(RegistryOptions::new(url.clone()))
                .map_err(|e| usage(format!("--url: {e}")))?,
        ),
        _ => {
            return Err(usage(
                "schema check: give --dir <directory of <subject>/<version>.avsc> or --url <registry>"
                    .into(),
            ));
        }
    };
    let verdicts = if args.all {
        let Some(dir) = args.dir.as_ref() else {
            return Err(usage("schema check --all needs --dir".into()));
        };
        let registry = FileRegistry::load(dir).map_err(|e| usage(format!("--dir: {e}")))?;
        check_directory(&registry, args.level.as_deref())?
    } else {
        let (Some(subject), Some(schema_path)) = (args.subject.as_ref(), args.schema.as_ref())
        else {
            return Err(usage(
                "schema check: give --subject S --schema F.avsc, or --all to check every version in the directory".into(),
            ));
        };
        vec![
            check_file(
                registry.as_ref(),
                subject,
                schema_path,
                args.level.as_deref(),
            )
            .await?,
        ]
    };
    if args.json() {
        output::line(
            &serde_json::to_string_pretty(&json!({
                "compatible": verdicts.iter().all(|v| v.breaking.is_empty()),
                "checks": verdicts.iter().map(Verdict::to_json).collect::<Vec<_>>(),
            }))
            .unwrap_or_default(),
        );
    } else if verdicts.is_empty() {
        output::line("ok    no subject has two versions yet: nothing to compare");
    } else {
        for verdict in &verdicts {
            verdict.print();
        }
    }
    let failed = verdicts.iter().filter(|v| !v.breaking.is_empty()).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure {
            message: format!(
                "{failed} of {} schema check(s) found breaking changes",
                verdicts.len()
            ),
            code: exit::SCHEMA,
        })
    }
}

async fn check_file(
    registry: &dyn SchemaRegistry,
    subject: &str,
    path: &Path,
    level: Option<&str>,
) -> Result<Verdict, Failure> {
    let new = read_schema(path)?;
    let level = level_for(level, registry, subject).await?;
    // A subject not registered yet has no history: anything is compatible.
    let versions: Vec<std::sync::Arc<RegisteredSchema>> = match registry.versions(subject).await {
        Ok(versions) => versions,
        Err(SchemaError::UnknownSubject { .. }) => Vec::new(),
        Err(e) => return Err(registry_failure(e)),
    };
    let history: Vec<(u32, &Schema)> = versions.iter().map(|v| (v.version, &v.schema)).collect();
    Ok(Verdict {
        subject: subject.to_string(),
        candidate: path.display().to_string(),
        level,
        against: compared(level, &history),
        breaking: check(level, &new, &history),
    })
}

/// Every version of every subject against the versions before it.
fn check_directory(registry: &FileRegistry, level: Option<&str>) -> Result<Vec<Verdict>, Failure> {
    let mut verdicts = Vec::new();
    for subject in registry.subjects() {
        let level = match level {
            Some(flag) => parse_level(flag)?,
            None => registry.level(subject).unwrap_or(Level::Backward),
        };
        let versions = registry
            .subject_versions(subject)
            .map_err(|e| usage(e.to_string()))?;
        for (index, version) in versions.iter().enumerate().skip(1) {
            let history: Vec<(u32, &Schema)> = versions[..index]
                .iter()
                .map(|v| (v.version, &v.schema))
                .collect();
            verdicts.push(Verdict {
                subject: subject.to_string(),
                candidate: format!("{subject}/{}.avsc", version.version),
                level,
                against: compared(level, &history),
                breaking: check(level, &version.schema, &history),
            });
        }
    }
    Ok(verdicts)
}
