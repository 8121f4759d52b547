//! Safe extraction of a tar stream that came out of a container.
//!
//! Invariant: only regular files and folders are written, only below `dest`, only with names
//! made of plain components. Symbolic links, hard links, devices, FIFOs, absolute paths and `..`
//! are refused and reported, never followed or created. Sizes are checked against the header and
//! against what is actually read. Pure I/O on a reader and a folder the host created; no Docker.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many entries are read from one archive.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub path: String,
    /// What was wrong, as a kind: the one part of a refusal that a candidate may see of a run that
    /// read hidden data (the path and the reason are the step's choice, so they can carry data).
    #[serde(default)]
    pub kind: RefusalKind,
    pub reason: String,
}

/// Why an entry that came out of a container was refused, as a closed set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// An absolute path or a `..` component.
    Escape,
    SymbolicLink,
    HardLink,
    Device,
    Fifo,
    UnsupportedType,
    /// Past the byte cap that grading reads.
    TooLarge,
    /// Past the entry cap of one archive.
    TooManyEntries,
    /// A file whose apparent size is far above what was written.
    Sparse,
    /// A report written before kinds existed.
    #[default]
    Other,
}

impl RefusalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::Escape => "an absolute path or a '..' component",
            RefusalKind::SymbolicLink => "symbolic links",
            RefusalKind::HardLink => "hard links",
            RefusalKind::Device => "device files",
            RefusalKind::Fifo => "FIFOs",
            RefusalKind::UnsupportedType => "unsupported file types",
            RefusalKind::TooLarge => "files larger than grading reads",
            RefusalKind::TooManyEntries => "more entries than grading reads",
            RefusalKind::Sparse => "sparse files",
            RefusalKind::Other => "refused entries",
        }
    }
}

/// What came out of the container.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extracted {
    /// Regular files written, relative to `dest`, with their sizes.
    pub files: Vec<(PathBuf, u64)>,
    pub rejected: Vec<Rejected>,
    /// The path asked for does not exist in the container.
    pub missing: bool,
    /// Set when the archive was larger than the cap (in bytes); nothing was written then.
    pub too_large: Option<u64>,
}

impl Extracted {
    pub fn missing() -> Extracted {
        Extracted { missing: true, ..Default::default() }
    }
    pub fn too_large(cap: u64) -> Extracted {
        Extracted { too_large: Some(cap), ..Default::default() }
    }
}

/// True for a single plain path component: no separators, not `.` or `..`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\0') && name != "." && name != ".."
}

/// Unpacks `reader` into `dest`, which must exist and be empty of anything the archive names.
pub fn extract_safely(reader: impl Read, dest: &Path, max_bytes: u64) -> io::Result<Extracted> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Extracted::default();
    let mut written: u64 = 0;
    for (index, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if index >= MAX_ENTRIES {
            out.rejected.push(Rejected {
                path: raw,
                kind: RefusalKind::TooManyEntries,
                reason: format!("more than {MAX_ENTRIES} entries; the rest were ignored"),
            });
            break;
        }
        let Some(relative) = plain_relative(&raw) else {
            out.rejected.push(Rejected { path: raw, kind: RefusalKind::Escape, reason: "an absolute path or a '..' component".to_string() });
            continue;
        };
        let kind = entry.header().entry_type();
        let refusal = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => None,
            tar::EntryType::Symlink => Some((RefusalKind::SymbolicLink, "a symbolic link (outputs must be regular files)".to_string())),
            tar::EntryType::Link => Some((RefusalKind::HardLink, "a hard link (outputs must be regular files)".to_string())),
            tar::EntryType::Char | tar::EntryType::Block => Some((RefusalKind::Device, "a device file".to_string())),
            tar::EntryType::Fifo => Some((RefusalKind::Fifo, "a FIFO".to_string())),
            other => Some((RefusalKind::UnsupportedType, format!("an unsupported file type ({other:?})"))),
        };
        if let Some((kind, reason)) = refusal {
            out.rejected.push(Rejected { path: raw, kind, reason });
            continue;
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        if kind == tar::EntryType::Directory {
            create_dirs(dest, &relative)?;
            continue;
        }
        let size = entry.header().size()?;
        if written + size > max_bytes {
            out.rejected.push(Rejected {
                path: raw,
                kind: RefusalKind::TooLarge,
                reason: format!("larger than the {} that grading reads", crate::units::format_size(max_bytes)),
            });
            continue;
        }
        if let Some(parent) = relative.parent() {
            create_dirs(dest, parent)?;
        }
        // create_new: never write through something that already exists at that name.
        let mut file = OpenOptions::new().write(true).create_new(true).open(&target)?;
        let copied = io::copy(&mut (&mut entry).take(size), &mut file)?;
        file.flush()?;
        written += copied;
        out.files.push((relative, copied));
    }
    Ok(out)
}

/// Creates `dest/relative` folder by folder, refusing to pass through anything that is not a
/// folder we made (a link cannot be there: we never create one).
fn create_dirs(dest: &Path, relative: &Path) -> io::Result<()> {
    let mut current = dest.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(io::Error::other(format!("{} exists and is not a folder", current.display()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir(&current)?,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn plain_relative(raw: &str) -> Option<PathBuf> {
    let path = Path::new(raw);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses '..'; write the raw name, as a hostile archive would.
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_cksum();
        builder.append(&header, body).unwrap();
    }

    fn link(builder: &mut tar::Builder<Vec<u8>>, name: &str, target: &str, kind: tar::EntryType) {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_entry_type(kind);
        header.set_path(name).unwrap();
        header.set_link_name(target).unwrap();
        header.set_cksum();
        builder.append(&header, &[][..]).unwrap();
    }

    #[test]
    fn regular_files_are_written_and_links_refused() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = archive(|b| {
            file(b, "output/predictions.csv", b"id,label\n1,a\n");
            link(b, "output/passwd", "/etc/passwd", tar::EntryType::Symlink);
            link(b, "output/hard", "output/predictions.csv", tar::EntryType::Link);
            file(b, "output/../escape.txt", b"x");
        });
        let out = extract_safely(&bytes[..], dest.path(), 1 << 20).unwrap();
        assert_eq!(out.files, vec![(PathBuf::from("output/predictions.csv"), 13)]);
        let reasons: Vec<&str> = out.rejected.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(reasons, ["output/passwd", "output/hard", "output/../escape.txt"]);
        assert!(!dest.path().join("escape.txt").exists());
        assert!(!dest.path().join("output/passwd").exists());
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dest = tempfile::tempdir().unwrap();
        let bytes = archive(|b| file(b, "big.csv", &vec![b'x'; 5000]));
        let out = extract_safely(&bytes[..], dest.path(), 1000).unwrap();
        assert!(out.files.is_empty());
        assert_eq!(out.rejected.len(), 1);
    }
}
