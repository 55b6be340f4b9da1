//! The cluster's revocations in Redis: one sorted set (member: the revoked key's canonical text,
//! score: until when, in seconds since the epoch) and a version that every change increments.
//!
//! Each node polls the version (one `GET` every [`SYNC_EVERY`]) and reads the whole set when it
//! moved, so a revocation made on any node reaches every other within that interval plus a round
//! trip, a node that restarts or lost Redis for a while reads the set anew, and no pub/sub message
//! can be missed. The set is bounded by the nodes' [`crate::auth::revocation::MAX_ACTIVE`], and
//! every change drops the expired members first.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;

use super::{BackplaneError, RedisBackplane, bounded};

/// How often a node looks whether the cluster's revocations changed.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);

/// The set, and its version (one hash slot, for Redis Cluster).
const SET_KEY: &str = "herald:{revocations}";
const VERSION_KEY: &str = "herald:{revocations}:version";

/// Drops the expired members, records ARGV[1] until ARGV[2] (keeping a later end already
/// recorded), and returns the new version.
const STORE: &str = r"
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]))
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not current) or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return redis.call('INCR', KEYS[2])
";

/// Removes ARGV[1]; returns whether it was there, and the new version.
const LIFT: &str = r"
local t = redis.call('TIME')
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]))
return {removed, redis.call('INCR', KEYS[2])}
";

/// The version and the members that have not ended, with their ends, read together.
const READ: &str = r"
local t = redis.call('TIME')
local version = tonumber(redis.call('GET', KEYS[2]) or '0')
return {version, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. t[1], '+inf', 'WITHSCORES')}
";

static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE));
static LIFT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIFT));
static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));

impl RedisBackplane {
    /// Records a revocation for the cluster; returns the version that includes it.
    pub async fn store_revocation(&self, member: &str, until_s: i64) -> Result<u64, BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        bounded(
            STORE_SCRIPT
                .key(SET_KEY)
                .key(VERSION_KEY)
                .arg(member)
                .arg(until_s)
                .invoke_async(&mut conn),
        )
        .await
    }

    /// Lifts a revocation for the cluster; whether it was recorded, and the version without it.
    pub async fn lift_revocation(&self, member: &str) -> Result<(bool, u64), BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        let (removed, version): (u64, u64) = bounded(
            LIFT_SCRIPT
                .key(SET_KEY)
                .key(VERSION_KEY)
                .arg(member)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok((removed == 1, version))
    }

    /// The version of the cluster's revocations.
    pub async fn revocations_version(&self) -> Result<u64, BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        let version: Option<u64> = bounded(::redis::cmd("GET").arg(VERSION_KEY).query_async(&mut conn)).await?;
        Ok(version.unwrap_or(0))
    }

    /// The version and the revocations that have not ended (member text, end in seconds).
    pub async fn read_revocations(&self) -> Result<(u64, Vec<(String, i64)>), BackplaneError> {
        let mut conn = self.servers.for_membership().await?;
        let (version, members): (u64, Vec<(String, f64)>) =
            bounded(READ_SCRIPT.key(SET_KEY).key(VERSION_KEY).invoke_async(&mut conn)).await?;
        Ok((
            version,
            members.into_iter().map(|(m, until)| (m, until as i64)).collect(),
        ))
    }
}
