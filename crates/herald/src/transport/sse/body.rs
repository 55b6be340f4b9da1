//! A held SSE stream as an HTTP/2 response body: replay, then live frames from the outbox, then
//! the closing event, each as one data frame.
//!
//! Over HTTP/2 hyper writes the bytes, so the stream is a [`Body`] that hyper polls when it can
//! send more. Each data frame carries exactly the SSE event an HTTP/1.1 stream carries inside
//! one chunk: a zero-copy slice of the shared [`Frame`] ([`Frame::event_bytes`]), so a message is
//! still encoded once for every subscriber of either protocol.
//!
//! Like the HTTP/1.1 writer, this is the state an idle stream keeps for its whole life: the
//! subscription and an empty iterator, nothing else. A client reset or a closed connection makes
//! hyper drop the body, which drops the subscription.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame as BodyFrame, SizeHint};

use super::frame::Frame;
use super::stream::{DeliveryCounter, StreamEnd};
use crate::hub::outbox::{Outbox, Taken};

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
    /// Frames taken (the replay, then outbox batches) and not yet handed to hyper. Replaced by an
    /// empty iterator once drained, so an idle stream keeps no buffer.
    pending: std::vec::IntoIter<Frame>,
    done: bool,
}

impl<S: HeldSubscription> EventBody<S> {
    /// A body that streams `replay`, then the subscription's outbox until it closes.
    pub fn new(subscription: S, replay: Vec<Frame>) -> Self {
        EventBody {
            subscription,
            pending: replay.into_iter(),
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
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(frame) = this.pending.next() {
                if frame.is_message() {
                    this.subscription.messages_written(1, frame.live_since_ns());
                }
                return Poll::Ready(Some(Ok(BodyFrame::data(frame.event_bytes()))));
            }
            // Drained: give the batch's buffer back before waiting.
            this.pending = Vec::new().into_iter();
            let mut batch = Vec::new();
            match this.subscription.outbox().poll_take(cx, &mut batch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Taken::Frames) => this.pending = batch.into_iter(),
                Poll::Ready(Taken::Close(reason)) => {
                    this.done = true;
                    this.subscription.ended(StreamEnd::Closed(reason));
                    let closing = Frame::control(reason.event_name());
                    return Poll::Ready(Some(Ok(BodyFrame::data(closing.event_bytes()))));
                }
            }
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

    fn message(id: u64) -> Frame {
        Frame::message(&crate::model::Message {
            id: crate::model::EventId(id),
            event: Bytes::from_static(b"e"),
            payload: Bytes::from_static(b"p"),
            accepted_ms: 0,
        })
    }

    async fn next(body: &mut EventBody<Fake>) -> Option<Bytes> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
            .await
            .map(|f| f.unwrap().into_data().unwrap())
    }

    #[tokio::test]
    async fn each_event_is_one_data_frame_with_the_chunks_bytes_then_the_closing_event() {
        let outbox = Arc::new(Outbox::new(8, 0, u64::MAX));
        let written = Arc::new(AtomicU64::new(0));
        let fake = Fake {
            outbox: outbox.clone(),
            written: written.clone(),
            end: None,
        };
        let mut body = EventBody::new(fake, vec![message(1)]);
        assert_eq!(next(&mut body).await.unwrap(), message(1).event_bytes());
        outbox.push_message(message(2), 1);
        assert_eq!(next(&mut body).await.unwrap(), message(2).event_bytes());
        outbox.close(CloseReason::Shutdown);
        assert_eq!(&next(&mut body).await.unwrap()[..], b"event: reconnect\n\n");
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body).await, None);
        assert_eq!(written.load(Ordering::Relaxed), 2);
        assert_eq!(body.subscription().end, Some(StreamEnd::Closed(CloseReason::Shutdown)));
    }
}
