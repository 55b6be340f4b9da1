//! The public listener, shared by every public face: Herald's own accept loop, request heads,
//! TLS and HTTP/2, CORS preflights, the held connection of a stream and the hold of a long-poll.
//! The faces (`api::v1`, Neurow's; `api::v2`, Herald's) only decide what a request gets
//! ([`Action`]); this module carries it out.
//!
//! Why not hyper/axum for HTTP/1.1: a held SSE connection behind `axum::serve` costs ≈20 KB of
//! RSS and behind hyper's HTTP/1 connection ≈11 KB (hyper keeps an 8 KiB read buffer for the
//! connection's life), while this raw path measured ≈1 KB (spec/deps.md §4; BENCHMARKS.md). The
//! public API answers only a handful of request shapes, so its head is parsed with `httparse`
//! into a short-lived buffer, answered, and — for a subscription — the connection becomes a
//! stream whose state is the socket and an outbox. Keep-alive is supported for the short
//! responses (preflights, errors, long-polls); a subscription always ends its connection
//! (`connection: close`, as Neurow).
//!
//! Over TLS a client may choose HTTP/2 through ALPN ([`tls`]). That connection is served by
//! hyper (`h2.rs`): there one connection carries many streams, so hyper's per-connection cost is
//! shared by up to [`MAX_STREAMS_PER_CONNECTION`] subscriptions. Its requests go through the
//! same [`request::Request`] and `route`, and its streams are the same subscriptions
//! (`subscription.rs`).

pub mod admission;
mod h2;
pub mod request;
pub mod response;
mod rest;
pub(crate) mod subscription;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioExecutor;
use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Level;

use crate::api::v2::{self, V2Route, V2Settings};
use crate::auth::Verifier;
use crate::hub::outbox::Outbox;
use crate::node::Node;
use crate::observe::metrics::{Interface, Metrics};
use crate::observe::request_log::{RequestLog, request_event};
use crate::shutdown::stopped;
use crate::transport::sse::events::Framing;
use crate::transport::sse::stream::{self, HeldConnection};
use admission::{Admission, SubscriptionRate};
use request::{Body, HeadError, HeadLimits, Method, Request, RequestHead, parse_head};
use response::Reply;
use subscription::{Opening, SubscribeRequest, Subscription};

pub use h2::MAX_STREAMS_PER_CONNECTION;

/// A client has this long to send a complete request head (also the keep-alive idle limit).
const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client has this long to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request body skipped to keep a connection alive; a larger one closes it instead.
const MAX_SKIPPED_BODY: u64 = 64 * 1024;

/// Initial size of the request-head buffer; it grows up to the head limit and is freed before a
/// stream starts.
const HEAD_BUFFER_INITIAL: usize = 1024;

/// After an error response that closes the connection before the request was read in full, how
/// long Herald keeps reading (and discarding) what the client still sends. Closing a socket with
/// unread data makes the kernel send a reset, which can destroy the response before the client
/// reads it; waiting for the client to close first (a "lingering close") lets the response arrive.
const LINGER: Duration = Duration::from_millis(500);

/// Most bytes discarded during a lingering close.
const LINGER_MAX_BYTES: usize = 64 * 1024;

/// What the public API needs to know.
#[derive(Debug, Clone)]
pub struct PublicSettings {
    /// `{PUBLIC_API_CONTEXT_PATH}/v1/subscribe`.
    pub subscribe_path: String,
    /// CORS origins allowed by a preflight, anchored.
    pub allowed_origins: Regex,
    /// `access-control-max-age`.
    pub preflight_max_age_s: u64,
    /// Request head limits.
    pub head_limits: HeadLimits,
    /// Connection cap.
    pub max_connections: Option<usize>,
    /// New subscriptions admitted per second (`PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND`);
    /// `None` admits them all.
    pub max_subscriptions_per_second: Option<u32>,
    /// Whether 403s carry their precise code.
    pub verbose_errors: bool,
    /// `SSE_TIMEOUT`, for the response header.
    pub sse_timeout: Duration,
    /// `SSE_KEEPALIVE`, for the response header.
    pub sse_keepalive: Duration,
    /// The v2 face.
    pub v2: V2Settings,
}

/// The public API of one node.
pub struct PublicApi {
    pub(crate) settings: PublicSettings,
    /// `settings.v2`, at hand.
    pub(crate) v2: V2Settings,
    pub(crate) verifier: Verifier,
    pub(crate) node: Arc<Node>,
    pub(crate) metrics: Arc<Metrics>,
    /// The success response heads, identical for every stream: built once. Chunked for HTTP/1.1,
    /// raw for HTTP/1.0.
    stream_head: Bytes,
    stream_head_http10: Bytes,
    /// The same head for HTTP/2 (no hop-by-hop headers), cloned into each stream's response.
    stream_headers_h2: HeaderMap,
    /// hyper's HTTP/2 server, configured once.
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Open connections, for the cap and for shutdown's drain.
    open: AtomicUsize,
    /// The rate of new subscriptions, shared by every connection; `None` when unlimited.
    subscription_rate: Option<SubscriptionRate>,
    /// Notified when `open` drops to zero.
    drained: Notify,
    /// Set at shutdown: new subscriptions are refused, idle keep-alive connections close.
    pub(crate) stopping: AtomicBool,
    /// Wakes connections waiting for a request head when shutdown starts.
    stop_notify: Notify,
    /// The store's routes (`http::rest`), when the node serves them.
    rest: std::sync::OnceLock<axum::Router>,
    /// The store, for `latest=1` on collection topics.
    pub(crate) store: std::sync::OnceLock<Arc<crate::store::Store>>,
}

pub(crate) enum Action {
    Reply(Reply),
    Subscribe(SubscribeRequest),
    /// A v2 long-poll: answered once it has messages or its timeout passed.
    Poll(v2::PollRequest),
    /// A v2 route, decided asynchronously ([`PublicApi::route_v2`]).
    V2(V2Route),
    /// A v2 WebSocket upgrade that passed its checks.
    WebSocket(Box<v2::WsRequest>),
}

/// What a connection becomes after its request phase.
enum Held {
    /// An SSE stream.
    Stream(SubscribeRequest, Framing),
    /// A WebSocket (its `101` was written).
    WebSocket(Box<v2::WsRequest>),
}

impl PublicApi {
    /// The public API of a node.
    pub fn new(settings: PublicSettings, verifier: Verifier, node: Arc<Node>, metrics: Arc<Metrics>) -> PublicApi {
        let (timeout_ms, keepalive_ms) = (settings.sse_timeout.as_millis(), settings.sse_keepalive.as_millis());
        let stream_headers = response::stream_headers(timeout_ms, keepalive_ms);
        let stream_head = response::stream_head(&stream_headers, true);
        let stream_head_http10 = response::stream_head(&stream_headers, false);
        let stream_headers_h2 = h2::header_map(&stream_headers);
        let h2 = h2::builder(settings.head_limits);
        let subscription_rate = settings.max_subscriptions_per_second.map(SubscriptionRate::new);
        PublicApi {
            v2: settings.v2.clone(),
            settings,
            verifier,
            node,
            metrics,
            stream_head,
            stream_head_http10,
            stream_headers_h2,
            h2,
            open: AtomicUsize::new(0),
            subscription_rate,
            drained: Notify::new(),
            stopping: AtomicBool::new(false),
            stop_notify: Notify::new(),
            rest: std::sync::OnceLock::new(),
            store: std::sync::OnceLock::new(),
        }
    }

    /// Serves the store's REST routes (signup, login, collections) on this listener, and
    /// `latest=1` from `store`.
    pub fn serve_store(&self, router: axum::Router, store: Option<Arc<crate::store::Store>>) {
        let _ = self.rest.set(router);
        if let Some(store) = store {
            let _ = self.store.set(store);
        }
    }

    /// Accepts connections until `stop` turns true, each served on its own task, over TLS when an
    /// acceptor is given.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _peer)) => {
                        let _ = socket.set_nodelay(true);
                        match &tls {
                            None => drop(tokio::spawn(self.clone().handle_connection(socket))),
                            Some(acceptor) => drop(tokio::spawn(self.clone().handshake(acceptor.clone(), socket))),
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors or a connection reset before accept: back off
                        // briefly rather than spin.
                        tracing::warn!(error = %e, "public API accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    }

    /// Starts shutdown: no new subscriptions, idle connections close.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_notify.notify_waiters();
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// `PUBLIC_API_MAX_CONNECTIONS`, if set.
    pub fn max_connections(&self) -> Option<usize> {
        self.settings.max_connections
    }

    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }

    async fn handshake(self: Arc<Self>, acceptor: TlsAcceptor, socket: TcpStream) {
        // Boxed so the handshake's state is freed once the connection is established.
        let handshake = Box::pin(tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)));
        match handshake.await {
            // Boxed: hyper's connection state is large, and inlined here it would enlarge the
            // task of every HTTP/1.1 TLS connection too.
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => Box::pin(self.serve_h2(tls)).await,
            Ok(Ok(tls)) => self.handle_connection(tls).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn handle_connection<S: HeldConnection + PeerIp>(self: Arc<Self>, mut socket: S) {
        let Some(_open) = OpenGuard::enter(&self) else {
            self.metrics.connection_rejected("max_connections");
            log_too_many_connections(socket.peer_ip());
            let reply = self.too_many_connections();
            self.metrics.http_request(Interface::Public, reply.status);
            // Boxed, as the request phase below: it must not enlarge every held connection.
            Box::pin(reply_and_linger(&mut socket, reply)).await;
            return;
        };
        // Boxed: the request phase's buffers and timers then live on the heap only while it lasts,
        // instead of enlarging the task that holds the stream for hours.
        match Box::pin(self.serve_requests(&mut socket)).await {
            Some(Held::Stream(subscribe, framing)) => self.stream(socket, subscribe, framing).await,
            // A task of its own, so that this one — sized for the request phase and for SSE
            // streams — ends, and only the WebSocket's own state stays for the connection's life
            // (an idle WebSocket measured ≈0.8 KB less so). It counts as open from here on.
            Some(Held::WebSocket(request)) => {
                let open = OwnedOpenGuard::adopt(self.clone());
                drop(tokio::spawn(async move {
                    open.api().websocket(socket, request).await;
                    drop(open);
                }));
            }
            None => {}
        }
    }

    /// The 503 of a connection over `PUBLIC_API_MAX_CONNECTIONS`.
    fn too_many_connections(&self) -> Reply {
        response::unavailable(
            "too_many_connections",
            "The server holds as many connections as it may (PUBLIC_API_MAX_CONNECTIONS); retry later",
            1,
            self.now_s(),
        )
    }

    /// Counts a request head refused before routing (both protocols).
    fn count_head_error(&self, e: &HeadError, status: u16) {
        self.metrics.early_error(Interface::Public, status);
        if matches!(e, HeadError::TooLarge(_)) {
            self.metrics.connection_rejected("header_too_large");
        }
    }

    /// Answers requests on the connection until it closes or becomes a subscription, and says
    /// how that subscription's body is framed (chunked for HTTP/1.1, raw for HTTP/1.0).
    async fn serve_requests<S: HeldConnection + PeerIp>(&self, socket: &mut S) -> Option<Held> {
        // Read here rather than kept from `accept`, so the task that holds the stream for hours
        // does not carry it.
        let peer = socket.peer_ip();
        let mut buf: Vec<u8> = Vec::with_capacity(HEAD_BUFFER_INITIAL);
        loop {
            let head = match self.read_head(socket, &mut buf).await {
                Ok(Some(head)) => head,
                Ok(None) => return None,
                Err(e) => {
                    let reply = response::head_error(&e);
                    log_head_refused(peer, reply.status, &e);
                    self.count_head_error(&e, reply.status);
                    self.metrics.http_request(Interface::Public, reply.status);
                    // The client may still be sending the rest of an oversized head.
                    reply_and_linger(socket, reply).await;
                    return None;
                }
            };
            buf.drain(..head.len);
            let received = Instant::now();
            if self.is_rest(&head.request.path) && head.request.method != Method::Options {
                let reply = self.rest(socket, &mut buf, &head, peer).await?;
                self.metrics.http_request(Interface::Public, reply.status);
                let written = socket.write_all(&reply.http1()).await;
                self.metrics.request_took(Interface::Public, received.elapsed());
                if written.is_err() || reply.close || !head.keep_alive {
                    return None;
                }
                continue;
            }
            let action = match self.route(&head.request, peer) {
                Action::V2(route) => self.route_v2(&head.request, peer, route).await,
                action => action,
            };
            match action {
                Action::Subscribe(mut subscribe) => {
                    // Here, in the boxed request phase, rather than in the stream's own task.
                    if let Err(e) = self.resolve_heads(&mut subscribe).await {
                        tracing::warn!(error = %e, "subscription refused: Redis unavailable");
                        self.refuse_stream(socket).await;
                        return None;
                    }
                    let framing = if head.http10 { Framing::Raw } else { Framing::Chunked };
                    return Some(Held::Stream(subscribe, framing));
                }
                Action::WebSocket(request) => {
                    self.metrics.http_request(Interface::Public, 101);
                    let head = crate::transport::ws::handshake::switching_protocols(&request.accept);
                    if socket.write_all(&head).await.is_err() {
                        return None;
                    }
                    return Some(Held::WebSocket(request));
                }
                action @ (Action::Reply(_) | Action::Poll(_) | Action::V2(_)) => {
                    let reply = match action {
                        Action::Poll(poll) => Box::pin(self.hold_poll(poll)).await,
                        Action::Reply(reply) => reply,
                        Action::Subscribe(_) | Action::V2(_) | Action::WebSocket(_) => unreachable!("matched above"),
                    };
                    self.metrics.http_request(Interface::Public, reply.status);
                    let written = socket.write_all(&reply.http1()).await;
                    self.metrics.request_took(Interface::Public, received.elapsed());
                    if written.is_err() || reply.close || !head.keep_alive {
                        return None;
                    }
                    if !skip_body(socket, &mut buf, head.body).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Reads until `buf` holds a complete head; `Ok(None)` when the client closed, went quiet
    /// for too long, or shutdown started.
    async fn read_head<S: HeldConnection>(
        &self,
        socket: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RequestHead>, HeadError> {
        let stopping = self.stop_notify.notified();
        tokio::pin!(stopping);
        stopping.as_mut().enable();
        let deadline = tokio::time::sleep(HEAD_READ_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            if !buf.is_empty()
                && let Some(head) = parse_head(buf, self.settings.head_limits)?
            {
                return Ok(Some(head));
            }
            if self.stopping.load(Ordering::SeqCst) && buf.is_empty() {
                return Ok(None);
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(buf.capacity().max(HEAD_BUFFER_INITIAL));
            }
            tokio::select! {
                read = socket.read_buf(buf) => match read {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                },
                _ = &mut deadline => return Ok(None),
                _ = &mut stopping, if buf.is_empty() => return Ok(None),
            }
        }
    }

    pub(crate) fn now_s(&self) -> u64 {
        self.node.hub.clock().now_ms() / 1000
    }

    /// Decides what a request gets: a preflight, one of the v2 routes (decided asynchronously by
    /// the caller, [`PublicApi::route_v2`]), or else v1 ([`PublicApi::route_v1`]), whose order is
    /// Neurow's. The one decision of both protocols; it counts refusals (`jwt_errors`,
    /// `shutting_down`) but leaves `http_request_count` to the caller, which counts what it
    /// actually answers.
    fn route(&self, head: &Request, peer: Option<IpAddr>) -> Action {
        let log = || RequestLog::raw(&head.path, &head.log, peer);
        if head.method == Method::Options {
            let v2 = [&self.v2.subscribe_path, &self.v2.poll_path, &self.v2.tickets_path].contains(&&head.path);
            return Action::Reply(self.preflight(head, log, v2));
        }
        if head.path == self.v2.subscribe_path && matches!(head.method, Method::Get | Method::Post) {
            return Action::V2(V2Route::Subscribe);
        }
        if head.path == self.v2.poll_path && head.method == Method::Get {
            return Action::V2(V2Route::Poll);
        }
        if head.path == self.v2.tickets_path && head.method == Method::Post {
            return Action::V2(V2Route::Tickets);
        }
        if head.path == self.v2.ws_path && head.method == Method::Get {
            return Action::V2(V2Route::WebSocket);
        }
        self.route_v1(head, peer)
    }

    /// The subscription rate limit, for every face: the 503 to answer when it is reached.
    ///
    /// Called after the token and the request's own checks, so that only subscriptions that
    /// would succeed use the rate up, and a client with a bad token hears why rather than "retry".
    /// Verifying an HS256 token first costs ≈1.4 µs, little next to the connection itself.
    pub(crate) fn admit_subscription<'a>(&self, log: impl Fn() -> RequestLog<'a>) -> Option<Reply> {
        let rate = self.subscription_rate.as_ref()?;
        let Admission::Refused { retry_after_s } = rate.admit(self.node.hub.clock().now_ms()) else {
            return None;
        };
        self.metrics.connection_rejected("subscription_rate");
        request_event!(
            Level::DEBUG,
            log(),
            error.code = "subscription_rate_exceeded",
            http.response.status_code = 503,
            "subscription refused: PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND reached"
        );
        Some(response::unavailable(
            "subscription_rate_exceeded",
            "The server takes new subscriptions at a limited rate (PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND); retry later",
            retry_after_s,
            self.now_s(),
        ))
    }

    /// The response head of a stream: the node's shared one, or for a v2 stream from an allowed
    /// origin one that allows that origin's credentials (cookies).
    fn stream_head_for(&self, origin: Option<&str>, framing: Framing) -> Bytes {
        match (origin, framing) {
            (None, Framing::Chunked) => self.stream_head.clone(),
            (None, Framing::Raw) => self.stream_head_http10.clone(),
            (Some(origin), framing) => {
                response::stream_head(&self.credentialed_headers(origin), framing == Framing::Chunked)
            }
        }
    }

    /// The stream headers with CORS for `origin`, credentials allowed.
    fn credentialed_headers(&self, origin: &str) -> Vec<(&'static str, String)> {
        let (timeout_ms, keepalive_ms) = (
            self.settings.sse_timeout.as_millis(),
            self.settings.sse_keepalive.as_millis(),
        );
        response::credentialed(response::stream_headers(timeout_ms, keepalive_ms), origin)
    }

    /// A CORS preflight: Neurow's for every path; for a v2 route it also allows `POST` (tickets)
    /// and credentials (cookies).
    fn preflight<'a>(&self, head: &'a Request, log: impl Fn() -> RequestLog<'a>, v2: bool) -> Reply {
        let (Some(origin), [request_headers]) = (head.single_origin(), head.access_control_request_headers.as_slice())
        else {
            request_event!(
                Level::DEBUG,
                log(),
                http.response.status_code = 400,
                "preflight refused: not one Origin and one Access-Control-Request-Headers"
            );
            return response::text(400, "Invalid preflight request", false);
        };
        if !self.settings.allowed_origins.is_match(origin) {
            request_event!(
                Level::DEBUG,
                log(),
                http.response.status_code = 400,
                "preflight refused: the origin does not match PUBLIC_API_ALLOWED_ORIGINS"
            );
            return response::text(400, "Origin is not allowed", false);
        }
        let reply = response::preflight_ok(request_headers, origin, self.settings.preflight_max_age_s);
        if v2 { response::preflight_v2(reply) } else { reply }
    }

    /// Answers a v2 stream that needed Redis while it was unavailable.
    async fn refuse_stream<S: HeldConnection>(&self, socket: &mut S) {
        let reply = backplane_unavailable();
        self.metrics.http_request(Interface::Public, reply.status);
        reply_and_linger(socket, reply).await;
    }

    /// Holds an HTTP/1.x subscription until it ends.
    async fn stream<S: HeldConnection>(self: &Arc<Self>, mut socket: S, request: SubscribeRequest, framing: Framing) {
        let Opening {
            mut subscription,
            replay,
            mut format,
            origin,
        } = Subscription::open(self, request);
        let head = self.stream_head_for(origin.as_deref(), framing);
        drop(origin);
        subscription.end = stream::run(
            &mut socket,
            framing,
            head,
            replay,
            subscription.outbox(),
            &mut format,
            &subscription,
        )
        .await;
    }
}

/// The 503 of a v2 request that needed Redis while it was unavailable.
fn backplane_unavailable() -> Reply {
    response::json_error(
        503,
        "backplane_unavailable",
        "The cluster's Redis is unavailable; retry later",
        None,
    )
}

fn log_too_many_connections(peer: Option<IpAddr>) {
    tracing::debug!(
        client.ip = peer.map(tracing::field::display),
        error.code = "too_many_connections",
        http.response.status_code = 503,
        "connection refused: PUBLIC_API_MAX_CONNECTIONS reached"
    );
}

fn log_head_refused(peer: Option<IpAddr>, status: u16, e: &HeadError) {
    tracing::debug!(
        client.ip = peer.map(tracing::field::display),
        http.response.status_code = status,
        reason = %e,
        "request head refused"
    );
}

/// A connection that can tell its peer's address, for the `client.ip` of log lines.
pub trait PeerIp {
    /// The peer's address, if the socket still knows it.
    fn peer_ip(&self) -> Option<IpAddr>;
}

impl PeerIp for TcpStream {
    fn peer_ip(&self) -> Option<IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }
}

impl PeerIp for tokio_rustls::server::TlsStream<TcpStream> {
    fn peer_ip(&self) -> Option<IpAddr> {
        self.get_ref().0.peer_ip()
    }
}

/// Counts one open connection; the last one out wakes shutdown's drain.
struct OpenGuard<'a>(&'a PublicApi);

impl<'a> OpenGuard<'a> {
    fn enter(api: &'a PublicApi) -> Option<Self> {
        let open = api.open.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = OpenGuard(api);
        match api.settings.max_connections {
            Some(max) if open > max => None, // dropping the guard gives the place back
            _ => Some(guard),
        }
    }
}

/// An open connection's place in the count, owned, for a connection that moves to a task of its
/// own: taken before the first guard is dropped, so the count never dips meanwhile.
struct OwnedOpenGuard(Arc<PublicApi>);

impl OwnedOpenGuard {
    fn adopt(api: Arc<PublicApi>) -> Self {
        api.open.fetch_add(1, Ordering::SeqCst);
        OwnedOpenGuard(api)
    }

    fn api(&self) -> &Arc<PublicApi> {
        &self.0
    }
}

impl Drop for OwnedOpenGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Writes a reply that ends the connection, then closes it gracefully: the write side first, then
/// reading until the client closes too (at most [`LINGER`] and [`LINGER_MAX_BYTES`]), so unread
/// request bytes do not turn the close into a reset that would destroy the reply.
async fn reply_and_linger<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S, reply: Reply) {
    if socket.write_all(&reply.http1()).await.is_err() || socket.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut scratch = [0u8; 2048];
        let mut discarded = 0;
        while discarded < LINGER_MAX_BYTES {
            match socket.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

/// Discards a request body so the next request can be read; false when the connection should
/// close instead (a chunked or large body, or an error). Uses the head buffer as scratch space so
/// no buffer lives in the connection's task.
async fn skip_body<S: HeldConnection>(socket: &mut S, buf: &mut Vec<u8>, body: Body) -> bool {
    let mut left = match body {
        Body::Empty => return true,
        Body::Chunked => return false,
        Body::Length(n) if n > MAX_SKIPPED_BODY => return false,
        Body::Length(n) => n as usize,
    };
    loop {
        let from_buf = left.min(buf.len());
        buf.drain(..from_buf);
        left -= from_buf;
        if left == 0 {
            return true;
        }
        match tokio::time::timeout(HEAD_READ_TIMEOUT, socket.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// Sizes of what every held subscription keeps, for `herald serve --sizes`-style diagnostics and
/// the regression test below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionSizes {
    /// The connection task's future (allocated once per connection by the runtime).
    pub connection_task: usize,
    /// A WebSocket's own future, boxed beside the connection task once it upgraded.
    pub websocket_task: usize,
    /// The outbox, behind an `Arc`.
    pub outbox: usize,
    /// An HTTP/2 stream's response body, which holds its subscription (hyper keeps it in the
    /// stream's task, next to its own per-stream state).
    pub h2_body: usize,
}

impl PublicApi {
    /// Measures [`SubscriptionSizes`] without running anything.
    pub fn subscription_sizes(self: &Arc<Self>, socket: TcpStream, other: TcpStream) -> SubscriptionSizes {
        let task = self.clone().handle_connection(socket);
        SubscriptionSizes {
            connection_task: std::mem::size_of_val(&task),
            websocket_task: v2::ws::websocket_task_size(self, other),
            outbox: std::mem::size_of::<Outbox>(),
            h2_body: h2::body_size(),
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::auth::keys::development_auth;
    use crate::clock::Clock;
    use crate::history::Retention;
    use crate::hub::{Hub, HubSettings};

    /// Recorded baselines (x86_64). A change that grows what every idle connection holds fails
    /// here first; raise a baseline only with a measured reason (BENCHMARKS.md).
    const TASK_BASELINE: usize = 900;
    const OUTBOX_BASELINE: usize = 112;
    const H2_BODY_BASELINE: usize = 160;
    const WEBSOCKET_BASELINE: usize = 1000;

    #[tokio::test]
    async fn test_subscription_sizes() {
        let hub = Arc::new(Hub::new(
            HubSettings {
                retention: Retention::from_min_duration(30_000, 1000),
                max_history_bytes: 1 << 20,
            },
            Clock::system(),
        ));
        let node = Arc::new(Node {
            hub,
            liveness: Arc::new(crate::hub::liveness::Liveness::default()),
            backplane: crate::backplane::Backplane::Local,
            outbox_capacity: 16,
            tickets: Default::default(),
            revocations: Arc::new(crate::auth::revocation::Revocations::new(120)),
        });
        let api = Arc::new(PublicApi::new(
            PublicSettings {
                subscribe_path: "/v1/subscribe".into(),
                allowed_origins: Regex::new("^$").unwrap(),
                preflight_max_age_s: 0,
                head_limits: HeadLimits {
                    max_header_value_length: 8192,
                },
                max_connections: None,
                max_subscriptions_per_second: Some(100),
                verbose_errors: false,
                sse_timeout: Duration::from_secs(1),
                sse_keepalive: Duration::from_secs(1),
                v2: V2Settings {
                    subscribe_path: "/v2/subscribe".into(),
                    poll_path: "/v2/poll".into(),
                    tickets_path: "/v2/tickets".into(),
                    ticket_lifetime: Duration::from_secs(60),
                    max_topics: 64,
                    privileged_roles: Vec::new(),
                    token_cookie: "herald_token".into(),
                    ws_path: "/v2/ws".into(),
                    ws: Default::default(),
                },
            },
            Verifier::new(development_auth().0, 120),
            node,
            Arc::new(Metrics::new([])),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let other = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let sizes = api.subscription_sizes(socket, other);
        println!("{sizes:?}");
        assert!(
            sizes.connection_task <= TASK_BASELINE,
            "connection task grew: {sizes:?}"
        );
        assert!(sizes.outbox <= OUTBOX_BASELINE, "outbox grew: {sizes:?}");
        assert!(
            sizes.websocket_task <= WEBSOCKET_BASELINE,
            "WebSocket task grew: {sizes:?}"
        );
        assert!(sizes.h2_body <= H2_BODY_BASELINE, "HTTP/2 stream body grew: {sizes:?}");
    }
}
