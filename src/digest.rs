//! Content digests of folders (runner image recipes, data sets), for tags and provenance.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// sha256 over every regular file below `dir` (links are not followed): its relative path, its
/// length and its bytes, in path order. Hex-encoded.
pub fn tree_digest(dir: &Path) -> io::Result<String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(io::Error::from)?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    let mut hasher = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(dir).unwrap_or(file);
        let mut reader = std::fs::File::open(file)?;
        let length = reader.metadata()?.len();
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(length.to_le_bytes());
        io::copy(&mut reader, &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// [`tree_digest`], remembered per folder for as long as no file in it changes: every file's
/// path, size, modification time and inode are compared (a walk of `stat`s), and only a change
/// reads the bytes again. A job pays a few microseconds instead of hashing the data set.
pub fn tree_digest_cached(dir: &Path) -> io::Result<String> {
    /// A file's identity: path, size, modification time (seconds, nanoseconds), inode.
    type Identity = (PathBuf, u64, i64, i64, u64);
    type Cache = HashMap<PathBuf, (Vec<Identity>, String)>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let mut identity = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(io::Error::from)?;
        if entry.file_type().is_file() {
            let meta = entry.metadata().map_err(io::Error::from)?;
            identity.push((entry.into_path(), meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()));
        }
    }
    if let Some((known, digest)) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|cache| cache.get(dir)) {
        if *known == identity {
            return Ok(digest.clone());
        }
    }
    let digest = tree_digest(dir)?;
    CACHE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(dir.to_path_buf(), (identity, digest.clone()));
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_notices_a_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "1\n").unwrap();
        let first = tree_digest_cached(dir.path()).unwrap();
        assert_eq!(first, tree_digest(dir.path()).unwrap());
        assert_eq!(tree_digest_cached(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("a.csv"), "22\n").unwrap();
        let second = tree_digest_cached(dir.path()).unwrap();
        assert_ne!(second, first);
        assert_eq!(second, tree_digest(dir.path()).unwrap());
    }
}
