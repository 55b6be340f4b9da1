//! `neurow`: Neurow's own load-test scenario (spec §7.3) with the same settings and defaults,
//! plus a run duration so that it stops by itself, percentiles instead of a mean, and server cost.

use std::time::Duration;

use super::{Meter, RunContext, merge_replies, note};
use crate::cli::NeurowArgs;
use crate::report::RunResult;
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, NeurowPlan};

/// Runs the scenario.
pub async fn run(args: &NeurowArgs) -> anyhow::Result<RunResult> {
    let mut a = args.clone();
    if a.tolerate_faults {
        a.common.sse_auto_reconnect = true;
    }
    let ctx = RunContext::new(&a.common)?;
    if ctx.common.smoke {
        // Same shape, scaled so that a user completes in about a second. Settings changed from
        // Neurow's defaults are kept.
        a.nb_user = 20;
        if (a.number_of_messages_min, a.number_of_messages_max) == (10, 50) {
            (a.number_of_messages_min, a.number_of_messages_max) = (2, 5);
        }
        if (a.delay_between_messages_min, a.delay_between_messages_max) == (500, 5000) {
            (a.delay_between_messages_min, a.delay_between_messages_max) = (10, 100);
        }
        a.initial_delay_max = a.initial_delay_max.min(200);
        a.duration = 4;
        a.grace = 5;
    }
    if a.number_of_messages_max <= a.number_of_messages_min
        || a.delay_between_messages_max <= a.delay_between_messages_min
    {
        anyhow::bail!("each *_MAX must be greater than its *_MIN");
    }
    let duration = Duration::from_secs(a.duration);
    let grace = Duration::from_secs(a.grace);
    let plan = NeurowPlan {
        users: a.nb_user,
        tolerate_faults: a.tolerate_faults,
        initial_delay_max_ms: a.initial_delay_max,
        messages_min: a.number_of_messages_min,
        messages_max: a.number_of_messages_max,
        delay_min_ms: a.delay_between_messages_min,
        delay_max_ms: a.delay_between_messages_max,
        topic_prefix: format!("{}topic_", ctx.topic_prefix("neurow")),
    };
    // A user may still be connecting, publishing its last message, and waiting out the grace.
    let tail = grace
        + Duration::from_millis(2 * ctx.common.publish_timeout_ms + ctx.common.connect_timeout_ms)
        + Duration::from_millis(a.initial_delay_max);
    let plans = ctx.neurow_plans(a.nb_user, plan, duration + tail + Duration::from_secs(60));
    let mut workers = Workers::spawn(plans).await?;
    let mut result = ctx.result("neurow", "", a.nb_user as u64, workers.count());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut meter = Meter::start(&ctx.common.server_pids, &workers);
    note(format!(
        "neurow: {} virtual users for {duration:?} (+ up to {tail:?} to finish)",
        a.nb_user
    ));
    workers
        .send_all(&Command::RunNeurow {
            duration_ms: duration.as_millis() as u64,
            grace_ms: grace.as_millis() as u64,
        })
        .await?;
    let (stats, _) = merge_replies(&workers.replies(duration + tail + Duration::from_secs(30)).await?);
    let phase = meter.lap();
    let (final_stats, _) = merge_replies(&workers.close(Duration::from_secs(30)).await?);

    result.set("users_ok", stats.users_ok as f64);
    result.set("users_error", stats.users_error as f64);
    result.set("users_cut_at_end", stats.users_cut as f64);
    result.set("published", stats.published as f64);
    result.set("received", stats.delivered as f64);
    result.set("reconnects", stats.reconnects as f64);
    if a.tolerate_faults {
        result.set("publish_refused", stats.publish_refused as f64);
        for (label, n) in &stats.faults {
            result.set(&format!("fault_{label}"), *n as f64);
        }
    }
    result.set("publishes_per_s", stats.published as f64 / phase.wall_s.max(1e-9));
    if !ctx.common.server_pids.is_empty() {
        let cpu_us = phase.server.cpu_s() * 1e6;
        result.set("server_cpu_us_per_delivery", cpu_us / stats.delivered.max(1) as f64);
        result.set("server_cpu_us_per_publish", cpu_us / stats.published.max(1) as f64);
    }
    result.set_phase(&phase);
    result.set_latency(&stats);
    result.set_connect(&stats);
    result.add_checks(&stats);
    result.add_checks(&final_stats);
    if stats.users_error > 0 {
        result.ok = false;
    }
    Ok(result)
}
