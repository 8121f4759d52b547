//! HTTP, by audience: `git` (candidates' clones and pushes), `pages` (the assessor web UI and the
//! candidate's status page), `assignments` (assignments made from the dashboard and the API, and
//! erasures), `review` (the review desk: comments, rubric, decisions, the code view, the outboxes'
//! state), `candidate` (what a candidate may see of their pushes), `signals` (similarity and
//! regrades), `api` (JSON for assessors and candidates), `sso` (assessors' single sign-on),
//! `queries` (what several pages share: blind names, the push that counts, the comparison),
//! `forms` (form bodies), `bounded` (git reads with byte and time budgets) and `auth` (who is
//! asking), plus the connection loop that every request comes through.
//!
//! Invariants:
//! - Only this module knows routes. Every handler names who may call it with an extractor from
//!   [`auth`] (`Candidate`, `Assessor`, `AssessorPage`, `SessionForm`), so that a handler cannot
//!   forget to authenticate, and no extractor reads a request body before it knows who sent it.
//! - Connections are capped (`max_connections`; more are closed as they arrive), request heads
//!   must arrive within [`HEADER_TIMEOUT`], bodies may not pause longer than
//!   [`intake::BODY_IDLE_TIMEOUT`](crate::intake::BODY_IDLE_TIMEOUT), and git processes are capped
//!   (`max_git_processes`), so nothing a stranger sends can stall or fill the daemon.
//! - Every state-changing request from a browser passes [`auth::same_origin`] (Origin and
//!   Sec-Fetch-Site) and, for forms, carries the session's CSRF token.
//! - Names from users never reach a path unchecked (`task::is_name`); every page is a maud
//!   template, which escapes every value it is given (text becomes markup only through an explicit
//!   `PreEscaped`); candidates see only [`CandidateReport`](crate::report::CandidateReport)s.

pub mod api;
pub mod assignments;
pub mod auth;
pub mod bounded;
pub mod candidate;
pub mod forms;
pub mod git;
pub mod pages;
pub mod queries;
pub mod review;
pub mod signals;
pub mod sso;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::config::Config;
use crate::intake::Repos;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::store::Store;

/// A request's head (request line and headers) must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Forms and logins are small: their bodies are capped at this, and read only after auth.
pub const MAX_FORM_BODY: usize = 64 << 10;

/// What every handler shares.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub repos: Repos,
    /// The tasks under `config.tasks_root`, each parsed once per version of its `task.yaml`.
    pub tasks: Arc<crate::task::Catalog>,
    /// Woken when a push queues a job.
    pub work: Arc<Notify>,
    pub auth: auth::Auth,
    /// git processes at once.
    pub git_slots: Arc<Semaphore>,
    /// git processes at once per assignment, so that one candidate cannot take every slot.
    pub git_per_assignment: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// What each pushed commit asks of its image that it lacks, worked out once (at the push, or
    /// at the first status page after a restart); at most `REQUIREMENT_CACHE` commits.
    pub requirement_warnings: Mutex<HashMap<String, Arc<Vec<String>>>>,
    pub metrics: Arc<Mutex<Metrics>>,
    /// Woken when an event is put in the webhook outbox.
    pub webhooks: Arc<Notify>,
    /// Pushes fingerprinted at once on arrival (for the similarity view): one.
    pub fingerprinting: Arc<Semaphore>,
    /// TLS for what the server calls out to (webhooks, the OpenID provider).
    pub tls: Arc<rustls::ClientConfig>,
    /// The OpenID provider assessors sign in with, when `oidc` is configured.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
    /// Each task's similarity comparison as last made (`signals::Memo`), one per task.
    pub similarity: Mutex<HashMap<crate::task::TaskId, Arc<signals::Memo>>>,
}

/// Counters for `/metrics` that the store does not hold.
#[derive(Default)]
pub struct Metrics {
    /// Per step name: (seconds summed, count).
    pub step_seconds: HashMap<String, (f64, u64)>,
    pub pushes_accepted: u64,
    pub pushes_refused: u64,
    pub connections_refused: u64,
    pub logins_limited: u64,
    /// Reports stored by this process's workers.
    pub jobs_graded: u64,
    /// Failures on our side (each retried or, at the last attempt, `infrastructure_error`).
    pub jobs_failed: u64,
    /// Results refused because the job's lease had gone to another worker.
    pub results_refused: u64,
    /// Jobs stopped because their lease ran out (or was taken) while they ran.
    pub leases_lost: u64,
}

impl App {
    pub fn new(config: Config, store: Arc<dyn Store>, work: Arc<Notify>) -> App {
        let repos = Repos::new(config.repos_dir(), config.hooks_dir());
        let git_slots = Arc::new(Semaphore::new(config.max_git_processes));
        // The CA file was checked when the config was loaded; should it have changed since, the
        // platform's roots alone are used (and said).
        let tls = crate::tls::client_config(config.tls_ca_file.as_deref()).unwrap_or_else(|e| {
            tracing::error!(error = %crate::errors::Chain(&e), "tls_ca_file: not used");
            crate::tls::client_config(None).expect("the platform's roots need no file")
        });
        let oidc = config.oidc.clone().map(|settings| Arc::new(crate::oidc::Provider::new(settings, tls.clone())));
        App {
            auth: auth::Auth::new(&config.assessors),
            tasks: Arc::new(crate::task::Catalog::new(config.tasks_root.clone())),
            config,
            store,
            repos,
            work,
            git_slots,
            git_per_assignment: Mutex::new(HashMap::new()),
            requirement_warnings: Mutex::new(HashMap::new()),
            metrics: Arc::default(),
            webhooks: Arc::default(),
            fingerprinting: Arc::new(Semaphore::new(1)),
            tls,
            oidc,
            similarity: Mutex::new(HashMap::new()),
        }
    }
}

/// The client's address, put on every request by the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

pub fn router(app: Arc<App>) -> Router {
    let browser_routes = Router::new()
        .route("/login", get(pages::login_page).post(pages::login).layer(DefaultBodyLimit::max(MAX_FORM_BODY)))
        .route("/login/oidc", get(sso::begin))
        .route("/login/oidc/callback", get(sso::callback))
        .route("/logout", post(pages::logout))
        .route("/logout-everywhere", post(pages::logout_everywhere))
        .route("/", get(pages::dashboard))
        .route("/submissions/{id}", get(pages::submission_page))
        .route("/submissions/{id}/regrade", post(pages::regrade_one))
        .route("/submissions/{id}/notes", post(pages::add_note))
        .route("/submissions/{id}/code", get(review::code_page))
        .route("/submissions/{id}/debrief", get(review::debrief_page))
        .route("/submissions/{id}/comments", post(review::comment_form))
        .route("/comments/{id}/edit", post(review::edit_comment_form))
        .route("/submissions/{id}/scores", post(review::scores_form))
        .route("/submissions/{id}/decision", post(review::decision_form))
        .route("/submissions/{id}/release", post(review::release_form))
        .route("/tasks/{task}/compare", get(pages::compare_page))
        .route("/tasks/{task}/similarity", get(signals::similarity_page))
        .route("/tasks/{task}/regrade-affected", post(signals::regrade_affected_form))
        .route("/tasks/{task}/regrade", post(pages::regrade_task))
        .route("/status/{assignment}", get(pages::status_page))
        .route("/status/{assignment}/final", post(candidate::choose_form))
        .route("/assignments", post(assignments::create_form))
        .route("/assignments/new", get(assignments::new_page))
        .route("/assignments/{id}/extend", post(candidate::extend_form))
        .route("/assignments/{id}/erase", post(assignments::erase_form))
        .route("/api/assignments", get(api::assignments).post(assignments::create_api))
        .route("/api/submissions", get(api::submissions))
        .route("/api/submissions/{id}", get(api::submission))
        .route("/api/submissions/{id}/regrade", post(api::regrade_one))
        .route("/api/submissions/{id}/files", get(review::files_api))
        .route("/api/submissions/{id}/review", get(review::review_api))
        .route("/api/submissions/{id}/debrief", get(review::debrief_api))
        .route("/api/submissions/{id}/comments", post(review::comment_api))
        .route("/api/comments/{id}", post(review::edit_comment_api).put(review::edit_comment_api))
        .route("/api/submissions/{id}/scores", post(review::scores_api).put(review::scores_api))
        .route("/api/submissions/{id}/decision", post(review::decision_api))
        .route("/api/submissions/{id}/release", post(review::release_api))
        .route("/api/tasks/{task}/export", get(review::export_api))
        .route("/api/tasks/{task}/similarity", get(signals::similarity_api))
        .route("/api/tasks/{task}/affected", get(signals::affected_api))
        .route("/api/tasks/{task}/regrade-affected", post(signals::regrade_affected_api))
        .route("/api/submissions/{id}/grades", get(signals::grades_api))
        .route("/api/webhooks", get(review::webhooks_api))
        .route("/api/emails", get(review::emails_api))
        .route("/api/tasks/{task}/compare", get(api::compare))
        .route("/api/tasks/{task}/regrade", post(api::regrade_task))
        .route("/api/status/{assignment}", get(api::status))
        .route("/api/status/{assignment}/final", post(candidate::choose_api))
        .route("/api/assignments/{id}/erase", post(assignments::erase_api))
        .route("/api/erasures", get(assignments::erasures_api))
        .route("/api/assignments/{id}/extensions", get(candidate::extensions_api).post(candidate::extend_api))
        .route("/api/workers", get(api::workers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth::same_origin));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(api::metrics))
        .route("/git/{repo}/info/refs", get(git::info_refs))
        .route("/git/{repo}/{service}", post(git::rpc))
        .route("/worker/git/{repo}/info/refs", get(git::worker_info_refs))
        .route("/worker/git/{repo}/{service}", post(git::worker_rpc))
        .merge(browser_routes)
        .with_state(app)
}

/// Serves `router` on `listener` until `shutdown`: one task per connection, at most
/// `max_connections` at once (more are closed at once), heads within [`HEADER_TIMEOUT`].
/// On shutdown, connections finish their current request (up to 30 s).
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let router = router(app.clone());
    let connections = Arc::new(Semaphore::new(app.config.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            app.metrics.lock().unwrap().connections_refused += 1;
            debug!(%peer, "too many connections: closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer.ip()));
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, request).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 << 10)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
                }
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// What a worker on another host shows at `/healthz` and `/metrics`.
pub struct WorkerStatus {
    pub instance: String,
    pub name: String,
    pub slots: usize,
    pub metrics: Arc<Mutex<Metrics>>,
    pub metrics_token: Option<String>,
    pub store: Arc<dyn Store>,
    pub running: Arc<std::sync::atomic::AtomicI64>,
}

/// Serves a worker's `/healthz` (JSON: instance, slots, running, the store's view of its health)
/// and `/metrics` (the same bearer token as the server's) until `shutdown`.
pub async fn worker_serve(listener: tokio::net::TcpListener, status: Arc<WorkerStatus>, shutdown: CancellationToken) {
    let router = Router::new().route("/healthz", get(api::worker_health)).route("/metrics", get(api::worker_metrics)).with_state(status);
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        warn!(error = %e, "the worker's health endpoint stopped");
    }
}

pub use crate::units::now;

/// A store call's error as an answer (logged; the client sees "internal error").
pub(crate) async fn stored<T>(call: impl std::future::Future<Output = crate::store::Result<T>>) -> Result<T, Failure> {
    call.await.map_err(|e| Failure::internal(crate::errors::chain(&e)))
}

/// An error answer: status and message, as JSON.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn internal(message: String) -> Failure {
        error!(error = %message, "request failed on our side");
        Failure { status: StatusCode::INTERNAL_SERVER_ERROR, message: "internal error (logged on the server)".into() }
    }
    pub fn not_found(what: &str) -> Failure {
        Failure { status: StatusCode::NOT_FOUND, message: format!("no {what}") }
    }
}

/// What a handler answers: its value, or a [`Failure`] (JSON `{"error": ...}` with its status),
/// so that a handler's body is its happy path with `?`.
pub type AppResult<T> = Result<T, Failure>;

/// The task a route names (`{task}`), checked: a [`TaskId`](crate::task::TaskId), else 404 "no
/// such task". Only the path is read.
pub struct TaskInPath(pub crate::task::TaskId);

impl axum::extract::FromRequestParts<Arc<App>> for TaskInPath {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Failure> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, app).await.map_err(|_| Failure::not_found("such task"))?;
        let text = params.iter().find_map(|(key, value)| (key == "task").then_some(value)).ok_or_else(|| Failure::not_found("such task"))?;
        crate::task::TaskId::parse(text).map(TaskInPath).map_err(|_| Failure::not_found("such task"))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "error": self.message }).to_string()).into_response()
    }
}

const PAGE_STYLE: &str =
    "body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}nav{background:#1d2430;color:#fff;padding:10px 24px}\
nav a{color:#fff;margin-right:16px}main{max-width:1100px;margin:0 auto;padding:20px}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff3}.num{text-align:right}section{margin:18px 0}\
form.inline{display:inline}input,textarea,button{font:inherit}";

/// An assessor's page: the navigation bar around `body` (a template: everything in it was escaped
/// by the engine).
pub(crate) fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { (title) " · takehome" } style { (PreEscaped(PAGE_STYLE)) } }
                body {
                    nav { b { "takehome" } (PreEscaped(" &nbsp; ")) a href="/" { "dashboard" } }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// The session's CSRF token as a hidden form field.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub(crate) fn clock(seconds: i64) -> String {
    if seconds <= 0 {
        return "closed".into();
    }
    format!("{}h{:02}m left", seconds / 3600, seconds % 3600 / 60)
}
