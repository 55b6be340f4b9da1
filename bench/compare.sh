#!/usr/bin/env bash
# Herald against Nchan on one machine: idle memory, broadcast fan-out (throughput and latency),
# the one-to-one rate sweep and a subscribe storm, each run REPEAT times against each server,
# then one table of medians with Herald/Nchan ratios and a latency-against-rate chart.
#
# The server runs pinned to CPU 0 (taskset -c 0) and the load tool to CPU 1, so each side has
# one core. Each server is restarted before each repetition, so that the idle memory figure is
# taken on a fresh process (allocators keep freed memory, which would hide the next run's cost).
#
# Environment (defaults in brackets):
#   REPO_ROOT          Herald workspace root [found from the script's place: bench/ or
#                      crates/herald-load/bench/ of the workspace; else /work/main]
#   HERALD_BIN         Herald binary [$REPO_ROOT/target/release/herald, built with cargo]
#   SKIP_HERALD_BUILD  1: do not run cargo build for Herald (use HERALD_BIN as it is)
#   HERALD_LOAD_BIN    herald-load binary [built with cargo]
#   CONNECTIONS        subscriptions per scenario [10000]
#   REPEAT             repetitions per server [3]
#   DURATION           broadcast publishing time, s [10]
#   RATE               broadcast latency-mode rate, messages/s [2]
#   RATES              one-to-one sweep, messages/s [1000,2000,5000,10000,20000,30000,40000,50000,60000,80000]
#   STEP_DURATION      one-to-one seconds per rate [5]
#   P99_BOUND_MS       one-to-one latency bound [50]
#   SCENARIOS          subset to run [idle broadcast-window broadcast-rate one-to-one storm];
#                      also idle-multi and broadcast-multi (Herald v2: TOPICS topics per
#                      stream [8]); one-to-one-longpoll (the one-to-one sweep with long-polling
#                      subscribers: Herald's /v2/poll, Nchan's /lp/<channel>; row "one-to-one
#                      (long-poll)"); storm-v2 (Herald only: the storm against /v2/subscribe
#                      three times, the token in the header, in the query and as a ticket
#                      minted beforehand; rows "storm (v2, header|query|ticket)"); idle-ws,
#                      broadcast-ws (window mode, as broadcast-window) and one-to-one-ws: the
#                      same with WebSocket subscribers (Herald's /v2/ws?topic=…, Nchan's
#                      /ws/<channel>; rows "idle (websocket)", "broadcast (window, websocket)",
#                      "one-to-one (websocket)"); one-to-one-ws-publish (Herald only: WebSocket
#                      subscribers, and the publishes sent as `publish` commands over
#                      PUBLISH_WS_CONNECTIONS WebSockets per load-tool worker instead of
#                      POST /v1/publish; row "one-to-one (websocket, publish over ws)", whose
#                      server_cpu_us_per_delivery_at_ref compares with one-to-one-ws's at REF_RATE)
#   LONGPOLL_RATES     one-to-one-longpoll sweep, messages/s [$RATES]
#   WS_RATES           one-to-one-ws and one-to-one-ws-publish sweeps, messages/s [$RATES]
#   PUBLISH_WS_CONNECTIONS  WebSockets each load-tool worker publishes on, one-to-one-ws-publish
#                      [4] (read by herald-load; commands are pipelined on each)
#   REF_RATE           the one-to-one step (messages/s, one of the sweep's rates) whose server CPU
#                      per publish + delivery every one-to-one row reports as
#                      server_cpu_us_per_delivery_at_ref [10000] (read by herald-load)
#   HERALD_WS_MAX_COMMANDS_PER_SECOND  Herald's WS_MAX_COMMANDS_PER_SECOND [0: no limit; bench/lib.sh]
#   TARGETS            [herald nchan]
#   QUIET_PCT          before each run, wait until the machine's other load is under this % of
#                      one core for 2 s [25]; QUIET_MAX_WAIT bounds the wait, s [60]
#   OUT_DIR            where results go [bench/results/<date>]
#   MAX_OTHER_PCT      the table leaves out runs disturbed by other load above this % of one
#                      core [50]; table-all.md keeps every run
#
# Set for herald-load per server (TOOL_ENV): TARGET, SSE_URL, PUBLISH_URL, POLL_URL (the
# long-poll endpoint: http://127.0.0.1:PORT/v2/poll on Herald, http://127.0.0.1:PORT/lp/ on
# Nchan, whose location bench/lib.sh writes) and WS_URL (http://127.0.0.1:PORT/v2/ws on Herald,
# http://127.0.0.1:PORT/ws/ on Nchan); one-to-one-longpoll adds SUBSCRIBER_TRANSPORT=longpoll,
# the -ws scenarios SUBSCRIBER_TRANSPORT=ws (and one-to-one-ws-publish PUBLISH_VIA=ws), storm-v2
# SSE_URL=.../v2/subscribe and TOKEN_IN=header|query|ticket.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
CONNECTIONS=${CONNECTIONS:-10000}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
RATE=${RATE:-2}
RATES=${RATES:-1000,2000,5000,10000,20000,30000,40000,50000,60000,80000}
STEP_DURATION=${STEP_DURATION:-5}
P99_BOUND_MS=${P99_BOUND_MS:-50}
LONGPOLL_RATES=${LONGPOLL_RATES:-$RATES}
WS_RATES=${WS_RATES:-$RATES}
SCENARIOS=${SCENARIOS:-idle broadcast-window broadcast-rate one-to-one storm}
TARGETS=${TARGETS:-herald nchan}
MAX_OTHER_PCT=${MAX_OTHER_PCT:-50}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
RESULTS=$OUT_DIR/results.txt
trap 'stop_all' EXIT

SERVER_CPU=0
TOOL_CPU=1
if [ "$(nproc)" -lt 2 ]; then
    log "fewer than 2 CPUs: running without pinning"
    SERVER_CPU=""
    TOOL_CPU=""
fi

# --- Build -----------------------------------------------------------------------------------
case " $TARGETS " in *" nchan "*) ensure_nchan ;; esac
if [[ " $TARGETS " == *" herald "* ]]; then
    HERALD_BIN=${HERALD_BIN:-$REPO_ROOT/target/release/herald}
    if [ "${SKIP_HERALD_BUILD:-0}" != 1 ]; then
        log "building Herald (release) in $REPO_ROOT"
        (cd "$REPO_ROOT" && cargo build --release -p herald)
    fi
    [ -x "$HERALD_BIN" ] || { log "no Herald binary at $HERALD_BIN"; exit 2; }
fi
if [ -z "${HERALD_LOAD_BIN:-}" ]; then
    if [ -d "$REPO_ROOT/crates/herald-load" ]; then
        (cd "$REPO_ROOT" && cargo build --release -q -p herald-load)
        HERALD_LOAD_BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/herald-load
    else
        (cd "$SCRIPT_DIR/.." && cargo build --release -q)
        HERALD_LOAD_BIN=${CARGO_TARGET_DIR:-$SCRIPT_DIR/../target}/release/herald-load
    fi
fi
LOAD=$HERALD_LOAD_BIN

# --- Machine ---------------------------------------------------------------------------------
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "nginx: $(nginx -v 2>&1 | sed 's/.*\///')"
    echo "nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
    [ -n "${HERALD_BIN:-}" ] && echo "herald: $("$HERALD_BIN" --version 2>/dev/null || echo '?') ($HERALD_BIN)"
    echo "herald-load: $("$LOAD" --version)"
    echo "connections: $CONNECTIONS, repeat: $REPEAT"
} | tee "$OUT_DIR/machine.txt" >&2

# --- Servers ---------------------------------------------------------------------------------
SUB_PORT=$(free_port)
PUB_PORT=$(free_port)
while [ "$PUB_PORT" = "$SUB_PORT" ]; do PUB_PORT=$(free_port); done

start_server() {
    local target=$1 rep=$2
    case "$target" in
    herald)
        start_herald "$HERALD_BIN" "$SUB_PORT" "$PUB_PORT" "$OUT_DIR/herald-$rep.log" "$SERVER_CPU"
        SERVER_PIDS=$HERALD_PID
        TOOL_ENV=(TARGET=herald "SSE_URL=http://127.0.0.1:$SUB_PORT/v1/subscribe"
            "PUBLISH_URL=http://127.0.0.1:$PUB_PORT/v1/publish" SSE_JWT_EXPIRATION=86400
            "POLL_URL=http://127.0.0.1:$SUB_PORT/v2/poll" "WS_URL=http://127.0.0.1:$SUB_PORT/v2/ws")
        ;;
    nchan)
        start_nchan "$OUT_DIR/nchan-$rep" "$SUB_PORT" "$PUB_PORT" "$SERVER_CPU"
        SERVER_PIDS=$NCHAN_WORKER
        TOOL_ENV=(TARGET=nchan "SSE_URL=http://127.0.0.1:$SUB_PORT/sub/"
            "PUBLISH_URL=http://127.0.0.1:$PUB_PORT/pub/" "POLL_URL=http://127.0.0.1:$SUB_PORT/lp/"
            "WS_URL=http://127.0.0.1:$SUB_PORT/ws/")
        ;;
    esac
    sleep 1
}

# busy_ticks: busy jiffies of all CPUs (everything but idle and iowait) from /proc/stat.
busy_ticks() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

# wait_quiet: waits (at most QUIET_MAX_WAIT s) until the machine has been nearly idle for 2 s,
# so that another workload does not distort the next run. Servers are idle between runs.
wait_quiet() {
    local limit=${QUIET_MAX_WAIT:-60} pct=${QUIET_PCT:-25} waited=0 a b
    while [ "$waited" -lt "$limit" ]; do
        a=$(busy_ticks)
        sleep 2
        b=$(busy_ticks)
        # Ticks are 1/100 s: over 2 s one core is 200 ticks.
        if [ $((b - a)) -le $((pct * 2)) ]; then
            return 0
        fi
        waited=$((waited + 2))
    done
    log "machine still busy after ${limit}s ($(((b - a) / 2))% of a core); running anyway"
}

tool() {
    local name=$1
    shift
    local pin=()
    [ -n "$TOOL_CPU" ] && pin=(taskset -c "$TOOL_CPU")
    wait_quiet
    log "$name"
    # A failed check is reported in the result; keep going with the other scenarios.
    env "${TOOL_ENV[@]}" timeout 600 "${pin[@]}" "$LOAD" "$@" --server-pid "$SERVER_PIDS" \
        --connections "$CONNECTIONS" --label "$name" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err" ||
        log "$name: exit $? (see $OUT_DIR/$name.err)"
    grep '^RESULT ' "$OUT_DIR/$name.out" >>"$RESULTS" || true
    grep -E '^(==|  checks|  WARNING)' "$OUT_DIR/$name.out" >&2 || true
}

started=$(date +%s)
for rep in $(seq 1 "$REPEAT"); do
    for target in $TARGETS; do
        start_server "$target" "$rep"
        for scenario in $SCENARIOS; do
            case "$scenario" in
            idle) tool "$target-idle-$rep" idle ;;
            idle-multi)
                # Herald v2 only: each stream holds TOPICS topics (its own and TOPICS-1 shared).
                if [ "$target" = herald ]; then
                    saved=("${TOOL_ENV[@]}")
                    TOOL_ENV+=("SSE_URL=http://127.0.0.1:$SUB_PORT/v2/subscribe" "TOPICS_PER_CONNECTION=${TOPICS:-8}")
                    tool "$target-idle-${TOPICS:-8}-topics-$rep" idle
                    TOOL_ENV=("${saved[@]}")
                fi
                ;;
            broadcast-window) tool "$target-broadcast-window-$rep" broadcast --duration "$DURATION" ;;
            broadcast-multi)
                # Herald v2 only: the broadcast topic is one of TOPICS topics of every stream.
                if [ "$target" = herald ]; then
                    saved=("${TOOL_ENV[@]}")
                    TOOL_ENV+=("SSE_URL=http://127.0.0.1:$SUB_PORT/v2/subscribe" "TOPICS_PER_CONNECTION=${TOPICS:-8}")
                    tool "$target-broadcast-${TOPICS:-8}-topics-$rep" broadcast --duration "$DURATION"
                    TOOL_ENV=("${saved[@]}")
                fi
                ;;
            broadcast-rate) tool "$target-broadcast-rate-$rep" broadcast --duration "$DURATION" --rate "$RATE" ;;
            one-to-one)
                tool "$target-one-to-one-$rep" one-to-one --rates "$RATES" \
                    --step-duration "$STEP_DURATION" --p99-bound-ms "$P99_BOUND_MS"
                ;;
            one-to-one-longpoll)
                saved=("${TOOL_ENV[@]}")
                TOOL_ENV+=(SUBSCRIBER_TRANSPORT=longpoll)
                tool "$target-one-to-one-longpoll-$rep" one-to-one --rates "$LONGPOLL_RATES" \
                    --step-duration "$STEP_DURATION" --p99-bound-ms "$P99_BOUND_MS"
                TOOL_ENV=("${saved[@]}")
                ;;
            idle-ws)
                saved=("${TOOL_ENV[@]}")
                TOOL_ENV+=(SUBSCRIBER_TRANSPORT=ws)
                tool "$target-idle-ws-$rep" idle
                TOOL_ENV=("${saved[@]}")
                ;;
            broadcast-ws)
                saved=("${TOOL_ENV[@]}")
                TOOL_ENV+=(SUBSCRIBER_TRANSPORT=ws)
                tool "$target-broadcast-ws-$rep" broadcast --duration "$DURATION"
                TOOL_ENV=("${saved[@]}")
                ;;
            one-to-one-ws)
                saved=("${TOOL_ENV[@]}")
                TOOL_ENV+=(SUBSCRIBER_TRANSPORT=ws)
                tool "$target-one-to-one-ws-$rep" one-to-one --rates "$WS_RATES" \
                    --step-duration "$STEP_DURATION" --p99-bound-ms "$P99_BOUND_MS"
                TOOL_ENV=("${saved[@]}")
                ;;
            one-to-one-ws-publish)
                # Herald only: the publishes go over its WebSocket as well.
                if [ "$target" = herald ]; then
                    saved=("${TOOL_ENV[@]}")
                    TOOL_ENV+=(SUBSCRIBER_TRANSPORT=ws PUBLISH_VIA=ws)
                    tool "$target-one-to-one-ws-publish-$rep" one-to-one --rates "$WS_RATES" \
                        --step-duration "$STEP_DURATION" --p99-bound-ms "$P99_BOUND_MS"
                    TOOL_ENV=("${saved[@]}")
                fi
                ;;
            storm) tool "$target-storm-$rep" storm ;;
            storm-v2)
                # Herald only: what a subscription costs with the token in the header, in the
                # query, or as a ticket (minted before the measured storm).
                if [ "$target" = herald ]; then
                    saved=("${TOOL_ENV[@]}")
                    for token_in in header query ticket; do
                        TOOL_ENV=("${saved[@]}" "SSE_URL=http://127.0.0.1:$SUB_PORT/v2/subscribe"
                            "TOKEN_IN=$token_in")
                        tool "$target-storm-v2-$token_in-$rep" storm
                    done
                    TOOL_ENV=("${saved[@]}")
                fi
                ;;
            *) log "unknown scenario $scenario" ;;
            esac
        done
        stop_all
        sleep 1
    done
done
log "all runs done in $(($(date +%s) - started)) s"

"$LOAD" plot --max-other-pct "$MAX_OTHER_PCT" "$RESULTS" --out "$OUT_DIR/one-to-one.svg" || true
"$LOAD" table --markdown "$RESULTS" >"$OUT_DIR/table-all.md" || true
"$LOAD" table --markdown --max-other-pct "$MAX_OTHER_PCT" "$RESULTS" >"$OUT_DIR/table.md" || true
"$LOAD" table --max-other-pct "$MAX_OTHER_PCT" "$RESULTS"
log "results in $OUT_DIR (results.txt, table.md, table-all.md, one-to-one.svg)"
