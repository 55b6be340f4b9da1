//! Transports: how encoded frames reach a client. Each turns an outbox into bytes on a socket and
//! knows nothing of topics, history or auth. Server-Sent Events is the only one so far.

pub mod sse;
