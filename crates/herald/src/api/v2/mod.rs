//! Herald's own subscribe API (v2): `GET|POST {PUBLIC_API_CONTEXT_PATH}/v2/subscribe`.
//!
//! One SSE stream for many topics, authorised by what the token grants, from a browser with no
//! custom header (a query token or a cookie), and resumed on all of its topics by the one cursor
//! the browser sends back by itself as `Last-Event-ID` (docs/api.md). Decisions only: the
//! stream itself is the same held connection as v1's, with Herald's event format.

mod poll;
pub mod query;
pub mod ws;

pub(crate) use poll::PollRequest;
pub(crate) use ws::WsRequest;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::Level;

use crate::auth::ticket::{TicketClaims, looks_like_ticket};
use crate::auth::{AuthError, Principal, bearer_token};
use crate::backplane::BackplaneError;
use crate::http::request::Request;
use crate::http::response::{self, Reply};
use crate::http::subscription::{HeraldRequest, StreamKind, SubscribeRequest};
use crate::http::{Action, PublicApi};
use crate::model::cursor::{self, CursorError};
use crate::model::{Message, ResumeFrom, Topic};
use crate::observe::metrics::Interface;
use crate::observe::request_log::{RequestLog, authentication_refused, request_event};
use query::Query;

/// Settings of the v2 face.
#[derive(Debug, Clone)]
pub struct V2Settings {
    /// `{PUBLIC_API_CONTEXT_PATH}/v2/subscribe`.
    pub subscribe_path: String,
    /// `{PUBLIC_API_CONTEXT_PATH}/v2/poll`.
    pub poll_path: String,
    /// `PUBLIC_API_MAX_TOPICS_PER_CONNECTION`.
    pub max_topics: usize,
    /// `PUBLIC_API_PRIVILEGED_ROLES`: a token with one of these roles reads any topic of its issuer.
    pub privileged_roles: Vec<String>,
    /// `PUBLIC_API_TOKEN_COOKIE`: the cookie a browser's token may come in.
    pub token_cookie: String,
    /// `PUBLIC_API_TICKET_LIFETIME`: how long a ticket may wait for its one use.
    pub ticket_lifetime: std::time::Duration,
    /// `{PUBLIC_API_CONTEXT_PATH}/v2/tickets`.
    pub tickets_path: String,
    /// `{PUBLIC_API_CONTEXT_PATH}/v2/ws`.
    pub ws_path: String,
    /// The WebSocket limits.
    pub ws: ws::WsSettings,
}

/// A refusal: status, stable code, message; counted and logged by [`PublicApi::refuse`].
struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
}

fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

/// The v2 routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V2Route {
    /// `/v2/subscribe`: an SSE stream.
    Subscribe,
    /// `/v2/poll`: a long-poll.
    Poll,
    /// `POST /v2/tickets`: trade a bearer token for a ticket.
    Tickets,
    /// `GET /v2/ws`: a WebSocket.
    WebSocket,
}

impl PublicApi {
    /// Decides a v2 request. Async because a ticket is redeemed (and issued) through the
    /// backplane on a cluster node.
    pub(crate) async fn route_v2(&self, head: &Request, peer: Option<IpAddr>, route: V2Route) -> Action {
        let received = Instant::now();
        let log = || RequestLog::raw(&head.path, &head.log, peer);
        let origin = self.credentialed_origin(head);
        let now_s = self.now_s();
        let decided = match route {
            V2Route::Tickets => self.issue_ticket(head, now_s).await.map(Action::Reply),
            V2Route::WebSocket => self
                .ws_request(head, now_s)
                .await
                .map(|request| Action::WebSocket(Box::new(request))),
            V2Route::Subscribe | V2Route::Poll => {
                self.v2_request(head, now_s, received)
                    .await
                    .and_then(|(request, query)| {
                        if route == V2Route::Subscribe {
                            return Ok(Action::Subscribe(request));
                        }
                        let timeout = poll::timeout(query.timeout.as_deref())
                            .map_err(|m| V2Error::Refused(refusal(400, "invalid_query", m)))?;
                        Ok(Action::Poll(PollRequest { request, timeout }))
                    })
            }
        };
        match decided {
            Ok(Action::WebSocket(request)) => {
                if self.stopping.load(Ordering::SeqCst) {
                    self.metrics.connection_rejected("shutting_down");
                    return Action::Reply(response::json_error(
                        503,
                        "shutting_down",
                        "This node is shutting down; reconnect",
                        origin,
                    ));
                }
                if let Some(refused) = self.admit_subscription(log) {
                    return Action::Reply(rate_refusal_as_json(refused, origin));
                }
                request_event!(Level::DEBUG, log(), http.response.status_code = 101, "websocket opened");
                Action::WebSocket(request)
            }
            Ok(action) => {
                let (Action::Subscribe(request) | Action::Poll(PollRequest { request, .. })) = &action else {
                    return action;
                };
                if self.stopping.load(Ordering::SeqCst) {
                    self.metrics.connection_rejected("shutting_down");
                    return Action::Reply(response::json_error(
                        503,
                        "shutting_down",
                        "This node is shutting down; reconnect",
                        origin,
                    ));
                }
                if let Some(refused) = self.admit_subscription(log) {
                    return Action::Reply(rate_refusal_as_json(refused, origin));
                }
                request_event!(
                    Level::DEBUG,
                    log(),
                    issuer = &*request.issuer,
                    topics = request.topics.len(),
                    http.response.status_code = 200,
                    poll = route == V2Route::Poll,
                    "subscription opened"
                );
                action
            }
            Err(V2Error::Auth(e)) => {
                self.metrics.jwt_error(Interface::Public);
                authentication_refused(log(), "public API", e);
                let (code, message) = e.client_view(self.settings.verbose_errors);
                Action::Reply(response::json_error(e.status(), code, message, origin))
            }
            Err(V2Error::Unavailable(e)) => {
                tracing::warn!(error = %e, "v2 request refused: Redis unavailable");
                Action::Reply(response::json_error(
                    503,
                    "backplane_unavailable",
                    "The cluster's Redis is unavailable; retry later",
                    origin,
                ))
            }
            Err(V2Error::Refused(r)) => {
                self.metrics.request_refused(r.code);
                request_event!(
                    Level::DEBUG,
                    log(),
                    error.code = r.code,
                    http.response.status_code = r.status,
                    "v2 request refused: {}",
                    r.message
                );
                Action::Reply(response::json_error(r.status, r.code, &r.message, origin))
            }
        }
    }

    /// `POST /v2/tickets`: the bearer token of the header (never a cookie or the query, so a page
    /// of another site cannot have a browser mint one) for a single-use ticket.
    async fn issue_ticket(&self, head: &Request, now_s: u64) -> Result<Reply, V2Error> {
        let token = bearer_token(head.authorization.iter().map(Vec::as_slice)).map_err(V2Error::Auth)?;
        let principal = self.verifier.verify(token, now_s as i64).map_err(V2Error::Auth)?;
        let grants = principal
            .grants
            .as_ref()
            .map_err(|e| V2Error::Refused(refusal(401, "invalid_grants", e.to_string())))?;
        let claims = TicketClaims::of(&principal, grants);
        let lifetime_ms = self.v2.ticket_lifetime.as_millis() as u64;
        let (ticket, expires_in) = self
            .node
            .issue_ticket(claims, lifetime_ms)
            .await
            .map_err(V2Error::Unavailable)?;
        let body = serde_json::json!({"ticket": ticket, "expires_in": expires_in}).to_string();
        Ok(response::json_ok(body.into(), self.credentialed_origin(head)))
    }

    /// Who a v2 request speaks for, from the first place that says: the `Authorization` header,
    /// the `access_token` query parameter, a `ticket` (redeemed, so used up), then the token cookie.
    async fn v2_principal(&self, head: &Request, query: &Query, now_s: u64) -> Result<Principal, V2Error> {
        let token = if !head.authorization.is_empty() {
            bearer_token(head.authorization.iter().map(Vec::as_slice)).map_err(V2Error::Auth)?
        } else if let Some(token) = &query.access_token {
            token.as_str()
        } else if let Some(ticket) = &query.ticket {
            return self.redeem(ticket).await;
        } else if let Some(token) = cookie(&head.cookie, &self.v2.token_cookie) {
            token
        } else {
            return Err(V2Error::Refused(refusal(
                401,
                "missing_token",
                format!(
                    "no token: send Authorization: Bearer, the access_token or ticket query parameter, or the {} cookie",
                    self.v2.token_cookie
                ),
            )));
        };
        self.verifier.verify(token, now_s as i64).map_err(V2Error::Auth)
    }

    /// The principal a ticket stands for, once: a second use, an unknown or an expired ticket is
    /// `401 invalid_ticket`, as is one whose issuer is no longer configured.
    async fn redeem(&self, ticket: &str) -> Result<Principal, V2Error> {
        let invalid = || {
            V2Error::Refused(refusal(
                401,
                "invalid_ticket",
                "the ticket is unknown, used or expired: tickets are single-use; get a new one from POST /v2/tickets",
            ))
        };
        if !looks_like_ticket(ticket) {
            return Err(invalid());
        }
        let claims = self
            .node
            .redeem_ticket(ticket)
            .await
            .map_err(V2Error::Unavailable)?
            .ok_or_else(invalid)?;
        let issuer = self
            .verifier
            .config()
            .issuer(claims.issuer())
            .map(|i| i.name.clone())
            .ok_or_else(invalid)?;
        let now_s = self.now_s() as i64;
        if claims.expires_at_s() <= now_s {
            return Err(invalid());
        }
        let principal = claims.principal(issuer);
        // A ticket stands for its token: revoking the token, its subject or session revokes it.
        if self.node.revocations.refuses(&principal, now_s) {
            return Err(V2Error::Auth(AuthError::TokenRevoked));
        }
        Ok(principal)
    }

    async fn v2_request(
        &self,
        head: &Request,
        now_s: u64,
        received: Instant,
    ) -> Result<(SubscribeRequest, Query), V2Error> {
        let query = Query::parse(&head.query).map_err(|e| V2Error::Refused(refusal(400, e.code, e.message)))?;
        let principal = self.v2_principal(head, &query, now_s).await?;
        let grants = principal
            .grants
            .as_ref()
            .map_err(|e| V2Error::Refused(refusal(401, "invalid_grants", e.to_string())))?;
        let mut names: Vec<&str> = query.topics.iter().map(String::as_str).collect();
        if names.is_empty() {
            match principal.subject.as_deref() {
                Some(subject) => names.push(subject),
                None => {
                    return Err(V2Error::Refused(refusal(
                        400,
                        "no_topic",
                        "no topic: give one or more topic parameters, or a token with a sub claim",
                    )));
                }
            }
        }
        // Canonical order: the same topics in any order are the same connection, and its cursor.
        names.sort_unstable();
        names.dedup();
        if names.len() > self.v2.max_topics {
            return Err(V2Error::Refused(refusal(
                400,
                "too_many_topics",
                format!(
                    "{} topics asked; a connection may hold at most {} (PUBLIC_API_MAX_TOPICS_PER_CONNECTION)",
                    names.len(),
                    self.v2.max_topics
                ),
            )));
        }
        let subject = principal.subject.as_deref();
        if let Some(refused) = names
            .iter()
            .find(|name| !grants.may_read(subject, &self.v2.privileged_roles, name))
        {
            return Err(V2Error::Refused(refusal(
                403,
                "topic_not_allowed",
                format!("the token does not grant the topic {refused:?}"),
            )));
        }
        let topics: Vec<Topic> = names
            .iter()
            .map(|name| Topic::namespaced(&principal.issuer, name))
            .collect();
        // The header wins over the query parameters, as EventSource sends the header on reconnect.
        let cursor = match &head.last_event_id {
            Some(value) => Some(String::from_utf8(value.clone()).map_err(|_| bad_cursor(CursorError::Malformed))?),
            None => query.last_event_id.clone().or_else(|| query.cursor.clone()),
        };
        let positions = match cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(cursor::decode(c, cursor::topic_set_hash(&topics), topics.len()).map_err(bad_cursor)?),
        };
        let resumes: Vec<(Topic, ResumeFrom)> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                let resume = match &positions {
                    Some(p) => ResumeFrom::After(i128::from(p[i])),
                    None => ResumeFrom::Live,
                };
                (topic.clone(), resume)
            })
            .collect();
        let request = SubscribeRequest {
            received,
            topics: resumes,
            expires_ms: u64::try_from(principal.expires_at_s).unwrap_or(0).saturating_mul(1000),
            identity: self.node.revocations.identity(&principal),
            kind: StreamKind::Herald(Box::new(HeraldRequest {
                latest: match (query.latest, &positions) {
                    (true, None) => self.latest(&principal.issuer, &names).await?,
                    _ => Vec::new(),
                },
                topics: topics.into_boxed_slice(),
                positions,
                origin: self.credentialed_origin(head).map(str::to_owned),
            })),
            issuer: principal.issuer,
        };
        Ok((request, query))
    }

    /// `latest=1`: for each collection topic among `names` (in the connection's order), the latest
    /// published event of each event name, from the store — however old. A client that resumes
    /// with a cursor gets its replay instead.
    async fn latest(&self, issuer: &str, names: &[&str]) -> Result<Vec<(u16, Message)>, V2Error> {
        let mut latest = Vec::new();
        let Some(store) = self.store.get() else {
            return Ok(latest);
        };
        for (index, name) in names.iter().enumerate() {
            let Some(collection) = name.strip_prefix("collections/") else {
                continue;
            };
            let events = store.latest(issuer, collection).await.map_err(|e| {
                tracing::warn!(error = %e, "latest=1 refused: the store is unavailable");
                V2Error::Refused(refusal(
                    503,
                    "store_unavailable",
                    "The store is unavailable; retry later",
                ))
            })?;
            for event in events {
                let published_at = event.published_at_ms.unwrap_or(event.publish_at_ms);
                latest.push((
                    index as u16,
                    Message {
                        id: crate::model::EventId(0),
                        event: event.event.clone().into(),
                        payload: crate::node::scheduler::payload(&event, published_at).into(),
                        accepted_ms: published_at.max(0) as u64,
                    },
                ));
            }
        }
        Ok(latest)
    }

    /// On a cluster node, gives a v2 request without a cursor the topics' heads, read from Redis,
    /// and subscribes from there: its first cursor is then where it really started, and nothing
    /// published between the read and the subscription is missed. Nothing to do on a single node
    /// (the heads are read with the subscription) or for v1.
    pub(crate) async fn resolve_heads(&self, request: &mut SubscribeRequest) -> Result<(), BackplaneError> {
        let StreamKind::Herald(herald) = &mut request.kind else {
            return Ok(());
        };
        if herald.positions.is_some() {
            return Ok(());
        }
        if let Some(heads) = self.node.heads(&herald.topics).await? {
            for ((_, resume), head) in request.topics.iter_mut().zip(&heads) {
                *resume = ResumeFrom::After(i128::from(*head));
            }
            herald.positions = Some(heads);
        }
        Ok(())
    }

    /// The request's `Origin` when it is one of `PUBLIC_API_ALLOWED_ORIGINS`: the v2 answers
    /// then allow credentials (cookies) for it.
    fn credentialed_origin<'a>(&self, head: &'a Request) -> Option<&'a str> {
        head.single_origin()
            .filter(|o| self.settings.allowed_origins.is_match(o))
    }
}

/// The subscription-rate 503, in the v2 JSON shape (v1 keeps Neurow's SSE error event), with its
/// `retry-after`.
fn rate_refusal_as_json(refused: Reply, origin: Option<&str>) -> Reply {
    let mut reply = response::json_error(
        503,
        "subscription_rate_exceeded",
        "The server takes new subscriptions at a limited rate (PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND); retry later",
        origin,
    );
    reply
        .headers
        .extend(refused.headers.into_iter().filter(|(name, _)| *name == "retry-after"));
    reply
}

enum V2Error {
    Auth(AuthError),
    Refused(Refusal),
    /// The backplane was needed (a ticket) and could not be reached: 503.
    Unavailable(BackplaneError),
}

fn bad_cursor(e: CursorError) -> V2Error {
    V2Error::Refused(refusal(
        400,
        "invalid_cursor",
        format!("the cursor (Last-Event-ID, last_event_id or cursor): {e}; start again without it, from now"),
    ))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a [Vec<u8>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_in_any_header() {
        let headers = vec![b"a=1; herald_token=abc.def".to_vec(), b"b=2".to_vec()];
        assert_eq!(cookie(&headers, "herald_token"), Some("abc.def"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "herald"), None);
        assert_eq!(cookie(&[b"t=\"q\"".to_vec()], "t"), Some("q"));
    }
}
