//! The bytes of every public API response, spec §1.3 and §1.5.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::transport::sse::frame::error_event;

/// A complete response ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code, for metrics.
    pub status: u16,
    /// Head and body.
    pub bytes: Vec<u8>,
    /// Whether the connection must close after it.
    pub close: bool,
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

/// The header values of Neurow's SSE responses that errors repeat.
const SSE_CACHE_CONTROL: &str = "no-cache, no-store, max-age=0, must-revalidate";

/// Builds a response with a body and `content-length`.
fn complete(status: u16, headers: &[(&str, &str)], body: &[u8], close: bool) -> Reply {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "content-length: {}\r\n", body.len());
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Reply { status, bytes, close }
}

/// The head of a successful subscription; the body follows as chunks, or raw for an HTTP/1.0
/// client (which has no chunked encoding; the body ends when the connection closes). Built once
/// per node.
pub fn stream_head(timeout_ms: u128, keepalive_ms: u128, chunked: bool) -> Bytes {
    let framing = if chunked { "transfer-encoding: chunked\r\n" } else { "" };
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\n\
         content-type: text/event-stream\r\n\
         access-control-allow-origin: *\r\n\
         cache-control: {SSE_CACHE_CONTROL}\r\n\
         connection: close\r\n\
         x-sse-timeout: {timeout_ms}\r\n\
         x-sse-keepalive: {keepalive_ms}\r\n\
         x-accel-buffering: no\r\n\
         {framing}\r\n"
    ))
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
        body.as_bytes(),
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
        body.as_bytes(),
        true,
    )
}

/// A plain-text response.
pub fn text(status: u16, body: &str, close: bool) -> Reply {
    complete(
        status,
        &[("content-type", "text/plain; charset=utf-8")],
        body.as_bytes(),
        close,
    )
}

/// An empty response (Neurow's 404).
pub fn empty(status: u16) -> Reply {
    complete(status, &[], b"", false)
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
        b"",
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_head_has_neurows_headers() {
        let head = stream_head(900000, 600000, true);
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
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("access-control-allow-origin: http://localhost:3000\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nid:17\nevent: neurow_error_401\ndata: {\"errors\":[{\"error_code\":\"invalid_jwt_token\",\"error_message\":\"Invalid JWT token\"}]}\n\n"));
    }
}
