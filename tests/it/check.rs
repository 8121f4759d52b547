//! `takehome check` finds every planted mistake of tests/fixtures/check-root: a manifest that
//! does not match, hidden ids and a hidden file handed to candidates, a feature that gives the
//! label away, a fixture that misses its expectation, one without expect.yaml, one whose two
//! grades differ, and a task whose grading names a column its truth lacks. (The shipped tasks and
//! the shared hostile fixtures are checked by .ci/run.)

use std::time::Duration;

use super::common::{copy_tree, docker, python_image, repo_root, takehome_binary};

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

/// `new-task` from a CSV makes a task that `check` passes untouched (labels, numbers, cleaning), and
/// `check --quick` gives the same verdicts as `check` for the fixtures it grades.
#[tokio::test]
async fn a_new_task_from_a_csv_passes_check_untouched() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let root = tempfile::tempdir().unwrap();
    // The python recipe and python-slim, which it extends.
    for name in ["python", "python-slim"] {
        let recipe = root.path().join("runner-images").join(name);
        std::fs::create_dir_all(&recipe).unwrap();
        for entry in std::fs::read_dir(repo_root().join("runner-images").join(name)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), recipe.join(entry.file_name())).unwrap();
            }
        }
    }
    let mut csv = String::from("x1,colour,grade,price\n");
    for i in 0..150 {
        let x = (i * 37 % 101) as f64 / 10.0;
        let colour = ["red", "green", "blue, dark"][i % 3];
        csv.push_str(&format!("{x},\"{colour}\",{},{:.2}\n", if x > 5.0 { 7 } else { 3 + i % 2 }, 2.0 * x + (i % 7) as f64));
    }
    let source = root.path().join("table.csv");
    std::fs::write(&source, csv).unwrap();
    let run = |args: Vec<String>| async move {
        tokio::time::timeout(Duration::from_secs(300), tokio::process::Command::new(takehome_binary()).args(args).output()).await.expect("finishes").unwrap()
    };
    let root_arg = root.path().display().to_string();
    for (id, target) in [("grades", "grade"), ("prices", "price")] {
        let made = run(vec![
            "new-task".into(),
            id.into(),
            "--from-csv".into(),
            source.display().to_string(),
            "--target".into(),
            target.into(),
            "--root".into(),
            root_arg.clone(),
        ])
        .await;
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let cleaning = run(vec![
        "new-task".into(),
        "tidy".into(),
        "--kind".into(),
        "data-cleaning".into(),
        "--from-csv".into(),
        source.display().to_string(),
        "--root".into(),
        root_arg.clone(),
    ])
    .await;
    assert!(cleaning.status.success(), "{}", String::from_utf8_lossy(&cleaning.stderr));
    let raw = std::fs::read_to_string(root.path().join("datasets/tidy/hidden/input/raw.csv")).unwrap();
    let clean = std::fs::read_to_string(root.path().join("datasets/tidy/hidden/clean.csv")).unwrap();
    assert!(raw != clean && raw.lines().count() > clean.lines().count(), "the hidden input is a dirty copy with repeated rows");
    let yaml = std::fs::read_to_string(root.path().join("tasks/prices/task.yaml")).unwrap();
    assert!(yaml.contains("metric: rmse"), "{yaml}");
    let yaml = std::fs::read_to_string(root.path().join("tasks/grades/task.yaml")).unwrap();
    assert!(yaml.contains("metric: accuracy"), "{yaml}");
    // The same table twice into one id is refused, naming what exists.
    let again = run(vec![
        "new-task".into(),
        "grades".into(),
        "--from-csv".into(),
        source.display().to_string(),
        "--target".into(),
        "grade".into(),
        "--root".into(),
        root_arg.clone(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    let full = run(vec!["check".into(), "--root".into(), root_arg.clone()]).await;
    let full_out = String::from_utf8_lossy(&full.stdout);
    assert!(full.status.success(), "{full_out}\n{}", String::from_utf8_lossy(&full.stderr));
    assert!(full_out.contains("24 passed, 0 failed"), "{full_out}");
    let quick = run(vec!["check".into(), "--root".into(), root_arg, "--quick".into()]).await;
    let quick_out = String::from_utf8_lossy(&quick.stdout);
    assert!(quick.status.success(), "{quick_out}");
    let verdicts = |out: &str| rows(out).into_iter().filter(|r| r.contains("fixture")).collect::<Vec<_>>();
    assert_eq!(verdicts(&quick_out), verdicts(&full_out));
    assert!(verdicts(&quick_out).len() >= 6, "{quick_out}");
}

/// The line of `check`'s summary for the look-up fixture, and all it printed.
async fn lookup_line(root: &std::path::Path) -> (String, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(takehome_binary()).current_dir(root).args(["check", "--fixtures", "lookup", "tasks/penguins-cleaning"]).output(),
    )
    .await
    .expect("check finishes")
    .unwrap();
    let stdout = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let line = stdout
        .lines()
        .find(|l| l.contains("lookup/public-source") && (l.starts_with("passed") || l.starts_with("FAILED")))
        .map(String::from)
        .unwrap_or_else(|| panic!("no look-up line in:\n{stdout}"));
    (line, stdout)
}

/// Answer keys in public: with the hidden birds' own records in the declared public source (as
/// the shipped data were before they were synthesised), the look-up answers the hidden rows and
/// `check` fails the task (the exact look-up, and the nearest-neighbour join that does better
/// against the source than against the public data); with the shipped data it passes.
#[tokio::test]
async fn the_lookup_fixture_fails_a_task_whose_hidden_rows_are_in_its_public_source() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let repo = repo_root();
    let root = tempfile::tempdir().unwrap();
    for part in ["tasks/penguins-cleaning", "datasets/penguins-cleaning", "runner-images", "fixtures/lookup"] {
        copy_tree(&repo.join(part), &root.path().join(part));
    }
    let (shipped, printed) = lookup_line(root.path()).await;
    assert!(shipped.starts_with("passed"), "the shipped data: {shipped}");
    assert!(printed.lines().any(|l| l.starts_with("passed") && l.contains("public source lift")), "{printed}");

    // The public source made of the hidden records themselves, raw and clean in the same order.
    let data = root.path().join("datasets/penguins-cleaning");
    let raw = std::fs::read_to_string(data.join("hidden/input/penguins_raw.csv")).unwrap();
    let clean = std::fs::read_to_string(data.join("hidden/clean.csv")).unwrap();
    let split = |line: &str| line.split_once(',').map(|(id, rest)| (id.to_string(), rest.to_string())).unwrap();
    let raw_by_id: std::collections::HashMap<String, String> = raw.lines().skip(1).map(split).collect();
    let (mut source_raw, mut source_clean) = (vec![split(raw.lines().next().unwrap()).1], vec![split(clean.lines().next().unwrap()).1]);
    for (id, rest) in clean.lines().skip(1).map(split) {
        source_raw.push(raw_by_id[&id].clone());
        source_clean.push(rest);
    }
    std::fs::write(data.join("public-source/penguins-raw.csv"), source_raw.join("\n") + "\n").unwrap();
    std::fs::write(data.join("public-source/penguins.csv"), source_clean.join("\n") + "\n").unwrap();
    let (leaky, printed) = lookup_line(root.path()).await;
    assert!(leaky.starts_with("FAILED"), "hidden rows in the public source: {leaky}");
    assert!(printed.contains("answers the hidden rows: a look-up that joins them to it scores 100.0"), "{printed}");
    // The nearest-neighbour join does better against the source than against the public data.
    assert!(printed.lines().any(|l| l.starts_with("FAILED") && l.contains("public source lift")), "{printed}");
    assert!(printed.contains("the public source holds the hidden rows"), "{printed}");
}

/// A task whose steps ask for GPUs is refused by `check` on a host without them, saying which
/// steps and where to check it instead, before anything is graded.
#[tokio::test]
async fn a_task_asking_for_gpus_is_refused_on_a_host_without_them() {
    if takehome::daemon::host_gpus() > 0 {
        eprintln!("SKIPPED: this host has GPUs");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    for part in ["tasks/diamond-cut", "datasets/diamond-cut", "runner-images"] {
        copy_tree(&repo_root().join(part), &root.path().join(part));
    }
    let file = root.path().join("tasks/diamond-cut/task.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replacen("    timeout: 5m\n", "    timeout: 5m\n    gpus: 1\n", 1);
    std::fs::write(&file, text).unwrap();
    let output = tokio::process::Command::new(takehome_binary()).current_dir(root.path()).args(["check", "tasks/diamond-cut"]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("step train asks for 1 GPU and this host has none: run `takehome check` on a GPU host"), "{stdout}");
    assert!(!stdout.contains("fixture"), "nothing is graded: {stdout}");
}
