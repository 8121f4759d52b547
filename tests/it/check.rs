//! `takehome check` finds every planted mistake of tests/fixtures/check-root: a manifest that
//! does not match, hidden ids and a hidden file handed to candidates, a feature that gives the
//! label away, a fixture that misses its expectation, one without expect.yaml, one whose two
//! grades differ, and a task whose grading names a column its truth lacks. (The shipped tasks and
//! the shared hostile fixtures are checked by .ci/run.)

use std::time::Duration;

use super::common::{docker, python_image, repo_root, takehome_binary};

/// Runs `takehome check` on the planted-mistakes root with `jobs` fixtures at a time.
async fn check_root(jobs: &str, junit: &std::path::Path) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(takehome_binary())
            .current_dir(repo_root())
            .args(["check", "--root", "tests/fixtures/check-root", "--jobs", jobs, "--junit"])
            .arg(junit)
            .output(),
    )
    .await
    .expect("check finishes")
    .unwrap()
}

/// The summary's rows without their times and messages: status, task and check.
fn rows(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("passed") || l.starts_with("FAILED ") || l.starts_with("warning"))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn check_reports_every_planted_mistake() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let junit = tempfile::NamedTempFile::new().unwrap();
    let output = check_root("3", junit.path()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Graded one at a time, the same results in the same order.
    let serial = check_root("1", tempfile::NamedTempFile::new().unwrap().path()).await;
    let serial_rows = rows(&String::from_utf8_lossy(&serial.stdout));
    assert!(serial_rows.len() >= 8, "{serial_rows:?}");
    assert_eq!(rows(&stdout), serial_rows, "--jobs 3 and --jobs 1 disagree");
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for needle in [
        "FAILED leaky / data manifest:",
        "hidden/features/test.csv changed",
        "FAILED leaky / hidden ids:",
        "public/train.csv: 1 hidden ids (\"101\")",
        "FAILED leaky / hidden files:",
        "starter/labels.csv is a copy of",
        "warning leaky / label giveaways:",
        "column \"color\" predicts the hidden \"label\" with accuracy 1.000",
        "FAILED leaky / fixture cheat:",
        "score 85.0 (expected 0 to 50)",
        "FAILED leaky / fixture no-expect:",
        "FAILED leaky / fixture random:",
        "two grades differ",
        // A column the task file names but the truth lacks: the task's fault, with its field,
        // found before any fixture runs.
        "FAILED typo / task data:",
        "grading.target: datasets/leaky/hidden/labels.csv has no column \"labl\"",
        "5 passed, 7 failed",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Progress went to stderr as the checks ran, one line each.
    assert_eq!(stderr.lines().filter(|l| l.starts_with("check: leaky")).count(), 10, "{stderr}");
    assert!(stdout.contains("passed   leaky                fixture starter"), "the starter is graded as a fixture: {stdout}");
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(xml.contains("<testsuite name=\"leaky\" tests=\"10\" failures=\"6\""), "{xml}");
}

/// No points for doing nothing: each shipped task's untouched starter scores under its floor
/// (code quality and runtime count in proportion to accuracy, and the scale starts where the
/// starter stands).
#[tokio::test]
async fn shipped_starters_score_under_their_floor() {
    let Some(sandbox) = docker().await else { return };
    let (tag, id) = python_image(&sandbox).await;
    let image = takehome::job::ImageRef { tag, id };
    for dir in takehome::check::discover_tasks(&repo_root()).unwrap() {
        let task = takehome::task::load(&dir).unwrap();
        let starter = task.dir.join(&task.starter);
        let cancel = tokio_util::sync::CancellationToken::new();
        let report = takehome::job::grade(&sandbox, &task, &starter, &image, &takehome::job::new_job_id(), &cancel, &|_| {}).await.unwrap();
        assert!(report.score <= task.score_floor, "{}: the starter scores {:.1} (floor {}): {}", task.id, report.score, task.score_floor, report.formula);
    }
}
