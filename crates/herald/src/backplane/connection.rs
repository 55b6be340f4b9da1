//! Where a topic's commands go: one of several independent servers, or a Redis Cluster.
//!
//! With independent servers (`REDIS_URL` lists them, `REDIS_CLUSTER=false`) Herald picks a topic's
//! server itself ([`shard_of`]). With a Redis Cluster the client library routes each command to
//! the node that owns the slot of its first key and follows `MOVED`/`ASK` redirections, so the rest
//! of the backplane sends the same scripts either way through one [`Connection`].
//!
//! Both kinds connect lazily: a node starts, and serves its local subscribers, while Redis is
//! unreachable, and the first command after Redis comes back connects.

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use super::shard::shard_of;
use super::{BackplaneError, COMMAND_TIMEOUT, bounded};
use crate::config::ClusterConfig;

/// Reconnection of a command connection: a few quick tries inside one command, then the command
/// fails (the caller answers 503) and the next command tries again.
const RECONNECT_TRIES: usize = 2;
const RECONNECT_MIN_DELAY: std::time::Duration = std::time::Duration::from_millis(50);
pub(super) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The command side of the backplane.
pub(super) enum Servers {
    /// Independent servers, in the operator's order; a topic's server is `shard_of(topic, len)`,
    /// membership lives on the first.
    Sharded(Vec<ConnectionManager>),
    /// One Redis Cluster, connected on first use.
    Cluster {
        client: Box<ClusterClient>,
        connection: OnceCell<ClusterConnection>,
    },
}

/// A connection that a command can be sent on, whatever the kind of deployment.
#[derive(Clone)]
pub(super) enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Servers {
    /// Prepares the command connections of `config` without making them.
    pub(super) fn new(config: &ClusterConfig) -> Result<Servers, BackplaneError> {
        if config.redis_cluster {
            return Ok(Servers::Cluster {
                client: Box::new(cluster_client(config)?.build()?),
                connection: OnceCell::new(),
            });
        }
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
        Ok(Servers::Sharded(servers))
    }

    /// The connection for the keys of `topic`.
    pub(super) async fn for_topic(&self, topic: &str) -> Result<Connection, BackplaneError> {
        match self {
            Servers::Sharded(servers) => Ok(Connection::Server(servers[shard_of(topic, servers.len())].clone())),
            Servers::Cluster { .. } => self.cluster().await,
        }
    }

    /// The connection for cluster-wide keys (membership): the first server, or the cluster.
    pub(super) async fn for_membership(&self) -> Result<Connection, BackplaneError> {
        match self {
            Servers::Sharded(servers) => Ok(Connection::Server(servers[0].clone())),
            Servers::Cluster { .. } => self.cluster().await,
        }
    }

    /// Every independent server (none for a Redis Cluster, which is one logical server).
    pub(super) fn sharded(&self) -> &[ConnectionManager] {
        match self {
            Servers::Sharded(servers) => servers,
            Servers::Cluster { .. } => &[],
        }
    }

    async fn cluster(&self) -> Result<Connection, BackplaneError> {
        let Servers::Cluster { client, connection } = self else {
            unreachable!("called on a Redis Cluster only");
        };
        // A failed attempt leaves the cell empty, so the next command tries again.
        let connection = connection
            .get_or_try_init(|| bounded(client.get_async_connection()))
            .await?;
        Ok(Connection::Cluster(connection.clone()))
    }
}

/// A Redis Cluster client for `config`'s seed URLs with Herald's timeouts.
pub(super) fn cluster_client(config: &ClusterConfig) -> Result<ClusterClientBuilder, BackplaneError> {
    let seeds = config
        .redis_urls
        .iter()
        .map(|url| url.expose().to_owned())
        .collect::<Vec<_>>();
    Ok(ClusterClientBuilder::new(seeds)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        .retries(RECONNECT_TRIES as u32))
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
