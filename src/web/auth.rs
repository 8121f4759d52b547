//! Who is asking: extractors that authenticate a request from its head alone, before any body is
//! read, and the guards around passwords and browser sessions.
//!
//! - [`Candidate`]: the assignment in the path, with its token as the Basic password (a token is
//!   32 random bytes, compared by hash in constant time; the same answer for a wrong token and an
//!   unknown assignment).
//! - [`Assessor`] (the JSON API): a session cookie, or Basic credentials.
//! - [`AssessorPage`] (pages): the session cookie only; without it, a redirect to the login.
//! - [`SessionForm`] (every form POST): the session cookie only, then the form (at most
//!   [`MAX_FORM_BODY`](super::MAX_FORM_BODY), read within [`FORM_TIMEOUT`]), then its CSRF token.
//!
//! Passwords are checked on the blocking pool behind a semaphore (one hash per two cores), with
//! the same work for unknown users as for known ones (a decoy hash) and a limit of
//! [`MAX_FAILURES`] wrong passwords per client address per minute. A Basic login that succeeded is
//! remembered for [`VERIFIED_FOR`] under an HMAC of the credentials (keyed by a secret of this
//! process), so that API clients do not pay a full hash per request. Sessions live in the store,
//! expire after [`SESSION_LIFETIME`], survive a restart, and end at logout (or everywhere at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::{stored, App, ClientAddr, Failure};
use crate::secret::PasswordHash;

pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const FORM_TIMEOUT: Duration = Duration::from_secs(10);
pub const SESSION_COOKIE: &str = "takehome_session";

/// The daemon's guards around passwords.
pub struct Auth {
    hashing: Arc<Semaphore>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    verified: Mutex<HashMap<String, (String, Instant)>>,
    cache_key: [u8; 32],
    decoy: PasswordHash,
}

/// The answer to a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    User(String),
    Wrong,
    /// Too many wrong passwords from this client lately: try again after this long.
    Limited(Duration),
}

impl Auth {
    /// `assessors`: the configured logins; the decoy costs what the most expensive of them costs.
    pub fn new(assessors: &[crate::config::Assessor]) -> Auth {
        let costliest = assessors.iter().map(|a| &a.password_hash).max_by_key(|h| h.rounds());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Auth {
            hashing: Arc::new(Semaphore::new((cores / 2).max(1))),
            failures: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            cache_key: crate::secret::random_bytes::<32>(),
            decoy: PasswordHash::decoy(costliest),
        }
    }

    fn limited(&self, client: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap();
        let now = Instant::now();
        failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        match failures.get(&client) {
            Some((since, count)) if *count >= MAX_FAILURES => Some(FAILURE_WINDOW.saturating_sub(now.duration_since(*since))),
            _ => None,
        }
    }

    fn failed(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap();
        let entry = failures.entry(client).or_insert((Instant::now(), 0));
        entry.1 += 1;
    }

    /// Checks an assessor's password: rate limit, then the hash (or the decoy) on the blocking
    /// pool behind the semaphore.
    pub async fn check(&self, app: &App, client: IpAddr, user: &str, password: &str) -> PasswordCheck {
        let cache_key = crate::secret::hmac_hex(&self.cache_key, format!("{user}\0{password}").as_bytes());
        if let Some((known, at)) = self.verified.lock().unwrap().get(&cache_key) {
            if at.elapsed() < VERIFIED_FOR {
                return PasswordCheck::User(known.clone());
            }
        }
        if let Some(wait) = self.limited(client) {
            app.metrics.lock().unwrap().logins_limited += 1;
            return PasswordCheck::Limited(wait);
        }
        let assessor = app.config.assessors.iter().find(|a| a.user == user);
        let hash = assessor.map(|a| a.password_hash.clone()).unwrap_or_else(|| self.decoy.clone());
        let Ok(_slot) = self.hashing.clone().acquire_owned().await else { return PasswordCheck::Wrong };
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || hash.verify(&password)).await.unwrap_or(false);
        match assessor {
            Some(a) if matches => {
                let mut verified = self.verified.lock().unwrap();
                verified.retain(|_, (_, at)| at.elapsed() < VERIFIED_FOR);
                verified.insert(cache_key, (a.user.clone(), Instant::now()));
                PasswordCheck::User(a.user.clone())
            }
            _ => {
                self.failed(client);
                PasswordCheck::Wrong
            }
        }
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.trim().bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= value(b)? << (18 - 6 * i);
        }
        let n = chunk.len();
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

/// HTTP Basic credentials, if any.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    if encoded.len() > 4096 {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

pub fn ask_for_credentials(realm: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))], "credentials required\n").into_response()
}

fn client_of(parts: &Parts) -> IpAddr {
    parts.extensions.get::<ClientAddr>().map(|c| c.0).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn too_many(wait: Duration) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, wait.as_secs().max(1).to_string()), (header::CONTENT_TYPE, "application/json".to_string())],
        serde_json::json!({ "error": "too many wrong passwords from this address; try again later" }).to_string(),
    )
        .into_response()
}

/// The session token in the request's cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    cookie.split(';').find_map(|part| part.trim().strip_prefix(&format!("{SESSION_COOKIE}="))).filter(|t| !t.is_empty() && t.len() <= 128).map(str::to_string)
}

/// The CSRF token of a session: an HMAC of a fixed label under the session's own secret token,
/// so that only the holder of the cookie (or a page we rendered for them) knows it.
pub fn csrf_token(session: &str) -> String {
    crate::secret::hmac_hex(session.as_bytes(), b"takehome csrf v1")
}

async fn session_user(app: &Arc<App>, token: &str) -> Result<Option<String>, Failure> {
    let hash = crate::secret::token_hash(token);
    stored(app.store.session_user(&hash, super::now())).await
}

/// A new session for `user`: stored by hash, answered as a cookie.
pub async fn start_session(app: &Arc<App>, user: &str) -> Result<String, Failure> {
    let token = crate::secret::new_token();
    let (hash, user, now) = (crate::secret::token_hash(&token), user.to_string(), super::now());
    let expires = now + SESSION_LIFETIME.as_secs() as i64;
    stored(app.store.create_session(&hash, &user, now, expires)).await?;
    let secure = if app.config.is_https() { "; Secure" } else { "" };
    Ok(format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", SESSION_LIFETIME.as_secs()))
}

/// The cookie that removes the session cookie from the browser.
pub fn end_session_cookie(app: &App) -> String {
    let secure = if app.config.is_https() { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

/// A candidate, by the assignment in the path (`{assignment}`, or `{repo}` as `<id>.git`) and its
/// token as the Basic password.
pub struct Candidate(pub crate::store::Assignment);

impl FromRequestParts<Arc<App>> for Candidate {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, app).await.map_err(IntoResponse::into_response)?;
        let id = params
            .iter()
            .find_map(|(key, value)| match key {
                "assignment" => Some(value),
                "repo" => value.strip_suffix(".git"),
                _ => None,
            })
            .filter(|id| crate::task::is_name(id))
            .map(str::to_string);
        let Some(id) = id else { return Err(Failure::not_found("such assignment").into_response()) };
        let Some((_, token)) = basic(&parts.headers) else { return Err(ask_for_credentials("takehome")) };
        let found = stored(app.store.assignment(&id)).await.map_err(IntoResponse::into_response)?;
        match found {
            // The same answer for a wrong token and an unknown assignment: nothing to probe.
            Some(a) if crate::secret::token_matches(&token, &a.token_hash) => Ok(Candidate(a)),
            _ => Err(ask_for_credentials("takehome")),
        }
    }
}

/// A candidate's git client: a [`Candidate`] whose request did not come from a browser. A web page
/// of anyone's can make the candidate's browser send its cached Basic credentials with a
/// cross-site `GET /git/<a>.git/info/refs`, which would start an on-clone clock; git never sends
/// `Origin` or `Sec-Fetch-*`, browsers always send one of them, so such a request is refused
/// before anything is looked up.
pub struct GitClient(pub crate::store::Assignment);

/// True when the head carries what only browsers send.
pub fn from_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.keys().any(|name| name.as_str().starts_with("sec-fetch-"))
}

impl FromRequestParts<Arc<App>> for GitClient {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        if from_a_browser(&parts.headers) {
            return Err((StatusCode::FORBIDDEN, "git routes answer git clients only (a browser sent this request)\n").into_response());
        }
        let Candidate(assignment) = Candidate::from_request_parts(parts, app).await?;
        Ok(GitClient(assignment))
    }
}

/// A grading worker on another host: `Authorization: Bearer <worker token>`, checked against the
/// hash in the config (`worker_token_sha256`). Without one configured, no request is a worker.
/// A worker may fetch any candidate's commits and nothing else (no push, no page, no API).
pub struct Worker;

impl FromRequestParts<Arc<App>> for Worker {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(expected) = app.config.worker_token_sha256.as_deref() else { return Err(Failure::not_found("workers on this server").into_response()) };
        let given = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !given.is_empty() && given.len() <= 256 && crate::secret::token_matches(given, expected) {
            Ok(Worker)
        } else {
            Err((StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a worker token is required\n").into_response())
        }
    }
}

/// An assessor on the JSON API: a session cookie, or Basic credentials.
pub struct Assessor(pub String);

impl FromRequestParts<Arc<App>> for Assessor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        if let Some(token) = session_token(&parts.headers) {
            if let Some(user) = session_user(app, &token).await.map_err(IntoResponse::into_response)? {
                return Ok(Assessor(user));
            }
        }
        let unauthorized =
            || Failure { status: StatusCode::UNAUTHORIZED, message: "log in, or send assessor credentials with Basic auth".into() }.into_response();
        let Some((user, password)) = basic(&parts.headers) else { return Err(unauthorized()) };
        match app.auth.check(app, client_of(parts), &user, &password).await {
            PasswordCheck::User(user) => Ok(Assessor(user)),
            PasswordCheck::Wrong => Err(unauthorized()),
            PasswordCheck::Limited(wait) => Err(too_many(wait)),
        }
    }
}

/// An assessor reading a page: the session cookie only (a browser's cached Basic credentials are
/// not a session). `csrf` goes into the page's forms.
pub struct AssessorPage {
    pub user: String,
    pub csrf: String,
}

impl FromRequestParts<Arc<App>> for AssessorPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let token = session_token(&parts.headers).ok_or_else(|| Redirect::to("/login").into_response())?;
        match session_user(app, &token).await.map_err(IntoResponse::into_response)? {
            Some(user) => Ok(AssessorPage { user, csrf: csrf_token(&token) }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A form with the CSRF token of the session that rendered it.
pub trait CsrfForm {
    fn csrf(&self) -> &str;
}

/// A form POST by a logged-in assessor: session cookie first, then the body (capped, timed),
/// then the CSRF token.
pub struct SessionForm<T> {
    pub user: String,
    pub session: String,
    pub form: T,
}

impl<T: DeserializeOwned + CsrfForm + Send> FromRequest<Arc<App>> for SessionForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let forbidden = |message: &str| {
            (StatusCode::FORBIDDEN, super::page("Refused", maud::html! { p { (message) } p { a href="/" { "Back to the dashboard" } } })).into_response()
        };
        let (parts, body) = request.into_parts();
        let token = session_token(&parts.headers).ok_or_else(|| Redirect::to("/login").into_response())?;
        let Some(user) = session_user(app, &token).await.map_err(IntoResponse::into_response)? else {
            return Err(Redirect::to("/login").into_response());
        };
        let request = Request::from_parts(parts, body);
        let form = match tokio::time::timeout(FORM_TIMEOUT, axum::extract::Form::<T>::from_request(request, app)).await {
            Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "the form took too long to arrive\n").into_response()),
            Ok(Err(rejection)) => return Err(rejection.into_response()),
            Ok(Ok(axum::extract::Form(form))) => form,
        };
        if !crate::secret::same(form.csrf(), &csrf_token(&token)) {
            return Err(forbidden("This form is stale or came from another site: reload the page and try again."));
        }
        Ok(SessionForm { user, session: token, form })
    }
}

/// The origin that the daemon's own pages have: from `public_url`, or from the Host header.
fn allowed_origins(app: &App, headers: &HeaderMap) -> Vec<String> {
    let mut origins = Vec::new();
    let public = app.config.public_url.trim_end_matches('/');
    if let Some((scheme, rest)) = public.split_once("://") {
        let host = rest.split('/').next().unwrap_or(rest);
        origins.push(format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase()));
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        let scheme = if app.config.is_https() { "https" } else { "http" };
        origins.push(format!("{scheme}://{}", host.to_ascii_lowercase()));
    }
    origins
}

/// Refuses a state-changing request that a browser sent from another site: `Sec-Fetch-Site` must
/// be `same-origin` or `none` when present, and `Origin` must be ours when present. (Non-browser
/// clients send neither; they authenticate with Basic credentials, which a foreign page cannot
/// make a browser attach without also sending these headers.)
pub async fn same_origin(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let refuse = |why: &str| Failure { status: StatusCode::FORBIDDEN, message: format!("cross-site request refused ({why})") }.into_response();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return refuse(&format!("Sec-Fetch-Site: {site}"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        if !allowed_origins(&app, headers).contains(&origin) {
            return refuse(&format!("Origin: {origin}"));
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(super::base64_decode("YQ==").unwrap(), b"a");
    }
}
