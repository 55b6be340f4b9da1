//! `POST|GET|DELETE /v2/revocations` on the internal API: revoke a token (`jti`), a subject
//! (`sub`) or a session (`sid`) of an issuer until a time, list what is in force, lift one.
//!
//! ```json
//! POST /v2/revocations  {"iss": "acme", "sub": "user-42", "until": 1790000000}
//! 201                   {"revocation": {"iss": "acme", "sub": "user-42", "until": 1790000000}, "closed_here": 3}
//! ```
//!
//! Parsing is strict (exactly one of `jti`, `sub`, `sid`; a configured issuer; no unknown field),
//! so a typo cannot silently revoke nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{InternalState, error, json_response};
use crate::auth::revocation::{MAX_SPAN_S, MAX_VALUE_BYTES, RevocationKind, RevokedKey};
use crate::node::RevokeFailure;

/// Why a revocation request was refused: always a 400 with this text.
#[derive(Debug, PartialEq, Eq)]
struct Invalid(String);

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// The key a request names, from a JSON body or query parameters (both as string fields).
fn key_of(
    fields: &Map<String, Value>,
    known_issuer: impl Fn(&str) -> bool,
    allowed: &[&str],
) -> Result<RevokedKey, Invalid> {
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return invalid(format!(
            "unknown field {unknown:?}: a revocation has iss, one of jti, sub or sid{}",
            if allowed.contains(&"until") { ", and until" } else { "" }
        ));
    }
    let string = |name: &str| -> Result<Option<String>, Invalid> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_VALUE_BYTES => Ok(Some(s.clone())),
            Some(_) => invalid(format!("{name} must be a string of 1 to {MAX_VALUE_BYTES} bytes")),
        }
    };
    let Some(issuer) = string("iss")? else {
        return invalid("iss is required: the issuer whose tokens are revoked");
    };
    if !known_issuer(&issuer) {
        return invalid(format!("iss {issuer:?} is not a configured issuer (JWT_CONFIG)"));
    }
    let mut named = Vec::new();
    for kind in [RevocationKind::Jti, RevocationKind::Sub, RevocationKind::Sid] {
        if let Some(value) = string(kind.claim())? {
            named.push((kind, value));
        }
    }
    match <[_; 1]>::try_from(named) {
        Ok([(kind, value)]) => Ok(RevokedKey { kind, issuer, value }),
        Err(_) => invalid("give exactly one of jti (a token), sub (a subject) or sid (a session)"),
    }
}

/// The end a body asks for, if any: whole seconds since the epoch, after now and within a year.
fn until_of(fields: &Map<String, Value>, now_s: i64) -> Result<Option<i64>, Invalid> {
    let Some(until) = fields.get("until") else {
        return Ok(None);
    };
    match until.as_i64() {
        Some(u) if u > now_s && u <= now_s + MAX_SPAN_S => Ok(Some(u)),
        _ => invalid(format!(
            "until must be whole seconds since the epoch, after now ({now_s}) and at most a year ahead; \
             leave it out to cover every token that can still be valid"
        )),
    }
}

fn known_issuer(state: &InternalState) -> impl Fn(&str) -> bool + '_ {
    |name| state.public.verifier.config().issuer(name).is_some() || state.verifier.config().issuer(name).is_some()
}

fn bad_request(e: Invalid) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_revocation", &e.0)
}

fn backplane_unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "backplane_unavailable",
        "The cluster's Redis is unavailable: nothing was changed; retry later",
    )
}

fn now_s(state: &InternalState) -> i64 {
    (state.node.hub.clock().now_ms() / 1000) as i64
}

/// `POST /v2/revocations`.
pub(super) async fn revoke(State(state): State<Arc<InternalState>>, body: Bytes) -> Response {
    let fields = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return bad_request(Invalid("the body must be a JSON object".into())),
        Err(e) => return bad_request(Invalid(format!("the body is not valid JSON: {e}"))),
    };
    let now = now_s(&state);
    let parsed = key_of(&fields, known_issuer(&state), &["iss", "jti", "sub", "sid", "until"])
        .and_then(|key| Ok((key, until_of(&fields, now)?)));
    let (key, until) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(e),
    };
    let until = state.node.revocations.until(now, until);
    let kind = key.kind.claim();
    let shown = key.to_json(Some(until));
    match state.node.revoke(key, until).await {
        Ok(closed) => {
            state.metrics.revocation_recorded(kind);
            state.metrics.connections_revoked(closed);
            tracing::info!(kind, closed_here = closed, until, "revocation recorded");
            let body = json!({"revocation": shown, "closed_here": closed});
            (StatusCode::CREATED, json_response(body)).into_response()
        }
        Err(RevokeFailure::Full(e)) => error(StatusCode::CONFLICT, "too_many_revocations", &e.to_string()),
        Err(RevokeFailure::Backplane(e)) => {
            tracing::warn!(error = %e, "revocation refused: Redis unavailable");
            backplane_unavailable()
        }
    }
}

/// `GET /v2/revocations`: this node's copy (in a cluster, at most a sync interval old).
pub(super) async fn list(State(state): State<Arc<InternalState>>) -> Response {
    let active: Vec<Value> = state
        .node
        .revocations
        .active(now_s(&state))
        .into_iter()
        .map(|(key, until)| key.to_json(Some(until)))
        .collect();
    json_response(json!({"revocations": active}))
}

/// `DELETE /v2/revocations?iss=…&sub=…`: lifts one.
pub(super) async fn lift(
    State(state): State<Arc<InternalState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let fields: Map<String, Value> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let key = match key_of(&fields, known_issuer(&state), &["iss", "jti", "sub", "sid"]) {
        Ok(key) => key,
        Err(e) => return bad_request(e),
    };
    match state.node.lift(&key).await {
        Ok(true) => {
            tracing::info!(kind = key.kind.claim(), "revocation lifted");
            json_response(json!({"lifted": key.to_json(None)}))
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "revocation_not_found",
            "no such revocation is in force (it may have ended)",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "lift refused: Redis unavailable");
            backplane_unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const ALL: &[&str] = &["iss", "jti", "sub", "sid", "until"];

    #[test]
    fn a_revocation_names_one_claim_of_a_configured_issuer() {
        let known = |n: &str| n == "acme";
        let key = key_of(&fields(json!({"iss": "acme", "sid": "s-1"})), known, ALL).unwrap();
        assert_eq!((key.kind, key.value.as_str()), (RevocationKind::Sid, "s-1"));
        for (body, says) in [
            (json!({"sub": "u"}), "iss is required"),
            (json!({"iss": "other", "sub": "u"}), "not a configured issuer"),
            (json!({"iss": "acme"}), "exactly one of"),
            (json!({"iss": "acme", "sub": "u", "jti": "t"}), "exactly one of"),
            (json!({"iss": "acme", "sub": ""}), "1 to 1024 bytes"),
            (json!({"iss": "acme", "sub": 5}), "must be a string"),
            (json!({"iss": "acme", "subject": "u"}), "unknown field \"subject\""),
        ] {
            let Err(Invalid(message)) = key_of(&fields(body.clone()), known, ALL) else {
                panic!("{body} accepted");
            };
            assert!(message.contains(says), "{body}: {message}");
        }
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert!(key_of(&fields(json!({"iss": "acme", "jti": long})), known, ALL).is_err());
    }

    #[test]
    fn until_is_a_future_second_within_a_year() {
        let now = 1_000_000;
        assert_eq!(until_of(&fields(json!({})), now), Ok(None));
        assert_eq!(until_of(&fields(json!({"until": now + 60})), now), Ok(Some(now + 60)));
        for bad in [
            json!(now),
            json!(now - 1),
            json!(now + MAX_SPAN_S + 1),
            json!("soon"),
            json!(1.5),
        ] {
            assert!(until_of(&fields(json!({"until": bad})), now).is_err(), "{bad}");
        }
    }
}
