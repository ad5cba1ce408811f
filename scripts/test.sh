#!/usr/bin/env bash
# The project's test command (README: "Tests"). Installs its prerequisites, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors; unwrap/expect/indexing/panic denied outside tests)"
cargo clippy --workspace --all-targets -- -D warnings

step "unit and property tests (native)"
cargo test --workspace

step "benchmarks run once in test mode"
cargo test -p onion-core --bench relay_crypto

step "the core builds for wasm32 and imports nothing from \"env\""
cargo build -p onion-core -p onion-cell --target wasm32-unknown-unknown --release
cargo test -p onion-core -p onion-cell --target wasm32-unknown-unknown --no-run
node scripts/wasm-imports.mjs target/wasm32-unknown-unknown/debug/deps/onion_*.wasm

step "all tests passed"
