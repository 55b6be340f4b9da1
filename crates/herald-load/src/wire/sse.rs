//! Incremental Server-Sent Events parser.
//!
//! Decoded body bytes are appended with [`SseParser::extend`]; [`SseParser::drain`] then hands
//! every complete event to a callback as borrowed slices and keeps the incomplete tail for the
//! next read. Lines may end in LF or CRLF. Comment lines (`:...`, as Nchan sends) are skipped,
//! and unlike a browser `EventSource` an event with no `data:` line is still reported, because
//! Herald's control events (`event: ping`, `event: timeout`, ...) carry no data.

use std::borrow::Cow;

use thiserror::Error;

use super::chunked::memchr;

/// An incomplete event larger than this is treated as a protocol error, which bounds the memory a
/// misbehaving server can make one connection hold.
const MAX_PENDING: usize = 1024 * 1024;

/// Capacity kept after a drain; bigger buffers (left by a burst) are released so that thousands of
/// idle connections stay cheap.
const KEEP_CAPACITY: usize = 8 * 1024;

/// The stream is not SSE we can follow.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SseError {
    /// More than [`MAX_PENDING`] bytes arrived without completing an event.
    #[error("incomplete SSE event exceeds {MAX_PENDING} bytes")]
    EventTooLarge,
}

/// One dispatched event, borrowing from the parser's buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent<'a> {
    /// The `id:` field, if present (last one wins).
    pub id: Option<&'a [u8]>,
    /// The `event:` field, if present (last one wins).
    pub event: Option<&'a [u8]>,
    /// The `data:` lines joined by `\n`; borrowed when there is exactly one.
    pub data: Option<Cow<'a, [u8]>>,
}

impl SseEvent<'_> {
    /// The event type, `message` when no `event:` field was sent (as in the SSE specification).
    pub fn kind(&self) -> &[u8] {
        self.event.unwrap_or(b"message")
    }
}

/// Buffers body bytes and splits them into events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffer that decoded body bytes are appended to.
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends raw (already de-chunked) body bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for an event that is not complete yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Calls `on_event` for every complete event in the buffer, then drops them from it.
    pub fn drain(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) -> Result<(), SseError> {
        let consumed = parse_events(&self.buf, &mut on_event);
        if consumed > 0 {
            self.buf.drain(..consumed);
        }
        if self.buf.len() > MAX_PENDING {
            return Err(SseError::EventTooLarge);
        }
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// Parses complete events at the start of `buf`; returns how many bytes they used.
fn parse_events(buf: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) -> usize {
    let mut consumed = 0;
    let mut pos = 0;
    let mut event = SseEvent::default();
    let mut has_field = false;
    while let Some(nl) = memchr(b'\n', &buf[pos..]) {
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            if has_field {
                on_event(std::mem::take(&mut event));
            }
            event = SseEvent::default();
            has_field = false;
            consumed = pos;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match memchr(b':', line) {
            Some(c) => {
                let value = &line[c + 1..];
                (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[line.len()..]),
        };
        has_field = true;
        match name {
            b"id" => event.id = Some(value),
            b"event" => event.event = Some(value),
            b"data" => {
                event.data = Some(match event.data.take() {
                    None => Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        Cow::Owned(joined)
                    }
                });
            }
            // `retry:` and unknown fields are accepted and ignored.
            _ => {}
        }
    }
    consumed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned copy of an event, for assertions.
    #[derive(Debug, PartialEq, Eq)]
    struct Ev {
        id: Option<String>,
        event: Option<String>,
        data: Option<String>,
    }

    fn own(e: SseEvent<'_>) -> Ev {
        let s = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf8");
        Ev {
            id: e.id.map(s),
            event: e.event.map(s),
            data: e.data.as_deref().map(s),
        }
    }

    fn feed(parser: &mut SseParser, bytes: &[u8]) -> Vec<Ev> {
        parser.extend(bytes);
        let mut out = Vec::new();
        parser.drain(|e| out.push(own(e))).expect("drain");
        out
    }

    fn ev(id: Option<&str>, event: Option<&str>, data: Option<&str>) -> Ev {
        Ev {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.map(str::to_owned),
        }
    }

    #[test]
    fn parses_exact_herald_message() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b"id: 1700000000123\nevent: load_test_event\ndata: 17 3 xx\n\n");
        assert_eq!(
            got,
            vec![ev(Some("1700000000123"), Some("load_test_event"), Some("17 3 xx"))]
        );
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn parses_ping_and_control_events_without_data() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b"event: ping\n\nevent: timeout\n\n");
        assert_eq!(got, vec![ev(None, Some("ping"), None), ev(None, Some("timeout"), None)]);
    }

    #[test]
    fn event_split_across_reads_at_every_byte() {
        let msg = b"id: 7\nevent: e\ndata: 1 2\n\n";
        for split in 1..msg.len() {
            let mut p = SseParser::new();
            let first = feed(&mut p, &msg[..split]);
            assert!(first.is_empty(), "split at {split} dispatched early");
            let second = feed(&mut p, &msg[split..]);
            assert_eq!(second, vec![ev(Some("7"), Some("e"), Some("1 2"))]);
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn several_events_in_one_read_keep_the_tail() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b"id: 1\ndata: a\n\nevent: ping\n\nid: 2\ndata: b\n\nid: 3\nda");
        assert_eq!(
            got,
            vec![
                ev(Some("1"), None, Some("a")),
                ev(None, Some("ping"), None),
                ev(Some("2"), None, Some("b")),
            ]
        );
        assert_eq!(p.pending(), "id: 3\nda".len());
        let got = feed(&mut p, b"ta: c\n\n");
        assert_eq!(got, vec![ev(Some("3"), None, Some("c"))]);
    }

    #[test]
    fn nchan_style_comments_crlf_and_opaque_ids() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b": hi\r\n\r\nid: 1700000000:0\r\ndata: 5 1\r\n\r\n:\n\n");
        assert_eq!(got, vec![ev(Some("1700000000:0"), None, Some("5 1"))]);
    }

    #[test]
    fn multi_line_data_is_joined_and_retry_ignored() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b"retry: 10\ndata: a\ndata:b\n\n");
        assert_eq!(got, vec![ev(None, None, Some("a\nb"))]);
    }

    #[test]
    fn value_keeps_all_but_one_leading_space() {
        let mut p = SseParser::new();
        let got = feed(&mut p, b"data:  two\n\n");
        assert_eq!(got, vec![ev(None, None, Some(" two"))]);
    }

    #[test]
    fn oversized_pending_event_is_an_error() {
        let mut p = SseParser::new();
        p.extend(&vec![b'x'; MAX_PENDING + 1]);
        assert_eq!(p.drain(|_| {}), Err(SseError::EventTooLarge));
    }

    #[test]
    fn chunked_then_sse_end_to_end() {
        use crate::wire::chunked::ChunkedDecoder;
        let wire = b"1a\r\nid: 1\nevent: e\ndata: 9 1\n\n\r\nc\r\nevent: ping\n\r\n";
        let mut dec = ChunkedDecoder::new();
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for piece in wire.chunks(5) {
            dec.decode(piece, p.buffer_mut()).expect("chunked");
            p.drain(|e| got.push(own(e))).expect("sse");
        }
        // The ping chunk is missing its blank line, so only the message is complete.
        assert_eq!(got, vec![ev(Some("1"), Some("e"), Some("9 1"))]);
        dec.decode(b"1\r\n\n\r\n", p.buffer_mut()).expect("chunked");
        p.drain(|e| got.push(own(e))).expect("sse");
        assert_eq!(got.last(), Some(&ev(None, Some("ping"), None)));
    }
}
