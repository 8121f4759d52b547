//! The assessors' review desk over HTTP: the code view, line comments, rubric scores from several
//! reviewers, the decision, feedback released to the candidate, the cohort export, and blind
//! review (a stable alias instead of the candidate's name in every page and answer until a
//! decision is recorded). Pages take the session cookie and forms carry its CSRF token; the JSON
//! API takes a session or Basic credentials ([`Assessor`]).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::{Assessor, AssessorPage, CsrfForm, SessionForm};
use super::bounded::{self, CancelOnDrop};
use super::forms::{ApiJson, FieldsForm};
use super::queries::Blinds;
use super::{now, page, stored, App, AppResult, Failure};
use crate::grading::lint::Finding;
use crate::report::html::esc;
use crate::report::{rfc3339, Report};
use crate::review::code::{self, Change, CodeView, DiffStatus, FileKind};
use crate::review::{self, CommentBody, CriterionScore, Decision, DecisionBody, Desk, ScoresBody};
use crate::store::{Assignment, ReviewKind, Submission};
use crate::task::ReviewSpec;

// ---------------------------------------------------------------- loading

/// A submission with what its review needs.
struct Loaded {
    submission: Submission,
    report: Option<Report>,
    assignment: Assignment,
    spec: Option<crate::task::TaskSpec>,
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

async fn load_task(app: &Arc<App>, task: &str) -> Option<crate::task::TaskSpec> {
    if !crate::task::is_name(task) {
        return None;
    }
    let dir = app.config.tasks_root.join("tasks").join(task);
    tokio::task::spawn_blocking(move || crate::task::load(&dir).ok()).await.ok().flatten()
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
            Ok(root) if root != commit => repos.tree(&assignment, &root).map_err(|e| Failure::internal(e.to_string()))?,
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
            .map_err(|e| Failure::internal(e.to_string()))?;
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
        let found = repos.find_entry(&assignment, &commit, |path| path.eq_ignore_ascii_case("NOTES.md")).map_err(|e| Failure::internal(e.to_string()))?;
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
async fn cohort_scores(app: &Arc<App>, task: &str) -> Result<Vec<f64>, Failure> {
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

fn timeline_html(t: &Timeline, assignment: &str, csrf: &str) -> String {
    let mut out = format!(
        "<section id=\"timeline\"><h2>How they worked</h2><p>Clock started {} · deadline {} · time box {}</p>",
        esc(t.started_at.as_deref().unwrap_or("not yet")),
        esc(t.deadline.as_deref().unwrap_or("—")),
        crate::units::format_duration(std::time::Duration::from_secs(t.time_box_seconds.max(0) as u64))
    );
    for e in &t.extensions {
        let _ = write!(
            out,
            "<p class=\"extension\">Extended by {} at {} by {}: {}</p>",
            crate::units::format_duration(std::time::Duration::from_secs(e.seconds.max(0) as u64)),
            esc(&rfc3339(e.created_at)),
            esc(&e.author),
            esc(&e.reason)
        );
    }
    match (t.counts, &t.chosen_at) {
        (Some(n), Some(at)) => {
            let _ = write!(out, "<p><strong>Final submission: push #{n}</strong>, chosen by the candidate at {}.</p>", esc(at));
        }
        (Some(n), None) => {
            let _ = write!(out, "<p>Final submission: push #{n} (the last push).</p>");
        }
        _ => {}
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/assignments/{a}/extend\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\"><label for=\"extend-minutes\">Give extra time (minutes)</label> \
         <input id=\"extend-minutes\" name=\"minutes\" type=\"number\" min=\"1\" max=\"10080\" required> <label for=\"extend-reason\">reason</label> \
         <input id=\"extend-reason\" name=\"reason\" size=\"40\" required> <button>Extend</button> <small>(the candidate sees the new deadline and the reason)</small></form>",
        a = esc(assignment),
        c = esc(csrf)
    );
    let _ = write!(
        out,
        "<table><tr><th>push</th><th>time</th><th>after start</th><th>message</th><th>status</th><th class=\"num\">score</th><th style=\"width:30%\">in the time box</th></tr>"
    );
    let mut previous: Option<i64> = None;
    for p in &t.pushes {
        if let Some(gap) = previous.map(|n| p.number - n - 1).filter(|&gap| gap > 0) {
            let _ = write!(out, "<tr><td colspan=\"7\"><em>… {gap} pushes not listed (of {} not listed in all) …</em></td></tr>", t.pushes_not_listed);
        }
        previous = Some(p.number);
        let bar = match p.after_start {
            Some(after) if t.time_box_seconds > 0 => {
                let at = (after as f64 / t.time_box_seconds as f64 * 100.0).clamp(0.0, 100.0);
                format!("<div style=\"background:#eceff3;height:10px;position:relative\" aria-hidden=\"true\"><div style=\"position:absolute;left:{at:.1}%;width:3px;height:10px;background:#1f4fbf\"></div></div>")
            }
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/submissions/{}\">#{}</a>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{bar}</td></tr>",
            p.submission,
            p.number,
            if t.counts == Some(p.number) { " (final)" } else { "" },
            esc(&p.pushed_at),
            p.after_start.map(offset).unwrap_or_default(),
            if p.after_deadline { " (after the deadline)" } else { "" },
            esc(&p.message),
            esc(&p.status),
            p.score.map(|v| format!("{v:.1}")).unwrap_or_default()
        );
    }
    out.push_str("</table></section>");
    out
}

// ---------------------------------------------------------------- actions (shared by forms and JSON)

async fn record_webhook(app: &Arc<App>, event: &str, data: serde_json::Value) {
    let body = crate::webhook::event_body(event, data, now());
    if let Err(e) = app.store.queue_webhook(event, &body, now()).await {
        tracing::warn!(error = %e, event, "cannot queue a webhook");
    }
    app.webhooks.notify_one();
}

async fn add_comment(app: &Arc<App>, user: &str, id: i64, body: CommentBody) -> Result<i64, Failure> {
    let loaded = load(app, id).await?;
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
        .map_err(|e| Failure::internal(e.to_string()))?;
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
    let items = stored(app.store.reviews(None)).await?;
    let Some(item) = items.iter().find(|i| i.id == comment && i.kind == ReviewKind::Comment) else { return Err(Failure::not_found("such comment")) };
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

async fn put_scores(app: &Arc<App>, user: &str, id: i64, scores: Vec<CriterionScore>) -> Result<(), Failure> {
    let loaded = load(app, id).await?;
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
        "review.scored",
        serde_json::json!({ "assignment": loaded.assignment.id, "task": loaded.assignment.task, "submission": id, "candidate": loaded.name(),
            "reviewer": user, "scores": scores, "rubric": rubric, "rubric_mean": after.rubric }),
    )
    .await;
    Ok(())
}

async fn decide(app: &Arc<App>, user: &str, id: i64, decision: &str, reason: &str) -> Result<(), Failure> {
    let Some(decision) = Decision::parse(decision) else {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: format!("decision: {decision:?} is not one of advance, hold, reject") });
    };
    let reason = review::clip(reason);
    if reason.is_empty() {
        return Err(Failure { status: StatusCode::UNPROCESSABLE_ENTITY, message: "reason: say why (it is recorded with the decision)".into() });
    }
    let loaded = load(app, id).await?;
    let json = serde_json::to_string(&DecisionBody { decision, reason: reason.clone() }).expect("serialisable");
    stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Decision, user, &json, now())).await?;
    let spec = loaded.review_spec();
    let automatic = loaded.submission.score;
    record_webhook(
        app,
        "review.decided",
        serde_json::json!({ "assignment": loaded.assignment.id, "task": loaded.assignment.task, "submission": id,
            "candidate": loaded.assignment.candidate, "decision": decision, "reason": reason, "decided_by": user, "decided_at": rfc3339(now()),
            "automatic_score": automatic, "rubric_score": loaded.desk.rubric, "overall_score": automatic.map(|a| spec.overall(a, loaded.desk.rubric)) }),
    )
    .await;
    Ok(())
}

async fn release(app: &Arc<App>, user: &str, id: i64, message: &str) -> Result<review::ReleaseBody, Failure> {
    let loaded = load(app, id).await?;
    let spec = loaded.review_spec();
    let overall = loaded.submission.score.map(|a| spec.overall(a, loaded.desk.rubric));
    let body = loaded.desk.feedback(&spec, overall, &review::clip(message));
    let json = serde_json::to_string(&body).expect("serialisable");
    stored(app.store.add_review(&loaded.submission.assignment, id, ReviewKind::Release, user, &json, now())).await?;
    Ok(body)
}

// ---------------------------------------------------------------- the review section of the submission page

fn level_cell(levels: &Option<(usize, String)>) -> String {
    levels.as_ref().map(|(_, name)| esc(name)).unwrap_or_else(|| "—".into())
}

/// The review section of a submission's page (rubric, reviewers side by side, decision, release,
/// the candidate's notes, the timeline).
pub async fn review_section(app: &Arc<App>, id: i64, user: &str, csrf: &str) -> Result<(String, Blinds, String), Failure> {
    let loaded = load(app, id).await?;
    let spec = loaded.review_spec();
    let csrf_input = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf));
    let notes = notes_of(app, &loaded).await.ok().flatten();
    let mut out = format!("<style>{}</style><section id=\"review\"><h2>Review of {}</h2>", code::CSS, esc(&loaded.name()));
    let _ = write!(out, "<p><a href=\"/submissions/{id}/code\">Read the code</a> (every file, lint findings at their lines, diff against the starter)</p>");

    // Where the score stands in the cohort (each candidate's latest graded submission).
    let cohort = cohort_scores(app, &loaded.submission.task).await?;
    let baselines = crate::check::graded_baselines(&app.config.tasks_root, &loaded.submission.task);
    if let Some(score) = loaded.submission.score {
        let known: Vec<String> = baselines.iter().map(|b| format!("{} {:.1}", esc(&b.fixture), b.score)).collect();
        let _ = write!(
            out,
            "<section id=\"standing\"><h3>Where the score stands</h3><p>{score:.1}: at or above {:.0}% of the {} candidates graded on this task (their latest graded push).{}</p>{}</section>",
            review::percentile(score, &cohort).unwrap_or(0.0),
            cohort.len(),
            if known.is_empty() {
                String::new()
            } else {
                format!(
                    " The task's own solutions, as <code>takehome check</code> graded them{}: {}.",
                    baselines.first().map(|b| format!(" ({})", esc(&b.graded_at))).unwrap_or_default(),
                    known.join(" · ")
                )
            },
            review::cohort_histogram(&cohort, Some(score), &baselines.iter().map(|b| (b.fixture.clone(), b.score)).collect::<Vec<_>>())
        );
    }

    // The candidate's own account.
    out.push_str("<section id=\"notes-md\"><h3>The candidate's notes (NOTES.md)</h3>");
    match &notes {
        Some(notes) => {
            let _ = write!(out, "<div class=\"candidate-notes\">{}</div>", review::markdown::render(&notes.text));
            if let Some(cut) = &notes.cut {
                let _ = write!(out, "<p class=\"cut\"><small>NOTES.md {}.</small></p>", esc(&cut.note));
            }
        }
        None => out.push_str("<p>No NOTES.md in this commit.</p>"),
    }
    out.push_str("</section>");

    // Rubric.
    let automatic = loaded.submission.score;
    out.push_str("<section id=\"rubric\"><h3>Rubric</h3>");
    if spec.criteria.is_empty() {
        out.push_str("<p>This task has no rubric (<code>review.criteria</code> in its task.yaml).</p>");
    } else {
        out.push_str("<table><tr><th>criterion</th>");
        for r in &loaded.desk.reviewers {
            let _ = write!(out, "<th>{}</th>", esc(&r.author));
        }
        out.push_str("<th>agreement</th></tr>");
        for (index, (criterion, summary)) in spec.criteria.iter().zip(&loaded.desk.criteria).enumerate() {
            let _ = write!(out, "<tr><td>{} <small>(weight {})</small></td>", esc(&criterion.title), criterion.weight);
            for r in &loaded.desk.reviewers {
                let note = &r.notes[index];
                let _ = write!(
                    out,
                    "<td{}><b>{}</b>{}</td>",
                    if summary.disagreement { " class=\"disagree\" style=\"background:#fdecea\"" } else { "" },
                    level_cell(&r.levels[index]),
                    if note.is_empty() { String::new() } else { format!("<br><small>{}</small>", esc(note)) }
                );
            }
            let _ = write!(
                out,
                "<td>{}</td></tr>",
                if summary.disagreement {
                    format!(
                        "<strong class=\"disagreement\">⚠ reviewers disagree (by {} level{})</strong>",
                        summary.spread,
                        if summary.spread == 1 { "" } else { "s" }
                    )
                } else {
                    "agree".into()
                }
            );
        }
        out.push_str("<tr><td>rubric score</td>");
        for r in &loaded.desk.reviewers {
            let _ = write!(out, "<td>{}</td>", r.rubric.map(|v| format!("{v:.1}")).unwrap_or_else(|| "incomplete".into()));
        }
        let _ = write!(out, "<td>mean {}</td></tr></table>", loaded.desk.rubric.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into()));
        let _ = write!(
            out,
            "<p>Automatic score {} · rubric {} · <b>overall {}</b><br><small>{}</small></p>",
            automatic.map(|v| format!("{v:.1}")).unwrap_or_else(|| "not graded".into()),
            loaded.desk.rubric.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into()),
            automatic.map(|a| format!("{:.1}", spec.overall(a, loaded.desk.rubric))).unwrap_or_else(|| "—".into()),
            esc(&spec.formula())
        );
        // This reviewer's form, filled with what they gave before.
        let mine = loaded.desk.reviewers.iter().find(|r| r.author == user);
        let _ = write!(out, "<form method=\"post\" action=\"/submissions/{id}/scores\">{csrf_input}<fieldset><legend>Your scores</legend>");
        for (index, criterion) in spec.criteria.iter().enumerate() {
            let given = mine.and_then(|m| m.levels[index].as_ref().map(|(_, n)| n.clone()));
            let _ = write!(
                out,
                "<p><label for=\"level-{0}\"><b>{1}</b></label> <select id=\"level-{0}\" name=\"level.{0}\"><option value=\"\">—</option>",
                esc(&criterion.id),
                esc(&criterion.title)
            );
            for (name, _) in &criterion.levels {
                let selected = if given.as_deref() == Some(name.as_str()) { " selected" } else { "" };
                let _ = write!(out, "<option value=\"{}\"{selected}>{}</option>", esc(name), esc(name));
            }
            out.push_str("</select></p><ul>");
            for (name, description) in &criterion.levels {
                let _ = write!(out, "<li><b>{}</b>: {}</li>", esc(name), esc(description));
            }
            let note = mine.map(|m| m.notes[index].clone()).unwrap_or_default();
            let _ = write!(
                out,
                "</ul><p><label for=\"note-{0}\">Note on {1}</label><br><textarea id=\"note-{0}\" name=\"note.{0}\" rows=\"2\" cols=\"70\">{2}</textarea></p>",
                esc(&criterion.id),
                esc(&criterion.title),
                esc(&note)
            );
        }
        out.push_str("<button>Save my scores</button></fieldset></form>");
    }
    out.push_str("</section>");

    // Decision.
    out.push_str("<section id=\"decision\"><h3>Decision</h3>");
    match &loaded.desk.decision {
        Some(d) => {
            let _ = write!(out, "<p class=\"decision\"><b>{}</b> by {} at {}: {}</p>", d.decision.as_str(), esc(&d.author), rfc3339(d.at), esc(&d.reason));
        }
        None => out.push_str("<p>No decision yet.</p>"),
    }
    if loaded.desk.decisions.len() > 1 {
        out.push_str("<details><summary>Earlier decisions</summary><ul>");
        for d in loaded.desk.decisions.iter().rev().skip(1) {
            let _ = write!(out, "<li>{} by {} at {}: {}</li>", d.decision.as_str(), esc(&d.author), rfc3339(d.at), esc(&d.reason));
        }
        out.push_str("</ul></details>");
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/submissions/{id}/decision\">{csrf_input}<p><label for=\"decision-choice\">Decision</label> <select id=\"decision-choice\" name=\"decision\">\
         <option value=\"advance\">advance</option><option value=\"hold\">hold</option><option value=\"reject\">reject</option></select> \
         <label for=\"decision-reason\">Reason</label> <input id=\"decision-reason\" name=\"reason\" size=\"60\" required> <button>Record decision</button></p></form></section>"
    );

    // Feedback to the candidate.
    out.push_str("<section id=\"feedback\"><h3>Feedback to the candidate</h3>");
    match &loaded.desk.release {
        Some(r) => {
            let _ =
                write!(out, "<p>Released by {} at {} (the candidate sees the snapshot below; release again to update it).</p>", esc(&r.author), rfc3339(r.at));
            out.push_str(&feedback_html(&r.body));
        }
        None => out.push_str("<p>Nothing released: the candidate sees no feedback.</p>"),
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/submissions/{id}/release\">{csrf_input}<p><label for=\"release-message\">Message to the candidate (optional)</label><br>\
         <textarea id=\"release-message\" name=\"message\" rows=\"2\" cols=\"70\"></textarea></p><p><button>Release feedback</button> \
         <small>(the rubric notes{})</small></p></form></section>",
        if spec.release_score { ", the levels and the score" } else { "; this task does not release scores" }
    );

    out.push_str(&timeline_html(&timeline(app, &loaded.assignment).await?, &loaded.assignment.id, csrf));
    out.push_str("</section>");
    let name = loaded.name();
    Ok((out, loaded.blinds, name))
}

/// Released feedback as HTML (for assessors and for the candidate's status page).
pub fn feedback_html(body: &review::ReleaseBody) -> String {
    let mut out = String::from("<div class=\"released-feedback\">");
    if !body.message.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(&body.message));
    }
    if let Some(score) = body.score {
        let _ = write!(out, "<p>Score: <b>{score:.1}</b> of 100</p>");
    }
    out.push_str("<dl>");
    for c in &body.criteria {
        let _ =
            write!(out, "<dt><b>{}</b>{}</dt>", esc(&c.title), if c.levels.is_empty() { String::new() } else { format!(" — {}", esc(&c.levels.join(", "))) });
        if c.notes.is_empty() {
            out.push_str("<dd>(no note)</dd>");
        }
        for note in &c.notes {
            let _ = write!(out, "<dd>{}</dd>", esc(note));
        }
    }
    out.push_str("</dl></div>");
    out
}

// ---------------------------------------------------------------- the code page

pub async fn code_page(State(app): State<Arc<App>>, Path(id): Path<i64>, assessor: AssessorPage) -> Response {
    match render_code_page(&app, id, &assessor).await {
        Ok(html) => Html(html).into_response(),
        Err(failure) => failure.into_response(),
    }
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
fn more_findings(body: &mut String, total: usize) {
    if total > MAX_FINDINGS_LISTED {
        let _ = write!(body, "<p class=\"lint\">… and {} more findings</p>", total - MAX_FINDINGS_LISTED);
    }
}

/// The time a code page may spend highlighting; files reached later are shown escaped only.
const HIGHLIGHT_TIME: Duration = Duration::from_millis(500);
/// Shown text larger than this is not highlighted (escaped only).
const MAX_HIGHLIGHTED: usize = 128 << 10;

/// A file's lines as HTML: highlighted when there is time left before `until` and the markup fits
/// in `room`, else escaped only (tree-sitter wraps each token in a span: text of one-letter
/// tokens grows thirty-fold).
fn lines_html(text: &str, language: Option<&str>, room: usize, until: Instant) -> Vec<String> {
    if language.is_none() || text.len() > MAX_HIGHLIGHTED || Instant::now() >= until {
        return code::highlight_lines(text, None);
    }
    let lines = code::highlight_lines(text, language);
    if lines.iter().map(String::len).sum::<usize>() <= room {
        lines
    } else {
        code::highlight_lines(text, None)
    }
}

async fn render_code_page(app: &Arc<App>, id: i64, assessor: &AssessorPage) -> Result<String, Failure> {
    let loaded = load(app, id).await?;
    let view = code_view(app, &loaded).await?;
    let (user, csrf) = (assessor.user.clone(), assessor.csrf.clone());
    // Highlighting and escaping are CPU work: on the blocking pool, within HIGHLIGHT_TIME.
    tokio::task::spawn_blocking(move || code_page_html(id, &loaded, &view, &user, &csrf)).await.map_err(|e| Failure::internal(e.to_string()))
}

/// A notebook cell's opening and source (Markdown rendered, code highlighted as Python), within
/// the page's budget; the caller adds its outputs and closes the `div`.
fn cell_html(body: &mut String, n: usize, kind: &str, count: &str, source: &str, highlight_until: Instant) {
    let _ = write!(body, "<div class=\"cell\"><h4>cell {} · {}{count}</h4>", n + 1, esc(kind));
    if kind == "markdown" {
        body.push_str(&review::markdown::render(source));
    } else {
        body.push_str("<table class=\"code\">");
        for (i, line) in lines_html(source, Some("python"), PAGE_HTML.saturating_sub(body.len()), highlight_until).iter().enumerate() {
            let _ = write!(body, "<tr><td class=\"ln\">{}</td><td class=\"src\">{line}</td></tr>", i + 1);
        }
        body.push_str("</table>");
    }
}

/// A notebook as it ran in the graded run (`report::artifacts`): each cell's source with what it
/// printed, returned, raised and drew, within the page's budget.
fn executed_html(body: &mut String, notebook: &crate::report::artifacts::ExecutedNotebook, highlight_until: Instant) {
    use crate::report::artifacts::CellOutput;
    body.push_str(
        "<p class=\"note\">As it ran in the graded run: the outputs, errors and figures below are the run's (the pushed file's own outputs are not shown).</p>",
    );
    for (n, cell) in notebook.cells.iter().enumerate() {
        if body.len() > PAGE_HTML {
            body.push_str("<p class=\"cut\">The remaining cells are not shown: this page has reached its size.</p>");
            return;
        }
        let count = cell.count.map(|c| format!(" · [{c}]")).unwrap_or_default();
        cell_html(body, n, &cell.kind, &count, &cell.source, highlight_until);
        for output in &cell.outputs {
            match output {
                CellOutput::Text { text, error } => {
                    let _ = write!(body, "<pre class=\"output{}\">{}</pre>", if *error { " error" } else { "" }, esc(text));
                }
                CellOutput::Image { mime, data } if body.len() + data.len() < PAGE_HTML && matches!(mime.as_str(), "image/png" | "image/jpeg") => {
                    let _ = write!(body, "<img class=\"figure\" alt=\"figure of cell {}\" src=\"data:{mime};base64,{}\">", n + 1, esc(data));
                }
                CellOutput::Image { mime, data } if body.len() + data.len() < PAGE_HTML => {
                    // SVG as an image only (never inline): a script in it does not run.
                    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data.as_bytes());
                    let _ = write!(body, "<img class=\"figure\" alt=\"figure of cell {}\" src=\"data:{};base64,{encoded}\">", n + 1, esc(mime));
                }
                CellOutput::Image { mime, .. } => {
                    let _ = write!(body, "<p class=\"cut\">A {} figure is not shown: this page has reached its size.</p>", esc(mime));
                }
                CellOutput::Omitted { what } => {
                    let _ = write!(body, "<p class=\"cut\">Not shown: {}.</p>", esc(what));
                }
            }
        }
        body.push_str("</div>");
    }
    if notebook.cells_cut > 0 {
        let _ = write!(body, "<p class=\"cut\">{} more cells not kept.</p>", notebook.cells_cut);
    }
}

fn code_page_html(id: i64, loaded: &Loaded, view: &CodeView, user: &str, csrf: &str) -> String {
    let highlight_until = Instant::now() + HIGHLIGHT_TIME;
    // Lint findings by file, then by line: looked up, never scanned per line.
    let mut findings: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for finding in loaded.report.iter().flat_map(|r| &r.components.code_quality.findings) {
        findings.entry(finding.file.as_str()).or_default().push(finding);
    }
    let csrf_input = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf));
    let mut body = format!(
        "<style>{}</style><h1>Code of submission #{} by {}</h1><p>Commit <code>{}</code> · task {} · <a href=\"/submissions/{id}\">back to the review</a></p>",
        code::CSS,
        loaded.submission.number,
        esc(&loaded.name()),
        esc(&view.commit),
        esc(&loaded.submission.task)
    );
    if let Some(cut) = &view.cut {
        let _ = write!(body, "<p class=\"cut\"><strong>Not everything is shown:</strong> {}.</p>", esc(cut));
    }
    body.push_str("<section class=\"files\" aria-label=\"files\"><h2>Files</h2><ul>");
    for (index, f) in view.files.iter().enumerate() {
        let change = match f.change {
            Change::Added => "new",
            Change::Modified => "changed from what we gave",
            Change::Unchanged => "as we gave it",
        };
        let kind = match (f.kind, &f.cut) {
            (_, Some(cut)) => format!(", {}: {}", crate::units::format_size(f.size), esc(&cut.note)),
            (FileKind::Text | FileKind::Notebook, None) => String::new(),
            (FileKind::Binary, None) => ", binary: not shown".into(),
            (FileKind::TooLarge, None) => format!(", {}: too large to show", crate::units::format_size(f.size)),
            (FileKind::Link, None) => ", a symbolic link (not followed)".into(),
            (FileKind::Submodule, None) => ", a submodule".into(),
            (FileKind::Listed, None) => ", not shown".into(),
        };
        let n = findings.get(f.path.as_str()).map_or(0, Vec::len);
        let _ = write!(
            body,
            "<li><a href=\"#file-{index}\">{}</a> <small>({change}{kind}{})</small></li>",
            esc(&f.path),
            if n > 0 { format!(", {n} lint finding{}", if n == 1 { "" } else { "s" }) } else { String::new() }
        );
    }
    if view.not_listed > 0 {
        let _ = write!(body, "<li><small>… and {} more files, not listed</small></li>", code::thousands(view.not_listed as u64));
    }
    for removed in &view.removed {
        let _ = write!(body, "<li><s>{}</s> <small>(given, removed by the candidate)</small></li>", esc(removed));
    }
    body.push_str("</ul></section>");
    for (index, f) in view.files.iter().enumerate() {
        let _ = write!(body, "<section class=\"file\" id=\"file-{index}\"><h2><code>{}</code></h2>", esc(&f.path));
        if body.len() > PAGE_HTML {
            body.push_str("<p class=\"cut\">Not shown: this page has reached its size (see the files API for what the view holds).</p></section>");
            continue;
        }
        let comments: Vec<&review::Comment> = loaded.desk.comments.iter().filter(|c| c.file == f.path && c.submission == id).collect();
        let file_findings: &[&Finding] = findings.get(f.path.as_str()).map_or(&[], Vec::as_slice);
        let mut by_line: HashMap<u64, Vec<&Finding>> = HashMap::new();
        for x in file_findings {
            by_line.entry(x.line).or_default().push(x);
        }
        // Lines shown (findings and comments past them are listed after the file).
        let mut shown_lines = 0u32;
        let executed = loaded.report.as_ref().and_then(|r| r.artifacts.notebook(&f.path)).filter(|_| f.kind == FileKind::Notebook);
        match (&f.kind, &f.text, &f.cells) {
            (FileKind::Notebook, _, Some(_)) if executed.is_some() => {
                executed_html(&mut body, executed.expect("checked"), highlight_until);
                for x in file_findings.iter().take(MAX_FINDINGS_LISTED) {
                    let _ = write!(body, "<p class=\"lint\">{} {}: {}</p>", esc(&x.rule), x.line, esc(&x.message));
                }
                more_findings(&mut body, file_findings.len());
            }
            (FileKind::Notebook, _, Some(cells)) => {
                for (n, cell) in cells.iter().enumerate() {
                    if body.len() > PAGE_HTML {
                        body.push_str("<p class=\"cut\">The remaining cells are not shown: this page has reached its size.</p>");
                        break;
                    }
                    cell_html(&mut body, n, &cell.kind, "", &cell.source, highlight_until);
                    if !cell.output.is_empty() || cell.output_cut_bytes > 0 {
                        let _ = write!(body, "<pre class=\"output\">{}", esc(&cell.output));
                        if cell.output_cut_bytes > 0 {
                            let _ = write!(body, "… (cut: {} bytes)", cell.output_cut_bytes);
                        }
                        body.push_str("</pre>");
                    }
                    body.push_str("</div>");
                }
                for x in file_findings.iter().take(MAX_FINDINGS_LISTED) {
                    let _ = write!(body, "<p class=\"lint\">{} {}: {}</p>", esc(&x.rule), x.line, esc(&x.message));
                }
                more_findings(&mut body, file_findings.len());
            }
            (FileKind::Text, Some(text), _) => {
                let added: HashSet<u32> = f.added_lines.iter().copied().collect();
                body.push_str("<table class=\"code\">");
                for (i, line) in lines_html(text, f.language, PAGE_HTML.saturating_sub(body.len()), highlight_until).iter().enumerate() {
                    let n = i as u32 + 1;
                    shown_lines = n;
                    let here: &[&Finding] = by_line.get(&(n as u64)).map_or(&[], Vec::as_slice);
                    let mut class = Vec::new();
                    if added.contains(&n) && f.change != Change::Added {
                        class.push("added");
                    }
                    if !here.is_empty() {
                        class.push("finding");
                    }
                    let _ = write!(
                        body,
                        "<tr id=\"file-{index}-L{n}\" class=\"{}\"><td class=\"ln\"><a href=\"#file-{index}-L{n}\">{n}</a></td><td class=\"src\">{line}</td></tr>",
                        class.join(" ")
                    );
                    for x in here {
                        let _ = write!(body, "<tr class=\"lint\"><td></td><td>⚑ <b>{}</b> {}</td></tr>", esc(&x.rule), esc(&x.message));
                    }
                    for c in comments.iter().filter(|c| c.line == n) {
                        body.push_str(&comment_row(c, user, &csrf_input));
                    }
                }
                body.push_str("</table>");
                let whole_file = by_line.get(&0).map_or(&[][..], Vec::as_slice);
                for x in whole_file.iter().take(MAX_FINDINGS_LISTED) {
                    let _ = write!(body, "<p class=\"lint\">⚑ <b>{}</b> {}</p>", esc(&x.rule), esc(&x.message));
                }
                more_findings(&mut body, whole_file.len());
                // What is about lines not shown.
                let later: Vec<&&Finding> = file_findings.iter().filter(|x| x.line > shown_lines as u64).collect();
                if !later.is_empty() || comments.iter().any(|c| c.line > shown_lines) {
                    body.push_str("<table class=\"code\"><tr class=\"note\"><td></td><td>On lines not shown:</td></tr>");
                    for x in later.iter().take(MAX_FINDINGS_LISTED) {
                        let _ = write!(body, "<tr class=\"lint\"><td>{}</td><td>⚑ <b>{}</b> {}</td></tr>", x.line, esc(&x.rule), esc(&x.message));
                    }
                    if later.len() > MAX_FINDINGS_LISTED {
                        let _ = write!(body, "<tr class=\"lint\"><td></td><td>… and {} more findings</td></tr>", later.len() - MAX_FINDINGS_LISTED);
                    }
                    for c in comments.iter().filter(|c| c.line > shown_lines) {
                        body.push_str(&comment_row(c, user, &csrf_input));
                    }
                    body.push_str("</table>");
                }
            }
            (FileKind::Link, Some(target), _) => {
                let _ = write!(body, "<p>A symbolic link to <code>{}</code> (shown as text; never followed).</p>", esc(target));
            }
            _ => body.push_str("<p>Not shown.</p>"),
        }
        if let Some(cut) = &f.cut {
            let _ = write!(body, "<p class=\"cut\"><small>{}.</small></p>", esc(&cut.note));
        }
        if let Some(diff) = &f.diff {
            let _ = write!(body, "<details><summary>Diff against the starter</summary>{}</details>", code::diff_html(diff));
        } else if f.change == Change::Unchanged {
            body.push_str("<p><small>Exactly as we gave it (starter, brief or public data).</small></p>");
        }
        if let Some(note) = f.diff_status.and_then(DiffStatus::note) {
            let _ = write!(body, "<p class=\"cut\"><small>Diff against the starter: {}.</small></p>", esc(&note));
        }
        if matches!(f.kind, FileKind::Text | FileKind::Notebook) {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/submissions/{id}/comments\">{csrf_input}<input type=\"hidden\" name=\"file\" value=\"{}\">\
                 <label>Comment on line <input name=\"line\" type=\"number\" min=\"1\" size=\"5\" required></label> \
                 <label>Comment <input name=\"text\" size=\"60\" required></label> <button>Add comment</button></form>",
                esc(&f.path)
            );
        }
        body.push_str("</section>");
    }
    page("Code", &body).0
}

fn comment_row(c: &review::Comment, user: &str, csrf_input: &str) -> String {
    let mut out = format!(
        "<tr class=\"note\" id=\"comment-{}\"><td></td><td>💬 <b>{}</b> <small>{}{}</small>: {}",
        c.id,
        esc(&c.author),
        rfc3339(c.created_at),
        if c.updated_at != c.created_at { format!(", edited {}", rfc3339(c.updated_at)) } else { String::new() },
        esc(&c.text)
    );
    if c.author == user {
        let _ = write!(
            out,
            "<details><summary>edit</summary><form method=\"post\" action=\"/comments/{}/edit\">{csrf_input}<input name=\"text\" size=\"60\" value=\"{}\" aria-label=\"comment text\"> <button>Save</button></form></details>",
            c.id,
            esc(&c.text)
        );
    }
    out.push_str("</td></tr>");
    out
}

// ---------------------------------------------------------------- forms

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

fn answer(result: Result<(), Failure>, back: String) -> Response {
    match result {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(failure) => {
            (failure.status, page("Not saved", &format!("<p>{}</p><p><a href=\"{}\">Back</a></p>", esc(&failure.message), esc(&back)))).into_response()
        }
    }
}

pub async fn comment_form(State(app): State<Arc<App>>, Path(id): Path<i64>, form: SessionForm<CommentForm>) -> Response {
    let f = form.form;
    let result = add_comment(&app, &form.user, id, CommentBody { file: f.file, line: f.line, text: f.text }).await;
    let back = match &result {
        Ok(comment) => format!("/submissions/{id}/code#comment-{comment}"),
        Err(_) => format!("/submissions/{id}/code"),
    };
    answer(result.map(|_| ()), back)
}

pub async fn edit_comment_form(State(app): State<Arc<App>>, Path(comment): Path<i64>, form: SessionForm<EditForm>) -> Response {
    match edit_comment(&app, &form.user, comment, &form.form.text).await {
        Ok(submission) => Redirect::to(&format!("/submissions/{submission}/code#comment-{comment}")).into_response(),
        Err(failure) => answer(Err(failure), "/".into()),
    }
}

pub async fn scores_form(State(app): State<Arc<App>>, Path(id): Path<i64>, form: SessionForm<FieldsForm>) -> Response {
    let fields = form.form.0;
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
    answer(put_scores(&app, &form.user, id, scores).await, format!("/submissions/{id}#rubric"))
}

pub async fn decision_form(State(app): State<Arc<App>>, Path(id): Path<i64>, form: SessionForm<FieldsForm>) -> Response {
    let f = &form.form.0;
    let result = decide(&app, &form.user, id, f.get("decision").map(String::as_str).unwrap_or(""), f.get("reason").map(String::as_str).unwrap_or("")).await;
    answer(result, format!("/submissions/{id}#decision"))
}

pub async fn release_form(State(app): State<Arc<App>>, Path(id): Path<i64>, form: SessionForm<FieldsForm>) -> Response {
    let message = form.form.0.get("message").cloned().unwrap_or_default();
    answer(release(&app, &form.user, id, &message).await.map(|_| ()), format!("/submissions/{id}#feedback"))
}

// ---------------------------------------------------------------- JSON API

pub async fn files_api(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> Response {
    let result = async {
        let loaded = load(&app, id).await?;
        let view = code_view(&app, &loaded).await?;
        let all: &[Finding] = loaded.report.as_ref().map_or(&[], |r| r.components.code_quality.findings.as_slice());
        let findings = &all[..all.len().min(MAX_FINDINGS_API)];
        let comments: Vec<&review::Comment> = loaded.desk.comments.iter().filter(|c| c.submission == id).collect();
        Ok::<_, Failure>(serde_json::json!({ "submission": id, "candidate": loaded.name(), "view": view, "lint_findings": findings, "lint_findings_total": all.len(), "comments": comments }))
    }
    .await;
    match result {
        Ok(json) => Json(json).into_response(),
        Err(failure) => failure.into_response(),
    }
}

pub async fn review_api(State(app): State<Arc<App>>, Path(id): Path<i64>, _assessor: Assessor) -> Response {
    let result = async {
        let loaded = load(&app, id).await?;
        let spec = loaded.review_spec();
        let notes = notes_of(&app, &loaded).await.ok().flatten();
        let notes_cut = notes.as_ref().and_then(|n| n.cut.clone());
        let notes = notes.map(|n| n.text);
        let timeline = timeline(&app, &loaded.assignment).await?;
        let automatic = loaded.submission.score;
        let cohort = cohort_scores(&app, &loaded.submission.task).await?;
        let baselines = crate::check::graded_baselines(&app.config.tasks_root, &loaded.submission.task);
        Ok::<_, Failure>(serde_json::json!({
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
        }))
    }
    .await;
    match result {
        Ok(json) => Json(json).into_response(),
        Err(failure) => failure.into_response(),
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

pub async fn comment_api(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    assessor: Assessor,
    ApiJson(body): ApiJson<CommentBody>,
) -> AppResult<Json<serde_json::Value>> {
    let comment = add_comment(&app, &assessor.0, id, body).await?;
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

pub async fn scores_api(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    assessor: Assessor,
    ApiJson(body): ApiJson<ScoresBody>,
) -> AppResult<Json<serde_json::Value>> {
    put_scores(&app, &assessor.0, id, body.scores).await?;
    Ok(Json(serde_json::json!({ "saved": true })))
}

pub async fn decision_api(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    assessor: Assessor,
    ApiJson(body): ApiJson<DecisionInput>,
) -> AppResult<Json<serde_json::Value>> {
    decide(&app, &assessor.0, id, &body.decision, &body.reason).await?;
    Ok(Json(serde_json::json!({ "recorded": true })))
}

pub async fn release_api(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    assessor: Assessor,
    ApiJson(body): ApiJson<ReleaseInput>,
) -> AppResult<Json<serde_json::Value>> {
    let released = release(&app, &assessor.0, id, &body.message).await?;
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

async fn export_rows(app: &Arc<App>, task: &str) -> Result<(Vec<ExportRow>, ReviewSpec), Failure> {
    let spec = load_task(app, task).await.map(|s| s.review).unwrap_or_default();
    let blinds = Blinds::load(app).await?;
    let assignments: Vec<Assignment> = stored(app.store.assignments()).await?.into_iter().filter(|a| a.task == task).collect();
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

pub async fn export_api(State(app): State<Arc<App>>, Path(task): Path<String>, _assessor: Assessor, Query(query): Query<ExportQuery>) -> AppResult<Response> {
    if !crate::task::is_name(&task) {
        return Err(Failure::not_found("such task"));
    }
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

pub async fn webhooks_api(State(app): State<Arc<App>>, _assessor: Assessor) -> Response {
    match stored(app.store.webhooks(100)).await {
        Ok(rows) => Json(serde_json::json!({ "configured": app.config.webhook.is_some(), "deliveries": rows.iter().map(|w| serde_json::json!({
            "id": w.id, "event": w.event, "attempts": w.attempts, "delivered_at": w.delivered_at.map(rfc3339), "failed_at": w.failed_at.map(rfc3339),
            "next_at": rfc3339(w.next_at), "last_error": w.last_error })).collect::<Vec<_>>() }))
        .into_response(),
        Err(failure) => failure.into_response(),
    }
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
