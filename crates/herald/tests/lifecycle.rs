//! Stream lifecycle (spec §7.2 "sse_livecycle"): timeout, keep-alive, token expiry, shutdown,
//! and request limits.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_server_times_out_a_stream_without_messages() {
    let h = Herald::start_with(&[("SSE_TIMEOUT", "500")]);
    let started = Instant::now();
    let mut s = h.subscribe(&sub_token("test_issuer1", "quiet"), "");
    assert_eq!(s.response.header("x-sse-timeout").as_deref(), Some("500"));
    assert_eq!(s.next_event(), "event: timeout\n\n");
    s.expect_end();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before SSE_TIMEOUT"
    );
}

#[test]
fn messages_hold_off_the_timeout_but_pings_do_not() {
    let h = Herald::start_with(&[("SSE_TIMEOUT", "600"), ("SSE_KEEPALIVE", "100")]);
    let mut s = h.subscribe(&sub_token("test_issuer1", "busy"), "");
    let started = Instant::now();
    for i in 1..=4 {
        std::thread::sleep(Duration::from_millis(300));
        h.publish_ok(
            "test_issuer1",
            &format!(r#"{{"topic":"busy","message":{{"event":"e","payload":"p","timestamp":{i}}}}}"#),
        );
        assert_eq!(id_of(&s.next_message()), i);
    }
    assert!(
        started.elapsed() > Duration::from_millis(1200),
        "the stream outlived SSE_TIMEOUT thanks to messages"
    );
    loop {
        match s.next_event().as_str() {
            "event: ping\n\n" => continue,
            other => {
                assert_eq!(other, "event: timeout\n\n");
                break;
            }
        }
    }
    s.expect_end();
}

#[test]
fn the_server_pings_after_keepalive_silence() {
    let h = Herald::start_with(&[("SSE_KEEPALIVE", "100")]);
    let mut s = h.subscribe(&sub_token("test_issuer1", "ping"), "");
    assert_eq!(s.response.header("x-sse-keepalive").as_deref(), Some("100"));
    assert_eq!(s.next_event(), "event: ping\n\n");
    assert_eq!(s.next_event(), "event: ping\n\n");
}

#[test]
fn an_expired_token_ends_the_stream_with_credentials_expired() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token_lifetime("test_issuer1", "short", 2), "");
    assert_eq!(s.next_event(), "event: credentials_expired\n\n");
    s.expect_end();
}

#[test]
fn sigterm_tells_every_stream_to_reconnect_and_exits() {
    let mut h = Herald::start();
    let mut subs: Vec<_> = (0..5)
        .map(|i| h.subscribe(&sub_token("test_issuer1", &format!("t{i}")), ""))
        .collect();
    h.terminate();
    for s in &mut subs {
        assert_eq!(s.next_event(), "event: reconnect\n\n");
        s.expect_end();
    }
    let status = h.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(h.logs().iter().any(|l| l.contains("SIGTERM")));
}

#[test]
fn shutdown_is_bounded_even_when_a_client_never_reads() {
    let mut h = Herald::start_with(&[("SHUTDOWN_DRAIN_TIMEOUT", "1000")]);
    let _stuck = h.subscribe(&sub_token("test_issuer1", "stuck"), "");
    let payload = "x".repeat(512 * 1024);
    for i in 1..=12 {
        h.publish_ok(
            "test_issuer1",
            &format!(r#"{{"topic":"stuck","message":{{"event":"e","payload":"{payload}","timestamp":{i}}}}}"#),
        );
    }
    let started = Instant::now();
    h.terminate();
    h.wait_exit(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn headers_up_to_8k_are_accepted_and_longer_ones_get_431() {
    let h = Herald::start();
    let token = sub_token("test_issuer1", "cookie");
    let ok = Sse::open(
        h.public,
        "GET",
        "/v1/subscribe",
        &token,
        &format!("cookie: {}\r\n", "c".repeat(8000)),
    );
    assert_eq!(ok.response.status, 200);
    let too_long = request(
        h.public,
        &format!(
            "GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\ncookie: {}\r\n\r\n",
            "c".repeat(9000)
        ),
    );
    assert_eq!(too_long.status, 431);
    assert!(too_long.text().contains("MAX_HEADER_VALUE_LENGTH"));
}

#[test]
fn malformed_requests_get_400_not_a_dropped_connection() {
    let h = Herald::start();
    let r = request_bytes(h.public, b"\x16\x03\x01 not http\r\n\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn the_connection_cap_answers_503_with_retry_after() {
    let h = Herald::start_with(&[("PUBLIC_API_MAX_CONNECTIONS", "2")]);
    let token = sub_token("test_issuer1", "cap");
    let _a = h.subscribe(&token, "");
    let _b = h.subscribe(&token, "");
    let r = request(
        h.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(r.text().contains("neurow_error_503"));
    drop(_a);
    eventually("a freed place", || {
        request(
            h.public,
            &format!("GET /nope HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
        )
        .status
            == 404
    });
}

#[test]
fn preflight_and_error_responses_keep_the_connection_alive() {
    use std::io::Write;
    let h = Herald::start();
    let mut s = std::net::TcpStream::connect(h.public).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    for _ in 0..3 {
        write!(s, "OPTIONS /v1/subscribe HTTP/1.1\r\norigin: http://localhost:3000\r\naccess-control-request-headers: authorization\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s).status, 204);
    }
    let token = sub_token("test_issuer1", "ka");
    write!(s, "GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n").unwrap();
    let head = read_response_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
}

fn read_response_head(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1);
        buf.push(b[0]);
    }
    String::from_utf8(buf).unwrap()
}
