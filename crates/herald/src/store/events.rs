//! Events of collections: what is stored, and the statements that read and change them.
//!
//! An event is immutable once written; only its `state` moves, once, by compare-and-set:
//! `pending` → `firing` (claimed under a lease by the scheduler) → `published`, or `pending` →
//! `cancelled`. A `firing` event whose lease ran out (its node died mid-fire) is pending again.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, StoreError, bounded, on_pool};

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Waiting for its `publish_at`.
    Pending,
    /// Published on its collection's topic.
    Published,
    /// Cancelled before it fired: it never will.
    Cancelled,
    /// Being published by a node (under a lease); shown as pending.
    Firing,
}

impl EventState {
    fn code(self) -> i64 {
        match self {
            EventState::Pending => 0,
            EventState::Published => 1,
            EventState::Cancelled => 2,
            EventState::Firing => 3,
        }
    }

    fn from_code(code: i64) -> EventState {
        match code {
            1 => EventState::Published,
            2 => EventState::Cancelled,
            3 => EventState::Firing,
            _ => EventState::Pending,
        }
    }

    /// The state a filter names (`pending`, `published`, `cancelled`).
    pub fn parse(name: &str) -> Option<EventState> {
        match name {
            "pending" => Some(EventState::Pending),
            "published" => Some(EventState::Published),
            "cancelled" => Some(EventState::Cancelled),
            _ => None,
        }
    }
}

/// An event to insert.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its id (a UUID v7: time-ordered, unique across nodes).
    pub id: String,
    /// The issuer whose namespace the collection is in.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The event name.
    pub event: String,
    /// Its data, as JSON text.
    pub data: String,
    /// When to publish it, ms since the epoch (now or earlier: at once).
    pub publish_at_ms: i64,
    /// When it was received.
    pub created_at_ms: i64,
    /// Who inserted it (a user's `sub`), if a user did.
    pub user_id: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id.
    pub id: String,
    /// The issuer's namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The event name.
    pub event: String,
    /// Its data, JSON text.
    pub data: String,
    /// Where it is in its life.
    pub state: EventState,
    /// When it is (or was) due, ms.
    pub publish_at_ms: i64,
    /// When it was received, ms.
    pub created_at_ms: i64,
    /// When it was actually published, ms.
    pub published_at_ms: Option<i64>,
    /// Who inserted it.
    pub user_id: Option<String>,
}

impl StoredEvent {
    /// As the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let data: serde_json::Value = serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null);
        let state = match self.state {
            EventState::Firing => EventState::Pending,
            s => s,
        };
        serde_json::json!({
            "id": self.id,
            "collection": self.collection,
            "event": self.event,
            "data": data,
            "state": state,
            "publish_at": self.publish_at_ms,
            "created_at": self.created_at_ms,
            "published_at": self.published_at_ms,
            "user_id": self.user_id,
        })
    }

    fn from_row<R>(row: &R) -> Result<StoredEvent, sqlx::Error>
    where
        R: Row,
        for<'a> &'a str: sqlx::ColumnIndex<R>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
        for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
    {
        Ok(StoredEvent {
            id: row.try_get("id")?,
            namespace: row.try_get("namespace")?,
            collection: row.try_get("collection")?,
            event: row.try_get("event")?,
            data: row.try_get("data")?,
            state: EventState::from_code(row.try_get("state")?),
            publish_at_ms: row.try_get("publish_at")?,
            created_at_ms: row.try_get("created_at")?,
            published_at_ms: row.try_get("published_at")?,
            user_id: row.try_get("user_id")?,
        })
    }
}

const COLUMNS: &str = "id, namespace, collection, event, data, state, publish_at, created_at, published_at, user_id";

/// A page of a listing: the events, and where the next page starts.
#[derive(Debug)]
pub struct Page {
    /// The events, by publish time then id.
    pub events: Vec<StoredEvent>,
    /// The `(publish_at, id)` of the last event when there may be more.
    pub next: Option<(i64, String)>,
}

/// What a listing asks.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Only events in this state.
    pub state: Option<EventState>,
    /// Start after this `(publish_at, id)`.
    pub after: Option<(i64, String)>,
    /// At most this many (1–1000).
    pub limit: u32,
}

/// What a cancel found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was pending: now cancelled.
    Done(StoredEvent),
    /// It was already published (or being published).
    AlreadyPublished(StoredEvent),
    /// It was cancelled before.
    AlreadyCancelled(StoredEvent),
    /// No such event in the collection.
    Unknown,
}

impl super::Store {
    /// One event of a collection.
    pub async fn event(&self, namespace: &str, collection: &str, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id = $1 AND namespace = $2 AND collection = $3");
        on_pool!(&self.backend, pool => {
            let row = bounded(sqlx::query(AssertSqlSafe(sql)).bind(id).bind(namespace).bind(collection).fetch_optional(pool)).await?;
            Ok(row.map(|r| StoredEvent::from_row(&r)).transpose()?)
        })
    }

    /// The owner of a collection (`None` if it does not exist; `Some(None)` if a service made it).
    pub async fn collection_owner(
        &self,
        namespace: &str,
        collection: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        on_pool!(&self.backend, pool => {
            let row = bounded(
                sqlx::query("SELECT owner FROM collections WHERE namespace = $1 AND name = $2")
                    .bind(namespace)
                    .bind(collection)
                    .fetch_optional(pool),
            )
            .await?;
            Ok(row.map(|r| r.try_get::<Option<String>, _>("owner")).transpose()?)
        })
    }

    /// Cancels a pending event.
    pub async fn cancel(&self, namespace: &str, collection: &str, id: &str) -> Result<Cancelled, StoreError> {
        let changed = on_pool!(&self.backend, pool => {
            bounded(
                sqlx::query("UPDATE events SET state = 2 WHERE id = $1 AND namespace = $2 AND collection = $3 AND state = 0")
                    .bind(id)
                    .bind(namespace)
                    .bind(collection)
                    .execute(pool),
            )
            .await?
            .rows_affected()
        });
        let Some(event) = self.event(namespace, collection, id).await? else {
            return Ok(Cancelled::Unknown);
        };
        Ok(match (changed, event.state) {
            (1, _) => Cancelled::Done(event),
            (_, EventState::Cancelled) => Cancelled::AlreadyCancelled(event),
            _ => Cancelled::AlreadyPublished(event),
        })
    }

    /// A collection's events, by publish time.
    pub async fn list(&self, namespace: &str, collection: &str, listing: &Listing) -> Result<Page, StoreError> {
        self.page("collection", namespace, collection, listing).await
    }

    /// What one user inserted, by publish time.
    pub async fn list_by_user(&self, namespace: &str, user_id: &str, listing: &Listing) -> Result<Page, StoreError> {
        self.page("user_id", namespace, user_id, listing).await
    }

    async fn page(&self, column: &str, namespace: &str, value: &str, listing: &Listing) -> Result<Page, StoreError> {
        let limit = listing.limit.clamp(1, 1000);
        let (after_at, after_id) = listing.after.clone().unwrap_or((i64::MIN, String::new()));
        let state_filter = if listing.state.is_some() {
            "AND state = $5"
        } else {
            "AND $5 >= 0"
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE namespace = $1 AND {column} = $2 \
             AND (publish_at > $3 OR (publish_at = $3 AND id > $4)) {state_filter} \
             ORDER BY publish_at, id LIMIT {}",
            limit + 1
        );
        // Firing is shown as pending, and found by a pending filter.
        let state = listing.state.map_or(0, EventState::code);
        let rows: Vec<StoredEvent> = on_pool!(&self.backend, pool => {
            let rows = bounded(
                sqlx::query(AssertSqlSafe(sql))
                    .bind(namespace)
                    .bind(value)
                    .bind(after_at)
                    .bind(&after_id)
                    .bind(state)
                    .fetch_all(pool),
            )
            .await?;
            rows.iter().map(StoredEvent::from_row).collect::<Result<_, _>>()?
        });
        let mut events = rows;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next = more
            .then(|| events.last().map(|e| (e.publish_at_ms, e.id.clone())))
            .flatten();
        Ok(Page { events, next })
    }

    /// The latest published event of each event name of a collection ("latest on connect"), in
    /// publish order. Events being published right now (`firing`) count as published: they are
    /// on their way to live subscribers already, and a client connecting now might otherwise
    /// miss them (it may instead see one twice, live too: the payload's `id` tells).
    pub async fn latest(&self, namespace: &str, collection: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events e WHERE namespace = $1 AND collection = $2 AND state IN (1, 3) \
             AND publish_at = (SELECT MAX(publish_at) FROM events f WHERE f.namespace = e.namespace \
             AND f.collection = e.collection AND f.event = e.event AND f.state IN (1, 3)) \
             ORDER BY publish_at, id"
        );
        let rows: Vec<StoredEvent> = on_pool!(&self.backend, pool => {
            let rows = bounded(sqlx::query(AssertSqlSafe(sql)).bind(namespace).bind(collection).fetch_all(pool)).await?;
            rows.iter().map(StoredEvent::from_row).collect::<Result<_, _>>()?
        });
        // Two of one name due in the same millisecond: the later id wins.
        let mut latest: Vec<StoredEvent> = Vec::with_capacity(rows.len());
        for event in rows {
            match latest.iter().position(|e| e.event == event.event) {
                Some(i) => latest[i] = event,
                None => latest.push(event),
            }
        }
        latest.sort_by(|a, b| (a.publish_at_ms, &a.id).cmp(&(b.publish_at_ms, &b.id)));
        Ok(latest)
    }

    /// The earliest `publish_at` of a pending event, and the earliest lease end of a firing one.
    pub(crate) async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        on_pool!(&self.backend, pool => {
            let due: Option<i64> = bounded(sqlx::query_scalar("SELECT MIN(publish_at) FROM events WHERE state = 0").fetch_one(pool)).await?;
            let lease: Option<i64> = bounded(sqlx::query_scalar("SELECT MIN(lease_until) FROM events WHERE state = 3").fetch_one(pool)).await?;
            Ok(match (due, lease) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
    }

    /// Claims up to `limit` events due at `now_ms` (pending, or firing with an expired lease),
    /// in due order, under a lease until `lease_until_ms`: no other node claims them meanwhile.
    pub(crate) async fn claim_due(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut claimed = match &self.backend {
            Backend::Postgres(pool) => {
                let sql = format!(
                    "UPDATE events SET state = 3, lease_until = $2 WHERE id IN (\
                       SELECT id FROM events WHERE (state = 0 AND publish_at <= $1) OR (state = 3 AND lease_until <= $1) \
                       ORDER BY publish_at, id LIMIT {limit} FOR UPDATE SKIP LOCKED) \
                     RETURNING {COLUMNS}"
                );
                let rows = bounded(
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .fetch_all(pool),
                )
                .await?;
                rows.iter().map(StoredEvent::from_row).collect::<Result<Vec<_>, _>>()?
            }
            Backend::Sqlite(pool) => {
                // One writer at a time on SQLite: the transaction is the claim.
                let mut tx = bounded(pool.begin()).await?;
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE (state = 0 AND publish_at <= $1) OR (state = 3 AND lease_until <= $1) \
                     ORDER BY publish_at, id LIMIT {limit}"
                );
                let rows = bounded(sqlx::query(AssertSqlSafe(sql)).bind(now_ms).fetch_all(&mut *tx)).await?;
                let events = rows.iter().map(StoredEvent::from_row).collect::<Result<Vec<_>, _>>()?;
                for e in &events {
                    bounded(
                        sqlx::query("UPDATE events SET state = 3, lease_until = $2 WHERE id = $1 AND state IN (0, 3)")
                            .bind(&e.id)
                            .bind(lease_until_ms)
                            .execute(&mut *tx),
                    )
                    .await?;
                }
                bounded(tx.commit()).await?;
                events
            }
        };
        claimed.sort_by(|a, b| (a.publish_at_ms, &a.id).cmp(&(b.publish_at_ms, &b.id)));
        Ok(claimed)
    }

    /// On a node that has the store to itself (SQLite): events a previous run was firing when
    /// it stopped are due again at once.
    pub(crate) async fn recover_firing(&self) -> Result<u64, StoreError> {
        on_pool!(&self.backend, pool => {
            Ok(bounded(sqlx::query("UPDATE events SET state = 0, lease_until = NULL WHERE state = 3").execute(pool))
                .await?
                .rows_affected())
        })
    }

    /// Marks claimed events published at `published_at_ms` (after their publish succeeded).
    pub(crate) async fn mark_published(&self, ids: &[String], published_at_ms: i64) -> Result<(), StoreError> {
        on_pool!(&self.backend, pool => {
            let mut tx = bounded(pool.begin()).await?;
            for id in ids {
                bounded(
                    sqlx::query("UPDATE events SET state = 1, published_at = $2, lease_until = NULL WHERE id = $1 AND state = 3")
                        .bind(id)
                        .bind(published_at_ms)
                        .execute(&mut *tx),
                )
                .await?;
            }
            bounded(tx.commit()).await?;
            Ok(())
        })
    }
}
