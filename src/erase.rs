//! A candidate's data: [`export_candidate`] writes everything held about one candidate (a
//! subject-access request) and the erasure deletes it (their right to erasure, a retention rule): the store's rows of
//! each of their assignments ([`Store::erase_assignment`], one transaction, an audit record with
//! nothing personal in it), then the files: the assignment's repository, a worker's fetched copy
//! on this host, and the similarity fingerprints of its submissions. SQLite overwrites what it
//! deletes and empties its write-ahead log, so no file under the data folder keeps a trace.
//! Workers on other hosts keep fetched copies under their own `worker-repos/`: each removes the
//! copies of assignments the store no longer holds ([`prune_copies`], every ten minutes).

use std::path::Path;

use crate::intake::Repos;
use crate::store::{Erasure, Store, StoreError};

/// What one assignment's erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub task: crate::task::TaskId,
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

/// The retention rule: erases every assignment whose decision was recorded at least `days` days
/// before `now` (recorded as erased by `retention`). Assignments never decided are kept: the
/// rule counts from the decision.
pub async fn apply_retention(store: &dyn Store, repos: &Repos, data_dir: &Path, days: u32, now: i64) -> Result<Vec<Erased>, EraseError> {
    let cutoff = now - i64::from(days) * 86_400;
    let mut due: Vec<String> =
        store.review_states().await?.into_iter().filter(|(_, state)| state.decided_at.is_some_and(|at| at <= cutoff)).map(|(id, _)| id).collect();
    due.sort();
    let mut erased = Vec::new();
    for id in due {
        erased.push(erase_assignment(store, repos, data_dir, &id, "retention", "retention").await?);
    }
    Ok(erased)
}

/// Applies the retention rule at start and every hour until `shutdown` (the server runs it;
/// workers hold no assignment of their own).
pub async fn retention_loop(
    store: std::sync::Arc<dyn Store>,
    repos: Repos,
    data_dir: std::path::PathBuf,
    days: u32,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        match apply_retention(store.as_ref(), &repos, &data_dir, days, crate::units::now()).await {
            Ok(erased) if !erased.is_empty() => tracing::info!(assignments = erased.len(), days, "retention: decided assignments erased"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %crate::errors::Chain(&e), "retention: cannot erase"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Removes the fetched copies under `dir` (`<assignment>.git`, a worker's `worker-repos/`) of
/// assignments the store no longer holds (erased); returns how many.
pub async fn prune_copies(store: &dyn Store, dir: &Path) -> Result<usize, EraseError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(EraseError::File(dir.to_path_buf(), e)),
    };
    let held: std::collections::HashSet<String> = store.assignments().await?.into_iter().map(|a| a.id).collect();
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".git") else { continue };
        if held.contains(id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        std::fs::remove_dir_all(entry.path()).map_err(|e| EraseError::File(entry.path(), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// A worker's loop around [`prune_copies`] until `shutdown`.
pub async fn prune_copies_loop(store: std::sync::Arc<dyn Store>, dir: std::path::PathBuf, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        match prune_copies(store.as_ref(), &dir).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "copies of erased assignments removed from this worker"),
            Err(e) => tracing::warn!(error = %crate::errors::Chain(&e), "cannot remove copies of erased assignments"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
        }
    }
}

/// What [`export_candidate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub assignments: usize,
    pub submissions: usize,
}

/// Writes everything held about `candidate` to `file` (a `.tar.gz`): `candidate.json` (each
/// assignment with its submissions and their reports, report history, public runs and notes, its
/// review items, extensions, final choice and the webhook deliveries that name it; never a token
/// or its hash) and each assignment's repository under `repos/`.
pub async fn export_candidate(store: &dyn Store, repos: &Repos, candidate: &str, file: &Path) -> Result<Exported, EraseError> {
    let wanted = candidate.trim().to_lowercase();
    let theirs: Vec<crate::store::Assignment> = store.assignments().await?.into_iter().filter(|a| a.candidate.trim().to_lowercase() == wanted).collect();
    if theirs.is_empty() {
        return Err(EraseError::NoCandidate(candidate.trim().to_string()));
    }
    let webhooks = store.webhooks(i64::MAX).await?;
    let contacts = store.contacts().await?;
    let emails = store.emails(i64::MAX).await?;
    let mut documents = Vec::new();
    let mut submissions_total = 0;
    for a in &theirs {
        let mut submissions = Vec::new();
        for s in store.submissions(Some(&a.id), None).await? {
            let report = store.submission(s.id).await?.and_then(|(_, r)| r).and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok());
            let history: Vec<serde_json::Value> = store.report_history(s.id).await?.iter().map(|h| serde_json::to_value(h).unwrap_or_default()).collect();
            let public_run = store.public_run(s.id).await?.and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok());
            let notes = store.notes(s.id).await?;
            submissions.push(serde_json::json!({ "submission": s, "report": report, "report_history": history, "public_run": public_run, "notes": notes }));
        }
        submissions_total += submissions.len();
        let quoted = format!("\"{}\"", a.id);
        documents.push(serde_json::json!({
            "assignment": a,
            "submissions": submissions,
            "reviews": store.reviews(Some(&a.id)).await?,
            "extensions": store.extensions(&a.id).await?,
            "final_choice": store.final_choice(&a.id).await?,
            "webhooks": webhooks.iter().filter(|w| w.body.contains(&quoted)).collect::<Vec<_>>(),
            "email_address": contacts.get(&a.id),
            "emails": emails.iter().filter(|e| e.assignment == a.id).collect::<Vec<_>>(),
        }));
    }
    let document = serde_json::json!({ "candidate": candidate.trim(), "exported_at": crate::report::rfc3339(crate::units::now()), "assignments": documents });
    let text = serde_json::to_vec_pretty(&document).expect("serialisable");
    let paths: Vec<(String, std::path::PathBuf)> = theirs.iter().map(|a| (a.id.clone(), repos.path(&a.id))).collect();
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(), EraseError> {
        let io = |e: std::io::Error| EraseError::File(file.clone(), e);
        let out = std::fs::File::create(&file).map_err(io)?;
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(out, flate2::Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "candidate.json", text.as_slice()).map_err(io)?;
        for (id, path) in &paths {
            if path.is_dir() {
                crate::backup::archive_repository(&mut tar, path, &Path::new("repos").join(format!("{id}.git")))
                    .map_err(|e| EraseError::File(path.clone(), std::io::Error::other(crate::errors::chain(&e))))?;
            }
        }
        tar.into_inner().map_err(io)?.finish().map_err(io)?;
        Ok(())
    })
    .await
    .map_err(|e| EraseError::File(std::path::PathBuf::from("(export)"), std::io::Error::other(e)))??;
    Ok(Exported { assignments: theirs.len(), submissions: submissions_total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_keeps_only_copies_of_assignments_the_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let kept = crate::store::Assignment {
            id: "a0kept".into(),
            task: "t".parse().unwrap(),
            candidate: "c".into(),
            token_hash: String::new(),
            time_box_seconds: 60,
            starts: crate::store::Starts::Now,
            started_at: Some(0),
            created_at: 0,
            extra_seconds: 0,
        };
        store.create_assignment(&kept).await.unwrap();
        let copies = dir.path().join("worker-repos");
        for name in ["a0kept.git", "a0erased.git"] {
            std::fs::create_dir_all(copies.join(name).join("objects")).unwrap();
        }
        std::fs::write(copies.join("notes.txt"), "not a copy").unwrap();
        assert_eq!(prune_copies(&store, &copies).await.unwrap(), 1);
        assert!(copies.join("a0kept.git").is_dir() && !copies.join("a0erased.git").exists() && copies.join("notes.txt").is_file());
        assert_eq!(prune_copies(&store, &dir.path().join("none")).await.unwrap(), 0);
    }
}
