//! The listener: one pub/sub connection per Redis server, subscribed to exactly the channels of
//! the topics that have subscribers on this node, feeding their messages to the hub.
//!
//! Callers never subscribe or unsubscribe directly: they send the listener a topic whose local
//! interest may have changed, and the listener compares the hub's current state with its own
//! subscriptions. So a subscribe and an unsubscribe racing on two threads cannot leave the channel
//! in the wrong state: whichever hint is handled last sees the final state. A hint can carry an
//! acknowledgement, sent once Redis confirmed the subscription (resume waits for it before it reads
//! the history; docs/cluster.md).
//!
//! When the connection drops, the listener reconnects with exponential backoff and jitter,
//! subscribes again to every topic with local subscribers, and then delivers from the shared
//! history what was published meanwhile (the hub drops what it already delivered), before any
//! live message: the node catches up, so its clients need not reconnect.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::scripts::channel;
use super::shard::shard_of;
use super::wire;
use super::{BackplaneStats, RedisBackplane, bounded};
use crate::hub::Hub;
use crate::model::Topic;

/// First and longest wait between reconnection attempts.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Channels per `SUBSCRIBE` when a reconnected listener subscribes again.
const RESUBSCRIBE_BATCH: usize = 1_000;

/// History reads in flight at once while a reconnected listener catches up.
pub(super) const CATCH_UP_READS: usize = 64;

/// A topic whose local interest may have changed; `ack` (if any) learns whether the listener is
/// subscribed to it once that is settled.
pub(super) struct Interest {
    pub(super) topic: Topic,
    pub(super) ack: Option<oneshot::Sender<bool>>,
}

/// The topic of a channel name `herald:{T}`.
pub(super) fn topic_of(channel: &str) -> Option<Topic> {
    let inner = channel.strip_prefix("herald:{")?.strip_suffix('}')?;
    Some(Topic::from_full_name(inner))
}

/// Listens for server `index` of `servers` until `stop`.
pub(super) async fn run(
    client: Client,
    index: usize,
    servers: usize,
    backplane: Arc<RedisBackplane>,
    hub: Arc<Hub>,
    mut interests: mpsc::UnboundedReceiver<Interest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    // Set once a connection was lost or could not be made: the next success catches up and says so.
    let mut failing = false;
    let mut retry = false;
    loop {
        if retry {
            // Acknowledgements are refused while disconnected, so resumes fail fast and retry.
            let deadline = tokio::time::Instant::now() + jitter(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if !wait_refusing(deadline, &mut interests, &mut stop).await {
                return;
            }
        }
        retry = true;
        let connected = tokio::select! {
            c = bounded(client.get_async_pubsub()) => c,
            _ = crate::shutdown::stopped(&mut stop) => return,
        };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(error) => {
                BackplaneStats::count(&backplane.stats().listen_errors);
                if !failing {
                    failing = true;
                    tracing::error!(server = index, %error, "cannot listen to Redis; retrying with backoff");
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let connected_at = std::time::Instant::now();
        let mut subscribed: HashSet<Topic> = HashSet::new();
        let wanted: Vec<Topic> = hub
            .topics_with_subscribers()
            .into_iter()
            .filter(|t| shard_of(t.as_str(), servers) == index)
            .collect();
        // Many channels per SUBSCRIBE: Redis runs each command whole, so its first confirmation
        // means every channel in it is subscribed. With this and the concurrent reads below, a
        // node with 10,000 topics listens again and catches up in 0.11 s instead of 0.65 s
        // (BENCHMARKS.md, "Recovery after a Redis restart").
        let mut resubscribed = Ok(());
        for batch in wanted.chunks(RESUBSCRIBE_BATCH) {
            let channels: Vec<String> = batch.iter().map(|t| channel(t.as_str())).collect();
            resubscribed = bounded(sink.subscribe(channels)).await;
            if resubscribed.is_err() {
                break;
            }
            subscribed.extend(batch.iter().cloned());
        }
        if let Err(error) = resubscribed {
            BackplaneStats::count(&backplane.stats().listen_errors);
            failing = true;
            tracing::warn!(server = index, %error, "cannot resubscribe to Redis; retrying with backoff");
            continue;
        }
        if failing {
            // Messages published while this node was not listening are in the shared history:
            // deliver them now (the hub skips those it already delivered), before any live one.
            // Reads run side by side (the command connection pipelines them); each topic's
            // delivery is independent of the others', and no live message is read meanwhile.
            let mut caught_up = Ok(());
            let mut reads = futures_util::stream::iter(subscribed.iter().cloned())
                .map(|topic| {
                    let backplane = backplane.clone();
                    async move {
                        let read = backplane.history(&topic).await;
                        (topic, read)
                    }
                })
                .buffer_unordered(CATCH_UP_READS);
            while let Some((topic, read)) = reads.next().await {
                match read {
                    Ok(history) => {
                        hub.deliver(&topic, &history.entries);
                        BackplaneStats::count(&backplane.stats().caught_up_topics);
                    }
                    Err(e) => {
                        caught_up = Err(e);
                        break;
                    }
                }
            }
            drop(reads);
            if let Err(error) = caught_up {
                tracing::warn!(server = index, %error, "cannot catch up from the shared history; retrying with backoff");
                continue;
            }
            BackplaneStats::count(&backplane.stats().reconnections);
            tracing::info!(
                server = index,
                topics = subscribed.len(),
                resubscribed_and_caught_up_ms = connected_at.elapsed().as_millis() as u64,
                "listening to Redis again"
            );
        }
        backoff = BACKOFF_MIN;
        // A node silent for CLUSTER_NODE_TTL counts as gone; a connection too.
        let mut health = tokio::time::interval(backplane.node_ttl());
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.reset();
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        BackplaneStats::count(&backplane.stats().listen_errors);
                        tracing::warn!(server = index, "lost the Redis pub/sub connection; reconnecting");
                        failing = true;
                        retry = false;
                        break;
                    };
                    let Some(topic) = topic_of(message.get_channel_name()) else { continue };
                    match wire::decode(&Bytes::copy_from_slice(message.get_payload_bytes())) {
                        Ok(batch) => hub.deliver(&topic, &batch),
                        Err(e) => tracing::warn!(error = %e, "dropped a malformed cluster message"),
                    }
                }
                Some(interest) = interests.recv() => {
                    let topic = interest.topic;
                    let want = hub.has_subscribers(&topic);
                    let result = match (want, subscribed.contains(&topic)) {
                        (true, false) => {
                            backplane.mark_history_seen(&hub, &topic).await;
                            bounded(sink.subscribe(channel(topic.as_str()))).await.map(|()| {
                                subscribed.insert(topic.clone());
                            })
                        }
                        (false, true) => bounded(sink.unsubscribe(channel(topic.as_str()))).await.map(|()| {
                            subscribed.remove(&topic);
                        }),
                        _ => Ok(()),
                    };
                    if let Some(ack) = interest.ack {
                        let _ = ack.send(result.is_ok() && subscribed.contains(&topic));
                    }
                    if let Err(error) = result {
                        BackplaneStats::count(&backplane.stats().listen_errors);
                        tracing::warn!(server = index, %error, "Redis pub/sub failed; reconnecting");
                        failing = true;
                        break;
                    }
                }
                _ = health.tick() => {
                    // A silent connection may be dead (a partition sends no reset): ask.
                    // In subscribed mode PING answers ["pong", ""], not +PONG: any answer will do.
                    if let Err(error) = bounded(sink.ping::<::redis::Value>()).await {
                        BackplaneStats::count(&backplane.stats().listen_errors);
                        tracing::warn!(server = index, %error, "Redis pub/sub connection unresponsive; reconnecting");
                        failing = true;
                        break;
                    }
                }
                _ = crate::shutdown::stopped(&mut stop) => return,
            }
        }
    }
}

/// Waits until `deadline`, refusing every acknowledgement meanwhile (so resumes fail fast and
/// retry). False if the node stops first.
pub(super) async fn wait_refusing(
    deadline: tokio::time::Instant,
    interests: &mut mpsc::UnboundedReceiver<Interest>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            Some(interest) = interests.recv() => {
                if let Some(ack) = interest.ack {
                    let _ = ack.send(false);
                }
            }
            _ = crate::shutdown::stopped(stop) => return false,
        }
    }
}

/// `wait` scaled by a factor in [0.5, 1.5), so nodes that lost Redis together do not retry in step.
pub(super) fn jitter(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    wait.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_map_back_to_topics() {
        assert_eq!(topic_of(&channel("iss-a}b")), Some(Topic::from_full_name("iss-a}b")));
        assert_eq!(topic_of("herald:{x"), None);
        assert_eq!(topic_of("other"), None);
    }
}
