//! One held WebSocket after its `101`: frames from the outbox out, frames from the client in, and
//! the close handshake, for whatever face speaks over it ([`Handler`]).
//!
//! Like the SSE stream (`transport::sse::stream`), the task keeps little between wake-ups: the
//! socket, the handler, an idle [`Parser`] (two empty `Vec`s) and a few counters. It waits on the
//! outbox and on the socket becoming readable; what it reads goes through a stack buffer into the
//! parser, so no read buffer stays allocated. The outbox is the only queue: frames are built per
//! wake-up into one buffer and written with one call, and nothing is kept once written.
//!
//! The wake-up after a delivery is the hot path (one per message in a one-to-one load), so it
//! allocates only the batch and the frame buffer: the read attempt made at every wake-up uses an
//! uninitialised stack buffer (zeroing 4 KiB was a third of the session's instructions per
//! delivery; a plain TCP socket that was not signalled readable returns before touching it), and
//! the frame buffer is written as it is, not through `Bytes` and a vector of slices.
//!
//! Rule for every `.await` here: no lock is held.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, ReadBuf};

use super::frame::{self, Incoming, Parser, Violation, close, opcode};
use crate::hub::outbox::{CloseReason, Delivery, Outbox, Taken};
use crate::transport::sse::stream::HeldConnection;

/// How long Herald waits for the client's close frame after sending its own, and for a stuck
/// write while closing.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most bytes taken from the socket per wake-up, in a buffer on the poll's stack (not the task's):
/// a client's commands are small, and a larger message is assembled by the parser over reads.
const READ_CHUNK: usize = 4096;

/// Why the server closes the connection: a close code and a reason for the close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code (see [`frame::close`]).
    pub code: u16,
    /// Why, in words (at most 123 bytes are sent).
    pub reason: String,
}

impl Close {
    /// A close with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }
}

impl From<Violation> for Close {
    fn from(v: Violation) -> Close {
        Close::new(v.code, v.reason)
    }
}

/// What a face does with a WebSocket.
pub trait Handler: Send {
    /// The connection's outbox.
    fn outbox(&self) -> &Outbox;

    /// Appends the frames of `batch` to `out`; returns how many were messages (for the counters).
    fn deliveries(&mut self, batch: &[Delivery], out: &mut Vec<u8>) -> u64;

    /// A text message from the client: appends the answer's frames to `out`, or closes.
    fn text(&mut self, text: String, out: &mut Vec<u8>) -> impl Future<Output = Result<(), Close>> + Send;

    /// A binary message from the client: appends frames to `out`, or closes.
    fn binary(&mut self, data: Vec<u8>, out: &mut Vec<u8>) -> Result<(), Close>;

    /// The keep-alive is due: appends what the face sends besides the ping frame.
    fn keepalive(&mut self, out: &mut Vec<u8>);

    /// The close frame for an outbox that closed for `reason`.
    fn close_for(&self, reason: CloseReason) -> Close;

    /// When, if ever, a connection that has not authenticated yet must have (monotonic ms,
    /// [`crate::clock::monotonic_ns`] / 1e6). Checked at every wake-up.
    fn auth_deadline_ms(&self) -> Option<u64> {
        None
    }

    /// `n` messages were written; the oldest live one was accepted at `oldest_live_ns`.
    fn written(&self, _n: u64, _oldest_live_ns: Option<u64>) {}
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `WS_MAX_MESSAGE_SIZE`: a larger message closes with 1009.
    pub max_message: usize,
    /// `WS_MAX_COMMANDS_PER_SECOND`: more messages in a second close with 4429 (0: no limit).
    pub max_commands_per_second: u32,
    /// How long a client may stay silent (no frame at all, pongs included) before it is closed
    /// with 4512: the ping interval plus a grace. Checked when a keep-alive is due.
    pub silence_ms: u64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Herald closed it with this code.
    Closed(u16),
    /// The client closed it (its close frame was answered).
    ClientClosed(u16),
    /// The connection dropped without a close handshake.
    Gone,
}

enum Wake {
    Taken(Taken),
    /// What the client's bytes completed, then the violation that ends the connection, if any:
    /// the frames before a bad one are answered first.
    Read(Vec<Incoming>, Option<Violation>),
    Eof,
    AuthTimeout,
}

/// Runs the connection until it ends.
pub async fn run<S: HeldConnection, H: Handler>(socket: &mut S, handler: &mut H, limits: Limits) -> SessionEnd {
    let mut parser = Parser::default();
    let mut heard_ms = now_ms();
    let (mut window_start_ms, mut commands) = (heard_ms, 0u32);
    // A timer only while the connection has not authenticated, boxed so that it does not
    // enlarge the task of every connection that has.
    let mut auth_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let mut batch: Vec<Delivery> = Vec::new();
        let deadline = handler.auth_deadline_ms();
        match deadline {
            Some(d) if auth_timer.is_none() => {
                let wait = Duration::from_millis(d.saturating_sub(now_ms()));
                auth_timer = Some(Box::pin(tokio::time::sleep(wait)));
            }
            None => auth_timer = None,
            Some(_) => {}
        }
        let wake = poll_fn(|cx| {
            if let Poll::Ready(taken) = handler.outbox().poll_take(cx, &mut batch) {
                return Poll::Ready(Wake::Taken(taken));
            }
            if let Some(timer) = auth_timer.as_mut()
                && timer.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Wake::AuthTimeout);
            }
            let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut *socket).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => Poll::Ready(Wake::Eof),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Wake::Eof),
                Poll::Ready(Ok(())) => {
                    let mut incoming = Vec::new();
                    let fed = parser.feed(buf.filled(), limits.max_message, &mut incoming);
                    Poll::Ready(Wake::Read(incoming, fed.err()))
                }
            }
        });
        let wake = wake.await;
        let mut out = Vec::new();
        match wake {
            Wake::Eof => return SessionEnd::Gone,
            Wake::AuthTimeout => {
                let close = Close::new(close::UNAUTHORIZED, "no token: send an auth command within 5 s");
                return Box::pin(finish(socket, handler.outbox(), close)).await;
            }
            Wake::Taken(Taken::Deliveries) => {
                let oldest_live_ns = batch.iter().filter_map(|d| d.message.live_since_ns()).min();
                let n = handler.deliveries(&batch, &mut out);
                if write(socket, out, handler.outbox()).await.is_err() {
                    return SessionEnd::Gone;
                }
                handler.written(n, oldest_live_ns);
            }
            Wake::Taken(Taken::Ping) => {
                if now_ms().saturating_sub(heard_ms) > limits.silence_ms {
                    let close = Close::new(close::NO_PONG, "no frame from the client within the ping interval");
                    return Box::pin(finish(socket, handler.outbox(), close)).await;
                }
                out.extend_from_slice(&frame::frame(opcode::PING, b""));
                handler.keepalive(&mut out);
                if write(socket, out, handler.outbox()).await.is_err() {
                    return SessionEnd::Gone;
                }
            }
            Wake::Taken(Taken::Close(reason)) => {
                let close = handler.close_for(reason);
                return Box::pin(finish(socket, handler.outbox(), close)).await;
            }
            Wake::Read(incoming, violation) => {
                heard_ms = now_ms();
                for item in incoming {
                    let handled = match item {
                        Incoming::Ping(payload) => {
                            out.extend_from_slice(&frame::frame(opcode::PONG, &payload));
                            Ok(())
                        }
                        Incoming::Pong => Ok(()),
                        Incoming::Close(code, _) => {
                            return Box::pin(answer_close(socket, handler.outbox(), out, code)).await;
                        }
                        message @ (Incoming::Text(_) | Incoming::Binary(_)) => {
                            if heard_ms.saturating_sub(window_start_ms) >= 1000 {
                                (window_start_ms, commands) = (heard_ms, 0);
                            }
                            commands += 1;
                            if limits.max_commands_per_second > 0 && commands > limits.max_commands_per_second {
                                Err(Close::new(
                                    close::RATE_LIMITED,
                                    "more commands than WS_MAX_COMMANDS_PER_SECOND",
                                ))
                            } else if let Incoming::Text(text) = message {
                                // Boxed: a command's future (a publish through Redis, say) is
                                // large, and inlined it would enlarge every idle connection.
                                Box::pin(handler.text(text, &mut out)).await
                            } else if let Incoming::Binary(data) = message {
                                handler.binary(data, &mut out)
                            } else {
                                unreachable!("matched above")
                            }
                        }
                    };
                    if let Err(close) = handled {
                        if !out.is_empty() && write(socket, std::mem::take(&mut out), handler.outbox()).await.is_err() {
                            return SessionEnd::Gone;
                        }
                        return Box::pin(finish(socket, handler.outbox(), close)).await;
                    }
                }
                if !out.is_empty() && write(socket, out, handler.outbox()).await.is_err() {
                    return SessionEnd::Gone;
                }
                if let Some(violation) = violation {
                    return Box::pin(finish(socket, handler.outbox(), violation.into())).await;
                }
            }
        }
    }
}

/// Answers the client's close frame with the same code (none if it sent none), after what
/// `out` holds, then closes the connection.
async fn answer_close<S: HeldConnection>(socket: &mut S, outbox: &Outbox, mut out: Vec<u8>, code: u16) -> SessionEnd {
    let reply = if code == 1005 {
        frame::frame(opcode::CLOSE, b"")
    } else {
        frame::frame(opcode::CLOSE, &code.to_be_bytes())
    };
    out.extend_from_slice(&reply);
    let _ = tokio::time::timeout(CLOSE_GRACE, write(socket, out, outbox)).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.shutdown()).await;
    SessionEnd::ClientClosed(code)
}

/// Sends the close frame, waits briefly for the client's, then closes the connection.
async fn finish<S: HeldConnection>(socket: &mut S, outbox: &Outbox, close: Close) -> SessionEnd {
    let code = close.code;
    let sent = tokio::time::timeout(
        CLOSE_GRACE,
        write(socket, frame::close_frame(close.code, &close.reason), outbox),
    )
    .await;
    if matches!(sent, Ok(Ok(()))) {
        // Until the client's close frame comes, it hangs up, or the grace passes; frames before
        // its close are dropped (the connection is closing).
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let mut parser = Parser::default();
            loop {
                let read = poll_fn(|cx| {
                    let mut scratch = [MaybeUninit::<u8>::uninit(); 1024];
                    let mut buf = ReadBuf::uninit(&mut scratch);
                    match Pin::new(&mut *socket).poll_read(cx, &mut buf) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            let mut incoming = Vec::new();
                            let fed = parser.feed(buf.filled(), usize::MAX, &mut incoming);
                            Poll::Ready(fed.is_ok() && !incoming.iter().any(|i| matches!(i, Incoming::Close(..))))
                        }
                        Poll::Ready(_) => Poll::Ready(false),
                    }
                })
                .await;
                if !read {
                    return;
                }
            }
        })
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, socket.shutdown()).await;
    SessionEnd::Closed(code)
}

/// Writes `out` whole. Gives up [`CLOSE_GRACE`] after the connection starts closing if the
/// client is not reading.
async fn write<S: HeldConnection>(socket: &mut S, out: Vec<u8>, outbox: &Outbox) -> io::Result<()> {
    let mut written = 0;
    let mut grace: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        while written < out.len() {
            match Pin::new(&mut *socket).poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if grace.is_none() && outbox.poll_closing(cx).is_ready() {
                        grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
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

fn now_ms() -> u64 {
    crate::clock::monotonic_ns() / 1_000_000
}
