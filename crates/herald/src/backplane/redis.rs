//! The Redis backplane: the scripts a node runs on the shared Redis, its listeners, and the
//! membership heartbeat.
//!
//! Commands go through [`Servers`] (independent servers or one Redis Cluster, connected lazily, so
//! a node starts, and keeps serving its local subscribers, while Redis is unreachable); each
//! command is bounded by [`COMMAND_TIMEOUT`].

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::{Client, Script, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::connection::Servers;
use super::listener::{self, Interest};
use super::membership::{HEARTBEAT_SCRIPT, LIVE_SCRIPT, NODES_KEY};
use super::scripts::{self, LAST_ID_GRACE_MS};
use super::shard::shard_of;
use super::wire::{Carried, StreamId};
use super::{BackplaneError, BackplaneStats, COMMAND_TIMEOUT, bounded, cluster_listener};
use crate::config::ClusterConfig;
use crate::history::Retention;
use crate::hub::Hub;
use crate::model::{EventId, Message, NewMessage, Topic};

static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT_SCRIPT));
static LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(LIVE_SCRIPT));
static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::PUBLISH));
static HISTORY: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::HISTORY));

/// The node's connections to the Redis servers of its cluster.
pub struct RedisBackplane {
    /// Where commands go: independent servers or one Redis Cluster.
    pub(super) servers: Servers,
    /// The settings, for the listeners' pub/sub connections.
    config: ClusterConfig,
    /// One listener per independent server, or one for a Redis Cluster: topics whose local
    /// interest may have changed.
    interests: Vec<mpsc::UnboundedSender<Interest>>,
    /// Their receivers, until [`RedisBackplane::listen`] starts the listeners.
    pending_listeners: std::sync::Mutex<Vec<mpsc::UnboundedReceiver<Interest>>>,
    /// This node's name in `herald:nodes`.
    node_name: String,
    /// Retention of the shared history (the same settings as a single node's).
    retention: Retention,
    /// What happened, for `/metrics`.
    stats: BackplaneStats,
}

impl RedisBackplane {
    /// Prepares the connections without making them (so start-up does not depend on Redis).
    pub fn new(
        config: &ClusterConfig,
        node_name: String,
        retention: Retention,
    ) -> Result<RedisBackplane, BackplaneError> {
        let servers = Servers::new(config)?;
        let listeners = if config.redis_cluster {
            1
        } else {
            config.redis_urls.len()
        };
        let (interests, receivers) = (0..listeners).map(|_| mpsc::unbounded_channel()).unzip();
        Ok(RedisBackplane {
            servers,
            config: config.clone(),
            interests,
            pending_listeners: std::sync::Mutex::new(receivers),
            node_name,
            retention,
            stats: BackplaneStats::default(),
        })
    }

    /// Starts the listeners, delivering to `hub` until `stop`. Call once.
    pub fn listen(self: &Arc<Self>, hub: &Arc<Hub>, stop: &watch::Receiver<bool>) -> Result<(), BackplaneError> {
        let receivers = std::mem::take(&mut *self.pending_listeners.lock().unwrap_or_else(|e| e.into_inner()));
        if self.config.redis_cluster {
            let receiver = receivers.into_iter().next().expect("one listener for a Redis Cluster");
            let listener = cluster_listener::Listener::new(&self.config, self.clone(), hub.clone())?;
            tokio::spawn(listener.run(receiver, stop.clone()));
            return Ok(());
        }
        let servers = self.config.redis_urls.len();
        for (index, (url, receiver)) in self.config.redis_urls.iter().zip(receivers).enumerate() {
            tokio::spawn(listener::run(
                Client::open(url.expose())?,
                index,
                servers,
                self.clone(),
                hub.clone(),
                receiver,
                stop.clone(),
            ));
        }
        Ok(())
    }

    fn interest(&self, topic: &Topic, ack: Option<oneshot::Sender<bool>>) {
        let index = shard_of(topic.as_str(), self.interests.len());
        // A send fails only once the listener stopped (shutdown): nothing to listen for then.
        let _ = self.interests[index].send(Interest {
            topic: topic.clone(),
            ack,
        });
    }

    /// Tells the listener that `topic`'s local subscribers changed; it (un)subscribes to match.
    pub fn interest_changed(&self, topic: &Topic) {
        self.interest(topic, None);
    }

    /// Waits until this node listens to `topic`'s channel (it must have a local subscriber).
    /// False if Redis cannot confirm within the command bound.
    pub async fn ensure_listening(&self, topic: &Topic) -> bool {
        let (tx, rx) = oneshot::channel();
        self.interest(topic, Some(tx));
        matches!(tokio::time::timeout(COMMAND_TIMEOUT, rx).await, Ok(Ok(true)))
    }

    /// Accepts `messages` on `topic` for the whole cluster, in one script run: assigns their ids,
    /// appends them to the shared history and publishes them on the topic's channel. Returns the
    /// ids. On an error nothing of this call may be assumed either way (a timeout can hide a
    /// success), but nothing is ever half-applied: the script is atomic.
    pub async fn publish(&self, topic: &Topic, messages: &[NewMessage]) -> Result<Vec<EventId>, BackplaneError> {
        let t = topic.as_str();
        let (cap, ttl_ms) = if self.retention.enabled() {
            (self.retention.max_messages_per_topic as u64, self.retention.ttl_ms)
        } else {
            (0, 0)
        };
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(scripts::stream_key(t))
            .key(scripts::last_id_key(t))
            .arg(scripts::channel(t))
            .arg(cap)
            .arg(ttl_ms)
            .arg(ttl_ms + LAST_ID_GRACE_MS)
            // Sharded pub/sub keeps a message on the shard that owns the topic's slot, where a
            // plain PUBLISH would cross the whole cluster bus.
            .arg(if self.config.redis_cluster {
                "SPUBLISH"
            } else {
                "PUBLISH"
            });
        for m in messages {
            let timestamp = m.timestamp.map(|ts| ts.to_string()).unwrap_or_default();
            invocation.arg(&m.event[..]).arg(&m.payload[..]).arg(timestamp);
        }
        let ids: Vec<String> = match self.run_publish(t, &invocation).await {
            Ok(ids) => ids,
            Err(e) => {
                BackplaneStats::count(&self.stats.publish_errors);
                return Err(e);
            }
        };
        ids.iter()
            .map(|id| id.parse().map(EventId))
            .collect::<Result<_, _>>()
            .map_err(|_| BackplaneError::Unexpected("the publish script returned an id that is not a u64"))
    }

    async fn run_publish(
        &self,
        topic: &str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, BackplaneError> {
        let mut conn = self.servers.for_topic(topic).await?;
        bounded(invocation.invoke_async(&mut conn)).await
    }

    /// The retained messages of `topic` from the shared history, oldest first (stream order),
    /// and through which id its messages are gone.
    pub async fn history(&self, topic: &Topic) -> Result<SharedHistory, BackplaneError> {
        let read = self.read_history(topic).await;
        if read.is_err() {
            BackplaneStats::count(&self.stats.history_errors);
        }
        read
    }

    async fn read_history(&self, topic: &Topic) -> Result<SharedHistory, BackplaneError> {
        let ttl_ms = if self.retention.enabled() {
            self.retention.ttl_ms
        } else {
            0
        };
        let mut conn = self.servers.for_topic(topic.as_str()).await?;
        let reply: Value = bounded(
            HISTORY
                .key(scripts::stream_key(topic.as_str()))
                .key(scripts::last_id_key(topic.as_str()))
                .arg(ttl_ms)
                .invoke_async(&mut conn),
        )
        .await?;
        shared_history(reply).ok_or(BackplaneError::Unexpected(
            "the history script answered in an unexpected shape",
        ))
    }

    /// The newest event id `topic` has used (0 when it has none, or it was forgotten).
    pub async fn last_id(&self, topic: &Topic) -> Result<u64, BackplaneError> {
        let mut conn = self.servers.for_topic(topic.as_str()).await?;
        let last: Option<u64> = bounded(
            ::redis::cmd("GET")
                .arg(scripts::last_id_key(topic.as_str()))
                .query_async(&mut conn),
        )
        .await?;
        Ok(last.unwrap_or(0))
    }

    /// Keeps a ticket's claims for `ttl_ms`, for any node to redeem once.
    pub async fn store_ticket(&self, ticket: &str, claims: &str, ttl_ms: u64) -> Result<(), BackplaneError> {
        let mut conn = self.servers.for_topic(ticket).await?;
        let stored: Option<String> = bounded(
            ::redis::cmd("SET")
                .arg(ticket_key(ticket))
                .arg(claims)
                .arg("PX")
                .arg(ttl_ms.max(1))
                .arg("NX")
                .query_async(&mut conn),
        )
        .await?;
        match stored {
            Some(_) => Ok(()),
            None => Err(BackplaneError::Unexpected("a new ticket's key already existed")),
        }
    }

    /// Takes a ticket's claims out (so a second redemption finds nothing).
    pub async fn take_ticket(&self, ticket: &str) -> Result<Option<String>, BackplaneError> {
        let mut conn = self.servers.for_topic(ticket).await?;
        bounded(::redis::cmd("GETDEL").arg(ticket_key(ticket)).query_async(&mut conn)).await
    }

    /// What the backplane did, for `/metrics`.
    pub fn stats(&self) -> &BackplaneStats {
        &self.stats
    }

    /// How long a resuming subscription waits for the backplane (`CLUSTER_RESUME_TIMEOUT`).
    pub(super) fn resume_timeout(&self) -> std::time::Duration {
        self.config.resume_timeout
    }

    /// Whether the shared history keeps messages (`HISTORY_MIN_DURATION` > 0).
    pub(super) fn history_enabled(&self) -> bool {
        self.retention.enabled()
    }

    /// Before this node listens to `topic`'s channel for the first time: marks the messages its
    /// history holds already as delivered, so a catch-up after a later outage only brings what was
    /// published since. Best effort: without an answer, a catch-up may bring older retained
    /// messages too (never fewer).
    pub(super) async fn mark_history_seen(&self, hub: &Hub, topic: &Topic) {
        if !self.retention.enabled() {
            return;
        }
        let read = async {
            let mut conn = self.servers.for_topic(topic.as_str()).await?;
            bounded(
                ::redis::cmd("XREVRANGE")
                    .arg(scripts::stream_key(topic.as_str()))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async::<Value>(&mut conn),
            )
            .await
        };
        match read.await.map(entries) {
            Ok(Some(last)) => {
                if let Some(last) = last.first() {
                    hub.skip_delivered_through(topic, last.stream_id);
                }
            }
            Ok(None) | Err(_) => BackplaneStats::count(&self.stats.history_errors),
        }
    }

    /// How long a node stays listed after its last heartbeat (`CLUSTER_NODE_TTL`).
    pub fn node_ttl(&self) -> Duration {
        self.config.node_ttl
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Announces this node until now + `CLUSTER_NODE_TTL`, forgetting nodes whose time passed.
    pub async fn heartbeat(&self) -> Result<(), BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        let ttl_ms = self.config.node_ttl.as_millis() as u64;
        let live: u64 = bounded(
            HEARTBEAT
                .key(NODES_KEY)
                .arg(&self.node_name)
                .arg(ttl_ms)
                .invoke_async(&mut conn),
        )
        .await?;
        self.stats.live_nodes.store(live, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Says so when an independent server is a Redis Cluster node: keys in other nodes' slots
    /// would fail with MOVED unless `REDIS_CLUSTER=true`.
    async fn warn_if_redis_cluster(&self) -> Result<(), BackplaneError> {
        for (index, server) in self.servers.sharded().iter().enumerate() {
            let mut conn = server.clone();
            let info: String = bounded(::redis::cmd("INFO").arg("cluster").query_async(&mut conn)).await?;
            if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
                tracing::error!(
                    server = index,
                    "REDIS_URL names a Redis Cluster node but REDIS_CLUSTER is false: publishes to topics \
                     in other nodes' slots will fail. Set REDIS_CLUSTER=true (docs/cluster.md)"
                );
            }
        }
        Ok(())
    }

    /// Removes this node from the live set (a clean stop).
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        bounded(
            ::redis::cmd("ZREM")
                .arg(NODES_KEY)
                .arg(&self.node_name)
                .query_async::<u64>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// The names of the live nodes.
    pub async fn live_nodes(&self) -> Result<Vec<String>, BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        bounded(LIVE.key(NODES_KEY).invoke_async::<Vec<String>>(&mut conn)).await
    }
}

/// Stream entries as XRANGE returns them: `[[id, [field, value, ...]], ...]`, with the fields the
/// publish script writes. `None` when the shape or a field is not what the script writes.
/// A topic's shared history as [`scripts::HISTORY`] reads it.
#[derive(Debug, Default)]
pub struct SharedHistory {
    /// The retained messages, oldest first (stream order).
    pub entries: Vec<Carried>,
    /// The highest id of a message no longer retained, 0 when none is gone; `None` when Redis
    /// knows nothing of the topic, so no resume from a position above 0 can be proven complete.
    pub gone_through: Option<u64>,
}

impl SharedHistory {
    /// Whether a resume from `position` may have missed a message (DESIGN.md promise 4), as
    /// the single node's `TopicState::gap_after` says it.
    pub fn gap_after(&self, position: i128) -> bool {
        match self.gone_through {
            Some(gone) => i128::from(gone) > position,
            None => position > 0,
        }
    }
}

fn shared_history(reply: Value) -> Option<SharedHistory> {
    let Value::Array(mut parts) = reply else {
        return None;
    };
    let gone = parts.pop()?;
    let entries = entries(parts.pop()?)?;
    let gone_through = match gone {
        Value::Nil => None,
        Value::BulkString(id) => Some(std::str::from_utf8(&id).ok()?.parse().ok()?),
        _ => return None,
    };
    Some(SharedHistory { entries, gone_through })
}

fn entries(reply: Value) -> Option<Vec<Carried>> {
    let Value::Array(entries) = reply else {
        return None;
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(mut parts) = entry else { return None };
            let fields = match parts.pop()? {
                Value::Array(fields) => fields,
                _ => return None,
            };
            let stream_id = match parts.pop()? {
                Value::BulkString(id) => StreamId::parse(&id)?,
                Value::SimpleString(id) => StreamId::parse(id.as_bytes())?,
                _ => return None,
            };
            let (mut id, mut at, mut event, mut payload) = (None, None, None, None);
            let mut fields = fields.into_iter();
            while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) = (fields.next(), fields.next()) {
                match &name[..] {
                    b"id" => id = std::str::from_utf8(&value).ok()?.parse::<u64>().ok(),
                    b"at" => at = std::str::from_utf8(&value).ok()?.parse::<u64>().ok(),
                    b"e" => event = Some(bytes::Bytes::from(value)),
                    b"p" => payload = Some(bytes::Bytes::from(value)),
                    _ => {}
                }
            }
            Some(Carried {
                stream_id,
                message: Message {
                    id: EventId(id?),
                    event: event?,
                    payload: payload?,
                    accepted_ms: at?,
                },
            })
        })
        .collect()
}

/// Heartbeats every third of the node TTL until `stop`, then leaves the live set. A failed
/// heartbeat is logged once per outage and retried at the next tick.
pub async fn run_heartbeat(backplane: Arc<RedisBackplane>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(backplane.node_ttl() / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut checked = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !checked {
                    checked = backplane.warn_if_redis_cluster().await.is_ok();
                }
                let beat = backplane.heartbeat().await;
                if beat.is_err() {
                    BackplaneStats::count(&backplane.stats.heartbeat_errors);
                }
                match beat {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!(node = backplane.node_name(), "cluster heartbeat restored");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "cluster heartbeat failed; this node may drop out of /nodes until Redis answers");
                    }
                    Err(_) => {}
                }
            }
            _ = crate::shutdown::stopped(&mut stop) => break,
        }
    }
    if let Err(e) = backplane.leave().await {
        tracing::warn!(error = %e, "could not leave the cluster's node list; it expires by itself");
    }
}

/// Where a ticket's claims are kept; the braces keep a Redis Cluster key on the ticket's own slot.
fn ticket_key(ticket: &str) -> String {
    format!("herald:ticket:{{{ticket}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn stream_entries_decode_and_bad_shapes_are_refused() {
        let entry = |sid: &str, id: &str| {
            Value::Array(vec![
                bulk(sid),
                Value::Array(vec![
                    bulk("id"),
                    bulk(id),
                    bulk("at"),
                    bulk("17"),
                    bulk("e"),
                    bulk("ev"),
                    bulk("p"),
                    bulk("a\nb"),
                ]),
            ])
        };
        let got = entries(Value::Array(vec![entry("17-0", "5"), entry("17-1", "3")])).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].stream_id, StreamId { ms: 17, seq: 1 });
        assert_eq!(got[1].message.id, EventId(3));
        assert_eq!(&got[0].message.payload[..], b"a\nb");
        assert_eq!(got[0].message.accepted_ms, 17);
        assert!(entries(Value::Array(vec![entry("17-0", "x")])).is_none());
        assert!(entries(Value::Array(vec![bulk("17-0")])).is_none());
        assert!(entries(Value::Nil).is_none());
        assert_eq!(entries(Value::Array(vec![])).unwrap(), []);
    }
}
