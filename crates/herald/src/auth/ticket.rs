//! Tickets: short-lived, single-use stand-ins for a token, for browsers that must put their
//! credential in a URL (`EventSource` cannot send a header).
//!
//! A backend-authenticated page trades its bearer token for a ticket (`POST /v2/tickets`), then
//! opens `…?ticket=…`. The ticket is 128 random bits; what it stands for — the token's principal —
//! is kept by the node (or in Redis, for a cluster) under it, for `PUBLIC_API_TICKET_LIFETIME` at
//! most and never beyond the token's own expiry, and is taken out on first use. So a ticket that
//! leaks through a log or a browser history is worthless once used or a minute old.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::Principal;
use super::grants::{Grants, TopicPattern};

/// The prefix of every ticket, so one is told from a token at a glance.
const PREFIX: &str = "tk1.";

/// A new ticket id.
pub fn new_ticket() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `s` has a ticket's shape (checked before any lookup).
pub fn looks_like_ticket(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// What a ticket stands for, as stored (JSON, also in Redis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// The token's `jti` and `sid`: a revocation of the token or its session revokes the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    publish: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
}

fn patterns(list: &[TopicPattern]) -> Vec<String> {
    list.iter()
        .map(|p| match p {
            TopicPattern::Exact(n) => n.to_string(),
            TopicPattern::Prefix(p) => format!("{p}*"),
        })
        .collect()
}

impl TicketClaims {
    /// What a ticket for `principal` (whose grants are valid) stands for.
    pub fn of(principal: &Principal, grants: &Grants) -> TicketClaims {
        TicketClaims {
            iss: principal.issuer.to_string(),
            sub: principal.subject.clone(),
            jti: principal.token_id.clone(),
            sid: principal.session.clone(),
            exp: principal.expires_at_s,
            topics: patterns(&grants.read),
            publish: patterns(&grants.publish),
            roles: grants.roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The principal back, its issuer's name shared with `issuer` when given.
    pub fn principal(self, issuer: Arc<str>) -> Principal {
        let claims = serde_json::json!({"topics": self.topics, "publish": self.publish, "roles": self.roles});
        Principal {
            issuer,
            subject: self.sub,
            token_id: self.jti,
            session: self.sid,
            expires_at_s: self.exp,
            grants: Grants::from_claims(claims.as_object().expect("an object")),
        }
    }

    /// The issuer it belongs to.
    pub fn issuer(&self) -> &str {
        &self.iss
    }

    /// When the token behind it expires, seconds since the epoch.
    pub fn expires_at_s(&self) -> i64 {
        self.exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_random_and_recognisable() {
        let (a, b) = (new_ticket(), new_ticket());
        assert_ne!(a, b);
        assert!(looks_like_ticket(&a) && looks_like_ticket(&b), "{a}");
        for bad in ["", "tk1.", "tk1.short", "eyJhbGciOiJIUzI1NiJ9.e30.x", &format!("{a}x")] {
            assert!(!looks_like_ticket(bad), "{bad:?}");
        }
    }

    #[test]
    fn claims_round_trip_through_json() {
        let grants = Grants::from_claims(
            serde_json::json!({"topics": ["a", "orders.*"], "roles": ["admin"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let principal = Principal {
            issuer: "iss".into(),
            subject: Some("me".into()),
            token_id: Some("t-1".into()),
            session: Some("s-1".into()),
            expires_at_s: 1_900_000_000,
            grants: Ok(grants.clone()),
        };
        let claims = TicketClaims::of(&principal, &grants);
        let json = serde_json::to_string(&claims).unwrap();
        let back: TicketClaims = serde_json::from_str(&json).unwrap();
        assert_eq!(back.clone().principal("iss".into()), principal);
        assert_eq!(back.issuer(), "iss");
    }
}
