//! How one connection's deliveries become SSE events on the wire.
//!
//! The bytes every subscriber shares come from the message's encoding cache
//! ([`crate::model::SharedMessage::encoded`]); what differs per connection is added here: nothing
//! for Neurow's events; the `id:` line for Herald's, since it is the connection's cursor.
//!
//! Herald's event (v2):
//!
//! ```text
//! id: <the connection's cursor after this message>
//! event: <the message's event>
//! data: {"topic":"<name>","id":"<event id>","payload":"<payload>"}
//! ```
//!
//! The data is JSON so that one stream can say which topic each message is from, and carries the
//! message's own id so a client can tell a repeat; `payload` is the published string.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{self, chunk_event};
use crate::hub::outbox::{CloseReason, Delivery};
use crate::model::{Message, Topic, cursor};
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

    /// A whole event (no per-connection part), made as a chunk, framed.
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
    /// Herald's events (v2): `id:` is the connection's cursor.
    Herald(Box<HeraldEvents>),
}

/// What a v2 stream keeps to write its cursor: its position in each topic, little else (this
/// is per connection, for the connection's whole life).
#[derive(Debug)]
pub struct HeraldEvents {
    /// The length of the issuer's namespace prefix (`"{issuer}-"`), cut from names on the wire.
    prefix_len: usize,
    /// The last event id delivered on each topic (a delivery's index points here), or its
    /// position when the stream opened.
    positions: Box<[u64]>,
    /// [`cursor::topic_set_hash`] of the topics.
    hash: u64,
    /// The names of the topics the resume may have missed messages of: told once, at the opening.
    gaps: Option<Box<[String]>>,
}

impl HeraldEvents {
    /// The events of a stream on `topics` (canonical order) of `issuer`, starting at `positions`.
    pub fn new(topics: &[Topic], issuer: &str, positions: Box<[u64]>) -> HeraldEvents {
        HeraldEvents {
            prefix_len: issuer.len() + 1,
            positions,
            hash: cursor::topic_set_hash(topics),
            gaps: None,
        }
    }

    /// Tells the stream, at its opening, that its resume may have missed messages of these topics
    /// (`indexes` into `topics`).
    pub fn with_gaps(mut self, topics: &[Topic], indexes: &[u16]) -> HeraldEvents {
        let names: Box<[String]> = indexes
            .iter()
            .filter_map(|&i| topics.get(usize::from(i))?.as_str().get(self.prefix_len..))
            .map(str::to_owned)
            .collect();
        self.gaps = (!names.is_empty()).then_some(names);
        self
    }

    /// The cursor of the current positions.
    pub fn cursor(&self) -> String {
        let mut s = String::new();
        cursor::encode(self.hash, &self.positions, &mut s);
        s
    }

    /// Appends one event: the per-connection `id:` line (in `scratch`), then the shared rest.
    fn push(&mut self, d: &Delivery, framing: Framing, scratch: &mut BytesMut, out: &mut Vec<Bytes>) {
        let index = usize::from(d.index);
        if index >= self.positions.len() {
            return;
        }
        let prefix_len = self.prefix_len;
        let shared = d.message.encoded(WireFormat::HeraldSse.slot(), |m| {
            herald_event(m, d.message.topic().as_str().get(prefix_len..).unwrap_or(""))
        });
        self.positions[index] = d.message.message().id.0;
        let mut id = String::with_capacity(16 + 8 * self.positions.len());
        id.push_str("id: ");
        cursor::encode(self.hash, &self.positions, &mut id);
        id.push('\n');
        if framing == Framing::Chunked {
            let _ = write!((&mut *scratch).writer(), "{:x}\r\n", id.len() + shared.len());
        }
        scratch.put_slice(id.as_bytes());
        out.push(scratch.split().freeze());
        out.push(shared.clone());
        if framing == Framing::Chunked {
            out.push(Bytes::from_static(b"\r\n"));
        }
    }
}

/// The shared part of Herald's event for a message of topic `name`: all but the `id:` line.
pub fn herald_event(message: &Message, name: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Data<'a> {
        topic: &'a str,
        id: &'a str,
        payload: &'a str,
    }
    let id = message.id.to_string();
    let payload = String::from_utf8_lossy(&message.payload);
    let mut event = Vec::with_capacity(48 + name.len() + message.event.len() + message.payload.len());
    event.extend_from_slice(b"event: ");
    event.extend_from_slice(&message.event);
    event.extend_from_slice(b"\ndata: ");
    let data = Data {
        topic: name,
        id: &id,
        payload: &payload,
    };
    serde_json::to_writer(&mut event, &data).expect("writing JSON to memory cannot fail");
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
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
            EventFormat::Herald(events) => {
                // One buffer for every `id:` line of the batch, split into shared pieces.
                let mut scratch = BytesMut::with_capacity(deliveries.len() * (24 + 8 * events.positions.len()));
                for d in deliveries {
                    events.push(d, framing, &mut scratch, out);
                }
            }
        }
    }

    /// Appends what a stream starts with, after its response head: nothing for Neurow's events;
    /// for Herald's an event with only an `id:`, the cursor, so that a client that reconnects
    /// before its first message still resumes from here (a browser records the id of an event
    /// without data and dispatches nothing).
    pub fn opening(&mut self, framing: Framing, out: &mut Vec<Bytes>) {
        match self {
            EventFormat::Neurow => {}
            EventFormat::Herald(events) => {
                let mut pieces = vec![format!("id: {}\n\n", events.cursor())];
                if let Some(topics) = events.gaps.take() {
                    // Before the replay: which topics it cannot prove complete.
                    let data = serde_json::json!({ "topics": topics });
                    pieces.push(format!("event: history_gap\ndata: {data}\n\n"));
                }
                for event in pieces {
                    out.push(match framing {
                        Framing::Chunked => frame::chunk(event.as_bytes()),
                        Framing::Raw => Bytes::from(event),
                    });
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventId, SharedMessage};

    fn delivery(topic: &Topic, index: u16, id: u64, payload: &'static str) -> Delivery {
        Delivery {
            index,
            message: SharedMessage::replayed(
                topic.clone(),
                Message {
                    id: EventId(id),
                    event: Bytes::from_static(b"update"),
                    payload: Bytes::from_static(payload.as_bytes()),
                    accepted_ms: 0,
                },
            ),
        }
    }

    fn text(pieces: &[Bytes]) -> String {
        pieces.iter().map(|p| String::from_utf8_lossy(p)).collect()
    }

    #[test]
    fn herald_events_carry_the_cursor_and_a_json_envelope() {
        let topics: Vec<Topic> = ["a", "b"].iter().map(|n| Topic::namespaced("app-1", n)).collect();
        let hash = cursor::topic_set_hash(&topics);
        let mut format = EventFormat::Herald(Box::new(HeraldEvents::new(&topics, "app-1", Box::new([5, 9]))));
        let mut out = Vec::new();
        format.opening(Framing::Raw, &mut out);
        format.deliveries(
            &[delivery(&topics[0], 0, 12, "he said \"hi\"\n")],
            Framing::Raw,
            &mut out,
        );
        let mut after = String::new();
        cursor::encode(hash, &[12, 9], &mut after);
        let mut before = String::new();
        cursor::encode(hash, &[5, 9], &mut before);
        assert_eq!(
            text(&out),
            format!(
                "id: {before}\n\nid: {after}\nevent: update\ndata: {{\"topic\":\"a\",\"id\":\"12\",\"payload\":\"he said \\\"hi\\\"\\n\"}}\n\n"
            )
        );
    }

    #[test]
    fn chunked_herald_events_declare_their_whole_length() {
        let topics = [Topic::namespaced("i", "t")];
        let mut format = EventFormat::Herald(Box::new(HeraldEvents::new(&topics, "i", Box::new([0]))));
        let mut out = Vec::new();
        format.deliveries(&[delivery(&topics[0], 0, 7, "x")], Framing::Chunked, &mut out);
        let wire = text(&out);
        let (size, rest) = wire.split_once("\r\n").unwrap();
        let event = rest.strip_suffix("\r\n").unwrap();
        assert_eq!(usize::from_str_radix(size, 16).unwrap(), event.len());
        assert!(event.starts_with("id: 7\nevent: update\n"), "{event}");
    }
}
