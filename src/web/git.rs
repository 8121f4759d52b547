//! git's smart HTTP protocol for candidates: `GET info/refs` and `POST git-upload-pack` /
//! `git-receive-pack`. The [`GitClient`] extractor refuses what a browser sent (`Origin`,
//! `Sec-Fetch-*`: no web page can start a clock), then authenticates the candidate from the head
//! before any body is read; bodies stream into git through [`intake`]; upload-pack's output
//! streams back.
//!
//! The clock of an on-clone assignment starts at the first authenticated request of *any* of
//! these routes, before a byte of the repository (or an object id) is answered: a fetch that skips
//! the advertisement, or a push that never cloned, starts it just the same.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use tracing::info;

use super::auth::{GitClient, Worker};
use super::{clock, now, stored, App, Failure};
use crate::intake::{self, BodyReader, PushOutcome, PushRules, Service};
use crate::store::{Assignment, ClockState};

#[derive(Deserialize)]
pub struct ServiceQuery {
    service: Option<String>,
}

/// Starts the assignment's clock now if it has not started (any authenticated read does).
async fn start_clock(app: &Arc<App>, assignment: Assignment) -> Result<Assignment, Failure> {
    if assignment.started_at.is_some() {
        return Ok(assignment);
    }
    stored(app.store.start_clock(&assignment.id, now())).await
}

/// Git processes one assignment may run at once.
pub const GIT_PER_ASSIGNMENT: usize = 2;

/// What a git route answers: git's own answer, or an error answer (git shows its text). Failures
/// on our side are [`Failure::internal`]s (logged; the client sees "internal error").
type GitResult = Result<Response, Response>;

fn internal(error: impl std::error::Error + 'static) -> Response {
    Failure::internal(crate::errors::chain(&error)).into_response()
}

/// A slot for one git process: one of the assignment's own (or a 429 when it has none free),
/// then one of the daemon's (waiting for it).
async fn git_slot(app: &Arc<App>, assignment: &str) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), Response> {
    let own = {
        let mut map = app.git_per_assignment.lock().unwrap();
        map.retain(|_, s| s.available_permits() < GIT_PER_ASSIGNMENT);
        map.entry(assignment.to_string()).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(GIT_PER_ASSIGNMENT))).clone()
    };
    let Ok(own) = own.try_acquire_owned() else {
        return Err((StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "5")], "too many git requests at once for this repository\n").into_response());
    };
    let shared = app.git_slots.clone().acquire_owned().await.map_err(|_| Failure::internal("git slots closed".into()).into_response())?;
    Ok((own, shared))
}

fn closed_message(deadline: i64) -> String {
    format!("takehome: the time box closed at {} (server time); pushes are no longer accepted", crate::report::rfc3339(deadline))
}

pub async fn info_refs(State(app): State<Arc<App>>, GitClient(assignment): GitClient, Query(query): Query<ServiceQuery>) -> GitResult {
    let Some(service) = query.service.as_deref().and_then(Service::parse) else {
        return Err((StatusCode::FORBIDDEN, "only git's smart protocol is served\n").into_response());
    };
    let assignment = start_clock(&app, assignment).await.map_err(IntoResponse::into_response)?;
    let content_type = format!("application/x-{}-advertisement", service.name());
    if service == Service::ReceivePack {
        if let (ClockState::Closed, Some(deadline)) = (assignment.clock(now()), assignment.deadline()) {
            app.metrics.lock().unwrap().pushes_refused += 1;
            return Ok(([(header::CONTENT_TYPE, content_type)], intake::advertisement_error(service, &closed_message(deadline))).into_response());
        }
    }
    let _slot = git_slot(&app, &assignment.id).await?;
    let body = app.repos.advertise(&assignment.id, service, intake::Reader::Candidate).await.map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache".into())], body).into_response())
}

fn body_reader(body: Body, headers: &HeaderMap, cap: u64) -> BodyReader {
    let gzip = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let stream = body.into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string()));
    BodyReader::new(Box::pin(stream), gzip, cap)
}

pub async fn rpc(
    State(app): State<Arc<App>>,
    Path((_repo, service)): Path<(String, String)>,
    GitClient(assignment): GitClient,
    headers: HeaderMap,
    body: Body,
) -> GitResult {
    let Some(service) = Service::parse(&service) else { return Err(Failure::not_found("such service").into_response()) };
    let assignment = start_clock(&app, assignment).await.map_err(IntoResponse::into_response)?;
    let content_type = [(header::CONTENT_TYPE, format!("application/x-{}-result", service.name()))];
    let slot = git_slot(&app, &assignment.id).await?;
    if service == Service::UploadPack {
        let reader = body_reader(body, &headers, intake::MAX_FETCH_REQUEST);
        let output = app.repos.upload_pack(&assignment.id, intake::Reader::Candidate, reader, slot).await.map_err(internal)?;
        return Ok((content_type, Body::from_stream(output.into_stream())).into_response());
    }

    // A push: intake decides (deadline, refs, quota, size, our hook on the tree).
    let now = now();
    let rules = PushRules { now, deadline: assignment.deadline(), max_push_bytes: app.config.max_push_bytes, quota_bytes: app.config.repo_quota_bytes };
    let reader = body_reader(body, &headers, app.config.max_push_bytes.saturating_add(1 << 20));
    let outcome = app.repos.receive_push(&assignment.id, &rules, reader).await;
    drop(slot);
    let (reply, sideband, message) = match outcome.map_err(internal)? {
        PushOutcome::Nothing => return Ok((content_type, Vec::new()).into_response()),
        PushOutcome::Refused { reason, reply } => {
            app.metrics.lock().unwrap().pushes_refused += 1;
            info!(assignment = %assignment.id, reason = %reason, "push refused");
            return Ok((content_type, reply).into_response());
        }
        PushOutcome::Unchanged { reply, sideband } => {
            app.metrics.lock().unwrap().pushes_refused += 1;
            (reply, sideband, "takehome: main did not change: nothing new to grade".to_string())
        }
        PushOutcome::Accepted { commit, reply, sideband } => {
            // What the job needs, with the digests of the task and data set as they are now: the
            // worker that grades it must have the same copies.
            let needs = crate::job::needs_of(&app.tasks, &assignment.task)
                .await
                .map_err(|e| Failure::internal(format!("task {}: {}", assignment.task, crate::errors::Chain(&e))).into_response())?;
            // main has moved: the submission must be recorded before we answer, so a store that
            // is briefly away (a database restarting) is waited for rather than losing the push.
            let (submission, number, position, graded_from) =
                record_push(&app, &assignment.id, &commit, &needs, now).await.map_err(IntoResponse::into_response)?;
            let (repos, id, kept) = (app.repos.clone(), assignment.id.clone(), commit.clone());
            if let Err(e) = tokio::task::spawn_blocking(move || repos.keep(&id, number, &kept))
                .await
                .unwrap_or_else(|e| Err(intake::IntakeError::Git { action: "keep".into(), message: e.to_string() }))
            {
                tracing::error!(error = %crate::errors::Chain(&e), "cannot keep the submission's commit under a ref of ours");
            }
            app.metrics.lock().unwrap().pushes_accepted += 1;
            app.work.notify_one();
            super::signals::fingerprint_on_arrival(&app, submission, &assignment.id, &assignment.task, &commit);
            info!(assignment = %assignment.id, submission, number, commit = %commit, "push accepted");
            let turn = if graded_from > now {
                format!(
                    "graded from {} (server time): at most {} pushes are graded an hour; this one is kept and waits its turn",
                    crate::report::rfc3339(graded_from),
                    app.config.graded_pushes_per_hour
                )
            } else {
                format!("queue position {position}")
            };
            let mut message = format!(
                "takehome: submission #{number} accepted (commit {})\ntakehome: {turn}\ntakehome: {} (deadline {})\ntakehome: status: {}/status/{}",
                &commit[..commit.len().min(12)],
                clock(assignment.seconds_left(now)),
                assignment.deadline().map(crate::report::rfc3339).unwrap_or_default(),
                app.config.public_url,
                assignment.id
            );
            for warning in requirement_warnings(&app, &assignment.id, &assignment.task, &commit).await {
                message.push_str(&format!("\ntakehome: warning: {warning}"));
            }
            (reply, sideband, message)
        }
    };
    let mut body = Vec::new();
    if sideband {
        body.extend(intake::sideband_message(&message));
    }
    body.extend(reply);
    Ok((content_type, body).into_response())
}

/// The repository id in `{repo}` (`<assignment>.git`), checked as a name.
fn repo_id(repo: &str) -> Option<&str> {
    repo.strip_suffix(".git").filter(|id| crate::task::is_name(id))
}

/// A worker's fetch advertisement: upload-pack only (a worker never pushes).
pub async fn worker_info_refs(State(app): State<Arc<App>>, Path(repo): Path<String>, _worker: Worker, Query(query): Query<ServiceQuery>) -> GitResult {
    if query.service.as_deref().and_then(Service::parse) != Some(Service::UploadPack) {
        return Err((StatusCode::FORBIDDEN, "a worker may only fetch\n").into_response());
    }
    let Some(id) = repo_id(&repo).filter(|id| app.repos.path(id).is_dir()) else { return Err(Failure::not_found("such repository").into_response()) };
    let _slot = app.git_slots.clone().acquire_owned().await;
    let body = app.repos.advertise(id, Service::UploadPack, intake::Reader::Worker).await.map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/x-git-upload-pack-advertisement"), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

/// A worker's fetch: any commit by its id (see [`intake::Reader::Worker`]).
pub async fn worker_rpc(
    State(app): State<Arc<App>>,
    Path((repo, service)): Path<(String, String)>,
    _worker: Worker,
    headers: HeaderMap,
    body: Body,
) -> GitResult {
    if Service::parse(&service) != Some(Service::UploadPack) {
        return Err((StatusCode::FORBIDDEN, "a worker may only fetch\n").into_response());
    }
    let Some(id) = repo_id(&repo).filter(|id| app.repos.path(id).is_dir()) else { return Err(Failure::not_found("such repository").into_response()) };
    let slot = app.git_slots.clone().acquire_owned().await.map_err(|_| Failure::internal("git slots closed".to_string()).into_response())?;
    let reader = body_reader(body, &headers, intake::MAX_FETCH_REQUEST);
    let output = app.repos.upload_pack(id, intake::Reader::Worker, reader, slot).await.map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/x-git-upload-pack-result")], Body::from_stream(output.into_stream())).into_response())
}

/// Records an accepted push, trying again for up to 60 s while the store cannot be reached.
async fn record_push(app: &Arc<App>, assignment: &str, commit: &str, needs: &crate::store::JobNeeds, now: i64) -> Result<(i64, i64, i64, i64), Failure> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match app.store.add_submission(assignment, commit, needs, now, app.config.graded_pushes_per_hour).await {
            Ok(recorded) => return Ok(recorded),
            Err(e) if std::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %crate::errors::Chain(&e), assignment, "cannot record an accepted push yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(4));
            }
            Err(e) => return Err(Failure::internal(format!("cannot record the accepted push of {assignment} ({commit}): {}", crate::errors::Chain(&e)))),
        }
    }
}

/// What a pushed commit's requirement files ask of the task's image that it lacks (empty when
/// the task or its image's list cannot be read: a warning is a courtesy, never a refusal).
/// Worked out once per commit (the cache), under one of the git slots.
pub async fn requirement_warnings(app: &Arc<App>, assignment: &str, task: &crate::task::TaskId, commit: &str) -> Vec<String> {
    let key = format!("{assignment}/{commit}");
    if let Some(known) = app.requirement_warnings.lock().unwrap().get(&key) {
        return known.as_ref().clone();
    }
    let Ok(_slot) = app.git_slots.clone().acquire_owned().await else { return Vec::new() };
    let (repos, tasks, assignment, task, commit) = (app.repos.clone(), app.tasks.clone(), assignment.to_string(), task.clone(), commit.to_string());
    let said = tokio::task::spawn_blocking(move || {
        let spec = tasks.get(&task)?;
        // An extended image holds all of the task's and more: a package only it has is no miss.
        let image = spec.extended_images.last().unwrap_or(&spec.image);
        let installed = crate::environment::Installed::of_recipe(&spec.root, image).ok()?;
        let r = spec.r_image().and_then(|image| crate::environment::Installed::of_recipe(&spec.root, image).ok());
        Some(crate::web::bounded::requirement_warnings(&repos, &assignment, &commit, &installed, r.as_ref()))
    })
    .await
    .ok()
    .flatten();
    let Some(said) = said else { return Vec::new() };
    let mut cache = app.requirement_warnings.lock().unwrap();
    if cache.len() >= REQUIREMENT_CACHE {
        cache.clear();
    }
    cache.insert(key, Arc::new(said.clone()));
    said
}

/// Commits whose requirement warnings are kept in memory (a few KiB each at most).
const REQUIREMENT_CACHE: usize = 4096;
