#!/usr/bin/env bash
# The main job (README: "Commands"): installs the prerequisites, builds the browser package pkg/,
# then starts the local network of `or-server dev` on 127.0.0.1 (an authority, N ORs, the demo
# site, and the page at http://127.0.0.1:8080/ unless --http says otherwise). Arguments are
# passed to `or-server dev` (for example --relays 5 --http 127.0.0.1:8081). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build-pkg.sh
cargo build --release -p or-server
exec target/release/or-server dev --root . "$@"
