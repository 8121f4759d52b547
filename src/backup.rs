//! Backups of a server whose store is SQLite: [`backup`] writes one `.tar.gz` holding a consistent
//! copy of the store (SQLite's `VACUUM INTO`, taken while the daemon runs and writes) and every
//! candidate's repository; [`restore`] unpacks one into an empty data folder. The store is copied
//! first and the repositories after it, each repository's refs before its objects, so that every
//! commit the copied store or refs name is in the copy (a push that lands meanwhile adds objects
//! the store does not know yet: harmless). A PostgreSQL store is backed up with `pg_dump`
//! (docs/scaling.md); these refuse it.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;
use crate::store::DatabaseUrl;

/// The store's file inside a backup.
const STORE_ENTRY: &str = "takehome.sqlite";
/// The repositories' folder inside a backup.
const REPOS_ENTRY: &str = "repos";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub assignments: usize,
    pub repositories: usize,
    /// Bytes of the files archived (before compression).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the store is PostgreSQL: back it up with pg_dump and copy the repositories folder after it (docs/scaling.md)")]
    Postgres,
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("SQLite")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackupError + 'a {
    move |source| BackupError::Io { action, path: path.to_path_buf(), source }
}

fn sqlite_path(config: &Config) -> Result<&Path, BackupError> {
    match &config.database {
        DatabaseUrl::Sqlite(path) => Ok(path),
        DatabaseUrl::Postgres(_) => Err(BackupError::Postgres),
    }
}

/// Writes a backup of the server `config` describes to `file` (a `.tar.gz`; written beside it
/// first and renamed when whole). Safe while `serve` runs.
pub fn backup(config: &Config, file: &Path) -> Result<Summary, BackupError> {
    let store = sqlite_path(config)?;
    if !store.is_file() {
        return Err(BackupError::Invalid(format!("{}: no store here (is this the server's config?)", store.display())));
    }
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new().prefix(".takehome-backup-").tempdir_in(dir).map_err(io_error("create a scratch folder in", dir))?;
    let copy = staging.path().join(STORE_ENTRY);
    {
        // Read-write flags: a WAL store's reader may need to create its shared-memory file.
        let connection = rusqlite::Connection::open(store)?;
        connection.busy_timeout(std::time::Duration::from_secs(30))?;
        connection.execute("VACUUM INTO ?1", [copy.to_str().ok_or_else(|| BackupError::Invalid("the scratch folder's path is not UTF-8".into()))?])?;
    }
    let assignments = count_assignments(&copy)?;
    let partial = staging.path().join("backup.tar.gz");
    let out = File::create(&partial).map_err(io_error("create", &partial))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(out, flate2::Compression::fast()));
    tar.mode(tar::HeaderMode::Deterministic);
    let mut bytes = std::fs::metadata(&copy).map_err(io_error("read", &copy))?.len();
    tar.append_path_with_name(&copy, STORE_ENTRY).map_err(io_error("archive", &copy))?;
    let repos = config.repos_dir();
    let mut repositories = 0;
    if repos.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&repos).map_err(io_error("list", &repos))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for repo in names.iter().filter(|p| p.is_dir() && !p.is_symlink()) {
            let name = repo.file_name().expect("a listed entry has a name");
            bytes += archive_repository(&mut tar, repo, &Path::new(REPOS_ENTRY).join(name))?;
            repositories += 1;
        }
    }
    let encoder = tar.into_inner().map_err(io_error("write", &partial))?;
    encoder.finish().map_err(io_error("write", &partial))?.sync_all().map_err(io_error("write", &partial))?;
    std::fs::rename(&partial, file).map_err(io_error("write", file))?;
    Ok(Summary { assignments, repositories, bytes })
}

/// One bare repository: its refs first (HEAD, packed-refs, refs/), then the rest, regular files
/// and folders only (no link is followed or archived). Returns the bytes archived.
pub(crate) fn archive_repository<W: io::Write>(tar: &mut tar::Builder<W>, repo: &Path, name: &Path) -> Result<u64, BackupError> {
    let mut entries: Vec<(u8, PathBuf)> = Vec::new();
    for entry in walkdir::WalkDir::new(repo).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| BackupError::Io { action: "walk", path: repo.to_path_buf(), source: e.into() })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(repo).expect("under the repository").to_path_buf();
        let first = relative.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or("");
        let rank = match first {
            "HEAD" | "packed-refs" | "refs" => 0,
            _ => 1,
        };
        entries.push((rank, relative));
    }
    entries.sort();
    let mut bytes = 0;
    for (_, relative) in entries {
        let path = repo.join(&relative);
        // A file git removed since the walk (a loose object packed, a lock let go) is skipped.
        let Ok(mut file) = File::open(&path) else { continue };
        let Ok(meta) = file.metadata() else { continue };
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        bytes += meta.len();
        tar.append_data(&mut header, name.join(&relative), &mut file).map_err(io_error("archive", &path))?;
    }
    Ok(bytes)
}

fn count_assignments(store: &Path) -> Result<usize, BackupError> {
    let connection = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = connection.query_row("SELECT COUNT(*) FROM assignments", [], |row| row.get(0))?;
    Ok(n as usize)
}

/// Unpacks backup `file` into the data folder of `config` (which must be empty or missing) and
/// its store's path. Refuses an entry that is not a plain file or folder, or whose path leaves
/// the folder.
pub fn restore(config: &Config, file: &Path) -> Result<Summary, BackupError> {
    let store = sqlite_path(config)?.to_path_buf();
    let data = &config.data_dir;
    if data.exists() && std::fs::read_dir(data).map_err(io_error("list", data))?.next().is_some() {
        return Err(BackupError::Invalid(format!("{}: not empty; restore into a new data folder (data_dir)", data.display())));
    }
    if store.exists() {
        return Err(BackupError::Invalid(format!("{}: a store is already there", store.display())));
    }
    std::fs::create_dir_all(data).map_err(io_error("create", data))?;
    let unpacked = unpack(file, data, &store);
    if unpacked.is_err() {
        // Nothing of a refused or broken backup is left: the folder was empty.
        let _ = std::fs::remove_dir_all(data);
        let _ = std::fs::remove_file(&store);
    }
    let (bytes, repositories) = unpacked?;
    Ok(Summary { assignments: count_assignments(&store)?, repositories, bytes })
}

/// The entries of backup `file` into `data` (and its store to `store`): bytes and repositories.
fn unpack(file: &Path, data: &Path, store: &Path) -> Result<(u64, usize), BackupError> {
    let input = File::open(file).map_err(io_error("open", file))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let (mut bytes, mut repositories, mut found_store) = (0u64, std::collections::BTreeSet::new(), false);
    for entry in archive.entries().map_err(io_error("read", file))? {
        let mut entry = entry.map_err(io_error("read", file))?;
        let path = entry.path().map_err(io_error("read", file))?.into_owned();
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || !matches!(entry.header().entry_type(), tar::EntryType::Regular) {
            return Err(BackupError::Invalid(format!("{}: {}: not a plain file of a takehome backup", file.display(), path.display())));
        }
        let target = if path == Path::new(STORE_ENTRY) {
            found_store = true;
            store.to_path_buf()
        } else if path.starts_with(REPOS_ENTRY) {
            if let Some(repo) = path.components().nth(1) {
                repositories.insert(repo.as_os_str().to_owned());
            }
            data.join(&path)
        } else {
            return Err(BackupError::Invalid(format!("{}: {}: not part of a takehome backup", file.display(), path.display())));
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        let mut out = File::options().write(true).create_new(true).open(&target).map_err(io_error("create", &target))?;
        bytes += io::copy(&mut entry, &mut out).map_err(io_error("write", &target))?;
    }
    if !found_store {
        return Err(BackupError::Invalid(format!("{}: holds no store: not a takehome backup", file.display())));
    }
    Ok((bytes, repositories.len()))
}
