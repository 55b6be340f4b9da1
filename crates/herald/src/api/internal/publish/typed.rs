//! The fast publish parser: well-formed bodies decoded straight into borrowed strings.
//!
//! It answers only "accepted, here it is" or "ask the reference parser": every rule it does not
//! check itself (a non-object `message` beside `messages`, a number where a string belongs, an
//! array instead of an object, …) makes it give up, so the reference parser keeps the one source
//! of Neurow's reasons. Objects are read as maps only (serde would also read a struct from a JSON
//! array), and a repeated key keeps its last value, as `serde_json::Value` does.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{MAX_TIMESTAMP, PublishRequest};
use crate::model::NewMessage;

/// The accepted request, or `None` to let the reference parser decide.
pub(super) fn parse(body: &[u8]) -> Option<PublishRequest> {
    let raw: RawBody = serde_json::from_slice(body).ok()?;
    let topics = match (raw.topic, raw.topics) {
        (Some(topic), None) => vec![non_empty(topic)?],
        (None, Some(topics)) if !topics.is_empty() => topics.into_iter().map(non_empty).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let messages = match (raw.message, raw.messages) {
        (Some(message), None) => vec![message.validate()?],
        (None, Some(messages)) if !messages.is_empty() => messages
            .into_iter()
            .map(RawMessage::validate)
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(PublishRequest { topics, messages })
}

fn non_empty(s: Str<'_>) -> Option<String> {
    (!s.0.is_empty()).then(|| s.0.into_owned())
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

#[derive(Default)]
struct RawBody<'a> {
    topic: Option<Str<'a>>,
    topics: Option<Vec<Str<'a>>>,
    message: Option<RawMessage<'a>>,
    messages: Option<Vec<RawMessage<'a>>>,
}

#[derive(Default)]
struct RawMessage<'a> {
    event: Option<Str<'a>>,
    payload: Option<Str<'a>>,
    timestamp: Option<u64>,
}

impl RawMessage<'_> {
    fn validate(self) -> Option<NewMessage> {
        let event = self.event.filter(|e| !e.0.is_empty() && !e.0.contains(['\n', '\r']))?;
        let payload = self.payload.filter(|p| !p.0.is_empty())?;
        if self.timestamp.is_some_and(|t| t > MAX_TIMESTAMP) {
            return None;
        }
        Some(NewMessage {
            event: Bytes::copy_from_slice(event.0.as_bytes()),
            payload: Bytes::copy_from_slice(payload.0.as_bytes()),
            timestamp: self.timestamp,
        })
    }
}

impl<'de> Deserialize<'de> for RawBody<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = RawBody<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a publish object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut body = RawBody::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key.0 {
                        "topic" => body.topic = map.next_value()?,
                        "topics" => body.topics = map.next_value()?,
                        "message" => body.message = map.next_value()?,
                        "messages" => body.messages = map.next_value()?,
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(BodyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawMessage<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = RawMessage<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut message = RawMessage::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key.0 {
                        "event" => message.event = map.next_value()?,
                        "payload" => message.payload = map.next_value()?,
                        "timestamp" => message.timestamp = map.next_value()?,
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(message)
            }
        }
        deserializer.deserialize_map(MessageVisitor)
    }
}
