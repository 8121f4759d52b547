//! Metrics equal scikit-learn's, and malformed outputs become clear `bad_format` problems.

use std::path::Path;

use serde_json::Value;
use takehome::grading::metrics::{self, Classes, Confusion};
use takehome::grading::{grade_output, ProblemKind};
use takehome::task::{GradingSpec, Metric, Scale};

use super::common::repo_root;

fn close(got: f64, expected: f64) -> bool {
    (got - expected).abs() <= 1e-9 * expected.abs().max(1e-300) || (got - expected).abs() < 1e-15
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn floats(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// Every case of tests/fixtures/metrics/cases.json (made by make_cases.py with scikit-learn 1.6.1).
#[test]
fn metrics_equal_scikit_learn_within_1e_9() {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/metrics/cases.json")).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    let cases = document["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for (number, case) in cases.iter().enumerate() {
        let metric = Metric::from_name(case["metric"].as_str().unwrap()).expect("a known metric");
        let expected = case["expected"].as_f64().unwrap();
        let positive = case["positive"].as_str();
        let got = if let Some(classes) = case.get("classes") {
            let names = strings(classes);
            let y_true: Vec<u32> = strings(&case["y_true"]).iter().map(|y| names.iter().position(|n| n == y).unwrap() as u32).collect();
            let rows: Vec<Vec<f64>> = case["proba"].as_array().unwrap().iter().map(floats).collect();
            let columns: Vec<Vec<f64>> = (0..names.len()).map(|c| rows.iter().map(|r| r[c]).collect()).collect();
            metrics::multiclass_score_metric(metric, &y_true, &columns)
        } else if let Some(scores) = case.get("scores") {
            let positive = positive.unwrap();
            let y: Vec<bool> = strings(&case["y_true"]).iter().map(|y| y == positive).collect();
            let scores = floats(scores);
            match metric {
                Metric::RocAuc => metrics::roc_auc_binary(&y, &scores),
                _ => metrics::log_loss_binary(&y, &scores),
            }
        } else if case["y_true"][0].is_number() {
            metrics::number_metric(metric, &floats(&case["y_true"]), &floats(&case["y_pred"]))
        } else {
            let (t, p) = (strings(&case["y_true"]), strings(&case["y_pred"]));
            let classes = Classes::from_labels(t.iter().chain(&p).map(String::as_str));
            let index = classes.index();
            let y_true: Vec<u32> = t.iter().map(|y| index[y.as_str()]).collect();
            let y_pred: Vec<u32> = p.iter().map(|y| index[y.as_str()]).collect();
            let confusion = Confusion::new(classes.len(), &y_true, &y_pred);
            let positive = positive.and_then(|p| classes.names.iter().position(|n| n == p));
            metrics::label_metric(metric, &confusion, positive)
        };
        if !close(got, expected) {
            failures.push(format!("case {number} ({}): takehome {got:.17} scikit-learn {expected:.17}", metric.name()));
        }
    }
    assert!(cases.len() > 500, "only {} cases", cases.len());
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn spec(metric: Metric, positive: Option<&str>) -> GradingSpec {
    GradingSpec {
        output: "predictions.csv".into(),
        truth: "hidden/labels.csv".into(),
        id: Some("id".into()),
        target: Some("label".into()),
        positive: positive.map(String::from),
        classes: None,
        columns: Vec::new(),
        metric,
        scale: Scale { zero_at: 0.0, full_at: 1.0 },
        weight: 1.0,
        tolerance: 1e-6,
        missing: GradingSpec::default_missing(),
        slices: Vec::new(),
    }
}

enum Expect {
    Value(f64),
    Problem(ProblemKind, &'static [&'static str]),
}

fn check(truth: &str, output: &str, metric: Metric, positive: Option<&str>, expect: Expect) {
    let dir = repo_root().join("tests/fixtures/outputs");
    let accuracy = grade_output(&spec(metric, positive), &dir.join(output), &dir.join(truth)).unwrap();
    match expect {
        Expect::Value(value) => {
            assert!(accuracy.problem.is_none(), "{output}: {:?}", accuracy.problem);
            assert!(close(accuracy.value.unwrap(), value), "{output}: {:?} != {value}", accuracy.value);
        }
        Expect::Problem(kind, needles) => {
            let problem = accuracy.problem.unwrap_or_else(|| panic!("{output}: expected a problem, got {:?}", accuracy.value));
            assert_eq!(problem.kind, kind, "{output}: {}", problem.message);
            for needle in needles {
                assert!(problem.message.contains(needle), "{output}: {:?} lacks {needle:?}", problem.message);
            }
        }
    }
}

#[test]
fn outputs_are_checked_before_scoring() {
    use Expect::*;
    use ProblemKind::*;
    let labels = "labels.csv";
    check(labels, "good_shuffled.csv", Metric::Accuracy, None, Value(0.8333333333333334));
    check(labels, "bom_crlf_quoted.csv", Metric::Accuracy, None, Value(1.0));
    check(
        labels,
        "missing_column.csv",
        Metric::Accuracy,
        None,
        Problem(BadFormat, &["1 missing columns (\"label\")", "1 unexpected columns (\"prediction\")"]),
    );
    check(labels, "extra_column.csv", Metric::Accuracy, None, Problem(BadFormat, &["unexpected columns (\"confidence\")"]));
    check(labels, "duplicate_ids.csv", Metric::Accuracy, None, Problem(BadFormat, &["2 duplicate ids (\"1\", \"6\")"]));
    check(
        labels,
        "unknown_and_missing_ids.csv",
        Metric::Accuracy,
        None,
        Problem(BadFormat, &["2 unknown ids (\"40\", \"50\")", "3 missing ids (\"4\", \"5\", \"6\")"]),
    );
    check(
        labels,
        "stranger_labels.csv",
        Metric::Accuracy,
        None,
        Problem(BadFormat, &["1 empty predictions (\"6\")", "labels that are not classes", "dog (id 3)", "the classes are a, b, c"]),
    );
    check(labels, "empty.csv", Metric::Accuracy, None, Problem(BadFormat, &["predictions.csv is empty"]));
    check(labels, "header_only.csv", Metric::Accuracy, None, Problem(BadFormat, &["6 missing ids"]));
    check(labels, "not_utf8.csv", Metric::Accuracy, None, Problem(BadFormat, &["UTF-8"]));
    check(labels, "garbage.csv", Metric::Accuracy, None, Problem(BadFormat, &["predictions.csv"]));
    check(labels, "nope.csv", Metric::Accuracy, None, Problem(MissingOutput, &["no predictions.csv"]));

    check("values.csv", "numbers_good.csv", Metric::Rmse, None, Value(0.5));
    check(
        "values.csv",
        "numbers_nan_inf_text.csv",
        Metric::Rmse,
        None,
        Problem(BadFormat, &["not numbers", "four (id 4)", "empty values", "NaN or infinite values"]),
    );

    check("binary.csv", "probability_good.csv", Metric::RocAuc, Some("yes"), Value(0.888888888888889));
    check("binary.csv", "probability_good.csv", Metric::LogLoss, Some("yes"), Value(0.414931599615397));
    check("binary.csv", "probability_out_of_range.csv", Metric::RocAuc, Some("yes"), Problem(BadFormat, &["2 values in \"label\" outside [0, 1]"]));
    check(labels, "per_class_good.csv", Metric::LogLoss, None, Value(0.31560102759768077));
    check(labels, "per_class_good.csv", Metric::RocAuc, None, Value(1.0));
    check(labels, "per_class_bad_sum.csv", Metric::RocAuc, None, Problem(BadFormat, &["1 rows whose probabilities do not sum to 1", "3 (sum 1.500000)"]));
}

#[test]
fn takehome_score_prints_the_metric_as_json() {
    let dir = repo_root().join("tests/fixtures/outputs");
    let output = std::process::Command::new(super::common::takehome_binary())
        .args(["score", "--metric", "accuracy", "--truth"])
        .arg(dir.join("labels.csv"))
        .arg("--predictions")
        .arg(dir.join("good_shuffled.csv"))
        .args(["--target", "label"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["metric"], "accuracy");
    assert!(close(json["value"].as_f64().unwrap(), 0.8333333333333334));
    let bad = std::process::Command::new(super::common::takehome_binary())
        .args(["score", "--metric", "accuracy", "--truth"])
        .arg(dir.join("labels.csv"))
        .arg("--predictions")
        .arg(dir.join("duplicate_ids.csv"))
        .args(["--target", "label"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("duplicate ids"));
    assert!(Path::new(&dir).exists());
}

fn cleaning_spec(key: Option<&str>, columns: Vec<(String, takehome::task::CellCompare)>) -> GradingSpec {
    GradingSpec {
        output: "clean.csv".into(),
        truth: "hidden/clean.csv".into(),
        id: key.map(String::from),
        target: None,
        positive: None,
        classes: None,
        columns,
        metric: Metric::CellAccuracy,
        scale: Scale { zero_at: 0.0, full_at: 1.0 },
        weight: 1.0,
        tolerance: 1e-6,
        missing: GradingSpec::default_missing(),
        slices: Vec::new(),
    }
}

#[test]
fn cleaning_compares_cells_by_key_with_the_declared_rules() {
    use takehome::task::CellCompare;
    let dir = repo_root().join("tests/fixtures/cleaning");
    // Keyed, default rules: Grace dropped, Ada duplicated, one invented row, "alan " and
    // 1930/05/11 wrong as text.
    let accuracy = grade_output(&cleaning_spec(Some("row_id"), vec![]), &dir.join("keyed.csv"), &dir.join("truth.csv")).unwrap();
    let details = accuracy.cleaning.as_ref().unwrap();
    assert_eq!((details.n_matched_rows, details.n_dropped_rows, details.n_duplicate_rows, details.n_invented_rows), (3, 1, 1, 1));
    // 3 matched rows x 3 columns = 9 cells, 2 wrong (alan's name, Edsger's date) -> 7 right,
    // over (4 truth rows + 2 extra) x 3 columns.
    assert!(close(accuracy.value.unwrap(), 7.0 / 18.0), "{:?}", accuracy.value);
    let name = details.columns.iter().find(|c| c.column == "name").unwrap();
    assert_eq!(name.mismatches[0].got, "alan ");
    // With the task's rules, names ignore case and spaces and dates compare as dates.
    let rules = vec![("name".to_string(), CellCompare::Text { trim: true, case_sensitive: false }), ("born".to_string(), CellCompare::Date)];
    let accuracy = grade_output(&cleaning_spec(Some("row_id"), rules), &dir.join("keyed.csv"), &dir.join("truth.csv")).unwrap();
    assert!(close(accuracy.value.unwrap(), 9.0 / 18.0), "{:?}", accuracy.value);
    // Without a key, whole rows match (column order free; missing equals missing).
    let accuracy = grade_output(&cleaning_spec(None, vec![]), &dir.join("whole_rows.csv"), &dir.join("truth.csv")).unwrap();
    let details = accuracy.cleaning.as_ref().unwrap();
    assert_eq!((details.n_matched_rows, details.n_duplicate_rows, details.n_invented_rows), (4, 1, 0));
    assert!(close(accuracy.value.unwrap(), 16.0 / 20.0), "{:?}", accuracy.value);
    // A table without the key column cannot be matched.
    let accuracy = grade_output(&cleaning_spec(Some("id"), vec![]), &dir.join("whole_rows.csv"), &dir.join("whole_rows.csv"));
    assert!(accuracy.is_err(), "the truth lacks the key: our error, not the candidate's");
}

#[test]
fn parquet_predictions_score_like_csv() {
    use polars::prelude::*;
    let dir = repo_root().join("tests/fixtures/outputs");
    let scratch = tempfile::tempdir().unwrap();
    let parquet = scratch.path().join("predictions.parquet");
    let mut table = CsvReadOptions::default().try_into_reader_with_file_path(Some(dir.join("good_shuffled.csv"))).unwrap().finish().unwrap();
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut table).unwrap();
    let accuracy = grade_output(&spec(Metric::Accuracy, None), &parquet, &dir.join("labels.csv")).unwrap();
    assert!(accuracy.problem.is_none(), "{:?}", accuracy.problem);
    assert!(close(accuracy.value.unwrap(), 0.8333333333333334));
}

/// A fixed stream of pseudo-random numbers (53 bits each).
fn numbers(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state >> 11
    }
}

/// `0..n` in a fixed shuffled order.
fn shuffled(n: usize, next: &mut impl FnMut() -> u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// Large files are read in parts on several threads and matched by id as they stream: dense,
/// sparse and text ids give the value a plain join gives, and every id problem is counted exactly
/// however the file is cut.
#[test]
fn streamed_files_match_by_id_exactly_in_parts() {
    let scratch = tempfile::tempdir().unwrap();
    let n = 600_000usize;
    let mut next = numbers(42);
    let truth_values: Vec<f64> = (0..n).map(|_| (next() % 100_000) as f64 / 100.0).collect();
    let predicted: Vec<f64> = truth_values.iter().map(|v| v + ((next() % 2001) as f64 - 1000.0) / 1000.0).collect();
    // The output in another order: a fixed shuffle.
    let order = shuffled(n, &mut next);
    let expected = (truth_values.iter().zip(&predicted).map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n as f64).sqrt();
    type IdOf = fn(usize) -> String;
    let id_kinds: [(&str, IdOf); 4] = [
        ("dense", |i| (1_000 + i).to_string()),
        ("dense with gaps", |i| (1_000 + i + i / 2).to_string()),
        ("sparse", |i| (i as u64 * 7_919_993_111).to_string()),
        ("text", |i| format!("c-{i:07}")),
    ];
    for (kind, id) in id_kinds {
        let truth = scratch.path().join(format!("{kind}-truth.csv"));
        let mut text = String::from("id,label\n");
        for (i, v) in truth_values.iter().enumerate() {
            text.push_str(&format!("{},{v}\n", id(i)));
        }
        std::fs::write(&truth, &text).unwrap();
        let output = scratch.path().join(format!("{kind}-output.csv"));
        let mut text = String::from("id,label\r\n");
        for &i in &order {
            text.push_str(&format!("{},{}\r\n", id(i), predicted[i]));
        }
        assert!(text.len() > 9 << 20, "large enough to be read in parts");
        std::fs::write(&output, &text).unwrap();
        let accuracy = grade_output(&spec(Metric::Rmse, None), &output, &truth).unwrap();
        assert!(accuracy.problem.is_none(), "{kind}: {:?}", accuracy.problem);
        assert!(close(accuracy.value.unwrap(), expected), "{kind}: {:?} != {expected}", accuracy.value);

        // 500 rows repeated at the start and 1,000 at the end (duplicates on both sides of every
        // cut), the first 500 dropped, 3 ids that are not in the truth.
        let broken = scratch.path().join(format!("{kind}-broken.csv"));
        let mut text = String::from("id,label\n");
        let rows: Vec<usize> = order[500..1000].iter().chain(&order[500..]).chain(&order[n - 1000..]).copied().collect();
        for &i in &rows {
            text.push_str(&format!("{},{}\n", id(i), predicted[i]));
        }
        for stranger in ["nope", "-5", "x y"] {
            text.push_str(&format!("{stranger},1.0\n"));
        }
        std::fs::write(&broken, &text).unwrap();
        let problem = grade_output(&spec(Metric::Rmse, None), &broken, &truth).unwrap().problem.expect("a problem");
        for needle in ["3 unknown ids", "1500 duplicate ids", "500 missing ids"] {
            assert!(problem.message.contains(needle), "{kind}: {:?} lacks {needle:?}", problem.message);
        }
    }
}

/// Classes tallied record by record across the parts of a large file (a confusion matrix, the
/// positives' and negatives' scores) give what the metric gives on the aligned columns.
#[test]
fn streamed_classes_score_as_the_aligned_columns_do() {
    let scratch = tempfile::tempdir().unwrap();
    let n = 1_000_000usize;
    let mut next = numbers(9);
    let classes = ["a", "b", "c"];
    let truth: Vec<usize> = (0..n).map(|_| (next() % 3) as usize).collect();
    let predicted: Vec<usize> = truth.iter().map(|&t| if next() % 10 < 7 { t } else { (next() % 3) as usize }).collect();
    let score: Vec<f64> = truth.iter().map(|&t| ((next() % 1000) as f64 / 1000.0 + if t == 1 { 0.3 } else { 0.0 }).min(1.0)).collect();
    let order = shuffled(n, &mut next);
    let write = |name: &str, rows: &mut dyn Iterator<Item = String>| {
        let path = scratch.path().join(name);
        let mut text = String::from("id,label\n");
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let truth_path = write("truth.csv", &mut (0..n).map(|i| format!("{},{}", 5 + 2 * i, classes[truth[i]])));
    let labels = write("labels.csv", &mut order.iter().map(|&i| format!("{},{}", 5 + 2 * i, classes[predicted[i]])));
    let scores = write("scores.csv", &mut order.iter().map(|&i| format!("{},{}", 5 + 2 * i, score[i])));
    assert!(std::fs::metadata(&labels).unwrap().len() > 8 << 20, "large enough to be read in parts");

    let y_true: Vec<u32> = truth.iter().map(|&t| t as u32).collect();
    let y_pred: Vec<u32> = predicted.iter().map(|&p| p as u32).collect();
    let confusion = Confusion::new(3, &y_true, &y_pred);
    for metric in [Metric::Accuracy, Metric::F1Macro, Metric::CohenKappa] {
        let accuracy = grade_output(&spec(metric, None), &labels, &truth_path).unwrap();
        assert!(accuracy.problem.is_none(), "{:?}", accuracy.problem);
        let expected = metrics::label_metric(metric, &confusion, None);
        assert!(close(accuracy.value.unwrap(), expected), "{}: {:?} != {expected}", metric.name(), accuracy.value);
        assert_eq!(accuracy.confusion.as_ref().unwrap().matrix[1][2], confusion.get(1, 2));
    }
    let is_b: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
    for metric in [Metric::RocAuc, Metric::LogLoss] {
        let accuracy = grade_output(&spec(metric, Some("b")), &scores, &truth_path).unwrap();
        assert!(accuracy.problem.is_none(), "{:?}", accuracy.problem);
        let expected = if metric == Metric::RocAuc { metrics::roc_auc_binary(&is_b, &score) } else { metrics::log_loss_binary(&is_b, &score) };
        assert!(close(accuracy.value.unwrap(), expected), "{}: {:?} != {expected}", metric.name(), accuracy.value);
    }
}

#[test]
fn cleaning_counts_only_the_tasks_spellings_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.csv");
    let output = dir.path().join("clean.csv");
    std::fs::write(&truth, "row_id,sex,mass\n1,NA,3750\n2,male,\n3,female,4200\n4,,3800\n").unwrap();
    // The raw data's own spellings, left as they came: "?", "null", "n/a" are not missing.
    std::fs::write(&output, "row_id,sex,mass\n1,?,3750\n2,male,null\n3,female,4200\n4,n/a,3800\n").unwrap();
    let accuracy = grade_output(&cleaning_spec(Some("row_id"), vec![]), &output, &truth).unwrap();
    assert!(close(accuracy.value.unwrap(), 5.0 / 8.0), "{:?}", accuracy.value);
    let details = accuracy.cleaning.as_ref().unwrap();
    let sex = details.columns.iter().find(|c| c.column == "sex").unwrap();
    let got: Vec<&str> = sex.mismatches.iter().map(|m| m.got.as_str()).collect();
    assert_eq!(got, vec!["?", "n/a"], "the mismatch list shows the unnormalised spellings");
    // A task that lists them as missing counts them so.
    let mut spec = cleaning_spec(Some("row_id"), vec![]);
    spec.missing = ["", "NA", "?", "null", "n/a"].iter().map(|s| s.to_string()).collect();
    assert!(close(grade_output(&spec, &output, &truth).unwrap().value.unwrap(), 1.0));
    // Normalised to the default spellings, every cell is right.
    std::fs::write(&output, "row_id,sex,mass\n1,NA,3750\n2,male,\n3,female,4200\n4,,3800\n").unwrap();
    assert!(close(grade_output(&cleaning_spec(Some("row_id"), vec![]), &output, &truth).unwrap().value.unwrap(), 1.0));
}

#[test]
fn score_grades_a_cleaned_table_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (truth, output) = (dir.path().join("clean.csv"), dir.path().join("mine.csv"));
    std::fs::write(&truth, "row_id,sex,mass\n1,NA,3750\n2,male,3800\n").unwrap();
    std::fs::write(&output, "row_id,sex,mass\n2,male,3800.0\n1,?,3750\n").unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(super::common::takehome_binary())
            .args(["score", "--metric", "cell_accuracy", "--truth"])
            .arg(&truth)
            .arg("--predictions")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let keyed = run(&["--key", "row_id"]);
    assert!(close(keyed["value"].as_f64().unwrap(), 3.0 / 4.0), "{keyed}");
    assert_eq!(keyed["details"]["columns"][0]["mismatches"][0]["got"], "?");
    let lenient = run(&["--key", "row_id", "--missing", "NA", "--missing", "?"]);
    assert!(close(lenient["value"].as_f64().unwrap(), 1.0), "{lenient}");
    let by_id = run(&["--id", "row_id"]);
    assert_eq!(by_id["value"], keyed["value"], "--id names the row key of a table as --key does: {by_id}");
    let task = run(&["--task", super::common::repo_root().join("tasks/penguins-cleaning").to_str().unwrap(), "--key", "row_id"]);
    assert_eq!(task["key"], "row_id");

    // With a task, the metric and the truth are the task's.
    let root = super::common::repo_root();
    let out = std::process::Command::new(super::common::takehome_binary())
        .args(["score", "--task"])
        .arg(root.join("tasks/penguins-cleaning"))
        .arg("--predictions")
        .arg(root.join("datasets/penguins-cleaning/hidden/clean.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let own = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    assert_eq!((own["metric"].as_str(), own["value"].as_f64()), (Some("cell_accuracy"), Some(1.0)), "{own}");
    let out = std::process::Command::new(super::common::takehome_binary()).args(["score", "--predictions"]).arg(&output).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metric"), "{}", String::from_utf8_lossy(&out.stderr));
}
