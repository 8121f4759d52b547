//! E-mail to candidates: the invitation (the task, the time box, the clone command with their
//! credentials, the status page and the deadline rule), reminders before the deadline and a
//! receipt after each graded push (never a score).
//!
//! Whoever learns of a message (an assessor making an assignment, a worker on any host grading a
//! push, the server's reminder scan) puts it in the store's outbox under a key that names it
//! (`invitation:<assignment>`, `reminder:<assignment>:<seconds>`, `receipt:<submission>`); a key
//! is queued once, so no message is queued twice. The server's [`deliver`] loop composes each
//! message when it is due (from the store and the task) and sends it over SMTP (lettre: STARTTLS
//! or TLS on rustls), retrying a failure with the webhooks' backoff and giving up on a permanent
//! refusal (5xx). The invitation's token waits in the outbox only until it is sent. The
//! Message-ID is made from the key, so a message sent again after a crash between the server's
//! acceptance and our record of it carries the same Message-ID.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::store::{Assignment, Email, EmailKind, Starts, Store};
use crate::task::Catalog;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte (port 465).
    Tls,
    /// `smtp://`: STARTTLS, required (port 587).
    StartTls,
    /// `smtp://…?tls=none`: no TLS, for a relay on this host or its private network (port 25).
    Plain,
}

/// Where mail is handed over: `smtp_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Server {
    /// `smtp://[user:password@]host[:port][?tls=none]` or `smtps://…`; the user and password
    /// percent-encoded where they hold `:`, `@`, `/` or `%`.
    pub fn parse(url: &str) -> Result<Server, SmtpUrlError> {
        let (tls, rest) = match (url.strip_prefix("smtps://"), url.strip_prefix("smtp://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(SmtpUrlError::Scheme),
        };
        let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let security = match (tls, query) {
            (true, None) => Security::Tls,
            (false, None) | (false, Some("tls=starttls")) => Security::StartTls,
            (false, Some("tls=none")) => Security::Plain,
            (_, Some(other)) => return Err(SmtpUrlError::Query(other.to_string())),
        };
        let (credentials, authority) = rest.rsplit_once('@').map_or((None, rest), |(c, a)| (Some(c), a));
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => {
                let (user, password) = c.split_once(':').ok_or(SmtpUrlError::Credentials)?;
                (Some(percent_decode(user)?), Some(percent_decode(password)?))
            }
        };
        let default_port = match security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::Plain => 25,
        };
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(SmtpUrlError::Bracket)?;
                (host, after.strip_prefix(':'))
            }
            None => authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p))),
        };
        let port = match port {
            Some(port) => port.parse::<u16>().map_err(|_| SmtpUrlError::Port(port.to_string()))?,
            None => default_port,
        };
        if host.is_empty() || authority.contains(['/', ' ']) {
            return Err(SmtpUrlError::Host);
        }
        Ok(Server { security, host: host.to_string(), port, user, password })
    }

    /// The URL without its password.
    pub fn describe(&self) -> String {
        let scheme = if self.security == Security::Tls { "smtps" } else { "smtp" };
        let user = self.user.as_deref().map(|u| format!("{u}:…@")).unwrap_or_default();
        let query = if self.security == Security::Plain { "?tls=none" } else { "" };
        format!("{scheme}://{user}{}:{}{query}", self.host, self.port)
    }
}

/// Why `smtp_url` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpUrlError {
    #[error("smtp_url: not an smtp:// or smtps:// URL; {}", SMTP_URL_SHAPE)]
    Scheme,
    #[error("smtp_url: ?{0} is not understood (smtp:// takes ?tls=none or ?tls=starttls)")]
    Query(String),
    #[error("smtp_url: credentials must be user:password; {}", SMTP_URL_SHAPE)]
    Credentials,
    #[error("smtp_url: a % is not followed by two hex digits")]
    Percent,
    #[error("smtp_url: the credentials are not UTF-8 once decoded")]
    Utf8,
    #[error("smtp_url: an unclosed [; {}", SMTP_URL_SHAPE)]
    Bracket,
    #[error("smtp_url: {0:?} is not a port")]
    Port(String),
    #[error("smtp_url: no host; {}", SMTP_URL_SHAPE)]
    Host,
}

const SMTP_URL_SHAPE: &str = "expected smtp://user:password@mail.example.com:587 (STARTTLS), smtps://…:465 (TLS) or smtp://relay.internal:25?tls=none";

fn percent_decode(text: &str) -> Result<String, SmtpUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(SmtpUrlError::Percent)?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SmtpUrlError::Utf8)
}

/// What the server sends with: `smtp_url`, `smtp_from` and `email_reminders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: Server,
    /// `Hiring team <hiring@example.com>` or a bare address.
    pub from: String,
    /// Seconds before the deadline at which a reminder is sent, largest first.
    pub reminders: Vec<i64>,
}

impl Settings {
    /// Checks the three settings together (the sender must be an address).
    pub fn parse(url: &str, from: Option<&str>, reminders: Option<&str>) -> Result<Settings, (&'static str, String)> {
        let server = Server::parse(url).map_err(|e| ("smtp_url", e.to_string()))?;
        let from = from
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .ok_or(("smtp_from", "the sender is required with smtp_url (e.g. \"Hiring team <hiring@example.com>\")".to_string()))?;
        from.parse::<Mailbox>().map_err(|e| ("smtp_from", format!("{from:?} is not an address like \"Hiring team <hiring@example.com>\": {e}")))?;
        let mut offsets = Vec::new();
        for part in reminders.unwrap_or("24h,1h").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let duration = crate::units::parse_duration(part).map_err(|e| ("email_reminders", format!("{part:?}: {e}")))?;
            if duration.is_zero() {
                return Err(("email_reminders", format!("{part:?}: a reminder must come before the deadline")));
            }
            offsets.push(duration.as_secs() as i64);
        }
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        offsets.dedup();
        Ok(Settings { server, from: from.to_string(), reminders: offsets })
    }
}

/// An address refused for a candidate's mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an e-mail address")]
pub struct NotAnAddress(String);

/// Checks an address a candidate's mail goes to.
pub fn check_address(text: &str) -> Result<String, NotAnAddress> {
    let text = text.trim();
    match text.parse::<lettre::Address>() {
        Ok(_) if text.len() <= 254 => Ok(text.to_string()),
        _ => Err(NotAnAddress(text.chars().take(80).collect())),
    }
}

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("smtp_from: {0}")]
    From(String),
    #[error("tls_ca_file: cannot use {}", path.display())]
    Ca { path: std::path::PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot set up TLS for {host}")]
    Tls { host: String, source: lettre::transport::smtp::Error },
}

/// A failed handover: `permanent` when the server refused for good (5xx).
#[derive(Debug)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

/// An SMTP connection's settings (a connection per message: the outbox sends few).
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl Mailer {
    /// The transport for `settings`, trusting the platform's roots and `ca_file`'s certificates.
    pub fn new(settings: &Settings, ca_file: Option<&Path>) -> Result<Mailer, MailError> {
        let from: Mailbox = settings.from.parse().map_err(|e: lettre::address::AddressError| MailError::From(e.to_string()))?;
        let server = &settings.server;
        let tls = if server.security == Security::Plain {
            Tls::None
        } else {
            let mut builder = TlsParameters::builder(server.host.clone());
            if let Some(path) = ca_file {
                let ca = |source: Box<dyn std::error::Error + Send + Sync>| MailError::Ca { path: path.to_path_buf(), source };
                let pem = std::fs::read(path).map_err(|e| ca(Box::new(e)))?;
                builder = builder.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| ca(Box::new(e)))?);
            }
            let parameters = builder.build_rustls().map_err(|source| MailError::Tls { host: server.host.clone(), source })?;
            if server.security == Security::Tls {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.as_str()).port(server.port).tls(tls).timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&server.user, &server.password) {
            transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let domain = from.email.domain().to_string();
        Ok(Mailer { transport: transport.build(), from, domain })
    }

    /// Sends one plain-text message whose Message-ID is made from `key`.
    pub async fn send(&self, to: &str, subject: &str, text: String, key: &str) -> Result<(), SendError> {
        let fail = |permanent: bool, message: String| SendError { permanent, message };
        let to: Mailbox = to.parse().map_err(|e| fail(true, format!("the contact address: {e}")))?;
        let id: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '.' }).collect();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<takehome.{id}@{}>", self.domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| fail(true, format!("cannot build the message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| fail(e.is_permanent(), crate::errors::chain(&e)))
    }
}

/// A message's subject and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
}

fn duration_text(seconds: i64) -> String {
    crate::units::format_duration(Duration::from_secs(seconds.max(0) as u64))
}

/// The invitation: everything needed to start, with the credentials (said once).
pub fn invitation(a: &Assignment, title: &str, token: &str, public_url: &str) -> Composed {
    let base = public_url.trim_end_matches('/');
    let clock = match (a.starts, a.deadline()) {
        (Starts::Now, Some(deadline)) => format!("The clock started when the assignment was made: push before {}.", crate::report::rfc3339(deadline)),
        _ => "The clock starts when you first clone the repository.".to_string(),
    };
    let text = format!(
        "Hello,\n\n\
         You are invited to a take-home assessment: {title}.\n\n\
         Time box: {}. {clock} Push your solution before the time box ends; each push is graded, \
         and what you push after the deadline is not.\n\n\
         Clone the repository (the brief is README.md; ENVIRONMENT.md lists what is installed):\n\n    \
         git clone {base}/git/{id}.git\n\n\
         When git asks, the user name is {id} and the password is this token (keep it to yourself; it is not sent again):\n\n    \
         {token}\n\n\
         Your status page shows each push as it is received and graded (sign in with the same user name and token):\n\n    \
         {base}/status/{id}\n\n\
         Good luck!\n",
        duration_text(a.total_seconds()),
        id = a.id,
    );
    Composed { subject: format!("Your take-home assessment: {title}"), text }
}

/// A reminder: how long is left, and where to look.
pub fn reminder(a: &Assignment, title: &str, deadline: i64, now: i64, public_url: &str) -> Composed {
    let base = public_url.trim_end_matches('/');
    let left = duration_text(deadline - now);
    let text = format!(
        "Hello,\n\n\
         Your time box for {title} ends in about {left}, at {}. Push what you have before then: each push is graded, \
         and what you push after the deadline is not.\n\n\
         Your status page: {base}/status/{}\n",
        crate::report::rfc3339(deadline),
        a.id
    );
    Composed { subject: format!("{title}: about {left} left"), text }
}

/// A receipt for a graded push: which commit, when; never a score.
pub fn receipt(a: &Assignment, title: &str, number: i64, commit: &str, pushed_at: i64, public_url: &str) -> Composed {
    let base = public_url.trim_end_matches('/');
    let short: String = commit.chars().take(12).collect();
    let text = format!(
        "Hello,\n\n\
         Your push {number} for {title} (commit {short}, pushed at {}) was received and graded.\n\n\
         Your status page shows what it says about each push: {base}/status/{}\n",
        crate::report::rfc3339(pushed_at),
        a.id
    );
    Composed { subject: format!("{title}: push {number} received"), text }
}

/// Queues the reminder due at `now` for each assignment with a contact address whose clock runs:
/// the nearest reminder point that has passed, when it came after the clock started (a 24-hour
/// reminder is not sent for a 4-hour time box). Returns how many were queued.
pub async fn queue_reminders(store: &dyn Store, reminders: &[i64], now: i64) -> Result<usize, crate::store::StoreError> {
    let contacts = store.contacts().await?;
    if contacts.is_empty() || reminders.is_empty() {
        return Ok(0);
    }
    let mut queued = 0;
    for a in store.assignments().await?.into_iter().filter(|a| contacts.contains_key(&a.id)) {
        let (Some(started), Some(deadline)) = (a.started_at, a.deadline()) else { continue };
        if now >= deadline {
            continue;
        }
        let due = reminders.iter().copied().filter(|&before| deadline - before <= now && deadline - before > started).min();
        if let Some(before) = due {
            let data = serde_json::json!({ "before_seconds": before }).to_string();
            if store.queue_email(&a.id, &format!("reminder:{}:{before}", a.id), EmailKind::Reminder, &data, now).await? {
                queued += 1;
            }
        }
    }
    Ok(queued)
}

/// Queues the receipt of a graded push (nothing when the assignment has no contact address).
pub async fn queue_receipt(store: &dyn Store, assignment: &str, submission: i64, now: i64) -> Result<bool, crate::store::StoreError> {
    let data = serde_json::json!({ "submission": submission }).to_string();
    store.queue_email(assignment, &format!("receipt:{submission}"), EmailKind::Receipt, &data, now).await
}

/// What an outbox entry says, composed now; `Err` gives it up with the reason.
async fn compose(store: &dyn Store, tasks: &Catalog, public_url: &str, email: &Email, now: i64) -> Result<Composed, String> {
    let a = store.assignment(&email.assignment).await.map_err(|e| crate::errors::chain(&e))?.ok_or("the assignment is gone")?;
    let title = tasks.get(&a.task).map(|spec| spec.title.clone()).unwrap_or_else(|| a.task.to_string());
    let data: serde_json::Value = serde_json::from_str(&email.data).unwrap_or_default();
    match email.kind {
        EmailKind::Invitation => {
            let token = data["token"].as_str().ok_or("the invitation's token is no longer held")?;
            Ok(invitation(&a, &title, token, public_url))
        }
        EmailKind::Reminder => match a.deadline() {
            Some(deadline) if now < deadline => Ok(reminder(&a, &title, deadline, now, public_url)),
            _ => Err("the deadline passed before it could be sent".into()),
        },
        EmailKind::Receipt => {
            let id = data["submission"].as_i64().ok_or("no submission named")?;
            let (row, _) = store.submission(id).await.map_err(|e| crate::errors::chain(&e))?.ok_or("the submission is gone")?;
            Ok(receipt(&a, &title, row.number, &row.commit, row.pushed_at, public_url))
        }
    }
}

/// What the server's mail loop needs.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub mailer: Mailer,
    pub tasks: Arc<Catalog>,
    pub public_url: String,
    pub reminders: Vec<i64>,
    /// When the reminders were last looked for (once a minute: it reads every assignment).
    pub reminders_scanned: std::sync::Mutex<Option<i64>>,
}

/// How often the reminders due are looked for.
const REMINDER_SCAN_SECONDS: i64 = 60;

impl Outbox {
    /// Sends what is due at `now` (and, once a minute, queues the reminders due); returns how
    /// many were sent.
    pub async fn run_once(&self, now: i64) -> usize {
        let scan = {
            let mut last = self.reminders_scanned.lock().unwrap();
            let due = last.is_none_or(|at| now - at >= REMINDER_SCAN_SECONDS || now < at);
            if due {
                *last = Some(now);
            }
            due
        };
        if scan {
            if let Err(e) = queue_reminders(self.store.as_ref(), &self.reminders, now).await {
                debug!(error = %crate::errors::Chain(&e), "cannot queue reminders");
            }
        }
        let due = match self.store.due_emails(now, 20).await {
            Ok(due) => due,
            Err(e) => {
                debug!(error = %crate::errors::Chain(&e), "cannot read the e-mail outbox");
                return 0;
            }
        };
        let mut sent = 0;
        for email in due {
            let outcome = match compose(self.store.as_ref(), &self.tasks, &self.public_url, &email, now).await {
                Err(reason) => Err(SendError { permanent: true, message: reason }),
                Ok(message) => self.mailer.send(&email.recipient, &message.subject, message.text, &email.key).await,
            };
            let (done, retry, error) = match outcome {
                Ok(()) => (true, None, String::new()),
                Err(e) => (false, if e.permanent { None } else { crate::webhook::retry_after(email.attempts + 1).map(|after| now + after) }, e.message),
            };
            if done {
                sent += 1;
                info!(email = email.id, kind = email.kind.as_str(), assignment = %email.assignment, "e-mail sent");
            } else {
                warn!(email = email.id, kind = email.kind.as_str(), error = %error, retry = retry.is_some(), "e-mail not sent");
            }
            if let Err(e) = self.store.email_attempted(email.id, done, retry, &error, crate::units::now()).await {
                warn!(error = %crate::errors::Chain(&e), "cannot record an e-mail attempt");
            }
        }
        sent
    }
}

/// Sends the outbox until `shutdown`, looking every two seconds (messages queued by workers on
/// other hosts and by `takehome assign` in another process, retries coming due, reminders).
pub async fn deliver(outbox: Outbox, shutdown: CancellationToken) {
    loop {
        outbox.run_once(crate::units::now()).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_parse_with_secure_defaults() {
        let s = Server::parse("smtp://ada%40example.com:p%3Ass@mail.example.com").unwrap();
        assert_eq!((s.security, s.host.as_str(), s.port), (Security::StartTls, "mail.example.com", 587));
        assert_eq!((s.user.as_deref(), s.password.as_deref()), (Some("ada@example.com"), Some("p:ss")));
        assert!(!format!("{s:?}").contains("p:ss"), "the password is never shown");
        let t = Server::parse("smtps://mail.example.com").unwrap();
        assert_eq!((t.security, t.port), (Security::Tls, 465));
        let p = Server::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((p.security, p.port, p.user), (Security::Plain, 2525, None));
        assert_eq!(Server::parse("smtp://[::1]:25?tls=none").unwrap().host, "::1");
        assert_eq!(Server::parse("smtp://[::1]?tls=none").unwrap().port, 25);
        assert!(Server::parse("http://mail.example.com").unwrap_err().to_string().contains("smtp://"));
        assert!(Server::parse("smtp://mail.example.com?tls=maybe").unwrap_err().to_string().contains("tls=none"));
        assert!(Server::parse("smtp://user@mail.example.com").unwrap_err().to_string().contains("user:password"));
        assert!(Server::parse("smtp://mail.example.com:99999").unwrap_err().to_string().contains("port"));
    }

    #[test]
    fn settings_need_a_sender_and_sort_reminders() {
        let s = Settings::parse("smtps://mail.example.com", Some("Hiring <hiring@example.com>"), Some("1h, 24h,1h")).unwrap();
        assert_eq!(s.reminders, vec![86_400, 3_600]);
        assert_eq!(Settings::parse("smtps://m.example.com", None, None).unwrap_err().0, "smtp_from");
        assert_eq!(Settings::parse("smtps://m.example.com", Some("not an address"), None).unwrap_err().0, "smtp_from");
        assert_eq!(Settings::parse("smtps://m.example.com", Some("a@b.example"), Some("soon")).unwrap_err().0, "email_reminders");
        assert_eq!(Settings::parse("smtps://m.example.com", Some("a@b.example"), None).unwrap().reminders, vec![86_400, 3_600]);
    }

    #[test]
    fn messages_say_what_to_do_and_never_a_score() {
        let a = Assignment {
            id: "a0123456789ab".into(),
            task: "penguins-cleaning".parse().unwrap(),
            candidate: "lin@example.com".into(),
            token_hash: String::new(),
            time_box_seconds: 4 * 3600,
            starts: Starts::OnClone,
            started_at: None,
            created_at: 0,
            extra_seconds: 0,
        };
        let m = invitation(&a, "Penguins: clean the table", "tok-123", "https://th.example.com/");
        assert_eq!(m.subject, "Your take-home assessment: Penguins: clean the table");
        for needle in ["git clone https://th.example.com/git/a0123456789ab.git", "tok-123", "https://th.example.com/status/a0123456789ab", "4h", "first clone"]
        {
            assert!(m.text.contains(needle), "{needle}: {}", m.text);
        }
        let r = receipt(&a, "Penguins", 2, "0123456789abcdef0123", 0, "https://th.example.com");
        assert!(r.text.contains("push 2") && r.text.contains("commit 0123456789ab,") && !r.text.contains("score"), "{}", r.text);
        assert!(check_address("lin@example.com").is_ok() && check_address("lin").is_err() && check_address("a b@example.com").is_err());
    }
}
