//! Signals for assessors beyond the grade: cohort similarity (`/tasks/<task>/similarity`,
//! `GET /api/tasks/<task>/similarity`). Each candidate's latest push is fingerprinted once (kept
//! under `<data_dir>/similarity/<submission>.json`, keyed by commit and fingerprint version) and
//! compared with the others' stored fingerprints and with the task's known solutions
//! (`tasks/<id>/known/`, never part of a candidate's repository). The starter's fingerprints are
//! subtracted. A signal for a reader: nothing is refused or scored on it.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{Assessor, AssessorPage};
use super::review::Blinds;
use super::{page, stored, App, Failure};
use crate::report::html::esc;
use crate::similarity::{self, Cohort, Fingerprints, Pair, Span};

/// Pairs at or above this share are listed by default.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// A pair must share at least this many fingerprints.
const MIN_SHARED: usize = 8;
/// Fingerprints held by more than this share of the cohort are boilerplate.
const COMMON: f64 = 0.5;
const MAX_SOURCE: u64 = 512 << 10;
const MAX_FILES: usize = 200;

#[derive(Deserialize)]
pub struct SimilarityQuery {
    threshold: Option<f64>,
}

/// One compared entry: a candidate's latest submission or a known solution.
struct Entry {
    name: String,
    submission: Option<i64>,
    prints: Fingerprints,
    /// Where its files' text is read back for the fragments.
    source: Source,
}

enum Source {
    Git { assignment: String, commit: String },
    Folder(PathBuf),
}

/// Source files of a folder (known solutions, the starter): path relative to it, text.
fn folder_sources(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() || entry.metadata().map(|m| m.len() > MAX_SOURCE).unwrap_or(true) {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(dir) else { continue };
        let relative = relative.to_string_lossy().into_owned();
        if similarity::is_source(&relative) {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                files.push((relative, text));
            }
        }
        if files.len() >= MAX_FILES {
            break;
        }
    }
    files
}

/// The source files of a commit, from git (no checkout, links skipped).
fn commit_sources(repos: &crate::intake::Repos, assignment: &str, commit: &str) -> Result<Vec<(String, String)>, String> {
    let entries = repos.tree(assignment, commit).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for entry in entries.iter().filter(|e| e.kind == "blob" && e.mode.starts_with("100") && similarity::is_source(&e.path)) {
        if entry.size.unwrap_or(0) > MAX_SOURCE || files.len() >= MAX_FILES {
            continue;
        }
        let bytes = repos.blob(assignment, &entry.object).map_err(|e| e.to_string())?;
        if let Ok(text) = String::from_utf8(bytes) {
            files.push((entry.path.clone(), text));
        }
    }
    Ok(files)
}

/// A submission's fingerprints: from the cache when it holds this commit at this version,
/// else computed once and stored.
fn submission_prints(cache: &Path, repos: &crate::intake::Repos, submission: i64, assignment: &str, commit: &str) -> Result<Fingerprints, String> {
    #[derive(serde::Serialize, Deserialize)]
    struct Cached {
        commit: String,
        prints: Fingerprints,
    }
    let file = cache.join(format!("{submission}.json"));
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(cached) = serde_json::from_str::<Cached>(&text) {
            if cached.commit == commit && cached.prints.version == similarity::VERSION {
                return Ok(cached.prints);
            }
        }
    }
    let prints = similarity::fingerprint(&commit_sources(repos, assignment, commit)?);
    let _ = std::fs::create_dir_all(cache);
    let temporary = cache.join(format!(".{submission}.json.tmp"));
    let json = serde_json::to_string(&Cached { commit: commit.to_string(), prints: prints.clone() }).map_err(|e| e.to_string())?;
    if std::fs::write(&temporary, json).is_ok() {
        let _ = std::fs::rename(&temporary, &file);
    }
    Ok(prints)
}

/// The cohort of a task and its pairs above `threshold`, with the texts of the fragments' files.
async fn cohort_pairs(app: &Arc<App>, task: &str, threshold: f64) -> Result<(Vec<Pair>, Vec<Entry>, usize), Failure> {
    if !crate::task::is_name(task) {
        return Err(Failure::not_found("such task"));
    }
    let task_dir = app.config.tasks_root.join("tasks").join(task);
    let spec = {
        let dir = task_dir.clone();
        tokio::task::spawn_blocking(move || crate::task::load(&dir).ok()).await.map_err(|e| Failure::internal(e.to_string()))?
    };
    let blinds = Blinds::load(app).await?;
    let submissions = stored(app.store.submissions(None, Some(task))).await?;
    // The latest push of each candidate (submissions come newest first).
    let mut seen = HashSet::new();
    let latest: Vec<_> = submissions.into_iter().filter(|s| seen.insert(s.assignment.clone())).collect();
    let repos = app.repos.clone();
    let cache = app.config.data_dir.join("similarity");
    let starter_dir = spec.as_ref().map(|s| s.dir.join(&s.starter));
    let known_dir = task_dir.join("known");
    let (entries, given, candidates) = tokio::task::spawn_blocking(move || {
        let mut entries = Vec::new();
        for s in &latest {
            match submission_prints(&cache, &repos, s.id, &s.assignment, &s.commit) {
                Ok(prints) => entries.push(Entry {
                    name: format!("{} (#{})", blinds.name(&s.assignment, &s.task, &s.candidate), s.number),
                    submission: Some(s.id),
                    prints,
                    source: Source::Git { assignment: s.assignment.clone(), commit: s.commit.clone() },
                }),
                Err(e) => tracing::warn!(submission = s.id, error = %e, "cannot fingerprint a submission"),
            }
        }
        let candidates = entries.len();
        // Known solutions: each file or folder directly under known/.
        if let Ok(read) = std::fs::read_dir(&known_dir) {
            let mut known: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
            known.sort();
            for path in known {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let files = if path.is_dir() {
                    folder_sources(&path)
                } else if similarity::is_source(&name) && !path.is_symlink() {
                    std::fs::read_to_string(&path).map(|t| vec![(name.clone(), t)]).unwrap_or_default()
                } else {
                    continue;
                };
                let source = if path.is_dir() { Source::Folder(path.clone()) } else { Source::Folder(known_dir.clone()) };
                entries.push(Entry { name: format!("known: {name}"), submission: None, prints: similarity::fingerprint(&files), source });
            }
        }
        let given = starter_dir.map(|d| similarity::fingerprint(&folder_sources(&d)).hashes()).unwrap_or_default();
        (entries, given, candidates)
    })
    .await
    .map_err(|e| Failure::internal(e.to_string()))?;
    let cohort = Cohort { entries: entries.iter().map(|e| (e.name.clone(), &e.prints)).collect(), given, candidates };
    let pairs = similarity::compare(&cohort, threshold, MIN_SHARED, COMMON);
    Ok((pairs, entries, candidates))
}

pub async fn similarity_api(
    State(app): State<Arc<App>>,
    UrlPath(task): UrlPath<String>,
    _assessor: Assessor,
    Query(query): Query<SimilarityQuery>,
) -> Response {
    let threshold = query.threshold.unwrap_or(DEFAULT_THRESHOLD).clamp(0.0, 1.0);
    match cohort_pairs(&app, &task, threshold).await {
        Ok((pairs, entries, candidates)) => {
            let id_of = |name: &str| entries.iter().find(|e| e.name == name).and_then(|e| e.submission);
            let rows: Vec<serde_json::Value> = pairs
                .iter()
                .map(|p| {
                    serde_json::json!({ "a": p.a, "a_submission": id_of(&p.a), "b": p.b, "b_submission": id_of(&p.b), "similarity": p.similarity,
                    "a_covered": p.a_covered, "b_covered": p.b_covered, "shared_fingerprints": p.shared, "fragments": p.fragments })
                })
                .collect();
            Json(serde_json::json!({ "task": task, "threshold": threshold, "submissions": candidates, "known_solutions": entries.len() - candidates,
                "method": format!("winnowed {}-grams of normalised Python tokens (window {}), starter subtracted; similarity = shared fingerprints / the smaller side's", similarity::K, similarity::W),
                "pairs": rows }))
            .into_response()
        }
        Err(failure) => failure.into_response(),
    }
}

/// The text of one of an entry's files (git for a push, the folder for a known solution).
fn file_text(app: &App, entry: &Entry, file: &str) -> Option<String> {
    let text = match &entry.source {
        Source::Git { assignment, commit } => app
            .repos
            .tree(assignment, commit)
            .ok()
            .and_then(|entries| entries.into_iter().find(|e| e.path == file && e.size.unwrap_or(0) <= MAX_SOURCE))
            .and_then(|e| app.repos.blob(assignment, &e.object).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        Source::Folder(dir) => {
            let path = dir.join(file);
            // Known solutions are the author's files; still, never follow a link.
            (!path.is_symlink()).then(|| std::fs::read_to_string(&path).ok()).flatten()
        }
    }?;
    Some(if file.to_ascii_lowercase().ends_with(".ipynb") { crate::grading::lint::notebook_code(&text) } else { text })
}

/// The lines of a span of `source`, escaped, for the side-by-side view.
fn span_lines(source: &str, span: &Span) -> String {
    let mut out = String::new();
    for (i, line) in
        source.lines().enumerate().skip(span.first_line.saturating_sub(1) as usize).take((span.last_line + 1 - span.first_line.min(span.last_line)) as usize)
    {
        let _ = writeln!(out, "{:>4} {}", i + 1, esc(line));
    }
    out
}

pub async fn similarity_page(
    State(app): State<Arc<App>>,
    UrlPath(task): UrlPath<String>,
    _assessor: AssessorPage,
    Query(query): Query<SimilarityQuery>,
) -> Response {
    let threshold = query.threshold.unwrap_or(DEFAULT_THRESHOLD).clamp(0.0, 1.0);
    let (pairs, entries, candidates) = match cohort_pairs(&app, &task, threshold).await {
        Ok(found) => found,
        Err(failure) => return failure.into_response(),
    };
    let mut body = format!(
        "<h1>{}: similar submissions</h1><p>{candidates} candidates' latest pushes and {} known solution(s), compared as MOSS and Dolos do: winnowed {}-grams of \
         normalised Python tokens (names and literals ignored, comments dropped), what the starter gives subtracted, code shared by most of the cohort ignored. \
         <b>A signal to read, never a verdict.</b> Listed: pairs sharing at least {:.0}% of the smaller side (<a href=\"?threshold=0.3\">30%</a> · \
         <a href=\"?threshold=0.5\">50%</a> · <a href=\"?threshold=0.8\">80%</a>).</p>",
        esc(&task),
        entries.len() - candidates,
        similarity::K,
        threshold * 100.0
    );
    if pairs.is_empty() {
        body.push_str("<p>No pair at or above the threshold.</p>");
    }
    let app_ref = app.clone();
    let pairs_html = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut texts: std::collections::HashMap<(String, String), Option<String>> = std::collections::HashMap::new();
        let link = |name: &str| match entries.iter().find(|e| e.name == name).and_then(|e| e.submission) {
            Some(id) => format!("<a href=\"/submissions/{id}\">{}</a>", esc(name)),
            None => esc(name),
        };
        for (n, p) in pairs.iter().enumerate() {
            let _ = write!(
                out,
                "<section class=\"pair\"><h2>{:.0}% · {} and {}</h2><p>{} shared fingerprints: {:.0}% of the first, {:.0}% of the second.</p><details{}><summary>Matched fragments ({})</summary>",
                p.similarity * 100.0,
                link(&p.a),
                link(&p.b),
                p.shared,
                p.a_covered * 100.0,
                p.b_covered * 100.0,
                if n == 0 { " open" } else { "" },
                p.fragments.len()
            );
            let (ea, eb) = (entries.iter().find(|e| e.name == p.a), entries.iter().find(|e| e.name == p.b));
            for (sa, sb) in p.fragments.iter().take(12) {
                // Each file is read once per page, however many fragments show it.
                let mut text = |entry: Option<&Entry>, span: &Span| -> String {
                    let Some(entry) = entry else { return String::new() };
                    let source = texts.entry((entry.name.clone(), span.file.clone())).or_insert_with(|| file_text(&app_ref, entry, &span.file));
                    source.as_deref().map(|s| span_lines(s, span)).unwrap_or_default()
                };
                let (ta, tb) = (text(ea, sa), text(eb, sb));
                let _ = write!(
                    out,
                    "<table class=\"fragment\"><tr><th>{} lines {}–{}</th><th>{} lines {}–{}</th></tr><tr><td><pre>{ta}</pre></td><td><pre>{tb}</pre></td></tr></table>",
                    esc(&sa.file),
                    sa.first_line,
                    sa.last_line,
                    esc(&sb.file),
                    sb.first_line,
                    sb.last_line
                );
            }
            out.push_str("</details></section>");
        }
        out
    })
    .await
    .unwrap_or_default();
    body.push_str("<style>.fragment td{vertical-align:top;width:50%}.fragment pre{margin:0;font-size:12px;white-space:pre-wrap}</style>");
    body.push_str(&pairs_html);
    page("Similarity", &body).into_response()
}

// ---------------------------------------------------------------- regrades with a diff

/// What a graded submission was graded with, against what the task has now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Affected {
    pub submission: i64,
    pub candidate: String,
    pub score: Option<f64>,
    /// What changed since it was graded: `task` (the task folder), `data` (the data set),
    /// `image` (the runner image's recipe).
    pub changed: Vec<&'static str>,
}

/// The digests a task has now: (task folder, data set, runner image tag).
async fn current_digests(app: &Arc<App>, task: &str) -> Result<(String, String, String), Failure> {
    let needs = crate::job::needs_of(&app.config.tasks_root, task).await.map_err(|e| Failure::internal(format!("task {task}: {e}")))?;
    let (root, dir) = (app.config.tasks_root.clone(), app.config.tasks_root.join("tasks").join(task));
    let tag = tokio::task::spawn_blocking(move || {
        let spec = crate::task::load(&dir).ok()?;
        crate::sandbox::image::Recipe::load(&root, &spec.image).ok().map(|r| r.tag())
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    Ok((needs.spec_digest, needs.data_digest, tag))
}

/// Graded submissions of `task` whose report was made with another task folder, data set or image.
pub async fn affected(app: &Arc<App>, task: &str) -> Result<Vec<Affected>, Failure> {
    if !crate::task::is_name(task) {
        return Err(Failure::not_found("such task"));
    }
    let (task_digest, data_digest, image) = current_digests(app, task).await?;
    let blinds = Blinds::load(app).await?;
    let mut out = Vec::new();
    for s in stored(app.store.submissions(None, Some(task))).await? {
        if s.status != crate::store::JobStatus::Graded {
            continue;
        }
        let Some((_, Some(report))) = stored(app.store.submission(s.id)).await? else { continue };
        let Ok(report) = serde_json::from_str::<crate::report::Report>(&report) else { continue };
        let p = &report.provenance;
        let mut changed = Vec::new();
        if p.task_digest != task_digest {
            changed.push("task");
        }
        if !p.dataset_digest.is_empty() && p.dataset_digest != data_digest {
            changed.push("data");
        }
        if !image.is_empty() && p.image != image {
            changed.push("image");
        }
        if !changed.is_empty() {
            out.push(Affected { submission: s.id, candidate: blinds.name(&s.assignment, &s.task, &s.candidate), score: s.score, changed });
        }
    }
    Ok(out)
}

pub async fn affected_api(State(app): State<Arc<App>>, UrlPath(task): UrlPath<String>, _assessor: Assessor) -> Response {
    match affected(&app, &task).await {
        Ok(rows) => Json(serde_json::json!({ "task": task, "affected": rows })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

/// Queues every affected submission again; answers how many.
pub async fn regrade_affected(app: &Arc<App>, task: &str) -> Result<usize, Failure> {
    let mut n = 0;
    for a in affected(app, task).await? {
        n += super::api::queue_regrade(app, Some(a.submission), None).await?;
    }
    Ok(n)
}

pub async fn regrade_affected_api(State(app): State<Arc<App>>, UrlPath(task): UrlPath<String>, _assessor: Assessor) -> Response {
    match regrade_affected(&app, &task).await {
        Ok(n) => Json(serde_json::json!({ "queued": n })).into_response(),
        Err(failure) => failure.into_response(),
    }
}

pub async fn regrade_affected_form(
    State(app): State<Arc<App>>,
    UrlPath(task): UrlPath<String>,
    _form: super::auth::SessionForm<super::pages::PlainForm>,
) -> Response {
    let _ = regrade_affected(&app, &task).await;
    axum::response::Redirect::to(&format!("/tasks/{task}/compare")).into_response()
}

/// One grade of a submission, old or current, as the history shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Grade {
    pub graded_at: Option<String>,
    pub status: Option<String>,
    pub score: Option<f64>,
    pub accuracy: Option<f64>,
    pub code_quality: Option<f64>,
    pub runtime: Option<f64>,
    /// A task that grades several outputs: each output's score, by file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<(String, f64)>,
    pub task_digest: String,
    pub dataset_digest: String,
    pub image: String,
}

fn grade_of(report: Option<&str>, status: Option<&str>, score: Option<f64>, graded_at: Option<i64>) -> Grade {
    let report = report.and_then(|r| serde_json::from_str::<crate::report::Report>(r).ok());
    Grade {
        graded_at: graded_at.map(crate::report::rfc3339),
        status: status.map(str::to_string),
        score,
        accuracy: report.as_ref().map(|r| r.components.accuracy.score),
        code_quality: report.as_ref().map(|r| r.components.code_quality.score),
        runtime: report.as_ref().map(|r| r.components.runtime.score),
        outputs: report.as_ref().map(|r| r.components.accuracy.outputs.iter().map(|o| (o.file.clone(), o.score)).collect()).unwrap_or_default(),
        task_digest: report.as_ref().map(|r| r.provenance.task_digest.clone()).unwrap_or_default(),
        dataset_digest: report.as_ref().map(|r| r.provenance.dataset_digest.clone()).unwrap_or_default(),
        image: report.as_ref().map(|r| r.provenance.image.clone()).unwrap_or_default(),
    }
}

/// Every grade of a submission, oldest first, the current one last.
pub async fn grades(app: &Arc<App>, id: i64) -> Result<Vec<Grade>, Failure> {
    let Some((submission, report)) = stored(app.store.submission(id)).await? else { return Err(Failure::not_found("such submission")) };
    let mut out: Vec<Grade> = stored(app.store.report_history(id))
        .await?
        .iter()
        .map(|p| grade_of(p.report.as_deref(), p.grade_status.map(|g| g.as_str()), p.score, p.graded_at))
        .collect();
    if report.is_some() {
        out.push(grade_of(report.as_deref(), submission.grade_status.map(|g| g.as_str()), submission.score, submission.finished_at));
    }
    Ok(out)
}

/// The history as HTML: each regrade with what changed per component and which digest moved.
pub fn grades_html(grades: &[Grade]) -> String {
    if grades.len() < 2 {
        return String::new();
    }
    let mut out = String::from(
        "<section id=\"history\"><h3>Regrades</h3><table><tr><th>graded</th><th>status</th><th class=\"num\">score</th><th class=\"num\">accuracy</th>\
         <th class=\"num\">code quality</th><th class=\"num\">runtime</th><th>what changed</th></tr>",
    );
    let cell = |old: Option<f64>, new: Option<f64>| match (old, new) {
        (Some(o), Some(n)) if (o - n).abs() >= 0.05 => format!("{o:.1} → <b>{n:.1}</b> ({:+.1})", n - o),
        (_, Some(n)) => format!("{n:.1}"),
        _ => String::new(),
    };
    for (i, g) in grades.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &grades[p]);
        let mut changed = Vec::new();
        if let Some(p) = previous {
            if p.task_digest != g.task_digest {
                changed.push(format!("task folder {} → {}", short(&p.task_digest), short(&g.task_digest)));
            }
            if p.dataset_digest != g.dataset_digest {
                changed.push(format!("data set {} → {}", short(&p.dataset_digest), short(&g.dataset_digest)));
            }
            if p.image != g.image {
                changed.push(format!("image {} → {}", esc(&p.image), esc(&g.image)));
            }
            if changed.is_empty() {
                changed.push("nothing recorded (regraded as it was)".into());
            }
            for (file, new) in &g.outputs {
                if let Some((_, old)) = p.outputs.iter().find(|(f, _)| f == file).filter(|(_, old)| (old - new).abs() >= 0.05) {
                    changed.push(format!("{} {old:.1} → {new:.1}", esc(file)));
                }
            }
        } else {
            changed.push("first grade".into());
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(g.graded_at.as_deref().unwrap_or("")),
            esc(g.status.as_deref().unwrap_or("")),
            cell(previous.and_then(|p| p.score), g.score),
            cell(previous.and_then(|p| p.accuracy), g.accuracy),
            cell(previous.and_then(|p| p.code_quality), g.code_quality),
            cell(previous.and_then(|p| p.runtime), g.runtime),
            changed.join("; ")
        );
    }
    out.push_str("</table></section>");
    out
}

fn short(digest: &str) -> String {
    if digest.is_empty() {
        "(unknown)".into()
    } else {
        esc(&digest[..digest.len().min(12)])
    }
}

pub async fn grades_api(State(app): State<Arc<App>>, UrlPath(id): UrlPath<i64>, _assessor: Assessor) -> Response {
    match grades(&app, id).await {
        Ok(rows) => Json(serde_json::json!({ "submission": id, "grades": rows })).into_response(),
        Err(failure) => failure.into_response(),
    }
}
