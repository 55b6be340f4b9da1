//! Holding a worker's long-polling subscribers (`--transport longpoll`).
//!
//! Each subscriber loops for the life of the worker: poll, read the answer, check every message
//! (latency from the payload's send time, order, duplicates) as an SSE event would be checked, and
//! poll again at once from the answer's position, on the same keep-alive connection. A connection
//! the server closes is replaced, and the poll re-sent from the same position, which neither
//! server can answer with a message twice; such reconnections are counted, not errors.
//!
//! A subscriber counts as connected once the server has registered its position: Herald answers
//! the first poll (without a cursor) at once with the current one; Nchan holds it, so its channel
//! info must count the subscriber first ([`poller::confirm_registered`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::subscriptions::attempt_done;
use super::{Slot, Worker};
use crate::payload;
use crate::poller::{self, PollConn, PollError};
use crate::subscriber::SubState;
use crate::target::{HttpUrl, POLL_TIMEOUT_S, PollPosition, TargetKind};
use crate::wire::response::Response;

/// Longest wait for an answer: the servers answer within [`POLL_TIMEOUT_S`] (Nchan when its
/// `nchan_subscriber_timeout` is set so, as bench/lib.sh does).
const ANSWER_LIMIT: Duration = Duration::from_secs(POLL_TIMEOUT_S + 15);

/// Pause after a failed poll, so a refusing server is not hammered.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How often Nchan's channel info is asked while a first poll is not registered yet.
const CONFIRM_EVERY: Duration = Duration::from_millis(5);

/// A subscriber's Herald token, renewed at half its lifetime.
struct Token {
    value: String,
    renew_at: u64,
}

/// One long-polling subscriber.
struct Poller<'a> {
    worker: &'a Worker,
    slot: &'a Slot,
    url: HttpUrl,
    position: PollPosition,
    token: Option<Token>,
    conn: Option<PollConn>,
    state: SubState,
}

impl Poller<'_> {
    fn src(&self) -> Option<IpAddr> {
        self.slot.src
    }

    /// The request for the next poll.
    fn request(&mut self) -> Result<Vec<u8>, PollError> {
        let target = &self.worker.target;
        if target.kind == TargetKind::Herald {
            let now = payload::now_s();
            if self.token.as_ref().is_none_or(|t| now >= t.renew_at) {
                let value = target
                    .subscriber_token(&self.slot.sub)
                    .map_err(|e| PollError::Request(e.to_string()))?;
                self.token = Some(Token {
                    value,
                    renew_at: now + target.sse_jwt.lifetime_s / 2,
                });
            }
        }
        let token = self.token.as_ref().map(|t| t.value.as_str());
        Ok(target.poll_request(&self.url, &self.slot.sub, &self.position, token))
    }

    /// Sends the next poll, on the open connection or a new one.
    async fn send(&mut self) -> Result<(), PollError> {
        let request = self.request()?;
        if let Some(conn) = &mut self.conn {
            if conn.send(&request).await.is_ok() {
                return Ok(());
            }
            self.worker.stats().reconnects += 1;
        }
        let mut conn = PollConn::connect(self.url.addr, self.src()).await?;
        conn.send(&request).await?;
        self.conn = Some(conn);
        Ok(())
    }

    /// Reads the answer to the poll in flight; if the connection closes under it, re-sends the
    /// poll once on a new connection.
    async fn receive(&mut self) -> Result<Response, PollError> {
        let conn = self.conn.as_mut().ok_or(PollError::Request("no connection".into()))?;
        let first = tokio::time::timeout(ANSWER_LIMIT, conn.receive()).await;
        let err = match first {
            Err(_) => PollError::Timeout,
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => PollError::from(e),
        };
        self.conn = None;
        if !err.closed() {
            return Err(err);
        }
        self.worker.stats().reconnects += 1;
        self.send().await?;
        let conn = self.conn.as_mut().ok_or(PollError::Request("no connection".into()))?;
        match tokio::time::timeout(ANSWER_LIMIT, conn.receive()).await {
            Err(_) => Err(PollError::Timeout),
            Ok(r) => Ok(r?),
        }
    }

    /// Checks the messages of one answer and moves the position on.
    fn handle(&mut self, response: &Response, received_us: u64) -> Result<(), PollError> {
        let answer = poller::parse_answer(&self.worker.target, &self.slot.sub, response)?;
        let mut stats = self.worker.stats();
        stats.polls += 1;
        let before = stats.delivered;
        for p in &answer.payloads {
            self.state.on_payload(p, &mut stats, received_us);
        }
        for _ in 0..answer.foreign {
            stats.error("unexpected_event");
        }
        if !answer.gap.is_empty() {
            stats.error("history_gap");
        }
        let got = stats.delivered - before;
        drop(stats);
        if got > 0 {
            self.slot.unique.store(self.state.checker.unique(), Ordering::Relaxed);
            self.worker.delivered.fetch_add(got, Ordering::Relaxed);
        }
        if let Some(next) = answer.next {
            self.position = next;
        }
        if response.head.close {
            self.conn = None;
        }
        Ok(())
    }

    /// The first poll: registered (Herald: answered; Nchan: counted by the channel) or failed.
    /// Returns Herald's answer, still to be handled.
    async fn open(&mut self) -> Result<Option<(Response, u64)>, PollError> {
        self.send().await?;
        match self.worker.target.kind {
            TargetKind::Herald => {
                let r = self.receive().await?;
                let at = payload::now_us();
                if r.head.status != 200 {
                    return Err(PollError::Status(r.head.status));
                }
                Ok(Some((r, at)))
            }
            TargetKind::Nchan => {
                poller::confirm_registered(&self.worker.target, &self.slot.sub, CONFIRM_EVERY).await?;
                Ok(None)
            }
        }
    }
}

/// One long-polling subscriber for the life of the worker.
pub(super) async fn hold(worker: Arc<Worker>, index: usize, permits: Option<Arc<Semaphore>>) {
    let slot = &worker.slots[index];
    let url = match worker.target.poll_url(&slot.sub) {
        Ok(u) => u.clone(),
        Err(_) => {
            let mut stats = worker.stats();
            stats.error("poll_no_url");
            stats.connect_failed += 1;
            drop(stats);
            attempt_done(&worker);
            return;
        }
    };
    let mut poller = Poller {
        worker: &worker,
        slot,
        url,
        position: PollPosition::Start,
        token: None,
        conn: None,
        state: SubState::default(),
    };
    let started = Instant::now();
    let opened = {
        let _permit = match &permits {
            Some(p) => p.acquire().await.ok(),
            None => None,
        };
        let limit = Duration::from_millis(worker.plan.connect_timeout_ms);
        tokio::time::timeout(limit, poller.open())
            .await
            .unwrap_or(Err(PollError::Timeout))
    };
    let mut ready = match opened {
        Ok(ready) => ready,
        Err(e) => {
            let mut stats = worker.stats();
            stats.error(format!("subscribe_{}", e.label()));
            stats.connect_failed += 1;
            drop(stats);
            attempt_done(&worker);
            return;
        }
    };
    {
        let mut stats = worker.stats();
        stats.connect.record(started.elapsed().as_micros() as u64);
        stats.connected += 1;
    }
    worker.connected.fetch_add(1, Ordering::Relaxed);
    attempt_done(&worker);
    // Nchan's first poll is in flight already; Herald's answer is in `ready`.
    let mut in_flight = ready.is_none();
    loop {
        let outcome = match ready.take() {
            Some((response, at)) => poller.handle(&response, at),
            None => {
                let sent = if in_flight { Ok(()) } else { poller.send().await };
                match sent {
                    Ok(()) => match poller.receive().await {
                        Ok(response) => {
                            let at = payload::now_us();
                            poller.handle(&response, at)
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        in_flight = false;
        if let Err(e) = outcome {
            worker.stats().error(e.label());
            poller.conn = None;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
