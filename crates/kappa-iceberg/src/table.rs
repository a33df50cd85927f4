//! Creating the table (and checking an existing one) from the pipeline's table spec.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use iceberg::spec::Transform;
use iceberg::spec::{NestedField, NestedFieldRef, Schema, StructType, Type, UnboundPartitionSpec};
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

    /// Whether the partitioning applies to the schema: each column exists and its transform
    /// takes the column's type (`day` of a timestamp or date, `truncate[N]` of a string or
    /// number, ...); the error names `[table] partition_by`.
    pub fn check_partitioning(&self) -> Result<(), IcebergError> {
        self.partition_spec()?
            .bind(self.schema.clone())
            .map(|_| ())
            .map_err(|e| IcebergError::Invalid {
                table: self.full_name(),
                message: format!("[table] partition_by: {e}"),
            })
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
    // A catalog numbers a new table's fields afresh: created from the part of the schema it
    // numbers as the spec does, the table gets the rest, with the spec's ids, by evolution.
    let schema = creation_schema(spec)?;
    let partition_spec = spec.partition_spec()?;
    let mut attempt = 1;
    loop {
        let creation = TableCreation::builder()
            .name(spec.name.clone())
            .schema(schema.clone())
            .partition_spec(partition_spec.clone())
            .properties(spec.properties.clone())
            .build();
        match create(catalog, spec, creation, &namespace, &ident).await {
            Ok(table) => return evolve(catalog, spec, table).await,
            Err((operation, source))
                if attempt < CREATION_ATTEMPTS && creation_in_progress(&source) =>
            {
                warn!(
                    table = %spec.full_name(),
                    attempt,
                    error = %source,
                    "{operation} failed (the catalog may show a namespace another process is creating, or be unreachable for a moment); trying again"
                );
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                attempt += 1;
            }
            Err((operation, source)) => return Err(table_err(operation)(source)),
        }
    }
}

/// How often [`ensure_table`] tries to create the namespace and the table (waiting 0.1, 0.2, 0.4,
/// 0.8 and 1.6 s in between) while another process's creation shows half done.
const CREATION_ATTEMPTS: u32 = 6;

/// Whether a creation step failed because another process is creating the namespace at that
/// moment. SeaweedFS's REST catalog shows a namespace before its metadata is written: for a
/// moment its checks answer 500 ("attribute not found: s3tables.metadata") and a table created in
/// it is refused as "namespace not found". Anything else (a refused credential, an invalid name)
/// is not retried.
fn creation_in_progress(error: &iceberg::Error) -> bool {
    error.kind() == ErrorKind::NamespaceNotFound
        || crate::error::kind_of(error) == kappa_core::ErrorKind::Transient
}

/// Creates the namespace if missing, then the table; a table another process created
/// meanwhile is loaded. The error names the step that failed.
async fn create(
    catalog: &dyn Catalog,
    spec: &TableSpec,
    creation: TableCreation,
    namespace: &NamespaceIdent,
    ident: &TableIdent,
) -> Result<Table, (&'static str, iceberg::Error)> {
    let exists = catalog
        .namespace_exists(namespace)
        .await
        .map_err(|e| ("checking the namespace", e))?;
    if !exists && let Err(e) = catalog.create_namespace(namespace, HashMap::new()).await {
        // Another process may have created it meanwhile. A REST catalog says so
        // (NamespaceAlreadyExists) while its own check of that namespace may still fail for a
        // moment (SeaweedFS, above); the SQL catalog reports the race as a unique-constraint
        // error, so its namespace is looked for. A namespace still half made shows in the table
        // creation as NamespaceNotFound, which is retried.
        if e.kind() != ErrorKind::NamespaceAlreadyExists
            && !catalog.namespace_exists(namespace).await.unwrap_or(false)
        {
            return Err(("creating the namespace", e));
        }
    }
    match catalog.create_table(namespace, creation).await {
        Ok(table) => {
            info!(table = %spec.full_name(), location = table.metadata().location(), "created table");
            Ok(table)
        }
        Err(e)
            if e.kind() == ErrorKind::TableAlreadyExists
                || catalog.table_exists(ident).await.unwrap_or(false) =>
        {
            // Lost a creation race: use the winner's table.
            catalog.load_table(ident).await.map_err(|e| ("loading", e))
        }
        Err(e) => Err(("creating", e)),
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

/// Brings an existing table up to the spec's schema: columns and nested fields (fields of
/// structs, also inside lists and maps) the table lacks are added as optional, in the order of
/// their ids in the spec, so that the catalog gives them the same ids (a schema-only commit,
/// before any row that needs them is written; old rows read NULL). A column or nested field with
/// another type in the table, or a missing required one, is an error naming its path. Several
/// processes may evolve at once: a lost race reloads and checks again.
async fn evolve(
    catalog: &dyn Catalog,
    spec: &TableSpec,
    mut table: Table,
) -> Result<Table, IcebergError> {
    let mut last_error = None;
    for _attempt in 0..5 {
        let missing = missing_fields(spec, &table)?;
        if missing.is_empty() {
            warn_on_other_ids(spec, &table);
            return Ok(table);
        }
        let names: Vec<String> = missing.iter().map(Addition::path).collect();
        let mut action = Transaction::new(&table).update_schema();
        for addition in &missing {
            let field_type = (*addition.field.field_type).clone();
            action = action.add_column(match &addition.parent {
                None => AddColumn::optional(addition.field.name.clone(), field_type),
                Some(parent) => AddColumn::builder()
                    .parent(parent.clone())
                    .name(addition.field.name.clone())
                    .field_type(field_type)
                    .build(),
            });
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
                warn!(table = %spec.full_name(), columns = ?names, error = %e, "adding columns failed; reloading to check again");
                last_error = Some(format!("adding {}: {e}", names.join(", ")));
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
        message: format!(
            "could not add the schema's new columns after 5 attempts{}",
            last_error
                .map(|e| format!("; last: {e}"))
                .unwrap_or_default()
        ),
    })
}

/// A field of the spec's schema that the table lacks.
#[derive(Debug)]
struct Addition {
    /// The table's full name of the struct it belongs in (`payment`, `lines.element`,
    /// `extras.value`); `None` for a column.
    parent: Option<String>,
    /// The field, with the spec's id and its own nested fields.
    field: NestedFieldRef,
}

impl Addition {
    /// The field's full name.
    fn path(&self) -> String {
        match &self.parent {
            Some(parent) => format!("{parent}.{}", self.field.name),
            None => self.field.name.clone(),
        }
    }
}

/// Spec columns and nested fields the table lacks, in the order of their ids in the spec (each
/// with its own nested fields); an error for a type difference or a missing required field.
fn missing_fields(spec: &TableSpec, table: &Table) -> Result<Vec<Addition>, IcebergError> {
    let current = table.metadata().current_schema();
    let invalid = |message: String| IcebergError::Invalid {
        table: spec.full_name(),
        message,
    };
    let mut missing = Vec::new();
    for field in spec.schema.as_struct().fields() {
        match current.as_struct().field_by_name(&field.name) {
            Some(existing) => {
                compare(field, existing, &field.name, &mut missing).map_err(invalid)?;
            }
            None if field.required => {
                return Err(invalid(format!(
                    "required column {:?} of the pipeline's schema is missing from the existing table; only optional columns can be added",
                    field.name
                )));
            }
            None => missing.push(Addition {
                parent: None,
                field: field.clone(),
            }),
        }
    }
    missing.sort_by_key(|a| a.field.id);
    Ok(missing)
}

/// Compares the spec's field `spec` with the table's `existing` (both at `path`): nested fields
/// the table lacks go to `missing`; a type difference or a missing required field is the error.
/// Field ids, docs and whether a field is optional are not compared (rows are matched by name).
fn compare(
    spec: &NestedField,
    existing: &NestedField,
    path: &str,
    missing: &mut Vec<Addition>,
) -> Result<(), String> {
    match (spec.field_type.as_ref(), existing.field_type.as_ref()) {
        (Type::Primitive(a), Type::Primitive(b)) if a == b => Ok(()),
        (Type::Struct(spec_struct), Type::Struct(table_struct)) => {
            for child in spec_struct.fields() {
                let child_path = format!("{path}.{}", child.name);
                match table_struct.field_by_name(&child.name) {
                    Some(existing) => compare(child, existing, &child_path, missing)?,
                    None if child.required => {
                        return Err(format!(
                            "required field {child_path:?} of the pipeline's schema is missing from the existing table; only optional fields can be added"
                        ));
                    }
                    None => missing.push(Addition {
                        parent: Some(path.to_string()),
                        field: child.clone(),
                    }),
                }
            }
            Ok(())
        }
        (Type::List(a), Type::List(b)) => compare(
            &a.element_field,
            &b.element_field,
            &format!("{path}.{}", a.element_field.name),
            missing,
        ),
        (Type::Map(a), Type::Map(b)) => {
            compare(
                &a.key_field,
                &b.key_field,
                &format!("{path}.{}", a.key_field.name),
                missing,
            )?;
            compare(
                &a.value_field,
                &b.value_field,
                &format!("{path}.{}", a.value_field.name),
                missing,
            )
        }
        (spec_type, table_type) => Err(format!(
            "{} {path:?} is {} in the table but {} in the pipeline's schema; Kappa adds columns but does not change their types",
            if path.contains('.') {
                "field"
            } else {
                "column"
            },
            describe(table_type),
            describe(spec_type)
        )),
    }
}

/// A type for messages: a primitive as Iceberg names it, a nested type by its kind (its fields
/// are compared one by one).
fn describe(field_type: &Type) -> String {
    match field_type {
        Type::Primitive(p) => p.to_string(),
        Type::Struct(_) => "a struct".into(),
        Type::List(_) => "a list".into(),
        Type::Map(_) => "a map".into(),
    }
}

/// The schema to create the table with: the spec's schema without the fields of the highest
/// ids, down to where a catalog numbering the fields afresh (the fields of a struct before their
/// own nested fields, as iceberg-rust and Iceberg Java number a new table) gives every field its
/// spec id. Kappa's ids number a subject's first version so, and later versions' fields after;
/// the table gets those by evolution ([`evolve`]), numbered in order from the catalog's last id,
/// as the spec has them. A schema the catalog numbers as it is (no nested fields, or one
/// version) is created whole; one no prefix of which would be numbered so (another numbering,
/// or a partition column among the fields left out) too, with the catalog's ids (a warning says
/// which ids differ).
fn creation_schema(spec: &TableSpec) -> Result<Schema, IcebergError> {
    let schema = &spec.schema;
    let mut ids = Vec::new();
    collect_ids(schema.as_struct().fields(), &mut ids);
    ids.sort_unstable_by(|a, b| b.cmp(a));
    // The partition columns must be there at creation.
    let floor = spec
        .partition_by
        .iter()
        .filter_map(|p| schema.field_by_name(&p.column).map(|f| f.id))
        .max()
        .unwrap_or(0);
    for &highest in ids.iter().filter(|id| **id >= floor) {
        let Some(fields) = prune(schema.as_struct().fields(), highest) else {
            continue;
        };
        let mut next = 1;
        if !numbered_afresh(&fields, &mut next) {
            continue;
        }
        if highest == ids[0] {
            return Ok(schema.clone());
        }
        return Schema::builder()
            .with_schema_id(schema.schema_id())
            .with_fields(fields)
            .build()
            .map_err(|e| IcebergError::Invalid {
                table: spec.full_name(),
                message: format!("the part of the schema to create the table with: {e}"),
            });
    }
    Ok(schema.clone())
}

fn collect_ids(fields: &[NestedFieldRef], ids: &mut Vec<i32>) {
    for field in fields {
        ids.push(field.id);
        collect_ids(&nested_fields(&field.field_type), ids);
    }
}

/// The fields directly inside `field_type`: a struct's, a list's element, a map's key and value.
fn nested_fields(field_type: &Type) -> Vec<NestedFieldRef> {
    match field_type {
        Type::Primitive(_) => Vec::new(),
        Type::Struct(s) => s.fields().to_vec(),
        Type::List(l) => vec![l.element_field.clone()],
        Type::Map(m) => vec![m.key_field.clone(), m.value_field.clone()],
    }
}

/// `fields` without the fields whose id is above `highest`; `None` when that leaves a list
/// without its element, a map without its key or value, or a struct without fields.
fn prune(fields: &[NestedFieldRef], highest: i32) -> Option<Vec<NestedFieldRef>> {
    let mut kept = Vec::new();
    for field in fields.iter().filter(|f| f.id <= highest) {
        let field_type = match field.field_type.as_ref() {
            Type::Primitive(_) => field.field_type.as_ref().clone(),
            Type::Struct(s) => {
                let inner = prune(s.fields(), highest)?;
                if inner.is_empty() {
                    return None;
                }
                Type::Struct(StructType::new(inner))
            }
            Type::List(l) => {
                let inner = prune(std::slice::from_ref(&l.element_field), highest)?;
                let [element] = &inner[..] else {
                    return None;
                };
                Type::List(iceberg::spec::ListType::new(element.clone()))
            }
            Type::Map(m) => {
                let pair = prune(&[m.key_field.clone(), m.value_field.clone()], highest)?;
                let [key, value] = &pair[..] else {
                    return None;
                };
                Type::Map(iceberg::spec::MapType::new(key.clone(), value.clone()))
            }
        };
        let mut pruned = field.as_ref().clone();
        pruned.field_type = Box::new(field_type);
        kept.push(Arc::new(pruned));
    }
    Some(kept)
}

/// Whether a catalog numbering `fields` afresh from `next` gives every field its id: the fields
/// of a level first, then each one's nested fields; a list's element, a map's key and value in
/// turn (iceberg-rust's `ReassignFieldIds`).
fn numbered_afresh(fields: &[NestedFieldRef], next: &mut i32) -> bool {
    for field in fields {
        if field.id != *next {
            return false;
        }
        *next += 1;
    }
    fields
        .iter()
        .all(|field| type_numbered_afresh(&field.field_type, next))
}

fn type_numbered_afresh(field_type: &Type, next: &mut i32) -> bool {
    match field_type {
        Type::Primitive(_) => true,
        Type::Struct(s) => numbered_afresh(s.fields(), next),
        Type::List(_) | Type::Map(_) => nested_fields(field_type).iter().all(|inner| {
            let own = inner.id == *next;
            *next += 1;
            own && type_numbered_afresh(&inner.field_type, next)
        }),
    }
}

/// Field ids come from the subject's history; a table created otherwise (by hand, by another
/// tool) may number its columns differently. Rows are matched by name, so this is only a warning.
fn warn_on_other_ids(spec: &TableSpec, table: &Table) {
    let current = table.metadata().current_schema();
    let mut differ = Vec::new();
    other_ids(
        spec.schema.as_struct().fields(),
        current.as_struct().fields(),
        "",
        &mut differ,
    );
    for (column, table_id, schema_id) in differ {
        warn!(
            table = %spec.full_name(),
            column = %column,
            table_id,
            schema_id,
            "column has another field id in the table than the subject's history gives"
        );
    }
}

/// Fields (by path) whose id in `table` is not the one in `spec`, at any depth.
fn other_ids(
    spec: &[NestedFieldRef],
    table: &[NestedFieldRef],
    prefix: &str,
    differ: &mut Vec<(String, i32, i32)>,
) {
    for field in spec {
        let Some(existing) = table.iter().find(|f| f.name == field.name) else {
            continue;
        };
        let path = if prefix.is_empty() {
            field.name.clone()
        } else {
            format!("{prefix}.{}", field.name)
        };
        if existing.id != field.id {
            differ.push((path.clone(), existing.id, field.id));
        }
        other_ids(
            &nested_fields(&field.field_type),
            &nested_fields(&existing.field_type),
            &path,
            differ,
        );
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
