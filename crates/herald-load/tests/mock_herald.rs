//! End-to-end test of the client side (subscribe, publish, parse, check) against a tiny
//! in-process imitation of Herald's wire format. The imitation broadcasts every published message
//! to every subscriber, writes each SSE event as one chunk, and splits some chunks across several
//! TCP writes so that the client sees events cut at awkward places.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_load::jwt::JwtSettings;
use herald_load::payload;
use herald_load::publish::Publisher;
use herald_load::stats::Stats;
use herald_load::subscriber::{ReadStep, SseStream, StreamEnd, SubState};
use herald_load::target::{Target, TargetKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Subscribers' outgoing queues.
type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>>;

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
transfer-encoding: chunked\r\nconnection: close\r\ncache-control: no-cache\r\n\r\n";

fn chunk(event: &str) -> Vec<u8> {
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

async fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut tmp = [0u8; 4096];
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn serve_subscriber(mut sock: TcpStream, subs: Subscribers) {
    let mut buf = Vec::new();
    if read_head(&mut sock, &mut buf).await.is_none() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    subs.lock().expect("lock").push(tx);
    if sock.write_all(SSE_HEAD).await.is_err() {
        return;
    }
    while let Some(bytes) = rx.recv().await {
        // Odd-sized pieces, flushed separately, to split chunks and events across reads.
        for piece in bytes.chunks(7) {
            if sock.write_all(piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    }
}

async fn serve_publisher(mut sock: TcpStream, subs: Subscribers) {
    let mut buf = Vec::new();
    let mut id = 1000u64;
    loop {
        let Some(head_len) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + len {
            let mut tmp = [0u8; 4096];
            let n = sock.read(&mut tmp).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let body: serde_json::Value = serde_json::from_slice(&buf[head_len..head_len + len]).expect("json body");
        buf.drain(..head_len + len);
        let msg = &body["message"];
        id += 1;
        let event = format!(
            "id: {id}\nevent: {}\ndata: {}\n\n",
            msg["event"].as_str().expect("event"),
            msg["payload"].as_str().expect("payload")
        );
        let frame = chunk(&event);
        for tx in subs.lock().expect("lock").iter() {
            let _ = tx.send(frame.clone());
        }
        let reply = r#"{"nb_published":1,"publish_timestamp":1}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Starts the imitation; returns a target pointing at it and the subscriber list.
async fn start_mock() -> (Arc<Target>, Subscribers) {
    let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let internal = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let subs: Subscribers = Arc::default();
    let target = Target {
        kind: TargetKind::Herald,
        sse_urls: vec![
            format!("http://{}/v1/subscribe", public.local_addr().expect("addr"))
                .parse()
                .expect("url"),
        ],
        publish_urls: vec![
            format!("http://{}/v1/publish", internal.local_addr().expect("addr"))
                .parse()
                .expect("url"),
        ],
        sse_jwt: JwtSettings {
            issuer: "test_issuer1".into(),
            secret: "s".into(),
            audience: "public_api".into(),
            lifetime_s: 120,
        },
        publish_jwt: JwtSettings {
            issuer: "test_issuer1".into(),
            secret: "t".into(),
            audience: "internal_api".into(),
            lifetime_s: 900,
        },
        user_agent: "test".into(),
        event: "load_test_event".into(),
        topics_per_connection: 0,
        transport: herald_load::target::Transport::Sse,
        poll_urls: Vec::new(),
        token_in: herald_load::target::TokenIn::Header,
        ws_urls: Vec::new(),
        publish_via: herald_load::target::PublishVia::Http,
    };
    let s = subs.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = public.accept().await {
            tokio::spawn(serve_subscriber(sock, s.clone()));
        }
    });
    let s = subs.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = internal.accept().await {
            tokio::spawn(serve_publisher(sock, s.clone()));
        }
    });
    (Arc::new(target), subs)
}

/// Reads until `want` unique messages arrived or the stream ends.
async fn follow(
    stream: &mut SseStream,
    state: &mut SubState,
    target: &Target,
    stats: &mut Stats,
    want: u64,
) -> Option<StreamEnd> {
    while state.checker.unique() < want {
        stream.readable().await.expect("readable");
        let now = payload::now_us();
        if let ReadStep::Ended(end) = stream.read_ready(|ev| state.on_event(ev, target, stats, now)) {
            return Some(end);
        }
    }
    None
}

#[tokio::test]
async fn subscribe_publish_and_check_every_message() {
    let (target, subs) = start_mock().await;
    let mut stream = SseStream::open(&target, "t1", 0, None, None, None)
        .await
        .expect("subscribe");
    while subs.lock().expect("lock").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let publisher = Publisher::new(target.clone(), 2, Duration::from_secs(5));
    const N: u64 = 200;
    for seq in 1..=N {
        publisher
            .publish("t1", || payload::encode(payload::now_us(), seq, "x", 40))
            .await
            .expect("publish");
    }
    let mut state = SubState::default();
    let mut stats = Stats::default();
    let end = tokio::time::timeout(
        Duration::from_secs(10),
        follow(&mut stream, &mut state, &target, &mut stats, N),
    )
    .await
    .expect("all messages within 10 s");
    assert_eq!(end, None);
    assert_eq!(stats.unique, N);
    assert_eq!(stats.delivered, N);
    assert_eq!(stats.duplicates + stats.out_of_order, 0);
    assert_eq!(state.checker.lost(N), 0);
    assert_eq!(stats.latency.count(), N);
    assert_eq!(state.last_id.as_deref(), Some("1200"));
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
}

#[tokio::test]
async fn control_event_and_duplicate_are_reported() {
    let (target, subs) = start_mock().await;
    let mut stream = SseStream::open(&target, "t1", 0, None, None, None)
        .await
        .expect("subscribe");
    while subs.lock().expect("lock").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let send = |event: &str| {
        for tx in subs.lock().expect("lock").iter() {
            tx.send(chunk(event)).expect("send");
        }
    };
    send("id: 1\nevent: load_test_event\ndata: 1 1\n\n");
    send("event: ping\n\n");
    send("id: 1\nevent: load_test_event\ndata: 1 1\n\n");
    send("event: timeout\n\n");
    let mut state = SubState::default();
    let mut stats = Stats::default();
    let end = tokio::time::timeout(
        Duration::from_secs(10),
        follow(&mut stream, &mut state, &target, &mut stats, u64::MAX),
    )
    .await
    .expect("stream ends");
    assert_eq!(end, Some(StreamEnd::Control("timeout".into())));
    assert_eq!(stats.unique, 1);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.pings, 1);
}
