//! `soak`: a long run at a steady one-to-one rate with periodic reconnections, sampling the
//! server every period, to show that memory, file descriptors and latency stay flat over time
//! (no leak, no slow growth of queues) and that resuming keeps delivering exactly once.
//!
//! The load is the one-to-one scenario's, one period per [`Command::RunRate`]: each worker
//! publishes its share of `--rate` on its own topics, and halfway through the period drops a
//! random `--reconnect-fraction` of its streams, which re-open at once with `Last-Event-ID`. At
//! the end of a period the worker waits for outstanding deliveries (a few milliseconds at a
//! steady rate), so every message is checked: lost, repeated or reordered ones are anomalies.
//! Then the coordinator reads Herald's `/process_stats` (RSS, allocator, descriptors, outbox
//! depths, tasks) and records a [`SoakSample`].

use std::time::{Duration, Instant};

use super::{Meter, RunContext, merge_replies, note, open_subscriptions};
use crate::cli::SoakArgs;
use crate::probe;
use crate::report::{RunResult, SoakSample};
use crate::stats_util::median;
use crate::target::{HttpUrl, TargetKind};
use crate::timeline;
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, TopicLayout};

/// Runs the scenario.
pub async fn run(args: &SoakArgs) -> anyhow::Result<RunResult> {
    let mut common = args.common.clone();
    common.sse_auto_reconnect = true;
    let ctx = RunContext::new(&common)?;
    let (connections, duration, period) = if ctx.common.smoke {
        (args.connections.min(20), Duration::from_secs(4), Duration::from_secs(2))
    } else {
        (
            args.connections,
            Duration::from_secs(args.duration),
            Duration::from_secs(args.sample_every.max(1)),
        )
    };
    let periods = (duration.as_secs_f64() / period.as_secs_f64()).ceil().max(1.0) as u32;
    let stats_url = stats_url(args, &ctx)?;
    let drain = Duration::from_secs(5);
    let connect_limit = Duration::from_secs(180);
    let per_period = period + drain + Duration::from_millis(ctx.common.publish_timeout_ms + 2000);
    let plans = ctx.plans(
        connections,
        TopicLayout::PerSubscriber(ctx.topic_prefix("soak")),
        connect_limit + per_period * periods + Duration::from_secs(120),
    );
    let shares: Vec<f64> = plans
        .iter()
        .map(|p| p.subscribers as f64 / connections.max(1) as f64)
        .collect();
    let mut workers = Workers::spawn(plans).await?;
    let mut result = ctx.result("soak", "", connections as u64, workers.count());

    note(format!("soak: opening {connections} subscriptions"));
    let (connect_stats, _) = open_subscriptions(&mut workers, ctx.common.connect_concurrency, connect_limit).await?;
    result.set("connected", connect_stats.connected as f64);
    result.set_connect(&connect_stats);
    result.add_checks(&connect_stats);

    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    let started = Instant::now();
    note(format!(
        "soak: {} msg/s for {duration:?}, sampled every {period:?}, {:.1}% of the streams re-opened per period",
        args.rate,
        args.reconnect_fraction * 100.0
    ));
    for n in 1..=periods {
        meter.reset();
        let cmds: Vec<Command> = shares
            .iter()
            .map(|share| Command::RunRate {
                rate: args.rate * share,
                duration_ms: period.as_millis() as u64,
                drain_ms: drain.as_millis() as u64,
                reconnect_fraction: args.reconnect_fraction,
            })
            .collect();
        workers.send_each(&cmds).await?;
        let (stats, _) = merge_replies(&workers.replies(per_period + Duration::from_secs(10)).await?);
        let phase = meter.lap();
        let server = match &stats_url {
            Some(url) => probe::get_json(url).await.unwrap_or_else(|e| {
                note(format!("soak: cannot read {}: {e:#}", url.path));
                serde_json::Value::Null
            }),
            None => serde_json::Value::Null,
        };
        let number = |path: &[&str]| {
            path.iter()
                .try_fold(&server, |v, k| v.get(k))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        let mib = |bytes: f64| bytes / f64::from(1 << 20);
        let rss_bytes = number(&["memory", "rss_bytes"]);
        let rss_mib = if rss_bytes > 0.0 {
            mib(rss_bytes)
        } else {
            phase.server_rss_kb as f64 / 1024.0
        };
        let sample = SoakSample {
            elapsed_s: started.elapsed().as_secs_f64(),
            achieved_rate: stats.published as f64 / period.as_secs_f64(),
            delivered: stats.delivered,
            reconnects: stats.reconnects,
            anomalies: stats.lost + stats.duplicates + stats.out_of_order + stats.publish_errors + stats.error_total(),
            latency: stats.latency.summary(),
            server_cpu_pct: phase.server.cpu_s() / phase.wall_s.max(1e-9) * 100.0,
            rss_mib,
            allocated_mib: mib(number(&["memory", "allocated_bytes"])),
            fds: number(&["file_descriptors", "open"]) as u64,
            streams: number(&["connections", "streams"]) as u64,
            outbox_max: number(&["outbox_depth", "max"]) as u64,
            outbox_p99: number(&["outbox_depth", "p99"]) as u64,
            tasks: number(&["runtime", "tasks"]) as u64,
        };
        note(format!(
            "  {n}/{periods} at {:.0} s: {:.0} msg/s, p50 {:.2} ms p99 {:.2} ms, {} re-opened, {} anomalies; server RSS {:.1} MiB, {} fds, {} streams, outbox max {} p99 {}",
            sample.elapsed_s,
            sample.achieved_rate,
            sample.latency.p50_ms,
            sample.latency.p99_ms,
            sample.reconnects,
            sample.anomalies,
            sample.rss_mib,
            sample.fds,
            sample.streams,
            sample.outbox_max,
            sample.outbox_p99
        ));
        result.add_checks(&stats);
        result.samples.push(sample);
    }
    let (final_stats, _) = merge_replies(&workers.close(Duration::from_secs(30)).await?);
    result.add_checks(&final_stats);
    summarize(&mut result);
    if let Some(path) = &args.svg {
        timeline::write_svg(path, &result)?;
        result.notes.push(format!("chart written to {}", path.display()));
    }
    Ok(result)
}

/// `/process_stats` of the first publish URL's server, unless given; none for Nchan.
fn stats_url(args: &SoakArgs, ctx: &RunContext) -> anyhow::Result<Option<HttpUrl>> {
    if let Some(url) = &args.stats_url {
        return Ok(Some(url.parse()?));
    }
    if ctx.common.target != TargetKind::Herald {
        return Ok(None);
    }
    let mut url = ctx.target.publish_url(0).clone();
    url.path = "/process_stats".into();
    Ok(Some(url))
}

/// Headline figures: first and last samples (after the first, which includes start-up), growth
/// and medians.
fn summarize(result: &mut RunResult) {
    let samples = result.samples.clone();
    let Some(last) = samples.last() else {
        return;
    };
    // The first period includes the server's warm-up; growth is measured from the second.
    let base = samples.get(1).unwrap_or(&samples[0]);
    let p99s: Vec<f64> = samples.iter().map(|s| s.latency.p99_ms).collect();
    result.set("periods", samples.len() as f64);
    result.set("rss_mib_start", base.rss_mib);
    result.set("rss_mib_end", last.rss_mib);
    result.set("rss_mib_max", samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max));
    result.set("fds_start", base.fds as f64);
    result.set("fds_end", last.fds as f64);
    result.set("latency_p99_ms_median", median(p99s.clone()));
    result.set("latency_p99_ms_max", p99s.iter().copied().fold(0.0, f64::max));
    result.set(
        "outbox_max",
        samples.iter().map(|s| s.outbox_max).max().unwrap_or(0) as f64,
    );
    result.set("reconnects", samples.iter().map(|s| s.reconnects).sum::<u64>() as f64);
    result.set("delivered", samples.iter().map(|s| s.delivered).sum::<u64>() as f64);
    result.set("anomalies", samples.iter().map(|s| s.anomalies).sum::<u64>() as f64);
    // Pass: memory flat after warm-up and no descriptor leak (issue 11's soak criteria).
    let rss_max = samples.iter().skip(1).map(|s| s.rss_mib).fold(base.rss_mib, f64::max);
    let growth = rss_max / base.rss_mib.max(1e-9) - 1.0;
    result.set("rss_growth_pct", growth * 100.0);
    if base.rss_mib > 0.0 && growth > RSS_GROWTH_BOUND {
        result.ok = false;
        result.notes.push(format!(
            "RSS grew {:.1}% after warm-up ({:.1} → {rss_max:.1} MiB), over the {:.0}% bound",
            growth * 100.0,
            base.rss_mib,
            RSS_GROWTH_BOUND * 100.0
        ));
    }
    // Descriptors follow the open streams; a leak grows past them.
    let fd_margin = base.streams / 100 + 64;
    if last.fds > base.fds + fd_margin {
        result.ok = false;
        result
            .notes
            .push(format!("open descriptors grew from {} to {}", base.fds, last.fds));
    }
}

/// Largest RSS growth after the first period that still counts as flat.
const RSS_GROWTH_BOUND: f64 = 0.05;
