//! Server-Sent Events: the exact bytes of spec §1.3 and the writer that streams them.

pub mod frame;
pub mod stream;
