//! The review desk in process (`TestApp`: the router and a real SQLite store, real repositories,
//! no Docker, no binary): a graded push (a real commit; its report frozen from a real grading of
//! the same files, `tests/fixtures/reports/review-desk.json`), read blind by two reviewers who
//! comment, score and disagree, then released to the candidate, decided and exported; the pages
//! rendered in a real browser. `review::review_a_submission…` covers the same desk end to end,
//! from a real push graded in Docker.

use axum::http::{header, StatusCode};

use super::common::repo_root;
use super::test_app::{basic, csrf_of, TestApp};

const PASSWORD: &str = "correct horse battery";
const BOB_PASSWORD: &str = "another horse battery";

/// The submission's files (beside the starter): the reference cleaner with a helper whose unused
/// import is an F401 at line 64 and hostile text, notes with HTML, a notebook, a binary file.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let dir = repo_root().join("tests/fixtures/review-desk");
    let mut files: Vec<(&str, Vec<u8>)> =
        ["clean.py", "NOTES.md", "explore.ipynb"].into_iter().map(|name| (name, std::fs::read(dir.join(name)).unwrap())).collect();
    files.push(("scratch.bin", vec![0u8, 159, 146, 150, 0, 1]));
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn two_reviewers_read_blind_comment_score_and_disagree_then_release_decide_and_export() {
    let browser = super::serve::browser();
    let settings = tempfile::tempdir().unwrap();
    let config = settings.path().join("takehome.yaml");
    let hashes = [("ada", PASSWORD), ("bob", BOB_PASSWORD)]
        .map(|(user, password)| format!("  - user: {user}\n    password_hash: \"{}\"\n", takehome::secret::hash_password(password)));
    std::fs::write(&config, format!("assessors:\n{}", hashes.concat())).unwrap();
    let app = TestApp::with(
        &repo_root(),
        &[
            ("TAKEHOME_CONFIG", config.to_str().unwrap()),
            ("TAKEHOME_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
            ("TAKEHOME_WEBHOOK_SECRET", "a-secret-of-32-characters-at-least"),
        ],
    )
    .await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let name = "lin.candidate@example.com";
    let lin = "a1in0candidate";
    let alias = takehome::review::alias(lin);
    let files = files();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (*name, bytes.as_slice())).collect();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let (id, token) = app.graded_push(lin, &task, name, &files, "Rules per defect <b>first</b>", &report).await;
    let finding_line = 64;
    let (ada, bob) = (app.assessor_cookie("ada").await, app.assessor_cookie("bob").await);

    // ---- the code view
    let listing = app.api(&format!("/api/submissions/{id}/files"), ("ada", PASSWORD)).await;
    let file = |path: &str| {
        listing["view"]["files"].as_array().unwrap().iter().find(|f| f["path"] == path).cloned().unwrap_or_else(|| panic!("no {path}: {listing:#}"))
    };
    assert_eq!(file("clean.py")["change"], "modified", "{listing:#}");
    assert!(file("clean.py")["added_lines"].as_array().unwrap().iter().any(|l| l.as_u64() == Some(finding_line)));
    assert!(file("clean.py")["diff"].as_str().unwrap().contains("+def unused_helper(value):"));
    assert_eq!(file("README.md")["change"], "unchanged");
    assert_eq!(file("explore.ipynb")["kind"], "notebook");
    assert_eq!(file("explore.ipynb")["cells"].as_array().unwrap().len(), 2);
    assert_eq!(file("scratch.bin")["kind"], "binary");
    assert!(file("scratch.bin").get("text").is_none());
    let code = app.page(&ada, &format!("/submissions/{id}/code")).await;
    assert!(code.contains("class=\"hl-keyword\">def</span>"), "no highlighting");
    assert!(code.contains(&format!("-L{finding_line}\" class=\"added finding\"")), "the finding's line is not marked");
    assert!(code.contains("<b>F401</b>"), "the finding is not shown at its line");
    assert!(code.contains("Diff against the starter") && code.contains("<span class=\"add\">+def unused_helper(value):</span>"));
    assert!(code.contains("cell 2 · code") && code.contains("Looking at the units"));
    assert!(!code.contains("<script") && code.contains("&lt;script&gt;alert(&#39;code&#39;)"), "candidate code must be escaped");

    // ---- access: no page or answer without an assessor; a candidate's token is no assessor's
    for path in [format!("/submissions/{id}"), format!("/submissions/{id}/code"), "/tasks/penguins-cleaning/compare".into()] {
        let (status, _) = app.get(&path, &[]).await;
        assert!(status == StatusCode::SEE_OTHER || status == StatusCode::UNAUTHORIZED, "{path}: {status}");
    }
    let (status, _) = app.get(&format!("/api/submissions/{id}"), &[(header::AUTHORIZATION, basic(lin, &token))]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a candidate read an assessor's answer");
    let (status, _) = app.get("/api/tasks/..%2Fetc/compare", &[(header::AUTHORIZATION, basic("ada", PASSWORD))]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a task id that is not one");
    // Who asks is checked before the submission is looked up: a stranger learns nothing of
    // which submissions exist.
    for path in [format!("/api/submissions/{id}/files"), "/api/submissions/999999/files".into(), format!("/api/submissions/{id}/review")] {
        let (status, _) = app.get(&path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/api/submissions/999999/files", "/api/submissions/999999/review", "/api/submissions/x/files"] {
        let (status, body) = app.get(path, &[(header::AUTHORIZATION, basic("ada", PASSWORD))]).await;
        assert!(status == StatusCode::NOT_FOUND && body.contains("no such submission"), "{path}: {status} {body}");
    }

    // ---- a line comment round-trips; only its author may edit it
    let path = format!("/api/submissions/{id}/comments");
    let (status, made) =
        app.post_json(&path, ("ada", PASSWORD), serde_json::json!({ "file": "clean.py", "line": finding_line, "text": "Why import <os> here?" })).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let comment = made["id"].as_i64().unwrap();
    let (status, _) = app.post_json(&format!("/api/comments/{comment}"), ("bob", BOB_PASSWORD), serde_json::json!({ "text": "hijacked" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another reviewer edited ada's comment");
    let (status, _) =
        app.post_json(&format!("/api/comments/{comment}"), ("ada", PASSWORD), serde_json::json!({ "text": "Why import <os> inside the helper?" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = app.post_json(&path, ("ada", PASSWORD), serde_json::json!({ "file": "nope.py", "line": 1, "text": "x" })).await;
    assert!(status == StatusCode::UNPROCESSABLE_ENTITY && refused["error"].as_str().unwrap().contains("nope.py"), "{status} {refused}");
    let review = app.api(&format!("/api/submissions/{id}/review"), ("ada", PASSWORD)).await;
    assert_eq!(review["comments"][0]["text"], "Why import <os> inside the helper?", "{review:#}");
    assert_eq!(review["comments"][0]["line"].as_u64(), Some(finding_line));
    let code = app.page(&bob, &format!("/submissions/{id}/code")).await;
    assert!(code.contains("Why import &lt;os&gt; inside the helper?"), "bob does not see ada's comment");

    // ---- two reviewers: ada with the form, bob through the API; they disagree on approach
    let review_page = app.page(&ada, &format!("/submissions/{id}")).await;
    let scores = [
        ("level.approach", "principled"),
        ("note.approach", "Handles unknown units"),
        ("level.structure", "clear"),
        ("level.explanation", "clear"),
        ("note.explanation", "Good notes"),
    ];
    let (status, _) = app.post_form(&ada, &format!("/submissions/{id}/scores"), &scores, "not-the-token").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form without the session's CSRF token was taken");
    let (status, location) = app.post_form(&ada, &format!("/submissions/{id}/scores"), &scores, &csrf_of(&review_page)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let bobs = serde_json::json!({ "scores": [{ "criterion": "approach", "level": "ad-hoc", "note": "Hard-coded spellings" }, { "criterion": "structure", "level": "clear" }, { "criterion": "explanation", "level": "clear" }] });
    let (status, saved) = app.post_json(&format!("/api/submissions/{id}/scores"), ("bob", BOB_PASSWORD), bobs).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, refused) = app
        .post_json(
            &format!("/api/submissions/{id}/scores"),
            ("bob", BOB_PASSWORD),
            serde_json::json!({ "scores": [{ "criterion": "approach", "level": "superb" }] }),
        )
        .await;
    assert!(status == StatusCode::UNPROCESSABLE_ENTITY && refused["error"].as_str().unwrap().contains("ad-hoc, systematic, principled"), "{refused}");
    let review = app.api(&format!("/api/submissions/{id}/review"), ("ada", PASSWORD)).await;
    assert_eq!(review["reviewers"].as_array().unwrap().len(), 2, "{review:#}");
    assert_eq!(review["agreement"][0]["id"], "approach");
    assert_eq!(review["agreement"][0]["disagreement"], true);
    assert_eq!(review["agreement"][0]["spread"], 2);
    assert_eq!(review["agreement"][1]["disagreement"], false);
    // (ada 100 + bob (2×0 + 100 + 100)/4 = 50) / 2.
    assert!((review["rubric_score"].as_f64().unwrap() - 75.0).abs() < 1e-9, "{review:#}");
    let review_page = app.page(&ada, &format!("/submissions/{id}")).await;
    assert!(review_page.contains("reviewers disagree (by 2 levels)"), "the disagreement is not marked");
    assert!(review_page.contains("<h1>My approach</h1>") && review_page.contains("&lt;script&gt;alert("), "NOTES.md is not rendered and escaped");
    assert!(review_page.contains("Rules per defect &lt;b&gt;first&lt;/b&gt;"), "the timeline lacks the commit message");

    // ---- blind: no page or answer names the candidate before the decision
    let mut pages_html = Vec::new();
    for path in ["/".to_string(), format!("/submissions/{id}"), format!("/submissions/{id}/code"), "/tasks/penguins-cleaning/compare".to_string()] {
        let html = app.page(&ada, &path).await;
        assert!(!html.contains(name) && !html.contains("lin.candidate"), "{path} names the candidate in blind review");
        assert!(html.contains(&alias), "{path} does not show the alias {alias}");
        pages_html.push(html);
    }
    for path in [
        "/api/assignments".to_string(),
        "/api/submissions".to_string(),
        format!("/api/submissions/{id}"),
        format!("/api/submissions/{id}/files"),
        format!("/api/submissions/{id}/review"),
        "/api/tasks/penguins-cleaning/compare".to_string(),
        "/api/tasks/penguins-cleaning/export".to_string(),
        "/api/tasks/penguins-cleaning/export?format=csv".to_string(),
    ] {
        let (status, body) = app.get(&path, &[(header::AUTHORIZATION, basic("ada", PASSWORD))]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains("lin.candidate"), "{path} names the candidate in blind review: {body}");
        assert!(body.contains(&alias), "{path} does not show the alias");
    }

    // ---- the candidate sees no feedback before its release, the notes after
    let candidate = [(header::AUTHORIZATION, basic(lin, &token))];
    let (status, before) = app.get(&format!("/api/status/{lin}"), &candidate).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert!(before["feedback"].is_null(), "{before:#}");
    let (_, status_page) = app.get(&format!("/status/{lin}"), &candidate).await;
    assert!(!status_page.contains("Feedback from the assessors") && !status_page.contains("Handles unknown units"));
    let (status, location) =
        app.post_form(&ada, &format!("/submissions/{id}/release"), &[("message", "Thank you for your time.")], &csrf_of(&review_page)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let (_, after) = app.get(&format!("/api/status/{lin}"), &candidate).await;
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    let notes: Vec<&str> =
        after["feedback"]["criteria"].as_array().unwrap().iter().flat_map(|c| c["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap())).collect();
    assert!(notes.contains(&"Handles unknown units") && notes.contains(&"Hard-coded spellings"), "{after:#}");
    assert!(after["feedback"]["score"].is_null(), "penguins-cleaning does not release scores: {after:#}");
    assert!(after["feedback"]["criteria"].as_array().unwrap().iter().all(|c| c["levels"].as_array().unwrap().is_empty()));
    assert!(!after.to_string().contains("\"bob\"") && !after.to_string().contains("\"ada\""), "reviewers' names reached the candidate");
    let (_, status_page) = app.get(&format!("/status/{lin}"), &candidate).await;
    assert!(status_page.contains("Feedback from the assessors") && status_page.contains("Thank you for your time."));

    // ---- the decision: recorded with who and when; the name appears
    let decision = [("decision", "advance"), ("reason", "Strong cleaner; ask about units")];
    let (status, location) = app.post_form(&ada, &format!("/submissions/{id}/decision"), &decision, &csrf_of(&review_page)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let review = app.api(&format!("/api/submissions/{id}/review"), ("ada", PASSWORD)).await;
    assert_eq!(review["decision"]["decision"], "advance");
    assert_eq!(review["decision"]["author"], "ada");
    assert_eq!(review["candidate"], name, "the name shows once decided");
    assert!(app.page(&ada, "/").await.contains(name));
    let (_, csv) = app.get("/api/tasks/penguins-cleaning/export?format=csv", &[(header::AUTHORIZATION, basic("ada", PASSWORD))]).await;
    let head = csv.lines().next().unwrap();
    assert!(head.contains("criterion:approach") && head.contains("decision"), "{csv}");
    let row = csv.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no row for the candidate: {csv}"));
    assert!(row.contains(",advance,") && row.contains("Strong cleaner; ask about units") && row.contains(",ada,"), "{row}");
    let export = app.api("/api/tasks/penguins-cleaning/export", ("ada", PASSWORD)).await;
    let mine = export["candidates"].as_array().unwrap().iter().find(|c| c["candidate"] == name).unwrap();
    assert_eq!(mine["decision"], "advance");
    assert!((mine["rubric"].as_f64().unwrap() - 75.0).abs() < 1e-9);
    assert!(mine["overall"].as_f64().unwrap() > 0.0);

    // ---- the webhook outbox: both scores and the decision queued, signed bodies that say so
    let deliveries = app.api("/api/webhooks", ("ada", PASSWORD)).await;
    let events: Vec<&str> = deliveries["deliveries"].as_array().unwrap().iter().filter_map(|d| d["event"].as_str()).collect();
    assert_eq!(events.iter().filter(|e| **e == "review.scored").count(), 2, "{deliveries:#}");
    assert!(events.contains(&"review.decided"), "{deliveries:#}");

    // ---- in a real browser: the pages render, nothing injected runs; screenshots kept
    if let Some(binary) = browser {
        let artefacts = repo_root().join("target/test-artifacts");
        std::fs::create_dir_all(&artefacts).unwrap();
        let (_, status_html) = app.get(&format!("/status/{lin}"), &candidate).await;
        let shots = [
            (
                "review-code",
                app.page(&bob, &format!("/submissions/{id}/code")).await,
                vec!["F401".to_string(), "Why import <os> inside the helper?".into(), "Diff against the starter".into()],
            ),
            (
                "review-page",
                app.page(&ada, &format!("/submissions/{id}")).await,
                vec!["reviewers disagree".into(), "My approach".into(), "How they worked".into(), "advance".into()],
            ),
            ("review-blind-dashboard", pages_html[0].clone(), vec![alias.clone()]),
            ("review-candidate-status", status_html, vec!["Feedback from the assessors".into(), "Hard-coded spellings".into()]),
        ];
        tokio::task::spawn_blocking(move || {
            for (shot, html, needles) in shots {
                let file = artefacts.join(format!("{shot}.html"));
                std::fs::write(&file, &html).unwrap();
                let (dom, console) = super::serve::browse(&binary, &format!("file://{}", file.display()), &artefacts.join(format!("{shot}.png")));
                for needle in needles {
                    assert!(
                        dom.contains(&needle) || dom.contains(&needle.replace('<', "&lt;").replace('>', "&gt;")),
                        "{shot}: the rendered page lacks {needle:?}"
                    );
                }
                assert!(!dom.contains("<script") && !dom.contains("<img"), "{shot}: an injected element is in the DOM");
                assert!(console.is_empty(), "{shot}: {console:?}");
            }
        })
        .await
        .unwrap();
    }
}

/// The files of a task's fixture folder (its `expect.yaml` left out).
fn fixture_files(task: &str, fixture: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tasks").join(task).join("fixtures").join(fixture);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap() != "expect.yaml")
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_code_view_shows_a_python_notebook_and_r_markdown_as_they_ran_and_the_candidate_sees_no_figure() {
    let app = TestApp::new(&repo_root()).await;
    let ada = app.assessor_cookie("ada").await;
    // Each: a fixture pushed as it is, its report frozen from a real grading of the fixture
    // (`takehome grade --json`); `check` grades the same fixtures for real and asks for their
    // figures (`executed_figures`).
    let cases = [
        ("penguins-cleaning", "notebook", "clean.ipynb", "a0notebook", ", 18)"),
        ("penguins-pipeline", "r-markdown", "train.Rmd", "a0rmarkdown", "5-fold accuracy"),
    ];
    for (task_id, fixture, file, assignment, printed) in cases {
        let task = takehome::task::load(&repo_root().join("tasks").join(task_id)).unwrap();
        let files = fixture_files(task_id, fixture);
        let files: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
        let report = std::fs::read_to_string(repo_root().join(format!("tests/fixtures/reports/{task_id}-{fixture}.json"))).unwrap();
        let (id, token) = app.graded_push(assignment, &task, &format!("{assignment}@example.com"), &files, "as a notebook", &report).await;
        let code = app.page(&ada, &format!("/submissions/{id}/code")).await;
        let at = code.find(&format!("<code>{file}</code>")).unwrap_or_else(|| panic!("{file} is not in the code view"));
        let section = &code[at..code[at..].find("</section>").map_or(code.len(), |end| at + end)];
        assert!(section.contains("As it ran in the graded run"), "{file}: the executed notebook is not shown");
        assert!(section.contains("<img class=\"figure\"") && section.contains("data:image/png;base64,"), "{file}: without the figure it drew");
        assert!(section.contains(printed), "{file}: without what it printed ({printed:?})");
        let (status, status_page) = app.get(&format!("/status/{assignment}"), &[(header::AUTHORIZATION, basic(assignment, &token))]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!status_page.contains("data:image/png") && !status_page.contains(printed), "{file}: the candidate sees the graded run's outputs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn methodology_findings_show_at_their_lines_in_the_report_and_the_comparison_and_never_to_the_candidate() {
    let app = TestApp::new(&repo_root()).await;
    let ada = app.assessor_cookie("ada").await;
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    let files = fixture_files("diamond-cut", "unvalidated");
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
    // Frozen from a real grading of the fixture (`check` grades it and asks for both rules).
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/diamond-cut-unvalidated.json")).unwrap();
    let (id, token) = app.graded_push("a0unvalidated", &task, "u@example.com", &files, "never measured", &report).await;

    let code = app.page(&ada, &format!("/submissions/{id}/code")).await;
    for (rule, line) in [("unseeded-randomness", 17), ("no-validation", 18)] {
        let at = code.find(&format!("methodology: {rule}")).unwrap_or_else(|| panic!("{rule} is not in the code view"));
        let row = &code[..at];
        assert!(row.rfind(&format!("-L{line}\"")).is_some_and(|l| at - l < 2_000), "{rule} is not at line {line}");
    }
    let page = app.page(&ada, &format!("/submissions/{id}")).await;
    assert!(page.contains("Methodology: 2 findings") && page.contains("train.py:18"), "the report lacks its methodology section");
    let compare = app.page(&ada, "/tasks/diamond-cut/compare").await;
    assert!(compare.contains("no-validation (train.py:18)") && compare.contains("unseeded-randomness (train.py:17)"), "the comparison lacks the findings");
    let (_, api) = app.get(&format!("/api/submissions/{id}"), &[(header::COOKIE, ada.clone())]).await;
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["report"]["methodology"].as_array().map(Vec::len), Some(2), "{api:#}");

    // The debrief: printable, its questions tied to lines, the methodology's first.
    let debrief = app.page(&ada, &format!("/submissions/{id}/debrief")).await;
    assert!(debrief.contains("Nothing in your code holds rows out before this fit") && debrief.contains("train.py:18"), "{debrief}");
    assert!(debrief.contains("Why `GradientBoostingClassifier` with `n_estimators=30, max_depth=3`?"), "{debrief}");
    let (status, answer) = app.get(&format!("/api/submissions/{id}/debrief"), &[(header::COOKIE, ada.clone())]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let questions = answer["debrief"].as_array().unwrap();
    assert!(questions.len() >= 3 && questions.iter().all(|q| q["why"].as_str().is_some_and(|w| !w.is_empty())), "{answer:#}");
    assert_eq!((questions[0]["file"].as_str(), questions[0]["line"].as_u64()), (Some("train.py"), Some(17)), "{answer:#}");

    let candidate = [(header::AUTHORIZATION, basic("a0unvalidated", &token))];
    for path in [format!("/api/submissions/{id}/debrief"), format!("/submissions/{id}/debrief")] {
        let (status, _) = app.get(&path, &candidate).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::SEE_OTHER, "{path}: a candidate reached the debrief ({status})");
    }
    for path in ["/status/a0unvalidated", "/api/status/a0unvalidated"] {
        let (status, body) = app.get(path, &candidate).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !body.contains("no-validation") && !body.contains("methodology") && !body.contains("unseeded") && !body.contains("debrief"),
            "{path} shows the methodology findings or the debrief"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notebooks_findings_and_questions_are_placed_at_their_cell() {
    let app = TestApp::new(&repo_root()).await;
    let ada = app.assessor_cookie("ada").await;
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    // Cell 1 markdown, cell 2 reads the data, cell 3 markdown, cell 4 fits an unseeded forest.
    let notebook = serde_json::json!({
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "cells": [
            {"cell_type": "markdown", "source": "# Diamonds"},
            {"cell_type": "code", "source": "import pandas as pd\nframe = pd.read_csv('/data/train.csv')", "outputs": []},
            {"cell_type": "markdown", "source": "## Model"},
            {"cell_type": "code", "source": "from sklearn.ensemble import RandomForestClassifier\nmodel = RandomForestClassifier(n_estimators=50)\nmodel.fit(frame.drop(columns=['cut']), frame['cut'])", "outputs": []}
        ]
    })
    .to_string();
    let predict = std::fs::read(repo_root().join("tasks/diamond-cut/fixtures/unvalidated/predict.py")).unwrap();
    let files: Vec<(&str, &[u8])> = vec![("train.ipynb", notebook.as_bytes()), ("predict.py", predict.as_slice())];
    let context = takehome::methodology::Context::of(&task);
    let found = takehome::methodology::analyse(&[("train.ipynb".to_string(), notebook.clone())], &context);
    let places: Vec<String> = found.iter().map(|f| format!("{} {}", f.rule.as_str(), f.place())).collect();
    assert_eq!(places, ["unseeded-randomness train.ipynb, cell 4, line 2", "no-validation train.ipynb, cell 4, line 3"]);
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tests/fixtures/reports/diamond-cut-unvalidated.json")).unwrap()).unwrap();
    report["methodology"] = serde_json::to_value(&found).unwrap();
    let (id, _) = app.graded_push("a0notebook", &task, "n@example.com", &files, "a notebook", &report.to_string()).await;

    let code = app.page(&ada, &format!("/submissions/{id}/code")).await;
    let cell = code.find("cell 4 · code").expect("the model's cell is shown");
    let finding = code.find("methodology: unseeded-randomness · cell 4, line 2").expect("the finding is shown with its cell");
    assert!(finding > cell && !code[cell..finding].contains("class=\"cell\""), "the finding is not under its cell");
    let page = app.page(&ada, &format!("/submissions/{id}")).await;
    assert!(page.contains("train.ipynb, cell 4, line 2"), "the report does not place the finding at its cell");
    let compare = app.page(&ada, "/tasks/diamond-cut/compare").await;
    assert!(compare.contains("unseeded-randomness (train.ipynb, cell 4, line 2)"), "the comparison does not place the finding at its cell");
    let (_, answer) = app.get(&format!("/api/submissions/{id}/debrief"), &[(header::COOKIE, ada.clone())]).await;
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let asked: Vec<(Option<&str>, Option<u64>, Option<u64>)> = answer["debrief"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["file"] == "train.ipynb")
        .map(|q| (q["file"].as_str(), q["cell"].as_u64(), q["line"].as_u64()))
        .collect();
    // The two findings, the model's settings (cell 4, line 2) and the data's read (cell 2, line 2).
    assert!(asked.contains(&(Some("train.ipynb"), Some(4), Some(2))) && asked.contains(&(Some("train.ipynb"), Some(2), Some(2))), "{answer:#}");
    let debrief = app.page(&ada, &format!("/submissions/{id}/debrief")).await;
    assert!(debrief.contains("train.ipynb, cell 2, line 2"), "{debrief}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_comparison_sorts_by_a_slice_and_the_debrief_asks_about_the_worst_one() {
    let app = TestApp::new(&repo_root()).await;
    let ada = app.assessor_cookie("ada").await;
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    let files = fixture_files("diamond-cut", "unvalidated");
    let files: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
    let frozen = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/diamond-cut-unvalidated.json")).unwrap();
    // Two reports alike but for the slices: the better total is the worse on large diamonds.
    let with_slices = |score: f64, large: f64| {
        let mut report: serde_json::Value = serde_json::from_str(&frozen).unwrap();
        report["score"] = serde_json::json!(score);
        let whole = report["components"]["accuracy"]["value"].as_f64().unwrap();
        report["components"]["accuracy"]["slices"] = serde_json::json!([
            { "name": "carat < 0.5", "rows": 4880, "value": whole },
            { "name": "carat ≥ 2", "rows": 410, "value": large },
        ]);
        report.to_string()
    };
    let (first, _) = app.graded_push("a0first", &task, "first@example.com", &files, "first", &with_slices(80.0, 0.31)).await;
    let (second, token) = app.graded_push("a0second", &task, "second@example.com", &files, "second", &with_slices(70.0, 0.52)).await;

    // The table's rows (the page may list both above it too, as graded with an older task file).
    let table = |page: &str| page[page.find("<table").expect("a table")..].to_string();
    let by_score = table(&app.page(&ada, "/tasks/diamond-cut/compare").await);
    let at = |page: &str, id: i64| page.find(&format!("/submissions/{id}\"")).unwrap_or_else(|| panic!("#{id} is not in the table"));
    assert!(at(&by_score, first) < at(&by_score, second), "not by score first");
    assert!(by_score.contains("worst slice"), "no worst slice column");
    assert!(by_score.contains("carat ≥ 2 (0.310, n=410)"), "the worst slice is not shown");
    let by_slice = app.page(&ada, "/tasks/diamond-cut/compare?slice=carat%20%E2%89%A5%202").await;
    assert!(by_slice.contains("<option value=\"carat ≥ 2\" selected"), "the chosen slice is not selected");
    let by_slice = table(&by_slice);
    assert!(at(&by_slice, second) < at(&by_slice, first), "sorted by the slice, the second submission (0.52 on large diamonds) comes first");
    assert!(by_slice.contains("0.5200"), "the slice's column is not shown");

    // The debrief asks about the worst slice, with its numbers.
    let (status, answer) = app.get(&format!("/api/submissions/{first}/debrief"), &[(header::COOKIE, ada.clone())]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let questions = answer["debrief"].as_array().unwrap();
    let asked = questions.iter().find(|q| q["question"].as_str().is_some_and(|t| t.contains("\"carat ≥ 2\" (410 rows)")));
    assert!(asked.is_some_and(|q| q["why"].as_str().unwrap().contains("0.3100 on 410 rows")), "{answer:#}");
    // Never to the candidate.
    for path in ["/status/a0second", "/api/status/a0second"] {
        let (status, body) = app.get(path, &[(header::AUTHORIZATION, basic("a0second", &token))]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.contains("carat ≥ 2") && !body.contains("carat &lt; 0.5") && !body.contains("0.52"), "{path} shows the slices");
    }
}
