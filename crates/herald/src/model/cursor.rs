//! The cursor: a connection's position in every one of its topics, as one short string that an
//! SSE `id:` line, a `Last-Event-ID` header and a URL query carry without escaping.
//!
//! One topic: the plain event id, as v1 (Neurow) writes it. Several topics:
//!
//! ```text
//! m1.<B>.<H>.<F1>.<F2>…      B  = base36(the base: the highest position when the cursor was made)
//!                            H  = base36(hash of the connection's topic set), 6 characters
//!                            Fi = topic i's position (topics in canonical order) relative to B:
//!                                 ""         position 0 (the topic had no message yet)
//!                                 "-" x      B - x (older than the base)
//!                                 x          B + x (moved on since the cursor was made)
//! ```
//!
//! Why a position per topic rather than one watermark: messages of different topics are not
//! ordered with each other (different publishers, different Redis shards), so after B@105 is
//! delivered A@100 may still be on its way, and a single watermark of 105 would skip it.
//! Why relative to a base: positions are mostly millisecond timestamps close to each other, so a
//! topic active within the last minute costs 5 bytes; 64 topics stay under ~550 bytes
//! (spec/transports.md §4.2). Why a base fixed when the stream opens rather than the running
//! maximum: a delivery then rewrites only its own topic's field, and a stream keeps its cursor
//! encoded ([`Cursor`]) instead of re-encoding every field of every event. Re-encoding all of
//! them was 19 % of the server's CPU in the 8-topic broadcast benchmark (perf, BENCHMARKS.md).
//! `H` ties a cursor to its topic set, so a cursor of another set (another page, another
//! issuer) is refused instead of resuming the wrong topics. Only `[0-9a-z.-]` are used.

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

/// A connection's cursor, kept encoded: [`Cursor::set`] rewrites one topic's field in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The base the fields are relative to (unused for one topic).
    base: u64,
    /// The cursor's text: only ASCII. A box of exactly its length rather than a `Vec`: an idle
    /// stream keeps it for its whole life, and a field changes length rarely (a topic's first
    /// message, or a 36-fold longer offset), so reallocating then costs less than spare capacity.
    text: Box<[u8]>,
}

impl Cursor {
    /// The cursor of `positions` (one per topic, canonical order) of the topic set `hash`.
    pub fn new(hash: u64, positions: &[u64]) -> Cursor {
        let mut text = Vec::new();
        if let [only] = positions {
            text.extend_from_slice(itoa::Buffer::new().format(*only).as_bytes());
            return Cursor {
                base: 0,
                text: text.into_boxed_slice(),
            };
        }
        let base = positions.iter().copied().max().unwrap_or(0);
        text.extend_from_slice(VERSION.as_bytes());
        text.push(b'.');
        push_base36(&mut text, base, 1);
        text.push(b'.');
        push_base36(&mut text, hash, HASH_DIGITS);
        for &p in positions {
            text.push(b'.');
            push_field(&mut text, base, p);
        }
        Cursor {
            base,
            text: text.into_boxed_slice(),
        }
    }

    /// Moves topic `index` to `position`. False if the cursor has no such topic.
    pub fn set(&mut self, index: usize, position: u64) -> bool {
        if !self.text.starts_with(VERSION.as_bytes()) {
            if index != 0 {
                return false;
            }
            self.text = itoa::Buffer::new().format(position).as_bytes().into();
            return true;
        }
        // The field starts after the (3 + index)th dot and ends at the next one.
        let mut dots = self
            .text
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| i);
        let Some(start) = dots.nth(2 + index).map(|dot| dot + 1) else {
            return false;
        };
        let end = dots.next().unwrap_or(self.text.len());
        let mut field = [0u8; 14];
        let len = write_field(&mut field, self.base, position);
        if end - start == len {
            self.text[start..end].copy_from_slice(&field[..len]);
        } else {
            let mut text = Vec::with_capacity(self.text.len() - (end - start) + len);
            text.extend_from_slice(&self.text[..start]);
            text.extend_from_slice(&field[..len]);
            text.extend_from_slice(&self.text[end..]);
            self.text = text.into_boxed_slice();
        }
        true
    }

    /// The cursor as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("a cursor is ASCII")
    }

    /// The cursor as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

/// The cursor of `positions` (one per topic, canonical order) of the topic set `hash`, as text.
pub fn encode(hash: u64, positions: &[u64]) -> String {
    Cursor::new(hash, positions).as_str().to_owned()
}

/// Reads a cursor made by [`Cursor`] for `topics` topics of set `hash`: one position per topic.
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
    let base = fields.next().and_then(parse_base36).ok_or(CursorError::Malformed)?;
    let h = fields
        .next()
        .filter(|h| h.len() == HASH_DIGITS)
        .and_then(parse_base36)
        .ok_or(CursorError::Malformed)?;
    let positions: Vec<u64> = fields
        .map(|field| parse_field(base, field))
        .collect::<Option<_>>()
        .ok_or(CursorError::Malformed)?;
    if h != hash || positions.len() != topics {
        return Err(CursorError::OtherTopics);
    }
    Ok(positions)
}

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Writes `n` in base 36, at least `min_digits` long.
fn push_base36(out: &mut Vec<u8>, n: u64, min_digits: usize) {
    let mut digits = [0u8; 13];
    let len = write_base36(&mut digits, n, min_digits);
    out.extend_from_slice(&digits[13 - len..]);
}

/// Writes `n` in base 36 at the end of `digits`; returns how many digits it took.
fn write_base36(digits: &mut [u8; 13], mut n: u64, min_digits: usize) -> usize {
    let mut len = 0;
    while n > 0 || len < min_digits {
        digits[12 - len] = DIGITS[(n % 36) as usize];
        n /= 36;
        len += 1;
    }
    len
}

fn push_field(out: &mut Vec<u8>, base: u64, position: u64) {
    let mut field = [0u8; 14];
    let len = write_field(&mut field, base, position);
    out.extend_from_slice(&field[..len]);
}

/// Writes `position`'s field relative to `base` at the start of `field`; returns its length.
fn write_field(field: &mut [u8; 14], base: u64, position: u64) -> usize {
    if position == 0 {
        return 0;
    }
    let (sign, magnitude) = match position.checked_sub(base) {
        Some(ahead) => (0, ahead),
        None => (1, base - position),
    };
    field[0] = b'-';
    let mut digits = [0u8; 13];
    let len = write_base36(&mut digits, magnitude, 1);
    field[sign..sign + len].copy_from_slice(&digits[13 - len..]);
    sign + len
}

fn parse_field(base: u64, field: &str) -> Option<u64> {
    if field.is_empty() {
        return Some(0);
    }
    match field.strip_prefix('-') {
        Some(behind) => base.checked_sub(parse_base36(behind)?),
        None => base.checked_add(parse_base36(field)?),
    }
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

    fn hash_of(n: usize) -> u64 {
        topic_set_hash(&topics(&["a", "b", "c", "d", "e", "f", "g", "h"][..n]))
    }

    fn round_trip(positions: &[u64]) -> String {
        let hash = hash_of(positions.len());
        let s = encode(hash, positions);
        assert_eq!(decode(&s, hash, positions.len()), Ok(positions.to_vec()), "{s}");
        s
    }

    #[test]
    fn one_topic_is_the_plain_event_id() {
        assert_eq!(round_trip(&[1_796_000_000_123]), "1796000000123");
        let mut c = Cursor::new(hash_of(1), &[5]);
        assert!(c.set(0, 1_796_000_000_124));
        assert_eq!(c.as_str(), "1796000000124");
        assert!(!c.set(1, 7));
    }

    #[test]
    fn several_topics_round_trip_and_stay_short() {
        let t = 1_796_000_000_000;
        let s = round_trip(&[t, t - 60_000, t - 3_600_000]);
        assert!(s.starts_with("m1.") && s.len() < 40, "{s}");
        round_trip(&[0, 0]);
        round_trip(&[u64::MAX, 0, 7]);
        round_trip(&[1, u64::MAX]);
        // Topics with no message cost one byte (their dot).
        assert!(round_trip(&[t, 0, 0, 0, 0, 0, 0, 0]).len() < 32);
        // 64 topics, each active within the last hour: well under 1 KB.
        let positions: Vec<u64> = (0..64).map(|i| t - i * 50_000).collect();
        let set: Vec<Topic> = (0..64)
            .map(|i| Topic::namespaced("iss", &format!("topic-{i}")))
            .collect();
        let s = encode(topic_set_hash(&set), &positions);
        assert!(s.len() < 550, "{} bytes", s.len());
        assert_eq!(decode(&s, topic_set_hash(&set), 64), Ok(positions));
    }

    #[test]
    fn moving_one_topic_rewrites_its_field_only() {
        let t = 1_796_000_000_000;
        let hash = hash_of(3);
        let mut c = Cursor::new(hash, &[t, 0, t - 100]);
        let mut expected = vec![t, 0, t - 100];
        for (index, position) in [
            (1, t - 5),
            (0, t + 1),
            (2, t + 70_000),
            (1, t + 3),
            (0, t + 36u64.pow(5)),
        ] {
            let before = c.as_str().to_owned();
            assert!(c.set(index, position));
            expected[index] = position;
            assert_eq!(
                decode(c.as_str(), hash, 3),
                Ok(expected.clone()),
                "{before} -> {}",
                c.as_str()
            );
            // Base and hash stay: only the field changed.
            assert_eq!(
                before.split('.').take(3).collect::<Vec<_>>(),
                c.as_str().split('.').take(3).collect::<Vec<_>>()
            );
        }
        assert!(!c.set(3, t));
        assert_eq!(c.as_bytes(), c.as_str().as_bytes());
    }

    #[test]
    fn foreign_and_broken_cursors_are_refused() {
        let hash = hash_of(2);
        let s = encode(hash, &[5, 6]);
        let other = topic_set_hash(&topics(&["a", "c"]));
        assert_eq!(decode(&s, other, 2), Err(CursorError::OtherTopics));
        assert_eq!(decode(&s, hash, 3), Err(CursorError::OtherTopics));
        assert_eq!(decode(&s, hash, 1), Err(CursorError::OtherTopics));
        assert_eq!(decode("123", hash, 2), Err(CursorError::OtherTopics));
        for bad in [
            "",
            "m1",
            "m1.1",
            "m2.1.000000.0.0",
            "m1.1.00000.0.0",
            "m1.1.000000.-2.0",
            "m1.zzzzzzzzzzzzz.000000.1.0",
            "m1.3w5e11264sgsf.000000.1.0",
            "m1.A.000000.0.0",
            "m1.1.000000.0.--1",
            "m1.1.000000.0.-",
            "m1.1.000000.0.+1",
            "x",
            "-1",
            "+5",
        ] {
            assert!(decode(bad, hash, 2).is_err(), "{bad:?}");
        }
        assert_eq!(decode(&"1".repeat(5000), hash, 1), Err(CursorError::TooLong));
    }
}
