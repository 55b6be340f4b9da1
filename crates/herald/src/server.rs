//! One node: binds both APIs, runs the shared timers, and shuts down in bounded time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::internal::{self, InternalState};
use crate::api::v2::V2Settings;
use crate::auth::revocation::Revocations;
use crate::auth::{CachingVerifier, Verifier};
use crate::backplane::{self, Backplane, RedisBackplane};
use crate::clock::Clock;
use crate::config::Config;
use crate::history::Retention;
use crate::http::request::HeadLimits;
use crate::http::{PublicApi, PublicSettings};
use crate::hub::liveness::{Liveness, LivenessRules};
use crate::hub::outbox::CloseReason;
use crate::hub::{Hub, HubSettings};
use crate::node::Node;
use crate::observe::metrics::Metrics;
use crate::shutdown::stopped;

/// While draining, how often streams that registered after shutdown began (their subscription
/// raced the stop) are looked for and told to reconnect.
const LATE_STREAM_CHECK: Duration = Duration::from_millis(100);

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS certificate or key could not be used.
    #[error("{0}")]
    Tls(#[from] crate::http::tls::TlsError),
    /// The Redis backplane could not be set up.
    #[error("cannot set up the Redis backplane (REDIS_URL): {0}")]
    Backplane(#[from] crate::backplane::BackplaneError),
    /// The store could not be opened.
    #[error("{0} (DATABASE_URL, DATA_DIR)")]
    Store(#[from] crate::store::OpenError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} for the {api} ({source}); is the port free? Set {variable} to change it")]
    Bind {
        /// Which API.
        api: &'static str,
        /// The variable that sets its port.
        variable: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Pending connections the kernel queues per listener. Tokio's default is 1024; a reconnection
/// storm of 10,000 clients is better absorbed by the kernel's cap, `net.core.somaxconn` (4096 on
/// Debian), which the kernel applies to this value anyway.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(api: &'static str, variable: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ServerError::Bind {
        api,
        variable,
        addr,
        source,
    })
}

/// Runs a node until `shutdown` resolves, then drains it.
pub async fn run(config: Config, shutdown: impl Future<Output = &'static str>) -> Result<(), ServerError> {
    if config.auth.development_keys {
        tracing::warn!(
            "JWT_CONFIG is not set: using the public development issuers test_issuer1 and test_issuer2. \
             Anyone can forge tokens for them. Set JWT_CONFIG before exposing this node."
        );
    }
    for name in &config.ignored_variables {
        tracing::warn!(
            variable = name,
            "ignored: Herald does not cluster through Erlang distribution"
        );
    }

    let clock = Clock::system();
    let retention = Retention::from_min_duration(
        config.history.min_duration.as_millis() as u64,
        config.history.max_messages_per_topic,
    );
    let hub = Arc::new(Hub::new(
        HubSettings {
            retention,
            max_history_bytes: config.history.max_bytes,
        },
        clock.clone(),
    ));
    let liveness = Arc::new(Liveness::default());
    let issuers = config
        .auth
        .public
        .issuers()
        .iter()
        .chain(config.auth.internal.issuers())
        .map(|i| &*i.name)
        .collect::<std::collections::BTreeSet<_>>();
    let metrics = Arc::new(Metrics::new(issuers));
    crate::observe::panics::count_panics(metrics.clone());

    let tls = match &config.public_api.tls {
        None => None,
        Some(files) => Some(crate::http::tls::acceptor(&files.cert_file, &files.key_file)?),
    };
    let public_listener = bind(
        "public API",
        "PUBLIC_API_PORT",
        SocketAddr::new(config.public_api.host, config.public_api.port),
    )
    .await?;
    let internal_listener = bind(
        "internal API",
        "INTERNAL_API_PORT",
        SocketAddr::new(config.internal_api.host, config.internal_api.port),
    )
    .await?;

    let store = crate::store::Store::open(&config.store).await?.map(Arc::new);
    if let Some(store) = &store {
        tracing::info!(store = store.kind(), place = store.place(), "store open");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let jwks_tasks = start_jwks(&config, &metrics, &stop_rx).await;
    let (backplane, heartbeat) = match &config.cluster {
        None => (Backplane::Local, None),
        Some(cluster) => {
            // Unique per host: two nodes on one machine differ by their internal port.
            let port = internal_listener
                .local_addr()
                .map_or(config.internal_api.port, |a| a.port());
            let redis = Arc::new(RedisBackplane::new(
                cluster,
                format!("{}:{port}", node_name()),
                retention,
            )?);
            if cluster.redis_cluster {
                tracing::info!(
                    node = redis.node_name(),
                    seeds = cluster.redis_urls.len(),
                    "joining the cluster over a Redis Cluster"
                );
            } else {
                tracing::info!(
                    node = redis.node_name(),
                    shards = cluster.redis_urls.len(),
                    "joining the cluster over Redis"
                );
            }
            redis.listen(&hub, &stop_rx)?;
            let heartbeat = tokio::spawn(backplane::run_heartbeat(redis.clone(), stop_rx.clone()));
            (Backplane::Redis(redis), Some(heartbeat))
        }
    };
    let node_name = match &backplane {
        Backplane::Local => node_name(),
        Backplane::Redis(redis) => redis.node_name().to_owned(),
    };

    // One set for both APIs; a revocation without an end outlasts any token either accepts now.
    let revocations = Arc::new(Revocations::new(
        config
            .public_api
            .jwt_max_lifetime_s
            .max(config.internal_api.jwt_max_lifetime_s),
    ));
    let node = Arc::new(Node {
        hub: hub.clone(),
        liveness: liveness.clone(),
        backplane,
        outbox_capacity: config.outbox_capacity,
        tickets: Default::default(),
        revocations: revocations.clone(),
    });
    let revocation_sync = match &node.backplane {
        Backplane::Local => None,
        Backplane::Redis(redis) => {
            let seen = crate::node::load_revocations(&node, redis).await;
            Some(tokio::spawn(crate::node::sync_revocations(
                node.clone(),
                redis.clone(),
                metrics.clone(),
                seen,
                stop_rx.clone(),
            )))
        }
    };
    let store_state = Arc::new(crate::api::store::StoreState {
        store: store.clone(),
        clock: hub.clock().clone(),
        accounts: crate::api::store::accounts::Accounts {
            signup_open: config.accounts.signup_open,
            issuer: config.accounts.issuer.clone(),
            token_lifetime_s: config.accounts.token_lifetime_s,
            auth: config.auth.public.clone(),
            passwords: crate::auth::passwords::Passwords::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            throttle: Default::default(),
        },
    });
    let public = Arc::new(PublicApi::new(
        PublicSettings {
            subscribe_path: format!("{}/v1/subscribe", config.public_api.context_path),
            allowed_origins: config.public_api.allowed_origins.clone(),
            preflight_max_age_s: config.public_api.preflight_max_age_s,
            head_limits: HeadLimits {
                max_header_value_length: config.public_api.max_header_value_length,
            },
            max_connections: config.public_api.max_connections,
            max_subscriptions_per_second: config.public_api.max_subscriptions_per_second,
            verbose_errors: config.auth.verbose_errors,
            sse_timeout: config.sse.timeout,
            sse_keepalive: config.sse.keepalive,
            v2: V2Settings {
                subscribe_path: format!("{}/v2/subscribe", config.public_api.context_path),
                poll_path: format!("{}/v2/poll", config.public_api.context_path),
                tickets_path: format!("{}/v2/tickets", config.public_api.context_path),
                ws_path: format!("{}/v2/ws", config.public_api.context_path),
                ws: crate::api::v2::ws::WsSettings {
                    max_message_size: config.ws.max_message_size,
                    max_commands_per_second: config.ws.max_commands_per_second,
                    ping_interval_ms: config.ws.ping_interval.as_millis() as u32,
                },
                ticket_lifetime: config.public_api.ticket_lifetime,
                max_topics: config.public_api.max_topics_per_connection,
                privileged_roles: config.public_api.privileged_roles.clone(),
                token_cookie: config.public_api.token_cookie.clone(),
            },
        },
        Verifier::with_revocations(
            config.auth.public.clone(),
            config.public_api.jwt_max_lifetime_s,
            revocations.clone(),
        ),
        node.clone(),
        metrics.clone(),
    ));
    public.serve_store(crate::api::store::public_router(store_state.clone()), store.clone());
    let internal_state = Arc::new(InternalState {
        public: public.clone(),
        node,
        verifier: CachingVerifier::new(Verifier::with_revocations(
            config.auth.internal.clone(),
            config.internal_api.jwt_max_lifetime_s,
            revocations,
        )),
        metrics: metrics.clone(),
        verbose_errors: config.auth.verbose_errors,
        max_body_size: config.internal_api.publish_max_body_size,
        revision: config.revision.clone(),
        node_name,
        store: store_state.clone(),
    });
    let scheduler = store.map(|store| {
        tokio::spawn(crate::node::scheduler::run_scheduler(
            internal_state.node.clone(),
            store,
            stop_rx.clone(),
        ))
    });

    let rules = LivenessRules {
        keepalive_ms: config.sse.keepalive.as_millis() as u64,
        timeout_ms: config.sse.timeout.as_millis() as u64,
    };
    let expiry_every = (config.history.min_duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let timers = tokio::spawn(run_timers(
        hub.clone(),
        liveness.clone(),
        rules,
        expiry_every,
        stop_rx.clone(),
    ));
    let public_addr = local_addr(&public_listener);
    let internal_addr = local_addr(&internal_listener);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_task = tokio::spawn(public.clone().serve(public_listener, tls, stop_rx.clone()));
    // The internal API outlives the public one at shutdown: publishes still land in history (and
    // `stopping` can be scraped) while streams drain.
    let (internal_stop_tx, internal_stop) = watch::channel(false);
    let internal_task = tokio::spawn(internal::serve(internal_listener, internal_state, internal_stop));
    // Tests and scripts start Herald on port 0 and wait for these lines to learn the ports.
    tracing::info!(addr = %public_addr, scheme = %scheme, "public API listening");
    tracing::info!(addr = %internal_addr, "internal API listening");

    let signal = shutdown.await;
    let started = tokio::time::Instant::now();
    let deadline = started + config.shutdown_drain_timeout;
    let streams = liveness.len();
    let window_ms = config.shutdown_reconnect_window.as_millis() as u64;
    tracing::info!(
        signal,
        streams,
        window_ms,
        "shutting down: telling every stream to reconnect"
    );
    metrics.set_stopping();
    let _ = stop_tx.send(true);
    let _ = public_task.await;
    public.begin_shutdown();
    // Bounded by the window, which the configuration keeps shorter than the drain timeout.
    crate::shutdown::tell_streams_to_reconnect(&liveness, config.shutdown_reconnect_window).await;
    let drain = async {
        while tokio::time::timeout(LATE_STREAM_CHECK, public.drained()).await.is_err() {
            liveness.close_some(CloseReason::Shutdown, usize::MAX);
        }
    };
    if tokio::time::timeout_at(deadline, drain).await.is_err() {
        tracing::warn!(
            open = public.open_connections(),
            "drain timeout (SHUTDOWN_DRAIN_TIMEOUT) reached; closing the remaining connections"
        );
    }
    let _ = internal_stop_tx.send(true);
    let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), internal_task).await;
    timers.abort();
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    for task in jwks_tasks {
        task.abort();
    }
    if let Some(sync) = revocation_sync {
        sync.abort();
    }
    if let Some(heartbeat) = heartbeat {
        // It leaves the node list (bounded by the command timeout) once the stop flag is set.
        let _ = tokio::time::timeout(backplane::COMMAND_TIMEOUT * 2, heartbeat).await;
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    Ok(())
}

/// Fetches every issuer's `jwks_url` once before the node serves (each bounded by the fetch
/// timeout), then keeps each fresh in a task of its own. An unreachable provider does not stop
/// the node: that issuer's tokens signed by a JWKS key are refused until a fetch succeeds.
async fn start_jwks(
    config: &Config,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use crate::auth::jwks::fetch;
    // The APIs share issuers (one JWT_CONFIG): each source once.
    let mut sources: Vec<(Arc<str>, Arc<crate::auth::jwks::JwksSource>)> = Vec::new();
    for issuer in config
        .auth
        .public
        .issuers()
        .iter()
        .chain(config.auth.internal.issuers())
    {
        if let Some(source) = &issuer.jwks
            && !sources.iter().any(|(_, s)| Arc::ptr_eq(s, source))
        {
            sources.push((issuer.name.clone(), source.clone()));
        }
    }
    let mut tasks = Vec::with_capacity(sources.len());
    for (issuer, source) in sources {
        metrics.jwks_declared(&issuer);
        let failing = match fetch::refresh(&issuer, &source, metrics).await {
            Ok(keys) => {
                tracing::info!(issuer = &*issuer, url = source.url.text, keys, "JWKS fetched");
                false
            }
            Err(error) => {
                tracing::error!(
                    issuer = &*issuer,
                    url = source.url.text,
                    %error,
                    "cannot fetch the issuer's JWKS at start: its tokens signed by a JWKS key are refused \
                     until a fetch succeeds (retried every JWKS_MIN_REFETCH_INTERVAL)"
                );
                true
            }
        };
        tasks.push(tokio::spawn(fetch::keep_fresh(
            issuer,
            source,
            config.auth.jwks_timing,
            metrics.clone(),
            failing,
            stop.clone(),
        )));
    }
    tasks
}

/// The shared timers: stream liveness at its tick, history expiry at least every D/4.
async fn run_timers(
    hub: Arc<Hub>,
    liveness: Arc<Liveness>,
    rules: LivenessRules,
    expiry_every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut liveness_tick = tokio::time::interval(rules.tick());
    liveness_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut expiry_tick = tokio::time::interval(expiry_every);
    expiry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = liveness_tick.tick() => {
                liveness.sweep(hub.clock().now_ms(), rules);
            }
            _ = expiry_tick.tick() => hub.expire(),
            _ = stopped(&mut stop) => return,
        }
    }
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string())
}

fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("herald@{}", host.trim())
}
