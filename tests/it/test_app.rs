//! The web layer in process: the router and a real SQLite store, no Docker, no binary, no socket.
//! Requests go straight to the router (`tower_service::Service`), as the connection loop sends
//! them, with the client's address attached.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
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
        let given = |key: &str| settings.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string());
        let env = |key: &str| match key {
            "TAKEHOME_DATA_DIR" => given(key).or_else(|| Some(data.path().display().to_string())),
            "TAKEHOME_TASKS_ROOT" => Some(tasks_root.display().to_string()),
            "TAKEHOME_PUBLIC_URL" => Some("http://127.0.0.1:9".into()),
            _ => given(key),
        };
        let file = settings.iter().find(|(name, _)| *name == "TAKEHOME_CONFIG").map(|(_, path)| std::path::PathBuf::from(path));
        let config = takehome::config::Config::load(file.as_deref(), env).unwrap();
        std::fs::create_dir_all(&config.data_dir).unwrap();
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
        let (status, _, body) = self.request("GET", path, headers, String::new()).await;
        (status, body)
    }

    /// Any request: the status, the response's headers and its body as text.
    pub async fn request(&self, method: &str, path: &str, headers: &[(header::HeaderName, String)], body: String) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, "127.0.0.1:9");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        request.extensions_mut().insert(ClientAddr("127.0.0.1".parse().unwrap()));
        let response = self.router.clone().call(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A page an assessor's browser asks for (must answer 200).
    pub async fn page(&self, cookie: &str, path: &str) -> String {
        let (status, html) = self.get(path, &[(header::COOKIE, cookie.to_string())]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        html
    }

    /// A form POST from a logged-in browser (same origin, the page's CSRF token): the status and
    /// the `Location` (or the body when there is none).
    pub async fn post_form(&self, cookie: &str, path: &str, fields: &[(&str, &str)], csrf: &str) -> (StatusCode, String) {
        let mut body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", form(k), form(v))).collect();
        body.push(format!("csrf={}", form(csrf)));
        let headers = [
            (header::COOKIE, cookie.to_string()),
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded".to_string()),
            (header::ORIGIN, "http://127.0.0.1:9".to_string()),
        ];
        let (status, headers, text) = self.request("POST", path, &headers, body.join("&")).await;
        (status, headers.get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string).unwrap_or(text))
    }

    /// A JSON POST with Basic credentials: the status and the answer.
    pub async fn post_json(&self, path: &str, user: (&str, &str), body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let headers = [(header::AUTHORIZATION, basic(user.0, user.1)), (header::CONTENT_TYPE, "application/json".to_string())];
        let (status, _, text) = self.request("POST", path, &headers, body.to_string()).await;
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// A JSON GET with Basic credentials (must answer 200).
    pub async fn api(&self, path: &str, user: (&str, &str)) -> serde_json::Value {
        let (status, text) = self.get(path, &[(header::AUTHORIZATION, basic(user.0, user.1))]).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// An assignment of `task` to `candidate` whose clock runs, with one push graded: `files`
    /// committed over the starter (a real commit in the real repository, pushed by git) and
    /// `report` (a report's JSON) stored as a worker stores it. Returns the submission's id and
    /// the candidate's token.
    pub async fn graded_push(
        &self,
        id: &str,
        task: &takehome::task::TaskSpec,
        candidate: &str,
        files: &[(&str, &[u8])],
        message: &str,
        report: &str,
    ) -> (i64, String) {
        use takehome::store::{ClaimRequest, TaskCopy};
        let (submission, token) = self.push(id, task, candidate, files, message).await;
        let needs = takehome::job::needs(task).unwrap();
        let request = ClaimRequest {
            instance: "test".into(),
            now: takehome::web::now(),
            lease_seconds: 600,
            free_memory_bytes: 1 << 40,
            runtimes: vec!["runc".into()],
            free_gpus: 0,
            copies: vec![TaskCopy { task: task.id.clone(), spec_digest: needs.spec_digest.clone(), data_digest: needs.data_digest.clone() }],
            max_attempts: 3,
        };
        let job = self.app.store.claim(&request).await.unwrap().expect("the push is claimed");
        assert_eq!(job.fence.submission, submission);
        let parsed: takehome::report::Report = serde_json::from_str(report).unwrap();
        self.app.store.finish(&job.fence, parsed.status, parsed.score, report, takehome::web::now(), false).await.unwrap();
        (submission, token)
    }

    /// Assignment `id` of `task` to `candidate`, its clock started ten minutes ago, and its
    /// repository seeded as `assign` seeds it; returns the candidate's token and the bare
    /// repository.
    pub async fn assign(&self, id: &str, task: &takehome::task::TaskSpec, candidate: &str) -> (String, std::path::PathBuf) {
        self.assign_starting(id, task, candidate, takehome::store::Starts::Now).await
    }

    /// [`TestApp::assign`] whose clock starts as `starts` says (`OnClone`: not yet started).
    pub async fn assign_starting(
        &self,
        id: &str,
        task: &takehome::task::TaskSpec,
        candidate: &str,
        starts: takehome::store::Starts,
    ) -> (String, std::path::PathBuf) {
        use takehome::store::Assignment;
        let token = takehome::secret::new_token();
        let now = takehome::web::now();
        self.app
            .store
            .create_assignment(&Assignment {
                id: id.to_string(),
                task: task.id.clone(),
                candidate: candidate.to_string(),
                token_hash: takehome::secret::token_hash(&token),
                time_box_seconds: 3 * 3600,
                starts,
                started_at: (starts == takehome::store::Starts::Now).then_some(now - 600),
                created_at: now - 600,
                extra_seconds: 0,
            })
            .await
            .unwrap();
        let bare = self.app.repos.create(id, task, 100 << 20).unwrap();
        (token, bare)
    }

    /// The app served on a loopback port in this process (as `serve` serves it), for a real git
    /// client; stops when the answer is dropped. Git runs our pre-receive hook as `serve`
    /// installs it: this build's `takehome intake-hook`.
    pub async fn listen(&self) -> Listening {
        self.app.repos.install_hooks(Path::new(env!("CARGO_BIN_EXE_takehome"))).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(takehome::web::serve(listener, self.app.clone(), shutdown.clone()));
        Listening { port, shutdown }
    }

    /// An assignment of `task` to `candidate` whose clock runs, and one push of `files` over the
    /// starter (a real commit in the real repository, pushed by git), queued as the git route
    /// queues it. Returns the submission's id and the candidate's token.
    pub async fn push(&self, id: &str, task: &takehome::task::TaskSpec, candidate: &str, files: &[(&str, &[u8])], message: &str) -> (i64, String) {
        let now = takehome::web::now();
        let store = &self.app.store;
        let (token, bare) = self.assign(id, task, candidate).await;
        let work = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=Candidate", "-c", "user.email=c@example.com"])
                .args(args)
                .current_dir(work.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["clone", "-q", bare.to_str().unwrap(), "."]);
        for (path, bytes) in files {
            let file = work.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, bytes).unwrap();
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", message]);
        git(&["push", "-q", "origin", "main"]);
        let commit = git(&["rev-parse", "HEAD"]);
        let needs = takehome::job::needs(task).unwrap();
        let (submission, ..) = store.add_submission(id, &commit, &needs, now - 60, 0).await.unwrap();
        (submission, token)
    }
}

/// The app on a loopback port ([`TestApp::listen`]).
pub struct Listening {
    pub port: u16,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Listening {
    /// The clone URL of assignment `id`, with its credentials.
    pub fn git_url(&self, id: &str, token: &str) -> String {
        format!("http://{id}:{token}@127.0.0.1:{}/git/{id}.git", self.port)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Form encoding of one value.
pub fn form(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The CSRF token of a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// A `Basic` authorization header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}
