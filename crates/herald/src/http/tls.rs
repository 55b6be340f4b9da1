//! TLS for the public API (`SSL_CERTFILE`, `SSL_KEYFILE`), with rustls.
//!
//! ALPN offers `h2` first, then `http/1.1`: a browser then multiplexes all its streams to the
//! node over one HTTP/2 connection instead of being held to six HTTP/1.1 connections per origin
//! (see `h2.rs`). A client that offers no ALPN, or only `http/1.1`, keeps the lean HTTP/1.1 path.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// The protocols offered through ALPN, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why TLS could not be set up; the message names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("SSL_CERTFILE={path:?}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("SSL_KEYFILE={path:?}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate and key do not go together, or rustls refused them.
    #[error("SSL_CERTFILE and SSL_KEYFILE cannot be used together: {0}")]
    Mismatch(String),
}

/// Loads a PEM certificate chain and private key into an acceptor.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert_file.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_error(format!("cannot read a PEM file ({e})")))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("invalid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
        path: key_file.display().to_string(),
        reason: format!("no usable private key in PEM ({e})"),
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}
