//! The embedded file registry: a directory of subjects and versioned `.avsc` files.
//!
//! Layout: `<dir>/<subject>/<version>.avsc`, versions are positive integers (ascending order is
//! the subject's history). Ids: a file registry has no server to hand out ids, so the id of a
//! schema is derived from its content: the CRC-64-AVRO (Rabin) fingerprint of its Parsing
//! Canonical Form, little-endian, masked to 31 bits. Identical schemas share an id (as in
//! Confluent's registry), ids never change when subjects or versions are added, and producers
//! that use the same directory frame messages with the same ids. Two different schemas whose ids
//! collide are rejected when the directory is loaded.
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
        for (index, version) in versions.iter().enumerate() {
            if let Some((other_subject, other_index)) = self.ids.get(&version.id) {
                let other = &self.subjects[other_subject][*other_index];
                if other.schema.canonical_form() != version.schema.canonical_form() {
                    return Err(SchemaError::IdCollision {
                        id: version.id,
                        first: format!("{}/{}", other.subject, other.version),
                        second: format!("{}/{}", version.subject, version.version),
                    });
                }
                continue;
            }
            self.ids.insert(version.id, (subject.clone(), index));
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

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kappa-schema-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
