//! Metric definitions, the same as scikit-learn 1.6's (checked case by case in
//! `tests/it/metrics.rs` against values it computed, within 1e-9 relative):
//! - classes are the sorted union of true and predicted labels (numbers sort as numbers);
//! - `zero_division=0`: a class with no predictions has precision 0, with no support recall 0;
//! - balanced accuracy averages recall over the classes that occur in the truth;
//! - ROC AUC counts ties as half (the trapezoid rule); multiclass is one-vs-rest, macro;
//! - log loss clips probabilities to [eps, 1 - eps] (eps = 2.22e-16) and does not renormalise;
//! - r2 of a constant truth is 1 for a perfect prediction, else 0; mape divides by max(|y|, eps).
//!
//! Pure functions over aligned slices; no I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::atomics::{atomic, plain, zeroed};

use crate::task::Metric;

/// The class labels of a classification, in scikit-learn's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    pub names: Vec<String>,
}

impl Classes {
    /// The sorted distinct labels; numerically when every label is a number.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Classes {
        let mut names: Vec<String> = Vec::new();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for label in labels {
            if seen.insert(label, ()).is_none() {
                names.push(label.to_string());
            }
        }
        sort_labels(&mut names);
        Classes { names }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn index(&self) -> HashMap<&str, u32> {
        self.names.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect()
    }
}

/// Sorts labels as numpy's `unique` would: as numbers when all are numbers, else as text.
pub fn sort_labels(names: &mut [String]) {
    let numbers: Option<Vec<f64>> = names.iter().map(|n| n.trim().parse::<f64>().ok().filter(|x| x.is_finite())).collect();
    match numbers {
        Some(_) => names.sort_by(|a, b| {
            let (x, y): (f64, f64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            x.total_cmp(&y).then_with(|| a.cmp(b))
        }),
        None => names.sort(),
    }
}

/// A confusion matrix: `counts[truth * k + predicted]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    pub k: usize,
    pub counts: Vec<u64>,
}

impl Confusion {
    pub fn new(k: usize, y_true: &[u32], y_pred: &[u32]) -> Confusion {
        let mut counts = vec![0u64; k * k];
        for (&t, &p) in y_true.iter().zip(y_pred) {
            counts[t as usize * k + p as usize] += 1;
        }
        Confusion { k, counts }
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.k + predicted]
    }

    pub fn n(&self) -> f64 {
        self.counts.iter().sum::<u64>() as f64
    }

    /// Per class: (true positives, true count = support, predicted count).
    fn per_class(&self) -> Vec<(f64, f64, f64)> {
        (0..self.k)
            .map(|i| {
                let tp = self.get(i, i) as f64;
                let t: u64 = (0..self.k).map(|j| self.get(i, j)).sum();
                let p: u64 = (0..self.k).map(|j| self.get(j, i)).sum();
                (tp, t as f64, p as f64)
            })
            .collect()
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

#[derive(Clone, Copy)]
enum Part {
    Precision,
    Recall,
    F1,
}

fn part_of(tp: f64, t: f64, p: f64, part: Part) -> f64 {
    match part {
        Part::Precision => ratio(tp, p),
        Part::Recall => ratio(tp, t),
        Part::F1 => ratio(2.0 * tp, t + p),
    }
}

#[derive(Clone, Copy)]
enum Average {
    Macro,
    Micro,
    Weighted,
}

fn averaged(c: &Confusion, part: Part, average: Average) -> f64 {
    let per_class = c.per_class();
    match average {
        Average::Macro => per_class.iter().map(|&(tp, t, p)| part_of(tp, t, p, part)).sum::<f64>() / per_class.len().max(1) as f64,
        Average::Micro => {
            let (tp, t, p) = per_class.iter().fold((0.0, 0.0, 0.0), |acc, x| (acc.0 + x.0, acc.1 + x.1, acc.2 + x.2));
            part_of(tp, t, p, part)
        }
        Average::Weighted => {
            let support: f64 = per_class.iter().map(|x| x.1).sum();
            ratio(per_class.iter().map(|&(tp, t, p)| part_of(tp, t, p, part) * t).sum::<f64>(), support)
        }
    }
}

/// A metric over a confusion matrix. `positive` is the positive class's index, for the binary
/// precision, recall and F1.
pub fn label_metric(metric: Metric, c: &Confusion, positive: Option<usize>) -> f64 {
    let n = c.n();
    let per_class = c.per_class();
    let binary = |part: Part| match positive {
        Some(i) if i < c.k => part_of(per_class[i].0, per_class[i].1, per_class[i].2, part),
        _ => 0.0,
    };
    match metric {
        Metric::Accuracy => ratio((0..c.k).map(|i| c.get(i, i)).sum::<u64>() as f64, n),
        Metric::BalancedAccuracy => {
            let present: Vec<f64> = per_class.iter().filter(|x| x.1 > 0.0).map(|&(tp, t, _)| tp / t).collect();
            ratio(present.iter().sum(), present.len() as f64)
        }
        Metric::Precision => binary(Part::Precision),
        Metric::Recall => binary(Part::Recall),
        Metric::F1 => binary(Part::F1),
        Metric::PrecisionMacro => averaged(c, Part::Precision, Average::Macro),
        Metric::PrecisionMicro => averaged(c, Part::Precision, Average::Micro),
        Metric::PrecisionWeighted => averaged(c, Part::Precision, Average::Weighted),
        Metric::RecallMacro => averaged(c, Part::Recall, Average::Macro),
        Metric::RecallMicro => averaged(c, Part::Recall, Average::Micro),
        Metric::RecallWeighted => averaged(c, Part::Recall, Average::Weighted),
        Metric::F1Macro => averaged(c, Part::F1, Average::Macro),
        Metric::F1Micro => averaged(c, Part::F1, Average::Micro),
        Metric::F1Weighted => averaged(c, Part::F1, Average::Weighted),
        Metric::Mcc => {
            let correct: f64 = per_class.iter().map(|x| x.0).sum();
            let t_dot_p: f64 = per_class.iter().map(|x| x.1 * x.2).sum();
            let t_dot_t: f64 = per_class.iter().map(|x| x.1 * x.1).sum();
            let p_dot_p: f64 = per_class.iter().map(|x| x.2 * x.2).sum();
            let cov_tp = correct * n - t_dot_p;
            let cov_pp = n * n - p_dot_p;
            let cov_tt = n * n - t_dot_t;
            if cov_pp * cov_tt == 0.0 {
                0.0
            } else {
                cov_tp / (cov_tt * cov_pp).sqrt()
            }
        }
        Metric::CohenKappa | Metric::QuadraticWeightedKappa => {
            let quadratic = metric == Metric::QuadraticWeightedKappa;
            let (mut observed, mut expected) = (0.0, 0.0);
            for i in 0..c.k {
                for j in 0..c.k {
                    let weight = if quadratic {
                        ((i as f64) - (j as f64)).powi(2)
                    } else if i == j {
                        0.0
                    } else {
                        1.0
                    };
                    observed += weight * c.get(i, j) as f64;
                    expected += weight * per_class[i].1 * per_class[j].2 / n;
                }
            }
            1.0 - observed / expected
        }
        other => panic!("{} is not a label metric", other.name()),
    }
}

/// Binary ROC AUC (Mann–Whitney U, ties counting half): NaN when the truth has one class only.
pub fn roc_auc_binary(positive: &[bool], scores: &[f64]) -> f64 {
    let mut ranked = Ranked::default();
    for (&p, &s) in positive.iter().zip(scores) {
        ranked.push(p, s);
    }
    ranked.auc()
}

/// The scores of the positives and of the negatives, kept apart as sortable keys, for ROC AUC:
/// filled record by record (in any order, by several readers whose parts are then appended).
#[derive(Debug, Default)]
pub struct Ranked {
    positive: Vec<u64>,
    negative: Vec<u64>,
}

impl Ranked {
    #[inline]
    pub fn push(&mut self, positive: bool, score: f64) {
        if positive {
            self.positive.push(order_key(score));
        } else {
            self.negative.push(order_key(score));
        }
    }

    /// All of several parts' scores, in one (in the first part's allocation).
    pub fn join(parts: Vec<Ranked>) -> Ranked {
        let (p, n) = parts.iter().fold((0, 0), |(p, n), part| (p + part.positive.len(), n + part.negative.len()));
        let mut parts = parts.into_iter();
        let mut all = parts.next().unwrap_or_default();
        all.positive.reserve_exact(p - all.positive.len());
        all.negative.reserve_exact(n - all.negative.len());
        for part in parts {
            all.positive.extend_from_slice(&part.positive);
            all.negative.extend_from_slice(&part.negative);
        }
        all
    }

    pub fn has_positives(&self) -> bool {
        !self.positive.is_empty()
    }

    /// The area: the positives' and the negatives' keys sorted apart, then, for each positive,
    /// the negatives below it counted (no index array, no ranks). NaN without both classes.
    pub fn auc(self) -> f64 {
        let Ranked { positive: pos, negative: neg } = self;
        if pos.is_empty() || neg.is_empty() {
            return f64::NAN;
        }
        let (pos, neg) = sort_both(pos, neg);
        // For each run of equal positive scores: negatives strictly below, and negatives equal.
        let (mut below, mut area, mut i) = (0usize, 0.0f64, 0usize);
        while i < pos.len() {
            let score = pos[i];
            let mut run = i;
            while run < pos.len() && pos[run] == score {
                run += 1;
            }
            while below < neg.len() && neg[below] < score {
                below += 1;
            }
            let mut equal = below;
            while equal < neg.len() && neg[equal] == score {
                equal += 1;
            }
            area += (run - i) as f64 * (below as f64 + 0.5 * (equal - below) as f64);
            i = run;
        }
        area / (pos.len() as f64 * neg.len() as f64)
    }
}

/// A key whose unsigned order is the numbers' order (`f64::total_cmp`'s, with -0 taken as 0 so
/// that the two zeros tie, as they do for scikit-learn): integer keys sort by radix.
fn order_key(value: f64) -> u64 {
    let bits = (value + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Sorts the two key lists, one after the other (each sort uses every core).
fn sort_both(mut a: Vec<u64>, mut b: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
    radix_sort(&mut a);
    radix_sort(&mut b);
    (a, b)
}

/// Sorts keys by their bits, eleven at a time from the lowest (a stable counting sort per
/// digit): six passes over the keys, fewer where every key has the same digit, instead of the
/// comparisons of a general sort. Each pass is shared among the cores: each counts its own stretch
/// of the keys, and places them after those of the stretches before it. Short lists take the
/// standard sort.
pub fn radix_sort(keys: &mut Vec<u64>) {
    const BITS: usize = 11;
    const BUCKETS: usize = 1 << BITS;
    const PASSES: usize = 64_usize.div_ceil(BITS);
    type Counts = Vec<[usize; BUCKETS]>;
    let n = keys.len();
    if n < 1 << 12 {
        keys.sort_unstable();
        return;
    }
    let threads = if n < 1 << 18 { 1 } else { std::thread::available_parallelism().map_or(1, |t| t.get()).clamp(1, 4) };
    let stretch = n.div_ceil(threads);
    let digit = |key: u64, pass: usize| (key >> (pass * BITS)) as usize & (BUCKETS - 1);
    // Every digit's counts over all the keys, for the passes that change nothing.
    let per_thread: Vec<Counts> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .chunks(stretch)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut counts: Counts = vec![[0usize; BUCKETS]; PASSES];
                    for &key in chunk {
                        for (pass, count) in counts.iter_mut().enumerate() {
                            count[digit(key, pass)] += 1;
                        }
                    }
                    counts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("counting does not panic")).collect()
    });
    let needed: Vec<usize> = (0..PASSES).filter(|&pass| !(0..BUCKETS).any(|b| per_thread.iter().map(|c| c[pass][b]).sum::<usize>() == n)).collect();

    let mut from: Vec<AtomicU64> = atomic(std::mem::take(keys));
    let mut to: Vec<AtomicU64> = zeroed::<u64>(n);
    for &pass in &needed {
        // Each stretch's counts of this digit (the first pass's are known already).
        let counts: Vec<[usize; BUCKETS]> = if pass == needed[0] {
            per_thread.iter().map(|c| c[pass]).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = from
                    .chunks(stretch)
                    .map(|chunk| {
                        scope.spawn(move || {
                            let mut count = [0usize; BUCKETS];
                            for key in chunk {
                                count[digit(key.load(Relaxed), pass)] += 1;
                            }
                            count
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("counting does not panic")).collect()
            })
        };
        // Where each stretch's keys of each bucket begin.
        let mut starts = vec![[0usize; BUCKETS]; counts.len()];
        let mut total = 0;
        for bucket in 0..BUCKETS {
            for (stretch_starts, count) in starts.iter_mut().zip(&counts) {
                stretch_starts[bucket] = total;
                total += count[bucket];
            }
        }
        std::thread::scope(|scope| {
            for (chunk, mut next) in from.chunks(stretch).zip(starts) {
                let to = &to;
                scope.spawn(move || {
                    for key in chunk {
                        let key = key.load(Relaxed);
                        let at = &mut next[digit(key, pass)];
                        to[*at].store(key, Relaxed);
                        *at += 1;
                    }
                });
            }
        });
        std::mem::swap(&mut from, &mut to);
    }
    *keys = plain(from);
}

/// A sum of many terms with Neumaier's compensation: the rounding error of each addition is
/// carried and added back, so that the result does not depend on the order of the terms (to
/// the last bit or so), however the records are split among readers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum {
    total: f64,
    compensation: f64,
}

impl Sum {
    #[inline]
    pub fn add(&mut self, x: f64) {
        let t = self.total + x;
        if self.total.abs() >= x.abs() {
            self.compensation += (self.total - t) + x;
        } else {
            self.compensation += (x - t) + self.total;
        }
        self.total = t;
    }

    pub fn merge(&mut self, other: Sum) {
        self.add(other.total);
        self.compensation += other.compensation;
    }

    pub fn value(&self) -> f64 {
        if self.total.is_finite() {
            self.total + self.compensation
        } else {
            self.total
        }
    }
}

const EPS: f64 = f64::EPSILON;

/// One record's share of the log loss: the probability given to its true class, clipped.
#[inline]
pub fn log_loss_term(probability_of_truth: f64) -> f64 {
    -probability_of_truth.clamp(EPS, 1.0 - EPS).ln()
}

/// Binary log loss of the positive class's probability.
pub fn log_loss_binary(positive: &[bool], probability: &[f64]) -> f64 {
    let mut sum = Sum::default();
    for (&y, &p) in positive.iter().zip(probability) {
        sum.add(log_loss_term(if y { p } else { 1.0 - p }));
    }
    sum.value() / positive.len() as f64
}

/// One-vs-rest macro ROC AUC and multiclass log loss from one probability column per class.
pub fn multiclass_score_metric(metric: Metric, y_true: &[u32], columns: &[Vec<f64>]) -> f64 {
    match metric {
        Metric::RocAuc => {
            let ranked: Vec<Ranked> = (0..columns.len())
                .map(|class| {
                    let mut ranked = Ranked::default();
                    for (&y, &score) in y_true.iter().zip(&columns[class]) {
                        ranked.push(y as usize == class, score);
                    }
                    ranked
                })
                .collect();
            multiclass_auc(ranked)
        }
        Metric::LogLoss => {
            let mut sum = Sum::default();
            for (row, &y) in y_true.iter().enumerate() {
                sum.add(log_loss_term(columns[y as usize][row]));
            }
            sum.value() / y_true.len() as f64
        }
        other => panic!("{} is not a probability metric", other.name()),
    }
}

/// One-vs-rest macro ROC AUC: the mean over the classes that occur in the truth (a class absent
/// from it has no curve).
pub fn multiclass_auc(per_class: Vec<Ranked>) -> f64 {
    let aucs: Vec<f64> = per_class.into_iter().filter(Ranked::has_positives).map(Ranked::auc).collect();
    aucs.iter().sum::<f64>() / aucs.len() as f64
}

/// One record's term of a number metric (its mean is the metric, or the metric's square).
#[inline]
pub fn number_term(metric: Metric, t: f64, p: f64) -> f64 {
    match metric {
        Metric::Rmse | Metric::R2 => (t - p) * (t - p),
        Metric::Mae => (t - p).abs(),
        Metric::Mape => (t - p).abs() / t.abs().max(EPS),
        Metric::Rmsle => (t.ln_1p() - p.ln_1p()).powi(2),
        other => panic!("{} is not a number metric", other.name()),
    }
}

/// A number metric from the sum of its terms over `n` records; r2 also needs the truth's own
/// sum of squares about its mean (`truth_total`).
pub fn number_finish(metric: Metric, terms: Sum, n: usize, truth_total: Option<f64>) -> f64 {
    let mean = terms.value() / n as f64;
    match metric {
        Metric::Rmse | Metric::Rmsle => mean.sqrt(),
        Metric::R2 => {
            let residual = terms.value();
            let total = truth_total.expect("r2 needs the truth's sum of squares");
            if total == 0.0 {
                if residual == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                1.0 - residual / total
            }
        }
        _ => mean,
    }
}

/// The sum of squares of values about their mean (r2's denominator).
pub fn sum_of_squares(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (mut sum, mut n) = (Sum::default(), 0usize);
    for v in values.clone() {
        sum.add(v);
        n += 1;
    }
    let mean = sum.value() / n as f64;
    let mut total = Sum::default();
    for v in values {
        total.add((v - mean) * (v - mean));
    }
    total.value()
}

/// A number metric over aligned true and predicted values (equal length, at least one row).
pub fn number_metric(metric: Metric, y_true: &[f64], y_pred: &[f64]) -> f64 {
    let mut terms = Sum::default();
    for (&t, &p) in y_true.iter().zip(y_pred) {
        terms.add(number_term(metric, t, p));
    }
    let truth_total = (metric == Metric::R2).then(|| sum_of_squares(y_true.iter().copied()));
    number_finish(metric, terms, y_true.len(), truth_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_like_numpy() {
        let classes = Classes::from_labels(["10", "2", "1"]);
        assert_eq!(classes.names, ["1", "2", "10"]);
        let classes = Classes::from_labels(["b", "a", "B"]);
        assert_eq!(classes.names, ["B", "a", "b"]);
    }

    #[test]
    fn keys_sort_in_number_order_with_the_zeros_tied() {
        let mut state = 12345u64;
        let values: Vec<f64> = (0..200_000)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match i % 6 {
                    0 => -((state >> 11) as f64) / 1e6,
                    1 => 0.0,
                    2 => -0.0,
                    3 => f64::INFINITY,
                    _ => ((state >> 20) % 1000) as f64 / 1000.0,
                }
            })
            .collect();
        let mut keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
        keys.sort_unstable();
        let mut expected: Vec<f64> = values.iter().map(|v| v + 0.0).collect();
        expected.sort_by(f64::total_cmp);
        let back: Vec<f64> = keys.iter().map(|k| if k >> 63 == 1 { f64::from_bits(k & !(1 << 63)) } else { f64::from_bits(!k) }).collect();
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(order_key(0.0), order_key(-0.0));
        assert!(order_key(-1.0) < order_key(-0.5) && order_key(0.5) < order_key(1.0) && order_key(1.0) < order_key(f64::INFINITY));
        // The zeros tie in the area too, as scikit-learn counts them.
        assert_eq!(roc_auc_binary(&[true, false], &[0.0, -0.0]), 0.5);
    }

    #[test]
    fn radix_sort_agrees_with_the_standard_sort() {
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            state
        };
        // Random keys; keys sharing their high bits (some passes skipped); few distinct keys.
        let cases: Vec<Vec<u64>> = vec![
            (0..100_000).map(|_| next()).collect(),
            (0..50_000).map(|_| (1 << 63) | (next() >> 40)).collect(),
            (0..20_000).map(|_| order_key((next() % 7) as f64 / 7.0)).collect(),
            (0..1000).map(|_| next()).collect(),
        ];
        for keys in cases {
            let mut expected = keys.clone();
            expected.sort_unstable();
            let mut sorted = keys;
            radix_sort(&mut sorted);
            assert_eq!(sorted, expected);
        }
    }

    #[test]
    fn compensated_sums_do_not_depend_on_the_order() {
        let terms: Vec<f64> = (0..100_000).map(|i| if i % 2 == 0 { 1e16 } else { 1.0 + (i as f64) * 1e-3 }).chain((0..50_000).map(|_| -1e16)).collect();
        let exact: f64 = (0..100_000).filter(|i| i % 2 == 1).map(|i| 1.0 + (i as f64) * 1e-3).sum::<f64>();
        let mut forward = Sum::default();
        terms.iter().for_each(|&x| forward.add(x));
        let (mut a, mut b) = (Sum::default(), Sum::default());
        terms.iter().rev().take(70_000).for_each(|&x| a.add(x));
        terms.iter().rev().skip(70_000).for_each(|&x| b.add(x));
        a.merge(b);
        assert!((forward.value() - exact).abs() <= exact * 1e-12, "{} vs {exact}", forward.value());
        assert!((a.value() - exact).abs() <= exact * 1e-12, "{} vs {exact}", a.value());
        let mut infinite = Sum::default();
        infinite.add(f64::INFINITY);
        infinite.add(1.0);
        assert_eq!(infinite.value(), f64::INFINITY);
    }

    #[test]
    fn ties_count_half() {
        assert_eq!(roc_auc_binary(&[true, false, true, false], &[0.9, 0.1, 0.5, 0.5]), 0.875);
        assert_eq!(roc_auc_binary(&[true, false], &[0.5, 0.5]), 0.5);
        assert!(roc_auc_binary(&[true, true], &[0.5, 0.4]).is_nan());
    }
}
