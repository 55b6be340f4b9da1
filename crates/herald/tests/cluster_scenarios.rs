//! Neurow's multi-node integration scenarios (spec §7.2) on three Herald nodes over one private
//! `redis-server`: every public × internal node pair, several subscribers per node, multi-topic
//! and multi-message publishes, and history and its expiry seen from every node.

mod common;

use std::time::Duration;

use common::redis::{RedisServer, start_nodes};
use common::*;

/// Subscribes to a topic nobody published on yet, resuming from 0: the answer then waits until
/// the node listens to the topic's channel, so a publish right after cannot be missed, and there
/// is nothing to replay.
fn subscribe_ready(h: &Herald, topic: &str) -> Sse {
    let s = h.subscribe(&sub_token("test_issuer1", topic), "last-event-id: 0\r\n");
    assert_eq!(s.response.status, 200);
    s
}

#[test]
fn every_node_pair_delivers_the_subscribed_topic_and_only_it() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[]);
    for (i, subscriber_node) in nodes.iter().enumerate() {
        for (j, publisher_node) in nodes.iter().enumerate() {
            let topic = format!("test_topic_{i}{j}");
            let mut s = subscribe_ready(subscriber_node, &topic);
            publisher_node.publish_ok(
                "test_issuer1",
                &format!(r#"{{"topic":"other_topic_{i}{j}","message":{{"event":"e","payload":"not for you","timestamp":1}}}}"#),
            );
            publisher_node.publish_ok(
                "test_issuer1",
                &format!(r#"{{"topic":"{topic}","message":{{"event":"e","payload":"for you","timestamp":2}}}}"#),
            );
            assert_eq!(
                s.next_event(),
                event(2, "e", "for you"),
                "subscriber on {i}, publisher on {j}"
            );
            s.expect_silence(Duration::from_millis(50));
        }
    }
}

#[test]
fn three_subscribers_on_each_node_all_receive_one_publish() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[]);
    let mut subs: Vec<Sse> = nodes
        .iter()
        .flat_map(|h| (0..3).map(move |_| subscribe_ready(h, "all")))
        .collect();
    nodes[0].publish_ok(
        "test_issuer1",
        r#"{"topic":"all","message":{"event":"e","payload":"hi","timestamp":7}}"#,
    );
    for s in &mut subs {
        assert_eq!(s.next_event(), event(7, "e", "hi"));
        s.expect_silence(Duration::from_millis(20));
    }
}

#[test]
fn one_call_to_several_topics_reaches_their_subscribers_on_every_node() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[]);
    let topics = ["t4011", "t4012", "t4013"];
    let mut subs: Vec<Sse> = nodes.iter().zip(topics).map(|(h, t)| subscribe_ready(h, t)).collect();
    let r = nodes[1].publish(
        &pub_token("test_issuer1"),
        r#"{"topics":["t4011","t4012","t4013"],"messages":[{"event":"m1","payload":"one","timestamp":1},{"event":"m2","payload":"two","timestamp":2}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["nb_published"], 6);
    for s in &mut subs {
        assert_eq!(s.next_event(), event(1, "m1", "one"));
        assert_eq!(s.next_event(), event(2, "m2", "two"));
        s.expect_silence(Duration::from_millis(20));
    }
}

fn history_payloads(h: &Herald, topic: &str) -> Vec<String> {
    h.get_internal(&format!("/history/test_issuer1-{topic}"))
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_node_serves_the_same_history_and_expires_it_between_d_and_2d() {
    let redis = RedisServer::start();
    // D = 1 s, Neurow's retention scenario scaled down (it uses 3 s).
    let nodes = start_nodes(&redis.url(), 3, &[("HISTORY_MIN_DURATION", "1")]);
    nodes[0].publish_ok(
        "test_issuer1",
        r#"{"topic":"exp","messages":[{"event":"e","payload":"old1","timestamp":1},{"event":"e","payload":"old2","timestamp":2}]}"#,
    );
    for h in &nodes {
        assert_eq!(history_payloads(h, "exp"), ["old1", "old2"]);
    }
    // Retention is a time promise, so the test waits for time to pass: the first chunk is 2·D old
    // when checked and must be gone; the second is D old and must still be there.
    std::thread::sleep(Duration::from_millis(1000));
    nodes[1].publish_ok(
        "test_issuer1",
        r#"{"topic":"exp","messages":[{"event":"e","payload":"new1","timestamp":3},{"event":"e","payload":"new2","timestamp":4}]}"#,
    );
    std::thread::sleep(Duration::from_millis(1000));
    for h in &nodes {
        assert_eq!(history_payloads(h, "exp"), ["new1", "new2"]);
        let mut s = h.subscribe(&sub_token("test_issuer1", "exp"), "last-event-id: 0\r\n");
        assert_eq!(s.next_event(), event(3, "e", "new1"));
        assert_eq!(s.next_event(), event(4, "e", "new2"));
        s.expect_silence(Duration::from_millis(50));
    }
}
