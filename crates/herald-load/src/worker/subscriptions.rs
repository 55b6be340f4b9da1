//! Holding a worker's subscriptions: open, follow, check, and (optionally) resume. Long-polling
//! subscribers are held by [`longpoll`] instead, WebSocket ones by [`websocket`].

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Slot, Worker, longpoll, websocket};
use crate::payload;
use crate::subscriber::{OpenError, ReadStep, SseStream, StreamEnd, SubState};
use crate::target::Transport;
use crate::wire::sse::SseEvent;

/// Opens every subscription of the worker and returns once each first attempt has finished.
/// `concurrency` bounds the handshakes in flight (0 = no bound: a connection storm).
pub(super) async fn connect_all(worker: &Arc<Worker>, concurrency: usize) {
    let permits = (concurrency > 0).then(|| Arc::new(Semaphore::new(concurrency)));
    let total = worker.slots.len() as u64;
    for index in 0..worker.slots.len() {
        match worker.target.transport {
            Transport::Sse => tokio::spawn(hold(worker.clone(), index, permits.clone())),
            Transport::Longpoll => tokio::spawn(longpoll::hold(worker.clone(), index, permits.clone())),
            Transport::Ws => tokio::spawn(websocket::hold(worker.clone(), index, permits.clone())),
        };
    }
    loop {
        let notified = worker.attempt_notify.notified();
        if worker.attempts_done.load(Ordering::Acquire) >= total {
            return;
        }
        // The timeout only guards against a missed wake-up.
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

pub(super) fn attempt_done(worker: &Worker) {
    worker.attempts_done.fetch_add(1, Ordering::Release);
    worker.attempt_notify.notify_waiters();
}

/// One subscription for the life of the worker.
async fn hold(worker: Arc<Worker>, index: usize, permits: Option<Arc<Semaphore>>) {
    let slot = &worker.slots[index];
    let mut state = SubState::default();
    let mut first = true;
    loop {
        let started = Instant::now();
        let opened = {
            let _permit = match &permits {
                Some(p) => p.acquire().await.ok(),
                None => None,
            };
            open(&worker, slot, state.last_id.as_deref()).await
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                let mut stats = worker.stats();
                stats.error(e.label());
                if first {
                    stats.connect_failed += 1;
                    drop(stats);
                    attempt_done(&worker);
                }
                return;
            }
        };
        {
            let mut stats = worker.stats();
            stats.connect.record(started.elapsed().as_micros() as u64);
            if first {
                stats.connected += 1;
            } else {
                stats.reconnects += 1;
            }
        }
        if first {
            first = false;
            worker.connected.fetch_add(1, Ordering::Relaxed);
            attempt_done(&worker);
        }
        let end = follow(&worker, slot, &mut stream, &mut state).await;
        drop(stream);
        if !worker.plan.reconnect {
            let mut stats = worker.stats();
            stats.streams_ended += 1;
            stats.error(end.label());
            return;
        }
    }
}

async fn open(worker: &Worker, slot: &Slot, last_id: Option<&str>) -> Result<SseStream, OpenError> {
    let ticket = slot.ticket.lock().unwrap_or_else(PoisonError::into_inner).take();
    open_sub(worker, &slot.sub, 0, slot.src, last_id, ticket.as_deref()).await
}

/// Opens a subscription to `sub` within the plan's connect timeout, on the node `skip` after its
/// own (see [`crate::target::Target::sse_url_after`]).
pub(super) async fn open_sub(
    worker: &Worker,
    sub: &str,
    skip: usize,
    src: Option<IpAddr>,
    last_id: Option<&str>,
    ticket: Option<&str>,
) -> Result<SseStream, OpenError> {
    let limit = Duration::from_millis(worker.plan.connect_timeout_ms);
    tokio::time::timeout(limit, SseStream::open(&worker.target, sub, skip, src, last_id, ticket))
        .await
        .unwrap_or(Err(OpenError::Timeout))
}

/// Reads events until the stream ends.
async fn follow(worker: &Worker, slot: &Slot, stream: &mut SseStream, state: &mut SubState) -> StreamEnd {
    let mut step = process(worker, Some(slot), state, |cb| stream.dispatch(&mut |ev| cb(ev)));
    loop {
        if let ReadStep::Ended(end) = step {
            return end;
        }
        tokio::select! {
            ready = stream.readable() => {
                if let Err(e) = ready {
                    return StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
                }
            }
            () = slot.kick.notified() => return StreamEnd::Control("dropped_by_the_tool".into()),
        }
        step = process(worker, Some(slot), state, |cb| stream.read_ready(cb));
    }
}

/// Runs one read step with the statistics locked, then publishes the delivery counts.
pub(super) fn process<F>(worker: &Worker, slot: Option<&Slot>, state: &mut SubState, read: F) -> ReadStep
where
    F: FnOnce(&mut dyn FnMut(SseEvent<'_>) -> Option<StreamEnd>) -> ReadStep,
{
    let now = payload::now_us();
    let mut stats = worker.stats();
    let before = stats.delivered;
    let step = read(&mut |ev| state.on_event(ev, &worker.target, &mut stats, now));
    let got = stats.delivered - before;
    drop(stats);
    if got > 0 {
        if let Some(slot) = slot {
            slot.unique.store(state.checker.unique(), Ordering::Relaxed);
        }
        worker.delivered.fetch_add(got, Ordering::Relaxed);
    }
    step
}
