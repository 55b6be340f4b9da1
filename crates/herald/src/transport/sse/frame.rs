//! SSE bytes: Neurow's event of a message as one HTTP/1.1 chunk, made once per message and shared
//! by every subscriber; control events; the error events of refused requests.
//!
//! Neurow's clients parse exactly one event per chunk, so the v1 encoding is the whole chunk
//! (`{len:x}\r\n{event}\r\n`). Encoding the chunk framing once per message instead of once per
//! delivery keeps the fan-out path to one reference-count increment and one `writev` per
//! subscriber; [`chunk_event`] slices the bare event back out for transports without chunked
//! encoding (HTTP/1.0, HTTP/2).

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::hub::outbox::CloseReason;
use crate::model::Message;

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Wraps an SSE event's bytes as one chunk.
pub fn chunk(event: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(event.len() + 12);
    write!((&mut buf).writer(), "{:x}\r\n", event.len()).expect("writing to memory cannot fail");
    buf.put_slice(event);
    buf.put_slice(b"\r\n");
    buf.freeze()
}

/// The SSE event inside a chunk made by [`chunk`], without the framing (zero-copy).
pub fn chunk_event(chunk: &Bytes) -> Bytes {
    chunk.slice(chunk_event_range(chunk))
}

/// Where the event sits in a chunk made by [`chunk`].
pub fn chunk_event_range(chunk: &[u8]) -> std::ops::Range<usize> {
    let start = chunk.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    start..chunk.len().saturating_sub(2).max(start)
}

/// Neurow's event of a message, as one chunk: `id: {id}\nevent: {event}\n` then one `data: `
/// line per payload line.
///
/// Byte-identical to Neurow when the payload has no line break. A payload with line breaks
/// (`\n`, `\r\n` or `\r`, all of which end an SSE line) gets one `data:` line per line, which
/// a client joins back with `\n`; Neurow wrote it raw and corrupted the stream.
pub fn neurow_chunk(message: &Message) -> Bytes {
    let mut event = Vec::with_capacity(32 + message.event.len() + message.payload.len());
    write!(event, "id: {}\nevent: ", message.id).expect("writing to memory cannot fail");
    event.extend_from_slice(&message.event);
    event.push(b'\n');
    push_data_lines(&mut event, &message.payload);
    event.push(b'\n');
    chunk(&event)
}

/// Appends one `data: ` line per line of `payload`.
pub fn push_data_lines(event: &mut Vec<u8>, payload: &[u8]) {
    for line in payload_lines(payload) {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line);
        event.push(b'\n');
    }
}

/// A control event with no data, such as `event: ping\n\n`, as one chunk.
pub fn control_chunk(name: &str) -> Bytes {
    chunk(format!("event: {name}\n\n").as_bytes())
}

/// The SSE event sent before a stream ends for `reason`.
pub fn closing_event_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::SlowConsumer | CloseReason::Shutdown | CloseReason::BackplaneUnavailable => "reconnect",
        CloseReason::Timeout => "timeout",
        CloseReason::CredentialsExpired => "credentials_expired",
        CloseReason::CredentialsRevoked => "credentials_revoked",
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
        let c = neurow_chunk(&msg(1516239022123, "hello", "Hello world !"));
        let event = "id: 1516239022123\nevent: hello\ndata: Hello world !\n\n";
        assert_eq!(&chunk_event(&c)[..], event.as_bytes());
        assert_eq!(&c[..], format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }

    #[test]
    fn payload_line_breaks_become_data_lines() {
        let c = neurow_chunk(&msg(7, "e", "a\nb\r\nc\rd\n"));
        assert_eq!(
            &chunk_event(&c)[..],
            b"id: 7\nevent: e\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
    }

    #[test]
    fn control_events_have_no_data() {
        assert_eq!(&control_chunk("ping")[..], b"d\r\nevent: ping\n\n\r\n");
    }

    #[test]
    fn error_events_use_seconds_and_no_space_after_id() {
        assert_eq!(
            error_event(1700000000, 401, "invalid_jwt_token", "Invalid JWT token"),
            "id:1700000000\nevent: neurow_error_401\ndata: {\"errors\":[{\"error_code\":\"invalid_jwt_token\",\"error_message\":\"Invalid JWT token\"}]}\n\n"
        );
    }
}
