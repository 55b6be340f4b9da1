use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::outbox::{CloseReason, Outbox, Taken};
use super::*;
use crate::clock::{Clock, ManualClock};

const T0: u64 = 1_700_000_000_000;

fn hub_with(retention: Retention, max_history_bytes: usize) -> (Hub, ManualClock) {
    let (clock, manual) = Clock::manual(T0);
    (
        Hub::new(
            HubSettings {
                retention,
                max_history_bytes,
            },
            clock,
        ),
        manual,
    )
}

fn hub() -> (Hub, ManualClock) {
    hub_with(Retention::from_min_duration(30_000, 1000), usize::MAX)
}

fn new(payload: &str, timestamp: Option<u64>) -> NewMessage {
    NewMessage {
        event: Bytes::from_static(b"e"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        timestamp,
    }
}

fn topic() -> Topic {
    Topic::namespaced("iss", "t")
}

/// A message as text shaped like its SSE event, to compare with in assertions.
fn render(m: &SharedMessage) -> String {
    let m = m.message();
    format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        m.id,
        String::from_utf8_lossy(&m.event),
        String::from_utf8_lossy(&m.payload)
    )
}

/// Takes every delivery queued in `outbox` and returns their messages as text.
fn drain(outbox: &Outbox) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let mut batch = Vec::new();
        let taken = futures_now(|cx| outbox.poll_take(cx, &mut batch));
        out.extend(batch.iter().map(|d| render(&d.message)));
        if taken != Some(Taken::Deliveries) {
            return out;
        }
    }
}

fn futures_now<T>(mut f: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<T>) -> Option<T> {
    let waker = std::task::Waker::noop();
    match f(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn server_ids_are_unique_and_increasing_within_a_batch() {
    // Neurow gave a whole batch one id, so resuming from the middle of it lost the rest.
    let (hub, _) = hub();
    let ids = hub.publish(&topic(), &[new("a", None), new("b", None), new("c", None)]);
    assert_eq!(ids, [EventId(T0), EventId(T0 + 1), EventId(T0 + 2)]);
    let more = hub.publish(&topic(), &[new("d", None)]);
    assert_eq!(
        more,
        [EventId(T0 + 3)],
        "the clock has not moved, so ids run ahead of it"
    );
}

#[test]
fn publisher_timestamps_are_the_ids() {
    let (hub, _) = hub();
    let ids = hub.publish(&topic(), &[new("a", Some(5)), new("b", Some(5)), new("c", None)]);
    assert_eq!(ids, [EventId(5), EventId(5), EventId(T0)]);
}

#[test]
fn resuming_from_the_middle_of_a_batch_loses_nothing() {
    let (hub, _) = hub();
    hub.publish(&topic(), &[new("a", None), new("b", None), new("c", None)]);
    let outbox = Arc::new(Outbox::new(16, T0, u64::MAX));
    let sub = hub.subscribe(topic(), ResumeFrom::After(i128::from(T0)), outbox, 0);
    let replayed: Vec<_> = sub.replay.iter().map(|m| render(m)).collect();
    assert_eq!(replayed.len(), 2);
    assert!(replayed[0].ends_with("data: b\n\n") && replayed[1].ends_with("data: c\n\n"));
}

#[test]
fn live_subscribers_get_frames_in_publish_order_and_others_do_not() {
    let (hub, _) = hub();
    let mine = Arc::new(Outbox::new(16, T0, u64::MAX));
    let other = Arc::new(Outbox::new(16, T0, u64::MAX));
    hub.subscribe(topic(), ResumeFrom::Live, mine.clone(), 0);
    hub.subscribe(Topic::namespaced("iss", "other"), ResumeFrom::Live, other.clone(), 0);
    hub.publish(&topic(), &[new("1", None), new("2", None)]);
    let got = drain(&mine);
    assert_eq!(
        got,
        [
            format!("id: {T0}\nevent: e\ndata: 1\n\n"),
            format!("id: {}\nevent: e\ndata: 2\n\n", T0 + 1)
        ]
    );
    assert!(drain(&other).is_empty());
}

#[test]
fn a_full_outbox_ends_only_that_subscription() {
    let (hub, _) = hub();
    let slow = Arc::new(Outbox::new(2, T0, u64::MAX));
    let fast = Arc::new(Outbox::new(100, T0, u64::MAX));
    hub.subscribe(topic(), ResumeFrom::Live, slow.clone(), 0);
    hub.subscribe(topic(), ResumeFrom::Live, fast.clone(), 0);
    for i in 0..5 {
        hub.publish(&topic(), &[new(&i.to_string(), None)]);
    }
    assert_eq!(slow.closing(), Some(CloseReason::SlowConsumer));
    assert_eq!(
        drain(&slow).len(),
        2,
        "what was queued before the overflow is still written"
    );
    assert_eq!(drain(&fast).len(), 5);
    assert_eq!(hub.stats().outbox_overflows.load(Ordering::Relaxed), 1);
    assert_eq!(hub.stats().subscriptions.load(Ordering::Relaxed), 1);
}

#[test]
fn a_publish_racing_subscribes_is_delivered_exactly_once() {
    // Publishers and subscribers race on threads; every subscriber that resumes from 0 must see
    // every message exactly once, whether from replay or live.
    let (hub, _) = hub_with(Retention::from_min_duration(30_000, 10_000), usize::MAX);
    let hub = Arc::new(hub);
    const MESSAGES: usize = 2000;
    let publisher = {
        let hub = hub.clone();
        std::thread::spawn(move || {
            for i in 0..MESSAGES {
                hub.publish(&topic(), &[new(&i.to_string(), None)]);
            }
        })
    };
    let mut subscribers = Vec::new();
    while !publisher.is_finished() || subscribers.len() < 5 {
        let outbox = Arc::new(Outbox::new(MESSAGES + 1, T0, u64::MAX));
        let sub = hub.subscribe(topic(), ResumeFrom::After(0), outbox.clone(), 0);
        subscribers.push((sub.replay, outbox));
        std::thread::yield_now();
    }
    publisher.join().unwrap();
    for (replay, outbox) in subscribers {
        let mut payloads: Vec<String> = replay.iter().map(|m| render(m)).collect();
        payloads.extend(drain(&outbox));
        let numbers: Vec<usize> = payloads
            .iter()
            .map(|e| e.rsplit("data: ").next().unwrap().trim().parse().unwrap())
            .collect();
        assert!(
            numbers == (0..MESSAGES).collect::<Vec<_>>(),
            "a gap or a duplicate: {} messages",
            numbers.len()
        );
    }
}

#[test]
fn the_byte_budget_evicts_the_oldest_messages_node_wide() {
    let one = new("x", None);
    let size = Message {
        id: EventId(0),
        event: one.event.clone(),
        payload: one.payload.clone(),
        accepted_ms: 0,
    }
    .retained_size();
    let (hub, _) = hub_with(Retention::from_min_duration(30_000, 1000), size * 10);
    let a = Topic::namespaced("iss", "a");
    let b = Topic::namespaced("iss", "b");
    for _ in 0..6 {
        hub.publish(&a, std::slice::from_ref(&one));
    }
    for _ in 0..5 {
        hub.publish(&b, std::slice::from_ref(&one));
    }
    // 11 messages > budget of 10: eviction goes down to 90 % (9), oldest first: two of topic a.
    assert_eq!(hub.history(&a).len(), 4);
    assert_eq!(hub.history(&b).len(), 5);
    assert_eq!(hub.stats().trimmed_by_byte_cap.load(Ordering::Relaxed), 2);
    assert_eq!(hub.stats().history_bytes.load(Ordering::Relaxed), size * 9);
}

#[test]
fn the_topic_cap_is_counted() {
    let (hub, _) = hub_with(Retention::from_min_duration(30_000, 3), usize::MAX);
    hub.publish(
        &topic(),
        &[new("1", None), new("2", None), new("3", None), new("4", None)],
    );
    assert_eq!(hub.history(&topic()).len(), 3);
    assert_eq!(hub.stats().trimmed_by_topic_cap.load(Ordering::Relaxed), 1);
    assert_eq!(hub.stats().history_messages.load(Ordering::Relaxed), 3);
}

#[test]
fn expiry_frees_history_and_forgets_idle_topics() {
    let (hub, clock) = hub_with(Retention::from_min_duration(3_000, 100), usize::MAX);
    hub.publish(&topic(), &[new("old", None)]);
    clock.advance_ms(3_000);
    hub.publish(&topic(), &[new("new", None)]);
    clock.advance_ms(3_000);
    // Neurow's retention scenario: 6 s after the first chunk only the second remains.
    let left: Vec<_> = hub.history(&topic()).into_iter().map(|m| m.payload).collect();
    assert_eq!(left, ["new"]);
    hub.expire();
    assert_eq!(hub.stats().history_messages.load(Ordering::Relaxed), 1);
    clock.advance_ms(10_000);
    hub.expire();
    assert_eq!(hub.stats().topics.load(Ordering::Relaxed), 0);
    assert_eq!(hub.stats().history_bytes.load(Ordering::Relaxed), 0);
}

#[test]
fn unsubscribing_a_reused_slot_does_not_remove_the_newcomer() {
    let (hub, _) = hub();
    let first = Arc::new(Outbox::new(2, T0, u64::MAX));
    let sub = hub.subscribe(topic(), ResumeFrom::Live, first.clone(), 0);
    // Overflow the first so the hub drops it, then a newcomer takes the same slot.
    for _ in 0..3 {
        hub.publish(&topic(), &[new("x", None)]);
    }
    let second = Arc::new(Outbox::new(8, T0, u64::MAX));
    let _sub2 = hub.subscribe(topic(), ResumeFrom::Live, second.clone(), 0);
    hub.unsubscribe(&sub.key, &first);
    hub.publish(&topic(), &[new("y", None)]);
    assert_eq!(drain(&second).len(), 1);
}

#[test]
fn gaps_are_reported_only_when_history_cannot_prove_the_resume_complete() {
    let (hub, _) = hub_with(Retention::from_min_duration(2_000, 2), usize::MAX);
    let o = || Arc::new(Outbox::new(16, T0, u64::MAX));
    let ids = hub.publish(&topic(), &[new("1", None), new("2", None), new("3", None)]);
    // The cap kept 2 and 3: resuming from 1 or later is complete, from before it is not.
    assert!(
        !hub.subscribe(topic(), ResumeFrom::After(i128::from(ids[0].0)), o(), 0)
            .gap
    );
    assert!(
        hub.subscribe(topic(), ResumeFrom::After(i128::from(ids[0].0) - 1), o(), 0)
            .gap
    );
    assert!(!hub.subscribe(topic(), ResumeFrom::Live, o(), 0).gap);
    // A topic never seen: nothing to miss from 0, but a later position comes from history this
    // node does not have (another node, or before a restart).
    let fresh = Topic::namespaced("iss", "fresh");
    assert!(!hub.subscribe(fresh.clone(), ResumeFrom::After(0), o(), 0).gap);
    assert!(hub.subscribe(fresh.clone(), ResumeFrom::After(5), o(), 0).gap);
}

#[test]
fn a_forgotten_topic_leaves_a_tombstone_that_keeps_gaps_exact_and_ids_increasing() {
    let (hub, clock) = hub_with(Retention::from_min_duration(2_000, 100), usize::MAX);
    let last = hub.publish(&topic(), &[new("1", None), new("2", None)])[1];
    clock.advance_ms(10_000);
    hub.expire();
    assert_eq!(hub.stats().topics.load(Ordering::Relaxed), 0, "forgotten");
    let o = || Arc::new(Outbox::new(16, T0, u64::MAX));
    // Resuming from the newest: nothing was lost, no alarm.
    assert!(
        !hub.subscribe(topic(), ResumeFrom::After(i128::from(last.0)), o(), 0)
            .gap
    );
    assert!(
        hub.subscribe(topic(), ResumeFrom::After(i128::from(last.0) - 1), o(), 0)
            .gap
    );
}

#[test]
fn server_ids_continue_above_a_forgotten_topics_ids() {
    let (hub, clock) = hub_with(Retention::from_min_duration(2_000, 100), usize::MAX);
    let future = T0 + 1_000_000;
    hub.publish(&topic(), &[new("from the future", Some(future))]);
    clock.advance_ms(10_000);
    hub.expire();
    assert_eq!(hub.stats().topics.load(Ordering::Relaxed), 0, "forgotten");
    assert_eq!(hub.publish(&topic(), &[new("next", None)]), [EventId(future + 1)]);
}
