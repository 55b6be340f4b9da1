//! `GET /process_stats`: what an operator needs to debug a node, as one JSON document.
//!
//! Unlike `/metrics` (counters over time, for dashboards), this is a snapshot taken when asked,
//! including figures too costly or too detailed to scrape every few seconds: every stream's
//! outbox is visited for the depth distribution (≈5 ms at 100,000 streams).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{Value, json};

use super::InternalState;
use crate::observe::process;

/// The snapshot.
pub(super) fn collect(state: &InternalState) -> Value {
    let stats = state.node.hub.stats();
    let mut depths = Vec::with_capacity(state.node.liveness.len());
    let mut closing = 0usize;
    state.node.liveness.for_each_outbox(|outbox| {
        depths.push(outbox.depth());
        closing += usize::from(outbox.closing().is_some());
    });
    let outboxes = depth_summary(&mut depths);
    let allocator = process::allocator_memory();
    let fd_limits = process::fd_limits();
    let runtime = tokio::runtime::Handle::current().metrics();
    json!({
        "connections": {
            "open": state.public.open_connections(),
            "max": state.public.max_connections(),
            "streams": depths.len(),
            "streams_closing": closing,
            "shutting_down": state.public.is_stopping(),
        },
        "subscriptions": stats.subscriptions.load(Relaxed),
        "topics": stats.topics.load(Relaxed),
        "outbox_depth": outboxes,
        "history": {
            "messages": stats.history_messages.load(Relaxed),
            "bytes": stats.history_bytes.load(Relaxed),
        },
        "memory": {
            "rss_bytes": process::rss_bytes(),
            "allocated_bytes": allocator.map(|m| m.allocated),
            "allocator_resident_bytes": allocator.map(|m| m.resident),
        },
        "file_descriptors": {
            "open": process::open_fds(),
            "soft_limit": fd_limits.map(|l| l.soft),
            "hard_limit": fd_limits.map(|l| l.hard),
        },
        "runtime": {
            "workers": runtime.num_workers(),
            "tasks": runtime.num_alive_tasks(),
        },
    })
}

/// Max, p99 and mean of the outboxes' queued frames (sorts `depths`).
fn depth_summary(depths: &mut [usize]) -> Value {
    if depths.is_empty() {
        return json!({"max": 0, "p99": 0, "mean": 0.0});
    }
    depths.sort_unstable();
    let p99 = depths[(depths.len() * 99).div_ceil(100) - 1];
    let mean = depths.iter().sum::<usize>() as f64 / depths.len() as f64;
    json!({"max": depths[depths.len() - 1], "p99": p99, "mean": mean})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_summary_takes_the_nearest_rank() {
        assert_eq!(depth_summary(&mut []), json!({"max": 0, "p99": 0, "mean": 0.0}));
        let mut depths: Vec<usize> = (1..=200).rev().collect();
        assert_eq!(
            depth_summary(&mut depths),
            json!({"max": 200, "p99": 198, "mean": 100.5})
        );
        assert_eq!(depth_summary(&mut [3]), json!({"max": 3, "p99": 3, "mean": 3.0}));
    }
}
