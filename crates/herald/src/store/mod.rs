//! The durable store: collections of events, in SQLite (embedded, one file) or PostgreSQL (which
//! the nodes of a cluster share), through one async API (sqlx).
//!
//! Writes of new events go through one writer task that groups whatever is queued into one
//! transaction ([`writer`]), so 64 concurrent inserts cost one commit, not 64; an insert is
//! answered only once its transaction committed. Everything else is one statement (or one
//! transaction) on the pool. The SQL is written once for both databases (`$N` parameters, types
//! both accept); [`on_pool!`] runs it on whichever the store has.

pub mod api_keys;
pub mod events;
mod schema;
pub mod users;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::StoreConfig;

pub use events::{EventState, NewEvent, StoredEvent};

/// A new id for a stored row: a UUID v7 (time-ordered, unique across nodes).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Longest any one store operation may take before it is answered 503 `store_unavailable`.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database behind the store.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever database it is.
macro_rules! on_pool {
    ($backend:expr, $pool:ident => $body:expr) => {
        match $backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Why the store cannot be opened: start-up stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file or server cannot be opened or reached.
    #[error("cannot open the store at {place}: {reason}")]
    Unreachable {
        /// The file, or the URL without its password.
        place: String,
        /// The database's words.
        reason: String,
    },
    /// A newer Herald wrote it.
    #[error(
        "the store at {place} has schema version {found}, newer than this Herald's {known}: run the newer Herald, or restore a backup"
    )]
    Newer {
        /// The file or URL.
        place: String,
        /// Its version.
        found: i64,
        /// This build's.
        known: i64,
    },
}

/// Why an operation failed at run time: 503 `store_unavailable`, with nothing half-written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("the store failed: {0}")]
    Database(#[from] sqlx::Error),
    /// No answer within [`STORE_TIMEOUT`].
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    /// The writer stopped (shutdown).
    #[error("the store is shutting down")]
    Closed,
}

/// Bounds `op` by [`STORE_TIMEOUT`].
pub(crate) async fn bounded<T>(op: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, StoreError> {
    match tokio::time::timeout(STORE_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(STORE_TIMEOUT)),
    }
}

/// The store of a node.
pub struct Store {
    pub(crate) backend: Backend,
    writer: writer::Writer,
    /// Where it is, for messages (a URL without its password).
    place: String,
    /// Whether it is PostgreSQL (shared by nodes: scheduled events are claimed under a lease).
    shared: bool,
    /// Woken by every insert whose event is scheduled, so the scheduler can sleep until the
    /// earliest due time.
    pub(crate) scheduled: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Opens (creating the SQLite file and its directory, if needed) and migrates the store.
    pub async fn open(config: &StoreConfig) -> Result<Option<Store>, OpenError> {
        let (backend, place, shared) = match config {
            StoreConfig::Off => return Ok(None),
            StoreConfig::Sqlite { path, full_sync } => {
                let place = path.display().to_string();
                let unreachable = |reason: String| OpenError::Unreachable {
                    place: place.clone(),
                    reason,
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| unreachable(format!("cannot create {} ({e}); set DATA_DIR", dir.display())))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if *full_sync {
                        SqliteSynchronous::Full
                    } else {
                        SqliteSynchronous::Normal
                    })
                    .foreign_keys(true)
                    .busy_timeout(STORE_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(STORE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (Backend::Sqlite(pool), place, false)
            }
            StoreConfig::Postgres { url } => {
                let place = without_password(url);
                let unreachable = |reason: String| OpenError::Unreachable {
                    place: place.clone(),
                    reason,
                };
                let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| unreachable(e.to_string()))?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(STORE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (Backend::Postgres(pool), place, true)
            }
        };
        schema::migrate(&backend, &place).await?;
        let scheduled = Arc::new(tokio::sync::Notify::new());
        Ok(Some(Store {
            writer: writer::Writer::start(backend.clone(), scheduled.clone()),
            backend,
            place,
            shared,
            scheduled,
        }))
    }

    /// Where it is (a file, or a URL without its password).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Whether other nodes may share it (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Which database it is, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or("");
            let hidden = if credentials.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            without_password("postgres://h:s3cret@db:5432/x"),
            "postgres://h:***@db:5432/x"
        );
        assert_eq!(without_password("postgres://h@db/x"), "postgres://h@db/x");
        assert_eq!(without_password("nonsense"), "***");
    }
}
