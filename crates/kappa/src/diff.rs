//! `kappa diff -c P --other NS.TABLE [--key COLUMN] [--json]`: the pipeline's table and another
//! table of the same catalog compared day by day (the comparison is
//! [`kappa_iceberg::diff`]'s). Reads only.

use std::collections::BTreeMap;

use iceberg::TableIdent;
use kappa_core::Classify;
use kappa_quality::Day;
use serde_json::json;

use crate::cli::DiffArgs;
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

/// The pipeline's dedup key: `[dedup] key`, or its logic's default.
pub(crate) fn logic_key(config: &kappa_config::PipelineConfig) -> Option<String> {
    config.logic_settings.dedup_key.clone()
}

pub async fn run(args: DiffArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    let usage = |message: String| Failure {
        message,
        code: exit::USAGE,
    };
    let key = match &args.key {
        Some(key) => key.clone(),
        None => logic_key(&config).ok_or_else(|| {
            usage(format!(
                "logic {:?} has no dedup key: name the key column with --key (or set [dedup] key)",
                config.logic
            ))
        })?,
    };
    let namespace = &config.raw.table.namespace;
    let (other_namespace, other_name) = match args.other.rsplit_once('.') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (namespace.clone(), args.other.clone()),
    };
    let ident = |ns: &str, name: &str| {
        TableIdent::from_strs([ns, name])
            .map_err(|e| usage(format!("--other {:?}: {e}", args.other)))
    };
    let first = ident(namespace, &config.table)?;
    let other = ident(&other_namespace, &other_name)?;
    if first == other {
        return Err(usage(format!(
            "--other {:?} is the pipeline's own table",
            args.other
        )));
    }
    let catalog = kappa_iceberg::connect_read_only(&kappa_pipeline::catalog_config(&config))
        .await
        .map_err(fail)?;
    let load = |ident: TableIdent| {
        let catalog = catalog.clone();
        async move {
            catalog.load_table(&ident).await.map_err(|e| Failure {
                message: format!("table {ident}: {e}"),
                code: exit::USAGE,
            })
        }
    };
    let (a, b) = (load(first.clone()).await?, load(other.clone()).await?);
    let time = &config.raw.event_time.column;
    let days = kappa_iceberg::diff::diff(&a, &b, time, &key)
        .await
        .map_err(fail)?;
    let differing = days.iter().filter(|d| !d.matches()).count();
    if args.config.json() {
        let rows: Vec<_> = days
            .iter()
            .map(|d| {
                json!({
                    "day": Day(d.day).to_string(),
                    "matches": d.matches(),
                    "rows": d.rows.0,
                    "other_rows": d.rows.1,
                    "missing_in_other": d.missing,
                    "extra_in_other": d.extra,
                    "sums": d.sums.iter().map(|(c, x, y)| (c.clone(), json!([x.to_string(), y.to_string()]))).collect::<BTreeMap<_, _>>(),
                })
            })
            .collect();
        output::line(
            &json!({
                "table": first.to_string(),
                "other": other.to_string(),
                "compared_on": key,
                "matches": differing == 0,
                "days": rows,
            })
            .to_string(),
        );
    } else {
        output::line(&format!("{first} vs {other}, per day of {time} on {key}:"));
        for d in days.iter().filter(|d| !d.matches()) {
            let mut parts = vec![format!("{} rows vs {}", d.rows.0, d.rows.1)];
            if d.missing > 0 {
                parts.push(format!("{} rows missing in {other}", d.missing));
            }
            if d.extra > 0 {
                parts.push(format!("{} rows extra in {other}", d.extra));
            }
            for (column, x, y) in &d.sums {
                parts.push(format!("sum({column}) {x} vs {y}"));
            }
            output::line(&format!("  {}: {}", Day(d.day), parts.join("; ")));
        }
        if differing == 0 {
            output::line(&format!("  all {} days match", days.len()));
        } else {
            output::line(&format!("  {differing} of {} days differ", days.len()));
        }
    }
    if differing == 0 {
        Ok(())
    } else {
        Err(Failure {
            message: format!(
                "{first} and {other} differ on {differing} of {} days",
                days.len()
            ),
            code: exit::DIFFER,
        })
    }
}
