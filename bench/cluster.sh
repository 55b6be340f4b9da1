#!/usr/bin/env bash
# Publish throughput and end-to-end latency of Herald alone in memory, one node on Redis, three
# nodes on one Redis, and three nodes on a three-master Redis Cluster (issue 6, item 7), with the
# one-to-one sweep of herald-load, and Redis's CPU time per published message.
#
# All servers (Herald nodes and Redis) are pinned to CPU 0 and the load tool to CPU 1, as in
# compare.sh: on a 2-core machine this measures what the cluster path costs per message, not how
# a cluster scales (that needs a core per node). With three nodes, each topic's subscriber is on
# one node (a stable hash) and publishes round-robin over the nodes, so two publishes in three
# cross nodes through Redis.
#
# Environment (defaults in brackets):
#   REPO_ROOT       Herald workspace root [found from the script's place]
#   HERALD_BIN      Herald binary [$REPO_ROOT/target/release/herald, built with cargo]
#   HERALD_LOAD_BIN herald-load binary [built with cargo]
#   CONNECTIONS     subscriptions [10000]
#   REPEAT          repetitions per setup [3]
#   RATES           one-to-one sweep [1000,5000,10000,15000,20000,25000,30000,35000,40000,45000]
#   STEP_DURATION   seconds per rate [5]
#   SETUPS          [memory redis-1 redis-3 cluster-3]
#   OUT_DIR         [bench/results/cluster-<date>]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
CONNECTIONS=${CONNECTIONS:-10000}
REPEAT=${REPEAT:-3}
RATES=${RATES:-1000,5000,10000,15000,20000,25000,30000,35000,40000,45000}
STEP_DURATION=${STEP_DURATION:-5}
SETUPS=${SETUPS:-memory redis-1 redis-3 cluster-3}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
trap 'stop_all' EXIT

ensure_redis
build_release

# cpu_ticks PID...: utime + stime of processes, in clock ticks.
cpu_ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s + 0}'; }

# start_redis NAME [ARGS...]: a private redis-server on CPU 0; sets REDIS_PORT, adds to redis_pids.
start_redis() {
    local name=$1
    shift
    REDIS_PORT=$(free_port)
    taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no "$@" \
        >"$OUT_DIR/redis-$name.log" 2>&1 &
    redis_pids="$redis_pids $!"
    STARTED_PIDS="$STARTED_PIDS $!"
    wait_port "$REDIS_PORT"
}

for rep in $(seq 1 "$REPEAT"); do
    for setup in $SETUPS; do
        nodes=1
        redis_pids=""
        unset REDIS_URL REDIS_CLUSTER
        case "$setup" in
        memory) ;;
        redis-*)
            nodes=${setup#redis-}
            start_redis "$setup-$rep"
            export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
            ;;
        cluster-*)
            # Three masters, no replica; the nodes get one seed.
            nodes=${setup#cluster-}
            cluster_dir=$(mktemp -d)
            addresses=""
            for m in 1 2 3; do
                # The bus port defaults to port + 10000, past 65535 for a high free port.
                start_redis "$setup-$rep-$m" --cluster-enabled yes --dir "$cluster_dir" \
                    --cluster-config-file "$cluster_dir/nodes-$m.conf" --cluster-port "$(free_port)"
                addresses="$addresses 127.0.0.1:$REDIS_PORT"
            done
            # shellcheck disable=SC2086
            redis-cli --cluster create $addresses --cluster-replicas 0 --cluster-yes >"$OUT_DIR/cluster-$rep.log"
            for a in $addresses; do
                until redis-cli -p "${a#*:}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
            done
            seed=${addresses# }
            export REDIS_URL="redis://${seed%% *}" REDIS_CLUSTER=true
            ;;
        esac
        sse_urls=""
        pub_urls=""
        pids=""
        for n in $(seq 1 "$nodes"); do
            sub_port=$(free_port)
            pub_port=$(free_port)
            start_herald "$HERALD_BIN" "$sub_port" "$pub_port" "$OUT_DIR/herald-$setup-$rep-$n.log" 0
            sse_urls="$sse_urls${sse_urls:+,}http://127.0.0.1:$sub_port/v1/subscribe"
            pub_urls="$pub_urls${pub_urls:+,}http://127.0.0.1:$pub_port/v1/publish"
            pids="$pids${pids:+,}$HERALD_PID"
        done
        sleep 1
        # shellcheck disable=SC2086
        redis_before=$(cpu_ticks $redis_pids)
        name="$setup-one-to-one-$rep"
        log "$name"
        TARGET=herald SSE_URL=$sse_urls PUBLISH_URL=$pub_urls SSE_JWT_EXPIRATION=86400 \
            timeout 600 taskset -c 1 "$LOAD" one-to-one --rates "$RATES" --step-duration "$STEP_DURATION" \
            --p99-bound-ms 50 --server-pid "${pids}$(for p in $redis_pids; do printf ',%s' "$p"; done)" --connections "$CONNECTIONS" \
            --label "$name" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" || log "$name: exit $?"
        grep '^RESULT ' "$OUT_DIR/$name.out" >>"$OUT_DIR/results.txt" || true
        grep -E '^(==|  checks|  WARNING)' "$OUT_DIR/$name.out" >&2 || true
        if [ -n "$redis_pids" ]; then
            # shellcheck disable=SC2086
            redis_ticks=$(($(cpu_ticks $redis_pids) - redis_before))
            delivered=$(grep '^RESULT ' "$OUT_DIR/$name.out" |
                python3 -c 'import json,sys; print(sum(s["delivered"] for s in json.loads(sys.stdin.read().split(" ",1)[1])["steps"]))')
            echo "REDIS $name cpu_ticks=$redis_ticks delivered=$delivered" >>"$OUT_DIR/redis.txt"
        fi
        stop_all
        [ -n "${cluster_dir:-}" ] && rm -rf "$cluster_dir" && cluster_dir=""
    done
done

log "results in $OUT_DIR"
python3 - "$OUT_DIR" <<'EOF'
import json, statistics, sys, os, re
out = sys.argv[1]
runs = {}
for line in open(os.path.join(out, "results.txt")):
    r = json.loads(line.split(" ", 1)[1])
    setup = r["label"].rsplit("-one-to-one-", 1)[0]
    runs.setdefault(setup, []).append(r["metrics"])
redis = {}
if os.path.exists(os.path.join(out, "redis.txt")):
    for line in open(os.path.join(out, "redis.txt")):
        m = re.match(r"REDIS (\S+)-one-to-one-\d+ cpu_ticks=(\d+) delivered=(\d+)", line)
        if m and int(m.group(3)):
            # clock ticks are 10 ms
            redis.setdefault(m.group(1), []).append(int(m.group(2)) * 10_000 / int(m.group(3)))
print("| setup | highest rate with p99 < 50 ms | p50 / p99 at that rate (ms) | servers' CPU per message (µs) | Redis CPU per message (µs) |")
print("|---|---|---|---|---|")
for setup, ms in runs.items():
    med = lambda k: statistics.median(m.get(k, 0) for m in ms)
    r = f"{statistics.median(redis[setup]):.1f}" if setup in redis else "—"
    print(f"| {setup} | {med('max_rate_under_bound'):,.0f}/s | {med('latency_p50_ms_at_max'):.2f} / {med('latency_p99_ms_at_max'):.2f} | {med('server_cpu_us_per_delivery_at_max'):.1f} | {r} |")
EOF
