//! The command line: help, start-up errors and `herald token`.

mod common;

use std::process::Command;

use common::*;

fn herald(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn help_lists_every_setting_with_its_default() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let out = herald(args, &[]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for setting in herald::config::SETTINGS {
            assert!(text.contains(setting.name), "{} missing from {args:?}", setting.name);
        }
        assert!(text.contains("[default: 900000]"));
    }
}

#[test]
fn a_bad_variable_stops_start_up_and_is_named() {
    let out = herald(
        &["serve"],
        &[
            ("SSE_KEEPALIVE", "soon"),
            ("LOG_FORMAT", "XML"),
            ("JWT_CONFIG", "{\"oops\""),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("SSE_KEEPALIVE=\"soon\""), "{err}");
    assert!(err.contains("LOG_FORMAT=\"XML\": expected TEXT or ECS"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing is logged before the configuration is valid"
    );
    assert!(err.contains("JWT_CONFIG=\"***\""), "{err}");
}

#[test]
fn a_bad_redis_url_stops_start_up_and_is_named() {
    let out = herald(&["serve"], &[("REDIS_URL", "http://:secret@redis.example:6379")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("REDIS_URL=\"http://***@redis.example:6379\""), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = herald(
        &["serve"],
        &[
            ("PUBLIC_API_HOST", "127.0.0.1"),
            ("PUBLIC_API_PORT", &port),
            ("INTERNAL_API_PORT", "0"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("PUBLIC_API_PORT"), "{err}");
}

#[test]
fn generated_tokens_are_accepted_by_the_server() {
    let h = Herald::start_with(&[("PUBLIC_API_JWT_MAX_LIFETIME", "300")]);
    let public = herald(
        &["token", "--api", "public", "--issuer", "test_issuer2", "--topic", "cli"],
        &[("PUBLIC_API_JWT_MAX_LIFETIME", "300")],
    );
    assert!(public.status.success(), "{}", String::from_utf8_lossy(&public.stderr));
    let internal = herald(&["token", "--api", "internal", "--issuer", "test_issuer2"], &[]);
    assert!(internal.status.success());
    let sub = String::from_utf8(public.stdout).unwrap();
    let publisher = String::from_utf8(internal.stdout).unwrap();
    let mut s = h.subscribe(sub.trim(), "");
    assert_eq!(s.response.status, 200);
    let r = h.publish(
        publisher.trim(),
        r#"{"topic":"cli","message":{"event":"e","payload":"p","timestamp":1}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.next_event(), event(1, "e", "p"));
}

#[test]
fn token_signs_with_the_first_secret_of_a_configured_issuer() {
    let config = r#"{"service_name":"svc","clients":{"backend":["first","second"]}}"#;
    let out = herald(
        &["token", "--api", "internal", "--issuer", "backend"],
        &[("JWT_CONFIG", config)],
    );
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let verifier = herald::auth::Verifier::new(
        herald::config::Config::from_env(&std::collections::HashMap::from([(
            "JWT_CONFIG".to_owned(),
            config.to_owned(),
        )]))
        .unwrap()
        .auth
        .internal,
        1500,
    );
    let principal = verifier.verify(token.trim(), now_s()).unwrap();
    assert_eq!(&*principal.issuer, "backend");
    let unknown = herald(
        &["token", "--api", "internal", "--issuer", "nobody"],
        &[("JWT_CONFIG", config)],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8(unknown.stderr).unwrap().contains("backend"));
    let no_topic = herald(
        &["token", "--api", "public", "--issuer", "backend"],
        &[("JWT_CONFIG", config)],
    );
    assert_eq!(no_topic.status.code(), Some(2));
}

#[test]
fn token_grants_and_roles_become_claims_a_v2_stream_honours() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "token",
            "--api",
            "public",
            "--issuer",
            "test_issuer1",
            "--grant",
            "news",
            "--grant",
            "orders.*",
            "--role",
            "support",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let payload = token.trim().split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["topics"], serde_json::json!(["news", "orders.*"]));
    assert_eq!(claims["roles"], serde_json::json!(["support"]));
    assert!(claims.get("sub").is_none());
}
