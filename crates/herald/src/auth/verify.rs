//! Token verification, check by check in Neurow's order (spec §1.2); the first failure wins.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::grants::{Grants, InvalidGrants};
use super::keys::{AuthConfig, Issuer};
use super::public_keys::algorithm;
use super::revocation::Revocations;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `iss` claim: the topic namespace.
    pub issuer: Arc<str>,
    /// The `sub` claim when it is a string: a subscriber's topic name.
    pub subject: Option<String>,
    /// The `jti` claim when it is a string: what a revocation of this one token names.
    pub token_id: Option<String>,
    /// The `sid` claim when it is a string: the session a revocation may end.
    pub session: Option<String>,
    /// The `exp` claim, seconds since the epoch.
    pub expires_at_s: i64,
    /// What it may read and publish besides its `sub` topic; an error when a grant claim has the
    /// wrong shape (v2 refuses such a token, v1 ignores the claims as Neurow did).
    pub grants: Result<Grants, InvalidGrants>,
}

/// Why a token was refused. Codes and messages are Neurow's, spelling included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Bearer ` header, or more than one.
    #[error("Invalid authorization header")]
    InvalidAuthorizationHeader,
    /// Not a parseable JWT.
    #[error("Invalid JWT token")]
    InvalidJwtToken,
    /// No `iss` claim.
    #[error("Missing iss claim")]
    MissingIssClaim,
    /// `iss` is not a configured issuer.
    #[error("Unknown issuer")]
    UnknownIssuer,
    /// No key of the issuer verifies the HS256 signature.
    #[error("Invalid signature")]
    InvalidSignature,
    /// `exp` or `iat` missing, not integers, or `exp <= iat`.
    #[error("Invalid exp or iat claim")]
    InvalidExpIatClaim,
    /// `exp - iat` exceeds the API's maximum lifetime.
    #[error("Token lifetime is higher than allowed")]
    TooLongLifetime,
    /// `exp` has passed.
    #[error("Token expired")]
    TokenExpired,
    /// No `aud` claim.
    #[error("Missing aud claim")]
    MissingAudClaim,
    /// `aud` is not the API's audience.
    #[error("Unkown audience")]
    UnknownAudience,
    /// An operator revoked the token, its subject or its session (`POST /v2/revocations`).
    #[error("Token revoked")]
    TokenRevoked,
}

impl AuthError {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            AuthError::InvalidAuthorizationHeader => "invalid_authorization_header",
            AuthError::InvalidJwtToken => "invalid_jwt_token",
            AuthError::MissingIssClaim => "missing_iss_claim",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::InvalidExpIatClaim => "invalid_exp_iat_claim",
            AuthError::TooLongLifetime => "too_long_lifetime",
            AuthError::TokenExpired => "token_expired",
            AuthError::MissingAudClaim => "missing_aud_claim",
            AuthError::UnknownAudience => "unknwon_audience",
            AuthError::TokenRevoked => "token_revoked",
        }
    }

    /// 401 when no token could be read, 403 when a token was read and refused.
    pub fn status(self) -> u16 {
        match self {
            AuthError::InvalidAuthorizationHeader | AuthError::InvalidJwtToken => 401,
            _ => 403,
        }
    }

    /// The code and message the client sees: a 403's detail only when verbose errors are on.
    pub fn client_view(self, verbose: bool) -> (&'static str, &'static str) {
        if self.status() == 403 && !verbose {
            ("invalid_authentication_token", "Invalid authentication token")
        } else {
            (self.code(), self.message())
        }
    }

    /// The human message.
    pub fn message(self) -> &'static str {
        match self {
            AuthError::InvalidAuthorizationHeader => "Invalid authorization header",
            AuthError::InvalidJwtToken => "Invalid JWT token",
            AuthError::MissingIssClaim => "Missing iss claim",
            AuthError::UnknownIssuer => "Unknown issuer",
            AuthError::InvalidSignature => "Invalid signature",
            AuthError::InvalidExpIatClaim => "Invalid exp or iat claim",
            AuthError::TooLongLifetime => "Token lifetime is higher than allowed",
            AuthError::TokenExpired => "Token expired",
            AuthError::MissingAudClaim => "Missing aud claim",
            AuthError::UnknownAudience => "Unkown audience",
            AuthError::TokenRevoked => "Token revoked",
        }
    }
}

/// Extracts the token from the values of an authorization header: exactly one value, which must
/// start with `Bearer ` (case-sensitive, one space), as Neurow requires.
pub fn bearer_token<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Result<&'a str, AuthError> {
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AuthError::InvalidAuthorizationHeader);
    };
    value
        .strip_prefix(b"Bearer ")
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or(AuthError::InvalidAuthorizationHeader)
}

/// Verifies tokens for one API.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: AuthConfig,
    max_lifetime_s: i64,
    revocations: Arc<Revocations>,
}

impl Verifier {
    /// A verifier for an API with these issuers and this maximum token lifetime, that knows of
    /// no revocation.
    pub fn new(config: AuthConfig, max_lifetime_s: u64) -> Self {
        Verifier::with_revocations(config, max_lifetime_s, Arc::new(Revocations::new(max_lifetime_s)))
    }

    /// As [`Verifier::new`], refusing the tokens `revocations` names (the node's set).
    pub fn with_revocations(config: AuthConfig, max_lifetime_s: u64, revocations: Arc<Revocations>) -> Self {
        Verifier {
            config,
            max_lifetime_s: max_lifetime_s.min(i64::MAX as u64) as i64,
            revocations,
        }
    }

    /// The revocations it refuses.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The API's issuers and audience.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Checks `token` at `now_s` (seconds since the epoch).
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Principal, AuthError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(AuthError::InvalidJwtToken)?;
        let (header_b64, payload_b64) = signed.split_once('.').ok_or(AuthError::InvalidJwtToken)?;
        let header = decode_json_object(header_b64)?;
        let claims = decode_json_object(payload_b64)?;

        let issuer_name = claims.get("iss").ok_or(AuthError::MissingIssClaim)?;
        let issuer = issuer_name
            .as_str()
            .and_then(|n| self.config.issuer(n))
            .ok_or(AuthError::UnknownIssuer)?;

        if !verify_signature(issuer, &header, signed, signature) {
            return Err(AuthError::InvalidSignature);
        }

        let (Some(exp), Some(iat)) = (integer_claim(&claims, "exp"), integer_claim(&claims, "iat")) else {
            return Err(AuthError::InvalidExpIatClaim);
        };
        if exp <= iat {
            return Err(AuthError::InvalidExpIatClaim);
        }
        if exp - iat > i128::from(self.max_lifetime_s) {
            return Err(AuthError::TooLongLifetime);
        }
        if exp <= i128::from(now_s) {
            return Err(AuthError::TokenExpired);
        }

        let audience = claims.get("aud").ok_or(AuthError::MissingAudClaim)?;
        if audience.as_str() != Some(self.config.audience.as_str()) {
            return Err(AuthError::UnknownAudience);
        }

        let string_claim = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let principal = Principal {
            issuer: issuer.name.clone(),
            subject: string_claim("sub"),
            token_id: string_claim("jti"),
            session: string_claim("sid"),
            expires_at_s: exp.min(i128::from(i64::MAX)) as i64,
            grants: Grants::from_claims(&claims),
        };
        // Last: a revoked token is otherwise a good one.
        if self.revocations.refuses(&principal, now_s) {
            return Err(AuthError::TokenRevoked);
        }
        Ok(principal)
    }
}

/// Whether `signature` over `signed` is the issuer's, by the `alg` and `kid` of `header`.
///
/// An issuer with only secrets accepts its HMAC algorithms (HS256 unless configured), as
/// Neurow's `verify_strict(["HS256"])` does. An HMAC `alg` verifies against secrets only and
/// an asymmetric one against public keys only, each allowing that `alg`; `none` and unknown
/// names verify nothing. A token with a `kid` is checked against the keys of that `kid` and the
/// keys without one; nothing else in the header (`jku`, `x5u`, `jwk`) is ever used.
fn verify_signature(issuer: &Issuer, header: &Map<String, Value>, signed: &str, signature: &str) -> bool {
    let Some(alg) = header.get("alg").and_then(Value::as_str).and_then(algorithm) else {
        return false;
    };
    let verify = |key: &jsonwebtoken::DecodingKey| {
        jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, alg).unwrap_or(false)
    };
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return issuer.hmac_algorithms.contains(&alg) && issuer.secrets.iter().any(|s| verify(s.decoding_key()));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return false,
    };
    let fetched = issuer.jwks.as_ref().map(|j| j.keys());
    let keys = || issuer.keys.iter().chain(fetched.iter().flat_map(|k| k.iter()));
    if let (Some(jwks), Some(kid)) = (&issuer.jwks, kid)
        && !keys().any(|k| k.kid.as_deref() == Some(kid))
    {
        // Perhaps a key the provider published since the last fetch (rate-limited).
        jwks.ask_refetch();
    }
    keys()
        .filter(|k| k.algorithms.contains(&alg))
        .filter(|k| k.kid.is_none() || kid.is_none() || k.kid.as_deref() == kid)
        .any(|k| verify(&k.key))
}

fn decode_json_object(b64: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| AuthError::InvalidJwtToken)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::InvalidJwtToken),
    }
}

/// An integer claim; floats and strings are not integers (Elixir's `is_integer`).
fn integer_claim(claims: &Map<String, Value>, name: &str) -> Option<i128> {
    let n = claims.get(name)?.as_number()?;
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::development_auth;
    use crate::auth::token::{TokenRequest, sign_claims};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn verifier() -> Verifier {
        Verifier::new(development_auth().0, 120)
    }

    fn sign(claims: Value, secret: &str) -> String {
        sign_claims(&claims, secret.as_bytes())
    }

    const S1: &str = "966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc";

    fn good() -> Value {
        json!({"iss":"test_issuer1","sub":"t","aud":"public_api","iat":NOW,"exp":NOW+60})
    }

    fn with(mut v: Value, key: &str, val: Value) -> Value {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = val;
        }
        v
    }

    #[test]
    fn accepts_a_good_token() {
        let p = verifier().verify(&sign(good(), S1), NOW).unwrap();
        assert_eq!(&*p.issuer, "test_issuer1");
        assert_eq!(p.subject.as_deref(), Some("t"));
        assert_eq!(p.expires_at_s, NOW + 60);
    }

    #[test]
    fn each_check_fails_with_neurows_code_in_neurows_order() {
        let v = verifier();
        let cases: Vec<(String, AuthError)> = vec![
            ("not-a-token".into(), AuthError::InvalidJwtToken),
            ("a.b".into(), AuthError::InvalidJwtToken),
            (
                format!("{}.e30", URL_SAFE_NO_PAD.encode("{}")),
                AuthError::InvalidJwtToken,
            ),
            (sign(with(good(), "iss", Value::Null), S1), AuthError::MissingIssClaim),
            (sign(with(good(), "iss", json!("nobody")), S1), AuthError::UnknownIssuer),
            (sign(with(good(), "iss", json!(5)), S1), AuthError::UnknownIssuer),
            (sign(good(), "wrong-secret"), AuthError::InvalidSignature),
            // The signature is checked before the claims: an expired token with a bad signature
            // is a bad signature.
            (
                sign(with(good(), "exp", json!(NOW - 5)), "wrong"),
                AuthError::InvalidSignature,
            ),
            (
                sign(with(good(), "exp", Value::Null), S1),
                AuthError::InvalidExpIatClaim,
            ),
            (
                sign(with(good(), "exp", json!(1.5e9)), S1),
                AuthError::InvalidExpIatClaim,
            ),
            (sign(with(good(), "iat", json!("0")), S1), AuthError::InvalidExpIatClaim),
            (sign(with(good(), "exp", json!(NOW)), S1), AuthError::InvalidExpIatClaim),
            (
                sign(with(good(), "exp", json!(NOW + 121)), S1),
                AuthError::TooLongLifetime,
            ),
            (
                sign(with(with(good(), "iat", json!(NOW - 100)), "exp", json!(NOW)), S1),
                AuthError::TokenExpired,
            ),
            (sign(with(good(), "aud", Value::Null), S1), AuthError::MissingAudClaim),
            (
                sign(with(good(), "aud", json!("internal_api")), S1),
                AuthError::UnknownAudience,
            ),
            (
                sign(with(good(), "aud", json!(["public_api"])), S1),
                AuthError::UnknownAudience,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(v.verify(&token, NOW), Err(expected), "token {token}");
        }
    }

    #[test]
    fn only_hs256_is_accepted() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(good().to_string());
        let token = format!("{header}.{payload}.");
        assert_eq!(verifier().verify(&token, NOW), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn any_secret_of_a_rotated_issuer_verifies() {
        use crate::auth::keys::{AuthConfig, Issuer, Secret};
        let config = AuthConfig::new(
            "public_api",
            vec![Issuer::with_secrets(
                "test_issuer1",
                vec![Secret::new("old"), Secret::new(S1)],
            )],
        );
        assert!(Verifier::new(config, 120).verify(&sign(good(), S1), NOW).is_ok());
    }

    #[test]
    fn bearer_header_must_be_exact_and_single() {
        assert_eq!(bearer_token([&b"Bearer abc"[..]].into_iter()), Ok("abc"));
        for bad in [&b"bearer abc"[..], b"Bearer", b"Basic abc", b"Bearerabc"] {
            assert_eq!(
                bearer_token([bad].into_iter()),
                Err(AuthError::InvalidAuthorizationHeader)
            );
        }
        assert_eq!(
            bearer_token(std::iter::empty()),
            Err(AuthError::InvalidAuthorizationHeader)
        );
        assert_eq!(
            bearer_token([&b"Bearer a"[..], b"Bearer b"].into_iter()),
            Err(AuthError::InvalidAuthorizationHeader)
        );
    }

    #[test]
    fn quiet_mode_hides_403_details_but_not_401() {
        assert_eq!(
            AuthError::TokenExpired.client_view(false).0,
            "invalid_authentication_token"
        );
        assert_eq!(AuthError::TokenExpired.client_view(true).0, "token_expired");
        assert_eq!(AuthError::InvalidJwtToken.client_view(false).0, "invalid_jwt_token");
    }

    #[test]
    fn generated_tokens_verify() {
        let (public, _) = development_auth();
        let token = TokenRequest {
            issuer: "test_issuer1".into(),
            subject: Some("t".into()),
            lifetime_s: 120,
            ..Default::default()
        }
        .sign(&public, NOW)
        .unwrap();
        assert!(verifier().verify(&token, NOW + 119).is_ok());
        assert_eq!(verifier().verify(&token, NOW + 120), Err(AuthError::TokenExpired));
    }
}
