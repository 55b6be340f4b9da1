//! API keys in the store: one per domain, its hash, prefix and `active` flag.

use serde::Serialize;
use sqlx::Row;

use super::{StoreError, bounded, on_pool};

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Its id.
    pub id: String,
    /// The namespace it publishes into.
    pub domain: String,
    /// Who it was made for, if said.
    pub username: Option<String>,
    /// The key's first characters.
    pub prefix: String,
    /// Whether it is accepted.
    pub active: bool,
    /// When it was made, ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, domain, username, key_prefix, active, created_at";

fn from_row<R>(row: &R) -> Result<ApiKey, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
{
    Ok(ApiKey {
        id: row.try_get("id")?,
        domain: row.try_get("domain")?,
        username: row.try_get("username")?,
        prefix: row.try_get("key_prefix")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

impl super::Store {
    /// Stores a new, active key; `None` when the domain has one already.
    pub async fn create_api_key(&self, key: &ApiKey, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let inserted = on_pool!(&self.backend, pool => {
            bounded(
                sqlx::query(
                    "INSERT INTO api_keys (id, domain, username, key_sha256, key_prefix, active, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT (domain) DO NOTHING",
                )
                .bind(&key.id)
                .bind(&key.domain)
                .bind(&key.username)
                .bind(hash)
                .bind(&key.prefix)
                .bind(key.created_at)
                .execute(pool),
            )
            .await?
            .rows_affected()
        });
        Ok((inserted == 1).then(|| key.clone()))
    }

    /// Every key, by domain.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY domain");
        on_pool!(&self.backend, pool => {
            let rows = bounded(sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool)).await?;
            Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
        })
    }

    /// Turns a key on or off; the key, or `None` if unknown.
    pub async fn set_api_key_active(&self, id: &str, active: bool) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        on_pool!(&self.backend, pool => {
            bounded(
                sqlx::query("UPDATE api_keys SET active = $2 WHERE id = $1")
                    .bind(id)
                    .bind(i64::from(active))
                    .execute(pool),
            )
            .await?;
            let row = bounded(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool)).await?;
            Ok(row.map(|r| from_row(&r)).transpose()?)
        })
    }

    /// Deletes a key; whether it existed.
    pub async fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        on_pool!(&self.backend, pool => {
            Ok(bounded(sqlx::query("DELETE FROM api_keys WHERE id = $1").bind(id).execute(pool))
                .await?
                .rows_affected()
                == 1)
        })
    }

    /// The domain of an active key, by its hash.
    pub async fn api_key_domain(&self, hash: &str) -> Result<Option<String>, StoreError> {
        on_pool!(&self.backend, pool => {
            Ok(bounded(
                sqlx::query_scalar("SELECT domain FROM api_keys WHERE key_sha256 = $1 AND active = 1")
                    .bind(hash)
                    .fetch_optional(pool),
            )
            .await?)
        })
    }
}
