//! The store's routes — collections of events and accounts — on both APIs: a backend on the
//! internal API acts as a service in its token's namespace; a user on the public API (a login
//! token, or any token of the namespace) acts on what it owns or what its grants name. The same
//! handlers serve both; only who the [`Caller`] is differs.
//!
//! These routes are REST over small JSON bodies, served by axum on both listeners: the public
//! listener hands such a request, its body read, to [`public_router`]'s service (`http::rest`).

pub mod accounts;
pub mod api_keys;
pub mod collections;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::grants::Grants;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// What the store's handlers share.
pub struct StoreState {
    /// The store, if the node has one.
    pub store: Option<Arc<Store>>,
    /// Time.
    pub clock: Clock,
    /// Accounts: signup, login, their hashing pool and throttle.
    pub accounts: accounts::Accounts,
}

/// Who calls a store route.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A backend with an internal-API token: any collection of its namespace.
    Service {
        /// The token's issuer.
        namespace: Arc<str>,
    },
    /// A user (its token's `sub`) with a public-API token.
    User {
        /// The token's issuer.
        namespace: Arc<str>,
        /// Its `sub`.
        user: String,
        /// What the token grants besides ownership.
        grants: Arc<Grants>,
        /// `PUBLIC_API_PRIVILEGED_ROLES`, for [`Grants::may_read`].
        privileged_roles: Arc<[String]>,
    },
}

impl Caller {
    /// The namespace it acts in.
    pub fn namespace(&self) -> &str {
        match self {
            Caller::Service { namespace } | Caller::User { namespace, .. } => namespace,
        }
    }

    /// The user, if it is one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Service { .. } => None,
            Caller::User { user, .. } => Some(user),
        }
    }

    /// Whether it may act on `collection` without owning it.
    pub(crate) fn may(&self, collection: &str, access: collections::Access) -> bool {
        match self {
            Caller::Service { .. } => true,
            Caller::User {
                grants,
                privileged_roles,
                ..
            } => {
                let topic = format!("collections/{collection}");
                match access {
                    collections::Access::Read => grants.may_read(None, privileged_roles, &topic),
                    collections::Access::Write => grants.may_publish(&topic),
                }
            }
        }
    }
}

/// A refused request: its status, code and message, in the APIs' error shape.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
}

impl Refused {
    /// A refusal.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"errors": [{"error_code": self.code, "error_message": self.message}]});
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(value) = s.to_string().parse()
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A 400.
pub fn bad(code: &'static str, message: impl Into<String>) -> Refused {
    Refused::new(StatusCode::BAD_REQUEST, code, message)
}

/// The 503 of a failed store operation (nothing was written).
pub fn unavailable(e: StoreError) -> Refused {
    tracing::warn!(error = %e, "store request refused: the store is unavailable");
    Refused::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The store is unavailable: nothing was changed; retry later",
    )
}

/// A JSON answer.
pub fn json_response(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// The collection routes (each handler needs an `Extension<Caller>`).
fn collection_routes() -> Router<Arc<StoreState>> {
    Router::new()
        .route(
            "/v2/collections/{collection}/events",
            get(collections::list).post(collections::insert),
        )
        .route("/v2/collections/{collection}/events/{id}", get(collections::get_one))
        .route(
            "/v2/collections/{collection}/events/{id}/cancel",
            post(collections::cancel),
        )
}

/// The store's routes on the internal API: collections, and creating users.
pub fn internal_router(state: Arc<StoreState>) -> Router {
    collection_routes()
        .route("/v2/users", post(accounts::create_by_service))
        .route("/v2/apikeys", get(api_keys::list).post(api_keys::create))
        .route(
            "/v2/apikeys/{id}",
            axum::routing::patch(api_keys::update).delete(api_keys::delete),
        )
        .with_state(state)
}

/// The store's routes on the public API: signup (when open) and login, which need no token; the
/// collections and `users/me/events`, which need a user's (the `Extension<Caller>` the public
/// listener adds after verifying it).
pub fn public_router(state: Arc<StoreState>) -> Router {
    collection_routes()
        .route("/v2/users/me/events", get(collections::mine))
        .route("/v2/users", post(accounts::signup))
        .route("/v2/login", post(accounts::login))
        .with_state(state)
}
