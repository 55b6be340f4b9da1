//! Publisher: a pool of HTTP/1.1 keep-alive connections to the publish endpoint.
//!
//! A raw client keeps the per-request cost of the load tool small and predictable, which matters
//! when the tool must publish tens of thousands of messages per second from one core. The pool
//! bounds the connections (and so the concurrent requests); the payload is built only once a
//! connection is in hand, so the send timestamp inside it excludes time spent waiting for the pool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::jwt::TokenCache;
use crate::net;
use crate::target::Target;
use crate::wire::chunked::ChunkedDecoder;
use crate::wire::head::{self, HeadError};

/// Why a publish failed.
#[derive(Debug, Error)]
pub enum PublishError {
    /// Connecting, writing or reading failed.
    #[error("publish I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The response was not valid HTTP.
    #[error("publish response: {0}")]
    Head(#[from] HeadError),
    /// The server answered with a status that does not mean "accepted".
    #[error("publish status {0}")]
    Status(u16),
    /// No complete response within the timeout.
    #[error("publish timed out")]
    Timeout,
    /// The publisher token could not be signed.
    #[error("publish token: {0}")]
    Token(String),
    /// A WebSocket publish failed; the string is its counter label (`publish_ws_error_<code>`
    /// for Herald's `error` answer, `publish_ws_<how the connection ended>` …).
    #[error("WebSocket publish: {0}")]
    Ws(String),
}

impl PublishError {
    /// A short label for error counters.
    pub fn label(&self) -> String {
        match self {
            PublishError::Io(_) => "publish_io".into(),
            PublishError::Head(_) => "publish_bad_response".into(),
            PublishError::Status(s) => format!("publish_status_{s}"),
            PublishError::Timeout => "publish_timeout".into(),
            PublishError::Token(_) => "publish_token".into(),
            PublishError::Ws(label) => label.clone(),
        }
    }
}

/// One keep-alive connection and its read buffer.
struct PubConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Which publish URL it is connected to.
    url: usize,
}

/// Outcome of one request/response exchange on a connection.
struct Exchange {
    status: u16,
    keep_alive: bool,
}

impl PubConn {
    /// Connects to the `url`th publish URL of `target`.
    async fn open(target: &Target, url: usize) -> std::io::Result<Self> {
        Ok(Self {
            stream: net::connect(target.publish_url(url).addr, None).await?,
            buf: Vec::with_capacity(1024),
            url,
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Exchange, PublishError> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let head = head::read(&mut self.stream, &mut self.buf).await?;
        if head.chunked {
            let mut dec = ChunkedDecoder::new();
            let mut sink = Vec::new();
            dec.decode(&self.buf[head.len..], &mut sink)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            while !dec.is_done() {
                self.buf.clear();
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(HeadError::Closed.into());
                }
                dec.decode(&self.buf, &mut sink)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        } else if let Some(len) = head.content_length {
            while self.buf.len() < head.len + len {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(HeadError::Closed.into());
                }
            }
        } else if head.close {
            while self.stream.read_buf(&mut self.buf).await? != 0 {
                self.buf.clear();
            }
        }
        Ok(Exchange {
            status: head.status,
            keep_alive: !head.close,
        })
    }
}

/// Publishes messages to one target over a bounded keep-alive pool.
pub struct Publisher {
    target: Arc<Target>,
    tokens: Option<TokenCache>,
    idle: Mutex<Vec<PubConn>>,
    /// Connections opened so far, to spread them over the publish URLs.
    opened: AtomicUsize,
    permits: Semaphore,
    timeout: Duration,
    /// Retry once on a fresh connection when a reused one turns out closed (see `publish`).
    retry_closed: bool,
}

impl Publisher {
    /// A pool of at most `connections` connections; each publish must finish within `timeout`.
    pub fn new(target: Arc<Target>, connections: usize, timeout: Duration) -> Self {
        let tokens = target
            .publish_needs_token()
            .then(|| TokenCache::new(target.publish_jwt.clone()));
        Self {
            target,
            tokens,
            idle: Mutex::new(Vec::new()),
            opened: AtomicUsize::new(0),
            permits: Semaphore::new(connections.max(1)),
            timeout,
            retry_closed: true,
        }
    }

    /// No retry on a closed connection: when servers are killed (`--tolerate-faults`), a request
    /// may have been applied by a server that died before answering, and a retry would publish
    /// it twice.
    pub fn without_retry(mut self) -> Self {
        self.retry_closed = false;
        self
    }

    /// A new connection, to the next publish URL in turn.
    async fn open(&self) -> std::io::Result<PubConn> {
        PubConn::open(&self.target, self.opened.fetch_add(1, Ordering::Relaxed)).await
    }

    /// Publishes one message to `sub`'s topic; `make_payload` runs once a connection is ready.
    /// Returns the request/response time.
    pub async fn publish(&self, sub: &str, make_payload: impl FnOnce() -> String) -> Result<Duration, PublishError> {
        let _permit = self.permits.acquire().await.map_err(|_| PublishError::Timeout)?;
        let token = match &self.tokens {
            Some(cache) => Some(cache.get().map_err(|e| PublishError::Token(e.to_string()))?),
            None => None,
        };
        let reused = self.take_idle();
        let fresh = reused.is_none();
        let mut conn = match reused {
            Some(c) => c,
            None => self.open().await?,
        };
        let request = self.target.publish_request(
            self.target.publish_url(conn.url),
            sub,
            &make_payload(),
            token.as_deref(),
        );
        let started = Instant::now();
        let mut result = tokio::time::timeout(self.timeout, conn.exchange(&request)).await;
        // A reused connection may have been closed by the server while idle; that request never
        // reached it, so one retry on a fresh connection cannot duplicate the message.
        if self.retry_closed && !fresh && matches!(result, Ok(Err(PublishError::Head(HeadError::Closed)))) {
            conn = self.open().await?;
            result = tokio::time::timeout(self.timeout, conn.exchange(&request)).await;
        }
        let exchange = result.map_err(|_| PublishError::Timeout)??;
        let elapsed = started.elapsed();
        if exchange.keep_alive {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        if self.target.publish_accepted(exchange.status) {
            Ok(elapsed)
        } else {
            Err(PublishError::Status(exchange.status))
        }
    }

    fn take_idle(&self) -> Option<PubConn> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }
}
