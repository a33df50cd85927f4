//! The SQL catalog's atomic primitive: compare-and-swap of the table's row in `iceberg_tables`.
//!
//! The same statement iceberg-catalog-sql's `update_table` runs, but on the base Kappa staged
//! against (that library applies a commit to the table as it loads it itself, so only the
//! requirements it is given guard the base). The new metadata file is written first, next to
//! the base's; a swap that loses deletes it (nothing can reference it).

use std::str::FromStr;

use iceberg::TableIdent;
use sqlx::Executor as _;

use super::{Staged, Swap};
use crate::catalog::{CatalogConfig, redact_uri};
use crate::error::IcebergError;

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Commits staged metadata to a SQL catalog (SQLite or PostgreSQL).
pub(crate) struct SqlCommitter {
    pool: Pool,
    catalog: String,
}

impl std::fmt::Debug for SqlCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCommitter")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

const SWAP: &str = "UPDATE iceberg_tables \
     SET metadata_location = ?, previous_metadata_location = ? \
     WHERE catalog_name = ? AND table_name = ? AND table_namespace = ? \
       AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
       AND metadata_location = ?";

/// `?` placeholders numbered `$1..$n` (PostgreSQL).
fn numbered(statement: &str) -> String {
    let mut n = 0;
    statement
        .chars()
        .map(|c| {
            if c == '?' {
                n += 1;
                format!("${n}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl SqlCommitter {
    /// Connects to the catalog database of `config` (the catalog must exist: tables were
    /// created through [`crate::connect`]).
    pub(crate) async fn connect(config: &CatalogConfig) -> Result<Self, IcebergError> {
        let failed = |e: sqlx::Error| IcebergError::Catalog {
            uri: redact_uri(&config.uri),
            operation: "connecting for a snapshot commit".into(),
            source: Box::new(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                kappa_core::redact::redact(&e.to_string()),
            )),
        };
        let pool = if config.uri.starts_with("sqlite://") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&config.uri)
                .map_err(failed)?
                .busy_timeout(std::time::Duration::from_secs(30));
            Pool::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .map_err(failed)?,
            )
        } else {
            Pool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&config.uri)
                    .await
                    .map_err(failed)?,
            )
        };
        Ok(Self {
            pool,
            catalog: config.name.clone(),
        })
    }

    /// Writes `staged`'s metadata file and swaps it in for its base, if the table still points
    /// at the base.
    pub(crate) async fn swap(&self, ident: &TableIdent, staged: &Staged) -> Swap {
        let location = match iceberg::MetadataLocation::from_str(&staged.location) {
            Ok(location) => location,
            Err(e) => return Swap::Refused(format!("naming the new metadata file: {e}")),
        };
        if let Err(e) = staged.metadata.write_to(&staged.file_io, &location).await {
            return Swap::Refused(format!("writing the new metadata file: {e}"));
        }
        let swap = self.compare_and_swap(ident, staged).await;
        if swap == Swap::Conflict
            && let Err(e) = staged.file_io.delete(&staged.location).await
        {
            tracing::debug!(path = %staged.location, error = %e, "could not delete a metadata file that lost its swap");
        }
        swap
    }

    async fn compare_and_swap(&self, ident: &TableIdent, staged: &Staged) -> Swap {
        let namespace = ident.namespace().join(".");
        let args = [
            staged.location.as_str(),
            staged.base_location.as_str(),
            self.catalog.as_str(),
            ident.name(),
            namespace.as_str(),
            staged.base_location.as_str(),
        ];
        let result = match &self.pool {
            Pool::Sqlite(pool) => {
                let mut query = sqlx::query(SWAP);
                for arg in args {
                    query = query.bind(arg);
                }
                pool.execute(query).await.map(|r| r.rows_affected())
            }
            Pool::Postgres(pool) => {
                let statement = numbered(SWAP);
                let mut query = sqlx::query(&statement);
                for arg in args {
                    query = query.bind(arg);
                }
                pool.execute(query).await.map(|r| r.rows_affected())
            }
        };
        match result {
            Ok(1) => Swap::Committed,
            Ok(0) => Swap::Conflict,
            Ok(n) => Swap::Unknown(format!("{n} catalog rows matched one table")),
            Err(e) => Swap::Unknown(kappa_core::redact::redact(&e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        let statement = numbered(SWAP);
        assert!(statement.contains("metadata_location = $1"), "{statement}");
        assert!(statement.ends_with("metadata_location = $6"), "{statement}");
        assert!(!statement.contains('?'));
    }
}
