//! The assessors' review desk over HTTP: the code view, line comments, rubric scores from several
//! reviewers, the decision, feedback released to the candidate, the cohort export, and blind
//! review (a stable alias instead of the candidate's name in every page and answer until a
//! decision is recorded). Pages take the session cookie and forms carry its CSRF token; the JSON
//! API takes a session or Basic credentials ([`Assessor`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup, PreEscaped};
use serde::{Deserialize, Serialize};

use super::auth::{Assessor, AssessorPage, CsrfForm, SessionForm};
use super::bounded::{self, CancelOnDrop};
use super::forms::{ApiJson, FieldsForm};
use super::queries::Blinds;
use super::TaskInPath;
use super::{csrf_field, now, page, stored, App, AppResult, Failure};
use crate::grading::lint::Finding;
use crate::report::{rfc3339, Report};
use crate::review::code::{self, Change, CodeView, DiffStatus, FileKind};
use crate::review::{self, CommentBody, CriterionScore, Decision, DecisionBody, Desk, ScoresBody};
use crate::store::{Assignment, ReviewKind, Submission};
use crate::task::ReviewSpec;
use crate::task::TaskId;

// ---------------------------------------------------------------- loading

/// A submission with what its review needs.
struct Loaded {
    submission: Submission,
    report: Option<Report>,
    assignment: Assignment,
    spec: Option<Arc<crate::task::TaskSpec>>,
    desk: Desk,
    blinds: Blinds,
}

impl Loaded {
    fn review_spec(&self) -> ReviewSpec {
        self.spec.as_ref().map(|s| s.review.clone()).unwrap_or_default()
    }
    fn name(&self) -> String {
        self.blinds.name(&self.assignment.id, &self.assignment.task, &self.assignment.candidate)
    }
}

async fn load_task(app: &Arc<App>, task: &TaskId) -> Option<Arc<crate::task::TaskSpec>> {
    let (tasks, task) = (app.tasks.clone(), task.clone());
    tokio::task::spawn_blocking(move || tasks.get(&task)).await.ok().flatten()
}

/// The submission a route names (`{id}`), asked about by an assessor: who asks (`A`: [`Assessor`]
/// for the API, [`AssessorPage`] for pages, checked first, so that nothing is read for a
/// stranger), then the submission loaded with its report, assignment, task, review desk and the
/// blind names ([`Loaded::name`]): the one place these routes find a submission and the name to
/// show for it. A missing one is 404.
pub struct Reviewed<A> {
    pub who: A,
    id: i64,
    loaded: Loaded,
}

impl<A> axum::extract::FromRequestParts<Arc<App>> for Reviewed<A>
where
    A: axum::extract::FromRequestParts<Arc<App>, Rejection = axum::response::Response> + Send,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let who = A::from_request_parts(parts, app).await?;
        let params = axum::extract::RawPathParams::from_request_parts(parts, app).await.map_err(IntoResponse::into_response)?;
        let id = params.iter().find_map(|(key, value)| (key == "id").then(|| value.parse::<i64>().ok()).flatten());
        let Some(id) = id else { return Err(Failure::not_found("such submission").into_response()) };
        let loaded = load(app, id).await.map_err(IntoResponse::into_response)?;
        Ok(Reviewed { who, id, loaded })
    }
}

async fn load(app: &Arc<App>, id: i64) -> Result<Loaded, Failure> {
    let Some((submission, report)) = stored(app.store.submission(id)).await? else { return Err(Failure::not_found("such submission")) };
    let assignment = stored(app.store.assignment(&submission.assignment)).await?.ok_or_else(|| Failure::not_found("such assignment"))?;
    let spec = load_task(app, &submission.task).await;
    let items = stored(app.store.reviews(Some(&submission.assignment))).await?;
    let review_spec = spec.as_ref().map(|s| s.review.clone()).unwrap_or_default();
    let desk = Desk::build(&review_spec, &items);
    let blinds = Blinds::load(app).await?;
    let report = report.and_then(|r| serde_json::from_str::<Report>(&r).ok());
    Ok(Loaded { submission, report, assignment, spec, desk, blinds })
}

/// The code view of a submission's commit (git on the blocking pool), within the code view's
/// bounds and [`code::PAGE_TIME`]; if this future is dropped (the client went away), the reading
/// stops at the next file.
async fn code_view(app: &Arc<App>, loaded: &Loaded) -> Result<CodeView, Failure> {
    let repos = app.repos.clone();
    let assignment = loaded.submission.assignment.clone();
    let commit = loaded.submission.commit.clone();
    let guard = CancelOnDrop::default();
    let cancelled = guard.flag();
    let deadline = Instant::now() + code::PAGE_TIME;
    let view = tokio::task::spawn_blocking(move || {
        // What we gave: the repository's first commit (brief, starter, public data).
        let given = match repos.given_commit(&assignment, &commit) {
            Ok(root) if root != commit => repos.tree(&assignment, &root).map_err(|e| Failure::internal(crate::errors::chain(&e)))?,
            _ => Vec::new(),
        };
        // The push's tree, streamed: the entries the page may list, those of our files further
        // on (so that a file we gave is not called removed), and a count of the rest.
        let given_paths: std::collections::HashSet<&str> = given.iter().map(|e| e.path.as_str()).collect();
        let (mut entries, mut beyond) = (Vec::new(), 0usize);
        repos
            .walk_tree(&assignment, &commit, |entry| {
                if entries.len() < code::MAX_LISTED || given_paths.contains(entry.path.as_str()) {
                    entries.push(entry);
                } else {
                    beyond += 1;
                }
                !cancelled.is_set()
            })
            .map_err(|e| Failure::internal(crate::errors::chain(&e)))?;
        let mut view = code::build(&commit, &entries, &given, deadline, &|| cancelled.is_set(), |entry, cap, count_to| {
            bounded::blob_prefix(&repos, &assignment, &entry.object, cap, count_to)
        });
        view.count_not_listed(beyond);
        Ok(view)
    })
    .await
    .map_err(|e| Failure::internal(e.to_string()))?;
    drop(guard);
    view
}

/// The candidate's NOTES.md as shown: its first part within one file's bounds of the code view,
/// and what was cut.
pub struct Notes {
    pub text: String,
    pub cut: Option<code::Cut>,
}

/// The candidate's NOTES.md (any case, at the top of the commit), if any: only that blob is read,
/// up to what is rendered ([`review::markdown::MAX_NOTES`], [`code::MAX_FILE_LINES`]).
async fn notes_of(app: &Arc<App>, loaded: &Loaded) -> Result<Option<Notes>, Failure> {
    let repos = app.repos.clone();
    let assignment = loaded.submission.assignment.clone();
    let commit = loaded.submission.commit.clone();
    tokio::task::spawn_blocking(move || {
        let found =
            repos.find_entry(&assignment, &commit, |path| path.eq_ignore_ascii_case("NOTES.md")).map_err(|e| Failure::internal(crate::errors::chain(&e)))?;
        let Some(entry) = found.filter(|e| e.kind == "blob" && e.mode.starts_with("100")) else {
            return Ok(None);
        };
        let size = entry.size.unwrap_or(0);
        let count_to = if size <= code::MAX_COUNTED { size } else { 0 };
        let max = review::markdown::MAX_NOTES;
        let Ok(prefix) = bounded::blob_prefix(&repos, &assignment, &entry.object, max as u64, count_to) else { return Ok(None) };
        let text = bounded::utf8_prefix(&prefix.bytes).map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&prefix.bytes).into_owned());
        let piece = code::cut(&text, code::MAX_FILE_LINES, max);
        let reason = match piece.bound {
            Some(code::Bound::Lines) => Some(code::CutReason::FileLines),
            Some(code::Bound::Cost) => Some(code::CutReason::Notes),
            None if !prefix.whole => Some(code::CutReason::Notes),
            None => None,
        };
        let cut = reason.map(|reason| code::Cut::part(reason, piece.lines as u64, piece.end as u64, prefix.lines, size));
        Ok(Some(Notes { text: text[..piece.end].to_string(), cut }))
    })
    .await
    .map_err(|e| Failure::internal(e.to_string()))?
}

/// The cohort's scores: each candidate's latest graded submission, as the comparison ranks them.
async fn cohort_scores(app: &Arc<App>, task: &TaskId) -> Result<Vec<f64>, Failure> {
    Ok(super::queries::comparison(app, task).await?.iter().filter_map(|s| s.score).collect())
}

// ---------------------------------------------------------------- timeline

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub number: i64,
    pub submission: i64,
    pub commit: String,
    /// The commit message, up to [`bounded::MAX_MESSAGE`] bytes (then `… (cut: N bytes)`).
    pub message: String,
    /// Bytes of the message not shown.
    pub message_cut_bytes: u64,
    pub pushed_at: String,
    /// Seconds after the clock started.
    pub after_start: Option<i64>,
    pub status: String,
    pub score: Option<f64>,
    pub after_deadline: bool,
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub started_at: Option<String>,
    pub deadline: Option<String>,
    pub time_box_seconds: i64,
    /// Extra time given to this candidate, with reasons (the deadline above includes it).
    pub extensions: Vec<crate::store::Extension>,
    /// The push that counts, and when the candidate chose it (`None`: the last push counts).
    pub counts: Option<i64>,
    pub chosen_at: Option<String>,
    pub pushes: Vec<TimelineEntry>,
    /// Pushes between the first [`TIMELINE_FIRST`] and the last [`TIMELINE_LAST`] that are
    /// counted but not listed.
    pub pushes_not_listed: usize,
}

/// Pushes a timeline lists from the start and from the end (and the push that counts).
const TIMELINE_FIRST: usize = 50;
const TIMELINE_LAST: usize = 250;

/// The time to read an assignment's commit messages.
const MESSAGES_TIME: Duration = Duration::from_secs(1);

async fn timeline(app: &Arc<App>, assignment: &Assignment) -> Result<Timeline, Failure> {
    let mut submissions = stored(app.store.submissions(Some(&assignment.id), None)).await?;
    submissions.sort_by_key(|s| s.number);
    let counting = super::queries::counting(app, assignment, &submissions).await?;
    // The first pushes (how they began), the newest ones and the one that counts; the rest are
    // counted, not listed, so that the page stays its size however often they pushed.
    let total = submissions.len();
    let counted = counting.as_ref().map(|c| c.number);
    let listed: Vec<_> = submissions
        .into_iter()
        .enumerate()
        .filter(|(index, s)| *index < TIMELINE_FIRST || *index + TIMELINE_LAST >= total || Some(s.number) == counted)
        .map(|(_, s)| s)
        .collect();
    let not_listed = total - listed.len();
    let submissions = listed;
    let commits: Vec<String> = submissions.iter().map(|s| s.commit.clone()).collect();
    let (repos, id) = (app.repos.clone(), assignment.id.clone());
    // Each message up to a few KiB, read with a cap (never whole), within a second.
    let deadline = Instant::now() + MESSAGES_TIME;
    let messages = tokio::task::spawn_blocking(move || bounded::commit_messages(&repos, &id, &commits, deadline)).await.unwrap_or_default();
    let deadline = assignment.deadline();
    let extensions = stored(app.store.extensions(&assignment.id)).await?;
    Ok(Timeline {
        pushes_not_listed: not_listed,
        started_at: assignment.started_at.map(rfc3339),
        deadline: deadline.map(rfc3339),
        time_box_seconds: assignment.total_seconds(),
        extensions,
        counts: counting.as_ref().map(|c| c.number),
        chosen_at: counting.and_then(|c| c.chosen_at).map(rfc3339),
        pushes: submissions
            .iter()
            .map(|s| TimelineEntry {
                number: s.number,
                submission: s.id,
                commit: s.commit.clone(),
                message: messages.get(&s.commit).map(bounded::Message::shown).unwrap_or_default(),
                message_cut_bytes: messages.get(&s.commit).map(|m| m.cut_bytes).unwrap_or(0),
                pushed_at: rfc3339(s.pushed_at),
                after_start: assignment.started_at.map(|start| s.pushed_at - start),
                status: s.status_text().to_string(),
                score: s.score,
                after_deadline: deadline.is_some_and(|d| s.pushed_at > d),
            })
            .collect(),
    })
}

fn offset(seconds: i64) -> String {
    let sign = if seconds < 0 { "−" } else { "+" };
    let s = seconds.abs();
    format!("{sign}{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
}

fn timeline_html(t: &Timeline, assignment: &str, csrf: &str) -> Markup {
    let duration = |seconds: i64| crate::units::format_duration(std::time::Duration::from_secs(seconds.max(0) as u64));
    let mut previous: Option<i64> = None;
    html! {
        section #timeline {
            h2 { "How they worked" }
            p {
                "Clock started " (t.started_at.as_deref().unwrap_or("not yet")) " · deadline " (t.deadline.as_deref().unwrap_or("—"))
                " · time box " (duration(t.time_box_seconds))
            }
            @for e in &t.extensions {
                p.extension { "Extended by " (duration(e.seconds)) " at " (rfc3339(e.created_at)) " by " (e.author) ": " (e.reason) }
            }
            @match (t.counts, &t.chosen_at) {
                (Some(n), Some(at)) => p { strong { "Final submission: push #" (n) } ", chosen by the candidate at " (at) "." },
                (Some(n), None) => p { "Final submission: push #" (n) " (the last push)." },
                _ => {}
            }
            form method="post" action={ "/assignments/" (assignment) "/extend" } {
                (csrf_field(csrf))
                label for="extend-minutes" { "Give extra time (minutes)" } " "
                input #extend-minutes name="minutes" type="number" min="1" max="10080" required;
                " " label for="extend-reason" { "reason" } " "
                input #extend-reason name="reason" size="40" required;
                " " button { "Extend" } " " small { "(the candidate sees the new deadline and the reason)" }
            }
            table {
                tr {
                    th { "push" } th { "time" } th { "after start" } th { "message" } th { "status" } th.num { "score" } th style="width:30%" { "in the time box" }
                }
                @for p in &t.pushes {
                    @if let Some(gap) = previous.map(|n| p.number - n - 1).filter(|&gap| gap > 0) {
                        tr { td colspan="7" { em { "… " (gap) " pushes not listed (of " (t.pushes_not_listed) " not listed in all) …" } } }
                    }
                    @let _ = previous.replace(p.number);
                    tr {
                        td { a href={ "/submissions/" (p.submission) } { "#" (p.number) } @if t.counts == Some(p.number) { " (final)" } }
                        td { (p.pushed_at) }
                        td { (p.after_start.map(offset).unwrap_or_default()) @if p.after_deadline { " (after the deadline)" } }
                        td { (p.message) }
                        td { (p.status) }
                        td.num { (p.score.map(|v| format!("{v:.1}")).unwrap_or_default()) }
                        td {
                            @if let (Some(after), true) = (p.after_start, t.time_box_seconds > 0) {
                                @let at = (after as f64 / t.time_box_seconds as f64 * 100.0).clamp(0.0, 100.0);
                                div style="background:#eceff3;height:10px;position:relative" aria-hidden="true" {
                                    div style=(format!("position:absolute;left:{at:.1}%;width:3px;height:10px;background:#1f4fbf")) {}
                                }
                            }
                        }
                    }
                }
            }
            details #erase {
                summary { "Erase this candidate's data" }
                form method="post" action={ "/assignments/" (assignment) "/erase" } {
                    (csrf_field(csrf))
                    p { "Deletes every push, report, review item, note, e-mail and the repository of this assignment, for good (the candidate's right to erasure). "
                        "An audit record is kept with the task, the time and your name only. " code { "takehome export-candidate" } " first writes what is held, should they ask for it." }
                    label for="erase-confirm" { "Type " code { "erase" } " to confirm " }
                    input #erase-confirm name="confirm" required pattern="erase" autocomplete="off";
                    " " button { "Erase" }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- actions (shared by forms and JSON)

async fn record_webhook(app: &Arc<App>, event: crate::webhook::Event, data: serde_json::Value) {
    let body = crate::webhook::event_body(event, data, now());
    if let Err(e) = app.store.queue_webhook(event.as_str(), &body, now()).await {
        tracing::warn!(error = %crate::errors::Chain(&e), event = event.as_str(), "cannot queue a webhook");
    }
    app.webhooks.notify_one();
}

async fn add_comment(app: &Arc<App>, user: &str, id: i64, loaded: &Loaded, body: CommentBody) -> Result<i64, Failure> {
    let text = review::clip(&body.text);
    if text.is_empty() {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: "text: the comment is empty".into() });
    }
    if body.line == 0 || body.file.is_empty() || body.file.len() > 4096 {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: "file and line (from 1) name the line commented on".into() });
    }
    // git's listing says whether the file exists; no blob needs reading.
    let (repos, assignment, commit) = (app.repos.clone(), loaded.submission.assignment.clone(), loaded.submission.commit.clone());
    let file = body.file.clone();
    let found = tokio::task::spawn_blocking(move || repos.find_entry(&assignment, &commit, |path| path == file))
        .await
        .map_err(|e| Failure::internal(e.to_string()))?
        .map_err(|e| Failure::internal(crate::errors::chain(&e)))?;
    if found.is_none() {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: format!("file: the commit has no file {:?}", body.file) });
    }
    let json = serde_json::to_string(&CommentBody { file: body.file, line: body.line, text }).expect("serialisable");
    stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Comment, user, &json, now())).await
}

async fn edit_comment(app: &Arc<App>, user: &str, comment: i64, text: &str) -> Result<i64, Failure> {
    let text = review::clip(text);
    if text.is_empty() {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: "text: the comment is empty".into() });
    }
    let Some(item) = stored(app.store.review_item(comment)).await?.filter(|i| i.kind == ReviewKind::Comment) else {
        return Err(Failure::not_found("such comment"));
    };
    if item.author != user {
        return Err(Failure { status: StatusCode::FORBIDDEN, message: "only its author can edit a comment".into() });
    }
    let mut body: CommentBody = serde_json::from_str(&item.body).map_err(|e| Failure::internal(e.to_string()))?;
    body.text = text;
    let json = serde_json::to_string(&body).expect("serialisable");
    if !stored(app.store.edit_review(comment, user, &json, now())).await? {
        return Err(Failure::not_found("such comment of yours"));
    }
    Ok(item.submission)
}

async fn put_scores(app: &Arc<App>, user: &str, id: i64, loaded: &Loaded, scores: Vec<CriterionScore>) -> Result<(), Failure> {
    let spec = loaded.review_spec();
    let scores: Vec<CriterionScore> =
        scores.into_iter().filter(|s| !s.level.is_empty() || !s.note.trim().is_empty()).map(|s| CriterionScore { note: review::clip(&s.note), ..s }).collect();
    review::check_scores(&spec, &scores).map_err(|message| Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message })?;
    let json = serde_json::to_string(&ScoresBody { scores: scores.clone() }).expect("serialisable");
    let items = stored(app.store.reviews(Some(&loaded.submission.assignment))).await?;
    let mine = items.iter().rev().find(|i| i.kind == ReviewKind::Scores && i.author == user && i.submission == id);
    match mine {
        Some(item) => {
            stored(app.store.edit_review(item.id, user, &json, now())).await?;
        }
        None => {
            stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Scores, user, &json, now())).await?;
        }
    }
    let after = Desk::build(&spec, &stored(app.store.reviews(Some(&loaded.submission.assignment))).await?);
    let rubric = after.reviewers.iter().find(|r| r.author == user).and_then(|r| r.rubric);
    record_webhook(
        app,
        crate::webhook::Event::ReviewScored,
        serde_json::json!({ "assignment": loaded.assignment.id, "task": loaded.assignment.task, "submission": id, "candidate": loaded.name(),
            "reviewer": user, "scores": scores, "rubric": rubric, "rubric_mean": after.rubric }),
    )
    .await;
    Ok(())
}

async fn decide(app: &Arc<App>, user: &str, id: i64, loaded: &Loaded, decision: &str, reason: &str) -> Result<(), Failure> {
    let Some(decision) = Decision::parse(decision) else {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: format!("decision: {decision:?} is not one of advance, hold, reject") });
    };
    let reason = review::clip(reason);
    if reason.is_empty() {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: "reason: say why (it is recorded with the decision)".into() });
    }
    let json = serde_json::to_string(&DecisionBody { decision, reason: reason.clone() }).expect("serialisable");
    stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Decision, user, &json, now())).await?;
    let spec = loaded.review_spec();
    let automatic = loaded.submission.score;
    record_webhook(
        app,
        crate::webhook::Event::ReviewDecided,
        serde_json::json!({ "assignment": loaded.assignment.id, "task": loaded.assignment.task, "submission": id,
            "candidate": loaded.assignment.candidate, "decision": decision, "reason": reason, "decided_by": user, "decided_at": rfc3339(now()),
            "automatic_score": automatic, "rubric_score": loaded.desk.rubric, "overall_score": automatic.map(|a| spec.overall(a, loaded.desk.rubric)) }),
    )
    .await;
    Ok(())
}

async fn release(app: &Arc<App>, user: &str, id: i64, loaded: &Loaded, message: &str) -> Result<review::ReleaseBody, Failure> {
    let spec = loaded.review_spec();
    let overall = loaded.submission.score.map(|a| spec.overall(a, loaded.desk.rubric));
    let body = loaded.desk.feedback(&spec, overall, &review::clip(message));
    let json = serde_json::to_string(&body).expect("serialisable");
    stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Release, user, &json, now())).await?;
    Ok(body)
}

// ---------------------------------------------------------------- the review section of the submission page

fn level_cell(levels: &Option<(usize, String)>) -> &str {
    levels.as_ref().map(|(_, name)| name.as_str()).unwrap_or("—")
}

/// The review section of a submission's page (rubric, reviewers side by side, decision, release,
/// the candidate's notes, the timeline).
pub async fn review_section(app: &Arc<App>, id: i64, user: &str, csrf: &str) -> Result<(Markup, Blinds, String), Failure> {
    let loaded = load(app, id).await?;
    let notes = notes_of(app, &loaded).await.ok().flatten();
    // Where the score stands in the cohort (each candidate's latest graded submission).
    let cohort = cohort_scores(app, &loaded.submission.task).await?;
    let baselines = crate::check::graded_baselines(&app.config.tasks_root, &loaded.submission.task);
    let timeline = timeline(app, &loaded.assignment).await?;
    let out = html! {
        style { (PreEscaped(code::CSS)) }
        section #review {
            h2 { "Review of " (loaded.name()) }
            p { a href={ "/submissions/" (id) "/code" } { "Read the code" } " (every file, lint findings at their lines, diff against the starter)" }
            p { a href={ "/submissions/" (id) "/debrief" } { "Debrief for the follow-up interview" } " (questions tied to lines of the code, its methodology and its timeline; printable)" }
            @if let Some(score) = loaded.submission.score {
                section #standing {
                    h3 { "Where the score stands" }
                    p {
                        (format!("{score:.1}: at or above {:.0}% of the {} candidates graded on this task (their latest graded push).",
                            review::percentile(score, &cohort).unwrap_or(0.0), cohort.len()))
                        @if let Some(first) = baselines.first() {
                            " The task's own solutions, as " code { "takehome check" } " graded them (" (first.graded_at) "): "
                            (baselines.iter().map(|b| format!("{} {:.1}", b.fixture, b.score)).collect::<Vec<_>>().join(" · ")) "."
                        }
                    }
                    (review::cohort_histogram(&cohort, Some(score), &baselines.iter().map(|b| (b.fixture.clone(), b.score)).collect::<Vec<_>>()))
                }
            }
            // The candidate's own account.
            section #notes-md {
                h3 { "The candidate's notes (NOTES.md)" }
                @match &notes {
                    Some(notes) => {
                        // Markdown rendered with raw HTML refused (review::markdown): safe as markup.
                        div.candidate-notes { (PreEscaped(review::markdown::render(&notes.text))) }
                        @if let Some(cut) = &notes.cut { p.cut { small { "NOTES.md " (cut.note) "." } } }
                    }
                    None => p { "No NOTES.md in this commit." },
                }
            }
            (rubric_section(id, &loaded, user, csrf))
            (decision_section(id, &loaded, csrf))
            (timeline_html(&timeline, &loaded.assignment.id, csrf))
        }
    };
    let name = loaded.name();
    Ok((out, loaded.blinds, name))
}

/// The rubric: every reviewer's levels side by side, agreement, the scores, and this reviewer's form.
fn rubric_section(id: i64, loaded: &Loaded, user: &str, csrf: &str) -> Markup {
    let spec = loaded.review_spec();
    let automatic = loaded.submission.score;
    let one = |v: Option<f64>, none: &str| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| none.into());
    // This reviewer's form, filled with what they gave before.
    let mine = loaded.desk.reviewers.iter().find(|r| r.author == user);
    html! {
        section #rubric {
            h3 { "Rubric" }
            @if spec.criteria.is_empty() {
                p { "This task has no rubric (" code { "review.criteria" } " in its task.yaml)." }
            } @else {
                table {
                    tr { th { "criterion" } @for r in &loaded.desk.reviewers { th { (r.author) } } th { "agreement" } }
                    @for (index, (criterion, summary)) in spec.criteria.iter().zip(&loaded.desk.criteria).enumerate() {
                        tr {
                            td { (criterion.title) " " small { "(weight " (criterion.weight) ")" } }
                            @for r in &loaded.desk.reviewers {
                                td class=[summary.disagreement.then_some("disagree")] style=[summary.disagreement.then_some("background:#fdecea")] {
                                    b { (level_cell(&r.levels[index])) }
                                    @if !r.notes[index].is_empty() { br; small { (r.notes[index]) } }
                                }
                            }
                            td {
                                @if summary.disagreement {
                                    strong.disagreement { "⚠ reviewers disagree (by " (summary.spread) " level" @if summary.spread != 1 { "s" } ")" }
                                } @else { "agree" }
                            }
                        }
                    }
                    tr {
                        td { "rubric score" }
                        @for r in &loaded.desk.reviewers { td { (one(r.rubric, "incomplete")) } }
                        td { "mean " (one(loaded.desk.rubric, "—")) }
                    }
                }
                p {
                    "Automatic score " (one(automatic, "not graded")) " · rubric " (one(loaded.desk.rubric, "—")) " · "
                    b { "overall " (automatic.map(|a| format!("{:.1}", spec.overall(a, loaded.desk.rubric))).unwrap_or_else(|| "—".into())) }
                    br; small { (spec.formula()) }
                }
                form method="post" action={ "/submissions/" (id) "/scores" } {
                    (csrf_field(csrf))
                    fieldset {
                        legend { "Your scores" }
                        @for (index, criterion) in spec.criteria.iter().enumerate() {
                            @let given = mine.and_then(|m| m.levels[index].as_ref().map(|(_, n)| n.clone()));
                            p {
                                label for={ "level-" (criterion.id) } { b { (criterion.title) } } " "
                                select id={ "level-" (criterion.id) } name={ "level." (criterion.id) } {
                                    option value="" { "—" }
                                    @for (name, _) in &criterion.levels {
                                        option value=(name) selected[given.as_deref() == Some(name.as_str())] { (name) }
                                    }
                                }
                            }
                            ul { @for (name, description) in &criterion.levels { li { b { (name) } ": " (description) } } }
                            p {
                                label for={ "note-" (criterion.id) } { "Note on " (criterion.title) } br;
                                textarea id={ "note-" (criterion.id) } name={ "note." (criterion.id) } rows="2" cols="70" {
                                    (mine.map(|m| m.notes[index].clone()).unwrap_or_default())
                                }
                            }
                        }
                        button { "Save my scores" }
                    }
                }
            }
        }
    }
}

/// The decision and its history, the decision form, and the feedback released to the candidate.
fn decision_section(id: i64, loaded: &Loaded, csrf: &str) -> Markup {
    let spec = loaded.review_spec();
    html! {
        section #decision {
            h3 { "Decision" }
            @match &loaded.desk.decision {
                Some(d) => p.decision { b { (d.decision.as_str()) } " by " (d.author) " at " (rfc3339(d.at)) ": " (d.reason) },
                None => p { "No decision yet." },
            }
            @if loaded.desk.decisions.len() > 1 {
                details {
                    summary { "Earlier decisions" }
                    ul { @for d in loaded.desk.decisions.iter().rev().skip(1) { li { (d.decision.as_str()) " by " (d.author) " at " (rfc3339(d.at)) ": " (d.reason) } } }
                }
            }
            form method="post" action={ "/submissions/" (id) "/decision" } {
                (csrf_field(csrf))
                p {
                    label for="decision-choice" { "Decision" } " "
                    select #decision-choice name="decision" {
                        option value="advance" { "advance" } option value="hold" { "hold" } option value="reject" { "reject" }
                    }
                    " " label for="decision-reason" { "Reason" } " "
                    input #decision-reason name="reason" size="60" required;
                    " " button { "Record decision" }
                }
            }
        }
        section #feedback {
            h3 { "Feedback to the candidate" }
            @match &loaded.desk.release {
                Some(r) => {
                    p { "Released by " (r.author) " at " (rfc3339(r.at)) " (the candidate sees the snapshot below; release again to update it)." }
                    (feedback_html(&r.body))
                }
                None => p { "Nothing released: the candidate sees no feedback." },
            }
            form method="post" action={ "/submissions/" (id) "/release" } {
                (csrf_field(csrf))
                p { label for="release-message" { "Message to the candidate (optional)" } br; textarea #release-message name="message" rows="2" cols="70" {} }
                p {
                    button { "Release feedback" } " "
                    small { "(the rubric notes" (if spec.release_score { ", the levels and the score" } else { "; this task does not release scores" }) ")" }
                }
            }
        }
    }
}

/// Released feedback as HTML (for assessors and for the candidate's status page).
pub fn feedback_html(body: &review::ReleaseBody) -> Markup {
    html! {
        div.released-feedback {
            @if !body.message.is_empty() { p { (body.message) } }
            @if let Some(score) = body.score { p { "Score: " b { (format!("{score:.1}")) } " of 100" } }
            dl {
                @for c in &body.criteria {
                    dt { b { (c.title) } @if !c.levels.is_empty() { " — " (c.levels.join(", ")) } }
                    @if c.notes.is_empty() { dd { "(no note)" } }
                    @for note in &c.notes { dd { (note) } }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the code page

pub async fn code_page(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>) -> AppResult<Html<String>> {
    Ok(Html(render_code_page(&app, asked).await?))
}

/// The code page's HTML past which no more file content is rendered (the files are still
/// listed, each section says why it is empty): with the code view's own bounds, a page stays
/// under 5 MB whatever was pushed.
const PAGE_HTML: usize = 3 << 20;

/// Lint findings listed per file outside its shown lines (on a shown line each is at its line).
const MAX_FINDINGS_LISTED: usize = 100;
/// Lint findings in the files API.
const MAX_FINDINGS_API: usize = 2_000;

/// Says how many findings were not listed.
fn more_findings(total: usize) -> Markup {
    html! {
        @if total > MAX_FINDINGS_LISTED { p.lint { "… and " (total - MAX_FINDINGS_LISTED) " more findings" } }
    }
}

/// The time a code page may spend highlighting; files reached later are shown escaped only.
const HIGHLIGHT_TIME: Duration = Duration::from_millis(500);
/// Shown text larger than this is not highlighted (escaped only).
const MAX_HIGHLIGHTED: usize = 128 << 10;

/// A file's lines as HTML: highlighted when there is time left before `until` and the markup fits
/// in `room`, else escaped only (tree-sitter wraps each token in a span: text of one-letter
/// tokens grows thirty-fold).
fn lines_html(text: &str, language: Option<&str>, room: usize, until: Instant) -> Vec<Markup> {
    if language.is_none() || text.len() > MAX_HIGHLIGHTED || Instant::now() >= until {
        return code::highlight_lines(text, None);
    }
    let lines = code::highlight_lines(text, language);
    if lines.iter().map(|line| line.0.len()).sum::<usize>() <= room {
        lines
    } else {
        code::highlight_lines(text, None)
    }
}

async fn render_code_page(app: &Arc<App>, asked: Reviewed<AssessorPage>) -> Result<String, Failure> {
    let Reviewed { who: assessor, id, loaded } = asked;
    let view = code_view(app, &loaded).await?;
    let (user, csrf) = (assessor.user, assessor.csrf);
    // Highlighting and escaping are CPU work: on the blocking pool, within HIGHLIGHT_TIME.
    tokio::task::spawn_blocking(move || code_page_html(id, &loaded, &view, &user, &csrf)).await.map_err(|e| Failure::internal(e.to_string()))
}

/// A notebook cell's heading and source (Markdown rendered, code highlighted as Python), within
/// the page's budget (`room` bytes of markup left).
fn cell_source(n: usize, kind: &str, count: &str, source: &str, room: usize, highlight_until: Instant) -> Markup {
    html! {
        h4 { "cell " (n + 1) " · " (kind) (count) }
        @if kind == "markdown" {
            // Markdown rendered with raw HTML refused (review::markdown): safe as markup.
            (PreEscaped(review::markdown::render(source)))
        } @else {
            table.code {
                @for (i, line) in lines_html(source, Some("python"), room, highlight_until).into_iter().enumerate() {
                    tr { td.ln { (i + 1) } td.src { (line) } }
                }
            }
        }
    }
}

/// A notebook as it ran in the graded run (`report::artifacts`): each cell's source with what it
/// printed, returned, raised and drew, within the page's budget.
/// `out` is appended to a page that holds `before` bytes already.
fn executed_html(out: &mut String, before: usize, notebook: &crate::report::artifacts::ExecutedNotebook, highlight_until: Instant) {
    use crate::report::artifacts::CellOutput;
    out.push_str(
        &html! { p.note { "As it ran in the graded run: the outputs, errors and figures below are the run's (the pushed file's own outputs are not shown)." } }
            .into_string(),
    );
    for (n, cell) in notebook.cells.iter().enumerate() {
        if before + out.len() > PAGE_HTML {
            out.push_str(&html! { p.cut { "The remaining cells are not shown: this page has reached its size." } }.into_string());
            return;
        }
        let count = cell.count.map(|c| format!(" · [{c}]")).unwrap_or_default();
        let source = cell_source(n, &cell.kind, &count, &cell.source, PAGE_HTML.saturating_sub(before + out.len()), highlight_until).into_string();
        let mut used = before + out.len() + source.len();
        let mut outputs = Vec::new();
        for output in &cell.outputs {
            let shown = match output {
                CellOutput::Text { text, error } => html! { pre.output.error[*error] { (crate::report::html::visible(text)) } },
                CellOutput::Image { mime, data } if used + data.len() < PAGE_HTML && matches!(mime.as_str(), "image/png" | "image/jpeg") => {
                    html! { img.figure alt={ "figure of cell " (n + 1) } src={ "data:" (mime) ";base64," (data) }; }
                }
                CellOutput::Image { mime, data } if used + data.len() < PAGE_HTML => {
                    // SVG as an image only (never inline): a script in it does not run.
                    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data.as_bytes());
                    html! { img.figure alt={ "figure of cell " (n + 1) } src={ "data:" (mime) ";base64," (encoded) }; }
                }
                CellOutput::Image { mime, .. } => html! { p.cut { "A " (mime) " figure is not shown: this page has reached its size." } },
                CellOutput::Omitted { what } => html! { p.cut { "Not shown: " (what) "." } },
            };
            used += shown.0.len();
            outputs.push(shown);
        }
        out.push_str(&html! { div.cell { (PreEscaped(source)) @for shown in outputs { (shown) } } }.into_string());
    }
    if notebook.cells_cut > 0 {
        out.push_str(&html! { p.cut { (notebook.cells_cut) " more cells not kept." } }.into_string());
    }
}

/// The files list at the top of the code page: each with what changed, its kind and findings.
fn files_list(view: &CodeView, findings: &HashMap<&str, Vec<&Finding>>) -> Markup {
    html! {
        section.files aria-label="files" {
            h2 { "Files" }
            ul {
                @for (index, f) in view.files.iter().enumerate() {
                    @let change = match f.change {
                        Change::Added => "new",
                        Change::Modified => "changed from what we gave",
                        Change::Unchanged => "as we gave it",
                    };
                    @let kind = match (f.kind, &f.cut) {
                        (_, Some(cut)) => format!(", {}: {}", crate::units::format_size(f.size), cut.note),
                        (FileKind::Text | FileKind::Notebook, None) => String::new(),
                        (FileKind::Binary, None) => ", binary: not shown".into(),
                        (FileKind::TooLarge, None) => format!(", {}: too large to show", crate::units::format_size(f.size)),
                        (FileKind::Link, None) => ", a symbolic link (not followed)".into(),
                        (FileKind::Submodule, None) => ", a submodule".into(),
                        (FileKind::Listed, None) => ", not shown".into(),
                    };
                    @let n = findings.get(f.path.as_str()).map_or(0, Vec::len);
                    li {
                        a href={ "#file-" (index) } { (f.path) } " "
                        small { "(" (change) (kind) @if n > 0 { ", " (n) " lint finding" @if n != 1 { "s" } } ")" }
                    }
                }
                @if view.not_listed > 0 { li { small { "… and " (code::thousands(view.not_listed as u64)) " more files, not listed" } } }
                @for removed in &view.removed { li { s { (removed) } " " small { "(given, removed by the candidate)" } } }
            }
        }
    }
}

fn lint_line(x: &Finding) -> Markup {
    html! { p.lint { (x.rule) " " (x.line) ": " (x.message) } }
}

fn code_page_html(id: i64, loaded: &Loaded, view: &CodeView, user: &str, csrf: &str) -> String {
    let highlight_until = Instant::now() + HIGHLIGHT_TIME;
    // Lint findings by file, then by line: looked up, never scanned per line.
    // Methodology findings join them at their lines, their rule marked as such.
    // A notebook's are shown under their cell.
    let methodology: Vec<Finding> = loaded
        .report
        .iter()
        .flat_map(|r| &r.methodology)
        .filter(|m| m.cell.is_none())
        .map(|m| Finding { file: m.file.clone(), line: m.line, rule: format!("methodology: {}", m.rule.as_str()), message: m.message.clone(), context: vec![] })
        .collect();
    let mut in_cells: HashMap<(&str, u64), Vec<&crate::methodology::Finding>> = HashMap::new();
    for m in loaded.report.iter().flat_map(|r| &r.methodology) {
        if let Some(cell) = m.cell {
            in_cells.entry((m.file.as_str(), cell)).or_default().push(m);
        }
    }
    let cell_findings = |file: &str, cell: u64| -> Markup {
        html! {
            @for m in in_cells.get(&(file, cell)).map_or(&[][..], Vec::as_slice) {
                p.lint { "methodology: " (m.rule.as_str()) " · cell " (cell) ", line " (m.line) ": " (m.message) }
            }
        }
    };
    let mut findings: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for finding in loaded.report.iter().flat_map(|r| &r.components.code_quality.findings).chain(&methodology) {
        findings.entry(finding.file.as_str()).or_default().push(finding);
    }
    // The page is made of templates joined in order, so that its size can be checked as it grows.
    let mut body = html! {
        style { (PreEscaped(code::CSS)) }
        h1 { "Code of submission #" (loaded.submission.number) " by " (loaded.name()) }
        p { "Commit " code { (view.commit) } " · task " (loaded.submission.task) " · " a href={ "/submissions/" (id) } { "back to the review" } }
        @if let Some(cut) = &view.cut { p.cut { strong { "Not everything is shown:" } " " (cut) "." } }
        (files_list(view, &findings))
    }
    .into_string();
    for (index, f) in view.files.iter().enumerate() {
        let heading = html! { h2 { code { (f.path) } } };
        if body.len() > PAGE_HTML {
            let cut = html! {
                section.file id={ "file-" (index) } {
                    (heading)
                    p.cut { "Not shown: this page has reached its size (see the files API for what the view holds)." }
                }
            };
            body.push_str(&cut.into_string());
            continue;
        }
        let mut section = heading.into_string();
        let comments: Vec<&review::Comment> = loaded.desk.comments.iter().filter(|c| c.file == f.path && c.submission == id).collect();
        let file_findings: &[&Finding] = findings.get(f.path.as_str()).map_or(&[], Vec::as_slice);
        let executed = loaded.report.as_ref().and_then(|r| r.artifacts.notebook(&f.path));
        match (&f.kind, &f.text, &f.cells) {
            (FileKind::Notebook, _, Some(_)) if executed.is_some() => {
                executed_html(&mut section, body.len(), executed.expect("checked"), highlight_until);
                let cells = f.cells.as_deref().unwrap_or_default();
                section.push_str(
                    &html! {
                        @for n in 1..=cells.len() as u64 { (cell_findings(&f.path, n)) }
                        @for x in file_findings.iter().take(MAX_FINDINGS_LISTED) { (lint_line(x)) } (more_findings(file_findings.len()))
                    }
                    .into_string(),
                );
            }
            (FileKind::Notebook, _, Some(cells)) => {
                for (n, cell) in cells.iter().enumerate() {
                    if body.len() + section.len() > PAGE_HTML {
                        section.push_str(&html! { p.cut { "The remaining cells are not shown: this page has reached its size." } }.into_string());
                        break;
                    }
                    let room = PAGE_HTML.saturating_sub(body.len() + section.len());
                    let shown = html! {
                        div.cell {
                            (cell_source(n, &cell.kind, "", &cell.source, room, highlight_until))
                            @if !cell.output.is_empty() || cell.output_cut_bytes > 0 {
                                pre.output {
                                    (crate::report::html::visible(&cell.output))
                                    @if cell.output_cut_bytes > 0 { "… (cut: " (cell.output_cut_bytes) " bytes)" }
                                }
                            }
                            (cell_findings(&f.path, n as u64 + 1))
                        }
                    };
                    section.push_str(&shown.into_string());
                }
                section.push_str(
                    &html! { @for x in file_findings.iter().take(MAX_FINDINGS_LISTED) { (lint_line(x)) } (more_findings(file_findings.len())) }.into_string(),
                );
            }
            (FileKind::Text, Some(text), _) => {
                let room = PAGE_HTML.saturating_sub(body.len() + section.len());
                section.push_str(&text_file_html(index, f, text, file_findings, &comments, user, csrf, room, highlight_until).into_string());
                // R Markdown: its chunks as they ran, outputs and figures included.
                if let Some(ran) = executed {
                    section.push_str(&html! { h3 { "As it ran" } }.into_string());
                    executed_html(&mut section, body.len(), ran, highlight_until);
                }
            }
            (FileKind::Link, Some(target), _) => {
                section.push_str(&html! { p { "A symbolic link to " code { (target) } " (shown as text; never followed)." } }.into_string());
            }
            _ => section.push_str(&html! { p { "Not shown." } }.into_string()),
        }
        let tail = html! {
            @if let Some(cut) = &f.cut { p.cut { small { (cut.note) "." } } }
            @if let Some(diff) = &f.diff {
                details { summary { "Diff against the starter" } (code::diff_html(diff)) }
            } @else if f.change == Change::Unchanged {
                p { small { "Exactly as we gave it (starter, brief or public data)." } }
            }
            @if let Some(note) = f.diff_status.and_then(DiffStatus::note) { p.cut { small { "Diff against the starter: " (note) "." } } }
            @if matches!(f.kind, FileKind::Text | FileKind::Notebook) {
                form method="post" action={ "/submissions/" (id) "/comments" } {
                    (csrf_field(csrf))
                    input type="hidden" name="file" value=(f.path);
                    label { "Comment on line " input name="line" type="number" min="1" size="5" required; } " "
                    label { "Comment " input name="text" size="60" required; } " "
                    button { "Add comment" }
                }
            }
        };
        section.push_str(&tail.into_string());
        body.push_str(&html! { section.file id={ "file-" (index) } { (PreEscaped(section)) } }.into_string());
    }
    page("Code", PreEscaped(body)).0
}

/// A text file's lines (highlighted within `room`), lint findings and comments at their lines,
/// then what is about lines not shown.
#[allow(clippy::too_many_arguments)]
fn text_file_html(
    index: usize,
    f: &code::CodeFile,
    text: &str,
    file_findings: &[&Finding],
    comments: &[&review::Comment],
    user: &str,
    csrf: &str,
    room: usize,
    highlight_until: Instant,
) -> Markup {
    let mut by_line: HashMap<u64, Vec<&Finding>> = HashMap::new();
    for x in file_findings {
        by_line.entry(x.line).or_default().push(x);
    }
    let added: HashSet<u32> = f.added_lines.iter().copied().collect();
    let lines = lines_html(text, f.language, room, highlight_until);
    let shown_lines = lines.len() as u32;
    let whole_file = by_line.get(&0).map_or(&[][..], Vec::as_slice);
    let later: Vec<&&Finding> = file_findings.iter().filter(|x| x.line > shown_lines as u64).collect();
    html! {
        table.code {
            @for (i, line) in lines.into_iter().enumerate() {
                @let n = i as u32 + 1;
                @let here: &[&Finding] = by_line.get(&(n as u64)).map_or(&[], Vec::as_slice);
                @let class = [(added.contains(&n) && f.change != Change::Added).then_some("added"), (!here.is_empty()).then_some("finding")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                tr id={ "file-" (index) "-L" (n) } class=(class) {
                    td.ln { a href={ "#file-" (index) "-L" (n) } { (n) } }
                    td.src { (line) }
                }
                @for x in here { tr.lint { td {} td { "⚑ " b { (x.rule) } " " (x.message) } } }
                @for c in comments.iter().filter(|c| c.line == n) { (comment_row(c, user, csrf)) }
            }
        }
        @for x in whole_file.iter().take(MAX_FINDINGS_LISTED) { p.lint { "⚑ " b { (x.rule) } " " (x.message) } }
        (more_findings(whole_file.len()))
        // What is about lines not shown.
        @if !later.is_empty() || comments.iter().any(|c| c.line > shown_lines) {
            table.code {
                tr.note { td {} td { "On lines not shown:" } }
                @for x in later.iter().take(MAX_FINDINGS_LISTED) { tr.lint { td { (x.line) } td { "⚑ " b { (x.rule) } " " (x.message) } } }
                @if later.len() > MAX_FINDINGS_LISTED { tr.lint { td {} td { "… and " (later.len() - MAX_FINDINGS_LISTED) " more findings" } } }
                @for c in comments.iter().filter(|c| c.line > shown_lines) { (comment_row(c, user, csrf)) }
            }
        }
    }
}

fn comment_row(c: &review::Comment, user: &str, csrf: &str) -> Markup {
    html! {
        tr.note id={ "comment-" (c.id) } {
            td {}
            td {
                "💬 " b { (c.author) } " "
                small { (rfc3339(c.created_at)) @if c.updated_at != c.created_at { ", edited " (rfc3339(c.updated_at)) } }
                ": " (c.text)
                @if c.author == user {
                    details {
                        summary { "edit" }
                        form method="post" action={ "/comments/" (c.id) "/edit" } {
                            (csrf_field(csrf))
                            input name="text" size="60" value=(c.text) aria-label="comment text";
                            " " button { "Save" }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- forms

/// What a review form answers: back to where the assessor was, or a page that says why nothing
/// was saved (a form is a browser's: HTML, not the API's JSON).
type FormResult = Result<Redirect, NotSaved>;

pub struct NotSaved {
    failure: Failure,
    back: String,
}

impl IntoResponse for NotSaved {
    fn into_response(self) -> Response {
        let NotSaved { failure, back } = self;
        (failure.status, page("Not saved", html! { p { (failure.message) } p { a href=(back) { "Back" } } })).into_response()
    }
}

/// Turns a failure into a "not saved" page with a link back to `back`.
fn back_to(back: String) -> impl FnOnce(Failure) -> NotSaved {
    move |failure| NotSaved { failure, back }
}

#[derive(Deserialize)]
pub struct CommentForm {
    file: String,
    line: u32,
    text: String,
    csrf: String,
}

impl CsrfForm for CommentForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[derive(Deserialize)]
pub struct EditForm {
    text: String,
    csrf: String,
}

impl CsrfForm for EditForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn comment_form(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>, form: SessionForm<CommentForm>) -> FormResult {
    let (f, id) = (form.form, asked.id);
    let comment = add_comment(&app, &form.user, id, &asked.loaded, CommentBody { file: f.file, line: f.line, text: f.text })
        .await
        .map_err(back_to(format!("/submissions/{id}/code")))?;
    Ok(Redirect::to(&format!("/submissions/{id}/code#comment-{comment}")))
}

pub async fn edit_comment_form(State(app): State<Arc<App>>, Path(comment): Path<i64>, form: SessionForm<EditForm>) -> FormResult {
    let submission = edit_comment(&app, &form.user, comment, &form.form.text).await.map_err(back_to("/".into()))?;
    Ok(Redirect::to(&format!("/submissions/{submission}/code#comment-{comment}")))
}

pub async fn scores_form(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>, form: SessionForm<FieldsForm>) -> FormResult {
    let (fields, id) = (form.form.0, asked.id);
    let mut ids: Vec<&str> = fields.keys().filter_map(|k| k.strip_prefix("level.").or_else(|| k.strip_prefix("note."))).collect();
    ids.sort();
    ids.dedup();
    let scores = ids
        .into_iter()
        .map(|c| CriterionScore {
            criterion: c.to_string(),
            level: fields.get(&format!("level.{c}")).cloned().unwrap_or_default(),
            note: fields.get(&format!("note.{c}")).cloned().unwrap_or_default(),
        })
        .collect();
    let back = format!("/submissions/{id}#rubric");
    put_scores(&app, &form.user, id, &asked.loaded, scores).await.map_err(back_to(back.clone()))?;
    Ok(Redirect::to(&back))
}

pub async fn decision_form(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>, form: SessionForm<FieldsForm>) -> FormResult {
    let (f, id) = (&form.form.0, asked.id);
    let back = format!("/submissions/{id}#decision");
    decide(&app, &form.user, id, &asked.loaded, f.get("decision").map(String::as_str).unwrap_or(""), f.get("reason").map(String::as_str).unwrap_or(""))
        .await
        .map_err(back_to(back.clone()))?;
    Ok(Redirect::to(&back))
}

pub async fn release_form(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>, form: SessionForm<FieldsForm>) -> FormResult {
    let (message, id) = (form.form.0.get("message").cloned().unwrap_or_default(), asked.id);
    let back = format!("/submissions/{id}#feedback");
    release(&app, &form.user, id, &asked.loaded, &message).await.map_err(back_to(back.clone()))?;
    Ok(Redirect::to(&back))
}

// ---------------------------------------------------------------- the debrief

/// The debrief's questions (`debrief::questions`) from everything known of the submission now:
/// its code (as the code view reads it, bounded), NOTES.md, the report's methodology findings
/// and accuracy, the public dry run's accuracy, and the push that counts with its change.
async fn debrief_of(app: &Arc<App>, loaded: &Loaded) -> Result<Vec<crate::debrief::Question>, Failure> {
    let view = code_view(app, loaded).await?;
    let files: Vec<(String, String)> = view
        .files
        .iter()
        .filter_map(|f| match (&f.kind, &f.text, &f.cells) {
            (FileKind::Text, Some(text), _) if [".py", ".R", ".r", ".Rmd", ".rmd"].iter().any(|e| f.path.ends_with(e)) => Some((f.path.clone(), text.clone())),
            // A notebook's cells in order (all of them, so that cells are counted as in the file), as
            // a notebook of its language (read as at grading).
            (FileKind::Notebook, _, Some(cells)) => {
                let code: Vec<serde_json::Value> = cells.iter().map(|c| serde_json::json!({ "cell_type": c.kind, "source": c.source })).collect();
                let language = f.language.unwrap_or("python");
                Some((f.path.clone(), serde_json::json!({ "metadata": { "kernelspec": { "language": language } }, "cells": code }).to_string()))
            }
            _ => None,
        })
        .collect();
    let notes = notes_of(app, loaded).await.ok().flatten().map(|n| n.text);
    let report = loaded.report.as_ref();
    let public = stored(app.store.public_run(loaded.submission.id))
        .await?
        .and_then(|json| serde_json::from_str::<crate::job::PublicRun>(&json).ok())
        .and_then(|run| run.report)
        .map(|r| r.components.accuracy.score);
    let mut submissions = stored(app.store.submissions(Some(&loaded.assignment.id), None)).await?;
    submissions.sort_by_key(|s| s.number);
    let counted = super::queries::counting(app, &loaded.assignment, &submissions).await?.map(|c| c.number);
    let at = submissions.iter().position(|s| Some(s.number) == counted.or(submissions.last().map(|l| l.number)));
    let change = match at {
        Some(i) if i > 0 => {
            let (repos, assignment, from, to) =
                (app.repos.clone(), loaded.assignment.id.clone(), submissions[i - 1].commit.clone(), submissions[i].commit.clone());
            tokio::task::spawn_blocking(move || bounded::changed_lines(&repos, &assignment, &from, &to, Duration::from_secs(2))).await.ok().flatten()
        }
        _ => None,
    };
    let pushes: Vec<crate::debrief::Push> = submissions
        .iter()
        .enumerate()
        .map(|(i, s)| crate::debrief::Push { number: s.number, pushed_at: s.pushed_at, changed_lines: if Some(i) == at { change } else { None } })
        .collect();
    let methodology = report.map(|r| r.methodology.clone()).unwrap_or_default();
    let outcomes = report.map(crate::job::Outcomes::of_report).unwrap_or_default();
    let evidence = crate::debrief::Evidence {
        files: &files,
        methodology: &methodology,
        notes: notes.as_deref(),
        public_accuracy: public,
        hidden_accuracy: report.map(|r| r.components.accuracy.score),
        pushes: &pushes,
        counted,
        started_at: loaded.assignment.started_at,
        deadline: loaded.assignment.deadline(),
        worst_slices: &outcomes.worst_slices,
        confused: &outcomes.confused,
        weak_columns: &outcomes.weak_columns,
        steps: &outcomes.steps,
        failed_step: outcomes.failed(),
        refused: &outcomes.refused,
        predictions: &outcomes.predictions,
    };
    Ok(crate::debrief::questions(&evidence))
}

pub async fn debrief_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>) -> AppResult<Json<serde_json::Value>> {
    let Reviewed { id, loaded, .. } = asked;
    let questions = debrief_of(&app, &loaded).await?;
    Ok(Json(serde_json::json!({ "submission": id, "candidate": loaded.name(), "debrief": questions })))
}

/// A page to print for the interviewer: the questions, each with what it comes from.
pub async fn debrief_page(State(app): State<Arc<App>>, asked: Reviewed<AssessorPage>) -> AppResult<Html<String>> {
    let Reviewed { id, loaded, .. } = asked;
    let questions = debrief_of(&app, &loaded).await?;
    let title = loaded.spec.as_ref().map(|s| s.title.clone()).unwrap_or_else(|| loaded.submission.task.to_string());
    let body = html! {
        style { "@media print { nav, .no-print { display: none } body { background: #fff } } ol.debrief li { margin: 0 0 14px } .why { color: #555; font-size: 13px }" }
        h1 { "Debrief: " (loaded.name()) ", submission #" (loaded.submission.number) }
        p { (title) " · " a.no-print href={ "/submissions/" (id) } { "back to the review" } " · " a.no-print href={ "/submissions/" (id) "/code" } { "the code" } }
        p { "Questions for the follow-up interview, each tied to what it comes from. Made from the code, its notes, its report and its pushes, the same way for every candidate; never shown to the candidate." }
        @if questions.is_empty() {
            p { "Nothing in this submission gives a question of its own (no model, split, imputation or encoding in its code, no finding, no late change)." }
        }
        ol.debrief {
            @for q in &questions {
                li {
                    b { (q.question) }
                    div.why {
                        @if let Some(file) = &q.file {
                            code { @if let Some(line) = q.line { (crate::methodology::place(file, q.cell, line)) } @else { (file) } } " · "
                        }
                        (q.why)
                    }
                }
            }
        }
    };
    Ok(Html(page("Debrief", body).0))
}

// ---------------------------------------------------------------- JSON API

pub async fn files_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>) -> AppResult<Json<serde_json::Value>> {
    let Reviewed { id, loaded, .. } = asked;
    let view = code_view(&app, &loaded).await?;
    let all: &[Finding] = loaded.report.as_ref().map_or(&[], |r| r.components.code_quality.findings.as_slice());
    let findings = &all[..all.len().min(MAX_FINDINGS_API)];
    let comments: Vec<&review::Comment> = loaded.desk.comments.iter().filter(|c| c.submission == id).collect();
    Ok(Json(
        serde_json::json!({ "submission": id, "candidate": loaded.name(), "view": view, "lint_findings": findings, "lint_findings_total": all.len(), "comments": comments }),
    ))
}

pub async fn review_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>) -> AppResult<Json<serde_json::Value>> {
    {
        let Reviewed { id, loaded, .. } = asked;
        let spec = loaded.review_spec();
        let notes = notes_of(&app, &loaded).await.ok().flatten();
        let notes_cut = notes.as_ref().and_then(|n| n.cut.clone());
        let notes = notes.map(|n| n.text);
        let timeline = timeline(&app, &loaded.assignment).await?;
        let automatic = loaded.submission.score;
        let cohort = cohort_scores(&app, &loaded.submission.task).await?;
        let baselines = crate::check::graded_baselines(&app.config.tasks_root, &loaded.submission.task);
        Ok(Json(serde_json::json!({
            "submission": id,
            "percentile": automatic.and_then(|a| review::percentile(a, &cohort)),
            "cohort_size": cohort.len(),
            "baselines": baselines,
            "assignment": loaded.assignment.id,
            "candidate": loaded.name(),
            "blind": loaded.blinds.hidden(&loaded.assignment.id, &loaded.assignment.task),
            "criteria": spec.criteria.iter().map(|c| serde_json::json!({ "id": c.id, "title": c.title, "weight": c.weight, "levels": c.levels.iter().map(|(n, d)| serde_json::json!({ "name": n, "description": d })).collect::<Vec<_>>() })).collect::<Vec<_>>(),
            "reviewers": loaded.desk.reviewers,
            "agreement": loaded.desk.criteria,
            "automatic_score": automatic,
            "rubric_score": loaded.desk.rubric,
            "overall_score": automatic.map(|a| spec.overall(a, loaded.desk.rubric)),
            "formula": spec.formula(),
            "decision": loaded.desk.decision,
            "decisions": loaded.desk.decisions,
            "release": loaded.desk.release,
            "comments": loaded.desk.comments,
            "notes_md": notes,
            "notes_md_cut": notes_cut,
            "timeline": timeline,
        })))
    }
}

#[derive(Deserialize)]
pub struct TextBody {
    text: String,
}

#[derive(Deserialize)]
pub struct DecisionInput {
    decision: String,
    reason: String,
}

#[derive(Deserialize)]
pub struct ReleaseInput {
    #[serde(default)]
    message: String,
}

pub async fn comment_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>, ApiJson(body): ApiJson<CommentBody>) -> AppResult<Json<serde_json::Value>> {
    let comment = add_comment(&app, &asked.who.0, asked.id, &asked.loaded, body).await?;
    Ok(Json(serde_json::json!({ "id": comment })))
}

pub async fn edit_comment_api(
    State(app): State<Arc<App>>,
    Path(comment): Path<i64>,
    assessor: Assessor,
    ApiJson(body): ApiJson<TextBody>,
) -> AppResult<Json<serde_json::Value>> {
    edit_comment(&app, &assessor.0, comment, &body.text).await?;
    Ok(Json(serde_json::json!({ "id": comment })))
}

pub async fn scores_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>, ApiJson(body): ApiJson<ScoresBody>) -> AppResult<Json<serde_json::Value>> {
    put_scores(&app, &asked.who.0, asked.id, &asked.loaded, body.scores).await?;
    Ok(Json(serde_json::json!({ "saved": true })))
}

pub async fn decision_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>, ApiJson(body): ApiJson<DecisionInput>) -> AppResult<Json<serde_json::Value>> {
    decide(&app, &asked.who.0, asked.id, &asked.loaded, &body.decision, &body.reason).await?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}

pub async fn release_api(State(app): State<Arc<App>>, asked: Reviewed<Assessor>, ApiJson(body): ApiJson<ReleaseInput>) -> AppResult<Json<serde_json::Value>> {
    let released = release(&app, &asked.who.0, asked.id, &asked.loaded, &body.message).await?;
    Ok(Json(serde_json::json!({ "released": released })))
}

// ---------------------------------------------------------------- export

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// One candidate of a task in the cohort export.
#[derive(Debug, Serialize)]
pub struct ExportRow {
    pub candidate: String,
    pub assignment: String,
    pub submission: Option<i64>,
    pub status: Option<String>,
    pub accuracy: Option<f64>,
    pub code_quality: Option<f64>,
    pub runtime: Option<f64>,
    pub automatic: Option<f64>,
    /// Mean points (0–100) per criterion over the reviewers.
    pub criteria: Vec<(String, Option<f64>)>,
    pub rubric: Option<f64>,
    pub overall: Option<f64>,
    pub reviewers: usize,
    pub decision: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

async fn export_rows(app: &Arc<App>, task: &TaskId) -> Result<(Vec<ExportRow>, ReviewSpec), Failure> {
    let spec = load_task(app, task).await.map(|s| s.review.clone()).unwrap_or_default();
    let blinds = Blinds::load(app).await?;
    let assignments: Vec<Assignment> = stored(app.store.assignments()).await?.into_iter().filter(|a| a.task == *task).collect();
    let submissions = stored(app.store.submissions(None, Some(task))).await?;
    let items = stored(app.store.reviews(None)).await?;
    let mut rows = Vec::new();
    for a in &assignments {
        // The latest graded submission (submissions come newest first).
        let latest = submissions.iter().find(|s| s.assignment == a.id && s.score.is_some());
        let report = match latest {
            Some(s) => stored(app.store.submission(s.id)).await?.and_then(|(_, r)| r).and_then(|r| serde_json::from_str::<Report>(&r).ok()),
            None => None,
        };
        let mine: Vec<_> = items.iter().filter(|i| i.assignment == a.id).cloned().collect();
        let desk = Desk::build(&spec, &mine);
        let automatic = latest.and_then(|s| s.score);
        rows.push(ExportRow {
            candidate: blinds.name(&a.id, &a.task, &a.candidate),
            assignment: a.id.clone(),
            submission: latest.map(|s| s.id),
            status: latest.map(|s| s.status_text().to_string()),
            accuracy: report.as_ref().map(|r| r.components.accuracy.score),
            code_quality: report.as_ref().map(|r| r.components.code_quality.score),
            runtime: report.as_ref().map(|r| r.components.runtime.score),
            automatic,
            criteria: desk.criteria.iter().map(|c| (c.id.clone(), c.mean)).collect(),
            rubric: desk.rubric,
            overall: automatic.map(|v| spec.overall(v, desk.rubric)),
            reviewers: desk.reviewers.len(),
            decision: desk.decision.as_ref().map(|d| d.decision.as_str().to_string()),
            decision_reason: desk.decision.as_ref().map(|d| d.reason.clone()),
            decided_by: desk.decision.as_ref().map(|d| d.author.clone()),
            decided_at: desk.decision.as_ref().map(|d| rfc3339(d.at)),
        });
    }
    rows.sort_by(|a, b| b.overall.unwrap_or(-1.0).total_cmp(&a.overall.unwrap_or(-1.0)).then(a.candidate.cmp(&b.candidate)));
    Ok((rows, spec))
}

/// A CSV field: quoted when needed, and never read as a formula by a spreadsheet.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn number(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.2}")).unwrap_or_default()
}

pub async fn export_api(
    State(app): State<Arc<App>>,
    _assessor: Assessor,
    TaskInPath(task): TaskInPath,
    Query(query): Query<ExportQuery>,
) -> AppResult<Response> {
    let (rows, spec) = export_rows(&app, &task).await?;
    Ok(match query.format.as_deref().unwrap_or("json") {
        "json" => Json(serde_json::json!({ "task": task, "formula": spec.formula(), "candidates": rows })).into_response(),
        "csv" => {
            let mut out = String::from("candidate,assignment,submission,status,accuracy,code_quality,runtime,automatic");
            for c in &spec.criteria {
                out.push(',');
                out.push_str(&csv_field(&format!("criterion:{}", c.id)));
            }
            out.push_str(",rubric,overall,reviewers,decision,decision_reason,decided_by,decided_at\n");
            for r in &rows {
                let mut fields = vec![
                    csv_field(&r.candidate),
                    csv_field(&r.assignment),
                    r.submission.map(|s| s.to_string()).unwrap_or_default(),
                    csv_field(r.status.as_deref().unwrap_or("")),
                    number(r.accuracy),
                    number(r.code_quality),
                    number(r.runtime),
                    number(r.automatic),
                ];
                fields.extend(r.criteria.iter().map(|(_, v)| number(*v)));
                fields.extend([
                    number(r.rubric),
                    number(r.overall),
                    r.reviewers.to_string(),
                    csv_field(r.decision.as_deref().unwrap_or("")),
                    csv_field(r.decision_reason.as_deref().unwrap_or("")),
                    csv_field(r.decided_by.as_deref().unwrap_or("")),
                    csv_field(r.decided_at.as_deref().unwrap_or("")),
                ]);
                out.push_str(&fields.join(","));
                out.push('\n');
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{task}-cohort.csv\"")),
                ],
                out,
            )
                .into_response()
        }
        other => Failure { status: StatusCode::BAD_REQUEST, message: format!("format: {other:?} is not csv or json") }.into_response(),
    })
}

pub async fn webhooks_api(State(app): State<Arc<App>>, _assessor: Assessor) -> AppResult<Json<serde_json::Value>> {
    let rows = stored(app.store.webhooks(100)).await?;
    Ok(Json(serde_json::json!({ "configured": app.config.webhook.is_some(), "deliveries": rows.iter().map(|w| serde_json::json!({
        "id": w.id, "event": w.event, "attempts": w.attempts, "delivered_at": w.delivered_at.map(rfc3339), "failed_at": w.failed_at.map(rfc3339),
        "next_at": rfc3339(w.next_at), "last_error": w.last_error })).collect::<Vec<_>>() })))
}

/// `GET /api/emails`: the e-mail outbox's latest messages, their kinds and states (never an
/// address or a token).
pub async fn emails_api(State(app): State<Arc<App>>, _assessor: Assessor) -> AppResult<Json<serde_json::Value>> {
    let rows = stored(app.store.emails(100)).await?;
    Ok(Json(serde_json::json!({ "configured": app.config.mail.is_some(), "emails": rows.iter().map(|e| serde_json::json!({
        "id": e.id, "assignment": e.assignment, "kind": e.kind, "attempts": e.attempts, "sent_at": e.sent_at.map(rfc3339),
        "failed_at": e.failed_at.map(rfc3339), "next_at": rfc3339(e.next_at), "last_error": e.last_error })).collect::<Vec<_>>() })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(super::csv_field("plain"), "plain");
        assert_eq!(super::csv_field("a,b"), "\"a,b\"");
        assert_eq!(super::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(super::csv_field("-1"), "'-1");
    }
}
