//! One client WebSocket: the upgrade, reading frames, and answering pings and closes.
//!
//! As with [`crate::subscriber::SseStream`], reading is split into an async wait
//! ([`WsConn::readable`]) and a synchronous step ([`WsConn::read_ready`]) that reads into a stack
//! buffer, so a connection waiting for its next frame keeps only its socket, an idle
//! [`Decoder`] and an empty output buffer. The step answers the server's pings and its close frame
//! itself, as a browser does, and queues the answer; the caller writes it with [`WsConn::flush`]
//! (both servers close a client that leaves pings unanswered). WebSocket subscribers
//! ([`crate::worker`]) and Herald's WebSocket publishers ([`crate::ws_publish`]) both use it.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::net;
use crate::subscriber::{OpenError, ReadStep, StreamEnd};
use crate::wire::head;
use crate::wire::ws::{self, Decoder, Frame, opcode};

/// Size of the stack buffer one read fills.
const READ_CHUNK: usize = 16 * 1024;

/// An output buffer larger than this is given back once written.
const KEEP_OUTPUT: usize = 4096;

/// An open WebSocket.
pub struct WsConn {
    stream: TcpStream,
    decoder: Decoder,
    /// Frames waiting to be written: pongs, the close answer, commands.
    out: Vec<u8>,
}

impl WsConn {
    /// Connects from `src` to `addr`, sends the upgrade request that `request` builds for a fresh
    /// `Sec-WebSocket-Key`, and checks the `101` and its `Sec-WebSocket-Accept`. Frames that came
    /// with the response head are kept for [`WsConn::dispatch`].
    pub async fn open(
        addr: SocketAddr,
        src: Option<IpAddr>,
        request: impl FnOnce(&str) -> anyhow::Result<Vec<u8>>,
    ) -> Result<Self, OpenError> {
        let key = ws::new_key();
        let request = request(&key).map_err(|e| OpenError::Request(e.to_string()))?;
        let mut stream = net::connect(addr, src).await?;
        stream.write_all(&request).await?;
        let mut buf = Vec::with_capacity(512);
        let head = head::read(&mut stream, &mut buf).await?;
        if head.status != 101 {
            return Err(OpenError::Status(head.status));
        }
        if head.ws_accept.as_deref() != Some(ws::accept_for(&key).as_str()) {
            return Err(OpenError::Handshake(format!(
                "Sec-WebSocket-Accept {:?} does not match the key",
                head.ws_accept
            )));
        }
        let mut decoder = Decoder::new();
        decoder.preload(&buf[head.len..]);
        Ok(Self {
            stream,
            decoder,
            out: Vec::new(),
        })
    }

    /// Waits until the socket has something to read (or an error).
    pub async fn readable(&self) -> std::io::Result<()> {
        self.stream.readable().await
    }

    /// Reads what is available and calls `on_frame` for each complete frame (pings included;
    /// they are answered here); `on_frame` may end the connection by returning `Some`. A close
    /// frame from the server is answered and ends it (`ws_close_<code>`).
    pub fn read_ready(&mut self, mut on_frame: impl FnMut(Frame<'_>) -> Option<StreamEnd>) -> ReadStep {
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(0) => return ReadStep::Ended(StreamEnd::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadStep::Open,
            Err(e) => {
                let label = format!("{:?}", e.kind()).to_lowercase();
                return ReadStep::Ended(StreamEnd::Failed(label));
            }
        };
        self.decode(&buf[..n], &mut on_frame)
    }

    /// Delivers the frames that came with the response head.
    pub fn dispatch(&mut self, mut on_frame: impl FnMut(Frame<'_>) -> Option<StreamEnd>) -> ReadStep {
        self.decode(&[], &mut on_frame)
    }

    fn decode(&mut self, input: &[u8], on_frame: &mut impl FnMut(Frame<'_>) -> Option<StreamEnd>) -> ReadStep {
        let mut end = None;
        let out = &mut self.out;
        let fed = self.decoder.feed(input, &mut |frame| {
            match frame {
                Frame::Ping(data) => ws::client_frame(out, opcode::PONG, data),
                Frame::Close(code) => {
                    // Answer with the same code (none if it sent none), as RFC 6455 §5.5.1 asks.
                    let payload = code.map(u16::to_be_bytes);
                    ws::client_frame(out, opcode::CLOSE, payload.as_ref().map_or(&[], |p| p.as_slice()));
                    let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
                    end = Some(StreamEnd::Control(format!("ws_close_{code}")));
                    return false;
                }
                _ => {}
            }
            end = on_frame(frame);
            end.is_none()
        });
        match (fed, end) {
            (Err(e), _) => ReadStep::Ended(StreamEnd::Failed(e.label().to_owned())),
            (Ok(_), Some(end)) => ReadStep::Ended(end),
            (Ok(_), None) => ReadStep::Open,
        }
    }

    /// Queues one frame (a command) for [`WsConn::flush`].
    pub fn queue(&mut self, op: u8, payload: &[u8]) {
        ws::client_frame(&mut self.out, op, payload);
    }

    /// Whether frames are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes the queued frames.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.stream.write_all(&self.out).await;
        self.out.clear();
        if self.out.capacity() > KEEP_OUTPUT {
            self.out = Vec::new();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A server that upgrades with `accept` (the right value when `None`), then sends `frames`.
    async fn server(accept: Option<&'static str>, frames: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let mut b = [0u8; 1024];
                let n = sock.read(&mut b).await.expect("read");
                req.extend_from_slice(&b[..n]);
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .expect("key")
                .trim()
                .to_owned();
            let accept = accept.map_or_else(|| ws::accept_for(&key), str::to_owned);
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&frames);
            sock.write_all(&answer).await.expect("write");
            // What the client answers (a pong, its close), until it hangs up.
            let mut back = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read_to_end(&mut back)).await;
            back
        });
        (addr, task)
    }

    fn request(key: &str) -> anyhow::Result<Vec<u8>> {
        Ok(format!("GET / HTTP/1.1\r\nSec-WebSocket-Key: {key}\r\n\r\n").into_bytes())
    }

    #[tokio::test]
    async fn pings_are_answered_and_a_close_ends_the_connection() {
        // text "hi", ping "p", close 4409
        let frames = [&[0x81, 2, b'h', b'i'][..], &[0x89, 1, b'p'], &[0x88, 2, 0x11, 0x39]].concat();
        let (addr, task) = server(None, frames).await;
        let mut conn = WsConn::open(addr, None, request).await.expect("open");
        let mut seen = Vec::new();
        let mut step = conn.dispatch(|f| {
            seen.push(format!("{f:?}"));
            None
        });
        while step == ReadStep::Open {
            conn.readable().await.expect("readable");
            step = conn.read_ready(|f| {
                seen.push(format!("{f:?}"));
                None
            });
        }
        assert_eq!(step, ReadStep::Ended(StreamEnd::Control("ws_close_4409".into())));
        assert_eq!(seen, ["Text([104, 105])", "Ping([112])"]);
        conn.flush().await.expect("flush");
        drop(conn);
        let back = task.await.expect("server");
        // A masked pong of "p" (2 + 4 + 1 bytes), then a masked close with 4409 (2 + 4 + 2).
        assert_eq!(back.len(), 15, "{back:?}");
        assert_eq!((back[0], back[1]), (0x8A, 0x81));
        assert_eq!(back[6] ^ back[2], b'p');
        assert_eq!((back[7], back[8]), (0x88, 0x82));
        assert_eq!([back[13] ^ back[9], back[14] ^ back[10]], 4409u16.to_be_bytes());
    }

    #[tokio::test]
    async fn a_wrong_accept_value_is_refused() {
        let (addr, _task) = server(Some("bm90IHRoZSByaWdodCB2YWx1ZQ=="), Vec::new()).await;
        let err = WsConn::open(addr, None, request).await.err().expect("refused");
        assert_eq!(err.label(), "subscribe_ws_handshake");
    }
}
