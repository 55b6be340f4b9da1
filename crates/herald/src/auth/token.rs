//! Signing tokens, for `herald token` (Neurow's `mix generate_jwt_token`) and for tests.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;
use serde_json::json;

use super::keys::AuthConfig;

/// What a token should say.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The `iss` claim; must be a configured issuer.
    pub issuer: String,
    /// The `sub` claim (a subscriber's topic), if any.
    pub subject: Option<String>,
    /// `exp - iat`, seconds.
    pub lifetime_s: u64,
    /// The `topics` claim (v2 grants: names or `prefix*` patterns); omitted when empty.
    pub topics: Vec<String>,
    /// The `roles` claim; omitted when empty.
    pub roles: Vec<String>,
}

/// Why a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The issuer is not configured for that API.
    #[error("unknown issuer {0:?}; configured issuers: {1}")]
    UnknownIssuer(String, String),
    /// The issuer has public keys only: its tokens come from its identity provider.
    #[error("issuer {0:?} has no shared secret (only public keys): its identity provider signs its tokens")]
    NoSecret(String),
}

impl TokenRequest {
    /// Signs the token with the issuer's first secret, issued at `now_s`.
    pub fn sign(&self, config: &AuthConfig, now_s: i64) -> Result<String, TokenError> {
        let issuer = config.issuer(&self.issuer).ok_or_else(|| {
            let names: Vec<_> = config.issuers().iter().map(|i| &*i.name).collect();
            TokenError::UnknownIssuer(self.issuer.clone(), names.join(", "))
        })?;
        let mut claims = json!({
            "iss": self.issuer,
            "iat": now_s,
            "exp": now_s.saturating_add(self.lifetime_s.min(i64::MAX as u64) as i64),
            "aud": config.audience,
        });
        if let Some(sub) = &self.subject {
            claims["sub"] = json!(sub);
        }
        if !self.topics.is_empty() {
            claims["topics"] = json!(self.topics);
        }
        if !self.roles.is_empty() {
            claims["roles"] = json!(self.roles);
        }
        let secret = issuer
            .secrets
            .first()
            .ok_or_else(|| TokenError::NoSecret(self.issuer.clone()))?;
        Ok(sign_claims(&claims, secret.bytes()))
    }
}

/// Signs arbitrary claims with HS256.
pub fn sign_claims(claims: &impl Serialize, secret: &[u8]) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing of JSON claims cannot fail")
}
