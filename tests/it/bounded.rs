//! Every page and answer that shows what a candidate pushed is bounded, whatever was pushed
//! (issue 24, items 2, 3, 4 and 6): one test per shape, each a push of a few KB through a real
//! git client to a daemon without workers (nothing is graded: the pages read the pushed commit).
//! Each answer must come within 2 s and under 5 MB, and the daemon's peak memory stay under
//! 300 MB. No Docker needed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::review::login;
use super::serve::{assign, clone, git, Assigned, Daemon, PASSWORD};

const MAX_ANSWER_BYTES: usize = 5_000_000;
const MAX_ANSWER_TIME: Duration = Duration::from_secs(2);
const MAX_PEAK_KB: u64 = 300 * 1024;

/// The daemon's peak resident memory so far (kB, VmHWM).
fn peak_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One answer, timed and measured: its body. Asserts 200, [`MAX_ANSWER_TIME`] and
/// [`MAX_ANSWER_BYTES`].
fn bounded_get(daemon: &Daemon, path: &str, extra: &str) -> String {
    let started = Instant::now();
    let (status, _, body) = daemon.raw("GET", path, extra, "");
    let took = started.elapsed();
    eprintln!("{path}: {status}, {} bytes in {:.0} ms", body.len(), took.as_secs_f64() * 1000.0);
    assert_eq!(status, 200, "{path}: {}", &body[..body.len().min(2000)]);
    assert!(took < MAX_ANSWER_TIME, "{path} took {took:?}");
    assert!(body.len() < MAX_ANSWER_BYTES, "{path} answered {} bytes", body.len());
    body
}

fn basic() -> String {
    format!("Authorization: Basic {}\r\n", super::serve::base64(format!("ada:{PASSWORD}").as_bytes()))
}

/// A daemon with no workers, one penguins-cleaning assignment and its clone.
fn start(data: &Path, work: &Path, candidate: &str) -> (Daemon, Assigned, PathBuf) {
    let daemon = Daemon::start(data, 0);
    let assigned = assign(data, "penguins-cleaning", candidate, &[]);
    let repo = clone(&daemon, &assigned, work);
    (daemon, assigned, repo)
}

/// Commits everything in `repo` with `message` (a file, for long ones) and pushes it to main.
fn commit_and_push(repo: &Path, message: &str) {
    assert!(git(repo, &["add", "-A"]).0);
    let file = repo.parent().unwrap().join("message.txt");
    std::fs::write(&file, message).unwrap();
    let (ok, out) = git(repo, &["-c", "user.name=C", "-c", "user.email=c@example.com", "commit", "-q", "-F", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = git(repo, &["push", "-q", "origin", "main"]);
    assert!(ok, "{out}");
}

/// The submissions of an assignment, newest first.
fn submission_ids(daemon: &Daemon, assignment: &str) -> Vec<i64> {
    let rows = daemon.api(&format!("/api/submissions?assignment={assignment}"));
    rows.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

fn assert_peak(daemon: &Daemon, what: &str) {
    let peak = peak_kb(daemon.pid());
    eprintln!("daemon peak RSS {peak} kB after {what}");
    assert!(peak < MAX_PEAK_KB, "the daemon's peak memory reached {peak} kB after {what}");
}

#[test]
fn twenty_files_of_half_a_mebibyte_of_newlines_make_a_bounded_code_view() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (daemon, assigned, repo) = start(data.path(), work.path(), "newlines@example.com");
    // One blob of 512 KiB of newlines under 20 names: a push of about a kilobyte.
    let newlines = vec![b'\n'; 512 << 10];
    for i in 0..20 {
        std::fs::write(repo.join(format!("blank{i:02}.py")), &newlines).unwrap();
    }
    commit_and_push(&repo, "twenty blank files");
    let id = submission_ids(&daemon, &assigned.id)[0];
    let cookie = format!("Cookie: {}\r\n", login(&daemon, "ada", PASSWORD));

    let code = bounded_get(&daemon, &format!("/submissions/{id}/code"), &cookie);
    assert!(code.contains("shown 2,000 of 524,288 lines"), "the page does not say what was cut");
    assert!(code.contains("this page&#39;s budget") || code.contains("this page's budget"), "files past the page's budget are not said to be");
    let files = bounded_get(&daemon, &format!("/api/submissions/{id}/files"), &basic());
    let json: serde_json::Value = serde_json::from_str(&files).unwrap();
    let listed = json["view"]["files"].as_array().unwrap();
    let first = listed.iter().find(|f| f["path"] == "blank00.py").unwrap();
    assert_eq!(first["cut"]["reason"], "file_lines", "{first:#}");
    assert_eq!(first["cut"]["total_lines"], 524_288);
    assert_eq!(first["text"].as_str().unwrap().len(), 2_000);
    let last = listed.iter().find(|f| f["path"] == "blank19.py").unwrap();
    assert_eq!((last["kind"].as_str(), last["cut"]["reason"].as_str()), (Some("listed"), Some("page_budget")), "{last:#}");
    assert!(json["view"]["cut"].as_str().unwrap().contains("not at all"));
    bounded_get(&daemon, &format!("/submissions/{id}"), &cookie);
    assert_peak(&daemon, "the code view of 20 files of 512 KiB");
}

#[test]
fn twenty_files_of_dense_python_make_a_bounded_code_view() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (daemon, assigned, repo) = start(data.path(), work.path(), "dense@example.com");
    // One token in two bytes: tree-sitter's markup would be thirty times the text.
    let dense = format!("{}a\n", "a+".repeat(60)).repeat(2_100);
    for i in 0..20 {
        std::fs::write(repo.join(format!("dense{i:02}.py")), &dense).unwrap();
    }
    commit_and_push(&repo, "dense");
    let id = submission_ids(&daemon, &assigned.id)[0];
    let cookie = format!("Cookie: {}\r\n", login(&daemon, "ada", PASSWORD));
    let code = bounded_get(&daemon, &format!("/submissions/{id}/code"), &cookie);
    assert!(code.contains("shown 2,000 of 2,100 lines"), "the page does not say what was cut");
    bounded_get(&daemon, &format!("/api/submissions/{id}/files"), &basic());
    assert_peak(&daemon, "the code view of 20 files of dense Python");
}

#[test]
fn a_readme_replaced_by_half_a_mebibyte_of_lines_is_not_diffed_a_long_output_is_cut_and_a_stop_is_prompt() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut daemon, assigned, repo) = start(data.path(), work.path(), "readme@example.com");
    std::fs::write(repo.join("README.md"), "a\n".repeat(256 << 10)).unwrap();
    // And a notebook whose one cell printed 1.5 MB.
    let printed = "o".repeat(1_500_000);
    std::fs::write(
        repo.join("explore.ipynb"),
        format!(
            r#"{{"cells": [{{"cell_type": "code", "source": ["print('o' * 1_500_000)"], "outputs": [{{"output_type": "stream", "text": ["{printed}"]}}]}}]}}"#
        ),
    )
    .unwrap();
    commit_and_push(&repo, "a new readme");
    let id = submission_ids(&daemon, &assigned.id)[0];
    let cookie = format!("Cookie: {}\r\n", login(&daemon, "ada", PASSWORD));

    let files = bounded_get(&daemon, &format!("/api/submissions/{id}/files"), &basic());
    let json: serde_json::Value = serde_json::from_str(&files).unwrap();
    let readme = json["view"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "README.md").cloned().unwrap();
    assert_eq!(readme["change"], "modified");
    assert_eq!(readme["diff_status"], "too_large", "{readme:#}");
    assert!(readme.get("diff").is_none());
    let notebook = json["view"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "explore.ipynb").cloned().unwrap();
    assert_eq!(notebook["cells"][0]["output"].as_str().unwrap().len(), 4096, "{notebook:#}");
    assert_eq!(notebook["cells"][0]["output_cut_bytes"], 1_500_000 - 4096);
    let code = bounded_get(&daemon, &format!("/submissions/{id}/code"), &cookie);
    assert!(code.contains("too large to show as a diff"), "the page does not say why there is no diff");
    assert!(code.contains(&format!("… (cut: {} bytes)", 1_500_000 - 4096)), "the page does not say the output was cut");
    bounded_get(&daemon, &format!("/submissions/{id}"), &cookie);
    bounded_get(&daemon, &format!("/api/submissions/{id}/review"), &basic());
    assert_peak(&daemon, "the code view of a replaced README");

    // A daemon stopped while it answers exits within 10 s.
    let port = daemon.port;
    let asking = std::thread::spawn(move || {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port)).map(|mut s| {
            use std::io::{Read, Write};
            let _ = s.write_all(format!("GET /api/submissions/{id}/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n", basic()).as_bytes());
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
    });
    std::thread::sleep(Duration::from_millis(100));
    let stopped = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &daemon.pid().to_string()]).status().unwrap().success());
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(stopped.elapsed() < Duration::from_secs(10), "the daemon did not exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("the daemon exited {:.0} ms after SIGTERM", stopped.elapsed().as_secs_f64() * 1000.0);
    asking.join().unwrap();
}

#[test]
fn twenty_python_files_of_half_a_mebibyte_make_a_bounded_similarity_view() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (daemon, assigned, repo) = start(data.path(), work.path(), "similar@example.com");
    let xs = "x\n".repeat(256 << 10);
    for i in 0..20 {
        std::fs::write(repo.join(format!("x{i:02}.py")), &xs).unwrap();
    }
    commit_and_push(&repo, "twenty files of x");
    let id = submission_ids(&daemon, &assigned.id)[0];
    let cookie = format!("Cookie: {}\r\n", login(&daemon, "ada", PASSWORD));

    let page = bounded_get(&daemon, "/tasks/penguins-cleaning/similarity", &cookie);
    assert!(page.contains("Sources cut") && page.contains("files read in part"), "the page does not say the sources were cut");
    let stored = data.path().join("similarity").join(format!("{id}.json"));
    let size = std::fs::metadata(&stored).unwrap().len();
    eprintln!("stored fingerprints: {size} bytes");
    assert!(size < 4 << 20, "the stored fingerprints take {size} bytes");
    let api = bounded_get(&daemon, "/api/tasks/penguins-cleaning/similarity", &basic());
    let json: serde_json::Value = serde_json::from_str(&api).unwrap();
    let cut = &json["sources_cut"][0];
    assert_eq!(cut["submission"], id, "{json:#}");
    assert_eq!(cut["files_left_out"].as_u64().unwrap() + cut["files_cut"].as_u64().unwrap(), 20, "{cut:#}");
    // Later views read the stored fingerprints.
    bounded_get(&daemon, "/tasks/penguins-cleaning/similarity", &cookie);
    assert_peak(&daemon, "the similarity view of 20 files of 512 KiB");
}

#[test]
fn commit_messages_of_twenty_megabytes_are_shown_cut() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (daemon, assigned, repo) = start(data.path(), work.path(), "message@example.com");
    let message = format!("a long story\n\n{}", "m".repeat(20 << 20));
    for n in 0..3 {
        std::fs::write(repo.join("clean.py"), format!("print({n})\n")).unwrap();
        commit_and_push(&repo, &message);
    }
    let ids = submission_ids(&daemon, &assigned.id);
    assert_eq!(ids.len(), 3);
    let cookie = format!("Cookie: {}\r\n", login(&daemon, "ada", PASSWORD));

    let page = bounded_get(&daemon, &format!("/submissions/{}", ids[0]), &cookie);
    assert_eq!(page.matches("… (cut: ").count(), 3, "each push's message is cut and says so");
    let review = bounded_get(&daemon, &format!("/api/submissions/{}/review", ids[0]), &basic());
    let json: serde_json::Value = serde_json::from_str(&review).unwrap();
    for push in json["timeline"]["pushes"].as_array().unwrap() {
        let shown = push["message"].as_str().unwrap();
        assert!(shown.starts_with("a long story") && shown.len() < 5 << 10, "{}", &shown[..100]);
        // git keeps the message as written, with a final newline.
        let cut = push["message_cut_bytes"].as_u64().unwrap() as usize;
        assert!((message.len() - 4096..=message.len() + 1 - 4096).contains(&cut), "{cut}");
    }
    assert_peak(&daemon, "pages with three commit messages of 20 MB");
}

/// However often a candidate pushes, the status page and its API carry the runs of the newest
/// pushes only (and list the rest, up to a bound), and say so.
#[test]
fn many_pushes_make_a_bounded_status_answer() {
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (daemon, assigned, repo) = start(data.path(), work.path(), "pusher@example.com");
    for n in 0..12 {
        std::fs::write(repo.join("clean.py"), format!("print({n})\n")).unwrap();
        commit_and_push(&repo, &format!("push {n}"));
    }
    let (status, body) = daemon.get(&format!("/api/status/{}", assigned.id), Some((&assigned.id, &assigned.token)));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["pushes_total"], 12);
    let listed = json["submissions"].as_array().unwrap();
    assert_eq!(listed.len(), 12);
    let shown: Vec<i64> = listed.iter().filter(|s| s["runs_shown"] == true).map(|s| s["number"].as_i64().unwrap()).collect();
    assert_eq!(shown, (3..=12).rev().collect::<Vec<_>>(), "the newest ten pushes carry their runs");
    let extra = format!("Authorization: Basic {}\r\n", super::serve::base64(format!("{}:{}", assigned.id, assigned.token).as_bytes()));
    let page = bounded_get(&daemon, &format!("/status/{}", assigned.id), &extra);
    assert!(page.contains("The runs of your newest 10 pushes"), "the page says what it leaves out");
    assert_eq!(page.matches("<section id=\"push-").count(), 10);
    assert!(page.contains("<td>1</td>") && page.contains("<td>2</td>"), "older pushes are still listed");
}
