//! WebSocket (RFC 6455): the opening handshake, the framing, and the held connection that any
//! face can speak over. The protocol spoken in the frames (Herald's JSON commands) is the face's
//! (`api::v2::ws`); this module knows frames, not commands.

pub mod frame;
pub mod handshake;
pub mod session;
