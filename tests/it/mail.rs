//! E-mail to candidates against a real SMTP server (aiosmtpd from PyPI, `tests/servers/smtp.py`)
//! with STARTTLS required, a certificate from a CA made here and AUTH: the invitation made by the
//! API arrives with its headers and links, a refusal for the time being is retried, a permanent
//! one is given up, reminders come before the deadline and a receipt after a graded push, and
//! nothing is sent twice. The daemon's own loop and `assign --email` are in `review`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::common::{repo_root, test_python, tls_certificates};
use super::test_app::TestApp;

const PASSWORD: &str = "correct horse battery staple";

/// A real SMTP server on a loopback port; its messages are files in its folder.
pub(super) struct SmtpServer {
    child: Child,
    pub(super) port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// STARTTLS with `certs/server.pem` when `certs` is given; AUTH with `login` when given; the
    /// first `fail_first` messages answered 451.
    pub(super) fn start(certs: Option<&Path>, login: Option<(&str, &str)>, fail_first: usize) -> SmtpServer {
        SmtpServer::start_with(certs, login, fail_first, false)
    }

    /// `implicit_tls`: TLS from the first byte (smtps://) instead of STARTTLS.
    pub(super) fn start_with(certs: Option<&Path>, login: Option<(&str, &str)>, fail_first: usize, implicit_tls: bool) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let port = super::cluster_support::free_port();
        let mut command = Command::new(test_python());
        command
            .arg(repo_root().join("tests/servers/smtp.py"))
            .args(["--port", &port.to_string(), "--fail-first", &fail_first.to_string(), "--dir"])
            .arg(dir.path());
        if let Some(certs) = certs {
            command.arg("--cert").arg(certs.join("server.pem")).arg("--key").arg(certs.join("server.key"));
        }
        if implicit_tls {
            command.arg("--implicit-tls");
        }
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the SMTP server did not start");
        SmtpServer { child, port, dir }
    }

    /// The messages accepted so far, in order.
    pub(super) fn messages(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }

    /// Waits until `count` messages have arrived.
    pub(super) fn wait_for(&self, count: usize, limit: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.messages();
            if got.len() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {count} messages within {limit:?}: {got:#?}", got.len());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_reminders_and_receipts_reach_a_real_smtp_server_over_starttls_once_each() {
    let scratch = tempfile::tempdir().unwrap();
    let certs = scratch.path().to_path_buf();
    tls_certificates(&certs);
    let smtp = {
        let certs = certs.clone();
        tokio::task::spawn_blocking(move || SmtpServer::start(Some(&certs), Some(("mailer", "s3cret pass:word")), 1)).await.unwrap()
    };
    let config = scratch.path().join("takehome.yaml");
    let hash = takehome::secret::hash_password(PASSWORD);
    std::fs::write(
        &config,
        format!(
            "assessors:\n  - user: ada\n    password_hash: \"{hash}\"\n\
             smtp_url: smtp://mailer:s3cret%20pass%3Aword@localhost:{}\n\
             smtp_from: \"Hiring team <hiring@example.com>\"\n\
             email_reminders: [24h, 1h]\n\
             tls_ca_file: {}\n",
            smtp.port,
            certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let data = scratch.path().join("data");
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap()), ("TAKEHOME_DATA_DIR", data.to_str().unwrap())]).await;
    let settings = app.app.config.mail.clone().expect("smtp_url is read");
    let outbox = takehome::mail::Outbox {
        store: app.app.store.clone(),
        mailer: takehome::mail::Mailer::new(&settings, app.app.config.tls_ca_file.as_deref()).unwrap(),
        tasks: app.app.tasks.clone(),
        public_url: app.app.config.public_url.clone(),
        reminders: settings.reminders.clone(),
        reminders_scanned: std::sync::Mutex::new(None),
    };
    let ada = ("ada", PASSWORD);
    let title = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap().title;

    // ---- the invitation, made by a tracking system through the API
    let (status, made) = app
        .post_json(
            "/api/assignments",
            ada,
            serde_json::json!({ "task": "penguins-cleaning", "candidate": "Lin", "time_box": "2h", "starts": "now", "email": " lin@example.com " }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["invitation"], serde_json::json!({ "to": "lin@example.com", "state": "queued" }));
    let (id, token) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    let now = takehome::units::now();
    // The server answers 451 first: not sent, retried 5 s later.
    assert_eq!(outbox.run_once(now).await, 0);
    let listed = app.api("/api/emails", ada).await;
    let first = &listed["emails"][0];
    assert_eq!((first["kind"].as_str(), first["attempts"].as_i64(), first["sent_at"].is_null()), (Some("invitation"), Some(1), true), "{listed:#}");
    assert!(first["last_error"].as_str().unwrap().contains("451"), "{listed:#}");
    assert!(!listed.to_string().contains("lin@example.com") && !listed.to_string().contains(&token), "the list shows no address and no token");
    assert_eq!(outbox.run_once(now + 2).await, 0, "the retry waits for its time");
    assert_eq!(outbox.run_once(now + 6).await, 1);
    let got = smtp.wait_for(1, Duration::from_secs(10));
    let invitation = &got[0];
    let header = |m: &serde_json::Value, name: &str| m["headers"][name].as_str().unwrap_or("").to_string();
    assert_eq!(header(invitation, "From"), "Hiring team <hiring@example.com>");
    assert_eq!(header(invitation, "To"), "lin@example.com");
    assert_eq!(header(invitation, "Subject"), format!("Your take-home assessment: {title}"));
    assert_eq!(header(invitation, "Message-ID"), format!("<takehome.invitation.{id}@example.com>"));
    assert_eq!((invitation["tls"].as_bool(), invitation["authenticated"].as_bool()), (Some(true), Some(true)), "STARTTLS and AUTH");
    assert_eq!(invitation["rcpt_tos"], serde_json::json!(["lin@example.com"]));
    let text = invitation["text"].as_str().unwrap();
    let public = app.app.config.public_url.trim_end_matches('/').to_string();
    for needle in
        [format!("git clone {public}/git/{id}.git"), format!("user name is {id}"), token.clone(), format!("{public}/status/{id}"), "Time box: 2h".into()]
    {
        assert!(text.contains(&needle), "{needle:?} not in the invitation:\n{text}");
    }
    // Nothing twice: a later pass sends nothing, and the same invitation cannot be queued again.
    assert_eq!(outbox.run_once(now + 20).await, 0);
    assert!(!app.app.store.queue_email(&id, &format!("invitation:{id}"), takehome::store::EmailKind::Invitation, "{}", now).await.unwrap());
    // The token left the store with the message.
    let connection = rusqlite::Connection::open(data.join("takehome.sqlite")).unwrap();
    let held: Vec<String> = connection.prepare("SELECT data FROM emails").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(held.iter().all(|d| d == "{}"), "{held:?}");

    // ---- reminders: the 1-hour one once the last hour begins; never the 24-hour one for a 2-hour box
    assert_eq!(outbox.run_once(now + 30 * 60).await, 0);
    assert_eq!(outbox.run_once(now + 61 * 60).await, 1);
    let got = smtp.wait_for(2, Duration::from_secs(10));
    assert!(header(&got[1], "Subject").starts_with(&format!("{title}: about ")) && header(&got[1], "Subject").ends_with(" left"), "{:#}", got[1]);
    assert!(got[1]["text"].as_str().unwrap().contains(&format!("{public}/status/{id}")), "{:#}", got[1]);
    assert_eq!(outbox.run_once(now + 62 * 60).await, 0, "one reminder per point");

    // ---- a receipt after a graded push: which push and commit, never the score
    let task = takehome::task::load(&repo_root().join("tasks/penguins-cleaning")).unwrap();
    let report = std::fs::read_to_string(repo_root().join("tests/fixtures/reports/review-desk.json")).unwrap();
    let (submission, _) = app.graded_push("a0receipt", &task, "Kim", &[("clean.py", b"print('hi')\n")], "first", &report).await;
    assert!(!takehome::mail::queue_receipt(app.app.store.as_ref(), "a0receipt", submission, now).await.unwrap(), "no address: no receipt");
    app.app.store.set_contact("a0receipt", "kim@example.com").await.unwrap();
    assert!(takehome::mail::queue_receipt(app.app.store.as_ref(), "a0receipt", submission, now).await.unwrap());
    assert_eq!(outbox.run_once(now + 62 * 60).await, 1);
    let got = smtp.wait_for(3, Duration::from_secs(10));
    let receipt = &got[2];
    assert_eq!(header(receipt, "To"), "kim@example.com");
    assert_eq!(header(receipt, "Subject"), format!("{title}: push 1 received"));
    let text = receipt["text"].as_str().unwrap();
    assert!(text.contains("push 1") && text.contains("was received and graded"), "{text}");
    assert!(!text.to_lowercase().contains("score") && !text.contains('%'), "a receipt says no score: {text}");

    // ---- a permanent refusal (550) is given up at once, and never retried
    let (status, refused) = app
        .post_json("/api/assignments", ada, serde_json::json!({ "task": "penguins-cleaning", "candidate": "Nobody", "email": "nobody@refused.example" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{refused}");
    assert_eq!(outbox.run_once(now + 63 * 60).await, 0);
    assert_eq!(outbox.run_once(now + 5 * 3600).await, 0);
    let listed = app.api("/api/emails", ada).await;
    let gone = listed["emails"].as_array().unwrap().iter().find(|e| e["assignment"] == refused["id"]).unwrap().clone();
    assert_eq!((gone["attempts"].as_i64(), gone["failed_at"].is_null()), (Some(1), false), "{gone:#}");
    assert!(gone["last_error"].as_str().unwrap().contains("550"), "{gone:#}");
    assert_eq!(smtp.messages().len(), 3, "nothing else was sent");

    // A wrong address is refused when the assignment is made, naming the field.
    let (status, answer) =
        app.post_json("/api/assignments", ada, serde_json::json!({ "task": "penguins-cleaning", "candidate": "X", "email": "not an address" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.to_string().contains("email: \\\"not an address\\\" is not an e-mail address"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_an_address_is_refused_and_the_form_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("takehome.yaml");
    std::fs::write(&config, format!("assessors:\n  - user: ada\n    password_hash: \"{}\"\n", takehome::secret::hash_password(PASSWORD))).unwrap();
    let app = TestApp::with(&repo_root(), &[("TAKEHOME_CONFIG", config.to_str().unwrap())]).await;
    let (status, answer) = app
        .post_json("/api/assignments", ("ada", PASSWORD), serde_json::json!({ "task": "penguins-cleaning", "candidate": "X", "email": "x@example.com" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.to_string().contains("no smtp_url"), "{answer}");
    let cookie = app.assessor_cookie("ada").await;
    let form = app.page(&cookie, "/assignments/new").await;
    assert!(form.contains("This server sends no e-mail") && !form.contains("name=\"email\""), "{form}");
}

/// smtps:// (TLS from the first byte) reaches the server; a server whose certificate no trusted CA
/// signed is refused and the message kept for a retry.
#[tokio::test(flavor = "multi_thread")]
async fn smtps_is_spoken_and_an_untrusted_certificate_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let certs = scratch.path().to_path_buf();
    tls_certificates(&certs);
    let smtp = {
        let certs = certs.clone();
        tokio::task::spawn_blocking(move || SmtpServer::start_with(Some(&certs), None, 0, true)).await.unwrap()
    };
    let settings = takehome::mail::Settings::parse(&format!("smtps://localhost:{}", smtp.port), Some("hiring@example.com"), None).unwrap();
    let mailer = takehome::mail::Mailer::new(&settings, Some(&certs.join("ca.pem"))).unwrap();
    mailer.send("lin@example.com", "over TLS", "Hello\n".into(), "receipt:1").await.map_err(|e| e.message).unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let got = smtp.wait_for(1, Duration::from_secs(10));
        drop(smtp);
        got
    })
    .await
    .unwrap();
    assert_eq!((got[0]["tls"].as_bool(), got[0]["headers"]["Subject"].as_str()), (Some(true), Some("over TLS")));

    let starttls = {
        let certs = certs.clone();
        tokio::task::spawn_blocking(move || SmtpServer::start(Some(&certs), None, 0)).await.unwrap()
    };
    let settings = takehome::mail::Settings::parse(&format!("smtp://localhost:{}", starttls.port), Some("hiring@example.com"), None).unwrap();
    let untrusting = takehome::mail::Mailer::new(&settings, None).unwrap();
    let error = untrusting.send("lin@example.com", "never", "x".into(), "receipt:2").await.unwrap_err();
    assert!(!error.permanent && error.message.to_lowercase().contains("certificate"), "{}", error.message);
    assert!(starttls.messages().is_empty());
}
