//! The publish body: parsed and validated whole, with Neurow's reasons (spec §2.2), before any
//! message of it is accepted.
//!
//! Pure: bytes in, a [`PublishRequest`] or a [`PublishError`] with the reason out. The inputs that
//! crashed Neurow with a 500 (a string `topic` beside a non-list `topics`, a non-object element of
//! `messages`) get a 400 with a reason here.
//!
//! Two parsers share the work. The reference one decodes into a `serde_json::Value` and walks it
//! with Neurow's rules and reasons; every refusal comes from it. The typed one ([`typed`]) decodes
//! well-formed bodies straight into borrowed strings and accepts only what the reference accepts
//! (a property test checks they agree); anything else falls back to the reference. Publishing is
//! the hot path of the internal API, and the `Value` tree cost an allocation per key and string.

mod typed;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::model::NewMessage;

/// Largest publisher `timestamp`: 2^53 - 1. Event ids above it would lose precision in
/// JavaScript, and capping them leaves room for server ids to stay unique and increasing after a
/// topic's largest id.
pub const MAX_TIMESTAMP: u64 = (1 << 53) - 1;

/// A validated publish: every topic gets every message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Topic names as the publisher wrote them (not yet namespaced).
    pub topics: Vec<String>,
    /// The messages.
    pub messages: Vec<NewMessage>,
}

/// Why a publish body was refused: always a 400 with this text as `error_message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub String);

fn fail<T>(reason: &str) -> Result<T, PublishError> {
    Err(PublishError(reason.to_owned()))
}

/// Parses and validates a publish body.
pub fn parse_publish(body: &[u8]) -> Result<PublishRequest, PublishError> {
    match typed::parse(body) {
        Some(request) => Ok(request),
        None => parse_reference(body),
    }
}

/// The reference parser: Neurow's rules on a decoded `Value`, with a reason for every refusal.
fn parse_reference(body: &[u8]) -> Result<PublishRequest, PublishError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PublishError(format!("The body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return fail("The body must be a JSON object");
    };
    let topics = parse_topics(&object)?;
    let messages = parse_messages(&object)?;
    Ok(PublishRequest { topics, messages })
}

/// A JSON `null` counts as absent, as Elixir's `nil` does.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn parse_topics(object: &Map<String, Value>) -> Result<Vec<String>, PublishError> {
    match (field(object, "topic"), field(object, "topics")) {
        (None, None) => fail("Attribute 'topic' or 'topics' is expected"),
        (Some(_), Some(_)) => fail("Either attribute 'topic' or 'topics' is expected"),
        (Some(topic), None) => match topic.as_str() {
            Some(t) if !t.is_empty() => Ok(vec![t.to_owned()]),
            _ => fail("'topic' must be a non-empty string"),
        },
        (None, Some(topics)) => {
            let names: Option<Vec<String>> = topics.as_array().filter(|a| !a.is_empty()).and_then(|a| {
                a.iter()
                    .map(|t| t.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                    .collect()
            });
            names.map_or_else(|| fail("'topics' must be an non-empty array of non-empty strings"), Ok)
        }
    }
}

fn parse_messages(object: &Map<String, Value>) -> Result<Vec<NewMessage>, PublishError> {
    // Neurow ignores a `message` that is not an object and a `messages` that is not a list.
    let message = field(object, "message").and_then(Value::as_object);
    let messages = field(object, "messages").and_then(Value::as_array);
    match (message, messages) {
        (Some(m), None) => Ok(vec![parse_message(m)?]),
        (None, Some(list)) => {
            let parsed = list
                .iter()
                .map(|m| match m.as_object() {
                    Some(m) => parse_message(m),
                    None => fail("Each element of 'messages' must be an object"),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return fail("'messages' must be a non-empty list");
            }
            Ok(parsed)
        }
        _ => fail("Attribute 'message' or 'messages' is expected"),
    }
}

fn parse_message(m: &Map<String, Value>) -> Result<NewMessage, PublishError> {
    let event = match field(m, "event") {
        None => return fail("'event' is expected"),
        Some(Value::String(e)) if !e.is_empty() => e,
        Some(_) => return fail("'event' must be a non-empty string"),
    };
    if event.contains(['\n', '\r']) {
        // It would end the SSE `event:` line early and corrupt the stream.
        return fail("'event' must not contain line breaks");
    }
    let payload = match field(m, "payload") {
        None => return fail("'payload' is expected"),
        Some(Value::String(p)) if !p.is_empty() => p,
        Some(_) => return fail("'payload' must be a non-empty string"),
    };
    let timestamp = match field(m, "timestamp") {
        None => None,
        Some(t) => match t.as_u64() {
            Some(ts) if ts <= MAX_TIMESTAMP => Some(ts),
            Some(_) => return fail("'timestamp' must be at most 9007199254740991 (2^53 - 1)"),
            None => return fail("'timestamp' must be a positive integer"),
        },
    };
    Ok(NewMessage {
        event: Bytes::copy_from_slice(event.as_bytes()),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(body: &str) -> String {
        parse_publish(body.as_bytes()).unwrap_err().0
    }

    #[test]
    fn the_typed_parser_takes_the_usual_bodies() {
        for body in [
            format!(r#"{{"topic":"a","message":{M}}}"#),
            format!(r#" {{"topics":["a","b\u00e9"],"messages":[{M},{M}],"extra":[1,{{"x":null}}]}}"#),
            r#"{"topic":"a","message":{"event":"e","payload":"line\nnext","timestamp":7,"x":1}}"#.to_owned(),
            format!(r#"{{"topic":"a","topics":null,"message":{M},"messages":null}}"#),
        ] {
            let typed = typed::parse(body.as_bytes()).unwrap_or_else(|| panic!("typed refused {body}"));
            assert_eq!(Ok(typed), parse_reference(body.as_bytes()), "{body}");
        }
    }

    const M: &str = r#"{"event":"e","payload":"p"}"#;

    #[test]
    fn accepts_every_shape() {
        let r = parse_publish(format!(r#"{{"topic":"a","message":{M}}}"#).as_bytes()).unwrap();
        assert_eq!(r.topics, ["a"]);
        assert_eq!(r.messages.len(), 1);
        let r = parse_publish(
            r#"{"topics":["a","b"],"messages":[{"event":"e","payload":"1","timestamp":5},{"event":"e","payload":"2"}]}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.topics, ["a", "b"]);
        assert_eq!(r.messages[0].timestamp, Some(5));
        assert_eq!(r.messages[1].timestamp, None);
    }

    #[test]
    fn neurows_reasons() {
        let cases = [
            (
                format!(r#"{{"message":{M}}}"#),
                "Attribute 'topic' or 'topics' is expected",
            ),
            (
                format!(r#"{{"topic":"a","topics":["b"],"message":{M}}}"#),
                "Either attribute 'topic' or 'topics' is expected",
            ),
            (
                format!(r#"{{"topic":"","message":{M}}}"#),
                "'topic' must be a non-empty string",
            ),
            (
                format!(r#"{{"topic":5,"message":{M}}}"#),
                "'topic' must be a non-empty string",
            ),
            (
                format!(r#"{{"topics":[],"message":{M}}}"#),
                "'topics' must be an non-empty array of non-empty strings",
            ),
            (
                format!(r#"{{"topics":["a",""],"message":{M}}}"#),
                "'topics' must be an non-empty array of non-empty strings",
            ),
            (
                format!(r#"{{"topics":"a","message":{M}}}"#),
                "'topics' must be an non-empty array of non-empty strings",
            ),
            (
                r#"{"topic":"a"}"#.to_owned(),
                "Attribute 'message' or 'messages' is expected",
            ),
            (
                r#"{"topic":"a","message":"hello"}"#.to_owned(),
                "Attribute 'message' or 'messages' is expected",
            ),
            (
                format!(r#"{{"topic":"a","message":{M},"messages":[{M}]}}"#),
                "Attribute 'message' or 'messages' is expected",
            ),
            (
                r#"{"topic":"a","messages":[]}"#.to_owned(),
                "'messages' must be a non-empty list",
            ),
            (
                r#"{"topic":"a","message":{"payload":"p"}}"#.to_owned(),
                "'event' is expected",
            ),
            (
                r#"{"topic":"a","message":{"event":"","payload":"p"}}"#.to_owned(),
                "'event' must be a non-empty string",
            ),
            (
                r#"{"topic":"a","message":{"event":1,"payload":"p"}}"#.to_owned(),
                "'event' must be a non-empty string",
            ),
            (
                r#"{"topic":"a","message":{"event":"e"}}"#.to_owned(),
                "'payload' is expected",
            ),
            (
                r#"{"topic":"a","message":{"event":"e","payload":{"a":1}}}"#.to_owned(),
                "'payload' must be a non-empty string",
            ),
            (
                r#"{"topic":"a","message":{"event":"e","payload":""}}"#.to_owned(),
                "'payload' must be a non-empty string",
            ),
            (
                r#"{"topic":"a","message":{"event":"e","payload":"p","timestamp":-1}}"#.to_owned(),
                "'timestamp' must be a positive integer",
            ),
            (
                r#"{"topic":"a","message":{"event":"e","payload":"p","timestamp":1.5}}"#.to_owned(),
                "'timestamp' must be a positive integer",
            ),
            (
                r#"{"topic":"a","message":{"event":"e","payload":"p","timestamp":"1"}}"#.to_owned(),
                "'timestamp' must be a positive integer",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(reason(&body), expected, "{body}");
        }
    }

    #[test]
    fn bodies_that_crashed_neurow_get_a_reason() {
        assert_eq!(
            reason(&format!(r#"{{"topic":"a","topics":5,"message":{M}}}"#)),
            "Either attribute 'topic' or 'topics' is expected"
        );
        assert_eq!(
            reason(r#"{"topic":"a","messages":[1]}"#),
            "Each element of 'messages' must be an object"
        );
        assert!(reason("not json").starts_with("The body is not valid JSON"));
        assert_eq!(reason("[1,2]"), "The body must be a JSON object");
        assert_eq!(
            reason(r#"{"topic":"a","message":{"event":"a\nb","payload":"p"}}"#),
            "'event' must not contain line breaks"
        );
    }

    #[test]
    fn the_first_invalid_message_is_reported() {
        assert_eq!(
            reason(r#"{"topic":"a","messages":[{"event":"e","payload":"p"},{"event":"e"}]}"#),
            "'payload' is expected"
        );
    }

    mod agreement {
        use proptest::prelude::*;

        use super::super::{parse_reference, typed};

        /// JSON texts that sit near the edges of the rules: empty, escaped, multi-line, wrong types.
        fn scalar() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(r#""a""#.to_owned()),
                Just(r#""""#.to_owned()),
                Just(r#""a\nb""#.to_owned()),
                Just(r#""\u00e9\"x""#.to_owned()),
                Just("null".to_owned()),
                Just("5".to_owned()),
                Just("-1".to_owned()),
                Just("1.5".to_owned()),
                Just("9007199254740991".to_owned()),
                Just("9007199254740992".to_owned()),
                Just("true".to_owned()),
                Just("{}".to_owned()),
                Just(r#"["a"]"#.to_owned()),
            ]
        }

        /// An object whose keys come from `keys` (repeats allowed) with values from `value`.
        fn object(keys: &'static [&'static str], value: BoxedStrategy<String>) -> BoxedStrategy<String> {
            proptest::collection::vec((proptest::sample::select(keys), value), 0..5)
                .prop_map(|fields| {
                    let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
                    format!("{{{}}}", fields.join(","))
                })
                .boxed()
        }

        fn message() -> BoxedStrategy<String> {
            prop_oneof![
                3 => object(&["event", "payload", "timestamp", "other"], scalar().boxed()),
                1 => scalar(),
            ]
            .boxed()
        }

        fn list(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
            proptest::collection::vec(item, 0..4)
                .prop_map(|items| format!("[{}]", items.join(",")))
                .boxed()
        }

        fn body() -> BoxedStrategy<String> {
            let value = prop_oneof![scalar(), message(), list(scalar().boxed()), list(message()),].boxed();
            prop_oneof![
                8 => object(&["topic", "topics", "message", "messages", "other"], value.clone()),
                1 => list(value),
            ]
            .boxed()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]
            /// Whatever the typed parser accepts, the reference parser accepts identically.
            #[test]
            fn typed_accepts_only_what_the_reference_accepts(body in body()) {
                if let Some(typed) = typed::parse(body.as_bytes()) {
                    prop_assert_eq!(Ok(typed), parse_reference(body.as_bytes()), "{}", body);
                }
            }
        }
    }
}
