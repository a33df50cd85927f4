//! The embedded file registry as a running pipeline uses it: a directory that may gain schema
//! versions while the pipeline runs (a Kubernetes ConfigMap update, a deploy that adds
//! `<subject>/3.avsc`), read again when it is asked for something it does not hold.
//!
//! ```text
//!  by_id(id) ── known? ──yes──► answer
//!                 │no
//!                 ▼
//!   directory or a subject directory modified since the last read? ──yes──► read it again
//!                 │                                                           │
//!                 └──────────────────────────► answer (or None) ◄────────────┘
//!  versions(subject) ──► read the directory again, then answer
//! ```
//!
//! An unknown id is never answered from a stale read: a record whose schema was just added would
//! otherwise go to the dead-letter table. Only the modification times are looked at when nothing
//! changed, so garbage with random ids costs a few `stat` calls, not a re-read.
//!
//! A directory that cannot be read again (a half-written file) keeps the previous contents for
//! id lookups, with a warning, and is tried again at the next miss; `versions`, which a pipeline
//! asks when it is about to evolve its table, reports the error instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use tracing::{info, warn};

use crate::compat::Level;
use crate::error::SchemaError;
use crate::registry::{FileRegistry, RegisteredSchema, SchemaRegistry};

/// A [`FileRegistry`] over a directory, read again on a miss (see the module docs).
#[derive(Debug)]
pub struct DirectoryRegistry {
    dir: PathBuf,
    /// The registry as last read, and the modification stamp of the directory it was read at.
    state: Mutex<(Arc<FileRegistry>, Option<SystemTime>)>,
}

impl DirectoryRegistry {
    /// Reads `dir` (`<subject>/<version>.avsc`, see [`FileRegistry::load`]).
    pub fn open(dir: &Path) -> Result<Self, SchemaError> {
        let stamp = stamp(dir);
        let registry = FileRegistry::load(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new((Arc::new(registry), stamp)),
        })
    }

    /// What the directory held at the last read.
    pub fn current(&self) -> Arc<FileRegistry> {
        match self.state.lock() {
            Ok(state) => state.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Reads the directory again; with `if_modified`, only if it changed since the last read.
    fn reload(&self, if_modified: bool) -> Result<Arc<FileRegistry>, SchemaError> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = stamp(&self.dir);
        if if_modified && now.is_some() && now == state.1 {
            return Ok(state.0.clone());
        }
        // The stamp is taken before reading, so a change during the read is seen next time; a
        // failed read keeps the old stamp, so it is tried again.
        let fresh = Arc::new(FileRegistry::load(&self.dir)?);
        state.1 = now;
        let before = state.0.ids().count();
        let after = fresh.ids().count();
        if after != before {
            info!(dir = %self.dir.display(), before, after, "schema directory read again: schemas changed");
        }
        state.0 = fresh.clone();
        Ok(fresh)
    }
}

/// The newest modification time of the directory and its subject directories (adding, removing
/// or renaming a version file changes its subject directory's; a ConfigMap update swaps a
/// symlink in the directory itself). `None` when it cannot be read.
fn stamp(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).ok()?.modified().ok()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(meta) = std::fs::metadata(entry.path())
            && meta.is_dir()
            && let Ok(modified) = meta.modified()
        {
            newest = newest.max(modified);
        }
    }
    Some(newest)
}

#[async_trait]
impl SchemaRegistry for DirectoryRegistry {
    async fn by_id(&self, id: u32) -> Result<Option<Arc<RegisteredSchema>>, SchemaError> {
        if let Some(hit) = self.current().schema(id) {
            return Ok(Some(hit));
        }
        match self.reload(true) {
            Ok(registry) => Ok(registry.schema(id)),
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot read the schema directory again; keeping what it held");
                Ok(None)
            }
        }
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Arc<RegisteredSchema>>, SchemaError> {
        self.reload(false)?.subject_versions(subject)
    }

    async fn compatibility(&self, subject: &str) -> Result<Option<Level>, SchemaError> {
        Ok(self.current().level(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
    const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");

    fn wait<T>(f: impl Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_version_added_to_the_directory_is_found_by_id_and_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let subject = dir.path().join("orders-value");
        std::fs::create_dir(&subject).unwrap();
        std::fs::write(subject.join("1.avsc"), V1).unwrap();
        let registry = DirectoryRegistry::open(dir.path()).unwrap();
        assert_eq!(wait(registry.versions("orders-value")).unwrap().len(), 1);
        let v2_id = crate::registry::schema_id_for(&apache_avro::Schema::parse_str(V2).unwrap());
        assert!(wait(registry.by_id(v2_id)).unwrap().is_none());

        // Added right after a miss: the next lookup of the id finds it.
        std::fs::write(subject.join("2.avsc"), V2).unwrap();
        assert_eq!(wait(registry.by_id(v2_id)).unwrap().unwrap().version, 2);
        assert_eq!(wait(registry.versions("orders-value")).unwrap().len(), 2);

        // A broken file: id lookups keep the old contents, the history says what is wrong.
        std::fs::write(subject.join("3.avsc"), "{ not json").unwrap();
        assert!(wait(registry.by_id(7)).unwrap().is_none());
        assert_eq!(wait(registry.by_id(v2_id)).unwrap().unwrap().version, 2);
        let err = wait(registry.versions("orders-value")).unwrap_err();
        assert!(err.to_string().contains("3.avsc"), "{err}");
    }
}
