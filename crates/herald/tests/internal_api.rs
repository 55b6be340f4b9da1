//! The internal API (spec §2): publish validation, authentication and the admin routes.

mod common;

use common::*;

fn publish_raw(h: &Herald, headers: &str, body: &str) -> Response {
    request(
        h.internal,
        &format!(
            "POST /v1/publish HTTP/1.1\r\nhost: x\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn error_code(r: &Response) -> String {
    r.json()["errors"][0]["error_code"].as_str().unwrap().to_owned()
}

#[test]
fn open_routes_answer_without_a_token() {
    let h = Herald::start();
    let ping = h.get_internal("/ping");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.json()["status"], "ok");
    let nodes = h.get_internal("/nodes");
    assert_eq!(nodes.status, 200);
    assert!(
        nodes.text().starts_with("Current node: herald@") && nodes.text().contains("\r\nTotal nodes: 1\r\n"),
        "{}",
        nodes.text()
    );
    assert_eq!(h.get_internal("/cluster_size_above/1").status, 200);
    let above = h.get_internal("/cluster_size_above/2");
    assert_eq!((above.status, above.text()), (404, "Cluster size: 1\n".to_owned()));
    assert_eq!(
        h.get_internal("/cluster_size_above/abc").status,
        400,
        "Neurow crashed with a 500 here"
    );
    assert_eq!(
        h.get_internal("/history/test_issuer1-none").json(),
        serde_json::json!([])
    );
    assert_eq!(h.get_internal("/metrics").status, 200);
}

#[test]
fn other_routes_need_a_token_in_either_header() {
    let h = Herald::start();
    let r = h.get_internal("/");
    assert_eq!((r.status, error_code(&r)), (401, "invalid_authorization_header".into()));
    assert_eq!(h.get_internal("/unknown").status, 401);
    let token = pub_token("test_issuer1");
    for header in ["authorization", "x-interservice-authorization"] {
        let ok = request(
            h.internal,
            &format!("GET / HTTP/1.1\r\n{header}: Bearer {token}\r\nconnection: close\r\n\r\n"),
        );
        assert_eq!((ok.status, ok.text()), (200, "ok".into()));
        let missing = request(
            h.internal,
            &format!("GET /unknown HTTP/1.1\r\n{header}: Bearer {token}\r\nconnection: close\r\n\r\n"),
        );
        assert_eq!(missing.status, 404);
    }
    let wrong_method = request(
        h.internal,
        &format!("GET /v1/publish HTTP/1.1\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(wrong_method.status, 404, "as Neurow, not 405");
}

#[test]
fn publisher_tokens_are_checked() {
    let h = Herald::start();
    let body = r#"{"topic":"t","message":{"event":"e","payload":"p"}}"#;
    assert_eq!(publish_raw(&h, "", body).status, 401);
    let subscriber_token = sub_token("test_issuer1", "t");
    let r = publish_raw(
        &h,
        &format!("authorization: Bearer {subscriber_token}\r\ncontent-type: application/json\r\n"),
        body,
    );
    assert_eq!((r.status, error_code(&r)), (403, "invalid_authentication_token".into()));
    let ok = h.publish(&pub_token("test_issuer1"), body);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["nb_published"], 1);
    assert!(ok.json()["publish_timestamp"].as_u64().unwrap() > 1_600_000_000_000);
}

#[test]
fn every_malformed_publish_is_a_400_with_a_reason_and_stores_nothing() {
    let h = Herald::start();
    let token = pub_token("test_issuer1");
    let cases = [
        ("not json", "invalid_payload"),
        ("[]", "invalid_payload"),
        (
            r#"{"topic":"t","topics":5,"message":{"event":"e","payload":"p"}}"#,
            "invalid_payload",
        ),
        (
            r#"{"topic":"t","messages":[{"event":"e","payload":"ok"},7]}"#,
            "invalid_payload",
        ),
        (
            r#"{"topic":"t","messages":[{"event":"e","payload":"ok"},{"event":"e","payload":""}]}"#,
            "invalid_payload",
        ),
        (
            r#"{"topic":"t","message":{"event":"e","payload":{"obj":1}}}"#,
            "invalid_payload",
        ),
        (
            r#"{"topic":"t","message":{"event":"e","payload":"p","timestamp":-3}}"#,
            "invalid_payload",
        ),
    ];
    for (body, code) in cases {
        let r = h.publish(&token, body);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(error_code(&r), code);
        assert!(!r.json()["errors"][0]["error_message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        h.get_internal("/history/test_issuer1-t").json(),
        serde_json::json!([]),
        "nothing half-applied"
    );
}

#[test]
fn neurows_validation_messages() {
    let h = Herald::start();
    let token = pub_token("test_issuer1");
    let r = h.publish(&token, r#"{"message":{"event":"e","payload":"p"}}"#);
    assert_eq!(
        r.json()["errors"][0]["error_message"],
        "Attribute 'topic' or 'topics' is expected"
    );
    let r = h.publish(&token, r#"{"topic":"t","message":{"payload":"p"}}"#);
    assert_eq!(r.json()["errors"][0]["error_message"], "'event' is expected");
}

#[test]
fn wrong_content_types_are_400_and_large_bodies_413() {
    let h = Herald::start_with(&[("PUBLISH_MAX_BODY_SIZE", "1000")]);
    let token = pub_token("test_issuer1");
    let body = r#"{"topic":"t","message":{"event":"e","payload":"p"}}"#;
    let r = publish_raw(
        &h,
        &format!("authorization: Bearer {token}\r\ncontent-type: text/plain\r\n"),
        body,
    );
    assert_eq!((r.status, error_code(&r)), (400, "invalid_content_type".into()));
    let r = publish_raw(&h, &format!("authorization: Bearer {token}\r\n"), body);
    assert_eq!(r.status, 400);
    let big = format!(
        r#"{{"topic":"t","message":{{"event":"e","payload":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let r = h.publish(&token, &big);
    assert_eq!((r.status, error_code(&r)), (413, "payload_too_large".into()));
    // A chunked body announces no length: it is cut off as it streams in.
    let r = request(
        h.internal,
        &format!(
            "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             {:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
    );
    assert_eq!((r.status, error_code(&r)), (413, "payload_too_large".into()));
    assert_eq!(h.get_internal("/history/test_issuer1-t").json(), serde_json::json!([]));
    assert_eq!(
        metric(&h, r#"herald_publish_rejected_total{reason="body_too_large"}"#),
        2.0
    );
}

/// Backends publish over kept-alive connections, with chunked bodies and `Expect: 100-continue`
/// (curl sends it for bodies over 1 KiB): each is a normal publish.
#[test]
fn publishes_arrive_in_every_http_1_1_shape() {
    let h = Herald::start();
    let token = pub_token("test_issuer1");
    let mut s = std::net::TcpStream::connect(h.internal).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n"
    );
    let body = |n: u32| format!(r#"{{"topic":"shapes","message":{{"event":"e","payload":"m{n}"}}}}"#);
    use std::io::Write;
    // Two publishes on one connection, the second chunked.
    write!(s, "{head}content-length: {}\r\n\r\n{}", body(1).len(), body(1)).unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let b = body(2);
    write!(
        s,
        "{head}transfer-encoding: chunked\r\n\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        b.len()
    )
    .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    // The third waits for `100 Continue` before sending its body.
    let b = body(3);
    write!(s, "{head}expect: 100-continue\r\ncontent-length: {}\r\n\r\n", b.len()).unwrap();
    assert_eq!(read_response(&mut s).status, 100);
    write!(s, "{b}").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["nb_published"], 1);
    assert!(r.json()["publish_timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    let payloads: Vec<_> = h
        .get_internal("/history/test_issuer1-shapes")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(payloads, ["m1", "m2", "m3"]);
}

#[test]
fn metrics_count_subscriptions_and_messages() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "m"), "");
    eventually("the subscription gauge", || {
        metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#) == 1.0
    });
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"m","messages":[{"event":"e","payload":"1"},{"event":"e","payload":"2"}]}"#,
    );
    s.next_event();
    s.next_event();
    assert_eq!(metric(&h, r#"message{issuer="test_issuer1",kind="published"}"#), 1.0);
    eventually("sent messages", || {
        metric(&h, r#"message{issuer="test_issuer1",kind="sent"}"#) == 2.0
    });
    assert_eq!(
        metric(&h, r#"subscription_lifecycle{issuer="test_issuer1",kind="created"}"#),
        1.0
    );
    assert_eq!(metric(&h, "herald_history_messages"), 2.0);
    drop(s);
    eventually("the release", || {
        metric(&h, r#"subscription_lifecycle{issuer="test_issuer1",kind="released"}"#) == 1.0
    });
    assert_eq!(metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#), 0.0);
}

#[test]
fn the_topic_cap_trims_and_is_counted() {
    let h = Herald::start_with(&[("HISTORY_MAX_MESSAGES_PER_TOPIC", "3")]);
    let messages: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"event":"e","payload":"{i}","timestamp":{i}}}"#))
        .collect();
    h.publish_ok(
        "test_issuer1",
        &format!(r#"{{"topic":"cap","messages":[{}]}}"#, messages.join(",")),
    );
    let kept: Vec<_> = h
        .get_internal("/history/test_issuer1-cap")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["timestamp"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert_eq!(
        metric(&h, r#"herald_history_trimmed_messages_total{reason="topic_cap"}"#),
        2.0
    );
}

#[test]
fn process_stats_describes_the_node() {
    let h = Herald::start();
    let _a = h.subscribe(&sub_token("test_issuer1", "ps-a"), "");
    let mut b = h.subscribe(&sub_token("test_issuer1", "ps-b"), "");
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"ps-b","message":{"event":"e","payload":"p"}}"#,
    );
    b.next_message();
    eventually("both streams counted", || {
        h.get_internal("/process_stats").json()["connections"]["streams"] == 2
    });
    let stats = h.get_internal("/process_stats").json();
    assert_eq!(stats["connections"]["open"], 2, "{stats}");
    assert_eq!(stats["connections"]["max"], serde_json::Value::Null);
    assert_eq!(stats["connections"]["shutting_down"], false);
    assert_eq!(stats["subscriptions"], 2);
    assert_eq!(stats["topics"], 2);
    assert_eq!(stats["history"]["messages"], 1);
    assert_eq!(stats["outbox_depth"]["max"], 0, "the message was written: {stats}");
    assert!(stats["memory"]["rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(stats["memory"]["allocated_bytes"].as_u64().unwrap() > 0);
    let fds = &stats["file_descriptors"];
    assert!(fds["open"].as_u64().unwrap() >= 4 && fds["open"].as_u64() <= fds["soft_limit"].as_u64());
    assert!(stats["runtime"]["tasks"].as_u64().unwrap() >= 2);
}
