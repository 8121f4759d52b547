//! The daemon under load, against a peer measured in the same run:
//! - push-to-report latency of a trivial submission against the sum of its steps' own container
//!   time (from the report);
//! - jobs per minute for bursts at N workers against the same step run one by one with
//!   `docker run` (same image, same hardening flags, same input), in ROUNDS rounds that alternate
//!   which side goes first (ABBA), with each side's busy CPU per job;
//! - the daemon's resident memory idle and at its peak under the burst.
//!
//!     cargo bench --profile dev --bench daemon -- [PUSHES] [WORKERS] [ROUNDS]
//!
//! The daemon is `TAKEHOME_BIN`, else `target/release/takehome` if built, else the debug build.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `TAKEHOME_BIN`, else the release binary when there is one (what ships), else the debug one.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TAKEHOME_BIN") {
        return PathBuf::from(path);
    }
    let release = root().join("target/release/takehome");
    if release.exists() {
        release
    } else {
        root().join("target/debug/takehome")
    }
}

/// CPU seconds of process `pid` and of its children it has waited for (`/proc/<pid>/stat`).
fn process_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    // After the name, from field 3 (state): utime, stime, cutime, cstime are fields 14 to 17.
    fields.get(11..15).map(|t| t.iter().filter_map(|f| f.parse::<f64>().ok()).sum::<f64>() / 100.0).unwrap_or(0.0)
}

/// The first process whose command name is `name`.
fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        (std::fs::read_to_string(entry.path().join("comm")).ok()?.trim() == name).then_some(pid)
    })
}

fn get(port: u16, path: &str, auth: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {auth}\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// A Basic authorization's credentials (base64 of `user:password`).
fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { table[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The daemon, stopped however the bench ends (a failed assertion included).
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// The machine's busy CPU time so far, all processes and cores (from `/proc/stat`).
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / 100.0
}

/// The peer: the graded step of `penguins-cleaning` with a bare `docker run`, the same image,
/// input and hardening flags as the daemon's step.
fn docker_run(image: &str) {
    let input = root().join("datasets/penguins-cleaning/hidden/input");
    let submission = root().join("tasks/penguins-cleaning/fixtures/reference");
    let status = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "10001:10001",
            "--memory",
            "1g",
            "--memory-swap",
            "1g",
            "--cpus",
            "1",
            "--pids-limit",
            "256",
            "--tmpfs",
            "/tmp:size=256m",
            "--tmpfs",
            "/output:size=128m,uid=10001",
            "--init",
            "-w",
            "/submission",
        ])
        .arg(format!("--volume={}:/submission:ro", submission.display()))
        .arg(format!("--volume={}:/data/input:ro", input.display()))
        .args([image, "python", "clean.py"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "docker run: {status}");
}

/// Busy CPU seconds so far: the whole machine, the daemon (with the git processes it waited
/// for), dockerd and containerd.
fn cpu_snapshot(daemon: u32, dockerd: Option<u32>, containerd: Option<u32>) -> [f64; 4] {
    [busy_seconds(), process_seconds(daemon), dockerd.map_or(0.0, process_seconds), containerd.map_or(0.0, process_seconds)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let pushes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let workers: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let rounds: usize = std::env::args().nth(3).and_then(|a| a.parse().ok()).unwrap_or(4);
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let password = "bench password";
    eprintln!("daemon: {}", binary().display());
    let daemon = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string(), "--data-dir"])
        .arg(data.path())
        .env("TAKEHOME_TASKS_ROOT", root())
        .env("TAKEHOME_ASSESSOR_USER", "ada")
        .env("TAKEHOME_ASSESSOR_PASSWORD_HASH", takehome::secret::hash_password(password))
        // One assignment pushes in bursts of 20 per round: no per-hour cap on its grading.
        .env("TAKEHOME_GRADED_PUSHES_PER_HOUR", "0")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = KillOnDrop(daemon);
    let auth = basic("ada", password);
    let started = Instant::now();
    while get(port, "/healthz", &auth).trim() != "ok" {
        assert!(started.elapsed() < Duration::from_secs(60), "the daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle_kib = rss_kib(daemon.id());

    let assign = Command::new(binary())
        .args(["assign", "--task", "penguins-cleaning", "--candidate", "bench@example.com", "--data-dir"])
        .arg(data.path())
        .env("TAKEHOME_TASKS_ROOT", root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&assign.stdout).into_owned();
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_string();
    let (id, token) = (field("user:"), field("token:"));
    let repo = work.path().join("repo");
    git(work.path(), &["clone", "-q", &format!("http://{id}:{token}@127.0.0.1:{port}/git/{id}.git"), "repo"]);
    let reference = std::fs::read_to_string(root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let graded = || -> Vec<serde_json::Value> {
        let body = get(port, &format!("/api/submissions?assignment={id}"), &auth);
        serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    };
    let push = |n: usize| {
        std::fs::write(repo.join("clean.py"), format!("# {n}\n{reference}")).unwrap();
        git(&repo, &["commit", "-q", "-am", &format!("push {n}")]);
        git(&repo, &["push", "-q", "origin", "main"]);
    };

    // 1. Latency, one push at a time.
    let (mut latency, mut container) = (Vec::new(), Vec::new());
    for n in 0..10 {
        let t = Instant::now();
        push(n);
        loop {
            let rows = graded();
            if rows.len() == n + 1 && rows.iter().all(|r| r["status"] == "graded") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        latency.push(t.elapsed().as_secs_f64());
        let newest = graded()[0]["id"].as_i64().unwrap();
        let detail: serde_json::Value = serde_json::from_str(&get(port, &format!("/api/submissions/{newest}"), &auth)).unwrap();
        container.push(detail["report"]["steps"].as_array().unwrap().iter().map(|s| s["wall_seconds"].as_f64().unwrap()).sum::<f64>());
    }

    // Each push also has a public dry run on the task's public data, run when the worker is quiet.
    let candidate = basic(&id, &token);
    let dry_runs_done = |submissions: usize| {
        let t = Instant::now();
        loop {
            let body = get(port, &format!("/api/status/{id}"), &candidate);
            let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let rows = view["submissions"].as_array().cloned().unwrap_or_default();
            if rows.len() == submissions && rows.iter().all(|r| !r["public_run"].is_null()) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(900), "the public dry runs did not end: {view}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The latency pushes' dry runs end before the bursts start.
    dry_runs_done(10);

    // 2. Throughput, in rounds: a burst of pushes through the daemon and the same step run one by
    // one with `docker run`, alternating which goes first (ABBA), so that the machine's drift over
    // the run falls on both sides alike. Each side's busy CPU time (all processes, /proc/stat) is
    // taken too, per job.
    let image =
        String::from_utf8_lossy(&Command::new("docker").args(["images", "--format", "{{.Repository}}:{{.Tag}}", "takehome/python"]).output().unwrap().stdout)
            .lines()
            .next()
            .unwrap()
            .to_string();
    let mut peak_kib = idle_kib;
    let (mut bursts, mut peers, mut burst_cpu, mut peer_cpu, mut public) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (dockerd, containerd) = (pid_of("dockerd"), pid_of("containerd"));
    let snapshot = || cpu_snapshot(daemon.id(), dockerd, containerd);
    let per_job = |before: [f64; 4]| -> [f64; 4] {
        let after = snapshot();
        std::array::from_fn(|i| (after[i] - before[i]) / pushes as f64)
    };
    let mut pushed = 0;
    for round in 0..rounds {
        let daemon_first = round % 4 == 0 || round % 4 == 3;
        for side in [daemon_first, !daemon_first] {
            if side {
                let before = graded().len();
                let (t, cpu) = (Instant::now(), snapshot());
                for _ in 0..pushes {
                    push(100 + pushed);
                    pushed += 1;
                    peak_kib = peak_kib.max(rss_kib(daemon.id()));
                }
                loop {
                    peak_kib = peak_kib.max(rss_kib(daemon.id()));
                    let rows = graded();
                    if rows.len() == before + pushes && rows.iter().all(|r| r["status"] == "graded") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                bursts.push(t.elapsed().as_secs_f64());
                burst_cpu.push(per_job(cpu));
                // Each push also has a public dry run, run when the slot is quiet (after the
                // burst). Wait for them, so that the peer has the machine to itself.
                let t_public = Instant::now();
                dry_runs_done(before + pushes);
                public.push(t_public.elapsed().as_secs_f64());
            } else {
                let (t, cpu) = (Instant::now(), snapshot());
                for _ in 0..pushes {
                    docker_run(&image);
                }
                peers.push(t.elapsed().as_secs_f64());
                peer_cpu.push(per_job(cpu));
            }
        }
        eprintln!("round {}: daemon {:.1} s, docker run {:.1} s, ratio {:.2}", round + 1, bursts[round], peers[round], peers[round] / bursts[round]);
    }
    drop(daemon);

    println!(
        "push-to-report latency (median of 10): {:.2} s; the steps' own container time: {:.2} s; ratio {:.1}",
        median(latency.clone()),
        median(container.clone()),
        median(latency) / median(container)
    );
    let jobs_per_min = |seconds: &[f64]| seconds.iter().map(|s| pushes as f64 * 60.0 / s).map(|j| format!("{j:.1}")).collect::<Vec<_>>().join(", ");
    let ratios: Vec<f64> = peers.iter().zip(&bursts).map(|(p, b)| p / b).collect();
    println!("{rounds} rounds of {pushes} jobs at {workers} worker(s), daemon and docker run alternating (ABBA):");
    println!("  daemon, jobs/min: {} (then the public dry runs: {:.0} s median)", jobs_per_min(&bursts), median(public));
    println!("  docker run one by one, jobs/min: {}", jobs_per_min(&peers));
    println!(
        "  throughput daemon / docker run per round: {}; median {:.2}; all rounds together {:.2}",
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        median(ratios.clone()),
        peers.iter().sum::<f64>() / bursts.iter().sum::<f64>()
    );
    let part = |cpu: &[[f64; 4]], i: usize| median(cpu.iter().map(|c| c[i]).collect());
    println!(
        "  busy CPU per job (medians): daemon side {:.2} s (takehome and its git {:.2}, dockerd {:.2}, containerd {:.2}, the rest {:.2}; the pushes' client included)",
        part(&burst_cpu, 0),
        part(&burst_cpu, 1),
        part(&burst_cpu, 2),
        part(&burst_cpu, 3),
        part(&burst_cpu, 0) - part(&burst_cpu, 1) - part(&burst_cpu, 2) - part(&burst_cpu, 3)
    );
    println!(
        "                              docker run side {:.2} s (dockerd {:.2}, containerd {:.2}, the rest {:.2})",
        part(&peer_cpu, 0),
        part(&peer_cpu, 2),
        part(&peer_cpu, 3),
        part(&peer_cpu, 0) - part(&peer_cpu, 2) - part(&peer_cpu, 3)
    );
    println!("daemon memory: idle {:.1} MiB, peak under the burst {:.1} MiB", idle_kib as f64 / 1024.0, peak_kib as f64 / 1024.0);
}
