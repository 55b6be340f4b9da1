//! The domain vocabulary of DESIGN.md as types: topics, event ids, messages.
//!
//! Newtypes keep a topic from being passed where an issuer is expected and an event id from being
//! mixed up with a plain timestamp.

pub mod cursor;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A fully namespaced topic name, `"{issuer}-{name}"`, as Neurow builds it.
///
/// Cheap to clone: the name is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Builds the topic a principal of `issuer` reads or writes when it names `name`.
    pub fn namespaced(issuer: &str, name: &str) -> Self {
        let mut full = String::with_capacity(issuer.len() + 1 + name.len());
        full.push_str(issuer);
        full.push('-');
        full.push_str(name);
        Topic(full.into())
    }

    /// A topic from its full name (as `/history/:topic` receives it).
    pub fn from_full_name(full: &str) -> Self {
        Topic(full.into())
    }

    /// The full name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SSE `id:` of a message: the publisher's `timestamp`, or one the server assigned.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a subscriber resumes: the parsed `Last-Event-ID` header.
///
/// Neurow parses the header as any integer, so a negative value is legal and replays everything.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ResumeFrom {
    /// No header: live messages only, no replay.
    Live,
    /// Replay every retained message whose id is strictly greater than this, then go live.
    After(i128),
}

impl ResumeFrom {
    /// Whether a message with this id is newer than the resume point.
    pub fn wants(self, id: EventId) -> bool {
        match self {
            ResumeFrom::Live => false,
            ResumeFrom::After(last) => i128::from(id.0) > last,
        }
    }
}

/// A message as a publisher sent it, validated, before the hub gives it an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The SSE `event:` name; non-empty.
    pub event: Bytes,
    /// The SSE data; non-empty; may contain newlines.
    pub payload: Bytes,
    /// The publisher's `timestamp`, used as the event id when present.
    pub timestamp: Option<u64>,
}

/// A message accepted by the hub: it has its event id and the time it was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The event id (SSE `id:`).
    pub id: EventId,
    /// The SSE `event:` name.
    pub event: Bytes,
    /// The SSE data.
    pub payload: Bytes,
    /// Wall-clock milliseconds when the hub accepted it; drives retention.
    pub accepted_ms: u64,
}

impl Message {
    /// Bytes this message holds in history, for the `HISTORY_MAX_BYTES` budget.
    pub fn retained_size(&self) -> usize {
        // The fixed part approximates the ring slot and the two `Bytes` headers.
        const FIXED: usize = 96;
        FIXED + self.event.len() + self.payload.len()
    }
}

/// How many wire formats a [`SharedMessage`] can hold bytes for (`transport::WireFormat` names
/// them; the hub only keeps the slots).
pub const WIRE_FORMATS: usize = 3;

/// A message as the hub hands it out: accepted once and shared by every connection that receives
/// it, with its bytes in each wire format made once — by the first writer that needs them, outside
/// any hub lock — and shared by every other writer of that format (DESIGN.md, "encode once").
pub struct SharedMessage {
    /// The topic it was published on (wire formats that name it cut the issuer's prefix).
    topic: Topic,
    message: Message,
    /// [`crate::clock::monotonic_ns`] when a live message was accepted, for the publish-to-write
    /// latency; 0 for replayed messages, which are not measured.
    live_since_ns: u64,
    /// Whether this is not a message but a [`SharedMessage::gap_notice`].
    gap_notice: bool,
    encoded: [std::sync::OnceLock<Bytes>; WIRE_FORMATS],
}

impl SharedMessage {
    /// A message of `topic` being delivered live: its writes are measured.
    pub fn live(topic: Topic, message: Message) -> Arc<SharedMessage> {
        Arc::new(SharedMessage {
            topic,
            message,
            live_since_ns: crate::clock::monotonic_ns(),
            gap_notice: false,
            encoded: Default::default(),
        })
    }

    /// A message of `topic` replayed from history.
    pub fn replayed(topic: Topic, message: Message) -> Arc<SharedMessage> {
        Arc::new(SharedMessage {
            topic,
            message,
            live_since_ns: 0,
            gap_notice: false,
            encoded: Default::default(),
        })
    }

    /// Not a message: a notice that a subscription to `topic` resumed from a position older than
    /// its history can prove complete (DESIGN.md promise 4). On a cluster node the replay reaches
    /// the connection after its stream opened, so the notice travels the outbox the same way,
    /// just before the topic's replay, and the client hears of the gap first. Wire formats with
    /// no gap event (Neurow's) skip it; it has no id and moves no cursor.
    pub fn gap_notice(topic: Topic) -> Arc<SharedMessage> {
        Arc::new(SharedMessage {
            topic,
            message: Message {
                id: EventId(0),
                event: Bytes::new(),
                payload: Bytes::new(),
                accepted_ms: 0,
            },
            live_since_ns: 0,
            gap_notice: true,
            encoded: Default::default(),
        })
    }

    /// Whether this is a [`SharedMessage::gap_notice`] rather than a message.
    pub fn is_gap_notice(&self) -> bool {
        self.gap_notice
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Its topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// When the message was accepted live ([`crate::clock::monotonic_ns`]), if it was.
    pub fn live_since_ns(&self) -> Option<u64> {
        (self.live_since_ns != 0).then_some(self.live_since_ns)
    }

    /// Its bytes in wire format `slot`, made by `encode` the first time they are asked for.
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Message) -> Bytes) -> &Bytes {
        self.encoded[slot].get_or_init(|| encode(&self.message))
    }
}

impl fmt::Debug for SharedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMessage")
            .field("message", &self.message)
            .field("live", &self.live_since_ns().is_some())
            .finish()
    }
}
