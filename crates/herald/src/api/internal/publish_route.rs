//! `POST /v1/publish`, answered straight from the connection's hyper service.
//!
//! This is the internal API's one hot route: a backend may publish tens of thousands of times a
//! second. Going through axum's router, two `from_fn` middlewares and boxed services, then
//! decoding into a `serde_json::Value` and building the answer with `json!`, cost ≈9 µs of user
//! space per publish (perf, BENCHMARKS.md), which made Herald's one-to-one peak rate 0.92× Nchan's.
//! Here the route does only what it must: the token (cached), the content type, the body (bounded),
//! the typed parse, the hub, a counter and a short answer written without a JSON tree. The other
//! routes stay on axum, where their cost does not matter.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::net::SocketAddr;
use tracing::Level;

use super::publish::parse_publish;
use super::{InternalState, error, is_json, token};
use crate::model::Topic;
use crate::observe::metrics::Interface;
use crate::observe::request_log::{RequestLog, request_event};

/// Answers one publish request.
pub(super) async fn publish(
    state: &InternalState,
    request: axum::http::Request<Incoming>,
    peer: SocketAddr,
) -> Response {
    let received = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let response = handle(state, &parts, body, peer).await;
    state
        .metrics
        .http_request(Interface::Internal, response.status().as_u16());
    state.metrics.request_took(Interface::Internal, received.elapsed());
    response
}

async fn handle(state: &InternalState, parts: &Parts, body: Incoming, peer: SocketAddr) -> Response {
    let log = || RequestLog::http(&parts.method, &parts.uri, &parts.headers, Some(peer));
    let now_s = (state.node.hub.clock().now_ms() / 1000) as i64;
    // The namespace published into: the token's issuer, or an API key's domain.
    let api_key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::auth::api_key::from_header(v.as_bytes()));
    let namespace: std::sync::Arc<str> = match api_key {
        Some(key) => match api_key_domain(state, key).await {
            Ok(domain) => domain.into(),
            Err(refused) => return refused,
        },
        None => match token(&parts.headers).and_then(|t| state.verifier.verify(t, now_s)) {
            Ok(principal) => principal.issuer.clone(),
            Err(e) => return super::refuse_token(state, e, log()),
        },
    };
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
    let body = match read_body(parts, body, state.max_body_size).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            state.metrics.publish_rejected("body_too_large");
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!(
                    "The body is larger than {} bytes (PUBLISH_MAX_BODY_SIZE)",
                    state.max_body_size
                ),
            );
        }
        Err(BodyError::Unreadable) => {
            return refuse(StatusCode::BAD_REQUEST, "invalid_payload", "The body could not be read");
        }
    };
    let parsed = match parse_publish(&body) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "invalid_payload", &e.0),
    };
    let publish_timestamp = state.node.hub.clock().now_ms();
    for topic in &parsed.topics {
        let topic = Topic::namespaced(&namespace, topic);
        if let Err(e) = state.node.publish(&topic, &parsed.messages).await {
            // Earlier topics of this request may be accepted already (docs/cluster.md).
            request_event!(
                Level::WARN,
                log(),
                error.code = "backplane_unavailable",
                error.message = %e,
                http.response.status_code = 503,
                "publish refused: Redis unavailable"
            );
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backplane_unavailable",
                "The cluster's Redis is unavailable; retry later",
            );
        }
    }
    state.metrics.publish_accepted(&namespace);
    request_event!(
        Level::DEBUG,
        log(),
        issuer = &*namespace,
        topics = parsed.topics.len(),
        messages = parsed.messages.len(),
        http.response.status_code = 200,
        "published"
    );
    accepted(parsed.topics.len() * parsed.messages.len(), publish_timestamp)
}

/// The domain of an active API key, looked up on every publish so that a disabled or deleted
/// key is refused at once; a 401 for an unknown or inactive key (the same answer), a 503 when the
/// store cannot say.
pub(super) async fn api_key_domain(state: &InternalState, key: &str) -> Result<String, Response> {
    let invalid = || {
        state.metrics.jwt_error(crate::observe::metrics::Interface::Internal);
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "The API key is unknown, disabled or deleted",
        )
    };
    let Some(store) = &state.store.store else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_not_configured",
            "API keys live in the store: this node has none (a cluster node needs DATABASE_URL)",
        ));
    };
    if !crate::auth::api_key::looks_like_key(key) {
        return Err(invalid());
    }
    match store.api_key_domain(&crate::auth::api_key::key_hash(key)).await {
        Ok(Some(domain)) => Ok(domain),
        Ok(None) => Err(invalid()),
        Err(e) => {
            tracing::warn!(error = %e, "publish refused: the store cannot check the API key");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The store is unavailable: the API key could not be checked; retry later",
            ))
        }
    }
}

/// `{"nb_published":N,"publish_timestamp":T}`: two integers, no JSON tree needed.
fn accepted(nb_published: usize, publish_timestamp: u64) -> Response {
    let body = format!(r#"{{"nb_published":{nb_published},"publish_timestamp":{publish_timestamp}}}"#);
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

enum BodyError {
    TooLarge,
    Unreadable,
}

/// The whole body, refused early when its announced length is already over `limit`.
async fn read_body(parts: &Parts, body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_is_the_json_neurow_sends() {
        let response = accepted(6, 1_700_000_000_123);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"nb_published": 6, "publish_timestamp": 1_700_000_000_123u64})
        );
    }
}
