//! Grading: turns the files that the sandbox copied out into numbers and scores.
//!
//! Invariants: grading never talks to Docker; it reads only files the host wrote itself (outputs
//! already extracted by the sandbox) and the task author's hidden truth. It is the only module that
//! imports polars. A candidate's malformed output is an [`OutputProblem`] in the result, never an
//! `Err` and never a panic; `Err(GradingError)` means our own data (the truth) is unreadable.

pub mod cleaning;
pub mod lint;
pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polars::prelude::*;
use serde::Serialize;

use crate::task::{GradingSpec, Metric, MetricInput};

/// Output files larger than this are refused before any read.
pub const MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// How many offending ids or cells a problem lists.
pub const EXAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("{}: {message}", path.display())]
    Truth { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    MissingOutput,
    BadFormat,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::MissingOutput => "missing_output",
            ProblemKind::BadFormat => "bad_format",
        }
    }
}

/// Why an output could not be scored, in words a candidate can act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputProblem {
    pub kind: ProblemKind,
    pub message: String,
}

impl OutputProblem {
    pub fn missing(message: impl Into<String>) -> OutputProblem {
        OutputProblem { kind: ProblemKind::MissingOutput, message: message.into() }
    }
    pub fn bad_format(message: impl Into<String>) -> OutputProblem {
        OutputProblem { kind: ProblemKind::BadFormat, message: message.into() }
    }
}

/// The accuracy part of a grade: the metric's value, or the problem that prevented it.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub metric: &'static str,
    pub value: Option<f64>,
    pub problem: Option<OutputProblem>,
    pub n_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<metrics::ClassCounts>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleaning: Option<cleaning::CleaningDetails>,
}

impl Accuracy {
    pub fn failed(metric: Metric, problem: OutputProblem) -> Accuracy {
        Accuracy { metric: metric.name(), value: None, problem: Some(problem), n_rows: 0, classes: None, cleaning: None }
    }
}

impl Serialize for metrics::ClassCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ClassCounts", 5)?;
        s.serialize_field("label", &self.label)?;
        s.serialize_field("support", &self.support())?;
        s.serialize_field("true_positives", &self.true_positives)?;
        s.serialize_field("false_positives", &self.false_positives)?;
        s.serialize_field("false_negatives", &self.false_negatives)?;
        s.end()
    }
}

/// Grades the output file `output` (a regular file the host extracted) against the truth.
pub fn grade_output(spec: &GradingSpec, output: &Path, truth: &Path) -> Result<Accuracy, GradingError> {
    let truth_table = read_strings(truth).map_err(|message| GradingError::Truth { path: truth.to_path_buf(), message })?;
    let output_table = match std::fs::metadata(output) {
        Err(_) => return Ok(Accuracy::failed(spec.metric, OutputProblem::missing(format!("no {} in /output", spec.output)))),
        Ok(meta) if meta.len() > MAX_OUTPUT_BYTES => {
            return Ok(Accuracy::failed(
                spec.metric,
                OutputProblem::bad_format(format!("{} is larger than {}", spec.output, crate::units::format_size(MAX_OUTPUT_BYTES))),
            ))
        }
        Ok(meta) if meta.len() == 0 => {
            return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{} is empty", spec.output))));
        }
        Ok(_) => match read_strings(output) {
            Ok(table) => table,
            Err(message) => {
                return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{} cannot be read as CSV: {message}", spec.output))))
            }
        },
    };
    match spec.metric.input() {
        MetricInput::Table => cleaning::grade(spec, &output_table, &truth_table, truth),
        _ => grade_predictions(spec, &output_table, &truth_table, truth),
    }
}

/// Reads a CSV with every column as text, so that nothing is guessed about types.
pub(crate) fn read_strings(path: &Path) -> Result<DataFrame, String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    if let Err(error) = std::str::from_utf8(&bytes) {
        let line = bytes[..error.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        return Err(format!("not UTF-8 text (line {line})"));
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(std::io::Cursor::new(body))
        .finish()
        .map_err(|error| first_line(&error.to_string()))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// A column as text values; `None` for a null.
pub(crate) fn text_column<'a>(table: &'a DataFrame, name: &str) -> Option<Vec<Option<&'a str>>> {
    let column = table.column(name).ok()?;
    let strings = column.as_materialized_series().str().ok()?;
    Some(strings.iter().collect())
}

/// Lists up to [`EXAMPLES`] items: `"a", "b" and 3 more`.
pub(crate) fn examples(items: &[String], total: usize) -> String {
    let shown: Vec<String> = items.iter().take(EXAMPLES).map(|item| format!("{item:?}")).collect();
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn grade_predictions(spec: &GradingSpec, output: &DataFrame, truth: &DataFrame, truth_path: &Path) -> Result<Accuracy, GradingError> {
    let target = spec.target.as_deref().unwrap_or_default();
    let truth_error = |message: String| GradingError::Truth { path: truth_path.to_path_buf(), message };
    let truth_ids = text_column(truth, &spec.id).ok_or_else(|| truth_error(format!("no column {:?}", spec.id)))?;
    let truth_values = text_column(truth, target).ok_or_else(|| truth_error(format!("no column {target:?}")))?;
    let fail = |message: String| Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(message)));

    let names: Vec<String> = output.get_column_names().iter().map(|n| n.to_string()).collect();
    let expected = format!("expected the columns {:?} and {target:?}", spec.id);
    for required in [spec.id.as_str(), target] {
        if !names.iter().any(|n| n == required) {
            return fail(format!("{}: no column {required:?} ({expected}; found {names:?})", spec.output));
        }
    }
    if let Some(extra) = names.iter().find(|n| *n != &spec.id && *n != target) {
        return fail(format!("{}: unexpected column {extra:?} ({expected} only)", spec.output));
    }
    let ids = text_column(output, &spec.id).expect("checked above");
    let values = text_column(output, target).expect("checked above");

    let truth_index: HashMap<&str, usize> =
        truth_ids.iter().enumerate().filter_map(|(row, id)| id.map(|id| (id, row))).collect();
    let mut predicted: Vec<Option<&str>> = vec![None; truth_ids.len()];
    let mut seen = vec![false; truth_ids.len()];
    let (mut unknown, mut duplicate, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_unknown, mut n_duplicate, mut n_empty) = (0, 0, 0);
    for (id, value) in ids.iter().zip(&values) {
        let id = id.unwrap_or("");
        match truth_index.get(id.trim()) {
            None => {
                n_unknown += 1;
                if unknown.len() < EXAMPLES {
                    unknown.push(id.to_string());
                }
            }
            Some(&row) if seen[row] => {
                n_duplicate += 1;
                if duplicate.len() < EXAMPLES {
                    duplicate.push(id.to_string());
                }
            }
            Some(&row) => {
                seen[row] = true;
                match value.map(str::trim).filter(|v| !v.is_empty()) {
                    Some(value) => predicted[row] = Some(value),
                    None => {
                        n_empty += 1;
                        if empty.len() < EXAMPLES {
                            empty.push(id.to_string());
                        }
                    }
                }
            }
        }
    }
    let missing: Vec<String> =
        seen.iter().enumerate().filter(|(_, s)| !**s).map(|(row, _)| truth_ids[row].unwrap_or("").to_string()).collect();
    let mut reasons = Vec::new();
    if n_unknown > 0 {
        reasons.push(format!("{n_unknown} unknown ids ({})", examples(&unknown, n_unknown)));
    }
    if n_duplicate > 0 {
        reasons.push(format!("{n_duplicate} duplicate ids ({})", examples(&duplicate, n_duplicate)));
    }
    if !missing.is_empty() {
        reasons.push(format!("{} missing ids ({})", missing.len(), examples(&missing, missing.len())));
    }
    if n_empty > 0 {
        reasons.push(format!("{n_empty} empty predictions ({})", examples(&empty, n_empty)));
    }
    if !reasons.is_empty() {
        return fail(format!("{}: {}", spec.output, reasons.join("; ")));
    }
    let y_pred: Vec<&str> = predicted.into_iter().map(|v| v.expect("every row predicted")).collect();
    let y_true: Vec<&str> = truth_values.iter().map(|v| v.unwrap_or("").trim()).collect();
    let n_rows = y_true.len();
    if n_rows == 0 {
        return Err(truth_error("the truth has no rows".to_string()));
    }
    match spec.metric.input() {
        MetricInput::Labels => {
            let classes = metrics::class_counts(&y_true, &y_pred);
            let known: std::collections::HashSet<&str> = y_true.iter().copied().collect();
            let strangers: Vec<String> = classes.iter().filter(|c| !known.contains(c.label.as_str())).map(|c| c.label.clone()).collect();
            if !strangers.is_empty() && strangers.len() > known.len() {
                // More invented labels than real classes: almost surely the wrong column or format.
                return fail(format!(
                    "{}: {} labels that are not classes of this task ({})",
                    spec.output,
                    strangers.len(),
                    examples(&strangers, strangers.len())
                ));
            }
            let value = metrics::label_metric(spec.metric, &y_true, &y_pred);
            Ok(Accuracy { metric: spec.metric.name(), value: Some(value), problem: None, n_rows, classes: Some(classes), cleaning: None })
        }
        MetricInput::Numbers => {
            let parse = |values: &[&str]| -> Result<Vec<f64>, usize> {
                values.iter().enumerate().map(|(i, v)| v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or(i)).collect()
            };
            let truth_numbers = parse(&y_true).map_err(|row| truth_error(format!("row {}: not a number", row + 2)))?;
            let predicted_numbers = match parse(&y_pred) {
                Ok(numbers) => numbers,
                Err(row) => {
                    return fail(format!(
                        "{}: id {:?}: {:?} is not a finite number",
                        spec.output,
                        truth_ids[row].unwrap_or(""),
                        y_pred[row]
                    ))
                }
            };
            let value = metrics::number_metric(spec.metric, &truth_numbers, &predicted_numbers);
            Ok(Accuracy { metric: spec.metric.name(), value: Some(value), problem: None, n_rows, classes: None, cleaning: None })
        }
        MetricInput::Table => unreachable!("cleaning is graded by cleaning::grade"),
    }
}

/// Code quality, 0–100: 100 with no findings, falling linearly to 0 at `zero_at` findings per
/// 100 lines of code.
pub fn code_quality_score(n_findings: usize, n_lines: usize, zero_at: f64) -> f64 {
    if n_lines == 0 {
        return 0.0;
    }
    let per_100_lines = n_findings as f64 * 100.0 / n_lines as f64;
    100.0 * (1.0 - per_100_lines / zero_at).clamp(0.0, 1.0)
}

/// Runtime, 0–100: 100 up to `full_under`, falling linearly to 0 at `zero_at` (the steps' timeouts).
pub fn runtime_score(wall: Duration, full_under: Duration, zero_at: Duration) -> f64 {
    if wall <= full_under {
        return 100.0;
    }
    if zero_at <= full_under {
        return 0.0;
    }
    let fraction = (wall - full_under).as_secs_f64() / (zero_at - full_under).as_secs_f64();
    100.0 * (1.0 - fraction).clamp(0.0, 1.0)
}

/// The weighted mean of the component scores.
pub fn total_score(parts: &[(f64, f64)]) -> f64 {
    let weight: f64 = parts.iter().map(|(w, _)| w).sum();
    if weight <= 0.0 {
        return 0.0;
    }
    parts.iter().map(|(w, s)| w * s).sum::<f64>() / weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores() {
        assert_eq!(code_quality_score(0, 50, 10.0), 100.0);
        assert_eq!(code_quality_score(5, 100, 10.0), 50.0);
        assert_eq!(code_quality_score(50, 100, 10.0), 0.0);
        let s = Duration::from_secs;
        assert_eq!(runtime_score(s(10), s(30), s(130)), 100.0);
        assert_eq!(runtime_score(s(80), s(30), s(130)), 50.0);
        assert_eq!(runtime_score(s(200), s(30), s(130)), 0.0);
        assert_eq!(total_score(&[(70.0, 100.0), (30.0, 0.0)]), 70.0);
    }
}
