//! A small HTTP/1.1 keep-alive client for Herald's JSON routes (the store scenarios): one request
//! at a time on one connection, the response body kept (the insert answer, the login token).
//!
//! Like the publisher ([`crate::publish`]) it writes requests as raw bytes, so the tool's cost per
//! request stays small next to the server's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net;
use crate::wire::chunked::ChunkedDecoder;
use crate::wire::head::{self, HeadError};

/// One answer.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not a valid HTTP response.
    #[error("response: {0}")]
    Head(#[from] HeadError),
    /// No complete answer in time.
    #[error("timed out")]
    Timeout,
}

impl HttpError {
    /// A short label for error counters.
    pub fn label(&self, what: &str) -> String {
        match self {
            HttpError::Io(e) => format!("{what}_io_{:?}", e.kind()).to_lowercase(),
            HttpError::Head(_) => format!("{what}_bad_response"),
            HttpError::Timeout => format!("{what}_timeout"),
        }
    }
}

/// A keep-alive connection to one address, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Client {
    /// A client of `addr` (`host` for the `Host` header); connects on first use.
    pub fn new(addr: SocketAddr, host: &str, timeout: Duration) -> Client {
        Client {
            addr,
            host: format!("{host}:{}", addr.port()),
            stream: None,
            buf: Vec::with_capacity(2048),
            timeout,
        }
    }

    /// The request bytes of `POST path` with a JSON `body` and an optional bearer token.
    pub fn post_json(&self, path: &str, body: &str, bearer: Option<&str>) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(token) = bearer {
            req.push_str("Authorization: Bearer ");
            req.push_str(token);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        req.into_bytes()
    }

    /// Sends `request` and reads the answer, within the client's timeout. A reused connection
    /// the server closed while idle is reopened once (that request never reached it).
    pub async fn send(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(Err(HttpError::Head(HeadError::Closed))) if reused => {
                self.stream = None;
                tokio::time::timeout(self.timeout, self.exchange(request))
                    .await
                    .map_err(|_| HttpError::Timeout)?
            }
            Ok(result) => result,
            Err(_) => {
                self.stream = None;
                Err(HttpError::Timeout)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        let result = self.exchange_inner(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange_inner(&mut self, request: &[u8]) -> Result<Response, HttpError> {
        if self.stream.is_none() {
            self.stream = Some(net::connect(self.addr, None).await?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(request).await?;
        self.buf.clear();
        let head = head::read(stream, &mut self.buf).await?;
        let mut body = Vec::new();
        if head.chunked {
            let mut dec = ChunkedDecoder::new();
            dec.decode(&self.buf[head.len..], &mut body)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            while !dec.is_done() {
                self.buf.clear();
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(HeadError::Closed.into());
                }
                dec.decode(&self.buf, &mut body)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        } else if let Some(len) = head.content_length {
            while self.buf.len() < head.len + len {
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(HeadError::Closed.into());
                }
            }
            body.extend_from_slice(&self.buf[head.len..head.len + len]);
        } else if head.close {
            body.extend_from_slice(&self.buf[head.len..]);
            loop {
                self.buf.clear();
                if stream.read_buf(&mut self.buf).await? == 0 {
                    break;
                }
                body.extend_from_slice(&self.buf);
            }
        }
        if head.close {
            self.stream = None;
        }
        Ok(Response {
            status: head.status,
            body,
        })
    }
}
