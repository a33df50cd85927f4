//! Connecting to the catalog.
//!
//! The SQL catalog (`iceberg_tables`, shared with PyIceberg's `SqlCatalog`) on SQLite or
//! PostgreSQL; data and metadata go to a `file://` or `s3://` warehouse through iceberg-rust's
//! OpenDAL storage (S3 settings as `s3.*` properties).

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::{Catalog, CatalogBuilder};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalogBuilder,
};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::error::IcebergError;

/// Where the catalog and the warehouse are.
#[derive(Clone)]
pub struct CatalogConfig {
    /// Catalog name (PyIceberg's `SqlCatalog` name must match).
    pub name: String,
    /// `sqlite:///path/catalog.db` or `postgres://user:pass@host:5432/db`.
    pub uri: String,
    /// `file:///path` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// Storage properties (`s3.endpoint`, `s3.access-key-id`, ...).
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
            .field("uri", &redact_uri(&self.uri))
            .field("warehouse", &self.warehouse)
            .field("properties", &props)
            .finish()
    }
}

fn is_secret(key: &str) -> bool {
    key.contains("secret") || key.contains("password") || key.contains("token")
}

/// The URI with any password replaced by `***`, for logs and errors.
pub fn redact_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => uri.to_string(),
    }
}

/// Connects to the SQL catalog, creating a SQLite file (and its directory) if needed.
pub async fn connect(config: &CatalogConfig) -> Result<Arc<dyn Catalog>, IcebergError> {
    let err = |operation: &str, source: iceberg::Error| IcebergError::Catalog {
        uri: redact_uri(&config.uri),
        operation: operation.to_string(),
        source: Box::new(source),
    };
    let (uri, bind_style) = if let Some(path) = config.uri.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(file).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                err(
                    "creating the SQLite catalog's directory",
                    iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string()),
                )
            })?;
        }
        let uri = if config.uri.contains("mode=") {
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
    if let Some(path) = config.warehouse.strip_prefix("file://") {
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
    let catalog = SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
        .load(&config.name, props)
        .await
        .map_err(|e| err("connecting", e))?;
    Ok(Arc::new(catalog))
}
