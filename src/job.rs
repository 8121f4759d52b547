//! One grading job: a task, a submission folder, an image → a [`Report`].
//!
//! Owns the order of things: copy the submission (host side, links never followed), open a job
//! sandbox, run the task's steps in order until one does not end `ok`, lint the code in a container
//! of its own, bring each graded output file out, grade it, score, close the sandbox. Knows
//! nothing of Docker (it speaks to the [`Sandbox`] trait) nor of how metrics are computed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

use crate::grading::{self, lint, Accuracy, OutputProblem, MAX_OUTPUT_BYTES};
use crate::report::artifacts::Artifacts;
use crate::report::*;
use crate::sandbox::{Bind, JobOptions, JobSandbox, Limits, Outcome, RunError, Sandbox, StepRequest, StepRun};
use crate::submission::{self, PreparedSubmission, SubmissionError};
use crate::task::{GradingSpec, TaskSpec};

const LINT_TIMEOUT: Duration = Duration::from_secs(120);
const LINT_MEMORY: u64 = 1 << 30;
const LINT_LOG_CAP: usize = 16 << 20;
/// Lint findings a report lists (each with its message and up to three lines of context); the
/// count and the score take every finding, so a push of 30,000 findings makes no 30 MB report.
pub const MAX_REPORTED_FINDINGS: usize = 1_000;
/// Characters of a finding's message kept (ruff's messages quote the candidate's names).
const MAX_FINDING_MESSAGE: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("sandbox")]
    Sandbox(#[from] RunError),
    #[error("submission")]
    Submission(#[from] SubmissionError),
    #[error("grading")]
    Grading(#[from] grading::GradingError),
    #[error("{0}")]
    Internal(String),
    #[error("cancelled")]
    Cancelled,
}

/// The image a job runs in, as the sandbox knows it.
#[derive(Debug, Clone)]
pub struct ImageRef {
    pub tag: String,
    pub id: String,
}

/// Progress lines for people watching (one per step start and end).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A job id: lowercase hex, unique enough to name containers and volumes.
pub fn new_job_id() -> String {
    format!("{}{}", &crate::sandbox::fresh_suffix(), &crate::sandbox::fresh_suffix()[..4])
}

/// The sandbox options of a job of `task`.
pub fn job_options(task: &TaskSpec, image: &ImageRef, job_id: &str) -> JobOptions {
    JobOptions {
        job_id: job_id.to_string(),
        image: image.tag.clone(),
        workspace_bytes: task.workspace_cap_bytes,
        output_bytes: task.output_cap_bytes,
        runtime: task.min_runtime,
    }
}

/// What a job of `task` needs of the worker that grades it: the digests of the task folder and
/// data set as they are now (a worker grades it only with the same copies), the most memory a
/// step may use, and the runtime the task asks for. Reads are cached by file identity.
pub fn needs(task: &TaskSpec) -> Result<crate::store::JobNeeds, NeedsError> {
    let digest = |dir: &Path| crate::digest::tree_digest_cached(dir).map_err(|e| NeedsError::Read(dir.to_path_buf(), e));
    Ok(crate::store::JobNeeds {
        spec_digest: digest(&task.dir)?,
        data_digest: digest(&task.dataset_dir())?,
        memory_bytes: task.steps.iter().map(|s| s.memory_bytes).max().unwrap_or(0).min(i64::MAX as u64) as i64,
        runtime: task.min_runtime.as_str().to_string(),
        gpus: i64::from(task.gpus()),
    })
}

/// [`needs`] of the task `task_id` of `tasks`, read on the blocking pool.
pub async fn needs_of(tasks: &std::sync::Arc<crate::task::Catalog>, id: &crate::task::TaskId) -> Result<crate::store::JobNeeds, NeedsError> {
    let (tasks, id) = (tasks.clone(), id.clone());
    tokio::task::spawn_blocking(move || needs(&*tasks.load(&id)?)).await?
}

/// Why a job's needs could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum NeedsError {
    #[error(transparent)]
    Task(#[from] crate::task::SpecError),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("the blocking pool")]
    Pool(#[from] tokio::task::JoinError),
}

/// Every task under `tasks_root` as this host's copy has it (a task that does not load is left
/// out: no job of it can be graded here).
/// The images a job of `task` on `submission` runs steps in beside the task's own: its run
/// choices' (an R script's), and an extended image (python, 10 GB, beside python-slim) only
/// when the submission imports what it adds. The scan reads the candidate's files, never runs
/// them; a submission the job would refuse (too many files, say) chooses no extended image (the
/// job reports it).
pub fn other_images(task: &TaskSpec, submission: &Path) -> Vec<String> {
    let extended = if task.extended_images.is_empty() {
        None
    } else {
        // Read in place (the copy is the job's to make): the walk takes no link, so every file
        // read lies below the checkout.
        crate::submission::python_files(submission).and_then(|files| {
            let imports = crate::environment::submission_imports(submission, &files);
            crate::environment::extended_image(&task.root, &task.extended_images, &imports).map(|(image, _)| image)
        })
    };
    task.images().into_iter().skip(1).filter(|image| !task.extended_images.contains(image) || extended.as_ref() == Some(image)).collect()
}

/// Each with the GPUs its jobs need.
pub fn task_copies_and_gpus(tasks: &crate::task::Catalog) -> Vec<(crate::store::TaskCopy, i64)> {
    tasks
        .all()
        .iter()
        .filter_map(|task| {
            let needs = needs(task).ok()?;
            Some((crate::store::TaskCopy { task: task.id.clone(), spec_digest: needs.spec_digest, data_digest: needs.data_digest }, needs.gpus))
        })
        .collect()
}

/// Grades `submission_dir` for `task` in `sandbox`. `Err` only for our own failures and cancellation.
/// The result of a submission's public dry run, as stored for its candidate: the report of the
/// steps run on the task's public stand-ins (nothing hidden mounted), or why it could not run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PublicRun {
    pub report: Option<Report>,
    /// Our failure (never the candidate's): the dry run could not be done.
    pub error: Option<String>,
    /// Whether the task lets the candidate see the dry run's score.
    pub show_score: bool,
}

/// Runs the task's public dry run of a submission (the task's `public_variant`); `None` when the
/// task declares none. It never fails: our errors are kept in the result.
pub async fn public_run<S: Sandbox>(
    sandbox: &S,
    task: &TaskSpec,
    submission_dir: &Path,
    image: &ImageRef,
    job_id: &str,
    cancel: &CancellationToken,
) -> Option<PublicRun> {
    let show_score = task.public_run.as_ref()?.show_score;
    let Some(public) = task.public_variant() else {
        return Some(PublicRun { report: None, error: Some("the task's public run still mounts hidden data; it was not run".into()), show_score });
    };
    match grade(sandbox, &public, submission_dir, image, job_id, cancel, &|_| {}).await {
        // The dry run's notebooks and figures are not kept: no page shows them, and the stored
        // run stays small (the status page reads ten of them).
        Ok(report) => Some(PublicRun {
            report: Some(Report { artifacts: Artifacts::default(), methodology: Vec::new(), debrief: Vec::new(), ..report }),
            error: None,
            show_score,
        }),
        Err(error) => Some(PublicRun { report: None, error: Some(crate::errors::chain(&error)), show_score }),
    }
}

pub async fn grade<S: Sandbox>(
    sandbox: &S,
    task: &TaskSpec,
    submission_dir: &Path,
    image: &ImageRef,
    job_id: &str,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Report, JobError> {
    let options = job_options(task, image, job_id);
    grade_opening(sandbox, task, submission_dir, image, job_id, sandbox.open_job(&options), None, cancel, progress).await
}

/// Closes finished jobs' sandboxes in the background, off the path from push to report. Whoever
/// holds it waits for it before ending ([`Reaper::wait`]), so nothing of a job outlives the
/// process that ran it.
#[derive(Default)]
pub struct Reaper {
    closing: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Reaper {
    /// Closes `job` in the background.
    pub fn close<J: JobSandbox + Send + 'static>(&self, job: J) {
        let handle = tokio::spawn(async move {
            if let Err(error) = job.close().await {
                tracing::warn!(error = %crate::errors::Chain(&error), "could not close a job's sandbox");
            }
        });
        let mut closing = self.closing.lock().unwrap();
        closing.retain(|handle| !handle.is_finished());
        closing.push(handle);
    }

    /// Waits until every job handed over is closed.
    pub async fn wait(&self) {
        loop {
            let handles = std::mem::take(&mut *self.closing.lock().unwrap());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.await;
            }
        }
    }
}

/// Closes a finished job: now, or through a reaper.
async fn close_job<J: JobSandbox + Send + 'static>(job: J, reaper: Option<&Reaper>) -> Result<(), RunError> {
    match reaper {
        Some(reaper) => {
            reaper.close(job);
            Ok(())
        }
        None => job.close().await,
    }
}

/// [`grade`], with the job's sandbox being opened by `opening` (the daemon starts it while it
/// checks out the commit; here it overlaps the copy of the submission). The volumes and holder
/// are ready by the time the first step needs them, instead of after the copy. With a `reaper`,
/// the finished job's sandboxes are closed in the background (the daemon); without, before this
/// returns.
#[allow(clippy::too_many_arguments)]
pub async fn grade_opening<S: Sandbox>(
    sandbox: &S,
    task: &TaskSpec,
    submission_dir: &Path,
    image: &ImageRef,
    job_id: &str,
    opening: impl std::future::Future<Output = Result<S::Job, RunError>>,
    reaper: Option<&Reaper>,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Report, JobError> {
    let span = info_span!("job", job = %job_id, task = %task.id, submission = %submission_dir.display());
    async move {
        let source = submission_dir.to_path_buf();
        let copying = async {
            tokio::task::spawn_blocking(move || submission::prepare(&source))
                .await
                .map_err(|error| JobError::Internal(format!("copying the submission panicked: {error}")))
        };
        let (prepared, opened) = tokio::join!(copying, opening);
        let (prepared, job) = match (prepared, opened) {
            (Ok(Ok(prepared)), Ok(job)) => (prepared, job),
            (prepared, opened) => {
                // Close what was opened, then say what went wrong: the candidate's refusal first
                // (it needs no sandbox), else our failure.
                let open_error = match opened {
                    Ok(job) => {
                        let _ = job.close().await;
                        None
                    }
                    Err(error) => Some(error),
                };
                return match prepared {
                    Ok(Err(error)) if error.is_candidates() => rejected_report(task, submission_dir, image, crate::errors::chain(&error)).await,
                    Ok(Err(error)) => Err(error.into()),
                    Err(panicked) => Err(panicked),
                    Ok(Ok(_)) => Err(open_error.map(JobError::from).unwrap_or_else(|| JobError::Internal("the job's sandbox did not open".into()))),
                };
            }
        };
        // The lint needs only the submission: it runs in a bare job of its own, beside the steps,
        // so that it adds nothing to the time from push to report.
        let options = job_options(task, image, job_id);
        let lint_options = JobOptions { job_id: format!("{job_id}l"), ..options };
        let lint = async {
            let lint_job = sandbox.open_bare_job(&lint_options).await?;
            let run = run_lints(&lint_job, task, &prepared, cancel).await;
            let closed = close_job(lint_job, reaper).await;
            let run = run?;
            closed.map(|_| run)
        };
        // A task with an extended image (python, beside python-slim) runs a submission that
        // imports what only that image has (torch) in it: the scan reads the candidate's files,
        // never runs them.
        let extended = if task.extended_images.is_empty() {
            None
        } else {
            let imports = crate::environment::submission_imports(prepared.path(), &prepared.python_files);
            crate::environment::extended_image(&task.root, &task.extended_images, &imports)
        };
        let extended_ref = extended.as_ref();
        let steps = async {
            let runtime = job.runtime();
            let result = run_job(&job, task, &prepared, extended_ref, cancel, progress).await;
            // Close on every path; the sandbox's guard covers a panic or a dropped future.
            let closed = close_job(job, reaper).await;
            let (runs, output, artifacts) = result?;
            closed.map(|_| (runtime, runs, output, artifacts))
        };
        let (lint_run, stepped) = tokio::join!(lint, steps);
        let ((runtime, runs, output, artifacts), lint_run) = match (stepped, lint_run) {
            (Err(RunError::Cancelled), _) | (_, Err(RunError::Cancelled)) => return Err(JobError::Cancelled),
            (Err(error), _) | (_, Err(error)) => return Err(error.into()),
            (Ok(stepped), Ok(lint_run)) => (stepped, lint_run),
        };
        let mut report = build_report(task, &prepared, image, runtime, runs, lint_run, output).await?;
        report.artifacts = artifacts;
        report.provenance.extended_image = extended.map(|(image, modules)| ExtendedImage { image, modules });
        info!(status = report.status.as_str(), score = report.score, "graded");
        Ok(report)
    }
    .instrument(span)
    .await
}

/// What came out of the graded output file.
struct CollectedOutput {
    accuracy_input: Result<PathBuf, OutputProblem>,
    bytes: Option<u64>,
    rejected: Vec<crate::sandbox::Rejected>,
    _dir: tempfile::TempDir,
}

async fn run_job<J: JobSandbox>(
    job: &J,
    task: &TaskSpec,
    prepared: &PreparedSubmission,
    extended: Option<&(String, Vec<String>)>,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<(Vec<StepRun>, Option<Vec<CollectedOutput>>, Artifacts), RunError> {
    let dataset_dir = task.dataset_dir();
    let image_tag = |name: &str| crate::sandbox::image::Recipe::load(&task.root, name).map(|recipe| recipe.tag());
    let extended_tag = match extended {
        Some((name, modules)) => {
            progress(&format!("the submission imports {}: its Python steps run in the {name} image", modules.join(", ")));
            Some(image_tag(name)?)
        }
        None => None,
    };
    let mut runs = Vec::new();
    for step in &task.steps {
        let mut inputs = Vec::new();
        for input in &step.inputs {
            let host = dataset_dir
                .join(input)
                .canonicalize()
                .map_err(|source| RunError::Io { action: format!("find input {input} of step {}", step.name), source })?;
            let name = Path::new(input).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            inputs.push(Bind { host, target: format!("/data/{name}") });
        }
        let mut limits = Limits::new(step.timeout, step.memory_bytes, step.cpus);
        limits.file_bytes = task.workspace_cap_bytes.max(task.output_cap_bytes);
        limits.gpus = step.gpus;
        limits.gpu_devices = task.gpu_devices.clone();
        let command = step.command_for(prepared.path()).to_string();
        // A choice in another language runs in its own image (built beside the task's); one in
        // the task's own image, in the extended image the submission's imports asked for.
        let image = match step.image_for(prepared.path()) {
            Some(name) if name != task.image => Some(image_tag(name)?),
            _ => extended_tag.clone(),
        };
        let request = StepRequest {
            name: step.name.clone(),
            command: vec!["/bin/sh".to_string(), "-c".to_string(), command.clone()],
            submission: prepared.path().to_path_buf(),
            inputs,
            limits,
            image,
        };
        progress(&format!("step {}: running `{command}`", step.name));
        let run = job.run_step(&request, cancel).await?;
        progress(&format!("step {}: {} in {:.2} s", step.name, run.outcome.as_str(), run.wall.as_secs_f64()));
        let ok = run.outcome == Outcome::Ok;
        runs.push(run);
        if !ok {
            break;
        }
    }

    let all_ok = runs.len() == task.steps.len() && runs.iter().all(|r| r.outcome == Outcome::Ok);
    let output = if all_ok {
        let mut collected = Vec::new();
        for spec in &task.outputs {
            collected.push(collect(job, task, &spec.output).await?);
        }
        Some(collected)
    } else {
        None
    };
    // Notebooks as they ran and saved figures, whether or not every step ended well (a notebook
    // that stopped at an error shows where).
    let artifacts = collect_artifacts(job).await?;
    Ok((runs, output, artifacts))
}

/// Bytes collected of `/output/.takehome-executed` and of `/output/figures` (each as a whole:
/// over the cap, nothing of it is kept).
const ARTIFACTS_CAP: u64 = 16 << 20;

/// The executed notebooks and the figures a run left under `/output` (see `report::artifacts`).
async fn collect_artifacts<J: JobSandbox>(job: &J) -> Result<Artifacts, RunError> {
    use crate::sandbox::{EXECUTED_NAME, FIGURES_NAME};
    let mut gathered = Vec::new();
    let mut cut = Vec::new();
    for name in [EXECUTED_NAME, FIGURES_NAME] {
        let dir = tempfile::Builder::new()
            .prefix("takehome-artifacts-")
            .tempdir()
            .map_err(|source| RunError::Io { action: "create an artifacts folder".into(), source })?;
        // Auxiliary: what cannot be collected is said, never a reason to fail the job.
        let extracted = match job.collect_output(name, dir.path(), ARTIFACTS_CAP).await {
            Ok(extracted) => extracted,
            Err(RunError::Cancelled) => return Err(RunError::Cancelled),
            Err(error) => {
                tracing::warn!(error = %crate::errors::Chain(&error), "cannot collect /output/{name}");
                cut.push(format!("/output/{name} could not be collected"));
                gathered.push(Vec::new());
                continue;
            }
        };
        if extracted.too_large.is_some() {
            cut.push(format!("/output/{name} is over {} and is not shown", crate::units::format_size(ARTIFACTS_CAP)));
        }
        let root = dir.path().join(name);
        let mut files = Vec::new();
        for (path, _) in &extracted.files {
            // extract_safely wrote regular files only, below the folder; read them back capped.
            let Ok(relative) = path.strip_prefix(name) else { continue };
            let Ok(file) = crate::submission::open_no_follow(&root.join(relative)) else { continue };
            let mut bytes = Vec::new();
            if std::io::Read::read_to_end(&mut std::io::Read::take(file, ARTIFACTS_CAP), &mut bytes).is_ok() {
                files.push((relative.to_string_lossy().into_owned(), bytes));
            }
        }
        gathered.push(files);
    }
    let figures = gathered.pop().unwrap_or_default();
    let executed = gathered.pop().unwrap_or_default();
    let mut artifacts = tokio::task::spawn_blocking(move || crate::report::artifacts::gather(executed, figures))
        .await
        .map_err(|error| RunError::Io { action: "read the run's notebooks and figures".into(), source: std::io::Error::other(error) })?;
    artifacts.cut.extend(cut);
    Ok(artifacts)
}

/// The lints of a submission, in a job of its own (no data, no volumes): ruff, and lintr where
/// the submission holds R scripts and the task runs them (an R run choice names its image).
async fn run_lints<J: JobSandbox>(job: &J, task: &TaskSpec, prepared: &PreparedSubmission, cancel: &CancellationToken) -> Result<LintRuns, RunError> {
    let ruff = run_lint(job, task, prepared, cancel).await?;
    let lintr = match task.r_image() {
        Some(name) if !prepared.r_files.is_empty() => {
            let tag = crate::sandbox::image::Recipe::load(&task.root, name)?.tag();
            Some(run_lintr(job, prepared, tag, cancel).await?)
        }
        _ => None,
    };
    Ok(LintRuns { ruff, lintr })
}

/// What the lints printed.
struct LintRuns {
    ruff: StepRun,
    lintr: Option<StepRun>,
}

/// lintr's default linters over the submission's R scripts and R Markdown, one finding a line (`file`, `line`,
/// `linter`, `message`, tab-separated) for [`lint::parse_lintr_lines`].
async fn run_lintr<J: JobSandbox>(job: &J, prepared: &PreparedSubmission, image: String, cancel: &CancellationToken) -> Result<StepRun, RunError> {
    // R's own escapes (`\t`, `\n`): Rscript -e cuts an expression at a real newline.
    let script = r"for (f in list.files('/submission', pattern = '[.]([Rr]|[Rr]md)$', recursive = TRUE)) { \
         l <- tryCatch(lintr::lint(file.path('/submission', f), parse_settings = FALSE), \
           error = function(e) { cat(f, 0, 'lintr', gsub('[\t\r\n]', ' ', conditionMessage(e)), sep = '\t'); cat('\n'); NULL }); \
         for (x in l) { cat(f, x$line_number, x$linter, gsub('[\t\r\n]', ' ', x$message), sep = '\t'); cat('\n') } }"
        .replace("\\\n", " ");
    let mut limits = Limits::new(LINT_TIMEOUT, LINT_MEMORY, 1.0);
    limits.log_cap = LINT_LOG_CAP;
    let request = StepRequest {
        name: "lintr".to_string(),
        command: vec!["Rscript".to_string(), "-e".to_string(), script.to_string()],
        submission: prepared.path().to_path_buf(),
        inputs: Vec::new(),
        limits,
        image: Some(image),
    };
    job.run_step(&request, cancel).await
}

/// ruff over the submission.
async fn run_lint<J: JobSandbox>(job: &J, task: &TaskSpec, prepared: &PreparedSubmission, cancel: &CancellationToken) -> Result<StepRun, RunError> {
    let select = task.lint.select.join(",");
    let script = format!(
        "ruff check --isolated --no-cache --exit-zero --output-format json --select {select} /submission; \
         ruff format --isolated --no-cache --check /submission 1>&2; true"
    );
    let mut limits = Limits::new(LINT_TIMEOUT, LINT_MEMORY, 1.0);
    limits.log_cap = LINT_LOG_CAP;
    let lint_request = StepRequest {
        name: "lint".to_string(),
        command: vec!["/bin/sh".to_string(), "-c".to_string(), script],
        submission: prepared.path().to_path_buf(),
        inputs: Vec::new(),
        limits,
        image: None,
    };
    job.run_step(&lint_request, cancel).await
}

async fn collect<J: JobSandbox>(job: &J, task: &TaskSpec, name: &str) -> Result<CollectedOutput, RunError> {
    let dir =
        tempfile::Builder::new().prefix("takehome-output-").tempdir().map_err(|source| RunError::Io { action: "create an output folder".into(), source })?;
    // An honest output fits its volume; a larger apparent size is a sparse file.
    let extracted = job.collect_output(name, dir.path(), MAX_OUTPUT_BYTES.min(task.output_cap_bytes)).await?;
    let path = dir.path().join(name);
    let file = extracted.files.iter().find(|(p, _)| p == Path::new(name));
    let accuracy_input = if let Some(cap) = extracted.too_large {
        Err(OutputProblem::bad_format(format!("/output/{name} is larger than {}", crate::units::format_size(cap))))
    } else if extracted.missing {
        Err(OutputProblem::missing(format!("the steps wrote no /output/{name}")))
    } else if let Some(rejected) = extracted.rejected.iter().find(|r| r.path == *name) {
        Err(OutputProblem::bad_format(format!("/output/{name} is {}", rejected.reason)))
    } else if file.is_none() {
        Err(OutputProblem::bad_format(format!("/output/{name} is not a regular file")))
    } else {
        Ok(path)
    };
    Ok(CollectedOutput { accuracy_input, bytes: file.map(|(_, size)| *size), rejected: extracted.rejected, _dir: dir })
}

fn step_report(run: &StepRun, step: &crate::task::StepSpec) -> StepReport {
    StepReport {
        name: step.name.clone(),
        outcome: run.outcome,
        exit_code: run.exit_code,
        message: run.message.clone(),
        wall_seconds: run.wall.as_secs_f64(),
        cpu_seconds: run.cpu_seconds,
        peak_memory_bytes: run.peak_memory_bytes,
        accounting: run.accounting,
        memory_limit_bytes: step.memory_bytes,
        timeout_seconds: step.timeout.as_secs_f64(),
        cpus: step.cpus,
        stdout_tail: run.stdout.text(),
        stderr_tail: run.stderr.text(),
        stdout_bytes: run.stdout.total_bytes,
        stderr_bytes: run.stderr.total_bytes,
        stdout_truncated: run.stdout.truncated(),
        stderr_truncated: run.stderr.truncated(),
        candidate_logs: step.candidate_logs,
    }
}

fn lint_findings(run: &StepRun) -> Vec<lint::Finding> {
    if run.outcome != Outcome::Ok {
        return vec![lint::Finding {
            file: String::new(),
            line: 0,
            rule: "lint".into(),
            message: format!("ruff did not finish: {}", run.message),
            context: vec![],
        }];
    }
    let mut findings = match lint::parse_ruff_json(&run.stdout.text(), "/submission") {
        Ok(findings) => findings,
        Err(message) => vec![lint::Finding { file: String::new(), line: 0, rule: "lint".into(), message, context: vec![] }],
    };
    findings.extend(lint::parse_format_check(&run.stderr.text(), "/submission"));
    findings
}

fn lintr_findings(run: &StepRun) -> Vec<lint::Finding> {
    if run.outcome != Outcome::Ok {
        // The lint reads the candidate's code alone (no data mounted): its errors are theirs to see.
        let stderr = run.stderr.text();
        let last: String = stderr.trim().lines().last().unwrap_or("").chars().take(300).collect();
        let message =
            if last.is_empty() { format!("lintr did not finish: {}", run.message) } else { format!("lintr did not finish: {} ({last})", run.message) };
        return vec![lint::Finding { file: String::new(), line: 0, rule: "lintr".into(), message, context: vec![] }];
    }
    lint::parse_lintr_lines(&run.stdout.text())
}

/// Grades an output and each of its slices of the hidden rows. Slices the task's data cannot
/// give (`check` says why) leave a note in their place, and the grade stands without them.
fn graded_with_slices(spec: &GradingSpec, output: &Path, truth: &Path, dataset: &Path) -> Result<Accuracy, grading::GradingError> {
    match grading::slices::members(spec, dataset) {
        Ok(slices) => grading::grade_output_sliced(spec, output, truth, &slices),
        Err(message) => {
            tracing::warn!(output = %spec.output, %message, "the task's slices could not be read");
            let mut accuracy = grading::grade_output(spec, output, truth)?;
            if accuracy.problem.is_none() {
                let note = format!("the task's slices could not be read: {message}");
                accuracy.slices = vec![grading::slices::SliceScore { name: "slices".into(), rows: 0, value: None, note: Some(note) }];
            }
            Ok(accuracy)
        }
    }
}

async fn build_report(
    task: &TaskSpec,
    prepared: &PreparedSubmission,
    image: &ImageRef,
    runtime: crate::sandbox::Runtime,
    runs: Vec<StepRun>,
    lint_run: LintRuns,
    output: Option<Vec<CollectedOutput>>,
) -> Result<Report, JobError> {
    let all_ok = runs.len() == task.steps.len() && runs.iter().all(|r| r.outcome == Outcome::Ok);
    let mut graded = Vec::new();
    for (index, spec) in task.outputs.iter().enumerate() {
        let collected = output.as_ref().and_then(|o| o.get(index));
        let accuracy = match collected {
            None => {
                let failed = runs.iter().find(|r| r.outcome != Outcome::Ok).map(|r| r.outcome.as_str()).unwrap_or("failed");
                Accuracy::failed(spec.metric, OutputProblem::missing(format!("not scored: a step ended {failed}")))
            }
            Some(CollectedOutput { accuracy_input: Err(problem), .. }) => Accuracy::failed(spec.metric, problem.clone()),
            Some(CollectedOutput { accuracy_input: Ok(path), .. }) => {
                let (spec_owned, path, truth, dataset) = (spec.clone(), path.clone(), task.truth_path(spec), task.dataset_dir());
                tokio::task::spawn_blocking(move || graded_with_slices(&spec_owned, &path, &truth, &dataset))
                    .await
                    .map_err(|error| JobError::Internal(format!("grading panicked: {error}")))??
            }
        };
        graded.push((accuracy, collected.and_then(|c| c.bytes)));
    }
    let accuracy_component = combine_outputs(task, graded);
    let status = if !all_ok {
        Status::StepFailed
    } else if accuracy_component.accuracy.problem.is_some() {
        Status::BadOutput
    } else {
        Status::Graded
    };
    let accuracy_score = accuracy_component.score;

    let mut findings = lint_findings(&lint_run.ruff);
    if let Some(lintr) = &lint_run.lintr {
        findings.extend(lintr_findings(lintr));
    }
    let n_findings = findings.len();
    findings.truncate(MAX_REPORTED_FINDINGS);
    for finding in &mut findings {
        if finding.message.chars().count() > MAX_FINDING_MESSAGE {
            finding.message = finding.message.chars().take(MAX_FINDING_MESSAGE).chain("…".chars()).collect();
        }
    }
    add_context(prepared, &mut findings);
    let lines_of_code = count_lines(prepared, lint_run.lintr.is_some());
    let step_costs = runs
        .iter()
        .zip(&task.steps)
        .filter(|_| all_ok)
        .map(|(run, step)| crate::debrief::StepCost {
            name: step.name.clone(),
            wall_seconds: run.wall.as_secs_f64(),
            peak_memory_bytes: run.peak_memory_bytes,
            memory_limit_bytes: Some(step.memory_bytes),
        })
        .collect();
    let mut outcomes = Outcomes::of(&accuracy_component, task.primary().output.as_str(), step_costs);
    outcomes.failed_step = runs
        .iter()
        .zip(&task.steps)
        .find(|(run, _)| run.outcome != Outcome::Ok)
        .map(|(run, step)| (step.name.clone(), run.outcome.as_str().to_string(), run.message.clone()));
    let (methodology, debrief) = methodology_findings(task, prepared, accuracy_score, outcomes).await?;
    let code_score = grading::code_quality_score(n_findings, lines_of_code, task.lint.zero_at);

    let wall: Duration = runs.iter().map(|r| r.wall).sum();
    let cpu_seconds = runs.iter().map(|r| r.cpu_seconds).sum::<Option<f64>>();
    let peak_memory_bytes = runs.iter().filter_map(|r| r.peak_memory_bytes).max();
    let runtime_score = if all_ok { grading::runtime_score(wall, task.runtime_full_under, task.total_timeout()) } else { 0.0 };

    let weights = task.weights;
    let score = weights.total(accuracy_score, code_score, runtime_score);
    let per_100 = if lines_of_code == 0 { 0.0 } else { n_findings as f64 * 100.0 / lines_of_code as f64 };
    let formula = explain(
        &weights,
        (accuracy_score, code_score, runtime_score),
        score,
        &accuracy_formula(task, &accuracy_component),
        &format!("{} = 100 x clamp(1 - {per_100:.2} findings per 100 lines / {}, 0, 1)", fmt1(code_score), task.lint.zero_at),
        &format!(
            "{} = 100 if {:.2} s <= {} s, falling linearly to 0 at {} s{}",
            fmt1(runtime_score),
            wall.as_secs_f64(),
            task.runtime_full_under.as_secs_f64(),
            task.total_timeout().as_secs_f64(),
            if all_ok { "" } else { " (0: a step did not end ok)" }
        ),
    );
    let steps = runs.iter().zip(&task.steps).map(|(run, step)| step_report(run, step)).collect();
    let (dataset_dir, task_dir) = (task.dataset_dir(), task.dir.clone());
    let (dataset_digest, task_digest) =
        tokio::task::spawn_blocking(move || (crate::digest::tree_digest_cached(&dataset_dir), crate::digest::tree_digest_cached(&task_dir)))
            .await
            .map_err(|error| JobError::Internal(error.to_string()))?;
    let dataset_digest = dataset_digest.map_err(|error| JobError::Internal(format!("cannot read the data set: {error}")))?;
    let task_digest = task_digest.map_err(|error| JobError::Internal(format!("cannot read the task folder: {error}")))?;
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        candidate: None,
        task: TaskRef { id: task.id.to_string(), title: task.title.clone(), kind: task.kind.as_str().to_string() },
        submission: SubmissionRef {
            path: prepared.source.display().to_string(),
            commit: prepared.commit.clone(),
            n_files: prepared.n_files,
            n_bytes: prepared.n_bytes,
            skipped_links: prepared.skipped_links.clone(),
        },
        status,
        score,
        formula,
        components: Components {
            accuracy: AccuracyComponent { weight: weights.accuracy, ..accuracy_component },
            code_quality: CodeQualityComponent {
                tool: "ruff".to_string(),
                rules: task.lint.select.clone(),
                n_findings,
                lines_of_code,
                findings_per_100_lines: per_100,
                zero_at: task.lint.zero_at,
                findings,
                score: code_score,
                weight: weights.code_quality,
            },
            runtime: RuntimeComponent {
                wall_seconds: wall.as_secs_f64(),
                cpu_seconds,
                peak_memory_bytes,
                full_under_seconds: task.runtime_full_under.as_secs_f64(),
                zero_at_seconds: task.total_timeout().as_secs_f64(),
                score: runtime_score,
                weight: weights.runtime,
            },
        },
        steps,
        output: OutputReport {
            file: output_files(task),
            bytes: output.as_ref().and_then(|o| o.iter().map(|c| c.bytes).sum::<Option<u64>>()),
            rejected: output.map(|o| o.into_iter().flat_map(|c| c.rejected).collect()).unwrap_or_default(),
        },
        artifacts: Artifacts::default(),
        methodology,
        debrief,
        provenance: Provenance {
            image: image.tag.clone(),
            image_id: image.id.clone(),
            runtime,
            dataset: task.dataset.clone(),
            dataset_digest,
            task_digest,
            takehome_version: crate::VERSION.to_string(),
            graded_at: now_rfc3339(),
            extended_image: None,
        },
    })
}

/// What the debrief asks about the graded outputs: each one's worst slice, most mixed-up
/// classes and weakest cleaned column.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub worst_slices: Vec<crate::debrief::WorstSlice>,
    pub confused: Vec<crate::debrief::Confused>,
    pub weak_columns: Vec<crate::debrief::WeakColumn>,
    pub steps: Vec<crate::debrief::StepCost>,
    /// The first step that did not end ok: name, outcome, why.
    pub failed_step: Option<(String, String, String)>,
    /// Outputs that could not be scored: file, why (a step that failed before them aside).
    pub refused: Vec<(String, String)>,
    /// The graded outputs that hold predictions (graded by a metric other than cell accuracy).
    pub predictions: Vec<String>,
}

impl Outcomes {
    /// From the accuracy and the steps (kept only when every step ran to its end).
    pub fn of(accuracy: &AccuracyComponent, single_file: &str, steps: Vec<crate::debrief::StepCost>) -> Outcomes {
        let refused = accuracy
            .each(single_file)
            .into_iter()
            .filter_map(|o| {
                o.accuracy.problem.as_ref().filter(|p| p.kind == crate::grading::ProblemKind::BadFormat).map(|p| (o.file.to_string(), p.message.clone()))
            })
            .collect();
        let predictions = accuracy.each(single_file).into_iter().filter(|o| o.accuracy.metric != "cell_accuracy").map(|o| o.file.to_string()).collect();
        Outcomes {
            predictions,
            worst_slices: accuracy.worst_slices(single_file),
            confused: accuracy.most_confused(single_file),
            weak_columns: accuracy.weakest_columns(single_file),
            steps,
            failed_step: None,
            refused,
        }
    }

    /// Evidence for the debrief that borrows these outcomes.
    pub fn failed(&self) -> Option<(&str, &str, &str)> {
        self.failed_step.as_ref().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
    }

    /// A stored report's.
    pub fn of_report(report: &Report) -> Outcomes {
        let all_ran = report.steps.iter().all(|s| s.outcome == Outcome::Ok);
        let steps = report
            .steps
            .iter()
            .filter(|_| all_ran)
            .map(|s| crate::debrief::StepCost {
                name: s.name.clone(),
                wall_seconds: s.wall_seconds,
                peak_memory_bytes: s.peak_memory_bytes,
                memory_limit_bytes: Some(s.memory_limit_bytes),
            })
            .collect();
        let mut outcomes = Outcomes::of(&report.components.accuracy, &report.output.file, steps);
        outcomes.failed_step =
            report.steps.iter().find(|s| s.outcome != Outcome::Ok).map(|s| (s.name.clone(), s.outcome.as_str().to_string(), s.message.clone()));
        outcomes
    }
}

/// The methodology findings of the submission's Python files and notebooks, read from the host's
/// own copy (bounded: `methodology::MAX_BYTES`), and the debrief they and NOTES.md give, on the
/// blocking pool.
async fn methodology_findings(
    task: &TaskSpec,
    prepared: &PreparedSubmission,
    accuracy: f64,
    outcomes: Outcomes,
) -> Result<(Vec<crate::methodology::Finding>, Vec<crate::debrief::Question>), JobError> {
    let context = crate::methodology::Context::of(task);
    let mut files: Vec<(String, String)> = Vec::new();
    let mut left = crate::methodology::MAX_BYTES as u64;
    for relative in prepared.python_files.iter().chain(&prepared.r_files) {
        let Some(name) = relative.to_str() else { continue };
        let size = std::fs::symlink_metadata(prepared.path().join(relative)).map(|m| m.len()).unwrap_or(u64::MAX);
        if size > crate::methodology::MAX_FILE_BYTES as u64 || size > left {
            continue;
        }
        if let Some(text) = read_linted(prepared, name) {
            left -= size;
            files.push((name.to_string(), text));
        }
    }
    let notes = read_notes(prepared);
    tokio::task::spawn_blocking(move || {
        let findings = crate::methodology::analyse(&files, &context);
        let evidence = crate::debrief::Evidence {
            files: &files,
            methodology: &findings,
            notes: notes.as_deref(),
            hidden_accuracy: Some(accuracy),
            worst_slices: &outcomes.worst_slices,
            confused: &outcomes.confused,
            weak_columns: &outcomes.weak_columns,
            steps: &outcomes.steps,
            failed_step: outcomes.failed(),
            refused: &outcomes.refused,
            predictions: &outcomes.predictions,
            ..Default::default()
        };
        let debrief = crate::debrief::questions(&evidence);
        (findings, debrief)
    })
    .await
    .map_err(|error| JobError::Internal(error.to_string()))
}

/// NOTES.md at the top of the submission (any case), at most 64 KiB, never through a link.
fn read_notes(prepared: &PreparedSubmission) -> Option<String> {
    let entry = std::fs::read_dir(prepared.path()).ok()?.filter_map(Result::ok).find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case("NOTES.md"))?;
    let file = submission::open_no_follow(&entry.path()).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, 64 << 10), &mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The graded files' names, as the report's `output.file` shows them.
fn output_files(task: &TaskSpec) -> String {
    task.outputs.iter().map(|o| o.output.as_str()).collect::<Vec<_>>().join(", ")
}

/// The accuracy component from each output's grade: for one output, that output's; for several,
/// each in `outputs` and their weighted mean above, with the first problem (named by its file).
fn combine_outputs(task: &TaskSpec, graded: Vec<(Accuracy, Option<u64>)>) -> AccuracyComponent {
    let scored: Vec<OutputGrade> = task
        .outputs
        .iter()
        .zip(graded)
        .map(|(spec, (accuracy, bytes))| OutputGrade {
            file: spec.output.clone(),
            score: accuracy.value.map(|v| spec.scale.score(v)).unwrap_or(0.0),
            accuracy,
            zero_at: spec.scale.zero_at,
            full_at: spec.scale.full_at,
            weight: spec.weight,
            bytes,
        })
        .collect();
    if scored.len() == 1 {
        let only = scored.into_iter().next().expect("one output");
        return AccuracyComponent {
            accuracy: only.accuracy,
            zero_at: only.zero_at,
            full_at: only.full_at,
            score: only.score,
            weight: 0.0,
            outputs: Vec::new(),
        };
    }
    let total_weight: f64 = scored.iter().map(|o| o.weight).sum();
    let score = scored.iter().map(|o| o.weight * o.score).sum::<f64>() / total_weight.max(f64::MIN_POSITIVE);
    let problem = scored.iter().find_map(|o| {
        o.accuracy.problem.as_ref().map(|p| {
            let message = if p.message.contains(&o.file) { p.message.clone() } else { format!("{}: {}", o.file, p.message) };
            OutputProblem { message, ..p.clone() }
        })
    });
    let metric = scored.iter().map(|o| o.accuracy.metric.as_str()).collect::<Vec<_>>().join(" + ");
    let accuracy = Accuracy { problem, n_rows: scored.iter().map(|o| o.accuracy.n_rows).sum(), ..Accuracy::unscored(metric) };
    AccuracyComponent { accuracy, zero_at: 0.0, full_at: 100.0, score, weight: 0.0, outputs: scored }
}

/// How one output's score follows from its metric.
fn output_formula(spec: &crate::task::GradingSpec, value: Option<f64>, score: f64) -> String {
    format!(
        "{} = 100 x clamp(({} {} - {}) / ({} - {}), 0, 1){}",
        fmt1(score),
        spec.metric.name(),
        value.map(|v| format!("{v:.6}")).unwrap_or_else(|| "(not scored: 0)".into()),
        spec.scale.zero_at,
        spec.scale.full_at,
        spec.scale.zero_at,
        if spec.metric.input() == crate::task::MetricInput::Table {
            format!(
                " (cells equal by their column's rule; numbers within {} x max(|truth|, 1); missing cells: {}, equal only to each other)",
                spec.tolerance,
                spec.missing_text()
            )
        } else {
            String::new()
        }
    )
}

/// The accuracy part of the formula: one output's, or the weighted mean of several.
fn accuracy_formula(task: &TaskSpec, component: &AccuracyComponent) -> String {
    if component.outputs.is_empty() {
        return output_formula(task.primary(), component.accuracy.value, component.score);
    }
    let total: f64 = component.outputs.iter().map(|o| o.weight).sum();
    let terms: Vec<String> = component.outputs.iter().map(|o| format!("{} x {} {}", o.weight, o.file, fmt1(o.score))).collect();
    let parts: Vec<String> =
        task.outputs.iter().zip(&component.outputs).map(|(spec, o)| format!("{} {}", o.file, output_formula(spec, o.accuracy.value, o.score))).collect();
    format!("{} = ({}) / {total}, where {}", fmt1(component.score), terms.join(" + "), parts.join("; "))
}

fn fmt1(value: f64) -> String {
    format!("{value:.1}")
}

/// The score's formula with its inputs, so that an assessor can recompute it by hand.
fn explain(weights: &crate::task::Weights, scores: (f64, f64, f64), total: f64, accuracy: &str, code: &str, runtime: &str) -> String {
    let sum = weights.accuracy + weights.code_quality + weights.runtime;
    let (open, gate) = if weights.gated { ("(", format!(") x accuracy {}/100", fmt1(scores.0))) } else { ("", String::new()) };
    let why = if weights.gated { " (code quality and runtime count in proportion to accuracy)" } else { "" };
    format!(
        "score {} = ({} x accuracy {} + {open}{} x code_quality {} + {} x runtime {}{gate}) / {sum}{why}; accuracy {accuracy}; code_quality {code}; runtime {runtime}",
        fmt1(total),
        weights.accuracy,
        fmt1(scores.0),
        weights.code_quality,
        fmt1(scores.1),
        weights.runtime,
        fmt1(scores.2),
    )
}

/// Reads one file of the linted set back from the host's own copy: only a path that the copy
/// recorded as a Python file or notebook (a regular file that `submission::prepare` created; the
/// copy holds no links), opened without following a link, and at most 4 MiB of it. Any other
/// name — whatever ruff or a candidate's file name says — is never opened.
fn read_linted(prepared: &PreparedSubmission, relative: &str) -> Option<String> {
    const MAX_READ: u64 = 4 << 20;
    let relative = prepared.python_files.iter().chain(&prepared.r_files).find(|known| known.as_os_str() == std::ffi::OsStr::new(relative))?;
    let file = submission::open_no_follow(&prepared.path().join(relative)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_READ), &mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Lines of code over the submission's Python files and notebooks (and R scripts, `with_r`: when
/// lintr linted them, so that files nothing lints cannot dilute the findings), read from the
/// host's own copy.
fn count_lines(prepared: &PreparedSubmission, with_r: bool) -> usize {
    let r_files: &[std::path::PathBuf] = if with_r { &prepared.r_files } else { &[] };
    prepared
        .python_files
        .iter()
        .chain(r_files)
        .filter_map(|relative| {
            let text = read_linted(prepared, relative.to_str()?)?;
            Some(match relative.extension().and_then(|e| e.to_str()) {
                Some("ipynb") => lint::notebook_code(&text),
                Some("Rmd" | "rmd") => lint::rmd_code(&text),
                _ => text,
            })
        })
        .map(|text| lint::count_code_lines(&text))
        .sum()
}

/// The lines around each finding (one before, one after), from the host's copy of the submission.
fn add_context(prepared: &PreparedSubmission, findings: &mut [lint::Finding]) {
    const MAX_LINE: usize = 300;
    let mut files: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for finding in findings.iter_mut().filter(|f| f.line > 0 && !f.file.ends_with(".ipynb")) {
        let lines = files
            .entry(finding.file.clone())
            .or_insert_with(|| read_linted(prepared, &finding.file).map(|text| text.lines().map(String::from).collect()).unwrap_or_default());
        let first = finding.line.saturating_sub(1).max(1);
        for number in first..=finding.line + 1 {
            if let Some(text) = lines.get(number as usize - 1) {
                finding.context.push((number, text.chars().take(MAX_LINE).collect()));
            }
        }
    }
}

/// The report of a submission refused before anything ran.
async fn rejected_report(task: &TaskSpec, submission_dir: &Path, image: &ImageRef, reason: String) -> Result<Report, JobError> {
    let graded = task.outputs.iter().map(|spec| (Accuracy::failed(spec.metric, OutputProblem::missing(format!("not run: {reason}"))), None)).collect();
    let weights = task.weights;
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        candidate: None,
        task: TaskRef { id: task.id.to_string(), title: task.title.clone(), kind: task.kind.as_str().to_string() },
        submission: SubmissionRef { path: submission_dir.display().to_string(), commit: None, n_files: 0, n_bytes: 0, skipped_links: Vec::new() },
        status: Status::Rejected,
        score: 0.0,
        formula: "the submission was refused before it ran".to_string(),
        components: Components {
            accuracy: AccuracyComponent { weight: weights.accuracy, ..combine_outputs(task, graded) },
            code_quality: CodeQualityComponent {
                tool: "ruff".to_string(),
                rules: task.lint.select.clone(),
                n_findings: 0,
                lines_of_code: 0,
                findings_per_100_lines: 0.0,
                zero_at: task.lint.zero_at,
                findings: Vec::new(),
                score: 0.0,
                weight: weights.code_quality,
            },
            runtime: RuntimeComponent {
                wall_seconds: 0.0,
                cpu_seconds: None,
                peak_memory_bytes: None,
                full_under_seconds: task.runtime_full_under.as_secs_f64(),
                zero_at_seconds: task.total_timeout().as_secs_f64(),
                score: 0.0,
                weight: weights.runtime,
            },
        },
        steps: Vec::new(),
        output: OutputReport { file: output_files(task), bytes: None, rejected: Vec::new() },
        artifacts: Artifacts::default(),
        methodology: Vec::new(),
        debrief: Vec::new(),
        provenance: Provenance {
            image: image.tag.clone(),
            image_id: image.id.clone(),
            runtime: task.min_runtime,
            dataset: task.dataset.clone(),
            dataset_digest: String::new(),
            task_digest: String::new(),
            takehome_version: crate::VERSION.to_string(),
            graded_at: now_rfc3339(),
            extended_image: None,
        },
    })
}
