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

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{self, chunk_event};
use crate::hub::outbox::{CloseReason, Delivery};
use crate::model::cursor::{self, Cursor};
use crate::model::{Message, Topic};
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

/// What a v2 stream keeps to write its cursor: the cursor itself, encoded, and little else (this
/// is per connection, for the connection's whole life).
#[derive(Debug)]
pub struct HeraldEvents {
    /// The length of the issuer's namespace prefix (`"{issuer}-"`), cut from names on the wire.
    prefix_len: usize,
    /// The position of every topic: the last event id delivered on it (a delivery's index says
    /// which), or its position when the stream opened.
    cursor: Cursor,
    /// The names of the topics the resume may have missed messages of: told once, at the opening.
    gaps: Option<Box<[String]>>,
}

impl HeraldEvents {
    /// The events of a stream on `topics` (canonical order) of `issuer`, starting at `positions`.
    pub fn new(topics: &[Topic], issuer: &str, positions: &[u64]) -> HeraldEvents {
        HeraldEvents {
            prefix_len: issuer.len() + 1,
            cursor: Cursor::new(cursor::topic_set_hash(topics), positions),
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

    /// Appends one event to `batch`: the per-connection part (this chunk's size, the `id:` line),
    /// then a copy of the shared rest. A copy rather than a slice of its own keeps the batch one
    /// slice of one `writev`; in the 8-topic broadcast benchmark both cost the same (0.59 µs of
    /// server CPU a delivery, most of it the kernel's per-byte work), and one buffer is simpler.
    fn push(&mut self, d: &Delivery, framing: Framing, batch: &mut BytesMut) {
        if !self.cursor.set(usize::from(d.index), d.message.message().id.0) {
            return;
        }
        let prefix_len = self.prefix_len;
        let shared = d.message.encoded(WireFormat::HeraldSse.slot(), |m| {
            herald_event(m, d.message.topic().as_str().get(prefix_len..).unwrap_or(""))
        });
        let id = self.cursor.as_bytes();
        if framing == Framing::Chunked {
            let size = ID_FIELD.len() + id.len() + 1 + shared.len();
            let mut hex = [0u8; 16];
            batch.put_slice(hex_digits(size, &mut hex));
            batch.put_slice(b"\r\n");
        }
        batch.put_slice(ID_FIELD);
        batch.put_slice(id);
        batch.put_u8(b'\n');
        batch.put_slice(shared);
        if framing == Framing::Chunked {
            batch.put_slice(b"\r\n");
        }
    }
}

const ID_FIELD: &[u8] = b"id: ";

/// Appends a whole event with no per-connection part, framed.
fn push_event(batch: &mut BytesMut, event: &[u8], framing: Framing) {
    if framing == Framing::Chunked {
        let mut hex = [0u8; 16];
        batch.put_slice(hex_digits(event.len(), &mut hex));
        batch.put_slice(b"\r\n");
    }
    batch.put_slice(event);
    if framing == Framing::Chunked {
        batch.put_slice(b"\r\n");
    }
}

/// `n` in lowercase hexadecimal, written at the end of `buf`.
fn hex_digits(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[start..];
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

/// How many of `deliveries` are messages (not gap notices): what a writer counts as sent.
pub fn messages_in(deliveries: &[Delivery]) -> u64 {
    deliveries.iter().filter(|d| !d.message.is_gap_notice()).count() as u64
}

/// The `history_gap` event naming `topics`: they resumed from a position older than their
/// history can prove complete.
fn gap_event<S: serde::Serialize>(topics: &[S]) -> String {
    let data = serde_json::json!({ "topics": topics });
    format!("event: history_gap\ndata: {data}\n\n")
}

impl EventFormat {
    /// Appends the wire pieces of `deliveries`, in order, to `out`.
    pub fn deliveries(&mut self, deliveries: &[Delivery], framing: Framing, out: &mut Vec<Bytes>) {
        match self {
            EventFormat::Neurow => {
                // Neurow has no gap event: v1 streams keep its behaviour.
                for d in deliveries.iter().filter(|d| !d.message.is_gap_notice()) {
                    let chunk = d.message.encoded(WireFormat::NeurowSse.slot(), frame::neurow_chunk);
                    out.push(framing.event(chunk));
                }
            }
            EventFormat::Herald(events) => {
                // The whole batch in one buffer (see `HeraldEvents::push`).
                let cursor_len = events.cursor.as_bytes().len();
                let mut batch = BytesMut::with_capacity(deliveries.len() * (cursor_len + 192));
                let mut gaps: Vec<&str> = Vec::new();
                for (i, d) in deliveries.iter().enumerate() {
                    if d.message.is_gap_notice() {
                        // Notices in a row (a cluster node's topics caught up together) make one event.
                        gaps.push(d.message.topic().as_str().get(events.prefix_len..).unwrap_or(""));
                        if deliveries.get(i + 1).is_none_or(|next| !next.message.is_gap_notice()) {
                            push_event(&mut batch, gap_event(&gaps).as_bytes(), framing);
                            gaps.clear();
                        }
                        continue;
                    }
                    events.push(d, framing, &mut batch);
                }
                if !batch.is_empty() {
                    out.push(batch.freeze());
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
                let mut pieces = vec![format!("id: {}\n\n", events.cursor.as_str())];
                if let Some(topics) = events.gaps.take() {
                    // Before the replay: which topics it cannot prove complete.
                    pieces.push(gap_event(&topics));
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
        let mut format = EventFormat::Herald(Box::new(HeraldEvents::new(&topics, "app-1", &[5, 9])));
        let mut out = Vec::new();
        format.opening(Framing::Raw, &mut out);
        format.deliveries(
            &[delivery(&topics[0], 0, 12, "he said \"hi\"\n")],
            Framing::Raw,
            &mut out,
        );
        let before = cursor::encode(hash, &[5, 9]);
        let mut after = Cursor::new(hash, &[5, 9]);
        after.set(0, 12);
        let after = after.as_str();
        assert_eq!(cursor::decode(after, hash, 2), Ok(vec![12, 9]));
        assert_eq!(
            text(&out),
            format!(
                "id: {before}\n\nid: {after}\nevent: update\ndata: {{\"topic\":\"a\",\"id\":\"12\",\"payload\":\"he said \\\"hi\\\"\\n\"}}\n\n"
            )
        );
    }

    #[test]
    fn gap_notices_become_one_history_gap_event_and_neurow_skips_them() {
        let topics: Vec<Topic> = ["a", "b", "c"].iter().map(|n| Topic::namespaced("i", n)).collect();
        let notice = |index: u16| Delivery {
            index,
            message: SharedMessage::gap_notice(topics[usize::from(index)].clone()),
        };
        let batch = [notice(0), notice(2), delivery(&topics[0], 0, 7, "x"), notice(1)];
        let mut format = EventFormat::Herald(Box::new(HeraldEvents::new(&topics, "i", &[0, 0, 0])));
        let mut out = Vec::new();
        format.deliveries(&batch, Framing::Raw, &mut out);
        let wire = text(&out);
        let events: Vec<&str> = wire.split_inclusive("\n\n").collect();
        assert_eq!(events.len(), 3, "{wire}");
        assert_eq!(events[0], "event: history_gap\ndata: {\"topics\":[\"a\",\"c\"]}\n\n");
        assert!(events[1].contains("\"id\":\"7\""), "{}", events[1]);
        assert_eq!(events[2], "event: history_gap\ndata: {\"topics\":[\"b\"]}\n\n");
        assert_eq!(messages_in(&batch), 1);

        let mut neurow = EventFormat::Neurow;
        let mut out = Vec::new();
        neurow.deliveries(&batch, Framing::Raw, &mut out);
        assert_eq!(text(&out), "id: 7\nevent: update\ndata: x\n\n");
    }

    #[test]
    fn chunked_herald_events_declare_their_whole_length() {
        for names in [&["t"][..], &["a", "b", "c"]] {
            let topics: Vec<Topic> = names.iter().map(|n| Topic::namespaced("i", n)).collect();
            let positions = vec![0; topics.len()];
            let mut format = EventFormat::Herald(Box::new(HeraldEvents::new(&topics, "i", &positions)));
            let mut out = Vec::new();
            let batch: Vec<Delivery> = (0..5u64)
                .map(|n| {
                    delivery(
                        &topics[n as usize % topics.len()],
                        (n as usize % topics.len()) as u16,
                        7 + n,
                        "x",
                    )
                })
                .collect();
            format.deliveries(&batch, Framing::Chunked, &mut out);
            // Every chunk's declared size is its length, and the chunks hold the events in order.
            let mut wire = text(&out);
            let mut events = Vec::new();
            while !wire.is_empty() {
                let (size, rest) = wire.split_once("\r\n").unwrap();
                let size = usize::from_str_radix(size, 16).unwrap();
                events.push(rest[..size].to_owned());
                assert_eq!(&rest[size..size + 2], "\r\n");
                wire = rest[size + 2..].to_owned();
            }
            assert_eq!(events.len(), 5);
            for (n, event) in events.iter().enumerate() {
                assert!(event.contains(&format!("\"id\":\"{}\"", 7 + n)), "{event}");
                assert!(event.starts_with("id: ") && event.ends_with("\n\n"), "{event}");
            }
            if topics.len() == 1 {
                assert!(events[0].starts_with("id: 7\nevent: update\n"), "{}", events[0]);
            }
        }
    }
}
