//! The store's contract for claims, fences and leases, run on both backends: SQLite (the default)
//! and PostgreSQL (a server of the test's own, from Debian's programs; skipped without them unless
//! `TAKEHOME_REQUIRE_POSTGRES=1`). The same calls must mean the same thing on either.

use takehome::report::Status as GradeStatus;
use takehome::store::{Assignment, ClaimRequest, DatabaseUrl, Holding, JobNeeds, JobStatus, Store, StoreError, TaskCopy, WorkerInfo};

fn assignment(id: &str) -> Assignment {
    Assignment {
        id: id.into(),
        task: "t".parse().unwrap(),
        candidate: "c@example.com".into(),
        token_hash: format!("h-{id}"),
        time_box_seconds: 3600,
        starts: takehome::store::Starts::Now,
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

fn worker(instance: &str, name: &str, now: i64) -> WorkerInfo {
    WorkerInfo {
        instance: instance.into(),
        name: name.into(),
        version: "0".into(),
        slots: 2,
        memory_bytes: 4 << 30,
        runtimes: vec!["runc".into()],
        gpus: 0,
        started_at: now,
        heartbeat_at: now,
        lease_until: now + 30,
        stopped_at: None,
        health: String::new(),
        running: 0,
    }
}

fn holding(jobs: &[i64]) -> Holding {
    Holding { jobs: jobs.to_vec(), dry_runs: vec![] }
}

async fn leases(store: &dyn Store) {
    store.create_assignment(&assignment("a1")).await.unwrap();
    assert!(store.register_worker(&worker("i1", "host-a", 0)).await.unwrap().is_empty());
    store.register_worker(&worker("i2", "host-b", 0)).await.unwrap();
    let (lost, ..) = store.add_submission("a1", "abc", &needs(), 1, 0).await.unwrap();
    let (kept, ..) = store.add_submission("a1", "def", &needs(), 2, 0).await.unwrap();

    // Each job is claimed once.
    let first = store.claim(&request("i1", 1)).await.unwrap().unwrap();
    let second = store.claim(&request("i1", 1)).await.unwrap().unwrap();
    assert_eq!([first.submission(), second.submission()], [lost, kept]);
    assert!(store.claim(&request("i2", 1)).await.unwrap().is_none(), "both are held");

    // i1 answers for `kept` only (the answer to the first claim was lost): only that one is renewed.
    for now in [10, 20, 30] {
        assert_eq!(store.heartbeat("i1", now, 30, "", &holding(&[kept])).await.unwrap(), Some(vec![kept]));
    }
    let taken = store.claim(&request("i2", 32)).await.unwrap().expect("the unheld job's lease ran out at 31");
    assert_eq!((taken.submission(), taken.attempts()), (lost, 2));
    assert!(store.claim(&request("i2", 32)).await.unwrap().is_none(), "the held job is renewed until 60");
    // A heartbeat never takes back what another instance holds now.
    assert_eq!(store.heartbeat("i1", 33, 30, "", &holding(&[kept, lost])).await.unwrap(), Some(vec![kept]));

    // The fence: a late result of the first attempt is refused; the current one is stored.
    let late = store.finish(&first.fence, GradeStatus::Graded, 99.0, "{}", 34, false).await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let report = r#"{"provenance": {"task_digest": "td", "dataset_digest": "dd", "image": "takehome/python:x"}}"#;
    store.finish(&taken.fence, GradeStatus::Graded, 88.0, report, 35, false).await.unwrap();
    // What it was graded with, read out of the stored report by the database.
    let with = store.graded_provenance(&"t".parse().unwrap()).await.unwrap();
    assert_eq!(with.len(), 1);
    assert_eq!(
        (with[0].submission, with[0].task_digest.as_str(), with[0].dataset_digest.as_str(), with[0].image.as_str(), with[0].score),
        (lost, "td", "dd", "takehome/python:x", Some(88.0))
    );
    assert_eq!(store.submission_counts().await.unwrap().get("a1"), Some(&2));
    assert_eq!(store.recent_submissions(1).await.unwrap().iter().map(|s| s.id).collect::<Vec<_>>(), [kept], "newest first");
    let (row, _) = store.submission(lost).await.unwrap().unwrap();
    assert_eq!((row.status, row.score), (JobStatus::Graded, Some(88.0)));

    // host-a starts again as i3: i1's job is queued again at once, and i1 must stop.
    assert_eq!(store.register_worker(&worker("i3", "host-a", 40)).await.unwrap(), vec!["i1".to_string()]);
    assert_eq!(store.heartbeat("i1", 41, 30, "", &holding(&[kept])).await.unwrap(), None, "a replaced instance must stop");
    let again = store.claim(&request("i3", 42)).await.unwrap().unwrap();
    assert_eq!((again.submission(), again.attempts()), (kept, 2), "the crash counts an attempt");
    assert!(matches!(store.release(&second.fence).await, Err(StoreError::Fenced { .. })));
    // A clean stop gives the job back with its attempt.
    assert_eq!(store.stop_worker("i3", 43).await.unwrap(), 1);
    let (row, _) = store.submission(kept).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (JobStatus::Queued, 1));
}

/// Where each assignment's review stands: reviewers who scored (each once), and a decision.
async fn review_states(store: &dyn Store) {
    use takehome::store::{ReviewKind, ReviewState};
    for id in ["r1", "r2", "r3"] {
        store.create_assignment(&assignment(id)).await.unwrap();
    }
    let comment = store.add_review("r1", 1, ReviewKind::Comment, "ada", "{}", 10).await.unwrap();
    let item = store.review_item(comment).await.unwrap().expect("the item by its id");
    assert_eq!((item.assignment.as_str(), item.kind, item.author.as_str()), ("r1", ReviewKind::Comment, "ada"));
    assert!(store.review_item(comment + 1000).await.unwrap().is_none());
    store.add_review("r2", 2, ReviewKind::Scores, "ada", "{}", 11).await.unwrap();
    store.add_review("r2", 2, ReviewKind::Scores, "bob", "{}", 12).await.unwrap();
    store.add_review("r2", 2, ReviewKind::Scores, "bob", "{}", 13).await.unwrap();
    store.add_review("r3", 3, ReviewKind::Scores, "ada", "{}", 14).await.unwrap();
    store.add_review("r3", 3, ReviewKind::Decision, "ada", "{}", 15).await.unwrap();
    let states = store.review_states().await.unwrap();
    assert_eq!(states.get("r1"), Some(&ReviewState { scored_by: 0, decided: false, decided_at: None }));
    assert_eq!(states.get("r2"), Some(&ReviewState { scored_by: 2, decided: false, decided_at: None }));
    assert_eq!(states.get("r3"), Some(&ReviewState { scored_by: 1, decided: true, decided_at: Some(15) }));
    // A task's review items in one query, oldest first; none of another task's.
    let items = store.task_reviews(&"t".parse().unwrap()).await.unwrap();
    assert_eq!(items.iter().map(|i| i.created_at).collect::<Vec<_>>(), [10, 11, 12, 13, 14, 15]);
    assert!(store.task_reviews(&"u".parse().unwrap()).await.unwrap().is_empty());
}

/// An erasure takes every row of one assignment (and the webhooks that name it), none of
/// another's, and keeps an audit record.
async fn erasure(store: &dyn Store) {
    use takehome::store::{Erasure, ReviewKind};
    for id in ["e1", "e2"] {
        store.create_assignment(&assignment(id)).await.unwrap();
        let (submission, ..) = store.add_submission(id, "c0ffee", &needs(), 1, 0).await.unwrap();
        store.add_review(id, submission, ReviewKind::Comment, "ada", "{}", 2).await.unwrap();
        store.add_note(submission, "ada", "a note", 3).await.unwrap();
        store.add_extension(id, 600, "late", "ada", 4).await.unwrap();
        store.queue_webhook("review.decided", &format!("{{\"assignment\":\"{id}\"}}"), 5).await.unwrap();
        store.set_contact(id, &format!("{id}@example.org")).await.unwrap();
        store.queue_email(id, &format!("invitation:{id}"), takehome::store::EmailKind::Invitation, "{}", 6).await.unwrap();
    }
    let record = Erasure { task: "t".parse().unwrap(), erased_at: 9, erased_by: "ada".into(), reason: "request".into(), rows: 0 };
    let (submissions, rows) = store.erase_assignment("e1", &record).await.unwrap();
    assert_eq!((submissions.len(), rows), (1, 8), "assignment, submission, note, review, extension, webhook, contact, e-mail");
    assert!(!store.contacts().await.unwrap().contains_key("e1") && store.emails(100).await.unwrap().iter().all(|e| e.assignment != "e1"));
    assert_eq!(store.contacts().await.unwrap().get("e2").map(String::as_str), Some("e2@example.org"));
    assert!(store.assignment("e1").await.unwrap().is_none());
    assert!(store.reviews(Some("e1")).await.unwrap().is_empty() && store.extensions("e1").await.unwrap().is_empty());
    assert!(store.submissions(Some("e1"), None).await.unwrap().is_empty());
    assert!(store.webhooks(100).await.unwrap().iter().all(|w| !w.body.contains("\"e1\"")));
    assert_eq!(store.reviews(Some("e2")).await.unwrap().len(), 1, "another assignment's rows stay");
    assert_eq!(store.webhooks(100).await.unwrap().iter().filter(|w| w.body.contains("\"e2\"")).count(), 1);
    assert_eq!(store.erasures().await.unwrap(), [Erasure { rows: 8, ..record.clone() }]);
    assert!(matches!(store.erase_assignment("e1", &record).await, Err(StoreError::NotFound(_))));
}

/// The e-mail outbox: nothing is queued for an assignment without an address, a key is queued
/// once, a failure is retried at its time and a permanent one given up, and a sent message's
/// data (an invitation's token) is emptied.
async fn email_outbox(store: &dyn Store) {
    use takehome::store::EmailKind;
    store.create_assignment(&assignment("m1")).await.unwrap();
    store.create_assignment(&assignment("m2")).await.unwrap();
    assert!(!store.queue_email("m1", "invitation:m1", EmailKind::Invitation, "{\"token\":\"t\"}", 10).await.unwrap(), "no address: nothing queued");
    store.set_contact("m1", "old@example.org").await.unwrap();
    store.set_contact("m1", "m1@example.org").await.unwrap();
    assert!(store.queue_email("m1", "invitation:m1", EmailKind::Invitation, "{\"token\":\"t\"}", 10).await.unwrap());
    assert!(!store.queue_email("m1", "invitation:m1", EmailKind::Invitation, "{\"token\":\"u\"}", 11).await.unwrap(), "a key is queued once");
    assert!(store.queue_email("m1", "receipt:7", EmailKind::Receipt, "{\"submission\":7}", 12).await.unwrap());
    let mine = |emails: Vec<takehome::store::Email>| emails.into_iter().filter(|e| e.assignment == "m1").collect::<Vec<_>>();
    assert!(mine(store.due_emails(9, 10).await.unwrap()).is_empty());
    let due = mine(store.due_emails(12, 10).await.unwrap());
    assert_eq!(
        due.iter().map(|e| (e.key.as_str(), e.kind, e.recipient.as_str())).collect::<Vec<_>>(),
        [("invitation:m1", EmailKind::Invitation, "m1@example.org"), ("receipt:7", EmailKind::Receipt, "m1@example.org")]
    );
    assert_eq!(due[0].data, "{\"token\":\"t\"}");
    store.email_attempted(due[0].id, false, Some(20), "451 try again", 13).await.unwrap();
    assert_eq!(mine(store.due_emails(19, 10).await.unwrap()).len(), 1, "the retry waits for its time");
    store.email_attempted(due[0].id, true, None, "", 20).await.unwrap();
    store.email_attempted(due[1].id, false, None, "550 no such user", 21).await.unwrap();
    assert!(mine(store.due_emails(1000, 10).await.unwrap()).is_empty());
    let listed = store.emails(10).await.unwrap();
    let invitation = listed.iter().find(|e| e.key == "invitation:m1").unwrap();
    assert_eq!((invitation.attempts, invitation.sent_at, invitation.data.as_str(), invitation.recipient.as_str()), (2, Some(20), "", ""));
    let receipt = listed.iter().find(|e| e.key == "receipt:7").unwrap();
    assert_eq!((receipt.failed_at, receipt.last_error.as_str()), (Some(21), "550 no such user"));
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_fences_and_leases_mean_the_same_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = takehome::store::open(&DatabaseUrl::Sqlite(dir.path().join("s.sqlite"))).await.unwrap();
    leases(sqlite.as_ref()).await;
    review_states(sqlite.as_ref()).await;
    erasure(sqlite.as_ref()).await;
    email_outbox(sqlite.as_ref()).await;
    if !super::cluster_support::postgres_available() {
        return;
    }
    let pg = tokio::task::spawn_blocking(|| super::cluster_support::Postgres::start(&[])).await.unwrap();
    let postgres = takehome::store::open(&DatabaseUrl::Postgres(pg.url("127.0.0.1"))).await.unwrap();
    leases(postgres.as_ref()).await;
    review_states(postgres.as_ref()).await;
    erasure(postgres.as_ref()).await;
    email_outbox(postgres.as_ref()).await;
    drop(postgres);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}
