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
