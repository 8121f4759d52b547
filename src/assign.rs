//! Making an assignment: a candidate, a task, a time box and when the clock starts; a repository
//! holding the task's brief and starter; credentials said once (only their hash is kept).
//! `takehome assign`, the dashboard's form and `POST /api/assignments` all come here, so that
//! each checks the same things and makes the same repository.

use std::time::Duration;

use crate::intake::{IntakeError, Repos};
use crate::store::{Assignment, Starts, Store, StoreError};
use crate::task::{Catalog, TaskId};

/// What an assessor (or a tracking system) asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub task: String,
    /// An e-mail address or a name: what the assessors see (blind reviews hide it).
    pub candidate: String,
    /// `90m`, `4h`, … (the task's own time box when `None`).
    pub time_box: Option<String>,
    pub starts: Starts,
    /// Where the invitation, reminders and receipts go (needs `smtp_url`).
    pub email: Option<String>,
}

/// A new assignment and its credentials: the token exists only here, to be handed over once.
#[derive(Debug)]
pub struct Made {
    pub assignment: Assignment,
    pub token: String,
    /// The task's title.
    pub title: String,
    /// The address the invitation was queued for.
    pub invited: Option<String>,
}

impl Made {
    /// Where the candidate clones from (`<public_url>/git/<id>.git`).
    pub fn clone_url(&self, public_url: &str) -> String {
        format!("{}/git/{}.git", public_url.trim_end_matches('/'), self.assignment.id)
    }

    /// The candidate's status page.
    pub fn status_url(&self, public_url: &str) -> String {
        format!("{}/status/{}", public_url.trim_end_matches('/'), self.assignment.id)
    }

    /// What the API answers once: the assignment, its URLs and its credentials.
    pub fn answer(&self, public_url: &str) -> serde_json::Value {
        let a = &self.assignment;
        serde_json::json!({
            "id": a.id,
            "task": a.task,
            "title": self.title,
            "candidate": a.candidate,
            "time_box_seconds": a.time_box_seconds,
            "starts": a.starts,
            "started_at": a.started_at,
            "clone_url": self.clone_url(public_url),
            "user": a.id,
            "token": self.token,
            "status_url": self.status_url(public_url),
            "invitation": self.invited.as_ref().map(|to| serde_json::json!({ "to": to, "state": "queued" })),
        })
    }
}

/// Why no assignment was made.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The request is wrong: which field, and what was expected.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("cannot create the assignment's repository")]
    Repository(#[source] IntakeError),
    #[error("cannot store the assignment")]
    Store(#[source] StoreError),
    #[error("the blocking pool")]
    Pool(#[source] tokio::task::JoinError),
}

impl AssignError {
    fn invalid(field: &'static str, message: impl Into<String>) -> AssignError {
        AssignError::Invalid { field, message: message.into() }
    }
}

/// The longest time box an assignment may have.
pub const MAX_TIME_BOX: Duration = Duration::from_secs(30 * 86_400);

/// Checks `request`, makes the repository and stores the assignment; with an e-mail address
/// (`can_mail`: the server has `smtp_url`), records it and queues the invitation. Nothing is
/// stored when the repository cannot be made; a repository whose assignment cannot be stored is
/// left unused (its id is random and never handed out).
pub async fn create(store: &dyn Store, repos: &Repos, tasks: &Catalog, max_push_bytes: u64, can_mail: bool, request: &Request) -> Result<Made, AssignError> {
    let id = TaskId::parse(request.task.trim()).map_err(|e| AssignError::invalid("task", e.to_string()))?;
    let spec = tasks.load(&id).map_err(|e| match e {
        crate::task::SpecError::Read { .. } if !tasks.dir(&id).is_dir() => AssignError::invalid("task", format!("no task {:?} on this server", id.as_str())),
        other => AssignError::invalid("task", format!("the task does not load: {}", crate::errors::chain(&other))),
    })?;
    let candidate = request.candidate.trim();
    if candidate.is_empty() || candidate.chars().count() > 200 || candidate.chars().any(char::is_control) {
        return Err(AssignError::invalid("candidate", "expected an e-mail address or a name (1 to 200 characters, one line)"));
    }
    let time_box = match request.time_box.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => crate::units::parse_duration(text).map_err(|e| AssignError::invalid("time_box", e.to_string()))?,
        None => spec.time_box,
    };
    if time_box.is_zero() || time_box > MAX_TIME_BOX {
        return Err(AssignError::invalid("time_box", format!("must be longer than zero and at most {}", crate::units::format_duration(MAX_TIME_BOX))));
    }
    let email = match request.email.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(_) if !can_mail => {
            return Err(AssignError::invalid(
                "email",
                "this server sends no e-mail (no smtp_url in its config); leave the address out and hand the clone URL and token to the candidate",
            ))
        }
        Some(text) => Some(crate::mail::check_address(text).map_err(|e| AssignError::invalid("email", e.to_string()))?),
    };
    let assignment_id = format!("a{}", hex::encode(crate::secret::random_bytes::<6>()));
    let token = crate::secret::new_token();
    let now = crate::units::now();
    let assignment = Assignment {
        id: assignment_id.clone(),
        task: id.clone(),
        candidate: candidate.to_string(),
        token_hash: crate::secret::token_hash(&token),
        time_box_seconds: time_box.as_secs() as i64,
        starts: request.starts,
        started_at: (request.starts == Starts::Now).then_some(now),
        created_at: now,
        extra_seconds: 0,
    };
    let (repos, made_for) = (repos.clone(), spec.clone());
    tokio::task::spawn_blocking(move || repos.create(&assignment_id, &made_for, max_push_bytes))
        .await
        .map_err(AssignError::Pool)?
        .map_err(AssignError::Repository)?;
    store.create_assignment(&assignment).await.map_err(AssignError::Store)?;
    if let Some(to) = &email {
        store.set_contact(&assignment.id, to).await.map_err(AssignError::Store)?;
        let data = serde_json::json!({ "token": token }).to_string();
        let key = format!("invitation:{}", assignment.id);
        store.queue_email(&assignment.id, &key, crate::store::EmailKind::Invitation, &data, now).await.map_err(AssignError::Store)?;
    }
    Ok(Made { assignment, token, title: spec.title.clone(), invited: email })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_checked_field_by_field_before_anything_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let repos = Repos::new(dir.path().join("repos"), dir.path().join("hooks"));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let tasks = Catalog::new(root.to_path_buf());
        let ask = |task: &str, candidate: &str, time_box: Option<&str>| Request {
            task: task.into(),
            candidate: candidate.into(),
            time_box: time_box.map(String::from),
            starts: Starts::OnClone,
            email: None,
        };
        let mailed = |email: &str| Request { email: Some(email.into()), ..ask("penguins-cleaning", "ada@example.com", None) };
        for (can_mail, request, field, says) in
            [(true, mailed("not-an-address"), "email", "is not an e-mail address"), (false, mailed("ada@example.com"), "email", "no smtp_url")]
        {
            match create(&store, &repos, &tasks, 1 << 20, can_mail, &request).await {
                Err(AssignError::Invalid { field: f, message }) => assert!(f == field && message.contains(says), "{f}: {message}"),
                other => panic!("{request:?}: {other:?}"),
            }
        }
        for (request, field, says) in [
            (ask("Penguins!", "ada@example.com", None), "task", "is not a task id"),
            (ask("no-such-task", "ada@example.com", None), "task", "no task \"no-such-task\""),
            (ask("penguins-cleaning", "  ", None), "candidate", "e-mail address or a name"),
            (ask("penguins-cleaning", "ada\nbob", None), "candidate", "one line"),
            (ask("penguins-cleaning", "ada@example.com", Some("90")), "time_box", "expected a duration"),
            (ask("penguins-cleaning", "ada@example.com", Some("90d")), "time_box", "at most"),
        ] {
            match create(&store, &repos, &tasks, 1 << 20, true, &request).await {
                Err(AssignError::Invalid { field: f, message }) => assert!(f == field && message.contains(says), "{f}: {message}"),
                other => panic!("{request:?}: {other:?}"),
            }
        }
        assert!(store.assignments().await.unwrap().is_empty(), "nothing is stored for a refused request");
        assert!(!dir.path().join("repos").exists() || std::fs::read_dir(dir.path().join("repos")).unwrap().next().is_none(), "no repository is made");
    }
}
