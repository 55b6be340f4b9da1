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
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer {
            child: None,
            port,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
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
