//! Collections of events (docs/collections.md), one contract run against both stores — the
//! embedded SQLite and a private PostgreSQL — with the real binary: inserts published at once or
//! at their time on the collection's topic, cancel, the log read back, events due while the node
//! was down, acknowledged inserts surviving `kill -9`, precise 400s, a newer schema refused, and
//! two nodes sharing PostgreSQL firing each scheduled event once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::redis::RedisServer;
use common::{DEADLINE, Herald, Next, Response, Sse, eventually, pub_token, request, temp_dir};
use serde_json::{Value, json};

const ISSUER: &str = "test_issuer1";

/// Where a node keeps its store.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(Postgres),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(temp_dir("store"))
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Db::Sqlite(dir) => vec![("DATA_DIR", dir.to_str().unwrap().to_owned())],
            Db::Postgres(pg) => vec![("DATABASE_URL", pg.url.clone())],
        }
    }

    fn start(&self, extra: &[(&str, &str)]) -> Herald {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(extra);
        Herald::start_with(&all)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn call(herald: &Herald, method: &str, path: &str, body: &str) -> Response {
    request(
        herald.internal,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            pub_token(ISSUER),
            body.len()
        ),
    )
}

fn insert(herald: &Herald, collection: &str, body: Value) -> Value {
    let r = call(
        herald,
        "POST",
        &format!("/v2/collections/{collection}/events"),
        &body.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// A v2 stream on a collection's topic (a token granted `collections/*`).
fn watch(herald: &Herald, collection: &str) -> Sse {
    let token = herald::auth::token::TokenRequest {
        issuer: ISSUER.into(),
        subject: None,
        lifetime_s: 120,
        topics: vec!["collections/*".into()],
        roles: vec![],
    }
    .sign(&herald::auth::keys::development_auth().0, common::now_s())
    .unwrap();
    let mut sse = Sse::open(
        herald.public,
        "GET",
        &format!("/v2/subscribe?topic=collections/{collection}"),
        &token,
        "",
    );
    assert_eq!(sse.response.status, 200);
    sse.next_event(); // the opening cursor
    sse
}

/// The stored events a stream delivers: (event name, payload as JSON).
fn next_stored(sse: &mut Sse) -> (String, Value) {
    let chunk = sse.next_message();
    let data = chunk.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let envelope: Value = serde_json::from_str(data).unwrap();
    let payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
    let event = chunk
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .unwrap()
        .to_owned();
    (event, payload)
}

fn contract(db: Db) {
    let herald = db.start(&[]);
    let mut sse = watch(&herald, "orders");

    // At once: stored durably, then published with its own id.
    let stored = insert(&herald, "orders", json!({"event": "created", "data": {"n": 1}}));
    assert_eq!(stored["state"], "pending");
    assert_eq!(stored["collection"], "orders");
    let (name, payload) = next_stored(&mut sse);
    assert_eq!(name, "created");
    assert_eq!(payload["id"], stored["id"]);
    assert_eq!(payload["data"], json!({"n": 1}));

    // Later: fires at its time; a cancelled one never does.
    let at = now_ms() + 800;
    let later = insert(
        &herald,
        "orders",
        json!({"event": "later", "data": 2, "publish_at": at}),
    );
    let never = insert(
        &herald,
        "orders",
        json!({"event": "never", "data": 3, "publish_at": at}),
    );
    let id = never["id"].as_str().unwrap();
    let r = call(
        &herald,
        "POST",
        &format!("/v2/collections/orders/events/{id}/cancel"),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled");
    let (name, payload) = next_stored(&mut sse);
    let fired = now_ms();
    assert_eq!((name.as_str(), &payload["id"]), ("later", &later["id"]));
    assert!(fired >= at, "fired {} ms early", at - fired);
    assert!(payload["published_at"].as_i64().unwrap() >= at);
    sse.expect_silence(Duration::from_millis(300));
    // Cancelling what fired is a conflict; an unknown id is 404, a malformed one 400.
    let id = later["id"].as_str().unwrap();
    let r = call(
        &herald,
        "POST",
        &format!("/v2/collections/orders/events/{id}/cancel"),
        "",
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["error_code"], "already_published");
    let unknown = "01a23c35-82d8-77b7-8bf8-618b64e776b2";
    assert_eq!(
        call(
            &herald,
            "POST",
            &format!("/v2/collections/orders/events/{unknown}/cancel"),
            ""
        )
        .status,
        404
    );
    assert_eq!(
        call(&herald, "GET", "/v2/collections/orders/events/nope", "").status,
        400
    );

    // The log, by publish time, in pages, by state.
    for i in 0..5 {
        insert(
            &herald,
            "log",
            json!({"event": "e", "data": i, "publish_at": now_ms() - 10_000 + i}),
        );
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let r = call(
            &herald,
            "GET",
            &format!("/v2/collections/log/events?limit=2{after}"),
            "",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["data"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let cancelled = call(&herald, "GET", "/v2/collections/orders/events?state=cancelled", "").json();
    assert_eq!(cancelled["events"].as_array().unwrap().len(), 1);
    eventually("every log event published", || {
        call(&herald, "GET", "/v2/collections/log/events?state=pending", "").json()["events"]
            .as_array()
            .unwrap()
            .is_empty()
    });

    // Bad input: a precise 400, nothing stored.
    for (path, body, code) in [
        ("/v2/collections/orders/events", "{", "invalid_event"),
        ("/v2/collections/orders/events", r#"{"data":1}"#, "invalid_event"),
        (
            "/v2/collections/orders/events",
            r#"{"event":"e","data":1,"publish_at":"soon"}"#,
            "invalid_publish_at",
        ),
        (
            "/v2/collections/orders/events",
            r#"{"event":"e","data":1,"extra":1}"#,
            "invalid_event",
        ),
        (
            "/v2/collections/bad%20name/events",
            r#"{"event":"e","data":1}"#,
            "invalid_collection",
        ),
    ] {
        let r = call(&herald, "POST", path, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["error_code"], code, "{body}");
    }
    for query in ["state=lost", "limit=0", "limit=1001", "after=garbage", "sort=desc"] {
        let r = call(&herald, "GET", &format!("/v2/collections/orders/events?{query}"), "");
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
    assert_eq!(
        call(&herald, "GET", "/v2/collections/orders/events", "").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Without a token: 401, as every internal route.
    let r = request(
        herald.internal,
        "GET /v2/collections/orders/events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn the_contract_holds_on_sqlite() {
    contract(Db::sqlite());
}

#[test]
fn the_contract_holds_on_postgres() {
    contract(Db::Postgres(Postgres::start()));
}

/// Events due while the node was down fire right after it starts, in due order; acknowledged
/// inserts survive `kill -9`.
fn survives_a_kill(db: Db) {
    let mut herald = db.start(&[]);
    let at = now_ms() + 1_000;
    let due: Vec<String> = (0..3)
        .map(|i| {
            insert(&herald, "late", json!({"event": "e", "data": i, "publish_at": at + i}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Concurrent inserts, killed midway: every one answered 201 is there afterwards.
    let (internal, token) = (herald.internal, pub_token(ISSUER));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0..1000 {
                    let body = json!({"event": "bulk", "data": [w, i]}).to_string();
                    let raw = format!(
                        "POST /v2/collections/bulk/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let Ok(mut s) = std::net::TcpStream::connect(internal) else { break };
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    if s.write_all(raw.as_bytes()).is_err() {
                        break;
                    }
                    let mut answer = Vec::new();
                    let _ = s.read_to_end(&mut answer);
                    let answer = String::from_utf8_lossy(&answer).into_owned();
                    if !answer.starts_with("HTTP/1.1 201") {
                        break;
                    }
                    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
                    acknowledged.push(json["id"].as_str().unwrap().to_owned());
                }
                acknowledged
            })
        })
        .collect();
    eventually("some inserts acknowledged", || {
        call(&herald, "GET", "/v2/collections/bulk/events?limit=50", "").json()["events"]
            .as_array()
            .is_some_and(|e| e.len() >= 50)
    });
    herald.kill();
    let acknowledged: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(!acknowledged.is_empty());
    // Down past the scheduled events' time.
    std::thread::sleep(Duration::from_millis((at + 100 - now_ms()).max(0) as u64));
    let herald = db.start(&[]);
    let mut stored = std::collections::HashSet::new();
    let mut after = String::new();
    loop {
        let page = call(
            &herald,
            "GET",
            &format!("/v2/collections/bulk/events?limit=1000{after}"),
            "",
        )
        .json();
        stored.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let lost: Vec<_> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged inserts lost",
        lost.len(),
        acknowledged.len()
    );
    eventually("the late events to fire", || {
        let page = call(&herald, "GET", "/v2/collections/late/events", "").json();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "published")
    });
    let page = call(&herald, "GET", "/v2/collections/late/events", "").json();
    let events = page["events"].as_array().unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, due.iter().map(String::as_str).collect::<Vec<_>>());
    let fired: Vec<i64> = events.iter().map(|e| e["published_at"].as_i64().unwrap()).collect();
    assert!(fired.windows(2).all(|w| w[0] <= w[1]), "in due order: {fired:?}");
    assert!(fired[0] > at, "marked with when they actually fired");
}

#[test]
fn sqlite_survives_a_kill() {
    survives_a_kill(Db::sqlite());
}

#[test]
fn postgres_survives_a_kill() {
    survives_a_kill(Db::Postgres(Postgres::start()));
}

#[test]
fn a_store_from_a_newer_herald_stops_start_up() {
    let db = Db::Postgres(Postgres::start());
    drop(db.start(&[]));
    let Db::Postgres(pg) = &db else { unreachable!() };
    pg.psql("INSERT INTO herald_schema (version) VALUES (99)");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &pg.url)
        .env("PUBLIC_API_PORT", "0")
        .env("INTERNAL_API_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("schema version 99, newer than this Herald's"), "{text}");
    assert!(text.contains("postgres://herald@127.0.0.1"), "{text}");
    // An unreachable database is named too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://herald:pw@127.0.0.1:1/nowhere")
        .env("PUBLIC_API_PORT", "0")
        .env("INTERNAL_API_PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("cannot open the store at postgres://herald:***@127.0.0.1:1/nowhere"),
        "{text}"
    );
    assert!(!text.contains(":pw@"), "{text}");
}

#[test]
fn a_corrupt_or_unwritable_sqlite_file_stops_start_up_naming_it() {
    let dir = temp_dir("corrupt");
    std::fs::write(dir.join("herald.db"), vec![0x5a; 8192]).unwrap();
    let serve = |data_dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .env_clear()
            .env("DATA_DIR", data_dir)
            .env("PUBLIC_API_PORT", "0")
            .env("INTERNAL_API_PORT", "0")
            .output()
            .unwrap()
    };
    let out = serve(&dir);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        text.contains(&format!("cannot open the store at {}", dir.join("herald.db").display())),
        "{text}"
    );
    // A DATA_DIR that cannot be created.
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = serve(&file.join("sub"));
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(text.contains("set DATA_DIR"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_nodes_on_one_postgres_fire_each_scheduled_event_once() {
    let pg = Postgres::start();
    let redis = RedisServer::start();
    let db = Db::Postgres(pg);
    let a = db.start(&[("REDIS_URL", &redis.url())]);
    let b = db.start(&[("REDIS_URL", &redis.url())]);
    let mut sse = watch(&a, "many");
    let at = now_ms() + 4_000;
    let n: usize = 1000;
    for i in 0..n {
        let node = if i % 2 == 0 { &a } else { &b };
        insert(
            node,
            "many",
            json!({"event": "e", "data": i, "publish_at": at + (i % 50) as i64}),
        );
    }
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + DEADLINE;
    while delivered.len() < n && Instant::now() < deadline {
        if let Next::Chunk(chunk) = sse.next_within(Duration::from_millis(200)) {
            if chunk.starts_with("event: ping") {
                continue;
            }
            let data = chunk.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let envelope: Value = serde_json::from_str(data).unwrap();
            let payload: Value = serde_json::from_str(envelope["payload"].as_str().unwrap()).unwrap();
            *delivered.entry(payload["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(delivered.len(), n, "every event fired");
    sse.expect_silence(Duration::from_millis(500));
    let twice: Vec<_> = delivered.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "fired more than once: {twice:?}");
}

/// `POST` a JSON body to the public API, with a token if given.
fn public(herald: &Herald, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    request(
        herald.public,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn login(herald: &Herald, username: &str, password: &str) -> Response {
    public(
        herald,
        "POST",
        "/v2/login",
        None,
        &json!({"username": username, "password": password}).to_string(),
    )
}

fn accounts_and_ownership(db: Db) {
    let herald = db.start(&[("ACCOUNTS_SIGNUP", "open")]);
    let signup = |name: &str| {
        public(
            &herald,
            "POST",
            "/v2/users",
            None,
            &json!({"username": name, "password": "correct horse"}).to_string(),
        )
    };
    let r = signup("Alice");
    assert_eq!(r.status, 201, "{}", r.text());
    let alice_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["username"], "alice", "usernames are case-insensitive");
    assert_eq!(signup("alice").status, 409);
    assert_eq!(signup("bob").status, 201);
    for (body, code) in [
        (
            json!({"username": "al", "password": "correct horse"}),
            "invalid_username",
        ),
        (
            json!({"username": "a b c", "password": "correct horse"}),
            "invalid_username",
        ),
        (json!({"username": "carol", "password": "short"}), "invalid_password"),
        (json!({"username": "carol"}), "invalid_password"),
        (
            json!({"username": "carol", "password": "correct horse", "admin": true}),
            "invalid_body",
        ),
    ] {
        let r = public(&herald, "POST", "/v2/users", None, &body.to_string());
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["errors"][0]["error_code"], code, "{body}");
    }

    // Login: a token the public API accepts, whose sub is the user's id; an unknown user and a
    // wrong password get the same answer.
    let r = login(&herald, "ALICE", "correct horse");
    assert_eq!(r.status, 200, "{}", r.text());
    let alice = r.json()["token"].as_str().unwrap().to_owned();
    let bob = login(&herald, "bob", "correct horse").json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = login(&herald, "alice", "wrong horse!");
    let unknown = login(&herald, "nobody", "correct horse");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);

    // Alice owns what she creates; Bob can neither read nor write it.
    let r = public(
        &herald,
        "POST",
        "/v2/collections/diary/events",
        Some(&alice),
        r#"{"event":"note","data":"hi"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["user_id"], alice_id);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        public(&herald, "GET", "/v2/collections/diary/events", Some(&alice), "").status,
        200
    );
    for (method, path, body) in [
        ("GET", "/v2/collections/diary/events".to_owned(), ""),
        ("GET", format!("/v2/collections/diary/events/{id}"), ""),
        (
            "POST",
            "/v2/collections/diary/events".to_owned(),
            r#"{"event":"x","data":1}"#,
        ),
        ("POST", format!("/v2/collections/diary/events/{id}/cancel"), ""),
    ] {
        let r = public(&herald, method, &path, Some(&bob), body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["error_code"], "not_owner");
    }
    let mine = public(&herald, "GET", "/v2/users/me/events", Some(&alice), "").json();
    assert_eq!(mine["events"].as_array().unwrap().len(), 1);
    assert!(
        public(&herald, "GET", "/v2/users/me/events", Some(&bob), "").json()["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Without a token, or with a bad one.
    assert_eq!(public(&herald, "GET", "/v2/users/me/events", None, "").status, 401);
    // A backend reads and writes every collection of its namespace.
    assert_eq!(call(&herald, "GET", "/v2/collections/diary/events", "").status, 200);

    // Failed logins are throttled per account: 429 with retry-after, even with the right password.
    for _ in 0..5 {
        assert_eq!(login(&herald, "bob", "wrong horse!").status, 401);
    }
    let r = login(&herald, "bob", "correct horse");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    assert_eq!(
        login(&herald, "alice", "correct horse").status,
        200,
        "another account is not locked out"
    );
}

#[test]
fn accounts_and_ownership_on_sqlite() {
    accounts_and_ownership(Db::sqlite());
}

#[test]
fn accounts_and_ownership_on_postgres() {
    accounts_and_ownership(Db::Postgres(Postgres::start()));
}

#[test]
fn signup_is_closed_unless_opened_and_a_backend_creates_accounts() {
    let db = Db::sqlite();
    let herald = db.start(&[]);
    let body = json!({"username": "dave", "password": "correct horse"}).to_string();
    let r = public(&herald, "POST", "/v2/users", None, &body);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["error_code"], "signup_closed");
    let r = call(&herald, "POST", "/v2/users", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(login(&herald, "dave", "correct horse").status, 200);
}

fn publish_with_key(herald: &Herald, key: &str, topic: &str, payload: &str) -> Response {
    let body = json!({"topic": topic, "message": {"event": "e", "payload": payload}}).to_string();
    request(
        herald.internal,
        &format!(
            "POST /v1/publish HTTP/1.1\r\nhost: x\r\nauthorization: ApiKey {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn api_keys_publish_into_their_domain_until_disabled_or_deleted() {
    let db = Db::sqlite();
    let herald = db.start(&[]);
    // The domain is test_issuer2's namespace, so its tokens read what the key publishes.
    let r = call(
        &herald,
        "POST",
        "/v2/apikeys",
        r#"{"domain":"test_issuer2","username":"ops@example.com"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert!(key.starts_with("hk_") && created["prefix"].as_str().is_some_and(|p| key.starts_with(p)));
    assert_eq!(
        call(&herald, "POST", "/v2/apikeys", r#"{"domain":"test_issuer2"}"#).status,
        409
    );
    assert_eq!(
        call(&herald, "POST", "/v2/apikeys", r#"{"domain":"bad domain"}"#).status,
        400
    );
    let listed = call(&herald, "GET", "/v2/apikeys", "").json();
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&key), "the secret is never listed");

    let mut sse = herald.subscribe(&common::sub_token("test_issuer2", "alerts"), "");
    assert_eq!(sse.response.status, 200);
    assert_eq!(publish_with_key(&herald, &key, "alerts", "via key").status, 200);
    assert!(sse.next_message().contains("data: via key"));

    let off = call(&herald, "PATCH", &format!("/v2/apikeys/{id}"), r#"{"active":false}"#);
    assert_eq!(off.status, 200, "{}", off.text());
    assert_eq!(off.json()["active"], false);
    let r = publish_with_key(&herald, &key, "alerts", "refused");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errors"][0]["error_code"], "invalid_api_key");
    assert_eq!(
        call(&herald, "PATCH", &format!("/v2/apikeys/{id}"), r#"{"active":true}"#).status,
        200
    );
    assert_eq!(publish_with_key(&herald, &key, "alerts", "again").status, 200);
    assert_eq!(call(&herald, "DELETE", &format!("/v2/apikeys/{id}"), "").status, 204);
    assert_eq!(publish_with_key(&herald, &key, "alerts", "gone").status, 401);
    assert_eq!(call(&herald, "DELETE", &format!("/v2/apikeys/{id}"), "").status, 404);
    assert_eq!(publish_with_key(&herald, "hk_nonsense", "alerts", "x").status, 401);
    drop(herald);

    // The same from the command line, on the same store.
    let cli = |args: &[&str]| {
        let env = db.env();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("apikey").args(args).env_clear();
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = cli(&["create", "--domain", "billing"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("hk_"), "{secret}");
    let listed = String::from_utf8(cli(&["list"]).stdout).unwrap();
    assert!(
        listed.contains("billing") && listed.contains("active") && !listed.contains(&secret),
        "{listed}"
    );
    let id = listed.split_whitespace().next().unwrap().to_owned();
    assert!(cli(&["disable", &id]).status.success());
    assert!(String::from_utf8(cli(&["list"]).stdout).unwrap().contains("disabled"));
    assert!(cli(&["delete", &id]).status.success());
    assert_eq!(cli(&["delete", &id]).status.code(), Some(2));
}

#[test]
fn latest_on_connect_gives_each_event_names_latest_then_live_on_every_transport() {
    let db = Db::sqlite();
    let herald = db.start(&[]);
    let mut watching = watch(&herald, "prices");
    for (event, data) in [("eur", 1), ("usd", 2), ("eur", 3), ("gbp", 4), ("usd", 5)] {
        insert(&herald, "prices", json!({"event": event, "data": data}));
    }
    for _ in 0..5 {
        next_stored(&mut watching);
    }
    let token = herald::auth::token::TokenRequest {
        issuer: ISSUER.into(),
        subject: None,
        lifetime_s: 120,
        topics: vec!["collections/*".into()],
        roles: vec![],
    }
    .sign(&herald::auth::keys::development_auth().0, common::now_s())
    .unwrap();
    let latest = |pairs: &[(String, Value)]| -> Vec<(String, i64)> {
        pairs
            .iter()
            .map(|(e, p)| (e.clone(), p["data"].as_i64().unwrap()))
            .collect()
    };
    let expected = vec![("eur".to_owned(), 3), ("gbp".to_owned(), 4), ("usd".to_owned(), 5)];

    // SSE: the latest of each name, then live; the cursor after them resumes with nothing new.
    let mut sse = Sse::open(
        herald.public,
        "GET",
        "/v2/subscribe?topic=collections/prices&latest=1",
        &token,
        "",
    );
    assert_eq!(sse.response.status, 200);
    let opening = sse.next_event();
    let got: Vec<(String, Value)> = (0..3).map(|_| next_stored(&mut sse)).collect();
    assert_eq!(latest(&got), expected);
    insert(&herald, "prices", json!({"event": "eur", "data": 6}));
    assert_eq!(next_stored(&mut sse).1["data"], 6);
    let cursor = opening.trim().strip_prefix("id: ").unwrap().to_owned();
    // Resuming with a cursor: the replay (what came after it), not the latest.
    let mut resumed = Sse::open(
        herald.public,
        "GET",
        "/v2/subscribe?topic=collections/prices&latest=1",
        &token,
        &format!("last-event-id: {cursor}\r\n"),
    );
    resumed.next_event();
    let replayed = next_stored(&mut resumed);
    assert_eq!(replayed.1["data"], 6);
    resumed.expect_silence(Duration::from_millis(300));

    // Long-poll without a cursor: the latest at once.
    let r = request(
        herald.public,
        &format!(
            "GET /v2/poll?topic=collections/prices&latest=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let polled: Vec<(String, i64)> = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p: Value = serde_json::from_str(m["payload"].as_str().unwrap()).unwrap();
            (m["event"].as_str().unwrap().to_owned(), p["data"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        polled,
        vec![("gbp".to_owned(), 4), ("usd".to_owned(), 5), ("eur".to_owned(), 6)]
    );

    // WebSocket: subscribe with "latest": true.
    let stream = std::net::TcpStream::connect(herald.public).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let url = format!("ws://{}/v2/ws?access_token={token}", herald.public);
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
    ws.send(tungstenite::Message::text(
        json!({"op": "subscribe", "id": 1, "topics": ["collections/prices"], "latest": true}).to_string(),
    ))
    .unwrap();
    let mut names = Vec::new();
    while names.len() < 3 {
        let tungstenite::Message::Text(t) = ws.read().unwrap() else {
            continue;
        };
        let frame: Value = serde_json::from_str(t.as_str()).unwrap();
        if frame["op"] == "msg" {
            let p: Value = serde_json::from_str(frame["payload"].as_str().unwrap()).unwrap();
            names.push((frame["event"].as_str().unwrap().to_owned(), p["data"].as_i64().unwrap()));
        }
    }
    assert_eq!(
        names,
        vec![("gbp".to_owned(), 4), ("usd".to_owned(), 5), ("eur".to_owned(), 6)]
    );
    // A bad value is refused.
    let r = request(
        herald.public,
        &format!(
            "GET /v2/poll?topic=collections/prices&latest=yes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn the_command_line_adds_users_and_api_keys_insert_into_their_domains_collections() {
    use std::io::Write;
    let db = Db::sqlite();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["user", "add", "--username", "Erin"])
        .env_clear()
        .envs(db.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let herald = db.start(&[]);
    let r = login(&herald, "erin", "correct horse");
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = r.json()["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["iss"], ISSUER);

    // An API key inserts into its domain's collections.
    let key = call(&herald, "POST", "/v2/apikeys", r#"{"domain":"test_issuer1"}"#).json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = r#"{"event":"e","data":1}"#;
    let r = request(
        herald.internal,
        &format!(
            "POST /v2/collections/keyed/events HTTP/1.1\r\nhost: x\r\nauthorization: ApiKey {key}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        call(&herald, "GET", "/v2/collections/keyed/events", "").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
