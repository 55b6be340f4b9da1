//! A connection: one client's set of topic subscriptions and the one outbox they all deliver
//! into, whatever the transport. Opened in one call, registered in the hub (and, in a cluster,
//! caught up from the shared history) and in the liveness sweep, and released exactly once when
//! dropped — however the transport ended.

use std::sync::Arc;

use super::Node;
use crate::backplane::Backplane;
use crate::hub::SubscriptionKey;
use crate::hub::liveness::LivenessKey;
use crate::hub::outbox::{Delivery, Outbox};
use crate::model::{EventId, ResumeFrom, Topic};

/// An open connection; dropping it unsubscribes every topic.
pub struct Connection {
    node: Arc<Node>,
    outbox: Arc<Outbox>,
    /// One per topic, in the order they were asked for: a [`Delivery`]'s index points here.
    subscriptions: Box<[SubscriptionKey]>,
    liveness_key: LivenessKey,
}

/// What opening a connection gives: the connection, what to replay before live deliveries, and
/// each topic's position at subscribe time.
pub struct Opened {
    /// The connection.
    pub connection: Connection,
    /// Retained messages after each topic's resume point, topic by topic, each in replay order.
    /// (In a cluster the replay arrives through the outbox instead, once the shared history is read.)
    pub replay: Vec<Delivery>,
    /// Each topic's newest event id when it was subscribed (0 when unknown or none): where a
    /// client that has received nothing yet resumes from.
    pub heads: Vec<EventId>,
    /// The topics (by index) whose resume point is older than their history can prove complete,
    /// on a single node. A cluster node learns it when it reads the shared history, after the
    /// connection opened: it comes through the outbox instead, as a
    /// [`crate::model::SharedMessage::gap_notice`] before the topic's replay.
    pub gaps: Vec<u16>,
}

impl Connection {
    /// Subscribes one connection to `topics`, each from its resume point. The connection's token
    /// expires at `expires_ms`. At most `u16::MAX + 1` topics (faces allow far fewer).
    pub fn open(node: &Arc<Node>, topics: Vec<(Topic, ResumeFrom)>, expires_ms: u64) -> Opened {
        let now_ms = node.hub.clock().now_ms();
        let outbox = Arc::new(Outbox::new(node.outbox_capacity, now_ms, expires_ms));
        let mut subscriptions = Vec::with_capacity(topics.len());
        let mut replay = Vec::new();
        let mut heads = Vec::with_capacity(topics.len());
        let mut gaps = Vec::new();
        for (i, (topic, resume)) in topics.into_iter().enumerate() {
            let index = u16::try_from(i).expect("faces cap the topics of a connection far below u16::MAX");
            match &node.backplane {
                Backplane::Local => {
                    let subscribed = node.hub.subscribe(topic, resume, outbox.clone(), index);
                    replay.extend(subscribed.replay.into_iter().map(|message| Delivery { index, message }));
                    heads.push(subscribed.head);
                    if subscribed.gap {
                        gaps.push(index);
                    }
                    subscriptions.push(subscribed.key);
                }
                Backplane::Redis(redis) => {
                    let key = node.hub.subscribe_relayed(topic, resume, outbox.clone(), index);
                    if resume == ResumeFrom::Live {
                        redis.interest_changed(key.topic());
                    } else {
                        // Beside the stream, which starts at once and writes whatever the outbox
                        // receives; while Redis is away it keeps trying (backplane/resume.rs).
                        let (hub, redis, key, outbox) = (node.hub.clone(), redis.clone(), key.clone(), outbox.clone());
                        tokio::spawn(async move { redis.catch_up(&hub, &key, &outbox, resume).await });
                    }
                    heads.push(EventId(0));
                    subscriptions.push(key);
                }
            }
        }
        let liveness_key = node.liveness.register(outbox.clone());
        Opened {
            connection: Connection {
                node: node.clone(),
                outbox,
                subscriptions: subscriptions.into_boxed_slice(),
                liveness_key,
            },
            replay,
            heads,
            gaps,
        }
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The node it is open on.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Whether every subscription has its replay queued (always, on a single node; on a cluster
    /// node once each topic's shared history was read).
    pub fn caught_up(&self) -> bool {
        self.subscriptions
            .iter()
            .all(|key| !self.node.hub.is_catching_up(key, &self.outbox))
    }

    /// How many topics it holds.
    pub fn topics(&self) -> usize {
        self.subscriptions.len()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for key in self.subscriptions.iter() {
            self.node.hub.unsubscribe(key, &self.outbox);
            if let Backplane::Redis(redis) = &self.node.backplane {
                redis.interest_changed(key.topic());
            }
        }
        self.node.liveness.unregister(self.liveness_key);
    }
}
