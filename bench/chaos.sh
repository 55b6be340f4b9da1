#!/usr/bin/env bash
# Faults: three Herald nodes on one Redis (AOF on), Neurow's load test with auto-reconnect, and
# nodes and Redis killed and restarted at random (issue 11; BENCHMARKS.md, "Faults").
#
# herald-load runs Neurow's scenario (USERS virtual users, Neurow's message counts and delays)
# with --tolerate-faults: subscribers are spread over the three nodes and move to the next one
# when theirs is down, resuming with Last-Event-ID; publishes go round-robin over the nodes. A
# publish that is refused (503, a node down, a timeout) was never promised and is skipped; every
# publish answered 200 must reach its subscriber exactly once and in order, whatever was killed.
#
# Meanwhile, from a seeded random sequence (SEED, printed and recorded, so a run can be replayed):
# every 10–40 s, either a node is SIGKILLed and restarted 1–5 s later (two times in three), or
# Redis is SIGKILLed and restarted 1–3 s later on its append-only file. Faults stop at DURATION;
# the users then finish within their grace.
#
# The run fails (exit 1) on any loss, duplicate, reordering or failed user. Results go to
# OUT_DIR/results.txt as one CHAOS line, the events to OUT_DIR/events.txt.
#
# Environment (defaults in brackets): SEED [random], DURATION seconds [600], USERS [5000],
# GRACE seconds [90], HERALD_BIN, HERALD_LOAD_BIN, OUT_DIR [bench/results/chaos-<date>].
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
DURATION=${DURATION:-600}
USERS=${USERS:-5000}
GRACE=${GRACE:-90}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/chaos-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
trap 'stop_all' EXIT

ensure_redis
build_release
# Every random choice below comes from bash's generator, seeded here.
RANDOM=$SEED
log "chaos: seed $SEED, $USERS users, ${DURATION}s of faults, results in $OUT_DIR"

event() { printf '%s +%ss %s\n' "$(date +%H:%M:%S)" "$((SECONDS - t0))" "$*" | tee -a "$OUT_DIR/events.txt" >&2; }
between() { echo $(($1 + RANDOM % ($2 - $1 + 1))); } # between LO HI: a random integer

# Redis: persistent (AOF, fsync every second: a SIGKILLed Redis loses nothing it acknowledged,
# since it writes the file before it replies), restarted on the same port and directory.
redis_dir=$(mktemp -d)
redis_port=$(free_port)
start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$redis_dir" --save '' \
        --appendonly yes --appendfsync everysec >>"$OUT_DIR/redis.log" 2>&1 &
    redis_pid=$!
    STARTED_PIDS="$STARTED_PIDS $redis_pid"
    wait_port "$redis_port"
}
start_redis
export REDIS_URL="redis://127.0.0.1:$redis_port"

# Three nodes on fixed ports, so a restarted node comes back where its clients look for it.
pub_ports=() int_ports=() node_pids=() incarnation=(0 0 0)
for n in 0 1 2; do
    pub_ports+=("$(free_port)")
    int_ports+=("$(free_port)")
done
start_node() { # start_node N
    local n=$1
    incarnation[n]=$((incarnation[n] + 1))
    start_herald "$HERALD_BIN" "${pub_ports[n]}" "${int_ports[n]}" \
        "$OUT_DIR/herald-$n.${incarnation[n]}.log"
    node_pids[n]=$HERALD_PID
}
for n in 0 1 2; do start_node "$n"; done

sse_urls="" publish_urls=""
for n in 0 1 2; do
    sse_urls="$sse_urls${sse_urls:+,}http://127.0.0.1:${pub_ports[n]}/v1/subscribe"
    publish_urls="$publish_urls${publish_urls:+,}http://127.0.0.1:${int_ports[n]}/v1/publish"
done
SSE_URL=$sse_urls PUBLISH_URL=$publish_urls SSE_JWT_EXPIRATION=3600 \
    "$LOAD" neurow --nb-user "$USERS" --duration "$DURATION" --grace "$GRACE" --tolerate-faults \
    --label "chaos seed $SEED" >"$OUT_DIR/load.out" 2>"$OUT_DIR/load.err" &
load_pid=$!
STARTED_PIDS="$STARTED_PIDS $load_pid"

t0=$SECONDS
node_kills=0 redis_restarts=0
while :; do
    pause=$(between 10 40)
    [ $((SECONDS - t0 + pause)) -lt "$DURATION" ] || break
    sleep "$pause"
    kill -0 "$load_pid" 2>/dev/null || { event "herald-load ended early"; break; }
    if [ $((RANDOM % 3)) -lt 2 ]; then
        n=$((RANDOM % 3))
        down=$(between 1 5)
        event "SIGKILL node $n (pid ${node_pids[n]}), back in ${down}s"
        kill -9 "${node_pids[n]}"
        sleep "$down"
        start_node "$n"
        event "node $n restarted (pid ${node_pids[n]})"
        node_kills=$((node_kills + 1))
    else
        down=$(between 1 3)
        event "SIGKILL Redis (pid $redis_pid), back in ${down}s"
        kill -9 "$redis_pid"
        wait "$redis_pid" 2>/dev/null || true
        sleep "$down"
        start_redis
        event "Redis restarted (pid $redis_pid)"
        redis_restarts=$((redis_restarts + 1))
    fi
done
event "faults stop; waiting for the users to finish"
wait "$load_pid" || true
result=$(grep '^RESULT ' "$OUT_DIR/load.out" | tail -1 | cut -d' ' -f2-)
if [ -z "$result" ]; then
    log "herald-load gave no result:"
    tail -20 "$OUT_DIR/load.err" >&2
    exit 1
fi
summary=$(RESULT=$result python3 -c '
import json, os
r = json.loads(os.environ["RESULT"])
m, c = r["metrics"], r["checks"]
faults = {k[len("fault_"):]: int(v) for k, v in m.items() if k.startswith("fault_")}
print(" ".join([
    "users_ok=%d" % m.get("users_ok", 0), "users_cut=%d" % m.get("users_cut_at_end", 0),
    "users_error=%d" % m.get("users_error", 0), "published=%d" % m.get("published", 0),
    "refused=%d" % m.get("publish_refused", 0), "received=%d" % m.get("received", 0),
    "reconnects=%d" % m.get("reconnects", 0), "lost=%d" % c["lost"],
    "duplicates=%d" % c["duplicates"], "out_of_order=%d" % c["out_of_order"],
    "errors=%s" % (json.dumps(c["errors"], separators=(",", ":")) if c["errors"] else "{}"),
    "faults=%s" % json.dumps(faults, separators=(",", ":")),
    "ok=%s" % str(r["ok"]).lower(),
]))
')
line="CHAOS seed=$SEED duration_s=$DURATION users=$USERS node_kills=$node_kills redis_restarts=$redis_restarts $summary"
echo "$line" | tee -a "$OUT_DIR/results.txt"
rm -rf "$redis_dir"
[[ "$line" == *" ok=true"* ]]
