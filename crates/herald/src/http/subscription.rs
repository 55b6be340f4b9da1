//! One held subscription of the public API, whatever carries it (an HTTP/1.1 connection or an
//! HTTP/2 stream): a [`Connection`] of the node plus what the face counts about it — opened,
//! messages sent, how and after how long it ended — reported exactly once however it ends
//! (closed by the server, the client gone, a reset HTTP/2 stream, or its task cancelled).

use std::sync::Arc;

use prometheus::IntCounter;

use super::PublicApi;
use crate::auth::revocation::Identity;
use crate::hub::outbox::{Delivery, Outbox};
use crate::model::{Message, ResumeFrom, Topic};
use crate::node::{Connection, Opened};
use crate::observe::metrics::Interface;
use crate::transport::sse::body::HeldSubscription;
use crate::transport::sse::events::{EventFormat, HeraldEvents};
use crate::transport::sse::stream::{DeliveryCounter, StreamEnd};

/// A subscription request that passed every check.
#[derive(Debug)]
pub(crate) struct SubscribeRequest {
    /// When the request was read, for `http_request_duration_ms`.
    pub(crate) received: std::time::Instant,
    /// Each topic with where it resumes, in the connection's order.
    pub(crate) topics: Vec<(Topic, ResumeFrom)>,
    pub(crate) issuer: Arc<str>,
    pub(crate) expires_ms: u64,
    /// The token's revocation keys.
    pub(crate) identity: Identity,
    /// Which face's stream it is.
    pub(crate) kind: StreamKind,
}

/// The face a stream speaks for.
#[derive(Debug)]
pub(crate) enum StreamKind {
    /// v1: Neurow's events and head.
    Neurow,
    /// v2: Herald's events. Boxed: the request is part of every connection task's state.
    Herald(Box<HeraldRequest>),
}

/// What a v2 stream or poll needs besides its topics' resume points.
#[derive(Debug)]
pub(crate) struct HeraldRequest {
    /// The topics, in the connection's (canonical) order.
    pub(crate) topics: Box<[Topic]>,
    /// Where the cursor starts: the resumed positions, or (`None`) each topic's head.
    pub(crate) positions: Option<Vec<u64>>,
    /// The allowed origin to answer with credentials, if the request came from one.
    pub(crate) origin: Option<String>,
    /// `latest=1`: stored events to deliver first, by topic index (their ids are set to the
    /// topic's starting position, so the cursor does not move).
    pub(crate) latest: Vec<(u16, Message)>,
}

/// Puts `latest` before `replay`, each message on its topic and carrying the topic's starting
/// position as its id (so the cursor a client resumes with does not move).
pub(crate) fn with_latest(
    latest: Vec<(u16, Message)>,
    topics: &[Topic],
    positions: &[u64],
    mut replay: Vec<Delivery>,
) -> Vec<Delivery> {
    if latest.is_empty() {
        return replay;
    }
    let mut first: Vec<Delivery> = latest
        .into_iter()
        .filter_map(|(index, mut message)| {
            let i = usize::from(index);
            message.id = crate::model::EventId(*positions.get(i)?);
            let message = crate::model::SharedMessage::replayed(topics.get(i)?.clone(), message);
            Some(Delivery { index, message })
        })
        .collect();
    first.append(&mut replay);
    first
}

/// What a stream is made of once its connection is open.
pub(crate) struct Opening {
    pub(crate) subscription: Subscription,
    pub(crate) replay: Vec<Delivery>,
    pub(crate) format: EventFormat,
    /// The allowed origin of a v2 stream, for a head that allows credentials.
    pub(crate) origin: Option<String>,
}

/// An open subscription; dropping it closes its connection.
pub(crate) struct Subscription {
    connection: Connection,
    api: Arc<PublicApi>,
    issuer: Arc<str>,
    /// `message{kind="sent"}` of the issuer, resolved once.
    sent: IntCounter,
    /// How it ended; `ClientGone` until the transport says otherwise.
    pub(crate) end: StreamEnd,
    /// Wall-clock ms when it opened, for `subscription_duration_ms`.
    opened_ms: u64,
}

impl Subscription {
    /// Opens the subscription's connection and returns it with what to replay before live
    /// deliveries and how its events are written.
    pub(crate) fn open(api: &Arc<PublicApi>, request: SubscribeRequest) -> Opening {
        let now_ms = api.node.hub.clock().now_ms();
        let Opened {
            connection,
            mut replay,
            heads,
            gaps,
        } = Connection::open(&api.node, request.topics, request.expires_ms, request.identity);
        let (format, origin) = match request.kind {
            StreamKind::Neurow => (EventFormat::Neurow, None),
            StreamKind::Herald(herald) => {
                let HeraldRequest {
                    topics,
                    positions,
                    origin,
                    latest,
                } = *herald;
                let positions = positions.unwrap_or_else(|| heads.iter().map(|h| h.0).collect());
                replay = with_latest(latest, &topics, &positions, std::mem::take(&mut replay));
                let events = HeraldEvents::new(&topics, &request.issuer, &positions).with_gaps(&topics, &gaps);
                (EventFormat::Herald(Box::new(events)), origin)
            }
        };
        api.metrics.subscription_opened(&request.issuer);
        api.metrics.http_request(Interface::Public, 200);
        api.metrics.request_took(Interface::Public, request.received.elapsed());
        let subscription = Subscription {
            connection,
            api: api.clone(),
            sent: api.metrics.sent_counter(&request.issuer),
            issuer: request.issuer,
            end: StreamEnd::ClientGone,
            opened_ms: now_ms,
        };
        Opening {
            subscription,
            replay,
            format,
            origin,
        }
    }

    /// The subscription's outbox.
    pub(crate) fn outbox(&self) -> &Outbox {
        self.connection.outbox()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let reason = match self.end {
            StreamEnd::Closed(reason) => reason.code(),
            StreamEnd::ClientGone => "client_gone",
        };
        self.api.metrics.subscription_released(&self.issuer, reason);
        let lasted_ms = self.api.node.hub.clock().now_ms().saturating_sub(self.opened_ms);
        self.api.metrics.subscription_lasted(&self.issuer, lasted_ms);
        // Without the request's fields: keeping them for the stream's whole life would cost
        // every idle subscription memory.
        tracing::debug!(issuer = &*self.issuer, reason, "subscription closed");
    }
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
        self.connection.outbox()
    }

    fn ended(&mut self, end: StreamEnd) {
        self.end = end;
    }
}
