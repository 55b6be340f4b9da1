//! The Neurow face (v1): `GET|POST {PUBLIC_API_CONTEXT_PATH}/v1/subscribe`, byte-identical to
//! Doctolib's Neurow (spec/neurow.md): its order of checks (authentication, then the route, then
//! the subscription's own), its error bodies (SSE `neurow_error_<status>` events) and its events.
//! Decisions only; the stream is the public listener's held connection ([`crate::http`]).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::Level;

use crate::auth::{AuthError, bearer_token};
use crate::http::request::{Method, Request, parse_last_event_id};
use crate::http::response::{self, Reply};
use crate::http::subscription::{StreamKind, SubscribeRequest};
use crate::http::{Action, PublicApi};
use crate::model::Topic;
use crate::observe::metrics::Interface;
use crate::observe::request_log::{RequestLog, authentication_refused, request_event};

impl PublicApi {
    /// Decides a request for the v1 face, in Neurow's order.
    pub(crate) fn route_v1(&self, head: &Request, peer: Option<IpAddr>) -> Action {
        let received = Instant::now();
        let log = || RequestLog::raw(&head.path, &head.log, peer);
        let origin = head.single_origin();
        let now_s = self.now_s();
        let principal = match bearer_token(head.authorization.iter().map(Vec::as_slice))
            .and_then(|token| self.verifier.verify(token, now_s as i64))
        {
            Ok(p) => p,
            Err(e) => return Action::Reply(self.auth_error(e, log, origin, now_s)),
        };
        let is_subscribe =
            matches!(head.method, Method::Get | Method::Post) && head.path == self.settings.subscribe_path;
        if !is_subscribe {
            request_event!(Level::DEBUG, log(), http.response.status_code = 404, "no such route");
            return Action::Reply(response::empty(404));
        }
        let Some(subject) = principal.subject.as_deref() else {
            request_event!(
                Level::DEBUG,
                log(),
                http.response.status_code = 400,
                "subscription refused: the token has no sub claim"
            );
            return Action::Reply(response::text(400, "Expected JWT claims are missing", false));
        };
        let Ok(resume) = parse_last_event_id(head.last_event_id.as_deref()) else {
            request_event!(
                Level::DEBUG,
                log(),
                error.code = "invalid_last_event_id",
                http.response.status_code = 400,
                "subscription refused: Last-Event-ID is not an integer"
            );
            return Action::Reply(response::sse_error(
                400,
                "invalid_last_event_id",
                "Wrong value for last-event-id",
                origin,
                now_s,
            ));
        };
        if self.stopping.load(Ordering::SeqCst) {
            self.metrics.connection_rejected("shutting_down");
            request_event!(
                Level::DEBUG,
                log(),
                error.code = "shutting_down",
                http.response.status_code = 503,
                "subscription refused: shutting down"
            );
            return Action::Reply(response::unavailable(
                "shutting_down",
                "This node is shutting down; reconnect",
                1,
                now_s,
            ));
        }
        if let Some(refused) = self.admit_subscription(log) {
            return Action::Reply(refused);
        }
        request_event!(
            Level::DEBUG,
            log(),
            issuer = &*principal.issuer,
            http.response.status_code = 200,
            "subscription opened"
        );
        Action::Subscribe(SubscribeRequest {
            received,
            topics: vec![(Topic::namespaced(&principal.issuer, subject), resume)],
            expires_ms: u64::try_from(principal.expires_at_s).unwrap_or(0).saturating_mul(1000),
            identity: self.node.revocations.identity(&principal),
            kind: StreamKind::Neurow,
            issuer: principal.issuer,
        })
    }

    /// Logged by error code only, never with the token (spec §6: Neurow logged it).
    fn auth_error<'a>(
        &self,
        e: AuthError,
        log: impl Fn() -> RequestLog<'a>,
        origin: Option<&str>,
        now_s: u64,
    ) -> Reply {
        self.metrics.jwt_error(Interface::Public);
        authentication_refused(log(), "public API", e);
        let (code, message) = e.client_view(self.settings.verbose_errors);
        response::sse_error(e.status(), code, message, origin, now_s)
    }
}
