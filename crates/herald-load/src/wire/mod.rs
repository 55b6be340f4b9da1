//! Byte-level HTTP/1.1, SSE, multipart and WebSocket handling shared by the subscriber, poller,
//! WebSocket and publisher clients.
//!
//! The load tool holds thousands of streams at once, so these parsers are written to work on
//! borrowed buffers with no per-event allocation, and to be fed whatever a TCP read returned:
//! half an event, one event, or many events at once.

pub mod chunked;
pub mod head;
pub mod multipart;
pub mod response;
pub mod sse;
pub mod ws;
