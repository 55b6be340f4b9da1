//! The backplane: what connects the hubs of several nodes into one gateway.
//!
//! A node that works alone has [`Backplane::Local`]: nothing to connect, and no code of this
//! module runs on its publish or subscribe path, so a single node costs exactly what it did
//! before clustering existed. With `REDIS_URL`, [`Backplane::Redis`] holds the connections to the
//! Redis servers that the nodes share (docs/cluster.md has the data model and the arguments for
//! ordering and exactly-once resume).
//!
//! Contract of every Redis call made here: it is bounded by [`COMMAND_TIMEOUT`], and a failure is a
//! [`BackplaneError`], never a panic; after an error the caller may assume nothing about whether
//! the command ran, except where a function says otherwise.

mod cluster_listener;
mod connection;
mod listener;
pub mod membership;
mod redis;
mod resume;
pub mod revocations;

pub use self::redis::run_heartbeat;
pub mod scripts;
pub mod shard;
pub mod slots;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use self::redis::{RedisBackplane, SharedHistory};
pub use membership::Nodes;

/// Longest wait for any one Redis command, so a publish or an admin route never hangs on an
/// unreachable Redis.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How this node reaches the others.
#[derive(Clone)]
pub enum Backplane {
    /// No other node: everything stays in this process.
    Local,
    /// Nodes share Redis.
    Redis(Arc<RedisBackplane>),
}

/// What the backplane did, for `/metrics`: written by its tasks, read when Prometheus scrapes.
#[derive(Debug, Default)]
pub struct BackplaneStats {
    /// Publishes Redis did not accept (answered 503).
    pub publish_errors: AtomicU64,
    /// Reads of the shared history that failed (resume, `/history`, catch-up).
    pub history_errors: AtomicU64,
    /// Heartbeats that failed.
    pub heartbeat_errors: AtomicU64,
    /// Pub/sub connections lost, not made, or found unresponsive.
    pub listen_errors: AtomicU64,
    /// Times a listener was back on Redis after trouble.
    pub reconnections: AtomicU64,
    /// Topics caught up from the shared history after trouble.
    pub caught_up_topics: AtomicU64,
    /// Live nodes at the last successful heartbeat (0 before the first).
    pub live_nodes: AtomicU64,
    /// Resuming subscriptions held open while the shared history cannot be read (a gauge).
    pub resumes_waiting: AtomicU64,
    /// Resuming subscriptions ended because the history stayed unreadable for
    /// `CLUSTER_RESUME_TIMEOUT`.
    pub resumes_abandoned: AtomicU64,
}

impl BackplaneStats {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a backplane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Not tried: another topic on the same Redis Cluster node failed in this round.
    #[error("not tried: another topic on the same Redis node failed")]
    Skipped,
    /// Redis answered something Herald's scripts never return (another writer, or a bug).
    #[error("unexpected answer from Redis: {0}")]
    Unexpected(&'static str),
}

/// Runs a Redis operation for at most [`COMMAND_TIMEOUT`].
async fn bounded<T>(op: impl std::future::Future<Output = ::redis::RedisResult<T>>) -> Result<T, BackplaneError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BackplaneError::Timeout(COMMAND_TIMEOUT)),
    }
}

/// Messages in replay order: by event id, equal ids in stream (publish) order, as a single node's
/// history replays them.
pub fn replay_order(mut messages: Vec<crate::model::Message>) -> Vec<crate::model::Message> {
    // Stable: equal ids keep their stream order.
    messages.sort_by_key(|m| m.id);
    messages
}

impl Backplane {
    /// The live nodes, `current` first. Never fails: when Redis cannot be asked, this node vouches
    /// only for itself (logged).
    pub async fn nodes(&self, current: &str) -> Nodes {
        match self {
            Backplane::Local => Nodes::alone(current),
            Backplane::Redis(redis) => match redis.live_nodes().await {
                Ok(names) => Nodes::from_live(current, names),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the cluster's nodes; answering with this node alone");
                    Nodes::alone(current)
                }
            },
        }
    }
}
