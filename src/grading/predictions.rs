//! Grading a predictions file: columns, ids, values, then the metric.
//!
//! Rows match the truth by id, in any order. Every way a file can be wrong is checked before any
//! metric runs, and all of them are reported at once: missing or extra columns, rows without an
//! id, duplicate, unknown and missing ids, empty predictions, labels outside the task's classes,
//! non-numbers (NaN, inf, text) where numbers are due, probabilities outside [0, 1] or (one
//! column per class) rows that do not sum to 1.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use super::metrics::{self, Classes, Confusion};
use super::table::{self, first_line};
use super::{Accuracy, ConfusionReport, GradingError, Offence, OutputProblem};
use crate::task::{GradingSpec, Metric, MetricInput};

/// Rows of probabilities may miss 1 by this much (numpy's `allclose` defaults).
const SUM_TOLERANCE: f64 = 1e-5 + 1e-8;
/// Confusion matrices with more classes than this are left out of the report.
const MAX_REPORTED_CLASSES: usize = 100;

/// Codes of a label column that are not a class.
const STRANGER: u32 = u32::MAX - 1;
const EMPTY: u32 = u32::MAX;

/// The values of one side, compacted right after reading so that no file's table outlives it:
/// a class index per row (labels), or numbers, or one number column per class.
enum Values {
    Classes(Vec<u32>),
    Numbers(Vec<f64>),
    PerClass(Vec<Vec<f64>>),
}

impl Values {
    /// Reorders the output's values into the truth's row order.
    fn permute(self, rows: &[IdxSize]) -> Values {
        fn pick<T: Copy>(values: &[T], rows: &[IdxSize]) -> Vec<T> {
            rows.iter().map(|&row| values[row as usize]).collect()
        }
        match self {
            Values::Classes(v) => Values::Classes(pick(&v, rows)),
            Values::Numbers(v) => Values::Numbers(pick(&v, rows)),
            Values::PerClass(columns) => Values::PerClass(columns.iter().map(|c| pick(c, rows)).collect()),
        }
    }
}

/// Hands memory that freed tables leave in the allocator's arenas back to the system, so that the
/// second file's table does not stack on the first's garbage (glibc keeps freed chunks otherwise).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns unused memory to the system; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Logs a stage of grading with the process's resident and peak memory (debug level), for
/// tuning: `TAKEHOME_LOG=takehome=debug takehome score ...`.
fn mem(stage: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pick = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0) / 1024
    };
    tracing::debug!(stage, rss_mib = pick("VmRSS:"), peak_mib = pick("VmHWM:"), "grading");
}

pub fn grade(spec: &GradingSpec, output_path: &Path, truth_path: &Path) -> Result<Accuracy, GradingError> {
    mem("start");
    let truth_error = |message: String| GradingError::Truth { path: truth_path.to_path_buf(), message };
    let fail = |problem: OutputProblem| Ok(Accuracy::failed(spec.metric, problem));
    let id = spec.id.as_deref().unwrap_or("id");
    let target = spec.target.as_deref().unwrap_or("target");
    let input = spec.metric.input();
    let one_column_per_class = input == MetricInput::Probabilities && spec.positive.is_none();
    // Labels are read as categories shared by both files: four bytes a row, and equal labels get
    // equal codes in both.
    let categories = Categories::random("takehome".into(), CategoricalPhysical::U32);
    let label_type = DataType::from_categories(categories.clone());
    let mapping = categories.mapping();
    let label_of = |code: u32| mapping.cat_to_str(code).unwrap_or("").to_string();
    let category_codes = |series: &Series| -> Result<Vec<Option<u32>>, String> {
        let categorical = series.cat32().map_err(|e| first_line(&e.to_string()))?;
        Ok(categorical.physical().iter().collect())
    };

    // The truth: ids, and labels (as codes) or numbers.
    let truth_fixed: Vec<(&str, DataType)> = if input == MetricInput::Numbers { Vec::new() } else { vec![(target, label_type.clone())] };
    let truth = table::read_typed_with(truth_path, &truth_fixed).map_err(truth_error)?;
    let truth_column = |name: &str| truth.column(name).map(|c| c.as_materialized_series().clone()).map_err(|_| truth_error(format!("no column {name:?}")));
    mem("truth read");
    let n_rows = truth.height();
    if n_rows == 0 {
        return Err(truth_error("no rows".to_string()));
    }
    let truth_ids = truth_column(id)?;
    if truth_ids.null_count() > 0 {
        return Err(truth_error(format!("rows without an id in {id:?}")));
    }
    let truth_ids = Ids::from_series(truth_ids);
    let (known, truth_values): (Vec<String>, Values) = if input == MetricInput::Numbers {
        let numbers = truth_numbers(&truth_column(target)?).map_err(|row| truth_error(format!("row {}: not a number", row + 2)))?;
        (Vec::new(), Values::Numbers(numbers))
    } else {
        let codes = category_codes(&truth_column(target)?).map_err(truth_error)?;
        if codes.iter().any(Option::is_none) {
            return Err(truth_error(format!("empty labels in {target:?}")));
        }
        let known = match &spec.classes {
            Some(classes) => classes.clone(),
            None => {
                let mut seen: Vec<u32> = codes.iter().flatten().copied().collect::<std::collections::HashSet<u32>>().into_iter().collect();
                seen.sort_unstable();
                Classes::from_labels(seen.iter().map(|&c| mapping.cat_to_str(c).unwrap_or(""))).names
            }
        };
        // Code -> class index once per distinct code, then a table lookup per row.
        let index: HashMap<&str, u32> = known.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
        let code_class: Vec<Option<u32>> =
            (0..mapping.num_cats_upper_bound() as u32).map(|code| mapping.cat_to_str(code).and_then(|label| index.get(label).copied())).collect();
        let mut classes = Vec::with_capacity(codes.len());
        for code in &codes {
            let code = code.expect("checked above");
            match code_class.get(code as usize).copied().flatten() {
                Some(class) => classes.push(class),
                None => return Err(truth_error(format!("label {:?} is not among grading.classes", label_of(code)))),
            }
        }
        (known, Values::Classes(classes))
    };
    drop(truth);
    release_freed_memory();
    mem("truth compact");

    // The output: columns first, then its values in its own row order.
    let expected: Vec<String> =
        if one_column_per_class { std::iter::once(id.to_string()).chain(known.iter().cloned()).collect() } else { vec![id.to_string(), target.to_string()] };
    let names = match table::header(output_path) {
        Ok(names) => names,
        Err(message) => return fail(OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output))),
    };
    let mut missing_columns = Offence::new("missing columns");
    let mut extra_columns = Offence::new("unexpected columns");
    for name in expected.iter().filter(|n| !names.contains(n)) {
        missing_columns.add(|| name.clone());
    }
    for name in names.iter().filter(|n| !expected.contains(n)) {
        extra_columns.add(|| name.clone());
    }
    if let Some(mut problem) = OutputProblem::offences(&spec.output, vec![missing_columns, extra_columns]) {
        problem.message.push_str(&format!(" (expected exactly the columns {})", expected.join(", ")));
        return fail(problem);
    }
    let fixed: Vec<(&str, DataType)> = if input == MetricInput::Labels { vec![(target, label_type.clone())] } else { Vec::new() };
    let output = match table::read_typed_with(output_path, &fixed) {
        Ok(output) => output,
        Err(message) => return fail(OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output))),
    };
    mem("output read");
    let column = |name: &str| output.column(name).expect("checked above").as_materialized_series().clone();
    let output_ids = column(id);
    let mut no_id = Offence::new("rows without an id");
    if output_ids.null_count() > 0 {
        for (row, null) in output_ids.is_null().iter().enumerate() {
            if null == Some(true) {
                no_id.add(|| format!("row {}", row + 2));
            }
        }
        return fail(OutputProblem::offences(&spec.output, vec![no_id]).expect("counted"));
    }
    let output_values = match input {
        MetricInput::Labels => {
            let codes = match category_codes(&column(target)) {
                Ok(codes) => codes,
                Err(message) => return fail(OutputProblem::bad_format(format!("{}: column {target:?}: {message}", spec.output))),
            };
            // Code -> class index, for every code the shared categories hold.
            let index: HashMap<&str, u32> = known.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
            let code_class: Vec<u32> = (0..mapping.num_cats_upper_bound() as u32)
                .map(|code| mapping.cat_to_str(code).and_then(|label| index.get(label.trim()).copied()).unwrap_or(STRANGER))
                .collect();
            let (mut empty, mut strangers) = (Offence::new("empty predictions"), Offence::new("labels that are not classes of this task"));
            let classes: Vec<u32> = codes
                .iter()
                .enumerate()
                .map(|(row, code)| match code {
                    None => {
                        empty.add(|| id_text(&output_ids, row));
                        EMPTY
                    }
                    Some(code) => {
                        let class = code_class.get(*code as usize).copied().unwrap_or(STRANGER);
                        if class == STRANGER {
                            strangers.add(|| format!("{} (id {})", label_of(*code), id_text(&output_ids, row)));
                        }
                        class
                    }
                })
                .collect();
            if let Some(mut problem) = OutputProblem::offences(&spec.output, vec![empty, strangers]) {
                problem.message.push_str(&format!(" (the classes are {})", known.join(", ")));
                return fail(problem);
            }
            Values::Classes(classes)
        }
        MetricInput::Numbers | MetricInput::Probabilities if !one_column_per_class => {
            let range = (input == MetricInput::Probabilities).then_some((0.0, 1.0));
            match checked_numbers(&column(target), &output_ids, target, range) {
                Ok(values) => Values::Numbers(values),
                Err(problem) => return fail(problem.prefixed(&spec.output)),
            }
        }
        _ => {
            let mut columns = Vec::with_capacity(known.len());
            for class in &known {
                match checked_numbers(&column(class), &output_ids, class, Some((0.0, 1.0))) {
                    Ok(values) => columns.push(values),
                    Err(problem) => return fail(problem.prefixed(&spec.output)),
                }
            }
            let mut bad_sums = Offence::new("rows whose probabilities do not sum to 1");
            for row in 0..output.height() {
                let sum: f64 = columns.iter().map(|c| c[row]).sum();
                if (sum - 1.0).abs() > SUM_TOLERANCE {
                    bad_sums.add(|| format!("{} (sum {sum:.6})", id_text(&output_ids, row)));
                }
            }
            if let Some(problem) = OutputProblem::offences(&spec.output, vec![bad_sums]) {
                return fail(problem);
            }
            Values::PerClass(columns)
        }
    };
    mem("output values");
    let output_ids = Ids::from_series(output_ids);
    drop(output);
    release_freed_memory();
    mem("output compact");

    // Ids: every truth row answered exactly once, nothing else.
    let alignment = align(truth_ids, output_ids).map_err(truth_error)?;
    if let Some(problem) = OutputProblem::offences(&spec.output, alignment.offences) {
        return fail(problem);
    }
    mem("aligned");
    let predicted = output_values.permute(&alignment.output_rows);
    mem("permuted");

    match (truth_values, predicted) {
        (Values::Classes(y_true), Values::Classes(y_pred)) => {
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
        (Values::Numbers(y_true), Values::Numbers(y_pred)) => {
            if spec.metric == Metric::Rmsle && y_pred.iter().any(|&v| v < 0.0) {
                let n_negative = y_pred.iter().filter(|&&v| v < 0.0).count();
                return fail(OutputProblem::bad_format(format!("{}: {n_negative} negative predictions (rmsle needs values of at least 0)", spec.output)));
            }
            let mut accuracy = Accuracy::scored(spec.metric, metrics::number_metric(spec.metric, &y_true, &y_pred), n_rows);
            accuracy.residuals = super::Histogram::of(y_true.iter().zip(&y_pred).map(|(t, p)| p - t), 24);
            Ok(accuracy)
        }
        (Values::Classes(y_true), Values::Numbers(probability)) => {
            let positive = spec.positive.as_deref().and_then(|p| known.iter().position(|k| k == p)).map(|p| p as u32);
            let is_positive: Vec<bool> = y_true.iter().map(|&y| Some(y) == positive).collect();
            let value = match spec.metric {
                Metric::RocAuc => metrics::roc_auc_binary(&is_positive, &probability),
                _ => metrics::log_loss_binary(&is_positive, &probability),
            };
            Ok(Accuracy::scored(spec.metric, value, n_rows))
        }
        (Values::Classes(y_true), Values::PerClass(columns)) => {
            // Classes absent from the truth have no ROC curve; AUC averages over those present.
            let present: Vec<usize> = (0..known.len()).filter(|&c| y_true.iter().any(|&y| y as usize == c)).collect();
            let value = if spec.metric == Metric::RocAuc && present.len() < known.len() {
                let remap: HashMap<u32, u32> = present.iter().enumerate().map(|(new, &old)| (old as u32, new as u32)).collect();
                let y: Vec<u32> = y_true.iter().map(|y| remap[y]).collect();
                let kept: Vec<Vec<f64>> = present.iter().map(|&c| columns[c].clone()).collect();
                metrics::multiclass_score_metric(spec.metric, &y, &kept)
            } else {
                metrics::multiclass_score_metric(spec.metric, &y_true, &columns)
            };
            Ok(Accuracy::scored(spec.metric, value, n_rows))
        }
        _ => unreachable!("the truth and the output are read for the same metric"),
    }
}

impl OutputProblem {
    fn prefixed(mut self, file: &str) -> OutputProblem {
        self.message = format!("{file}: {}", self.message);
        self
    }
}

/// The truth's numbers (a missing one is NaN); `Err(row)` at the first value that is not a number.
fn truth_numbers(series: &Series) -> Result<Vec<f64>, usize> {
    match series.dtype() {
        DataType::String => series
            .str()
            .expect("a string column")
            .iter()
            .enumerate()
            .map(|(row, v)| match v.map(str::trim) {
                None | Some("") => Ok(f64::NAN),
                Some(text) => text.parse::<f64>().map_err(|_| row),
            })
            .collect(),
        dtype if dtype.is_primitive_numeric() => {
            let cast = series.cast(&DataType::Float64).map_err(|_| 0usize)?;
            Ok(cast.f64().expect("a float column").iter().map(|v| v.unwrap_or(f64::NAN)).collect())
        }
        _ => Err(0),
    }
}

/// Numbers where numbers are due: every one present, finite, and within `range` when given.
fn checked_numbers(series: &Series, ids: &Series, column: &str, range: Option<(f64, f64)>) -> Result<Vec<f64>, OutputProblem> {
    let mut not_numbers = Offence::new(format!("values in {column:?} that are not numbers"));
    let mut empty = Offence::new(format!("empty values in {column:?}"));
    let mut not_finite = Offence::new(format!("NaN or infinite values in {column:?}"));
    let mut out_of_range = Offence::new(format!("values in {column:?} outside [0, 1]"));
    let mut out = Vec::with_capacity(series.len());
    let mut check = |row: usize, value: Option<f64>, out: &mut Vec<f64>| match value {
        None => {
            empty.add(|| id_text(ids, row));
            out.push(f64::NAN);
        }
        Some(x) if !x.is_finite() => {
            not_finite.add(|| id_text(ids, row));
            out.push(x);
        }
        Some(x) => {
            if let Some((low, high)) = range {
                if !(low..=high).contains(&x) {
                    out_of_range.add(|| format!("{x} (id {})", id_text(ids, row)));
                }
            }
            out.push(x);
        }
    };
    match series.dtype() {
        DataType::String => {
            for (row, value) in series.str().expect("a string column").iter().enumerate() {
                match value.map(str::trim) {
                    None | Some("") => check(row, None, &mut out),
                    Some(text) => match text.parse::<f64>() {
                        Ok(x) => check(row, Some(x), &mut out),
                        Err(_) => {
                            not_numbers.add(|| format!("{text} (id {})", id_text(ids, row)));
                            out.push(f64::NAN);
                        }
                    },
                }
            }
        }
        dtype if dtype.is_primitive_numeric() => {
            let cast = series.cast(&DataType::Float64).map_err(|e| OutputProblem::bad_format(first_line(&e.to_string())))?;
            for (row, value) in cast.f64().expect("a float column").iter().enumerate() {
                check(row, value, &mut out);
            }
        }
        other => return Err(OutputProblem::bad_format(format!("column {column:?} holds {other}, not numbers"))),
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

/// An id column, compacted: integers as a plain vector (8 bytes a row), anything else as text.
enum Ids {
    Int(Vec<i64>),
    Text(Series),
}

impl Ids {
    /// From a column without nulls.
    fn from_series(series: Series) -> Ids {
        if series.dtype().is_integer() {
            if let Ok(cast) = series.cast(&DataType::Int64) {
                let values: Vec<i64> = cast.i64().expect("cast to Int64").into_no_null_iter().collect();
                return Ids::Int(values);
            }
        }
        Ids::Text(series.cast(&DataType::String).unwrap_or(series))
    }

    fn into_text(self) -> Series {
        match self {
            Ids::Int(values) => Series::new("id".into(), values).cast(&DataType::String).expect("integers print"),
            Ids::Text(series) => series,
        }
    }
}

/// Matches ids by sorting both sides, never with a hash table: 10 million ids stay cheap. The
/// common case (integer ids spanning less than 2^32) sorts one `u64` a row, id and row packed.
fn align(truth: Ids, output: Ids) -> Result<Alignment, String> {
    let (mut unknown, mut duplicate, mut missing) = (Offence::new("unknown ids"), Offence::new("duplicate ids"), Offence::new("missing ids"));
    let n_truth = match &truth {
        Ids::Int(v) => v.len(),
        Ids::Text(s) => s.len(),
    };
    let mut output_rows = vec![IdxSize::MAX; n_truth];
    match (truth, output) {
        (Ids::Int(truth), Ids::Int(output)) if packable(&truth, &output) => {
            let low = truth.iter().chain(&output).copied().min().unwrap_or(0);
            let pack = |values: Vec<i64>| -> Vec<u64> {
                let mut packed: Vec<u64> = values.into_iter().enumerate().map(|(row, id)| (((id - low) as u64) << 32) | row as u64).collect();
                packed.sort_unstable();
                packed
            };
            // The two sorts are independent: one thread each.
            let (truth, output) = std::thread::scope(|scope| {
                let truth = scope.spawn(|| pack(truth));
                let output = pack(output);
                (truth.join().expect("sorting does not panic"), output)
            });
            let key = |packed: u64| packed >> 32;
            let row = |packed: u64| (packed & 0xFFFF_FFFF) as usize;
            let text = |packed: u64| ((key(packed) as i64) + low).to_string();
            let (mut i, mut j) = (0, 0);
            while i < truth.len() {
                if i + 1 < truth.len() && key(truth[i]) == key(truth[i + 1]) {
                    return Err(format!("the id {} appears twice", text(truth[i])));
                }
                while j < output.len() && key(output[j]) < key(truth[i]) {
                    unknown.add(|| text(output[j]));
                    j += 1;
                }
                if j < output.len() && key(output[j]) == key(truth[i]) {
                    output_rows[row(truth[i])] = row(output[j]) as IdxSize;
                    j += 1;
                    while j < output.len() && key(output[j]) == key(truth[i]) {
                        duplicate.add(|| text(truth[i]));
                        j += 1;
                    }
                } else {
                    missing.add(|| text(truth[i]));
                }
                i += 1;
            }
            for &rest in &output[j..] {
                unknown.add(|| text(rest));
            }
        }
        (truth, output) => {
            let (truth, output) = (truth.into_text(), output.into_text());
            let (truth_text, output_text) = (truth.str().expect("text ids"), output.str().expect("text ids"));
            let truth_keys: Vec<&str> = truth_text.iter().map(|v| v.unwrap_or("").trim()).collect();
            let output_keys: Vec<&str> = output_text.iter().map(|v| v.unwrap_or("").trim()).collect();
            let mut truth_order: Vec<u32> = (0..truth_keys.len() as u32).collect();
            truth_order.sort_unstable_by_key(|&r| truth_keys[r as usize]);
            let mut output_order: Vec<u32> = (0..output_keys.len() as u32).collect();
            output_order.sort_unstable_by_key(|&r| output_keys[r as usize]);
            let (mut i, mut j) = (0, 0);
            while i < truth_order.len() {
                let t = truth_order[i] as usize;
                if i + 1 < truth_order.len() && truth_keys[truth_order[i + 1] as usize] == truth_keys[t] {
                    return Err(format!("the id {} appears twice", truth_keys[t]));
                }
                while j < output_order.len() && output_keys[output_order[j] as usize] < truth_keys[t] {
                    unknown.add(|| output_keys[output_order[j] as usize].to_string());
                    j += 1;
                }
                if j < output_order.len() && output_keys[output_order[j] as usize] == truth_keys[t] {
                    output_rows[t] = output_order[j] as IdxSize;
                    j += 1;
                    while j < output_order.len() && output_keys[output_order[j] as usize] == truth_keys[t] {
                        duplicate.add(|| truth_keys[t].to_string());
                        j += 1;
                    }
                } else {
                    missing.add(|| truth_keys[t].to_string());
                }
                i += 1;
            }
            for &rest in &output_order[j..] {
                unknown.add(|| output_keys[rest as usize].to_string());
            }
        }
    }
    Ok(Alignment { output_rows, offences: vec![unknown, duplicate, missing] })
}

/// True when ids fit in 32 bits above their minimum and rows fit in 32 bits.
fn packable(truth: &[i64], output: &[i64]) -> bool {
    let (Some(low), Some(high)) = (truth.iter().chain(output).min(), truth.iter().chain(output).max()) else { return true };
    (*high as i128 - *low as i128) < (1i128 << 32) && truth.len() < u32::MAX as usize && output.len() < u32::MAX as usize
}
