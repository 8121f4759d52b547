//! Assessors' single sign-on (OpenID Connect, see [`crate::oidc`]): `GET /login/oidc` sends the
//! browser to the provider with a state that is also put in a cookie of its own; `GET
//! /login/oidc/callback` takes the state back from both (they must agree: a callback from
//! another browser, or a forged one, is refused), trades the code for a checked ID token, and
//! starts the same session a password login starts, for an allowed e-mail address.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use tracing::{info, warn};

use super::{page, App};

/// The cookie that binds a sign-in to the browser that started it.
const STATE_COOKIE: &str = "takehome_oidc";

fn redirect_uri(app: &App) -> String {
    format!("{}/login/oidc/callback", app.config.public_url.trim_end_matches('/'))
}

fn state_cookie(app: &App, value: &str, max_age: u64) -> String {
    let secure = if app.config.is_https() { "; Secure" } else { "" };
    // Lax: the provider's redirect back is a top-level GET from another site.
    format!("{STATE_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/login/oidc; Max-Age={max_age}{secure}")
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, page("Sign-in", html! { h1 { "Sign-in not completed" } p { (message) } p { a href="/login" { "Back to the sign-in page" } } })).into_response()
}

/// `GET /login/oidc`: to the provider.
pub async fn begin(State(app): State<Arc<App>>, axum::Extension(client): axum::Extension<super::ClientAddr>) -> Response {
    let Some(provider) = app.oidc.clone() else { return problem(StatusCode::NOT_FOUND, "Single sign-on is not configured on this server.") };
    match provider.begin(&redirect_uri(&app), client.0).await {
        Ok((state, url)) => ([(header::SET_COOKIE, state_cookie(&app, &state, crate::oidc::PENDING_LIFETIME.as_secs()))], Redirect::to(&url)).into_response(),
        Err(e @ crate::oidc::OidcError::Busy) => problem(StatusCode::TOO_MANY_REQUESTS, &crate::errors::chain(&e)),
        Err(e) => {
            warn!(error = %crate::errors::Chain(&e), "single sign-on: cannot start");
            problem(StatusCode::BAD_GATEWAY, &format!("The identity provider cannot be reached: {}.", crate::errors::chain(&e)))
        }
    }
}

#[derive(Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `GET /login/oidc/callback`: back from the provider.
pub async fn callback(State(app): State<Arc<App>>, headers: HeaderMap, Query(back): Query<Callback>) -> Response {
    let Some(provider) = app.oidc.clone() else { return problem(StatusCode::NOT_FOUND, "Single sign-on is not configured on this server.") };
    let clear = state_cookie(&app, "", 0);
    let refuse = |status: StatusCode, message: &str| {
        let mut response = problem(status, message);
        response.headers_mut().insert(header::SET_COOKIE, clear.parse().expect("a plain cookie"));
        response
    };
    if let Some(error) = back.error.as_deref() {
        let said: String = back.error_description.as_deref().unwrap_or("").chars().take(200).collect();
        return refuse(StatusCode::FORBIDDEN, &format!("The identity provider said {error}: {said}"));
    }
    let (Some(code), Some(state)) = (back.code.as_deref(), back.state.as_deref()) else {
        return refuse(StatusCode::BAD_REQUEST, "The provider's answer has no code or no state.");
    };
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').find_map(|part| part.trim().strip_prefix(&format!("{STATE_COOKIE}="))).map(str::to_string));
    if cookie.as_deref().map(|c| crate::secret::constant_time_eq(c.as_bytes(), state.as_bytes())) != Some(true) {
        return refuse(StatusCode::BAD_REQUEST, "This sign-in was started in another browser, or not here: start again from this browser.");
    }
    let identity = match provider.finish(state, code, &redirect_uri(&app), super::now()).await {
        Ok(identity) => identity,
        Err(e) => {
            warn!(error = %crate::errors::Chain(&e), "single sign-on: refused");
            let status = if matches!(e, crate::oidc::OidcError::Request { .. } | crate::oidc::OidcError::Status { .. }) {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::BAD_REQUEST
            };
            return refuse(status, &crate::errors::chain(&e));
        }
    };
    if !provider.settings.allows(&identity.email) {
        info!(email = %identity.email, "single sign-on: an account that is not allowed here");
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not sign in here: ask whoever runs this server to add it (or its domain) to oidc.allowed_emails or allowed_domains.",
                identity.email
            ),
        );
    }
    match super::auth::start_session(&app, &identity.email).await {
        Ok(session) => {
            info!(assessor = %identity.email, "signed in with single sign-on");
            // A page of our own moves on to the dashboard: the session cookie is SameSite=Strict,
            // and the browser would not send it on a redirect that began at the provider.
            let mut response = page(
                "Signed in",
                html! {
                    meta http-equiv="refresh" content="0; url=/";
                    p { "Signed in as " (identity.email) ". " a href="/" { "On to the dashboard" } }
                },
            )
            .into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, session.parse().expect("a plain cookie"));
            headers.append(header::SET_COOKIE, clear.parse().expect("a plain cookie"));
            response
        }
        Err(failure) => failure.into_response(),
    }
}
