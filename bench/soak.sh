#!/usr/bin/env bash
# Soak: one Herald node holding CONNECTIONS SSE streams (one topic each) under a steady
# one-to-one publish rate for DURATION seconds, with RECONNECT_FRACTION of the streams dropped
# and resumed with Last-Event-ID every period (issue 11; BENCHMARKS.md, "Soak").
#
# herald-load soak samples every SAMPLE_EVERY seconds: the period's latency, deliveries and
# anomalies, and Herald's /process_stats (RSS, allocated bytes, file descriptors, streams,
# outbox depths, tasks). The samples are in the RESULT line of OUT_DIR/soak.out; the chart of
# RSS and p50/p99 over time in OUT_DIR/soak.svg. The run fails on any loss, duplicate or
# reordering, on RSS growing more than 5% after the first minute, or on descriptors growing past
# the open streams.
#
# Herald is pinned to CPU 0 and herald-load to CPU 1, as in compare.sh.
#
# Environment (defaults in brackets): CONNECTIONS [19000], RATE msg/s [1000], DURATION s [3600],
# SAMPLE_EVERY s [60], RECONNECT_FRACTION [0.05], HERALD_BIN, HERALD_LOAD_BIN,
# OUT_DIR [bench/results/soak-<date>].
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"
REPO_ROOT=${REPO_ROOT:-$(find_repo_root "$SCRIPT_DIR")}
CONNECTIONS=${CONNECTIONS:-19000}
RATE=${RATE:-1000}
DURATION=${DURATION:-3600}
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
RECONNECT_FRACTION=${RECONNECT_FRACTION:-0.05}
OUT_DIR=${OUT_DIR:-$SCRIPT_DIR/results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
trap 'stop_all' EXIT

build_release
sub=$(free_port)
int=$(free_port)
# Streams live the whole run; the tool's tokens are valid for it too.
HERALD_SSE_TIMEOUT=$(((DURATION + 600) * 1000)) \
    start_herald "$HERALD_BIN" "$sub" "$int" "$OUT_DIR/herald.log" 0
log "soak: $CONNECTIONS streams, $RATE msg/s for ${DURATION}s, results in $OUT_DIR"
status=0
SSE_URL="http://127.0.0.1:$sub/v1/subscribe" PUBLISH_URL="http://127.0.0.1:$int/v1/publish" \
    SSE_JWT_EXPIRATION=$((DURATION + 600)) \
    taskset -c 1 "$LOAD" soak --connections "$CONNECTIONS" --rate "$RATE" --duration "$DURATION" \
    --sample-every "$SAMPLE_EVERY" --reconnect-fraction "$RECONNECT_FRACTION" \
    --server-pid "$HERALD_PID" --svg "$OUT_DIR/soak.svg" >"$OUT_DIR/soak.out" 2>"$OUT_DIR/soak.err" || status=$?
grep '^RESULT ' "$OUT_DIR/soak.out" >"$OUT_DIR/results.txt" || true
grep -v '^RESULT ' "$OUT_DIR/soak.out" >&2 || true
exit "$status"
