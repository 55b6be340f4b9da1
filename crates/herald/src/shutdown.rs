//! Stopping a node: waiting for the signal (SIGTERM from orchestrators, SIGINT from Ctrl-C), then
//! telling the open streams to reconnect, spread over `SHUTDOWN_RECONNECT_WINDOW`.
//!
//! Every stream of a stopping node reconnects somewhere else. Told all at once, tens of
//! thousands of clients would arrive at the other nodes (or the restarted one) in the same
//! second, with their token checks and history replays: a storm that Herald itself caused. So
//! the `event: reconnect` of each stream is sent at its own moment, evenly over the window.
//! Neurow's reconnect event has no `retry:` field and clients reconnect as soon as they read it,
//! so pacing the events themselves is the only spreading that stays wire-compatible.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::hub::liveness::Liveness;
use crate::hub::outbox::CloseReason;

/// How often the reconnect schedule is looked at: fine enough that every 100 ms of the window
/// gets its share, coarse enough that a window of seconds costs a few hundred wake-ups.
const RECONNECT_TICK: Duration = Duration::from_millis(10);

/// Resolves when SIGTERM or SIGINT arrives, with the signal's name.
pub async fn signal_received() -> &'static str {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process still stops on signals, just not gracefully.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// How many of `total` streams should have been told to reconnect `elapsed` into `window`:
/// stream `j` (counting from 0) at `j × window / total`, so the first at once and the last
/// `window / total` before the window ends.
pub fn reconnects_due(total: usize, window: Duration, elapsed: Duration) -> usize {
    if elapsed >= window {
        return total;
    }
    let due = total as u128 * elapsed.as_nanos() / window.as_nanos() + 1;
    due.min(total as u128) as usize
}

/// Tells every open stream to reconnect, evenly over `window`, each exactly once. Returns how
/// many it told, once all have been told — or earlier, when every stream has gone. Streams not
/// told yet keep receiving messages meanwhile.
pub async fn tell_streams_to_reconnect(liveness: &Liveness, window: Duration) -> usize {
    let started = Instant::now();
    let total = liveness.len();
    // Where the schedule stands, rather than how many were told: streams that left on their own
    // do not make the others' turns come sooner.
    let mut scheduled = 0;
    let mut told = 0;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= window || liveness.is_empty() {
            break;
        }
        let due = reconnects_due(total, window, elapsed);
        if due > scheduled {
            told += liveness.close_some(CloseReason::Shutdown, due - scheduled);
            scheduled = due;
        }
        tokio::time::sleep(RECONNECT_TICK).await;
    }
    // The rest, including any stream that registered after the count.
    told + liveness.close_some(CloseReason::Shutdown, usize::MAX)
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it before the future completes.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::outbox::Outbox;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_schedule_is_even_over_the_window() {
        let ms = Duration::from_millis;
        assert_eq!(reconnects_due(1000, SECOND, ms(0)), 1);
        assert_eq!(reconnects_due(1000, SECOND, ms(1)), 2);
        assert_eq!(reconnects_due(1000, SECOND, ms(500)), 501);
        assert_eq!(reconnects_due(1000, SECOND, ms(999)), 1000);
        assert_eq!(reconnects_due(1000, SECOND, SECOND), 1000);
        // Few streams: spread too, the first at once.
        assert_eq!(reconnects_due(4, SECOND, ms(0)), 1);
        assert_eq!(reconnects_due(4, SECOND, ms(249)), 1);
        assert_eq!(reconnects_due(4, SECOND, ms(250)), 2);
        assert_eq!(reconnects_due(4, SECOND, ms(750)), 4);
        // No window: everyone at once. No streams: nothing.
        assert_eq!(reconnects_due(100_000, Duration::ZERO, Duration::ZERO), 100_000);
        assert_eq!(reconnects_due(0, SECOND, ms(10)), 0);
        // No overflow, even for absurd counts.
        assert_eq!(reconnects_due(usize::MAX, SECOND, ms(1000)), usize::MAX);
        assert!(reconnects_due(usize::MAX, SECOND, ms(999)) > usize::MAX / 1000 * 998);
    }

    fn streams(liveness: &Liveness, n: usize) -> Vec<Arc<Outbox>> {
        (0..n)
            .map(|_| {
                let o = Arc::new(Outbox::new(8, 0, u64::MAX));
                liveness.register(o.clone(), crate::auth::revocation::Identity::NONE);
                o
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_stream_is_told_once_and_the_telling_is_spread() {
        let liveness = Liveness::default();
        let outboxes = streams(&liveness, 1000);
        let window = Duration::from_secs(2);
        let telling = tell_streams_to_reconnect(&liveness, window);
        tokio::pin!(telling);
        let closing = || outboxes.iter().filter(|o| o.closing().is_some()).count();
        let mut seen = Vec::new();
        // Looked at 500, 1000 and 1500 ms in (the window ends at 2000, with the last stream).
        for _ in 0..3 {
            tokio::select! {
                told = &mut telling => panic!("finished early, having told {told}"),
                _ = tokio::time::sleep(Duration::from_millis(500)) => seen.push(closing()),
            }
        }
        // About a quarter more every half second.
        for (i, &n) in seen.iter().enumerate() {
            let expected = 250 * (i + 1);
            assert!(n.abs_diff(expected) <= 10, "{seen:?}");
        }
        assert_eq!(telling.await, 1000);
        assert!(outboxes.iter().all(|o| o.closing() == Some(CloseReason::Shutdown)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_telling_stops_early_once_every_stream_is_gone() {
        let liveness = Liveness::default();
        let started = Instant::now();
        assert_eq!(tell_streams_to_reconnect(&liveness, Duration::from_secs(60)).await, 0);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_telling_ends_when_the_streams_leave_before_their_turn() {
        let liveness = Liveness::default();
        let keys: Vec<_> = (0..10)
            .map(|_| {
                liveness.register(
                    Arc::new(Outbox::new(8, 0, u64::MAX)),
                    crate::auth::revocation::Identity::NONE,
                )
            })
            .collect();
        let started = Instant::now();
        let telling = tell_streams_to_reconnect(&liveness, Duration::from_secs(60));
        tokio::pin!(telling);
        tokio::select! {
            _ = &mut telling => panic!("finished while streams were open"),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for key in keys {
            liveness.unregister(key);
        }
        assert_eq!(telling.await, 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn streams_already_closing_are_not_told_twice() {
        let liveness = Liveness::default();
        let outboxes = streams(&liveness, 3);
        outboxes[1].close(CloseReason::SlowConsumer);
        assert_eq!(tell_streams_to_reconnect(&liveness, Duration::ZERO).await, 2);
        assert_eq!(outboxes[1].closing(), Some(CloseReason::SlowConsumer));
    }
}
