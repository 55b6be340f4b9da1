//! The schema, created and migrated at start. Each migration is a list of statements valid on
//! both SQLite and PostgreSQL, applied in one transaction with the version it reaches; a store
//! whose version is newer than this build's stops start-up (it may hold what this build cannot
//! read).

use super::{Backend, OpenError, on_pool};

/// Migrations, in order: the store's version is how many it has applied.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE collections (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        owner TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, name)
    )",
        "CREATE TABLE events (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        collection TEXT NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        state BIGINT NOT NULL,
        publish_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        published_at BIGINT,
        lease_until BIGINT,
        user_id TEXT
    )",
        "CREATE INDEX events_by_collection ON events (namespace, collection, publish_at, id)",
        "CREATE INDEX events_by_user ON events (namespace, user_id, publish_at, id)",
        "CREATE INDEX events_due ON events (publish_at) WHERE state = 0",
        "CREATE INDEX events_firing ON events (lease_until) WHERE state = 3",
    ],
    &["CREATE TABLE users (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        username TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (namespace, username)
    )"],
    &["CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        domain TEXT NOT NULL UNIQUE,
        username TEXT,
        key_sha256 TEXT NOT NULL UNIQUE,
        key_prefix TEXT NOT NULL,
        active BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )"],
    &["CREATE INDEX events_latest ON events (namespace, collection, event, publish_at) WHERE state IN (1, 3)"],
];

/// This build's schema version.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the store to [`VERSION`].
pub(super) async fn migrate(backend: &Backend, place: &str) -> Result<(), OpenError> {
    let failed = |e: sqlx::Error| OpenError::Unreachable {
        place: place.to_owned(),
        reason: e.to_string(),
    };
    let postgres = matches!(backend, Backend::Postgres(_));
    on_pool!(backend, pool => {
        let mut tx = pool.begin().await.map_err(failed)?;
        if postgres {
            // Nodes starting together migrate one at a time (the lock ends with the transaction).
            sqlx::query("SELECT pg_advisory_xact_lock(7238301)").execute(&mut *tx).await.map_err(failed)?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS herald_schema (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM herald_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
        let found = found.unwrap_or(0);
        if found > VERSION {
            return Err(OpenError::Newer { place: place.to_owned(), found, known: VERSION });
        }
        for (i, statements) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            for statement in *statements {
                sqlx::query(*statement).execute(&mut *tx).await.map_err(failed)?;
            }
            sqlx::query("INSERT INTO herald_schema (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(())
    })
}
