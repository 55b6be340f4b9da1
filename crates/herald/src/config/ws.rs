//! The WebSocket API's limits (`WS_*`, `/v2/ws`).

use super::reader::Reader;

/// The WebSocket API's limits.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// The largest message a client may send, in bytes; a larger one closes with 1009.
    pub max_message_size: usize,
    /// Commands one connection may send in a second (0: no limit); more close with 4429.
    pub max_commands_per_second: u32,
    /// How long a connection may stay silent before Herald pings it (a ping frame and a JSON
    /// `ping`); a client silent for this plus 10 s is closed with 4512.
    pub ping_interval: std::time::Duration,
}

/// Reads the `WS_*` variables.
pub(super) fn read(r: &mut Reader<'_>) -> WsConfig {
    WsConfig {
        max_message_size: r.integer("WS_MAX_MESSAGE_SIZE", 64 * 1024, 125, 16 << 20) as usize,
        max_commands_per_second: r.integer("WS_MAX_COMMANDS_PER_SECOND", 100, 0, 1_000_000) as u32,
        ping_interval: std::time::Duration::from_secs(r.integer("WS_PING_INTERVAL", 25, 1, 3600)),
    }
}
