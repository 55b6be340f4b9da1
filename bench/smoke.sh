#!/usr/bin/env bash
# Smoke test for CI: start Herald on free loopback ports, run every herald-load scenario at a
# tiny size for a few seconds, and fail on any lost, duplicated or out-of-order message or error.
#
# Environment:
#   HERALD_BIN       Herald binary (default: $REPO_ROOT/target/release/herald)
#   HERALD_LOAD_BIN  herald-load binary (default: built here with cargo, release profile)
#   REPO_ROOT        workspace root (default: found from the script's place, else /work/main)
#   TARGET           herald (default) or nchan (starts a local Nchan instead of Herald)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
TARGET=${TARGET:-herald}
WORK=$(mktemp -d /tmp/herald-smoke.XXXXXX)
trap 'stop_all; rm -rf "$WORK"' EXIT

load_bin() {
    if [ -n "${HERALD_LOAD_BIN:-}" ]; then
        echo "$HERALD_LOAD_BIN"
    elif [ -d "$REPO_ROOT/crates/herald-load" ]; then
        (cd "$REPO_ROOT" && cargo build --release -q -p herald-load) >&2
        echo "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/herald-load"
    else
        (cd "$SCRIPT_DIR/.." && cargo build --release -q) >&2
        echo "${CARGO_TARGET_DIR:-$SCRIPT_DIR/../target}/release/herald-load"
    fi
}
LOAD=$(load_bin)

SUB_PORT=$(free_port)
PUB_PORT=$(free_port)
while [ "$PUB_PORT" = "$SUB_PORT" ]; do PUB_PORT=$(free_port); done
export SSE_JWT_EXPIRATION=120
case "$TARGET" in
herald)
    HERALD_BIN=${HERALD_BIN:-$REPO_ROOT/target/release/herald}
    [ -x "$HERALD_BIN" ] || { log "no Herald binary at $HERALD_BIN (set HERALD_BIN)"; exit 2; }
    # Sign-up open for the login scenario; the store is SQLite in start_herald's fresh DATA_DIR.
    ACCOUNTS_SIGNUP=open PUBLIC_API_JWT_MAX_LIFETIME=120 start_herald "$HERALD_BIN" "$SUB_PORT" "$PUB_PORT" "$WORK/herald.log"
    SERVER_PIDS=$HERALD_PID
    export SSE_URL="http://127.0.0.1:$SUB_PORT/v1/subscribe"
    export PUBLISH_URL="http://127.0.0.1:$PUB_PORT/v1/publish"
    export POLL_URL="http://127.0.0.1:$SUB_PORT/v2/poll"
    export WS_URL="http://127.0.0.1:$SUB_PORT/v2/ws"
    ;;
nchan)
    ensure_nchan
    start_nchan "$WORK/nchan" "$SUB_PORT" "$PUB_PORT"
    SERVER_PIDS=$NCHAN_WORKER
    export SSE_URL="http://127.0.0.1:$SUB_PORT/sub/"
    export PUBLISH_URL="http://127.0.0.1:$PUB_PORT/pub/"
    export POLL_URL="http://127.0.0.1:$SUB_PORT/lp/"
    export WS_URL="http://127.0.0.1:$SUB_PORT/ws/"
    ;;
*)
    log "TARGET must be herald or nchan"
    exit 2
    ;;
esac
export TARGET

failed=()
run() {
    local name=$1
    shift
    log "smoke: $name"
    if ! timeout 120 "$LOAD" "$@" --smoke --server-pid "$SERVER_PIDS" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
        failed+=("$name")
        cat "$WORK/$name.err" "$WORK/$name.out" >&2
    else
        grep -E "^(==|  checks)" "$WORK/$name.out" >&2
    fi
}

run idle idle
run storm storm
run broadcast-window broadcast
run broadcast-rate broadcast --rate 20
run one-to-one one-to-one
run one-to-one-longpoll one-to-one --transport longpoll
run idle-ws idle --transport ws
run broadcast-ws broadcast --transport ws
run one-to-one-ws one-to-one --transport ws
run neurow neurow
run neurow-reconnect neurow --sse-auto-reconnect
run neurow-faults neurow --tolerate-faults
run soak soak --reconnect-fraction 0.5 --svg "$WORK/soak.svg"

if [ "$TARGET" = herald ]; then
    # WebSocket subscribers, and the publishes as `publish` commands over Herald's WebSocket.
    run one-to-one-ws-publish one-to-one --transport ws --publish-via ws
    # Herald v2: the subscriber's token in the header, the query, or as a single-use ticket.
    for token_in in header query ticket; do
        SSE_URL="http://127.0.0.1:$SUB_PORT/v2/subscribe" run "storm-v2-$token_in" storm --token-in "$token_in"
    done
    # The store: inserts acknowledged once durable, scheduled events firing on their collection's
    # topic, logins through the hashing pool (a second or a few each).
    run store-insert store-insert
    run store-fire-lag store-fire-lag
    run login login
    # Streams that time out after 0.7 s force reconnects with Last-Event-ID: every message must
    # still arrive exactly once.
    RC_SUB=$(free_port)
    RC_PUB=$(free_port)
    HERALD_SSE_TIMEOUT=700 PUBLIC_API_JWT_MAX_LIFETIME=120 \
        start_herald "$HERALD_BIN" "$RC_SUB" "$RC_PUB" "$WORK/herald-rc.log"
    SSE_URL="http://127.0.0.1:$RC_SUB/v1/subscribe" PUBLISH_URL="http://127.0.0.1:$RC_PUB/v1/publish" \
        SERVER_PIDS=$HERALD_PID run neurow-resume neurow --sse-auto-reconnect \
        --delay-between-messages-min 300 --delay-between-messages-max 1200
    if ! grep -q '"reconnects":[1-9]' "$WORK/neurow-resume.out"; then
        log "smoke: neurow-resume made no reconnect"
        failed+=("neurow-resume (no reconnect)")
    fi
fi

grep -h '^RESULT ' "$WORK"/*.out >"$WORK/results.txt" || true
"$LOAD" table "$WORK/results.txt" >&2 || true
if [ ${#failed[@]} -gt 0 ]; then
    log "smoke FAILED: ${failed[*]}"
    exit 1
fi
log "smoke passed: every scenario against $TARGET"
