//! HTTP/2 on the public API: negotiated through ALPN over TLS, with many SSE streams on one
//! connection, the same decisions and the same event bytes as HTTP/1.1. The client is the `h2`
//! crate, so the tests see every data frame as it was sent.

mod common;

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use common::tls::*;
use common::*;
use h2::client::SendRequest;
use hyper::{Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// One HTTP/2 connection to the public API. Its runtime drives the connection in the background,
/// so the blocking harness (publishing, metrics) runs between `block_on` calls.
struct H2Client {
    rt: Runtime,
    send: SendRequest<Bytes>,
    connection: Option<JoinHandle<Result<(), h2::Error>>>,
}

/// An SSE stream over HTTP/2.
struct H2Sse {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: h2::RecvStream,
    request: h2::SendStream<Bytes>,
}

impl H2Client {
    fn connect(h: &Herald, cert: &Cert) -> H2Client {
        H2Client::connect_with(h, cert, h2::client::Builder::new())
    }

    fn connect_with(h: &Herald, cert: &Cert, builder: h2::client::Builder) -> H2Client {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config = Arc::new(cert.client_config(&[b"h2", b"http/1.1"]));
        let addr = h.public;
        let (send, connection) = rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 through ALPN");
            let (send, connection) = builder.handshake(tls).await.unwrap();
            (send, tokio::spawn(connection))
        });
        H2Client {
            rt,
            send,
            connection: Some(connection),
        }
    }

    /// Sends a request (no body) and waits for the response head.
    fn request(&self, request: Request<()>) -> H2Sse {
        let send = self.send.clone();
        self.rt.block_on(async move {
            let within = tokio::time::timeout(DEADLINE, async move {
                let mut send = send.ready().await.unwrap();
                let (response, request_stream) = send.send_request(request, true).unwrap();
                let response = response.await.unwrap();
                assert_eq!(response.version(), hyper::Version::HTTP_2);
                let (parts, body) = response.into_parts();
                H2Sse {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                    request: request_stream,
                }
            });
            within.await.expect("a response head within the deadline")
        })
    }

    fn subscribe(&self, token: &str, extra: &[(&str, &str)]) -> H2Sse {
        let mut request =
            Request::get("https://localhost/v1/subscribe").header("authorization", format!("Bearer {token}"));
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.request(request.body(()).unwrap())
    }

    /// The next data frame of `stream`, or `None` when the stream ended.
    fn next_frame(&self, stream: &mut H2Sse) -> Option<String> {
        self.rt.block_on(async {
            let data = tokio::time::timeout(DEADLINE, stream.body.data())
                .await
                .expect("a data frame or the end within the deadline")?;
            let data = data.ok()?;
            let _ = stream.body.flow_control().release_capacity(data.len());
            Some(String::from_utf8(data.to_vec()).unwrap())
        })
    }

    /// The next data frame, which must be an event.
    fn next_event(&self, stream: &mut H2Sse) -> String {
        self.next_frame(stream).expect("an event, not the end of the stream")
    }

    /// The next event that is not a ping.
    fn next_message(&self, stream: &mut H2Sse) -> String {
        loop {
            let e = self.next_event(stream);
            if e != "event: ping\n\n" {
                return e;
            }
        }
    }

    /// The whole body of a short response.
    fn body(&self, stream: &mut H2Sse) -> String {
        let mut body = String::new();
        while let Some(frame) = self.next_frame(stream) {
            body.push_str(&frame);
        }
        body
    }

    /// Waits for the server to close the connection (after its GOAWAY).
    fn closed(&mut self) {
        let connection = self.connection.take().unwrap();
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(DEADLINE, connection).await })
            .expect("the server closes the connection within the deadline");
    }
}

fn publish(h: &Herald, topic: &str, event: &str, payload: &str, id: u64) {
    h.publish_ok(
        "test_issuer1",
        &format!(r#"{{"topic":"{topic}","message":{{"event":"{event}","payload":"{payload}","timestamp":{id}}}}}"#),
    );
}

/// The SSE body an HTTP/1.1-over-TLS subscriber gets, chunk by chunk.
fn http1_events(h: &Herald, cert: &Cert, token: &str, until: &str) -> String {
    let mut client = tls_client(h, cert, &[b"http/1.1"]);
    write!(
        client,
        "GET /v1/subscribe HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    read_until(&mut client, until)
}

#[test]
fn twenty_four_streams_share_one_connection_with_http1s_bytes() {
    let cert = Cert::new("h2-many");
    let h = start_tls(&cert, &[]);
    let client = H2Client::connect(&h, &cert);
    let mut streams: Vec<H2Sse> = (0..24)
        .map(|i| client.subscribe(&sub_token("test_issuer1", &format!("many{i}")), &[]))
        .collect();
    for s in &streams {
        assert_eq!(s.status, StatusCode::OK);
        assert_eq!(s.headers["content-type"], "text/event-stream");
        assert_eq!(s.headers["access-control-allow-origin"], "*");
        assert_eq!(
            s.headers["cache-control"],
            "no-cache, no-store, max-age=0, must-revalidate"
        );
        assert_eq!(s.headers["x-sse-timeout"], "900000");
        assert_eq!(s.headers["x-sse-keepalive"], "600000");
        assert_eq!(s.headers["x-accel-buffering"], "no");
        for hop_by_hop in ["connection", "transfer-encoding", "keep-alive"] {
            assert!(s.headers.get(hop_by_hop).is_none(), "{hop_by_hop}");
        }
    }
    eventually("24 subscriptions", || {
        metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#) == 24.0
    });

    for i in 0..24u64 {
        publish(&h, &format!("many{i}"), "e", &format!("to stream {i}"), 100 + i);
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let expected = event(100 + i as u64, "e", &format!("to stream {i}"));
        assert_eq!(client.next_message(s), expected, "one data frame per event");
    }

    // The bytes inside an HTTP/1.1 chunk are the bytes of an HTTP/2 data frame.
    let token = sub_token("test_issuer1", "both");
    let mut over_h2 = client.subscribe(&token, &[]);
    let h1 = std::thread::scope(|scope| {
        let h1 = scope.spawn(|| http1_events(&h, &cert, &token, "over both"));
        eventually("both subscribers", || {
            metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#) == 26.0
        });
        publish(&h, "both", "hello", "over both", 7);
        h1.join().unwrap()
    });
    let frame = client.next_message(&mut over_h2);
    assert_eq!(frame, event(7, "hello", "over both"));
    assert!(h1.contains(&format!("{:x}\r\n{frame}\r\n", frame.len())), "{h1:?}");
}

#[test]
fn a_client_offering_only_http1_keeps_http1() {
    let cert = Cert::new("h2-h1only");
    let h = start_tls(&cert, &[]);
    let token = sub_token("test_issuer1", "h1only");
    let h1 = std::thread::scope(|scope| {
        let h1 = scope.spawn(|| http1_events(&h, &cert, &token, "only h1"));
        eventually("the subscriber", || {
            metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#) == 1.0
        });
        publish(&h, "h1only", "e", "only h1", 3);
        h1.join().unwrap()
    });
    assert!(h1.starts_with("HTTP/1.1 200 OK\r\n"), "{h1}");
    assert!(h1.contains("transfer-encoding: chunked\r\n"));
}

#[test]
fn resume_with_last_event_id_over_http2() {
    let cert = Cert::new("h2-resume");
    let h = start_tls(&cert, &[]);
    for id in 1..=3 {
        publish(&h, "resume", "e", &format!("m{id}"), id);
    }
    let client = H2Client::connect(&h, &cert);
    let mut s = client.subscribe(&sub_token("test_issuer1", "resume"), &[("last-event-id", "1")]);
    assert_eq!(client.next_message(&mut s), event(2, "e", "m2"));
    assert_eq!(client.next_message(&mut s), event(3, "e", "m3"));
    publish(&h, "resume", "e", "m4", 4);
    assert_eq!(client.next_message(&mut s), event(4, "e", "m4"));

    let mut bad = client.subscribe(&sub_token("test_issuer1", "resume"), &[("last-event-id", "x")]);
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(client.body(&mut bad).contains("invalid_last_event_id"));
}

/// The body of an error event without its `id:` line (the time in seconds, which may tick
/// between two requests).
fn without_id(body: &str) -> String {
    body.split_once('\n')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default()
}

#[test]
fn refused_requests_get_http1s_statuses_and_bodies() {
    let cert = Cert::new("h2-refused");
    let h = start_tls(&cert, &[]);
    let client = H2Client::connect(&h, &cert);
    let get = |headers: &[(&str, &str)]| {
        let mut request = Request::get("https://localhost/v1/subscribe");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut s = client.request(request.body(()).unwrap());
        let body = client.body(&mut s);
        (s, body)
    };
    let http1 = |headers: &str| {
        let mut c = tls_client(&h, &cert, &[]);
        write!(c, "GET /v1/subscribe HTTP/1.1\r\nhost: localhost\r\n{headers}\r\n").unwrap();
        let text = read_until(&mut c, "}]}\n\n");
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    };

    let (missing, body) = get(&[("origin", "http://localhost:3000")]);
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers["content-type"], "text/event-stream");
    assert_eq!(missing.headers["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(missing.headers["content-length"], body.len().to_string().as_str());
    assert!(missing.headers.get("connection").is_none());
    assert_eq!(without_id(&body), without_id(&http1("")));
    assert!(body.contains("event: neurow_error_401\n"), "{body}");

    let forged = format!("Bearer {}x", sub_token("test_issuer1", "t"));
    let (refused, body) = get(&[("authorization", &forged)]);
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        without_id(&body),
        without_id(&http1(&format!("authorization: {forged}\r\n")))
    );
    assert!(body.contains("invalid_authentication_token"), "{body}");

    let token = format!("Bearer {}", sub_token("test_issuer1", "t"));
    let cookie = "c".repeat(8193);
    let (too_large, body) = get(&[("authorization", &token), ("cookie", &cookie)]);
    assert_eq!(too_large.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(body.contains("MAX_HEADER_VALUE_LENGTH"), "{body}");

    let mut preflight = client.request(
        Request::options("https://localhost/v1/subscribe")
            .header("origin", "http://localhost:3000")
            .header("access-control-request-headers", "authorization")
            .body(())
            .unwrap(),
    );
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers["access-control-allow-headers"], "authorization");
    assert_eq!(client.body(&mut preflight), "");

    let mut other = client.request(
        Request::get("https://localhost/elsewhere")
            .header("authorization", &token)
            .body(())
            .unwrap(),
    );
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(client.body(&mut other), "");
    assert!(metric(&h, r#"http_request_count{interface="public_api",status="431"}"#) >= 1.0);
}

#[test]
fn a_reset_stream_and_a_closed_connection_release_their_subscriptions() {
    let cert = Cert::new("h2-reset");
    let h = start_tls(&cert, &[]);
    let client = H2Client::connect(&h, &cert);
    let mut kept = client.subscribe(&sub_token("test_issuer1", "kept"), &[]);
    let mut reset = client.subscribe(&sub_token("test_issuer1", "reset"), &[]);
    let subscriptions = || metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#);
    eventually("two subscriptions", || subscriptions() == 2.0);

    reset.request.send_reset(h2::Reason::CANCEL);
    eventually("the reset stream to be released", || subscriptions() == 1.0);
    assert_eq!(metric(&h, "herald_subscriptions"), 1.0);
    publish(&h, "kept", "e", "still here", 9);
    assert_eq!(client.next_message(&mut kept), event(9, "e", "still here"));

    drop(kept);
    drop(client);
    eventually("the closed connection's stream to be released", || {
        subscriptions() == 0.0
    });
    assert_eq!(
        metric(&h, r#"herald_subscriptions_closed_total{reason="client_gone"}"#),
        2.0
    );
}

#[test]
fn a_slow_http2_stream_is_ended_with_reconnect() {
    let cert = Cert::new("h2-slow");
    let h = start_tls(&cert, &[("SUBSCRIPTION_OUTBOX_CAPACITY", "2")]);
    // A client that grants one small window and does not read: the stream cannot keep up.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(64);
    let client = H2Client::connect_with(&h, &cert, builder);
    let mut slow = client.subscribe(&sub_token("test_issuer1", "slow"), &[]);
    let messages: Vec<String> = (1..=20)
        .map(|i| format!(r#"{{"event":"e","payload":"{}","timestamp":{i}}}"#, "p".repeat(200)))
        .collect();
    h.publish_ok(
        "test_issuer1",
        &format!(r#"{{"topic":"slow","messages":[{}]}}"#, messages.join(",")),
    );
    eventually("the overflow to be counted", || {
        metric(&h, "herald_outbox_overflows_total") >= 1.0
    });
    // Reading now drains what was queued, then the closing event ends the stream.
    let mut last = String::new();
    let mut received = String::new();
    while let Some(frame) = client.next_frame(&mut slow) {
        received.push_str(&frame);
        last = frame;
    }
    assert!(received.ends_with("event: reconnect\n\n"), "{last:?}");
    eventually("the slow stream to be released", || {
        metric(&h, r#"herald_subscriptions_closed_total{reason="slow_consumer"}"#) == 1.0
    });
}

#[test]
fn shutdown_tells_http2_streams_to_reconnect_and_closes_the_connection() {
    let cert = Cert::new("h2-shutdown");
    let mut h = start_tls(&cert, &[]);
    let mut client = H2Client::connect(&h, &cert);
    let mut streams: Vec<H2Sse> = (0..3)
        .map(|i| client.subscribe(&sub_token("test_issuer1", &format!("down{i}")), &[]))
        .collect();
    eventually("three subscriptions", || {
        metric(&h, r#"concurrent_subscription{issuer="test_issuer1"}"#) == 3.0
    });
    h.terminate();
    for s in &mut streams {
        assert_eq!(client.next_event(s), "event: reconnect\n\n");
        assert_eq!(client.next_frame(s), None, "the stream ends after reconnect");
    }
    client.closed();
    assert!(h.wait_exit(DEADLINE).success());
}

#[test]
fn connections_over_the_cap_get_503_over_http2_too() {
    let cert = Cert::new("h2-cap");
    let h = start_tls(&cert, &[("PUBLIC_API_MAX_CONNECTIONS", "1")]);
    let first = H2Client::connect(&h, &cert);
    let _held = first.subscribe(&sub_token("test_issuer1", "cap"), &[]);
    let mut second = H2Client::connect(&h, &cert);
    let mut refused = second.subscribe(&sub_token("test_issuer1", "cap"), &[]);
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(second.body(&mut refused).contains("too_many_connections"));
    second.closed();
    // The first connection still serves new streams.
    let mut more = first.subscribe(&sub_token("test_issuer1", "cap2"), &[]);
    assert_eq!(more.status, StatusCode::OK);
    publish(&h, "cap2", "e", "fine", 1);
    assert_eq!(first.next_message(&mut more), event(1, "e", "fine"));
}
