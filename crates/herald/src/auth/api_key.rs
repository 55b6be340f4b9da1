//! API keys: random 256-bit secrets a backend publishes with (`Authorization: ApiKey hk_…`), one
//! per domain, stored as their SHA-256 with a short prefix to recognise them by. A random key of
//! that size needs no slow hash; lookups are by the hash, so no comparison leaks timing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The prefix of every key.
const PREFIX: &str = "hk_";

/// A new key.
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `s` has a key's shape.
pub fn looks_like_key(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What is stored of a key: its SHA-256, hex.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What is shown of a key after it was created: enough to tell keys apart.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(PREFIX.len() + 6).collect()
}

/// The key of an `Authorization: ApiKey <key>` value, if it is one.
pub fn from_header(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value.strip_prefix(b"ApiKey ")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_recognisable_and_stored_hashed() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert!(looks_like_key(&a), "{a}");
        assert!(!looks_like_key("hk_short") && !looks_like_key(&a[1..]));
        assert_eq!(key_hash(&a).len(), 64);
        assert_ne!(key_hash(&a), key_hash(&b));
        assert_eq!(key_prefix(&a).len(), 9);
        assert_eq!(from_header(format!("ApiKey {a}").as_bytes()), Some(a.as_str()));
        assert_eq!(from_header(b"Bearer x"), None);
    }
}
