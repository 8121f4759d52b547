//! Grading a predictions file: columns, ids, values, then the metric.
//!
//! Rows match the truth by id, in any order. Every way a file can be wrong is checked before any
//! metric runs, and all of them are reported at once: missing or extra columns, rows without an
//! id, duplicate, unknown and missing ids, empty predictions, labels outside the task's classes,
//! non-numbers (NaN, inf, text) where numbers are due, probabilities outside [0, 1] or (one
//! column per class) rows that do not sum to 1.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use super::metrics::{self, Classes, Confusion};
use super::table::{self, column_names, first_line};
use super::{Accuracy, ConfusionReport, GradingError, Offence, OutputProblem};
use crate::task::{GradingSpec, MetricInput};

/// Rows of probabilities may miss 1 by this much (numpy's `allclose` defaults).
const SUM_TOLERANCE: f64 = 1e-5 + 1e-8;
/// Confusion matrices with more classes than this are left out of the report.
const MAX_REPORTED_CLASSES: usize = 100;

pub fn grade(spec: &GradingSpec, output_path: &Path, truth_path: &Path) -> Result<Accuracy, GradingError> {
    let truth_error = |message: String| GradingError::Truth { path: truth_path.to_path_buf(), message };
    let truth = table::read_typed(truth_path).map_err(truth_error)?;
    let fail = |problem: OutputProblem| Ok(Accuracy::failed(spec.metric, problem));
    let output = match table::read_typed(output_path) {
        Ok(output) => output,
        Err(message) => return fail(OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output))),
    };
    let id = spec.id.as_deref().unwrap_or("id");
    let target = spec.target.as_deref().unwrap_or("target");
    let truth_column = |name: &str| truth.column(name).map(|c| c.as_materialized_series().clone()).map_err(|_| truth_error(format!("no column {name:?}")));
    let truth_ids = truth_column(id)?;
    let truth_labels = truth_column(target)?;
    if truth_ids.null_count() > 0 || truth_ids.n_unique().map_err(|e| truth_error(e.to_string()))? != truth_ids.len() {
        return Err(truth_error(format!("the ids in {id:?} are not unique and present in every row")));
    }
    if truth.height() == 0 {
        return Err(truth_error("no rows".to_string()));
    }

    // The task's classes: declared, or those of the truth.
    let truth_text_series = text_series(&truth_labels).map_err(truth_error)?;
    let truth_text = text_values(&truth_text_series);
    let known: Vec<String> = match &spec.classes {
        Some(classes) => classes.clone(),
        None => Classes::from_labels(truth_text.iter().map(|v| v.unwrap_or(""))).names,
    };
    let one_column_per_class = spec.metric.input() == MetricInput::Probabilities && spec.positive.is_none();

    // Columns.
    let expected: Vec<String> =
        if one_column_per_class { std::iter::once(id.to_string()).chain(known.iter().cloned()).collect() } else { vec![id.to_string(), target.to_string()] };
    let names = column_names(&output);
    let mut missing_columns = Offence::new("missing columns");
    let mut extra_columns = Offence::new("unexpected columns");
    for name in &expected {
        if !names.contains(name) {
            missing_columns.add(|| name.clone());
        }
    }
    for name in &names {
        if !expected.contains(name) {
            extra_columns.add(|| name.clone());
        }
    }
    if let Some(mut problem) = OutputProblem::offences(&spec.output, vec![missing_columns, extra_columns]) {
        problem.message.push_str(&format!(" (expected exactly the columns {})", expected.join(", ")));
        return fail(problem);
    }

    // Ids.
    let output_ids = output.column(id).expect("checked above").as_materialized_series().clone();
    let alignment = match align(&truth_ids, &output_ids) {
        Ok(alignment) => alignment,
        Err(message) => return fail(OutputProblem::bad_format(format!("{}: {message}", spec.output))),
    };
    if let Some(problem) = OutputProblem::offences(&spec.output, alignment.offences) {
        return fail(problem);
    }
    let order = IdxCa::from_vec("order".into(), alignment.output_rows);
    let aligned = |name: &str| -> Series { output.column(name).expect("checked above").as_materialized_series().take(&order).expect("indices in range") };
    let n_rows = truth.height();

    match spec.metric.input() {
        MetricInput::Labels => {
            let predicted = aligned(target);
            let predicted_series = match text_series(&predicted) {
                Ok(series) => series,
                Err(message) => return fail(OutputProblem::bad_format(format!("{}: column {target:?}: {message}", spec.output))),
            };
            let predicted_text = text_values(&predicted_series);
            let index: HashMap<&str, u32> = known.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect();
            let (mut empty, mut strangers) = (Offence::new("empty predictions"), Offence::new("labels that are not classes of this task"));
            let mut y_true = Vec::with_capacity(n_rows);
            let mut y_pred = Vec::with_capacity(n_rows);
            for (row, (t, p)) in truth_text.iter().zip(predicted_text.iter()).enumerate() {
                let t = t.unwrap_or("");
                let truth_index = *index.get(t).ok_or_else(|| truth_error(format!("label {t:?} is not among grading.classes")))?;
                match p.map(str::trim).filter(|p| !p.is_empty()) {
                    None => empty.add(|| id_text(&truth_ids, row)),
                    Some(p) => match index.get(p) {
                        Some(&i) => {
                            y_true.push(truth_index);
                            y_pred.push(i);
                        }
                        None => strangers.add(|| format!("{} (id {})", p, id_text(&truth_ids, row))),
                    },
                }
            }
            if let Some(mut problem) = OutputProblem::offences(&spec.output, vec![empty, strangers]) {
                problem.message.push_str(&format!(" (the classes are {})", known.join(", ")));
                return fail(problem);
            }
            // scikit-learn's classes are those that occur in the truth or the predictions.
            let mut present = vec![false; known.len()];
            for &i in y_true.iter().chain(&y_pred) {
                present[i as usize] = true;
            }
            let mut used: Vec<String> = known.iter().zip(&present).filter(|(_, &p)| p).map(|(n, _)| n.clone()).collect();
            metrics::sort_labels(&mut used);
            let remap: Vec<u32> = known.iter().map(|name| used.iter().position(|u| u == name).unwrap_or(0) as u32).collect();
            let y_true: Vec<u32> = y_true.iter().map(|&i| remap[i as usize]).collect();
            let y_pred: Vec<u32> = y_pred.iter().map(|&i| remap[i as usize]).collect();
            let confusion = Confusion::new(used.len(), &y_true, &y_pred);
            let positive = spec.positive.as_ref().and_then(|p| used.iter().position(|u| u == p));
            let value = metrics::label_metric(spec.metric, &confusion, positive);
            let mut accuracy = Accuracy::scored(spec.metric, value, n_rows);
            if used.len() <= MAX_REPORTED_CLASSES {
                let matrix = (0..used.len()).map(|t| (0..used.len()).map(|p| confusion.get(t, p)).collect()).collect();
                accuracy.confusion = Some(ConfusionReport { labels: used, matrix });
            }
            Ok(accuracy)
        }
        MetricInput::Numbers => {
            let truth_numbers = numbers(&truth_labels).map_err(|(row, _)| truth_error(format!("row {}: not a number", row + 2)))?;
            let predicted = match checked_numbers(&aligned(target), &truth_ids, target, None) {
                Ok(values) => values,
                Err(problem) => return fail(problem.prefixed(&spec.output)),
            };
            if spec.metric == crate::task::Metric::Rmsle {
                let mut negative = Offence::new("negative predictions (rmsle needs values of at least 0)");
                for (row, value) in predicted.iter().enumerate() {
                    if *value < 0.0 {
                        negative.add(|| id_text(&truth_ids, row));
                    }
                }
                if let Some(problem) = OutputProblem::offences(&spec.output, vec![negative]) {
                    return fail(problem);
                }
            }
            let truth_numbers: Vec<f64> = truth_numbers.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect();
            Ok(Accuracy::scored(spec.metric, metrics::number_metric(spec.metric, &truth_numbers, &predicted), n_rows))
        }
        MetricInput::Probabilities => {
            let labels: Vec<&str> = truth_text.iter().map(|v| v.unwrap_or("")).collect();
            if let Some(positive) = &spec.positive {
                let probability = match checked_numbers(&aligned(target), &truth_ids, target, Some((0.0, 1.0))) {
                    Ok(values) => values,
                    Err(problem) => return fail(problem.prefixed(&spec.output)),
                };
                let is_positive: Vec<bool> = labels.iter().map(|l| l == positive).collect();
                let value = match spec.metric {
                    crate::task::Metric::RocAuc => metrics::roc_auc_binary(&is_positive, &probability),
                    _ => metrics::log_loss_binary(&is_positive, &probability),
                };
                return Ok(Accuracy::scored(spec.metric, value, n_rows));
            }
            let mut columns = Vec::with_capacity(known.len());
            for class in &known {
                match checked_numbers(&aligned(class), &truth_ids, class, Some((0.0, 1.0))) {
                    Ok(values) => columns.push(values),
                    Err(problem) => return fail(problem.prefixed(&spec.output)),
                }
            }
            let mut bad_sums = Offence::new("rows whose probabilities do not sum to 1");
            for row in 0..n_rows {
                let sum: f64 = columns.iter().map(|c| c[row]).sum();
                if (sum - 1.0).abs() > SUM_TOLERANCE {
                    bad_sums.add(|| format!("{} (sum {sum:.6})", id_text(&truth_ids, row)));
                }
            }
            if let Some(problem) = OutputProblem::offences(&spec.output, vec![bad_sums]) {
                return fail(problem);
            }
            let index: HashMap<&str, u32> = known.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
            let y_true: Vec<u32> = labels
                .iter()
                .map(|l| index.get(l).copied().ok_or_else(|| truth_error(format!("label {l:?} is not among grading.classes"))))
                .collect::<Result<_, _>>()?;
            // Classes absent from the truth have no ROC curve; average over those present.
            let present: Vec<usize> = (0..known.len()).filter(|&c| y_true.iter().any(|&y| y as usize == c)).collect();
            let value = if spec.metric == crate::task::Metric::RocAuc && present.len() < known.len() {
                let remap: HashMap<u32, u32> = present.iter().enumerate().map(|(new, &old)| (old as u32, new as u32)).collect();
                let y: Vec<u32> = y_true.iter().map(|y| remap[y]).collect();
                let kept: Vec<Vec<f64>> = present.iter().map(|&c| columns[c].clone()).collect();
                metrics::multiclass_score_metric(spec.metric, &y, &kept)
            } else {
                metrics::multiclass_score_metric(spec.metric, &y_true, &columns)
            };
            Ok(Accuracy::scored(spec.metric, value, n_rows))
        }
        MetricInput::Table => unreachable!("cleaning is graded by cleaning::grade"),
    }
}

impl OutputProblem {
    fn prefixed(mut self, file: &str) -> OutputProblem {
        self.message = format!("{file}: {}", self.message);
        self
    }
}

/// A column cast to text (numbers print as polars prints them).
fn text_series(series: &Series) -> Result<Series, String> {
    series.cast(&DataType::String).map_err(|e| first_line(&e.to_string()))
}

fn text_values(series: &Series) -> Vec<Option<&str>> {
    series.str().expect("a text column").iter().collect()
}

/// Parses a column into numbers; `Err((row, text))` at the first value that is not a number.
fn numbers(series: &Series) -> Result<Vec<Option<f64>>, (usize, String)> {
    match series.dtype() {
        DataType::String => series
            .str()
            .expect("a string column")
            .iter()
            .enumerate()
            .map(|(row, v)| match v.map(str::trim) {
                None | Some("") => Ok(None),
                Some(text) => text.parse::<f64>().map(Some).map_err(|_| (row, text.to_string())),
            })
            .collect(),
        dtype if dtype.is_primitive_numeric() => {
            let cast = series.cast(&DataType::Float64).map_err(|e| (0, first_line(&e.to_string())))?;
            Ok(cast.f64().expect("a float column").iter().collect())
        }
        other => Err((0, format!("a column of type {other}"))),
    }
}

/// Numbers where numbers are due: every one present, finite, and within `range` when given.
fn checked_numbers(series: &Series, ids: &Series, column: &str, range: Option<(f64, f64)>) -> Result<Vec<f64>, OutputProblem> {
    let mut not_numbers = Offence::new(format!("values in {column:?} that are not numbers"));
    let mut empty = Offence::new(format!("empty values in {column:?}"));
    let mut not_finite = Offence::new(format!("NaN or infinite values in {column:?}"));
    let mut out_of_range = Offence::new(format!("values in {column:?} outside [0, 1]"));
    enum Cell {
        Empty,
        NotANumber,
        Number(f64),
    }
    let cells: Vec<Cell> = match series.dtype() {
        DataType::String => series
            .str()
            .expect("a string column")
            .iter()
            .enumerate()
            .map(|(row, v)| match v.map(str::trim) {
                None | Some("") => Cell::Empty,
                Some(text) => match text.parse::<f64>() {
                    Ok(x) => Cell::Number(x),
                    Err(_) => {
                        not_numbers.add(|| format!("{text} (id {})", id_text(ids, row)));
                        Cell::NotANumber
                    }
                },
            })
            .collect(),
        _ => numbers(series)
            .map_err(|(_, message)| OutputProblem::bad_format(format!("column {column:?}: {message}")))?
            .into_iter()
            .map(|v| v.map(Cell::Number).unwrap_or(Cell::Empty))
            .collect(),
    };
    let mut out = Vec::with_capacity(cells.len());
    for (row, cell) in cells.into_iter().enumerate() {
        match cell {
            Cell::Empty => {
                empty.add(|| id_text(ids, row));
                out.push(f64::NAN);
            }
            Cell::NotANumber => out.push(f64::NAN),
            Cell::Number(x) if !x.is_finite() => {
                not_finite.add(|| id_text(ids, row));
                out.push(x);
            }
            Cell::Number(x) => {
                if let Some((low, high)) = range {
                    if !(low..=high).contains(&x) {
                        out_of_range.add(|| format!("{x} (id {})", id_text(ids, row)));
                    }
                }
                out.push(x);
            }
        }
    }
    match OutputProblem::offences("", vec![not_numbers, empty, not_finite, out_of_range]) {
        Some(mut problem) => {
            problem.message = problem.message.trim_start_matches(": ").to_string();
            Err(problem)
        }
        None => Ok(out),
    }
}

fn id_text(ids: &Series, row: usize) -> String {
    match ids.get(row) {
        Ok(AnyValue::String(s)) => s.to_string(),
        Ok(AnyValue::Null) => String::new(),
        Ok(value) => value.to_string(),
        Err(_) => String::new(),
    }
}

/// Which output row answers each truth row, and what is wrong with the ids.
struct Alignment {
    output_rows: Vec<IdxSize>,
    offences: Vec<Offence>,
}

enum Keys<'a> {
    Int(&'a [i64]),
    Text(Vec<&'a str>),
}

impl Keys<'_> {
    fn cmp(&self, a: usize, other: &Keys, b: usize) -> Ordering {
        match (self, other) {
            (Keys::Int(x), Keys::Int(y)) => x[a].cmp(&y[b]),
            (Keys::Text(x), Keys::Text(y)) => x[a].cmp(y[b]),
            _ => unreachable!("both sides are cast alike"),
        }
    }
    fn text(&self, i: usize) -> String {
        match self {
            Keys::Int(x) => x[i].to_string(),
            Keys::Text(x) => x[i].to_string(),
        }
    }
}

/// Matches ids by sorting both sides (no hash table: 10 million ids stay affordable).
fn align(truth_ids: &Series, output_ids: &Series) -> Result<Alignment, String> {
    let both_integers = truth_ids.dtype().is_integer() && output_ids.dtype().is_integer();
    let cast = |series: &Series| -> Result<Series, String> {
        let target = if both_integers { DataType::Int64 } else { DataType::String };
        series.cast(&target).map(|s| s.rechunk()).map_err(|e| first_line(&e.to_string()))
    };
    let (truth, output) = (cast(truth_ids)?, cast(output_ids)?);
    let mut no_id = Offence::new("rows without an id");
    let output_null = output.is_null();
    for (row, null) in output_null.iter().enumerate() {
        if null == Some(true) {
            no_id.add(|| format!("row {}", row + 2));
        }
    }
    if no_id.count > 0 {
        return Ok(Alignment { output_rows: Vec::new(), offences: vec![no_id] });
    }
    let (truth_keys, output_keys) = if both_integers {
        (Keys::Int(truth.i64().unwrap().cont_slice().map_err(|e| e.to_string())?), Keys::Int(output.i64().unwrap().cont_slice().map_err(|e| e.to_string())?))
    } else {
        fn text(series: &Series) -> Keys<'_> {
            Keys::Text(series.str().expect("cast to text").iter().map(|v| v.unwrap_or("")).collect())
        }
        (text(&truth), text(&output))
    };
    let options = SortOptions { multithreaded: true, ..Default::default() };
    let truth_order = truth.arg_sort(options);
    let output_order = output.arg_sort(options);
    let truth_order = truth_order.cont_slice().map_err(|e| e.to_string())?;
    let output_order = output_order.cont_slice().map_err(|e| e.to_string())?;

    let mut output_rows = vec![IdxSize::MAX; truth.len()];
    let (mut unknown, mut duplicate, mut missing) = (Offence::new("unknown ids"), Offence::new("duplicate ids"), Offence::new("missing ids"));
    let (mut i, mut j) = (0, 0);
    while i < truth_order.len() || j < output_order.len() {
        let (t, o) = (truth_order.get(i).map(|&x| x as usize), output_order.get(j).map(|&x| x as usize));
        match (t, o) {
            (Some(t), Some(o)) => match truth_keys.cmp(t, &output_keys, o) {
                Ordering::Less => {
                    missing.add(|| truth_keys.text(t));
                    i += 1;
                }
                Ordering::Greater => {
                    unknown.add(|| output_keys.text(o));
                    j += 1;
                }
                Ordering::Equal => {
                    output_rows[t] = o as IdxSize;
                    j += 1;
                    while j < output_order.len() && truth_keys.cmp(t, &output_keys, output_order[j] as usize) == Ordering::Equal {
                        duplicate.add(|| truth_keys.text(t));
                        j += 1;
                    }
                    i += 1;
                }
            },
            (Some(t), None) => {
                missing.add(|| truth_keys.text(t));
                i += 1;
            }
            (None, Some(o)) => {
                unknown.add(|| output_keys.text(o));
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok(Alignment { output_rows, offences: vec![unknown, duplicate, missing] })
}
