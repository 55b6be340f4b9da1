//! `login`: how many logins a second Herald's hashing pool allows. First `--users` accounts are
//! created on the public API (`POST /v2/users`, Herald started with `ACCOUNTS_SIGNUP=open`; each
//! a hash: reported as `signups_per_s`); then `--clients` concurrent clients log in with the right
//! password (`POST /v2/login`, one Argon2id verification each), accounts in turn, and every answer
//! must be a `200` with a token. Successes never trip the login throttle (it counts failures).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use super::store::{DbMeter, Endpoints, Tally, mode, set_cost};
use super::{Meter, RunContext, note};
use crate::cli::LoginArgs;
use crate::report::RunResult;
use crate::stats::Stats;

fn credentials(prefix: &str, user: u64) -> String {
    format!("{{\"username\":\"{prefix}u{user}\",\"password\":\"herald-load password {user}\"}}")
}

/// Runs the scenario.
pub async fn run(args: &LoginArgs) -> anyhow::Result<RunResult> {
    let ctx = RunContext::new(&args.common)?;
    let endpoints = Endpoints::new(&ctx, &args.store)?;
    let smoke = ctx.common.smoke;
    let (users, clients) = if smoke {
        (args.users.min(2), args.clients.min(2))
    } else {
        (args.users, args.clients)
    };
    let (users, clients) = (users.max(1) as u64, clients.max(1));
    let (warmup, duration) = if smoke {
        (Duration::ZERO, Duration::from_secs(1))
    } else {
        (
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration.max(1)),
        )
    };
    // Usernames are lowercased by Herald, and 3–64 characters.
    let prefix = ctx.topic_prefix("login").to_ascii_lowercase();
    let mut result = ctx.result("login", &mode(&args.store, ""), clients as u64, 0);
    result.set("users", users as f64);

    note(format!("login: creating {users} accounts"));
    let next = Arc::new(AtomicU64::new(0));
    let creating = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..clients.min(users as usize) {
        let mut client = endpoints.public_client();
        let (next, prefix) = (next.clone(), prefix.clone());
        set.spawn(async move {
            let mut tally = Tally::default();
            loop {
                let user = next.fetch_add(1, Ordering::Relaxed);
                if user >= users {
                    break;
                }
                let request = client.post_json("/v2/users", &credentials(&prefix, user), None);
                let sent = Instant::now();
                let outcome = client.send(&request).await;
                tally.record(&outcome, 201, "signup", sent.elapsed(), true);
            }
            tally
        });
    }
    let mut signups = Tally::default();
    while let Some(joined) = set.join_next().await {
        signups.merge(&joined.context("a signup client panicked")?);
    }
    let signup_s = creating.elapsed().as_secs_f64();
    result.set("signups_per_s", signups.ok as f64 / signup_s.max(1e-9));
    if signups.ok < users {
        signups.into_checks(&mut result);
        if signups.errors.contains_key("signup_status_403") {
            result
                .notes
                .push("sign-up was refused: start Herald with ACCOUNTS_SIGNUP=open".into());
        }
        return Ok(result);
    }

    note(format!("login: {clients} clients log in for {} s", duration.as_secs()));
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let mut set = JoinSet::new();
    for c in 0..clients {
        let mut client = endpoints.public_client();
        let prefix = prefix.clone();
        set.spawn(async move {
            let mut tally = Tally::default();
            let mut user = c as u64 % users;
            while Instant::now() < deadline {
                let request = client.post_json("/v2/login", &credentials(&prefix, user), None);
                let sent = Instant::now();
                let outcome = client.send(&request).await;
                let done = Instant::now();
                let measured = sent >= measure_from && done <= deadline;
                let with_token = match &outcome {
                    Ok(r) if r.status == 200 => serde_json::from_slice::<serde_json::Value>(&r.body)
                        .is_ok_and(|v| v.get("token").is_some_and(serde_json::Value::is_string)),
                    _ => true,
                };
                if !with_token {
                    tally.error("login_without_token".into());
                } else if !tally.record(&outcome, 200, "login", done - sent, measured) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                user = (user + clients as u64) % users;
            }
            tally
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let mut meter = Meter::start_alone(&ctx.common.server_pids);
    let db = DbMeter::start(args.store.db_pid);
    tokio::time::sleep_until(deadline.into()).await;
    let phase = meter.lap();
    let db_cpu = db.cpu_s();
    let mut total = Tally::default();
    while let Some(joined) = set.join_next().await {
        total.merge(&joined.context("a login client panicked")?);
    }
    result.set("logins", total.ok as f64);
    result.set("logins_per_s", total.ok as f64 / duration.as_secs_f64());
    set_cost(&mut result, &phase, db_cpu, total.ok, "login");
    result.set(
        "server_cpu_ms_per_login",
        phase.server.cpu_s() * 1e3 / total.ok.max(1) as f64,
    );
    let stats = Stats {
        latency: total.latency.clone(),
        ..Stats::default()
    };
    result.set_latency(&stats);
    total.into_checks(&mut result);
    if total.ok == 0 {
        result.ok = false;
        result.notes.push("no login succeeded in the measured window".into());
    }
    Ok(result)
}
