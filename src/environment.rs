//! What a runner image has installed, said to the people who use it: the package list of an
//! image (`takehome images list`, `ENVIRONMENT.md` in every candidate repository) and the
//! warnings for a push whose `requirements.txt`, `environment.yml` or R `library()` calls name
//! packages or versions the image lacks (in the push reply and on the status page, before any
//! grading).
//!
//! The list comes from the image's recipe: `runner-images/<name>/requirements.txt` pins every
//! Python package and all it needs (`name==version`; `sdist.txt`, of the recipe or the one it
//! extends, the source-only ones), and `packages.txt`, where a recipe has one,
//! lists what else it holds (`name version` per line: the interpreter, Debian's R packages). A
//! built image carries the same list as `/opt/takehome/packages.txt`, which `images list` reads
//! when the engine has the image.
//!
//! It also reads which modules a submission's Python imports ([`submission_imports`]): a task
//! whose image is extended by a larger one (python-slim by python) runs a submission that
//! imports what only the larger image has in that image ([`extended_image`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the import scan of one submission reads at most: bytes of one file, bytes in all.
pub const IMPORT_SCAN_FILE_BYTES: u64 = 2 << 20;
pub const IMPORT_SCAN_BYTES: u64 = 16 << 20;

/// The top-level modules a Python source imports (`import a.b as c` and `from a.b import c` give
/// `a`), wherever the statement stands (in a function, under `try`); relative imports (`from .x
/// import y`) are the submission's own and are left out.
pub fn python_imports(source: &str, out: &mut BTreeSet<String>) {
    let mut parser = tree_sitter::Parser::new();
    if parser.set_language(&tree_sitter_python::LANGUAGE.into()).is_err() {
        return;
    }
    let Some(tree) = parser.parse(source, None) else { return };
    let top = |node: tree_sitter::Node| -> Option<String> {
        let dotted = if node.kind() == "aliased_import" { node.child_by_field_name("name")? } else { node };
        (dotted.kind() == "dotted_name").then(|| dotted.named_child(0)).flatten().and_then(|first| first.utf8_text(source.as_bytes()).ok()).map(str::to_string)
    };
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        match node.kind() {
            "import_statement" => {
                let mut names = node.walk();
                out.extend(node.children_by_field_name("name", &mut names).filter_map(top));
            }
            "import_from_statement" => out.extend(node.child_by_field_name("module_name").and_then(top)),
            _ => {}
        }
        let descend = !matches!(node.kind(), "import_statement" | "import_from_statement" | "string");
        if descend && cursor.goto_first_child() {
            continue;
        }
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// The Python of a notebook's code cells, in order, with IPython's magics and shell escapes
/// (`%matplotlib inline`, `!pip install x`, a `%%bash` cell) blanked so that the rest parses.
pub fn notebook_python(text: &str) -> Option<String> {
    notebook_python_cells(text).map(|(code, _)| code)
}

/// [`notebook_python`], with where each cell's lines start in it: `(cell, first line)`, the cell
/// counted from 1 over all the notebook's cells (as the code view shows them), the line 1-based
/// in the joined code.
pub fn notebook_python_cells(text: &str) -> Option<(String, CellStarts)> {
    let (cells, _) = crate::notebook::notebook_cells(text, usize::MAX, IMPORT_SCAN_FILE_BYTES as usize)?;
    let mut out = String::new();
    let mut starts = Vec::new();
    let mut next_line = 1u64;
    for (index, cell) in cells.iter().enumerate().filter(|(_, cell)| cell.kind == "code") {
        let trimmed = cell.source.trim_start();
        if trimmed.starts_with("%%") && !trimmed.starts_with("%%time") && !trimmed.starts_with("%%capture") {
            continue;
        }
        starts.push((index as u64 + 1, next_line));
        for line in cell.source.lines() {
            let code = line.trim_start();
            out.push_str(if code.starts_with('%') || code.starts_with('!') { "" } else { line });
            out.push('\n');
            next_line += 1;
        }
    }
    Some((out, CellStarts(starts)))
}

/// Where each code cell of a notebook starts in its joined code (see [`notebook_python_cells`]).
#[derive(Debug, Clone, Default)]
pub struct CellStarts(Vec<(u64, u64)>);

impl CellStarts {
    /// A line of the joined code as `(cell, line within the cell)`, both counted from 1.
    pub fn locate(&self, line: u64) -> Option<(u64, u64)> {
        let at = self.0.partition_point(|(_, start)| *start <= line).checked_sub(1)?;
        let (cell, start) = self.0[at];
        Some((cell, line - start + 1))
    }
}

/// The top-level modules a submission's Python files and notebooks import (paths relative to
/// `dir`; none is a link: the prepared copy holds regular files only), less the submission's own
/// (a `name.py` or folder `name/` at its top). Reads at most [`IMPORT_SCAN_FILE_BYTES`] of a file
/// and [`IMPORT_SCAN_BYTES`] in all; a file past either is left out.
pub fn submission_imports(dir: &Path, files: &[std::path::PathBuf]) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let mut budget = IMPORT_SCAN_BYTES;
    for relative in files {
        let path = dir.join(relative);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !meta.is_file() || meta.len() > IMPORT_SCAN_FILE_BYTES || meta.len() > budget {
            continue;
        }
        budget -= meta.len();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        if relative.extension().is_some_and(|e| e == "ipynb") {
            if let Some(code) = notebook_python(&text) {
                python_imports(&code, &mut modules);
            }
        } else {
            python_imports(&text, &mut modules);
        }
    }
    modules.retain(|module| !dir.join(format!("{module}.py")).exists() && !dir.join(module).is_dir());
    modules
}

/// The modules an extended image adds over the one it extends: its recipe's `modules` file (one
/// per line, `#` comments), empty where it has none.
pub fn image_modules(root: &Path, image: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("runner-images").join(image).join("modules")).unwrap_or_default();
    text.lines().map(|line| line.split('#').next().unwrap_or("").trim()).filter(|m| !m.is_empty()).map(str::to_string).collect()
}

/// The first of a task's extended images that has a module the submission imports, with those
/// modules (sorted): the image its Python steps run in. `None`: the task's own image serves.
pub fn extended_image(root: &Path, extended: &[String], imports: &BTreeSet<String>) -> Option<(String, Vec<String>)> {
    extended.iter().find_map(|image| {
        let wanted: Vec<String> = image_modules(root, image).intersection(imports).cloned().collect();
        (!wanted.is_empty()).then(|| (image.clone(), wanted))
    })
}

/// Where a built image keeps its list (`name version` per line).
pub const IMAGE_LIST: &str = "/opt/takehome/packages.txt";

/// The packages of one runner image, by normalised name.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    pub image: String,
    /// Normalised name -> (the name as published, its version).
    pub packages: BTreeMap<String, (String, String)>,
}

/// A package name as pip compares them (PEP 503): lower case, runs of `-_.` as one `-`.
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Why an image's list of packages cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("no runner image recipe {image:?} (expected a folder {})", dir.display())]
    NoRecipe { image: String, dir: PathBuf },
    #[error("{}: neither packages.txt nor requirements.txt (the recipe says nothing of what it installs)", .0.display())]
    NoList(PathBuf),
    /// A line that is not `name==version` (`pinned`) or `name version`.
    #[error("{}line {line}: {text:?} (expected {})", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), if *pinned { "name==version" } else { "name version" })]
    Line { file: Option<PathBuf>, line: usize, text: String, pinned: bool },
}

impl Installed {
    /// Reads the list of the recipe `runner-images/<image>/` under `root`.
    pub fn of_recipe(root: &Path, image: &str) -> Result<Installed, ListError> {
        let dir = root.join("runner-images").join(image);
        if !dir.is_dir() {
            return Err(ListError::NoRecipe { image: image.to_string(), dir });
        }
        let lists = [(dir.join("packages.txt"), false), (dir.join("requirements.txt"), true)];
        if !lists.iter().any(|(path, _)| path.is_file()) {
            return Err(ListError::NoList(dir));
        }
        // Source-only packages built at image build time (pinned): the recipe's own `sdist.txt`,
        // or that of the recipe it extends (python's build installs python-slim's).
        let base = std::fs::read_to_string(dir.join("extends")).ok().map(|name| root.join("runner-images").join(name.trim()));
        let sdist = [Some(dir.join("sdist.txt")), base.map(|base| base.join("sdist.txt"))].into_iter().flatten().find(|path| path.is_file());
        let mut installed = Installed { image: image.to_string(), packages: BTreeMap::new() };
        for (path, pinned) in lists.into_iter().chain(sdist.map(|path| (path, true))) {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            installed.add_list(&text, pinned).map_err(|e| match e {
                ListError::Line { line, text, pinned, .. } => ListError::Line { file: Some(path.clone()), line, text, pinned },
                other => other,
            })?;
        }
        Ok(installed)
    }

    /// Reads `/opt/takehome/packages.txt` of a built image (`name version` per line).
    pub fn of_image_list(image: &str, text: &str) -> Result<Installed, ListError> {
        let mut installed = Installed { image: image.to_string(), packages: BTreeMap::new() };
        installed.add_list(text, false)?;
        Ok(installed)
    }

    /// Adds `name==version` lines (`pinned`) or `name version` lines; `#` starts a comment.
    fn add_list(&mut self, text: &str, pinned: bool) -> Result<(), ListError> {
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parts = if pinned { line.split_once("==") } else { line.split_once(char::is_whitespace) };
            let Some((name, version)) = parts.map(|(n, v)| (n.trim(), v.trim())).filter(|(n, v)| !n.is_empty() && !v.is_empty()) else {
                return Err(ListError::Line { file: None, line: number + 1, text: line.to_string(), pinned });
            };
            let key = normalise(name);
            // A CPU-only build (`xgboost-cpu`) is what `pip install xgboost` would have given here.
            if let Some(base) = key.strip_suffix("-cpu") {
                self.packages.entry(base.to_string()).or_insert_with(|| (base.to_string(), version.to_string()));
            }
            self.packages.insert(key, (name.to_string(), version.to_string()));
        }
        Ok(())
    }

    pub fn version(&self, name: &str) -> Option<&str> {
        self.packages.get(&normalise(name)).map(|(_, version)| version.as_str())
    }

    /// `name version` per line, sorted: what `takehome images list` prints.
    pub fn listing(&self) -> String {
        let width = self.packages.values().map(|(name, _)| name.len()).max().unwrap_or(0);
        self.packages.values().fold(String::new(), |mut out, (name, version)| {
            let _ = writeln!(out, "{name:width$}  {version}");
            out
        })
    }

    /// The `ENVIRONMENT.md` a candidate's repository starts with.
    pub fn environment_md(&self, task_title: &str) -> String {
        let mut out = format!(
            "# What your code runs with\n\n\
             The steps of *{task_title}* run in the `{}` image: Linux (Debian bookworm) with the packages below, \
             and **no network**, so nothing can be installed while your code runs (a `pip install` in a notebook \
             is skipped when the package is here already, and stops the run when it is not). If your \
             `requirements.txt` or `environment.yml` names a package or version that is not below, the reply to \
             your push and your status page say which, before any grading.\n\n\
             Notebooks run headless: `%matplotlib inline` and other display magics work, `plt.show()` draws \
             nothing on a screen, and figures are rendered with matplotlib's Agg backend.\n\n\
             | package | version |\n|---|---|\n",
            self.image
        );
        for (name, version) in self.packages.values() {
            let _ = writeln!(out, "| {name} | {version} |");
        }
        out
    }

    /// [`Installed::environment_md`], then a section for the image R scripts run in, where the
    /// task has one, and one for each extended image (what it adds, and the imports that choose it).
    pub fn environment_md_with(&self, task_title: &str, r: Option<&Installed>, extended: &[(Installed, BTreeSet<String>)]) -> String {
        let mut out = self.environment_md(task_title);
        for (other, modules) in extended {
            let modules: Vec<String> = modules.iter().map(|m| format!("`{m}`")).collect();
            let _ = write!(
                out,
                "\n## Deep learning: the `{}` image\n\n\
                 When your Python imports any of {} (in a script or a notebook), your Python steps run in the `{}` image \
                 instead, with the same limits, paths and no network. It holds every package above at the same version, \
                 and these besides:\n\n| package | version |\n|---|---|\n",
                other.image,
                modules.join(", "),
                other.image
            );
            for (key, (name, version)) in &other.packages {
                if self.packages.get(key).map(|(_, v)| v) != Some(version) {
                    let _ = writeln!(out, "| {name} | {version} |");
                }
            }
        }
        if let Some(other) = r {
            let _ = write!(
                out,
                "\n## Steps run in R: the `{}` image\n\n\
                 An R script handed in for a step (`Rscript clean.R` and the like), an R notebook (a `.ipynb` whose kernel is R) \
                 or R Markdown (`.Rmd`, its R chunks run in order) runs in the `{}` image instead, with the same limits, paths \
                 and no network; `library()` calls of packages not below are named in the reply to your push, and \
                 `install.packages()` of one that is below is skipped. Its code quality is judged by lintr's default linters \
                 (notebooks' R cells are not linted).\n\n| package | version |\n|---|---|\n",
                other.image, other.image
            );
            for (name, version) in other.packages.values() {
                let _ = writeln!(out, "| {name} | {version} |");
            }
        }
        out
    }
}

/// A package a submission asks for: where, which and which versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub file: String,
    pub line: usize,
    pub name: String,
    /// The version constraint as written (`==1.2`, `>=2,<3`), empty for any.
    pub constraint: String,
}

/// The files of a push that say what it needs, at the top of the repository.
pub const REQUIREMENT_FILES: [&str; 3] = ["requirements.txt", "environment.yml", "environment.yaml"];

/// The packages a `requirements.txt` asks for (options, URLs and `-r` includes are left out).
pub fn from_requirements(file: &str, text: &str) -> Vec<Wanted> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if out.len() == MAX_WANTED {
            break;
        }
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') || line.contains("://") {
            continue;
        }
        if let Some(wanted) = requirement(file, index + 1, line) {
            out.push(wanted);
        }
    }
    out
}

/// One requirement specifier: `name[extras] (constraint) ; marker`.
fn requirement(file: &str, line: usize, text: &str) -> Option<Wanted> {
    let text = text.split(';').next().unwrap_or("").trim();
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))).unwrap_or(text.len());
    let name = &text[..end];
    if name.is_empty() {
        return None;
    }
    let mut rest = text[end..].trim();
    if rest.starts_with('[') {
        rest = rest.split_once(']').map(|(_, after)| after.trim()).unwrap_or("");
    }
    let constraint: String = rest.trim_matches(|c| c == '(' || c == ')').split_whitespace().collect();
    Some(Wanted { file: file.to_string(), line, name: name.to_string(), constraint })
}

/// The packages a conda `environment.yml` asks for: the entries of `dependencies` (conda's
/// `name=version` and `name>=version`) and of its `pip` list. The interpreter and conda's own
/// tools (`python`, `pip`) are left out.
pub fn from_environment_yml(file: &str, text: &str) -> Vec<Wanted> {
    let mut out = Vec::new();
    let mut in_dependencies = false;
    for (index, raw) in text.lines().enumerate() {
        if out.len() == MAX_WANTED {
            break;
        }
        let line = raw.split('#').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_dependencies = line.trim() == "dependencies:";
            continue;
        }
        let Some(item) = line.trim().strip_prefix('-').map(str::trim) else { continue };
        if !in_dependencies || item.ends_with(':') || item.is_empty() {
            continue;
        }
        // conda's single `=` pins a version; a channel prefix (`conda-forge::x`) is dropped.
        let item = item.rsplit("::").next().unwrap_or(item).trim_matches(|c| c == '"' || c == '\'');
        let normalised = if item.contains(['<', '>', '!', '~']) || item.contains("==") {
            item.to_string()
        } else if let Some((name, version)) = item.split_once('=') {
            format!("{name}=={}", version.split('=').next().unwrap_or(version))
        } else {
            item.to_string()
        };
        if let Some(wanted) = requirement(file, index + 1, &normalised) {
            if !matches!(normalise(&wanted.name).as_str(), "python" | "pip" | "conda" | "setuptools" | "wheel") {
                out.push(wanted);
            }
        }
    }
    out
}

/// The packages an R script loads: `library(x)`, `require(x)`, `requireNamespace("x")` and
/// `x::f`, each once, in the order first seen. Linear in the text: a name is at most
/// `MAX_NAME` characters read forwards or backwards from its call, and at most `MAX_WANTED`
/// names are kept.
pub fn from_r_script(file: &str, text: &str) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.';
    let mut add = |line: usize, name: &str| {
        let plain = !name.is_empty() && name.len() <= MAX_NAME && name.as_bytes()[0].is_ascii_alphabetic();
        if plain && out.len() < MAX_WANTED && seen.insert(name.to_string()) {
            out.push(Wanted { file: file.to_string(), line, name: name.to_string(), constraint: String::new() });
        }
    };
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        for call in ["library(", "require(", "requireNamespace("] {
            let mut rest = line;
            while let Some(at) = rest.find(call) {
                let preceded = rest.as_bytes()[..at].last().is_some_and(|&b| name_char(b) || b == b'_');
                let after = rest[at + call.len()..].trim_start_matches([' ', '\t', '"', '\'']);
                if !preceded {
                    let end = after.bytes().take(MAX_NAME + 1).take_while(|&b| name_char(b)).count();
                    add(index + 1, &after[..end]);
                }
                rest = &rest[at + call.len()..];
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("::") {
            let before = &rest.as_bytes()[..at];
            let length = before.iter().rev().take(MAX_NAME + 1).take_while(|&&b| name_char(b)).count();
            add(index + 1, &rest[at - length..at]);
            rest = rest[at + 2..].trim_start_matches(':');
        }
    }
    out
}

/// The longest package name read, and the most packages read from one push.
const MAX_NAME: usize = 64;
pub const MAX_WANTED: usize = 200;

/// At most `limit` characters of a candidate's text, control characters dropped (a warning is
/// shown in their terminal and on their page).
fn shown(text: &str, limit: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(limit).collect();
    if text.chars().filter(|c| !c.is_control()).nth(limit).is_some() {
        out.push('…');
    }
    out
}

/// R's base packages, which come with R itself.
const R_BASE: [&str; 14] =
    ["base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel", "splines", "stats", "stats4", "tcltk", "tools", "utils"];

/// One line per package the image lacks or holds in another version than asked for.
pub fn warnings(installed: &Installed, wanted: &[Wanted]) -> Vec<String> {
    let mut out = Vec::new();
    for want in wanted {
        if R_BASE.contains(&want.name.as_str()) {
            continue;
        }
        let asked = if want.constraint.is_empty() { shown(&want.name, 100) } else { format!("{}{}", shown(&want.name, 100), shown(&want.constraint, 60)) };
        let at = format!("{}: line {}: {asked}", shown(&want.file, 100), want.line);
        match installed.version(&want.name) {
            None => out.push(format!("{at}: not installed in the {} image (there is no network to install it)", installed.image)),
            Some(version) if !satisfies(version, &want.constraint) => out.push(format!("{at}: the {} image has {} {version}", installed.image, want.name)),
            Some(_) => {}
        }
    }
    out
}

/// Whether `version` meets every clause of a constraint like `>=1.2,<2` (`~=` as `>=`, a `.*`
/// in `==` as a prefix). Versions compare by their numeric parts; an unreadable clause is met.
pub fn satisfies(version: &str, constraint: &str) -> bool {
    constraint.split(',').map(str::trim).filter(|c| !c.is_empty()).all(|clause| {
        let operator_end = clause.find(|c: char| !matches!(c, '<' | '>' | '=' | '!' | '~')).unwrap_or(clause.len());
        let (operator, wanted) = clause.split_at(operator_end);
        let wanted = wanted.trim();
        if let Some(prefix) = wanted.strip_suffix(".*") {
            let prefixed = version == prefix || version.starts_with(&format!("{prefix}."));
            return if operator == "!=" { !prefixed } else { prefixed };
        }
        let order = compare(version, wanted);
        match operator {
            "==" | "===" => order == std::cmp::Ordering::Equal,
            "!=" => order != std::cmp::Ordering::Equal,
            ">=" | "~=" => order != std::cmp::Ordering::Less,
            "<=" => order != std::cmp::Ordering::Greater,
            ">" => order == std::cmp::Ordering::Greater,
            "<" => order == std::cmp::Ordering::Less,
            _ => true,
        }
    })
}

/// Compares versions by their numeric release parts (`1.10.0` > `1.9`; `2.0.0` == `2`).
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        let release = v.split(['+', '-']).next().unwrap_or(v);
        release.split('.').map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)).collect()
    };
    let (mut x, mut y) = (parts(a), parts(b));
    let width = x.len().max(y.len());
    x.resize(width, 0);
    y.resize(width, 0);
    x.cmp(&y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() -> Installed {
        let mut i = Installed { image: "python".into(), packages: BTreeMap::new() };
        i.add_list("numpy==2.2.6\nscikit-learn==1.6.1\nxgboost-cpu==2.1.4\nPyYAML==6.0.2\n", true).unwrap();
        i.add_list("python 3.11.2\nr-base 4.2.2\n", false).unwrap();
        i
    }

    #[test]
    fn imports_are_read_from_scripts_and_notebooks_wherever_they_stand() {
        let mut found = BTreeSet::new();
        let source = "import numpy as np, torch.nn as nn\nfrom sklearn.model_selection import train_test_split\nfrom . import helpers\nfrom .x import y\ntry:\n    import tensorflow\nexcept ImportError:\n    pass\ndef f():\n    from transformers import AutoModel\ns = 'import faiss'\n# import spacy\n";
        python_imports(source, &mut found);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["numpy", "sklearn", "tensorflow", "torch", "transformers"]);

        let notebook = r##"{"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "!pip install torch\n", "import pandas as pd\n"]},
            {"cell_type": "markdown", "source": "import keras"}, {"cell_type": "code", "source": "%%bash\nimport spacy"},
            {"cell_type": "code", "source": "  %time x = 1\nfrom torchvision import models"}], "nbformat": 4}"##;
        let mut found = BTreeSet::new();
        python_imports(&notebook_python(notebook).unwrap(), &mut found);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["pandas", "torchvision"], "magic lines and other languages' cells are not Python");
    }

    #[test]
    fn a_submission_runs_in_the_first_extended_image_that_has_what_it_imports() {
        let root = tempfile::tempdir().unwrap();
        let recipe = root.path().join("runner-images/python");
        std::fs::create_dir_all(&recipe).unwrap();
        std::fs::write(recipe.join("modules"), "# deep learning\ntorch\ntensorflow  # cpu\n").unwrap();
        let sub = root.path().join("sub");
        std::fs::create_dir_all(sub.join("nets")).unwrap();
        std::fs::write(sub.join("train.py"), "import pandas\nimport nets\nimport tensorflow as tf\n").unwrap();
        std::fs::write(sub.join("torch.py"), "x = 1\n").unwrap();
        std::fs::write(sub.join("big.py"), format!("import torch\n{}", "#".repeat(IMPORT_SCAN_FILE_BYTES as usize))).unwrap();
        let files = ["train.py", "torch.py", "big.py"].map(std::path::PathBuf::from);
        let imports = submission_imports(&sub, &files);
        assert_eq!(imports.iter().map(String::as_str).collect::<Vec<_>>(), ["pandas", "tensorflow"], "its own modules and a file past the budget are left out");
        let extended = ["python".to_string()];
        assert_eq!(extended_image(root.path(), &extended, &imports), Some(("python".to_string(), vec!["tensorflow".to_string()])));
        assert_eq!(extended_image(root.path(), &extended, &BTreeSet::from(["pandas".to_string()])), None);
        assert_eq!(extended_image(root.path(), &[], &imports), None);
    }

    /// The shipped recipes' lists: python-slim's pins and its source-only packages; python, which
    /// extends it, its own pins (the deep learning stack) and python-slim's source-only ones.
    #[test]
    fn a_recipe_lists_its_pins_and_the_source_only_packages_of_its_own_or_its_base() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let slim = Installed::of_recipe(root, "python-slim").unwrap();
        let full = Installed::of_recipe(root, "python").unwrap();
        assert_eq!((slim.version("pydotplus"), full.version("pydotplus")), (Some("2.0.2"), Some("2.0.2")));
        assert_eq!((slim.version("torch"), full.version("torch")), (None, Some("2.15.0")));
        assert_eq!(slim.version("pandas"), full.version("pandas"), "python holds python-slim's packages at the same versions");
    }

    #[test]
    fn requirements_name_what_the_image_lacks_or_holds_in_another_version() {
        assert_eq!(installed().version("xgboost"), Some("2.1.4"), "a -cpu build stands for its package");
        let text = "# ours\nnumpy>=1.24\nscikit_learn==1.3.0  # pinned\npyyaml\ntorch==2.3.0 ; python_version >= '3.9'\n-r other.txt\ngit+https://x/y.git\nlightgbm[dask]>=4\n";
        let wanted = from_requirements("requirements.txt", text);
        assert_eq!(wanted.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["numpy", "scikit_learn", "pyyaml", "torch", "lightgbm"]);
        let said = warnings(&installed(), &wanted);
        assert_eq!(
            said,
            [
                "requirements.txt: line 3: scikit_learn==1.3.0: the python image has scikit_learn 1.6.1",
                "requirements.txt: line 5: torch==2.3.0: not installed in the python image (there is no network to install it)",
                "requirements.txt: line 8: lightgbm>=4: not installed in the python image (there is no network to install it)",
            ]
        );
    }

    #[test]
    fn conda_environments_and_r_scripts_are_read_too() {
        let yml = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.10\n  - numpy=1.26\n  - conda-forge::pandas>=2\n  - pip\n  - pip:\n    - shap==0.45\n";
        let wanted = from_environment_yml("environment.yml", yml);
        assert_eq!(
            wanted.iter().map(|w| (w.name.as_str(), w.constraint.as_str())).collect::<Vec<_>>(),
            [("numpy", "==1.26"), ("pandas", ">=2"), ("shap", "==0.45")]
        );
        let r = "library(dplyr)\nsuppressPackageStartupMessages(library(\"ggplot2\"))\nx <- readr::read_csv(f)  # library(commented)\nrequire(stats)\nmylibrary(no)\n";
        let names: Vec<String> = from_r_script("clean.R", r).into_iter().map(|w| w.name).collect();
        assert_eq!(names, ["dplyr", "ggplot2", "readr", "stats"]);
    }

    #[test]
    fn hostile_requirement_files_cost_a_bounded_effort_and_show_bounded_lines() {
        // Tens of thousands of distinct names on one line, and calls that never close.
        let names: String = (0..60_000).map(|i| format!("A{i}::")).collect();
        let unclosed = "library(".repeat(30_000);
        let started = std::time::Instant::now();
        let wanted = from_r_script("x.R", &format!("{names}\n{unclosed}\n"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(wanted.len(), MAX_WANTED);
        let lines: String = (0..100_000).map(|i| format!("p{i}\n")).collect();
        assert_eq!(from_requirements("requirements.txt", &lines).len(), MAX_WANTED);
        // A constraint of 200 KiB and control characters are cut and dropped in what is shown.
        let long = format!("torch=={}\x1b[31m", "9".repeat(200 * 1024));
        let said = warnings(&installed(), &from_requirements("requirements.txt", &long));
        assert_eq!(said.len(), 1);
        assert!(said[0].len() < 400 && !said[0].contains('\x1b'), "{}", &said[0][..said[0].len().min(400)]);
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert!(satisfies("1.10.0", ">=1.9"));
        assert!(satisfies("2.0", "==2.0.0"));
        assert!(!satisfies("2.2.6", "<2"));
        assert!(satisfies("2.2.6", ">=1.24,<3"));
        assert!(satisfies("1.6.1", "==1.6.*"));
        assert!(!satisfies("1.7.0", "==1.6.*"));
        assert!(satisfies("4.6.0", ""));
        assert_eq!(normalise("Scikit_Learn"), "scikit-learn");
        assert_eq!(normalise("zope.interface"), "zope-interface");
    }

    #[test]
    fn an_environment_file_lists_every_package() {
        let text = installed().environment_md("Predict the cut");
        assert!(text.contains("| scikit-learn | 1.6.1 |") && text.contains("| python | 3.11.2 |"), "{text}");
        assert!(text.contains("no network"));
    }
}
