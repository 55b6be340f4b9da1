//! Fixed-rate publishing on a worker's own topics (the one-to-one scenario).
//!
//! The worker spreads its share of the rate over its topics round-robin. A topic never has two
//! publishes in flight, so the server receives each topic's messages in sequence order and any
//! reordering seen by the subscriber is the server's. If the server cannot keep up, the number of
//! outstanding publishes is capped and the achieved rate falls below the target instead of the
//! tool queueing without bound; the coordinator reports the achieved rate. Publishes go over HTTP,
//! or over Herald's WebSocket with `--publish-via ws` ([`crate::ws_publish`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Worker;
use crate::payload;

/// Scheduler tick.
const TICK: Duration = Duration::from_millis(1);

/// Publishes at `rate` messages per second for `duration`, then waits for the last responses.
pub(super) async fn run(worker: &Arc<Worker>, rate: f64, duration: Duration) {
    let topics = worker.slots.len();
    if topics == 0 || rate <= 0.0 {
        tokio::time::sleep(duration).await;
        return;
    }
    let outstanding = Arc::new(AtomicU64::new(0));
    let max_outstanding = worker.max_outstanding();
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut next = 0usize;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        while sent < due && outstanding.load(Ordering::Relaxed) < max_outstanding {
            let Some(index) = next_free(worker, &mut next) else {
                break;
            };
            sent += 1;
            outstanding.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(publish_one(worker.clone(), index, outstanding.clone()));
        }
        // Work not done in time is dropped, not caught up later in a burst.
        sent = sent.max(due.saturating_sub((rate * 0.05).ceil() as u64));
    }
    let deadline = Instant::now() + Duration::from_millis(worker.plan.publish_timeout_ms + 1000);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The next topic (round-robin from `next`) with no publish in flight, marked busy.
fn next_free(worker: &Worker, next: &mut usize) -> Option<usize> {
    let n = worker.slots.len();
    for _ in 0..n {
        let i = *next;
        *next = (*next + 1) % n;
        if !worker.slots[i].busy.swap(true, Ordering::AcqRel) {
            return Some(i);
        }
    }
    None
}

async fn publish_one(worker: Arc<Worker>, index: usize, outstanding: Arc<AtomicU64>) {
    let slot = &worker.slots[index];
    let seq = slot.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let size = worker.plan.payload_size;
    let result = worker
        .publish(&slot.sub, || payload::encode(payload::now_us(), seq, "o", size))
        .await;
    {
        let mut stats = worker.stats();
        match result {
            Ok(took) => {
                stats.published += 1;
                stats.publish.record(took.as_micros() as u64);
                slot.expected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.publish_errors += 1;
                stats.error(e.label());
            }
        }
    }
    slot.busy.store(false, Ordering::Release);
    outstanding.fetch_sub(1, Ordering::Relaxed);
}
