//! One held subscription, whatever carries it (an HTTP/1.1 connection or an HTTP/2 stream):
//! registered in the hub and in the liveness sweep when it opens, counted in the metrics, and
//! released exactly once however it ends — closed by the server, the client gone, a reset
//! HTTP/2 stream, or its task cancelled.

use std::sync::Arc;

use prometheus::IntCounter;

use super::PublicApi;
use crate::backplane::{Backplane, RedisBackplane};
use crate::hub::SubscriptionKey;
use crate::hub::liveness::LivenessKey;
use crate::hub::outbox::Outbox;
use crate::model::{ResumeFrom, Topic};
use crate::observe::metrics::Interface;
use crate::transport::sse::body::HeldSubscription;
use crate::transport::sse::frame::Frame;
use crate::transport::sse::stream::{DeliveryCounter, StreamEnd};

/// A subscription request that passed every check.
#[derive(Debug)]
pub(super) struct SubscribeRequest {
    /// When the request was read, for `http_request_duration_ms`.
    pub(super) received: std::time::Instant,
    pub(super) topic: Topic,
    pub(super) resume: ResumeFrom,
    pub(super) issuer: Arc<str>,
    pub(super) expires_ms: u64,
}

/// An open subscription; dropping it unregisters it.
pub(super) struct Subscription {
    api: Arc<PublicApi>,
    key: SubscriptionKey,
    liveness_key: LivenessKey,
    outbox: Arc<Outbox>,
    issuer: Arc<str>,
    /// `message{kind="sent"}` of the issuer, resolved once.
    sent: IntCounter,
    /// How it ended; `ClientGone` until the transport says otherwise.
    pub(super) end: StreamEnd,
    /// Wall-clock ms when it opened, for `subscription_duration_ms`.
    opened_ms: u64,
}

impl Subscription {
    /// Registers a subscription and returns it with the history to replay before live frames.
    pub(super) fn open(api: &Arc<PublicApi>, request: SubscribeRequest) -> (Subscription, Vec<Frame>) {
        let now_ms = api.hub.clock().now_ms();
        let outbox = Arc::new(Outbox::new(api.settings.outbox_capacity, now_ms, request.expires_ms));
        let (key, replay) = match &api.backplane {
            Backplane::Local => {
                let subscribed = api.hub.subscribe(request.topic, request.resume, outbox.clone());
                (subscribed.key, subscribed.replay)
            }
            Backplane::Redis(redis) => {
                let key = api.hub.subscribe_relayed(request.topic, request.resume, outbox.clone());
                catch_up(api, redis, &key, &outbox, request.resume);
                (key, Vec::new())
            }
        };
        let liveness_key = api.liveness.register(outbox.clone());
        api.metrics.subscription_opened(&request.issuer);
        api.metrics.http_request(Interface::Public, 200);
        api.metrics.request_took(Interface::Public, request.received.elapsed());
        let subscription = Subscription {
            api: api.clone(),
            key,
            liveness_key,
            outbox,
            sent: api.metrics.sent_counter(&request.issuer),
            issuer: request.issuer,
            end: StreamEnd::ClientGone,
            opened_ms: now_ms,
        };
        (subscription, replay)
    }

    /// The subscription's outbox.
    pub(super) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.api.hub.unsubscribe(&self.key, &self.outbox);
        if let Backplane::Redis(redis) = &self.api.backplane {
            redis.interest_changed(self.key.topic());
        }
        self.api.liveness.unregister(self.liveness_key);
        let reason = match self.end {
            StreamEnd::Closed(reason) => reason.code(),
            StreamEnd::ClientGone => "client_gone",
        };
        self.api.metrics.subscription_released(&self.issuer, reason);
        let lasted_ms = self.api.hub.clock().now_ms().saturating_sub(self.opened_ms);
        self.api.metrics.subscription_lasted(&self.issuer, lasted_ms);
        // Without the request's fields: keeping them for the stream's whole life would cost
        // every idle subscription memory.
        tracing::debug!(issuer = &*self.issuer, reason, "subscription closed");
    }
}

/// Cluster mode: makes sure the node listens to the topic, then (when resuming) reads the shared
/// history and hands it to the hub, which merges it with the live messages held meanwhile; while
/// Redis is away it keeps trying ([`RedisBackplane::catch_up`]). Runs beside the stream, which
/// starts at once and writes whatever the outbox receives.
fn catch_up(
    api: &Arc<PublicApi>,
    redis: &Arc<RedisBackplane>,
    key: &SubscriptionKey,
    outbox: &Arc<Outbox>,
    resume: ResumeFrom,
) {
    if resume == ResumeFrom::Live {
        redis.interest_changed(key.topic());
        return;
    }
    let (hub, redis, key, outbox) = (api.hub.clone(), redis.clone(), key.clone(), outbox.clone());
    tokio::spawn(async move { redis.catch_up(&hub, &key, &outbox, resume).await });
}

impl DeliveryCounter for Subscription {
    fn messages_written(&self, n: u64, oldest_live_ns: Option<u64>) {
        if n > 0 {
            self.sent.inc_by(n);
        }
        if let Some(since) = oldest_live_ns {
            self.api.metrics.delivered(since);
        }
    }
}

impl HeldSubscription for Subscription {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn ended(&mut self, end: StreamEnd) {
        self.end = end;
    }
}
