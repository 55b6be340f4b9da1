//! HTTP/2 on the public API, for TLS connections whose client chose `h2` through ALPN.
//!
//! Why: a browser holds at most six HTTP/1.1 connections per origin, so a page (or several tabs)
//! cannot keep more than six `EventSource` streams to Herald; over HTTP/2 they all share one
//! connection, up to [`MAX_STREAMS_PER_CONNECTION`].
//!
//! hyper runs the protocol; every request goes through the same [`Request::read`] and
//! [`PublicApi::route`] as HTTP/1.1, so limits, CORS, authentication, statuses and bodies are the
//! same. A subscription's response is an [`EventBody`]: one data frame per SSE event, the very
//! bytes an HTTP/1.1 stream carries in its chunks. Each stream is a full [`Subscription`],
//! released when the body ends or hyper drops it (client reset, connection closed).
//!
//! The connection task itself only watches for three things: shutdown (GOAWAY through hyper's
//! graceful shutdown, while open streams still get their `reconnect` event), an idle connection
//! (no stream for [`HEAD_READ_TIMEOUT`], like an idle HTTP/1.1 keep-alive), and the end of a
//! connection refused by `PUBLIC_API_MAX_CONNECTIONS`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame as BodyFrame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http2;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::server::TlsStream;

use super::request::{HeadLimits, Request};
use super::response::{self, Reply, is_hop_by_hop};
use super::subscription::{Opening, Subscription};
use super::{Action, HEAD_READ_TIMEOUT, OpenGuard, PeerIp, PublicApi};
use crate::observe::metrics::Interface;
use crate::transport::sse::body::EventBody;

/// Streams one client may open at once on one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
/// Far above what a page needs (browsers allowed six over HTTP/1.1), and it bounds what a
/// single connection can make the node hold: 256 subscriptions.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Response bytes hyper may buffer per stream beyond what the client's flow-control window lets
/// it send (hyper's default is 400 KiB). Past it the stream's body is not polled, its outbox
/// fills, and a client that does not keep up is ended as a slow consumer, as over HTTP/1.1.
const MAX_SEND_BUFFER: usize = 64 * 1024;

/// Receive windows. Subscribers send no body, so there is nothing to read fast; small windows
/// keep a client from parking request bodies in the node's memory.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = 256 * 1024;

/// hyper's HTTP/2 server settings for the public API.
pub(super) fn builder(limits: HeadLimits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_send_buf_size(MAX_SEND_BUFFER)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        // The largest head HTTP/1.1 accepts; a bigger header list gets hyper's 431.
        .max_header_list_size(u32::try_from(limits.max_head_bytes()).unwrap_or(u32::MAX))
        // HTTP/1.1 responses carry no `date`; keep the same headers.
        .auto_date_header(false);
    builder
}

/// The headers of a reply or of the stream head, as HTTP/2 allows them: hop-by-hop ones
/// dropped, and any line that is not a valid header skipped rather than failing the response.
pub(super) fn header_map(lines: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(lines.len());
    for (name, value) in lines {
        if is_hop_by_hop(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// What one connection's task and its streams share.
struct ConnectionState {
    /// Streams with a response still going.
    active: AtomicUsize,
    /// Woken when `active` changes or a refused connection has answered.
    changed: Notify,
    /// Over `PUBLIC_API_MAX_CONNECTIONS`: every request gets 503, then the connection closes.
    refused: bool,
    answered: AtomicBool,
}

/// Counts one stream as active until its response body is dropped.
struct ActiveStream(Arc<ConnectionState>);

impl ActiveStream {
    fn enter(state: &Arc<ConnectionState>) -> ActiveStream {
        state.active.fetch_add(1, Ordering::SeqCst);
        state.changed.notify_one();
        ActiveStream(state.clone())
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// The body of every HTTP/2 response of the public API.
pub(super) struct ResponseBody {
    kind: BodyKind,
    _active: ActiveStream,
}

enum BodyKind {
    /// A complete reply; `None` once sent (or when empty).
    Full(Option<Bytes>),
    /// A subscription's events.
    Events(EventBody<Subscription>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            BodyKind::Full(body) => Poll::Ready(body.take().map(|b| Ok(BodyFrame::data(b)))),
            BodyKind::Events(events) => Pin::new(events).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Full(body) => body.is_none(),
            BodyKind::Events(events) => events.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            BodyKind::Events(_) => SizeHint::default(),
        }
    }
}

/// Size of a stream's response body, for [`super::SubscriptionSizes`].
pub(super) fn body_size() -> usize {
    std::mem::size_of::<ResponseBody>()
}

impl PublicApi {
    /// Serves one HTTP/2 connection until the client closes it, it stays idle, or shutdown.
    pub(super) async fn serve_h2(self: Arc<Self>, tls: TlsStream<TcpStream>) {
        let peer = tls.peer_ip();
        let open = OpenGuard::enter(&self);
        if open.is_none() {
            self.metrics.connection_rejected("max_connections");
            super::log_too_many_connections(peer);
        }
        let state = Arc::new(ConnectionState {
            active: AtomicUsize::new(0),
            changed: Notify::new(),
            refused: open.is_none(),
            answered: AtomicBool::new(false),
        });
        let service = {
            let (api, state) = (self.clone(), state.clone());
            hyper::service::service_fn(move |request| {
                let (api, state) = (api.clone(), state.clone());
                async move { Ok::<_, Infallible>(api.respond_h2(request, &state, peer).await) }
            })
        };
        let connection = self.h2.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        let stopping = self.stop_notify.notified();
        tokio::pin!(stopping);
        stopping.as_mut().enable();
        // Set once hyper's graceful shutdown (GOAWAY, then open streams finish) has begun; for an
        // idle or refused connection, how long that may take.
        let mut closing = false;
        let mut close_deadline: Option<tokio::time::Instant> = None;
        loop {
            let refused_done = state.refused && state.answered.load(Ordering::SeqCst);
            if !closing && (self.stopping.load(Ordering::SeqCst) || refused_done) {
                connection.as_mut().graceful_shutdown();
                closing = true;
                if refused_done {
                    close_deadline = Some(tokio::time::Instant::now() + HEAD_READ_TIMEOUT);
                }
            }
            let idle = !closing && state.active.load(Ordering::SeqCst) == 0;
            let changed = state.changed.notified();
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                    }
                    return;
                }
                _ = &mut stopping, if !closing => {}
                _ = changed => {}
                _ = tokio::time::sleep(HEAD_READ_TIMEOUT), if idle => {
                    if state.active.load(Ordering::SeqCst) == 0 {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        close_deadline = Some(tokio::time::Instant::now() + HEAD_READ_TIMEOUT);
                    }
                }
                _ = tokio::time::sleep_until(close_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if close_deadline.is_some() => return,
            }
        }
    }

    /// Answers one HTTP/2 request: the same decisions as HTTP/1.1, rendered for HTTP/2.
    async fn respond_h2(
        self: &Arc<Self>,
        request: hyper::Request<Incoming>,
        state: &Arc<ConnectionState>,
        peer: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let active = ActiveStream::enter(state);
        let received = std::time::Instant::now();
        if state.refused {
            state.answered.store(true, Ordering::SeqCst);
            state.changed.notify_one();
            return self.reply_h2(self.too_many_connections(), active, received);
        }
        // The public API reads no request body: dropping it tells hyper to discard one.
        let (parts, _body) = request.into_parts();
        let headers = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        let request = match Request::read(
            parts.method.as_str(),
            parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str()),
            headers,
            self.settings.head_limits,
        ) {
            Ok(request) => request,
            Err(e) => {
                let reply = response::head_error(&e);
                super::log_head_refused(peer, reply.status, &e);
                self.count_head_error(&e, reply.status);
                return self.reply_h2(reply, active, received);
            }
        };
        let action = match self.route(&request, peer) {
            Action::V2(route) => self.route_v2(&request, peer, route).await,
            action => action,
        };
        match action {
            Action::V2(_) => unreachable!("decided above"),
            // RFC 8441's extended CONNECT is not offered: browsers then use HTTP/1.1.
            Action::WebSocket(_) => self.reply_h2(
                response::json_error(
                    400,
                    "invalid_upgrade",
                    "WebSocket runs over HTTP/1.1: connect without HTTP/2",
                    None,
                ),
                active,
                received,
            ),
            Action::Reply(reply) => self.reply_h2(reply, active, received),
            Action::Poll(poll) => {
                let reply = self.hold_poll(poll).await;
                self.reply_h2(reply, active, received)
            }
            Action::Subscribe(mut subscribe) => {
                if let Err(e) = self.resolve_heads(&mut subscribe).await {
                    tracing::warn!(error = %e, "subscription refused: Redis unavailable");
                    return self.reply_h2(super::backplane_unavailable(), active, received);
                }
                let Opening {
                    subscription,
                    replay,
                    format,
                    origin,
                } = Subscription::open(self, subscribe);
                let mut response = Response::new(ResponseBody {
                    kind: BodyKind::Events(EventBody::new(subscription, format, replay)),
                    _active: active,
                });
                *response.headers_mut() = match origin {
                    None => self.stream_headers_h2.clone(),
                    Some(origin) => header_map(&self.credentialed_headers(&origin)),
                };
                response
            }
        }
    }

    fn reply_h2(&self, reply: Reply, active: ActiveStream, received: std::time::Instant) -> Response<ResponseBody> {
        self.metrics.http_request(Interface::Public, reply.status);
        self.metrics.request_took(Interface::Public, received.elapsed());
        let mut headers = header_map(&reply.headers);
        // A 204 has no content (RFC 9110 §8.6).
        if reply.status != 204 {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(reply.body.len()));
        }
        let body = (!reply.body.is_empty()).then_some(reply.body);
        let mut response = Response::new(ResponseBody {
            kind: BodyKind::Full(body),
            _active: active,
        });
        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_headers_drop_hop_by_hop_lines_and_keep_the_rest_in_order() {
        let lines = response::stream_headers(900000, 600000);
        let map = header_map(&lines);
        assert!(map.get("connection").is_none());
        let names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        let expected: Vec<&str> = lines.iter().map(|(n, _)| *n).filter(|n| *n != "connection").collect();
        assert_eq!(names, expected);
        assert_eq!(map["x-sse-timeout"], "900000");
    }

    #[test]
    fn invalid_header_values_are_skipped_not_fatal() {
        let map = header_map(&[
            ("access-control-allow-origin", "a\r\nb".to_owned()),
            ("vary", "origin".to_owned()),
        ]);
        assert!(map.get("access-control-allow-origin").is_none());
        assert_eq!(map["vary"], "origin");
    }
}
