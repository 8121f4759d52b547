//! The job's logic without Docker: a fake [`Sandbox`] that plays back scripted step runs and an
//! output file, so that the order of steps, outcomes, scoring and report assembly are tested in
//! milliseconds (as rust-playground tests its coordinator). The real engine is tested in `sandbox`,
//! `grade` and `serve`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use takehome::job::{self, ImageRef};
use takehome::sandbox::{Accounting, Extracted, JobOptions, JobSandbox, Outcome, RunError, Runtime, Sandbox, StepRequest, StepRun};
use tokio_util::sync::CancellationToken;

use super::common::{captured, folder_with, repo_root};

/// What the fake does for each step name, and the output file it "finds" in `/output`.
#[derive(Clone, Default)]
struct Script {
    outcomes: Vec<(&'static str, Outcome, f64)>,
    lint_stdout: String,
    output: Option<Vec<u8>>,
    /// Files by name, for a task that grades several (`output` answers any other name).
    files: Vec<(&'static str, Vec<u8>)>,
}

#[derive(Clone)]
struct FakeSandbox {
    script: Script,
    /// Step names in the order they ran, and whether the job was closed.
    ran: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<usize>>,
    /// Each step's name with the GPUs it asked the engine for, and which devices.
    gpus: Arc<Mutex<Vec<GpuAsk>>>,
    /// Each step's name with the image it asked for, where not the job's.
    images: Arc<Mutex<Vec<ImageAsk>>>,
}

/// A step's name and the image it asked for (`None`: the job's).
type ImageAsk = (String, Option<String>);

/// A step's name, the GPUs it asked for and the devices it was given.
type GpuAsk = (String, u32, Vec<u32>);

struct FakeJob {
    sandbox: FakeSandbox,
}

impl Sandbox for FakeSandbox {
    type Job = FakeJob;
    async fn open_job(&self, _options: &JobOptions) -> Result<FakeJob, RunError> {
        Ok(FakeJob { sandbox: self.clone() })
    }
    async fn open_bare_job(&self, _options: &JobOptions) -> Result<FakeJob, RunError> {
        Ok(FakeJob { sandbox: self.clone() })
    }
    async fn count_job(&self, _job_id: &str) -> Result<usize, RunError> {
        Ok(0)
    }
}

impl JobSandbox for FakeJob {
    async fn run_step(&self, request: &StepRequest, _cancel: &CancellationToken) -> Result<StepRun, RunError> {
        self.sandbox.ran.lock().unwrap().push(request.name.clone());
        self.sandbox.gpus.lock().unwrap().push((request.name.clone(), request.limits.gpus, request.limits.gpu_devices.clone()));
        self.sandbox.images.lock().unwrap().push((request.name.clone(), request.image.clone()));
        let (outcome, wall, stdout) = if request.name == "lint" {
            (Outcome::Ok, 0.1, self.sandbox.script.lint_stdout.clone())
        } else {
            let (_, outcome, wall) = self.sandbox.script.outcomes.iter().find(|(name, _, _)| *name == request.name).copied().unwrap_or(("", Outcome::Ok, 1.0));
            (outcome, wall, format!("{} ran\n", request.name))
        };
        Ok(StepRun {
            outcome,
            exit_code: Some(if outcome == Outcome::Ok { 0 } else { 1 }),
            wall: Duration::from_secs_f64(wall),
            cpu_seconds: Some(wall / 2.0),
            peak_memory_bytes: Some(100 << 20),
            accounting: Accounting::Kernel,
            stdout: captured(&stdout),
            stderr: captured(""),
            message: if outcome == Outcome::Ok { String::new() } else { format!("ended {}", outcome.as_str()) },
        })
    }
    async fn collect_output(&self, name: &str, dest: &Path, _max_bytes: u64) -> Result<Extracted, RunError> {
        let named = self.sandbox.script.files.iter().find(|(file, _)| *file == name).map(|(_, bytes)| bytes);
        let found = if self.sandbox.script.files.is_empty() { self.sandbox.script.output.as_ref() } else { named };
        match found {
            None => Ok(Extracted::missing()),
            Some(bytes) => {
                std::fs::write(dest.join(name), bytes).unwrap();
                Ok(Extracted { files: vec![(name.into(), bytes.len() as u64)], ..Default::default() })
            }
        }
    }
    async fn close(self) -> Result<(), RunError> {
        *self.sandbox.closed.lock().unwrap() += 1;
        Ok(())
    }
    fn runtime(&self) -> Runtime {
        Runtime::Runc
    }
}

/// Grades a tiny submission of diamond-cut through the fake; returns the report, the steps that
/// ran and whether the job was closed.
async fn grade(script: Script) -> (takehome::report::Report, Vec<String>, usize) {
    grade_task("diamond-cut", script).await
}

async fn grade_task(task: &str, script: Script) -> (takehome::report::Report, Vec<String>, usize) {
    let task = takehome::task::load(&repo_root().join("tasks").join(task)).unwrap();
    let submission = folder_with(&[("train.py", "import os\nx = 1\n"), ("predict.py", "print('p')\n")]);
    let fake = FakeSandbox { script, ran: Arc::default(), closed: Arc::default(), gpus: Arc::default(), images: Arc::default() };
    let image = ImageRef { tag: "takehome/python:fake".into(), id: "sha256:fake".into() };
    let report = job::grade(&fake, &task, submission.path(), &image, "fakejob", &CancellationToken::new(), &|_| {}).await.unwrap();
    let ran = fake.ran.lock().unwrap().clone();
    let closed = *fake.closed.lock().unwrap();
    (report, ran, closed)
}

/// The truth of diamond-cut as predictions: a perfect answer.
fn perfect_predictions() -> Vec<u8> {
    std::fs::read(repo_root().join("datasets/diamond-cut/hidden/labels.csv")).unwrap()
}

#[tokio::test]
async fn a_perfect_output_scores_full_accuracy_with_every_step_run_in_order() {
    let started = Instant::now();
    let script = Script {
        outcomes: vec![("train", Outcome::Ok, 2.0), ("predict", Outcome::Ok, 1.0)],
        lint_stdout: "[]".into(),
        output: Some(perfect_predictions()),
        ..Default::default()
    };
    let (report, ran, closed) = grade(script).await;
    // The lint runs beside the steps, in a job of its own; the steps run in order.
    assert_eq!(ran.iter().filter(|s| *s != "lint").collect::<Vec<_>>(), ["train", "predict"]);
    assert!(ran.contains(&"lint".to_string()));
    assert_eq!(closed, 2, "both jobs (steps and lint) are closed");
    assert_eq!(report.status.as_str(), "graded");
    assert_eq!(report.components.accuracy.accuracy.value, Some(1.0));
    assert_eq!(report.components.accuracy.score, 100.0);
    assert_eq!(report.components.code_quality.score, 100.0);
    assert!((report.components.runtime.wall_seconds - 3.0).abs() < 1e-9);
    assert_eq!(report.components.runtime.cpu_seconds, Some(1.5));
    assert_eq!(report.steps[0].accounting, Accounting::Kernel);
    assert_eq!(report.score, 100.0);
    eprintln!("graded through the fake in {:?}", started.elapsed());
}

#[tokio::test]
async fn the_steps_stop_at_the_first_that_is_not_ok() {
    let script =
        Script { outcomes: vec![("train", Outcome::OutOfMemory, 4.0)], lint_stdout: "[]".into(), output: Some(perfect_predictions()), ..Default::default() };
    let (report, ran, closed) = grade(script).await;
    assert!(!ran.contains(&"predict".to_string()), "predict must not run after a failed train: {ran:?}");
    assert_eq!(closed, 2);
    assert_eq!(report.status.as_str(), "step_failed");
    assert_eq!(report.steps.len(), 1);
    assert_eq!(report.components.accuracy.score, 0.0);
    assert_eq!(report.components.runtime.score, 0.0, "no runtime points when a step failed");
    assert!(report.components.accuracy.accuracy.problem.as_ref().unwrap().message.contains("out_of_memory"));
}

#[tokio::test]
async fn a_missing_output_is_the_candidates_problem_and_lint_findings_count() {
    let lint = r#"[{"code":"F401","filename":"/submission/train.py","location":{"row":1,"column":8},"message":"`os` imported but unused"}]"#;
    let script = Script { outcomes: vec![], lint_stdout: lint.into(), output: None, ..Default::default() };
    let (report, _, _) = grade(script).await;
    assert_eq!(report.status.as_str(), "bad_output");
    assert_eq!(report.components.accuracy.accuracy.problem.as_ref().unwrap().kind.as_str(), "missing_output");
    let quality = &report.components.code_quality;
    assert_eq!(quality.n_findings, 1);
    assert_eq!(quality.findings[0].context[0], (1, "import os".to_string()), "context comes from the host's copy");
    assert!(quality.score < 100.0);
}

/// penguins-pipeline's hidden truths, turned into outputs: the clean table as is, and the sex of
/// every bird with the first `wrong` of them flipped.
fn pipeline_outputs(wrong: usize) -> (Vec<u8>, Vec<u8>) {
    let dataset = repo_root().join("datasets/penguins-pipeline/hidden");
    let clean = std::fs::read(dataset.join("clean.csv")).unwrap();
    let truth = std::fs::read_to_string(dataset.join("sex.csv")).unwrap();
    let mut lines: Vec<String> = truth.lines().map(String::from).collect();
    for line in lines.iter_mut().skip(1).take(wrong) {
        let (id, sex) = line.split_once(',').unwrap();
        *line = format!("{id},{}", if sex == "male" { "female" } else { "male" });
    }
    (clean, (lines.join("\n") + "\n").into_bytes())
}

#[tokio::test]
async fn several_outputs_are_graded_each_on_its_own_scale_and_averaged_by_weight() {
    let (clean, predictions) = pipeline_outputs(22); // 22 of 110 wrong: accuracy 0.8
    let script =
        Script { outcomes: vec![], lint_stdout: "[]".into(), output: None, files: vec![("penguins_clean.csv", clean), ("predictions.csv", predictions)] };
    let (report, ran, _) = grade_task("penguins-pipeline", script).await;
    assert_eq!(ran.iter().filter(|s| *s != "lint").collect::<Vec<_>>(), ["clean", "train", "predict"]);
    assert_eq!(report.status.as_str(), "graded");
    let accuracy = &report.components.accuracy;
    assert_eq!(accuracy.outputs.len(), 2);
    let (clean, sex) = (&accuracy.outputs[0], &accuracy.outputs[1]);
    assert_eq!((clean.file.as_str(), clean.accuracy.value, clean.score), ("penguins_clean.csv", Some(1.0), 100.0));
    assert_eq!(sex.file, "predictions.csv");
    assert!((sex.accuracy.value.unwrap() - 0.8).abs() < 1e-12, "{:?}", sex.accuracy.value);
    assert!((sex.score - 75.0).abs() < 1e-9, "0.8 on a scale from 0.5 to 0.9: {}", sex.score);
    assert!((accuracy.score - 87.5).abs() < 1e-9, "the mean of 100 and 75: {}", accuracy.score);
    assert!(sex.accuracy.confusion.is_some() && clean.accuracy.cleaning.is_some());
    assert!(report.formula.contains("1 x penguins_clean.csv 100.0 + 1 x predictions.csv 75.0"), "{}", report.formula);

    // Every rendering for assessors shows each output; the candidate's shows neither score.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["components"]["accuracy"]["outputs"][1]["metric"], "accuracy");
    assert!((json["components"]["accuracy"]["outputs"][1]["score"].as_f64().unwrap() - 75.0).abs() < 1e-9);
    let markdown = report.to_markdown(takehome::report::View::Assessor);
    assert!(markdown.contains("| ↳ predictions.csv | accuracy = 0.8000 (0 at 0.5, full at 0.9) | 75.0 |"), "{markdown}");
    assert!(markdown.contains("| ↳ penguins\\_clean.csv | cell\\_accuracy = 1.0000"), "{markdown}");
    assert!(markdown.contains("### Confusion matrix of predictions.csv") && markdown.contains("### Cleaning of penguins\\_clean.csv"), "{markdown}");
    let html = report.to_html(takehome::report::View::Assessor);
    assert!(html.contains("↳ predictions.csv") && html.contains("Cleaning of penguins_clean.csv"), "{html}");
    assert!(report.summary().contains("predictions.csv") && report.summary().contains("weighted mean of 2 outputs"));
    for view in [
        report.to_json_view(takehome::report::View::Candidate),
        report.to_markdown(takehome::report::View::Candidate),
        report.to_html(takehome::report::View::Candidate),
    ] {
        for hidden in ["0.8000", "75.0", "87.5", "cell_accuracy", "\"score\"", "metric"] {
            assert!(!view.contains(hidden), "the candidate's view shows {hidden:?}:\n{view}");
        }
    }
}

#[tokio::test]
async fn one_missing_output_of_several_costs_only_its_share_and_is_named() {
    let (clean, _) = pipeline_outputs(0);
    let script = Script { outcomes: vec![], lint_stdout: "[]".into(), output: None, files: vec![("penguins_clean.csv", clean)] };
    let (report, _, _) = grade_task("penguins-pipeline", script).await;
    assert_eq!(report.status.as_str(), "bad_output");
    let accuracy = &report.components.accuracy;
    assert_eq!(accuracy.outputs[0].score, 100.0);
    assert_eq!(accuracy.outputs[1].accuracy.problem.as_ref().unwrap().kind.as_str(), "missing_output");
    assert_eq!(accuracy.score, 50.0);
    assert!(accuracy.accuracy.problem.as_ref().unwrap().message.contains("predictions.csv"));
    let candidate: serde_json::Value = serde_json::from_str(&report.to_json_view(takehome::report::View::Candidate)).unwrap();
    let outputs = candidate["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(outputs[0]["problem"].is_null());
    assert_eq!(outputs[1]["file"], "predictions.csv");
    assert!(outputs[1]["problem"]["message"].as_str().unwrap().contains("predictions.csv"), "{candidate}");
}

/// A step that asks for GPUs gets a device request for that many (and the others none); the job
/// needs as many as its greediest step, which is what a worker must have free to claim it.
#[tokio::test]
async fn a_step_asking_for_gpus_gets_them_and_its_job_needs_them() {
    let mut task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    assert_eq!((task.gpus(), job::needs(&task).unwrap().gpus), (0, 0));
    task.steps[0].gpus = 2;
    assert_eq!((task.gpus(), job::needs(&task).unwrap().gpus), (2, 2));
    // The devices the worker gave the job (see daemon::free_devices) reach its steps.
    task.gpu_devices = vec![1, 2];
    let submission = folder_with(&[("train.py", "x = 1\n"), ("predict.py", "x = 1\n")]);
    let script = Script { output: Some(perfect_predictions()), ..Default::default() };
    let fake = FakeSandbox { script, ran: Arc::default(), closed: Arc::default(), gpus: Arc::default(), images: Arc::default() };
    let image = ImageRef { tag: "takehome/python:fake".into(), id: "sha256:fake".into() };
    job::grade(&fake, &task, submission.path(), &image, "gpujob", &CancellationToken::new(), &|_| {}).await.unwrap();
    let asked: Vec<GpuAsk> = fake.gpus.lock().unwrap().iter().filter(|(name, _, _)| name != "lint").cloned().collect();
    assert_eq!(asked, [("train".to_string(), 2, vec![1, 2]), ("predict".to_string(), 0, vec![1, 2])]);

    // The task file says it, and refuses what is not a small whole number.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("tasks/diamond-cut/task.yaml")).unwrap();
    let with = text.replacen("    timeout: 5m\n", "    timeout: 5m\n    gpus: 1\n", 1);
    assert_eq!(takehome::task::parse(&with, &repo_root().join("tasks/diamond-cut")).unwrap().steps[0].gpus, 1);
    let bad = text.replacen("    timeout: 5m\n", "    timeout: 5m\n    gpus: -1\n", 1);
    let said: Vec<String> = takehome::task::parse(&bad, dir.path()).unwrap_err().iter().map(|p| p.to_string()).collect();
    assert!(said.iter().any(|p| p.contains("steps[0].gpus") && p.contains("whole number from 0 to 16")), "{said:?}");
}

#[tokio::test]
async fn a_submission_that_imports_torch_runs_its_python_steps_in_the_extended_image() {
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    assert_eq!(task.extended_images, ["python"]);
    assert_eq!(task.images(), ["python-slim", "python"], "its own, then the extended image");
    let torch_tag = takehome::sandbox::image::Recipe::load(&repo_root(), "python").unwrap().tag();
    let image = ImageRef { tag: "takehome/python-slim:fake".into(), id: "sha256:fake".into() };
    let notebook = r#"{"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "import torch.nn as nn\n"]}], "nbformat": 4}"#;
    for (files, wanted) in [
        (vec![("train.py", "import pandas\n"), ("predict.py", "import sklearn\n")], None),
        (vec![("train.ipynb", notebook), ("predict.py", "from model import Net\n"), ("model.py", "from torch import nn\n")], Some(torch_tag.clone())),
        // The submission's own torch.py is not PyTorch.
        (vec![("train.py", "import torch\n"), ("predict.py", "x = 1\n"), ("torch.py", "x = 1\n")], None),
    ] {
        let submission = folder_with(&files);
        let script = Script { output: Some(perfect_predictions()), ..Default::default() };
        let fake = FakeSandbox { script, ran: Arc::default(), closed: Arc::default(), gpus: Arc::default(), images: Arc::default() };
        let report = job::grade(&fake, &task, submission.path(), &image, "dljob", &CancellationToken::new(), &|_| {}).await.unwrap();
        let asked: Vec<ImageAsk> = fake.images.lock().unwrap().iter().filter(|(name, _)| name != "lint").cloned().collect();
        assert_eq!(asked, [("train".to_string(), wanted.clone()), ("predict".to_string(), wanted.clone())], "{files:?}");
        let ran_in = report.provenance.extended_image.as_ref().map(|e| (e.image.as_str(), e.modules.clone()));
        assert_eq!(ran_in, wanted.as_ref().map(|_| ("python", vec!["torch".to_string()])), "{files:?}");
        // The daemon and `grade` build the 10 GB image only for a submission that needs it.
        let built = job::other_images(&task, submission.path());
        assert_eq!(built, wanted.as_ref().map(|_| vec!["python".to_string()]).unwrap_or_default(), "{files:?}");
    }
}
