//! The request fields of a log line (spec §6): method, path, trace id, client address and user
//! agent, for the events a request produces (authentication refused, subscription opened,
//! publish accepted or refused).
//!
//! Why not a tracing span per request: a span stays in the registry while it is open, and a
//! subscription's request lasts for hours, so every idle stream would pay for one. Instead each
//! request event names these fields itself through [`request_event!`], which reads them only when
//! the event's level is enabled. The raw public API keeps the three headers it needs while it
//! parses the head ([`LoggedHeaders`]); the internal API reads them from its `HeaderMap`.
//!
//! What is never kept nor logged: the `Authorization` and `x-interservice-authorization` headers,
//! any token, the query string. Values are cut at [`MAX_LOGGED_VALUE`] bytes, so a client cannot
//! make a log line as long as its headers.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, Uri};

/// Longest header value or path written in a log line, in bytes.
pub const MAX_LOGGED_VALUE: usize = 512;

/// What the raw public API keeps of a request head for its log lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggedHeaders {
    /// The method as sent (the public API's own enum folds the ones it does not serve).
    pub method: Cow<'static, str>,
    /// `x-request-id`, cut to [`MAX_LOGGED_VALUE`].
    pub request_id: Option<String>,
    /// The first address of the first `x-forwarded-for`, when it is an IP address.
    pub forwarded_for: Option<IpAddr>,
    /// `user-agent`, cut to [`MAX_LOGGED_VALUE`].
    pub user_agent: Option<String>,
    seen_forwarded_for: bool,
}

impl LoggedHeaders {
    /// Starts with the request's method.
    pub fn new(method: &str) -> Self {
        let method = match method {
            "GET" => Cow::Borrowed("GET"),
            "POST" => Cow::Borrowed("POST"),
            "OPTIONS" => Cow::Borrowed("OPTIONS"),
            other => Cow::Owned(cut(other).to_owned()),
        };
        LoggedHeaders {
            method,
            ..LoggedHeaders::default()
        }
    }

    /// Keeps the header if it is one that is logged; true when it was.
    pub fn observe(&mut self, name: &str, value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case("x-request-id") {
            self.request_id
                .get_or_insert_with(|| cut(&String::from_utf8_lossy(value)).to_owned());
        } else if name.eq_ignore_ascii_case("user-agent") {
            self.user_agent
                .get_or_insert_with(|| cut(&String::from_utf8_lossy(value)).to_owned());
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            if !self.seen_forwarded_for {
                self.seen_forwarded_for = true;
                self.forwarded_for = std::str::from_utf8(value).ok().and_then(first_forwarded_for);
            }
        } else {
            return false;
        }
        true
    }
}

/// A request's log fields, borrowed from wherever the request is held.
#[derive(Clone, Copy, Debug)]
pub struct RequestLog<'a> {
    /// `http.request.method`.
    pub method: &'a str,
    /// `url.path`: the path without its query string.
    pub path: &'a str,
    /// `trace.id`: the `x-request-id` header.
    pub trace_id: Option<&'a str>,
    /// `client.ip`: the first `x-forwarded-for` address, else the connection's peer.
    pub client_ip: Option<IpAddr>,
    /// `user_agent.original`.
    pub user_agent: Option<&'a str>,
}

impl<'a> RequestLog<'a> {
    /// The fields of a public API request.
    pub fn raw(path: &'a str, headers: &'a LoggedHeaders, peer: Option<IpAddr>) -> Self {
        RequestLog {
            method: &headers.method,
            path: cut(path),
            trace_id: headers.request_id.as_deref(),
            client_ip: headers.forwarded_for.or(peer),
            user_agent: headers.user_agent.as_deref(),
        }
    }

    /// The fields of an internal API request; `peer` comes from axum's `ConnectInfo`.
    pub fn http(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap, peer: Option<SocketAddr>) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(cut);
        let forwarded_for = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(first_forwarded_for);
        RequestLog {
            method: method.as_str(),
            path: cut(uri.path()),
            trace_id: header("x-request-id"),
            client_ip: forwarded_for.or(peer.map(|p| p.ip())),
            user_agent: header("user-agent"),
        }
    }
}

/// The first entry of an `x-forwarded-for` value, if it is an IP address (with or without a
/// port). Anything else is dropped: `client.ip` is an `ip` field in Elastic's ECS mapping, and a
/// line whose value is not an address would be refused whole.
pub fn first_forwarded_for(value: &str) -> Option<IpAddr> {
    let first = value.split(',').next()?.trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// `s` cut to at most [`MAX_LOGGED_VALUE`] bytes, on a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_LOGGED_VALUE {
        return s;
    }
    let mut end = MAX_LOGGED_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Emits a tracing event at `$level` carrying a [`RequestLog`]'s fields, then the given fields and
/// message. `$request` is evaluated only when the level is enabled, so a request that logs
/// nothing pays nothing.
///
/// ```ignore
/// request_event!(Level::DEBUG, RequestLog::raw(&head.path, &head.log, peer), issuer = %iss, "subscription opened");
/// ```
macro_rules! request_event {
    ($level:expr, $request:expr, $($fields_and_message:tt)+) => {
        if ::tracing::enabled!($level) {
            let request: $crate::observe::request_log::RequestLog<'_> = $request;
            ::tracing::event!(
                $level,
                http.request.method = request.method,
                url.path = request.path,
                trace.id = request.trace_id,
                client.ip = request.client_ip.map(::tracing::field::display),
                user_agent.original = request.user_agent,
                $($fields_and_message)+
            );
        }
    };
}
pub(crate) use request_event;

/// Logs a refused token at `warning` with `category: security`, by its error code only: never the
/// token (spec §6: Neurow logged it). `api` names the interface in the message.
pub fn authentication_refused(log: RequestLog<'_>, api: &str, e: crate::auth::AuthError) {
    request_event!(
        ::tracing::Level::WARN,
        log,
        category = "security",
        event.category = "authentication",
        event.outcome = "failure",
        error.code = format_args!("jwt_authentication.{}", e.code()),
        http.response.status_code = e.status(),
        "{api} authentication refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_forwarded_address_is_the_client() {
        let ip = |s: &str| first_forwarded_for(s).map(|a| a.to_string());
        assert_eq!(ip("203.0.113.7, 10.0.0.1, 10.0.0.2").as_deref(), Some("203.0.113.7"));
        assert_eq!(ip(" 2001:db8::1 ,10.0.0.1").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("203.0.113.7:4711").as_deref(), Some("203.0.113.7"));
        assert_eq!(ip("[2001:db8::1]:4711").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("unknown, 10.0.0.1"), None);
        assert_eq!(ip(""), None);
    }

    #[test]
    fn only_the_logged_headers_are_kept_and_only_the_first_forwarded_for_counts() {
        let mut h = LoggedHeaders::new("PATCH");
        assert!(!h.observe("authorization", b"Bearer secret"));
        assert!(!h.observe("x-interservice-authorization", b"Bearer secret"));
        assert!(h.observe("X-Request-Id", b"req-1"));
        assert!(h.observe("x-request-id", b"req-2"));
        assert!(h.observe("x-forwarded-for", b"bogus"));
        assert!(h.observe("x-forwarded-for", b"203.0.113.7"));
        assert!(h.observe("User-Agent", b"curl/8"));
        assert_eq!(h.method, "PATCH");
        assert_eq!(h.request_id.as_deref(), Some("req-1"));
        assert_eq!(h.forwarded_for, None);
        assert_eq!(h.user_agent.as_deref(), Some("curl/8"));
        let peer = "10.1.2.3".parse().ok();
        let log = RequestLog::raw("/v1/subscribe", &h, peer);
        assert_eq!(log.client_ip, peer);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = format!("a{}", "é".repeat(600));
        let mut h = LoggedHeaders::new("GET");
        h.observe("user-agent", long.as_bytes());
        let kept = h.user_agent.unwrap();
        assert!(kept.len() <= MAX_LOGGED_VALUE && kept.len() >= MAX_LOGGED_VALUE - 1);
        assert!(long.starts_with(&kept));
    }

    #[test]
    fn internal_requests_read_the_same_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "abc".parse().unwrap());
        headers.insert("x-forwarded-for", "198.51.100.2, 10.0.0.1".parse().unwrap());
        headers.insert("user-agent", "backend/1.0".parse().unwrap());
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        let uri: Uri = "/v1/publish?token=secret".parse().unwrap();
        let log = RequestLog::http(&Method::POST, &uri, &headers, "127.0.0.1:9".parse().ok());
        assert_eq!(log.method, "POST");
        assert_eq!(log.path, "/v1/publish");
        assert_eq!(log.trace_id, Some("abc"));
        assert_eq!(log.client_ip, "198.51.100.2".parse().ok());
        assert_eq!(log.user_agent, Some("backend/1.0"));
        headers.remove("x-forwarded-for");
        let log = RequestLog::http(&Method::POST, &uri, &headers, "127.0.0.1:9".parse().ok());
        assert_eq!(log.client_ip, "127.0.0.1".parse().ok());
    }
}
