//! Accounts: a user's id, name and password hash, per namespace (the accounts issuer's).

use sqlx::Row;

use super::{StoreError, bounded, on_pool};

/// What creating a user found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Created, with this id.
    Done(String),
    /// The name is taken.
    Taken,
}

impl super::Store {
    /// Creates a user; `username` is already normalised (lowercase).
    pub async fn create_user(
        &self,
        namespace: &str,
        id: &str,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Created, StoreError> {
        let inserted = on_pool!(&self.backend, pool => {
            bounded(
                sqlx::query(
                    "INSERT INTO users (id, namespace, username, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (namespace, username) DO NOTHING",
                )
                .bind(id)
                .bind(namespace)
                .bind(username)
                .bind(password_hash)
                .bind(now_ms)
                .execute(pool),
            )
            .await?
            .rows_affected()
        });
        Ok(match inserted {
            1 => Created::Done(id.to_owned()),
            _ => Created::Taken,
        })
    }

    /// A user's id and password hash, by name.
    pub async fn user_by_name(&self, namespace: &str, username: &str) -> Result<Option<(String, String)>, StoreError> {
        on_pool!(&self.backend, pool => {
            let row = bounded(
                sqlx::query("SELECT id, password_hash FROM users WHERE namespace = $1 AND username = $2")
                    .bind(namespace)
                    .bind(username)
                    .fetch_optional(pool),
            )
            .await?;
            Ok(row
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("password_hash")?)))
                .transpose()?)
        })
    }
}
