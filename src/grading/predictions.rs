//! Grading a predictions file: columns, ids, values, then the metric.
//!
//! Rows match the truth by id, in any order. Every way a file can be wrong is checked before any
//! metric runs, and all of them are reported at once: missing or extra columns, rows without an
//! id, duplicate, unknown and missing ids, empty predictions, labels outside the task's classes,
//! non-numbers (NaN, inf, text) where numbers are due, probabilities outside [0, 1] or (one
//! column per class) rows that do not sum to 1.
//!
//! Both files stream through [`records`]: the truth into compact columns (ids, class indices or
//! numbers) and an index from id to truth row; then the output, each record matched to its truth
//! row as it is parsed and its value stored in the truth's order. No table of either file is
//! built, no hash table of ids either (dense integer ids index an array; others are sorted), and
//! the output's ids are never stored.
//!
//! Ids compare as integers when every truth id is an integer (`007` is `7`; an output id that is
//! not an integer is unknown), else as text with spaces around them trimmed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::metrics::{self, Classes, Confusion};
use super::records::{self, parse_integer, parse_number, trim, Field, Sink, Stop, Want};
use super::{Accuracy, ConfusionReport, GradingError, Offence, OutputProblem, EXAMPLES};
use crate::task::{GradingSpec, Metric, MetricInput};

/// Rows of probabilities may miss 1 by this much (numpy's `allclose` defaults).
const SUM_TOLERANCE: f64 = 1e-5 + 1e-8;
/// Confusion matrices with more classes than this are left out of the report.
const MAX_REPORTED_CLASSES: usize = 100;
/// A label that is not a class.
const STRANGER: u32 = u32::MAX - 1;
/// No row.
const NONE: u32 = u32::MAX;

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

    let truth = Truth::read(spec, truth_path, id, target, input).map_err(truth_error)?;
    mem("truth read");

    // The output: columns first, then its records, each matched to its truth row at once.
    let expected: Vec<String> = if one_column_per_class {
        std::iter::once(id.to_string()).chain(truth.known.iter().cloned()).collect()
    } else {
        vec![id.to_string(), target.to_string()]
    };
    let names = match records::header(output_path) {
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
        // A file far longer than the truth says so first (its lines are counted, none parsed).
        let max_rows = super::max_output_rows(truth.n_rows as u64);
        if let Ok(extent) = super::table::extent(output_path) {
            if extent.rows > max_rows {
                return fail(OutputProblem::bad_format(format!(
                    "{}: {} rows, far more than expected (at most {max_rows}); not read",
                    spec.output, extent.rows
                )));
            }
        }
        problem.message.push_str(&format!(" (expected exactly the columns {})", expected.join(", ")));
        return fail(problem);
    }
    let value_kind = match input {
        MetricInput::Labels => ValueKind::Label,
        MetricInput::Probabilities if one_column_per_class => ValueKind::PerClass,
        MetricInput::Probabilities => ValueKind::Number { probability: true },
        _ => ValueKind::Number { probability: false },
    };
    let value_columns: Vec<&str> = if one_column_per_class { truth.known.iter().map(String::as_str).collect() } else { vec![target] };
    let mut wanted: Vec<(&str, Want)> = vec![(id, Want::Id)];
    wanted.extend(value_columns.iter().map(|&name| (name, if value_kind == ValueKind::Label { Want::Label } else { Want::Number })));

    let n = truth.n_rows;
    let shared = Shared {
        index: &truth.index,
        n_rows: n,
        aligned: match value_kind {
            ValueKind::Label => Aligned::Classes(zeroed_u32(n)),
            ValueKind::Number { .. } => Aligned::Numbers(vec![zeroed_u64(n)]),
            ValueKind::PerClass => Aligned::Numbers((0..value_columns.len()).map(|_| zeroed_u64(n)).collect()),
        },
        kind: value_kind,
        classes: truth.known.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect(),
        columns: value_columns.clone(),
    };
    mem("output allocated");
    let parts = match records::read(output_path, &wanted, super::max_output_rows(n as u64), || OutputSink::new(&shared)) {
        Ok(parts) => parts,
        Err(message) => return fail(OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output))),
    };
    mem("output read");

    // The parts' findings, in file order.
    let mut found = Findings::new(&value_columns);
    let mut rows_before = 0u64;
    let mut claims = Vec::with_capacity(parts.len());
    for (part, rows) in parts {
        found.merge(part.found, rows_before);
        claims.push(part.claims);
        rows_before += rows;
    }
    let aligned = shared.aligned;

    // Rows without an id first; then the values; then the ids.
    if found.no_id.count > 0 {
        let mut no_id = Offence::new("rows without an id");
        no_id.count = found.no_id.count;
        no_id.examples = found.no_id_rows.iter().map(|row| format!("row {}", row + 2)).collect();
        return fail(OutputProblem::offences(&spec.output, vec![no_id]).expect("counted"));
    }
    match value_kind {
        ValueKind::Label => {
            if let Some(mut problem) = OutputProblem::offences(&spec.output, vec![found.empty, found.strangers]) {
                problem.message.push_str(&format!(" (the classes are {})", truth.known.join(", ")));
                return fail(problem);
            }
        }
        _ => {
            for offences in found.number_offences {
                if let Some(problem) = OutputProblem::offences(&spec.output, offences) {
                    return fail(problem);
                }
            }
            if let Some(problem) = OutputProblem::offences(&spec.output, vec![found.bad_sums]) {
                return fail(problem);
            }
        }
    }
    let (duplicate, missing) = truth.index.unmatched(&claims);
    if let Some(problem) = OutputProblem::offences(&spec.output, vec![found.unknown, duplicate, missing]) {
        return fail(problem);
    }
    mem("aligned");
    let scored = score(spec, truth, aligned);
    mem("scored");
    scored
}

/// The confusion matrix as the report shows it: in the task's `classes` order where it gives one
/// (an ordinal grade reads best in its own order), else in the metric's (numpy's sorted) order.
/// The metric's value does not depend on the order.
fn confusion_report(used: &[String], confusion: &Confusion, classes: Option<&[String]>) -> ConfusionReport {
    let mut order: Vec<usize> = (0..used.len()).collect();
    if let Some(classes) = classes {
        // Stable: labels the task does not list keep their order, after the listed ones.
        order.sort_by_key(|&i| classes.iter().position(|c| c == &used[i]).unwrap_or(usize::MAX));
    }
    ConfusionReport {
        labels: order.iter().map(|&i| used[i].clone()).collect(),
        matrix: order.iter().map(|&t| order.iter().map(|&p| confusion.get(t, p)).collect()).collect(),
    }
}

/// The metric over the truth and the output's values in the truth's order.
fn score(spec: &GradingSpec, truth: Truth, aligned: Aligned) -> Result<Accuracy, GradingError> {
    let fail = |problem: OutputProblem| Ok(Accuracy::failed(spec.metric, problem));
    let n_rows = truth.n_rows;
    let known = truth.known;
    let numbers = |columns: Vec<Vec<AtomicU64>>| -> Vec<Vec<f64>> {
        columns.into_iter().map(|column| column.into_iter().map(|bits| f64::from_bits(bits.into_inner())).collect()).collect()
    };
    match (truth.values, aligned) {
        (TruthValues::Classes(y_true), Aligned::Classes(y_pred)) => {
            let y_pred: Vec<u32> = y_pred.into_iter().map(AtomicU32::into_inner).collect();
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
                accuracy.confusion = Some(confusion_report(&used, &confusion, spec.classes.as_deref()));
            }
            Ok(accuracy)
        }
        (TruthValues::Numbers(y_true), Aligned::Numbers(columns)) => {
            let y_pred = numbers(columns).pop().expect("one column");
            if spec.metric == Metric::Rmsle && y_pred.iter().any(|&v| v < 0.0) {
                let n_negative = y_pred.iter().filter(|&&v| v < 0.0).count();
                return fail(OutputProblem::bad_format(format!("{}: {n_negative} negative predictions (rmsle needs values of at least 0)", spec.output)));
            }
            let mut accuracy = Accuracy::scored(spec.metric, metrics::number_metric(spec.metric, &y_true, &y_pred), n_rows);
            accuracy.residuals = super::Histogram::of(y_true.iter().zip(&y_pred).map(|(t, p)| p - t), 24);
            Ok(accuracy)
        }
        (TruthValues::Classes(y_true), Aligned::Numbers(columns)) if spec.positive.is_some() => {
            let probability = numbers(columns).pop().expect("one column");
            let positive = spec.positive.as_deref().and_then(|p| known.iter().position(|k| k == p)).map(|p| p as u32);
            let is_positive: Vec<bool> = y_true.iter().map(|&y| Some(y) == positive).collect();
            let value = match spec.metric {
                Metric::RocAuc => metrics::roc_auc_binary(&is_positive, &probability),
                _ => metrics::log_loss_binary(&is_positive, &probability),
            };
            Ok(Accuracy::scored(spec.metric, value, n_rows))
        }
        (TruthValues::Classes(y_true), Aligned::Numbers(columns)) => {
            let columns = numbers(columns);
            // Classes absent from the truth have no ROC curve; AUC averages over those present.
            let mut seen = vec![false; known.len()];
            for &y in &y_true {
                seen[y as usize] = true;
            }
            let present: Vec<usize> = (0..known.len()).filter(|&c| seen[c]).collect();
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

// ---------------------------------------------------------------------------------------------
// The truth.

/// The truth, compacted: an index from id to row, and a class index or a number per row.
struct Truth {
    n_rows: usize,
    index: IdIndex,
    values: TruthValues,
    /// The classes, in the task's order (or scikit-learn's, when the task does not list them).
    known: Vec<String>,
}

enum TruthValues {
    Classes(Vec<u32>),
    Numbers(Vec<f64>),
}

impl Truth {
    fn read(spec: &GradingSpec, path: &Path, id: &str, target: &str, input: MetricInput) -> Result<Truth, String> {
        let labels = input != MetricInput::Numbers;
        // A column the task file names but the truth lacks is the task's mistake: say which field.
        let names = records::header(path)?;
        for (field, column) in [("grading.id", id), ("grading.target", target)] {
            if !names.iter().any(|n| n == column) {
                return Err(format!("no column {column:?} (named by {field}; the truth's columns: {})", names.join(", ")));
            }
        }
        let wanted = [(id, Want::Id), (target, if labels { Want::Label } else { Want::Number })];
        let parts = records::read(path, &wanted, u64::MAX, || TruthSink {
            ids: Ids::Int(Vec::new()),
            numbers: Vec::new(),
            codes: Vec::new(),
            labels: Interner::default(),
            is_labels: labels,
        })?;
        mem("truth parsed");
        let n_rows: usize = parts.iter().map(|(_, rows)| *rows as usize).sum();
        if n_rows == 0 {
            return Err("no rows".to_string());
        }
        let mut sinks: Vec<TruthSink> = parts.into_iter().map(|(sink, _)| sink).collect();
        let ids = Ids::concat(sinks.iter_mut().map(|s| std::mem::replace(&mut s.ids, Ids::Int(Vec::new()))).collect());
        mem("truth ids joined");
        let index = IdIndex::build(ids)?;
        mem("truth indexed");
        if !labels {
            let mut numbers = Vec::with_capacity(n_rows);
            for sink in &mut sinks {
                numbers.append(&mut sink.numbers);
            }
            return Ok(Truth { n_rows, index, values: TruthValues::Numbers(numbers), known: Vec::new() });
        }
        // Each part numbered its labels in its own order; give them one numbering, then classes.
        let mut distinct: Vec<String> = Vec::new();
        let mut part_maps: Vec<Vec<u32>> = Vec::new();
        for sink in &sinks {
            let map = sink
                .labels
                .names
                .iter()
                .map(|name| match distinct.iter().position(|d| d == name) {
                    Some(i) => i as u32,
                    None => {
                        distinct.push(name.clone());
                        (distinct.len() - 1) as u32
                    }
                })
                .collect();
            part_maps.push(map);
        }
        let known = match &spec.classes {
            Some(classes) => classes.clone(),
            None => Classes::from_labels(distinct.iter().map(String::as_str)).names,
        };
        let class_of: Vec<u32> = distinct
            .iter()
            .map(|label| known.iter().position(|k| k == label).map(|i| i as u32).ok_or_else(|| format!("label {label:?} is not among grading.classes")))
            .collect::<Result<_, _>>()?;
        let mut classes = Vec::with_capacity(n_rows);
        for (sink, map) in sinks.iter().zip(&part_maps) {
            classes.extend(sink.codes.iter().map(|&code| class_of[map[code as usize] as usize]));
        }
        Ok(Truth { n_rows, index, values: TruthValues::Classes(classes), known })
    }
}

struct TruthSink {
    ids: Ids,
    numbers: Vec<f64>,
    codes: Vec<u32>,
    labels: Interner,
    is_labels: bool,
}

impl Sink for TruthSink {
    fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        match fields[0] {
            Field::Int(id) => self.ids.push_int(id),
            Field::Text(text) if !trim(text).is_empty() => self.ids.push_text(trim(text)),
            Field::Float(x) => self.ids.push_text(&x.to_string()),
            _ => return Err(Stop("no id".to_string())),
        }
        if self.is_labels {
            match fields[1] {
                Field::Text(text) => {
                    let code = self.labels.code(text, |_| 0);
                    self.codes.push(code.0);
                }
                Field::Int(i) => self.codes.push(self.labels.code(&i.to_string(), |_| 0).0),
                Field::Float(x) => self.codes.push(self.labels.code(&x.to_string(), |_| 0).0),
                Field::Null => return Err(Stop("an empty label".to_string())),
            }
        } else {
            let value = match fields[1] {
                Field::Null => f64::NAN,
                Field::Int(i) => i as f64,
                Field::Float(x) => x,
                Field::Text(text) => match trim(text) {
                    "" => f64::NAN,
                    text => parse_number(text).ok_or_else(|| Stop("not a number".to_string()))?,
                },
            };
            self.numbers.push(value);
        }
        Ok(())
    }
}

/// Distinct labels numbered in the order they first appear, each with a value computed once.
/// Few distinct labels are looked up by a linear scan (faster than hashing for a handful).
#[derive(Default)]
struct Interner {
    names: Vec<String>,
    values: Vec<u32>,
    map: HashMap<String, u32>,
}

impl Interner {
    /// The label's number and value.
    fn code(&mut self, label: &str, value: impl FnOnce(&str) -> u32) -> (u32, u32) {
        let found = if self.names.len() <= 16 { self.names.iter().position(|n| n == label).map(|i| i as u32) } else { self.map.get(label).copied() };
        let code = match found {
            Some(code) => code,
            None => {
                let code = self.names.len() as u32;
                self.names.push(label.to_string());
                self.values.push(value(label));
                self.map.insert(label.to_string(), code);
                code
            }
        };
        (code, self.values[code as usize])
    }
}

/// Ids as read: integers while every id is one, else text.
enum Ids {
    Int(Vec<i64>),
    Text { bytes: Vec<u8>, ends: Vec<usize> },
}

impl Ids {
    fn push_int(&mut self, id: i64) {
        match self {
            Ids::Int(values) => values.push(id),
            Ids::Text { .. } => self.push_text(&id.to_string()),
        }
    }

    fn push_text(&mut self, id: &str) {
        if let Ids::Int(values) = self {
            if let Some(int) = parse_integer(id) {
                values.push(int);
                return;
            }
            self.make_text();
        }
        let Ids::Text { bytes, ends } = self else { unreachable!("made text") };
        bytes.extend_from_slice(id.as_bytes());
        ends.push(bytes.len());
    }

    fn make_text(&mut self) {
        if let Ids::Int(values) = self {
            let mut bytes = Vec::new();
            let mut ends = Vec::with_capacity(values.len());
            for value in values.iter() {
                bytes.extend_from_slice(value.to_string().as_bytes());
                ends.push(bytes.len());
            }
            *self = Ids::Text { bytes, ends };
        }
    }

    fn concat(mut parts: Vec<Ids>) -> Ids {
        if parts.iter().any(|p| matches!(p, Ids::Text { .. })) {
            parts.iter_mut().for_each(Ids::make_text);
        }
        let mut parts = parts.into_iter();
        let mut all = parts.next().unwrap_or(Ids::Int(Vec::new()));
        for part in parts {
            match (&mut all, part) {
                (Ids::Int(a), Ids::Int(mut b)) => a.append(&mut b),
                (Ids::Text { bytes, ends }, Ids::Text { bytes: more, ends: more_ends }) => {
                    let base = bytes.len();
                    bytes.extend_from_slice(&more);
                    ends.extend(more_ends.iter().map(|e| e + base));
                }
                _ => unreachable!("made alike"),
            }
        }
        all
    }
}

/// From id to truth row.
enum IdIndex {
    /// Integer ids spanning a range a few times the row count: `slot[id - low]` is the row + 1.
    Dense { low: i64, slot: Vec<AtomicU32> },
    /// Other integer ids, sorted with their rows.
    Sorted(Vec<(i64, u32)>),
    /// Text ids, with the rows in the order of their ids.
    Text { bytes: Vec<u8>, ends: Vec<usize>, order: Vec<u32> },
}

impl IdIndex {
    fn build(ids: Ids) -> Result<IdIndex, String> {
        match ids {
            Ids::Int(values) => {
                let (low, high) = values.iter().fold((i64::MAX, i64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                let span = high as i128 - low as i128 + 1;
                if span < NONE as i128 && span <= 4 * values.len() as i128 + (1 << 20) {
                    // Each slot holds its row + 1 (0: no row), scattered by both cores; a repeated
                    // id leaves fewer slots filled than rows.
                    let slot: Vec<AtomicU32> = zeroed_u32(span as usize);
                    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
                    let chunk = values.len().div_ceil(threads).max(1);
                    let filled: usize = std::thread::scope(|scope| {
                        let slot = &slot;
                        let handles: Vec<_> = values
                            .chunks(chunk)
                            .enumerate()
                            .map(|(k, ids)| {
                                scope.spawn(move || {
                                    for (i, &id) in ids.iter().enumerate() {
                                        slot[(id - low) as usize].store((k * chunk + i) as u32 + 1, Relaxed);
                                    }
                                })
                            })
                            .collect();
                        handles.into_iter().for_each(|h| h.join().expect("scattering does not panic"));
                        slot.iter().filter(|s| s.load(Relaxed) != 0).count()
                    });
                    if filled < values.len() {
                        let repeated =
                            values.iter().enumerate().find(|&(row, &id)| slot[(id - low) as usize].load(Relaxed) != row as u32 + 1).map_or(low, |(_, &id)| id);
                        return Err(format!("the id {repeated} appears twice"));
                    }
                    Ok(IdIndex::Dense { low, slot })
                } else {
                    let mut sorted: Vec<(i64, u32)> = values.iter().enumerate().map(|(row, &id)| (id, row as u32)).collect();
                    drop(values);
                    sorted.sort_unstable();
                    if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
                        return Err(format!("the id {} appears twice", pair[0].0));
                    }
                    Ok(IdIndex::Sorted(sorted))
                }
            }
            Ids::Text { bytes, ends } => {
                let n = ends.len();
                let text = |row: usize| -> &[u8] { &bytes[if row == 0 { 0 } else { ends[row - 1] }..ends[row]] };
                let mut order: Vec<u32> = (0..n as u32).collect();
                order.sort_unstable_by(|&a, &b| text(a as usize).cmp(text(b as usize)));
                if let Some(pair) = order.windows(2).find(|w| text(w[0] as usize) == text(w[1] as usize)) {
                    return Err(format!("the id {} appears twice", String::from_utf8_lossy(text(pair[0] as usize))));
                }
                Ok(IdIndex::Text { bytes, ends, order })
            }
        }
    }

    /// The truth row of an output's id, when ids are text (integer ids are looked up a batch at
    /// a time, through `int_row`).
    fn text_row_of(&self, id: &Field<'_>) -> Option<u32> {
        match id {
            Field::Text(text) => self.text_row(trim(text).as_bytes()),
            Field::Int(id) => self.text_row(id.to_string().as_bytes()),
            Field::Float(x) => self.text_row(x.to_string().as_bytes()),
            Field::Null => None,
        }
    }

    fn int_row(&self, id: i64) -> Option<u32> {
        match self {
            IdIndex::Dense { low, slot } => {
                let at = id.checked_sub(*low).filter(|&at| at >= 0)? as u64;
                slot.get(at as usize).map(|row| row.load(Relaxed)).filter(|&row| row != 0).map(|row| row - 1)
            }
            IdIndex::Sorted(sorted) => sorted.binary_search_by_key(&id, |&(id, _)| id).ok().map(|at| sorted[at].1),
            IdIndex::Text { .. } => None,
        }
    }

    fn text_row(&self, id: &[u8]) -> Option<u32> {
        let IdIndex::Text { bytes, ends, order } = self else { return None };
        let text = |row: usize| -> &[u8] { &bytes[if row == 0 { 0 } else { ends[row - 1] }..ends[row]] };
        order.binary_search_by(|&row| text(row as usize).cmp(id)).ok().map(|at| order[at])
    }

    /// Every truth row with its id, in the order of the ids.
    fn for_each_sorted(&self, mut each: impl FnMut(u32, &dyn Fn() -> String) -> bool) {
        match self {
            IdIndex::Dense { low, slot } => {
                for (at, row) in slot.iter().enumerate() {
                    let row = row.load(Relaxed);
                    if row != 0 && !each(row - 1, &|| (low + at as i64).to_string()) {
                        return;
                    }
                }
            }
            IdIndex::Sorted(sorted) => {
                for &(id, row) in sorted {
                    if !each(row, &|| id.to_string()) {
                        return;
                    }
                }
            }
            IdIndex::Text { bytes, ends, order } => {
                for &row in order {
                    let r = row as usize;
                    let text = || String::from_utf8_lossy(&bytes[if r == 0 { 0 } else { ends[r - 1] }..ends[r]]).into_owned();
                    if !each(row, &text) {
                        return;
                    }
                }
            }
        }
    }

    /// Ids the output gave more than once, and ids it did not give: counts, and the first
    /// examples in the order of the ids.
    fn unmatched(&self, claims: &[Claims]) -> (Offence, Offence) {
        let (mut duplicate, mut missing) = (Offence::new("duplicate ids"), Offence::new("missing ids"));
        let words = claims.first().map_or(0, |c| c.once.len());
        // Per row: claimed by any part, and claimed twice (within a part, or by two parts).
        let mut n_duplicate: u64 = claims.iter().map(|c| c.extra).sum();
        let mut n_missing = 0u64;
        let mut any = vec![0u64; words];
        let mut twice = vec![0u64; words];
        for w in 0..words {
            let (mut seen, mut again) = (0u64, 0u64);
            for part in claims {
                again |= part.twice[w] | (seen & part.once[w]);
                n_duplicate += u64::from((seen & part.once[w]).count_ones());
                seen |= part.once[w];
            }
            any[w] = seen;
            twice[w] = again;
        }
        let bit = |bits: &[u64], row: u32| bits[row as usize / 64] >> (row % 64) & 1 == 1;
        for row in 0..claims.first().map_or(0, |c| c.rows) as u32 {
            n_missing += u64::from(!bit(&any, row));
        }
        if n_duplicate + n_missing == 0 {
            return (duplicate, missing);
        }
        let wanted = (n_duplicate.min(EXAMPLES as u64), n_missing.min(EXAMPLES as u64));
        self.for_each_sorted(|row, id| {
            if !bit(&any, row) && missing.examples.len() < EXAMPLES {
                missing.examples.push(id());
            } else if bit(&twice, row) && duplicate.examples.len() < EXAMPLES {
                duplicate.examples.push(id());
            }
            (duplicate.examples.len() as u64) < wanted.0 || (missing.examples.len() as u64) < wanted.1
        });
        duplicate.count = n_duplicate;
        missing.count = n_missing;
        (duplicate, missing)
    }
}

/// Which truth rows one part of the output answered: a bit per row, a second bit for rows it
/// answered more than once, and how many answers beyond the first it gave.
struct Claims {
    rows: usize,
    once: Vec<u64>,
    twice: Vec<u64>,
    extra: u64,
}

impl Claims {
    fn new(rows: usize) -> Claims {
        Claims { rows, once: vec![0; rows.div_ceil(64)], twice: vec![0; rows.div_ceil(64)], extra: 0 }
    }

    fn claim(&mut self, row: u32) {
        let (word, bit) = (row as usize / 64, 1u64 << (row % 64));
        if self.once[word] & bit != 0 {
            self.twice[word] |= bit;
            self.extra += 1;
        }
        self.once[word] |= bit;
    }
}

/// `n` atomic zeros in memory the kernel zeroes as it is first touched (by the threads that
/// place values, in parallel), instead of being filled here first.
fn zeroed_u64(n: usize) -> Vec<AtomicU64> {
    const _: () = assert!(std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>());
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u64; n]);
    // SAFETY: `AtomicU64` has the size and bit validity of `u64` (std documents it) and, as
    // asserted above, its alignment, so the allocation is a valid `Vec<AtomicU64>` of the same
    // length and capacity; `zeros` is never used again.
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU64>(), zeros.len(), zeros.capacity()) }
}

/// [`zeroed_u64`] for `u32`.
fn zeroed_u32(n: usize) -> Vec<AtomicU32> {
    const _: () = assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>());
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u32; n]);
    // SAFETY: as in `zeroed_u64`.
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU32>(), zeros.len(), zeros.capacity()) }
}

// ---------------------------------------------------------------------------------------------
// The output.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Label,
    Number { probability: bool },
    PerClass,
}

/// What the output's readers share: the truth's index, and the output's values placed in the
/// truth's order.
struct Shared<'t> {
    index: &'t IdIndex,
    n_rows: usize,
    aligned: Aligned,
    kind: ValueKind,
    classes: HashMap<&'t str, u32>,
    columns: Vec<&'t str>,
}

enum Aligned {
    Classes(Vec<AtomicU32>),
    /// One column (a number or a probability), or one per class; `f64` bits.
    Numbers(Vec<Vec<AtomicU64>>),
}

/// Reads one part of the output.
struct OutputSink<'s, 't> {
    shared: &'s Shared<'t>,
    found: Findings,
    claims: Claims,
    labels: Interner,
    scratch: Vec<f64>,
    /// Records whose integer ids are yet to be looked up, with their values (one per value
    /// column, or a class index as `f64`): looked up a batch at a time, so that the random reads
    /// of the index and writes of the values overlap instead of waiting on each other.
    batch_ids: Vec<i64>,
    batch_values: Vec<f64>,
    batch_rows: Vec<u32>,
}

/// Records per batch.
const BATCH: usize = 4096;

/// What a part of the output has wrong, in the part's order.
struct Findings {
    no_id: Offence,
    no_id_rows: Vec<u64>,
    unknown: Offence,
    empty: Offence,
    strangers: Offence,
    /// Per value column: not numbers, empty, not finite, out of range.
    number_offences: Vec<Vec<Offence>>,
    bad_sums: Offence,
}

impl Findings {
    fn new(columns: &[&str]) -> Findings {
        let number_offences = columns
            .iter()
            .map(|column| {
                vec![
                    Offence::new(format!("values in {column:?} that are not numbers")),
                    Offence::new(format!("empty values in {column:?}")),
                    Offence::new(format!("NaN or infinite values in {column:?}")),
                    Offence::new(format!("values in {column:?} outside [0, 1]")),
                ]
            })
            .collect();
        Findings {
            no_id: Offence::new("rows without an id"),
            no_id_rows: Vec::new(),
            unknown: Offence::new("unknown ids"),
            empty: Offence::new("empty predictions"),
            strangers: Offence::new("labels that are not classes of this task"),
            number_offences,
            bad_sums: Offence::new("rows whose probabilities do not sum to 1"),
        }
    }

    /// Adds the next part's findings; its rows come after `rows_before`.
    fn merge(&mut self, part: Findings, rows_before: u64) {
        for row in part.no_id_rows {
            if self.no_id_rows.len() < EXAMPLES {
                self.no_id_rows.push(rows_before + row);
            }
        }
        self.no_id.merge(part.no_id);
        self.unknown.merge(part.unknown);
        self.empty.merge(part.empty);
        self.strangers.merge(part.strangers);
        for (mine, theirs) in self.number_offences.iter_mut().zip(part.number_offences) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                a.merge(b);
            }
        }
        self.bad_sums.merge(part.bad_sums);
    }
}

impl<'s, 't> OutputSink<'s, 't> {
    fn new(shared: &'s Shared<'t>) -> OutputSink<'s, 't> {
        OutputSink {
            shared,
            found: Findings::new(&shared.columns),
            claims: Claims::new(shared.n_rows),
            labels: Interner::default(),
            scratch: Vec::new(),
            batch_ids: Vec::with_capacity(BATCH),
            batch_values: Vec::with_capacity(BATCH * shared.columns.len()),
            batch_rows: Vec::with_capacity(BATCH),
        }
    }

    /// A number where one is due; `None` (and an offence) when it is not a usable one.
    fn number(&mut self, column: usize, field: &Field<'_>, id: &dyn Fn() -> String) -> Option<f64> {
        let in_range = matches!(self.shared.kind, ValueKind::Number { probability: true } | ValueKind::PerClass);
        let offences = &mut self.found.number_offences[column];
        let value = match *field {
            Field::Null => {
                offences[1].add(id);
                return None;
            }
            Field::Int(i) => i as f64,
            Field::Float(x) => x,
            Field::Text(text) => match trim(text) {
                "" => {
                    offences[1].add(id);
                    return None;
                }
                trimmed => match parse_number(trimmed).ok_or(()) {
                    Ok(x) => x,
                    Err(_) => {
                        offences[0].add(|| format!("{trimmed} (id {})", id()));
                        return None;
                    }
                },
            },
        };
        if !value.is_finite() {
            offences[2].add(id);
            return None;
        }
        if in_range && !(0.0..=1.0).contains(&value) {
            offences[3].add(|| format!("{value} (id {})", id()));
        }
        Some(value)
    }
}

impl Sink for OutputSink<'_, '_> {
    fn record(&mut self, row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        let id_field = fields[0];
        let blank = match id_field {
            Field::Null => true,
            Field::Text(text) => trim(text).is_empty(),
            _ => false,
        };
        if blank {
            self.found.no_id.count += 1;
            if self.found.no_id_rows.len() < EXAMPLES {
                self.found.no_id_rows.push(row);
            }
            return Ok(());
        }
        let id = || match id_field {
            Field::Text(text) => trim(text).to_string(),
            Field::Int(i) => i.to_string(),
            Field::Float(x) => x.to_string(),
            Field::Null => String::new(),
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        match self.shared.kind {
            ValueKind::Label => {
                let class = match fields[1] {
                    Field::Null => {
                        self.found.empty.add(id);
                        NONE
                    }
                    Field::Text(text) => self.label(text, &id),
                    Field::Int(i) => self.label(&i.to_string(), &id),
                    Field::Float(x) => self.label(&x.to_string(), &id),
                };
                scratch.push(f64::from(class));
            }
            kind => {
                for (column, field) in fields[1..].iter().enumerate() {
                    scratch.push(self.number(column, field, &id).unwrap_or(f64::NAN));
                }
                if kind == ValueKind::PerClass && scratch.iter().all(|v| v.is_finite()) {
                    let sum: f64 = scratch.iter().sum();
                    if (sum - 1.0).abs() > SUM_TOLERANCE {
                        self.found.bad_sums.add(|| format!("{} (sum {sum:.6})", id()));
                    }
                }
            }
        }
        let integer = match (self.shared.index, id_field) {
            (IdIndex::Text { .. }, _) => None,
            (_, Field::Int(i)) => Some(Some(i)),
            (_, Field::Text(text)) => Some(parse_integer(trim(text))),
            (_, _) => Some(None),
        };
        match integer {
            // Integer ids wait for their batch.
            Some(Some(key)) => {
                self.batch_ids.push(key);
                self.batch_values.extend_from_slice(&scratch);
                if self.batch_ids.len() == BATCH {
                    self.flush();
                }
            }
            Some(None) => self.found.unknown.add(id),
            None => match self.shared.index.text_row_of(&id_field) {
                Some(t) => self.place(t, &scratch),
                None => self.found.unknown.add(id),
            },
        }
        self.scratch = scratch;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Stop> {
        self.flush();
        Ok(())
    }
}

impl OutputSink<'_, '_> {
    /// Looks the batch's ids up, then places their values.
    fn flush(&mut self) {
        let index = self.shared.index;
        self.batch_rows.clear();
        self.batch_rows.extend(self.batch_ids.iter().map(|&key| index.int_row(key).unwrap_or(NONE)));
        let width = self.shared.columns.len();
        let (ids, values, rows) = (std::mem::take(&mut self.batch_ids), std::mem::take(&mut self.batch_values), std::mem::take(&mut self.batch_rows));
        for ((&key, &t), values) in ids.iter().zip(&rows).zip(values.chunks_exact(width)) {
            if t == NONE {
                self.found.unknown.add(|| key.to_string());
            } else {
                self.place(t, values);
            }
        }
        (self.batch_ids, self.batch_values, self.batch_rows) = (ids, values, rows);
        self.batch_ids.clear();
        self.batch_values.clear();
    }

    /// Stores a record's values at truth row `t` and counts the claim.
    fn place(&mut self, t: u32, values: &[f64]) {
        match &self.shared.aligned {
            Aligned::Classes(aligned) => aligned[t as usize].store(values[0] as u32, Relaxed),
            Aligned::Numbers(columns) => {
                for (column, &value) in columns.iter().zip(values) {
                    column[t as usize].store(value.to_bits(), Relaxed);
                }
            }
        }
        self.claims.claim(t);
    }
}

impl OutputSink<'_, '_> {
    /// The class index of a predicted label (spaces around it ignored), or an offence.
    fn label(&mut self, text: &str, id: &dyn Fn() -> String) -> u32 {
        let classes = &self.shared.classes;
        let (_, class) = self.labels.code(text, |label| classes.get(label.trim()).copied().unwrap_or(STRANGER));
        if class == STRANGER {
            self.found.strangers.add(|| format!("{text} (id {})", id()));
        }
        class
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confusion_matrix_follows_the_tasks_classes() {
        let used: Vec<String> = ["Fair", "Good", "Ideal", "Premium"].iter().map(|s| s.to_string()).collect();
        // Truth Ideal predicted Premium twice; truth Fair predicted Fair once.
        let confusion = Confusion::new(4, &[2, 2, 0], &[3, 3, 0]);
        let classes: Vec<String> = ["Fair", "Good", "Very Good", "Premium", "Ideal"].iter().map(|s| s.to_string()).collect();
        let report = confusion_report(&used, &confusion, Some(&classes));
        assert_eq!(report.labels, vec!["Fair", "Good", "Premium", "Ideal"]);
        assert_eq!(report.matrix[3][2], 2, "truth Ideal, predicted Premium");
        assert_eq!(report.matrix[0][0], 1);
        assert_eq!(confusion_report(&used, &confusion, None).labels, used);
    }
}
