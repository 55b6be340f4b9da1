//! Accounts: `POST /v2/users` `{"username","password"}` → 201 `{"id","username"}` (on the public
//! API when `ACCOUNTS_SIGNUP=open`; always on the internal API, for a backend), and
//! `POST /v2/login` → `{"token","expires_in"}`, a token of `ACCOUNTS_ISSUER` with `sub` = the
//! user's id, which the public API accepts like any other.
//!
//! Unknown users and wrong passwords get the same 401 after the same work (a dummy hash is
//! verified), and failures are throttled per account and per client address (429 with
//! `retry-after`). Passwords and hashes are never logged.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Refused, StoreState, bad, json_response, unavailable};
use crate::auth::keys::AuthConfig;
use crate::auth::passwords::{LoginThrottle, Passwords};
use crate::auth::token::TokenRequest;
use crate::store::users::Created;

/// Username length bounds, bytes.
pub const USERNAME_BYTES: std::ops::RangeInclusive<usize> = 3..=64;
/// Password length bounds, bytes (the upper one bounds the hashing work a request can ask).
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=256;

/// The client's address, as the listener saw it (for the login throttle).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddress(pub Option<IpAddr>);

/// Account settings and machinery.
pub struct Accounts {
    /// `ACCOUNTS_SIGNUP=open`.
    pub signup_open: bool,
    /// `ACCOUNTS_ISSUER`, if an issuer can sign.
    pub issuer: Option<String>,
    /// `ACCOUNTS_TOKEN_LIFETIME`.
    pub token_lifetime_s: u64,
    /// The public API's issuers, to sign with.
    pub auth: AuthConfig,
    /// The hashing pool.
    pub passwords: Passwords,
    /// Failed logins.
    pub throttle: LoginThrottle,
}

/// The username rule, as the errors say it.
pub const USERNAME_RULE: &str = "username is 3 to 64 letters, digits, '.', '_', '-', '@' or '+' (case does not matter)";
/// The password rule.
pub const PASSWORD_RULE: &str = "password is a string of 8 to 256 bytes";

/// A username, normalised (lowercase), if it follows [`USERNAME_RULE`].
pub fn normalise_username(name: &str) -> Option<String> {
    (USERNAME_BYTES.contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+')))
    .then(|| name.to_ascii_lowercase())
}

/// Whether a password follows [`PASSWORD_RULE`].
pub fn password_fits(password: &str) -> bool {
    PASSWORD_BYTES.contains(&password.len())
}

fn username(value: Option<&Value>) -> Result<String, Refused> {
    match value {
        Some(Value::String(name)) => normalise_username(name).ok_or_else(|| bad("invalid_username", USERNAME_RULE)),
        _ => Err(bad("invalid_username", USERNAME_RULE)),
    }
}

fn password(value: Option<&Value>) -> Result<String, Refused> {
    match value {
        Some(Value::String(p)) if password_fits(p) => Ok(p.clone()),
        _ => Err(bad("invalid_password", PASSWORD_RULE)),
    }
}

fn credentials(body: &[u8]) -> Result<(String, String), Refused> {
    let fields: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => fields,
        _ => {
            return Err(bad(
                "invalid_body",
                "the body is a JSON object {\"username\", \"password\"}",
            ));
        }
    };
    if let Some(unknown) = fields.keys().find(|k| !["username", "password"].contains(&k.as_str())) {
        return Err(bad(
            "invalid_body",
            format!("unknown field {unknown:?}: username and password are"),
        ));
    }
    Ok((username(fields.get("username"))?, password(fields.get("password"))?))
}

fn no_issuer() -> Refused {
    Refused::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "accounts_unavailable",
        "no issuer can sign login tokens: set ACCOUNTS_ISSUER to an issuer of JWT_CONFIG with a secret",
    )
}

async fn create(state: &StoreState, body: &[u8]) -> Result<Response, Refused> {
    let store = super::collections::store(state)?;
    let accounts = &state.accounts;
    let namespace = accounts.issuer.as_deref().ok_or_else(no_issuer)?;
    let (name, secret) = credentials(body)?;
    let hash = accounts.passwords.hash(secret).await;
    let id = uuid::Uuid::now_v7().to_string();
    match store
        .create_user(namespace, &id, &name, &hash, state.clock.now_ms() as i64)
        .await
        .map_err(unavailable)?
    {
        Created::Done(id) => {
            tracing::info!(user = id, "account created");
            Ok((StatusCode::CREATED, json_response(json!({"id": id, "username": name}))).into_response())
        }
        Created::Taken => Err(Refused::new(
            StatusCode::CONFLICT,
            "username_taken",
            "this username is taken",
        )),
    }
}

/// `POST /v2/users` on the public API.
pub(super) async fn signup(State(state): State<Arc<StoreState>>, body: Bytes) -> Result<Response, Refused> {
    if !state.accounts.signup_open {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "signup_closed",
            "accounts are created by the service (ACCOUNTS_SIGNUP is closed)",
        ));
    }
    create(&state, &body).await
}

/// `POST /v2/users` on the internal API.
pub(super) async fn create_by_service(State(state): State<Arc<StoreState>>, body: Bytes) -> Result<Response, Refused> {
    create(&state, &body).await
}

/// `POST /v2/login`.
pub(super) async fn login(
    State(state): State<Arc<StoreState>>,
    peer: Option<Extension<PeerAddress>>,
    body: Bytes,
) -> Result<Response, Refused> {
    let store = super::collections::store(&state)?;
    let accounts = &state.accounts;
    let namespace = accounts.issuer.as_deref().ok_or_else(no_issuer)?;
    let address = peer.and_then(|Extension(PeerAddress(a))| a);
    let invalid = || {
        Refused::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown username or wrong password",
        )
    };
    // Malformed credentials are refused like wrong ones: they name no account.
    let Ok((name, secret)) = credentials(&body) else {
        return Err(invalid());
    };
    let now_ms = state.clock.now_ms();
    if let Some(retry_after_s) = accounts.throttle.refuses(&name, address, now_ms) {
        let mut refused = Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins for this account or address; retry later",
        );
        refused.retry_after_s = Some(retry_after_s);
        return Err(refused);
    }
    let found = store.user_by_name(namespace, &name).await.map_err(unavailable)?;
    let (id, hash) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    if !accounts.passwords.verify(secret, hash).await {
        accounts.throttle.failed(&name, address, now_ms);
        return Err(invalid());
    }
    let id = id.expect("a verified password has a user");
    accounts.throttle.succeeded(&name);
    let token = TokenRequest {
        issuer: namespace.to_owned(),
        subject: Some(id),
        lifetime_s: accounts.token_lifetime_s,
        ..Default::default()
    }
    .sign(&accounts.auth, (now_ms / 1000) as i64)
    .map_err(|_| no_issuer())?;
    Ok(json_response(
        json!({"token": token, "expires_in": accounts.token_lifetime_s}),
    ))
}
