//! Liveness: one shared timer for the keep-alives, inactivity timeouts and token expiries of
//! every open stream, and the list shutdown walks to tell every stream to reconnect — and a
//! revocation walks to end the streams of a revoked token (each entry carries its token's
//! revocation [`Identity`]).
//!
//! A timer per connection costs memory and a wake-up per connection; instead one sweep walks all
//! streams in shards every tick and acts only on those due (Pushpin's `keep_alives_task`, in a
//! simpler form). With the default settings a tick is 250 ms.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use slab::Slab;

use super::outbox::{CloseReason, Outbox};
use crate::auth::revocation::Identity;

const SHARDS: usize = 16;

/// Timing rules of the sweep, from `SSE_KEEPALIVE` and `SSE_TIMEOUT`.
#[derive(Clone, Copy, Debug)]
pub struct LivenessRules {
    /// Silence after which a ping is queued.
    pub keepalive_ms: u64,
    /// Time without a message after which the stream ends with `timeout`.
    pub timeout_ms: u64,
}

impl LivenessRules {
    /// How often to sweep: fine enough that events come within ~10 % of their due time (Neurow
    /// polls each stream at least every 100 ms), coarse enough to cost nothing when idle.
    pub fn tick(&self) -> Duration {
        let finest = self.keepalive_ms.min(self.timeout_ms) / 10;
        Duration::from_millis(finest.clamp(10, 250))
    }
}

/// Every open stream's outbox.
pub struct Liveness {
    shards: Box<[Mutex<Slab<Entry>>]>,
}

/// One stream: its outbox, and the revocation keys of its token.
struct Entry {
    outbox: Arc<Outbox>,
    identity: Identity,
}

/// A stream's place in [`Liveness`].
#[derive(Debug, Clone, Copy)]
pub struct LivenessKey {
    shard: u32,
    slot: u32,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Pings queued.
    pub pings: usize,
    /// Streams ended for inactivity.
    pub timeouts: usize,
    /// Streams ended because their token expired.
    pub expired: usize,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            shards: (0..SHARDS).map(|_| Mutex::new(Slab::new())).collect(),
        }
    }
}

impl Liveness {
    fn lock(&self, shard: usize) -> MutexGuard<'_, Slab<Entry>> {
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream whose token has `identity`.
    pub fn register(&self, outbox: Arc<Outbox>, identity: Identity) -> LivenessKey {
        // Spread by the outbox's address: cheap and well distributed.
        let shard = (Arc::as_ptr(&outbox) as usize >> 7) % SHARDS;
        let slot = self.lock(shard).insert(Entry { outbox, identity });
        LivenessKey {
            shard: shard as u32,
            slot: slot as u32,
        }
    }

    /// A stream authenticated again (a WebSocket's `auth`): its new token's keys.
    pub fn set_identity(&self, key: LivenessKey, identity: Identity) {
        if let Some(entry) = self.lock(key.shard as usize).get_mut(key.slot as usize) {
            entry.identity = identity;
        }
    }

    /// Ends, as revoked, every stream whose token has one of `hashes`; returns how many.
    pub fn close_revoked(&self, hashes: &[u64]) -> usize {
        if hashes.is_empty() {
            return 0;
        }
        let mut closed = 0;
        for shard in 0..SHARDS {
            for (_, entry) in self.lock(shard).iter() {
                if entry.identity.matches(hashes) && entry.outbox.closing().is_none() {
                    entry.outbox.close(CloseReason::CredentialsRevoked);
                    closed += 1;
                }
            }
        }
        closed
    }

    /// Forgets a stream.
    pub fn unregister(&self, key: LivenessKey) {
        let mut shard = self.lock(key.shard as usize);
        if shard.contains(key.slot as usize) {
            shard.remove(key.slot as usize);
        }
    }

    /// Streams registered.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).len()).sum()
    }

    /// Calls `f` with every registered stream's outbox, one shard locked at a time (for
    /// `/process_stats`: ≈50 ns a stream).
    pub fn for_each_outbox(&self, mut f: impl FnMut(&Outbox)) {
        for s in 0..SHARDS {
            for (_, entry) in self.lock(s).iter() {
                f(&entry.outbox);
            }
        }
    }

    /// Whether no stream is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues pings and ends streams whose time has come, as of `now_ms`.
    pub fn sweep(&self, now_ms: u64, rules: LivenessRules) -> SweepReport {
        let mut report = SweepReport::default();
        for shard in 0..SHARDS {
            let streams = self.lock(shard);
            for (_, Entry { outbox, .. }) in streams.iter() {
                // Timeout first, as Neurow; then expiry, which outranks a ping. A connection with
                // its own keep-alive (a WebSocket) has no inactivity timeout.
                let own = outbox.own_keepalive_ms();
                if own.is_none() && now_ms.saturating_sub(outbox.last_message_ms()) > rules.timeout_ms {
                    outbox.close(CloseReason::Timeout);
                    report.timeouts += 1;
                } else if outbox.expires_ms() < now_ms {
                    outbox.close(CloseReason::CredentialsExpired);
                    report.expired += 1;
                } else if now_ms.saturating_sub(outbox.last_frame_ms()) > own.unwrap_or(rules.keepalive_ms)
                    && outbox.push_keepalive(now_ms)
                {
                    report.pings += 1;
                }
            }
        }
        report
    }

    /// Tells up to `limit` open streams that are not closing yet to end with `reason`; returns
    /// how many it told. Shutdown calls it in rounds to spread reconnects over time.
    pub fn close_some(&self, reason: CloseReason, limit: usize) -> usize {
        let mut told = 0;
        for shard in 0..SHARDS {
            let streams = self.lock(shard);
            for (_, Entry { outbox, .. }) in streams.iter() {
                if told == limit {
                    return told;
                }
                if outbox.closing().is_none() {
                    outbox.close(reason);
                    told += 1;
                }
            }
        }
        told
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: LivenessRules = LivenessRules {
        keepalive_ms: 100,
        timeout_ms: 1000,
    };

    #[test]
    fn pings_after_silence_and_times_out_without_messages() {
        let l = Liveness::default();
        let o = Arc::new(Outbox::new(8, 0, u64::MAX));
        l.register(o.clone(), Identity::NONE);
        assert_eq!(l.sweep(100, RULES), SweepReport::default());
        assert_eq!(l.sweep(101, RULES).pings, 1);
        assert!(o.ping_pending());
        assert_eq!(l.sweep(1001, RULES).timeouts, 1);
        assert_eq!(o.closing(), Some(CloseReason::Timeout));
    }

    #[test]
    fn a_message_resets_both_clocks() {
        let l = Liveness::default();
        let o = Arc::new(Outbox::new(8, 0, u64::MAX));
        l.register(o.clone(), Identity::NONE);
        o.push_message(
            super::super::outbox::Delivery {
                index: 0,
                message: crate::model::SharedMessage::replayed(
                    crate::model::Topic::from_full_name("i-t"),
                    crate::model::Message {
                        id: crate::model::EventId(1),
                        event: bytes::Bytes::from_static(b"e"),
                        payload: bytes::Bytes::from_static(b"p"),
                        accepted_ms: 950,
                    },
                ),
            },
            950,
        );
        assert_eq!(l.sweep(1001, RULES), SweepReport::default());
    }

    #[test]
    fn expired_tokens_end_the_stream() {
        let l = Liveness::default();
        let o = Arc::new(Outbox::new(8, 0, 500));
        let key = l.register(o.clone(), Identity::NONE);
        assert_eq!(l.sweep(501, RULES).expired, 1);
        assert_eq!(o.closing(), Some(CloseReason::CredentialsExpired));
        l.unregister(key);
        assert!(l.is_empty());
    }

    #[test]
    fn a_revocation_ends_the_streams_of_its_tokens_only() {
        use crate::auth::Principal;
        use crate::auth::revocation::{RevocationKind, Revocations, RevokedKey};
        let revocations = Revocations::new(120);
        let principal = |sub: &str| Principal {
            issuer: "iss".into(),
            subject: Some(sub.into()),
            token_id: None,
            session: None,
            expires_at_s: 1_000,
            grants: Ok(Default::default()),
        };
        let l = Liveness::default();
        let (alice, bob, late) = (
            Arc::new(Outbox::new(8, 0, u64::MAX)),
            Arc::new(Outbox::new(8, 0, u64::MAX)),
            Arc::new(Outbox::new(8, 0, u64::MAX)),
        );
        l.register(alice.clone(), revocations.identity(&principal("alice")));
        l.register(bob.clone(), revocations.identity(&principal("bob")));
        let late_key = l.register(late.clone(), Identity::NONE);
        let key = RevokedKey {
            kind: RevocationKind::Sub,
            issuer: "iss".into(),
            value: "alice".into(),
        };
        let hash = revocations.insert(key, 500, 100).unwrap();
        assert_eq!(l.close_revoked(&[hash]), 1);
        assert_eq!(alice.closing(), Some(CloseReason::CredentialsRevoked));
        assert_eq!(bob.closing(), None);
        // A stream that authenticates as alice later is found too.
        l.set_identity(late_key, revocations.identity(&principal("alice")));
        assert_eq!(l.close_revoked(&[hash]), 1);
        assert_eq!(l.close_revoked(&[hash]), 0, "each once");
    }

    #[test]
    fn close_some_tells_each_stream_once() {
        let l = Liveness::default();
        let outboxes: Vec<_> = (0..5).map(|_| Arc::new(Outbox::new(8, 0, u64::MAX))).collect();
        for o in &outboxes {
            l.register(o.clone(), Identity::NONE);
        }
        assert_eq!(l.close_some(CloseReason::Shutdown, 3), 3);
        assert_eq!(l.close_some(CloseReason::Shutdown, 3), 2);
        assert_eq!(l.close_some(CloseReason::Shutdown, 3), 0);
    }

    #[test]
    fn ticks_follow_the_finest_rule() {
        assert_eq!(RULES.tick(), Duration::from_millis(10));
        let defaults = LivenessRules {
            keepalive_ms: 600_000,
            timeout_ms: 900_000,
        };
        assert_eq!(defaults.tick(), Duration::from_millis(250));
    }
}
