//! The task format: `tasks/<id>/task.yaml`, parsed strictly into a [`TaskSpec`].
//!
//! Owns the vocabulary of a task (kinds, steps, metrics, scales, weights) and every check that can
//! be made without running anything: unknown keys, bad durations and sizes, missing files, unknown
//! metrics, step inputs that do not exist or that would hand hidden truth to a container. All the
//! problems of a file are reported at once, each naming the file, the field path and what was
//! expected. This module reads only the task author's files; it never talks to Docker.
//!
//! Layout it expects, relative to the project root (the folder that holds `tasks/`):
//! `tasks/<id>/task.yaml`, `datasets/<dataset>/{public,hidden}/`, `runner-images/<image>/`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::units::{parse_duration, parse_size};

mod catalog;
pub use catalog::{Catalog, InvalidTaskId, TaskId};

pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_STEP_MEMORY: u64 = 2 << 30;
pub const DEFAULT_STEP_CPUS: f64 = 1.0;
pub const DEFAULT_STORAGE_CAP: u64 = 1 << 30;
pub const DEFAULT_LINT_SELECT: [&str; 3] = ["E", "F", "W"];
/// Lint findings per 100 lines of code at which the code-quality score reaches zero.
pub const DEFAULT_LINT_ZERO_AT: f64 = 10.0;
pub const DEFAULT_TOLERANCE: f64 = 1e-6;
/// Cell spellings that mean "no value" in a cleaned table unless the task says otherwise
/// (`grading.missing`): the empty cell and `NA`. Every other spelling is a value.
pub const DEFAULT_MISSING: [&str; 2] = ["", "NA"];
/// `check` warns when the untouched starter or a hostile fixture scores above this (0–100).
pub const DEFAULT_SCORE_FLOOR: f64 = 10.0;

const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const MIN_MEMORY: u64 = 32 << 20;
/// The most GPUs a step may ask for.
const MAX_GPUS: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    ModelTraining,
    DataCleaning,
    /// A cleaned table and a model's outputs, graded as several outputs (`grading:` a list).
    CleaningThenTraining,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::ModelTraining => "model-training",
            TaskKind::DataCleaning => "data-cleaning",
            TaskKind::CleaningThenTraining => "cleaning-then-training",
        }
    }
}

/// What a metric compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricInput {
    /// Predicted labels in the target column.
    Labels,
    /// Probabilities: of the positive class in the target column (binary), or one column per class.
    Probabilities,
    /// Predicted numbers in the target column.
    Numbers,
    /// A whole cleaned table, compared cell by cell.
    Table,
}

macro_rules! metrics {
    ($($variant:ident => $name:literal, $input:ident, $higher:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Metric { $($variant),* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name),* }
            }

            pub fn input(self) -> MetricInput {
                match self { $(Metric::$variant => MetricInput::$input),* }
            }

            /// True when a larger value is better (accuracy), false for errors and losses.
            pub fn higher_is_better(self) -> bool {
                match self { $(Metric::$variant => $higher),* }
            }
        }
    };
}

metrics! {
    Accuracy => "accuracy", Labels, true;
    BalancedAccuracy => "balanced_accuracy", Labels, true;
    Precision => "precision", Labels, true;
    Recall => "recall", Labels, true;
    F1 => "f1", Labels, true;
    PrecisionMacro => "precision_macro", Labels, true;
    PrecisionMicro => "precision_micro", Labels, true;
    PrecisionWeighted => "precision_weighted", Labels, true;
    RecallMacro => "recall_macro", Labels, true;
    RecallMicro => "recall_micro", Labels, true;
    RecallWeighted => "recall_weighted", Labels, true;
    F1Macro => "f1_macro", Labels, true;
    F1Micro => "f1_micro", Labels, true;
    F1Weighted => "f1_weighted", Labels, true;
    Mcc => "mcc", Labels, true;
    CohenKappa => "cohen_kappa", Labels, true;
    QuadraticWeightedKappa => "quadratic_weighted_kappa", Labels, true;
    RocAuc => "roc_auc", Probabilities, true;
    LogLoss => "log_loss", Probabilities, false;
    Rmse => "rmse", Numbers, false;
    Mae => "mae", Numbers, false;
    R2 => "r2", Numbers, true;
    Mape => "mape", Numbers, false;
    Rmsle => "rmsle", Numbers, false;
    CellAccuracy => "cell_accuracy", Table, true;
}

impl Metric {
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|metric| metric.name() == name)
    }

    /// The binary precision, recall and F1 need to know which label is positive.
    pub fn needs_positive(self) -> bool {
        matches!(self, Metric::Precision | Metric::Recall | Metric::F1)
    }
}

/// How a cleaned column's cells are compared with the truth's.
#[derive(Debug, Clone, PartialEq)]
pub enum CellCompare {
    /// Numbers when both cells parse as numbers (within the tolerance), else exact text.
    Auto {
        tolerance: f64,
    },
    Number {
        tolerance: f64,
    },
    Text {
        trim: bool,
        case_sensitive: bool,
    },
    /// Calendar dates (and times): `2007-11-11`, `2007/11/11`, `2007-11-11T10:00:00`.
    Date,
}

#[derive(Debug, Clone)]
pub struct StepSpec {
    pub name: String,
    /// A shell command, run by `/bin/sh -c` in `/submission`: the first of `choices` where the
    /// task offers several.
    pub run: String,
    /// Ways to run the step, chosen by which file the submission holds (`train.py` → `python
    /// train.py`, `train.ipynb` → `takehome-notebook train.ipynb`); empty for a single `run`.
    pub choices: Vec<RunChoice>,
    /// Paths relative to the data set folder; each appears read-only at `/data/<last component>`.
    pub inputs: Vec<String>,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub cpus: f64,
    /// GPUs the step needs (0: none). Only a worker with as many claims the task's jobs.
    pub gpus: u32,
    /// Whether the candidate's view shows this step's logs. Default: only when neither this step
    /// nor any step before it reads hidden input (what a step prints while hidden data is mounted,
    /// or after an earlier step could leave hidden data in /workspace or /output, stays with the
    /// assessors).
    pub candidate_logs: bool,
}

/// Task folders under `root/tasks` (those with a task.yaml), sorted.
pub fn discover_tasks(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(root.join("tasks"))?.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.join("task.yaml").is_file()).collect();
    found.sort();
    Ok(found)
}

/// Whether `relative` under `dir` is a regular file reached through real folders only: no
/// component of the path is a link (none is followed).
fn holds_file(dir: &Path, relative: &str) -> bool {
    let mut at = dir.to_path_buf();
    let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty()).collect();
    for (index, part) in parts.iter().enumerate() {
        at.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&at) else { return false };
        let last = index + 1 == parts.len();
        if (last && !meta.file_type().is_file()) || (!last && !meta.file_type().is_dir()) {
            return false;
        }
    }
    !parts.is_empty()
}

/// One way to run a step: `run` when the submission holds the file `when`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunChoice {
    pub when: String,
    pub run: String,
    /// The runner image this choice runs in (`r` for `Rscript clean.R`); `None`: the task's.
    pub image: Option<String>,
    /// For a notebook: the language its kernel must speak (`r`), lowercase; `None`: any.
    pub language: Option<String>,
}

impl RunChoice {
    /// True when the submission (its folder on this host) holds this choice's file as a regular
    /// file (a link is not followed, nor taken) in the choice's language.
    fn matches(&self, submission: &Path) -> bool {
        if !holds_file(submission, &self.when) {
            return false;
        }
        let Some(wanted) = &self.language else { return true };
        crate::notebook::language_of(&submission.join(&self.when)).as_deref() == Some(wanted.as_str())
    }
}

impl StepSpec {
    /// The command for a submission (its folder on this host): the first choice whose file it
    /// holds as a regular file (a link is not followed, nor taken), else `run`.
    pub fn command_for(&self, submission: &Path) -> &str {
        self.choice_for(submission).map_or(self.run.as_str(), |choice| choice.run.as_str())
    }

    /// The choice a submission makes (see [`StepSpec::command_for`]), if the step offers any.
    pub fn choice_for(&self, submission: &Path) -> Option<&RunChoice> {
        self.choices.iter().find(|choice| choice.matches(submission))
    }

    /// The runner image a submission's run of this step needs, when not the task's.
    pub fn image_for(&self, submission: &Path) -> Option<&str> {
        self.choice_for(submission).and_then(|choice| choice.image.as_deref())
    }

    /// True when any input of the step lies under `hidden/`.
    pub fn reads_hidden(&self) -> bool {
        self.inputs.iter().any(|input| input == "hidden" || input.starts_with("hidden/"))
    }
}

/// Maps a metric value to 0–100: 0 at `zero_at`, 100 at `full_at`, linear between, clamped.
/// `zero_at > full_at` describes a lower-is-better metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub zero_at: f64,
    pub full_at: f64,
}

impl Scale {
    pub fn score(&self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let fraction = (value - self.zero_at) / (self.full_at - self.zero_at);
        100.0 * fraction.clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub accuracy: f64,
    pub code_quality: f64,
    pub runtime: f64,
    /// Code quality and runtime count in proportion to the accuracy score (default): a
    /// submission that earns no accuracy earns nothing else. `weights: { gated: false }` opts out.
    pub gated: bool,
}

impl Weights {
    /// The total score, 0–100, from the three component scores.
    pub fn total(&self, accuracy: f64, code_quality: f64, runtime: f64) -> f64 {
        let sum = self.accuracy + self.code_quality + self.runtime;
        if sum <= 0.0 {
            return 0.0;
        }
        let gate = if self.gated { accuracy.clamp(0.0, 100.0) / 100.0 } else { 1.0 };
        (self.accuracy * accuracy + (self.code_quality * code_quality + self.runtime * runtime) * gate) / sum
    }
}

#[derive(Debug, Clone)]
pub struct GradingSpec {
    /// A plain file name, read from `/output` after the last step.
    pub output: String,
    /// Relative to the data set folder; must lie under `hidden/`.
    pub truth: String,
    /// The id column (model training) or row key (data cleaning; `None`: whole rows match).
    pub id: Option<String>,
    /// The predicted column (model training only).
    pub target: Option<String>,
    /// The positive label of a binary task.
    pub positive: Option<String>,
    /// The labels a prediction may use (default: those of the truth).
    pub classes: Option<Vec<String>>,
    /// Per-column comparison for data cleaning; columns not named compare as `Auto`.
    pub columns: Vec<(String, CellCompare)>,
    pub metric: Metric,
    pub scale: Scale,
    /// This output's share of the accuracy score (1 unless a list of outputs says otherwise).
    pub weight: f64,
    /// Numbers compare equal within this tolerance (data cleaning): |expected − got| ≤
    /// tolerance × max(|expected|, 1), so relative above 1 and absolute below.
    pub tolerance: f64,
    /// Data cleaning: the exact cell spellings that mean "no value" (an empty cell always does).
    pub missing: Vec<String>,
    /// Parts of the hidden rows the report scores apart (`slices:`): hidden data, for the
    /// assessors only.
    pub slices: Vec<SliceSpec>,
}

/// The most slices one output is scored on, once rules that make several are expanded.
pub const MAX_SLICES: usize = 64;
/// The most slices one `each: true` rule makes (one per value of its column).
pub const MAX_SLICE_VALUES: usize = 24;

/// One rule of `slices:`: which hidden rows it takes, read from a column of a hidden file.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSpec {
    /// The slice's name in the report; `None`: made from the rule (`carat ≥ 2`).
    pub name: Option<String>,
    /// The hidden file whose columns the rule reads, relative to the data set; `None`: the
    /// output's truth. It must hold the output's id (or key) column.
    pub from: Option<String>,
    pub rule: SliceRule,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SliceRule {
    /// One slice per distinct value of the column (spaces around it trimmed).
    Each { column: String },
    /// One slice per interval: below the first edge, between each two, from the last on.
    Bins { column: String, edges: Vec<f64> },
    /// `min ≤ value < max`, either bound left open.
    Range { column: String, min: Option<f64>, max: Option<f64> },
    /// The value (spaces around it trimmed) is one of these.
    Values { column: String, values: Vec<String> },
    /// The value holds one of these texts, case ignored.
    Contains { column: String, texts: Vec<String> },
    /// Any of these columns is missing (empty, or one of the output's `missing` spellings).
    Missing { columns: Vec<String> },
    /// The rows with these ids.
    Ids(Vec<String>),
}

impl SliceRule {
    /// The columns the rule reads.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            SliceRule::Each { column }
            | SliceRule::Bins { column, .. }
            | SliceRule::Range { column, .. }
            | SliceRule::Values { column, .. }
            | SliceRule::Contains { column, .. } => vec![column.as_str()],
            SliceRule::Missing { columns } => columns.iter().map(String::as_str).collect(),
            SliceRule::Ids(_) => Vec::new(),
        }
    }

    /// How many slices the rule makes, when that is known without the data.
    pub fn count(&self) -> Option<usize> {
        match self {
            SliceRule::Each { .. } => None,
            SliceRule::Bins { edges, .. } => Some(edges.len() + 1),
            _ => Some(1),
        }
    }
}

/// `0.5`, `2`, `1e+06`: a bound as a name shows it.
pub fn show_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

impl SliceSpec {
    /// The name of the rule's one slice (or, for `bins`, of bin `bin`; `each` names its own).
    pub fn name_of(&self, bin: usize) -> String {
        if let Some(name) = &self.name {
            return match &self.rule {
                SliceRule::Bins { .. } => format!("{name}: {}", self.rule_name(bin)),
                _ => name.clone(),
            };
        }
        self.rule_name(bin)
    }

    fn rule_name(&self, bin: usize) -> String {
        let range = |column: &str, min: Option<f64>, max: Option<f64>| match (min, max) {
            (Some(min), Some(max)) => format!("{} ≤ {column} < {}", show_number(min), show_number(max)),
            (Some(min), None) => format!("{column} ≥ {}", show_number(min)),
            (None, Some(max)) => format!("{column} < {}", show_number(max)),
            (None, None) => column.to_string(),
        };
        match &self.rule {
            SliceRule::Each { column } => column.clone(),
            SliceRule::Bins { column, edges } => range(column, bin.checked_sub(1).map(|b| edges[b]), edges.get(bin).copied()),
            SliceRule::Range { column, min, max } => range(column, *min, *max),
            SliceRule::Values { column, values } => format!("{column} = {}", values.join(" or ")),
            SliceRule::Contains { column, texts } => {
                format!("{column} contains {}", texts.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(" or "))
            }
            SliceRule::Missing { columns } => format!("{} missing", or_list(columns)),
            SliceRule::Ids(ids) => format!("{} chosen rows", ids.len()),
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl GradingSpec {
    /// The default `missing` list.
    pub fn default_missing() -> Vec<String> {
        DEFAULT_MISSING.iter().map(|s| s.to_string()).collect()
    }
    /// The missing spellings in words: `empty or "NA"`.
    pub fn missing_text(&self) -> String {
        let words: Vec<String> = self.missing.iter().map(|m| if m.is_empty() { "empty".to_string() } else { format!("{m:?}") }).collect();
        words.join(" or ")
    }
}

impl GradingSpec {
    pub fn compare_for(&self, column: &str) -> CellCompare {
        self.columns.iter().find(|(name, _)| name == column).map(|(_, compare)| compare.clone()).unwrap_or(CellCompare::Auto { tolerance: self.tolerance })
    }
}

#[derive(Debug, Clone)]
pub struct LintSpec {
    pub select: Vec<String>,
    pub zero_at: f64,
}

#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The host's GPUs (indexes) a worker gave the job being graded: never from task.yaml, set
    /// on the job's copy of the spec so that its GPU steps use those devices alone.
    pub gpu_devices: Vec<u32>,
    pub id: TaskId,
    pub title: String,
    pub kind: TaskKind,
    pub time_box: Duration,
    pub image: String,
    /// Images that extend `image` (as python extends python-slim) and that a Python step runs in
    /// when the submission imports a module only they have (`extended_images: [python]`).
    pub extended_images: Vec<String>,
    pub brief: String,
    pub starter: String,
    pub dataset: String,
    pub steps: Vec<StepSpec>,
    /// What is graded: one output or several (`grading:` a list), each scored on its own scale;
    /// the accuracy score is their weighted mean.
    pub outputs: Vec<GradingSpec>,
    /// How accuracy, code quality and runtime combine into the total.
    pub weights: Weights,
    pub lint: LintSpec,
    pub runtime_full_under: Duration,
    pub workspace_cap_bytes: u64,
    pub output_cap_bytes: u64,
    /// The container runtime this task needs at least (`sandbox: { runtime: runsc }`).
    pub min_runtime: crate::sandbox::Runtime,
    /// `check` warns when the untouched starter or a hostile fixture scores above this.
    pub score_floor: f64,
    /// How assessors review it: rubric, blind review, what feedback may tell the candidate.
    pub review: ReviewSpec,
    /// The dry run on public data (`None`: the task declares none).
    pub public_run: Option<PublicRunSpec>,
    /// Which push counts: the last before the deadline (default), or the one the candidate
    /// chooses on their status page (`final_submission: chosen`, as Kaggle lets them).
    pub candidate_chooses_final: bool,
    /// The folder that holds task.yaml.
    pub dir: PathBuf,
    /// The folder that holds `tasks/`, `datasets/` and `runner-images/`.
    pub root: PathBuf,
}

impl TaskSpec {
    pub fn file(&self) -> PathBuf {
        self.dir.join("task.yaml")
    }
    pub fn dataset_dir(&self) -> PathBuf {
        self.root.join("datasets").join(&self.dataset)
    }
    /// Every runner image the task's steps may run in: the task's, then each run choice's, then
    /// the extended ones.
    pub fn images(&self) -> Vec<String> {
        let mut images = vec![self.image.clone()];
        let choices = self.steps.iter().flat_map(|s| &s.choices).filter_map(|c| c.image.clone());
        for image in choices.chain(self.extended_images.iter().cloned()) {
            if !images.contains(&image) {
                images.push(image);
            }
        }
        images
    }

    /// The image R scripts run in: that of the first run choice of an R script that names one.
    pub fn r_image(&self) -> Option<&str> {
        self.steps.iter().flat_map(|s| &s.choices).find(|c| c.when.ends_with(".R") || c.when.ends_with(".r")).and_then(|c| c.image.as_deref())
    }

    pub fn image_dir(&self) -> PathBuf {
        self.root.join("runner-images").join(&self.image)
    }
    /// Where an output's hidden truth lies.
    pub fn truth_path(&self, output: &GradingSpec) -> PathBuf {
        self.dataset_dir().join(&output.truth)
    }
    /// The first (for most tasks, the only) graded output.
    /// The most GPUs any step asks for: what a worker must have to grade the task.
    pub fn gpus(&self) -> u32 {
        self.steps.iter().map(|s| s.gpus).max().unwrap_or(0)
    }

    pub fn primary(&self) -> &GradingSpec {
        &self.outputs[0]
    }
    /// The output graded from the file `name`.
    pub fn output_named(&self, name: &str) -> Option<&GradingSpec> {
        self.outputs.iter().find(|o| o.output == name)
    }
    /// The task as its dry run on public data runs it: each hidden input replaced by its public
    /// stand-in, each truth by its public one, every step's logs the candidate's (nothing hidden
    /// is mounted). `None` when the task declares no public run.
    pub fn public_variant(&self) -> Option<TaskSpec> {
        let run = self.public_run.as_ref()?;
        let mut task = self.clone();
        for step in &mut task.steps {
            for input in &mut step.inputs {
                if let Some((_, public)) = run.inputs.iter().find(|(hidden, _)| hidden == input) {
                    *input = public.clone();
                }
            }
            step.candidate_logs = !step.reads_hidden();
        }
        for output in &mut task.outputs {
            if let Some((_, public)) = run.truths.iter().find(|(name, _)| *name == output.output) {
                output.truth = public.clone();
            }
            // Slices are parts of the hidden rows: the public run has none.
            output.slices.clear();
        }
        // Every step must have lost its hidden inputs, and every truth must be public.
        let all_public = task.steps.iter().all(|s| !s.reads_hidden()) && task.outputs.iter().all(|o| o.truth.starts_with("public/"));
        all_public.then_some(task)
    }

    /// The sum of the steps' timeouts: the runtime score reaches zero there.
    pub fn total_timeout(&self) -> Duration {
        self.steps.iter().map(|step| step.timeout).sum()
    }
}

/// `public_run:` — the dry run on public data that every push also gets, shown to the candidate
/// in full (logs, resource use, the outputs' format check).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicRunSpec {
    /// Each hidden input a step reads, and the public path that stands in for it (same last name).
    pub inputs: Vec<(String, String)>,
    /// Each graded output's public truth.
    pub truths: Vec<(String, String)>,
    /// Whether the candidate sees the dry run's score (the metric on public data).
    pub show_score: bool,
}

/// `review:` — what assessors judge by hand and how it combines with the automatic score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewSpec {
    /// Reviewers see a stable alias instead of the candidate's name until a decision is recorded.
    pub blind: bool,
    /// Released feedback may include the total score (the rubric notes are always released).
    pub release_score: bool,
    /// Share of the automatic score and of the rubric in the overall score (both 0 when there is
    /// no rubric: the overall score is the automatic one).
    pub automatic_weight: f64,
    pub rubric_weight: f64,
    pub criteria: Vec<Criterion>,
}

/// One thing reviewers judge, with its levels from worst to best.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub id: String,
    pub title: String,
    /// Weight among the criteria.
    pub weight: f64,
    /// (name, what this level looks like), worst first; level i of n is worth i/(n-1) of 100.
    pub levels: Vec<(String, String)>,
}

impl Criterion {
    /// 0–100 for a level index.
    pub fn points(&self, level: usize) -> f64 {
        if self.levels.len() < 2 {
            return 0.0;
        }
        100.0 * level.min(self.levels.len() - 1) as f64 / (self.levels.len() - 1) as f64
    }
    pub fn level_index(&self, name: &str) -> Option<usize> {
        self.levels.iter().position(|(level, _)| level == name)
    }
}

impl ReviewSpec {
    pub fn criterion(&self, id: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.id == id)
    }
    /// The rubric's score (0–100) from one level index per criterion (`None`: not scored); `None`
    /// until every criterion has a level.
    pub fn rubric_score(&self, levels: &[Option<usize>]) -> Option<f64> {
        if self.criteria.is_empty() || levels.len() != self.criteria.len() || levels.iter().any(Option::is_none) {
            return None;
        }
        let total: f64 = self.criteria.iter().map(|c| c.weight).sum();
        let sum: f64 = self.criteria.iter().zip(levels).map(|(c, level)| c.weight * c.points(level.unwrap_or(0))).sum();
        Some(if total > 0.0 { sum / total } else { 0.0 })
    }
    /// The overall score from the automatic score and the rubric's (the automatic one alone
    /// while the rubric is not complete, or where there is none).
    pub fn overall(&self, automatic: f64, rubric: Option<f64>) -> f64 {
        match rubric {
            Some(rubric) if self.automatic_weight + self.rubric_weight > 0.0 => {
                (self.automatic_weight * automatic + self.rubric_weight * rubric) / (self.automatic_weight + self.rubric_weight)
            }
            _ => automatic,
        }
    }
    /// The formula in words, for pages and exports.
    pub fn formula(&self) -> String {
        if self.criteria.is_empty() {
            return "overall = automatic score (no rubric)".into();
        }
        let parts: Vec<String> = self.criteria.iter().map(|c| format!("{} × {}", c.weight, c.id)).collect();
        format!(
            "overall = ({} × automatic + {} × rubric) / {}; rubric = mean over reviewers of ({}) / {}, each criterion's level i of n worth 100·i/(n−1)",
            self.automatic_weight,
            self.rubric_weight,
            self.automatic_weight + self.rubric_weight,
            parts.join(" + "),
            self.criteria.iter().map(|c| c.weight).sum::<f64>()
        )
    }
}

/// One problem in a task file: where (`steps[1].timeout`) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", render_problems(file, problems))]
    Invalid { file: PathBuf, problems: Vec<Problem> },
}

impl SpecError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            SpecError::Read { .. } => &[],
            SpecError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|problem| {
            if problem.field.is_empty() {
                format!("{}: {}", file.display(), problem.message)
            } else {
                format!("{}: {}: {}", file.display(), problem.field, problem.message)
            }
        })
        .collect();
    lines.join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Loads and checks `<task_dir>/task.yaml`.
pub fn load(task_dir: &Path) -> Result<TaskSpec, SpecError> {
    let file = task_dir.join("task.yaml");
    let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Read { path: file.clone(), source })?;
    parse(&text, task_dir).map_err(|problems| SpecError::Invalid { file, problems })
}

/// Parses task.yaml text; `task_dir` locates the files it names.
pub fn parse(text: &str, task_dir: &Path) -> Result<TaskSpec, Vec<Problem>> {
    let document: Value = serde_yaml::from_str(text).map_err(|error| {
        let location = error.location().map(|l| format!("line {} column {}", l.line(), l.column())).unwrap_or_default();
        vec![Problem { field: location, message: format!("not valid YAML: {error}") }]
    })?;
    let mut reader = Reader::default();
    let spec = reader.task(&document, task_dir);
    match spec {
        Some(spec) if reader.problems.is_empty() => Ok(spec),
        _ => {
            if reader.problems.is_empty() {
                reader.problem("", "the task could not be read");
            }
            Err(reader.problems)
        }
    }
}

/// Walks the YAML tree, collecting every problem instead of stopping at the first.
#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Reader {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(Problem { field: field.to_string(), message: message.into() });
    }

    /// The mapping at `path`, with its keys checked against `allowed`.
    fn mapping<'v>(&mut self, value: &'v Value, path: &str, allowed: &[&str]) -> Option<&'v Mapping> {
        let Value::Mapping(map) = value else {
            self.problem(path, format!("expected a mapping, got {}", describe(value)));
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(name) if allowed.contains(&name) => {}
                Some(name) => self.problem(&join(path, name), format!("unknown key (expected one of {})", allowed.join(", "))),
                None => self.problem(path, format!("keys must be strings, got {}", describe(key))),
            }
        }
        Some(map)
    }

    fn string(&mut self, map: &Mapping, path: &str, key: &str, required: bool) -> Option<String> {
        let field = join(path, key);
        match map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.problem(&field, "missing (expected a string)");
                }
                None
            }
            Some(Value::String(text)) if text.trim().is_empty() => {
                self.problem(&field, "is empty (expected a string)");
                None
            }
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                self.problem(&field, format!("expected a string, got {}", describe(other)));
                None
            }
        }
    }

    fn number(&mut self, map: &Mapping, path: &str, key: &str) -> Option<f64> {
        let field = join(path, key);
        match map.get(key) {
            None | Some(Value::Null) => {
                self.problem(&field, "missing (expected a number)");
                None
            }
            Some(Value::Number(number)) => number.as_f64().filter(|v| v.is_finite()).or_else(|| {
                self.problem(&field, "expected a finite number");
                None
            }),
            Some(other) => {
                self.problem(&field, format!("expected a number, got {}", describe(other)));
                None
            }
        }
    }

    fn optional_number(&mut self, map: &Mapping, path: &str, key: &str, default: f64) -> f64 {
        if map.get(key).is_none() {
            return default;
        }
        self.number(map, path, key).unwrap_or(default)
    }

    fn duration(&mut self, map: &Mapping, path: &str, key: &str, default: Option<Duration>) -> Option<Duration> {
        let field = join(path, key);
        let Some(text) = self.string(map, path, key, default.is_none()) else {
            return default;
        };
        match parse_duration(&text) {
            Ok(duration) if duration.is_zero() => {
                self.problem(&field, "must be longer than zero");
                None
            }
            Ok(duration) => Some(duration),
            Err(error) => {
                self.problem(&field, error.to_string());
                None
            }
        }
    }

    fn size(&mut self, map: &Mapping, path: &str, key: &str, default: u64) -> u64 {
        let field = join(path, key);
        let Some(text) = self.string(map, path, key, false) else {
            return default;
        };
        parse_size(&text).unwrap_or_else(|error| {
            self.problem(&field, error.to_string());
            default
        })
    }

    fn string_list(&mut self, map: &Mapping, path: &str, key: &str) -> Option<Vec<String>> {
        let field = join(path, key);
        match map.get(key)? {
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::String(text) if !text.trim().is_empty() => out.push(text.clone()),
                        other => self.problem(&format!("{field}[{index}]"), format!("expected a string, got {}", describe(other))),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(&field, format!("expected a list of strings, got {}", describe(other)));
                None
            }
        }
    }

    /// A class label: a string, or a number written as YAML writes it (`3`, `0.5`).
    fn label(&mut self, map: &Mapping, path: &str, key: &str) -> Option<String> {
        match map.get(key) {
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => self.string(map, path, key, false),
        }
    }

    /// A list of class labels, strings or numbers (`classes: [3, 4, 5]`).
    fn label_list(&mut self, map: &Mapping, path: &str, key: &str) -> Option<Vec<String>> {
        let field = join(path, key);
        match map.get(key)? {
            Value::Sequence(items) => {
                let mut out: Vec<String> = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let label = match item {
                        Value::String(text) if !text.trim().is_empty() => text.clone(),
                        Value::Number(number) => number.to_string(),
                        other => {
                            self.problem(&format!("{field}[{index}]"), format!("expected a label (a string or a number), got {}", describe(other)));
                            continue;
                        }
                    };
                    if out.contains(&label) {
                        self.problem(&format!("{field}[{index}]"), format!("{label:?} is listed twice"));
                    }
                    out.push(label);
                }
                Some(out)
            }
            other => {
                self.problem(&field, format!("expected a list of labels, got {}", describe(other)));
                None
            }
        }
    }

    fn task(&mut self, document: &Value, task_dir: &Path) -> Option<TaskSpec> {
        let top = self.mapping(
            document,
            "",
            &[
                "id",
                "title",
                "kind",
                "time_box",
                "image",
                "extended_images",
                "brief",
                "starter",
                "dataset",
                "steps",
                "grading",
                "weights",
                "lint",
                "runtime",
                "storage",
                "sandbox",
                "check",
                "review",
                "public_run",
                "final_submission",
            ],
        )?;
        let root = task_dir.parent().and_then(Path::parent).unwrap_or(Path::new(".")).to_path_buf();

        let id = match self.string(top, "", "id", true).map(|text| TaskId::parse(&text).map_err(|_| text)) {
            Some(Ok(id)) if task_dir.file_name().and_then(|n| n.to_str()) == Some(id.as_str()) => Some(id),
            Some(Ok(id)) => {
                self.problem("id", format!("{:?} does not match the task's folder name {:?}", id.as_str(), task_dir.file_name().unwrap_or_default()));
                None
            }
            Some(Err(text)) => {
                self.problem("id", format!("{text:?} is not a valid id (expected lowercase letters, digits and '-')"));
                None
            }
            None => None,
        };
        let title = self.string(top, "", "title", true);
        let kind = match self.string(top, "", "kind", true).as_deref() {
            Some("model-training") => Some(TaskKind::ModelTraining),
            Some("data-cleaning") => Some(TaskKind::DataCleaning),
            Some("cleaning-then-training") => Some(TaskKind::CleaningThenTraining),
            Some(other) => {
                self.problem("kind", format!("unknown kind {other:?} (expected model-training, data-cleaning or cleaning-then-training)"));
                None
            }
            None => None,
        };
        let time_box = self.duration(top, "", "time_box", None);

        let image = self.string(top, "", "image", true);
        if let Some(problem) = image.as_deref().and_then(|image| image_problem(&root, image)) {
            self.problem("image", problem);
        }
        let extended_images = self.string_list(top, "", "extended_images").unwrap_or_default();
        for (index, name) in extended_images.iter().enumerate() {
            let field = format!("extended_images[{index}]");
            let dir = root.join("runner-images").join(name);
            if let Some(problem) = image_problem(&root, name) {
                self.problem(&field, problem);
            } else if let Some(image) = &image {
                let extends = std::fs::read_to_string(dir.join("extends")).unwrap_or_default();
                if extends.trim() != image {
                    self.problem(&field, format!("{name:?} does not extend the task's image {image:?} (its `extends` file must name it)"));
                } else if !dir.join("modules").is_file() {
                    self.problem(&field, format!("{name:?} has no `modules` file (the modules a submission imports to run in it)"));
                }
            }
        }
        let brief = self.string(top, "", "brief", true);
        if let Some(brief) = &brief {
            self.task_file(task_dir, "brief", brief, false);
        }
        let starter = self.string(top, "", "starter", false).unwrap_or_else(|| "starter".to_string());
        self.task_file(task_dir, "starter", &starter, true);

        let dataset = self.string(top, "", "dataset", true);
        let dataset_dir = dataset.as_ref().map(|name| root.join("datasets").join(name));
        if let (Some(name), Some(dir)) = (&dataset, &dataset_dir) {
            if !is_name(name) {
                self.problem("dataset", format!("{name:?} is not a valid data set name (expected lowercase letters, digits and '-')"));
            } else if !dir.is_dir() {
                self.problem("dataset", format!("no data set {name:?} (expected a folder {})", dir.display()));
            }
        }
        let dataset_dir = dataset_dir.filter(|dir| dir.is_dir());

        let (outputs, weights) = self.outputs(top, kind, dataset_dir.as_deref());
        let truths: Vec<String> = outputs.iter().flatten().map(|g| g.truth.clone()).collect();
        let steps = self.steps(top, dataset_dir.as_deref(), &truths);
        for (index, step) in steps.iter().flatten().enumerate() {
            for (at, choice) in step.choices.iter().enumerate() {
                let Some(image) = &choice.image else { continue };
                let field = format!("steps[{index}].run[{at}].image");
                if let Some(problem) = image_problem(&root, image) {
                    self.problem(&field, problem);
                }
            }
        }
        let lint = self.lint(top);

        let mut runtime_full_under = Some(Duration::from_secs(30));
        if let Some(value) = top.get("runtime") {
            if let Some(map) = self.mapping(value, "runtime", &["full_under"]) {
                runtime_full_under = self.duration(map, "runtime", "full_under", None);
            }
        }
        let (mut workspace_cap_bytes, mut output_cap_bytes) = (DEFAULT_STORAGE_CAP, DEFAULT_STORAGE_CAP);
        if let Some(value) = top.get("storage") {
            if let Some(map) = self.mapping(value, "storage", &["workspace", "output"]) {
                workspace_cap_bytes = self.size(map, "storage", "workspace", DEFAULT_STORAGE_CAP);
                output_cap_bytes = self.size(map, "storage", "output", DEFAULT_STORAGE_CAP);
            }
        }
        let mut min_runtime = crate::sandbox::Runtime::Runc;
        if let Some(value) = top.get("sandbox") {
            if let Some(map) = self.mapping(value, "sandbox", &["runtime"]) {
                if let Some(text) = self.string(map, "sandbox", "runtime", false) {
                    match crate::sandbox::Runtime::parse(&text) {
                        Some(runtime) => min_runtime = runtime,
                        None => self.problem("sandbox.runtime", format!("{text:?} is not a runtime (expected runc or runsc)")),
                    }
                }
            }
        }

        let mut score_floor = DEFAULT_SCORE_FLOOR;
        if let Some(value) = top.get("check") {
            if let Some(map) = self.mapping(value, "check", &["score_floor"]) {
                score_floor = self.optional_number(map, "check", "score_floor", DEFAULT_SCORE_FLOOR);
                if !(0.0..=100.0).contains(&score_floor) {
                    self.problem("check.score_floor", format!("{score_floor} is out of range (expected 0 to 100)"));
                }
            }
        }

        let candidate_chooses_final = match self.string(top, "", "final_submission", false).as_deref() {
            None | Some("last") => false,
            Some("chosen") => true,
            Some(other) => {
                self.problem("final_submission", format!("{other:?} (expected last or chosen)"));
                false
            }
        };
        let public_run = top.get("public_run").and_then(|value| self.public_run(value, steps.as_deref(), outputs.as_deref(), dataset_dir.as_deref()));
        let review = match top.get("review") {
            Some(value) => self.review(value),
            None => ReviewSpec::default(),
        };

        Some(TaskSpec {
            gpu_devices: Vec::new(),
            id: id?,
            title: title?,
            kind: kind?,
            time_box: time_box?,
            image: image?,
            extended_images,
            brief: brief?,
            starter,
            dataset: dataset?,
            steps: steps?,
            outputs: outputs?,
            weights: weights?,
            lint: lint?,
            runtime_full_under: runtime_full_under?,
            workspace_cap_bytes,
            output_cap_bytes,
            min_runtime,
            score_floor,
            review,
            public_run,
            candidate_chooses_final,
            dir: task_dir.to_path_buf(),
            root,
        })
    }

    /// Checks that a path named in the task file stays inside the task folder and exists.
    fn task_file(&mut self, task_dir: &Path, field: &str, relative: &str, want_dir: bool) {
        let what = if want_dir { "folder" } else { "file" };
        if !is_plain_relative(relative) {
            self.problem(field, format!("{relative:?} must be a relative path inside the task folder"));
            return;
        }
        let path = task_dir.join(relative);
        let exists = if want_dir { path.is_dir() } else { path.is_file() };
        if !exists {
            self.problem(field, format!("{relative:?}: no such {what} (expected {})", path.display()));
        }
    }

    fn steps(&mut self, top: &Mapping, dataset_dir: Option<&Path>, truths: &[String]) -> Option<Vec<StepSpec>> {
        let Some(value) = top.get("steps") else {
            self.problem("steps", "missing (expected a list of steps)");
            return None;
        };
        let Value::Sequence(items) = value else {
            self.problem("steps", format!("expected a list of steps, got {}", describe(value)));
            return None;
        };
        if items.is_empty() {
            self.problem("steps", "is empty (expected at least one step)");
            return None;
        }
        let mut steps = Vec::new();
        let mut complete = true;
        let mut tainted = false;
        for (index, item) in items.iter().enumerate() {
            let path = format!("steps[{index}]");
            match self.step(item, &path, dataset_dir, truths) {
                Some((mut step, explicit)) => {
                    // Steps share /workspace and /output: what one step read of hidden data, every
                    // later step can read back and print. So by default a step's logs are the
                    // candidate's only while neither it nor any step before it read hidden input.
                    tainted |= step.reads_hidden();
                    if !explicit {
                        step.candidate_logs = !tainted;
                    }
                    if steps.iter().any(|s: &StepSpec| s.name == step.name) {
                        self.problem(&join(&path, "name"), format!("{:?} is used by an earlier step (names must be unique)", step.name));
                    }
                    steps.push(step);
                }
                None => complete = false,
            }
        }
        complete.then_some(steps)
    }

    /// `run:` — a command, or a list of `{when: FILE, run: COMMAND}` choices (the first whose
    /// file the submission holds is run; the first when none is).
    fn run_choices(&mut self, map: &Mapping, path: &str) -> (Option<String>, Vec<RunChoice>) {
        let Some(Value::Sequence(items)) = map.get("run") else { return (self.string(map, path, "run", true), Vec::new()) };
        let field = join(path, "run");
        if items.is_empty() {
            self.problem(&field, "is empty (expected a command, or a list of {when: FILE, run: COMMAND})");
            return (None, Vec::new());
        }
        let mut choices = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let at = format!("{field}[{index}]");
            let Some(choice) = self.mapping(item, &at, &["when", "language", "run", "image"]) else { continue };
            let (when, run) = (self.string(choice, &at, "when", true), self.string(choice, &at, "run", true));
            let image = self.string(choice, &at, "image", false);
            let language = self.string(choice, &at, "language", false).map(|l| l.to_ascii_lowercase());
            if let Some(when) = &when {
                if !is_plain_relative(when) {
                    self.problem(&join(&at, "when"), format!("{when:?} must be a relative path inside the submission (no '..', not absolute)"));
                }
                if language.is_some() && !when.ends_with(".ipynb") {
                    self.problem(&join(&at, "language"), format!("only a notebook's kernel has a language, and {when:?} is not a .ipynb file"));
                }
                if choices.iter().any(|c: &RunChoice| &c.when == when && (c.language.is_none() || c.language == language)) {
                    self.problem(&join(&at, "when"), format!("{when:?} is chosen by an earlier entry already"));
                }
            }
            if let (Some(when), Some(run)) = (when, run) {
                choices.push(RunChoice { when, run, image, language });
            }
        }
        (choices.first().map(|c| c.run.clone()), choices)
    }

    /// One step, and whether it said `candidate_logs` itself (else [`Reader::steps`] decides).
    fn step(&mut self, value: &Value, path: &str, dataset_dir: Option<&Path>, truths: &[String]) -> Option<(StepSpec, bool)> {
        let map = self.mapping(value, path, &["name", "run", "inputs", "timeout", "memory", "cpus", "gpus", "candidate_logs"])?;
        let name = self.string(map, path, "name", true);
        if let Some(name) = &name {
            if !is_name(name) {
                self.problem(&join(path, "name"), format!("{name:?} is not a valid step name (expected lowercase letters, digits and '-')"));
            }
        }
        let (run, choices) = self.run_choices(map, path);
        let inputs = self.string_list(map, path, "inputs").unwrap_or_default();
        let mut seen = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            let field = format!("{path}.inputs[{index}]");
            if !is_plain_relative(input) {
                self.problem(&field, format!("{input:?} must be a relative path inside the data set (no '..', not absolute)"));
                continue;
            }
            let base = last_component(input);
            if seen.contains(&base) {
                self.problem(&field, format!("{input:?} would appear at /data/{base}, as an earlier input does"));
            }
            seen.push(base);
            if !(input == "public" || input.starts_with("public/") || input == "hidden" || input.starts_with("hidden/")) {
                self.problem(&field, format!("{input:?} must lie under public/ or hidden/"));
            }
            for truth in truths {
                let input_trimmed = input.trim_end_matches('/');
                if truth == input_trimmed || truth.starts_with(&format!("{input_trimmed}/")) {
                    self.problem(&field, format!("{input:?} would hand the hidden truth {truth:?} to the container"));
                }
            }
            if let Some(dir) = dataset_dir {
                if !dir.join(input).exists() {
                    self.problem(&field, format!("{input:?}: no such file or folder in {}", dir.display()));
                }
            }
        }
        let timeout = self.duration(map, path, "timeout", Some(DEFAULT_STEP_TIMEOUT));
        if let Some(timeout) = timeout {
            if timeout > MAX_TIMEOUT {
                self.problem(&join(path, "timeout"), "must be at most 24h");
            }
        }
        let memory_bytes = self.size(map, path, "memory", DEFAULT_STEP_MEMORY);
        if memory_bytes < MIN_MEMORY {
            self.problem(&join(path, "memory"), "must be at least 32MiB");
        }
        let cpus = self.optional_number(map, path, "cpus", DEFAULT_STEP_CPUS);
        if !(cpus > 0.0 && cpus <= 64.0) {
            self.problem(&join(path, "cpus"), format!("{cpus} is out of range (expected more than 0 and at most 64)"));
        }
        let gpus = match map.get("gpus") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= MAX_GPUS) => n.as_u64().unwrap_or(0) as u32,
            Some(other) => {
                self.problem(&join(path, "gpus"), format!("expected a whole number from 0 to {MAX_GPUS}, got {}", describe(other)));
                0
            }
        };
        let candidate_logs = match map.get("candidate_logs") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.problem(&join(path, "candidate_logs"), format!("expected true or false, got {}", describe(other)));
                Some(false)
            }
        };
        let step =
            StepSpec { name: name?, run: run?, choices, inputs, timeout: timeout?, memory_bytes, cpus, gpus, candidate_logs: candidate_logs.unwrap_or(false) };
        Some((step, candidate_logs.is_some()))
    }

    /// `grading:` — one output (a mapping, as tasks have always written it) or a list of outputs,
    /// each with its own file, truth, metric, scale and `weight` (its share of the accuracy score).
    /// Returns the outputs and the component weights (`grading.weights` in the single form, the
    /// top-level `weights:` in either).
    fn outputs(&mut self, top: &Mapping, kind: Option<TaskKind>, dataset_dir: Option<&Path>) -> (Option<Vec<GradingSpec>>, Option<Weights>) {
        let top_weights = top.get("weights").map(|value| self.weights(value, "weights"));
        let Some(value) = top.get("grading") else {
            self.problem("grading", "missing (expected a mapping, or a list of outputs)");
            return (None, top_weights.flatten());
        };
        let (outputs, inner_weights) = match value {
            Value::Sequence(items) => {
                if items.is_empty() {
                    self.problem("grading", "is empty (expected at least one output)");
                    return (None, top_weights.flatten());
                }
                let mut outputs = Vec::new();
                let mut complete = true;
                for (index, item) in items.iter().enumerate() {
                    let path = format!("grading[{index}]");
                    match self.grading(item, &path, true, kind, dataset_dir) {
                        Some((output, _)) => {
                            if outputs.iter().any(|o: &GradingSpec| o.output == output.output) {
                                self.problem(&join(&path, "output"), format!("{:?} is graded by an earlier output (file names must be unique)", output.output));
                            }
                            outputs.push(output);
                        }
                        None => complete = false,
                    }
                }
                (complete.then_some(outputs), None)
            }
            single => match self.grading(single, "grading", false, kind, dataset_dir) {
                Some((output, weights)) => (Some(vec![output]), weights),
                None => (None, None),
            },
        };
        if let (Some(outputs), Some(TaskKind::CleaningThenTraining)) = (&outputs, kind) {
            let tables = outputs.iter().filter(|o| o.metric.input() == MetricInput::Table).count();
            if tables == 0 || tables == outputs.len() {
                self.problem(
                    "grading",
                    "a cleaning-then-training task grades a cleaned table (cell_accuracy) and at least one model output (a list of outputs)",
                );
            }
        }
        let weights = match (top_weights, inner_weights) {
            (Some(_), Some(_)) => {
                self.problem("weights", "given twice (here and under grading.weights): keep one");
                None
            }
            (Some(weights), None) | (None, Some(weights)) => weights,
            (None, None) => Some(Weights { accuracy: 70.0, code_quality: 15.0, runtime: 15.0, gated: true }),
        };
        (outputs, weights)
    }

    /// `{ accuracy, code_quality, runtime, gated }` at `path`; `None` when it is not a mapping.
    fn weights(&mut self, value: &Value, path: &str) -> Option<Weights> {
        self.mapping(value, path, &["accuracy", "code_quality", "runtime", "gated"]).map(|weights_map| {
            let mut weight = |key: &str| {
                let value = self.optional_number(weights_map, path, key, 0.0);
                if value < 0.0 {
                    self.problem(&join(path, key), "must not be negative");
                }
                value
            };
            let (accuracy, code_quality, runtime) = (weight("accuracy"), weight("code_quality"), weight("runtime"));
            let gated = match weights_map.get("gated") {
                None => true,
                Some(Value::Bool(gated)) => *gated,
                Some(other) => {
                    self.problem(&join(path, "gated"), format!("expected true or false, got {}", describe(other)));
                    true
                }
            };
            let weights = Weights { accuracy, code_quality, runtime, gated };
            if weights.accuracy + weights.code_quality + weights.runtime <= 0.0 {
                self.problem(path, "must add up to more than zero");
            }
            weights
        })
    }

    /// One output at `path`; `in_list` when it is an entry of a list (it may carry a `weight`,
    /// not the component `weights`). Returns the output and, in the single form, its `weights`.
    fn grading(
        &mut self,
        value: &Value,
        path: &str,
        in_list: bool,
        kind: Option<TaskKind>,
        dataset_dir: Option<&Path>,
    ) -> Option<(GradingSpec, Option<Option<Weights>>)> {
        let map = self.mapping(
            value,
            path,
            if in_list {
                &["output", "truth", "id", "key", "target", "positive", "classes", "columns", "metric", "scale", "weight", "tolerance", "missing", "slices"]
            } else {
                &["output", "truth", "id", "key", "target", "positive", "classes", "columns", "metric", "scale", "weights", "tolerance", "missing", "slices"]
            },
        )?;
        let output = self.string(map, path, "output", true);
        if let Some(output) = &output {
            if output.contains('/') || output == "." || output == ".." {
                self.problem(&join(path, "output"), format!("{output:?} must be a plain file name (it is read from /output)"));
            }
        }
        let truth = self.string(map, path, "truth", true);
        if let Some(truth) = &truth {
            if !is_plain_relative(truth) || !truth.starts_with("hidden/") {
                self.problem(&join(path, "truth"), format!("{truth:?} must be a relative path under hidden/ in the data set"));
            } else if let Some(dir) = dataset_dir {
                if !dir.join(truth).is_file() {
                    self.problem(&join(path, "truth"), format!("{truth:?}: no such file in {}", dir.display()));
                }
            }
        }
        let metric = match self.string(map, path, "metric", true) {
            Some(name) => match Metric::from_name(&name) {
                Some(metric) => Some(metric),
                None => {
                    let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                    self.problem(&join(path, "metric"), format!("unknown metric {name:?} (expected one of {})", known.join(", ")));
                    None
                }
            },
            None => None,
        };
        // In a cleaning-then-training task each output is one or the other, as its metric says.
        let chained = kind == Some(TaskKind::CleaningThenTraining);
        let kind = match kind {
            Some(TaskKind::CleaningThenTraining) => {
                metric.map(|m| if m.input() == MetricInput::Table { TaskKind::DataCleaning } else { TaskKind::ModelTraining })
            }
            other => other,
        };
        let cleaning = kind == Some(TaskKind::DataCleaning);
        let id = if cleaning {
            if map.contains_key("id") {
                let who = if chained { "a cleaned table" } else { "a data-cleaning task" };
                self.problem(&join(path, "id"), format!("{who} names its row key with `key` (or none, to match whole rows)"));
            }
            self.string(map, path, "key", false)
        } else {
            if map.contains_key("key") {
                let who = if chained { "a model's output" } else { "a model-training task" };
                self.problem(&join(path, "key"), format!("{who} names its id column with `id`"));
            }
            self.string(map, path, "id", kind.is_some())
        };
        let target = self.string(map, path, "target", false);
        let positive = self.label(map, path, "positive");
        let classes = self.label_list(map, path, "classes");
        if let (Some(metric), Some(kind)) = (metric, kind) {
            let fits = match kind {
                TaskKind::ModelTraining => metric.input() != MetricInput::Table,
                TaskKind::DataCleaning => metric.input() == MetricInput::Table,
                TaskKind::CleaningThenTraining => true,
            };
            if !fits {
                self.problem(&join(path, "metric"), format!("{} does not fit a {} task", metric.name(), kind.as_str()));
            }
            if kind == TaskKind::ModelTraining && target.is_none() {
                let who = if chained { "a model's output" } else { "a model-training task" };
                self.problem(&join(path, "target"), format!("missing ({who} names the predicted column)"));
            }
            if metric.needs_positive() && positive.is_none() {
                self.problem(&join(path, "positive"), format!("missing ({} is binary: name the positive label)", metric.name()));
            }
            if cleaning && target.is_some() {
                self.problem(&join(path, "target"), "a data-cleaning task compares whole tables; it has no target column");
            }
        }
        let columns = match map.get("columns") {
            None => Vec::new(),
            Some(value) => self.columns(value, &join(path, "columns")),
        };
        let scale = match map.get("scale") {
            Some(value) => self.mapping(value, &join(path, "scale"), &["zero_at", "full_at"]).and_then(|scale_map| {
                let zero_at = self.number(scale_map, &join(path, "scale"), "zero_at");
                let full_at = self.number(scale_map, &join(path, "scale"), "full_at");
                let scale = Scale { zero_at: zero_at?, full_at: full_at? };
                if scale.zero_at == scale.full_at {
                    self.problem(&join(path, "scale"), "zero_at and full_at must differ");
                } else if let Some(metric) = metric {
                    if metric.higher_is_better() != (scale.full_at > scale.zero_at) {
                        let direction = if metric.higher_is_better() { "higher" } else { "lower" };
                        self.problem(&join(path, "scale"), format!("{direction} {} is better, so full_at must be {direction} than zero_at", metric.name()));
                    }
                }
                Some(scale)
            }),
            None => {
                self.problem(&join(path, "scale"), "missing (expected { zero_at: N, full_at: N })");
                None
            }
        };
        let weights = if in_list { None } else { map.get("weights").map(|value| self.weights(value, &join(path, "weights"))) };
        let weight = if in_list { self.optional_number(map, path, "weight", 1.0) } else { 1.0 };
        if weight <= 0.0 {
            self.problem(&join(path, "weight"), format!("{weight} must be more than zero (an output that does not count has no place here)"));
        }
        let tolerance = self.optional_number(map, path, "tolerance", DEFAULT_TOLERANCE);
        if tolerance < 0.0 {
            self.problem(&join(path, "tolerance"), "must not be negative");
        }
        let mut missing = GradingSpec::default_missing();
        if let Some(value) = map.get("missing") {
            if kind != Some(TaskKind::DataCleaning) {
                self.problem(&join(path, "missing"), "only a cleaned table (cell_accuracy) compares missing cells (leave it out)");
            }
            match value {
                Value::Sequence(items) => {
                    missing.clear();
                    for (index, item) in items.iter().enumerate() {
                        match item {
                            Value::String(text) if !missing.contains(text) => missing.push(text.clone()),
                            Value::String(text) => self.problem(&format!("{path}.missing[{index}]"), format!("{text:?} is listed twice")),
                            other => self.problem(
                                &format!("{path}.missing[{index}]"),
                                format!("expected a spelling of missing as a string (\"NA\", \"\"), got {}", describe(other)),
                            ),
                        }
                    }
                    if !missing.iter().any(String::is_empty) {
                        // A CSV cannot tell an empty string from no value: an empty cell is always missing.
                        missing.insert(0, String::new());
                    }
                }
                other => self.problem(&join(path, "missing"), format!("expected a list of spellings like [\"\", \"NA\"], got {}", describe(other))),
            }
        }
        let slices = match map.get("slices") {
            None => Vec::new(),
            Some(value) => {
                if cleaning && id.is_none() && map.contains_key("metric") {
                    self.problem(&join(path, "slices"), "slices need the rows' key: name it with `key`");
                }
                self.slices(value, &join(path, "slices"), dataset_dir)
            }
        };
        let spec = GradingSpec {
            output: output?,
            truth: truth?,
            id,
            target,
            positive,
            classes,
            columns,
            metric: metric?,
            scale: scale?,
            weight,
            tolerance,
            missing,
            slices,
        };
        Some((spec, weights))
    }

    /// `slices: [{ name?, from?, column, each | bins | min/max | values | contains } | { name?,
    /// from?, missing: [columns] } | { name, ids: [...] }]`.
    fn slices(&mut self, value: &Value, slices_path: &str, dataset_dir: Option<&Path>) -> Vec<SliceSpec> {
        let Value::Sequence(items) = value else {
            self.problem(slices_path, format!("expected a list of slices, got {}", describe(value)));
            return Vec::new();
        };
        let mut out: Vec<SliceSpec> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let path = format!("{slices_path}[{index}]");
            let Some(map) = self.mapping(item, &path, &["name", "from", "column", "each", "bins", "min", "max", "values", "contains", "missing", "ids"]) else {
                continue;
            };
            let name = self.string(map, &path, "name", false);
            let from = self.string(map, &path, "from", false);
            if let Some(from) = &from {
                if !is_plain_relative(from) || !from.starts_with("hidden/") {
                    self.problem(&join(&path, "from"), format!("{from:?} must be a relative path under hidden/ in the data set"));
                } else if let Some(dir) = dataset_dir {
                    if !dir.join(from).is_file() {
                        self.problem(&join(&path, "from"), format!("{from:?}: no such file in {}", dir.display()));
                    }
                }
            }
            let kinds: Vec<&str> =
                ["each", "bins", "min", "max", "values", "contains", "missing", "ids"].into_iter().filter(|k| map.contains_key(*k)).collect();
            let range = kinds.iter().all(|k| *k == "min" || *k == "max") && !kinds.is_empty();
            if kinds.len() != 1 && !range {
                let found = if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") };
                self.problem(&path, format!("expected one rule: each, bins, min/max, values, contains, missing or ids (found {found})"));
                continue;
            }
            let column = if map.contains_key("column") { self.string(map, &path, "column", true) } else { None };
            let rule = match kinds[0] {
                _ if kinds[0] != "missing" && kinds[0] != "ids" && !map.contains_key("column") => {
                    self.problem(&join(&path, "column"), format!("missing (the column `{}` reads)", kinds[0]));
                    None
                }
                "each" => {
                    if map.get("each") != Some(&Value::Bool(true)) {
                        self.problem(&join(&path, "each"), "expected `each: true` (one slice per value of the column)");
                    }
                    column.map(|column| SliceRule::Each { column })
                }
                "bins" => {
                    let edges = self.number_list(map, &path, "bins");
                    if edges.is_empty() || edges.windows(2).any(|w| w[0] >= w[1]) {
                        self.problem(&join(&path, "bins"), "expected edges in rising order, like [0.5, 1, 2]");
                    }
                    if edges.len() + 1 > MAX_SLICES {
                        self.problem(&join(&path, "bins"), format!("{} edges make more than {MAX_SLICES} slices", edges.len()));
                    }
                    column.map(|column| SliceRule::Bins { column, edges })
                }
                "min" | "max" => {
                    let min = map.contains_key("min").then(|| self.number(map, &path, "min")).flatten();
                    let max = map.contains_key("max").then(|| self.number(map, &path, "max")).flatten();
                    if let (Some(min), Some(max)) = (min, max) {
                        if min >= max {
                            self.problem(&path, format!("min {min} must be below max {max} (a slice takes min ≤ value < max)"));
                        }
                    }
                    column.map(|column| SliceRule::Range { column, min, max })
                }
                "values" | "contains" => {
                    let key = kinds[0];
                    let texts = self.label_list(map, &path, key).unwrap_or_default();
                    if texts.is_empty() {
                        self.problem(&join(&path, key), "expected a list of one or more values");
                    }
                    column.map(|column| match key {
                        "values" => SliceRule::Values { column, values: texts.iter().map(|t| t.trim().to_string()).collect() },
                        _ => SliceRule::Contains { column, texts: texts.iter().map(|t| t.to_lowercase()).collect() },
                    })
                }
                "missing" => {
                    if map.contains_key("column") {
                        self.problem(&join(&path, "column"), "`missing` names its columns itself: missing: [x, y, z]");
                    }
                    let columns = self.string_list(map, &path, "missing").unwrap_or_default();
                    if columns.is_empty() {
                        self.problem(&join(&path, "missing"), "expected a list of columns, like [bill_length_mm, body_mass_g]");
                    }
                    Some(SliceRule::Missing { columns })
                }
                _ => {
                    if from.is_some() || map.contains_key("column") {
                        self.problem(&path, "`ids` lists the rows itself: leave out from and column");
                    }
                    if name.is_none() {
                        self.problem(&join(&path, "name"), "missing (a slice of chosen rows needs a name that says what they are)");
                    }
                    let ids = self.label_list(map, &path, "ids").unwrap_or_default();
                    if ids.is_empty() {
                        self.problem(&join(&path, "ids"), "expected a list of one or more ids");
                    }
                    Some(SliceRule::Ids(ids.iter().map(|id| id.trim().to_string()).collect()))
                }
            };
            if let Some(rule) = rule {
                out.push(SliceSpec { name, from, rule });
            }
        }
        let known: usize = out.iter().filter_map(|s| s.rule.count()).sum();
        if known > MAX_SLICES {
            self.problem(slices_path, format!("{known} slices; at most {MAX_SLICES} per output"));
        }
        let mut names: Vec<String> = Vec::new();
        for (index, slice) in out.iter().enumerate() {
            let Some(count) = slice.rule.count() else { continue };
            for bin in 0..count {
                let name = slice.name_of(bin);
                if names.contains(&name) {
                    self.problem(&format!("{slices_path}[{index}]"), format!("the name {name:?} is used twice"));
                }
                names.push(name);
            }
        }
        out
    }

    fn number_list(&mut self, map: &Mapping, path: &str, key: &str) -> Vec<f64> {
        let field = join(path, key);
        match map.get(key) {
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| match item {
                    Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => n.as_f64(),
                    other => {
                        self.problem(&format!("{field}[{index}]"), format!("expected a finite number, got {}", describe(other)));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.problem(&field, format!("expected a list of numbers, got {}", describe(other)));
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// `columns: { name: { compare: number, tolerance: 0.01 } | { compare: text, trim: true, case: insensitive } | { compare: date } }`
    fn columns(&mut self, value: &Value, columns_path: &str) -> Vec<(String, CellCompare)> {
        let Value::Mapping(map) = value else {
            self.problem(columns_path, format!("expected a mapping of column names, got {}", describe(value)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, rule) in map {
            let Some(name) = name.as_str() else {
                self.problem(columns_path, "column names must be strings");
                continue;
            };
            let path = format!("{columns_path}.{name}");
            let Some(rule) = self.mapping(rule, &path, &["compare", "tolerance", "trim", "case"]) else { continue };
            let compare = self.string(rule, &path, "compare", true).unwrap_or_default();
            let flag = |reader: &mut Reader, key: &str, default: bool| match rule.get(key) {
                None => default,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    reader.problem(&join(&path, key), format!("expected true or false, got {}", describe(other)));
                    default
                }
            };
            let compare = match compare.as_str() {
                "auto" => CellCompare::Auto { tolerance: self.optional_number(rule, &path, "tolerance", DEFAULT_TOLERANCE) },
                "number" => CellCompare::Number { tolerance: self.optional_number(rule, &path, "tolerance", DEFAULT_TOLERANCE) },
                "text" => {
                    let trim = flag(self, "trim", false);
                    let case_sensitive = match self.string(rule, &path, "case", false).as_deref() {
                        None | Some("sensitive") => true,
                        Some("insensitive") => false,
                        Some(other) => {
                            self.problem(&join(&path, "case"), format!("{other:?} (expected sensitive or insensitive)"));
                            true
                        }
                    };
                    CellCompare::Text { trim, case_sensitive }
                }
                "date" => CellCompare::Date,
                "" => continue,
                other => {
                    self.problem(&join(&path, "compare"), format!("unknown comparison {other:?} (expected auto, number, text or date)"));
                    continue;
                }
            };
            out.push((name.to_string(), compare));
        }
        out
    }

    fn boolean(&mut self, map: &Mapping, path: &str, key: &str, default: bool) -> bool {
        match map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(value)) => *value,
            Some(other) => {
                self.problem(&join(path, key), format!("expected true or false, got {}", describe(other)));
                default
            }
        }
    }

    /// `review: { blind, release_score, weights: { automatic, rubric }, criteria: [...] }`.
    fn review(&mut self, value: &Value) -> ReviewSpec {
        let mut spec = ReviewSpec::default();
        let Some(map) = self.mapping(value, "review", &["blind", "release_score", "weights", "criteria"]) else {
            return spec;
        };
        spec.blind = self.boolean(map, "review", "blind", false);
        spec.release_score = self.boolean(map, "review", "release_score", false);
        let mut has_rubric = false;
        if let Some(value) = map.get("criteria") {
            let Value::Sequence(items) = value else {
                self.problem("review.criteria", format!("expected a list of criteria, got {}", describe(value)));
                return spec;
            };
            has_rubric = !items.is_empty();
            let mut seen: Vec<String> = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let path = format!("review.criteria[{index}]");
                let Some(c) = self.mapping(item, &path, &["id", "title", "weight", "levels"]) else { continue };
                let id = self.string(c, &path, "id", true);
                if let Some(id) = &id {
                    if !is_name(id) {
                        self.problem(&join(&path, "id"), format!("{id:?} is not a valid id (expected lowercase letters, digits, '-' and '_')"));
                    } else if seen.contains(id) {
                        self.problem(&join(&path, "id"), format!("{id:?} is listed twice"));
                    }
                    seen.push(id.clone());
                }
                let title = self.string(c, &path, "title", true);
                let weight = self.optional_number(c, &path, "weight", 1.0);
                if weight <= 0.0 {
                    self.problem(&join(&path, "weight"), format!("{weight} must be more than zero"));
                }
                let levels = self.levels(c, &path);
                if let (Some(id), Some(title), Some(levels)) = (id, title, levels) {
                    spec.criteria.push(Criterion { id, title, weight, levels });
                }
            }
            if items.is_empty() {
                self.problem("review.criteria", "is empty (expected at least one criterion, or leave criteria out)");
            }
        }
        match map.get("weights") {
            Some(value) => {
                if let Some(w) = self.mapping(value, "review.weights", &["automatic", "rubric"]) {
                    spec.automatic_weight = self.number(w, "review.weights", "automatic").unwrap_or(0.0);
                    spec.rubric_weight = self.number(w, "review.weights", "rubric").unwrap_or(0.0);
                    for (key, weight) in [("automatic", spec.automatic_weight), ("rubric", spec.rubric_weight)] {
                        if weight < 0.0 {
                            self.problem(&format!("review.weights.{key}"), format!("{weight} must not be negative"));
                        }
                    }
                    if spec.automatic_weight + spec.rubric_weight <= 0.0 {
                        self.problem("review.weights", "the two weights sum to zero (expected, for example, { automatic: 70, rubric: 30 })");
                    }
                    if !has_rubric && spec.rubric_weight > 0.0 {
                        self.problem("review.weights.rubric", "weighs a rubric that has no criteria (add review.criteria)");
                    }
                }
            }
            None if has_rubric => {
                self.problem("review.weights", "missing (expected how the rubric combines with the automatic score, for example { automatic: 70, rubric: 30 })")
            }
            None => {}
        }
        spec
    }

    /// `levels:` — a list, worst first, of one-key mappings `name: what this level looks like`.
    fn levels(&mut self, c: &Mapping, path: &str) -> Option<Vec<(String, String)>> {
        let field = join(path, "levels");
        let Some(value) = c.get("levels") else {
            self.problem(&field, "missing (expected a list, worst first, of `name: what this level looks like`)");
            return None;
        };
        let Value::Sequence(items) = value else {
            self.problem(&field, format!("expected a list of `name: description`, got {}", describe(value)));
            return None;
        };
        let mut levels: Vec<(String, String)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let at = format!("{field}[{index}]");
            match item {
                Value::Mapping(one) if one.len() == 1 => {
                    let (key, text) = one.iter().next().expect("one entry");
                    let name = match key {
                        Value::String(name) if !name.trim().is_empty() => name.trim().to_string(),
                        other => {
                            self.problem(&at, format!("the level's name must be a string, got {}", describe(other)));
                            continue;
                        }
                    };
                    let description = match text {
                        Value::String(text) if !text.trim().is_empty() => text.trim().to_string(),
                        other => {
                            self.problem(&join(&at, &name), format!("expected a sentence of what this level looks like, got {}", describe(other)));
                            continue;
                        }
                    };
                    if levels.iter().any(|(other, _)| other == &name) {
                        self.problem(&at, format!("level {name:?} is listed twice"));
                        continue;
                    }
                    levels.push((name, description));
                }
                other => self.problem(&at, format!("expected one `name: what this level looks like`, got {}", describe(other))),
            }
        }
        if items.len() < 2 {
            self.problem(&field, format!("has {} level(s) (expected at least 2, worst first)", items.len()));
            return None;
        }
        (levels.len() == items.len()).then_some(levels)
    }

    /// `public_run: { inputs: { hidden/x: public/…/x }, truths: { output: public/… }, show_score }`:
    /// every hidden input a step reads has a public stand-in with the same last name (so that it
    /// appears at the same `/data/<name>`), and every graded output a public truth.
    fn public_run(&mut self, value: &Value, steps: Option<&[StepSpec]>, outputs: Option<&[GradingSpec]>, dataset_dir: Option<&Path>) -> Option<PublicRunSpec> {
        let path = "public_run";
        let map = self.mapping(value, path, &["inputs", "truths", "show_score"])?;
        let show_score = self.boolean(map, path, "show_score", false);
        let read = |reader: &mut Reader, key: &str| -> Vec<(String, String)> {
            let field = join(path, key);
            match map.get(key) {
                None => {
                    reader.problem(&field, "missing (expected a mapping)");
                    Vec::new()
                }
                Some(Value::Mapping(entries)) => entries
                    .iter()
                    .filter_map(|(k, v)| match (k.as_str(), v.as_str()) {
                        (Some(k), Some(v)) => Some((k.to_string(), v.to_string())),
                        (Some(k), None) => {
                            reader.problem(&join(&field, k), format!("expected a path under public/, got {}", describe(v)));
                            None
                        }
                        _ => {
                            reader.problem(&field, "keys must be strings");
                            None
                        }
                    })
                    .collect(),
                Some(other) => {
                    reader.problem(&field, format!("expected a mapping, got {}", describe(other)));
                    Vec::new()
                }
            }
        };
        let inputs = read(self, "inputs");
        let truths = read(self, "truths");
        let public_path = |reader: &mut Reader, field: &str, target: &str, want_file: bool| {
            if !is_plain_relative(target) || !target.starts_with("public/") {
                reader.problem(field, format!("{target:?} must be a relative path under public/ in the data set"));
            } else if let Some(dir) = dataset_dir {
                let path = dir.join(target);
                let exists = if want_file { path.is_file() } else { path.exists() };
                if !exists {
                    reader.problem(field, format!("{target:?}: no such {} in {}", if want_file { "file" } else { "file or folder" }, dir.display()));
                }
            }
        };
        let hidden: Vec<&String> = steps.unwrap_or_default().iter().flat_map(|s| s.inputs.iter()).filter(|i| i.starts_with("hidden")).collect();
        for (from, to) in &inputs {
            let field = join(&join(path, "inputs"), from);
            if !hidden.contains(&from) {
                self.problem(
                    &field,
                    format!("no step reads {from:?} (the hidden inputs are: {})", hidden.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")),
                );
                continue;
            }
            public_path(self, &field, to, false);
            if last_component(to) != last_component(from) {
                self.problem(
                    &field,
                    format!("{to:?} must end in {:?}, so that it appears at /data/{} as {from:?} does", last_component(from), last_component(from)),
                );
            }
        }
        for input in &hidden {
            if !inputs.iter().any(|(from, _)| from == *input) {
                self.problem(&join(path, "inputs"), format!("no public stand-in for {input:?} (a step reads it)"));
            }
        }
        let outputs = outputs.unwrap_or_default();
        for (output, truth) in &truths {
            let field = join(&join(path, "truths"), output);
            if !outputs.iter().any(|o| &o.output == output) {
                self.problem(
                    &field,
                    format!("{output:?} is not a graded output (they are: {})", outputs.iter().map(|o| o.output.as_str()).collect::<Vec<_>>().join(", ")),
                );
                continue;
            }
            public_path(self, &field, truth, true);
        }
        for output in outputs {
            if !truths.iter().any(|(o, _)| *o == output.output) {
                self.problem(&join(path, "truths"), format!("no public truth for {:?}", output.output));
            }
        }
        Some(PublicRunSpec { inputs, truths, show_score })
    }

    fn lint(&mut self, top: &Mapping) -> Option<LintSpec> {
        let default = || LintSpec { select: DEFAULT_LINT_SELECT.iter().map(|s| s.to_string()).collect(), zero_at: DEFAULT_LINT_ZERO_AT };
        let Some(value) = top.get("lint") else {
            return Some(default());
        };
        let map = self.mapping(value, "lint", &["tool", "select", "zero_at"])?;
        if let Some(tool) = self.string(map, "lint", "tool", false) {
            if tool != "ruff" {
                self.problem("lint.tool", format!("unknown lint tool {tool:?} (expected ruff)"));
            }
        }
        let select = self.string_list(map, "lint", "select").unwrap_or_else(|| default().select);
        for (index, rule) in select.iter().enumerate() {
            if !rule.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                self.problem(&format!("lint.select[{index}]"), format!("{rule:?} is not a ruff rule code or prefix (like E, F401, C90)"));
            }
        }
        let zero_at = self.optional_number(map, "lint", "zero_at", DEFAULT_LINT_ZERO_AT);
        if zero_at <= 0.0 {
            self.problem("lint.zero_at", "must be more than zero (findings per 100 lines)");
        }
        Some(LintSpec { select, zero_at })
    }
}

/// What is wrong with a task's image name, if anything: not a name, or no recipe folder of that
/// name under `root` (saying which recipes there are).
fn image_problem(root: &Path, name: &str) -> Option<String> {
    if !is_name(name) {
        return Some(format!("{name:?} is not a valid image name (expected lowercase letters, digits and '-')"));
    }
    let dir = root.join("runner-images").join(name);
    if dir.is_dir() {
        return None;
    }
    let mut known: Vec<String> = std::fs::read_dir(root.join("runner-images"))
        .map(|entries| entries.filter_map(Result::ok).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    known.sort();
    Some(format!(
        "no runner image {name:?} (expected a folder {}; the images there: {})",
        dir.display(),
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    ))
}

/// Lowercase letters, digits and '-', not starting with '-': safe in paths and container names.
pub fn is_name(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && !text.starts_with('-') && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A relative path made only of normal components: no `..`, no root, no `.` tricks.
pub fn is_plain_relative(text: &str) -> bool {
    let path = Path::new(text);
    !text.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

fn last_component(text: &str) -> String {
    Path::new(text).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_handles_both_directions() {
        let higher = Scale { zero_at: 0.5, full_at: 1.0 };
        assert_eq!(higher.score(0.75), 50.0);
        assert_eq!(higher.score(0.2), 0.0);
        assert_eq!(higher.score(1.2), 100.0);
        let lower = Scale { zero_at: 10.0, full_at: 2.0 };
        assert_eq!(lower.score(6.0), 50.0);
        assert_eq!(lower.score(1.0), 100.0);
        assert_eq!(lower.score(f64::NAN), 0.0);
    }

    #[test]
    fn plain_relative_paths() {
        assert!(is_plain_relative("hidden/labels.csv"));
        assert!(!is_plain_relative("../x"));
        assert!(!is_plain_relative("/etc/passwd"));
        assert!(!is_plain_relative("a/../../b"));
        assert!(!is_plain_relative(""));
    }
}
