//! Herald's WebSocket API (`/v2/ws`), driven by a real WebSocket client (tungstenite) against
//! the real binary: commands, resume with the SSE cursor and back, publishing, tokens, close
//! codes, bad frames and a cluster.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, start_nodes};
use common::{DEADLINE, Herald, Sse, now_s};
use herald::auth::keys::development_auth;
use herald::auth::token::sign_claims;
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const ISSUER: &str = "test_issuer1";

fn token_with(extra: Value, lifetime_s: i64) -> String {
    let auth = development_auth().0;
    let mut claims = json!({"iss": ISSUER, "aud": auth.audience, "iat": now_s(), "exp": now_s() + lifetime_s});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign_claims(&claims, auth.issuer(ISSUER).unwrap().secrets[0].bytes())
}

fn token(extra: Value) -> String {
    token_with(extra, 120)
}

type Ws = WebSocket<TcpStream>;

/// Opens `/v2/ws?{query}`.
fn connect(herald: &Herald, query: &str) -> Ws {
    let stream = TcpStream::connect(herald.public).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let url = format!("ws://{}/v2/ws?{query}", herald.public);
    let (ws, response) = tungstenite::client(url.as_str(), stream).expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    ws
}

fn send(ws: &mut Ws, command: Value) {
    ws.send(Message::text(command.to_string())).unwrap();
}

/// The next JSON frame that is not a ping.
fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a frame") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["op"] != "ping" {
                    return v;
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server closes; its close code.
fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => {}
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    }
}

/// Nothing but pings arrives for `wait`.
fn expect_quiet(ws: &mut Ws, wait: Duration) {
    ws.get_mut().set_read_timeout(Some(wait)).unwrap();
    let until = Instant::now() + wait;
    while Instant::now() < until {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["op"], "ping", "unexpected {v}");
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    ws.get_mut().set_read_timeout(Some(DEADLINE)).unwrap();
}

fn publish(herald: &Herald, topic: &str, payload: &str) {
    herald.publish_ok(
        ISSUER,
        &json!({"topic": topic, "message": {"event": "update", "payload": payload}}).to_string(),
    );
}

fn subscribe(ws: &mut Ws, id: u64, topics: &[&str], cursor: Option<&str>) -> Value {
    let mut command = json!({"op": "subscribe", "id": id, "topics": topics});
    if let Some(c) = cursor {
        command["cursor"] = json!(c);
    }
    send(ws, command);
    let ack = next(ws);
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["id"], id);
    ack
}

#[test]
fn subscribe_receive_and_unsubscribe_on_one_connection() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b"]}));
    let mut ws = connect(&herald, &format!("access_token={t}"));
    let ack = subscribe(&mut ws, 1, &["b", "a"], None);
    assert_eq!(ack["topics"], json!(["a", "b"]));
    assert!(ack["cursor"].as_str().unwrap().starts_with("m1."), "{ack}");
    publish(&herald, "a", "one");
    let m = next(&mut ws);
    assert_eq!(
        (
            m["op"].as_str(),
            m["topic"].as_str(),
            m["event"].as_str(),
            m["payload"].as_str()
        ),
        (Some("msg"), Some("a"), Some("update"), Some("one"))
    );
    assert!(m["id"].as_str().unwrap().parse::<u64>().is_ok());
    assert_ne!(m["cursor"], ack["cursor"]);
    send(&mut ws, json!({"op": "unsubscribe", "id": 2, "topics": ["a"]}));
    let ack = next(&mut ws);
    assert_eq!((ack["op"].as_str(), ack["id"].as_u64()), (Some("ack"), Some(2)));
    publish(&herald, "a", "not for it");
    publish(&herald, "b", "two");
    let m = next(&mut ws);
    assert_eq!((m["topic"].as_str(), m["payload"].as_str()), (Some("b"), Some("two")));
    send(&mut ws, json!({"op": "ping", "id": 3}));
    assert_eq!(next(&mut ws), json!({"op": "pong", "id": 3}));
}

#[test]
fn the_url_may_subscribe_at_once_and_the_token_may_come_later_in_an_auth_command() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let mut ws = connect(&herald, &format!("access_token={t}&topic=a"));
    let ack = next(&mut ws);
    assert_eq!((ack["op"].as_str(), ack["id"].as_u64()), (Some("ack"), Some(0)));
    // No token in the handshake: the first command authenticates.
    let mut late = connect(&herald, "");
    send(&mut late, json!({"op": "auth", "id": 1, "token": t}));
    let ack = next(&mut late);
    assert_eq!(ack["op"], "ack", "{ack}");
    assert!(ack["expires_in"].as_i64().unwrap() > 100);
    subscribe(&mut late, 2, &["a"], None);
    publish(&herald, "a", "x");
    assert_eq!(next(&mut ws)["payload"], "x");
    assert_eq!(next(&mut late)["payload"], "x");
}

#[test]
fn without_a_token_in_time_or_with_a_bad_one_the_connection_closes_4401() {
    let herald = Herald::start();
    let mut silent = connect(&herald, "");
    let started = Instant::now();
    assert_eq!(close_code(&mut silent), 4401);
    assert!(started.elapsed() >= Duration::from_secs(4), "{:?}", started.elapsed());
    let mut bad = connect(&herald, "");
    send(&mut bad, json!({"op": "auth", "id": 1, "token": "not.a.token"}));
    assert_eq!(close_code(&mut bad), 4401);
    let mut eager = connect(&herald, "");
    send(&mut eager, json!({"op": "subscribe", "id": 1, "topics": ["a"]}));
    assert_eq!(close_code(&mut eager), 4401);
}

#[test]
fn a_websocket_cursor_resumes_an_sse_stream_and_back() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b"]}));
    let mut ws = connect(&herald, &format!("access_token={t}"));
    subscribe(&mut ws, 1, &["a", "b"], None);
    publish(&herald, "a", "a1");
    let cursor = next(&mut ws)["cursor"].as_str().unwrap().to_owned();
    drop(ws);
    publish(&herald, "b", "b1");
    // The WebSocket's cursor resumes an SSE stream of the same topics.
    let mut sse = Sse::open_raw(
        herald.public,
        &format!(
            "GET /v2/subscribe?topic=a&topic=b HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\nlast-event-id: {cursor}\r\n\r\n"
        ),
    );
    assert_eq!(sse.response.status, 200);
    sse.next_event();
    let replayed = sse.next_message();
    assert!(replayed.contains("\"payload\":\"b1\""), "{replayed}");
    let sse_cursor = replayed
        .strip_prefix("id: ")
        .unwrap()
        .split('\n')
        .next()
        .unwrap()
        .to_owned();
    drop(sse);
    publish(&herald, "a", "a2");
    // And the stream's cursor resumes a WebSocket.
    let mut ws = connect(&herald, &format!("access_token={t}"));
    subscribe(&mut ws, 1, &["b", "a"], Some(&sse_cursor));
    let m = next(&mut ws);
    assert_eq!((m["topic"].as_str(), m["payload"].as_str()), (Some("a"), Some("a2")));
    expect_quiet(&mut ws, Duration::from_millis(200));
    // A cursor of other topics is refused, and the connection stays.
    send(
        &mut ws,
        json!({"op": "subscribe", "id": 2, "topics": ["a"], "cursor": sse_cursor}),
    );
    let e = next(&mut ws);
    assert_eq!(
        (e["op"].as_str(), e["id"].as_u64(), e["code"].as_str()),
        (Some("error"), Some(2), Some("invalid_cursor"))
    );
}

#[test]
fn publishing_follows_the_publish_grant_and_reaches_every_transport() {
    let herald = Herald::start();
    let reader = token(json!({"topics": ["chat.*"]}));
    let writer = token(json!({"topics": ["chat.*"], "publish": ["chat.*"]}));
    let mut sse = Sse::open_raw(
        herald.public,
        &format!("GET /v2/subscribe?topic=chat.1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {reader}\r\n\r\n"),
    );
    sse.next_event();
    let mut ws = connect(&herald, &format!("access_token={writer}"));
    send(
        &mut ws,
        json!({"op": "publish", "id": 7, "topic": "chat.1", "event": "say", "payload": "hi"}),
    );
    let ack = next(&mut ws);
    assert_eq!(
        (ack["op"].as_str(), ack["id"].as_u64()),
        (Some("ack"), Some(7)),
        "{ack}"
    );
    let id = ack["message_id"].as_str().unwrap().to_owned();
    let event = sse.next_message();
    assert!(
        event.contains("event: say\n") && event.contains(&format!("\"id\":\"{id}\"")),
        "{event}"
    );
    // Refused: outside the grant, or a reader's token; the connection stays open.
    send(
        &mut ws,
        json!({"op": "publish", "id": 8, "topic": "news", "event": "say", "payload": "x"}),
    );
    assert_eq!(next(&mut ws)["code"], "publish_not_allowed");
    let mut ro = connect(&herald, &format!("access_token={reader}"));
    send(
        &mut ro,
        json!({"op": "publish", "id": 1, "topic": "chat.1", "event": "say", "payload": "x"}),
    );
    let e = next(&mut ro);
    assert_eq!(
        (e["op"].as_str(), e["code"].as_str()),
        (Some("error"), Some("publish_not_allowed"))
    );
    send(
        &mut ws,
        json!({"op": "publish", "id": 9, "topic": "chat.1", "event": "", "payload": "x"}),
    );
    assert_eq!(next(&mut ws)["code"], "invalid_message");
    send(&mut ws, json!({"op": "ping", "id": 10}));
    assert_eq!(next(&mut ws)["op"], "pong");
}

#[test]
fn an_expired_token_closes_4409_unless_refreshed() {
    let herald = Herald::start();
    let short = token_with(json!({"topics": ["a"]}), 2);
    let mut refreshed = connect(&herald, &format!("access_token={short}"));
    send(
        &mut refreshed,
        json!({"op": "auth", "id": 1, "token": token(json!({"topics": ["a"]}))}),
    );
    assert_eq!(next(&mut refreshed)["op"], "ack");
    let mut expiring = connect(&herald, &format!("access_token={short}"));
    assert_eq!(close_code(&mut expiring), 4409);
    subscribe(&mut refreshed, 2, &["a"], None);
    publish(&herald, "a", "still here");
    assert_eq!(next(&mut refreshed)["payload"], "still here");
    // A refresh for someone else is refused, and the connection keeps its token.
    let other = token(json!({"sub": "someone-else"}));
    send(&mut refreshed, json!({"op": "auth", "id": 3, "token": other}));
    assert_eq!(next(&mut refreshed)["code"], "token_mismatch");
}

#[test]
fn bad_commands_are_answered_and_bad_frames_close_with_their_code() {
    let herald = Herald::start_with(&[("WS_MAX_MESSAGE_SIZE", "1024"), ("WS_MAX_COMMANDS_PER_SECOND", "20")]);
    let t = token(json!({"topics": ["a"]}));
    let mut ws = connect(&herald, &format!("access_token={t}"));
    ws.send(Message::text("not json")).unwrap();
    assert_eq!(next(&mut ws)["code"], "invalid_command");
    send(&mut ws, json!({"op": "dance", "id": 4}));
    let e = next(&mut ws);
    assert_eq!((e["id"].as_u64(), e["code"].as_str()), (Some(4), Some("unknown_op")));
    send(&mut ws, json!({"op": "subscribe", "id": 5, "topics": ["b"]}));
    assert_eq!(next(&mut ws)["code"], "topic_not_allowed");
    send(&mut ws, json!({"op": "subscribe", "id": 6, "topics": [""]}));
    assert_eq!(next(&mut ws)["code"], "invalid_topic");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(close_code(&mut ws), 1003);

    let mut big = connect(&herald, &format!("access_token={t}"));
    big.send(Message::text("x".repeat(2000))).unwrap();
    assert_eq!(close_code(&mut big), 1009);

    let mut chatty = connect(&herald, &format!("access_token={t}"));
    for i in 0..40 {
        if chatty
            .send(Message::text(json!({"op": "ping", "id": i}).to_string()))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut chatty), 4429);

    // Invalid UTF-8 in a text frame: 1007 (sent raw: the client library refuses to).
    use std::io::Write;
    let mut raw = raw_upgrade(&herald, &format!("access_token={t}"));
    raw.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]).unwrap();
    assert_eq!(raw_close_code(&mut raw), 1007);
}

/// Upgrades a raw socket (a client that then never sends a frame, not even a pong).
fn raw_upgrade(herald: &Herald, query: &str) -> TcpStream {
    use std::io::{Read, Write};
    let mut raw = TcpStream::connect(herald.public).unwrap();
    raw.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        raw,
        "GET /v2/ws?{query} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        raw.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    raw
}

/// The close code of the first close frame on a raw socket, skipping other server frames.
fn raw_close_code(raw: &mut TcpStream) -> u16 {
    use std::io::Read;
    loop {
        let mut header = [0u8; 2];
        raw.read_exact(&mut header).unwrap();
        let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
        assert!(payload.len() < 126, "a small frame");
        raw.read_exact(&mut payload).unwrap();
        if header[0] == 0x88 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn herald_pings_and_closes_a_silent_peer_4512_while_an_answering_one_stays() {
    let herald = Herald::start_with(&[("WS_PING_INTERVAL", "1")]);
    let t = token(json!({"topics": ["a"]}));
    let mut silent = raw_upgrade(&herald, &format!("access_token={t}"));
    let mut answering = connect(&herald, &format!("access_token={t}"));
    let started = Instant::now();
    // The answering client reads (tungstenite answers ping frames) and gets JSON pings too.
    let mut json_pings = 0;
    while started.elapsed() < Duration::from_secs(14) && json_pings < 3 {
        if let Message::Text(t) = answering.read().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["op"], "ping");
            json_pings += 1;
        }
    }
    assert_eq!(json_pings, 3);
    assert_eq!(raw_close_code(&mut silent), 4512);
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "closed after {:?}",
        started.elapsed()
    );
    send(&mut answering, json!({"op": "ping", "id": 1}));
    assert_eq!(next(&mut answering)["op"], "pong");
}

#[test]
fn a_request_that_is_not_an_upgrade_gets_a_precise_4xx() {
    let herald = Herald::start();
    let r = common::request(herald.public, "GET /v2/ws HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid_upgrade"), "{}", r.text());
    let r = common::request(
        herald.public,
        "GET /v2/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 8\r\n\r\n",
    );
    assert_eq!(r.status, 426, "{}", r.text());
    let r = common::request(
        herald.public,
        "GET /v2/ws?access_token=nope HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn shutdown_closes_1001() {
    let herald = Herald::start_with(&[("SHUTDOWN_DRAIN_TIMEOUT", "2000")]);
    let t = token(json!({"topics": ["a"]}));
    let mut ws = connect(&herald, &format!("access_token={t}&topic=a"));
    next(&mut ws);
    herald.terminate();
    assert_eq!(close_code(&mut ws), 1001);
}

#[test]
fn a_slow_consumer_is_closed_4508_and_resumes_with_its_cursor() {
    let herald = Herald::start_with(&[("SUBSCRIPTION_OUTBOX_CAPACITY", "4")]);
    let t = token(json!({"topics": ["a"]}));
    let mut ws = connect(&herald, &format!("access_token={t}&topic=a"));
    let ack = next(&mut ws);
    let cursor = ack["cursor"].as_str().unwrap().to_owned();
    // The client stops reading while big messages pile up past the socket buffers and the outbox.
    let payload = "x".repeat(60_000);
    for _ in 0..200 {
        publish(&herald, "a", &payload);
    }
    let mut last_cursor = cursor;
    let code = loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["op"] == "msg" {
                    last_cursor = v["cursor"].as_str().unwrap().to_owned();
                }
            }
            Ok(Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, 4508);
    // Resuming replays what the connection did not get.
    let mut again = connect(&herald, &format!("access_token={t}"));
    subscribe(&mut again, 1, &["a"], Some(&last_cursor));
    assert_eq!(next(&mut again)["op"], "msg");
    let _ = CloseCode::Normal;
}

#[test]
fn a_publish_over_websocket_on_one_node_reaches_sse_and_long_poll_on_another() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let writer = token(json!({"topics": ["room"], "publish": ["room"]}));
    let mut sse = Sse::open_raw(
        nodes[1].public,
        &format!("GET /v2/subscribe?topic=room HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {writer}\r\n\r\n"),
    );
    let opening = sse.next_event();
    let cursor = opening.strip_prefix("id: ").unwrap().trim().to_owned();
    common::eventually("node 1 listens", || {
        redis.channel_subscribers(&format!("herald:{{{ISSUER}-room}}")) == 1
    });
    let mut ws = connect(&nodes[0], &format!("access_token={writer}"));
    send(
        &mut ws,
        json!({"op": "publish", "id": 1, "topic": "room", "event": "say", "payload": "hello"}),
    );
    assert_eq!(next(&mut ws)["op"], "ack");
    assert!(sse.next_message().contains("\"payload\":\"hello\""));
    let poll = common::request(
        nodes[1].public,
        &format!(
            "GET /v2/poll?topic=room&cursor={cursor}&timeout=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {writer}\r\n\r\n"
        ),
    );
    let answer: Value = serde_json::from_str(&poll.text()).unwrap();
    assert_eq!(answer["messages"][0]["payload"], "hello", "{answer}");
    // And a WebSocket on node 1 resumes from node 0's position.
    let mut reader = connect(&nodes[1], &format!("access_token={writer}"));
    subscribe(&mut reader, 1, &["room"], Some(&cursor));
    assert_eq!(next(&mut reader)["payload"], "hello");
}

#[test]
fn a_resume_a_cluster_node_cannot_read_for_too_long_closes_4503() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 1, &[("CLUSTER_RESUME_TIMEOUT", "1000")]);
    let t = token(json!({"topics": ["a"]}));
    publish(&nodes[0], "a", "1");
    redis.stop();
    let mut ws = connect(&nodes[0], &format!("access_token={t}"));
    subscribe(&mut ws, 1, &["a"], Some("0"));
    assert_eq!(close_code(&mut ws), 4503);
}

#[test]
fn a_browser_authenticates_with_a_ticket_or_the_token_cookie() {
    let herald = Herald::start_with(&[("PUBLIC_API_ALLOWED_ORIGINS", "https://app\\.example")]);
    let t = token(json!({"topics": ["a"]}));
    let minted = common::request(
        herald.public,
        &format!(
            "POST /v2/tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    let ticket = minted.json()["ticket"].as_str().unwrap().to_owned();
    let mut ws = connect(&herald, &format!("ticket={ticket}&topic=a"));
    assert_eq!(next(&mut ws)["op"], "ack");
    // Single-use: the same ticket again is refused at the handshake.
    let again = common::request(
        herald.public,
        &format!(
            "GET /v2/ws?ticket={ticket} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        ),
    );
    assert_eq!(again.status, 401, "{}", again.text());
    // The cookie, as a browser sends it on a same-site WebSocket.
    let stream = TcpStream::connect(herald.public).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/v2/ws?topic=a", herald.public).as_str(),
    )
    .unwrap();
    request
        .headers_mut()
        .insert("cookie", format!("herald_token={t}").parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    let (mut cookie_ws, _) = tungstenite::client(request, stream).unwrap();
    // The cookie from another site's page, or with no Origin, is refused: WebSockets have no CORS.
    for origin in ["origin: https://evil.example\r\n", ""] {
        let r = common::request(
            herald.public,
            &format!(
                "GET /v2/ws?topic=a HTTP/1.1\r\nhost: x\r\n{origin}cookie: herald_token={t}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
            ),
        );
        assert_eq!(r.status, 403, "{origin:?}: {}", r.text());
        assert!(r.text().contains("origin_not_allowed"), "{}", r.text());
    }
    assert_eq!(next(&mut cookie_ws)["op"], "ack");
    publish(&herald, "a", "both");
    assert_eq!(next(&mut ws)["payload"], "both");
    assert_eq!(next(&mut cookie_ws)["payload"], "both");
}
