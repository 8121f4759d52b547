//! Erasure of a candidate's data (their right to erasure, a retention rule): the store's rows of
//! each of their assignments ([`Store::erase_assignment`], one transaction, an audit record with
//! nothing personal in it), then the files: the assignment's repository, a worker's fetched copy
//! on this host, and the similarity fingerprints of its submissions. SQLite overwrites what it
//! deletes and empties its write-ahead log, so no file under the data folder keeps a trace.
//! Workers on other hosts keep fetched copies under their own `worker-repos/` (docs/scaling.md).

use std::path::Path;

use crate::intake::Repos;
use crate::store::{Erasure, Store, StoreError};

/// What one assignment's erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub task: String,
    pub rows: i64,
    pub files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("no assignment of {0:?}")]
    NoCandidate(String),
    #[error("the store")]
    Store(#[from] StoreError),
    #[error("cannot remove {}", .0.display())]
    File(std::path::PathBuf, #[source] std::io::Error),
}

/// Erases assignment `id`: its rows, then its files. `by` is who asked (an assessor's name, or
/// `retention`); `reason` is `request` or `retention`.
pub async fn erase_assignment(store: &dyn Store, repos: &Repos, data_dir: &Path, id: &str, by: &str, reason: &str) -> Result<Erased, EraseError> {
    let assignment = store.assignment(id).await?.ok_or_else(|| StoreError::NotFound(format!("no assignment {id}")))?;
    let record = Erasure { task: assignment.task.clone(), erased_at: crate::units::now(), erased_by: by.to_string(), reason: reason.to_string(), rows: 0 };
    let (submissions, rows) = store.erase_assignment(id, &record).await?;
    let mut targets = vec![repos.path(id), data_dir.join("worker-repos").join(format!("{id}.git"))];
    targets.extend(submissions.iter().map(|s| data_dir.join("similarity").join(format!("{s}.json"))));
    let mut files = 0;
    for target in targets {
        let removed = match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => Err(e),
        };
        removed.map_err(|e| EraseError::File(target.clone(), e))?;
        files += 1;
    }
    Ok(Erased { task: assignment.task, rows, files })
}

/// Erases every assignment whose candidate is `candidate` (compared without case or surrounding
/// space).
pub async fn erase_candidate(store: &dyn Store, repos: &Repos, data_dir: &Path, candidate: &str, by: &str, reason: &str) -> Result<Vec<Erased>, EraseError> {
    let wanted = candidate.trim().to_lowercase();
    let theirs: Vec<String> = store.assignments().await?.into_iter().filter(|a| a.candidate.trim().to_lowercase() == wanted).map(|a| a.id).collect();
    if theirs.is_empty() {
        return Err(EraseError::NoCandidate(candidate.trim().to_string()));
    }
    let mut erased = Vec::new();
    for id in theirs {
        erased.push(erase_assignment(store, repos, data_dir, &id, by, reason).await?);
    }
    Ok(erased)
}
