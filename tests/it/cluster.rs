//! A real cluster on this machine: PostgreSQL from Debian's packages (a server of the test's own,
//! initdb into a scratch folder), `takehome serve --workers 0` on the host, and workers as
//! separate processes in network namespaces of their own (veth pairs), each reaching the store
//! and the server over its own link, so that a test can kill one (`kill -9`) or cut it off
//! (`ip link set … down`). Without PostgreSQL's programs the tests say SKIPPED, and fail under
//! `TAKEHOME_REQUIRE_POSTGRES=1` (as CI sets).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::common::{docker, python_image, repo_root, takehome_binary};
use super::serve::{base64, free_port, git, Assigned, PASSWORD};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const WORKER_TOKEN: &str = "worker-token-for-the-cluster-tests-0123456789";
/// Short leases, so that a lost worker's job moves on within seconds.
const LEASE_SECONDS: &str = "6";

fn postgres_available() -> bool {
    if Path::new(PG_BIN).join("initdb").is_file() && Path::new("/usr/sbin/runuser").is_file() {
        return true;
    }
    if std::env::var("TAKEHOME_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (TAKEHOME_REQUIRE_POSTGRES=1) but {PG_BIN}/initdb is missing: apt-get install postgresql");
    }
    eprintln!("SKIPPED: this test needs PostgreSQL's server programs in {PG_BIN} (apt-get install postgresql)");
    false
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PostgreSQL server of the test's own: its data in a scratch folder, run as `postgres`.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start(listen: &[&str]) -> Postgres {
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

    fn options(&self, listen: &[&str]) -> String {
        let mut addresses = vec!["127.0.0.1"];
        addresses.extend(listen);
        format!("-p {} -k {} -c listen_addresses='{}' -c fsync=off -c max_connections=200", self.port, self.dir.path().display(), addresses.join(","))
    }

    fn ctl(&self, args: &[&str]) {
        let ctl = format!("{PG_BIN}/pg_ctl");
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let mut all = vec!["-u", "postgres", "--", &ctl, "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        all.extend(args);
        run("runuser", &all);
    }

    fn url(&self, host: &str) -> String {
        format!("postgres://takehome@{host}:{}/postgres", self.port)
    }

    /// A restart, as an operator's or a crash's: every connection is cut.
    fn restart(&self, listen: &[&str]) {
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
struct Host {
    name: String,
    inside: String,
    /// Our side's address (where the host reaches the server and PostgreSQL).
    gateway: String,
    /// The host's own address.
    address: String,
}

impl Host {
    fn new() -> Host {
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
    fn link(&self, up: bool) {
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
fn project_root(extra_tasks: &[&str]) -> tempfile::TempDir {
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
struct Server {
    child: Child,
    port: u16,
    data: tempfile::TempDir,
    database: String,
    root: PathBuf,
}

impl Server {
    fn start(database: &str, root: &Path) -> Server {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(takehome_binary())
            .args(["serve", "--workers", "0", "--listen", &format!("0.0.0.0:{port}"), "--database", database, "--data-dir"])
            .arg(data.path())
            .env("TAKEHOME_TASKS_ROOT", root)
            .env("TAKEHOME_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("TAKEHOME_ASSESSOR_USER", "ada")
            .env("TAKEHOME_ASSESSOR_PASSWORD_HASH", takehome::secret::hash_password(PASSWORD))
            .env("TAKEHOME_WORKER_TOKEN_SHA256", takehome::secret::token_hash(WORKER_TOKEN))
            .env("TAKEHOME_LEASE_SECONDS", LEASE_SECONDS)
            .env("TAKEHOME_LOG", "takehome=info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Server { child, port, data, database: database.to_string(), root: root.to_path_buf() };
        assert!(wait_for(Duration::from_secs(60), || server.get("/healthz").0 == 200), "the server did not answer /healthz");
        server
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("127.0.0.1:{}", self.port), path, Some(("ada", PASSWORD)))
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn assign(&self, task: &str, candidate: &str) -> Assigned {
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

    fn clone_url(&self, a: &Assigned) -> String {
        format!("http://{}:{}@127.0.0.1:{}/git/{}.git", a.id, a.token, self.port, a.id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `takehome worker` inside `host`, reaching PostgreSQL and the server through its link.
struct Worker {
    child: Child,
    health: String,
    _data: tempfile::TempDir,
}

impl Worker {
    fn start(host: &Host, name: &str, pg: &Postgres, server: &Server, root: &Path, slots: usize) -> Worker {
        let data = tempfile::tempdir().unwrap();
        let health_port = free_port();
        let child = Command::new("ip")
            .args(["netns", "exec", &host.name])
            .arg(takehome_binary())
            .args(["worker", "--name", name, "--slots", &slots.to_string(), "--memory", "8GiB"])
            .args(["--server", &format!("http://{}:{}", host.gateway, server.port)])
            .args(["--database", &pg.url(&host.gateway)])
            .args(["--health-listen", &format!("{}:{health_port}", host.address)])
            .arg("--data-dir")
            .arg(data.path())
            .env("TAKEHOME_TASKS_ROOT", root)
            .env("TAKEHOME_WORKER_TOKEN", WORKER_TOKEN)
            .env("TAKEHOME_LEASE_SECONDS", LEASE_SECONDS)
            .env("TAKEHOME_LOG", "takehome=info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let worker = Worker { child, health: format!("{}:{health_port}", host.address), _data: data };
        assert!(wait_for(Duration::from_secs(60), || http_get(&worker.health, "/healthz", None).0 == 200), "worker {name} did not become healthy");
        worker
    }

    fn kill_9(&mut self) {
        run("kill", &["-9", &self.child.id().to_string()]);
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn http_get(address: &str, path: &str, auth: Option<(&str, &str)>) -> (u16, String) {
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
fn push_many(server: &Server, a: &Assigned, work: &Path, pushes: usize, sleep: f64) {
    let dest = work.join(&a.id);
    let (ok, out) = git(work, &["clone", "-q", &server.clone_url(a), dest.to_str().unwrap()]);
    assert!(ok, "clone: {out}");
    let reference = std::fs::read_to_string(repo_root().join("tasks/penguins-cleaning/fixtures/reference/clean.py")).unwrap();
    for n in 0..pushes {
        std::fs::write(dest.join("clean.py"), format!("import time\n\ntime.sleep({sleep})\n# push {n}\n{reference}")).unwrap();
        let (ok, out) = git(&dest, &["commit", "-q", "-am", &format!("push {n}")]);
        assert!(ok, "{out}");
        let mut tries = 0;
        loop {
            let (ok, out) = git(&dest, &["push", "-q", "origin", "main"]);
            if ok {
                break;
            }
            tries += 1;
            assert!(tries < 5, "push {n} of {} failed 5 times: {out}", a.id);
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn submissions(server: &Server) -> Vec<serde_json::Value> {
    server.api("/api/submissions").as_array().unwrap().clone()
}

fn all_graded(server: &Server, expected: usize, limit: Duration) -> Vec<serde_json::Value> {
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
fn instance_of(server: &Server, name: &str) -> String {
    let workers = server.api("/api/workers");
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name && w["alive"] == true)
        .map(|w| w["instance"].as_str().unwrap().to_string())
        .unwrap()
}

async fn step_containers(sandbox: &takehome::sandbox::DockerSandbox, instance: &str) -> usize {
    sandbox.count_with_labels(&[&format!("takehome.instance={instance}"), "takehome.role=step:clean"]).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_across_three_tasks_survives_a_killed_worker_and_a_database_restart() {
    if !postgres_available() {
        return;
    }
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let (a, b) = (Host::new(), Host::new());
    let listen = [a.gateway.as_str(), b.gateway.as_str()];
    let pg = Postgres::start(&listen);
    let root = project_root(&["penguins-b", "penguins-c"]);
    let server = Server::start(&pg.url("127.0.0.1"), root.path());
    const SLOTS: usize = 2;
    let mut wa = Worker::start(&a, "wa", &pg, &server, root.path(), SLOTS);
    let wb = Worker::start(&b, "wb", &pg, &server, root.path(), SLOTS);
    let (first_a, inst_b) = (instance_of(&server, "wa"), instance_of(&server, "wb"));

    // Watch the engine: step containers of all workers at once never exceed the slots.
    let most = std::sync::Arc::new(AtomicU32::new(0));
    let instances = std::sync::Arc::new(std::sync::Mutex::new(vec![first_a.clone(), inst_b.clone()]));
    let watching = tokio::spawn({
        let (most, instances, sandbox) = (most.clone(), instances.clone(), sandbox.clone());
        async move {
            loop {
                let now = instances.lock().unwrap().clone();
                let mut total = 0;
                for instance in &now {
                    total += step_containers(&sandbox, instance).await;
                }
                most.fetch_max(total as u32, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });

    // 100 pushes: 4 candidates on each of 3 tasks, 8 or 9 pushes each, all at once.
    let work = tempfile::tempdir().unwrap();
    let tasks = ["penguins-cleaning", "penguins-b", "penguins-c"];
    let assignments: Vec<Assigned> = (0..12).map(|i| server.assign(tasks[i % 3], &format!("c{i}@example.com"))).collect();
    let server = std::sync::Arc::new(server);
    let mut pushers = Vec::new();
    for (i, assignment) in assignments.into_iter().enumerate() {
        let (server, work) = (server.clone(), work.path().to_path_buf());
        let pushes = if i < 4 { 9 } else { 8 };
        pushers.push(std::thread::spawn(move || push_many(&server, &assignment, &work, pushes, 1.5)));
    }

    // Mid-burst: kill -9 worker a while it runs a step, and start it again on the same host.
    let running = super::common::wait_until(Duration::from_secs(120), || step_containers(&sandbox, &first_a).map(|n| n > 0)).await;
    assert!(running, "worker a never ran a step");
    tokio::task::block_in_place(|| wa.kill_9());
    assert!(
        step_containers(&sandbox, &first_a).await + sandbox.count_labelled(&format!("takehome.instance={first_a}")).await.unwrap() > 0,
        "the killed worker left nothing to clean"
    );
    let server_for_a = server.clone();
    wa = tokio::task::block_in_place(|| Worker::start(&a, "wa", &pg, &server_for_a, root.path(), SLOTS));
    let second_a = tokio::task::block_in_place(|| instance_of(&server, "wa"));
    assert_ne!(second_a, first_a, "a restart is a new instance");
    instances.lock().unwrap().push(second_a.clone());
    let cleaned = super::common::wait_until(Duration::from_secs(30), || {
        let sandbox = sandbox.clone();
        let label = format!("takehome.instance={first_a}");
        async move { sandbox.count_labelled(&label).await.unwrap_or(1) == 0 }
    })
    .await;
    assert!(cleaned, "the dead instance's containers remain after its worker started again");

    // Then PostgreSQL restarts under everyone's feet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| pg.restart(&listen));

    for pusher in pushers {
        tokio::task::block_in_place(|| pusher.join().unwrap());
    }
    let rows = tokio::task::block_in_place(|| all_graded(&server, 100, Duration::from_secs(900)));
    watching.abort();
    assert_eq!(rows.len(), 100, "every push is one submission, none lost, none doubled");
    for row in &rows {
        assert_eq!((row["status"].as_str(), row["grade_status"].as_str()), (Some("graded"), Some("graded")), "{row}");
    }
    let graders: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r["worker"].as_str()).collect();
    assert!(graders.len() >= 2, "the burst was shared by the workers: {graders:?}");
    assert!(most.load(Ordering::Relaxed) as usize <= 2 * SLOTS, "{} steps ran at once on {} slots", most.load(Ordering::Relaxed), 2 * SLOTS);
    drop(wa);
    drop(wb);
    for instance in [&first_a, &second_a, &inst_b] {
        assert_eq!(sandbox.count_labelled(&format!("takehome.instance={instance}")).await.unwrap(), 0, "containers of {instance} remain");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_worker_loses_its_job_and_a_stale_copy_never_grades() {
    if !postgres_available() {
        return;
    }
    let Some(sandbox) = docker().await else { return };
    python_image(&sandbox).await;
    let (a, b, c) = (Host::new(), Host::new(), Host::new());
    let listen = [a.gateway.as_str(), b.gateway.as_str(), c.gateway.as_str()];
    let pg = Postgres::start(&listen);
    let root = project_root(&[]);
    let server = Server::start(&pg.url("127.0.0.1"), root.path());

    // A worker whose copy of the data set differs from the server's never grades.
    let stale_root = project_root(&[]);
    let truth = stale_root.path().join("datasets/penguins-cleaning/hidden/clean.csv");
    let text = std::fs::read_to_string(&truth).unwrap();
    std::fs::write(&truth, format!("{text}\n")).unwrap();
    let stale = Worker::start(&c, "wc", &pg, &server, stale_root.path(), 1);
    let work = tempfile::tempdir().unwrap();
    let first = server.assign("penguins-cleaning", "first@example.com");
    tokio::task::block_in_place(|| push_many(&server, &first, work.path(), 1, 20.0));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows = submissions(&server);
    assert_eq!(rows[0]["status"], "queued", "the stale worker took the job: {rows:?}");
    let health = server.api("/api/workers");
    let wc = health["workers"].as_array().unwrap().iter().find(|w| w["name"] == "wc").unwrap().clone();
    assert!(wc["health"].as_str().unwrap().contains("data set digest"), "the stale worker says why it leaves the job: {wc}");

    // Worker a takes it, and is cut off mid-job: its lease runs out, worker b grades it.
    let wa = Worker::start(&a, "wa", &pg, &server, root.path(), 1);
    let inst_a = instance_of(&server, "wa");
    let started = super::common::wait_until(Duration::from_secs(60), || step_containers(&sandbox, &inst_a).map(|n| n > 0)).await;
    assert!(started, "worker a never started the job");
    a.link(false);
    let wb = Worker::start(&b, "wb", &pg, &server, root.path(), 1);
    let inst_b = instance_of(&server, "wb");
    let rows = tokio::task::block_in_place(|| all_graded(&server, 1, Duration::from_secs(180)));
    assert_eq!((rows[0]["grade_status"].as_str(), rows[0]["worker"].as_str()), (Some("graded"), Some(inst_b.as_str())), "{rows:?}");
    assert_eq!(rows[0]["attempts"], 2, "the lost attempt counts: {rows:?}");
    // The cut-off worker stopped its own step when its lease ran out.
    let stopped = super::common::wait_until(Duration::from_secs(30), || step_containers(&sandbox, &inst_a).map(|n| n == 0)).await;
    assert!(stopped, "the cut-off worker's step still runs");
    // Back on the network, its claim is worth nothing: the store refuses a result under it.
    a.link(true);
    let store = takehome::store::PostgresStore::connect(&pg.url("127.0.0.1")).await.unwrap();
    let id = rows[0]["id"].as_i64().unwrap();
    let late = takehome::store::Fence { submission: id, instance: inst_a.clone(), attempt: 1 };
    use takehome::store::Store;
    let refused = store.finish(&late, takehome::report::Status::Graded, 100.0, "{}", 0).await;
    assert!(matches!(refused, Err(takehome::store::StoreError::Fenced { .. })), "{refused:?}");
    let (row, _) = store.submission(id).await.unwrap().unwrap();
    assert_eq!(row.worker.as_deref(), Some(inst_b.as_str()), "b's result stands");
    drop((wa, wb, stale));
}

trait MapFuture: std::future::Future + Sized {
    fn map<T>(self, f: impl FnOnce(Self::Output) -> T) -> impl std::future::Future<Output = T> {
        async move { f(self.await) }
    }
}

impl<F: std::future::Future> MapFuture for F {}
