//! `kappa demo`: the whole path with no services.

use std::sync::Arc;

use kappa_config::PipelineConfig;
use kappa_schema::{FileRegistry, SchemaRegistry};
use kappa_synth::{
    ArchiveOptions, Codec, Expected, History, HistorySpec, Layout, ORDERS_V1, ORDERS_V2,
    RecordShape, write_archive,
};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use serde_json::json;

use crate::cli::DemoArgs;
use crate::{Failure, exit, output};
use kappa_pipeline::{ReplayReport, ReplayRequest};

const DEMO_CONFIG: &str = include_str!("../../../deploy/examples/orders-demo.toml");

fn failure(message: String) -> Failure {
    Failure {
        message,
        code: exit::FAILURE,
    }
}

/// `kappa demo`.
pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| failure(format!("--dir {}: {e}", args.dir.display())))?;
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| failure(format!("--dir {}: {e}", args.dir.display())))?;
    let archive = dir.join("archive");
    std::fs::create_dir_all(&archive)
        .map_err(|e| failure(format!("{}: {e}", archive.display())))?;

    let mut spec = HistorySpec::new(args.events);
    spec.partitions = args.partitions;
    spec.days = args.days;
    spec.seed = args.seed;
    let options = ArchiveOptions {
        layout: Layout::Hourly,
        shape: RecordShape::RawBytes,
        codec: Codec::Snappy,
        flush_size: 50_000,
    };
    let store = LocalFileSystem::new_with_prefix(&archive)
        .map_err(|e| failure(format!("{}: {e}", archive.display())))?;
    let history = History::new(spec).map_err(|e| failure(e.to_string()))?;
    let generated = write_archive(&store, &StorePath::default(), history, &options)
        .await
        .map_err(|e| failure(e.to_string()))?;

    let text = DEMO_CONFIG.replace("/tmp/kappa-demo", &dir.display().to_string());
    let config = kappa_config::load_str(&text, "demo config", std::env::vars(), &[])
        .map_err(Failure::config)?;
    let registry: Arc<dyn SchemaRegistry> = Arc::new(
        FileRegistry::from_schemas(&config.subject, [ORDERS_V1, ORDERS_V2])
            .map_err(|e| failure(e.to_string()))?,
    );
    let report =
        kappa_pipeline::replay(&config, registry, &ReplayRequest::default(), |_| {}).await?;
    if args.json() {
        output::line(&summary_json(&report, Some(&generated.expected)).to_string());
    } else {
        output::line(&format!(
            "Generated {} messages ({} events) into {} archive files ({}) under {}",
            output::count(generated.expected.messages),
            output::count(args.events),
            generated.files,
            output::bytes(generated.bytes),
            archive.display()
        ));
        print_summary(&config, &report);
        print_expected(&report, &generated.expected);
        print_snippets(&config, &dir, report.table.metadata_location.as_deref());
    }
    let s = &report.summary;
    let matches =
        s.rows_written == 0 || (s.is_complete() && s.undecodable == generated.expected.undecodable);
    if !matches {
        return Err(failure(
            "the replay does not account for every generated record (see above)".into(),
        ));
    }
    Ok(())
}

/// The run summary as JSON (`--json`).
pub fn summary_json(report: &ReplayReport, expected: Option<&Expected>) -> serde_json::Value {
    let mut value = crate::live::summary_json(&report.summary);
    if let Some(map) = value.as_object_mut() {
        for (key, field) in [
            ("peak_rss_bytes", json!(peak_rss_bytes())),
            ("archive_files", json!(report.files)),
            ("archive_bytes", json!(report.bytes)),
            ("partitions", json!(report.partitions)),
            (
                "table",
                json!({
                    "snapshots": report.table.snapshots,
                    "data_files": report.table.data_files,
                    "partitions": report.table.partitions,
                    "rows": report.table.rows,
                    "metadata_location": report.table.metadata_location,
                }),
            ),
        ] {
            map.insert(key.into(), field);
        }
    }
    if let (Some(e), Some(map)) = (expected, value.as_object_mut()) {
        map.insert(
            "expected".into(),
            json!({
                "messages": e.messages,
                "rows": e.rows,
                "duplicates": e.duplicates,
                "undecodable": e.undecodable,
                "rejected": e.rejected,
                "checksum": e.checksum.to_string(),
            }),
        );
    }
    value
}

/// Peak resident memory of this process (Linux `VmHWM`), for the benchmark's memory bound.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Prints what a replay did.
pub fn print_summary(config: &PipelineConfig, report: &ReplayReport) {
    let s = &report.summary;
    let table = format!("{}.{}", config.raw.table.namespace, config.table);
    let c = output::count;
    output::line(&format!(
        "Replayed {} archive files ({}) of {} partitions into {table}",
        report.files,
        output::bytes(report.bytes),
        report.partitions
    ));
    output::line(&format!("  read           {:>12} records", c(s.records_in)));
    output::line(&format!("  written        {:>12} rows", c(s.rows_written)));
    output::line(&format!("  duplicates     {:>12} dropped", c(s.duplicates)));
    output::line(&format!(
        "  dead-lettered  {:>12} ({} undecodable, {} unmappable schema, {} rejected) -> {}.{}",
        c(s.dead_lettered()),
        c(s.undecodable),
        c(s.unmappable),
        c(s.rejected),
        config.raw.table.namespace,
        config.dlq_table
    ));
    output::line(&format!(
        "  completeness   read = written + duplicates + dead-lettered: {} = {} + {} + {} {}",
        c(s.records_in),
        c(s.rows_written),
        c(s.duplicates),
        c(s.dead_lettered()),
        if s.is_complete() {
            "(holds)"
        } else {
            "(DOES NOT HOLD)"
        }
    ));
    if s.warm_up_records > 0 {
        output::line(&format!(
            "  already in the table: re-read {} records to rebuild the dedup window",
            c(s.warm_up_records)
        ));
    }
    output::line(&format!(
        "  commits        {} to the table, {} to the dead-letter table; snapshot {}",
        s.commits,
        s.dlq_commits,
        s.snapshot_id.map_or("none".into(), |id| id.to_string())
    ));
    if s.commits == 0 && s.records_in == 0 {
        output::line(
            "                 nothing new: the table already holds this archive (idempotent replay)",
        );
    }
    output::line(&format!(
        "  files          {} data files, {} written by this run",
        s.data_files,
        output::bytes(s.bytes_written)
    ));
    let t = &report.table;
    let partitioning: Vec<String> = config
        .partition_by
        .iter()
        .map(|p| format!("{:?}({})", p.transform, p.column).to_lowercase())
        .collect();
    output::line(&format!(
        "  table          {} rows in {} partitions ({}), {} data files, {} snapshots",
        c(t.rows),
        t.partitions,
        partitioning.join(", "),
        t.data_files,
        t.snapshots
    ));
    output::line(&format!(
        "  location       {} (catalog {})",
        t.metadata_location.as_deref().unwrap_or("-"),
        kappa_iceberg::catalog::redact_uri(&config.catalog_uri)
    ));
    let positions: Vec<String> = s
        .positions
        .iter()
        .map(|(tp, n)| format!("{tp}: {n}"))
        .collect();
    output::line(&format!("  offsets        next {}", positions.join(", ")));
    output::line(&format!(
        "  throughput     {} events/s ({:.1} s), peak memory {}",
        c(s.events_per_second() as u64),
        s.elapsed.as_secs_f64(),
        peak_rss_bytes().map_or("-".into(), output::bytes)
    ));
}

fn print_expected(report: &ReplayReport, e: &Expected) {
    let s = &report.summary;
    if s.records_in == 0 {
        return;
    }
    let ok = s.rows_written == e.rows
        && s.duplicates == e.duplicates
        && s.undecodable == e.undecodable
        && s.rejected == e.rejected;
    output::line(&format!(
        "  expected       {} rows, {} duplicates, {} undecodable, {} rejected (from the generated input) {}",
        output::count(e.rows),
        output::count(e.duplicates),
        output::count(e.undecodable),
        output::count(e.rejected),
        if ok { "(matches)" } else { "(MISMATCH)" }
    ));
    output::line(&format!(
        "  checksum       {} (order-independent content checksum of the expected rows)",
        e.checksum
    ));
}

fn print_snippets(config: &PipelineConfig, dir: &std::path::Path, metadata: Option<&str>) {
    let table = format!("{}.{}", config.raw.table.namespace, config.table);
    let db = dir.join("catalog.db");
    output::line("");
    output::line("Query it with PyIceberg (pip install 'pyiceberg[sql-sqlite,pyarrow]'):");
    output::line(&format!(
        "  python3 -c \"from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('{}', uri='sqlite:///{}', warehouse='file://{}/warehouse'); print(c.load_table('{table}').scan().to_arrow().group_by('event_type').aggregate([('amount_cents', 'sum')]))\"",
        config.raw.catalog.name,
        db.display(),
        dir.display()
    ));
    output::line(
        "Or with DuckDB (pip install duckdb; the iceberg extension reads the current metadata file):",
    );
    output::line(&format!(
        "  duckdb -c \"INSTALL iceberg; LOAD iceberg; SELECT date_trunc('day', event_time) AS day, count(*) AS orders, sum(amount_cents) / 100 AS amount FROM iceberg_scan('{}') GROUP BY 1 ORDER BY 1\"",
        metadata
            .unwrap_or("<metadata location>")
            .trim_start_matches("file://")
    ));
}
