//! The subscribe side: the public API's address, limits and CORS, its TLS files, and the timing
//! of the streams it holds open (`SSE_TIMEOUT`, `SSE_KEEPALIVE`).

use std::net::IpAddr;
use std::time::Duration;

use regex::Regex;

use super::reader::Reader;

/// The default `PUBLIC_API_ALLOWED_ORIGINS`: local development origins on any port.
pub const DEFAULT_ALLOWED_ORIGINS: &str = r"https?://(localhost|127\.0\.0\.1)(:[0-9]+)?";

/// The public (subscribe) API.
#[derive(Debug, Clone)]
pub struct PublicApiConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Bind port.
    pub port: u16,
    /// Prefix of `/v1/subscribe`.
    pub context_path: String,
    /// Largest `exp - iat` of a subscriber token, seconds.
    pub jwt_max_lifetime_s: u64,
    /// Cap on concurrent connections; `None` is unlimited.
    pub max_connections: Option<usize>,
    /// New subscriptions admitted per second; `None` is unlimited.
    pub max_subscriptions_per_second: Option<u32>,
    /// CORS origins allowed by a preflight; anchored.
    pub allowed_origins: Regex,
    /// `access-control-max-age`, seconds.
    pub preflight_max_age_s: u64,
    /// Longest request header value, bytes.
    pub max_header_value_length: usize,
    /// HTTPS, when both files are set.
    pub tls: Option<TlsFiles>,
    /// Most topics one v2 connection may hold.
    pub max_topics_per_connection: usize,
    /// Roles whose tokens read any topic of their issuer.
    pub privileged_roles: Vec<String>,
    /// The cookie a browser's token may come in (v2).
    pub token_cookie: String,
    /// How long a v2 ticket may wait for its one use.
    pub ticket_lifetime: Duration,
}

/// Most topics a connection may hold at most: beyond, its cursor outgrows what URLs and headers
/// carry comfortably (spec/transports.md §4.2).
const MAX_TOPICS_LIMIT: u64 = 256;

/// The PEM files of the public API's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `SSL_CERTFILE`.
    pub cert_file: std::path::PathBuf,
    /// `SSL_KEYFILE`.
    pub key_file: std::path::PathBuf,
}

/// Stream timing.
#[derive(Debug, Clone, Copy)]
pub struct SseConfig {
    /// No message for this long ends the stream with `timeout`.
    pub timeout: Duration,
    /// Silence for this long sends a `ping`.
    pub keepalive: Duration,
}

/// Reads the public API, then the stream timing, then the TLS files: the order in which their
/// errors have always been reported.
pub(super) fn read(r: &mut Reader<'_>) -> (PublicApiConfig, SseConfig) {
    let allowed_origins = r.parse(
        "PUBLIC_API_ALLOWED_ORIGINS",
        anchored(DEFAULT_ALLOWED_ORIGINS).expect("the default origin pattern compiles"),
        |s| anchored(s).map_err(|e| format!("expected a regular expression: {e}")),
    );
    let mut public_api = PublicApiConfig {
        host: r.host("PUBLIC_API_HOST"),
        port: r.port("PUBLIC_API_PORT", 4000),
        context_path: r.parse("PUBLIC_API_CONTEXT_PATH", String::new(), |s| {
            if s.is_empty() || (s.starts_with('/') && !s.ends_with('/')) {
                Ok(s.to_owned())
            } else {
                Err("expected an empty value or a path that starts with / and does not end with /".to_owned())
            }
        }),
        jwt_max_lifetime_s: r.integer("PUBLIC_API_JWT_MAX_LIFETIME", 120, 1, 10 * 365 * 86400),
        max_connections: r.parse("PUBLIC_API_MAX_CONNECTIONS", None, |s| {
            if s.eq_ignore_ascii_case("infinity") {
                return Ok(None);
            }
            match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err("expected infinity or a whole number above 0".to_owned()),
            }
        }),
        max_subscriptions_per_second: r.parse("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", None, |s| {
            let max = crate::http::admission::MAX_RATE;
            if s.eq_ignore_ascii_case("infinity") {
                return Ok(None);
            }
            match s.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!("expected infinity or a whole number from 1 to {max}")),
            }
        }),
        allowed_origins,
        preflight_max_age_s: r.integer("PREFLIGHT_MAX_AGE", 86400, 0, u64::from(u32::MAX)),
        max_header_value_length: r.integer("MAX_HEADER_VALUE_LENGTH", 8192, 64, 1 << 20) as usize,
        // Set below, once the stream timing has been read.
        tls: None,
        max_topics_per_connection: r.integer("PUBLIC_API_MAX_TOPICS_PER_CONNECTION", 64, 1, MAX_TOPICS_LIMIT) as usize,
        privileged_roles: r.parse("PUBLIC_API_PRIVILEGED_ROLES", Vec::new(), |s| {
            Ok(s.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect())
        }),
        ticket_lifetime: Duration::from_secs(r.integer("PUBLIC_API_TICKET_LIFETIME", 60, 1, 3600)),
        token_cookie: r.parse("PUBLIC_API_TOKEN_COOKIE", "herald_token".to_owned(), |s| {
            // RFC 6265: a cookie name is an HTTP token.
            let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if !s.is_empty() && s.chars().all(is_token) {
                Ok(s.to_owned())
            } else {
                Err("expected a cookie name: letters, digits and !#$%&'*+-.^_`|~".to_owned())
            }
        }),
    };

    let sse = SseConfig {
        timeout: Duration::from_millis(r.integer("SSE_TIMEOUT", 900_000, 1, u64::from(u32::MAX))),
        keepalive: Duration::from_millis(r.integer("SSE_KEEPALIVE", 600_000, 1, u64::from(u32::MAX))),
    };

    let tls = match (
        r.raw("SSL_CERTFILE").filter(|v| !v.is_empty()),
        r.raw("SSL_KEYFILE").filter(|v| !v.is_empty()),
    ) {
        (None, None) => None,
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }),
        (Some(cert), None) => {
            r.fail(
                "SSL_KEYFILE",
                "",
                format!("must be set too, since SSL_CERTFILE is ({cert})"),
            );
            None
        }
        (None, Some(key)) => {
            r.fail(
                "SSL_CERTFILE",
                "",
                format!("must be set too, since SSL_KEYFILE is ({key})"),
            );
            None
        }
    };

    public_api.tls = tls;
    (public_api, sse)
}

/// Compiles `pattern` so that it must match a whole string.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn the_subscription_rate_is_infinity_or_a_positive_number() {
        let c = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", " 500 ")]).unwrap();
        assert_eq!(c.public_api.max_subscriptions_per_second, Some(500));
        let c = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", "Infinity")]).unwrap();
        assert_eq!(c.public_api.max_subscriptions_per_second, None);
        for bad in ["0", "-1", "2000000", "fast", ""] {
            let err = parse(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", bad)]).unwrap_err();
            assert_eq!(
                err.0[0].reason, "expected infinity or a whole number from 1 to 1000000",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn allowed_origins_must_match_in_full() {
        let c = parse(&[]).unwrap();
        let re = &c.public_api.allowed_origins;
        assert!(re.is_match("http://localhost:3000"));
        assert!(re.is_match("https://127.0.0.1"));
        assert!(!re.is_match("http://localhost.evil.com"));
        assert!(!re.is_match("http://evil.com/http://localhost"));
    }

    #[test]
    fn v2_settings_have_defaults_and_limits() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.public_api.max_topics_per_connection, 64);
        assert!(c.public_api.privileged_roles.is_empty());
        assert_eq!(c.public_api.token_cookie, "herald_token");
        assert_eq!(c.public_api.ticket_lifetime, std::time::Duration::from_secs(60));
        let c = parse(&[
            ("PUBLIC_API_PRIVILEGED_ROLES", " admin, support ,"),
            ("PUBLIC_API_TOKEN_COOKIE", "push"),
        ])
        .unwrap();
        assert_eq!(c.public_api.privileged_roles, ["admin", "support"]);
        assert_eq!(c.public_api.token_cookie, "push");
        let err = parse(&[
            ("PUBLIC_API_MAX_TOPICS_PER_CONNECTION", "0"),
            ("PUBLIC_API_TOKEN_COOKIE", "a b"),
        ])
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            ["PUBLIC_API_MAX_TOPICS_PER_CONNECTION", "PUBLIC_API_TOKEN_COOKIE"]
        );
    }

    #[test]
    fn tls_needs_both_files() {
        let err = parse(&[("SSL_CERTFILE", "/tmp/cert.pem")]).unwrap_err();
        assert_eq!(err.0[0].name, "SSL_KEYFILE");
        let c = parse(&[("SSL_CERTFILE", "/c.pem"), ("SSL_KEYFILE", "/k.pem")]).unwrap();
        assert_eq!(c.public_api.tls.unwrap().key_file, std::path::PathBuf::from("/k.pem"));
    }
}
