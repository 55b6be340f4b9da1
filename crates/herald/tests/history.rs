//! Neurow's history scenarios (spec §7.2, §3) and Herald's fixes to its defects.

mod common;

use std::time::Duration;

use common::*;

fn publish_five(h: &Herald, topic: &str) {
    let messages: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"event":"e","payload":"message {i}","timestamp":{i}}}"#))
        .collect();
    h.publish_ok(
        "test_issuer1",
        &format!(r#"{{"topic":"{topic}","messages":[{}]}}"#, messages.join(",")),
    );
}

#[test]
fn no_history_without_last_event_id() {
    let h = Herald::start();
    publish_five(&h, "test_topic");
    let mut s = h.subscribe(&sub_token("test_issuer1", "test_topic"), "");
    s.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_non_integer_last_event_id_is_a_400_sse_error() {
    let h = Herald::start();
    let r = request(
        h.public,
        &format!(
            "GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {}\r\nlast-event-id: foo\r\n\r\n",
            sub_token("test_issuer1", "t")
        ),
    );
    assert_eq!(r.status, 400);
    assert_neurow_sse_headers(&r);
    let body = r.text();
    assert!(body.starts_with("id:"), "{body}");
    assert!(body.ends_with("\nevent: neurow_error_400\ndata: {\"errors\":[{\"error_code\":\"invalid_last_event_id\",\"error_message\":\"Wrong value for last-event-id\"}]}\n\n"), "{body}");
}

#[test]
fn an_empty_topic_replays_nothing() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "empty"), "last-event-id: 0\r\n");
    s.expect_silence(Duration::from_millis(200));
}

#[test]
fn last_event_id_zero_replays_everything_in_order() {
    let h = Herald::start();
    publish_five(&h, "full");
    let mut s = h.subscribe(&sub_token("test_issuer1", "full"), "last-event-id: 0\r\n");
    for i in 1..=5 {
        assert_eq!(s.next_event(), event(i, "e", &format!("message {i}")));
    }
    s.expect_silence(Duration::from_millis(200));
}

#[test]
fn only_newer_messages_are_replayed_then_live_ones_follow() {
    let h = Herald::start();
    publish_five(&h, "newer");
    let mut s = h.subscribe(&sub_token("test_issuer1", "newer"), "last-event-id: 2\r\n");
    for i in 3..=5 {
        assert_eq!(id_of(&s.next_event()), i);
    }
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"newer","message":{"event":"e","payload":"live","timestamp":6}}"#,
    );
    assert_eq!(s.next_event(), event(6, "e", "live"));
}

#[test]
fn the_history_endpoint_returns_the_full_history() {
    let h = Herald::start();
    publish_five(&h, "test_topic");
    let r = h.get_internal("/history/test_issuer1-test_topic");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let expected: Vec<_> = (1..=5)
        .map(|i| serde_json::json!({"timestamp": i, "event": "e", "payload": format!("message {i}")}))
        .collect();
    assert_eq!(r.json(), serde_json::Value::Array(expected));
}

#[test]
fn messages_expire_between_d_and_2d() {
    // D = 1 s: the first chunk is 2·D old when checked and must be gone; the second is D old and
    // must still be there (Neurow's retention scenario, scaled down).
    let h = Herald::start_with(&[("HISTORY_MIN_DURATION", "1")]);
    h.publish_ok("test_issuer1", r#"{"topic":"exp","messages":[{"event":"e","payload":"old1","timestamp":1},{"event":"e","payload":"old2","timestamp":2}]}"#);
    std::thread::sleep(Duration::from_millis(1000));
    h.publish_ok("test_issuer1", r#"{"topic":"exp","messages":[{"event":"e","payload":"new1","timestamp":3},{"event":"e","payload":"new2","timestamp":4}]}"#);
    std::thread::sleep(Duration::from_millis(1000));
    let payloads: Vec<_> = h
        .get_internal("/history/test_issuer1-exp")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .collect();
    assert_eq!(payloads, ["new1", "new2"]);
    let mut s = h.subscribe(&sub_token("test_issuer1", "exp"), "last-event-id: 0\r\n");
    assert_eq!(id_of(&s.next_event()), 3);
    assert_eq!(id_of(&s.next_event()), 4);
    s.expect_silence(Duration::from_millis(100));
}

#[test]
fn resuming_from_the_middle_of_a_batch_loses_nothing() {
    // Neurow gave every message of a batch the same id; a client that dropped after the first one
    // and resumed with that id lost the rest.
    let h = Herald::start();
    let token = sub_token("test_issuer1", "batch");
    let mut s = h.subscribe(&token, "");
    h.publish_ok("test_issuer1", r#"{"topic":"batch","messages":[{"event":"e","payload":"1"},{"event":"e","payload":"2"},{"event":"e","payload":"3"}]}"#);
    let first = id_of(&s.next_event());
    drop(s);
    let mut resumed = h.subscribe(&token, &format!("last-event-id: {first}\r\n"));
    assert!(resumed.next_event().ends_with("data: 2\n\n"));
    assert!(resumed.next_event().ends_with("data: 3\n\n"));
}

#[test]
fn equal_ids_replay_in_publish_order() {
    // Neurow's unstable sort replayed equal timestamps reversed.
    let h = Herald::start();
    h.publish_ok("test_issuer1", r#"{"topic":"eq","messages":[{"event":"e","payload":"a","timestamp":100},{"event":"e","payload":"b","timestamp":100},{"event":"e","payload":"c","timestamp":100},{"event":"e","payload":"d","timestamp":50}]}"#);
    let mut s = h.subscribe(&sub_token("test_issuer1", "eq"), "last-event-id: 0\r\n");
    let order: Vec<String> = (0..4)
        .map(|_| s.next_event().rsplit("data: ").next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(order, ["d", "a", "b", "c"]);
}

#[test]
fn a_publish_racing_a_resume_is_delivered_exactly_once() {
    // A publisher thread publishes numbered messages while subscribers resume from 0; each must
    // see every message exactly once, in order, whether it came from history or live.
    let h = std::sync::Arc::new(Herald::start());
    const N: u64 = 300;
    let publisher = {
        let h = h.clone();
        std::thread::spawn(move || {
            let token = pub_token("test_issuer1");
            for i in 1..=N {
                let r = h.publish(
                    &token,
                    &format!(r#"{{"topic":"race","message":{{"event":"e","payload":"{i}"}}}}"#),
                );
                assert_eq!(r.status, 200);
            }
        })
    };
    let mut subs = Vec::new();
    while subs.len() < 20 {
        subs.push(h.subscribe(&sub_token("test_issuer1", "race"), "last-event-id: 0\r\n"));
        std::thread::sleep(Duration::from_millis(5));
    }
    publisher.join().unwrap();
    for mut s in subs {
        let mut seen = Vec::new();
        while seen.len() < N as usize {
            let e = s.next_message();
            seen.push(e.rsplit("data: ").next().unwrap().trim().parse::<u64>().unwrap());
        }
        assert_eq!(seen, (1..=N).collect::<Vec<_>>());
        s.expect_silence(Duration::from_millis(50));
    }
}
