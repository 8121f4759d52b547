//! Helpers for a real cluster on this machine (the cluster tests and `benches/cluster.rs` both
//! include this file): PostgreSQL from Debian's packages (a server of the test's own,
//! initdb into a scratch folder), `takehome serve --workers 0` on the host, and workers as
//! separate processes in network namespaces of their own (veth pairs), each reaching the store
//! and the server over its own link, so that a test can kill one (`kill -9`) or cut it off
//! (`ip link set … down`). Without PostgreSQL's programs the tests say SKIPPED, and fail under
//! `TAKEHOME_REQUIRE_POSTGRES=1` (as CI sets).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";
pub const METRICS_TOKEN: &str = "metrics-token-for-tests-0123";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const WORKER_TOKEN: &str = "worker-token-for-the-cluster-tests-0123456789";
/// Short leases, so that a lost worker's job moves on within seconds.
const LEASE_SECONDS: &str = "6";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary the tests run: this build's, or `TAKEHOME_BIN` (to measure a release build with the
/// same tests, e.g. `TAKEHOME_BIN=target/release/takehome cargo test --test it noninterference`).
pub fn takehome_binary() -> &'static Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| match std::env::var_os("TAKEHOME_BIN") {
        Some(path) => std::path::absolute(path).expect("TAKEHOME_BIN names a path"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_takehome")),
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs git with no prompts and a fixed identity; returns (success, stdout + stderr).
pub fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("git")
        .args(["-c", "user.name=Candidate", "-c", "user.email=candidate@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .output()
        .unwrap();
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

pub struct Assigned {
    pub id: String,
    pub token: String,
}

/// What the server and the workers share: the project root, short leases, the metrics token and
/// the log filter (`CLUSTER_LOG`, default `takehome=info`).
fn cluster_env(root: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("TAKEHOME_TASKS_ROOT", root.display().to_string()),
        ("TAKEHOME_LEASE_SECONDS", LEASE_SECONDS.to_string()),
        // A lease a fifth of the default's runs out on a loaded 2-core machine now and then (a
        // heartbeat late by a few seconds) besides the losses a test makes on purpose (a killed
        // worker, a restarted database): five attempts, so that a job is not given up for the
        // test's own short lease.
        ("TAKEHOME_RETRIES", "5".to_string()),
        ("TAKEHOME_METRICS_TOKEN", METRICS_TOKEN.to_string()),
        ("TAKEHOME_LOG", std::env::var("CLUSTER_LOG").unwrap_or_else(|_| "takehome=info".into())),
    ]
}

pub fn postgres_available() -> bool {
    if Path::new(PG_BIN).join("initdb").is_file() && Path::new("/usr/sbin/runuser").is_file() {
        return true;
    }
    if std::env::var("TAKEHOME_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (TAKEHOME_REQUIRE_POSTGRES=1) but {PG_BIN}/initdb is missing: apt-get install postgresql");
    }
    eprintln!("SKIPPED: this test needs PostgreSQL's server programs in {PG_BIN} (apt-get install postgresql)");
    false
}

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PostgreSQL server of the test's own: its data in a scratch folder, run as `postgres`.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    pub fn start(listen: &[&str]) -> Postgres {
        let dir = tempfile::Builder::new().prefix("takehome-pg-").tempdir().unwrap();
        run("chown", &["postgres:postgres", dir.path().to_str().unwrap()]);
        let data = dir.path().join("data");
        let initdb = format!("{PG_BIN}/initdb");
        run("runuser", &["-u", "postgres", "--", &initdb, "-D", data.to_str().unwrap(), "-U", "takehome", "--auth=trust", "--no-sync"]);
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("\nhost all all 10.0.0.0/8 trust\n");
        std::fs::write(&hba, rules).unwrap();
        let pg = Postgres { port: free_port(), dir };
        pg.ctl(&["start", "-w", "-t", "60", "-o", &pg.options(listen)]);
        pg
    }

    pub fn options(&self, listen: &[&str]) -> String {
        let mut addresses = vec!["127.0.0.1"];
        addresses.extend(listen);
        format!("-p {} -k {} -c listen_addresses='{}' -c fsync=off -c max_connections=200", self.port, self.dir.path().display(), addresses.join(","))
    }

    pub fn ctl(&self, args: &[&str]) {
        let ctl = format!("{PG_BIN}/pg_ctl");
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let mut all = vec!["-u", "postgres", "--", &ctl, "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        all.extend(args);
        run("runuser", &all);
    }

    pub fn url(&self, host: &str) -> String {
        format!("postgres://takehome@{host}:{}/postgres", self.port)
    }

    /// A restart, as an operator's or a crash's: every connection is cut.
    pub fn restart(&self, listen: &[&str]) {
        self.ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-o", &self.options(listen)]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let ctl = format!("{PG_BIN}/pg_ctl");
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser").args(["-u", "postgres", "--", &ctl, "-D", data.to_str().unwrap(), "stop", "-m", "immediate"]).output();
    }
}

/// A test host: a network namespace joined to this one by a veth pair.
pub struct Host {
    pub name: String,
    pub inside: String,
    /// Our side's address (where the host reaches the server and PostgreSQL).
    pub gateway: String,
    /// The host's own address.
    pub address: String,
}

impl Host {
    pub fn new() -> Host {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{}{n}", pid % 100_000);
        let (name, outside, inside) = (format!("th{tag}"), format!("tho{tag}"), format!("thi{tag}"));
        let (b, c) = (200 + pid % 50, n % 250 + 1);
        let (gateway, address) = (format!("10.{b}.{c}.1"), format!("10.{b}.{c}.2"));
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        run("ip", &["netns", "add", &name]);
        run("ip", &["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        run("ip", &["link", "set", &inside, "netns", &name]);
        run("ip", &["addr", "add", &format!("{gateway}/24"), "dev", &outside]);
        run("ip", &["link", "set", &outside, "up"]);
        run("ip", &["netns", "exec", &name, "ip", "addr", "add", &format!("{address}/24"), "dev", &inside]);
        run("ip", &["netns", "exec", &name, "ip", "link", "set", &inside, "up"]);
        run("ip", &["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Host { name, inside, gateway, address }
    }

    /// Cuts the host off (a partition) or joins it again.
    pub fn link(&self, up: bool) {
        run("ip", &["netns", "exec", &self.name, "ip", "link", "set", &self.inside, if up { "up" } else { "down" }]);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).output();
    }
}

/// A project root of the test's own: the shipped runner images and data sets, the shipped
/// penguins task and two copies of it under other ids (three tasks in all).
pub fn project_root(extra_tasks: &[&str]) -> tempfile::TempDir {
    let root = tempfile::Builder::new().prefix("takehome-cluster-").tempdir().unwrap();
    std::os::unix::fs::symlink(repo_root().join("runner-images"), root.path().join("runner-images")).unwrap();
    std::fs::create_dir_all(root.path().join("datasets")).unwrap();
    run("cp", &["-r", repo_root().join("datasets/penguins-cleaning").to_str().unwrap(), root.path().join("datasets/").to_str().unwrap()]);
    std::fs::create_dir_all(root.path().join("tasks")).unwrap();
    for id in std::iter::once(&"penguins-cleaning").chain(extra_tasks) {
        let dest = root.path().join("tasks").join(id);
        run("cp", &["-r", repo_root().join("tasks/penguins-cleaning").to_str().unwrap(), dest.to_str().unwrap()]);
        let spec = dest.join("task.yaml");
        let text = std::fs::read_to_string(&spec).unwrap().replacen("id: penguins-cleaning", &format!("id: {id}"), 1);
        std::fs::write(spec, text).unwrap();
    }
    root
}

/// `takehome serve --workers 0` on every address, its store in PostgreSQL.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data: tempfile::TempDir,
    pub database: String,
    pub root: PathBuf,
}

impl Server {
    /// The server alone (`--workers 0`), its store in `database`.
    pub fn start(database: &str, root: &Path) -> Server {
        Server::start_with(Some(database), 0, root)
    }

    /// The server with `workers` of its own, its store in `database` (default: its SQLite file).
    pub fn start_with(database: Option<&str>, workers: usize, root: &Path) -> Server {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let database = database.map(str::to_string).unwrap_or_else(|| format!("sqlite:{}", data.path().join("takehome.sqlite").display()));
        let child = Command::new(takehome_binary())
            .args(["serve", "--workers", &workers.to_string(), "--listen", &format!("0.0.0.0:{port}"), "--database", &database, "--data-dir"])
            .arg(data.path())
            .env("TAKEHOME_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("TAKEHOME_ASSESSOR_USER", "ada")
            .env("TAKEHOME_ASSESSOR_PASSWORD_HASH", takehome::secret::hash_password(PASSWORD))
            .env("TAKEHOME_WORKER_TOKEN_SHA256", takehome::secret::token_hash(WORKER_TOKEN))
            .envs(cluster_env(root))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server { child, port, data, database, root: root.to_path_buf() };
        assert!(wait_for(Duration::from_secs(60), || server.get("/healthz").0 == 200), "the server did not answer /healthz");
        server
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("127.0.0.1:{}", self.port), path, Some(("ada", PASSWORD)))
    }

    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn assign(&self, task: &str, candidate: &str) -> Assigned {
        let output = Command::new(takehome_binary())
            .args(["assign", "--task", task, "--candidate", candidate, "--starts", "now", "--database", &self.database, "--data-dir"])
            .arg(self.data.path())
            .env("TAKEHOME_TASKS_ROOT", &self.root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "assign: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap();
        Assigned { id: field("user:"), token: field("token:") }
    }

    pub fn clone_url(&self, a: &Assigned) -> String {
        format!("http://{}:{}@127.0.0.1:{}/git/{}.git", a.id, a.token, self.port, a.id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

pub fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("process {} did not stop within 30 s of SIGTERM: killed", child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// `takehome worker` inside `host`, reaching PostgreSQL and the server through its link.
pub struct Worker {
    pub child: Child,
    pub health: String,
    _data: tempfile::TempDir,
}

impl Worker {
    pub fn start(host: &Host, name: &str, pg: &Postgres, server: &Server, root: &Path, slots: usize) -> Worker {
        let data = tempfile::tempdir().unwrap();
        let health_port = free_port();
        // Only the network namespace is entered (`ip netns exec` would also remount /sys, hiding
        // the cgroup files a worker reads its steps' exact CPU and memory from).
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.name))
            .arg(takehome_binary())
            .args(["worker", "--name", name, "--slots", &slots.to_string(), "--memory", "8GiB"])
            .args(["--server", &format!("http://{}:{}", host.gateway, server.port)])
            .args(["--database", &pg.url(&host.gateway)])
            .args(["--health-listen", &format!("{}:{health_port}", host.address)])
            .arg("--data-dir")
            .arg(data.path())
            .env("TAKEHOME_WORKER_TOKEN", WORKER_TOKEN)
            .envs(cluster_env(root))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let worker = Worker { child, health: format!("{}:{health_port}", host.address), _data: data };
        assert!(wait_for(Duration::from_secs(60), || http_get(&worker.health, "/healthz", None).0 == 200), "worker {name} did not become healthy");
        worker
    }

    pub fn kill_9(&mut self) {
        run("kill", &["-9", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

pub fn http_get(address: &str, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(5)) else { return (0, String::new()) };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth.map(|(u, p)| format!("Authorization: Basic {}\r\n", base64(format!("{u}:{p}").as_bytes()))).unwrap_or_default();
    if stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Clones `a`, then commits and pushes `pushes` solutions one after another (each sleeps
/// `sleep` seconds, then cleans as the reference does); a push the server could not take is
/// pushed again, as a candidate would.
pub fn push_many(server: &Server, a: &Assigned, work: &Path, pushes: usize, sleep: f64) {
    let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    let dest = clone_into(server, a, work);
    for n in 0..pushes {
        push_body(&dest, &format!("import time\n\ntime.sleep({sleep})\n# push {n}\n{reference}"), n);
    }
}

/// Clones `a` into `work`; returns the checkout.
pub fn clone_into(server: &Server, a: &Assigned, work: &Path) -> PathBuf {
    let dest = work.join(&a.id);
    let (ok, out) = git(work, &["clone", "-q", &server.clone_url(a), dest.to_str().unwrap()]);
    assert!(ok, "clone: {out}");
    dest
}

/// Commits `body` as clean.py in the checkout `dest` and pushes it (again, as a candidate
/// would, when the server could not take it).
pub fn push_body(dest: &Path, body: &str, n: usize) {
    {
        std::fs::write(dest.join("clean.py"), body).unwrap();
        let (ok, out) = git(dest, &["commit", "-q", "-am", &format!("push {n}")]);
        assert!(ok, "{out}");
        let mut tries = 0;
        loop {
            let (ok, out) = git(dest, &["push", "-q", "origin", "main"]);
            if ok {
                break;
            }
            tries += 1;
            assert!(tries < 5, "push {n} of {} failed 5 times: {out}", dest.display());
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

pub fn submissions(server: &Server) -> Vec<serde_json::Value> {
    server.api("/api/submissions").as_array().unwrap().clone()
}

pub fn all_graded(server: &Server, expected: usize, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = submissions(server);
        if rows.len() >= expected && rows.iter().all(|r| r["status"] == "graded" || r["status"] == "infrastructure_error") {
            return rows;
        }
        if Instant::now() > deadline {
            let open: Vec<_> = rows.iter().filter(|r| r["status"] != "graded").collect();
            panic!("{} of {expected} submissions, not all graded within {limit:?}; open: {open:?}", rows.len());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The instance id a worker named `name` runs as now.
pub fn instance_of(server: &Server, name: &str) -> String {
    let workers = server.api("/api/workers");
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name && w["alive"] == true)
        .map(|w| w["instance"].as_str().unwrap().to_string())
        .unwrap()
}
