//! `takehome check`: proves that each task grades as intended before a candidate sees it.
//!
//! Per task: the task file (every problem at once); the data set (manifest checksums, hidden ids
//! absent from what candidates receive, no hidden file copied into the candidate's repo seed,
//! a warning for a feature that gives the hidden label away); every fixture in
//! `tasks/<id>/fixtures/<name>/` graded twice against its `expect.yaml` (the two grades must
//! agree: determinism); and the shared hostile fixtures of `fixtures/hostile/<name>/`, fitted to
//! each task's steps. Talks to Docker only through `job::grade` and the `Sandbox` trait.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::grading::leaks;
use crate::job::{self, ImageRef, JobError};
use crate::report::Report;
use crate::sandbox::Sandbox;
use crate::task::{self, MetricInput, TaskSpec};

/// A feature that predicts the hidden label at least this well draws a warning.
pub const GIVEAWAY_THRESHOLD: f64 = 0.98;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    Passed,
    Failed,
    /// Passed, with something the author should look at.
    Warning,
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub task: String,
    pub name: String,
    pub status: CaseStatus,
    pub message: String,
    pub seconds: f64,
    /// A task fixture's grade, kept as the task's baseline.
    pub baseline: Option<Baseline>,
}

/// How a task's own fixture (reference, weak, starter, …) grades: stored by `check` in
/// `<root>/baselines/<task>.json`, so that assessors see where a candidate's score stands against
/// known solutions and authors see a shift when the task, data or image changes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Baseline {
    pub fixture: String,
    pub status: crate::report::Status,
    pub score: f64,
    pub accuracy: f64,
    pub code_quality: f64,
    pub runtime: f64,
    pub metric_value: Option<f64>,
    pub task_digest: String,
    pub dataset_digest: String,
    pub image: String,
    pub graded_at: String,
}

impl Baseline {
    fn of(fixture: &str, report: &Report) -> Baseline {
        Baseline {
            fixture: fixture.to_string(),
            status: report.status,
            score: report.score,
            accuracy: report.components.accuracy.score,
            code_quality: report.components.code_quality.score,
            runtime: report.components.runtime.score,
            metric_value: report.components.accuracy.accuracy.value,
            task_digest: report.provenance.task_digest.clone(),
            dataset_digest: report.provenance.dataset_digest.clone(),
            image: report.provenance.image.clone(),
            graded_at: report.provenance.graded_at.clone(),
        }
    }
}

/// The file that holds a task's baselines.
pub fn baselines_path(root: &Path, task: &crate::task::TaskId) -> PathBuf {
    root.join("baselines").join(format!("{task}.json"))
}

/// A task's stored baselines that produced a grade (broken fixtures are left out: they place
/// nothing), for pages.
pub fn graded_baselines(root: &Path, task: &crate::task::TaskId) -> Vec<Baseline> {
    load_baselines(root, task).into_iter().filter(|b| b.status == crate::report::Status::Graded).collect()
}

/// A task's stored baselines (empty when none were stored or the file cannot be read).
pub fn load_baselines(root: &Path, task: &crate::task::TaskId) -> Vec<Baseline> {
    std::fs::read_to_string(baselines_path(root, task)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Whether `new` says nothing `old` does not: the same fixtures with the same grades, digests and
/// image, only graded again (then the stored file is left as it is, so that a check does not
/// leave a change to commit for a timestamp).
pub fn baselines_same(old: &[Baseline], new: &[Baseline]) -> bool {
    let timeless = |b: &Baseline| Baseline { graded_at: String::new(), ..b.clone() };
    old.len() == new.len() && old.iter().zip(new).all(|(a, b)| timeless(a) == timeless(b))
}

/// How each baseline moved against the stored ones: one line per fixture whose score or digests
/// changed, saying what changed.
pub fn baseline_shifts(old: &[Baseline], new: &[Baseline]) -> Vec<String> {
    let mut out = Vec::new();
    for n in new {
        let Some(o) = old.iter().find(|o| o.fixture == n.fixture) else {
            out.push(format!("{}: new baseline {:.1}", n.fixture, n.score));
            continue;
        };
        let mut moved = Vec::new();
        for (what, a, b) in [("score", o.score, n.score), ("accuracy", o.accuracy, n.accuracy), ("code quality", o.code_quality, n.code_quality)] {
            if (a - b).abs() >= 0.05 {
                moved.push(format!("{what} {a:.1} -> {b:.1}"));
            }
        }
        if moved.is_empty() {
            continue;
        }
        let mut why = Vec::new();
        if o.task_digest != n.task_digest {
            why.push("the task folder changed");
        }
        if o.dataset_digest != n.dataset_digest {
            why.push("the data set changed");
        }
        if o.image != n.image {
            why.push("the runner image changed");
        }
        out.push(format!("{}: {} ({})", n.fixture, moved.join(", "), if why.is_empty() { "no digest changed".to_string() } else { why.join(", ") }));
    }
    out
}

/// What a fixture must grade as (`expect.yaml`). Every field is optional; ranges are inclusive.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// graded, step_failed, bad_output or rejected (one or a list).
    pub status: Option<OneOrMany>,
    /// Outcome per step name (or `first` and `last`, for shared fixtures); `not_run` for a step
    /// never reached.
    #[serde(default)]
    pub steps: BTreeMap<String, OneOrMany>,
    pub score: Option<[f64; 2]>,
    pub accuracy: Option<[f64; 2]>,
    pub code_quality: Option<[f64; 2]>,
    pub runtime: Option<[f64; 2]>,
    /// A task with several outputs: each output's own score (0–100 on its scale), by file name.
    #[serde(default)]
    pub outputs: BTreeMap<String, [f64; 2]>,
    /// missing_output or bad_format.
    pub problem: Option<String>,
    /// Text the problem's message must contain.
    pub problem_contains: Option<String>,
    /// Text that must appear in no step's output.
    pub output_lacks: Option<String>,
    /// Text that must appear in the first step's output.
    pub output_contains: Option<String>,
    /// Host paths that must not exist after grading.
    #[serde(default)]
    pub host_lacks: Vec<String>,
    /// Caps every step's timeout for this fixture (a hostile fixture need not wait 5 minutes).
    pub timeout: Option<String>,
    /// Grade twice and compare (default true).
    pub deterministic: Option<bool>,
    /// No data line of the hidden truth may appear in the report or the candidate's view.
    #[serde(default)]
    pub report_lacks_truth: bool,
    /// Text that must not appear in the candidate's view of the report.
    pub candidate_lacks: Option<String>,
    /// How many links the submission copy must have left out.
    pub skipped_links: Option<usize>,
    /// The extended image the submission's imports must have chosen (`python` for a task on
    /// `python-slim`), or `task` for the task's own.
    pub ran_in: Option<String>,
    /// Submission files that must have an executed notebook in the report (a notebook, or R
    /// Markdown), each with at least this many figures among its outputs.
    #[serde(default)]
    pub executed_figures: BTreeMap<String, usize>,
    /// The methodology rules the report must name (each at least once), and no other.
    pub methodology: Option<Vec<String>>,
    /// How many debrief questions the report must hold: `[least, most]`.
    pub debrief: Option<[usize; 2]>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn allows(&self, value: &str) -> bool {
        match self {
            OneOrMany::One(one) => one == value,
            OneOrMany::Many(many) => many.iter().any(|m| m == value),
        }
    }
    fn describe(&self) -> String {
        match self {
            OneOrMany::One(one) => one.clone(),
            OneOrMany::Many(many) => many.join(" or "),
        }
    }
}

pub fn load_expect(path: &Path) -> Result<Expect, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))
}

pub use crate::task::discover_tasks;

/// Which fixtures `check_task` grades, and how.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Only the fixtures whose name starts with this.
    pub only_fixtures: Option<&'a str>,
    /// The author's fast loop: no shared hostile fixtures, each fixture graded once.
    pub quick: bool,
    /// Fixtures graded at once.
    pub jobs: usize,
}

/// Runs every check of one task (`loaded`: its folder's name and the task as it loaded, or why
/// not), reporting each case through `report` as it finishes.
pub async fn check_task<S: Sandbox>(
    sandbox: &S,
    (task_name, loaded): (&str, &Result<std::sync::Arc<TaskSpec>, task::SpecError>),
    image: &ImageRef,
    options: &CheckOptions<'_>,
    cancel: &CancellationToken,
    report: &(dyn Fn(&CaseResult) + Sync),
) -> Vec<CaseResult> {
    let CheckOptions { only_fixtures, quick, jobs } = *options;
    let task_name = task_name.to_string();
    let mut results = Vec::new();
    let mut baselines: Vec<(String, Baseline)> = Vec::new();
    let mut record = |name: &str, status: CaseStatus, message: String, started: Instant| {
        let result = CaseResult { task: task_name.clone(), name: name.to_string(), status, message, seconds: started.elapsed().as_secs_f64(), baseline: None };
        report(&result);
        results.push(result);
    };

    let started = Instant::now();
    let spec: &TaskSpec = match loaded {
        Ok(spec) => {
            record("task file", CaseStatus::Passed, format!("{}, {}", spec.kind.as_str(), crate::units::count(spec.steps.len(), "step")), started);
            spec
        }
        Err(error) => {
            record("task file", CaseStatus::Failed, crate::errors::chain(error), started);
            return results;
        }
    };
    // Steps that ask for GPUs run only where the engine can hand them over.
    let (wanted, here) = (spec.gpus(), crate::sandbox::host_gpus());
    if wanted > here {
        let steps: Vec<&str> = spec.steps.iter().filter(|s| s.gpus > 0).map(|s| s.name.as_str()).collect();
        let message = format!(
            "step{} {} ask{} for {} and this host has {}: run `takehome check` on a GPU host (NVIDIA driver and container toolkit, \
             /dev/nvidia0...), where GPU workers grade this task (docs/scaling.md, \"GPU workers\")",
            if steps.len() == 1 { "" } else { "s" },
            steps.join(", "),
            if steps.len() == 1 { "s" } else { "" },
            crate::units::count(wanted as usize, "GPU"),
            if here == 0 { "none".to_string() } else { here.to_string() }
        );
        record("gpus", CaseStatus::Failed, message, Instant::now());
        return results;
    }
    let started = Instant::now();
    let problems = crate::grading::task_data::check(spec);
    if problems.is_empty() {
        record("task data", CaseStatus::Passed, "the columns, labels and ids the task names are in its data".into(), started);
    } else {
        // Fixtures would only fail on the same mistake, further from its cause.
        record("task data", CaseStatus::Failed, crate::grading::task_data::render(spec, &problems), started);
        return results;
    }

    for (name, check) in
        [("data manifest", check_manifest as fn(&TaskSpec) -> Result<String, String>), ("hidden ids", check_hidden_ids), ("hidden files", check_hidden_files)]
    {
        let started = Instant::now();
        match check(spec) {
            Ok(message) => record(name, CaseStatus::Passed, message, started),
            Err(message) => record(name, CaseStatus::Failed, message, started),
        }
    }
    let started = Instant::now();
    match check_giveaways(spec) {
        Ok(None) => record("label giveaways", CaseStatus::Passed, "no single feature gives the label away".into(), started),
        Ok(Some(message)) => record("label giveaways", CaseStatus::Warning, message, started),
        Err(message) => record("label giveaways", CaseStatus::Failed, message, started),
    }

    // Fixtures are graded `jobs` at a time; their results come back in the fixtures' order.
    let mut nearest: Vec<(Lookup, f64)> = Vec::new();
    let chosen: Vec<Fixture> = fixtures(spec, quick).into_iter().filter(|f| only_fixtures.is_none_or(|prefix| f.name.starts_with(prefix))).collect();
    let spec_ref = &spec;
    let mut graded = futures_util::stream::iter(chosen.iter().map(|fixture| async move {
        let started = Instant::now();
        if cancel.is_cancelled() {
            return (fixture, Err("cancelled".to_string()), started);
        }
        (fixture, run_fixture(sandbox, spec_ref, fixture, image, quick, cancel).await, started)
    }))
    .buffered(jobs.max(1));
    while let Some((fixture, outcome, started)) = futures_util::StreamExt::next(&mut graded).await {
        let name = format!("fixture {}", fixture.name);
        match outcome {
            Ok((status, message, report)) => {
                if let Some(report) = report.as_ref().filter(|_| !fixture.name.starts_with("hostile/") && fixture.lookup.is_none()) {
                    baselines.push((name.clone(), Baseline::of(&fixture.name, report)));
                }
                if let (Some(kind @ (Lookup::NearestSource | Lookup::NearestPublic)), Some(report)) = (fixture.lookup, &report) {
                    // In points of the grade, clamped as the grade is: what the source can be worth
                    // to a candidate. Below `zero_at` or past `full_at` on both sides, a join
                    // gains nothing from the source, whatever its metric says.
                    nearest.push((kind, report.components.accuracy.score));
                }
                record(&name, status, message, started)
            }
            Err(message) => record(&name, CaseStatus::Failed, message, started),
        }
    }
    drop(graded);
    // What the public source is worth beyond the public data: the same nearest-neighbour join
    // against each, side by side.
    let worth = |kind| nearest.iter().find(|(k, _)| *k == kind).map(|(_, score)| *score);
    if let (Some(source), Some(public)) = (worth(Lookup::NearestSource), worth(Lookup::NearestPublic)) {
        let started = Instant::now();
        let lift = source - public;
        let allowed = lookup_allowance(spec);
        let (status, message) = if lift <= allowed && allowed > 10.0 {
            (
                CaseStatus::Warning,
                format!(
                    "inconclusive: the public source is worth {lift:+.1} beyond the public data to a nearest-neighbour join ({source:.1} against {public:.1}), \
                     but on this many hidden rows only a lift above {allowed:.1} could be told from chance; the answer key is what catches copies here"
                ),
            )
        } else if lift > allowed {
            (
                CaseStatus::Failed,
                format!(
                    "the public source holds the hidden rows: a nearest-neighbour join to it scores {source:.1} on accuracy, \
                     {lift:.1} above the same join to the public data the candidate is given ({public:.1}; at most {allowed:.1} allowed on this many rows); \
                     make the hidden rows records that are no nearer the source's than new draws would be (docs/writing-a-task.md, \"Answer keys in public\")"
                ),
            )
        } else {
            (
                CaseStatus::Passed,
                format!("the public source is worth {lift:+.1} beyond the public data to a nearest-neighbour join ({source:.1} against {public:.1}; at most {allowed:.1} on this many rows)"),
            )
        };
        record("public source lift", status, message, started);
    }
    // The public dry run that every push gets: the reference passes it (the steps run on the
    // public stand-ins and every output has the expected form), so a candidate's failure there
    // is the candidate's.
    if spec.public_run.is_some() && only_fixtures.is_none_or(|prefix| "public run".starts_with(prefix)) && !cancel.is_cancelled() {
        let started = Instant::now();
        let (status, message) = match check_public_run(sandbox, spec, image, cancel).await {
            Ok(message) => (CaseStatus::Passed, message),
            Err(message) => (CaseStatus::Failed, message),
        };
        record("public run", status, message, started);
    }
    for (name, baseline) in baselines {
        if let Some(result) = results.iter_mut().find(|r| r.name == name) {
            result.baseline = Some(baseline);
        }
    }
    results
}

/// Grades the reference fixture through the task's public run; Ok when it grades cleanly.
async fn check_public_run<S: Sandbox>(sandbox: &S, spec: &TaskSpec, image: &ImageRef, cancel: &CancellationToken) -> Result<String, String> {
    let public = spec.public_variant().ok_or("public_run leaves a step with a hidden input or an output with a hidden truth")?;
    let reference = spec.dir.join("fixtures").join("reference");
    if !reference.is_dir() {
        return Err(format!("{}: no reference fixture to prove the public run with", reference.display()));
    }
    let job_id = format!("{}p", job::new_job_id());
    let report = job::grade(sandbox, &public, &reference, image, &job_id, cancel, &|_| {})
        .await
        .map_err(|e| format!("the reference's public run failed on our side: {}", crate::errors::Chain(&e)))?;
    if report.status != crate::report::Status::Graded {
        let steps: Vec<String> = report.steps.iter().map(|s| format!("{} {}", s.name, s.outcome.as_str())).collect();
        let problem = report.components.accuracy.accuracy.problem.as_ref().map(|p| format!("; {}", p.message)).unwrap_or_default();
        return Err(format!("the reference's public run ended {} (steps: {}){problem}", report.status.as_str(), steps.join(", ")));
    }
    Ok(format!(
        "the reference passes it: {} ok, accuracy {:.1} on public data",
        crate::units::count(report.steps.len(), "step"),
        report.components.accuracy.score
    ))
}

/// A fixture to grade: a folder of the task's, or a shared hostile payload fitted to the task.
struct Fixture {
    name: String,
    /// The submission folder (for shared fixtures, made for this task and kept alive here).
    dir: PathBuf,
    expect: Result<Expect, String>,
    /// A submission that solves nothing (the untouched starter, a hostile payload): its score
    /// should stay under the task's score floor, else a warning.
    solves_nothing: bool,
    /// One of the look-ups of `fixtures/lookup/`.
    lookup: Option<Lookup>,
    _made: Option<tempfile::TempDir>,
}

/// The starter as the candidate receives it, the task's own fixtures, then (unless `quick`) the
/// shared hostile ones.
fn fixtures(spec: &TaskSpec, quick: bool) -> Vec<Fixture> {
    let mut out = vec![Fixture {
        name: "starter".to_string(),
        dir: spec.dir.join(&spec.starter),
        expect: Ok(Expect { deterministic: Some(false), ..Default::default() }),
        solves_nothing: true,
        lookup: None,
        _made: None,
    }];
    let own = spec.dir.join("fixtures");
    let mut own_dirs: Vec<PathBuf> =
        std::fs::read_dir(&own).map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    own_dirs.sort();
    for dir in own_dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expect_file = dir.join("expect.yaml");
        let expect = if expect_file.is_file() {
            load_expect(&expect_file)
        } else {
            Err(format!("{}: missing (every fixture states what it must grade as)", expect_file.display()))
        };
        out.push(Fixture { name, dir, expect, solves_nothing: false, lookup: None, _made: None });
    }
    if quick {
        return out;
    }
    let shared = spec.root.join("fixtures").join("hostile");
    let mut shared_dirs: Vec<PathBuf> =
        std::fs::read_dir(&shared).map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default();
    shared_dirs.sort();
    for dir in shared_dirs {
        let name = format!("hostile/{}", dir.file_name().unwrap().to_string_lossy());
        match fit_shared_fixture(spec, &dir) {
            Ok(made) => {
                let expect = load_expect(&dir.join("expect.yaml"));
                out.push(Fixture { name, dir: made.path().to_path_buf(), expect, solves_nothing: true, lookup: None, _made: Some(made) });
            }
            Err(message) => out.push(Fixture { name, dir: dir.clone(), expect: Err(message), solves_nothing: true, lookup: None, _made: None }),
        }
    }
    // Where the data set names its public source, the look-ups that join the hidden rows to it
    // (and, for the nearest-neighbour join, to the public data beside it).
    let lookup = spec.root.join("fixtures").join("lookup");
    let source = match public_source(spec) {
        Ok(None) => return out,
        Ok(Some(source)) => source,
        Err(message) => {
            out.push(Fixture {
                name: "lookup/public-source".into(),
                dir: lookup,
                expect: Err(message),
                solves_nothing: false,
                lookup: Some(Lookup::AnswerKey),
                _made: None,
            });
            return out;
        }
    };
    let source_files: Vec<PathBuf> = source.files.iter().map(|file| spec.dataset_dir().join(file)).collect();
    let public_files = public_tables(spec);
    for kind in [Lookup::AnswerKey, Lookup::NearestSource, Lookup::NearestPublic] {
        let files = if kind == Lookup::NearestPublic { &public_files } else { &source_files };
        let fitted = fit_lookup(spec, &lookup, files, kind);
        let (dir, expect, made) = match fitted {
            Ok(made) => (made.path().to_path_buf(), Ok(Expect { deterministic: Some(false), ..Default::default() }), Some(made)),
            Err(message) => (lookup.clone(), Err(message), None),
        };
        out.push(Fixture { name: kind.name().into(), dir, expect, solves_nothing: false, lookup: Some(kind), _made: made });
    }
    out
}

/// Where a data set's rows come from in public (`datasets/<id>/public-source.yaml`): files a
/// candidate could download and join to the hidden rows. Kept in the data set folder, outside
/// `public/` (which candidates receive) and `hidden/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicSource {
    /// What the source is, for people (its name, version, where it is published).
    pub name: String,
    /// CSV files relative to the data set folder; several are parallel (row i is one record).
    pub files: Vec<String>,
}

/// The data set's declared public source, if it declares one.
pub fn public_source(spec: &TaskSpec) -> Result<Option<PublicSource>, String> {
    let path = spec.dataset_dir().join("public-source.yaml");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let source: PublicSource = serde_yaml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    if source.files.is_empty() {
        return Err(format!("{}: files: empty (expected the source's CSV files)", path.display()));
    }
    for (index, file) in source.files.iter().enumerate() {
        let relative = Path::new(file);
        let plain = relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        if !plain || first == "public" || first == "hidden" {
            return Err(format!(
                "{}: files[{index}]: {file:?} (expected a path inside the data set folder, outside public/ and hidden/: candidates must never receive it)",
                path.display()
            ));
        }
        if !spec.dataset_dir().join(relative).is_file() {
            return Err(format!("{}: files[{index}]: {file:?} does not exist", path.display()));
        }
    }
    Ok(Some(source))
}

/// How far (in points of the accuracy score) a nearest-neighbour join to the public source may
/// do better than the same join to the public data, at the least. Measured on diamond-cut:
/// 14,000 more real diamonds that hold none of the test rows are worth +1.1 to a
/// one-nearest-neighbour join.
pub const LOOKUP_LIFT: f64 = 3.0;

/// The lift allowed on this task: `LOOKUP_LIFT`, or twice the sampling noise of the difference
/// of two scores on this many hidden rows where that is larger (few rows cannot tell a few points
/// from chance: 110 birds, one output of two, give about 8.8 points of noise). The noise of a
/// score in [0, 1] on n rows is at most sqrt(0.25 / n), twice that for a difference of two
/// independent ones, in points of the output's scale, weighted as the outputs are; a metric
/// without bounds (errors, losses) counts as having none.
fn lookup_allowance(spec: &TaskSpec) -> f64 {
    let total: f64 = spec.outputs.iter().map(|o| o.weight).sum();
    let variance: f64 = spec
        .outputs
        .iter()
        .filter(|o| o.metric.higher_is_better() && o.metric != crate::task::Metric::R2)
        .map(|output| {
            let extent = crate::grading::table::extent(&spec.truth_path(output)).ok();
            let rows = extent.map(|e| if output.metric == crate::task::Metric::CellAccuracy { e.rows * e.columns.saturating_sub(1) as u64 } else { e.rows });
            let rows = rows.unwrap_or(0).max(1) as f64;
            let width = (output.scale.full_at - output.scale.zero_at).abs().max(1e-9);
            let points = 100.0 * (2.0 * 0.25 / rows).sqrt() / width;
            (output.weight / total * points).powi(2)
        })
        .sum();
    LOOKUP_LIFT.max(2.0 * variance.sqrt())
}

/// The look-ups `check` runs where a data set declares its public source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Exact and near-duplicate joins to the source: must stay under the score floor.
    AnswerKey,
    /// A nearest-neighbour join to the source, which answers every row ...
    NearestSource,
    /// ... and the same join to the public data (the CSV files at the top of `public/`): the
    /// source may do at most `LOOKUP_LIFT` better.
    NearestPublic,
}

impl Lookup {
    fn name(self) -> &'static str {
        match self {
            Lookup::AnswerKey => "lookup/public-source",
            Lookup::NearestSource => "lookup/nearest-source",
            Lookup::NearestPublic => "lookup/nearest-public",
        }
    }
}

/// The CSV files at the top of the data set's `public/` (what every candidate is given).
fn public_tables(spec: &TaskSpec) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec.dataset_dir().join("public"))
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "csv")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The look-up payload fitted to the task like a shared fixture, with the files to join against
/// under `public_source/` (as a candidate would commit them) and their order in `files.json`.
fn fit_lookup(spec: &TaskSpec, lookup: &Path, files: &[PathBuf], kind: Lookup) -> Result<tempfile::TempDir, String> {
    if files.is_empty() {
        return Err(format!("{}: no CSV files to join against", spec.dataset_dir().join("public").display()));
    }
    let made = fit_shared_fixture(spec, lookup)?;
    let dest = made.path().join("public_source");
    std::fs::create_dir(&dest).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let name = format!("{index}-{}", file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        std::fs::copy(file, dest.join(&name)).map_err(|e| format!("{}: {e}", file.display()))?;
        names.push(name);
    }
    std::fs::write(dest.join("files.json"), serde_json::to_string(&names).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let info_path = made.path().join("takehome_check.json");
    let mut info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&info_path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    info["lookup"] = serde_json::json!(if kind == Lookup::AnswerKey { "answer-key" } else { "nearest" });
    std::fs::write(&info_path, info.to_string()).map_err(|e| e.to_string())?;
    Ok(made)
}

/// Copies a shared payload and writes one entry script per step (`python X.py` runs
/// `payload.main("<step>")`), plus `takehome_check.json` with what the payload may need to know:
/// the output file, the id and target columns, and a line of the truth (split into its fields,
/// so that the file does not contain the line itself).
pub fn fit_shared_fixture(spec: &TaskSpec, shared: &Path) -> Result<tempfile::TempDir, String> {
    let made = tempfile::Builder::new().prefix("takehome-fixture-").tempdir().map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(shared).map_err(|e| format!("{}: {e}", shared.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map_err(|e| e.to_string())?.is_file() && entry.file_name() != "expect.yaml" && entry.file_name() != "links.txt" {
            std::fs::copy(entry.path(), made.path().join(entry.file_name())).map_err(|e| e.to_string())?;
        }
    }
    plant_links(spec, &shared.join("links.txt"), made.path())?;
    for step in &spec.steps {
        let script = step.run.trim().strip_prefix("python ").map(str::trim).filter(|s| s.ends_with(".py") && !s.contains(['/', ' ']));
        let Some(script) = script else {
            return Err(format!("step {} runs {:?}, not `python FILE.py`: shared fixtures cannot fit it", step.name, step.run));
        };
        let body = format!("import payload\n\npayload.main({:?})\n", step.name);
        std::fs::write(made.path().join(script), body).map_err(|e| e.to_string())?;
    }
    // Each graded output with a line of its truth; the first output's also at the top level.
    let outputs: Vec<serde_json::Value> = spec
        .outputs
        .iter()
        .map(|output| {
            let truth = spec.truth_path(output);
            let truth_text = std::fs::read_to_string(&truth).unwrap_or_default();
            let mut truth_lines = truth_text.lines();
            let truth_columns: Vec<&str> = truth_lines.next().map(|h| h.split(',').collect()).unwrap_or_default();
            let truth_line = truth_lines.next().unwrap_or_default();
            serde_json::json!({
                "output": output.output,
                "id": output.id,
                "target": output.target,
                "truth_name": Path::new(&output.truth).file_name().map(|n| n.to_string_lossy().into_owned()),
                "truth_fields": truth_line.split(',').collect::<Vec<_>>(),
                "truth_columns": truth_columns,
                "truth_rows": crate::grading::table::extent(&truth).map(|e| e.rows).unwrap_or(0),
                "classes": output.classes,
            })
        })
        .collect();
    let mut info = outputs[0].clone();
    info["steps"] = serde_json::json!(spec.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
    info["hidden_steps"] = serde_json::json!(spec.steps.iter().filter(|s| s.reads_hidden()).map(|s| s.name.clone()).collect::<Vec<_>>());
    info["outputs"] = serde_json::Value::Array(outputs);
    std::fs::write(made.path().join("takehome_check.json"), info.to_string()).map_err(|e| e.to_string())?;
    Ok(made)
}

/// Plants what a shared fixture's `links.txt` lists into the fitted copy: `link NAME -> TARGET`
/// makes a symbolic link, `decoy PATH` a small Python file with lint findings. In both,
/// `{truth_from_cwd}` is the truth's path from this process's working folder (where
/// `/proc/self/cwd` leads on the host) and `{truth_abs}` its absolute path without the leading
/// `/`. The links are made, never followed.
fn plant_links(spec: &TaskSpec, list: &Path, dest: &Path) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(list) else { return Ok(()) };
    let truth = std::path::absolute(spec.truth_path(spec.primary())).map_err(|e| e.to_string())?;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let from_cwd = truth.strip_prefix(&cwd).unwrap_or(&truth).to_string_lossy().trim_start_matches('/').to_string();
    let absolute = truth.to_string_lossy().trim_start_matches('/').to_string();
    let fill = |text: &str| text.replace("{truth_from_cwd}", &from_cwd).replace("{truth_abs}", &absolute);
    for (number, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
        let bad = || format!("{}: line {number}: expected `link NAME -> TARGET` or `decoy PATH`", list.display());
        if let Some(rest) = line.strip_prefix("link ") {
            let (name, target) = rest.split_once(" -> ").ok_or_else(bad)?;
            let name = fill(name.trim());
            if !crate::task::is_plain_relative(&name) {
                return Err(bad());
            }
            std::os::unix::fs::symlink(fill(target.trim()), dest.join(&name)).map_err(|e| format!("{}: line {number}: {e}", list.display()))?;
        } else if let Some(path) = line.strip_prefix("decoy ") {
            let path = fill(path.trim());
            if !crate::task::is_plain_relative(&path) {
                return Err(bad());
            }
            let file = dest.join(&path);
            std::fs::create_dir_all(file.parent().expect("a relative path has a parent")).map_err(|e| e.to_string())?;
            std::fs::write(&file, "import os\nimport sys\nimport json\nx=1\n").map_err(|e| e.to_string())?;
        } else {
            return Err(bad());
        }
    }
    Ok(())
}

/// Grades a fixture (twice, unless `quick` or its expectation says otherwise) and compares the
/// grade with its expectation: `Err` when it does not hold, a warning when a fixture that solves
/// nothing scores above the task's floor.
async fn run_fixture<S: Sandbox>(
    sandbox: &S,
    spec: &TaskSpec,
    fixture: &Fixture,
    image: &ImageRef,
    quick: bool,
    cancel: &CancellationToken,
) -> Result<(CaseStatus, String, Option<Box<Report>>), String> {
    let expect = fixture.expect.clone()?;
    let mut spec = spec.clone();
    if let Some(cap) = &expect.timeout {
        let cap = crate::units::parse_duration(cap).map_err(|m| format!("expect.yaml: timeout: {m}"))?;
        for step in &mut spec.steps {
            step.timeout = step.timeout.min(cap);
        }
    }
    let quiet = |_: &str| {};
    let grade = |attempt: usize| {
        let spec = &spec;
        let job_id = format!("{}c{attempt}", job::new_job_id());
        async move {
            let report = job::grade(sandbox, spec, &fixture.dir, image, &job_id, cancel, &quiet).await.map_err(|error| match error {
                JobError::Cancelled => "cancelled".to_string(),
                // The truth could not be read as the task file says: the task's mistake.
                JobError::Grading(error) => format!("the task's fault (not the fixture's): {}: {error}", spec.file().display()),
                other => format!("our side failed (not the fixture's fault): {}", crate::errors::Chain(&other)),
            })?;
            Ok::<_, String>((job_id, report))
        }
    };
    let (first_job, first) = grade(1).await?;
    let mut failures = compare(&expect, &spec, &first);
    // This job's containers only: other fixtures may be grading beside it (`--jobs`).
    match sandbox.count_job(&first_job).await {
        Ok(0) => {}
        Ok(n) => failures.push(format!("{n} container(s) of this fixture remain after grading")),
        Err(error) => failures.push(format!("cannot count containers: {}", crate::errors::Chain(&error))),
    }
    for path in &expect.host_lacks {
        if Path::new(path).exists() {
            failures.push(format!("{path} exists on the host after grading"));
        }
    }
    if !quick && expect.deterministic.unwrap_or(true) && failures.is_empty() {
        let (_, second) = grade(2).await?;
        let (a, b) = (fingerprint(&first), fingerprint(&second));
        if a != b {
            failures.push(format!("two grades differ:\n  first:  {a}\n  second: {b}"));
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    let summary = format!("{} {:.1}", first.status.as_str(), first.score);
    if matches!(fixture.lookup, Some(Lookup::NearestSource | Lookup::NearestPublic)) {
        // A join that answered nothing (the files name the target or columns otherwise) would
        // make the lift look small: it proves nothing, and says so.
        if first.status != crate::report::Status::Graded {
            return Err(format!(
                "{summary}: the nearest-neighbour look-up answered nothing the task could grade, so it cannot tell what the files are worth; \
                 name the source's columns as the task does (the target, the clean table's columns)"
            ));
        }
        let accuracy = first.components.accuracy.score;
        return Ok((CaseStatus::Passed, format!("{summary}: a nearest-neighbour join scores {accuracy:.1} on accuracy"), Some(Box::new(first))));
    }
    if fixture.lookup == Some(Lookup::AnswerKey) {
        let accuracy = first.components.accuracy.score;
        let source = public_source(&spec).ok().flatten().map(|s| s.name).unwrap_or_default();
        if accuracy > spec.score_floor {
            return Err(format!(
                "the public source ({source}) answers the hidden rows: a look-up that joins them to it scores {accuracy:.1} on accuracy, \
                 above the score floor {} (check.score_floor); make the hidden rows records the source does not hold \
                 (docs/writing-a-task.md, \"Answer keys in public\")",
                spec.score_floor
            ));
        }
        return Ok((
            CaseStatus::Passed,
            format!("{summary}: the public source ({source}) answers the hidden rows no better than the floor: accuracy {accuracy:.1}"),
            Some(Box::new(first)),
        ));
    }
    if fixture.solves_nothing && first.score > spec.score_floor {
        let what = if fixture.name == "starter" { "the untouched starter" } else { "a submission that solves nothing" };
        let message = format!(
            "{summary}: {what} scores {:.1}, above the score floor {} (check.score_floor); an assessor would read points for nothing (weights: {})",
            first.score,
            spec.score_floor,
            first.formula.split(';').next().unwrap_or("")
        );
        return Ok((CaseStatus::Warning, message, Some(Box::new(first))));
    }
    Ok((CaseStatus::Passed, summary, Some(Box::new(first))))
}

/// What must be equal between two grades of one fixture (wall times and the runtime score vary
/// by nature and are left out).
fn fingerprint(report: &Report) -> String {
    let steps: Vec<String> = report.steps.iter().map(|s| format!("{}={}", s.name, s.outcome.as_str())).collect();
    let outputs: Vec<String> = report
        .components
        .accuracy
        .each(&report.output.file)
        .into_iter()
        .map(|o| {
            format!(
                "{}: {}={:?} problem={:?}",
                o.file,
                o.accuracy.metric,
                o.accuracy.value,
                o.accuracy.problem.as_ref().map(|p| (p.kind.as_str(), p.message.clone()))
            )
        })
        .collect();
    format!("status={} steps=[{}] {} findings={}", report.status.as_str(), steps.join(","), outputs.join(" "), report.components.code_quality.n_findings)
}

fn compare(expect: &Expect, spec: &TaskSpec, report: &Report) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(status) = &expect.status {
        if !status.allows(report.status.as_str()) {
            failures.push(format!("status {} (expected {})", report.status.as_str(), status.describe()));
        }
    }
    for (name, allowed) in &expect.steps {
        let index = match name.as_str() {
            "first" => Some(0),
            "last" => Some(spec.steps.len() - 1),
            _ => spec.steps.iter().position(|s| &s.name == name),
        };
        let Some(index) = index else {
            failures.push(format!("expect.yaml names a step {name:?} that the task does not have"));
            continue;
        };
        let outcome = report.steps.get(index).map(|s| s.outcome.as_str()).unwrap_or("not_run");
        if !allowed.allows(outcome) {
            let message = report.steps.get(index).map(|s| format!(" ({})", s.message)).unwrap_or_default();
            failures.push(format!("step {} ended {outcome}{message} (expected {})", spec.steps[index].name, allowed.describe()));
        }
    }
    let c = &report.components;
    for (what, range, value) in [
        ("score", expect.score, report.score),
        ("accuracy score", expect.accuracy, c.accuracy.score),
        ("code quality score", expect.code_quality, c.code_quality.score),
        ("runtime score", expect.runtime, c.runtime.score),
    ] {
        if let Some([low, high]) = range {
            if !(low..=high).contains(&value) {
                failures.push(format!("{what} {value:.1} (expected {low} to {high})"));
            }
        }
    }
    let each = c.accuracy.each(&report.output.file);
    for (file, [low, high]) in &expect.outputs {
        match each.iter().find(|o| o.file == file) {
            None => failures.push(format!(
                "expect.yaml names an output {file:?} that the task does not grade (it grades {})",
                each.iter().map(|o| o.file).collect::<Vec<_>>().join(", ")
            )),
            Some(o) if !(*low..=*high).contains(&o.score) => failures.push(format!("{file} score {:.1} (expected {low} to {high})", o.score)),
            Some(_) => {}
        }
    }
    let problem = c.accuracy.accuracy.problem.as_ref();
    if let Some(kind) = &expect.problem {
        match problem {
            Some(p) if p.kind.as_str() == kind => {}
            Some(p) => failures.push(format!("problem {} ({}) (expected {kind})", p.kind.as_str(), p.message)),
            None => failures.push(format!("no output problem (expected {kind})")),
        }
    }
    if let Some(needle) = &expect.problem_contains {
        if !problem.is_some_and(|p| p.message.contains(needle.as_str())) {
            failures.push(format!("the problem {:?} does not mention {needle:?}", problem.map(|p| p.message.as_str()).unwrap_or("")));
        }
    }
    let outputs: Vec<String> = report.steps.iter().map(|s| format!("{}\n{}", s.stdout_tail, s.stderr_tail)).collect();
    if let Some(needle) = &expect.output_lacks {
        if let Some(step) = report.steps.iter().zip(&outputs).find(|(_, out)| out.contains(needle.as_str())) {
            failures.push(format!("step {} printed {needle:?}", step.0.name));
        }
    }
    if let Some(needle) = &expect.output_contains {
        if !outputs.first().is_some_and(|out| out.contains(needle.as_str())) {
            failures.push(format!("the first step did not print {needle:?}"));
        }
    }
    let candidate_view = report.to_json_view(crate::report::View::Candidate);
    if let Some(needle) = &expect.candidate_lacks {
        if candidate_view.contains(needle.as_str()) {
            failures.push(format!("the candidate's view shows {needle:?}"));
        }
    }
    if expect.report_lacks_truth {
        let full = report.to_json();
        let truths: Vec<String> = spec.outputs.iter().map(|o| std::fs::read_to_string(spec.truth_path(o)).unwrap_or_default()).collect();
        let leaked =
            truths.iter().flat_map(|t| t.lines().skip(1).filter(|l| l.len() >= 6).take(500)).find(|line| full.contains(line) || candidate_view.contains(line));
        if let Some(line) = leaked {
            failures.push(format!("the report holds a line of the hidden truth ({line:?})"));
        }
    }
    if let Some(wanted) = &expect.ran_in {
        let ran_in = report.provenance.extended_image.as_ref().map_or("task", |extended| extended.image.as_str());
        if ran_in != wanted {
            failures.push(format!("ran in {ran_in} (expected {wanted})"));
        }
    }
    if let Some(wanted) = &expect.methodology {
        let mut found: Vec<&str> = report.methodology.iter().map(|f| f.rule.as_str()).collect();
        found.dedup();
        let mut wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        let mut sorted = found.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted != wanted {
            failures.push(format!("methodology findings {sorted:?} (expected {wanted:?})"));
        }
    }
    for (file, wanted) in &expect.executed_figures {
        match report.artifacts.notebook(file) {
            None => failures.push(format!("no executed notebook of {file} in the report")),
            Some(ran) => {
                let figures = ran.cells.iter().flat_map(|c| &c.outputs).filter(|o| matches!(o, crate::report::artifacts::CellOutput::Image { .. })).count();
                if figures < *wanted {
                    failures.push(format!("the executed {file} shows {figures} figures (expected at least {wanted})"));
                }
            }
        }
    }
    if let Some([least, most]) = expect.debrief {
        let n = report.debrief.len();
        if !(least..=most).contains(&n) {
            failures.push(format!("the debrief holds {n} questions (expected {least} to {most})"));
        }
    }
    // Every graded fixture is scored on its task's slices, and its candidate's view shows none.
    if report.status == crate::report::Status::Graded {
        for (declared, output) in spec.outputs.iter().zip(report.components.accuracy.each(&report.output.file)) {
            if !declared.slices.is_empty() && output.accuracy.slices.is_empty() {
                failures.push(format!("{} is not scored on its slices", output.file));
            }
            if let Some(shown) = output.accuracy.slices.iter().find(|s| candidate_view.contains(&format!("\"{}\"", s.name))) {
                failures.push(format!("the candidate's view shows the slice {:?}", shown.name));
            }
        }
    }
    if let Some(n) = expect.skipped_links {
        if report.submission.skipped_links.len() != n {
            failures.push(format!("{} links left out of the copy (expected {n})", report.submission.skipped_links.len()));
        }
    }
    failures
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        walkdir::WalkDir::new(dir).follow_links(false).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).map(|e| e.into_path()).collect();
    files.sort();
    files
}

/// Every file of the data set is in MANIFEST.sha256 with its digest, and nothing else is.
fn check_manifest(spec: &TaskSpec) -> Result<String, String> {
    let dir = spec.dataset_dir();
    let manifest_path = dir.join("MANIFEST.sha256");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| format!("{}: {e} (list every file with its sha256)", manifest_path.display()))?;
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (digest, path) = line.split_once("  ").ok_or_else(|| format!("{}: line {}: expected \"<sha256>  <path>\"", manifest_path.display(), number + 1))?;
        listed.insert(path.trim().to_string(), digest.trim().to_string());
    }
    let mut problems = Vec::new();
    let mut n_files = 0;
    for file in files_below(&dir) {
        let relative = file.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        if relative == "MANIFEST.sha256" {
            continue;
        }
        n_files += 1;
        let actual = sha256_file(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        match listed.remove(&relative) {
            None => problems.push(format!("{relative} is not in the manifest")),
            Some(expected) if expected != actual => {
                problems.push(format!("{relative} changed (manifest {}, file {})", &expected[..12.min(expected.len())], &actual[..12]))
            }
            Some(_) => {}
        }
    }
    problems.extend(listed.keys().map(|missing| format!("{missing} is in the manifest but missing")));
    if problems.is_empty() {
        Ok(format!("{} match {}", crate::units::count(n_files, "file"), manifest_path.display()))
    } else {
        Err(format!("{}: {}", manifest_path.display(), problems.join("; ")))
    }
}

/// What candidates receive: the brief, the starter code and the public data.
fn candidate_files(spec: &TaskSpec) -> Vec<PathBuf> {
    let mut files = vec![spec.dir.join(&spec.brief)];
    files.extend(files_below(&spec.dir.join(&spec.starter)));
    files.extend(files_below(&spec.dataset_dir().join("public")));
    files
}

/// No hidden id appears in a public table's id column (or a starter file's).
fn check_hidden_ids(spec: &TaskSpec) -> Result<String, String> {
    let tables: Vec<PathBuf> =
        candidate_files(spec).into_iter().filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("csv") | Some("parquet"))).collect();
    let mut found = Vec::new();
    let mut checked = Vec::new();
    for output in &spec.outputs {
        let Some(id) = output.id.as_deref() else { continue };
        let shared = leaks::shared_ids(&spec.truth_path(output), id, &tables)?;
        found.extend(shared.iter().map(|s| format!("{}: {}", s.file.display(), s.shared.describe())));
        checked.push(format!("{id:?} of {}", output.truth));
    }
    if checked.is_empty() {
        Ok("the task has no id column (rows match whole)".to_string())
    } else if found.is_empty() {
        Ok(format!("no hidden {} in {}", checked.join(" or "), crate::units::count(tables.len(), "public table")))
    } else {
        Err(found.join("; "))
    }
}

/// No file that candidates receive is a copy of a hidden file.
fn check_hidden_files(spec: &TaskSpec) -> Result<String, String> {
    let hidden: BTreeMap<String, PathBuf> =
        files_below(&spec.dataset_dir().join("hidden")).into_iter().filter_map(|p| sha256_file(&p).ok().map(|d| (d, p))).collect();
    let mut copies = Vec::new();
    let candidates = candidate_files(spec);
    for file in &candidates {
        if let Some(original) = sha256_file(file).ok().and_then(|d| hidden.get(&d)) {
            copies.push(format!("{} is a copy of {}", file.display(), original.display()));
        }
    }
    if copies.is_empty() {
        Ok(format!("none of {} copies one of {}", crate::units::count(candidates.len(), "candidate file"), crate::units::count(hidden.len(), "hidden file")))
    } else {
        Err(copies.join("; "))
    }
}

/// Warns when one feature of the hidden inputs gives the hidden label away.
fn check_giveaways(spec: &TaskSpec) -> Result<Option<String>, String> {
    let inputs: Vec<PathBuf> = spec
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter())
        .filter(|i| i.starts_with("hidden"))
        .flat_map(|i| {
            let path = spec.dataset_dir().join(i);
            if path.is_dir() {
                files_below(&path)
            } else {
                vec![path]
            }
        })
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("csv") | Some("parquet")))
        .collect();
    let mut warnings = Vec::new();
    for output in &spec.outputs {
        let (MetricInput::Labels | MetricInput::Probabilities, Some(id), Some(target)) =
            (output.metric.input(), output.id.as_deref(), output.target.as_deref())
        else {
            continue;
        };
        let found = leaks::label_giveaways(&spec.truth_path(output), id, target, &inputs, GIVEAWAY_THRESHOLD)?;
        warnings.extend(found.iter().map(|g| {
            format!("{} column {:?} predicts the hidden {target:?} with accuracy {:.3} from {} values", g.file.display(), g.column, g.purity, g.n_values)
        }));
    }
    Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
}

/// JUnit XML for CI: a test suite per task, a test case per check.
pub fn junit(results: &[CaseResult]) -> String {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
    }
    let mut tasks: Vec<&str> = results.iter().map(|r| r.task.as_str()).collect();
    tasks.dedup();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"takehome check\">\n");
    for task in tasks {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.task == task).collect();
        let failures = cases.iter().filter(|c| c.status == CaseStatus::Failed).count();
        let seconds: f64 = cases.iter().map(|c| c.seconds).sum();
        xml.push_str(&format!("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.3}\">\n", escape(task), cases.len()));
        for case in cases {
            xml.push_str(&format!("    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">", escape(task), escape(&case.name), case.seconds));
            match case.status {
                CaseStatus::Failed => xml.push_str(&format!("<failure message=\"{}\"/>", escape(case.message.lines().next().unwrap_or("")))),
                CaseStatus::Warning => xml.push_str(&format!("<system-out>warning: {}</system-out>", escape(&case.message))),
                CaseStatus::Passed => {}
            }
            xml.push_str("</testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod baseline_tests {
    use super::*;

    fn baseline(fixture: &str, score: f64, data: &str) -> Baseline {
        Baseline {
            fixture: fixture.into(),
            status: crate::report::Status::Graded,
            score,
            accuracy: score,
            code_quality: 100.0,
            runtime: 100.0,
            metric_value: None,
            task_digest: "t".into(),
            dataset_digest: data.into(),
            image: "i".into(),
            graded_at: String::new(),
        }
    }

    #[test]
    fn shifts_name_what_moved_and_why() {
        let old = vec![baseline("reference", 97.0, "d1"), baseline("weak", 20.0, "d1")];
        let new = vec![baseline("reference", 91.5, "d2"), baseline("weak", 20.0, "d2"), baseline("extra", 50.0, "d2")];
        let shifts = baseline_shifts(&old, &new);
        assert_eq!(shifts.len(), 2, "{shifts:?}");
        assert!(shifts[0].starts_with("reference: score 97.0 -> 91.5") && shifts[0].contains("the data set changed"), "{shifts:?}");
        assert_eq!(shifts[1], "extra: new baseline 50.0");
    }

    #[test]
    fn a_regrade_with_only_a_new_time_is_the_same() {
        let old = vec![baseline("reference", 97.0, "d1"), baseline("weak", 20.0, "d1")];
        let mut again = old.clone();
        again[0].graded_at = "2026-11-28T10:00:00Z".into();
        assert!(baselines_same(&old, &again));
        again[1].runtime = 99.0;
        assert!(!baselines_same(&old, &again), "a moved component is a change");
        assert!(!baselines_same(&old, &old[..1]), "a fixture gone is a change");
    }
}
