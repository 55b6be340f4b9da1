//! Incremental decoder for `transfer-encoding: chunked` bodies.
//!
//! Herald and Neurow write every SSE event as one HTTP chunk, but TCP does not preserve those
//! boundaries: a read can end inside a chunk-size line, inside the data or inside the CRLF that
//! closes a chunk. The decoder is therefore a small state machine that keeps its position between
//! calls and appends decoded body bytes to the caller's buffer.

use thiserror::Error;

/// A malformed chunked body. Any of these ends the stream: there is no way to resynchronise.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line held something other than hex digits before `;`, CR or LF.
    #[error("invalid chunk size line")]
    BadSize,
    /// The chunk size does not fit in 64 bits or exceeds the sanity limit.
    #[error("chunk size too large")]
    TooLarge,
    /// The CRLF after a chunk's data was missing.
    #[error("missing CRLF after chunk data")]
    MissingCrlf,
}

/// Chunks larger than this are refused; no SSE event the tool sends comes near it.
const MAX_CHUNK: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the size line; holds the value so far and whether any digit was seen.
    Size { value: u64, digits: bool },
    /// Skipping a chunk extension (`;name=value`) up to the LF.
    Extension { value: u64 },
    /// Seen CR of the size line, expecting LF.
    SizeLf { value: u64 },
    /// Copying chunk data; holds the bytes still to copy.
    Data { remaining: u64 },
    /// Expecting the CR that ends the data.
    DataCr,
    /// Expecting the LF that ends the data.
    DataLf,
    /// The last chunk was read; trailers and the final CRLF are ignored.
    Done,
}

/// Decodes a chunked body fed in arbitrary pieces.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder positioned at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: false,
            },
        }
    }

    /// True once the zero-size last chunk has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes all of `input`, appending decoded body bytes to `out`.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkError> {
        while !input.is_empty() {
            match self.state {
                State::Size { value, digits } => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                            let value = value
                                .checked_mul(16)
                                .and_then(|v| v.checked_add(digit))
                                .filter(|v| *v <= MAX_CHUNK)
                                .ok_or(ChunkError::TooLarge)?;
                            State::Size { value, digits: true }
                        }
                        b';' | b' ' | b'\t' if digits => State::Extension { value },
                        b'\r' if digits => State::SizeLf { value },
                        b'\n' if digits => self.after_size(value),
                        _ => return Err(ChunkError::BadSize),
                    };
                }
                State::Extension { value } => match memchr(b'\n', input) {
                    Some(i) => {
                        input = &input[i + 1..];
                        self.state = self.after_size(value);
                    }
                    None => input = &[],
                },
                State::SizeLf { value } => {
                    if input[0] != b'\n' {
                        return Err(ChunkError::BadSize);
                    }
                    input = &input[1..];
                    self.state = self.after_size(value);
                }
                State::Data { remaining } => {
                    // `remaining` is at most MAX_CHUNK, so it fits in usize on 64-bit targets.
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                }
                State::DataCr => {
                    let b = input[0];
                    input = &input[1..];
                    self.state = match b {
                        b'\r' => State::DataLf,
                        // Tolerate a bare LF, as most HTTP clients do.
                        b'\n' => State::Size {
                            value: 0,
                            digits: false,
                        },
                        _ => return Err(ChunkError::MissingCrlf),
                    };
                }
                State::DataLf => {
                    if input[0] != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    input = &input[1..];
                    self.state = State::Size {
                        value: 0,
                        digits: false,
                    };
                }
                State::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn after_size(&self, value: u64) -> State {
        if value == 0 {
            State::Done
        } else {
            State::Data { remaining: value }
        }
    }
}

/// Position of the first `needle` in `haystack`.
pub(crate) fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> (Vec<u8>, ChunkedDecoder) {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        for p in pieces {
            dec.decode(p, &mut out).expect("valid chunked body");
        }
        (out, dec)
    }

    #[test]
    fn decodes_exact_neurow_chunk() {
        let body = b"26\r\nid: 1\nevent: load_test_event\ndata: x\n\n\r\n";
        let (out, dec) = decode_all(&[body]);
        assert_eq!(out, b"id: 1\nevent: load_test_event\ndata: x\n\n");
        assert!(!dec.is_done());
    }

    #[test]
    fn decodes_byte_by_byte() {
        let body = b"c\r\nevent: ping\n\r\n1\r\n\n\r\n0\r\n\r\n";
        let pieces: Vec<&[u8]> = body.chunks(1).collect();
        let (out, dec) = decode_all(&pieces);
        assert_eq!(out, b"event: ping\n\n");
        assert!(dec.is_done());
    }

    #[test]
    fn several_chunks_in_one_read_and_uppercase_hex() {
        let body = b"A\r\n0123456789\r\n3;ext=1\r\nabc\r\n";
        let (out, _) = decode_all(&[body]);
        assert_eq!(out, b"0123456789abc");
    }

    #[test]
    fn rejects_garbage_size() {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(dec.decode(b"zz\r\n", &mut out), Err(ChunkError::BadSize));
    }

    #[test]
    fn rejects_missing_crlf_after_data() {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(dec.decode(b"2\r\nabX", &mut out), Err(ChunkError::MissingCrlf));
    }

    #[test]
    fn rejects_huge_size() {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(
            dec.decode(b"ffffffffffffffffff\r\n", &mut out),
            Err(ChunkError::TooLarge)
        );
    }
}
