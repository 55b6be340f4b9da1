//! The Redis backplane: connections to the shared Redis servers and the membership heartbeat.
//!
//! One command connection per server ([`ConnectionManager`], multiplexed and reconnecting by
//! itself). Connections are made lazily, so a node starts, and keeps serving its local
//! subscribers, while Redis is unreachable; each command is bounded by [`COMMAND_TIMEOUT`].

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use tokio::sync::watch;

use super::membership::{HEARTBEAT_SCRIPT, LIVE_SCRIPT, NODES_KEY};
use super::{BackplaneError, COMMAND_TIMEOUT};
use crate::config::ClusterConfig;

static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT_SCRIPT));
static LIVE: LazyLock<Script> = LazyLock::new(|| Script::new(LIVE_SCRIPT));

/// Reconnection of a command connection: a few quick tries inside one command, then the command
/// fails (the caller answers 503) and the next command tries again.
const RECONNECT_TRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The node's connections to the Redis servers of its cluster.
pub struct RedisBackplane {
    /// One per `REDIS_URL` entry, in the operator's order: a topic's server is
    /// `servers[shard_of(topic, servers.len())]`; membership lives on the first.
    servers: Vec<ConnectionManager>,
    /// This node's name in `herald:nodes`.
    node_name: String,
    /// How long a heartbeat keeps this node listed.
    node_ttl: Duration,
}

impl RedisBackplane {
    /// Prepares the connections without making them (so start-up does not depend on Redis).
    pub fn new(config: &ClusterConfig, node_name: String) -> Result<RedisBackplane, BackplaneError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(RECONNECT_TRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(COMMAND_TIMEOUT / 4)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let servers = config
            .redis_urls
            .iter()
            .map(|url| {
                let client = Client::open(url.expose())?;
                ConnectionManager::new_lazy_with_config(client, manager_config.clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisBackplane {
            servers,
            node_name,
            node_ttl: config.node_ttl,
        })
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The connection to the server that holds cluster-wide keys (membership).
    fn first(&self) -> ConnectionManager {
        self.servers[0].clone()
    }

    /// Announces this node until now + `CLUSTER_NODE_TTL`, forgetting nodes whose time passed.
    pub async fn heartbeat(&self) -> Result<(), BackplaneError> {
        let mut conn = self.first();
        let ttl_ms = self.node_ttl.as_millis() as u64;
        bounded(
            HEARTBEAT
                .key(NODES_KEY)
                .arg(&self.node_name)
                .arg(ttl_ms)
                .invoke_async::<u64>(&mut conn),
        )
        .await?;
        Ok(())
    }

    /// Removes this node from the live set (a clean stop).
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        let mut conn = self.first();
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
        let mut conn = self.first();
        bounded(LIVE.key(NODES_KEY).invoke_async::<Vec<String>>(&mut conn)).await
    }
}

/// Runs `command` for at most [`COMMAND_TIMEOUT`].
async fn bounded<T>(command: impl Future<Output = ::redis::RedisResult<T>>) -> Result<T, BackplaneError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BackplaneError::Timeout(COMMAND_TIMEOUT)),
    }
}

/// Heartbeats every third of the node TTL until `stop`, then leaves the live set. A failed
/// heartbeat is logged once per outage and retried at the next tick.
pub async fn run_heartbeat(backplane: std::sync::Arc<RedisBackplane>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(backplane.node_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => match backplane.heartbeat().await {
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
            },
            _ = crate::server::stopped(&mut stop) => break,
        }
    }
    if let Err(e) = backplane.leave().await {
        tracing::warn!(error = %e, "could not leave the cluster's node list; it expires by itself");
    }
}
