//! The store's REST routes on the public listener (`/v2/users`, `/v2/login`,
//! `/v2/collections/…`): the one place the lean public server reads a request body. The body
//! (content-length only, at most [`MAX_BODY`]) is read here, the caller's token verified, and the
//! request handed to the store's axum router ([`crate::api::store::public_router`]); its answer
//! comes back as a [`Reply`].

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body as AxumBody;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;

use super::PublicApi;
use super::request::{Body, Method, RequestHead};
use super::response::{self, Reply};
use crate::api::store::Caller;
use crate::api::store::accounts::PeerAddress;
use crate::auth::bearer_token;
use crate::transport::sse::stream::HeldConnection;

/// Largest body a store request may carry (an event's JSON data included).
pub(super) const MAX_BODY: u64 = 1 << 20;

/// How long the body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The store's public paths, after the context path.
pub(super) fn is_store_path(path: &str) -> bool {
    path == "/v2/users" || path == "/v2/login" || path == "/v2/users/me/events" || path.starts_with("/v2/collections/")
}

impl PublicApi {
    /// The context path, which the store's router does not know.
    fn context_path(&self) -> &str {
        self.v2.tickets_path.strip_suffix("/v2/tickets").unwrap_or("")
    }

    /// Whether `path` is one of the store's routes.
    pub(super) fn is_rest(&self, path: &str) -> bool {
        self.rest.get().is_some() && path.strip_prefix(self.context_path()).is_some_and(is_store_path)
    }

    /// Reads the body of a store request and answers it; `None` when the body could not be read
    /// (the connection closes).
    pub(super) async fn rest<S: HeldConnection>(
        &self,
        socket: &mut S,
        buf: &mut Vec<u8>,
        head: &RequestHead,
        peer: Option<IpAddr>,
    ) -> Option<Reply> {
        let origin = head
            .request
            .single_origin()
            .filter(|o| self.settings.allowed_origins.is_match(o));
        let length = match head.body {
            Body::Empty => 0,
            Body::Length(n) if n <= MAX_BODY => n as usize,
            Body::Length(_) => {
                return Some(response::json_error(
                    413,
                    "body_too_large",
                    &format!("a body is at most {MAX_BODY} bytes"),
                    origin,
                ));
            }
            Body::Chunked => {
                return Some(response::json_error(
                    411,
                    "length_required",
                    "send the body with a content-length",
                    origin,
                ));
            }
        };
        while buf.len() < length {
            match tokio::time::timeout(BODY_TIMEOUT, socket.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        Some(self.answer_rest(head, body, peer, origin).await)
    }

    async fn answer_rest(
        &self,
        head: &RequestHead,
        body: Vec<u8>,
        peer: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Reply {
        let request = &head.request;
        let path = request.path.strip_prefix(self.context_path()).unwrap_or(&request.path);
        let method = match request.method {
            Method::Get => axum::http::Method::GET,
            Method::Post => axum::http::Method::POST,
            _ => return response::json_error(405, "method_not_allowed", "GET or POST", origin),
        };
        let uri = if request.query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", request.query)
        };
        let Ok(mut call) = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(AxumBody::from(body))
        else {
            return response::json_error(400, "invalid_request", "the request target is not a valid URI", origin);
        };
        call.extensions_mut().insert(PeerAddress(peer));
        // Signing up and logging in need no token; the rest a user's.
        if path != "/v2/users" && path != "/v2/login" {
            let now_s = self.now_s() as i64;
            let principal = bearer_token(request.authorization.iter().map(Vec::as_slice))
                .and_then(|token| self.verifier.verify(token, now_s));
            let principal = match principal {
                Ok(p) => p,
                Err(e) => {
                    self.metrics.jwt_error(crate::observe::metrics::Interface::Public);
                    let (code, message) = e.client_view(self.settings.verbose_errors);
                    return response::json_error(e.status(), code, message, origin);
                }
            };
            let (Some(user), Ok(grants)) = (principal.subject.clone(), principal.grants.clone()) else {
                return response::json_error(
                    403,
                    "not_a_user",
                    "the store's routes on the public API need a user's token: one with a sub claim and valid grants",
                    origin,
                );
            };
            call.extensions_mut().insert(Caller::User {
                namespace: principal.issuer.clone(),
                user,
                grants: std::sync::Arc::new(grants),
                privileged_roles: self.v2.privileged_roles.clone().into(),
            });
        }
        let router = self.rest.get().expect("checked by is_rest").clone();
        let answer = match tower_service::Service::call(&mut router.into_service(), call).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match answer.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return response::json_error(500, "internal_error", "the answer could not be read", origin),
        };
        let mut reply = if status < 400 {
            let mut ok = response::json_ok(body, origin);
            ok.status = status;
            ok
        } else {
            let mut refused = response::json_error(status, "", "", origin);
            refused.body = body;
            refused.close = false;
            refused
        };
        if let Some(after) = retry_after {
            reply.headers.push(("retry-after", after));
        }
        reply
    }
}
