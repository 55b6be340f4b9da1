//! Scenarios, run by the coordinator process.
//!
//! Each scenario builds worker plans, drives the workers through its phases, measures the server
//! and the tool around each phase ([`Meter`]), and returns a [`RunResult`]. Shared here: turning
//! the command line into a [`Target`], splitting subscriptions over workers, and the bounded
//! run-time each worker is given.

pub mod broadcast;
pub mod fire_lag;
pub mod idle;
pub mod login;
pub mod neurow;
pub mod one_to_one;
pub mod soak;
pub mod store;
pub mod storm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{Common, SubscriberArgs};
use crate::jwt::JwtSettings;
use crate::net;
use crate::procfs::{self, ProcDelta, ProcSample};
use crate::publish::Publisher;
use crate::report::{Bottleneck, RunResult};
use crate::stats::Stats;
use crate::target::{HttpUrl, PublishVia, Target, TargetKind, TokenIn, Transport};
use crate::worker::pool::Workers;
use crate::worker::protocol::{Command, NeurowPlan, Plan, Reply, TopicLayout};

/// Everything a scenario needs from the command line, resolved.
pub struct RunContext {
    /// Shared settings.
    pub common: Common,
    /// The server.
    pub target: Arc<Target>,
    /// Random id that keeps this run's topics apart from earlier runs'.
    pub run_id: String,
    /// WebSocket publisher connections per worker (`--publish-via ws`).
    pub ws_publish_connections: usize,
}

/// Comma-separated URLs, one per node of a cluster.
fn parse_urls(list: &str) -> anyhow::Result<Vec<HttpUrl>> {
    list.split(',').map(|u| u.trim().parse()).collect()
}

/// Comma-separated WebSocket URLs, `ws://` read as `http://` (the same request line follows).
fn parse_ws_urls(list: &str) -> anyhow::Result<Vec<HttpUrl>> {
    list.split(',')
        .map(|u| {
            let u = u.trim();
            match u.strip_prefix("ws://") {
                Some(rest) => format!("http://{rest}").parse(),
                None => u.parse(),
            }
        })
        .collect()
}

impl RunContext {
    /// Resolves URLs and tokens.
    pub fn new(common: &Common) -> anyhow::Result<Self> {
        let (sse_default, publish_default) = match common.target {
            TargetKind::Herald => ("http://127.0.0.1:4000/v1/subscribe", "http://127.0.0.1:3000/v1/publish"),
            TargetKind::Nchan => ("http://127.0.0.1:4100/sub/", "http://127.0.0.1:3100/pub/"),
        };
        let sse_url = common.sse_url.as_deref().unwrap_or(sse_default);
        let publish_url = common.publish_url.as_deref().unwrap_or(publish_default);
        let target = Target {
            kind: common.target,
            sse_urls: parse_urls(sse_url).context("SSE_URL")?,
            publish_urls: parse_urls(publish_url).context("PUBLISH_URL")?,
            sse_jwt: JwtSettings {
                issuer: common.sse_jwt_issuer.clone(),
                secret: common.sse_jwt_secret.clone(),
                audience: common.sse_jwt_audience.clone(),
                lifetime_s: common.sse_jwt_expiration,
            },
            publish_jwt: JwtSettings {
                issuer: common.publish_jwt_issuer.clone(),
                secret: common.publish_jwt_secret.clone(),
                audience: common.publish_jwt_audience.clone(),
                lifetime_s: common.publish_jwt_expiration,
            },
            user_agent: common.sse_user_agent.clone(),
            event: common.event.clone(),
            topics_per_connection: common.topics_per_connection,
            transport: Transport::Sse,
            poll_urls: Vec::new(),
            token_in: TokenIn::Header,
            ws_urls: Vec::new(),
            publish_via: PublishVia::Http,
        };
        let run_id: String = (0..6)
            .map(|_| char::from_digit(fastrand::u32(0..36), 36).unwrap_or('0'))
            .collect();
        Ok(Self {
            common: common.clone(),
            target: Arc::new(target),
            run_id,
            ws_publish_connections: 0,
        })
    }

    /// Makes subscribers receive as `args` says; `long_poll_ok`: the scenario can long-poll
    /// (one-to-one only: its subscribers each have their own topic).
    pub fn use_subscribers(&mut self, args: &SubscriberArgs, long_poll_ok: bool) -> anyhow::Result<()> {
        match args.transport {
            Transport::Sse => Ok(()),
            Transport::Longpoll if !long_poll_ok => {
                anyhow::bail!("long-polling subscribers are for one-to-one only")
            }
            Transport::Longpoll => self.use_long_poll(args.poll_url.as_deref()),
            Transport::Ws => self.use_websocket(args.ws_url.as_deref()),
        }
    }

    /// The WebSocket URLs (`None`: the target's default).
    fn ws_urls(&self, ws_url: Option<&str>) -> anyhow::Result<Vec<HttpUrl>> {
        let default = match self.common.target {
            TargetKind::Herald => "http://127.0.0.1:4000/v2/ws",
            TargetKind::Nchan => "http://127.0.0.1:4100/ws/",
        };
        parse_ws_urls(ws_url.unwrap_or(default)).context("WS_URL")
    }

    /// Makes subscribers hold a WebSocket each, to `ws_url` (comma-separated nodes; `None`: the
    /// target's default).
    pub fn use_websocket(&mut self, ws_url: Option<&str>) -> anyhow::Result<()> {
        if self.common.target == TargetKind::Nchan && self.common.topics_per_connection > 0 {
            anyhow::bail!("Nchan WebSocket subscribers hold one channel each: leave TOPICS_PER_CONNECTION at 0");
        }
        let urls = self.ws_urls(ws_url)?;
        let target = Arc::make_mut(&mut self.target);
        target.transport = Transport::Ws;
        target.ws_urls = urls;
        Ok(())
    }

    /// Makes the workers publish `via` HTTP or Herald's WebSocket, on `connections` WebSockets
    /// each for the latter.
    pub fn use_publish_via(&mut self, via: PublishVia, connections: usize, ws_url: Option<&str>) -> anyhow::Result<()> {
        if via == PublishVia::Http {
            return Ok(());
        }
        if self.common.target != TargetKind::Herald {
            anyhow::bail!("--publish-via ws is Herald's WebSocket publish command: use it with TARGET=herald");
        }
        if self.target.ws_urls.is_empty() {
            let urls = self.ws_urls(ws_url)?;
            Arc::make_mut(&mut self.target).ws_urls = urls;
        }
        Arc::make_mut(&mut self.target).publish_via = PublishVia::Ws;
        self.ws_publish_connections = connections.max(1);
        Ok(())
    }

    /// A result's mode: `base` (`window`, `rate` or empty), then the subscribers' transport
    /// unless SSE, then `publish over ws` when publishes go over Herald's WebSocket; so the table
    /// keeps each combination in a row of its own.
    pub fn mode(&self, base: &str) -> String {
        let publish = match self.target.publish_via {
            PublishVia::Http => "",
            PublishVia::Ws => "publish over ws",
        };
        [base, self.target.transport.mode(), publish]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Makes subscribers long-poll `poll_url` (comma-separated nodes; `None`: the target's default).
    pub fn use_long_poll(&mut self, poll_url: Option<&str>) -> anyhow::Result<()> {
        let default = match self.common.target {
            TargetKind::Herald => "http://127.0.0.1:4000/v2/poll",
            TargetKind::Nchan => "http://127.0.0.1:4100/lp/",
        };
        let urls = parse_urls(poll_url.unwrap_or(default)).context("POLL_URL")?;
        if self.common.topics_per_connection > 0 {
            anyhow::bail!("long-polling subscribers hold one topic each: leave TOPICS_PER_CONNECTION at 0");
        }
        let target = Arc::make_mut(&mut self.target);
        target.transport = Transport::Longpoll;
        target.poll_urls = urls;
        Ok(())
    }

    /// Makes Herald v2 subscribers put their credential in `token_in`.
    pub fn use_token_in(&mut self, token_in: TokenIn) -> anyhow::Result<()> {
        if token_in != TokenIn::Header && !self.target.is_v2() {
            anyhow::bail!("--token-in {token_in} needs Herald's v2 API: point SSE_URL at /v2/subscribe");
        }
        Arc::make_mut(&mut self.target).token_in = token_in;
        Ok(())
    }

    /// Topic prefix unique to this run.
    pub fn topic_prefix(&self, scenario: &str) -> String {
        format!("hl{}-{scenario}-", self.run_id)
    }

    /// Worker count for `subscribers` subscriptions.
    pub fn worker_count(&self, subscribers: usize) -> usize {
        let needed = subscribers.div_ceil(self.common.max_per_worker.max(1)).max(1);
        self.common.workers.unwrap_or(needed).max(needed)
    }

    /// Plans splitting `subscribers` evenly over the workers.
    pub fn plans(&self, subscribers: usize, topics: TopicLayout, max_runtime: Duration) -> Vec<Plan> {
        let workers = self.worker_count(subscribers);
        let ips = net::source_addresses(self.common.source_ips);
        let mut first = 0;
        (0..workers)
            .map(|w| {
                let count = subscribers / workers + usize::from(w < subscribers % workers);
                let plan = Plan {
                    worker: w,
                    target: (*self.target).clone(),
                    first_index: first,
                    subscribers: count,
                    topics: topics.clone(),
                    source_ips: ips.clone(),
                    reconnect: self.common.sse_auto_reconnect,
                    connect_timeout_ms: self.common.connect_timeout_ms,
                    publish_connections: self.common.publish_connections,
                    publish_timeout_ms: self.common.publish_timeout_ms,
                    ws_publish_connections: self.ws_publish_connections,
                    payload_size: self.common.payload_size,
                    max_runtime_ms: max_runtime.as_millis() as u64,
                    neurow: None,
                };
                first += count;
                plan
            })
            .collect()
    }

    /// Plans for the Neurow scenario: users split over workers, no pre-opened subscriptions.
    pub fn neurow_plans(&self, users: usize, neurow: NeurowPlan, max_runtime: Duration) -> Vec<Plan> {
        let mut plans = self.plans(0, TopicLayout::Shared(String::new()), max_runtime);
        let workers = self.worker_count(users);
        plans.resize(workers, plans[0].clone());
        for (w, plan) in plans.iter_mut().enumerate() {
            plan.worker = w;
            plan.neurow = Some(NeurowPlan {
                users: users / workers + usize::from(w < users % workers),
                ..neurow.clone()
            });
        }
        plans
    }

    /// A publisher in the coordinator process.
    pub fn publisher(&self, connections: usize) -> Publisher {
        Publisher::new(
            self.target.clone(),
            connections,
            Duration::from_millis(self.common.publish_timeout_ms),
        )
    }

    /// An empty result for `scenario`.
    pub fn result(&self, scenario: &str, mode: &str, connections: u64, workers: usize) -> RunResult {
        let mut result = RunResult::new(
            scenario,
            mode,
            self.common.target,
            &self.common.label,
            &self.run_id,
            connections,
            workers,
        );
        if self.common.topics_per_connection > 0 {
            // The table keeps multi-topic runs apart from one-topic runs of the same scenario.
            result.set("topics_per_connection", self.common.topics_per_connection as f64);
        }
        result
    }
}

/// Has every worker open its subscriptions, `concurrency` handshakes in flight each (0: all at
/// once), and returns their merged statistics and the slowest worker's time in µs.
pub async fn open_subscriptions(
    workers: &mut Workers,
    concurrency: usize,
    limit: Duration,
) -> anyhow::Result<(Stats, u64)> {
    workers.send_all(&Command::Connect { concurrency }).await?;
    Ok(merge_replies(&workers.replies(limit).await?))
}

/// Merges the statistics in worker replies.
pub fn merge_replies(replies: &[Reply]) -> (Stats, u64) {
    let mut total = Stats::default();
    let mut max_elapsed = 0;
    for r in replies {
        match r {
            Reply::Connected { stats, elapsed_us } => {
                total.merge(stats);
                max_elapsed = max_elapsed.max(*elapsed_us);
            }
            Reply::Stats { stats } => total.merge(stats),
            Reply::Progress { .. } | Reply::Error { .. } => {}
        }
    }
    (total, max_elapsed)
}

/// What a phase cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phase {
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Server processes.
    pub server: ProcDelta,
    /// The tool: coordinator plus workers (RSS change summed over them).
    pub tool: ProcDelta,
    /// Highest CPU share (0..1 of one core) of any single tool process.
    pub tool_max_process_share: f64,
    /// Busy time of the whole machine, seconds.
    pub machine_busy_s: f64,
    /// Server RSS at the end of the phase, KiB.
    pub server_rss_kb: u64,
    /// Connections dropped by full accept queues (machine-wide) during the phase.
    pub listen_drops: u64,
}

impl Phase {
    /// CPU not used by the server or the tool (another workload), seconds.
    pub fn other_cpu_s(&self) -> f64 {
        (self.machine_busy_s - self.server.cpu_s() - self.tool.cpu_s()).max(0.0)
    }

    /// Whether the tool, not the server, may have limited this phase.
    pub fn bottleneck(&self) -> Option<Bottleneck> {
        if self.wall_s <= 0.0 {
            return None;
        }
        let cores = procfs::allowed_cpus() as f64;
        let tool_share = self.tool.cpu_s() / self.wall_s;
        let reason = if self.tool_max_process_share > 0.9 {
            Some(format!(
                "a load-tool process used {:.0}% of a core",
                self.tool_max_process_share * 100.0
            ))
        } else if tool_share > 0.9 * cores {
            Some(format!(
                "the load tool used {:.0}% of its {cores} allowed core(s)",
                tool_share * 100.0
            ))
        } else if tool_share > 0.5 && self.tool.cpu_s() > self.server.cpu_s() {
            Some(format!(
                "the load tool used more CPU ({:.2} s) than the server ({:.2} s)",
                self.tool.cpu_s(),
                self.server.cpu_s()
            ))
        } else {
            None
        };
        reason.map(|reason| Bottleneck {
            reason,
            tool_cpu_pct: tool_share * 100.0,
            server_cpu_pct: self.server.cpu_s() / self.wall_s * 100.0,
        })
    }
}

/// Samples the server, the tool and the machine at phase boundaries.
pub struct Meter {
    server_pids: Vec<u32>,
    tool_pids: Vec<u32>,
    at: Instant,
    server: ProcSample,
    tool: Vec<ProcSample>,
    machine: u64,
    listen_drops: u64,
}

impl Meter {
    /// Starts measuring now.
    pub fn start(server_pids: &[u32], workers: &Workers) -> Self {
        Self::with_tool_pids(server_pids, workers.pids())
    }

    /// Starts measuring now, the tool being this process alone (scenarios without workers).
    pub fn start_alone(server_pids: &[u32]) -> Self {
        Self::with_tool_pids(server_pids, Vec::new())
    }

    fn with_tool_pids(server_pids: &[u32], worker_pids: Vec<u32>) -> Self {
        let mut tool_pids = vec![std::process::id()];
        tool_pids.extend(worker_pids);
        let mut m = Self {
            server_pids: server_pids.to_vec(),
            tool_pids,
            at: Instant::now(),
            server: ProcSample::default(),
            tool: Vec::new(),
            machine: 0,
            listen_drops: 0,
        };
        m.reset();
        m
    }

    /// Starts a new phase now without reporting the previous one.
    pub fn reset(&mut self) {
        self.at = Instant::now();
        self.server = procfs::sample_all(&self.server_pids);
        self.tool = self
            .tool_pids
            .iter()
            .map(|&p| procfs::sample(p).unwrap_or_default())
            .collect();
        self.machine = procfs::machine_busy_ticks();
        self.listen_drops = procfs::listen_drops();
    }

    /// Server RSS now, KiB.
    pub fn server_rss_kb(&self) -> u64 {
        procfs::sample_all(&self.server_pids).rss_kb
    }

    /// Ends the current phase, reports it, and starts the next.
    pub fn lap(&mut self) -> Phase {
        let wall_s = self.at.elapsed().as_secs_f64();
        let server_now = procfs::sample_all(&self.server_pids);
        let tool_now: Vec<ProcSample> = self
            .tool_pids
            .iter()
            .map(|&p| procfs::sample(p).unwrap_or_default())
            .collect();
        let mut tool = ProcDelta::default();
        let mut max_share: f64 = 0.0;
        for (now, before) in tool_now.iter().zip(&self.tool) {
            let d = now.since(before);
            tool.rss_kb += d.rss_kb;
            tool.user_s += d.user_s;
            tool.sys_s += d.sys_s;
            if wall_s > 0.0 {
                max_share = max_share.max(d.cpu_s() / wall_s);
            }
        }
        let machine_now = procfs::machine_busy_ticks();
        let drops_now = procfs::listen_drops();
        let phase = Phase {
            wall_s,
            server: server_now.since(&self.server),
            tool,
            tool_max_process_share: max_share,
            machine_busy_s: machine_now.saturating_sub(self.machine) as f64 / procfs::TICKS_PER_SEC,
            server_rss_kb: server_now.rss_kb,
            listen_drops: drops_now.saturating_sub(self.listen_drops),
        };
        self.at = Instant::now();
        self.server = server_now;
        self.tool = tool_now;
        self.machine = machine_now;
        self.listen_drops = drops_now;
        phase
    }
}

/// Logs a progress line on stderr.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("herald-load: {}", msg.as_ref());
}
