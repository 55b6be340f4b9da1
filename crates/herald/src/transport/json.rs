//! The message as one JSON object, the bytes shared by the long-poll answer and the WebSocket
//! `msg` frame ([`super::WireFormat::Json`]).

use std::borrow::Cow;

use bytes::Bytes;

use crate::model::Message;

/// `{"topic":…,"id":…,"event":…,"payload":…}` for a message of topic `name` (as its client
/// names it). The id is a string: ids may exceed JavaScript's safe integers.
///
/// Written by hand rather than through a `Serialize` struct: a WebSocket one-to-one delivery
/// encodes one message per delivery, and the common field needs no escaping at all, which
/// [`push_str`] finds with one pass and a copy where serde_json escapes byte by byte.
pub fn message(message: &Message, name: &str) -> Bytes {
    let mut id = itoa::Buffer::new();
    let id = id.format(message.id.0);
    // Sized for the fields unescaped, so that the common message is written without growing.
    let mut out = Vec::with_capacity(FIXED_LEN + name.len() + id.len() + message.event.len() + message.payload.len());
    out.extend_from_slice(b"{\"topic\":");
    push_str(&mut out, name);
    out.extend_from_slice(b",\"id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"event\":");
    push_str(&mut out, &text(&message.event));
    out.extend_from_slice(b",\"payload\":");
    push_str(&mut out, &text(&message.payload));
    out.push(b'}');
    // Boxed to its length, so that `Bytes` takes it over without an allocation of its own.
    Bytes::from(out.into_boxed_slice())
}

/// `{"topic":"","id":"","event":"","payload":""}`: the bytes of [`message`] besides the fields.
const FIXED_LEN: usize = 44;

/// Appends `text` as a JSON string, escaped as serde_json escapes it.
fn push_str(out: &mut Vec<u8>, text: &str) {
    // serde_json escapes exactly these: control characters, the quote and the backslash.
    let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
    if text.bytes().all(plain) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("JSON of a string cannot fail");
    }
}

/// `bytes` as text, replacing what is not UTF-8. Valid text (every message a publisher sent as
/// JSON) is borrowed after the fast validator, rather than walked by the lossy one's chunk loop.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventId;

    fn of(event: &[u8], payload: &[u8]) -> Message {
        Message {
            id: EventId(7),
            event: Bytes::copy_from_slice(event),
            payload: Bytes::copy_from_slice(payload),
            accepted_ms: 0,
        }
    }

    #[test]
    fn fields_are_escaped_and_bytes_that_are_not_utf8_replaced() {
        let json = message(&of(b"e", "say \"h\u{e9}\"\n".as_bytes()), "a/b");
        assert_eq!(
            &json[..],
            "{\"topic\":\"a/b\",\"id\":\"7\",\"event\":\"e\",\"payload\":\"say \\\"h\u{e9}\\\"\\n\"}".as_bytes()
        );
        let json = message(&of(b"", &[b'x', 0xff]), "t");
        assert_eq!(
            &json[..],
            "{\"topic\":\"t\",\"id\":\"7\",\"event\":\"\",\"payload\":\"x\u{fffd}\"}".as_bytes()
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "q\"",
            "b\\s",
            "\u{1}\t\r\n\u{1f}",
            "\u{7f} \u{e9} \u{1f600}",
            "</script>",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }
}
