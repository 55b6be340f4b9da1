//! Coordinator side of the worker protocol: start workers, send commands, collect replies.
//!
//! One reader task per worker turns its stdout into [`Reply`] values. Progress lines only update
//! shared counters (the broadcast scenario watches the delivery total to keep its in-flight window);
//! every other reply is queued for the command that is waiting for it.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::{Notify, mpsc};

use super::protocol::{Command, Plan, Reply};

/// Progress counters of all workers.
#[derive(Default)]
struct Progress {
    delivered: Vec<AtomicU64>,
    connected: Vec<AtomicU64>,
    changed: Notify,
}

struct Handle {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::UnboundedReceiver<Reply>,
    pid: u32,
}

/// A set of running worker processes.
pub struct Workers {
    handles: Vec<Handle>,
    progress: Arc<Progress>,
}

impl Workers {
    /// Starts one worker per plan (this same executable, `__worker`).
    pub async fn spawn(plans: Vec<Plan>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find own executable")?;
        let progress = Arc::new(Progress {
            delivered: plans.iter().map(|_| AtomicU64::new(0)).collect(),
            connected: plans.iter().map(|_| AtomicU64::new(0)).collect(),
            changed: Notify::new(),
        });
        let mut handles = Vec::with_capacity(plans.len());
        for (index, plan) in plans.into_iter().enumerate() {
            let mut child = Process::new(&exe)
                .arg("__worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start worker process")?;
            let pid = child.id().unwrap_or(0);
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut line = serde_json::to_string(&plan)?;
            line.push('\n');
            stdin.write_all(line.as_bytes()).await?;
            let (tx, replies) = mpsc::unbounded_channel();
            tokio::spawn(read_replies(index, stdout, tx, progress.clone()));
            handles.push(Handle {
                child,
                stdin,
                replies,
                pid,
            });
        }
        Ok(Self { handles, progress })
    }

    /// Number of workers.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Process ids of the workers.
    pub fn pids(&self) -> Vec<u32> {
        self.handles.iter().map(|h| h.pid).collect()
    }

    /// Sends `cmd` to every worker.
    pub async fn send_all(&mut self, cmd: &Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(cmd)?;
        line.push('\n');
        for h in &mut self.handles {
            h.stdin.write_all(line.as_bytes()).await.context("worker died")?;
        }
        Ok(())
    }

    /// Sends a different command to each worker.
    pub async fn send_each(&mut self, cmds: &[Command]) -> anyhow::Result<()> {
        for (h, cmd) in self.handles.iter_mut().zip(cmds) {
            let mut line = serde_json::to_string(cmd)?;
            line.push('\n');
            h.stdin.write_all(line.as_bytes()).await.context("worker died")?;
        }
        Ok(())
    }

    /// The next (non-progress) reply of every worker, waiting at most `limit`.
    pub async fn replies(&mut self, limit: Duration) -> anyhow::Result<Vec<Reply>> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::with_capacity(self.handles.len());
        for (i, h) in self.handles.iter_mut().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, h.replies.recv()).await {
                Ok(Some(Reply::Error { message })) => bail!("worker {i}: {message}"),
                Ok(Some(reply)) => out.push(reply),
                Ok(None) => bail!("worker {i} exited unexpectedly"),
                Err(_) => bail!("worker {i} did not answer within {limit:?}"),
            }
        }
        Ok(out)
    }

    /// Message events received by all workers so far.
    pub fn delivered(&self) -> u64 {
        self.progress.delivered.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// Subscriptions opened by all workers so far.
    pub fn connected(&self) -> u64 {
        self.progress.connected.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// Waits until the delivery total reaches `target`. Fails if it does not move for `stall`.
    pub async fn wait_delivered(&self, target: u64, stall: Duration) -> anyhow::Result<()> {
        let mut last = self.delivered();
        let mut last_change = Instant::now();
        loop {
            let notified = self.progress.changed.notified();
            let now = self.delivered();
            if now >= target {
                return Ok(());
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() > stall {
                bail!("deliveries stalled at {now} (waiting for {target})");
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    /// Asks every worker to close and waits for them to exit.
    pub async fn close(mut self, limit: Duration) -> anyhow::Result<Vec<Reply>> {
        self.send_all(&Command::Close).await?;
        let replies = self.replies(limit).await;
        for h in &mut self.handles {
            if tokio::time::timeout(Duration::from_secs(5), h.child.wait())
                .await
                .is_err()
            {
                let _ = h.child.start_kill();
            }
        }
        replies
    }
}

async fn read_replies(
    index: usize,
    stdout: tokio::process::ChildStdout,
    tx: mpsc::UnboundedSender<Reply>,
    progress: Arc<Progress>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Progress { delivered, connected }) => {
                progress.delivered[index].store(delivered, Ordering::Relaxed);
                progress.connected[index].store(connected, Ordering::Relaxed);
                progress.changed.notify_waiters();
            }
            Ok(reply) => {
                if tx.send(reply).is_err() {
                    return;
                }
            }
            Err(e) => eprintln!("herald-load: worker {index} sent a bad line ({e}): {line}"),
        }
    }
}
