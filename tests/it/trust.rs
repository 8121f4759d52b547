//! The trust boundary, attacked as a candidate or a stranger would: one test per finding of
//! issue 9, each an attack that worked before it was fixed. Real git, real Docker, loopback only;
//! the clock's tests need no grading and run against the web layer in process ([`TestApp`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::common::{docker, folder_with, python_image, repo_root, takehome_binary};
use super::serve::{assign, base64, clone, git, push_solution, setup, Daemon, PASSWORD};
use super::test_app::TestApp;
use axum::http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE};

/// The data lines of a hidden file (not its header), for "no byte of it came back" checks.
fn data_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().skip(1).filter(|l| l.len() >= 8).take(200).map(String::from).collect()
}

fn assert_lacks_lines(text: &str, lines: &[String], what: &str) {
    assert!(!lines.is_empty());
    for line in lines {
        assert!(!text.contains(line.as_str()), "{what} holds a line of the hidden file: {line:?}");
    }
}

/// Plants the link chain of finding 1 in `dir`, aimed at `truth` (a path relative to the host
/// process's working folder), with a decoy file where the chain lands inside a container.
fn plant_link_chain(dir: &Path, truth_from_cwd: &str) {
    let decoy = dir.join(truth_from_cwd);
    std::fs::create_dir_all(decoy.parent().unwrap()).unwrap();
    std::fs::write(&decoy, "import os\nimport sys\nimport json\nx=1\n").unwrap();
    std::os::unix::fs::symlink(".", dir.join("s")).unwrap();
    let climb = format!("{}{}", "s/".repeat(8), "../".repeat(8));
    std::os::unix::fs::symlink(format!("{climb}proc/self/cwd/{truth_from_cwd}"), dir.join("x.py")).unwrap();
    std::os::unix::fs::symlink(repo_root().join(truth_from_cwd), dir.join("abs.py")).unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", dir.join("environ.py")).unwrap();
    std::os::unix::fs::symlink(format!("{climb}proc/self/environ"), dir.join("env2.py")).unwrap();
}

#[tokio::test]
async fn a_link_chain_in_a_graded_folder_reads_no_host_file() {
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let truth = "datasets/diamond-cut/hidden/labels.csv";
    let submission = folder_with(&[("train.py", "print('train')\n"), ("predict.py", "print('predict')\n")]);
    plant_link_chain(submission.path(), truth);
    let report = tempfile::NamedTempFile::new().unwrap();
    let candidate = tempfile::NamedTempFile::new().unwrap();
    const SECRET: &str = "HOST-ENV-SECRET-5d1e77";
    let output = tokio::process::Command::new(takehome_binary())
        .current_dir(repo_root())
        .env("TAKEHOME_TEST_SECRET", SECRET)
        .args(["grade", "--task", "tasks/diamond-cut", "--submission"])
        .arg(submission.path())
        .arg("--json")
        .arg(report.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let status =
        Command::new(takehome_binary()).args(["report"]).arg(report.path()).args(["--view", "candidate", "--json"]).arg(candidate.path()).status().unwrap();
    assert!(status.success());
    let lines = data_lines(&repo_root().join(truth));
    for (what, text) in [
        ("the report", std::fs::read_to_string(report.path()).unwrap()),
        ("the candidate view", std::fs::read_to_string(candidate.path()).unwrap()),
        ("the summary", stdout),
    ] {
        assert_lacks_lines(&text, &lines, what);
        assert!(!text.contains(SECRET), "{what} holds the grading process's environment");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.path()).unwrap()).unwrap();
    let skipped: Vec<&str> = json["submission"]["skipped_links"].as_array().unwrap().iter().map(|l| l["path"].as_str().unwrap()).collect();
    for link in ["s", "x.py", "abs.py", "environ.py", "env2.py"] {
        assert!(skipped.contains(&link), "{link} should be reported as not copied: {skipped:?}");
    }
}

/// Commits every file of `dir` (links as links) and pushes it to main; returns git's output.
fn commit_all_and_push(repo: &Path, message: &str) -> (bool, String) {
    let (ok, out) = git(repo, &["add", "-A"]);
    assert!(ok, "{out}");
    let (ok, out) = git(repo, &["commit", "-q", "-m", message]);
    assert!(ok, "{out}");
    git(repo, &["push", "origin", "main"])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_link_chain_and_a_step_that_prints_hidden_rows_reach_no_candidate() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let mallory = assign(&data_path, "penguins-cleaning", "mallory@example.com", &[]);
        let repo = clone(&daemon, &mallory, &work_path);
        let truth = "datasets/penguins-cleaning/hidden/clean.csv";
        plant_link_chain(&repo, truth);
        // The step prints every row of its hidden input, then cleans as the reference does.
        let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
        let printer = format!("import pathlib\nimport sys\n\nfor p in pathlib.Path('/data').rglob('*.csv'):\n    sys.stdout.write(p.read_text())\n    sys.stderr.write(p.read_text())\n{reference}");
        std::fs::write(repo.join("clean.py"), printer).unwrap();
        let (ok, out) = commit_all_and_push(&repo, "links and a printer");
        assert!(ok, "{out}");
        let rows = daemon.wait_graded(&mallory.id, 1, Duration::from_secs(180));
        let id = rows[0]["id"].as_i64().unwrap();
        let detail = daemon.api(&format!("/api/submissions/{id}"));
        assert_eq!(detail["report"]["steps"][0]["outcome"], "ok", "{detail:#}");
        // The assessor sees what the step printed (it is theirs to read)...
        let input_lines: Vec<String> = walk_csv_lines(&repo_root().join("datasets/penguins-cleaning/hidden/input"));
        assert!(detail["report"]["steps"][0]["stdout_tail"].as_str().unwrap().contains(input_lines[0].as_str()));
        // ...but no host file reached any report, and nothing printed over hidden data reaches the candidate.
        let truth_lines = data_lines(&repo_root().join(truth));
        assert_lacks_lines(&detail.to_string(), &truth_lines, "the assessor's report");
        let (status, api) = daemon.get(&format!("/api/status/{}", mallory.id), Some((&mallory.id, &mallory.token)));
        assert_eq!(status, 200, "{api}");
        let (status, page) = daemon.get(&format!("/status/{}", mallory.id), Some((&mallory.id, &mallory.token)));
        assert_eq!(status, 200);
        for (what, text) in [("the status API", &api), ("the status page", &page)] {
            assert_lacks_lines(text, &truth_lines, what);
            assert_lacks_lines(text, &input_lines, what);
            assert!(!text.contains("offences") && !text.contains("\"score\""), "{what}: {text}");
        }
        let view: serde_json::Value = serde_json::from_str(&api).unwrap();
        // The graded run's step read hidden data: no exit code, time or memory of it is shown
        // (the public run, over public data only, may show them).
        let graded = view["submissions"][0]["report"].to_string();
        assert!(!graded.contains("exit_code") && !graded.contains("wall_seconds"), "{graded}");
        assert_eq!(view["submissions"][0]["report"]["view"], "candidate");
        assert_eq!(view["submissions"][0]["report"]["steps"][0]["outcome"], "ok");
        assert!(view["submissions"][0]["report"]["steps"][0]["details"].is_null(), "{view:#}");
    })
    .await
    .unwrap();
}

fn walk_csv_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in walkdir_files(dir) {
        lines.extend(data_lines(&entry));
    }
    lines
}

fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir_files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

/// The web layer in process (no Docker, no binary) over the shipped tasks, and penguins-cleaning.
async fn clock_app() -> (TestApp, takehome::task::TaskSpec) {
    (TestApp::new(&repo_root()).await, takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap())
}

/// An assignment whose clock starts at the first authenticated read; its token and bare repository.
async fn on_clone(app: &TestApp, task: &takehome::task::TaskSpec, id: &str) -> (String, PathBuf) {
    app.assign_starting(id, task, &format!("{id}@example.com"), takehome::store::Starts::OnClone).await
}

async fn started(app: &TestApp, id: &str) -> Option<i64> {
    app.app.store.assignment(id).await.unwrap().unwrap().started_at
}

fn basic_auth(user: &str, password: &str) -> (HeaderName, String) {
    (AUTHORIZATION, super::test_app::basic(user, password))
}

#[tokio::test(flavor = "multi_thread")]
async fn any_authenticated_read_of_the_repository_starts_the_clock() {
    let (app, task) = clock_app().await;
    // A fetch that skips the advertisement: a bare upload-pack POST wanting main's commit.
    let (token, bare) = on_clone(&app, &task, "a0sneaky").await;
    assert_eq!(started(&app, "a0sneaky").await, None);
    let (ok, main) = git(&repo_root(), &["--git-dir", bare.to_str().unwrap(), "rev-parse", "main"]);
    assert!(ok, "{main}");
    let body = format!("{}0000{}", pkt(&format!("want {}\n", main.trim())), pkt("done\n"));
    let upload = |auth: (HeaderName, String)| vec![auth, (CONTENT_TYPE, "application/x-git-upload-pack-request".to_string())];
    let (status, _, reply) = app.request("POST", "/git/a0sneaky.git/git-upload-pack", &upload(basic_auth("a0sneaky", &token)), body.clone()).await;
    assert_eq!(status, 200);
    assert!(reply.contains("PACK"), "the fetch was served");
    assert!(started(&app, "a0sneaky").await.is_some(), "a bare upload-pack POST fetched the brief with the clock stopped");

    // The push advertisement gives away main's commit id: it starts the clock too.
    let (token, _) = on_clone(&app, &task, "a0pusher").await;
    let (status, _) = app.get("/git/a0pusher.git/info/refs?service=git-receive-pack", &[basic_auth("a0pusher", &token)]).await;
    assert_eq!(status, 200);
    assert!(started(&app, "a0pusher").await.is_some(), "the receive-pack advertisement left the clock stopped");

    // A wrong token starts nothing.
    on_clone(&app, &task, "a0idle").await;
    let (status, _, _) = app.request("POST", "/git/a0idle.git/git-upload-pack", &upload(basic_auth("a0idle", "wrong")), body).await;
    assert_eq!(status, 401);
    assert_eq!(started(&app, "a0idle").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_page_cannot_start_a_clock_with_cached_credentials() {
    let (app, task) = clock_app().await;
    let (token, _) = on_clone(&app, &task, "a0browsing").await;
    let credentials = basic_auth("a0browsing", &token);
    // What a browser sends for <img src> or fetch() from another site, with the Basic
    // credentials it cached for this origin.
    let site = |name: &'static str, value: &str| (HeaderName::from_static(name), value.to_string());
    for browser in [
        vec![site("sec-fetch-site", "cross-site"), site("sec-fetch-mode", "no-cors"), site("sec-fetch-dest", "image")],
        vec![site("origin", "https://evil.example")],
        vec![site("sec-fetch-site", "same-origin")],
    ] {
        for (method, path) in [
            ("GET", "/git/a0browsing.git/info/refs?service=git-upload-pack"),
            ("GET", "/git/a0browsing.git/info/refs?service=git-receive-pack"),
            ("POST", "/git/a0browsing.git/git-upload-pack"),
        ] {
            let mut headers = vec![credentials.clone()];
            headers.extend(browser.iter().cloned());
            let (status, _, reply) = app.request(method, path, &headers, String::new()).await;
            assert_eq!(status, 403, "{method} {path} with {browser:?}: {reply}");
            assert!(reply.contains("git clients only"), "{reply}");
        }
    }
    assert_eq!(started(&app, "a0browsing").await, None, "a request from a browser started the clock");
    // git itself (no Origin, no Sec-Fetch-*) still clones, and that starts the clock.
    let (status, _) = app.get("/git/a0browsing.git/info/refs?service=git-upload-pack", &[credentials]).await;
    assert_eq!(status, 200);
    assert!(started(&app, "a0browsing").await.is_some());
}

#[test]
fn a_candidates_gitattributes_cannot_inflate_the_checkout() {
    // A 4 MiB blob of "a\n" that .gitattributes asks to check out as UTF-32LE with CRLF: 24 MiB
    // if honoured (six bytes per byte), and filters, ident and eol beside it.
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let run = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Candidate", "-c", "user.email=c@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&source, &["init", "-q"]);
    let body = "a\n".repeat(2 << 20);
    std::fs::write(source.join("data.txt"), &body).unwrap();
    std::fs::write(source.join("keyword.py"), "# $Id$\nx = 1\n").unwrap();
    run(&source, &["add", "."]);
    run(&source, &["commit", "-q", "-m", "data"]);
    std::fs::write(source.join(".gitattributes"), "*.txt working-tree-encoding=UTF-32LE eol=crlf\n*.py ident filter=evil text eol=crlf\n").unwrap();
    run(&source, &["add", ".gitattributes"]);
    run(&source, &["commit", "-q", "-m", "attributes"]);
    run(work.path(), &["clone", "-q", "--bare", "source", "bare.git"]);
    let commit = String::from_utf8(Command::new("git").args(["--git-dir", "bare.git", "rev-parse", "main"]).current_dir(work.path()).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let dest = work.path().join("checkout");
    std::fs::create_dir(&dest).unwrap();
    takehome::intake::checkout_exactly(work.path(), &work.path().join("bare.git"), &commit, &dest).expect("the checkout");
    assert_eq!(std::fs::metadata(dest.join("data.txt")).unwrap().len(), body.len() as u64, "the checkout is the blob, byte for byte");
    assert_eq!(std::fs::read_to_string(dest.join("keyword.py")).unwrap(), "# $Id$\nx = 1\n", "no ident, no eol conversion");
}

/// Resident and peak memory of a process, from /proc (kB).
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_bodies_and_slow_heads_cannot_fill_or_stall_the_daemon() {
    let Some((_sandbox, data, _work)) = setup().await else { return };
    let data_path = data.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start_with(&data_path, 1, &[("TAKEHOME_MAX_CONNECTIONS", "16")]);
        let victim = assign(&data_path, "penguins-cleaning", "victim@example.com", &[]);
        let (_, peak_before) = memory_kb(daemon.pid());
        // Ten strangers each start an 18 MiB push with no credentials.
        let port = daemon.port;
        let strangers: Vec<_> = (0..10)
            .map(|_| {
                let path = format!("/git/{}.git/git-receive-pack", victim.id);
                std::thread::spawn(move || {
                    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    // The answer must come from the head alone, before a byte of the body.
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
                        18 << 20
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    let mut reply = [0u8; 512];
                    let n = stream.read(&mut reply).unwrap_or(0);
                    let status = String::from_utf8_lossy(&reply[..n]).split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
                    // Then the body, which the daemon must not hold in memory.
                    let chunk = vec![b'0'; 1 << 20];
                    for _ in 0..18 {
                        if stream.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                    status
                })
            })
            .collect();
        for stranger in strangers {
            assert_eq!(stranger.join().unwrap(), 401, "an unauthenticated push was not refused at once");
        }
        let (_, peak_after) = memory_kb(daemon.pid());
        eprintln!("daemon peak RSS {} kB before, {} kB after ten unauthenticated 18 MiB bodies", peak_before, peak_after);
        assert!(peak_after < peak_before + 20 * 1024, "the daemon's peak memory grew by {} kB", peak_after - peak_before);

        // A head that never finishes is cut off.
        let started = Instant::now();
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
        let mut buffer = [0u8; 256];
        let _ = slow.read(&mut buffer);
        let held = started.elapsed();
        eprintln!("a half-sent head was held for {:.1} s", held.as_secs_f64());
        assert!(held < Duration::from_secs(15), "a half-sent head held a connection for {held:?}");

        // Past the connection cap, new connections are closed; the daemon answers again once
        // the idle ones time out.
        let idle: Vec<TcpStream> = (0..16)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let (status, _) = daemon.get("/healthz", None);
        assert_eq!(status, 0, "a connection past the cap was served");
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon.get("/healthz", None).0 != 200 {
            assert!(Instant::now() < deadline, "the daemon did not recover after the idle connections timed out");
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(idle);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authenticated_push_streams_with_bounded_memory() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let big = assign(&data_path, "penguins-cleaning", "bigpush@example.com", &[]);
        let repo = clone(&daemon, &big, &work_path);
        std::fs::write(repo.join("weights.bin"), noise(60 << 20, 7)).unwrap();
        let (_, peak_before) = memory_kb(daemon.pid());
        let (ok, out) = commit_all_and_push(&repo, "60 MiB of weights");
        assert!(ok, "{out}");
        let (_, peak_after) = memory_kb(daemon.pid());
        eprintln!("daemon peak RSS {peak_before} kB before, {peak_after} kB after a 60 MiB push");
        assert!(peak_after < peak_before + 24 * 1024, "a 60 MiB push grew the daemon's peak memory by {} kB", peak_after - peak_before);
        // The clone streams back too.
        let (ok, out) = git(&work_path, &["clone", "-q", &daemon.url(&big), "again"]);
        assert!(ok, "{out}");
        let (_, peak_clone) = memory_kb(daemon.pid());
        assert!(peak_clone < peak_before + 24 * 1024, "a 60 MiB clone grew the daemon's peak memory by {} kB", peak_clone - peak_before);
    })
    .await
    .unwrap();
}

/// Bytes that do not compress (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs git plumbing in `repo`; returns its trimmed stdout.
fn plumbing(repo: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git").args(args).current_dir(repo).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_bomb_is_refused_at_push_time_before_any_checkout() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let bomber = assign(&data_path, "penguins-cleaning", "bomber@example.com", &[]);
        let repo = clone(&daemon, &bomber, &work_path);
        // One 1 MiB blob (zeros: a few KB packed) in a 40 x 40 fan-out: 1.6 GiB once checked out.
        let blob = plumbing(&repo, &["hash-object", "-w", "--stdin"], &vec![0u8; 1 << 20]);
        let leaves: String = (0..40).map(|i| format!("100644 blob {blob}\tf{i}\n")).collect();
        let inner = plumbing(&repo, &["mktree"], leaves.as_bytes());
        let dirs: String = (0..40).map(|i| format!("040000 tree {inner}\td{i}\n")).collect();
        let top = plumbing(&repo, &["mktree"], dirs.as_bytes());
        let parent = plumbing(&repo, &["rev-parse", "HEAD"], b"");
        let commit = plumbing(&repo, &["-c", "user.name=B", "-c", "user.email=b@example.com", "commit-tree", &top, "-p", &parent, "-m", "bomb"], b"");
        let (ok, out) = git(&repo, &["push", "origin", &format!("{commit}:refs/heads/main")]);
        assert!(!ok, "the tree bomb was accepted: {out}");
        assert!(out.contains("takehome: push refused: the pushed tree holds more than"), "git did not print why:\n{out}");
        let rows = daemon.api(&format!("/api/submissions?assignment={}", bomber.id));
        assert_eq!(rows.as_array().unwrap().len(), 0, "a refused push made a submission");
        let (ok, main) = git(&data_path, &["--git-dir", &format!("repos/{}.git", bomber.id), "rev-parse", "main"]);
        assert!(ok && main.trim() == parent, "main moved to the bomb");
        // Many small files are refused by count.
        let many: String = (0..25_000).map(|i| format!("100644 blob {blob}\tf{i}\n")).collect();
        let small = plumbing(&repo, &["hash-object", "-w", "--stdin"], b"x");
        let many = many.replace(&blob, &small);
        let wide = plumbing(&repo, &["mktree"], many.as_bytes());
        let commit = plumbing(&repo, &["-c", "user.name=B", "-c", "user.email=b@example.com", "commit-tree", &wide, "-p", &parent, "-m", "wide"], b"");
        let (ok, out) = git(&repo, &["push", "origin", &format!("{commit}:refs/heads/main")]);
        assert!(!ok && out.contains("more than 20000 files"), "{out}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_main_moves_forward_within_the_quota_and_every_submission_is_kept() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        // The quota leaves room for the seed, a small push and one 600 KiB push, not two.
        let refs = assign(&data_path, "penguins-cleaning", "refs@example.com", &[]);
        let seeded = takehome::intake::Repos::new(data_path.join("repos"), data_path.join("hooks")).size(&refs.id);
        let quota = format!("{}KiB", seeded / 1024 + 1000);
        let daemon = Daemon::start_with(&data_path, 1, &[("TAKEHOME_REPO_QUOTA", quota.as_str())]);
        let repo = clone(&daemon, &refs, &work_path);
        let (ok, out) = push_solution(&repo, None, "first");
        assert!(ok, "{out}");
        for (target, why) in [
            ("HEAD:refs/heads/other", "only main is accepted"),
            ("HEAD:refs/tags/v1", "only main is accepted"),
            ("HEAD:refs/notes/x", "only main is accepted"),
            ("HEAD:refs/pull/1/head", "only main is accepted"),
            ("HEAD:refs/takehome/9", ""),
        ] {
            let (ok, out) = git(&repo, &["push", "origin", target]);
            assert!(!ok, "a push to {target} was accepted: {out}");
            assert!(out.contains(why), "{target}: {out}");
        }
        // A force push that rewrites main is refused.
        let (ok, out) = git(&repo, &["commit", "-q", "--amend", "-m", "rewritten"]);
        assert!(ok, "{out}");
        let (ok, out) = git(&repo, &["push", "-f", "origin", "main"]);
        assert!(!ok, "a force push rewrote main: {out}");
        let (ok, out) = git(&repo, &["reset", "-q", "--hard", "origin/main"]);
        assert!(ok, "{out}");
        // The quota: one 600 KiB push fits, a second does not.
        std::fs::write(repo.join("a.bin"), noise(600 << 10, 1)).unwrap();
        let (ok, out) = commit_all_and_push(&repo, "a");
        assert!(ok, "{out}");
        std::fs::write(repo.join("b.bin"), noise(600 << 10, 2)).unwrap();
        let (ok, out) = commit_all_and_push(&repo, "b");
        assert!(!ok, "a push past the quota was accepted: {out}");
        assert!(out.contains("quota") || out.contains("larger than"), "{out}");
        // Every accepted commit is kept under a hidden ref of ours; clients do not see them.
        let bare = format!("repos/{}.git", refs.id);
        let (_, kept) = git(&data_path, &["--git-dir", &bare, "for-each-ref", "--format=%(refname)", "refs/takehome"]);
        assert_eq!(kept.lines().collect::<Vec<_>>(), ["refs/takehome/1", "refs/takehome/2"], "{kept}");
        let (ok, remote) = git(&repo, &["ls-remote", "origin"]);
        assert!(ok && !remote.contains("refs/takehome"), "{remote}");
        let rows = daemon.api(&format!("/api/submissions?assignment={}", refs.id));
        assert_eq!(rows.as_array().unwrap().len(), 2, "{rows:#}");
    })
    .await
    .unwrap();
}

/// One Basic-auth API request; (status, seconds).
fn timed_api(port: u16, user: &str, password: &str) -> (u16, f64) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "GET /api/assignments HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Basic {}\r\n\r\n",
        base64(format!("{user}:{password}").as_bytes())
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let status = String::from_utf8_lossy(&reply).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_cost_the_same_for_unknown_users_are_rate_limited_and_never_stall_the_daemon() {
    let Some((_sandbox, data, _work)) = setup().await else { return };
    let data_path = data.path().to_path_buf();
    let daemon = tokio::task::spawn_blocking(move || Daemon::start(&data_path, 1)).await.unwrap();
    let port = daemon.port;
    // Known and unknown users answer in about the same time.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let (status, seconds) = tokio::task::spawn_blocking(move || timed_api(port, "ada", "wrong password")).await.unwrap();
        assert_eq!(status, 401);
        known.push(seconds);
        let (status, seconds) = tokio::task::spawn_blocking(move || timed_api(port, "zed", "wrong password")).await.unwrap();
        assert_eq!(status, 401);
        unknown.push(seconds);
    }
    let (known, unknown) = (median(known), median(unknown));
    eprintln!("wrong password: known user {:.1} ms, unknown user {:.1} ms (medians of 4)", known * 1e3, unknown * 1e3);
    assert!(known / unknown < 3.0 && unknown / known < 3.0, "known {known:.4} s vs unknown {unknown:.4} s");
    // The right password still works from this address; then more wrong ones are limited.
    assert_eq!(tokio::task::spawn_blocking(move || timed_api(port, "ada", PASSWORD)).await.unwrap().0, 200);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(tokio::task::spawn_blocking(move || timed_api(port, "ada", "guess")).await.unwrap().0);
    }
    assert!(statuses.contains(&429), "ten wrong passwords were not rate-limited: {statuses:?}");

    // A login flood from eight other addresses does not stall /healthz.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for n in 2..10u8 {
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(std::net::SocketAddr::from(([127, 0, 0, n], 0))).unwrap();
                let Ok(mut stream) = socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await else { continue };
                let body = "user=ada&password=flood";
                let request = format!("POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = stream.write_all(request.as_bytes()).await;
                let mut reply = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut reply)).await;
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = tokio::task::spawn_blocking({
            let daemon_port = port;
            move || {
                let mut stream = TcpStream::connect(("127.0.0.1", daemon_port)).unwrap();
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                (reply.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0), ())
            }
        })
        .await
        .unwrap();
        assert_eq!(status, 200);
        latencies.push(started.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for task in flood {
        sent += task.await.unwrap();
    }
    let p50 = median(latencies.clone());
    let worst = latencies.iter().copied().fold(0.0, f64::max);
    eprintln!("/healthz under a login flood ({sent} logins from 8 addresses): median {:.1} ms, worst {:.1} ms", p50 * 1e3, worst * 1e3);
    assert!(p50 < 0.1, "/healthz took {p50:.3} s (median) under a login flood");
    drop(daemon);
}

#[test]
fn an_empty_or_malformed_password_hash_stops_the_daemon_at_start_up() {
    for hash in ["", "plain", "pbkdf2-sha256$1000$00$00", "pbkdf2-sha256$600000$zz$00"] {
        let data = tempfile::tempdir().unwrap();
        let output = Command::new(takehome_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("TAKEHOME_ASSESSOR_USER", "ada")
            .env("TAKEHOME_ASSESSOR_PASSWORD_HASH", hash)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{hash:?}: {stderr}");
        assert!(stderr.contains("assessors: ada: password_hash:"), "{hash:?}: {stderr}");
    }
}

/// Logs in through the form; returns the cookie pair and the page's CSRF token.
fn log_in(daemon: &Daemon) -> (String, String) {
    let (status, head, _) = daemon.raw("POST", "/login", "", &format!("user=ada&password={}", PASSWORD.replace(' ', "+")));
    assert_eq!(status, 303, "{head}");
    let cookie_line =
        head.lines().find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: "))).expect("a session cookie").to_string();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict") && cookie_line.contains("Max-Age="), "{cookie_line}");
    let cookie = cookie_line.split(';').next().unwrap().to_string();
    let (status, _, page) = daemon.raw("GET", "/", &format!("Cookie: {cookie}\r\n"), "");
    assert_eq!(status, 200);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a CSRF token in the page").to_string();
    (cookie, csrf)
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_need_the_session_and_its_token_and_refuse_other_sites() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut daemon = Daemon::start(&data_path, 1);
        let grace = assign(&data_path, "penguins-cleaning", "grace@example.com", &[]);
        let repo = clone(&daemon, &grace, &work_path);
        assert!(push_solution(&repo, None, "reference").0);
        let id = daemon.wait_graded(&grace.id, 1, Duration::from_secs(180))[0]["id"].as_i64().unwrap();
        let (cookie, csrf) = log_in(&daemon);
        let notes = |daemon: &Daemon| daemon.api(&format!("/api/submissions/{id}"))["notes"].as_array().unwrap().len();
        let note = |daemon: &Daemon, extra: &str, body: &str| daemon.raw("POST", &format!("/submissions/{id}/notes"), extra, body).0;
        let with_cookie = format!("Cookie: {cookie}\r\n");
        // From another site: refused by Origin, or by Sec-Fetch-Site, even with the right token.
        assert_eq!(note(&daemon, &format!("{with_cookie}Origin: http://evil.example\r\n"), &format!("text=x&csrf={csrf}")), 403);
        assert_eq!(note(&daemon, &format!("{with_cookie}Sec-Fetch-Site: cross-site\r\n"), &format!("text=x&csrf={csrf}")), 403);
        // Without the token, or with another's: refused.
        assert_eq!(note(&daemon, &with_cookie, "text=x"), 422, "a form without its token");
        assert_eq!(note(&daemon, &with_cookie, "text=x&csrf=0000"), 403);
        // Basic credentials do not work for forms or pages.
        let basic = format!("Authorization: Basic {}\r\n", base64(format!("ada:{PASSWORD}").as_bytes()));
        assert_eq!(note(&daemon, &basic, &format!("text=x&csrf={csrf}")), 303, "a form with Basic credentials must go to the login");
        assert_eq!(daemon.raw("GET", "/", &basic, "").0, 303, "a page with Basic credentials must go to the login");
        assert_eq!(notes(&daemon), 0, "a refused form added a note");
        // The same origin with the token works.
        let origin = format!("{with_cookie}Origin: http://127.0.0.1:{}\r\nSec-Fetch-Site: same-origin\r\n", daemon.port);
        assert_eq!(note(&daemon, &origin, &format!("text=fine&csrf={csrf}")), 303);
        assert_eq!(notes(&daemon), 1);
        // The API's POST from a browser on another site is refused too.
        let (status, _, _) = daemon.raw("POST", &format!("/api/submissions/{id}/regrade"), &format!("{basic}Origin: http://evil.example\r\n"), "");
        assert_eq!(status, 403);

        // Sessions survive a restart, and logging out ends them everywhere.
        drop(std::mem::replace(&mut daemon, Daemon::start(&data_path, 1)));
        assert_eq!(daemon.raw("GET", "/", &with_cookie, "").0, 200, "the session did not survive a restart");
        let (other_cookie, _) = log_in(&daemon);
        assert_eq!(daemon.raw("POST", "/logout-everywhere", &with_cookie, &format!("csrf={csrf}")).0, 303);
        assert_eq!(daemon.raw("GET", "/", &with_cookie, "").0, 303, "the session outlived its logout");
        assert_eq!(daemon.raw("GET", "/", &format!("Cookie: {other_cookie}\r\n"), "").0, 303, "the other session outlived 'log out everywhere'");
        // /metrics is off without its token.
        assert_eq!(daemon.get("/metrics", None).0, 401);
    })
    .await
    .unwrap();
}

#[test]
fn assign_works_with_the_default_relative_data_dir() {
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(takehome_binary())
        .current_dir(cwd.path())
        .args(["assign", "--task", "penguins-cleaning", "--candidate", "rel@example.com"])
        .env("TAKEHOME_TASKS_ROOT", repo_root())
        .env_remove("TAKEHOME_DATA_DIR")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let repos: Vec<_> = std::fs::read_dir(cwd.path().join("takehome-data/repos")).unwrap().collect();
    assert_eq!(repos.len(), 1);
    assert!(cwd.path().join("takehome-data/takehome.sqlite").is_file());
}

#[test]
fn a_parquet_output_claiming_100_million_rows_is_refused_with_bounded_memory() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let truth = repo_root().join("datasets/diamond-cut/hidden/labels.csv");
    let bomb = dir.path().join("predictions.parquet");
    // 100 row groups of one million identical rows: well under a megabyte on disk.
    let file = std::fs::File::create(&bomb).unwrap();
    let batch = |_: usize| df!("id" => vec![1i64; 1_000_000], "cut" => vec!["Ideal"; 1_000_000]).unwrap();
    let schema = batch(0).schema().clone();
    let mut writer = ParquetWriter::new(file).with_row_group_size(Some(1_000_000)).batched(&schema).unwrap();
    for n in 0..100 {
        writer.write_batch(&batch(n)).unwrap();
    }
    writer.finish().unwrap();
    let size = std::fs::metadata(&bomb).unwrap().len();
    assert!(size < 1 << 20, "the bomb is {size} bytes");
    // Peak memory of the grader, as the kernel counts it for the finished child.
    let script = format!(
        "import resource, subprocess, sys\nr = subprocess.run([{:?}, 'score', '--metric', 'f1_macro', '--truth', {:?}, '--predictions', {:?}], capture_output=True, text=True)\nprint(r.returncode)\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.stderr.write(r.stderr)\n",
        takehome_binary().display().to_string(),
        truth.display().to_string(),
        bomb.display().to_string()
    );
    let output = Command::new("python3").args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut lines = stdout.lines();
    let code: i32 = lines.next().unwrap().parse().unwrap();
    let peak_kb: u64 = lines.next().unwrap().parse().unwrap();
    eprintln!("a {size}-byte Parquet file claiming 100,000,000 rows: exit {code}, grader peak {peak_kb} kB: {stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("100000000 rows, far more than expected"), "{stderr}");
    assert!(peak_kb < 150 * 1024, "the grader held {peak_kb} kB");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_candidate_cannot_take_every_git_slot() {
    // The web layer in process on a loopback port: no Docker, no binary.
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_MAX_GIT_PROCESSES", "3")]).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let (greedy, _) = app.assign("a0greedy", &task, "greedy@example.com").await;
    let (other, _) = app.assign("a0other", &task, "other@example.com").await;
    let served = app.listen().await;
    let port = served.port;
    let auth = |id: &str, token: &str| format!("Authorization: Basic {}\r\n", base64(format!("{id}:{token}").as_bytes()));
    let raw = move |path: String, auth: String| -> u16 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\r\n").as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let (greedy_auth, other_auth) = (auth("a0greedy", &greedy), auth("a0other", &other));
    tokio::task::spawn_blocking(move || {
        // Fetches whose bodies never finish hold their git process: each is held once the server
        // has answered its head (200: git runs, reading a request that never ends).
        let hold = || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let head = format!("POST /git/a0greedy.git/git-upload-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n{greedy_auth}Content-Length: 100000\r\n\r\n0032want ");
            s.write_all(head.as_bytes()).unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                line.push(byte[0]);
            }
            let status = String::from_utf8_lossy(&line).into_owned();
            assert!(status.starts_with("HTTP/1.1 200"), "a held fetch was not served: {status:?}");
            s
        };
        let held = [hold(), hold()];
        // Both held: a third request for the same repository is refused.
        let status = raw("/git/a0greedy.git/info/refs?service=git-upload-pack".into(), greedy_auth.clone());
        assert_eq!(status, 429, "a third git process for one repository");
        // Another candidate is still served.
        assert_eq!(raw("/git/a0other.git/info/refs?service=git-upload-pack".into(), other_auth), 200);
        drop(held);
    })
    .await
    .unwrap();
}

/// What a candidate learns per hour is bounded: past `graded_pushes_per_hour`, a push is kept and
/// queued, and the reply says from when it is graded.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_past_the_hourly_cap_are_kept_and_wait_their_turn() {
    // Nothing is graded here: the web layer in process, a real git client over loopback.
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_GRADED_PUSHES_PER_HOUR", "2")]).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let (token, _) = app.assign("a0pacer", &task, "pacer@example.com").await;
    let served = app.listen().await;
    let work = tempfile::tempdir().unwrap();
    let url = served.git_url("a0pacer", &token);
    let work_path = work.path().to_path_buf();
    let replies = tokio::task::spawn_blocking(move || {
        let repo = work_path.join("a0pacer");
        let (ok, out) = git(&work_path, &["clone", "-q", &url, repo.to_str().unwrap()]);
        assert!(ok, "{out}");
        (0..3)
            .map(|n| {
                let (ok, out) = push_solution(&repo, Some(&format!("print({n})\n")), &format!("push {n}"));
                assert!(ok, "{out}");
                out
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(replies[0].contains("queue position") && replies[1].contains("queue position"), "{replies:?}");
    assert!(replies[2].contains("at most 2 pushes are graded an hour; this one is kept and waits its turn"), "{}", replies[2]);
    let rows = app.app.store.submissions(Some("a0pacer"), None).await.unwrap();
    assert_eq!(rows.len(), 3, "every push is kept: {rows:?}");
    // The candidate's page and API say from when the waiting push is graded.
    let auth = [basic_auth("a0pacer", &token)];
    let (status, body) = app.get("/api/status/a0pacer", &auth).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let third = json["submissions"].as_array().unwrap().iter().find(|s| s["number"] == 3).unwrap().clone();
    assert!(third["graded_from"].as_str().is_some_and(|t| t.ends_with('Z')), "{third}");
    let first = json["submissions"].as_array().unwrap().iter().find(|s| s["number"] == 1).unwrap().clone();
    assert!(first["graded_from"].is_null(), "{first}");
    let (_, page) = app.get("/status/a0pacer", &auth).await;
    assert!(page.contains("Queued: graded from ") && page.contains("(graded from "), "the page says when push 3 is graded");
}
