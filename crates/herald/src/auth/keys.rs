//! Issuers, their shared secrets and the audience each API expects.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// A shared HMAC secret: the string's bytes are the key, as in Neurow (not base64-decoded).
#[derive(Clone)]
pub struct Secret {
    raw: Arc<[u8]>,
    key: DecodingKey,
}

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Self {
        Secret {
            raw: text.as_bytes().into(),
            key: DecodingKey::from_secret(text.as_bytes()),
        }
    }

    /// The key bytes, for signing.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One issuer and the secrets that may sign its tokens (several allow key rotation).
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The `iss` claim value.
    pub name: Arc<str>,
    /// Any of these verifies a signature; the first signs `herald token`.
    pub secrets: Vec<Secret>,
}

/// What one API accepts.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The `aud` claim a token must carry, exactly.
    pub audience: String,
    issuers: Vec<Issuer>,
    by_name: HashMap<Arc<str>, usize>,
}

impl AuthConfig {
    /// Builds the config; later duplicates of an issuer name replace earlier ones.
    pub fn new(audience: impl Into<String>, issuers: Vec<Issuer>) -> Self {
        let by_name = issuers
            .iter()
            .enumerate()
            .map(|(i, iss)| (iss.name.clone(), i))
            .collect();
        AuthConfig {
            audience: audience.into(),
            issuers,
            by_name,
        }
    }

    /// The issuer called `name`.
    pub fn issuer(&self, name: &str) -> Option<&Issuer> {
        self.by_name.get(name).map(|&i| &self.issuers[i])
    }

    /// Every issuer.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }
}

/// Why `JWT_CONFIG` was refused. Messages never include secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// Not JSON of the expected shape.
    #[error("not valid JSON of the expected shape ({0})")]
    Malformed(String),
    /// `service_name` is empty.
    #[error("\"service_name\" (the audience) must be a non-empty string")]
    EmptyAudience,
    /// No issuers.
    #[error("\"clients\" must name at least one issuer")]
    NoIssuers,
    /// An issuer without a usable secret.
    #[error("issuer {0:?} needs a non-empty secret or a non-empty list of non-empty secrets")]
    BadSecret(String),
}

#[derive(Deserialize)]
struct JwtConfigJson {
    service_name: String,
    clients: HashMap<String, Secrets>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Secrets {
    One(String),
    Many(Vec<String>),
}

/// Parses Neurow's `JWT_CONFIG`: one audience (`service_name`) and issuer list for both APIs.
pub fn parse_jwt_config(json: &str) -> Result<AuthConfig, JwtConfigError> {
    let parsed: JwtConfigJson = serde_json::from_str(json).map_err(|e| {
        // serde_json's message can quote input; keep only its category and position.
        JwtConfigError::Malformed(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if parsed.service_name.is_empty() {
        return Err(JwtConfigError::EmptyAudience);
    }
    if parsed.clients.is_empty() {
        return Err(JwtConfigError::NoIssuers);
    }
    let mut names: Vec<_> = parsed.clients.keys().cloned().collect();
    names.sort();
    let mut issuers = Vec::with_capacity(names.len());
    for name in names {
        let secrets = match &parsed.clients[&name] {
            Secrets::One(s) => vec![s.clone()],
            Secrets::Many(v) => v.clone(),
        };
        if name.is_empty() || secrets.is_empty() || secrets.iter().any(String::is_empty) {
            return Err(JwtConfigError::BadSecret(name));
        }
        issuers.push(Issuer {
            name: name.into(),
            secrets: secrets.iter().map(|s| Secret::new(s)).collect(),
        });
    }
    Ok(AuthConfig::new(parsed.service_name, issuers))
}

/// Neurow's development issuers (spec §5): public knowledge, for local use only.
pub fn development_auth() -> (AuthConfig, AuthConfig) {
    let issuer = |name: &str, secret: &str| Issuer {
        name: name.into(),
        secrets: vec![Secret::new(secret)],
    };
    let public = AuthConfig::new(
        "public_api",
        vec![
            issuer("test_issuer1", "966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc"),
            issuer("test_issuer2", "fu5E9VxCL8nhMG7jT4IXv3xarX8WIT7R-1pWFGm-sVw"),
        ],
    );
    let internal = AuthConfig::new(
        "internal_api",
        vec![
            issuer("test_issuer1", "nLjJdNLlpdv3W4Xk7MyVCAZKD-hvza6FQ4yhUUFnjmg"),
            issuer("test_issuer2", "3opQEJI3WK9ovGm9pHUQ6I3SkjlDYWZUeAUSazjv05g"),
        ],
    );
    (public, internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let (public, _) = development_auth();
        let dbg = format!("{public:?}");
        assert!(!dbg.contains("966KljJz"), "{dbg}");
    }

    #[test]
    fn rejects_configs_it_cannot_use() {
        assert_eq!(
            parse_jwt_config(r#"{"service_name":"","clients":{"a":"s"}}"#).unwrap_err(),
            JwtConfigError::EmptyAudience
        );
        assert_eq!(
            parse_jwt_config(r#"{"service_name":"x","clients":{}}"#).unwrap_err(),
            JwtConfigError::NoIssuers
        );
        assert_eq!(
            parse_jwt_config(r#"{"service_name":"x","clients":{"a":[]}}"#).unwrap_err(),
            JwtConfigError::BadSecret("a".into())
        );
        assert!(matches!(
            parse_jwt_config("[1]").unwrap_err(),
            JwtConfigError::Malformed(_)
        ));
        let e = parse_jwt_config(r#"{"service_name":"x","clients":{"a":"topsecret"},}"#).unwrap_err();
        assert!(!e.to_string().contains("topsecret"));
    }
}
