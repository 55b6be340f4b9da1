//! Wall-clock time in milliseconds, injectable so history and hub tests control it.
//!
//! Event ids read as milliseconds since the epoch (Neurow's convention), so the hub needs wall-clock
//! time rather than a monotonic instant. Core modules take time only from a [`Clock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds on a monotonic clock since its first reading in this process, never 0: for
/// measuring latencies (which wall-clock jumps would distort), not for ids.
pub fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    (start.elapsed().as_nanos() as u64).max(1)
}

/// A source of wall-clock milliseconds.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    System,
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// The system's real-time clock.
    pub fn system() -> Self {
        Clock(Source::System)
    }

    /// A clock that only moves when a test moves it; returns the handle that moves it.
    pub fn manual(start_ms: u64) -> (Self, ManualClock) {
        let now = Arc::new(AtomicU64::new(start_ms));
        (Clock(Source::Manual(now.clone())), ManualClock(now))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Source::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

/// The handle that moves a manual [`Clock`].
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the clock.
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }
}
