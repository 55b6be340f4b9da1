//! Server-Sent Events: the exact bytes of spec §1.3 (and Herald's own events), the HTTP/1 writer
//! that streams them onto a socket, and the HTTP/2 response body that hands them to hyper.

pub mod body;
pub mod events;
pub mod frame;
pub mod stream;
