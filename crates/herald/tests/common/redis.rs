//! A private `redis-server` for cluster tests: its own free port, no persistence, stopped (and
//! restartable on the same port) by the test. `scripts/test.sh` installs `redis-server` when it is
//! missing; without it these tests fail with a message that says so.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{DEADLINE, Herald};

/// A running `redis-server` on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts one on a free port with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let free_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port = free_port();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if args.iter().any(|a| a == "--cluster-enabled") {
            // The cluster bus defaults to port + 10,000, past 65,535 for a high free port.
            args.extend(["--cluster-port".to_owned(), free_port().to_string()]);
        }
        let mut server = RedisServer {
            child: None,
            port,
            args,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): run scripts/test.sh, which installs it, or apt-get install -y redis-server")
            });
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes it (SIGSTOP): connections stay open but nothing answers, like a network partition.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`RedisServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Kills it (SIGKILL: no goodbye to clients, like a crash).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Subscribers of a channel, as `PUBSUB NUMSUB` counts them (one per listening node).
    pub fn channel_subscribers(&self, channel: &str) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let command = format!(
            "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        s.write_all(command.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        // The reply ends with the count, an integer line `:N\r\n`.
        while !reply.ends_with(b"\r\n") || !String::from_utf8_lossy(&reply).contains("\r\n:") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "redis closed the connection");
            reply.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(reply).unwrap();
        text.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `n` Herald nodes on `redis`, each with these extra variables.
pub fn start_nodes(redis_url: &str, n: usize, env: &[(&str, &str)]) -> Vec<Herald> {
    (0..n)
        .map(|_| {
            let mut vars = vec![("REDIS_URL", redis_url)];
            vars.extend_from_slice(env);
            Herald::start_with(&vars)
        })
        .collect()
}

/// Runs `redis-cli -p <port> <args>` and returns what it printed.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): run scripts/test.sh, which installs it"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A Redis Cluster of private `redis-server`s, one master per node and no replica, its slots
/// spread evenly. Each node keeps its cluster configuration in a private directory, so a node
/// restarted with [`RedisCluster::restart`] rejoins with the same slots (and no data: there is no
/// persistence).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts `n` (at least 3, Redis's minimum) nodes and waits until the cluster is `ok`.
    pub fn start(n: usize) -> RedisCluster {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let nodes: Vec<RedisServer> = (0..n)
            .map(|i| {
                let config = dir.join(format!("nodes-{i}.conf"));
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().unwrap(),
                    "--cluster-node-timeout",
                    "2000",
                    // A cluster with a master down still serves the other masters' slots.
                    "--cluster-require-full-coverage",
                    "no",
                    "--dir",
                    dir.to_str().unwrap(),
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|r| format!("127.0.0.1:{}", r.port)).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let created = redis_cli(nodes[0].port, &args);
        assert!(created.contains("All 16384 slots covered"), "{created}");
        let cluster = RedisCluster { nodes, dir };
        cluster.wait_ok();
        cluster
    }

    /// `redis://…` of the first node: a seed, from which clients discover the others.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Kills node `i` and starts it again, empty, with its slots.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_ok();
    }

    /// Waits until every node says the cluster is `ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + DEADLINE * 3;
        for node in &self.nodes {
            while !redis_cli(node.port, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the Redis Cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The index of the node that owns `key`'s slot.
    pub fn owner_of(&self, key: &str) -> usize {
        let slot = redis_cli(self.nodes[0].port, &["cluster", "keyslot", key]);
        let slot: u16 = slot.trim().parse().unwrap();
        let shards = redis_cli(self.nodes[0].port, &["cluster", "slots"]);
        // Lines: start, end, ip, port, id, … per range.
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        for w in lines.windows(4) {
            if let (Ok(start), Ok(end), Ok(port)) = (w[0].parse::<u16>(), w[1].parse::<u16>(), w[3].parse::<u16>())
                && (start..=end).contains(&slot)
            {
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no node owns slot {slot}: {shards}");
    }

    /// Moves the slot of `key`, with its keys, to node `to`, as `redis-cli --cluster reshard` does
    /// for each slot, and waits until every node agrees.
    pub fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.owner_of(key);
        assert_ne!(from, to);
        let (src, dst) = (self.nodes[from].port, self.nodes[to].port);
        let id = |port| redis_cli(port, &["cluster", "myid"]).trim().to_owned();
        let (src_id, dst_id) = (id(src), id(dst));
        let slot = redis_cli(src, &["cluster", "keyslot", key]).trim().to_owned();
        let ok = |reply: String| assert!(reply.trim() == "OK", "{reply}");
        ok(redis_cli(dst, &["cluster", "setslot", &slot, "importing", &src_id]));
        ok(redis_cli(src, &["cluster", "setslot", &slot, "migrating", &dst_id]));
        loop {
            let keys = redis_cli(src, &["cluster", "getkeysinslot", &slot, "100"]);
            let keys: Vec<&str> = keys.lines().map(str::trim).filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let dst_port = dst.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &dst_port, "", "0", "5000", "keys"];
            args.extend(keys);
            ok(redis_cli(src, &args));
        }
        for port in std::iter::once(dst)
            .chain(std::iter::once(src))
            .chain(self.nodes.iter().map(|n| n.port))
        {
            ok(redis_cli(port, &["cluster", "setslot", &slot, "node", &dst_id]));
        }
        let deadline = Instant::now() + DEADLINE;
        while self.owner_of(key) != to {
            assert!(Instant::now() < deadline, "the slot move did not settle");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_ok();
    }

    /// Subscribers of a sharded channel on its owner (`PUBSUB SHARDNUMSUB`): one per listening node.
    pub fn shard_channel_subscribers(&self, channel: &str) -> u64 {
        let owner = &self.nodes[self.owner_of(channel)];
        let reply = redis_cli(owner.port, &["pubsub", "shardnumsub", channel]);
        reply.lines().nth(1).unwrap_or("0").trim().parse().unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
