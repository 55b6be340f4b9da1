#!/usr/bin/env bash
# How fast a Herald node on Redis listens again after Redis restarts, and whether it listens to
# every topic it should (issue 6; BENCHMARKS.md, "Recovery after a Redis restart").
#
# One node holds CONNECTIONS idle subscriptions, one topic each (herald-load idle). Then:
#   MODE=redis    its one Redis is restarted, empty;
#   MODE=cluster  it runs on a three-master Redis Cluster (REDIS_CLUSTER=true) and the second
#                 master, a third of the topics, is restarted, empty, with its slots.
# Reported per run: seconds from the restart until the node logs that it listens again, the
# node's own figure for resubscribing and catching up (resubscribed_and_caught_up_ms), and the
# number of topic channels Redis knows subscribers for, 8 s later (must equal CONNECTIONS).
# Herald and Redis are pinned to CPU 0, herald-load to CPU 1.
#
# Environment: MODE [redis], CONNECTIONS [10000], REPEAT [3], HERALD_BIN, HERALD_LOAD_BIN,
# OUT_DIR [bench/results/recovery-<mode>-<date>].
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
MODE=${MODE:-redis}
CONNECTIONS=${CONNECTIONS:-10000}
REPEAT=${REPEAT:-3}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/recovery-$MODE-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
trap 'stop_all' EXIT

ensure_redis
build_release

# redis_args PORT [BUS_PORT DIR NAME]: a private redis-server, or a cluster node.
redis_args() {
    local args=(--port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no)
    if [ $# -gt 1 ]; then
        args+=(--cluster-enabled yes --cluster-port "$2" --dir "$3" --cluster-config-file "$3/$4.conf"
            --cluster-node-timeout 2000 --cluster-require-full-coverage no)
    fi
    printf '%s\n' "${args[@]}"
}
start_redis() { # LOG ARGS...
    local logf=$1
    shift
    taskset -c 0 redis-server "$@" >"$logf" 2>&1 &
    STARTED_PIDS="$STARTED_PIDS $!"
    LAST_REDIS_PID=$!
}
channels() { # the topic channels the servers have subscribers for
    local p
    for p in "$@"; do
        if [ "$MODE" = cluster ]; then
            redis-cli -p "$p" pubsub shardchannels 'herald:*'
        else
            redis-cli -p "$p" pubsub channels 'herald:*'
        fi
    done | grep -c . || true
}

for rep in $(seq 1 "$REPEAT"); do
    name="$MODE-$rep"
    dir=$(mktemp -d)
    ports=()
    args_of=()
    if [ "$MODE" = cluster ]; then
        addresses=""
        for m in 1 2 3; do
            p=$(free_port)
            b=$(free_port)
            ports+=("$p")
            mapfile -t a < <(redis_args "$p" "$b" "$dir" "node$m")
            args_of+=("${a[*]}")
            start_redis "$OUT_DIR/redis-$name-$m.log" "${a[@]}"
            wait_port "$p"
            addresses="$addresses 127.0.0.1:$p"
        done
        # shellcheck disable=SC2086
        redis-cli --cluster create $addresses --cluster-replicas 0 --cluster-yes >"$OUT_DIR/cluster-$name.log"
        for p in "${ports[@]}"; do
            until redis-cli -p "$p" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
        done
        export REDIS_URL="redis://127.0.0.1:${ports[0]}" REDIS_CLUSTER=true
        victim=1
    else
        p=$(free_port)
        ports+=("$p")
        mapfile -t a < <(redis_args "$p")
        args_of+=("${a[*]}")
        start_redis "$OUT_DIR/redis-$name.log" "${a[@]}"
        wait_port "$p"
        export REDIS_URL="redis://127.0.0.1:$p"
        unset REDIS_CLUSTER
        victim=0
    fi
    sub=$(free_port)
    int=$(free_port)
    start_herald "$HERALD_BIN" "$sub" "$int" "$OUT_DIR/herald-$name.log" 0
    SSE_URL="http://127.0.0.1:$sub/v1/subscribe" PUBLISH_URL="http://127.0.0.1:$int/v1/publish" \
        taskset -c 1 "$LOAD" idle --connections "$CONNECTIONS" --hold 60 >"$OUT_DIR/load-$name.out" 2>&1 &
    load_pid=$!
    deadline=$((SECONDS + 120))
    until [ "$(channels "${ports[@]}")" -ge "$CONNECTIONS" ]; do
        [ $SECONDS -lt $deadline ] || { log "$name: subscriptions did not all open"; exit 1; }
        sleep 0.3
    done
    # Restart the victim, empty (a cluster node keeps its slots: its nodes.conf stays).
    victim_port=${ports[$victim]}
    redis-cli -p "$victim_port" shutdown nosave >/dev/null 2>&1 || true
    sleep 0.5
    started=$(date +%s.%N)
    read -r -a a <<<"${args_of[$victim]}"
    start_redis "$OUT_DIR/redis-$name-restarted.log" "${a[@]}"
    until grep -q 'listening to .* again' "$OUT_DIR/herald-$name.log"; do
        [ $SECONDS -lt $((deadline + 60)) ] || break
        sleep 0.05
    done
    recovered=$(echo "$(date +%s.%N) - $started" | bc)
    took=$(grep -o 'resubscribed_and_caught_up_ms=[0-9]*' "$OUT_DIR/herald-$name.log" | tail -1 | cut -d= -f2)
    sleep 8
    echo "RECOVERY $name topics=$CONNECTIONS recovered_s=$recovered resubscribed_and_caught_up_ms=${took:-none} channels_after_8s=$(channels "${ports[@]}")" |
        tee -a "$OUT_DIR/results.txt" >&2
    kill "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
    stop_all
    rm -rf "$dir"
done
log "results in $OUT_DIR"
