//! RFC 6455 framing, server side: the frames Herald writes, and a parser for what clients send.
//!
//! Hand-written rather than taken from tungstenite or another crate (the rule in STYLE.md has
//! this exception for measured hot paths): a crate keeps a read buffer per connection for the
//! connection's life and encodes every frame per connection, while Herald holds idle WebSockets
//! by the ten thousand and writes one broadcast to all of them. Measured here
//! (spec/transports.md §1.2): an idle WebSocket after one command and one broadcast costs
//! 1.36 KB of RSS with a raw frame layer against 3.14 KB with tokio-tungstenite at its smallest
//! useful read buffer (1 KiB), and batched writes cost 0.105 µs a delivery against 0.245 µs. The
//! server side of the protocol is small; the Autobahn suite (tests/autobahn.rs) is its gate.
//!
//! The parser keeps nothing between reads unless a frame or a fragmented message is incomplete:
//! an idle connection's reader holds two empty `Vec`s.

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// A continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping frame.
    pub const PING: u8 = 0x9;
    /// A pong frame.
    pub const PONG: u8 = 0xA;
}

/// Close codes Herald sends (RFC 6455 §7.4 and Herald's own, docs/api.md "WebSocket").
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: the node shuts down; reconnect (elsewhere) and resume with the cursor.
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error in the client's frames.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A frame of a type the protocol does not take (binary where text is expected).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Text that is not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message larger than `WS_MAX_MESSAGE_SIZE`.
    pub const TOO_BIG: u16 = 1009;
    /// An internal error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// No valid token (none within the time allowed, invalid, or revoked): get a new one.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The token expired: get a new one, reconnect at once, resume with the cursor.
    pub const TOKEN_EXPIRED: u16 = 4409;
    /// More commands than `WS_MAX_COMMANDS_PER_SECOND`: back off.
    pub const RATE_LIMITED: u16 = 4429;
    /// The client read slower than its messages came (the outbox overflowed): reconnect with a
    /// backoff and resume with the cursor.
    pub const SLOW_CONSUMER: u16 = 4508;
    /// The client answered no ping within the interval and its grace: reconnect.
    pub const NO_PONG: u16 = 4512;
    /// The node could not read the cluster's shared history to resume: reconnect.
    pub const UNAVAILABLE: u16 = 4503;
}

/// Appends the header of an unmasked, final server frame of `opcode` with a payload of `len`.
pub fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// A whole server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    put_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and `reason` (cut to fit the 125-byte control frame limit on a
/// character boundary).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(opcode::CLOSE, &payload)
}

/// What a client sent, once a frame or a message is complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message, valid UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping, to answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame: its code (1005 when it had none) and reason.
    Close(u16, String),
}

/// Why the client's frames end the connection: the close code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send.
    pub code: u16,
    /// Why, for the close frame and the logs.
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Reads client frames as bytes arrive.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of a frame not complete yet.
    pending: Vec<u8>,
    /// A fragmented message being assembled: its opcode and payload so far.
    message: Option<(u8, Vec<u8>)>,
    /// How much of a fragmented text message was checked as UTF-8.
    checked: usize,
}

impl Parser {
    /// Whether the parser holds nothing (an idle connection's state).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.message.is_none()
    }

    /// Feeds `bytes` and appends what they complete to `out`, in order. After a violation the
    /// connection must close with its code; nothing more should be fed.
    pub fn feed(&mut self, bytes: &[u8], max_message: usize, out: &mut Vec<Incoming>) -> Result<(), Violation> {
        if self.pending.is_empty() {
            // The common case: whole frames in one read, parsed in place.
            let used = self.parse_all(bytes, max_message, out)?;
            self.pending.extend_from_slice(&bytes[used..]);
        } else {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            let used = self.parse_all(&pending, max_message, out)?;
            self.pending = pending;
            self.pending.drain(..used);
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = Vec::new();
        }
        Ok(())
    }

    fn parse_all(&mut self, mut bytes: &[u8], max_message: usize, out: &mut Vec<Incoming>) -> Result<usize, Violation> {
        let start = bytes.len();
        while let Some((header, rest)) = parse_header(bytes, max_message)? {
            if rest.len() < header.len {
                break;
            }
            let mut payload = rest[..header.len].to_vec();
            unmask(&mut payload, header.mask);
            bytes = &rest[header.len..];
            if let Some(incoming) = self.frame(header.fin, header.opcode, payload, max_message)? {
                let closing = matches!(incoming, Incoming::Close(..));
                out.push(incoming);
                if closing {
                    return Ok(start);
                }
            }
        }
        Ok(start - bytes.len())
    }

    fn frame(
        &mut self,
        fin: bool,
        op: u8,
        payload: Vec<u8>,
        max_message: usize,
    ) -> Result<Option<Incoming>, Violation> {
        match op {
            opcode::PING => Ok(Some(Incoming::Ping(payload))),
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => close_payload(&payload).map(Some),
            opcode::TEXT | opcode::BINARY => {
                if self.message.is_some() {
                    return Err(violation(
                        close::PROTOCOL_ERROR,
                        "a new message began inside a fragmented one",
                    ));
                }
                if fin {
                    return whole(op, payload).map(Some);
                }
                if op == opcode::TEXT {
                    check_prefix(&payload, &mut 0)?;
                }
                self.message = Some((op, payload));
                self.checked = 0;
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some((op, data)) = self.message.as_mut() else {
                    return Err(violation(
                        close::PROTOCOL_ERROR,
                        "a continuation frame with no message to continue",
                    ));
                };
                if data.len() + payload.len() > max_message {
                    return Err(violation(
                        close::TOO_BIG,
                        "the message is larger than WS_MAX_MESSAGE_SIZE",
                    ));
                }
                data.extend_from_slice(&payload);
                if *op == opcode::TEXT {
                    // Fail fast: invalid UTF-8 is refused in the frame that brings it.
                    check_prefix(data, &mut self.checked)?;
                }
                if !fin {
                    return Ok(None);
                }
                let (op, data) = self.message.take().expect("checked above");
                self.checked = 0;
                whole(op, data).map(Some)
            }
            _ => Err(violation(close::PROTOCOL_ERROR, "an unknown opcode")),
        }
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
}

/// The header at the start of `bytes` and what follows it; `None` while incomplete.
fn parse_header(bytes: &[u8], max_message: usize) -> Result<Option<(Header, &[u8])>, Violation> {
    let [b0, b1, ..] = *bytes else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(violation(
            close::PROTOCOL_ERROR,
            "reserved bits set with no extension negotiated",
        ));
    }
    let (fin, op) = (b0 & 0x80 != 0, b0 & 0x0F);
    let control = op & 0x08 != 0;
    if !matches!(op, 0x0..=0x2 | 0x8..=0xA) {
        return Err(violation(close::PROTOCOL_ERROR, "an unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(violation(close::PROTOCOL_ERROR, "client frames must be masked"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => match bytes.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if control && (!fin || len > 125) {
        return Err(violation(
            close::PROTOCOL_ERROR,
            "control frames must be whole and at most 125 bytes",
        ));
    }
    if len > max_message as u64 {
        return Err(violation(
            close::TOO_BIG,
            "the message is larger than WS_MAX_MESSAGE_SIZE",
        ));
    }
    let Some(mask) = bytes.get(at..at + 4) else {
        return Ok(None);
    };
    let header = Header {
        fin,
        opcode: op,
        mask: mask.try_into().expect("4 bytes"),
        len: len as usize,
    };
    Ok(Some((header, &bytes[at + 4..])))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn whole(op: u8, payload: Vec<u8>) -> Result<Incoming, Violation> {
    if op == opcode::BINARY {
        return Ok(Incoming::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| violation(close::INVALID_DATA, "text that is not valid UTF-8"))
}

/// Checks that `data[*checked..]` is valid UTF-8 so far (an incomplete character at the end is
/// fine: the next fragment may complete it), and advances `checked`.
fn check_prefix(data: &[u8], checked: &mut usize) -> Result<(), Violation> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(violation(close::INVALID_DATA, "text that is not valid UTF-8")),
    }
}

fn close_payload(payload: &[u8]) -> Result<Incoming, Violation> {
    match payload {
        [] => Ok(Incoming::Close(1005, String::new())),
        [_] => Err(violation(
            close::PROTOCOL_ERROR,
            "a close frame with a one-byte payload",
        )),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(violation(close::PROTOCOL_ERROR, "a close code that may not be sent"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| violation(close::INVALID_DATA, "a close reason that is not valid UTF-8"))?;
            Ok(Incoming::Close(code, reason.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | op];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn parse(bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(bytes, 1 << 16, &mut out)?;
        Ok(out)
    }

    #[test]
    fn whole_frames_byte_by_byte_and_fragments_make_messages() {
        let mut wire = client(true, opcode::TEXT, b"hello");
        wire.extend(client(false, opcode::TEXT, "h\u{e9}".as_bytes().split_at(2).0));
        wire.extend(client(true, opcode::PING, b"p"));
        wire.extend(client(true, opcode::CONTINUATION, "h\u{e9}".as_bytes().split_at(2).1));
        wire.extend(client(true, opcode::BINARY, &[0, 255]));
        wire.extend(client(true, opcode::TEXT, &vec![b'x'; 70_000][..300]));
        let expected = vec![
            Incoming::Text("hello".into()),
            Incoming::Ping(b"p".to_vec()),
            Incoming::Text("h\u{e9}".into()),
            Incoming::Binary(vec![0, 255]),
            Incoming::Text("x".repeat(300)),
        ];
        assert_eq!(parse(&wire).unwrap(), expected);
        let mut p = Parser::default();
        let mut out = Vec::new();
        for b in &wire {
            p.feed(std::slice::from_ref(b), 1 << 16, &mut out).unwrap();
        }
        assert_eq!(out, expected);
        assert!(p.is_idle());
    }

    #[test]
    fn protocol_violations_name_their_close_code() {
        let code = |bytes: Vec<u8>| parse(&bytes).unwrap_err().code;
        let mut unmasked = client(true, opcode::TEXT, b"x");
        unmasked[1] &= 0x7F;
        assert_eq!(code(unmasked), close::PROTOCOL_ERROR);
        let mut rsv = client(true, opcode::TEXT, b"x");
        rsv[0] |= 0x40;
        assert_eq!(code(rsv), close::PROTOCOL_ERROR);
        assert_eq!(code(client(true, 0x3, b"")), close::PROTOCOL_ERROR);
        assert_eq!(code(client(false, opcode::PING, b"")), close::PROTOCOL_ERROR);
        assert_eq!(code(client(true, opcode::PING, &[0; 126])), close::PROTOCOL_ERROR);
        assert_eq!(code(client(true, opcode::CONTINUATION, b"x")), close::PROTOCOL_ERROR);
        let mut twice = client(false, opcode::TEXT, b"a");
        twice.extend(client(true, opcode::TEXT, b"b"));
        assert_eq!(code(twice), close::PROTOCOL_ERROR);
        assert_eq!(code(client(true, opcode::TEXT, &[0xff])), close::INVALID_DATA);
        // Fail fast: the first fragment's bad byte is refused before the message ends.
        assert_eq!(
            code(client(false, opcode::TEXT, &[b'a', 0xc0, b'b'])),
            close::INVALID_DATA
        );
        assert_eq!(code(client(true, opcode::TEXT, &vec![b'x'; 70_000])), close::TOO_BIG);
        assert_eq!(code(client(true, opcode::CLOSE, &[3])), close::PROTOCOL_ERROR);
        assert_eq!(
            code(client(true, opcode::CLOSE, &1005u16.to_be_bytes())),
            close::PROTOCOL_ERROR
        );
        assert_eq!(code(client(true, opcode::CLOSE, &[3, 232, 0xff])), close::INVALID_DATA);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(
            parse(&client(true, opcode::CLOSE, &payload)).unwrap(),
            [Incoming::Close(4000, "bye".into())]
        );
        assert_eq!(
            parse(&client(true, opcode::CLOSE, b"")).unwrap(),
            [Incoming::Close(1005, String::new())]
        );
        let f = close_frame(close::TOO_BIG, &"é".repeat(100));
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= 125);
    }

    #[test]
    fn server_headers_use_the_shortest_length() {
        assert_eq!(frame(opcode::TEXT, b"hi"), [0x81, 2, b'h', b'i']);
        assert_eq!(&frame(opcode::TEXT, &[0; 200])[..4], [0x81, 126, 0, 200]);
        assert_eq!(
            &frame(opcode::BINARY, &[0; 70_000])[..10],
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }
}
