//! SSE frames, encoded once and shared by every subscriber as HTTP/1.1 chunks.
//!
//! A [`Frame`] holds one SSE event already wrapped as one HTTP chunk (`{len:x}\r\n{event}\r\n`),
//! because Neurow's clients parse exactly one event per chunk. Encoding the chunk framing once per
//! message instead of once per delivery keeps the fan-out path to one reference-count increment
//! and one `writev` per subscriber; [`Frame::event_bytes`] slices the bare event back out for
//! transports without chunked encoding.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::clock::monotonic_ns;
use crate::model::Message;

/// One SSE event wrapped as one HTTP/1.1 chunk. Cheap to clone.
#[derive(Clone)]
pub struct Frame {
    bytes: Bytes,
    /// [`monotonic_ns`] when a live message was accepted, for the publish-to-write latency; 0 for
    /// replayed messages and control events, which are not measured.
    live_since_ns: u64,
}

/// Frames are equal when their bytes are: when they were made is not part of what they say.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({:?})", String::from_utf8_lossy(&self.event_bytes()))
    }
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Frame {
    /// Wraps an SSE event's bytes as a chunk.
    fn from_event(event: &[u8]) -> Frame {
        let mut buf = BytesMut::with_capacity(event.len() + 12);
        write!((&mut buf).writer(), "{:x}\r\n", event.len()).expect("writing to memory cannot fail");
        buf.put_slice(event);
        buf.put_slice(b"\r\n");
        Frame {
            bytes: buf.freeze(),
            live_since_ns: 0,
        }
    }

    /// [`Frame::message`] for a message being published now: its writes are measured.
    pub fn live_message(message: &Message) -> Frame {
        Frame {
            live_since_ns: monotonic_ns(),
            ..Frame::message(message)
        }
    }

    /// When the live message of this frame was accepted ([`monotonic_ns`]), if it is one.
    pub fn live_since_ns(&self) -> Option<u64> {
        (self.live_since_ns != 0).then_some(self.live_since_ns)
    }

    /// The message's event: `id: {id}\nevent: {event}\n` then one `data: ` line per payload line.
    ///
    /// Byte-identical to Neurow when the payload has no line break. A payload with line breaks
    /// (`\n`, `\r\n` or `\r`, all of which end an SSE line) gets one `data:` line per line, which
    /// a client joins back with `\n`; Neurow wrote it raw and corrupted the stream.
    pub fn message(message: &Message) -> Frame {
        let mut event = Vec::with_capacity(32 + message.event.len() + message.payload.len());
        write!(event, "id: {}\nevent: ", message.id).expect("writing to memory cannot fail");
        event.extend_from_slice(&message.event);
        event.push(b'\n');
        for line in payload_lines(&message.payload) {
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(line);
            event.push(b'\n');
        }
        event.push(b'\n');
        Frame::from_event(&event)
    }

    /// A control event with no data, such as `event: ping\n\n`.
    pub fn control(name: &str) -> Frame {
        Frame::from_event(format!("event: {name}\n\n").as_bytes())
    }

    /// The whole chunk, as written on an HTTP/1.1 chunked body.
    pub fn chunk(&self) -> &Bytes {
        &self.bytes
    }

    /// The SSE event alone, without the chunk framing.
    pub fn event_bytes(&self) -> Bytes {
        self.bytes.slice(self.event_range())
    }

    /// The SSE event alone, borrowed.
    pub fn event_slice(&self) -> &[u8] {
        &self.bytes[self.event_range()]
    }

    fn event_range(&self) -> std::ops::Range<usize> {
        let start = self.bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        start..self.bytes.len() - 2
    }

    /// Whether this frame carries a message (rather than a control event).
    pub fn is_message(&self) -> bool {
        let start = self.bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.bytes[start..].starts_with(b"id: ")
    }

    /// Length of the chunk in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the chunk is empty (never true for a built frame).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Splits a payload on SSE line terminators: `\r\n`, `\n` or `\r`.
fn payload_lines(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(payload);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i] == b'\r' && s.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// The body of an authentication or request error on the public API (spec §1.3): note `id:`
/// without a space, in seconds, as Neurow writes it.
pub fn error_event(now_s: u64, status: u16, code: &str, message: &str) -> String {
    let body = serde_json::json!({"errors": [{"error_code": code, "error_message": message}]});
    format!("id:{now_s}\nevent: neurow_error_{status}\ndata: {body}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;

    fn msg(id: u64, event: &str, payload: &str) -> Message {
        Message {
            id: EventId(id),
            event: Bytes::copy_from_slice(event.as_bytes()),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            accepted_ms: 0,
        }
    }

    #[test]
    fn a_message_is_neurows_bytes_in_one_chunk() {
        let f = Frame::message(&msg(1516239022123, "hello", "Hello world !"));
        let event = "id: 1516239022123\nevent: hello\ndata: Hello world !\n\n";
        assert_eq!(&f.event_bytes()[..], event.as_bytes());
        assert_eq!(&f.chunk()[..], format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }

    #[test]
    fn payload_line_breaks_become_data_lines() {
        let f = Frame::message(&msg(7, "e", "a\nb\r\nc\rd\n"));
        assert_eq!(
            &f.event_bytes()[..],
            b"id: 7\nevent: e\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
    }

    #[test]
    fn control_events_have_no_data() {
        assert_eq!(&Frame::control("ping").chunk()[..], b"d\r\nevent: ping\n\n\r\n");
    }

    #[test]
    fn error_events_use_seconds_and_no_space_after_id() {
        assert_eq!(
            error_event(1700000000, 401, "invalid_jwt_token", "Invalid JWT token"),
            "id:1700000000\nevent: neurow_error_401\ndata: {\"errors\":[{\"error_code\":\"invalid_jwt_token\",\"error_message\":\"Invalid JWT token\"}]}\n\n"
        );
    }
}
