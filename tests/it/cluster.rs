//! A real cluster on this machine: PostgreSQL from Debian's packages (a server of the test's own,
//! initdb into a scratch folder), `takehome serve --workers 0` on the host, and workers as
//! separate processes in network namespaces of their own (veth pairs), each reaching the store
//! and the server over its own link, so that a test can kill one (`kill -9`) or cut it off
//! (`ip link set … down`). Without PostgreSQL's programs the tests say SKIPPED, and fail under
//! `TAKEHOME_REQUIRE_POSTGRES=1` (as CI sets). The helpers are in `cluster_support.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::cluster_support::*;
use super::common::{docker, python_image};

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
        pushers.push(std::thread::spawn(move || push_many(&server, &assignment, &work, pushes, 0.5)));
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
    let restarted = takehome::web::now();

    for pusher in pushers {
        tokio::task::block_in_place(|| pusher.join().unwrap());
    }
    let rows = tokio::task::block_in_place(|| all_graded(&server, 100, Duration::from_secs(900)));
    watching.abort();
    assert_eq!(rows.len(), 100, "every push is one submission, none lost, none doubled");
    let not_graded: Vec<String> = rows
        .iter()
        .filter(|r| (r["status"].as_str(), r["grade_status"].as_str()) != (Some("graded"), Some("graded")))
        .map(|r| format!("#{} {} after {} attempts: {}", r["id"], r["status"], r["attempts"], r["error"]))
        .collect();
    assert!(not_graded.is_empty(), "not graded: {not_graded:?}");
    let graders: std::collections::BTreeSet<&str> = rows.iter().filter_map(|r| r["worker"].as_str()).collect();
    assert!(graders.len() >= 2, "the burst was shared by the workers: {graders:?}");
    // Workers on other hosts take their steps' CPU and memory from the kernel, as one host does.
    for row in rows.iter().step_by(10) {
        let detail = tokio::task::block_in_place(|| server.api(&format!("/api/submissions/{}", row["id"])));
        for step in detail["report"]["steps"].as_array().unwrap() {
            assert_eq!(step["accounting"], "kernel", "submission {}: {step}", row["id"]);
        }
    }
    // Both live workers reconnected on their own: each stored reports after the restart.
    let after: std::collections::BTreeSet<&str> =
        rows.iter().filter(|r| r["finished_at"].as_i64().is_some_and(|t| t > restarted)).filter_map(|r| r["worker"].as_str()).collect();
    assert!(after.contains(second_a.as_str()) && after.contains(inst_b.as_str()), "after the restart only {after:?} graded");
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
    let refused = store.finish(&late, takehome::report::Status::Graded, 100.0, "{}", 0, false).await;
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
