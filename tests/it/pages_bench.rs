//! What a page costs with a large cohort (ignored: a benchmark, run by hand on a release build):
//!
//! ```text
//! cargo test --release --test it pages_bench -- --ignored --nocapture
//! ```
//!
//! 10,000 graded submissions over 20 tasks (25 candidates a task, 20 pushes each) in a real
//! SQLite store with real repositories; each page asked 30 times in process (`TestApp`, no
//! socket), after one warm-up (which fills the similarity cache). Prints p50 and p95 per page;
//! BENCHMARKS.md keeps the figures.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use takehome::store::{Assignment, ClaimRequest, TaskCopy};

use super::cluster_support::project_root;
use super::test_app::{basic, TestApp};

const TASKS: usize = 20;
const CANDIDATES: usize = 25;
const PUSHES: usize = 20;

/// The i-th request of a page: its path and headers.
type Request<'a> = dyn Fn(usize) -> (String, Vec<(header::HeaderName, String)>) + 'a;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn pages_bench() {
    let extra: Vec<String> = (1..TASKS).map(|n| format!("t{n:02}")).collect();
    let copies = extra.clone();
    let root = tokio::task::spawn_blocking(move || project_root(&copies.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap();
    let tasks: Vec<String> = std::iter::once("penguins-cleaning".to_string()).chain(extra).collect();
    let app = TestApp::new(root.path()).await;
    let store = app.app.store.clone();
    let report = std::fs::read_to_string(super::common::repo_root().join("tests/fixtures/reports/hostile.json")).unwrap();
    let seeding = Instant::now();
    let mut assignments = Vec::new();
    for (t, task_id) in tasks.iter().enumerate() {
        let task = takehome::task::load(&root.path().join("tasks").join(task_id)).unwrap();
        let needs = takehome::job::needs(&task).unwrap();
        for c in 0..CANDIDATES {
            let id = format!("a{t:02}c{c:02}");
            let token = format!("token-{id}");
            store
                .create_assignment(&Assignment {
                    id: id.clone(),
                    task: task.id.clone(),
                    candidate: format!("candidate{c}.{t}@example.com"),
                    token_hash: takehome::secret::token_hash(&token),
                    time_box_seconds: 3 * 3600,
                    starts: takehome::store::Starts::Now,
                    started_at: Some(takehome::web::now() - 3600),
                    created_at: 0,
                    extra_seconds: 0,
                })
                .await
                .unwrap();
            let commit = app.repository(&id, &task);
            for p in 0..PUSHES {
                store.add_submission(&id, &commit, &needs, takehome::web::now() - 3000 + p as i64, 0).await.unwrap();
            }
            assignments.push((id, token, task_id.clone()));
        }
        // Grade the task's pushes: claimed and finished as a worker does.
        let request = ClaimRequest {
            instance: "bench".into(),
            now: takehome::web::now(),
            lease_seconds: 600,
            free_memory_bytes: 1 << 40,
            runtimes: vec!["runc".into()],
            free_gpus: 0,
            copies: vec![TaskCopy { task: task.id.clone(), spec_digest: needs.spec_digest.clone(), data_digest: needs.data_digest.clone() }],
            max_attempts: 3,
        };
        let mut n = 0;
        while let Some(job) = store.claim(&request).await.unwrap() {
            let score = 40.0 + (n * 37 % 60) as f64;
            let json = report.replacen("77.4031844036463", &format!("{score}"), 1);
            store.finish(&job.fence, takehome::report::Status::Graded, score, &json, takehome::web::now(), false).await.unwrap();
            n += 1;
        }
        assert_eq!(n, CANDIDATES * PUSHES);
    }
    eprintln!("seeded {} submissions in {:.1} s", TASKS * CANDIDATES * PUSHES, seeding.elapsed().as_secs_f64());

    let cookie = app.assessor_cookie("ada").await;
    let assessor = vec![(header::COOKIE, cookie)];
    let ids: Vec<i64> = (1..=(TASKS * CANDIDATES * PUSHES) as i64).collect();
    let pages: Vec<(&str, Box<Request>)> = vec![
        ("dashboard", Box::new(|_| ("/".to_string(), assessor.clone()))),
        ("comparison", Box::new(|i| (format!("/tasks/{}/compare", tasks[i % TASKS]), assessor.clone()))),
        ("submission", Box::new(|i| (format!("/submissions/{}", ids[i * 331 % ids.len()]), assessor.clone()))),
        ("code view", Box::new(|i| (format!("/submissions/{}/code", ids[i * 331 % ids.len()]), assessor.clone()))),
        ("similarity", Box::new(|i| (format!("/tasks/{}/similarity", tasks[i % TASKS]), assessor.clone()))),
        (
            "status page",
            Box::new(|i| {
                let (id, token, _) = &assignments[i * 17 % assignments.len()];
                (format!("/status/{id}"), vec![(header::AUTHORIZATION, basic(id, token))])
            }),
        ),
    ];
    eprintln!("{:<12} {:>9} {:>9} {:>9} {:>10}", "page", "p50 ms", "p95 ms", "max ms", "bytes");
    for (name, request) in &pages {
        // Warm-up: every task's similarity cache filled, as the views before would have.
        for i in 0..TASKS {
            let (path, headers) = request(i);
            let (status, _) = app.get(&path, &headers).await;
            assert_eq!(status, StatusCode::OK, "{name} {path}");
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for i in 0..30 {
            let (path, headers) = request(i);
            let started = Instant::now();
            let (status, body) = app.get(&path, &headers).await;
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{name} {path}");
            bytes = bytes.max(body.len());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!("{name:<12} {:>9.1} {:>9.1} {:>9.1} {:>10}", ms(percentile(&times, 0.5)), ms(percentile(&times, 0.95)), ms(times[times.len() - 1]), bytes);
    }
}
