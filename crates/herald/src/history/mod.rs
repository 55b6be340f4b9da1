//! History: the recent messages of one topic, kept so a reconnecting client catches up.
//!
//! [`TopicHistory`] is a plain, single-threaded ring in acceptance order; the hub shard that owns
//! it holds the lock and drives expiry. Retention (DESIGN.md promise 2): a message is replayable
//! for at least `HISTORY_MIN_DURATION` (D) and gone after 2·D. Herald gives each message a TTL of
//! 1.5·D, checked on every read, and a sweep removes expired messages at least every D/4, so memory
//! is returned before 2·D even for topics nobody reads.

use std::collections::VecDeque;

use crate::model::{Message, ResumeFrom};

/// How long messages live and how many a topic keeps.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Milliseconds after acceptance when a message expires (1.5 × `HISTORY_MIN_DURATION`); 0
    /// keeps nothing.
    pub ttl_ms: u64,
    /// Most messages kept per topic; 0 keeps nothing.
    pub max_messages_per_topic: usize,
}

impl Retention {
    /// The retention promised for `HISTORY_MIN_DURATION = min_duration_ms`.
    pub fn from_min_duration(min_duration_ms: u64, max_messages_per_topic: usize) -> Retention {
        Retention {
            ttl_ms: min_duration_ms.saturating_mul(3) / 2,
            max_messages_per_topic,
        }
    }

    /// Whether anything is kept at all.
    pub fn enabled(&self) -> bool {
        self.ttl_ms > 0 && self.max_messages_per_topic > 0
    }
}

/// A retained message and its place in the node-wide acceptance order (for the byte budget).
#[derive(Debug, Clone)]
struct Retained {
    message: Message,
    seq: u64,
}

/// What a removal freed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    /// Messages removed.
    pub messages: usize,
    /// Their retained size.
    pub bytes: usize,
}

impl Freed {
    fn add(&mut self, m: &Message) {
        self.messages += 1;
        self.bytes += m.retained_size();
    }
}

/// One topic's retained messages, oldest first.
#[derive(Debug, Default)]
pub struct TopicHistory {
    messages: VecDeque<Retained>,
    /// The largest id of a message no longer kept (expired, trimmed, evicted, or never kept
    /// because retention is off): a resume from below it may have missed something.
    dropped_through: u64,
}

impl TopicHistory {
    /// Appends a message accepted with node-wide sequence number `seq`; returns what the
    /// per-topic cap trimmed (the oldest go).
    pub fn push(&mut self, message: Message, seq: u64, retention: &Retention) -> Freed {
        let mut trimmed = Freed::default();
        if !retention.enabled() {
            self.dropped_through = self.dropped_through.max(message.id.0);
            return trimmed;
        }
        self.messages.push_back(Retained { message, seq });
        while self.messages.len() > retention.max_messages_per_topic {
            let old = self.messages.pop_front().expect("longer than the cap, so not empty");
            self.dropped(&old.message);
            trimmed.add(&old.message);
        }
        trimmed
    }

    /// Removes messages accepted at or before `now_ms - ttl_ms`.
    pub fn expire(&mut self, now_ms: u64, retention: &Retention) -> Freed {
        let mut freed = Freed::default();
        while let Some(front) = self.messages.front() {
            if !is_expired(&front.message, now_ms, retention) {
                break;
            }
            freed.add(&front.message);
            let id = front.message.id.0;
            self.dropped_through = self.dropped_through.max(id);
            self.messages.pop_front();
        }
        freed
    }

    fn dropped(&mut self, m: &Message) {
        self.dropped_through = self.dropped_through.max(m.id.0);
    }

    /// Records that every message up to `id` is gone (a topic forgotten and met again).
    pub fn forgotten_through(&mut self, id: u64) {
        self.dropped_through = self.dropped_through.max(id);
    }

    /// Whether a resume from `position` may miss a message this history no longer has: one with
    /// a larger id was dropped, or has expired though not yet swept.
    pub fn gap_after(&self, position: i128, now_ms: u64, retention: &Retention) -> bool {
        i128::from(self.dropped_through) > position
            || self
                .messages
                .iter()
                .any(|r| i128::from(r.message.id.0) > position && is_expired(&r.message, now_ms, retention))
    }

    /// Removes the oldest message if it is the one with sequence number `seq` (the node-wide byte
    /// budget evicts in acceptance order, so the oldest node-wide is the oldest of its topic).
    pub fn evict_oldest_if(&mut self, seq: u64) -> Freed {
        let mut freed = Freed::default();
        if self.messages.front().is_some_and(|r| r.seq == seq) {
            let old = self.messages.pop_front().expect("front exists");
            self.dropped(&old.message);
            freed.add(&old.message);
        }
        freed
    }

    /// The live messages newer than `resume`, in id order; equal ids stay in acceptance order.
    pub fn since(&self, resume: ResumeFrom, now_ms: u64, retention: &Retention) -> Vec<&Message> {
        let mut out: Vec<&Message> = self
            .messages
            .iter()
            .map(|r| &r.message)
            .filter(|m| resume.wants(m.id) && !is_expired(m, now_ms, retention))
            .collect();
        // `sort_by_key` is stable: publish order breaks ties between equal ids.
        out.sort_by_key(|m| m.id);
        out
    }

    /// Every live message in id order.
    pub fn all(&self, now_ms: u64, retention: &Retention) -> Vec<&Message> {
        self.since(ResumeFrom::After(-1), now_ms, retention)
    }

    /// The node-wide sequence number of the oldest retained message.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.messages.front().map(|r| r.seq)
    }

    /// Whether no message is retained.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Messages retained.
    pub fn len(&self) -> usize {
        self.messages.len()
    }
}

fn is_expired(m: &Message, now_ms: u64, retention: &Retention) -> bool {
    now_ms >= m.accepted_ms.saturating_add(retention.ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;
    use bytes::Bytes;

    fn msg(id: u64, at: u64, payload: &'static str) -> Message {
        Message {
            id: EventId(id),
            event: Bytes::from_static(b"e"),
            payload: Bytes::from_static(payload.as_bytes()),
            accepted_ms: at,
        }
    }

    const R: Retention = Retention {
        ttl_ms: 4500,
        max_messages_per_topic: 3,
    };

    fn ids(v: Vec<&Message>) -> Vec<u64> {
        v.iter().map(|m| m.id.0).collect()
    }

    #[test]
    fn neurows_resume_semantics() {
        // Neurow's unit test: ids 1, 5, 6, 8 stored.
        let mut h = TopicHistory::default();
        let r = Retention {
            ttl_ms: 10_000,
            max_messages_per_topic: 100,
        };
        for (seq, id) in [1, 5, 6, 8].into_iter().enumerate() {
            h.push(msg(id, 0, "p"), seq as u64, &r);
        }
        assert_eq!(ids(h.since(ResumeFrom::After(0), 1, &r)), [1, 5, 6, 8]);
        assert_eq!(ids(h.since(ResumeFrom::After(5), 1, &r)), [6, 8]);
        assert_eq!(ids(h.since(ResumeFrom::After(8), 1, &r)), Vec::<u64>::new());
        assert_eq!(ids(h.since(ResumeFrom::After(6), 1, &r)), [8]);
        assert_eq!(ids(h.since(ResumeFrom::After(-5), 1, &r)), [1, 5, 6, 8]);
        assert!(h.since(ResumeFrom::Live, 1, &r).is_empty());
    }

    #[test]
    fn replay_is_in_id_order_with_equal_ids_in_publish_order() {
        // Neurow's sort reversed equal timestamps: [3,2,1,6,5,4]. Herald keeps publish order.
        let mut h = TopicHistory::default();
        let r = Retention {
            ttl_ms: 10_000,
            max_messages_per_topic: 100,
        };
        let payloads = ["1", "2", "3", "4", "5", "6"];
        for (i, ts) in [200u64, 200, 200, 100, 100, 100].into_iter().enumerate() {
            h.push(msg(ts, 0, payloads[i]), i as u64, &r);
        }
        let order: Vec<_> = h.all(1, &r).iter().map(|m| m.payload.clone()).collect();
        assert_eq!(order, ["4", "5", "6", "1", "2", "3"]);
    }

    #[test]
    fn retention_is_at_least_d_and_less_than_2d() {
        // D = 3 s, TTL = 4.5 s: the spec's retention scenario.
        let mut h = TopicHistory::default();
        h.push(msg(1, 0, "a"), 0, &R);
        h.push(msg(2, 3_000, "b"), 1, &R);
        assert_eq!(ids(h.all(3_000, &R)), [1, 2], "both younger than D");
        assert_eq!(ids(h.all(6_000, &R)), [2], "the first is 2D old, the second D old");
        assert_eq!(
            h.expire(6_000, &R),
            Freed {
                messages: 1,
                bytes: msg(1, 0, "a").retained_size()
            }
        );
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_per_topic_cap_keeps_the_newest() {
        let mut h = TopicHistory::default();
        let mut trimmed = 0;
        for i in 0..5 {
            trimmed += h.push(msg(i, 0, "x"), i, &R).messages;
        }
        assert_eq!(trimmed, 2);
        assert_eq!(ids(h.all(0, &R)), [2, 3, 4]);
    }

    #[test]
    fn eviction_only_takes_the_named_oldest() {
        let mut h = TopicHistory::default();
        h.push(msg(1, 0, "x"), 10, &R);
        h.push(msg(2, 0, "x"), 11, &R);
        assert_eq!(h.evict_oldest_if(11).messages, 0);
        assert_eq!(h.evict_oldest_if(10).messages, 1);
        assert_eq!(ids(h.all(0, &R)), [2]);
    }

    #[test]
    fn gaps_are_known_after_expiry_trimming_and_eviction_only() {
        let r = Retention::from_min_duration(2_000, 2);
        let mut h = TopicHistory::default();
        h.push(msg(10, 0, "a"), 0, &r);
        h.push(msg(20, 0, "b"), 1, &r);
        assert!(!h.gap_after(0, 0, &r), "everything is still here");
        h.push(msg(30, 0, "c"), 2, &r);
        assert!(h.gap_after(0, 0, &r) && h.gap_after(9, 0, &r), "10 was trimmed");
        assert!(!h.gap_after(10, 0, &r) && !h.gap_after(30, 0, &r));
        // Expired but not yet swept: as good as gone.
        assert!(h.gap_after(10, 3_000, &r));
        h.expire(3_000, &r);
        assert!(h.gap_after(29, 3_000, &r) && !h.gap_after(30, 3_000, &r));
        h.forgotten_through(50);
        assert!(h.gap_after(49, 0, &r) && !h.gap_after(50, 0, &r));
    }

    #[test]
    fn zero_duration_keeps_nothing() {
        let r = Retention::from_min_duration(0, 10);
        let mut h = TopicHistory::default();
        h.push(msg(1, 0, "x"), 0, &r);
        assert!(h.is_empty());
    }
}
