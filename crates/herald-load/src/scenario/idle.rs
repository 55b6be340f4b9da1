//! `idle`: open N subscriptions (one topic each), hold them, and measure what they cost the
//! server: RSS and CPU per new subscription, then keep-alive CPU while nothing is published.
//! Subscribers hold SSE streams or, with `--transport ws`, WebSockets (mode `websocket`).

use std::time::Duration;

use super::{Meter, RunContext, merge_replies, note, open_subscriptions};
use crate::cli::IdleArgs;
use crate::report::RunResult;
use crate::worker::pool::Workers;
use crate::worker::protocol::TopicLayout;

/// Runs the scenario.
pub async fn run(args: &IdleArgs) -> anyhow::Result<RunResult> {
    let mut ctx = RunContext::new(&args.common)?;
    ctx.use_subscribers(&args.subscribers, false)?;
    let (connections, hold) = if ctx.common.smoke {
        (args.connections.min(20), 1)
    } else {
        (args.connections, args.hold)
    };
    let connect_limit = Duration::from_secs(120);
    let max_runtime = connect_limit + Duration::from_secs(hold + 60);
    let plans = ctx.plans(
        connections,
        TopicLayout::PerSubscriber(ctx.topic_prefix("idle")),
        max_runtime,
    );
    let mut workers = Workers::spawn(plans).await?;
    let mut result = ctx.result("idle", &ctx.mode(""), connections as u64, workers.count());
    // Let the workers start before the baseline so their start-up is not counted.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    let rss_before = meter.server_rss_kb();
    note(format!("idle: opening {connections} subscriptions"));
    let (stats, elapsed_us) = open_subscriptions(&mut workers, ctx.common.connect_concurrency, connect_limit).await?;
    let connect_s = elapsed_us as f64 / 1e6;
    // Settle: let the server finish registering before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connect_phase = meter.lap();
    let rss_after = connect_phase.server_rss_kb;

    note(format!("idle: {} open, holding {hold} s", stats.connected));
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let hold_phase = meter.lap();
    let final_replies = workers.close(Duration::from_secs(30)).await?;
    let (final_stats, _) = merge_replies(&final_replies);

    let opened = stats.connected.max(1) as f64;
    result.set("connected", stats.connected as f64);
    result.set("all_connected_s", connect_s);
    result.set("connects_per_s", stats.connected as f64 / connect_s.max(1e-9));
    if !ctx.common.server_pids.is_empty() {
        result.set("server_rss_before_mb", rss_before as f64 / 1024.0);
        result.set("server_rss_after_mb", rss_after as f64 / 1024.0);
        result.set(
            "server_rss_kb_per_conn",
            (rss_after as f64 - rss_before as f64) / opened,
        );
        result.set(
            "server_cpu_us_per_subscription",
            connect_phase.server.cpu_s() * 1e6 / opened,
        );
        result.set(
            "server_idle_cpu_pct",
            hold_phase.server.cpu_s() / hold_phase.wall_s * 100.0,
        );
    }
    result.set("tool_cpu_s", connect_phase.tool.cpu_s() + hold_phase.tool.cpu_s());
    result.set("tool_rss_kb_per_conn", connect_phase.tool.rss_kb as f64 / opened);
    result.set_other_load(
        connect_phase.other_cpu_s() + hold_phase.other_cpu_s(),
        connect_phase.wall_s + hold_phase.wall_s,
    );
    result.set("pings", final_stats.pings as f64);
    result.set_connect(&stats);
    result.set("listen_drops", connect_phase.listen_drops as f64);
    result.add_checks(&stats);
    result.add_checks(&final_stats);
    result.bottleneck = connect_phase.bottleneck().filter(|_| stats.connected > 0);
    Ok(result)
}
