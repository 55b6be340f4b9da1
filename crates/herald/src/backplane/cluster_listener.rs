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
//! the topics it listens to as *stale*, and repairs them: subscribe again explicitly (harmless if
//! the library already did), then read the shared history; the hub skips what it already
//! delivered.
//!
//! Unlike a single Redis, a cluster fails in parts: one master may be down while the others
//! serve. Repairs therefore run in a task of their own, so the listener keeps delivering the live
//! messages of healthy topics while the topics of an unreachable master wait out their timeouts.
//! The order rules: a stale topic's live messages are dropped (the repair's read, which starts
//! later, carries them), and a topic being repaired keeps its live messages aside until its read
//! is in, then delivers the read and those messages (the hub drops the ones the read contained),
//! so nothing is lost or delivered out of order. A topic that gets more messages aside than a
//! subscriber's outbox holds, or whose connection fails again meanwhile, is repaired once more.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{ProtocolVersion, PushInfo, PushKind, Value};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::connection::cluster_client;
use super::listener::{BACKOFF_MAX, BACKOFF_MIN, Interest, jitter, topic_of, wait_refusing};
use super::scripts::channel;
use super::slots::{SlotOwners, slot_of};
use super::wire::Carried;
use super::{BackplaneError, BackplaneStats, RedisBackplane, bounded, wire};
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::model::Topic;

/// Most live batches kept aside for a topic under repair before it is repaired again instead.
const ASIDE_MAX: usize = 1_024;

/// Repairs in flight at once.
const REPAIRS_IN_FLIGHT: usize = 64;

/// A repair's outcome for one topic: its history, read after its channel was subscribed again.
type Repaired = (Topic, Result<Vec<Carried>, BackplaneError>);

/// The listener of a node on a Redis Cluster.
pub(super) struct Listener {
    client: ClusterClient,
    /// What the cluster's nodes push: messages, subscription changes, disconnection notices.
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    backplane: Arc<RedisBackplane>,
    hub: Arc<Hub>,
    /// Topics whose channel this node asked to listen to.
    subscribed: HashSet<Topic>,
    /// Of those, the ones to repair; their live messages are dropped until then.
    stale: HashSet<Topic>,
    /// Topics being repaired, with the live batches that came meanwhile (`None`: repair again).
    repairing: HashMap<Topic, Option<Vec<Vec<Carried>>>>,
    /// Topics that lost their last subscriber while stale: unsubscribed once the cluster answers.
    to_unsubscribe: HashSet<Topic>,
    repaired_tx: mpsc::UnboundedSender<Repaired>,
    repaired: mpsc::UnboundedReceiver<Repaired>,
    /// The first error of the current repair round, for its log line.
    round_error: Option<BackplaneError>,
    /// Topics of the current round whose repair succeeded.
    round_repaired: usize,
    round_started: Instant,
    health_tx: mpsc::UnboundedSender<Result<(), BackplaneError>>,
    health: mpsc::UnboundedReceiver<Result<(), BackplaneError>>,
    /// A health check is running.
    checking: bool,
    /// When to repair the stale topics, or else check that every cluster node answers.
    next_check: Instant,
    backoff: std::time::Duration,
    /// Set by trouble, cleared once every stale topic is repaired.
    failing: bool,
    /// After a recovery: repair every topic once more at the next check (see [`Self::finish_repair`]).
    verify: bool,
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
        let (repaired_tx, repaired) = mpsc::unbounded_channel();
        let (health_tx, health) = mpsc::unbounded_channel();
        Ok(Listener {
            client,
            pushes,
            backplane,
            hub,
            subscribed: HashSet::new(),
            stale: HashSet::new(),
            repairing: HashMap::new(),
            to_unsubscribe: HashSet::new(),
            repaired_tx,
            repaired,
            round_error: None,
            round_repaired: 0,
            round_started: Instant::now(),
            health_tx,
            health,
            checking: false,
            next_check: Instant::now(),
            backoff: BACKOFF_MIN,
            failing: false,
            verify: false,
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
                self.subscribed.insert(topic);
                self.trouble();
            }
        }
        loop {
            let idle = self.repairing.is_empty() && !self.checking;
            tokio::select! {
                Some(push) = self.pushes.recv() => self.on_push(push),
                Some((topic, read)) = self.repaired.recv() => self.on_repaired(&mut conn, topic, read).await,
                Some(health) = self.health.recv() => self.on_health(health),
                Some(interest) = interests.recv() => {
                    let topic = interest.topic;
                    let result = self.settle(&mut conn, &topic).await;
                    if let Some(ack) = interest.ack {
                        let _ = ack.send(result.is_ok() && self.is_live(&topic));
                    }
                    if let Err(error) = result {
                        tracing::warn!(%error, "Redis Cluster pub/sub failed; catching up with backoff");
                        self.trouble();
                    }
                }
                _ = tokio::time::sleep_until(self.next_check), if idle => {
                    if self.stale.is_empty() && self.verify {
                        self.verify = false;
                        self.stale.extend(self.subscribed.iter().cloned());
                    }
                    if self.stale.is_empty() {
                        self.check_health(&conn);
                    } else {
                        self.start_repair(&mut conn).await;
                    }
                }
                _ = crate::shutdown::stopped(&mut stop) => return,
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
                _ = crate::shutdown::stopped(stop) => return None,
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

    /// Whether `topic`'s live messages reach its subscribers now.
    fn is_live(&self, topic: &Topic) -> bool {
        self.subscribed.contains(topic) && !self.stale.contains(topic) && !self.repairing.contains_key(topic)
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
                    // The repair's read, which starts later, carries it.
                    return;
                }
                let batch = match wire::decode(&Bytes::copy_from_slice(payload)) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "dropped a malformed cluster message");
                        return;
                    }
                };
                match self.repairing.get_mut(&topic) {
                    None => self.hub.deliver(&topic, &batch),
                    Some(slot) => match slot {
                        Some(aside) if aside.len() < ASIDE_MAX => aside.push(batch),
                        _ => *slot = None,
                    },
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
                let Some(topic) = topic.filter(|t| self.subscribed.contains(t)) else {
                    return;
                };
                match self.repairing.get_mut(&topic) {
                    Some(slot) => *slot = None,
                    None => {
                        self.stale.insert(topic);
                        self.next_check = Instant::now();
                    }
                }
            }
            _ => {}
        }
    }

    /// Marks every topic for repair (those under repair: once more) after the backoff.
    fn trouble(&mut self) {
        self.failing = true;
        BackplaneStats::count(&self.backplane.stats().listen_errors);
        for topic in &self.subscribed {
            match self.repairing.get_mut(topic) {
                Some(slot) => *slot = None,
                None => {
                    self.stale.insert(topic.clone());
                }
            }
        }
        self.retry_later();
    }

    fn retry_later(&mut self) {
        self.next_check = Instant::now() + jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Makes the subscription of `topic` match whether it has local subscribers. A topic waiting
    /// for repair is left to it (its resume is refused meanwhile and retries).
    async fn settle(&mut self, conn: &mut ClusterConnection, topic: &Topic) -> Result<(), BackplaneError> {
        let want = self.hub.has_subscribers(topic);
        if self.stale.contains(topic) || self.repairing.contains_key(topic) {
            if want {
                self.to_unsubscribe.remove(topic);
            } else {
                self.to_unsubscribe.insert(topic.clone());
            }
            return Ok(());
        }
        match (want, self.subscribed.contains(topic)) {
            (true, false) => {
                // No history mark here, unlike on a single Redis: through the cluster client it
                // doubled the listener's work per new topic, and with 10,000 topics subscribing
                // the live messages behind it waited up to 60-90 ms at p99 (bench/cluster.sh).
                bounded(conn.ssubscribe(channel(topic.as_str()))).await?;
                self.subscribed.insert(topic.clone());
            }
            (false, true) => {
                self.subscribed.remove(topic);
                bounded(conn.sunsubscribe(channel(topic.as_str()))).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts repairing every stale topic that still has subscribers, in a task of its own
    /// ([`repair_round`]).
    async fn start_repair(&mut self, conn: &mut ClusterConnection) {
        let mut topics = Vec::with_capacity(self.stale.len());
        for topic in std::mem::take(&mut self.stale) {
            if self.hub.has_subscribers(&topic) {
                self.repairing.insert(topic.clone(), Some(Vec::new()));
                topics.push(topic);
            } else {
                // A new subscriber subscribes it afresh; otherwise it is dropped once the
                // cluster answers.
                self.subscribed.remove(&topic);
                self.to_unsubscribe.insert(topic);
            }
        }
        self.round_error = None;
        self.round_repaired = 0;
        self.round_started = Instant::now();
        if topics.is_empty() {
            self.finish_repair(conn).await;
            return;
        }
        let (conn, backplane, done) = (conn.clone(), self.backplane.clone(), self.repaired_tx.clone());
        tokio::spawn(repair_round(conn, backplane, topics, done));
    }

    async fn on_repaired(
        &mut self,
        conn: &mut ClusterConnection,
        topic: Topic,
        read: Result<Vec<Carried>, BackplaneError>,
    ) {
        let Some(aside) = self.repairing.remove(&topic) else {
            return;
        };
        match (read, aside) {
            (Ok(history), Some(aside)) => {
                self.hub.deliver(&topic, &history);
                for batch in &aside {
                    self.hub.deliver(&topic, batch);
                }
                self.round_repaired += 1;
                BackplaneStats::count(&self.backplane.stats().caught_up_topics);
            }
            (Ok(_), None) => {
                self.stale.insert(topic);
            }
            (Err(error), _) => {
                self.stale.insert(topic);
                self.round_error.get_or_insert(error);
            }
        }
        if self.repairing.is_empty() {
            self.finish_repair(conn).await;
        }
    }

    async fn finish_repair(&mut self, conn: &mut ClusterConnection) {
        if !self.stale.is_empty() {
            if let Some(error) = self.round_error.take() {
                tracing::warn!(%error, stale = self.stale.len(), "cannot catch up from the Redis Cluster yet; retrying with backoff");
            }
            if self.round_repaired == 0 {
                // Not one topic on any master: the client library's connection may be stuck
                // (seen after a master restart under load, every command timing out). A new
                // one starts from the cluster's current topology; the stale topics subscribe
                // on it when they are repaired.
                if let Ok(fresh) = bounded(self.client.get_async_connection()).await {
                    *conn = fresh;
                }
            }
            self.retry_later();
            return;
        }
        // The cluster answers: drop the channels of topics that lost their subscribers meanwhile.
        for topic in std::mem::take(&mut self.to_unsubscribe) {
            if self.hub.has_subscribers(&topic) {
                continue;
            }
            self.subscribed.remove(&topic);
            if let Err(error) = bounded(conn.sunsubscribe(channel(topic.as_str()))).await {
                tracing::warn!(%error, "cannot unsubscribe from a Redis Cluster channel");
            }
        }
        if self.failing {
            self.failing = false;
            // While a master comes back, the client library replaces its connections and
            // subscribes again what it tracked; a subscription made during that churn was seen
            // to be lost without notice (2 of 10,000 topics, on healthy masters). So once things
            // are calm, every topic is repaired once more: lost subscriptions come back, and
            // what they missed comes from the history.
            self.verify = true;
            BackplaneStats::count(&self.backplane.stats().reconnections);
            tracing::info!(
                topics = self.subscribed.len(),
                resubscribed_and_caught_up_ms = self.round_started.elapsed().as_millis() as u64,
                "listening to the Redis Cluster again"
            );
        }
        self.backoff = BACKOFF_MIN;
        self.next_check = Instant::now() + self.backplane.node_ttl();
    }

    /// Asks every cluster node for a PING, in a task of its own: a silent connection may be dead
    /// (a partition sends no reset).
    fn check_health(&mut self, conn: &ClusterConnection) {
        self.checking = true;
        let (mut conn, done) = (conn.clone(), self.health_tx.clone());
        tokio::spawn(async move {
            // PING goes to every node of the cluster.
            let answered = bounded(::redis::cmd("PING").query_async::<Value>(&mut conn)).await;
            let _ = done.send(answered.map(drop));
        });
    }

    fn on_health(&mut self, answered: Result<(), BackplaneError>) {
        self.checking = false;
        match answered {
            Ok(()) => self.next_check = Instant::now() + self.backplane.node_ttl(),
            Err(error) => {
                tracing::warn!(%error, "a Redis Cluster node does not answer; catching up with backoff");
                self.trouble();
            }
        }
    }
}

/// Repairs `topics`, [`REPAIRS_IN_FLIGHT`] at a time, sending each outcome to `done`.
///
/// Node by node: topics are grouped by the master that serves their slot (`CLUSTER SLOTS`) and
/// taken from the groups in turn, and the first failure on a master gives its remaining topics
/// back untried ([`BackplaneError::Skipped`]). So while a master is down a round costs a few of
/// its topics' timeouts, not all of them, and the other masters' topics are repaired at once.
/// Without the map (the cluster does not answer), every topic is in one group: the round ends at
/// the first failure and is tried again after the backoff.
async fn repair_round(
    conn: ClusterConnection,
    backplane: Arc<RedisBackplane>,
    topics: Vec<Topic>,
    done: mpsc::UnboundedSender<Repaired>,
) {
    let owners = bounded(
        ::redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(&mut conn.clone()),
    )
    .await
    .ok()
    .and_then(|reply| SlotOwners::parse(&reply))
    .unwrap_or_default();
    let mut groups: HashMap<String, VecDeque<Topic>> = HashMap::new();
    for topic in topics {
        let node = owners.owner(slot_of(&channel(topic.as_str()))).unwrap_or("").to_owned();
        groups.entry(node).or_default().push_back(topic);
    }
    let mut turn: VecDeque<String> = groups.keys().cloned().collect();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    loop {
        while in_flight.len() < REPAIRS_IN_FLIGHT {
            let Some(node) = turn.pop_front() else { break };
            let Some(topic) = groups.get_mut(&node).and_then(VecDeque::pop_front) else {
                continue;
            };
            turn.push_back(node.clone());
            let (conn, backplane) = (conn.clone(), backplane.clone());
            in_flight.push(async move {
                let read = resubscribe_and_read(conn, backplane, &topic).await;
                (node, topic, read)
            });
        }
        let Some((node, topic, read)) = in_flight.next().await else {
            return;
        };
        let failed = read.is_err();
        if done.send((topic, read)).is_err() {
            return;
        }
        if failed {
            for untried in groups.remove(&node).unwrap_or_default() {
                let _ = done.send((untried, Err(BackplaneError::Skipped)));
            }
        }
    }
}

/// Subscribes to `topic`'s shard channel, then, once Redis confirmed it, reads its history: what
/// the read misses arrives live.
async fn resubscribe_and_read(
    mut conn: ClusterConnection,
    backplane: Arc<RedisBackplane>,
    topic: &Topic,
) -> Result<Vec<Carried>, BackplaneError> {
    bounded(conn.ssubscribe(channel(topic.as_str()))).await?;
    Ok(backplane.history(topic).await?.entries)
}
