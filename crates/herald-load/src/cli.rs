//! Command-line interface. Every setting also reads an environment variable; the Neurow scenario
//! uses the same names and defaults as Neurow's own load-test tool (spec §7.3).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::target::{PublishVia, TargetKind, TokenIn, Transport};

/// Neurow's development secret for the public (subscribe) API.
pub const DEV_PUBLIC_SECRET: &str = "966KljJz--KyzyBnMOrFXfAkq9XMqWwPgdBV3cKTxsc";
/// Neurow's development secret for the internal (publish) API.
pub const DEV_INTERNAL_SECRET: &str = "nLjJdNLlpdv3W4Xk7MyVCAZKD-hvza6FQ4yhUUFnjmg";

/// Load generator and benchmark for Herald (Neurow-compatible push gateway) and Nchan.
#[derive(Debug, Parser)]
#[command(name = "herald-load", version, about)]
pub struct Cli {
    /// Scenario or tool to run.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Neurow's load test: virtual users, each with its own topic, subscriber and publisher.
    Neurow(NeurowArgs),
    /// Open N subscriptions and hold them; server memory and CPU per connection.
    Idle(IdleArgs),
    /// One topic, N subscribers: fan-out throughput (windowed) or latency at a fixed rate.
    Broadcast(BroadcastArgs),
    /// N topics with one subscriber each: latency against publish rate.
    #[command(name = "one-to-one")]
    OneToOne(OneToOneArgs),
    /// Hours-long steady one-to-one load with periodic reconnections; samples the server's memory,
    /// file descriptors, outbox depths and latency every minute.
    Soak(SoakArgs),
    /// N clients subscribe at once: time until all are subscribed, and errors.
    Storm(StormArgs),
    /// Herald's store: N concurrent clients insert events into collections (internal API), each
    /// answered once durable; inserts per second and their latency.
    #[command(name = "store-insert")]
    StoreInsert(StoreInsertArgs),
    /// Herald's scheduler: events inserted with `publish_at` spread over a window, received by an
    /// SSE subscriber of their collections; how late each fired and arrived.
    #[command(name = "store-fire-lag")]
    StoreFireLag(FireLagArgs),
    /// Herald's accounts: N concurrent clients log in (`POST /v2/login`, Argon2id on the hashing
    /// pool); logins per second and their latency.
    Login(LoginArgs),
    /// Read `RESULT` lines from files and print medians with Herald/Nchan ratios.
    Table(TableArgs),
    /// Draw latency against rate (SVG) from one-to-one `RESULT` lines.
    Plot(PlotArgs),
    /// Internal: run as a worker process (started by the tool itself).
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Settings shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Server wire format.
    #[arg(long, env = "TARGET", value_enum, default_value_t = TargetKind::Herald)]
    pub target: TargetKind,
    /// Subscribe URL [default: herald http://127.0.0.1:4000/v1/subscribe, nchan
    /// http://127.0.0.1:4100/sub/ (the channel is appended)]. Several, comma-separated, for the
    /// nodes of a cluster: each topic's subscriber goes to one of them.
    #[arg(long, env = "SSE_URL")]
    pub sse_url: Option<String>,
    /// Publish URL [default: herald http://127.0.0.1:3000/v1/publish, nchan
    /// http://127.0.0.1:3100/pub/]. Several, comma-separated: publish connections round-robin
    /// over them.
    #[arg(long, env = "PUBLISH_URL")]
    pub publish_url: Option<String>,
    /// `iss` of subscriber tokens (subscribers receive topic `<iss>-<sub>`).
    #[arg(long, env = "SSE_JWT_ISSUER", default_value = "test_issuer1")]
    pub sse_jwt_issuer: String,
    /// HS256 secret of subscriber tokens (raw key bytes).
    #[arg(long, env = "SSE_JWT_SECRET", default_value = DEV_PUBLIC_SECRET, hide_default_value = true)]
    pub sse_jwt_secret: String,
    /// `aud` of subscriber tokens.
    #[arg(long, env = "SSE_JWT_AUDIENCE", default_value = "public_api")]
    pub sse_jwt_audience: String,
    /// Lifetime of subscriber tokens, seconds. Herald refuses more than its
    /// PUBLIC_API_JWT_MAX_LIFETIME (120 by default); for long runs start Herald with
    /// PUBLIC_API_JWT_MAX_LIFETIME=86400 and raise this.
    #[arg(long, env = "SSE_JWT_EXPIRATION", default_value_t = 120)]
    pub sse_jwt_expiration: u64,
    /// Subscriber `User-Agent`.
    #[arg(long, env = "SSE_USER_AGENT", default_value = "herald-load/0.1")]
    pub sse_user_agent: String,
    /// Herald v2: each subscription holds this many topics — its own plus N-1 shared by every
    /// subscriber (`shared-1` …) — on one stream, with a token granting `*`. Point SSE_URL at
    /// `/v2/subscribe`. 0 (the default) subscribes to one topic as v1 does.
    #[arg(long, env = "TOPICS_PER_CONNECTION", default_value_t = 0)]
    pub topics_per_connection: usize,
    /// Re-open ended streams with `Last-Event-ID` (a replayed duplicate is an error).
    #[arg(long, env = "SSE_AUTO_RECONNECT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sse_auto_reconnect: bool,
    /// `iss` of publisher tokens (must equal SSE_JWT_ISSUER for messages to reach subscribers).
    #[arg(long, env = "PUBLISH_JWT_ISSUER", default_value = "test_issuer1")]
    pub publish_jwt_issuer: String,
    /// HS256 secret of publisher tokens.
    #[arg(long, env = "PUBLISH_JWT_SECRET", default_value = DEV_INTERNAL_SECRET, hide_default_value = true)]
    pub publish_jwt_secret: String,
    /// `aud` of publisher tokens.
    #[arg(long, env = "PUBLISH_JWT_AUDIENCE", default_value = "internal_api")]
    pub publish_jwt_audience: String,
    /// Lifetime of publisher tokens, seconds (Herald accepts at most 1500); renewed at half-life.
    #[arg(long, env = "PUBLISH_JWT_EXPIRATION", default_value_t = 900)]
    pub publish_jwt_expiration: u64,
    /// SSE event name of published messages.
    #[arg(long, env = "EVENT_NAME", default_value = "load_test_event")]
    pub event: String,
    /// Server process to measure (RSS and CPU); repeat for several (e.g. nginx master and worker).
    #[arg(long = "server-pid", env = "SERVER_PID", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Worker processes [default: enough for --max-per-worker].
    #[arg(long, env = "WORKERS")]
    pub workers: Option<usize>,
    /// Most subscriptions held by one worker process (each may open 20,000 files at most).
    #[arg(long, env = "MAX_PER_WORKER", default_value_t = 9000)]
    pub max_per_worker: usize,
    /// Source addresses to spread connections over (127.0.0.2, 127.0.0.3, ...).
    #[arg(long, env = "SOURCE_IPS", default_value_t = 4)]
    pub source_ips: usize,
    /// Subscribe handshakes in flight per worker.
    #[arg(long, env = "CONNECT_CONCURRENCY", default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Limit on one subscribe, milliseconds.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value_t = 30_000)]
    pub connect_timeout_ms: u64,
    /// Publisher keep-alive connections per process.
    #[arg(long, env = "PUBLISH_HTTP_POOL_SIZE", default_value_t = 64)]
    pub publish_connections: usize,
    /// Limit on one publish, milliseconds.
    #[arg(long, env = "PUBLISH_TIMEOUT", default_value_t = 5000)]
    pub publish_timeout_ms: u64,
    /// Minimum payload size, bytes (the payload is padded).
    #[arg(long, env = "PAYLOAD_SIZE", default_value_t = 64)]
    pub payload_size: usize,
    /// Tiny sizes and a few seconds per scenario (for CI).
    #[arg(long, env = "SMOKE")]
    pub smoke: bool,
    /// Free text stored in the result (e.g. "run 2").
    #[arg(long, env = "LABEL", default_value = "")]
    pub label: String,
}

/// `neurow` settings (Neurow's load-test names and defaults).
#[derive(Debug, Clone, Args)]
pub struct NeurowArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Concurrent virtual users.
    #[arg(long, env = "NB_USER", default_value_t = 1)]
    pub nb_user: usize,
    /// Messages per user: random in MIN+1 ..= MAX.
    #[arg(long, env = "NUMBER_OF_MESSAGES_MIN", default_value_t = 10)]
    pub number_of_messages_min: u64,
    /// See NUMBER_OF_MESSAGES_MIN.
    #[arg(long, env = "NUMBER_OF_MESSAGES_MAX", default_value_t = 50)]
    pub number_of_messages_max: u64,
    /// Delay before each message, ms: random in MIN+1 ..= MAX.
    #[arg(long, env = "DELAY_BETWEEN_MESSAGES_MIN", default_value_t = 500)]
    pub delay_between_messages_min: u64,
    /// See DELAY_BETWEEN_MESSAGES_MIN.
    #[arg(long, env = "DELAY_BETWEEN_MESSAGES_MAX", default_value_t = 5000)]
    pub delay_between_messages_max: u64,
    /// Each user first waits a random 1 ..= this many ms.
    #[arg(long, env = "INITIAL_DELAY_MAX", default_value_t = 5000)]
    pub initial_delay_max: u64,
    /// Run duration, seconds: no message is published after it.
    #[arg(long, env = "RUN_DURATION", default_value_t = 60)]
    pub duration: u64,
    /// Longest wait for published messages after a user's publisher stops, seconds.
    #[arg(long, env = "GRACE", default_value_t = 10)]
    pub grace: u64,
    /// For fault-injection runs (bench/chaos.sh): a publish that fails (503, timeout, node down)
    /// is counted as refused and its number skipped, since it was never promised (it may arrive
    /// once, never twice); a stream that ends or cannot be opened is re-opened with
    /// `Last-Event-ID` on the next node of SSE_URL, with backoff, until the user's grace ends.
    /// Loss, duplicates and reordering are still errors for every publish answered as accepted.
    /// Implies SSE_AUTO_RECONNECT.
    #[arg(long, env = "TOLERATE_FAULTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tolerate_faults: bool,
}

/// `idle` settings.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscriptions to open (one topic each).
    #[arg(long, env = "CONNECTIONS", default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them after all are open (measures keep-alive CPU).
    #[arg(long, env = "HOLD", default_value_t = 5)]
    pub hold: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub subscribers: SubscriberArgs,
}

/// `broadcast` settings.
#[derive(Debug, Clone, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscribers of the one topic.
    #[arg(long, env = "CONNECTIONS", default_value_t = 10_000)]
    pub connections: usize,
    /// Publishing time, seconds.
    #[arg(long, env = "DURATION", default_value_t = 10)]
    pub duration: u64,
    /// Publish at this many messages per second (latency mode) instead of as fast as possible.
    #[arg(long, env = "RATE")]
    pub rate: Option<f64>,
    /// As-fast-as-possible mode: publish message k only once (k - window) messages reached every
    /// subscriber, so server outboxes never hold more than `window` messages.
    #[arg(long, env = "WINDOW", default_value_t = 16)]
    pub window: u64,
    /// Most messages to publish.
    #[arg(long, env = "MESSAGES", default_value_t = 100_000)]
    pub messages: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub subscribers: SubscriberArgs,
}

/// `one-to-one` settings.
#[derive(Debug, Clone, Args)]
pub struct OneToOneArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Topics, one subscriber each.
    #[arg(long, env = "CONNECTIONS", default_value_t = 10_000)]
    pub connections: usize,
    /// Publish rates to sweep, messages per second in total.
    #[arg(long, env = "RATES", value_delimiter = ',', default_values_t = vec![1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0, 60000.0, 80000.0])]
    pub rates: Vec<f64>,
    /// Seconds per rate.
    #[arg(long, env = "STEP_DURATION", default_value_t = 5)]
    pub step_duration: u64,
    /// The sweep reports the highest rate whose p99 latency stays under this.
    #[arg(long, env = "P99_BOUND_MS", default_value_t = 50.0)]
    pub p99_bound_ms: f64,
    /// Keep sweeping after the bound is exceeded (otherwise stop at the first rate over it).
    #[arg(long)]
    pub full_sweep: bool,
    /// Write the latency/rate chart here (SVG).
    #[arg(long, env = "SVG")]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub subscribers: SubscriberArgs,
    /// How publishers publish: HTTP requests to PUBLISH_URL, or (Herald only) `publish` commands
    /// over PUBLISH_WS_CONNECTIONS WebSockets per worker process to WS_URL, each answered by an
    /// `ack`. The result's mode then says `publish over ws`.
    #[arg(long, env = "PUBLISH_VIA", value_enum, default_value_t = PublishVia::Http)]
    pub publish_via: PublishVia,
    /// WebSocket publisher connections per worker process, for `--publish-via ws` (each carries
    /// many commands at once).
    #[arg(long, env = "PUBLISH_WS_CONNECTIONS", default_value_t = 4)]
    pub publish_ws_connections: usize,
    /// The sweep's step at this rate gives `server_cpu_us_per_delivery_at_ref` (server CPU per
    /// publish + delivery), the same load for every one-to-one run whatever its highest rate, so
    /// that runs of different transports compare at equal load.
    #[arg(long, env = "REF_RATE", default_value_t = 10_000.0)]
    pub ref_rate: f64,
}

/// How subscribers receive (`idle`, `broadcast`, `one-to-one`).
#[derive(Debug, Clone, Args)]
pub struct SubscriberArgs {
    /// How subscribers receive: SSE streams; long-polls (one-to-one only: each subscriber polls
    /// again as soon as an answer arrives, on a keep-alive connection); or WebSockets, one per
    /// subscriber. The result's mode says which (`long-poll`, `websocket`).
    #[arg(long, env = "SUBSCRIBER_TRANSPORT", value_enum, default_value_t = Transport::Sse)]
    pub transport: Transport,
    /// Long-poll URL, for `--transport longpoll` [default: herald http://127.0.0.1:4000/v2/poll,
    /// nchan http://127.0.0.1:4100/lp/ (the channel is appended; the location must be
    /// `nchan_subscriber longpoll` with `nchan_longpoll_multipart_response on` and
    /// `nchan_subscriber_timeout 55s`, as bench/lib.sh writes it)]. Several, comma-separated, for
    /// the nodes of a cluster.
    #[arg(long, env = "POLL_URL")]
    pub poll_url: Option<String>,
    /// WebSocket URL, for `--transport ws` and `--publish-via ws` [default: herald
    /// http://127.0.0.1:4000/v2/ws, nchan http://127.0.0.1:4100/ws/ (the channel is appended; the
    /// location must be `nchan_subscriber websocket`, as bench/lib.sh writes it)]. `ws://` is read
    /// as `http://`. Several, comma-separated, for the nodes of a cluster.
    #[arg(long, env = "WS_URL")]
    pub ws_url: Option<String>,
}

/// `soak` settings.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Topics, one subscriber each.
    #[arg(long, env = "CONNECTIONS", default_value_t = 19_000)]
    pub connections: usize,
    /// Publish rate, messages per second in total, one-to-one over the topics.
    #[arg(long, env = "RATE", default_value_t = 1000.0)]
    pub rate: f64,
    /// Run duration, seconds.
    #[arg(long, env = "RUN_DURATION", default_value_t = 3600)]
    pub duration: u64,
    /// One sample (latency, server RSS, file descriptors, outbox depths) every this many seconds.
    #[arg(long, env = "SAMPLE_EVERY", default_value_t = 60)]
    pub sample_every: u64,
    /// In each sample period, this fraction of the streams is dropped and re-opened with
    /// `Last-Event-ID` (a client's network blip).
    #[arg(long, env = "RECONNECT_FRACTION", default_value_t = 0.05)]
    pub reconnect_fraction: f64,
    /// Herald's `/process_stats` [default: the first PUBLISH_URL's host and port].
    #[arg(long, env = "STATS_URL")]
    pub stats_url: Option<String>,
    /// Write the RSS and p99 chart here (SVG).
    #[arg(long, env = "SVG")]
    pub svg: Option<PathBuf>,
}

/// `storm` settings.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Clients that subscribe at the same moment.
    #[arg(long, env = "CONNECTIONS", default_value_t = 10_000)]
    pub connections: usize,
    /// Herald v2 (SSE_URL at `/v2/subscribe`): where each client puts its token — the
    /// `Authorization` header, the `access_token` query parameter, or a single-use ticket minted
    /// for it (`POST /v2/tickets`) before the measured storm, so that the storm measures redeeming.
    #[arg(long, env = "TOKEN_IN", value_enum, default_value_t = TokenIn::Header)]
    pub token_in: TokenIn,
}

/// Where Herald's store routes are, shared by `store-insert`, `store-fire-lag` and `login`.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Herald's internal API, scheme host and port [default: PUBLISH_URL's].
    #[arg(long, env = "INTERNAL_API_URL")]
    pub internal_url: Option<String>,
    /// Herald's public API, scheme host and port [default: SSE_URL's].
    #[arg(long, env = "PUBLIC_API_URL")]
    pub public_url: Option<String>,
    /// The store behind Herald (`sqlite`, `postgres`, …): only named in the result's mode, so the
    /// table keeps each store in a row of its own.
    #[arg(long = "store", env = "STORE_KIND", default_value = "")]
    pub store_kind: String,
    /// The database server's process (PostgreSQL's postmaster): the CPU of it and its children
    /// (the backends) over the measured phase is reported as `db_cpu_*`.
    #[arg(long, env = "DB_PID")]
    pub db_pid: Option<u32>,
    /// Limit on one request, milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Bytes of each event's `data` (a JSON object padded to about this size).
    #[arg(long, env = "DATA_BYTES", default_value_t = 200)]
    pub data_bytes: usize,
}

/// `store-insert` settings.
#[derive(Debug, Clone, Args)]
pub struct StoreInsertArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
    /// Concurrent clients, each on its own keep-alive connection with one insert in flight.
    #[arg(long, env = "CLIENTS", default_value_t = 64)]
    pub clients: usize,
    /// Measured time, seconds.
    #[arg(long, env = "DURATION", default_value_t = 10)]
    pub duration: u64,
    /// Unmeasured time before it, seconds.
    #[arg(long, env = "WARMUP", default_value_t = 2)]
    pub warmup: u64,
    /// Collections written in turn (every commit then touches many index leaves, as many active
    /// collections would).
    #[arg(long, env = "COLLECTIONS", default_value_t = 1000)]
    pub collections: usize,
    /// 0: events are published at once (the scheduler fires each, as in use); N: `publish_at` is
    /// N ms ahead, so the run measures the inserts alone.
    #[arg(long, env = "SCHEDULE_AHEAD_MS", default_value_t = 0)]
    pub schedule_ahead_ms: u64,
    /// Also hold one SSE stream on the topics of the first 64 collections and report how late
    /// their events fired and arrived while the inserts go on (`fire_lag_*`, `arrival_lag_*`),
    /// and any lost or repeated: publishing at once, under load. Not with SCHEDULE_AHEAD_MS.
    #[arg(long, env = "WATCH")]
    pub watch: bool,
}

/// `store-fire-lag` settings.
#[derive(Debug, Clone, Args)]
pub struct FireLagArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
    /// Events scheduled.
    #[arg(long, env = "EVENTS", default_value_t = 100_000)]
    pub events: u64,
    /// Seconds over which they fall due, evenly.
    #[arg(long, env = "SPREAD", default_value_t = 60)]
    pub spread: u64,
    /// Seconds from the start of the inserts to the first due time: every insert must be done
    /// by then (the run fails otherwise: raise it).
    #[arg(long, env = "LEAD", default_value_t = 30)]
    pub lead: u64,
    /// Concurrent inserting clients.
    #[arg(long, env = "CLIENTS", default_value_t = 64)]
    pub clients: usize,
    /// Collections the events go to, in turn; one SSE stream subscribes to all their topics (at
    /// most PUBLIC_API_MAX_TOPICS_PER_CONNECTION).
    #[arg(long, env = "COLLECTIONS", default_value_t = 10)]
    pub collections: usize,
    /// Longest wait after the last due time for events still to arrive, seconds.
    #[arg(long, env = "GRACE", default_value_t = 15)]
    pub grace: u64,
}

/// `login` settings.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArgs,
    /// Accounts created first (`POST /v2/users` on the public API: Herald needs
    /// `ACCOUNTS_SIGNUP=open`), then logged into in turn.
    #[arg(long, env = "USERS", default_value_t = 64)]
    pub users: usize,
    /// Concurrent clients, one login in flight each.
    #[arg(long, env = "CLIENTS", default_value_t = 16)]
    pub clients: usize,
    /// Measured time, seconds.
    #[arg(long, env = "DURATION", default_value_t = 10)]
    pub duration: u64,
    /// Unmeasured time before it, seconds.
    #[arg(long, env = "WARMUP", default_value_t = 1)]
    pub warmup: u64,
}

/// `table` settings.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Files holding `RESULT {json}` lines (other lines are ignored).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print Markdown instead of aligned text.
    #[arg(long)]
    pub markdown: bool,
    /// Leave out runs during which other processes used more than this % of one core
    /// (`other_cpu_pct`), as disturbed.
    #[arg(long)]
    pub max_other_pct: Option<f64>,
}

/// `plot` settings.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Files holding one-to-one `RESULT` lines.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output SVG file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Leave out sweep steps during which other processes used more than this % of one core.
    #[arg(long)]
    pub max_other_pct: Option<f64>,
}
