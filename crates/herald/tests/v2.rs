//! Herald's own subscribe API (v2): one SSE stream for many topics, authorised by the token's
//! grants, with a token from a header, the query or a cookie, resumed on every topic by one cursor.

mod common;

use std::time::Duration;

use common::redis::{RedisServer, start_nodes};
use common::{DEADLINE, Herald, Sse, eventually, metric, now_s, request};
use herald::auth::keys::development_auth;
use herald::auth::token::sign_claims;
use serde_json::{Value, json};

const ISSUER: &str = "test_issuer1";

/// A subscriber token of `ISSUER` with these extra claims (`sub`, `topics`, `roles`, …).
fn token(extra: Value) -> String {
    token_of(ISSUER, extra)
}

fn token_of(issuer: &str, extra: Value) -> String {
    let auth = development_auth().0;
    let mut claims = json!({"iss": issuer, "aud": auth.audience, "iat": now_s(), "exp": now_s() + 120});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    sign_claims(&claims, auth.issuer(issuer).unwrap().secrets[0].bytes())
}

/// `GET /v2/subscribe?{query}` with these header lines (each ending in `\r\n`).
fn subscribe(herald: &Herald, query: &str, headers: &str) -> Sse {
    Sse::open_raw(
        herald.public,
        &format!("GET /v2/subscribe?{query} HTTP/1.1\r\nhost: x\r\n{headers}\r\n"),
    )
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}\r\n")
}

fn publish(herald: &Herald, topic: &str, payload: &str) {
    herald.publish_ok(
        ISSUER,
        &json!({"topic": topic, "message": {"event": "update", "payload": payload}}).to_string(),
    );
}

/// A v2 message event: its cursor and its data.
#[derive(Debug)]
struct Event {
    cursor: String,
    topic: String,
    payload: String,
}

fn parse(event: &str) -> Event {
    let cursor = event
        .strip_prefix("id: ")
        .and_then(|r| r.split('\n').next())
        .unwrap_or_else(|| panic!("no id: {event:?}"));
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data: {event:?}"));
    assert!(event.contains("\nevent: update\n"), "{event:?}");
    let data: Value = serde_json::from_str(data).unwrap();
    Event {
        cursor: cursor.to_owned(),
        topic: data["topic"].as_str().unwrap().to_owned(),
        payload: data["payload"].as_str().unwrap().to_owned(),
    }
}

/// The cursor of the id-only event a v2 stream opens with.
fn opening_cursor(sse: &mut Sse) -> String {
    let first = sse.next_event();
    let cursor = first
        .strip_prefix("id: ")
        .and_then(|r| r.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("expected an id-only event, got {first:?}"));
    cursor.to_owned()
}

fn messages(sse: &mut Sse, n: usize) -> Vec<Event> {
    (0..n).map(|_| parse(&sse.next_message())).collect()
}

fn topic_payloads(events: &[Event]) -> Vec<(String, String)> {
    events.iter().map(|e| (e.topic.clone(), e.payload.clone())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(t, p)| (t.to_string(), p.to_string())).collect()
}

#[test]
fn one_stream_carries_every_granted_topic_and_each_event_carries_the_cursor() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["news", "orders.*"]}));
    let mut sse = subscribe(&herald, "topic=news&topic=orders.42", &bearer(&t));
    assert_eq!(sse.response.status, 200, "{}", sse.response.head);
    assert_eq!(
        sse.response.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let opening = opening_cursor(&mut sse);
    assert!(opening.starts_with("m1."), "{opening}");
    publish(&herald, "news", "n1");
    publish(&herald, "orders.42", "o1");
    publish(&herald, "elsewhere", "not mine");
    publish(&herald, "news", "n2");
    let got = messages(&mut sse, 3);
    assert_eq!(
        topic_payloads(&got),
        pairs(&[("news", "n1"), ("orders.42", "o1"), ("news", "n2")])
    );
    let cursors: Vec<&str> = got.iter().map(|e| e.cursor.as_str()).collect();
    assert!(
        cursors.iter().all(|c| c.starts_with("m1.") && *c != opening),
        "{cursors:?}"
    );
    assert!(cursors[0] != cursors[1] && cursors[1] != cursors[2]);
    sse.expect_silence(Duration::from_millis(200));
}

#[test]
fn the_cursor_resumes_every_topic_exactly_where_it_was() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b", "c"]}));
    let mut sse = subscribe(&herald, "topic=a&topic=b&topic=c", &bearer(&t));
    opening_cursor(&mut sse);
    publish(&herald, "a", "a1");
    publish(&herald, "b", "b1");
    let seen = messages(&mut sse, 2);
    drop(sse);
    // Missed while away: more on a and b, the first on c.
    publish(&herald, "b", "b2");
    publish(&herald, "a", "a2");
    publish(&herald, "c", "c1");
    publish(&herald, "a", "a3");
    // The topics in another order are the same connection: the cursor still fits.
    let last = &seen[1].cursor;
    let mut again = subscribe(
        &herald,
        "topic=c&topic=a&topic=b",
        &format!("{}last-event-id: {last}\r\n", bearer(&t)),
    );
    assert_eq!(again.response.status, 200, "{}", again.response.head);
    opening_cursor(&mut again);
    let replayed = messages(&mut again, 4);
    let mut per_topic: Vec<(String, String)> = topic_payloads(&replayed);
    per_topic.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        per_topic,
        pairs(&[("a", "a2"), ("a", "a3"), ("b", "b2"), ("c", "c1")]),
        "each missed message once, in per-topic order"
    );
    publish(&herald, "b", "b3");
    assert_eq!(topic_payloads(&messages(&mut again, 1)), pairs(&[("b", "b3")]));
    again.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_client_that_reconnects_before_its_first_message_resumes_from_the_opening_cursor() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b"]}));
    publish(&herald, "a", "before the connection");
    let mut sse = subscribe(&herald, "topic=a&topic=b", &bearer(&t));
    let opening = opening_cursor(&mut sse);
    drop(sse);
    publish(&herald, "b", "while away");
    let mut again = subscribe(
        &herald,
        &format!("topic=a&topic=b&last_event_id={opening}"),
        &bearer(&t),
    );
    opening_cursor(&mut again);
    assert_eq!(topic_payloads(&messages(&mut again, 1)), pairs(&[("b", "while away")]));
    again.expect_silence(Duration::from_millis(200));
}

#[test]
fn one_topic_keeps_plain_integer_ids() {
    let herald = Herald::start();
    let t = token(json!({"sub": "me"}));
    // No topic parameter: the token's sub.
    let mut sse = subscribe(&herald, "", &bearer(&t));
    assert_eq!(opening_cursor(&mut sse), "0");
    publish(&herald, "me", "x");
    let e = parse(&sse.next_message());
    assert!(e.cursor.parse::<u64>().is_ok(), "{}", e.cursor);
    assert_eq!((e.topic.as_str(), e.payload.as_str()), ("me", "x"));
}

#[test]
fn topics_outside_the_grants_are_refused_by_name() {
    let herald = Herald::start_with(&[("PUBLIC_API_PRIVILEGED_ROLES", "support, admin")]);
    let t = token(json!({"sub": "me", "topics": ["news", "orders.*"]}));
    let r = request(
        herald.public,
        &format!(
            "GET /v2/subscribe?topic=news&topic=secret HTTP/1.1\r\nhost: x\r\n{}\r\n",
            bearer(&t)
        ),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["error_code"], "topic_not_allowed");
    assert!(r.text().contains("secret"), "{}", r.text());
    for allowed in ["me", "orders.1", "news"] {
        let sse = subscribe(&herald, &format!("topic={allowed}"), &bearer(&t));
        assert_eq!(sse.response.status, 200, "{allowed}");
    }
    // A privileged role reads any topic of its issuer…
    let admin = token(json!({"roles": ["admin"]}));
    let mut sse = subscribe(&herald, "topic=anything", &bearer(&admin));
    assert_eq!(sse.response.status, 200);
    opening_cursor(&mut sse);
    // …and never another issuer's.
    herald.publish_ok(
        "test_issuer2",
        &json!({"topic": "anything", "message": {"event": "update", "payload": "other issuer"}}).to_string(),
    );
    publish(&herald, "anything", "mine");
    assert_eq!(parse(&sse.next_message()).payload, "mine");
    assert_eq!(
        metric(&herald, "herald_requests_refused_total{code=\"topic_not_allowed\"}"),
        1.0
    );
}

#[test]
fn the_token_may_come_from_the_query_or_a_cookie_and_is_never_logged() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let mut by_query = subscribe(&herald, &format!("topic=a&access_token={t}"), "");
    assert_eq!(by_query.response.status, 200, "{}", by_query.response.head);
    let mut by_cookie = subscribe(&herald, "topic=a", &format!("cookie: theme=dark; herald_token={t}\r\n"));
    assert_eq!(by_cookie.response.status, 200, "{}", by_cookie.response.head);
    opening_cursor(&mut by_query);
    opening_cursor(&mut by_cookie);
    publish(&herald, "a", "both");
    assert_eq!(parse(&by_query.next_message()).payload, "both");
    assert_eq!(parse(&by_cookie.next_message()).payload, "both");
    // A bad query token is refused like a bad header token.
    let r = request(
        herald.public,
        "GET /v2/subscribe?topic=a&access_token=nope HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["error_code"], "invalid_jwt_token");
    let r = request(herald.public, "GET /v2/subscribe?topic=a HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errors"][0]["error_code"], "missing_token");
    let signature = t.rsplit('.').next().unwrap();
    eventually("the requests are logged", || {
        herald.logs().iter().any(|l| l.contains("/v2/subscribe"))
    });
    assert!(
        !herald
            .logs()
            .iter()
            .any(|l| l.contains(signature) || l.contains("access_token=")),
        "a token reached the logs"
    );
}

#[test]
fn bad_topics_and_cursors_get_a_precise_400() {
    let herald = Herald::start_with(&[("PUBLIC_API_MAX_TOPICS_PER_CONNECTION", "3")]);
    let t = token(json!({"topics": ["*"]}));
    let ask = |query: &str, headers: &str| {
        request(
            herald.public,
            &format!(
                "GET /v2/subscribe?{query} HTTP/1.1\r\nhost: x\r\n{}{headers}\r\n",
                bearer(&t)
            ),
        )
    };
    let too_long = format!("topic={}", "x".repeat(257));
    for (query, headers, code) in [
        ("topic=a&topic=b&topic=c&topic=d", "", "too_many_topics"),
        ("topic=", "", "invalid_topic"),
        ("topic=%07", "", "invalid_topic"),
        (too_long.as_str(), "", "invalid_topic"),
        ("topic=a&topic=b", "last-event-id: 12\r\n", "invalid_cursor"),
        (
            "topic=a&topic=b",
            "last-event-id: m1.zz.000000.0.0\r\n",
            "invalid_cursor",
        ),
        ("topic=a", "last-event-id: m1.1.000000.0.0\r\n", "invalid_cursor"),
        ("topic=a&last_event_id=nope", "", "invalid_cursor"),
        ("topic=a&access_token=x&access_token=y", "", "invalid_query"),
    ] {
        let r = ask(query, headers);
        assert_eq!(r.status, 400, "{query} {headers}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["error_code"], code, "{query} {headers}");
    }
    // The same topic twice is one topic; three distinct ones are within the limit.
    assert_eq!(
        subscribe(&herald, "topic=a&topic=a&topic=b&topic=c", &bearer(&t))
            .response
            .status,
        200
    );
    // A cursor of another topic set.
    let mut sse = subscribe(&herald, "topic=a&topic=b", &bearer(&t));
    let cursor = opening_cursor(&mut sse);
    let r = ask("topic=a&topic=c", &format!("last-event-id: {cursor}\r\n"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("another set of topics"), "{}", r.text());
    assert_eq!(
        metric(&herald, "herald_requests_refused_total{code=\"invalid_cursor\"}"),
        5.0
    );
    let bad_grants = token(json!({"topics": "a"}));
    let r = request(
        herald.public,
        &format!(
            "GET /v2/subscribe?topic=a HTTP/1.1\r\nhost: x\r\n{}\r\n",
            bearer(&bad_grants)
        ),
    );
    assert_eq!(
        (r.status, r.json()["errors"][0]["error_code"].as_str()),
        (401, Some("invalid_grants"))
    );
}

#[test]
fn an_allowed_origin_gets_credentialed_cors() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let sse = subscribe(
        &herald,
        "topic=a",
        &format!("{}origin: http://localhost:3000\r\n", bearer(&t)),
    );
    assert_eq!(
        sse.response.header("access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(
        sse.response.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let other = subscribe(
        &herald,
        "topic=a",
        &format!("{}origin: https://evil.example\r\n", bearer(&t)),
    );
    assert_eq!(
        other.response.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(other.response.header("access-control-allow-credentials"), None);
}

#[test]
fn a_users_every_connection_receives_a_publish_to_its_topic() {
    // The POC seed's "address a user": several tabs and devices, v1 and v2, one topic each holds.
    let herald = Herald::start();
    let user = token(json!({"sub": "user-7", "topics": ["news"]}));
    let mut tab1 = subscribe(&herald, "topic=user-7&topic=news", &bearer(&user));
    let mut tab2 = subscribe(&herald, "topic=user-7", &bearer(&user));
    let mut old_app = herald.subscribe(&common::sub_token(ISSUER, "user-7"), "");
    opening_cursor(&mut tab1);
    opening_cursor(&mut tab2);
    publish(&herald, "user-7", "hello");
    assert_eq!(parse(&tab1.next_message()).payload, "hello");
    assert_eq!(parse(&tab2.next_message()).payload, "hello");
    assert!(old_app.next_message().ends_with("data: hello\n\n"));
}

#[test]
fn a_cursor_from_one_node_resumes_on_another() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let t = token(json!({"topics": ["a", "b"]}));
    let mut sse = subscribe(&nodes[0], "topic=a&topic=b", &bearer(&t));
    assert_eq!(sse.response.status, 200);
    opening_cursor(&mut sse);
    eventually("node 0 listens to both topics", || {
        ["a", "b"]
            .iter()
            .all(|t| redis.channel_subscribers(&format!("herald:{{{ISSUER}-{t}}}")) == 1)
    });
    publish(&nodes[1], "a", "a1");
    publish(&nodes[1], "b", "b1");
    let seen = messages(&mut sse, 2);
    drop(sse);
    publish(&nodes[0], "a", "a2");
    publish(&nodes[1], "b", "b2");
    let mut again = subscribe(
        &nodes[1],
        "topic=a&topic=b",
        &format!("{}last-event-id: {}\r\n", bearer(&t), seen[1].cursor),
    );
    assert_eq!(again.response.status, 200);
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while got.len() < 2 && std::time::Instant::now() < deadline {
        let e = again.next_message();
        if e.contains("\ndata: ") {
            got.push(parse(&e));
        }
    }
    let mut per_topic = topic_payloads(&got);
    per_topic.sort();
    assert_eq!(per_topic, pairs(&[("a", "a2"), ("b", "b2")]));
    again.expect_silence(Duration::from_millis(300));
}

/// `GET /v2/poll?{query}` with the token in the header; the JSON answer.
fn poll(herald: &Herald, token: &str, query: &str) -> Value {
    let r = request(
        herald.public,
        &format!(
            "GET /v2/poll?{query} HTTP/1.1\r\nhost: x\r\n{}connection: close\r\n\r\n",
            bearer(token)
        ),
    );
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    r.json()
}

fn polled(answer: &Value) -> Vec<(String, String)> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_owned(),
                m["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_poll_without_a_cursor_answers_at_once_with_the_position_then_polls_resume_from_it() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b"]}));
    publish(&herald, "a", "before");
    let first = poll(&herald, &t, "topic=a&topic=b");
    assert_eq!(polled(&first), pairs(&[]));
    let cursor = first["cursor"].as_str().unwrap().to_owned();
    assert!(cursor.starts_with("m1."), "{first}");
    publish(&herald, "b", "b1");
    publish(&herald, "a", "a1");
    let next = poll(&herald, &t, &format!("topic=a&topic=b&cursor={cursor}"));
    let mut got = polled(&next);
    got.sort();
    assert_eq!(got, pairs(&[("a", "a1"), ("b", "b1")]));
    assert_eq!(next["more"], false);
    assert_eq!(next["messages"][0]["event"], "update");
    // Nothing new: an interval poll (timeout=0) answers at once with the same cursor.
    let cursor = next["cursor"].as_str().unwrap();
    let idle = poll(&herald, &t, &format!("topic=a&topic=b&cursor={cursor}&timeout=0"));
    assert_eq!(polled(&idle), pairs(&[]));
    assert_eq!(idle["cursor"], cursor);
}

#[test]
fn a_poll_is_held_until_a_message_arrives() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let cursor = poll(&herald, &t, "topic=a")["cursor"].as_str().unwrap().to_owned();
    let held = {
        let (public, t, cursor) = (herald.public, t.clone(), cursor.clone());
        std::thread::spawn(move || {
            let r = request(
                public,
                &format!(
                    "GET /v2/poll?topic=a&cursor={cursor}&timeout=30 HTTP/1.1\r\nhost: x\r\n{}connection: close\r\n\r\n",
                    bearer(&t)
                ),
            );
            (r.status, r.json())
        })
    };
    eventually("the poll to be held", || metric(&herald, "herald_subscriptions") == 1.0);
    publish(&herald, "a", "now");
    let (status, answer) = held.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(polled(&answer), pairs(&[("a", "now")]));
    assert_ne!(answer["cursor"], cursor.as_str());
    eventually("the poll's connection to close", || {
        metric(&herald, "herald_subscriptions") == 0.0
    });
}

#[test]
fn a_poll_that_times_out_answers_empty_with_the_same_cursor() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let cursor = poll(&herald, &t, "topic=a")["cursor"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let answer = poll(&herald, &t, &format!("topic=a&cursor={cursor}&timeout=1"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before its timeout"
    );
    assert_eq!(polled(&answer), pairs(&[]));
    assert_eq!(answer["cursor"], cursor.as_str());
    let r = request(
        herald.public,
        &format!(
            "GET /v2/poll?topic=a&timeout=56 HTTP/1.1\r\nhost: x\r\n{}\r\n",
            bearer(&t)
        ),
    );
    assert_eq!(
        (r.status, r.json()["errors"][0]["error_code"].as_str()),
        (400, Some("invalid_query"))
    );
}

#[test]
fn polling_in_a_loop_receives_every_message_once_in_order_across_batches() {
    let herald = Herald::start_with(&[("HISTORY_MAX_MESSAGES_PER_TOPIC", "1000")]);
    let t = token(json!({"topics": ["a", "b"]}));
    let mut cursor = poll(&herald, &t, "topic=a&topic=b")["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..150 {
        let topic = if i % 3 == 0 { "b" } else { "a" };
        publish(&herald, topic, &format!("{topic}{i}"));
    }
    let mut got: Vec<(String, String)> = Vec::new();
    let mut answers = 0;
    while got.len() < 150 {
        let answer = poll(&herald, &t, &format!("topic=a&topic=b&cursor={cursor}&timeout=5"));
        answers += 1;
        assert_eq!(
            answer["more"],
            answer["messages"].as_array().unwrap().len() == 100 && got.len() + 100 < 150
        );
        got.extend(polled(&answer));
        cursor = answer["cursor"].as_str().unwrap().to_owned();
        assert!(answers < 10, "too many polls: {}", got.len());
    }
    for topic in ["a", "b"] {
        let mine: Vec<&str> = got
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p.as_str())
            .collect();
        let want: Vec<String> = (0..150)
            .filter(|i| (i % 3 == 0) == (topic == "b"))
            .map(|i| format!("{topic}{i}"))
            .collect();
        assert_eq!(mine, want, "{topic}: every message once, in order");
    }
}

#[test]
fn an_sse_cursor_resumes_a_poll_and_a_poll_cursor_resumes_a_stream() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a", "b"]}));
    let mut sse = subscribe(&herald, "topic=a&topic=b", &bearer(&t));
    opening_cursor(&mut sse);
    publish(&herald, "a", "a1");
    let seen = parse(&sse.next_message());
    drop(sse);
    publish(&herald, "b", "b1");
    let answer = poll(&herald, &t, &format!("topic=a&topic=b&cursor={}", seen.cursor));
    assert_eq!(polled(&answer), pairs(&[("b", "b1")]));
    publish(&herald, "a", "a2");
    let cursor = answer["cursor"].as_str().unwrap();
    let mut again = subscribe(
        &herald,
        "topic=a&topic=b",
        &format!("{}last-event-id: {cursor}\r\n", bearer(&t)),
    );
    opening_cursor(&mut again);
    assert_eq!(topic_payloads(&messages(&mut again, 1)), pairs(&[("a", "a2")]));
    again.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_poll_is_answered_by_any_node() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let t = token(json!({"topics": ["a", "b"]}));
    publish(&nodes[0], "a", "before");
    let first = poll(&nodes[0], &t, "topic=a&topic=b");
    assert_eq!(
        polled(&first),
        pairs(&[]),
        "the heads come from Redis: nothing older is replayed"
    );
    publish(&nodes[0], "a", "a1");
    publish(&nodes[1], "b", "b1");
    let next = poll(
        &nodes[1],
        &t,
        &format!("topic=a&topic=b&cursor={}", first["cursor"].as_str().unwrap()),
    );
    let mut got = polled(&next);
    got.sort();
    assert_eq!(got, pairs(&[("a", "a1"), ("b", "b1")]));
    let last = poll(
        &nodes[0],
        &t,
        &format!("topic=a&topic=b&cursor={}&timeout=0", next["cursor"].as_str().unwrap()),
    );
    assert_eq!(polled(&last), pairs(&[]));
}

/// `POST /v2/tickets` with these header lines.
fn mint(herald: &Herald, headers: &str) -> common::Response {
    request(
        herald.public,
        &format!("POST /v2/tickets HTTP/1.1\r\nhost: x\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"),
    )
}

fn ticket(herald: &Herald, token: &str) -> String {
    let r = mint(herald, &bearer(token));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["expires_in"], 60);
    answer["ticket"].as_str().unwrap().to_owned()
}

#[test]
fn a_ticket_stands_for_its_token_once() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let ticket = ticket(&herald, &t);
    let mut sse = subscribe(&herald, &format!("topic=a&ticket={ticket}"), "");
    assert_eq!(sse.response.status, 200, "{}", sse.response.head);
    opening_cursor(&mut sse);
    publish(&herald, "a", "via ticket");
    assert_eq!(parse(&sse.next_message()).payload, "via ticket");
    // Single use: the same URL again is refused, so a page mints a new ticket to reconnect.
    let again = request(
        herald.public,
        &format!("GET /v2/subscribe?topic=a&ticket={ticket} HTTP/1.1\r\nhost: x\r\n\r\n"),
    );
    assert_eq!(
        (again.status, again.json()["errors"][0]["error_code"].as_str()),
        (401, Some("invalid_ticket"))
    );
    // It carries the token's grants, no more.
    let other = ticket_for_topic(&herald, &t, "b");
    assert_eq!(
        (other.status, other.json()["errors"][0]["error_code"].as_str()),
        (403, Some("topic_not_allowed"))
    );
    for bad in ["nope", "tk1.AAAAAAAAAAAAAAAAAAAAAA"] {
        let r = request(
            herald.public,
            &format!("GET /v2/poll?topic=a&ticket={bad} HTTP/1.1\r\nhost: x\r\n\r\n"),
        );
        assert_eq!(
            (r.status, r.json()["errors"][0]["error_code"].as_str()),
            (401, Some("invalid_ticket")),
            "{bad}"
        );
    }
    assert!(
        !herald.logs().iter().any(|l| l.contains(&ticket)),
        "a ticket reached the logs"
    );
}

fn ticket_for_topic(herald: &Herald, token: &str, topic: &str) -> common::Response {
    let ticket = ticket(herald, token);
    request(
        herald.public,
        &format!("GET /v2/subscribe?topic={topic}&ticket={ticket} HTTP/1.1\r\nhost: x\r\n\r\n"),
    )
}

#[test]
fn only_a_header_token_mints_a_ticket() {
    let herald = Herald::start();
    let t = token(json!({"topics": ["a"]}));
    let by_cookie = mint(&herald, &format!("cookie: herald_token={t}\r\n"));
    assert_eq!(
        by_cookie.status,
        401,
        "a cookie must not mint tickets: {}",
        by_cookie.text()
    );
    let r = request(
        herald.public,
        &format!(
            "POST /v2/tickets?access_token={t} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 401);
    // A page of an allowed origin may mint one with fetch: its preflight allows POST and credentials.
    let preflight = request(
        herald.public,
        "OPTIONS /v2/tickets HTTP/1.1\r\nhost: x\r\norigin: http://localhost:3000\r\naccess-control-request-method: POST\r\naccess-control-request-headers: authorization\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-methods").as_deref(),
        Some("GET, POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
}

#[test]
fn a_ticket_minted_on_one_node_is_redeemed_on_another_once() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let t = token(json!({"topics": ["a"]}));
    let ticket = ticket(&nodes[0], &t);
    let first = request(
        nodes[1].public,
        &format!("GET /v2/poll?topic=a&ticket={ticket}&timeout=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.json()["cursor"].is_string());
    let second = request(
        nodes[0].public,
        &format!("GET /v2/poll?topic=a&ticket={ticket} HTTP/1.1\r\nhost: x\r\n\r\n"),
    );
    assert_eq!(second.status, 401, "{}", second.text());
}

#[test]
fn a_resume_older_than_the_history_is_told_which_topics_it_may_have_missed() {
    let herald = Herald::start_with(&[("HISTORY_MAX_MESSAGES_PER_TOPIC", "2")]);
    let t = token(json!({"topics": ["a", "b"]}));
    let mut sse = subscribe(&herald, "topic=a&topic=b", &bearer(&t));
    let opening = opening_cursor(&mut sse);
    publish(&herald, "a", "a1");
    let seen = parse(&sse.next_message());
    drop(sse);
    // a keeps its last two of a2, a3, a4: a2 is gone, so a resume after a1 is incomplete on a.
    for p in ["a2", "a3", "a4"] {
        publish(&herald, "a", p);
    }
    publish(&herald, "b", "b1");
    let mut again = subscribe(
        &herald,
        "topic=a&topic=b",
        &format!("{}last-event-id: {}\r\n", bearer(&t), seen.cursor),
    );
    opening_cursor(&mut again);
    assert_eq!(again.next_event(), "event: history_gap\ndata: {\"topics\":[\"a\"]}\n\n");
    let mut got = topic_payloads(&messages(&mut again, 3));
    got.sort();
    assert_eq!(got, pairs(&[("a", "a3"), ("a", "a4"), ("b", "b1")]));
    drop(again);
    // From a retained position, or the newest: no alarm.
    let latest = subscribe_and_last_cursor(&herald, &t);
    let mut quiet = subscribe(
        &herald,
        "topic=a&topic=b",
        &format!("{}last-event-id: {latest}\r\n", bearer(&t)),
    );
    opening_cursor(&mut quiet);
    quiet.expect_silence(Duration::from_millis(200));
    // A poll says it in its answer.
    let answer = poll(&herald, &t, &format!("topic=a&topic=b&cursor={opening}&timeout=0"));
    assert_eq!(answer["gap"], json!(["a"]));
    let answer = poll(&herald, &t, &format!("topic=a&topic=b&cursor={latest}&timeout=0"));
    assert_eq!(answer["gap"], json!([]));
}

/// The cursor of a fresh stream on a and b (their current heads).
fn subscribe_and_last_cursor(herald: &Herald, token: &str) -> String {
    let mut sse = subscribe(herald, "topic=a&topic=b", &bearer(token));
    opening_cursor(&mut sse)
}

#[test]
fn after_a_restart_a_resume_is_told_its_history_was_forgotten() {
    let t = token(json!({"topics": ["a", "b"]}));
    let cursor = {
        let herald = Herald::start();
        let mut sse = subscribe(&herald, "topic=a&topic=b", &bearer(&t));
        opening_cursor(&mut sse);
        publish(&herald, "a", "a1");
        parse(&sse.next_message()).cursor
    };
    let herald = Herald::start();
    let mut sse = subscribe(
        &herald,
        "topic=a&topic=b",
        &format!("{}last-event-id: {cursor}\r\n", bearer(&t)),
    );
    opening_cursor(&mut sse);
    // Only a had a position: b's was 0, nothing it could have missed is provable either way.
    assert_eq!(sse.next_event(), "event: history_gap\ndata: {\"topics\":[\"a\"]}\n\n");
}

#[test]
fn on_a_cluster_a_resume_is_told_its_gaps_by_any_node() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[("HISTORY_MAX_MESSAGES_PER_TOPIC", "2")]);
    let t = token(json!({"topics": ["a", "b"]}));
    publish(&nodes[0], "a", "a1");
    // The position after a1 (b has none).
    let after_a1 = poll(&nodes[0], &t, "topic=a&topic=b")["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    // a keeps its last two of a2, a3, a4: a2 is gone, so a resume after a1 is incomplete on a.
    for p in ["a2", "a3", "a4"] {
        publish(&nodes[1], "a", p);
    }
    publish(&nodes[1], "b", "b1");

    // A stream on the other node: the gap on a is told before a's replay, none on b.
    let mut sse = subscribe(
        &nodes[1],
        "topic=a&topic=b",
        &format!("{}last-event-id: {after_a1}\r\n", bearer(&t)),
    );
    assert_eq!(sse.response.status, 200);
    opening_cursor(&mut sse);
    let mut order = Vec::new();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    while got.len() < 3 && std::time::Instant::now() < deadline {
        let e = sse.next_message();
        if e.starts_with("event: history_gap\n") {
            assert_eq!(e, "event: history_gap\ndata: {\"topics\":[\"a\"]}\n\n");
            order.push("gap a".to_owned());
        } else {
            let m = parse(&e);
            order.push(m.topic.clone());
            got.push(m);
        }
    }
    let gap_at = order.iter().position(|e| e == "gap a").expect("the gap on a is told");
    let first_a = order.iter().position(|e| e == "a").expect("a is replayed");
    assert!(gap_at < first_a, "{order:?}");
    assert_eq!(order.iter().filter(|e| e.starts_with("gap")).count(), 1, "{order:?}");
    let mut per_topic = topic_payloads(&got);
    per_topic.sort();
    assert_eq!(per_topic, pairs(&[("a", "a3"), ("a", "a4"), ("b", "b1")]));
    let latest = got.last().unwrap().cursor.clone();
    sse.expect_silence(Duration::from_millis(200));
    drop(sse);

    // A poll on either node says it in its answer; from the newest position, no alarm.
    for node in &nodes {
        let answer = poll(node, &t, &format!("topic=a&topic=b&cursor={after_a1}&timeout=0"));
        assert_eq!(answer["gap"], json!(["a"]), "{answer}");
        let answer = poll(node, &t, &format!("topic=a&topic=b&cursor={latest}&timeout=0"));
        assert_eq!(answer["gap"], json!([]), "{answer}");
    }
    let mut quiet = subscribe(
        &nodes[0],
        "topic=a&topic=b",
        &format!("{}last-event-id: {latest}\r\n", bearer(&t)),
    );
    opening_cursor(&mut quiet);
    quiet.expect_silence(Duration::from_millis(300));
    drop(quiet);

    // Redis forgot everything (flushed, as after a restart without persistence): neither topic
    // can be proven complete after a position it had.
    common::redis::redis_cli(redis.port, &["FLUSHALL"]);
    let answer = poll(&nodes[1], &t, &format!("topic=a&topic=b&cursor={latest}&timeout=0"));
    assert_eq!(answer["gap"], json!(["a", "b"]), "{answer}");
}
