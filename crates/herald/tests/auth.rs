//! Authentication on both APIs (spec §1.2, §2.1) and CORS preflights (§1.5).

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use herald::auth::token::sign_claims;
use serde_json::json;

const PUBLIC_SECRET: &str = "966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc";

fn claims(exp_offset: i64) -> serde_json::Value {
    let now = now_s();
    json!({"iss":"test_issuer1","sub":"t","aud":"public_api","iat":now,"exp":now+exp_offset})
}

fn subscribe_with(h: &Herald, authorization: Option<&str>) -> Response {
    let auth = authorization
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    request(
        h.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\norigin: https://app.example\r\n{auth}\r\n"),
    )
}

fn error_of(r: &Response) -> (u16, String) {
    let body = r.text();
    let data = body
        .split("data: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no data in {body:?}"));
    let v: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
    (r.status, v["errors"][0]["error_code"].as_str().unwrap().to_owned())
}

#[test]
fn public_auth_errors_in_quiet_mode() {
    let h = Herald::start();
    let r = subscribe_with(&h, None);
    assert_eq!(error_of(&r), (401, "invalid_authorization_header".into()));
    assert_eq!(r.header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert!(r.text().starts_with("id:"));
    assert!(r.text().contains("\nevent: neurow_error_401\n"));
    assert_eq!(
        error_of(&subscribe_with(&h, Some("Bearer nope"))),
        (401, "invalid_jwt_token".into())
    );
    assert_eq!(
        error_of(&subscribe_with(&h, Some("bearer x.y.z"))),
        (401, "invalid_authorization_header".into())
    );
    // Every 403 reads the same without VERBOSE_AUTHENTICATION_ERRORS.
    let wrong_secret = sign_claims(&claims(60), b"wrong");
    let r = subscribe_with(&h, Some(&format!("Bearer {wrong_secret}")));
    assert_eq!(error_of(&r), (403, "invalid_authentication_token".into()));
    assert!(r.text().contains("\nevent: neurow_error_403\n"));
}

#[test]
fn public_auth_errors_in_verbose_mode_follow_neurows_order() {
    let h = Herald::start_with(&[("VERBOSE_AUTHENTICATION_ERRORS", "true")]);
    let mut c = claims(60);
    c.as_object_mut().unwrap().remove("iss");
    let cases = vec![
        (sign_claims(&c, PUBLIC_SECRET.as_bytes()), "missing_iss_claim"),
        (
            sign_claims(&json!({"iss":"nobody","aud":"public_api"}), PUBLIC_SECRET.as_bytes()),
            "unknown_issuer",
        ),
        (sign_claims(&claims(60), b"wrong"), "invalid_signature"),
        (sign_claims(&claims(121), PUBLIC_SECRET.as_bytes()), "too_long_lifetime"),
        (
            sign_claims(
                &json!({"iss":"test_issuer1","aud":"public_api","iat":now_s()-100,"exp":now_s()-1}),
                PUBLIC_SECRET.as_bytes(),
            ),
            "token_expired",
        ),
        (
            sign_claims(
                &json!({"iss":"test_issuer1","sub":"t","aud":"internal_api","iat":now_s(),"exp":now_s()+60}),
                PUBLIC_SECRET.as_bytes(),
            ),
            "unknwon_audience",
        ),
        (
            sign_claims(
                &json!({"iss":"test_issuer1","sub":"t","iat":now_s(),"exp":now_s()+60}),
                PUBLIC_SECRET.as_bytes(),
            ),
            "missing_aud_claim",
        ),
        (
            sign_claims(
                &json!({"iss":"test_issuer1","sub":"t","aud":"public_api"}),
                PUBLIC_SECRET.as_bytes(),
            ),
            "invalid_exp_iat_claim",
        ),
    ];
    for (token, code) in cases {
        assert_eq!(
            error_of(&subscribe_with(&h, Some(&format!("Bearer {token}")))),
            (403, code.into())
        );
    }
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(60).to_string())
    );
    assert_eq!(
        error_of(&subscribe_with(&h, Some(&format!("Bearer {alg_none}")))),
        (403, "invalid_signature".into())
    );
}

#[test]
fn a_token_without_sub_gets_a_plain_400() {
    let h = Herald::start();
    let mut c = claims(60);
    c.as_object_mut().unwrap().remove("sub");
    let r = subscribe_with(
        &h,
        Some(&format!("Bearer {}", sign_claims(&c, PUBLIC_SECRET.as_bytes()))),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "Expected JWT claims are missing");
}

#[test]
fn every_public_path_needs_a_token_and_unknown_ones_are_404() {
    let h = Herald::start();
    assert_eq!(request(h.public, "GET /anything HTTP/1.1\r\n\r\n").status, 401);
    let token = sub_token("test_issuer1", "t");
    let r = request(
        h.public,
        &format!("GET /anything HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = request(
        h.public,
        &format!("GET /v1/subscribe/ HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!(r.status, 404, "a trailing slash is another path, as in Neurow");
    let r = request(
        h.public,
        &format!("PUT /v1/subscribe HTTP/1.1\r\nauthorization: Bearer {token}\r\n\r\n"),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn preflights_check_the_origin_against_the_allowed_pattern() {
    let h = Herald::start_with(&[
        ("PUBLIC_API_ALLOWED_ORIGINS", r"https://([a-z]+\.)?example\.com"),
        ("PREFLIGHT_MAX_AGE", "600"),
    ]);
    let preflight = |headers: &str| request(h.public, &format!("OPTIONS /v1/subscribe HTTP/1.1\r\n{headers}\r\n"));
    let ok = preflight(
        "origin: https://app.example.com\r\naccess-control-request-headers: authorization, last-event-id\r\n",
    );
    assert_eq!(ok.status, 204);
    assert_eq!(ok.header("access-control-allow-methods").as_deref(), Some("GET"));
    assert_eq!(
        ok.header("access-control-allow-headers").as_deref(),
        Some("authorization, last-event-id")
    );
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-max-age").as_deref(), Some("600"));
    let bad_origin =
        preflight("origin: https://example.com.evil.org\r\naccess-control-request-headers: authorization\r\n");
    assert_eq!(
        (bad_origin.status, bad_origin.text()),
        (400, "Origin is not allowed".into())
    );
    let incomplete = preflight("origin: https://app.example.com\r\n");
    assert_eq!(
        (incomplete.status, incomplete.text()),
        (400, "Invalid preflight request".into())
    );
}

#[test]
fn the_default_origins_are_local_development_ones() {
    let h = Herald::start();
    let preflight = |origin: &str| {
        request(
            h.public,
            &format!(
                "OPTIONS /x HTTP/1.1\r\norigin: {origin}\r\naccess-control-request-headers: authorization\r\n\r\n"
            ),
        )
        .status
    };
    assert_eq!(preflight("http://localhost:5173"), 204);
    assert_eq!(preflight("https://127.0.0.1"), 204);
    assert_eq!(preflight("https://www.doctolib.fr"), 400);
}

/// An issuer configured with public keys: an RS256 subscriber on v1 and an ES256 publisher,
/// while the HS256 issuer beside it works as before and a token of the wrong kind is refused.
#[test]
fn issuers_with_rsa_and_ec_keys_authenticate_both_apis() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize};
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let config = json!({
        "service_name": "push",
        "clients": {
            "idp": {"keys": [
                {"kid": "r1", "pem": rsa.public_key_pem(), "algorithms": ["RS256"]},
                {"kid": "e1", "pem": ec.public_key_pem()},
            ]},
            "legacy": "a-shared-secret",
        }
    });
    let h = Herald::start_with(&[("JWT_CONFIG", &config.to_string())]);
    let now = now_s();
    let claims = |iss: &str| json!({"iss": iss, "sub": "t", "aud": "push", "iat": now, "exp": now + 60});
    let signed = |alg: Algorithm, kid: &str, key: &EncodingKey, iss: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        encode(&header, &claims(iss), key).unwrap()
    };
    let rsa_key = EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap();
    let subscriber = signed(Algorithm::RS256, "r1", &rsa_key, "idp");
    let mut sse = Sse::open_raw(
        h.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {subscriber}\r\n\r\n"),
    );
    assert_eq!(sse.response.status, 200, "{}", sse.response.head);
    let publisher = signed(Algorithm::ES256, "e1", &ec_key, "idp");
    let r = h.publish(
        &publisher,
        r#"{"topic":"t","message":{"event":"e","payload":"signed by EC"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(sse.next_message().contains("data: signed by EC"));
    // The RSA key allows RS256 only, and the EC key is under another kid.
    let ps = signed(Algorithm::PS256, "r1", &rsa_key, "idp");
    // Refused as any bad signature is (Neurow's 403).
    assert_eq!(subscribe_with(&h, Some(&format!("Bearer {ps}"))).status, 403);
    let wrong_kid = signed(Algorithm::ES256, "r1", &ec_key, "idp");
    assert_eq!(subscribe_with(&h, Some(&format!("Bearer {wrong_kid}"))).status, 403);
    let legacy = sign_claims(&claims("legacy"), b"a-shared-secret");
    let mut old = Sse::open_raw(
        h.public,
        &format!("GET /v1/subscribe HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {legacy}\r\n\r\n"),
    );
    assert_eq!(old.response.status, 200, "{}", old.response.head);
    drop(old.next_within(std::time::Duration::from_millis(10)));
}

#[test]
fn a_weak_rsa_key_refuses_to_start_naming_jwt_config() {
    let weak = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDX7Mq6bSrX9Y8VAE2chdaYNj9U\nIe9S2NFw1UiAJuxFxbY+RPubkFKHBbL5+uNhC6WUdOZ5V3qsSWaxriqo67nedh6n\nHL51IwbdZYrOwuIsl4ZwT71Eiminh1HkjAqr78vW8H5qeA+FUMTzCGxzE9S25xjw\nRwaKqYNl66+8Zh9KEQIDAQAB\n-----END PUBLIC KEY-----\n";
    let config = json!({"service_name": "push", "clients": {"idp": {"keys": [{"pem": weak}]}}});
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("JWT_CONFIG", config.to_string())
        .env("PUBLIC_API_PORT", "0")
        .env("INTERNAL_API_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("JWT_CONFIG") && stderr.contains("1024 bits"),
        "{stderr}"
    );
}
