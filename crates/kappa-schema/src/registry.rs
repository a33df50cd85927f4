//! The embedded file registry: a directory of subjects and versioned `.avsc` files.
//!
//! Layout: `<dir>/<subject>/<version>.avsc`, versions are positive integers (ascending order is
//! the subject's history). Ids: a file registry has no server to hand out ids, so the id of a
//! schema is derived from its content: the CRC-64-AVRO (Rabin) fingerprint of its Parsing
//! Canonical Form, little-endian, masked to 31 bits. Identical schemas share an id (as in
//! Confluent's registry), ids never change when subjects or versions are added, and producers
//! that use the same directory frame messages with the same ids. The form drops defaults, docs
//! and aliases, so two versions of one subject that differ only in a default (`b: int`, then
//! `b: int` with `"default": 0`) share an id: they encode every message alike, and the id
//! answers with the first of them (the subject's history keeps both). Two different forms whose
//! ids collide (the id keeps 31 bits of the fingerprint) are refused when the directory is
//! loaded, naming both.
//!
//! A subject's compatibility level may be set in `<dir>/<subject>/compatibility`, a text file
//! holding one level name (`BACKWARD`, `FULL_TRANSITIVE`, ...); `kappa schema check` uses it when
//! no `--level` is given, and BACKWARD (the registry's default) when the file is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use async_trait::async_trait;

use crate::compat::Level;
use crate::error::SchemaError;

/// One registered schema version.
#[derive(Debug, Clone)]
pub struct RegisteredSchema {
    /// Subject, e.g. `orders-value`.
    pub subject: String,
    /// Version within the subject (1, 2, ...).
    pub version: u32,
    /// Schema id used in the wire format.
    pub id: u32,
    /// The schema text as stored.
    pub json: String,
    /// The parsed schema.
    pub schema: Schema,
}

/// Looks up writer schemas by id and a subject's versions: the file registry, or a Confluent
/// Schema Registry over HTTP ([`crate::confluent::ConfluentRegistry`]).
#[async_trait]
pub trait SchemaRegistry: Send + Sync + std::fmt::Debug {
    /// The schema registered under `id`; `Ok(None)` when the registry does not know the id, an
    /// error when the registry cannot be asked.
    async fn by_id(&self, id: u32) -> Result<Option<Arc<RegisteredSchema>>, SchemaError>;
    /// All versions of `subject`, oldest first.
    async fn versions(&self, subject: &str) -> Result<Vec<Arc<RegisteredSchema>>, SchemaError>;
    /// The compatibility level that applies to `subject`, if the registry defines one.
    async fn compatibility(&self, _subject: &str) -> Result<Option<Level>, SchemaError> {
        Ok(None)
    }
    /// The newest version of `subject`.
    async fn latest(&self, subject: &str) -> Result<Arc<RegisteredSchema>, SchemaError> {
        self.versions(subject)
            .await?
            .into_iter()
            .last()
            .ok_or_else(|| SchemaError::UnknownSubject {
                subject: subject.to_string(),
                known: String::new(),
            })
    }
}

/// The id a file registry assigns to `schema` (see the module docs).
pub fn schema_id_for(schema: &Schema) -> u32 {
    let fingerprint = schema.fingerprint::<Rabin>();
    let mut bytes = [0u8; 8];
    for (slot, byte) in bytes.iter_mut().zip(fingerprint.bytes.iter()) {
        *slot = *byte;
    }
    (u64::from_le_bytes(bytes) & 0x7fff_ffff) as u32
}

/// A registry read from a directory once at start.
#[derive(Debug, Clone, Default)]
pub struct FileRegistry {
    subjects: BTreeMap<String, Vec<Arc<RegisteredSchema>>>,
    ids: BTreeMap<u32, (String, usize)>,
    levels: BTreeMap<String, Level>,
}

impl FileRegistry {
    /// Loads every `<subject>/<version>.avsc` under `dir`.
    pub fn load(dir: &Path) -> Result<Self, SchemaError> {
        let read_dir = |path: &Path| {
            std::fs::read_dir(path).map_err(|source| SchemaError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut registry = FileRegistry::default();
        let mut subject_dirs: Vec<PathBuf> = read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subject_dirs.sort();
        for subject_dir in subject_dirs {
            let subject = file_name(&subject_dir);
            let mut versions = Vec::new();
            for entry in read_dir(&subject_dir)? {
                let path = entry
                    .map_err(|source| SchemaError::Read {
                        path: subject_dir.clone(),
                        source,
                    })?
                    .path();
                if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
                    continue;
                }
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let version: u32 = stem.parse().map_err(|_| SchemaError::Layout {
                    path: path.clone(),
                    message: format!(
                        "schema file name {stem:?} is not a version number; expected <dir>/<subject>/<version>.avsc, e.g. {subject}/1.avsc"
                    ),
                })?;
                let json = std::fs::read_to_string(&path).map_err(|source| SchemaError::Read {
                    path: path.clone(),
                    source,
                })?;
                let schema =
                    crate::names::parse_schema(&json).map_err(|message| SchemaError::Parse {
                        path: path.clone(),
                        message,
                    })?;
                versions.push(Arc::new(RegisteredSchema {
                    subject: subject.clone(),
                    version,
                    id: schema_id_for(&schema),
                    json,
                    schema,
                }));
            }
            versions.sort_by_key(|v| v.version);
            let level_file = subject_dir.join("compatibility");
            if level_file.is_file() {
                let text =
                    std::fs::read_to_string(&level_file).map_err(|source| SchemaError::Read {
                        path: level_file.clone(),
                        source,
                    })?;
                let level = text
                    .parse::<Level>()
                    .map_err(|message| SchemaError::Layout {
                        path: level_file.clone(),
                        message,
                    })?;
                registry.levels.insert(subject.clone(), level);
            }
            registry.insert_subject(subject, versions)?;
        }
        Ok(registry)
    }

    /// Builds a registry from schemas held in memory (tests, the demo's embedded contract).
    pub fn from_schemas<'a>(
        subject: &str,
        versions: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SchemaError> {
        let mut registry = FileRegistry::default();
        let mut list = Vec::new();
        for (index, json) in versions.into_iter().enumerate() {
            let version = index as u32 + 1;
            let schema =
                crate::names::parse_schema(json).map_err(|message| SchemaError::Parse {
                    path: PathBuf::from(format!("{subject}/{version}.avsc")),
                    message,
                })?;
            list.push(Arc::new(RegisteredSchema {
                subject: subject.to_string(),
                version,
                id: schema_id_for(&schema),
                json: json.to_string(),
                schema,
            }));
        }
        registry.insert_subject(subject.to_string(), list)?;
        Ok(registry)
    }

    pub(crate) fn insert_subject(
        &mut self,
        subject: String,
        versions: Vec<Arc<RegisteredSchema>>,
    ) -> Result<(), SchemaError> {
        // Ids this subject adds; checked against the registry and against its own earlier
        // versions (two versions may share an id: see `same_writer`).
        let mut added: BTreeMap<u32, usize> = BTreeMap::new();
        for (index, version) in versions.iter().enumerate() {
            let other = match (self.ids.get(&version.id), added.get(&version.id)) {
                (Some((other_subject, other_index)), _) => self
                    .subjects
                    .get(other_subject)
                    .and_then(|list| list.get(*other_index)),
                (None, Some(other_index)) => versions.get(*other_index),
                (None, None) => None,
            };
            match other {
                Some(other) => {
                    if let Some(why) = different_writers(&other.schema, &version.schema) {
                        return Err(SchemaError::IdCollision {
                            id: version.id,
                            first: format!("{}/{}", other.subject, other.version),
                            second: format!("{}/{}", version.subject, version.version),
                            why,
                        });
                    }
                }
                None => {
                    added.insert(version.id, index);
                }
            }
        }
        for (id, index) in added {
            self.ids.insert(id, (subject.clone(), index));
        }
        self.subjects.insert(subject, versions);
        Ok(())
    }

    /// Names of all subjects.
    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.subjects.keys().map(String::as_str)
    }

    /// Ids of every schema held.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids.keys().copied()
    }

    /// The level set in `<dir>/<subject>/compatibility`, if any.
    pub fn level(&self, subject: &str) -> Option<Level> {
        self.levels.get(subject).copied()
    }

    /// The schema with `id`, if any.
    pub fn schema(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.ids
            .get(&id)
            .map(|(subject, index)| self.subjects[subject][*index].clone())
    }

    /// All versions of `subject`, oldest first.
    pub fn subject_versions(
        &self,
        subject: &str,
    ) -> Result<Vec<Arc<RegisteredSchema>>, SchemaError> {
        self.subjects
            .get(subject)
            .cloned()
            .ok_or_else(|| SchemaError::UnknownSubject {
                subject: subject.to_string(),
                known: self.subjects.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The newest version of `subject`.
    pub fn subject_latest(&self, subject: &str) -> Result<Arc<RegisteredSchema>, SchemaError> {
        self.subject_versions(subject)?
            .pop()
            .ok_or_else(|| SchemaError::UnknownSubject {
                subject: subject.to_string(),
                known: String::new(),
            })
    }
}

#[async_trait]
impl SchemaRegistry for FileRegistry {
    async fn compatibility(&self, subject: &str) -> Result<Option<Level>, SchemaError> {
        Ok(self.level(subject))
    }

    async fn by_id(&self, id: u32) -> Result<Option<Arc<RegisteredSchema>>, SchemaError> {
        Ok(self.schema(id))
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Arc<RegisteredSchema>>, SchemaError> {
        self.subject_versions(subject)
    }
}

/// Why two schemas with the same id cannot share it, or `None` when they can: the id is derived
/// from the Parsing Canonical Form, which drops what does not change the binary encoding
/// (defaults, docs, aliases); schemas with the same form read every message alike, whichever of
/// them the id answers with (the first one registered). apache-avro's form keeps logical types
/// (`{"type":"long"}` with the `logicalType` stripped is not `"long"`), so they count too.
fn different_writers(first: &Schema, second: &Schema) -> Option<String> {
    (first.canonical_form() != second.canonical_form()).then(|| {
        "their Parsing Canonical Forms differ (a collision of the 31-bit fingerprint): \
         change one of them (rename a field or the record) so that their ids differ"
            .into()
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
    const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");

    #[test]
    fn loads_the_project_contracts_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
        let registry = FileRegistry::load(&dir).unwrap();
        let versions = registry.subject_versions("orders-value").unwrap();
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            [1, 2]
        );
        let latest = registry.subject_latest("orders-value").unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(registry.schema(latest.id).unwrap().version, 2);
        assert_ne!(versions[0].id, versions[1].id);
    }

    #[test]
    fn ids_are_content_derived_and_stable() {
        let a = FileRegistry::from_schemas("a", [V1]).unwrap();
        let b = FileRegistry::from_schemas("b", [V1, V2]).unwrap();
        assert_eq!(
            a.subject_latest("a").unwrap().id,
            b.subject_versions("b").unwrap()[0].id
        );
        assert!(a.subject_latest("a").unwrap().id <= 0x7fff_ffff);
    }

    #[test]
    fn unknown_subject_lists_known_ones() {
        let r = FileRegistry::from_schemas("orders-value", [V1]).unwrap();
        let err = r.subject_latest("order-value").unwrap_err().to_string();
        assert!(
            err.contains("order-value") && err.contains("orders-value"),
            "{err}"
        );
    }

    #[test]
    fn a_subject_compatibility_file_sets_its_level() {
        let dir = tempfile_dir("levels");
        std::fs::create_dir_all(dir.join("s")).unwrap();
        std::fs::write(dir.join("s/1.avsc"), V1).unwrap();
        std::fs::write(dir.join("s/compatibility"), "full_transitive\n").unwrap();
        let registry = FileRegistry::load(&dir).unwrap();
        assert_eq!(registry.level("s"), Some(Level::FullTransitive));
        std::fs::write(dir.join("s/compatibility"), "sideways").unwrap();
        let err = FileRegistry::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("s/compatibility") && err.contains("sideways"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_version_file_name_is_named() {
        let dir = tempfile_dir("bad-name");
        std::fs::create_dir_all(dir.join("s")).unwrap();
        std::fs::write(dir.join("s/latest.avsc"), V1).unwrap();
        let err = FileRegistry::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("latest") && err.contains("<version>.avsc"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn record(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#)
    }

    #[test]
    fn versions_differing_only_in_a_default_share_an_id_and_load() {
        let v1 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        let v3 = record(r#"{"name":"a","type":"string","doc":"d"},{"name":"b","type":"long"}"#);
        // In memory and from a directory (what `kappa schema check --dir` and a pipeline load).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        for (i, v) in [&v1, &v2, &v3].into_iter().enumerate() {
            std::fs::write(dir.path().join(format!("s/{}.avsc", i + 1)), v).unwrap();
        }
        for registry in [
            FileRegistry::from_schemas("s", [v1.as_str(), v2.as_str(), v3.as_str()]).unwrap(),
            FileRegistry::load(dir.path()).unwrap(),
        ] {
            let versions = registry.subject_versions("s").unwrap();
            assert_eq!(
                versions.iter().map(|v| v.version).collect::<Vec<_>>(),
                [1, 2, 3]
            );
            assert_eq!(versions[0].id, versions[1].id);
            assert_ne!(versions[0].id, versions[2].id);
            // The shared id answers with the first version; both read messages alike.
            assert_eq!(registry.schema(versions[1].id).unwrap().version, 1);
            assert_eq!(registry.schema(versions[2].id).unwrap().version, 3);
            // The default is kept where it matters: the subject's history.
            assert!(versions[1].json.contains("default"));
            assert_eq!(registry.ids().count(), 2);
        }
    }

    #[test]
    fn a_fingerprint_collision_inside_one_subject_is_refused_by_name() {
        // Two different schemas whose 31-bit ids collide (found by search).
        let v1 = record(r#"{"name":"f908413","type":"int"}"#);
        let v2 = record(r#"{"name":"f19402000","type":"int"}"#);
        let id = |json: &str| schema_id_for(&Schema::parse_str(json).unwrap());
        assert_eq!(id(&v1), id(&v2));
        let err = FileRegistry::from_schemas("s", [v1.as_str(), v2.as_str()]).unwrap_err();
        assert!(matches!(err, SchemaError::IdCollision { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("s/1") && text.contains("s/2") && text.contains("Canonical Form"),
            "{text}"
        );
        // Across subjects too.
        let mut registry = FileRegistry::from_schemas("a", [v1.as_str()]).unwrap();
        let other = FileRegistry::from_schemas("b", [v2.as_str()]).unwrap();
        let err = registry
            .insert_subject("b".into(), other.subject_versions("b").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("a/1"), "{err}");
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kappa-schema-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
