//! `/metrics` read by a real Prometheus text-format parser: every metric of spec §6 with Neurow's
//! names, types and labels, and Herald's own, with values that follow what the node did.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use prometheus_parse::{Scrape, Value};

/// A parsed scrape: samples by metric name.
struct Metrics {
    scrape: Scrape,
}

impl Metrics {
    fn scrape(h: &Herald) -> Metrics {
        let r = h.get_internal("/metrics");
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = r.text();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text format");
        Metrics { scrape }
    }

    fn samples(&self, name: &str) -> Vec<&prometheus_parse::Sample> {
        self.scrape.samples.iter().filter(|s| s.metric == name).collect()
    }

    /// The type and the label names of `name`, checked the same on every series.
    fn shape(&self, name: &str) -> (&'static str, BTreeSet<String>) {
        let samples = self.samples(name);
        assert!(!samples.is_empty(), "no metric {name}");
        let kind = |v: &Value| match v {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => "untyped",
        };
        let labels = |s: &prometheus_parse::Sample| -> BTreeSet<String> {
            s.labels.keys().filter(|k| *k != "le").cloned().collect()
        };
        let first = samples[0];
        for s in &samples {
            assert_eq!(kind(&s.value), kind(&first.value), "{name}: mixed types");
            assert_eq!(labels(s), labels(first), "{name}: mixed label names");
        }
        (kind(&first.value), labels(first))
    }

    /// The value of the series of `name` with exactly these labels (histograms: their count).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: HashMap<&str, &str> = labels.iter().copied().collect();
        let sample = self
            .samples(name)
            .into_iter()
            .find(|s| s.labels.len() == wanted.len() && wanted.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no series {name}{labels:?}"));
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => panic!("{name} is a summary"),
        }
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn every_metric_of_neurow_and_herald_has_its_name_type_and_labels() {
    let h = Herald::start();
    let m = Metrics::scrape(&h);
    let expected: &[(&str, &str, &[&str])] = &[
        // Spec §6, Neurow's names (no `_total`), types and labels. Neurow's summaries are
        // histograms here: their `_sum` and `_count` series are the same.
        ("concurrent_subscription", "gauge", &["issuer"]),
        ("subscription_lifecycle", "counter", &["kind", "issuer"]),
        ("subscription_duration_ms", "histogram", &["issuer"]),
        ("message", "counter", &["kind", "issuer"]),
        ("history_rotate", "counter", &[]),
        ("topic_count", "gauge", &[]),
        ("http_request_count", "counter", &["interface", "status"]),
        ("http_request_duration_ms", "histogram", &["interface"]),
        ("http_request_exception_count", "counter", &["interface", "kind"]),
        ("http_request_early_error_count", "counter", &["interface", "status"]),
        ("jwt_errors", "counter", &["interface"]),
        ("memory_usage", "gauge", &[]),
        ("stopping", "gauge", &[]),
        ("fd_open_count", "gauge", &[]),
        ("fd_soft_limit", "gauge", &[]),
        ("fd_hard_limit", "gauge", &[]),
        // Herald's own.
        ("herald_delivery_latency_seconds", "histogram", &[]),
        ("herald_topics", "gauge", &[]),
        ("herald_subscriptions", "gauge", &[]),
        ("herald_history_messages", "gauge", &[]),
        ("herald_history_bytes", "gauge", &[]),
        ("herald_history_trimmed_messages_total", "counter", &["reason"]),
        ("herald_outbox_overflows_total", "counter", &[]),
        ("herald_replayed_messages_total", "counter", &[]),
        ("herald_messages_accepted_total", "counter", &[]),
        ("herald_subscriptions_closed_total", "counter", &["reason"]),
        ("herald_connections_rejected_total", "counter", &["reason"]),
        ("herald_publish_rejected_total", "counter", &["reason"]),
        ("herald_allocated_bytes", "gauge", &[]),
        ("herald_allocator_resident_bytes", "gauge", &[]),
        ("herald_backplane_errors_total", "counter", &["operation"]),
        ("herald_backplane_reconnections_total", "counter", &[]),
        ("herald_backplane_caught_up_topics_total", "counter", &[]),
        ("herald_cluster_nodes", "gauge", &[]),
        // The process, in Prometheus's standard names.
        ("process_resident_memory_bytes", "gauge", &[]),
        ("process_cpu_seconds_total", "counter", &[]),
        ("process_open_fds", "gauge", &[]),
        ("process_max_fds", "gauge", &[]),
    ];
    for (name, kind, labels) in expected {
        assert_eq!(m.shape(name), (*kind, names(labels)), "{name}");
    }
    // Series that read 0 from the start rather than appearing on first use.
    assert_eq!(m.value("jwt_errors", &[("interface", "public")]), 0.0);
    assert_eq!(
        m.value("message", &[("kind", "published"), ("issuer", "test_issuer2")]),
        0.0
    );
    assert_eq!(m.value("stopping", &[]), 0.0);
    assert_eq!(
        m.value("herald_backplane_errors_total", &[("operation", "publish")]),
        0.0
    );
    assert_eq!(m.value("herald_cluster_nodes", &[]), 1.0);
    let open = m.value("fd_open_count", &[]);
    assert!(open >= 4.0 && open <= m.value("fd_soft_limit", &[]), "{open}");
    assert!(m.value("fd_soft_limit", &[]) <= m.value("fd_hard_limit", &[]));
    let usage = m.value("memory_usage", &[]);
    assert!(usage > 0.0 && usage <= 1.0, "memory_usage {usage}");
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
}

#[test]
fn metrics_follow_what_the_node_did() {
    let h = Herald::start();
    let mut s = h.subscribe(&sub_token("test_issuer1", "mx"), "");
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"mx","messages":[{"event":"e","payload":"1"},{"event":"e","payload":"2"}]}"#,
    );
    h.publish_ok(
        "test_issuer1",
        r#"{"topic":"mx","message":{"event":"e","payload":"3"}}"#,
    );
    for _ in 0..3 {
        s.next_message();
    }
    // A malformed head and an unknown route, refused before and after routing.
    assert_eq!(request(h.public, "GARBAGE\r\n\r\n").status, 400);
    let token = sub_token("test_issuer1", "mx");
    let r = request(
        h.public,
        &format!("GET /elsewhere HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 404);
    drop(s);
    eventually("the release", || {
        metric(&h, r#"subscription_lifecycle{issuer="test_issuer1",kind="released"}"#) == 1.0
    });

    let m = Metrics::scrape(&h);
    let issuer = ("issuer", "test_issuer1");
    assert_eq!(m.value("message", &[("kind", "published"), issuer]), 2.0);
    assert_eq!(m.value("message", &[("kind", "sent"), issuer]), 3.0);
    assert_eq!(m.value("herald_messages_accepted_total", &[]), 3.0);
    // One observation per write; the three messages took one to three writes.
    let writes = m.value("herald_delivery_latency_seconds", &[]);
    assert!((1.0..=3.0).contains(&writes), "{writes} writes");
    assert_eq!(m.value("subscription_duration_ms", &[issuer]), 1.0);
    assert_eq!(
        m.value(
            "http_request_early_error_count",
            &[("interface", "public_api"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        m.value("http_request_count", &[("interface", "public_api"), ("status", "404")]),
        1.0
    );
    assert_eq!(
        m.value(
            "http_request_count",
            &[("interface", "internal_api"), ("status", "200")]
        ),
        2.0
    );
    // Requests timed: the two publishes; the subscription and the 404 (not the head refused
    // before it was a request).
    assert_eq!(
        m.value("http_request_duration_ms", &[("interface", "internal_api")]),
        2.0
    );
    assert_eq!(m.value("http_request_duration_ms", &[("interface", "public_api")]), 2.0);
    assert_eq!(
        m.value("herald_subscriptions_closed_total", &[("reason", "client_gone")]),
        1.0
    );
    assert_eq!(m.value("concurrent_subscription", &[issuer]), 0.0);
}
