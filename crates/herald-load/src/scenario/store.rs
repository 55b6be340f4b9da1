//! `store-insert`: N concurrent clients insert events into Herald's collections over the
//! internal API (`POST /v2/collections/{c}/events`), each with one request in flight on its own
//! keep-alive connection. Herald answers `201` only once the event is committed (its writer groups
//! whatever is queued into one transaction), so the rate is of acknowledged durable inserts.
//!
//! Shared here with `store-fire-lag` and `login`: where the store routes are, the event bodies,
//! the per-client tallies, and the database's CPU (`--db-pid`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use super::fire_lag::Watch;
use super::{Meter, Phase, RunContext, note};
use crate::cli::{StoreArgs, StoreInsertArgs};
use crate::http_client::{Client, HttpError};
use crate::jwt::TokenCache;
use crate::procfs;
use crate::report::RunResult;
use crate::stats::{Hist, Stats};
use crate::target::{HttpUrl, TargetKind};

/// Where the store routes are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The internal API (collections, with an internal-API token).
    pub internal: (SocketAddr, String),
    /// The public API (accounts, subscriptions).
    pub public: (SocketAddr, String),
    /// The limit on one request.
    pub timeout: Duration,
}

impl Endpoints {
    /// From `--internal-url` and `--public-url`, or else PUBLISH_URL's and SSE_URL's host and port.
    pub fn new(ctx: &RunContext, args: &StoreArgs) -> anyhow::Result<Endpoints> {
        if ctx.common.target != TargetKind::Herald {
            anyhow::bail!("the store scenarios are Herald's collections and accounts: use TARGET=herald");
        }
        let pick = |given: &Option<String>, default: &HttpUrl, what: &str| -> anyhow::Result<(SocketAddr, String)> {
            let url: HttpUrl = match given {
                Some(u) => u.parse().with_context(|| what.to_owned())?,
                None => default.clone(),
            };
            Ok((url.addr, url.host))
        };
        Ok(Endpoints {
            internal: pick(&args.internal_url, ctx.target.publish_url(0), "INTERNAL_API_URL")?,
            public: pick(&args.public_url, &ctx.target.sse_urls[0], "PUBLIC_API_URL")?,
            timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
        })
    }

    /// A client of the internal API.
    pub fn internal_client(&self) -> Client {
        Client::new(self.internal.0, &self.internal.1, self.timeout)
    }

    /// A client of the public API.
    pub fn public_client(&self) -> Client {
        Client::new(self.public.0, &self.public.1, self.timeout)
    }
}

/// The mode of a store result: the store's name (if given), then `rest`.
pub fn mode(args: &StoreArgs, rest: &str) -> String {
    [args.store_kind.as_str(), rest]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An insert body: `{"event","data","publish_at"?}`, `data` an object of about `data_bytes`.
pub fn insert_body(event: &str, seq: u64, data_bytes: usize, publish_at_ms: Option<u64>) -> String {
    let head = format!("{{\"seq\":{seq},\"pad\":\"");
    let pad = data_bytes.saturating_sub(head.len() + 2);
    let mut body = format!("{{\"event\":\"{event}\",\"data\":{head}");
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str("\"}");
    if let Some(at) = publish_at_ms {
        body.push_str(&format!(",\"publish_at\":{at}"));
    }
    body.push('}');
    body
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::payload::now_us() / 1000
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered as expected, within the measured window.
    pub ok: u64,
    /// Latency of those, µs.
    pub latency: Hist,
    /// Failures by label (all of them, measured window or not).
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds another client's.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.latency.merge(&other.latency);
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Counts one failure.
    pub fn error(&mut self, label: String) {
        *self.errors.entry(label).or_default() += 1;
    }

    /// Counts the outcome of one request: `expected` status, anything else is an error.
    pub fn record(
        &mut self,
        outcome: &Result<crate::http_client::Response, HttpError>,
        expected: u16,
        what: &str,
        elapsed: Duration,
        measured: bool,
    ) -> bool {
        match outcome {
            Ok(r) if r.status == expected => {
                if measured {
                    self.ok += 1;
                    self.latency.record(elapsed.as_micros() as u64);
                }
                true
            }
            Ok(r) => {
                self.error(format!("{what}_status_{}", r.status));
                false
            }
            Err(e) => {
                self.error(e.label(what));
                false
            }
        }
    }

    /// Puts the failures into `result`'s checks (each counts as a failed request).
    pub fn into_checks(&self, result: &mut RunResult) {
        let mut stats = Stats::default();
        for (k, v) in &self.errors {
            stats.publish_errors += v;
            *stats.errors.entry(k.clone()).or_default() += v;
        }
        result.add_checks(&stats);
    }
}

/// The database's CPU over a phase (`--db-pid`): its process tree.
pub struct DbMeter {
    pid: Option<u32>,
    at: u64,
}

impl DbMeter {
    /// Starts now.
    pub fn start(pid: Option<u32>) -> DbMeter {
        DbMeter {
            pid,
            at: pid.map_or(0, procfs::tree_cpu_ticks),
        }
    }

    /// CPU seconds since the start (`None` without a pid).
    pub fn cpu_s(&self) -> Option<f64> {
        self.pid
            .map(|p| procfs::tree_cpu_ticks(p).saturating_sub(self.at) as f64 / procfs::TICKS_PER_SEC)
    }
}

/// Records a measured phase: its cost, the database's share, and `per` figures per `count`
/// operations named `unit` (`insert`, `login`).
pub fn set_cost(result: &mut RunResult, phase: &Phase, db_cpu_s: Option<f64>, count: u64, unit: &str) {
    result.set_phase(phase);
    let n = count.max(1) as f64;
    result.set(&format!("server_cpu_us_per_{unit}"), phase.server.cpu_s() * 1e6 / n);
    if let Some(db) = db_cpu_s {
        result.set("db_cpu_s", db);
        result.set(&format!("db_cpu_us_per_{unit}"), db * 1e6 / n);
        if phase.wall_s > 0.0 {
            result.set("db_cpu_pct", db / phase.wall_s * 100.0);
        }
        // The database is neither the server nor the tool: take it out of "other load".
        let other = (phase.other_cpu_s() - db).max(0.0);
        result.set_other_load(other, phase.wall_s);
    }
}

/// Runs the scenario.
pub async fn run(args: &StoreInsertArgs) -> anyhow::Result<RunResult> {
    let ctx = RunContext::new(&args.common)?;
    let endpoints = Endpoints::new(&ctx, &args.store)?;
    let smoke = ctx.common.smoke;
    let clients = if smoke { args.clients.min(4) } else { args.clients }.max(1);
    let (warmup, duration) = if smoke {
        (Duration::ZERO, Duration::from_secs(1))
    } else {
        (
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration.max(1)),
        )
    };
    let collections = args.collections.max(1) as u64;
    let prefix = ctx.topic_prefix("ins");
    let how = match (args.schedule_ahead_ms, args.watch) {
        (0, false) => "now",
        (0, true) => "now, watched",
        (_, false) => "scheduled",
        (_, true) => anyhow::bail!("--watch sees events fire during the run: leave SCHEDULE_AHEAD_MS at 0"),
    };
    let mut result = ctx.result("store-insert", &mode(&args.store, how), clients as u64, 0);
    result.set("collections", collections as f64);
    note(format!(
        "store-insert: {clients} clients into {collections} collections for {} s ({how})",
        duration.as_secs()
    ));

    let tokens = Arc::new(TokenCache::new(ctx.target.publish_jwt.clone()));
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    // Events of collections below this number are watched (their topics fit on one stream).
    let watched = if args.watch { collections.min(64) } else { 0 };
    let watch = if args.watch {
        Some(Watch::start(&ctx, &endpoints, &prefix, watched, deadline + Duration::from_secs(15)).await?)
    } else {
        None
    };
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let mut client = endpoints.internal_client();
        let tokens = tokens.clone();
        let seq = seq.clone();
        let prefix = prefix.clone();
        let data_bytes = args.store.data_bytes;
        let ahead = args.schedule_ahead_ms;
        set.spawn(async move {
            let mut tally = Tally::default();
            let mut watched_ok = 0;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let token = match tokens.get() {
                    Ok(t) => t,
                    Err(_) => {
                        tally.error("token".into());
                        break;
                    }
                };
                let publish_at = (ahead > 0).then(|| now_ms() + ahead);
                let path = format!("/v2/collections/{prefix}{}/events", n % collections);
                let request = client.post_json(&path, &insert_body("bench", n, data_bytes, publish_at), Some(&token));
                let sent = Instant::now();
                let outcome = client.send(&request).await;
                let done = Instant::now();
                let measured = sent >= measure_from && done <= deadline;
                if !tally.record(&outcome, 201, "insert", done - sent, measured) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else if n % collections < watched {
                    watched_ok += 1;
                }
            }
            (tally, watched_ok)
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let mut meter = Meter::start_alone(&ctx.common.server_pids);
    let db = DbMeter::start(args.store.db_pid);
    tokio::time::sleep_until(deadline.into()).await;
    let phase = meter.lap();
    let db_cpu = db.cpu_s();
    let mut total = Tally::default();
    let mut watched_ok = 0;
    while let Some(joined) = set.join_next().await {
        let (tally, watched) = joined.context("an insert client panicked")?;
        total.merge(&tally);
        watched_ok += watched;
    }
    let rate = total.ok as f64 / duration.as_secs_f64();
    result.set("inserts", total.ok as f64);
    result.set("inserts_per_s", rate);
    set_cost(&mut result, &phase, db_cpu, total.ok, "insert");
    let mut stats = Stats {
        latency: total.latency.clone(),
        ..Stats::default()
    };
    stats.delivered = total.ok;
    result.set_latency(&stats);
    total.into_checks(&mut result);
    if let Some(watch) = watch {
        // Every acknowledged insert of a watched collection, warm-up included, must arrive.
        watch.expect(watched_ok);
        let seen = watch.finish().await?;
        result.set("watched_inserts", watched_ok as f64);
        // The insert latency stays the run's latency; the lags are metrics of their own.
        let latency = result.latency.take();
        seen.put_lags(&mut result);
        result.latency = latency;
        seen.add_checks(&mut result, watched_ok);
    }
    if total.ok == 0 {
        result.ok = false;
        result
            .notes
            .push("no insert was answered 201 in the measured window".into());
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_bodies_are_json_of_about_the_asked_size() {
        let body = insert_body("bench", 7, 200, Some(123));
        let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v["event"], "bench");
        assert_eq!(v["data"]["seq"], 7);
        assert_eq!(v["publish_at"], 123);
        assert_eq!(v["data"].to_string().len(), 200);
        let now: serde_json::Value = serde_json::from_str(&insert_body("e", 1, 0, None)).expect("valid");
        assert!(now.get("publish_at").is_none());
    }
}
