//! Creating the table (and checking an existing one) from the pipeline's table spec.

use std::collections::HashMap;

pub use iceberg::spec::Transform;
use iceberg::spec::{NestedFieldRef, Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use tracing::{info, warn};

use crate::error::IcebergError;

/// One partition field: a transform of a source column.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionField {
    /// Source column name.
    pub column: String,
    /// The Iceberg transform.
    pub transform: Transform,
}

/// What the table must look like.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Namespace, dot-separated for nested namespaces.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// The table schema (field ids assigned).
    pub schema: Schema,
    /// Partitioning.
    pub partition_by: Vec<PartitionField>,
    /// Table properties set at creation.
    pub properties: HashMap<String, String>,
}

impl TableSpec {
    /// `namespace.name`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    fn namespace_ident(&self) -> Result<NamespaceIdent, IcebergError> {
        NamespaceIdent::from_strs(self.namespace.split('.')).map_err(|e| IcebergError::Invalid {
            table: self.full_name(),
            message: format!("namespace {:?} is not valid: {e}", self.namespace),
        })
    }

    /// The table identifier.
    pub fn ident(&self) -> Result<TableIdent, IcebergError> {
        Ok(TableIdent::new(self.namespace_ident()?, self.name.clone()))
    }

    fn partition_spec(&self) -> Result<UnboundPartitionSpec, IcebergError> {
        let mut builder = UnboundPartitionSpec::builder();
        for field in &self.partition_by {
            let source =
                self.schema
                    .field_by_name(&field.column)
                    .ok_or_else(|| IcebergError::Invalid {
                        table: self.full_name(),
                        message: format!(
                            "[table] partition_by: column {:?} is not in the schema",
                            field.column
                        ),
                    })?;
            let name = format!("{}_{}", field.column, transform_suffix(&field.transform));
            builder = builder
                .add_partition_field(source.id, name, field.transform)
                .map_err(|e| IcebergError::Invalid {
                    table: self.full_name(),
                    message: format!("[table] partition_by: {e}"),
                })?;
        }
        Ok(builder.build())
    }
}

fn transform_suffix(transform: &Transform) -> String {
    match transform {
        Transform::Identity => "identity".into(),
        Transform::Year => "year".into(),
        Transform::Month => "month".into(),
        Transform::Day => "day".into(),
        Transform::Hour => "hour".into(),
        Transform::Bucket(n) => format!("bucket_{n}"),
        Transform::Truncate(n) => format!("trunc_{n}"),
        Transform::Void => "void".into(),
        Transform::Unknown => "unknown".into(),
    }
}

/// Loads the table, creating its namespace and the table if missing. Safe when several
/// processes start at once: losing a creation race means loading what the winner created.
pub async fn ensure_table(catalog: &dyn Catalog, spec: &TableSpec) -> Result<Table, IcebergError> {
    let ident = spec.ident()?;
    let namespace = spec.namespace_ident()?;
    let table_err = |operation: &str| {
        let table = spec.full_name();
        let operation = operation.to_string();
        move |source| IcebergError::Table {
            table,
            operation,
            source: Box::new(source),
        }
    };
    if catalog
        .table_exists(&ident)
        .await
        .map_err(table_err("checking whether it exists"))?
    {
        let table = catalog
            .load_table(&ident)
            .await
            .map_err(table_err("loading"))?;
        return evolve(catalog, spec, table).await;
    }
    if !catalog
        .namespace_exists(&namespace)
        .await
        .map_err(table_err("checking the namespace"))?
        && let Err(e) = catalog.create_namespace(&namespace, HashMap::new()).await
    {
        // Another process may have created it meanwhile (the SQL catalog reports that race as
        // a unique-constraint error, not as NamespaceAlreadyExists).
        if !catalog.namespace_exists(&namespace).await.unwrap_or(false) {
            return Err(table_err("creating the namespace")(e));
        }
    }
    let creation = TableCreation::builder()
        .name(spec.name.clone())
        .schema(spec.schema.clone())
        .partition_spec(spec.partition_spec()?)
        .properties(spec.properties.clone())
        .build();
    match catalog.create_table(&namespace, creation).await {
        Ok(table) => {
            info!(table = %spec.full_name(), location = table.metadata().location(), "created table");
            Ok(table)
        }
        Err(e)
            if e.kind() == ErrorKind::TableAlreadyExists
                || catalog.table_exists(&ident).await.unwrap_or(false) =>
        {
            // Lost a creation race: use the winner's table.
            let table = catalog
                .load_table(&ident)
                .await
                .map_err(table_err("loading"))?;
            evolve(catalog, spec, table).await
        }
        Err(e) => Err(table_err("creating")(e)),
    }
}

/// Loads the table if it exists, for a command that only reads: never creates the namespace or
/// the table and never changes the schema, whatever the spec says. `None` when the namespace
/// or the table does not exist.
pub async fn load_existing(
    catalog: &dyn Catalog,
    spec: &TableSpec,
) -> Result<Option<Table>, IcebergError> {
    let ident = spec.ident()?;
    let namespace = spec.namespace_ident()?;
    let table_err = |operation: &'static str| {
        let table = spec.full_name();
        move |source| IcebergError::Table {
            table,
            operation: operation.to_string(),
            source: Box::new(source),
        }
    };
    if !catalog
        .namespace_exists(&namespace)
        .await
        .map_err(table_err("checking the namespace"))?
        || !catalog
            .table_exists(&ident)
            .await
            .map_err(table_err("checking whether it exists"))?
    {
        return Ok(None);
    }
    let table = catalog
        .load_table(&ident)
        .await
        .map_err(table_err("loading"))?;
    Ok(Some(table))
}

/// The error for a table a reading command needs and the catalog does not have.
pub fn missing_table(spec: &TableSpec) -> IcebergError {
    IcebergError::Invalid {
        table: spec.full_name(),
        message: format!(
            "table {} does not exist; check [table] namespace and name (this command only reads and creates nothing)",
            spec.full_name()
        ),
    }
}

/// Brings an existing table up to the spec's schema: columns the table lacks are added as
/// optional columns (a schema-only commit, before any row that needs them is written; old rows
/// read NULL). A column with another type in the table, or a missing required one, is an error.
/// Several processes may evolve at once: a lost race reloads and checks again.
async fn evolve(
    catalog: &dyn Catalog,
    spec: &TableSpec,
    mut table: Table,
) -> Result<Table, IcebergError> {
    for _attempt in 0..5 {
        let missing = missing_columns(spec, &table)?;
        if missing.is_empty() {
            warn_on_other_ids(spec, &table);
            return Ok(table);
        }
        let names: Vec<&str> = missing.iter().map(|f| f.name.as_str()).collect();
        let mut action = Transaction::new(&table).update_schema();
        for field in &missing {
            action = action.add_column(AddColumn::optional(
                field.name.clone(),
                (*field.field_type).clone(),
            ));
        }
        let committed = match action.apply(Transaction::new(&table)) {
            Ok(tx) => tx.commit(catalog).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(evolved) => {
                info!(table = %spec.full_name(), columns = ?names, "added columns to the table");
                table = evolved;
            }
            Err(e) => {
                warn!(table = %spec.full_name(), error = %e, "adding columns failed; reloading to check again");
                table = catalog
                    .load_table(table.identifier())
                    .await
                    .map_err(|source| IcebergError::Table {
                        table: spec.full_name(),
                        operation: "reloading after a schema update".into(),
                        source: Box::new(source),
                    })?;
            }
        }
    }
    Err(IcebergError::Invalid {
        table: spec.full_name(),
        message: "could not add the schema's new columns after 5 attempts".into(),
    })
}

/// Spec columns the table lacks; an error for a type difference or a missing required column.
fn missing_columns(spec: &TableSpec, table: &Table) -> Result<Vec<NestedFieldRef>, IcebergError> {
    let current = table.metadata().current_schema();
    let mut missing = Vec::new();
    for field in spec.schema.as_struct().fields() {
        match current.field_by_name(&field.name) {
            Some(existing) if existing.field_type == field.field_type => {}
            Some(existing) => {
                return Err(IcebergError::Invalid {
                    table: spec.full_name(),
                    message: format!(
                        "column {:?} is {} in the table but {} in the pipeline's schema; Kappa adds columns but does not change their types",
                        field.name, existing.field_type, field.field_type
                    ),
                });
            }
            None if field.required => {
                return Err(IcebergError::Invalid {
                    table: spec.full_name(),
                    message: format!(
                        "required column {:?} of the pipeline's schema is missing from the existing table; only optional columns can be added",
                        field.name
                    ),
                });
            }
            None => missing.push(field.clone()),
        }
    }
    Ok(missing)
}

/// Field ids come from the subject's history; a table created otherwise (by hand, by another
/// tool) may number its columns differently. Rows are matched by name, so this is only a warning.
fn warn_on_other_ids(spec: &TableSpec, table: &Table) {
    let current = table.metadata().current_schema();
    for field in spec.schema.as_struct().fields() {
        if let Some(existing) = current.field_by_name(&field.name)
            && existing.id != field.id
        {
            warn!(
                table = %spec.full_name(),
                column = %field.name,
                table_id = existing.id,
                schema_id = field.id,
                "column has another field id in the table than the subject's history gives"
            );
        }
    }
}

/// Sets one property of `table` in the catalog (a metadata-only commit: no snapshot).
pub async fn set_property(
    catalog: &dyn Catalog,
    table: &Table,
    key: &str,
    value: &str,
) -> Result<Table, IcebergError> {
    let name = table.identifier().to_string();
    let tx = Transaction::new(table);
    let tx = tx
        .update_table_properties()
        .set(key.to_string(), value.to_string())
        .apply(tx)
        .map_err(|source| IcebergError::Table {
            table: name.clone(),
            operation: format!("setting {key}"),
            source: Box::new(source),
        })?;
    tx.commit(catalog)
        .await
        .map_err(|source| IcebergError::Table {
            table: name,
            operation: format!("setting {key}"),
            source: Box::new(source),
        })
}
