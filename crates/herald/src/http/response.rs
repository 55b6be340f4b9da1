//! Every public API response, spec §1.3 and §1.5, as protocol-neutral data: a status, header
//! lines and a body. HTTP/1.1 renders it to bytes here; HTTP/2 hands the same lines to hyper
//! without the hop-by-hop ones ([`is_hop_by_hop`]), so both protocols answer alike.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::transport::sse::frame::error_event;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines, lowercase names, in order; `content-length` is added when rendering.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
    /// Whether an HTTP/1.1 connection must close after it (HTTP/2 only ends the stream).
    pub close: bool,
}

impl Reply {
    /// The response as HTTP/1.1 bytes, head and body.
    pub fn http1(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "content-length: {}\r\n", self.body.len());
        if self.close {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Whether a header only concerns one HTTP/1 connection; HTTP/2 forbids these (RFC 9113 §8.2.2).
pub fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The header values of Neurow's SSE responses that errors repeat.
const SSE_CACHE_CONTROL: &str = "no-cache, no-store, max-age=0, must-revalidate";

fn complete(status: u16, headers: &[(&'static str, &str)], body: impl Into<Bytes>, close: bool) -> Reply {
    Reply {
        status,
        headers: headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(),
        body: body.into(),
        close,
    }
}

/// The headers of a successful subscription, the same over every protocol (HTTP/2 drops the
/// hop-by-hop `connection`). Built once per node.
pub fn stream_headers(timeout_ms: u128, keepalive_ms: u128) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "text/event-stream".to_owned()),
        ("access-control-allow-origin", "*".to_owned()),
        ("cache-control", SSE_CACHE_CONTROL.to_owned()),
        ("connection", "close".to_owned()),
        ("x-sse-timeout", timeout_ms.to_string()),
        ("x-sse-keepalive", keepalive_ms.to_string()),
        ("x-accel-buffering", "no".to_owned()),
    ]
}

/// Stream (or reply) headers made to allow credentials from `origin`, one of
/// `PUBLIC_API_ALLOWED_ORIGINS` (a wildcard origin cannot allow them).
pub fn credentialed(mut headers: Vec<(&'static str, String)>, origin: &str) -> Vec<(&'static str, String)> {
    headers.retain(|(name, _)| *name != "access-control-allow-origin");
    headers.push(("access-control-allow-origin", origin.to_owned()));
    headers.push(("access-control-allow-credentials", "true".to_owned()));
    // A page's script reads these across origins only when they are exposed (retry-after on a
    // 503 or 429; the keep-alive to size its idle timeout).
    headers.push((
        "access-control-expose-headers",
        "retry-after, x-sse-keepalive, x-sse-timeout".to_owned(),
    ));
    headers.push(("vary", "origin".to_owned()));
    headers
}

/// A v2 JSON answer (a long-poll's), never cached, with CORS for `origin` (with credentials)
/// when the request came from an allowed one.
pub fn json_ok(body: Bytes, origin: Option<&str>) -> Reply {
    json(200, body, origin, false)
}

/// A v2 error: `{"errors":[{"error_code","error_message"}]}` as JSON, with CORS for `origin` (with
/// credentials) when the request came from an allowed one. The connection closes after it.
pub fn json_error(status: u16, code: &str, message: &str, origin: Option<&str>) -> Reply {
    let body = serde_json::json!({"errors": [{"error_code": code, "error_message": message}]}).to_string();
    json(status, body.into(), origin, true)
}

/// A JSON reply of the v2 face: never cached, CORS as [`json_ok`] says.
fn json(status: u16, body: Bytes, origin: Option<&str>, close: bool) -> Reply {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    match origin {
        Some(origin) => headers = credentialed(headers, origin),
        None => headers.push(("access-control-allow-origin", "*".to_owned())),
    }
    Reply {
        status,
        headers,
        body,
        close,
    }
}

/// The HTTP/1.1 head of a successful subscription; the body follows as chunks, or raw for an
/// HTTP/1.0 client (which has no chunked encoding; the body ends when the connection closes).
/// Built once per node.
pub fn stream_head(headers: &[(&'static str, String)], chunked: bool) -> Bytes {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    Bytes::from(head)
}

/// An error as an SSE event (`neurow_error_{status}`), as Neurow sends authentication and
/// `Last-Event-ID` errors. The connection closes after it.
pub fn sse_error(status: u16, code: &str, message: &str, origin: Option<&str>, now_s: u64) -> Reply {
    let body = error_event(now_s, status, code, message);
    complete(
        status,
        &[
            ("content-type", "text/event-stream"),
            ("access-control-allow-origin", origin.unwrap_or("*")),
            ("cache-control", SSE_CACHE_CONTROL),
        ],
        body,
        true,
    )
}

/// A 503 with the SSE error body and `retry-after`.
pub fn unavailable(code: &str, message: &str, retry_after_s: u32, now_s: u64) -> Reply {
    let body = error_event(now_s, 503, code, message);
    complete(
        503,
        &[
            ("content-type", "text/event-stream"),
            ("access-control-allow-origin", "*"),
            ("cache-control", SSE_CACHE_CONTROL),
            ("retry-after", &retry_after_s.to_string()),
        ],
        body,
        true,
    )
}

/// The answer to a request head that could not be read: 431 or 400, with the reason.
pub fn head_error(e: &super::request::HeadError) -> Reply {
    match e {
        super::request::HeadError::TooLarge(m) => text(431, m, true),
        super::request::HeadError::Malformed(m) => text(400, m, true),
    }
}

/// A plain-text response.
pub fn text(status: u16, body: &str, close: bool) -> Reply {
    complete(
        status,
        &[("content-type", "text/plain; charset=utf-8")],
        body.to_owned(),
        close,
    )
}

/// An empty response (Neurow's 404).
pub fn empty(status: u16) -> Reply {
    complete(status, &[], Bytes::new(), false)
}

/// A successful CORS preflight.
pub fn preflight_ok(request_headers: &str, origin: &str, max_age_s: u64) -> Reply {
    complete(
        204,
        &[
            ("access-control-allow-methods", "GET"),
            ("access-control-allow-headers", request_headers),
            ("access-control-allow-origin", origin),
            ("access-control-max-age", &max_age_s.to_string()),
            ("vary", "origin"),
        ],
        Bytes::new(),
        false,
    )
}

/// A preflight for a v2 route: `GET` and `POST`, with credentials.
pub fn preflight_v2(mut reply: Reply) -> Reply {
    for (name, value) in reply.headers.iter_mut() {
        if *name == "access-control-allow-methods" {
            *value = "GET, POST".to_owned();
        }
    }
    reply
        .headers
        .push(("access-control-allow-credentials", "true".to_owned()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_head_has_neurows_headers() {
        let head = stream_head(&stream_headers(900000, 600000), true);
        let text = std::str::from_utf8(&head).unwrap();
        for line in [
            "content-type: text/event-stream\r\n",
            "access-control-allow-origin: *\r\n",
            "cache-control: no-cache, no-store, max-age=0, must-revalidate\r\n",
            "connection: close\r\n",
            "x-sse-timeout: 900000\r\n",
            "x-sse-keepalive: 600000\r\n",
            "transfer-encoding: chunked\r\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn an_sse_error_echoes_the_origin_and_closes() {
        let r = sse_error(
            401,
            "invalid_jwt_token",
            "Invalid JWT token",
            Some("http://localhost:3000"),
            17,
        );
        let text = String::from_utf8(r.http1()).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("access-control-allow-origin: http://localhost:3000\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nid:17\nevent: neurow_error_401\ndata: {\"errors\":[{\"error_code\":\"invalid_jwt_token\",\"error_message\":\"Invalid JWT token\"}]}\n\n"));
    }
}
