//! Reading ruff's JSON report into findings, and counting lines of code. Pure: the lint itself
//! runs inside the sandbox (the job module starts it); this only parses what it printed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub file: String,
    pub line: u64,
    pub rule: String,
    pub message: String,
    /// The lines around `line` in the submission (number, text), for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<(u64, String)>,
}

#[derive(Deserialize)]
struct RuffFinding {
    code: Option<String>,
    message: String,
    filename: String,
    location: Option<RuffLocation>,
}

#[derive(Deserialize)]
struct RuffLocation {
    row: u64,
}

/// Parses `ruff check --output-format json`; file names are made relative to `root`.
/// A finding without a code is a syntax error, reported as rule `syntax`.
pub fn parse_ruff_json(text: &str, root: &str) -> Result<Vec<Finding>, String> {
    let findings: Vec<RuffFinding> = serde_json::from_str(text.trim()).map_err(|error| format!("ruff's report is not readable JSON: {error}"))?;
    Ok(findings
        .into_iter()
        .map(|f| Finding {
            file: f.filename.strip_prefix(root).unwrap_or(&f.filename).trim_start_matches('/').to_string(),
            line: f.location.map(|l| l.row).unwrap_or(0),
            rule: f.code.unwrap_or_else(|| "syntax".to_string()),
            message: f.message,
            context: Vec::new(),
        })
        .collect())
}

/// Files that `ruff format --check` would reformat, from its output.
pub fn parse_format_check(text: &str, root: &str) -> Vec<Finding> {
    text.lines()
        .filter_map(|line| line.strip_prefix("Would reformat: "))
        .map(|file| Finding {
            file: file.trim().strip_prefix(root).unwrap_or(file.trim()).trim_start_matches('/').to_string(),
            line: 0,
            rule: "format".to_string(),
            message: "not formatted as `ruff format` would".to_string(),
            context: Vec::new(),
        })
        .collect()
}

/// The source lines of a notebook's code cells (a `.ipynb` file is JSON), for line counts.
pub fn notebook_code(text: &str) -> String {
    let Ok(notebook) = serde_json::from_str::<serde_json::Value>(text) else { return String::new() };
    let mut code = String::new();
    for cell in notebook["cells"].as_array().into_iter().flatten().filter(|c| c["cell_type"] == "code") {
        match &cell["source"] {
            serde_json::Value::String(text) => code.push_str(text),
            serde_json::Value::Array(lines) => lines.iter().filter_map(|l| l.as_str()).for_each(|l| code.push_str(l)),
            _ => {}
        }
        code.push('\n');
    }
    code
}

/// The lines of an R Markdown file's R chunks (between a ```` ```{r ...} ```` line and the fence
/// that closes it), for line counts: the prose around them is not code.
pub fn rmd_code(text: &str) -> String {
    let mut code = String::new();
    let mut fence: Option<(&str, bool)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        match fence {
            None => {
                let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
                let rest = trimmed[ticks..].trim_start();
                if ticks >= 3 && rest.starts_with('{') {
                    let engine = rest[1..].trim_start().split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("");
                    fence = Some((&trimmed[..ticks], engine.eq_ignore_ascii_case("r")));
                }
            }
            Some((ticks, is_r)) => {
                if trimmed.starts_with(ticks) && trimmed.trim_start_matches('`').is_empty() {
                    fence = None;
                } else if is_r {
                    code.push_str(line);
                    code.push('\n');
                }
            }
        }
    }
    code
}

/// Lines of Python code: not blank, not only a comment.
pub fn count_code_lines(text: &str) -> usize {
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).count()
}

/// Findings from lintr, one a line: `file`, `line`, `linter`, `message`, tab-separated (what
/// the lint job's R snippet prints). Lines of another shape are skipped.
pub fn parse_lintr_lines(text: &str) -> Vec<Finding> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, '\t');
            let (file, number, linter, message) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let line = number.trim().parse().ok()?;
            let rule = if linter.is_empty() { "lintr".to_string() } else { linter.trim_end_matches("_linter").to_string() };
            Some(Finding { file: file.trim_start_matches("./").to_string(), line, rule, message: message.trim().to_string(), context: vec![] })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn r_markdown_counts_the_lines_of_its_r_chunks_only() {
        let text = "---\ntitle: x\n---\n# Prose\n\n```{r setup, echo=FALSE}\nlibrary(readr)\n\n# a comment\n```\n\nMore prose.\n\n````{r}\nx <- 1\n```\ny <- 2\n````\n```{python}\nprint(1)\n```\n";
        assert_eq!(super::rmd_code(text), "library(readr)\n\n# a comment\nx <- 1\n```\ny <- 2\n");
        assert_eq!(super::count_code_lines(&super::rmd_code(text)), 4);
    }

    use super::*;

    #[test]
    fn lintr_lines() {
        let text = "clean.R\t3\tobject_name_linter\tVariable and function name style should be snake_case.\nnoise\nsub/a.R\t0\tlintr\tparse error\n";
        let findings = parse_lintr_lines(text);
        assert_eq!(findings.len(), 2);
        assert_eq!((findings[0].file.as_str(), findings[0].line, findings[0].rule.as_str()), ("clean.R", 3, "object_name"));
        assert_eq!((findings[1].file.as_str(), findings[1].line), ("sub/a.R", 0));
    }

    #[test]
    fn ruff_report() {
        let text = r#"[{"cell":null,"code":"F401","end_location":{"column":10,"row":1},"filename":"/submission/train.py","fix":null,"location":{"column":8,"row":1},"message":"`os` imported but unused","noqa_row":1,"url":"https://docs.astral.sh/ruff/rules/unused-import"},
        {"code":null,"filename":"/submission/bad.py","location":{"column":1,"row":3},"message":"SyntaxError: Expected an expression"}]"#;
        let findings = parse_ruff_json(text, "/submission").unwrap();
        assert_eq!(findings[0], Finding { file: "train.py".into(), line: 1, rule: "F401".into(), message: "`os` imported but unused".into(), context: vec![] });
        assert_eq!(findings[1].rule, "syntax");
        assert!(parse_ruff_json("not json", "/submission").is_err());
        assert_eq!(parse_format_check("Would reformat: /submission/a.py\n1 file would be reformatted", "/submission").len(), 1);
        assert_eq!(count_code_lines("import os\n\n# comment\nx = 1\n"), 2);
    }
}
