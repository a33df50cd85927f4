//! Connecting to the catalog.
//!
//! - The SQL catalog (`iceberg_tables`, shared with PyIceberg's `SqlCatalog`) on SQLite or
//!   PostgreSQL, over a `file://` or `s3://` warehouse.
//! - An Iceberg REST catalog (Polaris, Nessie, Unity, Lakekeeper, Gravitino, SeaweedFS, ...)
//!   through iceberg-catalog-rest: OAuth2 client credentials or a bearer token, the catalog's
//!   `/v1/config` defaults and overrides, `header.*` properties sent with every request.
//!
//! Data and metadata files go through iceberg-rust's OpenDAL storage (S3 settings as `s3.*`
//! properties). On a REST catalog the table config the catalog sends (vended credentials, its
//! endpoint) applies unless these properties set the same keys: iceberg-catalog-rest lets the
//! client's properties win.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_rest::{
    REST_CATALOG_PROP_URI, REST_CATALOG_PROP_WAREHOUSE, RestCatalogBuilder,
};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalogBuilder,
};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::error::IcebergError;

/// Which kind of catalog [`CatalogConfig::uri`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatalogType {
    /// A SQL catalog: SQLite or PostgreSQL.
    #[default]
    Sql,
    /// An Iceberg REST catalog.
    Rest,
    /// AWS Glue (the `aws` feature).
    Glue,
    /// AWS S3 Tables (the `aws` feature).
    S3Tables,
}

impl CatalogType {
    /// Whether this build can connect to such a catalog (Glue and S3 Tables need the `aws`
    /// feature).
    pub fn built_in(self) -> bool {
        match self {
            CatalogType::Sql | CatalogType::Rest => true,
            CatalogType::Glue | CatalogType::S3Tables => cfg!(feature = "aws"),
        }
    }

    /// The config's name of it (`[catalog] type`).
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogType::Sql => "sql",
            CatalogType::Rest => "rest",
            CatalogType::Glue => "glue",
            CatalogType::S3Tables => "s3tables",
        }
    }
}

/// How long one request to a REST catalog may take before its outcome counts as unknown (a
/// commit's is then settled by reloading the table).
pub const REST_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long connecting to a REST catalog may take.
pub const REST_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the catalog and the warehouse are.
#[derive(Clone)]
pub struct CatalogConfig {
    /// Catalog name (PyIceberg's `SqlCatalog` name must match).
    pub name: String,
    /// SQL or REST.
    pub kind: CatalogType,
    /// SQL: `sqlite:///path/catalog.db` or `postgres://user:pass@host:5432/db`; REST: the
    /// catalog's `http(s)://` base URL.
    pub uri: String,
    /// SQL: `file:///path` or `s3://bucket/prefix`. REST: the warehouse as the catalog names it
    /// (a location or a name; empty: none sent).
    pub warehouse: String,
    /// Storage properties (`s3.endpoint`, `s3.access-key-id`, ...) and, for REST, the client's
    /// (`credential`, `token`, `scope`, `oauth2-server-uri`, `prefix`, `header.*`, ...).
    pub properties: HashMap<String, String>,
}

impl std::fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: HashMap<&String, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k, if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("CatalogConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("uri", &redact_uri(&self.uri))
            .field("warehouse", &self.warehouse)
            .field("properties", &props)
            .finish()
    }
}

fn is_secret(key: &str) -> bool {
    kappa_core::redact::is_secret_name(key)
}

/// The URI with every credential (user-info password, secret query parameters) replaced by
/// `***`, for logs and errors ([`kappa_core::redact`]).
pub fn redact_uri(uri: &str) -> String {
    kappa_core::redact::redact(uri)
}

/// Builds, on a thread of its own, the HTTP client that every file operation of a table (local
/// disk included) takes a handle of: its first use loads the system's CA certificates, ~4 ms
/// that the first table read or creation otherwise waits for on the main thread. Called once at
/// start; nothing waits for the thread (if it has not finished, the first use waits for it).
pub fn prepare_file_io() {
    let _ = std::thread::Builder::new()
        .name("kappa-file-io".into())
        .spawn(|| std::sync::LazyLock::force(&opendal::raw::GLOBAL_REQWEST_CLIENT));
}

/// Connects to the SQL catalog, creating a SQLite file (and its directory) if needed.
pub async fn connect(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    connect_as(config, false).await
}

/// Connects to an existing SQL catalog for reading (`kappa status`, `kappa quality report`):
/// creates no SQLite file, directory or warehouse directory, and opens SQLite read-only
/// (`mode=ro`), so a misspelt path is an error instead of a new, empty catalog.
pub async fn connect_read_only(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    connect_as(config, true).await
}

async fn connect_as(
    config: &CatalogConfig,
    read_only: bool,
) -> Result<Arc<dyn Catalog>, IcebergError> {
    match config.kind {
        CatalogType::Sql => {}
        CatalogType::Rest => return connect_rest(config).await,
        CatalogType::Glue | CatalogType::S3Tables => return connect_aws(config).await,
    }
    let err = |operation: &str, source: iceberg::Error| IcebergError::Catalog {
        uri: redact_uri(&config.uri),
        operation: operation.to_string(),
        source: Box::new(source),
    };
    let (uri, bind_style) = if let Some(path) = config.uri.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if read_only {
            if !std::path::Path::new(file).is_file() {
                return Err(err(
                    "opening for reading",
                    iceberg::Error::new(
                        iceberg::ErrorKind::DataInvalid,
                        format!(
                            "the SQLite catalog {file} does not exist; check [catalog] uri (this command never creates one)"
                        ),
                    ),
                ));
            }
        } else if let Some(parent) = std::path::Path::new(file).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                err(
                    "creating the SQLite catalog's directory",
                    iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()),
                )
            })?;
        }
        let uri = if read_only {
            let without_mode = config
                .uri
                .split_once('?')
                .map(|(base, query)| {
                    let kept: Vec<&str> = query
                        .split('&')
                        .filter(|p| !p.starts_with("mode="))
                        .collect();
                    (base, kept.join("&"))
                })
                .unwrap_or((config.uri.as_str(), String::new()));
            match without_mode {
                (base, query) if query.is_empty() => format!("{base}?mode=ro"),
                (base, query) => format!("{base}?{query}&mode=ro"),
            }
        } else if config.uri.contains("mode=") {
            config.uri.clone()
        } else if config.uri.contains('?') {
            format!("{}&mode=rwc", config.uri)
        } else {
            format!("{}?mode=rwc", config.uri)
        };
        (uri, SqlBindStyle::QMark)
    } else if config.uri.starts_with("postgres://") || config.uri.starts_with("postgresql://") {
        (config.uri.clone(), SqlBindStyle::DollarNumeric)
    } else {
        return Err(err(
            "connecting",
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "[catalog] uri: expected sqlite:///path/to/catalog.db or postgres://user:pass@host:5432/db",
            ),
        ));
    };
    if !read_only && let Some(path) = config.warehouse.strip_prefix("file://") {
        std::fs::create_dir_all(path).map_err(|e| {
            err(
                "creating the warehouse directory",
                iceberg::Error::new(iceberg::ErrorKind::Unexpected, format!("{path}: {e}")),
            )
        })?;
    }
    let mut props = config.properties.clone();
    props.insert(SQL_CATALOG_PROP_URI.to_string(), uri);
    props.insert(
        SQL_CATALOG_PROP_WAREHOUSE.to_string(),
        config.warehouse.clone(),
    );
    props.insert(
        SQL_CATALOG_PROP_BIND_STYLE.to_string(),
        bind_style.to_string(),
    );
    // A read-only connection cannot let the catalog library create its tables: a SQLite file
    // that has none yet (a pipeline is starting, or the path is wrong) is said so, not reported
    // as a failed write.
    if read_only
        && bind_style == SqlBindStyle::QMark
        && let Some(uri) = props.get(SQL_CATALOG_PROP_URI)
        && !sqlite_has_catalog_tables(uri).await.unwrap_or(true)
    {
        return Err(err(
            "opening for reading",
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "the SQLite file holds no Iceberg catalog yet (its iceberg_tables or \
                 iceberg_namespace_properties table does not exist): nothing has been committed \
                 to it; check [catalog] uri",
            ),
        ));
    }
    let catalog = SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
        .load(&config.name, props)
        .await
        .map_err(|e| err("connecting", e))?;
    Ok(Arc::new(catalog))
}

/// The HTTP client every REST catalog request goes through: bounded connect and request times,
/// so a catalog that stops answering turns into an error (an unknown outcome for a commit),
/// never a hang.
pub(crate) fn rest_http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(REST_CONNECT_TIMEOUT)
        .timeout(REST_REQUEST_TIMEOUT)
        .build()
}

/// Connects to a REST catalog. The client is lazy: the catalog's `/v1/config` is read, and a
/// token fetched, on the first request, so an unreachable catalog or a refused credential is
/// reported by the first operation (which names itself).
async fn connect_rest(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    let err = |operation: &str, source: iceberg::Error| IcebergError::Catalog {
        uri: redact_uri(&config.uri),
        operation: operation.to_string(),
        source: Box::new(source),
    };
    let mut props = config.properties.clone();
    props.insert(
        REST_CATALOG_PROP_URI.to_string(),
        config.uri.trim_end_matches('/').to_string(),
    );
    if !config.warehouse.is_empty() {
        props.insert(
            REST_CATALOG_PROP_WAREHOUSE.to_string(),
            config.warehouse.clone(),
        );
    }
    let client = rest_http_client().map_err(|e| {
        err(
            "building its HTTP client",
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()),
        )
    })?;
    let renews = props.contains_key("credential") && !props.contains_key("token");
    let catalog = RestCatalogBuilder::default()
        .with_client(client)
        .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
        .load(&config.name, props)
        .await
        .map_err(|e| err("connecting", e))?;
    Ok(Arc::new(crate::rest_catalog::RenewingRestCatalog::new(
        catalog, renews,
    )))
}

/// Connects to AWS Glue or S3 Tables through the AWS SDK (credentials: the `[catalog]` keys if
/// set, else the AWS default chain), in a build with the `aws` feature.
#[cfg(feature = "aws")]
async fn connect_aws(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    use iceberg_catalog_glue::{
        GLUE_CATALOG_PROP_URI, GLUE_CATALOG_PROP_WAREHOUSE, GlueCatalogBuilder,
    };
    use iceberg_catalog_s3tables::{
        S3TABLES_CATALOG_PROP_ENDPOINT_URL, S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN,
        S3TablesCatalogBuilder,
    };
    let err = |source: iceberg::Error| IcebergError::Catalog {
        uri: format!("{} {}", config.kind.as_str(), redact_uri(&config.warehouse)),
        operation: "connecting".into(),
        source: Box::new(source),
    };
    let mut props = config.properties.clone();
    // The SDK's own names for what the `[catalog]` S3 keys say.
    for (from, to) in [
        ("s3.access-key-id", "aws_access_key_id"),
        ("s3.secret-access-key", "aws_secret_access_key"),
        ("s3.session-token", "aws_session_token"),
        ("s3.region", "region_name"),
    ] {
        if let Some(value) = config.properties.get(from) {
            props.insert(to.to_string(), value.clone());
        }
    }
    let factory = Arc::new(OpenDalResolvingStorageFactory::new());
    if config.kind == CatalogType::Glue {
        props.insert(
            GLUE_CATALOG_PROP_WAREHOUSE.to_string(),
            config.warehouse.clone(),
        );
        if !config.uri.is_empty() {
            props.insert(GLUE_CATALOG_PROP_URI.to_string(), config.uri.clone());
        }
        let catalog = GlueCatalogBuilder::default()
            .with_storage_factory(factory)
            .load(&config.name, props)
            .await
            .map_err(err)?;
        return Ok(Arc::new(catalog));
    }
    props.insert(
        S3TABLES_CATALOG_PROP_TABLE_BUCKET_ARN.to_string(),
        config.warehouse.clone(),
    );
    if !config.uri.is_empty() {
        props.insert(
            S3TABLES_CATALOG_PROP_ENDPOINT_URL.to_string(),
            config.uri.clone(),
        );
    }
    let catalog = S3TablesCatalogBuilder::default()
        .with_storage_factory(factory)
        .load(&config.name, props)
        .await
        .map_err(err)?;
    Ok(Arc::new(catalog))
}

/// Without the `aws` feature: an error that says how to get a build that has them.
#[cfg(not(feature = "aws"))]
async fn connect_aws(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    Err(IcebergError::Catalog {
        uri: config.kind.as_str().to_string(),
        operation: "connecting".into(),
        source: Box::new(iceberg::Error::new(
            iceberg::ErrorKind::FeatureUnsupported,
            format!(
                "[catalog] type = \"{}\" needs a kappa built with the `aws` feature (the \
                 release build and the container image have it: cargo build --release \
                 --features aws)",
                config.kind.as_str()
            ),
        )),
    })
}

/// Whether the SQLite database at `uri` has both of the catalog library's tables (read-only):
/// it creates `iceberg_tables`, then `iceberg_namespace_properties`, and a reader that connects
/// between the two would be asked to create the second on its read-only connection.
async fn sqlite_has_catalog_tables(uri: &str) -> Result<bool, sqlx::Error> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::from_str(uri)?
        .read_only(true)
        .connect()
        .await?;
    let (found,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
         AND name IN ('iceberg_tables', 'iceberg_namespace_properties')",
    )
    .fetch_one(&mut connection)
    .await?;
    Ok(found == 2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use super::*;

    fn config(uri: &str) -> CatalogConfig {
        CatalogConfig {
            name: "kappa".into(),
            kind: CatalogType::Sql,
            uri: uri.into(),
            warehouse: "memory://w".into(),
            properties: HashMap::from([
                ("s3.secret-access-key".to_string(), "s3cr3t".to_string()),
                ("s3.access-key-id".to_string(), "AKIA".to_string()),
            ]),
        }
    }

    /// A catalog that cannot be reached, with the password in the user info or in the query:
    /// neither the error (the driver's included) nor the config's `Debug` shows it. (The
    /// PostgreSQL case waits for sqlx's 30 s acquire timeout.)
    #[tokio::test]
    async fn connection_errors_and_debug_never_show_a_credential() {
        for (uri, read_only) in [
            (
                "postgres://kappa@127.0.0.1:1/lake?sslmode=disable&PassWord=s3cr3t",
                false,
            ),
            ("mysql://kappa:s3cr3t@db/lake?token=s3cr3t", false),
            ("sqlite:///nonexistent/catalog.db?password=s3cr3t", true),
        ] {
            let config = config(uri);
            let connected = if read_only {
                connect_read_only(&config).await
            } else {
                connect(&config).await
            };
            let err = match connected {
                Ok(_) => panic!("{uri}: connected to nothing"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with("catalog "), "{err}");
            assert!(!err.contains("s3cr3t"), "{uri}: {err}");
            let debug = format!("{config:?}");
            assert!(!debug.contains("s3cr3t"), "{debug}");
            assert!(debug.contains("\"kappa\""), "{debug}");
        }
    }

    /// A SQLite file without the catalog's tables (a pipeline is starting and has not created
    /// them yet): a read-only open says so and leaves the file as it was.
    #[tokio::test]
    async fn a_read_only_open_of_a_file_without_a_catalog_says_so_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("catalog.db");
        std::fs::write(&file, b"").unwrap_or_else(|e| panic!("{e}"));
        let uri = format!("sqlite://{}", file.display());
        let Err(error) = connect_read_only(&config(&uri)).await else {
            panic!("a file without a catalog opened");
        };
        let text = error.to_string();
        assert!(text.contains("holds no Iceberg catalog yet"), "{text}");
        let len = std::fs::metadata(&file)
            .map(|m| m.len())
            .unwrap_or(u64::MAX);
        assert_eq!(len, 0, "the file was written");
    }

    /// A reader that connects while a pipeline is creating the catalog (its first table made, the
    /// second not yet) is told there is no catalog yet, not refused a write on its read-only
    /// connection.
    #[tokio::test]
    async fn a_read_only_open_of_a_half_created_catalog_says_so() {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let uri = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let mut writer = sqlx::sqlite::SqliteConnectOptions::from_str(&uri)
            .unwrap_or_else(|e| panic!("{e}"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL)")
            .execute(&mut writer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let Err(error) = connect_read_only(&config(&uri)).await else {
            panic!("a half-created catalog opened");
        };
        let text = error.to_string();
        assert!(text.contains("holds no Iceberg catalog yet"), "{text}");
        assert!(!text.contains("readonly"), "{text}");
    }
}
