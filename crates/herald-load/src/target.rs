//! Target profiles: how to subscribe and publish on Herald (Neurow's wire format) or on Nchan.
//!
//! Scenarios speak in topics ("sub" names) and payloads; this module turns them into request
//! bytes. Herald takes the topic from the subscriber's JWT (`<iss>-<sub>`) and a JSON publish
//! body; Nchan takes the channel from the URL (`/sub/<channel>`, `/pub/<channel>`) and the raw
//! payload as the body. For Nchan the channel is also named `<iss>-<sub>`, so both servers see
//! the same topic names.
//!
//! Herald's v2 face (a subscribe URL under `/v2/`) names the topic in the query (`?topic=<sub>`)
//! and takes the token in the header, an `access_token` parameter or a single-use ticket
//! ([`TokenIn`]); its long-poll (`/v2/poll`) and Nchan's (`/lp/<channel>`) are requests of their
//! own ([`Target::poll_request`]), answered by [`crate::poller`]. WebSocket subscribers upgrade
//! Herald's `/v2/ws?topic=<sub>&access_token=<jwt>` or Nchan's `/ws/<channel>`
//! ([`Target::ws_subscribe_request`], held by [`crate::websocket`]); Herald can also take publishes
//! over its WebSocket ([`PublishVia::Ws`], [`crate::ws_publish`]).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::jwt::JwtSettings;

/// Which server's wire format to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Herald or Neurow: JWT-authenticated `/v1/subscribe` and JSON `/v1/publish`.
    Herald,
    /// Nchan: EventSource `GET /sub/<channel>` and raw-body `POST /pub/<channel>`.
    Nchan,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Herald => "herald",
            TargetKind::Nchan => "nchan",
        })
    }
}

/// How subscribers receive messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One Server-Sent Events stream per subscriber.
    #[default]
    Sse,
    /// Long-polling: one request per answer, on a keep-alive connection (Herald's `/v2/poll`,
    /// Nchan's `nchan_subscriber longpoll`).
    Longpoll,
    /// One WebSocket per subscriber (Herald's `/v2/ws`, Nchan's `nchan_subscriber websocket`).
    Ws,
}

impl Transport {
    /// What a result's mode says for this transport: nothing for SSE (the rows measured first),
    /// so that earlier results keep their rows.
    pub fn mode(self) -> &'static str {
        match self {
            Transport::Sse => "",
            Transport::Longpoll => "long-poll",
            Transport::Ws => "websocket",
        }
    }
}

/// How publishers reach the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    /// HTTP requests on keep-alive connections (Herald's `POST /v1/publish`, Nchan's
    /// `POST /pub/<channel>`).
    #[default]
    Http,
    /// Herald only: `publish` commands over a few WebSockets (`/v2/ws`), each answered by an
    /// `ack`.
    Ws,
}

/// Where a Herald v2 subscriber puts its credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TokenIn {
    /// `Authorization: Bearer <jwt>`.
    #[default]
    Header,
    /// The `access_token=<jwt>` query parameter.
    Query,
    /// A single-use `ticket=` from `POST /v2/tickets`, minted before the measured phase.
    Ticket,
}

impl fmt::Display for TokenIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenIn::Header => "header",
            TokenIn::Query => "query",
            TokenIn::Ticket => "ticket",
        })
    }
}

/// How long Herald may hold a long-poll, seconds (its maximum; Nchan is configured alike).
pub const POLL_TIMEOUT_S: u64 = 55;

/// Where a long-poll subscriber is in its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollPosition {
    /// Nothing yet: the first poll (Herald answers at once with the current position; Nchan holds
    /// it until the next message).
    Start,
    /// Herald: the `cursor` of the last answer.
    Cursor(String),
    /// Nchan: the `Last-Modified` and `Etag` of the last answer, sent back as `If-Modified-Since`
    /// and `If-None-Match`.
    Conditional {
        /// `Last-Modified`.
        last_modified: String,
        /// `Etag`.
        etag: String,
    },
}

/// A plain `http://host:port/path` URL, resolved once. Only loopback addresses are accepted:
/// this tool must never send load anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl {
    /// Host as written, for the `Host` header.
    pub host: String,
    /// Port (80 if not written).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
    /// The resolved loopback address.
    pub addr: SocketAddr,
}

impl FromStr for HttpUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let rest = s
            .strip_prefix("http://")
            .with_context(|| format!("{s}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse().with_context(|| format!("{s}: bad port"))?)
            }
            _ => (authority, 80),
        };
        let addr = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .with_context(|| format!("{s}: cannot resolve host"))?
            .find(|a| a.ip().is_loopback())
            .with_context(|| format!("{s}: not a loopback address; refusing to send load"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            addr,
        })
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = anyhow::Error;
    fn try_from(s: String) -> anyhow::Result<Self> {
        s.parse()
    }
}

impl From<HttpUrl> for String {
    fn from(u: HttpUrl) -> String {
        u.to_string()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Everything needed to talk to one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Wire format.
    pub kind: TargetKind,
    /// Subscribe URLs, one per node of a cluster (Herald: the full route; Nchan: a prefix the
    /// channel is appended to). Never empty.
    pub sse_urls: Vec<HttpUrl>,
    /// Publish URLs (same convention), one per node. Never empty.
    pub publish_urls: Vec<HttpUrl>,
    /// Subscriber tokens.
    pub sse_jwt: JwtSettings,
    /// Publisher tokens.
    pub publish_jwt: JwtSettings,
    /// `User-Agent` of subscribers.
    pub user_agent: String,
    /// SSE event name of published messages (Herald only; Nchan sends unnamed events).
    pub event: String,
    /// Herald v2: topics per subscription (its own and shared ones); 0 for v1's one topic.
    #[serde(default)]
    pub topics_per_connection: usize,
    /// SSE streams or long-polls.
    #[serde(default)]
    pub transport: Transport,
    /// Long-poll URLs, one per node (Herald: `/v2/poll`; Nchan: a prefix the channel is appended
    /// to). Needed with [`Transport::Longpoll`] only.
    #[serde(default)]
    pub poll_urls: Vec<HttpUrl>,
    /// Herald v2: where the subscriber's credential goes.
    #[serde(default)]
    pub token_in: TokenIn,
    /// WebSocket URLs, one per node (Herald: `/v2/ws`; Nchan: a prefix the channel is appended
    /// to). Needed with [`Transport::Ws`] or [`PublishVia::Ws`] only.
    #[serde(default)]
    pub ws_urls: Vec<HttpUrl>,
    /// HTTP publishes or WebSocket `publish` commands.
    #[serde(default)]
    pub publish_via: PublishVia,
}

/// Node `skip` after `sub`'s own among `n`: its topic's subscribers spread evenly over the nodes,
/// the same node each time (FNV-1a of the name: stable across the tool's processes).
fn node_of(sub: &str, skip: usize, n: usize) -> usize {
    let hash = sub.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ((hash % n as u64) as usize + skip) % n
}

#[derive(Serialize)]
struct PublishBody<'a> {
    topic: &'a str,
    message: PublishMessage<'a>,
}

#[derive(Serialize)]
struct PublishMessage<'a> {
    event: &'a str,
    payload: &'a str,
}

impl Target {
    /// The subscribe URL of `sub`: its topic's subscribers spread evenly over the nodes, the same
    /// node each time (FNV-1a of the name: stable across the tool's processes).
    pub fn sse_url(&self, sub: &str) -> &HttpUrl {
        self.sse_url_after(sub, 0)
    }

    /// The subscribe URL `skip` nodes after `sub`'s own, for a client that moves to the next node
    /// when its node is down (`--tolerate-faults`).
    pub fn sse_url_after(&self, sub: &str, skip: usize) -> &HttpUrl {
        &self.sse_urls[node_of(sub, skip, self.sse_urls.len())]
    }

    /// The long-poll URL of `sub`, spread over the nodes as [`Target::sse_url`] does.
    pub fn poll_url(&self, sub: &str) -> anyhow::Result<&HttpUrl> {
        if self.poll_urls.is_empty() {
            bail!("no long-poll URL (POLL_URL)");
        }
        Ok(&self.poll_urls[node_of(sub, 0, self.poll_urls.len())])
    }

    /// The WebSocket URL of `sub`, spread over the nodes as [`Target::sse_url`] does.
    pub fn ws_url(&self, sub: &str) -> anyhow::Result<&HttpUrl> {
        if self.ws_urls.is_empty() {
            bail!("no WebSocket URL (WS_URL)");
        }
        Ok(&self.ws_urls[node_of(sub, 0, self.ws_urls.len())])
    }

    /// The upgrade request of a WebSocket subscriber of `sub` on `u` (one of the WebSocket URLs),
    /// with `key` as its `Sec-WebSocket-Key`. Herald: `?topic=` subscribes at once (more `topic=`
    /// with TOPICS_PER_CONNECTION) and the subscriber's JWT goes in `access_token=`, as a browser
    /// must send it; Nchan: the channel is the path's end.
    pub fn ws_subscribe_request(&self, u: &HttpUrl, sub: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let target = match self.kind {
            TargetKind::Herald => {
                // Topic names from herald-load and JWTs are URL-safe: no escaping needed.
                let mut path = format!("{}?topic={sub}", u.path);
                for i in 1..self.topics_per_connection {
                    path.push_str(&format!("&topic=shared-{i}"));
                }
                path.push_str("&access_token=");
                path.push_str(&self.subscriber_token(sub)?);
                path
            }
            TargetKind::Nchan => format!("{}{}", u.path, self.channel(sub)),
        };
        Ok(self.upgrade_request(u, &target, key))
    }

    /// The upgrade request of a Herald WebSocket publisher: no topic, `token` (with a `publish`
    /// grant) in `access_token=`.
    pub fn ws_publisher_request(&self, u: &HttpUrl, token: &str, key: &str) -> Vec<u8> {
        self.upgrade_request(u, &format!("{}?access_token={token}", u.path), key)
    }

    fn upgrade_request(&self, u: &HttpUrl, target: &str, key: &str) -> Vec<u8> {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: {}\r\n\r\n",
            u.host, u.port, self.user_agent
        )
        .into_bytes()
    }

    /// Whether subscriptions use Herald's v2 face: a subscribe URL under `/v2/`, or several topics
    /// a connection (which only v2 offers).
    pub fn is_v2(&self) -> bool {
        self.kind == TargetKind::Herald
            && (self.topics_per_connection > 0 || self.sse_urls.iter().any(|u| u.path.contains("/v2/")))
    }

    /// `POST /v2/tickets` beside `sub`'s subscribe URL (`…/v2/subscribe` → `…/v2/tickets`).
    pub fn tickets_url(&self, sub: &str) -> HttpUrl {
        let mut u = self.sse_url(sub).clone();
        let base = u.path.rsplit_once('/').map_or("", |(base, _)| base);
        u.path = format!("{base}/tickets");
        u
    }

    /// The request that trades `sub`'s token for a ticket (Herald v2).
    pub fn ticket_request(&self, u: &HttpUrl, sub: &str) -> anyhow::Result<Vec<u8>> {
        let token = self.subscriber_token(sub)?;
        Ok(format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {token}\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            u.path, u.host, u.port, self.user_agent
        )
        .into_bytes())
    }

    /// A subscriber token for `sub`: granting every topic when a connection holds several.
    pub fn subscriber_token(&self, sub: &str) -> anyhow::Result<String> {
        if self.topics_per_connection > 0 {
            self.sse_jwt.mint_granting_all(Some(sub))
        } else {
            self.sse_jwt.mint(Some(sub))
        }
    }

    /// One long-poll of `sub` from `position` on `u` (one of the poll URLs). `token` is the
    /// subscriber's JWT (Herald only; it goes in the header).
    pub fn poll_request(&self, u: &HttpUrl, sub: &str, position: &PollPosition, token: Option<&str>) -> Vec<u8> {
        let mut req = match self.kind {
            TargetKind::Herald => {
                // Topic names from herald-load and Herald's cursors ([0-9a-z.-]) are URL-safe.
                let mut req = format!("GET {}?topic={sub}&timeout={POLL_TIMEOUT_S}", u.path);
                if let PollPosition::Cursor(c) = position {
                    req.push_str("&cursor=");
                    req.push_str(c);
                }
                req.push_str(&format!(" HTTP/1.1\r\nHost: {}:{}\r\n", u.host, u.port));
                if let Some(token) = token {
                    req.push_str("Authorization: Bearer ");
                    req.push_str(token);
                    req.push_str("\r\n");
                }
                req.push_str("Accept: application/json\r\n");
                req
            }
            TargetKind::Nchan => {
                let mut req = format!(
                    "GET {}{} HTTP/1.1\r\nHost: {}:{}\r\n",
                    u.path,
                    self.channel(sub),
                    u.host,
                    u.port
                );
                if let PollPosition::Conditional { last_modified, etag } = position {
                    req.push_str(&format!(
                        "If-Modified-Since: {last_modified}\r\nIf-None-Match: {etag}\r\n"
                    ));
                }
                req
            }
        };
        req.push_str("User-Agent: ");
        req.push_str(&self.user_agent);
        req.push_str("\r\n\r\n");
        req.into_bytes()
    }

    /// Nchan: the channel-info request (`GET` on the publisher location), whose answer counts the
    /// channel's subscribers. A held long-poll has no response head to prove it is registered;
    /// this does.
    pub fn channel_info_request(&self, sub: &str) -> (&HttpUrl, Vec<u8>) {
        let u = self.publish_url(0);
        let req = format!(
            "GET {}{} HTTP/1.1\r\nHost: {}:{}\r\nAccept: text/plain\r\nUser-Agent: {}\r\n\r\n",
            u.path,
            self.channel(sub),
            u.host,
            u.port,
            self.user_agent
        );
        (u, req.into_bytes())
    }

    /// The publish URL of the `n`th publish connection: connections round-robin over the nodes.
    pub fn publish_url(&self, n: usize) -> &HttpUrl {
        &self.publish_urls[n % self.publish_urls.len()]
    }

    /// The topic a subscriber with `sub` receives: `<iss>-<sub>`.
    pub fn channel(&self, sub: &str) -> String {
        format!("{}-{}", self.sse_jwt.issuer, sub)
    }

    /// The request that opens a subscription on `u` (one of the subscribe URLs), resuming after
    /// `last_event_id` if given. `ticket` is the subscriber's ticket when [`TokenIn::Ticket`].
    pub fn subscribe_request(
        &self,
        u: &HttpUrl,
        sub: &str,
        last_event_id: Option<&str>,
        ticket: Option<&str>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut req = match self.kind {
            TargetKind::Herald if self.is_v2() => {
                // Topic names from herald-load, JWTs and tickets are URL-safe: no escaping needed.
                let mut path = format!("{}?topic={sub}", u.path);
                for i in 1..self.topics_per_connection {
                    path.push_str(&format!("&topic=shared-{i}"));
                }
                let header = match self.token_in {
                    TokenIn::Header => format!("Authorization: Bearer {}\r\n", self.subscriber_token(sub)?),
                    TokenIn::Query => {
                        path.push_str("&access_token=");
                        path.push_str(&self.subscriber_token(sub)?);
                        String::new()
                    }
                    TokenIn::Ticket => {
                        path.push_str("&ticket=");
                        path.push_str(ticket.context("no ticket for this subscriber")?);
                        String::new()
                    }
                };
                format!("GET {path} HTTP/1.1\r\nHost: {}:{}\r\n{header}", u.host, u.port)
            }
            TargetKind::Herald => {
                let token = self.sse_jwt.mint(Some(sub))?;
                format!(
                    "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {token}\r\n",
                    u.path, u.host, u.port
                )
            }
            TargetKind::Nchan => format!(
                "GET {}{} HTTP/1.1\r\nHost: {}:{}\r\n",
                u.path,
                self.channel(sub),
                u.host,
                u.port
            ),
        };
        req.push_str("Accept: text/event-stream\r\nUser-Agent: ");
        req.push_str(&self.user_agent);
        req.push_str("\r\n");
        if let Some(id) = last_event_id {
            if id.contains(['\r', '\n']) {
                bail!("event id contains a line break");
            }
            req.push_str("Last-Event-ID: ");
            req.push_str(id);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        Ok(req.into_bytes())
    }

    /// A keep-alive publish request for one message to `u` (one of the publish URLs). `token` is
    /// the publisher JWT (Herald only).
    pub fn publish_request(&self, u: &HttpUrl, sub: &str, payload: &str, token: Option<&str>) -> Vec<u8> {
        let (path, content_type, body) = match self.kind {
            TargetKind::Herald => {
                let body = serde_json::to_string(&PublishBody {
                    topic: sub,
                    message: PublishMessage {
                        event: &self.event,
                        payload,
                    },
                })
                .unwrap_or_default();
                (u.path.clone(), "application/json", body)
            }
            TargetKind::Nchan => (
                format!("{}{}", u.path, self.channel(sub)),
                "text/plain",
                payload.to_owned(),
            ),
        };
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            u.host,
            u.port,
            body.len()
        );
        if let Some(token) = token {
            req.push_str("Authorization: Bearer ");
            req.push_str(token);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(&body);
        req.into_bytes()
    }

    /// Whether the publisher needs a JWT.
    pub fn publish_needs_token(&self) -> bool {
        self.kind == TargetKind::Herald
    }

    /// Whether a publish response status means the message was accepted.
    pub fn publish_accepted(&self, status: u16) -> bool {
        match self.kind {
            TargetKind::Herald => status == 200,
            // Nchan answers 201 (created, no subscriber yet) or 202 (queued).
            TargetKind::Nchan => (200..300).contains(&status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, sse: &str, publish: &str) -> Target {
        let jwt = JwtSettings {
            issuer: "test_issuer1".into(),
            secret: "k".into(),
            audience: "public_api".into(),
            lifetime_s: 120,
        };
        Target {
            kind,
            sse_urls: vec![sse.parse().expect("sse url")],
            publish_urls: vec![publish.parse().expect("publish url")],
            sse_jwt: jwt.clone(),
            publish_jwt: jwt,
            user_agent: "herald-load".into(),
            event: "load_test_event".into(),
            topics_per_connection: 0,
            transport: Transport::Sse,
            poll_urls: Vec::new(),
            token_in: TokenIn::Header,
            ws_urls: Vec::new(),
            publish_via: PublishVia::Http,
        }
    }

    #[test]
    fn parses_loopback_urls_and_refuses_others() {
        let u: HttpUrl = "http://localhost:4000/v1/subscribe".parse().expect("url");
        assert_eq!(u.port, 4000);
        assert_eq!(u.path, "/v1/subscribe");
        assert!(u.addr.ip().is_loopback());
        assert!("http://127.0.0.1".parse::<HttpUrl>().is_ok());
        assert!("http://10.0.0.1:80/".parse::<HttpUrl>().is_err());
        assert!("https://127.0.0.1/".parse::<HttpUrl>().is_err());
    }

    #[test]
    fn nchan_requests_use_the_channel_in_the_path() {
        let t = target(
            TargetKind::Nchan,
            "http://127.0.0.1:4100/sub/",
            "http://127.0.0.1:3100/pub/",
        );
        let sub = String::from_utf8(
            t.subscribe_request(t.sse_url("a1"), "a1", Some("17:0"), None)
                .expect("req"),
        )
        .expect("utf8");
        assert!(sub.starts_with("GET /sub/test_issuer1-a1 HTTP/1.1\r\n"));
        assert!(sub.contains("Accept: text/event-stream\r\n"));
        assert!(sub.contains("Last-Event-ID: 17:0\r\n"));
        let publish = String::from_utf8(t.publish_request(t.publish_url(0), "a1", "1 2", None)).expect("utf8");
        assert!(publish.starts_with("POST /pub/test_issuer1-a1 HTTP/1.1\r\n"));
        assert!(publish.ends_with("\r\n\r\n1 2"));
    }

    #[test]
    fn herald_publish_body_is_neurow_json() {
        let t = target(
            TargetKind::Herald,
            "http://127.0.0.1:4000/v1/subscribe",
            "http://127.0.0.1:3000/v1/publish",
        );
        let req = String::from_utf8(t.publish_request(t.publish_url(0), "a1", "1 2", Some("tok"))).expect("utf8");
        assert!(req.starts_with("POST /v1/publish HTTP/1.1\r\n"));
        assert!(req.contains("Authorization: Bearer tok\r\n"));
        assert!(req.ends_with(r#"{"topic":"a1","message":{"event":"load_test_event","payload":"1 2"}}"#));
        let sub =
            String::from_utf8(t.subscribe_request(t.sse_url("a1"), "a1", None, None).expect("req")).expect("utf8");
        assert!(sub.starts_with("GET /v1/subscribe HTTP/1.1\r\n"));
        assert!(sub.contains("Authorization: Bearer ey"));
    }

    #[test]
    fn herald_v2_names_the_topic_and_puts_the_credential_where_asked() {
        let mut t = target(
            TargetKind::Herald,
            "http://127.0.0.1:4000/v2/subscribe",
            "http://127.0.0.1:3000/v1/publish",
        );
        assert!(t.is_v2());
        let req = |t: &Target, ticket| {
            String::from_utf8(t.subscribe_request(t.sse_url("a1"), "a1", None, ticket).expect("req")).expect("utf8")
        };
        let header = req(&t, None);
        assert!(
            header.starts_with("GET /v2/subscribe?topic=a1 HTTP/1.1\r\n"),
            "{header}"
        );
        assert!(header.contains("Authorization: Bearer ey"));
        t.token_in = TokenIn::Query;
        let query = req(&t, None);
        assert!(
            query.starts_with("GET /v2/subscribe?topic=a1&access_token=ey"),
            "{query}"
        );
        assert!(!query.contains("Authorization"));
        t.token_in = TokenIn::Ticket;
        assert!(t.subscribe_request(t.sse_url("a1"), "a1", None, None).is_err());
        let ticket = req(&t, Some("tk1.abc"));
        assert!(
            ticket.starts_with("GET /v2/subscribe?topic=a1&ticket=tk1.abc HTTP/1.1\r\n"),
            "{ticket}"
        );
        assert_eq!(t.tickets_url("a1").path, "/v2/tickets");
        let mint = String::from_utf8(t.ticket_request(&t.tickets_url("a1"), "a1").expect("req")).expect("utf8");
        assert!(mint.starts_with("POST /v2/tickets HTTP/1.1\r\n") && mint.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn long_poll_requests_carry_the_position() {
        let mut h = target(
            TargetKind::Herald,
            "http://127.0.0.1:4000/v1/subscribe",
            "http://127.0.0.1:3000/v1/publish",
        );
        h.poll_urls = vec!["http://127.0.0.1:4000/v2/poll".parse().expect("url")];
        let u = h.poll_url("a1").expect("poll url").clone();
        let first = String::from_utf8(h.poll_request(&u, "a1", &PollPosition::Start, Some("tok"))).expect("utf8");
        assert!(
            first.starts_with("GET /v2/poll?topic=a1&timeout=55 HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(first.contains("Authorization: Bearer tok\r\n"));
        let next =
            String::from_utf8(h.poll_request(&u, "a1", &PollPosition::Cursor("17".into()), Some("tok"))).expect("utf8");
        assert!(
            next.starts_with("GET /v2/poll?topic=a1&timeout=55&cursor=17 HTTP/1.1\r\n"),
            "{next}"
        );
        let mut n = target(
            TargetKind::Nchan,
            "http://127.0.0.1:4100/sub/",
            "http://127.0.0.1:3100/pub/",
        );
        assert!(n.poll_url("a1").is_err());
        n.poll_urls = vec!["http://127.0.0.1:4100/lp/".parse().expect("url")];
        let u = n.poll_url("a1").expect("poll url").clone();
        let position = PollPosition::Conditional {
            last_modified: "Thu, 03 Dec 2026 06:51:41 GMT".into(),
            etag: "2".into(),
        };
        let req = String::from_utf8(n.poll_request(&u, "a1", &position, None)).expect("utf8");
        assert!(req.starts_with("GET /lp/test_issuer1-a1 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("If-Modified-Since: Thu, 03 Dec 2026 06:51:41 GMT\r\nIf-None-Match: 2\r\n"));
        let (pu, info) = n.channel_info_request("a1");
        assert_eq!(pu.port, 3100);
        assert!(
            String::from_utf8(info)
                .expect("utf8")
                .starts_with("GET /pub/test_issuer1-a1 HTTP/1.1\r\n")
        );
    }

    #[test]
    fn websocket_upgrades_name_the_topic_or_the_channel() {
        let mut h = target(
            TargetKind::Herald,
            "http://127.0.0.1:4000/v1/subscribe",
            "http://127.0.0.1:3000/v1/publish",
        );
        assert!(h.ws_url("a1").is_err());
        h.ws_urls = vec!["http://127.0.0.1:4000/v2/ws".parse().expect("url")];
        let u = h.ws_url("a1").expect("ws url").clone();
        let req = String::from_utf8(h.ws_subscribe_request(&u, "a1", "k==").expect("req")).expect("utf8");
        assert!(req.starts_with("GET /v2/ws?topic=a1&access_token=ey"), "{req}");
        for header in [
            "Host: 127.0.0.1:4000\r\n",
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            "Sec-WebSocket-Key: k==\r\n",
            "Sec-WebSocket-Version: 13\r\n",
        ] {
            assert!(req.contains(header), "{header} in {req}");
        }
        assert!(req.ends_with("\r\n\r\n"));
        h.topics_per_connection = 3;
        let multi = String::from_utf8(h.ws_subscribe_request(&u, "a1", "k").expect("req")).expect("utf8");
        assert!(multi.starts_with("GET /v2/ws?topic=a1&topic=shared-1&topic=shared-2&access_token=ey"));
        let publisher = String::from_utf8(h.ws_publisher_request(&u, "tok", "k")).expect("utf8");
        assert!(
            publisher.starts_with("GET /v2/ws?access_token=tok HTTP/1.1\r\n"),
            "{publisher}"
        );
        let mut n = target(
            TargetKind::Nchan,
            "http://127.0.0.1:4100/sub/",
            "http://127.0.0.1:3100/pub/",
        );
        n.ws_urls = vec!["http://127.0.0.1:4100/ws/".parse().expect("url")];
        let u = n.ws_url("a1").expect("ws url").clone();
        let req = String::from_utf8(n.ws_subscribe_request(&u, "a1", "k").expect("req")).expect("utf8");
        assert!(req.starts_with("GET /ws/test_issuer1-a1 HTTP/1.1\r\n"), "{req}");
        assert_eq!(Transport::Ws.mode(), "websocket");
        assert_eq!(Transport::Sse.mode(), "");
    }

    #[test]
    fn a_cluster_spreads_subscribers_and_publish_connections_over_its_nodes() {
        let mut t = target(
            TargetKind::Herald,
            "http://127.0.0.1:4000/v1/subscribe",
            "http://127.0.0.1:3000/v1/publish",
        );
        t.sse_urls
            .push("http://127.0.0.1:4001/v1/subscribe".parse().expect("url"));
        t.publish_urls
            .push("http://127.0.0.1:3001/v1/publish".parse().expect("url"));
        let on_first = (0..1000).filter(|i| t.sse_url(&format!("u{i}")).port == 4000).count();
        assert!((400..600).contains(&on_first), "{on_first} of 1000 on the first node");
        assert_eq!(t.sse_url("u7").port, t.sse_url("u7").port);
        assert_eq!(
            (t.publish_url(0).port, t.publish_url(1).port, t.publish_url(2).port),
            (3000, 3001, 3000)
        );
        let req = String::from_utf8(t.publish_request(t.publish_url(1), "a1", "x", None)).expect("utf8");
        assert!(req.contains("Host: 127.0.0.1:3001\r\n"));
    }
}
