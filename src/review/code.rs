//! The code view: every file of a submitted commit as git recorded it (nothing is checked out, no
//! link is followed: a link is listed with its target as text), each compared with what we gave
//! the candidate (the repository's first commit: brief, starter code, public data), so that the
//! reader sees what the candidate wrote; Python highlighted on the server with tree-sitter,
//! notebooks split into cells. Binary and huge files are listed, not inlined.
//!
//! Everything here is candidate-made: the HTML it produces escapes every byte of it (tree-sitter's
//! renderer escapes the source; the rest goes through [`esc`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::intake::TreeEntry;
use crate::report::html::esc;

/// Files larger than this are listed, not shown.
pub const MAX_INLINE: u64 = 512 << 10;
/// Files shown in full per submission; the rest are listed.
pub const MAX_SHOWN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Text,
    Notebook,
    Binary,
    TooLarge,
    /// A symbolic link: shown as its target text, never followed.
    Link,
    Submodule,
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

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `code`, `markdown` or `raw`.
    pub kind: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeFile {
    pub path: String,
    pub size: u64,
    pub kind: FileKind,
    pub change: Change,
    /// `python`, `markdown`, or none (plain text).
    pub language: Option<&'static str>,
    /// The text, when shown (text files and link targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Notebook cells, when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cells: Option<Vec<Cell>>,
    /// 1-based line numbers the starter's version did not have.
    pub added_lines: Vec<u32>,
    /// Unified diff against the starter's version (modified files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeView {
    pub commit: String,
    pub files: Vec<CodeFile>,
    /// Files we gave that the submission no longer has.
    pub removed: Vec<String>,
}

fn language(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".py") || lower.ends_with(".pyi") {
        Some("python")
    } else if lower.ends_with(".md") || lower.ends_with(".markdown") {
        Some("markdown")
    } else {
        None
    }
}

fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0) || std::str::from_utf8(bytes).is_err()
}

/// Builds the view of a commit's `entries`; `read` gives a blob's bytes (called only for entries
/// of at most [`MAX_INLINE`] bytes, at most [`MAX_SHOWN`] times).
pub fn build<E: std::fmt::Display>(
    commit: &str,
    entries: &[TreeEntry],
    given: &[TreeEntry],
    mut read: impl FnMut(&TreeEntry) -> Result<Vec<u8>, E>,
) -> CodeView {
    let given_by_path: HashMap<&str, &TreeEntry> = given.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut files = Vec::new();
    let mut shown = 0;
    for entry in entries {
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
            added_lines: vec![],
            diff: None,
        };
        if entry.mode == "160000" || entry.kind == "commit" {
            file.kind = FileKind::Submodule;
            files.push(file);
            continue;
        }
        if given.is_some_and(|g| g.object == entry.object && g.mode == entry.mode) {
            file.change = Change::Unchanged;
        }
        if size > MAX_INLINE || shown >= MAX_SHOWN || (file.change == Change::Unchanged && entry.path.starts_with("data/")) {
            // Large files, and the data we gave, are listed only.
            file.kind = FileKind::TooLarge;
            files.push(file);
            continue;
        }
        shown += 1;
        let bytes = match read(entry) {
            Ok(bytes) => bytes,
            Err(e) => {
                file.kind = FileKind::Binary;
                file.text = Some(format!("(cannot be read: {e})"));
                files.push(file);
                continue;
            }
        };
        if entry.mode == "120000" {
            file.kind = FileKind::Link;
            file.language = None;
            file.text = Some(String::from_utf8_lossy(&bytes).into_owned());
            files.push(file);
            continue;
        }
        if looks_binary(&bytes) {
            file.kind = FileKind::Binary;
            files.push(file);
            continue;
        }
        let text = String::from_utf8(bytes).unwrap_or_default();
        if entry.path.to_ascii_lowercase().ends_with(".ipynb") {
            if let Some(cells) = notebook_cells(&text) {
                file.kind = FileKind::Notebook;
                file.language = Some("python");
                file.cells = Some(cells);
            }
        }
        if file.change == Change::Modified && file.kind == FileKind::Text {
            let old = match given {
                Some(g) if g.size.unwrap_or(0) <= MAX_INLINE => read(g).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
                _ => String::new(),
            };
            let diff = TextDiff::from_lines(&old, &text);
            let mut new_line = 0u32;
            for change in diff.iter_all_changes() {
                match change.tag() {
                    ChangeTag::Equal => new_line += 1,
                    ChangeTag::Insert => {
                        new_line += 1;
                        file.added_lines.push(new_line);
                    }
                    ChangeTag::Delete => {}
                }
            }
            file.diff =
                Some(diff.unified_diff().context_radius(3).header(&format!("starter/{}", entry.path), &format!("submission/{}", entry.path)).to_string());
        } else if file.change == Change::Added && file.kind == FileKind::Text {
            file.added_lines = (1..=text.lines().count() as u32).collect();
        }
        if file.kind == FileKind::Text {
            file.text = Some(text);
        }
        files.push(file);
    }
    let present: std::collections::HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut removed: Vec<String> = given.iter().map(|g| g.path.clone()).filter(|p| !present.contains(p.as_str())).collect();
    removed.sort();
    CodeView { commit: commit.to_string(), files, removed }
}

/// A notebook's cells (JSON `cells[].cell_type`, `source` as a string or a list of lines);
/// outputs are left out.
pub fn notebook_cells(text: &str) -> Option<Vec<Cell>> {
    let notebook: serde_json::Value = serde_json::from_str(text).ok()?;
    let cells = notebook.get("cells")?.as_array()?;
    Some(
        cells
            .iter()
            .map(|cell| {
                let source = match &cell["source"] {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str()).collect(),
                    _ => String::new(),
                };
                Cell { kind: cell["cell_type"].as_str().unwrap_or("raw").to_string(), source }
            })
            .collect(),
    )
}

/// Capture names the code view colours (tree-sitter-python's highlight queries use these).
const HIGHLIGHTS: &[&str] = &[
    "attribute",
    "comment",
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
    "string",
    "type",
    "variable",
];

fn python_config() -> Option<&'static tree_sitter_highlight::HighlightConfiguration> {
    static CONFIG: OnceLock<Option<tree_sitter_highlight::HighlightConfiguration>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config =
                tree_sitter_highlight::HighlightConfiguration::new(tree_sitter_python::LANGUAGE.into(), "python", tree_sitter_python::HIGHLIGHTS_QUERY, "", "")
                    .ok()?;
            config.configure(HIGHLIGHTS);
            Some(config)
        })
        .as_ref()
}

/// The HTML of each line of `source`: Python highlighted with `<span class="hl-…">`, other text
/// escaped. Lines are those of [`str::lines`] (a final newline makes no empty last line).
pub fn highlight_lines(source: &str, language: Option<&str>) -> Vec<String> {
    let plain = || source.lines().map(esc).collect::<Vec<_>>();
    if language != Some("python") {
        return plain();
    }
    let Some(config) = python_config() else { return plain() };
    let mut highlighter = tree_sitter_highlight::Highlighter::new();
    let Ok(events) = highlighter.highlight(config, source.as_bytes(), None, |_| None) else { return plain() };
    let mut renderer = tree_sitter_highlight::HtmlRenderer::new();
    let classes: Vec<String> = HIGHLIGHTS.iter().map(|name| format!("class=\"hl-{}\"", name.replace('.', "-"))).collect();
    if renderer.render(events, source.as_bytes(), &|highlight, out: &mut Vec<u8>| out.extend_from_slice(classes[highlight.0].as_bytes())).is_err() {
        return plain();
    }
    let mut lines: Vec<String> = renderer.lines().map(|line| line.trim_end_matches('\n').to_string()).collect();
    // The renderer's lines follow the newlines; `str::lines` drops a final empty one.
    let wanted = source.lines().count();
    lines.truncate(wanted);
    while lines.len() < wanted {
        lines.push(String::new());
    }
    lines
}

/// The stylesheet for highlighted code, diffs and findings.
pub const CSS: &str = ".code{border-collapse:collapse;width:100%;background:#fff;font:12.5px/1.5 ui-monospace,Menlo,Consolas,monospace}\
.code td{padding:0 8px;border:0;vertical-align:top;white-space:pre-wrap;word-break:break-all}.code td.ln{color:#6b7280;text-align:right;width:1%;white-space:nowrap;word-break:normal;user-select:none}.files{background:#fff;padding:8px 16px;border:1px solid #eceff3}\
.code td.ln a{color:inherit;text-decoration:none}.code tr.added td.src{background:#e9f7ee}.code tr.finding td.src{background:#fff4e5}\
.code tr.note td{background:#fffbea;font:13px system-ui,sans-serif;white-space:normal}.code tr.lint td{background:#fdecea;font:13px system-ui,sans-serif;white-space:normal}\
.hl-keyword{color:#a0198a}.hl-string{color:#0a6b2b}.hl-comment{color:#6b7280;font-style:italic}.hl-number,.hl-constant,.hl-constant-builtin{color:#a04900}\
.hl-function,.hl-function-method{color:#1f4fbf}.hl-function-builtin{color:#0f6f85}.hl-type,.hl-constructor{color:#8a4b00}.hl-escape{color:#b3261e}\
.hl-operator{color:#444}pre.diff{background:#fff;padding:8px;overflow:auto}pre.diff .add{background:#e9f7ee;display:block}pre.diff .del{background:#fdecea;display:block}\
pre.diff .hunk{color:#6b7280;display:block}.cell{margin:10px 0;border-left:3px solid #c9d1dc;padding-left:8px}.cell h4{margin:4px 0;color:#6b7280;font-weight:normal}";

/// A unified diff as HTML (every line escaped; added and removed lines marked).
pub fn diff_html(diff: &str) -> String {
    let mut out = String::from("<pre class=\"diff\">");
    for line in diff.lines() {
        let class = if line.starts_with("+++") || line.starts_with("---") || line.starts_with("@@") {
            "hunk"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else {
            ""
        };
        if class.is_empty() {
            out.push_str(&esc(line));
            out.push('\n');
        } else {
            out.push_str(&format!("<span class=\"{class}\">{}</span>", esc(line)));
        }
    }
    out.push_str("</pre>");
    out
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

    #[test]
    fn python_is_highlighted_and_escaped() {
        let lines = highlight_lines("def f(x):\n    return \"<b>\" + x  # </td>\n", Some("python"));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("hl-keyword"), "{lines:?}");
        assert!(lines[1].contains("&lt;b&gt;") && !lines[1].contains("<b>"), "{lines:?}");
        assert!(lines[1].contains("&lt;/td&gt;") && !lines[1].contains("</td>"), "{lines:?}");
    }

    #[test]
    fn files_compare_with_the_starter() {
        let mut readme = given("README.md", 8);
        let starter = vec![given("clean.py", 20), readme.clone(), given("gone.txt", 1), given("data/public/big.csv", 10)];
        let blobs: HashMap<&str, &[u8]> = [
            ("old:clean.py", &b"import pandas\n\nprint(1)\n"[..]),
            ("new:clean.py", &b"import pandas\n\nprint(2)\nprint(3)\n"[..]),
            ("old:README.md", &b"read me\n"[..]),
            ("new:NOTES.md", &b"# Notes\n"[..]),
            ("new:data.bin", &b"\x00\x01\x02"[..]),
            ("new:link", &b"/etc/passwd"[..]),
        ]
        .into();
        readme.path = "README.md".into();
        let mut data = given("data/public/big.csv", 10);
        data.mode = "100644".into();
        let entries = vec![
            entry("clean.py", "100644", 30),
            readme,
            data,
            entry("NOTES.md", "100644", 8),
            entry("data.bin", "100644", 3),
            entry("link", "120000", 11),
            entry("big.csv", "100644", MAX_INLINE + 1),
        ];
        let view = build("c", &entries, &starter, |e| Ok::<_, String>(blobs[e.object.as_str()].to_vec()));
        let by = |p: &str| view.files.iter().find(|f| f.path == p).unwrap();
        assert_eq!(by("clean.py").change, Change::Modified);
        assert_eq!(by("clean.py").added_lines, vec![3, 4]);
        assert!(by("clean.py").diff.as_ref().unwrap().contains("+print(2)"));
        assert_eq!(by("README.md").change, Change::Unchanged);
        assert_eq!(by("data/public/big.csv").change, Change::Unchanged);
        assert!(by("data/public/big.csv").text.is_none(), "the data we gave is listed, not shown");
        assert_eq!(by("NOTES.md").change, Change::Added);
        assert_eq!(by("data.bin").kind, FileKind::Binary);
        assert_eq!(by("link").kind, FileKind::Link);
        assert_eq!(by("link").text.as_deref(), Some("/etc/passwd"));
        assert_eq!(by("big.csv").kind, FileKind::TooLarge);
        assert!(by("big.csv").text.is_none());
        assert_eq!(view.removed, vec!["gone.txt".to_string()]);
    }

    #[test]
    fn notebooks_split_into_cells() {
        let cells = notebook_cells(
            r##"{"cells": [{"cell_type": "markdown", "source": ["# Title\n", "text"]}, {"cell_type": "code", "source": "x = 1", "outputs": []}]}"##,
        )
        .unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].source, "# Title\ntext");
        assert_eq!(cells[1].kind, "code");
    }
}
