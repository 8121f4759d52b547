//! `takehome serve`: the daemon. Its task tree:
//!
//! ```text
//! daemon
//! ├── web::serve: connection loop (cap, head timeout) → axum router: git intake, assessor UI
//! │   and API, candidate status, /healthz, /metrics
//! └── worker (N): claim a job → check out the commit (while a spare or fresh job sandbox opens)
//!     → job::grade_opening → store the report → open a spare sandbox for the next job
//!       (the finished job's sandbox is closed meanwhile by the worker's reaper)
//! ```
//!
//! Shutdown (SIGTERM or SIGINT) cancels one token: the web server stops accepting, running
//! jobs are cancelled (their containers removed by the sandbox) and put back in the queue, and
//! the process exits. At start-up, jobs left `running` by a crash are queued again and the dead
//! process's containers removed. A failure on our side is retried with backoff and, after
//! `retries` attempts, stored as `infrastructure_error`: never charged to the candidate.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::job::{self, ImageRef, JobError};
use crate::sandbox::image::{BuildMethod, Recipe};
use crate::sandbox::{DockerJob, DockerSandbox, JobOptions, JobSandbox, Leftovers, Sandbox};
use crate::store::{Claimed, SqliteStore, Store};
use crate::web::{self, now, App};

/// Runs until `shutdown` is cancelled.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = Arc::new(SqliteStore::open(&config.database()).with_context(|| format!("cannot open {}", config.database().display()))?);
    let requeued = store.requeue_running()?;
    if requeued > 0 {
        info!(requeued, "jobs that were running when the daemon stopped are queued again");
    }
    let sandbox = DockerSandbox::connect().await.context("the Docker engine")?.with_runtime(config.runtime);
    sandbox.check_runtime(config.runtime).await.context("the sandbox runtime")?;
    let removed = sandbox.remove_leftovers(Leftovers::OfDeadProcesses).await?;
    if removed > 0 {
        info!(removed, "removed containers left by a process that died");
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(address = %listener.local_addr()?, "{}", config.describe());
    let work = Arc::new(Notify::new());
    let app = Arc::new(App::new(config.clone(), store.clone(), work.clone()));
    // Our pre-receive hook runs this very binary to check each pushed tree.
    let exe = std::env::current_exe().context("cannot find the takehome binary for the git hook")?;
    app.repos.install_hooks(&exe).context("cannot install the git hook")?;
    let images: Arc<Mutex<HashMap<String, ImageRef>>> = Arc::new(Mutex::new(HashMap::new()));

    let mut tasks = JoinSet::new();
    tasks.spawn(web::serve(listener, app.clone(), shutdown.clone()));
    for n in 0..config.workers {
        let worker = Worker {
            name: format!("worker-{n}"),
            app: app.clone(),
            sandbox: sandbox.clone(),
            images: images.clone(),
            shutdown: shutdown.clone(),
            spare: Arc::default(),
            last_options: std::sync::Mutex::new(None),
            opener: std::sync::Mutex::new(None),
            reaper: job::Reaper::default(),
        };
        tasks.spawn(async move { worker.run().await });
    }
    shutdown.cancelled().await;
    info!("shutting down: stopping running jobs and queueing them again");
    while tasks.join_next().await.is_some() {}
    let requeued = store.requeue_running()?;
    info!(requeued, "stopped");
    Ok(())
}

struct Worker {
    name: String,
    app: Arc<App>,
    sandbox: DockerSandbox,
    images: Arc<Mutex<HashMap<String, ImageRef>>>,
    shutdown: CancellationToken,
    /// A fresh job sandbox (volumes and holder, never used by any job), opened after a job ends
    /// while its report is stored and the next job claimed; the next job with the same options
    /// takes it instead of waiting for its own. Never reused: one sandbox, one job.
    spare: Arc<Mutex<Option<Spare>>>,
    /// The options of the last job, for the next spare.
    last_options: std::sync::Mutex<Option<JobOptions>>,
    /// The task opening a spare, awaited before the worker ends (so nothing outlives it).
    opener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Closes finished jobs' sandboxes off the path from push to report; awaited at exit.
    reaper: job::Reaper,
}

struct Spare {
    options: JobOptions,
    job: DockerJob,
}

/// Whether a spare opened with `a` can serve a job that needs `b` (everything but the job id).
fn same_sandbox(a: &JobOptions, b: &JobOptions) -> bool {
    a.image == b.image && a.workspace_bytes == b.workspace_bytes && a.output_bytes == b.output_bytes && a.runtime == b.runtime
}

impl Worker {
    async fn run(self) {
        while !self.shutdown.is_cancelled() {
            let store = self.app.store.clone();
            let name = self.name.clone();
            let claimed = tokio::task::spawn_blocking(move || store.claim(&name, now())).await;
            match claimed {
                Ok(Ok(Some(job))) => {
                    self.grade(job).await;
                    self.open_spare();
                }
                Ok(Ok(None)) => {
                    // Idle: wake on a push, or look again in a second (retries come due by time).
                    tokio::select! {
                        _ = self.app.work.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
                Ok(Err(e)) => {
                    error!(worker = %self.name, error = %e, "cannot claim a job");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => error!(worker = %self.name, error = %e, "claim panicked"),
            }
        }
        // Nothing of ours outlives the worker: wait for a spare being opened, then close it.
        let opener = self.opener.lock().unwrap().take();
        if let Some(opener) = opener {
            let _ = tokio::time::timeout(Duration::from_secs(30), opener).await;
        }
        if let Some(spare) = self.spare.lock().await.take() {
            let _ = spare.job.close().await;
        }
        self.reaper.wait().await;
    }

    /// Opens a spare sandbox like the last job's in the background, unless one is there.
    fn open_spare(&self) {
        let Some(last) = self.last_options.lock().unwrap().clone() else { return };
        if self.shutdown.is_cancelled() {
            return;
        }
        let (sandbox, spare, shutdown) = (self.sandbox.clone(), self.spare.clone(), self.shutdown.clone());
        let mut opener = self.opener.lock().unwrap();
        if opener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        *opener = Some(tokio::spawn(async move {
            if spare.lock().await.as_ref().is_some_and(|s| same_sandbox(&s.options, &last)) {
                return;
            }
            let options = JobOptions { job_id: format!("w{}", job::new_job_id()), ..last };
            match sandbox.open_job(&options).await {
                Ok(job) if !shutdown.is_cancelled() => {
                    if let Some(old) = spare.lock().await.replace(Spare { options, job }) {
                        let _ = old.job.close().await;
                    }
                }
                Ok(job) => {
                    let _ = job.close().await;
                }
                Err(error) => warn!(error = %error, "cannot open a spare job sandbox"),
            }
        }));
    }

    async fn grade(&self, job: Claimed) {
        let span = info_span!("job", submission = job.submission, task = %job.task, assignment = %job.assignment, attempt = job.attempts);
        async {
            let store = self.app.store.clone();
            match self.attempt(&job).await {
                Ok(report) => {
                    let json = report.to_json();
                    {
                        let mut metrics = self.app.metrics.lock().unwrap();
                        for step in &report.steps {
                            let entry = metrics.step_seconds.entry(step.name.clone()).or_insert((0.0, 0));
                            entry.0 += step.wall_seconds;
                            entry.1 += 1;
                        }
                    }
                    let (status, score) = (report.status.as_str().to_string(), report.score);
                    let id = job.submission;
                    match tokio::task::spawn_blocking(move || store.finish(id, &status, score, &json, now())).await {
                        Ok(Ok(())) => info!(score, "graded"),
                        other => error!(?other, "cannot store a report"),
                    }
                }
                Err(JobError::Cancelled) => info!("cancelled by shutdown; queued again at exit"),
                Err(e) => {
                    let retry_at = (job.attempts < self.app.config.retries as i64).then(|| now() + 5 * (1 << job.attempts.clamp(0, 10)));
                    warn!(error = %e, ?retry_at, "failed on our side");
                    let message = format!("{e:#}");
                    let id = job.submission;
                    let _ = tokio::task::spawn_blocking(move || store.fail(id, &message, retry_at, now())).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn attempt(&self, job: &Claimed) -> Result<crate::report::Report, JobError> {
        let task_dir = self.app.config.tasks_root.join("tasks").join(&job.task);
        let task = crate::task::load(&task_dir).map_err(|e| JobError::Internal(e.to_string()))?;
        let image = self.image(&task.root, &task.image).await?;
        let checkout = tempfile::Builder::new().prefix("takehome-checkout-").tempdir().map_err(|e| JobError::Internal(e.to_string()))?;
        let (repos, assignment, commit, dest) = (self.app.repos.clone(), job.assignment.clone(), job.commit.clone(), checkout.path().to_path_buf());
        let mut job_id = format!("s{}{}", job.submission, crate::job::new_job_id());
        let options = job::job_options(&task, &image, &job_id);
        *self.last_options.lock().unwrap() = Some(options.clone());
        // A spare sandbox made after the last job serves at once; else the job's volumes and
        // holder are made while git checks the commit out.
        let spare = self.spare.lock().await.take();
        let spare = match spare {
            Some(spare) if same_sandbox(&spare.options, &options) => Some(spare),
            Some(other) => {
                let _ = other.job.close().await;
                None
            }
            None => None,
        };
        if let Some(spare) = &spare {
            job_id = spare.options.job_id.clone();
        }
        let opening = async {
            match spare {
                Some(spare) => Ok(spare.job),
                None => self.sandbox.open_job(&options).await,
            }
        };
        let checking_out = async {
            tokio::task::spawn_blocking(move || repos.checkout(&assignment, &commit, &dest))
                .await
                .map_err(|e| JobError::Internal(e.to_string()))?
                .map_err(|e| JobError::Internal(e.to_string()))
        };
        let (checked_out, opened) = tokio::join!(checking_out, opening);
        if let Err(error) = checked_out {
            if let Ok(opened) = opened {
                let _ = opened.close().await;
            }
            return Err(error);
        }
        let mut report =
            job::grade_opening(&self.sandbox, &task, checkout.path(), &image, &job_id, async { opened }, Some(&self.reaper), &self.shutdown, &|_| {}).await?;
        report.candidate = Some(job.candidate.clone());
        report.submission.commit = Some(job.commit.clone());
        report.submission.path = format!("{}#{}", job.assignment, job.submission);
        Ok(report)
    }

    /// The runner image of a task, built once if the engine lacks it.
    async fn image(&self, root: &Path, name: &str) -> Result<ImageRef, JobError> {
        let recipe = Recipe::load(root, name)?;
        let mut images = self.images.lock().await;
        if let Some(image) = images.get(&recipe.tag()) {
            return Ok(image.clone());
        }
        let built = self.sandbox.ensure_image(&recipe, BuildMethod::Auto, &|line| info!("image: {line}")).await?;
        let image = ImageRef { tag: built.tag, id: built.id };
        images.insert(recipe.tag(), image.clone());
        Ok(image)
    }
}
