//! How one connection's deliveries become SSE events on the wire.
//!
//! The bytes every subscriber shares come from the message's encoding cache
//! ([`crate::model::SharedMessage::encoded`]); what differs per connection (nothing for Neurow's
//! events) is added here.

use bytes::Bytes;

use super::frame::{self, chunk_event};
use crate::hub::outbox::{CloseReason, Delivery};
use crate::transport::WireFormat;

/// How the events of a body are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1: one chunk per event, and a last chunk at the end.
    Chunked,
    /// HTTP/1.0 and HTTP/2: the events as they are.
    Raw,
}

impl Framing {
    /// What ends the body.
    pub fn end(self) -> &'static [u8] {
        match self {
            Framing::Chunked => frame::LAST_CHUNK,
            Framing::Raw => b"",
        }
    }

    /// A whole event (no per-connection part) framed.
    fn event(self, chunk: &Bytes) -> Bytes {
        match self {
            Framing::Chunked => chunk.clone(),
            Framing::Raw => chunk_event(chunk),
        }
    }
}

/// The events of one connection.
#[derive(Debug)]
pub enum EventFormat {
    /// Neurow's events (v1): `id:` is the message's event id; every byte is shared.
    Neurow,
}

impl EventFormat {
    /// Appends the wire pieces of `deliveries`, in order, to `out`.
    pub fn deliveries(&mut self, deliveries: &[Delivery], framing: Framing, out: &mut Vec<Bytes>) {
        match self {
            EventFormat::Neurow => {
                for d in deliveries {
                    let chunk = d.message.encoded(WireFormat::NeurowSse.slot(), frame::neurow_chunk);
                    out.push(framing.event(chunk));
                }
            }
        }
    }

    /// Appends what a stream starts with, after its response head (nothing for Neurow's events).
    pub fn opening(&mut self, _framing: Framing, _out: &mut Vec<Bytes>) {
        match self {
            EventFormat::Neurow => {}
        }
    }

    /// Appends a keep-alive event.
    pub fn ping(&self, framing: Framing, out: &mut Vec<Bytes>) {
        out.push(framing.event(&frame::control_chunk("ping")));
    }

    /// Appends the event that ends the stream for `reason`, then the end of the body.
    pub fn closing(&self, reason: CloseReason, framing: Framing, out: &mut Vec<Bytes>) {
        out.push(framing.event(&frame::control_chunk(frame::closing_event_name(reason))));
        let end = framing.end();
        if !end.is_empty() {
            out.push(Bytes::from_static(end));
        }
    }
}
