//! `broadcast`: one topic, N subscribers.
//!
//! - Window mode (default): publish as fast as the fan-out allows for a bounded time. Message `k`
//!   is only published once every subscriber has message `k - window`, as in deps.md's fan-out
//!   method, so server outboxes never overflow and the figure is sustained throughput, not queue
//!   growth. Reports deliveries per second and server CPU per delivery and per publish.
//! - Rate mode (`--rate R`): publish R messages per second; the figure is latency at that load.
//!
//! Subscribers hold SSE streams or, with `--transport ws`, WebSockets (mode `window, websocket`
//! …). Publishes go out one at a time on one keep-alive connection, so the server receives them in
//! sequence order and any reordering a subscriber sees is the server's.

use std::time::{Duration, Instant};

use super::{Meter, RunContext, merge_replies, note, open_subscriptions};
use crate::cli::BroadcastArgs;
use crate::payload;
use crate::report::RunResult;
use crate::stats::Stats;
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, TopicLayout};

/// Runs the scenario.
pub async fn run(args: &BroadcastArgs) -> anyhow::Result<RunResult> {
    let mut ctx = RunContext::new(&args.common)?;
    ctx.use_subscribers(&args.subscribers, false)?;
    let (connections, duration) = if ctx.common.smoke {
        (args.connections.min(20), 2)
    } else {
        (args.connections, args.duration)
    };
    let duration = Duration::from_secs(duration);
    let connect_limit = Duration::from_secs(120);
    let drain_limit = Duration::from_secs(15);
    let sub = format!("{}all", ctx.topic_prefix("broadcast"));
    let plans = ctx.plans(
        connections,
        TopicLayout::Shared(sub.clone()),
        connect_limit + duration + drain_limit + Duration::from_secs(90),
    );
    let mut workers = Workers::spawn(plans).await?;
    let mode = if args.rate.is_some() { "rate" } else { "window" };
    let mut result = ctx.result("broadcast", &ctx.mode(mode), connections as u64, workers.count());

    note(format!("broadcast: opening {connections} subscriptions"));
    let (connect_stats, _) = open_subscriptions(&mut workers, ctx.common.connect_concurrency, connect_limit).await?;
    let subscribers = connect_stats.connected;
    result.set("connected", subscribers as f64);
    result.set_connect(&connect_stats);
    result.add_checks(&connect_stats);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publisher = ctx.publisher(1);
    let mut pub_stats = Stats::default();
    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut accepted: u64 = 0;
    let mut stalled = None;
    match args.rate {
        None => note(format!(
            "broadcast: publishing for {duration:?}, window {} messages",
            args.window
        )),
        Some(r) => note(format!("broadcast: publishing {r}/s for {duration:?}")),
    }
    while started.elapsed() < duration && seq < args.messages {
        match args.rate {
            None => {
                let floor = seq.saturating_sub(args.window) * subscribers;
                if let Err(e) = workers.wait_delivered(floor, Duration::from_secs(10)).await {
                    stalled = Some(e.to_string());
                    break;
                }
            }
            Some(rate) => {
                let due = started + Duration::from_secs_f64(seq as f64 / rate.max(1e-3));
                tokio::time::sleep_until(due.into()).await;
                if started.elapsed() >= duration {
                    break;
                }
            }
        }
        seq += 1;
        let size = ctx.common.payload_size;
        match publisher
            .publish(&sub, || payload::encode(payload::now_us(), seq, "b", size))
            .await
        {
            Ok(took) => {
                accepted += 1;
                pub_stats.published += 1;
                pub_stats.publish.record(took.as_micros() as u64);
            }
            Err(e) => {
                pub_stats.publish_errors += 1;
                pub_stats.error(e.label());
            }
        }
    }
    let publish_s = started.elapsed().as_secs_f64();
    // Wait for the fan-out to finish, so the phase covers every delivery.
    let all = accepted * subscribers;
    if let Err(e) = workers.wait_delivered(all, Duration::from_secs(10)).await {
        stalled.get_or_insert(e.to_string());
    }
    let phase = meter.lap();
    workers
        .send_all(&Command::Drain {
            expected: Some(accepted),
            timeout_ms: drain_limit.as_millis() as u64,
        })
        .await?;
    let (mut stats, _) = merge_replies(&workers.replies(drain_limit + Duration::from_secs(10)).await?);
    let (final_stats, _) = merge_replies(&workers.close(Duration::from_secs(30)).await?);
    stats.merge(&pub_stats);

    result.set("published", accepted as f64);
    result.set("publish_s", publish_s);
    result.set("publishes_per_s", accepted as f64 / publish_s.max(1e-9));
    result.set("deliveries", stats.delivered as f64);
    result.set("deliveries_per_s", stats.delivered as f64 / phase.wall_s.max(1e-9));
    if !ctx.common.server_pids.is_empty() {
        let cpu_us = phase.server.cpu_s() * 1e6;
        result.set("server_cpu_us_per_delivery", cpu_us / stats.delivered.max(1) as f64);
        result.set("server_cpu_us_per_publish", cpu_us / accepted.max(1) as f64);
        result.set("server_rss_mb", phase.server_rss_kb as f64 / 1024.0);
    }
    if pub_stats.publish.count() > 0 {
        result.set("publish_p99_ms", pub_stats.publish.summary().p99_ms);
    }
    result.set_phase(&phase);
    result.set_latency(&stats);
    result.add_checks(&stats);
    result.add_checks(&final_stats);
    if let Some(why) = stalled {
        result.notes.push(why);
        result.ok = false;
    }
    Ok(result)
}
