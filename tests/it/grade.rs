//! `takehome grade` end to end through the binary: the real tasks, their fixtures, hostile
//! submissions, interruption.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::common::{containers_with_label, docker, folder_with, python_image, repo_root, takehome_binary, wait_until};

/// Runs `takehome grade` and returns its exit code, its stdout and the JSON report.
async fn grade(task: &str, submission: &Path) -> (i32, String, Option<Value>) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(takehome_binary())
            .current_dir(repo_root())
            .args(["grade", "--task", &format!("tasks/{task}"), "--submission"])
            .arg(submission)
            .arg("--json")
            .arg(report.path())
            .output(),
    )
    .await
    .expect("grading finishes within 10 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let json = std::fs::read_to_string(report.path()).ok().and_then(|text| serde_json::from_str(&text).ok());
    (output.status.code().unwrap_or(-1), stdout, json)
}

fn score(report: &Value) -> f64 {
    report["score"].as_f64().expect("a score")
}

/// Copies a fixture into a fresh git repository with one commit, as a candidate's clone would be.
fn git_checkout(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=Candidate", "-c", "user.email=candidate@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "solution"]);
    dir
}

#[tokio::test]
async fn diamond_cut_reference_scores_above_weak_which_scores_above_zero() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let fixtures = repo_root().join("tasks/diamond-cut/fixtures");
    let reference_repo = git_checkout(&fixtures.join("reference"));
    let (code, stdout, reference) = grade("diamond-cut", reference_repo.path()).await;
    assert_eq!(code, 0, "{stdout}");
    let reference = reference.expect("a JSON report");
    assert_eq!(reference["status"], "graded", "{reference:#}");
    assert_eq!(reference["components"]["accuracy"]["metric"], "f1_macro");
    assert!(reference["submission"]["commit"].as_str().is_some_and(|c| c.len() == 40), "{}", reference["submission"]);
    assert!(reference["provenance"]["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(reference["steps"].as_array().unwrap().len(), 2);
    for step in reference["steps"].as_array().unwrap() {
        assert_eq!(step["outcome"], "ok", "{step:#}");
    }
    assert!(stdout.contains("score"), "{stdout}");

    let (code, _, weak) = grade("diamond-cut", &fixtures.join("weak")).await;
    assert_eq!(code, 0);
    let weak = weak.unwrap();
    assert!(score(&weak) > 0.0, "weak: {}", score(&weak));
    assert!(score(&reference) > score(&weak), "reference {} <= weak {}", score(&reference), score(&weak));
    let f1 = |r: &Value| r["components"]["accuracy"]["value"].as_f64().unwrap();
    assert!(f1(&reference) > f1(&weak) + 0.1, "f1 reference {} weak {}", f1(&reference), f1(&weak));
}

#[tokio::test]
async fn penguins_cleaning_reference_scores_above_weak_which_scores_above_zero() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let fixtures = repo_root().join("tasks/penguins-cleaning/fixtures");
    let (code, stdout, reference) = grade("penguins-cleaning", &fixtures.join("reference")).await;
    assert_eq!(code, 0, "{stdout}");
    let reference = reference.unwrap();
    assert_eq!(reference["status"], "graded", "{reference:#}");
    let cells = |r: &Value| r["components"]["accuracy"]["value"].as_f64().unwrap();
    assert!(cells(&reference) > 0.99, "reference cell accuracy {}", cells(&reference));
    let (_, _, weak) = grade("penguins-cleaning", &fixtures.join("weak")).await;
    let weak = weak.unwrap();
    assert!(score(&weak) > 0.0);
    assert!(score(&reference) > score(&weak));
    assert!(weak["components"]["accuracy"]["cleaning"]["n_duplicate_rows"].as_u64().unwrap() > 0, "the weak cleaner keeps duplicates");
}

#[tokio::test]
async fn no_step_finds_the_hidden_labels_anywhere_in_its_file_system() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    // The shared hostile payload (fixtures/hostile/label-hunt), fitted by hand to this task: it
    // looks for a file named like the truth and for a line that only the hidden labels hold.
    let labels = std::fs::read_to_string(repo_root().join("datasets/diamond-cut/hidden/labels.csv")).unwrap();
    let fields: Vec<&str> = labels.lines().nth(1).unwrap().split(',').collect();
    let info = serde_json::json!({ "truth_name": "labels.csv", "truth_fields": fields, "steps": ["train", "predict"], "output": "predictions.csv" });
    let payload = std::fs::read_to_string(repo_root().join("fixtures/hostile/label-hunt/payload.py")).unwrap();
    let submission = folder_with(&[
        ("payload.py", &payload),
        ("takehome_check.json", &info.to_string()),
        ("train.py", "import payload\n\npayload.main(\"train\")\n"),
        ("predict.py", "import payload\n\npayload.main(\"predict\")\n"),
    ]);
    let (code, _, report) = grade("diamond-cut", submission.path()).await;
    assert_eq!(code, 0);
    let report = report.unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report:#}");
    for step in steps {
        let stdout = step["stdout_tail"].as_str().unwrap();
        assert!(stdout.contains("searched") && !stdout.contains("LEAK"), "step {}: {stdout}", step["name"]);
        let searched: u64 = stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(searched > 1000, "the hunt searched only {searched} files: {stdout}");
    }
    assert!(steps[1]["stdout_tail"].as_str().unwrap().contains("data: ['features']"), "{}", steps[1]["stdout_tail"]);
    assert_eq!(report["status"], "bad_output");
    assert_eq!(report["components"]["accuracy"]["problem"]["kind"], "missing_output");
}

#[tokio::test]
async fn a_symlinked_predictions_file_is_bad_format() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let submission = folder_with(&[
        ("train.py", "print('nothing to train')\n"),
        ("predict.py", "import os\n\nos.symlink('/data/features/test.csv', '/output/predictions.csv')\n"),
    ]);
    let (code, stdout, report) = grade("diamond-cut", submission.path()).await;
    assert_eq!(code, 0, "{stdout}");
    let report = report.unwrap();
    assert_eq!(report["status"], "bad_output");
    let problem = &report["components"]["accuracy"]["problem"];
    assert_eq!(problem["kind"], "bad_format");
    assert!(problem["message"].as_str().unwrap().contains("symbolic link"), "{problem}");
}

#[tokio::test]
async fn interrupting_the_grading_process_leaves_no_container() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let submission = folder_with(&[("train.py", "import time\n\ntime.sleep(300)\n"), ("predict.py", "")]);
    let mut child = tokio::process::Command::new(takehome_binary())
        .current_dir(repo_root())
        .args(["grade", "--task", "tasks/diamond-cut", "--submission"])
        .arg(submission.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let label = format!("takehome.pid={pid}");
    // Wait until the step's container runs (the holder plus the step: two containers).
    let running = wait_until(Duration::from_secs(120), || async { containers_with_label(&sandbox, &label).await >= 2 }).await;
    assert!(running, "the step never started");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("takehome exits after SIGINT").unwrap();
    assert_eq!(exit.code(), Some(130));
    assert_eq!(containers_with_label(&sandbox, &label).await, 0, "containers of the interrupted run remain");
}

#[tokio::test]
async fn lints_use_our_rules_only_and_count_syntax_errors_and_notebooks() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let notebook = r#"{"cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": ["import os\n", "x = 1\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let submission = folder_with(&[
        ("train.py", "import os\nimport sys\n\nprint('training')\n"),
        ("predict.py", "def broken(:\n    pass\n"),
        ("explore.ipynb", notebook),
        // The candidate's own settings would silence everything: they are ignored.
        ("pyproject.toml", "[tool.ruff]\nexclude = [\"*\"]\n[tool.ruff.lint]\nignore = [\"F401\", \"E\"]\n"),
    ]);
    let (code, _, report) = grade("diamond-cut", submission.path()).await;
    assert_eq!(code, 0);
    let report = report.unwrap();
    let quality = &report["components"]["code_quality"];
    let findings = quality["findings"].as_array().unwrap();
    let has = |file: &str, rule: &str| findings.iter().any(|f| f["file"] == file && f["rule"] == rule);
    assert!(has("train.py", "F401"), "unused imports found despite the candidate's config: {quality:#}");
    assert!(has("predict.py", "syntax"), "a syntax error is a finding: {quality:#}");
    assert!(has("explore.ipynb", "F401"), "notebooks are linted: {quality:#}");
    let train_finding = findings.iter().find(|f| f["file"] == "train.py").unwrap();
    assert!(!train_finding["context"].as_array().unwrap().is_empty(), "findings carry their code context");
    assert!(quality["lines_of_code"].as_u64().unwrap() >= 6, "{quality:#}");
    assert!(quality["score"].as_f64().unwrap() < 100.0);
}

/// What a run leaves for the assessors: a notebook as it ran (printed output, the figure it drew)
/// and the figures a step saved under /output/figures, in the report and its HTML; none of it in
/// the candidate's view, since the graded run read hidden data.
#[tokio::test]
async fn a_notebook_as_it_ran_and_saved_figures_reach_the_report_for_assessors_only() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let fixture = repo_root().join("tasks/penguins-cleaning/fixtures/notebook");
    let (code, stdout, report) = grade("penguins-cleaning", &fixture).await;
    assert_eq!(code, 0, "{stdout}");
    let report = report.unwrap();
    let notebooks = report["artifacts"]["notebooks"].as_array().expect("the executed notebook is in the report");
    assert_eq!(notebooks[0]["file"], "clean.ipynb");
    let outputs: Vec<&Value> = notebooks[0]["cells"].as_array().unwrap().iter().flat_map(|c| c["outputs"].as_array().unwrap()).collect();
    assert!(outputs.iter().any(|o| o["kind"] == "image" && o["mime"] == "image/png"), "the figure the notebook drew: {outputs:?}");
    assert!(outputs.iter().any(|o| o["kind"] == "text" && o["text"].as_str().is_some_and(|t| t.contains(", 18)"))), "what it printed: {outputs:?}");

    let script = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap().replace(
        "if __name__ == \"__main__\":\n    main()",
        "if __name__ == \"__main__\":\n    main()\n    import matplotlib.pyplot as plt\n    os.makedirs(f\"{OUTPUT}/figures\", exist_ok=True)\n    plt.plot([1, 2, 3])\n    plt.savefig(f\"{OUTPUT}/figures/trend.png\")\n",
    );
    let submission = folder_with(&[("clean.py", &script)]);
    let (code, stdout, report) = grade("penguins-cleaning", submission.path()).await;
    assert_eq!(code, 0, "{stdout}");
    let report = report.unwrap();
    assert_eq!(report["status"], "graded", "{report:#}");
    let figures = report["artifacts"]["figures"].as_array().expect("the saved figure is in the report");
    assert_eq!(figures[0]["name"], "trend.png");
    let typed: takehome::report::Report = serde_json::from_value(report.clone()).unwrap();
    let html = typed.to_html(takehome::report::View::Assessor);
    assert!(html.contains("figures/trend.png") && html.contains("data:image/png;base64,"), "the report page shows it");
    let candidate = typed.to_json_view(takehome::report::View::Candidate);
    assert!(!candidate.contains("artifacts") && !candidate.contains("trend.png"), "the candidate's view carries none of it");
}
