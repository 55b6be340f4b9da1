//! Metrics, declared in one place and rendered in Prometheus text format on `/metrics`.
//!
//! Neurow's metric names, types and labels are kept as they are (no `_total` suffix) so existing
//! dashboards keep working; Herald's own metrics are prefixed `herald_` and follow Prometheus
//! naming. Labels come from bounded sets only: the issuer (configured), the interface, the kind.
//! Hub counters live in the hub as plain atomics, so the fan-out path pays nothing for metrics;
//! they are copied into the registry when `/metrics` is scraped.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::hub::HubStats;

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
    requests_rejected: IntCounterVec,
    /// `message{kind="published"}` per configured issuer, looked up without hashing the labels.
    published_by_issuer: HashMap<Box<str>, IntCounter>,
    /// `http_request_count` of the usual statuses, per interface, found without formatting.
    usual_statuses: Vec<(Interface, u16, IntCounter)>,
}

/// Why a request may be refused to protect the node (`herald_requests_rejected_total`).
const REQUEST_REJECTION_REASONS: &[&str] = &["body_too_large"];

/// Statuses whose `http_request_count` series are resolved once, at start.
const USUAL_STATUSES: [u16; 10] = [200, 204, 400, 401, 403, 404, 413, 431, 500, 503];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

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
                "Public API connections refused, by reason",
                &["reason"],
            ),
            requests_rejected: counter_vec(
                &r,
                "herald_requests_rejected_total",
                "Requests refused to protect the node, by reason (body_too_large, …)",
                &["reason"],
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
        for reason in REQUEST_REJECTION_REASONS {
            m.requests_rejected.with_label_values(&[reason]);
        }
        for issuer in issuers {
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
        for reason in ["max_connections", "shutting_down"] {
            m.connections_rejected.with_label_values(&[reason]);
        }
        for reason in [
            "slow_consumer",
            "shutdown",
            "timeout",
            "credentials_expired",
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

    /// A request was refused to protect the node, for `reason`.
    pub fn request_rejected(&self, reason: &str) {
        self.requests_rejected.with_label_values(&[reason]).inc();
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

    /// A public connection was refused for `reason`.
    pub fn connection_rejected(&self, reason: &str) {
        self.connections_rejected.with_label_values(&[reason]).inc();
    }

    /// Marks the node as shutting down.
    pub fn set_stopping(&self) {
        self.stopping.set(1);
    }

    /// The Prometheus text exposition, with the hub's figures copied in.
    pub fn render(&self, hub: &HubStats) -> String {
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
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
