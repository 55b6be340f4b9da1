//! Micro-benchmarks of the fan-out path: one publish into N subscribers' outboxes, measured until
//! every outbox is drained (what the writers would take), so the cost of waking and draining is
//! counted as well as the push. Kernel writes are not included: `herald-load` measures those.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use divan::Bencher;
use herald::clock::Clock;
use herald::history::Retention;
use herald::hub::outbox::{Outbox, Taken};
use herald::hub::{Hub, HubSettings};
use herald::model::{NewMessage, ResumeFrom, Topic};
use herald::transport::WireFormat;
use herald::transport::sse::frame::neurow_chunk;

fn main() {
    divan::main();
}

fn hub() -> Hub {
    Hub::new(
        HubSettings {
            retention: Retention::from_min_duration(30_000, 1000),
            max_history_bytes: usize::MAX,
        },
        Clock::system(),
    )
}

fn message() -> NewMessage {
    NewMessage {
        event: Bytes::from_static(b"update"),
        payload: Bytes::from(vec![b'x'; 100]),
        timestamp: None,
    }
}

fn drain(outboxes: &[Arc<Outbox>]) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut taken = 0;
    for outbox in outboxes {
        let mut batch = Vec::new();
        while let Poll::Ready(Taken::Deliveries) = outbox.poll_take(&mut cx, &mut batch) {}
        // What each writer does before its write: take the shared bytes (the first one makes them).
        for d in &batch {
            divan::black_box(d.message.encoded(WireFormat::NeurowSse.slot(), neurow_chunk).clone());
        }
        taken += batch.len();
    }
    taken
}

/// One publish of a 100-byte payload to a topic with `n` subscribers, drained.
#[divan::bench(args = [1, 100, 10_000])]
fn publish_to_subscribers(bencher: Bencher, n: usize) {
    let hub = hub();
    let topic = Topic::namespaced("bench", "topic");
    let outboxes: Vec<_> = (0..n).map(|_| Arc::new(Outbox::new(1024, 0, u64::MAX))).collect();
    for o in &outboxes {
        hub.subscribe(topic.clone(), ResumeFrom::Live, o.clone(), 0);
    }
    let batch = [message()];
    bencher.counter(divan::counter::ItemsCount::new(n)).bench_local(|| {
        hub.publish(&topic, &batch);
        assert_eq!(drain(&outboxes), n);
    });
}

/// Encoding one message frame (done once per message, whatever the number of subscribers).
#[divan::bench]
fn encode_frame(bencher: Bencher) {
    let message = herald::model::Message {
        id: herald::model::EventId(1_700_000_000_000),
        event: Bytes::from_static(b"update"),
        payload: Bytes::from(vec![b'x'; 100]),
        accepted_ms: 0,
    };
    bencher.bench(|| neurow_chunk(divan::black_box(&message)));
}
