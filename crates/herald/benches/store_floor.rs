//! The store's floor: how fast rows of Herald's event shape become durable when written straight
//! through sqlx in batched commits, beside what Herald's own writer ([`Store::insert`], group
//! commit) does in-process with no HTTP in front. `bench/store.sh` puts these next to the HTTP
//! figures of `herald-load store-insert`.
//!
//! Honest by construction: every case starts from a fresh store created by [`Store::open`] —
//! Herald's own migrations, so the same table and the same four indexes — and opens its own
//! connection with the options Herald uses (WAL, `synchronous=FULL`, foreign keys, busy timeout;
//! or the same PostgreSQL). Rows are what an insert of `herald-load store-insert` stores: a UUID
//! v7 id, namespace `test_issuer1`, one of 1,000 collections in turn, ~200 bytes of JSON data,
//! state pending, `publish_at` now.
//!
//! Cases:
//! - `multirow B`: one `INSERT … VALUES (…)×B` per transaction, one connection — the floor.
//! - `rows B`: B single-row `INSERT`s in one transaction, as the writer issues them.
//! - `writer-stmts B`: per row, the writer's collection upsert then the event insert, in one
//!   transaction of B (the statements a service's insert costs).
//! - `store-insert T`: T tasks each calling [`Store::insert`] in a loop (Herald's writer: one
//!   transaction for whatever is queued, up to 512).
//!
//! ```text
//! cargo bench -p herald --bench store_floor                 # SQLite in a temporary directory
//! DATABASE_URL=postgres://… DB_PID=<postmaster pid> cargo bench -p herald --bench store_floor
//! ```
//! Environment: `ROWS` per case (100000), `CASES` (comma-separated names as printed, default all),
//! `DATA_DIR` (SQLite: where the fresh files go; default a temporary directory), `DATABASE_URL`
//! (PostgreSQL: every herald table in it is dropped before each case), `DB_PID`, `LABEL`.
//! Each case prints one line, and a `RESULT {json}` line that `herald-load table` reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::config::StoreConfig;
use herald::store::{NewEvent, Store};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};

const COLLECTIONS: u64 = 1000;
const NAMESPACE: &str = "test_issuer1";
const DATA_BYTES: usize = 200;

#[derive(Clone, Copy, Debug)]
enum Case {
    MultiRow(usize),
    Rows(usize),
    WriterStatements(usize),
    StoreInsert(usize),
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::MultiRow(b) => format!("multirow {b}"),
            Case::Rows(b) => format!("rows {b}"),
            Case::WriterStatements(b) => format!("writer-stmts {b}"),
            Case::StoreInsert(t) => format!("store-insert {t}"),
        }
    }
}

const CASES: &[Case] = &[
    Case::MultiRow(1000),
    Case::MultiRow(512),
    Case::MultiRow(64),
    Case::Rows(512),
    Case::Rows(64),
    Case::WriterStatements(64),
    Case::StoreInsert(64),
];

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One row, as Herald's writer stores it.
struct Row {
    id: String,
    collection: String,
    data: String,
    at: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn row(n: u64) -> Row {
    let head = format!("{{\"seq\":{n},\"pad\":\"");
    let mut data = head.clone();
    data.extend(std::iter::repeat_n('x', DATA_BYTES.saturating_sub(head.len() + 2)));
    data.push_str("\"}");
    Row {
        id: uuid::Uuid::now_v7().to_string(),
        collection: format!("floor-{}", n % COLLECTIONS),
        data,
        at: now_ms(),
    }
}

/// User + system CPU of this process and, with `DB_PID`, of the database's process tree
/// (postmaster, live backends, reaped backends), in seconds.
fn cpu_s(pid: u32, tree: bool) -> f64 {
    let fields = |stat: &str| -> Option<(u32, u64, u64)> {
        let after = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let children = f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?;
        Some((f.get(1)?.parse().ok()?, own, children))
    };
    let Some((_, own, reaped)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| fields(&s))
    else {
        return 0.0;
    };
    let mut ticks = own;
    if tree {
        ticks += reaped;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && child != pid
                && let Some((ppid, t, _)) = std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .ok()
                    .and_then(|s| fields(&s))
                && ppid == pid
            {
                ticks += t;
            }
        }
    }
    ticks as f64 / 100.0
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// A fresh store at `place`: Herald's migrations, then a connection of our own.
async fn fresh(kind: &str, dir: &std::path::Path, url: Option<&str>, case: usize) -> (Option<Store>, Pool) {
    match kind {
        "sqlite" => {
            let path = dir.join(format!("floor-{}-{case}.db", std::process::id()));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let config = StoreConfig::Sqlite {
                path: path.clone(),
                full_sync: true,
            };
            let store = Store::open(&config).await.expect("open the store").expect("a store");
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("connect to SQLite");
            (Some(store), Pool::Sqlite(pool))
        }
        _ => {
            let url = url.expect("DATABASE_URL");
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query("DROP TABLE IF EXISTS events, collections, users, api_keys, herald_schema")
                .execute(&pool)
                .await
                .expect("drop the previous case's tables");
            let config = StoreConfig::Postgres { url: url.to_owned() };
            let store = Store::open(&config).await.expect("open the store").expect("a store");
            (Some(store), Pool::Postgres(pool))
        }
    }
}

macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Writes `rows` rows in transactions of `batch`, as `case` says; returns each commit's time.
async fn batched(pool: &Pool, case: Case, rows: u64) -> Vec<Duration> {
    let batch = match case {
        Case::MultiRow(b) | Case::Rows(b) | Case::WriterStatements(b) => b as u64,
        Case::StoreInsert(_) => unreachable!("not a batch case"),
    };
    let mut times = Vec::new();
    let mut n = 0;
    while n < rows {
        let take = batch.min(rows - n);
        let chunk: Vec<Row> = (n..n + take).map(row).collect();
        n += take;
        let started = Instant::now();
        on_pool!(pool, p => {
            let mut tx = p.begin().await.expect("begin");
            match case {
                Case::MultiRow(_) => {
                    let mut q = QueryBuilder::new(
                        "INSERT INTO events (id, namespace, collection, event, data, state, publish_at, created_at, user_id) ",
                    );
                    q.push_values(&chunk, |mut b, r| {
                        b.push_bind(&r.id)
                            .push_bind(NAMESPACE)
                            .push_bind(&r.collection)
                            .push_bind("bench")
                            .push_bind(&r.data)
                            .push_bind(0_i64)
                            .push_bind(r.at)
                            .push_bind(r.at)
                            .push_bind(None::<String>);
                    });
                    q.build().execute(&mut *tx).await.expect("multi-row insert");
                }
                Case::Rows(_) | Case::WriterStatements(_) => {
                    for r in &chunk {
                        if matches!(case, Case::WriterStatements(_)) {
                            sqlx::query(
                                "INSERT INTO collections (namespace, name, owner, created_at) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (namespace, name) DO NOTHING",
                            )
                            .bind(NAMESPACE)
                            .bind(&r.collection)
                            .bind(None::<String>)
                            .bind(r.at)
                            .execute(&mut *tx)
                            .await
                            .expect("collection upsert");
                        }
                        sqlx::query(
                            "INSERT INTO events (id, namespace, collection, event, data, state, publish_at, created_at, user_id) \
                             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8)",
                        )
                        .bind(&r.id)
                        .bind(NAMESPACE)
                        .bind(&r.collection)
                        .bind("bench")
                        .bind(&r.data)
                        .bind(r.at)
                        .bind(r.at)
                        .bind(None::<String>)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    }
                }
                Case::StoreInsert(_) => unreachable!(),
            }
            tx.commit().await.expect("commit");
        });
        times.push(started.elapsed());
    }
    times
}

/// `tasks` tasks insert through Herald's writer until `rows` are acknowledged; returns each
/// insert's time to its acknowledgement.
async fn through_writer(store: Arc<Store>, tasks: usize, rows: u64) -> Vec<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (store, next) = (store.clone(), next.clone());
        set.spawn(async move {
            let mut times = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= rows {
                    return times;
                }
                let r = row(n);
                let event = NewEvent {
                    id: r.id,
                    namespace: NAMESPACE.to_owned(),
                    collection: r.collection,
                    event: "bench".to_owned(),
                    data: r.data,
                    publish_at_ms: r.at,
                    created_at_ms: r.at,
                    user_id: None,
                };
                let started = Instant::now();
                store.insert(event, None).await.expect("insert through the writer");
                times.push(started.elapsed());
            }
        });
    }
    let mut all = Vec::new();
    while let Some(times) = set.join_next().await {
        all.extend(times.expect("an inserting task panicked"));
    }
    all
}

async fn count(pool: &Pool) -> i64 {
    on_pool!(pool, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events").fetch_one(p).await.expect("count"))
}

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let kind = if url.is_some() { "postgres" } else { "sqlite" };
    let db_pid: Option<u32> = std::env::var("DB_PID").ok().and_then(|v| v.parse().ok());
    let label = std::env::var("LABEL").unwrap_or_default();
    let wanted: Option<Vec<String>> = std::env::var("CASES")
        .ok()
        .filter(|c| !c.is_empty())
        .map(|c| c.split(',').map(|s| s.trim().to_owned()).collect());
    let temp = std::env::temp_dir().join(format!("herald-floor-{}", std::process::id()));
    let dir = std::env::var("DATA_DIR").map(PathBuf::from).unwrap_or(temp.clone());
    std::fs::create_dir_all(&dir).expect("create the data directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let me = std::process::id();
    for (i, &case) in CASES.iter().enumerate() {
        let name = case.name();
        if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
            continue;
        }
        runtime.block_on(async {
            let (store, pool) = fresh(kind, &dir, url.as_deref(), i).await;
            let store = store.map(Arc::new);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (cpu0, db0) = (cpu_s(me, false), db_pid.map(|p| cpu_s(p, true)));
            let started = Instant::now();
            let mut times = match case {
                Case::StoreInsert(tasks) => through_writer(store.clone().expect("a store"), tasks, rows).await,
                _ => batched(&pool, case, rows).await,
            };
            let wall = started.elapsed().as_secs_f64();
            let cpu = cpu_s(me, false) - cpu0;
            let db = db_pid.map(|p| cpu_s(p, true) - db0.unwrap_or(0.0));
            let stored = count(&pool).await;
            drop(store);
            times.sort();
            let rate = rows as f64 / wall;
            let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
            let what = if matches!(case, Case::StoreInsert(_)) { "ack" } else { "commit" };
            println!(
                "{kind:<8} {name:<16} {rate:>9.0} rows/s  {what} p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  cpu {:>5.1} µs/row{}",
                cpu * 1e6 / rows as f64,
                db.map_or(String::new(), |d| format!("  db {:>5.1} µs/row", d * 1e6 / rows as f64))
            );
            let mut metrics = serde_json::json!({
                "rows": rows,
                "stored": stored,
                "rows_per_s": rate,
                "wall_s": wall,
                "commit_p50_ms": p50,
                "commit_p99_ms": p99,
                "cpu_us_per_row": cpu * 1e6 / rows as f64,
            });
            if let Some(d) = db {
                metrics["db_cpu_us_per_row"] = serde_json::json!(d * 1e6 / rows as f64);
            }
            let result = serde_json::json!({
                "scenario": "store-floor",
                "mode": format!("{kind}, {name}"),
                "target": "herald",
                "label": label,
                "run_id": format!("{me}-{i}"),
                "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                "connections": match case { Case::StoreInsert(t) => t, _ => 1 },
                "workers": 0,
                "machine": "",
                "ok": stored == rows as i64,
                "checks": {"lost": (rows as i64 - stored).max(0), "duplicates": 0, "out_of_order": 0,
                           "connect_failed": 0, "publish_errors": 0, "errors": {}},
                "metrics": metrics,
                "latency": null,
                "connect": null,
                "bottleneck": null,
            });
            println!("RESULT {result}");
            on_pool!(pool, p => p.close().await);
        });
    }
    if std::env::var("DATA_DIR").is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
}
