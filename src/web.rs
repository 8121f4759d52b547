//! HTTP: git's smart protocol for candidates, the assessor web UI and JSON API, the candidate's
//! status page, `/healthz` and `/metrics`.
//!
//! Invariants: only this module knows routes. Every handler authenticates first (a candidate by
//! the assignment's token, an assessor by login session or Basic credentials) and answers a status
//! code with `{"error": …}` (API) or a page, logging the error chain once. Names from users never
//! reach a path unchecked: assignment and task ids are checked with `task::is_name`. Candidate
//! text in pages goes through the report's HTML escaping.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tokio::sync::Notify;
use tracing::{error, info};

use crate::config::Config;
use crate::intake::{self, Repos, Service};
use crate::report::html::esc;
use crate::report::{Report, View};
use crate::store::{SqliteStore, Store};

/// What every handler shares.
pub struct App {
    pub config: Config,
    pub store: Arc<SqliteStore>,
    pub repos: Repos,
    /// Woken when a push queues a job.
    pub work: Arc<Notify>,
    sessions: Mutex<HashMap<String, String>>,
    pub metrics: Mutex<Metrics>,
}

/// Counters for `/metrics` that the store does not hold.
#[derive(Default)]
pub struct Metrics {
    /// Per step name: (seconds summed, count).
    pub step_seconds: HashMap<String, (f64, u64)>,
    pub pushes_accepted: u64,
    pub pushes_refused: u64,
}

impl App {
    pub fn new(config: Config, store: Arc<SqliteStore>, work: Arc<Notify>) -> App {
        let repos = Repos::new(config.repos_dir());
        App { config, store, repos, work, sessions: Mutex::new(HashMap::new()), metrics: Mutex::new(Metrics::default()) }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let push_limit = app.config.max_push_bytes as usize + (16 << 20);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/git/{repo}/info/refs", get(info_refs))
        .route("/git/{repo}/{service}", post(rpc).layer(DefaultBodyLimit::max(push_limit)))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(dashboard))
        .route("/submissions/{id}", get(submission_page))
        .route("/submissions/{id}/regrade", post(regrade_one))
        .route("/submissions/{id}/notes", post(add_note))
        .route("/tasks/{task}/compare", get(compare_page))
        .route("/tasks/{task}/regrade", post(regrade_task))
        .route("/status/{assignment}", get(status_page))
        .route("/api/assignments", get(api_assignments))
        .route("/api/submissions", get(api_submissions))
        .route("/api/submissions/{id}", get(api_submission))
        .route("/api/submissions/{id}/regrade", post(api_regrade_one))
        .route("/api/tasks/{task}/compare", get(api_compare))
        .route("/api/tasks/{task}/regrade", post(api_regrade_task))
        .route("/api/status/{assignment}", get(api_status))
        .with_state(app)
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Runs store work on a blocking thread (SQLite calls block).
async fn blocking<T: Send + 'static>(app: &Arc<App>, f: impl FnOnce(&SqliteStore) -> crate::store::Result<T> + Send + 'static) -> Result<T, Failure> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app.store)).await.map_err(|e| Failure::internal(e.to_string()))?.map_err(|e| Failure::internal(e.to_string()))
}

/// An error answer: status and message, as JSON for the API and text otherwise.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn internal(message: String) -> Failure {
        error!(error = %message, "request failed on our side");
        Failure { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error (logged on the server)".into() }
    }
    fn not_found(what: &str) -> Failure {
        Failure { status: StatusCode::NOT_FOUND, message: format!("no {what}") }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "error": self.message }).to_string()).into_response()
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.trim().bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= value(b)? << (18 - 6 * i);
        }
        let n = chunk.len();
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

/// HTTP Basic credentials, if any.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn ask_for_credentials(realm: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))], "credentials required\n").into_response()
}

/// The assignment a candidate's request is for, after checking its token (the Basic password).
async fn candidate(app: &Arc<App>, assignment: &str, headers: &HeaderMap) -> Result<crate::store::Assignment, Response> {
    if !crate::task::is_name(assignment) {
        return Err(Failure::not_found("such assignment").into_response());
    }
    let Some((_, token)) = basic(headers) else { return Err(ask_for_credentials("takehome")) };
    let id = assignment.to_string();
    let found = blocking(app, move |store| store.assignment(&id)).await.map_err(IntoResponse::into_response)?;
    match found {
        // The same answer for a wrong token and an unknown assignment: nothing to probe.
        Some(a) if crate::secret::token_matches(&token, &a.token_hash) => Ok(a),
        _ => Err(ask_for_credentials("takehome")),
    }
}

/// The assessor behind a request: a login session cookie, or Basic credentials (for the API).
fn assessor(app: &App, headers: &HeaderMap) -> Option<String> {
    if let Some(cookie) = headers.get(header::COOKIE).and_then(|c| c.to_str().ok()) {
        for part in cookie.split(';') {
            if let Some(session) = part.trim().strip_prefix("takehome_session=") {
                if let Some(user) = app.sessions.lock().unwrap().get(&crate::secret::token_hash(session)) {
                    return Some(user.clone());
                }
            }
        }
    }
    let (user, password) = basic(headers)?;
    app.config.assessors.iter().find(|a| a.user == user && crate::secret::verify_password(&password, &a.password_hash)).map(|a| a.user.clone())
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · takehome</title><style>\
         body{{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}}nav{{background:#1d2430;color:#fff;padding:10px 24px}}\
         nav a{{color:#fff;margin-right:16px}}main{{max-width:1100px;margin:0 auto;padding:20px}}table{{border-collapse:collapse;width:100%;background:#fff}}\
         th,td{{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff3}}.num{{text-align:right}}section{{margin:18px 0}}\
         form.inline{{display:inline}}input,textarea,button{{font:inherit}}</style></head><body><nav><b>takehome</b> &nbsp; <a href=\"/\">dashboard</a></nav><main>{body}</main></body></html>",
        esc(title)
    ))
}

fn clock(seconds: i64) -> String {
    if seconds <= 0 {
        return "closed".into();
    }
    format!("{}h{:02}m left", seconds / 3600, seconds % 3600 / 60)
}

// ---------------------------------------------------------------- git

/// Starts the assignment's clock at `now` when `start` is asked and it has not started yet.
async fn started(app: &Arc<App>, assignment: crate::store::Assignment, start: bool, now: i64) -> Result<crate::store::Assignment, Failure> {
    if !start || assignment.started_at.is_some() {
        return Ok(assignment);
    }
    let id = assignment.id;
    blocking(app, move |store| store.start_clock(&id, now)).await
}

#[derive(Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

fn assignment_of(repo: &str) -> Option<&str> {
    repo.strip_suffix(".git").filter(|id| crate::task::is_name(id))
}

async fn info_refs(State(app): State<Arc<App>>, Path(repo): Path<String>, Query(query): Query<ServiceQuery>, headers: HeaderMap) -> Response {
    let Some(id) = assignment_of(&repo) else { return Failure::not_found("such repository").into_response() };
    let Some(service) = query.service.as_deref().and_then(Service::parse) else {
        return (StatusCode::FORBIDDEN, "only git's smart protocol is served\n").into_response();
    };
    let assignment = match candidate(&app, id, &headers).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let now = now();
    let start = service == Service::UploadPack && assignment.starts == "on-clone";
    let assignment = match started(&app, assignment, start, now).await {
        Ok(a) => a,
        Err(failure) => return failure.into_response(),
    };
    let content_type = format!("application/x-{}-advertisement", service.name());
    if service == Service::ReceivePack {
        if let Some(deadline) = assignment.deadline().filter(|&d| now > d) {
            app.metrics.lock().unwrap().pushes_refused += 1;
            let message = format!("takehome: the time box closed at {} (server time); pushes are no longer accepted", crate::report::rfc3339(deadline));
            return ([(header::CONTENT_TYPE, content_type)], intake::advertisement_error(service, &message)).into_response();
        }
    }
    match app.repos.serve(&assignment.id, service, true, &[]).await {
        Ok(refs) => {
            let mut body = intake::advertisement_header(service);
            body.extend(refs);
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache".into())], body).into_response()
        }
        Err(e) => Failure::internal(e.to_string()).into_response(),
    }
}

async fn rpc(State(app): State<Arc<App>>, Path((repo, service)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(id) = assignment_of(&repo) else { return Failure::not_found("such repository").into_response() };
    let Some(service) = Service::parse(&service) else { return Failure::not_found("such service").into_response() };
    let assignment = match candidate(&app, id, &headers).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let mut request = body.to_vec();
    if headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) == Some("gzip") {
        let mut decoded = Vec::new();
        let limit = app.config.max_push_bytes + (16 << 20);
        if flate2::read::GzDecoder::new(&request[..]).take(limit).read_to_end(&mut decoded).is_err() {
            return (StatusCode::BAD_REQUEST, "bad gzip body\n").into_response();
        }
        request = decoded;
    }
    let content_type = [(header::CONTENT_TYPE, format!("application/x-{}-result", service.name()))];
    if service == Service::UploadPack {
        return match app.repos.serve(&assignment.id, service, false, &request).await {
            Ok(out) => (content_type, out).into_response(),
            Err(e) => Failure::internal(e.to_string()).into_response(),
        };
    }

    // A push: the server's clock decides, then the size, then git.
    let now = now();
    let assignment = match started(&app, assignment, true, now).await {
        Ok(a) => a,
        Err(failure) => return failure.into_response(),
    };
    let refuse = |reason: String| {
        app.metrics.lock().unwrap().pushes_refused += 1;
        info!(assignment = %assignment.id, reason = %reason, "push refused");
        (content_type.clone(), intake::refusal(&request, &reason)).into_response()
    };
    if assignment.deadline().is_some_and(|d| now > d) {
        return refuse(format!("the time box closed at {} (server time)", crate::report::rfc3339(assignment.deadline().unwrap())));
    }
    if request.len() as u64 > app.config.max_push_bytes {
        return refuse(format!("the push is larger than {}", crate::units::format_size(app.config.max_push_bytes)));
    }
    let repos = app.repos.clone();
    let id = assignment.id.clone();
    let before = tokio::task::spawn_blocking({
        let (repos, id) = (repos.clone(), id.clone());
        move || repos.main_commit(&id)
    })
    .await
    .ok()
    .flatten();
    let output = match repos.serve(&id, service, false, &request).await {
        Ok(out) => out,
        Err(e) => return Failure::internal(e.to_string()).into_response(),
    };
    let after = tokio::task::spawn_blocking({
        let (repos, id) = (repos.clone(), id.clone());
        move || repos.main_commit(&id)
    })
    .await
    .ok()
    .flatten();
    let mut reply = Vec::new();
    match after.filter(|a| Some(a) != before.as_ref()) {
        Some(commit) => {
            let (store_id, store_commit) = (id.clone(), commit.clone());
            let recorded = blocking(&app, move |store| store.add_submission(&store_id, &store_commit, now)).await;
            match recorded {
                Ok((submission, number, position)) => {
                    app.metrics.lock().unwrap().pushes_accepted += 1;
                    app.work.notify_one();
                    info!(assignment = %id, submission, number, commit = %commit, "push accepted");
                    let left = assignment.seconds_left(now);
                    let message = format!(
                        "takehome: submission #{number} accepted (commit {})\ntakehome: queue position {position}\ntakehome: {} (deadline {})\ntakehome: status: {}/status/{id}",
                        &commit[..commit.len().min(12)],
                        clock(left),
                        assignment.deadline().map(crate::report::rfc3339).unwrap_or_default(),
                        app.config.public_url
                    );
                    reply.extend(intake::sideband_message(&message));
                }
                Err(failure) => return failure.into_response(),
            }
        }
        None => reply.extend(intake::sideband_message("takehome: main did not change: nothing new to grade (push to main)")),
    }
    if !intake::wants_sideband(&request) {
        reply.clear();
    }
    reply.extend(output);
    (content_type, reply).into_response()
}

// ---------------------------------------------------------------- assessors

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login_page() -> Html<String> {
    page(
        "Log in",
        "<h1>Assessor log in</h1><form method=\"post\" action=\"/login\"><p><label>User <input name=\"user\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p><p><button>Log in</button></p></form>",
    )
}

async fn login(State(app): State<Arc<App>>, Form(form): Form<LoginForm>) -> Response {
    let known = app.config.assessors.iter().any(|a| a.user == form.user && crate::secret::verify_password(&form.password, &a.password_hash));
    if !known {
        return (StatusCode::UNAUTHORIZED, page("Log in", "<p>Wrong user or password.</p><p><a href=\"/login\">Try again</a></p>")).into_response();
    }
    let session = crate::secret::new_token();
    app.sessions.lock().unwrap().insert(crate::secret::token_hash(&session), form.user);
    ([(header::SET_COOKIE, format!("takehome_session={session}; HttpOnly; SameSite=Strict; Path=/"))], Redirect::to("/")).into_response()
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(cookie) = headers.get(header::COOKIE).and_then(|c| c.to_str().ok()) {
        for part in cookie.split(';') {
            if let Some(session) = part.trim().strip_prefix("takehome_session=") {
                app.sessions.lock().unwrap().remove(&crate::secret::token_hash(session));
            }
        }
    }
    ([(header::SET_COOKIE, "takehome_session=; Max-Age=0; Path=/".to_string())], Redirect::to("/login")).into_response()
}

macro_rules! assessor_page {
    ($app:expr, $headers:expr) => {
        match assessor(&$app, &$headers) {
            Some(user) => user,
            None => return Redirect::to("/login").into_response(),
        }
    };
}

macro_rules! assessor_api {
    ($app:expr, $headers:expr) => {
        match assessor(&$app, &$headers) {
            Some(user) => user,
            None => return Failure { status: StatusCode::UNAUTHORIZED, message: "log in, or send assessor credentials with Basic auth".into() }.into_response(),
        }
    };
}

async fn dashboard(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let user = assessor_page!(app, headers);
    let (assignments, submissions) = match blocking(&app, |store| Ok((store.assignments()?, store.submissions(None, None)?))).await {
        Ok(both) => both,
        Err(failure) => return failure.into_response(),
    };
    let tasks = crate::check::discover_tasks(&app.config.tasks_root).unwrap_or_default();
    let now = now();
    let mut body = format!("<meta http-equiv=\"refresh\" content=\"10\"><p>Logged in as {} · <form class=\"inline\" method=\"post\" action=\"/logout\"><button>log out</button></form></p>", esc(&user));
    body.push_str("<section><h2>Tasks</h2><table><tr><th>task</th><th></th></tr>");
    for dir in tasks {
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = std::fmt::Write::write_fmt(&mut body, format_args!("<tr><td>{}</td><td><a href=\"/tasks/{}/compare\">compare candidates</a></td></tr>", esc(&id), esc(&id)));
    }
    body.push_str("</table></section><section><h2>Assignments</h2><table><tr><th>candidate</th><th>task</th><th>time</th><th class=\"num\">submissions</th><th>status page</th></tr>");
    for a in &assignments {
        let count = submissions.iter().filter(|s| s.assignment == a.id).count();
        let time = if a.started_at.is_none() { "not started".to_string() } else { clock(a.seconds_left(now)) };
        let _ = std::fmt::Write::write_fmt(
            &mut body,
            format_args!("<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{count}</td><td><code>/status/{}</code></td></tr>", esc(&a.candidate), esc(&a.task), time, esc(&a.id)),
        );
    }
    body.push_str("</table></section><section><h2>Submissions</h2><table><tr><th>#</th><th>candidate</th><th>task</th><th>commit</th><th>status</th><th class=\"num\">score</th></tr>");
    for s in &submissions {
        let score = s.score.map(|v| format!("{v:.1}")).unwrap_or_default();
        let status = match (&s.status[..], &s.grade_status) {
            ("graded", Some(g)) => g.clone(),
            (other, _) => other.to_string(),
        };
        let _ = std::fmt::Write::write_fmt(
            &mut body,
            format_args!(
                "<tr><td><a href=\"/submissions/{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{score}</td></tr>",
                s.id,
                s.id,
                esc(&s.candidate),
                esc(&s.task),
                esc(&s.commit[..s.commit.len().min(10)]),
                esc(&status)
            ),
        );
    }
    body.push_str("</table></section>");
    page("Dashboard", &body).into_response()
}

async fn submission_page(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let _user = assessor_page!(app, headers);
    let found = match blocking(&app, move |store| Ok((store.submission(id)?, store.notes(id)?))).await {
        Ok(found) => found,
        Err(failure) => return failure.into_response(),
    };
    let (Some((submission, report)), notes) = found else { return Failure::not_found("such submission").into_response() };
    let mut extra = format!("<section><h2>Review</h2><p>Submission #{} of {} · status {}", submission.number, esc(&submission.candidate), esc(&submission.status));
    if let (Some(previous), Some(score)) = (submission.previous_score, submission.score) {
        extra.push_str(&format!(" · regraded: {previous:.1} → {score:.1} ({:+.1})", score - previous));
    }
    extra.push_str(&format!("</p><form method=\"post\" action=\"/submissions/{id}/regrade\"><button>Regrade</button></form><h3>Notes</h3><ul>"));
    for note in &notes {
        extra.push_str(&format!("<li><b>{}</b> ({}): {}</li>", esc(&note.author), crate::report::rfc3339(note.created_at), esc(&note.text)));
    }
    extra.push_str(&format!("</ul><form method=\"post\" action=\"/submissions/{id}/notes\"><textarea name=\"text\" rows=\"3\" cols=\"60\"></textarea><br><button>Add note</button></form><p><a href=\"/\">back</a></p></section>"));
    match report.and_then(|r| serde_json::from_str::<Report>(&r).ok()) {
        Some(report) => Html(report.to_html(View::Assessor).replacen("</main>", &format!("{extra}</main>"), 1)).into_response(),
        None => page("Submission", &format!("<p>Not graded yet ({}).</p>{extra}", esc(&submission.status))).into_response(),
    }
}

#[derive(Deserialize)]
struct NoteForm {
    text: String,
}

async fn add_note(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap, Form(form): Form<NoteForm>) -> Response {
    let user = assessor_page!(app, headers);
    let text: String = form.text.chars().take(10_000).collect();
    match blocking(&app, move |store| store.add_note(id, &user, &text, now())).await {
        Ok(()) => Redirect::to(&format!("/submissions/{id}")).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn regrade_one(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let _user = assessor_page!(app, headers);
    let _ = blocking(&app, move |store| store.regrade(Some(id), None)).await;
    app.work.notify_waiters();
    Redirect::to(&format!("/submissions/{id}")).into_response()
}

async fn regrade_task(State(app): State<Arc<App>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let _user = assessor_page!(app, headers);
    if !crate::task::is_name(&task) {
        return Failure::not_found("such task").into_response();
    }
    let target = task.clone();
    let _ = blocking(&app, move |store| store.regrade(None, Some(&target))).await;
    app.work.notify_waiters();
    Redirect::to(&format!("/tasks/{task}/compare")).into_response()
}

/// The latest graded submission of each assignment of a task, best first.
async fn comparison(app: &Arc<App>, task: &str) -> Result<Vec<crate::store::Submission>, Failure> {
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

async fn compare_page(State(app): State<Arc<App>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let _user = assessor_page!(app, headers);
    if !crate::task::is_name(&task) {
        return Failure::not_found("such task").into_response();
    }
    let rows = match comparison(&app, &task).await {
        Ok(rows) => rows,
        Err(failure) => return failure.into_response(),
    };
    let mut body = format!(
        "<h1>{}: candidates by score</h1><form method=\"post\" action=\"/tasks/{}/regrade\"><button>Regrade every submission</button></form>\
         <table><tr><th>rank</th><th>candidate</th><th>submission</th><th>status</th><th class=\"num\">score</th><th class=\"num\">change at regrade</th></tr>",
        esc(&task),
        esc(&task)
    );
    for (rank, s) in rows.iter().enumerate() {
        let change = match (s.previous_score, s.score) {
            (Some(p), Some(n)) => format!("{:+.1}", n - p),
            _ => String::new(),
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><a href=\"/submissions/{}\">#{}</a></td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{change}</td></tr>",
            rank + 1,
            esc(&s.candidate),
            s.id,
            s.number,
            esc(s.grade_status.as_deref().unwrap_or(&s.status)),
            s.score.unwrap_or(0.0)
        ));
    }
    body.push_str("</table>");
    page("Compare", &body).into_response()
}

// ---------------------------------------------------------------- candidates

async fn candidate_view(app: &Arc<App>, assignment: &str) -> Result<Vec<serde_json::Value>, Failure> {
    let id = assignment.to_string();
    let rows = blocking(app, move |store| {
        let submissions = store.submissions(Some(&id), None)?;
        submissions.into_iter().map(|s| Ok((s.clone(), store.submission(s.id)?.and_then(|(_, r)| r)))).collect::<crate::store::Result<Vec<_>>>()
    })
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, report)| {
            let report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str::<Report>(&r).ok()).and_then(|r| serde_json::from_str(&r.to_json_view(View::Candidate)).ok());
            serde_json::json!({
                "number": s.number, "commit": s.commit, "pushed_at": crate::report::rfc3339(s.pushed_at),
                "status": s.status, "grade_status": s.grade_status, "report": report,
            })
        })
        .collect())
}

async fn status_page(State(app): State<Arc<App>>, Path(assignment): Path<String>, headers: HeaderMap) -> Response {
    let a = match candidate(&app, &assignment, &headers).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let rows = match candidate_view(&app, &a.id).await {
        Ok(rows) => rows,
        Err(failure) => return failure.into_response(),
    };
    let time = if a.started_at.is_none() { "the clock starts at your first clone".to_string() } else { clock(a.seconds_left(now())) };
    let mut body = format!("<meta http-equiv=\"refresh\" content=\"10\"><h1>{}</h1><p>{}</p><table><tr><th>#</th><th>commit</th><th>pushed</th><th>status</th><th>steps</th><th>output</th></tr>", esc(&a.task), esc(&time));
    for row in rows {
        let steps: Vec<String> = row["report"]["steps"].as_array().into_iter().flatten().map(|s| format!("{}: {}", s["name"].as_str().unwrap_or(""), s["outcome"].as_str().unwrap_or(""))).collect();
        let problem = row["report"]["components"]["accuracy"]["problem"]["message"].as_str().unwrap_or("");
        let output = if row["report"].is_null() { "" } else if problem.is_empty() { "format ok" } else { problem };
        body.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row["number"],
            esc(&row["commit"].as_str().unwrap_or("")[..10.min(row["commit"].as_str().unwrap_or("").len())]),
            esc(row["pushed_at"].as_str().unwrap_or("")),
            esc(row["grade_status"].as_str().or(row["status"].as_str()).unwrap_or("")),
            esc(&steps.join(", ")),
            esc(output)
        ));
    }
    body.push_str("</table>");
    page("Status", &body).into_response()
}

async fn api_status(State(app): State<Arc<App>>, Path(assignment): Path<String>, headers: HeaderMap) -> Response {
    let a = match candidate(&app, &assignment, &headers).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    match candidate_view(&app, &a.id).await {
        Ok(rows) => axum::Json(serde_json::json!({ "assignment": a.id, "task": a.task, "seconds_left": a.seconds_left(now()), "submissions": rows })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

// ---------------------------------------------------------------- API

async fn api_assignments(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let _user = assessor_api!(app, headers);
    match blocking(&app, |store| store.assignments()).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

#[derive(Deserialize)]
struct SubmissionFilter {
    task: Option<String>,
    assignment: Option<String>,
}

async fn api_submissions(State(app): State<Arc<App>>, headers: HeaderMap, Query(filter): Query<SubmissionFilter>) -> Response {
    let _user = assessor_api!(app, headers);
    match blocking(&app, move |store| store.submissions(filter.assignment.as_deref(), filter.task.as_deref())).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn api_submission(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let _user = assessor_api!(app, headers);
    match blocking(&app, move |store| Ok((store.submission(id)?, store.notes(id)?))).await {
        Ok((Some((submission, report)), notes)) => {
            let report: Option<serde_json::Value> = report.and_then(|r| serde_json::from_str(&r).ok());
            axum::Json(serde_json::json!({ "submission": submission, "report": report, "notes": notes })).into_response()
        }
        Ok((None, _)) => Failure::not_found("such submission").into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn api_regrade_one(State(app): State<Arc<App>>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let _user = assessor_api!(app, headers);
    api_regrade(&app, Some(id), None).await
}

async fn api_regrade_task(State(app): State<Arc<App>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let _user = assessor_api!(app, headers);
    api_regrade(&app, None, Some(task)).await
}

/// Queues graded submissions again and wakes the workers; answers how many were queued.
async fn api_regrade(app: &Arc<App>, submission: Option<i64>, task: Option<String>) -> Response {
    match blocking(app, move |store| store.regrade(submission, task.as_deref())).await {
        Ok(n) => {
            app.work.notify_waiters();
            axum::Json(serde_json::json!({ "queued": n })).into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

async fn api_compare(State(app): State<Arc<App>>, Path(task): Path<String>, headers: HeaderMap) -> Response {
    let _user = assessor_api!(app, headers);
    match comparison(&app, &task).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(failure) => failure.into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
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
        text.push_str(&format!("takehome_step_duration_seconds_sum{{step=\"{step}\"}} {sum}\ntakehome_step_duration_seconds_count{{step=\"{step}\"}} {count}\n"));
    }
    text.push_str(&format!("# TYPE takehome_pushes_total counter\ntakehome_pushes_total{{result=\"accepted\"}} {}\ntakehome_pushes_total{{result=\"refused\"}} {}\n", metrics.pushes_accepted, metrics.pushes_refused));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(super::base64_decode("YQ==").unwrap(), b"a");
    }
}
