#!/usr/bin/env bash
# The project's test command (README: "Tests"). Installs its prerequisites, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

# Every cargo test run is logged so that the totals can be printed at the end.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
run_tests() { cargo test "$@" 2>&1 | tee -a "$results"; }

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors; unwrap/expect/indexing/panic denied outside tests)"
cargo clippy --workspace --all-targets -- -D warnings

step "unit and property tests (native)"
run_tests --workspace

step "benchmarks run once in test mode"
run_tests -p onion-core --bench relay_crypto

step "the core builds for wasm32 and imports nothing from \"env\""
cargo build -p onion-core -p onion-cell --target wasm32-unknown-unknown --release
# The test binaries link every line of the core and its crypto: check exactly those just built.
mapfile -t wasm_bins < <(cargo test -p onion-core -p onion-cell --target wasm32-unknown-unknown \
  --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
[ ${#wasm_bins[@]} -ge 2 ] || { echo "expected wasm test binaries for onion-core and onion-cell" >&2; exit 1; }
node scripts/wasm-imports.mjs "${wasm_bins[@]}"

step "the core's unit tests and op-wasm's tests inside headless Chromium (wasm-bindgen-test-runner + chromedriver)"
# Each onion-core test module imports `wasm_bindgen_test as test` on wasm32, so the same tests
# that ran natively above run here in Debian's Chromium (crypto vectors, handshakes, channels,
# circuits, directory, engine).
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  CHROMEDRIVER=/usr/bin/chromedriver \
  WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/browser/webdriver.json" \
  WASM_BINDGEN_TEST_TIMEOUT=900 \
  run_tests -p onion-core --lib --target wasm32-unknown-unknown
# The browser OP's glue (op-wasm/tests/browser.rs): HTTP wrappers, options, real WebSockets.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  CHROMEDRIVER=/usr/bin/chromedriver \
  WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/tests/browser/webdriver.json" \
  run_tests -p op-wasm --test browser --target wasm32-unknown-unknown

step "browser package (scripts/build-pkg.sh: op-wasm, wasm-bindgen, wasm-opt; sizes)"
bash scripts/build-pkg.sh
node scripts/wasm-imports.mjs pkg/op_wasm_bg.wasm
tests/browser/node_modules/.bin/tsc -p tests/browser/types && echo "package types check"

step "browser end-to-end: the package in headless Chromium (Playwright) against or-server dev"
cargo build -q -p or-server
node tests/browser/run.mjs tests/browser/e2e/*.test.mjs 2>&1 | tee -a "$results"

step "summary"
python3 - "$results" <<'PY'
import re, sys
passed = failed = ignored = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
print(f"{passed} passed, {failed} failed, {ignored} skipped")
sys.exit(1 if failed or passed == 0 else 0)
PY
