//! What a run leaves for the assessors beside its outputs: each notebook as it ran (the cells'
//! printed output, results, errors and figures; `takehome-notebook` keeps it under
//! `/output/.takehome-executed`) and the figures the steps saved under `/output/figures`.
//!
//! Pure: the job hands in the files it collected (bounded by the collection's cap) and gets back
//! a compact, bounded record for the report. Candidate content, which in a graded run may show
//! hidden data: it is in the assessors' report only, never in [`super::candidate`]'s view.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Bytes of an executed notebook read (a larger one is listed as too large, not parsed).
pub const MAX_NOTEBOOK_BYTES: u64 = 8 << 20;
/// Notebooks kept per run.
pub const MAX_NOTEBOOKS: usize = 10;
/// Cells kept per notebook.
pub const MAX_CELLS: usize = 500;
/// Bytes of a cell's source and of one cell's text output kept.
pub const MAX_TEXT: usize = 4 << 10;
/// Bytes of text kept over one notebook's outputs.
pub const MAX_NOTEBOOK_TEXT: usize = 128 << 10;
/// Bytes of one image kept (PNG or SVG, as the file holds it), and of all images of a run: a
/// report stays near 1.5 MB at most, however much a run drew (pages read up to ten reports).
pub const MAX_IMAGE: usize = 256 << 10;
pub const MAX_IMAGES_BYTES: usize = 1 << 20;
/// Figures (files under `/output/figures`) kept per run.
pub const MAX_FIGURES: usize = 12;

/// What a run left for the assessors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Artifacts {
    pub notebooks: Vec<ExecutedNotebook>,
    pub figures: Vec<Figure>,
    /// What was left out, in words (`"3 figures over the run's 3 MiB of images"`); empty if nothing.
    #[serde(default)]
    pub cut: Vec<String>,
}

impl Artifacts {
    pub fn is_empty(&self) -> bool {
        self.notebooks.is_empty() && self.figures.is_empty() && self.cut.is_empty()
    }

    /// The executed notebook of a submission file (`clean.ipynb`; for R Markdown, `clean.Rmd`,
    /// which the runner keeps as `clean.Rmd.ipynb`), if it ran.
    pub fn notebook(&self, file: &str) -> Option<&ExecutedNotebook> {
        let name = Path::new(file).file_name()?.to_str()?;
        if name.ends_with(".ipynb") {
            self.notebooks.iter().find(|n| n.file == name)
        } else if name.to_ascii_lowercase().ends_with(".rmd") {
            self.notebooks.iter().find(|n| n.file.strip_suffix(".ipynb") == Some(name))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecutedNotebook {
    /// The notebook's file name, as the step ran it.
    pub file: String,
    pub cells: Vec<ExecutedCell>,
    /// Cells not kept (past [`MAX_CELLS`]).
    #[serde(default)]
    pub cells_cut: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecutedCell {
    /// `code` or `markdown` (raw cells are left out).
    pub kind: String,
    pub source: String,
    /// The execution count the kernel gave it (`None`: not run, as after an error).
    pub count: Option<i64>,
    pub outputs: Vec<CellOutput>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellOutput {
    /// Printed text, a result's `text/plain`, or an error's name, value and traceback.
    Text { text: String, error: bool },
    /// A figure: `image/png` (base64, as the notebook holds it) or `image/svg+xml` (text).
    Image { mime: String, data: String },
    /// Something shown but not kept (an image over the caps, HTML, a widget).
    Omitted { what: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// The path under `/output/figures`.
    pub name: String,
    pub mime: String,
    /// Base64 of the file.
    pub data: String,
}

/// Builds the record from what was collected: `executed` holds the notebooks (file name, bytes),
/// `figures` the files under `/output/figures` (path, bytes); both already capped in size by the
/// collection.
pub fn gather(executed: Vec<(String, Vec<u8>)>, figures: Vec<(String, Vec<u8>)>) -> Artifacts {
    let mut out = Artifacts::default();
    let mut images_left = MAX_IMAGES_BYTES;
    let mut executed = executed;
    executed.sort();
    let n_notebooks = executed.iter().filter(|(name, _)| name.ends_with(".ipynb")).count();
    for (name, bytes) in executed.into_iter().filter(|(name, _)| name.ends_with(".ipynb")).take(MAX_NOTEBOOKS) {
        if bytes.len() as u64 > MAX_NOTEBOOK_BYTES {
            out.cut.push(format!("{name}: the executed notebook is over {} and is not shown", crate::units::format_size(MAX_NOTEBOOK_BYTES)));
            continue;
        }
        match notebook(&name, &bytes, &mut images_left) {
            Some(parsed) => out.notebooks.push(parsed),
            None => out.cut.push(format!("{name}: the executed notebook could not be read")),
        }
    }
    if n_notebooks > MAX_NOTEBOOKS {
        out.cut.push(format!("{} more executed notebooks not shown (at most {MAX_NOTEBOOKS})", n_notebooks - MAX_NOTEBOOKS));
    }
    let mut figures: Vec<(String, Vec<u8>)> = figures.into_iter().filter(|(name, _)| figure_mime(name).is_some()).collect();
    figures.sort();
    let total = figures.len();
    for (name, bytes) in figures.into_iter().take(MAX_FIGURES) {
        let mime = figure_mime(&name).unwrap_or("image/png");
        if bytes.len() > MAX_IMAGE || bytes.len() > images_left || !looks_like(mime, &bytes) {
            out.cut.push(format!(
                "figures/{name}: not shown (over {} a figure or the run's {} of images, or not a {mime} file)",
                crate::units::format_size(MAX_IMAGE as u64),
                crate::units::format_size(MAX_IMAGES_BYTES as u64)
            ));
            continue;
        }
        images_left -= bytes.len();
        out.figures.push(Figure { name, mime: mime.to_string(), data: base64::engine::general_purpose::STANDARD.encode(&bytes) });
    }
    if total > MAX_FIGURES {
        out.cut.push(format!("{} more figures not shown (at most {MAX_FIGURES})", total - MAX_FIGURES));
    }
    out
}

fn figure_mime(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".png") {
        Some("image/png")
    } else if lower.ends_with(".svg") {
        Some("image/svg+xml")
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        Some("image/jpeg")
    } else {
        None
    }
}

/// Whether the bytes are what the name says (a page shows them as an image of that type only).
fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        "image/svg+xml" => std::str::from_utf8(&bytes[..bytes.len().min(1024)]).is_ok_and(|t| t.contains("<svg") || t.trim_start().starts_with("<?xml")),
        _ => false,
    }
}

/// The nbformat 4 fields read (anything else is ignored).
#[derive(Deserialize)]
struct RawNotebook {
    #[serde(default)]
    cells: Vec<RawCell>,
}

#[derive(Deserialize)]
struct RawCell {
    #[serde(default)]
    cell_type: String,
    #[serde(default)]
    source: MultiText,
    #[serde(default)]
    execution_count: Option<i64>,
    #[serde(default)]
    outputs: Vec<serde_json::Value>,
}

/// nbformat keeps texts as a string or a list of lines.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum MultiText {
    One(String),
    Lines(Vec<String>),
    #[default]
    None,
}

impl MultiText {
    fn text(&self) -> String {
        match self {
            MultiText::One(text) => text.clone(),
            MultiText::Lines(lines) => lines.concat(),
            MultiText::None => String::new(),
        }
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str()).collect(),
        _ => String::new(),
    }
}

/// Cuts `text` to `max` bytes (at a character boundary), saying how much was cut.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut: {} bytes)", &text[..end], text.len() - end)
}

/// Colour codes in tracebacks (IPython's) become plain text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn notebook(name: &str, bytes: &[u8], images_left: &mut usize) -> Option<ExecutedNotebook> {
    let raw: RawNotebook = serde_json::from_slice(bytes).ok()?;
    let mut text_left = MAX_NOTEBOOK_TEXT;
    let mut take_text = |text: &str| -> String {
        let kept = capped(text, MAX_TEXT.min(text_left.max(200)));
        text_left = text_left.saturating_sub(kept.len());
        kept
    };
    let kept_cells: Vec<&RawCell> = raw.cells.iter().filter(|c| c.cell_type == "code" || c.cell_type == "markdown").collect();
    let cells_cut = kept_cells.len().saturating_sub(MAX_CELLS);
    let mut cells = Vec::new();
    for cell in kept_cells.into_iter().take(MAX_CELLS) {
        let mut outputs = Vec::new();
        for output in &cell.outputs {
            let kind = output.get("output_type").and_then(|k| k.as_str()).unwrap_or("");
            match kind {
                "stream" => outputs.push(CellOutput::Text {
                    text: take_text(&value_text(output.get("text").unwrap_or(&serde_json::Value::Null))),
                    error: output.get("name").and_then(|n| n.as_str()) == Some("stderr"),
                }),
                "error" => {
                    let name = output.get("ename").and_then(|v| v.as_str()).unwrap_or("Error");
                    let value = output.get("evalue").and_then(|v| v.as_str()).unwrap_or("");
                    let trace: Vec<String> = output
                        .get("traceback")
                        .and_then(|t| t.as_array())
                        .map(|t| t.iter().filter_map(|l| l.as_str()).map(strip_ansi).collect())
                        .unwrap_or_default();
                    let text = if trace.is_empty() { format!("{name}: {value}") } else { trace.join("\n") };
                    outputs.push(CellOutput::Text { text: take_text(&text), error: true });
                }
                "execute_result" | "display_data" => {
                    let data = output.get("data");
                    let image =
                        ["image/png", "image/svg+xml", "image/jpeg"].into_iter().find_map(|mime| data.and_then(|d| d.get(mime)).map(|v| (mime, value_text(v))));
                    match image {
                        Some((mime, body)) => {
                            let body: String = if mime == "image/svg+xml" { body } else { body.split_whitespace().collect() };
                            if body.len() <= MAX_IMAGE && body.len() <= *images_left {
                                *images_left -= body.len();
                                outputs.push(CellOutput::Image { mime: mime.to_string(), data: body });
                            } else {
                                outputs.push(CellOutput::Omitted {
                                    what: format!("a {mime} figure of {} (over the caps)", crate::units::format_size(body.len() as u64)),
                                });
                            }
                        }
                        None => match data.and_then(|d| d.get("text/plain")) {
                            Some(plain) => outputs.push(CellOutput::Text { text: take_text(&value_text(plain)), error: false }),
                            None => outputs.push(CellOutput::Omitted { what: "an output with no text or image form".to_string() }),
                        },
                    }
                }
                _ => {}
            }
        }
        cells.push(ExecutedCell { kind: cell.cell_type.clone(), source: capped(&cell.source.text(), MAX_TEXT), count: cell.execution_count, outputs });
    }
    Some(ExecutedNotebook { file: name.to_string(), cells, cells_cut })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest";

    #[test]
    fn r_markdown_finds_the_notebook_its_run_was_kept_as() {
        let notebook = serde_json::json!({"cells": [{"cell_type": "code", "source": "x <- 1", "execution_count": 1, "outputs": []}]});
        let artifacts = gather(vec![("train.Rmd.ipynb".into(), notebook.to_string().into_bytes())], vec![]);
        assert_eq!(artifacts.notebook("steps/train.Rmd").map(|n| n.cells.len()), Some(1));
        assert!(artifacts.notebook("train.ipynb").is_none() && artifacts.notebook("train.R").is_none());
    }

    #[test]
    fn an_executed_notebook_keeps_text_errors_and_figures_within_bounds() {
        let notebook = serde_json::json!({"cells": [
            {"cell_type": "markdown", "source": ["# Title"], "metadata": {}},
            {"cell_type": "code", "source": "print('hi')", "execution_count": 1, "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["hi\n"]},
                {"output_type": "display_data", "data": {"image/png": "aGVs\nbG8=\n", "text/plain": "<Figure>"}},
                {"output_type": "execute_result", "data": {"text/plain": "x".repeat(10_000)}}
            ]},
            {"cell_type": "code", "source": "1/0", "execution_count": 2, "outputs": [
                {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero"]}
            ]},
            {"cell_type": "raw", "source": "left out"}
        ]});
        let artifacts = gather(
            vec![("work.ipynb".into(), notebook.to_string().into_bytes())],
            vec![("plot.png".into(), PNG.to_vec()), ("fake.png".into(), b"<script>".to_vec()), ("notes.txt".into(), b"x".to_vec())],
        );
        let executed = artifacts.notebook("sub/work.ipynb").expect("found by file name");
        assert!(artifacts.notebook("work.py").is_none() && artifacts.notebook("work.Rmd").is_none());
        assert_eq!(executed.cells.len(), 3);
        let outputs = &executed.cells[1].outputs;
        assert_eq!(outputs[0], CellOutput::Text { text: "hi\n".into(), error: false });
        assert_eq!(outputs[1], CellOutput::Image { mime: "image/png".into(), data: "aGVsbG8=".into() });
        let CellOutput::Text { text, .. } = &outputs[2] else { panic!("{outputs:?}") };
        assert!(text.len() < 4200 && text.ends_with("(cut: 5904 bytes)"), "{}", &text[text.len() - 40..]);
        assert_eq!(executed.cells[2].outputs[0], CellOutput::Text { text: "ZeroDivisionError: division by zero".into(), error: true });
        assert_eq!(artifacts.figures.len(), 1, "a file that is not the image its name says is not shown: {artifacts:?}");
        assert_eq!(artifacts.figures[0].name, "plot.png");
        assert!(artifacts.cut.iter().any(|c| c.contains("fake.png")), "{:?}", artifacts.cut);
    }

    #[test]
    fn a_flood_of_figures_is_cut_and_said() {
        let big = [PNG, &vec![0u8; 200 << 10]].concat();
        let figures: Vec<(String, Vec<u8>)> = (0..20).map(|n| (format!("f{n:02}.png"), big.clone())).collect();
        let artifacts = gather(vec![("bad.ipynb".into(), b"not json".to_vec())], figures);
        let kept: usize = artifacts.figures.iter().map(|f| f.data.len() * 3 / 4).sum();
        assert!(kept <= MAX_IMAGES_BYTES, "{kept}");
        assert!(artifacts.figures.len() < MAX_FIGURES);
        assert!(artifacts.cut.iter().any(|c| c.contains("more figures not shown")), "{:?}", artifacts.cut);
        assert!(artifacts.cut.iter().any(|c| c.contains("bad.ipynb: the executed notebook could not be read")), "{:?}", artifacts.cut);
    }
}
