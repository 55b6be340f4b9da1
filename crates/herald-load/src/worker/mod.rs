//! Worker processes: where the subscriptions live.
//!
//! One process may hold at most 20,000 open files on the test machines, so connections are spread
//! over several workers, each a copy of this binary started as `herald-load __worker` and run on a
//! single-threaded runtime. The coordinator ([`pool`]) sends each one a [`protocol::Plan`] and then
//! commands; the worker ([`run`]) answers on stdout. A worker exits by itself after the plan's
//! `max_runtime_ms`, so no run can outlive its bound even if the coordinator dies.

pub mod pool;
pub mod protocol;

mod longpoll;
mod neurow;
mod rate;
mod subscriptions;
mod tickets;
mod websocket;

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

use crate::publish::{PublishError, Publisher};
use crate::stats::Stats;
use crate::target::{PublishVia, Target};
use crate::ws_publish::WsPublisher;
use protocol::{Command, Plan, Reply, TopicLayout};

/// How often a worker reports its delivery count while it changes.
const PROGRESS_EVERY: Duration = Duration::from_millis(5);

/// One subscription's identity and delivery bookkeeping, shared with the worker's publisher.
pub(crate) struct Slot {
    /// The JWT `sub` (topic) of this subscription.
    sub: String,
    /// Source address to bind.
    src: Option<IpAddr>,
    /// Distinct messages received.
    unique: AtomicU64,
    /// Messages the publisher had accepted for this subscriber.
    expected: AtomicU64,
    /// Last sequence number given to a publish on this topic (one-to-one only).
    next_seq: AtomicU64,
    /// A publish to this topic is in flight (publishes to one topic never overlap, so the server
    /// sees them in sequence order).
    busy: AtomicBool,
    /// Woken to drop the stream, which is then re-opened with `Last-Event-ID` (soak).
    kick: Notify,
    /// Herald v2 `--token-in ticket`: the ticket minted for this subscriber, taken by its
    /// subscribe (a ticket works once).
    ticket: Mutex<Option<String>>,
}

/// State shared by all tasks of one worker.
pub(crate) struct Worker {
    plan: Plan,
    target: Arc<Target>,
    stats: Mutex<Stats>,
    slots: Vec<Slot>,
    publisher: Publisher,
    /// `--publish-via ws`: publishes go over Herald's WebSocket instead of `publisher`.
    ws_publisher: Option<WsPublisher>,
    /// Message events received, for progress reports.
    delivered: AtomicU64,
    /// Subscriptions opened, for progress reports.
    connected: AtomicU64,
    /// First subscribe attempts finished (successfully or not).
    attempts_done: AtomicU64,
    /// Woken when `attempts_done` grows.
    attempt_notify: Notify,
    /// Losses already reported by earlier drains.
    lost_reported: AtomicU64,
}

impl Worker {
    fn new(plan: Plan) -> Self {
        let target = Arc::new(plan.target.clone());
        let slots = (0..plan.subscribers)
            .map(|i| {
                let global = plan.first_index + i;
                Slot {
                    sub: plan.topics.sub(global),
                    src: (!plan.source_ips.is_empty()).then(|| plan.source_ips[global % plan.source_ips.len()]),
                    unique: AtomicU64::new(0),
                    expected: AtomicU64::new(0),
                    next_seq: AtomicU64::new(0),
                    busy: AtomicBool::new(false),
                    kick: Notify::new(),
                    ticket: Mutex::new(None),
                }
            })
            .collect();
        let publisher = Publisher::new(
            target.clone(),
            plan.publish_connections,
            Duration::from_millis(plan.publish_timeout_ms),
        );
        let publisher = if plan.neurow.as_ref().is_some_and(|n| n.tolerate_faults) {
            publisher.without_retry()
        } else {
            publisher
        };
        let ws_publisher = (target.publish_via == PublishVia::Ws).then(|| {
            // The token may publish to this run's topics and no others.
            let grant = match &plan.topics {
                TopicLayout::Shared(sub) => sub.clone(),
                TopicLayout::PerSubscriber(prefix) => format!("{prefix}*"),
            };
            WsPublisher::new(
                target.clone(),
                plan.ws_publish_connections,
                Duration::from_millis(plan.publish_timeout_ms),
                vec![grant],
            )
        });
        Self {
            plan,
            target,
            stats: Mutex::new(Stats::default()),
            slots,
            publisher,
            ws_publisher,
            delivered: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            attempts_done: AtomicU64::new(0),
            attempt_notify: Notify::new(),
            lost_reported: AtomicU64::new(0),
        }
    }

    /// Publishes one message to `sub`'s topic, over HTTP or Herald's WebSocket as the plan says.
    async fn publish(&self, sub: &str, make_payload: impl FnOnce() -> String) -> Result<Duration, PublishError> {
        match &self.ws_publisher {
            Some(ws) => ws.publish(sub, make_payload).await,
            None => self.publisher.publish(sub, make_payload).await,
        }
    }

    /// Most publishes the rate scheduler keeps in flight: four per HTTP connection, or 64 per
    /// WebSocket (whose commands are pipelined).
    fn max_outstanding(&self) -> u64 {
        let per = match self.ws_publisher {
            Some(_) => self.plan.ws_publish_connections as u64 * 64,
            None => self.plan.publish_connections as u64 * 4,
        };
        per.max(16)
    }

    /// The statistics; never held across an await.
    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_stats(&self) -> Stats {
        std::mem::take(&mut *self.stats())
    }

    /// Drops about `fraction` of the streams, chosen at random; each is re-opened at once with
    /// `Last-Event-ID` (a client's network blip, as a soak run repeats it).
    fn kick(&self, fraction: f64) {
        for slot in &self.slots {
            if fastrand::f64() < fraction {
                slot.kick.notify_one();
            }
        }
    }

    /// Messages still missing over all subscriptions.
    fn missing(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| {
                s.expected
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.unique.load(Ordering::Relaxed))
            })
            .sum()
    }

    /// Waits until nothing is missing or `timeout` passes; returns the statistics of the
    /// interval with the newly lost messages.
    async fn drain(&self, expected: Option<u64>, timeout: Duration) -> Stats {
        if let Some(e) = expected {
            for s in &self.slots {
                s.expected.store(e, Ordering::Relaxed);
            }
        }
        let deadline = Instant::now() + timeout;
        while self.missing() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let missing = self.missing();
        let before = self.lost_reported.fetch_max(missing, Ordering::Relaxed);
        let mut stats = self.take_stats();
        stats.lost += missing.saturating_sub(before);
        stats
    }

    async fn execute(self: &Arc<Self>, cmd: Command) -> Reply {
        match cmd {
            Command::Connect { concurrency } => {
                let started = Instant::now();
                subscriptions::connect_all(self, concurrency).await;
                Reply::Connected {
                    stats: self.take_stats(),
                    elapsed_us: started.elapsed().as_micros() as u64,
                }
            }
            Command::MintTickets { concurrency } => {
                tickets::mint_all(self, concurrency).await;
                Reply::Stats {
                    stats: self.take_stats(),
                }
            }
            Command::Snapshot { reset } => Reply::Stats {
                stats: if reset { self.take_stats() } else { self.stats().clone() },
            },
            Command::Drain { expected, timeout_ms } => Reply::Stats {
                stats: self.drain(expected, Duration::from_millis(timeout_ms)).await,
            },
            Command::RunRate {
                rate,
                duration_ms,
                drain_ms,
                reconnect_fraction,
            } => {
                self.take_stats();
                if reconnect_fraction > 0.0 {
                    let worker = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(duration_ms / 2)).await;
                        worker.kick(reconnect_fraction);
                    });
                }
                rate::run(self, rate, Duration::from_millis(duration_ms)).await;
                Reply::Stats {
                    stats: self.drain(None, Duration::from_millis(drain_ms)).await,
                }
            }
            Command::RunNeurow { duration_ms, grace_ms } => match &self.plan.neurow {
                Some(plan) => {
                    neurow::run(
                        self,
                        plan,
                        Duration::from_millis(duration_ms),
                        Duration::from_millis(grace_ms),
                    )
                    .await;
                    Reply::Stats {
                        stats: self.take_stats(),
                    }
                }
                None => Reply::Error {
                    message: "no neurow plan".into(),
                },
            },
            Command::Close => Reply::Stats {
                stats: self.take_stats(),
            },
        }
    }
}

/// Writes one reply line to stdout.
fn send(reply: &Reply) {
    let line = serde_json::to_string(reply)
        .unwrap_or_else(|e| format!(r#"{{"msg":"error","message":"cannot encode reply: {e}"}}"#));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Entry point of `herald-load __worker`.
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let plan_line = lines.next_line().await?.context("worker: no plan on stdin")?;
    let plan: Plan = serde_json::from_str(&plan_line).context("worker: bad plan")?;
    let max_runtime = Duration::from_millis(plan.max_runtime_ms);
    let worker_no = plan.worker;
    let worker = Arc::new(Worker::new(plan));

    tokio::spawn(async move {
        tokio::time::sleep(max_runtime).await;
        eprintln!("herald-load worker {worker_no}: run time limit reached, exiting");
        std::process::exit(3);
    });
    tokio::spawn(report_progress(worker.clone()));

    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Command>(&line) {
            Ok(Command::Close) => {
                send(&worker.execute(Command::Close).await);
                // Exiting closes every socket at once; SO_LINGER 0 makes each close a reset.
                std::process::exit(0);
            }
            Ok(cmd) => worker.execute(cmd).await,
            Err(e) => Reply::Error {
                message: format!("bad command: {e}"),
            },
        };
        send(&reply);
    }
    // The coordinator went away: stop.
    std::process::exit(0);
}

async fn report_progress(worker: Arc<Worker>) {
    let mut last = (u64::MAX, u64::MAX);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = (
            worker.delivered.load(Ordering::Relaxed),
            worker.connected.load(Ordering::Relaxed),
        );
        if now != last {
            last = now;
            send(&Reply::Progress {
                delivered: now.0,
                connected: now.1,
            });
        }
    }
}
