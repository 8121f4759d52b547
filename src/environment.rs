//! What a runner image has installed, said to the people who use it: the package list of an
//! image (`takehome images list`, `ENVIRONMENT.md` in every candidate repository) and the
//! warnings for a push whose `requirements.txt`, `environment.yml` or R `library()` calls name
//! packages or versions the image lacks (in the push reply and on the status page, before any
//! grading).
//!
//! The list comes from the image's recipe: `runner-images/<name>/requirements.txt` pins every
//! Python package and all it needs (`name==version`), and `packages.txt`, where a recipe has one,
//! lists what else it holds (`name version` per line: the interpreter, Debian's R packages). A
//! built image carries the same list as `/opt/takehome/packages.txt`, which `images list` reads
//! when the engine has the image.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

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

impl Installed {
    /// Reads the list of the recipe `runner-images/<image>/` under `root`.
    pub fn of_recipe(root: &Path, image: &str) -> Result<Installed, String> {
        let dir = root.join("runner-images").join(image);
        if !dir.is_dir() {
            return Err(format!("no runner image recipe {image:?} (expected a folder {})", dir.display()));
        }
        let mut installed = Installed { image: image.to_string(), packages: BTreeMap::new() };
        let mut found = false;
        for (file, pinned) in [("packages.txt", false), ("requirements.txt", true)] {
            let path = dir.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            found = true;
            installed.add_list(&text, pinned).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if !found {
            return Err(format!("{}: neither packages.txt nor requirements.txt (the recipe says nothing of what it installs)", dir.display()));
        }
        Ok(installed)
    }

    /// Reads `/opt/takehome/packages.txt` of a built image (`name version` per line).
    pub fn of_image_list(image: &str, text: &str) -> Result<Installed, String> {
        let mut installed = Installed { image: image.to_string(), packages: BTreeMap::new() };
        installed.add_list(text, false)?;
        Ok(installed)
    }

    /// Adds `name==version` lines (`pinned`) or `name version` lines; `#` starts a comment.
    fn add_list(&mut self, text: &str, pinned: bool) -> Result<(), String> {
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parts = if pinned { line.split_once("==") } else { line.split_once(char::is_whitespace) };
            let Some((name, version)) = parts.map(|(n, v)| (n.trim(), v.trim())).filter(|(n, v)| !n.is_empty() && !v.is_empty()) else {
                return Err(format!("line {}: {line:?} (expected {})", number + 1, if pinned { "name==version" } else { "name version" }));
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

    /// [`Installed::environment_md`], then a section for each other image the task's run
    /// choices use (R scripts run in the `r` image).
    pub fn environment_md_with(&self, task_title: &str, others: &[Installed]) -> String {
        let mut out = self.environment_md(task_title);
        for other in others {
            let _ = write!(
                out,
                "\n## Steps run as R scripts: the `{}` image\n\n\
                 An R script handed in for a step (`Rscript clean.R` and the like) runs in the `{}` image instead, with the \
                 same limits, paths and no network; `library()` calls of packages not below are named in the reply to your push. \
                 Its code quality is judged by lintr's default linters.\n\n| package | version |\n|---|---|\n",
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
