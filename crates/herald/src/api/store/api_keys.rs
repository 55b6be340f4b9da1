//! API keys on the internal API (and `herald apikey`): one key per domain, shown once.
//!
//! ```text
//! POST   /v2/apikeys       {"domain","username"?} → 201 {"id","domain","key","prefix","active","created_at"}
//! GET    /v2/apikeys       → {"api_keys":[…]} (never the secret)
//! PATCH  /v2/apikeys/{id}  {"active": false|true} → the key
//! DELETE /v2/apikeys/{id}  → 204
//! ```
//!
//! A key publishes with `Authorization: ApiKey <key>` on `POST /v1/publish`, into its domain's
//! namespace; a deleted or inactive key is refused from the next request on (every publish looks
//! it up).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Refused, StoreState, bad, json_response, unavailable};
use crate::auth::api_key::{key_hash, key_prefix, new_key};
use crate::store::api_keys::ApiKey;
use crate::store::{Store, StoreError};

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Not a usable domain or username.
    #[error("{0}")]
    Invalid(String),
    /// The domain has a key already.
    #[error("the domain {0:?} has a key already: delete it first, or disable and keep it")]
    Taken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A domain: 1–64 letters, digits, `.`, `-` and `_` (a namespace, like an issuer's).
pub fn check_domain(domain: &str) -> Result<(), CreateError> {
    let fine = (1..=64).contains(&domain.len())
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    match fine {
        true => Ok(()),
        false => Err(CreateError::Invalid(
            "domain is 1 to 64 letters, digits, '.', '-' or '_'".into(),
        )),
    }
}

/// Makes a key for `domain`: the stored record and the secret (shown once).
pub async fn create_key(
    store: &Store,
    domain: &str,
    username: Option<String>,
    now_ms: i64,
) -> Result<(ApiKey, String), CreateError> {
    check_domain(domain)?;
    if username.as_ref().is_some_and(|u| u.is_empty() || u.len() > 254) {
        return Err(CreateError::Invalid("username is 1 to 254 bytes".into()));
    }
    let secret = new_key();
    let key = ApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        domain: domain.to_owned(),
        username,
        prefix: key_prefix(&secret),
        active: true,
        created_at: now_ms,
    };
    match store.create_api_key(&key, &key_hash(&secret)).await? {
        Some(key) => Ok((key, secret)),
        None => Err(CreateError::Taken(domain.to_owned())),
    }
}

fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, Refused> {
    let fields = match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => fields,
        _ => return Err(bad("invalid_body", "the body is a JSON object")),
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(
            "invalid_body",
            format!("unknown field {unknown:?}; expected {allowed:?}"),
        ));
    }
    Ok(fields)
}

/// `POST /v2/apikeys`.
pub(super) async fn create(State(state): State<Arc<StoreState>>, body: Bytes) -> Result<Response, Refused> {
    let store = super::collections::store(&state)?;
    let fields = object(&body, &["domain", "username"])?;
    let Some(Value::String(domain)) = fields.get("domain") else {
        return Err(bad(
            "invalid_body",
            "domain is required: the namespace the key publishes into",
        ));
    };
    let username = match fields.get("username") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(bad("invalid_body", "username is a string")),
    };
    match create_key(store, domain, username, state.clock.now_ms() as i64).await {
        Ok((key, secret)) => {
            tracing::info!(domain = key.domain, prefix = key.prefix, "API key created");
            let mut shown = serde_json::to_value(&key).expect("a key serialises");
            shown["key"] = json!(secret);
            Ok((StatusCode::CREATED, json_response(shown)).into_response())
        }
        Err(CreateError::Invalid(m)) => Err(bad("invalid_body", m)),
        Err(e @ CreateError::Taken(_)) => Err(Refused::new(StatusCode::CONFLICT, "domain_taken", e.to_string())),
        Err(CreateError::Store(e)) => Err(unavailable(e)),
    }
}

/// `GET /v2/apikeys`.
pub(super) async fn list(State(state): State<Arc<StoreState>>) -> Result<Response, Refused> {
    let store = super::collections::store(&state)?;
    let keys = store.api_keys().await.map_err(unavailable)?;
    Ok(json_response(json!({"api_keys": keys})))
}

fn unknown_key() -> Refused {
    Refused::new(StatusCode::NOT_FOUND, "api_key_not_found", "no such API key")
}

/// `PATCH /v2/apikeys/{id}`.
pub(super) async fn update(
    State(state): State<Arc<StoreState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    let store = super::collections::store(&state)?;
    let fields = object(&body, &["active"])?;
    let Some(Value::Bool(active)) = fields.get("active") else {
        return Err(bad("invalid_body", "active is true or false"));
    };
    match store.set_api_key_active(&id, *active).await.map_err(unavailable)? {
        Some(key) => {
            tracing::info!(domain = key.domain, active, "API key updated");
            Ok(json_response(serde_json::to_value(&key).expect("a key serialises")))
        }
        None => Err(unknown_key()),
    }
}

/// `DELETE /v2/apikeys/{id}`.
pub(super) async fn delete(State(state): State<Arc<StoreState>>, Path(id): Path<String>) -> Result<Response, Refused> {
    let store = super::collections::store(&state)?;
    match store.delete_api_key(&id).await.map_err(unavailable)? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(unknown_key()),
    }
}
