//! The sandbox: runs one job's steps in fresh, hardened Docker containers and brings their
//! outputs back to the host safely. The only module that imports bollard.
//!
//! A job ([`DockerJob`]) owns two capped tmpfs volumes (`/workspace`, `/output`) and a *holder*
//! container that keeps them mounted between steps (a tmpfs volume lives only while some container
//! holds it) and through which the host downloads `/output` with the archive API. Candidates' code
//! never runs in the holder. Each step runs in its own container with no network, a non-root user,
//! no capabilities, no-new-privileges, a read-only root, memory = memory+swap, CPU, pids, nofile and
//! fsize limits, a wall-clock timeout and capped logs.
//!
//! Invariants:
//! - every container and volume carries the label `takehome=1` (plus the job id and the owning
//!   process), and a [`CleanupGuard`] removes them on every path: success, error, panic, drop on
//!   cancellation; `remove_leftovers` sweeps what a dead process left behind;
//! - the host reads results only through the Docker API (inspect, stats, archive) and never follows
//!   a link inside what it downloads (see [`archive`]);
//! - a candidate's failure is a [`StepRun`] with an [`Outcome`]; `Err(RunError)` is our own fault.

pub mod archive;
pub mod image;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions, ResourcesUlimits, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, DownloadFromContainerOptions, KillContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StatsOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub mod cgroup;
pub mod seccomp;

pub use archive::{Extracted, RefusalKind, Rejected};

/// Every container and volume of ours carries this label (value `1`).
pub const LABEL: &str = "takehome";
pub const LABEL_JOB: &str = "takehome.job";
pub const LABEL_PID: &str = "takehome.pid";
pub const LABEL_ROLE: &str = "takehome.role";
/// The process instance that owns it: an id minted at each start ([`instance_id`]).
pub const LABEL_INSTANCE: &str = "takehome.instance";
/// When the owning process started (clock ticks since boot, /proc/<pid>/stat field 22), so that
/// a reused PID is not taken for the owner.
pub const LABEL_PID_START: &str = "takehome.pid_start";

/// This process's instance id, minted at first use: containers belong to it, and a daemon or
/// worker holds its leases under it. Never reused across starts (unlike a PID).
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("i{}", hex::encode(crate::secret::random_bytes::<8>())))
}

/// The state and start time of process `pid` (from /proc/<pid>/stat), if it exists.
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 overall is the 20th after the state (field 3).
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the process that labelled a container still runs: the PID exists, is not a zombie,
/// and (when the label has it) started when the owner did.
fn owner_alive(labels: &HashMap<String, String>) -> bool {
    let Some(pid) = labels.get(LABEL_PID).and_then(|pid| pid.parse::<u32>().ok()) else { return false };
    match process_stat(pid) {
        None => false,
        Some(('Z' | 'X' | 'x', _)) => false,
        Some((_, start)) => labels.get(LABEL_PID_START).and_then(|s| s.parse::<u64>().ok()).is_none_or(|expected| expected == start),
    }
}
/// The unprivileged user that steps run as (the runner images create it).
pub const RUNNER_USER: &str = "10001:10001";
pub const RUNNER_UID: u32 = 10001;

/// Bytes of stdout and of stderr kept per step (the tail); the rest is dropped and flagged.
pub const DEFAULT_LOG_CAP: usize = 1 << 20;
/// The folder under `/output` where `takehome-notebook` keeps each notebook it ran, outputs
/// and figures included ([`EXECUTED_NAME`] is its name there).
pub const EXECUTED_DIR: &str = "/output/.takehome-executed";
pub const EXECUTED_NAME: &str = ".takehome-executed";
/// The folder under `/output` whose images a step saves for the report (`figures/*.png`).
pub const FIGURES_NAME: &str = "figures";
/// A step that prints more than this on one stream is stopped as `output_limit`.
pub const DEFAULT_LOG_FLOOD: u64 = 64 << 20;
pub const DEFAULT_PIDS_LIMIT: i64 = 256;
pub const DEFAULT_NOFILE: i64 = 1024;
pub const DEFAULT_TMP_BYTES: u64 = 256 << 20;
pub const DEFAULT_FILE_BYTES: u64 = 1 << 30;
/// How long a Docker API call may take before we call it our failure.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a killed container may take to stop.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How a step ended. Everything but `InfrastructureError` is the candidate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    TimedOut,
    OutOfMemory,
    OutputLimit,
    DiskLimit,
    InfrastructureError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::OutputLimit => "output_limit",
            Outcome::DiskLimit => "disk_limit",
            Outcome::InfrastructureError => "infrastructure_error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Docker engine")]
    Connect(#[source] bollard::errors::Error),
    #[error("docker {action}")]
    Docker {
        action: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("docker {0}: no answer within {API_TIMEOUT:?}")]
    Timeout(&'static str),
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Image(String),
}

fn docker_error(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> RunError {
    move |source| RunError::Docker { action, source }
}

/// Runs one Docker API call with the standard timeout.
async fn api<T>(action: &'static str, call: impl Future<Output = Result<T, bollard::errors::Error>>) -> Result<T, RunError> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => result.map_err(docker_error(action)),
        Err(_) => Err(RunError::Timeout(action)),
    }
}

/// The limits of one step's container.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: i64,
    pub nofile: i64,
    /// Size of the `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Bytes kept of each of stdout and stderr.
    pub log_cap: usize,
    /// Bytes on one stream after which the step is stopped as `output_limit`.
    pub log_flood: u64,
    /// The largest file a process may write (RLIMIT_FSIZE), anywhere.
    pub file_bytes: u64,
    /// GPUs the step asks for: a device request to the engine (`--gpus N`), none by default.
    pub gpus: u32,
    /// Which of the host's GPUs (their indexes), when the worker assigned them: two jobs on one
    /// host then never share a device. Empty: the engine picks `gpus` of them.
    pub gpu_devices: Vec<u32>,
}

impl Limits {
    pub fn new(timeout: Duration, memory_bytes: u64, cpus: f64) -> Limits {
        Limits {
            timeout,
            memory_bytes,
            cpus,
            pids: DEFAULT_PIDS_LIMIT,
            nofile: DEFAULT_NOFILE,
            tmp_bytes: DEFAULT_TMP_BYTES,
            log_cap: DEFAULT_LOG_CAP,
            log_flood: DEFAULT_LOG_FLOOD,
            file_bytes: DEFAULT_FILE_BYTES,
            gpus: 0,
            gpu_devices: Vec::new(),
        }
    }
}

/// A host path mounted read-only into a step's container.
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    pub target: String,
}

/// One step to run: the command (argv, run in `/submission`), its read-only mounts and limits.
#[derive(Debug, Clone)]
pub struct StepRequest {
    pub name: String,
    pub command: Vec<String>,
    /// Mounted at `/submission`.
    pub submission: PathBuf,
    /// Mounted under `/data`.
    pub inputs: Vec<Bind>,
    pub limits: Limits,
    /// The image to run in (a tag the engine has), when not the job's: a run choice of another
    /// language (`Rscript clean.R` in the `r` image). `/workspace` and `/output` are shared.
    pub image: Option<String>,
}

/// What a stream printed: the last `cap` bytes and how many there were in all.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog {
    tail: Vec<u8>,
    cap: usize,
    pub total_bytes: u64,
}

impl CapturedLog {
    pub fn new(cap: usize) -> CapturedLog {
        CapturedLog { tail: Vec::new(), cap, total_bytes: 0 }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.total_bytes += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        // Trim in batches so that a flood of small writes stays linear.
        if self.tail.len() > self.cap.saturating_mul(2).max(4096) {
            let excess = self.tail.len() - self.cap;
            self.tail.drain(..excess);
        }
    }

    pub fn truncated(&self) -> bool {
        self.total_bytes > self.cap as u64
    }

    /// The kept tail as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let start = self.tail.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.tail[start..]).into_owned()
    }
}

/// The GPUs of this host that containers can be given: NVIDIA's device files `/dev/nvidia0`,
/// `/dev/nvidia1`, ... (the engine hands them over through the NVIDIA container toolkit).
pub fn host_gpus() -> u32 {
    let Ok(entries) = std::fs::read_dir("/dev") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("nvidia")).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        .count() as u32
}

/// The record of one step's container.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub outcome: Outcome,
    pub exit_code: Option<i64>,
    pub wall: Duration,
    /// User + system time of every process of the step (see `accounting`).
    pub cpu_seconds: Option<f64>,
    /// The step's peak memory, page cache included (see `accounting`).
    pub peak_memory_bytes: Option<u64>,
    /// Where the two figures above come from.
    pub accounting: Accounting,
    pub stdout: CapturedLog,
    pub stderr: CapturedLog,
    /// Why the outcome is what it is, for the assessor.
    pub message: String,
}

/// Where a step's CPU time and peak memory come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// The kernel's own totals for the step's cgroup, read when it ended: exact.
    Kernel,
    /// The engine's stats stream, sampled about once a second: a step shorter than a sample can
    /// be missed (used only where the cgroup files cannot be read).
    #[default]
    Sampled,
}

/// What a job needs from the engine before its first step.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Lowercase letters, digits and '-': it names containers and volumes.
    pub job_id: String,
    pub image: String,
    pub workspace_bytes: u64,
    pub output_bytes: u64,
    /// The least isolation this job needs; the sandbox may use more (its own default).
    pub runtime: Runtime,
}

/// The OCI runtime that runs our containers: `runc` (the engine's default: namespaces, cgroups,
/// seccomp) or `runsc` (gVisor: a user-space kernel between the step and the host's, a second
/// wall). Ordered by isolation, so a job takes the stronger of what the task needs and what the
/// operator set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    #[default]
    Runc,
    Runsc,
}

impl Runtime {
    pub fn parse(text: &str) -> Option<Runtime> {
        match text {
            "runc" => Some(Runtime::Runc),
            "runsc" | "gvisor" => Some(Runtime::Runsc),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    }
}

/// The narrow surface the rest of takehome uses; a Kubernetes backend would implement it too.
pub trait Sandbox {
    type Job: JobSandbox + Send + Sync + 'static;
    fn open_job(&self, options: &JobOptions) -> impl Future<Output = Result<Self::Job, RunError>> + Send;
    /// A job with no volumes and no holder, for a step that needs only the submission (the lint):
    /// its steps get the same hardening; it has no `/workspace` or `/output`, nothing to collect.
    fn open_bare_job(&self, options: &JobOptions) -> impl Future<Output = Result<Self::Job, RunError>> + Send;
    /// How many containers of one job exist right now (0 once it is closed, whatever happened).
    fn count_job(&self, job_id: &str) -> impl Future<Output = Result<usize, RunError>> + Send;
}

pub trait JobSandbox {
    /// Runs one step to its end. A candidate's failure is an `Ok(StepRun)` with its outcome.
    fn run_step(&self, request: &StepRequest, cancel: &CancellationToken) -> impl Future<Output = Result<StepRun, RunError>> + Send;
    /// Copies `/output/<name>` (a file or a folder) into `dest`, a folder the host created,
    /// refusing links and special files and anything over `max_bytes`.
    fn collect_output(&self, name: &str, dest: &Path, max_bytes: u64) -> impl Future<Output = Result<Extracted, RunError>> + Send;
    /// Removes the job's containers and volumes.
    fn close(self) -> impl Future<Output = Result<(), RunError>> + Send;
    /// The runtime the job's containers run under.
    fn runtime(&self) -> Runtime;
}

/// The local Docker engine, reached through its socket.
#[derive(Clone)]
pub struct DockerSandbox {
    docker: Docker,
    /// The operator's default (a task may ask for more).
    runtime: Runtime,
    /// Where step cgroups live, when the engine and this host let us read them.
    cgroups: Option<cgroup::Layout>,
}

/// Which leftovers to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftovers {
    /// Everything labelled ours (a daemon that owns the engine, at start-up).
    All,
    /// Only what processes that no longer run left behind (safe beside other live takehome processes).
    OfDeadProcesses,
    /// What instances the store knows are gone left behind (instance id → alive, as the store
    /// says: stopped, replaced or lease run out is dead), and what unknown instances (a `grade`
    /// or `check` beside us) left when their process no longer runs. This process's own are kept.
    OfDeadInstances(HashMap<String, bool>),
    /// Everything this process made, and nothing of others': for a worker whose slots have all
    /// ended, when nothing of this process may run any more (a job whose close failed, a
    /// container whose creation finished after the request was given up).
    OfThisProcess,
}

impl Leftovers {
    fn removes(&self, labels: &HashMap<String, String>) -> bool {
        if !labels.contains_key(LABEL_JOB) {
            return false; // not made by us (an image's labels are inherited by its containers)
        }
        let instance = labels.get(LABEL_INSTANCE).map(String::as_str);
        if instance == Some(instance_id()) {
            return matches!(self, Leftovers::All | Leftovers::OfThisProcess);
        }
        match self {
            Leftovers::All => true,
            Leftovers::OfThisProcess => false,
            Leftovers::OfDeadProcesses => !owner_alive(labels),
            Leftovers::OfDeadInstances(known) => match instance.and_then(|i| known.get(i)) {
                Some(alive) => !alive,
                None => !owner_alive(labels),
            },
        }
    }
}

impl DockerSandbox {
    /// Connects to the local engine and agrees on an API version (this engine may be older than bollard).
    pub async fn connect() -> Result<DockerSandbox, RunError> {
        let docker = Docker::connect_with_local_defaults().map_err(RunError::Connect)?;
        let docker = match tokio::time::timeout(Duration::from_secs(15), docker.negotiate_version()).await {
            Ok(result) => result.map_err(RunError::Connect)?,
            Err(_) => return Err(RunError::Timeout("version negotiation")),
        };
        api("ping", docker.ping()).await?;
        let info = api("info", docker.info()).await?;
        let driver = info.cgroup_driver.map(|d| d.to_string());
        let version = info.cgroup_version.map(|v| v.to_string());
        let cgroups = (driver.as_deref() != Some("none") && Path::new("/sys/fs/cgroup").is_dir())
            .then(|| cgroup::Layout::from_engine(version.as_deref(), driver.as_deref()));
        Ok(DockerSandbox { docker, runtime: Runtime::Runc, cgroups })
    }

    /// The same engine, running every job under at least `runtime`.
    pub fn with_runtime(mut self, runtime: Runtime) -> DockerSandbox {
        self.runtime = runtime;
        self
    }

    /// Fails with a message the operator can act on when the engine lacks `runtime`.
    pub async fn check_runtime(&self, runtime: Runtime) -> Result<(), RunError> {
        if runtime == Runtime::Runc {
            return Ok(());
        }
        let info = api("info", self.docker.info()).await?;
        if info.runtimes.as_ref().is_some_and(|r| r.contains_key(runtime.as_str())) {
            return Ok(());
        }
        Err(RunError::Io {
            action: format!("use the {} runtime", runtime.as_str()),
            source: std::io::Error::other(format!(
                "the Docker engine has no runtime named {:?} (install gVisor and register it: .ci/register-runsc.sh)",
                runtime.as_str()
            )),
        })
    }

    /// Removes containers and volumes labelled ours, and the empty step cgroups of jobs that no
    /// longer have a container; returns how many containers went.
    pub async fn remove_leftovers(&self, which: Leftovers) -> Result<usize, RunError> {
        // Containers made from our runner images inherit the images' `takehome` label (someone's
        // own `docker run` of one, say): ours are those that carry a job, which only we set.
        let filters = HashMap::from([("label".to_string(), vec![LABEL_JOB.to_string()])]);
        let containers = api(
            "list containers",
            self.docker.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() })),
        )
        .await?;
        let mut removed = 0;
        let mut live_jobs = Vec::new();
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            if !which.removes(&labels) {
                live_jobs.extend(labels.get(LABEL_JOB).cloned());
                continue;
            }
            if let Some(id) = container.id {
                info!(container = %short(&id), "removing a leftover container");
                if remove_container(&self.docker, &id).await.is_ok() {
                    removed += 1;
                } else {
                    live_jobs.extend(labels.get(LABEL_JOB).cloned());
                }
            }
        }
        // Empty step cgroups of a process that died between a step and its clean-up; a step that
        // has just ended is read before its container goes, so the jobs listed live keep theirs.
        if let Some(layout) = self.cgroups.clone() {
            let _ = tokio::task::spawn_blocking(move || layout.sweep(&live_jobs)).await;
        }
        let volumes = api("list volumes", self.docker.list_volumes(Some(ListVolumesOptions { filters: Some(filters) }))).await?;
        for volume in volumes.volumes.unwrap_or_default() {
            if !which.removes(&volume.labels) {
                continue;
            }
            // A volume still held by a live container refuses removal; that is fine.
            let _ = self.docker.remove_volume(&volume.name, Some(RemoveVolumeOptions { force: true })).await;
        }
        Ok(removed)
    }

    /// How many containers carry `label` (`takehome`, or `key=value` such as `takehome.job=abc`).
    pub async fn count_labelled(&self, label: &str) -> Result<usize, RunError> {
        self.count_with_labels(&[label]).await
    }

    /// How many containers carry every one of `labels` (`key=value`), running or not.
    pub async fn count_with_labels(&self, labels: &[&str]) -> Result<usize, RunError> {
        let filters = HashMap::from([("label".to_string(), labels.iter().map(|l| l.to_string()).collect())]);
        let list = api("list containers", self.docker.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })))
            .await?;
        Ok(list.len())
    }
}

/// Whether a step's peak memory came within a tenth of its limit.
fn at_memory_limit(peak: Option<u64>, limit: u64) -> bool {
    peak.is_some_and(|peak| limit > 0 && peak + limit / 10 >= limit)
}

/// The labels of every container and volume of ours: ours, which job, which process, what role.
fn labels(job_id: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (LABEL_JOB.to_string(), job_id.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
        (LABEL_PID_START.to_string(), process_stat(std::process::id()).map(|(_, start)| start.to_string()).unwrap_or_default()),
        (LABEL_INSTANCE.to_string(), instance_id().to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
    ])
}

impl Sandbox for DockerSandbox {
    type Job = DockerJob;

    async fn count_job(&self, job_id: &str) -> Result<usize, RunError> {
        self.count_labelled(&format!("{LABEL_JOB}={job_id}")).await
    }

    async fn open_job(&self, options: &JobOptions) -> Result<DockerJob, RunError> {
        let runtime = options.runtime.max(self.runtime);
        self.check_runtime(runtime).await?;
        let guard = CleanupGuard::new(self.docker.clone());
        let workspace = format!("takehome-{}-workspace", options.job_id);
        let output = format!("takehome-{}-output", options.job_id);
        for (name, bytes) in [(&workspace, options.workspace_bytes), (&output, options.output_bytes)] {
            // A tmpfs is the cap: overlay on ext4 has no per-container quota, a tmpfs has a hard size.
            let driver_opts = HashMap::from([
                ("type".to_string(), "tmpfs".to_string()),
                ("device".to_string(), "tmpfs".to_string()),
                ("o".to_string(), format!("size={bytes},uid={RUNNER_UID},gid={RUNNER_UID},mode=0755,nosuid,nodev,noexec")),
            ]);
            let request = VolumeCreateRequest {
                name: Some(name.clone()),
                driver: Some("local".to_string()),
                driver_opts: Some(driver_opts),
                labels: Some(labels(&options.job_id, "volume")),
                ..Default::default()
            };
            api("create volume", self.docker.create_volume(request)).await?;
            guard.track_volume(name);
        }
        // The holder runs none of the candidate's code (only `sleep` and our `stat`s), so it stays on
        // runc: its view of the volumes is the host's own (gVisor reports a sparse file's blocks
        // as if written, which would hide it from the sparse check).
        let mut host_config = hardened_host_config(&Limits::new(Duration::from_secs(1), 64 << 20, 0.1), Runtime::Runc);
        host_config.mounts = Some(vec![volume_mount(&workspace, "/workspace"), volume_mount(&output, "/output")]);
        let config = ContainerCreateBody {
            image: Some(options.image.clone()),
            cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
            user: Some(RUNNER_USER.to_string()),
            labels: Some(labels(&options.job_id, "holder")),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let holder = create_container(&self.docker, &format!("takehome-{}-holder", options.job_id), config).await?;
        guard.track_container(&holder);
        api("start holder", self.docker.start_container(&holder, None)).await?;
        debug!(job = %options.job_id, holder = %short(&holder), "job sandbox ready");
        Ok(self.job(options, runtime, Some(holder), guard))
    }

    async fn open_bare_job(&self, options: &JobOptions) -> Result<DockerJob, RunError> {
        let runtime = options.runtime.max(self.runtime);
        self.check_runtime(runtime).await?;
        Ok(self.job(options, runtime, None, CleanupGuard::new(self.docker.clone())))
    }
}

impl DockerSandbox {
    fn job(&self, options: &JobOptions, runtime: Runtime, holder: Option<String>, guard: CleanupGuard) -> DockerJob {
        DockerJob {
            docker: self.docker.clone(),
            runtime,
            cgroups: self.cgroups.clone(),
            steps: std::sync::atomic::AtomicUsize::new(0),
            job_id: options.job_id.clone(),
            image: options.image.clone(),
            holder,
            guard: Arc::new(guard),
            removals: std::sync::Mutex::new(Vec::new()),
        }
    }
}

/// One job's containers and volumes on the local engine.
pub struct DockerJob {
    docker: Docker,
    runtime: Runtime,
    cgroups: Option<cgroup::Layout>,
    /// Steps started so far: numbers each step's parent cgroup.
    steps: std::sync::atomic::AtomicUsize,
    job_id: String,
    image: String,
    /// The container that keeps the volumes mounted; `None` for a bare job (no volumes).
    holder: Option<String>,
    guard: Arc<CleanupGuard>,
    /// Step containers being removed in the background; `close` waits for them.
    removals: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl JobSandbox for DockerJob {
    async fn run_step(&self, request: &StepRequest, cancel: &CancellationToken) -> Result<StepRun, RunError> {
        let limits = &request.limits;
        let mut host_config = hardened_host_config(limits, self.runtime);
        // A parent cgroup of the step's own keeps the kernel's totals after the container is gone.
        let n = self.steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let step_cgroup = self.cgroups.as_ref().map(|layout| layout.step(&self.job_id, n));
        host_config.cgroup_parent = step_cgroup.as_ref().map(|c| c.parent().to_string());
        let mut binds = vec![format!("{}:/submission:ro", request.submission.display())];
        binds.extend(request.inputs.iter().map(|bind| format!("{}:{}:ro", bind.host.display(), bind.target)));
        host_config.binds = Some(binds);
        if self.holder.is_some() {
            host_config.mounts = Some(vec![
                volume_mount(&format!("takehome-{}-workspace", self.job_id), "/workspace"),
                volume_mount(&format!("takehome-{}-output", self.job_id), "/output"),
            ]);
        }
        let threads = (limits.cpus.ceil() as u64).max(1).to_string();
        let mut env = vec![
            ("HOME", "/tmp"),
            ("TMPDIR", "/tmp"),
            ("MPLCONFIGDIR", "/tmp"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("PYTHONUNBUFFERED", "1"),
            ("OMP_NUM_THREADS", threads.as_str()),
            ("OPENBLAS_NUM_THREADS", threads.as_str()),
            ("MKL_NUM_THREADS", threads.as_str()),
        ];
        if self.holder.is_some() {
            // Where the notebook runner keeps each executed notebook (collected for assessors).
            env.push(("TAKEHOME_EXECUTED", EXECUTED_DIR));
        }
        let config = ContainerCreateBody {
            image: Some(request.image.clone().unwrap_or_else(|| self.image.clone())),
            cmd: Some(request.command.clone()),
            user: Some(RUNNER_USER.to_string()),
            working_dir: Some("/submission".to_string()),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels(&self.job_id, &format!("step:{}", request.name))),
            network_disabled: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let name = format!("takehome-{}-{}-{}", self.job_id, request.name, fresh_suffix());
        let id = create_container(&self.docker, &name, config).await?;
        self.guard.track_container(&id);
        let result = self.run_created(&id, request, step_cgroup.as_ref(), cancel).await;
        // The container goes on every path: after a step that ended, in the background (its
        // results are read, and the next step need not wait; `close` waits for it). A failure to
        // remove it is logged, and the guard or the next start-up sweep takes it.
        // A step that did not end (cancelled, or our failure) is removed before this returns.
        let (docker, guard) = (self.docker.clone(), self.guard.clone());
        let removal = async move {
            match remove_container(&docker, &id).await {
                Ok(()) => guard.forget_container(&id),
                Err(error) => warn!(container = %short(&id), error = %crate::errors::Chain(&error), "could not remove a step container"),
            }
            if let Some(step_cgroup) = &step_cgroup {
                step_cgroup.remove();
            }
        };
        if result.is_ok() {
            let removal = tokio::spawn(removal);
            self.removals.lock().unwrap().push(removal);
        } else {
            removal.await;
        }
        result
    }

    async fn collect_output(&self, name: &str, dest: &Path, max_bytes: u64) -> Result<Extracted, RunError> {
        if !archive::is_plain_name(name) {
            return Err(RunError::Io { action: format!("collect {name:?}"), source: std::io::Error::other("not a plain file name") });
        }
        let Some(holder) = &self.holder else {
            return Err(RunError::Io { action: format!("collect {name:?}"), source: std::io::Error::other("a bare job has no /output") });
        };
        // The file's size is asked beside the download (the steps have ended: nothing changes
        // it), so that a huge or sparse file is refused. The download stops at the cap whatever
        // the file claims, so asking first would only add a round trip to every job.
        let (size, downloaded) = tokio::join!(self.output_size(name), self.download(holder, name, max_bytes));
        match size {
            Some((size, allocated)) if size > allocated.saturating_add(1 << 20) => {
                let reason = format!("a sparse file ({} apparent, {} written)", crate::units::format_size(size), crate::units::format_size(allocated));
                return Ok(Extracted { rejected: vec![Rejected { path: name.to_string(), kind: RefusalKind::Sparse, reason }], ..Default::default() });
            }
            Some((size, _)) if size > max_bytes => return Ok(Extracted::too_large(max_bytes)),
            _ => {}
        }
        let mut spool = match downloaded? {
            Downloaded::Spool(spool) => spool,
            Downloaded::Missing => return Ok(Extracted::missing()),
            Downloaded::TooLarge => return Ok(Extracted::too_large(max_bytes)),
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            spool.rewind()?;
            archive::extract_safely(spool, &dest, max_bytes)
        })
        .await
        .map_err(|error| RunError::Io { action: "extract from /output".into(), source: std::io::Error::other(error) })?
        .map_err(|source| RunError::Io { action: "extract from /output".into(), source })
    }

    async fn close(self) -> Result<(), RunError> {
        let removals = std::mem::take(&mut *self.removals.lock().unwrap());
        for removal in removals {
            let _ = removal.await;
        }
        self.guard.clean().await;
        Ok(())
    }

    fn runtime(&self) -> Runtime {
        self.runtime
    }
}

/// What a download from `/output` brought.
enum Downloaded {
    Spool(std::fs::File),
    Missing,
    TooLarge,
}

/// How the wait for a step's container ended.
enum Ended {
    Exited,
    TimedOut,
    Flood,
    Cancelled,
    WaitFailed(String),
}

impl DockerJob {
    async fn run_created(
        &self,
        id: &str,
        request: &StepRequest,
        step_cgroup: Option<&cgroup::StepCgroup>,
        cancel: &CancellationToken,
    ) -> Result<StepRun, RunError> {
        let limits = &request.limits;
        // Attach before start so that nothing printed is missed; drain with a cap.
        let attach = api(
            "attach",
            self.docker.attach_container(id, Some(AttachContainerOptions { stream: true, stdout: true, stderr: true, logs: false, ..Default::default() })),
        )
        .await?;
        let flood = Arc::new(Notify::new());
        let drain = AbortOnDrop(tokio::spawn(drain_logs(attach.output, limits.log_cap, limits.log_flood, flood.clone())));

        let started = Instant::now();
        api("start", self.docker.start_container(id, None)).await?;
        let usage = Arc::new(Mutex::new(Usage::default()));
        let stats = AbortOnDrop(tokio::spawn(sample_stats(self.docker.clone(), id.to_string(), usage.clone())));
        let mut wait = Box::pin(self.docker.wait_container(id, None));

        let ended = tokio::select! {
            waited = wait.next() => match waited {
                Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => Ended::Exited,
                Some(Err(error)) => Ended::WaitFailed(error.to_string()),
                None => Ended::WaitFailed("the wait stream ended early".to_string()),
            },
            _ = tokio::time::sleep(limits.timeout) => Ended::TimedOut,
            _ = flood.notified() => Ended::Flood,
            _ = cancel.cancelled() => Ended::Cancelled,
        };
        let wall = started.elapsed();
        if !matches!(ended, Ended::Exited) {
            let _ = self.docker.kill_container(id, Some(KillContainerOptions { signal: "SIGKILL".to_string() })).await;
            let mut wait = Box::pin(self.docker.wait_container(id, None));
            if tokio::time::timeout(KILL_GRACE, wait.next()).await.is_err() {
                warn!(container = %short(id), "container did not stop after SIGKILL");
            }
        }
        match ended {
            Ended::Cancelled => return Err(RunError::Cancelled),
            Ended::WaitFailed(message) => return Err(RunError::Image(format!("waiting for step {}: {message}", request.name))),
            _ => {}
        }
        let inspect = api("inspect", self.docker.inspect_container(id, None)).await?;
        let state = inspect.state.unwrap_or_default();
        let exit_code = state.exit_code;
        let oom_killed = state.oom_killed.unwrap_or(false);
        let (stdout, stderr) = match tokio::time::timeout(Duration::from_secs(5), drain.join()).await {
            Ok(Some(logs)) => logs,
            _ => (CapturedLog::new(limits.log_cap), CapturedLog::new(limits.log_cap)),
        };
        drop(stats);
        let sampled = *usage.lock().unwrap();
        // The container has stopped: its parent cgroup holds the kernel's totals.
        let kernel = step_cgroup.map(|c| c.read());
        let (cpu_seconds, peak_memory_bytes, accounting) = match kernel {
            Some(Ok(totals)) => (Some(totals.cpu_nanos as f64 / 1e9), totals.peak_bytes.or(sampled.peak_bytes), Accounting::Kernel),
            other => {
                if let Some(Err(error)) = other {
                    warn!(error = %crate::errors::Chain(&error), "cannot read the step's cgroup; using sampled stats");
                }
                (sampled.cpu_nanos.map(|nanos| nanos as f64 / 1e9), sampled.peak_bytes, Accounting::Sampled)
            }
        };

        let (outcome, message) = match ended {
            Ended::TimedOut => (Outcome::TimedOut, format!("stopped after the step's timeout of {:?}", limits.timeout)),
            Ended::Flood => (Outcome::OutputLimit, format!("stopped after printing more than {} on one stream", crate::units::format_size(limits.log_flood))),
            _ if exit_code == Some(0) => (Outcome::Ok, String::new()),
            _ if oom_killed => {
                (Outcome::OutOfMemory, format!("killed for using more than its memory limit of {}", crate::units::format_size(limits.memory_bytes)))
            }
            // 128 + SIGXFSZ: a file grew past the size limit.
            _ if exit_code == Some(153) => (Outcome::DiskLimit, "a file grew past the file size limit".to_string()),
            _ => match self.full_volumes().await {
                Some(full) if !full.is_empty() => (Outcome::DiskLimit, format!("{} is full", full.join(" and "))),
                // Under gVisor an allocation past the limit may fail (Python's MemoryError, exit
                // 1) instead of drawing the kernel's OOM kill: a failure at the limit is the same.
                _ if at_memory_limit(peak_memory_bytes, limits.memory_bytes) => (
                    Outcome::OutOfMemory,
                    format!("failed at its memory limit of {} (exit code {})", crate::units::format_size(limits.memory_bytes), exit_code.unwrap_or(-1)),
                ),
                _ => (Outcome::Failed, format!("exited with code {}", exit_code.unwrap_or(-1))),
            },
        };
        Ok(StepRun { outcome, exit_code, wall, cpu_seconds, peak_memory_bytes, accounting, stdout, stderr, message })
    }

    /// `/output/<name>` as a tar stream from the holder into a spool file, cut off past the cap.
    async fn download(&self, holder: &str, name: &str, max_bytes: u64) -> Result<Downloaded, RunError> {
        let options = DownloadFromContainerOptions { path: format!("/output/{name}") };
        let mut stream = self.docker.download_from_container(holder, Some(options));
        let spool = tempfile::tempfile().map_err(|source| RunError::Io { action: "create a spool file".into(), source })?;
        let mut spool = tokio::fs::File::from_std(spool);
        // Tar adds a header and padding; allow for them beyond the cap.
        let limit = max_bytes + (64 << 10);
        let mut received: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout(API_TIMEOUT, stream.next()).await {
                Err(_) => return Err(RunError::Timeout("download from /output")),
                Ok(None) => break,
                Ok(Some(Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }))) => return Ok(Downloaded::Missing),
                Ok(Some(chunk)) => chunk.map_err(docker_error("download from /output"))?,
            };
            received += chunk.len() as u64;
            if received > limit {
                return Ok(Downloaded::TooLarge);
            }
            spool.write_all(&chunk).await.map_err(|source| RunError::Io { action: "spool /output".into(), source })?;
        }
        spool.flush().await.map_err(|source| RunError::Io { action: "spool /output".into(), source })?;
        Ok(Downloaded::Spool(spool.into_std().await))
    }

    /// Runs one of our own commands in the holder (never a candidate's) and returns its stdout.
    async fn holder_exec(&self, command: &[&str]) -> Option<String> {
        let exec = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.iter().map(|part| part.to_string()).collect()),
            ..Default::default()
        };
        let created = api("exec", self.docker.create_exec(self.holder.as_ref()?, exec)).await.ok()?;
        let started = api("exec", self.docker.start_exec(&created.id, None)).await.ok()?;
        let bollard::exec::StartExecResults::Attached { mut output, .. } = started else {
            return None;
        };
        let mut text = String::new();
        while let Ok(Some(Ok(item))) = tokio::time::timeout(Duration::from_secs(10), output.next()).await {
            if let LogOutput::StdOut { message } = item {
                text.push_str(&String::from_utf8_lossy(&message));
            }
        }
        Some(text)
    }

    /// Which of `/workspace` and `/output` have (almost) no room left.
    async fn full_volumes(&self) -> Option<Vec<String>> {
        let text = self.holder_exec(&["stat", "-f", "-c", "%n %b %a", "/workspace", "/output"]).await?;
        let mut full = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [name, total, available] = fields[..] {
                let (total, available): (u64, u64) = (total.parse().ok()?, available.parse().ok()?);
                if available * 100 < total.max(1) || available < 16 {
                    full.push(name.to_string());
                }
            }
        }
        Some(full)
    }

    /// The apparent size of `/output/<name>` and the bytes it really occupies, without following a link.
    async fn output_size(&self, name: &str) -> Option<(u64, u64)> {
        let path = format!("/output/{name}");
        let text = self.holder_exec(&["stat", "-c", "%s %b %B", &path]).await?;
        let fields: Vec<u64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        match fields[..] {
            [size, blocks, block_size] => Some((size, blocks * block_size)),
            _ => None,
        }
    }
}

/// The flags every container of ours gets, step or holder.
fn hardened_host_config(limits: &Limits, runtime: Runtime) -> HostConfig {
    let memory = limits.memory_bytes as i64;
    HostConfig {
        runtime: (runtime != Runtime::Runc).then(|| runtime.as_str().to_string()),
        network_mode: Some("none".to_string()),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some({
            let mut options = vec!["no-new-privileges".to_string()];
            // Under gVisor, calls stop at its own kernel; the profile guards the host's.
            if let Some(profile) = seccomp::profile().filter(|_| runtime == Runtime::Runc) {
                options.push(format!("seccomp={profile}"));
            }
            options
        }),
        memory: Some(memory),
        // Equal to memory: no swap.
        memory_swap: Some(memory),
        nano_cpus: Some((limits.cpus * 1e9) as i64),
        pids_limit: Some(limits.pids),
        ulimits: Some(vec![
            ResourcesUlimits { name: Some("nofile".to_string()), soft: Some(limits.nofile), hard: Some(limits.nofile) },
            // Also bounds sparse files, which take no room in a tmpfs until written.
            ResourcesUlimits { name: Some("fsize".to_string()), soft: Some(limits.file_bytes as i64), hard: Some(limits.file_bytes as i64) },
            ResourcesUlimits { name: Some("core".to_string()), soft: Some(0), hard: Some(0) },
        ]),
        // Scratch space is for data: nothing written there may be executed.
        tmpfs: Some(HashMap::from([("/tmp".to_string(), format!("rw,nosuid,nodev,noexec,size={}", limits.tmp_bytes))])),
        shm_size: Some(64 << 20),
        // A fifth of the default share of disk time (500), so that a step's I/O yields to the
        // host's. Engines whose block I/O controller cannot weigh (cgroup v1 without BFQ, as on
        // this CI machine) discard it with a warning.
        blkio_weight: Some(100),
        ipc_mode: Some("private".to_string()),
        init: Some(true),
        // As `docker run --gpus N`: the engine's GPU driver (the NVIDIA container toolkit) hands
        // the step N devices; with none asked for, none is requested.
        device_requests: (limits.gpus > 0).then(|| {
            let assigned = limits.gpu_devices.len() >= limits.gpus as usize;
            vec![bollard::models::DeviceRequest {
                // As `--gpus '"device=1,3"'` when the worker chose them, else `--gpus N`.
                count: (!assigned).then_some(i64::from(limits.gpus)),
                device_ids: assigned.then(|| limits.gpu_devices.iter().take(limits.gpus as usize).map(u32::to_string).collect()),
                capabilities: Some(vec![vec!["gpu".to_string()]]),
                ..Default::default()
            }]
        }),
        // Logs are read through attach; the engine's own copy is capped so a flood cannot fill the host.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([("max-size".to_string(), "1m".to_string()), ("max-file".to_string(), "1".to_string())])),
        }),
        ..Default::default()
    }
}

fn volume_mount(volume: &str, target: &str) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(volume.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(false),
        // Without nocopy the engine copies the image's (root-owned) folder into the empty volume.
        volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
        ..Default::default()
    }
}

async fn create_container(docker: &Docker, name: &str, config: ContainerCreateBody) -> Result<String, RunError> {
    let options = CreateContainerOptions { name: Some(name.to_string()), ..Default::default() };
    Ok(api("create container", docker.create_container(Some(options), config)).await?.id)
}

async fn remove_container(docker: &Docker, id: &str) -> Result<(), RunError> {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    match api("remove container", docker.remove_container(id, Some(options))).await {
        Ok(()) => Ok(()),
        Err(RunError::Docker { source: bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }, .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

async fn drain_logs(mut output: LogStream, cap: usize, flood_at: u64, flood: Arc<Notify>) -> (CapturedLog, CapturedLog) {
    let (mut stdout, mut stderr) = (CapturedLog::new(cap), CapturedLog::new(cap));
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => stdout.push(&message),
            Ok(LogOutput::StdErr { message }) => stderr.push(&message),
            Ok(LogOutput::StdIn { .. }) => {}
            Err(_) => break,
        }
        if stdout.total_bytes > flood_at || stderr.total_bytes > flood_at {
            flood.notify_one();
        }
    }
    (stdout, stderr)
}

/// What the stats stream has reported so far: CPU nanoseconds and peak memory bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu_nanos: Option<u64>,
    peak_bytes: Option<u64>,
}

/// Samples the container's cgroup through the stats stream (about once a second) into `usage`.
/// The engine does not always end the stream when the container stops, so the caller reads
/// `usage` after the container exits and then drops this task.
async fn sample_stats(docker: Docker, id: String, usage: Arc<Mutex<Usage>>) {
    let mut stream = docker.stats(&id, Some(StatsOptions { stream: true, one_shot: false }));
    while let Some(sample) = stream.next().await {
        let sample = match sample {
            Ok(sample) => sample,
            Err(error) => {
                debug!(container = %short(&id), error = %error, "stats stream ended");
                break;
            }
        };
        let cpu = sample.cpu_stats.and_then(|cpu| cpu.cpu_usage).and_then(|cpu| cpu.total_usage).filter(|&n| n > 0);
        let memory = sample.memory_stats.and_then(|memory| memory.max_usage.or(memory.usage)).filter(|&n| n > 0);
        // std Mutex: held for two assignments, never across an await.
        let mut usage = usage.lock().unwrap();
        if let Some(cpu) = cpu {
            usage.cpu_nanos = Some(usage.cpu_nanos.unwrap_or(0).max(cpu));
        }
        if let Some(memory) = memory {
            usage.peak_bytes = Some(usage.peak_bytes.unwrap_or(0).max(memory));
        }
    }
}

/// A spawned task that is aborted when its handle is dropped, so no task outlives its step.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a job's containers and volumes: explicitly through `clean`, or on drop (error, panic,
/// a future dropped on cancellation) from a thread of its own, so it works inside or outside a runtime.
struct CleanupGuard {
    docker: Docker,
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
}

impl CleanupGuard {
    fn new(docker: Docker) -> CleanupGuard {
        CleanupGuard { docker, containers: Mutex::new(Vec::new()), volumes: Mutex::new(Vec::new()) }
    }
    // std Mutex: held only for a push or a retain, never across an await.
    fn track_container(&self, id: &str) {
        self.containers.lock().unwrap().push(id.to_string());
    }
    fn forget_container(&self, id: &str) {
        self.containers.lock().unwrap().retain(|known| known != id);
    }
    fn track_volume(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_string());
    }

    async fn clean(&self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap());
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap());
        clean_up(&self.docker, containers, volumes).await;
    }
}

async fn clean_up(docker: &Docker, containers: Vec<String>, volumes: Vec<String>) {
    for id in containers {
        if let Err(error) = remove_container(docker, &id).await {
            warn!(container = %short(&id), error = %crate::errors::Chain(&error), "could not remove a container");
        }
    }
    for name in volumes {
        if let Err(error) = api("remove volume", docker.remove_volume(&name, Some(RemoveVolumeOptions { force: true }))).await {
            warn!(volume = %name, error = %crate::errors::Chain(&error), "could not remove a volume");
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|e| e.into_inner()));
        if containers.is_empty() && volumes.is_empty() {
            return;
        }
        let docker = self.docker.clone();
        let cleaner = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(clean_up(&docker, containers, volumes));
        });
        let _ = cleaner.join();
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A short random suffix for container names (two runs of one step must not collide).
pub fn fresh_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
    format!("{:08x}", hasher.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_a_device_request_and_none_are_asked_for_by_default() {
        let mut limits = Limits::new(Duration::from_secs(1), 64 << 20, 1.0);
        assert!(hardened_host_config(&limits, Runtime::Runc).device_requests.is_none());
        limits.gpus = 2;
        let requests = hardened_host_config(&limits, Runtime::Runc).device_requests.expect("a device request");
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].count, Some(2));
        assert_eq!(requests[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        // Devices the worker assigned are asked for by index, not by count.
        limits.gpu_devices = vec![1, 3];
        let requests = hardened_host_config(&limits, Runtime::Runc).device_requests.expect("a device request");
        assert_eq!((requests[0].count, requests[0].device_ids.clone()), (None, Some(vec!["1".to_string(), "3".to_string()])));
    }

    fn owned_by(instance: &str, pid: u32, start: Option<u64>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_JOB.to_string(), "j".to_string()),
            (LABEL_INSTANCE.to_string(), instance.to_string()),
            (LABEL_PID.to_string(), pid.to_string()),
        ]);
        if let Some(start) = start {
            labels.insert(LABEL_PID_START.to_string(), start.to_string());
        }
        labels
    }

    #[test]
    fn leftovers_are_judged_by_instance_never_by_a_pid_alone() {
        let me = std::process::id();
        let (_, my_start) = process_stat(me).expect("our own /proc entry");
        let ours = owned_by(instance_id(), me, Some(my_start));
        // A live process that really is the owner keeps its containers.
        assert!(!Leftovers::OfDeadProcesses.removes(&owned_by("i-other", me, Some(my_start))));
        assert!(!Leftovers::OfDeadProcesses.removes(&ours), "never our own");
        assert!(Leftovers::All.removes(&ours));
        // A stopped worker's own sweep takes its own and leaves every other process's, dead or not.
        assert!(Leftovers::OfThisProcess.removes(&ours));
        assert!(!Leftovers::OfThisProcess.removes(&owned_by("i-gone", u32::MAX - 1, None)));
        assert!(!Leftovers::OfThisProcess.removes(&owned_by("i-other", me, Some(my_start))));
        // A reused PID: the process that runs under it started at another time.
        assert!(Leftovers::OfDeadProcesses.removes(&owned_by("i-old", me, Some(my_start + 1))));
        // A PID that no longer exists.
        assert!(Leftovers::OfDeadProcesses.removes(&owned_by("i-gone", u32::MAX - 1, None)));
        // The store's word wins over the PID: an instance it knows is gone loses its containers
        // even though a live process has its old PID; one it knows is alive keeps them.
        let known = HashMap::from([("i-dead".to_string(), false), ("i-live".to_string(), true)]);
        let by_store = Leftovers::OfDeadInstances(known);
        assert!(by_store.removes(&owned_by("i-dead", me, Some(my_start))));
        assert!(!by_store.removes(&owned_by("i-live", u32::MAX - 1, None)));
        // An instance the store does not know (a `grade` beside us) is judged by its process.
        assert!(!by_store.removes(&owned_by("i-cli", me, Some(my_start))));
        assert!(by_store.removes(&owned_by("i-cli", u32::MAX - 1, None)));
        // Someone's own container of our runner image carries the image's labels only: never ours.
        let image_only = HashMap::from([(LABEL.to_string(), "1".to_string()), (image::RECIPE_LABEL.to_string(), "abc".to_string())]);
        assert!(!Leftovers::All.removes(&image_only) && !by_store.removes(&image_only) && !Leftovers::OfDeadProcesses.removes(&image_only));
    }

    #[test]
    fn a_failure_at_the_memory_limit_is_out_of_memory() {
        let gib = 1u64 << 30;
        assert!(at_memory_limit(Some(gib - (50 << 20)), gib), "a MemoryError 50 MiB short of 1 GiB");
        assert!(!at_memory_limit(Some(gib / 2), gib));
        assert!(!at_memory_limit(None, gib));
        assert!(!at_memory_limit(Some(0), 0));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        // A child that exited and was not waited for is a zombie: its /proc entry remains.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_stat(pid).is_some_and(|(state, _)| state != 'Z') && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(process_stat(pid).map(|(state, _)| state), Some('Z'));
        assert!(!owner_alive(&HashMap::from([(LABEL_PID.to_string(), pid.to_string())])));
        child.wait().unwrap();
    }
}
