//! Logs (spec §6): the ECS fields of every line, the request fields of request events, and no
//! token, secret or Authorization header in any line, in either format, at `debug`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use herald::auth::token::sign_claims;
use serde_json::{Value, json};

/// Issuers and secrets of the secrets test, so the test knows every secret the server holds.
const AUDIENCE: &str = "logs-test";
const SECRET_A: &str = "secret-A-0c6f1e5b9d2a4f7e8c3b";
const SECRET_B_OLD: &str = "secret-B-old-7a1d9e3f5c2b8a64";
const SECRET_B_NEW: &str = "secret-B-new-4e8b2d6f1a9c3e75";

fn jwt_config() -> String {
    json!({
        "service_name": AUDIENCE,
        "clients": {"issuer_a": SECRET_A, "issuer_b": [SECRET_B_OLD, SECRET_B_NEW]},
    })
    .to_string()
}

/// Claims valid for `lifetime_s` from now, with these fields on top.
fn claims(extra: Value, lifetime_s: i64) -> Value {
    let now = now_s();
    let mut c = json!({"iss": "issuer_a", "aud": AUDIENCE, "iat": now, "exp": now + lifetime_s});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A raw request with these header lines (each ending in `\r\n`) and body.
fn send(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Response {
    request(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

const PUBLISH_BODY: &str = r#"{"topic":"t","message":{"event":"e","payload":"p"}}"#;

/// Every line Herald wrote, each parsed as one JSON object.
fn json_lines(h: &Herald) -> Vec<Value> {
    h.logs()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// The line of the request sent with `x-request-id: trace_id` whose message is `message`.
fn line_of<'a>(lines: &'a [Value], trace_id: &str, message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["trace.id"] == trace_id && l["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line for {trace_id}: {lines:#?}"))
}

/// `2026-11-23T10:00:00.123456Z`.
fn is_rfc3339_micros_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn ecs_lines_carry_the_fields_of_spec_6() {
    let h = Herald::start_with(&[("LOG_FORMAT", "ECS"), ("LOG_LEVEL", "debug")]);
    let client = "user-agent: herald-tests/1.0\r\nx-forwarded-for: 203.0.113.7, 10.0.0.1\r\n";

    let ok = h.subscribe(
        &sub_token("test_issuer1", "t"),
        &format!("x-request-id: req-ok\r\n{client}"),
    );
    assert_eq!(ok.response.status, 200);
    let expired = sign_claims(
        &json!({"iss":"test_issuer1","sub":"t","aud":"public_api","iat":now_s()-100,"exp":now_s()-1}),
        b"966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc",
    );
    let r = send(
        h.public,
        "GET",
        "/v1/subscribe?ignored=1",
        &format!("authorization: Bearer {expired}\r\nx-request-id: req-expired\r\n{client}"),
        "",
    );
    assert_eq!(r.status, 403);
    let bad_signature = sign_claims(&json!({"iss":"test_issuer1","sub":"t","aud":"public_api"}), b"wrong");
    let r = send(
        h.public,
        "POST",
        "/v1/subscribe",
        &format!("authorization: Bearer {bad_signature}\r\nx-request-id: req-bad-signature\r\n"),
        "",
    );
    assert_eq!(r.status, 403);
    let r = send(
        h.internal,
        "POST",
        "/v1/publish",
        &format!(
            "authorization: Bearer {}\r\ncontent-type: application/json\r\nx-request-id: req-publish\r\n{client}",
            pub_token("test_issuer1")
        ),
        PUBLISH_BODY,
    );
    assert_eq!(r.status, 200);
    let r = send(
        h.internal,
        "POST",
        "/v1/publish",
        "x-interservice-authorization: Bearer forged\r\nx-request-id: req-publish-forged\r\nx-forwarded-for: 198.51.100.2\r\n",
        PUBLISH_BODY,
    );
    assert_eq!(r.status, 401);
    eventually("a line for every request", || {
        let logs = h.logs().join("\n");
        [
            "req-ok",
            "req-expired",
            "req-bad-signature",
            "req-publish\"",
            "req-publish-forged",
        ]
        .iter()
        .all(|id| logs.contains(id))
    });

    let lines = json_lines(&h);
    for line in &lines {
        let text = line.to_string();
        assert!(is_rfc3339_micros_utc(line["@timestamp"].as_str().unwrap()), "{text}");
        assert!(
            ["debug", "info", "warning", "error"].contains(&line["log.level"].as_str().unwrap()),
            "{text}"
        );
        assert!(line["log.logger"].as_str().unwrap().starts_with("herald"), "{text}");
        assert!(line["message"].is_string(), "{text}");
        assert_eq!(line["ecs.version"], "8.11.0", "{text}");
        assert!(line["category"] == "app" || line["category"] == "security", "{text}");
        assert_eq!(line["service.name"], "herald", "{text}");
        assert_eq!(line["service.version"], env!("CARGO_PKG_VERSION"), "{text}");
    }
    let listening = lines.iter().find(|l| l["message"] == "public API listening").unwrap();
    assert_eq!(listening["labels.addr"], h.public.to_string());
    assert_eq!(listening["log.logger"], "herald::server");

    let opened = line_of(&lines, "req-ok", "subscription opened");
    assert_eq!(opened["category"], "app");
    assert_eq!(opened["log.level"], "debug");
    assert_eq!(opened["log.logger"], "herald::api::v1");
    assert_eq!(opened["client.ip"], "203.0.113.7");
    assert_eq!(opened["http.request.method"], "GET");
    assert_eq!(opened["url.path"], "/v1/subscribe");
    assert_eq!(opened["http.request.path"], "/v1/subscribe");
    assert_eq!(opened["user_agent.original"], "herald-tests/1.0");
    assert_eq!(opened["labels.issuer"], "test_issuer1");

    let refused = line_of(&lines, "req-expired", "public API authentication refused");
    assert_eq!(refused["category"], "security");
    assert_eq!(refused["log.level"], "warning");
    assert_eq!(refused["error.code"], "jwt_authentication.token_expired");
    assert_eq!(refused["event.outcome"], "failure");
    assert_eq!(refused["http.response.status_code"], 403);
    assert_eq!(refused["client.ip"], "203.0.113.7");
    assert_eq!(refused["url.path"], "/v1/subscribe", "the query string is not logged");
    assert_eq!(refused["user_agent.original"], "herald-tests/1.0");

    let refused = line_of(&lines, "req-bad-signature", "public API authentication refused");
    assert_eq!(refused["category"], "security");
    assert_eq!(refused["error.code"], "jwt_authentication.invalid_signature");
    assert_eq!(refused["http.request.method"], "POST");
    assert_eq!(refused["client.ip"], "127.0.0.1", "without x-forwarded-for, the peer");
    assert!(refused.get("user_agent.original").is_none());

    let published = line_of(&lines, "req-publish", "published");
    assert_eq!(published["category"], "app");
    let logger = published["log.logger"].as_str().unwrap_or_default();
    assert!(logger.starts_with("herald::api::internal"), "{logger}");
    assert_eq!(published["client.ip"], "203.0.113.7");
    assert_eq!(published["url.path"], "/v1/publish");
    assert_eq!(published["labels.issuer"], "test_issuer1");
    assert_eq!(published["labels.messages"], 1);

    let refused = line_of(&lines, "req-publish-forged", "internal API authentication refused");
    assert_eq!(refused["category"], "security");
    assert_eq!(refused["log.level"], "warning");
    assert_eq!(refused["error.code"], "jwt_authentication.invalid_jwt_token");
    assert_eq!(refused["client.ip"], "198.51.100.2");
    assert_eq!(refused["http.request.method"], "POST");
}

#[test]
fn authentication_failures_are_seen_at_the_default_level() {
    let h = Herald::start_with(&[("LOG_FORMAT", "ECS"), ("LOG_LEVEL", "info")]);
    send(h.public, "GET", "/v1/subscribe", "x-request-id: no-token\r\n", "");
    eventually("the refusal", || h.logs().iter().any(|l| l.contains("no-token")));
    let lines = json_lines(&h);
    let refused = line_of(&lines, "no-token", "public API authentication refused");
    assert_eq!(refused["error.code"], "jwt_authentication.invalid_authorization_header");
    assert!(lines.iter().all(|l| l["log.level"] != "debug"));
}

/// Drives every path that handles a token and returns the strings no log line may contain.
fn drive_every_token_path(h: &Herald) -> Vec<String> {
    let sub_ok = sign_claims(&claims(json!({"sub": "t"}), 60), SECRET_A.as_bytes());
    let sub_rotated = sign_claims(
        &claims(json!({"iss": "issuer_b", "sub": "t"}), 60),
        SECRET_B_NEW.as_bytes(),
    );
    let pub_ok = sign_claims(&claims(json!({}), 600), SECRET_A.as_bytes());
    let pub_rotated = sign_claims(&claims(json!({"iss": "issuer_b"}), 600), SECRET_B_OLD.as_bytes());
    let now = now_s();
    let bad_tokens = vec![
        sign_claims(&claims(json!({"sub": "t"}), 60), b"wrong secret"),
        sign_claims(&claims(json!({"iss": "nobody", "sub": "t"}), 60), SECRET_A.as_bytes()),
        sign_claims(&json!({"aud": AUDIENCE, "sub": "t"}), SECRET_A.as_bytes()),
        sign_claims(
            &claims(json!({"sub": "t", "iat": now - 100, "exp": now - 1}), 0),
            SECRET_A.as_bytes(),
        ),
        sign_claims(&claims(json!({"sub": "t"}), 100_000), SECRET_A.as_bytes()),
        sign_claims(&claims(json!({"sub": "t", "aud": "other"}), 60), SECRET_A.as_bytes()),
        sign_claims(
            &json!({"iss": "issuer_a", "aud": AUDIENCE, "sub": "t"}),
            SECRET_A.as_bytes(),
        ),
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims(json!({"sub": "t"}), 60).to_string())
        ),
        "not-a-jwt-4f1c9b".to_owned(),
    ];
    let no_sub = sign_claims(&claims(json!({}), 60), SECRET_A.as_bytes());

    // Authorization values that are not `Bearer <token>`, each around a valid token.
    let bad_shapes: Vec<String> = vec![
        format!("bearer {sub_ok}"),
        format!("Basic {sub_ok}"),
        format!("Bearer  {sub_ok}"),
        format!("Token {sub_ok}"),
        sub_ok.clone(),
    ];

    // Public API: streams that open, carry a message and close.
    let mut get = h.subscribe(&sub_ok, "x-request-id: s1\r\n");
    assert_eq!(get.response.status, 200);
    let post = Sse::open(h.public, "POST", "/v1/subscribe", &sub_rotated, "");
    assert_eq!(post.response.status, 200);
    let r = send(
        h.internal,
        "POST",
        "/v1/publish",
        &format!("authorization: Bearer {pub_ok}\r\ncontent-type: application/json\r\n"),
        PUBLISH_BODY,
    );
    assert_eq!(r.status, 200);
    assert!(get.next_message().ends_with("event: e\ndata: p\n\n"));
    drop(get);
    drop(post);

    // Public API refusals.
    for token in bad_tokens.iter().chain([&no_sub]) {
        let r = send(
            h.public,
            "GET",
            "/v1/subscribe",
            &format!("authorization: Bearer {token}\r\n"),
            "",
        );
        assert!([400, 401, 403].contains(&r.status), "{}", r.status);
    }
    for value in &bad_shapes {
        let r = send(
            h.public,
            "GET",
            "/v1/subscribe",
            &format!("authorization: {value}\r\n"),
            "",
        );
        assert_eq!(r.status, 401, "{value}");
    }
    let two = format!("authorization: Bearer {sub_ok}\r\nauthorization: Bearer {sub_ok}\r\n");
    assert_eq!(send(h.public, "GET", "/v1/subscribe", &two, "").status, 401);
    let with = |extra: &str| format!("authorization: Bearer {sub_ok}\r\n{extra}");
    assert_eq!(send(h.public, "GET", "/elsewhere", &with(""), "").status, 404);
    assert_eq!(
        send(h.public, "GET", "/v1/subscribe", &with("last-event-id: x\r\n"), "").status,
        400
    );
    assert_eq!(
        send(
            h.public,
            "OPTIONS",
            "/v1/subscribe",
            &with("origin: https://evil.example\r\n"),
            ""
        )
        .status,
        400
    );

    // Internal API: both headers, accepted and refused.
    let json = "content-type: application/json\r\n";
    let publish = |headers: String| {
        send(
            h.internal,
            "POST",
            "/v1/publish",
            &format!("{headers}{json}"),
            PUBLISH_BODY,
        )
    };
    assert_eq!(
        publish(format!("x-interservice-authorization: Bearer {pub_rotated}\r\n")).status,
        200
    );
    assert_eq!(
        publish(format!(
            "x-interservice-authorization: Bearer {}\r\nauthorization: Bearer {pub_ok}\r\n",
            bad_tokens[0]
        ))
        .status,
        403
    );
    for token in &bad_tokens {
        for header in ["authorization", "x-interservice-authorization"] {
            let status = publish(format!("{header}: Bearer {token}\r\n")).status;
            assert!([401, 403].contains(&status), "{status}");
        }
    }
    for value in &bad_shapes {
        assert_eq!(publish(format!("authorization: {value}\r\n")).status, 401, "{value}");
    }
    let r = send(
        h.internal,
        "POST",
        "/v1/publish",
        &format!("authorization: Bearer {pub_ok}\r\n{json}"),
        "{not json",
    );
    assert_eq!(r.status, 400);
    let r = send(
        h.internal,
        "POST",
        "/v1/publish",
        &format!("authorization: Bearer {pub_ok}\r\ncontent-type: text/plain\r\n"),
        PUBLISH_BODY,
    );
    assert_eq!(r.status, 400);
    let r = send(
        h.internal,
        "GET",
        "/",
        &format!("authorization: Bearer {pub_ok}\r\n"),
        "",
    );
    assert_eq!(r.status, 200);
    let r = send(
        h.internal,
        "GET",
        "/nowhere",
        &format!("authorization: Bearer {pub_ok}\r\n"),
        "",
    );
    assert_eq!(r.status, 404);

    let mut forbidden: Vec<String> = [SECRET_A, SECRET_B_OLD, SECRET_B_NEW]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    forbidden.extend([sub_ok.clone(), sub_rotated, pub_ok.clone(), pub_rotated, no_sub]);
    forbidden.extend(bad_tokens);
    forbidden.extend(bad_shapes);
    forbidden.push(format!("Bearer {sub_ok}"));
    forbidden.push(format!("Bearer {pub_ok}"));
    forbidden
}

#[test]
fn no_token_secret_or_authorization_header_reaches_the_logs() {
    for format in ["TEXT", "ECS"] {
        let config = jwt_config();
        let mut h = Herald::start_with(&[
            ("LOG_FORMAT", format),
            ("LOG_LEVEL", "debug"),
            ("VERBOSE_AUTHENTICATION_ERRORS", "true"),
            ("JWT_CONFIG", &config),
        ]);
        let forbidden = drive_every_token_path(&h);
        // 9 bad tokens and 1 two-header request on each API, 5 bad shapes each, 9 × 2 more on
        // the internal API and the mixed-header one.
        let expected_refusals = 9 + 5 + 1 + (9 * 2 + 5 + 1);
        eventually("every authentication refusal logged", || {
            h.logs().iter().filter(|l| l.contains("authentication refused")).count() >= expected_refusals
        });
        h.terminate();
        assert!(h.wait_exit(DEADLINE).success());

        let logs = h.logs();
        assert!(logs.iter().any(|l| l.contains("subscription closed")), "{logs:#?}");
        for line in &logs {
            for secret in &forbidden {
                assert!(
                    !line.contains(secret.as_str()),
                    "{format}: a log line leaks {secret:?}: {line}"
                );
            }
            assert!(!line.contains(&config), "{format}: {line}");
            // Every JWT starts with a base64 JSON header, `eyJ`.
            assert!(!line.contains("eyJ"), "{format}: a log line holds a JWT: {line}");
            assert!(!line.to_ascii_lowercase().contains("bearer"), "{format}: {line}");
            if format == "ECS" {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            } else {
                assert!(!line.starts_with('{'), "TEXT lines are not JSON: {line}");
            }
        }
    }
}
