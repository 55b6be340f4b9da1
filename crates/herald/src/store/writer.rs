//! Group commit: one task takes the inserts queued by every request and writes them in one
//! transaction, then answers each. A commit costs ~100 µs–3 ms of fsync on this kind of disk
//! (spec/durable-and-ui.md §3.4); shared by a batch, it stops being the limit.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::events::{EventState, NewEvent, StoredEvent};
use super::{Backend, StoreError, bounded, on_pool};

/// Inserts queued at most; one more waits for room (backpressure on the requests).
const QUEUE: usize = 4096;

/// Most inserts one transaction takes.
const MAX_BATCH: usize = 512;

/// What an insert found.
#[derive(Debug)]
pub enum Inserted {
    /// Stored (durable).
    Stored(StoredEvent),
    /// The collection belongs to another user: nothing was written.
    NotOwner,
}

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

/// The writer's queue.
pub(super) struct Writer {
    queue: mpsc::Sender<(NewEvent, Option<String>, Reply)>,
}

impl Writer {
    pub(super) fn start(backend: Backend, scheduled: Arc<Notify>) -> Writer {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(run(backend, requests, scheduled));
        Writer { queue }
    }
}

impl super::Store {
    /// Inserts an event durably (the answer comes after its commit). `owner` is who a new
    /// collection belongs to (a user's `sub`), and for an existing one who must own it (`None`
    /// for a service, which may insert anywhere).
    pub async fn insert(&self, event: NewEvent, owner: Option<String>) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .queue
            .send((event, owner, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    backend: Backend,
    mut requests: mpsc::Receiver<(NewEvent, Option<String>, Reply)>,
    scheduled: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let written = write(&backend, &batch).await;
        match written {
            Ok(outcomes) => {
                for ((_, _, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
                // Due now or later: the scheduler looks again.
                scheduled.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = batch.len(), "a store commit failed; its inserts were not written");
                for (_, _, reply) in batch.drain(..) {
                    let _ = reply.send(Err(clone_error(&e)));
                }
            }
        }
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Timeout(d) => StoreError::Timeout(*d),
        StoreError::Closed => StoreError::Closed,
        StoreError::Database(e) => StoreError::Database(sqlx::Error::Protocol(e.to_string())),
    }
}

/// Writes a batch in one transaction: each event's collection is created (owned by its first
/// inserter) if new, and an event for a collection someone else owns is left out.
async fn write(backend: &Backend, batch: &[(NewEvent, Option<String>, Reply)]) -> Result<Vec<Inserted>, StoreError> {
    on_pool!(backend, pool => {
        let mut tx = bounded(pool.begin()).await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for (e, owner, _) in batch {
            bounded(
                sqlx::query(
                    "INSERT INTO collections (namespace, name, owner, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (namespace, name) DO NOTHING",
                )
                .bind(&e.namespace)
                .bind(&e.collection)
                .bind(owner)
                .bind(e.created_at_ms)
                .execute(&mut *tx),
            )
            .await?;
            if let Some(user) = owner {
                let current: Option<String> = bounded(
                    sqlx::query_scalar("SELECT owner FROM collections WHERE namespace = $1 AND name = $2")
                        .bind(&e.namespace)
                        .bind(&e.collection)
                        .fetch_one(&mut *tx),
                )
                .await?;
                if current.as_deref() != Some(user.as_str()) {
                    outcomes.push(Inserted::NotOwner);
                    continue;
                }
            }
            bounded(
                sqlx::query(
                    "INSERT INTO events (id, namespace, collection, event, data, state, publish_at, created_at, user_id) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8)",
                )
                .bind(&e.id)
                .bind(&e.namespace)
                .bind(&e.collection)
                .bind(&e.event)
                .bind(&e.data)
                .bind(e.publish_at_ms)
                .bind(e.created_at_ms)
                .bind(&e.user_id)
                .execute(&mut *tx),
            )
            .await?;
            outcomes.push(Inserted::Stored(StoredEvent {
                id: e.id.clone(),
                namespace: e.namespace.clone(),
                collection: e.collection.clone(),
                event: e.event.clone(),
                data: e.data.clone(),
                state: EventState::Pending,
                publish_at_ms: e.publish_at_ms,
                created_at_ms: e.created_at_ms,
                published_at_ms: None,
                user_id: e.user_id.clone(),
            }));
        }
        bounded(tx.commit()).await?;
        Ok(outcomes)
    })
}
