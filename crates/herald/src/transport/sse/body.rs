//! A held SSE stream as an HTTP/2 response body: replay, then live deliveries from the outbox,
//! then the closing event, each event as one data frame (or, when part of it is the connection's
//! own, two).
//!
//! Over HTTP/2 hyper writes the bytes, so the stream is a [`Body`] that hyper polls when it can
//! send more. Each data frame carries exactly the SSE event an HTTP/1.1 stream carries inside
//! one chunk: a zero-copy slice of the shared encoding, so a message is still encoded once for
//! every subscriber of either protocol.
//!
//! Like the HTTP/1.1 writer, this is the state an idle stream keeps for its whole life: the
//! subscription, its event format and an empty iterator, nothing else. A client reset or a closed connection makes
//! hyper drop the body, which drops the subscription.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame as BodyFrame, SizeHint};

use super::events::{EventFormat, Framing, messages_in};
use super::stream::{DeliveryCounter, StreamEnd};
use crate::hub::outbox::{Delivery, Outbox, Taken};

/// What an event body streams for: the subscription it belongs to.
pub trait HeldSubscription: DeliveryCounter + Send + Unpin + 'static {
    /// The subscription's outbox.
    fn outbox(&self) -> &Outbox;
    /// Records how the stream ended (the closing event was handed over).
    fn ended(&mut self, end: StreamEnd);
}

/// One subscription's SSE events as a response body.
pub struct EventBody<S> {
    subscription: S,
    format: EventFormat,
    /// Bytes made (the opening and replay, then outbox batches) and not yet handed to hyper.
    /// Replaced by an empty iterator once drained, so an idle stream keeps no buffer.
    pending: std::vec::IntoIter<Bytes>,
    done: bool,
}

impl<S: HeldSubscription> EventBody<S> {
    /// A body that streams `replay`, then the subscription's outbox until it closes.
    pub fn new(subscription: S, mut format: EventFormat, replay: Vec<Delivery>) -> Self {
        let mut pieces = Vec::new();
        format.opening(Framing::Raw, &mut pieces);
        format.deliveries(&replay, Framing::Raw, &mut pieces);
        subscription.messages_written(replay.len() as u64, None);
        EventBody {
            subscription,
            format,
            pending: pieces.into_iter(),
            done: false,
        }
    }

    /// The subscription.
    pub fn subscription(&self) -> &S {
        &self.subscription
    }
}

impl<S: HeldSubscription> Body for EventBody<S> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.pending.next() {
                return Poll::Ready(Some(Ok(BodyFrame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            // Drained: give the batch's buffer back before waiting.
            this.pending = Vec::new().into_iter();
            let mut batch = Vec::new();
            let mut pieces = Vec::new();
            match this.subscription.outbox().poll_take(cx, &mut batch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Taken::Deliveries) => {
                    let oldest_live_ns = batch.iter().filter_map(|d| d.message.live_since_ns()).min();
                    this.format.deliveries(&batch, Framing::Raw, &mut pieces);
                    // Counted when handed to hyper, which writes them as the client's window allows.
                    this.subscription.messages_written(messages_in(&batch), oldest_live_ns);
                }
                Poll::Ready(Taken::Ping) => this.format.ping(Framing::Raw, &mut pieces),
                Poll::Ready(Taken::Close(reason)) => {
                    this.done = true;
                    this.subscription.ended(StreamEnd::Closed(reason));
                    this.format.closing(reason, Framing::Raw, &mut pieces);
                }
            }
            this.pending = pieces.into_iter();
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::CloseReason;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fake {
        outbox: Arc<Outbox>,
        written: Arc<AtomicU64>,
        end: Option<StreamEnd>,
    }

    impl DeliveryCounter for Fake {
        fn messages_written(&self, n: u64, _: Option<u64>) {
            self.written.fetch_add(n, Ordering::Relaxed);
        }
    }

    impl HeldSubscription for Fake {
        fn outbox(&self) -> &Outbox {
            &self.outbox
        }
        fn ended(&mut self, end: StreamEnd) {
            self.end = Some(end);
        }
    }

    fn message(id: u64) -> Delivery {
        Delivery {
            index: 0,
            message: crate::model::SharedMessage::replayed(
                crate::model::Topic::from_full_name("i-t"),
                crate::model::Message {
                    id: crate::model::EventId(id),
                    event: Bytes::from_static(b"e"),
                    payload: Bytes::from_static(b"p"),
                    accepted_ms: 0,
                },
            ),
        }
    }

    fn event(id: u64) -> String {
        format!("id: {id}\nevent: e\ndata: p\n\n")
    }

    async fn next(body: &mut EventBody<Fake>) -> Option<Bytes> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|f| f.unwrap().into_data().unwrap())
    }

    #[tokio::test]
    async fn each_event_is_one_data_frame_with_the_chunks_bytes_then_the_closing_event() {
        // Neurow's events are whole: one data frame each.
        let outbox = Arc::new(Outbox::new(8, 0, u64::MAX));
        let written = Arc::new(AtomicU64::new(0));
        let fake = Fake {
            outbox: outbox.clone(),
            written: written.clone(),
            end: None,
        };
        let mut body = EventBody::new(fake, EventFormat::Neurow, vec![message(1)]);
        assert_eq!(next(&mut body).await.unwrap(), event(1));
        outbox.push_message(message(2), 1);
        assert_eq!(next(&mut body).await.unwrap(), event(2));
        outbox.push_keepalive(2);
        assert_eq!(&next(&mut body).await.unwrap()[..], b"event: ping\n\n");
        outbox.close(CloseReason::Shutdown);
        assert_eq!(&next(&mut body).await.unwrap()[..], b"event: reconnect\n\n");
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body).await, None);
        assert_eq!(written.load(Ordering::Relaxed), 2);
        assert_eq!(body.subscription().end, Some(StreamEnd::Closed(CloseReason::Shutdown)));
    }
}
