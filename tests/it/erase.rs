//! Erasure (a candidate's right to erasure): after it, no file under the data folder and no row
//! of the store holds the candidate's e-mail, the assignment's id or a line of their code; the
//! other candidates' data stays, and an audit record with nothing personal is kept.

use axum::http::{header, StatusCode};

use super::common::repo_root;
use super::test_app::TestApp;

const PASSWORD: &str = "correct horse battery staple";

/// Every file under `dir` that holds any of `needles` (bytes, anywhere in the file).
fn files_holding(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{} holds {needle:?}", entry.path().display()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_erasure_no_file_and_no_row_holds_the_candidate_and_the_others_stay() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{hash}\"\n")).unwrap();
    let data = scratch.path().join("data");
    let app = TestApp::with(
        &repo_root(),
        &[
            ("TAKEHOME_CONFIG", config.to_str().unwrap()),
            ("TAKEHOME_DATA_DIR", data.to_str().unwrap()),
            ("TAKEHOME_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
            ("TAKEHOME_WEBHOOK_SECRET", "a-secret-of-32-characters-at-least"),
        ],
    )
    .await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let (email, id, line) = ("erase.me@example.org", "a0erase0me", "UNMISTAKABLE_LINE = 'erase-me-7f3a'");
    let theirs = format!("{reference}\n{line}\n");
    let (submission, _) = app.graded_push(id, &task, email, &[("clean.py", theirs.as_bytes())], "mine", &report).await;
    let (kept, _) = app.graded_push("a0keep0me", &task, "keep.me@example.org", &[("clean.py", reference.as_bytes())], "theirs", &report).await;
    // What an assessor adds: a comment, a decision (which queues a webhook naming the assignment),
    // extra time; the similarity view fingerprints both pushes.
    let ada = ("ada", PASSWORD);
    let (status, _) = app
        .post_json(&format!("/api/submissions/{submission}/comments"), ada, serde_json::json!({ "file": "clean.py", "line": 1, "text": "about erase.me" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        app.post_json(&format!("/api/submissions/{submission}/decision"), ada, serde_json::json!({ "decision": "hold", "reason": "waiting" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post_json(&format!("/api/assignments/{id}/extensions"), ada, serde_json::json!({ "minutes": 30, "reason": "a power cut" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let _ = app.api("/api/tasks/penguins-cleaning/similarity", ada).await;
    // Their address for e-mail, and a receipt waiting in the outbox.
    app.app.store.set_contact(id, email).await.unwrap();
    assert!(takehome::mail::queue_receipt(app.app.store.as_ref(), id, submission, 1).await.unwrap());
    let needles = [email, id, line];
    assert!(!files_holding(&data, &needles).is_empty(), "the set-up put the candidate's data under the data folder");

    // Before the erasure, the candidate asks what is held about them: one file with it all.
    let export = scratch.path().join("export.tar.gz");
    let done = takehome::erase::export_candidate(app.app.store.as_ref(), &app.app.repos, "Erase.Me@example.org ", &export).await.unwrap();
    assert_eq!((done.assignments, done.submissions), (1, 1));
    let unpacked = scratch.path().join("export");
    tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&export).unwrap())).unpack(&unpacked).unwrap();
    let held: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(unpacked.join("candidate.json")).unwrap()).unwrap();
    let one = &held["assignments"][0];
    assert_eq!(one["assignment"]["candidate"], email);
    assert!(one["submissions"][0]["report"]["components"].is_object(), "the report is in the export");
    assert_eq!(one["extensions"][0]["reason"], "a power cut");
    assert!(one["reviews"].to_string().contains("about erase.me") && one["webhooks"].as_array().is_some_and(|w| !w.is_empty()), "{one:#}");
    assert_eq!((one["email_address"].as_str(), one["emails"][0]["kind"].as_str()), (Some(email), Some("receipt")), "{one:#}");
    assert!(!held.to_string().contains("token"), "no token or its hash is exported");
    let work = scratch.path().join("their-code");
    let cloned = std::process::Command::new("git").arg("clone").arg("-q").arg(unpacked.join(format!("repos/{id}.git"))).arg(&work).output().unwrap();
    assert!(cloned.status.success(), "{}", String::from_utf8_lossy(&cloned.stderr));
    assert!(std::fs::read_to_string(work.join("clean.py")).unwrap().contains(line), "their code is in the export");

    let (status, _) = app.post_json(&format!("/api/assignments/{id}/erase"), ("ada", "wrong"), serde_json::json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, erased) = app.post_json(&format!("/api/assignments/{id}/erase"), ada, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert!(erased["erased"]["rows"].as_i64().unwrap() >= 5 && erased["erased"]["files"].as_u64().unwrap() >= 1, "{erased}");

    let left = files_holding(&data, &needles);
    assert!(left.is_empty(), "after the erasure: {left:#?}");
    // Every row of every table, read through SQLite, holds none of it either.
    let connection = rusqlite::Connection::open(data.join("takehome.sqlite")).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in &tables {
        let mut statement = connection.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let text = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                };
                assert!(!needles.iter().any(|n| text.contains(n)), "{table} still holds it: {text}");
            }
        }
    }
    // The other candidate's data stays; the audit record says what went, not whose.
    let listed = app.api("/api/assignments", ada).await;
    assert_eq!(listed.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect::<Vec<_>>(), ["a0keep0me"]);
    assert_eq!(app.api(&format!("/api/submissions/{kept}"), ada).await["submission"]["assignment"], "a0keep0me");
    assert!(app.app.repos.path("a0keep0me").is_dir());
    let audit = app.api("/api/erasures", ada).await;
    let records = audit["erasures"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0]["task"].as_str(), records[0]["erased_by"].as_str(), records[0]["reason"].as_str()),
        (Some("penguins-cleaning"), Some("ada"), Some("request"))
    );
    let (status, _) = app.post_json(&format!("/api/assignments/{id}/erase"), ada, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "erased twice");
    let (status, _) = app.get(&format!("/api/status/{id}"), &[(header::AUTHORIZATION, super::test_app::basic(id, "x"))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The retention rule erases a decided assignment once its decision is `days_after_decision`
/// old, and keeps one decided since and one never decided; the audit record says `retention`.
#[tokio::test(flavor = "multi_thread")]
async fn the_retention_rule_erases_decided_assignments_once_their_decision_is_old_enough() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{hash}\"\nretention:\n  days_after_decision: 30\n")).unwrap();
    let data = scratch.path().join("data");
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap()), ("TAKEHOME_DATA_DIR", data.to_str().unwrap())]).await;
    assert_eq!(app.app.config.retention_days_after_decision, Some(30));
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let code = b"print('hello')\n";
    let (old, _) = app.graded_push("a0old0decided", &task, "old@example.org", &[("clean.py", code)], "old", &report).await;
    let (recent, _) = app.graded_push("a0recent0decided", &task, "recent@example.org", &[("clean.py", code)], "recent", &report).await;
    let _ = app.graded_push("a0undecided", &task, "undecided@example.org", &[("clean.py", code)], "undecided", &report).await;
    let store = app.app.store.as_ref();
    let day = 86_400;
    let now = takehome::units::now();
    store.add_review("a0old0decided", old, takehome::store::ReviewKind::Decision, "ada", "{\"decision\":\"reject\"}", now - 31 * day).await.unwrap();
    store.add_review("a0recent0decided", recent, takehome::store::ReviewKind::Decision, "ada", "{\"decision\":\"advance\"}", now - 29 * day).await.unwrap();

    let erased = takehome::erase::apply_retention(store, &app.app.repos, &data, 30, now).await.unwrap();
    assert_eq!(erased.len(), 1, "{erased:?}");
    let mut left: Vec<String> = store.assignments().await.unwrap().into_iter().map(|a| a.id).collect();
    left.sort();
    assert_eq!(left, ["a0recent0decided", "a0undecided"]);
    assert!(!app.app.repos.path("a0old0decided").exists() && app.app.repos.path("a0recent0decided").is_dir());
    let audit = store.erasures().await.unwrap();
    assert_eq!((audit.len(), audit[0].erased_by.as_str(), audit[0].reason.as_str()), (1, "retention", "retention"));
    // A day later the second one's turn comes; a run with nothing due erases nothing.
    assert_eq!(takehome::erase::apply_retention(store, &app.app.repos, &data, 30, now).await.unwrap().len(), 0);
    assert_eq!(takehome::erase::apply_retention(store, &app.app.repos, &data, 30, now + 2 * day).await.unwrap().len(), 1);

    // A rule out of range is refused, naming the key.
    std::fs::write(&config, "retention:\n  days_after_decision: 0\n").unwrap();
    let error = takehome::config::Config::load(Some(&config), |_| None).unwrap_err().to_string();
    assert!(error.contains("retention.days_after_decision") && error.contains("from 1 to 36500"), "{error}");
}

/// The assessor's button on the submission page: a typed confirmation, then the erasure.
#[tokio::test(flavor = "multi_thread")]
async fn the_erase_button_asks_for_a_typed_confirmation() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{}\"\n", takehome::secret::hash_password(PASSWORD))).unwrap();
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap())]).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let (submission, _) = app.graded_push("a0button", &task, "b@example.org", &[("clean.py", b"print(1)\n")], "one", &report).await;
    let cookie = app.assessor_cookie("ada").await;
    let page = app.page(&cookie, &format!("/submissions/{submission}")).await;
    assert!(page.contains("action=\"/assignments/a0button/erase\""), "the button is on the submission page");
    let csrf = super::test_app::csrf_of(&page);
    let (status, body) = app.post_form(&cookie, "/assignments/a0button/erase", &[("confirm", "yes")], &csrf).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(app.app.store.assignment("a0button").await.unwrap().is_some(), "nothing erased without the word");
    let (status, body) = app.post_form(&cookie, "/assignments/a0button/erase", &[("confirm", "erase")], "not-the-token").await;
    assert_ne!(status, StatusCode::OK, "a forged form is refused: {body}");
    let (status, body) = app.post_form(&cookie, "/assignments/a0button/erase", &[("confirm", "erase")], &csrf).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("An assignment of penguins-cleaning"), "{body}");
    assert!(app.app.store.assignment("a0button").await.unwrap().is_none());
    assert_eq!(app.app.store.erasures().await.unwrap()[0].erased_by, "ada");
}
