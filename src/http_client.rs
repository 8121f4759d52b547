//! Outgoing HTTP/1.1 requests with a JSON or form body and a bounded answer (the OpenID
//! provider's discovery document, keys and token endpoint): hyper's client connection over TCP,
//! with TLS (see [`crate::tls`]) for `https://`. One connection per request; every request has a
//! deadline and every answer a byte limit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// An `http://` or `https://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// From the first `/` (at least `/`), query included.
    pub path: String,
}

/// Why a text is not a URL we can call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} is not an https:// or http:// URL")]
    Scheme(String),
    #[error("{url:?}: {port:?} is not a port")]
    Port { url: String, port: String },
    #[error("{0:?}: an unclosed [")]
    Bracket(String),
    #[error("{0:?} is not a URL like https://host.example.com/path (no user, spaces or fragment)")]
    Shape(String),
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let (tls, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(UrlError::Scheme(text.to_string())),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| UrlError::Bracket(text.to_string()))?;
                (host, after.strip_prefix(':'))
            }
            None => authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p))),
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| UrlError::Port { url: text.to_string(), port: p.to_string() })?,
            None => default_port,
        };
        if host.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n', '#']) {
            return Err(UrlError::Shape(text.to_string()));
        }
        Ok(Url { tls, host: host.to_string(), port, path })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// True for a host on this machine (where plain http is acceptable).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the URL")]
    Url(#[from] UrlError),
    #[error("{0}")]
    Request(String),
    #[error("cannot connect to {authority}")]
    Connect { authority: String, source: std::io::Error },
    #[error("TLS")]
    Tls(#[from] crate::tls::ConnectError),
    #[error("HTTP exchange with {authority}")]
    Http { authority: String, source: hyper::Error },
    #[error("the answer of {authority} is longer than {limit} bytes or broken")]
    Body { authority: String, limit: usize },
    #[error("no answer from {authority} within {} s", timeout.as_secs())]
    Timeout { authority: String, timeout: Duration },
}

/// An answer: its status and its body (whole, within the limit).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// What to send.
pub struct Outgoing<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: Vec<(HeaderName, String)>,
    /// The body and its content type.
    pub body: Option<(&'static str, Vec<u8>)>,
    /// The most the answer's body may hold.
    pub limit: usize,
    pub timeout: Duration,
}

/// Sends `outgoing` and reads the whole answer.
pub async fn send(tls: &Arc<rustls::ClientConfig>, outgoing: Outgoing<'_>) -> Result<Answer, HttpError> {
    let url = Url::parse(outgoing.url)?;
    let authority = url.authority();
    let (timeout, limit) = (outgoing.timeout, outgoing.limit);
    let work = async {
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| HttpError::Connect { authority: authority.clone(), source })?;
        let mut request = Request::builder().method(outgoing.method).uri(url.path.as_str());
        let headers = request.headers_mut().expect("a fresh builder");
        headers.insert(hyper::header::HOST, HeaderValue::from_str(&authority).map_err(|_| HttpError::Request(format!("{authority:?} is not a host")))?);
        headers.insert(hyper::header::USER_AGENT, HeaderValue::from_static(concat!("takehome/", env!("CARGO_PKG_VERSION"))));
        for (name, value) in &outgoing.headers {
            headers.insert(name.clone(), HeaderValue::from_str(value).map_err(|_| HttpError::Request(format!("header {name}: not a header value")))?);
        }
        let body = match outgoing.body {
            Some((content_type, bytes)) => {
                headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| HttpError::Request(e.to_string()))?;
        if url.tls {
            let stream = crate::tls::connect(tls, &url.host, tcp).await?;
            exchange(stream, request, &authority, limit).await
        } else {
            exchange(tcp, request, &authority, limit).await
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| HttpError::Timeout { authority: authority.clone(), timeout })?
}

async fn exchange(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    request: Request<Full<Bytes>>,
    authority: &str,
    limit: usize,
) -> Result<Answer, HttpError> {
    let http = |source| HttpError::Http { authority: authority.to_string(), source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http);
    let answer = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), limit).collect().await.map_err(|_| HttpError::Body { authority: authority.to_string(), limit })?;
            Ok(Answer { status, body: body.to_bytes() })
        }
        Err(e) => Err(e),
    };
    driver.abort();
    answer
}

/// `application/x-www-form-urlencoded` of `pairs` (also a URL's query).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("https://login.example.com/.well-known/openid-configuration").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str(), u.authority()),
            (true, "login.example.com", 443, "/.well-known/openid-configuration", "login.example.com".into())
        );
        let l = Url::parse("http://127.0.0.1:9400?x=1").unwrap();
        assert_eq!((l.port, l.path.as_str(), l.authority(), l.is_loopback()), (9400, "/?x=1", "127.0.0.1:9400".into(), true));
        assert_eq!(Url::parse("http://[::1]:80/a").unwrap().authority(), "[::1]");
        assert!(Url::parse("ftp://x/").is_err() && Url::parse("https://u@x/").is_err() && Url::parse("https://x:99999/").is_err());
        assert!(!Url::parse("https://login.example.com").unwrap().is_loopback());
    }

    #[test]
    fn forms_encode_reserved_characters() {
        assert_eq!(form_encode(&[("a b", "c&d=e/é"), ("x", "~_.-")]), "a%20b=c%26d%3De%2F%C3%A9&x=~_.-");
    }
}
