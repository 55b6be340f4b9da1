//! Counters and histograms a worker collects, in a form that crosses process boundaries.
//!
//! Each worker process keeps one [`Stats`]; the coordinator merges the workers' copies. Histograms
//! travel as `(value, count)` pairs of their recorded buckets, which keeps the JSON small and lets
//! the coordinator rebuild an exact copy at the histogram's precision.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Highest value a histogram holds (one hour in microseconds); larger values are clamped.
const HIST_MAX: u64 = 3_600_000_000;

/// An HDR histogram of microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, HIST_MAX, 3).expect("static histogram bounds are valid"))
    }
}

impl Hist {
    /// Records one value, clamped into the histogram's range.
    pub fn record(&mut self, us: u64) {
        // Clamped into range, so recording cannot fail.
        let _ = self.0.record(us.clamp(1, HIST_MAX));
    }

    /// Adds all of `other`'s values.
    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// The percentiles reported everywhere, in milliseconds.
    pub fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: self.count(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

impl Serialize for Hist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = self
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut h = Hist::default();
        for (value, count) in pairs {
            let _ = h.0.record_n(value.clamp(1, HIST_MAX), count);
        }
        Ok(h)
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// What one worker (or, merged, the whole run) observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Message events received, duplicates included.
    pub delivered: u64,
    /// Distinct messages received.
    pub unique: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages that arrived after a later one on the same topic.
    pub out_of_order: u64,
    /// Messages published (accepted by the server) but never received; set when draining.
    pub lost: u64,
    /// Keep-alive events received.
    pub pings: u64,
    /// Long-poll answers received (with messages or not).
    #[serde(default)]
    pub polls: u64,
    /// Publishes accepted by the server.
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// `--tolerate-faults`: publishes refused or failed, skipped rather than counted as errors
    /// (never promised, so each may arrive once or not at all).
    #[serde(default)]
    pub publish_refused: u64,
    /// `--tolerate-faults`: the faults ridden out, by label (refused publishes, streams cut,
    /// subscribes that failed and were tried again).
    #[serde(default)]
    pub faults: BTreeMap<String, u64>,
    /// Subscriptions that got their 200 response head.
    pub connected: u64,
    /// Subscriptions that could not be opened.
    pub connect_failed: u64,
    /// Subscriptions re-opened after the stream ended.
    pub reconnects: u64,
    /// Streams that ended while the run still needed them.
    pub streams_ended: u64,
    /// Neurow scenario: virtual users that received all their messages.
    pub users_ok: u64,
    /// Neurow scenario: virtual users that failed.
    pub users_error: u64,
    /// Neurow scenario: virtual users still running (all published messages received) at the end.
    pub users_cut: u64,
    /// Error counts by label.
    pub errors: BTreeMap<String, u64>,
    /// End-to-end latency, microseconds (receive time minus send time in the payload).
    pub latency: Hist,
    /// Subscribe time, microseconds (connect start to response head).
    pub connect: Hist,
    /// Publish request/response time, microseconds.
    pub publish: Hist,
}

impl Stats {
    /// Counts one error under `label`.
    pub fn error(&mut self, label: impl Into<String>) {
        *self.errors.entry(label.into()).or_default() += 1;
    }

    /// Counts one fault ridden out under `label` (`--tolerate-faults`).
    pub fn fault(&mut self, label: impl Into<String>) {
        *self.faults.entry(label.into()).or_default() += 1;
    }

    /// Total of all error counters.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.delivered += other.delivered;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.lost += other.lost;
        self.pings += other.pings;
        self.polls += other.polls;
        self.published += other.published;
        self.publish_errors += other.publish_errors;
        self.publish_refused += other.publish_refused;
        for (k, v) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += v;
        }
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.reconnects += other.reconnects;
        self.streams_ended += other.streams_ended;
        self.users_ok += other.users_ok;
        self.users_error += other.users_error;
        self.users_cut += other.users_cut;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.latency.merge(&other.latency);
        self.connect.merge(&other.connect);
        self.publish.merge(&other.publish);
    }

    /// True when nothing was lost, duplicated or reordered and no error was counted.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.connect_failed == 0
            && self.publish_errors == 0
            && self.error_total() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_survives_json_and_merges() {
        let mut a = Stats::default();
        for v in 1..=1000 {
            a.latency.record(v * 10);
        }
        a.error("x");
        let json = serde_json::to_string(&a).expect("serialize");
        let b: Stats = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(b.latency.count(), 1000);
        let p99 = b.latency.quantile(0.99);
        assert!((9890..=9910).contains(&p99), "p99 {p99}");
        let mut m = Stats::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.latency.count(), 2000);
        assert_eq!(m.errors["x"], 2);
        assert!(!m.clean());
    }
}
