//! Revocation (`POST|GET|DELETE /v2/revocations` on the internal API), against the real binary:
//! every kind (token, subject, session) ends the live connections of matching tokens on every
//! transport — v1 and v2 SSE, WebSocket, a held long-poll — within a second, refuses them when
//! they come back (tickets included), and does so on every node of a cluster over Redis,
//! including one that starts after the revocation.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, start_nodes};
use common::{DEADLINE, Herald, Next, Response, Sse, eventually, metric, now_s, request};
use herald::auth::keys::development_auth;
use herald::auth::token::sign_claims;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

const ISSUER: &str = "test_issuer1";

/// The most a revocation may take to end a connection (the issue's promise).
const WITHIN: Duration = Duration::from_secs(1);

/// A public token of `ISSUER` with these claims besides the usual ones.
fn token(extra: Value) -> String {
    let auth = development_auth().0;
    let mut claims = json!({"iss": ISSUER, "aud": auth.audience, "iat": now_s(), "exp": now_s() + 120});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign_claims(&claims, auth.issuer(ISSUER).unwrap().secrets[0].bytes())
}

/// An internal-API (publisher) token with these claims.
fn internal_token(extra: Value) -> String {
    let auth = development_auth().1;
    let mut claims = json!({"iss": ISSUER, "aud": auth.audience, "iat": now_s(), "exp": now_s() + 600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign_claims(&claims, auth.issuer(ISSUER).unwrap().secrets[0].bytes())
}

fn internal(herald: &Herald, method: &str, path: &str, body: &str) -> Response {
    request(
        herald.internal,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            internal_token(json!({})),
            body.len()
        ),
    )
}

/// `POST /v2/revocations`, which must answer 201; its answer.
fn revoke(herald: &Herald, body: Value) -> Value {
    let r = internal(herald, "POST", "/v2/revocations", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn v2_sse(herald: &Herald, token: &str, query: &str) -> Sse {
    Sse::open(herald.public, "GET", &format!("/v2/subscribe?{query}"), token, "")
}

/// `GET /v2/poll?{query}` with the token in the header.
fn poll(herald: &Herald, token: &str, query: &str) -> Response {
    request(
        herald.public,
        &format!(
            "GET /v2/poll?{query} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    )
}

/// A long-poll on topic `alice` held in a thread (from the current cursor, so it waits).
fn held_poll(herald: &Herald, token: &str) -> std::thread::JoinHandle<(Response, Instant)> {
    let first = poll(herald, token, "topic=alice&timeout=0");
    assert_eq!(first.status, 200, "{}", first.text());
    let cursor = first.json()["cursor"].as_str().unwrap().to_owned();
    let (addr, token) = (herald.public, token.to_owned());
    std::thread::spawn(move || {
        let r = request(
            addr,
            &format!(
                "GET /v2/poll?topic=alice&cursor={cursor}&timeout=30 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
            ),
        );
        (r, Instant::now())
    })
}

type Ws = WebSocket<TcpStream>;

/// A WebSocket subscribed to `topic`.
fn ws(herald: &Herald, token: &str, topic: &str) -> Ws {
    let stream = TcpStream::connect(herald.public).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let url = format!("ws://{}/v2/ws?access_token={token}&topic={topic}", herald.public);
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    let ack = next_text(&mut ws);
    assert_eq!(ack["op"], "ack", "{ack}");
    ws
}

fn next_text(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a frame") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["op"] != "ping" {
                    return v;
                }
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until the server closes; its close code and reason.
fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return (u16::from(frame.code), frame.reason.to_string()),
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => {}
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    }
}

/// Reads an SSE stream until it ends; the last event before the end.
fn last_event(sse: &mut Sse) -> String {
    let mut last = String::new();
    loop {
        match sse.next_within(DEADLINE) {
            Next::Chunk(c) => last = c,
            Next::End => return last,
            Next::Nothing => panic!("the stream did not end; last event {last:?}"),
        }
    }
}

/// The opening of a v2 stream, read past.
fn opened(mut sse: Sse) -> Sse {
    assert_eq!(sse.response.status, 200, "{}", sse.response.head);
    let first = sse.next_event();
    assert!(first.starts_with("id: "), "the opening cursor: {first}");
    sse
}

#[test]
fn revoking_a_subject_ends_its_connections_on_every_transport_within_a_second() {
    let herald = Herald::start_with(&[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let alice = |jti: &str| token(json!({"sub": "alice", "jti": jti}));
    let mut v1 = herald.subscribe(&alice("t1"), "");
    assert_eq!(v1.response.status, 200);
    let mut v2 = opened(v2_sse(&herald, &alice("t2"), ""));
    let mut socket = ws(&herald, &alice("t3"), "alice");
    let held = held_poll(&herald, &alice("t4"));
    let mut bob = opened(v2_sse(&herald, &token(json!({"sub": "bob"})), ""));
    // The held poll is open once the node counts it.
    eventually("the poll held", || metric(&herald, "herald_subscriptions") >= 5.0);

    let asked = Instant::now();
    let answer = revoke(&herald, json!({"iss": ISSUER, "sub": "alice"}));
    assert_eq!(answer["closed_here"], 4, "{answer}");
    assert_eq!(answer["revocation"]["sub"], "alice");
    assert_eq!(answer["revocation"]["iss"], ISSUER);
    // Without an end: until the longest-lived token accepted now expires (the larger maximum
    // lifetime of the two APIs, 1500 s by default).
    let until = answer["revocation"]["until"].as_i64().unwrap();
    assert!((until - now_s() - 1500).abs() <= 2, "{answer}");

    assert_eq!(last_event(&mut v1), "event: credentials_revoked\n\n");
    assert_eq!(last_event(&mut v2), "event: credentials_revoked\n\n");
    let (code, reason) = close_of(&mut socket);
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("revoked"), "{reason}");
    let (polled, answered) = held.join().unwrap();
    assert_eq!(polled.status, 403, "{}", polled.text());
    assert_eq!(polled.json()["errors"][0]["error_code"], "token_revoked");
    let took = answered.duration_since(asked);
    assert!(asked.elapsed() < WITHIN * 2 && took < WITHIN, "took {took:?}");

    // Another subject's stream is untouched.
    herald.publish_ok(
        ISSUER,
        r#"{"topic":"bob","message":{"event":"e","payload":"still here"}}"#,
    );
    assert!(bob.next_message().contains("still here"));
    assert_eq!(metric(&herald, "herald_connections_revoked_total"), 4.0);
    assert_eq!(metric(&herald, "herald_revocations_active"), 1.0);
    assert_eq!(metric(&herald, "herald_revocations_total{kind=\"sub\"}"), 1.0);
}

#[test]
fn each_kind_of_revocation_ends_each_transport() {
    let herald = Herald::start_with(&[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    for (n, kind) in ["jti", "sub", "sid"].into_iter().enumerate() {
        // Tokens that read topic `alice`, with the claim of this kind set to this round's value.
        let value = format!("{kind}-{n}");
        let claims = |i: usize| {
            let mut c = json!({"sub": "alice", "jti": format!("other-{n}-{i}"), "sid": format!("other-{n}-{i}")});
            c[kind] = json!(value);
            // The round of `sub` changes the subject: the topic is read by grant.
            c["topics"] = json!(["alice"]);
            c
        };
        let t = |i: usize| token(claims(i));
        let mut v1 = herald.subscribe(&t(1), "");
        let v1_status = v1.response.status;
        let mut v2 = opened(v2_sse(&herald, &t(2), "topic=alice"));
        let mut socket = ws(&herald, &t(3), "alice");
        let held = {
            let token = t(4);
            let first = poll(&herald, &token, "topic=alice&timeout=0");
            let cursor = first.json()["cursor"].as_str().unwrap().to_owned();
            let addr = herald.public;
            std::thread::spawn(move || {
                request(
                    addr,
                    &format!(
                        "GET /v2/poll?topic=alice&cursor={cursor}&timeout=30 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
                    ),
                )
            })
        };
        eventually("the poll held", || metric(&herald, "herald_subscriptions") >= 4.0);
        revoke(&herald, json!({"iss": ISSUER, kind: value}));
        // A v1 stream reads its `sub` topic (`sub-2` in the round of `sub`).
        assert_eq!(v1_status, 200);
        assert_eq!(last_event(&mut v1), "event: credentials_revoked\n\n", "{kind}");
        assert_eq!(last_event(&mut v2), "event: credentials_revoked\n\n", "{kind}");
        assert_eq!(close_of(&mut socket).0, 4401, "{kind}");
        let answer = held.join().unwrap();
        assert_eq!(answer.status, 403, "{kind}: {}", answer.text());
        assert_eq!(answer.json()["errors"][0]["error_code"], "token_revoked");
        assert_eq!(poll(&herald, &t(5), "topic=alice&timeout=0").status, 403, "{kind}");
    }
}

#[test]
fn a_revoked_token_is_refused_when_it_comes_back_and_so_are_its_tickets() {
    let herald = Herald::start_with(&[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let revoked = token(json!({"sub": "alice", "jti": "leaked"}));
    let other = token(json!({"sub": "alice", "jti": "fresh"}));
    let minted = request(
        herald.public,
        &format!(
            "POST /v2/tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {revoked}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    let ticket = minted.json()["ticket"].as_str().unwrap().to_owned();

    revoke(&herald, json!({"iss": ISSUER, "jti": "leaked"}));

    let v1 = request(
        herald.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {revoked}\r\n\r\n"),
    );
    assert_eq!(v1.status, 403);
    assert!(v1.text().contains("event: neurow_error_403"), "{}", v1.text());
    assert!(v1.text().contains("\"error_code\":\"token_revoked\""), "{}", v1.text());
    let v2 = v2_sse(&herald, &revoked, "");
    assert_eq!(v2.response.status, 403);
    let r = poll(&herald, &revoked, "topic=alice&timeout=0");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["error_code"], "token_revoked");
    let r = request(
        herald.public,
        &format!("GET /v2/subscribe?ticket={ticket} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 403, "a ticket of a revoked token: {}", r.text());
    let r = request(
        herald.public,
        &format!(
            "POST /v2/tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {revoked}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 403);
    // The WebSocket handshake, and an auth command on an anonymous connection.
    let url = format!("ws://{}/v2/ws?access_token={revoked}", herald.public);
    match tungstenite::client(url.as_str(), TcpStream::connect(herald.public).unwrap()) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("the upgrade was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
    let stream = TcpStream::connect(herald.public).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let (mut anonymous, _) = tungstenite::client(format!("ws://{}/v2/ws", herald.public).as_str(), stream).unwrap();
    anonymous
        .send(Message::text(
            json!({"op": "auth", "id": 1, "token": revoked}).to_string(),
        ))
        .unwrap();
    assert_eq!(close_of(&mut anonymous).0, 4401);

    // The same subject with another token is still welcome.
    opened(v2_sse(&herald, &other, ""));
}

#[test]
fn sessions_and_publishers_can_be_revoked_and_quiet_mode_hides_the_reason() {
    let herald = Herald::start();
    let mut socket = ws(&herald, &token(json!({"sub": "alice", "sid": "s-9"})), "alice");
    let mut kept = ws(&herald, &token(json!({"sub": "alice", "sid": "s-10"})), "alice");
    revoke(&herald, json!({"iss": ISSUER, "sid": "s-9"}));
    assert_eq!(close_of(&mut socket).0, 4401);
    let r = poll(&herald, &token(json!({"sub": "carol", "sid": "s-9"})), "timeout=0");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["error_code"], "invalid_authentication_token");

    // A publisher's token: revoking its subject stops its publishes, cached or not.
    let publisher = internal_token(json!({"sub": "billing"}));
    let body = r#"{"topic":"alice","message":{"event":"e","payload":"p"}}"#;
    assert_eq!(herald.publish(&publisher, body).status, 200);
    revoke(&herald, json!({"iss": ISSUER, "sub": "billing"}));
    let refused = herald.publish(&publisher, body);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("invalid_authentication_token"));
    // The other session still receives.
    herald.publish_ok(ISSUER, body);
    assert_eq!(next_text(&mut kept)["op"], "msg");
}

#[test]
fn revocations_are_listed_lifted_and_end_by_themselves() {
    let herald = Herald::start_with(&[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let t = token(json!({"sub": "alice"}));
    revoke(&herald, json!({"iss": ISSUER, "sub": "alice"}));
    let short = revoke(&herald, json!({"iss": ISSUER, "jti": "brief", "until": now_s() + 2}));
    let listed = internal(&herald, "GET", "/v2/revocations", "").json();
    let listed = listed["revocations"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&short["revocation"]), "{listed:?}");
    assert_eq!(v2_sse(&herald, &t, "").response.status, 403);

    let lifted = internal(
        &herald,
        "DELETE",
        &format!("/v2/revocations?iss={ISSUER}&sub=alice"),
        "",
    );
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    assert_eq!(lifted.json()["lifted"], json!({"iss": ISSUER, "sub": "alice"}));
    opened(v2_sse(&herald, &t, ""));
    let again = internal(
        &herald,
        "DELETE",
        &format!("/v2/revocations?iss={ISSUER}&sub=alice"),
        "",
    );
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["errors"][0]["error_code"], "revocation_not_found");

    let brief = token(json!({"sub": "dave", "jti": "brief"}));
    assert_eq!(v2_sse(&herald, &brief, "").response.status, 403);
    eventually("the brief revocation to end", || {
        internal(&herald, "GET", "/v2/revocations", "").json()["revocations"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    opened(v2_sse(&herald, &brief, ""));
    assert_eq!(metric(&herald, "herald_revocations_active"), 0.0);
}

#[test]
fn malformed_revocations_get_a_precise_400_and_change_nothing() {
    let herald = Herald::start();
    for (body, says) in [
        ("not json", "not valid JSON"),
        ("[1]", "JSON object"),
        (r#"{"sub":"a"}"#, "iss is required"),
        (r#"{"iss":"nobody","sub":"a"}"#, "not a configured issuer"),
        (r#"{"iss":"test_issuer1"}"#, "exactly one of"),
        (r#"{"iss":"test_issuer1","sub":"a","sid":"b"}"#, "exactly one of"),
        (r#"{"iss":"test_issuer1","user":"a"}"#, "unknown field"),
        (r#"{"iss":"test_issuer1","sub":"a","until":5}"#, "until must be"),
    ] {
        let r = internal(&herald, "POST", "/v2/revocations", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["errors"][0]["error_code"], "invalid_revocation", "{body}");
        let message = answer["errors"][0]["error_message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let r = internal(&herald, "DELETE", "/v2/revocations?iss=test_issuer1", "");
    assert_eq!(r.status, 400);
    // The routes want the internal API's token.
    let r = request(
        herald.internal,
        "GET /v2/revocations HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        internal(&herald, "GET", "/v2/revocations", "").json(),
        json!({"revocations": []})
    );
}

#[test]
fn a_revocation_on_one_node_ends_connections_on_the_others_within_a_second() {
    let redis = RedisServer::start();
    let mut nodes = start_nodes(&redis.url(), 3, &[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let alice = token(json!({"sub": "alice", "sid": "s-1"}));
    let mut sse = opened(v2_sse(&nodes[1], &alice, ""));
    let mut socket = ws(&nodes[2], &alice, "alice");
    let held = held_poll(&nodes[1], &alice);
    let minted = request(
        nodes[0].public,
        &format!(
            "POST /v2/tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {alice}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    let ticket = minted.json()["ticket"].as_str().unwrap().to_owned();
    eventually("the poll held", || metric(&nodes[1], "herald_subscriptions") >= 2.0);

    let asked = Instant::now();
    revoke(&nodes[0], json!({"iss": ISSUER, "sid": "s-1"}));
    assert_eq!(last_event(&mut sse), "event: credentials_revoked\n\n");
    let sse_took = asked.elapsed();
    assert_eq!(close_of(&mut socket).0, 4401);
    let ws_took = asked.elapsed();
    let (polled, answered) = held.join().unwrap();
    assert_eq!(polled.status, 403);
    let poll_took = answered.duration_since(asked);
    assert!(
        sse_took < WITHIN && ws_took < WITHIN && poll_took < WITHIN,
        "SSE {sse_took:?}, WebSocket {ws_took:?}, poll {poll_took:?}"
    );
    // A ticket minted on one node before the revocation is refused on another.
    let r = request(
        nodes[2].public,
        &format!("GET /v2/subscribe?ticket={ticket} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    for node in &nodes {
        let listed = internal(node, "GET", "/v2/revocations", "").json();
        assert_eq!(listed["revocations"].as_array().unwrap().len(), 1, "{listed}");
    }

    // A node that starts afterwards refuses the token from its first request.
    nodes[1].kill();
    let fresh = Herald::start_with(&[("REDIS_URL", &redis.url()), ("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let r = poll(&fresh, &alice, "topic=alice&timeout=0");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["error_code"], "token_revoked");

    // Lifted on one node, accepted again on all.
    let lifted = internal(
        &nodes[2],
        "DELETE",
        &format!("/v2/revocations?iss={ISSUER}&sid=s-1"),
        "",
    );
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    for node in [&nodes[0], &fresh] {
        eventually("the lift to reach every node", || {
            poll(node, &alice, "topic=alice&timeout=0").status == 200
        });
    }
}
