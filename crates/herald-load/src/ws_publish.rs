//! Publishing over Herald's WebSocket (`one-to-one --publish-via ws`): `publish` commands on a
//! few connections, each settled by the `ack` (or `error`) that repeats its command id.
//!
//! Herald runs one connection's commands one after another and answers each in turn, so a
//! connection carries many publishes at once (pipelined), and the connections can be few, as a
//! backend keeping WebSockets open to its push gateway would have them. A topic still never has
//! two publishes in flight (the rate scheduler's `busy` flag), so the server receives each topic's
//! messages in sequence order whichever connection carries them.
//!
//! Each connection is a task that owns its [`WsConn`]: it writes every command handed to it since
//! its last write in one write, reads the answers and answers pings. Its token is a public-API
//! token of the subscribers' issuer with a `publish` grant for the run's topics (`<prefix>*`),
//! renewed with an `auth` command at half its lifetime, as a long-lived client would do, so that a
//! connection outlives its first token. A connection that ends fails what it had in flight (under
//! its close code) and is opened again by the next publish that picks it.
//!
//! Herald closes a connection that sends more than `WS_MAX_COMMANDS_PER_SECOND` commands in a
//! second (100 by default) with 4429; bench/lib.sh starts Herald with no such limit.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::publish::PublishError;
use crate::subscriber::{ReadStep, StreamEnd};
use crate::target::Target;
use crate::websocket::WsConn;
use crate::wire::ws::{Frame, opcode};

/// How a publish command ended.
type Outcome = Result<(), PublishError>;

/// One publish for a connection's task.
struct Job {
    topic: String,
    payload: String,
    reply: oneshot::Sender<Outcome>,
}

/// Publishes messages to Herald over a few WebSockets.
pub struct WsPublisher {
    target: Arc<Target>,
    /// Patterns of the token's `publish` grant.
    grant: Vec<String>,
    /// Each connection's task, once opened (`None` or closed: open on next use).
    links: Vec<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl WsPublisher {
    /// `connections` WebSockets to the target's WebSocket URLs (round-robin), opened when first
    /// used, with a token that may publish to `grant`; each publish must be answered within
    /// `timeout`.
    pub fn new(target: Arc<Target>, connections: usize, timeout: Duration, grant: Vec<String>) -> Self {
        Self {
            target,
            grant,
            links: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Publishes one message to `sub`'s topic, on the next connection in turn; `make_payload`
    /// runs once the connection is open. Returns the time from handing the command to the
    /// connection to its `ack`.
    pub async fn publish(&self, sub: &str, make_payload: impl FnOnce() -> String) -> Result<Duration, PublishError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.links.len();
        let link = tokio::time::timeout(self.timeout, self.link(n))
            .await
            .map_err(|_| PublishError::Timeout)??;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            topic: sub.to_owned(),
            payload: make_payload(),
            reply,
        };
        let started = Instant::now();
        link.send(job)
            .map_err(|_| PublishError::Ws("publish_ws_connection_gone".into()))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(PublishError::Timeout),
            Ok(Err(_)) => Err(PublishError::Ws("publish_ws_connection_gone".into())),
            Ok(Ok(outcome)) => outcome.map(|()| started.elapsed()),
        }
    }

    /// Connection `n`'s task, opened first if it has none or it ended.
    async fn link(&self, n: usize) -> Result<mpsc::UnboundedSender<Job>, PublishError> {
        let mut link = self.links[n].lock().await;
        if let Some(tx) = link.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let url = &self.target.ws_urls[n % self.target.ws_urls.len().max(1)];
        let token = self
            .target
            .sse_jwt
            .mint_publishing(&self.grant)
            .map_err(|e| PublishError::Token(e.to_string()))?;
        let conn = WsConn::open(url.addr, None, |key| {
            Ok(self.target.ws_publisher_request(url, &token, key))
        })
        .await
        .map_err(|e| PublishError::Ws(format!("publish_ws_open_{}", e.label())))?;
        let (tx, jobs) = mpsc::unbounded_channel();
        tokio::spawn(drive(conn, jobs, self.target.clone(), self.grant.clone()));
        *link = Some(tx.clone());
        Ok(tx)
    }
}

#[derive(Serialize)]
struct PublishCommand<'a> {
    op: &'static str,
    id: u64,
    topic: &'a str,
    event: &'a str,
    payload: &'a str,
}

#[derive(Serialize)]
struct AuthCommand<'a> {
    op: &'static str,
    id: u64,
    token: &'a str,
}

/// An `ack` or `error` (or anything else Herald sends a publisher: `ping`).
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
}

/// Commands written and not answered yet, in order; `None`: a token refresh (no one waits).
type InFlight = VecDeque<(u64, Option<oneshot::Sender<Outcome>>)>;

/// Settles the command an answer is for. Herald answers in order, so the oldest command is the
/// one; any older than the answer's id were never answered.
fn settle(in_flight: &mut InFlight, text: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Answer<'_>>(text) else {
        eprintln!("herald-load: WebSocket publisher: not a JSON frame");
        return;
    };
    let outcome = match &*answer.op {
        "ack" => Ok(()),
        "error" => Err(PublishError::Ws(format!(
            "publish_ws_error_{}",
            answer.code.as_deref().unwrap_or("unknown")
        ))),
        _ => return,
    };
    let Some(id) = answer.id else {
        eprintln!("herald-load: WebSocket publisher: answer without a command id: {outcome:?}");
        return;
    };
    while in_flight.front().is_some_and(|(first, _)| *first < id) {
        if let Some((_, Some(reply))) = in_flight.pop_front() {
            let _ = reply.send(Err(PublishError::Ws("publish_ws_unanswered".into())));
        }
    }
    if in_flight.front().is_some_and(|(first, _)| *first == id) {
        match in_flight.pop_front() {
            Some((_, Some(reply))) => {
                let _ = reply.send(outcome);
            }
            Some((_, None)) => {
                if let Err(e) = outcome {
                    eprintln!("herald-load: WebSocket publisher: token refresh refused: {e}");
                }
            }
            None => {}
        }
    }
}

/// One connection: writes the commands handed to it, settles them from Herald's answers, and
/// refreshes its token at half its lifetime (whether or not it is publishing then).
async fn drive(mut conn: WsConn, mut jobs: mpsc::UnboundedReceiver<Job>, target: Arc<Target>, grant: Vec<String>) {
    let half_life = Duration::from_secs((target.sse_jwt.lifetime_s / 2).max(1));
    let renew = tokio::time::sleep(half_life);
    tokio::pin!(renew);
    let mut next_id: u64 = 0;
    let mut in_flight = InFlight::new();
    let end = loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else {
                    // The publisher is gone: nothing more to send.
                    return;
                };
                let mut job = Some(job);
                while let Some(j) = job.take().or_else(|| jobs.try_recv().ok()) {
                    next_id += 1;
                    let command = PublishCommand {
                        op: "publish",
                        id: next_id,
                        topic: &j.topic,
                        event: &target.event,
                        payload: &j.payload,
                    };
                    conn.queue(opcode::TEXT, &serde_json::to_vec(&command).unwrap_or_default());
                    in_flight.push_back((next_id, Some(j.reply)));
                }
                if let Err(e) = conn.flush().await {
                    break StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
                }
            }
            () = &mut renew => {
                renew.as_mut().reset(tokio::time::Instant::now() + half_life);
                match target.sse_jwt.mint_publishing(&grant) {
                    Ok(token) => {
                        next_id += 1;
                        let auth = AuthCommand { op: "auth", id: next_id, token: &token };
                        conn.queue(opcode::TEXT, &serde_json::to_vec(&auth).unwrap_or_default());
                        in_flight.push_back((next_id, None));
                    }
                    Err(e) => eprintln!("herald-load: WebSocket publisher: cannot sign a token: {e}"),
                }
                if let Err(e) = conn.flush().await {
                    break StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
                }
            }
            ready = conn.readable() => {
                if let Err(e) = ready {
                    break StreamEnd::Failed(format!("{:?}", e.kind()).to_lowercase());
                }
                let step = conn.read_ready(|frame| {
                    if let Frame::Text(text) = frame {
                        settle(&mut in_flight, text);
                    }
                    None
                });
                if conn.has_output() && conn.flush().await.is_err() {
                    break StreamEnd::Failed("write".into());
                }
                if let ReadStep::Ended(end) = step {
                    break end;
                }
            }
        }
    };
    let label = format!("publish_ws_{}", end.label());
    eprintln!("herald-load: WebSocket publisher connection ended: {label}");
    jobs.close();
    for (_, reply) in in_flight {
        if let Some(reply) = reply {
            let _ = reply.send(Err(PublishError::Ws(label.clone())));
        }
    }
    // Publishes handed over after the end: the channel is closed, so no new ones come.
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(PublishError::Ws(label.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(ids: &[u64]) -> (InFlight, Vec<oneshot::Receiver<Outcome>>) {
        let mut in_flight = InFlight::new();
        let mut answers = Vec::new();
        for &id in ids {
            let (tx, rx) = oneshot::channel();
            in_flight.push_back((id, Some(tx)));
            answers.push(rx);
        }
        (in_flight, answers)
    }

    #[test]
    fn answers_settle_their_commands_in_order() {
        let (mut in_flight, mut answers) = waiting(&[1, 2, 4, 5]);
        // A token refresh between them, answered by no one.
        in_flight.insert(2, (3, None));
        settle(&mut in_flight, br#"{"op":"ack","id":1,"message_id":"17"}"#);
        settle(&mut in_flight, br#"{"op":"ping"}"#);
        settle(
            &mut in_flight,
            br#"{"op":"error","id":2,"code":"publish_not_allowed","message":"no"}"#,
        );
        // 3 and 4 were never answered: the answer to 5 settles them too.
        settle(&mut in_flight, br#"{"op":"ack","id":5,"message_id":"18"}"#);
        assert!(in_flight.is_empty());
        let got: Vec<Result<(), String>> = answers
            .iter_mut()
            .map(|rx| rx.try_recv().expect("settled").map_err(|e| e.label()))
            .collect();
        assert_eq!(
            got,
            [
                Ok(()),
                Err("publish_ws_error_publish_not_allowed".to_owned()),
                Err("publish_ws_unanswered".to_owned()),
                Ok(()),
            ]
        );
    }
}
