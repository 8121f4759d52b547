//! Signals for assessors beyond the grade: cohort similarity (`/tasks/<task>/similarity`,
//! `GET /api/tasks/<task>/similarity`). Each candidate's latest push is fingerprinted once (kept
//! under `<data_dir>/similarity/<submission>.json`, keyed by commit and fingerprint version) and
//! compared with the others' stored fingerprints and with the task's known solutions
//! (`tasks/<id>/known/`, never part of a candidate's repository). The starter's fingerprints are
//! subtracted. A signal for a reader: nothing is refused or scored on it.
//!
//! The comparison is made when a push arrives (after its fingerprints, in the background) and
//! kept per task ([`Memo`]) until the task's submissions, starter or known solutions change, so
//! that a view costs what it shows: one aggregate query, the blind settings, and the pairs it
//! lists. A threshold below [`MEMO_FLOOR`] is compared on its view.
//!
//! Bounded whatever was pushed: sources are read with a cap per file and per submission (git's
//! output read up to the cap, [`super::bounded`]) and fingerprinted within
//! [`similarity`]'s caps; the page says whose sources were cut. New fingerprints are computed for
//! at most [`COMPUTE_TIME`] per view (the rest on the next view; each is stored once made), and not
//! at all once the request is gone. At most [`MAX_PAIRS`] pairs are listed, each fragment at most
//! [`MAX_FRAGMENT_LINES`] lines a side.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{Assessor, AssessorPage};
use super::bounded::{self, CancelOnDrop};
use super::queries::Blinds;
use super::TaskInPath;
use super::{page, stored, App, AppResult, Failure};
use crate::similarity::{self, Cohort, Cuts, Fingerprints, Pair, Span};
use crate::task::TaskId;
use maud::{html, Markup, PreEscaped};

/// Pairs at or above this share are listed by default.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// A pair must share at least this many fingerprints.
const MIN_SHARED: usize = 8;
/// Fingerprints held by more than this share of the cohort are boilerplate.
const COMMON: f64 = 0.5;
/// Source files read per submission (the rest are counted as left out).
const MAX_FILES: usize = 200;
/// The time one view may spend fingerprinting pushes it has not seen yet.
pub const COMPUTE_TIME: Duration = Duration::from_millis(1500);
/// Pairs listed per page and answer.
pub const MAX_PAIRS: usize = 200;
/// Lines shown per side of a matched fragment.
pub const MAX_FRAGMENT_LINES: usize = 200;
/// The page's HTML past which fragments are no longer shown.
const PAGE_HTML: usize = 3 << 20;
/// A stored fingerprint file larger than this is not ours to parse (it is made again).
const MAX_CACHED: u64 = 8 << 20;

#[derive(Deserialize)]
pub struct SimilarityQuery {
    threshold: Option<f64>,
}

/// One compared entry: a candidate's latest submission or a known solution.
#[derive(Clone)]
struct Entry {
    /// As shown: the candidate's name or alias and the push, or `known: <name>`.
    name: String,
    submission: Option<i64>,
    /// Who it is, to name it again as blind reviews allow at each view: (assignment, task,
    /// candidate, push number); `None` for a known solution.
    who: Option<(String, TaskId, String, i64)>,
    /// What of its sources was left out.
    cut: Cuts,
    /// Where its files' text is read back for the fragments.
    source: Source,
}

#[derive(Clone)]
enum Source {
    Git { assignment: String, commit: String },
    Folder(PathBuf),
}

/// Source files of a folder (known solutions, the starter): path relative to it, text.
fn folder_sources(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().into_iter().filter_map(Result::ok) {
        if !entry.file_type().is_file() || entry.metadata().map(|m| m.len() > similarity::MAX_NOTEBOOK as u64).unwrap_or(true) {
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

/// What is read of one source file: a notebook whole (up to [`similarity::MAX_NOTEBOOK`]), other
/// files a little past [`similarity::MAX_FILE_SOURCE`] (so that a longer one counts as cut).
fn read_cap(path: &str) -> u64 {
    if path.to_ascii_lowercase().ends_with(".ipynb") {
        similarity::MAX_NOTEBOOK as u64
    } else {
        similarity::MAX_FILE_SOURCE as u64 + 4
    }
}

/// The source files of a commit, from git (no checkout, links skipped), each read up to
/// [`read_cap`] and no more once [`similarity::MAX_SOURCE`] has been read; with the count of
/// source files not read.
fn commit_sources(repos: &crate::intake::Repos, assignment: &str, commit: &str) -> Result<(Vec<(String, String)>, usize), String> {
    // The tree is streamed; at most MAX_FILES source entries are held, the rest counted.
    let (mut entries, mut left_out) = (Vec::new(), 0usize);
    repos
        .walk_tree(assignment, commit, |entry| {
            if entry.kind == "blob" && entry.mode.starts_with("100") && similarity::is_source(&entry.path) {
                let notebook_too_large = entry.path.to_ascii_lowercase().ends_with(".ipynb") && entry.size.unwrap_or(0) > read_cap(&entry.path);
                if entries.len() >= MAX_FILES || notebook_too_large {
                    left_out += 1;
                } else {
                    entries.push(entry);
                }
            }
            true
        })
        .map_err(|e| crate::errors::chain(&e))?;
    let (mut files, mut read) = (Vec::new(), 0usize);
    for entry in &entries {
        let cap = read_cap(&entry.path);
        if read >= similarity::MAX_SOURCE {
            left_out += 1;
            continue;
        }
        let prefix = bounded::blob_prefix(repos, assignment, &entry.object, cap, 0).map_err(|e| e.to_string())?;
        read += prefix.bytes.len();
        match bounded::utf8_prefix(&prefix.bytes) {
            Some(text) => files.push((entry.path.clone(), text.to_string())),
            None => left_out += 1,
        }
    }
    Ok((files, left_out))
}

/// A submission's fingerprints: from the cache when it holds this commit at this version,
/// else (when `compute`) computed once and stored; `None` when not cached and not computed.
fn submission_prints(
    cache: &Path,
    repos: &crate::intake::Repos,
    submission: i64,
    assignment: &str,
    commit: &str,
    compute: bool,
) -> Result<Option<Fingerprints>, String> {
    #[derive(serde::Serialize, Deserialize)]
    struct Cached {
        commit: String,
        prints: Fingerprints,
    }
    let file = cache.join(format!("{submission}.json"));
    // A stored file is ours, but one of an older version may be huge: size it before reading.
    if std::fs::metadata(&file).is_ok_and(|m| m.len() <= MAX_CACHED) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(cached) = serde_json::from_str::<Cached>(&text) {
                if cached.commit == commit && cached.prints.version == similarity::VERSION {
                    return Ok(Some(cached.prints));
                }
            }
        }
    }
    if !compute {
        return Ok(None);
    }
    let (sources, left_out) = commit_sources(repos, assignment, commit)?;
    let mut prints = similarity::fingerprint(&sources);
    prints.cut.files_left_out += left_out;
    let _ = std::fs::create_dir_all(cache);
    let temporary = cache.join(format!(".{submission}.json.tmp"));
    let json = serde_json::to_string(&Cached { commit: commit.to_string(), prints: prints.clone() }).map_err(|e| e.to_string())?;
    if std::fs::write(&temporary, json).is_ok() {
        let _ = std::fs::rename(&temporary, &file);
    }
    Ok(Some(prints))
}

/// Fingerprints a push as it arrives and compares its task's cohort again (in the background,
/// one push at a time), so that the similarity view finds the comparison made: a view costs what
/// it shows, not the cohort. A failure is only logged: the view computes what is missing.
pub fn fingerprint_on_arrival(app: &Arc<App>, submission: i64, assignment: &str, task: &TaskId, commit: &str) {
    let (app, assignment, task, commit) = (app.clone(), assignment.to_string(), task.clone(), commit.to_string());
    tokio::spawn(async move {
        let Ok(_turn) = app.fingerprinting.clone().acquire_owned().await else { return };
        let (repos, cache) = (app.repos.clone(), app.config.data_dir.join("similarity"));
        match tokio::task::spawn_blocking(move || submission_prints(&cache, &repos, submission, &assignment, &commit, true)).await {
            Ok(Ok(_)) => {
                if let Err(failure) = cohort_pairs(&app, &task, MEMO_FLOOR).await {
                    tracing::warn!(task = %task, error = %failure.message, "cannot compare the cohort");
                }
            }
            Ok(Err(e)) => tracing::warn!(submission, error = %e, "cannot fingerprint a push"),
            Err(e) => tracing::warn!(submission, error = %e, "cannot fingerprint a push"),
        }
    });
}

/// A compared cohort: the pairs above the threshold (at most [`MEMO_PAIRS`] with their
/// fragments), how many pairs there are in all, the entries, how many are candidates, and the
/// candidates not fingerprinted yet (this view ran out of [`COMPUTE_TIME`]).
struct Compared {
    pairs: Vec<Pair>,
    total: usize,
    entries: Vec<Entry>,
    candidates: usize,
    pending: Vec<String>,
}

impl Compared {
    /// The candidates whose sources were cut, with what was left out.
    fn cut(&self) -> Vec<(&Entry, &Cuts)> {
        self.entries[..self.candidates].iter().filter(|e| !e.cut.is_empty()).map(|e| (e, &e.cut)).collect()
    }
}

/// A task's comparison as last computed, kept until a push arrives, an assignment goes, or the
/// starter or known solutions change: pairs at or above [`MEMO_FLOOR`], named by key (`s<id>`,
/// `known: <name>`) so that blind aliases are applied at each view.
pub struct Memo {
    version: MemoVersion,
    pairs: Vec<Pair>,
    /// Every pair's similarity, most similar first (the pairs beyond [`MEMO_PAIRS`] are counted).
    similarities: Vec<f64>,
    entries: Vec<Entry>,
    candidates: usize,
}

impl Memo {
    /// The task's (newest submission id, submissions) it was computed from.
    pub fn submissions(&self) -> (i64, i64) {
        self.version.submissions
    }
}

/// What a memo was computed from.
#[derive(Clone, PartialEq, Eq, Debug)]
struct MemoVersion {
    /// The task's newest submission id and how many it has.
    submissions: (i64, i64),
    /// (files, newest modification) of the starter and of known/.
    folders: [(u64, i128); 2],
}

/// Thresholds at or above this are answered from the memo; lower ones are computed per view.
pub const MEMO_FLOOR: f64 = 0.3;
/// Pairs a memo keeps with their fragments (the rest are counted).
const MEMO_PAIRS: usize = 2_000;

/// (files, newest modification in ns) under `dir`, without following links.
fn folder_stamp(dir: &Path) -> (u64, i128) {
    let mut stamp = (0u64, 0i128);
    for entry in walkdir::WalkDir::new(dir).follow_links(false).into_iter().filter_map(Result::ok) {
        stamp.0 += 1;
        if let Some(modified) = entry.metadata().ok().and_then(|m| m.modified().ok()) {
            let ns = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
            stamp.1 = stamp.1.max(ns);
        }
    }
    stamp
}

/// The cohort of a task and its pairs above `threshold`, with the texts of the fragments' files.
/// From the task's memo when it is current (computed once per arrival: a push's arrival
/// computes it in the background, [`fingerprint_on_arrival`]); otherwise computed, and kept when
/// every push was fingerprinted.
async fn cohort_pairs(app: &Arc<App>, task: &TaskId, threshold: f64) -> Result<Compared, Failure> {
    let task_dir = app.tasks.dir(task);
    let spec = {
        let tasks = app.tasks.clone();
        let id = task.clone();
        tokio::task::spawn_blocking(move || tasks.load(&id).ok()).await.map_err(|e| Failure::internal(e.to_string()))?
    };
    let starter_dir = spec.as_ref().map(|s| s.dir.join(&s.starter));
    let known_dir = task_dir.join("known");
    let submissions_version = stored(app.store.task_version(task)).await?;
    let folders = {
        let (starter, known) = (starter_dir.clone(), known_dir.clone());
        tokio::task::spawn_blocking(move || [starter.map(|d| folder_stamp(&d)).unwrap_or_default(), folder_stamp(&known)])
            .await
            .map_err(|e| Failure::internal(e.to_string()))?
    };
    let version = MemoVersion { submissions: submissions_version, folders };
    let blinds = Blinds::load(app).await?;
    let memo_ok = threshold >= MEMO_FLOOR;
    if memo_ok {
        let held = app.similarity.lock().unwrap().get(task).cloned();
        if let Some(memo) = held.filter(|m| m.version == version) {
            return Ok(named(&memo.pairs, &memo.similarities, &memo.entries, memo.candidates, Vec::new(), &blinds, threshold));
        }
    }
    let submissions = stored(app.store.submissions(None, Some(task))).await?;
    // The latest push of each candidate (submissions come newest first).
    let mut seen = HashSet::new();
    let latest: Vec<_> = submissions.into_iter().filter(|s| seen.insert(s.assignment.clone())).collect();
    let repos = app.repos.clone();
    let cache = app.config.data_dir.join("similarity");
    // New fingerprints are made until the deadline, or until this request is gone.
    let guard = CancelOnDrop::default();
    let cancelled = guard.flag();
    let deadline = Instant::now() + COMPUTE_TIME;
    let compare_at = if memo_ok { MEMO_FLOOR } else { threshold };
    let (pairs, entries, candidates, pending) = tokio::task::spawn_blocking(move || {
        let (mut entries, mut prints, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for s in &latest {
            let compute = !cancelled.is_set() && Instant::now() < deadline;
            match submission_prints(&cache, &repos, s.id, &s.assignment, &s.commit, compute) {
                Ok(Some(made)) => {
                    entries.push(Entry {
                        name: format!("s{}", s.id),
                        submission: Some(s.id),
                        who: Some((s.assignment.clone(), s.task.clone(), s.candidate.clone(), s.number)),
                        cut: made.cut.clone(),
                        source: Source::Git { assignment: s.assignment.clone(), commit: s.commit.clone() },
                    });
                    prints.push(made);
                }
                Ok(None) => pending.push((s.assignment.clone(), s.task.clone(), s.candidate.clone(), s.number)),
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
                let made = similarity::fingerprint(&files);
                entries.push(Entry { name: format!("known: {name}"), submission: None, who: None, cut: made.cut.clone(), source });
                prints.push(made);
            }
        }
        let given = starter_dir.map(|d| similarity::fingerprint(&folder_sources(&d)).hashes()).unwrap_or_default();
        let cohort = Cohort { entries: entries.iter().zip(&prints).map(|(e, p)| (e.name.clone(), p)).collect(), given, candidates };
        let pairs = similarity::compare(&cohort, compare_at, MIN_SHARED, COMMON);
        (pairs, entries, candidates, pending)
    })
    .await
    .map_err(|e| Failure::internal(e.to_string()))?;
    drop(guard);
    let similarities: Vec<f64> = pairs.iter().map(|p| p.similarity).collect();
    let pending: Vec<String> = pending.iter().map(|(a, t, c, n)| format!("{} (#{n})", blinds.name(a, t, c))).collect();
    let compared = named(&pairs, &similarities, &entries, candidates, pending, &blinds, threshold);
    if memo_ok && compared.pending.is_empty() {
        let memo = Memo { version, pairs: pairs.into_iter().take(MEMO_PAIRS).collect(), similarities, entries, candidates };
        app.similarity.lock().unwrap().insert(task.clone(), Arc::new(memo));
    }
    Ok(compared)
}

/// The pairs at or above `threshold` named as this view may show them (blind aliases), ordered
/// most similar first, then by name.
fn named(pairs: &[Pair], similarities: &[f64], entries: &[Entry], candidates: usize, pending: Vec<String>, blinds: &Blinds, threshold: f64) -> Compared {
    let display = |entry: &Entry| match &entry.who {
        Some((assignment, task, candidate, number)) => format!("{} (#{number})", blinds.name(assignment, task, candidate)),
        None => entry.name.clone(),
    };
    let names: std::collections::HashMap<&str, String> = entries.iter().map(|e| (e.name.as_str(), display(e))).collect();
    let rename = |key: &str| names.get(key).cloned().unwrap_or_else(|| key.to_string());
    let mut shown: Vec<Pair> = pairs.iter().filter(|p| p.similarity >= threshold).map(|p| Pair { a: rename(&p.a), b: rename(&p.b), ..p.clone() }).collect();
    shown.sort_by(|x, y| y.similarity.total_cmp(&x.similarity).then(y.shared.cmp(&x.shared)).then(x.a.cmp(&y.a)).then(x.b.cmp(&y.b)));
    let total = similarities.iter().filter(|&&s| s >= threshold).count();
    let entries = entries.iter().map(|e| Entry { name: display(e), ..e.clone() }).collect();
    Compared { pairs: shown, total, entries, candidates, pending }
}

pub async fn similarity_api(
    State(app): State<Arc<App>>,
    _assessor: Assessor,
    TaskInPath(task): TaskInPath,
    Query(query): Query<SimilarityQuery>,
) -> AppResult<Json<serde_json::Value>> {
    let threshold = query.threshold.unwrap_or(DEFAULT_THRESHOLD).clamp(0.0, 1.0);
    let compared = cohort_pairs(&app, &task, threshold).await?;
    let Compared { pairs, total, entries, candidates, pending } = &compared;
    let candidates = *candidates;
    let id_of = |name: &str| entries.iter().find(|e| e.name == name).and_then(|e| e.submission);
    let cut: Vec<serde_json::Value> = compared
        .cut()
        .iter()
        .map(|(e, cut)| serde_json::json!({ "name": e.name, "submission": e.submission, "files_cut": cut.files_cut, "files_left_out": cut.files_left_out, "prints_dropped": cut.prints_dropped, "note": cut.note() }))
        .collect();
    let rows: Vec<serde_json::Value> = pairs
        .iter()
        .take(MAX_PAIRS)
        .map(|p| {
            serde_json::json!({ "a": p.a, "a_submission": id_of(&p.a), "b": p.b, "b_submission": id_of(&p.b), "similarity": p.similarity,
            "a_covered": p.a_covered, "b_covered": p.b_covered, "shared_fingerprints": p.shared, "fragments": p.fragments })
        })
        .collect();
    Ok(Json(serde_json::json!({ "task": task, "threshold": threshold, "submissions": candidates, "known_solutions": entries.len() - candidates,
        "method": format!("winnowed {}-grams of normalised Python tokens (window {}), starter subtracted; similarity = shared fingerprints / the smaller side's", similarity::K, similarity::W),
        "pairs": rows, "pairs_not_listed": total.saturating_sub(MAX_PAIRS), "sources_cut": cut, "not_fingerprinted_yet": pending })))
}

/// The text of one of an entry's files (git for a push, the folder for a known solution), as
/// far as it was fingerprinted (the spans' lines are within it).
fn file_text(app: &App, entry: &Entry, file: &str) -> Option<String> {
    let text = match &entry.source {
        Source::Git { assignment, commit } => {
            let found = app.repos.find_entry(assignment, commit, |path| path == file).ok()??;
            if found.kind != "blob" || !found.mode.starts_with("100") {
                return None;
            }
            let prefix = bounded::blob_prefix(&app.repos, assignment, &found.object, read_cap(file), 0).ok()?;
            bounded::utf8_prefix(&prefix.bytes)?.to_string()
        }
        Source::Folder(dir) => {
            let path = dir.join(file);
            // Known solutions are the author's files; still, never follow a link.
            if path.is_symlink() || std::fs::metadata(&path).map(|m| m.len() > similarity::MAX_NOTEBOOK as u64).unwrap_or(true) {
                return None;
            }
            std::fs::read_to_string(&path).ok()?
        }
    };
    Some(if file.to_ascii_lowercase().ends_with(".ipynb") {
        similarity::notebook_code(&text).unwrap_or_default()
    } else {
        similarity::head(&text, similarity::MAX_FILE_SOURCE).to_string()
    })
}

/// The lines of a span of `source` (at most [`MAX_FRAGMENT_LINES`]), for the side-by-side view.
fn span_lines(source: &str, span: &Span) -> String {
    let mut out = String::new();
    let wanted = (span.last_line + 1 - span.first_line.min(span.last_line)) as usize;
    for (i, line) in source.lines().enumerate().skip(span.first_line.saturating_sub(1) as usize).take(wanted.min(MAX_FRAGMENT_LINES)) {
        let _ = writeln!(out, "{:>4} {line}", i + 1);
    }
    if wanted > MAX_FRAGMENT_LINES {
        let _ = writeln!(out, "     … {} more lines", wanted - MAX_FRAGMENT_LINES);
    }
    out
}

/// The time the page may spend reading the fragments' files.
const FRAGMENTS_TIME: Duration = Duration::from_secs(2);
/// File texts kept while a page is made (read once however many fragments show them).
const MAX_TEXTS: usize = 32 << 20;

pub async fn similarity_page(
    State(app): State<Arc<App>>,
    _assessor: AssessorPage,
    TaskInPath(task): TaskInPath,
    Query(query): Query<SimilarityQuery>,
) -> AppResult<Response> {
    let threshold = query.threshold.unwrap_or(DEFAULT_THRESHOLD).clamp(0.0, 1.0);
    let compared = cohort_pairs(&app, &task, threshold).await?;
    let candidates = compared.candidates;
    let known = compared.entries.len() - candidates;
    let cut = compared.cut();
    let cut_list: Vec<(String, Option<i64>, String)> =
        cut.iter().take(MAX_PAIRS).map(|(entry, cut)| (entry.name.clone(), entry.submission, cut.note())).collect();
    let (pending, n_pairs) = (compared.pending.len(), compared.total);
    let app_ref = app.clone();
    let guard = CancelOnDrop::default();
    let cancelled = guard.flag();
    let deadline = Instant::now() + FRAGMENTS_TIME;
    let Compared { pairs, entries, .. } = compared;
    // Built piece by piece (each a template) so that the page's size budget can be checked as it grows.
    let pairs_html = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        let mut texts: std::collections::HashMap<(String, String), Option<String>> = std::collections::HashMap::new();
        let mut kept = 0usize;
        let submission_of = |name: &str| entries.iter().find(|e| e.name == name).and_then(|e| e.submission);
        for (n, p) in pairs.iter().take(MAX_PAIRS).enumerate() {
            let (ea, eb) = (entries.iter().find(|e| e.name == p.a), entries.iter().find(|e| e.name == p.b));
            let mut fragments = String::new();
            for (sa, sb) in p.fragments.iter().take(12) {
                if out.len() + fragments.len() > PAGE_HTML || Instant::now() >= deadline || cancelled.is_set() {
                    fragments.push_str(&html! { p.cut { "Fragments not shown: this page's size or time to read files is spent." } }.into_string());
                    break;
                }
                // Each file is read once per page, however many fragments show it.
                let mut text = |entry: Option<&Entry>, span: &Span| -> String {
                    let Some(entry) = entry else { return String::new() };
                    let key = (entry.name.clone(), span.file.clone());
                    if !texts.contains_key(&key) {
                        let read = file_text(&app_ref, entry, &span.file);
                        kept += read.as_ref().map_or(0, String::len);
                        if kept > MAX_TEXTS {
                            texts.clear();
                            kept = read.as_ref().map_or(0, String::len);
                        }
                        texts.insert(key.clone(), read);
                    }
                    texts[&key].as_deref().map(|s| span_lines(s, span)).unwrap_or_default()
                };
                let (ta, tb) = (text(ea, sa), text(eb, sb));
                let fragment = html! {
                    table.fragment {
                        tr {
                            th { (sa.file) " lines " (sa.first_line) "–" (sa.last_line) }
                            th { (sb.file) " lines " (sb.first_line) "–" (sb.last_line) }
                        }
                        tr { td { pre { (ta) } } td { pre { (tb) } } }
                    }
                };
                fragments.push_str(&fragment.into_string());
            }
            let section = html! {
                section.pair {
                    h2 { (format!("{:.0}%", p.similarity * 100.0)) " · " (named_link(&p.a, submission_of(&p.a))) " and " (named_link(&p.b, submission_of(&p.b))) }
                    p { (format!("{} shared fingerprints: {:.0}% of the first, {:.0}% of the second.", p.shared, p.a_covered * 100.0, p.b_covered * 100.0)) }
                    details open[n == 0] {
                        summary { "Matched fragments (" (p.fragments.len()) ")" }
                        (PreEscaped(fragments))
                    }
                }
            };
            out.push_str(&section.into_string());
        }
        out
    })
    .await
    .unwrap_or_default();
    drop(guard);
    let body = html! {
        h1 { (task) ": similar submissions" }
        p {
            (candidates) " candidates' latest pushes and " (known) " known solution(s), compared as MOSS and Dolos do: winnowed " (similarity::K)
            "-grams of normalised Python tokens (names and literals ignored, comments dropped), what the starter gives subtracted, code shared by most of the cohort ignored. "
            b { "A signal to read, never a verdict." }
            " Listed: pairs sharing at least " (format!("{:.0}", threshold * 100.0)) "% of the smaller side ("
            a href="?threshold=0.3" { "30%" } " · " a href="?threshold=0.5" { "50%" } " · " a href="?threshold=0.8" { "80%" } ")."
        }
        @if !cut_list.is_empty() {
            section #sources-cut {
                h2 { "Sources cut" }
                p { "These pushes were compared on part of their sources only:" }
                ul { @for (name, submission, note) in &cut_list { li { (named_link(name, *submission)) ": " (note) } } }
            }
        }
        @if pending > 0 {
            p.pending { (pending) " push(es) not fingerprinted yet (this view's " (COMPUTE_TIME.as_secs_f64()) " s were spent): reload to compare them." }
        }
        @if n_pairs == 0 { p { "No pair at or above the threshold." } }
        @if n_pairs > MAX_PAIRS { p { "The " (MAX_PAIRS) " most similar pairs are listed; " (n_pairs - MAX_PAIRS) " more are above the threshold." } }
        style { (PreEscaped(".fragment td{vertical-align:top;width:50%}.fragment pre{margin:0;font-size:12px;white-space:pre-wrap}")) }
        // Each pair's section is a template of its own (above), joined under the size budget.
        (PreEscaped(pairs_html))
    };
    Ok(page("Similarity", body).into_response())
}

/// A cohort member's name, linked to its submission when it is one (a known solution is not).
fn named_link(name: &str, submission: Option<i64>) -> Markup {
    html! {
        @match submission {
            Some(id) => a href={ "/submissions/" (id) } { (name) },
            None => (name),
        }
    }
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
async fn current_digests(app: &Arc<App>, task: &TaskId) -> Result<(String, String, String), Failure> {
    let needs = crate::job::needs_of(&app.tasks, task).await.map_err(|e| Failure::internal(format!("task {task}: {}", crate::errors::Chain(&e))))?;
    let (tasks, task) = (app.tasks.clone(), task.clone());
    let tag = tokio::task::spawn_blocking(move || {
        let spec = tasks.get(&task)?;
        crate::sandbox::image::Recipe::load(tasks.root(), &spec.image).ok().map(|r| r.tag())
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    Ok((needs.spec_digest, needs.data_digest, tag))
}

/// Graded submissions of `task` whose report was made with another task folder, data set or image.
pub async fn affected(app: &Arc<App>, task: &TaskId) -> Result<Vec<Affected>, Failure> {
    let (task_digest, data_digest, image) = current_digests(app, task).await?;
    let blinds = Blinds::load(app).await?;
    // One query: the database reads the digests out of the stored reports.
    let mut out = Vec::new();
    for g in stored(app.store.graded_provenance(task)).await? {
        let mut changed = Vec::new();
        if g.task_digest != task_digest {
            changed.push("task");
        }
        if !g.dataset_digest.is_empty() && g.dataset_digest != data_digest {
            changed.push("data");
        }
        if !image.is_empty() && g.image != image {
            changed.push("image");
        }
        if !changed.is_empty() {
            out.push(Affected { submission: g.submission, candidate: blinds.name(&g.assignment, task, &g.candidate), score: g.score, changed });
        }
    }
    Ok(out)
}

pub async fn affected_api(State(app): State<Arc<App>>, _assessor: Assessor, TaskInPath(task): TaskInPath) -> AppResult<Json<serde_json::Value>> {
    let rows = affected(&app, &task).await?;
    Ok(Json(serde_json::json!({ "task": task, "affected": rows })))
}

/// Queues every affected submission again; answers how many.
pub async fn regrade_affected(app: &Arc<App>, task: &TaskId) -> Result<usize, Failure> {
    let mut n = 0;
    for a in affected(app, task).await? {
        n += super::queries::queue_regrade(app, Some(a.submission), None).await?;
    }
    Ok(n)
}

pub async fn regrade_affected_api(State(app): State<Arc<App>>, _assessor: Assessor, TaskInPath(task): TaskInPath) -> AppResult<Json<serde_json::Value>> {
    Ok(Json(serde_json::json!({ "queued": regrade_affected(&app, &task).await? })))
}

pub async fn regrade_affected_form(
    State(app): State<Arc<App>>,
    TaskInPath(task): TaskInPath,
    _form: super::auth::SessionForm<super::forms::PlainForm>,
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
pub fn grades_html(grades: &[Grade]) -> Markup {
    if grades.len() < 2 {
        return html! {};
    }
    let cell = |old: Option<f64>, new: Option<f64>| -> Markup {
        match (old, new) {
            (Some(o), Some(n)) if (o - n).abs() >= 0.05 => html! { (format!("{o:.1} → ")) b { (format!("{n:.1}")) } (format!(" ({:+.1})", n - o)) },
            (_, Some(n)) => html! { (format!("{n:.1}")) },
            _ => html! {},
        }
    };
    html! {
        section #history {
            h3 { "Regrades" }
            table {
                tr {
                    th { "graded" } th { "status" } th.num { "score" } th.num { "accuracy" } th.num { "code quality" } th.num { "runtime" } th { "what changed" }
                }
                @for (i, g) in grades.iter().enumerate() {
                    @let previous = i.checked_sub(1).map(|p| &grades[p]);
                    tr {
                        td { (g.graded_at.as_deref().unwrap_or("")) }
                        td { (g.status.as_deref().unwrap_or("")) }
                        td.num { (cell(previous.and_then(|p| p.score), g.score)) }
                        td.num { (cell(previous.and_then(|p| p.accuracy), g.accuracy)) }
                        td.num { (cell(previous.and_then(|p| p.code_quality), g.code_quality)) }
                        td.num { (cell(previous.and_then(|p| p.runtime), g.runtime)) }
                        td { (what_changed(previous, g).join("; ")) }
                    }
                }
            }
        }
    }
}

/// What moved from the grade before `g` to `g`: digests, the image, outputs' scores.
fn what_changed(previous: Option<&Grade>, g: &Grade) -> Vec<String> {
    let Some(p) = previous else { return vec!["first grade".into()] };
    let mut changed = Vec::new();
    if p.task_digest != g.task_digest {
        changed.push(format!("task folder {} → {}", short(&p.task_digest), short(&g.task_digest)));
    }
    if p.dataset_digest != g.dataset_digest {
        changed.push(format!("data set {} → {}", short(&p.dataset_digest), short(&g.dataset_digest)));
    }
    if p.image != g.image {
        changed.push(format!("image {} → {}", p.image, g.image));
    }
    if changed.is_empty() {
        changed.push("nothing recorded (regraded as it was)".into());
    }
    for (file, new) in &g.outputs {
        if let Some((_, old)) = p.outputs.iter().find(|(f, _)| f == file).filter(|(_, old)| (old - new).abs() >= 0.05) {
            changed.push(format!("{file} {old:.1} → {new:.1}"));
        }
    }
    changed
}

fn short(digest: &str) -> &str {
    if digest.is_empty() {
        "(unknown)"
    } else {
        &digest[..digest.len().min(12)]
    }
}

pub async fn grades_api(State(app): State<Arc<App>>, UrlPath(id): UrlPath<i64>, _assessor: Assessor) -> AppResult<Json<serde_json::Value>> {
    let rows = grades(&app, id).await?;
    Ok(Json(serde_json::json!({ "submission": id, "grades": rows })))
}
