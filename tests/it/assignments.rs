//! Assignments made from the API (a tracking system) and the dashboard's form: checked field by
//! field, the credentials answered once, and the repository they open cloned by a real git
//! client over HTTP.

use axum::http::{header, StatusCode};

use super::common::repo_root;
use super::test_app::{basic, csrf_of, TestApp};

const PASSWORD: &str = "correct horse battery staple";

async fn app_with_ada() -> (TestApp, tempfile::TempDir) {
    let settings = tempfile::tempdir().unwrap();
    let config = settings.path().join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{hash}\"\n")).unwrap();
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap())]).await;
    (app, settings)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tracking_system_makes_an_assignment_and_the_candidate_clones_it_with_the_token_said_once() {
    let (app, _settings) = app_with_ada().await;
    let body = serde_json::json!({ "task": "penguins-cleaning", "candidate": "lin@example.com", "time_box": "2h", "starts": "now" });

    // Who is asking comes first: no credentials, a wrong password, a foreign page.
    let headers = [(header::CONTENT_TYPE, "application/json".to_string())];
    let (status, _, _) = app.request("POST", "/api/assignments", &headers, body.to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.post_json("/api/assignments", ("ada", "wrong"), body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let foreign = [
        (header::AUTHORIZATION, basic("ada", PASSWORD)),
        (header::CONTENT_TYPE, "application/json".to_string()),
        (header::ORIGIN, "https://evil.example".to_string()),
    ];
    let (status, _, _) = app.request("POST", "/api/assignments", &foreign, body.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.api("/api/assignments", ("ada", PASSWORD)).await.as_array().unwrap().is_empty(), "nothing was made");

    let (status, made) = app.post_json("/api/assignments", ("ada", PASSWORD), body).await;
    assert_eq!(status, StatusCode::CREATED, "{made:#}");
    let id = made["id"].as_str().unwrap().to_string();
    let token = made["token"].as_str().unwrap().to_string();
    assert_eq!(made["user"], id.as_str());
    assert_eq!((made["task"].as_str(), made["title"].as_str().is_some_and(|t| !t.is_empty())), (Some("penguins-cleaning"), true));
    assert_eq!((made["time_box_seconds"].as_i64(), made["starts"].as_str()), (Some(7200), Some("now")));
    assert!(made["started_at"].as_i64().is_some(), "the clock runs from now: {made:#}");
    assert_eq!(made["clone_url"], format!("http://127.0.0.1:9/git/{id}.git").as_str());
    assert_eq!(made["status_url"], format!("http://127.0.0.1:9/status/{id}").as_str());
    // Said once: the list holds the assignment, never its token.
    let listed = app.api("/api/assignments", ("ada", PASSWORD)).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&token), "the token is listed again: {listed}");
    // The candidate's credentials work: their status, and a real clone over HTTP.
    let status = app.api(&format!("/api/status/{id}"), (&id, &token)).await;
    assert_eq!(status["task"], "penguins-cleaning");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(takehome::web::serve(listener, app.app.clone(), shutdown.clone()));
    let into = tempfile::tempdir().unwrap();
    let url = format!("http://{id}:{token}@127.0.0.1:{port}/git/{id}.git");
    let cloned = tokio::process::Command::new("git")
        .args(["clone", "--quiet", &url])
        .arg(into.path().join("work"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .unwrap();
    assert!(cloned.status.success(), "git clone: {}", String::from_utf8_lossy(&cloned.stderr));
    assert!(into.path().join("work/clean.py").is_file() && into.path().join("work/NOTES.md").is_file(), "the starter is in the clone");
    let wrong = format!("http://{id}:not-the-token@127.0.0.1:{port}/git/{id}.git");
    let refused = tokio::process::Command::new("git")
        .args(["clone", "--quiet", &wrong])
        .arg(into.path().join("no"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success(), "a wrong token cloned");
    shutdown.cancel();
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_request_is_refused_naming_its_field_and_makes_nothing() {
    let (app, _settings) = app_with_ada().await;
    let ask = |body: serde_json::Value| app.post_json("/api/assignments", ("ada", PASSWORD), body);
    for (body, says) in [
        (serde_json::json!({ "task": "no-such-task", "candidate": "lin@example.com" }), "task: no task \"no-such-task\""),
        (serde_json::json!({ "task": "../etc", "candidate": "lin@example.com" }), "task: \"../etc\" is not a task id"),
        (serde_json::json!({ "task": "penguins-cleaning", "candidate": "" }), "candidate: expected an e-mail address or a name"),
        (serde_json::json!({ "task": "penguins-cleaning", "candidate": "lin", "time_box": "2" }), "time_box: expected a duration"),
        (serde_json::json!({ "task": "penguins-cleaning", "candidate": "lin", "starts": "later" }), "starts: expected \"on-clone\" or \"now\""),
        (
            serde_json::json!({ "task": "penguins-cleaning", "candidate": "lin", "email": "lin@example.com" }),
            "email: this server sends no e-mail (no smtp_url in its config)",
        ),
        (serde_json::json!({ "task": "penguins-cleaning", "candidate": "lin", "colour": "red" }), "colour"),
        (serde_json::json!({ "candidate": "lin" }), "task"),
    ] {
        let (status, answer) = ask(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| e.contains(says)), "{body}: {answer}");
    }
    assert!(app.api("/api/assignments", ("ada", PASSWORD)).await.as_array().unwrap().is_empty(), "a refused request made an assignment");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_form_makes_an_assignment_with_the_sessions_csrf_token() {
    let (app, _settings) = app_with_ada().await;
    let ada = app.assessor_cookie("ada").await;
    let dashboard = app.page(&ada, "/").await;
    assert!(dashboard.contains("href=\"/assignments/new\""), "the dashboard links the form");
    let form = app.page(&ada, "/assignments/new").await;
    assert!(
        form.contains("<option value=\"penguins-cleaning\">") && form.contains("Clean the Palmer penguins field records"),
        "the form lists the tasks with their titles"
    );
    let csrf = csrf_of(&form);
    let fields = [("task", "diamond-cut"), ("candidate", "Kim <kim@example.com>"), ("time_box", ""), ("starts", "on-clone")];
    let (status, _) = app.post_form(&ada, "/assignments", &fields, "not-the-token").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form without the session's CSRF token");
    let (status, page) = app.post_form(&ada, "/assignments", &fields, &csrf).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("git clone http://127.0.0.1:9/git/a") && page.contains("shown only this once"), "{page}");
    assert!(page.contains("Kim &lt;kim@example.com&gt;"), "the candidate is escaped: {page}");
    let listed = app.api("/api/assignments", ("ada", PASSWORD)).await;
    let made = &listed.as_array().unwrap()[0];
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    assert_eq!((made["task"].as_str(), made["starts"].as_str()), (Some("diamond-cut"), Some("on-clone")));
    assert_eq!(made["time_box_seconds"].as_u64(), Some(task.time_box.as_secs()), "the task's own time box");
    let (status, page) = app.post_form(&ada, "/assignments", &[("task", "diamond-cut"), ("candidate", "")], &csrf).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("candidate: expected an e-mail address or a name") && page.contains("/assignments/new"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_says_where_each_review_stands_and_filters_by_task_and_state() {
    use takehome::store::ReviewKind;
    let (app, _settings) = app_with_ada().await;
    let ada = app.assessor_cookie("ada").await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let clean = std::fs::read(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let mut pushed = Vec::new();
    for id in ["a0waiting", "a0scored", "a0decided"] {
        let (submission, _) = app.graded_push(id, &task, &format!("{id}@example.com"), &[("clean.py", clean.as_slice())], "push", &report).await;
        pushed.push(submission);
    }
    let store = &app.app.store;
    store.add_review("a0scored", pushed[1], ReviewKind::Scores, "ada", "{}", 1).await.unwrap();
    store.add_review("a0decided", pushed[2], ReviewKind::Decision, "ada", "{}", 2).await.unwrap();
    let (status, made) =
        app.post_json("/api/assignments", ("ada", PASSWORD), serde_json::json!({ "task": "diamond-cut", "candidate": "new@example.com" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let fresh = made["id"].as_str().unwrap().to_string();

    let row = |page: &str, id: &str| -> Option<String> {
        let at = page.find(&format!("/status/{id}<"))?;
        let start = page[..at].rfind("<tr")?;
        Some(page[start..at].to_string())
    };
    let all = app.page(&ada, "/").await;
    for (id, state) in [("a0waiting", "to review"), ("a0scored", "reviewed"), ("a0decided", "decided"), (fresh.as_str(), "no push yet")] {
        let found = row(&all, id).unwrap_or_else(|| panic!("{id} is not listed"));
        assert!(found.contains(&format!("<td>{state}</td>")), "{id} should be {state}: {found}");
    }
    for tally in ["to review (1)", "reviewed (1)", "decided (1)", "no push yet (1)", "all (4)"] {
        assert!(all.contains(tally), "the dashboard lacks {tally:?}");
    }
    assert!(all.contains("Predict the cut grade of a diamond") && all.contains("Clean the Palmer penguins field records"), "tasks with their titles");
    let waiting = app.page(&ada, "/?state=to-review").await;
    assert!(row(&waiting, "a0waiting").is_some() && row(&waiting, "a0scored").is_none() && row(&waiting, &fresh).is_none());
    let diamonds = app.page(&ada, "/?task=diamond-cut").await;
    assert!(row(&diamonds, &fresh).is_some() && row(&diamonds, "a0waiting").is_none() && diamonds.contains("all (1)"));
    let decided_diamonds = app.page(&ada, "/?task=diamond-cut&state=decided").await;
    assert!(row(&decided_diamonds, &fresh).is_none(), "both filters hold at once");
    // An unknown state or task filters nothing out and breaks nothing.
    assert!(row(&app.page(&ada, "/?state=%3Cscript%3E").await, "a0waiting").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_comparison_shows_each_component_the_rubric_and_the_decision_beside_the_total() {
    let (app, _settings) = app_with_ada().await;
    let ada = app.assessor_cookie("ada").await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let frozen = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let clean = std::fs::read(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let (id, _) = app.graded_push("a0compared", &task, "c@example.com", &[("clean.py", clean.as_slice())], "push", &frozen).await;
    let report: serde_json::Value = serde_json::from_str(&frozen).unwrap();
    let scores = serde_json::json!({ "scores": [{ "criterion": "approach", "level": "principled" }, { "criterion": "structure", "level": "clear" }, { "criterion": "explanation", "level": "clear" }] });
    let (status, saved) = app.post_json(&format!("/api/submissions/{id}/scores"), ("ada", PASSWORD), scores).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, decided) = app
        .post_json(&format!("/api/submissions/{id}/decision"), ("ada", PASSWORD), serde_json::json!({ "decision": "advance", "reason": "clean and explained" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let review = app.api(&format!("/api/submissions/{id}/review"), ("ada", PASSWORD)).await;
    let rubric = review["rubric_score"].as_f64().expect("a rubric score");

    let compare = app.page(&ada, "/tasks/penguins-cleaning/compare").await;
    let at = compare.rfind(&format!("href=\"/submissions/{id}\">#")).expect("the submission's row");
    let row = &compare[compare[..at].rfind("<tr").unwrap()..at + compare[at..].find("</tr>").unwrap()];
    for header in ["accuracy", "code quality", "runtime", "rubric", "decision"] {
        assert!(compare.contains(&format!(">{header}</th>")), "the comparison lacks the column {header}");
    }
    let components = &report["components"];
    for value in [components["accuracy"]["score"].as_f64(), components["code_quality"]["score"].as_f64(), components["runtime"]["score"].as_f64(), Some(rubric)]
    {
        assert!(row.contains(&format!("<td class=\"num\">{:.1}</td>", value.unwrap())), "{value:?} is not in the row: {row}");
    }
    assert!(row.contains("<td>advance</td>"), "the decision is not in the row: {row}");
}

/// A drive of 230 assignments: the dashboard lists one page of them, says which and of how many,
/// and links the others with the filters kept; a page past the last shows the last.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_lists_one_page_of_assignments_and_links_the_others() {
    use takehome::store::{Assignment, Starts};
    let (app, _settings) = app_with_ada().await;
    let ada = app.assessor_cookie("ada").await;
    let now = takehome::web::now();
    for n in 0..230 {
        let assignment = Assignment {
            id: format!("a0page{n:03}"),
            task: "penguins-cleaning".parse().unwrap(),
            candidate: format!("c{n:03}@example.com"),
            token_hash: "h".into(),
            time_box_seconds: 3600,
            starts: Starts::OnClone,
            started_at: None,
            created_at: now - n,
            extra_seconds: 0,
        };
        app.app.store.create_assignment(&assignment).await.unwrap();
    }
    let listed = |page: &str| page.matches("<code>/status/a0page").count();
    let first = app.page(&ada, "/").await;
    assert_eq!(listed(&first), takehome::web::pages::DASHBOARD_ASSIGNMENTS, "one page of assignments");
    assert!(first.contains("Assignments 1–100 of 230 are listed"), "the page says which it lists");
    assert!(first.contains("href=\"/?page=2\"") && !first.contains(">previous<"), "the next page is linked");
    let last = app.page(&ada, "/?page=3").await;
    assert_eq!(listed(&last), 30);
    assert!(last.contains("Assignments 201–230 of 230") && last.contains("href=\"/?page=2\"") && !last.contains(">next<"));
    assert_eq!(listed(&app.page(&ada, "/?page=99").await), 30, "past the last page: the last");
    // The filters are kept from page to page.
    let filtered = app.page(&ada, "/?task=penguins-cleaning&state=no-push&page=2").await;
    assert!(filtered.contains("Assignments 101–200 of 230"), "{filtered}");
    assert!(filtered.contains("href=\"/?task=penguins-cleaning&amp;state=no-push&amp;page=3\""), "the filters go with the page");
    assert!(filtered.contains("href=\"/?task=penguins-cleaning&amp;state=no-push\""), "page 1 is the bare filter");
}
