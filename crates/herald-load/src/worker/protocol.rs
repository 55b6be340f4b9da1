//! Messages between the coordinator and its worker processes.
//!
//! A worker is this same binary started as `herald-load __worker`. It reads one JSON [`Plan`]
//! line and then [`Command`] lines on stdin, and writes [`Reply`] lines on stdout; its stderr is
//! the coordinator's, for diagnostics. JSON lines keep the protocol easy to debug by hand.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::stats::Stats;
use crate::target::Target;

/// How subscriptions are named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicLayout {
    /// Every subscriber on the same topic (`sub` is this string).
    Shared(String),
    /// One topic per subscriber: `sub` is the prefix followed by the global subscriber index.
    PerSubscriber(String),
}

impl TopicLayout {
    /// The `sub` of global subscriber `index`.
    pub fn sub(&self, index: usize) -> String {
        match self {
            TopicLayout::Shared(s) => s.clone(),
            TopicLayout::PerSubscriber(prefix) => format!("{prefix}{index}"),
        }
    }
}

/// Settings of the Neurow virtual-user scenario (spec §7.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeurowPlan {
    /// Virtual users run by this worker.
    pub users: usize,
    /// Ride out faults (see `--tolerate-faults`).
    #[serde(default)]
    pub tolerate_faults: bool,
    /// Each user first waits a random `1..=initial_delay_max_ms`.
    pub initial_delay_max_ms: u64,
    /// Messages per user: random in `messages_min + 1 ..= messages_max`.
    pub messages_min: u64,
    /// See `messages_min`.
    pub messages_max: u64,
    /// Delay before each message: random in `delay_min_ms + 1 ..= delay_max_ms`.
    pub delay_min_ms: u64,
    /// See `delay_min_ms`.
    pub delay_max_ms: u64,
    /// Prefix of the users' topics (made unique per run).
    pub topic_prefix: String,
}

/// Everything a worker needs, sent once at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// Worker number, for diagnostics.
    pub worker: usize,
    /// Server to talk to.
    pub target: Target,
    /// Global index of this worker's first subscriber.
    pub first_index: usize,
    /// Subscribers held by this worker (zero in the Neurow scenario).
    pub subscribers: usize,
    /// Topic naming.
    pub topics: TopicLayout,
    /// Source addresses; subscriber `i` binds to `source_ips[i % len]`.
    pub source_ips: Vec<IpAddr>,
    /// Re-open a stream that ends, with `Last-Event-ID`.
    pub reconnect: bool,
    /// Limit on one subscribe (connect + response head), milliseconds.
    pub connect_timeout_ms: u64,
    /// Publisher keep-alive connections of this worker.
    pub publish_connections: usize,
    /// Limit on one publish, milliseconds.
    pub publish_timeout_ms: u64,
    /// WebSocket publisher connections of this worker (`--publish-via ws`).
    #[serde(default)]
    pub ws_publish_connections: usize,
    /// Minimum payload size, bytes.
    pub payload_size: usize,
    /// The worker exits by itself after this long, whatever happens.
    pub max_runtime_ms: u64,
    /// Present for the Neurow scenario.
    pub neurow: Option<NeurowPlan>,
}

/// What the coordinator asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open every subscription, at most `concurrency` handshakes at a time (0 = all at once).
    Connect {
        /// Handshakes in flight.
        concurrency: usize,
    },
    /// Trade every subscriber's token for a single-use ticket (`POST /v2/tickets`), at most
    /// `concurrency` requests in flight, and keep the tickets for `Connect`; report statistics.
    MintTickets {
        /// Requests in flight (one keep-alive connection each).
        concurrency: usize,
    },
    /// Report statistics, optionally starting a new interval.
    Snapshot {
        /// Clear the statistics after reporting them.
        reset: bool,
    },
    /// Wait until every subscriber received `expected` messages (or the timeout), then report
    /// statistics (with losses) and clear them.
    Drain {
        /// Messages every subscriber should have, or `None` to use the worker's own publishes.
        expected: Option<u64>,
        /// Longest wait.
        timeout_ms: u64,
    },
    /// Publish on this worker's own topics at `rate` messages/s for `duration_ms`, drain, report.
    RunRate {
        /// This worker's share of the target rate.
        rate: f64,
        /// Length of the step.
        duration_ms: u64,
        /// Longest wait for deliveries after the last publish.
        drain_ms: u64,
        /// Halfway through the step, this fraction of the worker's streams (chosen at random) is
        /// dropped and re-opened with `Last-Event-ID` (needs SSE_AUTO_RECONNECT); 0: none.
        #[serde(default)]
        reconnect_fraction: f64,
    },
    /// Run the Neurow virtual users for `duration_ms`, then report.
    RunNeurow {
        /// Users start no new message after this.
        duration_ms: u64,
        /// Longest wait for outstanding deliveries.
        grace_ms: u64,
    },
    /// Report final statistics and exit (closing every connection with a reset).
    Close,
}

/// What a worker says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Reply {
    /// Sent every few milliseconds while counters change.
    Progress {
        /// Message events received so far.
        delivered: u64,
        /// Subscriptions opened so far.
        connected: u64,
    },
    /// The answer to `Connect`.
    Connected {
        /// Statistics so far (connect histogram, failures).
        stats: Stats,
        /// From the command to the last handshake's end, microseconds.
        elapsed_us: u64,
    },
    /// The answer to every other command.
    Stats {
        /// Statistics of the interval.
        stats: Stats,
    },
    /// The command failed.
    Error {
        /// Why.
        message: String,
    },
}
