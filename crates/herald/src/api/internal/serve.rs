//! The internal API's connections: hyper's HTTP/1.1 server, one task per connection, a graceful
//! stop.
//!
//! Each request is dispatched here: `POST /v1/publish` to its lean route, everything else to the
//! axum router (with the peer address as `ConnectInfo`, for log lines). `axum::serve` would put
//! the router in front of every request, publishes included.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;

use super::{InternalState, publish_route, router};
use crate::shutdown::stopped;

/// How long a client may take to send a request head (slow clients hold a task and a buffer).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the internal API until `stop` turns true, then waits for the requests in flight (the
/// caller bounds that wait).
pub async fn serve(listener: TcpListener, state: Arc<InternalState>, mut stop: watch::Receiver<bool>) {
    let router = router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (socket, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: back off
                    // briefly rather than spin.
                    tracing::warn!(error = %e, "internal API accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let state = state.clone();
        let router = router.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            let state = state.clone();
            let mut router = router.clone();
            async move {
                if request.method() == Method::POST && request.uri().path() == "/v1/publish" {
                    return Ok::<_, Infallible>(publish_route::publish(&state, request, peer).await);
                }
                request.extensions_mut().insert(ConnectInfo(peer));
                router.call(request).await
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(socket), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "internal API connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
