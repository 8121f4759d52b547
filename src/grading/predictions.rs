//! Grading a predictions file: columns, ids, values, then the metric.
//!
//! Rows match the truth by id, in any order. Every way a file can be wrong is checked before any
//! metric runs, and all of them are reported at once: missing or extra columns, rows without an
//! id, duplicate, unknown and missing ids, empty predictions, labels outside the task's classes,
//! non-numbers (NaN, inf, text) where numbers are due, probabilities outside [0, 1] or (one
//! column per class) rows that do not sum to 1.
//!
//! Both files stream through [`records`]. The truth becomes compact columns: with dense integer
//! ids (a range not much wider than their count), its class (a byte) or number is placed at the
//! id's slot, `id - low`, so that an id finds its truth in one read; other ids are sorted (no hash
//! table either way). Then the output: each record, as it is parsed, claims its truth row (a bit,
//! for the duplicate and missing ids) and is tallied against that row's truth at once — a
//! confusion matrix, a compensated sum of a number metric's terms, the positives' and negatives'
//! scores for ROC AUC. Neither file's table is built, the output's ids and values are never
//! stored in the truth's order, and the metric is ready when the last record is read.
//!
//! Ids compare as integers when every truth id is an integer (`007` is `7`; an output id that is
//! not an integer is unknown), else as text with spaces around them trimmed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use super::atomics::{atomic, zeroed};
use super::metrics::{self, Classes, Confusion, Ranked, Sum};
use super::records::{self, parse_integer, parse_number, trim, Field, Sink, Stop, Want};
use super::slices::{for_each_bit, Key, Masks, Slice, SliceScore};
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

/// Grades the output against the truth, and on each of `slices` of the truth's rows apart.
pub fn grade(spec: &GradingSpec, output_path: &Path, truth_path: &Path, slices: &[Slice]) -> Result<Accuracy, GradingError> {
    mem("start");
    let truth_error = |message: String| GradingError::Truth { path: truth_path.to_path_buf(), message };
    let fail = |problem: OutputProblem| Ok(Accuracy::failed(spec.metric, problem));
    let id = spec.id.as_deref().unwrap_or("id");
    let target = spec.target.as_deref().unwrap_or("target");
    let input = spec.metric.input();
    let one_column_per_class = input == MetricInput::Probabilities && spec.positive.is_none();

    let truth = Truth::read(spec, truth_path, id, target, input).map_err(truth_error)?;
    mem("truth read");
    let masks = Masks::new(slices, truth.index.rows(), |id| truth.row_of(id));
    // r2's denominators per slice, before the output's residuals take the truth's place.
    let slice_sums: Vec<Option<f64>> = match spec.metric {
        Metric::R2 => (0..masks.names.len()).map(|bit| Some(metrics::sum_of_squares(truth.numbers_in(&masks, bit)))).collect(),
        _ => vec![None; masks.names.len()],
    };

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
        truth: &truth,
        kind: value_kind,
        metric: spec.metric,
        positive: spec.positive.as_deref().and_then(|p| truth.known.iter().position(|k| k == p)).map(|p| p as u32),
        classes: truth.known.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect(),
        columns: value_columns.clone(),
        masks: &masks,
    };
    let parts = match records::read(output_path, &wanted, super::max_output_rows(n as u64), || OutputSink::new(&shared)) {
        Ok(parts) => parts,
        Err(message) => return fail(OutputProblem::bad_format(format!("{} cannot be read: {message}", spec.output))),
    };
    mem("output read");

    // The parts' findings, in file order.
    let mut found = Findings::new(&value_columns);
    let mut rows_before = 0u64;
    let mut claims = Vec::with_capacity(parts.len());
    let mut tallies = Vec::with_capacity(parts.len());
    let mut slice_tallies: Vec<Vec<Tally>> = (0..masks.names.len()).map(|_| Vec::with_capacity(parts.len())).collect();
    for (part, rows) in parts {
        found.merge(part.found, rows_before);
        claims.push(part.claims);
        tallies.push(part.tally);
        for (all, one) in slice_tallies.iter_mut().zip(part.slice_tallies) {
            all.push(one);
        }
        rows_before += rows;
    }

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
    mem("matched");
    let mut scored = score(spec, &truth, tallies)?;
    if scored.problem.is_none() {
        let counts = masks.counts();
        scored.slices = slice_tallies
            .into_iter()
            .zip(&masks.names)
            .zip(counts)
            .zip(slice_sums)
            .map(|(((tallies, name), rows), sum_of_squares)| slice_score(spec, &truth, name, rows, join(tallies), sum_of_squares))
            .collect();
    }
    mem("scored");
    Ok(scored)
}

/// The metric on one slice's rows, from its tally.
fn slice_score(spec: &GradingSpec, truth: &Truth, name: &str, rows: usize, tally: Tally, sum_of_squares: Option<f64>) -> SliceScore {
    let mut score = SliceScore { name: name.to_string(), rows, value: None, note: None };
    if rows == 0 {
        score.note = Some("no rows".to_string());
        return score;
    }
    let (value, _) = finish(spec, &truth.known, tally, rows, sum_of_squares);
    match value.is_finite() {
        true => score.value = Some(value),
        false => score.note = Some(format!("{} is undefined on these rows (one class only)", spec.metric.name())),
    }
    score
}

/// The parts' tallies as one.
fn join(tallies: Vec<Tally>) -> Tally {
    let mut tallies = tallies.into_iter();
    let Some(mut tally) = tallies.next() else { unreachable!("a file has at least one part") };
    let rest: Vec<Tally> = tallies.collect();
    debug_assert!(rest.iter().all(|t| t.kind_name() == tally.kind_name()), "every part tallies alike");
    match &mut tally {
        Tally::Confusion(counts) => {
            for part in &rest {
                let Tally::Confusion(more) = part else { unreachable!("alike") };
                counts.iter_mut().zip(more).for_each(|(a, b)| *a += b);
            }
        }
        Tally::Numbers { terms, negative } => {
            for part in rest {
                let Tally::Numbers { terms: more, negative: more_negative } = part else { unreachable!("alike") };
                terms.merge(more);
                *negative += more_negative;
            }
        }
        Tally::Loss(sum) => {
            for part in rest {
                let Tally::Loss(more) = part else { unreachable!("alike") };
                sum.merge(more);
            }
        }
        Tally::Ranked(first) => {
            let mut all = vec![std::mem::take(first)];
            all.extend(rest.into_iter().map(|t| if let Tally::Ranked(r) = t { r } else { unreachable!("alike") }));
            *first = Ranked::join(all);
        }
        Tally::PerClassRanked(first) => {
            let mut per_class: Vec<Vec<Ranked>> = std::mem::take(first).into_iter().map(|r| vec![r]).collect();
            for t in rest {
                let Tally::PerClassRanked(classes) = t else { unreachable!("alike") };
                for (class, ranked) in classes.into_iter().enumerate() {
                    per_class[class].push(ranked);
                }
            }
            *first = per_class.into_iter().map(Ranked::join).collect();
        }
    }
    tally
}

/// The metric's value from a whole tally of `n_rows` rows, and the confusion matrix it was
/// taken from (labels only): scikit-learn's classes are those that occur in the truth or the
/// predictions of these rows.
fn finish(spec: &GradingSpec, known: &[String], tally: Tally, n_rows: usize, sum_of_squares: Option<f64>) -> (f64, Option<(Vec<String>, Confusion)>) {
    match tally {
        Tally::Confusion(counts) => {
            let k = known.len();
            let present: Vec<bool> = (0..k).map(|c| (0..k).any(|o| counts[c * k + o] > 0 || counts[o * k + c] > 0)).collect();
            let mut used: Vec<String> = known.iter().zip(&present).filter(|(_, &p)| p).map(|(n, _)| n.clone()).collect();
            metrics::sort_labels(&mut used);
            let remap: Vec<usize> = known.iter().map(|name| used.iter().position(|u| u == name).unwrap_or(0)).collect();
            let mut confusion = Confusion { k: used.len(), counts: vec![0; used.len() * used.len()] };
            for t in (0..k).filter(|&t| present[t]) {
                for p in (0..k).filter(|&p| present[p]) {
                    confusion.counts[remap[t] * used.len() + remap[p]] += counts[t * k + p];
                }
            }
            let positive = spec.positive.as_ref().and_then(|p| used.iter().position(|u| u == p));
            (metrics::label_metric(spec.metric, &confusion, positive), Some((used, confusion)))
        }
        Tally::Numbers { terms, .. } => (metrics::number_finish(spec.metric, terms, n_rows, sum_of_squares), None),
        Tally::Loss(sum) => (sum.value() / n_rows as f64, None),
        Tally::Ranked(ranked) => (ranked.auc(), None),
        Tally::PerClassRanked(per_class) => (metrics::multiclass_auc(per_class), None),
    }
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

/// The metric from the parts' tallies (every truth row answered once: the checks passed).
fn score(spec: &GradingSpec, truth: &Truth, tallies: Vec<Tally>) -> Result<Accuracy, GradingError> {
    let n_rows = truth.n_rows;
    let tally = join(tallies);
    if let Tally::Numbers { negative, .. } = tally {
        if spec.metric == Metric::Rmsle && negative > 0 {
            let problem = OutputProblem::bad_format(format!("{}: {negative} negative predictions (rmsle needs values of at least 0)", spec.output));
            return Ok(Accuracy::failed(spec.metric, problem));
        }
    }
    let numbers = matches!(tally, Tally::Numbers { .. });
    let (value, confusion) = finish(spec, &truth.known, tally, n_rows, truth.sum_of_squares);
    let mut accuracy = Accuracy::scored(spec.metric, value, n_rows);
    if let Some((used, confusion)) = confusion {
        if used.len() <= MAX_REPORTED_CLASSES {
            accuracy.confusion = Some(confusion_report(&used, &confusion, spec.classes.as_deref()));
        }
    }
    if numbers {
        accuracy.residuals = super::Histogram::of(truth.numbers(), 24);
    }
    Ok(accuracy)
}

// ---------------------------------------------------------------------------------------------
// The truth.

/// The truth, compacted: an index from id to row, and a class index or a number per row. With
/// dense integer ids the rows are the ids' slots (`id - low`), so that an output's id finds its
/// truth value in one read.
struct Truth {
    /// The truth's records (ids).
    n_rows: usize,
    index: IdIndex,
    /// By row: `index.rows()` of them (slots of a dense index without an id are unspecified).
    values: TruthValues,
    /// The classes, in the task's order (or scikit-learn's, when the task does not list them).
    known: Vec<String>,
    /// r2's denominator: the truth's sum of squares about its mean (taken before the output's
    /// residuals replace the numbers).
    sum_of_squares: Option<f64>,
}

enum TruthValues {
    /// Class indices of up to 256 classes, a byte each (a tenth of the memory of the numbers,
    /// so that the output's random reads mostly hit the cache).
    Classes(Vec<u8>),
    ManyClasses(Vec<u32>),
    /// Numbers (`f64` bits). Once an output record is tallied against a row, the row holds the
    /// record's residual (prediction - truth) instead, for the report's histogram: a grade whose
    /// rows are not each answered once fails before it is scored, so each number is read once.
    Numbers(Vec<AtomicU64>),
}

impl TruthValues {
    fn classes(classes: Vec<u32>, k: usize) -> TruthValues {
        if k <= 256 {
            TruthValues::Classes(classes.into_iter().map(|c| c as u8).collect())
        } else {
            TruthValues::ManyClasses(classes)
        }
    }
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
            low: i64::MAX,
            high: i64::MIN,
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

        // Each part numbered its labels in its own order; give them one numbering, then classes.
        let mut known = Vec::new();
        let mut class_of: Vec<Vec<u32>> = Vec::new();
        if labels {
            let mut distinct: Vec<String> = Vec::new();
            let mut part_maps: Vec<Vec<usize>> = Vec::new();
            for sink in &sinks {
                let map = sink
                    .labels
                    .names
                    .iter()
                    .map(|name| match distinct.iter().position(|d| d == name) {
                        Some(i) => i,
                        None => {
                            distinct.push(name.clone());
                            distinct.len() - 1
                        }
                    })
                    .collect();
                part_maps.push(map);
            }
            known = match &spec.classes {
                Some(classes) => classes.clone(),
                None => Classes::from_labels(distinct.iter().map(String::as_str)).names,
            };
            let class_of_distinct: Vec<u32> = distinct
                .iter()
                .map(|label| known.iter().position(|k| k == label).map(|i| i as u32).ok_or_else(|| format!("label {label:?} is not among grading.classes")))
                .collect::<Result<_, _>>()?;
            class_of = part_maps.iter().map(|map| map.iter().map(|&d| class_of_distinct[d]).collect()).collect();
        }

        // Dense integer ids: values straight into their slots.
        if sinks.iter().all(|s| matches!(s.ids, Ids::Int(_))) {
            let (low, high) = sinks.iter().fold((i64::MAX, i64::MIN), |(l, h), s| (l.min(s.low), h.max(s.high)));
            let span = high as i128 - low as i128 + 1;
            if span < NONE as i128 && span <= 2 * n_rows as i128 + (1 << 20) {
                let (index, values) = dense(&sinks, &class_of, low, span as usize)?;
                mem("truth placed");
                return Ok(Truth::new(spec, n_rows, index, values, known));
            }
        }

        let ids = Ids::concat(sinks.iter_mut().map(|s| std::mem::replace(&mut s.ids, Ids::Int(Vec::new()))).collect());
        let index = IdIndex::build(ids)?;
        mem("truth indexed");
        let values = if labels {
            let mut classes = Vec::with_capacity(n_rows);
            for (sink, map) in sinks.iter().zip(&class_of) {
                classes.extend(sink.codes.iter().map(|&code| map[code as usize]));
            }
            TruthValues::classes(classes, known.len())
        } else {
            let mut numbers = Vec::with_capacity(n_rows);
            for sink in &sinks {
                numbers.extend(sink.numbers.iter().map(|v| v.to_bits()));
            }
            TruthValues::Numbers(atomic(numbers))
        };
        Ok(Truth::new(spec, n_rows, index, values, known))
    }

    fn new(spec: &GradingSpec, n_rows: usize, index: IdIndex, values: TruthValues, known: Vec<String>) -> Truth {
        let mut truth = Truth { n_rows, index, values, known, sum_of_squares: None };
        if spec.metric == Metric::R2 {
            truth.sum_of_squares = Some(metrics::sum_of_squares(truth.numbers()));
        }
        truth
    }

    /// The truth row of an id as a slice lists it, if the truth holds it.
    fn row_of(&self, id: Key<'_>) -> Option<usize> {
        let row = match (&self.index, id) {
            (IdIndex::Text { .. }, Key::Int(int)) => self.index.text_row_of(&Field::Int(int)),
            (IdIndex::Text { .. }, Key::Text(text)) => self.index.text_row_of(&Field::Text(text)),
            (index, Key::Int(int)) => index.int_row(int),
            (index, Key::Text(text)) => parse_integer(trim(text)).and_then(|key| index.int_row(key)),
        };
        row.map(|r| r as usize).filter(|&r| self.index.holds(r))
    }

    /// The truth's numbers on one slice's rows (before the output is tallied).
    fn numbers_in<'a>(&'a self, masks: &'a Masks, bit: usize) -> impl Iterator<Item = f64> + Clone + 'a {
        let TruthValues::Numbers(numbers) = &self.values else { panic!("the truth holds classes") };
        numbers.iter().enumerate().filter(move |&(row, _)| masks.of(row) >> bit & 1 == 1).map(|(_, v)| f64::from_bits(v.load(Relaxed)))
    }

    /// The truth's numbers (or, once the output is tallied, its residuals), one per truth row.
    fn numbers(&self) -> impl Iterator<Item = f64> + Clone + '_ {
        let TruthValues::Numbers(numbers) = &self.values else { panic!("the truth holds classes") };
        numbers.iter().enumerate().filter(|&(row, _)| self.index.holds(row)).map(|(_, v)| f64::from_bits(v.load(Relaxed)))
    }

    /// The class of truth row `row`.
    #[inline]
    fn class(&self, row: usize) -> u32 {
        match &self.values {
            TruthValues::Classes(classes) => u32::from(classes[row]),
            TruthValues::ManyClasses(classes) => classes[row],
            TruthValues::Numbers(_) => unreachable!("the truth holds numbers"),
        }
    }

    /// Asks the processor to bring a row's value into the cache: the output's records meet their
    /// rows in random order, and a batch's reads overlap this way instead of waiting in turn.
    #[inline]
    fn prefetch(&self, row: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let address = match &self.values {
                TruthValues::Classes(classes) => classes.as_ptr().wrapping_add(row as usize).cast::<i8>(),
                TruthValues::ManyClasses(classes) => classes.as_ptr().wrapping_add(row as usize).cast::<i8>(),
                TruthValues::Numbers(numbers) => numbers.as_ptr().wrapping_add(row as usize).cast::<i8>(),
            };
            // SAFETY: a prefetch is a hint; it never faults, whatever the address.
            unsafe { _mm_prefetch(address, _MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = row;
    }
}

/// Places dense integer ids' values in their slots (`id - low`), each part's on a thread of its
/// own, and marks the slots that hold an id; an id met twice is an error. Each thread marks a
/// bit set of its own (a locked instruction per record would wait for every store before it);
/// the sets are joined after.
fn dense(sinks: &[TruthSink], class_of: &[Vec<u32>], low: i64, span: usize) -> Result<(IdIndex, TruthValues), String> {
    let words = span.div_ceil(64);
    let is_labels = sinks.first().is_some_and(|s| s.is_labels);
    let small = class_of.iter().flatten().all(|&c| c < 256);
    let classes: Vec<AtomicU32> = if is_labels && !small { zeroed::<u32>(span) } else { Vec::new() };
    let bytes: Vec<AtomicU8> = if is_labels && small { zeroed::<u8>(span) } else { Vec::new() };
    let numbers: Vec<AtomicU64> = if is_labels { Vec::new() } else { zeroed::<u64>(span) };
    let marked: Vec<(Vec<u64>, Option<i64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sinks
            .iter()
            .enumerate()
            .map(|(part, sink)| {
                let (classes, bytes, numbers) = (&classes, &bytes, &numbers);
                let map = class_of.get(part);
                scope.spawn(move || {
                    let Ids::Int(ids) = &sink.ids else { unreachable!("checked: integer ids") };
                    let mut present = vec![0u64; words];
                    let mut repeated = None;
                    for (i, &id) in ids.iter().enumerate() {
                        let at = (id - low) as usize;
                        let (word, bit) = (at / 64, 1u64 << (at % 64));
                        if present[word] & bit != 0 {
                            repeated.get_or_insert(id);
                        }
                        present[word] |= bit;
                        match map {
                            Some(map) if small => bytes[at].store(map[sink.codes[i] as usize] as u8, Relaxed),
                            Some(map) => classes[at].store(map[sink.codes[i] as usize], Relaxed),
                            None => numbers[at].store(sink.numbers[i].to_bits(), Relaxed),
                        }
                    }
                    (present, repeated)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("placing does not panic")).collect()
    });
    let mut repeated: Option<i64> = marked.iter().filter_map(|(_, r)| *r).min();
    let mut marked = marked.into_iter().map(|(bits, _)| bits);
    let mut present = marked.next().unwrap_or_else(|| vec![0; words]);
    for other in marked {
        for (w, (mine, theirs)) in present.iter_mut().zip(&other).enumerate() {
            let both = *mine & theirs;
            if both != 0 {
                let id = low + (w * 64) as i64 + i64::from(both.trailing_zeros());
                repeated = Some(repeated.map_or(id, |r| r.min(id)));
            }
            *mine |= theirs;
        }
    }
    if let Some(id) = repeated {
        return Err(format!("the id {id} appears twice"));
    }
    let filled: u64 = present.iter().map(|w| u64::from(w.count_ones())).sum();
    let index = IdIndex::Dense { low, slots: span, present: (filled < span as u64).then_some(present) };
    let values = match (is_labels, small) {
        (true, true) => TruthValues::Classes(bytes.into_iter().map(AtomicU8::into_inner).collect()),
        (true, false) => TruthValues::ManyClasses(classes.into_iter().map(AtomicU32::into_inner).collect()),
        (false, _) => TruthValues::Numbers(numbers),
    };
    Ok((index, values))
}

struct TruthSink {
    ids: Ids,
    /// The least and the greatest integer id.
    low: i64,
    high: i64,
    numbers: Vec<f64>,
    codes: Vec<u32>,
    labels: Interner,
    is_labels: bool,
}

impl Sink for TruthSink {
    fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        let integer = match fields[0] {
            Field::Int(id) => Some(id),
            Field::Text(text) if !trim(text).is_empty() => {
                let text = trim(text);
                match (&self.ids, parse_integer(text)) {
                    (Ids::Int(_), Some(id)) => Some(id),
                    _ => {
                        self.ids.push_text(text);
                        None
                    }
                }
            }
            Field::Float(x) => {
                self.ids.push_text(&x.to_string());
                None
            }
            _ => return Err(Stop("no id".to_string())),
        };
        if let Some(id) = integer {
            self.ids.push_int(id);
            self.low = self.low.min(id);
            self.high = self.high.max(id);
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
    /// Integer ids spanning a range not much wider than their count: the row is the slot
    /// `id - low`; `present` marks the slots that hold an id (`None`: every one does).
    Dense { low: i64, slots: usize, present: Option<Vec<u64>> },
    /// Other integer ids, sorted with their rows.
    Sorted(Vec<(i64, u32)>),
    /// Text ids, with the rows in the order of their ids.
    Text { bytes: Vec<u8>, ends: Vec<usize>, order: Vec<u32> },
}

impl IdIndex {
    /// An index of ids that are not dense integers.
    fn build(ids: Ids) -> Result<IdIndex, String> {
        match ids {
            Ids::Int(values) => {
                let mut sorted: Vec<(i64, u32)> = values.iter().enumerate().map(|(row, &id)| (id, row as u32)).collect();
                drop(values);
                sorted.sort_unstable();
                if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(format!("the id {} appears twice", pair[0].0));
                }
                Ok(IdIndex::Sorted(sorted))
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

    /// How many row positions there are (a dense index's slots, holes included).
    fn rows(&self) -> usize {
        match self {
            IdIndex::Dense { slots, .. } => *slots,
            IdIndex::Sorted(sorted) => sorted.len(),
            IdIndex::Text { order, .. } => order.len(),
        }
    }

    /// Whether row position `row` holds a truth row.
    fn holds(&self, row: usize) -> bool {
        match self {
            IdIndex::Dense { present: Some(present), .. } => present[row / 64] >> (row % 64) & 1 == 1,
            _ => row < self.rows(),
        }
    }

    /// Word `w` of the bit set of row positions that hold a truth row.
    fn held_word(&self, w: usize) -> u64 {
        match self {
            IdIndex::Dense { present: Some(present), .. } => present[w],
            _ => {
                let rows = self.rows();
                if (w + 1) * 64 <= rows {
                    u64::MAX
                } else if w * 64 >= rows {
                    0
                } else {
                    (1u64 << (rows % 64)) - 1
                }
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

    #[inline]
    fn int_row(&self, id: i64) -> Option<u32> {
        match self {
            IdIndex::Dense { low, slots, present } => {
                let at = id.checked_sub(*low).filter(|&at| at >= 0 && (at as u64) < *slots as u64)? as usize;
                match present {
                    Some(present) if present[at / 64] >> (at % 64) & 1 == 0 => None,
                    _ => Some(at as u32),
                }
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
            IdIndex::Dense { low, slots, .. } => {
                for at in (0..*slots).filter(|&at| self.holds(at)) {
                    if !each(at as u32, &|| (low + at as i64).to_string()) {
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
        for (w, &claimed) in any.iter().enumerate() {
            n_missing += u64::from((self.held_word(w) & !claimed).count_ones());
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
    once: Vec<u64>,
    twice: Vec<u64>,
    extra: u64,
}

impl Claims {
    fn new(rows: usize) -> Claims {
        Claims { once: vec![0; rows.div_ceil(64)], twice: vec![0; rows.div_ceil(64)], extra: 0 }
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

// ---------------------------------------------------------------------------------------------
// The output.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Label,
    Number { probability: bool },
    PerClass,
}

/// What the output's readers share: the truth, and how to read and tally the output's values.
struct Shared<'t> {
    truth: &'t Truth,
    kind: ValueKind,
    metric: Metric,
    /// The positive class of a binary probability.
    positive: Option<u32>,
    classes: HashMap<&'t str, u32>,
    columns: Vec<&'t str>,
    /// The slices each truth row is in.
    masks: &'t Masks,
}

/// What one part of the output adds up toward the metric, record by record as each meets its
/// truth row: no copy of the output's values is kept in the truth's order.
enum Tally {
    /// Truth class × predicted class counts (`k × k`).
    Confusion(Vec<u64>),
    /// A number metric's terms, and the negative predictions (rmsle refuses them). The residuals
    /// take the truth's place (see [`TruthValues::Numbers`]).
    Numbers { terms: Sum, negative: u64 },
    /// Log loss: the sum of the records' terms.
    Loss(Sum),
    /// Binary ROC AUC: the positives' and negatives' scores.
    Ranked(Ranked),
    /// One-vs-rest ROC AUC: per class, its positives' and negatives' scores.
    PerClassRanked(Vec<Ranked>),
}

impl Tally {
    fn new(shared: &Shared<'_>) -> Tally {
        let k = shared.truth.known.len();
        match (shared.kind, shared.metric) {
            (ValueKind::Label, _) => Tally::Confusion(vec![0; k * k]),
            (ValueKind::Number { probability: false }, _) => Tally::Numbers { terms: Sum::default(), negative: 0 },
            (_, Metric::RocAuc) if shared.kind == ValueKind::PerClass => Tally::PerClassRanked((0..k).map(|_| Ranked::default()).collect()),
            (_, Metric::RocAuc) => Tally::Ranked(Ranked::default()),
            _ => Tally::Loss(Sum::default()),
        }
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Tally::Confusion(_) => "confusion",
            Tally::Numbers { .. } => "numbers",
            Tally::Loss(_) => "loss",
            Tally::Ranked(_) => "ranked",
            Tally::PerClassRanked(_) => "per class",
        }
    }
}

/// Reads one part of the output.
struct OutputSink<'s, 't> {
    shared: &'s Shared<'t>,
    found: Findings,
    claims: Claims,
    tally: Tally,
    /// One per slice.
    slice_tallies: Vec<Tally>,
    labels: Interner,
    scratch: Vec<f64>,
    /// Records whose integer ids are yet to be looked up, with their values (one per value
    /// column, or a class index as `f64`): looked up a batch at a time, each truth row fetched a
    /// few records ahead of its use, so that the random reads overlap instead of waiting in turn.
    batch_ids: Vec<i64>,
    batch_values: Vec<f64>,
    batch_rows: Vec<u32>,
}

/// Records per batch.
const BATCH: usize = 1024;

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
            claims: Claims::new(shared.truth.index.rows()),
            tally: Tally::new(shared),
            slice_tallies: (0..shared.masks.names.len()).map(|_| Tally::new(shared)).collect(),
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
        let integer = match (&self.shared.truth.index, id_field) {
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
            None => match self.shared.truth.index.text_row_of(&id_field) {
                Some(t) => {
                    self.claims.claim(t);
                    self.tally(t, &scratch);
                }
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
    /// Looks the batch's ids up and counts their claims, asking for every row's truth on the
    /// way (a tight loop, so that many of these random reads are under way at once); then
    /// tallies their values, the truths by then at hand.
    fn flush(&mut self) {
        let truth = self.shared.truth;
        self.batch_rows.clear();
        self.batch_rows.extend(self.batch_ids.iter().map(|&key| truth.index.int_row(key).unwrap_or(NONE)));
        let width = self.shared.columns.len();
        let (ids, values, rows) = (std::mem::take(&mut self.batch_ids), std::mem::take(&mut self.batch_values), std::mem::take(&mut self.batch_rows));
        let masks = self.shared.masks;
        for &t in &rows {
            if t != NONE {
                truth.prefetch(t);
                masks.prefetch(t as usize);
                self.claims.claim(t);
            }
        }
        for ((&key, &t), values) in ids.iter().zip(&rows).zip(values.chunks_exact(width)) {
            if t == NONE {
                self.found.unknown.add(|| key.to_string());
            } else {
                self.tally(t, values);
            }
        }
        (self.batch_ids, self.batch_values, self.batch_rows) = (ids, values, rows);
        self.batch_ids.clear();
        self.batch_values.clear();
    }

    /// Tallies a record's values against the truth of row `t` (its claim is counted apart), in
    /// the whole tally and in each slice's that the row is in.
    #[inline]
    fn tally(&mut self, t: u32, values: &[f64]) {
        let row = t as usize;
        let shared = self.shared;
        if !shared.masks.is_empty() {
            // Before the whole tally: a number's row then holds the residual, not the truth.
            let slice_tallies = &mut self.slice_tallies;
            for_each_bit(shared.masks.of(row), |bit| add(&mut slice_tallies[bit], shared, row, values));
        }
        add(&mut self.tally, shared, row, values);
        if let (ValueKind::Number { probability: false }, TruthValues::Numbers(truth)) = (shared.kind, &shared.truth.values) {
            if !values[0].is_nan() {
                let t = f64::from_bits(truth[row].load(Relaxed));
                truth[row].store((values[0] - t).to_bits(), Relaxed);
            }
        }
    }
}

/// Adds a record's values, against the truth of row `row`, to a tally.
#[inline]
fn add(tally: &mut Tally, shared: &Shared<'_>, row: usize, values: &[f64]) {
    let truth = shared.truth;
    match (tally, &truth.values) {
        (Tally::Confusion(counts), _) => {
            let (k, predicted) = (truth.known.len(), values[0] as usize);
            // A label that is no class (or none) is an offence already: the grade fails.
            if predicted < k {
                counts[truth.class(row) as usize * k + predicted] += 1;
            }
        }
        (Tally::Numbers { terms, negative }, TruthValues::Numbers(truth)) => {
            let (t, p) = (f64::from_bits(truth[row].load(Relaxed)), values[0]);
            if p.is_nan() {
                return; // not a usable number: an offence already
            }
            *negative += u64::from(p < 0.0);
            terms.add(metrics::number_term(shared.metric, t, p));
        }
        (Tally::Loss(sum), _) => {
            let class = truth.class(row);
            let q = match shared.kind {
                ValueKind::PerClass => values[class as usize],
                _ if Some(class) == shared.positive => values[0],
                _ => 1.0 - values[0],
            };
            sum.add(metrics::log_loss_term(q));
        }
        (Tally::Ranked(ranked), _) => ranked.push(Some(truth.class(row)) == shared.positive, values[0]),
        (Tally::PerClassRanked(per_class), _) => {
            let class = truth.class(row) as usize;
            for (c, (ranked, &score)) in per_class.iter_mut().zip(values).enumerate() {
                ranked.push(c == class, score);
            }
        }
        _ => unreachable!("the truth and the output are read for the same metric"),
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
