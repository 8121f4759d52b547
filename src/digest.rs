//! Content digests of folders (runner image recipes, data sets), for tags and provenance.

use std::io;
use std::path::Path;

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
