//! Single sign-on against a real OpenID provider (oidc-provider-mock from PyPI, with PKCE and the
//! nonce enforced, `tests/servers/oidc.py`): the whole authorization code flow, the session it
//! starts and logout; an account of a domain that is not allowed; a forged state, a state from
//! another browser and a replayed callback; a wrong client secret.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};

use super::common::{repo_root, test_python};
use super::test_app::{csrf_of, TestApp};

const PASSWORD: &str = "correct horse battery staple";

struct Provider {
    child: Child,
    port: u16,
    client_id: String,
    client_secret: String,
}

impl Provider {
    fn start(redirect_uri: &str) -> Provider {
        let port = super::cluster_support::free_port();
        let mut child = Command::new(test_python())
            .arg(repo_root().join("tests/servers/oidc.py"))
            .args(["--port", &port.to_string(), "--redirect-uri", redirect_uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        let client: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("the provider did not start: {e}: {line:?}"));
        Provider { child, port, client_id: client["client_id"].as_str().unwrap().into(), client_secret: client["client_secret"].as_str().unwrap().into() }
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange with the provider (what a browser does there): status, head, body.
fn browse(method: &str, url: &str, body: &str) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let content = if body.is_empty() { String::new() } else { "Content-Type: application/x-www-form-urlencoded\r\n".into() };
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n{content}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn location(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
        .unwrap_or_else(|| panic!("no Location in {head}"))
        .trim()
        .to_string()
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_string()))
        .filter(|v| !v.is_empty())
}

fn query_value(url: &str, name: &str) -> String {
    url.split_once('?').unwrap().1.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in {url}")).to_string()
}

/// Our `/login/oidc`, then the provider's form as `subject`: the callback's path and the state cookie.
async fn sign_in_at_the_provider(app: &TestApp, subject: &str) -> (String, String) {
    let (status, headers, _) = app.request("GET", "/login/oidc", &[], String::new()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let state = cookie_value(&headers, "takehome_oidc").expect("the state cookie");
    let authorize = headers[header::LOCATION].to_str().unwrap().to_string();
    for (name, wanted) in [("code_challenge_method", "S256"), ("response_type", "code"), ("state", state.as_str())] {
        assert_eq!(query_value(&authorize, name), wanted, "{authorize}");
    }
    let subject = subject.to_string();
    let callback = tokio::task::spawn_blocking(move || {
        let (status, _, form) = browse("GET", &authorize, "");
        assert_eq!(status, 200, "{form}");
        let (status, head, body) = browse("POST", &authorize, &format!("sub={subject}"));
        assert_eq!(status, 302, "{head}\n{body}");
        location(&head)
    })
    .await
    .unwrap();
    let path = callback.strip_prefix("http://127.0.0.1:9").expect("back to our redirect URI").to_string();
    (path, state)
}

async fn app_with(provider: &Provider, secret: &str) -> (TestApp, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(
        &config,
        format!(
            "assessors:\n  - user: ada\n    password_hash: \"{hash}\"\noidc:\n  issuer: {}\n  client_id: {}\n  client_secret: {secret}\n  allowed_domains: [example.com]\n",
            provider.issuer(),
            provider.client_id
        ),
    )
    .unwrap();
    (TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap())]).await, scratch)
}

#[tokio::test(flavor = "multi_thread")]
async fn assessors_sign_in_with_a_real_openid_provider_and_others_are_refused() {
    let provider = tokio::task::spawn_blocking(|| Provider::start("http://127.0.0.1:9/login/oidc/callback")).await.unwrap();
    let (app, _scratch) = app_with(&provider, &provider.client_secret.clone()).await;
    let (_, login) = app.get("/login", &[]).await;
    assert!(login.contains("href=\"/login/oidc\"") && login.contains("name=\"password\""), "SSO beside the password form: {login}");

    // ---- ada@example.com: the whole flow, a session, the dashboard, logout
    let (callback, state) = sign_in_at_the_provider(&app, "ada").await;
    let cookie = format!("takehome_oidc={state}");
    let (status, headers, page) = app.request("GET", &callback, &[(header::COOKIE, cookie.clone())], String::new()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Signed in as ada@example.com"), "{page}");
    let session = cookie_value(&headers, takehome::web::auth::SESSION_COOKIE).expect("a session cookie");
    let session_cookie = format!("{}={session}", takehome::web::auth::SESSION_COOKIE);
    let dashboard = app.page(&session_cookie, "/").await;
    assert!(dashboard.contains("ada@example.com"), "the dashboard knows who signed in");
    // The same callback again: its state was used up.
    let (status, _, page) = app.request("GET", &callback, &[(header::COOKIE, cookie)], String::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("was not started here, was finished already"), "{page}");
    // Logout ends the session.
    let (status, _, _) = app
        .request(
            "POST",
            "/logout",
            &[(header::COOKIE, session_cookie.clone()), (header::CONTENT_TYPE, "application/x-www-form-urlencoded".into())],
            format!("csrf={}", csrf_of(&dashboard)),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, headers, _) = app.request("GET", "/", &[(header::COOKIE, session_cookie)], String::new()).await;
    assert_eq!((status, headers.get(header::LOCATION).map(|l| l.to_str().unwrap().to_string())), (StatusCode::SEE_OTHER, Some("/login".into())));

    // ---- eve@other.example: signed in at the provider, refused here, no session
    let (callback, state) = sign_in_at_the_provider(&app, "eve").await;
    let (status, headers, page) = app.request("GET", &callback, &[(header::COOKIE, format!("takehome_oidc={state}"))], String::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("eve@other.example may not sign in here"), "{page}");
    assert!(cookie_value(&headers, takehome::web::auth::SESSION_COOKIE).is_none());

    // ---- forged callbacks: a state never issued; a state from another browser's cookie
    let (status, _, page) =
        app.request("GET", "/login/oidc/callback?code=x&state=forged", &[(header::COOKIE, "takehome_oidc=forged".into())], String::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    let (callback, _) = sign_in_at_the_provider(&app, "ada").await;
    let (status, headers, page) = app.request("GET", &callback, &[(header::COOKIE, "takehome_oidc=someone-elses".into())], String::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("started in another browser") && cookie_value(&headers, takehome::web::auth::SESSION_COOKIE).is_none(), "{page}");
    let (status, _, page) = app.request("GET", &callback, &[], String::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no state cookie at all: {page}");
    // A provider's refusal is said.
    let (status, _, page) = app.request("GET", "/login/oidc/callback?error=access_denied&error_description=the+user+said+no", &[], String::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("access_denied") && page.contains("the user said no"), "{page}");

    // ---- one address cannot hold more than its share of sign-ins under way
    let mut refused_after = None;
    for n in 0..=takehome::oidc::MAX_PENDING_PER_CLIENT {
        let (status, _, _) = app.request("GET", "/login/oidc", &[], String::new()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused_after = Some(n);
            break;
        }
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    assert!(refused_after.is_some(), "an address may start at most {} sign-ins at once", takehome::oidc::MAX_PENDING_PER_CLIENT);

    // ---- a wrong client secret: the provider refuses the code, and the page says so
    let (wrong, _scratch2) = app_with(&provider, "not-the-secret").await;
    let (callback, state) = sign_in_at_the_provider(&wrong, "ada").await;
    let (status, _, page) = wrong.request("GET", &callback, &[(header::COOKIE, format!("takehome_oidc={state}"))], String::new()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("token endpoint answered 401") && page.contains("invalid_client"), "{page}");
}

#[test]
fn a_provider_without_a_rule_for_who_may_sign_in_is_refused_when_the_config_is_loaded() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    std::fs::write(&config, "oidc:\n  issuer: https://login.example.com\n  client_id: takehome\n  client_secret: s\n").unwrap();
    let error = takehome::config::Config::load(Some(&config), |_| None).unwrap_err().to_string();
    assert!(error.contains("oidc.allowed_domains") && error.contains("would admit every account"), "{error}");
    std::fs::write(&config, "oidc:\n  issuer: http://login.example.com\n  client_id: takehome\n  client_secret: s\n  allowed_domains: [example.com]\n")
        .unwrap();
    let error = takehome::config::Config::load(Some(&config), |_| None).unwrap_err().to_string();
    assert!(error.contains("oidc.issuer") && error.contains("https://"), "{error}");
}
