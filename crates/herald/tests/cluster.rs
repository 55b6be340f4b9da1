//! Several Herald nodes on one private `redis-server` (issue 6, docs/cluster.md).

mod common;

use std::time::Duration;

use common::redis::{RedisServer, redis_cli, start_nodes};
use common::*;

/// A short heartbeat TTL, so a killed node drops out quickly.
const FAST_TTL: (&str, &str) = ("CLUSTER_NODE_TTL", "900");

fn total_nodes(h: &Herald) -> Option<usize> {
    let text = h.get_internal("/nodes").text();
    text.split("Total nodes: ").nth(1)?.split("\r\n").next()?.parse().ok()
}

#[test]
fn nodes_on_one_redis_see_each_other() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[FAST_TTL]);
    for h in &nodes {
        eventually("every node to list three nodes", || total_nodes(h) == Some(3));
        assert_eq!(h.get_internal("/cluster_size_above/3").status, 200);
        let above = h.get_internal("/cluster_size_above/4");
        assert_eq!((above.status, above.text()), (404, "Cluster size: 3\n".to_owned()));
    }
    let text = nodes[0].get_internal("/nodes").text();
    let current = text
        .strip_prefix("Current node: ")
        .unwrap()
        .split("\r\n")
        .next()
        .unwrap();
    assert!(
        current.starts_with("herald@") && current.ends_with(&format!(":{}", nodes[0].internal.port())),
        "{text}"
    );
    // The others, as Neurow's inspect of node atoms, and not this node.
    let others = text.split("Nodes: [").nth(1).unwrap();
    assert_eq!(others.matches(":\"herald@").count(), 2, "{text}");
    assert!(!others.contains(current), "{text}");
    // The gauge follows the heartbeats.
    eventually("the cluster-size gauge to read 3", || {
        metric(&nodes[0], "herald_cluster_nodes") == 3.0
    });
}

#[test]
fn a_killed_node_drops_out_when_its_heartbeat_expires() {
    let redis = RedisServer::start();
    let mut nodes = start_nodes(&redis.url(), 2, &[FAST_TTL]);
    eventually("two nodes", || total_nodes(&nodes[0]) == Some(2));
    nodes[1].kill();
    // Listed until its last heartbeat expires (at most the TTL), then gone.
    eventually("the killed node to expire", || total_nodes(&nodes[0]) == Some(1));
    assert_eq!(nodes[0].get_internal("/cluster_size_above/2").status, 404);
}

#[test]
fn a_node_that_stops_cleanly_leaves_at_once() {
    let redis = RedisServer::start();
    // A long TTL: only leaving explicitly can make it disappear within the test.
    let mut nodes = start_nodes(&redis.url(), 2, &[("CLUSTER_NODE_TTL", "600000")]);
    eventually("two nodes", || total_nodes(&nodes[0]) == Some(2));
    nodes[1].terminate();
    nodes[1].wait_exit(DEADLINE);
    eventually("the stopped node to leave", || total_nodes(&nodes[0]) == Some(1));
}

#[test]
fn without_redis_a_node_still_serves_and_counts_itself() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let nodes = start_nodes(&url, 1, &[FAST_TTL]);
    let h = &nodes[0];
    assert_eq!(total_nodes(h), Some(1));
    assert_eq!(h.get_internal("/cluster_size_above/1").status, 200);
    assert_eq!(h.get_internal("/ping").status, 200);
    // Redis comes back: the node announces itself again without a restart.
    redis.restart();
    eventually("the heartbeat to land", || {
        std::thread::sleep(Duration::from_millis(50));
        h.logs().iter().any(|l| l.contains("cluster heartbeat restored"))
    });
}

fn history_ids(h: &Herald, topic: &str) -> Vec<u64> {
    let r = h.get_internal(&format!("/history/{topic}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["timestamp"].as_u64().unwrap())
        .collect()
}

#[test]
fn publishes_on_any_node_share_one_history_with_increasing_ids() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let body = r#"{"topic":"t","messages":[{"event":"e","payload":"1"},{"event":"e","payload":"2"}]}"#;
    nodes[0].publish_ok("test_issuer1", body);
    nodes[1].publish_ok("test_issuer1", body);
    nodes[0].publish_ok("test_issuer1", body);
    let ids = history_ids(&nodes[1], "test_issuer1-t");
    assert_eq!(ids.len(), 6);
    // Server ids are unique and increasing per topic across nodes, and still read as ms.
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > 1_600_000_000_000, "{ids:?}");
    assert_eq!(history_ids(&nodes[0], "test_issuer1-t"), ids);
    let payloads: Vec<String> = nodes[0]
        .get_internal("/history/test_issuer1-t")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(payloads, ["1", "2", "1", "2", "1", "2"]);
}

#[test]
fn publisher_timestamps_are_the_ids_and_equal_ids_replay_in_publish_order() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    nodes[0].publish_ok(
        "test_issuer1",
        r#"{"topic":"t","messages":[{"event":"e","payload":"a","timestamp":200},{"event":"e","payload":"b","timestamp":200}]}"#,
    );
    nodes[1].publish_ok(
        "test_issuer1",
        r#"{"topic":"t","messages":[{"event":"e","payload":"c","timestamp":100},{"event":"e","payload":"d","timestamp":9007199254740991}]}"#,
    );
    // The next server id is above 2^53, where Lua's doubles would round: the script adds in decimal.
    nodes[0].publish_ok("test_issuer1", r#"{"topic":"t","message":{"event":"e","payload":"s"}}"#);
    let history = nodes[1].get_internal("/history/test_issuer1-t").json();
    let got: Vec<(u64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["timestamp"].as_u64().unwrap(), m["payload"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (100, "c"),
            (200, "a"),
            (200, "b"),
            (9_007_199_254_740_991, "d"),
            (9_007_199_254_740_992, "s")
        ]
    );
}

#[test]
fn with_redis_down_a_publish_is_a_quick_503() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 1, &[]);
    nodes[0].publish_ok("test_issuer1", r#"{"topic":"t","message":{"event":"e","payload":"x"}}"#);
    redis.stop();
    let started = std::time::Instant::now();
    let r = nodes[0].publish(
        &pub_token("test_issuer1"),
        r#"{"topic":"t","message":{"event":"e","payload":"y"}}"#,
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["error_code"], "backplane_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(nodes[0].get_internal("/history/test_issuer1-t").status, 503);
    // Redis back (empty: no persistence): publishes work again without restarting the node.
    redis.restart();
    eventually("publishes to work again", || {
        nodes[0]
            .publish(
                &pub_token("test_issuer1"),
                r#"{"topic":"t","message":{"event":"e","payload":"z"}}"#,
            )
            .status
            == 200
    });
}

fn publish(h: &Herald, payload: &str) {
    h.publish_ok(
        "test_issuer1",
        &format!(r#"{{"topic":"t","message":{{"event":"e","payload":"{payload}"}}}}"#),
    );
}

fn subscribe_from(h: &Herald, last_event_id: u64) -> Sse {
    let s = h.subscribe(
        &sub_token("test_issuer1", "t"),
        &format!("last-event-id: {last_event_id}\r\n"),
    );
    assert_eq!(s.response.status, 200);
    s
}

fn data_of(event: &str) -> &str {
    event.split("data: ").nth(1).unwrap().trim_end()
}

#[test]
fn three_nodes_deliver_every_publish_to_every_subscriber_in_one_order() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[]);
    // Resuming from 0 makes each subscription exactly-once whatever the timing of its catch-up.
    let mut subs: Vec<Sse> = nodes.iter().map(|h| subscribe_from(h, 0)).collect();
    for round in 0..3 {
        for (i, h) in nodes.iter().enumerate() {
            publish(h, &format!("r{round}n{i}"));
        }
    }
    let history = nodes[0].get_internal("/history/test_issuer1-t").json();
    let expected: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| event(m["timestamp"].as_u64().unwrap(), "e", m["payload"].as_str().unwrap()))
        .collect();
    assert_eq!(expected.len(), 9);
    for s in &mut subs {
        let got: Vec<String> = (0..9).map(|_| s.next_message()).collect();
        assert_eq!(got, expected);
        s.expect_silence(Duration::from_millis(200));
    }
    // Live, after the catch-up: one more publish reaches all three once.
    publish(&nodes[1], "last");
    for s in &mut subs {
        assert_eq!(data_of(&s.next_message()), "last");
        s.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn a_client_resumes_on_another_node_without_gap_or_duplicate() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 3, &[]);
    let mut on_a = subscribe_from(&nodes[0], 0);
    for i in 1..=5 {
        publish(&nodes[1], &i.to_string());
    }
    let first = on_a.next_message();
    let second = on_a.next_message();
    assert_eq!((data_of(&first), data_of(&second)), ("1", "2"));
    drop(on_a);
    let mut on_c = subscribe_from(&nodes[2], id_of(&second));
    let rest: Vec<String> = (0..3).map(|_| data_of(&on_c.next_message()).to_owned()).collect();
    assert_eq!(rest, ["3", "4", "5"]);
    publish(&nodes[0], "6");
    assert_eq!(data_of(&on_c.next_message()), "6");
    on_c.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_node_started_later_serves_the_shared_history() {
    let redis = RedisServer::start();
    let first = start_nodes(&redis.url(), 1, &[]);
    for i in 1..=3 {
        publish(&first[0], &i.to_string());
    }
    let late = start_nodes(&redis.url(), 1, &[]);
    assert_eq!(history_ids(&late[0], "test_issuer1-t").len(), 3);
    let mut s = subscribe_from(&late[0], 0);
    let got: Vec<String> = (0..3).map(|_| data_of(&s.next_message()).to_owned()).collect();
    assert_eq!(got, ["1", "2", "3"]);
}

#[test]
fn a_node_listens_to_a_topic_only_while_it_has_subscribers_there() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let channel = "herald:{test_issuer1-t}";
    assert_eq!(redis.channel_subscribers(channel), 0);
    let first = subscribe_from(&nodes[0], 0);
    let second = subscribe_from(&nodes[0], 0);
    eventually("node 0 to listen", || redis.channel_subscribers(channel) == 1);
    let other = subscribe_from(&nodes[1], 0);
    eventually("node 1 to listen too", || redis.channel_subscribers(channel) == 2);
    drop(first);
    drop(other);
    eventually("node 1 to stop listening", || redis.channel_subscribers(channel) == 1);
    drop(second);
    eventually("no node to listen", || redis.channel_subscribers(channel) == 0);
}

#[test]
fn redis_restarted_mid_stream_loses_no_retained_message() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let mut s = subscribe_from(&nodes[1], 0);
    publish(&nodes[0], "before");
    assert_eq!(data_of(&s.next_message()), "before");

    redis.stop();
    // Not accepted, so not promised: the publisher is told to retry.
    let refused = nodes[0].publish(
        &pub_token("test_issuer1"),
        r#"{"topic":"t","message":{"event":"e","payload":"refused"}}"#,
    );
    assert_eq!(refused.status, 503);
    redis.restart();
    // Accepted as soon as node 0 reaches Redis again, perhaps before node 1 listens again: node 1
    // then finds it in the shared history when it resubscribes.
    eventually("a publish to be accepted again", || {
        nodes[0]
            .publish(
                &pub_token("test_issuer1"),
                r#"{"topic":"t","message":{"event":"e","payload":"during"}}"#,
            )
            .status
            == 200
    });
    assert_eq!(data_of(&s.next_message()), "during");
    publish(&nodes[0], "after");
    assert_eq!(data_of(&s.next_message()), "after");
    s.expect_silence(Duration::from_millis(300));
    // An operator sees the outage and the recovery in the metrics.
    assert!(metric(&nodes[0], r#"herald_backplane_errors_total{operation="publish"}"#) >= 1.0);
    assert!(metric(&nodes[1], r#"herald_backplane_errors_total{operation="listen"}"#) >= 1.0);
    assert!(metric(&nodes[1], "herald_backplane_reconnections_total") >= 1.0);
    assert!(metric(&nodes[1], "herald_backplane_caught_up_topics_total") >= 1.0);
}

#[test]
fn a_catch_up_after_an_outage_brings_live_subscribers_only_what_came_after_them() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[FAST_TTL]);
    for i in 1..=3 {
        publish(&nodes[0], &format!("old{i}"));
    }
    // Live only: the three retained messages came before it and are not for it.
    let mut s = nodes[1].subscribe(&sub_token("test_issuer1", "t"), "");
    assert_eq!(s.response.status, 200);
    eventually("node 1 to listen", || {
        redis.channel_subscribers("herald:{test_issuer1-t}") == 1
    });
    redis.freeze();
    eventually("node 1 to find Redis unresponsive", || {
        nodes[1].logs().iter().any(|l| l.contains("unresponsive"))
    });
    redis.thaw();
    eventually("node 1 to catch up", || {
        metric(&nodes[1], "herald_backplane_caught_up_topics_total") >= 1.0
    });
    publish(&nodes[0], "new");
    assert_eq!(data_of(&s.next_message()), "new");
    s.expect_silence(Duration::from_millis(200));
}

#[test]
fn every_key_of_a_topic_expires_even_when_its_stream_is_recreated() {
    let redis = RedisServer::start();
    // D = 4 s: messages live 1.5 D = 6 s, and so does the stream after its last publish.
    let nodes = start_nodes(&redis.url(), 1, &[("HISTORY_MIN_DURATION", "4")]);
    let pttl = |key: &str| -> i64 { redis_cli(redis.port, &["pttl", key]).trim().parse().unwrap() };
    let (stream, last) = ("herald:{test_issuer1-t}:h", "herald:{test_issuer1-t}:last");
    publish(&nodes[0], "1");
    assert!((5_000..=6_000).contains(&pttl(stream)), "{}", pttl(stream));
    // The last id outlives the stream by an hour, so ids keep increasing and a resume after the
    // history expired is still judged exactly.
    assert!((3_605_000..=3_606_000).contains(&pttl(last)), "{}", pttl(last));
    // A stream that vanished (evicted, deleted) gets an expiry again with the next publish.
    assert_eq!(redis_cli(redis.port, &["del", stream]).trim(), "1");
    publish(&nodes[0], "2");
    assert!((5_000..=6_000).contains(&pttl(stream)), "{}", pttl(stream));
    assert_eq!(history_ids(&nodes[0], "test_issuer1-t").len(), 1);
}

#[test]
fn after_a_redis_restart_every_topic_is_listened_to_and_caught_up() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let topics: Vec<String> = (0..50).map(|i| format!("topic{i}")).collect();
    let mut subs: Vec<Sse> = topics
        .iter()
        .map(|t| nodes[1].subscribe(&sub_token("test_issuer1", t), "last-event-id: 0\r\n"))
        .collect();
    redis.restart();
    // Published as soon as node 0 reaches Redis again, before or after node 1 listens again: each
    // arrives once, live or from the catch-up.
    for t in &topics {
        let body = format!(r#"{{"topic":"{t}","message":{{"event":"e","payload":"{t}"}}}}"#);
        eventually("a publish to be accepted", || {
            nodes[0].publish(&pub_token("test_issuer1"), &body).status == 200
        });
    }
    for (t, s) in topics.iter().zip(&mut subs) {
        assert_eq!(&data_of(&s.next_message()), t);
    }
    for s in &mut subs {
        s.expect_silence(Duration::from_millis(10));
    }
    eventually("node 1 to listen to every topic", || {
        topics
            .iter()
            .all(|t| redis.channel_subscribers(&format!("herald:{{test_issuer1-{t}}}")) == 1)
    });
}

/// Issue 11: a resume whose history read is in flight when Redis stops answering is held open and
/// finished once Redis is back; the frozen server makes the read fail for certain, and the node's
/// gauge says when it is waiting, so nothing here depends on timing.
#[test]
fn a_resume_caught_by_a_redis_outage_finishes_once_redis_is_back() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    publish(&nodes[0], "seen");
    publish(&nodes[0], "missed");
    let seen = history_ids(&nodes[0], "test_issuer1-t")[0];

    redis.freeze();
    let mut s = subscribe_from(&nodes[1], seen);
    eventually("node 1 to hold the resume open", || {
        metric(&nodes[1], "herald_backplane_resumes_waiting") == 1.0
    });
    redis.thaw();
    assert_eq!(data_of(&s.next_message()), "missed");
    eventually("the resume to stop waiting", || {
        metric(&nodes[1], "herald_backplane_resumes_waiting") == 0.0
    });
    publish(&nodes[0], "live");
    assert_eq!(data_of(&s.next_message()), "live");
    s.expect_silence(Duration::from_millis(200));
    assert_eq!(metric(&nodes[1], "herald_backplane_resumes_abandoned_total"), 0.0);
}

/// Past `CLUSTER_RESUME_TIMEOUT` without Redis, the resume ends with `reconnect`, so the client
/// tries again (perhaps on a node that reaches Redis).
#[test]
fn a_resume_without_redis_for_too_long_is_told_to_reconnect() {
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 1, &[("CLUSTER_RESUME_TIMEOUT", "1000")]);
    publish(&nodes[0], "1");
    redis.stop();
    let mut s = subscribe_from(&nodes[0], 0);
    match s.next_within(DEADLINE) {
        Next::Chunk(e) => assert_eq!(e, "event: reconnect\n\n"),
        other => panic!("expected event: reconnect, got {other:?}"),
    }
    s.expect_end();
    assert_eq!(metric(&nodes[0], "herald_backplane_resumes_abandoned_total"), 1.0);
    assert_eq!(metric(&nodes[0], "herald_backplane_resumes_waiting"), 0.0);
}

#[test]
fn two_shards_split_topics_and_deliver_each_once() {
    let shards = [RedisServer::start(), RedisServer::start()];
    let url = format!("{},{}", shards[0].url(), shards[1].url());
    let nodes = start_nodes(&url, 2, &[]);
    let topics: Vec<String> = (0..8).map(|i| format!("topic{i}")).collect();
    let mut subs: Vec<Sse> = topics
        .iter()
        .map(|t| nodes[1].subscribe(&sub_token("test_issuer1", t), "last-event-id: 0\r\n"))
        .collect();
    for t in &topics {
        nodes[0].publish_ok(
            "test_issuer1",
            &format!(r#"{{"topic":"{t}","message":{{"event":"e","payload":"{t}"}}}}"#),
        );
    }
    for (t, s) in topics.iter().zip(&mut subs) {
        assert_eq!(data_of(&s.next_message()), t);
        s.expect_silence(Duration::from_millis(50));
    }
    // Each topic lives on exactly one shard, and both shards hold some.
    let mut per_shard = [0, 0];
    for t in &topics {
        let channel = format!("herald:{{test_issuer1-{t}}}");
        let on: Vec<u64> = shards.iter().map(|r| r.channel_subscribers(&channel)).collect();
        assert_eq!(on.iter().sum::<u64>(), 1, "{t}: {on:?}");
        per_shard[usize::from(on[1] == 1)] += 1;
    }
    assert!(per_shard[0] > 0 && per_shard[1] > 0, "{per_shard:?}");
}

#[test]
fn an_unresponsive_redis_bounds_publishes_and_keeps_streams_open() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[]);
    let mut s = subscribe_from(&nodes[1], 0);
    publish(&nodes[0], "before");
    assert_eq!(data_of(&s.next_message()), "before");
    redis.freeze();
    let started = std::time::Instant::now();
    let r = nodes[0].publish(
        &pub_token("test_issuer1"),
        r#"{"topic":"t","message":{"event":"e","payload":"lost"}}"#,
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    redis.thaw();
    eventually("a publish to be accepted again", || {
        nodes[0]
            .publish(
                &pub_token("test_issuer1"),
                r#"{"topic":"t","message":{"event":"e","payload":"after"}}"#,
            )
            .status
            == 200
    });
    // The stream stayed open throughout. The refused publish may still have run once Redis
    // thawed (a timeout cannot tell), so it may appear, but only before "after" and only once.
    let mut got = vec![data_of(&s.next_message()).to_owned()];
    if got[0] == "lost" {
        got.push(data_of(&s.next_message()).to_owned());
    }
    assert_eq!(got.last().map(String::as_str), Some("after"), "{got:?}");
    s.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_redis_cluster_node_without_redis_cluster_true_is_reported() {
    let dir = std::env::temp_dir().join(format!("herald-cluster-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("nodes.conf");
    let redis = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        config.to_str().unwrap(),
    ]);
    let nodes = start_nodes(&redis.url(), 1, &[FAST_TTL]);
    eventually("the Redis Cluster node to be reported", || {
        nodes[0].logs().iter().any(|l| l.contains("Set REDIS_CLUSTER=true"))
    });
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: the listener's health PING expected `+PONG`, but a subscribed connection answers
/// `["pong", ""]`, so every check "failed" and the node reconnected and resubscribed every few
/// seconds (latency spikes of hundreds of ms in the benchmark).
#[test]
fn the_pubsub_health_check_accepts_a_subscribed_pong() {
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis.url(), 2, &[FAST_TTL]);
    let mut s = subscribe_from(&nodes[1], 0);
    publish(&nodes[0], "first");
    assert_eq!(data_of(&s.next_message()), "first");
    // Long enough for two health checks at CLUSTER_NODE_TTL = 900 ms.
    std::thread::sleep(Duration::from_millis(2_000));
    publish(&nodes[0], "second");
    assert_eq!(data_of(&s.next_message()), "second");
    let logs = nodes[1].logs();
    assert!(!logs.iter().any(|l| l.contains("unresponsive")), "{logs:#?}");
}
