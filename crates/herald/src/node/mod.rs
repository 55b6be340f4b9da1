//! The node's core as every face uses it: publish, read a topic's history, open a connection,
//! issue and redeem tickets — one call each, whether the node works alone or in a cluster over
//! Redis. Faces never branch on the backplane; this module does, once.

mod connection;
mod revocations;
pub mod scheduler;
mod tickets;

pub use connection::{Added, Connection, Opened};
pub use revocations::{RevokeFailure, load_revocations, sync_revocations};
pub use tickets::LocalTickets;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::auth::revocation::Revocations;
use crate::backplane::{Backplane, BackplaneError, replay_order};
use crate::hub::Hub;
use crate::hub::liveness::Liveness;
use crate::model::{EventId, Message, NewMessage, Topic};

/// One node's hub, the liveness sweep of its connections, and its way to the other nodes.
pub struct Node {
    /// Topics, subscriptions and fan-out.
    pub hub: Arc<Hub>,
    /// Keep-alives, timeouts and expiries of open connections.
    pub liveness: Arc<Liveness>,
    /// Nothing (one node) or Redis (a cluster).
    pub backplane: Backplane,
    /// Deliveries a connection may have queued before it is ended as too slow.
    pub outbox_capacity: usize,
    /// Tickets waiting to be redeemed, when the node works alone (a cluster keeps them in Redis).
    pub tickets: LocalTickets,
    /// The revocations in force (a copy of the cluster's, on a cluster node).
    pub revocations: Arc<Revocations>,
}

impl Node {
    /// Accepts `messages` on `topic`, in order, and returns their ids. On a cluster node the
    /// messages are accepted once Redis has them; after an error the node cannot say whether Redis
    /// applied them (a timeout can hide a success), so the caller answers 503 and promises nothing.
    pub async fn publish(&self, topic: &Topic, messages: &[NewMessage]) -> Result<Vec<EventId>, BackplaneError> {
        match &self.backplane {
            Backplane::Local => Ok(self.hub.publish(topic, messages)),
            Backplane::Redis(redis) => {
                let ids = redis.publish(topic, messages).await?;
                self.hub
                    .stats()
                    .messages_accepted
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                Ok(ids)
            }
        }
    }

    /// Where a connection that has received nothing starts in each topic, when the backplane
    /// must be asked: on a cluster node, each topic's newest id, read before subscribing, so that
    /// subscribing from there (rather than live) misses nothing published in between. `None` on
    /// a single node, where [`Connection::open`] reads the heads atomically with subscribing.
    pub async fn heads(&self, topics: &[Topic]) -> Result<Option<Vec<u64>>, BackplaneError> {
        match &self.backplane {
            Backplane::Local => Ok(None),
            Backplane::Redis(redis) => {
                let mut heads = Vec::with_capacity(topics.len());
                for topic in topics {
                    heads.push(redis.last_id(topic).await?);
                }
                Ok(Some(heads))
            }
        }
    }

    /// The retained messages of `topic`, in replay order.
    pub async fn history(&self, topic: &Topic) -> Result<Vec<Message>, BackplaneError> {
        match &self.backplane {
            Backplane::Local => Ok(self.hub.history(topic)),
            Backplane::Redis(redis) => {
                let carried = redis.history(topic).await?.entries;
                Ok(replay_order(carried.into_iter().map(|c| c.message).collect()))
            }
        }
    }
}
