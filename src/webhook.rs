//! Signed webhooks, so that an applicant tracking system can follow a cohort: `submission.graded`,
//! `review.scored` and `review.decided`.
//!
//! Whoever sees an event (a worker on any host, the server's review handlers) puts it in the
//! store's outbox; the server's [`deliver`] loop posts each one as JSON to the configured URL with
//! `X-Takehome-Signature: sha256=<hex HMAC-SHA256 of the exact body under the shared secret>`,
//! `X-Takehome-Event` and `X-Takehome-Delivery` (the outbox id: a receiver de-duplicates on it).
//! A delivery that fails (no answer, or an answer other than 2xx) is tried again after
//! 5 s, 10 s, 20 s … (doubling, at most an hour apart), and given up after [`MAX_ATTEMPTS`];
//! `GET /api/webhooks` shows each delivery's state. `https://` receivers are reached over TLS
//! (rustls: the platform's roots and the certificates of `tls_ca_file`, see [`crate::tls`]); the
//! receiver's certificate must name its host.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::Store;

pub const MAX_ATTEMPTS: i64 = 10;
const FIRST_RETRY_SECONDS: i64 = 5;
const MAX_RETRY_SECONDS: i64 = 3600;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where events go and the secret they are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: the receiver is reached over TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub secret: String,
}

impl Target {
    /// `https://host[:port]/path` (or `http://`) and a secret of at least 16 characters.
    pub fn parse(url: &str, secret: &str) -> Result<Target, TargetError> {
        if secret.len() < 16 {
            return Err(TargetError::ShortSecret);
        }
        let url = crate::http_client::Url::parse(url)?;
        Ok(Target { tls: url.tls, host: url.host, port: url.port, path: url.path, secret: secret.to_string() })
    }
}

/// Why the webhook settings are refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("webhook_secret: must be at least 16 characters (the receiver checks the signature with it)")]
    ShortSecret,
    #[error("webhook_url")]
    Url(#[from] crate::http_client::UrlError),
}

/// Why a delivery failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::ConnectError),
    #[error("cannot send")]
    Send(#[source] std::io::Error),
    #[error("no answer")]
    Read(#[source] std::io::Error),
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("the receiver's answer is not HTTP")]
    NotHttp,
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

/// What an event says happened (its `event` field and `X-Takehome-Event` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A submission was graded (on any worker).
    SubmissionGraded,
    /// A reviewer scored the rubric.
    ReviewScored,
    /// An assessor recorded a decision.
    ReviewDecided,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::SubmissionGraded => "submission.graded",
            Event::ReviewScored => "review.scored",
            Event::ReviewDecided => "review.decided",
        }
    }
}

/// The JSON body of an event (what is signed and sent).
pub fn event_body(event: Event, data: serde_json::Value, now: i64) -> String {
    serde_json::json!({ "event": event.as_str(), "at": crate::report::rfc3339(now), "data": data }).to_string()
}

/// `sha256=<hex>`: the signature header's value for `body`.
pub fn signature(secret: &str, body: &str) -> String {
    format!("sha256={}", crate::secret::hmac_hex(secret.as_bytes(), body.as_bytes()))
}

/// When to try again after `attempts` failed attempts, or `None` to give up.
pub fn retry_after(attempts: i64) -> Option<i64> {
    (attempts < MAX_ATTEMPTS).then(|| (FIRST_RETRY_SECONDS << (attempts - 1).clamp(0, 20)).min(MAX_RETRY_SECONDS))
}

/// One POST (over TLS for an `https://` target); Ok when the receiver answered 2xx.
pub async fn post(target: &Target, tls: &Arc<rustls::ClientConfig>, event: &str, delivery: i64, body: &str) -> Result<(), DeliveryError> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await.map_err(DeliveryError::Connect)?;
        if target.tls {
            let stream = crate::tls::connect(tls, &target.host, tcp).await?;
            exchange(stream, target, event, delivery, body).await
        } else {
            exchange(tcp, target, event, delivery, body).await
        }
    };
    tokio::time::timeout(TIMEOUT, attempt).await.map_err(|_| DeliveryError::Timeout(TIMEOUT))?
}

/// Sends the request on `stream` and reads the status line of the answer.
async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, target: &Target, event: &str, delivery: i64, body: &str) -> Result<(), DeliveryError> {
    let default_port = if target.tls { 443 } else { 80 };
    let name = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let host = if target.port == default_port { name } else { format!("{name}:{}", target.port) };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: takehome/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-Takehome-Event: {event}\r\nX-Takehome-Delivery: {delivery}\r\nX-Takehome-Signature: {}\r\nConnection: close\r\n\r\n",
        target.path,
        env!("CARGO_PKG_VERSION"),
        body.len(),
        signature(&target.secret, body)
    );
    stream.write_all(head.as_bytes()).await.map_err(DeliveryError::Send)?;
    stream.write_all(body.as_bytes()).await.map_err(DeliveryError::Send)?;
    stream.flush().await.map_err(DeliveryError::Send)?;
    // The status line is all we need.
    let mut answer = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < 4096 {
        let n = stream.read(&mut buffer).await.map_err(DeliveryError::Read)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    let status = line.lines().next().unwrap_or("").split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(DeliveryError::Status(code)),
        None => Err(DeliveryError::NotHttp),
    }
}

/// Delivers the outbox until `shutdown`: woken by `wake` (an event was queued here) and every
/// few seconds (events queued by workers on other hosts, retries coming due).
pub async fn deliver(store: Arc<dyn Store>, target: Option<Target>, tls: Arc<rustls::ClientConfig>, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let now = crate::units::now();
        match store.due_webhooks(now, 20).await {
            Ok(due) => {
                for hook in due {
                    let (delivered, retry, error) = match &target {
                        None => (false, None, "no webhook_url was configured when it came due".to_string()),
                        Some(target) => match post(target, &tls, &hook.event, hook.id, &hook.body).await {
                            Ok(()) => (true, None, String::new()),
                            Err(error) => (false, retry_after(hook.attempts + 1).map(|after| now + after), crate::errors::chain(&error)),
                        },
                    };
                    if !delivered && target.is_some() {
                        warn!(delivery = hook.id, event = %hook.event, error = %error, retry = retry.is_some(), "webhook not delivered");
                    }
                    if let Err(e) = store.webhook_attempted(hook.id, delivered, retry, &error, crate::units::now()).await {
                        warn!(error = %crate::errors::Chain(&e), "cannot record a webhook attempt");
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
            }
            Err(e) => debug!(error = %crate::errors::Chain(&e), "cannot read the webhook outbox"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://127.0.0.1:9000/hooks/th", "0123456789abcdef").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port, t.path.as_str()), (false, "127.0.0.1", 9000, "/hooks/th"));
        assert_eq!(Target::parse("http://ats.internal", "0123456789abcdef").unwrap().path, "/");
        let s = Target::parse("https://ats.example/hooks", "0123456789abcdef").unwrap();
        assert_eq!((s.tls, s.host.as_str(), s.port, s.path.as_str()), (true, "ats.example", 443, "/hooks"));
        assert_eq!(Target::parse("https://[::1]:8443/x", "0123456789abcdef").unwrap().port, 8443);
        assert!(crate::errors::chain(&Target::parse("ftp://ats.example/x", "0123456789abcdef").unwrap_err()).contains("https://"));
        assert_eq!(Target::parse("http://[::1]:81/x", "0123456789abcdef").unwrap().host, "::1");
        assert!(Target::parse("http://a/x", "short").unwrap_err().to_string().contains("16"));
        assert!(Target::parse("http://user:pw@a/x", "0123456789abcdef").is_err());
    }

    #[test]
    fn retries_double_then_give_up() {
        assert_eq!(retry_after(1), Some(5));
        assert_eq!(retry_after(2), Some(10));
        assert_eq!(retry_after(9), Some(1280));
        assert_eq!(retry_after(MAX_ATTEMPTS), None);
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(crate::secret::hmac_hex(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(signature("k", "{}").starts_with("sha256="));
    }
}
