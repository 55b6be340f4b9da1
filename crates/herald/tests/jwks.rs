//! Issuers whose keys come from a JWKS URL, against the real binary and a real HTTP(S) server
//! in the test serving key sets generated at test time: rotation without a restart (a new `kid`
//! fetched on first sight, a removed one refused after the refresh), the rate limit a flood of
//! bogus `kid`s meets, a provider outage (the last good set serves), a provider unreachable at
//! start, and https verified against `SSL_CERT_FILE`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Herald, eventually, metric, now_s, request};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

/// An EC P-256 signing key and its JWK under `kid`.
struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

fn key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    Key {
        kid: kid.to_owned(),
        encoding,
        jwk,
    }
}

fn set(keys: &[&Key]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

/// A token of issuer `idp` for topic `t`, signed by `key` under `kid`.
fn token_with_kid(key: &Key, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let now = now_s();
    encode(
        &header,
        &json!({"iss": "idp", "sub": "t", "aud": "push", "iat": now, "exp": now + 60}),
        &key.encoding,
    )
    .unwrap()
}

fn token(key: &Key) -> String {
    token_with_kid(key, &key.kid)
}

/// The status of a poll with `token` (200 accepted, 403 refused).
fn status(herald: &Herald, token: &str) -> u16 {
    request(
        herald.public,
        &format!(
            "GET /v2/poll?timeout=0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    )
    .status
}

/// An identity provider: answers every request with the current status and body, and counts them.
struct Provider {
    addr: SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Provider {
    fn start(body: String) -> Provider {
        Provider::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), body, None)
    }

    fn start_on(listener: TcpListener, body: String, tls: Option<Arc<rustls::ServerConfig>>) -> Provider {
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new((200, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, h, s) = (answer.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = stream else { continue };
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (status, body) = a.lock().unwrap().clone();
                h.fetch_add(1, Ordering::SeqCst);
                match &tls {
                    None => answer_one(tcp, status, &body),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                        answer_one(rustls::StreamOwned::new(conn, tcp), status, &body);
                    }
                }
            }
        });
        Provider {
            addr,
            answer,
            hits,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn serve(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer_one(mut stream: impl Read + Write, status: u16, body: &str) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn jwt_config(url: &str) -> String {
    json!({"service_name": "push", "clients": {"idp": {"jwks_url": url}, "legacy": "a-shared-secret"}}).to_string()
}

fn start(url: &str, refresh_s: u32) -> Herald {
    Herald::start_with(&[
        ("JWT_CONFIG", &jwt_config(url)),
        ("JWKS_REFRESH_INTERVAL", &refresh_s.to_string()),
        ("JWKS_MIN_REFETCH_INTERVAL", "1"),
    ])
}

#[test]
fn keys_rotate_without_a_restart_and_bogus_kids_cannot_hammer_the_provider() {
    let (k1, k2) = (key("k1"), key("k2"));
    let provider = Provider::start(set(&[&k1]));
    let herald = start(&provider.url(), 3);
    assert_eq!(status(&herald, &token(&k1)), 200);
    assert_eq!(metric(&herald, "herald_jwks_keys{issuer=\"idp\"}"), 1.0);

    // A new key, published: its first token asks for a fetch, and it is accepted without a
    // restart (sooner than the 3 s refresh).
    provider.serve(200, set(&[&k1, &k2]));
    let published = Instant::now();
    eventually("the new kid to be accepted", || status(&herald, &token(&k2)) == 200);
    assert!(
        published.elapsed() < Duration::from_millis(2500),
        "{:?}",
        published.elapsed()
    );

    // Fifty tokens naming unknown kids cost at most one fetch per JWKS_MIN_REFETCH_INTERVAL (1 s)
    // of the time they took, not fifty.
    let before = provider.hits();
    let flood = Instant::now();
    for i in 0..50 {
        assert_eq!(status(&herald, &token_with_kid(&k1, &format!("bogus-{i}"))), 403);
    }
    std::thread::sleep(Duration::from_secs(1).saturating_sub(flood.elapsed()));
    let fetched = provider.hits() - before;
    let allowed = flood.elapsed().as_secs() as usize + 2;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 50 unknown kids in {:?}",
        flood.elapsed()
    );

    // A key withdrawn: refused once the refresh has run.
    provider.serve(200, set(&[&k2]));
    eventually("the withdrawn kid to be refused", || {
        status(&herald, &token(&k1)) == 403
    });
    assert_eq!(status(&herald, &token(&k2)), 200);
    // The shared-secret issuer beside it is unaffected.
    let now = now_s();
    let legacy = herald::auth::token::sign_claims(
        &json!({"iss": "legacy", "sub": "t", "aud": "push", "iat": now, "exp": now + 60}),
        b"a-shared-secret",
    );
    assert_eq!(status(&herald, &legacy), 200);
}

#[test]
fn the_last_good_key_set_serves_while_the_provider_is_down() {
    let k1 = key("k1");
    let provider = Provider::start(set(&[&k1]));
    let herald = start(&provider.url(), 1);
    assert_eq!(status(&herald, &token(&k1)), 200);
    let errors = |h: &Herald| metric(h, "herald_jwks_fetches_total{issuer=\"idp\",result=\"error\"}");
    for (status_code, body) in [
        (503, "down".to_owned()),
        (200, "{\"not\": \"a jwks\"}".to_owned()),
        (200, set(&[])),
    ] {
        let before = errors(&herald);
        provider.serve(status_code, body);
        eventually("a failed refresh", || errors(&herald) > before);
        assert_eq!(status(&herald, &token(&k1)), 200, "after a {status_code} refresh");
    }
    assert_eq!(metric(&herald, "herald_jwks_keys{issuer=\"idp\"}"), 1.0);
    assert!(
        herald
            .logs()
            .iter()
            .any(|l| l.contains("cannot fetch the JWKS; the last good key set keeps serving")),
        "{:?}",
        herald.logs()
    );
}

#[test]
fn a_provider_unreachable_at_start_is_logged_and_its_tokens_wait_for_the_first_fetch() {
    let k1 = key("k1");
    // A port nothing listens on yet, on an address no client connection takes a port from (they
    // leave from 127.0.0.1), so it is still free when the provider starts.
    let listener = TcpListener::bind("127.0.0.3:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let herald = start(&format!("http://{addr}/jwks.json"), 300);
    assert!(
        herald
            .logs()
            .iter()
            .any(|l| l.contains("cannot fetch the issuer's JWKS at start")),
        "{:?}",
        herald.logs()
    );
    assert_eq!(status(&herald, &token(&k1)), 403);
    let mut listener = TcpListener::bind(addr);
    let deadline = Instant::now() + common::DEADLINE;
    while listener.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        listener = TcpListener::bind(addr);
    }
    let provider = Provider::start_on(listener.expect("the port is free again"), set(&[&k1]), None);
    eventually("the first fetch", || status(&herald, &token(&k1)) == 200);
    assert!(provider.hits() >= 1);
    assert!(herald.logs().iter().any(|l| l.contains("JWKS fetched again")));
}

#[test]
fn https_providers_are_verified_against_the_trust_store() {
    let cert = common::tls::Cert::new("jwks");
    let certs = vec![cert.der.clone()];
    let key_pem = std::fs::read(cert.dir.join("key.pem")).unwrap();
    let private =
        <rustls::pki_types::PrivateKeyDer as rustls::pki_types::pem::PemObject>::from_pem_slice(&key_pem).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .unwrap();
    let k1 = key("tls-k1");
    let provider = Provider::start_on(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        set(&[&k1]),
        Some(Arc::new(config)),
    );
    let url = format!("https://localhost:{}/jwks.json", provider.addr.port());
    let ca = cert.dir.join("cert.pem");
    let trusted = Herald::start_with(&[
        ("JWT_CONFIG", &jwt_config(&url)),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ]);
    assert_eq!(status(&trusted, &token(&k1)), 200);
    // Without the certificate in its trust store, the provider is not believed.
    let untrusted = Herald::start_with(&[("JWT_CONFIG", &jwt_config(&url))]);
    assert_eq!(status(&untrusted, &token(&k1)), 403);
    assert!(
        untrusted
            .logs()
            .iter()
            .any(|l| l.contains("cannot fetch the issuer's JWKS at start") && l.contains("TLS")),
        "{:?}",
        untrusted.logs()
    );
}

#[test]
fn a_bad_jwks_url_refuses_to_start_naming_jwt_config() {
    for url in ["ftp://idp/keys", "not a url", "https://user:pw@idp/keys"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .env_clear()
            .env("JWT_CONFIG", jwt_config(url))
            .env("PUBLIC_API_PORT", "0")
            .env("INTERNAL_API_PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(
            stderr.contains("JWT_CONFIG") && stderr.contains("jwks_url"),
            "{url}: {stderr}"
        );
    }
}
