//! HTML pages: the assessor's login, dashboard, report, comparison and review forms (session
//! cookie only; every form carries the session's CSRF token), and the candidate's status page
//! (their token; only [`CandidateReport`](crate::report::CandidateReport)s).

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::auth::{AssessorPage, Candidate, CsrfForm, PasswordCheck, SessionForm};
use super::forms::PlainForm;
use super::{clock, now, page, stored, App, AppResult, ClientAddr, Failure};
use crate::report::html::esc;
use crate::report::{Report, View};
use crate::store::ClockState;

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
}

#[derive(Deserialize)]
pub struct NoteForm {
    text: String,
    csrf: String,
}

impl CsrfForm for NoteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

pub async fn login_page() -> Html<String> {
    page(
        "Log in",
        "<h1>Assessor log in</h1><form method=\"post\" action=\"/login\"><p><label>User <input name=\"user\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p><p><button>Log in</button></p></form>",
    )
}

/// The one route that reads a body from someone not yet known: the credentials are in it. It is
/// capped at `MAX_FORM_BODY`, must arrive within `FORM_TIMEOUT`, and is rate-limited per address.
pub async fn login(State(app): State<Arc<App>>, axum::Extension(client): axum::Extension<ClientAddr>, request: axum::extract::Request) -> Response {
    let form =
        match tokio::time::timeout(super::auth::FORM_TIMEOUT, <Form<LoginForm> as axum::extract::FromRequest<Arc<App>>>::from_request(request, &app)).await {
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the form took too long to arrive\n").into_response(),
            Ok(Err(rejection)) => return rejection.into_response(),
            Ok(Ok(Form(form))) => form,
        };
    match app.auth.check(&app, client.0, &form.user, &form.password).await {
        PasswordCheck::User(user) => match super::auth::start_session(&app, &user).await {
            Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
            Err(failure) => failure.into_response(),
        },
        PasswordCheck::Wrong => {
            (StatusCode::UNAUTHORIZED, page("Log in", "<p>Wrong user or password.</p><p><a href=\"/login\">Try again</a></p>")).into_response()
        }
        PasswordCheck::Limited(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            page("Log in", &format!("<p>Too many wrong passwords from your address. Try again in {} s.</p>", wait.as_secs().max(1))),
        )
            .into_response(),
    }
}

pub async fn logout(State(app): State<Arc<App>>, form: SessionForm<PlainForm>) -> AppResult<Response> {
    let hash = crate::secret::token_hash(&form.session);
    stored(app.store.delete_session(&hash)).await?;
    Ok(([(header::SET_COOKIE, super::auth::end_session_cookie(&app))], Redirect::to("/login")).into_response())
}

/// Ends every session of the assessor, on every browser.
pub async fn logout_everywhere(State(app): State<Arc<App>>, form: SessionForm<PlainForm>) -> AppResult<Response> {
    let user = form.user.clone();
    stored(app.store.delete_sessions_of(&user)).await?;
    Ok(([(header::SET_COOKIE, super::auth::end_session_cookie(&app))], Redirect::to("/login")).into_response())
}

pub async fn dashboard(State(app): State<Arc<App>>, assessor: AssessorPage) -> AppResult<Response> {
    let (mut assignments, mut submissions) = stored(async { Ok((app.store.assignments().await?, app.store.submissions(None, None).await?)) }).await?;
    let blinds = super::queries::Blinds::load(&app).await?;
    assignments.iter_mut().for_each(|a| blinds.assignment(a));
    submissions.iter_mut().for_each(|s| blinds.submission(s));
    let tasks = crate::check::discover_tasks(&app.config.tasks_root).unwrap_or_default();
    let now = now();
    let csrf = csrf_field(&assessor.csrf);
    let mut body = format!(
        "<meta http-equiv=\"refresh\" content=\"10\"><p>Logged in as {} · <form class=\"inline\" method=\"post\" action=\"/logout\">{csrf}<button>log out</button></form> \
         <form class=\"inline\" method=\"post\" action=\"/logout-everywhere\">{csrf}<button>log out everywhere</button></form></p>",
        esc(&assessor.user)
    );
    body.push_str("<section><h2>Tasks</h2><table><tr><th>task</th><th></th></tr>");
    for dir in tasks {
        let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(body, "<tr><td>{}</td><td><a href=\"/tasks/{}/compare\">compare candidates</a></td></tr>", esc(&id), esc(&id));
    }
    body.push_str("</table></section><section><h2>Assignments</h2><table><tr><th>candidate</th><th>task</th><th>time</th><th class=\"num\">submissions</th><th>status page</th></tr>");
    for a in &assignments {
        let count = submissions.iter().filter(|s| s.assignment == a.id).count();
        let time = match a.clock(now) {
            ClockState::NotStarted => "not started".to_string(),
            ClockState::Running | ClockState::Closed => clock(a.seconds_left(now)),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{count}</td><td><code>/status/{}</code></td></tr>",
            esc(&a.candidate),
            esc(&a.task),
            time,
            esc(&a.id)
        );
    }
    body.push_str("</table></section>");
    body.push_str(&workers_section(&app, now).await);
    body.push_str(
        "<section><h2>Submissions</h2><table><tr><th>#</th><th>candidate</th><th>task</th><th>commit</th><th>status</th><th class=\"num\">score</th></tr>",
    );
    for s in &submissions {
        let score = s.score.map(|v| format!("{v:.1}")).unwrap_or_default();
        let status = s.status_text();
        let _ = write!(
            body,
            "<tr><td><a href=\"/submissions/{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{score}</td></tr>",
            s.id,
            s.id,
            esc(&s.candidate),
            esc(&s.task),
            esc(&s.commit[..s.commit.len().min(10)]),
            esc(status)
        );
    }
    body.push_str("</table></section>");
    Ok(page("Dashboard", &body).into_response())
}

pub async fn submission_page(State(app): State<Arc<App>>, Path(id): Path<i64>, assessor: AssessorPage) -> AppResult<Response> {
    let found = stored(async { Ok((app.store.submission(id).await?, app.store.notes(id).await?)) }).await?;
    let (Some((submission, report)), notes) = found else { return Err(Failure::not_found("such submission")) };
    let (review, blinds, name) = super::review::review_section(&app, id, &assessor.user, &assessor.csrf).await?;
    let history = match super::signals::grades(&app, id).await {
        Ok(grades) => super::signals::grades_html(&grades),
        Err(failure) => return Err(failure),
    };
    let csrf = csrf_field(&assessor.csrf);
    let mut extra = format!("<section><h2>Grading</h2><p>Submission #{} of {} · status {}", submission.number, esc(&name), esc(submission.status.as_str()));
    if let (Some(previous), Some(score)) = (submission.previous_score, submission.score) {
        let _ = write!(extra, " · regraded: {previous:.1} → {score:.1} ({:+.1})", score - previous);
    }
    let _ = write!(
        extra,
        "</p><form method=\"post\" action=\"/submissions/{id}/regrade\">{csrf}<button>Regrade</button></form>{history}</section>{review}<section><h3>Notes</h3><ul>"
    );
    for note in &notes {
        let _ = write!(extra, "<li><b>{}</b> ({}): {}</li>", esc(&note.author), crate::report::rfc3339(note.created_at), esc(&note.text));
    }
    let _ = write!(
        extra,
        "</ul><form method=\"post\" action=\"/submissions/{id}/notes\">{csrf}<label for=\"note-text\">Note for other assessors</label><br><textarea id=\"note-text\" name=\"text\" rows=\"3\" cols=\"60\"></textarea><br><button>Add note</button></form><p><a href=\"/\">back</a></p></section>"
    );
    match report.map(|r| serde_json::from_str::<Report>(&r)) {
        Some(Ok(mut report)) => {
            blinds.report(&submission.assignment, &submission.task, &mut report);
            Ok(Html(report.to_html(View::Assessor).replacen("</main>", &format!("{extra}</main>"), 1)).into_response())
        }
        Some(Err(e)) => Ok(page("Submission", &format!("<p>The stored report cannot be read ({}).</p>{extra}", esc(&e.to_string()))).into_response()),
        None => Ok(page("Submission", &format!("<p>Not graded yet ({}).</p>{extra}", esc(submission.status.as_str()))).into_response()),
    }
}

pub async fn add_note(State(app): State<Arc<App>>, Path(id): Path<i64>, form: SessionForm<NoteForm>) -> AppResult<Response> {
    let text: String = form.form.text.chars().take(10_000).collect();
    let user = form.user;
    stored(app.store.add_note(id, &user, &text, now())).await?;
    Ok(Redirect::to(&format!("/submissions/{id}")).into_response())
}

pub async fn regrade_one(State(app): State<Arc<App>>, Path(id): Path<i64>, _form: SessionForm<PlainForm>) -> AppResult<Response> {
    let _ = super::queries::queue_regrade(&app, Some(id), None).await;
    Ok(Redirect::to(&format!("/submissions/{id}")).into_response())
}

pub async fn regrade_task(State(app): State<Arc<App>>, Path(task): Path<String>, _form: SessionForm<PlainForm>) -> AppResult<Response> {
    if !crate::task::is_name(&task) {
        return Err(Failure::not_found("such task"));
    }
    let _ = super::queries::queue_regrade(&app, None, Some(task.clone())).await;
    Ok(Redirect::to(&format!("/tasks/{task}/compare")).into_response())
}

pub async fn compare_page(State(app): State<Arc<App>>, Path(task): Path<String>, assessor: AssessorPage) -> AppResult<Response> {
    if !crate::task::is_name(&task) {
        return Err(Failure::not_found("such task"));
    }
    let rows = super::queries::comparison(&app, &task).await?;
    let mut body =
        format!("<p><a href=\"/api/tasks/{0}/export?format=csv\">Export the cohort (CSV)</a> · <a href=\"/api/tasks/{0}/export\">JSON</a> · <a href=\"/tasks/{0}/similarity\">Similar submissions</a></p>", esc(&task));
    let _ = write!(
        body,
        "<h1>{}: candidates by score</h1><form method=\"post\" action=\"/tasks/{}/regrade\">{}<button>Regrade every submission</button></form>\
         <table><tr><th>rank</th><th>candidate</th><th>submission</th><th>status</th><th class=\"num\">score</th><th class=\"num\">percentile</th><th class=\"num\">change at regrade</th></tr>",
        esc(&task),
        esc(&task),
        csrf_field(&assessor.csrf)
    );
    match super::signals::affected(&app, &task).await {
        Ok(affected) if !affected.is_empty() => {
            let _ = write!(
                body,
                "<section id=\"affected\"><h2>Graded with an older task, data set or image</h2><p>{} submission(s) were graded before the task changed. \
                 <form class=\"inline\" method=\"post\" action=\"/tasks/{}/regrade-affected\">{}<button>Regrade affected</button></form> \
                 (each keeps its old grade in its history).</p><ul>",
                affected.len(),
                esc(&task),
                csrf_field(&assessor.csrf)
            );
            for a in &affected {
                let _ = write!(
                    body,
                    "<li><a href=\"/submissions/{}\">#{}</a> {}: {} changed</li>",
                    a.submission,
                    a.submission,
                    esc(&a.candidate),
                    a.changed.join(", ")
                );
            }
            body.push_str("</ul></section>");
        }
        Ok(_) => {}
        Err(failure) => return Err(failure),
    }
    let scores: Vec<f64> = rows.iter().filter_map(|s| s.score).collect();
    let baselines: Vec<(String, f64)> = crate::check::graded_baselines(&app.config.tasks_root, &task).into_iter().map(|b| (b.fixture, b.score)).collect();
    let _ = write!(
        body,
        "<section><h2>Distribution</h2>{}<p><small>Dashed: the task's own fixtures as <code>takehome check</code> last graded them.</small></p></section>",
        crate::review::cohort_histogram(&scores, None, &baselines)
    );
    for (rank, s) in rows.iter().enumerate() {
        let change = match (s.previous_score, s.score) {
            (Some(p), Some(n)) => format!("{:+.1}", n - p),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><a href=\"/submissions/{}\">#{}</a></td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.0}</td><td class=\"num\">{change}</td></tr>",
            rank + 1,
            esc(&s.candidate),
            s.id,
            s.number,
            esc(s.status_text()),
            s.score.unwrap_or(0.0),
            crate::review::percentile(s.score.unwrap_or(0.0), &scores).unwrap_or(0.0)
        );
    }
    body.push_str("</table>");
    Ok(page("Compare", &body).into_response())
}

pub async fn status_page(State(app): State<Arc<App>>, Candidate(a): Candidate) -> AppResult<Response> {
    let time = super::candidate::candidate_time(&app, &a).await?;
    let pushes = super::candidate::candidate_view(&app, &a.id, time.final_push).await?;
    let feedback = super::candidate::released_feedback(&app, &a.id).await?;
    // The task's title and brief, from the task folder (the brief is the candidate's own).
    let task = crate::task::load(&app.config.tasks_root.join("tasks").join(&a.task)).ok();
    let brief_html = task
        .as_ref()
        .and_then(|t| std::fs::read_to_string(t.dir.join(&t.brief)).ok())
        .map(|text| super::candidate::demote_headings(&crate::review::markdown::render(&text), 2));
    let title = task.as_ref().map(|t| t.title.clone()).unwrap_or_else(|| a.task.clone());
    let installed = task.as_ref().and_then(|t| crate::environment::Installed::of_recipe(&t.root, &t.image).ok());
    let latest = pushes.listed.iter().max_by_key(|s| s.number);
    let requirement_warnings = match (latest, &installed) {
        (Some(latest), Some(_)) => Some((latest.number, super::git::requirement_warnings(&app, &a.id, &a.task, &latest.commit).await)),
        _ => None,
    };
    let html = super::candidate::render(&super::candidate::StatusPage {
        assignment: &a,
        title: &title,
        brief_html,
        clone_url: format!("{}/git/{}.git", app.config.public_url.trim_end_matches('/'), a.id),
        now: now(),
        submissions: &pushes.listed,
        pushes_total: pushes.total,
        feedback_html: feedback.as_ref().map(super::review::feedback_html),
        time: &time,
        csrf: super::candidate::candidate_csrf(&a),
        has_public_run: task.as_ref().is_some_and(|t| t.public_run.is_some()),
        image: installed.as_ref().map(|i| (i.image.clone(), i.packages.len())),
        requirement_warnings,
    });
    Ok(Html(html).into_response())
}

/// The worker instances the store knows: who grades, with what, when last heard from.
async fn workers_section(app: &Arc<App>, now: i64) -> String {
    let workers = match app.store.workers().await {
        Ok(workers) => workers,
        Err(e) => return format!("<section><h2>Workers</h2><p>Cannot read the workers: {}</p></section>", esc(&e.to_string())),
    };
    let mut body = String::from(
        "<section><h2>Workers</h2><table><tr><th>name</th><th>instance</th><th>state</th><th>last heartbeat</th>\
         <th class=\"num\">running / slots</th><th>memory</th><th class=\"num\">GPUs</th><th>runtimes</th><th>version</th><th>health</th></tr>",
    );
    // Live instances, then the last few that stopped.
    for w in workers.iter().filter(|w| w.alive(now)).chain(workers.iter().filter(|w| !w.alive(now)).take(5)) {
        let state = if w.alive(now) {
            "alive"
        } else if w.stopped_at.is_some() {
            "stopped"
        } else {
            "lease ran out"
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{state}</td><td>{} s ago</td><td class=\"num\">{} / {}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&w.name),
            esc(&w.instance),
            (now - w.heartbeat_at).max(0),
            w.running,
            w.slots,
            crate::units::format_size(w.memory_bytes.max(0) as u64),
            w.gpus,
            esc(&w.runtimes.join(", ")),
            esc(&w.version),
            esc(&w.health)
        );
    }
    body.push_str("</table></section>");
    body
}
