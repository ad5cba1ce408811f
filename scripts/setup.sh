#!/usr/bin/env bash
# Installs what building and testing the project needs on a fresh Debian machine with rustup.
# Idempotent: each step is skipped when already satisfied.
set -euo pipefail

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
# C tor 0.4.9 for the private test network (tests/tornet) and interoperability tests.
command -v tor >/dev/null || need_apt+=(tor)
command -v tor-gencert >/dev/null || need_apt+=(tor)
# Headless Chromium for the browser tests (wasm-bindgen-test-runner via chromedriver, Playwright).
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# clang builds ring's C and assembly for wasm32 (TLS inside the browser OP, op-wasm).
command -v clang >/dev/null || need_apt+=(clang)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup first" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli (wasm-bindgen, wasm-bindgen-test-runner) of exactly the version in Cargo.lock.
# Not --locked: its own lockfile pins crates a registry mirror may lack (see shared notes).
root=$(cd "$(dirname "$0")/.." && pwd)
wb_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' "$root/Cargo.lock")
if [ -n "$wb_version" ] && ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
  echo "setup: cargo install wasm-bindgen-cli --version $wb_version (a few minutes)"
  cargo install -q --force wasm-bindgen-cli --version "$wb_version"
fi

# npm tools in tests/browser/node_modules: binaryen's wasm-opt (Debian's binaryen breaks
# wasm-bindgen modules), playwright-core (drives /usr/bin/chromium; no browser download) and
# typescript (checks the package's types).
if [ ! -x "$root/tests/browser/node_modules/.bin/wasm-opt" ] ||
  [ ! -f "$root/tests/browser/node_modules/playwright-core/package.json" ] ||
  [ ! -x "$root/tests/browser/node_modules/.bin/tsc" ] ||
  [ "$root/tests/browser/package-lock.json" -nt "$root/tests/browser/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci in tests/browser"
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
