//! Metrics, declared in one place and rendered in Prometheus text format on `/metrics`.
//!
//! Neurow's metric names, types and labels are kept as they are (no `_total` suffix) so existing
//! dashboards keep working; Herald's own metrics are prefixed `herald_` and follow Prometheus
//! naming. Labels come from bounded sets only: the issuer (configured), the interface, the kind.
//! Hub counters live in the hub as plain atomics, so the fan-out path pays nothing for metrics;
//! they are copied into the registry when `/metrics` is scraped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::backplane::BackplaneStats;
use crate::hub::HubStats;
use crate::observe::process;

/// The interface a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// The subscribe side.
    Public,
    /// The publish and admin side.
    Internal,
}

impl Interface {
    fn label(self) -> &'static str {
        match self {
            Interface::Public => "public_api",
            Interface::Internal => "internal_api",
        }
    }

    fn jwt_label(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
        }
    }
}

/// Why the public API refused a connection (`herald_connections_rejected_total{reason}`): the
/// connection cap, the subscription rate, shutdown (each a 503), an oversized request head (431).
pub const CONNECTION_REJECTION_REASONS: [&str; 4] = [
    "max_connections",
    "subscription_rate",
    "shutting_down",
    "header_too_large",
];

/// Why the public API refused a request it could read (`herald_requests_refused_total{code}`): the
/// stable codes of the v2 face's 4xx answers.
pub const REQUEST_REFUSAL_CODES: [&str; 9] = [
    "invalid_query",
    "invalid_topic",
    "too_many_topics",
    "no_topic",
    "topic_not_allowed",
    "invalid_cursor",
    "invalid_grants",
    "missing_token",
    "invalid_ticket",
];

/// Why a publish was refused by a limit (`herald_publish_rejected_total{reason}`): a body over
/// `PUBLISH_MAX_BODY_SIZE` (413).
pub const PUBLISH_REJECTION_REASONS: [&str; 1] = ["body_too_large"];

/// The `operation` label of `herald_backplane_errors_total`.
pub const BACKPLANE_OPERATIONS: [&str; 4] = ["publish", "history", "heartbeat", "listen"];

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    concurrent_subscription: IntGaugeVec,
    subscription_lifecycle: IntCounterVec,
    message: IntCounterVec,
    jwt_errors: IntCounterVec,
    http_request_count: IntCounterVec,
    topic_count: IntGauge,
    stopping: IntGauge,
    // Mirrors of the hub's atomics.
    topics: IntGauge,
    subscriptions: IntGauge,
    history_messages: IntGauge,
    history_bytes: IntGauge,
    history_trimmed: IntCounterVec,
    outbox_overflows: IntCounter,
    replayed: IntCounter,
    accepted: IntCounter,
    subscription_closed: IntCounterVec,
    connections_rejected: IntCounterVec,
    publish_rejected: IntCounterVec,
    requests_refused: IntCounterVec,
    subscription_duration_ms: HistogramVec,
    http_request_duration_ms: HistogramVec,
    http_request_exception_count: IntCounterVec,
    http_request_early_error_count: IntCounterVec,
    history_rotate: IntCounter,
    memory_usage: Gauge,
    allocated_bytes: IntGauge,
    allocator_resident_bytes: IntGauge,
    fd_open_count: IntGauge,
    fd_soft_limit: IntGauge,
    fd_hard_limit: IntGauge,
    delivery_latency: Histogram,
    backplane_errors: IntCounterVec,
    backplane_reconnections: IntCounter,
    backplane_caught_up_topics: IntCounter,
    backplane_resumes_waiting: IntGauge,
    backplane_resumes_abandoned: IntCounter,
    cluster_nodes: IntGauge,
    revocations_active: IntGauge,
    jwks_fetches: IntCounterVec,
    jwks_keys: IntGaugeVec,
    revocations: IntCounterVec,
    connections_revoked: IntCounter,
    /// `message{kind="published"}` per configured issuer, looked up without hashing the labels.
    published_by_issuer: HashMap<Box<str>, IntCounter>,
    /// `http_request_count` of the usual statuses, per interface, found without formatting.
    usual_statuses: Vec<(Interface, u16, IntCounter)>,
}

/// Statuses whose `http_request_count` series are resolved once, at start.
const USUAL_STATUSES: [u16; 10] = [200, 204, 400, 401, 403, 404, 413, 431, 500, 503];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("valid metric definition");
    registry.register(Box::new(h.clone())).expect("metric names are unique");
    h
}

/// Subscription lifetimes, ms: from a second to a day.
const SUBSCRIPTION_DURATION_MS_BUCKETS: &[f64] = &[
    1e3, 5e3, 15e3, 30e3, 60e3, 300e3, 900e3, 1_800e3, 3_600e3, 7_200e3, 21_600e3, 86_400e3,
];

/// Request durations, ms: the internal API answers in tens of µs, slow ones are the story.
const HTTP_REQUEST_DURATION_MS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
];

/// Publish-to-write latency, seconds: from 100 µs to 10 s (a slow client's worst case).
const DELIVERY_LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    registry.register(Box::new(g.clone())).expect("metric names are unique");
    g
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

impl Metrics {
    /// Declares every metric; `issuers` are pre-initialised so their series read 0, not absent.
    pub fn new<'a>(issuers: impl IntoIterator<Item = &'a str>) -> Metrics {
        let r = Registry::new();
        let concurrent_subscription = {
            let g = IntGaugeVec::new(
                Opts::new("concurrent_subscription", "Open SSE subscriptions"),
                &["issuer"],
            )
            .expect("valid metric definition");
            r.register(Box::new(g.clone())).expect("metric names are unique");
            g
        };
        let mut m = Metrics {
            concurrent_subscription,
            subscription_lifecycle: counter_vec(
                &r,
                "subscription_lifecycle",
                "Subscriptions created and released",
                &["kind", "issuer"],
            ),
            message: counter_vec(
                &r,
                "message",
                "Publish requests accepted (kind=published) and messages written to streams (kind=sent)",
                &["kind", "issuer"],
            ),
            jwt_errors: counter_vec(&r, "jwt_errors", "Refused tokens", &["interface"]),
            http_request_count: counter_vec(
                &r,
                "http_request_count",
                "HTTP requests answered",
                &["interface", "status"],
            ),
            topic_count: gauge(&r, "topic_count", "Messages held in history (Neurow's name)"),
            stopping: gauge(&r, "stopping", "1 while the node is shutting down"),
            topics: gauge(&r, "herald_topics", "Topics in memory (with subscribers or history)"),
            subscriptions: gauge(&r, "herald_subscriptions", "Open subscriptions"),
            history_messages: gauge(&r, "herald_history_messages", "Messages held in history"),
            history_bytes: gauge(&r, "herald_history_bytes", "Bytes held in history"),
            history_trimmed: counter_vec(
                &r,
                "herald_history_trimmed_messages_total",
                "Messages removed from history, by reason (expired, topic_cap, byte_cap)",
                &["reason"],
            ),
            jwks_fetches: counter_vec(
                &r,
                "herald_jwks_fetches_total",
                "Fetches of issuers' JWKS URLs, by issuer and result (ok, error)",
                &["issuer", "result"],
            ),
            jwks_keys: {
                let g = IntGaugeVec::new(
                    Opts::new("herald_jwks_keys", "Keys in each issuer's JWKS as last fetched"),
                    &["issuer"],
                )
                .expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric names are unique");
                g
            },
            revocations_active: gauge(
                &r,
                "herald_revocations_active",
                "Revocations in force on this node (its copy of the cluster's)",
            ),
            revocations: counter_vec(
                &r,
                "herald_revocations_total",
                "Revocations recorded through this node's internal API, by kind (jti, sub, sid)",
                &["kind"],
            ),
            connections_revoked: counter(
                &r,
                "herald_connections_revoked_total",
                "Live connections ended because a revocation matched their token",
            ),
            outbox_overflows: counter(
                &r,
                "herald_outbox_overflows_total",
                "Subscriptions ended because the client read too slowly",
            ),
            replayed: counter(
                &r,
                "herald_replayed_messages_total",
                "Messages replayed from history on resume",
            ),
            accepted: counter(&r, "herald_messages_accepted_total", "Messages accepted by the hub"),
            subscription_closed: counter_vec(
                &r,
                "herald_subscriptions_closed_total",
                "Subscriptions ended, by reason",
                &["reason"],
            ),
            connections_rejected: counter_vec(
                &r,
                "herald_connections_rejected_total",
                "Public API connections refused with an error response, by reason (max_connections, \
                 subscription_rate, shutting_down, header_too_large)",
                &["reason"],
            ),
            publish_rejected: counter_vec(
                &r,
                "herald_publish_rejected_total",
                "Publish requests refused by a limit, by reason (body_too_large)",
                &["reason"],
            ),
            requests_refused: counter_vec(
                &r,
                "herald_requests_refused_total",
                "Public API requests refused for what they asked (a bad query, topic, cursor or grant), by code",
                &["code"],
            ),
            subscription_duration_ms: histogram_vec(
                &r,
                "subscription_duration_ms",
                "How long SSE subscriptions lasted, ms (Neurow's summary, as a histogram)",
                &["issuer"],
                SUBSCRIPTION_DURATION_MS_BUCKETS,
            ),
            http_request_duration_ms: histogram_vec(
                &r,
                "http_request_duration_ms",
                "Time to answer a request, ms; for a subscription, until it is open",
                &["interface"],
                HTTP_REQUEST_DURATION_MS_BUCKETS,
            ),
            http_request_exception_count: counter_vec(
                &r,
                "http_request_exception_count",
                "Requests whose handling panicked (a bug: please report it)",
                &["interface", "kind"],
            ),
            http_request_early_error_count: counter_vec(
                &r,
                "http_request_early_error_count",
                "Requests refused before routing: malformed (400) or oversized (431) heads",
                &["interface", "status"],
            ),
            history_rotate: counter(&r, "history_rotate", "History expiry sweeps run"),
            memory_usage: {
                let g = Gauge::new(
                    "memory_usage",
                    "Share of the allocator's resident memory in use by live allocations (0 to 1)",
                )
                .expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric names are unique");
                g
            },
            allocated_bytes: gauge(&r, "herald_allocated_bytes", "Bytes in live allocations (jemalloc)"),
            allocator_resident_bytes: gauge(
                &r,
                "herald_allocator_resident_bytes",
                "Bytes of memory the allocator holds resident (jemalloc)",
            ),
            fd_open_count: gauge(&r, "fd_open_count", "Open file descriptors"),
            fd_soft_limit: gauge(&r, "fd_soft_limit", "Soft limit of open file descriptors (ulimit -n)"),
            fd_hard_limit: gauge(&r, "fd_hard_limit", "Hard limit of open file descriptors"),
            delivery_latency: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "herald_delivery_latency_seconds",
                        "From a message's acceptance to its write to a stream; one observation per write, for its oldest message",
                    )
                    .buckets(DELIVERY_LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric definition");
                r.register(Box::new(h.clone())).expect("metric names are unique");
                h
            },
            backplane_errors: counter_vec(
                &r,
                "herald_backplane_errors_total",
                "Redis operations that failed, by operation (publish, history, heartbeat, listen); always 0 on a node without REDIS_URL",
                &["operation"],
            ),
            backplane_reconnections: counter(
                &r,
                "herald_backplane_reconnections_total",
                "Times a pub/sub listener was back on Redis after losing it",
            ),
            backplane_caught_up_topics: counter(
                &r,
                "herald_backplane_caught_up_topics_total",
                "Topics caught up from the shared history after a pub/sub outage",
            ),
            backplane_resumes_waiting: gauge(
                &r,
                "herald_backplane_resumes_waiting",
                "Resuming streams held open while the shared history cannot be read; they catch up once Redis is back",
            ),
            backplane_resumes_abandoned: counter(
                &r,
                "herald_backplane_resumes_abandoned_total",
                "Resuming streams told to reconnect because Redis stayed unreadable for CLUSTER_RESUME_TIMEOUT",
            ),
            cluster_nodes: gauge(
                &r,
                "herald_cluster_nodes",
                "Live nodes at this node's last successful heartbeat (1 without REDIS_URL)",
            ),
            published_by_issuer: HashMap::new(),
            usual_statuses: Vec::new(),
            registry: r,
        };
        for interface in [Interface::Public, Interface::Internal] {
            for status in USUAL_STATUSES {
                let counter = m
                    .http_request_count
                    .with_label_values(&[interface.label(), &status.to_string()]);
                m.usual_statuses.push((interface, status, counter));
            }
        }
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("metric names are unique");
        for interface in [Interface::Public, Interface::Internal] {
            m.http_request_duration_ms.with_label_values(&[interface.label()]);
            m.http_request_exception_count
                .with_label_values(&[interface.label(), "error"]);
        }
        for operation in BACKPLANE_OPERATIONS {
            m.backplane_errors.with_label_values(&[operation]);
        }
        m.cluster_nodes.set(1);
        for status in ["400", "431"] {
            m.http_request_early_error_count
                .with_label_values(&[Interface::Public.label(), status]);
        }
        for issuer in issuers {
            m.subscription_duration_ms.with_label_values(&[issuer]);
            let published = m.message.with_label_values(&["published", issuer]);
            m.published_by_issuer.insert(issuer.into(), published);
            m.concurrent_subscription.with_label_values(&[issuer]);
            for kind in ["created", "released"] {
                m.subscription_lifecycle.with_label_values(&[kind, issuer]);
            }
            for kind in ["published", "sent"] {
                m.message.with_label_values(&[kind, issuer]);
            }
        }
        for interface in [Interface::Public, Interface::Internal] {
            m.jwt_errors.with_label_values(&[interface.jwt_label()]);
        }
        for reason in ["expired", "topic_cap", "byte_cap"] {
            m.history_trimmed.with_label_values(&[reason]);
        }
        for reason in CONNECTION_REJECTION_REASONS {
            m.connections_rejected.with_label_values(&[reason]);
        }
        for reason in PUBLISH_REJECTION_REASONS {
            m.publish_rejected.with_label_values(&[reason]);
        }
        for kind in ["jti", "sub", "sid"] {
            m.revocations.with_label_values(&[kind]);
        }
        for code in REQUEST_REFUSAL_CODES {
            m.requests_refused.with_label_values(&[code]);
        }
        for reason in [
            "slow_consumer",
            "shutdown",
            "timeout",
            "credentials_expired",
            "credentials_revoked",
            "backplane_unavailable",
            "client_gone",
        ] {
            m.subscription_closed.with_label_values(&[reason]);
        }
        m
    }

    /// A subscription of `issuer` opened.
    pub fn subscription_opened(&self, issuer: &str) {
        self.concurrent_subscription.with_label_values(&[issuer]).inc();
        self.subscription_lifecycle
            .with_label_values(&["created", issuer])
            .inc();
    }

    /// A subscription of `issuer` ended for `reason`.
    pub fn subscription_released(&self, issuer: &str, reason: &str) {
        self.concurrent_subscription.with_label_values(&[issuer]).dec();
        self.subscription_lifecycle
            .with_label_values(&["released", issuer])
            .inc();
        self.subscription_closed.with_label_values(&[reason]).inc();
    }

    /// A subscription of `issuer` lasted `ms`.
    pub fn subscription_lasted(&self, issuer: &str, ms: u64) {
        self.subscription_duration_ms
            .with_label_values(&[issuer])
            .observe(ms as f64);
    }

    /// A request on `interface` was answered in `elapsed`.
    pub fn request_took(&self, interface: Interface, elapsed: std::time::Duration) {
        self.http_request_duration_ms
            .with_label_values(&[interface.label()])
            .observe(elapsed.as_secs_f64() * 1000.0);
    }

    /// A request head on `interface` was refused before routing with `status`.
    pub fn early_error(&self, interface: Interface, status: u16) {
        self.http_request_early_error_count
            .with_label_values(&[interface.label(), &status.to_string()])
            .inc();
    }

    /// A handler panicked; `interface` as far as the panic's location tells.
    pub fn exception(&self, interface: Option<Interface>) {
        let label = interface.map_or("unknown", Interface::label);
        self.http_request_exception_count
            .with_label_values(&[label, "error"])
            .inc();
    }

    /// A write to a stream finished whose oldest live message was accepted at `since_ns`
    /// ([`crate::clock::monotonic_ns`]).
    pub fn delivered(&self, since_ns: u64) {
        let elapsed_ns = crate::clock::monotonic_ns().saturating_sub(since_ns);
        self.delivery_latency.observe(elapsed_ns as f64 / 1e9);
    }

    /// The counter of messages written to streams of `issuer`; a stream keeps it to count cheaply.
    pub fn sent_counter(&self, issuer: &str) -> IntCounter {
        self.message.with_label_values(&["sent", issuer])
    }

    /// A publish request of `issuer` was accepted.
    pub fn publish_accepted(&self, issuer: &str) {
        match self.published_by_issuer.get(issuer) {
            Some(counter) => counter.inc(),
            None => self.message.with_label_values(&["published", issuer]).inc(),
        }
    }

    /// A token was refused on `interface`.
    pub fn jwt_error(&self, interface: Interface) {
        self.jwt_errors.with_label_values(&[interface.jwt_label()]).inc();
    }

    /// A request on `interface` was answered with `status`.
    pub fn http_request(&self, interface: Interface, status: u16) {
        let usual = self
            .usual_statuses
            .iter()
            .find(|(i, s, _)| *i == interface && *s == status);
        if let Some((_, _, counter)) = usual {
            return counter.inc();
        }
        self.http_request_count
            .with_label_values(&[interface.label(), &status.to_string()])
            .inc();
    }

    /// A public connection was refused for `reason`, one of [`CONNECTION_REJECTION_REASONS`].
    pub fn connection_rejected(&self, reason: &'static str) {
        self.connections_rejected.with_label_values(&[reason]).inc();
    }

    /// A public request was refused with `code`, one of [`REQUEST_REFUSAL_CODES`].
    pub fn request_refused(&self, code: &'static str) {
        self.requests_refused.with_label_values(&[code]).inc();
    }

    /// A publish request was refused by a limit, one of [`PUBLISH_REJECTION_REASONS`].
    pub fn publish_rejected(&self, reason: &'static str) {
        self.publish_rejected.with_label_values(&[reason]).inc();
    }

    /// `issuer` has a JWKS URL: its series read 0 before the first fetch, not absent.
    pub fn jwks_declared(&self, issuer: &str) {
        for result in ["ok", "error"] {
            self.jwks_fetches.with_label_values(&[issuer, result]);
        }
        self.jwks_keys.with_label_values(&[issuer]);
    }

    /// A fetch of `issuer`'s JWKS succeeded or not; it now has `keys` keys.
    pub fn jwks_fetched(&self, issuer: &str, ok: bool, keys: usize) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches.with_label_values(&[issuer, result]).inc();
        self.jwks_keys.with_label_values(&[issuer]).set(keys as i64);
    }

    /// A revocation of `kind` (`jti`, `sub`, `sid`) was recorded here.
    pub fn revocation_recorded(&self, kind: &str) {
        self.revocations.with_label_values(&[kind]).inc();
    }

    /// `n` live connections ended because a revocation matched them.
    pub fn connections_revoked(&self, n: usize) {
        self.connections_revoked.inc_by(n as u64);
    }

    /// How many revocations are in force.
    pub fn set_revocations_active(&self, n: usize) {
        self.revocations_active.set(n as i64);
    }

    /// Marks the node as shutting down.
    pub fn set_stopping(&self) {
        self.stopping.set(1);
    }

    /// The Prometheus text exposition, with the hub's and the backplane's figures copied in.
    pub fn render(&self, hub: &HubStats, backplane: Option<&BackplaneStats>) -> String {
        let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as i64;
        self.topics.set(load(&hub.topics));
        self.subscriptions.set(load(&hub.subscriptions));
        self.history_messages.set(load(&hub.history_messages));
        self.topic_count.set(load(&hub.history_messages));
        self.history_bytes.set(load(&hub.history_bytes));
        let catch_up = |c: &IntCounter, total: &std::sync::atomic::AtomicU64| {
            let total = total.load(Ordering::Relaxed);
            c.inc_by(total.saturating_sub(c.get()));
        };
        catch_up(&self.history_trimmed.with_label_values(&["expired"]), &hub.expired);
        catch_up(
            &self.history_trimmed.with_label_values(&["topic_cap"]),
            &hub.trimmed_by_topic_cap,
        );
        catch_up(
            &self.history_trimmed.with_label_values(&["byte_cap"]),
            &hub.trimmed_by_byte_cap,
        );
        catch_up(&self.outbox_overflows, &hub.outbox_overflows);
        catch_up(&self.replayed, &hub.replayed);
        catch_up(&self.accepted, &hub.messages_accepted);
        catch_up(&self.history_rotate, &hub.expiry_sweeps);
        if let Some(b) = backplane {
            for (operation, total) in BACKPLANE_OPERATIONS.into_iter().zip([
                &b.publish_errors,
                &b.history_errors,
                &b.heartbeat_errors,
                &b.listen_errors,
            ]) {
                catch_up(&self.backplane_errors.with_label_values(&[operation]), total);
            }
            catch_up(&self.backplane_reconnections, &b.reconnections);
            catch_up(&self.backplane_caught_up_topics, &b.caught_up_topics);
            catch_up(&self.backplane_resumes_abandoned, &b.resumes_abandoned);
            self.backplane_resumes_waiting
                .set(b.resumes_waiting.load(Ordering::Relaxed) as i64);
            self.cluster_nodes.set(b.live_nodes.load(Ordering::Relaxed) as i64);
        }
        if let Some(memory) = process::allocator_memory() {
            self.allocated_bytes.set(memory.allocated as i64);
            self.allocator_resident_bytes.set(memory.resident as i64);
            if memory.resident > 0 {
                self.memory_usage.set(memory.allocated as f64 / memory.resident as f64);
            }
        }
        if let Some(open) = process::open_fds() {
            self.fd_open_count.set(open as i64);
        }
        if let Some(limits) = process::fd_limits() {
            self.fd_soft_limit.set(limits.soft as i64);
            self.fd_hard_limit.set(limits.hard as i64);
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
