//! The `table` subcommand: medians of repeated runs, Herald beside Nchan, with ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::RunResult;
use crate::stats_util::median;
use crate::target::TargetKind;

/// Whether a bigger value of a metric is better.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// A metric and which direction is better.
type Metric = (&'static str, Better);

/// The figures compared for each scenario and mode. A mode without an entry of its own takes the
/// entry of its first part (`window, websocket` takes `window`'s), or else its scenario's entry
/// with mode `""` (the one-to-one sweep's `long-poll` and `websocket`, the v2 storm's
/// `v2, ticket` …), always in a row of its own.
const HEADLINES: &[(&str, &str, &[Metric])] = &[
    (
        "idle",
        "",
        &[
            ("server_rss_kb_per_conn", Better::Lower),
            ("server_cpu_us_per_subscription", Better::Lower),
            ("server_idle_cpu_pct", Better::Lower),
            ("all_connected_s", Better::Lower),
            ("connect_p99_ms", Better::Lower),
            ("listen_drops", Better::Lower),
        ],
    ),
    (
        "broadcast",
        "window",
        &[
            ("deliveries_per_s", Better::Higher),
            ("server_cpu_us_per_delivery", Better::Lower),
            ("server_cpu_us_per_publish", Better::Lower),
            ("latency_p50_ms", Better::Lower),
            ("latency_p99_ms", Better::Lower),
        ],
    ),
    (
        "broadcast",
        "rate",
        &[
            ("latency_p50_ms", Better::Lower),
            ("latency_p99_ms", Better::Lower),
            ("latency_p999_ms", Better::Lower),
            ("latency_max_ms", Better::Lower),
            ("server_cpu_us_per_delivery", Better::Lower),
        ],
    ),
    (
        "one-to-one",
        "",
        &[
            ("max_rate_under_bound", Better::Higher),
            ("latency_p50_ms_at_max", Better::Lower),
            ("latency_p99_ms_at_max", Better::Lower),
            ("server_cpu_us_per_delivery_at_max", Better::Lower),
            ("server_cpu_us_per_delivery_at_ref", Better::Lower),
            ("publish_p99_ms_at_max", Better::Lower),
        ],
    ),
    (
        "storm",
        "",
        &[
            ("time_to_all_subscribed_s", Better::Lower),
            ("connect_p99_ms", Better::Lower),
            ("server_cpu_us_per_subscription", Better::Lower),
            ("listen_drops", Better::Lower),
            ("connect_failed", Better::Lower),
        ],
    ),
    (
        "neurow",
        "",
        &[
            ("users_error", Better::Lower),
            ("latency_p99_ms", Better::Lower),
            ("server_cpu_us_per_publish", Better::Lower),
        ],
    ),
    // Herald's store (no Nchan counterpart): the mode names the store and how events are due.
    (
        "store-floor",
        "",
        &[
            ("rows_per_s", Better::Higher),
            ("commit_p50_ms", Better::Lower),
            ("commit_p99_ms", Better::Lower),
            ("cpu_us_per_row", Better::Lower),
            ("db_cpu_us_per_row", Better::Lower),
        ],
    ),
    (
        "store-insert",
        "",
        &[
            ("inserts_per_s", Better::Higher),
            ("latency_p50_ms", Better::Lower),
            ("latency_p99_ms", Better::Lower),
            ("server_cpu_us_per_insert", Better::Lower),
            ("db_cpu_us_per_insert", Better::Lower),
            ("fire_lag_p50_ms", Better::Lower),
            ("fire_lag_p99_ms", Better::Lower),
            ("other_cpu_pct", Better::Lower),
        ],
    ),
    (
        "store-fire-lag",
        "",
        &[
            ("fire_lag_p50_ms", Better::Lower),
            ("fire_lag_p99_ms", Better::Lower),
            ("fire_lag_max_ms", Better::Lower),
            ("arrival_lag_p50_ms", Better::Lower),
            ("arrival_lag_p99_ms", Better::Lower),
            ("insert_phase_per_s", Better::Higher),
            ("server_cpu_pct", Better::Lower),
            ("db_cpu_pct", Better::Lower),
        ],
    ),
    (
        "login",
        "",
        &[
            ("logins_per_s", Better::Higher),
            ("latency_p50_ms", Better::Lower),
            ("latency_p99_ms", Better::Lower),
            ("server_cpu_ms_per_login", Better::Lower),
            ("signups_per_s", Better::Higher),
        ],
    ),
];

/// Splits off runs whose `other_cpu_pct` exceeds `max_other_pct`; returns the kept runs and how
/// many were dropped. Runs without the metric are kept.
pub fn drop_disturbed(results: Vec<RunResult>, max_other_pct: Option<f64>) -> (Vec<RunResult>, usize) {
    let Some(limit) = max_other_pct else {
        return (results, 0);
    };
    let total = results.len();
    let kept: Vec<RunResult> = results
        .into_iter()
        .filter(|r| r.metrics.get("other_cpu_pct").is_none_or(|&v| v <= limit))
        .collect();
    let dropped = total - kept.len();
    (kept, dropped)
}

/// Renders the comparison of `results`.
pub fn table(results: &[RunResult], markdown: bool) -> String {
    // (scenario, mode, topics a connection (0: one, as v1), target) -> runs
    type Key = (String, String, u64, TargetKind);
    let topics_of = |r: &RunResult| r.metrics.get("topics_per_connection").map_or(0, |&n| n as u64);
    let mut groups: BTreeMap<Key, Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        groups
            .entry((r.scenario.clone(), r.mode.clone(), topics_of(r), r.target))
            .or_default()
            .push(r);
    }
    let listed = |scenario: &str, mode: &str| HEADLINES.iter().any(|(s, m, _)| *s == scenario && *m == mode);
    // The HEADLINES mode whose figures a run's mode shows.
    let entry_of = |scenario: &str, mode: &str| -> String {
        let first = mode.split(", ").next().unwrap_or_default();
        if listed(scenario, mode) {
            mode.to_owned()
        } else if listed(scenario, first) {
            first.to_owned()
        } else {
            String::new()
        }
    };
    let mut variants: Vec<(&str, String, u64, &[Metric])> = Vec::new();
    for (scenario, mode, metrics) in HEADLINES {
        let mut kinds: Vec<(String, u64)> = groups
            .keys()
            .filter(|k| k.0 == *scenario && entry_of(scenario, &k.1) == *mode)
            .map(|k| (k.1.clone(), k.2))
            .collect();
        kinds.dedup();
        variants.extend(kinds.into_iter().map(|(m, t)| (*scenario, m, t, *metrics)));
    }
    let mut rows: Vec<[String; 6]> = Vec::new();
    for (scenario, mode, topics, metrics) in variants {
        let get = |t: TargetKind| groups.get(&(scenario.to_owned(), mode.clone(), topics, t));
        let (herald, nchan) = (get(TargetKind::Herald), get(TargetKind::Nchan));
        // A v2 mode ("v2, ticket") already says v2.
        let v2 = if mode.starts_with("v2") { "" } else { "v2, " };
        let detail: Vec<String> = [
            (!mode.is_empty()).then(|| mode.clone()),
            (topics > 0).then(|| format!("{v2}{topics} topic{}", if topics == 1 { "" } else { "s" })),
        ]
        .into_iter()
        .flatten()
        .collect();
        let name = if detail.is_empty() {
            scenario.to_owned()
        } else {
            format!("{scenario} ({})", detail.join(", "))
        };
        for (metric, better) in metrics.iter() {
            let med = |runs: Option<&Vec<&RunResult>>| {
                runs.map(|rs| {
                    let vals: Vec<f64> = rs.iter().filter_map(|r| r.metrics.get(*metric).copied()).collect();
                    (median(vals.clone()), vals.len())
                })
            };
            let (h, n) = (med(herald), med(nchan));
            if h.is_none_or(|v| v.1 == 0) && n.is_none_or(|v| v.1 == 0) {
                continue;
            }
            let cell = |v: Option<(f64, usize)>| match v {
                Some((m, k)) if k > 0 => format!("{} (n={k})", fmt(m)),
                _ => "-".to_owned(),
            };
            let (ratio, verdict) = match (h, n) {
                (Some((hv, hk)), Some((nv, nk))) if hk > 0 && nk > 0 && nv != 0.0 => {
                    let r = hv / nv;
                    let herald_better = match better {
                        Better::Higher => r > 1.0,
                        Better::Lower => r < 1.0,
                    };
                    (
                        format!("{r:.2}"),
                        if (r - 1.0).abs() < 0.05 {
                            "≈".to_owned()
                        } else if herald_better {
                            "herald".to_owned()
                        } else {
                            "nchan".to_owned()
                        },
                    )
                }
                _ => ("-".to_owned(), String::new()),
            };
            rows.push([name.clone(), (*metric).to_owned(), cell(h), cell(n), ratio, verdict]);
        }
    }
    let header = [
        "scenario",
        "metric (median)",
        "herald",
        "nchan",
        "herald/nchan",
        "better",
    ]
    .map(str::to_owned);
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for r in &rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    } else {
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in std::iter::once(&header).chain(rows.iter()) {
            let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{} {} {} ({})", r.target, r.scenario, r.mode, r.run_id))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nruns with delivery errors: {}", failed.join(", "));
    }
    let bound: Vec<String> = results
        .iter()
        .filter_map(|r| {
            r.bottleneck
                .as_ref()
                .map(|b| format!("{} {} {}: {}", r.target, r.scenario, r.mode, b.reason))
        })
        .collect();
    if !bound.is_empty() {
        let _ = writeln!(out, "\nload tool possibly the bottleneck in:");
        for b in bound {
            let _ = writeln!(out, "  {b}");
        }
    }
    out
}

fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: TargetKind, rss: f64) -> RunResult {
        let mut r = RunResult::new("idle", "", target, "", "x", 10, 1);
        r.set("server_rss_kb_per_conn", rss);
        r
    }

    #[test]
    fn disturbed_runs_are_dropped() {
        let mut noisy = run(TargetKind::Herald, 9.0);
        noisy.set("other_cpu_pct", 80.0);
        let (kept, dropped) = drop_disturbed(vec![noisy, run(TargetKind::Herald, 1.0)], Some(30.0));
        assert_eq!((kept.len(), dropped), (1, 1));
    }

    #[test]
    fn long_poll_and_v2_storm_rows_are_kept_apart() {
        let mut results = Vec::new();
        for (scenario, mode, metric, value) in [
            ("one-to-one", "", "max_rate_under_bound", 50000.0),
            ("one-to-one", "long-poll", "max_rate_under_bound", 20000.0),
            ("storm", "", "server_cpu_us_per_subscription", 30.0),
            ("storm", "v2, ticket", "server_cpu_us_per_subscription", 40.0),
        ] {
            let mut r = RunResult::new(scenario, mode, TargetKind::Herald, "", "x", 10, 1);
            r.set(metric, value);
            results.push(r);
        }
        let t = table(&results, true);
        assert!(t.contains("| one-to-one | max_rate_under_bound | 50000 (n=1) |"), "{t}");
        assert!(
            t.contains("| one-to-one (long-poll) | max_rate_under_bound | 20000 (n=1) |"),
            "{t}"
        );
        assert!(
            t.contains("| storm | server_cpu_us_per_subscription | 30.0 (n=1) |"),
            "{t}"
        );
        assert!(
            t.contains("| storm (v2, ticket) | server_cpu_us_per_subscription | 40.0 (n=1) |"),
            "{t}"
        );
    }

    #[test]
    fn websocket_rows_take_their_modes_figures_apart() {
        let mut results = Vec::new();
        for (scenario, mode, metric, value) in [
            ("idle", "websocket", "server_rss_kb_per_conn", 2.5),
            ("broadcast", "window", "server_cpu_us_per_delivery", 0.5),
            ("broadcast", "window, websocket", "server_cpu_us_per_delivery", 0.7),
            ("broadcast", "rate, websocket", "latency_p99_ms", 90.0),
            ("one-to-one", "websocket", "max_rate_under_bound", 40000.0),
            (
                "one-to-one",
                "websocket, publish over ws",
                "server_cpu_us_per_delivery_at_ref",
                15.0,
            ),
        ] {
            let mut r = RunResult::new(scenario, mode, TargetKind::Herald, "", "x", 10, 1);
            r.set(metric, value);
            results.push(r);
        }
        let t = table(&results, true);
        for row in [
            "| idle (websocket) | server_rss_kb_per_conn | 2.50 (n=1) |",
            "| broadcast (window) | server_cpu_us_per_delivery | 0.50 (n=1) |",
            "| broadcast (window, websocket) | server_cpu_us_per_delivery | 0.70 (n=1) |",
            "| broadcast (rate, websocket) | latency_p99_ms | 90.0 (n=1) |",
            "| one-to-one (websocket) | max_rate_under_bound | 40000 (n=1) |",
            "| one-to-one (websocket, publish over ws) | server_cpu_us_per_delivery_at_ref | 15.0 (n=1) |",
        ] {
            assert!(t.contains(row), "{row} in\n{t}");
        }
    }

    #[test]
    fn medians_and_ratio() {
        let results = vec![
            run(TargetKind::Herald, 2.0),
            run(TargetKind::Herald, 4.0),
            run(TargetKind::Herald, 3.0),
            run(TargetKind::Nchan, 6.0),
        ];
        let t = table(&results, true);
        assert!(
            t.contains("| idle | server_rss_kb_per_conn | 3.00 (n=3) | 6.00 (n=1) | 0.50 | herald |"),
            "{t}"
        );
    }
}
