//! A resuming subscription on a cluster node: listen to its topic, read the shared history, and
//! hand both to the hub, which merges them with the live messages held meanwhile.
//!
//! Redis may be away when a client resumes (a restart, a failover, a partition). A live
//! subscription rides such a blip out, since the listener catches its topics up once Redis is
//! back; a resuming one does the same here: it stays open, holding its live messages, and the
//! catch-up is tried again with a capped backoff until it succeeds, the client leaves, or the
//! backplane has been unavailable for `CLUSTER_RESUME_TIMEOUT`. Only then does the stream end with
//! the transport's resumable close, so one blip does not turn into a reconnection storm. Retrying
//! is safe: the hub merges by stream id, so a history read that overlaps what the listener
//! delivered meanwhile neither repeats nor skips a message.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::RedisBackplane;
use super::listener::jitter;
use super::redis::SharedHistory;
use crate::hub::outbox::Outbox;
use crate::hub::{Hub, SubscriptionKey};
use crate::model::ResumeFrom;

/// First wait after a failed catch-up; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two tries: a recovered Redis is noticed within about this long.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl RedisBackplane {
    /// Catches `key`'s subscription up from the shared history (see the module doc). Returns once
    /// it is live, gone, or ended for want of the backplane.
    pub async fn catch_up(&self, hub: &Hub, key: &SubscriptionKey, outbox: &Arc<Outbox>, resume: ResumeFrom) {
        let started = tokio::time::Instant::now();
        let deadline = started + self.resume_timeout();
        let mut backoff = FIRST_BACKOFF;
        let mut waiting = false;
        let outcome = loop {
            if let Some(history) = self.read_for_catch_up(key).await {
                let gap = match resume {
                    ResumeFrom::After(position) => history.gap_after(position),
                    ResumeFrom::Live => false,
                };
                hub.finish_catch_up(key, outbox, resume, history.entries, gap);
                break "caught up";
            }
            if !hub.holds(key, outbox) {
                break "client gone";
            }
            if !waiting {
                waiting = true;
                self.stats().resumes_waiting.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    topic = key.topic().as_str(),
                    "cannot resume from the shared history (Redis unavailable); holding the stream open and trying again"
                );
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                self.stats().resumes_abandoned.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    topic = key.topic().as_str(),
                    waited_ms = now.duration_since(started).as_millis() as u64,
                    "the shared history stayed unavailable for CLUSTER_RESUME_TIMEOUT; telling the client to reconnect"
                );
                hub.abandon_catch_up(key, outbox);
                break "abandoned";
            }
            // Jittered, so the subscriptions of one outage do not all retry in step.
            let pause = jitter(backoff).min(deadline - now);
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        if waiting {
            self.stats().resumes_waiting.fetch_sub(1, Ordering::Relaxed);
            tracing::info!(topic = key.topic().as_str(), outcome, "a held resume ended");
        }
    }

    /// One try: listen to the topic's channel first (so nothing published after the read is
    /// missed), then read its history. `None` when Redis could not do either.
    async fn read_for_catch_up(&self, key: &SubscriptionKey) -> Option<SharedHistory> {
        if !self.ensure_listening(key.topic()).await {
            return None;
        }
        self.history(key.topic()).await.ok()
    }
}
