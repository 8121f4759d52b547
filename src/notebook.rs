//! A Jupyter notebook's cells, read with a byte budget: the code view shows them, the import
//! scan reads their Python. Serde skips what is past the budget as it parses; nothing of a
//! cell's images or other data is held.

use serde::Serialize;

/// Text outputs kept per notebook cell.
pub const MAX_OUTPUT: usize = 4 << 10;

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `code`, `markdown` or `raw`.
    pub kind: String,
    pub source: String,
    /// Bytes of the source past what was kept (as the cell was parsed).
    #[serde(skip)]
    pub source_dropped: u64,
    /// A code cell's text outputs (streams, `text/plain` results, errors), at most
    /// [`MAX_OUTPUT`]; images and other data are skipped as they are parsed, never held.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Bytes of text outputs not shown.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_cut_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A notebook's cells (JSON `cells[].cell_type`, `source` as a string or a list of lines), at
/// most `max_cells` of them with at most `max_bytes` of source each, and how many cells it has;
/// outputs are skipped as they are parsed (nothing of them is kept). `None`: not a notebook.
pub fn notebook_cells(text: &str, max_cells: usize, max_bytes: usize) -> Option<(Vec<Cell>, usize)> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    parse::Notebook { max_cells, max_bytes }.deserialize(&mut deserializer).ok()
}

/// Bounded parsing of a notebook's JSON: cells past a count and source past a size are skipped
/// by serde as they come, never held.
mod parse {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::Cell;

    pub struct Notebook {
        pub max_cells: usize,
        pub max_bytes: usize,
    }

    impl<'de> DeserializeSeed<'de> for Notebook {
        type Value = (Vec<Cell>, usize);
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Notebook {
        type Value = (Vec<Cell>, usize);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a notebook")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut cells = None;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Cells if cells.is_none() => cells = Some(map.next_value_seed(Cells { max_cells: self.max_cells, max_bytes: self.max_bytes })?),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            cells.ok_or_else(|| de::Error::missing_field("cells"))
        }
    }

    /// A key we want, or any other (never kept).
    enum Key {
        Cells,
        CellType,
        Source,
        Outputs,
        Text,
        Data,
        TextPlain,
        Ename,
        Evalue,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                    Ok(match key {
                        "cells" => Key::Cells,
                        "cell_type" => Key::CellType,
                        "source" => Key::Source,
                        "outputs" => Key::Outputs,
                        "text" => Key::Text,
                        "data" => Key::Data,
                        "text/plain" => Key::TextPlain,
                        "ename" => Key::Ename,
                        "evalue" => Key::Evalue,
                        _ => Key::Other,
                    })
                }
            }
            deserializer.deserialize_str(KeyVisitor)
        }
    }

    struct Cells {
        max_cells: usize,
        max_bytes: usize,
    }

    impl<'de> DeserializeSeed<'de> for Cells {
        type Value = (Vec<Cell>, usize);
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Cells {
        type Value = (Vec<Cell>, usize);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of cells")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let (mut cells, mut total) = (Vec::new(), 0usize);
            loop {
                if cells.len() < self.max_cells {
                    match seq.next_element_seed(OneCell { max_bytes: self.max_bytes })? {
                        Some(cell) => cells.push(cell),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                total += 1;
            }
            Ok((cells, total))
        }
    }

    struct OneCell {
        max_bytes: usize,
    }

    impl<'de> DeserializeSeed<'de> for OneCell {
        type Value = Cell;
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
            deserializer.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for OneCell {
        type Value = Cell;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a cell")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
            let mut cell = Cell { kind: "raw".into(), source: String::new(), source_dropped: 0, output: String::new(), output_cut_bytes: 0 };
            let mut outputs = Text::new(super::MAX_OUTPUT);
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::CellType => {
                        let mut kind = Text::new(16);
                        map.next_value_seed(TextSeed(&mut kind))?;
                        if matches!(kind.text.as_str(), "code" | "markdown" | "raw") {
                            cell.kind = kind.text;
                        }
                    }
                    Key::Source => {
                        let mut source = Text::new(self.max_bytes);
                        map.next_value_seed(TextSeed(&mut source))?;
                        (cell.source, cell.source_dropped) = (source.text, source.dropped);
                    }
                    Key::Outputs => map.next_value_seed(Outputs(&mut outputs))?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            (cell.output, cell.output_cut_bytes) = (outputs.text, outputs.dropped);
            Ok(cell)
        }
    }

    /// Text gathered up to `max` bytes (at a character boundary), with the bytes left out.
    struct Text {
        text: String,
        dropped: u64,
        max: usize,
    }

    impl Text {
        fn new(max: usize) -> Text {
            Text { text: String::new(), dropped: 0, max }
        }

        fn push(&mut self, piece: &str) {
            let room = self.max.saturating_sub(self.text.len());
            let mut end = piece.len().min(room);
            while !piece.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&piece[..end]);
            self.dropped += (piece.len() - end) as u64;
        }

        /// Starts a new piece on a line of its own.
        fn new_line(&mut self) {
            if !self.text.is_empty() && !self.text.ends_with('\n') {
                self.push("\n");
            }
        }
    }

    /// Ignores what it is given: the visitor methods of values we skip.
    macro_rules! ignore_scalars {
        () => {
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
        };
    }

    /// A string, or a list of strings joined, added to a [`Text`]; anything else adds nothing.
    struct TextSeed<'a>(&'a mut Text);

    impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for TextSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
            self.0.push(text);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(line) = seq.next_element::<Line>()? {
                if let Line::Text(text) = line {
                    self.0.push(&text);
                }
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
        ignore_scalars!();
    }

    /// A cell's `outputs`: streams' `text`, results' `data["text/plain"]`, errors' `ename: evalue`.
    struct Outputs<'a>(&'a mut Text);

    impl<'de> DeserializeSeed<'de> for Outputs<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Outputs<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of outputs")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(OneOutput(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        ignore_scalars!();
    }

    /// One output: its `text`, its `data`'s `text/plain`, or its `ename: evalue`.
    struct OneOutput<'a>(&'a mut Text);

    impl<'de> DeserializeSeed<'de> for OneOutput<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for OneOutput<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an output")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Text => {
                        self.0.new_line();
                        map.next_value_seed(TextSeed(&mut *self.0))?;
                    }
                    Key::Data => map.next_value_seed(Data(&mut *self.0))?,
                    Key::Ename => {
                        self.0.new_line();
                        map.next_value_seed(TextSeed(&mut *self.0))?;
                    }
                    Key::Evalue => {
                        self.0.push(": ");
                        map.next_value_seed(TextSeed(&mut *self.0))?;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        ignore_scalars!();
    }

    /// An output's `data`: only `text/plain` is read; images and the rest are skipped.
    struct Data<'a>(&'a mut Text);

    impl<'de> DeserializeSeed<'de> for Data<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Data<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an output's data")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Key>()? {
                if matches!(key, Key::TextPlain) {
                    self.0.new_line();
                    map.next_value_seed(TextSeed(&mut *self.0))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        ignore_scalars!();
    }

    /// One line of a list: a string, or anything else (not kept).
    enum Line {
        Text(String),
        Other,
    }

    impl<'de> de::Deserialize<'de> for Line {
        fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Line, D::Error> {
            struct LineVisitor;
            impl<'de> Visitor<'de> for LineVisitor {
                type Value = Line;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a line")
                }
                fn visit_str<E: de::Error>(self, text: &str) -> Result<Line, E> {
                    Ok(Line::Text(text.to_string()))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Line, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Line::Other)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Line::Other)
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Line, E> {
                    Ok(Line::Other)
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> Result<Line, E> {
                    Ok(Line::Other)
                }
                fn visit_u64<E: de::Error>(self, _: u64) -> Result<Line, E> {
                    Ok(Line::Other)
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Line, E> {
                    Ok(Line::Other)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Line, E> {
                    Ok(Line::Other)
                }
            }
            deserializer.deserialize_any(LineVisitor)
        }
    }
}

/// Bytes of a notebook read to find its kernel's language.
const MAX_LANGUAGE_SCAN: u64 = 256 << 20;

/// The language a notebook's kernel speaks (`metadata.kernelspec.language`, else
/// `metadata.language_info.name`), lowercase: `python`, `r`. `None` when the file is not a
/// notebook, says no language, or is a link (never followed). The file is read as it streams:
/// cells and outputs are skipped by serde, never held.
pub fn language_of(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let file = crate::submission::open_no_follow(path).ok()?;
    language_in(serde_json::from_reader(std::io::BufReader::new(file.take(MAX_LANGUAGE_SCAN))).ok()?)
}

/// An R Markdown file's R chunks as R code at their own lines: every other line (prose, fences,
/// other engines' chunks) left blank, so that a line of the code is the line of the file.
pub fn rmd_r_lines(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut fence: Option<(String, bool)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        let keep = match &fence {
            None => {
                let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
                let rest = trimmed[ticks..].trim_start();
                if ticks >= 3 && rest.starts_with('{') {
                    let engine = rest[1..].trim_start().split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("");
                    fence = Some((trimmed[..ticks].to_string(), engine.eq_ignore_ascii_case("r")));
                }
                false
            }
            Some((ticks, is_r)) => {
                if trimmed.starts_with(ticks.as_str()) && trimmed.trim_start_matches('`').is_empty() {
                    fence = None;
                    false
                } else {
                    *is_r
                }
            }
        };
        if keep {
            code.push_str(line);
        }
        code.push('\n');
    }
    code
}

/// [`language_of`] a notebook's text (`None` when it is not whole JSON).
pub fn language_of_text(text: &str) -> Option<String> {
    language_in(serde_json::from_str(text).ok()?)
}

fn language_in(found: language::Notebook) -> Option<String> {
    let metadata = found.metadata?;
    let spoken = metadata.kernelspec.and_then(|k| k.language).filter(|l| !l.trim().is_empty());
    spoken.or_else(|| metadata.language_info.and_then(|i| i.name)).map(|l| l.trim().to_ascii_lowercase())
}

/// What [`language_of`] reads of a notebook: unknown fields (the cells) are skipped.
mod language {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Notebook {
        pub metadata: Option<Metadata>,
    }

    #[derive(Deserialize)]
    pub struct Metadata {
        pub kernelspec: Option<Kernel>,
        pub language_info: Option<Info>,
    }

    #[derive(Deserialize)]
    pub struct Kernel {
        pub language: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct Info {
        pub name: Option<String>,
    }
}

#[cfg(test)]
mod language_tests {
    use super::language_of;

    #[test]
    fn a_notebooks_language_is_read_from_its_kernel_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap();
            dir.path().join(name)
        };
        let cells = r#""cells": [{"cell_type": "code", "source": ["x <- 1"], "outputs": [{"data": {"image/png": "AAAA"}}]}]"#;
        let r = write("r.ipynb", &format!(r#"{{{cells}, "metadata": {{"kernelspec": {{"name": "ir", "language": "R"}}}}, "nbformat": 4}}"#));
        assert_eq!(language_of(&r).as_deref(), Some("r"));
        let info = write("info.ipynb", &format!(r#"{{"metadata": {{"language_info": {{"name": "python"}}}}, {cells}}}"#));
        assert_eq!(language_of(&info).as_deref(), Some("python"));
        assert_eq!(language_of(&write("none.ipynb", &format!("{{{cells}}}"))), None);
        assert_eq!(language_of(&write("broken.ipynb", "{\"metadata\": ")), None);
        assert_eq!(super::language_of_text(&std::fs::read_to_string(&r).unwrap()).as_deref(), Some("r"));
        std::os::unix::fs::symlink(&r, dir.path().join("link.ipynb")).unwrap();
        assert_eq!(language_of(&dir.path().join("link.ipynb")), None, "a link is not followed");
    }
}
