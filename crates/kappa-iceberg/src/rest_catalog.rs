//! A REST catalog whose OAuth2 token is renewed, for pipelines that run longer than a token
//! lives.
//!
//! iceberg-catalog-rest 0.10 exchanges the client credentials for a token once and then uses it
//! forever ("TODO: Support automatic token refreshing" in its client): once the token expires,
//! every request of a `kappa run` would be refused with 401 until the process restarts. This
//! wrapper renews it: the cached token is dropped every [`RENEW_EVERY`] (the next request
//! exchanges the credentials again), and whenever the catalog answers 401. A read that got a
//! 401 is made once more with the new token; a commit is not (the request is consumed, and a
//! refused commit was not applied): its error goes back to the committer, which reloads the
//! table (with a new token) and decides again. A static `token` is never renewed.
//!
//! A table creation reads the table back once the catalog settled ([`CREATION_SETTLES`]): the
//! table a process goes on with is the one the catalog kept, even when several processes created
//! it at the same moment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent,
};
use iceberg_catalog_rest::RestCatalog;

/// How long a token is used before it is renewed, whatever the catalog says of its lifetime
/// (identity providers give 5 minutes to hours; a renewal is one small request).
pub(crate) const RENEW_EVERY: Duration = Duration::from_secs(4 * 60);

/// How long a table creation waits before it reads back the table the catalog kept. SeaweedFS's
/// catalog answers each of several creations of one table at the same moment as a success, each
/// with its own table uuid, and keeps the one written last, a few milliseconds later. A process
/// that went on with the table its creation answered would build its first commits on a table
/// the catalog no longer has (refused as conflicts by `assert-table-uuid`, then reloaded, but its
/// schema evolution would be checked against the wrong table). Paid once per table created.
const CREATION_SETTLES: Duration = Duration::from_millis(500);

/// A [`RestCatalog`] that renews its token (see the module docs).
#[derive(Debug)]
pub(crate) struct RenewingRestCatalog {
    inner: RestCatalog,
    /// Whether the token comes from client credentials (else it is the configured one).
    renews: bool,
    renewed: std::sync::Mutex<Instant>,
}

/// Whether the catalog refused the request's token. iceberg-catalog-rest reports other
/// statuses than the ones each call expects with the status in the error's context.
fn unauthorized(error: &iceberg::Error) -> bool {
    error.to_string().contains("401 Unauthorized")
}

impl RenewingRestCatalog {
    pub(crate) fn new(inner: RestCatalog, renews: bool) -> Self {
        Self {
            inner,
            renews,
            renewed: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Drops the cached token if it is older than [`RENEW_EVERY`].
    async fn renew_if_due(&self) {
        if !self.renews {
            return;
        }
        let due = self
            .renewed
            .lock()
            .map(|at| at.elapsed() >= RENEW_EVERY)
            .unwrap_or(true);
        if due {
            self.renew().await;
        }
    }

    async fn renew(&self) {
        if let Ok(mut at) = self.renewed.lock() {
            *at = Instant::now();
        }
        if let Err(e) = self.inner.invalidate_token().await {
            tracing::debug!(error = %e, "could not drop the REST catalog's token");
        }
    }

    /// After `result`: whether to make the request again with a new token.
    async fn retry<T>(&self, result: &Result<T>) -> bool {
        match result {
            Err(e) if self.renews && unauthorized(e) => {
                tracing::info!("the REST catalog refused its token (401): renewing it");
                self.renew().await;
                true
            }
            _ => false,
        }
    }
}

/// Calls `inner.$method(args)`, renewing the token first when it is due and once more after a
/// 401.
macro_rules! renewing {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {{
        $self.renew_if_due().await;
        let result = $self.inner.$method($($arg),*).await;
        if $self.retry(&result).await {
            $self.inner.$method($($arg),*).await
        } else {
            result
        }
    }};
}

#[async_trait]
impl Catalog for RenewingRestCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        renewing!(self, list_namespaces(parent))
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        renewing!(self, create_namespace(namespace, properties.clone()))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        renewing!(self, get_namespace(namespace))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        renewing!(self, namespace_exists(namespace))
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        renewing!(self, update_namespace(namespace, properties.clone()))
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        renewing!(self, drop_namespace(namespace))
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        renewing!(self, list_tables(namespace))
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        // `TableCreation` cannot be cloned for a second request; the token is fresh at start,
        // where tables are created, and renewed for the next call after a 401.
        self.renew_if_due().await;
        let name = creation.name.clone();
        let result = self.inner.create_table(namespace, creation).await;
        self.retry(&result).await;
        let created = match result {
            Ok(created) => created,
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => {
                // Another process's creation may not be the one the catalog keeps either.
                tokio::time::sleep(CREATION_SETTLES).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tokio::time::sleep(CREATION_SETTLES).await;
        let ident = TableIdent::new(namespace.clone(), name);
        let table = renewing!(self, load_table(&ident))?;
        if table.metadata().uuid() != created.metadata().uuid() {
            tracing::info!(
                table = %ident,
                "another process created the table at the same moment; using the one the catalog kept"
            );
        }
        Ok(table)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        renewing!(self, load_table(table))
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        renewing!(self, drop_table(table))
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        renewing!(self, purge_table(table))
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        renewing!(self, table_exists(table))
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        renewing!(self, rename_table(src, dest))
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        renewing!(self, register_table(table, metadata_location.clone()))
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        // Not made again: the request is consumed, and a refused commit was not applied. The
        // committer reloads the table (with a new token) and decides again.
        self.renew_if_due().await;
        let result = self.inner.update_table(commit).await;
        self.retry(&result).await;
        result
    }
}
