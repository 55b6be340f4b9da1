//! Fetching key sets: one `GET` over HTTP/1.1 (TLS for `https`, verified against the system's
//! trust store, which `SSL_CERT_FILE` and `SSL_CERT_DIR` override), bounded in time and size,
//! and the refresher task that keeps one set fresh.
//!
//! A connection per fetch: fetches are minutes apart, so a pool would only hold sockets open.
//! Redirects are not followed: the configured URL is the one trusted.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{JwksSource, JwksTiming, JwksUrl};
use crate::auth::public_keys::from_jwks;
use crate::observe::metrics::Metrics;
use crate::shutdown::stopped;

/// Longest a fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest key set accepted (a set of a few keys is a few KB).
const MAX_BODY: usize = 1 << 20;

/// The TLS client settings, built once: the system's roots.
static TLS: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "a system root certificate could not be loaded (JWKS over https)");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(roots = added, "TLS roots for JWKS fetches");
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
});

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer within [`FETCH_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection or TLS failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// Not a 200.
    #[error("answered {0}, not 200")]
    Status(u16),
    /// Not a usable key set.
    #[error("{0}")]
    Keys(String),
}

/// Fetches the document at `url`.
pub async fn fetch(url: &JwksUrl) -> Result<Bytes, FetchError> {
    match tokio::time::timeout(FETCH_TIMEOUT, exchange(url)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(FETCH_TIMEOUT)),
    }
}

async fn exchange(url: &JwksUrl) -> Result<Bytes, FetchError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if url.https {
        let name = ServerName::try_from(url.host.clone()).map_err(|e| FetchError::Connect(e.to_string()))?;
        let tls = TlsConnector::from(TLS.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| FetchError::Connect(format!("TLS: {e}")))?;
        get(url, tls).await
    } else {
        get(url, tcp).await
    }
}

async fn get<S>(url: &JwksUrl, stream: S) -> Result<Bytes, FetchError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let http = |e: hyper::Error| FetchError::Http(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let default_port = if url.https { 443 } else { 80 };
    let host = match (url.port == default_port, url.host.contains(':')) {
        (true, false) => url.host.clone(),
        (true, true) => format!("[{}]", url.host),
        (false, false) => format!("{}:{}", url.host, url.port),
        (false, true) => format!("[{}]:{}", url.host, url.port),
    };
    let request = hyper::Request::get(url.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT, "application/jwk-set+json, application/json")
        .header(hyper::header::USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != hyper::StatusCode::OK {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| FetchError::Http(format!("reading the body: {e} (at most {MAX_BODY} bytes)")))?;
    Ok(body.to_bytes())
}

/// Fetches `source` once and replaces its keys if the document is a usable set with at least
/// one signing key; reported to metrics either way. Returns how many keys it now has.
pub async fn refresh(issuer: &str, source: &JwksSource, metrics: &Metrics) -> Result<usize, FetchError> {
    let fetched = fetch(&source.url).await.and_then(|body| {
        let text = std::str::from_utf8(&body).map_err(|_| FetchError::Keys("the document is not UTF-8".into()))?;
        let keys = from_jwks(text).map_err(|e| FetchError::Keys(e.to_string()))?;
        if keys.is_empty() {
            return Err(FetchError::Keys("the set holds no signing key".into()));
        }
        Ok(keys)
    });
    match fetched {
        Ok(keys) => {
            let n = keys.len();
            source.replace(keys);
            metrics.jwks_fetched(issuer, true, n);
            Ok(n)
        }
        Err(e) => {
            metrics.jwks_fetched(issuer, false, source.keys().len());
            Err(e)
        }
    }
}

/// Keeps `source` fresh until `stop`: every `timing.refresh`, and when a token asks (an unknown
/// `kid`), never two fetches within `timing.min_refetch`; while no fetch ever succeeded, every
/// `timing.min_refetch`. The last good set serves through failures, which are logged once per
/// outage.
pub async fn keep_fresh(
    issuer: Arc<str>,
    source: Arc<JwksSource>,
    timing: JwksTiming,
    metrics: Arc<Metrics>,
    mut failing: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = tokio::time::Instant::now();
    loop {
        let wait = if source.loaded() {
            timing.refresh
        } else {
            timing.min_refetch
        };
        tokio::select! {
            _ = tokio::time::sleep_until(last + wait) => {}
            _ = source.refetch_asked() => {
                // Asked for by a token: not sooner than the rate limit allows.
                tokio::select! {
                    _ = tokio::time::sleep_until(last + timing.min_refetch) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
            _ = stopped(&mut stop) => return,
        }
        last = tokio::time::Instant::now();
        match refresh(&issuer, &source, &metrics).await {
            Ok(keys) => {
                if failing {
                    tracing::info!(issuer = &*issuer, url = source.url.text, keys, "JWKS fetched again");
                    failing = false;
                } else {
                    tracing::debug!(issuer = &*issuer, keys, "JWKS refreshed");
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        issuer = &*issuer,
                        url = source.url.text,
                        %error,
                        keys = source.keys().len(),
                        "cannot fetch the JWKS; the last good key set keeps serving"
                    );
                    failing = true;
                }
            }
        }
    }
}
