//! `takehome serve` (the daemon) and `takehome worker` (grading alone, on another host).
//!
//! ```text
//! serve
//! ├── web::serve: connection loop (cap, head timeout) → axum router: git intake, assessor UI
//! │   and API, candidate status, worker fetches, /healthz, /metrics
//! └── Grader (unless --workers 0): one worker instance
//!     ├── heartbeat: renews the instance's lease and its jobs' (every third of a lease), stops
//!     │   jobs whose lease was lost, records health, removes dead instances' containers
//!     └── slot (N): claim a job that fits → check out the commit (while a spare or fresh job
//!         sandbox opens) → job::grade_opening → store the report under the claim's fence
//!
//! worker --database postgres://… --server URL
//! ├── Grader, as above, fetching commits from the server over git's smart HTTP
//! └── web::worker_serve: /healthz, /metrics
//! ```
//!
//! A worker instance is minted at each start ([`sandbox::instance_id`]): its containers carry
//! that id, its leases are held under it, and a new instance with the same name replaces the old
//! (whose jobs go back to the queue at once and whose containers it removes). A job's lease is
//! renewed by heartbeats; when a heartbeat has not succeeded for a whole lease (a partition, a
//! database down), the worker stops its jobs — another worker may have them by then, and a late
//! result would be refused by the fence anyway. Shutdown (SIGTERM or SIGINT) cancels one token:
//! the web server stops accepting, running jobs are cancelled (their containers removed by the
//! sandbox) and given back untouched. A failure on our side is retried with backoff and, after
//! `retries` attempts, stored as `infrastructure_error`: never charged to the candidate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::intake::{RemoteRepos, Repos};
use crate::job::{self, ImageRef, JobError};
use crate::sandbox::image::{BuildMethod, Recipe};
use crate::sandbox::{DockerSandbox, JobOptions, JobSandbox, Leftovers, RunError, Runtime, Sandbox};
use crate::store::{ClaimRequest, Claimed, Holding, Store, StoreError, TaskCopy, WorkerInfo};
use crate::task::TaskId;
use crate::web::{self, now, App, Metrics};

/// Runs until `shutdown` is cancelled.
pub async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let store = crate::store::open(&config.database).await.with_context(|| format!("cannot open the store {}", config.database.describe()))?;
    if store.backend() == "sqlite" {
        // One process owns a SQLite store: whatever ran when the last one stopped is gone.
        let requeued = store.requeue_all_running().await?;
        if requeued > 0 {
            info!(requeued, "jobs that were running when the daemon stopped are queued again");
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(address = %listener.local_addr()?, "{}", config.describe());
    if !config.tasks_root.join("tasks").is_dir() {
        warn!(
            tasks_root = %config.tasks_root.display(),
            "no tasks/ folder in tasks_root: no task can be assigned or graded (run from the folder that holds tasks/, or set tasks_root)"
        );
    }
    let work = Arc::new(Notify::new());
    let app = Arc::new(App::new(config.clone(), store.clone(), work.clone()));
    // Our pre-receive hook runs this very binary to check each pushed tree.
    let exe = std::env::current_exe().context("cannot find the takehome binary for the git hook")?;
    app.repos.install_hooks(&exe).context("cannot install the git hook")?;

    // The workers are ready (engine reached, dead instances swept) before the first request is
    // answered: a daemon that answers /healthz grades at once.
    let mut tasks = JoinSet::new();
    if config.workers > 0 {
        // Named after the host: a restarted server replaces its own dead instance.
        let options = GraderOptions {
            name: format!("serve@{}", host_name()),
            slots: config.workers,
            memory_bytes: None,
            gpus: None,
            source: Source::Local(app.repos.clone()),
        };
        let sandbox = docker(&config).await?;
        let grader = Grader::start(config.clone(), store.clone(), options, sandbox, work.clone(), app.metrics.clone(), shutdown.clone()).await?;
        tasks.spawn(grader.run());
    } else {
        info!("no workers here (--workers 0): workers on other hosts grade");
    }
    tasks.spawn(web::serve(listener, app.clone(), shutdown.clone()));
    tasks.spawn(crate::webhook::deliver(store.clone(), config.webhook.clone(), app.tls.clone(), app.webhooks.clone(), shutdown.clone()));
    if let Some(settings) = &config.mail {
        let mailer = crate::mail::Mailer::new(settings, config.tls_ca_file.as_deref()).map_err(|e| anyhow::anyhow!(crate::errors::chain(&e)))?;
        info!(server = %settings.server.describe(), "e-mail to candidates: invitations, reminders and receipts");
        let outbox = crate::mail::Outbox {
            store: store.clone(),
            mailer,
            tasks: app.tasks.clone(),
            public_url: config.public_url.clone(),
            reminders: settings.reminders.clone(),
            reminders_scanned: std::sync::Mutex::new(None),
        };
        tasks.spawn(crate::mail::deliver(outbox, shutdown.clone()));
    }
    if let Some(days) = config.retention_days_after_decision {
        info!(days, "retention: decided assignments are erased {days} days after their decision");
        tasks.spawn(crate::erase::retention_loop(store.clone(), app.repos.clone(), config.data_dir.clone(), days, shutdown.clone()));
    }
    shutdown.cancelled().await;
    info!("shutting down: stopping running jobs and queueing them again");
    while tasks.join_next().await.is_some() {}
    info!("stopped");
    Ok(())
}

/// The local Docker engine with the operator's runtime, checked.
async fn docker(config: &Config) -> anyhow::Result<DockerSandbox> {
    let sandbox = DockerSandbox::connect().await.context("the Docker engine")?.with_runtime(config.runtime);
    sandbox.check_runtime(config.runtime).await.context("the sandbox runtime")?;
    Ok(sandbox)
}

/// What `takehome worker` is told besides the config.
pub struct WorkerCommand {
    /// The server's base URL, which serves the candidates' commits to workers.
    pub server: String,
    /// The worker credential (its SHA-256 is the server's `worker_token_sha256`).
    pub token: String,
    /// The worker's stable name (default: the host's name).
    pub name: String,
    pub slots: usize,
    /// Memory the worker may promise its jobs (default: the host's).
    pub memory_bytes: Option<u64>,
    /// GPUs the worker gives its jobs (default: the host's, [`host_gpus`]).
    pub gpus: Option<u32>,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub listen: Option<SocketAddr>,
}

/// `takehome worker`: the grading loop alone, against this host's Docker engine, with the store
/// shared with the server (PostgreSQL) and commits fetched from the server.
pub async fn work(config: Config, command: WorkerCommand, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    if let crate::store::DatabaseUrl::Sqlite(_) = config.database {
        anyhow::bail!(
            "takehome worker needs the store it shares with the server in PostgreSQL (--database postgres://…); \
             with SQLite, `takehome serve --workers N` grades on its own host"
        );
    }
    let store = crate::store::open(&config.database).await.with_context(|| format!("cannot open the store {}", config.database.describe()))?;
    let work = Arc::new(Notify::new());
    let metrics: Arc<std::sync::Mutex<Metrics>> = Arc::default();
    let source = Source::Remote(RemoteRepos::new(&command.server, &command.token, config.data_dir.join("worker-repos")));
    let options = GraderOptions { name: command.name.clone(), slots: command.slots.max(1), memory_bytes: command.memory_bytes, gpus: command.gpus, source };
    let sandbox = docker(&config).await?;
    let grader = Grader::start(config.clone(), store.clone(), options, sandbox, work, metrics.clone(), shutdown.clone()).await?;
    let status = Arc::new(web::WorkerStatus {
        instance: grader.instance.clone(),
        name: command.name.clone(),
        slots: command.slots,
        metrics,
        metrics_token: config.metrics_token.clone(),
        store: store.clone(),
        running: grader.running_count.clone(),
    });
    let mut tasks = JoinSet::new();
    if let Some(address) = command.listen {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        info!(address = %listener.local_addr()?, "worker health and metrics");
        tasks.spawn(web::worker_serve(listener, status, shutdown.clone()));
    }
    info!(name = %command.name, instance = %grader.instance, slots = command.slots, server = %command.server, store = %config.database.describe(), "worker started");
    tasks.spawn(grader.run());
    // Erased assignments' copies on this host go too (the server erases its own).
    tasks.spawn(crate::erase::prune_copies_loop(store.clone(), config.data_dir.join("worker-repos"), shutdown.clone()));
    while tasks.join_next().await.is_some() {}
    info!("worker stopped");
    Ok(())
}

/// What a worker needs of its engine beside running jobs ([`Sandbox`]): the runtimes it offers,
/// runner images built once, and the containers that gone instances left. [`DockerSandbox`] is
/// the engine; the daemon's scheduling is tested with a fake one.
pub trait Engine: Sandbox + Clone + Send + Sync + 'static {
    /// The runtimes this engine offers beside `runc` (checked once, at start).
    fn runtimes(&self) -> impl std::future::Future<Output = Vec<String>> + Send;
    /// The image of `recipe`, built if the engine lacks it.
    fn ensure_image(&self, recipe: &Recipe) -> impl std::future::Future<Output = Result<ImageRef, RunError>> + Send;
    /// Removes the containers and volumes of instances that `known` does not list as alive.
    fn remove_dead(&self, known: HashMap<String, bool>) -> impl std::future::Future<Output = Result<usize, RunError>> + Send;
    /// Removes every container and volume this process made: called once its grader's slots
    /// have all ended, so that nothing of a stopped worker is left on the engine.
    fn remove_own(&self) -> impl std::future::Future<Output = Result<usize, RunError>> + Send;
}

impl Engine for DockerSandbox {
    async fn runtimes(&self) -> Vec<String> {
        let mut runtimes = vec![Runtime::Runc.as_str().to_string()];
        if self.check_runtime(Runtime::Runsc).await.is_ok() {
            runtimes.push(Runtime::Runsc.as_str().to_string());
        }
        runtimes
    }
    async fn ensure_image(&self, recipe: &Recipe) -> Result<ImageRef, RunError> {
        let built = DockerSandbox::ensure_image(self, recipe, BuildMethod::Auto, &|line| info!("image: {line}")).await?;
        Ok(ImageRef { tag: built.tag, id: built.id })
    }
    async fn remove_dead(&self, known: HashMap<String, bool>) -> Result<usize, RunError> {
        self.remove_leftovers(Leftovers::OfDeadInstances(known)).await
    }
    async fn remove_own(&self) -> Result<usize, RunError> {
        self.remove_leftovers(Leftovers::OfThisProcess).await
    }
}

/// Grades with `sandbox` until `shutdown`: one worker instance of `options.slots` slots against
/// `store`, as `serve` and `worker` run one against the Docker engine.
pub async fn grade_with<S: Engine>(
    config: Config,
    store: Arc<dyn Store>,
    options: GraderOptions,
    sandbox: S,
    work: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grader = Grader::start(config, store, options, sandbox, work, Arc::default(), shutdown).await?;
    grader.run().await;
    Ok(())
}

/// Where a worker gets a submission's commit.
#[derive(Clone)]
pub enum Source {
    /// The server's own repositories (a worker inside `serve`).
    Local(Repos),
    /// Fetched from the server over git's smart HTTP (a worker on another host).
    Remote(RemoteRepos),
}

impl Source {
    fn checkout(&self, assignment: &str, commit: &str, dest: &Path) -> Result<(), crate::intake::IntakeError> {
        match self {
            Source::Local(repos) => repos.checkout(assignment, commit, dest),
            Source::Remote(remote) => remote.checkout(assignment, commit, dest),
        }
    }
}

pub struct GraderOptions {
    pub name: String,
    pub slots: usize,
    pub memory_bytes: Option<u64>,
    pub gpus: Option<u32>,
    pub source: Source,
}

/// One worker instance: its slots, its lease and what it holds.
struct Grader<S: Engine> {
    instance: String,
    name: String,
    config: Config,
    /// The tasks of `config.tasks_root`, each parsed once per version of its `task.yaml`.
    tasks: Arc<crate::task::Catalog>,
    store: Arc<dyn Store>,
    sandbox: S,
    source: Source,
    work: Arc<Notify>,
    /// This instance's end: the process's shutdown, or the store saying it was replaced.
    stop: CancellationToken,
    slots: usize,
    memory_bytes: i64,
    gpus: i64,
    runtimes: Vec<String>,
    images: Mutex<HashMap<String, ImageRef>>,
    running: std::sync::Mutex<HashMap<i64, Running>>,
    /// The jobs and dry runs this instance answers for (see [`Hold`]): the only ones renewed.
    holding: std::sync::Mutex<Holding>,
    running_count: Arc<AtomicI64>,
    copies: std::sync::Mutex<Vec<TaskCopy>>,
    /// The GPUs each task of `copies` needs (a dry run of one is claimed only where they fit).
    task_gpus: std::sync::Mutex<HashMap<TaskId, i64>>,
    metrics: Arc<std::sync::Mutex<Metrics>>,
    /// When the store last renewed this instance's leases (taken before the call was sent, so
    /// that the worker's view of the lease ends no later than the store's).
    renewed: std::sync::Mutex<Instant>,
}

/// One job or dry run this instance answers for, from the claim's answer until its result is
/// stored or given up; dropped, it is no longer renewed. A job the store holds for this instance
/// without a `Hold` (a claim whose answer was lost, a report that could not be stored) is left to
/// run out its lease and be claimed again, instead of being renewed for ever.
struct Hold<'a, S: Engine> {
    grader: &'a Grader<S>,
    submission: i64,
    dry_run: bool,
}

impl<S: Engine> Grader<S> {
    fn hold(&self, submission: i64, dry_run: bool) -> Hold<'_, S> {
        let mut holding = self.holding.lock().unwrap();
        let list = if dry_run { &mut holding.dry_runs } else { &mut holding.jobs };
        list.push(submission);
        Hold { grader: self, submission, dry_run }
    }
}

impl<S: Engine> Drop for Hold<'_, S> {
    fn drop(&mut self) {
        let mut holding = self.grader.holding.lock().unwrap();
        let list = if self.dry_run { &mut holding.dry_runs } else { &mut holding.jobs };
        if let Some(at) = list.iter().position(|&id| id == self.submission) {
            list.swap_remove(at);
        }
    }
}

/// A job this instance runs now.
struct Running {
    attempt: i64,
    memory_bytes: i64,
    gpus: i64,
    /// The host's GPUs this job was given (indexes), none shared with another running job.
    devices: Vec<u32>,
    claimed: Instant,
    /// Stops the job (its containers are removed by the sandbox).
    cancel: CancellationToken,
}

/// `wanted` of the host's `gpus` devices (indexes) that no running job holds, lowest first; empty
/// when none is wanted (or, should the count ever disagree, fewer than wanted are free: the
/// engine then picks by count, as before).
fn free_devices(gpus: i64, held: impl Iterator<Item = u32>, wanted: i64) -> Vec<u32> {
    if wanted <= 0 {
        return Vec::new();
    }
    let held: std::collections::HashSet<u32> = held.collect();
    let free: Vec<u32> = (0..gpus.max(0) as u32).filter(|d| !held.contains(d)).take(wanted as usize).collect();
    if free.len() == wanted as usize {
        free
    } else {
        Vec::new()
    }
}

/// This host's name (the default worker name).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into())
}

pub use crate::sandbox::host_gpus;

/// The host's memory, from /proc/meminfo.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

impl<S: Engine> Grader<S> {
    async fn start(
        config: Config,
        store: Arc<dyn Store>,
        options: GraderOptions,
        sandbox: S,
        work: Arc<Notify>,
        metrics: Arc<std::sync::Mutex<Metrics>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Grader<S>>> {
        let runtimes = sandbox.runtimes().await;
        let memory_bytes = options.memory_bytes.or_else(host_memory).unwrap_or(4 << 30).min(i64::MAX as u64) as i64;
        let gpus = i64::from(options.gpus.unwrap_or_else(host_gpus));
        let instance = crate::sandbox::instance_id().to_string();
        let tasks = Arc::new(crate::task::Catalog::new(config.tasks_root.clone()));
        let catalog = tasks.clone();
        let known = tokio::task::spawn_blocking(move || job::task_copies_and_gpus(&catalog)).await.unwrap_or_default();
        let task_gpus: HashMap<TaskId, i64> = known.iter().map(|(copy, gpus)| (copy.task.clone(), *gpus)).collect();
        let copies: Vec<TaskCopy> = known.into_iter().map(|(copy, _)| copy).collect();
        let now = now();
        let info = WorkerInfo {
            instance: instance.clone(),
            name: options.name.clone(),
            version: crate::VERSION.to_string(),
            slots: options.slots as i64,
            memory_bytes,
            runtimes: runtimes.clone(),
            started_at: now,
            heartbeat_at: now,
            lease_until: now + config.lease_seconds,
            stopped_at: None,
            health: String::new(),
            running: 0,
            gpus,
        };
        let replaced = store.register_worker(&info).await.context("cannot register the worker")?;
        if !replaced.is_empty() {
            info!(?replaced, "replaced instances of this worker that died; their jobs are queued again");
        }
        let grader = Arc::new(Grader {
            instance,
            name: options.name,
            stop: shutdown.child_token(),
            config,
            tasks,
            store,
            sandbox,
            source: options.source,
            work,
            slots: options.slots,
            memory_bytes,
            gpus,
            runtimes,
            images: Mutex::default(),
            running: std::sync::Mutex::default(),
            holding: std::sync::Mutex::default(),
            running_count: Arc::default(),
            copies: std::sync::Mutex::new(copies),
            task_gpus: std::sync::Mutex::new(task_gpus),
            metrics,
            renewed: std::sync::Mutex::new(Instant::now()),
        });
        let removed = grader.sweep().await?;
        if removed > 0 {
            info!(removed, "removed containers left by instances that are gone");
        }
        Ok(grader)
    }

    /// Removes the containers and volumes that gone instances left on this engine.
    async fn sweep(&self) -> anyhow::Result<usize> {
        let now = now();
        let lease = self.config.lease_seconds;
        // A live instance whose heartbeat is late is given one more lease before its containers
        // are taken from it (it stops them itself when its own lease runs out).
        let known: HashMap<String, bool> = self
            .store
            .workers()
            .await?
            .into_iter()
            .map(|w| {
                let alive = w.stopped_at.is_none() && w.lease_until + lease >= now;
                (w.instance, alive)
            })
            .collect();
        Ok(self.sandbox.remove_dead(known).await?)
    }

    async fn run(self: Arc<Self>) {
        if let Some(watcher) = self.store.watch(self.work.clone(), self.stop.clone()) {
            // Ends with `stop`; nothing to wait for.
            drop(watcher);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().heartbeats());
        tasks.spawn(self.clone().watch_lease());
        for n in 0..self.slots {
            let slot = Slot {
                name: format!("{}/{n}", self.name),
                grader: self.clone(),
                spare: Arc::default(),
                last_options: std::sync::Mutex::new(None),
                opener: std::sync::Mutex::new(None),
                dry_run: std::sync::Mutex::new(None),
                graded_at: std::sync::Mutex::new(Instant::now()),
                reaper: job::Reaper::default(),
            };
            tasks.spawn(async move { slot.run().await });
        }
        while tasks.join_next().await.is_some() {}
        // Every slot has closed what it opened; what a failed close or a creation that finished
        // after it was given up left behind goes now, before the instance says it stopped.
        match self.sandbox.remove_own().await {
            Ok(0) => {}
            Ok(removed) => warn!(removed, "removed containers of this worker that its jobs had not closed"),
            Err(e) => warn!(error = %crate::errors::Chain(&e), "cannot remove this worker's containers; the next worker on this engine will"),
        }
        match self.store.stop_worker(&self.instance, now()).await {
            Ok(released) if released > 0 => info!(released, "jobs given back to the queue"),
            Ok(_) => {}
            Err(e) => warn!(error = %crate::errors::Chain(&e), "cannot mark the worker stopped; its lease will run out"),
        }
    }

    fn claim_request(&self) -> ClaimRequest {
        let (promised, promised_gpus) = self.running.lock().unwrap().values().fold((0i64, 0i64), |(memory, gpus), r| (memory + r.memory_bytes, gpus + r.gpus));
        ClaimRequest {
            instance: self.instance.clone(),
            now: now(),
            lease_seconds: self.config.lease_seconds,
            free_memory_bytes: self.memory_bytes - promised,
            runtimes: self.runtimes.clone(),
            free_gpus: self.gpus - promised_gpus,
            copies: self.copies.lock().unwrap().clone(),
            max_attempts: self.config.retries.max(1) as i64,
        }
    }

    /// Stops every job once a whole lease has passed without a renewal: by then the store may
    /// have given them to another worker (a partition, or the store down). Runs apart from the
    /// heartbeats, so that a store call that hangs cannot delay it.
    async fn watch_lease(self: Arc<Self>) {
        let lease = Duration::from_secs(self.config.lease_seconds as u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.stop.cancelled() => return,
            }
            let renewed = *self.renewed.lock().unwrap();
            if renewed.elapsed() >= lease {
                self.stop_lost(|_, _| true, "the lease ran out (the store could not be reached)");
            }
        }
    }

    /// Renews the lease every third of it; stops what was lost; records health; sweeps. Every
    /// store call here is bounded by the period.
    async fn heartbeats(self: Arc<Self>) {
        let lease = Duration::from_secs(self.config.lease_seconds as u64);
        let period = lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.stop.cancelled() => return,
            }
            let tasks = self.tasks.clone();
            if let Ok(known) = tokio::task::spawn_blocking(move || job::task_copies_and_gpus(&tasks)).await {
                *self.task_gpus.lock().unwrap() = known.iter().map(|(copy, gpus)| (copy.task.clone(), *gpus)).collect();
                *self.copies.lock().unwrap() = known.into_iter().map(|(copy, _)| copy).collect();
            }
            let health = tokio::time::timeout(period, self.health()).await.unwrap_or_else(|_| "cannot read the queue: no answer".into());
            let started = Instant::now();
            // Within one period: a store that hangs (a partition) is a failed heartbeat, so that the
            // lease's end is seen in time.
            let holding = self.holding.lock().unwrap().clone();
            let renewed = tokio::time::timeout(period, self.store.heartbeat(&self.instance, now(), self.config.lease_seconds, &health, &holding))
                .await
                .unwrap_or_else(|_| Err(StoreError::NoAnswer(period)));
            match renewed {
                Ok(Some(held)) => {
                    *self.renewed.lock().unwrap() = started;
                    self.stop_lost(|id, running| running.claimed < started && !held.contains(&id), "its lease was taken by another worker");
                }
                Ok(None) => {
                    error!(instance = %self.instance, "this worker instance was replaced or stopped in the store: stopping");
                    self.stop_lost(|_, _| true, "this worker instance was replaced");
                    self.stop.cancel();
                    return;
                }
                Err(e) => warn!(error = %crate::errors::Chain(&e), "cannot renew the lease"),
            }
            match tokio::time::timeout(period, self.sweep()).await {
                Ok(Err(e)) => warn!(error = %e, "cannot look for containers of gone instances"),
                Err(_) => warn!("cannot look for containers of gone instances: no answer"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Cancels the running jobs that `lost` picks.
    fn stop_lost(&self, lost: impl Fn(i64, &Running) -> bool, why: &str) {
        let running = self.running.lock().unwrap();
        for (&id, job) in running.iter() {
            if lost(id, job) && !job.cancel.is_cancelled() {
                warn!(submission = id, attempt = job.attempt, "stopping the job: {why}");
                self.metrics.lock().unwrap().leases_lost += 1;
                job.cancel.cancel();
            }
        }
    }

    /// What keeps this worker from grading queued jobs (copies that differ), or empty.
    async fn health(&self) -> String {
        let copies = self.copies.lock().unwrap().clone();
        match self.store.unmatched_queued(&copies).await {
            Ok(unmatched) => unmatched
                .iter()
                .map(|q| match copies.iter().find(|c| c.task == q.task) {
                    Some(mine) => format!(
                        "cannot grade queued jobs of task {}: they were queued with task digest {} and data set digest {}, this worker has {} and {}",
                        q.task,
                        short(&q.spec_digest),
                        short(&q.data_digest),
                        short(&mine.spec_digest),
                        short(&mine.data_digest)
                    ),
                    None => format!("cannot grade queued jobs of task {}: this worker has no copy of it", q.task),
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("cannot read the queue: {}", crate::errors::Chain(&e)),
        }
    }

    /// Runs a store write, trying again while the store cannot be reached, for up to one lease
    /// (after that the job may be another worker's, and the fence decides). A refusal by the
    /// fence is final.
    async fn retrying<F, Fut>(&self, mut write: F) -> Result<(), StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let deadline = Instant::now() + Duration::from_secs(self.config.lease_seconds as u64);
        loop {
            match write().await {
                Err(error) if error.is_unreachable() && Instant::now() < deadline => {
                    warn!(error = %crate::errors::Chain(&error), "cannot reach the store; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// The runner image of a task, built once if the engine lacks it.
    async fn task_image(&self, task: &crate::task::TaskSpec) -> Result<ImageRef, JobError> {
        self.image(&task.root, &task.image).await
    }

    /// The images the checked-out submission's steps run in beside the task's own (a run
    /// choice's, an extended image its imports ask for), each built once if the engine lacks
    /// it: python's 10 GB, for a task on python-slim, only on the first submission that imports
    /// torch.
    async fn other_images(&self, task: &crate::task::TaskSpec, checkout: &Path) -> Result<(), JobError> {
        let (task_now, checkout) = (task.clone(), checkout.to_path_buf());
        let wanted = tokio::task::spawn_blocking(move || job::other_images(&task_now, &checkout)).await.map_err(|e| JobError::Internal(e.to_string()))?;
        for other in &wanted {
            self.image(&task.root, other).await?;
        }
        Ok(())
    }

    /// The runner image of a task, built once if the engine lacks it.
    async fn image(&self, root: &Path, name: &str) -> Result<ImageRef, JobError> {
        let recipe = Recipe::load(root, name)?;
        let mut images = self.images.lock().await;
        if let Some(image) = images.get(&recipe.tag()) {
            return Ok(image.clone());
        }
        let image = self.sandbox.ensure_image(&recipe).await?;
        images.insert(recipe.tag(), image.clone());
        Ok(image)
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// One job at a time of a worker instance.
struct Slot<S: Engine> {
    name: String,
    grader: Arc<Grader<S>>,
    /// A fresh job sandbox (volumes and holder, never used by any job), opened while a job runs
    /// (and after it, if that one was not like it); the next job with the same options takes it
    /// instead of waiting for its own. Never reused: one sandbox, one job.
    spare: Arc<Mutex<Option<Spare<S>>>>,
    /// The options of the last job, for the next spare.
    last_options: std::sync::Mutex<Option<JobOptions>>,
    /// The task opening a spare, awaited before the slot ends (so nothing outlives it).
    opener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Closes finished jobs' sandboxes off the path from push to report; awaited at exit.
    reaper: job::Reaper,
    /// The public dry run this slot runs or last ran (a task of its own, so that a graded job can
    /// stop it and go first without waiting for its clean-up); awaited before the slot ends.
    dry_run: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// When this slot last finished a graded job (dry runs wait for a moment of quiet after it).
    graded_at: std::sync::Mutex<Instant>,
}

/// How long a slot stays quiet after a graded job before it starts a public dry run: a push often
/// follows another within moments, and a dry run started and stopped for it would cost the graded
/// job the engine's time for two containers' start and removal.
const DRY_RUN_QUIET: Duration = Duration::from_secs(1);

/// What a slot does next ([`Slot::next_work`]).
enum Work {
    Graded(Claimed),
    DryRun(crate::store::DryRunClaim),
    /// Nothing now: look again after this long, or when work is announced.
    Idle(Duration),
}

struct Spare<S: Engine> {
    options: JobOptions,
    job: S::Job,
}

/// A submission's public dry run, taken from the store's queue once no graded job waits (so it
/// never delays a grade): the task and image as this host has them, a fresh checkout of the
/// commit (none is held while a dry run waits), the public variant graded; its result goes to
/// the candidate's page. Stopped by `cancel` when graded work arrives or the worker stops: it is
/// then given back to the queue, first in line again.
async fn public_dry_run<S: Engine>(grader: Arc<Grader<S>>, claim: crate::store::DryRunClaim, cancel: CancellationToken) {
    let span = info_span!("dry_run", submission = claim.submission, task = %claim.task);
    let _hold = grader.hold(claim.submission, true);
    async {
        let submission = claim.submission;
        let result = async {
            let task = grader.tasks.load(&claim.task).map_err(|e| JobError::Internal(crate::errors::chain(&e)))?;
            let image = grader.task_image(&task).await?;
            let checkout = tempfile::Builder::new().prefix("takehome-checkout-").tempdir().map_err(|e| JobError::Internal(e.to_string()))?;
            let (source, assignment, commit, dest) = (grader.source.clone(), claim.assignment.clone(), claim.commit.clone(), checkout.path().to_path_buf());
            tokio::task::spawn_blocking(move || source.checkout(&assignment, &commit, &dest))
                .await
                .map_err(|e| JobError::Internal(e.to_string()))?
                .map_err(|e| JobError::Internal(crate::errors::chain(&e)))?;
            grader.other_images(&task, checkout.path()).await?;
            let job_id = format!("s{submission}p{}", crate::job::new_job_id());
            Ok::<_, JobError>(job::public_run(&grader.sandbox, &task, checkout.path(), &image, &job_id, &cancel).await)
        }
        .await;
        if cancel.is_cancelled() {
            info!("public dry run stopped (graded work, or the worker stops); it waits again, first in line");
            if let Err(e) = grader.store.release_dry_run(submission, &grader.instance).await {
                warn!(error = %crate::errors::Chain(&e), "cannot give the public dry run back (its lease will run out)");
            }
            return;
        }
        let result = match result {
            Ok(Some(result)) => result,
            // The task no longer declares a public run: the queue forgets it.
            Ok(None) => job::PublicRun { report: None, error: Some("the task no longer declares a public run".into()), show_score: false },
            Err(error) => job::PublicRun { report: None, error: Some(crate::errors::chain(&error)), show_score: false },
        };
        if let Some(error) = &result.error {
            warn!(error = %error, "the public dry run failed on our side");
        }
        let body = serde_json::to_string(&result).expect("a dry run serialises");
        match grader.retrying(|| grader.store.set_public_run(submission, &body, now())).await {
            Ok(()) => info!(status = result.report.as_ref().map(|r| r.status.as_str()).unwrap_or("not run"), "public dry run"),
            Err(e) => warn!(error = %crate::errors::Chain(&e), "cannot store the public dry run (it waits again once its lease runs out)"),
        }
    }
    .instrument(span)
    .await
}

/// Whether a spare opened with `a` can serve a job that needs `b` (everything but the job id).
fn same_sandbox(a: &JobOptions, b: &JobOptions) -> bool {
    a.image == b.image && a.workspace_bytes == b.workspace_bytes && a.output_bytes == b.output_bytes && a.runtime == b.runtime
}

impl<S: Engine> Slot<S> {
    async fn run(self) {
        let grader = self.grader.clone();
        while !grader.stop.is_cancelled() {
            // Armed before the claim, so that a push announced while the claim runs still wakes us.
            let notified = self.grader.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.next_work().await {
                Ok(Work::Graded(job)) => self.graded(job).await,
                Ok(Work::DryRun(claim)) => self.dry_run(claim, notified).await,
                // Woken by a push (in this process, or NOTIFY from the shared store), or look
                // again after `wait` (retries and expired leases come due by time).
                Ok(Work::Idle(wait)) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = grader.stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    error!(slot = %self.name, error = %crate::errors::Chain(&e), "cannot claim a job");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = grader.stop.cancelled() => {}
                    }
                }
            }
        }
        // Nothing of ours outlives the slot: wait for a stopped dry run and a spare being opened,
        // then close the spare.
        let dry_run = self.dry_run.lock().unwrap().take();
        if let Some(dry_run) = dry_run {
            let _ = dry_run.await;
        }
        let opener = self.opener.lock().unwrap().take();
        if let Some(opener) = opener {
            let _ = tokio::time::timeout(Duration::from_secs(30), opener).await;
        }
        if let Some(spare) = self.spare.lock().await.take() {
            let _ = spare.job.close().await;
        }
        self.reaper.wait().await;
    }

    /// What this slot does next: a graded job if one fits (always first); else, once the slot has
    /// been quiet for [`DRY_RUN_QUIET`] after its last graded job, a waiting public dry run of a
    /// task whose GPUs fit; else nothing for a while.
    async fn next_work(&self) -> Result<Work, StoreError> {
        let grader = &self.grader;
        if let Some(job) = grader.store.claim(&grader.claim_request()).await? {
            return Ok(Work::Graded(job));
        }
        // The dry run this slot stopped for graded work finishes its clean-up before another starts.
        let previous = self.dry_run.lock().unwrap().take();
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let quiet = self.graded_at.lock().unwrap().elapsed();
        if quiet < DRY_RUN_QUIET {
            return Ok(Work::Idle(DRY_RUN_QUIET - quiet));
        }
        // Tasks whose steps need more GPUs than this worker has free are left to others.
        let free_gpus = grader.gpus - grader.running.lock().unwrap().values().map(|r| r.gpus).sum::<i64>();
        let task_gpus = grader.task_gpus.lock().unwrap().clone();
        let tasks: Vec<TaskId> =
            grader.copies.lock().unwrap().iter().filter(|c| task_gpus.get(&c.task).copied().unwrap_or(0) <= free_gpus).map(|c| c.task.clone()).collect();
        match grader.store.claim_dry_run(&grader.instance, &tasks, now(), grader.config.lease_seconds).await {
            Ok(Some(claim)) => Ok(Work::DryRun(claim)),
            Ok(None) => Ok(Work::Idle(Duration::from_secs(1))),
            Err(e) => {
                error!(slot = %self.name, error = %crate::errors::Chain(&e), "cannot claim a public dry run");
                Ok(Work::Idle(Duration::from_secs(1)))
            }
        }
    }

    /// Grades a claimed job, then opens a spare for the next.
    async fn graded(&self, job: Claimed) {
        self.grade(job).await;
        *self.graded_at.lock().unwrap() = Instant::now();
        self.open_spare();
    }

    /// Runs a public dry run until it ends or graded work for this slot arrives: then the dry run
    /// is stopped (it waits again, first in line; its clean-up runs beside the graded job).
    async fn dry_run<'a>(&'a self, claim: crate::store::DryRunClaim, mut notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'a>>) {
        let grader: &'a Grader<S> = &self.grader;
        let cancel = grader.stop.child_token();
        let mut task = tokio::spawn(public_dry_run(self.grader.clone(), claim, cancel.clone()));
        let graded = loop {
            tokio::select! {
                _ = &mut task => break None,
                _ = &mut notified => {
                    // Announced work may be for another slot or instance: claim first, and stop
                    // the dry run only for a job of our own.
                    notified.set(grader.work.notified());
                    notified.as_mut().enable();
                    match grader.store.claim(&grader.claim_request()).await {
                        Ok(Some(job)) => break Some(job),
                        Ok(None) => {}
                        Err(e) => error!(slot = %self.name, error = %crate::errors::Chain(&e), "cannot claim a job"),
                    }
                }
            }
        };
        if let Some(job) = graded {
            cancel.cancel();
            *self.dry_run.lock().unwrap() = Some(task);
            self.graded(job).await;
        }
    }

    /// Opens a spare sandbox like the last job's in the background, unless one is there.
    fn open_spare(&self) {
        let Some(last) = self.last_options.lock().unwrap().clone() else { return };
        if self.grader.stop.is_cancelled() {
            return;
        }
        let (sandbox, spare, stop) = (self.grader.sandbox.clone(), self.spare.clone(), self.grader.stop.clone());
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
                Ok(job) if !stop.is_cancelled() => {
                    if let Some(old) = spare.lock().await.replace(Spare { options, job }) {
                        let _ = old.job.close().await;
                    }
                }
                Ok(job) => {
                    let _ = job.close().await;
                }
                Err(error) => warn!(error = %crate::errors::Chain(&error), "cannot open a spare job sandbox"),
            }
        }));
    }

    async fn grade(&self, job: Claimed) {
        let grader = &self.grader;
        let span = info_span!("job", submission = job.submission(), task = %job.task, assignment = %job.assignment, attempt = job.attempts());
        let _hold = grader.hold(job.submission(), false);
        async {
            let cancel = grader.stop.child_token();
            let devices = {
                let mut running = grader.running.lock().unwrap();
                let devices = free_devices(grader.gpus, running.values().flat_map(|r| r.devices.iter().copied()), job.needs.gpus);
                running.insert(
                    job.submission(),
                    Running {
                        attempt: job.attempts(),
                        memory_bytes: job.needs.memory_bytes,
                        gpus: job.needs.gpus,
                        devices: devices.clone(),
                        claimed: Instant::now(),
                        cancel: cancel.clone(),
                    },
                );
                devices
            };
            grader.running_count.fetch_add(1, Ordering::Relaxed);
            let result = self.attempt(&job, &devices, &cancel).await;
            grader.running.lock().unwrap().remove(&job.submission());
            grader.running_count.fetch_sub(1, Ordering::Relaxed);
            let fence = &job.fence;
            match result {
                Ok((report, public_run)) => {
                    let json = report.to_json();
                    // The dry run is queued with the report, in the store: a restart loses none.
                    let stored = grader.retrying(|| grader.store.finish(fence, report.status, report.score, &json, now(), public_run)).await;
                    match stored {
                        Ok(()) => {
                            {
                                let mut metrics = grader.metrics.lock().unwrap();
                                metrics.jobs_graded += 1;
                                for step in &report.steps {
                                    let entry = metrics.step_seconds.entry(step.name.clone()).or_insert((0.0, 0));
                                    entry.0 += step.wall_seconds;
                                    entry.1 += 1;
                                }
                            }
                            info!(score = report.score, "graded");
                            // For an applicant tracking system: the server's deliverer sends it.
                            let event = serde_json::json!({ "submission": job.submission(), "assignment": job.assignment, "task": job.task,
                                "candidate": job.candidate, "number": job.number, "commit": job.commit, "status": report.status, "score": report.score });
                            let body = crate::webhook::event_body(crate::webhook::Event::SubmissionGraded, event, now());
                            if let Err(e) = grader.store.queue_webhook(crate::webhook::Event::SubmissionGraded.as_str(), &body, now()).await {
                                warn!(error = %crate::errors::Chain(&e), "cannot queue the graded webhook");
                            }
                            // The candidate's receipt (when they gave an address), sent by the server.
                            if let Err(e) = crate::mail::queue_receipt(grader.store.as_ref(), &job.assignment, job.submission(), now()).await {
                                warn!(error = %crate::errors::Chain(&e), "cannot queue the receipt");
                            }
                        }
                        Err(e @ StoreError::Fenced { .. }) => {
                            grader.metrics.lock().unwrap().results_refused += 1;
                            warn!(error = %crate::errors::Chain(&e), "result not stored: the job is another worker's now");
                        }
                        Err(e) => error!(error = %crate::errors::Chain(&e), "cannot store a report; the job's lease will run out and it will be graded again"),
                    }
                }
                Err(JobError::Cancelled) if grader.stop.is_cancelled() => match grader.store.release(fence).await {
                    Ok(()) => info!("stopped by shutdown; given back to the queue"),
                    Err(e) => warn!(error = %crate::errors::Chain(&e), "stopped by shutdown; cannot give the job back (its lease will run out)"),
                },
                Err(JobError::Cancelled) => info!("stopped: the lease was lost"),
                Err(e) => {
                    grader.metrics.lock().unwrap().jobs_failed += 1;
                    let attempts = job.attempts();
                    let retry_at = (attempts < grader.config.retries as i64).then(|| now() + 5 * (1 << attempts.clamp(0, 10)));
                    warn!(error = %crate::errors::Chain(&e), ?retry_at, "failed on our side");
                    let message = crate::errors::chain(&e);
                    if let Err(e) = grader.retrying(|| grader.store.fail(fence, &message, retry_at, now())).await {
                        warn!(error = %crate::errors::Chain(&e), "cannot record the failure");
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Grades a claimed job; also says whether the task declares a public dry run.
    async fn attempt(&self, job: &Claimed, devices: &[u32], cancel: &CancellationToken) -> Result<(crate::report::Report, bool), JobError> {
        let grader = &self.grader;
        let mut task = crate::task::TaskSpec::clone(&*grader.tasks.load(&job.task).map_err(|e| JobError::Internal(crate::errors::chain(&e)))?);
        task.gpu_devices = devices.to_vec();
        if !job.needs.spec_digest.is_empty() {
            // The claim matched this host's copies; they may have changed since.
            let task_now = task.clone();
            let mine = tokio::task::spawn_blocking(move || job::needs(&task_now))
                .await
                .map_err(|e| JobError::Internal(e.to_string()))?
                .map_err(|e| JobError::Internal(crate::errors::chain(&e)))?;
            if (mine.spec_digest.as_str(), mine.data_digest.as_str()) != (job.needs.spec_digest.as_str(), job.needs.data_digest.as_str()) {
                return Err(JobError::Internal(format!(
                    "this worker's copy of task {} or its data set changed after the job was queued (digests {} / {}, queued with {} / {})",
                    job.task,
                    short(&mine.spec_digest),
                    short(&mine.data_digest),
                    short(&job.needs.spec_digest),
                    short(&job.needs.data_digest)
                )));
            }
        }
        let image = grader.task_image(&task).await?;
        let checkout = tempfile::Builder::new().prefix("takehome-checkout-").tempdir().map_err(|e| JobError::Internal(e.to_string()))?;
        let (source, assignment, commit, dest) = (grader.source.clone(), job.assignment.clone(), job.commit.clone(), checkout.path().to_path_buf());
        let mut job_id = format!("s{}{}", job.submission(), crate::job::new_job_id());
        let options = job::job_options(&task, &image, &job_id);
        let previous = self.last_options.lock().unwrap().replace(options.clone());
        // A spare sandbox made during or after the last job serves at once (one being opened
        // is waited for: it is further along than a fresh one would be); else the job's volumes
        // and holder are made while git checks the commit out.
        if previous.is_some_and(|previous| same_sandbox(&previous, &options)) {
            let opener = self.opener.lock().unwrap().take();
            if let Some(opener) = opener {
                let _ = opener.await;
            }
        }
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
                None => grader.sandbox.open_job(&options).await,
            }
        };
        let checking_out = async {
            tokio::task::spawn_blocking(move || source.checkout(&assignment, &commit, &dest))
                .await
                .map_err(|e| JobError::Internal(e.to_string()))?
                .map_err(|e| JobError::Internal(crate::errors::chain(&e)))
        };
        let (checked_out, opened) = tokio::join!(checking_out, opening);
        // The next job's sandbox is made while this one's steps run (on the core they leave
        // free), so that a queue of pushes never waits for a holder.
        self.open_spare();
        if let Err(error) = checked_out {
            if let Ok(opened) = opened {
                let _ = opened.close().await;
            }
            return Err(error);
        }
        if let Err(error) = grader.other_images(&task, checkout.path()).await {
            if let Ok(opened) = opened {
                let _ = opened.close().await;
            }
            return Err(error);
        }
        let mut report =
            job::grade_opening(&grader.sandbox, &task, checkout.path(), &image, &job_id, async { opened }, Some(&self.reaper), cancel, &|_| {}).await?;
        report.candidate = Some(job.candidate.clone());
        report.submission.commit = Some(job.commit.clone());
        report.submission.path = format!("{}#{}", job.assignment, job.submission());
        Ok((report, task.public_run.is_some()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_on_one_host_are_given_devices_no_other_job_holds() {
        assert_eq!(super::free_devices(4, [0, 2].into_iter(), 2), [1, 3]);
        assert_eq!(super::free_devices(4, std::iter::empty(), 1), [0]);
        assert!(super::free_devices(4, [0].into_iter(), 0).is_empty(), "a job without GPU steps gets none");
        assert!(super::free_devices(2, [0, 1].into_iter(), 1).is_empty(), "none free: the engine picks by count");
    }
}
