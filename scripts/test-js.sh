#!/usr/bin/env bash
# The JavaScript client's tests (clients/js): its types, unit tests under a fake clock, what
# `npm pack` would publish, the client in Node against the real herald binary, and a page using
# it in headless Chromium. Installs what is missing: the npm packages of the lock file, and
# Debian's chromium. scripts/test.sh runs it with HERALD_BIN set; alone, it builds herald.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node (20 or later) and npm are required for the JavaScript client" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "node 20 or later is required, found $(node --version)" >&2
  exit 1
fi

if [ -z "${HERALD_BIN:-}" ]; then
  echo "== js: building herald"
  cargo build -p herald --locked
  HERALD_BIN="${CARGO_TARGET_DIR:-target}/debug/herald"
fi
HERALD_BIN="$(realpath "$HERALD_BIN")"
export HERALD_BIN

if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM_BIN:-}" ]; then
  # playwright-core drives this browser; `playwright install` cannot download on these machines.
  echo "== js: installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

cd clients/js
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== js: npm ci"
  npm ci --no-audit --no-fund
fi

step() {
  local name=$1 start=$SECONDS
  shift
  echo "== js: $name"
  "$@"
  echo "   js: $name took $((SECONDS - start)) s"
}

check_pack() {
  # The tarball holds the sources, the types and the README, and nothing of the tests.
  npm pack --dry-run --json 2>/dev/null | node -e '
    const files = JSON.parse(require("fs").readFileSync(0, "utf8"))[0].files.map((f) => f.path);
    const need = ["package.json", "README.md", "src/index.js", "src/index.d.ts", "src/client.js"];
    const missing = need.filter((f) => !files.includes(f));
    const stray = files.filter((f) => !/^(package\.json|README\.md|src\/[a-z-]+\.(js|d\.ts))$/.test(f));
    if (missing.length || stray.length) {
      console.error("npm pack: missing", missing, "unexpected", stray);
      process.exit(1);
    }
    console.log(`   npm pack: ${files.length} files: ${files.join(" ")}`);
  '
}

step types npx tsc -p test/types/tsconfig.json
step unit node --test --test-reporter=spec test/unit/
step package check_pack
step "against herald" node --test --test-reporter=spec --test-concurrency=4 --test-timeout=60000 test/integration/
step "in chromium" node --test --test-reporter=spec --test-timeout=60000 test/browser/
