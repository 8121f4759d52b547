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
/// Sorts the positives' and the negatives' scores apart and counts, for each positive, the
/// negatives below it: no index array, no ranks.
pub fn roc_auc_binary(positive: &[bool], scores: &[f64]) -> f64 {
    let pos: Vec<u64> = positive.iter().zip(scores).filter(|(p, _)| **p).map(|(_, s)| order_key(*s)).collect();
    let neg: Vec<u64> = positive.iter().zip(scores).filter(|(p, _)| !**p).map(|(_, s)| order_key(*s)).collect();
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

/// A key whose unsigned order is the numbers' order (`f64::total_cmp`'s, with -0 taken as 0 so
/// that the two zeros tie, as they do for scikit-learn): integer comparisons sort faster than a
/// float comparator.
fn order_key(value: f64) -> u64 {
    let bits = (value + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Sorts the two key lists, each on a thread of its own when they are large.
fn sort_both(mut a: Vec<u64>, mut b: Vec<u64>) -> (Vec<u64>, Vec<u64>) {
    if a.len() + b.len() < 1 << 16 {
        a.sort_unstable();
        b.sort_unstable();
        return (a, b);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| a.sort_unstable());
        b.sort_unstable();
    });
    (a, b)
}

const EPS: f64 = f64::EPSILON;

/// Binary log loss of the positive class's probability.
pub fn log_loss_binary(positive: &[bool], probability: &[f64]) -> f64 {
    let total: f64 = positive
        .iter()
        .zip(probability)
        .map(|(&y, &p)| {
            let q = if y { p } else { 1.0 - p };
            -q.clamp(EPS, 1.0 - EPS).ln()
        })
        .sum();
    total / positive.len() as f64
}

/// One-vs-rest macro ROC AUC and multiclass log loss from one probability column per class.
pub fn multiclass_score_metric(metric: Metric, y_true: &[u32], columns: &[Vec<f64>]) -> f64 {
    match metric {
        Metric::RocAuc => {
            let aucs: Vec<f64> = (0..columns.len())
                .map(|class| {
                    let positive: Vec<bool> = y_true.iter().map(|&y| y as usize == class).collect();
                    roc_auc_binary(&positive, &columns[class])
                })
                .collect();
            aucs.iter().sum::<f64>() / aucs.len() as f64
        }
        Metric::LogLoss => {
            let total: f64 = y_true.iter().enumerate().map(|(row, &y)| -columns[y as usize][row].clamp(EPS, 1.0 - EPS).ln()).sum();
            total / y_true.len() as f64
        }
        other => panic!("{} is not a probability metric", other.name()),
    }
}

/// A number metric over aligned true and predicted values (equal length, at least one row).
pub fn number_metric(metric: Metric, y_true: &[f64], y_pred: &[f64]) -> f64 {
    let n = y_true.len() as f64;
    let mean = |f: &dyn Fn(f64, f64) -> f64| y_true.iter().zip(y_pred).map(|(&t, &p)| f(t, p)).sum::<f64>() / n;
    match metric {
        Metric::Rmse => mean(&|t, p| (t - p).powi(2)).sqrt(),
        Metric::Mae => mean(&|t, p| (t - p).abs()),
        Metric::Mape => mean(&|t, p| (t - p).abs() / t.abs().max(EPS)),
        Metric::Rmsle => mean(&|t, p| (t.ln_1p() - p.ln_1p()).powi(2)).sqrt(),
        Metric::R2 => {
            let truth_mean = y_true.iter().sum::<f64>() / n;
            let residual: f64 = y_true.iter().zip(y_pred).map(|(t, p)| (t - p).powi(2)).sum();
            let total: f64 = y_true.iter().map(|t| (t - truth_mean).powi(2)).sum();
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
        other => panic!("{} is not a number metric", other.name()),
    }
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
    fn ties_count_half() {
        assert_eq!(roc_auc_binary(&[true, false, true, false], &[0.9, 0.1, 0.5, 0.5]), 0.875);
        assert_eq!(roc_auc_binary(&[true, false], &[0.5, 0.5]), 0.5);
        assert!(roc_auc_binary(&[true, true], &[0.5, 0.4]).is_nan());
    }
}
