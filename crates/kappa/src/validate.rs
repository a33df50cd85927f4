//! `kappa validate`: is a configuration ready to run, before it is deployed?
//!
//! Offline, it checks what the file alone decides: the configuration (every key), the logic it
//! names, the schemas (the subject's history in a schema directory, turned into the table's
//! columns), the partition spec and the quality rules' and gates' columns against those columns. Online (the default) it also asks
//! each service the pipeline will use whether it answers: the catalog (and whether the table
//! exists yet), an `s3://` warehouse, the archive's object store, the Kafka brokers (the topic's
//! partitions) and the schema registry. Exit 0 when everything holds, 2 for a configuration error (the key named),
//! 1 when a service does not answer (the service named). Everything printed goes through the
//! CLI's redaction: no password or secret key is shown.

use std::time::Duration;

use kappa_config::{PipelineConfig, SchemaSource};
use kappa_core::ErrorKind;
use object_store::ObjectStore;
use serde_json::json;

use crate::cli::ValidateArgs;
use crate::{Failure, exit, output};

/// How long each service has to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    /// Not checked (offline, or the configuration has no such part).
    Skipped,
    /// A configuration error: exit 2.
    Invalid,
    /// A service did not answer: exit 1.
    Unreachable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Invalid => "invalid",
            Status::Unreachable => "unreachable",
        }
    }
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }

    /// Records a failure with the status its kind means: a user error is the configuration's.
    fn failed(&mut self, name: &'static str, kind: ErrorKind, detail: impl Into<String>) {
        let status = if kind == ErrorKind::User {
            Status::Invalid
        } else {
            Status::Unreachable
        };
        self.add(name, status, detail);
    }

    /// Records whether `asked` answered within [`TIMEOUT`]: its detail, or why not (`what`
    /// names the service in the message of a timeout).
    async fn answer(
        &mut self,
        name: &'static str,
        what: &str,
        asked: impl Future<Output = Result<String, String>>,
    ) {
        match tokio::time::timeout(TIMEOUT, asked).await {
            Ok(Ok(detail)) => self.add(name, Status::Ok, detail),
            Ok(Err(e)) => self.add(name, Status::Unreachable, e),
            Err(_) => self.add(
                name,
                Status::Unreachable,
                format!("{what}: no answer in {}s", TIMEOUT.as_secs()),
            ),
        }
    }

    fn has(&self, status: Status) -> bool {
        self.checks.iter().any(|c| c.status == status)
    }

    fn print(&self, json: bool, file: &str) {
        if json {
            let checks: Vec<_> = self
                .checks
                .iter()
                .map(|c| json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail}))
                .collect();
            let valid = !self.has(Status::Invalid) && !self.has(Status::Unreachable);
            output::line(&json!({"config": file, "valid": valid, "checks": checks}).to_string());
            return;
        }
        for c in &self.checks {
            output::line(&format!(
                "{:<11} {:<12} {}",
                c.status.as_str(),
                c.name,
                c.detail
            ));
        }
    }

    /// Exit 2 when a check found a configuration error, else 1 when a service did not answer.
    fn outcome(&self) -> Result<(), Failure> {
        let named = |status: Status| {
            self.checks
                .iter()
                .filter(|c| c.status == status)
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.has(Status::Invalid) {
            return Err(Failure {
                message: format!("the configuration is not valid: {}", named(Status::Invalid)),
                code: exit::USAGE,
            });
        }
        if self.has(Status::Unreachable) {
            return Err(Failure {
                message: format!("did not answer: {}", named(Status::Unreachable)),
                code: exit::FAILURE,
            });
        }
        Ok(())
    }
}

/// `kappa validate -c FILE [--offline]`.
pub async fn run(args: ValidateArgs) -> Result<(), Failure> {
    let file = args.config.config.display().to_string();
    // A file that does not load is reported as every command reports it (exit 2, key named).
    let config = args.config.load()?;
    let mut report = Report::default();
    report.add(
        "config",
        Status::Ok,
        format!(
            "pipeline {:?}, logic {:?}, table {}.{}",
            config.name, config.logic, config.raw.table.namespace, config.table
        ),
    );
    offline_checks(&config, &args, &mut report).await;
    if args.offline {
        for name in ["catalog", "warehouse", "archive", "brokers"] {
            report.add(name, Status::Skipped, "--offline");
        }
    } else {
        online_checks(&config, &mut report).await;
    }
    report.print(args.config.json(), &file);
    report.outcome()
}

/// The logic, the schemas, the partition spec and the quality checks' columns.
async fn offline_checks(config: &PipelineConfig, args: &ValidateArgs, report: &mut Report) {
    match kappa_pipeline::build_logic(config) {
        Ok(_) => report.add("logic", Status::Ok, format!("{:?} builds", config.logic)),
        Err(e) => report.failed("logic", e.kind, e.message),
    }
    let registry = match kappa_pipeline::schema_registry(config, Some(&args.config.config)) {
        Ok(registry) => registry,
        Err(e) => return report.failed("schema", e.kind, e.message),
    };
    if args.offline && matches!(config.schema, SchemaSource::Url(_)) {
        report.add(
            "schema",
            Status::Skipped,
            "--offline: the schema registry is asked only online",
        );
        report.add("partitions", Status::Skipped, "needs the schemas");
        report.add("quality", Status::Skipped, "needs the schemas");
        return;
    }
    let mapping = match tokio::time::timeout(
        TIMEOUT,
        kappa_pipeline::table_mapping(config, registry.as_ref()),
    )
    .await
    {
        Ok(Ok(mapping)) => mapping,
        Ok(Err(e)) => {
            // The registry's answer decides: a subject it does not have is the config's error.
            report.failed("schema", e.kind, e.message);
            report.add("partitions", Status::Skipped, "needs the schemas");
            return report.add("quality", Status::Skipped, "needs the schemas");
        }
        Err(_) => {
            report.add(
                "schema",
                Status::Unreachable,
                format!("[schema] url: no answer in {}s", TIMEOUT.as_secs()),
            );
            report.add("partitions", Status::Skipped, "needs the schemas");
            return report.add("quality", Status::Skipped, "needs the schemas");
        }
    };
    report.add(
        "schema",
        Status::Ok,
        format!(
            "subject {:?}: {} version(s), {} table columns",
            config.subject,
            mapping.versions(),
            mapping.table_schema().fields().len()
        ),
    );
    let spec = match kappa_pipeline::pipeline_spec(config, mapping) {
        Ok(spec) => spec,
        Err(e) => return report.failed("partitions", e.kind, e.message),
    };
    match kappa_runtime::table_specs(&spec).and_then(|(main, _)| main.check_partitioning()) {
        Ok(()) => report.add(
            "partitions",
            Status::Ok,
            format!(
                "[{}] against the table's columns",
                config.raw.table.partition_by.join(", ")
            ),
        ),
        Err(e) => report.add("partitions", Status::Invalid, e.to_string()),
    }
    let quality = spec.quality.config();
    match spec.quality.check_columns(spec.mapping.value_schema()) {
        Ok(()) if !quality.enabled => {
            report.add("quality", Status::Skipped, "[quality] enabled = false")
        }
        Ok(()) => report.add(
            "quality",
            Status::Ok,
            format!(
                "{} record rule(s) and the gates' columns against the table's columns",
                quality.rules.len()
            ),
        ),
        Err(kappa_quality::QualityError::Column {
            check,
            column,
            message,
            ..
        }) => report.add(
            "quality",
            Status::Invalid,
            format!("[quality] check {check}: column {column:?}: {message}"),
        ),
        Err(e) => report.add("quality", Status::Invalid, format!("[quality] {e}")),
    }
}

/// The catalog, the archive's store and the brokers (the registry was asked for the schemas).
async fn online_checks(config: &PipelineConfig, report: &mut Report) {
    let catalog = kappa_pipeline::catalog_config(config);
    let uri = kappa_iceberg::catalog::redact_uri(&catalog.uri);
    let sqlite_file = catalog
        .uri
        .strip_prefix("sqlite://")
        .map(|path| path.split('?').next().unwrap_or(path).to_string());
    match sqlite_file {
        Some(file) if !std::path::Path::new(&file).is_file() => report.add(
            "catalog",
            Status::Ok,
            format!("{uri}: no SQLite file yet; the first run creates it"),
        ),
        _ => {
            let asked = async {
                catalog_table(config, &catalog)
                    .await
                    .map(|detail| format!("{uri}: {detail}"))
            };
            report.answer("catalog", &uri, asked).await;
        }
    }
    if config.warehouse.starts_with("s3://") || config.warehouse.starts_with("s3a://") {
        let s3 = kappa_pipeline::s3_options(&config.raw.catalog.s3);
        let asked = list_store(&config.warehouse, &s3);
        report.answer("warehouse", &config.warehouse, asked).await;
    } else {
        report.add(
            "warehouse",
            Status::Skipped,
            format!("{}: not an s3:// location", config.warehouse),
        );
    }
    match config.source_archive.as_ref() {
        None => report.add("archive", Status::Skipped, "no [source.archive]"),
        Some(archive) => {
            let s3 = kappa_pipeline::s3_options(&archive.s3);
            let asked = list_store(archive.url.as_ref(), &s3);
            report.answer("archive", archive.url.as_ref(), asked).await;
        }
    }
    match config.source_kafka.as_ref() {
        None => report.add("brokers", Status::Skipped, "no [source.kafka]"),
        Some(kafka) => {
            let options = kappa_source_kafka::KafkaOptions::from_config(kafka);
            let brokers = options.bootstrap_servers.clone();
            let topic = options.topic.clone();
            let asked = tokio::task::spawn_blocking(move || {
                kappa_source_kafka::topic_offsets(&options, TIMEOUT)
            })
            .await;
            match asked {
                Ok(Ok(partitions)) => report.add(
                    "brokers",
                    Status::Ok,
                    format!(
                        "{brokers}: topic {topic:?} has {} partition(s)",
                        partitions.len()
                    ),
                ),
                Ok(Err(e)) => report.add("brokers", Status::Unreachable, format!("{brokers}: {e}")),
                Err(e) => report.add("brokers", Status::Unreachable, format!("{brokers}: {e}")),
            }
        }
    }
}

/// Connects to the catalog for reading and says whether the table exists yet.
async fn catalog_table(
    config: &PipelineConfig,
    catalog: &kappa_iceberg::CatalogConfig,
) -> Result<String, String> {
    let connected = kappa_iceberg::connect_read_only(catalog)
        .await
        .map_err(|e| e.to_string())?;
    let name = format!("{}.{}", config.raw.table.namespace, config.table);
    let ident = iceberg::TableIdent::from_strs(
        config
            .raw
            .table
            .namespace
            .split('.')
            .chain(std::iter::once(config.table.as_str())),
    )
    .map_err(|e| format!("table {name}: {e}"))?;
    match connected.table_exists(&ident).await {
        Ok(true) => Ok(format!("table {name} exists")),
        Ok(false) => Ok(format!(
            "table {name} does not exist yet; the first run creates it"
        )),
        Err(e) => Err(format!("asking for table {name}: {e}")),
    }
}

/// Lists the top of an object store location (the archive, an `s3://` warehouse) to see that
/// the store answers.
async fn list_store(url: &str, s3: &kappa_source_replay::S3Options) -> Result<String, String> {
    let (store, prefix) = kappa_source_replay::open_store(url, s3).map_err(|e| e.to_string())?;
    match store.list_with_delimiter(Some(&prefix)).await {
        Ok(listed) if listed.objects.is_empty() && listed.common_prefixes.is_empty() => {
            Ok(format!("{url}: answers, but holds nothing yet"))
        }
        Ok(listed) => Ok(format!(
            "{url}: lists {} entries at its top",
            listed.objects.len() + listed.common_prefixes.len()
        )),
        Err(e) => Err(format!("{url}: listing: {e}")),
    }
}
