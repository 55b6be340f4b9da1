//! The internal API: `POST /v1/publish` and the admin routes (spec §2), served by axum.
//!
//! This side holds few, short-lived connections from backends, so a framework's per-connection
//! cost does not matter here and axum's routing and extractors earn their keep.

pub mod publish;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::Level;

use crate::auth::{AuthError, CachingVerifier, Principal, bearer_token};
use crate::hub::Hub;
use crate::hub::liveness::Liveness;
use crate::model::Topic;
use crate::observe::metrics::{Interface, Metrics};
use crate::observe::request_log::{RequestLog, request_event};
use publish::parse_publish;

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
    /// The node's topics.
    pub hub: Arc<Hub>,
    /// The node's open streams.
    pub liveness: Arc<Liveness>,
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
        .route("/v1/publish", post(publish))
        .fallback(not_found)
        // Neurow answers an unknown method on a known path like an unknown path.
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
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
    let now_s = (state.hub.clock().now_ms() / 1000) as i64;
    match token(request.headers()).and_then(|t| state.verifier.verify(t, now_s)) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            state.metrics.jwt_error(Interface::Internal);
            // By error code only, never with the token (spec §6: Neurow logged it).
            request_event!(
                Level::WARN,
                request_log(&request),
                category = "security",
                event.category = "authentication",
                event.outcome = "failure",
                error.code = format_args!("jwt_authentication.{}", e.code()),
                http.response.status_code = e.status(),
                "internal API authentication refused"
            );
            let (code, message) = e.client_view(state.verbose_errors);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
            error(status, code, message)
        }
    }
}

async fn count_requests(State(state): State<Arc<InternalState>>, request: Request, next: Next) -> Response {
    let counted = !UNCOUNTED.iter().any(|p| request.uri().path().starts_with(p));
    let response = next.run(request).await;
    if counted {
        state
            .metrics
            .http_request(Interface::Internal, response.status().as_u16());
    }
    response
}

async fn publish(State(state): State<Arc<InternalState>>, request: Request) -> Response {
    // Split so the head (for the log lines) outlives the body.
    let (parts, body) = request.into_parts();
    let log = || RequestLog::http(&parts.method, &parts.uri, &parts.headers, peer(&parts.extensions));
    let refuse = |status: StatusCode, code: &str, message: &str| {
        request_event!(
            Level::DEBUG,
            log(),
            error.code = code,
            http.response.status_code = status.as_u16(),
            reason = message,
            "publish refused"
        );
        error(status, code, message)
    };
    let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_authorization_header",
            "Invalid authorization header",
        );
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
            "The body must be JSON, sent with content-type: application/json",
        );
    }
    let body = match read_body(body, state.max_body_size).await {
        Ok(body) => body,
        Err((status, code, message)) => {
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                state.metrics.publish_rejected("body_too_large");
            }
            return refuse(status, code, &message);
        }
    };
    let parsed = match parse_publish(&body) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "invalid_payload", &e.0),
    };
    let publish_timestamp = state.hub.clock().now_ms();
    for topic in &parsed.topics {
        state
            .hub
            .publish(&Topic::namespaced(&principal.issuer, topic), &parsed.messages);
    }
    state.metrics.publish_accepted(&principal.issuer);
    request_event!(
        Level::DEBUG,
        log(),
        issuer = &*principal.issuer,
        topics = parsed.topics.len(),
        messages = parsed.messages.len(),
        http.response.status_code = 200,
        "published"
    );
    json_response(json!({
        "nb_published": parsed.topics.len() * parsed.messages.len(),
        "publish_timestamp": publish_timestamp,
    }))
}

/// `application/json` or `application/*+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body, or the status, code and message of the refusal.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, (StatusCode, &'static str, String)> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body is larger than {limit} bytes (PUBLISH_MAX_BODY_SIZE)"),
        )),
        Err(_) => Err((
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            "The body could not be read".to_owned(),
        )),
    }
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
        format!("Current node: {}\r\nTotal nodes: 1\r\nNodes: []\r\n", state.node_name),
    )
}

async fn cluster_size_above(Path(size): Path<String>) -> Response {
    let Ok(size) = size.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_size",
            "The size must be a whole number",
        );
    };
    let cluster_size = 1;
    let status = if cluster_size >= size {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    text(status, format!("Cluster size: {cluster_size}\n"))
}

async fn history(State(state): State<Arc<InternalState>>, Path(topic): Path<String>) -> Response {
    let messages: Vec<_> = state
        .hub
        .history(&Topic::from_full_name(&topic))
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(state.hub.stats()),
    )
        .into_response()
}

async fn process_stats(State(state): State<Arc<InternalState>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.hub.stats();
    json_response(json!({
        "streams": state.liveness.len(),
        "subscriptions": stats.subscriptions.load(Relaxed),
        "topics": stats.topics.load(Relaxed),
        "history_messages": stats.history_messages.load(Relaxed),
        "history_bytes": stats.history_bytes.load(Relaxed),
        "rss_bytes": crate::observe::process::rss_bytes(),
    }))
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
