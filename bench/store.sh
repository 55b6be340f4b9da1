#!/usr/bin/env bash
# Herald's durable store (issue 15 item 9), on SQLite and on a private PostgreSQL, REPEAT times:
#   floor             the raw floor: batched sqlx commits of Herald's event rows into a fresh store
#                     of Herald's schema, and Herald's writer in-process (crates/herald/benches/
#                     store_floor.rs; rows "store-floor (<store>, <case>)")
#   insert-now        herald-load store-insert: CLIENTS concurrent clients, events published at
#                     once (the scheduler fires each as it would in use)
#   insert-scheduled  the same with publish_at an hour ahead: the inserts alone, as the floor
#   insert-watched    insert-now plus one SSE subscriber of 64 of the collections: how late events
#                     published at once fire while the inserts go on (store-insert --watch)
#   fire-lag          herald-load store-fire-lag: FIRE_EVENTS events due over FIRE_SPREAD s, one
#                     SSE subscriber of their collections
#   login             herald-load login: LOGIN_CLIENTS clients logging in (Argon2id on the pool)
# Each herald-load run gets a fresh Herald (release build) and a fresh store: a new SQLite file
# in a new DATA_DIR, or a new database on the PostgreSQL server. PostgreSQL runs with its
# durable defaults (fsync=on, synchronous_commit=on): never fsync=off for these figures.
# Nothing is pinned: Herald, PostgreSQL and the tool share the machine's cores. `uptime` is
# logged before every run (OUT_DIR/uptime.log) and kept in each result's label.
#
# Needs root (PostgreSQL runs as the `postgres` user through runuser; the `postgresql` package is
# installed from Debian's archive when missing).
#
# Environment (defaults in brackets):
#   REPO_ROOT        Herald workspace root [found from the script's place]
#   REPEAT           repetitions of every scenario on every store [3]
#   REPS             which repetitions to run, by number [1 … REPEAT] (to complete a session)
#   STORES           [sqlite postgres]
#   SCENARIOS        [floor insert-now insert-scheduled insert-watched fire-lag login]
#   CLIENTS          store-insert clients [64]; DURATION measured seconds [10]; WARMUP [2]
#   FLOOR_ROWS       rows per floor case [100000]
#   FIRE_EVENTS [100000], FIRE_SPREAD s [60], FIRE_LEAD s [90: every insert must be acknowledged
#                    before the first falls due], FIRE_COLLECTIONS [10]
#   LOGIN_CLIENTS [16], LOGIN_USERS [64], LOGIN_DURATION s [10]
#   QUIET_PCT        before each run, wait until other load is under this % of one core for 2 s
#                    [40]; QUIET_MAX_WAIT bounds the wait, s [60]
#   OUT_DIR          where results go [bench/results/store-<date>]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
REPEAT=${REPEAT:-3}
REPS=${REPS:-$(seq 1 "$REPEAT")}
STORES=${STORES:-sqlite postgres}
SCENARIOS=${SCENARIOS:-floor insert-now insert-scheduled insert-watched fire-lag login}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
FLOOR_ROWS=${FLOOR_ROWS:-100000}
FIRE_EVENTS=${FIRE_EVENTS:-100000}
FIRE_SPREAD=${FIRE_SPREAD:-60}
FIRE_LEAD=${FIRE_LEAD:-90}
FIRE_COLLECTIONS=${FIRE_COLLECTIONS:-10}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-16}
LOGIN_USERS=${LOGIN_USERS:-64}
LOGIN_DURATION=${LOGIN_DURATION:-10}
OUT_DIR=${OUT_DIR:-$REPO_ROOT/bench/results/store-$(date +%Y-%m-%d)}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/herald-store-bench.XXXXXX)
PGROOT=""
PGBIN=""

stop_postgres() {
    if [ -n "$PGROOT" ] && [ -f "$PGROOT/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null || true
    fi
    [ -n "$PGROOT" ] && rm -rf "$PGROOT"
    PGROOT=""
}
trap 'stop_all; stop_postgres; rm -rf "$WORK"' EXIT

# start_postgres: a private PostgreSQL on a free loopback port (spec/durable-and-ui.md §4), with
# its durable defaults. Sets PG_PORT and PG_PID (the postmaster).
start_postgres() {
    if ! command -v pg_config >/dev/null || [ ! -x "$(pg_config --bindir)/initdb" ]; then
        log "installing postgresql"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=$(pg_config --bindir)
    PGROOT=$(mktemp -d /tmp/herald-store-pg.XXXXXX)
    chown postgres:postgres "$PGROOT"
    PG_PORT=$(free_port)
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGROOT/data" -U herald --auth=trust -E UTF8 \
        --locale=C.UTF-8 --no-instructions >"$PGROOT/initdb.log"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGROOT -c max_connections=100" start >/dev/null
    PG_PID=$(head -1 "$PGROOT/data/postmaster.pid")
    log "postgres: pid $PG_PID on :$PG_PORT ($("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U herald -d postgres -Atc \
        "select 'fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' wal_sync_method=' || current_setting('wal_sync_method')"))"
}

# fresh_database NAME: creates database NAME on the private server; prints its URL.
fresh_database() {
    runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U herald "$1"
    echo "postgres://herald@127.0.0.1:$PG_PORT/$1"
}

busy_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

# wait_quiet: as bench/compare.sh's — until other load is low for 2 s, or QUIET_MAX_WAIT.
wait_quiet() {
    local limit=${QUIET_MAX_WAIT:-60} pct=${QUIET_PCT:-40} waited=0 a b
    while [ "$waited" -lt "$limit" ]; do
        a=$(busy_ticks)
        sleep 2
        b=$(busy_ticks)
        if [ $((b - a)) -le $((pct * 2)) ]; then
            return 0
        fi
        waited=$((waited + 2))
    done
    log "machine still busy after ${limit}s ($(((b - a) / 2))% of a core); running anyway"
}

log "building release binaries"
(cd "$REPO_ROOT" && cargo build --release -q -p herald -p herald-load)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
HERALD_BIN=$TARGET_DIR/release/herald
LOAD=$TARGET_DIR/release/herald-load
FLOOR_BIN=$(cd "$REPO_ROOT" && cargo bench -p herald --bench store_floor --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
case "$FLOOR_BIN" in /*) ;; *) FLOOR_BIN=$REPO_ROOT/$FLOOR_BIN ;; esac
[ -x "$FLOOR_BIN" ] || { log "cannot find the store_floor bench binary"; exit 1; }
{
    echo "date: $(date -Is)"
    echo "herald: $(git -C "$REPO_ROOT" rev-parse --short HEAD) $(git -C "$REPO_ROOT" status --porcelain | wc -l) uncommitted"
    nproc
    grep -m1 'model name' /proc/cpuinfo
    uname -r
} >"$OUT_DIR/machine.txt"

case " $STORES " in *" postgres "*) start_postgres ;; esac

n=0
# run_herald STORE REP NAME ARGS...: a fresh Herald on a fresh store, one herald-load run.
run_herald() {
    local store=$1 rep=$2 name=$3
    shift 3
    n=$((n + 1))
    local pub int db_args=() url=""
    pub=$(free_port)
    int=$(free_port)
    while [ "$int" = "$pub" ]; do int=$(free_port); done
    if [ "$store" = postgres ]; then
        url=$(fresh_database "bench_$n")
        db_args=(--db-pid "$PG_PID")
    fi
    wait_quiet
    local up
    up=$(uptime | sed 's/.*load average: //')
    echo "$(date +%T) $store $name rep $rep: load $up" >>"$OUT_DIR/uptime.log"
    # Unset DATABASE_URL: SQLite in a fresh DATA_DIR.
    DATABASE_URL=$url HERALD_DATA_DIR=$WORK/data-$n ACCOUNTS_SIGNUP=open \
        start_herald "$HERALD_BIN" "$pub" "$int" "$OUT_DIR/herald-$store-$name-$rep.log"
    log "$store $name (rep $rep, load $up)"
    SSE_URL="http://127.0.0.1:$pub/v2/subscribe" PUBLISH_URL="http://127.0.0.1:$int/v1/publish" \
        timeout 900 "$LOAD" "$@" --server-pid "$HERALD_PID" "${db_args[@]}" --store "$store" \
        --label "rep $rep; load $up" >"$OUT_DIR/$store-$name-$rep.out" 2>"$OUT_DIR/$store-$name-$rep.err" ||
        log "$store $name rep $rep: exit $? (see $OUT_DIR/$store-$name-$rep.err)"
    grep -E '^  (inserts_per_s|latency_p99_ms|fire_lag_p99_ms|arrival_lag_p99_ms|logins_per_s|checks) ' \
        "$OUT_DIR/$store-$name-$rep.out" >&2 || true
    stop_pid "$HERALD_PID"
}

run_floor() {
    local store=$1 rep=$2 env=(ROWS="$FLOOR_ROWS" DATABASE_URL= DB_PID=)
    n=$((n + 1))
    if [ "$store" = postgres ]; then
        env+=("DATABASE_URL=$(fresh_database "floor_$n")" "DB_PID=$PG_PID")
    else
        mkdir -p "$WORK/floor-$n"
        env+=("DATA_DIR=$WORK/floor-$n")
    fi
    wait_quiet
    local up
    up=$(uptime | sed 's/.*load average: //')
    echo "$(date +%T) $store floor rep $rep: load $up" >>"$OUT_DIR/uptime.log"
    log "$store floor (rep $rep, load $up)"
    env "${env[@]}" LABEL="rep $rep; load $up" timeout 900 "$FLOOR_BIN" \
        >"$OUT_DIR/$store-floor-$rep.out" 2>"$OUT_DIR/$store-floor-$rep.err" ||
        log "$store floor rep $rep: exit $? (see $OUT_DIR/$store-floor-$rep.err)"
    grep -v '^RESULT' "$OUT_DIR/$store-floor-$rep.out" >&2 || true
    rm -rf "$WORK/floor-$n"
}

for rep in $REPS; do
    for store in $STORES; do
        for scenario in $SCENARIOS; do
            case $scenario in
            floor) run_floor "$store" "$rep" ;;
            insert-now)
                run_herald "$store" "$rep" insert-now store-insert --clients "$CLIENTS" \
                    --duration "$DURATION" --warmup "$WARMUP"
                ;;
            insert-scheduled)
                run_herald "$store" "$rep" insert-scheduled store-insert --clients "$CLIENTS" \
                    --duration "$DURATION" --warmup "$WARMUP" --schedule-ahead-ms 3600000
                ;;
            insert-watched)
                run_herald "$store" "$rep" insert-watched store-insert --clients "$CLIENTS" \
                    --duration "$DURATION" --warmup "$WARMUP" --watch
                ;;
            fire-lag)
                run_herald "$store" "$rep" fire-lag store-fire-lag --events "$FIRE_EVENTS" \
                    --spread "$FIRE_SPREAD" --lead "$FIRE_LEAD" --collections "$FIRE_COLLECTIONS" \
                    --clients "$CLIENTS"
                ;;
            login)
                run_herald "$store" "$rep" login login --clients "$LOGIN_CLIENTS" --users "$LOGIN_USERS" \
                    --duration "$LOGIN_DURATION"
                ;;
            *) log "unknown scenario $scenario" ;;
            esac
        done
    done
done

grep -h '^RESULT ' "$OUT_DIR"/*.out >"$OUT_DIR/results.txt" || true
"$LOAD" table "$OUT_DIR/results.txt" | tee "$OUT_DIR/table.txt"
"$LOAD" table --markdown "$OUT_DIR/results.txt" >"$OUT_DIR/table.md"
log "results in $OUT_DIR"
