//! HTTP/1.1 response heads: parsing with `httparse` and reading one off a socket.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted; Herald's and Nchan's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

/// The server's response head could not be read.
#[derive(Debug, Error)]
pub enum HeadError {
    /// `httparse` rejected the bytes.
    #[error("malformed response head: {0}")]
    Malformed(#[from] httparse::Error),
    /// No blank line within [`MAX_HEAD`] bytes.
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The peer closed the connection before the head was complete.
    #[error("connection closed before the response head")]
    Closed,
    /// A socket error.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the clients need to know from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// `transfer-encoding: chunked` was present.
    pub chunked: bool,
    /// `content-length`, if present and valid.
    pub content_length: Option<usize>,
    /// `connection: close` was present (or the response is HTTP/1.0).
    pub close: bool,
    /// The `content-type` value, lower-cased.
    pub content_type: Option<String>,
    /// The `boundary` parameter of a `multipart/*` content type, as sent (boundaries are
    /// case-sensitive).
    pub boundary: Option<String>,
    /// `Last-Modified`, as sent (Nchan's long-poll position, with `etag`).
    pub last_modified: Option<String>,
    /// `Etag`, as sent.
    pub etag: Option<String>,
    /// `Sec-WebSocket-Accept`, as sent (a WebSocket handshake's `101`).
    pub ws_accept: Option<String>,
    /// Length of the head, including the blank line.
    pub len: usize,
}

/// Parses a response head at the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = ResponseHead {
        status: resp.code.unwrap_or(0),
        chunked: false,
        content_length: None,
        close: resp.version == Some(0),
        content_type: None,
        boundary: None,
        last_modified: None,
        etag: None,
        ws_accept: None,
        len,
    };
    for h in resp.headers.iter() {
        // Kept as sent: the client sends them back.
        if h.name.eq_ignore_ascii_case("last-modified") {
            head.last_modified = Some(String::from_utf8_lossy(h.value).into_owned());
            continue;
        }
        if h.name.eq_ignore_ascii_case("etag") {
            head.etag = Some(String::from_utf8_lossy(h.value).into_owned());
            continue;
        }
        if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            head.ws_accept = Some(String::from_utf8_lossy(h.value).trim().to_owned());
            continue;
        }
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.contains("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = value.contains("close");
        } else if h.name.eq_ignore_ascii_case("content-type") {
            if value.starts_with("multipart/") {
                head.boundary = boundary(&String::from_utf8_lossy(h.value));
            }
            head.content_type = Some(value);
        }
    }
    Ok(Some(head))
}

/// The `boundary=` parameter of a content type, unquoted.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Reads from `stream` into `buf` until a full head is there. Bytes after the head stay in
/// `buf[head.len..]`.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Result<ResponseHead, HeadError> {
    loop {
        if let Some(head) = parse(buf)? {
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(HeadError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_herald_sse_head() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n25\r\n";
        let head = parse(raw).expect("valid").expect("complete");
        assert_eq!(head.status, 200);
        assert!(head.chunked);
        assert!(head.close);
        assert_eq!(head.content_type.as_deref(), Some("text/event-stream"));
        assert_eq!(&raw[head.len..], b"25\r\n");
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-").expect("ok").is_none());
    }

    #[test]
    fn nchan_long_poll_head_keeps_position_and_boundary_case() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=Pycix.DnzV\r\nContent-Length: 3\r\n\
Last-Modified: Thu, 03 Dec 2026 06:51:41 GMT\r\nEtag: 2\r\n\r\n";
        let head = parse(raw).expect("valid").expect("complete");
        assert_eq!(head.boundary.as_deref(), Some("Pycix.DnzV"));
        assert_eq!(head.last_modified.as_deref(), Some("Thu, 03 Dec 2026 06:51:41 GMT"));
        assert_eq!(head.etag.as_deref(), Some("2"));
        assert_eq!(
            boundary("multipart/mixed; charset=x; boundary=\"q r\"").as_deref(),
            Some("q r")
        );
    }

    #[test]
    fn websocket_upgrade_keeps_the_accept_value() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let head = parse(raw).expect("valid").expect("complete");
        assert_eq!(head.status, 101);
        assert_eq!(head.ws_accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(&raw[head.len..], b"\x81\x00");
    }

    #[test]
    fn content_length_response() {
        let raw = b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello";
        let head = parse(raw).expect("valid").expect("complete");
        assert_eq!(head.status, 202);
        assert_eq!(head.content_length, Some(5));
        assert!(!head.chunked && !head.close);
    }
}
