//! Minting a single-use ticket for each subscriber (Herald v2 `--token-in ticket`).
//!
//! Done before the measured phase, so a storm with tickets measures what redeeming them costs the
//! server, not minting them. A few keep-alive connections, each minting for the next subscriber
//! without one; a refusal is counted under its status and leaves that subscriber without a
//! ticket (its subscribe then fails, visibly).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use serde::Deserialize;

use super::Worker;
use crate::poller::{PollConn, PollError};

#[derive(Deserialize)]
struct Issued {
    ticket: String,
}

/// Mints a ticket for every subscriber of `worker`, `concurrency` requests at a time.
pub(super) async fn mint_all(worker: &Arc<Worker>, concurrency: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency.clamp(1, worker.slots.len().max(1)))
        .map(|_| tokio::spawn(mint_some(worker.clone(), next.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Mints tickets for the next subscribers in turn, on one connection, until none is left.
async fn mint_some(worker: Arc<Worker>, next: Arc<AtomicUsize>) {
    let mut conn: Option<PollConn> = None;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = worker.slots.get(index) else {
            return;
        };
        match mint(&worker, &slot.sub, &mut conn).await {
            Ok(ticket) => *slot.ticket.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticket),
            Err(e) => {
                conn = None;
                worker.stats().error(format!("ticket_{}", e.label()));
            }
        }
    }
}

async fn mint(worker: &Worker, sub: &str, conn: &mut Option<PollConn>) -> Result<String, PollError> {
    let url = worker.target.tickets_url(sub);
    let request = worker
        .target
        .ticket_request(&url, sub)
        .map_err(|e| PollError::Request(e.to_string()))?;
    let c = match conn {
        Some(c) => c,
        None => conn.insert(PollConn::connect(url.addr, None).await?),
    };
    let r = c.exchange(&request).await?;
    if r.head.close {
        *conn = None;
    }
    if r.head.status != 200 {
        return Err(PollError::Status(r.head.status));
    }
    let issued: Issued = serde_json::from_slice(&r.body).map_err(|e| PollError::BadAnswer(e.to_string()))?;
    Ok(issued.ticket)
}
