//! Where tickets wait to be redeemed: in this node's memory, or in Redis so that any node of a
//! cluster redeems them (each at most once: Redis's `GETDEL`, or one lock here).

use std::collections::HashMap;
use std::sync::Mutex;

use super::Node;
use crate::auth::ticket::{TicketClaims, new_ticket};
use crate::backplane::{Backplane, BackplaneError};

/// Tickets of a node that works alone: claims and expiry (ms), by ticket.
#[derive(Default)]
pub struct LocalTickets {
    tickets: Mutex<HashMap<String, (TicketClaims, u64)>>,
}

impl LocalTickets {
    fn insert(&self, ticket: String, claims: TicketClaims, expires_ms: u64, now_ms: u64) {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        // Expired tickets go whenever one is added: the map never holds more than a lifetime's worth.
        tickets.retain(|_, (_, expires)| *expires > now_ms);
        tickets.insert(ticket, (claims, expires_ms));
    }

    fn take(&self, ticket: &str, now_ms: u64) -> Option<TicketClaims> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let (claims, expires_ms) = tickets.remove(ticket)?;
        (expires_ms > now_ms).then_some(claims)
    }
}

impl Node {
    /// Issues a ticket for `claims`, valid for `lifetime_ms` (never past the token's expiry).
    /// Returns the ticket and how long it is valid, in seconds.
    pub async fn issue_ticket(&self, claims: TicketClaims, lifetime_ms: u64) -> Result<(String, u64), BackplaneError> {
        let now_ms = self.hub.clock().now_ms();
        let token_left_ms = u64::try_from(claims.expires_at_s())
            .unwrap_or(0)
            .saturating_mul(1000)
            .saturating_sub(now_ms);
        let ttl_ms = lifetime_ms.min(token_left_ms).max(1);
        let ticket = new_ticket();
        match &self.backplane {
            Backplane::Local => self.tickets.insert(ticket.clone(), claims, now_ms + ttl_ms, now_ms),
            Backplane::Redis(redis) => {
                let json = serde_json::to_string(&claims).expect("claims serialise");
                redis.store_ticket(&ticket, &json, ttl_ms).await?;
            }
        }
        Ok((ticket, ttl_ms.div_ceil(1000)))
    }

    /// Redeems a ticket: its claims, once; `None` if it is unknown, used or expired.
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Option<TicketClaims>, BackplaneError> {
        match &self.backplane {
            Backplane::Local => Ok(self.tickets.take(ticket, self.hub.clock().now_ms())),
            Backplane::Redis(redis) => Ok(redis
                .take_ticket(ticket)
                .await?
                .and_then(|json| serde_json::from_str(&json).ok())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::auth::grants::Grants;

    fn claims() -> TicketClaims {
        let principal = Principal {
            issuer: "iss".into(),
            subject: Some("me".into()),
            token_id: None,
            session: None,
            expires_at_s: 2_000_000_000,
            grants: Ok(Grants::default()),
        };
        TicketClaims::of(&principal, &Grants::default())
    }

    #[test]
    fn a_local_ticket_is_taken_once_and_not_after_it_expires() {
        let tickets = LocalTickets::default();
        tickets.insert("a".into(), claims(), 1_000, 0);
        tickets.insert("b".into(), claims(), 1_000, 0);
        assert_eq!(tickets.take("a", 999), Some(claims()));
        assert_eq!(tickets.take("a", 999), None, "single use");
        assert_eq!(tickets.take("b", 1_000), None, "expired");
        // Adding one sweeps the expired ones.
        tickets.insert("c".into(), claims(), 5_000, 2_000);
        tickets.insert("d".into(), claims(), 1_500, 1_000);
        tickets.insert("e".into(), claims(), 9_000, 3_000);
        assert_eq!(tickets.tickets.lock().unwrap().len(), 2);
    }
}
