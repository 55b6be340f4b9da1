#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and black-box tests, a smoke run of
# the load generator, and that the benches and fuzz targets build. Installs what the tests need
# when it is missing (a C compiler for jemalloc and aws-lc; redis-server and redis-cli for the cluster tests;
# postgresql for the store tests;
# kosoku, the Autobahn WebSocket runner, in a Python venv; cargo-fuzz when a nightly toolchain is
# present), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required: install Rust from https://rustup.rs" >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
  echo "== installing a C compiler (build-essential)"
  apt-get update -qq && apt-get install -y -qq build-essential
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  # The cluster tests (crates/herald/tests/{cluster,redis_cluster}.rs) start private redis-server
  # instances, and build a Redis Cluster of them with redis-cli.
  echo "== installing redis-server and redis-cli"
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools
fi

if ! command -v pg_config >/dev/null 2>&1 || [ ! -x "$(pg_config --bindir)/initdb" ]; then
  # The store tests (crates/herald/tests/collections.rs) run their contract against a private
  # PostgreSQL each starts with initdb/pg_ctl on a free loopback port (tests/common/postgres.rs).
  echo "== installing postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# The WebSocket conformance test (crates/herald/tests/autobahn.rs) drives Autobahn's cases with
# kosoku (PyPI, Rust-native, ~7 s for 301 cases); it needs Python 3.10 or later and pip.
KOSOKU_VENV=${KOSOKU_VENV:-target/kosoku-venv}
if [ ! -x "$KOSOKU_VENV/bin/kosoku" ]; then
  echo "== installing kosoku (Autobahn runner) into $KOSOKU_VENV"
  if ! python3 -m venv "$KOSOKU_VENV" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip
    python3 -m venv "$KOSOKU_VENV"
  fi
  "$KOSOKU_VENV/bin/pip" install -q kosoku
fi
export KOSOKU="$PWD/$KOSOKU_VENV/bin/kosoku"

echo "== format"
cargo fmt --all -- --check
echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo test --workspace --locked
echo "== load generator smoke run (every herald-load scenario, tiny, against a fresh Herald)"
cargo build --workspace --locked --bins
HERALD_BIN=target/debug/herald HERALD_LOAD_BIN=target/debug/herald-load ./bench/smoke.sh
echo "== benches build"
cargo bench --workspace --locked --no-run
echo "== fuzz targets build"
./scripts/fuzz.sh --build-only
echo "== JavaScript client (clients/js)" && HERALD_BIN=target/debug/herald ./scripts/test-js.sh
