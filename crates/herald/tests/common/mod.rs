//! Black-box harness: starts the real `herald` binary on free ports and talks HTTP to it over
//! plain TCP, so tests assert the exact bytes a client sees. Every wait has a deadline.

#![allow(dead_code, unreachable_pub)]

pub mod postgres;
pub mod redis;
pub mod tls;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::auth::keys::development_auth;
use herald::auth::token::TokenRequest;

/// How long anything may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A subscriber token signed with the development keys.
pub fn sub_token(issuer: &str, topic: &str) -> String {
    sub_token_lifetime(issuer, topic, 120)
}

pub fn sub_token_lifetime(issuer: &str, topic: &str, lifetime_s: u64) -> String {
    TokenRequest {
        issuer: issuer.into(),
        subject: Some(topic.into()),
        lifetime_s,
        ..Default::default()
    }
    .sign(&development_auth().0, now_s())
    .unwrap()
}

/// A publisher token signed with the development keys.
pub fn pub_token(issuer: &str) -> String {
    TokenRequest {
        issuer: issuer.into(),
        subject: None,
        lifetime_s: 600,
        ..Default::default()
    }
    .sign(&development_auth().1, now_s())
    .unwrap()
}

/// A running `herald serve`.
pub struct Herald {
    child: Child,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// A private DATA_DIR made for this node (removed when it is dropped), unless the test gave one.
    own_data_dir: Option<std::path::PathBuf>,
}

/// A fresh directory under the system's temporary one.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("herald-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Herald {
    pub fn start() -> Herald {
        Herald::start_with(&[])
    }

    /// Starts with these environment variables on top of test defaults (ports 0, loopback).
    pub fn start_with(env: &[(&str, &str)]) -> Herald {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .env_clear()
            .env("PUBLIC_API_HOST", "127.0.0.1")
            .env("INTERNAL_API_HOST", "127.0.0.1")
            .env("PUBLIC_API_PORT", "0")
            .env("INTERNAL_API_PORT", "0")
            .env("LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Each node its own embedded store, unless the test shares one on purpose.
        let own_data_dir = (!env.iter().any(|(k, _)| *k == "DATA_DIR")).then(|| temp_dir("data"));
        if let Some(dir) = &own_data_dir {
            cmd.env("DATA_DIR", dir);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("herald starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let find = |what: &str| -> Option<SocketAddr> {
            logs.lock().unwrap().iter().find(|l| l.contains(what)).and_then(|l| {
                if l.starts_with('{') {
                    // LOG_FORMAT=ECS: the event's own fields are under `labels.`.
                    let line: serde_json::Value = serde_json::from_str(l).ok()?;
                    return line["labels.addr"].as_str()?.parse().ok();
                }
                let addr = l.split("addr=").nth(1)?.split_whitespace().next()?;
                addr.parse().ok()
            })
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let (Some(public), Some(internal)) = (find("public API listening"), find("internal API listening")) {
                return Herald {
                    child,
                    public,
                    internal,
                    logs,
                    own_data_dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("herald exited with {status}: {:?}", logs.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "herald did not start: {:?}",
                logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGKILL and reaps the process: a crash, with no clean stop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "herald did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `POST /v1/publish` with a token and a JSON body.
    pub fn publish(&self, token: &str, body: &str) -> Response {
        request(
            self.internal,
            &format!(
                "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// Publishes and asserts a 200.
    pub fn publish_ok(&self, issuer: &str, body: &str) {
        let r = self.publish(&pub_token(issuer), body);
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// A GET on the internal API.
    pub fn get_internal(&self, path: &str) -> Response {
        request(
            self.internal,
            &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
    }

    /// Opens a subscription with these extra header lines (each ending in `\r\n`).
    pub fn subscribe(&self, token: &str, extra_headers: &str) -> Sse {
        Sse::open(self.public, "GET", "/v1/subscribe", token, extra_headers)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.own_data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Asserts the headers Neurow puts on every SSE response, success or error (spec §1.3).
pub fn assert_neurow_sse_headers(r: &Response) {
    assert_eq!(r.header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(r.header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("no-cache, no-store, max-age=0, must-revalidate")
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"));
}

/// Sends raw request bytes and reads the response until the server closes or the body is complete.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    request_bytes(addr, raw.as_bytes())
}

pub fn request_bytes(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(raw).unwrap();
    read_response(&mut s)
}

/// Reads one response: head, then a content-length or chunked body, or until EOF.
pub fn read_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("response head within the deadline");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = buf[head_end..].to_vec();
    let response = Response {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().unwrap();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "body cut short");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if response.header("transfer-encoding").is_some() {
        let mut decoder = ChunkDecoder { buf: body };
        let mut out = Vec::new();
        loop {
            match decoder.next_chunk() {
                Some(Some(c)) => out.extend_from_slice(&c),
                Some(None) => break,
                None => {
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => decoder.buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }
        body = out;
    } else if status >= 200 && status != 204 && status != 304 {
        let _ = s.read_to_end(&mut body);
    } else {
        body.clear();
    }
    Response { body, ..response }
}

/// Decodes HTTP/1.1 chunked encoding.
#[derive(Default)]
pub struct ChunkDecoder {
    pub buf: Vec<u8>,
}

impl ChunkDecoder {
    /// `None`: need more bytes; `Some(None)`: the last chunk; `Some(Some(bytes))`: one chunk.
    pub fn next_chunk(&mut self) -> Option<Option<Vec<u8>>> {
        let line_end = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap();
        let size =
            usize::from_str_radix(size_text.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        let total = line_end + 2 + size + 2;
        if self.buf.len() < total {
            return None;
        }
        assert_eq!(&self.buf[total - 2..total], b"\r\n", "chunk not terminated by CRLF");
        let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
        self.buf.drain(..total);
        Some(if size == 0 { None } else { Some(data) })
    }
}

/// What reading a stream produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// One chunk, as text (one SSE event per chunk, as Neurow's clients expect).
    Chunk(String),
    /// The last chunk arrived or the server closed.
    End,
    /// Nothing within the wait.
    Nothing,
}

/// An open SSE subscription.
pub struct Sse {
    pub stream: TcpStream,
    pub response: Response,
    decoder: ChunkDecoder,
}

impl Sse {
    pub fn open(addr: SocketAddr, method: &str, path: &str, token: &str, extra_headers: &str) -> Sse {
        let body_header = if method == "POST" { "content-length: 0\r\n" } else { "" };
        Sse::open_raw(
            addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n{body_header}{extra_headers}\r\n"
            ),
        )
    }

    /// Opens a subscription with this exact request head.
    pub fn open_raw(addr: SocketAddr, head: &str) -> Sse {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        // Read only the head; chunks that arrived with it stay for `next`.
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut byte = [0u8; 1];
            let n = s.read(&mut byte).expect("a response head within the deadline");
            assert!(n > 0, "closed before a response head");
            buf.push(byte[0]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Sse {
            stream: s,
            response: Response {
                status,
                head,
                body: Vec::new(),
            },
            decoder: ChunkDecoder::default(),
        }
    }

    /// Waits up to `wait` for the next chunk.
    pub fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            match self.decoder.next_chunk() {
                Some(Some(c)) => return Next::Chunk(String::from_utf8(c).unwrap()),
                Some(None) => return Next::End,
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Nothing;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::End,
                Ok(n) => self.decoder.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Next::Nothing,
                Err(_) => return Next::End,
            }
        }
    }

    /// The next chunk, which must come within the deadline.
    pub fn next_event(&mut self) -> String {
        match self.next_within(DEADLINE) {
            Next::Chunk(c) => c,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next chunk that is not a ping.
    pub fn next_message(&mut self) -> String {
        loop {
            let e = self.next_event();
            if e != "event: ping\n\n" {
                return e;
            }
        }
    }

    /// Asserts that the stream ends (after any events already in flight are read by the caller).
    pub fn expect_end(&mut self) {
        assert_eq!(self.next_within(DEADLINE), Next::End);
    }

    /// Asserts nothing arrives within `wait` (used where the point is that nothing is sent).
    pub fn expect_silence(&mut self, wait: Duration) {
        assert_eq!(self.next_within(wait), Next::Nothing);
    }
}

/// The SSE event Herald writes for a message.
pub fn event(id: u64, name: &str, data: &str) -> String {
    format!("id: {id}\nevent: {name}\ndata: {data}\n\n")
}

/// The id of an event chunk.
pub fn id_of(event: &str) -> u64 {
    event
        .strip_prefix("id: ")
        .and_then(|r| r.split('\n').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {event:?}"))
}

/// Polls `check` until it holds or the deadline passes.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a metric's value from `/metrics` (the sample line that starts with `series`).
pub fn metric(herald: &Herald, series: &str) -> f64 {
    let text = herald.get_internal("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {series} in:\n{text}"))
}
