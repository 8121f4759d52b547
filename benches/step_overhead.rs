//! One trivial step (`true`) through takehome's sandbox against `docker run --rm` with the same
//! hardening flags, side by side in one run, alternating so that drift hits both equally.
//!
//!     cargo bench --profile dev --bench step_overhead -- [RUNS]
//!
//! Docker dominates the time, so the dev profile measures the same thing as release. Prints
//! medians and ratios; BENCHMARKS.md records them.

use std::time::{Duration, Instant};

use takehome::sandbox::image::{BuildMethod, Recipe};
use takehome::sandbox::{DockerSandbox, JobOptions, JobSandbox, Limits, Sandbox, StepRequest};
use tokio_util::sync::CancellationToken;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    let sandbox = DockerSandbox::connect().await.expect("Docker");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let recipe = Recipe::load(&root, "python").unwrap();
    let image = sandbox.ensure_image(&recipe, BuildMethod::Auto, &|line| eprintln!("{line}")).await.unwrap();
    let submission = tempfile::tempdir().unwrap();
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    let limits = Limits::new(Duration::from_secs(60), 256 << 20, 1.0);
    let request = StepRequest {
        name: "noop".into(),
        command: vec!["true".into()],
        submission: prepared.path().to_path_buf(),
        inputs: vec![],
        limits: limits.clone(),
        image: None,
    };
    let cancel = CancellationToken::new();
    let docker_args = |image: &str| -> Vec<String> {
        [
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
            "256m",
            "--memory-swap",
            "256m",
            "--cpus",
            "1",
            "--pids-limit",
            "256",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "fsize=1073741824",
            "--ulimit",
            "core=0",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,size=268435456",
            "--shm-size",
            "64m",
            "--ipc",
            "private",
            "--init",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--volume={}:/submission:ro", prepared.path().display()), image.to_string(), "true".to_string()])
        .collect()
    };

    // One job kept open: the cost of a step alone.
    let open = sandbox
        .open_job(&JobOptions {
            job_id: takehome::job::new_job_id(),
            image: image.tag.clone(),
            workspace_bytes: 64 << 20,
            output_bytes: 64 << 20,
            runtime: Default::default(),
        })
        .await
        .unwrap();
    let (mut step_only, mut whole_job, mut docker_run) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let t = Instant::now();
        let status = tokio::process::Command::new("docker").args(docker_args(&image.tag)).status().await.unwrap();
        assert!(status.success());
        docker_run.push(t.elapsed());

        let t = Instant::now();
        let result = open.run_step(&request, &cancel).await.unwrap();
        assert_eq!(result.outcome, takehome::sandbox::Outcome::Ok);
        step_only.push(t.elapsed());

        let t = Instant::now();
        let options = JobOptions {
            job_id: takehome::job::new_job_id(),
            image: image.tag.clone(),
            workspace_bytes: 64 << 20,
            output_bytes: 64 << 20,
            runtime: Default::default(),
        };
        let job = sandbox.open_job(&options).await.unwrap();
        job.run_step(&request, &cancel).await.unwrap();
        job.close().await.unwrap();
        whole_job.push(t.elapsed());
        eprintln!(
            "run {}/{runs}: docker run {:.3}s, step {:.3}s, job {:.3}s",
            run + 1,
            docker_run[run].as_secs_f64(),
            step_only[run].as_secs_f64(),
            whole_job[run].as_secs_f64()
        );
    }
    open.close().await.unwrap();
    let (d, s, j) = (median(docker_run), median(step_only), median(whole_job));
    println!("runs: {runs} (medians)");
    println!("docker run --rm, hardened:              {:.3} s", d.as_secs_f64());
    println!("takehome step in an open job:           {:.3} s  ratio {:.2}", s.as_secs_f64(), s.as_secs_f64() / d.as_secs_f64());
    println!("takehome job: volumes+holder+step+close: {:.3} s  ratio {:.2}", j.as_secs_f64(), j.as_secs_f64() / d.as_secs_f64());
}
