//! HTTPS on the public API (`SSL_CERTFILE`, `SSL_KEYFILE`) with a certificate made at test time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::tls::*;
use common::*;

#[test]
fn subscriptions_work_over_https_with_the_same_bytes() {
    let cert = Cert::new("ok");
    let h = start_tls(&cert, &[]);
    assert!(
        h.logs()
            .iter()
            .any(|l| l.contains("public API listening") && l.contains("scheme=https"))
    );
    let mut client = tls_client(&h, &cert, &[]);
    let token = sub_token("test_issuer1", "secure");
    write!(
        client,
        "GET /v1/subscribe HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let head = read_until(&mut client, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"));
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"secure","message":{"event":"e","payload":"over tls","timestamp":5}}"#,
    );
    let expected = event(5, "e", "over tls");
    let body = read_until(&mut client, &expected);
    assert!(
        body.contains(&format!("{:x}\r\n{expected}\r\n", expected.len())),
        "one chunk per event: {body:?}"
    );
}

#[test]
fn plain_http_to_an_https_port_gets_nothing_and_the_node_survives() {
    let cert = Cert::new("plain");
    let h = start_tls(&cert, &[]);
    let mut plain = TcpStream::connect(h.public).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"GET /v1/subscribe HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    let mut client = tls_client(&h, &cert, &[]);
    write!(
        client,
        "OPTIONS / HTTP/1.1\r\norigin: http://localhost\r\naccess-control-request-headers: authorization\r\n\r\n"
    )
    .unwrap();
    assert!(read_until(&mut client, "\r\n\r\n").starts_with("HTTP/1.1 204"));
}

#[test]
fn unusable_certificate_files_stop_start_up_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("PUBLIC_API_PORT", "0")
        .env("INTERNAL_API_PORT", "0")
        .env("SSL_CERTFILE", "/nonexistent/cert.pem")
        .env("SSL_KEYFILE", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SSL_CERTFILE=\"/nonexistent/cert.pem\""), "{err}");
}
