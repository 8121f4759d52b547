//! The candidate's status page: what to fix, from the graded run (as far as it may be shown) and
//! the public dry run (everything), the deadline, how to push, the brief. Nothing that belongs to
//! assessors: no link to their pages, no score of the hidden run. Plain HTML without script,
//! headings in order, labelled tables, colours with enough contrast.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::Json;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::{Deserialize, Serialize};

use super::auth::{Assessor, Candidate, SessionForm};
use super::forms::ApiJson;
use super::queries::{counting, Counting};
use super::{now, stored, App, AppResult, Failure};
use crate::report::candidate::{CandidateOutput, CandidateReport, CandidateStep};
use crate::report::Report;
use crate::store::JobStatus;
use crate::store::{Assignment, ClockState};
use crate::units::format_size;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#fff;color:#111}\
header{background:#14213d;color:#fff;padding:14px 24px}header p{margin:4px 0 0}main{max-width:1000px;margin:0 auto;padding:16px 24px}\
table{border-collapse:collapse;width:100%;margin:8px 0}caption{text-align:left;font-weight:600;padding:4px 0}\
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #ccc;vertical-align:top}.num{text-align:right}\
section{margin:22px 0}pre{background:#f2f2f2;padding:8px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-all}\
.bad{color:#8b0000;font-weight:600}.ok{color:#0b5d1e;font-weight:600}.warn{color:#7a4b00;font-weight:600}a{color:#0645ad}details summary{cursor:pointer}\
a:focus,summary:focus{outline:3px solid #f9a825}";

/// Everything the page shows, gathered by the handler.
pub struct StatusPage<'a> {
    pub assignment: &'a Assignment,
    pub title: &'a str,
    /// The brief, rendered from Markdown with raw HTML refused (`review::markdown`).
    pub brief_html: Option<Markup>,
    pub clone_url: String,
    pub now: i64,
    /// The listed pushes, newest first (see [`candidate_view`]).
    pub submissions: &'a [CandidateSubmission],
    /// Every push of the assignment, listed or not.
    pub pushes_total: usize,
    pub feedback_html: Option<Markup>,
    pub time: &'a CandidateTime,
    /// The form token for the final-submission choice.
    pub csrf: String,
    /// Whether the task declares a public run (else none is waited for).
    pub has_public_run: bool,
    /// The task's runner image and how many packages it holds, if its list can be read.
    pub image: Option<(String, usize)>,
    /// The latest push's number and what its requirement files ask that the image lacks.
    pub requirement_warnings: Option<(i64, Vec<String>)>,
}

pub fn render(p: &StatusPage) -> String {
    let a = p.assignment;
    // Refresh only while something is still to come, so a screen reader is not interrupted.
    // A dry run waits for an idle slot; one still missing an hour after its push will not come
    // (the worker that held it stopped), so the page stops asking.
    let pending = p
        .submissions
        .iter()
        .filter(|s| s.runs_shown)
        .any(|s| s.report.is_none() || (p.has_public_run && s.public_run.is_none() && p.now - s.pushed_at_seconds < 3600));
    let open = a.clock(p.now) != ClockState::Closed;
    let shown = p.submissions.iter().filter(|s| s.runs_shown).count();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                @if pending { meta http-equiv="refresh" content="10"; }
                title { (p.title) " · your submissions" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { (p.title) } p { (deadline_text(a, p.now)) } }
                main {
                    nav aria-label="On this page" {
                        a href="#pushes" { "Your pushes" } " · " a href="#environment" { "What your code runs with" } " · "
                        a href="#push" { "How to push" } " · " a href="#brief" { "The brief" }
                    }
                    @for e in &p.time.extensions {
                        p.ok { "Your time was extended by " (e.minutes) " minutes (" (e.at) "): " (e.reason) }
                    }
                    @if let Some(feedback) = &p.feedback_html {
                        section #feedback aria-labelledby="feedback-h" { h2 #feedback-h { "Feedback from the assessors" } (feedback) }
                    }
                    section #pushes aria-labelledby="pushes-h" {
                        h2 #pushes-h { "Your pushes" }
                        @if p.submissions.is_empty() {
                            p { "No push yet. Each push is run twice: on the public data you have, with everything shown here, and on hidden data, which decides the grade." }
                        } @else {
                            p {
                                "The " strong { "public run" } " runs your steps on the public data you have and shows everything: logs, exit codes, time and memory against the limits, and the format check of your outputs. The "
                                strong { "graded run" } " runs them on hidden data; it decides the grade, and only what cannot reveal the hidden data is shown."
                            }
                            @match (p.time.final_push, &p.time.final_chosen_at) {
                                (Some(n), Some(at)) => p { strong { "Your final submission: push " (n) } ", chosen at " (at) "." },
                                (Some(n), None) if p.time.can_choose_final => p {
                                    strong { "Your final submission: push " (n) } " (the last push). You may choose another one below until the deadline."
                                },
                                (Some(n), None) => p { strong { "Your final submission: push " (n) } " (the last push before the deadline counts)." },
                                _ => {}
                            }
                            (pushes_table(p.submissions, p.pushes_total, p.time.final_push))
                            @if shown < p.pushes_total {
                                p {
                                    "The runs of your newest " (RUNS_SHOWN.min(p.pushes_total)) " pushes"
                                    @if p.time.final_push.is_some() { " and of your final submission" }
                                    " are shown below; the others are kept and still count if you choose them."
                                }
                            }
                            @for s in p.submissions.iter().filter(|s| s.runs_shown) {
                                @let choose = (p.time.can_choose_final && open && p.time.final_push != Some(s.number)).then_some(p.csrf.as_str());
                                (push_section(s, &a.id, choose, p.has_public_run))
                            }
                        }
                    }
                    (environment_section(p))
                    section #push aria-labelledby="push-h" {
                        h2 #push-h { "How to push" }
                        p { "Commit your work and push it to your repository; each push is graded." }
                        pre { "git clone " (p.clone_url) "\ncd " (a.id) "\ngit add -A\ngit commit -m \"What changed\"\ngit push" }
                        p { "Git asks for your user name (" code { (a.id) } ") and the token you were given." }
                    }
                    @match &p.brief_html {
                        Some(brief) => section #brief aria-labelledby="brief-h" { h2 #brief-h { "The brief" } (brief) },
                        None => section #brief { h2 { "The brief" } p { "It is in your repository (brief.md)." } },
                    }
                }
            }
        }
    }
    .into_string()
}

/// The image the steps run in, and what the latest push asks of it that it lacks.
fn environment_section(p: &StatusPage) -> Markup {
    html! {
        section #environment aria-labelledby="environment-h" {
            h2 #environment-h { "What your code runs with" }
            @match &p.image {
                Some((image, count)) => p {
                    "Your steps run in the " code { (image) } " image, with " (count) " packages listed with their versions in " code { "ENVIRONMENT.md" }
                    " in your repository, and no network: nothing can be installed while they run."
                },
                None => p { "Your steps run with no network: nothing can be installed while they run." },
            }
            @if let Some((number, warnings)) = &p.requirement_warnings {
                @if warnings.is_empty() {
                    p.ok { "Push " (number) ": everything its requirement files name is installed." }
                } @else {
                    p.warn { strong { "Push " (number) " asks for what the image lacks" } " (your code may fail where it imports them):" }
                    ul { @for warning in warnings { li { code { (warning) } } } }
                }
            }
        }
    }
}

/// Moves every heading of rendered HTML `by` levels down (at most to h6), so that a document
/// placed under a page's h2 keeps the page's outline (`<h1>` of the brief becomes `<h3>`).
pub fn demote_headings(html: &str, by: usize) -> String {
    let mut out = html.to_string();
    for level in (1..=6).rev() {
        let to = (level + by).min(6);
        out = out.replace(&format!("<h{level}>"), &format!("<h{to}>")).replace(&format!("</h{level}>"), &format!("</h{to}>"));
    }
    out
}

/// `Deadline: 2026-11-28 07:45 UTC (1h02m left)`, or when the clock starts.
fn deadline_text(a: &Assignment, now: i64) -> String {
    match a.deadline() {
        None => format!("The clock starts at your first clone; then you have {}.", hours(a.time_box_seconds)),
        Some(deadline) if deadline <= now => format!("Deadline: {} — closed. Pushes after it are not graded.", when(deadline)),
        Some(deadline) => format!("Deadline: {} ({} left).", when(deadline), hours(deadline - now)),
    }
}

fn when(seconds: i64) -> String {
    when_text(&crate::report::rfc3339(seconds))
}

/// `2026-11-28T07:45:00Z` as `2026-11-28 07:45 UTC`.
fn when_text(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

fn hours(seconds: i64) -> String {
    format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
}

fn pushes_table(submissions: &[CandidateSubmission], total: usize, final_push: Option<i64>) -> Markup {
    let caption = if submissions.len() < total {
        format!("Your newest {} of {total} pushes, newest first", submissions.len())
    } else {
        "Every push, newest first".to_string()
    };
    html! {
        table {
            caption { (caption) }
            tr {
                th scope="col" { "#" } th scope="col" { "commit" } th scope="col" { "pushed" }
                th scope="col" { "graded run" } th scope="col" { "public run" } th scope="col" { "counts" }
            }
            @for s in submissions {
                @let public = match &s.public_run {
                    None => "not run yet".to_string(),
                    Some(PublicRunView { report: Some(r), .. }) => r.status.as_str().to_string(),
                    Some(_) => "not run (our side)".to_string(),
                };
                tr {
                    td { @if s.runs_shown { a href={ "#push-" (s.number) } { (s.number) } } @else { (s.number) } }
                    td { code { (s.commit[..s.commit.len().min(10)]) } }
                    td { (s.pushed_at) }
                    td {
                        @match &s.graded_from {
                            Some(at) => { (status_word("queued")) " (graded from " (when_text(at)) ")" }
                            None => (status_word(&s.grade_status.clone().unwrap_or_else(|| s.status.clone()))),
                        }
                    }
                    td { (status_word(&public)) }
                    td { @if final_push == Some(s.number) { strong { "final" } } }
                }
            }
        }
    }
}

fn status_word(status: &str) -> Markup {
    let class = if matches!(status, "graded" | "ok") {
        "ok"
    } else if matches!(status, "queued" | "running" | "not run yet") {
        ""
    } else {
        "bad"
    };
    html! { span class=(class) { (status.replace('_', " ")) } }
}

fn push_section(s: &CandidateSubmission, assignment: &str, choose: Option<&str>, has_public_run: bool) -> Markup {
    let n = s.number;
    html! {
        section id={ "push-" (n) } aria-labelledby={ "push-" (n) "-h" } {
            h3 id={ "push-" (n) "-h" } { "Push " (n) " " small { "(" code { (s.commit[..s.commit.len().min(10)]) } ", " (s.pushed_at) ")" } }
            @if let Some(csrf) = choose {
                form method="post" action={ "/status/" (assignment) "/final" } {
                    (super::csrf_field(csrf))
                    input type="hidden" name="number" value=(n);
                    button { "Make push " (n) " my final submission" }
                }
            }
            h4 { "Public run" }
            @match &s.public_run {
                None if !has_public_run => p { "This task has no public run." },
                None => p { "Not run yet: it runs once no graded run is waiting (this page refreshes until then)." },
                Some(PublicRunView { not_run: Some(why), .. }) => p { (why) },
                Some(view) => {
                    @if let Some(report) = &view.report { (run_html(report, n, "public")) }
                    @if let Some(scores) = &view.public_score {
                        table {
                            caption { "Score on the public data (the hidden data decides the grade)" }
                            tr { th scope="col" { "output" } th scope="col" { "metric" } th.num scope="col" { "value" } }
                            @for score in scores {
                                tr {
                                    td { (score.file) } td { (score.metric) }
                                    td.num { (score.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "not scored".into())) }
                                }
                            }
                        }
                    }
                }
            }
            h4 { "Graded run (hidden data)" }
            @match (&s.report, &s.graded_from) {
                (None, Some(at)) => p {
                    "Queued: graded from " (when_text(at)) " at the earliest. Only so many pushes are graded an hour; this one is kept and waits its turn."
                },
                (None, None) => p { (s.status.replace('_', " ")) "." },
                (Some(report), _) => (run_html(report, n, "graded")),
            }
        }
    }
}

/// One run's steps, outputs and lint findings.
pub fn run_html(report: &CandidateReport, number: i64, which: &str) -> Markup {
    let listed =
        if report.lint.findings.len() < *report.lint.n_findings { format!(", the first {} listed", report.lint.findings.len()) } else { String::new() };
    html! {
        table {
            caption { "Steps of the " (which) " run: " (status_word(report.status.as_str())) }
            tr {
                th scope="col" { "step" } th scope="col" { "outcome" } th scope="col" { "exit code" } th scope="col" { "time" } th scope="col" { "peak memory" }
            }
            @for step in &report.steps { (step_row(step)) }
        }
        @for step in &report.steps {
            @match &step.details {
                Some(d) => {
                    @for (stream, tail, truncated) in [("output", &d.stdout_tail, d.stdout_truncated), ("errors", &d.stderr_tail, d.stderr_truncated)] {
                        @if !tail.is_empty() {
                            details open[step.outcome != crate::sandbox::Outcome::Ok && stream == "errors"] {
                                summary { (step.name) " " (stream) @if truncated { " (the last part)" } }
                                pre id={ (which) "-" (number) "-" (step.name) "-" (stream) } { (crate::report::html::visible(tail)) }
                            }
                        }
                    }
                }
                None => p { (step.name) ": this step read hidden data, so its logs stay with the assessors; the public run shows the same step's logs." },
            }
        }
        (outputs_html(&report.outputs))
        @for refusal in &report.rejected {
            p.bad {
                "Refused in /output: " (refusal.what) " (" (refusal.count) ")"
                @match &refusal.examples {
                    Some(examples) => { ", for example" @for example in examples.iter() { " " code { (example.path) } " (" (example.reason) ")" } }
                    None => "; their names stay with the assessors, since the steps read hidden data",
                }
            }
        }
        @if !report.lint.findings.is_empty() {
            details {
                summary { (report.lint.n_findings) " lint findings (ruff)" (listed) }
                ul { @for f in report.lint.findings.iter() { li { code { (f.file) ":" (f.line) } " " (f.rule) " " (f.message) } } }
            }
        }
    }
}

fn step_row(step: &CandidateStep) -> Markup {
    html! {
        tr {
            td { (step.name) }
            td { (status_word(step.outcome.as_str())) @if !step.message.is_empty() { " — " (step.message) } }
            @match (&step.details, &step.usage) {
                (Some(d), _) => {
                    td { (d.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                    td { (format!("{:.2} s of {:.0} s", d.wall_seconds, d.timeout_seconds)) }
                    td {
                        @match d.peak_memory_bytes {
                            Some(peak) => { (format_size(peak)) " of " (format_size(d.memory_limit_bytes)) }
                            None => { "— of " (format_size(d.memory_limit_bytes)) }
                        }
                    }
                }
                (None, Some(u)) => {
                    td { "withheld" }
                    td { (u.time) " of " (format!("{:.0}", u.timeout_seconds)) " s" }
                    td { (u.memory) " of " (format_size(*u.memory_limit_bytes)) }
                }
                (None, None) => { td { "withheld" } td { "withheld" } td { "withheld" } }
            }
        }
    }
}

fn outputs_html(outputs: &[CandidateOutput]) -> Markup {
    html! {
        table {
            caption { "Outputs: format check" }
            tr { th scope="col" { "file" } th scope="col" { "format" } }
            @for o in outputs {
                tr {
                    td { code { "/output/" (o.file) } }
                    td {
                        @match &o.problem {
                            None => { span.ok { "as expected" } " (or not reached)" }
                            Some(p) => { span.bad { (p.kind.as_str().replace('_', " ")) } ": " (p.message) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- which push counts; extensions

/// The candidate's form token: their token's digest under a key of its own (a form posted from
/// another site carries the browser's credentials, never this).
pub fn candidate_csrf(a: &Assignment) -> String {
    crate::secret::hmac_hex(a.token_hash.as_bytes(), b"takehome candidate csrf v1")
}

/// Records the candidate's choice of final push (push `number` of theirs), while the clock runs.
async fn choose(app: &Arc<App>, a: &Assignment, number: i64) -> Result<Counting, Failure> {
    let bad = |message: String| Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message };
    let task = app.tasks.load(&a.task).map_err(|e| bad(crate::errors::chain(&e)))?;
    if !task.candidate_chooses_final {
        return Err(bad(format!("task {} counts the last push before the deadline; there is nothing to choose", a.task)));
    }
    if a.clock(now()) == ClockState::Closed {
        return Err(bad("the deadline has passed: the final submission can no longer change".into()));
    }
    let submissions = stored(app.store.submissions(Some(&a.id), None)).await?;
    let Some(s) = submissions.iter().find(|s| s.number == number) else {
        return Err(bad(format!(
            "you have no push {number} (your pushes: {})",
            submissions.iter().map(|s| s.number.to_string()).collect::<Vec<_>>().join(", ")
        )));
    };
    let at = now();
    stored(app.store.choose_final(&a.id, s.id, at)).await?;
    Ok(Counting { submission: s.id, number: s.number, chosen_at: Some(at) })
}

#[derive(Deserialize)]
pub struct FinalForm {
    number: i64,
    #[serde(default)]
    csrf: String,
}

/// `POST /status/<assignment>/final` from the status page's form.
pub async fn choose_form(State(app): State<Arc<App>>, Candidate(a): Candidate, Form(form): Form<FinalForm>) -> AppResult<Redirect> {
    if !crate::secret::same(&form.csrf, &candidate_csrf(&a)) {
        return Err(Failure { status: StatusCode::FORBIDDEN, message: "the form's token does not match (reload the page and try again)".into() });
    }
    choose(&app, &a, form.number).await?;
    Ok(Redirect::to(&format!("/status/{}#pushes", a.id)))
}

#[derive(Deserialize)]
pub struct FinalInput {
    number: i64,
}

/// `POST /api/status/<assignment>/final` `{number}`.
pub async fn choose_api(State(app): State<Arc<App>>, Candidate(a): Candidate, ApiJson(input): ApiJson<FinalInput>) -> AppResult<Json<Counting>> {
    Ok(Json(choose(&app, &a, input.number).await?))
}

/// Gives one candidate extra time, with a reason (recorded with who gave it).
async fn extend(app: &Arc<App>, user: &str, assignment: &str, minutes: i64, reason: &str) -> Result<crate::store::Extension, Failure> {
    let bad = |message: &str| Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: message.to_string() };
    if !(1..=7 * 24 * 60).contains(&minutes) {
        return Err(bad("minutes: expected a whole number from 1 to 10080 (a week)"));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(bad("reason: say why, in at most 500 characters (the candidate reads it)"));
    }
    if stored(app.store.assignment(assignment)).await?.is_none() {
        return Err(Failure::not_found("such assignment"));
    }
    let at = now();
    let id = stored(app.store.add_extension(assignment, minutes * 60, reason, user, at)).await?;
    Ok(crate::store::Extension {
        id,
        assignment: assignment.to_string(),
        seconds: minutes * 60,
        reason: reason.to_string(),
        author: user.to_string(),
        created_at: at,
    })
}

#[derive(Deserialize)]
pub struct ExtendInput {
    minutes: i64,
    reason: String,
}

/// `POST /api/assignments/<id>/extensions` `{minutes, reason}`.
pub async fn extend_api(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    assessor: Assessor,
    ApiJson(input): ApiJson<ExtendInput>,
) -> AppResult<(StatusCode, Json<crate::store::Extension>)> {
    Ok((StatusCode::CREATED, Json(extend(&app, &assessor.0, &id, input.minutes, &input.reason).await?)))
}

/// `GET /api/assignments/<id>/extensions`.
pub async fn extensions_api(State(app): State<Arc<App>>, Path(id): Path<String>, _assessor: Assessor) -> AppResult<Json<serde_json::Value>> {
    let rows = stored(app.store.extensions(&id)).await?;
    Ok(Json(serde_json::json!({ "assignment": id, "extensions": rows })))
}

/// `POST /assignments/<id>/extend` from the submission page's timeline.
pub async fn extend_form(State(app): State<Arc<App>>, Path(id): Path<String>, form: SessionForm<super::forms::FieldsForm>) -> AppResult<Redirect> {
    let fields = form.form.fields();
    let minutes = fields.get("minutes").and_then(|m| m.trim().parse::<i64>().ok()).unwrap_or(0);
    let reason = fields.get("reason").cloned().unwrap_or_default();
    extend(&app, &form.user, &id, minutes, &reason).await?;
    let back = stored(app.store.submissions(Some(&id), None)).await.ok().and_then(|s| s.first().map(|s| format!("/submissions/{}#timeline", s.id)));
    Ok(Redirect::to(&back.unwrap_or_else(|| "/".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_move_down_once_each() {
        assert_eq!(demote_headings("<h1>A</h1><h2>B</h2><h3>C</h3><h5>E</h5>", 2), "<h3>A</h3><h4>B</h4><h5>C</h5><h6>E</h6>");
    }

    #[test]
    fn bands_of_limits_and_counts() {
        use crate::report::candidate::{band, count_band};
        assert_eq!(band(10.0, 120.0).as_str(), "under 25 %");
        assert_eq!(band(100.0, 120.0).as_str(), "50–90 %");
        assert_eq!(band(119.0, 120.0).as_str(), "over 90 %");
        assert_eq!(band(5.0, 0.0).as_str(), "over 90 %");
        assert_eq!([count_band(1), count_band(7), count_band(42), count_band(4000)].map(|b| b.as_str()), ["1", "2–9", "10–99", "100 or more"]);
    }
}

// ---------------------------------------------------------------- the candidate's view

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
    let counting = counting(app, a, &submissions).await?;
    let task = app.tasks.get(&a.task);
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
