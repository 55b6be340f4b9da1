//! The hub: topics, their subscriptions and history, and the fan-out of each message.
//!
//! The hub has no I/O: it never sees HTTP, JSON or sockets, and it never waits. Topics live in a
//! fixed number of shards, each a `std::sync::Mutex` held only for short, synchronous critical
//! sections — never across an `.await` (there is no `.await` in this module).
//!
//! Under a topic's shard lock, a publish assigns each message its id, appends it to history and
//! `try`-pushes one shared message into every subscriber's outbox; no bytes are made here (the
//! writers encode each message once per wire format, outside the lock). A subscribe reads history
//! and registers the outbox under the same lock. So a publish that races
//! a subscribe is either in the replay or in the outbox, never both and never neither (DESIGN.md
//! promise 3), and every subscriber sees a topic's messages in the order the hub accepted them.

pub mod liveness;
pub mod outbox;
mod relay;
mod slots;

pub use relay::merge_catch_up;

use std::cmp::Reverse;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::history::{Freed, Retention, TopicHistory};
use crate::model::{EventId, Message, NewMessage, ResumeFrom, SharedMessage, Topic};
use outbox::{Delivery, Outbox, Push};
use slots::Slots;

/// Number of topic shards. A power of two well above the core count keeps two publishers to
/// different topics off the same lock almost always.
const SHARDS: usize = 64;

/// After the node-wide byte budget is exceeded, eviction goes on until history is this fraction
/// (in percent) of the budget, so that eviction rounds stay rare.
const EVICT_DOWN_TO_PERCENT: usize = 90;

/// Settings of a hub.
#[derive(Clone, Copy, Debug)]
pub struct HubSettings {
    /// Retention of each topic's history.
    pub retention: Retention,
    /// Most history bytes over all topics.
    pub max_history_bytes: usize,
}

/// Counters and gauges the hub keeps for metrics; read without locking.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Topics in memory (with subscribers or history).
    pub topics: AtomicUsize,
    /// Open subscriptions.
    pub subscriptions: AtomicUsize,
    /// Messages in history.
    pub history_messages: AtomicUsize,
    /// Bytes of history.
    pub history_bytes: AtomicUsize,
    /// Messages accepted.
    pub messages_accepted: AtomicU64,
    /// Messages queued to subscribers (live deliveries).
    pub frames_queued: AtomicU64,
    /// Subscriptions ended because their outbox overflowed.
    pub outbox_overflows: AtomicU64,
    /// Messages removed from history by `HISTORY_MAX_MESSAGES_PER_TOPIC`.
    pub trimmed_by_topic_cap: AtomicU64,
    /// Messages removed from history by `HISTORY_MAX_BYTES`.
    pub trimmed_by_byte_cap: AtomicU64,
    /// Messages removed from history because they expired.
    pub expired: AtomicU64,
    /// Messages replayed from history to resuming subscribers.
    pub replayed: AtomicU64,
    /// Expiry sweeps run (Neurow's `history_rotate`).
    pub expiry_sweeps: AtomicU64,
}

/// The topics of one node.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    settings: HubSettings,
    clock: Clock,
    /// Node-wide acceptance order of retained messages, for evicting the oldest first.
    next_seq: AtomicU64,
    /// Held by the one publisher that runs byte-budget eviction; others skip it.
    evicting: Mutex<()>,
    stats: HubStats,
}

#[derive(Default)]
struct Shard {
    topics: HashMap<Topic, TopicState>,
    /// The last id of topics forgotten while idle, so that a client resuming one later is told
    /// exactly whether it missed something, and server ids continue above it. At most
    /// [`MAX_TOMBSTONES_PER_SHARD`]; beyond, they are dropped and those topics count as unknown.
    tombstones: HashMap<Topic, u64>,
}

/// Tombstones one shard keeps (64 shards: about 260,000 topics, ~20 MB at most).
const MAX_TOMBSTONES_PER_SHARD: usize = 4096;

impl Shard {
    /// Forgets an idle topic, keeping its last id.
    fn forget(&mut self, topic: &Topic, last_id: u64) {
        if last_id == 0 {
            return;
        }
        if self.tombstones.len() >= MAX_TOMBSTONES_PER_SHARD {
            self.tombstones.clear();
        }
        self.tombstones.insert(topic.clone(), last_id);
    }
}

struct TopicState {
    history: TopicHistory,
    subscribers: Slots<Subscriber>,
    /// Highest event id this topic has used: server ids continue above it.
    last_id: u64,
    /// Cluster mode: subscriptions still reading the shared history, with the live messages that
    /// arrived meanwhile (relay.rs). Empty, and not allocated, on a single node.
    catching_up: Vec<relay::CatchingUp>,
    /// Cluster mode: stream id of the last message delivered, so a message that arrives twice
    /// (live, and again from the history after a reconnection) is delivered once.
    last_delivered: crate::backplane::wire::StreamId,
    /// Whether the topic may have had messages before this state existed that the node knows
    /// nothing of (it was never seen since start, or its tombstone was dropped).
    unknown_before: bool,
    /// The smallest id this state accepted ([`NO_ID`] before any), for
    /// [`TopicState::gap_after`] when `unknown_before`.
    first_id: u64,
}

/// One connection's subscription to a topic, as the topic sees it.
#[derive(Debug)]
struct Subscriber {
    outbox: Arc<Outbox>,
    /// The subscription's index in its connection, carried by each [`Delivery`].
    index: u16,
}

impl Subscriber {
    fn is(&self, outbox: &Arc<Outbox>) -> bool {
        Arc::ptr_eq(&self.outbox, outbox)
    }
}

/// [`TopicState::first_id`] before any message: above every id a publisher may give (2^53 - 1).
const NO_ID: u64 = u64::MAX;

impl Default for TopicState {
    fn default() -> Self {
        TopicState {
            history: TopicHistory::default(),
            subscribers: Slots::default(),
            last_id: 0,
            catching_up: Vec::new(),
            last_delivered: Default::default(),
            unknown_before: false,
            first_id: NO_ID,
        }
    }
}

impl TopicState {
    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty()
    }

    /// Whether a client resuming from `position` may have missed a message (DESIGN.md promise 4):
    /// the history dropped one after it, or the position is from before what this node knows of
    /// the topic. Resuming from 0 (a client that has seen nothing, from a topic that had nothing)
    /// is never a gap on its own.
    fn gap_after(&self, position: i128, now_ms: u64, retention: &Retention) -> bool {
        self.history.gap_after(position, now_ms, retention)
            || (self.unknown_before && position > 0 && position < i128::from(self.first_id))
    }
}

/// A registered subscription, to give back to [`Hub::unsubscribe`].
#[derive(Debug, Clone)]
pub struct SubscriptionKey {
    topic: Topic,
    slot: usize,
}

impl SubscriptionKey {
    /// The subscription's topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }
}

/// What a subscribe returns: the messages to replay first, and the key to unsubscribe with.
#[derive(Debug)]
pub struct Subscribed {
    /// History newer than the resume point, in id order.
    pub replay: Vec<Arc<SharedMessage>>,
    /// The topic's newest event id when the subscription was registered (0 if it has none): a
    /// client that has received nothing yet resumes from there.
    pub head: EventId,
    /// Whether the resume point is older than the history can prove complete: the client may
    /// have missed messages of this topic (v2 tells it; v1 keeps Neurow's silence).
    pub gap: bool,
    /// Identifies the subscription.
    pub key: SubscriptionKey,
}

impl Hub {
    /// An empty hub.
    pub fn new(settings: HubSettings, clock: Clock) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            settings,
            clock,
            next_seq: AtomicU64::new(0),
            evicting: Mutex::new(()),
            stats: HubStats::default(),
        }
    }

    /// The hub's counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// The hub's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn shard(&self, topic: &Topic) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        topic.hash(&mut h);
        lock(&self.shards[(h.finish() as usize) % SHARDS])
    }

    /// Accepts `messages` on `topic`, in order: assigns ids, stores them in history and queues
    /// them to every subscriber. Never blocks on a subscriber. Returns the ids.
    pub fn publish(&self, topic: &Topic, messages: &[NewMessage]) -> Vec<EventId> {
        let mut ids = Vec::with_capacity(messages.len());
        let retention = self.settings.retention;
        let (mut added, mut trimmed) = (Freed::default(), Freed::default());
        {
            let mut shard = self.shard(topic);
            let (_, state) = topic_state(&mut shard, topic, &self.stats);
            for new in messages {
                let now_ms = self.clock.now_ms();
                let id = match new.timestamp {
                    Some(ts) => ts,
                    None => now_ms.max(state.last_id.saturating_add(1)),
                };
                state.last_id = state.last_id.max(id);
                state.first_id = state.first_id.min(id);
                let message = Message {
                    id: EventId(id),
                    event: new.event.clone(),
                    payload: new.payload.clone(),
                    accepted_ms: now_ms,
                };
                ids.push(message.id);

                let shared =
                    (!state.subscribers.is_empty()).then(|| SharedMessage::live(topic.clone(), message.clone()));
                if let Some(shared) = shared {
                    self.fan_out(state, &shared, now_ms);
                }
                if retention.enabled() {
                    let size = message.retained_size();
                    let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                    let cut = state.history.push(message, seq, &retention);
                    added.messages += 1;
                    added.bytes += size;
                    trimmed.messages += cut.messages;
                    trimmed.bytes += cut.bytes;
                }
            }
            if state.is_idle() {
                let last_id = state.last_id;
                shard.topics.remove(topic);
                shard.forget(topic, last_id);
                self.stats.topics.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.stats
            .messages_accepted
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        self.stats
            .trimmed_by_topic_cap
            .fetch_add(trimmed.messages as u64, Ordering::Relaxed);
        self.account_history(added, trimmed);
        if self.stats.history_bytes.load(Ordering::Relaxed) > self.settings.max_history_bytes {
            self.evict_oldest();
        }
        ids
    }

    fn fan_out(&self, state: &mut TopicState, message: &Arc<SharedMessage>, now_ms: u64) {
        let mut queued = 0u64;
        let mut overflowed: Vec<usize> = Vec::new();
        for (slot, subscriber) in state.subscribers.iter() {
            let delivery = Delivery {
                index: subscriber.index,
                message: message.clone(),
            };
            match subscriber.outbox.push_message(delivery, now_ms) {
                Push::Queued => queued += 1,
                Push::Overflowed | Push::Closed => overflowed.push(slot),
            }
        }
        // A closing connection will never take another delivery: stop offering it any.
        for slot in &overflowed {
            state.subscribers.remove(*slot);
        }
        if !overflowed.is_empty() {
            self.stats.subscriptions.fetch_sub(overflowed.len(), Ordering::Relaxed);
            self.stats
                .outbox_overflows
                .fetch_add(overflowed.len() as u64, Ordering::Relaxed);
        }
        self.stats.frames_queued.fetch_add(queued, Ordering::Relaxed);
    }

    /// Registers `outbox` on `topic` as its connection's subscription `index`, and returns the
    /// history to replay before live deliveries.
    pub fn subscribe(&self, topic: Topic, resume: ResumeFrom, outbox: Arc<Outbox>, index: u16) -> Subscribed {
        let now_ms = self.clock.now_ms();
        let mut shard = self.shard(&topic);
        let (topic, state) = topic_state(&mut shard, &topic, &self.stats);
        let replay: Vec<Arc<SharedMessage>> = match resume {
            ResumeFrom::Live => Vec::new(),
            _ => state
                .history
                .since(resume, now_ms, &self.settings.retention)
                .into_iter()
                .map(|m| SharedMessage::replayed(topic.clone(), m.clone()))
                .collect(),
        };
        let head = EventId(state.last_id);
        let gap = match resume {
            ResumeFrom::Live => false,
            ResumeFrom::After(position) => state.gap_after(position, now_ms, &self.settings.retention),
        };
        let slot = state.subscribers.insert(Subscriber { outbox, index });
        drop(shard);
        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.stats.replayed.fetch_add(replay.len() as u64, Ordering::Relaxed);
        Subscribed {
            replay,
            head,
            gap,
            key: SubscriptionKey { topic, slot },
        }
    }

    /// Removes a subscription. Harmless if the hub already dropped it (after an overflow).
    pub fn unsubscribe(&self, key: &SubscriptionKey, outbox: &Arc<Outbox>) {
        let mut shard = self.shard(&key.topic);
        let Some(state) = shard.topics.get_mut(&key.topic) else {
            return;
        };
        // The slot may have been reused by a newer subscription: only remove our own outbox.
        if state.subscribers.get(key.slot).is_some_and(|s| s.is(outbox)) {
            state.subscribers.remove(key.slot);
            state.catching_up.retain(|c| c.slot != key.slot);
            self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if state.is_idle() {
            let last_id = state.last_id;
            shard.topics.remove(&key.topic);
            shard.forget(&key.topic, last_id);
            self.stats.topics.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The retained messages of `topic`, in id order.
    pub fn history(&self, topic: &Topic) -> Vec<Message> {
        let now_ms = self.clock.now_ms();
        let shard = self.shard(topic);
        shard
            .topics
            .get(topic)
            .map(|s| {
                s.history
                    .all(now_ms, &self.settings.retention)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes expired history and forgets idle topics. Call at least every `HISTORY_MIN_DURATION / 4`.
    pub fn expire(&self) {
        let retention = self.settings.retention;
        let mut freed = Freed::default();
        for shard in self.shards.iter() {
            let now_ms = self.clock.now_ms();
            let mut shard = lock(shard);
            let before = shard.topics.len();
            let mut forgotten = Vec::new();
            shard.topics.retain(|topic, state| {
                let f = state.history.expire(now_ms, &retention);
                freed.messages += f.messages;
                freed.bytes += f.bytes;
                let idle = state.is_idle();
                if idle {
                    forgotten.push((topic.clone(), state.last_id));
                }
                !idle
            });
            for (topic, last_id) in forgotten {
                shard.forget(&topic, last_id);
            }
            let removed = before - shard.topics.len();
            drop(shard);
            self.stats.topics.fetch_sub(removed, Ordering::Relaxed);
        }
        self.stats.expired.fetch_add(freed.messages as u64, Ordering::Relaxed);
        self.stats.expiry_sweeps.fetch_add(1, Ordering::Relaxed);
        self.account_history(Freed::default(), freed);
    }

    /// Evicts the node-wide oldest messages until history is back under its byte budget.
    ///
    /// A k-way merge over the topics' oldest messages: one pass collects each topic's oldest
    /// sequence number, then the oldest is evicted one at a time. Runs in one publisher at a time,
    /// without holding more than one shard lock at once.
    fn evict_oldest(&self) {
        let Ok(_evicting) = self.evicting.try_lock() else {
            return;
        };
        let target = (self.settings.max_history_bytes as u128 * EVICT_DOWN_TO_PERCENT as u128 / 100) as usize;
        let mut heap: BinaryHeap<Reverse<(u64, Topic)>> = BinaryHeap::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            heap.extend(
                shard
                    .topics
                    .iter()
                    .filter_map(|(t, s)| Some(Reverse((s.history.oldest_seq()?, t.clone())))),
            );
        }
        let mut evicted = Freed::default();
        while self.stats.history_bytes.load(Ordering::Relaxed) > target {
            let Some(Reverse((seq, topic))) = heap.pop() else { break };
            let mut shard = self.shard(&topic);
            let Entry::Occupied(mut entry) = shard.topics.entry(topic.clone()) else {
                continue;
            };
            let state = entry.get_mut();
            let f = state.history.evict_oldest_if(seq);
            if let Some(next) = state.history.oldest_seq() {
                heap.push(Reverse((next, topic.clone())));
            }
            if state.is_idle() {
                let last_id = state.last_id;
                entry.remove();
                shard.forget(&topic, last_id);
                self.stats.topics.fetch_sub(1, Ordering::Relaxed);
            }
            drop(shard);
            evicted.messages += f.messages;
            evicted.bytes += f.bytes;
            self.account_history(Freed::default(), f);
        }
        self.stats
            .trimmed_by_byte_cap
            .fetch_add(evicted.messages as u64, Ordering::Relaxed);
    }

    fn account_history(&self, added: Freed, removed: Freed) {
        if added.messages > 0 {
            self.stats.history_messages.fetch_add(added.messages, Ordering::Relaxed);
            self.stats.history_bytes.fetch_add(added.bytes, Ordering::Relaxed);
        }
        if removed.messages > 0 {
            self.stats
                .history_messages
                .fetch_sub(removed.messages, Ordering::Relaxed);
            self.stats.history_bytes.fetch_sub(removed.bytes, Ordering::Relaxed);
        }
    }
}

/// The state of `topic`, made when missing (from its tombstone if it has one), and the topic's
/// name as the hub stores it. A subscription keeps that name (a reference count), not the copy its
/// request allocated: 10,000 connections on a shared topic then hold one name, not 10,000
/// (measured: ≈45 bytes a topic a connection).
fn topic_state<'a>(shard: &'a mut Shard, topic: &Topic, stats: &HubStats) -> (Topic, &'a mut TopicState) {
    let Shard { topics, tombstones } = shard;
    match topics.entry(topic.clone()) {
        Entry::Occupied(entry) => (entry.key().clone(), entry.into_mut()),
        Entry::Vacant(entry) => {
            stats.topics.fetch_add(1, Ordering::Relaxed);
            let mut state = TopicState::default();
            match tombstones.remove(topic) {
                // Met again: everything up to its last id is gone, and new ids continue above it.
                Some(last_id) => {
                    state.last_id = last_id;
                    state.history.forgotten_through(last_id);
                }
                None => state.unknown_before = true,
            }
            (entry.key().clone(), entry.insert(state))
        }
    }
}

/// Locks a shard. Critical sections leave a shard consistent at every step, so a poisoned lock
/// (a panic elsewhere while holding it) is still safe to use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
