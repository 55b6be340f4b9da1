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

use super::RedisBackplane;
use super::scripts::channel;
use super::shard::shard_of;
use super::wire;
use crate::hub::Hub;
use crate::model::Topic;

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A topic whose local interest may have changed; `ack` (if any) learns whether the listener is
/// subscribed to it once that is settled.
pub(super) struct Interest {
    pub(super) topic: Topic,
    pub(super) ack: Option<oneshot::Sender<bool>>,
}

/// The topic of a channel name `herald:{T}`.
fn topic_of(channel: &str) -> Option<Topic> {
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
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            c = tokio::time::timeout(super::COMMAND_TIMEOUT, client.get_async_pubsub()) => c,
            _ = crate::server::stopped(&mut stop) => return,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                if !failing {
                    failing = true;
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::error!(server = index, %error, "cannot listen to Redis; retrying with backoff");
                }
                // Refuse acknowledgements while disconnected, so resumes fail fast and retry.
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        Some(interest) = interests.recv() => {
                            if let Some(ack) = interest.ack {
                                let _ = ack.send(false);
                            }
                        }
                        _ = crate::server::stopped(&mut stop) => return,
                    }
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<Topic> = HashSet::new();
        let wanted: Vec<Topic> = hub
            .topics_with_subscribers()
            .into_iter()
            .filter(|t| shard_of(t.as_str(), servers) == index)
            .collect();
        let mut ok = true;
        for topic in wanted {
            if sink.subscribe(channel(topic.as_str())).await.is_err() {
                ok = false;
                break;
            }
            subscribed.insert(topic);
        }
        if !ok {
            continue;
        }
        if failing {
            // Messages published while this node was not listening are in the shared history:
            // deliver them now (the hub skips those it already delivered), before any live one.
            for topic in &subscribed {
                match backplane.history(topic).await {
                    Ok(history) => hub.deliver(topic, &history),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot catch up from the shared history");
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                continue;
            }
        }
        if failing {
            tracing::info!(server = index, topics = subscribed.len(), "listening to Redis again");
        }
        backoff = BACKOFF_MIN;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!(server = index, "lost the Redis pub/sub connection; reconnecting");
                        failing = true;
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
                        (true, false) => sink.subscribe(channel(topic.as_str())).await.map(|()| {
                            subscribed.insert(topic.clone());
                        }),
                        (false, true) => sink.unsubscribe(channel(topic.as_str())).await.map(|()| {
                            subscribed.remove(&topic);
                        }),
                        _ => Ok(()),
                    };
                    if let Some(ack) = interest.ack {
                        let _ = ack.send(result.is_ok() && subscribed.contains(&topic));
                    }
                    if result.is_err() {
                        failing = true;
                        break;
                    }
                }
                _ = crate::server::stopped(&mut stop) => return,
            }
        }
    }
}

/// `wait` scaled by a factor in [0.5, 1.5), so nodes that lost Redis together do not retry in step.
fn jitter(wait: Duration) -> Duration {
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
