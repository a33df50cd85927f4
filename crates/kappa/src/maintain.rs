//! `kappa maintain compact | expire | orphans | all -c P`: the pipeline's tables (main, dead
//! letters, and the late and quarantine tables when they exist) kept healthy while ingestion
//! runs. The work is [`kappa_iceberg::maintenance`]'s; this prints it and reports it as metrics
//! (`kappa_maintenance_*`, `kappa_table_*`), served on `[metrics] listen` when the configuration
//! sets it, for `[metrics] linger` after the run (a CronJob's pod is scraped before it goes).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use iceberg::{Catalog, TableIdent};
use kappa_config::PipelineConfig;
use kappa_core::Classify;
use kappa_iceberg::maintenance::compact::{self, CompactOptions, Compaction, Outcome};
use kappa_iceberg::maintenance::expire::{self, ExpireOptions, Expiry};
use kappa_iceberg::maintenance::orphans::{self, OrphanOptions, Orphans};
use kappa_iceberg::producer::CatalogCommitter;
use kappa_iceberg::state::TableState;
use kappa_metrics::events::maintenance;
use serde_json::json;

use crate::cli::MaintainCommand;
use crate::{Failure, exit, output};

fn fail<E: std::fmt::Display + Classify>(e: E) -> Failure {
    Failure::from_kind(e.kind(), e.to_string())
}

const DAY_US: i64 = 86_400_000_000;

/// The pipeline's tables and the catalog they are in.
struct Tables {
    config: PipelineConfig,
    catalog: Arc<dyn Catalog>,
    /// Commits Kappa's own snapshots (compaction, expiry); the reason when this catalog cannot.
    committer: Result<CatalogCommitter, String>,
    /// Main first, then the side tables that exist.
    tables: Vec<TableIdent>,
    json: bool,
}

impl Tables {
    /// The tables of `config` (loaded once, by [`run`]); `json`: print JSON.
    async fn open(config: PipelineConfig, json: bool) -> Result<Self, Failure> {
        let catalog_config = kappa_pipeline::catalog_config(&config);
        let catalog = kappa_iceberg::connect_read_only(&catalog_config)
            .await
            .map_err(fail)?;
        let namespace = &config.raw.table.namespace;
        let ident = |name: &str| {
            TableIdent::from_strs([namespace.as_str(), name]).map_err(|e| Failure {
                message: format!("[table] {name:?}: {e}"),
                code: exit::USAGE,
            })
        };
        let main = ident(&config.table)?;
        let exists = async |ident: &TableIdent| {
            catalog.table_exists(ident).await.map_err(|e| Failure {
                message: format!("table {ident}: {e}"),
                code: exit::FAILURE,
            })
        };
        if !exists(&main).await? {
            return Err(Failure {
                message: format!(
                    "table {main} does not exist ([table] name {:?}): nothing to maintain",
                    config.table
                ),
                code: exit::USAGE,
            });
        }
        let mut tables = vec![main];
        for name in [
            &config.dlq_table,
            &config.late_table,
            &config.quarantine_table,
        ] {
            let side = ident(name)?;
            if exists(&side).await? {
                tables.push(side);
            }
        }
        let committer = CatalogCommitter::connect(&catalog_config)
            .await
            .map_err(|e| e.to_string());
        Ok(Self {
            config,
            catalog,
            committer,
            tables,
            json,
        })
    }

    async fn load(&self, ident: &TableIdent) -> Result<iceberg::table::Table, Failure> {
        self.catalog.load_table(ident).await.map_err(|e| Failure {
            message: format!("table {ident}: {e}"),
            code: exit::FAILURE,
        })
    }

    fn committer(&self) -> Result<&CatalogCommitter, Failure> {
        self.committer.as_ref().map_err(|message| Failure {
            message: message.clone(),
            code: exit::FAILURE,
        })
    }

    fn max_attempts(&self) -> u32 {
        self.config.raw.commit.max_attempts
    }

    /// The newest closed day of the main table: the day before the one `allowed_lateness`
    /// behind its newest event time (`None`: it has no event time yet).
    async fn last_closed_day(&self) -> Result<Option<i32>, Failure> {
        let main = self.load(&self.tables[0]).await?;
        let state = TableState::read(
            &self.tables[0].to_string(),
            main.metadata(),
            &self.config.name,
        )
        .map_err(fail)?;
        let lateness = self.config.raw.event_time.allowed_lateness.as_micros() as i64;
        Ok(state
            .max_event_time
            .map(|newest| ((newest - lateness).div_euclid(DAY_US) - 1) as i32))
    }

    async fn compact(
        &self,
        range: (Option<i32>, Option<i32>),
        dry_run: bool,
    ) -> Result<Vec<Compaction>, Failure> {
        let (from, to) = match range {
            (from, Some(to)) => (from, Some(to)),
            (from, None) => (from, self.last_closed_day().await?),
        };
        let mut done = Vec::new();
        for (index, ident) in self.tables.iter().enumerate() {
            let days = match (from, to) {
                (_, Some(to)) => Some((from.unwrap_or(i32::MIN), to)),
                // Main without a closed day: nothing of it is compacted by default.
                (_, None) if index == 0 => Some((i32::MIN, i32::MIN)),
                (Some(from), None) => Some((from, i32::MAX)),
                (None, None) => None,
            };
            let options = CompactOptions {
                target_file_size: self.config.raw.table.target_file_size,
                zstd_level: kappa_iceberg::writer::WriterOptions::default().zstd_level,
                dictionary_size: kappa_iceberg::writer::WriterOptions::default().dictionary_size,
                event_time_column: self.config.raw.event_time.column.clone(),
                days,
                dry_run,
                max_attempts: self.max_attempts(),
                distinct_columns: kappa_pipeline::distinct_columns(&self.config),
            };
            let compaction =
                compact::compact(self.catalog.as_ref(), self.committer()?, ident, &options)
                    .await
                    .map_err(fail)?;
            if !dry_run {
                let rewritten = compaction
                    .partitions
                    .iter()
                    .filter(|p| matches!(p.outcome, Outcome::Rewritten { .. }));
                maintenance::Compacted {
                    table: &compaction.table,
                    partitions: rewritten.clone().count() as u64,
                    files_rewritten: rewritten.map(|p| p.files_before as u64).sum(),
                    bytes_rewritten: compaction.bytes_rewritten(),
                }
                .emit();
                self.report_shape(ident).await?;
            }
            done.push(compaction);
        }
        Ok(done)
    }

    /// Emits the table's shape and files per partition as it is now.
    async fn report_shape(&self, ident: &TableIdent) -> Result<(), Failure> {
        let table = self.load(ident).await?;
        kappa_iceberg::maintenance::emit_shape(
            &table,
            Some(self.config.raw.table.target_file_size),
        );
        let per_partition = compact::files_per_partition(&table).await.map_err(fail)?;
        maintenance::Finished {
            table: &ident.to_string(),
            partitions: per_partition.len() as u64,
            partition_files_max: per_partition.values().copied().max().unwrap_or(0) as u64,
        }
        .emit();
        Ok(())
    }

    async fn expire(&self, options: &ExpireOptions) -> Result<Vec<Expiry>, Failure> {
        let mut done = Vec::new();
        for ident in &self.tables {
            let expiry = expire::expire(self.catalog.as_ref(), self.committer()?, ident, options)
                .await
                .map_err(fail)?;
            if !options.dry_run {
                maintenance::Expired {
                    table: &expiry.table,
                    snapshots: if expiry.committed {
                        expiry.expired.len() as u64
                    } else {
                        0
                    },
                    files_deleted: expiry.files_deleted,
                    bytes_deleted: expiry.bytes_deleted,
                }
                .emit();
                self.report_shape(ident).await?;
            }
            done.push(expiry);
        }
        Ok(done)
    }

    async fn orphans(&self, options: &OrphanOptions) -> Result<Vec<Orphans>, Failure> {
        let main = self.load(&self.tables[0]).await?;
        let keep: HashSet<String> = kappa_runtime::backfill::staged_paths(&main)
            .await
            .map_err(fail)?;
        let mut done = Vec::new();
        for ident in &self.tables {
            let table = self.load(ident).await?;
            let cleaned = orphans::orphans(&table, &keep, options)
                .await
                .map_err(fail)?;
            if !options.dry_run {
                maintenance::OrphansDeleted {
                    table: &cleaned.table,
                    files_deleted: cleaned.orphans.len() as u64,
                    bytes_deleted: cleaned.bytes,
                    young: cleaned.young,
                }
                .emit();
            }
            done.push(cleaned);
        }
        Ok(done)
    }

    fn expire_options(
        &self,
        older_than: Option<Duration>,
        retain_last: Option<usize>,
        dry_run: bool,
    ) -> Result<ExpireOptions, Failure> {
        let maintenance = &self.config.raw.maintenance;
        let older_than = older_than.unwrap_or(maintenance.expire_older_than);
        let retain_last = retain_last.unwrap_or(maintenance.retain_last);
        if retain_last == 0 {
            return Err(Failure {
                message: "--retain-last 0: every branch keeps at least its newest snapshot (1)"
                    .into(),
                code: exit::USAGE,
            });
        }
        let now = chrono::Utc::now().timestamp_millis();
        Ok(ExpireOptions {
            older_than_ms: now.saturating_sub(older_than.as_millis() as i64),
            retain_last,
            dry_run,
            max_attempts: self.max_attempts(),
        })
    }

    fn orphan_options(&self, older_than: Option<Duration>, dry_run: bool) -> OrphanOptions {
        OrphanOptions {
            older_than: older_than.unwrap_or(self.config.raw.maintenance.orphan_older_than),
            dry_run,
        }
    }
}

fn day_arg(flag: &str, text: Option<&str>) -> Result<Option<i32>, Failure> {
    let Some(text) = text else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| Failure {
        message: format!("{flag} {text:?}: expected YYYY-MM-DD ({e})"),
        code: exit::USAGE,
    })?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    Ok(Some((date - epoch).num_days() as i32))
}

/// `kappa maintain ...`: the command, with the metrics endpoint around it when `[metrics]
/// listen` is set.
pub async fn run(command: MaintainCommand) -> Result<(), Failure> {
    let args = match &command {
        MaintainCommand::Compact(a) => &a.config,
        MaintainCommand::Expire(a) => &a.config,
        MaintainCommand::Orphans(a) => &a.config,
        MaintainCommand::All(a) => &a.config,
    };
    let config = args.load()?;
    let metrics = config.clone();
    crate::endpoint::around(&metrics, "maintenance", execute(command, config)).await
}

async fn execute(command: MaintainCommand, config: PipelineConfig) -> Result<(), Failure> {
    match command {
        MaintainCommand::Compact(args) => {
            let from = day_arg("--from", args.from.as_deref())?;
            let to = day_arg("--to", args.to.as_deref())?;
            if let (Some(from), Some(to)) = (from, to)
                && from > to
            {
                return Err(Failure {
                    message: format!("--from {:?} is after --to {:?}", args.from, args.to),
                    code: exit::USAGE,
                });
            }
            let tables = Tables::open(config, args.config.json()).await?;
            let done = tables.compact((from, to), args.dry_run).await?;
            print_compactions(&done, tables.json);
        }
        MaintainCommand::Expire(args) => {
            let tables = Tables::open(config, args.config.json()).await?;
            let options = tables.expire_options(args.older_than, args.retain_last, args.dry_run)?;
            let done = tables.expire(&options).await?;
            print_expiries(&done, tables.json, args.dry_run);
        }
        MaintainCommand::Orphans(args) => {
            let tables = Tables::open(config, args.config.json()).await?;
            let options = tables.orphan_options(args.older_than, args.dry_run);
            let done = tables.orphans(&options).await?;
            print_orphans(&done, tables.json, args.dry_run);
        }
        MaintainCommand::All(args) => {
            let tables = Tables::open(config, args.config.json()).await?;
            let compactions = tables.compact((None, None), args.dry_run).await?;
            print_compactions(&compactions, tables.json);
            let options = tables.expire_options(None, None, args.dry_run)?;
            let expiries = tables.expire(&options).await?;
            print_expiries(&expiries, tables.json, args.dry_run);
            let options = tables.orphan_options(None, args.dry_run);
            let orphans = tables.orphans(&options).await?;
            print_orphans(&orphans, tables.json, args.dry_run);
        }
    }
    Ok(())
}

fn print_compactions(done: &[Compaction], as_json: bool) {
    if as_json {
        output::line(&json!({"command": "compact", "tables": done}).to_string());
        return;
    }
    for table in done {
        let rewritten: Vec<_> = table
            .partitions
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Rewritten { .. }))
            .collect();
        output::line(&format!(
            "{}: {} partitions rewritten ({} files -> {}, {} read, {} written), {} compact already",
            table.table,
            rewritten.len(),
            rewritten.iter().map(|p| p.files_before).sum::<usize>(),
            rewritten.iter().map(|p| p.files_after).sum::<usize>(),
            output::bytes(rewritten.iter().map(|p| p.bytes_read).sum()),
            output::bytes(table.bytes_rewritten()),
            table.compact_already,
        ));
        for p in &table.partitions {
            let what = match &p.outcome {
                Outcome::Rewritten {
                    snapshot_id,
                    attempts,
                } => format!(
                    "{} files -> {} (snapshot {snapshot_id}{})",
                    p.files_before,
                    p.files_after,
                    if *attempts > 1 {
                        format!(", {attempts} attempts")
                    } else {
                        String::new()
                    }
                ),
                Outcome::Planned => format!(
                    "{} files ({}) would become about {}",
                    p.files_before,
                    output::bytes(p.bytes_read),
                    p.files_after
                ),
                Outcome::Skipped { reason } => format!("skipped: {reason}"),
            };
            output::line(&format!("  {}: {what}", p.partition));
        }
    }
}

fn print_expiries(done: &[Expiry], as_json: bool, dry_run: bool) {
    if as_json {
        output::line(&json!({"command": "expire", "dry_run": dry_run, "tables": done}).to_string());
        return;
    }
    for table in done {
        if dry_run {
            output::line(&format!(
                "{}: {} snapshots would be expired, {} would remain",
                table.table,
                table.expired.len(),
                table.remaining
            ));
        } else {
            output::line(&format!(
                "{}: {} snapshots expired, {} remain; {} files deleted ({})",
                table.table,
                table.expired.len(),
                table.remaining,
                table.files_deleted,
                output::bytes(table.bytes_deleted)
            ));
        }
    }
}

fn print_orphans(done: &[Orphans], as_json: bool, dry_run: bool) {
    if as_json {
        output::line(
            &json!({"command": "orphans", "dry_run": dry_run, "tables": done}).to_string(),
        );
        return;
    }
    for table in done {
        output::line(&format!(
            "{}: {} orphans {} ({}) of {} files listed; {} unreferenced files younger than the grace period kept",
            table.table,
            table.orphans.len(),
            if dry_run { "found" } else { "deleted" },
            output::bytes(table.bytes),
            table.listed,
            table.young
        ));
        for path in &table.orphans {
            output::line(&format!("  {path}"));
        }
    }
}
