//! The outbox: a bounded queue of deliveries between the hub and one connection's writer.
//!
//! A connection has one outbox whatever its transport and however many topics it holds: each
//! [`Delivery`] is a shared message and the index of the connection's subscription it came
//! through. The writer turns deliveries into its wire format; the outbox knows no bytes.
//!
//! Why not `tokio::sync::mpsc`: it allocates a 32-slot block (1.2–1.8 KB) the moment it is
//! created, even when empty, which alone would eat most of the 3 KB budget of an idle
//! subscription (spec/deps.md §4). This queue is a mutex-guarded `VecDeque` (no allocation while
//! empty, ~100 bytes in all) plus an `AtomicWaker`. Pushes never block and never wait: a full
//! outbox ends the subscription with a reason instead (DESIGN.md promise 4).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use std::sync::Arc;

use crate::model::SharedMessage;

/// One message for one connection: which of its subscriptions it came through, and the message.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The subscription's index in its connection (0 for a one-topic connection).
    pub index: u16,
    /// The message, shared with every other connection that receives it.
    pub message: Arc<SharedMessage>,
}

/// Why a connection ends. Each has a stable code, and all of them mean "reconnect"; each
/// transport says it its own way (SSE: a closing event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The outbox overflowed: the client reads slower than messages arrive. It gets `reconnect`
    /// and resumes from history with `Last-Event-ID`.
    SlowConsumer,
    /// The node is shutting down: `reconnect`.
    Shutdown,
    /// No message for `SSE_TIMEOUT`: `timeout`.
    Timeout,
    /// Cluster mode: the shared history could not be read to resume: `reconnect` (the client
    /// resumes again, perhaps on another node).
    BackplaneUnavailable,
    /// The token's `exp` passed: `credentials_expired`.
    CredentialsExpired,
    /// An operator revoked the token, its subject or its session: `credentials_revoked` (and the
    /// same token is refused if it comes back).
    CredentialsRevoked,
}

impl CloseReason {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Timeout => "timeout",
            CloseReason::CredentialsExpired => "credentials_expired",
            CloseReason::CredentialsRevoked => "credentials_revoked",
            CloseReason::BackplaneUnavailable => "backplane_unavailable",
        }
    }
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The delivery is queued.
    Queued,
    /// The outbox was full: the delivery is dropped and the connection is closing as too slow.
    Overflowed,
    /// The connection was already closing; the delivery is dropped.
    Closed,
}

/// What the writer takes from an outbox at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Deliveries to write, oldest first.
    Deliveries,
    /// Nothing is queued and a keep-alive is due.
    Ping,
    /// Nothing is left to write and the connection must end for this reason.
    Close(CloseReason),
}

/// Most deliveries the writer takes per wake-up: one `writev` carries them all.
pub const MAX_BATCH: usize = 64;

/// Outbox capacity above which a drained queue gives its memory back.
const SHRINK_ABOVE: usize = 4;

/// One connection's queue and liveness clocks.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    /// Deliveries allowed in the queue; one more ends the connection as [`CloseReason::SlowConsumer`].
    capacity: u32,
    /// A connection with its own keep-alive interval (a WebSocket: `WS_PING_INTERVAL`), in ms;
    /// 0 for the node's rule (`SSE_KEEPALIVE`). Such a connection has no inactivity timeout:
    /// `SSE_TIMEOUT` is the SSE streams' rule, and a WebSocket's pings tell a dead peer.
    own_keepalive_ms: AtomicU32,
    /// Wall-clock ms of the last delivery or ping queued: drives keep-alives.
    last_frame_ms: AtomicU64,
    /// Wall-clock ms of the last message queued: drives the inactivity timeout.
    last_message_ms: AtomicU64,
    /// Wall-clock ms when the token expires: drives `credentials_expired`. A WebSocket's `auth`
    /// command moves it.
    expires_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Delivery>,
    /// A keep-alive is due (only ever set while the queue is empty).
    ping: bool,
    closing: Option<CloseReason>,
}

impl Outbox {
    /// An empty outbox for a connection opened at `now_ms` whose token expires at `expires_ms`.
    pub fn new(capacity: usize, now_ms: u64, expires_ms: u64) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            own_keepalive_ms: AtomicU32::new(0),
            last_frame_ms: AtomicU64::new(now_ms),
            last_message_ms: AtomicU64::new(now_ms),
            expires_ms: AtomicU64::new(expires_ms),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single push or drain), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a delivery; never blocks. On overflow the connection starts closing.
    pub fn push_message(&self, delivery: Delivery, now_ms: u64) -> Push {
        let result = {
            let mut state = self.lock();
            if state.closing.is_some() {
                Push::Closed
            } else if state.queue.len() >= self.capacity as usize {
                state.closing = Some(CloseReason::SlowConsumer);
                Push::Overflowed
            } else {
                state.queue.push_back(delivery);
                state.ping = false;
                Push::Queued
            }
        };
        if result == Push::Queued {
            self.last_message_ms.store(now_ms, Ordering::Relaxed);
            self.last_frame_ms.store(now_ms, Ordering::Relaxed);
        }
        if result != Push::Closed {
            self.waker.wake();
        }
        result
    }

    /// Asks for a keep-alive unless the connection is closing or has deliveries waiting: those
    /// will reach the client anyway, so a ping would add nothing.
    pub fn push_keepalive(&self, now_ms: u64) -> bool {
        {
            let mut state = self.lock();
            if state.closing.is_some() || !state.queue.is_empty() || state.ping {
                return false;
            }
            state.ping = true;
        }
        self.last_frame_ms.store(now_ms, Ordering::Relaxed);
        self.waker.wake();
        true
    }

    /// Most deliveries it queues.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Starts closing for `reason`, unless already closing. Deliveries already queued are written first.
    pub fn close(&self, reason: CloseReason) {
        let changed = {
            let mut state = self.lock();
            let changed = state.closing.is_none();
            state.closing.get_or_insert(reason);
            changed
        };
        if changed {
            self.waker.wake();
        }
    }

    /// The reason the connection is closing, if it is.
    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().closing
    }

    /// Moves up to [`MAX_BATCH`] deliveries into `batch`, or says a ping is due or the
    /// connection must end.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Vec<Delivery>) -> Poll<Taken> {
        // Register before looking, so a push between the look and the return still wakes us.
        self.waker.register(cx.waker());
        let mut state = self.lock();
        if !state.queue.is_empty() {
            let n = state.queue.len().min(MAX_BATCH);
            batch.extend(state.queue.drain(..n));
            if state.queue.is_empty() && state.queue.capacity() > SHRINK_ABOVE {
                state.queue = VecDeque::new();
            }
            return Poll::Ready(Taken::Deliveries);
        }
        if state.ping {
            state.ping = false;
            return Poll::Ready(Taken::Ping);
        }
        match state.closing {
            Some(reason) => Poll::Ready(Taken::Close(reason)),
            None => Poll::Pending,
        }
    }

    /// Ready once the connection starts closing; used while a write is stuck.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.waker.register(cx.waker());
        match self.lock().closing {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }

    /// When the last delivery or ping was queued.
    pub fn last_frame_ms(&self) -> u64 {
        self.last_frame_ms.load(Ordering::Relaxed)
    }

    /// When the last delivery was queued.
    pub fn last_message_ms(&self) -> u64 {
        self.last_message_ms.load(Ordering::Relaxed)
    }

    /// When the token expires.
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Ordering::Relaxed)
    }

    /// Gives the connection its own keep-alive interval (see the field); 0 restores the rule.
    pub fn set_own_keepalive_ms(&self, ms: u32) {
        self.own_keepalive_ms.store(ms, Ordering::Relaxed);
    }

    /// The connection's own keep-alive interval, if it has one.
    pub fn own_keepalive_ms(&self) -> Option<u64> {
        let ms = self.own_keepalive_ms.load(Ordering::Relaxed);
        (ms != 0).then_some(u64::from(ms))
    }

    /// A refreshed token expires at `expires_ms`: the connection lives on until then.
    pub fn set_expires_ms(&self, expires_ms: u64) {
        self.expires_ms.store(expires_ms, Ordering::Relaxed);
    }

    /// Deliveries waiting to be written.
    pub fn depth(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether a keep-alive is waiting to be written.
    pub fn ping_pending(&self) -> bool {
        self.lock().ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventId, Message};
    use bytes::Bytes;
    use std::future::poll_fn;

    fn delivery(id: u64) -> Delivery {
        Delivery {
            index: 0,
            message: SharedMessage::replayed(
                crate::model::Topic::from_full_name("i-t"),
                Message {
                    id: EventId(id),
                    event: Bytes::from_static(b"e"),
                    payload: Bytes::from_static(b"p"),
                    accepted_ms: 0,
                },
            ),
        }
    }

    fn ids(batch: &[Delivery]) -> Vec<u64> {
        batch.iter().map(|d| d.message.message().id.0).collect()
    }

    #[test]
    fn overflow_closes_as_slow_consumer_and_drops_later_deliveries() {
        let o = Outbox::new(2, 0, u64::MAX);
        assert_eq!(o.push_message(delivery(1), 1), Push::Queued);
        assert_eq!(o.push_message(delivery(2), 2), Push::Queued);
        assert_eq!(o.push_message(delivery(3), 3), Push::Overflowed);
        assert_eq!(o.push_message(delivery(4), 4), Push::Closed);
        assert_eq!(o.closing(), Some(CloseReason::SlowConsumer));
        assert_eq!(o.last_message_ms(), 2);
    }

    #[tokio::test]
    async fn queued_deliveries_are_taken_before_the_close() {
        let o = Outbox::new(8, 0, u64::MAX);
        o.push_message(delivery(1), 1);
        o.close(CloseReason::Shutdown);
        o.close(CloseReason::Timeout); // the first reason wins
        let mut batch = Vec::new();
        assert_eq!(poll_fn(|cx| o.poll_take(cx, &mut batch)).await, Taken::Deliveries);
        assert_eq!(ids(&batch), [1]);
        assert_eq!(
            poll_fn(|cx| o.poll_take(cx, &mut batch)).await,
            Taken::Close(CloseReason::Shutdown)
        );
    }

    #[tokio::test]
    async fn keepalives_skip_busy_or_closing_outboxes_and_are_taken_once() {
        let o = Outbox::new(8, 0, u64::MAX);
        assert!(o.push_keepalive(5));
        assert!(!o.push_keepalive(6), "one ping is pending already");
        assert_eq!(o.last_frame_ms(), 5);
        assert_eq!(o.last_message_ms(), 0, "a ping is not a message");
        let mut batch = Vec::new();
        assert_eq!(poll_fn(|cx| o.poll_take(cx, &mut batch)).await, Taken::Ping);
        o.push_message(delivery(1), 7);
        assert!(!o.push_keepalive(8), "a delivery is waiting");
        o.close(CloseReason::Shutdown);
        assert!(!o.push_keepalive(9));
    }
}
