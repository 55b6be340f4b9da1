//! The scheduler: publishes stored events when they fall due, on their collection's topic.
//!
//! It sleeps until the earliest due time the store holds (woken early by an insert), claims the
//! due events under a lease — so that on a shared PostgreSQL exactly one node claims each —
//! publishes them in due order, then marks them published. A node that dies between its claim
//! and the mark leaves the events `firing`; once their lease ends another node (or this one,
//! restarted) claims and publishes them again: at least once, and the payload's `id` (the
//! event's own) lets a client tell the repeat. Events that fell due while every node was down
//! fire at start, in due order, with the time they actually fired.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::Node;
use crate::model::{NewMessage, Topic};
use crate::shutdown::stopped;
use crate::store::{Store, StoredEvent};

/// How long a claim holds before another node may take the events over.
const LEASE_MS: i64 = 30_000;

/// Most events one claim takes.
const CLAIM: u32 = 500;

/// Longest sleep without looking: events inserted on another node (PostgreSQL) are seen within it.
const MAX_IDLE: Duration = Duration::from_millis(500);

/// The topic of a collection: `collections/<name>` in its issuer's namespace.
pub fn collection_topic(namespace: &str, collection: &str) -> Topic {
    Topic::namespaced(namespace, &format!("collections/{collection}"))
}

/// What a subscriber receives for a stored event: its `id`, so a repeat can be told, and when it
/// was due and when it actually fired.
pub fn payload(event: &StoredEvent, published_at_ms: i64) -> String {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": event.id,
        "collection": event.collection,
        "event": event.event,
        "data": data,
        "publish_at": event.publish_at_ms,
        "published_at": published_at_ms,
    })
    .to_string()
}

/// Runs until `stop`.
pub async fn run_scheduler(node: Arc<Node>, store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    if !store.shared()
        && let Err(e) = store.recover_firing().await
    {
        tracing::warn!(error = %e, "cannot recover the events a previous run was firing; retrying on the next claim");
    }
    loop {
        let now = node.hub.clock().now_ms() as i64;
        let wait = match store.claim_due(now, now + LEASE_MS, CLAIM).await {
            Ok(events) if !events.is_empty() => {
                fire(&node, &store, events).await;
                continue;
            }
            Ok(_) => match store.next_due_ms().await {
                Ok(Some(due)) => Duration::from_millis((due - now).max(0) as u64).min(MAX_IDLE),
                Ok(None) => MAX_IDLE,
                Err(e) => {
                    tracing::warn!(error = %e, "the scheduler cannot read the store");
                    MAX_IDLE
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "the scheduler cannot claim due events");
                MAX_IDLE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = store.scheduled.notified() => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn fire(node: &Node, store: &Store, events: Vec<StoredEvent>) {
    let mut published = Vec::with_capacity(events.len());
    for event in &events {
        let fired_at = node.hub.clock().now_ms() as i64;
        let message = NewMessage {
            event: Bytes::from(event.event.clone()),
            payload: Bytes::from(payload(event, fired_at)),
            timestamp: None,
        };
        let topic = collection_topic(&event.namespace, &event.collection);
        match node.publish(&topic, std::slice::from_ref(&message)).await {
            Ok(_) => published.push(event.id.clone()),
            // Left firing: its lease ends and it is claimed again.
            Err(e) => {
                tracing::warn!(error = %e, id = event.id, "a due event could not be published; retried after its lease")
            }
        }
    }
    let now = node.hub.clock().now_ms() as i64;
    if let Err(e) = store.mark_published(&published, now).await {
        tracing::warn!(error = %e, events = published.len(), "published events could not be marked; they may be published again after their lease");
    }
}
