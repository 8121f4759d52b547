//! The durable store: assignments, submissions (which are also the job queue), workers, review
//! notes and assessor sessions, behind one async trait with two backends:
//!
//! - [`sqlite`] — the embedded default: one file in WAL mode, one process (`takehome serve`).
//! - [`postgres`] — the shared queue of a fleet: one server and workers on many Docker hosts.
//!
//! Invariants (both backends):
//! - Only this module touches SQL. Every write is one statement or one transaction, so a crash at
//!   any point leaves the old or the new state. Schemas are versioned migrations ([`MIGRATIONS`]
//!   of each backend), applied in order at open and recorded.
//! - A submission is recorded (`queued`) before the push is acknowledged: no accepted push is lost.
//! - A job is claimed by one worker *instance* (an id minted at each start) under a **lease** that
//!   the instance renews while it works. The attempt number is the **fencing token**: a result or
//!   failure is written only while `(status running, instance, attempt)` still match, so a worker
//!   that was cut off and comes back late cannot overwrite the worker that took over
//!   ([`StoreError::Fenced`]). An expired lease puts the job back in the queue (counting the
//!   attempt, as any failure on our side does).
//! - Claim order is fair: fresh pushes before regrades, then the task and the assignment with the
//!   fewest jobs running, then the oldest. A worker claims only jobs that fit it (memory, runtime)
//!   and whose task spec and data set digests equal its own copies'.

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;

use serde::Serialize;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::report::Status as GradeStatus;
pub use crate::task::TaskId;

/// What went wrong in the store. Each variant's message says its own layer; the cause is its
/// `source()` (show one with [`crate::errors::Chain`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL refused a statement, or the connection broke during one.
    #[error("PostgreSQL")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had from the pool.
    #[error("no connection to PostgreSQL")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The store did not answer in time (a hung server, a cut network).
    #[error("the store did not answer within {} ms", .0.as_millis())]
    NoAnswer(std::time::Duration),
    #[error("{0}")]
    NotFound(String),
    /// The claim this write relied on is no longer current (the lease ran out and the job went
    /// to another worker, or it was released).
    #[error("submission {submission}: attempt {attempt} is no longer this worker's (its lease ran out or another worker took the job over)")]
    Fenced { submission: i64, attempt: i64 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Whether the store could not be reached, so that the same call may well work later: no
    /// connection, a connection that broke, no answer in time, or a server that is shutting down
    /// or out of resources. A statement the server refused (a constraint, a type, a syntax error)
    /// is not: trying it again gives the same answer.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::NoAnswer(_) => true,
            StoreError::Postgres(error) => match error.as_db_error() {
                None => true,
                // Connection exceptions (08), insufficient resources (53), operator
                // intervention (57: admin shutdown, crash shutdown, cannot connect now).
                Some(db) => ["08", "53", "57"].iter().any(|class| db.code().code().starts_with(class)),
            },
            _ => false,
        }
    }
}

/// Where a submission is in the job queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Graded,
    /// Our side failed on every attempt: never charged to the candidate.
    InfrastructureError,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Graded => "graded",
            JobStatus::InfrastructureError => "infrastructure_error",
        }
    }
    pub fn parse(text: &str) -> Option<JobStatus> {
        [JobStatus::Queued, JobStatus::Running, JobStatus::Graded, JobStatus::InfrastructureError].into_iter().find(|s| s.as_str() == text)
    }
}

/// When an assignment's clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Starts {
    /// At the candidate's first authenticated read of the repository.
    #[serde(rename = "on-clone")]
    OnClone,
    /// When the assignment is made.
    #[serde(rename = "now")]
    Now,
}

impl Starts {
    pub fn as_str(self) -> &'static str {
        match self {
            Starts::OnClone => "on-clone",
            Starts::Now => "now",
        }
    }
    pub fn parse(text: &str) -> Option<Starts> {
        [Starts::OnClone, Starts::Now].into_iter().find(|s| s.as_str() == text)
    }
}

/// Where an assignment's time box is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// An on-clone assignment nobody has cloned yet.
    NotStarted,
    Running,
    Closed,
}

/// Extra time given to one candidate, with why and by whom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    pub id: i64,
    pub assignment: String,
    pub seconds: i64,
    pub reason: String,
    pub author: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub id: String,
    pub task: TaskId,
    pub candidate: String,
    #[serde(skip)]
    pub token_hash: String,
    pub time_box_seconds: i64,
    pub starts: Starts,
    pub started_at: Option<i64>,
    pub created_at: i64,
    /// Extra time assessors gave this candidate (the sum of its extensions).
    #[serde(default)]
    pub extra_seconds: i64,
}

impl Assignment {
    /// The time box with every extension.
    pub fn total_seconds(&self) -> i64 {
        self.time_box_seconds + self.extra_seconds
    }
    /// The deadline, once the clock has started (extensions included).
    pub fn deadline(&self) -> Option<i64> {
        self.started_at.map(|start| start + self.total_seconds())
    }
    /// Seconds left at `now` (the full time box before the clock starts; 0 after the deadline).
    pub fn seconds_left(&self, now: i64) -> i64 {
        match self.deadline() {
            Some(deadline) => (deadline - now).max(0),
            None => self.total_seconds(),
        }
    }
    pub fn clock(&self, now: i64) -> ClockState {
        match self.deadline() {
            None => ClockState::NotStarted,
            Some(deadline) if now > deadline => ClockState::Closed,
            Some(_) => ClockState::Running,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    pub id: i64,
    pub assignment: String,
    pub task: TaskId,
    pub candidate: String,
    pub number: i64,
    pub commit: String,
    pub pushed_at: i64,
    pub status: JobStatus,
    pub attempts: i64,
    /// The grade's status once graded.
    pub grade_status: Option<GradeStatus>,
    pub score: Option<f64>,
    pub previous_score: Option<f64>,
    pub error: Option<String>,
    pub finished_at: Option<i64>,
    /// The worker instance that holds (or last held) the job.
    pub worker: Option<String>,
    /// Not graded before this time (seconds; 0: as soon as a slot is free): a push beyond the
    /// assignment's graded pushes per hour waits its turn.
    pub run_after: i64,
}

impl Submission {
    /// What a person reads in a status column: the grade's status once graded, else the job's.
    pub fn status_text(&self) -> &'static str {
        match (self.status, self.grade_status) {
            (JobStatus::Graded, Some(grade)) => grade.as_str(),
            (status, _) => status.as_str(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub author: String,
    pub text: String,
    pub created_at: i64,
}

/// What kind of thing an assessor recorded about a candidate's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// A comment on one line of one file of a submission (editable by its author).
    Comment,
    /// One reviewer's rubric scores for a submission (one item per reviewer, edited in place).
    Scores,
    /// A decision (advance, hold, reject) on the assignment; the latest counts, all are kept.
    Decision,
    /// Feedback released to the candidate.
    Release,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Comment => "comment",
            ReviewKind::Scores => "scores",
            ReviewKind::Decision => "decision",
            ReviewKind::Release => "release",
        }
    }
    pub fn parse(text: &str) -> Option<ReviewKind> {
        [ReviewKind::Comment, ReviewKind::Scores, ReviewKind::Decision, ReviewKind::Release].into_iter().find(|k| k.as_str() == text)
    }
}

/// The audit record of an erasure: when, of which task, by whom (an assessor, or `retention`),
/// and how many rows went; never the candidate, the assignment or any of their data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erasure {
    pub task: TaskId,
    pub erased_at: i64,
    pub erased_by: String,
    /// `request` (the candidate asked) or `retention`.
    pub reason: String,
    pub rows: i64,
}

/// Where an assignment's review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ReviewState {
    /// Reviewers who scored the rubric.
    pub scored_by: i64,
    pub decided: bool,
    /// When the decision was last recorded (the retention rule counts from it).
    pub decided_at: Option<i64>,
}

/// One recorded review item; `body` is JSON whose shape is the kind's (see `crate::review`).
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub assignment: String,
    pub submission: i64,
    pub kind: ReviewKind,
    pub author: String,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A report that a regrade replaced, kept as history.
#[derive(Debug, Clone, Serialize)]
pub struct PastReport {
    pub id: i64,
    pub submission: i64,
    pub grade_status: Option<GradeStatus>,
    pub score: Option<f64>,
    pub report: Option<String>,
    /// When it was graded, and when the next grade replaced it.
    pub graded_at: Option<i64>,
    pub replaced_at: i64,
}

/// A webhook delivery waiting in the outbox (or retried).
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub id: i64,
    pub event: String,
    pub body: String,
    pub attempts: i64,
    pub next_at: i64,
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: String,
}

/// An e-mail in the outbox: what it is about (`kind` and `data`), composed when it is sent, to
/// the assignment's contact address.
#[derive(Debug, Clone, Serialize)]
pub struct Email {
    pub id: i64,
    pub assignment: String,
    /// What makes it one message: `invitation:<assignment>`, `reminder:<assignment>:<seconds>`,
    /// `receipt:<submission>`. Queued once; the Message-ID is made from it.
    pub key: String,
    pub kind: EmailKind,
    /// The kind's facts (JSON). An invitation's holds the token until it is sent, then `{}`.
    #[serde(skip)]
    pub data: String,
    /// The contact address (empty in the API's list: see [`Store::emails`]).
    #[serde(skip)]
    pub recipient: String,
    pub created_at: i64,
    pub attempts: i64,
    pub next_at: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub last_error: String,
}

/// What an e-mail tells the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// The assignment: the task, the time box, how to clone, the status page.
    Invitation,
    /// The deadline is near.
    Reminder,
    /// A push was graded (no score).
    Receipt,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::Invitation => "invitation",
            EmailKind::Reminder => "reminder",
            EmailKind::Receipt => "receipt",
        }
    }

    pub fn parse(text: &str) -> Option<EmailKind> {
        [EmailKind::Invitation, EmailKind::Reminder, EmailKind::Receipt].into_iter().find(|k| k.as_str() == text)
    }
}

/// What a job needs of the worker that grades it and of its copies, recorded when it is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNeeds {
    /// Digest of the task folder's spec (task.yaml and the files it names for the run).
    pub spec_digest: String,
    /// Digest of the task's data set folder.
    pub data_digest: String,
    /// The step memory limit: a worker claims only what fits in its free memory.
    pub memory_bytes: i64,
    /// The runtime the task asks for (`runc` or `runsc`).
    pub runtime: String,
    /// The GPUs its steps ask for at most: a worker claims only what its free GPUs fit.
    pub gpus: i64,
}

/// A claim's fencing token: the job, the instance that holds it and the attempt number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub submission: i64,
    pub instance: String,
    pub attempt: i64,
}

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub fence: Fence,
    pub assignment: String,
    pub task: TaskId,
    pub candidate: String,
    pub commit: String,
    /// The submission's number within its assignment (its commit is kept at `refs/takehome/<number>`).
    pub number: i64,
    pub needs: JobNeeds,
}

impl Claimed {
    pub fn submission(&self) -> i64 {
        self.fence.submission
    }
    pub fn attempts(&self) -> i64 {
        self.fence.attempt
    }
}

/// What a worker asks for when it claims.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub instance: String,
    pub now: i64,
    pub lease_seconds: i64,
    /// Memory not yet promised to the instance's running jobs.
    pub free_memory_bytes: i64,
    /// Runtimes the worker's engine has.
    pub runtimes: Vec<String>,
    /// GPUs not yet promised to the instance's running jobs.
    pub free_gpus: i64,
    /// The (task, spec digest, data digest) the worker's own copies have.
    pub copies: Vec<TaskCopy>,
    /// Jobs whose lease ran out this many times are stored as `infrastructure_error` instead.
    pub max_attempts: i64,
}

/// A public dry run taken from the queue: what a worker needs to check the commit out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunClaim {
    pub submission: i64,
    pub assignment: String,
    pub task: TaskId,
    pub commit: String,
}

/// One task as a worker's own copy has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskCopy {
    pub task: TaskId,
    pub spec_digest: String,
    pub data_digest: String,
}

impl TaskCopy {
    /// One text key for the three (tab cannot appear in a task id or a hex digest).
    pub fn key(&self) -> String {
        format!("{}\t{}\t{}", self.task, self.spec_digest, self.data_digest)
    }
}

/// A worker instance as it registers and as the store lists it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    pub instance: String,
    /// The worker's stable name (its host's, by default): a new instance with the same name
    /// replaces the old one.
    pub name: String,
    pub version: String,
    pub slots: i64,
    pub memory_bytes: i64,
    pub runtimes: Vec<String>,
    /// GPUs the worker's host has for steps (0 on most hosts).
    pub gpus: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub lease_until: i64,
    /// Set when it stopped cleanly or was replaced.
    pub stopped_at: Option<i64>,
    /// What keeps it from grading some jobs (for example a data set that differs), or empty.
    pub health: String,
    /// Jobs it holds now.
    pub running: i64,
}

impl WorkerInfo {
    pub fn alive(&self, now: i64) -> bool {
        self.stopped_at.is_none() && self.lease_until >= now
    }
}

/// The store's surface. Every call is async; the SQLite backend runs its statements on the
/// blocking pool, the PostgreSQL backend on a connection pool.
/// What a graded submission was graded with (`Store::graded_provenance`).
#[derive(Debug, Clone, PartialEq)]
pub struct GradedWith {
    pub submission: i64,
    pub assignment: String,
    pub candidate: String,
    pub score: Option<f64>,
    pub task_digest: String,
    pub dataset_digest: String,
    pub image: String,
    /// The report's `methodology` findings as JSON (`[]` when it has none).
    pub methodology: String,
    /// The accuracy's slices as JSON: `{"slices": [...], "outputs": [{"file", "slices"}]}`,
    /// the first for a task's one output, the second for each of several.
    pub slices: String,
    /// The components' scores as JSON: `{"accuracy", "code_quality", "runtime"}` (0–100 each).
    pub components: String,
}

/// What a worker instance answers for now: the graded jobs (submission ids) from the claim's
/// answer until their result is stored or given up, and the public dry runs (submission ids)
/// while they run. Only these are renewed by a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub jobs: Vec<i64>,
    pub dry_runs: Vec<i64>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend, for logs and health (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Starts waking `wake` whenever another process queues a job (PostgreSQL's `LISTEN`); `None`
    /// where jobs are queued only in this process (which wakes its workers itself).
    fn watch(&self, _wake: std::sync::Arc<tokio::sync::Notify>, _shutdown: tokio_util::sync::CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
    /// Database connections this process holds now, where that is a pool.
    fn connections(&self) -> Option<usize> {
        None
    }
    async fn create_assignment(&self, assignment: &Assignment) -> Result<()>;
    async fn assignment(&self, id: &str) -> Result<Option<Assignment>>;
    async fn assignments(&self) -> Result<Vec<Assignment>>;
    /// Starts the clock if it has not started; returns the assignment as it now is.
    async fn start_clock(&self, id: &str, now: i64) -> Result<Assignment>;
    /// Records an accepted push as a queued submission; returns (submission id, number, queue
    /// position, graded from). With `per_hour` above 0, at most that many of the assignment's pushes
    /// are graded in any hour: a push past it is kept, queued, and graded from the time its turn
    /// comes (returned; 0 when at once). What a candidate can learn per hour is bounded so
    /// (docs/security.md, section 7).
    async fn add_submission(&self, assignment: &str, commit: &str, needs: &JobNeeds, now: i64, per_hour: i64) -> Result<(i64, i64, i64, i64)>;
    /// Claims the next job that fits (see the module's docs), if any.
    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Claimed>>;
    /// Stores a report while `fence` is current; a report it replaces (a regrade) is kept in
    /// the history.
    /// With `queue_dry_run`, the submission's public dry run is queued in the same transaction
    /// (a low-priority queue of its own: a graded report never exists without its dry run waiting
    /// or done, whatever stops when).
    async fn finish(&self, fence: &Fence, grade_status: GradeStatus, score: f64, report_json: &str, now: i64, queue_dry_run: bool) -> Result<()>;
    /// Takes the oldest waiting public dry run of a task in `tasks` under a lease of
    /// `lease_seconds` (renewed by [`Store::heartbeat`] like a job's); one whose lease ran out is
    /// waiting again. Dry runs go only where no graded job waits: the caller asks when its claim
    /// for graded work found none.
    async fn claim_dry_run(&self, instance: &str, tasks: &[TaskId], now: i64, lease_seconds: i64) -> Result<Option<DryRunClaim>>;
    /// Gives a dry run back, first in line again (stopped for graded work, or by shutdown).
    async fn release_dry_run(&self, submission: i64, instance: &str) -> Result<()>;
    /// How many public dry runs wait or run.
    async fn dry_runs_waiting(&self) -> Result<i64>;
    /// A failure on our side, while `fence` is current: back to the queue after `retry_at`, or
    /// `infrastructure_error` when `None`.
    async fn fail(&self, fence: &Fence, error: &str, retry_at: Option<i64>, now: i64) -> Result<()>;
    /// Gives a job back untouched (the worker is stopping): queued again, the attempt not counted.
    async fn release(&self, fence: &Fence) -> Result<()>;
    /// Registers a worker instance (its lease starts now). Instances of the same name that were
    /// not stopped are dead predecessors: they are marked stopped and their jobs queued again.
    /// Returns the instance ids it replaced.
    async fn register_worker(&self, worker: &WorkerInfo) -> Result<Vec<String>>;
    /// Renews the instance's lease and the leases of the jobs and dry runs in `holding` that it
    /// still holds, and records its health; returns the ids of the jobs it still holds (any other
    /// it runs was taken from it), or `None` when the instance was stopped or replaced (it must
    /// stop working). A job the store gives this instance but `holding` lacks (a claim whose
    /// answer was lost, a result that could not be stored) is not renewed: its lease runs out and
    /// it is claimed again, as a dead worker's is.
    async fn heartbeat(&self, instance: &str, now: i64, lease_seconds: i64, health: &str, holding: &Holding) -> Result<Option<Vec<i64>>>;
    /// A clean stop: gives back the instance's jobs and marks it stopped.
    async fn stop_worker(&self, instance: &str, now: i64) -> Result<usize>;
    /// Every worker instance seen, the live ones first.
    async fn workers(&self) -> Result<Vec<WorkerInfo>>;
    /// The (task, spec, data) digests of queued jobs that no copy in `copies` matches (for health).
    async fn unmatched_queued(&self, copies: &[TaskCopy]) -> Result<Vec<TaskCopy>>;
    /// Puts every running job back in the queue and marks every instance stopped: only for a
    /// single-process store at start-up (the one process that could hold them is gone).
    async fn requeue_all_running(&self) -> Result<usize>;
    async fn submission(&self, id: i64) -> Result<Option<(Submission, Option<String>)>>;
    async fn submissions(&self, assignment: Option<&str>, task: Option<&TaskId>) -> Result<Vec<Submission>>;
    /// The newest `limit` submissions (the dashboard's list), newest first.
    async fn recent_submissions(&self, limit: i64) -> Result<Vec<Submission>>;
    /// How many submissions each assignment has.
    async fn submission_counts(&self) -> Result<HashMap<String, i64>>;
    /// What each graded submission of `task` was graded with, read from its stored report in
    /// one query (the database extracts the fields; no report leaves it whole).
    async fn graded_provenance(&self, task: &TaskId) -> Result<Vec<GradedWith>>;
    /// Queues graded submissions again (one, or every one of a task), keeping the old score; the
    /// digests are those of the copies now (a regrade on changed data is this explicit act).
    /// `needs` holds each task's needs now, by task id; a task not in it keeps what it had.
    async fn regrade(&self, submission: Option<i64>, task: Option<&TaskId>, needs: &HashMap<TaskId, JobNeeds>) -> Result<usize>;
    async fn add_note(&self, submission: i64, author: &str, text: &str, now: i64) -> Result<()>;
    async fn notes(&self, submission: i64) -> Result<Vec<Note>>;
    /// The reports that regrades replaced, oldest first (the current one is the submission's).
    async fn report_history(&self, submission: i64) -> Result<Vec<PastReport>>;
    /// Stores (or replaces) the result of a submission's public dry run (JSON, `job::PublicRun`)
    /// and takes it off the dry-run queue.
    async fn set_public_run(&self, submission: i64, body: &str, now: i64) -> Result<()>;
    /// A submission's public dry run, if one ran.
    async fn public_run(&self, submission: i64) -> Result<Option<String>>;
    /// Records an extension of a candidate's time box; returns its id.
    async fn add_extension(&self, assignment: &str, seconds: i64, reason: &str, author: &str, now: i64) -> Result<i64>;
    /// An assignment's extensions, oldest first.
    async fn extensions(&self, assignment: &str) -> Result<Vec<Extension>>;
    /// Records which push the candidate chose as final (replacing an earlier choice).
    async fn choose_final(&self, assignment: &str, submission: i64, now: i64) -> Result<()>;
    /// The candidate's choice of final push and when it was made, if any.
    async fn final_choice(&self, assignment: &str) -> Result<Option<(i64, i64)>>;
    /// Records a review item; returns its id.
    async fn add_review(&self, assignment: &str, submission: i64, kind: ReviewKind, author: &str, body: &str, now: i64) -> Result<i64>;
    /// Replaces an item's body, only where `author` wrote it; false when there is no such item of theirs.
    async fn edit_review(&self, id: i64, author: &str, body: &str, now: i64) -> Result<bool>;
    /// The review items of one assignment, or of all, oldest first.
    async fn reviews(&self, assignment: Option<&str>) -> Result<Vec<ReviewItem>>;
    /// One review item by its id.
    async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>>;
    /// Deletes everything held about assignment `id` — the assignment, its submissions and their
    /// reports, report history, public runs, notes, review items, extensions, final choice and
    /// the webhook deliveries that name it — in one transaction, and records `erasure` (which
    /// holds nothing personal). Returns the submissions' ids (their files go too) and the count
    /// of rows deleted; `NotFound` when there is no such assignment.
    async fn erase_assignment(&self, id: &str, erasure: &Erasure) -> Result<(Vec<i64>, i64)>;
    /// The erasures recorded, newest first.
    async fn erasures(&self) -> Result<Vec<Erasure>>;
    /// The review items of every assignment of `task`, oldest first (one query: what the
    /// comparison shows).
    async fn task_reviews(&self, task: &TaskId) -> Result<Vec<ReviewItem>>;
    /// Where each reviewed assignment stands, in one query (the dashboard's column): how many
    /// reviewers scored it, and whether a decision was recorded. Assignments with no review item
    /// are not in it.
    async fn review_states(&self) -> Result<HashMap<String, ReviewState>>;
    /// Puts a webhook delivery in the outbox (sent by the server's deliverer, retried with backoff).
    async fn queue_webhook(&self, event: &str, body: &str, now: i64) -> Result<i64>;
    /// Deliveries due at `now` (neither delivered nor given up), oldest first.
    async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<Webhook>>;
    /// Records an attempt: delivered, or failed with `error` and tried again at `retry_at`
    /// (`None`: given up).
    async fn webhook_attempted(&self, id: i64, delivered: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()>;
    /// The latest deliveries, newest first.
    async fn webhooks(&self, limit: i64) -> Result<Vec<Webhook>>;
    /// Records where an assignment's e-mails go (its invitation, reminders and receipts).
    async fn set_contact(&self, assignment: &str, email: &str) -> Result<()>;
    /// Every assignment's contact address.
    async fn contacts(&self) -> Result<HashMap<String, String>>;
    /// Puts an e-mail in the outbox when the assignment has a contact address and nothing was
    /// queued under `key` before; true when it was queued.
    async fn queue_email(&self, assignment: &str, key: &str, kind: EmailKind, data: &str, now: i64) -> Result<bool>;
    /// E-mails due at `now` (neither sent nor given up), oldest first, with their recipients.
    async fn due_emails(&self, now: i64, limit: i64) -> Result<Vec<Email>>;
    /// Records an attempt: sent (its data is emptied: an invitation's token goes), or failed with
    /// `error` and tried again at `retry_at` (`None`: given up).
    async fn email_attempted(&self, id: i64, sent: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()>;
    /// The latest e-mails, newest first, without their data or recipients.
    async fn emails(&self, limit: i64) -> Result<Vec<Email>>;
    /// The newest submission id of `task` and how many it has: what changes when a push arrives
    /// or an assignment is erased (the similarity view's results are kept until it does).
    async fn task_version(&self, task: &TaskId) -> Result<(i64, i64)>;
    /// (status text, count) over all submissions.
    async fn counts(&self) -> Result<Vec<(String, i64)>>;
    /// Records an assessor's login session (only the token's hash is stored).
    async fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The user of a session that has not expired (expired sessions are deleted on the way).
    async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Ends every session of `user` ("log out everywhere"); returns how many.
    async fn delete_sessions_of(&self, user: &str) -> Result<usize>;
}

/// A grade status as the store keeps it.
pub(crate) fn parse_grade(text: &str) -> Option<GradeStatus> {
    [GradeStatus::Graded, GradeStatus::StepFailed, GradeStatus::BadOutput, GradeStatus::Rejected].into_iter().find(|s| s.as_str() == text)
}

/// Where the store lives: `sqlite:PATH` (the default, under the data folder) or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// A `database` setting that names no store (its password, if any, hidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDatabaseUrl {
    #[error("sqlite: needs a file path (sqlite:/var/lib/takehome/takehome.sqlite)")]
    NoPath,
    #[error("{0:?} is not a database URL (expected sqlite:PATH or postgres://USER@HOST:PORT/DB)")]
    Scheme(String),
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> std::result::Result<DatabaseUrl, BadDatabaseUrl> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BadDatabaseUrl::NoPath);
            }
            return Ok(DatabaseUrl::Sqlite(path.into()));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(text.to_string()));
        }
        Err(BadDatabaseUrl::Scheme(redact(text)))
    }

    /// The URL with any password hidden, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseUrl::Postgres(url) => redact(url),
        }
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Opens the store a URL names, applying migrations.
pub async fn open(url: &DatabaseUrl) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => {
            let path = path.clone();
            std::sync::Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await.map_err(|e| StoreError::Invalid(e.to_string()))??)
        }
        DatabaseUrl::Postgres(url) => std::sync::Arc::new(PostgresStore::connect(url).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_store_is_worth_trying_again_and_each_layer_is_said_once() {
        let closed = StoreError::Pool(deadpool_postgres::PoolError::Closed);
        assert!(closed.is_unreachable());
        assert!(StoreError::NoAnswer(std::time::Duration::from_secs(10)).is_unreachable());
        assert!(!StoreError::Fenced { submission: 1, attempt: 2 }.is_unreachable());
        assert!(!StoreError::Invalid("a constraint".into()).is_unreachable());
        let sql = StoreError::Sql(rusqlite::Error::InvalidQuery);
        assert!(!sql.is_unreachable());
        assert_eq!(crate::errors::chain(&closed), "no connection to PostgreSQL: Pool has been closed");
        assert_eq!(crate::errors::chain(&sql), "SQLite: Query is not read-only");
    }

    #[test]
    fn database_urls_parse_and_hide_passwords() {
        assert_eq!(DatabaseUrl::parse("sqlite:/tmp/x.sqlite").unwrap(), DatabaseUrl::Sqlite("/tmp/x.sqlite".into()));
        assert_eq!(DatabaseUrl::parse("sqlite://rel/x.sqlite").unwrap(), DatabaseUrl::Sqlite("rel/x.sqlite".into()));
        let pg = DatabaseUrl::parse("postgres://takehome:s3cret@10.0.0.1:5432/takehome").unwrap();
        assert_eq!(pg.describe(), "postgres://takehome:***@10.0.0.1:5432/takehome");
        let error = DatabaseUrl::parse("mysql://u:pw@h/db").unwrap_err().to_string();
        assert!(error.contains("sqlite:PATH") && !error.contains("pw"), "{error}");
    }
}
