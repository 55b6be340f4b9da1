//! Byte-level HTTP/1.1 and SSE handling shared by the subscriber and publisher clients.
//!
//! The load tool holds thousands of streams at once, so these parsers are written to work on
//! borrowed buffers with no per-event allocation, and to be fed whatever a TCP read returned:
//! half an event, one event, or many events at once.

pub mod chunked;
pub mod head;
pub mod sse;
