//! HTML pages: the assessor's login, dashboard, report, comparison and review forms (session
//! cookie only; every form carries the session's CSRF token), and the candidate's status page
//! (their token; only [`CandidateReport`](crate::report::CandidateReport)s).

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::auth::{AssessorPage, Candidate, CsrfForm, PasswordCheck, SessionForm};
use super::forms::PlainForm;
use super::TaskInPath;
use super::{clock, csrf_field, now, page, stored, App, AppResult, ClientAddr, Failure};
use crate::report::Report;
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

pub async fn login_page(State(app): State<Arc<App>>) -> Html<String> {
    page(
        "Log in",
        html! {
            h1 { "Assessor log in" }
            @if app.oidc.is_some() {
                p { a href="/login/oidc" { "Sign in with your organisation's account" } " (single sign-on)" }
            }
            @if !app.config.assessors.is_empty() || app.oidc.is_none() {
                form method="post" action="/login" {
                    p { label { "User " input name="user" autocomplete="username"; } }
                    p { label { "Password " input name="password" type="password" autocomplete="current-password"; } }
                    p { button { "Log in" } }
                }
            }
        },
    )
}

/// The one route that reads a body from someone not yet known: the credentials are in it. It is
/// capped at `MAX_FORM_BODY`, must arrive within `FORM_TIMEOUT`, and is rate-limited per address.
pub async fn login(
    State(app): State<Arc<App>>,
    axum::Extension(client): axum::Extension<ClientAddr>,
    request: axum::extract::Request,
) -> Result<Response, Response> {
    let form =
        match tokio::time::timeout(super::auth::FORM_TIMEOUT, <Form<LoginForm> as axum::extract::FromRequest<Arc<App>>>::from_request(request, &app)).await {
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "the form took too long to arrive\n").into_response()),
            Ok(Err(rejection)) => return Err(rejection.into_response()),
            Ok(Ok(Form(form))) => form,
        };
    Ok(match app.auth.check(&app, client.0, &form.user, &form.password).await {
        PasswordCheck::User(user) => {
            let cookie = super::auth::start_session(&app, &user).await.map_err(IntoResponse::into_response)?;
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        PasswordCheck::Wrong => {
            (StatusCode::UNAUTHORIZED, page("Log in", html! { p { "Wrong user or password." } p { a href="/login" { "Try again" } } })).into_response()
        }
        PasswordCheck::Limited(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            page("Log in", html! { p { "Too many wrong passwords from your address. Try again in " (wait.as_secs().max(1)) " s." } }),
        )
            .into_response(),
    })
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

/// Submissions the dashboard lists (the newest).
const DASHBOARD_SUBMISSIONS: i64 = 200;

/// Assignments the dashboard lists on one page (`?page=N` for the others).
pub const DASHBOARD_ASSIGNMENTS: usize = 100;

/// The dashboard's filters: `?task=ID&state=to-review|reviewed|decided|no-push&page=N`.
#[derive(Deserialize, Default)]
pub struct DashboardFilter {
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    state: Option<String>,
    /// The page of assignments, from 1 (past the last: the last).
    #[serde(default)]
    page: Option<usize>,
}

/// Where an assignment stands for the hiring team.
fn review_state(pushes: i64, state: Option<&crate::store::ReviewState>) -> &'static str {
    match state {
        _ if pushes == 0 => "no-push",
        Some(s) if s.decided => "decided",
        Some(s) if s.scored_by > 0 => "reviewed",
        _ => "to-review",
    }
}

const REVIEW_STATES: [(&str, &str); 4] = [("to-review", "to review"), ("reviewed", "reviewed"), ("decided", "decided"), ("no-push", "no push yet")];

pub async fn dashboard(State(app): State<Arc<App>>, assessor: AssessorPage, Query(filter): Query<DashboardFilter>) -> AppResult<Response> {
    let (mut assignments, mut submissions, counts, states) = stored(async {
        Ok((
            app.store.assignments().await?,
            app.store.recent_submissions(DASHBOARD_SUBMISSIONS).await?,
            app.store.submission_counts().await?,
            app.store.review_states().await?,
        ))
    })
    .await?;
    let state_of = |a: &crate::store::Assignment| review_state(counts.get(&a.id).copied().unwrap_or(0), states.get(&a.id));
    let task_filter = filter.task.as_deref().filter(|t| !t.is_empty());
    let state_filter = filter.state.as_deref().filter(|s| REVIEW_STATES.iter().any(|(key, _)| key == s));
    assignments.retain(|a| task_filter.is_none_or(|t| a.task.as_str() == t));
    let tally = |state: &str| assignments.iter().filter(|a| state_of(a) == state).count();
    let tallies: Vec<(&str, &str, usize)> = REVIEW_STATES.iter().map(|(key, label)| (*key, *label, tally(key))).collect();
    let shown_total = assignments.len();
    assignments.retain(|a| state_filter.is_none_or(|s| state_of(a) == s));
    // One page of assignments: the page costs what it shows, whatever the drive's size.
    let listed = assignments.len();
    let pages = listed.div_ceil(DASHBOARD_ASSIGNMENTS).max(1);
    let page_number = filter.page.unwrap_or(1).clamp(1, pages);
    let first = (page_number - 1) * DASHBOARD_ASSIGNMENTS;
    let mut assignments: Vec<_> = assignments.into_iter().skip(first).take(DASHBOARD_ASSIGNMENTS).collect();
    if let Some(task) = task_filter {
        submissions.retain(|s| s.task.as_str() == task);
    }
    let total: i64 = counts.values().sum();
    let blinds = super::queries::Blinds::load(&app).await?;
    assignments.iter_mut().for_each(|a| blinds.assignment(a));
    submissions.iter_mut().for_each(|s| blinds.submission(s));
    let tasks = app.tasks.ids().unwrap_or_default();
    let now = now();
    let csrf = csrf_field(&assessor.csrf);
    let paged = |task: Option<&str>, state: Option<&str>, page: usize| {
        let mut query: Vec<String> = Vec::new();
        if let Some(task) = task {
            query.push(format!("task={}", crate::http_client::percent_encode(task)));
        }
        if let Some(state) = state {
            query.push(format!("state={state}"));
        }
        if page > 1 {
            query.push(format!("page={page}"));
        }
        if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{}", query.join("&"))
        }
    };
    let filtered = |task: Option<&str>, state: Option<&str>| paged(task, state, 1);
    let workers = workers_section(&app, now).await;
    let body = html! {
        meta http-equiv="refresh" content="10";
        p {
            "Logged in as " (assessor.user) " · "
            form.inline method="post" action="/logout" { (csrf) button { "log out" } }
            " "
            form.inline method="post" action="/logout-everywhere" { (csrf) button { "log out everywhere" } }
        }
        section {
            h2 { "Tasks" }
            table {
                tr { th { "task" } th { "title" } th {} }
                @for id in &tasks {
                    @let title = app.tasks.load(id).ok().map(|t| t.title.clone()).unwrap_or_else(|| "(does not load: see takehome validate)".into());
                    tr {
                        td { (id) } td { (title) }
                        td { a href=(filtered(Some(id.as_str()), state_filter)) { "its assignments" } " · " a href={ "/tasks/" (id) "/compare" } { "compare candidates" } }
                    }
                }
            }
        }
        section {
            h2 { "Assignments" }
            p {
                a href="/assignments/new" { "New assignment" } " · "
                @if state_filter.is_none() { strong { "all (" (shown_total) ")" } } @else { a href=(filtered(task_filter, None)) { "all (" (shown_total) ")" } }
                @for (key, label, n) in &tallies {
                    " · "
                    @if state_filter == Some(*key) { strong { (label) " (" (n) ")" } } @else { a href=(filtered(task_filter, Some(key))) { (label) " (" (n) ")" } }
                }
                @if let Some(task) = task_filter { " · task " code { (task) } " (" a href=(filtered(None, state_filter)) { "every task" } ")" }
            }
            @if pages > 1 {
                p.pages {
                    "Assignments " (first + 1) "–" (first + assignments.len()) " of " (listed) " are listed, " (DASHBOARD_ASSIGNMENTS) " a page"
                    @if page_number > 1 { " · " a href=(paged(task_filter, state_filter, page_number - 1)) { "previous" } }
                    @if page_number < pages { " · " a href=(paged(task_filter, state_filter, page_number + 1)) { "next" } }
                }
            }
            table {
                tr { th { "candidate" } th { "task" } th { "time" } th.num { "submissions" } th { "review" } th { "status page" } }
                @for a in &assignments {
                    @let time = match a.clock(now) {
                        ClockState::NotStarted => "not started".to_string(),
                        ClockState::Running | ClockState::Closed => clock(a.seconds_left(now)),
                    };
                    tr {
                        td { (a.candidate) } td { (a.task) } td { (time) }
                        td.num { (counts.get(&a.id).copied().unwrap_or(0)) }
                        td { (REVIEW_STATES.iter().find(|(key, _)| *key == state_of(a)).map_or("", |(_, label)| *label)) }
                        td { code { "/status/" (a.id) } }
                    }
                }
            }
        }
        (workers)
        section {
            h2 { "Submissions" }
            @if total > submissions.len() as i64 {
                p {
                    "The newest " (submissions.len()) " of " (total) " submissions are listed; each task's comparison ranks all of its candidates, and "
                    code { "/api/submissions?task=ID" } " lists every one."
                }
            }
            table {
                tr { th { "#" } th { "candidate" } th { "task" } th { "commit" } th { "status" } th.num { "score" } }
                @for s in &submissions {
                    tr {
                        td { a href={ "/submissions/" (s.id) } { (s.id) } }
                        td { (s.candidate) } td { (s.task) }
                        td { code { (s.commit[..s.commit.len().min(10)]) } }
                        td { (s.status_text()) }
                        td.num { (s.score.map(|v| format!("{v:.1}")).unwrap_or_default()) }
                    }
                }
            }
        }
    };
    Ok(page("Dashboard", body).into_response())
}

pub async fn submission_page(State(app): State<Arc<App>>, Path(id): Path<i64>, assessor: AssessorPage) -> AppResult<Response> {
    let found = stored(async { Ok((app.store.submission(id).await?, app.store.notes(id).await?)) }).await?;
    let (Some((submission, report)), notes) = found else { return Err(Failure::not_found("such submission")) };
    let (review, blinds, name) = super::review::review_section(&app, id, &assessor.user, &assessor.csrf).await?;
    let history = super::signals::grades_html(&super::signals::grades(&app, id).await?);
    let csrf = csrf_field(&assessor.csrf);
    let extra = html! {
        section {
            h2 { "Grading" }
            p {
                "Submission #" (submission.number) " of " (name) " · status " (submission.status.as_str())
                @if let (Some(previous), Some(score)) = (submission.previous_score, submission.score) {
                    (format!(" · regraded: {previous:.1} → {score:.1} ({:+.1})", score - previous))
                }
            }
            form method="post" action={ "/submissions/" (id) "/regrade" } { (csrf) button { "Regrade" } }
            (history)
        }
        (review)
        section {
            h3 { "Notes" }
            ul {
                @for note in &notes {
                    li { b { (note.author) } " (" (crate::report::rfc3339(note.created_at)) "): " (note.text) }
                }
            }
            form method="post" action={ "/submissions/" (id) "/notes" } {
                (csrf)
                label for="note-text" { "Note for other assessors" } br;
                textarea id="note-text" name="text" rows="3" cols="60" {} br;
                button { "Add note" }
            }
            p { a href="/" { "back" } }
        }
    };
    match report.map(|r| serde_json::from_str::<Report>(&r)) {
        Some(Ok(mut report)) => {
            blinds.report(&submission.assignment, &submission.task, &mut report);
            Ok(Html(crate::report::html::render_with(&report, extra)).into_response())
        }
        Some(Err(e)) => Ok(page("Submission", html! { p { "The stored report cannot be read (" (e) ")." } (extra) }).into_response()),
        None => Ok(page("Submission", html! { p { "Not graded yet (" (submission.status.as_str()) ")." } (extra) }).into_response()),
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

pub async fn regrade_task(State(app): State<Arc<App>>, TaskInPath(task): TaskInPath, _form: SessionForm<PlainForm>) -> AppResult<Response> {
    let _ = super::queries::queue_regrade(&app, None, Some(task.clone())).await;
    Ok(Redirect::to(&format!("/tasks/{task}/compare")).into_response())
}

/// `?slice=NAME`: the comparison sorted by the metric on one slice of the hidden rows.
#[derive(Debug, Default, Deserialize)]
pub struct CompareQuery {
    slice: Option<String>,
}

/// The metric on one slice of one graded submission, as the comparison shows it.
struct CohortSlice {
    /// The slice's name (`file: name` when the task grades several outputs).
    key: String,
    value: Option<f64>,
    rows: usize,
    higher_is_better: bool,
}

/// The slices of a stored report's accuracy (`GradedWith::slices`).
fn cohort_slices(json: &str, task: Option<&crate::task::TaskSpec>) -> Vec<CohortSlice> {
    #[derive(Deserialize, Default)]
    struct Stored {
        #[serde(default)]
        slices: Vec<crate::grading::slices::SliceScore>,
        #[serde(default)]
        outputs: Vec<StoredOutput>,
    }
    #[derive(Deserialize)]
    struct StoredOutput {
        file: Option<String>,
        #[serde(default)]
        slices: Vec<crate::grading::slices::SliceScore>,
    }
    let stored: Stored = serde_json::from_str(json).unwrap_or_default();
    let higher = |file: Option<&str>| {
        let output = task.and_then(|t| match file {
            Some(file) => t.outputs.iter().find(|o| o.output == file),
            None => t.outputs.first(),
        });
        output.is_none_or(|o| o.metric.higher_is_better())
    };
    let one = |key: String, s: crate::grading::slices::SliceScore, higher_is_better: bool| CohortSlice { key, value: s.value, rows: s.rows, higher_is_better };
    let mut out: Vec<CohortSlice> = stored.slices.into_iter().map(|s| one(s.name.clone(), s, higher(None))).collect();
    for output in stored.outputs {
        let file = output.file.unwrap_or_default();
        let higher_is_better = higher(Some(&file));
        out.extend(output.slices.into_iter().map(|s| one(format!("{file}: {}", s.name), s, higher_is_better)));
    }
    out
}

/// Orders by a slice's value, best first by its metric; rows without one come last.
fn by_slice(a: Option<&CohortSlice>, b: Option<&CohortSlice>) -> std::cmp::Ordering {
    match (a.and_then(|s| s.value.map(|v| (v, s.higher_is_better))), b.and_then(|s| s.value)) {
        (Some((x, higher)), Some(y)) => {
            if higher {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

pub async fn compare_page(
    State(app): State<Arc<App>>,
    assessor: AssessorPage,
    TaskInPath(task): TaskInPath,
    Query(query): Query<CompareQuery>,
) -> AppResult<Response> {
    let task = &task;
    let mut rows = super::queries::comparison(&app, task).await?;
    let affected = super::signals::affected(&app, task).await?;
    let scores: Vec<f64> = rows.iter().filter_map(|s| s.score).collect();
    let baselines: Vec<(String, f64)> = crate::check::graded_baselines(&app.config.tasks_root, task).into_iter().map(|b| (b.fixture, b.score)).collect();
    // Each graded report's methodology findings' rules and its slices, read out of the stored
    // reports in one query.
    let spec = app.tasks.get(task);
    let graded = stored(app.store.graded_provenance(task)).await?;
    let methodology: std::collections::HashMap<i64, Vec<String>> = graded
        .iter()
        .map(|g| {
            let found: Vec<crate::methodology::Finding> = serde_json::from_str(&g.methodology).unwrap_or_default();
            (g.submission, found.iter().map(|f| format!("{} ({})", f.rule.as_str(), f.place())).collect())
        })
        .collect();
    // Each row's components (from the stored reports, in the same query) and its review desk (the
    // task's review items, in one query): the rubric score and the decision.
    let components: std::collections::HashMap<i64, [Option<f64>; 3]> = graded
        .iter()
        .map(|g| {
            let c: serde_json::Value = serde_json::from_str(&g.components).unwrap_or_default();
            (g.submission, ["accuracy", "code_quality", "runtime"].map(|k| c[k].as_f64()))
        })
        .collect();
    let review_spec = spec.as_ref().map(|s| s.review.clone()).unwrap_or_default();
    let mut items_of: std::collections::HashMap<String, Vec<crate::store::ReviewItem>> = std::collections::HashMap::new();
    for item in stored(app.store.task_reviews(task)).await? {
        items_of.entry(item.assignment.clone()).or_default().push(item);
    }
    let desks: std::collections::HashMap<String, crate::review::Desk> =
        items_of.iter().map(|(assignment, items)| (assignment.clone(), crate::review::Desk::build(&review_spec, items))).collect();
    let number = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
    let slices: std::collections::HashMap<i64, Vec<CohortSlice>> =
        graded.iter().map(|g| (g.submission, cohort_slices(&g.slices, spec.as_deref()))).filter(|(_, s)| !s.is_empty()).collect();
    let mut slice_names: Vec<&str> = Vec::new();
    for row in &rows {
        for slice in slices.get(&row.id).into_iter().flatten() {
            if !slice_names.contains(&slice.key.as_str()) {
                slice_names.push(&slice.key);
            }
        }
    }
    let sorted_by = query.slice.as_deref().filter(|name| slice_names.contains(name));
    let slice_of = |id: i64, name: &str| slices.get(&id).and_then(|all| all.iter().find(|s| s.key == name));
    if let Some(name) = sorted_by {
        rows.sort_by(|a, b| by_slice(slice_of(a.id, name), slice_of(b.id, name)));
    }
    // Each row's worst slice: the lowest (or, for an error, highest) against its own metric.
    let worst_of = |id: i64| {
        let all = slices.get(&id)?;
        let scores: Vec<crate::grading::slices::SliceScore> = all
            .iter()
            .map(|s| crate::grading::slices::SliceScore {
                name: s.key.clone(),
                rows: s.rows,
                value: s.value.map(|v| if s.higher_is_better { v } else { -v }),
                note: None,
            })
            .collect();
        crate::grading::slices::worst_and_spread(&scores, true).map(|(w, _)| {
            let value = w.value.unwrap_or(0.0).abs();
            format!("{} ({value:.3}, n={})", w.name, w.rows)
        })
    };
    let csrf = csrf_field(&assessor.csrf);
    let body = html! {
        p {
            a href={ "/api/tasks/" (task) "/export?format=csv" } { "Export the cohort (CSV)" } " · "
            a href={ "/api/tasks/" (task) "/export" } { "JSON" } " · "
            a href={ "/tasks/" (task) "/similarity" } { "Similar submissions" }
        }
        h1 { (task) ": candidates by score" }
        form method="post" action={ "/tasks/" (task) "/regrade" } { (csrf) button { "Regrade every submission" } }
        @if !affected.is_empty() {
            section #affected {
                h2 { "Graded with an older task, data set or image" }
                p {
                    (affected.len()) " submission(s) were graded before the task changed. "
                    form.inline method="post" action={ "/tasks/" (task) "/regrade-affected" } { (csrf) button { "Regrade affected" } }
                    " (each keeps its old grade in its history)."
                }
                ul {
                    @for a in &affected {
                        li { a href={ "/submissions/" (a.submission) } { "#" (a.submission) } " " (a.candidate) ": " (a.changed.join(", ")) " changed" }
                    }
                }
            }
        }
        section {
            h2 { "Distribution" }
            (crate::review::cohort_histogram(&scores, None, &baselines))
            p { small { "Dashed: the task's own fixtures as " code { "takehome check" } " last graded them." } }
        }
        @if !slice_names.is_empty() {
            form #slices method="get" action={ "/tasks/" (task) "/compare" } {
                label for="slice" { "Sort by the metric on a slice of the hidden rows " }
                select #slice name="slice" {
                    option value="" { "(the total score)" }
                    @for name in &slice_names {
                        option value=(name) selected[sorted_by == Some(*name)] { (name) }
                    }
                }
                " " button { "Sort" }
            }
        }
        table {
            tr {
                th { "rank" } th { "candidate" } th { "submission" } th { "status" } th.num { "score" }
                th.num { "accuracy" } th.num { "code quality" } th.num { "runtime" } th.num { "rubric" } th { "decision" }
                th.num { "percentile" } th.num { "change at regrade" }
                @if let Some(name) = sorted_by { th.num { (name) } }
                @if !slice_names.is_empty() { th { "worst slice" } }
                th { "methodology" }
            }
            @for (rank, s) in rows.iter().enumerate() {
                tr {
                    td { (rank + 1) } td { (s.candidate) }
                    td { a href={ "/submissions/" (s.id) } { "#" (s.number) } }
                    td { (s.status_text()) }
                    td.num { (format!("{:.1}", s.score.unwrap_or(0.0))) }
                    @let [accuracy, code_quality, runtime] = components.get(&s.id).copied().unwrap_or_default();
                    td.num { (number(accuracy)) } td.num { (number(code_quality)) } td.num { (number(runtime)) }
                    @let desk = desks.get(&s.assignment);
                    td.num { (number(desk.and_then(|d| d.rubric))) }
                    td { (desk.and_then(|d| d.decision.as_ref()).map(|d| d.decision.as_str()).unwrap_or("")) }
                    td.num { (format!("{:.0}", crate::review::percentile(s.score.unwrap_or(0.0), &scores).unwrap_or(0.0))) }
                    td.num {
                        @if let (Some(p), Some(n)) = (s.previous_score, s.score) { (format!("{:+.1}", n - p)) }
                    }
                    @if let Some(name) = sorted_by {
                        td.num {
                            @match slice_of(s.id, name) {
                                Some(CohortSlice { value: Some(v), rows, .. }) => { (format!("{v:.4}")) " " small { "n=" (rows) } }
                                _ => { small { "none" } }
                            }
                        }
                    }
                    @if !slice_names.is_empty() { td { small { (worst_of(s.id).unwrap_or_default()) } } }
                    td {
                        @match methodology.get(&s.id) {
                            Some(found) if !found.is_empty() => { small { (found.join("; ")) } }
                            Some(_) => { small { "none found" } }
                            None => {}
                        }
                    }
                }
            }
        }
    };
    Ok(page("Compare", body).into_response())
}

pub async fn status_page(State(app): State<Arc<App>>, Candidate(a): Candidate) -> AppResult<Response> {
    let time = super::candidate::candidate_time(&app, &a).await?;
    let pushes = super::candidate::candidate_view(&app, &a.id, time.final_push).await?;
    let feedback = super::candidate::released_feedback(&app, &a.id).await?;
    // The task's title and brief, from the task folder (the brief is the candidate's own).
    let task = app.tasks.get(&a.task);
    let brief_html = task
        .as_ref()
        .and_then(|t| std::fs::read_to_string(t.dir.join(&t.brief)).ok())
        .map(|text| PreEscaped(super::candidate::demote_headings(&crate::review::markdown::render(&text), 2)));
    let title = task.as_ref().map(|t| t.title.clone()).unwrap_or_else(|| a.task.to_string());
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
async fn workers_section(app: &Arc<App>, now: i64) -> Markup {
    let workers = match app.store.workers().await {
        Ok(workers) => workers,
        Err(e) => return html! { section { h2 { "Workers" } p { "Cannot read the workers: " (crate::errors::chain(&e)) } } },
    };
    html! {
        section {
            h2 { "Workers" }
            table {
                tr {
                    th { "name" } th { "instance" } th { "state" } th { "last heartbeat" } th.num { "running / slots" } th { "memory" }
                    th.num { "GPUs" } th { "runtimes" } th { "version" } th { "health" }
                }
                // Live instances, then the last few that stopped.
                @for w in workers.iter().filter(|w| w.alive(now)).chain(workers.iter().filter(|w| !w.alive(now)).take(5)) {
                    @let state = if w.alive(now) { "alive" } else if w.stopped_at.is_some() { "stopped" } else { "lease ran out" };
                    tr {
                        td { (w.name) } td { code { (w.instance) } } td { (state) } td { ((now - w.heartbeat_at).max(0)) " s ago" }
                        td.num { (w.running) " / " (w.slots) }
                        td { (crate::units::format_size(w.memory_bytes.max(0) as u64)) }
                        td.num { (w.gpus) } td { (w.runtimes.join(", ")) } td { (w.version) } td { (w.health) }
                    }
                }
            }
        }
    }
}
