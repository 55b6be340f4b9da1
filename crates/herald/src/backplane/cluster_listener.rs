//! The listener for a Redis Cluster: one RESP3 cluster connection whose sharded subscriptions
//! (`SSUBSCRIBE`) are exactly the channels of the topics that have subscribers on this node.
//!
//! It plays the part of `listener.rs` for `REDIS_CLUSTER=true`, with the same contract (interest
//! hints, acknowledgements once Redis confirmed, catch-up after trouble), but the client library
//! does more of the work: it keeps a connection per cluster node, routes each `SSUBSCRIBE` to the
//! node that owns the channel's slot, and after a disconnection or a slot move reconnects and
//! subscribes again by itself. What no library can do is deliver what was published while a
//! node's connection was down. So on any sign of trouble (the library's disconnection notice, a
//! failed health check, a `SUNSUBSCRIBE` the server sent because a slot moved) the listener marks
//! the topics it listens to as *stale*. A stale topic is subscribed again explicitly (harmless if
//! the library already did) and then caught up from the shared history; the hub skips what it
//! already delivered. With history on, live messages of a stale topic are not delivered before
//! its catch-up: they were published before the catch-up's read, so the read carries them, in
//! order, and delivering them first would make the hub skip the older messages the read brings.

use std::collections::HashSet;
use std::sync::Arc;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{ProtocolVersion, PushInfo, PushKind, Value};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::connection::cluster_client;
use super::listener::{BACKOFF_MAX, BACKOFF_MIN, Interest, jitter, topic_of, wait_refusing};
use super::scripts::channel;
use super::{BackplaneError, BackplaneStats, RedisBackplane, bounded, wire};
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::model::Topic;

/// The listener of a node on a Redis Cluster.
pub(super) struct Listener {
    client: ClusterClient,
    /// What the cluster's nodes push: messages, subscription changes, disconnection notices.
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    backplane: Arc<RedisBackplane>,
    hub: Arc<Hub>,
    /// Topics whose channel this node asked to listen to.
    subscribed: HashSet<Topic>,
    /// Of those, the ones to subscribe again and catch up before their live messages count.
    stale: HashSet<Topic>,
    /// When to repair the stale topics, or else check that every cluster node answers.
    next_check: Instant,
    backoff: std::time::Duration,
    /// Set by trouble, cleared once every stale topic is repaired.
    failing: bool,
}

impl Listener {
    /// Prepares the listener's client without connecting.
    pub(super) fn new(
        config: &ClusterConfig,
        backplane: Arc<RedisBackplane>,
        hub: Arc<Hub>,
    ) -> Result<Listener, BackplaneError> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let client = cluster_client(config)?
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()?;
        Ok(Listener {
            client,
            pushes,
            backplane,
            hub,
            subscribed: HashSet::new(),
            stale: HashSet::new(),
            next_check: Instant::now(),
            backoff: BACKOFF_MIN,
            failing: false,
        })
    }

    /// Listens until `stop`.
    pub(super) async fn run(
        mut self,
        mut interests: mpsc::UnboundedReceiver<Interest>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(mut conn) = self.connect(&mut interests, &mut stop).await else {
            return;
        };
        // Topics that got subscribers before the cluster answered: live from now on (resumes
        // were refused meanwhile and retry).
        for topic in self.hub.topics_with_subscribers() {
            if self.settle(&mut conn, &topic).await.is_err() {
                self.subscribed.insert(topic.clone());
                self.stale.insert(topic);
                self.trouble();
            }
        }
        loop {
            tokio::select! {
                Some(push) = self.pushes.recv() => self.on_push(push),
                Some(interest) = interests.recv() => {
                    let topic = interest.topic;
                    let result = self.settle(&mut conn, &topic).await;
                    if let Some(ack) = interest.ack {
                        let _ = ack.send(result.is_ok() && self.subscribed.contains(&topic) && !self.stale.contains(&topic));
                    }
                    if let Err(error) = result {
                        tracing::warn!(%error, "Redis Cluster pub/sub failed; catching up with backoff");
                        self.trouble();
                    }
                }
                _ = tokio::time::sleep_until(self.next_check) => {
                    if self.stale.is_empty() {
                        // A silent connection may be dead (a partition sends no reset): every
                        // node must answer (PING goes to all of them).
                        if let Err(error) = bounded(::redis::cmd("PING").query_async::<Value>(&mut conn)).await {
                            tracing::warn!(%error, "a Redis Cluster node does not answer; catching up with backoff");
                            self.trouble();
                        } else {
                            self.next_check = Instant::now() + self.backplane.node_ttl();
                        }
                    } else if self.repair(&mut conn).await {
                        if self.failing {
                            self.failing = false;
                            BackplaneStats::count(&self.backplane.stats().reconnections);
                            tracing::info!(topics = self.subscribed.len(), "listening to the Redis Cluster again");
                        }
                        self.backoff = BACKOFF_MIN;
                        self.next_check = Instant::now() + self.backplane.node_ttl();
                    } else {
                        self.retry_later();
                    }
                }
                _ = crate::server::stopped(&mut stop) => return,
            }
        }
    }

    /// Connects, refusing acknowledgements meanwhile so resumes fail fast and retry. `None` on stop.
    async fn connect(
        &mut self,
        interests: &mut mpsc::UnboundedReceiver<Interest>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<ClusterConnection> {
        let mut logged = false;
        loop {
            let connected = tokio::select! {
                c = bounded(self.client.get_async_connection()) => c,
                _ = crate::server::stopped(stop) => return None,
            };
            match connected {
                Ok(conn) => {
                    if logged {
                        tracing::info!("listening to the Redis Cluster");
                    }
                    return Some(conn);
                }
                Err(error) => {
                    BackplaneStats::count(&self.backplane.stats().listen_errors);
                    if !logged {
                        logged = true;
                        tracing::error!(%error, "cannot listen to the Redis Cluster; retrying with backoff");
                    }
                }
            }
            let deadline = Instant::now() + jitter(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            if !wait_refusing(deadline, interests, stop).await {
                return None;
            }
        }
    }

    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                let [Value::BulkString(name), Value::BulkString(payload)] = &push.data[..] else {
                    return;
                };
                let Some(topic) = std::str::from_utf8(name).ok().and_then(topic_of) else {
                    return;
                };
                if self.stale.contains(&topic) && self.backplane.history_enabled() {
                    // The catch-up's read carries it, in order.
                    return;
                }
                match wire::decode(&Bytes::copy_from_slice(payload)) {
                    Ok(batch) => self.hub.deliver(&topic, &batch),
                    Err(e) => tracing::warn!(error = %e, "dropped a malformed cluster message"),
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("lost a Redis Cluster pub/sub connection; catching up");
                self.trouble();
            }
            PushKind::SUnsubscribe => {
                // This node's own unsubscribes forget the topic first; one it still listens to
                // was dropped by the server (its slot moved).
                let topic = match push.data.first() {
                    Some(Value::BulkString(name)) => std::str::from_utf8(name).ok().and_then(topic_of),
                    _ => None,
                };
                if let Some(topic) = topic.filter(|t| self.subscribed.contains(t)) {
                    self.stale.insert(topic);
                    self.next_check = Instant::now();
                }
            }
            _ => {}
        }
    }

    /// Marks every topic stale and repairs them after the backoff.
    fn trouble(&mut self) {
        self.failing = true;
        BackplaneStats::count(&self.backplane.stats().listen_errors);
        self.stale.extend(self.subscribed.iter().cloned());
        self.retry_later();
    }

    fn retry_later(&mut self) {
        self.next_check = Instant::now() + jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Makes the subscription of `topic` match whether it has local subscribers.
    async fn settle(&mut self, conn: &mut ClusterConnection, topic: &Topic) -> Result<(), BackplaneError> {
        let want = self.hub.has_subscribers(topic);
        if want && self.stale.contains(topic) {
            return self.repair_one(conn, topic).await;
        }
        match (want, self.subscribed.contains(topic)) {
            (true, false) => {
                self.backplane.mark_history_seen(&self.hub, topic).await;
                bounded(conn.ssubscribe(channel(topic.as_str()))).await?;
                self.subscribed.insert(topic.clone());
            }
            (false, true) => {
                self.subscribed.remove(topic);
                self.stale.remove(topic);
                bounded(conn.sunsubscribe(channel(topic.as_str()))).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Subscribes `topic` again and delivers what its history holds that was not delivered.
    async fn repair_one(&mut self, conn: &mut ClusterConnection, topic: &Topic) -> Result<(), BackplaneError> {
        bounded(conn.ssubscribe(channel(topic.as_str()))).await?;
        self.subscribed.insert(topic.clone());
        let history = self.backplane.history(topic).await?;
        self.hub.deliver(topic, &history);
        self.stale.remove(topic);
        BackplaneStats::count(&self.backplane.stats().caught_up_topics);
        Ok(())
    }

    /// Repairs every stale topic; true when none is left. A failure does not stop the others: a
    /// topic on a node that answers need not wait for one on a node that does not.
    async fn repair(&mut self, conn: &mut ClusterConnection) -> bool {
        let mut first_error = None;
        for topic in self.stale.iter().cloned().collect::<Vec<_>>() {
            if !self.hub.has_subscribers(&topic) {
                if let Err(e) = self.settle(conn, &topic).await {
                    first_error.get_or_insert(e);
                }
                continue;
            }
            if let Err(e) = self.repair_one(conn, &topic).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(error) = first_error {
            tracing::warn!(%error, stale = self.stale.len(), "cannot catch up from the Redis Cluster yet; retrying with backoff");
        }
        self.stale.is_empty()
    }
}
