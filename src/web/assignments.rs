//! Assignments made from the web: `POST /api/assignments` (an assessor's session or Basic
//! credentials: a tracking system) and the dashboard's form (`POST /assignments`, the session and
//! its CSRF token). Both go through [`crate::assign::create`], as `takehome assign` does, and
//! hand the candidate's credentials over once: only their hash is kept.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use maud::html;
use serde::Deserialize;
use serde_json::Value;
use tracing::info;

use super::auth::{Assessor, AssessorPage, SessionForm};
use super::forms::{ApiJson, FieldsForm};
use super::{page, App, AppResult, Failure};
use crate::assign::{AssignError, Made, Request};
use crate::store::Starts;

/// The body of `POST /api/assignments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAssignment {
    task: String,
    candidate: String,
    /// `90m`, `4h`, … (the task's own when left out).
    #[serde(default)]
    time_box: Option<String>,
    /// `on-clone` (the default) or `now`.
    #[serde(default)]
    starts: Option<String>,
    /// Where to send the invitation.
    #[serde(default)]
    email: Option<String>,
}

/// `POST /api/assignments`: 201 with the assignment, its clone and status URLs and the
/// candidate's credentials (said once); 422 naming the field that is wrong.
pub async fn create_api(State(app): State<Arc<App>>, assessor: Assessor, ApiJson(body): ApiJson<NewAssignment>) -> AppResult<(StatusCode, Json<Value>)> {
    let made = make(&app, &assessor.0, body.task, body.candidate, body.time_box, body.starts.as_deref(), body.email.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(made.answer(&app.config.public_url))))
}

/// `POST /assignments` from the dashboard: a page with the credentials to hand over (shown this
/// once), or a page saying which field is wrong.
pub async fn create_form(State(app): State<Arc<App>>, form: SessionForm<FieldsForm>) -> Response {
    let fields = form.form.fields();
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let made =
        make(&app, &form.user, field("task"), field("candidate"), Some(field("time_box")), Some(field("starts")).as_deref(), Some(field("email")).as_deref())
            .await;
    match made {
        Ok(made) => made_page(&app, &made).into_response(),
        Err(failure) => (failure.status, page("Assignment not made", html! { p { (failure.message) } p { a href="/assignments/new" { "Back to the form" } } }))
            .into_response(),
    }
}

/// `POST /api/assignments/<id>/erase`: deletes everything held about the assignment (rows and
/// files), keeping an audit record with nothing personal in it (`GET /api/erasures`).
pub async fn erase_api(State(app): State<Arc<App>>, axum::extract::Path(id): axum::extract::Path<String>, assessor: Assessor) -> AppResult<Json<Value>> {
    let erased = crate::erase::erase_assignment(app.store.as_ref(), &app.repos, &app.config.data_dir, &id, &assessor.0, "request").await;
    match erased {
        Ok(erased) => {
            info!(assessor = %assessor.0, task = %erased.task, rows = erased.rows, "assignment erased");
            Ok(Json(serde_json::json!({ "erased": erased })))
        }
        Err(crate::erase::EraseError::Store(crate::store::StoreError::NotFound(_))) => Err(Failure::not_found("such assignment")),
        Err(other) => Err(Failure::internal(crate::errors::chain(&other))),
    }
}

/// `POST /assignments/<id>/erase` from the submission page (typed confirmation): the erasure,
/// then a page saying what went.
pub async fn erase_form(State(app): State<Arc<App>>, axum::extract::Path(id): axum::extract::Path<String>, form: SessionForm<FieldsForm>) -> Response {
    if form.form.fields().get("confirm").map(|c| c.trim()) != Some("erase") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            page("Not erased", html! { p { "Type erase to confirm: nothing was erased." } p { a href="/" { "Back to the dashboard" } } }),
        )
            .into_response();
    }
    match crate::erase::erase_assignment(app.store.as_ref(), &app.repos, &app.config.data_dir, &id, &form.user, "request").await {
        Ok(erased) => {
            info!(assessor = %form.user, task = %erased.task, rows = erased.rows, "assignment erased");
            page(
                "Erased",
                html! {
                    h1 { "Erased" }
                    p { "An assignment of " (erased.task) ": " (erased.rows) " rows of the store and " (erased.files) " files or folders. The audit record is in " code { "GET /api/erasures" } "." }
                    p { a href="/" { "Back to the dashboard" } }
                },
            )
            .into_response()
        }
        Err(crate::erase::EraseError::Store(crate::store::StoreError::NotFound(_))) => Failure::not_found("such assignment").into_response(),
        Err(other) => Failure::internal(crate::errors::chain(&other)).into_response(),
    }
}

/// `GET /api/erasures`: the audit record of erasures, newest first.
pub async fn erasures_api(State(app): State<Arc<App>>, _assessor: Assessor) -> AppResult<Json<Value>> {
    Ok(Json(serde_json::json!({ "erasures": super::stored(app.store.erasures()).await? })))
}

/// `GET /assignments/new`: the form (a page of its own: the dashboard reloads itself).
pub async fn new_page(State(app): State<Arc<App>>, assessor: AssessorPage) -> Html<String> {
    let tasks = app.tasks.all();
    page(
        "New assignment",
        html! {
            h1 { "New assignment" }
            p { "Makes the candidate's repository (the task's brief and starter) and shows the clone URL and the candidate's token once. Tracking systems: "
                code { "POST /api/assignments" } " with " code { "{\"task\", \"candidate\", \"time_box\", \"starts\", \"email\"}" } "." }
            form method="post" action="/assignments" {
                input type="hidden" name="csrf" value=(assessor.csrf);
                p { label { "Task " select name="task" required {
                    @for task in &tasks { option value=(task.id) { (task.id) " · " (task.title) " (" (crate::units::format_duration(task.time_box)) ")" } }
                } } }
                p { label { "Candidate " input name="candidate" type="text" size="36" maxlength="200" placeholder="e-mail address or name" required; } }
                p { label { "Time box " input name="time_box" type="text" size="8" placeholder="the task's"; } " (90m, 4h, …; empty: the task's own)" }
                p { label { "The clock starts " select name="starts" { option value="on-clone" { "at the candidate's first clone" } option value="now" { "now" } } } }
                @if app.config.mail.is_some() {
                    p { label { "Send the invitation to " input name="email" type="email" size="36" maxlength="254" placeholder="candidate@example.com"; } }
                    p { "The invitation holds the clone command, the token, the time box and the status page; reminders go before the deadline, and a receipt after each graded push (never a score)." }
                } @else {
                    p { "This server sends no e-mail (no " code { "smtp_url" } " in its config): hand the clone URL and token to the candidate yourself." }
                }
                p { button { "Make the assignment" } " · " a href="/" { "back to the dashboard" } }
            }
        },
    )
}

/// Checks what only the web asks (when the clock starts), then makes the assignment.
async fn make(
    app: &Arc<App>,
    user: &str,
    task: String,
    candidate: String,
    time_box: Option<String>,
    starts: Option<&str>,
    email: Option<&str>,
) -> Result<Made, Failure> {
    let invalid = |message: String| Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message };
    let starts = match starts.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("on-clone") => Starts::OnClone,
        Some("now") => Starts::Now,
        Some(other) => return Err(invalid(format!("starts: expected \"on-clone\" or \"now\", got {:?}", other.chars().take(40).collect::<String>()))),
    };
    let request = Request { task, candidate, time_box, starts, email: email.map(String::from) };
    match crate::assign::create(app.store.as_ref(), &app.repos, &app.tasks, app.config.max_push_bytes, app.config.mail.is_some(), &request).await {
        Ok(made) => {
            info!(assessor = user, assignment = %made.assignment.id, task = %made.assignment.task, "assignment made");
            Ok(made)
        }
        Err(AssignError::Invalid { field, message }) => Err(invalid(format!("{field}: {message}"))),
        Err(other) => Err(Failure::internal(crate::errors::chain(&other))),
    }
}

/// The credentials, once, and what to send the candidate.
fn made_page(app: &App, made: &Made) -> Html<String> {
    let a = &made.assignment;
    let public = app.config.public_url.as_str();
    let clock = match a.starts {
        Starts::Now => "The clock runs from now.",
        Starts::OnClone => "The clock starts when the candidate first clones.",
    };
    page(
        "Assignment made",
        html! {
            h1 { "Assignment " code { (a.id) } " made" }
            p { (made.title) " for " (a.candidate) ", " (crate::units::format_duration(std::time::Duration::from_secs(a.time_box_seconds as u64))) ". " (clock) }
            @if let Some(to) = &made.invited {
                p { "The invitation to " (to) " is queued: it holds the clone command and the token. Its state is in " code { "GET /api/emails" } "." }
            }
            p { strong { "Copy these now: the token is not stored and is shown only this once." } }
            table {
                tr { th { "clone" } td { code { "git clone " (made.clone_url(public)) } } }
                tr { th { "user" } td { code { (a.id) } } }
                tr { th { "token" } td { code { (made.token) } } }
                tr { th { "status page" } td { code { (made.status_url(public)) } } }
            }
            p { a href="/" { "Back to the dashboard" } }
        },
    )
}
