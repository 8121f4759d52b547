//! Grading: turns the files that the sandbox copied out into numbers and scores.
//!
//! Invariants: grading never talks to Docker; it reads only files the host wrote itself (outputs
//! already extracted by the sandbox) and the task author's hidden truth. It is the only module that
//! imports polars. A candidate's malformed output is an [`OutputProblem`] in the result, never an
//! `Err` and never a panic; `Err(GradingError)` means our own data (the truth) is unreadable.

mod atomics;
pub mod cleaning;
pub mod leaks;
pub mod lint;
pub mod metrics;
pub mod predictions;
pub mod records;
pub mod slices;
pub mod table;
pub mod task_data;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::task::{GradingSpec, Metric, MetricInput};

/// Output files larger than this are refused before any read.
pub const MAX_OUTPUT_BYTES: u64 = 512 << 20;
/// How many offending ids or cells a problem lists.
pub const EXAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("{}: {message}", path.display())]
    Truth { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// One kind of offence in an output: how many rows, and the first few.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offence {
    pub what: String,
    pub count: u64,
    pub examples: Vec<String>,
}

impl Offence {
    pub fn new(what: impl Into<String>) -> Offence {
        Offence { what: what.into(), count: 0, examples: Vec::new() }
    }
    pub fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
    /// Adds another part's offences of the same kind after this one's.
    pub fn merge(&mut self, other: Offence) {
        self.count += other.count;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
    /// `3 duplicate ids ("7", "9", "12")`.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self.examples.iter().map(|e| format!("{e:?}")).collect();
        let more = self.count.saturating_sub(shown.len() as u64);
        let list = if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") };
        format!("{} {} ({list})", self.count, self.what)
    }
}

/// Why an output could not be scored, in words a candidate can act on, with the counts and the
/// first offending ids for the assessor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputProblem {
    pub kind: ProblemKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offences: Vec<Offence>,
}

impl OutputProblem {
    pub fn missing(message: impl Into<String>) -> OutputProblem {
        OutputProblem { kind: ProblemKind::MissingOutput, message: message.into(), offences: Vec::new() }
    }
    pub fn bad_format(message: impl Into<String>) -> OutputProblem {
        OutputProblem { kind: ProblemKind::BadFormat, message: message.into(), offences: Vec::new() }
    }
    /// A `bad_format` listing every offence that has a count.
    pub fn offences(file: &str, offences: Vec<Offence>) -> Option<OutputProblem> {
        let offences: Vec<Offence> = offences.into_iter().filter(|o| o.count > 0).collect();
        if offences.is_empty() {
            return None;
        }
        let message = format!("{file}: {}", offences.iter().map(Offence::describe).collect::<Vec<_>>().join("; "));
        Some(OutputProblem { kind: ProblemKind::BadFormat, message, offences })
    }
}

/// A confusion matrix for the report: `matrix[truth][predicted]`, labels in the metric's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfusionReport {
    pub labels: Vec<String>,
    pub matrix: Vec<Vec<u64>>,
}

/// The accuracy part of a grade: the metric's value, or the problem that prevented it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracy {
    pub metric: String,
    pub value: Option<f64>,
    pub problem: Option<OutputProblem>,
    pub n_rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<ConfusionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleaning: Option<cleaning::CleaningDetails>,
    /// Regression: a histogram of residuals (prediction - truth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residuals: Option<Histogram>,
    /// The metric on each of the task's slices of the hidden rows (hidden data: assessors only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<slices::SliceScore>,
}

/// Counts of values in equal-width bins between `low` and `high`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub low: f64,
    pub high: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn of(values: impl Iterator<Item = f64> + Clone, n_bins: usize) -> Option<Histogram> {
        let finite = values.filter(|v| v.is_finite());
        let (low, high) = finite.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        if !low.is_finite() {
            return None;
        }
        let width = if high > low { (high - low) / n_bins as f64 } else { 1.0 };
        let mut counts = vec![0u64; n_bins];
        for v in finite {
            let bin = (((v - low) / width) as usize).min(n_bins - 1);
            counts[bin] += 1;
        }
        Some(Histogram { low, high: if high > low { high } else { low + 1.0 }, counts })
    }
}

impl Accuracy {
    pub fn failed(metric: Metric, problem: OutputProblem) -> Accuracy {
        Accuracy {
            metric: metric.name().to_string(),
            value: None,
            problem: Some(problem),
            n_rows: 0,
            confusion: None,
            cleaning: None,
            residuals: None,
            slices: Vec::new(),
        }
    }
    /// No value and no problem yet, under a metric's name (`a + b` for several outputs).
    pub fn unscored(metric: String) -> Accuracy {
        Accuracy { metric, value: None, problem: None, n_rows: 0, confusion: None, cleaning: None, residuals: None, slices: Vec::new() }
    }
    pub fn scored(metric: Metric, value: f64, n_rows: usize) -> Accuracy {
        Accuracy {
            metric: metric.name().to_string(),
            value: Some(value),
            problem: None,
            n_rows,
            confusion: None,
            cleaning: None,
            residuals: None,
            slices: Vec::new(),
        }
    }
}

/// Grades the output file `output` (a regular file the host extracted) against the truth.
pub fn grade_output(spec: &GradingSpec, output: &Path, truth: &Path) -> Result<Accuracy, GradingError> {
    grade_output_sliced(spec, output, truth, &[])
}

/// [`grade_output`], and the metric on each of `slices` of the truth's rows (see
/// [`slices::members`]).
pub fn grade_output_sliced(spec: &GradingSpec, output: &Path, truth: &Path, slices: &[slices::Slice]) -> Result<Accuracy, GradingError> {
    match std::fs::metadata(output) {
        Err(_) => return Ok(Accuracy::failed(spec.metric, OutputProblem::missing(format!("no {} in /output", spec.output)))),
        Ok(meta) if meta.len() > MAX_OUTPUT_BYTES => {
            let cap = crate::units::format_size(MAX_OUTPUT_BYTES);
            return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{} is larger than {cap}", spec.output))));
        }
        Ok(meta) if meta.len() == 0 => {
            return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{} is empty", spec.output))));
        }
        Ok(_) => {}
    }
    // A CSV of predictions streams through a reader that refuses rows beyond the bound as they
    // come (and counts its lines only when its header is wrong); anything else is measured from
    // its metadata before it is decoded.
    let streamed = spec.metric.input() != MetricInput::Table && table::Format::of(output) == table::Format::Csv;
    if !streamed {
        if let Some(problem) = too_large_for_truth(spec, output, truth)? {
            return Ok(Accuracy::failed(spec.metric, problem));
        }
    }
    match spec.metric.input() {
        MetricInput::Table => cleaning::grade(spec, output, truth, slices),
        _ => predictions::grade(spec, output, truth, slices),
    }
}

/// The most rows an output may claim: a small multiple of the truth's rows.
pub fn max_output_rows(truth_rows: u64) -> u64 {
    2 * truth_rows + 1000
}

/// The most bytes an output's rows may take once decoded, from the row bound and the truth's width.
pub fn max_output_bytes(truth_rows: u64, truth_columns: usize) -> u64 {
    (16 << 20) + max_output_rows(truth_rows) * (256 + 128 * truth_columns.max(2) as u64)
}

/// Refuses an output whose own metadata (Parquet footer, CSV line count and size) says it is far
/// larger than the truth, before a row of it is decoded: a 1 MB Parquet file can claim a hundred
/// million rows, and decoding it would take the host's memory. The bound comes from the truth
/// (our own file) and is checked before the candidate's file is parsed.
fn too_large_for_truth(spec: &GradingSpec, output: &Path, truth: &Path) -> Result<Option<OutputProblem>, GradingError> {
    let truth_extent = table::extent(truth).map_err(|message| GradingError::Truth { path: truth.to_path_buf(), message })?;
    let extent = match table::extent(output) {
        Ok(extent) => extent,
        Err(message) => return Ok(Some(OutputProblem::bad_format(format!("{}: {message}", spec.output)))),
    };
    let (max_rows, max_bytes) = (max_output_rows(truth_extent.rows), max_output_bytes(truth_extent.rows, truth_extent.columns));
    if extent.rows > max_rows {
        return Ok(Some(OutputProblem::bad_format(format!("{}: {} rows, far more than expected (at most {max_rows}); not read", spec.output, extent.rows))));
    }
    if extent.uncompressed_bytes > max_bytes {
        return Ok(Some(OutputProblem::bad_format(format!(
            "{}: {} once decoded, far more than expected (at most {}); not read",
            spec.output,
            crate::units::format_size(extent.uncompressed_bytes),
            crate::units::format_size(max_bytes)
        ))));
    }
    if extent.columns > 64 + 2 * truth_extent.columns {
        return Ok(Some(OutputProblem::bad_format(format!("{}: {} columns, far more than expected; not read", spec.output, extent.columns))));
    }
    Ok(None)
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
        let weights = crate::task::Weights { accuracy: 70.0, code_quality: 15.0, runtime: 15.0, gated: false };
        assert_eq!(weights.total(100.0, 0.0, 0.0), 70.0);
        assert_eq!(weights.total(0.0, 100.0, 100.0), 30.0);
        // Gated (the default): nothing but accuracy counts without accuracy, half of it at 50.
        let gated = crate::task::Weights { gated: true, ..weights };
        assert_eq!(gated.total(0.0, 100.0, 100.0), 0.0);
        assert_eq!(gated.total(50.0, 100.0, 100.0), 50.0);
        assert_eq!(gated.total(100.0, 100.0, 100.0), 100.0);
    }
}
