//! Neurow's load-test virtual users (spec §7.3), run inside one worker.
//!
//! Each user waits a random initial delay, picks a fresh topic and a random message count, opens
//! one SSE connection and, once it is up, starts its own publisher, which sleeps 0.5–1.5 s and
//! then sends each message after a random delay. The subscriber side checks that every message
//! arrives once and in order. When all have arrived the user closes and a new one starts. With
//! auto-reconnect a stream that ends is re-opened with `Last-Event-ID`; a replayed duplicate is
//! then an error like any other.
//!
//! Runs are bounded: at the end of the duration publishers stop, and each user waits at most a
//! grace period for the messages already published. A user cut short that got everything
//! published so far counts as "cut", not as an error.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::sleep_until;

use super::Worker;
use super::protocol::NeurowPlan;
use super::subscriptions::{open_sub, process};
use crate::payload;
use crate::subscriber::{ReadStep, SseStream, StreamEnd, SubState};

/// How a virtual user ended.
enum Outcome {
    /// Every message arrived once, in order.
    Ok,
    /// The run ended first; everything published so far arrived.
    Cut,
    /// The run ended before the user published anything: not counted, and the slot stops.
    Unused,
    /// Something went wrong.
    Error,
}

/// Runs `plan.users` user slots until `duration` has passed and the last users finished.
pub(super) async fn run(worker: &Arc<Worker>, plan: &NeurowPlan, duration: Duration, grace: Duration) {
    let deadline = Instant::now() + duration;
    let mut users = JoinSet::new();
    for n in 0..plan.users {
        let src =
            (!worker.plan.source_ips.is_empty()).then(|| worker.plan.source_ips[n % worker.plan.source_ips.len()]);
        users.spawn(user_slot(worker.clone(), plan.clone(), src, deadline, grace));
    }
    while users.join_next().await.is_some() {}
}

/// One slot: users one after another until the deadline.
async fn user_slot(worker: Arc<Worker>, plan: NeurowPlan, src: Option<IpAddr>, deadline: Instant, grace: Duration) {
    loop {
        let delay = Duration::from_millis(fastrand::u64(1..=plan.initial_delay_max_ms.max(1)));
        let start = Instant::now() + delay;
        if start >= deadline {
            return;
        }
        sleep_until(start.into()).await;
        let outcome = one_user(&worker, &plan, src, deadline, grace).await;
        let mut stats = worker.stats();
        match outcome {
            Outcome::Ok => stats.users_ok += 1,
            Outcome::Cut => stats.users_cut += 1,
            Outcome::Error => stats.users_error += 1,
            Outcome::Unused => return,
        }
    }
}

fn random_hex(len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

async fn one_user(
    worker: &Arc<Worker>,
    plan: &NeurowPlan,
    src: Option<IpAddr>,
    deadline: Instant,
    grace: Duration,
) -> Outcome {
    let lo = plan.messages_min + 1;
    let count = fastrand::u64(lo..=plan.messages_max.max(lo));
    let sub = format!("{}{}", plan.topic_prefix, random_hex(32));
    let mut state = SubState::default();
    // The latest a user may still be waiting for its messages.
    let last_chance = deadline + grace;

    let started = Instant::now();
    let first = if plan.tolerate_faults {
        reopen(worker, &sub, src, None, last_chance).await.ok_or(None)
    } else {
        open_sub(worker, &sub, 0, src, None, None).await.map_err(Some)
    };
    let mut stream = match first {
        Ok(s) => s,
        Err(e) => {
            let mut stats = worker.stats();
            stats.connect_failed += 1;
            if let Some(e) = e {
                stats.error(e.label());
            }
            return Outcome::Error;
        }
    };
    {
        let mut stats = worker.stats();
        stats.connected += 1;
        stats.connect.record(started.elapsed().as_micros() as u64);
    }

    let mut publisher = tokio::spawn(publish_messages(
        worker.clone(),
        plan.clone(),
        sub.clone(),
        count,
        deadline,
    ));
    // What the publisher did, once it has finished.
    let mut published: Option<Published> = None;
    let mut give_up: Option<Instant> = None;
    let mut failed = false;

    let mut step = process(worker, None, &mut state, |cb| stream.dispatch(&mut |ev| cb(ev)));
    loop {
        if let ReadStep::Ended(end) = step {
            if !worker.plan.reconnect {
                let mut stats = worker.stats();
                stats.streams_ended += 1;
                stats.error(end.label());
                failed = true;
                break;
            }
            if plan.tolerate_faults {
                worker.stats().fault(end.label());
            }
            let until = give_up.unwrap_or(last_chance);
            let resume = resume_point(worker.target.kind, state.last_id.as_deref());
            match reopen(worker, &sub, src, resume, until).await {
                Some(s) => stream = s,
                None => {
                    failed = true;
                    break;
                }
            }
            worker.stats().reconnects += 1;
            step = process(worker, None, &mut state, |cb| stream.dispatch(&mut |ev| cb(ev)));
            continue;
        }
        if state.checker.unique() >= count {
            break;
        }
        if published.as_ref().is_some_and(|p| p.missing(&state) == 0) {
            break;
        }
        tokio::select! {
            ready = stream.readable() => {
                step = match ready {
                    Ok(()) => process(worker, None, &mut state, |cb| stream.read_ready(cb)),
                    Err(e) => ReadStep::Ended(StreamEnd::Failed(
                        format!("{:?}", e.kind()).to_lowercase(),
                    )),
                };
            }
            done = &mut publisher, if published.is_none() => {
                published = Some(done.unwrap_or_else(|_| Published::failed()));
                give_up = Some(Instant::now() + grace);
            }
            () = sleep_until(give_up.unwrap_or(deadline).into()), if give_up.is_some() => {
                worker.stats().error("user_wait_timeout");
                failed = true;
                break;
            }
        }
    }
    drop(stream);
    let published = match published {
        Some(p) => p,
        None => finish_publisher(&mut publisher).await,
    };
    // A refused publish that was applied anyway may arrive after a later message: not promised,
    // so not an ordering error.
    let excused = state.late.iter().filter(|seq| published.refused.contains(seq)).count() as u64;
    let lost = published.missing(&state);
    {
        let mut stats = worker.stats();
        stats.out_of_order = stats.out_of_order.saturating_sub(excused);
        stats.lost += lost;
        if excused > 0 {
            *stats.faults.entry("late_refused_publish".into()).or_default() += excused;
        }
    }
    let unique = state.checker.unique();
    if failed || published.failed || state.anomalies > excused || lost > 0 {
        Outcome::Error
    } else if unique >= count || published.attempted >= count {
        // Every message arrived, or every one was tried and each accepted one arrived (a refused
        // one need not: it was never promised).
        Outcome::Ok
    } else if published.attempted == 0 {
        Outcome::Unused
    } else {
        Outcome::Cut
    }
}

/// What a user's publisher did.
#[derive(Debug, Default)]
struct Published {
    /// Sequence numbers tried: `1..=attempted`.
    attempted: u64,
    /// Those the server did not confirm (only with `--tolerate-faults`): not promised.
    refused: Vec<u64>,
    /// A publish failed and the publisher stopped (without `--tolerate-faults`).
    failed: bool,
}

impl Published {
    fn failed() -> Self {
        Self {
            failed: true,
            ..Self::default()
        }
    }

    /// Accepted messages the stream has not received.
    fn missing(&self, state: &SubState) -> u64 {
        state.checker.lost_except(self.attempted, &self.refused)
    }
}

/// Waits briefly for a publisher whose user already has every message (its last response may
/// still be in flight), then stops it.
async fn finish_publisher(publisher: &mut JoinHandle<Published>) -> Published {
    match tokio::time::timeout(Duration::from_secs(1), &mut *publisher).await {
        Ok(Ok(result)) => result,
        _ => {
            publisher.abort();
            Published::default()
        }
    }
}

/// First wait before re-opening a stream after a failed try (`--tolerate-faults`); it doubles up
/// to [`REOPEN_MAX_BACKOFF`].
const REOPEN_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two tries.
const REOPEN_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Opens `sub`'s stream, resuming after `resume`. Without `--tolerate-faults`, one try on the
/// topic's own node; with it, tries on the next node each time, with a capped backoff, until
/// `until`. The caller counts the reconnection.
async fn reopen(
    worker: &Worker,
    sub: &str,
    src: Option<IpAddr>,
    resume: Option<&str>,
    until: Instant,
) -> Option<SseStream> {
    let tolerate = worker.plan.neurow.as_ref().is_some_and(|p| p.tolerate_faults);
    let mut backoff = REOPEN_FIRST_BACKOFF;
    for attempt in 0.. {
        match open_sub(worker, sub, attempt, src, resume, None).await {
            Ok(s) => return Some(s),
            Err(e) if tolerate && Instant::now() + backoff < until => {
                worker.stats().fault(e.label());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REOPEN_MAX_BACKOFF);
            }
            Err(e) => {
                worker.stats().error(format!("re{}", e.label()));
                return None;
            }
        }
    }
    None
}

/// Where a re-opened stream resumes: after the last id seen. A stream that ended before its first
/// message has no id to send, and re-opening it live would lose a message published in between;
/// each user's topic is new, so resuming from the start (`0`, Herald's ids being non-negative) loses
/// nothing and replays nothing twice. Nchan's ids are not integers, so there it stays live.
fn resume_point(kind: crate::target::TargetKind, last_id: Option<&str>) -> Option<&str> {
    match (last_id, kind) {
        (Some(id), _) => Some(id),
        (None, crate::target::TargetKind::Herald) => Some("0"),
        (None, crate::target::TargetKind::Nchan) => None,
    }
}

/// The user's publisher. Without `--tolerate-faults` it stops at the first failure; with it, a
/// failed publish is recorded as refused and the next number follows (publishing one number twice
/// would make a duplicate the publisher caused).
async fn publish_messages(
    worker: Arc<Worker>,
    plan: NeurowPlan,
    sub: String,
    count: u64,
    deadline: Instant,
) -> Published {
    let size = worker.plan.payload_size;
    let mut next = Instant::now() + Duration::from_millis(fastrand::u64(500..=1500));
    let mut done = Published::default();
    for seq in 1..=count {
        let lo = plan.delay_min_ms + 1;
        next += Duration::from_millis(fastrand::u64(lo..=plan.delay_max_ms.max(lo)));
        if next >= deadline {
            break;
        }
        sleep_until(next.into()).await;
        let result = worker
            .publisher
            .publish(&sub, || payload::encode(payload::now_us(), seq, &sub, size))
            .await;
        done.attempted = seq;
        let mut stats = worker.stats();
        match result {
            Ok(took) => {
                stats.published += 1;
                stats.publish.record(took.as_micros() as u64);
            }
            Err(e) if plan.tolerate_faults => {
                stats.publish_refused += 1;
                stats.fault(e.label());
                done.refused.push(seq);
            }
            Err(e) => {
                stats.publish_errors += 1;
                stats.error(e.label());
                // Counted as an error already, not as lost too.
                done.refused.push(seq);
                done.failed = true;
                return done;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::resume_point;
    use crate::target::TargetKind;

    #[test]
    fn a_stream_that_saw_no_message_resumes_from_the_start_on_herald() {
        assert_eq!(resume_point(TargetKind::Herald, None), Some("0"));
        assert_eq!(resume_point(TargetKind::Herald, Some("42")), Some("42"));
        assert_eq!(resume_point(TargetKind::Nchan, None), None);
        assert_eq!(resume_point(TargetKind::Nchan, Some("17:0")), Some("17:0"));
    }
}
