//! The candidate's side, as a candidate uses it: real git pushes to a real daemon, the status page
//! and API read with the candidate's token, rendered in headless chromium (screenshots kept in
//! target/test-artifacts/candidate-*.png). A push that fails shows its traceback from the public
//! run; nothing the graded run printed over hidden data, and no hidden value, reaches the candidate.
//! What needs no grading (what is installed, the warnings of a push) is pushed by the same real
//! git client to the web layer served in this process ([`TestApp::listen`]): no Docker, no binary.

use std::path::Path;
use std::time::{Duration, Instant};

use super::common::repo_root;
use super::serve::{assign, base64, browse, clone, push_solution, setup, Daemon, PASSWORD};
use super::test_app::{basic, Listening, TestApp};

/// `2026-11-28T07:26:00Z` as seconds since the epoch (enough for differences).
fn rfc_seconds(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    ((d[0] * 400 + d[1]) * 40 + d[2]) * 86400 + t[0] * 3600 + t[1] * 60 + t[2]
}

/// Every data line of every file under `dir` (long enough to be telling).
fn lines_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        out.extend(text.lines().skip(1).filter(|l| l.len() >= 12).map(String::from));
    }
    out
}

/// Waits until the candidate's API shows the public run of `number` pushes.
fn wait_public(daemon: &Daemon, id: &str, token: &str, number: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (status, body) = daemon.get(&format!("/api/status/{id}"), Some((id, token)));
        assert_eq!(status, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rows = view["submissions"].as_array().unwrap();
        if rows.len() >= number && rows.iter().all(|r| !r["public_run"].is_null()) {
            return view;
        }
        assert!(Instant::now() < deadline, "no public run within 4 minutes: {view:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_push_shows_its_traceback_from_the_public_run_and_nothing_hidden() {
    let browser = super::serve::browser();
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let artefacts = repo_root().join("target/test-artifacts");
        std::fs::create_dir_all(&artefacts).unwrap();
        let daemon = Daemon::start(&data_path, 1);
        let cand = assign(&data_path, "penguins-cleaning", "casey@example.com", &[]);
        let repo = clone(&daemon, &cand, &work_path);
        let hidden = lines_under(&repo_root().join("datasets/penguins-cleaning/hidden"));

        // Push 1: a module that does not exist. The step prints every hidden row before it fails.
        let broken = "import sys\nfrom pathlib import Path\n\nfor p in Path('/data').rglob('*.csv'):\n    print(p.read_text())\n    print(p.read_text(), file=sys.stderr)\n\nimport nonexistent_cleaning_helpers  # noqa\n";
        let (ok, out) = push_solution(&repo, Some(broken), "a missing module");
        assert!(ok, "{out}");
        // Push 2: a table without its key column and with a row twice: a format problem.
        let format = "import pandas as pd\n\nraw = pd.read_csv('/data/input/penguins_raw.csv', dtype=str, keep_default_na=False)\nout = raw[['Species', 'Island']]\npd.concat([out, out.head(1)]).to_csv('/output/penguins_clean.csv', index=False)\n";
        let (ok, out) = push_solution(&repo, Some(format), "no key column");
        assert!(ok, "{out}");
        daemon.wait_graded(&cand.id, 2, Duration::from_secs(240));
        let view = wait_public(&daemon, &cand.id, &cand.token, 2);
        let rows = view["submissions"].as_array().unwrap();
        let (second, first) = (&rows[0], &rows[1]);

        // The graded run: step_failed, the step named, but its logs, exit code and time withheld.
        assert_eq!(first["grade_status"], "step_failed", "{first:#}");
        let graded = &first["report"]["steps"][0];
        assert_eq!((graded["name"].as_str(), graded["outcome"].as_str()), (Some("clean"), Some("failed")));
        assert!(graded["details"].is_null(), "{graded:#}");
        // The public run: the traceback, the exit code, time and memory against the limits.
        let public = &first["public_run"]["report"]["steps"][0];
        assert_eq!(public["outcome"], "failed", "{first:#}");
        let details = &public["details"];
        assert_eq!(details["exit_code"], 1);
        let stderr = details["stderr_tail"].as_str().unwrap();
        assert!(stderr.contains("ModuleNotFoundError: No module named 'nonexistent_cleaning_helpers'"), "{stderr}");
        assert!(stderr.contains("Traceback"), "{stderr}");
        assert_eq!(details["memory_limit_bytes"], 1u64 << 30);
        assert!(details["peak_memory_bytes"].as_u64().unwrap() > 0 && details["wall_seconds"].as_f64().unwrap() > 0.0);
        // What the public run printed is public data; no hidden line is anywhere. Push 1 is not
        // the newest, so its log is its last 8 KiB (the newest push's keeps 64 KiB), marked cut.
        let public_files: String = ["public/penguins_raw.csv", "public/penguins_clean.csv", "public/dry-run/input/penguins_raw.csv"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(repo_root().join("datasets/penguins-cleaning").join(path)).ok())
            .collect();
        let tail = details["stdout_tail"].as_str().unwrap();
        assert!(tail.len() <= 8 << 10 && details["stdout_truncated"] == true, "{} bytes", tail.len());
        let whole_lines: Vec<&str> = tail.lines().skip(1).filter(|l| !l.is_empty()).collect();
        assert!(!whole_lines.is_empty() && whole_lines.iter().all(|l| public_files.contains(l)), "{tail}");

        // Push 2: the format problem, named with its counts, from the public run (which shows a
        // public score: the task allows it); the graded run names the problem's kinds.
        let problem = second["public_run"]["report"]["outputs"][0]["problem"]["message"].as_str().unwrap().to_string();
        assert!(problem.contains("row_id"), "{problem}");
        assert!(second["public_run"]["public_score"].is_array(), "{second:#}");
        assert_eq!(second["grade_status"], "bad_output");
        assert!(second["report"]["outputs"][0]["problem"]["message"].as_str().unwrap().contains("penguins_clean.csv"), "{second:#}");

        // The page: the traceback, the deadline, how to push, the brief; no assessor link.
        let (status, page) = daemon.get(&format!("/status/{}", cand.id), Some((&cand.id, &cand.token)));
        assert_eq!(status, 200);
        for needle in [
            "ModuleNotFoundError: No module named 'nonexistent_cleaning_helpers'",
            "Deadline: ",
            "How to push",
            &format!("/git/{}.git", cand.id),
            "Clean the Palmer penguins field records",
            "Graded run (hidden data)",
            "Public run",
            " of 1 GiB</td>",
        ] {
            assert!(page.contains(needle), "the status page lacks {needle:?}");
        }
        for assessor in ["href=\"/\"", "/submissions", "/tasks/", "/login", "dashboard"] {
            assert!(!page.contains(assessor), "the status page links to assessors' pages ({assessor})");
        }
        let api = serde_json::to_string(&view).unwrap();
        for line in &hidden {
            assert!(!page.contains(line.as_str()) && !api.contains(line.as_str()), "a hidden line reached the candidate: {line:?}");
        }

        // An extension with a reason: the deadline moves for the candidate, who reads the reason.
        let before = view["deadline"].as_str().unwrap().to_string();
        let ada = format!("Authorization: Basic {}\r\nContent-Type: application/json\r\n", base64(format!("ada:{PASSWORD}").as_bytes()));
        let (status, _, text) =
            daemon.raw("POST", &format!("/api/assignments/{}/extensions", cand.id), &ada, r#"{"minutes": 30, "reason": "A power cut in the first hour"}"#);
        assert_eq!(status, 201, "{text}");
        let (status, _, text) = daemon.raw("POST", &format!("/api/assignments/{}/extensions", cand.id), &ada, r#"{"minutes": 0, "reason": "x"}"#);
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("minutes"), "{text}");
        let me = format!("Authorization: Basic {}\r\nContent-Type: application/json\r\n", base64(format!("{}:{}", cand.id, cand.token).as_bytes()));
        let after: serde_json::Value = serde_json::from_str(&daemon.get(&format!("/api/status/{}", cand.id), Some((&cand.id, &cand.token))).1).unwrap();
        let moved = rfc_seconds(after["deadline"].as_str().unwrap()) - rfc_seconds(&before);
        assert_eq!(moved, 1800, "{before} -> {}", after["deadline"]);
        assert_eq!(after["extensions"][0]["reason"], "A power cut in the first hour");
        assert!(after["extensions"][0].get("author").is_none(), "the assessor's name stays with the assessors");

        // The final-submission choice (penguins-cleaning lets the candidate choose): push 1.
        assert_eq!(after["final_push"], 2, "the last push counts until a choice: {after:#}");
        assert_eq!(after["can_choose_final"], true);
        let (status, _, text) = daemon.raw("POST", &format!("/api/status/{}/final", cand.id), &me, r#"{"number": 9}"#);
        assert_eq!(status, 422, "{text}");
        assert!(text.contains("no push 9"), "{text}");
        let form = format!("Authorization: Basic {}\r\nContent-Type: application/x-www-form-urlencoded\r\n", base64(format!("{}:{}", cand.id, cand.token).as_bytes()));
        let (status, _, _) = daemon.raw("POST", &format!("/status/{}/final", cand.id), &form, "number=1&csrf=forged");
        assert_eq!(status, 403, "a form without the page's token was accepted");
        let (status, _, text) = daemon.raw("POST", &format!("/api/status/{}/final", cand.id), &me, r#"{"number": 1}"#);
        assert_eq!(status, 200, "{text}");
        let chosen: serde_json::Value = serde_json::from_str(&daemon.get(&format!("/api/status/{}", cand.id), Some((&cand.id, &cand.token))).1).unwrap();
        assert_eq!(chosen["final_push"], 1);
        assert!(chosen["final_chosen_at"].is_string());
        // The assessors see which push and when, the extension with its reason, and the comparison ranks the chosen push.
        let first_id = daemon.api(&format!("/api/submissions?assignment={}", cand.id)).as_array().unwrap().iter().find(|r| r["number"] == 1).unwrap()["id"].clone();
        let review = daemon.api(&format!("/api/submissions/{first_id}/review"));
        assert_eq!(review["timeline"]["counts"], 1, "{:#}", review["timeline"]);
        assert!(review["timeline"]["chosen_at"].is_string());
        assert_eq!(review["timeline"]["extensions"][0]["author"], "ada");
        let compare = daemon.api("/api/tasks/penguins-cleaning/compare");
        assert_eq!(compare[0]["id"], first_id, "{compare:#}");
        let (_, page) = daemon.get(&format!("/status/{}", cand.id), Some((&cand.id, &cand.token)));
        assert!(page.contains("Your final submission: push 1") && page.contains("A power cut in the first hour"), "{page}");
        assert!(page.contains("Make push 2 my final submission"), "the page offers the other push");

        // A model task's format error: counts and examples from the public run (public ids), the
        // kind with a banded count from the graded run (never a hidden id).
        let dee = assign(&data_path, "diamond-cut", "dee@example.com", &[]);
        let repo = clone(&daemon, &dee, &work_path);
        std::fs::write(repo.join("train.py"), "print('nothing to train')\n").unwrap();
        std::fs::write(
            repo.join("predict.py"),
            std::fs::read_to_string(repo_root().join("tasks/diamond-cut/fixtures/duplicate-ids/predict.py")).unwrap(),
        )
        .unwrap();
        let (ok, out) = super::serve::git(&repo, &["add", "-A"]);
        assert!(ok, "{out}");
        let (ok, out) = super::serve::git(&repo, &["commit", "-q", "-m", "every prediction twice"]);
        assert!(ok, "{out}");
        let (ok, out) = super::serve::git(&repo, &["push", "-q", "origin", "main"]);
        assert!(ok, "{out}");
        daemon.wait_graded(&dee.id, 1, Duration::from_secs(240));
        let view = wait_public(&daemon, &dee.id, &dee.token, 1);
        let row = &view["submissions"][0];
        let public = row["public_run"]["report"]["outputs"][0]["problem"]["message"].as_str().unwrap();
        assert!(public.contains("2000 duplicate ids"), "{public}");
        let graded = row["report"]["outputs"][0]["problem"]["message"].as_str().unwrap();
        assert!(graded.contains("duplicate ids (100 or more)"), "{graded}");
        let hidden_ids: Vec<String> = std::fs::read_to_string(repo_root().join("datasets/diamond-cut/hidden/labels.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| format!("\"{}\"", l.split(',').next().unwrap()))
            .collect();
        let (_, dee_page) = daemon.get(&format!("/status/{}", dee.id), Some((&dee.id, &dee.token)));
        let dee_api = view.to_string();
        for id in &hidden_ids {
            assert!(!dee_api.contains(id.as_str()), "a hidden id reached the candidate: {id}");
        }
        assert!(dee_page.contains("2000 duplicate ids") && dee_page.contains("(100 or more)"), "{dee_page}");
        // The graded steps' time and memory in bands of their limits.
        let usage = &row["report"]["steps"][1]["usage"];
        assert!(usage["time"].as_str().unwrap().contains('%') && usage["memory_limit_bytes"] == 1u64 << 30, "{usage:#}");
        assert!(view["brief"].as_str().unwrap().contains("Predict the cut"), "the API carries the brief");

        if let Some(binary) = browser {
            let file = artefacts.join("candidate-status.html");
            std::fs::write(&file, &page).unwrap();
            let (dom, console) = browse(&binary, &format!("file://{}", file.display()), &artefacts.join("candidate-status.png"));
            assert!(dom.contains("nonexistent_cleaning_helpers") && dom.contains("How to push"), "the rendered page lacks the traceback");
            assert!(console.is_empty(), "{console:?}");
        }
    })
    .await
    .unwrap();
}

/// A public dry run gives way to graded work: a push made while an earlier push's dry run is
/// running is graded at once, not after it, and the stopped dry run runs again afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_graded_push_goes_before_a_running_public_dry_run() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let cand = assign(&data_path, "penguins-cleaning", "dana@example.com", &[]);
        let repo = clone(&daemon, &cand, &work_path);
        // The reference cleaner, slowed by 8 s when it cleans the public stand-in (its dry run).
        let stand_in = std::fs::metadata(repo_root().join("datasets/penguins-cleaning/public/dry-run/input/penguins_raw.csv")).unwrap().len();
        let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
        let slow_in_public = |n: usize| {
            format!("import os\nimport time\n\nif os.path.getsize('/data/input/penguins_raw.csv') == {stand_in}:\n    time.sleep(8)  # {n}\n\n{reference}")
        };
        let (ok, out) = push_solution(&repo, Some(&slow_in_public(1)), "first");
        assert!(ok, "{out}");
        daemon.wait_graded(&cand.id, 1, Duration::from_secs(120));
        std::thread::sleep(Duration::from_secs(3)); // the first push's dry run is under way

        let pushed = Instant::now();
        let (ok, out) = push_solution(&repo, Some(&slow_in_public(2)), "second");
        assert!(ok, "{out}");
        let rows = daemon.wait_graded(&cand.id, 2, Duration::from_secs(60));
        let waited = pushed.elapsed();
        assert!(waited < Duration::from_secs(6), "the second push waited {waited:?} for its grade (the dry run sleeps 8 s)");
        assert!(rows.iter().all(|r| r["status"] == "graded"), "{rows:?}");

        // Both dry runs end, the stopped one included, each having slept its 8 s.
        let view = wait_public(&daemon, &cand.id, &cand.token, 2);
        for row in view["submissions"].as_array().unwrap() {
            let step = &row["public_run"]["report"]["steps"][0]["details"];
            assert_eq!(step["exit_code"], 0, "{row:#}");
            assert!(step["wall_seconds"].as_f64().unwrap() >= 8.0, "{row:#}");
        }
    })
    .await
    .unwrap();
}

/// A public dry run waits in the store, not in a worker's memory: a daemon killed while the dry
/// run is under way (SIGKILL, no clean-up) and started again runs it to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_public_dry_run_survives_a_killed_daemon() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let cand = assign(&data_path, "penguins-cleaning", "erin@example.com", &[]);
        let repo = clone(&daemon, &cand, &work_path);
        let stand_in = std::fs::metadata(repo_root().join("datasets/penguins-cleaning/public/dry-run/input/penguins_raw.csv")).unwrap().len();
        let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
        let slow = format!("import os\nimport time\n\nif os.path.getsize('/data/input/penguins_raw.csv') == {stand_in}:\n    time.sleep(6)\n\n{reference}");
        let (ok, out) = push_solution(&repo, Some(&slow), "slow in public");
        assert!(ok, "{out}");
        daemon.wait_graded(&cand.id, 1, Duration::from_secs(120));
        std::thread::sleep(Duration::from_secs(3)); // the dry run is under way
        let (_, body) = daemon.get(&format!("/api/status/{}", cand.id), Some((&cand.id, &cand.token)));
        assert!(body.contains("\"public_run\": null") || body.contains("\"public_run\":null"), "the dry run ended too soon to test: {body}");
        let status = std::process::Command::new("kill").args(["-KILL", &daemon.pid().to_string()]).status().unwrap();
        assert!(status.success());
        drop(daemon);

        let daemon = Daemon::start(&data_path, 1);
        let view = wait_public(&daemon, &cand.id, &cand.token, 1);
        let step = &view["submissions"][0]["public_run"]["report"]["steps"][0]["details"];
        assert_eq!(step["exit_code"], 0, "{view:#}");
        assert!(step["wall_seconds"].as_f64().unwrap() >= 6.0, "{view:#}");
    })
    .await
    .unwrap();
}

/// A candidate's clone and pushes over HTTP with a real git client, against the web layer served
/// in this process (no Docker, no binary: nothing is graded here). Returns the clone's folder.
async fn clone_served(served: &Listening, id: &str, token: &str, into: &Path) -> std::path::PathBuf {
    let (url, dest) = (served.git_url(id, token), into.join(id));
    let (ok, out) = {
        let (into, dest) = (into.to_path_buf(), dest.clone());
        tokio::task::spawn_blocking(move || super::cluster_support::git(&into, &["clone", "-q", &url, dest.to_str().unwrap()])).await.unwrap()
    };
    assert!(ok, "clone failed: {out}");
    dest
}

/// Adds `files` (written as given), commits and pushes; returns git's output.
async fn push_files(repo: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, text) in files {
        std::fs::write(repo.join(name), text).unwrap();
    }
    let (repo, names, message) = (repo.to_path_buf(), files.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(), message.to_string());
    tokio::task::spawn_blocking(move || {
        let mut add = vec!["add"];
        add.extend(names.iter().map(String::as_str));
        let (ok, out) = super::cluster_support::git(&repo, &add);
        assert!(ok, "{out}");
        let (ok, out) = super::cluster_support::git(&repo, &["commit", "-q", "-m", &message]);
        assert!(ok, "{out}");
        let (ok, out) = super::cluster_support::git(&repo, &["push", "origin", "main"]);
        assert!(ok, "{out}");
        out
    })
    .await
    .unwrap()
}

/// A task with an extended image (diamond-cut: python-slim, and python for deep learning) says so in ENVIRONMENT.md, with
/// what that image adds, and reads a push's requirements.txt against it: torch is no miss there.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_with_a_deep_learning_image_lists_it_and_reads_requirements_against_it() {
    let app = TestApp::new(&repo_root()).await;
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    let (token, _) = app.assign("a0torch0kim", &task, "kim@example.com").await;
    let served = app.listen().await;
    let work = tempfile::tempdir().unwrap();
    let repo = clone_served(&served, "a0torch0kim", &token, work.path()).await;
    let environment = std::fs::read_to_string(repo.join("ENVIRONMENT.md")).expect("the repository says what is installed");
    assert!(
        environment.contains("run in the `python-slim` image") && environment.contains("Deep learning: the `python` image") && environment.contains("`torch`"),
        "{environment}"
    );
    let extra = &environment[environment.find("Deep learning: the `python` image").unwrap()..];
    assert!(extra.contains("| torch | 2.15.0 |") && extra.contains("| tensorflow_cpu |") && !extra.contains("| pandas |"), "only what it adds: {extra}");

    let out = push_files(&repo, &[("requirements.txt", "torch==2.15.0\ntensorflow-cpu\ntorchvision==0.1\n")], "with torch").await;
    assert!(out.contains("warning: requirements.txt: line 3: torchvision==0.1: the python image has torchvision 0.29.2"), "{out}");
    assert!(!out.contains("line 1:") && !out.contains("line 2:"), "torch and tensorflow-cpu are in the task's images: {out}");
}

/// Real candidates' environments: the repository says what is installed (ENVIRONMENT.md, from
/// the image's pins), and a push whose requirements.txt names a package the image lacks, or a
/// version it does not hold, is warned in the push reply and on the status page, before grading.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_asking_for_packages_the_image_lacks_is_warned_in_the_reply_and_on_the_status_page() {
    let app = TestApp::new(&repo_root()).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let id = "a0needs0robin";
    let (token, _) = app.assign(id, &task, "robin@example.com").await;
    let served = app.listen().await;
    let work = tempfile::tempdir().unwrap();
    let repo = clone_served(&served, id, &token, work.path()).await;
    let environment = std::fs::read_to_string(repo.join("ENVIRONMENT.md")).expect("the repository says what is installed");
    assert!(environment.contains("| scikit-learn | 1.6.1 |") && environment.contains("| matplotlib |"), "{environment}");
    assert!(environment.contains("no network"), "{environment}");

    let out = push_files(&repo, &[("requirements.txt", "pandas==2.2.3\npycaret==3.3.2\nlightgbm<4\nseaborn\ntorch==2.3.0\n")], "with requirements").await;
    assert!(out.contains("warning: requirements.txt: line 2: pycaret==3.3.2: not installed in the python image"), "{out}");
    assert!(out.contains("warning: requirements.txt: line 3: lightgbm<4: the python image has lightgbm 4."), "{out}");
    assert!(out.contains("warning: requirements.txt: line 5: torch==2.3.0: the python image has torch 2.15.0"), "deep learning is in python: {out}");
    assert!(!out.contains("line 1:") && !out.contains("line 4:"), "pandas 2.2.3 and seaborn are installed: {out}");

    let (status, page) = app.get(&format!("/status/{id}"), &[(axum::http::header::AUTHORIZATION, basic(id, &token))]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("What your code runs with") && page.contains("ENVIRONMENT.md"), "{page}");
    assert!(page.contains("Push 1 asks for what the image lacks"), "{page}");
    assert!(page.contains("requirements.txt: line 2: pycaret==3.3.2: not installed in the python image"), "{page}");

    // The task runs R scripts in the r image: ENVIRONMENT.md lists it, and an R script's
    // library() calls are read against it.
    assert!(environment.contains("the `r` image") && environment.contains("| dplyr |") && environment.contains("| lintr |"), "{environment}");
    let out = push_files(&repo, &[("clean.R", "library(dplyr)\nlibrary(xgboost)\nsuppressMessages(require(ranger))\n")], "in R").await;
    assert!(out.contains("xgboost") && out.contains("not installed in the r image"), "{out}");
    assert!(!out.contains("dplyr") && !out.contains("ranger"), "dplyr and ranger are in the r image: {out}");

    // An R notebook's code cells are read as R; a Python notebook's are not.
    let r_notebook = r#"{"cells": [{"cell_type": "code", "source": ["library(naniar)\n", "library(readr)"], "outputs": []}],
        "metadata": {"kernelspec": {"name": "ir", "language": "R"}}, "nbformat": 4, "nbformat_minor": 5}"#;
    let python_notebook = r#"{"cells": [{"cell_type": "code", "source": ["library(visdat)"], "outputs": []}], "metadata": {}, "nbformat": 4}"#;
    let out = push_files(&repo, &[("look.ipynb", r_notebook), ("other.ipynb", python_notebook)], "an R notebook").await;
    assert!(out.contains("look.ipynb") && out.contains("naniar") && out.contains("not installed in the r image"), "{out}");
    assert!(!out.contains("readr") && !out.contains("visdat"), "{out}");
}
