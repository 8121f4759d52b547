//! The JSON API: assessors (session or Basic, [`Assessor`]) and candidates (their token,
//! [`Candidate`]; only [`CandidateReport`](crate::report::CandidateReport)s), and `/metrics` (a bearer token from the config, or
//! off).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::auth::{Assessor, Candidate};
use super::candidate::{candidate_time, candidate_view, released_feedback, RUNS_SHOWN};
use super::queries::{comparison, queue_regrade, Blinds};
use super::TaskInPath;
use super::{now, stored, App, AppResult, Failure};
use crate::store::{JobStatus, Submission};

pub async fn status(State(app): State<Arc<App>>, Candidate(a): Candidate) -> AppResult<Json<Value>> {
    let time = candidate_time(&app, &a).await?;
    let pushes = candidate_view(&app, &a.id, time.final_push).await?;
    let feedback = released_feedback(&app, &a.id).await?;
    let now = now();
    Ok(Json(serde_json::json!({ "assignment": a.id, "task": a.task, "clock": a.clock(now), "seconds_left": a.seconds_left(now),
        "deadline": time.deadline, "time_box_seconds": time.time_box_seconds, "extensions": time.extensions,
        "final_push": time.final_push, "final_chosen_at": time.final_chosen_at, "can_choose_final": time.can_choose_final,
        "brief": time.brief, "clone_url": time.clone_url,
        "pushes_total": pushes.total, "runs_shown": RUNS_SHOWN, "submissions": pushes.listed, "feedback": feedback })))
}

pub async fn assignments(State(app): State<Arc<App>>, _assessor: Assessor) -> AppResult<Json<Vec<crate::store::Assignment>>> {
    let mut rows = stored(app.store.assignments()).await?;
    let blinds = Blinds::load(&app).await?;
    rows.iter_mut().for_each(|a| blinds.assignment(a));
    Ok(Json(rows))
}

#[derive(Deserialize)]
pub struct SubmissionFilter {
    task: Option<String>,
    assignment: Option<String>,
}

pub async fn submissions(State(app): State<Arc<App>>, _assessor: Assessor, Query(filter): Query<SubmissionFilter>) -> AppResult<Json<Vec<Submission>>> {
    // A text that is not a task id names no task: no rows, as before ids were checked.
    let task = match filter.task.as_deref().map(crate::task::TaskId::parse) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Ok(Json(Vec::new())),
    };
    let mut rows = stored(app.store.submissions(filter.assignment.as_deref(), task.as_ref())).await?;
    let blinds = Blinds::load(&app).await?;
    rows.iter_mut().for_each(|s| blinds.submission(s));
    Ok(Json(rows))
}

pub async fn submission(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> AppResult<Json<Value>> {
    let blinds = Blinds::load(&app).await?;
    let (found, notes) = stored(async { Ok((app.store.submission(id).await?, app.store.notes(id).await?)) }).await?;
    let (mut submission, report) = found.ok_or_else(|| Failure::not_found("such submission"))?;
    let mut report: Option<Value> = report.and_then(|r| serde_json::from_str(&r).ok());
    if let Some(report) = report.as_mut() {
        blinds.report_json(&submission.assignment, &submission.task, report);
    }
    blinds.submission(&mut submission);
    Ok(Json(serde_json::json!({ "submission": submission, "report": report, "notes": notes })))
}

/// Answers how many submissions were queued again.
pub async fn regrade_one(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> AppResult<Json<Value>> {
    Ok(Json(serde_json::json!({ "queued": queue_regrade(&app, Some(id), None).await? })))
}

pub async fn regrade_task(State(app): State<Arc<App>>, _assessor: Assessor, TaskInPath(task): TaskInPath) -> AppResult<Json<Value>> {
    Ok(Json(serde_json::json!({ "queued": queue_regrade(&app, None, Some(task)).await? })))
}

pub async fn compare(State(app): State<Arc<App>>, _assessor: Assessor, TaskInPath(task): TaskInPath) -> AppResult<Json<Vec<Submission>>> {
    Ok(Json(comparison(&app, &task).await?))
}

/// Every worker instance the store knows, live ones first, with what each holds now.
pub async fn workers(State(app): State<Arc<App>>, _assessor: Assessor) -> AppResult<Json<Value>> {
    let workers = stored(app.store.workers()).await?;
    let now = now();
    let rows: Vec<Value> = workers
        .iter()
        .map(|w| {
            let mut value = serde_json::to_value(w).unwrap_or_default();
            value["alive"] = Value::Bool(w.alive(now));
            value["seconds_since_heartbeat"] = Value::from(now - w.heartbeat_at);
            value
        })
        .collect();
    Ok(Json(serde_json::json!({ "backend": app.store.backend(), "workers": rows })))
}

/// Prometheus text, for a scraper holding `metrics_token` as a bearer token. Off without one.
pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(expected) = app.config.metrics_token.as_deref() else {
        return Failure::not_found("metrics here (set metrics_token in the config to turn them on)").into_response();
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !crate::secret::same(given, expected) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n").into_response();
    }
    let counts = app.store.counts().await.unwrap_or_default();
    let mut text = String::new();
    let count = |status: JobStatus| -> i64 { counts.iter().filter(|(s, _)| s == status.as_str()).map(|(_, n)| n).sum() };
    let (queued, running) = (count(JobStatus::Queued), count(JobStatus::Running));
    text.push_str("# HELP takehome_queue_depth Submissions waiting to be graded.\n# TYPE takehome_queue_depth gauge\n");
    text.push_str(&format!("takehome_queue_depth {queued}\n"));
    text.push_str("# HELP takehome_jobs_running Submissions being graded.\n# TYPE takehome_jobs_running gauge\n");
    text.push_str(&format!("takehome_jobs_running {running}\n"));
    text.push_str("# HELP takehome_jobs Submissions by outcome.\n# TYPE takehome_jobs gauge\n");
    for (status, n) in &counts {
        text.push_str(&format!("takehome_jobs{{outcome=\"{status}\"}} {n}\n"));
    }
    if let Ok(workers) = app.store.workers().await {
        let now = now();
        text.push_str("# HELP takehome_workers_alive Worker instances holding a current lease.\n# TYPE takehome_workers_alive gauge\n");
        text.push_str(&format!("takehome_workers_alive {}\n", workers.iter().filter(|w| w.alive(now)).count()));
    }
    let metrics = app.metrics.lock().unwrap();
    text.push_str(&worker_counters(&metrics));
    text.push_str(&format!(
        "# TYPE takehome_pushes_total counter\ntakehome_pushes_total{{result=\"accepted\"}} {}\ntakehome_pushes_total{{result=\"refused\"}} {}\n",
        metrics.pushes_accepted, metrics.pushes_refused
    ));
    text.push_str(&format!("# TYPE takehome_connections_refused_total counter\ntakehome_connections_refused_total {}\n", metrics.connections_refused));
    text.push_str(&format!("# TYPE takehome_logins_limited_total counter\ntakehome_logins_limited_total {}\n", metrics.logins_limited));
    if let Some(connections) = app.store.connections() {
        text.push_str(&format!("# TYPE takehome_database_connections gauge\ntakehome_database_connections {connections}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The counters of this process's grading: steps, jobs, refused results, lost leases.
fn worker_counters(metrics: &super::Metrics) -> String {
    let mut text = String::new();
    text.push_str("# HELP takehome_step_duration_seconds Wall time of grading steps.\n# TYPE takehome_step_duration_seconds summary\n");
    let mut steps: Vec<_> = metrics.step_seconds.iter().collect();
    steps.sort_by(|a, b| a.0.cmp(b.0));
    for (step, (sum, count)) in steps {
        let step = step.replace(['"', '\\', '\n'], "_");
        text.push_str(&format!(
            "takehome_step_duration_seconds_sum{{step=\"{step}\"}} {sum}\ntakehome_step_duration_seconds_count{{step=\"{step}\"}} {count}\n"
        ));
    }
    for (name, help, value) in [
        ("takehome_jobs_graded_total", "Reports stored by this process.", metrics.jobs_graded),
        ("takehome_jobs_failed_total", "Attempts that failed on our side.", metrics.jobs_failed),
        ("takehome_results_refused_total", "Results refused: the job's lease had gone to another worker.", metrics.results_refused),
        ("takehome_leases_lost_total", "Jobs stopped because their lease ran out or was taken.", metrics.leases_lost),
    ] {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
    }
    text
}

/// A worker's health: who it is, what it runs, and what the store says of it.
pub async fn worker_health(State(status): State<Arc<super::WorkerStatus>>) -> Response {
    let me = status.store.workers().await.ok().and_then(|all| all.into_iter().find(|w| w.instance == status.instance));
    let alive = me.as_ref().is_some_and(|w| w.alive(now()));
    let body = serde_json::json!({
        "name": status.name,
        "instance": status.instance,
        "slots": status.slots,
        "running": status.running.load(std::sync::atomic::Ordering::Relaxed),
        "alive": alive,
        "health": me.as_ref().map(|w| w.health.clone()).unwrap_or_default(),
        "gpus": me.as_ref().map(|w| w.gpus).unwrap_or(0),
        "store": status.store.backend(),
    });
    let code = if alive { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

/// A worker's Prometheus text (the same bearer token as the server's; off without one).
pub async fn worker_metrics(State(status): State<Arc<super::WorkerStatus>>, headers: HeaderMap) -> Response {
    let Some(expected) = status.metrics_token.as_deref() else {
        return Failure::not_found("metrics here (set metrics_token in the config to turn them on)").into_response();
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !crate::secret::same(given, expected) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n").into_response();
    }
    let mut text = worker_counters(&status.metrics.lock().unwrap());
    text.push_str(&format!(
        "# TYPE takehome_worker_slots gauge\ntakehome_worker_slots {}\n# TYPE takehome_worker_jobs_running gauge\ntakehome_worker_jobs_running {}\n",
        status.slots,
        status.running.load(std::sync::atomic::Ordering::Relaxed)
    ));
    if let Some(connections) = status.store.connections() {
        text.push_str(&format!("# TYPE takehome_database_connections gauge\ntakehome_database_connections {connections}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
