//! Long-polling: `GET {PUBLIC_API_CONTEXT_PATH}/v2/poll?topic=…&cursor=C&timeout=S`.
//!
//! Stateless, backed by history like a resume: each poll opens a connection on the topics from
//! the cursor, answers at once with what was retained after it (up to [`MAX_BATCH`], `more` when
//! there is more), or holds the request until a message arrives or the timeout passes, and closes
//! the connection again. So consecutive polls may reach different nodes, and a client that polls
//! in a loop with the cursor it was given receives every message once, in order, while it polls
//! within retention. Without a cursor, a poll answers at once with the current position.
//!
//! ```json
//! {"messages":[{"topic":"a","id":"1796…","event":"update","payload":"…"}],"cursor":"m1.…","more":false,"gap":[]}
//! ```

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use crate::auth::AuthError;
use crate::http::PublicApi;
use crate::http::response::{self, Reply};
use crate::http::subscription::{HeraldRequest, StreamKind, SubscribeRequest};
use crate::hub::outbox::{CloseReason, Delivery, Taken};
use crate::model::cursor;
use crate::node::{Connection, Opened};
use crate::transport::WireFormat;

/// Most messages one answer carries; `more` says the client should poll again at once.
const MAX_BATCH: usize = 100;

/// The hold when the request names none, and the longest allowed (Pushpin's default is 55 s;
/// proxies commonly cut idle requests at 60 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);
const MAX_TIMEOUT_S: u64 = 55;

/// How long a resumed poll on a cluster node waits at least for its replay from Redis.
const CLUSTER_REPLAY_WAIT: Duration = Duration::from_secs(1);

/// How often a cluster poll looks whether its other topics' replays have come. A catch-up has no
/// completion signal of its own (an empty replay queues nothing); a few checks per poll, only on
/// cluster nodes and only while a replay is outstanding, cost nothing next to the Redis reads.
const CATCH_UP_CHECK: Duration = Duration::from_millis(5);

/// A long-poll that passed every check: the connection to open, and how long it may wait.
#[derive(Debug)]
pub(crate) struct PollRequest {
    pub(crate) request: SubscribeRequest,
    pub(crate) timeout: Duration,
}

/// The `timeout` parameter: whole seconds from 0 (answer at once) to 55.
pub(crate) fn timeout(raw: Option<&str>) -> Result<Duration, String> {
    match raw {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n <= MAX_TIMEOUT_S && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "timeout is a whole number of seconds from 0 to {MAX_TIMEOUT_S}"
            )),
        },
    }
}

impl PublicApi {
    /// Answers a long-poll: the retained messages after its cursor, or the first that arrive
    /// within its timeout, or none; with the cursor to poll from next.
    pub(crate) async fn hold_poll(&self, mut poll: PollRequest) -> Reply {
        let StreamKind::Herald(herald) = &poll.request.kind else {
            unreachable!("only v2 routes make polls");
        };
        let origin = herald.origin.clone();
        let resumed = herald.positions.is_some();
        if let Err(e) = self.resolve_heads(&mut poll.request).await {
            tracing::warn!(error = %e, "poll refused: Redis unavailable");
            return response::json_error(
                503,
                "backplane_unavailable",
                "The cluster's Redis is unavailable; retry later",
                origin.as_deref(),
            );
        }
        let request = poll.request;
        let StreamKind::Herald(herald) = request.kind else {
            unreachable!("checked above");
        };
        let HeraldRequest {
            topics,
            positions,
            latest,
            ..
        } = *herald;
        let hash = cursor::topic_set_hash(&topics);
        let Opened {
            connection,
            replay,
            heads,
            gaps,
        } = Connection::open(&self.node, request.topics, request.expires_ms, request.identity);
        let mut positions = positions.unwrap_or_else(|| heads.iter().map(|h| h.0).collect());
        let mut messages = crate::http::subscription::with_latest(latest, &topics, &positions, replay);
        if resumed {
            let started = tokio::time::Instant::now();
            // On a cluster node the replay comes through the outbox once each topic's shared
            // history is read: wait for all of them (briefly even for an interval poll), so the
            // answer holds every topic's replay.
            let catch_up_deadline = started + poll.timeout.max(CLUSTER_REPLAY_WAIT);
            while !connection.caught_up() && tokio::time::Instant::now() < catch_up_deadline {
                tokio::time::sleep(CATCH_UP_CHECK).await;
            }
            take_queued(&connection, &mut messages);
            if messages.is_empty() && !poll.timeout.is_zero() {
                wait(&connection, started + poll.timeout, &mut messages).await;
            }
        }
        // Whatever else is already queued goes in the same answer.
        take_queued(&connection, &mut messages);
        let revoked = connection.outbox().closing() == Some(CloseReason::CredentialsRevoked);
        drop(connection);
        if revoked {
            // Nothing of this answer is delivered: the client's cursor does not move.
            let (code, message) = AuthError::TokenRevoked.client_view(self.settings.verbose_errors);
            return response::json_error(403, code, message, origin.as_deref());
        }
        // A cluster node's gaps come as notices in the queue, a single node's with the opening.
        let mut gaps = gaps;
        messages.retain(|d| {
            let notice = d.message.is_gap_notice();
            if notice {
                gaps.push(d.index);
            }
            !notice
        });
        gaps.sort_unstable();
        gaps.dedup();
        let more = messages.len() > MAX_BATCH;
        messages.truncate(MAX_BATCH);
        let prefix_len = request.issuer.len() + 1;
        let mut body = Vec::with_capacity(64 + messages.len() * 128);
        body.extend_from_slice(b"{\"messages\":[");
        for (i, d) in messages.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let index = usize::from(d.index);
            let name = d.message.topic().as_str().get(prefix_len..).unwrap_or("");
            body.extend_from_slice(
                d.message
                    .encoded(WireFormat::Json.slot(), |m| crate::transport::json::message(m, name)),
            );
            positions[index] = d.message.message().id.0;
        }
        let next = cursor::encode(hash, &positions);
        let gap: Vec<&str> = gaps
            .iter()
            .filter_map(|&i| topics.get(usize::from(i))?.as_str().get(prefix_len..))
            .collect();
        let gap = serde_json::to_string(&gap).expect("JSON of strings cannot fail");
        body.extend_from_slice(format!("],\"cursor\":\"{next}\",\"more\":{more},\"gap\":{gap}}}").as_bytes());
        self.metrics.sent_counter(&request.issuer).inc_by(messages.len() as u64);
        response::json_ok(Bytes::from(body), origin.as_deref())
    }
}

/// Waits until the connection receives a delivery, ends, or `deadline` passes.
async fn wait(connection: &Connection, deadline: tokio::time::Instant, messages: &mut Vec<Delivery>) {
    let outbox = connection.outbox();
    let taken = poll_fn(|cx| {
        loop {
            match outbox.poll_take(cx, messages) {
                // A keep-alive means nothing to a poll, which answers within its timeout anyway.
                Poll::Ready(Taken::Ping) => continue,
                other => return other,
            }
        }
    });
    let _ = tokio::time::timeout_at(deadline, taken).await;
}

/// Moves what the outbox holds right now into `messages`, without waiting.
fn take_queued(connection: &Connection, messages: &mut Vec<Delivery>) {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    while messages.len() <= MAX_BATCH {
        match connection.outbox().poll_take(&mut cx, messages) {
            Poll::Ready(Taken::Deliveries | Taken::Ping) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_seconds_up_to_55() {
        assert_eq!(timeout(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(timeout(Some("0")), Ok(Duration::ZERO));
        assert_eq!(timeout(Some("55")), Ok(Duration::from_secs(55)));
        for bad in ["56", "-1", "1.5", "", "+3", "soon"] {
            assert!(timeout(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
