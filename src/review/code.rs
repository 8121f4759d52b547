//! The code view: every file of a submitted commit as git recorded it (nothing is checked out, no
//! link is followed: a link is listed with its target as text), each compared with what we gave
//! the candidate (the repository's first commit: brief, starter code, public data), so that the
//! reader sees what the candidate wrote; Python highlighted on the server with tree-sitter,
//! notebooks split into cells.
//!
//! Everything here is candidate-made: the HTML it produces escapes every byte of it (tree-sitter's
//! renderer escapes the source; the rest goes through [`esc`]).
//!
//! *A view is bounded whatever was pushed*: at most [`MAX_FILE_LINES`] lines and
//! [`MAX_FILE_BYTES`] of each file, [`PAGE_BYTES`] and [`PAGE_LINES`] over the page, [`MAX_SHOWN`]
//! files read and [`MAX_LISTED`] listed, [`PAGE_TIME`] to build it; bytes are counted as they
//! cost once escaped ([`cost`]). A diff is tried only when both sides are under
//! [`DIFF_MAX_BYTES`] and [`DIFF_MAX_LINES`], and given [`DIFF_TIME`]. Whatever is cut says so
//! ([`Cut`], [`DiffStatus`]); blobs are read only up to what can be shown (the caller's `read`
//! stops at the cap it is given).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use crate::notebook::{notebook_cells, Cell, MAX_OUTPUT};

use serde::Serialize;
use similar::{Algorithm, ChangeTag, TextDiff};

use crate::intake::TreeEntry;
use crate::units::format_size;
use maud::{html, Markup, PreEscaped};

/// Lines shown per file.
pub const MAX_FILE_LINES: usize = 2_000;
/// Text shown per file, as it costs escaped ([`cost`]).
pub const MAX_FILE_BYTES: usize = 256 << 10;
/// Text shown per page over all files and diffs, as it costs escaped.
pub const PAGE_BYTES: usize = 2 << 20;
/// Lines shown per page over all files and diffs.
pub const PAGE_LINES: usize = 20_000;
/// Files read per page; the rest are listed.
pub const MAX_SHOWN: usize = 200;
/// Files listed per page; the rest are counted.
pub const MAX_LISTED: usize = 1_000;
/// Paths listed per page, as they cost escaped (with their markup).
pub const LISTING_BYTES: usize = 512 << 10;
/// The time to build one view; files not reached by then are listed.
pub const PAGE_TIME: Duration = Duration::from_millis(1500);
/// A diff is tried only when each side is at most this many bytes…
pub const DIFF_MAX_BYTES: u64 = 1 << 20;
/// …and this many lines.
pub const DIFF_MAX_LINES: usize = 20_000;
/// The time one diff may take; past it the file is "too different to show as a diff".
pub const DIFF_TIME: Duration = Duration::from_secs(1);
/// Diff text shown per file, as it costs escaped.
pub const MAX_DIFF_BYTES: usize = 256 << 10;
/// The lines of a file are counted (to say "shown 2,000 of 524,288 lines") when it is at most
/// this large.
pub const MAX_COUNTED: u64 = 8 << 20;
/// Notebooks are parsed when they are at most this large.
pub const MAX_NOTEBOOK: u64 = 2 << 20;
/// Cells kept per notebook.
pub const MAX_CELLS: usize = 500;
/// A link's target shown.
pub const MAX_LINK: u64 = 4 << 10;
/// Lines counted per page (past the part shown) to say how many a file has.
pub const PAGE_COUNTED: u64 = 64 << 20;
/// Less of the page's budget than this left, no more file is read.
const MIN_LEFT: usize = 4 << 10;
/// What one listed file or notebook cell costs in markup beside its text.
const LISTED_MARKUP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Text,
    Notebook,
    Binary,
    /// A notebook too large to parse (over [`MAX_NOTEBOOK`]).
    TooLarge,
    /// A symbolic link: shown as its target text, never followed.
    Link,
    Submodule,
    /// Listed, not read: the data we gave, or the page's budget or time was spent (see `cut`).
    Listed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Not in the starter.
    Added,
    /// In the starter, with other content.
    Modified,
    /// Exactly as the starter gave it.
    Unchanged,
}

/// Why a file is shown in part, or listed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutReason {
    /// More than [`MAX_FILE_LINES`] lines.
    FileLines,
    /// More than [`MAX_FILE_BYTES`].
    FileBytes,
    /// More than [`MAX_CELLS`] cells.
    Cells,
    /// The page's budget ([`PAGE_BYTES`], [`PAGE_LINES`]) was spent.
    PageBudget,
    /// The page's [`PAGE_TIME`] was spent (or its request went away).
    PageTime,
    /// [`MAX_SHOWN`] files were already read.
    FilesShown,
    /// NOTES.md past what is rendered ([`markdown::MAX_NOTES`](super::markdown::MAX_NOTES)).
    Notes,
}

impl CutReason {
    fn why(self) -> String {
        match self {
            CutReason::FileLines => format!("at most {} lines of a file are shown", thousands(MAX_FILE_LINES as u64)),
            CutReason::FileBytes => format!("at most {} of a file are shown", format_size(MAX_FILE_BYTES as u64)),
            CutReason::Cells => format!("at most {MAX_CELLS} cells of a notebook are shown"),
            CutReason::PageBudget => {
                format!("this page's budget of {} and {} lines of source is spent", format_size(PAGE_BYTES as u64), thousands(PAGE_LINES as u64))
            }
            CutReason::PageTime => "this page's time to read files is spent".into(),
            CutReason::FilesShown => format!("at most {MAX_SHOWN} files are shown per page"),
            CutReason::Notes => format!("at most {} of NOTES.md are rendered", format_size(super::markdown::MAX_NOTES as u64)),
        }
    }
}

/// What of a file is shown, when not all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cut {
    pub reason: CutReason,
    pub shown_lines: u64,
    pub shown_bytes: u64,
    /// The file's lines, when they were counted (files up to [`MAX_COUNTED`]).
    pub total_lines: Option<u64>,
    pub total_bytes: u64,
    /// For people: `shown 2,000 of 524,288 lines (at most 2,000 lines of a file are shown)`.
    pub note: String,
}

impl Cut {
    /// A file shown in part: `shown_lines` lines (`shown_bytes`) of the whole.
    pub fn part(reason: CutReason, shown_lines: u64, shown_bytes: u64, total_lines: Option<u64>, total_bytes: u64) -> Cut {
        let what = match total_lines {
            Some(total) => format!("shown {} of {} lines", thousands(shown_lines), thousands(total)),
            None => format!("shown {} lines ({}) of {}", thousands(shown_lines), format_size(shown_bytes), format_size(total_bytes)),
        };
        Cut { reason, shown_lines, shown_bytes, total_lines, total_bytes, note: format!("{what}: {}", reason.why()) }
    }

    fn listed(reason: CutReason, total_bytes: u64) -> Cut {
        Cut { reason, shown_lines: 0, shown_bytes: 0, total_lines: None, total_bytes, note: format!("not shown: {}", reason.why()) }
    }
}

/// What became of the diff against the starter's version (modified text files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    /// `diff` is the whole diff.
    Shown,
    /// `diff` is its first part (the file's or the page's budget).
    Cut,
    /// A side is over [`DIFF_MAX_BYTES`] or [`DIFF_MAX_LINES`]: not tried.
    TooLarge,
    /// Not found within [`DIFF_TIME`].
    TooDifferent,
    /// The page's budget or time was spent first.
    NotRun,
}

impl DiffStatus {
    /// For people, when the diff is not whole.
    pub fn note(self) -> Option<String> {
        match self {
            DiffStatus::Shown => None,
            DiffStatus::Cut => Some(format!("diff cut: at most {} of a diff are shown", format_size(MAX_DIFF_BYTES as u64))),
            DiffStatus::TooLarge => {
                Some(format!("too large to show as a diff (a side over {} or {} lines)", format_size(DIFF_MAX_BYTES), thousands(DIFF_MAX_LINES as u64)))
            }
            DiffStatus::TooDifferent => Some(format!("too different to show as a diff (none found within {} s)", DIFF_TIME.as_secs_f64())),
            DiffStatus::NotRun => Some("no diff: this page's budget or time was spent".into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeFile {
    pub path: String,
    pub size: u64,
    pub kind: FileKind,
    pub change: Change,
    /// `python`, `markdown`, or none (plain text).
    pub language: Option<&'static str>,
    /// The text, when shown (text files and link targets): all of it, or its first part (`cut`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Notebook cells, when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cells: Option<Vec<Cell>>,
    /// What was left out, when the file is shown in part or listed only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// 1-based numbers of the shown lines that the starter's version did not have.
    pub added_lines: Vec<u32>,
    /// Unified diff against the starter's version (modified files), whole or cut (`diff_status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_status: Option<DiffStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    pub commit: String,
    pub files: Vec<CodeFile>,
    /// Files of the commit past the listing's bounds ([`MAX_LISTED`], [`LISTING_BYTES`]).
    pub not_listed: usize,
    /// Files we gave that the submission no longer has.
    pub removed: Vec<String>,
    /// For people, when anything was cut: what this page shows at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
}

/// The first bytes of a blob, as the caller's reader gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix {
    /// At most the cap asked for.
    pub bytes: Vec<u8>,
    /// Whether `bytes` is the whole blob.
    pub whole: bool,
    /// The whole blob's lines (as [`str::lines`] counts them), when they were counted.
    pub lines: Option<u64>,
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What a byte of candidate text costs once escaped for HTML (`&quot;`) or JSON (`\u0001`).
fn byte_cost(b: u8) -> usize {
    match b {
        b'<' | b'>' | b'&' | b'"' | b'\'' => 6,
        b'\n' => 1,
        b'\t' => 2,
        0..=0x1f | 0x7f => 6,
        _ => 1,
    }
}

/// What `text` costs a page or an answer once escaped: its bytes, those that HTML or JSON escape
/// counted six times.
pub fn cost(text: &str) -> usize {
    text.bytes().map(byte_cost).sum()
}

/// Which bound stopped a [`cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Lines,
    Cost,
}

/// The first part of a text within bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Bytes of the text kept (a character boundary).
    pub end: usize,
    /// Lines kept, as [`str::lines`] counts them.
    pub lines: usize,
    /// What they cost ([`cost`]).
    pub cost: usize,
    /// `None`: all of it was kept.
    pub bound: Option<Bound>,
}

/// The longest first part of `text` within `max_lines` lines and `max_cost` ([`cost`]); a line
/// too long for what is left is cut inside, at a character boundary.
pub fn cut(text: &str, max_lines: usize, max_cost: usize) -> Piece {
    let bytes = text.as_bytes();
    let (mut spent, mut newlines) = (0usize, 0usize);
    let lines_at = |end: usize, newlines: usize| if end > 0 && bytes[end - 1] != b'\n' { newlines + 1 } else { newlines };
    if max_lines == 0 {
        return Piece { end: 0, lines: 0, cost: 0, bound: (!text.is_empty()).then_some(Bound::Lines) };
    }
    for (i, &b) in bytes.iter().enumerate() {
        let c = byte_cost(b);
        if spent + c > max_cost {
            let mut end = i;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let spent = cost(&text[..end]);
            return Piece { end, lines: lines_at(end, newlines), cost: spent, bound: Some(Bound::Cost) };
        }
        spent += c;
        if b == b'\n' {
            newlines += 1;
            if newlines == max_lines && i + 1 < bytes.len() {
                return Piece { end: i + 1, lines: newlines, cost: spent, bound: Some(Bound::Lines) };
            }
        }
    }
    Piece { end: bytes.len(), lines: lines_at(bytes.len(), newlines), cost: spent, bound: None }
}

fn language(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".py") || lower.ends_with(".pyi") {
        Some("python")
    } else if lower.ends_with(".r") {
        Some("r")
    } else if lower.ends_with(".md") || lower.ends_with(".markdown") {
        Some("markdown")
    } else {
        None
    }
}

/// Text, or `None` for binary: a NUL in the first 8 KiB, or not UTF-8 (but for a character cut
/// at the end of a part read).
fn as_text(bytes: &[u8], whole: bool) -> Option<&str> {
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if !whole && e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// What is left of a page's budget and time.
struct Page<'a> {
    cost_left: usize,
    lines_left: usize,
    files_read: usize,
    counted_left: u64,
    deadline: Instant,
    stop: &'a dyn Fn() -> bool,
    /// Files shown in part or listed only for the page's sake.
    cut_files: usize,
}

impl Page<'_> {
    /// Why no more file may be read, if so.
    fn exhausted(&self) -> Option<CutReason> {
        if (self.stop)() || Instant::now() >= self.deadline {
            Some(CutReason::PageTime)
        } else if self.files_read >= MAX_SHOWN {
            Some(CutReason::FilesShown)
        } else if self.cost_left < MIN_LEFT || self.lines_left == 0 {
            Some(CutReason::PageBudget)
        } else {
            None
        }
    }

    fn spend(&mut self, piece: &Piece) {
        self.cost_left = self.cost_left.saturating_sub(piece.cost);
        self.lines_left = self.lines_left.saturating_sub(piece.lines.max(1));
    }

    /// (lines, cost) a file may show now, and the reasons each bound would give.
    fn file_bounds(&self, max_lines: usize, max_cost: usize) -> (usize, usize, CutReason, CutReason) {
        let lines = if self.lines_left < max_lines { (self.lines_left, CutReason::PageBudget) } else { (max_lines, CutReason::FileLines) };
        let cost = if self.cost_left < max_cost { (self.cost_left, CutReason::PageBudget) } else { (max_cost, CutReason::FileBytes) };
        (lines.0, cost.0, lines.1, cost.1)
    }
}

impl CodeView {
    /// Counts `more` files of the commit that were not even read from its tree (past what the
    /// page could list), and says so.
    pub fn count_not_listed(&mut self, more: usize) {
        if more == 0 {
            return;
        }
        let before = self.not_listed;
        self.not_listed += more;
        let said = format!(
            "{} more file{} not listed (at most {} are)",
            thousands(self.not_listed as u64),
            if self.not_listed == 1 { "" } else { "s" },
            thousands(MAX_LISTED as u64)
        );
        let notes: Vec<String> = self
            .cut
            .iter()
            .flat_map(|c| c.split("; "))
            .filter(|n| before == 0 || !n.ends_with(&format!("not listed (at most {} are)", thousands(MAX_LISTED as u64))))
            .map(str::to_string)
            .chain(std::iter::once(said))
            .collect();
        self.cut = Some(notes.join("; "));
    }
}

/// Builds the view of a commit's `entries` within the bounds above; `read(entry, cap, count_to)`
/// gives a blob's first `cap` bytes (and its lines when it is at most `count_to` bytes). Files
/// not reached by `deadline`, or once `stop` says so, are listed only.
pub fn build<E: std::fmt::Display>(
    commit: &str,
    entries: &[TreeEntry],
    given: &[TreeEntry],
    deadline: Instant,
    stop: &dyn Fn() -> bool,
    mut read: impl FnMut(&TreeEntry, u64, u64) -> Result<Prefix, E>,
) -> CodeView {
    let given_by_path: HashMap<&str, &TreeEntry> = given.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut files = Vec::new();
    let mut page = Page { cost_left: PAGE_BYTES, lines_left: PAGE_LINES, files_read: 0, counted_left: PAGE_COUNTED, deadline, stop, cut_files: 0 };
    let (mut listing, mut not_listed) = (0usize, 0usize);
    for entry in entries {
        let listed_cost = cost(&entry.path) + LISTED_MARKUP;
        if files.len() >= MAX_LISTED || listing + listed_cost > LISTING_BYTES {
            not_listed += 1;
            continue;
        }
        listing += listed_cost;
        let size = entry.size.unwrap_or(0);
        let given = given_by_path.get(entry.path.as_str()).copied();
        let mut file = CodeFile {
            path: entry.path.clone(),
            size,
            kind: FileKind::Text,
            change: if given.is_some() { Change::Modified } else { Change::Added },
            language: language(&entry.path),
            text: None,
            cells: None,
            cut: None,
            added_lines: vec![],
            diff: None,
            diff_status: None,
        };
        if entry.mode == "160000" || entry.kind == "commit" {
            file.kind = FileKind::Submodule;
            files.push(file);
            continue;
        }
        if given.is_some_and(|g| g.object == entry.object && g.mode == entry.mode) {
            file.change = Change::Unchanged;
        }
        if file.change == Change::Unchanged && entry.path.starts_with("data/") {
            // The data we gave is listed only.
            file.kind = FileKind::Listed;
            files.push(file);
            continue;
        }
        if let Some(reason) = page.exhausted() {
            file.kind = FileKind::Listed;
            file.cut = Some(Cut::listed(reason, size));
            page.cut_files += 1;
            files.push(file);
            continue;
        }
        page.files_read += 1;
        let is_notebook = entry.path.to_ascii_lowercase().ends_with(".ipynb");
        if entry.mode == "120000" {
            file.kind = FileKind::Link;
            file.language = None;
            match read(entry, MAX_LINK, 0) {
                Ok(prefix) => {
                    let target = String::from_utf8_lossy(&prefix.bytes);
                    let (lines, cost_cap, _, _) = page.file_bounds(1, MAX_LINK as usize);
                    let piece = cut(&target, lines, cost_cap);
                    page.spend(&piece);
                    file.text = Some(target[..piece.end].to_string());
                }
                Err(e) => file.text = Some(format!("(cannot be read: {e})")),
            }
            files.push(file);
            continue;
        }
        if is_notebook && size > MAX_NOTEBOOK {
            file.kind = FileKind::TooLarge;
            files.push(file);
            continue;
        }
        let (max_lines, max_cost, lines_reason, cost_reason) = page.file_bounds(MAX_FILE_LINES, MAX_FILE_BYTES);
        let diffable = file.change == Change::Modified && !is_notebook && size <= DIFF_MAX_BYTES;
        let cap = if is_notebook || diffable { size.max(max_cost as u64) } else { max_cost as u64 };
        let count_to = if size <= MAX_COUNTED && size <= page.counted_left && size > cap { size } else { 0 };
        page.counted_left -= count_to;
        let prefix = match read(entry, cap, count_to) {
            Ok(prefix) => prefix,
            Err(e) => {
                file.kind = FileKind::Binary;
                file.text = Some(format!("(cannot be read: {e})"));
                files.push(file);
                continue;
            }
        };
        let Some(text) = as_text(&prefix.bytes, prefix.whole) else {
            file.kind = FileKind::Binary;
            files.push(file);
            continue;
        };
        if is_notebook {
            if let Some((cells, total)) = notebook_cells(text, MAX_CELLS, MAX_FILE_BYTES) {
                file.kind = FileKind::Notebook;
                file.language = Some(if crate::notebook::language_of_text(text).as_deref() == Some("r") { "r" } else { "python" });
                let (shown, cut_by) = shown_cells(&mut page, cells, max_lines, max_cost);
                let reason = match cut_by {
                    Some(Bound::Lines) => Some(lines_reason),
                    Some(Bound::Cost) => Some(cost_reason),
                    None if total > shown.len() => Some(CutReason::Cells),
                    None => None,
                };
                if let Some(reason) = reason {
                    let mut cut = Cut::listed(reason, size);
                    cut.shown_lines = shown.iter().map(|c| c.source.lines().count() as u64).sum();
                    cut.shown_bytes = shown.iter().map(|c| c.source.len() as u64).sum();
                    cut.note = format!("shown {} of {} cells: {}", shown.len(), thousands(total as u64), reason.why());
                    if reason == CutReason::PageBudget {
                        page.cut_files += 1;
                    }
                    file.cut = Some(cut);
                }
                file.cells = Some(shown);
                files.push(file);
                continue;
            }
        }
        let piece = cut(text, max_lines, max_cost);
        let shown = &text[..piece.end];
        page.spend(&piece);
        let reason = match piece.bound {
            Some(Bound::Lines) => Some(lines_reason),
            Some(Bound::Cost) => Some(cost_reason),
            // All that was read fits, but more was not read.
            None if !prefix.whole && (prefix.bytes.len() as u64) < size => Some(cost_reason),
            None => None,
        };
        if let Some(reason) = reason {
            if reason == CutReason::PageBudget {
                page.cut_files += 1;
            }
            file.cut = Some(Cut::part(reason, piece.lines as u64, piece.end as u64, prefix.lines, size));
        }
        match file.change {
            Change::Added => file.added_lines = (1..=piece.lines as u32).collect(),
            Change::Modified => {
                // The starter's side is read only when the submission's side can be diffed.
                let old = given.filter(|g| prefix.whole && g.size.unwrap_or(0) <= DIFF_MAX_BYTES).map(|g| read(g, DIFF_MAX_BYTES, 0));
                let old = match old {
                    Some(Ok(old)) if old.whole => Some(String::from_utf8_lossy(&old.bytes).into_owned()),
                    Some(Err(_)) => Some(String::new()),
                    _ => None,
                };
                let new = prefix.whole.then_some(text);
                let status = match (old, new) {
                    (Some(old), Some(new)) => diff(&mut page, &entry.path, &old, new, piece.lines, &mut file),
                    _ => DiffStatus::TooLarge,
                };
                file.diff_status = Some(status);
            }
            Change::Unchanged => {}
        }
        file.text = Some(shown.to_string());
        files.push(file);
    }
    let present: std::collections::HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut removed: Vec<String> = given.iter().map(|g| g.path.clone()).filter(|p| !present.contains(p.as_str())).collect();
    removed.sort();
    let mut notes = Vec::new();
    if page.cut_files > 0 {
        notes.push(format!(
            "{} file{} shown in part or not at all: this page shows at most {} and {} lines of source, from at most {MAX_SHOWN} files, read within {} s",
            page.cut_files,
            if page.cut_files == 1 { "" } else { "s" },
            format_size(PAGE_BYTES as u64),
            thousands(PAGE_LINES as u64),
            PAGE_TIME.as_secs_f64()
        ));
    }
    if not_listed > 0 {
        notes.push(format!(
            "{} more file{} not listed (at most {} are)",
            thousands(not_listed as u64),
            if not_listed == 1 { "" } else { "s" },
            thousands(MAX_LISTED as u64)
        ));
    }
    CodeView { commit: commit.to_string(), files, not_listed, removed, cut: (!notes.is_empty()).then(|| notes.join("; ")) }
}

/// The cells of a notebook that fit `max_lines` and `max_cost` (and the page), and which bound
/// stopped them.
fn shown_cells(page: &mut Page, cells: Vec<Cell>, max_lines: usize, max_cost: usize) -> (Vec<Cell>, Option<Bound>) {
    let (mut lines_left, mut cost_left) = (max_lines, max_cost);
    let mut shown = Vec::new();
    for cell in cells {
        // A cell costs a line of markup even when empty.
        if lines_left == 0 {
            return (shown, Some(Bound::Lines));
        }
        let piece = cut(&cell.source, lines_left, cost_left);
        page.spend(&piece);
        lines_left -= piece.lines.max(1).min(lines_left);
        cost_left = cost_left.saturating_sub(piece.cost + LISTED_MARKUP);
        let bound = piece.bound.or((cell.source_dropped > 0).then_some(Bound::Cost));
        // Outputs count against the same budget; what does not fit is cut.
        let (mut output, mut output_cut_bytes) = (cell.output, cell.output_cut_bytes);
        if bound.is_none() {
            let out = cut(&output, usize::MAX, cost_left);
            page.spend(&Piece { lines: 0, ..out });
            cost_left = cost_left.saturating_sub(out.cost);
            output_cut_bytes += (output.len() - out.end) as u64;
            output.truncate(out.end);
        } else {
            output_cut_bytes += output.len() as u64;
            output.clear();
        }
        let mut source = cell.source;
        source.truncate(piece.end);
        shown.push(Cell { kind: cell.kind, source, source_dropped: 0, output, output_cut_bytes });
        if bound.is_some() {
            return (shown, bound);
        }
    }
    (shown, None)
}

/// Diffs `old` against `new` within [`DIFF_TIME`] (and the page's time): the added lines among
/// the first `shown_lines`, and the unified diff's first part within the file's and the page's
/// budget.
fn diff(page: &mut Page, path: &str, old: &str, new: &str, shown_lines: usize, file: &mut CodeFile) -> DiffStatus {
    if old.lines().count() > DIFF_MAX_LINES || new.lines().count() > DIFF_MAX_LINES {
        return DiffStatus::TooLarge;
    }
    if (page.stop)() || Instant::now() >= page.deadline || page.cost_left == 0 || page.lines_left == 0 {
        return DiffStatus::NotRun;
    }
    let deadline = (Instant::now() + DIFF_TIME).min(page.deadline);
    let diff = TextDiff::configure().algorithm(Algorithm::Myers).deadline(deadline).diff_lines(old, new);
    if Instant::now() >= deadline {
        // similar gives up at the deadline with a coarse diff: not one worth reading.
        return DiffStatus::TooDifferent;
    }
    let mut new_line = 0u32;
    for change in diff.iter_all_changes() {
        if new_line as usize >= shown_lines {
            break;
        }
        match change.tag() {
            ChangeTag::Equal => new_line += 1,
            ChangeTag::Insert => {
                new_line += 1;
                file.added_lines.push(new_line);
            }
            ChangeTag::Delete => {}
        }
    }
    let (max_lines, max_cost, _, _) = page.file_bounds(PAGE_LINES, MAX_DIFF_BYTES);
    let (text, piece) = unified(&diff, path, max_lines, max_cost);
    page.spend(&piece);
    file.diff = Some(text);
    if piece.bound.is_some() {
        DiffStatus::Cut
    } else {
        DiffStatus::Shown
    }
}

/// The unified diff (3 lines of context) as text, written hunk by hunk and stopped once
/// `max_lines` or `max_cost` is passed, then cut exactly.
fn unified<'a>(diff: &'a TextDiff<'a, 'a, 'a, str>, path: &str, max_lines: usize, max_cost: usize) -> (String, Piece) {
    let mut out = format!("--- starter/{path}\n+++ submission/{path}\n");
    let (mut spent, mut lines) = (cost(&out), 2usize);
    'hunks: for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        let _ = writeln!(out, "{}", hunk.header());
        lines += 1;
        for change in hunk.iter_changes() {
            let before = out.len();
            let sign = match change.tag() {
                ChangeTag::Equal => ' ',
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
            };
            let _ = write!(out, "{sign}{}", change.value());
            if change.missing_newline() {
                out.push('\n');
            }
            spent += cost(&out[before..]);
            lines += 1;
            if lines > max_lines || spent > max_cost {
                break 'hunks;
            }
        }
    }
    let piece = cut(&out, max_lines, max_cost);
    out.truncate(piece.end);
    (out, piece)
}

/// Capture names the code view colours (tree-sitter-python's and tree-sitter-r's highlight
/// queries use these).
const HIGHLIGHTS: &[&str] = &[
    "attribute",
    "boolean",
    "comment",
    "conditional",
    "constant",
    "constant.builtin",
    "constructor",
    "embedded",
    "escape",
    "function",
    "function.builtin",
    "function.method",
    "keyword",
    "number",
    "operator",
    "property",
    "punctuation",
    "repeat",
    "string",
    "type",
    "variable",
];

/// The highlighter of a language the code view colours (Python, R), made once.
fn highlight_config(language: &str) -> Option<&'static tree_sitter_highlight::HighlightConfiguration> {
    type Config = Option<tree_sitter_highlight::HighlightConfiguration>;
    static PYTHON: OnceLock<Config> = OnceLock::new();
    static R: OnceLock<Config> = OnceLock::new();
    let (cell, grammar, query) = match language {
        "python" => (&PYTHON, tree_sitter_python::LANGUAGE, tree_sitter_python::HIGHLIGHTS_QUERY),
        "r" => (&R, tree_sitter_r::LANGUAGE, tree_sitter_r::HIGHLIGHTS_QUERY),
        _ => return None,
    };
    cell.get_or_init(|| {
        let mut config = tree_sitter_highlight::HighlightConfiguration::new(grammar.into(), language, query, "", "").ok()?;
        config.configure(HIGHLIGHTS);
        Some(config)
    })
    .as_ref()
}

/// The HTML of each line of `source`: Python and R highlighted with `<span class="hl-…">`, other text
/// escaped. Lines are those of [`str::lines`] (a final newline makes no empty last line).
pub fn highlight_lines(source: &str, language: Option<&str>) -> Vec<Markup> {
    let plain = || source.lines().map(|line| html! { (line) }).collect::<Vec<_>>();
    let Some(config) = language.and_then(highlight_config) else { return plain() };
    let mut highlighter = tree_sitter_highlight::Highlighter::new();
    let Ok(events) = highlighter.highlight(config, source.as_bytes(), None, |_| None) else { return plain() };
    let mut renderer = tree_sitter_highlight::HtmlRenderer::new();
    let classes: Vec<String> = HIGHLIGHTS.iter().map(|name| format!("class=\"hl-{}\"", name.replace('.', "-"))).collect();
    if renderer.render(events, source.as_bytes(), &|highlight, out: &mut Vec<u8>| out.extend_from_slice(classes[highlight.0].as_bytes())).is_err() {
        return plain();
    }
    // tree-sitter's renderer escapes the source's text itself; its spans carry our classes only.
    let mut lines: Vec<Markup> = renderer.lines().map(|line| PreEscaped(line.trim_end_matches('\n').to_string())).collect();
    // The renderer's lines follow the newlines; `str::lines` drops a final empty one.
    let wanted = source.lines().count();
    lines.truncate(wanted);
    while lines.len() < wanted {
        lines.push(html! {});
    }
    lines
}

/// The stylesheet for highlighted code, diffs and findings.
pub const CSS: &str = ".code{border-collapse:collapse;width:100%;background:#fff;font:12.5px/1.5 ui-monospace,Menlo,Consolas,monospace}\
.code td{padding:0 8px;border:0;vertical-align:top;white-space:pre-wrap;word-break:break-all}.code td.ln{color:#6b7280;text-align:right;width:1%;white-space:nowrap;word-break:normal;user-select:none}.files{background:#fff;padding:8px 16px;border:1px solid #eceff3}\
.code td.ln a{color:inherit;text-decoration:none}.code tr.added td.src{background:#e9f7ee}.code tr.finding td.src{background:#fff4e5}\
.code tr.note td{background:#fffbea;font:13px system-ui,sans-serif;white-space:normal}.code tr.lint td{background:#fdecea;font:13px system-ui,sans-serif;white-space:normal}\
.hl-keyword,.hl-conditional,.hl-repeat{color:#a0198a}.hl-string{color:#0a6b2b}.hl-comment{color:#6b7280;font-style:italic}.hl-number,.hl-constant,.hl-constant-builtin,.hl-boolean{color:#a04900}\
.hl-function,.hl-function-method{color:#1f4fbf}.hl-function-builtin{color:#0f6f85}.hl-type,.hl-constructor{color:#8a4b00}.hl-escape{color:#b3261e}\
.hl-operator{color:#444}pre.diff{background:#fff;padding:8px;overflow:auto}pre.diff .add{background:#e9f7ee;display:block}pre.diff .del{background:#fdecea;display:block}\
pre.diff .hunk{color:#6b7280;display:block}.cell{margin:10px 0;border-left:3px solid #c9d1dc;padding-left:8px}.cell h4{margin:4px 0;color:#6b7280;font-weight:normal}\
.cell pre.output{background:#f6f8fa;margin:4px 0;padding:6px;white-space:pre-wrap;word-break:break-all}";

/// A unified diff as HTML (added and removed lines marked).
pub fn diff_html(diff: &str) -> Markup {
    html! {
        pre.diff {
            @for line in diff.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("@@") {
                    "hunk"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else {
                    ""
                };
                @if class.is_empty() { (line) "\n" } @else { span class=(class) { (line) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: &str, size: u64) -> TreeEntry {
        TreeEntry { path: path.into(), mode: mode.into(), kind: "blob".into(), object: format!("new:{path}"), size: Some(size) }
    }

    fn given(path: &str, size: u64) -> TreeEntry {
        TreeEntry { path: path.into(), mode: "100644".into(), kind: "blob".into(), object: format!("old:{path}"), size: Some(size) }
    }

    /// A reader over blobs in memory that keeps to the cap as the git reader does, and counts
    /// the bytes it hands out.
    fn reader<'a>(blobs: &'a HashMap<String, Vec<u8>>, handed: &'a std::cell::Cell<u64>) -> impl FnMut(&TreeEntry, u64, u64) -> Result<Prefix, String> + 'a {
        move |e, cap, count_to| {
            let blob = blobs.get(&e.object).ok_or("no such blob")?;
            let end = blob.len().min(cap as usize);
            handed.set(handed.get() + end as u64);
            let counted = blob.len() as u64 <= count_to.max(cap);
            let lines = counted.then(|| String::from_utf8_lossy(blob).lines().count() as u64);
            Ok(Prefix { bytes: blob[..end].to_vec(), whole: end == blob.len(), lines })
        }
    }

    fn view(entries: &[TreeEntry], starter: &[TreeEntry], blobs: &HashMap<String, Vec<u8>>) -> CodeView {
        let handed = std::cell::Cell::new(0);
        build("c", entries, starter, Instant::now() + Duration::from_secs(60), &|| false, reader(blobs, &handed))
    }

    #[test]
    fn r_is_highlighted_and_escaped() {
        let lines: Vec<String> =
            highlight_lines("f <- function(x) {\n  if (x > 1) \"<b>\" else TRUE # </td>\n}\n", Some("r")).into_iter().map(|l| l.0).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("hl-operator\">&lt;-"), "{lines:?}");
        assert!(
            lines[1].contains("hl-boolean") && lines[1].contains("hl-conditional") && lines[1].contains("&lt;b&gt;") && lines[1].contains("&lt;/td&gt;"),
            "{lines:?}"
        );
        assert!(!lines.concat().contains("<b>"), "{lines:?}");
    }

    #[test]
    fn python_is_highlighted_and_escaped() {
        let lines: Vec<String> = highlight_lines("def f(x):\n    return \"<b>\" + x  # </td>\n", Some("python")).into_iter().map(|l| l.0).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("hl-keyword"), "{lines:?}");
        assert!(lines[1].contains("&lt;b&gt;") && !lines[1].contains("<b>"), "{lines:?}");
        assert!(lines[1].contains("&lt;/td&gt;") && !lines[1].contains("</td>"), "{lines:?}");
    }

    #[test]
    fn files_compare_with_the_starter() {
        let mut readme = given("README.md", 8);
        let starter = vec![given("clean.py", 20), readme.clone(), given("gone.txt", 1), given("data/public/big.csv", 10)];
        let blobs: HashMap<String, Vec<u8>> = [
            ("old:clean.py", &b"import pandas\n\nprint(1)\n"[..]),
            ("new:clean.py", &b"import pandas\n\nprint(2)\nprint(3)\n"[..]),
            ("old:README.md", &b"read me\n"[..]),
            ("new:NOTES.md", &b"# Notes\n"[..]),
            ("new:data.bin", &b"\x00\x01\x02"[..]),
            ("new:link", &b"/etc/passwd"[..]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
        readme.path = "README.md".into();
        let mut data = given("data/public/big.csv", 10);
        data.mode = "100644".into();
        let entries =
            vec![entry("clean.py", "100644", 30), readme, data, entry("NOTES.md", "100644", 8), entry("data.bin", "100644", 3), entry("link", "120000", 11)];
        let view = view(&entries, &starter, &blobs);
        let by = |p: &str| view.files.iter().find(|f| f.path == p).unwrap();
        assert_eq!(by("clean.py").change, Change::Modified);
        assert_eq!(by("clean.py").added_lines, vec![3, 4]);
        assert!(by("clean.py").diff.as_ref().unwrap().contains("+print(2)"));
        assert_eq!(by("clean.py").diff_status, Some(DiffStatus::Shown));
        assert_eq!(by("README.md").change, Change::Unchanged);
        assert_eq!(by("data/public/big.csv").change, Change::Unchanged);
        assert_eq!(by("data/public/big.csv").kind, FileKind::Listed);
        assert!(by("data/public/big.csv").text.is_none(), "the data we gave is listed, not shown");
        assert_eq!(by("NOTES.md").change, Change::Added);
        assert_eq!(by("data.bin").kind, FileKind::Binary);
        assert_eq!(by("link").kind, FileKind::Link);
        assert_eq!(by("link").text.as_deref(), Some("/etc/passwd"));
        assert_eq!(view.removed, vec!["gone.txt".to_string()]);
        assert!(view.cut.is_none() && view.files.iter().all(|f| f.cut.is_none()), "nothing was cut");
    }

    #[test]
    fn cut_keeps_whole_lines_within_both_bounds() {
        assert_eq!(cut("a\nb\nc\n", 2, 100), Piece { end: 4, lines: 2, cost: 4, bound: Some(Bound::Lines) });
        assert_eq!(cut("a\nb\n", 2, 100), Piece { end: 4, lines: 2, cost: 4, bound: None });
        assert_eq!(cut("a\nb", 5, 100), Piece { end: 3, lines: 2, cost: 3, bound: None });
        // A long line is cut inside, never inside a character.
        assert_eq!(cut("ééé", 5, 3), Piece { end: 2, lines: 1, cost: 2, bound: Some(Bound::Cost) });
        // Escaped bytes cost what they become.
        assert_eq!(cost("<a href=\"x\">"), 12 - 4 + 4 * 6);
        assert_eq!(cut("\"\"\"\"", 5, 13), Piece { end: 2, lines: 1, cost: 12, bound: Some(Bound::Cost) });
        assert_eq!(cut("", 0, 0).bound, None);
        assert_eq!(thousands(524_288), "524,288");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn a_file_of_half_a_mebibyte_of_newlines_shows_2000_lines_and_says_so() {
        let blobs: HashMap<String, Vec<u8>> = (0..20).map(|i| (format!("new:f{i:02}.py"), vec![b'\n'; 512 << 10])).collect();
        let entries: Vec<TreeEntry> = (0..20).map(|i| entry(&format!("f{i:02}.py"), "100644", 512 << 10)).collect();
        let handed = std::cell::Cell::new(0);
        let view = build("c", &entries, &[], Instant::now() + Duration::from_secs(60), &|| false, reader(&blobs, &handed));
        let first = &view.files[0];
        assert_eq!(first.text.as_ref().unwrap().len(), MAX_FILE_LINES);
        assert_eq!(first.added_lines.len(), MAX_FILE_LINES);
        let cut = first.cut.as_ref().unwrap();
        assert_eq!((cut.reason, cut.shown_lines, cut.total_lines), (CutReason::FileLines, 2_000, Some(524_288)));
        assert!(cut.note.starts_with("shown 2,000 of 524,288 lines"), "{}", cut.note);
        // The page's 20,000 lines are spent after ten files: the rest are listed only.
        let shown = view.files.iter().filter(|f| f.text.is_some()).count();
        assert_eq!(shown, PAGE_LINES / MAX_FILE_LINES);
        let last = view.files.last().unwrap();
        assert_eq!((last.kind, last.cut.as_ref().map(|c| c.reason)), (FileKind::Listed, Some(CutReason::PageBudget)));
        assert!(view.cut.as_ref().unwrap().contains("10 files shown in part or not at all"), "{:?}", view.cut);
        // Never more handed out than the per-file cap for each file read.
        assert!(handed.get() <= 10 * MAX_FILE_BYTES as u64, "{}", handed.get());
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.len() < 200 << 10, "{}", json.len());
    }

    #[test]
    fn the_page_budget_holds_for_text_that_escapes_large() {
        let quotes = vec![b'"'; 512 << 10];
        let blobs: HashMap<String, Vec<u8>> = (0..40).map(|i| (format!("new:q{i:02}.txt"), quotes.clone())).collect();
        let entries: Vec<TreeEntry> = (0..40).map(|i| entry(&format!("q{i:02}.txt"), "100644", 512 << 10)).collect();
        let view = view(&entries, &[], &blobs);
        let shown: usize = view.files.iter().filter_map(|f| f.text.as_deref()).map(cost).sum();
        assert!(shown <= PAGE_BYTES, "{shown}");
        assert_eq!(view.files[0].cut.as_ref().unwrap().reason, CutReason::FileBytes);
        assert!(view.files.iter().any(|f| f.kind == FileKind::Listed));
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.len() < 5 << 20, "{}", json.len());
    }

    #[test]
    fn a_replaced_readme_is_too_large_to_diff_and_a_time_limit_stops_the_page() {
        let starter = vec![given("README.md", 8)];
        let blobs: HashMap<String, Vec<u8>> =
            [("old:README.md".to_string(), b"read me\n".to_vec()), ("new:README.md".to_string(), b"a\n".repeat(256 << 10))].into();
        let entries = vec![entry("README.md", "100644", 512 << 10)];
        let started = Instant::now();
        let view = view(&entries, &starter, &blobs);
        assert!(started.elapsed() < Duration::from_secs(1));
        let readme = &view.files[0];
        assert_eq!(readme.diff_status, Some(DiffStatus::TooLarge));
        assert!(readme.diff.is_none());
        assert!(DiffStatus::TooLarge.note().unwrap().contains("too large to show as a diff"));
        // Past the deadline (or once the request is gone) nothing more is read.
        let handed = std::cell::Cell::new(0);
        let view = build("c", &entries, &starter, Instant::now(), &|| false, reader(&blobs, &handed));
        assert_eq!(view.files[0].kind, FileKind::Listed);
        assert_eq!(view.files[0].cut.as_ref().unwrap().reason, CutReason::PageTime);
        let view = build("c", &entries, &starter, Instant::now() + Duration::from_secs(60), &|| true, reader(&blobs, &handed));
        assert_eq!(view.files[0].kind, FileKind::Listed);
        assert_eq!(handed.get(), 0);
    }

    #[test]
    fn a_diff_that_takes_too_long_is_too_different() {
        // Two sides of 20,000 distinct lines each: Myers needs far more than a second here.
        let old: String = (0..DIFF_MAX_LINES).map(|i| format!("{}\n", i * 2)).collect();
        let new: String = (0..DIFF_MAX_LINES).map(|i| format!("{}\n", i * 2 + 1)).collect();
        let starter = vec![given("big.py", old.len() as u64)];
        let blobs: HashMap<String, Vec<u8>> = [("old:big.py".to_string(), old.into_bytes()), ("new:big.py".to_string(), new.clone().into_bytes())].into();
        let started = Instant::now();
        let view = view(&[entry("big.py", "100644", new.len() as u64)], &starter, &blobs);
        let took = started.elapsed();
        assert!(took < DIFF_TIME + Duration::from_millis(900), "{took:?}");
        let status = view.files[0].diff_status.unwrap();
        assert!(matches!(status, DiffStatus::TooDifferent | DiffStatus::Shown | DiffStatus::Cut), "{status:?}");
        if status == DiffStatus::TooDifferent {
            assert!(view.files[0].diff.is_none());
        } else {
            assert!(view.files[0].diff.as_ref().unwrap().len() <= MAX_DIFF_BYTES);
        }
    }

    #[test]
    fn notebooks_split_into_cells() {
        let (cells, total) = notebook_cells(
            r##"{"cells": [{"cell_type": "markdown", "source": ["# Title\n", "text"]}, {"cell_type": "code", "source": "x = 1", "outputs": [{"data": {"text/plain": ["1"]}}]}], "nbformat": 4}"##,
            10,
            1000,
        )
        .unwrap();
        assert_eq!((cells.len(), total), (2, 2));
        assert_eq!(cells[0].source, "# Title\ntext");
        assert_eq!(cells[1].kind, "code");
        assert!(notebook_cells("[1, 2]", 10, 10).is_none());
        assert!(notebook_cells("{\"metadata\": {}}", 10, 10).is_none());
    }

    #[test]
    fn notebook_outputs_are_text_only_and_cut() {
        let image = "A".repeat(1 << 20);
        let text = format!(
            r#"{{"cells": [{{"cell_type": "code", "source": "print(1)", "outputs": [
                {{"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}},
                {{"output_type": "display_data", "data": {{"image/png": "{image}", "text/plain": ["<Figure>"]}}}},
                {{"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["\u001b[31m..."]}}]}},
              {{"cell_type": "code", "source": "x", "outputs": [{{"output_type": "stream", "text": "{}"}}]}}]}}"#,
            "y".repeat(10_000)
        );
        let (cells, _) = notebook_cells(&text, 10, 1000).unwrap();
        assert_eq!(cells[0].output, "1\n2\n<Figure>\nValueError: bad");
        assert_eq!(cells[0].output_cut_bytes, 0);
        assert_eq!(cells[1].output.len(), MAX_OUTPUT);
        assert_eq!(cells[1].output_cut_bytes, 10_000 - MAX_OUTPUT as u64);
        let json = serde_json::to_string(&cells).unwrap();
        assert!(json.len() < 2 * MAX_OUTPUT, "{}", json.len());
    }

    #[test]
    fn a_notebook_keeps_only_so_many_cells_and_bytes() {
        let many: Vec<String> = (0..10_000).map(|i| format!("{{\"cell_type\": \"code\", \"source\": [\"{}\\n\", \"x\"]}}", "y".repeat(i % 7))).collect();
        let text = format!("{{\"cells\": [{}]}}", many.join(","));
        let (cells, total) = notebook_cells(&text, 100, 4).unwrap();
        assert_eq!((cells.len(), total), (100, 10_000));
        assert!(cells.iter().all(|c| c.source.len() <= 4), "{:?}", &cells[..3]);
        // In the view, the file's bounds hold over its cells and the cut says so.
        let blobs: HashMap<String, Vec<u8>> = [("new:nb.ipynb".to_string(), text.clone().into_bytes())].into();
        let view = view(&[entry("nb.ipynb", "100644", text.len() as u64)], &[], &blobs);
        let nb = &view.files[0];
        assert_eq!(nb.kind, FileKind::Notebook);
        assert_eq!(nb.cells.as_ref().unwrap().len(), MAX_CELLS.min(MAX_FILE_LINES / 2));
        assert!(nb.cut.as_ref().unwrap().note.contains("of 10,000 cells"), "{:?}", nb.cut);
    }

    #[test]
    fn a_huge_listing_is_counted_not_listed() {
        let entries: Vec<TreeEntry> = (0..5_000).map(|i| entry(&format!("{}/{i}", "d".repeat(200)), "100644", 0)).collect();
        let blobs: HashMap<String, Vec<u8>> = entries.iter().map(|e| (e.object.clone(), Vec::new())).collect();
        let view = view(&entries, &[], &blobs);
        assert!(view.files.len() <= MAX_LISTED);
        assert_eq!(view.files.len() + view.not_listed, 5_000);
        assert!(view.cut.as_ref().unwrap().contains("more files not listed"));
        assert!(view.files.iter().filter(|f| f.text.is_some()).count() <= MAX_SHOWN);
    }
}
