//! One SSE subscription: open it, read events, check every message.
//!
//! [`SseStream`] owns the socket and the two parsers (chunked body, SSE). Reading is split into
//! an async wait ([`SseStream::readable`]) and a synchronous step ([`SseStream::read_ready`])
//! that reads into a stack buffer. The buffer therefore lives only during that step and not in
//! the task's future, which keeps an idle subscription to about 1.6 KB of load-tool RSS (measured).
//! [`SubState`] is the per-stream bookkeeping: the sequence checker and the last event id (an
//! opaque string: a number on Herald, `1700000000:0` on Nchan) for resuming.

use std::io::ErrorKind;
use std::net::IpAddr;

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::checker::{SeqChecker, Verdict};
use crate::net;
use crate::payload;
use crate::stats::Stats;
use crate::target::{Target, TargetKind};
use crate::wire::chunked::ChunkedDecoder;
use crate::wire::head::{self, HeadError};
use crate::wire::sse::{SseEvent, SseParser};

/// Size of the stack buffer one read fills.
const READ_CHUNK: usize = 16 * 1024;

/// A subscription could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// TCP connect or request write failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// The response head was unreadable.
    #[error("response: {0}")]
    Head(#[from] HeadError),
    /// The server refused the subscription.
    #[error("status {0}")]
    Status(u16),
    /// The response was not an event stream.
    #[error("not an event stream (content-type {0:?})")]
    NotEventStream(Option<String>),
    /// The request could not be built (token signing).
    #[error("request: {0}")]
    Request(String),
    /// No response head within the connect timeout.
    #[error("timed out")]
    Timeout,
    /// A WebSocket upgrade whose `101` is not an answer to its key.
    #[error("WebSocket handshake: {0}")]
    Handshake(String),
    /// Herald refused a WebSocket's subscription with this error code.
    #[error("subscription refused: {0}")]
    Refused(String),
    /// The connection ended before the subscription was acknowledged (the label says how).
    #[error("ended before the subscription: {0}")]
    Ended(String),
}

impl OpenError {
    /// A short label for error counters.
    pub fn label(&self) -> String {
        match self {
            OpenError::Io(e) => format!("subscribe_io_{:?}", e.kind()).to_lowercase(),
            OpenError::Head(_) => "subscribe_bad_response".into(),
            OpenError::Status(s) => format!("subscribe_status_{s}"),
            OpenError::NotEventStream(_) => "subscribe_not_event_stream".into(),
            OpenError::Request(_) => "subscribe_request".into(),
            OpenError::Timeout => "subscribe_timeout".into(),
            OpenError::Handshake(_) => "subscribe_ws_handshake".into(),
            OpenError::Refused(code) => format!("subscribe_ws_error_{code}"),
            OpenError::Ended(end) => format!("subscribe_{end}"),
        }
    }
}

/// Why a stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server sent a stream-ending control event (`timeout`, `reconnect`,
    /// `credentials_expired`).
    Control(String),
    /// The server closed the connection (or ended the chunked body).
    Eof,
    /// A read or protocol error.
    Failed(String),
}

impl StreamEnd {
    /// A short label for counters.
    pub fn label(&self) -> String {
        match self {
            StreamEnd::Control(kind) => format!("stream_end_{kind}"),
            StreamEnd::Eof => "stream_end_eof".into(),
            StreamEnd::Failed(why) => format!("stream_error_{why}"),
        }
    }
}

/// What a read step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// Events (possibly none) were handled; the stream is still open.
    Open,
    /// The stream is over.
    Ended(StreamEnd),
}

enum Body {
    Chunked(ChunkedDecoder),
    Identity,
}

/// An open event stream.
pub struct SseStream {
    stream: TcpStream,
    body: Body,
    parser: SseParser,
}

impl SseStream {
    /// Connects from `src` to the subscribe URL `skip` nodes after `sub`'s own (0: its own), sends
    /// the subscribe request and checks the response head. `ticket`: see
    /// [`Target::subscribe_request`].
    pub async fn open(
        target: &Target,
        sub: &str,
        skip: usize,
        src: Option<IpAddr>,
        last_event_id: Option<&str>,
        ticket: Option<&str>,
    ) -> Result<Self, OpenError> {
        let url = target.sse_url_after(sub, skip);
        let request = target
            .subscribe_request(url, sub, last_event_id, ticket)
            .map_err(|e| OpenError::Request(e.to_string()))?;
        let mut stream = net::connect(url.addr, src).await?;
        stream.write_all(&request).await?;
        let mut buf = Vec::with_capacity(1024);
        let head = head::read(&mut stream, &mut buf).await?;
        if head.status != 200 {
            return Err(OpenError::Status(head.status));
        }
        if !head
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
        {
            return Err(OpenError::NotEventStream(head.content_type));
        }
        let mut sse = Self {
            stream,
            body: if head.chunked {
                Body::Chunked(ChunkedDecoder::new())
            } else {
                Body::Identity
            },
            parser: SseParser::new(),
        };
        sse.feed(&buf[head.len..]).map_err(|e| OpenError::Request(e.label()))?;
        Ok(sse)
    }

    /// Waits until the socket has something to read (or an error).
    pub async fn readable(&self) -> std::io::Result<()> {
        self.stream.readable().await
    }

    /// Reads what is available and calls `on_event` for each complete event; `on_event` may end
    /// the stream by returning `Some`.
    pub fn read_ready(&mut self, mut on_event: impl FnMut(SseEvent<'_>) -> Option<StreamEnd>) -> ReadStep {
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(0) => return self.finish(&mut on_event, StreamEnd::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadStep::Open,
            Err(e) => {
                let label = format!("{:?}", e.kind()).to_lowercase();
                return ReadStep::Ended(StreamEnd::Failed(label));
            }
        };
        if let Err(end) = self.feed(&buf[..n]) {
            return ReadStep::Ended(end);
        }
        self.dispatch(&mut on_event)
    }

    /// Delivers events already buffered (e.g. those that came with the response head).
    pub fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>) -> Option<StreamEnd>) -> ReadStep {
        let mut end = None;
        let drained = self.parser.drain(|ev| {
            if end.is_none() {
                end = on_event(ev);
            }
        });
        if let Some(end) = end {
            return ReadStep::Ended(end);
        }
        if drained.is_err() {
            return ReadStep::Ended(StreamEnd::Failed("event_too_large".into()));
        }
        if matches!(&self.body, Body::Chunked(d) if d.is_done()) {
            return ReadStep::Ended(StreamEnd::Eof);
        }
        ReadStep::Open
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamEnd> {
        match &mut self.body {
            Body::Chunked(dec) => dec
                .decode(bytes, self.parser.buffer_mut())
                .map_err(|_| StreamEnd::Failed("bad_chunking".into())),
            Body::Identity => {
                self.parser.extend(bytes);
                Ok(())
            }
        }
    }

    fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>) -> Option<StreamEnd>, end: StreamEnd) -> ReadStep {
        match self.dispatch(on_event) {
            ReadStep::Ended(e) => ReadStep::Ended(e),
            ReadStep::Open => ReadStep::Ended(end),
        }
    }
}

/// The data of a Herald v2 message event.
#[derive(serde::Deserialize)]
struct V2Data {
    payload: String,
}

/// Per-stream checking state, kept across reconnects.
#[derive(Debug, Default)]
pub struct SubState {
    /// Order, loss and duplicate checks.
    pub checker: SeqChecker,
    /// Id of the last message, sent as `Last-Event-ID` when resuming.
    pub last_id: Option<String>,
    /// Duplicates, out-of-order messages and unexpected events seen on this stream.
    pub anomalies: u64,
    /// Sequence numbers that arrived late (after a later one): rare, kept so that a late message
    /// whose publish was refused can be excused (`--tolerate-faults`).
    pub late: Vec<u64>,
}

impl SubState {
    /// Handles one event: counts pings, checks messages, and reports stream-ending events.
    pub fn on_event(&mut self, ev: SseEvent<'_>, target: &Target, stats: &mut Stats, now_us: u64) -> Option<StreamEnd> {
        match ev.kind() {
            b"ping" => {
                stats.pings += 1;
                return None;
            }
            kind @ (b"timeout" | b"reconnect" | b"credentials_expired") => {
                return Some(StreamEnd::Control(String::from_utf8_lossy(kind).into_owned()));
            }
            _ => {}
        }
        // Herald v2 opens a stream with an event that has only an id (its cursor): remember it,
        // as a browser does, and dispatch nothing.
        if let (Some(id), None, None) = (ev.id, ev.event, &ev.data) {
            self.last_id = Some(String::from_utf8_lossy(id).into_owned());
            return None;
        }
        if target.kind == TargetKind::Herald && ev.kind() != target.event.as_bytes() {
            stats.error("unexpected_event");
            self.anomalies += 1;
            return None;
        }
        let stamp = if target.is_v2() {
            // Herald v2: the data is {"topic","id","payload"}; the payload is herald-load's.
            ev.data
                .as_deref()
                .and_then(|d| serde_json::from_slice::<V2Data>(d).ok())
                .and_then(|d| payload::decode(d.payload.as_bytes()))
        } else {
            ev.data.as_deref().and_then(payload::decode)
        };
        if !self.on_stamp(stamp, stats, now_us) {
            return None;
        }
        if let Some(id) = ev.id {
            let id = String::from_utf8_lossy(id);
            match &mut self.last_id {
                Some(last) => {
                    last.clear();
                    last.push_str(&id);
                }
                None => self.last_id = Some(id.into_owned()),
            }
        }
        None
    }

    /// Checks one message payload (a long-poll answer's, or an event's data): latency, order,
    /// duplicates.
    pub fn on_payload(&mut self, data: &[u8], stats: &mut Stats, now_us: u64) {
        self.on_stamp(payload::decode(data), stats, now_us);
    }

    /// Records one message; false (counted as an error) when it is not one of herald-load's.
    fn on_stamp(&mut self, stamp: Option<payload::Stamp>, stats: &mut Stats, now_us: u64) -> bool {
        let Some(stamp) = stamp else {
            stats.error("unexpected_message");
            self.anomalies += 1;
            return false;
        };
        stats.delivered += 1;
        stats.latency.record(now_us.saturating_sub(stamp.send_us).max(1));
        match self.checker.observe(stamp.seq) {
            Verdict::InOrder | Verdict::Skipped { .. } => stats.unique += 1,
            Verdict::Late => {
                self.late.push(stamp.seq);
                stats.unique += 1;
                stats.out_of_order += 1;
                self.anomalies += 1;
            }
            Verdict::Duplicate => {
                stats.duplicates += 1;
                self.anomalies += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtSettings;

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
            publish_urls: vec!["http://127.0.0.1:1/".parse().expect("url")],
            sse_jwt: jwt.clone(),
            publish_jwt: jwt,
            user_agent: "t".into(),
            event: "load_test_event".into(),
            topics_per_connection: 0,
            transport: crate::target::Transport::Sse,
            poll_urls: Vec::new(),
            token_in: crate::target::TokenIn::Header,
            ws_urls: Vec::new(),
            publish_via: crate::target::PublishVia::Http,
        }
    }

    fn msg<'a>(id: &'a [u8], data: &'a [u8]) -> SseEvent<'a> {
        SseEvent {
            id: Some(id),
            event: Some(b"load_test_event"),
            data: Some(data.into()),
        }
    }

    #[test]
    fn counts_messages_pings_and_duplicates() {
        let t = target(TargetKind::Herald);
        let mut st = SubState::default();
        let mut stats = Stats::default();
        assert_eq!(st.on_event(msg(b"10", b"100 1"), &t, &mut stats, 150), None);
        let ping = SseEvent {
            event: Some(b"ping"),
            ..SseEvent::default()
        };
        assert_eq!(st.on_event(ping, &t, &mut stats, 0), None);
        st.on_event(msg(b"11", b"100 2"), &t, &mut stats, 200);
        st.on_event(msg(b"11", b"100 2"), &t, &mut stats, 200);
        assert_eq!(stats.delivered, 3);
        assert_eq!(stats.unique, 2);
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.pings, 1);
        assert_eq!(st.last_id.as_deref(), Some("11"));
        assert_eq!(stats.latency.count(), 3);
    }

    #[test]
    fn control_events_end_the_stream() {
        let t = target(TargetKind::Herald);
        let mut st = SubState::default();
        let mut stats = Stats::default();
        let ev = SseEvent {
            event: Some(b"credentials_expired"),
            ..SseEvent::default()
        };
        assert_eq!(
            st.on_event(ev, &t, &mut stats, 0),
            Some(StreamEnd::Control("credentials_expired".into()))
        );
    }

    #[test]
    fn nchan_unnamed_events_and_opaque_ids() {
        let t = target(TargetKind::Nchan);
        let mut st = SubState::default();
        let mut stats = Stats::default();
        let ev = SseEvent {
            id: Some(b"1700000000:3"),
            event: None,
            data: Some(b"5 1 pad".as_slice().into()),
        };
        st.on_event(ev, &t, &mut stats, 10);
        assert_eq!(stats.unique, 1);
        assert_eq!(st.last_id.as_deref(), Some("1700000000:3"));
    }
}
