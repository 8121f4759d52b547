//! What `validate` and `check` read of a task's data, beyond its task file: every column the task
//! names is in the truth (the id or key, the target, the per-column rules), the id or key is in a
//! table the steps read, the target in a public table; `classes` and `positive` match the truth's
//! labels; the truth's ids are unique. Each problem names the task file's field and the data file.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::records::{self, trim, Field, Sink, Stop, Want};
use crate::task::{MetricInput, Problem, SliceRule, TaskKind, TaskSpec, MAX_SLICES, MAX_SLICE_VALUES};

/// Examples listed per problem.
const EXAMPLES: usize = 5;

/// Every problem of the task's data, at once; empty when all holds.
pub fn check(spec: &TaskSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, output) in spec.outputs.iter().enumerate() {
        let prefix = if spec.outputs.len() == 1 { "grading".to_string() } else { format!("grading[{index}]") };
        problems.extend(check_output(spec, output, &prefix));
    }
    problems
}

/// The problems of one graded output's data; fields are named under `prefix`.
fn check_output(spec: &TaskSpec, grading: &crate::task::GradingSpec, prefix: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| problems.push(Problem { field: field.replacen("grading", prefix, 1), message });
    let kind = if grading.metric.input() == MetricInput::Table { TaskKind::DataCleaning } else { TaskKind::ModelTraining };
    let truth = spec.truth_path(grading);
    let shown = shown_path(spec, &truth);
    let names = match records::header(&truth) {
        Ok(names) => names,
        Err(message) => {
            problem("grading.truth", format!("{shown}: {message}"));
            return problems;
        }
    };
    let columns = || names.join(", ");
    let id_field = if kind == TaskKind::DataCleaning { "grading.key" } else { "grading.id" };
    let id = grading.id.as_deref().filter(|id| {
        let present = names.iter().any(|n| n == id);
        if !present {
            problem(id_field, format!("{shown} has no column {id:?} (its columns: {})", columns()));
        }
        present
    });
    let target = grading.target.as_deref().filter(|target| {
        let present = names.iter().any(|n| n == target);
        if !present {
            problem("grading.target", format!("{shown} has no column {target:?} (its columns: {})", columns()));
        }
        present
    });
    for (column, _) in &grading.columns {
        if !names.contains(column) {
            problem(&format!("grading.columns.{column}"), format!("{shown} has no column {column:?} (its columns: {})", columns()));
        }
    }

    // The tables the candidate's steps read, and the public ones.
    let inputs: Vec<PathBuf> = spec.steps.iter().flat_map(|step| step.inputs.iter()).flat_map(|input| tables_under(&spec.dataset_dir().join(input))).collect();
    let public = tables_under(&spec.dataset_dir().join("public"));
    let has_column = |files: &[PathBuf], column: &str| files.iter().any(|file| records::header(file).is_ok_and(|names| names.iter().any(|n| n == column)));
    if let Some(id) = id {
        if !inputs.is_empty() && !has_column(&inputs, id) {
            problem(id_field, format!("no table the steps read has a column {id:?}, so no output can carry it"));
        }
    }
    if let (Some(target), TaskKind::ModelTraining) = (target, kind) {
        if !has_column(&public, target) {
            problem("grading.target", format!("no table under public/ has a column {target:?}, so a candidate has nothing to learn it from"));
        }
    }

    // The truth's rows: ids unique, labels as the task says.
    let labels = kind == TaskKind::ModelTraining && grading.metric.input() != MetricInput::Numbers;
    let Some(id) = id else { return problems };
    let label_column = target.filter(|_| labels);
    let mut wanted = vec![(id, Want::Id)];
    if let Some(target) = label_column {
        wanted.push((target, Want::Label));
    }
    let parts = match records::read(&truth, &wanted, u64::MAX, Collect::default) {
        Ok(parts) => parts,
        Err(message) => {
            problem("grading.truth", format!("{shown}: {message}"));
            return problems;
        }
    };
    let mut ids: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut empty_ids = 0u64;
    for (part, _) in parts {
        ids.extend(part.ids);
        empty_ids += part.empty_ids;
        for (label, n) in part.labels {
            *counts.entry(label).or_default() += n;
        }
    }
    if empty_ids > 0 {
        problem(id_field, format!("{shown}: {} without an id in {id:?}", crate::units::count(empty_ids as usize, "row")));
    }
    // As the grader matches them: as integers when every id is one, else as text.
    let integers: Option<Vec<i64>> = ids.iter().map(|id| records::parse_integer(id)).collect();
    if !grading.slices.is_empty() {
        let known: HashSet<String> = match &integers {
            Some(integers) => integers.iter().map(i64::to_string).collect(),
            None => ids.iter().map(|id| trim(id).to_string()).collect(),
        };
        let normal = |id: &str| match (&integers, records::parse_integer(trim(id))) {
            (Some(_), Some(int)) => int.to_string(),
            _ => trim(id).to_string(),
        };
        check_slices(spec, grading, id, &shown, |id| known.contains(&normal(id)), &mut problem);
    }
    let (n_repeated, repeated) = match integers {
        Some(mut integers) => {
            integers.sort_unstable();
            repeats(&integers)
        }
        None => {
            ids.sort_unstable();
            repeats(&ids)
        }
    };
    if n_repeated > 0 {
        problem(
            id_field,
            format!(
                "{shown}: {} in {id:?} (for example {}); each truth row needs its own id",
                crate::units::count(n_repeated as usize, "repeated id"),
                repeated.join(", ")
            ),
        );
    }

    if let Some(target) = label_column {
        if let Some(empty) = counts.remove("") {
            problem("grading.target", format!("{shown}: {} without a label in {target:?}", crate::units::count(empty as usize, "row")));
        }
        let truth_labels: Vec<&String> = counts.keys().collect();
        if let Some(classes) = &grading.classes {
            for label in &truth_labels {
                if !classes.contains(label) {
                    let hint = classes
                        .iter()
                        .find(|c| same_number(c, label))
                        .map(|c| {
                            format!("; classes list {c:?}, which is the same number written differently: labels compare as text, write it as the truth does")
                        })
                        .unwrap_or_default();
                    problem(
                        "grading.classes",
                        format!("{shown}: the label {label:?} ({}) is not among the classes{hint}", crate::units::count(counts[*label] as usize, "row")),
                    );
                }
            }
            for class in classes {
                if !counts.contains_key(class) && !truth_labels.iter().any(|l| same_number(l, class)) {
                    problem("grading.classes", format!("{class:?} never occurs in {shown} (its labels: {})", quoted_all(&truth_labels)));
                }
            }
        }
        if let Some(positive) = &grading.positive {
            if !counts.contains_key(positive) {
                problem("grading.positive", format!("{positive:?} never occurs in {shown} (its labels: {})", quoted_all(&truth_labels)));
            }
        }
        if counts.len() < 2 {
            problem("grading.target", format!("{shown}: {target:?} holds {} label(s); a classification needs at least two", counts.len()));
        }
    }
    problems
}

/// The output's slices: each rule's file and columns readable, each slice holding rows of the
/// truth, an `each` column with few enough values, and no more slices than a report shows.
fn check_slices(
    spec: &TaskSpec,
    grading: &crate::task::GradingSpec,
    id: &str,
    shown: &str,
    in_truth: impl Fn(&str) -> bool,
    problem: &mut impl FnMut(&str, String),
) {
    let mut total = 0;
    for (index, rule) in grading.slices.iter().enumerate() {
        let field = format!("grading.slices[{index}]");
        let made = match super::slices::of_rule(rule, grading, &spec.dataset_dir(), id) {
            Ok(made) => made,
            Err(message) => {
                problem(&field, message);
                continue;
            }
        };
        if let SliceRule::Each { column } = &rule.rule {
            if made.len() > MAX_SLICE_VALUES {
                problem(
                    &field,
                    format!("{:?} has {} values; one slice each makes too many (at most {MAX_SLICE_VALUES}): use values or bins", column, made.len()),
                );
            }
        }
        if let SliceRule::Ids(ids) = &rule.rule {
            let strangers: Vec<&String> = ids.iter().filter(|id| !in_truth(id)).collect();
            if !strangers.is_empty() {
                let examples: Vec<String> = strangers.iter().take(EXAMPLES).map(|id| format!("{id:?}")).collect();
                problem(&format!("{field}.ids"), format!("{} not in {shown} ({})", crate::units::count(strangers.len(), "id"), examples.join(", ")));
            }
        }
        for slice in &made {
            if !slice.ids.texts().any(|id| in_truth(&id)) {
                problem(&field, format!("the slice {:?} takes no row of {shown}", slice.name));
            }
        }
        total += made.len().min(if matches!(rule.rule, SliceRule::Each { .. }) { MAX_SLICE_VALUES } else { usize::MAX });
    }
    if total > MAX_SLICES {
        problem("grading.slices", format!("{total} slices; a report shows at most {MAX_SLICES} per output"));
    }
}

/// Renders problems as `validate` prints them: `FILE: FIELD: MESSAGE`, one a line.
pub fn render(spec: &TaskSpec, problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("{}: {}: {}", spec.file().display(), p.field, p.message)).collect::<Vec<_>>().join("\n")
}

/// The truth's ids and label counts, one part of the file.
#[derive(Default)]
struct Collect {
    ids: Vec<String>,
    empty_ids: u64,
    labels: BTreeMap<String, u64>,
}

impl Sink for Collect {
    fn record(&mut self, _row: u64, fields: &[Field<'_>]) -> Result<(), Stop> {
        match fields[0] {
            Field::Text(text) if !trim(text).is_empty() => self.ids.push(trim(text).to_string()),
            Field::Int(id) => self.ids.push(id.to_string()),
            Field::Float(x) => self.ids.push(x.to_string()),
            _ => self.empty_ids += 1,
        }
        if let Some(label) = fields.get(1) {
            let label = match *label {
                Field::Null => String::new(),
                Field::Text(text) => text.to_string(),
                Field::Int(i) => i.to_string(),
                Field::Float(x) => x.to_string(),
            };
            *self.labels.entry(label).or_default() += 1;
        }
        Ok(())
    }
}

/// How many values of a sorted list repeat an earlier one, and the first few of them (quoted).
fn repeats<T: PartialEq + std::fmt::Display>(sorted: &[T]) -> (u64, Vec<String>) {
    let (mut count, mut examples) = (0u64, Vec::new());
    for (i, pair) in sorted.windows(2).enumerate() {
        if pair[0] == pair[1] {
            count += 1;
            let first_of_run = i == 0 || sorted[i - 1] != pair[0];
            if first_of_run && examples.len() < EXAMPLES {
                examples.push(format!("\"{}\"", pair[0]));
            }
        }
    }
    (count, examples)
}

fn same_number(a: &str, b: &str) -> bool {
    matches!((a.trim().parse::<f64>(), b.trim().parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

/// The CSV and Parquet files at `path` (a file, or a folder searched to any depth), sorted.
fn tables_under(path: &Path) -> Vec<PathBuf> {
    let is_table = |p: &Path| matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "parquet" | "pq"));
    if path.is_file() {
        return if is_table(path) { vec![path.to_path_buf()] } else { Vec::new() };
    }
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file() && is_table(entry.path()))
        .map(|entry| entry.into_path())
        .collect();
    found.sort();
    found
}

fn shown_path(spec: &TaskSpec, path: &Path) -> String {
    path.strip_prefix(&spec.root).unwrap_or(path).display().to_string()
}

fn quoted_all(items: &[&String]) -> String {
    let shown: Vec<String> = items.iter().take(20).map(|i| format!("{i:?}")).collect();
    let more = items.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
