//! Report renderings: snapshots of Markdown and HTML (a change shows as a diff; rewrite them with
//! UPDATE_SNAPSHOTS=1), candidate-controlled text never becomes markup, the candidate view keeps
//! hidden things out, and the page renders in a real headless browser (Debian's chromium).

use std::path::{Path, PathBuf};
use std::time::Duration;

use takehome::report::{Report, View};

use super::common::repo_root;

/// A report whose every candidate-controlled string (name, paths, logs, lint messages, a label)
/// carries a script and an image tag.
fn hostile_report() -> Report {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/hostile.json")).unwrap();
    serde_json::from_str(&text).expect("a report")
}

fn snapshot(name: &str, actual: &str) {
    let path = repo_root().join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_none() {
            panic!("{} did not exist; written now: review it and commit it", path.display());
        }
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering at line {}:\n  snapshot: {:?}\n  rendered: {:?}\n(UPDATE_SNAPSHOTS=1 rewrites it)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn renderings_match_their_snapshots() {
    let report = hostile_report();
    snapshot("hostile.md", &report.to_markdown(View::Assessor));
    snapshot("hostile.html", &report.to_html(View::Assessor));
    snapshot("hostile.candidate.html", &report.to_html(View::Candidate));
    snapshot("hostile.candidate.md", &report.to_markdown(View::Candidate));
}

#[test]
fn candidate_text_never_becomes_markup() {
    let report = hostile_report();
    for view in [View::Assessor, View::Candidate] {
        let html = report.to_html(view);
        assert!(!html.contains("<script"), "a script element got through");
        assert!(!html.contains("<img"), "an img element got through");
        assert!(html.contains("&lt;script&gt;document.title="), "the text is shown, escaped");
        let markdown = report.to_markdown(view);
        // Outside fenced blocks (whose content Markdown shows literally) no raw HTML.
        let mut fence: Option<usize> = None;
        for line in markdown.lines() {
            let ticks = line.chars().take_while(|&c| c == '`').count();
            match fence {
                Some(open) if ticks >= open && line.trim() == "`".repeat(ticks) => fence = None,
                Some(_) => continue,
                None if ticks >= 3 => fence = Some(ticks),
                None => assert!(!line.contains("<script") && !line.contains("<img"), "raw HTML in Markdown: {line}"),
            }
        }
        // A log that holds a code fence cannot close the fence around it.
        assert!(markdown.contains("````text"), "the fence is longer than the log's own");
    }
}

#[test]
fn the_candidate_view_leaves_out_scores_and_hidden_data() {
    let report = hostile_report();
    let html = report.to_html(View::Candidate);
    for hidden in ["77.4", "Confusion matrix", "Score</h2>", &report.provenance.dataset_digest, "f1_macro", "Slices", "carat", "colour = J"] {
        assert!(!html.contains(hidden), "the candidate's page shows {hidden:?}");
    }
    assert!(html.contains("Steps") && html.contains("Code quality"), "the candidate still sees steps and lint findings");
    let json: serde_json::Value = serde_json::from_str(&report.to_json_view(View::Candidate)).unwrap();
    assert_eq!(json["view"], "candidate");
    for absent in ["score", "formula", "components", "provenance", "candidate", "methodology", "debrief"] {
        assert!(json.get(absent).is_none(), "the candidate's JSON has {absent:?}");
    }
    // The methodology findings, the debrief and the slices are the assessors' (the fixture
    // report has all three).
    assert!(!report.methodology.is_empty() && !report.debrief.is_empty() && !report.components.accuracy.accuracy.slices.is_empty());
    for text in [&html, &report.to_markdown(View::Candidate), &json.to_string()] {
        assert!(
            !text.contains("no-validation") && !text.contains("Methodology") && !text.contains("n_estimators") && !text.contains("carat"),
            "the candidate's view shows the methodology or the debrief"
        );
    }
    let text = json.to_string();
    assert!(!text.contains(&report.provenance.dataset_digest) && !text.contains("\"weight\""));
    // The public step's logs are shown; the step that read hidden data shows its outcome only.
    assert_eq!(report.steps[1].name, "predict");
    assert!(json["steps"][0]["details"]["stdout_tail"].is_string());
    assert!(json["steps"][1]["details"].is_null(), "{:#}", json["steps"][1]);
    assert!(!report.steps[1].stdout_tail.is_empty());
    let markdown = report.to_markdown(View::Candidate);
    assert!(markdown.contains("predict: this step reads hidden data"), "{markdown}");
    assert!(html.contains("predict: this step reads hidden data"));
}

#[test]
fn a_report_whose_problem_has_no_offences_reads_back() {
    let mut report = hostile_report();
    report.components.accuracy.accuracy.problem = Some(takehome::grading::OutputProblem::missing("the steps wrote no /output/predictions.csv"));
    let json = report.to_json();
    assert!(!json.contains("offences"), "empty offences are left out of the JSON");
    let back: Report = serde_json::from_str(&json).expect("a report without offences reads back");
    assert_eq!(back.components.accuracy.accuracy.problem.unwrap().offences.len(), 0);
    // Every field added after schema 1 was first written has a default: the oldest shape reads.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for step in value["steps"].as_array_mut().unwrap() {
        step.as_object_mut().unwrap().remove("candidate_logs");
    }
    let old: Report = serde_json::from_value(value).expect("a report without candidate_logs reads back");
    assert!(old.steps.iter().all(|s| !s.candidate_logs), "logs stay hidden from candidates by default");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|name| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())))
        .next()
}

fn run_chromium(binary: &Path, profile: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(binary);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()));
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Every wait has a timeout: a wedged browser fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_page_renders_in_a_headless_browser_without_console_errors() {
    let Some(binary) = chromium() else {
        if std::env::var("TAKEHOME_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("chromium is required (TAKEHOME_REQUIRE_BROWSER=1) but not installed (apt-get install chromium)");
        }
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium)");
        return;
    };
    let artefacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let page = artefacts.join("hostile-report.html");
    std::fs::write(&page, hostile_report().to_html(View::Assessor)).unwrap();
    let profile = tempfile::tempdir().unwrap();

    let dom = run_chromium(&binary, profile.path(), &["--dump-dom"], &page);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "chromium failed: {}", String::from_utf8_lossy(&dom.stderr));
    assert!(dom_text.contains("<title>Predict the cut grade of a diamond"), "the page's own title: {}", &dom_text[..dom_text.len().min(400)]);
    assert!(!dom_text.contains("<script") && !dom_text.contains("<img"), "injected elements in the rendered DOM");
    assert!(!dom_text.contains("pwned</title>"), "an injected script ran");
    let console_errors: Vec<&str> = std::str::from_utf8(&dom.stderr).unwrap_or("").lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console_errors.is_empty(), "console messages: {console_errors:?}");

    let screenshot = artefacts.join("hostile-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = run_chromium(&binary, profile.path(), &[&format!("--screenshot={}", screenshot.display()), "--window-size=1200,2400"], &page);
    assert!(shot.status.success(), "{}", String::from_utf8_lossy(&shot.stderr));
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "the screenshot ({size} bytes) looks empty");
}
