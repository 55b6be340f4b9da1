//! Herald's WebSocket API (v2): `GET {PUBLIC_API_CONTEXT_PATH}/v2/ws`.
//!
//! One two-way connection: subscribe and unsubscribe at will, publish where the token's
//! `publish` grant allows, refresh the token, all over JSON text frames (`commands.rs`,
//! docs/api.md). It is the same connection model as the SSE stream and the long-poll — one
//! node [`Connection`], one outbox — and the same cursor: a `msg` frame carries the cursor of
//! every topic the connection holds, and a `subscribe` with that cursor resumes them, whichever
//! transport made it. The framing is `transport::ws`; this module decides what commands do.

mod commands;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::query::{Query, check_topic};
use super::{V2Error, bad_cursor, cookie, refusal};
use crate::auth::grants::Grants;
use crate::auth::revocation::Identity;
use crate::auth::{Principal, bearer_token};
use crate::http::PublicApi;
use crate::http::request::Request;
use crate::hub::outbox::{CloseReason, Delivery, Outbox};
use crate::model::cursor::{self, Cursor};
use crate::model::{NewMessage, ResumeFrom, Topic};
use crate::node::{Added, Connection};
use crate::transport::WireFormat;
use crate::transport::sse::stream::HeldConnection;
use crate::transport::ws::frame::close;
use crate::transport::ws::handshake::{self, HandshakeError};
use crate::transport::ws::session::{self, Close, Handler, Limits, SessionEnd};
use commands::{Command, push_ack, push_error, push_gap, push_msg, push_pong, push_text};

/// How long a connection that opened without a token has to send its `auth` command.
const AUTH_WITHIN_MS: u64 = 5_000;

/// How long past a due ping a silent client is still given before it is closed (no pong).
const PONG_GRACE_MS: u64 = 10_000;

/// WebSocket settings of the v2 face.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// `WS_MAX_MESSAGE_SIZE`: the largest message a client may send, in bytes.
    pub max_message_size: usize,
    /// `WS_MAX_COMMANDS_PER_SECOND`: commands a connection may send in a second (0: no limit).
    pub max_commands_per_second: u32,
    /// `WS_PING_INTERVAL`, in ms.
    pub ping_interval_ms: u32,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            max_message_size: 64 * 1024,
            max_commands_per_second: 100,
            ping_interval_ms: 25_000,
        }
    }
}

/// An upgrade that passed the handshake's checks.
pub(crate) struct WsRequest {
    /// `Sec-WebSocket-Accept`.
    pub(crate) accept: String,
    /// Who the handshake authenticated, if it carried a token.
    principal: Option<Principal>,
    /// `topic=` and `cursor=`: subscribed at once, as command 0.
    topics: Vec<String>,
    cursor: Option<String>,
    latest: bool,
}

impl std::fmt::Debug for WsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsRequest").field("topics", &self.topics.len()).finish()
    }
}

impl PublicApi {
    /// Checks a `/v2/ws` request: the upgrade itself, the query, and the token when it carries
    /// one (a connection without one authenticates with its first command).
    pub(super) async fn ws_request(&self, head: &Request, now_s: u64) -> Result<WsRequest, V2Error> {
        let accept = handshake::accept(&head.upgrade).map_err(|e| {
            let status = if e == HandshakeError::Version { 426 } else { 400 };
            V2Error::Refused(refusal(status, "invalid_upgrade", e.to_string()))
        })?;
        let query = Query::parse(&head.query).map_err(|e| V2Error::Refused(refusal(400, e.code, e.message)))?;
        let has_token = !head.authorization.is_empty()
            || query.access_token.is_some()
            || query.ticket.is_some()
            || cookie(&head.cookie, &self.v2.token_cookie).is_some();
        // A WebSocket is not subject to CORS: any page may open one, with the browser's cookies.
        // Authenticated by the cookie alone, it must come from an allowed origin, or a foreign
        // page could read the user's messages (cross-site WebSocket hijacking).
        let by_cookie_only = head.authorization.is_empty() && query.access_token.is_none() && query.ticket.is_none();
        if has_token && by_cookie_only && self.credentialed_origin(head).is_none() {
            return Err(V2Error::Refused(refusal(
                403,
                "origin_not_allowed",
                "a WebSocket authenticated by the token cookie must come from an origin in PUBLIC_API_ALLOWED_ORIGINS",
            )));
        }
        let principal = match has_token {
            true => Some(self.v2_principal(head, &query, now_s).await?),
            false => None,
        };
        if let Some(p) = &principal {
            p.grants
                .as_ref()
                .map_err(|e| V2Error::Refused(refusal(401, "invalid_grants", e.to_string())))?;
        }
        Ok(WsRequest {
            accept,
            principal,
            topics: query.topics,
            cursor: query.cursor.or(query.last_event_id),
            latest: query.latest,
        })
    }

    /// Serves an upgraded connection until it ends.
    pub(crate) async fn websocket<S: HeldConnection>(self: &Arc<Self>, mut socket: S, request: Box<WsRequest>) {
        let now_ms = self.node.hub.clock().now_ms();
        let connection = Connection::open(&self.node, Vec::new(), u64::MAX, Identity::NONE).connection;
        connection.outbox().set_own_keepalive_ms(self.v2.ws.ping_interval_ms);
        let mut ws = Socket {
            api: self.clone(),
            auth: None,
            connection,
            subs: Vec::new(),
            cursor: None,
            opened_mono_ms: mono_ms(),
        };
        // Boxed, as every step that runs once: only what an idle connection keeps should size
        // its task (`http::size_tests`).
        if !Box::pin(ws.open(&mut socket, request)).await {
            return;
        }
        let limits = Limits {
            max_message: self.v2.ws.max_message_size,
            max_commands_per_second: self.v2.ws.max_commands_per_second,
            silence_ms: u64::from(self.v2.ws.ping_interval_ms) + PONG_GRACE_MS,
        };
        let end = session::run(&mut socket, &mut ws, limits).await;
        let issuer = ws.auth.as_ref().map_or("", |a| &*a.issuer).to_owned();
        tracing::debug!(issuer, end = ?end, lasted_ms = self.node.hub.clock().now_ms().saturating_sub(now_ms), "websocket closed");
        if let SessionEnd::Closed(code) = end {
            self.metrics.request_refused(close_code_name(code));
        }
    }
}

/// The size of a held WebSocket's future, for the size test of `http`.
pub(crate) fn websocket_task_size(api: &Arc<PublicApi>, socket: tokio::net::TcpStream) -> usize {
    let request = WsRequest {
        accept: String::new(),
        principal: None,
        topics: Vec::new(),
        cursor: None,
        latest: false,
    };
    std::mem::size_of_val(&api.websocket(socket, Box::new(request)))
}

fn close_code_name(code: u16) -> &'static str {
    match code {
        close::UNAUTHORIZED => "ws_unauthorized",
        close::TOKEN_EXPIRED => "ws_token_expired",
        close::RATE_LIMITED => "ws_rate_limited",
        close::SLOW_CONSUMER => "ws_slow_consumer",
        close::NO_PONG => "ws_no_pong",
        close::TOO_BIG => "ws_too_big",
        close::PROTOCOL_ERROR | close::INVALID_DATA | close::UNSUPPORTED_DATA => "ws_bad_frame",
        _ => "ws_closed",
    }
}

/// Who the connection speaks for.
struct Auth {
    issuer: Arc<str>,
    subject: Option<String>,
    grants: Grants,
    /// `message{kind="sent"}` of the issuer, resolved once rather than per write.
    sent: prometheus::IntCounter,
}

/// One subscribed topic.
struct Sub {
    topic: Topic,
    /// The last id delivered, or where it started.
    position: u64,
}

/// A WebSocket of the v2 face.
struct Socket {
    api: Arc<PublicApi>,
    /// Boxed: a connection keeps it for its whole life, and inline it would size every task.
    auth: Option<Box<Auth>>,
    connection: Connection,
    /// By delivery index; `None` where a topic was unsubscribed.
    subs: Vec<Option<Sub>>,
    /// The cursor of the topics held, and each index's field in it (topics in canonical order);
    /// `None` while none is held.
    cursor: Option<(Cursor, Vec<u16>)>,
    opened_mono_ms: u64,
}

impl Socket {
    /// Authenticates with the handshake's token and subscribes the URL's topics, if it has them;
    /// false if the client went away meanwhile.
    async fn open<S: HeldConnection>(&mut self, socket: &mut S, request: Box<WsRequest>) -> bool {
        let mut out = Vec::new();
        let request = *request;
        if let Some(principal) = request.principal {
            self.authenticate(principal);
            if !request.topics.is_empty() {
                self.subscribe(Some(0), request.topics, request.cursor, request.latest, &mut out)
                    .await;
            }
        }
        out.is_empty()
            || crate::transport::sse::stream::write_all(socket, &[Bytes::from(out)], self.outbox())
                .await
                .is_ok()
    }

    fn authenticate(&mut self, principal: Principal) {
        let grants = principal.grants.clone().unwrap_or_default();
        let expires_ms = u64::try_from(principal.expires_at_s).unwrap_or(0).saturating_mul(1000);
        let identity = self.api.node.revocations.identity(&principal);
        self.connection.reauthenticated(identity, expires_ms);
        let sent = self.api.metrics.sent_counter(&principal.issuer);
        self.auth = Some(Box::new(Auth {
            issuer: principal.issuer,
            subject: principal.subject,
            grants,
            sent,
        }));
    }

    /// The prefix of the issuer's topics, cut from names on the wire.
    fn prefix_len(&self) -> usize {
        self.auth.as_ref().map_or(0, |a| a.issuer.len() + 1)
    }

    fn name<'t>(&self, topic: &'t Topic) -> &'t str {
        topic.as_str().get(self.prefix_len()..).unwrap_or("")
    }

    /// Rebuilds the cursor after the topic set changed.
    fn rebuild_cursor(&mut self) {
        let mut held: Vec<(&Topic, usize)> = self
            .subs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (&s.topic, i)))
            .collect();
        if held.is_empty() {
            self.cursor = None;
            return;
        }
        held.sort();
        let topics: Vec<Topic> = held.iter().map(|(t, _)| (*t).clone()).collect();
        let positions: Vec<u64> = held
            .iter()
            .map(|&(_, i)| self.subs[i].as_ref().map_or(0, |s| s.position))
            .collect();
        let mut fields = vec![0u16; self.subs.len()];
        for (field, &(_, i)) in held.iter().enumerate() {
            fields[i] = field as u16;
        }
        self.cursor = Some((Cursor::new(cursor::topic_set_hash(&topics), &positions), fields));
    }

    fn cursor_text(&self) -> String {
        self.cursor
            .as_ref()
            .map_or(String::new(), |(c, _)| c.as_str().to_owned())
    }

    async fn subscribe(
        &mut self,
        id: Option<u64>,
        names: Vec<String>,
        cursor: Option<String>,
        latest: bool,
        out: &mut Vec<u8>,
    ) {
        let Some(auth) = &self.auth else {
            return push_error(out, id, "not_authenticated", "send an auth command first");
        };
        let mut names = names;
        if let Some(e) = names.iter().find_map(|n| check_topic(n).err()) {
            return push_error(out, id, e.code, &e.message);
        }
        if names.is_empty() {
            return push_error(out, id, "no_topic", "topics must name at least one topic");
        }
        names.sort_unstable();
        names.dedup();
        let subject = auth.subject.as_deref();
        if let Some(refused) = names
            .iter()
            .find(|n| !auth.grants.may_read(subject, &self.api.v2.privileged_roles, n))
        {
            return push_error(
                out,
                id,
                "topic_not_allowed",
                &format!("the token does not grant the topic {refused:?}"),
            );
        }
        let topics: Vec<Topic> = names.iter().map(|n| Topic::namespaced(&auth.issuer, n)).collect();
        let positions = match cursor.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => match cursor::decode(c, cursor::topic_set_hash(&topics), topics.len()) {
                Ok(p) => Some(p),
                Err(e) => {
                    let V2Error::Refused(r) = bad_cursor(e) else {
                        unreachable!()
                    };
                    return push_error(out, id, r.code, &r.message);
                }
            },
        };
        let held = |t: &Topic| self.subs.iter().flatten().any(|s| &s.topic == t);
        let new: Vec<(usize, Topic)> = topics
            .iter()
            .enumerate()
            .filter(|(_, t)| !held(t))
            .map(|(i, t)| (i, t.clone()))
            .collect();
        let count = self.subs.iter().flatten().count();
        if count + new.len() > self.api.v2.max_topics {
            return push_error(
                out,
                id,
                "too_many_topics",
                &format!(
                    "a connection may hold at most {} topics (PUBLIC_API_MAX_TOPICS_PER_CONNECTION)",
                    self.api.v2.max_topics
                ),
            );
        }
        // Without a cursor a cluster node starts from each topic's head, read from Redis, so that
        // nothing published between the read and the subscription is missed.
        let starts: Vec<Option<u64>> = match &positions {
            Some(p) => new.iter().map(|(i, _)| Some(p[*i])).collect(),
            None => {
                let new_topics: Vec<Topic> = new.iter().map(|(_, t)| t.clone()).collect();
                match self.api.node.heads(&new_topics).await {
                    Ok(Some(heads)) => heads.into_iter().map(Some).collect(),
                    Ok(None) => vec![None; new.len()],
                    Err(_) => {
                        return push_error(
                            out,
                            id,
                            "backplane_unavailable",
                            "The cluster's Redis is unavailable; retry later",
                        );
                    }
                }
            }
        };
        let resumes: Vec<(Topic, ResumeFrom)> = new
            .iter()
            .zip(&starts)
            .map(|((_, t), start)| {
                let resume = start.map_or(ResumeFrom::Live, |p| ResumeFrom::After(i128::from(p)));
                (t.clone(), resume)
            })
            .collect();
        let Added {
            indexes,
            replay,
            heads,
            gaps,
        } = self.connection.add(resumes);
        for (k, &index) in indexes.iter().enumerate() {
            let index = usize::from(index);
            if self.subs.len() <= index {
                self.subs.resize_with(index + 1, || None);
            }
            self.subs[index] = Some(Sub {
                topic: new[k].1.clone(),
                position: starts[k].unwrap_or(heads[k].0),
            });
        }
        self.rebuild_cursor();
        let added: Vec<&str> = new.iter().map(|(_, t)| self.name(t)).collect();
        push_ack(out, id, json!({"cursor": self.cursor_text(), "topics": added}));
        if !gaps.is_empty() {
            let names: Vec<&str> = gaps
                .iter()
                .filter_map(|&i| self.subs.get(usize::from(i))?.as_ref())
                .map(|s| self.name(&s.topic))
                .collect();
            push_gap(out, &names);
        }
        if latest && positions.is_none() {
            // Each new collection topic's latest event of each name, before its replay.
            let issuer = self.auth.as_ref().map_or_else(Default::default, |a| a.issuer.clone());
            let names: Vec<&str> = new.iter().map(|(_, t)| self.name(t)).collect();
            match self.api.latest(&issuer, &names).await {
                Ok(latest) => {
                    let first: Vec<Delivery> = latest
                        .into_iter()
                        .map(|(k, mut message)| {
                            let k = usize::from(k);
                            message.id = crate::model::EventId(starts[k].unwrap_or(heads[k].0));
                            Delivery {
                                index: indexes[k],
                                message: crate::model::SharedMessage::replayed(new[k].1.clone(), message),
                            }
                        })
                        .collect();
                    self.deliveries(&first, out);
                }
                Err(_) => push_error(
                    out,
                    id,
                    "store_unavailable",
                    "The store is unavailable: no latest events",
                ),
            }
        }
        self.deliveries(&replay, out);
    }

    fn unsubscribe(&mut self, id: Option<u64>, names: Vec<String>, out: &mut Vec<u8>) {
        let Some(auth) = &self.auth else {
            return push_error(out, id, "not_authenticated", "send an auth command first");
        };
        let topics: Vec<Topic> = names.iter().map(|n| Topic::namespaced(&auth.issuer, n)).collect();
        for topic in &topics {
            if let Some(index) = self
                .subs
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| &s.topic == topic))
            {
                self.connection.remove(index as u16);
                self.subs[index] = None;
            }
        }
        self.rebuild_cursor();
        push_ack(out, id, json!({"cursor": self.cursor_text()}));
    }

    async fn publish(&mut self, id: Option<u64>, name: String, event: String, payload: String, out: &mut Vec<u8>) {
        let Some(auth) = &self.auth else {
            return push_error(out, id, "not_authenticated", "send an auth command first");
        };
        if let Err(e) = check_topic(&name) {
            return push_error(out, id, e.code, &e.message);
        }
        if !auth.grants.may_publish(&name) {
            return push_error(
                out,
                id,
                "publish_not_allowed",
                &format!("the token's publish grant does not cover the topic {name:?}"),
            );
        }
        if event.is_empty() || payload.is_empty() {
            return push_error(
                out,
                id,
                "invalid_message",
                "event and payload must be non-empty strings",
            );
        }
        let topic = Topic::namespaced(&auth.issuer, &name);
        let message = NewMessage {
            event: Bytes::from(event),
            payload: Bytes::from(payload),
            timestamp: None,
        };
        match self.api.node.publish(&topic, std::slice::from_ref(&message)).await {
            Ok(ids) => push_ack(out, id, json!({"message_id": ids.first().map(|i| i.to_string())})),
            Err(_) => push_error(
                out,
                id,
                "backplane_unavailable",
                "The cluster's Redis is unavailable: the message was not published; retry later",
            ),
        }
    }

    fn auth_command(&mut self, id: Option<u64>, token: String, out: &mut Vec<u8>) -> Result<(), Close> {
        let token = bearer_token(std::iter::once(format!("Bearer {token}").as_bytes())).map(str::to_owned);
        let now_s = self.api.now_s();
        let verified = token.and_then(|t| self.api.verifier.verify(&t, now_s as i64));
        let principal = match verified {
            Ok(p) if p.grants.is_ok() => p,
            Ok(_) | Err(_) if self.auth.is_none() => {
                return Err(Close::new(close::UNAUTHORIZED, "the token is invalid"));
            }
            _ => {
                push_error(
                    out,
                    id,
                    "invalid_token",
                    "the token is invalid; the connection keeps its current one",
                );
                return Ok(());
            }
        };
        if let Some(current) = &self.auth
            && (current.issuer != principal.issuer || current.subject != principal.subject)
        {
            push_error(
                out,
                id,
                "token_mismatch",
                "a refresh must be for the same issuer and subject",
            );
            return Ok(());
        }
        let expires_in = (principal.expires_at_s - now_s as i64).max(0);
        self.authenticate(principal);
        push_ack(out, id, json!({"expires_in": expires_in}));
        Ok(())
    }
}

impl Handler for Socket {
    fn outbox(&self) -> &Outbox {
        self.connection.outbox()
    }

    fn deliveries(&mut self, batch: &[Delivery], out: &mut Vec<u8>) -> u64 {
        let prefix_len = self.prefix_len();
        let mut written = 0;
        let mut gaps: Vec<&str> = Vec::new();
        for (i, d) in batch.iter().enumerate() {
            let index = usize::from(d.index);
            let Some(sub) = self.subs.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            // A delivery queued before its topic was unsubscribed (and the index reused).
            if &sub.topic != d.message.topic() {
                continue;
            }
            if d.message.is_gap_notice() {
                gaps.push(d.message.topic().as_str().get(prefix_len..).unwrap_or(""));
                if batch.get(i + 1).is_none_or(|next| !next.message.is_gap_notice()) {
                    push_gap(out, &gaps);
                    gaps.clear();
                }
                continue;
            }
            let id = d.message.message().id.0;
            sub.position = id;
            let Some((cursor, fields)) = self.cursor.as_mut() else {
                continue;
            };
            cursor.set(usize::from(fields[index]), id);
            let name = d.message.topic().as_str().get(prefix_len..).unwrap_or("");
            let shared = d
                .message
                .encoded(WireFormat::Json.slot(), |m| crate::transport::json::message(m, name));
            push_msg(out, shared, cursor.as_bytes());
            written += 1;
        }
        written
    }

    async fn text(&mut self, text: String, out: &mut Vec<u8>) -> Result<(), Close> {
        let command = match commands::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                push_error(out, e.id, e.code, &e.message);
                return Ok(());
            }
        };
        if self.auth.is_none() && !matches!(command, Command::Auth { .. } | Command::Ping { .. }) {
            return Err(Close::new(
                close::UNAUTHORIZED,
                "authenticate first: send an auth command",
            ));
        }
        match command {
            Command::Subscribe {
                id,
                topics,
                cursor,
                latest,
            } => self.subscribe(id, topics, cursor, latest, out).await,
            Command::Unsubscribe { id, topics } => self.unsubscribe(id, topics, out),
            Command::Publish {
                id,
                topic,
                event,
                payload,
            } => self.publish(id, topic, event, payload, out).await,
            Command::Auth { id, token } => return self.auth_command(id, token, out),
            Command::Ping { id } => push_pong(out, id),
        }
        Ok(())
    }

    fn binary(&mut self, _data: Vec<u8>, _out: &mut Vec<u8>) -> Result<(), Close> {
        Err(Close::new(close::UNSUPPORTED_DATA, "commands are JSON text frames"))
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        push_text(out, br#"{"op":"ping"}"#);
    }

    fn close_for(&self, reason: CloseReason) -> Close {
        match reason {
            CloseReason::SlowConsumer => Close::new(
                close::SLOW_CONSUMER,
                "slow consumer: reconnect and resume with the cursor",
            ),
            CloseReason::Shutdown => Close::new(
                close::GOING_AWAY,
                "the node is shutting down: reconnect and resume with the cursor",
            ),
            CloseReason::Timeout => Close::new(
                close::NORMAL,
                "no message for SSE_TIMEOUT: reconnect and resume with the cursor",
            ),
            CloseReason::BackplaneUnavailable => Close::new(
                close::UNAVAILABLE,
                "the cluster's history is unavailable: reconnect and resume with the cursor",
            ),
            CloseReason::CredentialsExpired => {
                Close::new(close::TOKEN_EXPIRED, "the token expired: reconnect with a new one")
            }
            CloseReason::CredentialsRevoked => {
                Close::new(close::UNAUTHORIZED, "the token was revoked: do not reconnect with it")
            }
        }
    }

    fn auth_deadline_ms(&self) -> Option<u64> {
        self.auth.is_none().then_some(self.opened_mono_ms + AUTH_WITHIN_MS)
    }

    fn written(&self, n: u64, oldest_live_ns: Option<u64>) {
        if let Some(auth) = &self.auth
            && n > 0
        {
            auth.sent.inc_by(n);
        }
        if let Some(since) = oldest_live_ns {
            self.api.metrics.delivered(since);
        }
    }
}

fn mono_ms() -> u64 {
    crate::clock::monotonic_ns() / 1_000_000
}
