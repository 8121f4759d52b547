//! The hardened sandbox against the real engine, each limit with a tiny purpose-made submission.

use std::path::Path;
use std::time::{Duration, Instant};

use takehome::sandbox::{Bind, DockerSandbox, JobOptions, JobSandbox, Limits, Outcome, Sandbox, StepRequest, StepRun, LABEL_JOB};
use tokio_util::sync::CancellationToken;

use super::common::{containers_with_label, docker, folder_with, python_image};

const MIB: u64 = 1 << 20;

struct Run {
    step: StepRun,
}

fn limits(timeout_secs: u64, memory: u64) -> Limits {
    Limits::new(Duration::from_secs(timeout_secs), memory, 1.0)
}

/// Runs `command` as one step over a submission made of `files`, then closes the job and checks
/// that nothing of it is left on the engine.
async fn run_step(sandbox: &DockerSandbox, image: &str, files: &[(&str, &str)], command: &str, limits: Limits, inputs: Vec<Bind>) -> Run {
    let submission = folder_with(files);
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    let job_id = takehome::job::new_job_id();
    let options =
        JobOptions { job_id: job_id.clone(), image: image.to_string(), workspace_bytes: 64 * MIB, output_bytes: 64 * MIB, runtime: Default::default() };
    let job = sandbox.open_job(&options).await.expect("open a job");
    let request = StepRequest {
        name: "step".to_string(),
        command: vec!["/bin/sh".into(), "-c".into(), command.to_string()],
        submission: prepared.path().to_path_buf(),
        inputs,
        limits,
        image: None,
    };
    let step = job.run_step(&request, &CancellationToken::new()).await.expect("the step runs");
    job.close().await.unwrap();
    assert_eq!(containers_with_label(sandbox, &format!("{LABEL_JOB}={job_id}")).await, 0, "containers of job {job_id} were left behind");
    Run { step }
}

macro_rules! needs_docker {
    () => {
        match docker().await {
            Some(sandbox) => {
                let (image, _) = python_image(&sandbox).await;
                (sandbox, image)
            }
            None => return,
        }
    };
}

#[tokio::test]
async fn a_step_past_its_timeout_is_timed_out_within_five_seconds() {
    let (sandbox, image) = needs_docker!();
    let run = run_step(&sandbox, &image, &[], "sleep 60", limits(3, 256 * MIB), vec![]).await;
    assert_eq!(run.step.outcome, Outcome::TimedOut, "{:?}", run.step);
    assert!(run.step.wall < Duration::from_secs(3 + 5), "took {:?}", run.step.wall);
}

#[tokio::test]
async fn a_memory_hog_is_out_of_memory() {
    let (sandbox, image) = needs_docker!();
    let hog = "python -c 'blocks = []\nwhile True: blocks.append(bytearray(16 << 20))'";
    let run = run_step(&sandbox, &image, &[], hog, limits(60, 128 * MIB), vec![]).await;
    assert_eq!(run.step.outcome, Outcome::OutOfMemory, "{:?}", run.step);
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_host_stays_responsive() {
    let (sandbox, image) = needs_docker!();
    let bomb = "python -c 'import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass'";
    let step = run_step(&sandbox, &image, &[], bomb, limits(8, 256 * MIB), vec![]);
    let probe = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        // While the bomb runs: the host still starts processes quickly.
        let started = Instant::now();
        for _ in 0..20 {
            let status = tokio::process::Command::new("true").status().await.expect("the host can start a process");
            assert!(status.success());
        }
        started.elapsed()
    };
    let (run, probe_time) = tokio::join!(step, probe);
    assert!(probe_time < Duration::from_secs(5), "20 host processes took {probe_time:?} during the fork bomb");
    assert!(matches!(run.step.outcome, Outcome::TimedOut | Outcome::Failed), "{:?}", run.step);
}

#[tokio::test]
async fn endless_writing_ends_in_disk_limit_without_touching_host_disk() {
    let (sandbox, image) = needs_docker!();
    let free_before = free_bytes(Path::new("/var/lib/docker"));
    let run = run_step(&sandbox, &image, &[], "dd if=/dev/zero of=/output/fill bs=1M", limits(60, 512 * MIB), vec![]).await;
    let free_after = free_bytes(Path::new("/var/lib/docker"));
    assert_eq!(run.step.outcome, Outcome::DiskLimit, "{:?}", run.step);
    assert!(run.step.message.contains("/output"), "{}", run.step.message);
    assert!(free_before.saturating_sub(free_after) < 32 * MIB, "host free space fell by {} bytes", free_before - free_after);
    // The same in /workspace, and a single file past the file size limit.
    let run = run_step(&sandbox, &image, &[], "dd if=/dev/zero of=/workspace/fill bs=1M", limits(60, 512 * MIB), vec![]).await;
    assert_eq!(run.step.outcome, Outcome::DiskLimit, "{:?}", run.step);
    let mut small_files = limits(60, 512 * MIB);
    small_files.file_bytes = 8 * MIB;
    let run = run_step(&sandbox, &image, &[], "dd if=/dev/zero of=/tmp/big bs=1M count=20", small_files, vec![]).await;
    assert_eq!(run.step.outcome, Outcome::DiskLimit, "{:?}", run.step);
}

fn free_bytes(path: &Path) -> u64 {
    let output = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&output.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn endless_printing_ends_in_output_limit_with_the_log_capped() {
    let (sandbox, image) = needs_docker!();
    let mut caps = limits(60, 256 * MIB);
    caps.log_flood = 16 * MIB;
    let run = run_step(&sandbox, &image, &[], "yes takehome-flood", caps.clone(), vec![]).await;
    assert_eq!(run.step.outcome, Outcome::OutputLimit, "{:?}", run.step.message);
    assert!(run.step.stdout.total_bytes > 16 * MIB);
    assert!(run.step.stdout.text().len() <= caps.log_cap, "kept {} bytes", run.step.stdout.text().len());
    assert!(run.step.stdout.truncated());
}

#[tokio::test]
async fn the_container_sees_no_network_but_loopback() {
    let (sandbox, image) = needs_docker!();
    // No traffic is aimed anywhere: the probe lists interfaces and routes, and opens a socket
    // on the container's own loopback only.
    let probe = "ls /sys/class/net; echo routes: $(tail -n +2 /proc/net/route | wc -l); python -c 'import socket\ns = socket.socket()\ns.bind((\"127.0.0.1\", 0))\nprint(\"loopback ok\")'";
    let run = run_step(&sandbox, &image, &[], probe, limits(30, 256 * MIB), vec![]).await;
    assert_eq!(run.step.outcome, Outcome::Ok, "{:?}", run.step);
    let stdout = run.step.stdout.text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["lo", "routes: 0", "loopback ok"], "{stdout}");
}

#[tokio::test]
async fn the_step_runs_unprivileged_on_a_read_only_root() {
    let (sandbox, image) = needs_docker!();
    let probe = "id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; touch /etc/x 2>&1; touch /submission/x 2>&1; touch /data/x 2>&1; echo ok > /workspace/w && echo workspace-writable";
    let data = folder_with(&[("train.csv", "a,b\n")]);
    let inputs = vec![Bind { host: data.path().to_path_buf(), target: "/data/public".into() }];
    let run = run_step(&sandbox, &image, &[("main.py", "")], probe, limits(30, 256 * MIB), inputs).await;
    let stdout = run.step.stdout.text();
    assert!(stdout.starts_with("10001\n"), "{stdout}");
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert!(stdout.contains("workspace-writable"), "{stdout}");
    // /etc (the root), /submission and /data all refuse writes.
    assert_eq!(stdout.matches("Read-only file system").count() + stdout.matches("Permission denied").count(), 3, "{stdout}");
}

#[tokio::test]
async fn symlinked_and_hard_linked_outputs_are_refused() {
    let Some(sandbox) = docker().await else { return };
    let (image, _) = python_image(&sandbox).await;
    let submission = folder_with(&[]);
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    let job_id = takehome::job::new_job_id();
    let options = JobOptions { job_id: job_id.clone(), image, workspace_bytes: 16 * MIB, output_bytes: 16 * MIB, runtime: Default::default() };
    let job = sandbox.open_job(&options).await.unwrap();
    let request = StepRequest {
        name: "links".into(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "ln -s /etc/passwd /output/predictions.csv; echo a > /output/real.csv; ln /output/real.csv /output/hard.csv; mkdir /output/d; ln -s / /output/d/root".into(),
        ],
        submission: prepared.path().to_path_buf(),
        inputs: vec![],
        limits: limits(30, 128 * MIB),
        image: None,
    };
    let run = job.run_step(&request, &CancellationToken::new()).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    let dest = tempfile::tempdir().unwrap();
    let single = job.collect_output("predictions.csv", dest.path(), MIB).await.unwrap();
    assert!(single.files.is_empty(), "{single:?}");
    assert_eq!(single.rejected.len(), 1);
    assert!(single.rejected[0].reason.contains("symbolic link"), "{single:?}");
    assert!(std::fs::symlink_metadata(dest.path().join("predictions.csv")).is_err(), "nothing may be created for a refused link");
    let dest = tempfile::tempdir().unwrap();
    let folder = job.collect_output("d", dest.path(), MIB).await.unwrap();
    assert!(folder.rejected.iter().any(|r| r.path == "d/root"), "{folder:?}");
    let dest = tempfile::tempdir().unwrap();
    let missing = job.collect_output("nope.csv", dest.path(), MIB).await.unwrap();
    assert!(missing.missing);
    job.close().await.unwrap();
    assert_eq!(containers_with_label(&sandbox, &format!("{LABEL_JOB}={job_id}")).await, 0);
}

#[tokio::test]
async fn a_symlink_in_the_submission_does_not_bring_a_host_file_in() {
    let (sandbox, image) = needs_docker!();
    let secret = folder_with(&[("secret.txt", "HOST-SECRET-7f3a9c")]);
    let submission = folder_with(&[("main.py", "print('hi')\n")]);
    std::os::unix::fs::symlink(secret.path().join("secret.txt"), submission.path().join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("main.py", submission.path().join("alias.py")).unwrap();
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    // No link is carried into the copy, not even one that stays inside: a link that looks
    // harmless alone can escape through another.
    let skipped: Vec<&str> = prepared.skipped_links.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(skipped, ["alias.py", "leak.txt"], "{:?}", prepared.skipped_links);
    let job_id = takehome::job::new_job_id();
    let options = JobOptions { job_id: job_id.clone(), image, workspace_bytes: 16 * MIB, output_bytes: 16 * MIB, runtime: Default::default() };
    let job = sandbox.open_job(&options).await.unwrap();
    let request = StepRequest {
        name: "leak".into(),
        command: vec!["/bin/sh".into(), "-c".into(), "cat leak.txt; cat alias.py; ls -la".into()],
        submission: prepared.path().to_path_buf(),
        inputs: vec![],
        limits: limits(30, 128 * MIB),
        image: None,
    };
    let run = job.run_step(&request, &CancellationToken::new()).await.unwrap();
    job.close().await.unwrap();
    let everything = format!("{}{}", run.stdout.text(), run.stderr.text());
    assert!(!everything.contains("HOST-SECRET-7f3a9c"), "{everything}");
    assert!(!everything.contains("print('hi')"), "a link was carried into the copy: {everything}");
    assert!(everything.contains("main.py"), "the regular file is there: {everything}");
}

#[tokio::test]
async fn cancelling_a_step_removes_its_containers() {
    let (sandbox, image) = needs_docker!();
    let submission = folder_with(&[]);
    let prepared = takehome::submission::prepare(submission.path()).unwrap();
    let job_id = takehome::job::new_job_id();
    let options = JobOptions { job_id: job_id.clone(), image, workspace_bytes: 16 * MIB, output_bytes: 16 * MIB, runtime: Default::default() };
    let job = sandbox.open_job(&options).await.unwrap();
    let request = StepRequest {
        name: "sleepy".into(),
        command: vec!["sleep".into(), "120".into()],
        submission: prepared.path().to_path_buf(),
        inputs: vec![],
        limits: limits(300, 128 * MIB),
        image: None,
    };
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let result = job.run_step(&request, &cancel).await;
    assert!(matches!(result, Err(takehome::sandbox::RunError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Dropping the job without close: the guard removes what is left.
    drop(job);
    assert_eq!(containers_with_label(&sandbox, &format!("{LABEL_JOB}={job_id}")).await, 0);
}

/// gVisor, when the engine has it: `TAKEHOME_REQUIRE_RUNSC=1` (as CI sets it) makes its absence a
/// failure.
async fn runsc_available(sandbox: &DockerSandbox) -> bool {
    match sandbox.check_runtime(takehome::sandbox::Runtime::Runsc).await {
        Ok(()) => true,
        Err(error) if std::env::var("TAKEHOME_REQUIRE_RUNSC").as_deref() == Ok("1") => panic!("runsc is required (TAKEHOME_REQUIRE_RUNSC=1): {error}"),
        Err(error) => {
            eprintln!("SKIPPED: {error}");
            false
        }
    }
}

#[tokio::test]
async fn every_step_runs_under_seccomp_and_a_task_may_require_gvisor() {
    let (sandbox, image) = needs_docker!();
    // runc: Docker's seccomp filter is on, scratch space is not executable.
    let run = run_step(
        &sandbox,
        &image,
        &[],
        "grep '^Seccomp:' /proc/self/status; cp /bin/true /tmp/t && /tmp/t && echo EXECUTED || echo noexec",
        limits(30, 128 * MIB),
        vec![],
    )
    .await;
    let out = run.step.stdout.text();
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    assert!(out.contains("noexec") && !out.contains("EXECUTED"), "a file written to /tmp was executed: {out}");
    // Our profile: calls a step never needs are refused; what steps do use still works.
    let probe = "import ctypes, errno, multiprocessing, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
                 for name, call in [('ptrace', lambda: libc.ptrace(0, 0, 0, 0)), ('unshare', lambda: libc.unshare(0x10000000)), ('keyctl', lambda: libc.syscall(250, 0))]:\n\
                 \x20   print(name, call(), errno.errorcode.get(ctypes.get_errno()))\n\
                 if __name__ == '__main__':\n\
                 \x20   with multiprocessing.Pool(2) as pool:\n\
                 \x20       print('pool', sum(pool.map(abs, range(10))))\n\
                 \x20   import sklearn.ensemble\n\
                 \x20   print('sklearn imported')\n";
    let run = run_step(&sandbox, &image, &[("probe.py", probe)], "python3 probe.py", limits(60, 512 * MIB), vec![]).await;
    let out = run.step.stdout.text();
    assert_eq!(run.step.outcome, Outcome::Ok, "{out}{}", run.step.stderr.text());
    for denied in ["ptrace -1 EPERM", "unshare -1 EPERM", "keyctl -1 EPERM"] {
        assert!(out.contains(denied), "{denied:?} not refused: {out}");
    }
    assert!(out.contains("pool 45") && out.contains("sklearn imported"), "{out}");
    if !runsc_available(&sandbox).await {
        return;
    }
    // A task that asks for runsc gets it even from a sandbox whose default is runc.
    let root = super::common::repo_root();
    let mut task = takehome::task::load(&root.join("tasks/diamond-cut")).unwrap();
    task.min_runtime = takehome::sandbox::Runtime::Runsc;
    task.steps.truncate(1);
    task.steps[0].timeout = Duration::from_secs(60);
    let submission = folder_with(&[("train.py", "import os\n\nprint('kernel', os.uname().release)\n")]);
    let image_ref = takehome::job::ImageRef { tag: image.clone(), id: String::new() };
    let report =
        takehome::job::grade(&sandbox, &task, submission.path(), &image_ref, &takehome::job::new_job_id(), &CancellationToken::new(), &|_| {}).await.unwrap();
    assert_eq!(report.provenance.runtime, takehome::sandbox::Runtime::Runsc);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let printed = &report.steps[0].stdout_tail;
    assert!(printed.contains("kernel ") && !printed.contains(host_kernel.trim()), "the step saw the host's kernel under runsc: {printed}");
}

/// A step that burns `seconds` of CPU in `processes` processes, touches `mib` MiB, and prints the
/// CPU time its processes used by their own count (self and children).
const BURN: &str = r#"
import os, resource, sys, time

seconds, processes, mib = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
block = bytearray(mib << 20)
for i in range(0, len(block), 4096):
    block[i] = 1

def burn(share):
    start = time.process_time()
    while time.process_time() - start < share:
        pass

children = []
for _ in range(processes - 1):
    pid = os.fork()
    if pid == 0:
        burn(seconds / processes)
        os._exit(0)
    children.append(pid)
burn(seconds / processes)
for pid in children:
    os.waitpid(pid, 0)
own = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime)
"#;

#[tokio::test]
async fn cpu_and_peak_memory_come_exact_from_the_kernel() {
    let (sandbox, image) = needs_docker!();
    let files = [("burn.py", BURN)];
    let run = |command: &'static str, cpus: f64| {
        let (sandbox, image) = (sandbox.clone(), image.clone());
        async move {
            let mut limits = Limits::new(Duration::from_secs(60), 512 * MIB, cpus);
            limits.pids = 64;
            run_step(&sandbox, &image, &files, command, limits, vec![]).await.step
        }
    };
    // A step that exits at once: near zero, never null.
    let instant = run("true", 1.0).await;
    assert_eq!(instant.accounting, takehome::sandbox::Accounting::Kernel);
    let cpu = instant.cpu_seconds.expect("CPU time of an instant step");
    assert!(cpu < 0.05, "an instant step used {cpu} s of CPU");
    assert!(instant.peak_memory_bytes.is_some());
    let baseline = run("python3 burn.py 0 1 0", 1.0).await;
    let base_peak = baseline.peak_memory_bytes.unwrap() as f64;
    for (command, cpus, mib) in [("python3 burn.py 0.3 1 0", 1.0, 0), ("python3 burn.py 3 1 200", 1.0, 200), ("python3 burn.py 3 2 0", 2.0, 0)] {
        let step = run(command, cpus).await;
        assert_eq!(step.outcome, Outcome::Ok, "{command}: {}", step.stderr.text());
        assert_eq!(step.accounting, takehome::sandbox::Accounting::Kernel);
        let own: f64 = step.stdout.text().trim().parse().unwrap();
        let reported = step.cpu_seconds.unwrap();
        eprintln!("{command}: the step counted {own:.3} s of CPU, the kernel {reported:.3} s; peak {} MiB", step.peak_memory_bytes.unwrap() >> 20);
        assert!((reported - own).abs() <= 0.1 * own + 0.03, "{command}: reported {reported:.3} s for {own:.3} s burned");
        if mib > 0 {
            let extra = step.peak_memory_bytes.unwrap() as f64 - base_peak;
            let want = (mib << 20) as f64;
            assert!((extra - want).abs() <= 0.1 * want, "{command}: {:.1} MiB above the baseline for {mib} MiB touched", extra / MIB as f64);
        }
    }
}

/// The python images cover what candidates import (the list of runner-images/python-slim/
/// requirements.in, by import name) and render a figure headless (Agg, `plt.show()` harmless):
/// python-slim, and python, the default, which has it all too.
#[tokio::test]
async fn the_python_images_import_their_whole_list_and_render_a_figure() {
    let (sandbox, python) = needs_docker!();
    let slim = super::common::runner_image(&sandbox, "python-slim").await;
    for image in [slim, python] {
        python_list_and_figure(&sandbox, &image).await;
    }
}

async fn python_list_and_figure(sandbox: &DockerSandbox, image: &str) {
    let smoke = r#"
import importlib, os
names = ["numpy", "pandas", "sklearn", "scipy", "pyarrow", "matplotlib", "seaborn", "xgboost", "lightgbm",
         "catboost", "statsmodels", "plotly", "optuna", "imblearn", "polars", "yaml", "tqdm", "IPython",
         "requests", "joblib", "nbclient", "nbformat", "ipykernel", "shap", "missingno", "category_encoders",
         "nltk", "psutil", "networkx", "sqlalchemy", "openpyxl", "xlrd", "tabulate", "bs4", "lxml", "geopy",
         "geopandas", "folium", "fpdf", "wordcloud", "yellowbrick", "klib", "janitor", "lifetimes",
         "skmultilearn", "sparse", "geodatasets", "datasets", "rapidfuzz", "thefuzz", "fuzzywuzzy",
         "ydata_profiling", "pandas_profiling", "scikitplot", "mlflow", "h2o", "cv2", "pydot", "pydotplus", "graphviz"]
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("failed:", failed)
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [2, 1, 3])
plt.show()
plt.savefig("/tmp/figure.png")
print("backend", plt.get_backend(), "figure bytes", os.path.getsize("/tmp/figure.png"))
# A decision tree drawn as sklearn's tutorials do: export_graphviz, then Debian's graphviz.
import graphviz, pydotplus
from sklearn.tree import DecisionTreeClassifier, export_graphviz
tree = DecisionTreeClassifier(max_depth=2).fit([[0], [1], [2], [3]], [0, 0, 1, 1])
dot = export_graphviz(tree, out_file=None)
print("graphviz png", len(graphviz.Source(dot).pipe(format="png")) > 100, "pydotplus png", len(pydotplus.graph_from_dot_data(dot).create_png()) > 100)
"#;
    let run = run_step(sandbox, image, &[("smoke.py", smoke)], "python smoke.py", limits(300, 2048 * MIB), vec![]).await;
    let out = run.step.stdout.text();
    assert_eq!(run.step.outcome, Outcome::Ok, "{image}: {out}\n{}", run.step.stderr.text());
    assert!(out.contains("failed: []"), "{image}: {out}");
    assert!(out.to_lowercase().contains("backend agg figure bytes"), "{image}: {out}");
    assert!(out.contains("graphviz png True pydotplus png True"), "{image}: {out}");
}

/// A notebook as a step: `takehome-notebook` runs it headless (display magics and figures work,
/// a `%pip install` of what is installed is skipped with a note); one that installs a package
/// the image lacks stops before any cell, saying there is no network and where the list is.
#[tokio::test]
async fn a_notebook_runs_headless_and_a_pip_install_of_a_missing_package_says_why() {
    let (sandbox, image) = needs_docker!();
    let cell = |source: &str| serde_json::json!({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": null, "source": source});
    let notebook = |cells: Vec<serde_json::Value>| {
        serde_json::json!({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5})
            .to_string()
    };
    let good = notebook(vec![
        cell("%matplotlib inline\n%pip install pandas seaborn\n!pip install -q numpy==1.0\nimport matplotlib.pyplot as plt\nimport pandas as pd"),
        cell("frame = pd.DataFrame({'a': [1, 2, 3]})\nprint('rows', len(frame))\nframe.plot()\nplt.show()"),
        cell("int(frame['a'].sum())"),
    ]);
    let run = run_step(&sandbox, &image, &[("work.ipynb", &good)], "takehome-notebook work.ipynb", limits(180, 1024 * MIB), vec![]).await;
    let (out, err) = (run.step.stdout.text(), run.step.stderr.text());
    assert_eq!(run.step.outcome, Outcome::Ok, "{out}\n{err}");
    assert!(out.contains("`%pip install pandas seaborn` skipped: no network here, and pandas, seaborn are installed already"), "{out}");
    assert!(
        out.contains("`!pip install -q numpy==1.0` skipped: no network here; numpy 2.2.6 is installed, not ==1.0: your code runs with the installed version"),
        "{out}"
    );
    assert!(out.contains("rows 3") && out.contains("[figure]") && out.contains("\n6\n"), "{out}");
    assert!(out.contains("3 code cells") && out.contains(", ok"), "{out}");

    let missing = notebook(vec![cell("print('never runs')"), cell("!pip install nosuchpackage==1.0")]);
    let run = run_step(&sandbox, &image, &[("work.ipynb", &missing)], "takehome-notebook work.ipynb", limits(180, 1024 * MIB), vec![]).await;
    let (out, err) = (run.step.stdout.text(), run.step.stderr.text());
    assert_ne!(run.step.outcome, Outcome::Ok, "{out}\n{err}");
    assert!(err.contains("cell 2: `!pip install nosuchpackage==1.0`: there is no network here, and nosuchpackage is not installed"), "{err}");
    assert!(err.contains("ENVIRONMENT.md") && !out.contains("never runs"), "{out}\n{err}");

    let raising = notebook(vec![cell("x = 1"), cell("raise ValueError('the data is odd')")]);
    let run = run_step(&sandbox, &image, &[("work.ipynb", &raising)], "takehome-notebook work.ipynb", limits(180, 1024 * MIB), vec![]).await;
    let err = run.step.stderr.text();
    assert_ne!(run.step.outcome, Outcome::Ok, "{err}");
    assert!(err.contains("ValueError: the data is odd") && !err.contains("\u{1b}["), "the traceback, without colour codes: {err}");
}

/// The python image, the default, has the deep learning stack: every module of
/// runner-images/python/modules imports (with the network off, as a step runs), and torch trains
/// on the CPU here (the same image uses a GPU where the step is given one).
#[tokio::test]
async fn the_python_image_has_the_deep_learning_stack_and_torch_trains_on_the_cpu() {
    let (sandbox, image) = needs_docker!();
    let modules: Vec<String> = std::fs::read_to_string(super::common::repo_root().join("runner-images/python/modules"))
        .unwrap()
        .lines()
        .map(|line| line.split('#').next().unwrap().trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    assert!(modules.len() >= 10 && modules.iter().any(|m| m == "tensorflow"), "{modules:?}");
    let smoke = format!(
        "MODULES = {}\n{}",
        serde_json::to_string(&modules).unwrap(),
        r#"
import importlib
for name in ["numpy", "pandas", "sklearn", "matplotlib", "xgboost", "lightgbm", "nbclient"] + MODULES:
    importlib.import_module(name)
print("imported", len(MODULES), "deep learning modules")
import torch
torch.manual_seed(0)
x = torch.randn(256, 4)
y = (x.sum(dim=1) > 0).float()
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
for _ in range(200):
    optimiser.zero_grad()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
    loss.backward()
    optimiser.step()
accuracy = ((model(x).squeeze(1) > 0).float() == y).float().mean().item()
print("torch", torch.__version__, "cuda available", torch.cuda.is_available(), "accuracy", round(accuracy, 2))
"#
    );
    let run = run_step(&sandbox, &image, &[("smoke.py", &smoke)], "python smoke.py", limits(600, 4096 * MIB), vec![]).await;
    let out = run.step.stdout.text();
    assert_eq!(run.step.outcome, Outcome::Ok, "{out}\n{}", run.step.stderr.text());
    assert!(out.contains(&format!("imported {} deep learning modules", modules.len())), "{out}");
    assert!(out.contains("cuda available False"), "no GPU here: {out}");
    let accuracy: f64 = out.rsplit("accuracy ").next().unwrap().trim().parse().unwrap();
    assert!(accuracy > 0.9, "a tiny network learns a sum's sign: {out}");
}

/// The r image: every R package of its list loads (with the network off, as a step runs), ggplot2
/// draws a figure to a file, and lintr lints.
#[tokio::test]
async fn the_r_image_loads_its_whole_list_draws_a_figure_and_lints() {
    let Some(sandbox) = docker().await else { return };
    let image = super::common::runner_image(&sandbox, "r").await;
    let smoke = r#"
listed <- read.table("/opt/takehome/packages.txt", col.names = c("name", "version"))$name[-1]
failed <- listed[!vapply(listed, function(p) suppressWarnings(suppressMessages(requireNamespace(p, quietly = TRUE))), logical(1))]
cat("packages", length(listed), "\n")
cat(sprintf("failed: [%s]\n", paste(failed, collapse = ", ")))
suppressPackageStartupMessages({ library(ggplot2); library(dplyr); library(data.table); library(recipes); library(ranger) })
plot <- ggplot(data.frame(x = 1:3, y = c(2, 1, 3)), aes(x, y)) + geom_line()
ggsave("/tmp/figure.png", plot, width = 3, height = 2)
cat("figure bytes", file.size("/tmp/figure.png"), "\n")
writeLines("x = 1", "/tmp/style.R")
cat("lints", length(lintr::lint("/tmp/style.R", parse_settings = FALSE)), "\n")
"#;
    let run = run_step(&sandbox, &image, &[("smoke.R", smoke)], "Rscript smoke.R", limits(300, 2048 * MIB), vec![]).await;
    let out = run.step.stdout.text();
    assert_eq!(run.step.outcome, Outcome::Ok, "{out}\n{}", run.step.stderr.text());
    assert!(out.contains("failed: []"), "{out}");
    let count: usize = out.split("packages ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(count > 250, "{out}");
    let bytes: u64 = out.split("figure bytes ").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(bytes > 1000, "{out}");
    assert!(out.contains("lints 1"), "{out}");
}

/// `takehome images prune` removes an image of ours that no current recipe builds, and keeps the
/// current one; with no name, also the images of a recipe gone from runner-images/ (renamed, as
/// python-torch was), and never one of a recipe that is there.
#[tokio::test]
async fn prune_removes_images_no_recipe_builds_and_keeps_the_current_one() {
    let Some(sandbox) = docker().await else { return };
    let current = super::common::runner_image(&sandbox, "r").await;
    let prune = |names: &[&str]| {
        let output = std::process::Command::new(super::common::takehome_binary())
            .current_dir(super::common::repo_root())
            .args(["images", "prune"])
            .args(names)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let tag = |new: &str| assert!(std::process::Command::new("docker").args(["tag", &current, new]).status().unwrap().success());
    let (old, retired) = ("takehome/r:0000000000000000", "takehome/retired-recipe:0000000000000000");
    tag(old);
    tag(retired);
    let stdout = prune(&["r"]);
    assert!(stdout.contains(&format!("removed {old}")) && !stdout.contains(retired), "only the named recipe's: {stdout}");
    assert!(sandbox.image_id(old).await.unwrap().is_none(), "the old tag is gone");
    assert!(sandbox.image_id(retired).await.unwrap().is_some(), "a recipe not named is left alone");
    let stdout = prune(&[]);
    assert!(stdout.contains(&format!("removed {retired}")), "{stdout}");
    assert!(sandbox.image_id(retired).await.unwrap().is_none(), "the gone recipe's image is removed");
    assert!(sandbox.image_id(&current).await.unwrap().is_some(), "the current image stays");
}
