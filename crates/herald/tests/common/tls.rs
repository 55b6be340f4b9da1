//! TLS for black-box tests: a self-signed certificate made at test time, and a blocking
//! HTTP/1.1-over-TLS client that trusts it.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::{CertificateDer, ServerName};

use super::{DEADLINE, Herald};

/// A certificate for `localhost` and its key, written as PEM files in a fresh directory.
pub struct Cert {
    pub dir: std::path::PathBuf,
    pub der: CertificateDer<'static>,
}

impl Cert {
    pub fn new(name: &str) -> Cert {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("herald-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Cert {
            dir,
            der: cert.der().clone(),
        }
    }

    /// `SSL_CERTFILE` and `SSL_KEYFILE` for this certificate.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("SSL_CERTFILE", self.dir.join("cert.pem").to_str().unwrap().to_owned()),
            ("SSL_KEYFILE", self.dir.join("key.pem").to_str().unwrap().to_owned()),
        ]
    }

    /// A client configuration that trusts this certificate and offers `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts Herald serving HTTPS with `cert`, plus `env`.
pub fn start_tls(cert: &Cert, env: &[(&str, &str)]) -> Herald {
    let files = cert.env();
    let mut all: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(env);
    Herald::start_with(&all)
}

/// A blocking TLS connection to the public API offering `alpn`.
pub fn tls_client(h: &Herald, cert: &Cert, alpn: &[&[u8]]) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let conn = rustls::ClientConnection::new(
        Arc::new(cert.client_config(alpn)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(h.public).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads until `needle` has been seen; returns everything read.
pub fn read_until(stream: &mut impl Read, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before {needle:?}: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}
