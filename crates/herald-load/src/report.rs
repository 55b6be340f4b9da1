//! Run results: the human table and the one-line JSON record (`RESULT {...}`).
//!
//! The JSON line is the machine interface: `bench/compare.sh` greps it, and the `table` and `plot`
//! subcommands read it back. Headline figures live in the flat `metrics` map so that tools can
//! pick them by name without knowing each scenario's structure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::payload::now_s;
use crate::procfs;
use crate::scenario::Phase;
use crate::stats::{Stats, Summary};
use crate::target::TargetKind;

/// Prefix of the JSON result line.
pub const RESULT_PREFIX: &str = "RESULT ";

/// Why the load tool, not the server, may have limited a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bottleneck {
    /// Human explanation.
    pub reason: String,
    /// Load tool CPU, % of one core.
    pub tool_cpu_pct: f64,
    /// Server CPU, % of one core.
    pub server_cpu_pct: f64,
}

/// Delivery checks: all must be zero for a valid run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checks {
    /// Published but never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Received after a later message of the same topic.
    pub out_of_order: u64,
    /// Subscriptions that could not be opened.
    pub connect_failed: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Every error by label.
    pub errors: BTreeMap<String, u64>,
}

impl Checks {
    /// Adds the counts of `stats`.
    pub fn add(&mut self, stats: &Stats) {
        self.lost += stats.lost;
        self.duplicates += stats.duplicates;
        self.out_of_order += stats.out_of_order;
        self.connect_failed += stats.connect_failed;
        self.publish_errors += stats.publish_errors;
        for (k, v) in &stats.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// True when nothing went wrong.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.connect_failed == 0
            && self.publish_errors == 0
            && self.errors.values().all(|&v| v == 0)
    }
}

/// One period of a soak run: the load, what the subscribers saw, and the server's state at its end.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SoakSample {
    /// Seconds since the load started, at the end of the period.
    pub elapsed_s: f64,
    /// Messages per second published in the period.
    pub achieved_rate: f64,
    /// Messages received in the period.
    pub delivered: u64,
    /// Streams re-opened with `Last-Event-ID` in the period.
    pub reconnects: u64,
    /// Lost + duplicated + out of order + errors in the period.
    pub anomalies: u64,
    /// End-to-end latency in the period.
    pub latency: Summary,
    /// Server CPU, % of one core (with `--server-pid`).
    pub server_cpu_pct: f64,
    /// Server resident memory, MiB.
    pub rss_mib: f64,
    /// Bytes in live allocations (Herald's jemalloc), MiB.
    pub allocated_mib: f64,
    /// Server open file descriptors.
    pub fds: u64,
    /// Open streams, as the server counts them.
    pub streams: u64,
    /// Deepest subscriber outbox (queued frames).
    pub outbox_max: u64,
    /// 99th percentile of the outbox depths.
    pub outbox_p99: u64,
    /// Live tokio tasks in the server.
    pub tasks: u64,
}

/// One rate of the one-to-one sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Requested messages per second.
    pub target_rate: f64,
    /// Accepted publishes per second.
    pub achieved_rate: f64,
    /// End-to-end latency.
    pub latency: Summary,
    /// Messages received.
    pub delivered: u64,
    /// Server CPU per delivered message, microseconds.
    pub server_cpu_us_per_delivery: f64,
    /// Server CPU, % of one core.
    pub server_cpu_pct: f64,
    /// Load tool CPU, % of one core.
    pub tool_cpu_pct: f64,
    /// CPU used by neither the server nor the tool (another workload), % of one core.
    #[serde(default)]
    pub other_cpu_pct: f64,
    /// Lost + duplicated + out of order + errors in this step.
    pub anomalies: u64,
    /// Set when the tool may have been the limit.
    pub bottleneck: Option<String>,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name (`idle`, `broadcast`, ...).
    pub scenario: String,
    /// Variant (`window`, `rate`, or empty).
    pub mode: String,
    /// Server kind.
    pub target: TargetKind,
    /// User label.
    pub label: String,
    /// Random run id (part of every topic name).
    pub run_id: String,
    /// Start time, Unix seconds.
    pub unix_time: u64,
    /// Connections (or virtual users) requested.
    pub connections: u64,
    /// Worker processes.
    pub workers: usize,
    /// `nproc`, CPU model, kernel.
    pub machine: String,
    /// No loss, duplicate, reordering or error.
    pub ok: bool,
    /// The delivery checks.
    pub checks: Checks,
    /// Headline figures by name.
    pub metrics: BTreeMap<String, f64>,
    /// End-to-end latency over the measured phase.
    pub latency: Option<Summary>,
    /// Subscribe time.
    pub connect: Option<Summary>,
    /// One-to-one sweep steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// Soak samples, one per period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SoakSample>,
    /// Set when the load tool may have been the bottleneck.
    pub bottleneck: Option<Bottleneck>,
    /// Free-form remarks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RunResult {
    /// An empty result.
    pub fn new(
        scenario: &str,
        mode: &str,
        target: TargetKind,
        label: &str,
        run_id: &str,
        connections: u64,
        workers: usize,
    ) -> Self {
        Self {
            scenario: scenario.to_owned(),
            mode: mode.to_owned(),
            target,
            label: label.to_owned(),
            run_id: run_id.to_owned(),
            unix_time: now_s(),
            connections,
            workers,
            machine: procfs::machine_description(),
            ok: true,
            checks: Checks::default(),
            metrics: BTreeMap::new(),
            latency: None,
            connect: None,
            steps: Vec::new(),
            samples: Vec::new(),
            bottleneck: None,
            notes: Vec::new(),
        }
    }

    /// Sets one metric.
    pub fn set(&mut self, name: &str, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.to_owned(), value);
        }
    }

    /// Records the latency summary, also as flat metrics.
    pub fn set_latency(&mut self, stats: &Stats) {
        if stats.latency.count() == 0 {
            return;
        }
        let s = stats.latency.summary();
        self.set("latency_p50_ms", s.p50_ms);
        self.set("latency_p90_ms", s.p90_ms);
        self.set("latency_p99_ms", s.p99_ms);
        self.set("latency_p999_ms", s.p999_ms);
        self.set("latency_max_ms", s.max_ms);
        self.latency = Some(s);
    }

    /// Records the subscribe-time summary, also as flat metrics.
    pub fn set_connect(&mut self, stats: &Stats) {
        if stats.connect.count() == 0 {
            return;
        }
        let s = stats.connect.summary();
        self.set("connect_p50_ms", s.p50_ms);
        self.set("connect_p99_ms", s.p99_ms);
        self.set("connect_max_ms", s.max_ms);
        self.connect = Some(s);
    }

    /// Records the cost of the measured phase.
    pub fn set_phase(&mut self, phase: &Phase) {
        self.set("wall_s", phase.wall_s);
        self.set("server_cpu_s", phase.server.cpu_s());
        self.set("server_user_s", phase.server.user_s);
        self.set("server_sys_s", phase.server.sys_s);
        self.set("tool_cpu_s", phase.tool.cpu_s());
        if phase.wall_s > 0.0 {
            self.set("server_cpu_pct", phase.server.cpu_s() / phase.wall_s * 100.0);
            self.set("tool_cpu_pct", phase.tool.cpu_s() / phase.wall_s * 100.0);
        }
        self.set_other_load(phase.other_cpu_s(), phase.wall_s);
        if let Some(b) = phase.bottleneck() {
            self.bottleneck = Some(b);
        }
    }

    /// Records CPU used by neither side (another workload) over `wall_s` seconds of measurement,
    /// as `other_cpu_pct` (% of one core): `table --max-other-pct` drops disturbed runs by it.
    pub fn set_other_load(&mut self, other_cpu_s: f64, wall_s: f64) {
        self.set("other_cpu_s", other_cpu_s);
        if wall_s > 0.0 {
            self.set("other_cpu_pct", other_cpu_s / wall_s * 100.0);
        }
    }

    /// Adds the checks of `stats` and updates `ok`.
    pub fn add_checks(&mut self, stats: &Stats) {
        self.checks.add(stats);
        self.ok = self.checks.clean();
    }

    /// The human-readable table.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let mode = if self.mode.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.mode)
        };
        let _ = writeln!(
            out,
            "== {}{mode} against {} — {} connections, {} worker(s), run {} ==",
            self.scenario, self.target, self.connections, self.workers, self.run_id
        );
        for (k, v) in &self.metrics {
            let _ = writeln!(out, "  {k:<34} {}", fmt_num(*v));
        }
        for (name, s) in [("latency", &self.latency), ("connect", &self.connect)] {
            if let Some(s) = s {
                let _ = writeln!(
                    out,
                    "  {name:<34} n={} p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2} ms",
                    s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
                );
            }
        }
        if !self.steps.is_empty() {
            let _ = writeln!(
                out,
                "  {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>6}",
                "rate", "achieved", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "srv us/msg", "srv %", "tool %", "errors"
            );
            for s in &self.steps {
                let _ = writeln!(
                    out,
                    "  {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>7.0} {:>7.0} {:>7.0} {:>6}{}",
                    s.target_rate,
                    s.achieved_rate,
                    s.latency.p50_ms,
                    s.latency.p99_ms,
                    s.latency.p999_ms,
                    s.latency.max_ms,
                    s.server_cpu_us_per_delivery,
                    s.server_cpu_pct,
                    s.tool_cpu_pct,
                    s.other_cpu_pct,
                    s.anomalies,
                    if s.bottleneck.is_some() { "  (tool-bound?)" } else { "" }
                );
            }
        }
        let c = &self.checks;
        let _ = writeln!(
            out,
            "  {:<34} lost={} duplicated={} out_of_order={} connect_failed={} publish_errors={} => {}",
            "checks",
            c.lost,
            c.duplicates,
            c.out_of_order,
            c.connect_failed,
            c.publish_errors,
            if self.ok { "OK" } else { "FAILED" }
        );
        for (k, v) in &c.errors {
            let _ = writeln!(out, "  {:<34} {v}", format!("error {k}"));
        }
        if let Some(b) = &self.bottleneck {
            let _ = writeln!(
                out,
                "  {:<34} {} (tool {:.0}% vs server {:.0}% of a core)",
                "WARNING load tool bound?", b.reason, b.tool_cpu_pct, b.server_cpu_pct
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }

    /// The `RESULT {json}` line.
    pub fn json_line(&self) -> String {
        format!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
        )
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Reads every `RESULT` line of the given texts.
pub fn parse_results(text: &str) -> Vec<RunResult> {
    text.lines()
        .filter_map(|l| l.find(RESULT_PREFIX).map(|i| &l[i + RESULT_PREFIX.len()..]))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}
