//! A catalog view that pins the base of a commit.
//!
//! iceberg-rust 0.10's `Transaction::commit` reloads the table before committing and, if `main`
//! moved, silently re-applies the append on the newer snapshot. For Kappa that would commit offsets
//! computed against a stale base. [`PinnedCatalog`] wraps the real catalog for exactly one commit:
//! `load_table` returns the pinned base, so the transaction's append (and its
//! `assert-ref-snapshot-id main == base` requirement) is built on the base Kappa decided on; the
//! catalog's own compare-and-swap then either accepts it or reports a conflict. Errors come back
//! non-retryable so iceberg-rust's retry loop never rebases; the committer reloads and re-decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};

/// How the single `update_table` call ended, when it did not succeed.
#[derive(Debug, Clone)]
pub(crate) enum UpdateFailure {
    /// The catalog rejected the commit: the base moved. Nothing was committed.
    Conflict(String),
    /// The request failed in a way that does not tell whether it was applied.
    Unknown(String),
}

/// The real catalog, seen through a pinned base table.
#[derive(Debug)]
pub(crate) struct PinnedCatalog {
    inner: Arc<dyn Catalog>,
    base: Table,
    failure: Mutex<Option<UpdateFailure>>,
}

impl PinnedCatalog {
    pub(crate) fn new(inner: Arc<dyn Catalog>, base: Table) -> Self {
        Self {
            inner,
            base,
            failure: Mutex::new(None),
        }
    }

    /// What went wrong in `update_table`, if it was reached and failed.
    pub(crate) fn failure(&self) -> Option<UpdateFailure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn record(&self, failure: UpdateFailure) {
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(failure);
        }
    }
}

#[async_trait]
impl Catalog for PinnedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        if table == self.base.identifier() {
            return Ok(self.base.clone());
        }
        self.inner.load_table(table).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        match self.inner.update_table(commit).await {
            Ok(table) => Ok(table),
            Err(error) => {
                let message = error.to_string();
                let failure = if error.kind() == ErrorKind::CatalogCommitConflicts {
                    UpdateFailure::Conflict(message.clone())
                } else {
                    UpdateFailure::Unknown(message.clone())
                };
                self.record(failure);
                // Non-retryable: iceberg-rust must not reload and rebase on its own.
                Err(Error::new(error.kind(), message))
            }
        }
    }
}
