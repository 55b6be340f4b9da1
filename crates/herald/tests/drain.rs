//! Graceful drain for many streams (issue 5, item 6): on SIGTERM every stream gets exactly one
//! `event: reconnect`, spread over `SHUTDOWN_RECONNECT_WINDOW` so clients do not all come back
//! in the same second, and streams not told yet still receive what is published meanwhile.
//!
//! A few thousand streams are held by one single-threaded Tokio client (one task and one socket
//! per stream), which records when each event arrives.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STREAMS: usize = 2_500;
const WINDOW: Duration = Duration::from_secs(2);
const RECONNECT: &str = "event: reconnect\n\n";

/// Waits up to `within` for `check`, polling.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the client counts as it goes, for the test to wait on.
#[derive(Default)]
struct Progress {
    subscribed: AtomicUsize,
    reconnects: AtomicUsize,
}

/// Opens one stream and reads it to its end; returns each chunk with the time it arrived.
async fn hold_stream(
    addr: SocketAddr,
    request: Arc<str>,
    progress: Arc<Progress>,
) -> Result<Vec<(Instant, String)>, String> {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if socket.read_buf(&mut buf).await.map_err(|e| format!("read head: {e}"))? == 0 {
            return Err("closed before a response head".into());
        }
    };
    if !buf.starts_with(b"HTTP/1.1 200 ") {
        return Err(format!("refused: {}", String::from_utf8_lossy(&buf[..head_end])));
    }
    progress.subscribed.fetch_add(1, Ordering::SeqCst);
    let mut decoder = ChunkDecoder {
        buf: buf[head_end..].to_vec(),
    };
    let mut chunks = Vec::new();
    loop {
        match decoder.next_chunk() {
            Some(Some(chunk)) => {
                let chunk = String::from_utf8(chunk).map_err(|e| e.to_string())?;
                if chunk == RECONNECT {
                    progress.reconnects.fetch_add(1, Ordering::SeqCst);
                }
                chunks.push((Instant::now(), chunk));
            }
            Some(None) => return Ok(chunks),
            None => match socket.read_buf(&mut decoder.buf).await {
                Ok(0) | Err(_) => return Ok(chunks),
                Ok(_) => {}
            },
        }
    }
}

#[test]
fn sigterm_spreads_one_reconnect_per_stream_over_the_window() {
    let mut h = Herald::start_with(&[
        ("SHUTDOWN_RECONNECT_WINDOW", &WINDOW.as_millis().to_string()),
        ("SHUTDOWN_DRAIN_TIMEOUT", "8000"),
        // Two debug lines per stream would only slow the test.
        ("LOG_LEVEL", "info"),
    ]);
    let request: Arc<str> = format!(
        "GET /v1/subscribe HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        sub_token_lifetime("test_issuer1", "many", 120)
    )
    .into();
    let progress = Arc::new(Progress::default());
    let client = {
        let (addr, progress) = (h.public, progress.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let tasks: Vec<_> = (0..STREAMS)
                    .map(|_| {
                        let stream = hold_stream(addr, request.clone(), progress.clone());
                        tokio::spawn(tokio::time::timeout(Duration::from_secs(30), stream))
                    })
                    .collect();
                let mut outcomes = Vec::with_capacity(STREAMS);
                for task in tasks {
                    outcomes.push(match task.await {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(_)) => Err("the stream did not end within 30 s".to_owned()),
                        Err(e) => Err(format!("the client task failed: {e}")),
                    });
                }
                outcomes
            })
        })
    };
    wait_for("every stream to start", Duration::from_secs(20), || {
        progress.subscribed.load(Ordering::SeqCst) == STREAMS || client.is_finished()
    });
    assert_eq!(
        progress.subscribed.load(Ordering::SeqCst),
        STREAMS,
        "some streams were refused"
    );

    let sigterm_at = Instant::now();
    h.terminate();
    // A quarter of the way in, publish: the streams not told yet must still receive it.
    wait_for("a quarter of the reconnects", Duration::from_secs(10), || {
        progress.reconnects.load(Ordering::SeqCst) >= STREAMS / 4
    });
    let publish_started = Instant::now();
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"many","message":{"event":"late","payload":"still here","timestamp":42}}"#,
    );
    let publish_done = Instant::now();
    let outcomes = client.join().expect("the client thread");
    let status = h.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");

    let message = event(42, "late", "still here");
    let mut arrivals = Vec::with_capacity(STREAMS);
    let mut with_message = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let chunks = outcome.unwrap_or_else(|e| panic!("stream {i}: {e}"));
        let reconnects = chunks.iter().filter(|(_, c)| c == RECONNECT).count();
        assert_eq!(reconnects, 1, "stream {i}: {chunks:?}");
        let (arrived, last) = chunks.last().unwrap();
        assert_eq!(last, RECONNECT, "stream {i}: the reconnect is the last event");
        let got_message = chunks.iter().any(|(_, c)| *c == message);
        assert!(
            chunks.iter().all(|(_, c)| *c == message || c == RECONNECT),
            "stream {i}: {chunks:?}"
        );
        if *arrived < publish_started {
            assert!(!got_message, "stream {i} was told before the publish");
        }
        // Told well after the publish was accepted: it must have had the message first.
        if *arrived > publish_done + Duration::from_millis(500) {
            assert!(got_message, "stream {i} missed a message published before it was told");
        }
        with_message += usize::from(got_message);
        arrivals.push(arrived.duration_since(sigterm_at));
    }
    assert!(
        with_message >= STREAMS / 4,
        "{with_message} streams got the late message"
    );

    arrivals.sort();
    let (first, last) = (arrivals[0], arrivals[STREAMS - 1]);
    assert!(
        last - first >= WINDOW.mul_f64(0.6),
        "reconnects from {first:?} to {last:?}: not spread over the {WINDOW:?} window"
    );
    assert!(
        last < WINDOW + Duration::from_secs(2),
        "the last reconnect came at {last:?}"
    );
    // No 100 ms slice holds more than three times its fair share.
    let slice = Duration::from_millis(100);
    let fair = STREAMS as f64 * slice.as_secs_f64() / WINDOW.as_secs_f64();
    let mut per_slice = std::collections::BTreeMap::<u128, usize>::new();
    for a in &arrivals {
        *per_slice
            .entry((*a - first).as_millis() / slice.as_millis())
            .or_default() += 1;
    }
    let busiest = per_slice.values().copied().max().unwrap();
    assert!(
        busiest as f64 <= 3.0 * fair,
        "{busiest} reconnects in one 100 ms slice (fair share {fair}): {per_slice:?}"
    );
    assert!(h.logs().iter().any(|l| l.contains("stopped")));
}
