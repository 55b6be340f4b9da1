//! Reading one whole response (head and body) off a keep-alive connection.
//!
//! Long-polls and ticket requests need the body, unlike publishes (whose bodies the publisher
//! skips) and streams (which never end). The body is framed by `content-length` (Herald, Nchan),
//! chunking, or the end of the connection; bytes the server sent past it stay in the buffer for
//! the next response, though neither server pipelines.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::chunked::ChunkedDecoder;
use super::head::{self, HeadError, ResponseHead};

/// Largest body accepted: a Herald poll answer holds at most 100 messages, an Nchan multipart
/// answer what its buffer holds (64 messages here).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// The head.
    pub head: ResponseHead,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Reads one response from `stream`. `buf` is the connection's read buffer: it may hold bytes
/// already read, and keeps what follows the response.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Result<Response, HeadError> {
    let head = head::read(stream, buf).await?;
    let mut rest = buf.split_off(head.len);
    buf.clear();
    let body = if head.chunked {
        let mut dec = ChunkedDecoder::new();
        let mut body = Vec::new();
        loop {
            dec.decode(&rest, &mut body).map_err(|_| HeadError::Closed)?;
            rest.clear();
            if dec.is_done() {
                break;
            }
            if body.len() > MAX_BODY {
                return Err(HeadError::TooLarge);
            }
            if stream.read_buf(&mut rest).await? == 0 {
                return Err(HeadError::Closed);
            }
        }
        body
    } else if let Some(len) = head.content_length {
        if len > MAX_BODY {
            return Err(HeadError::TooLarge);
        }
        while rest.len() < len {
            rest.reserve(len - rest.len());
            if stream.read_buf(&mut rest).await? == 0 {
                return Err(HeadError::Closed);
            }
        }
        *buf = rest.split_off(len);
        rest
    } else if no_body(head.status) {
        *buf = rest;
        Vec::new()
    } else {
        // Framed by the end of the connection.
        while stream.read_buf(&mut rest).await? != 0 {
            if rest.len() > MAX_BODY {
                return Err(HeadError::TooLarge);
            }
        }
        rest
    };
    Ok(Response { head, body })
}

/// Statuses that never have a body.
fn no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(wire: &[u8], pieces: usize) -> (Vec<Response>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let wire = wire.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in wire.chunks(pieces) {
                server.write_all(piece).await.expect("write");
            }
        });
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Ok(r) = read(&mut client, &mut buf).await {
            out.push(r);
        }
        writer.await.expect("writer");
        (out, buf)
    }

    #[tokio::test]
    async fn keep_alive_responses_in_odd_pieces() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 304 Not Modified\r\n\r\n\
HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (got, _) = read_all(wire, 7).await;
        let bodies: Vec<(u16, &[u8])> = got.iter().map(|r| (r.head.status, r.body.as_slice())).collect();
        assert_eq!(bodies, vec![(200, &b"hello"[..]), (304, &b""[..]), (200, &b"abc"[..])]);
    }

    #[tokio::test]
    async fn body_to_the_end_of_the_connection() {
        let (got, _) = read_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it", 3).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, b"all of it");
        assert!(got[0].head.close);
    }
}
