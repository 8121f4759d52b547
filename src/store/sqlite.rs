//! The embedded backend: one SQLite file in WAL mode, for one process (`takehome serve`).
//!
//! Statements run on tokio's blocking pool behind one connection (a `std` mutex: every call is
//! short); a claim is one transaction on that connection, so two workers never get the same job.
//! Migrations are numbered and recorded in `PRAGMA user_version`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::*;

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

/// The schema, one migration per entry; entry `n` brings `user_version` from `n` to `n + 1`.
/// Never edit a shipped entry: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the first wave's schema (written with IF NOT EXISTS, so files made before migrations
    // were numbered take it as a no-op).
    "
CREATE TABLE IF NOT EXISTS assignments (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    candidate TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    time_box_seconds INTEGER NOT NULL,
    starts TEXT NOT NULL,
    started_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    number INTEGER NOT NULL,
    commit_sha TEXT NOT NULL,
    pushed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    grade_status TEXT,
    score REAL,
    previous_score REAL,
    report TEXT,
    error TEXT,
    UNIQUE (assignment, number)
);
CREATE INDEX IF NOT EXISTS submissions_queue ON submissions (status, run_after, id);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission INTEGER NOT NULL REFERENCES submissions(id),
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
",
    // 2: leases held by worker instances, what a job needs, fair order, the workers.
    "
ALTER TABLE submissions ADD COLUMN task TEXT NOT NULL DEFAULT '';
UPDATE submissions SET task = (SELECT task FROM assignments WHERE assignments.id = submissions.assignment);
ALTER TABLE submissions ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN spec_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE submissions ADD COLUMN data_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE submissions ADD COLUMN memory_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN runtime TEXT NOT NULL DEFAULT 'runc';
CREATE INDEX submissions_worker ON submissions (worker, status);
CREATE TABLE workers (
    instance TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    slots INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    runtimes TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    stopped_at INTEGER,
    health TEXT NOT NULL DEFAULT ''
);
CREATE INDEX workers_name ON workers (name);
",
    // 3: the assessors' review desk (comments, rubric scores, decisions, releases) and the
    // webhook outbox.
    "
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    submission INTEGER NOT NULL,
    kind TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX reviews_assignment ON reviews (assignment, id);
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    delivered_at INTEGER,
    failed_at INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_due ON webhooks (delivered_at, failed_at, next_at);
",
    // 4: reports replaced by regrades, kept.
    "
CREATE TABLE report_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    submission INTEGER NOT NULL REFERENCES submissions(id),
    grade_status TEXT,
    score REAL,
    report TEXT,
    graded_at INTEGER,
    replaced_at INTEGER NOT NULL
);
CREATE INDEX report_history_submission ON report_history (submission, id);
",
    // 5: each submission's public dry run, shown to its candidate.
    "
CREATE TABLE public_runs (
    submission INTEGER PRIMARY KEY REFERENCES submissions(id),
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE extensions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    seconds INTEGER NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX extensions_assignment ON extensions (assignment, id);
CREATE TABLE final_choices (
    assignment TEXT PRIMARY KEY REFERENCES assignments(id),
    submission INTEGER NOT NULL REFERENCES submissions(id),
    chosen_at INTEGER NOT NULL
);
",
    // 6: public dry runs wait in the store, not in a worker's memory (a restart loses none).
    "
CREATE TABLE dry_runs (
    submission INTEGER PRIMARY KEY REFERENCES submissions(id),
    queued_at INTEGER NOT NULL,
    worker TEXT,
    lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dry_runs_order ON dry_runs (queued_at, submission);
",
    // 7: GPUs: what a job's steps ask for, what a worker has.
    "
ALTER TABLE submissions ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
",
    // 8: erasures (the audit record: nothing personal).
    "
CREATE TABLE erasures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    erased_at INTEGER NOT NULL,
    erased_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    rows INTEGER NOT NULL
);
",
    // 9: e-mail to candidates: where it goes, and the outbox (one row per message key).
    "
CREATE TABLE contacts (
    assignment TEXT PRIMARY KEY REFERENCES assignments(id),
    email TEXT NOT NULL
);
CREATE TABLE emails (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    assignment TEXT NOT NULL REFERENCES assignments(id),
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    sent_at INTEGER,
    failed_at INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX emails_due ON emails (sent_at, failed_at, next_at);
CREATE INDEX submissions_task ON submissions (task, id);
",
];

const SUBMISSION_COLUMNS: &str = "s.id, s.assignment, s.task, a.candidate, s.number, s.commit_sha, s.pushed_at, s.status, s.attempts, \
     s.grade_status, s.score, s.previous_score, s.error, s.finished_at, s.worker, s.run_after";

/// A task id is stored as its text, and read back only if it still is one.
impl rusqlite::types::ToSql for TaskId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
    }
}

impl rusqlite::types::FromSql for TaskId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<TaskId> {
        TaskId::parse(value.as_str()?).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

fn bad_value(column: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, format!("unexpected value {text:?}").into())
}

fn submission_row(row: &rusqlite::Row) -> rusqlite::Result<Submission> {
    let status: String = row.get(7)?;
    let grade: Option<String> = row.get(9)?;
    Ok(Submission {
        id: row.get(0)?,
        assignment: row.get(1)?,
        task: row.get(2)?,
        candidate: row.get(3)?,
        number: row.get(4)?,
        commit: row.get(5)?,
        pushed_at: row.get(6)?,
        status: JobStatus::parse(&status).ok_or_else(|| bad_value(7, &status))?,
        attempts: row.get(8)?,
        grade_status: grade.map(|g| super::parse_grade(&g).ok_or_else(|| bad_value(9, &g))).transpose()?,
        score: row.get(10)?,
        previous_score: row.get(11)?,
        error: row.get(12)?,
        finished_at: row.get(13)?,
        worker: row.get(14)?,
        run_after: row.get(15)?,
    })
}

fn assignment_row(row: &rusqlite::Row) -> rusqlite::Result<Assignment> {
    let starts: String = row.get(5)?;
    Ok(Assignment {
        id: row.get(0)?,
        task: row.get(1)?,
        candidate: row.get(2)?,
        token_hash: row.get(3)?,
        time_box_seconds: row.get(4)?,
        starts: super::Starts::parse(&starts).ok_or_else(|| bad_value(5, &starts))?,
        started_at: row.get(6)?,
        created_at: row.get(7)?,
        extra_seconds: row.get(8)?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, candidate, token_hash, time_box_seconds, starts, started_at, created_at";
/// The columns read back: the stored ones and the sum of the assignment's extensions.
const ASSIGNMENT_SELECT: &str = "id, task, candidate, token_hash, time_box_seconds, starts, started_at, created_at, \
     (SELECT COALESCE(SUM(e.seconds), 0) FROM extensions e WHERE e.assignment = assignments.id)";

const WORKER_COLUMNS: &str = "w.instance, w.name, w.version, w.slots, w.memory_bytes, w.runtimes, w.started_at, w.heartbeat_at, w.lease_until, \
     w.stopped_at, w.health, (SELECT COUNT(*) FROM submissions s WHERE s.status = 'running' AND s.worker = w.instance), w.gpus";

fn worker_row(row: &rusqlite::Row) -> rusqlite::Result<WorkerInfo> {
    let runtimes: String = row.get(5)?;
    Ok(WorkerInfo {
        instance: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        slots: row.get(3)?,
        memory_bytes: row.get(4)?,
        runtimes: runtimes.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect(),
        started_at: row.get(6)?,
        heartbeat_at: row.get(7)?,
        lease_until: row.get(8)?,
        stopped_at: row.get(9)?,
        health: row.get(10)?,
        running: row.get(11)?,
        gpus: row.get(12)?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, event, body, attempts, next_at, delivered_at, failed_at, last_error";

const EMAIL_COLUMNS: &str =
    "e.id, e.assignment, e.key, e.kind, e.data, COALESCE(c.email, ''), e.created_at, e.attempts, e.next_at, e.sent_at, e.failed_at, e.last_error";

fn email_row(r: &rusqlite::Row) -> rusqlite::Result<Email> {
    let kind: String = r.get(3)?;
    Ok(Email {
        id: r.get(0)?,
        assignment: r.get(1)?,
        key: r.get(2)?,
        kind: EmailKind::parse(&kind).ok_or_else(|| bad_value(3, &kind))?,
        data: r.get(4)?,
        recipient: r.get(5)?,
        created_at: r.get(6)?,
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        sent_at: r.get(9)?,
        failed_at: r.get(10)?,
        last_error: r.get(11)?,
    })
}

fn webhook_row(r: &rusqlite::Row) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: r.get(0)?,
        event: r.get(1)?,
        body: r.get(2)?,
        attempts: r.get(3)?,
        next_at: r.get(4)?,
        delivered_at: r.get(5)?,
        failed_at: r.get(6)?,
        last_error: r.get(7)?,
    })
}

/// Applies the migrations the file has not had, each in a transaction with its version.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = connection.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database is at schema version {version}, newer than this takehome knows ({}): run a newer takehome",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        transaction.commit()?;
    }
    Ok(())
}

/// A review item from `SELECT id, assignment, submission, kind, author, body, created_at, updated_at`.
fn review_row(r: &rusqlite::Row) -> rusqlite::Result<ReviewItem> {
    let kind: String = r.get(3)?;
    Ok(ReviewItem {
        id: r.get(0)?,
        assignment: r.get(1)?,
        submission: r.get(2)?,
        kind: ReviewKind::parse(&kind).ok_or_else(|| bad_value(3, &kind))?,
        author: r.get(4)?,
        body: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

impl SqliteStore {
    /// Opens (creating) the file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in free pages: an erasure leaves no trace in the file.
        connection.pragma_update(None, "secure_delete", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        migrate(&mut connection)?;
        Ok(SqliteStore { connection: Arc::new(Mutex::new(connection)) })
    }

    /// The schema version the file is at.
    pub fn schema_version(&self) -> Result<i64> {
        self.with_blocking(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    fn with_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut connection)?)
    }

    /// Runs `f` on the blocking pool with the connection.
    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.with_blocking(f)).await.map_err(|e| StoreError::Invalid(format!("a store call panicked: {e}")))?
    }
}

/// `json_each` reads a list passed as one JSON text parameter.
fn json_list(items: impl IntoIterator<Item = String>) -> String {
    serde_json::Value::Array(items.into_iter().map(serde_json::Value::String).collect()).to_string()
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_assignment(&self, a: &Assignment) -> Result<()> {
        let a = a.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![a.id, a.task, a.candidate, a.token_hash, a.time_box_seconds, a.starts.as_str(), a.started_at, a.created_at],
            )
            .map(|_| ())
        })
        .await
    }

    async fn assignment(&self, id: &str) -> Result<Option<Assignment>> {
        let id = id.to_string();
        self.with(move |c| c.query_row(&format!("SELECT {ASSIGNMENT_SELECT} FROM assignments WHERE id = ?1"), [id], assignment_row).optional()).await
    }

    async fn assignments(&self) -> Result<Vec<Assignment>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!("SELECT {ASSIGNMENT_SELECT} FROM assignments ORDER BY created_at DESC, id"))?;
            let rows = statement.query_map([], assignment_row)?.collect();
            rows
        })
        .await
    }

    async fn start_clock(&self, id: &str, now: i64) -> Result<Assignment> {
        let owned = id.to_string();
        self.with(move |c| c.execute("UPDATE assignments SET started_at = ?2 WHERE id = ?1 AND started_at IS NULL", params![owned, now])).await?;
        self.assignment(id).await?.ok_or_else(|| StoreError::NotFound(format!("no assignment {id}")))
    }

    async fn add_submission(&self, assignment: &str, commit: &str, needs: &JobNeeds, now: i64, per_hour: i64) -> Result<(i64, i64, i64, i64)> {
        let (assignment, commit, needs) = (assignment.to_string(), commit.to_string(), needs.clone());
        self.with(move |c| {
            let transaction = c.transaction()?;
            let number: i64 =
                transaction.query_row("SELECT COALESCE(MAX(number), 0) + 1 FROM submissions WHERE assignment = ?1", [&assignment], |r| r.get(0))?;
            // The per_hour-th latest time a push of this assignment is graded from: one hour after
            // it, the next may be.
            let turn: Option<i64> = if per_hour > 0 {
                transaction
                    .query_row(
                        "SELECT MAX(pushed_at, run_after) AS at FROM submissions WHERE assignment = ?1 AND kind = 0 ORDER BY at DESC LIMIT 1 OFFSET ?2",
                        params![assignment, per_hour - 1],
                        |r| r.get(0),
                    )
                    .optional()?
            } else {
                None
            };
            let graded_from = turn.map(|at| at + 3600).filter(|&at| at > now).unwrap_or(0);
            transaction.execute(
                "INSERT INTO submissions (assignment, task, number, commit_sha, pushed_at, status, kind, spec_digest, data_digest, memory_bytes, runtime, run_after, gpus) \
                 SELECT ?1, task, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?8, ?9, ?10 FROM assignments WHERE id = ?1",
                params![assignment, number, commit, now, needs.spec_digest, needs.data_digest, needs.memory_bytes, needs.runtime, graded_from, needs.gpus],
            )?;
            let id = transaction.last_insert_rowid();
            let position: i64 =
                transaction.query_row("SELECT COUNT(*) FROM submissions WHERE status IN ('queued', 'running') AND id <= ?1", [id], |r| r.get(0))?;
            transaction.commit()?;
            Ok((id, number, position, graded_from))
        })
        .await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Option<Claimed>> {
        let r = request.clone();
        self.with(move |c| {
            let transaction = c.transaction()?;
            transaction.execute(EXPIRE, params![r.now, r.max_attempts])?;
            let runtimes = json_list(r.runtimes.iter().cloned());
            let copies = json_list(r.copies.iter().map(TaskCopy::key));
            let claimed = transaction
                .query_row(
                    "UPDATE submissions SET status = 'running', worker = ?1, started_at = ?2, lease_until = ?2 + ?3, attempts = attempts + 1 \
                     WHERE id = (SELECT s.id FROM submissions s \
                        WHERE ((s.status = 'queued' AND s.run_after <= ?2) OR (s.status = 'running' AND s.lease_until < ?2)) \
                          AND s.memory_bytes <= ?4 AND s.gpus <= ?7 AND s.runtime IN (SELECT value FROM json_each(?5)) \
                          AND (s.spec_digest = '' OR s.task || char(9) || s.spec_digest || char(9) || s.data_digest IN (SELECT value FROM json_each(?6))) \
                        ORDER BY s.kind, \
                          (SELECT COUNT(*) FROM submissions r WHERE r.status = 'running' AND r.lease_until >= ?2 AND r.task = s.task), \
                          (SELECT COUNT(*) FROM submissions r WHERE r.status = 'running' AND r.lease_until >= ?2 AND r.assignment = s.assignment), \
                          s.id LIMIT 1) \
                     RETURNING id, assignment, task, commit_sha, attempts, number, spec_digest, data_digest, memory_bytes, runtime, gpus",
                    params![r.instance, r.now, r.lease_seconds, r.free_memory_bytes, runtimes, copies, r.free_gpus],
                    |row| {
                        Ok(Claimed {
                            fence: Fence { submission: row.get(0)?, instance: r.instance.clone(), attempt: row.get(4)? },
                            assignment: row.get(1)?,
                            task: row.get(2)?,
                            candidate: String::new(),
                            commit: row.get(3)?,
                            number: row.get(5)?,
                            needs: JobNeeds {
                                spec_digest: row.get(6)?,
                                data_digest: row.get(7)?,
                                memory_bytes: row.get(8)?,
                                runtime: row.get(9)?,
                                gpus: row.get(10)?,
                            },
                        })
                    },
                )
                .optional()?;
            let claimed = match claimed {
                Some(mut job) => {
                    job.candidate = transaction.query_row("SELECT candidate FROM assignments WHERE id = ?1", [&job.assignment], |r| r.get(0))?;
                    Some(job)
                }
                None => None,
            };
            transaction.commit()?;
            Ok(claimed)
        })
        .await
    }

    async fn finish(&self, fence: &Fence, grade_status: GradeStatus, score: f64, report_json: &str, now: i64, queue_dry_run: bool) -> Result<()> {
        let (f, report) = (fence.clone(), report_json.to_string());
        let changed = self
            .with(move |c| {
                let transaction = c.transaction()?;
                transaction.execute(
                    &format!(
                        "INSERT INTO report_history (submission, grade_status, score, report, graded_at, replaced_at) \
                         SELECT id, grade_status, score, report, finished_at, ?4 FROM submissions WHERE {FENCED} AND report IS NOT NULL"
                    ),
                    params![f.submission, f.instance, f.attempt, now],
                )?;
                let changed = transaction.execute(
                    &format!(
                        "UPDATE submissions SET status = 'graded', grade_status = ?4, score = ?5, report = ?6, finished_at = ?7, error = NULL, lease_until = 0 \
                         WHERE {FENCED}"
                    ),
                    params![f.submission, f.instance, f.attempt, grade_status.as_str(), score, report, now],
                )?;
                if changed == 1 && queue_dry_run {
                    transaction.execute(
                        "INSERT INTO dry_runs (submission, queued_at) VALUES (?1, ?2) \
                         ON CONFLICT (submission) DO UPDATE SET queued_at = excluded.queued_at, worker = NULL, lease_until = 0",
                        params![f.submission, now],
                    )?;
                }
                transaction.commit()?;
                Ok(changed)
            })
            .await?;
        fenced(changed, fence)
    }

    async fn fail(&self, fence: &Fence, error: &str, retry_at: Option<i64>, now: i64) -> Result<()> {
        let (f, error) = (fence.clone(), error.to_string());
        let changed = self
            .with(move |c| match retry_at {
                Some(at) => c.execute(
                    &format!("UPDATE submissions SET status = 'queued', run_after = ?4, error = ?5, worker = NULL, lease_until = 0 WHERE {FENCED}"),
                    params![f.submission, f.instance, f.attempt, at, error],
                ),
                None => c.execute(
                    &format!("UPDATE submissions SET status = 'infrastructure_error', error = ?4, finished_at = ?5, lease_until = 0 WHERE {FENCED}"),
                    params![f.submission, f.instance, f.attempt, error, now],
                ),
            })
            .await?;
        fenced(changed, fence)
    }

    async fn release(&self, fence: &Fence) -> Result<()> {
        let f = fence.clone();
        let changed = self
            .with(move |c| {
                c.execute(
                    &format!("UPDATE submissions SET status = 'queued', run_after = 0, attempts = MAX(attempts - 1, 0), worker = NULL, lease_until = 0 WHERE {FENCED}"),
                    params![f.submission, f.instance, f.attempt],
                )
            })
            .await?;
        fenced(changed, fence)
    }

    async fn register_worker(&self, w: &WorkerInfo) -> Result<Vec<String>> {
        let w = w.clone();
        self.with(move |c| {
            let transaction = c.transaction()?;
            let replaced: Vec<String> = {
                let mut statement = transaction.prepare("SELECT instance FROM workers WHERE name = ?1 AND stopped_at IS NULL AND instance != ?2")?;
                let rows = statement.query_map(params![w.name, w.instance], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                rows
            };
            for old in &replaced {
                transaction.execute("UPDATE workers SET stopped_at = ?2 WHERE instance = ?1", params![old, w.started_at])?;
                transaction.execute(
                    "UPDATE submissions SET status = 'queued', run_after = 0, worker = NULL, lease_until = 0 WHERE status = 'running' AND worker = ?1",
                    [old],
                )?;
                transaction.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE worker = ?1", [old])?;
            }
            transaction.execute(
                "INSERT INTO workers (instance, name, version, slots, memory_bytes, runtimes, started_at, heartbeat_at, lease_until, health, gpus) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    w.instance,
                    w.name,
                    w.version,
                    w.slots,
                    w.memory_bytes,
                    w.runtimes.join(","),
                    w.started_at,
                    w.heartbeat_at,
                    w.lease_until,
                    w.health,
                    w.gpus
                ],
            )?;
            transaction.commit()?;
            Ok(replaced)
        })
        .await
    }

    async fn heartbeat(&self, instance: &str, now: i64, lease_seconds: i64, health: &str, holding: &Holding) -> Result<Option<Vec<i64>>> {
        let (instance, health) = (instance.to_string(), health.to_string());
        let jobs = serde_json::to_string(&holding.jobs).expect("ids serialise");
        let dry_runs = serde_json::to_string(&holding.dry_runs).expect("ids serialise");
        self.with(move |c| {
            let transaction = c.transaction()?;
            let alive = transaction.execute(
                "UPDATE workers SET heartbeat_at = ?2, lease_until = ?2 + ?3, health = ?4 WHERE instance = ?1 AND stopped_at IS NULL",
                params![instance, now, lease_seconds, health],
            )?;
            let held = if alive == 0 {
                None
            } else {
                let mut statement = transaction.prepare(
                    "UPDATE submissions SET lease_until = ?2 + ?3 WHERE status = 'running' AND worker = ?1 \
                     AND id IN (SELECT value FROM json_each(?4)) RETURNING id",
                )?;
                let rows = statement.query_map(params![instance, now, lease_seconds, jobs], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                transaction.execute(
                    "UPDATE dry_runs SET lease_until = ?2 + ?3 WHERE worker = ?1 AND submission IN (SELECT value FROM json_each(?4))",
                    params![instance, now, lease_seconds, dry_runs],
                )?;
                Some(rows)
            };
            transaction.commit()?;
            Ok(held)
        })
        .await
    }

    async fn stop_worker(&self, instance: &str, now: i64) -> Result<usize> {
        let instance = instance.to_string();
        self.with(move |c| {
            let transaction = c.transaction()?;
            let released = transaction.execute(
                "UPDATE submissions SET status = 'queued', run_after = 0, attempts = MAX(attempts - 1, 0), worker = NULL, lease_until = 0 \
                 WHERE status = 'running' AND worker = ?1",
                [&instance],
            )?;
            transaction.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE worker = ?1", [&instance])?;
            transaction.execute("UPDATE workers SET stopped_at = ?2, lease_until = ?2 WHERE instance = ?1", params![instance, now])?;
            transaction.commit()?;
            Ok(released)
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.with(|c| {
            let mut statement =
                c.prepare(&format!("SELECT {WORKER_COLUMNS} FROM workers w ORDER BY w.stopped_at IS NOT NULL, w.heartbeat_at DESC LIMIT 500"))?;
            let rows = statement.query_map([], worker_row)?.collect();
            rows
        })
        .await
    }

    async fn unmatched_queued(&self, copies: &[TaskCopy]) -> Result<Vec<TaskCopy>> {
        let queued: Vec<TaskCopy> = self
            .with(|c| {
                let mut statement = c.prepare(
                    "SELECT DISTINCT task, spec_digest, data_digest FROM submissions WHERE status = 'queued' AND spec_digest != '' ORDER BY 1, 2, 3",
                )?;
                let rows = statement.query_map([], |r| Ok(TaskCopy { task: r.get(0)?, spec_digest: r.get(1)?, data_digest: r.get(2)? }))?.collect();
                rows
            })
            .await?;
        Ok(queued.into_iter().filter(|q| !copies.contains(q)).collect())
    }

    async fn requeue_all_running(&self) -> Result<usize> {
        self.with(|c| {
            let transaction = c.transaction()?;
            // The attempt that was cut short is not the candidate's: give it back.
            let n = transaction.execute(
                "UPDATE submissions SET status = 'queued', run_after = 0, attempts = MAX(attempts - 1, 0), worker = NULL, lease_until = 0 WHERE status = 'running'",
                [],
            )?;
            transaction.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0", [])?;
            transaction.execute("UPDATE workers SET stopped_at = heartbeat_at WHERE stopped_at IS NULL", [])?;
            transaction.commit()?;
            Ok(n)
        })
        .await
    }

    async fn submission(&self, id: i64) -> Result<Option<(Submission, Option<String>)>> {
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {SUBMISSION_COLUMNS}, s.report FROM submissions s JOIN assignments a ON a.id = s.assignment WHERE s.id = ?1"),
                [id],
                |row| Ok((submission_row(row)?, row.get(16)?)),
            )
            .optional()
        })
        .await
    }

    async fn submissions(&self, assignment: Option<&str>, task: Option<&TaskId>) -> Result<Vec<Submission>> {
        let (assignment, task) = (assignment.map(str::to_string), task.cloned());
        self.with(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions s JOIN assignments a ON a.id = s.assignment \
                 WHERE (?1 IS NULL OR s.assignment = ?1) AND (?2 IS NULL OR s.task = ?2) ORDER BY s.id DESC"
            ))?;
            let rows = statement.query_map(params![assignment, task], submission_row)?.collect();
            rows
        })
        .await
    }

    async fn recent_submissions(&self, limit: i64) -> Result<Vec<Submission>> {
        self.with(move |c| {
            let mut statement =
                c.prepare(&format!("SELECT {SUBMISSION_COLUMNS} FROM submissions s JOIN assignments a ON a.id = s.assignment ORDER BY s.id DESC LIMIT ?1"))?;
            let rows = statement.query_map([limit], submission_row)?.collect();
            rows
        })
        .await
    }

    async fn submission_counts(&self) -> Result<HashMap<String, i64>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT assignment, COUNT(*) FROM submissions GROUP BY assignment")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            rows
        })
        .await
    }

    async fn graded_provenance(&self, task: &TaskId) -> Result<Vec<GradedWith>> {
        let task = task.clone();
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT s.id, s.assignment, a.candidate, s.score, \
                 COALESCE(json_extract(s.report, '$.provenance.task_digest'), ''), \
                 COALESCE(json_extract(s.report, '$.provenance.dataset_digest'), ''), \
                 COALESCE(json_extract(s.report, '$.provenance.image'), ''), \
                 COALESCE(json_extract(s.report, '$.methodology'), '[]'), \
                 json_object('slices', json(COALESCE(json_extract(s.report, '$.components.accuracy.slices'), '[]')), \
                   'outputs', json(COALESCE((SELECT json_group_array(json_object('file', json_extract(o.value, '$.file'), \
                     'slices', json(COALESCE(json_extract(o.value, '$.slices'), '[]')))) \
                     FROM json_each(s.report, '$.components.accuracy.outputs') o), '[]'))), \
                 json_object('accuracy', json_extract(s.report, '$.components.accuracy.score'), \
                   'code_quality', json_extract(s.report, '$.components.code_quality.score'), \
                   'runtime', json_extract(s.report, '$.components.runtime.score')) \
                 FROM submissions s JOIN assignments a ON a.id = s.assignment \
                 WHERE s.task = ?1 AND s.status = 'graded' AND json_valid(s.report) ORDER BY s.id DESC",
            )?;
            let rows = statement
                .query_map([task], |r| {
                    Ok(GradedWith {
                        submission: r.get(0)?,
                        assignment: r.get(1)?,
                        candidate: r.get(2)?,
                        score: r.get(3)?,
                        task_digest: r.get(4)?,
                        dataset_digest: r.get(5)?,
                        image: r.get(6)?,
                        methodology: r.get(7)?,
                        slices: r.get(8)?,
                        components: r.get(9)?,
                    })
                })?
                .collect();
            rows
        })
        .await
    }

    async fn regrade(&self, submission: Option<i64>, task: Option<&TaskId>, needs: &HashMap<TaskId, JobNeeds>) -> Result<usize> {
        let (task, needs) = (task.cloned(), needs.clone());
        self.with(move |c| {
            let transaction = c.transaction()?;
            let n = transaction.execute(
                "UPDATE submissions SET status = 'queued', kind = 1, run_after = 0, attempts = 0, previous_score = score, worker = NULL \
                 WHERE status IN ('graded', 'infrastructure_error') AND (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR task = ?2)",
                params![submission, task],
            )?;
            for (task, needs) in &needs {
                transaction.execute(
                    "UPDATE submissions SET spec_digest = ?2, data_digest = ?3, memory_bytes = ?4, runtime = ?5, gpus = ?7 \
                     WHERE status = 'queued' AND kind = 1 AND task = ?1 AND (?6 IS NULL OR id = ?6)",
                    params![task, needs.spec_digest, needs.data_digest, needs.memory_bytes, needs.runtime, submission, needs.gpus],
                )?;
            }
            transaction.commit()?;
            Ok(n)
        })
        .await
    }

    async fn add_note(&self, submission: i64, author: &str, text: &str, now: i64) -> Result<()> {
        let (author, text) = (author.to_string(), text.to_string());
        self.with(move |c| {
            c.execute("INSERT INTO notes (submission, author, text, created_at) VALUES (?1, ?2, ?3, ?4)", params![submission, author, text, now]).map(|_| ())
        })
        .await
    }

    async fn notes(&self, submission: i64) -> Result<Vec<Note>> {
        self.with(move |c| {
            let mut statement = c.prepare("SELECT author, text, created_at FROM notes WHERE submission = ?1 ORDER BY id")?;
            let rows = statement.query_map([submission], |r| Ok(Note { author: r.get(0)?, text: r.get(1)?, created_at: r.get(2)? }))?.collect();
            rows
        })
        .await
    }

    async fn add_extension(&self, assignment: &str, seconds: i64, reason: &str, author: &str, now: i64) -> Result<i64> {
        let (assignment, reason, author) = (assignment.to_string(), reason.to_string(), author.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO extensions (assignment, seconds, reason, author, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![assignment, seconds, reason, author, now],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn extensions(&self, assignment: &str) -> Result<Vec<Extension>> {
        let assignment = assignment.to_string();
        self.with(move |c| {
            let mut statement = c.prepare("SELECT id, assignment, seconds, reason, author, created_at FROM extensions WHERE assignment = ?1 ORDER BY id")?;
            let rows = statement
                .query_map([assignment], |r| {
                    Ok(Extension { id: r.get(0)?, assignment: r.get(1)?, seconds: r.get(2)?, reason: r.get(3)?, author: r.get(4)?, created_at: r.get(5)? })
                })?
                .collect();
            rows
        })
        .await
    }

    async fn choose_final(&self, assignment: &str, submission: i64, now: i64) -> Result<()> {
        let assignment = assignment.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO final_choices (assignment, submission, chosen_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (assignment) DO UPDATE SET submission = excluded.submission, chosen_at = excluded.chosen_at",
                params![assignment, submission, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn final_choice(&self, assignment: &str) -> Result<Option<(i64, i64)>> {
        let assignment = assignment.to_string();
        self.with(move |c| {
            c.query_row("SELECT submission, chosen_at FROM final_choices WHERE assignment = ?1", [assignment], |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })
        .await
    }

    async fn set_public_run(&self, submission: i64, body: &str, now: i64) -> Result<()> {
        let body = body.to_string();
        self.with(move |c| {
            let transaction = c.transaction()?;
            transaction.execute(
                "INSERT INTO public_runs (submission, body, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (submission) DO UPDATE SET body = excluded.body, created_at = excluded.created_at",
                params![submission, body, now],
            )?;
            transaction.execute("DELETE FROM dry_runs WHERE submission = ?1", [submission])?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn claim_dry_run(&self, instance: &str, tasks: &[TaskId], now: i64, lease_seconds: i64) -> Result<Option<DryRunClaim>> {
        let (instance, tasks) = (instance.to_string(), json_list(tasks.iter().map(|t| t.as_str().to_string())));
        self.with(move |c| {
            let transaction = c.transaction()?;
            let claim = transaction
                .query_row(
                    "SELECT d.submission, s.assignment, s.task, s.commit_sha FROM dry_runs d JOIN submissions s ON s.id = d.submission \
                     WHERE d.lease_until < ?1 AND s.task IN (SELECT value FROM json_each(?2)) ORDER BY d.queued_at, d.submission LIMIT 1",
                    params![now, tasks],
                    |row| Ok(DryRunClaim { submission: row.get(0)?, assignment: row.get(1)?, task: row.get(2)?, commit: row.get(3)? }),
                )
                .optional()?;
            if let Some(claim) = &claim {
                transaction.execute(
                    "UPDATE dry_runs SET worker = ?2, lease_until = ?3 + ?4 WHERE submission = ?1",
                    params![claim.submission, instance, now, lease_seconds],
                )?;
            }
            transaction.commit()?;
            Ok(claim)
        })
        .await
    }

    async fn release_dry_run(&self, submission: i64, instance: &str) -> Result<()> {
        let instance = instance.to_string();
        self.with(move |c| {
            c.execute("UPDATE dry_runs SET worker = NULL, lease_until = 0 WHERE submission = ?1 AND worker = ?2", params![submission, instance])?;
            Ok(())
        })
        .await
    }

    async fn dry_runs_waiting(&self) -> Result<i64> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM dry_runs", [], |r| r.get(0))).await
    }

    async fn public_run(&self, submission: i64) -> Result<Option<String>> {
        self.with(move |c| c.query_row("SELECT body FROM public_runs WHERE submission = ?1", [submission], |r| r.get(0)).optional()).await
    }

    async fn report_history(&self, submission: i64) -> Result<Vec<PastReport>> {
        self.with(move |c| {
            let mut statement =
                c.prepare("SELECT id, submission, grade_status, score, report, graded_at, replaced_at FROM report_history WHERE submission = ?1 ORDER BY id")?;
            let rows = statement
                .query_map([submission], |r| {
                    let grade: Option<String> = r.get(2)?;
                    Ok(PastReport {
                        id: r.get(0)?,
                        submission: r.get(1)?,
                        grade_status: grade.map(|g| super::parse_grade(&g).ok_or_else(|| bad_value(2, &g))).transpose()?,
                        score: r.get(3)?,
                        report: r.get(4)?,
                        graded_at: r.get(5)?,
                        replaced_at: r.get(6)?,
                    })
                })?
                .collect();
            rows
        })
        .await
    }

    async fn add_review(&self, assignment: &str, submission: i64, kind: ReviewKind, author: &str, body: &str, now: i64) -> Result<i64> {
        let (assignment, author, body) = (assignment.to_string(), author.to_string(), body.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO reviews (assignment, submission, kind, author, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![assignment, submission, kind.as_str(), author, body, now],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn edit_review(&self, id: i64, author: &str, body: &str, now: i64) -> Result<bool> {
        let (author, body) = (author.to_string(), body.to_string());
        self.with(move |c| {
            c.execute("UPDATE reviews SET body = ?3, updated_at = ?4 WHERE id = ?1 AND author = ?2", params![id, author, body, now]).map(|n| n == 1)
        })
        .await
    }

    async fn reviews(&self, assignment: Option<&str>) -> Result<Vec<ReviewItem>> {
        let assignment = assignment.map(str::to_string);
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT id, assignment, submission, kind, author, body, created_at, updated_at FROM reviews WHERE (?1 IS NULL OR assignment = ?1) ORDER BY id",
            )?;
            let rows = statement.query_map([assignment], review_row)?.collect();
            rows
        })
        .await
    }

    async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>> {
        self.with(move |c| {
            c.query_row("SELECT id, assignment, submission, kind, author, body, created_at, updated_at FROM reviews WHERE id = ?1", [id], review_row).optional()
        })
        .await
    }

    async fn task_reviews(&self, task: &TaskId) -> Result<Vec<ReviewItem>> {
        let task = task.clone();
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT r.id, r.assignment, r.submission, r.kind, r.author, r.body, r.created_at, r.updated_at FROM reviews r JOIN assignments a ON a.id = r.assignment WHERE a.task = ?1 ORDER BY r.id",
            )?;
            let rows = statement
                .query_map([task], review_row)?
                .collect();
            rows
        })
        .await
    }

    async fn queue_webhook(&self, event: &str, body: &str, now: i64) -> Result<i64> {
        let (event, body) = (event.to_string(), body.to_string());
        self.with(move |c| {
            c.execute("INSERT INTO webhooks (event, body, next_at, created_at) VALUES (?1, ?2, ?3, ?3)", params![event, body, now])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<Webhook>> {
        self.with(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![now, limit], webhook_row)?.collect();
            rows
        })
        .await
    }

    async fn webhook_attempted(&self, id: i64, delivered: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()> {
        let error = error.to_string();
        self.with(move |c| {
            if delivered {
                c.execute("UPDATE webhooks SET attempts = attempts + 1, delivered_at = ?2, last_error = '' WHERE id = ?1", params![id, now])?;
            } else {
                c.execute(
                    "UPDATE webhooks SET attempts = attempts + 1, last_error = ?2, next_at = COALESCE(?3, next_at), \
                     failed_at = CASE WHEN ?3 IS NULL THEN ?4 ELSE NULL END WHERE id = ?1",
                    params![id, error, retry_at, now],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn task_version(&self, task: &TaskId) -> Result<(i64, i64)> {
        let task = task.clone();
        self.with(move |c| c.query_row("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM submissions WHERE task = ?1", [&task], |r| Ok((r.get(0)?, r.get(1)?)))).await
    }

    async fn set_contact(&self, assignment: &str, email: &str) -> Result<()> {
        let (assignment, email) = (assignment.to_string(), email.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO contacts (assignment, email) VALUES (?1, ?2) ON CONFLICT (assignment) DO UPDATE SET email = excluded.email",
                params![assignment, email],
            )
            .map(|_| ())
        })
        .await
    }

    async fn contacts(&self) -> Result<HashMap<String, String>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT assignment, email FROM contacts")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            rows
        })
        .await
    }

    async fn queue_email(&self, assignment: &str, key: &str, kind: EmailKind, data: &str, now: i64) -> Result<bool> {
        let (assignment, key, data) = (assignment.to_string(), key.to_string(), data.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO emails (assignment, key, kind, data, created_at, next_at) SELECT ?1, ?2, ?3, ?4, ?5, ?5 \
                 WHERE EXISTS (SELECT 1 FROM contacts WHERE assignment = ?1) ON CONFLICT (key) DO NOTHING",
                params![assignment, key, kind.as_str(), data, now],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn due_emails(&self, now: i64, limit: i64) -> Result<Vec<Email>> {
        self.with(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {EMAIL_COLUMNS} FROM emails e JOIN contacts c ON c.assignment = e.assignment \
                 WHERE e.sent_at IS NULL AND e.failed_at IS NULL AND e.next_at <= ?1 ORDER BY e.id LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![now, limit], email_row)?.collect();
            rows
        })
        .await
    }

    async fn email_attempted(&self, id: i64, sent: bool, retry_at: Option<i64>, error: &str, now: i64) -> Result<()> {
        let error = error.to_string();
        self.with(move |c| {
            if sent {
                c.execute("UPDATE emails SET attempts = attempts + 1, sent_at = ?2, last_error = '', data = '{}' WHERE id = ?1", params![id, now])?;
            } else {
                c.execute(
                    "UPDATE emails SET attempts = attempts + 1, last_error = ?2, next_at = COALESCE(?3, next_at), \
                     failed_at = CASE WHEN ?3 IS NULL THEN ?4 ELSE NULL END, data = CASE WHEN ?3 IS NULL THEN '{}' ELSE data END WHERE id = ?1",
                    params![id, error, retry_at, now],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn emails(&self, limit: i64) -> Result<Vec<Email>> {
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT e.id, e.assignment, e.key, e.kind, '', '', e.created_at, e.attempts, e.next_at, e.sent_at, e.failed_at, e.last_error \
                 FROM emails e ORDER BY e.id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit], email_row)?.collect();
            rows
        })
        .await
    }

    async fn webhooks(&self, limit: i64) -> Result<Vec<Webhook>> {
        self.with(move |c| {
            let mut statement = c.prepare(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id DESC LIMIT ?1"))?;
            let rows = statement.query_map(params![limit], webhook_row)?.collect();
            rows
        })
        .await
    }

    async fn erase_assignment(&self, id: &str, erasure: &Erasure) -> Result<(Vec<i64>, i64)> {
        let id_for_error = id.to_string();
        let (id, erasure) = (id.to_string(), erasure.clone());
        self.with(move |c| {
            let t = c.transaction()?;
            let task: Option<String> = t.query_row("SELECT task FROM assignments WHERE id = ?1", [&id], |r| r.get(0)).optional()?;
            if task.is_none() {
                return Ok(None);
            }
            let submissions: Vec<i64> = {
                let mut statement = t.prepare("SELECT id FROM submissions WHERE assignment = ?1")?;
                let rows = statement.query_map([&id], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
                rows
            };
            let mut rows = 0i64;
            for table in ["notes", "report_history", "public_runs", "dry_runs"] {
                rows += t.execute(&format!("DELETE FROM {table} WHERE submission IN (SELECT id FROM submissions WHERE assignment = ?1)"), [&id])? as i64;
            }
            for table in ["final_choices", "reviews", "extensions", "emails", "contacts", "submissions"] {
                rows += t.execute(&format!("DELETE FROM {table} WHERE assignment = ?1"), [&id])? as i64;
            }
            rows += t.execute("DELETE FROM webhooks WHERE instr(body, ?1) > 0", [format!("\"{id}\"")])? as i64;
            rows += t.execute("DELETE FROM assignments WHERE id = ?1", [&id])? as i64;
            t.execute(
                "INSERT INTO erasures (task, erased_at, erased_by, reason, rows) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![erasure.task, erasure.erased_at, erasure.erased_by, erasure.reason, rows],
            )?;
            t.commit()?;
            // The write-ahead log holds the deleted rows' old pages until a checkpoint: empty it.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(Some((submissions, rows)))
        })
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no assignment {}", id_for_error)))
    }

    async fn erasures(&self) -> Result<Vec<Erasure>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT task, erased_at, erased_by, reason, rows FROM erasures ORDER BY id DESC")?;
            let rows = statement
                .query_map([], |r| Ok(Erasure { task: r.get(0)?, erased_at: r.get(1)?, erased_by: r.get(2)?, reason: r.get(3)?, rows: r.get(4)? }))?
                .collect();
            rows
        })
        .await
    }

    async fn review_states(&self) -> Result<HashMap<String, ReviewState>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT assignment, COUNT(DISTINCT CASE WHEN kind = 'scores' THEN author END), MAX(CASE WHEN kind = 'decision' THEN 1 ELSE 0 END), MAX(CASE WHEN kind = 'decision' THEN updated_at END) FROM reviews GROUP BY assignment")?;
            let rows = statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, ReviewState { scored_by: r.get(1)?, decided: r.get::<_, i64>(2)? == 1, decided_at: r.get(3)? })))?
                .collect();
            rows
        })
        .await
    }

    async fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT COALESCE(grade_status, status), COUNT(*) FROM submissions GROUP BY 1 ORDER BY 1")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            rows
        })
        .await
    }

    async fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()> {
        let (token_hash, user) = (token_hash.to_string(), user.to_string());
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
            c.execute("INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)", params![token_hash, user, now, expires_at])
                .map(|_| ())
        })
        .await
    }

    async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        let token_hash = token_hash.to_string();
        self.with(move |c| {
            c.query_row("SELECT user FROM sessions WHERE token_hash = ?1 AND expires_at > ?2", params![token_hash, now], |r| r.get(0)).optional()
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_string();
        self.with(move |c| c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash]).map(|_| ())).await
    }

    async fn delete_sessions_of(&self, user: &str) -> Result<usize> {
        let user = user.to_string();
        self.with(move |c| c.execute("DELETE FROM sessions WHERE user = ?1", [user])).await
    }
}

/// The fencing condition: parameters ?1 submission, ?2 instance, ?3 attempt.
const FENCED: &str = "id = ?1 AND status = 'running' AND worker = ?2 AND attempts = ?3";

/// Jobs whose lease ran out too often, or that were given back after too many attempts, become
/// `infrastructure_error` (?1 now, ?2 the most attempts).
const EXPIRE: &str = "UPDATE submissions SET status = 'infrastructure_error', finished_at = ?1, worker = NULL, lease_until = 0, \
     error = 'its worker stopped answering on every attempt (' || attempts || ')' \
     WHERE attempts >= ?2 AND ((status = 'running' AND lease_until < ?1) OR status = 'queued')";

fn fenced(changed: usize, fence: &Fence) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced { submission: fence.submission, attempt: fence.attempt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(id: &str) -> Assignment {
        Assignment {
            id: id.into(),
            task: "t".parse().unwrap(),
            candidate: "c@example.com".into(),
            token_hash: "h".into(),
            time_box_seconds: 3600,
            starts: super::Starts::Now,
            started_at: Some(0),
            created_at: 0,
            extra_seconds: 0,
        }
    }

    fn needs() -> JobNeeds {
        JobNeeds { spec_digest: "s1".into(), data_digest: "d1".into(), memory_bytes: 1 << 30, runtime: "runc".into(), gpus: 0 }
    }

    fn request(instance: &str, now: i64) -> ClaimRequest {
        ClaimRequest {
            instance: instance.into(),
            now,
            lease_seconds: 30,
            free_memory_bytes: 4 << 30,
            runtimes: vec!["runc".into()],
            free_gpus: 0,
            copies: vec![TaskCopy { task: "t".parse().unwrap(), spec_digest: "s1".into(), data_digest: "d1".into() }],
            max_attempts: 3,
        }
    }

    #[tokio::test]
    async fn a_job_is_claimed_once_fenced_and_requeued_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        store.create_assignment(&assignment("a1")).await.unwrap();
        let (id, number, position, _) = store.add_submission("a1", "abc", &needs(), 10, 0).await.unwrap();
        assert_eq!((number, position), (1, 1));
        assert_eq!(store.add_submission("a1", "def", &needs(), 11, 0).await.unwrap().1, 2);
        let first = store.claim(&request("w1", 12)).await.unwrap().unwrap();
        assert_eq!((first.submission(), first.candidate.as_str(), first.number), (id, "c@example.com", 1));
        let second = store.claim(&request("w2", 12)).await.unwrap().unwrap();
        assert_ne!(second.submission(), id);
        assert!(store.claim(&request("w3", 12)).await.unwrap().is_none());
        // w1's lease runs out: w3 takes the job over with the next attempt, and w1's late result is refused.
        let taken = store.claim(&request("w3", 43)).await.unwrap().unwrap();
        assert_eq!((taken.submission(), taken.attempts()), (id, 2));
        let late = store.finish(&first.fence, GradeStatus::Graded, 99.0, "{}", 44, false).await;
        assert!(matches!(late, Err(StoreError::Fenced { attempt: 1, .. })), "{late:?}");
        store.finish(&taken.fence, GradeStatus::Graded, 88.0, "{}", 45, false).await.unwrap();
        assert_eq!(store.requeue_all_running().await.unwrap(), 1, "w2's job, as after a crash");
        let again = store.claim(&request("w1", 50)).await.unwrap().unwrap();
        assert_eq!((again.submission(), again.attempts()), (second.submission(), 1));
        store.fail(&again.fence, "docker down", Some(100), 51).await.unwrap();
        assert!(store.claim(&request("w1", 52)).await.unwrap().is_none(), "not before run_after");
        assert_eq!(store.regrade(Some(id), None, &HashMap::new()).await.unwrap(), 1);
        let (row, _) = store.submission(id).await.unwrap().unwrap();
        assert_eq!((row.status, row.previous_score), (JobStatus::Queued, Some(88.0)));
    }

    #[tokio::test]
    async fn at_most_so_many_pushes_an_hour_are_graded_the_rest_wait_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_assignment(&assignment("a1")).await.unwrap();
        store.create_assignment(&assignment("a2")).await.unwrap();
        // Three an hour: pushes at 0, 10 and 20 s go at once; the fourth (30 s) waits for 3600 s,
        // the fifth (40 s) for 3610 s; the sixth, pushed after the first's hour, at once.
        let mut from = Vec::new();
        for at in [0, 10, 20, 30, 40] {
            from.push(store.add_submission("a1", "c", &needs(), at, 3).await.unwrap().3);
        }
        assert_eq!(from, [0, 0, 0, 3600, 3610]);
        // A waiting push is not claimed before its turn (each claimed one is graded at once).
        let mut graded = Vec::new();
        for at in [100, 100, 100, 100, 3600, 3605, 3610] {
            match store.claim(&request("w1", at)).await.unwrap() {
                Some(job) => {
                    store.finish(&job.fence, GradeStatus::Graded, 1.0, "{}", at, false).await.unwrap();
                    graded.push((job.number, at));
                }
                None => graded.push((0, at)),
            }
        }
        assert_eq!(graded, [(1, 100), (2, 100), (3, 100), (0, 100), (4, 3600), (0, 3605), (5, 3610)]);
        // At 3700 s the hour before holds two (3600, 3610): at once; at 3705 s the third of the
        // hour from 3600 s is taken, so it waits until 7200 s.
        assert_eq!(store.add_submission("a1", "c", &needs(), 3700, 3).await.unwrap().3, 0);
        assert_eq!(store.add_submission("a1", "c", &needs(), 3705, 3).await.unwrap().3, 7200);
        // Another assignment has its own hours; 0 is no limit.
        assert_eq!(store.add_submission("a2", "c", &needs(), 41, 3).await.unwrap().3, 0);
        for at in 50..60 {
            assert_eq!(store.add_submission("a2", "c", &needs(), at, 0).await.unwrap().3, 0);
        }
    }

    #[tokio::test]
    async fn public_dry_runs_wait_in_the_store_in_order_under_a_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_assignment(&assignment("a1")).await.unwrap();
        let (first, ..) = store.add_submission("a1", "abc", &needs(), 10, 0).await.unwrap();
        let (second, ..) = store.add_submission("a1", "def", &needs(), 11, 0).await.unwrap();
        let tasks: Vec<TaskId> = vec!["t".parse().unwrap()];
        for (id, at) in [(first, 12), (second, 13)] {
            let job = store.claim(&request("w1", at)).await.unwrap().unwrap();
            assert_eq!(job.submission(), id);
            store.finish(&job.fence, GradeStatus::Graded, 50.0, "{}", at, true).await.unwrap();
        }
        assert_eq!(store.dry_runs_waiting().await.unwrap(), 2);
        assert!(store.claim_dry_run("w1", &["other".parse().unwrap()], 14, 30).await.unwrap().is_none(), "only tasks the worker has");
        let taken = store.claim_dry_run("w1", &tasks, 14, 30).await.unwrap().unwrap();
        assert_eq!((taken.submission, taken.commit.as_str()), (first, "abc"));
        // Given back (graded work came first): first in line again.
        store.release_dry_run(first, "w1").await.unwrap();
        assert_eq!(store.claim_dry_run("w2", &tasks, 15, 30).await.unwrap().unwrap().submission, first);
        assert_eq!(store.claim_dry_run("w2", &tasks, 15, 30).await.unwrap().unwrap().submission, second);
        assert!(store.claim_dry_run("w3", &tasks, 16, 30).await.unwrap().is_none(), "both are held");
        // w2 dies: after its lease, another takes them; a stored result takes one off the queue.
        store.set_public_run(second, "{}", 20).await.unwrap();
        assert_eq!(store.claim_dry_run("w3", &tasks, 46, 30).await.unwrap().unwrap().submission, first);
        assert!(store.claim_dry_run("w3", &tasks, 46, 30).await.unwrap().is_none());
        // A crash of the one process: every dry run waits again.
        store.requeue_all_running().await.unwrap();
        assert_eq!(store.claim_dry_run("w4", &tasks, 47, 30).await.unwrap().unwrap().submission, first);
        assert_eq!(store.dry_runs_waiting().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn claims_fit_the_worker_and_its_copies_and_are_fair() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        for (id, task) in [("a1", "t"), ("a2", "t"), ("b1", "u")] {
            store.create_assignment(&Assignment { task: task.parse().unwrap(), ..assignment(id) }).await.unwrap();
        }
        let u_needs = JobNeeds { spec_digest: "s2".into(), data_digest: "d2".into(), ..needs() };
        let (t1, ..) = store.add_submission("a1", "c1", &needs(), 1, 0).await.unwrap();
        let (t2, ..) = store.add_submission("a1", "c2", &needs(), 2, 0).await.unwrap();
        let (t3, ..) = store.add_submission("a2", "c3", &needs(), 3, 0).await.unwrap();
        let (u1, ..) = store.add_submission("b1", "c4", &u_needs, 4, 0).await.unwrap();
        let mut both = request("w1", 10);
        both.copies.push(TaskCopy { task: "u".parse().unwrap(), spec_digest: "s2".into(), data_digest: "d2".into() });
        // Oldest first, then the task with fewer running (u), then the assignment with fewer (a2).
        assert_eq!(store.claim(&both).await.unwrap().unwrap().submission(), t1);
        assert_eq!(store.claim(&both).await.unwrap().unwrap().submission(), u1);
        assert_eq!(store.claim(&both).await.unwrap().unwrap().submission(), t3);
        // A worker whose copy of t differs, or with too little memory or no runsc, takes nothing.
        let stale =
            ClaimRequest { copies: vec![TaskCopy { task: "t".parse().unwrap(), spec_digest: "s1".into(), data_digest: "OLD".into() }], ..request("w2", 10) };
        assert!(store.claim(&stale).await.unwrap().is_none());
        assert_eq!(
            store.unmatched_queued(&stale.copies).await.unwrap(),
            vec![TaskCopy { task: "t".parse().unwrap(), spec_digest: "s1".into(), data_digest: "d1".into() }]
        );
        assert!(store.claim(&ClaimRequest { free_memory_bytes: 1 << 20, ..request("w2", 10) }).await.unwrap().is_none());
        let (r1, ..) = store.add_submission("a2", "c5", &JobNeeds { runtime: "runsc".into(), ..needs() }, 11, 0).await.unwrap();
        assert_eq!(store.claim(&request("w2", 12)).await.unwrap().unwrap().submission(), t2);
        assert!(store.claim(&request("w2", 12)).await.unwrap().is_none(), "runsc needed");
        let runsc = ClaimRequest { runtimes: vec!["runc".into(), "runsc".into()], ..request("w2", 12) };
        assert_eq!(store.claim(&runsc).await.unwrap().unwrap().submission(), r1);
        // A job whose steps ask for a GPU goes only to a worker with one free.
        let (g1, ..) = store.add_submission("a2", "c7", &JobNeeds { gpus: 1, ..needs() }, 12, 0).await.unwrap();
        assert!(store.claim(&request("w2", 12)).await.unwrap().is_none(), "no GPU free on w2");
        let gpu = ClaimRequest { free_gpus: 2, ..request("w4", 12) };
        let claimed = store.claim(&gpu).await.unwrap().unwrap();
        assert_eq!((claimed.submission(), claimed.needs.gpus), (g1, 1));
        // A fresh push goes before a regrade queued earlier.
        for job in [t1, t3] {
            let (row, _) = store.submission(job).await.unwrap().unwrap();
            let fence = Fence { submission: job, instance: row.worker.unwrap(), attempt: 1 };
            store.finish(&fence, GradeStatus::Graded, 50.0, "{}", 13, false).await.unwrap();
        }
        assert_eq!(store.regrade(None, Some(&"t".parse().unwrap()), &HashMap::new()).await.unwrap(), 2);
        let (fresh, ..) = store.add_submission("a1", "c6", &needs(), 14, 0).await.unwrap();
        assert_eq!(store.claim(&request("w3", 15)).await.unwrap().unwrap().submission(), fresh);
    }

    #[tokio::test]
    async fn workers_heartbeat_hold_their_jobs_and_replace_dead_predecessors() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_assignment(&assignment("a1")).await.unwrap();
        let worker = |instance: &str, now: i64| WorkerInfo {
            instance: instance.into(),
            name: "host-a".into(),
            version: "0".into(),
            slots: 2,
            memory_bytes: 4 << 30,
            runtimes: vec!["runc".into()],
            started_at: now,
            heartbeat_at: now,
            lease_until: now + 30,
            stopped_at: None,
            health: String::new(),
            running: 0,
            gpus: 0,
        };
        assert!(store.register_worker(&worker("i1", 0)).await.unwrap().is_empty());
        let (id, ..) = store.add_submission("a1", "abc", &needs(), 1, 0).await.unwrap();
        let job = store.claim(&request("i1", 2)).await.unwrap().unwrap();
        let holding = Holding { jobs: vec![id], dry_runs: vec![] };
        assert_eq!(store.heartbeat("i1", 20, 30, "", &holding).await.unwrap(), Some(vec![id]));
        assert!(store.claim(&request("i9", 40)).await.unwrap().is_none(), "the renewed lease holds until 50");
        // i1 dies (kill -9) and host-a starts again as i2: i1's job is queued again at once.
        assert_eq!(store.register_worker(&worker("i2", 41)).await.unwrap(), vec!["i1".to_string()]);
        assert_eq!(store.heartbeat("i1", 42, 30, "", &holding).await.unwrap(), None, "a replaced instance must stop");
        let workers = store.workers().await.unwrap();
        assert_eq!((workers[0].instance.as_str(), workers[0].alive(42)), ("i2", true));
        assert!(!workers[1].alive(42));
        let again = store.claim(&request("i2", 43)).await.unwrap().unwrap();
        assert_eq!((again.submission(), again.attempts()), (id, 2), "the crash counts an attempt");
        assert!(matches!(store.release(&job.fence).await, Err(StoreError::Fenced { .. })));
        assert_eq!(store.stop_worker("i2", 44).await.unwrap(), 1);
        let (row, _) = store.submission(id).await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (JobStatus::Queued, 1), "a clean stop gives the attempt back");
    }

    #[tokio::test]
    async fn a_job_the_worker_does_not_hold_is_not_renewed_and_is_claimed_again() {
        // The claim's answer was lost (or the report could not be stored): the store says i1 runs
        // the job, the worker does not. Its lease must run out, not be renewed for ever.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_assignment(&assignment("a1")).await.unwrap();
        let info = WorkerInfo {
            instance: "i1".into(),
            name: "host-a".into(),
            version: "0".into(),
            slots: 2,
            memory_bytes: 4 << 30,
            runtimes: vec!["runc".into()],
            started_at: 0,
            heartbeat_at: 0,
            lease_until: 30,
            stopped_at: None,
            health: String::new(),
            running: 0,
            gpus: 0,
        };
        store.register_worker(&info).await.unwrap();
        let (lost, ..) = store.add_submission("a1", "abc", &needs(), 1, 0).await.unwrap();
        let (kept, ..) = store.add_submission("a1", "def", &needs(), 2, 0).await.unwrap();
        let first = store.claim(&request("i1", 1)).await.unwrap().unwrap();
        let second = store.claim(&request("i1", 1)).await.unwrap().unwrap();
        assert_eq!([first.submission(), second.submission()], [lost, kept]);
        let holding = Holding { jobs: vec![kept], dry_runs: vec![] };
        for now in [10, 20, 30] {
            assert_eq!(store.heartbeat("i1", now, 30, "", &holding).await.unwrap(), Some(vec![kept]), "only what the worker holds");
        }
        let again = store.claim(&request("i1", 32)).await.unwrap().expect("the unheld job's lease ran out at 31");
        assert_eq!((again.submission(), again.attempts()), (lost, 2));
        assert!(store.claim(&request("i1", 32)).await.unwrap().is_none(), "the held job is renewed until 60");
    }

    #[tokio::test]
    async fn sessions_expire_and_log_out_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_session("h1", "ada", 100, 200).await.unwrap();
        store.create_session("h2", "ada", 100, 300).await.unwrap();
        store.create_session("h3", "bob", 100, 300).await.unwrap();
        assert_eq!(store.session_user("h1", 150).await.unwrap().as_deref(), Some("ada"));
        assert_eq!(store.session_user("h1", 200).await.unwrap(), None, "expired");
        assert_eq!(store.delete_sessions_of("ada").await.unwrap(), 2);
        assert_eq!(store.session_user("h2", 150).await.unwrap(), None);
        assert_eq!(store.session_user("h3", 150).await.unwrap().as_deref(), Some("bob"));
        // A store opened again (a restart) keeps the sessions.
        drop(store);
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(store.session_user("h3", 150).await.unwrap().as_deref(), Some("bob"));
    }

    #[test]
    fn a_file_from_before_numbered_migrations_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let connection = Connection::open(&path).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection
                .execute_batch(
                    "INSERT INTO assignments VALUES ('a1', 't', 'c', 'h', 60, 'now', 0, 0); \
                     INSERT INTO submissions (assignment, number, commit_sha, pushed_at, status) VALUES ('a1', 1, 'abc', 1, 'queued');",
                )
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let task: String = store.with_blocking(|c| c.query_row("SELECT task FROM submissions", [], |r| r.get(0))).unwrap();
        assert_eq!(task, "t", "old rows learn their task");
    }
}
