//! A connection: one client's set of topic subscriptions and the one outbox they all deliver
//! into, whatever the transport. Opened in one call, registered in the hub (and, in a cluster,
//! caught up from the shared history) and in the liveness sweep, and released exactly once when
//! dropped — however the transport ended.

use std::sync::Arc;

use super::Node;
use crate::auth::revocation::Identity;
use crate::backplane::Backplane;
use crate::hub::SubscriptionKey;
use crate::hub::liveness::LivenessKey;
use crate::hub::outbox::{CloseReason, Delivery, Outbox};
use crate::model::{EventId, ResumeFrom, Topic};

/// An open connection; dropping it unsubscribes every topic.
pub struct Connection {
    node: Arc<Node>,
    outbox: Arc<Outbox>,
    /// One per topic, in the order they were asked for: a [`Delivery`]'s index points here. A
    /// topic unsubscribed ([`Connection::remove`]) leaves `None` until a later
    /// [`Connection::add`] reuses its index.
    subscriptions: Box<[Option<SubscriptionKey>]>,
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

/// What [`Connection::add`] gives: as [`Opened`], for the topics added, and their indexes.
pub struct Added {
    /// The index each added topic's deliveries carry, in the order they were given.
    pub indexes: Vec<u16>,
    /// As [`Opened::replay`].
    pub replay: Vec<Delivery>,
    /// As [`Opened::heads`], one per added topic.
    pub heads: Vec<EventId>,
    /// As [`Opened::gaps`] (indexes of the connection).
    pub gaps: Vec<u16>,
}

impl Connection {
    /// Subscribes one connection to `topics`, each from its resume point. The connection's token
    /// expires at `expires_ms` and has the revocation keys `identity`. At most `u16::MAX + 1`
    /// topics (faces allow far fewer).
    pub fn open(node: &Arc<Node>, topics: Vec<(Topic, ResumeFrom)>, expires_ms: u64, identity: Identity) -> Opened {
        let now_ms = node.hub.clock().now_ms();
        let outbox = Arc::new(Outbox::new(node.outbox_capacity, now_ms, expires_ms));
        let liveness_key = node.liveness.register(outbox.clone(), identity);
        close_if_revoked(node, &outbox, &identity, now_ms);
        let mut connection = Connection {
            node: node.clone(),
            outbox,
            subscriptions: Box::new([]),
            liveness_key,
        };
        let Added {
            replay, heads, gaps, ..
        } = connection.add(topics);
        Opened {
            connection,
            replay,
            heads,
            gaps,
        }
    }

    /// Subscribes the connection to more topics (a WebSocket's `subscribe`), each from its resume
    /// point. The face keeps a topic from being subscribed twice.
    pub fn add(&mut self, topics: Vec<(Topic, ResumeFrom)>) -> Added {
        let node = self.node.clone();
        let mut subscriptions = std::mem::take(&mut self.subscriptions).into_vec();
        let mut added = Added {
            indexes: Vec::with_capacity(topics.len()),
            replay: Vec::new(),
            heads: Vec::with_capacity(topics.len()),
            gaps: Vec::new(),
        };
        for (topic, resume) in topics {
            let i = subscriptions.iter().position(Option::is_none).unwrap_or_else(|| {
                subscriptions.push(None);
                subscriptions.len() - 1
            });
            let index = u16::try_from(i).expect("faces cap the topics of a connection far below u16::MAX");
            let outbox = self.outbox.clone();
            let key = match &node.backplane {
                Backplane::Local => {
                    let subscribed = node.hub.subscribe(topic, resume, outbox, index);
                    added
                        .replay
                        .extend(subscribed.replay.into_iter().map(|message| Delivery { index, message }));
                    added.heads.push(subscribed.head);
                    if subscribed.gap {
                        added.gaps.push(index);
                    }
                    subscribed.key
                }
                Backplane::Redis(redis) => {
                    let key = node.hub.subscribe_relayed(topic, resume, outbox.clone(), index);
                    if resume == ResumeFrom::Live {
                        redis.interest_changed(key.topic());
                    } else {
                        // Beside the stream, which starts at once and writes whatever the outbox
                        // receives; while Redis is away it keeps trying (backplane/resume.rs).
                        let (hub, redis, key) = (node.hub.clone(), redis.clone(), key.clone());
                        tokio::spawn(async move { redis.catch_up(&hub, &key, &outbox, resume).await });
                    }
                    added.heads.push(EventId(0));
                    key
                }
            };
            subscriptions[i] = Some(key);
            added.indexes.push(index);
        }
        self.subscriptions = subscriptions.into_boxed_slice();
        added
    }

    /// Unsubscribes the topic of `index` (a WebSocket's `unsubscribe`). Deliveries of it already
    /// in the outbox stay there: the face drops those whose topic it no longer holds.
    pub fn remove(&mut self, index: u16) {
        if let Some(key) = self.subscriptions.get_mut(usize::from(index)).and_then(Option::take) {
            self.release(&key);
        }
    }

    fn release(&self, key: &SubscriptionKey) {
        self.node.hub.unsubscribe(key, &self.outbox);
        if let Backplane::Redis(redis) = &self.node.backplane {
            redis.interest_changed(key.topic());
        }
    }

    /// The connection authenticated again (a WebSocket's `auth`): its new token's revocation
    /// keys, and when it expires.
    pub fn reauthenticated(&self, identity: Identity, expires_ms: u64) {
        self.outbox.set_expires_ms(expires_ms);
        self.node.liveness.set_identity(self.liveness_key, identity);
        close_if_revoked(&self.node, &self.outbox, &identity, self.node.hub.clock().now_ms());
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
            .flatten()
            .all(|key| !self.node.hub.is_catching_up(key, &self.outbox))
    }

    /// How many topics it holds.
    pub fn topics(&self) -> usize {
        self.subscriptions.iter().flatten().count()
    }
}

/// Ends a connection that has just entered the liveness list if a revocation of its token
/// raced its verification: the revocation was recorded before its walk over the list, so either
/// the walk finds the connection or this finds the revocation.
fn close_if_revoked(node: &Node, outbox: &Outbox, identity: &Identity, now_ms: u64) {
    if node.revocations.refuses_identity(identity, (now_ms / 1000) as i64) {
        outbox.close(CloseReason::CredentialsRevoked);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for key in self.subscriptions.iter().flatten() {
            self.release(key);
        }
        self.node.liveness.unregister(self.liveness_key);
    }
}
