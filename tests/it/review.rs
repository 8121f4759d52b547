//! The review desk's end-to-end part, against a real daemon, a real `git` push and Docker: a
//! push graded for real (its lint finding at its line in the code view, escaped), and signed
//! webhooks to a loopback receiver that fails once and is retried; the review items and the
//! webhook outbox on both stores. The desk's pages and forms (comments, two reviewers, blind
//! review, release, decision, export, the browser) are tested in process in `review_desk`, on
//! the report frozen from this same push.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::repo_root;
use super::serve::{assign_with, clone, git, setup, Daemon, PASSWORD};

const SECRET: &str = "webhook-secret-0123456789";

/// One request the receiver got: (event, delivery id, signature, body, the status it answered).
type Received = (String, String, String, String, u16);

/// A loopback HTTP receiver: answers 500 to the first request and 200 to the rest.
fn receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push(line.trim_end().to_string());
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut got = seen.lock().unwrap();
            let status = if got.is_empty() { 500 } else { 200 };
            got.push((
                header("x-takehome-event"),
                header("x-takehome-delivery"),
                header("x-takehome-signature"),
                String::from_utf8_lossy(&body).into_owned(),
                status,
            ));
            drop(got);
            let _ = stream.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        }
    });
    (port, got)
}

/// A session cookie for `user` (the login form, as a browser sends it).
pub(super) fn login(daemon: &Daemon, user: &str, password: &str) -> String {
    let (status, head, _) = daemon.raw(
        "POST",
        "/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &format!("user={user}&password={}", super::test_app::form(password)),
    );
    assert_eq!(status, 303, "{head}");
    head.lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.trim().to_string()))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn page(daemon: &Daemon, cookie: &str, path: &str) -> String {
    let (status, _, html) = daemon.raw("GET", path, &format!("Cookie: {cookie}\r\n"), "");
    assert_eq!(status, 200, "{path}: {html}");
    html
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_for_review_is_graded_with_its_findings_at_their_lines_and_its_webhook_signed_and_retried() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let (hook_port, received) = receiver();
        let hook_url = format!("http://127.0.0.1:{hook_port}/hooks/takehome");
        // A real SMTP server (STARTTLS with a CA made here): the invitation `assign --email`
        // queues and the receipt of the graded push are sent by the daemon's own loop.
        let certs = tempfile::tempdir().unwrap();
        super::common::tls_certificates(certs.path());
        let smtp = super::mail::SmtpServer::start(Some(certs.path()), None, 0);
        let smtp_url = format!("smtp://localhost:{}", smtp.port);
        let ca = certs.path().join("ca.pem").display().to_string();
        let mail_env = [("TAKEHOME_SMTP_URL", smtp_url.as_str()), ("TAKEHOME_SMTP_FROM", "hiring@example.com"), ("TAKEHOME_TLS_CA_FILE", ca.as_str())];
        let env: Vec<(&str, &str)> = [("TAKEHOME_WEBHOOK_URL", hook_url.as_str()), ("TAKEHOME_WEBHOOK_SECRET", SECRET)].into_iter().chain(mail_env).collect();
        let daemon = Daemon::start_with(&data_path, 1, &env);
        let lin = assign_with(&data_path, "penguins-cleaning", "lin.candidate@example.com", &["--email", "lin.candidate@example.com"], &mail_env);
        let invitation = smtp.wait_for(1, Duration::from_secs(30));
        assert_eq!(invitation[0]["headers"]["Subject"].as_str().map(|s| s.starts_with("Your take-home assessment: ")), Some(true), "{:#}", invitation[0]);
        assert!(invitation[0]["text"].as_str().unwrap().contains(&lin.token) && invitation[0]["tls"] == true, "{:#}", invitation[0]);
        let repo = clone(&daemon, &lin, &work_path);

        // The submission `review_desk` reads in process (tests/fixtures/review-desk): the
        // reference cleaner plus a helper with an unused import (a lint finding at a known line)
        // and hostile text; notes with HTML; a notebook; a binary file.
        let fixture = repo_root().join("tests/fixtures/review-desk");
        for name in ["clean.py", "NOTES.md", "explore.ipynb"] {
            std::fs::copy(fixture.join(name), repo.join(name)).unwrap();
        }
        let clean = std::fs::read_to_string(repo.join("clean.py")).unwrap();
        let finding_line = clean.lines().position(|l| l.contains("import os  #")).unwrap() + 1;
        std::fs::write(repo.join("scratch.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
        assert!(git(&repo, &["add", "-A"]).0);
        assert!(git(&repo, &["commit", "-q", "-m", "Rules per defect <b>first</b>"]).0);
        let (ok, out) = git(&repo, &["push", "origin", "main"]);
        assert!(ok, "{out}");
        let rows = daemon.wait_graded(&lin.id, 1, Duration::from_secs(180));
        let id = rows[0]["id"].as_i64().unwrap();
        let receipt = smtp.wait_for(2, Duration::from_secs(30));
        assert!(receipt[1]["headers"]["Subject"].as_str().unwrap().ends_with(": push 1 received"), "{:#}", receipt[1]);
        let ada = login(&daemon, "ada", PASSWORD);

        // ---- the real grading's lint finding at its line (the code view's pages and files are
        // `review_desk`'s, in process, on this push's frozen report)
        let files = daemon.api(&format!("/api/submissions/{id}/files"));
        assert!(
            files["lint_findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["file"] == "clean.py" && f["line"].as_u64() == Some(finding_line as u64) && f["rule"] == "F401"),
            "no F401 at clean.py:{finding_line}: {:#}",
            files["lint_findings"]
        );
        let code = page(&daemon, &ada, &format!("/submissions/{id}/code"));
        assert!(code.contains(&format!("-L{finding_line}\" class=\"added finding\"")) && code.contains("<b>F401</b>"), "the finding is not at its line");

        // The desk itself (comments, two reviewers, blind pages, release, decision, export, the
        // pages in a browser) is `review_desk`'s, in process, on a report frozen from this push.

        // ---- webhooks: every delivery signed; the first failed and was retried
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = received.lock().unwrap().clone();
            if got.iter().any(|r| r.0 == "submission.graded" && r.4 == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "webhooks not delivered: {got:#?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        let got = received.lock().unwrap().clone();
        for (event, _, signature, body, _) in &got {
            assert_eq!(signature, &takehome::webhook::signature(SECRET, body), "{event}: a bad signature");
        }
        let (first_event, first_delivery) = (got[0].0.clone(), got[0].1.clone());
        assert_eq!(got[0].4, 500);
        assert!(got.iter().skip(1).any(|r| r.1 == first_delivery && r.4 == 200), "the failed delivery of {first_event} was not retried: {got:#?}");
        let graded: serde_json::Value = serde_json::from_str(&got.iter().find(|r| r.0 == "submission.graded").unwrap().3).unwrap();
        assert_eq!(graded["data"]["submission"].as_i64(), Some(id), "{graded:#}");
        let deliveries = daemon.api("/api/webhooks");
        assert!(
            deliveries["deliveries"].as_array().unwrap().iter().any(|d| d["attempts"].as_i64() == Some(2) && !d["delivered_at"].is_null()),
            "{deliveries:#}"
        );

        // The push graded here is the one `review_desk` reads in process: the same lint finding
        // at the same line as its frozen report.
        let frozen: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap()).unwrap();
        let graded_report = daemon.api(&format!("/api/submissions/{id}"));
        let findings = |r: &serde_json::Value| -> Vec<(String, u64, String)> {
            r["components"]["code_quality"]["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| (f["file"].as_str().unwrap_or("").to_string(), f["line"].as_u64().unwrap_or(0), f["rule"].as_str().unwrap_or("").to_string()))
                .collect()
        };
        let report = if graded_report.get("report").is_some() { &graded_report["report"] } else { &graded_report };
        assert_eq!(
            findings(report),
            findings(&frozen),
            "the frozen report of tests/fixtures/reports/review-desk.json is stale: grade tests/fixtures/review-desk again"
        );
    })
    .await
    .unwrap();
}

/// The review items and the webhook outbox behave the same in both stores.
async fn review_items_and_outbox(store: &dyn takehome::store::Store) {
    use takehome::store::{Assignment, ReviewKind};
    let assignment = Assignment {
        id: "a1".into(),
        task: "penguins-cleaning".parse().unwrap(),
        candidate: "c@example.com".into(),
        token_hash: "h".into(),
        time_box_seconds: 3600,
        starts: takehome::store::Starts::Now,
        started_at: Some(1),
        created_at: 1,
        extra_seconds: 0,
    };
    store.create_assignment(&assignment).await.unwrap();
    let first = store.add_review("a1", 7, ReviewKind::Comment, "ada", r#"{"file":"a.py","line":1,"text":"x"}"#, 10).await.unwrap();
    let second = store.add_review("a1", 7, ReviewKind::Decision, "bob", r#"{"decision":"hold","reason":"r"}"#, 11).await.unwrap();
    assert!(second > first);
    assert!(!store.edit_review(first, "bob", "{}", 12).await.unwrap(), "only the author edits");
    assert!(store.edit_review(first, "ada", r#"{"file":"a.py","line":1,"text":"y"}"#, 12).await.unwrap());
    let items = store.reviews(Some("a1")).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((items[0].kind, items[0].updated_at, items[0].created_at), (ReviewKind::Comment, 12, 10));
    assert!(items[0].body.contains("\"y\""));
    assert_eq!(items[1].kind, ReviewKind::Decision);
    assert!(store.reviews(Some("other")).await.unwrap().is_empty());
    assert_eq!(store.reviews(None).await.unwrap().len(), 2);

    let hook = store.queue_webhook("review.decided", "{}", 100).await.unwrap();
    assert_eq!(store.due_webhooks(99, 10).await.unwrap().len(), 0);
    assert_eq!(store.due_webhooks(100, 10).await.unwrap()[0].id, hook);
    store.webhook_attempted(hook, false, Some(105), "the receiver answered 500", 100).await.unwrap();
    assert!(store.due_webhooks(104, 10).await.unwrap().is_empty());
    let due = store.due_webhooks(105, 10).await.unwrap();
    assert_eq!((due[0].attempts, due[0].last_error.as_str()), (1, "the receiver answered 500"));
    store.webhook_attempted(hook, true, None, "", 106).await.unwrap();
    assert!(store.due_webhooks(1000, 10).await.unwrap().is_empty());
    assert_eq!(store.webhooks(10).await.unwrap()[0].delivered_at, Some(106));
    let given_up = store.queue_webhook("submission.graded", "{}", 200).await.unwrap();
    store.webhook_attempted(given_up, false, None, "gone", 201).await.unwrap();
    assert!(store.due_webhooks(10_000, 10).await.unwrap().is_empty());
    assert_eq!(store.webhooks(10).await.unwrap()[0].failed_at, Some(201));

    // A regrade keeps the report it replaces.
    use takehome::store::{ClaimRequest, JobNeeds, TaskCopy};
    let needs = JobNeeds { spec_digest: "s".into(), data_digest: "d".into(), memory_bytes: 1 << 20, runtime: "runc".into(), gpus: 0 };
    let request = |now| ClaimRequest {
        instance: "w".into(),
        now,
        lease_seconds: 30,
        free_memory_bytes: 1 << 30,
        runtimes: vec!["runc".into()],
        free_gpus: 0,
        copies: vec![TaskCopy { task: "penguins-cleaning".parse().unwrap(), spec_digest: "s".into(), data_digest: "d".into() }],
        max_attempts: 3,
    };
    let (id, ..) = store.add_submission("a1", &"c".repeat(40), &needs, 300, 0).await.unwrap();
    let first = store.claim(&request(301)).await.unwrap().expect("claimed");
    store.finish(&first.fence, takehome::report::Status::Graded, 50.0, r#"{"v":1}"#, 302, false).await.unwrap();
    assert!(store.report_history(id).await.unwrap().is_empty(), "a first grade replaces nothing");
    assert_eq!(store.regrade(Some(id), None, &std::collections::HashMap::new()).await.unwrap(), 1);
    let second = store.claim(&request(303)).await.unwrap().expect("claimed again");
    store.finish(&second.fence, takehome::report::Status::Graded, 60.0, r#"{"v":2}"#, 304, false).await.unwrap();
    let history = store.report_history(id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].score, history[0].report.as_deref(), history[0].graded_at, history[0].replaced_at),
        (Some(50.0), Some(r#"{"v":1}"#), Some(302), 304)
    );
    assert_eq!(store.submission(id).await.unwrap().unwrap().1.as_deref(), Some(r#"{"v":2}"#));

    // The candidate's side: extensions move the deadline, a final choice is replaced by the
    // next, a public dry run is stored and replaced by a regrade's.
    assert!(store.extensions("a1").await.unwrap().is_empty());
    store.add_extension("a1", 1800, "a power cut", "ada", 400).await.unwrap();
    store.add_extension("a1", 600, "a slow machine", "bob", 401).await.unwrap();
    let extensions = store.extensions("a1").await.unwrap();
    assert_eq!(extensions.iter().map(|e| (e.seconds, e.author.as_str())).collect::<Vec<_>>(), [(1800, "ada"), (600, "bob")]);
    let a1 = store.assignment("a1").await.unwrap().unwrap();
    assert_eq!((a1.extra_seconds, a1.deadline()), (2400, Some(1 + 3600 + 2400)));
    assert_eq!(store.assignments().await.unwrap()[0].extra_seconds, 2400);
    assert_eq!(store.final_choice("a1").await.unwrap(), None);
    store.choose_final("a1", id, 500).await.unwrap();
    store.choose_final("a1", id, 501).await.unwrap();
    assert_eq!(store.final_choice("a1").await.unwrap(), Some((id, 501)));
    assert_eq!(store.public_run(id).await.unwrap(), None);
    store.set_public_run(id, r#"{"run":1}"#, 600).await.unwrap();
    store.set_public_run(id, r#"{"run":2}"#, 601).await.unwrap();
    assert_eq!(store.public_run(id).await.unwrap().as_deref(), Some(r#"{"run":2}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn review_items_and_the_webhook_outbox_in_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = takehome::store::open(&takehome::store::DatabaseUrl::Sqlite(dir.path().join("s.sqlite"))).await.unwrap();
    review_items_and_outbox(sqlite.as_ref()).await;
    if !super::cluster_support::postgres_available() {
        return;
    }
    let pg = tokio::task::spawn_blocking(|| super::cluster_support::Postgres::start(&[])).await.unwrap();
    let postgres = takehome::store::open(&takehome::store::DatabaseUrl::Postgres(pg.url("127.0.0.1"))).await.unwrap();
    review_items_and_outbox(postgres.as_ref()).await;
    drop(postgres);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

/// A data set changes after a push was graded: the task lists the submission as affected (the
/// data set's digest moved), "regrade affected" grades it again, and its page and API show the
/// old grade beside the new one per component, with the digest that changed; the old report is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_regrade_after_the_data_changed_shows_the_diff_and_keeps_the_old_grade() {
    use super::cluster_support::{clone_into, project_root, push_body, wait_for, Server};
    let Some((_sandbox, _data, work)) = setup().await else { return };
    let work_path = work.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let root = project_root(&[]);
        let server = Server::start_with(None, 1, root.path());
        let a = server.assign("penguins-cleaning", "dana@example.com");
        let dest = clone_into(&server, &a, &work_path);
        push_body(&dest, &std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap(), 0);
        let graded = |server: &Server, n: usize| {
            let rows = server.api(&format!("/api/submissions?assignment={}", a.id));
            rows.as_array().unwrap().len() == 1
                && rows[0]["status"] == "graded"
                && server.api(&format!("/api/submissions/{}/grades", rows[0]["id"]))["grades"].as_array().unwrap().len() == n
        };
        assert!(wait_for(Duration::from_secs(180), || graded(&server, 1)), "not graded");
        let id = server.api(&format!("/api/submissions?assignment={}", a.id))[0]["id"].as_i64().unwrap();
        assert!(server.api("/api/tasks/penguins-cleaning/affected")["affected"].as_array().unwrap().is_empty());

        // The hidden clean table changes: one species corrected the other way.
        let truth = root.path().join("datasets/penguins-cleaning/hidden/clean.csv");
        let text = std::fs::read_to_string(&truth).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1] = lines[1].replacen("Gentoo", "Adelie", 1).replacen("Chinstrap", "Gentoo", 1);
        std::fs::write(&truth, lines.join("\n") + "\n").unwrap();
        let affected = server.api("/api/tasks/penguins-cleaning/affected");
        let rows = affected["affected"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{affected:#}");
        assert_eq!(rows[0]["submission"].as_i64(), Some(id));
        assert_eq!(rows[0]["changed"], serde_json::json!(["data"]), "{affected:#}");

        let auth = format!("Authorization: Basic {}\r\n", super::serve::base64(format!("ada:{PASSWORD}").as_bytes()));
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(stream, "POST /api/tasks/penguins-cleaning/regrade-affected HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("\"queued\":1"), "{answer}");
        assert!(wait_for(Duration::from_secs(180), || graded(&server, 2)), "not regraded");

        let grades = server.api(&format!("/api/submissions/{id}/grades"));
        let (old, new) = (&grades["grades"][0], &grades["grades"][1]);
        assert_ne!(old["dataset_digest"], new["dataset_digest"], "{grades:#}");
        assert_eq!(old["task_digest"], new["task_digest"]);
        assert!(old["accuracy"].as_f64().unwrap() > new["accuracy"].as_f64().unwrap(), "{grades:#}");
        assert!(server.api("/api/tasks/penguins-cleaning/affected")["affected"].as_array().unwrap().is_empty());
        // The old report itself is kept, not overwritten.
        let current = server.api(&format!("/api/submissions/{id}"));
        assert_eq!(current["report"]["provenance"]["dataset_digest"], new["dataset_digest"]);
    })
    .await
    .unwrap();
}
