//! Limits (issue 5, item 4): each refusal has a precise status, says what to do, and is counted.
//! `PUBLIC_API_MAX_CONNECTIONS` answers 503 with Neurow's SSE error body and `retry-after`;
//! `MAX_HEADER_VALUE_LENGTH` 431; `PUBLISH_MAX_BODY_SIZE` 413.

mod common;

use common::*;

const REJECTED: &str = "herald_connections_rejected_total";

fn rejected(h: &Herald, reason: &str) -> f64 {
    metric(h, &format!("{REJECTED}{{reason=\"{reason}\"}}"))
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
