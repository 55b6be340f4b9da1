//! Transports: how a connection's deliveries reach its client. Each turns an outbox into bytes
//! on a socket and knows nothing of topics' storage, fan-out or auth: Server-Sent Events and
//! WebSocket (long-polling is an HTTP answer, `api::v2::poll`).

pub mod json;
pub mod sse;
pub mod ws;

/// The wire formats a message is encoded in. Each names the slot of its bytes in a
/// [`crate::model::SharedMessage`], so a message is encoded once per format, by the first writer
/// that needs it, and shared by all the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Neurow's SSE event, as one HTTP/1.1 chunk (v1).
    NeurowSse = 0,
    /// Herald's SSE event without its `id:` line, which each connection writes itself (v2).
    HeraldSse = 1,
    /// The message as a JSON object (long-polling, WebSocket).
    Json = 2,
}

impl WireFormat {
    /// The slot of this format's bytes.
    pub const fn slot(self) -> usize {
        self as usize
    }
}

const _: () = assert!(WireFormat::Json.slot() < crate::model::WIRE_FORMATS);
