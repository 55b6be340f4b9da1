//! `store-fire-lag`: how late Herald's scheduler fires. One SSE stream subscribes to the topics
//! of a few collections (`collections/<c>`, Herald v2); then N events are inserted over the
//! internal API with `publish_at` spread evenly over a window that opens `--lead` seconds after
//! the inserts start (all of them must be acknowledged by then). Each delivered event carries its
//! `publish_at` and the `published_at` Herald stamped when it fired; the tool notes when it
//! arrived (same machine, same clock). Reported: the fire lag (`published_at - publish_at`) and
//! the arrival lag (arrival − `publish_at`), p50 to max, and every event lost or repeated.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::store::{DbMeter, Endpoints, Tally, insert_body, mode, now_ms, set_cost};
use super::{Meter, RunContext, note};
use crate::cli::FireLagArgs;
use crate::jwt::TokenCache;
use crate::net;
use crate::payload::now_us;
use crate::report::RunResult;
use crate::stats::{Hist, Stats};
use crate::wire::chunked::ChunkedDecoder;
use crate::wire::head;
use crate::wire::sse::SseParser;

/// A v2 message event's data.
#[derive(Deserialize)]
struct V2Data {
    payload: String,
}

/// The payload Herald publishes for a stored event.
#[derive(Deserialize)]
struct Fired {
    id: String,
    collection: String,
    publish_at: i64,
    published_at: i64,
}

/// What the subscriber saw.
#[derive(Default)]
pub(super) struct Seen {
    /// Distinct events received.
    pub(super) ids: HashSet<String>,
    duplicates: u64,
    out_of_order: u64,
    /// Arrived before `publish_at` (never expected).
    early: u64,
    fire_lag: Hist,
    arrival_lag: Hist,
    last_due: std::collections::HashMap<String, i64>,
    undecodable: u64,
    /// How the stream ended before every event arrived, if it did (`credentials_expired` …).
    ended: Option<String>,
}

impl Seen {
    fn on_data(&mut self, data: &[u8], arrived_us: u64) {
        let Some(fired) = serde_json::from_slice::<V2Data>(data)
            .ok()
            .and_then(|d| serde_json::from_str::<Fired>(&d.payload).ok())
        else {
            self.undecodable += 1;
            return;
        };
        if !self.ids.insert(fired.id) {
            self.duplicates += 1;
            return;
        }
        let due_us = fired.publish_at.max(0) as u64 * 1000;
        if arrived_us + 1000 < due_us || fired.published_at < fired.publish_at {
            self.early += 1;
        }
        self.fire_lag
            .record((fired.published_at - fired.publish_at).max(0) as u64 * 1000);
        self.arrival_lag.record(arrived_us.saturating_sub(due_us));
        let last = self.last_due.entry(fired.collection).or_insert(i64::MIN);
        if fired.publish_at < *last {
            self.out_of_order += 1;
        }
        *last = (*last).max(fired.publish_at);
    }
}

/// Reads the stream until `expected` distinct events arrived or `until`.
async fn subscribe_and_read(
    mut stream: tokio::net::TcpStream,
    mut rest: Vec<u8>,
    chunked: bool,
    expected: Arc<AtomicU64>,
    until: Instant,
) -> Seen {
    let mut seen = Seen::default();
    let mut parser = SseParser::new();
    let mut dec = ChunkedDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let feed = if chunked {
            dec.decode(&rest, parser.buffer_mut()).is_ok()
        } else {
            parser.extend(&rest);
            true
        };
        rest.clear();
        let arrived = now_us();
        let mut ended = None;
        let _ = parser.drain(|ev| match ev.kind() {
            b"ping" => {}
            kind @ (b"timeout" | b"reconnect" | b"credentials_expired") => {
                ended = Some(String::from_utf8_lossy(kind).into_owned());
            }
            _ => {
                if let Some(data) = ev.data.as_deref() {
                    seen.on_data(data, arrived);
                }
            }
        });
        if seen.ids.len() as u64 >= expected.load(Ordering::Relaxed) {
            return seen;
        }
        if !feed {
            seen.ended = Some("bad_chunking".into());
            return seen;
        }
        if ended.is_some() {
            seen.ended = ended;
            return seen;
        }
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&buf[..n]),
            Ok(_) => {
                seen.ended = Some("eof".into());
                return seen;
            }
            Err(_) => return seen,
        }
    }
}

impl Seen {
    /// Records the fire and arrival lags, p50 to max.
    pub(super) fn put_lags(&self, result: &mut RunResult) {
        for (name, h) in [("fire_lag", &self.fire_lag), ("arrival_lag", &self.arrival_lag)] {
            if h.count() == 0 {
                continue;
            }
            let s = h.summary();
            result.set(&format!("{name}_p50_ms"), s.p50_ms);
            result.set(&format!("{name}_p90_ms"), s.p90_ms);
            result.set(&format!("{name}_p99_ms"), s.p99_ms);
            result.set(&format!("{name}_p999_ms"), s.p999_ms);
            result.set(&format!("{name}_max_ms"), s.max_ms);
        }
        if self.arrival_lag.count() > 0 {
            result.latency = Some(self.arrival_lag.summary());
        }
    }

    /// Checks that each of the `inserted` events arrived once, in due order per collection, and
    /// none early.
    pub(super) fn add_checks(&self, result: &mut RunResult, inserted: u64) {
        result.set("received", self.ids.len() as f64);
        result.set("early", self.early as f64);
        let mut stats = Stats {
            lost: inserted.saturating_sub(self.ids.len() as u64),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            ..Stats::default()
        };
        if self.early > 0 {
            stats.errors.insert("fired_early".into(), self.early);
        }
        if self.undecodable > 0 {
            stats.errors.insert("undecodable_event".into(), self.undecodable);
        }
        if let Some(end) = &self.ended {
            stats.errors.insert(format!("stream_end_{end}"), 1);
        }
        result.add_checks(&stats);
    }
}

/// One SSE stream (Herald v2) on the topics of collections `<prefix>0` … `<prefix>N-1`, read in
/// a task until the expected number of distinct events arrived, or a deadline.
pub(super) struct Watch {
    reader: tokio::task::JoinHandle<Seen>,
    expected: Arc<AtomicU64>,
}

impl Watch {
    /// Subscribes (at most 64 topics: PUBLIC_API_MAX_TOPICS_PER_CONNECTION's default) and starts
    /// reading, until `until` at the latest.
    pub(super) async fn start(
        ctx: &RunContext,
        endpoints: &Endpoints,
        prefix: &str,
        collections: u64,
        until: Instant,
    ) -> anyhow::Result<Watch> {
        let mut path = String::from("/v2/subscribe?");
        for c in 0..collections.min(64) {
            if c > 0 {
                path.push('&');
            }
            path.push_str(&format!("topic=collections/{prefix}{c}"));
        }
        // The token must outlast the watch, or Herald ends the stream (credentials_expired):
        // Herald accepts up to PUBLIC_API_JWT_MAX_LIFETIME (bench/lib.sh starts it with a day).
        let mut jwt = ctx.target.sse_jwt.clone();
        let watch_s = until.saturating_duration_since(Instant::now()).as_secs() + 10;
        jwt.lifetime_s = jwt.lifetime_s.max(watch_s);
        let token = jwt.mint_granting_all(Some(&format!("{prefix}sub")))?;
        let (addr, host) = &endpoints.public;
        let mut stream = net::connect(*addr, None).await.context("cannot reach the public API")?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n",
            addr.port()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let sse_head = head::read(&mut stream, &mut buf).await.context("subscribing")?;
        if sse_head.status != 200 {
            anyhow::bail!(
                "the subscription was answered {} (its token lasts {} s: Herald needs PUBLIC_API_JWT_MAX_LIFETIME at least that)",
                sse_head.status,
                jwt.lifetime_s
            );
        }
        let rest = buf[sse_head.len..].to_vec();
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let reader = tokio::spawn(subscribe_and_read(
            stream,
            rest,
            sse_head.chunked,
            expected.clone(),
            until,
        ));
        Ok(Watch { reader, expected })
    }

    /// Stops once `n` distinct events arrived.
    pub(super) fn expect(&self, n: u64) {
        self.expected.store(n, Ordering::Relaxed);
    }

    /// What the stream saw, once it stopped.
    pub(super) async fn finish(self) -> anyhow::Result<Seen> {
        self.reader.await.context("the subscriber panicked")
    }
}

/// Runs the scenario.
pub async fn run(args: &FireLagArgs) -> anyhow::Result<RunResult> {
    let ctx = RunContext::new(&args.common)?;
    let endpoints = Endpoints::new(&ctx, &args.store)?;
    let smoke = ctx.common.smoke;
    let (events, spread, lead, clients, collections) = if smoke {
        (args.events.min(200), 2, 3, args.clients.min(4), args.collections.min(2))
    } else {
        (args.events, args.spread, args.lead, args.clients, args.collections)
    };
    let (events, clients, collections) = (events.max(1), clients.max(1), collections.clamp(1, 64) as u64);
    let prefix = ctx.topic_prefix("lag");
    let mut result = ctx.result("store-fire-lag", &mode(&args.store, ""), clients as u64, 0);
    result.set("events", events as f64);
    result.set("spread_s", spread as f64);
    result.set("collections", collections as f64);

    // The subscriber, before any insert.
    let first_due_ms = now_ms() + lead * 1000;
    let spread_ms = spread * 1000;
    let last_due = Instant::now() + Duration::from_millis(lead * 1000 + spread_ms);
    let watch = Watch::start(
        &ctx,
        &endpoints,
        &prefix,
        collections,
        last_due + Duration::from_secs(args.grace),
    )
    .await?;

    note(format!(
        "store-fire-lag: inserting {events} events due over {spread} s from {lead} s on, {clients} clients"
    ));
    let tokens = Arc::new(TokenCache::new(ctx.target.publish_jwt.clone()));
    let next = Arc::new(AtomicU64::new(0));
    let inserting = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let mut client = endpoints.internal_client();
        let (tokens, next, prefix) = (tokens.clone(), next.clone(), prefix.clone());
        let data_bytes = args.store.data_bytes;
        set.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    break;
                }
                let Ok(token) = tokens.get() else {
                    tally.error("token".into());
                    break;
                };
                // Due times in insert order: the earliest are stored first.
                let due = first_due_ms + i * spread_ms / events;
                let path = format!("/v2/collections/{prefix}{}/events", i % collections);
                let request = client.post_json(&path, &insert_body("due", i, data_bytes, Some(due)), Some(&token));
                let sent = Instant::now();
                let outcome = client.send(&request).await;
                tally.record(&outcome, 201, "insert", sent.elapsed(), true);
            }
            tally
        });
    }
    let mut inserted = Tally::default();
    while let Some(joined) = set.join_next().await {
        inserted.merge(&joined.context("an insert client panicked")?);
    }
    let insert_s = inserting.elapsed().as_secs_f64();
    watch.expect(inserted.ok);
    let margin_ms = first_due_ms as f64 - now_ms() as f64;
    result.set("inserted", inserted.ok as f64);
    result.set("insert_phase_s", insert_s);
    result.set("insert_phase_per_s", inserted.ok as f64 / insert_s.max(1e-9));
    result.set("insert_margin_s", margin_ms / 1000.0);
    inserted.into_checks(&mut result);
    if margin_ms < 0.0 {
        result.ok = false;
        result.checks.errors.insert("inserts_overran_lead".into(), 1);
        result.notes.push(format!(
            "the inserts took {insert_s:.1} s, past the first due time: raise --lead"
        ));
    }

    // The window: measured from the first due time to the last.
    let window_start = Instant::now() + Duration::from_millis(margin_ms.max(0.0) as u64);
    tokio::time::sleep_until(window_start.into()).await;
    let mut meter = Meter::start_alone(&ctx.common.server_pids);
    let db = DbMeter::start(args.store.db_pid);
    note("store-fire-lag: events falling due");
    tokio::time::sleep_until(last_due.into()).await;
    let phase = meter.lap();
    let db_cpu = db.cpu_s();
    let seen = watch.finish().await?;

    let received = seen.ids.len() as u64;
    result.set("received", received as f64);
    set_cost(&mut result, &phase, db_cpu, received, "fire");
    seen.put_lags(&mut result);
    seen.add_checks(&mut result, inserted.ok);
    Ok(result)
}
