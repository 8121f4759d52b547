//! Cell-by-cell comparison of a cleaned table with the hidden clean truth.
//!
//! Rows match by the task's key column. Every truth column but the key is compared: numbers
//! (when both cells parse) within the task's relative tolerance, other text exactly, and every
//! spelling of "missing" equal to every other. The value is
//! `correct cells / ((truth rows + extra rows) × compared columns)`, so dropped rows, duplicated
//! rows and invented rows all cost.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::DataFrame;
use serde::Serialize;

use super::{examples, text_column, Accuracy, GradingError, OutputProblem, EXAMPLES};
use crate::task::GradingSpec;

/// Cell spellings that mean "no value".
const MISSING: [&str; 8] = ["", "na", "nan", "null", "none", "n/a", "<na>", "nat"];

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub key: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnResult {
    pub column: String,
    /// Correct cells over truth rows.
    pub accuracy: f64,
    pub n_correct: usize,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleaningDetails {
    pub n_truth_rows: usize,
    pub n_output_rows: usize,
    pub n_matched_rows: usize,
    /// Truth rows absent from the output.
    pub n_dropped_rows: usize,
    /// Output rows whose key repeats an earlier row.
    pub n_duplicate_rows: usize,
    /// Output rows whose key is not in the truth.
    pub n_invented_rows: usize,
    pub missing_columns: Vec<String>,
    pub extra_columns: Vec<String>,
    pub columns: Vec<ColumnResult>,
    pub row_precision: f64,
    pub row_recall: f64,
}

fn normalise(cell: Option<&str>) -> Option<&str> {
    let cell = cell?;
    let folded = cell.trim().to_ascii_lowercase();
    if MISSING.contains(&folded.as_str()) {
        None
    } else {
        Some(cell)
    }
}

pub fn cells_equal(expected: Option<&str>, got: Option<&str>, tolerance: f64) -> bool {
    match (normalise(expected), normalise(got)) {
        (None, None) => true,
        (Some(e), Some(g)) => match (e.trim().parse::<f64>(), g.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => (x - y).abs() <= tolerance * x.abs().max(1.0),
            _ => e == g,
        },
        _ => false,
    }
}

pub fn grade(spec: &GradingSpec, output: &DataFrame, truth: &DataFrame, truth_path: &Path) -> Result<Accuracy, GradingError> {
    let key = spec.id.as_str();
    let truth_keys =
        text_column(truth, key).ok_or_else(|| GradingError::Truth { path: truth_path.to_path_buf(), message: format!("no column {key:?}") })?;
    let Some(output_keys) = text_column(output, key) else {
        return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{}: no key column {key:?}", spec.output))));
    };
    let truth_columns: Vec<String> = truth.get_column_names().iter().map(|n| n.to_string()).filter(|n| n != key).collect();
    let output_columns: Vec<String> = output.get_column_names().iter().map(|n| n.to_string()).filter(|n| n != key).collect();
    let missing_columns: Vec<String> = truth_columns.iter().filter(|c| !output_columns.contains(c)).cloned().collect();
    let extra_columns: Vec<String> = output_columns.iter().filter(|c| !truth_columns.contains(c)).cloned().collect();

    let truth_index: HashMap<&str, usize> = truth_keys.iter().enumerate().filter_map(|(row, k)| k.map(|k| (k.trim(), row))).collect();
    let mut matched: Vec<Option<usize>> = vec![None; truth_keys.len()];
    let (mut n_duplicate_rows, mut n_invented_rows) = (0, 0);
    let mut invented = Vec::new();
    for (row, output_key) in output_keys.iter().enumerate() {
        match output_key.and_then(|k| truth_index.get(k.trim())) {
            Some(&truth_row) if matched[truth_row].is_some() => n_duplicate_rows += 1,
            Some(&truth_row) => matched[truth_row] = Some(row),
            None => {
                n_invented_rows += 1;
                if invented.len() < EXAMPLES {
                    invented.push(output_key.unwrap_or("").to_string());
                }
            }
        }
    }
    let n_matched_rows = matched.iter().filter(|m| m.is_some()).count();
    if n_matched_rows == 0 && !truth_keys.is_empty() {
        let hint = if invented.is_empty() { String::new() } else { format!(" (its keys look like {})", examples(&invented, n_invented_rows)) };
        return Ok(Accuracy::failed(
            spec.metric,
            OutputProblem::bad_format(format!("{}: no row's {key:?} matches a row of the data{hint}", spec.output)),
        ));
    }

    let mut columns = Vec::new();
    let mut n_correct_cells = 0;
    for column in &truth_columns {
        let expected = text_column(truth, column).expect("a column of the truth");
        let got = text_column(output, column);
        let mut result = ColumnResult { column: column.clone(), accuracy: 0.0, n_correct: 0, mismatches: Vec::new() };
        for (truth_row, output_row) in matched.iter().enumerate() {
            let expected_cell = expected[truth_row];
            let got_cell = match (&got, output_row) {
                (Some(values), Some(row)) => Some(values[*row]),
                _ => None,
            };
            let equal = matches!(got_cell, Some(cell) if cells_equal(expected_cell, cell, spec.tolerance));
            if equal {
                result.n_correct += 1;
            } else if result.mismatches.len() < EXAMPLES && got.is_some() {
                result.mismatches.push(Mismatch {
                    key: truth_keys[truth_row].unwrap_or("").to_string(),
                    expected: expected_cell.unwrap_or("").to_string(),
                    got: match got_cell {
                        Some(cell) => cell.unwrap_or("").to_string(),
                        None => "(row missing)".to_string(),
                    },
                });
            }
        }
        result.accuracy = if truth_keys.is_empty() { 0.0 } else { result.n_correct as f64 / truth_keys.len() as f64 };
        n_correct_cells += result.n_correct;
        columns.push(result);
    }
    let n_extra = n_duplicate_rows + n_invented_rows;
    let denominator = (truth_keys.len() + n_extra) * truth_columns.len().max(1);
    let value = if denominator == 0 { 0.0 } else { n_correct_cells as f64 / denominator as f64 };
    let details = CleaningDetails {
        n_truth_rows: truth_keys.len(),
        n_output_rows: output_keys.len(),
        n_matched_rows,
        n_dropped_rows: truth_keys.len() - n_matched_rows,
        n_duplicate_rows,
        n_invented_rows,
        missing_columns,
        extra_columns,
        columns,
        row_precision: if output_keys.is_empty() { 0.0 } else { n_matched_rows as f64 / output_keys.len() as f64 },
        row_recall: if truth_keys.is_empty() { 0.0 } else { n_matched_rows as f64 / truth_keys.len() as f64 },
    };
    Ok(Accuracy { metric: spec.metric.name(), value: Some(value), problem: None, n_rows: truth_keys.len(), classes: None, cleaning: Some(details) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_equality() {
        assert!(cells_equal(Some("3750"), Some("3750.0"), 1e-6));
        assert!(cells_equal(Some("NA"), Some(""), 1e-6));
        assert!(cells_equal(Some("NA"), None, 1e-6));
        assert!(!cells_equal(Some("Biscoe"), Some(" Biscoe"), 1e-6));
        assert!(!cells_equal(Some("male"), Some("MALE"), 1e-6));
        assert!(!cells_equal(Some("39.1"), Some("39.2"), 1e-6));
        assert!(!cells_equal(Some("39.1"), Some("NA"), 1e-6));
    }
}
