//! WebSocket framing (RFC 6455), client side: the opening handshake's key and accept value, a
//! decoder for the server's frames, and masked client frames.
//!
//! Written here rather than taken from a WebSocket crate for the reason the SSE client is: the
//! tool holds thousands of connections per process, and a connection waiting for its next frame
//! should keep nothing but its socket. The [`Decoder`] parses frames straight out of the read
//! step's stack buffer and keeps only the bytes of a frame that a read cut (and those of a
//! fragmented message, which neither Herald nor Nchan sends), so an idle connection holds two
//! empty `Vec`s. No extension is offered in the handshake (no permessage-deflate), so a frame
//! with a reserved bit set is an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// Appended to the key before hashing (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest message accepted from a server: Herald's frames are a few hundred bytes.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// A decoder holding a cut frame larger than this gives the memory back once it is done.
const KEEP_CAPACITY: usize = 4096;

/// Frame opcodes.
pub mod opcode {
    /// A fragment of a message.
    pub const CONTINUATION: u8 = 0x0;
    /// UTF-8 text.
    pub const TEXT: u8 = 0x1;
    /// Bytes.
    pub const BINARY: u8 = 0x2;
    /// Close, with an optional code and reason.
    pub const CLOSE: u8 = 0x8;
    /// Ping: answered with a pong carrying the same bytes.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn new_key() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    STANDARD.encode(bytes)
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
pub fn accept_for(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.digest().bytes())
}

/// One complete message or control frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text message (fragments joined).
    Text(&'a [u8]),
    /// A binary message (fragments joined).
    Binary(&'a [u8]),
    /// A ping, to be answered with a pong of the same bytes.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close frame and its code, if it had one.
    Close(Option<u16>),
}

/// The server's bytes are not valid WebSocket frames.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A reserved bit was set, though no extension was negotiated.
    #[error("reserved bit set")]
    Reserved,
    /// A server frame was masked (only clients mask).
    #[error("masked frame from the server")]
    Masked,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0}")]
    Opcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("bad control frame")]
    Control,
    /// A continuation with no message started, or a new message inside a fragmented one.
    #[error("bad fragmentation")]
    Fragmentation,
    /// A message over 16 MiB.
    #[error("message too large")]
    TooLarge,
}

impl FrameError {
    /// A short label for error counters.
    pub fn label(&self) -> &'static str {
        match self {
            FrameError::Reserved => "ws_reserved_bit",
            FrameError::Masked => "ws_masked_frame",
            FrameError::Opcode(_) => "ws_bad_opcode",
            FrameError::Control => "ws_bad_control_frame",
            FrameError::Fragmentation => "ws_bad_fragmentation",
            FrameError::TooLarge => "ws_message_too_large",
        }
    }
}

/// A frame's header.
struct Header {
    fin: bool,
    opcode: u8,
    /// Header bytes.
    len: usize,
    /// Payload bytes.
    payload: usize,
}

/// Reads the header at the start of `buf`; `Ok(None)` when more bytes are needed.
fn header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (fin, op) = (b0 & 0x80 != 0, b0 & 0x0f);
    if !matches!(
        op,
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY | opcode::CLOSE | opcode::PING | opcode::PONG
    ) {
        return Err(FrameError::Opcode(op));
    }
    let short = usize::from(b1 & 0x7f);
    if op >= opcode::CLOSE && (!fin || short > 125) {
        return Err(FrameError::Control);
    }
    let (len, payload) = match short {
        126 => match buf.get(2..4) {
            Some(b) => (4, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let n = u64::from_be_bytes(b.try_into().unwrap_or_default());
                (10, usize::try_from(n).unwrap_or(usize::MAX))
            }
            None => return Ok(None),
        },
        n => (2, n),
    };
    if payload > MAX_MESSAGE {
        return Err(FrameError::TooLarge);
    }
    Ok(Some(Header {
        fin,
        opcode: op,
        len,
        payload,
    }))
}

/// Turns the server's bytes, as reads return them, into [`Frame`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The start of a frame that the last read cut.
    partial: Vec<u8>,
    /// A fragmented message so far.
    fragments: Vec<u8>,
    /// The opcode of that message; 0 while there is none.
    fragment_opcode: u8,
}

impl Decoder {
    /// A decoder expecting the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `bytes` (those that came after the handshake's response head) for the next
    /// [`Decoder::feed`].
    pub fn preload(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
    }

    /// Decodes the frames that `input` completes and calls `on_frame` for each, until it returns
    /// `false` (the rest of the input is then dropped). Returns whether every frame was taken.
    pub fn feed(&mut self, input: &[u8], on_frame: &mut impl FnMut(Frame<'_>) -> bool) -> Result<bool, FrameError> {
        if self.partial.is_empty() {
            let (used, all) = self.frames(input, on_frame)?;
            if all {
                self.partial.extend_from_slice(&input[used..]);
            }
            return Ok(all);
        }
        let mut buf = std::mem::take(&mut self.partial);
        buf.extend_from_slice(input);
        let (used, all) = self.frames(&buf, on_frame)?;
        if all && used < buf.len() {
            buf.drain(..used);
            self.partial = buf;
        } else if buf.capacity() <= KEEP_CAPACITY {
            buf.clear();
            self.partial = buf;
        }
        Ok(all)
    }

    /// The frames complete in `buf`: how many bytes they used, and whether `on_frame` took all.
    fn frames(
        &mut self,
        buf: &[u8],
        on_frame: &mut impl FnMut(Frame<'_>) -> bool,
    ) -> Result<(usize, bool), FrameError> {
        let mut pos = 0;
        while let Some(h) = header(&buf[pos..])? {
            let end = pos + h.len + h.payload;
            if buf.len() < end {
                break;
            }
            let payload = &buf[pos + h.len..end];
            pos = end;
            if !self.frame(&h, payload, on_frame)? {
                return Ok((pos, false));
            }
        }
        Ok((pos, true))
    }

    fn frame(
        &mut self,
        h: &Header,
        payload: &[u8],
        on_frame: &mut impl FnMut(Frame<'_>) -> bool,
    ) -> Result<bool, FrameError> {
        let message = |op: u8, data| {
            if op == opcode::TEXT {
                Frame::Text(data)
            } else {
                Frame::Binary(data)
            }
        };
        Ok(match h.opcode {
            opcode::TEXT | opcode::BINARY if self.fragment_opcode != 0 => return Err(FrameError::Fragmentation),
            opcode::TEXT | opcode::BINARY if h.fin => on_frame(message(h.opcode, payload)),
            opcode::TEXT | opcode::BINARY => {
                self.fragment_opcode = h.opcode;
                self.fragments.extend_from_slice(payload);
                true
            }
            opcode::CONTINUATION => {
                if self.fragment_opcode == 0 {
                    return Err(FrameError::Fragmentation);
                }
                if self.fragments.len() + payload.len() > MAX_MESSAGE {
                    return Err(FrameError::TooLarge);
                }
                self.fragments.extend_from_slice(payload);
                if !h.fin {
                    return Ok(true);
                }
                let whole = std::mem::take(&mut self.fragments);
                let op = std::mem::take(&mut self.fragment_opcode);
                on_frame(message(op, &whole))
            }
            opcode::CLOSE => {
                let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                on_frame(Frame::Close(code))
            }
            opcode::PING => on_frame(Frame::Ping(payload)),
            _ => on_frame(Frame::Pong),
        })
    }
}

/// Appends one client frame (FIN set, masked with a fresh key, as RFC 6455 requires of clients).
pub fn client_frame(out: &mut Vec<u8>, op: u8, payload: &[u8]) {
    out.push(0x80 | op);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn collect(d: &mut Decoder, input: &[u8]) -> Result<Vec<String>, FrameError> {
        let mut seen = Vec::new();
        d.feed(input, &mut |f| {
            seen.push(match f {
                Frame::Text(t) => format!("text {}", String::from_utf8_lossy(t)),
                Frame::Binary(b) => format!("binary {}", b.len()),
                Frame::Ping(p) => format!("ping {}", p.len()),
                Frame::Pong => "pong".to_owned(),
                Frame::Close(c) => format!("close {c:?}"),
            });
            true
        })?;
        Ok(seen)
    }

    #[test]
    fn the_rfc_example_accept_value() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(new_key().len(), 24);
    }

    #[test]
    fn frames_cut_anywhere_come_out_whole() {
        let big = vec![b'x'; 70_000];
        let mut stream = server_frame(0x81, br#"{"op":"ack","id":0}"#);
        stream.extend(server_frame(0x89, b"hi"));
        stream.extend(server_frame(0x81, &[b'y'; 300]));
        stream.extend(server_frame(0x82, &big));
        stream.extend(server_frame(0x88, &1000u16.to_be_bytes()));
        for cut in [1, 2, 3, 7, 150, 4096] {
            let mut d = Decoder::new();
            let mut seen = Vec::new();
            for piece in stream.chunks(cut) {
                seen.extend(collect(&mut d, piece).expect("valid"));
            }
            assert_eq!(seen.len(), 5, "cut {cut}: {seen:?}");
            assert_eq!(seen[0], r#"text {"op":"ack","id":0}"#);
            assert_eq!(seen[1], "ping 2");
            assert_eq!(seen[2].len(), 305);
            assert_eq!(seen[3], "binary 70000");
            assert_eq!(seen[4], "close Some(1000)");
            assert!(d.partial.is_empty() && d.fragments.is_empty());
        }
    }

    #[test]
    fn fragments_are_joined_around_control_frames() {
        let mut stream = server_frame(0x01, b"hel");
        stream.extend(server_frame(0x89, b""));
        stream.extend(server_frame(0x00, b"lo "));
        stream.extend(server_frame(0x80, b"world"));
        let mut d = Decoder::new();
        assert_eq!(collect(&mut d, &stream).expect("valid"), ["ping 0", "text hello world"]);
        assert_eq!(
            collect(&mut d, &server_frame(0x80, b"x")),
            Err(FrameError::Fragmentation)
        );
    }

    #[test]
    fn protocol_errors_are_refused() {
        let mut d = Decoder::new();
        assert_eq!(collect(&mut d, &[0xC1, 0]), Err(FrameError::Reserved));
        assert_eq!(
            collect(&mut Decoder::new(), &[0x81, 0x81, 1, 2, 3, 4, 5]),
            Err(FrameError::Masked)
        );
        assert_eq!(collect(&mut Decoder::new(), &[0x83, 0]), Err(FrameError::Opcode(3)));
        assert_eq!(collect(&mut Decoder::new(), &[0x09, 0]), Err(FrameError::Control));
        let mut long_ping = vec![0x89, 126, 0, 200];
        long_ping.extend([0; 200]);
        assert_eq!(collect(&mut Decoder::new(), &long_ping), Err(FrameError::Control));
    }

    #[test]
    fn stopping_drops_the_rest() {
        let mut stream = server_frame(0x81, b"a");
        stream.extend(server_frame(0x81, b"b"));
        let mut d = Decoder::new();
        let mut n = 0;
        let all = d
            .feed(&stream, &mut |_| {
                n += 1;
                false
            })
            .expect("valid");
        assert!(!all);
        assert_eq!(n, 1);
    }

    #[test]
    fn client_frames_are_masked_and_unmask_back() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            client_frame(&mut out, opcode::TEXT, &payload);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "masked");
            let (start, n) = match out[1] & 0x7f {
                126 => (4, usize::from(u16::from_be_bytes([out[2], out[3]]))),
                127 => (10, u64::from_be_bytes(out[2..10].try_into().expect("8")) as usize),
                n => (2, usize::from(n)),
            };
            assert_eq!(n, len);
            let mask = &out[start..start + 4];
            let back: Vec<u8> = out[start + 4..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(back, payload);
        }
    }
}
