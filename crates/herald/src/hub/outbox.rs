//! The outbox: a bounded queue of frames between the hub and one subscription's writer.
//!
//! Why not `tokio::sync::mpsc`: it allocates a 32-slot block (1.2–1.8 KB) the moment it is
//! created, even when empty, which alone would eat most of the 3 KB budget of an idle
//! subscription (spec/deps.md §4). This queue is a mutex-guarded `VecDeque` (no allocation while
//! empty, ~100 bytes in all) plus an `AtomicWaker`. Pushes never block and never wait: a full
//! outbox ends the subscription with a reason instead (DESIGN.md promise 4).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use crate::transport::sse::frame::Frame;

/// Why a subscription ends. Each has a stable code, and all of them mean "reconnect".
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
}

impl CloseReason {
    /// The SSE event sent before the stream ends.
    pub fn event_name(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer | CloseReason::Shutdown | CloseReason::BackplaneUnavailable => "reconnect",
            CloseReason::Timeout => "timeout",
            CloseReason::CredentialsExpired => "credentials_expired",
        }
    }

    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Timeout => "timeout",
            CloseReason::CredentialsExpired => "credentials_expired",
            CloseReason::BackplaneUnavailable => "backplane_unavailable",
        }
    }
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The frame is queued.
    Queued,
    /// The outbox was full: the frame is dropped and the subscription is closing as too slow.
    Overflowed,
    /// The subscription was already closing; the frame is dropped.
    Closed,
}

/// What the writer takes from an outbox at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Frames to write, oldest first.
    Frames,
    /// Nothing is left to write and the subscription must end for this reason.
    Close(CloseReason),
}

/// Most frames the writer takes per wake-up: one `writev` carries them all.
pub const MAX_BATCH: usize = 64;

/// Outbox capacity above which a drained queue gives its memory back.
const SHRINK_ABOVE: usize = 4;

/// One subscription's queue and liveness clocks.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
    /// Frames allowed in the queue; one more ends the subscription as [`CloseReason::SlowConsumer`].
    capacity: u32,
    /// Wall-clock ms of the last frame queued (message or ping): drives keep-alives.
    last_frame_ms: AtomicU64,
    /// Wall-clock ms of the last message queued: drives the inactivity timeout.
    last_message_ms: AtomicU64,
    /// Wall-clock ms when the token expires: drives `credentials_expired`.
    expires_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    closing: Option<CloseReason>,
}

impl Outbox {
    /// An empty outbox for a subscription opened at `now_ms` whose token expires at `expires_ms`.
    pub fn new(capacity: usize, now_ms: u64, expires_ms: u64) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            last_frame_ms: AtomicU64::new(now_ms),
            last_message_ms: AtomicU64::new(now_ms),
            expires_ms,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single push or drain), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message frame; never blocks. On overflow the subscription starts closing.
    pub fn push_message(&self, frame: Frame, now_ms: u64) -> Push {
        let result = {
            let mut state = self.lock();
            if state.closing.is_some() {
                Push::Closed
            } else if state.frames.len() >= self.capacity as usize {
                state.closing = Some(CloseReason::SlowConsumer);
                Push::Overflowed
            } else {
                state.frames.push_back(frame);
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

    /// Queues a control frame (a ping) unless the subscription is closing or has frames waiting:
    /// frames already queued will reach the client anyway, so a ping would add nothing.
    pub fn push_keepalive(&self, frame: Frame, now_ms: u64) -> bool {
        {
            let mut state = self.lock();
            if state.closing.is_some() || !state.frames.is_empty() {
                return false;
            }
            state.frames.push_back(frame);
        }
        self.last_frame_ms.store(now_ms, Ordering::Relaxed);
        self.waker.wake();
        true
    }

    /// Most frames it queues.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Starts closing for `reason`, unless already closing. Frames already queued are written first.
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

    /// The reason the subscription is closing, if it is.
    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().closing
    }

    /// Moves up to [`MAX_BATCH`] frames into `batch`, or says the stream must end.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Vec<Frame>) -> Poll<Taken> {
        // Register before looking, so a push between the look and the return still wakes us.
        self.waker.register(cx.waker());
        let mut state = self.lock();
        if !state.frames.is_empty() {
            let n = state.frames.len().min(MAX_BATCH);
            batch.extend(state.frames.drain(..n));
            if state.frames.is_empty() && state.frames.capacity() > SHRINK_ABOVE {
                state.frames = VecDeque::new();
            }
            return Poll::Ready(Taken::Frames);
        }
        match state.closing {
            Some(reason) => Poll::Ready(Taken::Close(reason)),
            None => Poll::Pending,
        }
    }

    /// Ready once the subscription starts closing; used while a write is stuck.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.waker.register(cx.waker());
        match self.lock().closing {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }

    /// When the last frame was queued.
    pub fn last_frame_ms(&self) -> u64 {
        self.last_frame_ms.load(Ordering::Relaxed)
    }

    /// When the last message was queued.
    pub fn last_message_ms(&self) -> u64 {
        self.last_message_ms.load(Ordering::Relaxed)
    }

    /// When the token expires.
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms
    }

    /// Frames waiting to be written.
    pub fn depth(&self) -> usize {
        self.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[test]
    fn overflow_closes_as_slow_consumer_and_drops_later_frames() {
        let o = Outbox::new(2, 0, u64::MAX);
        let f = Frame::control("x");
        assert_eq!(o.push_message(f.clone(), 1), Push::Queued);
        assert_eq!(o.push_message(f.clone(), 2), Push::Queued);
        assert_eq!(o.push_message(f.clone(), 3), Push::Overflowed);
        assert_eq!(o.push_message(f.clone(), 4), Push::Closed);
        assert_eq!(o.closing(), Some(CloseReason::SlowConsumer));
        assert_eq!(o.last_message_ms(), 2);
    }

    #[tokio::test]
    async fn queued_frames_are_taken_before_the_close() {
        let o = Outbox::new(8, 0, u64::MAX);
        o.push_message(Frame::control("a"), 1);
        o.close(CloseReason::Shutdown);
        o.close(CloseReason::Timeout); // the first reason wins
        let mut batch = Vec::new();
        assert_eq!(poll_fn(|cx| o.poll_take(cx, &mut batch)).await, Taken::Frames);
        assert_eq!(batch, [Frame::control("a")]);
        assert_eq!(
            poll_fn(|cx| o.poll_take(cx, &mut batch)).await,
            Taken::Close(CloseReason::Shutdown)
        );
    }

    #[test]
    fn keepalives_skip_busy_or_closing_outboxes() {
        let o = Outbox::new(8, 0, u64::MAX);
        assert!(o.push_keepalive(Frame::control("ping"), 5));
        assert!(!o.push_keepalive(Frame::control("ping"), 6));
        assert_eq!(o.last_frame_ms(), 5);
        assert_eq!(o.last_message_ms(), 0, "a ping is not a message");
    }
}
