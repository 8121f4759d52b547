//! TLS for what the server calls out to: https webhook receivers (and, on the same roots, any
//! other outgoing connection). rustls with ring; the platform's root certificates
//! (`/etc/ssl/certs`, read by rustls-native-certs) and, when `tls_ca_file` is set, the
//! certificates of that PEM file beside them, for receivers signed by a company's own CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Why the trusted roots could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_ca_file: cannot read {}", path.display())]
    Read { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("tls_ca_file: {} holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)", path.display())]
    Empty { path: PathBuf },
    #[error("tls_ca_file: {} holds a certificate that is not a CA certificate rustls can use", path.display())]
    Unusable { path: PathBuf, source: rustls::Error },
}

/// The certificates of a PEM file, refused when it holds none.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::Empty { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// A client configuration trusting the platform's roots and the certificates of `ca_file`.
/// Platform certificates that cannot be read or parsed are skipped (a log line says how many).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if !native.errors.is_empty() || ignored > 0 {
        tracing::debug!(added, ignored, errors = native.errors.len(), "platform root certificates skipped");
    }
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|source| TlsError::Unusable { path: path.to_path_buf(), source })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a TLS connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{host:?} is not a host name or an IP address")]
    Name { host: String },
    #[error("TLS handshake with {host} failed")]
    Handshake { host: String, source: std::io::Error },
}

/// A TLS session over `tcp` with `host`, whose certificate must name it.
pub async fn connect(config: &Arc<rustls::ClientConfig>, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ConnectError> {
    let name = ServerName::try_from(host.to_string()).map_err(|_| ConnectError::Name { host: host.to_string() })?;
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|source| ConnectError::Handshake { host: host.to_string(), source })
}
