//! The cluster's coordination, measured on this machine (root, Docker, PostgreSQL's programs,
//! the python runner image built):
//! - jobs per minute with 1, 2 and 3 workers (one slot each, each in a network namespace of its
//!   own) on steps that *wait* (sleep) rather than compute, so that 2 cores measure coordination,
//!   against the ideal (N × the rate of one worker);
//! - push-to-claim latency: a push answered, then the job `running` (polled every 10 ms), for a
//!   worker woken by PostgreSQL's NOTIFY against `serve`'s own worker on SQLite;
//! - PostgreSQL connections each worker holds (from `pg_stat_activity`, by its address).
//!
//!     cargo bench --profile dev --bench cluster -- [JOBS_PER_WORKER] [STEP_SECONDS] [LATENCY_ROUNDS]

#[path = "../tests/it/cluster_support.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds from a push's answer until its job is `running`, for `rounds` pushes one at a time.
fn push_to_claim(server: &Server, work: &std::path::Path, rounds: usize) -> Vec<f64> {
    let assignment = server.assign("penguins-cleaning", "latency@example.com");
    let dest = clone_into(server, &assignment, work);
    let mut seconds = Vec::new();
    for n in 0..rounds {
        push_body(&dest, &format!("# {n}\n"), n);
        let pushed = Instant::now();
        let claimed = loop {
            let rows = server.api(&format!("/api/submissions?assignment={}", assignment.id));
            let newest = &rows.as_array().unwrap()[0];
            if newest["status"] != "queued" {
                break pushed.elapsed().as_secs_f64();
            }
            assert!(pushed.elapsed() < Duration::from_secs(30), "never claimed");
            std::thread::sleep(Duration::from_millis(10));
        };
        seconds.push(claimed);
        // Let it finish before the next push, so that each push finds an idle worker.
        all_graded(server, n + 1, Duration::from_secs(120));
    }
    seconds
}

fn psql(pg: &Postgres, sql: &str) -> String {
    let output = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "takehome", "-d", "postgres", "-Atc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let per_worker: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(6);
    let step: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4.0);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(7);
    if std::env::var_os("CLUSTER_LOG").is_none() {
        std::env::set_var("CLUSTER_LOG", "takehome=warn");
    }
    assert!(postgres_available(), "PostgreSQL's programs are needed");
    let hosts: Vec<Host> = (0..3).map(|_| Host::new()).collect();
    let listen: Vec<&str> = hosts.iter().map(|h| h.gateway.as_str()).collect();
    let pg = Postgres::start(&listen);
    let root = project_root(&[]);
    let work = tempfile::tempdir().unwrap();
    println!("cluster bench: {per_worker} jobs per worker, steps sleep {step} s; {rounds} latency rounds");

    // Throughput: the jobs are queued with no worker running, then N workers start at once.
    let server = Server::start(&pg.url("127.0.0.1"), root.path());
    let mut rates = Vec::new();
    let mut done = 0;
    for n in 1..=3 {
        let jobs = per_worker * n;
        let assignments: Vec<Assigned> = (0..n).map(|i| server.assign("penguins-cleaning", &format!("t{n}-{i}@example.com"))).collect();
        for assignment in &assignments {
            let dest = clone_into(&server, assignment, work.path());
            for k in 0..per_worker {
                push_body(&dest, &format!("import time\n\ntime.sleep({step})\n# {k}\n"), k);
            }
        }
        let started = Instant::now();
        let workers: Vec<Worker> =
            hosts.iter().take(n).enumerate().map(|(i, h)| Worker::start(h, &format!("bench{n}-{i}"), &pg, &server, root.path(), 1)).collect();
        all_graded(&server, done + jobs, Duration::from_secs(900));
        let seconds = started.elapsed().as_secs_f64();
        done += jobs;
        let per_minute = jobs as f64 * 60.0 / seconds;
        rates.push(per_minute);
        let connections: Vec<String> =
            hosts.iter().take(n).map(|h| psql(&pg, &format!("SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{}'", h.address))).collect();
        println!(
            "{n} worker(s): {jobs} jobs in {seconds:.1} s = {per_minute:.1} jobs/min; ideal {:.1} ({:.2} of ideal); PostgreSQL connections per worker: {}",
            rates[0] * n as f64,
            per_minute / (rates[0] * n as f64),
            connections.join(", ")
        );
        drop(workers);
    }
    drop(server);

    // Push-to-claim: a worker in its own namespace woken by NOTIFY, against serve's own on SQLite.
    let server = Server::start(&pg.url("127.0.0.1"), root.path());
    let worker = Worker::start(&hosts[0], "latency", &pg, &server, root.path(), 1);
    let postgres = push_to_claim(&server, work.path(), rounds);
    drop(worker);
    drop(server);
    let sqlite_server = Server::start_with(None, 1, root.path());
    let sqlite = push_to_claim(&sqlite_server, work.path(), rounds);
    drop(sqlite_server);
    println!(
        "push-to-claim: PostgreSQL + NOTIFY median {:.0} ms {:?}; SQLite, one process median {:.0} ms {:?}",
        median(postgres.clone()) * 1000.0,
        postgres.iter().map(|s| (s * 1000.0).round() as u64).collect::<Vec<_>>(),
        median(sqlite.clone()) * 1000.0,
        sqlite.iter().map(|s| (s * 1000.0).round() as u64).collect::<Vec<_>>()
    );
}
