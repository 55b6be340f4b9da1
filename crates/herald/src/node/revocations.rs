//! Revoking tokens on the node and, in a cluster, on every node: the revocation is recorded
//! (in Redis first, so a failure records nothing), then the live connections of matching tokens
//! end at once. Other nodes learn of it within [`SYNC_EVERY`] and end theirs.

use std::sync::Arc;

use tokio::sync::watch;

use super::Node;
use crate::auth::revocation::{RevokeError, RevokedKey};
use crate::backplane::revocations::SYNC_EVERY;
use crate::backplane::{BackplaneError, RedisBackplane};
use crate::observe::metrics::Metrics;
use crate::shutdown::stopped;

/// Why a revocation was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RevokeFailure {
    /// The node's set is full.
    #[error(transparent)]
    Full(#[from] RevokeError),
    /// Redis did not record it: nothing was.
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
}

impl Node {
    fn now_s(&self) -> i64 {
        (self.hub.clock().now_ms() / 1000) as i64
    }

    /// Revokes `key` until `until_s` everywhere; returns how many connections it ended here.
    pub async fn revoke(&self, key: RevokedKey, until_s: i64) -> Result<usize, RevokeFailure> {
        if self.revocations.active_count(self.now_s()) >= crate::auth::revocation::MAX_ACTIVE {
            return Err(RevokeError::Full.into());
        }
        if let crate::backplane::Backplane::Redis(redis) = &self.backplane {
            let version = redis.store_revocation(&key.to_member(), until_s).await?;
            self.revocations.saw_version(version);
        }
        let hash = self.revocations.insert(key, until_s, self.now_s())?;
        Ok(self.liveness.close_revoked(&[hash]))
    }

    /// Lifts the revocation of `key` everywhere; whether it was in force.
    pub async fn lift(&self, key: &RevokedKey) -> Result<bool, BackplaneError> {
        let mut lifted = false;
        if let crate::backplane::Backplane::Redis(redis) = &self.backplane {
            let (removed, version) = redis.lift_revocation(&key.to_member()).await?;
            self.revocations.saw_version(version);
            lifted = removed;
        }
        Ok(self.revocations.remove(key, self.now_s()) || lifted)
    }
}

/// Reads the cluster's revocations once, before the node serves, so a node that restarts
/// refuses revoked tokens from its first request; returns the version read. If Redis cannot be
/// reached the node starts anyway (it keeps serving local subscribers without Redis) and
/// [`sync_revocations`] reads them as soon as it can: logged.
pub async fn load_revocations(node: &Node, redis: &RedisBackplane) -> Option<u64> {
    match sync_once(node, redis, None).await {
        Ok(Some((version, _))) => {
            tracing::info!(
                active = node.revocations.active_count(node.now_s()),
                "read the cluster's revocations"
            );
            Some(version)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's revocations at start; refusing them once Redis answers");
            None
        }
    }
}

/// One look at the cluster's revocations: `None` when the version is still `seen`; else the
/// version read and the hashes that are new here.
async fn sync_once(
    node: &Node,
    redis: &RedisBackplane,
    seen: Option<u64>,
) -> Result<Option<(u64, Vec<u64>)>, BackplaneError> {
    let version = redis.revocations_version().await?;
    if seen == Some(version) {
        return Ok(None);
    }
    let (version, members) = redis.read_revocations().await?;
    let snapshot = members
        .into_iter()
        .filter_map(|(member, until)| Some((RevokedKey::from_member(&member)?, until)))
        .collect();
    let added = node.revocations.apply_snapshot(version, snapshot, node.now_s());
    Ok(Some((version, added.unwrap_or_default())))
}

/// Keeps a cluster node's revocations equal to the cluster's until `stop`, from version `seen`:
/// reads the set whenever its version moves, and ends the live connections of what is new.
pub async fn sync_revocations(
    node: Arc<Node>,
    redis: Arc<RedisBackplane>,
    metrics: Arc<Metrics>,
    mut seen: Option<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        match sync_once(&node, &redis, seen).await {
            Ok(None) => {}
            Ok(Some((version, added))) => {
                seen = Some(version);
                let closed = node.liveness.close_revoked(&added);
                if closed > 0 {
                    metrics.connections_revoked(closed);
                    tracing::info!(closed, version, "revocations from the cluster ended connections");
                }
                if failing {
                    failing = false;
                    tracing::info!("reading the cluster's revocations again");
                }
            }
            Err(e) => {
                // The last copy keeps being enforced meanwhile.
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the cluster's revocations; enforcing the last copy");
                }
            }
        }
    }
}
