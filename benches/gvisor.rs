//! The cost of gVisor: the same steps under runc and under runsc (gVisor, ptrace platform), side
//! by side in one run, alternating so that drift hits both equally.
//!
//!     cargo bench --profile dev --bench gvisor -- [RUNS]
//!
//! Two steps in an open job of each runtime: `true` (a container's own overhead) and
//! `python3 -c "import sklearn, pandas"` (what a training step pays before its first line).
//! Needs runsc registered (`.ci/register-runsc.sh`). Prints medians and ratios.

use std::time::{Duration, Instant};

use takehome::sandbox::image::{BuildMethod, Recipe};
use takehome::sandbox::{DockerSandbox, JobOptions, JobSandbox, Limits, Outcome, Runtime, Sandbox, StepRequest};
use tokio_util::sync::CancellationToken;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(9);
    let docker = DockerSandbox::connect().await.expect("Docker");
    docker.check_runtime(Runtime::Runsc).await.expect("runsc registered");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let recipe = Recipe::load(&root, "python").unwrap();
    let image = docker.ensure_image(&recipe, BuildMethod::Auto, &|line| eprintln!("{line}")).await.unwrap();
    let submission = tempfile::tempdir().unwrap();
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    let request = |name: &str, command: &str| StepRequest {
        name: name.into(),
        command: vec!["/bin/sh".into(), "-c".into(), command.into()],
        submission: prepared.path().to_path_buf(),
        inputs: vec![],
        limits: Limits::new(Duration::from_secs(120), 1 << 30, 1.0),
        image: None,
    };
    let steps = [("noop", request("noop", "true")), ("import sklearn, pandas", request("imports", "python3 -c 'import sklearn, pandas'"))];
    let cancel = CancellationToken::new();
    let mut jobs = Vec::new();
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let options = JobOptions { job_id: takehome::job::new_job_id(), image: image.tag.clone(), workspace_bytes: 64 << 20, output_bytes: 64 << 20, runtime };
        jobs.push((runtime, docker.open_job(&options).await.unwrap()));
    }
    let mut times: Vec<Vec<Vec<Duration>>> = vec![vec![Vec::new(); 2]; steps.len()];
    for run in 0..runs {
        for (s, (_, step)) in steps.iter().enumerate() {
            for (r, (_, job)) in jobs.iter().enumerate() {
                let t = Instant::now();
                let result = job.run_step(step, &cancel).await.unwrap();
                assert_eq!(result.outcome, Outcome::Ok, "{}", result.stderr.text());
                times[s][r].push(t.elapsed());
            }
        }
        eprintln!("run {}/{runs}", run + 1);
    }
    for (_, job) in jobs {
        job.close().await.unwrap();
    }
    println!("runs: {runs} (medians; a step in an open job)");
    for (s, (name, _)) in steps.iter().enumerate() {
        let (runc, runsc) = (median(times[s][0].clone()), median(times[s][1].clone()));
        println!("{name:<24} runc {:.3} s   runsc {:.3} s   ratio {:.2}", runc.as_secs_f64(), runsc.as_secs_f64(), runsc.as_secs_f64() / runc.as_secs_f64());
    }
}
