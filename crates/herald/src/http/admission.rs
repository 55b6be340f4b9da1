//! Admission of new subscriptions: a per-node rate limit that blunts reconnection storms.
//!
//! When a node, a proxy or a network path fails, tens of thousands of clients reconnect within a
//! second or two. Each new subscription costs a token check, a hub registration, a history replay
//! and a response head; taking them all at once starves the streams already open and can push the
//! node over. [`SubscriptionRate`] (`PUBLIC_API_MAX_SUBSCRIPTIONS_PER_SECOND`) admits them at a
//! steady rate, with a burst of one second's worth, and refuses the rest with a `retry-after` that
//! spreads their retries: the refused clients are told to come back at the rate the node admits,
//! rather than all after the same second (which would only move the storm one second later).
//!
//! It runs once per subscription (never per message) and is lock-free: the bucket is the generic
//! cell rate algorithm — one "theoretical arrival time" in an atomic, advanced by compare-and-swap —
//! and the retry schedule is a second atomic. Time comes from the caller (the node's [`Clock`]),
//! in wall-clock milliseconds; a clock that steps back resets the bucket instead of refusing
//! everyone until it catches up.
//!
//! [`Clock`]: crate::clock::Clock

use std::sync::atomic::{AtomicU64, Ordering};

/// The burst the bucket allows: one second's worth of admissions.
const BURST_US: u64 = 1_000_000;

/// Longest `retry-after` given, in seconds. A storm larger than a minute's worth of admissions is
/// told to come back after a minute; beyond that, a precise schedule is not worth promising.
pub const MAX_RETRY_AFTER_S: u32 = 60;

const MAX_RETRY_AFTER_US: u64 = MAX_RETRY_AFTER_S as u64 * 1_000_000;

/// Highest rate accepted; one admission per microsecond is where the algorithm's resolution ends.
pub const MAX_RATE: u32 = 1_000_000;

/// What [`SubscriptionRate::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The subscription may go ahead.
    Admitted,
    /// Over the rate: answer 503 with this `retry-after`, in whole seconds (at least 1).
    Refused {
        /// When the client should retry.
        retry_after_s: u32,
    },
}

/// A token bucket of new subscriptions per second, shared by every connection of the node.
#[derive(Debug)]
pub struct SubscriptionRate {
    /// Microseconds between two admissions at the steady rate.
    interval_us: u64,
    /// The bucket (GCRA): the time at which it would be full again, in microseconds since the
    /// epoch. A subscription is admitted while this, once advanced by one interval, stays within
    /// one burst of now.
    full_at_us: AtomicU64,
    /// When the last refused client was told to retry, in microseconds since the epoch; each
    /// refusal is told one interval later than the previous one.
    retry_at_us: AtomicU64,
}

impl SubscriptionRate {
    /// A bucket admitting `per_second` subscriptions a second (clamped to `1..=MAX_RATE`), with a
    /// burst of `per_second`.
    pub fn new(per_second: u32) -> SubscriptionRate {
        SubscriptionRate {
            interval_us: 1_000_000 / u64::from(per_second.clamp(1, MAX_RATE)),
            full_at_us: AtomicU64::new(0),
            retry_at_us: AtomicU64::new(0),
        }
    }

    /// Takes one admission at `now_ms` (wall-clock milliseconds), or says when to retry.
    pub fn admit(&self, now_ms: u64) -> Admission {
        let now = now_ms.saturating_mul(1000);
        let interval = self.interval_us;
        let taken = self
            .full_at_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |full_at| {
                // Normally `full_at <= now + BURST_US`; further ahead means the clock stepped back.
                let base = if full_at > now + BURST_US {
                    now
                } else {
                    full_at.max(now)
                };
                let next = base + interval;
                (next <= now + BURST_US).then_some(next)
            });
        if taken.is_ok() {
            return Admission::Admitted;
        }
        let schedule = |retry_at: u64| {
            let retry_at = if retry_at > now + MAX_RETRY_AFTER_US {
                now
            } else {
                retry_at
            };
            (retry_at + interval).max(now + 1_000_000).min(now + MAX_RETRY_AFTER_US)
        };
        let previous = self
            .retry_at_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |at| Some(schedule(at)))
            .unwrap_or_else(|at| at);
        let wait_us = schedule(previous) - now;
        Admission::Refused {
            retry_after_s: wait_us.div_ceil(1_000_000).clamp(1, u64::from(MAX_RETRY_AFTER_S)) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn admitted(rate: &SubscriptionRate, now_ms: u64, n: usize) -> usize {
        (0..n).filter(|_| rate.admit(now_ms) == Admission::Admitted).count()
    }

    #[test]
    fn a_full_bucket_admits_one_seconds_worth_at_once_then_refuses() {
        let (clock, _) = Clock::manual(1_700_000_000_000);
        let rate = SubscriptionRate::new(5);
        assert_eq!(admitted(&rate, clock.now_ms(), 5), 5);
        assert_eq!(rate.admit(clock.now_ms()), Admission::Refused { retry_after_s: 1 });
    }

    #[test]
    fn admissions_come_back_at_the_steady_rate() {
        let (clock, hand) = Clock::manual(1_700_000_000_000);
        let rate = SubscriptionRate::new(10);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 10);
        hand.advance_ms(99);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 0);
        hand.advance_ms(1);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 1);
        hand.advance_ms(500);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 5);
        // A long quiet period refills the bucket to one burst, not more.
        hand.advance_ms(60_000);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 10);
    }

    #[test]
    fn rates_that_do_not_divide_a_second_still_burst_their_full_count() {
        for per_second in [3, 7, 999, 1001, MAX_RATE] {
            let rate = SubscriptionRate::new(per_second);
            let n = per_second as usize;
            assert_eq!(admitted(&rate, 5_000, n + 10), n, "{per_second}");
        }
    }

    #[test]
    fn refused_clients_are_told_to_retry_at_the_rate_the_bucket_admits() {
        let (clock, _) = Clock::manual(1_700_000_000_000);
        let rate = SubscriptionRate::new(100);
        assert_eq!(admitted(&rate, clock.now_ms(), 100), 100);
        let retry_afters: Vec<u32> = (0..1000)
            .map(|_| match rate.admit(clock.now_ms()) {
                Admission::Refused { retry_after_s } => retry_after_s,
                Admission::Admitted => panic!("admitted over the rate"),
            })
            .collect();
        // 1,000 refused at 100 a second: told 1 s, 2 s, ... 10 s, about 100 for each second.
        assert_eq!(retry_afters[0], 1);
        assert_eq!(*retry_afters.last().unwrap(), 11);
        for s in 2..=10 {
            let told = retry_afters.iter().filter(|&&r| r == s).count();
            assert_eq!(told, 100, "retry-after {s}");
        }
        assert!(retry_afters.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_retry_schedule_is_capped_and_recovers_once_the_storm_has_passed() {
        let (clock, hand) = Clock::manual(1_700_000_000_000);
        let rate = SubscriptionRate::new(1);
        assert_eq!(admitted(&rate, clock.now_ms(), 1), 1);
        let last = (0..500).map(|_| rate.admit(clock.now_ms())).last();
        assert_eq!(
            last,
            Some(Admission::Refused {
                retry_after_s: MAX_RETRY_AFTER_S
            })
        );
        hand.advance_ms(120_000);
        assert_eq!(rate.admit(clock.now_ms()), Admission::Admitted);
        assert_eq!(rate.admit(clock.now_ms()), Admission::Refused { retry_after_s: 1 });
    }

    #[test]
    fn a_clock_that_steps_back_does_not_lock_everyone_out() {
        let (clock, hand) = Clock::manual(1_700_000_000_000);
        let rate = SubscriptionRate::new(2);
        assert_eq!(admitted(&rate, clock.now_ms(), 10), 2);
        hand.set_ms(1_700_000_000_000 - 3_600_000);
        assert_eq!(admitted(&rate, clock.now_ms(), 2), 2);
        assert_eq!(rate.admit(clock.now_ms()), Admission::Refused { retry_after_s: 1 });
    }

    #[test]
    fn concurrent_callers_never_admit_more_than_the_burst() {
        let rate = std::sync::Arc::new(SubscriptionRate::new(1000));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rate = rate.clone();
                std::thread::spawn(move || admitted(&rate, 42_000, 1000))
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
