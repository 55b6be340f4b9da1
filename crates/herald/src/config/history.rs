//! Retention of history: how long and how much of it a node keeps for replay after a
//! reconnection (`HISTORY_*`).

use std::time::Duration;

use super::reader::Reader;

/// Retention of history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    /// A message stays replayable at least this long, and is gone after twice this.
    pub min_duration: Duration,
    /// Most messages kept per topic.
    pub max_messages_per_topic: usize,
    /// Most bytes kept over all topics.
    pub max_bytes: usize,
}

/// Reads the `HISTORY_*` variables.
pub(super) fn read(r: &mut Reader<'_>) -> HistoryConfig {
    HistoryConfig {
        min_duration: Duration::from_secs(r.integer("HISTORY_MIN_DURATION", 30, 0, 86400 * 7)),
        max_messages_per_topic: r.integer("HISTORY_MAX_MESSAGES_PER_TOPIC", 1000, 0, 10_000_000) as usize,
        max_bytes: r.integer("HISTORY_MAX_BYTES", 256 << 20, 0, 1 << 40) as usize,
    }
}
