//! The JSON API: assessors (session or Basic, [`Assessor`]) and candidates (their token,
//! [`Candidate`]; only [`CandidateReport`]s), and `/metrics` (a bearer token from the config, or
//! off).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Assessor, Candidate};
use super::{now, stored, App, Failure};
use crate::report::{CandidateReport, Report};
use crate::store::JobStatus;

/// One submission as its candidate sees it.
#[derive(Debug, Serialize)]
pub struct CandidateSubmission {
    pub number: i64,
    pub commit: String,
    pub pushed_at: String,
    #[serde(skip)]
    pub pushed_at_seconds: i64,
    pub status: String,
    pub grade_status: Option<String>,
    /// When a queued push is graded at the earliest (a push beyond the graded pushes per hour
    /// waits its turn); `None` once it may run.
    pub graded_from: Option<String>,
    /// Whether this answer carries the push's runs (`report`, `public_run`): only for the newest
    /// [`RUNS_SHOWN`] pushes and the push that counts.
    pub runs_shown: bool,
    /// The graded run on hidden data, as far as the candidate may see it.
    pub report: Option<CandidateReport>,
    /// The dry run on public data: every step's logs, exit code, time and memory, the outputs'
    /// format check, and a public score where the task allows it. `None` until it has run.
    pub public_run: Option<PublicRunView>,
}

/// A submission's public dry run as its candidate sees it.
#[derive(Debug, Serialize)]
pub struct PublicRunView {
    /// Built from a report of steps that read public data only: every detail is the candidate's.
    pub report: Option<CandidateReport>,
    /// Set when the dry run could not be done on our side (never counted against the candidate).
    pub not_run: Option<String>,
    /// The dry run's accuracy per output, where the task shows it (`public_run.show_score`).
    pub public_score: Option<Vec<PublicScore>>,
}

#[derive(Debug, Serialize)]
pub struct PublicScore {
    pub file: String,
    pub metric: String,
    pub value: Option<f64>,
}

impl PublicRunView {
    /// See [`CandidateReport::trimmed`].
    pub fn trimmed(mut self, log_bytes: usize, findings: usize) -> PublicRunView {
        self.report = self.report.map(|r| r.trimmed(log_bytes, findings));
        self
    }

    pub fn of(run: crate::job::PublicRun) -> PublicRunView {
        let not_run = run.error.as_ref().map(|_| "the public run could not be done on our side; it is not counted against you".to_string());
        let public_score = run.report.as_ref().filter(|_| run.show_score).map(|r| {
            r.components
                .accuracy
                .each(&r.output.file)
                .into_iter()
                .map(|o| PublicScore { file: o.file.to_string(), metric: o.accuracy.metric.clone(), value: o.accuracy.value })
                .collect()
        });
        // Only a report whose every step read public data is shown whole.
        let report = run.report.filter(|r| r.steps.iter().all(|s| s.candidate_logs)).map(|r| CandidateReport::from_report(&r));
        PublicRunView { report, not_run, public_score }
    }
}

/// Pushes whose runs (reports and logs) the status page and its API carry: the newest ones, and
/// the push that counts. However many pushes an assignment has, an answer stays this size.
pub const RUNS_SHOWN: usize = 10;
/// Pushes listed (number, commit, time, status) in the status page and its API, newest first.
pub const PUSHES_LISTED: usize = 200;
/// Per shown run, the bytes of each log's tail and the lint findings an answer carries: more for
/// the newest push (the one being fixed), less for the others, so that a status answer stays near
/// 2 MB at most whatever was pushed (each stream's tail is kept up to 1 MiB in the report).
const NEWEST_LOG_BYTES: usize = 64 << 10;
const OLDER_LOG_BYTES: usize = 8 << 10;
const NEWEST_FINDINGS: usize = 200;
const OLDER_FINDINGS: usize = 20;

/// The candidate's pushes, as far as a status answer carries them.
#[derive(Debug, Serialize)]
pub struct CandidatePushes {
    /// Every push of the assignment.
    pub total: usize,
    /// The newest [`PUSHES_LISTED`], newest first; the runs of [`RUNS_SHOWN`] of them (and of the
    /// push that counts) are filled in.
    pub listed: Vec<CandidateSubmission>,
}

/// The candidate's view of an assignment's pushes, newest first, bounded whatever their number:
/// reports are read for the newest [`RUNS_SHOWN`] pushes and for `final_push`.
pub async fn candidate_view(app: &Arc<App>, assignment: &str, final_push: Option<i64>) -> Result<CandidatePushes, Failure> {
    let mut submissions = stored(app.store.submissions(Some(assignment), None)).await?;
    submissions.sort_by_key(|s| std::cmp::Reverse(s.number));
    let total = submissions.len();
    let now = super::now();
    let mut listed = Vec::with_capacity(total.min(PUSHES_LISTED));
    for (index, s) in submissions.into_iter().enumerate() {
        let final_one = final_push == Some(s.number);
        if index >= PUSHES_LISTED && !final_one {
            continue;
        }
        let runs_shown = index < RUNS_SHOWN || final_one;
        let (log_bytes, findings) = if index == 0 { (NEWEST_LOG_BYTES, NEWEST_FINDINGS) } else { (OLDER_LOG_BYTES, OLDER_FINDINGS) };
        let (report, public) = if runs_shown {
            let report = stored(app.store.submission(s.id)).await?.and_then(|(_, r)| r);
            let public = stored(app.store.public_run(s.id)).await?.and_then(|body| serde_json::from_str::<crate::job::PublicRun>(&body).ok());
            (report, public)
        } else {
            (None, None)
        };
        listed.push(CandidateSubmission {
            public_run: public.map(|run| PublicRunView::of(run).trimmed(log_bytes, findings)),
            number: s.number,
            graded_from: (s.status == JobStatus::Queued && s.run_after > now).then(|| crate::report::rfc3339(s.run_after)),
            commit: s.commit,
            pushed_at: crate::report::rfc3339(s.pushed_at),
            pushed_at_seconds: s.pushed_at,
            status: s.status.as_str().to_string(),
            grade_status: s.grade_status.map(|g| g.as_str().to_string()),
            runs_shown,
            report: report.and_then(|r| serde_json::from_str::<Report>(&r).ok()).map(|r| CandidateReport::from_report(&r).trimmed(log_bytes, findings)),
        });
    }
    Ok(CandidatePushes { total, listed })
}

/// Feedback the assessors released to the candidate (the latest release), if any.
pub async fn released_feedback(app: &Arc<App>, assignment: &str) -> Result<Option<crate::review::ReleaseBody>, Failure> {
    let items = stored(app.store.reviews(Some(assignment))).await?;
    Ok(items.iter().rev().find(|i| i.kind == crate::store::ReviewKind::Release).and_then(|i| serde_json::from_str(&i.body).ok()))
}

/// What the status page shows beside the pushes: deadline, extensions, the push that counts.
#[derive(Debug, Serialize)]
pub struct CandidateTime {
    pub deadline: Option<String>,
    pub time_box_seconds: i64,
    /// Extra time given, with the assessors' reasons (their names stay with them).
    pub extensions: Vec<CandidateExtension>,
    /// The push that counts (its number), and when it was chosen if the candidate chose it.
    pub final_push: Option<i64>,
    pub final_chosen_at: Option<String>,
    /// Whether the task lets the candidate choose the final push.
    pub can_choose_final: bool,
    /// The brief (Markdown) and where to push.
    pub brief: Option<String>,
    pub clone_url: String,
}

#[derive(Debug, Serialize)]
pub struct CandidateExtension {
    pub minutes: i64,
    pub reason: String,
    pub at: String,
}

pub async fn candidate_time(app: &Arc<App>, a: &crate::store::Assignment) -> Result<CandidateTime, Failure> {
    let extensions = stored(app.store.extensions(&a.id)).await?;
    let submissions = stored(app.store.submissions(Some(&a.id), None)).await?;
    let counting = super::candidate::counting(app, a, &submissions).await?;
    let task = crate::task::load(&app.config.tasks_root.join("tasks").join(&a.task)).ok();
    let can_choose_final = task.as_ref().is_some_and(|t| t.candidate_chooses_final);
    let brief = task.as_ref().and_then(|t| std::fs::read_to_string(t.dir.join(&t.brief)).ok());
    Ok(CandidateTime {
        deadline: a.deadline().map(crate::report::rfc3339),
        time_box_seconds: a.total_seconds(),
        extensions: extensions
            .into_iter()
            .map(|e| CandidateExtension { minutes: e.seconds / 60, reason: e.reason, at: crate::report::rfc3339(e.created_at) })
            .collect(),
        final_push: counting.as_ref().map(|c| c.number),
        final_chosen_at: counting.and_then(|c| c.chosen_at).map(crate::report::rfc3339),
        can_choose_final,
        brief,
        clone_url: format!("{}/git/{}.git", app.config.public_url.trim_end_matches('/'), a.id),
    })
}

pub async fn status(State(app): State<Arc<App>>, Candidate(a): Candidate) -> Response {
    let gathered = async {
        let time = candidate_time(&app, &a).await?;
        Ok::<_, Failure>((candidate_view(&app, &a.id, time.final_push).await?, released_feedback(&app, &a.id).await?, time))
    };
    match gathered.await {
        Ok((pushes, feedback, time)) => {
            let now = now();
            axum::Json(serde_json::json!({ "assignment": a.id, "task": a.task, "clock": a.clock(now), "seconds_left": a.seconds_left(now),
                "deadline": time.deadline, "time_box_seconds": time.time_box_seconds, "extensions": time.extensions,
                "final_push": time.final_push, "final_chosen_at": time.final_chosen_at, "can_choose_final": time.can_choose_final,
                "brief": time.brief, "clone_url": time.clone_url,
                "pushes_total": pushes.total, "runs_shown": RUNS_SHOWN, "submissions": pushes.listed, "feedback": feedback }))
            .into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

pub async fn assignments(State(app): State<Arc<App>>, _assessor: Assessor) -> Response {
    match async { Ok::<_, Failure>((stored(app.store.assignments()).await?, super::review::Blinds::load(&app).await?)) }.await {
        Ok((mut rows, blinds)) => {
            rows.iter_mut().for_each(|a| blinds.assignment(a));
            axum::Json(rows).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

#[derive(Deserialize)]
pub struct SubmissionFilter {
    task: Option<String>,
    assignment: Option<String>,
}

pub async fn submissions(State(app): State<Arc<App>>, _assessor: Assessor, Query(filter): Query<SubmissionFilter>) -> Response {
    match async {
        Ok::<_, Failure>((stored(app.store.submissions(filter.assignment.as_deref(), filter.task.as_deref())).await?, super::review::Blinds::load(&app).await?))
    }
    .await
    {
        Ok((mut rows, blinds)) => {
            rows.iter_mut().for_each(|s| blinds.submission(s));
            axum::Json(rows).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

pub async fn submission(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> Response {
    let blinds = match super::review::Blinds::load(&app).await {
        Ok(blinds) => blinds,
        Err(failure) => return failure.into_response(),
    };
    match stored(async { Ok((app.store.submission(id).await?, app.store.notes(id).await?)) }).await {
        Ok((Some((mut submission, report)), notes)) => {
            let mut report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str(&r).ok());
            if let Some(report) = report.as_mut() {
                blinds.report_json(&submission.assignment, &submission.task, report);
            }
            blinds.submission(&mut submission);
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

/// Answers how many submissions were queued again.
async fn regrade(app: &Arc<App>, submission: Option<i64>, task: Option<String>) -> Response {
    match queue_regrade(app, submission, task).await {
        Ok(n) => axum::Json(serde_json::json!({ "queued": n })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// Queues graded submissions again (one, or every one of a task) with the digests of the task
/// and data set as they are now, and wakes the workers; returns how many were queued.
pub async fn queue_regrade(app: &Arc<App>, submission: Option<i64>, task: Option<String>) -> Result<usize, Failure> {
    let task_now = match (&task, submission) {
        (Some(task), _) => Some(task.clone()),
        (None, Some(id)) => stored(app.store.submission(id)).await?.map(|(s, _)| s.task),
        (None, None) => None,
    };
    let mut needs = std::collections::HashMap::new();
    if let Some(task_now) = task_now {
        let found = crate::job::needs_of(&app.config.tasks_root, &task_now).await.map_err(|e| Failure::internal(format!("task {task_now}: {e}")))?;
        needs.insert(task_now, found);
    }
    let n = stored(app.store.regrade(submission, task.as_deref(), &needs)).await?;
    app.work.notify_waiters();
    Ok(n)
}

/// The graded submission that counts for each assignment of a task (the candidate's chosen
/// final push where the task allows a choice, else the latest graded), best first.
pub async fn comparison(app: &Arc<App>, task: &str) -> Result<Vec<crate::store::Submission>, Failure> {
    let submissions = stored(app.store.submissions(None, Some(task))).await?;
    let chooses = crate::task::load(&app.config.tasks_root.join("tasks").join(task)).map(|t| t.candidate_chooses_final).unwrap_or(false);
    let mut chosen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    if chooses {
        let mut assignments: Vec<&str> = submissions.iter().map(|s| s.assignment.as_str()).collect();
        assignments.sort_unstable();
        assignments.dedup();
        for a in assignments {
            if let Some((submission, _)) = stored(app.store.final_choice(a)).await? {
                chosen.insert(a.to_string(), submission);
            }
        }
    }
    let mut latest: Vec<crate::store::Submission> = Vec::new();
    let graded: Vec<crate::store::Submission> = submissions.into_iter().filter(|s| s.score.is_some()).collect();
    for s in &graded {
        if latest.iter().any(|l| l.assignment == s.assignment) {
            continue;
        }
        // The chosen push if it is graded, else the newest graded one (submissions come newest first).
        let pick = chosen.get(&s.assignment).and_then(|id| graded.iter().find(|g| g.id == *id)).unwrap_or(s);
        latest.push(pick.clone());
    }
    latest.sort_by(|a, b| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)));
    let blinds = super::review::Blinds::load(app).await?;
    latest.iter_mut().for_each(|s| blinds.submission(s));
    Ok(latest)
}

pub async fn compare(State(app): State<Arc<App>>, Path(task): Path<String>, _assessor: Assessor) -> Response {
    match comparison(&app, &task).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// Every worker instance the store knows, live ones first, with what each holds now.
pub async fn workers(State(app): State<Arc<App>>, _assessor: Assessor) -> Response {
    match stored(app.store.workers()).await {
        Ok(workers) => {
            let now = now();
            let rows: Vec<serde_json::Value> = workers
                .iter()
                .map(|w| {
                    let mut value = serde_json::to_value(w).unwrap_or_default();
                    value["alive"] = serde_json::Value::Bool(w.alive(now));
                    value["seconds_since_heartbeat"] = serde_json::Value::from(now - w.heartbeat_at);
                    value
                })
                .collect();
            axum::Json(serde_json::json!({ "backend": app.store.backend(), "workers": rows })).into_response()
        }
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
