//! Issuers, their shared secrets and public keys, and the audience each API expects.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::jwks::{JwksSource, JwksUrl};
use super::public_keys::{KeyError, PublicKey, algorithm};

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

/// One issuer and the keys that may sign its tokens (several allow key rotation).
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The `iss` claim value.
    pub name: Arc<str>,
    /// Shared secrets: any of these verifies an HMAC signature; the first signs `herald token`.
    pub secrets: Vec<Secret>,
    /// The HMAC algorithms the secrets allow (Neurow's `HS256` unless configured).
    pub hmac_algorithms: Vec<Algorithm>,
    /// Public keys (RSA, EC, Ed25519), chosen by the token's `kid`.
    pub keys: Vec<PublicKey>,
    /// A key set fetched from a URL (`jwks_url`), besides `keys`.
    pub jwks: Option<Arc<JwksSource>>,
}

impl Issuer {
    /// An issuer with shared secrets only, verifying HS256 as Neurow does.
    pub fn with_secrets(name: &str, secrets: Vec<Secret>) -> Issuer {
        Issuer {
            name: name.into(),
            secrets,
            hmac_algorithms: vec![Algorithm::HS256],
            keys: Vec::new(),
            jwks: None,
        }
    }
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
    /// An issuer with neither a secret nor a key.
    #[error("issuer {0:?} needs secrets or keys")]
    NoKeys(String),
    /// A public key that cannot be used.
    #[error("issuer {issuer:?}, key {index}: {error}")]
    BadKey {
        /// The issuer.
        issuer: String,
        /// Which key of its list (from 0).
        index: usize,
        /// Why.
        error: KeyError,
    },
    /// An HMAC algorithm name that is not one.
    #[error("issuer {0:?}: hmac_algorithms may list HS256, HS384 and HS512 only")]
    BadHmacAlgorithm(String),
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
    Keys(IssuerKeys),
}

/// An issuer written as an object: secrets, public keys, or both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerKeys {
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    hmac_algorithms: Vec<String>,
    #[serde(default)]
    keys: Vec<KeyJson>,
    /// A JWKS document on disk, read at start.
    #[serde(default)]
    jwks_file: Option<String>,
    #[serde(default)]
    jwks_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    pem: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    algorithms: Vec<String>,
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
        let issuer = match &parsed.clients[&name] {
            Secrets::One(s) => secrets_only(&name, std::slice::from_ref(s))?,
            Secrets::Many(v) => secrets_only(&name, v)?,
            Secrets::Keys(keys) => issuer_of_keys(&name, keys)?,
        };
        issuers.push(issuer);
    }
    Ok(AuthConfig::new(parsed.service_name, issuers))
}

/// Neurow's form: shared secrets, HS256.
fn secrets_only(name: &str, secrets: &[String]) -> Result<Issuer, JwtConfigError> {
    if name.is_empty() || secrets.is_empty() || secrets.iter().any(String::is_empty) {
        return Err(JwtConfigError::BadSecret(name.to_owned()));
    }
    Ok(Issuer::with_secrets(
        name,
        secrets.iter().map(|s| Secret::new(s)).collect(),
    ))
}

/// Herald's form: `{"secrets": […], "hmac_algorithms": […], "keys": [{"pem", "kid", "algorithms"}]}`.
fn issuer_of_keys(name: &str, spec: &IssuerKeys) -> Result<Issuer, JwtConfigError> {
    if name.is_empty() || spec.secrets.iter().any(String::is_empty) {
        return Err(JwtConfigError::BadSecret(name.to_owned()));
    }
    if spec.secrets.is_empty() && spec.keys.is_empty() && spec.jwks_file.is_none() && spec.jwks_url.is_none() {
        return Err(JwtConfigError::NoKeys(name.to_owned()));
    }
    let hmac_algorithms = if spec.hmac_algorithms.is_empty() {
        vec![Algorithm::HS256]
    } else {
        spec.hmac_algorithms
            .iter()
            .map(|a| {
                algorithm(a)
                    .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
                    .ok_or_else(|| JwtConfigError::BadHmacAlgorithm(name.to_owned()))
            })
            .collect::<Result<_, _>>()?
    };
    let keys = spec
        .keys
        .iter()
        .enumerate()
        .map(|(index, k)| {
            PublicKey::from_pem(&k.pem, k.kid.clone(), &k.algorithms).map_err(|error| JwtConfigError::BadKey {
                issuer: name.to_owned(),
                index,
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys = keys;
    if let Some(path) = &spec.jwks_file {
        let bad = |error: KeyError| JwtConfigError::BadKey {
            issuer: name.to_owned(),
            index: keys.len(),
            error,
        };
        let json =
            std::fs::read_to_string(path).map_err(|e| bad(KeyError::Jwks(format!("cannot read {path}: {e}"))))?;
        let loaded = super::public_keys::from_jwks(&json).map_err(bad)?;
        if loaded.is_empty() {
            return Err(bad(KeyError::Jwks(format!("{path} holds no signing key"))));
        }
        keys.extend(loaded);
    }
    let jwks = match &spec.jwks_url {
        None => None,
        Some(url) => Some(Arc::new(JwksSource::new(JwksUrl::parse(url).map_err(|error| {
            JwtConfigError::BadKey {
                issuer: name.to_owned(),
                index: keys.len(),
                error,
            }
        })?))),
    };
    Ok(Issuer {
        name: name.into(),
        secrets: spec.secrets.iter().map(|s| Secret::new(s)).collect(),
        hmac_algorithms,
        keys,
        jwks,
    })
}

/// Neurow's development issuers (spec §5): public knowledge, for local use only.
pub fn development_auth() -> (AuthConfig, AuthConfig) {
    let issuer = |name: &str, secret: &str| Issuer::with_secrets(name, vec![Secret::new(secret)]);
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
