//! Noninterference, tested as it is defined (docs/security.md): every hostile submission of
//! `fixtures/noninterference/` is graded on every shipped task against two hidden inputs of the
//! same shape and different content, and what the candidate is shown — the API's JSON
//! ([`CandidateReport`]), the status page's run section and the candidate's HTML report — must be
//! identical once the timestamps, the commit and the measurements of steps that read no hidden
//! data (noise, not data) are set aside. Each payload also declares where its channel shows in
//! the assessor's report (`channel.txt`), and that place must differ between the two inputs: the
//! payload really carried the hidden data out of the container, and only the candidate's view
//! dropped it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use takehome::report::{CandidateReport, Report, View};

use super::common::{copy_tree, docker, python_image, repo_root, takehome_binary};

/// The second hidden input: each data line keeps its id (the first field) and takes the rest of
/// the next line, so the file has the same header, ids, rows, values and bytes, in other places.
fn rotate_csv(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let rows: Vec<(&str, &str)> = lines.map(|line| line.split_once(',').unwrap_or((line, ""))).collect();
    let mut out = header + "\n";
    for (index, (id, _)) in rows.iter().enumerate() {
        let rest = rows[(index + 1) % rows.len()].1;
        out.push_str(&format!("{id},{rest}\n"));
    }
    assert_ne!(out, text, "{}: the rotation changed nothing", path.display());
    std::fs::write(path, out).unwrap();
}

fn rotate_below(dir: &Path) {
    if dir.is_file() {
        return rotate_csv(dir);
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rotate_below(&path);
        } else if path.extension().is_some_and(|e| e == "csv") {
            rotate_csv(&path);
        }
    }
}

/// A project root with one task, its data set (the hidden inputs rotated when `rotated`) and the
/// runner image recipes.
fn root_for(task: &str, rotated: bool) -> tempfile::TempDir {
    let repo = repo_root();
    let spec = takehome::task::load(&repo.join("tasks").join(task)).expect("a shipped task loads");
    let root = tempfile::tempdir().unwrap();
    copy_tree(&repo.join("tasks").join(task), &root.path().join("tasks").join(task));
    copy_tree(&spec.dataset_dir(), &root.path().join("datasets").join(&spec.dataset));
    copy_tree(&repo.join("runner-images"), &root.path().join("runner-images"));
    if rotated {
        for input in spec.steps.iter().flat_map(|s| s.inputs.iter()).filter(|i| i.starts_with("hidden/")) {
            rotate_below(&root.path().join("datasets").join(&spec.dataset).join(input));
        }
    }
    root
}

/// Grades `submission` on `task` of `root` and returns the full report.
async fn grade(root: &Path, task: &str, submission: &Path) -> Report {
    let json = tempfile::NamedTempFile::new().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(takehome_binary())
            .current_dir(root)
            .args(["grade", "--task", &format!("tasks/{task}"), "--submission"])
            .arg(submission)
            .arg("--json")
            .arg(json.path())
            .output(),
    )
    .await
    .expect("grading finishes within 10 minutes")
    .unwrap();
    let text = std::fs::read_to_string(json.path()).unwrap_or_default();
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{task}: no report ({error}): {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

/// Sets aside what differs between two gradings for reasons other than the hidden data: the
/// time, the measurements of steps that read none (their logs and outcome stay), provenance.
fn set_aside(report: &mut Report) {
    report.provenance.graded_at = "(set aside)".into();
    report.submission.commit = None;
    report.submission.path = String::new();
    for step in report.steps.iter_mut().filter(|s| s.candidate_logs) {
        step.wall_seconds = 0.0;
        step.cpu_seconds = None;
        step.peak_memory_bytes = None;
    }
}

/// Everything the candidate is shown of one graded run.
fn candidate_answers(report: &Report) -> (String, String, String) {
    let view = CandidateReport::from_report(report);
    (view.to_json(), takehome::web::candidate::run_html(&view, 1, "graded").into_string(), report.to_html(View::Candidate))
}

/// The value at `pointer` (one of the `|`-separated JSON pointers of `channel.txt`) of the assessor's report, `{hidden}` standing for the first step that
/// reads hidden data.
fn channel_value(report: &Report, pointer: &str, hidden: usize) -> Value {
    let json = serde_json::to_value(report).unwrap();
    json.pointer(&pointer.replace("{hidden}", &hidden.to_string())).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_submissions_see_the_same_answers_for_two_hidden_inputs() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let repo = repo_root();
    let payloads_dir = repo.join("fixtures").join("noninterference");
    let mut payloads: Vec<PathBuf> = std::fs::read_dir(&payloads_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("payload.py").is_file()).collect();
    payloads.sort();
    assert!(payloads.len() >= 12, "the set of channels only grows: {} payloads", payloads.len());
    let mut tasks: Vec<String> = std::fs::read_dir(repo.join("tasks")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    tasks.sort();

    let slots = Arc::new(tokio::sync::Semaphore::new(2));
    let mut runs = tokio::task::JoinSet::new();
    let mut roots = Vec::new();
    for task in &tasks {
        let (plain, rotated) = (Arc::new(root_for(task, false)), Arc::new(root_for(task, true)));
        roots.push((plain.clone(), rotated.clone()));
        let spec = takehome::task::load(&plain.path().join("tasks").join(task)).unwrap();
        let hidden = spec.steps.iter().position(|s| s.reads_hidden()).expect("every shipped task reads hidden data");
        for payload in &payloads {
            let fitted = takehome::check::fit_shared_fixture(&spec, payload).expect("the payload fits the task");
            std::fs::copy(payloads_dir.join("common.py"), fitted.path().join("common.py")).unwrap();
            let channel = std::fs::read_to_string(payload.join("channel.txt")).unwrap_or_default().trim().to_string();
            let (task, name, plain, rotated, slots) =
                (task.clone(), payload.file_name().unwrap().to_string_lossy().into_owned(), plain.clone(), rotated.clone(), slots.clone());
            runs.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                let mut a = grade(plain.path(), &task, fitted.path()).await;
                let mut b = grade(rotated.path(), &task, fitted.path()).await;
                drop(fitted);
                set_aside(&mut a);
                set_aside(&mut b);
                let mut problems = Vec::new();
                let (seen_a, seen_b) = (candidate_answers(&a), candidate_answers(&b));
                for (what, x, y) in [("API JSON", &seen_a.0, &seen_b.0), ("status page", &seen_a.1, &seen_b.1), ("candidate HTML", &seen_a.2, &seen_b.2)] {
                    if x != y {
                        let steps = |r: &Report| {
                            r.steps
                                .iter()
                                .map(|s| {
                                    format!(
                                        "{} {} [{}]",
                                        s.name,
                                        s.outcome.as_str(),
                                        s.stderr_tail.chars().rev().take(300).collect::<String>().chars().rev().collect::<String>()
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        };
                        problems.push(format!("{task} × {name}: assessor's steps: first input: {}; second input: {}", steps(&a), steps(&b)));
                        let at = x.chars().zip(y.chars()).take_while(|(p, q)| p == q).count();
                        let from = at.saturating_sub(200);
                        problems.push(format!(
                            "{task} × {name}: the candidate's {what} depends on the hidden data near …{}… vs …{}…",
                            x.chars().skip(from).take(400).collect::<String>(),
                            y.chars().skip(from).take(400).collect::<String>()
                        ));
                    }
                }
                let pointers: Vec<&str> = channel.split('|').map(str::trim).filter(|p| !p.is_empty() && *p != "none").collect();
                let carried = pointers.is_empty() || pointers.iter().any(|p| channel_value(&a, p, hidden) != channel_value(&b, p, hidden));
                let values: Vec<String> = pointers.iter().map(|p| format!("{p} = {}", channel_value(&a, p, hidden))).collect();
                eprintln!(
                    "{task} × {name}: {} ({}; {})",
                    if problems.is_empty() { "same answers" } else { "DIFFERENT" },
                    a.status.as_str(),
                    if carried { "the channel carried the data to the assessor's report" } else { "the channel carried nothing here" }
                );
                (name, carried, values.join(", "), problems)
            });
        }
    }
    let mut problems = Vec::new();
    let mut n_runs = 0;
    // A payload must carry the hidden data out (to the assessor's report) on at least one task:
    // one that carries nothing anywhere tests nothing. Some channels exist only for some kinds
    // of task (a cleaning grade names no unexpected column).
    let mut carried_somewhere: std::collections::BTreeMap<String, (bool, String)> = Default::default();
    while let Some(result) = runs.join_next().await {
        let (name, carried, values, found) = result.expect("a run does not panic");
        let entry = carried_somewhere.entry(name).or_insert((false, String::new()));
        entry.0 |= carried;
        entry.1 = values;
        problems.extend(found);
        n_runs += 1;
    }
    for (name, (carried, values)) in &carried_somewhere {
        if !carried {
            problems.push(format!("{name}: the payload carried nothing out on any task (the same for both inputs: {values}), so it tests nothing"));
        }
    }
    assert_eq!(n_runs, tasks.len() * payloads.len());
    assert!(problems.is_empty(), "{} of {n_runs} runs leak:\n{}", problems.len(), problems.join("\n"));
}
