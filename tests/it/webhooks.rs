//! Webhooks over TLS: an `https://` receiver on loopback with a certificate from a CA made here
//! (openssl), reached when `tls_ca_file` names that CA, refused without it and when the
//! certificate does not name the host; the outbox's delivery loop posts over TLS.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const SECRET: &str = "webhook-secret-0123456789";

/// An https receiver on 127.0.0.1: answers each request 200 and sends what it read.
async fn receiver(dir: &Path) -> (u16, mpsc::UnboundedReceiver<String>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (send, receive) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, send) = (acceptor.clone(), send.clone());
            tokio::spawn(async move {
                // A refused handshake is the client's verdict; nothing to answer.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let n = tls.read(&mut buffer).await.unwrap_or(0);
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                        let length = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|n| n.trim().parse::<usize>().ok()).unwrap_or(0);
                        body.len() >= length
                    });
                    if n == 0 || complete {
                        break;
                    }
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                let _ = tls.shutdown().await;
                let _ = send.send(String::from_utf8_lossy(&request).into_owned());
            });
        }
    });
    (port, receive)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_receiver_signed_by_the_configured_ca_gets_signed_events_and_others_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    super::common::tls_certificates(scratch.path());
    let (port, mut received) = receiver(scratch.path()).await;
    let trusting = takehome::tls::client_config(Some(&scratch.path().join("ca.pem"))).unwrap();
    let body = r#"{"event":"review.decided","data":{"assignment":"a1"}}"#;

    // Trusted CA, the certificate names the host: delivered, signed, with its headers.
    let target = takehome::webhook::Target::parse(&format!("https://localhost:{port}/hooks/th"), SECRET).unwrap();
    assert!(target.tls);
    takehome::webhook::post(&target, &trusting, "review.decided", 7, body).await.unwrap();
    let request = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
    assert!(request.starts_with("POST /hooks/th HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("Host: localhost:{port}\r\n")) && request.contains("X-Takehome-Delivery: 7\r\n"), "{request}");
    assert!(request.contains(&format!("X-Takehome-Signature: {}\r\n", takehome::webhook::signature(SECRET, body))), "{request}");
    assert!(request.ends_with(body), "{request}");

    // The platform's roots alone do not know this CA.
    let platform = takehome::tls::client_config(None).unwrap();
    let error = takehome::errors::chain(&takehome::webhook::post(&target, &platform, "review.decided", 8, body).await.unwrap_err());
    assert!(error.contains("TLS handshake with localhost failed") && error.contains("UnknownIssuer"), "{error}");
    // The certificate names localhost, not 127.0.0.1.
    let by_address = takehome::webhook::Target::parse(&format!("https://127.0.0.1:{port}/hooks/th"), SECRET).unwrap();
    let error = takehome::errors::chain(&takehome::webhook::post(&by_address, &trusting, "review.decided", 9, body).await.unwrap_err());
    assert!(error.contains("certificate not valid for name \"127.0.0.1\""), "{error}");

    // The outbox's loop delivers over TLS and records it.
    let store = takehome::store::open(&takehome::store::DatabaseUrl::Sqlite(scratch.path().join("takehome.sqlite"))).await.unwrap();
    let queued = store.queue_webhook("review.decided", body, takehome::units::now()).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let loop_ = tokio::spawn(takehome::webhook::deliver(store.clone(), Some(target), trusting, Arc::new(tokio::sync::Notify::new()), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let hooks = store.webhooks(10).await.unwrap();
        if hooks.iter().any(|h| h.id == queued && h.delivered_at.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered over TLS: {hooks:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(received.recv().await.unwrap().contains(&format!("X-Takehome-Delivery: {queued}\r\n")));
    shutdown.cancel();
    loop_.await.unwrap();
}

#[test]
fn a_ca_file_that_holds_no_certificate_is_refused_when_the_config_is_loaded() {
    let scratch = tempfile::tempdir().unwrap();
    let ca = scratch.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let config = scratch.path().join("takehome.yaml");
    std::fs::write(&config, format!("tls_ca_file: {}\nwebhook_url: https://ats.example/hooks\nwebhook_secret: {SECRET}\n", ca.display())).unwrap();
    let error = takehome::config::Config::load(Some(&config), |_| None).unwrap_err().to_string();
    assert!(error.contains("tls_ca_file") && error.contains("holds no PEM certificate") && error.contains(&ca.display().to_string()), "{error}");
    let missing = scratch.path().join("missing.pem");
    std::fs::write(&config, format!("tls_ca_file: {}\n", missing.display())).unwrap();
    let error = takehome::config::Config::load(Some(&config), |_| None).unwrap_err().to_string();
    assert!(error.contains("cannot read") && error.contains("missing.pem"), "{error}");
}
