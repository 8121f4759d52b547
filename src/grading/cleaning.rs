//! Cell-by-cell comparison of a cleaned table with the hidden clean truth.
//!
//! Rows match by the task's key column, or, with no key, as whole rows (each output row may
//! claim one equal truth row). Every truth column but the key is compared with the rule the task
//! declares for it (`grading.columns`), by default `auto`: numbers when both cells parse as
//! numbers (within the tolerance: |expected − got| ≤ tolerance × max(|expected|, 1)), other text
//! exactly. A cell is missing when it is empty or spelled exactly as one of the task's `missing`
//! spellings (default: empty and `NA`), and a missing cell equals only another missing cell: `?`,
//! `null` or `n/a` are values unless the task lists them, so a cleaner that leaves them as they
//! came loses the cell. The value is
//! `correct cells / ((truth rows + extra rows) × compared columns)`, so dropped rows, duplicated
//! rows and invented rows all cost. Tables are read as text: nothing is guessed about types.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::slices::{for_each_bit, Key, Masks, Slice, SliceScore};
use super::table::{self, column_names};
use super::{Accuracy, GradingError, Offence, OutputProblem, EXAMPLES};
use crate::task::{CellCompare, GradingSpec};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mismatch {
    pub key: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnResult {
    pub column: String,
    pub compare: String,
    /// Correct cells over truth rows.
    pub accuracy: f64,
    pub n_correct: usize,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaMismatch {
    pub column: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleaningDetails {
    pub key: Option<String>,
    pub n_truth_rows: usize,
    pub n_output_rows: usize,
    pub n_matched_rows: usize,
    /// Truth rows absent from the output.
    pub n_dropped_rows: usize,
    /// Output rows that repeat an earlier row's key (or, without a key, an already matched row).
    pub n_duplicate_rows: usize,
    /// Output rows whose key is not in the truth (or, without a key, that equal no truth row).
    pub n_invented_rows: usize,
    pub missing_columns: Vec<String>,
    pub extra_columns: Vec<String>,
    pub schema_mismatches: Vec<SchemaMismatch>,
    pub columns: Vec<ColumnResult>,
    /// Matched rows over output rows.
    pub row_precision: f64,
    /// Matched rows over truth rows.
    pub row_recall: f64,
}

/// Whether a cell means "no value": empty, or exactly one of `missing`.
fn is_missing(cell: Option<&str>, missing: &[String]) -> bool {
    match cell {
        None => true,
        Some(text) => text.is_empty() || missing.iter().any(|m| m == text),
    }
}

/// A date or date-time as (year, month, day, hour, minute, second).
fn parse_date(text: &str) -> Option<(i32, u32, u32, u32, u32, u32)> {
    let text = text.trim();
    let (date, time) = match text.find(['T', ' ']) {
        Some(at) => (&text[..at], Some(text[at + 1..].trim_end_matches('Z'))),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split(['-', '/']).collect();
    let [year, month, day] = parts[..] else { return None };
    let (year, month, day): (i32, u32, u32) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if year < 1000 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if let Some(time) = time.filter(|t| !t.is_empty()) {
        let fields: Vec<&str> = time.split(':').collect();
        hour = fields.first()?.parse().ok()?;
        minute = fields.get(1).map(|m| m.parse().ok()).unwrap_or(Some(0))?;
        second = fields.get(2).map(|s| s.split('.').next().unwrap_or("0").parse().ok()).unwrap_or(Some(0))?;
    }
    Some((year, month, day, hour, minute, second))
}

fn numbers_equal(expected: f64, got: f64, tolerance: f64) -> bool {
    (expected - got).abs() <= tolerance * expected.abs().max(1.0)
}

/// Whether two cells are equal under `rule`, with `missing` the task's spellings of no value.
pub fn cells_equal(expected: Option<&str>, got: Option<&str>, rule: &CellCompare, missing: &[String]) -> bool {
    match (is_missing(expected, missing), is_missing(got, missing)) {
        (true, true) => return true,
        (true, false) | (false, true) => return false,
        _ => {}
    }
    let (e, g) = (expected.unwrap_or(""), got.unwrap_or(""));
    match rule {
        CellCompare::Auto { tolerance } => match (e.trim().parse::<f64>(), g.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => numbers_equal(x, y, *tolerance),
            _ => e == g,
        },
        CellCompare::Number { tolerance } => match (e.trim().parse::<f64>(), g.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) => numbers_equal(x, y, *tolerance),
            _ => false,
        },
        CellCompare::Text { trim, case_sensitive } => {
            let (e, g) = if *trim { (e.trim(), g.trim()) } else { (e, g) };
            if *case_sensitive {
                e == g
            } else {
                e.to_lowercase() == g.to_lowercase()
            }
        }
        CellCompare::Date => match (parse_date(e), parse_date(g)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// A canonical form of a cell under `rule`, for matching whole rows by hash.
fn canonical(cell: Option<&str>, rule: &CellCompare, missing: &[String]) -> String {
    if is_missing(cell, missing) {
        return "\u{0}NA".to_string();
    }
    let text = cell.unwrap_or("");
    match rule {
        CellCompare::Auto { .. } | CellCompare::Number { .. } => match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => format!("{:.9e}", if x == 0.0 { 0.0 } else { x }),
            _ => text.to_string(),
        },
        CellCompare::Text { trim, case_sensitive } => {
            let text = if *trim { text.trim() } else { text };
            if *case_sensitive {
                text.to_string()
            } else {
                text.to_lowercase()
            }
        }
        CellCompare::Date => parse_date(text).map(|d| format!("{d:?}")).unwrap_or_else(|| text.to_string()),
    }
}

fn compare_name(rule: &CellCompare) -> String {
    match rule {
        CellCompare::Auto { tolerance } => format!("auto (numbers within {tolerance} x max(|truth|, 1))"),
        CellCompare::Number { tolerance } => format!("number (within {tolerance} x max(|truth|, 1))"),
        CellCompare::Text { trim, case_sensitive } => {
            format!("text{}{}", if *trim { ", trimmed" } else { "" }, if *case_sensitive { "" } else { ", case-insensitive" })
        }
        CellCompare::Date => "date".to_string(),
    }
}

/// What a column holds: every present cell a number, every one a date, or text.
fn column_type(cells: &[Option<&str>], missing: &[String]) -> &'static str {
    let present: Vec<&str> = cells.iter().filter(|c| !is_missing(**c, missing)).map(|c| c.unwrap_or("")).collect();
    if present.is_empty() {
        "empty"
    } else if present.iter().all(|c| c.trim().parse::<f64>().is_ok_and(f64::is_finite)) {
        "number"
    } else if present.iter().all(|c| parse_date(c).is_some()) {
        "date"
    } else {
        "text"
    }
}

fn text_columns(table: &DataFrame) -> HashMap<String, Vec<Option<&str>>> {
    table
        .columns()
        .iter()
        .map(|column| {
            let values = column.as_materialized_series().str().map(|s| s.iter().collect()).unwrap_or_default();
            (column.name().to_string(), values)
        })
        .collect()
}

/// Grades the cleaned table against the truth, and on each of `slices` of the truth's rows apart
/// (a slice's value: its rows' correct cells over its rows' cells; rows the output adds beyond
/// the truth's count against the whole table only).
pub fn grade(spec: &GradingSpec, output_path: &Path, truth_path: &Path, slices: &[Slice]) -> Result<Accuracy, GradingError> {
    let truth_error = |message: String| GradingError::Truth { path: truth_path.to_path_buf(), message };
    let truth_table = table::read_text(truth_path).map_err(truth_error)?;
    let output_table = match table::read_text(output_path) {
        Ok(table) => table,
        Err(message) => return Ok(Accuracy::failed(spec.metric, OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output)))),
    };
    let truth = text_columns(&truth_table);
    let output = text_columns(&output_table);
    let key = spec.id.as_deref();
    let truth_names: Vec<String> = column_names(&truth_table).into_iter().filter(|n| Some(n.as_str()) != key).collect();
    let output_names: Vec<String> = column_names(&output_table).into_iter().filter(|n| Some(n.as_str()) != key).collect();
    let missing_columns: Vec<String> = truth_names.iter().filter(|c| !output_names.contains(c)).cloned().collect();
    let extra_columns: Vec<String> = output_names.iter().filter(|c| !truth_names.contains(c)).cloned().collect();
    let rules: Vec<CellCompare> = truth_names.iter().map(|c| spec.compare_for(c)).collect();
    let (n_truth, n_output) = (truth_table.height(), output_table.height());

    // Which output row answers each truth row.
    let mut matched: Vec<Option<usize>> = vec![None; n_truth];
    let (mut n_duplicate_rows, mut n_invented_rows) = (0, 0);
    let mut invented = Offence::new("rows that match no row of the data");
    match key {
        Some(key) => {
            let truth_keys = truth.get(key).ok_or_else(|| truth_error(format!("no key column {key:?}")))?;
            let Some(output_keys) = output.get(key) else {
                let problem =
                    OutputProblem::bad_format(format!("{}: no key column {key:?} (expected the columns {key}, {})", spec.output, truth_names.join(", ")));
                return Ok(Accuracy::failed(spec.metric, problem));
            };
            let index: HashMap<&str, usize> = truth_keys.iter().enumerate().filter_map(|(row, k)| k.map(|k| (k.trim(), row))).collect();
            for output_key in output_keys {
                match output_key.and_then(|k| index.get(k.trim())) {
                    Some(&row) if matched[row].is_some() => n_duplicate_rows += 1,
                    Some(&row) => matched[row] = Some(0),
                    None => {
                        n_invented_rows += 1;
                        invented.add(|| output_key.unwrap_or("").to_string());
                    }
                }
            }
            // Second pass for the row numbers (the first pass only counted).
            matched = vec![None; n_truth];
            for (output_row, output_key) in output_keys.iter().enumerate() {
                if let Some(&row) = output_key.and_then(|k| index.get(k.trim())) {
                    matched[row].get_or_insert(output_row);
                }
            }
        }
        None => {
            let signature = |columns: &HashMap<String, Vec<Option<&str>>>, row: usize| -> String {
                truth_names
                    .iter()
                    .zip(&rules)
                    .map(|(name, rule)| canonical(columns.get(name).and_then(|c| c[row]), rule, &spec.missing))
                    .collect::<Vec<_>>()
                    .join("\u{1}")
            };
            let mut free: HashMap<String, Vec<usize>> = HashMap::new();
            for row in (0..n_truth).rev() {
                free.entry(signature(&truth, row)).or_default().push(row);
            }
            let truth_signatures: std::collections::HashSet<String> = free.keys().cloned().collect();
            for output_row in 0..n_output {
                let sig = signature(&output, output_row);
                match free.get_mut(&sig).and_then(Vec::pop) {
                    Some(row) => matched[row] = Some(output_row),
                    None if truth_signatures.contains(&sig) => n_duplicate_rows += 1,
                    None => {
                        n_invented_rows += 1;
                        invented.add(|| format!("row {}", output_row + 2));
                    }
                }
            }
        }
    }
    let n_matched_rows = matched.iter().filter(|m| m.is_some()).count();
    if n_matched_rows == 0 && n_truth > 0 {
        let mut problem =
            OutputProblem::offences(&spec.output, vec![invented]).unwrap_or_else(|| OutputProblem::bad_format(format!("{}: no rows", spec.output)));
        problem.message.push_str(match key {
            Some(_) => " (no row's key matches a row of the data)",
            None => " (no row equals a row of the clean table)",
        });
        return Ok(Accuracy::failed(spec.metric, problem));
    }

    let key_of = |row: usize| -> String {
        match key.and_then(|k| truth.get(k)) {
            Some(keys) => keys[row].unwrap_or("").to_string(),
            None => format!("row {}", row + 2),
        }
    };
    let mut columns = Vec::new();
    let mut schema_mismatches = Vec::new();
    let mut n_correct_cells = 0;
    let masks = match key.and_then(|k| truth.get(k)) {
        Some(keys) => {
            let index: HashMap<&str, usize> = keys.iter().enumerate().filter_map(|(row, k)| k.map(|k| (k.trim(), row))).collect();
            Masks::new(slices, n_truth, |id| match id {
                Key::Int(int) => index.get(int.to_string().as_str()).copied(),
                Key::Text(text) => index.get(text.trim()).copied(),
            })
        }
        None => Masks::new(&[], n_truth, |_| None),
    };
    let mut slice_correct = vec![0usize; masks.names.len()];
    for (name, rule) in truth_names.iter().zip(&rules) {
        let expected = &truth[name];
        let got = output.get(name);
        if let Some(got) = got {
            let (expected_type, got_type) = (column_type(expected, &spec.missing), column_type(got, &spec.missing));
            if expected_type != got_type && expected_type != "empty" && !(expected_type == "number" && *rule == CellCompare::Date) {
                schema_mismatches.push(SchemaMismatch { column: name.clone(), expected: expected_type.into(), got: got_type.into() });
            }
        }
        let mut result = ColumnResult { column: name.clone(), compare: compare_name(rule), accuracy: 0.0, n_correct: 0, mismatches: Vec::new() };
        for (truth_row, output_row) in matched.iter().enumerate() {
            let got_cell = match (got, output_row) {
                (Some(values), Some(row)) => Some(values[*row]),
                _ => None,
            };
            if matches!(got_cell, Some(cell) if cells_equal(expected[truth_row], cell, rule, &spec.missing)) {
                result.n_correct += 1;
                for_each_bit(masks.of(truth_row), |bit| slice_correct[bit] += 1);
            } else if result.mismatches.len() < EXAMPLES && got.is_some() {
                result.mismatches.push(Mismatch {
                    key: key_of(truth_row),
                    expected: expected[truth_row].unwrap_or("").to_string(),
                    got: match got_cell {
                        Some(cell) => cell.unwrap_or("").to_string(),
                        None => "(row missing)".to_string(),
                    },
                });
            }
        }
        result.accuracy = if n_truth == 0 { 0.0 } else { result.n_correct as f64 / n_truth as f64 };
        n_correct_cells += result.n_correct;
        columns.push(result);
    }
    let n_extra = n_duplicate_rows + n_invented_rows;
    let denominator = (n_truth + n_extra) * truth_names.len().max(1);
    let value = if denominator == 0 { 0.0 } else { n_correct_cells as f64 / denominator as f64 };
    let details = CleaningDetails {
        key: key.map(String::from),
        n_truth_rows: n_truth,
        n_output_rows: n_output,
        n_matched_rows,
        n_dropped_rows: n_truth - n_matched_rows,
        n_duplicate_rows,
        n_invented_rows,
        missing_columns,
        extra_columns,
        schema_mismatches,
        columns,
        row_precision: if n_output == 0 { 0.0 } else { n_matched_rows as f64 / n_output as f64 },
        row_recall: if n_truth == 0 { 0.0 } else { n_matched_rows as f64 / n_truth as f64 },
    };
    let mut accuracy = Accuracy::scored(spec.metric, value, n_truth);
    accuracy.cleaning = Some(details);
    let cells_per_row = truth_names.len().max(1);
    accuracy.slices = masks
        .names
        .iter()
        .zip(masks.counts())
        .zip(slice_correct)
        .map(|((name, rows), correct)| SliceScore {
            name: name.clone(),
            rows,
            value: (rows > 0).then(|| correct as f64 / (rows * cells_per_row) as f64),
            note: (rows == 0).then(|| "no rows".to_string()),
        })
        .collect();
    Ok(accuracy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: CellCompare = CellCompare::Auto { tolerance: 1e-6 };

    fn eq(expected: Option<&str>, got: Option<&str>, rule: &CellCompare) -> bool {
        cells_equal(expected, got, rule, &GradingSpec::default_missing())
    }

    #[test]
    fn cell_equality() {
        assert!(eq(Some("3750"), Some("3750.0"), &AUTO));
        assert!(eq(Some("NA"), Some(""), &AUTO));
        assert!(eq(Some("NA"), None, &AUTO));
        assert!(!eq(Some("Biscoe"), Some(" Biscoe"), &AUTO));
        assert!(!eq(Some("male"), Some("MALE"), &AUTO));
        assert!(!eq(Some("39.1"), Some("39.2"), &AUTO));
        assert!(!eq(Some("39.1"), Some("NA"), &AUTO));
        let loose = CellCompare::Text { trim: true, case_sensitive: false };
        assert!(eq(Some("Biscoe"), Some(" biscoe "), &loose));
        assert!(eq(Some("2007-11-11"), Some("2007/11/11 00:00:00"), &CellCompare::Date));
        assert!(!eq(Some("2007-11-11"), Some("2007-11-12"), &CellCompare::Date));
        assert!(eq(Some("39.1"), Some("39.15"), &CellCompare::Number { tolerance: 0.01 }));
        // Below 1 the tolerance is absolute: 0.001 and 0.0015 are within 1e-3.
        assert!(eq(Some("0.001"), Some("0.0015"), &CellCompare::Number { tolerance: 1e-3 }));
    }

    #[test]
    fn only_the_tasks_spellings_are_missing() {
        // The dirt a raw file carries is not "missing" unless the task says so.
        for dirt in ["?", "null", "n/a", "nan", "None", "<NA>", "na", " NA"] {
            assert!(!eq(Some("NA"), Some(dirt), &AUTO), "{dirt:?} counted as missing");
            assert!(!eq(Some(""), Some(dirt), &AUTO), "{dirt:?} counted as missing");
        }
        let listed = vec![String::new(), "NA".to_string(), "?".to_string()];
        assert!(cells_equal(Some("NA"), Some("?"), &AUTO, &listed));
        assert!(!cells_equal(Some("NA"), Some("null"), &AUTO, &listed));
    }
}
