//! The shared backend: PostgreSQL, for a server and workers on many hosts.
//!
//! tokio-postgres behind a deadpool pool; every call has a time limit ([`CALL_TIMEOUT`]), so a
//! partitioned host fails fast instead of hanging, and a connection that broke (a restarted
//! server) is dropped by the pool and a new one made on the next call: workers reconnect on their
//! own. Claims lock their row with `FOR UPDATE SKIP LOCKED`, so workers never wait on each other
//! or get the same job. A queued job sends `NOTIFY takehome_jobs` (delivered at commit); workers
//! `LISTEN` on one connection of their own ([`PostgresStore::watch`]).
//! Migrations are numbered, recorded in `takehome_schema`, and applied under an advisory lock so
//! that processes starting together do not race.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tokio_util::sync::CancellationToken;

use super::*;

/// The most one store call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The channel a queued job is announced on.
pub const CHANNEL: &str = "takehome_jobs";
/// Connections a process keeps at most (the listener's is one more).
pub const POOL_SIZE: usize = 4;

/// Entry `n` brings the schema from version `n` to `n + 1`. Never edit a shipped entry: add one.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE assignments (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    candidate TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    time_box_seconds BIGINT NOT NULL,
    starts TEXT NOT NULL,
    started_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE submissions (
    id BIGSERIAL PRIMARY KEY,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    task TEXT NOT NULL,
    number BIGINT NOT NULL,
    commit_sha TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    run_after BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT,
    finished_at BIGINT,
    grade_status TEXT,
    score DOUBLE PRECISION,
    previous_score DOUBLE PRECISION,
    report TEXT,
    error TEXT,
    spec_digest TEXT NOT NULL DEFAULT '',
    data_digest TEXT NOT NULL DEFAULT '',
    memory_bytes BIGINT NOT NULL DEFAULT 0,
    runtime TEXT NOT NULL DEFAULT 'runc',
    UNIQUE (assignment, number)
);
CREATE INDEX submissions_queue ON submissions (status, run_after, id);
CREATE INDEX submissions_worker ON submissions (worker, status);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE TABLE notes (
    id BIGSERIAL PRIMARY KEY,
    submission BIGINT NOT NULL REFERENCES submissions(id),
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE workers (
    instance TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    slots BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    runtimes TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    stopped_at BIGINT,
    health TEXT NOT NULL DEFAULT ''
);
CREATE INDEX workers_name ON workers (name);
",
    "
CREATE TABLE reviews (
    id BIGSERIAL PRIMARY KEY,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    submission BIGINT NOT NULL,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reviews_assignment ON reviews (assignment, id);
CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_due ON webhooks (delivered_at, failed_at, next_at);
",
    "
CREATE TABLE report_history (
    id BIGSERIAL PRIMARY KEY,
    submission BIGINT NOT NULL REFERENCES submissions(id),
    grade_status TEXT,
    score DOUBLE PRECISION,
    report TEXT,
    graded_at BIGINT,
    replaced_at BIGINT NOT NULL
);
CREATE INDEX report_history_submission ON report_history (submission, id);
",
    "
CREATE TABLE public_runs (
    submission BIGINT PRIMARY KEY REFERENCES submissions(id),
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE extensions (
    id BIGSERIAL PRIMARY KEY,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    seconds BIGINT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX extensions_assignment ON extensions (assignment, id);
CREATE TABLE final_choices (
    assignment TEXT PRIMARY KEY REFERENCES assignments(id),
    submission BIGINT NOT NULL REFERENCES submissions(id),
    chosen_at BIGINT NOT NULL
);
",
    "
CREATE TABLE dry_runs (
    submission BIGINT PRIMARY KEY REFERENCES submissions(id),
    queued_at BIGINT NOT NULL,
    worker TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX dry_runs_order ON dry_runs (queued_at, submission);
",
    "
ALTER TABLE submissions ADD COLUMN gpus BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN gpus BIGINT NOT NULL DEFAULT 0;
",
    // 8: erasures (the audit record: nothing personal).
    "
CREATE TABLE erasures (
    id BIGSERIAL PRIMARY KEY,
    task TEXT NOT NULL,
    erased_at BIGINT NOT NULL,
    erased_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    rows BIGINT NOT NULL
);
",
    // 9: e-mail to candidates: where it goes, and the outbox (one row per message key).
    "
CREATE TABLE contacts (
    assignment TEXT PRIMARY KEY REFERENCES assignments(id),
    email TEXT NOT NULL
);
CREATE TABLE emails (
    id BIGSERIAL PRIMARY KEY,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    sent_at BIGINT,
    failed_at BIGINT,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX emails_due ON emails (sent_at, failed_at, next_at);
CREATE INDEX submissions_task ON submissions (task, id);
",
];

/// A review item from `SELECT id, assignment, submission, kind, author, body, created_at, updated_at`.
/// A task id is stored as its text, and read back only if it still is one.
impl ToSql for TaskId {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }
    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for TaskId {
    fn from_sql(ty: &tokio_postgres::types::Type, raw: &'a [u8]) -> std::result::Result<TaskId, Box<dyn std::error::Error + Sync + Send>> {
        Ok(TaskId::parse(<&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?)?)
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

fn review_row(r: &Row) -> Result<ReviewItem> {
    let kind: String = r.try_get(3)?;
    Ok(ReviewItem {
        id: r.try_get(0)?,
        assignment: r.try_get(1)?,
        submission: r.try_get(2)?,
        kind: ReviewKind::parse(&kind).ok_or_else(|| StoreError::Invalid(format!("reviews.kind: unexpected value {kind:?}")))?,
        author: r.try_get(4)?,
        body: r.try_get(5)?,
        created_at: r.try_get(6)?,
        updated_at: r.try_get(7)?,
    })
}

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
}

/// Runs `f` within [`CALL_TIMEOUT`].
async fn timed<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CALL_TIMEOUT, f).await.map_err(|_| StoreError::NoAnswer(CALL_TIMEOUT))?
}

const WEBHOOK_COLUMNS: &str = "id, event, body, attempts, next_at, delivered_at, failed_at, last_error";

const EMAIL_COLUMNS: &str =
    "e.id, e.assignment, e.key, e.kind, e.data, COALESCE(c.email, ''), e.created_at, e.attempts, e.next_at, e.sent_at, e.failed_at, e.last_error";

fn email_row(r: &Row) -> Result<Email> {
    let kind: String = r.try_get(3)?;
    Ok(Email {
        id: r.try_get(0)?,
        assignment: r.try_get(1)?,
        key: r.try_get(2)?,
        kind: EmailKind::parse(&kind).ok_or_else(|| StoreError::Invalid(format!("emails.kind: {kind:?} is not a kind of e-mail")))?,
        data: r.try_get(4)?,
        recipient: r.try_get(5)?,
        created_at: r.try_get(6)?,
        attempts: r.try_get(7)?,
        next_at: r.try_get(8)?,
        sent_at: r.try_get(9)?,
        failed_at: r.try_get(10)?,
        last_error: r.try_get(11)?,
    })
}

fn webhook_row(r: &Row) -> Result<Webhook> {
    Ok(Webhook {
        id: r.try_get(0)?,
        event: r.try_get(1)?,
        body: r.try_get(2)?,
        attempts: r.try_get(3)?,
        next_at: r.try_get(4)?,
        delivered_at: r.try_get(5)?,
        failed_at: r.try_get(6)?,
        last_error: r.try_get(7)?,
    })
}

const SUBMISSION_COLUMNS: &str = "s.id, s.assignment, s.task, a.candidate, s.number, s.commit_sha, s.pushed_at, s.status, s.attempts, \
     s.grade_status, s.score, s.previous_score, s.error, s.finished_at, s.worker, s.run_after";

fn submission_row(row: &Row) -> Result<Submission> {
    let status: String = row.try_get(7)?;
    let grade: Option<String> = row.try_get(9)?;
    Ok(Submission {
        id: row.try_get(0)?,
        assignment: row.try_get(1)?,
        task: row.try_get(2)?,
        candidate: row.try_get(3)?,
        number: row.try_get(4)?,
        commit: row.try_get(5)?,
        pushed_at: row.try_get(6)?,
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Invalid(format!("unexpected job status {status:?}")))?,
        attempts: row.try_get(8)?,
        grade_status: grade.map(|g| super::parse_grade(&g).ok_or_else(|| StoreError::Invalid(format!("unexpected grade status {g:?}")))).transpose()?,
        score: row.try_get(10)?,
        previous_score: row.try_get(11)?,
        error: row.try_get(12)?,
        finished_at: row.try_get(13)?,
        worker: row.try_get(14)?,
        run_after: row.try_get(15)?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, candidate, token_hash, time_box_seconds, starts, started_at, created_at";
/// The columns read back: the stored ones and the sum of the assignment's extensions.
const ASSIGNMENT_SELECT: &str = "id, task, candidate, token_hash, time_box_seconds, starts, started_at, created_at, \
     (SELECT COALESCE(SUM(e.seconds), 0)::BIGINT FROM extensions e WHERE e.assignment = assignments.id)";

fn assignment_row(row: &Row) -> Result<Assignment> {
    let starts: String = row.try_get(5)?;
    Ok(Assignment {
        id: row.try_get(0)?,
        task: row.try_get(1)?,
        candidate: row.try_get(2)?,
        token_hash: row.try_get(3)?,
        time_box_seconds: row.try_get(4)?,
        starts: super::Starts::parse(&starts).ok_or_else(|| StoreError::Invalid(format!("unexpected clock start {starts:?}")))?,
        started_at: row.try_get(6)?,
        created_at: row.try_get(7)?,
        extra_seconds: row.try_get(8)?,
    })
}

const WORKER_COLUMNS: &str = "w.instance, w.name, w.version, w.slots, w.memory_bytes, w.runtimes, w.started_at, w.heartbeat_at, w.lease_until, \
     w.stopped_at, w.health, (SELECT COUNT(*) FROM submissions s WHERE s.status = 'running' AND s.worker = w.instance), w.gpus";

fn worker_row(row: &Row) -> Result<WorkerInfo> {
    let runtimes: String = row.try_get(5)?;
    Ok(WorkerInfo {
        instance: row.try_get(0)?,
        name: row.try_get(1)?,
        version: row.try_get(2)?,
        slots: row.try_get(3)?,
        memory_bytes: row.try_get(4)?,
        runtimes: runtimes.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect(),
        started_at: row.try_get(6)?,
        heartbeat_at: row.try_get(7)?,
        lease_until: row.try_get(8)?,
        stopped_at: row.try_get(9)?,
        health: row.try_get(10)?,
        running: row.try_get(11)?,
        gpus: row.try_get(12)?,
    })
}

/// The fencing condition: $1 submission, $2 instance, $3 attempt.
const FENCED: &str = "id = $1 AND status = 'running' AND worker = $2 AND attempts = $3";

fn fenced(changed: u64, fence: &Fence) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced { submission: fence.submission, attempt: fence.attempt })
    }
}

impl PostgresStore {
    /// Connects (a pool of [`POOL_SIZE`]) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Invalid(format!("the database URL: {e}")))?;
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("takehome");
        }
        let manager = Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Invalid(format!("connection pool: {e}")))?;
        let store = PostgresStore { pool, config };
        timed(store.migrate()).await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        // One process migrates at a time; the others wait here, then find nothing to do.
        transaction.execute("SELECT pg_advisory_xact_lock(7263011)", &[]).await?;
        transaction.batch_execute("CREATE TABLE IF NOT EXISTS takehome_schema (version BIGINT NOT NULL)").await?;
        let version: i64 = transaction.query_one("SELECT COALESCE(MAX(version), 0) FROM takehome_schema", &[]).await?.try_get(0)?;
        if version as usize > MIGRATIONS.len() {
            return Err(StoreError::Invalid(format!(
                "the database is at schema version {version}, newer than this takehome knows ({}): run a newer takehome",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            transaction.batch_execute(migration).await?;
            transaction.execute("INSERT INTO takehome_schema (version) VALUES ($1)", &[&((index + 1) as i64)]).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        timed(async { Ok(self.pool.get().await?.query_one("SELECT MAX(version) FROM takehome_schema", &[]).await?.try_get(0)?) }).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        timed(async { Ok(self.pool.get().await?.execute(sql, params).await?) }).await
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        timed(async { Ok(self.pool.get().await?.query(sql, params).await?) }).await
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        timed(async { Ok(self.pool.get().await?.query_opt(sql, params).await?) }).await
    }

    /// Connections open in the pool now (for `/metrics` and the benchmark).
    pub fn connections(&self) -> usize {
        self.pool.status().size
    }
}

/// Announces queued jobs to listening workers (delivered when the transaction commits).
const NOTIFY: &str = "NOTIFY takehome_jobs";

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn watch(&self, wake: Arc<Notify>, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        Some(tokio::spawn(listen(self.config.clone(), wake, shutdown)))
    }

    fn connections(&self) -> Option<usize> {
        Some(PostgresStore::connections(self))
    }

    async fn create_assignment(&self, a: &Assignment) -> Result<()> {
        self.execute(
            &format!("INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[&a.id, &a.task, &a.candidate, &a.token_hash, &a.time_box_seconds, &a.starts.as_str(), &a.started_at, &a.created_at],
        )
        .await
        .map(|_| ())
    }

    async fn assignment(&self, id: &str) -> Result<Option<Assignment>> {
        self.query_opt(&format!("SELECT {ASSIGNMENT_SELECT} FROM assignments WHERE id = $1"), &[&id]).await?.as_ref().map(assignment_row).transpose()
    }

    async fn assignments(&self) -> Result<Vec<Assignment>> {
        self.query(&format!("SELECT {ASSIGNMENT_SELECT} FROM assignments ORDER BY created_at DESC, id"), &[]).await?.iter().map(assignment_row).collect()
    }

    async fn start_clock(&self, id: &str, now: i64) -> Result<Assignment> {
        self.execute("UPDATE assignments SET started_at = $2 WHERE id = $1 AND started_at IS NULL", &[&id, &now]).await?;
        self.assignment(id).await?.ok_or_else(|| StoreError::NotFound(format!("no assignment {id}")))
    }

    async fn add_submission(&self, assignment: &str, commit: &str, needs: &JobNeeds, now: i64, per_hour: i64) -> Result<(i64, i64, i64, i64)> {
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            // Numbers are per assignment: lock the assignment's row so that two pushes number in turn.
            let task: String = transaction.query_one("SELECT task FROM assignments WHERE id = $1 FOR UPDATE", &[&assignment]).await?.try_get(0)?;
            let number: i64 =
                transaction.query_one("SELECT COALESCE(MAX(number), 0) + 1 FROM submissions WHERE assignment = $1", &[&assignment]).await?.try_get(0)?;
            // The per_hour-th latest time a push of this assignment is graded from (the row lock
            // above keeps two pushes from taking the same turn): one hour after it, the next may be.
            let turn: Option<i64> = if per_hour > 0 {
                transaction
                    .query_opt(
                        "SELECT GREATEST(pushed_at, run_after) AS at FROM submissions WHERE assignment = $1 AND kind = 0 ORDER BY at DESC LIMIT 1 OFFSET $2",
                        &[&assignment, &(per_hour - 1)],
                    )
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?
            } else {
                None
            };
            let graded_from = turn.map(|at| at + 3600).filter(|&at| at > now).unwrap_or(0);
            let id: i64 = transaction
                .query_one(
                    "INSERT INTO submissions (assignment, task, number, commit_sha, pushed_at, status, kind, spec_digest, data_digest, memory_bytes, runtime, run_after, gpus) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $7, $8, $9, $10, $11) RETURNING id",
                    &[&assignment, &task, &number, &commit, &now, &needs.spec_digest, &needs.data_digest, &needs.memory_bytes, &needs.runtime, &graded_from, &needs.gpus],
                )
                .await?
                .try_get(0)?;
            let position: i64 =
                transaction.query_one("SELECT COUNT(*) FROM submissions WHERE status IN ('queued', 'running') AND id <= $1", &[&id]).await?.try_get(0)?;
            transaction.batch_execute(NOTIFY).await?;
            transaction.commit().await?;
            Ok((id, number, position, graded_from))
        })
        .await
    }

    async fn claim(&self, r: &ClaimRequest) -> Result<Option<Claimed>> {
        let copies: Vec<String> = r.copies.iter().map(TaskCopy::key).collect();
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            transaction
                .execute(
                    "UPDATE submissions SET status = 'infrastructure_error', finished_at = $1, worker = NULL, lease_until = 0, \
                     error = 'its worker stopped answering on every attempt (' || attempts || ')' \
                     WHERE attempts >= $2 AND ((status = 'running' AND lease_until < $1) OR status = 'queued')",
                    &[&r.now, &r.max_attempts],
                )
                .await?;
            let row = transaction
                .query_opt(
                    "WITH next AS (SELECT s.id FROM submissions s \
                        WHERE ((s.status = 'queued' AND s.run_after <= $2) OR (s.status = 'running' AND s.lease_until < $2)) \
                          AND s.memory_bytes <= $4 AND s.gpus <= $7 AND s.runtime = ANY($5) \
                          AND (s.spec_digest = '' OR s.task || chr(9) || s.spec_digest || chr(9) || s.data_digest = ANY($6)) \
                        ORDER BY s.kind, \
                          (SELECT COUNT(*) FROM submissions r WHERE r.status = 'running' AND r.lease_until >= $2 AND r.task = s.task), \
                          (SELECT COUNT(*) FROM submissions r WHERE r.status = 'running' AND r.lease_until >= $2 AND r.assignment = s.assignment), \
                          s.id \
                        LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     UPDATE submissions SET status = 'running', worker = $1, started_at = $2, lease_until = $2::BIGINT + $3::BIGINT, attempts = attempts + 1 \
                     FROM next WHERE submissions.id = next.id \
                     RETURNING submissions.id, submissions.assignment, submissions.task, submissions.commit_sha, submissions.attempts, \
                       submissions.number, submissions.spec_digest, submissions.data_digest, submissions.memory_bytes, submissions.runtime, \
                       (SELECT candidate FROM assignments WHERE assignments.id = submissions.assignment), submissions.gpus",
                    &[&r.instance, &r.now, &r.lease_seconds, &r.free_memory_bytes, &r.runtimes, &copies, &r.free_gpus],
                )
                .await?;
            transaction.commit().await?;
            row.map(|row| {
                Ok(Claimed {
                    fence: Fence { submission: row.try_get(0)?, instance: r.instance.clone(), attempt: row.try_get(4)? },
                    assignment: row.try_get(1)?,
                    task: row.try_get(2)?,
                    commit: row.try_get(3)?,
                    number: row.try_get(5)?,
                    needs: JobNeeds {
                        spec_digest: row.try_get(6)?,
                        data_digest: row.try_get(7)?,
                        memory_bytes: row.try_get(8)?,
                        runtime: row.try_get(9)?,
                        gpus: row.try_get(11)?,
                    },
                    candidate: row.try_get(10)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn finish(&self, f: &Fence, grade_status: GradeStatus, score: f64, report_json: &str, now: i64, queue_dry_run: bool) -> Result<()> {
        // One statement: the old report kept, the new one stored (fenced), the dry run queued.
        let row = self
            .query_opt(
                &format!(
                    "WITH kept AS (INSERT INTO report_history (submission, grade_status, score, report, graded_at, replaced_at) \
                     SELECT id, grade_status, score, report, finished_at, $7 FROM submissions WHERE {FENCED} AND report IS NOT NULL), \
                     updated AS (UPDATE submissions SET status = 'graded', grade_status = $4, score = $5, report = $6, finished_at = $7, error = NULL, lease_until = 0 \
                     WHERE {FENCED} RETURNING id), \
                     queued AS (INSERT INTO dry_runs (submission, queued_at) SELECT id, $7 FROM updated WHERE $8 \
                     ON CONFLICT (submission) DO UPDATE SET queued_at = excluded.queued_at, worker = NULL, lease_until = 0) \
                     SELECT count(*) FROM updated"
                ),
                &[&f.submission, &f.instance, &f.attempt, &grade_status.as_str(), &score, &report_json, &now, &queue_dry_run],
            )
            .await?;
        let changed: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        fenced(changed as u64, f)
    }

    async fn fail(&self, f: &Fence, error: &str, retry_at: Option<i64>, now: i64) -> Result<()> {
        let changed = match retry_at {
            Some(at) => {
                self.execute(
                    &format!("UPDATE submissions SET status = 'queued', run_after = $4, error = $5, worker = NULL, lease_until = 0 WHERE {FENCED}"),
                    &[&f.submission, &f.instance, &f.attempt, &at, &error],
                )
                .await?
            }
            None => {
                self.execute(
                    &format!("UPDATE submissions SET status = 'infrastructure_error', error = $4, finished_at = $5, lease_until = 0 WHERE {FENCED}"),
                    &[&f.submission, &f.instance, &f.attempt, &error, &now],
                )
                .await?
            }
        };
        fenced(changed, f)
    }

    async fn release(&self, f: &Fence) -> Result<()> {
        let changed = timed(async {
            let client = self.pool.get().await?;
            let changed = client
                .execute(
                    &format!(
                        "UPDATE submissions SET status = 'queued', run_after = 0, attempts = GREATEST(attempts - 1, 0), worker = NULL, lease_until = 0 WHERE {FENCED}"
                    ),
                    &[&f.submission, &f.instance, &f.attempt],
                )
                .await?;
            client.batch_execute(NOTIFY).await?;
            Ok(changed)
        })
        .await?;
        fenced(changed, f)
    }

    async fn register_worker(&self, w: &WorkerInfo) -> Result<Vec<String>> {
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let replaced: Vec<String> = transaction
                .query(
                    "UPDATE workers SET stopped_at = $3 WHERE name = $1 AND stopped_at IS NULL AND instance <> $2 RETURNING instance",
                    &[&w.name, &w.instance, &w.started_at],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            if !replaced.is_empty() {
                transaction
                    .execute(
                        "UPDATE submissions SET status = 'queued', run_after = 0, worker = NULL, lease_until = 0 WHERE status = 'running' AND worker = ANY($1)",
                        &[&replaced],
                    )
                    .await?;
                transaction.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE worker = ANY($1)", &[&replaced]).await?;
                transaction.batch_execute(NOTIFY).await?;
            }
            transaction
                .execute(
                    "INSERT INTO workers (instance, name, version, slots, memory_bytes, runtimes, started_at, heartbeat_at, lease_until, health, gpus) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &[
                        &w.instance,
                        &w.name,
                        &w.version,
                        &w.slots,
                        &w.memory_bytes,
                        &w.runtimes.join(","),
                        &w.started_at,
                        &w.heartbeat_at,
                        &w.lease_until,
                        &w.health,
                        &w.gpus,
                    ],
                )
                .await?;
            transaction.commit().await?;
            Ok(replaced)
        })
        .await
    }

    async fn heartbeat(&self, instance: &str, now: i64, lease_seconds: i64, health: &str, holding: &Holding) -> Result<Option<Vec<i64>>> {
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let alive = transaction
                .execute(
                    "UPDATE workers SET heartbeat_at = $2, lease_until = $2::BIGINT + $3::BIGINT, health = $4 WHERE instance = $1 AND stopped_at IS NULL",
                    &[&instance, &now, &lease_seconds, &health],
                )
                .await?;
            if alive > 0 {
                transaction
                    .execute(
                        "UPDATE dry_runs SET lease_until = $2::BIGINT + $3::BIGINT WHERE worker = $1 AND submission = ANY($4)",
                        &[&instance, &now, &lease_seconds, &holding.dry_runs],
                    )
                    .await?;
            }
            let held = if alive == 0 {
                None
            } else {
                Some(
                    transaction
                        .query(
                            "UPDATE submissions SET lease_until = $2::BIGINT + $3::BIGINT WHERE status = 'running' AND worker = $1 AND id = ANY($4) RETURNING id",
                            &[&instance, &now, &lease_seconds, &holding.jobs],
                        )
                        .await?
                        .iter()
                        .map(|r| r.try_get(0))
                        .collect::<std::result::Result<_, _>>()?,
                )
            };
            transaction.commit().await?;
            Ok(held)
        })
        .await
    }

    async fn stop_worker(&self, instance: &str, now: i64) -> Result<usize> {
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let released = transaction
                .execute(
                    "UPDATE submissions SET status = 'queued', run_after = 0, attempts = GREATEST(attempts - 1, 0), worker = NULL, lease_until = 0 \
                     WHERE status = 'running' AND worker = $1",
                    &[&instance],
                )
                .await?;
            transaction.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE worker = $1", &[&instance]).await?;
            transaction.execute("UPDATE workers SET stopped_at = $2, lease_until = $2 WHERE instance = $1", &[&instance, &now]).await?;
            if released > 0 {
                transaction.batch_execute(NOTIFY).await?;
            }
            transaction.commit().await?;
            Ok(released as usize)
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.query(&format!("SELECT {WORKER_COLUMNS} FROM workers w ORDER BY w.stopped_at IS NOT NULL, w.heartbeat_at DESC LIMIT 500"), &[])
            .await?
            .iter()
            .map(worker_row)
            .collect()
    }

    async fn unmatched_queued(&self, copies: &[TaskCopy]) -> Result<Vec<TaskCopy>> {
        let rows = self
            .query("SELECT DISTINCT task, spec_digest, data_digest FROM submissions WHERE status = 'queued' AND spec_digest <> '' ORDER BY 1, 2, 3", &[])
            .await?;
        let queued =
            rows.iter().map(|r| Ok(TaskCopy { task: r.try_get(0)?, spec_digest: r.try_get(1)?, data_digest: r.try_get(2)? })).collect::<Result<Vec<_>>>()?;
        Ok(queued.into_iter().filter(|q| !copies.contains(q)).collect())
    }

    async fn requeue_all_running(&self) -> Result<usize> {
        Err(StoreError::Invalid("a shared database is never swept whole: leases put the jobs of dead workers back".into()))
    }

    async fn submission(&self, id: i64) -> Result<Option<(Submission, Option<String>)>> {
        let row = self
            .query_opt(&format!("SELECT {SUBMISSION_COLUMNS}, s.report FROM submissions s JOIN assignments a ON a.id = s.assignment WHERE s.id = $1"), &[&id])
            .await?;
        row.map(|row| Ok((submission_row(&row)?, row.try_get(16)?))).transpose()
    }

    async fn submissions(&self, assignment: Option<&str>, task: Option<&TaskId>) -> Result<Vec<Submission>> {
        self.query(
            &format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions s JOIN assignments a ON a.id = s.assignment \
                 WHERE ($1::TEXT IS NULL OR s.assignment = $1) AND ($2::TEXT IS NULL OR s.task = $2) ORDER BY s.id DESC"
            ),
            &[&assignment, &task],
        )
        .await?
        .iter()
        .map(submission_row)
        .collect()
    }

    async fn recent_submissions(&self, limit: i64) -> Result<Vec<Submission>> {
        self.query(&format!("SELECT {SUBMISSION_COLUMNS} FROM submissions s JOIN assignments a ON a.id = s.assignment ORDER BY s.id DESC LIMIT $1"), &[&limit])
            .await?
            .iter()
            .map(submission_row)
            .collect()
    }

    async fn submission_counts(&self) -> Result<HashMap<String, i64>> {
        self.query("SELECT assignment, COUNT(*) FROM submissions GROUP BY assignment", &[]).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn graded_provenance(&self, task: &TaskId) -> Result<Vec<GradedWith>> {
        self.query(
            "SELECT s.id, s.assignment, a.candidate, s.score, \
             COALESCE(s.report::jsonb #>> '{provenance,task_digest}', ''), \
             COALESCE(s.report::jsonb #>> '{provenance,dataset_digest}', ''), \
             COALESCE(s.report::jsonb #>> '{provenance,image}', ''), \
             COALESCE(s.report::jsonb #>> '{methodology}', '[]'), \
             jsonb_build_object('slices', COALESCE(s.report::jsonb #> '{components,accuracy,slices}', '[]'::jsonb), \
               'outputs', COALESCE((SELECT jsonb_agg(jsonb_build_object('file', o->>'file', 'slices', COALESCE(o->'slices', '[]'::jsonb))) \
                 FROM jsonb_array_elements(COALESCE(s.report::jsonb #> '{components,accuracy,outputs}', '[]'::jsonb)) o), '[]'::jsonb))::text, \
             jsonb_build_object('accuracy', s.report::jsonb #> '{components,accuracy,score}', \
               'code_quality', s.report::jsonb #> '{components,code_quality,score}', \
               'runtime', s.report::jsonb #> '{components,runtime,score}')::text \
             FROM submissions s JOIN assignments a ON a.id = s.assignment \
             WHERE s.task = $1 AND s.status = 'graded' AND s.report IS NOT NULL ORDER BY s.id DESC",
            &[&task],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(GradedWith {
                submission: r.try_get(0)?,
                assignment: r.try_get(1)?,
                candidate: r.try_get(2)?,
                score: r.try_get(3)?,
                task_digest: r.try_get(4)?,
                dataset_digest: r.try_get(5)?,
                image: r.try_get(6)?,
                methodology: r.try_get(7)?,
                slices: r.try_get(8)?,
                components: r.try_get(9)?,
            })
        })
        .collect()
    }

    async fn regrade(&self, submission: Option<i64>, task: Option<&TaskId>, needs: &HashMap<TaskId, JobNeeds>) -> Result<usize> {
        timed(async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let n = transaction
                .execute(
                    "UPDATE submissions SET status = 'queued', kind = 1, run_after = 0, attempts = 0, previous_score = score, worker = NULL \
                     WHERE status IN ('graded', 'infrastructure_error') AND ($1::BIGINT IS NULL OR id = $1) AND ($2::TEXT IS NULL OR task = $2)",
                    &[&submission, &task],
                )
                .await?;
            for (task, needs) in needs {
                transaction
                    .execute(
                        "UPDATE submissions SET spec_digest = $2, data_digest = $3, memory_bytes = $4, runtime = $5, gpus = $7 \
                         WHERE status = 'queued' AND kind = 1 AND task = $1 AND ($6::BIGINT IS NULL OR id = $6)",
                        &[task, &needs.spec_digest, &needs.data_digest, &needs.memory_bytes, &needs.runtime, &submission, &needs.gpus],
                    )
                    .await?;
            }
            if n > 0 {
                transaction.batch_execute(NOTIFY).await?;
            }
            transaction.commit().await?;
            Ok(n as usize)
        })
        .await
    }

    async fn add_note(&self, submission: i64, author: &str, text: &str, now: i64) -> Result<()> {
        self.execute("INSERT INTO notes (submission, author, text, created_at) VALUES ($1, $2, $3, $4)", &[&submission, &author, &text, &now]).await.map(|_| ())
    }

    async fn notes(&self, submission: i64) -> Result<Vec<Note>> {
        self.query("SELECT author, text, created_at FROM notes WHERE submission = $1 ORDER BY id", &[&submission])
            .await?
            .iter()
            .map(|r| Ok(Note { author: r.try_get(0)?, text: r.try_get(1)?, created_at: r.try_get(2)? }))
            .collect()
    }

    async fn add_extension(&self, assignment: &str, seconds: i64, reason: &str, author: &str, now: i64) -> Result<i64> {
        let row = self
            .query_opt(
                "INSERT INTO extensions (assignment, seconds, reason, author, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&assignment, &seconds, &reason, &author, &now],
            )
            .await?
            .ok_or_else(|| StoreError::Invalid("PostgreSQL: an INSERT … RETURNING returned no row".into()))?;
        Ok(row.try_get(0)?)
    }

    async fn extensions(&self, assignment: &str) -> Result<Vec<Extension>> {
        self.query("SELECT id, assignment, seconds, reason, author, created_at FROM extensions WHERE assignment = $1 ORDER BY id", &[&assignment])
            .await?
            .iter()
            .map(|r| {
                Ok(Extension {
                    id: r.try_get(0)?,
                    assignment: r.try_get(1)?,
                    seconds: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    author: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn choose_final(&self, assignment: &str, submission: i64, now: i64) -> Result<()> {
        self.execute(
            "INSERT INTO final_choices (assignment, submission, chosen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (assignment) DO UPDATE SET submission = excluded.submission, chosen_at = excluded.chosen_at",
            &[&assignment, &submission, &now],
        )
        .await?;
        Ok(())
    }

    async fn final_choice(&self, assignment: &str) -> Result<Option<(i64, i64)>> {
        Ok(self
            .query_opt("SELECT submission, chosen_at FROM final_choices WHERE assignment = $1", &[&assignment])
            .await?
            .map(|r| Ok::<_, StoreError>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()?)
    }

    async fn set_public_run(&self, submission: i64, body: &str, now: i64) -> Result<()> {
        self.execute(
            "WITH stored AS (INSERT INTO public_runs (submission, body, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (submission) DO UPDATE SET body = excluded.body, created_at = excluded.created_at) \
             DELETE FROM dry_runs WHERE submission = $1",
            &[&submission, &body, &now],
        )
        .await?;
        Ok(())
    }

    async fn claim_dry_run(&self, instance: &str, tasks: &[TaskId], now: i64, lease_seconds: i64) -> Result<Option<DryRunClaim>> {
        let tasks: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
        let row = self
            .query_opt(
                "WITH taken AS (UPDATE dry_runs SET worker = $1, lease_until = $2::BIGINT + $3::BIGINT \
                 WHERE submission = (SELECT d.submission FROM dry_runs d JOIN submissions s ON s.id = d.submission \
                    WHERE d.lease_until < $2 AND s.task = ANY($4) ORDER BY d.queued_at, d.submission LIMIT 1 FOR UPDATE OF d SKIP LOCKED) \
                 RETURNING submission) \
                 SELECT s.id, s.assignment, s.task, s.commit_sha FROM taken JOIN submissions s ON s.id = taken.submission",
                &[&instance, &now, &lease_seconds, &tasks],
            )
            .await?;
        Ok(row
            .map(|r| -> std::result::Result<DryRunClaim, tokio_postgres::Error> {
                Ok(DryRunClaim { submission: r.try_get(0)?, assignment: r.try_get(1)?, task: r.try_get(2)?, commit: r.try_get(3)? })
            })
            .transpose()?)
    }

    async fn release_dry_run(&self, submission: i64, instance: &str) -> Result<()> {
        self.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE submission = $1 AND worker = $2", &[&submission, &instance]).await?;
        Ok(())
    }

    async fn dry_runs_waiting(&self) -> Result<i64> {
        Ok(self.query_opt("SELECT count(*) FROM dry_runs", &[]).await?.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    async fn public_run(&self, submission: i64) -> Result<Option<String>> {
        Ok(self.query_opt("SELECT body FROM public_runs WHERE submission = $1", &[&submission]).await?.map(|r| r.try_get(0)).transpose()?)
    }

    async fn report_history(&self, submission: i64) -> Result<Vec<PastReport>> {
        self.query(
            "SELECT id, submission, grade_status, score, report, graded_at, replaced_at FROM report_history WHERE submission = $1 ORDER BY id",
            &[&submission],
        )
        .await?
        .iter()
        .map(|r| {
            let grade: Option<String> = r.try_get(2)?;
            Ok(PastReport {
                id: r.try_get(0)?,
                submission: r.try_get(1)?,
                grade_status: grade
                    .map(|g| super::parse_grade(&g).ok_or_else(|| StoreError::Invalid(format!("report_history.grade_status: unexpected value {g:?}"))))
                    .transpose()?,
                score: r.try_get(3)?,
                report: r.try_get(4)?,
                graded_at: r.try_get(5)?,
                replaced_at: r.try_get(6)?,
            })
        })
        .collect()
    }

    async fn add_review(&self, assignment: &str, submission: i64, kind: ReviewKind, author: &str, body: &str, now: i64) -> Result<i64> {
        let row = self
            .query_opt(
                "INSERT INTO reviews (assignment, submission, kind, author, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                &[&assignment, &submission, &kind.as_str(), &author, &body, &now],
            )
            .await?
            .ok_or_else(|| StoreError::Invalid("PostgreSQL: an INSERT … RETURNING returned no row".into()))?;
        Ok(row.try_get(0)?)
    }

    async fn edit_review(&self, id: i64, author: &str, body: &str, now: i64) -> Result<bool> {
        Ok(self.execute("UPDATE reviews SET body = $3, updated_at = $4 WHERE id = $1 AND author = $2", &[&id, &author, &body, &now]).await? == 1)
    }

    async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>> {
        self.query_opt("SELECT id, assignment, submission, kind, author, body, created_at, updated_at FROM reviews WHERE id = $1", &[&id])
            .await?
            .as_ref()
            .map(review_row)
            .transpose()
    }

    async fn reviews(&self, assignment: Option<&str>) -> Result<Vec<ReviewItem>> {
        self.query(
            "SELECT id, assignment, submission, kind, author, body, created_at, updated_at FROM reviews WHERE ($1::TEXT IS NULL OR assignment = $1) ORDER BY id",
            &[&assignment],
        )
        .await?
        .iter()
        .map(review_row)
        .collect()
    }

    async fn task_reviews(&self, task: &TaskId) -> Result<Vec<ReviewItem>> {
        self.query(
            "SELECT r.id, r.assignment, r.submission, r.kind, r.author, r.body, r.created_at, r.updated_at FROM reviews r JOIN assignments a ON a.id = r.assignment WHERE a.task = $1 ORDER BY r.id",
            &[&task],
        )
        .await?
        .iter()
        .map(review_row)
        .collect()
    }

    async fn erase_assignment(&self, id: &str, erasure: &Erasure) -> Result<(Vec<i64>, i64)> {
        timed(async {
            let mut client = self.pool.get().await?;
            let t = client.transaction().await?;
            if t.query_opt("SELECT task FROM assignments WHERE id = $1 FOR UPDATE", &[&id]).await?.is_none() {
                return Err(StoreError::NotFound(format!("no assignment {id}")));
            }
            let submissions: Vec<i64> = t
                .query("SELECT id FROM submissions WHERE assignment = $1", &[&id])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            let mut rows = 0i64;
            for table in ["notes", "report_history", "public_runs", "dry_runs"] {
                let sql = format!("DELETE FROM {table} WHERE submission IN (SELECT id FROM submissions WHERE assignment = $1)");
                rows += t.execute(sql.as_str(), &[&id]).await? as i64;
            }
            for table in ["final_choices", "reviews", "extensions", "emails", "contacts", "submissions"] {
                rows += t.execute(format!("DELETE FROM {table} WHERE assignment = $1").as_str(), &[&id]).await? as i64;
            }
            let quoted = format!("\"{id}\"");
            rows += t.execute("DELETE FROM webhooks WHERE strpos(body, $1) > 0", &[&quoted]).await? as i64;
            rows += t.execute("DELETE FROM assignments WHERE id = $1", &[&id]).await? as i64;
            t.execute(
                "INSERT INTO erasures (task, erased_at, erased_by, reason, rows) VALUES ($1, $2, $3, $4, $5)",
                &[&erasure.task, &erasure.erased_at, &erasure.erased_by, &erasure.reason, &rows],
            )
            .await?;
            t.commit().await?;
            Ok((submissions, rows))
        })
        .await
    }

    async fn erasures(&self) -> Result<Vec<Erasure>> {
        self.query("SELECT task, erased_at, erased_by, reason, rows FROM erasures ORDER BY id DESC", &[])
            .await?
            .iter()
            .map(|r| Ok(Erasure { task: r.try_get(0)?, erased_at: r.try_get(1)?, erased_by: r.try_get(2)?, reason: r.try_get(3)?, rows: r.try_get(4)? }))
            .collect()
    }

    async fn review_states(&self) -> Result<HashMap<String, ReviewState>> {
        self.query("SELECT assignment, COUNT(DISTINCT CASE WHEN kind = 'scores' THEN author END), MAX(CASE WHEN kind = 'decision' THEN 1 ELSE 0 END)::BIGINT, MAX(CASE WHEN kind = 'decision' THEN updated_at END) FROM reviews GROUP BY assignment", &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, ReviewState { scored_by: r.try_get(1)?, decided: r.try_get::<_, i64>(2)? == 1, decided_at: r.try_get(3)? })))
            .collect()
    }

    async fn queue_webhook(&self, event: &str, body: &str, now: i64) -> Result<i64> {
        let row = self
            .query_opt("INSERT INTO webhooks (event, body, next_at, created_at) VALUES ($1, $2, $3, $3) RETURNING id", &[&event, &body, &now])
            .await?
            .ok_or_else(|| StoreError::Invalid("PostgreSQL: an INSERT … RETURNING returned no row".into()))?;
        Ok(row.try_get(0)?)
    }

    async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<Webhook>> {
        self.query(
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= $1 ORDER BY id LIMIT $2"),
            &[&now, &limit],
        )
        .await?
        .iter()
        .map(webhook_row)
        .collect()
    }

    async fn webhook_attempted(&self, id: i64, delivered: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()> {
        if delivered {
            self.execute("UPDATE webhooks SET attempts = attempts + 1, delivered_at = $2, last_error = '' WHERE id = $1", &[&id, &now]).await?;
        } else {
            self.execute(
                "UPDATE webhooks SET attempts = attempts + 1, last_error = $2, next_at = COALESCE($3::BIGINT, next_at), \
                 failed_at = CASE WHEN $3::BIGINT IS NULL THEN $4::BIGINT ELSE NULL END WHERE id = $1",
                &[&id, &error, &retry_at, &now],
            )
            .await?;
        }
        Ok(())
    }

    async fn task_version(&self, task: &TaskId) -> Result<(i64, i64)> {
        let row = self
            .query_opt("SELECT COALESCE(MAX(id), 0)::BIGINT, COUNT(*)::BIGINT FROM submissions WHERE task = $1", &[&task])
            .await?
            .ok_or_else(|| StoreError::Invalid("PostgreSQL: an aggregate returned no row".into()))?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn set_contact(&self, assignment: &str, email: &str) -> Result<()> {
        self.execute(
            "INSERT INTO contacts (assignment, email) VALUES ($1, $2) ON CONFLICT (assignment) DO UPDATE SET email = excluded.email",
            &[&assignment, &email],
        )
        .await
        .map(|_| ())
    }

    async fn contacts(&self) -> Result<HashMap<String, String>> {
        self.query("SELECT assignment, email FROM contacts", &[]).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn queue_email(&self, assignment: &str, key: &str, kind: EmailKind, data: &str, now: i64) -> Result<bool> {
        self.execute(
            "INSERT INTO emails (assignment, key, kind, data, created_at, next_at) SELECT $1, $2, $3, $4, $5, $5 \
             WHERE EXISTS (SELECT 1 FROM contacts WHERE assignment = $1) ON CONFLICT (key) DO NOTHING",
            &[&assignment, &key, &kind.as_str(), &data, &now],
        )
        .await
        .map(|n| n == 1)
    }

    async fn due_emails(&self, now: i64, limit: i64) -> Result<Vec<Email>> {
        self.query(
            &format!(
                "SELECT {EMAIL_COLUMNS} FROM emails e JOIN contacts c ON c.assignment = e.assignment \
                 WHERE e.sent_at IS NULL AND e.failed_at IS NULL AND e.next_at <= $1 ORDER BY e.id LIMIT $2"
            ),
            &[&now, &limit],
        )
        .await?
        .iter()
        .map(email_row)
        .collect()
    }

    async fn email_attempted(&self, id: i64, sent: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()> {
        if sent {
            self.execute("UPDATE emails SET attempts = attempts + 1, sent_at = $2, last_error = '', data = '{}' WHERE id = $1", &[&id, &now]).await?;
        } else {
            self.execute(
                "UPDATE emails SET attempts = attempts + 1, last_error = $2, next_at = COALESCE($3::BIGINT, next_at), \
                 failed_at = CASE WHEN $3::BIGINT IS NULL THEN $4::BIGINT ELSE NULL END, \
                 data = CASE WHEN $3::BIGINT IS NULL THEN '{}' ELSE data END WHERE id = $1",
                &[&id, &error, &retry_at, &now],
            )
            .await?;
        }
        Ok(())
    }

    async fn emails(&self, limit: i64) -> Result<Vec<Email>> {
        self.query(
            "SELECT e.id, e.assignment, e.key, e.kind, '', '', e.created_at, e.attempts, e.next_at, e.sent_at, e.failed_at, e.last_error \
             FROM emails e ORDER BY e.id DESC LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(email_row)
        .collect()
    }

    async fn webhooks(&self, limit: i64) -> Result<Vec<Webhook>> {
        self.query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id DESC LIMIT $1"), &[&limit]).await?.iter().map(webhook_row).collect()
    }

    async fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.query("SELECT COALESCE(grade_status, status), COUNT(*) FROM submissions GROUP BY 1 ORDER BY 1", &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()> {
        self.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?;
        self.execute("INSERT INTO sessions (token_hash, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)", &[&token_hash, &user, &now, &expires_at])
            .await
            .map(|_| ())
    }

    async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        Ok(match self.query_opt("SELECT user_name FROM sessions WHERE token_hash = $1 AND expires_at > $2", &[&token_hash, &now]).await? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash]).await.map(|_| ())
    }

    async fn delete_sessions_of(&self, user: &str) -> Result<usize> {
        Ok(self.execute("DELETE FROM sessions WHERE user_name = $1", &[&user]).await? as usize)
    }
}

/// Holds one connection that `LISTEN`s on [`CHANNEL`] and wakes `wake` on each notification;
/// reconnects (and wakes, since a notification may have been missed) whenever it breaks, and
/// checks the connection every 15 s so that a partition shows up as a failure, not as silence.
async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>, shutdown: CancellationToken) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let (client, mut connection) = match tokio::time::timeout(CALL_TIMEOUT, config.connect(NoTls)).await {
            Ok(Ok(pair)) => pair,
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::warn!(error = %e, "cannot connect to listen for new jobs; trying again");
                }
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => return }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // The connection is driven by a task of its own; notifications come out of a channel.
        let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                        let _ = sender.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let listening = tokio::time::timeout(CALL_TIMEOUT, client.batch_execute(&format!("LISTEN {CHANNEL}"))).await;
        if !matches!(listening, Ok(Ok(()))) {
            driver.abort();
            tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => return }
            continue;
        }
        backoff = Duration::from_millis(200);
        wake.notify_waiters();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                notification = notifications.recv() => match notification {
                    Some(()) => wake.notify_waiters(),
                    None => {
                        tracing::warn!("the connection that listens for new jobs broke; reconnecting");
                        break;
                    }
                },
                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                    if !matches!(tokio::time::timeout(CALL_TIMEOUT, client.simple_query("")).await, Ok(Ok(_))) {
                        tracing::warn!("the connection that listens for new jobs stopped answering; reconnecting");
                        break;
                    }
                }
            }
        }
        driver.abort();
    }
}
