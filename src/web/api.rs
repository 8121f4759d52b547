//! The JSON API: assessors (session or Basic, [`Assessor`]) and candidates (their token,
//! [`Candidate`]; only [`CandidateReport`]s), and `/metrics` (a bearer token from the config, or
//! off).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Assessor, Candidate};
use super::{blocking, now, App, Failure};
use crate::report::{CandidateReport, Report};
use crate::store::Store;

/// One submission as its candidate sees it.
#[derive(Debug, Serialize)]
pub struct CandidateSubmission {
    pub number: i64,
    pub commit: String,
    pub pushed_at: String,
    pub status: String,
    pub grade_status: Option<String>,
    pub report: Option<CandidateReport>,
}

/// The candidate's view of every submission of an assignment, newest first.
pub async fn candidate_view(app: &Arc<App>, assignment: &str) -> Result<Vec<CandidateSubmission>, Failure> {
    let id = assignment.to_string();
    let rows = blocking(app, move |store| {
        let submissions = store.submissions(Some(&id), None)?;
        submissions.into_iter().map(|s| Ok((s.clone(), store.submission(s.id)?.and_then(|(_, r)| r)))).collect::<crate::store::Result<Vec<_>>>()
    })
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, report)| CandidateSubmission {
            number: s.number,
            commit: s.commit,
            pushed_at: crate::report::rfc3339(s.pushed_at),
            status: s.status,
            grade_status: s.grade_status,
            report: report.and_then(|r| serde_json::from_str::<Report>(&r).ok()).map(|r| CandidateReport::from_report(&r)),
        })
        .collect())
}

pub async fn status(State(app): State<Arc<App>>, Candidate(a): Candidate) -> Response {
    match candidate_view(&app, &a.id).await {
        Ok(rows) => {
            axum::Json(serde_json::json!({ "assignment": a.id, "task": a.task, "seconds_left": a.seconds_left(now()), "submissions": rows })).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

pub async fn assignments(State(app): State<Arc<App>>, _assessor: Assessor) -> Response {
    match blocking(&app, |store| store.assignments()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

#[derive(Deserialize)]
pub struct SubmissionFilter {
    task: Option<String>,
    assignment: Option<String>,
}

pub async fn submissions(State(app): State<Arc<App>>, _assessor: Assessor, Query(filter): Query<SubmissionFilter>) -> Response {
    match blocking(&app, move |store| store.submissions(filter.assignment.as_deref(), filter.task.as_deref())).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

pub async fn submission(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> Response {
    match blocking(&app, move |store| Ok((store.submission(id)?, store.notes(id)?))).await {
        Ok((Some((submission, report)), notes)) => {
            let report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str(&r).ok());
            axum::Json(serde_json::json!({ "submission": submission, "report": report, "notes": notes })).into_response()
        }
        Ok((None, _)) => Failure::not_found("such submission").into_response(),
        Err(failure) => failure.into_response(),
    }
}

pub async fn regrade_one(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> Response {
    regrade(&app, Some(id), None).await
}

pub async fn regrade_task(State(app): State<Arc<App>>, Path(task): Path<String>, _assessor: Assessor) -> Response {
    regrade(&app, None, Some(task)).await
}

/// Queues graded submissions again and wakes the workers; answers how many were queued.
async fn regrade(app: &Arc<App>, submission: Option<i64>, task: Option<String>) -> Response {
    match blocking(app, move |store| store.regrade(submission, task.as_deref())).await {
        Ok(n) => {
            app.work.notify_waiters();
            axum::Json(serde_json::json!({ "queued": n })).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

/// The latest graded submission of each assignment of a task, best first.
pub async fn comparison(app: &Arc<App>, task: &str) -> Result<Vec<crate::store::Submission>, Failure> {
    let task = task.to_string();
    let submissions = blocking(app, move |store| store.submissions(None, Some(&task))).await?;
    let mut latest: Vec<crate::store::Submission> = Vec::new();
    for s in submissions.into_iter().filter(|s| s.score.is_some()) {
        if !latest.iter().any(|l| l.assignment == s.assignment) {
            latest.push(s);
        }
    }
    latest.sort_by(|a, b| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)));
    Ok(latest)
}

pub async fn compare(State(app): State<Arc<App>>, Path(task): Path<String>, _assessor: Assessor) -> Response {
    match comparison(&app, &task).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
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
    let counts = blocking(&app, |store| store.counts()).await.unwrap_or_default();
    let mut text = String::new();
    let queued: i64 = counts.iter().filter(|(s, _)| s == "queued").map(|(_, n)| n).sum();
    let running: i64 = counts.iter().filter(|(s, _)| s == "running").map(|(_, n)| n).sum();
    text.push_str("# HELP takehome_queue_depth Submissions waiting to be graded.\n# TYPE takehome_queue_depth gauge\n");
    text.push_str(&format!("takehome_queue_depth {queued}\n"));
    text.push_str("# HELP takehome_jobs_running Submissions being graded.\n# TYPE takehome_jobs_running gauge\n");
    text.push_str(&format!("takehome_jobs_running {running}\n"));
    text.push_str("# HELP takehome_jobs Submissions by outcome.\n# TYPE takehome_jobs gauge\n");
    for (status, n) in &counts {
        text.push_str(&format!("takehome_jobs{{outcome=\"{status}\"}} {n}\n"));
    }
    let metrics = app.metrics.lock().unwrap();
    text.push_str("# HELP takehome_step_duration_seconds Wall time of grading steps.\n# TYPE takehome_step_duration_seconds summary\n");
    let mut steps: Vec<_> = metrics.step_seconds.iter().collect();
    steps.sort_by(|a, b| a.0.cmp(b.0));
    for (step, (sum, count)) in steps {
        let step = step.replace(['"', '\\', '\n'], "_");
        text.push_str(&format!(
            "takehome_step_duration_seconds_sum{{step=\"{step}\"}} {sum}\ntakehome_step_duration_seconds_count{{step=\"{step}\"}} {count}\n"
        ));
    }
    text.push_str(&format!(
        "# TYPE takehome_pushes_total counter\ntakehome_pushes_total{{result=\"accepted\"}} {}\ntakehome_pushes_total{{result=\"refused\"}} {}\n",
        metrics.pushes_accepted, metrics.pushes_refused
    ));
    text.push_str(&format!("# TYPE takehome_connections_refused_total counter\ntakehome_connections_refused_total {}\n", metrics.connections_refused));
    text.push_str(&format!("# TYPE takehome_logins_limited_total counter\ntakehome_logins_limited_total {}\n", metrics.logins_limited));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
