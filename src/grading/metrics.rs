//! Metric definitions on aligned slices, matching scikit-learn's (labels are the sorted union of
//! the true and predicted labels; a class with no predictions has precision 0, as with
//! `zero_division=0`). Pure functions.

use std::collections::HashMap;

use crate::task::Metric;

/// Per-class counts of a classification.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassCounts {
    pub label: String,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

impl ClassCounts {
    pub fn support(&self) -> u64 {
        self.true_positives + self.false_negatives
    }
    pub fn f1(&self) -> f64 {
        let denominator = 2 * self.true_positives + self.false_positives + self.false_negatives;
        if denominator == 0 {
            0.0
        } else {
            2.0 * self.true_positives as f64 / denominator as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.support() == 0 {
            0.0
        } else {
            self.true_positives as f64 / self.support() as f64
        }
    }
}

/// Counts per class, classes sorted by label.
pub fn class_counts(y_true: &[&str], y_pred: &[&str]) -> Vec<ClassCounts> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for label in y_true.iter().chain(y_pred) {
        let next = index.len();
        index.entry(label).or_insert(next);
    }
    let mut counts: Vec<ClassCounts> = vec![
        ClassCounts { label: String::new(), true_positives: 0, false_positives: 0, false_negatives: 0 };
        index.len()
    ];
    for (label, &i) in &index {
        counts[i].label = label.to_string();
    }
    for (t, p) in y_true.iter().zip(y_pred) {
        let (ti, pi) = (index[t], index[p]);
        if ti == pi {
            counts[ti].true_positives += 1;
        } else {
            counts[ti].false_negatives += 1;
            counts[pi].false_positives += 1;
        }
    }
    counts.sort_by(|a, b| a.label.cmp(&b.label));
    counts
}

/// A label metric over aligned true and predicted labels (equal length, at least one row).
pub fn label_metric(metric: Metric, y_true: &[&str], y_pred: &[&str]) -> f64 {
    let n = y_true.len() as f64;
    let counts = class_counts(y_true, y_pred);
    match metric {
        Metric::Accuracy => y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count() as f64 / n,
        Metric::BalancedAccuracy => {
            let present: Vec<&ClassCounts> = counts.iter().filter(|c| c.support() > 0).collect();
            present.iter().map(|c| c.recall()).sum::<f64>() / present.len() as f64
        }
        Metric::F1Macro => counts.iter().map(ClassCounts::f1).sum::<f64>() / counts.len() as f64,
        Metric::F1Weighted => {
            let total: u64 = counts.iter().map(ClassCounts::support).sum();
            counts.iter().map(|c| c.f1() * c.support() as f64).sum::<f64>() / total as f64
        }
        other => panic!("{} is not a label metric", other.name()),
    }
}

/// A number metric over aligned true and predicted values (equal length, at least one row).
pub fn number_metric(metric: Metric, y_true: &[f64], y_pred: &[f64]) -> f64 {
    let n = y_true.len() as f64;
    match metric {
        Metric::Rmse => (y_true.iter().zip(y_pred).map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n).sqrt(),
        Metric::Mae => y_true.iter().zip(y_pred).map(|(t, p)| (t - p).abs()).sum::<f64>() / n,
        other => panic!("{} is not a number metric", other.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from scikit-learn 1.6.1:
    //   y_true = ["a","a","b","b","c","c","c"]; y_pred = ["a","b","b","b","c","a","d"]
    //   accuracy_score -> 0.5714285714285714
    //   balanced_accuracy_score -> 0.611111111111111 (recall over a, b, c; d has no support)
    //   f1_score(average="macro") -> 0.45
    //   f1_score(average="weighted") -> 0.5857142857142856
    const Y_TRUE: [&str; 7] = ["a", "a", "b", "b", "c", "c", "c"];
    const Y_PRED: [&str; 7] = ["a", "b", "b", "b", "c", "a", "d"];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn label_metrics_match_scikit_learn() {
        assert!(close(label_metric(Metric::Accuracy, &Y_TRUE, &Y_PRED), 0.5714285714285714));
        assert!(close(label_metric(Metric::BalancedAccuracy, &Y_TRUE, &Y_PRED), 0.611111111111111));
        assert!(close(label_metric(Metric::F1Macro, &Y_TRUE, &Y_PRED), 0.45));
        assert!(close(label_metric(Metric::F1Weighted, &Y_TRUE, &Y_PRED), 0.5857142857142856));
    }

    #[test]
    fn number_metrics() {
        let t = [1.0, 2.0, 3.0, 4.0];
        let p = [1.5, 2.0, 2.0, 5.0];
        assert!(close(number_metric(Metric::Rmse, &t, &p), (2.25f64 / 4.0).sqrt()));
        assert!(close(number_metric(Metric::Mae, &t, &p), 0.625));
    }
}
