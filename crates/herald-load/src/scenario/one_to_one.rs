//! `one-to-one`: N topics with one subscriber each, and a sweep of publish rates.
//!
//! Each worker publishes on its own subscribers' topics, so publishing scales with the workers
//! and each topic's sequence is checked where it is produced. Every step runs for a fixed time,
//! then waits for outstanding deliveries; its latency histogram, achieved rate and server CPU are
//! kept. The headline is the highest rate whose p99 stays under `--p99-bound-ms` with every
//! message delivered once, in order, and the achieved rate within 10% of the target.
//!
//! With `--transport longpoll` the subscribers long-poll instead of holding streams, with
//! `--transport ws` they hold WebSockets; everything else (publishing, checks, measures) is the
//! same, and the result's mode is `long-poll` or `websocket`, so the table and the chart keep
//! those runs apart from the SSE ones. With `--publish-via ws` (Herald) the workers publish with
//! `publish` commands over a few WebSockets instead of `POST /v1/publish` (mode `…, publish over
//! ws`). Each message is one publish and one delivery, so server CPU per delivery is the cost of
//! both; `server_cpu_us_per_delivery_at_ref` gives it at the same rate (`--ref-rate`) for every
//! run, whichever rate each one peaks at.

use std::time::Duration;

use super::{Meter, RunContext, merge_replies, note, open_subscriptions};
use crate::cli::OneToOneArgs;
use crate::plot;
use crate::report::{RunResult, Step};
use crate::target::Transport;
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, TopicLayout};

/// Runs the scenario.
pub async fn run(args: &OneToOneArgs) -> anyhow::Result<RunResult> {
    let mut ctx = RunContext::new(&args.common)?;
    let long_poll = args.subscribers.transport == Transport::Longpoll;
    ctx.use_subscribers(&args.subscribers, true)?;
    ctx.use_publish_via(
        args.publish_via,
        args.publish_ws_connections,
        args.subscribers.ws_url.as_deref(),
    )?;
    let (connections, rates, step_s) = if ctx.common.smoke {
        (args.connections.min(20), vec![20.0, 50.0], 1)
    } else {
        (args.connections, args.rates.clone(), args.step_duration)
    };
    let step = Duration::from_secs(step_s);
    let drain = Duration::from_secs(5);
    let connect_limit = Duration::from_secs(120);
    let per_step = step + drain + Duration::from_secs(ctx.common.publish_timeout_ms / 1000 + 2);
    let plans = ctx.plans(
        connections,
        TopicLayout::PerSubscriber(ctx.topic_prefix("o2o")),
        connect_limit + per_step * rates.len() as u32 + Duration::from_secs(90),
    );
    let shares: Vec<f64> = plans
        .iter()
        .map(|p| p.subscribers as f64 / connections.max(1) as f64)
        .collect();
    let mut workers = Workers::spawn(plans).await?;
    let mut result = ctx.result("one-to-one", &ctx.mode(""), connections as u64, workers.count());

    note(format!("one-to-one: opening {connections} subscriptions"));
    let (connect_stats, _) = open_subscriptions(&mut workers, ctx.common.connect_concurrency, connect_limit).await?;
    result.set("connected", connect_stats.connected as f64);
    result.set_connect(&connect_stats);
    result.add_checks(&connect_stats);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    let mut best: Option<Step> = None;
    // Messages per long-poll answer and publish p99 at the best step.
    let (mut best_batch, mut best_publish_p99) = (0.0, 0.0);
    // Server CPU per message at the reference rate, when that step delivered every message.
    let mut at_ref = None;
    let (mut other_s, mut measured_s) = (0.0, 0.0);
    // Connections the server closed under a poll (re-opened, the poll re-sent): not errors.
    let mut reconnects = connect_stats.reconnects;
    for &rate in &rates {
        note(format!("one-to-one: {rate} msg/s for {step:?}"));
        meter.reset();
        let cmds: Vec<Command> = shares
            .iter()
            .map(|share| Command::RunRate {
                rate: rate * share,
                duration_ms: step.as_millis() as u64,
                drain_ms: drain.as_millis() as u64,
                reconnect_fraction: 0.0,
            })
            .collect();
        workers.send_each(&cmds).await?;
        let (stats, _) = merge_replies(&workers.replies(per_step + Duration::from_secs(10)).await?);
        let phase = meter.lap();
        other_s += phase.other_cpu_s();
        measured_s += phase.wall_s;
        let anomalies = stats.lost + stats.duplicates + stats.out_of_order + stats.publish_errors + stats.error_total();
        let s = Step {
            target_rate: rate,
            achieved_rate: stats.published as f64 / step.as_secs_f64(),
            latency: stats.latency.summary(),
            delivered: stats.delivered,
            server_cpu_us_per_delivery: phase.server.cpu_s() * 1e6 / stats.delivered.max(1) as f64,
            server_cpu_pct: phase.server.cpu_s() / phase.wall_s * 100.0,
            tool_cpu_pct: phase.tool.cpu_s() / phase.wall_s * 100.0,
            other_cpu_pct: phase.other_cpu_s() / phase.wall_s * 100.0,
            anomalies,
            bottleneck: phase.bottleneck().map(|b| b.reason),
        };
        note(format!(
            "  achieved {:.0}/s p50 {:.2} ms p99 {:.2} ms, anomalies {anomalies}",
            s.achieved_rate, s.latency.p50_ms, s.latency.p99_ms
        ));
        result.add_checks(&stats);
        reconnects += stats.reconnects;
        let within =
            s.latency.p99_ms <= args.p99_bound_ms && anomalies == 0 && s.achieved_rate >= 0.9 * rate && s.delivered > 0;
        if rate == args.ref_rate && anomalies == 0 && s.delivered > 0 {
            at_ref = Some(s.server_cpu_us_per_delivery);
        }
        if within && best.as_ref().is_none_or(|b| s.achieved_rate > b.achieved_rate) {
            best = Some(s.clone());
            best_batch = stats.delivered as f64 / stats.polls.max(1) as f64;
            best_publish_p99 = stats.publish.summary().p99_ms;
        }
        result.steps.push(s);
        if !within && !args.full_sweep {
            break;
        }
    }
    let (final_stats, _) = merge_replies(&workers.close(Duration::from_secs(30)).await?);
    result.add_checks(&final_stats);

    result.set("p99_bound_ms", args.p99_bound_ms);
    if long_poll {
        result.set("poll_reconnects", (reconnects + final_stats.reconnects) as f64);
    }
    result.set_other_load(other_s, measured_s);
    if let Some(cpu) = at_ref.filter(|_| !ctx.common.server_pids.is_empty()) {
        result.set("ref_rate", args.ref_rate);
        result.set("server_cpu_us_per_delivery_at_ref", cpu);
    }
    match &best {
        Some(b) => {
            result.set("max_rate_under_bound", b.achieved_rate);
            result.set("latency_p99_ms_at_max", b.latency.p99_ms);
            result.set("latency_p50_ms_at_max", b.latency.p50_ms);
            result.set("publish_p99_ms_at_max", best_publish_p99);
            if !ctx.common.server_pids.is_empty() {
                result.set("server_cpu_us_per_delivery_at_max", b.server_cpu_us_per_delivery);
            }
            if long_poll {
                result.set("messages_per_poll_at_max", best_batch);
            }
            if b.bottleneck.is_some() {
                result.notes.push(format!(
                    "the load tool may have limited the best step: {}",
                    b.bottleneck.clone().unwrap_or_default()
                ));
            }
        }
        None => {
            result.set("max_rate_under_bound", 0.0);
            result
                .notes
                .push(format!("no rate kept p99 under {} ms", args.p99_bound_ms));
        }
    }
    if let Some(path) = &args.svg {
        plot::write_svg(path, std::slice::from_ref(&result), args.p99_bound_ms)?;
        result.notes.push(format!("chart written to {}", path.display()));
    }
    Ok(result)
}
