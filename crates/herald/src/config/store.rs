//! The durable store (`DATABASE_URL`, `DATA_DIR`, `SQLITE_SYNCHRONOUS`): where collections of
//! events live.

use std::path::PathBuf;

use super::reader::Reader;

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// No store: a cluster node without `DATABASE_URL` (its nodes could not share a SQLite file).
    /// The collection routes answer 503 `store_not_configured`.
    Off,
    /// SQLite, embedded: one file in `DATA_DIR`.
    Sqlite {
        /// `DATA_DIR/herald.db`.
        path: PathBuf,
        /// `SQLITE_SYNCHRONOUS=full` (survives power loss) or `normal` (survives a process
        /// crash; 3–5× the single-commit rate).
        full_sync: bool,
    },
    /// PostgreSQL, which the nodes of a cluster share.
    Postgres {
        /// `DATABASE_URL` (it may hold a password: never logged whole).
        url: String,
    },
}

/// Reads the store's variables; `clustered` when `REDIS_URL` is set.
pub(super) fn read(r: &mut Reader<'_>, clustered: bool) -> StoreConfig {
    let full_sync = match r.raw("SQLITE_SYNCHRONOUS").as_deref().map(str::trim) {
        None | Some("") => true,
        Some(v) if v.eq_ignore_ascii_case("full") => true,
        Some(v) if v.eq_ignore_ascii_case("normal") => false,
        Some(v) => {
            r.fail("SQLITE_SYNCHRONOUS", v, "expected full or normal");
            true
        }
    };
    let data_dir = r
        .raw("DATA_DIR")
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "./herald-data".to_owned());
    match r
        .raw("DATABASE_URL")
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
    {
        None if clustered => StoreConfig::Off,
        None => StoreConfig::Sqlite {
            path: PathBuf::from(data_dir).join("herald.db"),
            full_sync,
        },
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreConfig::Postgres { url }
        }
        Some(url) if url.starts_with("sqlite:") => {
            if clustered {
                r.fail(
                    "DATABASE_URL",
                    "sqlite:…",
                    "a cluster (REDIS_URL) cannot share a SQLite file: its nodes would each fire scheduled \
                     events; use postgres://… (or unset DATABASE_URL to run without collections)",
                );
            }
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            StoreConfig::Sqlite {
                path: PathBuf::from(path),
                full_sync,
            }
        }
        Some(_) => {
            // The URL may carry a password: not echoed.
            r.fail(
                "DATABASE_URL",
                "***",
                "expected postgres://user@host:port/db or sqlite:path",
            );
            StoreConfig::Off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn sqlite_by_default_postgres_by_url_and_none_on_a_cluster_without_one() {
        let c = parse(&[("DATA_DIR", "/var/lib/herald")]).unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Sqlite {
                path: "/var/lib/herald/herald.db".into(),
                full_sync: true
            }
        );
        let c = parse(&[("DATABASE_URL", "postgres://h@db:5432/herald")]).unwrap();
        assert!(matches!(c.store, StoreConfig::Postgres { .. }));
        let c = parse(&[("REDIS_URL", "redis://127.0.0.1:6379")]).unwrap();
        assert_eq!(c.store, StoreConfig::Off);
        let c = parse(&[("SQLITE_SYNCHRONOUS", "NORMAL")]).unwrap();
        assert!(matches!(c.store, StoreConfig::Sqlite { full_sync: false, .. }));
    }

    #[test]
    fn bad_store_values_are_named() {
        for (vars, name) in [
            (vec![("SQLITE_SYNCHRONOUS", "off")], "SQLITE_SYNCHRONOUS"),
            (vec![("DATABASE_URL", "mysql://secret@x/db")], "DATABASE_URL"),
            (
                vec![
                    ("DATABASE_URL", "sqlite:/tmp/h.db"),
                    ("REDIS_URL", "redis://127.0.0.1:6379"),
                ],
                "DATABASE_URL",
            ),
        ] {
            let err = parse(&vars).unwrap_err();
            assert_eq!(err.0[0].name, name, "{vars:?}");
            assert!(!err.to_string().contains("secret"));
        }
    }
}
