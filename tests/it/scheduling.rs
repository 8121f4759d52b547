//! The daemon's scheduling without Docker: a real worker instance (`daemon::grade_with`, the
//! loop `serve` and `worker` run) over a real SQLite store and real git repositories, against a
//! fake engine whose steps take a set time. Slots, claims, the report stored under the fence,
//! public dry runs run when nothing is graded, and shutdown giving a running job back are checked
//! in seconds; the real engine is tested in `sandbox`, `serve` and `cluster`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use takehome::daemon::{self, Engine, GraderOptions, Source};
use takehome::job::{self, ImageRef};
use takehome::sandbox::image::Recipe;
use takehome::sandbox::{Accounting, Extracted, JobOptions, JobSandbox, Outcome, RunError, Runtime, Sandbox, StepRequest, StepRun};
use takehome::store::{Assignment, JobStatus, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::common::{captured, repo_root, wait_until};
use super::test_app::TestApp;

/// Steps take `step` each (or until `hold` is cleared while it is set); the graded output is
/// diamond-cut's truth. Counts the steps running at once.
#[derive(Clone)]
struct FakeEngine {
    step: Duration,
    hold: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    steps: Arc<AtomicUsize>,
    jobs: Arc<AtomicUsize>,
    /// Job sandboxes opened and not closed.
    open: Arc<AtomicIsize>,
    /// What was open when the worker swept its own leftovers (-1: no sweep yet).
    open_at_sweep: Arc<AtomicIsize>,
}

struct FakeJob(FakeEngine);

impl Sandbox for FakeEngine {
    type Job = FakeJob;
    async fn open_job(&self, _options: &JobOptions) -> Result<FakeJob, RunError> {
        self.jobs.fetch_add(1, Ordering::SeqCst);
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(FakeJob(self.clone()))
    }
    async fn open_bare_job(&self, _options: &JobOptions) -> Result<FakeJob, RunError> {
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(FakeJob(self.clone()))
    }
    async fn count_job(&self, _job_id: &str) -> Result<usize, RunError> {
        Ok(0)
    }
}

impl JobSandbox for FakeJob {
    async fn run_step(&self, request: &StepRequest, cancel: &CancellationToken) -> Result<StepRun, RunError> {
        let engine = &self.0;
        let stdout = if request.name == "lint" {
            "[]".to_string()
        } else {
            let now = engine.running.fetch_add(1, Ordering::SeqCst) + 1;
            engine.most.fetch_max(now, Ordering::SeqCst);
            engine.steps.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            let ended = loop {
                if cancel.is_cancelled() {
                    break Err(RunError::Cancelled);
                }
                if started.elapsed() >= engine.step && !engine.hold.load(Ordering::SeqCst) {
                    break Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            engine.running.fetch_sub(1, Ordering::SeqCst);
            ended?;
            format!("{} ran\n", request.name)
        };
        Ok(StepRun {
            outcome: Outcome::Ok,
            exit_code: Some(0),
            wall: engine.step,
            cpu_seconds: Some(0.1),
            peak_memory_bytes: Some(100 << 20),
            accounting: Accounting::Kernel,
            stdout: captured(&stdout),
            stderr: captured(""),
            message: String::new(),
        })
    }
    async fn collect_output(&self, name: &str, dest: &Path, _max_bytes: u64) -> Result<Extracted, RunError> {
        // The hidden truth or the public one, whichever run this is: a perfect answer either way.
        let bytes = std::fs::read(repo_root().join("datasets/diamond-cut/hidden/labels.csv")).unwrap();
        std::fs::write(dest.join(name), &bytes).unwrap();
        Ok(Extracted { files: vec![(name.into(), bytes.len() as u64)], ..Default::default() })
    }
    async fn close(self) -> Result<(), RunError> {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    fn runtime(&self) -> Runtime {
        Runtime::Runc
    }
}

impl Engine for FakeEngine {
    async fn runtimes(&self) -> Vec<String> {
        vec!["runc".into()]
    }
    async fn ensure_image(&self, recipe: &Recipe) -> Result<ImageRef, RunError> {
        Ok(ImageRef { tag: recipe.tag(), id: "sha256:fake".into() })
    }
    async fn remove_dead(&self, _known: std::collections::HashMap<String, bool>) -> Result<usize, RunError> {
        Ok(0)
    }
    async fn remove_own(&self) -> Result<usize, RunError> {
        let open = self.open.load(Ordering::SeqCst);
        self.open_at_sweep.store(open, Ordering::SeqCst);
        Ok(open.max(0) as usize)
    }
}

struct Setup {
    _app: TestApp,
    config: takehome::config::Config,
    store: Arc<dyn Store>,
    repos: takehome::intake::Repos,
    commit: String,
    needs: takehome::store::JobNeeds,
}

async fn setup() -> Setup {
    let root = repo_root();
    let app = TestApp::with(&root, &[("TAKEHOME_LEASE_SECONDS", "6")]).await;
    let task = takehome::task::load(&root.join("tasks/diamond-cut")).unwrap();
    let commit = app.repository("a1", &task);
    let (config, store, repos) = (app.app.config.clone(), app.app.store.clone(), app.app.repos.clone());
    store
        .create_assignment(&Assignment {
            id: "a1".into(),
            task: "diamond-cut".parse().unwrap(),
            candidate: "c@example.com".into(),
            token_hash: "h".into(),
            time_box_seconds: 3600,
            starts: takehome::store::Starts::Now,
            started_at: Some(0),
            created_at: 0,
            extra_seconds: 0,
        })
        .await
        .unwrap();
    let needs = job::needs(&task).unwrap();
    Setup { _app: app, config, store, repos, commit, needs }
}

fn engine(step: Duration) -> FakeEngine {
    FakeEngine {
        step,
        hold: Arc::default(),
        running: Arc::default(),
        most: Arc::default(),
        steps: Arc::default(),
        jobs: Arc::default(),
        open: Arc::default(),
        open_at_sweep: Arc::new(AtomicIsize::new(-1)),
    }
}

fn start(setup: &Setup, engine: &FakeEngine, slots: usize) -> (tokio::task::JoinHandle<anyhow::Result<()>>, Arc<Notify>, CancellationToken) {
    let (work, shutdown) = (Arc::new(Notify::new()), CancellationToken::new());
    let options = GraderOptions { name: "here".into(), slots, memory_bytes: Some(64 << 30), gpus: Some(0), source: Source::Local(setup.repos.clone()) };
    let running = tokio::spawn(daemon::grade_with(setup.config.clone(), setup.store.clone(), options, engine.clone(), work.clone(), shutdown.clone()));
    (running, work, shutdown)
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_grade_the_queue_store_each_report_once_then_run_the_dry_runs() {
    let setup = setup().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(setup.store.add_submission("a1", &setup.commit, &setup.needs, n, 0).await.unwrap().0);
    }
    let fake = engine(Duration::from_millis(300));
    let (running, work, shutdown) = start(&setup, &fake, 2);
    work.notify_waiters();
    let store = setup.store.clone();
    let graded = wait_until(Duration::from_secs(60), || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in ids {
                match store.submission(id).await.unwrap() {
                    Some((row, _)) if row.status == JobStatus::Graded => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;
    assert!(graded, "the queue was not graded");
    for &id in &ids {
        let (row, report) = setup.store.submission(id).await.unwrap().unwrap();
        assert_eq!((row.attempts, row.score.map(|s| s > 90.0)), (1, Some(true)), "submission {id}: each is claimed once and graded perfect");
        let report: takehome::report::Report = serde_json::from_str(&report.unwrap()).unwrap();
        assert_eq!(report.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train", "predict"]);
    }
    assert_eq!(fake.most.load(Ordering::SeqCst), 2, "two slots: two steps at once, never more");
    // Nothing graded waits: each push's public dry run runs and its result is kept.
    let dry_runs_done = wait_until(Duration::from_secs(60), || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in ids {
                if store.public_run(id).await.unwrap().is_none() {
                    return false;
                }
            }
            store.dry_runs_waiting().await.unwrap() == 0
        }
    })
    .await;
    assert!(dry_runs_done, "the public dry runs did not all run");
    let run: serde_json::Value = serde_json::from_str(&setup.store.public_run(ids[0]).await.unwrap().unwrap()).unwrap();
    assert!(run["report"].is_object(), "{run}");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let workers = setup.store.workers().await.unwrap();
    assert!(workers.iter().all(|w| w.stopped_at.is_some()), "the instance is marked stopped");
    assert_eq!(fake.open_at_sweep.load(Ordering::SeqCst), 0, "the slots closed every sandbox before the worker swept its own");
}

#[tokio::test(flavor = "multi_thread")]
async fn graded_work_stops_a_dry_run_and_shutdown_gives_a_running_job_back() {
    let setup = setup().await;
    let fake = engine(Duration::from_millis(100));
    let (running, work, shutdown) = start(&setup, &fake, 1);
    // One push graded, then its dry run held mid-step.
    let first = setup.store.add_submission("a1", &setup.commit, &setup.needs, 0, 0).await.unwrap().0;
    work.notify_waiters();
    let store = setup.store.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = store.clone();
            async move { s.submission(first).await.unwrap().unwrap().0.status == JobStatus::Graded }
        })
        .await
    );
    fake.hold.store(true, Ordering::SeqCst);
    let steps_before = fake.steps.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let f = fake.clone();
            async move { f.running.load(Ordering::SeqCst) == 1 && f.steps.load(Ordering::SeqCst) > steps_before }
        })
        .await,
        "the dry run did not start"
    );
    // A new push: the dry run is stopped for it, and it runs (held too) in the one slot.
    let second = setup.store.add_submission("a1", &setup.commit, &setup.needs, 1, 0).await.unwrap().0;
    work.notify_waiters();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = store.clone();
            async move { s.submission(second).await.unwrap().unwrap().0.status == JobStatus::Running }
        })
        .await,
        "the graded push was not claimed while the dry run ran"
    );
    assert!(store.public_run(first).await.unwrap().is_none(), "the stopped dry run stored nothing");
    // Shutdown while the graded job's step is held: the job is given back untouched.
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let (row, _) = setup.store.submission(second).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (JobStatus::Queued, 0), "given back, the attempt not counted");
    assert_eq!(fake.open_at_sweep.load(Ordering::SeqCst), 0, "a stopped job and a stopped dry run closed their sandboxes before the sweep");
    assert_eq!(setup.store.dry_runs_waiting().await.unwrap(), 1, "the dry run waits again");
    assert_eq!(fake.running.load(Ordering::SeqCst), 0, "no step left running");
}
