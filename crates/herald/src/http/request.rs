//! The requests of the public API, reduced to only what Herald uses.
//!
//! [`Request`] is what every decision is made from, whatever the protocol: an HTTP/1.x head is
//! parsed here with `httparse` into a [`RequestHead`] (the request plus HTTP/1 connection
//! details), and an HTTP/2 request's header list goes through the same [`Request::read`], so
//! both protocols apply the same header limits.
//!
//! Pure: bytes in, a [`RequestHead`] or a precise [`HeadError`] out. No I/O, so it is unit-tested
//! on exact bytes and fuzzed.

use crate::model::ResumeFrom;
use crate::observe::request_log::LoggedHeaders;
use crate::transport::ws::handshake::UpgradeHeaders;

/// Most header lines accepted in one request (cowboy's default is 100 as well).
pub const MAX_HEADERS: usize = 100;

/// Extra room for the request line and other headers on top of one maximal header value.
const HEAD_SLACK: usize = 64 * 1024;

/// Size limits of a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Longest header value (`MAX_HEADER_VALUE_LENGTH`).
    pub max_header_value_length: usize,
}

impl HeadLimits {
    /// Largest whole head accepted.
    pub fn max_head_bytes(&self) -> usize {
        self.max_header_value_length + HEAD_SLACK
    }
}

/// The methods the public API tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `OPTIONS` (CORS preflight)
    Options,
    /// Anything else.
    Other,
}

/// How the request body, if any, is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body, or `content-length: 0`.
    Empty,
    /// `content-length: n`.
    Length(u64),
    /// `transfer-encoding`: the connection is not reused after such a request.
    Chunked,
}

/// What the public API reads from a request, whatever the protocol (HTTP/1.x parsed here,
/// HTTP/2 from hyper): every decision about a request is made from this alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The query string (after `?`), raw; never logged, since it may carry a token.
    pub query: String,
    /// Every `authorization` value, in order.
    pub authorization: Vec<Vec<u8>>,
    /// The `origin` values.
    pub origin: Vec<String>,
    /// The first `last-event-id` value.
    pub last_event_id: Option<Vec<u8>>,
    /// The `access-control-request-headers` values.
    pub access_control_request_headers: Vec<String>,
    /// Every `cookie` value, in order; never logged.
    pub cookie: Vec<Vec<u8>>,
    /// The WebSocket handshake's headers (`/v2/ws`).
    pub upgrade: UpgradeHeaders,
    /// What the request's log lines say about it (never the `authorization` header).
    pub log: LoggedHeaders,
}

impl Request {
    /// Reads a request from its method, target and header lines, enforcing the header limits of
    /// the public API: more than [`MAX_HEADERS`] lines, or a value longer than
    /// `MAX_HEADER_VALUE_LENGTH`, is [`HeadError::TooLarge`] (431), over either protocol.
    pub fn read<'h>(
        method: &str,
        target: &str,
        headers: impl Iterator<Item = (&'h str, &'h [u8])>,
        limits: HeadLimits,
    ) -> Result<Request, HeadError> {
        let log = LoggedHeaders::new(method);
        let method = match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut request = Request {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            authorization: Vec::new(),
            origin: Vec::new(),
            last_event_id: None,
            access_control_request_headers: Vec::new(),
            cookie: Vec::new(),
            upgrade: UpgradeHeaders::default(),
            log,
        };
        for (i, (name, value)) in headers.enumerate() {
            if i == MAX_HEADERS {
                return Err(too_many_headers());
            }
            if value.len() > limits.max_header_value_length {
                return Err(HeadError::TooLarge(format!(
                    "header {name} is {} bytes long; the limit (MAX_HEADER_VALUE_LENGTH) is {}",
                    value.len(),
                    limits.max_header_value_length
                )));
            }
            if request.log.observe(name, value) || request.upgrade.observe(name, value) {
                continue;
            }
            if name.eq_ignore_ascii_case("authorization") {
                request.authorization.push(value.to_vec());
            } else if name.eq_ignore_ascii_case("origin") {
                request.origin.push(String::from_utf8_lossy(value).into_owned());
            } else if name.eq_ignore_ascii_case("last-event-id") {
                request.last_event_id.get_or_insert_with(|| value.to_vec());
            } else if name.eq_ignore_ascii_case("cookie") {
                request.cookie.push(value.to_vec());
            } else if name.eq_ignore_ascii_case("access-control-request-headers") {
                request
                    .access_control_request_headers
                    .push(String::from_utf8_lossy(value).into_owned());
            }
        }
        Ok(request)
    }

    /// The single `origin`, if there is exactly one.
    pub fn single_origin(&self) -> Option<&str> {
        match self.origin.as_slice() {
            [o] => Some(o),
            _ => None,
        }
    }
}

/// An HTTP/1.x request head: the [`Request`] and how the connection goes on after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// What the request asks.
    pub request: Request,
    /// Whether the client allows the connection to be reused.
    pub keep_alive: bool,
    /// HTTP/1.0: no chunked encoding; a body ends when the connection closes.
    pub http10: bool,
    /// The body framing.
    pub body: Body,
    /// Bytes the head took.
    pub len: usize,
}

/// Why a head was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// A header value is longer than `MAX_HEADER_VALUE_LENGTH`, or the head is too large: 431.
    #[error("{0}")]
    TooLarge(String),
    /// Not a valid HTTP/1.x request head: 400.
    #[error("{0}")]
    Malformed(String),
}

fn too_many_headers() -> HeadError {
    HeadError::TooLarge(format!("more than {MAX_HEADERS} header lines"))
}

/// Parses `buf`; `Ok(None)` when the head is not complete yet.
pub fn parse_head(buf: &[u8], limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head_bytes() {
                Err(HeadError::TooLarge(format!(
                    "request head larger than {} bytes",
                    limits.max_head_bytes()
                )))
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_many_headers()),
        Err(e) => return Err(HeadError::Malformed(format!("malformed request head: {e}"))),
    };
    let request = Request::read(
        req.method.unwrap_or_default(),
        req.path.unwrap_or_default(),
        req.headers.iter().map(|h| (h.name, h.value)),
        limits,
    )?;
    let http11 = req.version == Some(1);
    let mut keep_alive = http11;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| HeadError::Malformed("content-length is not a number".to_owned()))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HeadError::Malformed("conflicting content-length headers".to_owned()));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let body = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(HeadError::Malformed(
                "both content-length and transfer-encoding".to_owned(),
            ));
        }
        (true, None) => Body::Chunked,
        (false, Some(0) | None) => Body::Empty,
        (false, Some(n)) => Body::Length(n),
    };
    Ok(Some(RequestHead {
        request,
        keep_alive,
        http10: !http11,
        body,
        len,
    }))
}

/// A `Last-Event-ID` that is not an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Wrong value for last-event-id")]
pub struct InvalidLastEventId;

/// Parses a `Last-Event-ID` value as Neurow does (`Integer.parse` of the whole value): an
/// optional sign and decimal digits, nothing else. Values beyond the id range saturate.
pub fn parse_last_event_id(value: Option<&[u8]>) -> Result<ResumeFrom, InvalidLastEventId> {
    let Some(value) = value else {
        return Ok(ResumeFrom::Live);
    };
    let (negative, digits) = match value.first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidLastEventId);
    }
    // Saturate well above u64::MAX: every id is below it, so the comparison stays exact.
    const CEILING: i128 = 1 << 80;
    let magnitude = digits
        .iter()
        .fold(0i128, |acc, d| (acc * 10 + i128::from(d - b'0')).min(CEILING));
    Ok(ResumeFrom::After(if negative { -magnitude } else { magnitude }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_value_length: 8192,
    };

    fn parse(s: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_head(s.as_bytes(), LIMITS)
    }

    #[test]
    fn a_subscribe_request() {
        let raw = "GET /push/v1/subscribe?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nLast-Event-ID: 42\r\nLast-Event-ID: 7\r\n\r\nrest";
        let h = parse(raw).unwrap().unwrap();
        assert_eq!(h.request.method, Method::Get);
        assert_eq!(h.request.path, "/push/v1/subscribe");
        assert_eq!(h.request.authorization, [b"Bearer t".to_vec()]);
        assert_eq!(h.request.last_event_id.as_deref(), Some(&b"42"[..]));
        assert!(h.keep_alive);
        assert_eq!(h.body, Body::Empty);
        assert_eq!(h.len, raw.len() - "rest".len());
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
    }

    #[test]
    fn an_8000_byte_cookie_is_fine_and_a_longer_value_is_431() {
        let ok = format!("GET / HTTP/1.1\r\ncookie: {}\r\n\r\n", "c".repeat(8000));
        assert!(parse(&ok).unwrap().is_some());
        let bad = format!("GET / HTTP/1.1\r\ncookie: {}\r\n\r\n", "c".repeat(8193));
        assert!(matches!(parse(&bad), Err(HeadError::TooLarge(m)) if m.contains("cookie")));
    }

    #[test]
    fn endless_heads_and_too_many_headers_are_431() {
        let endless = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(LIMITS.max_head_bytes() + 1));
        assert!(matches!(parse(&endless), Err(HeadError::TooLarge(_))));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(MAX_HEADERS + 1));
        assert!(matches!(parse(&many), Err(HeadError::TooLarge(_))));
    }

    #[test]
    fn garbage_is_400() {
        assert!(matches!(
            parse("\x00\x01\x02 nope\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse("POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn header_lists_from_http2_get_the_same_limits() {
        let long = vec![b'c'; 8193];
        let too_long = Request::read("GET", "/v1/subscribe", [("cookie", &long[..])].into_iter(), LIMITS);
        assert!(matches!(too_long, Err(HeadError::TooLarge(m)) if m.contains("cookie")));
        let many = vec![("x", &b"y"[..]); MAX_HEADERS + 1];
        assert_eq!(
            Request::read("GET", "/", many.into_iter(), LIMITS),
            Err(HeadError::TooLarge(format!("more than {MAX_HEADERS} header lines")))
        );
        let ok = Request::read(
            "POST",
            "/v1/subscribe?a=b",
            [("Last-Event-ID", &b"3"[..]), ("origin", b"http://x")].into_iter(),
            LIMITS,
        )
        .unwrap();
        assert_eq!((ok.method, ok.path.as_str()), (Method::Post, "/v1/subscribe"));
        assert_eq!(ok.last_event_id.as_deref(), Some(&b"3"[..]));
        assert_eq!(ok.single_origin(), Some("http://x"));
    }

    #[test]
    fn connection_and_body_framing() {
        let h = parse("POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.body, Body::Length(5));
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn last_event_id_is_parsed_like_integer_parse() {
        assert_eq!(parse_last_event_id(None), Ok(ResumeFrom::Live));
        assert_eq!(parse_last_event_id(Some(b"0")), Ok(ResumeFrom::After(0)));
        assert_eq!(parse_last_event_id(Some(b"+5")), Ok(ResumeFrom::After(5)));
        assert_eq!(parse_last_event_id(Some(b"-5")), Ok(ResumeFrom::After(-5)));
        assert_eq!(
            parse_last_event_id(Some(b"99999999999999999999999999999999999")),
            Ok(ResumeFrom::After(1 << 80))
        );
        for bad in [&b""[..], b"12abc", b"foo", b" 5", b"5 ", b"-", b"1.5"] {
            assert_eq!(
                parse_last_event_id(Some(bad)),
                Err(InvalidLastEventId),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
