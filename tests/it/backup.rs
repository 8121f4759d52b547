//! `takehome backup` while the server serves and writes, `takehome restore` into a new folder:
//! the restored server answers as the first did, and the candidate clones with the same token.

use axum::http::StatusCode;

use super::common::repo_root;
use super::test_app::TestApp;

const PASSWORD: &str = "correct horse battery staple";

fn settings(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{hash}\"\n")).unwrap();
    config
}

fn config_for(data: &std::path::Path, extra: &[(&str, &str)]) -> takehome::config::Config {
    let env = |key: &str| match key {
        "TAKEHOME_DATA_DIR" => Some(data.display().to_string()),
        "TAKEHOME_TASKS_ROOT" => Some(repo_root().display().to_string()),
        _ => extra.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string()),
    };
    takehome::config::Config::load(None, env).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_while_serving_restores_into_a_new_folder_that_answers_the_same() {
    let scratch = tempfile::tempdir().unwrap();
    let config = settings(scratch.path());
    let first = scratch.path().join("first");
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap()), ("TAKEHOME_DATA_DIR", first.to_str().unwrap())]).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let clean = std::fs::read(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let (submission, token) = app.graded_push("a0backup", &task, "lin@example.com", &[("clean.py", clean.as_slice())], "the reference", &report).await;
    let body = serde_json::json!({ "task": "diamond-cut", "candidate": "kim@example.com" });
    let (status, _) = app.post_json("/api/assignments", ("ada", PASSWORD), body).await;
    assert_eq!(status, StatusCode::CREATED);

    // Assignments keep being made while the backup runs.
    let app = std::sync::Arc::new(app);
    let writing = app.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let writer = tokio::spawn(async move {
        let mut made = 0;
        while !stopped.is_cancelled() {
            let body = serde_json::json!({ "task": "diamond-cut", "candidate": format!("c{made}@example.com") });
            let (status, _) = writing.post_json("/api/assignments", ("ada", PASSWORD), body).await;
            assert_eq!(status, StatusCode::CREATED);
            made += 1;
        }
        made
    });
    let file = scratch.path().join("takehome-backup.tar.gz");
    let (from, to) = (app.app.config.clone(), file.clone());
    let summary = tokio::task::spawn_blocking(move || takehome::backup::backup(&from, &to)).await.unwrap().unwrap();
    stop.cancel();
    let made_meanwhile = writer.await.unwrap();
    assert!(summary.assignments >= 2 && summary.repositories >= summary.assignments, "{summary:?}");
    eprintln!("backup: {summary:?}, {made_meanwhile} assignments made meanwhile");

    // Restored into a new folder, the server answers as the first did for what the backup holds.
    let second = scratch.path().join("second");
    let into = config_for(&second, &[]);
    let restored = takehome::backup::restore(&into, &file).unwrap();
    assert_eq!((restored.assignments, restored.repositories), (summary.assignments, summary.repositories));
    let again = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap()), ("TAKEHOME_DATA_DIR", second.to_str().unwrap())]).await;
    let before = app.api("/api/assignments", ("ada", PASSWORD)).await;
    let after = again.api("/api/assignments", ("ada", PASSWORD)).await;
    let after = after.as_array().unwrap();
    assert_eq!(after.len(), summary.assignments);
    for a in after {
        assert!(before.as_array().unwrap().contains(a), "{a} is not the first server's");
    }
    let path = format!("/api/submissions/{submission}");
    assert_eq!(app.api(&path, ("ada", PASSWORD)).await, again.api(&path, ("ada", PASSWORD)).await);
    // The candidate's token still opens their repository, cloned by git from the restored server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(takehome::web::serve(listener, again.app.clone(), shutdown.clone()));
    let work = scratch.path().join("clone");
    let url = format!("http://a0backup:{token}@127.0.0.1:{port}/git/a0backup.git");
    let cloned = tokio::process::Command::new("git").args(["clone", "--quiet", &url]).arg(&work).env("GIT_TERMINAL_PROMPT", "0").output().await.unwrap();
    assert!(cloned.status.success(), "git clone: {}", String::from_utf8_lossy(&cloned.stderr));
    assert_eq!(std::fs::read(work.join("clean.py")).unwrap(), clean, "the pushed commit is in the restored repository");
    shutdown.cancel();
    let _ = server.await;

    // A folder that is not empty, and a PostgreSQL store, are refused with what to do instead.
    let refused = takehome::backup::restore(&into, &file).unwrap_err().to_string();
    assert!(refused.contains("not empty"), "{refused}");
    let postgres = config_for(&scratch.path().join("pg"), &[("TAKEHOME_DATABASE", "postgres://u@127.0.0.1:1/x")]);
    let refused = takehome::backup::backup(&postgres, &scratch.path().join("pg.tar.gz")).unwrap_err().to_string();
    assert!(refused.contains("pg_dump"), "{refused}");
}

#[test]
fn a_backup_with_a_link_or_a_path_out_of_the_folder_is_refused_before_anything_is_written_there() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("hostile.tar.gz");
    {
        let out = std::fs::File::create(&file).unwrap();
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(out, flate2::Compression::fast()));
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, "repos/a1/HEAD", "/etc/passwd").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let data = scratch.path().join("data");
    let refused = takehome::backup::restore(&config_for(&data, &[]), &file).unwrap_err().to_string();
    assert!(refused.contains("not a plain file"), "{refused}");
    assert!(!data.join("repos/a1/HEAD").exists());
}
