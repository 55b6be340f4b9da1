//! Neurow's message-brokering scenarios (spec §7.2) on one node, plus Herald's framing fix.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn subscribers_only_receive_their_topic_with_neurows_headers() {
    let h = Herald::start();
    let mut sse = h.subscribe(&sub_token("test_issuer1", "test_topic"), "");
    let r = &sse.response;
    assert_eq!(r.status, 200);
    assert_neurow_sse_headers(r);
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.header("x-sse-timeout").as_deref(), Some("900000"));
    assert_eq!(r.header("x-sse-keepalive").as_deref(), Some("600000"));

    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"other_topic","message":{"event":"e","payload":"not for you","timestamp":1}}"#,
    );
    h.publish_ok(
        "test_issuer2",
        r#"{"topic":"test_topic","message":{"event":"e","payload":"other issuer","timestamp":2}}"#,
    );
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"test_topic","message":{"event":"e","payload":"for you","timestamp":3}}"#,
    );
    assert_eq!(sse.next_event(), event(3, "e", "for you"));
}

#[test]
fn messages_are_delivered_to_all_subscribers_of_a_topic() {
    let h = Herald::start();
    let mut subs: Vec<_> = (0..9)
        .map(|_| h.subscribe(&sub_token("test_issuer1", "all"), ""))
        .collect();
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"all","message":{"event":"e","payload":"hi","timestamp":7}}"#,
    );
    for s in &mut subs {
        assert_eq!(s.next_event(), event(7, "e", "hi"));
    }
}

#[test]
fn one_call_delivers_to_several_topics() {
    let h = Herald::start();
    let mut subs: Vec<_> = ["t4011", "t4012", "t4013"]
        .iter()
        .map(|t| h.subscribe(&sub_token("test_issuer1", t), ""))
        .collect();
    let r = h.publish(
        &pub_token("test_issuer1"),
        r#"{"topics":["t4011","t4012","t4013"],"message":{"event":"e","payload":"p","timestamp":9}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["nb_published"], 3);
    for s in &mut subs {
        assert_eq!(s.next_event(), event(9, "e", "p"));
    }
}

#[test]
fn one_call_delivers_several_messages_in_order_one_chunk_each() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "multi"), "");
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"multi","messages":[{"event":"m1","payload":"one","timestamp":1},{"event":"m2","payload":"two","timestamp":2}]}"#,
    );
    assert_eq!(s.next_event(), event(1, "m1", "one"));
    assert_eq!(s.next_event(), event(2, "m2", "two"));
}

#[test]
fn several_messages_to_several_topics() {
    let h = Herald::start();
    let mut a = h.subscribe(&sub_token("test_issuer1", "a"), "");
    let mut b = h.subscribe(&sub_token("test_issuer1", "b"), "");
    let r = h.publish(
        &pub_token("test_issuer1"),
        r#"{"topics":["a","b"],"messages":[{"event":"e","payload":"1","timestamp":1},{"event":"e","payload":"2","timestamp":2}]}"#,
    );
    assert_eq!(r.json()["nb_published"], 4);
    for s in [&mut a, &mut b] {
        assert_eq!(s.next_event(), event(1, "e", "1"));
        assert_eq!(s.next_event(), event(2, "e", "2"));
    }
}

#[test]
fn get_and_post_both_subscribe_and_the_context_path_prefixes_the_route() {
    let h = Herald::start_with(&[("PUBLIC_API_CONTEXT_PATH", "/push")]);
    let token = sub_token("test_issuer1", "ctx");
    let mut get = Sse::open(h.public, "GET", "/push/v1/subscribe", &token, "");
    let mut post = Sse::open(h.public, "POST", "/push/v1/subscribe", &token, "");
    assert_eq!((get.response.status, post.response.status), (200, 200));
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"ctx","message":{"event":"e","payload":"p","timestamp":4}}"#,
    );
    assert_eq!(get.next_event(), event(4, "e", "p"));
    assert_eq!(post.next_event(), event(4, "e", "p"));
    let unprefixed = request(
        h.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!(unprefixed.status, 404);
}

#[test]
fn payload_line_breaks_are_framed_as_data_lines() {
    // Neurow wrote payloads raw, so a newline broke the event apart.
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "lines"), "");
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"lines","message":{"event":"e","payload":"a\nb\r\nc","timestamp":1}}"#,
    );
    assert_eq!(s.next_event(), "id: 1\nevent: e\ndata: a\ndata: b\ndata: c\n\n");
}

#[test]
fn server_ids_are_unique_within_a_batch_and_increase() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "ids"), "");
    h.publish_ok("test_issuer1", r#"{"topic":"ids","messages":[{"event":"e","payload":"1"},{"event":"e","payload":"2"},{"event":"e","payload":"3"}]}"#);
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"ids","message":{"event":"e","payload":"4"}}"#,
    );
    let ids: Vec<u64> = (0..4).map(|_| id_of(&s.next_event())).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let now_ms = now_s() as u64 * 1000;
    assert!(
        ids[0].abs_diff(now_ms) < 60_000,
        "server ids read as milliseconds: {ids:?}"
    );
}

#[test]
fn a_slow_subscriber_is_ended_with_reconnect_and_resumes_from_history() {
    let h = Herald::start_with(&[("SUBSCRIPTION_OUTBOX_CAPACITY", "4")]);
    let token = sub_token("test_issuer1", "slow");
    let mut slow = h.subscribe(&token, "");
    slow.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut fast = h.subscribe(&token, "");
    // The slow client does not read: large messages fill its socket, then its outbox.
    let payload = "x".repeat(256 * 1024);
    for i in 0..60 {
        h.publish_ok(
            "test_issuer1",
            &format!(
                r#"{{"topic":"slow","message":{{"event":"e","payload":"{payload}","timestamp":{}}}}}"#,
                i + 1
            ),
        );
        assert_eq!(
            id_of(&fast.next_event()),
            i + 1,
            "a slow subscriber never delays others"
        );
    }
    eventually("the overflow to be counted", || {
        metric(&h, "herald_outbox_overflows_total") >= 1.0
    });
    // Now the slow client reads: what was queued, then `reconnect` or a cut connection, never more.
    let mut last_id = 0;
    loop {
        match slow.next_within(DEADLINE) {
            Next::Chunk(e) if e == "event: reconnect\n\n" => {
                assert_eq!(slow.next_within(DEADLINE), Next::End);
                break;
            }
            Next::Chunk(e) => {
                let id = id_of(&e);
                assert_eq!(id, last_id + 1, "in order with no gap");
                last_id = id;
            }
            Next::End => break,
            Next::Nothing => panic!("the slow stream was neither ended nor cut"),
        }
    }
    assert!(
        last_id < 60,
        "the slow client got everything ({last_id}), so it was not slow"
    );
    // Resuming from the last id it saw loses nothing.
    let mut resumed = h.subscribe(&token, &format!("last-event-id: {last_id}\r\n"));
    for id in last_id + 1..=60 {
        assert_eq!(id_of(&resumed.next_event()), id);
    }
}

#[test]
fn http_1_0_clients_get_raw_events_and_a_closed_connection() {
    use std::io::{Read, Write};
    // HTTP/1.0 has no chunked encoding: events are written as they are and the body ends when the
    // connection closes.
    let h = Herald::start_with(&[("SSE_TIMEOUT", "300")]);
    let mut s = std::net::TcpStream::connect(h.public).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET /v1/subscribe HTTP/1.0\r\nauthorization: Bearer {}\r\nlast-event-id: 0\r\n\r\n",
        sub_token("test_issuer1", "old")
    )
    .unwrap();
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"old","message":{"event":"e","payload":"p","timestamp":1}}"#,
    );
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    assert_eq!(body, format!("{}event: timeout\n\n", event(1, "e", "p")));
}
