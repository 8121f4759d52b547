//! The web layer in process: the router and a real SQLite store, no Docker, no binary, no socket.
//! Requests go straight to the router (`tower_service::Service`), as the connection loop sends
//! them, with the client's address attached.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use takehome::web::{App, ClientAddr};
use tower_service::Service;

pub struct TestApp {
    pub app: Arc<App>,
    router: axum::Router,
    _data: tempfile::TempDir,
}

impl TestApp {
    /// An app whose tasks are those under `tasks_root` (a folder holding `tasks/`).
    pub async fn new(tasks_root: &Path) -> TestApp {
        TestApp::with(tasks_root, &[]).await
    }

    /// An app with more settings, as `TAKEHOME_*` variables would give them.
    pub async fn with(tasks_root: &Path, settings: &[(&str, &str)]) -> TestApp {
        let data = tempfile::tempdir().unwrap();
        let env = |key: &str| match key {
            "TAKEHOME_DATA_DIR" => Some(data.path().display().to_string()),
            "TAKEHOME_TASKS_ROOT" => Some(tasks_root.display().to_string()),
            "TAKEHOME_PUBLIC_URL" => Some("http://127.0.0.1:9".into()),
            _ => settings.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string()),
        };
        let config = takehome::config::Config::load(None, env).unwrap();
        let store = takehome::store::open(&config.database).await.unwrap();
        let app = Arc::new(App::new(config, store, Arc::default()));
        let router = takehome::web::router(app.clone());
        TestApp { app, router, _data: data }
    }

    /// Creates the repository of assignment `id` as `assign` does (seeded with `task`'s brief,
    /// starter and public data); returns the seed commit.
    pub fn repository(&self, id: &str, task: &takehome::task::TaskSpec) -> String {
        let bare = self.app.repos.create(id, task, 100 << 20).unwrap();
        let head = std::process::Command::new("git").arg("--git-dir").arg(&bare).args(["rev-parse", "main"]).output().unwrap();
        String::from_utf8(head.stdout).unwrap().trim().to_string()
    }

    /// A logged-in assessor's cookie header (a session made in the store, as login makes one).
    pub async fn assessor_cookie(&self, user: &str) -> String {
        let token = takehome::secret::new_token();
        let now = takehome::web::now();
        self.app.store.create_session(&takehome::secret::token_hash(&token), user, now, now + 3600).await.unwrap();
        format!("{}={token}", takehome::web::auth::SESSION_COOKIE)
    }

    /// GET `path` with extra `headers`: the status and the body as text.
    pub async fn get(&self, path: &str, headers: &[(header::HeaderName, String)]) -> (StatusCode, String) {
        let mut request = Request::builder().uri(path).header(header::HOST, "127.0.0.1:9");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(ClientAddr("127.0.0.1".parse().unwrap()));
        let response = self.router.clone().call(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A `Basic` authorization header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}
