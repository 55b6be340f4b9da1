//! The writer of one held SSE stream: response head, replay, then live deliveries until the
//! connection ends or the client goes away.
//!
//! This is the state every idle subscription keeps for its whole life, so it is deliberately
//! small: the socket, a reference to the outbox and its event format, and nothing else between
//! wake-ups. Deliveries are taken from the outbox in batches and written with one `writev`. While idle, the task waits on
//! the outbox and on the socket becoming readable, which is how a client's hang-up is noticed.
//!
//! Rule for every `.await` here: no lock is held (the outbox lock is only taken inside
//! synchronous calls).

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::events::{EventFormat, Framing, messages_in};
use crate::hub::outbox::{CloseReason, Delivery, Outbox, Taken};

/// How long a write may stay stuck after the subscription started closing before the connection
/// is dropped without its closing event: a client that stopped reading cannot hold a task forever.
const STUCK_WRITE_GRACE: Duration = Duration::from_secs(2);

/// A connection a stream can be held on: plain TCP or TLS.
pub trait HeldConnection: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once the client has closed its side or the connection failed. Anything the client
    /// sends meanwhile is read and discarded: it has nothing to say on a held stream.
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

impl HeldConnection for TcpStream {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Readiness first, then a non-blocking read into a stack buffer: no buffer is kept
        // between wake-ups.
        loop {
            match self.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    let mut scratch = [0u8; 64];
                    match self.try_read(&mut scratch) {
                        Ok(0) => return Poll::Ready(()),
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return Poll::Ready(()),
                    }
                }
            }
        }
    }
}

impl HeldConnection for TlsStream<TcpStream> {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Reading drives TLS itself (a close_notify ends the stream like end-of-file).
        loop {
            let mut scratch = [0u8; 64];
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *self).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
            }
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server ended it and the client got the closing event.
    Closed(CloseReason),
    /// The client went away (or stopped reading while the stream was closing).
    ClientGone,
}

/// What the writer counts as it goes.
pub trait DeliveryCounter {
    /// `n` message frames were written; the oldest live one among them was accepted at
    /// `oldest_live_ns` ([`crate::clock::monotonic_ns`]), if any was live.
    fn messages_written(&self, n: u64, oldest_live_ns: Option<u64>);
}

/// Streams `head`, then `replay`, then live deliveries from `outbox` onto `socket`, as `format`
/// encodes them.
pub async fn run<S: HeldConnection>(
    socket: &mut S,
    framing: Framing,
    head: Bytes,
    replay: Vec<Delivery>,
    outbox: &Outbox,
    format: &mut EventFormat,
    counter: &impl DeliveryCounter,
) -> StreamEnd {
    let mut pieces = vec![head];
    format.opening(framing, &mut pieces);
    format.deliveries(&replay, framing, &mut pieces);
    if write_all(socket, &pieces, outbox).await.is_err() {
        return StreamEnd::ClientGone;
    }
    counter.messages_written(messages_in(&replay), None);
    drop((replay, pieces));

    loop {
        let mut batch: Vec<Delivery> = Vec::new();
        let mut pieces: Vec<Bytes> = Vec::new();
        match wait(socket, outbox, &mut batch).await {
            Wake::ClientGone => return StreamEnd::ClientGone,
            Wake::Taken(Taken::Deliveries) => {
                let oldest_live_ns = batch.iter().filter_map(|d| d.message.live_since_ns()).min();
                format.deliveries(&batch, framing, &mut pieces);
                if write_all(socket, &pieces, outbox).await.is_err() {
                    return StreamEnd::ClientGone;
                }
                counter.messages_written(messages_in(&batch), oldest_live_ns);
            }
            Wake::Taken(Taken::Ping) => {
                format.ping(framing, &mut pieces);
                if write_all(socket, &pieces, outbox).await.is_err() {
                    return StreamEnd::ClientGone;
                }
            }
            Wake::Taken(Taken::Close(reason)) => {
                // Boxed: this runs once per stream, so its timer need not enlarge the idle task.
                return Box::pin(finish(socket, framing, reason, outbox, format)).await;
            }
        }
    }
}

/// Writes the closing event and the last chunk, within [`STUCK_WRITE_GRACE`].
async fn finish<S: HeldConnection>(
    socket: &mut S,
    framing: Framing,
    reason: CloseReason,
    outbox: &Outbox,
    format: &EventFormat,
) -> StreamEnd {
    let mut pieces = Vec::new();
    format.closing(reason, framing, &mut pieces);
    let finished = tokio::time::timeout(STUCK_WRITE_GRACE, async {
        write_all(socket, &pieces, outbox).await?;
        socket.shutdown().await
    })
    .await;
    match finished {
        Ok(Ok(())) => StreamEnd::Closed(reason),
        _ => StreamEnd::ClientGone,
    }
}

enum Wake {
    Taken(Taken),
    ClientGone,
}

/// Waits for deliveries, a ping, a close, or the client hanging up.
async fn wait<S: HeldConnection>(socket: &mut S, outbox: &Outbox, batch: &mut Vec<Delivery>) -> Wake {
    poll_fn(|cx| {
        if let Poll::Ready(taken) = outbox.poll_take(cx, batch) {
            return Poll::Ready(Wake::Taken(taken));
        }
        socket.poll_hangup(cx).map(|()| Wake::ClientGone)
    })
    .await
}

/// Writes every buffer with as few `writev` calls as the socket allows. Gives up
/// [`STUCK_WRITE_GRACE`] after the connection starts closing if the client is not reading.
pub(crate) async fn write_all<S: HeldConnection>(socket: &mut S, bufs: &[Bytes], outbox: &Outbox) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut remaining: &mut [IoSlice<'_>] = &mut slices;
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        while !remaining.is_empty() {
            match Pin::new(&mut *socket).poll_write_vectored(cx, remaining) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => IoSlice::advance_slices(&mut remaining, n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if grace.is_none() && outbox.poll_closing(cx).is_ready() {
                        grace = Some(Box::pin(tokio::time::sleep(STUCK_WRITE_GRACE)));
                    }
                    if let Some(g) = grace.as_mut()
                        && g.as_mut().poll(cx).is_ready()
                    {
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}
