//! Flags and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::Failure;

/// Kappa: Kafka topics and their S3 archives into Apache Iceberg tables, exactly once.
#[derive(Debug, Parser)]
#[command(name = "kappa", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax); also `KAPPA_LOG`.
    #[arg(long, global = true, env = "KAPPA_LOG", default_value = "warn")]
    pub log: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything embedded: synthetic orders -> archive -> replay -> local Iceberg table -> summary.
    Demo(DemoArgs),
    /// Live: consume `[source.kafka]` into the table until SIGTERM/SIGINT, then commit what is
    /// buffered and exit 0.
    Run(ConfigArgs),
    /// Idempotent catch-up from the archive (`[source.archive]`) into the table.
    Replay(ReplayArgs),
    /// Offsets, watermark, freshness and last commits, read from the table.
    Status(ConfigArgs),
    /// Compare the pipeline's table with another table of the same catalog, day by day of the
    /// event time, on the dedup key: rows, keys missing and extra, sums of integer columns.
    /// Exit 0 when every day matches, 5 when one differs (the shadow-write check before a
    /// cut-over to a new logic version).
    Diff(DiffArgs),
    /// Reprocess the archive's history of some days with the pipeline's logic, audit it
    /// against the table, and publish it as one atomic replacement of those day partitions.
    /// Exit 3 when a gate blocks it, 1 when the table changed in a way it cannot fold in; main
    /// is then untouched.
    Backfill(BackfillArgs),
    /// Keep the pipeline's tables healthy while ingestion runs: compact small files, expire
    /// old snapshots, delete orphan files (the main table and its side tables).
    #[command(subcommand)]
    Maintain(MaintainCommand),
    /// Schema registry tools.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Quality verdicts.
    #[command(subcommand)]
    Quality(QualityCommand),
    /// The pipeline's position in its tables: take over a renamed pipeline's, rebuild a lost one.
    #[command(subcommand)]
    State(StateCommand),
    /// The pipeline configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check a configuration before deploying it: every key, the logic, the schemas and the
    /// partition spec against the table's columns; unless --offline, also that the catalog,
    /// the archive's store, the brokers and the schema registry answer. Exit 0 when all hold, 2
    /// for a configuration error (the key named), 1 when a service does not answer.
    Validate(ValidateArgs),
}

/// `kappa config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (embedded defaults, the file, the environment, --set;
    /// the later wins) as TOML, each key with where its value came from; secrets redacted.
    Print(ConfigArgs),
}

/// `kappa validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Check only what the file decides; ask no service (a schema registry's subject is then
    /// not checked).
    #[arg(long)]
    pub offline: bool,
}

/// `kappa maintain ...`.
#[derive(Debug, Subcommand)]
pub enum MaintainCommand {
    /// Rewrite the small files of closed day partitions into files of `[table]
    /// target_file_size`, sorted by event time: one `replace` snapshot per partition, the rows
    /// unchanged. Safe while `kappa run` appends to the same table.
    Compact(CompactArgs),
    /// Remove snapshots older than `--older-than` (each branch keeps its newest
    /// `--retain-last`), then delete the files only they referenced. The pipeline's position
    /// and the summaries of the removed snapshots (verdicts, backfill audits) are kept.
    Expire(ExpireArgs),
    /// Delete the files under the tables' locations that nothing references and that are older
    /// than `--older-than` (crashed flushes' files, stale metadata).
    Orphans(OrphansArgs),
    /// compact, then expire, then orphans, with `[maintenance]`'s thresholds.
    All(MaintainAllArgs),
}

/// `kappa maintain compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First day, YYYY-MM-DD (UTC, of the event time). Default: the oldest.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD. Default: the newest closed day (the day before the one
    /// `[event_time] allowed_lateness` behind the newest event time).
    #[arg(long)]
    pub to: Option<String>,
    /// Print what would be rewritten; write and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa maintain expire`.
#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Snapshots older than this may go (`0s`: any). Default: `[maintenance]
    /// expire_older_than`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Each branch keeps at least its newest this many snapshots. Default: `[maintenance]
    /// retain_last`.
    #[arg(long)]
    pub retain_last: Option<usize>,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa maintain orphans`.
#[derive(Debug, Args)]
pub struct OrphansArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The grace period: unreferenced files younger than this stay. Default: `[maintenance]
    /// orphan_older_than`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa maintain all`.
#[derive(Debug, Args)]
pub struct MaintainAllArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print what each step would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa state ...`. Stop every process of the pipeline before running these.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// The pipeline was renamed: move the old name's position in each of its tables to the
    /// configured `[pipeline] name`, and mark the old name as handed over (it can no longer run).
    Takeover(StateTakeoverArgs),
    /// The position was lost (snapshots expired after another engine rewrote the table):
    /// rebuild it from the Kafka partition and offset of the rows each table holds.
    Recover(StateRecoverArgs),
    /// A live partition is stopped because the topic no longer holds the table's position
    /// (retention passed it, the topic was recreated): move the partition's position where you
    /// decide, recorded in the state. Forward skips the offsets in between (never ingested);
    /// backward needs --rewind. Restart the pipeline afterwards.
    Skip(StateSkipArgs),
}

/// `kappa diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Configuration (its `[table]` is the first table).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The other table: `NAMESPACE.TABLE`, or `TABLE` in the pipeline's namespace.
    #[arg(long)]
    pub other: String,
    /// The key column (default: the logic's dedup key, `event_id` for `orders`).
    #[arg(long)]
    pub key: Option<String>,
}

/// `kappa backfill`: one process (`-c P --from D --to D`), or sharded: `plan`, then one
/// `--shard i/N` per shard (an indexed Job), then `publish`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    /// Sharded backfills: plan, publish.
    #[command(subcommand)]
    pub action: Option<BackfillAction>,
    /// Configuration (its archive is reprocessed into its table).
    #[command(flatten)]
    pub config: Option<ConfigArgs>,
    /// First day to replace, YYYY-MM-DD (UTC, of the event time).
    #[arg(long, required = true)]
    pub from: Option<String>,
    /// Last day to replace, YYYY-MM-DD (UTC, inclusive).
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// Stop after the audit: print it, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stage shard i of n of a planned backfill (`kappa backfill plan`) and commit nothing:
    /// `$(JOB_COMPLETION_INDEX)/n` in an indexed Job. Rerunnable: a shard staged already is
    /// left as it is.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The planned backfill (default: `<from>_<to>`).
    #[arg(long)]
    pub id: Option<String>,
    /// With --shard: wait this long for the plan to be written.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

/// `kappa backfill plan|publish`.
#[derive(Debug, Subcommand)]
pub enum BackfillAction {
    /// Plan a sharded backfill: its base and the partitions of each shard, balanced by archive
    /// bytes, written next to the table's data for the shards and the publish.
    Plan(BackfillPlanArgs),
    /// Audit every shard's staged files together and publish them in one commit on main.
    Publish(BackfillPublishArgs),
}

/// `kappa backfill plan`.
#[derive(Debug, Args)]
pub struct BackfillPlanArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First day, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub to: String,
    /// Number of shards.
    #[arg(long)]
    pub shards: u32,
    /// The backfill's id (default: `<from>_<to>`); a new plan of an id replaces the old one,
    /// whose shards' staged files are then ignored.
    #[arg(long)]
    pub id: Option<String>,
}

/// `kappa backfill publish`.
#[derive(Debug, Args)]
pub struct BackfillPublishArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// First day, YYYY-MM-DD (as planned).
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD (as planned).
    #[arg(long)]
    pub to: String,
    /// The backfill's id (default: `<from>_<to>`).
    #[arg(long)]
    pub id: Option<String>,
    /// Stop after the audit: print it, commit nothing (the staged files stay).
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for the plan and for every shard to stage its files.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

/// `kappa state skip`.
#[derive(Debug, Args)]
pub struct StateSkipArgs {
    /// Configuration (its `[source.kafka]` names the topic).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The Kafka partition.
    #[arg(long)]
    pub partition: i32,
    /// Where the partition goes on: an offset, `earliest` (the oldest the topic holds) or
    /// `latest` (its end), checked against the topic's offsets.
    #[arg(long)]
    pub to: String,
    /// Allow moving the position backwards (a topic recreated under the table: its offsets
    /// are read again and repeat in `_kafka_offset`).
    #[arg(long)]
    pub rewind: bool,
    /// Print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa state takeover`.
#[derive(Debug, Args)]
pub struct StateTakeoverArgs {
    /// Configuration (its `[pipeline] name` is the new name).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The pipeline's old name.
    #[arg(long)]
    pub from: String,
}

/// `kappa state recover`.
#[derive(Debug, Args)]
pub struct StateRecoverArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the position that would be recorded; record nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kappa quality ...`.
#[derive(Debug, Subcommand)]
pub enum QualityCommand {
    /// The verdicts recorded with the pipeline's commits (each snapshot's `kappa.quality`): each
    /// closed day partition's, newest first, then each recent commit's outcome and failed checks
    /// (every check with `--all`).
    Report(QualityReportArgs),
    /// Let a paused live pipeline's blocked flush through: records the override in the main
    /// table (`kappa.quality.override`) for the position the table is at; the pipeline reads
    /// the blocked flush again, commits it with the named checks marked overridden, and goes on.
    Override(QualityOverrideArgs),
}

/// `kappa quality override`.
#[derive(Debug, Args)]
pub struct QualityOverrideArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Why (kept with the override and with each verdict it lets through). Required.
    #[arg(long)]
    pub reason: String,
    /// A check to let through, by verdict name (`null_rate.user_id`); repeatable. Default:
    /// every failed check of the blocked flush.
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Who decides (kept with the override and with each verdict it lets through). Default:
    /// `$USER`; without either (a container has no `$USER`) the override is refused.
    #[arg(long)]
    pub by: Option<String>,
}

/// `kappa quality report`.
#[derive(Debug, Args)]
pub struct QualityReportArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// This day partition's verdict, and the commits made on this day (UTC), `YYYY-MM-DD`.
    #[arg(long)]
    pub date: Option<String>,
    /// At most this many commits.
    #[arg(long, default_value_t = 20)]
    pub last: usize,
    /// Every check of each commit, not only the failed ones.
    #[arg(long)]
    pub all: bool,
}

/// `kappa schema ...`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Is a new schema compatible with a subject's history? Exit 4 and each breaking change
    /// (field path, reason) when not.
    Check(SchemaCheckArgs),
}

/// `kappa schema check`.
#[derive(Debug, Args)]
pub struct SchemaCheckArgs {
    /// File registry: a directory of `<subject>/<version>.avsc`.
    #[arg(long, conflicts_with = "url")]
    pub dir: Option<PathBuf>,
    /// Confluent-compatible schema registry, e.g. `https://user:pass@registry:8081`.
    #[arg(long)]
    pub url: Option<String>,
    /// Subject, e.g. `orders-value`.
    #[arg(long, required_unless_present = "all", requires = "schema")]
    pub subject: Option<String>,
    /// The new schema.
    #[arg(long, requires = "subject")]
    pub schema: Option<PathBuf>,
    /// Check every version of every subject in `--dir` against the versions before it (the CI
    /// step: a new `<subject>/<n>.avsc` in a pull request is checked against 1..n-1).
    #[arg(long, conflicts_with_all = ["subject", "schema"], requires = "dir")]
    pub all: bool,
    /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE.
    /// Default: the subject's level (`<dir>/<subject>/compatibility`), else BACKWARD.
    #[arg(long)]
    pub level: Option<String>,
    /// Output: `text` for people, `json` for scripts (one JSON document on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// A command's output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// JSON for scripts.
    Json,
}

/// Whether `--format json` or `--json` was given.
fn json(format: Format, json: bool) -> bool {
    json || format == Format::Json
}

/// `-c pipeline.toml` and `--set key=value` overrides.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Pipeline configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
    /// Override a key: `--set commit.interval=10s` (after file and env).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Output: `text` for people, `json` for scripts (one JSON document on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl ConfigArgs {
    /// JSON output (`--format json` or `--json`).
    pub fn json(&self) -> bool {
        json(self.format, self.json)
    }

    /// Loads the configuration (exit 2 on error).
    pub fn load(&self) -> Result<kappa_config::PipelineConfig, Failure> {
        kappa_config::load(&self.config, &self.overrides()?).map_err(Failure::config)
    }

    /// The `--set` overrides as (key, value) (exit 2 for one without `=`).
    pub fn overrides(&self) -> Result<Vec<(String, String)>, Failure> {
        let mut overrides = Vec::new();
        for item in &self.overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| Failure {
                message: format!("--set {item:?}: expected KEY=VALUE, e.g. commit.interval=10s"),
                code: crate::exit::USAGE,
            })?;
            overrides.push((key.trim().to_string(), value.trim().to_string()));
        }
        Ok(overrides)
    }
}

/// `kappa replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only archive files whose time directory ends after this (RFC 3339); time-based layout only.
    #[arg(long)]
    pub start: Option<String>,
    /// Only archive files whose time directory starts before this (RFC 3339).
    #[arg(long)]
    pub end: Option<String>,
    /// Only these partitions, e.g. `0,2`.
    #[arg(long, value_delimiter = ',', conflicts_with = "shard")]
    pub partitions: Vec<i32>,
    /// Shard `i/n` (0-based): partitions p with p % n == i, e.g. the pod index of an indexed Job.
    #[arg(long)]
    pub shard: Option<String>,
    /// Let the first commit of a partition the table holds nothing of start past offset 0 (the
    /// archive's oldest objects are gone, or `--start` leaves them out). The offsets before are
    /// recorded as skipped (`kappa.skipped`), not as ingested. Without it such a replay is
    /// refused (exit 2).
    #[arg(long)]
    pub accept_missing_history: bool,
}

/// `kappa demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the archive, the catalog and the warehouse.
    #[arg(long, default_value = "./kappa-demo")]
    pub dir: PathBuf,
    /// Distinct events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Kafka partitions.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Days the history spans.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Random seed (same seed, same history).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output: `text` for people, `json` for scripts (one JSON document on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl DemoArgs {
    /// JSON output (`--format json` or `--json`).
    pub fn json(&self) -> bool {
        json(self.format, self.json)
    }
}

impl SchemaCheckArgs {
    /// JSON output (`--format json` or `--json`).
    pub fn json(&self) -> bool {
        json(self.format, self.json)
    }
}

/// Runs the command.
pub async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Run(args) => crate::live::run(args).await,
        Command::Replay(args) => crate::replay::run(args).await,
        Command::Status(args) => crate::status::run(args).await,
        Command::Diff(args) => crate::diff::run(args).await,
        Command::Backfill(args) => crate::backfill::run(args).await,
        Command::Quality(QualityCommand::Report(args)) => crate::quality::report(args).await,
        Command::Quality(QualityCommand::Override(args)) => {
            crate::quality::override_block(args).await
        }
        Command::Schema(SchemaCommand::Check(args)) => crate::schema::run(args).await,
        Command::Maintain(command) => crate::maintain::run(command).await,
        Command::State(StateCommand::Takeover(args)) => crate::state::takeover(args).await,
        Command::State(StateCommand::Recover(args)) => crate::state::recover(args).await,
        Command::State(StateCommand::Skip(args)) => crate::state::skip(args).await,
        Command::Validate(args) => crate::validate::run(args).await,
        Command::Config(ConfigCommand::Print(args)) => crate::config_print::run(args),
    }
}
