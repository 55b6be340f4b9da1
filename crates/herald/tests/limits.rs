//! Limits (issue 5, item 4): each refusal has a precise status, says what to do, and is counted.
//! `PUBLIC_API_MAX_CONNECTIONS` and `PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND` answer 503 with
//! Neurow's SSE error body and `retry-after`; `MAX_HEADER_VALUE_LENGTH` 431;
//! `PUBLISH_MAX_BODY_SIZE` 413.

mod common;

use std::io::Read;
use std::time::Instant;

use common::*;

const REJECTED: &str = "herald_connections_rejected_total";

fn rejected(h: &Herald, reason: &str) -> f64 {
    metric(h, &format!("{REJECTED}{{reason=\"{reason}\"}}"))
}

/// The rest of a response whose head `Sse::open` read: its `content-length` body.
fn body_of(s: &mut Sse) -> String {
    let len: usize = s.response.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; len];
    s.stream.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// Asserts a 503 in Neurow's SSE error shape with this code, and returns its `retry-after`.
fn assert_unavailable(r: &Response, code: &str) -> u32 {
    assert_eq!(r.status, 503, "{}", r.head);
    assert_neurow_sse_headers(r);
    let text = r.text();
    let (id_line, rest) = text.split_once('\n').unwrap();
    assert!(id_line.strip_prefix("id:").unwrap().parse::<u64>().is_ok(), "{text}");
    let expected = format!("event: neurow_error_503\ndata: {{\"errors\":[{{\"error_code\":\"{code}\",");
    assert!(rest.starts_with(&expected), "{text}");
    assert!(rest.ends_with("\"}]}\n\n"), "{text}");
    let retry_after: u32 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    retry_after
}

#[test]
fn every_rejection_reason_reads_zero_from_the_start() {
    let h = Herald::start();
    for reason in [
        "max_connections",
        "subscription_rate",
        "shutting_down",
        "header_too_large",
    ] {
        assert_eq!(rejected(&h, reason), 0.0, "{reason}");
    }
    assert_eq!(
        metric(&h, r#"herald_publish_rejected_total{reason="body_too_large"}"#),
        0.0
    );
}

#[test]
fn over_max_connections_a_client_gets_503_with_retry_after_and_it_is_counted() {
    let h = Herald::start_with(&[("PUBLIC_API_MAX_CONNECTIONS", "2")]);
    let token = sub_token("test_issuer1", "cap");
    let a = h.subscribe(&token, "");
    let _b = h.subscribe(&token, "");
    let subscribe = format!("GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n");
    for n in 1..=3 {
        let r = request(h.public, &subscribe);
        assert_eq!(assert_unavailable(&r, "too_many_connections"), 1);
        assert!(r.text().contains("PUBLIC_API_MAX_CONNECTIONS"));
        assert_eq!(rejected(&h, "max_connections"), f64::from(n));
    }
    // A place freed is taken again (attempts refused until the node sees the close count too).
    drop(a);
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
fn subscriptions_over_the_rate_get_503_with_retry_after_and_are_counted() {
    let h = Herald::start_with(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", "5")]);
    let token = sub_token("test_issuer1", "storm");
    let started = Instant::now();
    let (mut open, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let s = h.subscribe(&token, "");
        match s.response.status {
            200 => open.push(s),
            _ => refused.push(s),
        }
    }
    let elapsed = started.elapsed();
    // A burst of one second's worth, then 5 a second.
    let most = 5 + (elapsed.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (5..=most).contains(&open.len()),
        "{} admitted in {elapsed:?}",
        open.len()
    );
    let mut retry_afters = Vec::new();
    for s in &mut refused {
        let body = body_of(s);
        let r = Response {
            status: s.response.status,
            head: s.response.head.clone(),
            body: body.into_bytes(),
        };
        retry_afters.push(assert_unavailable(&r, "subscription_rate_exceeded"));
    }
    // Refused clients are told to come back at the rate the node admits, not all at once.
    assert!(retry_afters.windows(2).all(|w| w[0] <= w[1]), "{retry_afters:?}");
    assert!(*retry_afters.last().unwrap() >= 2, "{retry_afters:?}");
    assert_eq!(rejected(&h, "subscription_rate"), refused.len() as f64);
    assert_eq!(rejected(&h, "max_connections"), 0.0);
    // The streams admitted are real ones.
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"storm","message":{"event":"e","payload":"p","timestamp":7}}"#,
    );
    for s in &mut open {
        assert_eq!(s.next_message(), event(7, "e", "p"));
    }
    // Refusals use nothing up: once the bucket refills, subscriptions are admitted again.
    eventually("an admitted subscription", || {
        h.subscribe(&token, "").response.status == 200
    });
}

#[test]
fn a_header_over_max_header_value_length_gets_431_and_is_counted() {
    let h = Herald::start_with(&[("MAX_HEADER_VALUE_LENGTH", "1024")]);
    let token = sub_token("test_issuer1", "cookie");
    let ok = h.subscribe(&token, &format!("cookie: {}\r\n", "c".repeat(1000)));
    assert_eq!(ok.response.status, 200);
    let r = request(
        h.public,
        &format!(
            "GET /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\ncookie: {}\r\n\r\n",
            "c".repeat(1025)
        ),
    );
    assert_eq!(r.status, 431);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(r.text().contains("header cookie is 1025 bytes long"), "{}", r.text());
    assert_eq!(rejected(&h, "header_too_large"), 1.0);
}

#[test]
fn a_publish_body_over_publish_max_body_size_gets_413_and_is_counted() {
    let h = Herald::start_with(&[("PUBLISH_MAX_BODY_SIZE", "1000")]);
    let big = format!(
        r#"{{"topic":"t","message":{{"event":"e","payload":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let r = h.publish(&pub_token("test_issuer1"), &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["errors"][0]["error_code"], "payload_too_large");
    assert_eq!(
        metric(&h, r#"herald_publish_rejected_total{reason="body_too_large"}"#),
        1.0
    );
    h.publish_ok("test_issuer1", r#"{"topic":"t","message":{"event":"e","payload":"p"}}"#);
    assert_eq!(
        metric(&h, r#"herald_publish_rejected_total{reason="body_too_large"}"#),
        1.0
    );
}

#[test]
fn a_v2_request_over_the_subscription_rate_gets_a_json_503_with_retry_after() {
    let h = Herald::start_with(&[("PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND", "1")]);
    let token = sub_token("test_issuer1", "t");
    let poll = || {
        request(
            h.public,
            &format!(
                "GET /v2/poll?timeout=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
            ),
        )
    };
    let refused = (0..20)
        .map(|_| poll())
        .find(|r| r.status == 503)
        .expect("one poll refused");
    assert_eq!(refused.header("content-type").as_deref(), Some("application/json"));
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()));
    assert_eq!(refused.json()["errors"][0]["error_code"], "subscription_rate_exceeded");
}
