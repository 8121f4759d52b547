//! The daemon end to end, with a real `git` client over loopback: assign → clone → push →
//! graded report through the API; the deadline; tokens; isolation between candidates; kill -9
//! and restart; a burst of pushes; the web UI in a real browser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{containers_with_label, docker, python_image, repo_root, takehome_binary};
use axum::http::header;

pub(super) use super::cluster_support::{base64, free_port, git, Assigned, METRICS_TOKEN, PASSWORD};

/// Docker with the runner image, and fresh data and work folders (None: skipped, no Docker).
pub(super) async fn setup() -> Option<(takehome::sandbox::DockerSandbox, tempfile::TempDir, tempfile::TempDir)> {
    let sandbox = docker().await?;
    python_image(&sandbox).await;
    Some((sandbox, tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()))
}

/// A daemon on a free loopback port with its own data folder; killed when dropped.
pub(super) struct Daemon {
    pub(super) child: Child,
    pub(super) port: u16,
}

impl Daemon {
    pub(super) fn start(data: &Path, workers: usize) -> Daemon {
        Daemon::start_with(data, workers, &[])
    }

    pub(super) fn start_with(data: &Path, workers: usize, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let hash = takehome::secret::hash_password(PASSWORD);
        let child = Command::new(takehome_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string(), "--data-dir"])
            .arg(data)
            .env("TAKEHOME_TASKS_ROOT", repo_root())
            .env("TAKEHOME_ASSESSOR_USER", "ada")
            .env("TAKEHOME_ASSESSOR_PASSWORD_HASH", hash)
            .env("TAKEHOME_LOG", "takehome=info")
            .env("TAKEHOME_METRICS_TOKEN", METRICS_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if daemon.get("/healthz", None).0 == 200 {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the daemon did not answer /healthz within 60 s");
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn request(&self, method: &str, path: &str, auth: Option<(&str, &str)>, body: &str) -> (u16, String) {
        let extra = auth.map(|(user, password)| format!("Authorization: Basic {}\r\n", base64(format!("{user}:{password}").as_bytes()))).unwrap_or_default();
        let (status, _, body) = self.raw(method, path, &extra, body);
        (status, body)
    }

    /// One HTTP/1.1 request with `extra` header lines; returns (status, head, body).
    pub(super) fn raw(&self, method: &str, path: &str, extra: &str, body: &str) -> (u16, String, String) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return (0, String::new(), String::new()) };
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{extra}", body.len());
        if !body.is_empty() && !extra.to_ascii_lowercase().contains("content-type:") {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        stream.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
        (status, head, body)
    }

    pub(super) fn get(&self, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
        self.request("GET", path, auth, "")
    }

    pub(super) fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path, Some(("ada", PASSWORD)));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    pub(super) fn url(&self, assignment: &Assigned) -> String {
        format!("http://{}:{}@127.0.0.1:{}/git/{}.git", assignment.id, assignment.token, self.port, assignment.id)
    }

    /// Waits until every submission of `assignment` is graded (or failed on our side).
    pub(super) fn wait_graded(&self, assignment: &str, expected: usize, limit: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let rows = self.api(&format!("/api/submissions?assignment={assignment}"));
            let rows = rows.as_array().unwrap().clone();
            if rows.len() >= expected && rows.iter().all(|r| r["status"] == "graded" || r["status"] == "infrastructure_error") {
                return rows;
            }
            assert!(Instant::now() < deadline, "not graded within {limit:?}: {rows:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn assign(data: &Path, task: &str, candidate: &str, extra: &[&str]) -> Assigned {
    assign_with(data, task, candidate, extra, &[])
}

/// `assign` with more settings, as `TAKEHOME_*` variables.
pub(super) fn assign_with(data: &Path, task: &str, candidate: &str, extra: &[&str], env: &[(&str, &str)]) -> Assigned {
    let output = Command::new(takehome_binary())
        .args(["assign", "--task", task, "--candidate", candidate, "--data-dir"])
        .arg(data)
        .args(extra)
        .env("TAKEHOME_TASKS_ROOT", repo_root())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "assign failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_else(|| panic!("no {name} in {stdout}"));
    Assigned { id: field("user:"), token: field("token:") }
}

pub(super) fn clone(daemon: &Daemon, assignment: &Assigned, into: &Path) -> PathBuf {
    let dest = into.join(&assignment.id);
    let (ok, out) = git(into, &["clone", "-q", &daemon.url(assignment), dest.to_str().unwrap()]);
    assert!(ok, "clone failed: {out}");
    dest
}

/// Commits the reference cleaner (or `body` as clean.py) and pushes; returns git's output.
pub(super) fn push_solution(repo: &Path, body: Option<&str>, message: &str) -> (bool, String) {
    let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    std::fs::write(repo.join("clean.py"), body.unwrap_or(&reference)).unwrap();
    let (ok, out) = git(repo, &["commit", "-q", "-am", message]);
    assert!(ok, "{out}");
    git(repo, &["push", "origin", "main"])
}

#[tokio::test(flavor = "multi_thread")]
async fn assign_clone_push_and_read_the_graded_report() {
    let Some((sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    let pid = tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let alice = assign(&data_path, "penguins-cleaning", "alice@example.com", &[]);
        let bob = assign(&data_path, "penguins-cleaning", "bob@example.com", &[]);
        let repo = clone(&daemon, &alice, &work_path);
        for seeded in ["README.md", "clean.py", "data/public/penguins_raw.csv", "data/public/penguins_clean.csv"] {
            assert!(repo.join(seeded).is_file(), "the repository lacks {seeded}");
        }
        assert!(!repo.join("data/hidden").exists());
        let (ok, out) = push_solution(&repo, None, "the reference cleaner");
        assert!(ok, "{out}");
        for needle in ["takehome: submission #1 accepted", "takehome: queue position", "left (deadline", "/status/"] {
            assert!(out.contains(needle), "the push reply lacks {needle:?}:\n{out}");
        }
        let rows = daemon.wait_graded(&alice.id, 1, Duration::from_secs(180));
        assert_eq!(rows.len(), 1, "one push, one submission");
        let detail = daemon.api(&format!("/api/submissions/{}", rows[0]["id"]));
        assert_eq!(detail["report"]["status"], "graded", "{detail:#}");
        assert!(detail["report"]["score"].as_f64().unwrap() > 95.0);
        // penguins-cleaning is reviewed blind: reviewers see an alias until a decision.
        assert_eq!(detail["report"]["candidate"], takehome::review::alias(&alice.id));
        assert_eq!(detail["report"]["submission"]["commit"].as_str().unwrap().len(), 40);
        // The push was fingerprinted on arrival, for the similarity view (never at its view).
        let fingerprints = data_path.join("similarity").join(format!("{}.json", rows[0]["id"]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fingerprints.is_file() {
            assert!(Instant::now() < deadline, "the push was not fingerprinted on arrival");
            std::thread::sleep(Duration::from_millis(100));
        }

        // The candidate sees steps and format feedback, never a score.
        let (status, body) = daemon.get(&format!("/api/status/{}", alice.id), Some((&alice.id, &alice.token)));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"outcome\":\"ok\"") && !body.contains("\"score\""), "{body}");

        // Wrong tokens and other candidates' repositories are refused.
        let (status, _) = daemon.get(&format!("/api/status/{}", alice.id), Some((&alice.id, "wrong")));
        assert_eq!(status, 401);
        let (status, _) = daemon.get(&format!("/api/status/{}", bob.id), Some((&alice.id, &alice.token)));
        assert_eq!(status, 401, "alice read bob's status");
        let stolen = format!("http://{}:{}@127.0.0.1:{}/git/{}.git", bob.id, alice.token, daemon.port, bob.id);
        let (ok, out) = git(&work_path, &["clone", "-q", &stolen, "stolen"]);
        assert!(!ok, "alice cloned bob's repository: {out}");
        let wrong = format!("http://{}:nope@127.0.0.1:{}/git/{}.git", alice.id, daemon.port, alice.id);
        let (ok, _) = git(&work_path, &["clone", "-q", &wrong, "wrong"]);
        assert!(!ok, "a wrong token cloned");
        let (status, _) = daemon.get("/api/submissions", None);
        assert_eq!(status, 401, "the API needs an assessor");

        assert_eq!(daemon.get("/metrics", None).0, 401, "/metrics needs its token");
        let (status, _, metrics) = daemon.raw("GET", "/metrics", &format!("Authorization: Bearer {METRICS_TOKEN}\r\n"), "");
        assert_eq!(status, 200);
        for needle in ["takehome_queue_depth 0", "takehome_jobs{outcome=\"graded\"} 1", "takehome_step_duration_seconds_count{step=\"clean\"} 1"] {
            assert!(metrics.contains(needle), "metrics lack {needle:?}:\n{metrics}");
        }
        daemon.pid()
        // The daemon is stopped here (SIGTERM, then its exit).
    })
    .await
    .unwrap();
    // Nothing of the stopped daemon remains: not the job's, not the spare sandbox it opened after.
    assert_eq!(containers_with_label(&sandbox, &format!("takehome.pid={pid}")).await, 0, "containers outlived the daemon");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_after_the_deadline_is_refused_with_a_message() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_path, 1);
        let late = assign(&data_path, "penguins-cleaning", "late@example.com", &["--time-box", "3s", "--starts", "now"]);
        let repo = clone(&daemon, &late, &work_path);
        std::thread::sleep(Duration::from_secs(4));
        let (ok, out) = push_solution(&repo, None, "too late");
        assert!(!ok, "a late push was accepted: {out}");
        assert!(out.contains("takehome: the time box closed"), "git did not print why:\n{out}");
        let rows = daemon.api(&format!("/api/submissions?assignment={}", late.id));
        assert_eq!(rows.as_array().unwrap().len(), 0, "a refused push made a submission");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_over_the_size_cap_is_refused_with_a_message() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start_with(&data_path, 1, &[("TAKEHOME_MAX_PUSH", "64KiB")]);
        let big = assign(&data_path, "penguins-cleaning", "big@example.com", &[]);
        let repo = clone(&daemon, &big, &work_path);
        // 300 KiB that does not compress (xorshift noise).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..300 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(repo.join("weights.bin"), noise).unwrap();
        let (ok, out) = git(&repo, &["add", "weights.bin"]);
        assert!(ok, "{out}");
        let (ok, out) = push_solution(&repo, None, "with a big file");
        assert!(!ok, "an oversized push was accepted: {out}");
        assert!(out.contains("takehome: push refused: the push is larger than 64 KiB"), "git did not print why:\n{out}");
        let rows = daemon.api(&format!("/api/submissions?assignment={}", big.id));
        assert_eq!(rows.as_array().unwrap().len(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_running_job_and_queues_it_again() {
    let Some((sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    let started = tokio::task::spawn_blocking({
        let (data_path, work_path) = (data_path.clone(), work_path.clone());
        move || {
            let daemon = Daemon::start(&data_path, 1);
            let patient = assign(&data_path, "penguins-cleaning", "patient@example.com", &[]);
            let repo = clone(&daemon, &patient, &work_path);
            let (ok, out) = push_solution(&repo, Some("import time\n\ntime.sleep(60)\n"), "slow");
            assert!(ok, "{out}");
            daemon
        }
    })
    .await
    .unwrap();
    let label = format!("takehome.pid={}", started.pid());
    assert!(super::common::wait_until(Duration::from_secs(60), || async { containers_with_label(&sandbox, &label).await >= 2 }).await, "the job never started");
    let stopped_at = Instant::now();
    drop(started); // SIGTERM, then wait for the exit
    assert!(stopped_at.elapsed() < Duration::from_secs(25), "shutdown took {:?}", stopped_at.elapsed());
    assert_eq!(containers_with_label(&sandbox, &label).await, 0, "containers remain after SIGTERM");
    use takehome::store::Store;
    let store = takehome::store::SqliteStore::open(&data_path.join("takehome.sqlite")).unwrap();
    let rows = store.submissions(None, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("queued", 0), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_job_then_restart_grades_it_exactly_once() {
    let Some((sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    let first = tokio::task::spawn_blocking({
        let (data_path, work_path) = (data_path.clone(), work_path.clone());
        move || {
            let mut daemon = Daemon::start(&data_path, 1);
            let slow = assign(&data_path, "penguins-cleaning", "slow@example.com", &[]);
            let repo = clone(&daemon, &slow, &work_path);
            let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
            let body = format!("import time\n\ntime.sleep(6)\n{reference}");
            let (ok, out) = push_solution(&repo, Some(&body), "slow but right");
            assert!(ok, "{out}");
            let pid = daemon.pid();
            (daemon.child.id(), slow.id, pid, {
                // Hand the child over without the Drop's SIGTERM: this test kills it with -9.
                let child = std::mem::replace(&mut daemon.child, Command::new("true").spawn().unwrap());
                std::mem::forget(daemon);
                child
            })
        }
    })
    .await
    .unwrap();
    let (_, assignment, pid, mut child) = first;
    let label = format!("takehome.pid={pid}");
    let running = super::common::wait_until(Duration::from_secs(60), || async { containers_with_label(&sandbox, &label).await >= 2 }).await;
    assert!(running, "the job never started");
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let _ = child.wait();
    assert!(containers_with_label(&sandbox, &label).await > 0, "a killed daemon leaves its containers (the restart must clean them)");
    let data_again = data_path.clone();
    tokio::task::spawn_blocking(move || {
        let daemon = Daemon::start(&data_again, 1);
        let rows = daemon.wait_graded(&assignment, 1, Duration::from_secs(180));
        assert_eq!(rows.len(), 1, "exactly one submission: {rows:?}");
        assert_eq!(rows[0]["status"], "graded");
        assert_eq!(rows[0]["grade_status"], "graded", "{rows:?}");
        assert_eq!(rows[0]["attempts"], 1, "the interrupted attempt was given back: {rows:?}");
    })
    .await
    .unwrap();
    assert_eq!(containers_with_label(&sandbox, &label).await, 0, "the dead daemon's containers remain");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_50_pushes_is_all_graded_with_at_most_n_jobs_at_once() {
    let Some((_sandbox, data, work)) = setup().await else { return };
    let (data_path, work_path) = (data.path().to_path_buf(), work.path().to_path_buf());
    const WORKERS: usize = 2;
    let daemon = tokio::task::spawn_blocking({
        let data_path = data_path.clone();
        move || Daemon::start(&data_path, WORKERS)
    })
    .await
    .unwrap();
    let pid = daemon.pid();
    // Watch the engine while the burst runs: the step containers of this daemon (role
    // `step:clean`; holders, spares and lints have other roles) are the jobs running at once.
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watch = tokio::spawn({
        let most = most.clone();
        async move {
            let Some(sandbox) = docker().await else { return };
            loop {
                let now = sandbox.count_with_labels(&[&format!("takehome.pid={pid}"), "takehome.role=step:clean"]).await.unwrap_or(0);
                most.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let daemon = std::sync::Arc::new(daemon);
    let assignments: Vec<Assigned> = (0..10).map(|i| assign(&data_path, "penguins-cleaning", &format!("burst{i}@example.com"), &[])).collect();
    let started = Instant::now();
    let mut pushers = Vec::new();
    for assignment in assignments {
        let (daemon, work_path) = (daemon.clone(), work_path.clone());
        pushers.push(std::thread::spawn(move || {
            let repo = clone(&daemon, &assignment, &work_path);
            for n in 0..5 {
                let (ok, out) = push_solution(
                    &repo,
                    Some(&format!("# push {n}\n{}", std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap())),
                    &format!("push {n}"),
                );
                assert!(ok, "push {n} failed: {out}");
                assert!(out.contains(&format!("submission #{} accepted", n + 1)), "{out}");
            }
            assignment.id
        }));
    }
    let ids: Vec<String> = pushers.into_iter().map(|p| p.join().expect("a pusher")).collect();
    let daemon_for_wait = daemon.clone();
    let total = tokio::task::spawn_blocking(move || ids.iter().map(|id| daemon_for_wait.wait_graded(id, 5, Duration::from_secs(600)).len()).sum::<usize>())
        .await
        .unwrap();
    assert_eq!(total, 50, "every push graded, none lost");
    eprintln!("50 pushes graded in {:.0} s with {WORKERS} workers", started.elapsed().as_secs_f64());
    watch.abort();
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(most >= 1, "the watcher never saw a job running");
    assert!(most <= WORKERS, "{most} jobs ran steps at once with {WORKERS} workers");
    let all = daemon.api("/api/submissions");
    assert!(all.as_array().unwrap().iter().all(|r| r["grade_status"] == "graded"), "{all:#}");
}

pub(super) fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())))
}

/// Chromium, where installed; a missing one fails the run under TAKEHOME_REQUIRE_BROWSER=1.
pub(super) fn browser() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() && std::env::var("TAKEHOME_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("chromium is required (TAKEHOME_REQUIRE_BROWSER=1) but not installed");
    }
    found
}

/// Loads `url` in headless chromium: (DOM, console lines). A screenshot goes to `screenshot`.
pub(super) fn browse(binary: &Path, url: &str, screenshot: &Path) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &str| {
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read both pipes while it runs (a large DOM fills a pipe); a watchdog ends a hung browser.
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(90)).is_err() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                return true;
            }
            false
        });
        let output = child.wait_with_output().unwrap();
        let _ = done.send(());
        assert!(!watchdog.join().unwrap(), "chromium hung on {url}");
        output
    };
    let dom = run("--dump-dom");
    let console = String::from_utf8_lossy(&dom.stderr).lines().filter(|l| l.contains("CONSOLE")).map(String::from).collect();
    run(&format!("--screenshot={}", screenshot.display()));
    (String::from_utf8_lossy(&dom.stdout).into_owned(), console)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_ui_renders_in_a_headless_browser() {
    // In process (`TestApp`: no Docker, no binary): a push of the reference, its report frozen
    // from a real grading of the fixture; the pages as the router answers them, in chromium.
    let Some(binary) = browser() else {
        eprintln!("SKIPPED: no chromium on this machine");
        return;
    };
    let hash = takehome::secret::hash_password(PASSWORD);
    let app = super::test_app::TestApp::with(&repo_root(), &[("TAKEHOME_ASSESSOR_USER", "ada"), ("TAKEHOME_ASSESSOR_PASSWORD_HASH", &hash)]).await;
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let reference = std::fs::read(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/penguins-cleaning-reference.json")).unwrap();
    let grace = "a0grace";
    let (id, _) = app.graded_push(grace, &task, "grace@example.com", &[("clean.py", &reference)], "reference", &report).await;
    let artefacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();

    // The login page, then a login as the form sends it; a wrong password is refused.
    let (status, login) = app.get("/login", &[]).await;
    assert_eq!(status, 200, "{login}");
    let form = |body: &str| (vec![(header::CONTENT_TYPE, "application/x-www-form-urlencoded".to_string())], body.to_string());
    let (headers, body) = form(&format!("user=ada&password={}", super::test_app::form(PASSWORD)));
    let (status, answer, _) = app.request("POST", "/login", &headers, body).await;
    assert_eq!(status, 303, "{answer:?}");
    let cookie = answer.get(header::SET_COOKIE).and_then(|c| c.to_str().ok()).expect("a session cookie").split(';').next().unwrap().to_string();
    let (headers, body) = form("user=ada&password=nope");
    let (status, _, wrong) = app.request("POST", "/login", &headers, body).await;
    assert_eq!(status, 401, "{wrong}");

    let alias = takehome::review::alias(grace);
    let mut pages = vec![("login", login, vec!["action=\"/login\"".to_string(), "type=\"password\"".to_string()])];
    for (name, path, needles) in [
        ("dashboard", "/".to_string(), vec!["Assignments".to_string(), alias.clone(), "penguins-cleaning".into()]),
        (
            "report",
            format!("/submissions/{id}"),
            vec!["Clean the Palmer penguins field records".into(), "Cleaning: per-column accuracy".into(), "Add note".into()],
        ),
        ("compare", "/tasks/penguins-cleaning/compare".to_string(), vec!["candidates by score".into(), alias.clone()]),
    ] {
        pages.push((name, app.page(&cookie, &path).await, needles));
    }
    tokio::task::spawn_blocking(move || {
        for (name, html, needles) in pages {
            let file = artefacts.join(format!("ui-{name}.html"));
            std::fs::write(&file, &html).unwrap();
            let (dom, console) = browse(&binary, &format!("file://{}", file.display()), &artefacts.join(format!("ui-{name}.png")));
            for needle in needles {
                assert!(dom.contains(&needle), "{name}: the rendered page lacks {needle:?}");
            }
            assert!(console.is_empty(), "{name}: {console:?}");
        }
    })
    .await
    .unwrap();
    // Without the cookie, the pages send the browser to the login.
    let (status, headers, _) = app.request("GET", "/", &[], String::new()).await;
    assert!(status == 303 && headers.get(header::LOCATION).is_some_and(|l| l == "/login"), "{status} {headers:?}");
}
