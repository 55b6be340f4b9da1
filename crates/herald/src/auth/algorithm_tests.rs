//! Every algorithm against keys generated here, and every refusal of a token's `alg` or `kid`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, RsaKeySize};
use serde_json::json;

use super::keys::{JwtConfigError, parse_jwt_config};
use super::public_keys::KeyError;
use super::{AuthError, Verifier};

const NOW: i64 = 1_800_000_000;

struct Pair {
    public_pem: String,
    private_pem: String,
    raw_public: Vec<u8>,
}

fn rsa() -> Pair {
    let k = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    Pair {
        public_pem: k.public_key_pem(),
        private_pem: k.serialize_pem(),
        raw_public: k.public_key_raw().to_vec(),
    }
}

fn generated(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    let k = KeyPair::generate_for(alg).unwrap();
    Pair {
        public_pem: k.public_key_pem(),
        private_pem: k.serialize_pem(),
        raw_public: k.public_key_raw().to_vec(),
    }
}

fn encoding_key(alg: Algorithm, pair: &Pair) -> EncodingKey {
    let pem = pair.private_pem.as_bytes();
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        _ => unreachable!("asymmetric algorithms only"),
    }
}

fn claims() -> serde_json::Value {
    json!({"iss": "idp", "aud": "public_api", "iat": NOW - 10, "exp": NOW + 60, "sub": "u1"})
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims(), key).unwrap()
}

fn verifier(issuer: serde_json::Value) -> Verifier {
    let config = json!({"service_name": "public_api", "clients": {"idp": issuer}}).to_string();
    Verifier::new(parse_jwt_config(&config).unwrap(), 3600)
}

#[test]
fn every_asymmetric_algorithm_verifies_against_its_key() {
    let rsa = rsa();
    let p256 = generated(&PKCS_ECDSA_P256_SHA256);
    let p384 = generated(&PKCS_ECDSA_P384_SHA384);
    let ed = generated(&PKCS_ED25519);
    let v = verifier(json!({"keys": [
        {"pem": rsa.public_pem},
        {"pem": p256.public_pem},
        {"pem": p384.public_pem},
        {"pem": ed.public_pem},
    ]}));
    for (alg, pair) in [
        (Algorithm::RS256, &rsa),
        (Algorithm::RS384, &rsa),
        (Algorithm::RS512, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::PS384, &rsa),
        (Algorithm::PS512, &rsa),
        (Algorithm::ES256, &p256),
        (Algorithm::ES384, &p384),
        (Algorithm::EdDSA, &ed),
    ] {
        let t = token(alg, None, &encoding_key(alg, pair));
        let p = v.verify(&t, NOW).unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!((&*p.issuer, p.subject.as_deref()), ("idp", Some("u1")));
    }
}

#[test]
fn hmac_algorithms_are_the_secrets_and_only_those_configured() {
    let v = verifier(json!({"secrets": ["s3cret"], "hmac_algorithms": ["HS256", "HS512"]}));
    let key = EncodingKey::from_secret(b"s3cret");
    assert!(v.verify(&token(Algorithm::HS512, None, &key), NOW).is_ok());
    assert!(v.verify(&token(Algorithm::HS256, None, &key), NOW).is_ok());
    assert_eq!(
        v.verify(&token(Algorithm::HS384, None, &key), NOW).unwrap_err(),
        AuthError::InvalidSignature
    );
    // Neurow's form allows HS256 only.
    let neurow = verifier(json!("s3cret"));
    assert!(neurow.verify(&token(Algorithm::HS256, None, &key), NOW).is_ok());
    assert_eq!(
        neurow.verify(&token(Algorithm::HS512, None, &key), NOW).unwrap_err(),
        AuthError::InvalidSignature
    );
}

#[test]
fn alg_confusion_none_and_foreign_keys_are_refused() {
    let rsa = rsa();
    let v = verifier(json!({"keys": [{"pem": rsa.public_pem, "kid": "k1", "algorithms": ["RS256"]}]}));
    let signing = encoding_key(Algorithm::RS256, &rsa);
    assert!(v.verify(&token(Algorithm::RS256, Some("k1"), &signing), NOW).is_ok());
    // An algorithm the key does not allow (PS256 is RSA, but not configured).
    let ps = token(Algorithm::PS256, Some("k1"), &encoding_key(Algorithm::PS256, &rsa));
    assert_eq!(v.verify(&ps, NOW).unwrap_err(), AuthError::InvalidSignature);
    // HMAC with the public key's bytes as the secret: the classic confusion.
    let confused = token(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    );
    assert_eq!(v.verify(&confused, NOW).unwrap_err(), AuthError::InvalidSignature);
    // `none`, unsigned.
    let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64_url(claims().to_string().as_bytes());
    assert_eq!(
        v.verify(&format!("{header}.{payload}."), NOW).unwrap_err(),
        AuthError::InvalidSignature
    );
    // Another kid, or a key the token brings along (jwk/jku are never used).
    assert_eq!(
        v.verify(&token(Algorithm::RS256, Some("k2"), &signing), NOW)
            .unwrap_err(),
        AuthError::InvalidSignature
    );
    let other = rsa_pair_token_with_embedded_jwk();
    assert_eq!(v.verify(&other, NOW).unwrap_err(), AuthError::InvalidSignature);
}

/// A token signed by a key of its own, which it names in `jku` and `x5u`.
fn rsa_pair_token_with_embedded_jwk() -> String {
    let mine = rsa();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.jku = Some("https://attacker.example/jwks.json".into());
    header.x5u = Some("https://attacker.example/cert.pem".into());
    encode(&header, &claims(), &encoding_key(Algorithm::RS256, &mine)).unwrap()
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn keys_that_cannot_be_used_refuse_to_load() {
    let parse = |issuer: serde_json::Value| {
        parse_jwt_config(&json!({"service_name": "public_api", "clients": {"idp": issuer}}).to_string())
    };
    // A 1024-bit RSA key (a public key: nothing secret here).
    let weak = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDX7Mq6bSrX9Y8VAE2chdaYNj9U\nIe9S2NFw1UiAJuxFxbY+RPubkFKHBbL5+uNhC6WUdOZ5V3qsSWaxriqo67nedh6n\nHL51IwbdZYrOwuIsl4ZwT71Eiminh1HkjAqr78vW8H5qeA+FUMTzCGxzE9S25xjw\nRwaKqYNl66+8Zh9KEQIDAQAB\n-----END PUBLIC KEY-----\n";
    assert!(matches!(
        parse(json!({"keys": [{"pem": weak}]})).unwrap_err(),
        JwtConfigError::BadKey {
            error: KeyError::WeakRsa(1024),
            ..
        }
    ));
    assert!(matches!(
        parse(json!({"keys": [{"pem": "not a key"}]})).unwrap_err(),
        JwtConfigError::BadKey {
            error: KeyError::Unreadable,
            ..
        }
    ));
    let ec = generated(&PKCS_ECDSA_P256_SHA256);
    assert!(matches!(
        parse(json!({"keys": [{"pem": ec.public_pem, "algorithms": ["RS256"]}]})).unwrap_err(),
        JwtConfigError::BadKey {
            error: KeyError::Algorithm(_),
            ..
        }
    ));
    assert!(matches!(
        parse(json!({"keys": [{"pem": ec.public_pem, "algorithms": ["none"]}]})).unwrap_err(),
        JwtConfigError::BadKey {
            error: KeyError::Algorithm(_),
            ..
        }
    ));
    assert_eq!(parse(json!({})).unwrap_err(), JwtConfigError::NoKeys("idp".into()));
    assert_eq!(
        parse(json!({"secrets": ["s"], "hmac_algorithms": ["RS256"]})).unwrap_err(),
        JwtConfigError::BadHmacAlgorithm("idp".into())
    );
    assert!(matches!(
        parse(json!({"secret": "typo"})).unwrap_err(),
        JwtConfigError::Malformed(_)
    ));
}

#[test]
fn a_jwks_file_gives_keys_by_kid() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    let rsa = rsa();
    let ec = generated(&PKCS_ECDSA_P256_SHA256);
    let ed = generated(&PKCS_ED25519);
    let jwk = |alg: Algorithm, pair: &Pair, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, pair), alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    };
    let set = JwkSet {
        keys: vec![jwk(Algorithm::RS256, &rsa, "r"), jwk(Algorithm::ES256, &ec, "e")],
    };
    let mut set = serde_json::to_value(&set).unwrap();
    // jsonwebtoken cannot make an Ed25519 JWK from a PKCS#8 key: written by hand (RFC 8037).
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": base64_url(&ed.raw_public)}));
    let dir = std::env::temp_dir().join(format!("herald-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keys.json");
    std::fs::write(&path, set.to_string()).unwrap();
    let v = verifier(json!({"jwks_file": path}));
    for (alg, pair, kid) in [
        (Algorithm::RS256, &rsa, "r"),
        (Algorithm::ES256, &ec, "e"),
        (Algorithm::EdDSA, &ed, "d"),
    ] {
        assert!(
            v.verify(&token(alg, Some(kid), &encoding_key(alg, pair)), NOW).is_ok(),
            "{alg:?}"
        );
    }
    // A JWK's alg is the only one it allows; a kid of another key does not verify.
    let rs384 = token(Algorithm::RS384, Some("r"), &encoding_key(Algorithm::RS384, &rsa));
    assert_eq!(v.verify(&rs384, NOW).unwrap_err(), AuthError::InvalidSignature);
    let wrong = token(Algorithm::ES256, Some("r"), &encoding_key(Algorithm::ES256, &ec));
    assert_eq!(v.verify(&wrong, NOW).unwrap_err(), AuthError::InvalidSignature);
    // A missing file, a symmetric key and a document that is not a JWKS refuse to load.
    let parse = |issuer: serde_json::Value| {
        parse_jwt_config(&json!({"service_name": "public_api", "clients": {"idp": issuer}}).to_string())
    };
    assert!(parse(json!({"jwks_file": dir.join("missing.json")})).is_err());
    std::fs::write(&path, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    assert!(matches!(
        parse(json!({"jwks_file": path})).unwrap_err(),
        JwtConfigError::BadKey {
            error: KeyError::Jwks(_),
            ..
        }
    ));
    std::fs::write(&path, "[]").unwrap();
    assert!(parse(json!({"jwks_file": path})).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
