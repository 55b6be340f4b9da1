//! A JWKS published at an HTTP(S) URL: the key set an issuer's tokens verify against, replaced
//! whole by each good fetch, so an identity provider rotates keys without a Herald restart.
//!
//! The state lives here and the fetching in [`fetch`] (the only network client of `auth`). A
//! verification reads the current set (an `Arc` clone under a read lock); a token that names a
//! `kid` no key has asks for a refetch, which the refresher runs at most once per
//! `JWKS_MIN_REFETCH_INTERVAL`, so a flood of bogus `kid`s cannot make Herald hammer the provider.
//! A failed fetch keeps the last good set serving.

pub mod fetch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::public_keys::{KeyError, PublicKey};

/// How often and how eagerly key sets are fetched (`JWKS_REFRESH_INTERVAL`,
/// `JWKS_MIN_REFETCH_INTERVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksTiming {
    /// A loaded set is fetched again this often.
    pub refresh: Duration,
    /// Fetches of one set are at least this far apart, whatever asks (an unknown `kid`, a set
    /// not loaded yet).
    pub min_refetch: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            refresh: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
        }
    }
}

/// Where a key set is published: `http://` or `https://`, host, port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUrl {
    /// Whether it is `https`.
    pub https: bool,
    /// The host (a name or an address), as TLS and `Host` see it.
    pub host: String,
    /// The port (80 or 443 unless given).
    pub port: u16,
    /// The path and query.
    pub path: String,
    /// The URL as configured.
    pub text: String,
}

impl JwksUrl {
    /// Parses a configured URL; only `http` and `https` with a host are accepted.
    pub fn parse(text: &str) -> Result<JwksUrl, KeyError> {
        let bad = |why: &str| KeyError::Jwks(format!("jwks_url {text:?}: {why}"));
        let uri: hyper::Uri = text.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("credentials in the URL are not supported"));
        }
        Ok(JwksUrl {
            https,
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            text: text.to_owned(),
        })
    }
}

/// One issuer's published key set.
#[derive(Debug)]
pub struct JwksSource {
    /// Where it is published.
    pub url: JwksUrl,
    keys: RwLock<Arc<[PublicKey]>>,
    loaded: AtomicBool,
    refetch: Notify,
}

impl JwksSource {
    /// A set not fetched yet: it verifies nothing until its first good fetch.
    pub fn new(url: JwksUrl) -> JwksSource {
        JwksSource {
            url,
            keys: RwLock::new(Arc::from(Vec::new())),
            loaded: AtomicBool::new(false),
            refetch: Notify::new(),
        }
    }

    /// The current keys.
    pub fn keys(&self) -> Arc<[PublicKey]> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set with a good fetch's keys.
    pub fn replace(&self, keys: Vec<PublicKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(keys);
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether a fetch ever succeeded.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// A token named a `kid` the set lacks: fetch again (as soon as the rate limit allows).
    pub fn ask_refetch(&self) {
        self.refetch.notify_one();
    }

    /// Resolves once a refetch was asked for (asks made meanwhile count once).
    pub async fn refetch_asked(&self) {
        self.refetch.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        let u = JwksUrl::parse("https://idp.example/.well-known/jwks.json").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "idp.example", 443, "/.well-known/jwks.json")
        );
        let u = JwksUrl::parse("http://127.0.0.1:8080/keys?v=2").unwrap();
        assert_eq!((u.https, u.port, u.path.as_str()), (false, 8080, "/keys?v=2"));
        assert_eq!(JwksUrl::parse("http://[::1]:9/").unwrap().host, "::1");
        for bad in [
            "",
            "ftp://x/keys",
            "file:///etc/jwks.json",
            "/keys",
            "https://user:pw@idp/keys",
        ] {
            assert!(JwksUrl::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_set_verifies_nothing_until_loaded_and_is_replaced_whole() {
        let source = JwksSource::new(JwksUrl::parse("http://idp/keys").unwrap());
        assert!(!source.loaded());
        assert!(source.keys().is_empty());
        source.replace(Vec::new());
        assert!(source.loaded());
    }
}
