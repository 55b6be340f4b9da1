//! Splitting a complete `multipart/mixed` body into its parts' bodies.
//!
//! Nchan's long-poll (with `nchan_longpoll_multipart_response on`) answers with every message
//! waiting after the client's position, one part each:
//!
//! ```text
//! --B\r\nContent-Type: text/plain\r\n\r\n<message>\r\n--B\r\n…\r\n--B--\r\n
//! ```
//!
//! The body arrives whole (it has a `content-length`), so the parts are found in one pass and
//! borrowed. A part's own headers are skipped: the message is all the tool needs.

use thiserror::Error;

/// The body is not the multipart framing expected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MultipartError {
    /// No `--boundary` line where one must be.
    #[error("missing boundary delimiter")]
    NoDelimiter,
    /// A part without the blank line that ends its headers.
    #[error("part headers not terminated")]
    UnterminatedHeaders,
    /// No closing `--boundary--`.
    #[error("missing closing delimiter")]
    Unclosed,
}

/// The bodies of the parts of `body`, in order.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, MultipartError> {
    let open = format!("--{boundary}");
    // Every delimiter after the first is preceded by CRLF, which belongs to it.
    let next = format!("\r\n--{boundary}");
    let start = find(body, open.as_bytes()).ok_or(MultipartError::NoDelimiter)?;
    let mut rest = &body[start + open.len()..];
    let mut out = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        // The rest of the delimiter line (transport padding, then CRLF).
        let eol = find(rest, b"\r\n").ok_or(MultipartError::Unclosed)?;
        rest = &rest[eol + 2..];
        let headers_end = if rest.starts_with(b"\r\n") {
            0
        } else {
            find(rest, b"\r\n\r\n").ok_or(MultipartError::UnterminatedHeaders)? + 2
        };
        let part = &rest[headers_end + 2..];
        let end = find(part, next.as_bytes()).ok_or(MultipartError::Unclosed)?;
        out.push(&part[..end]);
        rest = &part[end + next.len()..];
    }
}

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchan_answer_with_three_messages() {
        let body =
            b"--Pycix.D\r\nContent-Type: text/plain\r\n\r\n1 1 o\r\n--Pycix.D\r\nContent-Type: text/plain\r\n\r\n\
1 2 o\r\n--Pycix.D\r\nContent-Type: text/plain\r\n\r\n1 3 o\r\n--Pycix.D--\r\n";
        let got = parts(body, "Pycix.D").expect("multipart");
        assert_eq!(got, vec![&b"1 1 o"[..], b"1 2 o", b"1 3 o"]);
    }

    #[test]
    fn parts_without_headers_and_with_a_preamble() {
        let body = b"preamble\r\n--b\r\n\r\nx\r\n--b\r\n\r\n\r\n--b--";
        assert_eq!(parts(body, "b").expect("multipart"), vec![&b"x"[..], b""]);
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(parts(b"no delimiter", "b"), Err(MultipartError::NoDelimiter));
        assert_eq!(parts(b"--b\r\n\r\nx", "b"), Err(MultipartError::Unclosed));
        assert_eq!(
            parts(b"--b\r\nContent-Type: a\r\nx", "b"),
            Err(MultipartError::UnterminatedHeaders)
        );
    }
}
