//! Slices of the hidden rows on the shipped tasks: each slice's rows counted by hand (Python's
//! csv module over the same files, written down below), each slice's metric equal to the metric
//! of the same rows graded as a whole file of their own, and the task check refusing a slice
//! that names a column the hidden data lacks.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use takehome::grading::{self, slices};
use takehome::task::{self, GradingSpec, MetricInput, SliceRule, SliceSpec};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A CSV file's header and records (quotes as RFC 4180 has them), for files we write.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records: Vec<Vec<String>> = Vec::new();
    let (mut field, mut record, mut quoted, mut chars) = (String::new(), Vec::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let header = records.remove(0);
    (header, records)
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) {
    let quote = |cell: &String| if cell.contains([',', '"', '\n']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.clone() };
    let mut text = header.iter().map(quote).collect::<Vec<_>>().join(",") + "\n";
    for row in rows {
        text.push_str(&(row.iter().map(quote).collect::<Vec<_>>().join(",") + "\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// An output with planted mistakes: every third row's label turned to another class, or every
/// fourth row's cells blanked in two columns of a cleaned table.
fn planted_output(spec: &GradingSpec, header: &[String], truth: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut rows = truth.to_vec();
    if spec.metric.input() == MetricInput::Table {
        for (i, row) in rows.iter_mut().enumerate() {
            if i % 4 == 1 {
                row[2] = "wrong".into();
                row[4] = String::new();
            }
        }
    } else {
        let target = header.iter().position(|h| Some(h) == spec.target.as_ref()).unwrap();
        let mut classes: Vec<String> = truth.iter().map(|r| r[target].clone()).collect();
        classes.sort();
        classes.dedup();
        for (i, row) in rows.iter_mut().enumerate() {
            if i % 3 == 0 {
                let at = classes.iter().position(|c| *c == row[target]).unwrap();
                row[target] = classes[(at + 1 + i % (classes.len() - 1)) % classes.len()].clone();
            }
        }
    }
    rows
}

/// Each shipped slice's rows, as counted by hand: `(task, output, slice, rows)`.
const COUNTS: &[(&str, &str, &str, usize)] = &[
    ("diamond-cut", "predictions.csv", "carat < 0.5", 4880),
    ("diamond-cut", "predictions.csv", "0.5 ≤ carat < 1", 4695),
    ("diamond-cut", "predictions.csv", "1 ≤ carat < 2", 3955),
    ("diamond-cut", "predictions.csv", "carat ≥ 2", 410),
    ("diamond-cut", "predictions.csv", "shallow (depth < 58)", 136),
    ("diamond-cut", "predictions.csv", "deep (depth ≥ 64)", 528),
    ("diamond-cut", "predictions.csv", "wide table (≥ 62)", 604),
    ("diamond-cut", "predictions.csv", "included (clarity I1)", 182),
    ("diamond-cut", "predictions.csv", "colour = D", 1714),
    ("diamond-cut", "predictions.csv", "colour = E", 2483),
    ("diamond-cut", "predictions.csv", "colour = F", 2460),
    ("diamond-cut", "predictions.csv", "colour = G", 2988),
    ("diamond-cut", "predictions.csv", "colour = H", 2182),
    ("diamond-cut", "predictions.csv", "colour = I", 1423),
    ("diamond-cut", "predictions.csv", "colour = J", 690),
    ("penguins-cleaning", "penguins_clean.csv", "masses written in kilograms", 18),
    ("penguins-cleaning", "penguins_clean.csv", "bills with a decimal comma", 10),
    ("penguins-cleaning", "penguins_clean.csv", "day-first dates", 20),
    ("penguins-cleaning", "penguins_clean.csv", "sex spelled n/a, ? or null", 5),
    ("penguins-cleaning", "penguins_clean.csv", "a value missing", 7),
    ("penguins-cleaning", "penguins_clean.csv", "island = Biscoe", 83),
    ("penguins-cleaning", "penguins_clean.csv", "island = Dream", 59),
    ("penguins-cleaning", "penguins_clean.csv", "island = Torgersen", 30),
    ("penguins-pipeline", "penguins_clean.csv", "masses written in kilograms", 7),
    ("penguins-pipeline", "penguins_clean.csv", "bills with a decimal comma", 15),
    ("penguins-pipeline", "penguins_clean.csv", "day-first dates", 13),
    ("penguins-pipeline", "penguins_clean.csv", "sex spelled n/a, ? or null", 6),
    ("penguins-pipeline", "penguins_clean.csv", "a value missing", 9),
    ("penguins-pipeline", "penguins_clean.csv", "island = Biscoe", 54),
    ("penguins-pipeline", "penguins_clean.csv", "island = Dream", 46),
    ("penguins-pipeline", "penguins_clean.csv", "island = Torgersen", 14),
    ("penguins-pipeline", "predictions.csv", "Adelie", 46),
    ("penguins-pipeline", "predictions.csv", "Chinstrap", 26),
    ("penguins-pipeline", "predictions.csv", "Gentoo", 38),
    ("penguins-pipeline", "predictions.csv", "island = Biscoe", 52),
    ("penguins-pipeline", "predictions.csv", "island = Dream", 39),
    ("penguins-pipeline", "predictions.csv", "island = Torgersen", 19),
    ("penguins-pipeline", "predictions.csv", "masses written in kilograms", 9),
    ("penguins-pipeline", "predictions.csv", "bills with a decimal comma", 13),
];

#[test]
fn shipped_slices_hold_the_rows_counted_by_hand_and_score_as_their_rows_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen: BTreeMap<(String, String), Vec<(String, usize)>> = BTreeMap::new();
    for task_id in ["diamond-cut", "penguins-cleaning", "penguins-pipeline"] {
        let spec = task::load(&root().join("tasks").join(task_id)).unwrap();
        assert!(grading::task_data::check(&spec).is_empty(), "{task_id}: {:?}", grading::task_data::check(&spec));
        for output in &spec.outputs {
            assert!(!output.slices.is_empty(), "{task_id} {} declares no slices", output.output);
            let truth_path = spec.truth_path(output);
            let (header, truth) = read_csv(&truth_path);
            let planted = planted_output(output, &header, &truth);
            let output_path = dir.path().join(format!("{task_id}-{}", output.output));
            write_csv(&output_path, &header_for(output, &header), &project(output, &header, &planted));
            let members = slices::members(output, &spec.dataset_dir()).unwrap();
            let graded = grading::grade_output_sliced(output, &output_path, &truth_path, &members).unwrap();
            assert!(graded.problem.is_none(), "{task_id}: {:?}", graded.problem);
            assert_eq!(graded.slices.len(), members.len());
            let id_at = header.iter().position(|h| Some(h) == output.id.as_ref()).unwrap();
            for (slice, score) in members.iter().zip(&graded.slices) {
                assert_eq!(slice.name, score.name);
                seen.entry((task_id.to_string(), output.output.clone())).or_default().push((score.name.clone(), score.rows));
                // The same rows, graded as files of their own.
                let ids: HashSet<String> = slice.ids.texts().map(|id| id.into_owned()).collect();
                let keep = |rows: &[Vec<String>]| -> Vec<Vec<String>> { rows.iter().filter(|r| ids.contains(r[id_at].trim())).cloned().collect() };
                let (truth_rows, output_rows) = (keep(&truth), keep(&planted));
                assert_eq!(truth_rows.len(), score.rows, "{task_id} {}: rows", score.name);
                let (sub_truth, sub_output) = (dir.path().join("sub-truth.csv"), dir.path().join("sub-output.csv"));
                write_csv(&sub_truth, &header, &truth_rows);
                write_csv(&sub_output, &header_for(output, &header), &project(output, &header, &output_rows));
                // The whole truth's classes: a slice's rows may lack one that a prediction names.
                let mut alone_spec = output.clone();
                if let Some(target) = header.iter().position(|h| Some(h) == output.target.as_ref()) {
                    let mut classes: Vec<String> = truth.iter().map(|r| r[target].clone()).collect();
                    classes.sort();
                    classes.dedup();
                    alone_spec.classes.get_or_insert(classes);
                }
                let alone = grading::grade_output(&alone_spec, &sub_output, &sub_truth).unwrap();
                let (a, b) = (alone.value.unwrap_or_else(|| panic!("{task_id} {}: {:?}", score.name, alone.problem)), score.value.unwrap());
                assert!((a - b).abs() < 1e-12, "{task_id} {}: {b} on the slice, {a} on its rows alone", score.name);
            }
            // The mistakes show in the slices: no slice is perfect where every third (or fourth)
            // row is wrong, unless it is tiny.
            assert!(graded.slices.iter().any(|s| s.value.unwrap() < graded.value.unwrap()), "{task_id}: {:?}", graded.slices);
        }
    }
    let mut want: BTreeMap<(String, String), Vec<(String, usize)>> = BTreeMap::new();
    for (task_id, output, name, rows) in COUNTS {
        want.entry((task_id.to_string(), output.to_string())).or_default().push((name.to_string(), *rows));
    }
    assert_eq!(seen, want);
}

/// The columns an output holds: the truth's for a cleaned table, the id and target for predictions.
fn header_for(spec: &GradingSpec, header: &[String]) -> Vec<String> {
    match spec.metric.input() {
        MetricInput::Table => header.to_vec(),
        _ => vec![spec.id.clone().unwrap(), spec.target.clone().unwrap()],
    }
}

fn project(spec: &GradingSpec, header: &[String], rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let wanted = header_for(spec, header);
    let at: Vec<usize> = wanted.iter().map(|w| header.iter().position(|h| h == w).unwrap()).collect();
    rows.iter().map(|r| at.iter().map(|&i| r[i].clone()).collect()).collect()
}

#[test]
fn a_slice_naming_a_column_the_hidden_data_lacks_is_refused() {
    let mut spec = task::load(&root().join("tasks/diamond-cut")).unwrap();
    spec.outputs[0].slices.push(SliceSpec { name: None, from: Some("hidden/features/test.csv".into()), rule: SliceRule::Each { column: "colour".into() } });
    spec.outputs[0].slices.push(SliceSpec { name: Some("nobody".into()), from: None, rule: SliceRule::Ids(vec!["no-such-id".into()]) });
    spec.outputs[0].slices.push(SliceSpec {
        name: None,
        from: Some("hidden/features/test.csv".into()),
        rule: SliceRule::Range { column: "carat".into(), min: Some(100.0), max: None },
    });
    let problems = grading::task_data::check(&spec);
    let text: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect();
    let n = spec.outputs[0].slices.len();
    assert!(
        text.iter().any(|t| t.starts_with(&format!("grading.slices[{}]: ", n - 3)) && t.contains("hidden/features/test.csv has no column \"colour\"")),
        "{text:#?}"
    );
    assert!(text.iter().any(|t| t.starts_with(&format!("grading.slices[{}].ids: ", n - 2)) && t.contains("1 id not in")), "{text:#?}");
    assert!(text.iter().any(|t| t.starts_with(&format!("grading.slices[{}]: ", n - 1)) && t.contains("takes no row")), "{text:#?}");

    // And in a task file, a rule that is no rule, or one without its column, says which.
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(root().join("tasks/diamond-cut/task.yaml")).unwrap().replace(
        "    - { name: colour, from: hidden/features/test.csv, column: color, each: true }",
        "    - { name: colour, from: hidden/features/test.csv, each: true }\n    - { from: hidden/features/test.csv, column: carat, bins: [2, 1] }\n    - { from: ../secret.csv, column: carat, min: 1 }\n    - { column: carat, min: 1, values: [2] }",
    );
    let problems = task::parse(&yaml, dir.path()).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect();
    for wanted in [
        "grading.slices[5].column: missing (the column `each` reads)",
        "grading.slices[6].bins: expected edges in rising order",
        "grading.slices[7].from: \"../secret.csv\" must be a relative path under hidden/",
        "grading.slices[8]: expected one rule",
    ] {
        assert!(text.iter().any(|t| t.starts_with(wanted)), "{wanted}\n{text:#?}");
    }
}
