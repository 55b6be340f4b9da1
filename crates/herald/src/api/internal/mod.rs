//! The internal API: `POST /v1/publish` and the admin routes (spec §2).
//!
//! This side holds few connections from backends, so a framework's per-connection cost does not
//! matter here. The admin routes are served by axum, whose routing and extractors earn their
//! keep; the publish route, the one hot path, is answered before axum ([`publish_route`]), on the
//! same hyper connections ([`serve`]).

mod process_stats;
pub mod publish;
mod publish_route;
mod revocations;
mod serve;

pub use serve::serve;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tracing::Level;

use crate::auth::{AuthError, CachingVerifier, bearer_token};
use crate::backplane::Backplane;
use crate::model::Topic;
use crate::node::Node;
use crate::observe::metrics::{Interface, Metrics};
use crate::observe::request_log::{RequestLog, authentication_refused, request_event};

/// Paths served without a token (prefix match, as Neurow).
const OPEN_PREFIXES: &[&str] = &[
    "/ping",
    "/nodes",
    "/cluster_size_above",
    "/history",
    "/process_stats",
    "/favicon.ico",
    "/metrics",
];

/// Paths not counted in `http_request_count` (Neurow skips them too).
const UNCOUNTED: &[&str] = &["/ping", "/favicon.ico", "/metrics"];

/// Everything the internal API's handlers share.
pub struct InternalState {
    /// The public API, for its connection counts.
    pub public: Arc<crate::http::PublicApi>,
    /// The node's core: publish, history, its open connections.
    pub node: Arc<Node>,
    /// Verifies publisher tokens, remembering the accepted ones.
    pub verifier: CachingVerifier,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether 403s carry their precise code.
    pub verbose_errors: bool,
    /// `PUBLISH_MAX_BODY_SIZE`.
    pub max_body_size: usize,
    /// Reported by `/ping`.
    pub revision: Option<String>,
    /// This node's name, for `/nodes`.
    pub node_name: String,
    /// The store's routes' state (collections, accounts).
    pub store: Arc<crate::api::store::StoreState>,
}

/// The internal API's router.
pub fn router(state: Arc<InternalState>) -> Router {
    Router::new()
        .route("/", get(|| async { text(StatusCode::OK, "ok") }))
        .route("/ping", get(ping))
        .route("/nodes", get(nodes))
        .route("/cluster_size_above/{size}", get(cluster_size_above))
        .route("/history/{topic}", get(history))
        .route("/metrics", get(metrics))
        .route("/process_stats", get(process_stats))
        .route(
            "/v2/revocations",
            get(revocations::list)
                .post(revocations::revoke)
                .delete(revocations::lift),
        )
        .with_state(state.clone())
        .merge(crate::api::store::internal_router(state.store.clone()))
        .fallback(not_found)
        // Neurow answers an unknown method on a known path like an unknown path.
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state, count_requests))
}

/// The JSON error body of spec §2.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"error_code": code, "error_message": message}]});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

fn json_response(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// The connection's peer, when the router is served with `ConnectInfo` (always, but in unit tests).
fn peer(extensions: &Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The log fields of a request.
fn request_log(request: &Request) -> RequestLog<'_> {
    RequestLog::http(
        request.method(),
        request.uri(),
        request.headers(),
        peer(request.extensions()),
    )
}

/// The token: `x-interservice-authorization` when present, else `authorization`.
fn token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let name = if headers.contains_key("x-interservice-authorization") {
        "x-interservice-authorization"
    } else {
        "authorization"
    };
    bearer_token(headers.get_all(name).iter().map(HeaderValue::as_bytes))
}

async fn authenticate(State(state): State<Arc<InternalState>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(request).await;
    }
    let now_s = (state.node.hub.clock().now_ms() / 1000) as i64;
    // An API key may act on its domain's collections (and publish: publish_route.rs).
    if path.starts_with("/v2/collections/")
        && let Some(key) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| crate::auth::api_key::from_header(v.as_bytes()))
    {
        return match publish_route::api_key_domain(&state, key).await {
            Ok(domain) => {
                request.extensions_mut().insert(crate::api::store::Caller::Service {
                    namespace: domain.into(),
                });
                next.run(request).await
            }
            Err(refused) => refused,
        };
    }
    match token(request.headers()).and_then(|t| state.verifier.verify(t, now_s)) {
        Ok(principal) => {
            // The store's routes act in the token's namespace.
            request.extensions_mut().insert(crate::api::store::Caller::Service {
                namespace: principal.issuer.clone(),
            });
            next.run(request).await
        }
        Err(e) => refuse_token(&state, e, request_log(&request)),
    }
}

/// The answer to a refused token, counted and logged (by its code only, never with the token:
/// spec §6 says Neurow logged it).
fn refuse_token(state: &InternalState, e: AuthError, log: RequestLog<'_>) -> Response {
    state.metrics.jwt_error(Interface::Internal);
    authentication_refused(log, "internal API", e);
    let (code, message) = e.client_view(state.verbose_errors);
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    error(status, code, message)
}

async fn count_requests(State(state): State<Arc<InternalState>>, request: Request, next: Next) -> Response {
    let counted = !UNCOUNTED.iter().any(|p| request.uri().path().starts_with(p));
    let received = std::time::Instant::now();
    let response = next.run(request).await;
    if counted {
        state
            .metrics
            .http_request(Interface::Internal, response.status().as_u16());
        state.metrics.request_took(Interface::Internal, received.elapsed());
    }
    response
}

/// `application/json` or `application/*+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn not_found(request: Request) -> StatusCode {
    request_event!(
        Level::DEBUG,
        request_log(&request),
        http.response.status_code = 404,
        "no such route"
    );
    StatusCode::NOT_FOUND
}

async fn ping(State(state): State<Arc<InternalState>>) -> Response {
    json_response(json!({"status": "ok", "revision": state.revision}))
}

async fn nodes(State(state): State<Arc<InternalState>>) -> Response {
    text(
        StatusCode::OK,
        state.node.backplane.nodes(&state.node_name).await.neurow_text(),
    )
}

async fn cluster_size_above(State(state): State<Arc<InternalState>>, Path(size): Path<String>) -> Response {
    let Ok(size) = size.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_size",
            "The size must be a whole number",
        );
    };
    let cluster_size = state.node.backplane.nodes(&state.node_name).await.total() as u64;
    let status = if cluster_size >= size {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    text(status, format!("Cluster size: {cluster_size}\n"))
}

async fn history(State(state): State<Arc<InternalState>>, Path(topic): Path<String>) -> Response {
    let topic = Topic::from_full_name(&topic);
    let retained = match state.node.history(&topic).await {
        Ok(retained) => retained,
        Err(e) => {
            tracing::warn!(error = %e, "history refused: Redis unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backplane_unavailable",
                "The cluster's Redis is unavailable; retry later",
            );
        }
    };
    let messages: Vec<_> = retained
        .into_iter()
        .map(|m| {
            json!({
                "timestamp": m.id.0,
                "event": String::from_utf8_lossy(&m.event),
                "payload": String::from_utf8_lossy(&m.payload),
            })
        })
        .collect();
    json_response(serde_json::Value::Array(messages))
}

async fn metrics(State(state): State<Arc<InternalState>>) -> Response {
    let now_s = (state.node.hub.clock().now_ms() / 1000) as i64;
    state
        .metrics
        .set_revocations_active(state.node.revocations.active_count(now_s));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(
            state.node.hub.stats(),
            match &state.node.backplane {
                Backplane::Local => None,
                Backplane::Redis(redis) => Some(redis.stats()),
            },
        ),
    )
        .into_response()
}

async fn process_stats(State(state): State<Arc<InternalState>>) -> Response {
    json_response(process_stats::collect(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
