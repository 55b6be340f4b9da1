//! Target profiles: how to subscribe and publish on Herald (Neurow's wire format) or on Nchan.
//!
//! Scenarios speak in topics ("sub" names) and payloads; this module turns them into request
//! bytes. Herald takes the topic from the subscriber's JWT (`<iss>-<sub>`) and a JSON publish
//! body; Nchan takes the channel from the URL (`/sub/<channel>`, `/pub/<channel>`) and the raw
//! payload as the body. For Nchan the channel is also named `<iss>-<sub>`, so both servers see
//! the same topic names.

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
        let hash = sub.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let n = self.sse_urls.len();
        &self.sse_urls[((hash % n as u64) as usize + skip) % n]
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
    /// `last_event_id` if given.
    pub fn subscribe_request(&self, u: &HttpUrl, sub: &str, last_event_id: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut req = match self.kind {
            TargetKind::Herald if self.topics_per_connection > 0 => {
                // Topic names from herald-load are URL-safe ([a-z0-9-]): no escaping needed.
                let token = self.sse_jwt.mint_granting_all(Some(sub))?;
                let mut path = format!("{}?topic={sub}", u.path);
                for i in 1..self.topics_per_connection {
                    path.push_str(&format!("&topic=shared-{i}"));
                }
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {token}\r\n",
                    u.host, u.port
                )
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
        let sub =
            String::from_utf8(t.subscribe_request(t.sse_url("a1"), "a1", Some("17:0")).expect("req")).expect("utf8");
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
        let sub = String::from_utf8(t.subscribe_request(t.sse_url("a1"), "a1", None).expect("req")).expect("utf8");
        assert!(sub.starts_with("GET /v1/subscribe HTTP/1.1\r\n"));
        assert!(sub.contains("Authorization: Bearer ey"));
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
