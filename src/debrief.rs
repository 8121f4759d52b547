//! A debrief for the follow-up interview: questions an interviewer can ask about one
//! submission, each tied to what it comes from (a decision in the code at a file and line, a
//! methodology finding, the gap between the public dry run and the hidden score, a claim in
//! NOTES.md the code does not bear out, a large late change). Deterministic: the same evidence
//! gives the same questions, in the same order; no model is called. For assessors only.

use serde::{Deserialize, Serialize};

use crate::methodology::{self, short, Call};

/// Questions asked at most.
pub const MAX_QUESTIONS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    /// What it comes from, in a sentence.
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// In a notebook: the cell (from 1, markdown cells counted), `line` being the line within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<u64>,
}

/// One push, for the timeline's questions.
#[derive(Debug, Clone)]
pub struct Push {
    pub number: i64,
    pub pushed_at: i64,
    /// Lines added and removed since the push before it (`None`: not known).
    pub changed_lines: Option<u64>,
}

/// The worst of an output's slices of the hidden rows, beside the metric on all rows.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstSlice {
    /// The graded file.
    pub output: String,
    pub metric: String,
    pub higher_is_better: bool,
    pub slice: String,
    pub rows: usize,
    pub value: f64,
    pub whole: f64,
}

impl WorstSlice {
    /// Whether the slice falls short of the whole by enough to ask about: a cleaned table's
    /// cells by 0.02; predictions on a metric within [0, 1] by 0.02 and by more than a
    /// proportion's standard error at worst (0.5 / √rows: two wrong of 19 rows is not a
    /// pattern); on others, by a tenth of the whole's value.
    pub fn is_notable(&self) -> bool {
        let shortfall = if self.higher_is_better { self.whole - self.value } else { self.value - self.whole };
        let unit = (0.0..=1.0).contains(&self.whole) && (0.0..=1.0).contains(&self.value);
        if self.metric == "cell_accuracy" {
            // Cleaning code is deterministic: a slice it gets wrong shows a kind of dirt it misses.
            shortfall >= 0.02
        } else if unit {
            shortfall >= 0.02f64.max(0.5 / (self.rows.max(1) as f64).sqrt())
        } else {
            shortfall >= 0.1 * self.whole.abs()
        }
    }
}

/// The pair of classes a model mixes up most: `count` rows of class `truth` predicted as
/// `predicted`, of `truth_rows` rows of that class.
#[derive(Debug, Clone, PartialEq)]
pub struct Confused {
    pub output: String,
    pub truth: String,
    pub predicted: String,
    pub count: u64,
    pub truth_rows: u64,
}

/// The column of a cleaned table with the fewest correct cells, and its first wrong cell.
#[derive(Debug, Clone, PartialEq)]
pub struct WeakColumn {
    pub output: String,
    pub column: String,
    /// Correct cells over the truth's rows.
    pub accuracy: f64,
    /// `(key, expected, got)`.
    pub example: Option<(String, String, String)>,
}

/// One step as it ran in the graded run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCost {
    pub name: String,
    pub wall_seconds: f64,
    pub peak_memory_bytes: Option<u64>,
    /// The step's memory limit.
    pub memory_limit_bytes: Option<u64>,
}

/// What the debrief reads.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    /// The submission's Python files and notebooks (`(path, text)`; a notebook's text is its JSON).
    pub files: &'a [(String, String)],
    pub methodology: &'a [methodology::Finding],
    /// NOTES.md, when the submission has one.
    pub notes: Option<&'a str>,
    /// The accuracy component (0–100) of the public dry run and of the hidden grade.
    pub public_accuracy: Option<f64>,
    pub hidden_accuracy: Option<f64>,
    /// The candidate's pushes, oldest first, and which counts.
    pub pushes: &'a [Push],
    pub counted: Option<i64>,
    /// When the clock started and the deadline (seconds), where known.
    pub started_at: Option<i64>,
    pub deadline: Option<i64>,
    /// Each graded output's worst slices of the hidden rows (two at most, worst first), where
    /// the task declares slices.
    pub worst_slices: &'a [WorstSlice],
    /// The graded run's steps, when they all ran.
    pub steps: &'a [StepCost],
    /// What went wrong in the graded run: a step that did not end ok (`name`, its outcome, why),
    /// and outputs that could not be scored (`file`, why).
    pub failed_step: Option<(&'a str, &'a str, &'a str)>,
    pub refused: &'a [(String, String)],
    /// The graded outputs that hold predictions (not a cleaned table).
    pub predictions: &'a [String],
    /// Each classifier's most mixed-up pair of classes.
    pub confused: &'a [Confused],
    /// Each cleaned table's weakest column.
    pub weak_columns: &'a [WeakColumn],
}

/// A decision in the code worth a question, with its place.
struct Decision {
    file: String,
    line: u64,
    question: String,
    why: String,
    /// Lower asks first.
    rank: u8,
}

/// The questions for one submission: methodology findings first (at most three), then a claim
/// of the notes the code does not bear out, the dry-run gap, the model and its hyperparameters,
/// the validation scheme, missing values, dropped columns, encodings, and a large late change;
/// at most [`MAX_QUESTIONS`].
pub fn questions(evidence: &Evidence) -> Vec<Question> {
    let mut out = Vec::new();
    for finding in evidence.methodology.iter().take(3) {
        out.push(Question {
            question: methodology_question(finding),
            why: format!("Methodology finding `{}`: {}", finding.rule.as_str(), finding.message),
            file: Some(finding.file.clone()),
            line: Some(finding.line),
            cell: finding.cell,
        });
    }
    let small = evidence.files.iter().filter(|(_, text)| text.len() <= methodology::MAX_FILE_BYTES);
    // The Python code, for the candidate's own functions' definitions.
    let codes: Vec<(String, String)> = small
        .clone()
        .filter_map(|(path, text)| match path.rsplit_once('.').map(|(_, e)| e) {
            Some("py") => Some((path.clone(), text.clone())),
            Some("ipynb") if crate::notebook::language_of_text(text).as_deref() != Some("r") => {
                Some((path.clone(), crate::environment::notebook_python(text)?))
            }
            _ => None,
        })
        .collect();
    let mut r_files: Vec<String> = Vec::new();
    let read: Vec<(String, methodology::Source)> = small
        .filter_map(|(path, text)| {
            let (language, source) = methodology::read_any(path, text)?;
            if language == methodology::Language::R {
                r_files.push(path.clone());
            }
            Some((path.clone(), source))
        })
        .collect();
    let calls: Vec<(String, Call)> = read.iter().flat_map(|(path, source)| source.calls.iter().map(move |call| (path.clone(), call.clone()))).collect();
    if let Some(question) = notes_claim(evidence.notes, &calls) {
        out.push(question);
    }
    if let (Some(public), Some(hidden)) = (evidence.public_accuracy, evidence.hidden_accuracy) {
        if (public - hidden).abs() >= 10.0 {
            let (higher, lower) = if public > hidden { ("public", "hidden") } else { ("hidden", "public") };
            out.push(Question {
                question: format!(
                    "Your solution scored {public:.0} on the public rows and {hidden:.0} on the hidden ones. Why do you think it did better on the {higher} rows, and what about the {lower} rows might it not handle?"
                ),
                why: format!("The accuracy component was {public:.1} in the public dry run and {hidden:.1} on the hidden data: a gap of {:.1}.", (public - hidden).abs()),
                file: None,
                line: None,
                cell: None,
            });
        }
    }
    for worst in evidence.worst_slices.iter().filter(|w| w.is_notable()) {
        out.push(worst_slice_question(worst));
    }
    if let Some((step, outcome, message)) = evidence.failed_step {
        out.push(Question {
            question: format!(
                "Your `{step}` step did not finish on the hidden data ({outcome}: {}). What happened, and what in your own runs would have warned you before the deadline?",
                short(message, 160)
            ),
            why: format!("The graded run's `{step}` step: {outcome}."),
            file: None,
            line: None,
            cell: None,
        });
    }
    for (file, message) in evidence.refused.iter().take(2) {
        let message = message.strip_prefix(&format!("{file}: ")).unwrap_or(message);
        out.push(Question {
            question: format!(
                "{file} could not be scored ({}). How did you check the file before handing it in, and what would have caught this?",
                short(message, 200)
            ),
            why: format!("The graded output {file} was refused."),
            file: None,
            line: None,
            cell: None,
        });
    }
    for confused in evidence.confused.iter().filter(|c| c.count > 0) {
        let Confused { output, truth, predicted, count, truth_rows } = confused;
        let share = 100.0 * *count as f64 / (*truth_rows).max(1) as f64;
        out.push(Question {
            question: format!(
                "Your model called {count} of the {truth_rows} hidden rows whose class is `{truth}` `{predicted}` ({share:.0} %), more than any other mix-up. What tells these two apart, and did your features give the model a way to see it?"
            ),
            why: format!("The largest count off the diagonal of the confusion matrix of {output}: true {truth}, predicted {predicted}, {count} rows."),
            file: None,
            line: None,
            cell: None,
        });
    }
    for weak in evidence.weak_columns.iter().filter(|w| w.accuracy < 1.0) {
        let WeakColumn { output, column, accuracy, example } = weak;
        let shown = match example {
            Some((key, expected, got)) => format!(" (the record {key}: expected {expected:?}, got {got:?})"),
            None => String::new(),
        };
        out.push(Question {
            question: format!(
                "`{column}` is your cleaned table's weakest column: {:.1} % of its cells are right{shown}. What did you decide for this column, and what would catch the rest?",
                accuracy * 100.0
            ),
            why: format!("The column with the fewest correct cells in {output}: {:.1} % against the hidden clean table.", accuracy * 100.0),
            file: None,
            line: None,
            cell: None,
        });
    }
    type Calls = Vec<(String, Call)>;
    let (r_calls, py_calls): (Calls, Calls) = calls.iter().cloned().partition(|(file, _)| r_files.contains(file));
    let mut decisions = decisions(&py_calls, &codes);
    let r_functions: Vec<(String, u64, String)> = read
        .iter()
        .filter(|(path, _)| r_files.contains(path))
        .flat_map(|(path, s)| s.functions.iter().map(move |(line, name)| (path.clone(), *line, name.clone())))
        .collect();
    decisions.extend(r_decisions(&r_calls, &r_functions));
    // Features the candidate made (a new column computed from others): where the idea came from.
    for (file, source) in &read {
        for (line, frame, column) in &source.columns_made {
            let reassigned = source.columns_made.iter().filter(|(_, f, c)| f == frame && c == column).count() > 1;
            if reassigned || calls.iter().any(|(f, c)| f == file && c.line == *line && c.name == "map") {
                continue;
            }
            decisions.push(Decision {
                file: file.clone(),
                line: *line,
                question: format!("You make the column `{column}` here. What made you think of it, and how did you check that it helps?"),
                why: format!("A new column of `{}` is computed here.", short(frame, 40)),
                rank: RANK_FEATURE,
            });
        }
    }
    // Code that writes its table and decides nothing the rules know (no model, no missing value
    // handled, nothing dropped, nothing converted): ask what it left as it was, at the write.
    if decisions.is_empty() {
        if let Some((file, write)) = calls.iter().find(|(_, c)| matches!(c.name.as_str(), "to_csv" | "to_parquet")) {
            decisions.push(Decision {
                file: file.clone(),
                line: write.line,
                question: "Here the table is written with no value converted, no missing value handled and no row dropped. What did you see in the data, and what would you have fixed first with more time?".to_string(),
                why: "The code handles no missing values, converts no types, drops no rows or columns and builds no model before this write.".to_string(),
                rank: 8,
            });
        }
    }
    decisions.sort_by(|a, b| (a.rank, &a.file, a.line).cmp(&(b.rank, &b.file, b.line)));
    let mut asked_ranks: Vec<u8> = Vec::new();
    for decision in decisions {
        // One question per kind of decision (the first of each), so the list stays varied; the
        // candidate's own value readers, up to three.
        let allowed = if decision.rank == RANK_READER || decision.rank == RANK_FEATURE { 3 } else { 1 };
        if asked_ranks.iter().filter(|r| **r == decision.rank).count() >= allowed {
            continue;
        }
        asked_ranks.push(decision.rank);
        out.push(Question { question: decision.question, why: decision.why, file: Some(decision.file), line: Some(decision.line), cell: None });
    }
    if let Some(question) = no_model(evidence.predictions, &calls, &read) {
        out.push(question);
    }
    if let Some(question) = refused_write(evidence.refused, evidence.files) {
        out.push(question);
    }
    if evidence.notes.is_none() && !evidence.files.is_empty() {
        out.push(Question {
            question:
                "There is no NOTES.md. In a few sentences: what was your approach, what did you trade off against the time box, and what would you do next?"
                    .to_string(),
            why: "The submission has no NOTES.md: its reasoning is written down nowhere.".to_string(),
            file: None,
            line: None,
            cell: None,
        });
    }
    match first_read(&calls) {
        Some(question) => out.push(question),
        // Code that reads none of the task's data: the output cannot come from the input.
        None if !calls.is_empty() => out.push(Question {
            question: "Nothing in the code handed in reads the task's data. How was the output meant to come from the input, and what would you read first?"
                .to_string(),
            why: format!("No call of the code reads a table ({} and the like).", READS[..4].join(", ")),
            file: None,
            line: None,
            cell: None,
        }),
        None => {}
    }
    if let Some(question) = scale(evidence.steps) {
        out.push(question);
    }
    if let Some(question) = late_change(evidence) {
        out.push(question);
    }
    out.truncate(MAX_QUESTIONS);
    methodology::in_cells(&mut out, evidence.files, |q| {
        let Question { file, line, cell, .. } = q;
        Some((file.as_deref()?, line.as_mut()?, cell))
    });
    out
}

/// Calls that read a table (pandas, polars, base R, readr, data.table).
const READS: &[&str] = &[
    "read_csv",
    "read_parquet",
    "read_excel",
    "read_table",
    "read_json",
    "read_feather",
    "read_fwf",
    "read_sql",
    "loadtxt",
    "genfromtxt",
    "DictReader",
    "scan_csv",
    "scan_parquet",
    "read.csv",
    "read.csv2",
    "read.table",
    "read.delim",
    "read_delim",
    "read_csv2",
    "read_tsv",
    "read_rds",
    "readRDS",
    "fread",
    "vroom",
];
/// Calls that look at a table's values: its types, missing values, counts, summaries.
const INSPECTIONS: &[&str] =
    &["info", "describe", "isna", "isnull", "value_counts", "duplicated", "nunique", "unique", "summary", "str", "glimpse", "skim", "dtypes", "null_count"];

/// Where the data is first read: what the candidate looked at in it (curiosity about data
/// quality), asked at that line.
fn first_read(calls: &[(String, Call)]) -> Option<Question> {
    // The training or cleaning code's read before the prediction step's.
    let mut reads = calls.iter().filter(|(_, c)| READS.contains(&c.name.as_str()));
    let predicts = |file: &str| file.rsplit('/').next().unwrap_or(file).starts_with("predict");
    let (file, read) = reads.clone().find(|(file, _)| !predicts(file)).or_else(|| reads.next())?;
    let inspects = calls.iter().any(|(_, c)| INSPECTIONS.contains(&c.name.as_str()));
    let why = if inspects {
        format!("The data is first read here (`{}`).", read.name)
    } else {
        format!(
            "The data is first read here (`{}`), and the code handed in looks at none of its values (no summary, missing-value or duplicate counts).",
            read.name
        )
    };
    Some(Question {
        question: "Here you read the data. What did you look at first, what surprised you in it, and what did you decide because of it?".to_string(),
        why,
        file: Some(file.clone()),
        line: Some(read.line),
        cell: None,
    })
}

/// The costliest step of the graded run: how the solution would scale.
fn scale(steps: &[StepCost]) -> Option<Question> {
    let step = steps.iter().max_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds))?;
    let peak = step.peak_memory_bytes.map(|p| format!(" and peaked at {}", crate::units::format_size(p))).unwrap_or_default();
    let share = match (step.peak_memory_bytes, step.memory_limit_bytes) {
        (Some(peak), Some(limit)) if limit > 0 => format!(" ({:.0} % of its memory limit)", 100.0 * peak as f64 / limit as f64),
        _ => String::new(),
    };
    Some(Question {
        question: format!(
            "Your `{}` step took {:.1} s{peak}{share} on the hidden data. What would break first with a hundred times as many rows, and what would you change?",
            step.name, step.wall_seconds
        ),
        why: format!("The longest step of the graded run: `{}`, {:.1} s of wall time{peak}.", step.name, step.wall_seconds),
        file: None,
        line: None,
        cell: None,
    })
}

fn worst_slice_question(worst: &WorstSlice) -> Question {
    let WorstSlice { output, metric, slice, rows, value, whole, .. } = worst;
    let rows_text = if *rows == 1 { "1 row".to_string() } else { format!("{rows} rows") };
    let question = if metric == "cell_accuracy" {
        format!(
            "Your cleaning gets {:.1} % of the cells right on the slice \"{slice}\" ({rows_text}), against {:.1} % on all of them. What do these records have that your code does not handle?",
            value * 100.0,
            whole * 100.0
        )
    } else {
        format!(
            "Your predictions' {metric} is {value:.3} on the slice \"{slice}\" ({rows_text}), against {whole:.3} on all rows. What is different about these rows, and what would you try for them?"
        )
    };
    Question {
        question,
        why: format!("The worst of the task's slices of the hidden rows for {output}: {metric} {value:.4} on {rows_text}, {whole:.4} on all rows."),
        file: None,
        line: None,
        cell: None,
    }
}

fn methodology_question(finding: &methodology::Finding) -> String {
    use methodology::Rule::*;
    match finding.rule {
        PreprocessingBeforeSplit => "Here the preprocessing learns from every row before you split off the validation rows. What does that do to your validation score, and how would you change the order?",
        FitOnTest => "Here something is fitted on the rows you predict. What would happen if those rows arrived one at a time in production?",
        NoValidation => "Nothing in your code holds rows out before this fit. How did you know the model was good enough to hand in?",
        UnseededRandomness => "This is random and unseeded. If you ran it again, how much would the result move, and how would you find out?",
        TargetAsFeature => "The target is among these features. Walk me through what the model sees at prediction time.",
        TrainOnlyEvaluation => "This score is computed on the training rows. What does it tell you, and what would you measure instead?",
    }
    .to_string()
}

/// A claim of NOTES.md that the code does not bear out: cross-validation, tuning or a held-out
/// set said, none in the code.
fn notes_claim(notes: Option<&str>, calls: &[(String, Call)]) -> Option<Question> {
    let notes = notes?.to_ascii_lowercase();
    let has = |names: &[&str]| calls.iter().any(|(_, c)| names.contains(&c.name.as_str()));
    let claims: [(&[&str], &[&str], &str); 3] = [
        (
            &["cross-valid", "cross valid", "k-fold", "kfold", "5-fold", "10-fold"],
            &[
                "cross_val_score",
                "cross_validate",
                "cross_val_predict",
                "KFold",
                "StratifiedKFold",
                "GroupKFold",
                "RepeatedKFold",
                "GridSearchCV",
                "RandomizedSearchCV",
                // R: rsample, caret, glmnet, xgboost, modelr, and folds drawn by hand with `sample`.
                "vfold_cv",
                "createFolds",
                "trainControl",
                "train",
                "cv.glmnet",
                "xgb.cv",
                "fit_resamples",
                "crossv_kfold",
                "rfcv",
                "sample",
            ],
            "cross-validation",
        ),
        (
            &["tuned", "tuning", "grid search", "gridsearch", "hyperparameter search", "optuna"],
            &[
                "GridSearchCV",
                "RandomizedSearchCV",
                "HalvingGridSearchCV",
                "create_study",
                "optimize",
                "tune_grid",
                "tune_bayes",
                "train",
                "tuneRF",
                "cv.glmnet",
            ],
            "hyperparameter tuning",
        ),
        (&["held-out", "held out", "hold-out", "holdout", "validation set"], methodology::VALIDATION, "a held-out set"),
    ];
    for (said, calls_for, what) in claims {
        if let Some(word) = said.iter().find(|w| notes.contains(*w)) {
            let held_out_in_r = what == "a held-out set" && has(methodology::R_VALIDATION);
            if !has(calls_for) && !held_out_in_r {
                return Some(Question {
                    question: format!("Your notes mention {what} (\"{word}\"), but the code handed in has none. Where did you do it, and what did it show?"),
                    why: format!(
                        "NOTES.md says \"{word}\"; no call of {} is in the submission's code.",
                        calls_for.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                    ),
                    file: Some("NOTES.md".to_string()),
                    line: None,
                    cell: None,
                });
            }
        }
    }
    None
}

/// The rank of a question about one of the candidate's own functions that reads values.
const RANK_READER: u8 = 9;
/// The rank of a question about a feature the candidate made.
const RANK_FEATURE: u8 = 10;

/// The decisions the code makes, each with a question.
fn decisions(calls: &[(String, Call)], codes: &[(String, String)]) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut readers_seen: Vec<(String, String)> = Vec::new();
    for (file, call) in calls {
        // `column.map(reader)` with a function of the candidate's own: how it reads values.
        if matches!(call.name.as_str(), "map" | "apply" | "transform") && call.positional.len() == 1 {
            let reader = call.positional[0].trim();
            let plain = !reader.is_empty() && reader.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let code = codes.iter().find(|(path, _)| path == file).map(|(_, code)| code.as_str()).unwrap_or("");
            let defined = code.lines().position(|l| l.trim_start().starts_with(&format!("def {reader}(")));
            if let (true, Some(at), false) = (plain, defined, readers_seen.contains(&(file.clone(), reader.to_string()))) {
                readers_seen.push((file.clone(), reader.to_string()));
                let column = call.receiver.as_deref().map(|r| short(r, 60)).unwrap_or_default();
                out.push(Decision {
                    file: file.clone(),
                    line: at as u64 + 1,
                    question: format!("`{reader}` decides what each value of `{column}` means. What does it do with a value it cannot read, and which odd values did you check it on?"),
                    why: format!("Applied to `{column}` at line {}; defined here.", call.line),
                    rank: RANK_READER,
                });
                continue;
            }
        }
        let at = |rank: u8, question: String, why: String| Decision { file: file.clone(), line: call.line, question, why, rank };
        let keywords = call.keywords.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
        if methodology::ESTIMATORS.contains(&call.name.as_str())
            && !matches!(call.name.as_str(), "Pipeline" | "make_pipeline" | "GridSearchCV" | "RandomizedSearchCV")
        {
            let settings = if keywords.is_empty() { "its default settings".to_string() } else { format!("`{}`", short(&keywords, 80)) };
            out.push(at(
                0,
                format!("Why `{}` with {settings}? What else did you try, and how did you choose between them?", call.name),
                format!("The model is made here: `{}`.", short(&format!("{}({keywords})", call.callee), 100)),
            ));
        } else if methodology::VALIDATION.contains(&call.name.as_str()) {
            out.push(at(
                1,
                format!(
                    "How did you choose this way of validating (`{}`), and how close was its score to what you expected on unseen data?",
                    short(&format!("{}({keywords})", call.name), 80)
                ),
                "The validation scheme is set here.".to_string(),
            ));
        } else if matches!(call.name.as_str(), "fillna" | "SimpleImputer" | "KNNImputer" | "IterativeImputer" | "interpolate") {
            out.push(at(
                2,
                format!("You fill missing values here (`{}`). Why this value, and how would a different choice change the result?", short(&call.callee, 60)),
                "Missing values are imputed here.".to_string(),
            ));
        } else if call.name == "dropna" {
            out.push(at(
                3,
                "You drop rows with missing values here. How many rows did that remove, and could the hidden data have more of them?".to_string(),
                "Rows are dropped here.".to_string(),
            ));
        } else if call.name == "drop" && call.keywords.iter().any(|(k, _)| k == "columns") {
            let columns = call.keywords.iter().find(|(k, _)| k == "columns").map(|(_, v)| v.clone()).unwrap_or_default();
            out.push(at(
                4,
                format!("You drop the columns {} here. Why those, and what would keeping them change?", short(&columns, 80)),
                "Columns are dropped here.".to_string(),
            ));
        } else if matches!(call.name.as_str(), "to_numeric" | "to_datetime") && call.keywords.iter().any(|(k, v)| k == "errors" && v.contains("coerce")) {
            out.push(at(
                6,
                format!("Values that do not parse become missing here (`{}`, errors=\"coerce\"). How many were there, what did they look like, and could you have read them?", call.name),
                "Unreadable values are turned into missing ones here.".to_string(),
            ));
        } else if call.name == "drop_duplicates" {
            out.push(at(
                7,
                "You drop duplicate rows here. How did you decide what counts as a duplicate, and which copy to keep?".to_string(),
                "Duplicate rows are dropped here.".to_string(),
            ));
        } else if matches!(call.name.as_str(), "OneHotEncoder" | "OrdinalEncoder" | "LabelEncoder" | "get_dummies" | "TargetEncoder") {
            out.push(at(
                5,
                format!("You encode categories with `{}` here. What happens to a category that appears only in the rows you predict?", call.name),
                "Categories are encoded here.".to_string(),
            ));
        }
    }
    out
}

/// parsnip's model specifications (R's model calls beside them are `methodology::R_MODELS`).
const R_MODEL_SPECS: &[&str] = &[
    "rand_forest",
    "boost_tree",
    "logistic_reg",
    "linear_reg",
    "multinom_reg",
    "decision_tree",
    "nearest_neighbor",
    "svm_rbf",
    "svm_linear",
    "mlp",
    "naive_Bayes",
];

/// The decisions of R code worth a question, as [`decisions`] finds Python's.
fn r_decisions(calls: &[(String, Call)], functions: &[(String, u64, String)]) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut readers_seen: Vec<&str> = Vec::new();
    // Names of variables (tables among them): an argument that is one is not a column.
    let variables: Vec<&str> = calls.iter().flat_map(|(_, c)| c.assigned.iter().map(String::as_str)).collect();
    for (file, call) in calls {
        // A function of the candidate's own applied to a column: how it reads values.
        if let Some((defined_in, at, name)) = functions.iter().find(|(_, _, name)| *name == call.name) {
            let column = call.positional.first().map(|c| c.trim_matches('`')).unwrap_or("");
            let plain = !column.is_empty() && column.len() <= 60 && !column.contains('(') && !variables.contains(&column);
            if plain && !readers_seen.contains(&name.as_str()) {
                readers_seen.push(name);
                out.push(Decision {
                    file: defined_in.clone(),
                    line: *at,
                    question: format!("`{name}` decides what each value of `{column}` means. What does it do with a value it cannot read, and which odd values did you check it on?"),
                    why: format!("Applied to `{column}` at {file}:{}; defined here.", call.line),
                    rank: RANK_READER,
                });
            }
            continue;
        }
        let at = |rank: u8, question: String, why: String| Decision { file: file.clone(), line: call.line, question, why, rank };
        let arguments = call.keywords.iter().filter(|(k, _)| k != "data" && k != "formula").map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
        let name = call.name.as_str();
        // parsnip's `fit(spec, ...)` fits the specification asked about already.
        if (methodology::R_MODELS.contains(&name) && name != "fit") || R_MODEL_SPECS.contains(&name) {
            let settings = if arguments.is_empty() { "its default settings".to_string() } else { format!("`{}`", short(&arguments, 80)) };
            out.push(at(
                0,
                format!("Why `{name}` with {settings}? What else did you try, and how did you choose between them?"),
                format!(
                    "The model is made here: `{}`.",
                    short(&format!("{}({})", call.callee, call.positional.first().map(String::as_str).unwrap_or("")), 100)
                ),
            ));
        } else if matches!(name, "initial_split" | "createDataPartition" | "vfold_cv" | "trainControl" | "sample.split" | "createFolds" | "xgb.cv") {
            out.push(at(
                1,
                format!(
                    "How did you choose this way of validating (`{}`), and how close was its score to what you expected on unseen data?",
                    short(&call.callee, 60)
                ),
                "The validation scheme is set here.".to_string(),
            ));
        } else if matches!(name, "replace_na" | "na.approx" | "na.locf" | "mice" | "impute" | "na_interpolation") || name.starts_with("step_impute") {
            out.push(at(
                2,
                format!("You fill missing values here (`{name}`). Why this value, and how would a different choice change the result?"),
                "Missing values are imputed here.".to_string(),
            ));
        } else if matches!(name, "na.omit" | "drop_na" | "complete.cases" | "step_naomit") {
            out.push(at(
                3,
                "You drop rows with missing values here. How many rows did that remove, and could the hidden data have more of them?".to_string(),
                "Rows are dropped here.".to_string(),
            ));
        } else if matches!(name, "parse_number" | "as.numeric" | "as.integer" | "dmy" | "ymd" | "mdy" | "parse_date_time") {
            out.push(at(
                6,
                format!("Values that do not parse become NA here (`{name}`). How many were there, what did they look like, and could you have read them?"),
                "Text is read as numbers or dates here; what does not parse becomes NA.".to_string(),
            ));
        } else if matches!(name, "distinct" | "duplicated") {
            out.push(at(
                7,
                "You drop duplicate rows here. How did you decide what counts as a duplicate, and which copy to keep?".to_string(),
                "Duplicate rows are dropped here.".to_string(),
            ));
        } else if matches!(name, "model.matrix" | "step_dummy" | "dummy_cols" | "dummyVars" | "one_hot") {
            out.push(at(
                5,
                format!("You encode categories with `{name}` here. What happens to a category that appears only in the rows you predict?"),
                "Categories are encoded here.".to_string(),
            ));
        }
    }
    out
}

/// Predictions with no model anywhere in the code: how they were made, asked where the
/// predictions are written when the code names the file.
fn no_model(predictions: &[String], calls: &[(String, Call)], read: &[(String, methodology::Source)]) -> Option<Question> {
    let output = predictions.first()?;
    let fits =
        |name: &str| methodology::ESTIMATORS.contains(&name) || (methodology::R_MODELS.contains(&name) && name != "predict") || R_MODEL_SPECS.contains(&name);
    if calls.is_empty() || read.is_empty() || calls.iter().any(|(_, c)| fits(&c.name) || c.name == "fit") {
        return None;
    }
    Some(Question {
        question: format!(
            "No model is fitted anywhere in your code, yet {output} holds predictions. How did you decide them, and what simple model should they have beaten?"
        ),
        why: format!("The task grades {output} as predictions; no estimator, model call or `fit` is in the submission's code."),
        file: None,
        line: None,
        cell: None,
    })
}

/// Where a refused output is written, when a script names it: what the file had to hold.
fn refused_write(refused: &[(String, String)], files: &[(String, String)]) -> Option<Question> {
    let (output, _) = refused.first()?;
    let name = output.rsplit('/').next().unwrap_or(output);
    let script = |path: &str| [".py", ".R", ".r", ".Rmd", ".rmd"].iter().any(|e| path.ends_with(e));
    let (file, line) = files.iter().filter(|(path, text)| script(path) && text.len() <= methodology::MAX_FILE_BYTES).find_map(|(path, text)| {
        let at = text.lines().position(|l| {
            let code = l.trim_start();
            !code.starts_with('#') && (code.contains(&format!("{name}\"")) || code.contains(&format!("{name}'")))
        })?;
        Some((path.clone(), at as u64 + 1))
    })?;
    Some(Question {
        question: format!(
            "Here you write {output}. Which rows and columns did it have to hold, in which format, and what did you open it with before pushing?"
        ),
        why: format!("{output} was refused; this line names it."),
        file: Some(file),
        line: Some(line),
        cell: None,
    })
}

/// The push that counts, when it came late with a large change: a question about what changed.
fn late_change(evidence: &Evidence) -> Option<Question> {
    let counted = evidence.counted.or_else(|| evidence.pushes.last().map(|p| p.number))?;
    let push = evidence.pushes.iter().find(|p| p.number == counted)?;
    let changed = push.changed_lines?;
    let (start, deadline) = (evidence.started_at?, evidence.deadline?);
    let span = (deadline - start).max(1) as f64;
    let late = (push.pushed_at - start) as f64 / span >= 0.9;
    if !late || changed < 50 || push.number < 2 {
        return None;
    }
    let minutes = ((deadline - push.pushed_at).max(0) as f64 / 60.0).round();
    Some(Question {
        question: format!(
            "Push #{} changed {changed} lines {minutes:.0} minutes before the deadline. What changed at the end, and how did you check it before handing it in?",
            push.number
        ),
        why: format!("The push that counts (#{}) came in the last tenth of the time box and changed {changed} lines since the one before.", push.number),
        file: None,
        line: None,
        cell: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_come_from_the_code_the_notes_the_gap_and_the_timeline_in_a_fixed_order() {
        let code = "import pandas as pd\nframe = pd.read_csv('x.csv')\nframe = frame.dropna()\nX = frame.drop(columns=['row_id', 'sex'])\nX = pd.get_dummies(X)\nmodel = RandomForestClassifier(n_estimators=300, random_state=0)\nmodel.fit(X, frame['sex'])\n";
        let files = vec![("train.py".to_string(), code.to_string())];
        let found = methodology::analyse(&files, &methodology::Context::default());
        let pushes = [Push { number: 1, pushed_at: 100, changed_lines: Some(40) }, Push { number: 2, pushed_at: 3_500, changed_lines: Some(180) }];
        let evidence = Evidence {
            files: &files,
            methodology: &found,
            notes: Some("# Notes\nI cross-validated the forest and tuned it."),
            public_accuracy: Some(92.0),
            hidden_accuracy: Some(70.0),
            pushes: &pushes,
            counted: None,
            started_at: Some(0),
            deadline: Some(3_600),
            ..Default::default()
        };
        let asked = questions(&evidence);
        let tied: Vec<(Option<&str>, Option<u64>)> = asked.iter().map(|q| (q.file.as_deref(), q.line)).collect();
        assert_eq!(
            tied,
            [
                (Some("train.py"), Some(7)), // no validation
                (Some("NOTES.md"), None),    // says cross-validated, none in the code
                (None, None),                // 92 public, 70 hidden
                (Some("train.py"), Some(6)), // the model and its settings
                (Some("train.py"), Some(3)), // rows dropped
                (Some("train.py"), Some(4)), // columns dropped
                (Some("train.py"), Some(5)), // encoding
                (Some("train.py"), Some(2)), // the data read: what was looked at first
                (None, None),                // 180 lines changed 2 minutes before the deadline
            ],
            "{asked:#?}"
        );
        assert!(asked[1].question.contains("cross-validation"), "{}", asked[1].question);
        assert!(asked[3].question.contains("n_estimators=300"), "{}", asked[3].question);
        assert!(asked[8].question.contains("Push #2 changed 180 lines"), "{}", asked[8].question);
        assert_eq!(questions(&evidence), asked, "deterministic");
    }

    #[test]
    fn the_worst_slice_the_largest_mix_up_and_the_weakest_column_are_asked_about_with_their_numbers() {
        let slice = |slice: &str, value: f64, whole: f64| WorstSlice {
            output: "predictions.csv".into(),
            metric: "f1_macro".into(),
            higher_is_better: true,
            slice: slice.into(),
            rows: 410,
            value,
            whole,
        };
        // 0.01 below the whole is noise; 0.2 below is a question.
        let worst = [slice("carat ≥ 2", 0.41, 0.61), slice("colour = J", 0.60, 0.61)];
        let confused = [Confused { output: "predictions.csv".into(), truth: "Ideal".into(), predicted: "Premium".into(), count: 412, truth_rows: 5_000 }];
        let weak = [WeakColumn {
            output: "penguins_clean.csv".into(),
            column: "body_mass_g".into(),
            accuracy: 0.84,
            example: Some(("1027".into(), "4450".into(), "4.45".into())),
        }];
        let asked = questions(&Evidence { worst_slices: &worst, confused: &confused, weak_columns: &weak, ..Default::default() });
        let texts: Vec<&str> = asked.iter().map(|q| q.question.as_str()).collect();
        assert_eq!(texts.len(), 3, "{texts:#?}");
        assert!(texts[0].contains("0.410 on the slice \"carat ≥ 2\" (410 rows), against 0.610"), "{}", texts[0]);
        assert!(asked[0].why.contains("f1_macro 0.4100 on 410 rows, 0.6100 on all rows"), "{}", asked[0].why);
        assert!(texts[1].contains("412 of the 5000 hidden rows whose class is `Ideal` `Premium` (8 %)"), "{}", texts[1]);
        assert!(texts[2].contains("`body_mass_g`") && texts[2].contains("84.0 %") && texts[2].contains("expected \"4450\", got \"4.45\""), "{}", texts[2]);
        // The longest step, with its memory against its limit.
        let steps = [
            StepCost { name: "train".into(), wall_seconds: 41.25, peak_memory_bytes: Some(512 << 20), memory_limit_bytes: Some(2 << 30) },
            StepCost { name: "predict".into(), wall_seconds: 3.0, peak_memory_bytes: None, memory_limit_bytes: None },
        ];
        let asked = questions(&Evidence { steps: &steps, ..Default::default() });
        assert!(asked[0].question.contains("`train` step took 41.2 s and peaked at 512 MiB (25 % of its memory limit)"), "{}", asked[0].question);
        // A failed step and a refused output are asked about, the file not named twice.
        let refused = [("predictions.csv".to_string(), "predictions.csv: 3 duplicate ids (\"7\", \"9\", \"12\")".to_string())];
        let asked = questions(&Evidence { failed_step: Some(("predict", "timeout", "ran past 2m")), refused: &refused, ..Default::default() });
        assert!(asked[0].question.starts_with("Your `predict` step did not finish on the hidden data (timeout: ran past 2m)."), "{}", asked[0].question);
        assert!(asked[1].question.starts_with("predictions.csv could not be scored (3 duplicate ids"), "{}", asked[1].question);
        // An error metric: lower is better, a tenth above the whole is a question.
        let rmse = WorstSlice { metric: "rmse".into(), higher_is_better: false, value: 1200.0, whole: 1000.0, ..slice("price ≥ 10000", 0.0, 0.0) };
        assert!(rmse.is_notable());
        assert!(!WorstSlice { value: 1050.0, ..rmse.clone() }.is_notable());
    }

    #[test]
    fn a_feature_the_candidate_made_is_asked_about_at_its_line_and_a_column_read_by_map_is_not() {
        let code = "def grade(x):\n    return x\nframe['ratio'] = frame['price'] / frame['carat']\nframe['grade'] = frame['raw'].map(grade)\n";
        let files = vec![("features.py".to_string(), code.to_string())];
        let asked = questions(&Evidence { files: &files, ..Default::default() });
        let made: Vec<(&str, Option<u64>)> =
            asked.iter().filter(|q| q.question.contains("You make the column")).map(|q| (q.question.as_str(), q.line)).collect();
        assert_eq!(made.len(), 1, "{asked:#?}");
        assert!(made[0].0.contains("`ratio`") && made[0].1 == Some(3), "{made:?}");
        assert!(asked.iter().any(|q| q.question.starts_with("`grade` decides") && q.line == Some(1)), "{asked:#?}");
    }

    #[test]
    fn a_refused_output_of_code_that_reads_nothing_and_fits_nothing_is_asked_about_where_it_is_written() {
        let predict = "\"\"\"Random bytes.\"\"\"\nimport os\n\nwith open(\"/output/predictions.csv\", \"wb\") as out:\n    out.write(os.urandom(4096))\n";
        let train = "print(\"no model\")\n";
        let files = vec![("predict.py".to_string(), predict.to_string()), ("train.py".to_string(), train.to_string())];
        let refused = [("predictions.csv".to_string(), "predictions.csv: not UTF-8".to_string())];
        let predictions = ["predictions.csv".to_string()];
        let steps = [StepCost { name: "predict".into(), wall_seconds: 0.4, peak_memory_bytes: None, memory_limit_bytes: None }];
        let asked = questions(&Evidence { files: &files, refused: &refused, predictions: &predictions, steps: &steps, ..Default::default() });
        let places: Vec<(&str, Option<&str>, Option<u64>)> =
            asked.iter().map(|q| (&q.question[..30.min(q.question.len())], q.file.as_deref(), q.line)).collect();
        assert_eq!(
            places,
            [
                ("predictions.csv could not be s", None, None),
                ("No model is fitted anywhere in", None, None),
                ("Here you write predictions.csv", Some("predict.py"), Some(4)),
                ("There is no NOTES.md. In a few", None, None),
                ("Nothing in the code handed in ", None, None),
                ("Your `predict` step took 0.4 s", None, None),
            ],
            "{asked:#?}"
        );
        // A model anywhere, or a cleaned table rather than predictions: no question about a model.
        let fitted = vec![("train.py".to_string(), "import pandas as pd\nm = LogisticRegression()\nm.fit(pd.read_csv('x'), y)\n".to_string())];
        let asked = questions(&Evidence { files: &fitted, predictions: &predictions, ..Default::default() });
        assert!(!asked.iter().any(|q| q.question.starts_with("No model")), "{asked:#?}");
        assert!(!asked.iter().any(|q| q.question.starts_with("Nothing in the code")), "{asked:#?}");
        let asked = questions(&Evidence { files: &files, refused: &refused, ..Default::default() });
        assert!(!asked.iter().any(|q| q.question.starts_with("No model")), "{asked:#?}");
    }
}
