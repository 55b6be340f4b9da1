#!/usr/bin/env bash
# Runs each fuzz target for FUZZ_SECONDS (default 30). Needs a nightly toolchain; installs
# cargo-fuzz when missing. With --build-only, only checks that the targets build.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain (rustup toolchain install nightly); skipping" >&2
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
if [ "${1:-}" = "--build-only" ]; then
  exec cargo +nightly fuzz build
fi
for target in $(cargo +nightly fuzz list); do
  echo "== fuzz $target"
  cargo +nightly fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-30}"
done
