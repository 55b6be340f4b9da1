#!/usr/bin/env bash
# Herald over Redis (issue 6): publish throughput and latency for one node in memory, one node on
# Redis and three nodes on Redis, and Redis's CPU per message.
#
# Each configuration runs herald-load's one-to-one sweep (CONNECTIONS topics, one subscriber each,
# publishes spread over them at each rate in RATES). With three nodes, subscribers hold their
# streams on node 2 and publishes go to node 1 (node 3 runs and heartbeats), so every delivery
# crosses Redis. Herald(s) and Redis are pinned to CPU 0, herald-load to CPU 1. Redis's CPU is
# its own INFO cpu (used_cpu_user + used_cpu_sys) over the publish scripts it ran (EVALSHA calls;
# one message per publish here).
#
# Environment (defaults in brackets):
#   REPO_ROOT        Herald workspace root [found from the script's place]
#   HERALD_BIN       [$REPO_ROOT/target/release/herald]; HERALD_LOAD_BIN [.../herald-load]
#   CONNECTIONS      topics and subscriptions [2000]
#   RATES            one-to-one sweep, messages/s [1000,2000,5000,10000,20000]
#   STEP_DURATION    seconds per rate [5]
#   CONFIGS          subset of [memory redis1 redis3]
#   OUT_DIR          [bench/results/cluster-<date>]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
HERALD_BIN=${HERALD_BIN:-$REPO_ROOT/target/release/herald}
LOAD=${HERALD_LOAD_BIN:-$REPO_ROOT/target/release/herald-load}
CONNECTIONS=${CONNECTIONS:-2000}
RATES=${RATES:-1000,2000,5000,10000,20000}
STEP_DURATION=${STEP_DURATION:-5}
CONFIGS=${CONFIGS:-memory redis1 redis3}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
RESULTS=$OUT_DIR/results.txt
: >"$RESULTS"
trap 'stop_all' EXIT

for bin in "$HERALD_BIN" "$LOAD"; do
    [ -x "$bin" ] || { log "missing $bin: cargo build --release -p herald -p herald-load"; exit 2; }
done
if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq redis-server
fi

REDIS_PORT=""
start_redis() {
    REDIS_PORT=$(free_port)
    taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        >"$OUT_DIR/redis-$1.log" 2>&1 &
    STARTED_PIDS="$STARTED_PIDS $!"
    wait_port "$REDIS_PORT"
}
redis_info() { redis-cli -p "$REDIS_PORT" INFO "$1" | tr -d '\r'; }
redis_cpu_s() { redis_info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }
redis_scripts() {
    redis_info commandstats | sed -nE 's/^cmdstat_(evalsha|eval):calls=([0-9]+).*/\2/p' | awk '{s += $1} END {print s + 0}'
}

# run_load LABEL SSE_PORT PUB_PORT PIDS
run_load() {
    local label=$1 sse=$2 pub=$3 pids=$4
    log "$label: one-to-one, $CONNECTIONS topics, rates $RATES"
    SSE_URL="http://127.0.0.1:$sse/v1/subscribe" PUBLISH_URL="http://127.0.0.1:$pub/v1/publish" \
        taskset -c 1 "$LOAD" one-to-one --connections "$CONNECTIONS" --rates "$RATES" \
        --step-duration "$STEP_DURATION" --full-sweep --label "$label" --server-pid "$pids" \
        >"$OUT_DIR/$label.out" 2>"$OUT_DIR/$label.err"
    grep '^RESULT ' "$OUT_DIR/$label.out" >>"$RESULTS" || true
}

for config in $CONFIGS; do
    case "$config" in
    memory)
        sub=$(free_port); int=$(free_port)
        start_herald "$HERALD_BIN" "$sub" "$int" "$OUT_DIR/herald-memory.log" 0
        run_load memory "$sub" "$int" "$HERALD_PID"
        ;;
    redis1 | redis3)
        start_redis "$config"
        export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        n=${config#redis}
        subs=(); ints=(); pids=()
        for i in $(seq 1 "$n"); do
            sub=$(free_port); int=$(free_port)
            start_herald "$HERALD_BIN" "$sub" "$int" "$OUT_DIR/herald-$config-$i.log" 0
            subs+=("$sub"); ints+=("$int"); pids+=("$HERALD_PID")
        done
        unset REDIS_URL
        # Subscribers on the last node, publishes through the first: with 3 nodes, every delivery
        # crosses Redis.
        sse=${subs[$((n - 1))]}
        cpu0=$(redis_cpu_s); scripts0=$(redis_scripts)
        run_load "$config" "$sse" "${ints[0]}" "$(IFS=,; echo "${pids[*]}")"
        cpu1=$(redis_cpu_s); scripts1=$(redis_scripts)
        # Nodes first, so they leave the node list cleanly before Redis stops.
        for pid in "${pids[@]}"; do stop_pid "$pid"; done
        awk -v c="$config" -v cpu="$(echo "$cpu1 - $cpu0" | bc -l)" -v n="$((scripts1 - scripts0))" \
            'BEGIN { printf "REDIS_CPU %s messages=%d cpu_s=%.3f us_per_message=%.2f\n", c, n, cpu, (n ? cpu * 1e6 / n : 0) }' \
            | tee -a "$OUT_DIR/redis-cpu.txt" >&2
        ;;
    *) log "unknown config $config"; exit 2 ;;
    esac
    stop_all
done

"$LOAD" table "$RESULTS" | tee "$OUT_DIR/table.md" >&2 || true
log "results in $OUT_DIR"
