//! Membership: which nodes are alive, for `/nodes` and `/cluster_size_above/:n`.
//!
//! Each node heartbeats into one sorted set, `herald:nodes` (member: node name, score: when its
//! heartbeat expires, in Redis time), and removes itself when it stops cleanly. A node killed
//! without stopping drops out once its score passes. Redis's clock is the only one used, so nodes
//! with skewed clocks still agree on who is alive.

/// The sorted set of live nodes (on the first Redis server when topics are sharded).
pub const NODES_KEY: &str = "herald:nodes";

/// Heartbeat: forget expired nodes, then (re)announce this one until now + ttl. Returns the
/// number of live nodes.
/// KEYS[1] = nodes set; ARGV[1] = node name; ARGV[2] = ttl in ms.
pub(super) const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

/// The names of live nodes, sorted. KEYS[1] = nodes set.
pub(super) const LIVE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
";

/// The nodes `/nodes` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// This node.
    pub current: String,
    /// The other live nodes, sorted.
    pub others: Vec<String>,
}

impl Nodes {
    /// A node on its own.
    pub fn alone(current: &str) -> Nodes {
        Nodes {
            current: current.to_owned(),
            others: Vec::new(),
        }
    }

    /// From the live names Redis listed; this node counts even if its first heartbeat has not
    /// landed yet.
    pub fn from_live(current: &str, mut live: Vec<String>) -> Nodes {
        live.retain(|n| n != current);
        live.sort();
        live.dedup();
        Nodes {
            current: current.to_owned(),
            others: live,
        }
    }

    /// Nodes in the cluster, this one included.
    pub fn total(&self) -> usize {
        1 + self.others.len()
    }

    /// Neurow's `/nodes` text; the other nodes written as Elixir inspects node atoms.
    pub fn neurow_text(&self) -> String {
        let others: Vec<String> = self.others.iter().map(|n| format!(":{n:?}")).collect();
        format!(
            "Current node: {}\r\nTotal nodes: {}\r\nNodes: [{}]\r\n",
            self.current,
            self.total(),
            others.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_answers_as_before() {
        assert_eq!(
            Nodes::alone("herald@h").neurow_text(),
            "Current node: herald@h\r\nTotal nodes: 1\r\nNodes: []\r\n"
        );
    }

    #[test]
    fn other_nodes_are_listed_sorted_without_this_one() {
        let nodes = Nodes::from_live(
            "herald@b:3000",
            vec!["herald@c:3000".into(), "herald@b:3000".into(), "herald@a:3000".into()],
        );
        assert_eq!(nodes.total(), 3);
        assert_eq!(
            nodes.neurow_text(),
            "Current node: herald@b:3000\r\nTotal nodes: 3\r\nNodes: [:\"herald@a:3000\", :\"herald@c:3000\"]\r\n"
        );
    }
}
