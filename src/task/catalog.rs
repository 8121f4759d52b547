//! One place that finds, loads and caches tasks: [`TaskId`], a checked task id, and [`Catalog`],
//! the tasks under a project folder. A task's `task.yaml` is parsed once and kept for as long as
//! the file is the same (its size, modification time and inode are compared on each use: one
//! `stat`), so that a page or a job pays a `stat` instead of a parse.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{SpecError, TaskSpec};

/// A task id: lowercase letters, digits, `-` and `_`, at most 64, not starting with `-`; so a
/// task's folder is always `tasks/<id>` under the project folder, never elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(text: &str) -> Result<TaskId, InvalidTaskId> {
        if super::is_name(text) {
            Ok(TaskId(text.to_string()))
        } else {
            Err(InvalidTaskId(text.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::str::FromStr for TaskId {
    type Err = InvalidTaskId;
    fn from_str(text: &str) -> Result<TaskId, InvalidTaskId> {
        TaskId::parse(text)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A text that is not a task id (its first 80 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a task id (lowercase letters, digits, '-' and '_', at most 64)")]
pub struct InvalidTaskId(String);

/// A file's identity: size, modification time (seconds, nanoseconds), inode.
type Identity = (u64, i64, i64, u64);

/// The tasks under a project folder (`<root>/tasks/<id>/task.yaml`), loaded once per version of
/// their `task.yaml`.
#[derive(Debug)]
pub struct Catalog {
    root: PathBuf,
    loaded: Mutex<HashMap<TaskId, (Identity, Arc<TaskSpec>)>>,
}

impl Catalog {
    /// The catalog of the project folder `root` (the folder that holds `tasks/`).
    pub fn new(root: impl Into<PathBuf>) -> Catalog {
        Catalog { root: root.into(), loaded: Mutex::new(HashMap::new()) }
    }

    /// The catalog of the project holding `dir` (a folder `<project>/tasks/<id>`, as every task
    /// folder is: a task names its data set and images from the project folder) and the task's
    /// id; `None` for a folder laid out otherwise.
    pub fn of_folder(dir: &Path) -> Option<(Catalog, TaskId)> {
        let absolute = std::path::absolute(dir).ok()?;
        let id = TaskId::parse(absolute.file_name()?.to_str()?).ok()?;
        let tasks = absolute.parent()?;
        if tasks.file_name()? != "tasks" {
            return None;
        }
        Some((Catalog::new(tasks.parent()?.to_path_buf()), id))
    }

    /// The task of folder `dir`, through its project's catalog when it has one (else parsed
    /// from the folder).
    pub fn load_folder(dir: &Path) -> Result<Arc<TaskSpec>, SpecError> {
        match Catalog::of_folder(dir) {
            Some((catalog, id)) => catalog.load(&id),
            None => super::load(dir).map(Arc::new),
        }
    }

    /// The project folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of task `id`.
    pub fn dir(&self, id: &TaskId) -> PathBuf {
        self.root.join("tasks").join(id.as_str())
    }

    /// Task `id` as its `task.yaml` is now (parsed again only when the file changed).
    pub fn load(&self, id: &TaskId) -> Result<Arc<TaskSpec>, SpecError> {
        let dir = self.dir(id);
        let file = dir.join("task.yaml");
        let meta = std::fs::metadata(&file).map_err(|source| SpecError::Read { path: file.clone(), source })?;
        let identity = (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
        if let Some((known, spec)) = self.lock().get(id) {
            if *known == identity {
                return Ok(spec.clone());
            }
        }
        let spec = Arc::new(super::load(&dir)?);
        self.lock().insert(id.clone(), (identity, spec.clone()));
        Ok(spec)
    }

    /// [`Catalog::load`], `None` when the task does not load (for pages, which show what they can).
    pub fn get(&self, id: &TaskId) -> Option<Arc<TaskSpec>> {
        self.load(id).ok()
    }

    /// The ids of the task folders (those with a `task.yaml` and a valid id as name), sorted.
    pub fn ids(&self) -> std::io::Result<Vec<TaskId>> {
        Ok(super::discover_tasks(&self.root)?
            .iter()
            .filter_map(|dir| dir.file_name().and_then(|name| name.to_str()).and_then(|name| TaskId::parse(name).ok()))
            .collect())
    }

    /// Every task that loads, in id order (one that does not is left out).
    pub fn all(&self) -> Vec<Arc<TaskSpec>> {
        self.ids().unwrap_or_default().iter().filter_map(|id| self.load(id).ok()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (Identity, Arc<TaskSpec>)>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_folder_names_its_project_and_id() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (catalog, id) = Catalog::of_folder(&root.join("tasks/penguins-cleaning")).unwrap();
        assert_eq!((catalog.root(), id.as_str()), (root, "penguins-cleaning"));
        assert!(Catalog::of_folder(&root.join("datasets/penguins-cleaning")).is_none(), "not under tasks/");
        assert!(Catalog::of_folder(&root.join("tasks/Not A Task")).is_none(), "not an id");
        let spec = Catalog::load_folder(&root.join("tasks/penguins-cleaning")).unwrap();
        assert_eq!(spec.id, "penguins-cleaning");
    }

    #[test]
    fn a_task_is_parsed_once_per_version_of_its_file_and_ids_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        for folder in ["tasks/penguins-cleaning", "datasets/penguins-cleaning", "runner-images/python", "runner-images/python-slim", "runner-images/r"] {
            std::fs::create_dir_all(root.path().join(folder).parent().unwrap()).unwrap();
            let status = std::process::Command::new("cp").arg("-r").arg(source.join(folder)).arg(root.path().join(folder)).status().unwrap();
            assert!(status.success(), "cp {folder}");
        }
        let catalog = Catalog::new(root.path());
        let id = TaskId::parse("penguins-cleaning").unwrap();
        let first = catalog.load(&id).unwrap();
        assert!(Arc::ptr_eq(&first, &catalog.load(&id).unwrap()), "the same file: the same parse");
        assert_eq!(catalog.ids().unwrap(), std::slice::from_ref(&id));

        // A changed task.yaml is read again.
        let file = catalog.dir(&id).join("task.yaml");
        let text = std::fs::read_to_string(&file).unwrap().replace("time_box: 2h", "time_box: 3h");
        std::fs::write(&file, text).unwrap();
        let second = catalog.load(&id).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.time_box.as_secs(), 3 * 3600);

        for bad in ["", "../etc", "Penguins", "-x", "a/b", &"x".repeat(65)] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(catalog.get(&TaskId::parse("no-such-task").unwrap()).is_none());
    }
}
