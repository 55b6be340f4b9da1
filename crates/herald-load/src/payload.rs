//! The message payload: what a publisher writes and a subscriber reads back.
//!
//! Latency is measured end to end, so the payload carries the send time (microseconds since the
//! Unix epoch, read just before the publish request is written) and the message's sequence number
//! on its topic. Publisher and subscriber run on the same machine, so they share one clock even
//! when they live in different processes. The payload is plain ASCII with no quote or newline, so
//! it survives JSON (Herald) and raw bodies (Nchan) unchanged and never breaks SSE framing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    now_us() / 1_000_000
}

/// Builds `"<send_us> <seq> <tag>"`, padded with `x` up to `min_len` bytes.
pub fn encode(send_us: u64, seq: u64, tag: &str, min_len: usize) -> String {
    let mut s = format!("{send_us} {seq} {tag}");
    if s.len() < min_len {
        s.push(' ');
        while s.len() < min_len {
            s.push('x');
        }
    }
    s
}

/// The fields a subscriber checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, microseconds since the Unix epoch.
    pub send_us: u64,
    /// Sequence number on the topic, from 1.
    pub seq: u64,
}

/// Reads the send time and sequence number; `None` if the payload is not one of ours.
pub fn decode(data: &[u8]) -> Option<Stamp> {
    let mut fields = data.split(|&b| b == b' ');
    let send_us = parse_u64(fields.next()?)?;
    let seq = parse_u64(fields.next()?)?;
    Some(Stamp { send_us, seq })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let p = encode(1_700_000_000_000_000, 42, "t7", 64);
        assert_eq!(p.len(), 64);
        assert_eq!(
            decode(p.as_bytes()),
            Some(Stamp {
                send_us: 1_700_000_000_000_000,
                seq: 42
            })
        );
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert_eq!(decode(b"hello world"), None);
        assert_eq!(decode(b"12"), None);
        assert_eq!(decode(b"-1 2"), None);
        assert_eq!(decode(b"99999999999999999999999 1"), None);
    }
}
