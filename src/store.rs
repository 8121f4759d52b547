//! The durable store: assignments, submissions (which are also the job queue) and review notes.
//!
//! Invariants: only this module touches SQL. One SQLite file in WAL mode; every write is one
//! statement or one transaction, so a crash at any point leaves either the old or the new state.
//! A submission is recorded (status `queued`) before the push is acknowledged, so no accepted push
//! is ever lost. Jobs are claimed with one `UPDATE … RETURNING`, so two workers never get the
//! same job; PostgreSQL would do the same with `FOR UPDATE SKIP LOCKED` behind the same trait.
//! Calls block: async callers use `spawn_blocking`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Serialize)]
pub struct Assignment {
    pub id: String,
    pub task: String,
    pub candidate: String,
    #[serde(skip)]
    pub token_hash: String,
    pub time_box_seconds: i64,
    pub starts: String,
    pub started_at: Option<i64>,
    pub created_at: i64,
}

impl Assignment {
    /// The deadline, once the clock has started.
    pub fn deadline(&self) -> Option<i64> {
        self.started_at.map(|start| start + self.time_box_seconds)
    }
    /// Seconds left at `now` (the full time box before the clock starts; 0 after the deadline).
    pub fn seconds_left(&self, now: i64) -> i64 {
        match self.deadline() {
            Some(deadline) => (deadline - now).max(0),
            None => self.time_box_seconds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    pub id: i64,
    pub assignment: String,
    pub task: String,
    pub candidate: String,
    pub number: i64,
    pub commit: String,
    pub pushed_at: i64,
    /// queued, running, graded or infrastructure_error.
    pub status: String,
    pub attempts: i64,
    /// The grade's status (graded, step_failed, bad_output, rejected) once graded.
    pub grade_status: Option<String>,
    pub score: Option<f64>,
    pub previous_score: Option<f64>,
    pub error: Option<String>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub author: String,
    pub text: String,
    pub created_at: i64,
}

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub submission: i64,
    pub assignment: String,
    pub task: String,
    pub candidate: String,
    pub commit: String,
    pub attempts: i64,
}

/// The store's narrow surface; `SqliteStore` is the one-machine backend.
pub trait Store: Send + Sync + 'static {
    fn create_assignment(&self, assignment: &Assignment) -> Result<()>;
    fn assignment(&self, id: &str) -> Result<Option<Assignment>>;
    fn assignments(&self) -> Result<Vec<Assignment>>;
    /// Starts the clock if it has not started; returns the assignment as it now is.
    fn start_clock(&self, id: &str, now: i64) -> Result<Assignment>;
    /// Records an accepted push as a queued submission; returns (submission id, number, queue position).
    fn add_submission(&self, assignment: &str, commit: &str, now: i64) -> Result<(i64, i64, i64)>;
    fn claim(&self, worker: &str, now: i64) -> Result<Option<Claimed>>;
    fn finish(&self, submission: i64, grade_status: &str, score: f64, report_json: &str, now: i64) -> Result<()>;
    /// A failure on our side: back to the queue after `retry_at`, or `infrastructure_error` when `None`.
    fn fail(&self, submission: i64, error: &str, retry_at: Option<i64>, now: i64) -> Result<()>;
    /// Puts running jobs back in the queue (start-up after a crash, shutdown); returns how many.
    fn requeue_running(&self) -> Result<usize>;
    fn submission(&self, id: i64) -> Result<Option<(Submission, Option<String>)>>;
    fn submissions(&self, assignment: Option<&str>, task: Option<&str>) -> Result<Vec<Submission>>;
    /// Queues graded submissions again (one, or every one of a task), keeping the old score.
    fn regrade(&self, submission: Option<i64>, task: Option<&str>) -> Result<usize>;
    fn add_note(&self, submission: i64, author: &str, text: &str, now: i64) -> Result<()>;
    fn notes(&self, submission: i64) -> Result<Vec<Note>>;
    /// (status, count) over all submissions.
    fn counts(&self) -> Result<Vec<(String, i64)>>;
    /// Records an assessor's login session (only the token's hash is stored).
    fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()>;
    /// The user of a session that has not expired (expired sessions are deleted on the way).
    fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>>;
    fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Ends every session of `user` ("log out everywhere"); returns how many.
    fn delete_sessions_of(&self, user: &str) -> Result<usize>;
}

pub struct SqliteStore {
    // std Mutex: every call is short and blocking; callers are on blocking threads.
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
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
";

const SUBMISSION_COLUMNS: &str = "s.id, s.assignment, a.task, a.candidate, s.number, s.commit_sha, s.pushed_at, s.status, s.attempts, \
     s.grade_status, s.score, s.previous_score, s.error, s.finished_at";

fn submission_row(row: &rusqlite::Row) -> rusqlite::Result<Submission> {
    Ok(Submission {
        id: row.get(0)?,
        assignment: row.get(1)?,
        task: row.get(2)?,
        candidate: row.get(3)?,
        number: row.get(4)?,
        commit: row.get(5)?,
        pushed_at: row.get(6)?,
        status: row.get(7)?,
        attempts: row.get(8)?,
        grade_status: row.get(9)?,
        score: row.get(10)?,
        previous_score: row.get(11)?,
        error: row.get(12)?,
        finished_at: row.get(13)?,
    })
}

fn assignment_row(row: &rusqlite::Row) -> rusqlite::Result<Assignment> {
    Ok(Assignment {
        id: row.get(0)?,
        task: row.get(1)?,
        candidate: row.get(2)?,
        token_hash: row.get(3)?,
        time_box_seconds: row.get(4)?,
        starts: row.get(5)?,
        started_at: row.get(6)?,
        created_at: row.get(7)?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, candidate, token_hash, time_box_seconds, starts, started_at, created_at";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteStore { connection: Mutex::new(connection) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut connection)?)
    }
}

impl Store for SqliteStore {
    fn create_assignment(&self, a: &Assignment) -> Result<()> {
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO assignments ({ASSIGNMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![a.id, a.task, a.candidate, a.token_hash, a.time_box_seconds, a.starts, a.started_at, a.created_at],
            )
            .map(|_| ())
        })
    }

    fn assignment(&self, id: &str) -> Result<Option<Assignment>> {
        self.with(|c| c.query_row(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = ?1"), [id], assignment_row).optional())
    }

    fn assignments(&self) -> Result<Vec<Assignment>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments ORDER BY created_at DESC, id"))?;
            let rows = statement.query_map([], assignment_row)?.collect();
            rows
        })
    }

    fn start_clock(&self, id: &str, now: i64) -> Result<Assignment> {
        self.with(|c| c.execute("UPDATE assignments SET started_at = ?2 WHERE id = ?1 AND started_at IS NULL", params![id, now]))?;
        self.assignment(id)?.ok_or_else(|| StoreError::NotFound(format!("no assignment {id}")))
    }

    fn add_submission(&self, assignment: &str, commit: &str, now: i64) -> Result<(i64, i64, i64)> {
        self.with(|c| {
            let transaction = c.transaction()?;
            let number: i64 =
                transaction.query_row("SELECT COALESCE(MAX(number), 0) + 1 FROM submissions WHERE assignment = ?1", [assignment], |r| r.get(0))?;
            transaction.execute(
                "INSERT INTO submissions (assignment, number, commit_sha, pushed_at, status) VALUES (?1, ?2, ?3, ?4, 'queued')",
                params![assignment, number, commit, now],
            )?;
            let id = transaction.last_insert_rowid();
            let position: i64 =
                transaction.query_row("SELECT COUNT(*) FROM submissions WHERE status IN ('queued', 'running') AND id <= ?1", [id], |r| r.get(0))?;
            transaction.commit()?;
            Ok((id, number, position))
        })
    }

    fn claim(&self, worker: &str, now: i64) -> Result<Option<Claimed>> {
        self.with(|c| {
            c.query_row(
                "UPDATE submissions SET status = 'running', worker = ?1, started_at = ?2, attempts = attempts + 1 \
                 WHERE id = (SELECT id FROM submissions WHERE status = 'queued' AND run_after <= ?2 ORDER BY id LIMIT 1) \
                 RETURNING id, assignment, commit_sha, attempts",
                params![worker, now],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, i64>(3)?)),
            )
            .optional()
        })?
        .map(|(submission, assignment, commit, attempts)| {
            let a = self.assignment(&assignment)?.ok_or_else(|| StoreError::NotFound(format!("no assignment {assignment}")))?;
            Ok(Claimed { submission, assignment, task: a.task, candidate: a.candidate, commit, attempts })
        })
        .transpose()
    }

    fn finish(&self, submission: i64, grade_status: &str, score: f64, report_json: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE submissions SET status = 'graded', grade_status = ?2, score = ?3, report = ?4, finished_at = ?5, error = NULL WHERE id = ?1",
                params![submission, grade_status, score, report_json, now],
            )
            .map(|_| ())
        })
    }

    fn fail(&self, submission: i64, error: &str, retry_at: Option<i64>, now: i64) -> Result<()> {
        self.with(|c| {
            match retry_at {
                Some(at) => c.execute("UPDATE submissions SET status = 'queued', run_after = ?2, error = ?3 WHERE id = ?1", params![submission, at, error]),
                None => c.execute(
                    "UPDATE submissions SET status = 'infrastructure_error', error = ?2, finished_at = ?3 WHERE id = ?1",
                    params![submission, error, now],
                ),
            }
            .map(|_| ())
        })
    }

    fn requeue_running(&self) -> Result<usize> {
        // The attempt that was cut short is not the candidate's: give it back.
        self.with(|c| c.execute("UPDATE submissions SET status = 'queued', run_after = 0, attempts = MAX(attempts - 1, 0) WHERE status = 'running'", []))
    }

    fn submission(&self, id: i64) -> Result<Option<(Submission, Option<String>)>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {SUBMISSION_COLUMNS}, s.report FROM submissions s JOIN assignments a ON a.id = s.assignment WHERE s.id = ?1"),
                [id],
                |row| Ok((submission_row(row)?, row.get(14)?)),
            )
            .optional()
        })
    }

    fn submissions(&self, assignment: Option<&str>, task: Option<&str>) -> Result<Vec<Submission>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions s JOIN assignments a ON a.id = s.assignment \
                 WHERE (?1 IS NULL OR s.assignment = ?1) AND (?2 IS NULL OR a.task = ?2) ORDER BY s.id DESC"
            ))?;
            let rows = statement.query_map(params![assignment, task], submission_row)?.collect();
            rows
        })
    }

    fn regrade(&self, submission: Option<i64>, task: Option<&str>) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE submissions SET status = 'queued', run_after = 0, attempts = 0, previous_score = score \
                 WHERE status IN ('graded', 'infrastructure_error') AND (?1 IS NULL OR id = ?1) \
                 AND (?2 IS NULL OR assignment IN (SELECT id FROM assignments WHERE task = ?2))",
                params![submission, task],
            )
        })
    }

    fn add_note(&self, submission: i64, author: &str, text: &str, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute("INSERT INTO notes (submission, author, text, created_at) VALUES (?1, ?2, ?3, ?4)", params![submission, author, text, now]).map(|_| ())
        })
    }

    fn notes(&self, submission: i64) -> Result<Vec<Note>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT author, text, created_at FROM notes WHERE submission = ?1 ORDER BY id")?;
            let rows = statement.query_map([submission], |r| Ok(Note { author: r.get(0)?, text: r.get(1)?, created_at: r.get(2)? }))?.collect();
            rows
        })
    }

    fn create_session(&self, token_hash: &str, user: &str, now: i64, expires_at: i64) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
            c.execute("INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)", params![token_hash, user, now, expires_at])
                .map(|_| ())
        })
    }

    fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        self.with(|c| c.query_row("SELECT user FROM sessions WHERE token_hash = ?1 AND expires_at > ?2", params![token_hash, now], |r| r.get(0)).optional())
    }

    fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash]).map(|_| ()))
    }

    fn delete_sessions_of(&self, user: &str) -> Result<usize> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE user = ?1", [user]))
    }

    fn counts(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT COALESCE(grade_status, status), COUNT(*) FROM submissions GROUP BY 1 ORDER BY 1")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
            rows
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(id: &str) -> Assignment {
        Assignment {
            id: id.into(),
            task: "t".into(),
            candidate: "c@example.com".into(),
            token_hash: "h".into(),
            time_box_seconds: 3600,
            starts: "now".into(),
            started_at: Some(0),
            created_at: 0,
        }
    }

    #[test]
    fn a_job_is_claimed_once_and_requeued_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_assignment(&assignment("a1")).unwrap();
        let (id, number, position) = store.add_submission("a1", "abc", 10).unwrap();
        assert_eq!((number, position), (1, 1));
        assert_eq!(store.add_submission("a1", "def", 11).unwrap().1, 2);
        let first = store.claim("w1", 12).unwrap().unwrap();
        assert_eq!(first.submission, id);
        let second = store.claim("w2", 12).unwrap().unwrap();
        assert_ne!(second.submission, id);
        assert!(store.claim("w3", 12).unwrap().is_none());
        assert_eq!(store.requeue_running().unwrap(), 2);
        let again = store.claim("w1", 13).unwrap().unwrap();
        assert_eq!((again.submission, again.attempts), (id, 1));
        store.fail(again.submission, "docker down", Some(100), 13).unwrap();
        assert_ne!(store.claim("w1", 14).unwrap().unwrap().submission, id, "not before run_after");
        store.finish(id, "graded", 88.0, "{}", 200).unwrap();
        assert_eq!(store.regrade(Some(id), None).unwrap(), 1);
        let (row, _) = store.submission(id).unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.previous_score), ("queued", Some(88.0)));
    }

    #[test]
    fn sessions_expire_and_log_out_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.create_session("h1", "ada", 100, 200).unwrap();
        store.create_session("h2", "ada", 100, 300).unwrap();
        store.create_session("h3", "bob", 100, 300).unwrap();
        assert_eq!(store.session_user("h1", 150).unwrap().as_deref(), Some("ada"));
        assert_eq!(store.session_user("h1", 200).unwrap(), None, "expired");
        assert_eq!(store.delete_sessions_of("ada").unwrap(), 2);
        assert_eq!(store.session_user("h2", 150).unwrap(), None);
        assert_eq!(store.session_user("h3", 150).unwrap().as_deref(), Some("bob"));
        // A store opened again (a restart) keeps the sessions.
        drop(store);
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(store.session_user("h3", 150).unwrap().as_deref(), Some("bob"));
    }
}
