//! The bytes a publish script sends on a topic's channel, and Redis stream ids.
//!
//! One pub/sub message carries every message a publish request accepted on one topic (one
//! `PUBLISH` per topic per request). For each message: the ASCII header
//! `<stream id> <event id> <accepted ms> <event length> <payload length>\n`, then the event and the
//! payload bytes. Lengths make payloads opaque (they may hold newlines or spaces), and the format is
//! simple enough for the Lua script to write with `string.format` and `..`.
//!
//! The decoder is a pure function: anything malformed is an error, never a panic, and a message
//! from a newer or foreign writer cannot crash a node.

use std::fmt;

use bytes::Bytes;

use crate::model::{EventId, Message};

/// A Redis stream entry id, `<ms>-<seq>`: strictly increasing within one stream, whatever the
/// event ids are. Resume merges live and replayed messages by it (docs/cluster.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Parses `ms-seq` (the form Redis returns).
    pub fn parse(s: &[u8]) -> Option<StreamId> {
        let s = std::str::from_utf8(s).ok()?;
        let (ms, seq) = s.split_once('-')?;
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A message as the cluster carries it: the accepted message and its place in the topic's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// Where the message sits in the topic's stream (`0-0` when history is off).
    pub stream_id: StreamId,
    /// The message.
    pub message: Message,
}

/// Why a channel message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cluster message at byte {at}: {what}")]
pub struct WireError {
    /// Offset of the problem.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// Longest header line accepted: five decimal u64s, a dash and separators fit well within it.
const MAX_HEADER: usize = 128;

/// Decodes one channel message into its messages, in publish order.
pub fn decode(bytes: &Bytes) -> Result<Vec<Carried>, WireError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let line_end = rest
            .iter()
            .take(MAX_HEADER)
            .position(|b| *b == b'\n')
            .ok_or(WireError {
                at,
                what: "no header line",
            })?;
        let header = std::str::from_utf8(&rest[..line_end]).map_err(|_| WireError {
            at,
            what: "header is not text",
        })?;
        let mut fields = header.split(' ');
        let mut field = || {
            fields.next().ok_or(WireError {
                at,
                what: "missing field",
            })
        };
        let stream_id = StreamId::parse(field()?.as_bytes()).ok_or(WireError {
            at,
            what: "bad stream id",
        })?;
        let number = |s: &str| s.parse::<u64>().map_err(|_| WireError { at, what: "bad number" });
        let id = number(field()?)?;
        let accepted_ms = number(field()?)?;
        let event_len = number(field()?)? as usize;
        let payload_len = number(field()?)? as usize;
        if fields.next().is_some() {
            return Err(WireError {
                at,
                what: "extra field",
            });
        }
        let body = at + line_end + 1;
        let end = body
            .checked_add(event_len)
            .and_then(|e| e.checked_add(payload_len))
            .filter(|e| *e <= bytes.len())
            .ok_or(WireError { at, what: "cut short" })?;
        out.push(Carried {
            stream_id,
            message: Message {
                id: EventId(id),
                event: bytes.slice(body..body + event_len),
                payload: bytes.slice(body + event_len..end),
                accepted_ms,
            },
        });
        at = end;
    }
    Ok(out)
}

/// Encodes messages as the publish script does (the script is the real writer; this mirror is for
/// tests and for tools).
pub fn encode(carried: &[Carried]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in carried {
        let m = &c.message;
        out.extend_from_slice(
            format!(
                "{} {} {} {} {}\n",
                c.stream_id,
                m.id,
                m.accepted_ms,
                m.event.len(),
                m.payload.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&m.event);
        out.extend_from_slice(&m.payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(sid: (u64, u64), id: u64, event: &'static str, payload: &'static str) -> Carried {
        Carried {
            stream_id: StreamId { ms: sid.0, seq: sid.1 },
            message: Message {
                id: EventId(id),
                event: Bytes::from_static(event.as_bytes()),
                payload: Bytes::from_static(payload.as_bytes()),
                accepted_ms: 1_700_000_000_000,
            },
        }
    }

    #[test]
    fn exact_bytes_of_a_batch() {
        let batch = [carried((17, 0), 5, "e", "a b\nc"), carried((17, 1), u64::MAX, "ev", "")];
        let bytes = encode(&batch);
        assert_eq!(
            bytes,
            b"17-0 5 1700000000000 1 5\nea b\nc17-1 18446744073709551615 1700000000000 2 0\nev".to_vec()
        );
        assert_eq!(decode(&Bytes::from(bytes)).unwrap(), batch);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b"17-0 5 1 1 5\nea"[..],
            b"17-0 5 1 1\ne",
            b"17 5 1 1 1\nep",
            b"17-0 5 1 1 1 9\nep",
            b"17-0 5 1 99999999999999999999 1\nep",
            b"17-0 5 1 18446744073709551615 18446744073709551615\nep",
            b"no newline at all",
            b"\xff\xfe 1 1 1 1\nxx",
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(decode(&Bytes::new()).unwrap(), []);
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        let a = StreamId::parse(b"1700000000000-2").unwrap();
        let b = StreamId::parse(b"1700000000001-0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1700000000000-2");
        assert_eq!(StreamId::parse(b"12"), None);
        assert_eq!(StreamId::parse(b"a-1"), None);
    }
}
