//! The host's copy of a candidate's submission, made before anything runs.
//!
//! Invariant: the host never follows a link inside the candidate's folder and never runs what is
//! in it. The copy is an allow-list: regular files and folders only, each opened with
//! `O_NOFOLLOW` below a folder we walked without following links. Symbolic links are *never*
//! carried into the copy, whatever their text says: a link that looks harmless on its own can
//! escape through another (`s -> .` with `x -> s/s/../../etc`), and the copy is what the host later
//! reads back (lint context, line counts) and mounts into containers. Every link left out is
//! reported. Sockets, FIFOs and devices are not copied. `.git` is not copied; the commit is read
//! from `.git/HEAD` and the refs as plain files, without running git (a candidate's `.git/config`
//! could name programs that git would run).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const MAX_FILES: usize = 20_000;
pub const MAX_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("{}: not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: more than {MAX_FILES} files", .0.display())]
    TooManyFiles(PathBuf),
    #[error("{}: larger than {}", .0.display(), crate::units::format_size(MAX_BYTES))]
    TooLarge(PathBuf),
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SubmissionError {
    /// True when the candidate's folder is at fault (too big), not our side.
    pub fn is_candidates(&self) -> bool {
        matches!(self, SubmissionError::TooManyFiles(_) | SubmissionError::TooLarge(_))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedLink {
    pub path: String,
    pub target: String,
}

/// A copy of the submission in a temporary folder of the host's, readable by the runner user.
#[derive(Debug)]
pub struct PreparedSubmission {
    pub source: PathBuf,
    pub commit: Option<String>,
    pub n_files: usize,
    pub n_bytes: u64,
    pub skipped_links: Vec<SkippedLink>,
    /// Python files and notebooks (relative paths), for the lint's line counts.
    pub python_files: Vec<PathBuf>,
    /// The R scripts and R Markdown files (`.R`, `.r`, `.Rmd`), for lintr and the count of
    /// lines of code.
    pub r_files: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl PreparedSubmission {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The Python files and notebooks below `source` (relative paths), found as [`prepare`] finds
/// them (no link followed or taken, `.git` left out, at most [`MAX_FILES`] files looked at), for
/// reading without a copy: the import scan that chooses a job's image. `None` when `source` is
/// not a folder or holds more files than a copy would take (the job then reports it).
pub fn python_files(source: &Path) -> Option<Vec<PathBuf>> {
    if !fs::symlink_metadata(source).ok()?.is_dir() {
        return None;
    }
    let mut found = Vec::new();
    let mut seen = 0;
    let walker = walkdir::WalkDir::new(source).follow_links(false).sort_by_file_name().into_iter();
    for entry in walker.filter_entry(|entry| entry.depth() != 1 || entry.file_name() != ".git") {
        let entry = entry.ok()?;
        if !entry.file_type().is_file() {
            continue;
        }
        seen += 1;
        if seen > MAX_FILES {
            return None;
        }
        let relative = entry.path().strip_prefix(source).expect("walkdir stays below its root");
        if relative.extension().is_some_and(|ext| ext == "py" || ext == "ipynb") {
            found.push(relative.to_path_buf());
        }
    }
    Some(found)
}

/// Copies `source` into a fresh temporary folder.
pub fn prepare(source: &Path) -> Result<PreparedSubmission, SubmissionError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SubmissionError::Io { action, path, source }
    };
    let meta = fs::symlink_metadata(source).map_err(io_error("read", source))?;
    if !meta.is_dir() {
        return Err(SubmissionError::NotAFolder(source.to_path_buf()));
    }
    let dir = tempfile::Builder::new().prefix("takehome-submission-").tempdir().map_err(io_error("create a copy of", source))?;
    // The runner user (not root) must be able to read the copy.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).map_err(io_error("set permissions on", dir.path()))?;
    let mut prepared = PreparedSubmission {
        source: source.to_path_buf(),
        commit: read_commit(source),
        n_files: 0,
        n_bytes: 0,
        skipped_links: Vec::new(),
        python_files: Vec::new(),
        r_files: Vec::new(),
        dir,
    };
    let walker = walkdir::WalkDir::new(source).follow_links(false).sort_by_file_name().into_iter();
    for entry in walker.filter_entry(|entry| entry.depth() != 1 || entry.file_name() != ".git") {
        let entry = entry.map_err(|error| {
            let path = error.path().unwrap_or(source).to_path_buf();
            SubmissionError::Io { action: "walk", path, source: error.into() }
        })?;
        let relative = entry.path().strip_prefix(source).expect("walkdir stays below its root");
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = prepared.dir.path().join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir(&target).map_err(io_error("create", &target))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io_error("set permissions on", &target))?;
        } else if kind.is_file() {
            prepared.n_files += 1;
            if prepared.n_files > MAX_FILES {
                return Err(SubmissionError::TooManyFiles(source.to_path_buf()));
            }
            // Copy from an opened handle, refusing to open through a link that appeared since the walk.
            let mut from = open_no_follow(entry.path()).map_err(io_error("read", entry.path()))?;
            let mut to = fs::OpenOptions::new().write(true).create_new(true).open(&target).map_err(io_error("write", &target))?;
            prepared.n_bytes += io::copy(&mut from, &mut to).map_err(io_error("copy", entry.path()))?;
            if prepared.n_bytes > MAX_BYTES {
                return Err(SubmissionError::TooLarge(source.to_path_buf()));
            }
            let executable = from.metadata().map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
            let mode = if executable { 0o755 } else { 0o644 };
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_error("set permissions on", &target))?;
            if relative.extension().is_some_and(|ext| ext == "py" || ext == "ipynb") {
                prepared.python_files.push(relative.to_path_buf());
            } else if relative.extension().is_some_and(|ext| ext == "R" || ext == "r" || ext == "Rmd" || ext == "rmd") {
                prepared.r_files.push(relative.to_path_buf());
            }
        } else if kind.is_symlink() {
            // Only the link's text is read (readlink never follows); the link itself is not copied.
            let link = fs::read_link(entry.path()).map_err(io_error("read the link", entry.path()))?;
            prepared
                .skipped_links
                .push(SkippedLink { path: relative.to_string_lossy().into_owned(), target: link.to_string_lossy().chars().take(300).collect() });
        }
        // Sockets, FIFOs and devices are not copied.
    }
    Ok(prepared)
}

/// Opens a file for reading without following a link at its last component.
pub fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags(libc_o_nofollow()).open(path)
}

const fn libc_o_nofollow() -> i32 {
    // O_NOFOLLOW on Linux (all architectures we build for use this value except alpha/parisc).
    0o400000
}

/// The commit that `.git/HEAD` names, read as plain files (no git process, no links followed).
fn read_commit(source: &Path) -> Option<String> {
    let git = source.join(".git");
    if !fs::symlink_metadata(&git).ok()?.is_dir() {
        return None;
    }
    let read = |relative: &str| -> Option<String> {
        let path = git.join(relative);
        if !fs::symlink_metadata(&path).ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(open_no_follow(&path).ok()?, 64 << 10), &mut text).ok()?;
        Some(text)
    };
    let head = read("HEAD")?;
    let head = head.trim();
    let is_hash = |text: &str| text.len() >= 40 && text.chars().all(|c| c.is_ascii_hexdigit());
    if is_hash(head) {
        return Some(head.to_string());
    }
    let reference = head.strip_prefix("ref: ")?.trim();
    if !reference.starts_with("refs/") || reference.split('/').any(|part| part == ".." || part.is_empty()) {
        return None;
    }
    if let Some(hash) = read(reference).map(|text| text.trim().to_string()).filter(|text| is_hash(text)) {
        return Some(hash);
    }
    read("packed-refs")?.lines().find_map(|line| {
        let (hash, name) = line.split_once(' ')?;
        (name.trim() == reference && is_hash(hash)).then(|| hash.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_files_are_listed_in_place_without_taking_a_link() {
        let source = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("outside.py"), "import torch\n").unwrap();
        for (path, text) in [("train.py", ""), ("src/model.py", ""), ("work.ipynb", "{}"), ("notes.md", ""), (".git/hooks/x.py", "")] {
            let file = source.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        std::os::unix::fs::symlink(elsewhere.path(), source.path().join("linked")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("outside.py"), source.path().join("alias.py")).unwrap();
        let found = python_files(source.path()).unwrap();
        assert_eq!(found, [PathBuf::from("src/model.py"), PathBuf::from("train.py"), PathBuf::from("work.ipynb")]);
        assert!(python_files(&source.path().join("train.py")).is_none(), "not a folder");
    }

    #[test]
    fn no_link_is_carried_into_the_copy() {
        let source = tempfile::tempdir().unwrap();
        fs::write(source.path().join("main.py"), "print(1)\n").unwrap();
        std::os::unix::fs::symlink(".", source.path().join("s")).unwrap();
        std::os::unix::fs::symlink("s/s/../../../../etc/passwd", source.path().join("x.py")).unwrap();
        std::os::unix::fs::symlink("main.py", source.path().join("alias.py")).unwrap();
        let prepared = prepare(source.path()).unwrap();
        let mut skipped: Vec<&str> = prepared.skipped_links.iter().map(|l| l.path.as_str()).collect();
        skipped.sort();
        assert_eq!(skipped, ["alias.py", "s", "x.py"]);
        assert_eq!(prepared.python_files, [PathBuf::from("main.py")]);
        for name in ["s", "x.py", "alias.py"] {
            assert!(fs::symlink_metadata(prepared.path().join(name)).is_err(), "{name} was carried into the copy");
        }
    }
}
