//! The opening handshake (RFC 6455 §4.2): which requests are WebSocket upgrades, and the `101`.

use base64::Engine as _;

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What an upgrade request carries, as the request head reads it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpgradeHeaders {
    /// `Upgrade` names `websocket`.
    pub upgrade_websocket: bool,
    /// `Connection` has the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`.
    pub key: Option<Vec<u8>>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<Vec<u8>>,
}

impl UpgradeHeaders {
    /// Notes header `name` if it is one of the handshake's; false if it is not.
    pub fn observe(&mut self, name: &str, value: &[u8]) -> bool {
        let has_token = |token: &str| {
            String::from_utf8_lossy(value)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if name.eq_ignore_ascii_case("upgrade") {
            self.upgrade_websocket |= has_token("websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            self.connection_upgrade |= has_token("upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            self.key = Some(value.to_vec());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            self.version = Some(value.to_vec());
        } else {
            return false;
        }
        true
    }
}

/// Why a request cannot be upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an upgrade to WebSocket at all: 400 (or 426 to say how).
    #[error("this route takes a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)")]
    NotAnUpgrade,
    /// Another protocol version: 426 with `Sec-WebSocket-Version: 13`.
    #[error("only WebSocket version 13 is supported")]
    Version,
    /// No key, or not 16 bytes in base64: 400.
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    Key,
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade.
pub fn accept(headers: &UpgradeHeaders) -> Result<String, HandshakeError> {
    if !headers.upgrade_websocket || !headers.connection_upgrade {
        return Err(HandshakeError::NotAnUpgrade);
    }
    if headers.version.as_deref().map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .key
        .as_deref()
        .map(<[u8]>::trim_ascii)
        .ok_or(HandshakeError::Key)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| HandshakeError::Key)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::Key);
    }
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    Ok(base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes()))
}

/// The `101 Switching Protocols` head for `accept`.
pub fn switching_protocols(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade(key: &str, version: &str) -> UpgradeHeaders {
        let mut h = UpgradeHeaders::default();
        for (n, v) in [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", version),
        ] {
            assert!(h.observe(n, v.as_bytes()));
        }
        h
    }

    #[test]
    fn the_accept_value_is_rfc_6455s_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept(&upgrade("dGhlIHNhbXBsZSBub25jZQ==", "13")).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn bad_upgrades_are_refused_with_a_reason() {
        assert_eq!(accept(&UpgradeHeaders::default()), Err(HandshakeError::NotAnUpgrade));
        assert_eq!(
            accept(&upgrade("dGhlIHNhbXBsZSBub25jZQ==", "8")),
            Err(HandshakeError::Version)
        );
        assert_eq!(accept(&upgrade("c2hvcnQ=", "13")), Err(HandshakeError::Key));
        assert_eq!(accept(&upgrade("not base64!", "13")), Err(HandshakeError::Key));
    }
}
