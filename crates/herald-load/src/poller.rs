//! One long-polling subscriber's connection: send a poll, read the whole answer, take its messages
//! and the position to poll from next.
//!
//! A long-poll client holds one HTTP/1.1 keep-alive connection and has at most one request on it:
//! it sends the next poll as soon as an answer is read, so the server never sees it idle. The two
//! servers differ only in how the position travels and how an answer carries several messages:
//!
//! - Herald (`GET /v2/poll?topic=…&cursor=…&timeout=55`): a JSON answer with the messages (at most
//!   100) and the `cursor` to send next. The first poll has no cursor and is answered at once with
//!   the current position.
//! - Nchan (`GET /lp/<channel>`, `nchan_longpoll_multipart_response on`): the answer is the message
//!   itself, or a `multipart/mixed` body with one part per message when several are waiting; its
//!   `Last-Modified` and `Etag` are sent back as `If-Modified-Since` and `If-None-Match`. A poll
//!   with nothing after its position is held until the next message or the subscriber timeout
//!   (`408`), so the first poll is held too, and [`confirm_registered`] proves it is registered.

use std::borrow::Cow;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::net;
use crate::target::{PollPosition, Target, TargetKind};
use crate::wire::head::HeadError;
use crate::wire::multipart;
use crate::wire::response::{self, Response};

/// A poll failed.
#[derive(Debug, Error)]
pub enum PollError {
    /// Connecting or writing failed.
    #[error("poll I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not readable HTTP, or the connection closed before it.
    #[error("poll response: {0}")]
    Head(#[from] HeadError),
    /// A status that is neither an answer nor a timeout.
    #[error("poll status {0}")]
    Status(u16),
    /// A 200 whose body or headers are not a long-poll answer.
    #[error("bad poll answer: {0}")]
    BadAnswer(String),
    /// No answer within the poll timeout and its margin.
    #[error("no answer within the poll timeout")]
    Timeout,
    /// The request could not be built.
    #[error("poll request: {0}")]
    Request(String),
}

impl PollError {
    /// A short label for error counters.
    pub fn label(&self) -> String {
        match self {
            PollError::Io(e) => format!("poll_io_{:?}", e.kind()).to_lowercase(),
            PollError::Head(_) => "poll_bad_response".into(),
            PollError::Status(s) => format!("poll_status_{s}"),
            PollError::BadAnswer(_) => "poll_bad_answer".into(),
            PollError::Timeout => "poll_timeout".into(),
            PollError::Request(_) => "poll_request".into(),
        }
    }

    /// Whether the connection went away under the request (so a fresh one may be tried at once).
    pub fn closed(&self) -> bool {
        match self {
            PollError::Head(HeadError::Closed) => true,
            PollError::Head(HeadError::Io(e)) | PollError::Io(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

/// One keep-alive connection and its read buffer.
pub struct PollConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl PollConn {
    /// Connects to `addr` from `src`.
    pub async fn connect(addr: SocketAddr, src: Option<IpAddr>) -> std::io::Result<Self> {
        Ok(Self {
            stream: net::connect(addr, src).await?,
            buf: Vec::new(),
        })
    }

    /// Writes one request.
    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(request).await
    }

    /// Reads the answer to the request in flight.
    pub async fn receive(&mut self) -> Result<Response, HeadError> {
        let r = response::read(&mut self.stream, &mut self.buf).await;
        if self.buf.capacity() > 4096 {
            self.buf.shrink_to(1024);
        }
        r
    }

    /// Sends `request` and reads its answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, PollError> {
        self.send(request).await?;
        Ok(self.receive().await?)
    }
}

/// What one answer carried.
#[derive(Debug, Default, PartialEq)]
pub struct Answer<'a> {
    /// The messages' payloads, in order.
    pub payloads: Vec<Cow<'a, [u8]>>,
    /// Where to poll from next; `None`: where this poll was (a timeout).
    pub next: Option<PollPosition>,
    /// Herald: topics whose history had a gap before these messages.
    pub gap: Vec<String>,
    /// Messages of another topic or event name than the subscriber's (errors).
    pub foreign: u64,
}

#[derive(Deserialize)]
struct HeraldAnswer<'a> {
    #[serde(borrow)]
    messages: Vec<HeraldMessage<'a>>,
    cursor: String,
    #[serde(default)]
    gap: Vec<String>,
}

#[derive(Deserialize)]
struct HeraldMessage<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

/// Reads `response` as the answer to a poll of `sub`.
pub fn parse_answer<'a>(target: &Target, sub: &str, response: &'a Response) -> Result<Answer<'a>, PollError> {
    let status = response.head.status;
    match target.kind {
        TargetKind::Herald => {
            if status != 200 {
                return Err(PollError::Status(status));
            }
            let parsed: HeraldAnswer<'a> =
                serde_json::from_slice(&response.body).map_err(|e| PollError::BadAnswer(e.to_string()))?;
            let mut answer = Answer {
                next: Some(PollPosition::Cursor(parsed.cursor)),
                gap: parsed.gap,
                ..Answer::default()
            };
            for m in parsed.messages {
                if m.topic != sub || m.event != target.event {
                    answer.foreign += 1;
                    continue;
                }
                answer.payloads.push(match m.payload {
                    Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                    Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                });
            }
            Ok(answer)
        }
        TargetKind::Nchan => match status {
            200 => {
                let head = &response.head;
                let (Some(last_modified), Some(etag)) = (&head.last_modified, &head.etag) else {
                    return Err(PollError::BadAnswer("no Last-Modified or Etag".into()));
                };
                let multi = head
                    .content_type
                    .as_deref()
                    .is_some_and(|c| c.starts_with("multipart/mixed"));
                let payloads = match (&head.boundary, multi) {
                    (Some(b), true) => multipart::parts(&response.body, b)
                        .map_err(|e| PollError::BadAnswer(e.to_string()))?
                        .into_iter()
                        .map(Cow::Borrowed)
                        .collect(),
                    _ => vec![Cow::Borrowed(response.body.as_slice())],
                };
                Ok(Answer {
                    payloads,
                    next: Some(PollPosition::Conditional {
                        last_modified: last_modified.clone(),
                        etag: etag.clone(),
                    }),
                    ..Answer::default()
                })
            }
            // The subscriber timeout, or nothing newer: poll again from the same place.
            304 | 408 => Ok(Answer::default()),
            _ => Err(PollError::Status(status)),
        },
    }
}

/// Nchan: waits until the channel of `sub` counts a subscriber (the long-poll just sent), asking
/// the publisher location every `every`. The caller bounds the wait.
pub async fn confirm_registered(target: &Target, sub: &str, every: Duration) -> Result<(), PollError> {
    let (url, request) = target.channel_info_request(sub);
    let mut conn = PollConn::connect(url.addr, None).await?;
    loop {
        let r = conn.exchange(&request).await?;
        if r.head.status == 200 && active_subscribers(&r.body) > 0 {
            return Ok(());
        }
        if r.head.close {
            conn = PollConn::connect(url.addr, None).await?;
        }
        tokio::time::sleep(every).await;
    }
}

/// The `active subscribers: N` line of Nchan's channel info (0 when absent).
fn active_subscribers(body: &[u8]) -> u64 {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix("active subscribers:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtSettings;
    use crate::target::{TokenIn, Transport};
    use crate::wire::head;

    fn target(kind: TargetKind) -> Target {
        let jwt = JwtSettings {
            issuer: "i".into(),
            secret: "s".into(),
            audience: "a".into(),
            lifetime_s: 60,
        };
        Target {
            kind,
            sse_urls: vec!["http://127.0.0.1:1/".parse().expect("url")],
            publish_urls: vec!["http://127.0.0.1:1/pub/".parse().expect("url")],
            sse_jwt: jwt.clone(),
            publish_jwt: jwt,
            user_agent: "t".into(),
            event: "load_test_event".into(),
            topics_per_connection: 0,
            transport: Transport::Longpoll,
            poll_urls: vec!["http://127.0.0.1:1/v2/poll".parse().expect("url")],
            token_in: TokenIn::Header,
            ws_urls: Vec::new(),
            publish_via: crate::target::PublishVia::Http,
        }
    }

    fn response(raw: &[u8]) -> Response {
        let h = head::parse(raw).expect("valid").expect("complete");
        Response {
            body: raw[h.len..].to_vec(),
            head: h,
        }
    }

    #[test]
    fn herald_answer_gives_payloads_and_the_next_cursor() {
        let t = target(TargetKind::Herald);
        let r = response(
            br#"HTTP/1.1 200 OK
content-type: application/json

{"messages":[{"topic":"s1","id":"17","event":"load_test_event","payload":"5 1 o"},{"topic":"s1","id":"18","event":"other","payload":"5 2 o"}],"cursor":"18","more":false,"gap":[]}"#,
        );
        let a = parse_answer(&t, "s1", &r).expect("answer");
        assert_eq!(a.payloads, vec![Cow::Borrowed(&b"5 1 o"[..])]);
        assert_eq!(a.next, Some(PollPosition::Cursor("18".into())));
        assert_eq!(a.foreign, 1);
        assert!(a.gap.is_empty());
        let refused = response(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(parse_answer(&t, "s1", &refused), Err(PollError::Status(401))));
    }

    #[test]
    fn nchan_single_multipart_and_timeout_answers() {
        let t = target(TargetKind::Nchan);
        let one = response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nLast-Modified: X\r\nEtag: 0\r\n\r\n5 1 o");
        let a = parse_answer(&t, "s1", &one).expect("answer");
        assert_eq!(a.payloads, vec![Cow::Borrowed(&b"5 1 o"[..])]);
        assert_eq!(
            a.next,
            Some(PollPosition::Conditional {
                last_modified: "X".into(),
                etag: "0".into()
            })
        );
        let many = response(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=Ab\r\nLast-Modified: Y\r\nEtag: 2\r\n\r\n\
--Ab\r\nContent-Type: text/plain\r\n\r\n5 2 o\r\n--Ab\r\nContent-Type: text/plain\r\n\r\n5 3 o\r\n--Ab--\r\n",
        );
        let a = parse_answer(&t, "s1", &many).expect("answer");
        assert_eq!(a.payloads.len(), 2);
        assert_eq!(a.payloads[1], Cow::Borrowed(&b"5 3 o"[..]));
        let timeout = response(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse_answer(&t, "s1", &timeout).expect("timeout"), Answer::default());
        let bare = response(b"HTTP/1.1 200 OK\r\n\r\nx");
        assert!(matches!(parse_answer(&t, "s1", &bare), Err(PollError::BadAnswer(_))));
    }

    #[test]
    fn channel_info_counts_subscribers() {
        let info = b"queued messages: 0\nlast requested: 0 sec. ago\nactive subscribers: 1\nlast message id: 0:0";
        assert_eq!(active_subscribers(info), 1);
        assert_eq!(active_subscribers(b""), 0);
    }
}
