//! Issuers' public keys (RSA, EC, Ed25519) and the algorithms each allows.
//!
//! A token's `alg` must be one its key allows, and the key is chosen by the issuer and the
//! token's `kid` only, never by anything else the token says (`jku`, `x5u`, an embedded `jwk`):
//! otherwise a token could bring its own key. HMAC algorithms verify against the issuer's shared
//! secrets only, never against a public key (the classic confusion where a public key's bytes
//! become an HMAC secret).

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey};

/// Smallest RSA modulus accepted, in bits (NIST SP 800-57: 2048 bits through 2030).
pub const MIN_RSA_BITS: usize = 2048;

/// The family of a key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512 and PS256/384/512.
    Rsa,
    /// EC P-256 or P-384: ES256 or ES384.
    Ec,
    /// Ed25519: EdDSA.
    Ed,
}

impl KeyKind {
    /// The algorithms a key of this kind may verify when the configuration names none.
    pub fn default_algorithms(self) -> Vec<Algorithm> {
        match self {
            KeyKind::Rsa => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyKind::Ec => vec![Algorithm::ES256, Algorithm::ES384],
            KeyKind::Ed => vec![Algorithm::EdDSA],
        }
    }

    /// Whether `alg` is of this kind.
    pub fn fits(self, alg: Algorithm) -> bool {
        self.default_algorithms().contains(&alg)
    }
}

/// One public key of an issuer.
#[derive(Clone)]
pub struct PublicKey {
    /// The `kid` it is published under, if any.
    pub kid: Option<String>,
    /// Its family.
    pub kind: KeyKind,
    /// The algorithms it may verify.
    pub algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM public key of a supported kind.
    #[error("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)")]
    Unreadable,
    /// An RSA key shorter than [`MIN_RSA_BITS`].
    #[error("an RSA key of {0} bits; at least 2048 are required")]
    WeakRsa(usize),
    /// An algorithm this key cannot verify, or not an algorithm at all.
    #[error("algorithm {0:?} does not fit this key")]
    Algorithm(String),
    /// A JWKS document that cannot be used.
    #[error("JWKS: {0}")]
    Jwks(String),
}

/// Parses an algorithm name as a JWT header carries it (`RS256`, `ES384`, `EdDSA`, …); `none`
/// and unknown names are `None`.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>().ok()
}

impl PublicKey {
    /// A key from a PEM `PUBLIC KEY` (or `RSA PUBLIC KEY`) block, allowed `algorithms` (its
    /// kind's when empty).
    pub fn from_pem(pem: &str, kid: Option<String>, algorithms: &[String]) -> Result<PublicKey, KeyError> {
        let bytes = pem.as_bytes();
        let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
            let bits = rsa_modulus_bits(key.try_get_as_bytes().unwrap_or_default()).ok_or(KeyError::Unreadable)?;
            if bits < MIN_RSA_BITS {
                return Err(KeyError::WeakRsa(bits));
            }
            (KeyKind::Rsa, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
            (KeyKind::Ec, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
            (KeyKind::Ed, key)
        } else {
            return Err(KeyError::Unreadable);
        };
        let algorithms = if algorithms.is_empty() {
            kind.default_algorithms()
        } else {
            algorithms
                .iter()
                .map(|name| {
                    algorithm(name)
                        .filter(|a| kind.fits(*a))
                        .ok_or_else(|| KeyError::Algorithm(name.clone()))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(PublicKey {
            kid,
            kind,
            algorithms,
            key,
        })
    }
}

/// Loads the signing keys of a JWKS document (RFC 7517). Keys marked for encryption (`use`
/// `enc`) are left out; a symmetric (`oct`) key, an unsupported curve, a weak RSA key or an
/// `alg` that does not fit its key refuses the whole set.
pub fn from_jwks(json: &str) -> Result<Vec<PublicKey>, KeyError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
    let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    rsa.n.trim_end_matches('='),
                )
                .map_err(|_| KeyError::Jwks("an RSA key's n is not base64url".into()))?;
                let significant: Vec<u8> = n.into_iter().skip_while(|&b| b == 0).collect();
                let bits = significant
                    .first()
                    .map_or(0, |&b| significant.len() * 8 - b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::WeakRsa(bits));
                }
                KeyKind::Rsa
            }
            AlgorithmParameters::EllipticCurve(ec) if matches!(ec.curve, EllipticCurve::P256 | EllipticCurve::P384) => {
                KeyKind::Ec
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => KeyKind::Ed,
            _ => {
                return Err(KeyError::Jwks(
                    "only RSA, EC P-256/P-384 and Ed25519 signing keys are supported".into(),
                ));
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwks(format!("unusable key: {e}")))?;
        let algorithms = match &jwk.common.key_algorithm {
            None => kind.default_algorithms(),
            Some(a) => {
                let name = format!("{a:?}");
                vec![
                    algorithm(&name)
                        .filter(|a| kind.fits(*a))
                        .ok_or(KeyError::Algorithm(name))?,
                ]
            }
        };
        keys.push(PublicKey {
            kid: jwk.common.key_id.clone(),
            kind,
            algorithms,
            key,
        });
    }
    Ok(keys)
}

/// The length in bits of the modulus of a PKCS#1 `RSAPublicKey` (DER: a SEQUENCE whose first
/// INTEGER is the modulus). Reads two length fields; the key itself is parsed and used by
/// jsonwebtoken, which does not say its size.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    fn length(bytes: &[u8]) -> Option<(usize, &[u8])> {
        let (&first, rest) = bytes.split_first()?;
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        Some((len, &rest[n..]))
    }
    let rest = der.strip_prefix(&[0x30])?;
    let (_, rest) = length(rest)?;
    let rest = rest.strip_prefix(&[0x02])?;
    let (len, rest) = length(rest)?;
    let modulus = rest.get(..len)?;
    let significant: Vec<u8> = modulus.iter().copied().skip_while(|&b| b == 0).collect();
    let first = *significant.first()?;
    Some(significant.len() * 8 - first.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modulus_length_is_read_from_pkcs1() {
        // SEQUENCE { INTEGER 0x00 0x80 … (2048 bits), INTEGER 65537 }
        let mut der = vec![0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01, 0x00, 0x80];
        der.extend(std::iter::repeat_n(1u8, 255));
        der.extend([0x02, 0x03, 1, 0, 1]);
        assert_eq!(rsa_modulus_bits(&der), Some(2048));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x03, 0x02, 0x01, 0x7f]), Some(7));
        assert_eq!(rsa_modulus_bits(&[0x31]), None);
        assert_eq!(rsa_modulus_bits(&[]), None);
    }

    #[test]
    fn algorithms_must_fit_the_key_and_none_is_no_algorithm() {
        assert_eq!(algorithm("none"), None);
        assert_eq!(algorithm("RS256"), Some(Algorithm::RS256));
        assert!(KeyKind::Rsa.fits(Algorithm::PS512));
        assert!(!KeyKind::Rsa.fits(Algorithm::HS256));
        assert!(!KeyKind::Ec.fits(Algorithm::EdDSA));
    }
}
