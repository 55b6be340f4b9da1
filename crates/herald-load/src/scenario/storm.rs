//! `storm`: N clients subscribe at the same moment, as after a server restart or a network blip.
//! Measures the time until every one is subscribed, the spread of subscribe times, errors, and the
//! server CPU per new subscription; then one publish checks every subscription is live.
//!
//! Against Herald's v2 face (SSE_URL at `/v2/subscribe`) `--token-in` says where each client's
//! credential goes: the header, the query, or a ticket. Tickets are minted before the measured
//! phase, so the storm's server CPU is what redeeming them costs. The mode (`v2, ticket`, …) keeps
//! each way apart in the table.

use std::time::Duration;

use super::{Meter, RunContext, merge_replies, note, open_subscriptions};
use crate::cli::StormArgs;
use crate::payload;
use crate::report::RunResult;
use crate::target::TokenIn;
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, TopicLayout};

/// Runs the scenario.
pub async fn run(args: &StormArgs) -> anyhow::Result<RunResult> {
    let mut ctx = RunContext::new(&args.common)?;
    ctx.use_token_in(args.token_in)?;
    let connections = if ctx.common.smoke {
        args.connections.min(20)
    } else {
        args.connections
    };
    let connect_limit = Duration::from_secs(120);
    let sub = format!("{}all", ctx.topic_prefix("storm"));
    let plans = ctx.plans(
        connections,
        TopicLayout::Shared(sub.clone()),
        connect_limit + Duration::from_secs(90),
    );
    let mut workers = Workers::spawn(plans).await?;
    let mode = if ctx.target.is_v2() {
        format!("v2, {}", args.token_in)
    } else {
        String::new()
    };
    let mut result = ctx.result("storm", &mode, connections as u64, workers.count());
    if args.token_in == TokenIn::Ticket {
        note(format!("storm: minting {connections} tickets (not measured)"));
        let started = std::time::Instant::now();
        workers
            .send_all(&Command::MintTickets {
                concurrency: ctx.common.connect_concurrency.clamp(1, 64),
            })
            .await?;
        let (minted, _) = merge_replies(&workers.replies(connect_limit).await?);
        result.set("ticket_mint_s", started.elapsed().as_secs_f64());
        result.add_checks(&minted);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    let rss_before = meter.server_rss_kb();
    note(format!("storm: {connections} clients subscribe at once"));
    // Concurrency 0: every worker starts all its handshakes immediately.
    let (stats, elapsed_us) = open_subscriptions(&mut workers, 0, connect_limit).await?;
    let phase = meter.lap();
    let opened = stats.connected.max(1) as f64;

    // One message to the shared topic proves each subscription is registered.
    let publisher = ctx.publisher(1);
    let published = publisher
        .publish(&sub, || payload::encode(payload::now_us(), 1, "storm", 0))
        .await;
    let expected = u64::from(published.is_ok());
    if let Err(e) = &published {
        result.notes.push(format!("verification publish failed: {e}"));
    }
    workers
        .send_all(&Command::Drain {
            expected: Some(expected),
            timeout_ms: 10_000,
        })
        .await?;
    let (drained, _) = merge_replies(&workers.replies(Duration::from_secs(30)).await?);
    let (final_stats, _) = merge_replies(&workers.close(Duration::from_secs(30)).await?);

    result.set("connected", stats.connected as f64);
    result.set("connect_failed", stats.connect_failed as f64);
    result.set("time_to_all_subscribed_s", elapsed_us as f64 / 1e6);
    result.set("verified_live", drained.unique as f64);
    if !ctx.common.server_pids.is_empty() {
        result.set("server_cpu_us_per_subscription", phase.server.cpu_s() * 1e6 / opened);
        result.set(
            "server_rss_kb_per_conn",
            (phase.server_rss_kb as f64 - rss_before as f64) / opened,
        );
    }
    result.set("tool_cpu_s", phase.tool.cpu_s());
    result.set_other_load(phase.other_cpu_s(), phase.wall_s);
    result.set_connect(&stats);
    result.set("listen_drops", phase.listen_drops as f64);
    result.add_checks(&stats);
    result.add_checks(&drained);
    result.add_checks(&final_stats);
    if published.is_err() {
        result.checks.publish_errors += 1;
        result.ok = false;
    }
    result.bottleneck = phase.bottleneck();
    Ok(result)
}
