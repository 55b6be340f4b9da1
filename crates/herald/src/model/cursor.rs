//! The cursor: a connection's position in every one of its topics, as one short string that an
//! SSE `id:` line, a `Last-Event-ID` header and a URL query carry without escaping.
//!
//! One topic: the plain event id, as v1 (Neurow) writes it. Several topics:
//!
//! ```text
//! m1.<T>.<H>.<D1>.<D2>…      T  = base36(max of the positions)
//!                            H  = base36(hash of the connection's topic set), 6 characters
//!                            Di = base36(T - position of topic i), topics in canonical order
//! ```
//!
//! Why a position per topic rather than one watermark: messages of different topics are not
//! ordered with each other (different publishers, different Redis shards), so after B@105 is
//! delivered A@100 may still be on its way, and a single watermark of 105 would skip it.
//! Why deltas: positions are mostly millisecond timestamps close to each other, so a topic active
//! within the last minute costs 5 bytes; 64 topics stay under ~550 bytes (spec/transports.md §4.2).
//! `H` ties a cursor to its topic set, so a cursor of another set (another page, another
//! issuer) is refused instead of resuming the wrong topics. Only `[0-9a-z.]` are used.

use std::fmt::Write as _;

use super::Topic;

/// Longest cursor accepted, in bytes: far above 64 topics' worth, far below header limits.
pub const MAX_CURSOR_BYTES: usize = 4096;

const VERSION: &str = "m1";
const HASH_DIGITS: usize = 6;
/// 36^6: the hash is reduced to six base-36 digits.
const HASH_MODULUS: u64 = 2_176_782_336;

/// Why a cursor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR_BYTES`].
    #[error("the cursor is longer than 4096 bytes")]
    TooLong,
    /// Not a cursor at all.
    #[error("the cursor is not one Herald made")]
    Malformed,
    /// A cursor of another set of topics.
    #[error("the cursor belongs to another set of topics")]
    OtherTopics,
}

/// The hash that ties a cursor to its topics (FNV-1a over the full topic names, in order).
pub fn topic_set_hash(topics: &[Topic]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for topic in topics {
        for &b in topic.as_str().as_bytes().iter().chain(b"\n") {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash % HASH_MODULUS
}

/// Writes the cursor of `positions` (one per topic, canonical order) into `out`.
pub fn encode(hash: u64, positions: &[u64], out: &mut String) {
    if let [only] = positions {
        let _ = write!(out, "{only}");
        return;
    }
    let top = positions.iter().copied().max().unwrap_or(0);
    out.push_str(VERSION);
    out.push('.');
    push_base36(out, top, 1);
    out.push('.');
    push_base36(out, hash, HASH_DIGITS);
    for &p in positions {
        out.push('.');
        push_base36(out, top - p, 1);
    }
}

/// Reads a cursor made by [`encode`] for `topics` topics of set `hash`: one position per topic.
pub fn decode(cursor: &str, hash: u64, topics: usize) -> Result<Vec<u64>, CursorError> {
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(CursorError::TooLong);
    }
    if topics == 1 {
        return match cursor.parse::<u64>() {
            Ok(p) if cursor.bytes().all(|b| b.is_ascii_digit()) => Ok(vec![p]),
            _ if cursor.starts_with("m1.") => Err(CursorError::OtherTopics),
            _ => Err(CursorError::Malformed),
        };
    }
    let mut fields = cursor.split('.');
    if fields.next() != Some(VERSION) {
        return Err(if cursor.bytes().all(|b| b.is_ascii_digit()) && !cursor.is_empty() {
            CursorError::OtherTopics
        } else {
            CursorError::Malformed
        });
    }
    let top = fields.next().and_then(parse_base36).ok_or(CursorError::Malformed)?;
    let h = fields
        .next()
        .filter(|h| h.len() == HASH_DIGITS)
        .and_then(parse_base36)
        .ok_or(CursorError::Malformed)?;
    let deltas: Vec<u64> = fields
        .map(parse_base36)
        .collect::<Option<_>>()
        .ok_or(CursorError::Malformed)?;
    if deltas.iter().any(|&d| d > top) {
        return Err(CursorError::Malformed);
    }
    if h != hash || deltas.len() != topics {
        return Err(CursorError::OtherTopics);
    }
    Ok(deltas.into_iter().map(|d| top - d).collect())
}

fn push_base36(out: &mut String, mut n: u64, min_digits: usize) {
    let mut digits = [0u8; 13];
    let mut len = 0;
    while n > 0 || len < min_digits {
        digits[len] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
        len += 1;
    }
    out.extend(digits[..len].iter().rev().map(|&d| d as char));
}

fn parse_base36(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 13 || !s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
        return None;
    }
    u64::from_str_radix(s, 36).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<Topic> {
        names.iter().map(|n| Topic::namespaced("iss", n)).collect()
    }

    fn round_trip(positions: &[u64]) -> String {
        let set = topics(&["a", "b", "c", "d", "e", "f", "g", "h"][..positions.len()]);
        let hash = topic_set_hash(&set);
        let mut s = String::new();
        encode(hash, positions, &mut s);
        assert_eq!(decode(&s, hash, positions.len()), Ok(positions.to_vec()), "{s}");
        s
    }

    #[test]
    fn one_topic_is_the_plain_event_id() {
        assert_eq!(round_trip(&[1_796_000_000_123]), "1796000000123");
    }

    #[test]
    fn several_topics_round_trip_and_stay_short() {
        let t = 1_796_000_000_000;
        let s = round_trip(&[t, t - 60_000, t - 3_600_000]);
        assert!(s.starts_with("m1.") && s.len() < 40, "{s}");
        round_trip(&[0, 0]);
        round_trip(&[u64::MAX, 0, 7]);
        // 64 topics, each active within the last hour: well under 1 KB.
        let positions: Vec<u64> = (0..64).map(|i| t - i * 50_000).collect();
        let set: Vec<Topic> = (0..64)
            .map(|i| Topic::namespaced("iss", &format!("topic-{i}")))
            .collect();
        let mut s = String::new();
        encode(topic_set_hash(&set), &positions, &mut s);
        assert!(s.len() < 550, "{} bytes", s.len());
        assert_eq!(decode(&s, topic_set_hash(&set), 64), Ok(positions));
    }

    #[test]
    fn foreign_and_broken_cursors_are_refused() {
        let two = topics(&["a", "b"]);
        let hash = topic_set_hash(&two);
        let mut s = String::new();
        encode(hash, &[5, 6], &mut s);
        let other = topic_set_hash(&topics(&["a", "c"]));
        assert_eq!(decode(&s, other, 2), Err(CursorError::OtherTopics));
        assert_eq!(decode(&s, hash, 3), Err(CursorError::OtherTopics));
        assert_eq!(decode(&s, hash, 1), Err(CursorError::OtherTopics));
        assert_eq!(decode("123", hash, 2), Err(CursorError::OtherTopics));
        for bad in [
            "",
            "m1",
            "m1..",
            "m2.1.000000.0.0",
            "m1.1.00000.0.0",
            "m1.1.000000.2.0",
            "m1.A.000000.0.0",
            "m1.1.000000.0.-1",
            "x",
            "-1",
            "+5",
        ] {
            assert!(decode(bad, hash, 2).is_err(), "{bad:?}");
        }
        assert_eq!(decode(&"1".repeat(5000), hash, 1), Err(CursorError::TooLong));
    }
}
