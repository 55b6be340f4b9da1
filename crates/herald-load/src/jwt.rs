//! HS256 tokens for Herald's (and Neurow's) two APIs.
//!
//! The secret string is used as the raw HMAC key, as Neurow does. Subscriber tokens name the topic
//! in `sub`; publisher tokens have no `sub`. A WebSocket publisher (Herald v2) uses a token of the
//! public API with a `publish` grant instead. Publisher tokens are cached and renewed once half of
//! their lifetime has passed, so that a long run never sends an expired one.

use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::payload::now_s;

/// Issuer, key and audience of one API's tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JwtSettings {
    /// `iss` claim.
    pub issuer: String,
    /// Shared secret, used as raw key bytes.
    pub secret: String,
    /// `aud` claim.
    pub audience: String,
    /// `exp - iat`, in seconds.
    pub lifetime_s: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish: Option<&'a [String]>,
}

impl JwtSettings {
    /// Signs a token issued now, with `sub` if given.
    pub fn mint(&self, sub: Option<&str>) -> anyhow::Result<String> {
        self.sign(sub, None)
    }

    /// Signs a token that also grants every topic of its issuer (Herald v2's `topics: ["*"]`).
    pub fn mint_granting_all(&self, sub: Option<&str>) -> anyhow::Result<String> {
        self.sign(sub, Some(["*"]))
    }

    /// Signs a token, without `sub`, that may publish to the topics `patterns` name (Herald v2's
    /// `publish` grant: names, or prefixes ending in `*`), as a WebSocket publisher needs.
    pub fn mint_publishing(&self, patterns: &[String]) -> anyhow::Result<String> {
        self.sign_claims(None, None, Some(patterns))
    }

    fn sign(&self, sub: Option<&str>, topics: Option<[&str; 1]>) -> anyhow::Result<String> {
        self.sign_claims(sub, topics, None)
    }

    fn sign_claims(
        &self,
        sub: Option<&str>,
        topics: Option<[&str; 1]>,
        publish: Option<&[String]>,
    ) -> anyhow::Result<String> {
        let iat = now_s();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            iat,
            exp: iat + self.lifetime_s,
            sub,
            topics,
            publish,
        };
        let key = EncodingKey::from_secret(self.secret.as_bytes());
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)?)
    }
}

/// A publisher token reused until half its lifetime has passed.
#[derive(Debug)]
pub struct TokenCache {
    settings: JwtSettings,
    current: Mutex<Option<(String, u64)>>,
}

impl TokenCache {
    /// A cache that mints its first token on first use.
    pub fn new(settings: JwtSettings) -> Self {
        Self {
            settings,
            current: Mutex::new(None),
        }
    }

    /// The current token, renewed if it is past half its lifetime.
    pub fn get(&self) -> anyhow::Result<String> {
        let now = now_s();
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, renew_at)) = current.as_ref()
            && now < *renew_at
        {
            return Ok(token.clone());
        }
        let token = self.settings.mint(None)?;
        *current = Some((token.clone(), now + self.settings.lifetime_s / 2));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Debug, Deserialize)]
    struct Back {
        iss: String,
        sub: String,
        aud: String,
        iat: u64,
        exp: u64,
    }

    #[test]
    fn token_verifies_with_raw_secret_and_has_neurow_claims() {
        let s = JwtSettings {
            issuer: "test_issuer1".into(),
            secret: "966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc".into(),
            audience: "public_api".into(),
            lifetime_s: 120,
        };
        let token = s.mint(Some("topic_1")).expect("mint");
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["public_api"]);
        let back = jsonwebtoken::decode::<Back>(&token, &DecodingKey::from_secret(s.secret.as_bytes()), &v)
            .expect("verify")
            .claims;
        assert_eq!(back.iss, "test_issuer1");
        assert_eq!(back.sub, "topic_1");
        assert_eq!(back.aud, "public_api");
        assert_eq!(back.exp - back.iat, 120);
    }

    #[test]
    fn publishing_token_carries_the_grant_and_no_sub() {
        let s = JwtSettings {
            issuer: "test_issuer1".into(),
            secret: "k".into(),
            audience: "public_api".into(),
            lifetime_s: 60,
        };
        let token = s.mint_publishing(&["hlx-o2o-*".to_owned()]).expect("mint");
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["public_api"]);
        v.required_spec_claims.clear();
        let back = jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"k"), &v)
            .expect("verify")
            .claims;
        assert_eq!(back["publish"], serde_json::json!(["hlx-o2o-*"]));
        assert!(back.get("sub").is_none() && back.get("topics").is_none());
    }

    #[test]
    fn cache_reuses_token() {
        let cache = TokenCache::new(JwtSettings {
            issuer: "i".into(),
            secret: "s".into(),
            audience: "internal_api".into(),
            lifetime_s: 900,
        });
        assert_eq!(cache.get().expect("a"), cache.get().expect("b"));
    }
}
