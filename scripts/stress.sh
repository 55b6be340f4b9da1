#!/usr/bin/env bash
# Runs test binaries many times on a busy machine, to find tests that pass alone and fail under
# load (a timing assumption). Builds the tests once, starts BURNERS busy loops, runs each chosen
# binary RUNS times, and prints the failures per binary with the failing test names; the exit
# status is non-zero if any run failed. Logs of failed runs stay in target/stress/.
#
#   scripts/stress.sh                      # every black-box test binary of crates/herald, 30 runs, 2 burners
#   scripts/stress.sh cluster drain        # only these binaries (tests/<name>.rs)
#   RUNS=10 BURNERS=4 scripts/stress.sh cluster
#
# Needs what scripts/test.sh installs (redis-server for the cluster tests).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-30}
BURNERS=${BURNERS:-2}
out=target/stress
mkdir -p "$out"
# A target directory of its own, so building something else meanwhile does not swap the herald
# binary under the running tests.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/stress-build}

# Build once; cargo prints each test executable as JSON.
mapfile -t executables < <(
  cargo test -p herald --tests --no-run --locked --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"] + " " + m["executable"])
'
)
if [ "${#executables[@]}" -eq 0 ]; then
  echo "no test binaries were built (run cargo test -p herald --no-run to see why)" >&2
  exit 1
fi

wanted=("$@")
burners=()
stop_burners() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_burners EXIT
for _ in $(seq "$BURNERS"); do
  (while :; do :; done) &
  burners+=("$!")
done

# In the order asked for, or cargo's.
if [ "${#wanted[@]}" -gt 0 ]; then
  chosen=()
  for want in "${wanted[@]}"; do
    found=""
    for entry in "${executables[@]}"; do
      [ "${entry%% *}" = "$want" ] && { chosen+=("$entry"); found=1; }
    done
    [ -n "$found" ] || { echo "no test binary named $want" >&2; exit 2; }
  done
  executables=("${chosen[@]}")
fi
status=0
for entry in "${executables[@]}"; do
  name=${entry%% *}
  exe=${entry#* }
  failed=0
  started=$(date +%s)
  for run in $(seq "$RUNS"); do
    log="$out/$name.$run.log"
    if "$exe" --test-threads="$(nproc)" >"$log" 2>&1; then
      rm -f "$log"
    else
      failed=$((failed + 1))
      status=1
      echo "  $name run $run failed: $(grep -E '^test .* FAILED$' "$log" | sed 's/^test //; s/ \.\.\. FAILED//' | tr '\n' ' ')(log: $log)"
    fi
  done
  echo "$name: $failed of $RUNS runs failed with $BURNERS busy loops beside it ($(($(date +%s) - started)) s)"
done
exit "$status"
