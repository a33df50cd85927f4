//! Helpers for the end-to-end tests: write an archive with kappa-synth, run the `kappa` binary
//! built by the same `cargo test`, and read tables back with real query engines (PyIceberg and
//! DuckDB from the venv `dev/services.sh` installs). Endpoints of services come from the
//! environment `dev/services.sh env` prints (`KAPPA_PYTHON`, `KAPPA_S3_ENDPOINT`, `KAPPA_PG_URI`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod endpoint;
pub mod kafka;
pub mod payments;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use kappa_synth::{ArchiveOptions, Expected, History, HistorySpec, write_archive};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde_json::Value;

/// The `kappa` binary next to the test executable (`target/<profile>/kappa`).
pub fn kappa_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("KAPPA_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("kappa");
    assert!(
        bin.exists(),
        "{} not built; run `cargo build -p kappa` (make test does)",
        bin.display()
    );
    bin
}

/// The Python with PyIceberg and DuckDB.
pub fn python() -> PathBuf {
    let path = std::env::var("KAPPA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kappa-infra/venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} missing: run `dev/services.sh install` (make test does)",
        path.display()
    );
    path
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A required service endpoint from the environment.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the services with `make services-up` and export `dev/services.sh env` (make test does)")
    })
}

/// Where one test's archive, catalog and warehouse live.
pub struct Scene {
    pub dir: tempfile::TempDir,
    pub archive_url: String,
    /// `sql` or `rest`.
    pub catalog_type: &'static str,
    pub catalog_uri: String,
    pub warehouse: String,
    pub namespace: String,
    pub extra: String,
    /// Extra keys for `[source.archive]` and `[catalog]` (S3 endpoint and credentials).
    pub archive_extra: String,
    pub catalog_extra: String,
}

impl Scene {
    /// Local archive (file://), SQLite catalog, local warehouse.
    pub fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("archive")).unwrap();
        Scene {
            archive_url: format!("file://{root}/archive"),
            catalog_type: "sql",
            catalog_uri: format!("sqlite:///{root}/catalog.db"),
            warehouse: format!("file://{root}/warehouse"),
            namespace: "kappa".into(),
            extra: String::new(),
            archive_extra: String::new(),
            catalog_extra: String::new(),
            dir,
        }
    }

    /// Archive and warehouse on SeaweedFS S3, catalog on PostgreSQL (`make services-up`);
    /// `name` makes the prefixes and the namespace unique to the test.
    pub fn s3_postgres(name: &str) -> Self {
        let endpoint = service("KAPPA_S3_ENDPOINT");
        let unique = format!("{name}_{}", std::process::id());
        let s3 = format!(
            "endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"testtest\"\nallow_http = true\n"
        );
        Scene {
            dir: tempfile::tempdir().unwrap(),
            archive_url: format!("s3://events/{unique}"),
            catalog_type: "sql",
            catalog_uri: service("KAPPA_PG_URI"),
            warehouse: format!("s3://lake/{unique}"),
            namespace: format!("t_{unique}"),
            extra: String::new(),
            archive_extra: s3.clone(),
            catalog_extra: s3,
        }
    }

    /// Local archive (file://), the Iceberg REST catalog `dev/services.sh` runs (SeaweedFS, OAuth2
    /// client credentials) with its warehouse on SeaweedFS S3; `name` makes the namespace unique
    /// to the test.
    pub fn rest(name: &str) -> Self {
        let endpoint = service("KAPPA_S3_ENDPOINT");
        let mut scene = Scene::local();
        scene.catalog_type = "rest";
        scene.catalog_uri = service("KAPPA_REST_URI");
        scene.warehouse = "s3://iceberg".into();
        scene.namespace = format!("t_{name}_{}_{}", std::process::id(), unique_suffix());
        scene.catalog_extra = format!(
            "credential = \"test:testtest\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"testtest\"\nallow_http = true\n"
        );
        scene
    }

    /// The scene with the same archive and table names on the given catalog: `sql` (this
    /// scene) or `rest` ([`Scene::rest`]).
    pub fn on(catalog: Catalog, name: &str) -> Self {
        match catalog {
            Catalog::Sql => Scene::local(),
            Catalog::Rest => Scene::rest(name),
        }
    }

    /// Files of `table` under its `dir` (`data`, `metadata`) whose name ends with `suffix`: in
    /// the local warehouse, or listed from the REST catalog's S3 warehouse
    /// (at `<table>` or `<table>-<uuid>`, see `rest_table_objects`). How tests observe progress
    /// without asking Kappa.
    pub fn count_table_files(&self, table: &str, dir: &str, suffix: &str) -> usize {
        if self.catalog_type != "rest" {
            let root = self
                .path("warehouse")
                .join(&self.namespace)
                .join(table)
                .join(dir);
            return count_files(&root, suffix);
        }
        self.rest_table_objects(table)
            .iter()
            .filter(|(path, _)| path.split('/').nth(2) == Some(dir) && path.ends_with(suffix))
            .count()
    }

    /// Every object of `table` in the REST catalog's S3 warehouse, as `<namespace>/<dir>/...`
    /// with its size. A table lives at `s3://iceberg/<namespace>/<table>`, or at
    /// `<table>-<uuid>` when SeaweedFS's catalog created it where an earlier creation left
    /// files: a run killed while the table was being created leaves the first metadata file
    /// (the catalog wrote it, then dropped the request with the client), and the table the next
    /// run creates goes to a fresh location. Both are the table's. A failed listing is retried
    /// and then fails the test: read as "no files" it would hide progress a crash test waits
    /// for (a missing prefix lists as empty, not as an error).
    fn rest_table_objects(&self, table: &str) -> Vec<(String, u64)> {
        use futures::TryStreamExt;
        let store = s3_store("iceberg");
        let prefix = StorePath::from(self.namespace.as_str());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let objects = runtime.block_on(async {
            let mut attempt = 0;
            loop {
                match store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
                    Ok(objects) => break objects,
                    Err(_) if attempt < 5 => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    }
                    Err(e) => panic!("listing s3://iceberg/{prefix}: {e}"),
                }
            }
        });
        let of_table = |dir: &str| {
            dir == table
                || dir
                    .strip_prefix(table)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|id| {
                        id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                    })
        };
        objects
            .into_iter()
            .map(|o| (o.location.to_string(), o.size))
            .filter(|(path, _)| path.split('/').nth(1).is_some_and(of_table))
            .collect()
    }

    /// Every file under `table`'s location, with its size, as a path the table's metadata would
    /// use without a `file://` scheme: listed from the local warehouse or from the REST
    /// catalog's S3 warehouse, never asked of Kappa.
    pub fn list_table_files(&self, table: &str) -> Vec<(String, u64)> {
        if self.catalog_type != "rest" {
            fn walk(dir: &Path, out: &mut Vec<(String, u64)>) {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    return;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        let size = std::fs::metadata(&path).unwrap().len();
                        out.push((path.display().to_string(), size));
                    }
                }
            }
            let mut out = Vec::new();
            walk(
                &self.path("warehouse").join(&self.namespace).join(table),
                &mut out,
            );
            out.sort();
            return out;
        }
        let mut out: Vec<(String, u64)> = self
            .rest_table_objects(table)
            .into_iter()
            .map(|(path, size)| (format!("s3://iceberg/{path}"), size))
            .collect();
        out.sort();
        out
    }

    /// Writes `spec` as an archive to the scene's S3 archive URL.
    pub fn write_s3_archive(&self, spec: HistorySpec, options: ArchiveOptions) -> Expected {
        let rest = self.archive_url.strip_prefix("s3://").unwrap();
        let (bucket, prefix) = rest.split_once('/').unwrap();
        write(
            Arc::new(s3_store(bucket)),
            StorePath::from(prefix),
            spec,
            options,
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `spec` as an archive into the local archive directory.
    pub fn write_local_archive(&self, spec: HistorySpec, options: ArchiveOptions) -> Expected {
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(self.path("archive")).unwrap();
        write(Arc::new(store), StorePath::default(), spec, options)
    }

    /// The pipeline config for this scene.
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            r#"
[pipeline]
name = "orders"
logic = "orders"

[source.archive]
url = "{archive}"
topic = "orders"
{archive_extra}
[schema]
dir = "{contracts}"
subject = "orders-value"

[catalog]
type = "{catalog_type}"
name = "kappa"
uri = "{uri}"
warehouse = "{warehouse}"
{catalog_extra}
[table]
namespace = "{ns}"
name = "orders"
partition_by = ["day(event_time)"]

[commit]
rows = 5000

[metrics]
listen = "127.0.0.1:0"             # a free port: tests run many pipelines at once
{scene_extra}
{extra}
"#,
            archive = self.archive_url,
            catalog_type = self.catalog_type,
            contracts = contracts_dir().display(),
            uri = self.catalog_uri,
            warehouse = self.warehouse,
            ns = self.namespace,
            scene_extra = self.extra,
            archive_extra = self.archive_extra,
            catalog_extra = self.catalog_extra,
        );
        let path = self.path("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Reads `table` with `engine` (pyiceberg | duckdb).
    pub fn read(&self, engine: &str, table: &str) -> Value {
        self.python_tool("read_table.py", engine, table, &[])
    }

    /// Reads `table` with PyIceberg, with Kappa's metadata: `summaries` (the `kappa.*` counters
    /// summed over main's history) and `state` (the `kappa.state.*` properties).
    pub fn read_kappa_metadata(&self, table: &str) -> Value {
        self.python_tool("read_table.py", "pyiceberg", table, &["--kappa-metadata"])
    }

    /// Runs `integration-tests/python/<script> FIRST CATALOG_URI WAREHOUSE NS.TABLE FLAGS...`
    /// against this scene's catalog (with the S3 endpoint when the warehouse is on S3); returns
    /// the JSON it printed last.
    pub fn python_tool(&self, script: &str, first: &str, table: &str, flags: &[&str]) -> Value {
        let out = self
            .python_command(script, first, table, flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} {first} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(last_line(&out.stdout)).unwrap()
    }

    /// The command [`Scene::python_tool`] runs (to start it in the background).
    pub fn python_command(
        &self,
        script: &str,
        first: &str,
        table: &str,
        flags: &[&str],
    ) -> Command {
        let mut cmd = Command::new(python());
        cmd.arg(python_dir().join(script))
            .arg(first)
            .arg(&self.catalog_uri)
            .arg(&self.warehouse)
            .arg(format!("{}.{table}", self.namespace))
            .args(flags);
        if let Ok(endpoint) = std::env::var("KAPPA_S3_ENDPOINT")
            && self.warehouse.starts_with("s3://")
        {
            cmd.arg("--s3-endpoint").arg(endpoint);
        }
        cmd
    }

    /// Another engine (PyIceberg) maintaining `table`: `integration-tests/python/foreign_maintenance.py
    /// ACTION`; returns what it printed.
    pub fn foreign(&self, action: &str, table: &str) -> Value {
        self.python_tool("foreign_maintenance.py", action, table, &[])
    }

    /// [`Scene::foreign`] with the action's arguments (`break-days DAY1 DAY2`).
    pub fn foreign_with(&self, action: &str, table: &str, args: &[&str]) -> Value {
        self.python_tool("foreign_maintenance.py", action, table, args)
    }
}

/// A bucket of the SeaweedFS S3 `dev/services.sh` runs.
pub fn s3_store(bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(service("KAPPA_S3_ENDPOINT"))
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("testtest")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap()
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
pub fn count_files(dir: &Path, suffix: &str) -> usize {
    files_under(dir)
        .iter()
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .count()
}

/// Which catalog a test runs on (the exactly-once tests run on each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    /// SQLite ([`Scene::local`]).
    Sql,
    /// The REST catalog ([`Scene::rest`]).
    Rest,
}

/// A number no other call in this process returns (unique names of tests run in parallel).
pub fn unique_suffix() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn last_line(bytes: &[u8]) -> &[u8] {
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    match trimmed.iter().rposition(|b| *b == b'\n') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Writes an archive to any store (used for S3 too).
pub fn write(
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    spec: HistorySpec,
    options: ArchiveOptions,
) -> Expected {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        write_archive(
            store.as_ref(),
            &prefix,
            History::new(spec).unwrap(),
            &options,
        )
        .await
        .unwrap()
        .expected
    })
}

pub fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")
}

pub fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Runs `kappa args...` to completion.
pub fn kappa(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(kappa_bin());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Starts `kappa args...` in the background, with `envs` set.
pub fn spawn_kappa(args: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(kappa_bin());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// The first line `child` prints on its piped stdout (a `--json` report printed before a linger
/// while the process keeps running); the rest of its stdout is dropped.
pub fn first_stdout_line(child: &mut Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    line
}

/// The environment of a run a test kills on observed progress: every batch read waits 50 ms (a
/// `sleep` action on the `runtime::read` crash point; `make test` builds kappa with them), so
/// a replay of a few dozen batches lasts seconds on any machine. A kill polls the table's
/// files between two looks at the process; unpaced, a replay of 60,000 events could start and
/// finish within one listing on a loaded machine, and the kill would find nothing to interrupt.
pub const PACED: (&str, &str) = ("FAILPOINTS", "runtime::read=sleep(50)");

/// `kappa replay -c config --json ...` that must succeed; returns its JSON summary.
pub fn replay(config: &Path, extra: &[&str]) -> Value {
    let config = config.display().to_string();
    let mut args = vec!["replay", "-c", config.as_str(), "--json"];
    args.extend_from_slice(extra);
    let out = kappa(&args, &[]);
    assert!(
        out.status.success(),
        "kappa replay failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(last_line(&out.stdout)).unwrap()
}

/// Asserts a table read back equals what the generated input says it must hold.
pub fn assert_table_matches(read: &Value, expected: &Expected) {
    let engine = read["engine"].as_str().unwrap_or("?");
    assert_eq!(
        read["rows"].as_u64(),
        Some(expected.rows),
        "{engine}: row count"
    );
    assert_eq!(
        read["distinct_coordinates"].as_u64(),
        Some(expected.rows),
        "{engine}: a (partition, offset) twice"
    );
    assert_eq!(
        read["distinct_event_ids"].as_u64(),
        Some(expected.rows),
        "{engine}: an event_id twice"
    );
    assert_eq!(
        read["checksum"].as_str(),
        Some(expected.checksum.to_string().as_str()),
        "{engine}: content checksum"
    );
}
