//! Clustering over Redis: `REDIS_URL` (one URL per shard, or seeds of one Redis Cluster), node
//! membership timing, and how long a resume waits out a Redis outage. Redis URLs may hold a
//! password, so they never print it.

use std::fmt;
use std::time::Duration;

use super::AuthSettings;
use super::reader::Reader;

/// A cluster of nodes over Redis (`REDIS_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// One URL per shard, in the operator's order (the order decides each topic's shard).
    pub redis_urls: Vec<RedisUrl>,
    /// How long a node stays listed after its last heartbeat.
    pub node_ttl: Duration,
    /// `REDIS_CLUSTER`: the URLs are seeds of one Redis Cluster, not independent shards.
    pub redis_cluster: bool,
    /// `CLUSTER_RESUME_TIMEOUT`: how long a resuming subscription stays open while the shared
    /// history cannot be read, before it is told to reconnect.
    pub resume_timeout: Duration,
}

/// A Redis URL that parsed; its password prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Parses one URL the way the Redis client will use it.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        use redis::IntoConnectionInfo;
        match s.into_connection_info() {
            Ok(_) => Ok(RedisUrl(s.to_owned())),
            Err(e) => Err(format!(
                "{}: expected a URL such as redis://127.0.0.1:6379 or redis://:password@host:6379/0",
                e.detail().unwrap_or("not a Redis URL")
            )),
        }
    }

    /// The URL, secrets included, for the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_userinfo(&self.0))
    }
}

/// `scheme://user:secret@host` as `scheme://***@host`.
fn mask_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}***{}", &url[..scheme_end + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Reads the `CLUSTER_*` and `REDIS_*` variables; `None` when `REDIS_URL` is unset or empty.
pub(super) fn read(r: &mut Reader<'_>) -> Option<ClusterConfig> {
    let node_ttl = Duration::from_millis(r.integer("CLUSTER_NODE_TTL", 5_000, 300, 3_600_000));
    let redis_cluster = r.boolean("REDIS_CLUSTER", false);
    let resume_timeout = Duration::from_millis(r.integer("CLUSTER_RESUME_TIMEOUT", 30_000, 1_000, 3_600_000));
    match r.raw("REDIS_URL").filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(value) => {
            let parsed: Result<Vec<RedisUrl>, String> = value.split(',').map(|u| RedisUrl::parse(u.trim())).collect();
            match parsed {
                Ok(redis_urls) => Some(ClusterConfig {
                    redis_urls,
                    node_ttl,
                    redis_cluster,
                    resume_timeout,
                }),
                Err(reason) => {
                    // The value may hold a password: never echo it.
                    r.fail("REDIS_URL", &mask_userinfo(&value), reason);
                    None
                }
            }
        }
    }
}

/// Refuses, on a Redis Cluster, an issuer whose keys Redis cannot keep in one slot. It needs the
/// cluster and the auth settings, so it runs once both are read.
pub(super) fn check_issuers_fit_one_slot(r: &mut Reader<'_>, cluster: Option<&ClusterConfig>, auth: &AuthSettings) {
    if cluster.is_some_and(|c| c.redis_cluster) {
        // A topic's keys share the hash tag `{issuer-name}`; Redis ignores an empty tag, so for
        // an issuer starting with `}` the keys would land in different slots (CROSSSLOT).
        if let Some(issuer) = auth
            .public
            .issuers()
            .iter()
            .chain(auth.internal.issuers())
            .find(|i| i.name.starts_with('}'))
        {
            r.fail(
                "REDIS_CLUSTER",
                "true",
                format!(
                    "issuer {:?} in JWT_CONFIG starts with '}}', which Redis Cluster cannot keep in one slot; rename the issuer or use REDIS_CLUSTER=false",
                    &*issuer.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn no_redis_url_means_a_single_node() {
        assert_eq!(parse(&[]).unwrap().cluster, None);
        assert_eq!(parse(&[("REDIS_URL", "")]).unwrap().cluster, None);
    }

    #[test]
    fn several_redis_urls_are_shards_in_the_given_order() {
        let c = parse(&[("REDIS_URL", "redis://10.0.0.2:6379, redis://10.0.0.1:6380/2")])
            .unwrap()
            .cluster
            .unwrap();
        let urls: Vec<_> = c.redis_urls.iter().map(RedisUrl::expose).collect();
        assert_eq!(urls, ["redis://10.0.0.2:6379", "redis://10.0.0.1:6380/2"]);
        assert_eq!(c.node_ttl, Duration::from_millis(5_000));
        assert!(!c.redis_cluster);
    }

    #[test]
    fn redis_cluster_makes_the_urls_seeds_of_one_cluster() {
        let c = parse(&[("REDIS_URL", "redis://10.0.0.2:7000"), ("REDIS_CLUSTER", "true")])
            .unwrap()
            .cluster
            .unwrap();
        assert!(c.redis_cluster);
        let err = parse(&[("REDIS_URL", "redis://h:1"), ("REDIS_CLUSTER", "maybe")]).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_CLUSTER");
    }

    #[test]
    fn an_issuer_that_redis_cluster_cannot_keep_in_one_slot_is_refused() {
        let jwt = r#"{"service_name":"s","clients":{"}odd":"a-secret-of-enough-length-0123456789"}}"#;
        let on_cluster = [
            ("REDIS_URL", "redis://h:1"),
            ("REDIS_CLUSTER", "true"),
            ("JWT_CONFIG", jwt),
        ];
        let err = parse(&on_cluster).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_CLUSTER");
        assert!(err.to_string().contains("}odd"), "{err}");
        assert!(!err.to_string().contains("a-secret"), "{err}");
        // Independent servers have no slots: the same issuer is fine there.
        assert!(parse(&[("REDIS_URL", "redis://h:1"), ("JWT_CONFIG", jwt)]).is_ok());
    }

    #[test]
    fn a_bad_redis_url_is_named_and_its_password_is_not_echoed() {
        let err = parse(&[("REDIS_URL", "redis://:hunter2@h:6379,http://x")]).unwrap_err();
        assert_eq!(err.0[0].name, "REDIS_URL");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://"), "{text}");
        let c = parse(&[("REDIS_URL", "redis://:hunter2@h:6379")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
