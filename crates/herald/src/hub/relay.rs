//! Cluster mode: messages that other nodes (or this one) accepted through the backplane, delivered
//! to this node's subscribers, and resume merged with the shared history exactly once.
//!
//! On a cluster node the hub neither assigns ids nor keeps history: Redis does both, atomically,
//! and every node's listener hands each topic's messages to [`Hub::deliver`] in Redis's order.
//! A subscription that resumes is registered *catching up*: live messages for it are held (bounded
//! by its outbox's capacity) while it reads the shared history, then [`Hub::finish_catch_up`]
//! queues the replay and the held messages that the history read did not contain, using
//! [`merge_catch_up`]. The argument that this is exactly once is in docs/cluster.md.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::outbox::{CloseReason, Delivery, Outbox, Push};
use super::{Hub, Subscriber, SubscriptionKey, topic_state};
use crate::backplane::wire::{Carried, StreamId};
use crate::model::{Message, ResumeFrom, SharedMessage, Topic};

/// A subscription reading the shared history, and the live messages it has been sent meanwhile;
/// then, once live, the last stream id its replay contained.
#[derive(Debug)]
pub(super) struct CatchingUp {
    pub(super) slot: usize,
    held: Vec<(StreamId, Arc<SharedMessage>)>,
    /// Set when the catch-up is done: the history read ended at this stream id, so a live
    /// message at or below it is already in the replay. The history reply and the channel's
    /// messages come over different connections, so a message the read contained can still
    /// arrive live after the catch-up finished.
    replayed_through: Option<StreamId>,
}

/// The messages a resuming subscription receives, in order: the history newer than `resume` in
/// replay order (event id, equal ids in stream order), then the live messages held meanwhile that
/// the history read did not contain (stream id above the last entry read).
pub fn merge_catch_up<T>(
    resume: ResumeFrom,
    history: Vec<Carried>,
    held: Vec<(StreamId, T)>,
) -> (Vec<Message>, Vec<T>) {
    let last_read = history.last().map(|c| c.stream_id);
    let mut replay: Vec<Message> = history
        .into_iter()
        .map(|c| c.message)
        .filter(|m| resume.wants(m.id))
        .collect();
    // Stable: equal ids keep their stream order.
    replay.sort_by_key(|m| m.id);
    let live = held
        .into_iter()
        .filter(|(sid, _)| last_read.is_none_or(|last| *sid > last))
        .map(|(_, message)| message)
        .collect();
    (replay, live)
}

impl Hub {
    /// Registers `outbox` on `topic` as its connection's subscription `index`, without replaying
    /// anything yet. When `resume` asks for history, live messages are held until
    /// [`Hub::finish_catch_up`].
    pub fn subscribe_relayed(
        &self,
        topic: Topic,
        resume: ResumeFrom,
        outbox: Arc<Outbox>,
        index: u16,
    ) -> SubscriptionKey {
        let mut shard = self.shard(&topic);
        let (topic, state) = topic_state(&mut shard, &topic, &self.stats);
        let slot = state.subscribers.insert(Subscriber { outbox, index });
        if resume != ResumeFrom::Live {
            state.catching_up.push(CatchingUp {
                slot,
                held: Vec::new(),
                replayed_through: None,
            });
        }
        drop(shard);
        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        SubscriptionKey { topic, slot }
    }

    /// Queues the replay and the held live messages of a catching-up subscription, then makes it
    /// live; first a [`SharedMessage::gap_notice`] when `gap` (the shared history cannot prove the
    /// replay complete). Harmless if the subscription is gone.
    pub fn finish_catch_up(
        &self,
        key: &SubscriptionKey,
        outbox: &Arc<Outbox>,
        resume: ResumeFrom,
        history: Vec<Carried>,
        gap: bool,
    ) {
        let now_ms = self.clock.now_ms();
        let mut shard = self.shard(&key.topic);
        let Some(state) = shard.topics.get_mut(&key.topic) else {
            return;
        };
        let Some(index) = state
            .subscribers
            .get(key.slot)
            .filter(|s| s.is(outbox))
            .map(|s| s.index)
        else {
            return;
        };
        let Some(i) = state
            .catching_up
            .iter()
            .position(|c| c.slot == key.slot && c.replayed_through.is_none())
        else {
            return;
        };
        let last_read = history.last().map(|c| c.stream_id);
        let held = std::mem::take(&mut state.catching_up[i].held);
        match last_read {
            // Live messages up to there may still be on their way: skip them when they come.
            Some(last) if last > state.last_delivered => state.catching_up[i].replayed_through = Some(last),
            _ => drop(state.catching_up.swap_remove(i)),
        }
        let (replay, live) = merge_catch_up(resume, history, held);
        let replayed = replay.len() as u64;
        let notice = gap.then(|| SharedMessage::gap_notice(key.topic.clone()));
        let messages = notice.into_iter().chain(
            replay
                .into_iter()
                .map(|m| SharedMessage::replayed(key.topic.clone(), m))
                .chain(live),
        );
        let mut overflowed = false;
        for message in messages {
            if outbox.push_message(Delivery { index, message }, now_ms) != Push::Queued {
                overflowed = true;
                break;
            }
        }
        if overflowed {
            // The client resumes again from what it received: each round makes progress.
            state.subscribers.remove(key.slot);
            self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
            self.stats.outbox_overflows.fetch_add(1, Ordering::Relaxed);
        }
        drop(shard);
        self.stats.replayed.fetch_add(replayed, Ordering::Relaxed);
    }

    /// Whether `outbox` is still subscribed under `key` (its client has not left).
    pub fn holds(&self, key: &SubscriptionKey, outbox: &Arc<Outbox>) -> bool {
        self.shard(&key.topic)
            .topics
            .get(&key.topic)
            .and_then(|state| state.subscribers.get(key.slot))
            .is_some_and(|s| s.is(outbox))
    }

    /// Whether `key`'s subscription is still reading the shared history (its replay not queued yet).
    pub fn is_catching_up(&self, key: &SubscriptionKey, outbox: &Arc<Outbox>) -> bool {
        let shard = self.shard(&key.topic);
        let Some(state) = shard.topics.get(&key.topic) else {
            return false;
        };
        state.subscribers.get(key.slot).is_some_and(|s| s.is(outbox))
            && state
                .catching_up
                .iter()
                .any(|c| c.slot == key.slot && c.replayed_through.is_none())
    }

    /// Ends a catching-up subscription that could not read the shared history: its client
    /// reconnects and resumes, perhaps on another node.
    pub fn abandon_catch_up(&self, key: &SubscriptionKey, outbox: &Arc<Outbox>) {
        outbox.close(CloseReason::BackplaneUnavailable);
        self.unsubscribe(key, outbox);
    }

    /// Delivers messages accepted through the backplane to this node's subscribers of `topic`, in
    /// order, skipping any already delivered (so the listener may replay history after a
    /// reconnection without duplicates). Never blocks on a subscriber.
    pub fn deliver(&self, topic: &Topic, batch: &[Carried]) {
        let now_ms = self.clock.now_ms();
        let mut shard = self.shard(topic);
        let Some(state) = shard.topics.get_mut(topic) else {
            return;
        };
        let (mut queued, mut dropped) = (0u64, Vec::new());
        for carried in batch {
            // Stream ids increase within a topic: one at or below the last delivered is a repeat.
            // `0-0` means the message has no history entry and cannot be a repeat.
            if carried.stream_id != StreamId::default() {
                if carried.stream_id <= state.last_delivered {
                    continue;
                }
                state.last_delivered = carried.stream_id;
            }
            let message = SharedMessage::live(topic.clone(), carried.message.clone());
            for (slot, subscriber) in state.subscribers.iter() {
                let outbox = &subscriber.outbox;
                if let Some(c) = state.catching_up.iter_mut().find(|c| c.slot == slot) {
                    match c.replayed_through {
                        // Already in its replay.
                        Some(through) if carried.stream_id != StreamId::default() && carried.stream_id <= through => {
                            continue;
                        }
                        Some(_) => {}
                        None => {
                            if c.held.len() < outbox.capacity() {
                                c.held.push((carried.stream_id, message.clone()));
                            } else {
                                outbox.close(CloseReason::SlowConsumer);
                                dropped.push(slot);
                            }
                            continue;
                        }
                    }
                }
                let delivery = Delivery {
                    index: subscriber.index,
                    message: message.clone(),
                };
                match outbox.push_message(delivery, now_ms) {
                    Push::Queued => queued += 1,
                    Push::Overflowed | Push::Closed => dropped.push(slot),
                }
            }
            for slot in dropped.drain(..) {
                if state.subscribers.try_remove(slot).is_some() {
                    state.catching_up.retain(|c| c.slot != slot);
                    self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
                    self.stats.outbox_overflows.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Once the topic has delivered past a replay's end, nothing left can repeat it.
        let last = state.last_delivered;
        state
            .catching_up
            .retain(|c| c.replayed_through.is_none_or(|through| through > last));
        drop(shard);
        self.stats.frames_queued.fetch_add(queued, Ordering::Relaxed);
    }

    /// Records that the messages of `topic` up to stream id `through` came before this node
    /// listened to it, so a later catch-up from the shared history does not hand them to live
    /// subscribers who never asked for them. Call before subscribing to the topic's channel.
    pub fn skip_delivered_through(&self, topic: &Topic, through: StreamId) {
        let mut shard = self.shard(topic);
        if let Some(state) = shard.topics.get_mut(topic) {
            state.last_delivered = state.last_delivered.max(through);
        }
    }

    /// Whether `topic` has subscribers on this node (the backplane listens to its channel then).
    pub fn has_subscribers(&self, topic: &Topic) -> bool {
        self.shard(topic)
            .topics
            .get(topic)
            .is_some_and(|s| !s.subscribers.is_empty())
    }

    /// Every topic with subscribers on this node (to listen to again after a reconnection).
    pub fn topics_with_subscribers(&self) -> Vec<Topic> {
        let mut topics = Vec::new();
        for shard in self.shards.iter() {
            let shard = super::lock(shard);
            topics.extend(
                shard
                    .topics
                    .iter()
                    .filter(|(_, s)| !s.subscribers.is_empty())
                    .map(|(t, _)| t.clone()),
            );
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;
    use bytes::Bytes;

    fn carried(sid: u64, id: u64) -> Carried {
        Carried {
            stream_id: StreamId { ms: sid, seq: 0 },
            message: Message {
                id: EventId(id),
                event: Bytes::from_static(b"e"),
                payload: Bytes::from(id.to_string()),
                accepted_ms: 0,
            },
        }
    }

    fn sid(ms: u64) -> StreamId {
        StreamId { ms, seq: 0 }
    }

    #[test]
    fn held_messages_already_in_the_history_are_dropped() {
        // Published at stream ids 1..=4; the history read saw 1..=3; 3 and 4 arrived live meanwhile.
        let history = vec![carried(1, 10), carried(2, 20), carried(3, 30)];
        let held = vec![(sid(3), "live 30"), (sid(4), "live 40")];
        let (replay, live) = merge_catch_up(ResumeFrom::After(10), history, held);
        let ids: Vec<u64> = replay.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [20, 30]);
        assert_eq!(live, ["live 40"]);
    }

    #[test]
    fn the_resume_point_filters_by_event_id_but_dedup_is_by_stream_id() {
        // Publisher timestamps go backwards: event ids do not follow stream order.
        let history = vec![carried(1, 50), carried(2, 5), carried(3, 50)];
        let held = vec![(sid(2), 'x'), (sid(5), 'y')];
        let (replay, live) = merge_catch_up(ResumeFrom::After(7), history, held);
        let got: Vec<(u64, String)> = replay
            .iter()
            .map(|m| (m.id.0, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect();
        assert_eq!(got, [(50, "50".to_owned()), (50, "50".to_owned())]);
        assert_eq!(live, ['y']);
    }

    /// A hub as a cluster node has it: no local history (it lives in Redis).
    fn relay_hub() -> Hub {
        use crate::clock::Clock;
        use crate::history::Retention;
        use crate::hub::HubSettings;
        Hub::new(
            HubSettings {
                retention: Retention::from_min_duration(0, 0),
                max_history_bytes: 0,
            },
            Clock::system(),
        )
    }

    #[test]
    fn a_message_delivered_twice_reaches_subscribers_once() {
        let hub = relay_hub();
        let topic = Topic::from_full_name("i-t");
        let outbox = Arc::new(Outbox::new(16, 0, u64::MAX));
        hub.subscribe_relayed(topic.clone(), ResumeFrom::Live, outbox.clone(), 0);
        hub.deliver(&topic, &[carried(1, 10), carried(2, 20)]);
        // After a reconnection the listener replays the history: only 3 is new.
        hub.deliver(&topic, &[carried(1, 10), carried(2, 20), carried(3, 30)]);
        assert_eq!(outbox.depth(), 3);
    }

    #[test]
    fn with_an_empty_history_everything_held_is_delivered() {
        let (replay, live) = merge_catch_up(ResumeFrom::After(0), Vec::new(), vec![(sid(0), 1), (sid(0), 2)]);
        assert!(replay.is_empty());
        assert_eq!(live, [1, 2]);
    }

    #[test]
    fn a_gap_is_noticed_before_the_replay() {
        let hub = relay_hub();
        let topic = Topic::from_full_name("i-t");
        let outbox = Arc::new(Outbox::new(16, 0, u64::MAX));
        let key = hub.subscribe_relayed(topic.clone(), ResumeFrom::After(5), outbox.clone(), 3);
        hub.finish_catch_up(
            &key,
            &outbox,
            ResumeFrom::After(5),
            vec![carried(1, 10), carried(2, 20)],
            true,
        );
        let mut taken = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(outbox.poll_take(&mut cx, &mut taken).is_ready());
        assert!(taken[0].message.is_gap_notice() && taken[0].index == 3);
        let ids: Vec<u64> = taken[1..].iter().map(|d| d.message.message().id.0).collect();
        assert_eq!(ids, [10, 20]);
    }

    /// The history read and the channel use different connections: the read may contain a
    /// message whose live copy arrives only after the catch-up finished. It must not be queued
    /// twice, while a newer message, and other subscribers, are served as usual.
    #[test]
    fn a_replayed_message_arriving_live_after_the_catch_up_is_not_queued_again() {
        let hub = relay_hub();
        let topic = Topic::from_full_name("i-t");
        let resuming = Arc::new(Outbox::new(16, 0, u64::MAX));
        let live = Arc::new(Outbox::new(16, 0, u64::MAX));
        let key = hub.subscribe_relayed(topic.clone(), ResumeFrom::After(0), resuming.clone(), 0);
        hub.subscribe_relayed(topic.clone(), ResumeFrom::Live, live.clone(), 0);
        // The history read saw stream ids 1 and 2; neither has come over the channel yet.
        hub.finish_catch_up(
            &key,
            &resuming,
            ResumeFrom::After(0),
            vec![carried(1, 10), carried(2, 20)],
            false,
        );
        assert_eq!(resuming.depth(), 2);
        hub.deliver(&topic, &[carried(1, 10), carried(2, 20)]);
        assert_eq!(resuming.depth(), 2, "1 and 2 were replayed already");
        assert_eq!(live.depth(), 2, "the live subscriber gets them once");
        hub.deliver(&topic, &[carried(3, 30)]);
        assert_eq!((resuming.depth(), live.depth()), (3, 3));
    }
}
