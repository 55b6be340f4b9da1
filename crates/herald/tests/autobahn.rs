//! RFC 6455 conformance of Herald's WebSocket layer, as the Autobahn|Testsuite checks it.
//!
//! An echo server made of Herald's own handshake and session (`herald::transport::ws`) runs in
//! this test only — the product has no echo route — and `kosoku`, a fast runner of Autobahn's
//! own case files, drives the fuzzing client against it: cases 1–7 and 9 (12 and 13 are
//! compression, which Herald does not negotiate). Every case must be OK, NON-STRICT or
//! INFORMATIONAL, and every close behaviour OK or INFORMATIONAL. `scripts/test.sh` installs
//! kosoku and says where (`KOSOKU`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use herald::hub::outbox::{CloseReason, Delivery, Outbox};
use herald::transport::ws::frame::{self, opcode};
use herald::transport::ws::handshake::{UpgradeHeaders, accept, switching_protocols};
use herald::transport::ws::session::{self, Close, Handler, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every message back, as Autobahn's cases expect.
struct Echo {
    outbox: Arc<Outbox>,
}

impl Handler for Echo {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn deliveries(&mut self, _batch: &[Delivery], _out: &mut Vec<u8>) -> u64 {
        0
    }

    async fn text(&mut self, text: String, out: &mut Vec<u8>) -> Result<(), Close> {
        out.extend_from_slice(&frame::frame(opcode::TEXT, text.as_bytes()));
        Ok(())
    }

    fn binary(&mut self, data: Vec<u8>, out: &mut Vec<u8>) -> Result<(), Close> {
        out.extend_from_slice(&frame::frame(opcode::BINARY, &data));
        Ok(())
    }

    fn keepalive(&mut self, _out: &mut Vec<u8>) {}

    fn close_for(&self, _reason: CloseReason) -> Close {
        Close::new(frame::close::GOING_AWAY, "")
    }
}

async fn serve(mut socket: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(&head) else {
        return;
    };
    let mut upgrade = UpgradeHeaders::default();
    for h in request.headers.iter() {
        upgrade.observe(h.name, h.value);
    }
    let Ok(key) = accept(&upgrade) else {
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if socket.write_all(&switching_protocols(&key)).await.is_err() {
        return;
    }
    let mut echo = Echo {
        outbox: Arc::new(Outbox::new(16, 0, u64::MAX)),
    };
    let limits = Limits {
        // Case 9 sends messages of up to 16 MiB.
        max_message: 64 << 20,
        max_commands_per_second: 0,
        silence_ms: u64::MAX,
    };
    session::run(&mut socket, &mut echo, limits).await;
}

fn kosoku() -> PathBuf {
    if let Some(path) = std::env::var_os("KOSOKU") {
        return PathBuf::from(path);
    }
    let on_path = Command::new("sh").args(["-c", "command -v kosoku"]).output().ok();
    match on_path.filter(|o| o.status.success()) {
        Some(o) => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        None => panic!(
            "kosoku (the Autobahn runner) is not installed: run scripts/test.sh, which installs it, or \
             python3 -m venv V && V/bin/pip install kosoku and set KOSOKU=V/bin/kosoku"
        ),
    }
}

#[test]
fn the_websocket_layer_passes_the_autobahn_fuzzing_client() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket));
        }
    });
    let out = tempfile_dir();
    let status = Command::new(kosoku())
        .args(["-m", "fuzzingclient", "-x", "12.*", "-x", "13.*", "-p", "2", "-o"])
        .arg(&out)
        .arg(address.to_string())
        .status()
        .expect("kosoku runs");
    assert!(status.success(), "kosoku failed: {status}");
    let index = find_index(&out).expect("kosoku wrote an index.json");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let mut failed = Vec::new();
    let mut cases = 0;
    for agent in report.as_object().unwrap().values() {
        for (case, result) in agent.as_object().unwrap() {
            cases += 1;
            let behavior = result["behavior"].as_str().unwrap_or("?");
            let close = result["behaviorClose"].as_str().unwrap_or("?");
            if !matches!(behavior, "OK" | "NON-STRICT" | "INFORMATIONAL") || !matches!(close, "OK" | "INFORMATIONAL") {
                failed.push(format!("{case}: {behavior} / close {close}"));
            }
        }
    }
    assert!(cases > 250, "only {cases} cases ran");
    assert!(
        failed.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-autobahn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn find_index(dir: &std::path::Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_index(&path) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == "index.json") {
            return Some(path);
        }
    }
    None
}
