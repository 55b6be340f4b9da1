#!/usr/bin/env bash
# Fuzzes Herald's parsers with cargo-fuzz (libFuzzer). Needs a nightly toolchain; installs
# cargo-fuzz when missing.
#
#   scripts/fuzz.sh                 # each target for FUZZ_SECONDS (default 30)
#   scripts/fuzz.sh --run SECONDS [TARGET...]  # each (or these) target(s) for SECONDS, then a
#                                              # summary per target
#   scripts/fuzz.sh --build-only    # only check that the targets build (scripts/test.sh does)
#
# The corpus of each target grows in fuzz/corpus/<target> (not committed) and is reused by the
# next run; a crash stops the run and leaves its input in fuzz/artifacts/<target>. The summary
# (also appended to fuzz/summary.txt) gives, per target, the seconds run, executions, coverage
# and the corpus size, as libFuzzer reports them at the end.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain (rustup toolchain install nightly); skipping" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

seconds=${FUZZ_SECONDS:-30}
case "${1:-}" in
  --build-only) exec cargo +nightly fuzz build ;;
  --run)
    seconds=${2:?"--run needs a number of seconds"}
    [[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: --run SECONDS, got '$seconds'" >&2; exit 2; }
    shift 2
    ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--run SECONDS | --build-only]" >&2; exit 2 ;;
esac

summary=()
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  log=$(mktemp)
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tee "$log"
  # libFuzzer's last status line: "#N<tab>DONE   cov: C ft: F corp: K/SIZE ..."
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  field() { grep -oE "$1: [0-9]+" <<<"$done_line" | cut -d' ' -f2 || true; }
  execs=$(grep -oE '^#[0-9]+' <<<"$done_line" | tr -d '#' || true)
  files=$(find "corpus/$target" -type f | wc -l)
  bytes=$(du -sb "corpus/$target" | cut -f1)
  line="$(date -u +%Y-%m-%dT%H:%MZ) $target seconds=$seconds execs=${execs:-?} cov=$(field cov) ft=$(field ft) corpus_files=$files corpus_bytes=$bytes crashes=0"
  summary+=("$line")
  rm -f "$log"
done
echo "== summary"
printf '%s\n' "${summary[@]}" | tee -a summary.txt
