//! A small cache of verified tokens for the publish path.
//!
//! Backends reuse one token for many publishes; verifying its HS256 signature and claims on every
//! request costs ≈1.4 µs (spec/deps.md) plus base64 and JSON decoding. A token's verdict depends
//! on time only through `exp`, so a cached principal is served only while `exp` is in the future;
//! everything else about the token was checked when it entered the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{AuthError, Principal, Verifier};

/// Most tokens remembered; when full the cache starts over (simple and bounded; backends use few
/// tokens at a time).
const CAPACITY: usize = 1024;

/// A [`Verifier`] that remembers the tokens it accepted.
#[derive(Debug)]
pub struct CachingVerifier {
    verifier: Verifier,
    accepted: Mutex<HashMap<Box<str>, Arc<Principal>>>,
}

impl CachingVerifier {
    /// Wraps `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        CachingVerifier {
            verifier,
            accepted: Mutex::new(HashMap::new()),
        }
    }

    /// The API's issuers and audience.
    pub fn config(&self) -> &super::keys::AuthConfig {
        self.verifier.config()
    }

    /// Same verdicts as [`Verifier::verify`]; the principal is shared, so a cache hit allocates
    /// nothing.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Arc<Principal>, AuthError> {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(principal) = accepted.get(token) {
            if principal.expires_at_s > now_s {
                // Revocations come after the token entered the cache: asked every time.
                if self.verifier.revocations().refuses(principal, now_s) {
                    return Err(AuthError::TokenRevoked);
                }
                return Ok(principal.clone());
            }
            accepted.remove(token);
            return Err(AuthError::TokenExpired);
        }
        drop(accepted);
        let principal = Arc::new(self.verifier.verify(token, now_s)?);
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if accepted.len() >= CAPACITY {
            accepted.clear();
        }
        accepted.insert(token.into(), principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::development_auth;
    use crate::auth::token::TokenRequest;

    #[test]
    fn cached_tokens_still_expire() {
        let (_, internal) = development_auth();
        let token = TokenRequest {
            issuer: "test_issuer1".into(),
            subject: None,
            lifetime_s: 10,
            ..Default::default()
        }
        .sign(&internal, 100)
        .unwrap();
        let cache = CachingVerifier::new(Verifier::new(internal, 1500));
        assert!(cache.verify(&token, 100).is_ok());
        assert!(cache.verify(&token, 109).is_ok());
        assert_eq!(cache.verify(&token, 110), Err(AuthError::TokenExpired));
    }

    #[test]
    fn cached_tokens_can_still_be_revoked() {
        use crate::auth::revocation::{RevocationKind, RevokedKey};
        let (_, internal) = development_auth();
        let token = TokenRequest {
            issuer: "test_issuer1".into(),
            subject: Some("backend".into()),
            lifetime_s: 10,
            ..Default::default()
        }
        .sign(&internal, 100)
        .unwrap();
        let cache = CachingVerifier::new(Verifier::new(internal, 1500));
        assert!(cache.verify(&token, 100).is_ok());
        let key = RevokedKey {
            kind: RevocationKind::Sub,
            issuer: "test_issuer1".into(),
            value: "backend".into(),
        };
        cache.verifier.revocations().insert(key, 105, 101).unwrap();
        assert_eq!(cache.verify(&token, 101), Err(AuthError::TokenRevoked));
        assert!(cache.verify(&token, 105).is_ok(), "the revocation ended");
    }

    #[test]
    fn refused_tokens_are_not_cached() {
        let (_, internal) = development_auth();
        let cache = CachingVerifier::new(Verifier::new(internal, 1500));
        assert_eq!(cache.verify("x.y.z", 100), Err(AuthError::InvalidJwtToken));
        assert!(cache.accepted.lock().unwrap().is_empty());
    }
}
