//! Holding a worker's WebSocket subscribers (`--transport ws`).
//!
//! Each subscriber upgrades once and reads for the life of the worker, checking every message as
//! an SSE event is checked (latency from the payload's send time, order, duplicates); pings are
//! answered as they come ([`WsConn`]), so neither server closes a quiet connection.
//!
//! When a subscriber counts as connected:
//! - Herald subscribes the URL's `topic=` before it writes anything, and its first frame is the
//!   `ack` of that subscription (command id 0): the subscriber is connected when the ack arrives,
//!   and refused when an `error` with id 0 does.
//! - Nchan writes the `101` from the subscriber's enqueue, once the channel holds it (as it writes
//!   the SSE response head), so the `101` is the proof, as the SSE head is.
//!
//! A connection that ends (a close frame, a reset) is counted under its reason and not re-opened:
//! the scenarios that use WebSockets never drop one on purpose, so any close is an error (4409,
//! say, when the token's lifetime is shorter than the run).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Semaphore;

use super::subscriptions::attempt_done;
use super::{Slot, Worker};
use crate::payload;
use crate::stats::Stats;
use crate::subscriber::{OpenError, ReadStep, StreamEnd, SubState};
use crate::target::{Target, TargetKind};
use crate::websocket::WsConn;
use crate::wire::ws::Frame;

/// Where a subscriber is in its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Upgraded; Herald's ack not there yet.
    Waiting,
    /// Subscribed: messages may come.
    Subscribed,
    /// Herald answered the subscription with this error code.
    Refused(String),
}

/// The fields of Herald's frames that a subscriber reads (`msg`, `ack`, `error`, `gap`, `ping`).
#[derive(Deserialize)]
struct HeraldFrame<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// The command id of an `ack` or `error` (a `msg`'s `id` is its message id, a string).
#[derive(Deserialize)]
struct CommandId {
    id: Option<u64>,
}

/// Reads a `msg` frame laid out as Herald writes it (`{"op":"msg","topic":…,"id":…,"event":…,
/// "payload":…,"cursor":…}`) without a JSON parser, as `(topic, event, payload)`: in a broadcast
/// the tool reads over a million a second on one core, and a parse per frame would make it the
/// limit. Any other layout, or a string with an escape in it, is `None` and goes through serde.
fn herald_msg(text: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    /// A JSON string's bytes up to its closing quote, and what follows; `None` if it has an escape.
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let end = b.iter().position(|&c| c == b'"' || c == b'\\')?;
        (b[end] == b'"').then(|| (&b[..end], &b[end + 1..]))
    }
    let (topic, rest) = string(text.strip_prefix(br#"{"op":"msg","topic":""#)?)?;
    let (_id, rest) = string(rest.strip_prefix(br#","id":""#)?)?;
    let (event, rest) = string(rest.strip_prefix(br#","event":""#)?)?;
    let (payload, rest) = string(rest.strip_prefix(br#","payload":""#)?)?;
    rest.starts_with(br#","cursor":""#).then_some((topic, event, payload))
}

/// Checks one message of `sub`'s topic.
fn on_msg(
    target: &Target,
    sub: &str,
    state: &mut SubState,
    stats: &mut Stats,
    now_us: u64,
    (topic, event, payload): (&[u8], &[u8], Option<&[u8]>),
) {
    if topic != sub.as_bytes() || event != target.event.as_bytes() {
        stats.error("unexpected_event");
        state.anomalies += 1;
        return;
    }
    match payload {
        Some(p) => state.on_payload(p, stats, now_us),
        None => stats.error("unexpected_message"),
    }
}

/// Handles one frame of `sub`'s connection.
fn on_frame(
    target: &Target,
    sub: &str,
    state: &mut SubState,
    stats: &mut Stats,
    now_us: u64,
    frame: Frame<'_>,
    phase: &mut Phase,
) -> Option<StreamEnd> {
    let text = match frame {
        Frame::Ping(_) => {
            stats.pings += 1;
            return None;
        }
        Frame::Pong | Frame::Close(_) => return None,
        // Nchan: one frame per message, the payload alone.
        Frame::Text(data) | Frame::Binary(data) if target.kind == TargetKind::Nchan => {
            state.on_payload(data, stats, now_us);
            return None;
        }
        Frame::Binary(_) => {
            stats.error("ws_unexpected_binary");
            return None;
        }
        Frame::Text(text) => text,
    };
    if let Some((topic, event, payload)) = herald_msg(text) {
        on_msg(target, sub, state, stats, now_us, (topic, event, Some(payload)));
        return None;
    }
    let Ok(f) = serde_json::from_slice::<HeraldFrame<'_>>(text) else {
        stats.error("ws_bad_frame");
        return None;
    };
    let command_id = || serde_json::from_slice::<CommandId>(text).ok().and_then(|c| c.id);
    match &*f.op {
        "msg" => {
            let topic = f.topic.as_deref().unwrap_or_default().as_bytes();
            let event = f.event.as_deref().unwrap_or_default().as_bytes();
            let payload = f.payload.as_deref().map(str::as_bytes);
            on_msg(target, sub, state, stats, now_us, (topic, event, payload));
        }
        "ack" if *phase == Phase::Waiting && command_id() == Some(0) => *phase = Phase::Subscribed,
        "error" => {
            let code = f.code.as_deref().unwrap_or("unknown").to_owned();
            if *phase == Phase::Waiting && command_id() == Some(0) {
                *phase = Phase::Refused(code);
            } else {
                stats.error(format!("ws_error_{code}"));
            }
        }
        "gap" => stats.error("history_gap"),
        "ack" | "ping" | "pong" => {}
        _ => stats.error("ws_unexpected_op"),
    }
    None
}

/// Runs one read step (`buffered`: the frames that came with the `101`) with the statistics
/// locked, then publishes the delivery counts.
fn read_step(
    worker: &Worker,
    slot: &Slot,
    conn: &mut WsConn,
    state: &mut SubState,
    phase: &mut Phase,
    buffered: bool,
) -> ReadStep {
    let now = payload::now_us();
    let target = &worker.target;
    let mut stats = worker.stats();
    let before = stats.delivered;
    let step = {
        let handle = |f: Frame<'_>| on_frame(target, &slot.sub, state, &mut stats, now, f, phase);
        if buffered {
            conn.dispatch(handle)
        } else {
            conn.read_ready(handle)
        }
    };
    let got = stats.delivered - before;
    drop(stats);
    if got > 0 {
        slot.unique.store(state.checker.unique(), Ordering::Relaxed);
        worker.delivered.fetch_add(got, Ordering::Relaxed);
    }
    step
}

/// Counts a subscriber that could not subscribe.
fn failed(worker: &Worker, e: &OpenError) {
    let mut stats = worker.stats();
    stats.error(e.label());
    stats.connect_failed += 1;
    drop(stats);
    attempt_done(worker);
}

/// One WebSocket subscriber for the life of the worker.
pub(super) async fn hold(worker: Arc<Worker>, index: usize, permits: Option<Arc<Semaphore>>) {
    let slot = &worker.slots[index];
    let target = &worker.target;
    let url = match target.ws_url(&slot.sub) {
        Ok(u) => u,
        Err(e) => return failed(&worker, &OpenError::Request(e.to_string())),
    };
    let started = Instant::now();
    // Held until subscribed: the permits bound the subscriptions being made, not those held.
    let mut permit = match &permits {
        Some(p) => p.clone().acquire_owned().await.ok(),
        None => None,
    };
    // As for SSE, the connect timeout counts from the turn of this subscriber, not the queue.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(worker.plan.connect_timeout_ms);
    let upgrade = WsConn::open(url.addr, slot.src, |key| {
        target.ws_subscribe_request(url, &slot.sub, key)
    });
    let mut conn = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return failed(&worker, &e),
        Err(_) => return failed(&worker, &OpenError::Timeout),
    };
    let mut state = SubState::default();
    let mut phase = match target.kind {
        TargetKind::Herald => Phase::Waiting,
        TargetKind::Nchan => Phase::Subscribed,
    };
    let mut connected = false;
    let mut step = read_step(&worker, slot, &mut conn, &mut state, &mut phase, true);
    let end = loop {
        if conn.has_output()
            && let Err(e) = conn.flush().await
        {
            break StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
        }
        match &phase {
            Phase::Subscribed if !connected => {
                connected = true;
                permit = None;
                let mut stats = worker.stats();
                stats.connect.record(started.elapsed().as_micros() as u64);
                stats.connected += 1;
                drop(stats);
                worker.connected.fetch_add(1, Ordering::Relaxed);
                attempt_done(&worker);
            }
            Phase::Refused(code) => return failed(&worker, &OpenError::Refused(code.clone())),
            _ => {}
        }
        if let ReadStep::Ended(end) = step {
            break end;
        }
        let ready = if connected {
            conn.readable().await
        } else {
            match tokio::time::timeout_at(deadline, conn.readable()).await {
                Ok(r) => r,
                Err(_) => return failed(&worker, &OpenError::Timeout),
            }
        };
        if let Err(e) = ready {
            break StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
        }
        step = read_step(&worker, slot, &mut conn, &mut state, &mut phase, false);
    };
    drop(permit);
    if !connected {
        return failed(&worker, &OpenError::Ended(end.label()));
    }
    let mut stats = worker.stats();
    stats.streams_ended += 1;
    stats.error(end.label());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::JwtSettings;
    use crate::target::{PublishVia, TokenIn, Transport};

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
            transport: Transport::Ws,
            poll_urls: Vec::new(),
            token_in: TokenIn::Header,
            ws_urls: vec!["http://127.0.0.1:1/v2/ws".parse().expect("url")],
            publish_via: PublishVia::Http,
        }
    }

    fn feed(t: &Target, frames: &[Frame<'_>]) -> (Stats, Phase) {
        let mut state = SubState::default();
        let mut stats = Stats::default();
        let mut phase = if t.kind == TargetKind::Herald {
            Phase::Waiting
        } else {
            Phase::Subscribed
        };
        for f in frames {
            assert_eq!(
                on_frame(t, "s1", &mut state, &mut stats, 1_000, f.clone(), &mut phase),
                None
            );
        }
        (stats, phase)
    }

    #[test]
    fn herald_ack_then_messages_pings_and_strays() {
        let t = target(TargetKind::Herald);
        let (stats, phase) = feed(
            &t,
            &[
                Frame::Text(br#"{"op":"ack","id":0,"cursor":"m1.x","topics":["s1"]}"#),
                Frame::Text(br#"{"op":"msg","topic":"s1","id":"17","event":"load_test_event","payload":"900 1 o","cursor":"m1.y"}"#),
                Frame::Text(br#"{"op":"ping"}"#),
                Frame::Ping(b""),
                Frame::Text(br#"{"op":"msg","topic":"s1","id":"18","event":"load_test_event","payload":"900 2 o","cursor":"m1.z"}"#),
                Frame::Text(br#"{"op":"msg","topic":"other","id":"19","event":"load_test_event","payload":"900 3 o","cursor":"m1.z"}"#),
                Frame::Text(br#"{"op":"msg","topic":"s1","id":"20","event":"load_test_event","payload":"900 2 o","cursor":"m1.z"}"#),
                Frame::Text(br#"{"op":"error","id":null,"code":"invalid_command","message":"x"}"#),
                Frame::Text(b"not json"),
            ],
        );
        assert_eq!(phase, Phase::Subscribed);
        assert_eq!((stats.delivered, stats.unique, stats.duplicates), (3, 2, 1));
        assert_eq!(stats.pings, 1);
        assert_eq!(stats.latency.count(), 3);
        assert_eq!(stats.errors["unexpected_event"], 1);
        assert_eq!(stats.errors["ws_error_invalid_command"], 1);
        assert_eq!(stats.errors["ws_bad_frame"], 1);
    }

    #[test]
    fn herald_msg_frames_are_read_without_a_parser_unless_unusual() {
        let plain = br#"{"op":"msg","topic":"s1","id":"17","event":"e","payload":"900 1 o","cursor":"m1.y"}"#;
        assert_eq!(herald_msg(plain), Some((&b"s1"[..], &b"e"[..], &b"900 1 o"[..])));
        let escaped = br#"{"op":"msg","topic":"s1","id":"17","event":"e","payload":"a\"b","cursor":"m"}"#;
        assert_eq!(herald_msg(escaped), None);
        let reordered = br#"{"op":"msg","id":"17","topic":"s1","event":"e","payload":"p","cursor":"m"}"#;
        assert_eq!(herald_msg(reordered), None);
        assert_eq!(herald_msg(br#"{"op":"ack","id":0}"#), None);
        // Both ways give the same checks.
        let t = target(TargetKind::Herald);
        let (stats, _) = feed(
            &t,
            &[
                Frame::Text(
                    br#"{"op":"msg","topic":"s1","id":"1","event":"load_test_event","payload":"900 1 o","cursor":"m"}"#,
                ),
                Frame::Text(
                    br#"{"cursor":"m","op":"msg","topic":"s1","id":"2","event":"load_test_event","payload":"900 2 o"}"#,
                ),
                Frame::Text(br#"{"op":"msg","topic":"s1","id":"3","event":"other","payload":"900 3 o","cursor":"m"}"#),
            ],
        );
        assert_eq!((stats.delivered, stats.unique), (2, 2));
        assert_eq!(stats.errors["unexpected_event"], 1);
    }

    #[test]
    fn herald_refusal_of_the_url_topics() {
        let t = target(TargetKind::Herald);
        let (stats, phase) = feed(
            &t,
            &[Frame::Text(
                br#"{"op":"error","id":0,"code":"topic_not_allowed","message":"no"}"#,
            )],
        );
        assert_eq!(phase, Phase::Refused("topic_not_allowed".into()));
        assert!(stats.errors.is_empty());
        assert_eq!(
            OpenError::Refused("topic_not_allowed".into()).label(),
            "subscribe_ws_error_topic_not_allowed"
        );
    }

    #[test]
    fn nchan_frames_are_the_payloads() {
        let t = target(TargetKind::Nchan);
        let (stats, _) = feed(
            &t,
            &[
                Frame::Text(b"900 1 o"),
                Frame::Text(b"900 2 o xxx"),
                Frame::Text(b"hello"),
            ],
        );
        assert_eq!(stats.unique, 2);
        assert_eq!(stats.errors["unexpected_message"], 1);
    }
}
