//! Herald nodes on a Redis Cluster (`REDIS_CLUSTER=true`): three private `redis-server` masters
//! whose slots split the topics (issue 6, item 1; docs/cluster.md).

mod common;

use std::time::Duration;

use common::redis::{RedisCluster, start_nodes};
use common::*;

const ON_CLUSTER: (&str, &str) = ("REDIS_CLUSTER", "true");
const FAST_TTL: (&str, &str) = ("CLUSTER_NODE_TTL", "900");

fn publish_to(h: &Herald, topic: &str, payload: &str) -> u16 {
    h.publish(
        &pub_token("test_issuer1"),
        &format!(r#"{{"topic":"{topic}","message":{{"event":"e","payload":"{payload}"}}}}"#),
    )
    .status
}

fn subscribe_from(h: &Herald, topic: &str, last_event_id: u64) -> Sse {
    let s = h.subscribe(
        &sub_token("test_issuer1", topic),
        &format!("last-event-id: {last_event_id}\r\n"),
    );
    assert_eq!(s.response.status, 200);
    s
}

fn data_of(event: &str) -> String {
    event.split("data: ").nth(1).unwrap().trim_end().to_owned()
}

fn channel(topic: &str) -> String {
    format!("herald:{{test_issuer1-{topic}}}")
}

#[test]
fn topics_spread_over_the_masters_and_every_publish_reaches_every_node_once() {
    let cluster = RedisCluster::start(3);
    // One seed URL: the nodes discover the other masters from it.
    let nodes = start_nodes(&cluster.url(), 2, &[ON_CLUSTER, FAST_TTL]);
    let topics: Vec<String> = (0..12).map(|i| format!("topic{i}")).collect();
    let mut subs: Vec<(Sse, Sse)> = topics
        .iter()
        .map(|t| (subscribe_from(&nodes[0], t, 0), subscribe_from(&nodes[1], t, 0)))
        .collect();
    for (i, t) in topics.iter().enumerate() {
        assert_eq!(publish_to(&nodes[i % 2], t, t), 200);
    }
    for (t, (a, b)) in topics.iter().zip(&mut subs) {
        for s in [a, b] {
            assert_eq!(&data_of(&s.next_message()), t);
            s.expect_silence(Duration::from_millis(30));
        }
    }
    // Each topic is heard on the master that owns its slot, by both nodes; the topics use all
    // three masters.
    let mut owners = std::collections::HashSet::new();
    for t in &topics {
        assert_eq!(cluster.shard_channel_subscribers(&channel(t)), 2, "{t}");
        owners.insert(cluster.owner_of(&channel(t)));
    }
    assert_eq!(owners.len(), 3, "{owners:?}");
    // Membership works on the cluster too.
    let text = nodes[0].get_internal("/nodes").text();
    assert!(text.contains("Total nodes: 2"), "{text}");
}

#[test]
fn a_client_resumes_on_another_node_from_the_shared_history() {
    let cluster = RedisCluster::start(3);
    let nodes = start_nodes(&cluster.url(), 2, &[ON_CLUSTER]);
    for i in 1..=5 {
        assert_eq!(publish_to(&nodes[0], "t", &i.to_string()), 200);
    }
    let history = nodes[1].get_internal("/history/test_issuer1-t").json();
    let ids: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["timestamp"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let mut s = subscribe_from(&nodes[1], "t", ids[2]);
    assert_eq!(data_of(&s.next_message()), "4");
    assert_eq!(data_of(&s.next_message()), "5");
    assert_eq!(publish_to(&nodes[0], "t", "6"), 200);
    assert_eq!(data_of(&s.next_message()), "6");
    s.expect_silence(Duration::from_millis(200));
}

#[test]
fn a_master_restarted_mid_stream_loses_no_retained_message() {
    let mut cluster = RedisCluster::start(3);
    let nodes = start_nodes(&cluster.url(), 2, &[ON_CLUSTER, FAST_TTL]);
    let owner = cluster.owner_of(&channel("t"));
    // A topic on another master keeps working throughout.
    let other = (0..100)
        .map(|i| format!("other{i}"))
        .find(|t| cluster.owner_of(&channel(t)) != owner)
        .unwrap();
    let mut s = subscribe_from(&nodes[1], "t", 0);
    let mut s_other = subscribe_from(&nodes[1], &other, 0);
    assert_eq!(publish_to(&nodes[0], "t", "before"), 200);
    assert_eq!(data_of(&s.next_message()), "before");

    cluster.nodes[owner].stop();
    // Not accepted, so not promised: the publisher is told to retry.
    assert_eq!(publish_to(&nodes[0], "t", "refused"), 503);
    assert_eq!(publish_to(&nodes[0], &other, "unaffected"), 200);
    assert_eq!(data_of(&s_other.next_message()), "unaffected");

    cluster.restart(owner);
    // Accepted as soon as node 0 reaches the master again, perhaps before node 1 listens to it
    // again: node 1 then finds it in the shared history when it catches up.
    eventually("a publish to be accepted again", || {
        publish_to(&nodes[0], "t", "during") == 200
    });
    assert_eq!(data_of(&s.next_message()), "during");
    assert_eq!(publish_to(&nodes[0], "t", "after"), 200);
    assert_eq!(data_of(&s.next_message()), "after");
    s.expect_silence(Duration::from_millis(300));
    s_other.expect_silence(Duration::from_millis(10));
    assert!(metric(&nodes[1], "herald_backplane_caught_up_topics_total") >= 1.0);
    assert!(metric(&nodes[0], r#"herald_backplane_errors_total{operation="publish"}"#) >= 1.0);
}

#[test]
fn a_topic_whose_slot_moves_to_another_master_keeps_its_subscribers_and_history() {
    let cluster = RedisCluster::start(3);
    let nodes = start_nodes(&cluster.url(), 2, &[ON_CLUSTER, FAST_TTL]);
    let mut s = subscribe_from(&nodes[1], "t", 0);
    assert_eq!(publish_to(&nodes[0], "t", "before"), 200);
    assert_eq!(data_of(&s.next_message()), "before");
    let from = cluster.owner_of(&channel("t"));
    let to = (from + 1) % 3;

    cluster.move_slot_of(&channel("t"), to);
    // Node 1 listens on the new owner (the old one dropped the channel with the slot)...
    eventually("node 1 to listen on the new owner", || {
        cluster.shard_channel_subscribers(&channel("t")) == 1
    });
    // ...publishes follow the slot, and the history moved with it.
    assert_eq!(publish_to(&nodes[0], "t", "after"), 200);
    assert_eq!(data_of(&s.next_message()), "after");
    s.expect_silence(Duration::from_millis(300));
    let history = nodes[0].get_internal("/history/test_issuer1-t").json();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
}
